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
