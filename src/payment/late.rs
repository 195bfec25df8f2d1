//! Payments that ended `not_created` (or `conflict`: only another payment was found under
//! their reference) stay under watch for a while, in case Dintero creates them after all.
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
//! one did.
//!
//! The watch list is rebuilt from the journal at start, so a restart does not end the watch.
//! Which payments it takes is not left to the wall clock: a Raspberry Pi has no real-time
//! clock, and one that journaled a write-off before NTP stepped its clock forward would find
//! that payment hours old after a restart and drop it, and a late create would then charge a
//! customer the journal says nothing about. So membership rests on what a clock step cannot
//! change, the journal's order: the newest [`NEWEST_AT_START`] `not_created` payments are
//! always watched, however old their timestamps say they are. Those the wall clock places
//! inside the last [`WINDOW`] are watched too (a bad day's burst of write-offs beyond the
//! newest few), and a timestamp in the future or unreadable never excludes one. Every payment
//! taken is watched for a whole [`WINDOW`] from the start, since how much of its window passed
//! before the restart is exactly what the clock cannot tell: the error is always towards
//! watching, at the price of a few searches after each start.
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

/// How many of the journal's newest `not_created` payments are watched after a start whatever
/// their timestamps say: more write-offs than this within one [`WINDOW`] need a broken network
/// for minutes, and then the wall clock still adds the ones it places inside the window.
pub const NEWEST_AT_START: usize = 10;

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
    /// Rebuilds the watch from a journal replay (in journal order, oldest first): the newest
    /// [`NEWEST_AT_START`] `not_created` payments, and any other that `now_utc` places less
    /// than [`WINDOW`] after its end, each watched for a whole window from now.
    pub fn from_journal<'a>(
        payments: impl IntoIterator<Item = &'a PaymentRecord>,
        now_utc: OffsetDateTime,
        default_currency: Currency,
    ) -> LateWatch {
        let written_off: Vec<&PaymentRecord> = payments
            .into_iter()
            .filter(|p| matches!(p.outcome, Some(Outcome::NotCreated | Outcome::Conflict)))
            .collect();
        let newest_from = written_off.len().saturating_sub(NEWEST_AT_START);
        let recent_by_clock = |p: &PaymentRecord| {
            let ended = p
                .finished_at
                .as_deref()
                .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok());
            // A clock that went backwards, or a timestamp nobody can read: watched.
            ended.is_none_or(|ended| now_utc - ended < WINDOW)
        };
        let mut watch = LateWatch::default();
        let now = Instant::now();
        for (i, p) in written_off.into_iter().enumerate() {
            if i < newest_from && !recent_by_clock(p) {
                continue;
            }
            // Due at once: the kiosk may have been off for most of the window.
            watch.watched.push_back(Watched {
                payment: Payment::from_record(p, default_currency),
                until: now + WINDOW,
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

    /// `n` write-offs that the wall clock places hours before `now` (journaled before NTP
    /// stepped the clock forward), named `step-0` (oldest) to `step-<n-1>`.
    fn stepped(n: usize) -> Vec<PaymentRecord> {
        (0..n)
            .map(|i| {
                record(
                    &format!("step-{i}"),
                    Some(Outcome::NotCreated),
                    Some("2026-11-24T02:00:00Z"),
                )
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_journal_gives_the_not_created_payments_of_the_last_window() {
        let now = datetime!(2026-11-24 08:20:00 UTC);
        let mut journal = vec![
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
        // Newer write-offs fill the journal's part, so that the clock decides for the six.
        journal.extend(stepped(NEWEST_AT_START));
        let mut watch = LateWatch::from_journal(&journal, now, Currency::NOK);
        let due = watch.due(false);
        let names: Vec<&str> = due.iter().map(|p| p.merchant_reference.as_str()).collect();
        assert_eq!(
            names[..3],
            ["recent", "garbled", "future"],
            "due at once after a start; an unreadable time errs towards watching"
        );
        assert_eq!(names.len(), 3 + NEWEST_AT_START);
        assert_eq!(due[0].amount, Money::new(39900, Currency::NOK));
        assert_eq!(due[0].cart_reference.as_deref(), Some("KID1"));
        // Every one for a whole window from the start: the clock cannot say how much of its
        // window passed before.
        tokio::time::advance(WINDOW - Duration::from_secs(1)).await;
        assert_eq!(references(&mut watch, true).len(), 3 + NEWEST_AT_START);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(references(&mut watch, true).is_empty() && watch.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_off_hours_old_by_a_stepped_clock_is_still_watched() {
        // Written off at what the clock called 02:00; NTP then stepped the clock six hours
        // forward, and the kiosk restarted.
        let now = datetime!(2026-11-24 08:20:00 UTC);
        let journal = stepped(1);
        let mut watch = LateWatch::from_journal(&journal, now, Currency::NOK);
        assert_eq!(references(&mut watch, false), ["step-0"], "due at once");
        tokio::time::advance(WINDOW - Duration::from_secs(1)).await;
        assert_eq!(references(&mut watch, true), ["step-0"]);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(
            references(&mut watch, true).is_empty() && watch.is_empty(),
            "a whole window from the start, then no more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_newest_write_offs_are_watched_whatever_the_clock_says() {
        let now = datetime!(2026-11-24 08:20:00 UTC);
        let mut journal = stepped(25);
        // An older one that the clock places inside the window is watched as well.
        journal.insert(
            3,
            record(
                "inside-window",
                Some(Outcome::NotCreated),
                Some("2026-11-24T08:18:00Z"),
            ),
        );
        let mut watch = LateWatch::from_journal(&journal, now, Currency::NOK);
        let mut expected = vec!["inside-window".to_string()];
        expected.extend((25 - NEWEST_AT_START..25).map(|i| format!("step-{i}")));
        assert_eq!(references(&mut watch, true), expected);
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
