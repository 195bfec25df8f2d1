//! Payments that ended `not_created` stay under watch for a while, in case Dintero creates
//! them after all.
//!
//! `not_created` after an ambiguous create call (a timeout, a reset, a lost answer) rests on
//! absence of evidence: two lookups by `merchant_reference`, far enough apart, found nothing.
//! A create stuck in Dintero's back end can still land after that, and then the terminal prompts
//! for a payment the kiosk has written off: a customer who pays it is charged while the journal
//! says nothing happened, the worst failure a kiosk can have, and the terminal refuses every
//! new session (`409 TERMINAL_BUSY`) until that payment ends.
//!
//! So every payment that ends `not_created` with its intent in the journal is looked up again
//! for [`WINDOW`]: at the idle kiosk's health checks, [`FIRST_LOOK`] after it was written off
//! and then at doubling intervals (about five lookups in all, so that a bad day with many
//! write-offs does not turn into a storm of searches), and every one of them at once when
//! Dintero answers a new create with `409`, the sign that something holds the terminal. One that turns up is journaled as `reopened` and settled
//! with recovery's rules: cancelled if no terminal picked it up, followed to its outcome if
//! one did. The watch list is rebuilt from the journal at start (the `finished_at` of each
//! `not_created` payment), so a restart does not end the watch.
//!
//! A create that Dintero refused outright (a `4xx`) cannot land later; it is watched all the
//! same, because the journal does not keep why a payment was not created, and a lookup that
//! finds nothing costs one search call per health check.

use std::collections::VecDeque;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::journal::{Outcome, PaymentRecord};
use crate::money::Currency;
use crate::payment::Payment;

/// How long a `not_created` payment is looked for: far beyond any call timeout a kiosk uses,
/// short enough that the lookups stop on a kiosk that has a bad day.
pub const WINDOW: Duration = Duration::from_secs(10 * 60);

/// The first lookup after a write-off; each later one waits twice as long as the one before.
pub const FIRST_LOOK: Duration = Duration::from_secs(10);

/// One payment under watch.
#[derive(Debug)]
struct Watched {
    payment: Payment,
    /// When its window ends.
    until: Instant,
    /// When it is next due for a lookup.
    next: Instant,
    /// The wait after that lookup.
    interval: Duration,
}

/// The payments under watch, oldest first.
#[derive(Debug, Default)]
pub struct LateWatch {
    watched: VecDeque<Watched>,
}

impl LateWatch {
    /// Rebuilds the watch from a journal replay: every `not_created` payment that ended less
    /// than [`WINDOW`] before `now_utc` is watched for the rest of its window.
    pub fn from_journal<'a>(
        payments: impl IntoIterator<Item = &'a PaymentRecord>,
        now_utc: OffsetDateTime,
        default_currency: Currency,
    ) -> LateWatch {
        let mut watch = LateWatch::default();
        let now = Instant::now();
        for p in payments {
            if p.outcome != Some(Outcome::NotCreated) {
                continue;
            }
            let Some(ended) = p
                .finished_at
                .as_deref()
                .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
            else {
                continue;
            };
            // A clock that went backwards makes the age negative: watch for the whole window.
            let age = Duration::try_from(now_utc - ended).unwrap_or(Duration::ZERO);
            let Some(left) = WINDOW.checked_sub(age) else {
                continue;
            };
            // Due at once: the kiosk may have been off for most of the window.
            watch.watched.push_back(Watched {
                payment: Payment::from_record(p, default_currency),
                until: now + left,
                next: now,
                interval: FIRST_LOOK,
            });
        }
        watch
    }

    /// Watches a payment that has just ended `not_created`.
    pub fn watch(&mut self, payment: Payment) {
        self.found(&payment.merchant_reference);
        let now = Instant::now();
        self.watched.push_back(Watched {
            payment,
            until: now + WINDOW,
            next: now + FIRST_LOOK,
            interval: FIRST_LOOK * 2,
        });
    }

    /// Drops what has been watched long enough; returns what is due for a lookup now (every
    /// payment still watched when `all`), oldest first, and schedules each one's next lookup.
    pub fn due(&mut self, all: bool) -> Vec<Payment> {
        let now = Instant::now();
        self.watched.retain(|w| w.until > now);
        let mut due = Vec::new();
        for w in self.watched.iter_mut().filter(|w| all || w.next <= now) {
            w.next = now + w.interval;
            w.interval = w.interval.saturating_mul(2);
            due.push(w.payment.clone());
        }
        due
    }

    /// Stops watching a payment that was found (and is now settled like any other).
    pub fn found(&mut self, merchant_reference: &str) {
        self.watched
            .retain(|w| w.payment.merchant_reference != merchant_reference);
    }

    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;
    use time::macros::datetime;

    fn record(
        reference: &str,
        outcome: Option<Outcome>,
        finished_at: Option<&str>,
    ) -> PaymentRecord {
        PaymentRecord {
            merchant_reference: reference.into(),
            amount: 39900,
            currency: "NOK".into(),
            cart_reference: Some("KID1".into()),
            terminal_id: "T12345678-T0001".into(),
            session_id: None,
            transaction_id: None,
            state: "not_created".into(),
            outcome,
            status: None,
            started_at: "2026-11-24T08:00:00Z".into(),
            finished_at: finished_at.map(str::to_string),
            reopened_at: None,
        }
    }

    fn references(watch: &mut LateWatch, all: bool) -> Vec<String> {
        watch
            .due(all)
            .into_iter()
            .map(|p| p.merchant_reference)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_journal_gives_the_not_created_payments_of_the_last_window() {
        let now = datetime!(2026-11-24 08:20:00 UTC);
        let journal = [
            record(
                "recent",
                Some(Outcome::NotCreated),
                Some("2026-11-24T08:15:00Z"),
            ),
            record(
                "old",
                Some(Outcome::NotCreated),
                Some("2026-11-24T08:05:00Z"),
            ),
            record(
                "approved",
                Some(Outcome::Approved),
                Some("2026-11-24T08:19:00Z"),
            ),
            record("open", None, None),
            record("garbled", Some(Outcome::NotCreated), Some("yesterday")),
            record(
                "future",
                Some(Outcome::NotCreated),
                Some("2026-11-24T09:00:00Z"),
            ),
        ];
        let mut watch = LateWatch::from_journal(&journal, now, Currency::NOK);
        let due = watch.due(false);
        let names: Vec<&str> = due.iter().map(|p| p.merchant_reference.as_str()).collect();
        assert_eq!(names, ["recent", "future"], "due at once after a start");
        assert_eq!(due[0].amount, Money::new(39900, Currency::NOK));
        assert_eq!(due[0].cart_reference.as_deref(), Some("KID1"));
        // "recent" has 5 of its 10 minutes left; "future" (a clock set back) all 10.
        tokio::time::advance(Duration::from_secs(5 * 60 + 1)).await;
        assert_eq!(references(&mut watch, true), ["future"]);
        tokio::time::advance(Duration::from_secs(5 * 60)).await;
        assert!(references(&mut watch, true).is_empty() && watch.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn lookups_come_at_doubling_intervals_until_found_or_the_window_ends() {
        let mut watch = LateWatch::default();
        let payment = |r: &str| Payment {
            merchant_reference: r.into(),
            amount: Money::new(100, Currency::NOK),
            cart_reference: None,
            terminal_id: None,
            started_at: None,
        };
        watch.watch(payment("a"));
        watch.watch(payment("b"));
        watch.watch(payment("b"));
        assert!(references(&mut watch, false).is_empty(), "not due yet");
        assert_eq!(
            references(&mut watch, true),
            ["a", "b"],
            "all at a 409, once each"
        );
        watch.found("b");
        // Polled every second for the whole window: the lookup forced at 0 s put "a"'s next
        // one at 20 s, and each wait doubles from there.
        let mut lookups = Vec::new();
        for second in 1..=700u64 {
            tokio::time::advance(Duration::from_secs(1)).await;
            if !references(&mut watch, false).is_empty() {
                lookups.push(second);
            }
        }
        assert_eq!(lookups, [20, 60, 140, 300]);
        assert!(watch.is_empty(), "a's window is over");
    }
}
