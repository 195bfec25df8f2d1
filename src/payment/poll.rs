//! How often a running payment is read: the kiosk's whole cost in requests, and most of the
//! delay between the terminal's answer and the customer's screen.
//!
//! A read costs a request; a change seen late costs the customer waiting time. The phases of a
//! payment have very different odds of changing in the next moment, so one period for all of
//! them either wastes requests or keeps the customer waiting:
//!
//! | phase | what the payment waits for | adaptive period (base `b` = `payment.poll_interval_ms`) |
//! |-------|----------------------------|------------------------------------------|
//! | awaiting pickup | the terminal taking the session, about 0.5 s after the create | `2b`, the first read `2b` after the create (a read at once cannot find it picked up) |
//! | waiting for card | a person reading the amount and presenting a card: seconds, up to the terminal's own 90 s | `6b` for 20 s, then `16b` |
//! | authorized | the capture Dintero makes by itself, usually within a second | `b` for 2 s, `4b` to 5 s, `8b` to 30 s, then `16b` |
//! | cancelling, checking | the answer to the kiosk's own question | `2b` |
//!
//! The approval a customer waits for is the capture, so the capture is where the kiosk looks
//! most often; a customer standing at a terminal that asks for a card is not waiting for the
//! kiosk. But the capture usually follows the authorization within a second, and a card-phase
//! read that lands in that second sees the payment authorized and switches to reads every
//! 250 ms, while one that lands after it finds the payment captured up to a card period late.
//! So the card period decides the approval's delay more than the capture period does: at
//! 1.5 s (`6b`) two reads in three land in that second, at 2 s only one in two. A capture that
//! has not come within 2 s is a lagging one (seconds to minutes), so the reads thin out from
//! there.
//!
//! `kioskpay bench` measured, over the emulator's mix of quick, chip, slow and capture-lag
//! payments: with card reads every 500 ms
//! and capture reads every 250 ms for 5 s (this table's first version) 1.99 requests a second
//! per payment for an approval on screen p50 86 ms after its capture; fixed 500 ms polling
//! 2.24/s for p50 270 ms. With card reads every 2 s and `2b` from 2 to 5 s of the capture
//! (the second version), 0.81/s for p50 257–327 ms across runs: at the 300 ms target's edge.
//! For this table a model of the same mix gives p50 0.23 s at about 0.1/s more; README,
//! "Performance", holds the latest `kioskpay bench` table.
//!
//! [`Polling::Fixed`] reads at one period in every phase, as kioskpay did before; the
//! benchmark (`kioskpay bench`) runs both side by side.

use std::time::Duration;

use serde::Deserialize;

/// What a payment is waiting for, as far as how often to read it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// The terminal has not taken the session yet.
    Pickup,
    /// The terminal prompts for a card.
    Card,
    /// The payment is authorized; Dintero captures it by itself.
    Capture,
    /// The kiosk's own cancel, or a lookup of a payment it lost track of.
    Answer,
}

/// The two policies, as `payment.polling` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PollingKind {
    /// By phase and time in phase (the default).
    Adaptive,
    /// One period for every phase.
    Fixed,
}

/// How often a running payment is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polling {
    /// Often where a change is likely and someone waits for it, seldom where a person is
    /// taking their time; `base` is the shortest period.
    Adaptive {
        /// The shortest period, used while the capture is due.
        base: Duration,
    },
    /// Every `period`, whatever the payment is waiting for.
    Fixed {
        /// The period.
        period: Duration,
    },
}

impl Polling {
    /// The policy `kind` with `payment.poll_interval_ms` as its base or period.
    pub fn new(kind: PollingKind, interval: Duration) -> Polling {
        match kind {
            PollingKind::Adaptive => Polling::Adaptive { base: interval },
            PollingKind::Fixed => Polling::Fixed { period: interval },
        }
    }

    /// The configured interval: the adaptive base or the fixed period. Retries after an error
    /// back off from it.
    pub fn base(self) -> Duration {
        match self {
            Polling::Adaptive { base } => base,
            Polling::Fixed { period } => period,
        }
    }

    /// How long after the create the first read of a new payment comes. A fixed policy reads at
    /// once, as it always did; the adaptive one waits until the terminal can have taken it.
    pub fn first_read(self) -> Duration {
        match self {
            Polling::Adaptive { base } => base * 2,
            Polling::Fixed { .. } => Duration::ZERO,
        }
    }

    /// The wait before the next read of a payment `waiting` for something since `waited`.
    pub fn next(self, waiting: Waiting, waited: Duration) -> Duration {
        let base = match self {
            Polling::Fixed { period } => return period,
            Polling::Adaptive { base } => base,
        };
        let secs = waited.as_secs();
        let times = match waiting {
            Waiting::Pickup | Waiting::Answer => 2,
            Waiting::Card if secs < 20 => 6,
            Waiting::Card => 16,
            Waiting::Capture if secs < 2 => 1,
            Waiting::Capture if secs < 5 => 4,
            Waiting::Capture if secs < 30 => 8,
            Waiting::Capture => 16,
        };
        base * times
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Duration = Duration::from_millis(250);

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_fixed_policy_reads_at_once_and_then_at_its_period_in_every_phase() {
        let fixed = Polling::new(PollingKind::Fixed, Duration::from_millis(500));
        assert_eq!(fixed.first_read(), Duration::ZERO);
        for waiting in [
            Waiting::Pickup,
            Waiting::Card,
            Waiting::Capture,
            Waiting::Answer,
        ] {
            for waited in [s(0), s(10), s(100)] {
                assert_eq!(fixed.next(waiting, waited), Duration::from_millis(500));
            }
        }
        assert_eq!(fixed.base(), Duration::from_millis(500));
    }

    #[test]
    fn the_adaptive_policy_waits_for_the_pickup_before_its_first_read() {
        let adaptive = Polling::new(PollingKind::Adaptive, B);
        assert_eq!(adaptive.first_read(), B * 2);
        assert_eq!(adaptive.next(Waiting::Pickup, s(0)), B * 2);
        assert_eq!(adaptive.next(Waiting::Answer, s(100)), B * 2);
        assert_eq!(adaptive.base(), B);
    }

    #[test]
    fn the_adaptive_policy_looks_most_often_while_the_capture_is_due() {
        let adaptive = Polling::Adaptive { base: B };
        assert_eq!(adaptive.next(Waiting::Capture, s(0)), B);
        assert_eq!(
            adaptive.next(Waiting::Capture, Duration::from_millis(1_999)),
            B
        );
        assert_eq!(adaptive.next(Waiting::Capture, s(2)), B * 4);
        assert_eq!(adaptive.next(Waiting::Capture, s(5)), B * 8);
        assert_eq!(adaptive.next(Waiting::Capture, s(30)), B * 16);
    }

    #[test]
    fn the_adaptive_policy_looks_less_often_the_longer_a_customer_takes() {
        let adaptive = Polling::Adaptive { base: B };
        assert_eq!(adaptive.next(Waiting::Card, s(0)), B * 6);
        assert_eq!(
            adaptive.next(Waiting::Card, Duration::from_millis(19_999)),
            B * 6
        );
        assert_eq!(adaptive.next(Waiting::Card, s(20)), B * 16);
        // Never slower than the slowest step: a terminal's own 90 s timeout is seen within 4 s.
        assert_eq!(adaptive.next(Waiting::Card, s(3600)), B * 16);
    }
}
