//! The messages that cross task boundaries: what the inputs, the display and the console tell
//! the payment flow, and what the flow is asked to do.
//!
//! They live here, at the bottom of the house beside [`crate::state`] (what the flow
//! publishes), so that a task can speak to another without importing it: the input tasks do
//! not depend on the payment flow to send it a [`Command`], and the flow does not depend on the
//! display to read its [`PanelHealth`], nor on the callback listener to be told to read a payment
//! again ([`CallbackNudge`]). This module imports nothing above [`crate::cart`].
//!
//! A technician's scanner test is told about a scan here too ([`ScanDiversion`]): the input
//! unit hands the scan over without knowing who tests it.

use std::fmt;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::cart::Cart;
use crate::money::Money;

/// What the input unit tells the payment flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputEvent {
    /// A code that names a cart; the flow decides whether to charge it now.
    Cart(Cart),
    /// A kioskpay signed cart code: a cart that may be paid only once. The flow refuses it when
    /// an approved payment in its journal already carries its cart reference.
    SignedCart(Cart),
    /// A payment slip (GS1 element string or Digital Link) with its cart reference (AI 8020): a
    /// slip is for one cart, so the flow refuses it when a payment approved within
    /// `payment.paid_cart_window_s` carries that reference. A slip without a reference is a
    /// plain [`InputEvent::Cart`].
    SlipCart(Cart),
    /// Something was scanned but it is not a code this kiosk charges. The flow shows a refusal
    /// so the customer is not left waiting; nothing is sent to Dintero.
    Unreadable {
        /// What is wrong, precisely, for the log (quoted text escaped and shortened).
        reason: String,
        /// What the display tells the customer.
        customer: CustomerReason,
    },
    /// The scanner cannot be opened or has gone away: the kiosk cannot take carts.
    ScannerUnavailable,
    /// The scanner is open again after [`InputEvent::ScannerUnavailable`].
    ScannerBack,
}

/// What the customer is told about a refused code: short, so the display can word it in each
/// language without knowing the details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerReason {
    /// The code was misread or damaged: scan again.
    Unreadable,
    /// A barcode, but not one that says what to pay (a product number, a weight label).
    NotAPaymentCode,
    /// A payment code of a kind this kiosk is not set up for.
    NotAccepted,
    /// The amount is in another currency than the kiosk charges in.
    WrongCurrency,
    /// The amount cannot be charged (zero, finer than one øre, too large).
    InvalidAmount,
    /// The code's validity has run out: ask for a new one.
    Expired,
    /// This code has been paid already.
    AlreadyPaid,
    /// The code's signature is wrong: not issued by this merchant, or altered.
    Forged,
    /// The kiosk itself is misconfigured: call staff.
    KioskFault,
}

/// The log's words for what the customer is told, e.g. `customer=not a payment code`.
impl fmt::Display for CustomerReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CustomerReason::Unreadable => "unreadable",
            CustomerReason::NotAPaymentCode => "not a payment code",
            CustomerReason::NotAccepted => "not accepted at this kiosk",
            CustomerReason::WrongCurrency => "wrong currency",
            CustomerReason::InvalidAmount => "invalid amount",
            CustomerReason::Expired => "expired",
            CustomerReason::AlreadyPaid => "already paid",
            CustomerReason::Forged => "signature does not verify",
            CustomerReason::KioskFault => "kiosk fault",
        })
    }
}

/// What the display tells the payment flow about the customer's screen.
///
/// The flow takes no payment unless the screen is [`PanelHealth::Working`]: at an unattended
/// kiosk a customer who cannot see "approved" or "declined" cannot follow a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PanelHealth {
    /// No frame has reached the panel yet.
    Unknown,
    /// The last frame reached the panel.
    Working,
    /// The panel failed; `code` is the `PanelError::code` (see [`crate::display`]) shown on the out-of-service screen.
    Broken {
        /// A short code to look up.
        code: &'static str,
    },
}

/// Commands from the console and kiosk buttons. They ask; the flow decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Cancel the payment in progress, if it can still be cancelled (the payment still wins).
    Cancel,
    /// Re-run the health gate now (after a technician fixed something).
    CheckHealth,
    /// A technician starts (`true`) or ends (`false`) maintenance: while on, the kiosk shows
    /// the technician screen and refuses new carts. A payment in flight always finishes first;
    /// maintenance takes effect after it.
    Maintenance(bool),
    /// A technician's test payment: a cart from [`crate::cart::CartSource::Console`]. Taken only
    /// while maintenance is in force and nothing else runs — the technician is at the kiosk and
    /// no customer can start a payment — and refused otherwise. It is journaled and followed
    /// like any payment.
    TestPayment(Cart),
    /// A technician asks the flow to settle the unfinished payment with this merchant
    /// reference now, from what Dintero says, as it does at start-up (`resolve REF`). Heard
    /// only while no payment runs; a payment that already has its outcome is left as it is.
    Resolve(String),
}

/// A signed callback from Dintero named a payment: the flow reads that payment again now
/// instead of at its next poll.
///
/// It carries the ids the callback's query named and nothing else. A valid signature only
/// proves that Dintero called the URL, never what the payment came to (only the URL is signed),
/// so the flow learns the outcome from its own read, as it does when it polls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallbackNudge {
    /// The callback's `session_id`, if it had one.
    pub session_id: Option<String>,
    /// The callback's `transaction_id`, if it had one.
    pub transaction_id: Option<String>,
}

impl CallbackNudge {
    /// Whether the nudge names the payment with this session and (once known) transaction.
    pub fn names(&self, session_id: Option<&str>, transaction_id: Option<&str>) -> bool {
        let same = |ours: Option<&str>, theirs: &Option<String>| {
            ours.is_some_and(|ours| theirs.as_deref() == Some(ours))
        };
        same(session_id, &self.session_id) || same(transaction_id, &self.transaction_id)
    }
}

/// What one scan came to, told to a technician's scanner test instead of the payment flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanReport {
    /// A code the kiosk would charge.
    Decoded {
        /// The decoder's name for the format (`gs1`, `plain`, …), as `kioskpay decode` prints it.
        format: &'static str,
        /// What would be charged.
        amount: Money,
        /// The cart's own reference, when the code carried one.
        reference: Option<String>,
    },
    /// A code the kiosk refuses.
    Refused {
        /// The decoder's precise reason, as `kioskpay decode` prints it.
        reason: String,
        /// What the customer would be told.
        customer: CustomerReason,
    },
}

/// The one seam through which a scan can go anywhere but the payment flow: a technician's
/// `test scanner` claims the next scan, and the input unit hands that scan to the test instead
/// of the flow, so a test scan can never become a payment, now or later.
///
/// Clones share one claim. A claim whose test is gone (cancelled, timed out) catches nothing:
/// the scan goes to the flow as usual, which refuses carts while in maintenance.
#[derive(Clone, Debug, Default)]
pub struct ScanDiversion {
    claim: Arc<Mutex<Option<oneshot::Sender<ScanReport>>>>,
}

impl ScanDiversion {
    /// Claims the next scan, replacing an earlier claim (whose test then sees no scan).
    pub fn claim(&self) -> oneshot::Receiver<ScanReport> {
        let (tx, rx) = oneshot::channel();
        *self.lock() = Some(tx);
        rx
    }

    /// Hands `report` to a waiting test; `false` when no test waits, so the scan goes to the flow.
    pub fn divert(&self, report: impl FnOnce() -> ScanReport) -> bool {
        match self.lock().take() {
            Some(tx) if !tx.is_closed() => tx.send(report()).is_ok(),
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<oneshot::Sender<ScanReport>>> {
        self.claim.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> ScanReport {
        ScanReport::Refused {
            reason: "noise".into(),
            customer: CustomerReason::Unreadable,
        }
    }

    #[test]
    fn a_scan_is_diverted_only_to_a_test_still_waiting_and_only_once() {
        let diversion = ScanDiversion::default();
        assert!(!diversion.divert(refused), "no test: the flow gets it");
        let mut waiting = diversion.clone().claim();
        assert!(diversion.divert(refused));
        assert_eq!(waiting.try_recv(), Ok(refused()));
        assert!(!diversion.divert(refused), "a claim takes one scan");
        drop(diversion.claim());
        assert!(
            !diversion.divert(refused),
            "a test that gave up catches nothing"
        );
        let mut first = diversion.claim();
        let mut second = diversion.claim();
        assert!(
            first.try_recv().is_err(),
            "a later test replaces an earlier one"
        );
        assert!(diversion.divert(refused));
        assert_eq!(second.try_recv(), Ok(refused()));
    }

    #[test]
    fn a_nudge_names_a_payment_by_its_session_or_its_transaction() {
        let nudge = CallbackNudge {
            session_id: Some("T1.s".into()),
            transaction_id: Some("T1.t".into()),
        };
        assert!(nudge.names(Some("T1.s"), None));
        assert!(nudge.names(None, Some("T1.t")));
        assert!(nudge.names(Some("T1.other"), Some("T1.t")));
        assert!(!nudge.names(Some("T1.other"), Some("T1.t2")));
        assert!(!nudge.names(None, None));
        assert!(!CallbackNudge::default().names(Some("T1.s"), Some("T1.t")));
    }
}
