//! A payment found by reference is this payment only if it proves it.
//!
//! A kiosk looks a payment up by `merchant_reference` when it never saw the answer to its create
//! call (a lost response, a power cut), and when it watches for a create that lands late. A
//! reference is unique only as long as nothing went wrong: a state directory restored from a
//! backup rewinds the journal's sequence, and a kiosk that shares another's `kiosk.id` (and, by
//! a one-in-a-billion draw, its installation id) counts the same references. A lookup that
//! trusted the reference alone could then report a cart as paid with another payment's money.
//!
//! So a session (or transaction) found by reference counts only if everything the journaled
//! intent fixed matches: amount, currency, terminal, the cart's reference, and a creation time
//! not before the intent was written (allowing [`CLOCK_SKEW`]: Dintero's clocks are right, a Pi
//! without a real-time clock may be behind, which only makes the intent look older). A match on
//! the reference with a mismatch anywhere else is a **conflict**: never approved, recorded as
//! `conflict`, shown to the customer as "could not confirm", logged at ERROR.
//!
//! Where the journal lost the intent itself (a damaged line, see [`crate::journal`]), the kiosk
//! knows only the reference; the checks it has nothing to compare with are skipped, and the
//! payment is taken as found, since its reference carries this installation's id.

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::dintero::{Session, Transaction};
use crate::payment::Payment;

/// How far Dintero's creation time of a session may lie before the kiosk's own time of the
/// intent and still count as created after it. Clocks that NTP keeps agree to well under a
/// second, Dintero cuts its timestamps to the millisecond, and a Pi without a real-time clock
/// runs behind until NTP answers, which only makes the intent look older. A kiosk clock more
/// than this far ahead turns lost-answer lookups into conflicts: loud, never a wrong approval.
pub const CLOCK_SKEW: time::Duration = time::Duration::seconds(30);

/// What did not match between the intent and what Dintero has under its reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// Another amount (minor units).
    Amount {
        /// The journaled amount.
        expected: u64,
        /// Dintero's.
        found: u64,
    },
    /// Another currency.
    Currency {
        /// The journaled currency.
        expected: String,
        /// Dintero's.
        found: String,
    },
    /// Another terminal, or none.
    Terminal {
        /// The journaled terminal.
        expected: String,
        /// Dintero's.
        found: Option<String>,
    },
    /// Another cart reference (`merchant_reference_2`), or one where none was sent.
    CartReference {
        /// The journaled cart reference.
        expected: Option<String>,
        /// Dintero's.
        found: Option<String>,
    },
    /// Created before the intent was written.
    CreatedBefore {
        /// When the intent was written.
        intent: String,
        /// Dintero's creation time.
        created: String,
    },
    /// Dintero's record lacks what would prove it (no order, no creation time).
    Unprovable(&'static str),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Amount { expected, found } => {
                write!(f, "amount {found} instead of {expected} (minor units)")
            }
            Mismatch::Currency { expected, found } => {
                write!(f, "currency {found} instead of {expected}")
            }
            Mismatch::Terminal { expected, found } => write!(
                f,
                "terminal {} instead of {expected}",
                found.as_deref().unwrap_or("(none)")
            ),
            Mismatch::CartReference { expected, found } => write!(
                f,
                "cart reference {} instead of {}",
                found.as_deref().unwrap_or("(none)"),
                expected.as_deref().unwrap_or("(none)")
            ),
            Mismatch::CreatedBefore { intent, created } => {
                write!(
                    f,
                    "created {created}, before this payment began at {intent}"
                )
            }
            Mismatch::Unprovable(what) => write!(f, "{what}"),
        }
    }
}

/// The mismatches of a session found under `payment`'s reference; empty when it is this payment.
pub fn session_mismatches(payment: &Payment, session: &Session) -> Vec<Mismatch> {
    let Some(order) = &session.order else {
        return vec![Mismatch::Unprovable("the session has no order")];
    };
    let terminal = order.store.as_ref().and_then(|s| s.terminal_id.clone());
    compare(
        payment,
        Found {
            amount: order.amount,
            currency: &order.currency,
            terminal,
            cart_reference: order.merchant_reference_2.as_deref(),
            created_at: session.created_at.as_deref(),
        },
    )
}

/// The mismatches of a transaction found under `payment`'s reference.
pub fn transaction_mismatches(payment: &Payment, tx: &Transaction) -> Vec<Mismatch> {
    compare(
        payment,
        Found {
            amount: tx.amount,
            currency: &tx.currency,
            terminal: tx.store.as_ref().and_then(|s| s.terminal_id.clone()),
            cart_reference: tx.merchant_reference_2.as_deref(),
            created_at: tx.created_at.as_deref(),
        },
    )
}

/// Joins mismatches for a log line or the journal.
pub fn describe(mismatches: &[Mismatch]) -> String {
    mismatches
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

struct Found<'a> {
    amount: u64,
    currency: &'a str,
    terminal: Option<String>,
    cart_reference: Option<&'a str>,
    created_at: Option<&'a str>,
}

fn compare(payment: &Payment, found: Found<'_>) -> Vec<Mismatch> {
    let mut out = Vec::new();
    // Amount 0 is a payment whose intent line was lost: amount, currency and cart unknown.
    if payment.amount.minor != 0 {
        if found.amount != payment.amount.minor {
            out.push(Mismatch::Amount {
                expected: payment.amount.minor,
                found: found.amount,
            });
        }
        let currency = payment.amount.currency.code();
        if !found.currency.eq_ignore_ascii_case(currency) {
            out.push(Mismatch::Currency {
                expected: currency.to_string(),
                found: found.currency.to_string(),
            });
        }
        if found.cart_reference != payment.cart_reference.as_deref() {
            out.push(Mismatch::CartReference {
                expected: payment.cart_reference.clone(),
                found: found.cart_reference.map(str::to_string),
            });
        }
    }
    if let Some(expected) = &payment.terminal_id {
        if found.terminal.as_deref() != Some(expected.as_str()) {
            out.push(Mismatch::Terminal {
                expected: expected.clone(),
                found: found.terminal,
            });
        }
    }
    if let Some(began) = payment.started_at {
        match found
            .created_at
            .and_then(|c| OffsetDateTime::parse(c, &Rfc3339).ok())
        {
            None => out.push(Mismatch::Unprovable("no readable creation time")),
            Some(created) if created < began - CLOCK_SKEW => out.push(Mismatch::CreatedBefore {
                intent: began.format(&Rfc3339).unwrap_or_default(),
                created: found.created_at.unwrap_or_default().to_string(),
            }),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dintero::{Order, Store, TransactionStatus};
    use crate::money::{Currency, Money};
    use time::macros::datetime;

    fn payment() -> Payment {
        Payment {
            merchant_reference: "kiosk-1-7KQ2FX-20261204-000002".into(),
            amount: Money::new(45000, Currency::NOK),
            cart_reference: Some("KID-9".into()),
            terminal_id: Some("T12345678-T0001".into()),
            started_at: Some(datetime!(2026-12-04 10:00:00 UTC)),
        }
    }

    fn session(amount: u64, terminal: &str, cart: Option<&str>, created: &str) -> Session {
        Session {
            id: "T12345678.s1".into(),
            order: Some(Order {
                amount,
                currency: "NOK".into(),
                merchant_reference: "kiosk-1-7KQ2FX-20261204-000002".into(),
                merchant_reference_2: cart.map(str::to_string),
                vat_amount: None,
                items: vec![],
                store: Some(Store {
                    id: "oslo-center".into(),
                    terminal_id: Some(terminal.into()),
                    payout_destination_id: None,
                }),
            }),
            created_at: Some(created.into()),
            expires_at: None,
            transaction_id: None,
            events: vec![],
            cancelled_at: None,
            cancelled_by: None,
        }
    }

    const T1: &str = "T12345678-T0001";

    #[test]
    fn the_payment_itself_matches() {
        let s = session(45000, T1, Some("KID-9"), "2026-12-04T10:00:00.250Z");
        assert_eq!(session_mismatches(&payment(), &s), vec![]);
        // Dintero's clock a little behind the kiosk's.
        let s = session(45000, T1, Some("KID-9"), "2026-12-04T09:59:45Z");
        assert_eq!(session_mismatches(&payment(), &s), vec![]);
    }

    #[test]
    fn each_difference_is_a_mismatch() {
        let p = payment();
        let cases = [
            (
                session(10000, T1, Some("KID-9"), "2026-12-04T10:00:01Z"),
                "amount 10000 instead of 45000",
            ),
            (
                session(
                    45000,
                    "T12345678-T0002",
                    Some("KID-9"),
                    "2026-12-04T10:00:01Z",
                ),
                "terminal T12345678-T0002",
            ),
            (
                session(45000, T1, None, "2026-12-04T10:00:01Z"),
                "cart reference (none) instead of KID-9",
            ),
            (
                session(45000, T1, Some("KID-9"), "2026-12-04T09:30:00Z"),
                "before this payment began",
            ),
            (
                session(45000, T1, Some("KID-9"), "yesterday"),
                "no readable creation time",
            ),
        ];
        for (s, words) in cases {
            let found = describe(&session_mismatches(&p, &s));
            assert!(found.contains(words), "{found:?} lacks {words:?}");
        }
        let mut other_currency = session(45000, T1, Some("KID-9"), "2026-12-04T10:00:01Z");
        other_currency.order.as_mut().unwrap().currency = "SEK".into();
        assert!(matches!(
            session_mismatches(&p, &other_currency)[..],
            [Mismatch::Currency { .. }]
        ));
        let mut no_order = other_currency;
        no_order.order = None;
        assert!(matches!(
            session_mismatches(&p, &no_order)[..],
            [Mismatch::Unprovable(_)]
        ));
    }

    #[test]
    fn a_lost_intent_checks_only_what_is_known() {
        let lost = Payment {
            amount: Money::new(0, Currency::NOK),
            cart_reference: None,
            terminal_id: None,
            started_at: None,
            ..payment()
        };
        let s = session(1300, T1, Some("anything"), "2020-01-01T00:00:00Z");
        assert_eq!(session_mismatches(&lost, &s), vec![]);
    }

    #[test]
    fn transactions_are_checked_the_same_way() {
        let tx = Transaction {
            id: "T12345678.t1".into(),
            status: TransactionStatus::Captured,
            amount: 10000,
            currency: "NOK".into(),
            merchant_reference: Some("kiosk-1-7KQ2FX-20261204-000002".into()),
            merchant_reference_2: Some("KID-9".into()),
            session_id: Some("T12345678.s1".into()),
            payment_product: None,
            payment_product_type: None,
            store: Some(Store {
                id: "oslo-center".into(),
                terminal_id: Some(T1.into()),
                payout_destination_id: None,
            }),
            card: None,
            events: vec![],
            created_at: Some("2026-12-04T10:00:02Z".into()),
        };
        assert_eq!(
            transaction_mismatches(&payment(), &tx),
            vec![Mismatch::Amount {
                expected: 45000,
                found: 10000
            }]
        );
        let ours = Transaction {
            amount: 45000,
            ..tx
        };
        assert_eq!(transaction_mismatches(&payment(), &ours), vec![]);
    }
}
