//! Fleet metrics: a Prometheus text file for node_exporter's textfile collector.
//!
//! With `[metrics] textfile = "/var/lib/node_exporter/textfile_collector/kioskpay.prom"` the
//! daemon rewrites that file every `interval_s` seconds (and after each payment). It writes a
//! temporary file in the same directory and renames it over the old one, so node_exporter
//! never reads half a file. Start node_exporter with
//! `--collector.textfile.directory=/var/lib/node_exporter/textfile_collector`; the directory
//! must be writable by the `kioskpay` user (the package creates it, group `kioskpay`, mode 0775).
//!
//! The metrics only observe: [`PaymentReport`]s, the published [`KioskState`], the gateway's
//! errors (through [`Metered`]) and counters other tasks bump. Nothing here feeds back into the
//! flow, so a full disk under the metrics file cannot stop a payment.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `kioskpay_payments_total{outcome}` | counter | finished payments by outcome (`approved`, `declined`, `cancelled`, `timed_out`, `failed`, `not_created`, `conflict`: a payment found under its reference that proved to be another) |
//! | `kioskpay_payment_duration_seconds` | histogram | from the cart's `creating` to the payment's outcome |
//! | `kioskpay_api_errors_total{kind}` | counter | Dintero calls that failed: `auth`, `rejected`, `unknown`, `unreachable` |
//! | `kioskpay_scanner_reconnects_total` | counter | the scanner came back after being unavailable |
//! | `kioskpay_display_errors_total` | counter | customer display panel failures |
//! | `kioskpay_callbacks_verified_total` | counter | signed Dintero callbacks that had the flow read a payment at once (`[callback]`) |
//! | `kioskpay_callbacks_rejected_total` | counter | callback requests that did nothing: unsigned, forged, stale, malformed, too large or slow, over the rate limit, or a replay |
//! | `kioskpay_journal_bytes` | gauge | size of the payment journal |
//! | `kioskpay_uptime_seconds` | gauge | since the daemon started |
//! | `kioskpay_state{state}` | gauge | 1 for the state the kiosk is in now |
//! | `kioskpay_ready` | gauge | 1 once recovery is over and while carts are taken; 0 while card payment is unavailable (Dintero, terminal, scanner, a journal that takes no writes) or out of service |

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::warn;

use crate::callback::CallbackCounts;
use crate::dintero::{
    ApiError, CreatedSession, Gateway, RefundOutcome, RefundRequest, Session,
    SessionProfileRequest, Terminal, Transaction, TransactionQuery,
};
use crate::payment::flow::PaymentReport;
use crate::state::KioskState;

/// Upper bounds of the payment duration histogram, in seconds: a tap takes 5-20 s, a PIN entry
/// up to a minute, the default kiosk timeout is 120 s.
const DURATION_BUCKETS: [f64; 8] = [5.0, 10.0, 20.0, 30.0, 60.0, 90.0, 120.0, 180.0];

/// Counters bumped by tasks other than the metrics writer.
#[derive(Debug, Default)]
pub struct Counters {
    /// Gateway errors by kind: auth, rejected, unknown, unreachable.
    api_errors: [AtomicU64; 4],
    /// The scanner came back after being unavailable.
    pub scanner_reconnects: AtomicU64,
    /// Customer display panel failures.
    pub display_errors: AtomicU64,
    /// What the callback listener answered; it counts into these itself.
    pub callbacks: Arc<CallbackCounts>,
}

const API_ERROR_KINDS: [&str; 4] = ["auth", "rejected", "unknown", "unreachable"];

impl Counters {
    /// Counts one failed Dintero call.
    pub fn api_error(&self, e: &ApiError) {
        let i = match e {
            ApiError::Auth { .. } => 0,
            ApiError::Rejected { .. } => 1,
            ApiError::Unknown { .. } => 2,
            ApiError::Unreachable { .. } => 3,
        };
        self.api_errors[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// The counters of this process: the daemon has one kiosk, and the log layer that counts display
/// errors ([`DisplayErrors`]) is installed before the kiosk exists.
pub fn process_counters() -> Arc<Counters> {
    static COUNTERS: std::sync::OnceLock<Arc<Counters>> = std::sync::OnceLock::new();
    COUNTERS.get_or_init(Arc::default).clone()
}

/// A log layer that counts the customer display's failures from its warnings and errors. The
/// display logs a failing panel at most every few seconds and says how many failures it did not
/// log (`not_logged`); both are counted.
pub struct DisplayErrors {
    counters: Arc<Counters>,
}

impl DisplayErrors {
    /// Counts into `counters`.
    pub fn new(counters: Arc<Counters>) -> DisplayErrors {
        DisplayErrors { counters }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for DisplayErrors {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = event.metadata();
        if *meta.level() > tracing::Level::WARN || !meta.target().starts_with("kioskpay::display") {
            return;
        }
        struct NotLogged(u64);
        impl tracing::field::Visit for NotLogged {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                if field.name() == "not_logged" {
                    self.0 = value;
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut not_logged = NotLogged(0);
        event.record(&mut not_logged);
        self.counters
            .display_errors
            .fetch_add(1 + not_logged.0, Ordering::Relaxed);
    }
}

/// A [`Gateway`] that counts the errors of the one it wraps, and changes nothing else.
pub struct Metered<G> {
    inner: Arc<G>,
    counters: Arc<Counters>,
}

impl<G> Metered<G> {
    /// Wraps `inner`; errors are counted in `counters`.
    pub fn new(inner: Arc<G>, counters: Arc<Counters>) -> Metered<G> {
        Metered { inner, counters }
    }

    fn count<T>(&self, result: Result<T, ApiError>) -> Result<T, ApiError> {
        if let Err(e) = &result {
            self.counters.api_error(e);
        }
        result
    }
}

impl<G: Gateway> Gateway for Metered<G> {
    async fn create_session(
        &self,
        request: &SessionProfileRequest,
    ) -> Result<CreatedSession, ApiError> {
        self.count(self.inner.create_session(request).await)
    }
    async fn get_session(&self, id: &str) -> Result<Session, ApiError> {
        self.count(self.inner.get_session(id).await)
    }
    async fn search_sessions(&self, text: &str) -> Result<Vec<Session>, ApiError> {
        self.count(self.inner.search_sessions(text).await)
    }
    async fn get_transaction(&self, id: &str) -> Result<Transaction, ApiError> {
        self.count(self.inner.get_transaction(id).await)
    }
    async fn list_transactions(
        &self,
        query: &TransactionQuery,
    ) -> Result<Vec<Transaction>, ApiError> {
        self.count(self.inner.list_transactions(query).await)
    }
    async fn cancel_session(&self, id: &str) -> Result<(), ApiError> {
        self.count(self.inner.cancel_session(id).await)
    }
    async fn refund(
        &self,
        transaction_id: &str,
        request: &RefundRequest,
    ) -> Result<RefundOutcome, ApiError> {
        self.count(self.inner.refund(transaction_id, request).await)
    }
    async fn terminal(&self, terminal_id: &str) -> Result<Terminal, ApiError> {
        self.count(self.inner.terminal(terminal_id).await)
    }
    async fn ensure_token(&self) -> Result<(), ApiError> {
        self.count(self.inner.ensure_token().await)
    }
}

/// What the writer has tallied from reports and states.
#[derive(Debug, Default)]
struct Tally {
    outcomes: Vec<(&'static str, u64)>,
    buckets: [u64; DURATION_BUCKETS.len()],
    duration_count: u64,
    duration_sum: f64,
}

impl Tally {
    fn outcome(&mut self, name: &'static str) {
        match self.outcomes.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => self.outcomes.push((name, 1)),
        }
    }

    fn duration(&mut self, seconds: f64) {
        self.duration_count += 1;
        self.duration_sum += seconds;
        for (bound, bucket) in DURATION_BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *bucket += 1;
            }
        }
    }
}

/// Everything the text file says, at one instant.
pub struct Snapshot<'a> {
    tally: &'a Tally,
    counters: &'a Counters,
    state: &'a str,
    ready: bool,
    journal_bytes: u64,
    uptime: Duration,
}

const OUTCOMES: [&str; 7] = [
    "approved",
    "declined",
    "cancelled",
    "timed_out",
    "failed",
    "not_created",
    "conflict",
];

const STATES: [&str; 16] = [
    "starting",
    "idle",
    "unavailable",
    "refused",
    "creating",
    "waiting_for_card",
    "processing",
    "approved",
    "declined",
    "cancelled",
    "timed_out",
    "failed",
    "conflict",
    "checking",
    "out_of_service",
    "technician",
];

impl Snapshot<'_> {
    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "kioskpay_payments_total",
            "counter",
            "Finished payments by outcome.",
        );
        for outcome in OUTCOMES {
            let n = self
                .tally
                .outcomes
                .iter()
                .find(|(o, _)| *o == outcome)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "kioskpay_payments_total{{outcome=\"{outcome}\"}} {n}");
        }
        family(
            &mut out,
            "kioskpay_payment_duration_seconds",
            "histogram",
            "From creating the Dintero session to the payment's outcome.",
        );
        for (bound, count) in DURATION_BUCKETS.iter().zip(self.tally.buckets) {
            let _ = writeln!(
                out,
                "kioskpay_payment_duration_seconds_bucket{{le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "kioskpay_payment_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nkioskpay_payment_duration_seconds_sum {sum:.3}\nkioskpay_payment_duration_seconds_count {count}",
            count = self.tally.duration_count,
            sum = self.tally.duration_sum
        );
        family(
            &mut out,
            "kioskpay_api_errors_total",
            "counter",
            "Failed Dintero calls by kind.",
        );
        for (kind, counter) in API_ERROR_KINDS.iter().zip(&self.counters.api_errors) {
            let _ = writeln!(
                out,
                "kioskpay_api_errors_total{{kind=\"{kind}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        for (name, kind, help, value) in [
            (
                "kioskpay_scanner_reconnects_total",
                "counter",
                "The scanner came back after being unavailable.",
                self.counters.scanner_reconnects.load(Ordering::Relaxed),
            ),
            (
                "kioskpay_display_errors_total",
                "counter",
                "Customer display panel failures.",
                self.counters.display_errors.load(Ordering::Relaxed),
            ),
            (
                "kioskpay_callbacks_verified_total",
                "counter",
                "Signed Dintero callbacks that had a payment read at once.",
                self.counters.callbacks.verified.load(Ordering::Relaxed),
            ),
            (
                "kioskpay_callbacks_rejected_total",
                "counter",
                "Callback requests refused or replayed, with no effect.",
                self.counters.callbacks.rejected.load(Ordering::Relaxed),
            ),
            (
                "kioskpay_journal_bytes",
                "gauge",
                "Size of the payment journal in bytes.",
                self.journal_bytes,
            ),
            (
                "kioskpay_uptime_seconds",
                "gauge",
                "Seconds since the daemon started.",
                self.uptime.as_secs(),
            ),
            (
                "kioskpay_ready",
                "gauge",
                "1 once unfinished payments are resolved and while carts are taken.",
                u64::from(self.ready),
            ),
        ] {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        family(
            &mut out,
            "kioskpay_state",
            "gauge",
            "1 for the state the kiosk is in now.",
        );
        for state in STATES {
            let _ = writeln!(
                out,
                "kioskpay_state{{state=\"{state}\"}} {}",
                u8::from(state == self.state)
            );
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines that open a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, then rename.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Where and how often the writer writes.
#[derive(Clone, Debug)]
pub struct MetricsOptions {
    /// The `.prom` file.
    pub textfile: PathBuf,
    /// Rewrite period.
    pub interval: Duration,
    /// The journal directory (its size is reported).
    pub state_dir: PathBuf,
}

/// Tallies reports and states and rewrites the text file until `shutdown` completes.
pub async fn run(
    options: MetricsOptions,
    counters: Arc<Counters>,
    mut states: watch::Receiver<KioskState>,
    mut reports: mpsc::UnboundedReceiver<PaymentReport>,
    liveness: crate::systemd::Liveness,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut creating_since: Option<Instant> = None;
    let mut ticks = tokio::time::interval(options.interval.max(Duration::from_secs(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut taking_carts = takes_carts(&states.borrow()).unwrap_or(false);
    let mut reports_open = true;
    let mut stopping = false;
    while !stopping {
        let mut write_now = false;
        tokio::select! {
            biased;
            () = &mut shutdown => {
                stopping = true;
                write_now = true;
            }
            changed = states.changed() => {
                if changed.is_err() {
                    return;
                }
                let state = states.borrow_and_update().clone();
                if let Some(taking) = takes_carts(&state) {
                    taking_carts = taking;
                    write_now = true;
                }
                match state {
                    KioskState::Creating { .. } if creating_since.is_none() => {
                        creating_since = Some(Instant::now());
                    }
                    KioskState::Approved { .. }
                    | KioskState::Declined { .. }
                    | KioskState::Cancelled { .. }
                    | KioskState::TimedOut { .. }
                    | KioskState::Failed { .. }
                    | KioskState::Conflict { .. } => {
                        if let Some(at) = creating_since.take() {
                            tally.duration(at.elapsed().as_secs_f64());
                        }
                    }
                    _ => {}
                }
            }
            report = reports.recv(), if reports_open => match report {
                Some(report) => {
                    tally.outcome(report.outcome.outcome().as_str());
                    write_now = true;
                }
                None => reports_open = false,
            },
            _ = ticks.tick() => write_now = true,
        }
        if write_now {
            let journal_bytes = journal_size(&options.state_dir);
            let state = states.borrow().name();
            let text = Snapshot {
                tally: &tally,
                counters: &counters,
                state,
                ready: liveness.pulse().ready && taking_carts,
                journal_bytes,
                uptime: started.elapsed(),
            }
            .render();
            match write_atomically(&options.textfile, &text) {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    warn!(path = %options.textfile.display(), error = %e, "cannot write the metrics file; check that the directory exists and the kioskpay user may write it");
                }
                Err(_) => {}
            }
        }
    }
}

/// Whether the kiosk takes carts, as far as `state` tells: the idle and unavailable screens
/// say; a payment, a result or a refusal shown on top leaves the answer as it was.
fn takes_carts(state: &KioskState) -> Option<bool> {
    match state {
        KioskState::Idle => Some(true),
        KioskState::Starting
        | KioskState::Unavailable { .. }
        | KioskState::OutOfService { .. }
        | KioskState::Technician => Some(false),
        _ => None,
    }
}

fn journal_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(crate::journal::FILE_NAME)
                })
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Outcome;
    use crate::money::{Currency, Money};
    use crate::state::{CancelledBy, DeclineKind, FailKind, RefusalReason, UnavailableReason};

    /// The text for `tally`, `counters`, `state` and `ready`, with a 1234-byte journal after 61.9 s.
    fn render(tally: &Tally, counters: &Counters, state: &str, ready: bool) -> String {
        Snapshot {
            tally,
            counters,
            state,
            ready,
            journal_bytes: 1234,
            uptime: Duration::from_millis(61_900),
        }
        .render()
    }

    /// The sample lines of the family `name` (its HELP and TYPE lines left out).
    fn samples(text: &str, name: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(name))
            .map(str::to_string)
            .collect()
    }

    /// One kiosk state of each kind.
    fn every_state() -> Vec<KioskState> {
        let amount = Money::new(39900, Currency::NOK);
        let reference = || "kiosk-1-20261124-000001".to_string();
        let states = vec![
            KioskState::Starting,
            KioskState::Idle,
            KioskState::Unavailable {
                reason: UnavailableReason::ApiUnreachable,
            },
            KioskState::Refused {
                reason: RefusalReason::Busy,
            },
            KioskState::Creating {
                amount,
                reference: reference(),
            },
            KioskState::WaitingForCard {
                amount,
                reference: reference(),
                deadline: Instant::now(),
            },
            KioskState::Processing {
                amount,
                reference: reference(),
            },
            KioskState::Approved {
                amount,
                reference: reference(),
                transaction_id: "T1".into(),
                card: None,
            },
            KioskState::Declined {
                amount,
                reference: reference(),
                kind: DeclineKind::Declined,
            },
            KioskState::Cancelled {
                amount,
                reference: reference(),
                by: CancelledBy::Customer,
            },
            KioskState::TimedOut {
                amount,
                reference: reference(),
            },
            KioskState::Failed {
                amount,
                reference: reference(),
                kind: FailKind::Technical,
            },
            KioskState::Conflict {
                amount,
                reference: reference(),
            },
            KioskState::Checking {
                reference: reference(),
            },
            KioskState::OutOfService {
                code: "E-PANEL-INIT".into(),
            },
            KioskState::Technician,
        ];
        // No wildcard: a new kind of state stops this compiling until it is listed above.
        for state in &states {
            match state {
                KioskState::Starting
                | KioskState::Idle
                | KioskState::Unavailable { .. }
                | KioskState::Refused { .. }
                | KioskState::Creating { .. }
                | KioskState::WaitingForCard { .. }
                | KioskState::Processing { .. }
                | KioskState::Approved { .. }
                | KioskState::Declined { .. }
                | KioskState::Cancelled { .. }
                | KioskState::TimedOut { .. }
                | KioskState::Failed { .. }
                | KioskState::Conflict { .. }
                | KioskState::Checking { .. }
                | KioskState::OutOfService { .. }
                | KioskState::Technician => {}
            }
        }
        states
    }

    #[test]
    fn a_kiosk_that_has_done_nothing_renders_every_family_at_zero() {
        let text = render(&Tally::default(), &Counters::default(), "idle", true);
        let expected = r#"# HELP kioskpay_payments_total Finished payments by outcome.
# TYPE kioskpay_payments_total counter
kioskpay_payments_total{outcome="approved"} 0
kioskpay_payments_total{outcome="declined"} 0
kioskpay_payments_total{outcome="cancelled"} 0
kioskpay_payments_total{outcome="timed_out"} 0
kioskpay_payments_total{outcome="failed"} 0
kioskpay_payments_total{outcome="not_created"} 0
kioskpay_payments_total{outcome="conflict"} 0
# HELP kioskpay_payment_duration_seconds From creating the Dintero session to the payment's outcome.
# TYPE kioskpay_payment_duration_seconds histogram
kioskpay_payment_duration_seconds_bucket{le="5"} 0
kioskpay_payment_duration_seconds_bucket{le="10"} 0
kioskpay_payment_duration_seconds_bucket{le="20"} 0
kioskpay_payment_duration_seconds_bucket{le="30"} 0
kioskpay_payment_duration_seconds_bucket{le="60"} 0
kioskpay_payment_duration_seconds_bucket{le="90"} 0
kioskpay_payment_duration_seconds_bucket{le="120"} 0
kioskpay_payment_duration_seconds_bucket{le="180"} 0
kioskpay_payment_duration_seconds_bucket{le="+Inf"} 0
kioskpay_payment_duration_seconds_sum 0.000
kioskpay_payment_duration_seconds_count 0
# HELP kioskpay_api_errors_total Failed Dintero calls by kind.
# TYPE kioskpay_api_errors_total counter
kioskpay_api_errors_total{kind="auth"} 0
kioskpay_api_errors_total{kind="rejected"} 0
kioskpay_api_errors_total{kind="unknown"} 0
kioskpay_api_errors_total{kind="unreachable"} 0
# HELP kioskpay_scanner_reconnects_total The scanner came back after being unavailable.
# TYPE kioskpay_scanner_reconnects_total counter
kioskpay_scanner_reconnects_total 0
# HELP kioskpay_display_errors_total Customer display panel failures.
# TYPE kioskpay_display_errors_total counter
kioskpay_display_errors_total 0
# HELP kioskpay_callbacks_verified_total Signed Dintero callbacks that had a payment read at once.
# TYPE kioskpay_callbacks_verified_total counter
kioskpay_callbacks_verified_total 0
# HELP kioskpay_callbacks_rejected_total Callback requests refused or replayed, with no effect.
# TYPE kioskpay_callbacks_rejected_total counter
kioskpay_callbacks_rejected_total 0
# HELP kioskpay_journal_bytes Size of the payment journal in bytes.
# TYPE kioskpay_journal_bytes gauge
kioskpay_journal_bytes 1234
# HELP kioskpay_uptime_seconds Seconds since the daemon started.
# TYPE kioskpay_uptime_seconds gauge
kioskpay_uptime_seconds 61
# HELP kioskpay_ready 1 once unfinished payments are resolved and while carts are taken.
# TYPE kioskpay_ready gauge
kioskpay_ready 1
# HELP kioskpay_state 1 for the state the kiosk is in now.
# TYPE kioskpay_state gauge
kioskpay_state{state="starting"} 0
kioskpay_state{state="idle"} 1
kioskpay_state{state="unavailable"} 0
kioskpay_state{state="refused"} 0
kioskpay_state{state="creating"} 0
kioskpay_state{state="waiting_for_card"} 0
kioskpay_state{state="processing"} 0
kioskpay_state{state="approved"} 0
kioskpay_state{state="declined"} 0
kioskpay_state{state="cancelled"} 0
kioskpay_state{state="timed_out"} 0
kioskpay_state{state="failed"} 0
kioskpay_state{state="conflict"} 0
kioskpay_state{state="checking"} 0
kioskpay_state{state="out_of_service"} 0
kioskpay_state{state="technician"} 0
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn payments_are_counted_per_outcome() {
        let mut tally = Tally::default();
        for outcome in ["approved", "timed_out", "approved", "conflict"] {
            tally.outcome(outcome);
        }
        let text = render(&tally, &Counters::default(), "idle", true);
        assert_eq!(
            samples(&text, "kioskpay_payments_total"),
            [
                r#"kioskpay_payments_total{outcome="approved"} 2"#,
                r#"kioskpay_payments_total{outcome="declined"} 0"#,
                r#"kioskpay_payments_total{outcome="cancelled"} 0"#,
                r#"kioskpay_payments_total{outcome="timed_out"} 1"#,
                r#"kioskpay_payments_total{outcome="failed"} 0"#,
                r#"kioskpay_payments_total{outcome="not_created"} 0"#,
                r#"kioskpay_payments_total{outcome="conflict"} 1"#,
            ]
        );
    }

    #[test]
    fn every_outcome_a_report_can_carry_has_its_own_line() {
        let all = [
            Outcome::Approved,
            Outcome::Declined,
            Outcome::Cancelled,
            Outcome::TimedOut,
            Outcome::Failed,
            Outcome::NotCreated,
            Outcome::Conflict,
        ];
        // No wildcard: a new outcome stops this compiling until it is listed above.
        for outcome in all {
            match outcome {
                Outcome::Approved
                | Outcome::Declined
                | Outcome::Cancelled
                | Outcome::TimedOut
                | Outcome::Failed
                | Outcome::NotCreated
                | Outcome::Conflict => {}
            }
        }
        let mut tally = Tally::default();
        for outcome in all {
            tally.outcome(outcome.as_str());
        }
        let text = render(&tally, &Counters::default(), "idle", true);
        for outcome in all {
            let line = format!("kioskpay_payments_total{{outcome=\"{outcome}\"}} 1");
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn durations_fill_cumulative_buckets_with_their_sum_and_count() {
        let mut tally = Tally::default();
        // 5 s is in the 5 s bucket: a bucket's bound is inclusive ("le").
        for seconds in [4.0, 5.0, 60.5, 200.0] {
            tally.duration(seconds);
        }
        let text = render(&tally, &Counters::default(), "idle", true);
        assert_eq!(
            samples(&text, "kioskpay_payment_duration_seconds"),
            [
                r#"kioskpay_payment_duration_seconds_bucket{le="5"} 2"#,
                r#"kioskpay_payment_duration_seconds_bucket{le="10"} 2"#,
                r#"kioskpay_payment_duration_seconds_bucket{le="20"} 2"#,
                r#"kioskpay_payment_duration_seconds_bucket{le="30"} 2"#,
                r#"kioskpay_payment_duration_seconds_bucket{le="60"} 2"#,
                r#"kioskpay_payment_duration_seconds_bucket{le="90"} 3"#,
                r#"kioskpay_payment_duration_seconds_bucket{le="120"} 3"#,
                r#"kioskpay_payment_duration_seconds_bucket{le="180"} 3"#,
                r#"kioskpay_payment_duration_seconds_bucket{le="+Inf"} 4"#,
                "kioskpay_payment_duration_seconds_sum 269.500",
                "kioskpay_payment_duration_seconds_count 4",
            ]
        );
    }

    #[test]
    fn api_errors_are_counted_by_kind() {
        let counters = Counters::default();
        let unreachable = ApiError::Unreachable {
            reason: "connection refused".into(),
        };
        for error in [
            ApiError::Auth {
                status: 401,
                message: "invalid client credentials".into(),
            },
            unreachable.clone(),
            ApiError::Unknown {
                reason: "503".into(),
                retry_after: None,
            },
            unreachable,
        ] {
            counters.api_error(&error);
        }
        let text = render(&Tally::default(), &counters, "idle", true);
        assert_eq!(
            samples(&text, "kioskpay_api_errors_total"),
            [
                r#"kioskpay_api_errors_total{kind="auth"} 1"#,
                r#"kioskpay_api_errors_total{kind="rejected"} 0"#,
                r#"kioskpay_api_errors_total{kind="unknown"} 1"#,
                r#"kioskpay_api_errors_total{kind="unreachable"} 2"#,
            ]
        );
    }

    #[test]
    fn the_other_counters_and_gauges_say_their_values() {
        let counters = Counters::default();
        counters.scanner_reconnects.store(3, Ordering::Relaxed);
        counters.display_errors.store(17, Ordering::Relaxed);
        counters.callbacks.verified.store(4, Ordering::Relaxed);
        counters.callbacks.rejected.store(9, Ordering::Relaxed);
        let text = Snapshot {
            tally: &Tally::default(),
            counters: &counters,
            state: "unavailable",
            ready: false,
            journal_bytes: 0,
            uptime: Duration::from_secs(86_400),
        }
        .render();
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains('{')).collect();
        for line in [
            "kioskpay_scanner_reconnects_total 3",
            "kioskpay_display_errors_total 17",
            "kioskpay_callbacks_verified_total 4",
            "kioskpay_callbacks_rejected_total 9",
            "kioskpay_journal_bytes 0",
            "kioskpay_uptime_seconds 86400",
            "kioskpay_ready 0",
        ] {
            assert!(lines.contains(&line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn the_state_gauge_is_one_for_each_state_the_kiosk_publishes_and_zero_for_the_rest() {
        for state in every_state() {
            let name = state.name();
            let text = render(&Tally::default(), &Counters::default(), name, true);
            let gauge = samples(&text, "kioskpay_state{");
            assert_eq!(gauge.len(), STATES.len());
            let on: Vec<&String> = gauge.iter().filter(|l| l.ends_with(" 1")).collect();
            assert_eq!(
                on,
                [&format!("kioskpay_state{{state=\"{name}\"}} 1")],
                "{state:?}"
            );
            assert!(
                gauge.iter().all(|l| l.ends_with(" 1") || l.ends_with(" 0")),
                "{gauge:?}"
            );
        }
        assert_eq!(every_state().len(), STATES.len(), "a state name per kind");
    }

    #[test]
    fn names_label_values_and_help_texts_need_no_escaping() {
        // The text format escapes `\`, `"` and newlines in label values and `\` and newlines in
        // HELP texts. Every value here is fixed, so render() writes them as they are: this
        // holds them to that.
        let counters = Counters::default();
        let text = render(&Tally::default(), &counters, "idle", true);
        let name_ok = |name: &str| {
            name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        for value in OUTCOMES.iter().chain(&STATES).chain(&API_ERROR_KINDS) {
            assert!(name_ok(value), "{value:?}");
        }
        for line in text.lines() {
            if let Some(help) = line.strip_prefix("# HELP ") {
                let (name, text) = help.split_once(' ').unwrap();
                assert!(name_ok(name), "{line}");
                assert!(!text.contains('\\') && !text.is_empty(), "{line}");
            } else if let Some(typed) = line.strip_prefix("# TYPE ") {
                let (name, kind) = typed.split_once(' ').unwrap();
                assert!(name_ok(name), "{line}");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
                let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
                assert!(name_ok(name), "{line}");
                let labels = labels.strip_suffix('}').unwrap();
                for pair in labels.split(',').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap();
                    assert!(name_ok(key), "{line}");
                    let value = value.strip_prefix('"').unwrap().strip_suffix('"').unwrap();
                    assert!(!value.contains(['\\', '"', '\n']), "{line}");
                }
            }
        }
    }

    #[test]
    fn carts_are_taken_when_idle_not_while_unavailable_and_a_payment_changes_nothing() {
        for state in every_state() {
            let expected = match state.name() {
                "idle" => Some(true),
                "starting" | "unavailable" | "out_of_service" | "technician" => Some(false),
                _ => None,
            };
            assert_eq!(takes_carts(&state), expected, "{state:?}");
        }
    }

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kioskpay.prom");
        write_atomically(&path, "first 1\n").unwrap();
        write_atomically(&path, "second 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second 2\n");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["kioskpay.prom"]);
        // The temporary file is beside the target: a missing directory fails, and says so.
        let missing = dir.path().join("no-such-dir/kioskpay.prom");
        assert!(write_atomically(&missing, "x 1\n").is_err());
    }

    #[test]
    fn the_journal_size_is_that_of_the_journal_files_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(journal_size(&dir.path().join("missing")), 0);
        assert_eq!(journal_size(dir.path()), 0);
        let journal = crate::journal::FILE_NAME;
        std::fs::write(dir.path().join(journal), [b'x'; 100]).unwrap();
        std::fs::write(dir.path().join(format!("{journal}.compact")), [b'x'; 20]).unwrap();
        std::fs::write(dir.path().join("installation"), [b'x'; 7]).unwrap();
        std::fs::write(dir.path().join("technicians.toml"), [b'x'; 3]).unwrap();
        assert_eq!(journal_size(dir.path()), 120);
    }

    #[test]
    fn display_warnings_and_errors_are_counted_with_the_failures_they_did_not_log() {
        use tracing_subscriber::layer::SubscriberExt;
        let counters = Arc::new(Counters::default());
        let subscriber = tracing_subscriber::registry().with(DisplayErrors::new(counters.clone()));
        tracing::subscriber::with_default(subscriber, || {
            // As the display logs a failing panel: the failures since the last line it wrote.
            let unlogged: u32 = 4;
            tracing::warn!(target: "kioskpay::display", not_logged = unlogged, "panel failed");
            tracing::error!(target: "kioskpay::display::panel::spi", "panel gone");
            // Not failures of the display: other levels, other modules.
            tracing::info!(target: "kioskpay::display", not_logged = 9u32, "frame drawn");
            tracing::warn!(target: "kioskpay::input", not_logged = 9u32, "scanner gone");
        });
        assert_eq!(counters.display_errors.load(Ordering::Relaxed), 1 + 4 + 1);
    }

    /// A gateway that fails every call with `error`, or answers what needs no data.
    struct Scripted(Option<ApiError>);

    impl Scripted {
        fn answer<T>(&self, ok: impl FnOnce() -> T) -> Result<T, ApiError> {
            match &self.0 {
                Some(e) => Err(e.clone()),
                None => Ok(ok()),
            }
        }

        fn fail<T>(&self) -> Result<T, ApiError> {
            Err(self.0.clone().unwrap_or(ApiError::Unreachable {
                reason: "not scripted".into(),
            }))
        }
    }

    impl Gateway for Scripted {
        async fn create_session(
            &self,
            _: &SessionProfileRequest,
        ) -> Result<CreatedSession, ApiError> {
            self.fail()
        }
        async fn get_session(&self, _: &str) -> Result<Session, ApiError> {
            self.fail()
        }
        async fn search_sessions(&self, _: &str) -> Result<Vec<Session>, ApiError> {
            self.answer(Vec::new)
        }
        async fn get_transaction(&self, _: &str) -> Result<Transaction, ApiError> {
            self.fail()
        }
        async fn list_transactions(
            &self,
            _: &TransactionQuery,
        ) -> Result<Vec<Transaction>, ApiError> {
            self.answer(Vec::new)
        }
        async fn cancel_session(&self, _: &str) -> Result<(), ApiError> {
            self.answer(|| ())
        }
        async fn refund(&self, _: &str, _: &RefundRequest) -> Result<RefundOutcome, ApiError> {
            self.fail()
        }
        async fn terminal(&self, _: &str) -> Result<Terminal, ApiError> {
            self.fail()
        }
        async fn ensure_token(&self) -> Result<(), ApiError> {
            self.answer(|| ())
        }
    }

    #[tokio::test]
    async fn a_metered_gateway_counts_each_failed_call_and_passes_answers_through() {
        let counters = Arc::new(Counters::default());
        let healthy = Metered::new(Arc::new(Scripted(None)), counters.clone());
        assert_eq!(healthy.ensure_token().await, Ok(()));
        assert_eq!(healthy.cancel_session("s1").await, Ok(()));
        assert_eq!(healthy.search_sessions("ref").await, Ok(Vec::new()));
        let query = TransactionQuery::default();
        assert_eq!(healthy.list_transactions(&query).await, Ok(Vec::new()));
        let text = render(&Tally::default(), &counters, "idle", true);
        assert!(
            samples(&text, "kioskpay_api_errors_total")
                .iter()
                .all(|l| l.ends_with(" 0")),
            "{text}"
        );

        let rejected = ApiError::Rejected {
            status: 400,
            code: Some("TERMINAL_BUSY".into()),
            message: "busy".into(),
        };
        let failing = Metered::new(Arc::new(Scripted(Some(rejected.clone()))), counters.clone());
        assert_eq!(failing.ensure_token().await, Err(rejected.clone()));
        assert_eq!(failing.cancel_session("s1").await, Err(rejected.clone()));
        assert_eq!(failing.search_sessions("ref").await, Err(rejected.clone()));
        assert_eq!(
            failing.list_transactions(&query).await,
            Err(rejected.clone())
        );
        assert_eq!(failing.get_session("s1").await.unwrap_err(), rejected);
        assert_eq!(failing.get_transaction("t1").await.unwrap_err(), rejected);
        assert_eq!(failing.terminal("T1").await.unwrap_err(), rejected);
        let text = render(&Tally::default(), &counters, "idle", true);
        assert_eq!(
            samples(&text, "kioskpay_api_errors_total"),
            [
                r#"kioskpay_api_errors_total{kind="auth"} 0"#,
                r#"kioskpay_api_errors_total{kind="rejected"} 7"#,
                r#"kioskpay_api_errors_total{kind="unknown"} 0"#,
                r#"kioskpay_api_errors_total{kind="unreachable"} 0"#,
            ]
        );
    }
}
