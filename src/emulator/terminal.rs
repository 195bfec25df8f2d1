//! The simulated terminal: which outcome a payment gets and when each step of it happens.
//!
//! A payment is a short script of timed [`Step`]s computed when the session is created. The
//! ledger applies each step once tokio's clock has passed its due time (lazily, on the next
//! request), so there are no background tasks to race with cancels, and tests with paused time
//! see exactly the same sequence as a demo in real time.

use std::time::Duration;

/// The outcome table for people: `kioskpay emulator --help` and the README print it, so that a
/// decline or a cancel can be made on purpose. A test keeps it true to [`Outcome::from_amount`].
pub const OUTCOME_TABLE: &str = "\
amount ends in  what the simulated terminal does (times scale with --time-scale)
.51             declined by the issuer after 3 s
.52             declined for insufficient funds after 3 s
.53             the customer cancels on the terminal after 3 s
.54             no card presented: the terminal gives up after 90 s
.55             offline: the terminal never picks the payment up
.56             technical failure after 3 s
.57             slow issuer: approved after 45 s
.58             approved after 2 s, captured only 20 s later
.59             chip and PIN: approved after 8 s
anything else   contactless card: approved after 2 s, captured 1 s later";

/// What the simulated terminal does with a payment (the emulator's outcome table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Contactless card after 2 s, `AUTHORIZED`, then `CAPTURED` 1 s later.
    Approve,
    /// `51`: the issuer declines after 3 s.
    Decline,
    /// `52`: declined for insufficient funds after 3 s.
    InsufficientFunds,
    /// `53`: the customer presses cancel on the terminal after 3 s.
    CustomerCancel,
    /// `54`: nobody presents a card; the terminal gives up after its own 90 s timeout.
    NoCard,
    /// `55`: the terminal is offline and never picks the session up.
    Offline,
    /// `56`: technical failure after 3 s.
    Fail,
    /// `57`: a slow issuer approves after 45 s.
    Slow,
    /// `58`: approved after 2 s, but `AUTHORIZED` for 20 s before `CAPTURED`.
    CaptureLag,
    /// `59`: chip and PIN, approved after 8 s.
    ChipPin,
    /// No amount asks for it (the control API or a `terminal_offline` fault does): the terminal
    /// picks the session up and then drops off the network mid-payment. The transaction stays
    /// `INITIATED` and the terminal busy until the session is cancelled.
    OfflineMidPayment,
}

impl Outcome {
    /// The outcome the last two digits of `order.amount` ask for.
    pub fn from_amount(amount: u64) -> Outcome {
        match amount % 100 {
            51 => Outcome::Decline,
            52 => Outcome::InsufficientFunds,
            53 => Outcome::CustomerCancel,
            54 => Outcome::NoCard,
            55 => Outcome::Offline,
            56 => Outcome::Fail,
            57 => Outcome::Slow,
            58 => Outcome::CaptureLag,
            59 => Outcome::ChipPin,
            _ => Outcome::Approve,
        }
    }

    /// Parses the control API's spelling (`"insufficient_funds"`).
    pub fn parse(name: &str) -> Option<Outcome> {
        Outcome::ALL.iter().copied().find(|o| o.name() == name)
    }

    /// The control API's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Approve => "approve",
            Outcome::Decline => "decline",
            Outcome::InsufficientFunds => "insufficient_funds",
            Outcome::CustomerCancel => "customer_cancel",
            Outcome::NoCard => "no_card",
            Outcome::Offline => "offline",
            Outcome::Fail => "fail",
            Outcome::Slow => "slow",
            Outcome::CaptureLag => "capture_lag",
            Outcome::ChipPin => "chip_pin",
            Outcome::OfflineMidPayment => "offline_mid_payment",
        }
    }

    /// Every outcome, for error messages that list the choices.
    pub const ALL: [Outcome; 11] = [
        Outcome::Approve,
        Outcome::Decline,
        Outcome::InsufficientFunds,
        Outcome::CustomerCancel,
        Outcome::NoCard,
        Outcome::Offline,
        Outcome::Fail,
        Outcome::Slow,
        Outcome::CaptureLag,
        Outcome::ChipPin,
        Outcome::OfflineMidPayment,
    ];

    /// The timed steps of this outcome, as delays from session creation at `time_scale`.
    pub fn script(self, time_scale: f64) -> Vec<(Duration, Step)> {
        let at = |secs: f64| scaled(secs, time_scale);
        let pickup = PICKUP_S;
        let ending = |after: f64, failure: Failure| {
            vec![
                (at(pickup), Step::Pickup),
                (at(pickup + after), Step::Fail(failure)),
            ]
        };
        let approved = |after: f64, entry: EntryMethod, capture_after: f64| {
            vec![
                (at(pickup), Step::Pickup),
                (at(pickup + after), Step::Authorize(entry)),
                (at(pickup + after + capture_after), Step::Capture),
            ]
        };
        match self {
            Outcome::Approve => approved(2.0, EntryMethod::Contactless, 1.0),
            Outcome::Decline => ending(3.0, Failure::Declined),
            Outcome::InsufficientFunds => ending(3.0, Failure::InsufficientFunds),
            Outcome::CustomerCancel => ending(3.0, Failure::CustomerCancel),
            Outcome::NoCard => ending(90.0, Failure::Timeout),
            Outcome::Offline => Vec::new(),
            Outcome::Fail => ending(3.0, Failure::Technical),
            Outcome::Slow => approved(45.0, EntryMethod::Contactless, 1.0),
            Outcome::CaptureLag => approved(2.0, EntryMethod::Contactless, 20.0),
            Outcome::ChipPin => approved(8.0, EntryMethod::Chip, 1.0),
            Outcome::OfflineMidPayment => vec![(at(pickup), Step::Pickup)],
        }
    }
}

/// Seconds from session creation until a simulated terminal picks the session up.
pub const PICKUP_S: f64 = 0.5;

/// Seconds the cardholder takes to approve a refund on the terminal.
pub const REFUND_S: f64 = 2.0;

/// Seconds a terminal operation (`end_of_day`, …) runs: `PENDING` for the first half, `IN_PROGRESS` for the
/// second, then `COMPLETED`.
pub const OPERATION_S: f64 = 2.0;

/// `secs` of emulated time at `time_scale` as a tokio duration. The scale was checked to be
/// finite and positive when the emulator started, so this cannot overflow for the table's
/// delays.
pub fn scaled(secs: f64, time_scale: f64) -> Duration {
    Duration::from_secs_f64(secs * time_scale)
}

/// One timed step of a payment on the simulated terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The terminal takes the session: the transaction appears as `INITIATED`.
    Pickup,
    /// The card was read and the issuer approved.
    Authorize(EntryMethod),
    /// Dintero captured the authorization.
    Capture,
    /// The payment ended without money.
    Fail(Failure),
}

/// How the card was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryMethod {
    /// Tap.
    Contactless,
    /// Inserted, with PIN.
    Chip,
}

impl EntryMethod {
    /// Dintero's `card.entry_method`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryMethod::Contactless => "contactless",
            EntryMethod::Chip => "chip",
        }
    }
}

/// Why a payment ended without money.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The issuer said no.
    Declined,
    /// The issuer said no for lack of funds.
    InsufficientFunds,
    /// The customer pressed cancel on the terminal.
    CustomerCancel,
    /// No card was presented before the terminal's timeout.
    Timeout,
    /// The terminal or acquirer failed.
    Technical,
    /// The API client cancelled the session while the terminal waited for a card.
    ApiCancel,
}

impl Failure {
    /// `error.type[0]` of the failed transaction event.
    pub fn error_type(self) -> &'static str {
        match self {
            Failure::Declined => "DECLINED",
            Failure::InsufficientFunds => "INSUFFICIENT_FUNDS",
            Failure::CustomerCancel | Failure::ApiCancel => "CANCELLED",
            Failure::Timeout => "TIMEOUT",
            Failure::Technical => "ERROR",
        }
    }

    /// `error.message` and `seitatech:outcomeReason` of the failed transaction event.
    pub fn message(self) -> &'static str {
        match self {
            Failure::Declined => "Declined by issuer",
            Failure::InsufficientFunds => "Insufficient funds",
            Failure::CustomerCancel => "Cancelled by the customer on the terminal",
            Failure::Timeout => "No card presented before the terminal timed out",
            Failure::Technical => "Technical error on the terminal",
            Failure::ApiCancel => "Cancelled by the merchant",
        }
    }

    /// The session event it produces and that event's `details.error`.
    pub fn session_event(self) -> (&'static str, &'static str) {
        match self {
            Failure::Declined | Failure::InsufficientFunds => ("PAY_FAILED", "authorization"),
            Failure::CustomerCancel | Failure::ApiCancel => ("CANCELLED", "cancelled"),
            Failure::Timeout => ("CANCELLED", "timeout"),
            Failure::Technical => ("FAILED", "failed"),
        }
    }

    /// The `error` query parameter of a callback with `report_error=true`.
    pub fn callback_error(self) -> &'static str {
        match self {
            Failure::Declined | Failure::InsufficientFunds => "authorization",
            Failure::CustomerCancel | Failure::ApiCancel | Failure::Timeout => "cancelled",
            Failure::Technical => "failed",
        }
    }

    /// Whether the session counts as cancelled (`cancelled_at` set).
    pub fn cancels_session(self) -> bool {
        matches!(
            self,
            Failure::CustomerCancel | Failure::Timeout | Failure::ApiCancel
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_two_digits_pick_the_outcome() {
        assert_eq!(Outcome::from_amount(39951), Outcome::Decline);
        assert_eq!(Outcome::from_amount(55), Outcome::Offline);
        assert_eq!(Outcome::from_amount(10059), Outcome::ChipPin);
        assert_eq!(Outcome::from_amount(39900), Outcome::Approve);
        assert_eq!(Outcome::from_amount(5150), Outcome::Approve);
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.name()), Some(o));
        }
        assert_eq!(Outcome::parse("APPROVE"), None);
    }

    #[test]
    fn the_outcome_table_for_people_says_what_each_ending_does() {
        let words = |o: Outcome| match o {
            Outcome::Approve => "contactless card: approved",
            Outcome::Decline => "declined by the issuer",
            Outcome::InsufficientFunds => "insufficient funds",
            Outcome::CustomerCancel => "the customer cancels",
            Outcome::NoCard => "no card presented",
            Outcome::Offline => "never picks the payment up",
            Outcome::Fail => "technical failure",
            Outcome::Slow => "slow issuer",
            Outcome::CaptureLag => "captured only 20 s later",
            Outcome::ChipPin => "chip and PIN",
            Outcome::OfflineMidPayment => "(no amount asks for it)",
        };
        let mut endings = Vec::new();
        for line in OUTCOME_TABLE.lines().skip(1) {
            let (ending, what) = line.split_once(' ').unwrap();
            let outcome = match ending.strip_prefix('.') {
                Some(digits) => {
                    let n: u64 = digits.parse().unwrap();
                    endings.push(n);
                    Outcome::from_amount(39900 + n)
                }
                None => Outcome::from_amount(39900),
            };
            assert!(what.contains(words(outcome)), "{line} is not {outcome:?}");
        }
        assert_eq!(endings, (51..=59).collect::<Vec<u64>>());
    }

    #[test]
    fn scripts_scale_and_start_with_pickup() {
        let s = Outcome::CaptureLag.script(0.01);
        assert_eq!(s[0], (Duration::from_millis(5), Step::Pickup));
        assert_eq!(s[2].1, Step::Capture);
        assert_eq!(s[2].0, scaled(22.5, 0.01));
        assert!(Outcome::Offline.script(1.0).is_empty());
        let s = Outcome::NoCard.script(1.0);
        assert_eq!(
            s[1],
            (Duration::from_secs_f64(90.5), Step::Fail(Failure::Timeout))
        );
    }
}
