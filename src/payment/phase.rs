//! The payment state machine: an `enum` of phases and pure, explicit transitions.
//!
//! ```text
//!            cart accepted                 session id                 transaction INITIATED
//!   Idle ─────────────────▶ Creating ─────────────────▶ AwaitingPickup ──────────────────▶ WaitingForCard
//!                             │  │ outcome unknown             │ pickup timeout /             │ AUTHORIZED
//!            rejected (4xx)   │  └──────────▶ Checking ◀──┐    │ kiosk timeout / cancel       ▼
//!        Done(NotCreated) ◀───┘                 │         └────┼──────────────────────── Processing
//!                                               │ found        ▼                              │
//!                                               └──────▶ (AwaitingPickup | WaitingForCard | Processing)
//!                                                        Cancelling ── re-read, the payment wins ──▶ Done
//!   any live phase ── final snapshot (captured, declined, cancelled, timed out, failed) ──▶ Done
//! ```
//!
//! Nothing here does I/O. The flow ([`super::flow`]) feeds [`Event`]s that it observed (a create
//! answer, a polled snapshot, a timer) into [`Phase::apply`] and acts on the phase it gets back.
//! Keeping the decisions pure is what lets every transition have its own test, and what lets
//! boot-time recovery reuse exactly the same rules as a live payment.

use std::fmt;

use crate::dintero::{Session, Transaction, TransactionStatus};
use crate::journal::{Outcome, PaymentRecord};
use crate::money::{Currency, Money};
use crate::state::{CancelledBy, DeclineKind, FailKind, KioskState};

/// What the kiosk is charging: fixed when the intent is journaled, and what a payment found by
/// reference must match to count as this one (see [`super::identity`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// Ours, unique forever on this kiosk.
    pub merchant_reference: String,
    /// The total; 0 when the journal lost the intent (amount, currency and cart unknown).
    pub amount: Money,
    /// The cart's own reference.
    pub cart_reference: Option<String>,
    /// The terminal the intent named; `None` when the intent was lost.
    pub terminal_id: Option<String>,
    /// When the intent was written; `None` when the intent was lost or its time unreadable.
    pub started_at: Option<time::OffsetDateTime>,
}

impl Payment {
    /// The payment a journal record describes (`default_currency` where the intent was lost).
    pub fn from_record(record: &PaymentRecord, default_currency: Currency) -> Payment {
        let currency = Currency::from_code(&record.currency).unwrap_or(default_currency);
        Payment {
            merchant_reference: record.merchant_reference.clone(),
            amount: Money::new(record.amount, currency),
            cart_reference: record.cart_reference.clone(),
            terminal_id: Some(record.terminal_id.clone()).filter(|t| !t.is_empty()),
            started_at: time::OffsetDateTime::parse(
                &record.started_at,
                &time::format_description::well_known::Rfc3339,
            )
            .ok(),
        }
    }
}

/// Why the kiosk cancels a session: decides how a cancel that wins is reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// The kiosk's own `payment.timeout_s` passed.
    Timeout,
    /// The terminal never picked the session up.
    TerminalOffline,
    /// A technician or a cancel button asked for it.
    Requested,
    /// A session found during recovery that no terminal picked up: it must not start late.
    Recovery,
}

/// How a payment ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Final {
    /// Captured.
    Approved {
        /// Dintero's transaction id.
        transaction_id: String,
        /// Card brand and last digits, when known.
        card: Option<String>,
        /// The status that proved it (`CAPTURED`, or a later refund status).
        status: TransactionStatus,
    },
    /// Declined by the issuer.
    Declined {
        /// Dintero's transaction id.
        transaction_id: String,
        /// What kind of decline.
        kind: DeclineKind,
    },
    /// Cancelled before money moved.
    Cancelled {
        /// Dintero's transaction id, when one existed.
        transaction_id: Option<String>,
        /// Who cancelled.
        by: CancelledBy,
    },
    /// Nobody paid in time.
    TimedOut {
        /// Dintero's transaction id, when one existed.
        transaction_id: Option<String>,
    },
    /// A technical failure, or a terminal that never picked the payment up.
    Failed {
        /// Dintero's transaction id, when one existed.
        transaction_id: Option<String>,
        /// What failed.
        kind: FailKind,
    },
    /// No session exists: Dintero refused the create, or recovery found nothing.
    NotCreated {
        /// Why, for the log and the journal.
        reason: String,
    },
    /// A lookup by reference found only payments that are not this one (another amount,
    /// terminal, cart or an older creation time): the kiosk cannot confirm this payment and
    /// never takes another payment's money for it. Nothing more is charged; staff must look.
    Conflict {
        /// What did not match, for the log and the technician.
        detail: String,
    },
}

impl Final {
    /// The journal's word for this outcome.
    pub fn outcome(&self) -> Outcome {
        match self {
            Final::Approved { .. } => Outcome::Approved,
            Final::Declined { .. } => Outcome::Declined,
            Final::Cancelled { .. } => Outcome::Cancelled,
            Final::TimedOut { .. } => Outcome::TimedOut,
            Final::Failed { .. } => Outcome::Failed,
            Final::NotCreated { .. } => Outcome::NotCreated,
            Final::Conflict { .. } => Outcome::Conflict,
        }
    }

    /// The transaction id, when a transaction existed.
    pub fn transaction_id(&self) -> Option<&str> {
        match self {
            Final::Approved { transaction_id, .. } | Final::Declined { transaction_id, .. } => {
                Some(transaction_id)
            }
            Final::Cancelled { transaction_id, .. }
            | Final::TimedOut { transaction_id }
            | Final::Failed { transaction_id, .. } => transaction_id.as_deref(),
            Final::NotCreated { .. } | Final::Conflict { .. } => None,
        }
    }
}

/// Where a payment stands, read from one poll of the session and its transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The session exists but no terminal has picked it up.
    NotPickedUp,
    /// The terminal is prompting (transaction `INITIATED`, or a status we do not know yet).
    Prompting {
        /// The transaction.
        transaction_id: String,
    },
    /// Authorized, capture pending: money is not final yet.
    Authorized {
        /// The transaction.
        transaction_id: String,
    },
    /// Ended.
    Ended(Final),
}

/// Reads a polled session (and its transaction, once it has one) into a [`Progress`].
///
/// `cancel` says why the kiosk cancelled, if it did: a session the kiosk cancelled is reported
/// as a timeout, an offline terminal or a requested cancel accordingly. A captured transaction
/// wins over everything (the payment wins).
pub fn classify(
    session: &Session,
    transaction: Option<&Transaction>,
    cancel: Option<CancelReason>,
) -> Progress {
    let kiosk_cancel = |transaction_id: Option<String>| match cancel {
        Some(CancelReason::Timeout) => Final::TimedOut { transaction_id },
        Some(CancelReason::TerminalOffline) => Final::Failed {
            transaction_id,
            kind: FailKind::TerminalOffline,
        },
        Some(CancelReason::Requested) | Some(CancelReason::Recovery) | None => Final::Cancelled {
            transaction_id,
            by: CancelledBy::Kiosk,
        },
    };
    let Some(tx) = transaction else {
        if session.cancelled_at.is_some() {
            let by_terminal = session.cancelled_by.as_deref() == Some("terminal");
            return Progress::Ended(if by_terminal {
                Final::Cancelled {
                    transaction_id: None,
                    by: CancelledBy::Customer,
                }
            } else {
                kiosk_cancel(None)
            });
        }
        return Progress::NotPickedUp;
    };
    let id = tx.id.clone();
    if tx.status.is_paid() {
        return Progress::Ended(Final::Approved {
            transaction_id: id,
            card: tx.card_summary(),
            status: tx.status.clone(),
        });
    }
    match tx.status {
        TransactionStatus::Authorized | TransactionStatus::OnHold => {
            return Progress::Authorized { transaction_id: id }
        }
        TransactionStatus::AuthorizationVoided => return Progress::Ended(kiosk_cancel(Some(id))),
        TransactionStatus::Failed | TransactionStatus::Declined => {}
        _ => return Progress::Prompting { transaction_id: id },
    }
    // Ended without money: the session's last event says why; the transaction's error types
    // are the fallback when the session has no telling event.
    let last = session.events.iter().rev().find(|e| {
        matches!(
            e.name.as_str(),
            "CANCELLED" | "PAY_FAILED" | "DECLINED" | "FAILED"
        )
    });
    let error = last
        .and_then(|e| e.details.as_ref())
        .and_then(|d| d.error.as_deref());
    let types = tx.failure_types();
    let decline_kind = if types.iter().any(|t| t == "INSUFFICIENT_FUNDS") {
        DeclineKind::InsufficientFunds
    } else {
        DeclineKind::Declined
    };
    let ended = match (last.map(|e| e.name.as_str()), error) {
        (Some("CANCELLED"), Some("timeout")) => Final::TimedOut {
            transaction_id: Some(id),
        },
        (Some("CANCELLED"), _) => {
            if session.cancelled_by.as_deref() == Some("terminal") || cancel.is_none() {
                Final::Cancelled {
                    transaction_id: Some(id),
                    by: CancelledBy::Customer,
                }
            } else {
                kiosk_cancel(Some(id))
            }
        }
        (Some("PAY_FAILED"), _) | (Some("DECLINED"), _) => Final::Declined {
            transaction_id: id,
            kind: decline_kind,
        },
        (Some("FAILED"), _) => Final::Failed {
            transaction_id: Some(id),
            kind: FailKind::Technical,
        },
        _ if types
            .iter()
            .any(|t| t == "DECLINED" || t == "INSUFFICIENT_FUNDS") =>
        {
            Final::Declined {
                transaction_id: id,
                kind: decline_kind,
            }
        }
        _ if tx.status == TransactionStatus::Declined => Final::Declined {
            transaction_id: id,
            kind: decline_kind,
        },
        _ if cancel.is_some() => kiosk_cancel(Some(id)),
        _ => Final::Failed {
            transaction_id: Some(id),
            kind: FailKind::Technical,
        },
    };
    Progress::Ended(ended)
}

/// A phase of one payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The intent is journaled and the create call is in flight.
    Creating(Payment),
    /// The session exists; waiting for the terminal to pick it up.
    AwaitingPickup {
        /// The payment.
        payment: Payment,
        /// Dintero's session id.
        session_id: String,
    },
    /// The terminal prompts for the card.
    WaitingForCard {
        /// The payment.
        payment: Payment,
        /// Dintero's session id.
        session_id: String,
        /// The transaction.
        transaction_id: String,
    },
    /// Authorized; capture pending.
    Processing {
        /// The payment.
        payment: Payment,
        /// Dintero's session id.
        session_id: String,
        /// The transaction.
        transaction_id: String,
    },
    /// The kiosk cancelled (or is about to) and waits to read what really happened.
    Cancelling {
        /// The payment.
        payment: Payment,
        /// Dintero's session id.
        session_id: String,
        /// Why the kiosk cancels.
        reason: CancelReason,
    },
    /// The outcome is unknown: look the payment up by reference before anything else.
    Checking {
        /// The payment.
        payment: Payment,
        /// The session id, when it was ever learnt.
        session_id: Option<String>,
    },
    /// Ended.
    Done {
        /// The payment.
        payment: Payment,
        /// How it ended.
        outcome: Final,
    },
}

/// Something the flow observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The create call answered with a session id.
    Created {
        /// The session id.
        session_id: String,
    },
    /// The create call was refused (4xx): no session exists.
    CreateRejected {
        /// Dintero's message.
        reason: String,
    },
    /// The create call's outcome is unknown (timeout, reset, 5xx, lost answer).
    CreateUnknown,
    /// A poll read the payment's progress.
    Polled(Progress),
    /// A lookup by reference found the session (and maybe its progress).
    Found {
        /// The session id.
        session_id: String,
        /// What it shows.
        progress: Progress,
    },
    /// A lookup by reference found nothing (checked twice, far enough apart).
    NotFound,
    /// Lookups by reference found only payments that are not this one (checked twice, far
    /// enough apart, like [`Event::NotFound`]).
    Conflict {
        /// What did not match.
        detail: String,
    },
    /// The kiosk decided to cancel.
    Cancel(CancelReason),
}

/// A transition that the state machine does not allow; a bug in the flow, logged, never a panic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event {event} is not allowed in phase {phase}")]
pub struct InvalidTransition {
    /// The phase's name.
    pub phase: &'static str,
    /// The event.
    pub event: String,
}

impl Phase {
    /// The payment this phase is about.
    pub fn payment(&self) -> &Payment {
        match self {
            Phase::Creating(payment)
            | Phase::AwaitingPickup { payment, .. }
            | Phase::WaitingForCard { payment, .. }
            | Phase::Processing { payment, .. }
            | Phase::Cancelling { payment, .. }
            | Phase::Checking { payment, .. }
            | Phase::Done { payment, .. } => payment,
        }
    }

    /// The session id, once known.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            Phase::AwaitingPickup { session_id, .. }
            | Phase::WaitingForCard { session_id, .. }
            | Phase::Processing { session_id, .. }
            | Phase::Cancelling { session_id, .. } => Some(session_id),
            Phase::Checking { session_id, .. } => session_id.as_deref(),
            Phase::Creating(_) | Phase::Done { .. } => None,
        }
    }

    /// The machine name, for the journal's `state` records and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Creating(_) => "creating",
            Phase::AwaitingPickup { .. } => "awaiting_pickup",
            Phase::WaitingForCard { .. } => "waiting_for_card",
            Phase::Processing { .. } => "processing",
            Phase::Cancelling { .. } => "cancelling",
            Phase::Checking { .. } => "checking",
            Phase::Done { .. } => "done",
        }
    }

    /// The phase after `event`.
    pub fn apply(self, event: Event) -> Result<Phase, InvalidTransition> {
        let invalid = |phase: &Phase, event: &Event| InvalidTransition {
            phase: phase.name(),
            event: format!("{event:?}"),
        };
        match (self, event) {
            (Phase::Creating(payment), Event::Created { session_id }) => {
                Ok(Phase::AwaitingPickup {
                    payment,
                    session_id,
                })
            }
            (Phase::Creating(payment), Event::CreateRejected { reason }) => Ok(Phase::Done {
                payment,
                outcome: Final::NotCreated { reason },
            }),
            (Phase::Creating(payment), Event::CreateUnknown) => Ok(Phase::Checking {
                payment,
                session_id: None,
            }),
            (
                Phase::Checking { payment, .. },
                Event::Found {
                    session_id,
                    progress,
                },
            ) => Ok(Self::progressed(payment, session_id, None, progress)),
            (
                Phase::Checking {
                    payment,
                    session_id,
                },
                Event::Polled(progress),
            ) => match session_id {
                Some(session_id) => Ok(Self::progressed(payment, session_id, None, progress)),
                None => Err(invalid(
                    &Phase::Checking {
                        payment,
                        session_id: None,
                    },
                    &Event::Polled(progress),
                )),
            },
            (
                Phase::Checking {
                    payment,
                    session_id: None,
                },
                Event::NotFound,
            ) => Ok(Phase::Done {
                payment,
                outcome: Final::NotCreated {
                    reason: "no session found for the reference".into(),
                },
            }),
            (
                Phase::Checking {
                    payment,
                    session_id: None,
                },
                Event::Conflict { detail },
            ) => Ok(Phase::Done {
                payment,
                outcome: Final::Conflict { detail },
            }),
            (
                Phase::AwaitingPickup {
                    payment,
                    session_id,
                }
                | Phase::WaitingForCard {
                    payment,
                    session_id,
                    ..
                }
                | Phase::Processing {
                    payment,
                    session_id,
                    ..
                },
                Event::Polled(progress),
            ) => Ok(Self::progressed(payment, session_id, None, progress)),
            (
                Phase::Cancelling {
                    payment,
                    session_id,
                    reason,
                },
                Event::Polled(progress),
            ) => Ok(Self::progressed(
                payment,
                session_id,
                Some(reason),
                progress,
            )),
            (
                Phase::AwaitingPickup {
                    payment,
                    session_id,
                }
                | Phase::WaitingForCard {
                    payment,
                    session_id,
                    ..
                }
                | Phase::Processing {
                    payment,
                    session_id,
                    ..
                }
                | Phase::Checking {
                    payment,
                    session_id: Some(session_id),
                },
                Event::Cancel(reason),
            ) => Ok(Phase::Cancelling {
                payment,
                session_id,
                reason,
            }),
            (phase, event) => Err(invalid(&phase, &event)),
        }
    }

    /// Where a live payment goes after reading its progress. In `Cancelling` a not-yet-final
    /// payment stays there: the kiosk keeps reading until the cancel or the payment wins.
    fn progressed(
        payment: Payment,
        session_id: String,
        cancelling: Option<CancelReason>,
        progress: Progress,
    ) -> Phase {
        match (progress, cancelling) {
            (Progress::Ended(outcome), _) => Phase::Done { payment, outcome },
            (_, Some(reason)) => Phase::Cancelling {
                payment,
                session_id,
                reason,
            },
            (Progress::NotPickedUp, None) => Phase::AwaitingPickup {
                payment,
                session_id,
            },
            (Progress::Prompting { transaction_id }, None) => Phase::WaitingForCard {
                payment,
                session_id,
                transaction_id,
            },
            (Progress::Authorized { transaction_id }, None) => Phase::Processing {
                payment,
                session_id,
                transaction_id,
            },
        }
    }

    /// What the customer sees in this phase. `deadline` is the kiosk's timeout for the countdown.
    pub fn view(&self, deadline: tokio::time::Instant) -> KioskState {
        let p = self.payment();
        let amount = p.amount;
        let reference = p.merchant_reference.clone();
        match self {
            Phase::Creating(_) => KioskState::Creating { amount, reference },
            Phase::AwaitingPickup { .. } | Phase::WaitingForCard { .. } => {
                KioskState::WaitingForCard {
                    amount,
                    reference,
                    deadline,
                }
            }
            Phase::Processing { .. } => KioskState::Processing { amount, reference },
            // While the kiosk cancels it does not know yet whether the payment won the race:
            // "checking your payment" is the honest screen.
            Phase::Cancelling { .. } | Phase::Checking { .. } => KioskState::Checking { reference },
            Phase::Done { outcome, .. } => match outcome {
                Final::Approved {
                    transaction_id,
                    card,
                    ..
                } => KioskState::Approved {
                    amount,
                    reference,
                    transaction_id: transaction_id.clone(),
                    card: card.clone(),
                },
                Final::Declined { kind, .. } => KioskState::Declined {
                    amount,
                    reference,
                    kind: *kind,
                },
                Final::Cancelled { by, .. } => KioskState::Cancelled {
                    amount,
                    reference,
                    by: *by,
                },
                Final::TimedOut { .. } => KioskState::TimedOut { amount, reference },
                Final::Failed { kind, .. } => KioskState::Failed {
                    amount,
                    reference,
                    kind: *kind,
                },
                Final::NotCreated { .. } => KioskState::Failed {
                    amount,
                    reference,
                    kind: FailKind::Rejected,
                },
                Final::Conflict { .. } => KioskState::Conflict { amount, reference },
            },
        }
    }
}

impl fmt::Display for Final {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Final::Approved { status, .. } => write!(f, "approved ({})", status.as_str()),
            Final::Declined {
                kind: DeclineKind::Declined,
                ..
            } => f.write_str("declined"),
            Final::Declined {
                kind: DeclineKind::InsufficientFunds,
                ..
            } => f.write_str("declined (insufficient funds)"),
            Final::Cancelled {
                by: CancelledBy::Customer,
                ..
            } => f.write_str("cancelled by the customer"),
            Final::Cancelled {
                by: CancelledBy::Kiosk,
                ..
            } => f.write_str("cancelled by the kiosk"),
            Final::TimedOut { .. } => f.write_str("timed out"),
            Final::Failed {
                kind: FailKind::TerminalOffline,
                ..
            } => f.write_str("failed (terminal offline)"),
            Final::Failed {
                kind: FailKind::Technical,
                ..
            } => f.write_str("failed (technical)"),
            Final::Failed {
                kind: FailKind::Rejected,
                ..
            } => f.write_str("failed (rejected)"),
            Final::NotCreated { reason } => write!(f, "not created ({reason})"),
            Final::Conflict { detail } => write!(f, "conflict ({detail})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dintero::{
        Card, SessionEvent, SessionEventDetails, TransactionError, TransactionEvent,
    };
    use crate::money::Currency;

    fn payment() -> Payment {
        Payment {
            merchant_reference: "kiosk-1-20261124-000001".into(),
            amount: Money::new(39900, Currency::NOK),
            cart_reference: None,
            terminal_id: Some("T12345678-T0001".into()),
            started_at: None,
        }
    }

    fn session(events: &[(&str, Option<&str>)], cancelled_by: Option<&str>) -> Session {
        Session {
            id: "T12345678.s1".into(),
            order: None,
            created_at: None,
            expires_at: None,
            transaction_id: None,
            events: events
                .iter()
                .map(|(name, error)| SessionEvent {
                    name: name.to_string(),
                    created_at: None,
                    details: Some(SessionEventDetails {
                        error: error.map(str::to_string),
                    }),
                })
                .collect(),
            cancelled_at: cancelled_by.map(|_| "2026-11-24T10:00:00Z".into()),
            cancelled_by: cancelled_by.map(str::to_string),
        }
    }

    fn tx(status: &str, error_type: Option<&str>) -> Transaction {
        Transaction {
            id: "T12345678.t1".into(),
            status: TransactionStatus::parse(status),
            amount: 39900,
            currency: "NOK".into(),
            merchant_reference: None,
            merchant_reference_2: None,
            session_id: None,
            payment_product: None,
            payment_product_type: None,
            store: None,
            card: Some(Card {
                brand: Some("VISA".into()),
                masked_pan: Some("************0004".into()),
                entry_method: Some("contactless".into()),
            }),
            events: error_type
                .map(|t| TransactionEvent {
                    event: "AUTHORIZE".into(),
                    success: Some(false),
                    amount: None,
                    error: Some(TransactionError {
                        code: None,
                        message: None,
                        types: vec![t.into()],
                    }),
                    metadata: None,
                    created_at: None,
                })
                .into_iter()
                .collect(),
            created_at: None,
        }
    }

    const TX: &str = "T12345678.t1";
    const SID: &str = "T12345678.s1";

    fn ended(p: Progress) -> Final {
        match p {
            Progress::Ended(f) => f,
            other => panic!("not ended: {other:?}"),
        }
    }

    #[test]
    fn classify_live_statuses() {
        let s = session(&[], None);
        assert_eq!(classify(&s, None, None), Progress::NotPickedUp);
        assert_eq!(
            classify(&s, Some(&tx("INITIATED", None)), None),
            Progress::Prompting {
                transaction_id: TX.into()
            }
        );
        assert_eq!(
            classify(&s, Some(&tx("SOMETHING_NEW", None)), None),
            Progress::Prompting {
                transaction_id: TX.into()
            }
        );
        assert_eq!(
            classify(&s, Some(&tx("AUTHORIZED", None)), None),
            Progress::Authorized {
                transaction_id: TX.into()
            }
        );
    }

    #[test]
    fn classify_captured_wins_even_when_cancelling() {
        let s = session(&[("CANCELLED", None)], Some("kiosk-demo"));
        let f = ended(classify(
            &s,
            Some(&tx("CAPTURED", None)),
            Some(CancelReason::Timeout),
        ));
        assert_eq!(
            f,
            Final::Approved {
                transaction_id: TX.into(),
                card: Some("VISA **** 0004".into()),
                status: TransactionStatus::Captured
            }
        );
    }

    #[test]
    fn classify_declines() {
        let s = session(&[("PAY_FAILED", Some("authorization"))], None);
        assert_eq!(
            ended(classify(&s, Some(&tx("FAILED", Some("DECLINED"))), None)),
            Final::Declined {
                transaction_id: TX.into(),
                kind: DeclineKind::Declined
            }
        );
        assert_eq!(
            ended(classify(
                &s,
                Some(&tx("FAILED", Some("INSUFFICIENT_FUNDS"))),
                None
            )),
            Final::Declined {
                transaction_id: TX.into(),
                kind: DeclineKind::InsufficientFunds
            }
        );
        // No telling session event: the transaction's error type decides.
        let bare = session(&[], None);
        assert_eq!(
            ended(classify(&bare, Some(&tx("FAILED", Some("DECLINED"))), None)),
            Final::Declined {
                transaction_id: TX.into(),
                kind: DeclineKind::Declined
            }
        );
        assert_eq!(
            ended(classify(&bare, Some(&tx("DECLINED", None)), None)),
            Final::Declined {
                transaction_id: TX.into(),
                kind: DeclineKind::Declined
            }
        );
    }

    #[test]
    fn classify_cancels_and_timeouts() {
        let by_terminal = session(&[("CANCELLED", Some("cancelled"))], Some("terminal"));
        assert_eq!(
            ended(classify(&by_terminal, Some(&tx("FAILED", None)), None)),
            Final::Cancelled {
                transaction_id: Some(TX.into()),
                by: CancelledBy::Customer
            }
        );
        let terminal_timeout = session(&[("CANCELLED", Some("timeout"))], Some("terminal"));
        assert_eq!(
            ended(classify(&terminal_timeout, Some(&tx("FAILED", None)), None)),
            Final::TimedOut {
                transaction_id: Some(TX.into())
            }
        );
        let by_us = session(&[("CANCELLED", Some("cancelled"))], Some("kiosk-demo"));
        assert_eq!(
            ended(classify(
                &by_us,
                Some(&tx("FAILED", None)),
                Some(CancelReason::Timeout)
            )),
            Final::TimedOut {
                transaction_id: Some(TX.into())
            }
        );
        assert_eq!(
            ended(classify(
                &by_us,
                Some(&tx("FAILED", None)),
                Some(CancelReason::Requested)
            )),
            Final::Cancelled {
                transaction_id: Some(TX.into()),
                by: CancelledBy::Kiosk
            }
        );
        assert_eq!(
            ended(classify(
                &by_us,
                Some(&tx("AUTHORIZATION_VOIDED", None)),
                Some(CancelReason::Timeout)
            )),
            Final::TimedOut {
                transaction_id: Some(TX.into())
            }
        );
        // Never picked up, cancelled by us.
        let offline = session(&[("CANCELLED", None)], Some("kiosk-demo"));
        assert_eq!(
            ended(classify(
                &offline,
                None,
                Some(CancelReason::TerminalOffline)
            )),
            Final::Failed {
                transaction_id: None,
                kind: FailKind::TerminalOffline
            }
        );
        assert_eq!(
            ended(classify(&offline, None, Some(CancelReason::Recovery))),
            Final::Cancelled {
                transaction_id: None,
                by: CancelledBy::Kiosk
            }
        );
    }

    #[test]
    fn classify_technical_failure() {
        let s = session(&[("FAILED", Some("failed"))], None);
        assert_eq!(
            ended(classify(&s, Some(&tx("FAILED", Some("ERROR"))), None)),
            Final::Failed {
                transaction_id: Some(TX.into()),
                kind: FailKind::Technical
            }
        );
    }

    fn waiting() -> Phase {
        Phase::WaitingForCard {
            payment: payment(),
            session_id: SID.into(),
            transaction_id: TX.into(),
        }
    }

    #[test]
    fn creating_transitions() {
        let c = Phase::Creating(payment());
        assert_eq!(
            c.clone().apply(Event::Created {
                session_id: SID.into()
            }),
            Ok(Phase::AwaitingPickup {
                payment: payment(),
                session_id: SID.into()
            })
        );
        assert_eq!(
            c.clone().apply(Event::CreateRejected {
                reason: "409 TERMINAL_BUSY".into()
            }),
            Ok(Phase::Done {
                payment: payment(),
                outcome: Final::NotCreated {
                    reason: "409 TERMINAL_BUSY".into()
                }
            })
        );
        assert_eq!(
            c.clone().apply(Event::CreateUnknown),
            Ok(Phase::Checking {
                payment: payment(),
                session_id: None
            })
        );
        assert!(c.apply(Event::Polled(Progress::NotPickedUp)).is_err());
    }

    #[test]
    fn live_phases_follow_progress() {
        let pickup = Phase::AwaitingPickup {
            payment: payment(),
            session_id: SID.into(),
        };
        assert_eq!(
            pickup.clone().apply(Event::Polled(Progress::NotPickedUp)),
            Ok(pickup.clone())
        );
        assert_eq!(
            pickup.clone().apply(Event::Polled(Progress::Prompting {
                transaction_id: TX.into()
            })),
            Ok(waiting())
        );
        let processing = Phase::Processing {
            payment: payment(),
            session_id: SID.into(),
            transaction_id: TX.into(),
        };
        assert_eq!(
            waiting().apply(Event::Polled(Progress::Authorized {
                transaction_id: TX.into()
            })),
            Ok(processing.clone())
        );
        let approved = Final::Approved {
            transaction_id: TX.into(),
            card: None,
            status: TransactionStatus::Captured,
        };
        assert_eq!(
            processing.apply(Event::Polled(Progress::Ended(approved.clone()))),
            Ok(Phase::Done {
                payment: payment(),
                outcome: approved.clone()
            })
        );
        // A fast terminal can go from pickup straight to the end between two polls.
        assert_eq!(
            pickup.apply(Event::Polled(Progress::Ended(approved.clone()))),
            Ok(Phase::Done {
                payment: payment(),
                outcome: approved
            })
        );
    }

    #[test]
    fn cancel_transitions_and_the_payment_wins() {
        let cancelling = Phase::Cancelling {
            payment: payment(),
            session_id: SID.into(),
            reason: CancelReason::Timeout,
        };
        assert_eq!(
            waiting().apply(Event::Cancel(CancelReason::Timeout)),
            Ok(cancelling.clone())
        );
        let pickup = Phase::AwaitingPickup {
            payment: payment(),
            session_id: SID.into(),
        };
        assert_eq!(
            pickup.apply(Event::Cancel(CancelReason::TerminalOffline)),
            Ok(Phase::Cancelling {
                payment: payment(),
                session_id: SID.into(),
                reason: CancelReason::TerminalOffline
            })
        );
        // Still authorized after the cancel: keep reading, stay cancelling.
        assert_eq!(
            cancelling
                .clone()
                .apply(Event::Polled(Progress::Authorized {
                    transaction_id: TX.into()
                })),
            Ok(cancelling.clone())
        );
        let won = Final::Approved {
            transaction_id: TX.into(),
            card: None,
            status: TransactionStatus::Captured,
        };
        assert_eq!(
            cancelling
                .clone()
                .apply(Event::Polled(Progress::Ended(won.clone()))),
            Ok(Phase::Done {
                payment: payment(),
                outcome: won
            })
        );
        assert!(cancelling
            .apply(Event::Cancel(CancelReason::Requested))
            .is_err());
        let done = Phase::Done {
            payment: payment(),
            outcome: Final::TimedOut {
                transaction_id: None,
            },
        };
        assert!(done.apply(Event::Cancel(CancelReason::Requested)).is_err());
    }

    #[test]
    fn checking_transitions() {
        let checking = Phase::Checking {
            payment: payment(),
            session_id: None,
        };
        assert_eq!(
            checking.clone().apply(Event::Found {
                session_id: SID.into(),
                progress: Progress::NotPickedUp
            }),
            Ok(Phase::AwaitingPickup {
                payment: payment(),
                session_id: SID.into()
            })
        );
        assert_eq!(
            checking.clone().apply(Event::NotFound),
            Ok(Phase::Done {
                payment: payment(),
                outcome: Final::NotCreated {
                    reason: "no session found for the reference".into()
                }
            })
        );
        assert!(checking
            .clone()
            .apply(Event::Polled(Progress::NotPickedUp))
            .is_err());
        assert!(checking
            .apply(Event::Cancel(CancelReason::Recovery))
            .is_err());
        let known = Phase::Checking {
            payment: payment(),
            session_id: Some(SID.into()),
        };
        assert_eq!(
            known.clone().apply(Event::Polled(Progress::Authorized {
                transaction_id: TX.into()
            })),
            Ok(Phase::Processing {
                payment: payment(),
                session_id: SID.into(),
                transaction_id: TX.into()
            })
        );
        assert_eq!(
            known.clone().apply(Event::Cancel(CancelReason::Recovery)),
            Ok(Phase::Cancelling {
                payment: payment(),
                session_id: SID.into(),
                reason: CancelReason::Recovery
            })
        );
        assert!(known.clone().apply(Event::NotFound).is_err());
        let conflict = || Event::Conflict {
            detail: "amount 10000 instead of 39900".into(),
        };
        assert!(
            known.apply(conflict()).is_err(),
            "a payment whose session the journal names needs no lookup by reference"
        );
    }

    #[test]
    fn a_lookup_that_finds_only_another_payment_ends_in_conflict() {
        let checking = Phase::Checking {
            payment: payment(),
            session_id: None,
        };
        let conflict = || Event::Conflict {
            detail: "amount 10000 instead of 39900".into(),
        };
        let done = checking.apply(conflict()).unwrap();
        assert_eq!(
            done,
            Phase::Done {
                payment: payment(),
                outcome: Final::Conflict {
                    detail: "amount 10000 instead of 39900".into()
                }
            }
        );
        let Phase::Done { outcome, .. } = &done else {
            unreachable!()
        };
        assert_eq!(outcome.outcome(), Outcome::Conflict);
        assert_eq!(
            outcome.transaction_id(),
            None,
            "never another payment's money"
        );
        assert_eq!(
            done.view(tokio::time::Instant::now()),
            KioskState::Conflict {
                amount: payment().amount,
                reference: payment().merchant_reference
            }
        );
        assert!(done.apply(conflict()).is_err());
        for live in [Phase::Creating(payment()), waiting()] {
            assert!(live.apply(conflict()).is_err());
        }
    }

    #[test]
    fn views_match_phases() {
        let deadline = tokio::time::Instant::now();
        let cancelling = Phase::Cancelling {
            payment: payment(),
            session_id: SID.into(),
            reason: CancelReason::Timeout,
        };
        assert_eq!(cancelling.view(deadline).name(), "checking");
        assert_eq!(Phase::Creating(payment()).view(deadline).name(), "creating");
        assert_eq!(waiting().view(deadline).name(), "waiting_for_card");
        let c = Phase::Checking {
            payment: payment(),
            session_id: None,
        };
        assert_eq!(
            c.view(deadline),
            KioskState::Checking {
                reference: payment().merchant_reference
            }
        );
        let done = Phase::Done {
            payment: payment(),
            outcome: Final::NotCreated { reason: "x".into() },
        };
        assert_eq!(done.view(deadline).name(), "failed");
    }
}
