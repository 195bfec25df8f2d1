//! The daemon's side of the control socket: it binds the socket, follows the kiosk's state and
//! payment reports to answer `status` and send events, and turns `maintenance` into a
//! [`Command`] for the flow.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::desk::Desk;
use super::health::Sources;
use super::protocol::{
    parse_request, ConfigState, Counters, CurrentPayment, Event, Gpio, GpioInput, GpioOutput,
    LastError, Problem, Reply, Request, Scan, Status, TerminalReport, GPIO_TEST_WAIT_S, MAX_LINE,
    SCAN_TEST_WAIT_S,
};
use crate::display::{pattern, sample_state, Override};
use crate::gpio::outputs::Toggle;
use crate::gpio::Levels;
use crate::messages::{Command, ScanDiversion, ScanReport};
use crate::payment::flow::PaymentReport;
use crate::payment::Final;
use crate::refund::Desk as RefundDesk;
use crate::state::KioskState;

/// What the control server may see and ask: the flow's state and reports, and its command
/// channel. Nothing here can start or drive a payment.
pub struct Observed {
    /// What the flow publishes.
    pub state: watch::Receiver<KioskState>,
    /// One report per finished payment.
    pub reports: mpsc::UnboundedReceiver<PaymentReport>,
    /// Requests to the flow (maintenance on or off).
    pub commands: mpsc::Sender<Command>,
    /// The kiosk's terminal at Dintero; `None` where no API client is wired (unit tests).
    pub desk: Option<Desk>,
    /// Where the parts around the flow report, for `status`; `None` in unit tests.
    pub health: Option<Sources>,
    /// The config in force and the daemon's reload; `None` where nothing reloads (a kiosk
    /// started in-process).
    pub config: Option<ConfigControl>,
    /// What the console's hardware tests reach.
    pub hardware: Hardware,
    /// Where maintenance asked for on the socket is kept across a restart ([`super::maintenance`]);
    /// `None` where nothing restarts (unit tests).
    pub state_dir: Option<std::path::PathBuf>,
}

/// The daemon's side of `reload` and `confirm`: the daemon owns the running kiosk and the
/// confirm deadline (`crate::config::rollback`), so the server only passes requests on.
pub struct ConfigControl {
    /// Where requests go.
    pub requests: mpsc::Sender<ConfigRequest>,
    /// The config in force, for `status`.
    pub state: watch::Receiver<ConfigState>,
}

/// A config request for the daemon, with where its answer goes (the error in words for the
/// operator).
pub enum ConfigRequest {
    /// Re-read the config file, as SIGHUP does.
    Reload(oneshot::Sender<Result<ConfigState, String>>),
    /// Keep the edit awaiting a confirm.
    Confirm(oneshot::Sender<Result<ConfigState, String>>),
    /// A token request with the credentials the config file names now: what the API said.
    CheckCredentials(oneshot::Sender<Result<String, String>>),
}

/// What the console's hardware tests reach in the daemon; `None` where the kiosk has no such
/// hardware. Every test needs maintenance in force (the technician screen showing), so a
/// customer can never pay, or be shown a test, while a technician tests.
#[derive(Clone, Debug, Default)]
pub struct Hardware {
    /// Claims the next scan for `scan_test`, away from the payment flow.
    pub scans: Option<ScanDiversion>,
    /// What the panel shows instead of the kiosk's screen during `display_test`.
    pub display: Option<watch::Sender<Option<Override>>>,
    /// The GPIO lines' levels for `gpio_test`.
    pub gpio: Option<watch::Receiver<Levels>>,
    /// Where `gpio_toggle` asks the GPIO unit to flip an output.
    pub gpio_toggles: Option<mpsc::Sender<Toggle>>,
}

/// Why the socket could not be served.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} the control socket {path}: {source}; the kiosk takes payments without it, but the technician console cannot reach the daemon (is the runtime directory there and writable, e.g. RuntimeDirectory=kioskpay in the unit, or KIOSKPAY_CONTROL_SOCKET set to a writable path?)")]
pub struct ControlError {
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

/// A bound control socket, not yet served.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    refunds: Option<Arc<RefundDesk>>,
}

impl Server {
    /// Binds the socket at `path`, mode 0660. A socket file left by a daemon that died is
    /// replaced; a socket another daemon still answers on is not (two daemons on one kiosk are
    /// a mistake the second must report, not hide).
    pub async fn bind(path: &Path) -> Result<Server, ControlError> {
        let error = |action| {
            let path = path.to_path_buf();
            move |source| ControlError {
                action,
                path,
                source,
            }
        };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(error("replace")(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                )));
            }
            if UnixStream::connect(path).await.is_ok() {
                return Err(error("bind")(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another kioskpay daemon answers on it",
                )));
            }
            std::fs::remove_file(path).map_err(error("remove the stale"))?;
        }
        let listener = UnixListener::bind(path).map_err(error("bind"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(error("set the mode of"))?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            refunds: None,
        })
    }

    /// Answers `payment`, `refund` and `void` with `refunds`; without one they say the daemon
    /// cannot refund.
    pub fn with_refund_desk(mut self, refunds: Arc<RefundDesk>) -> Server {
        self.refunds = Some(refunds);
        self
    }

    /// Serves until `shutdown`, then removes the socket file.
    pub async fn serve(self, observed: Observed, shutdown: CancellationToken) {
        let Server {
            listener,
            path,
            refunds,
        } = self;
        let (events, _) = broadcast::channel(64);
        // Kept from before a restart: the daemon started the flow in maintenance already.
        let kept = observed
            .state_dir
            .as_deref()
            .is_some_and(super::maintenance::kept);
        let context = Arc::new(Context {
            book: Mutex::new(Book {
                maintenance: kept,
                ..Book::default()
            }),
            state_dir: observed.state_dir,
            events: events.clone(),
            commands: observed.commands,
            hardware: observed.hardware,
            started: Instant::now(),
            config: observed.config,
            desk: observed.desk,
            health: observed.health,
            refunds,
        });
        let tracker = tokio::spawn(track(
            context.clone(),
            observed.state,
            observed.reports,
            shutdown.clone(),
        ));
        // SAFETY: geteuid(2) takes no arguments and cannot fail.
        let own_uid = unsafe { libc::geteuid() };
        info!(path = %path.display(), "control socket ready");
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "control socket: accept failed");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let socket_gid = std::fs::metadata(&path).map(|m| m.gid()).ok();
            match stream.peer_cred() {
                Ok(peer) if may_connect(&peer_of(&peer), own_uid, socket_gid) => {}
                Ok(peer) => {
                    warn!(
                        uid = peer.uid(),
                        gid = peer.gid(),
                        "control socket: connection refused: not root, not the daemon's user and not in the socket's group"
                    );
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "control socket: cannot read the peer's credentials; connection refused");
                    continue;
                }
            }
            tokio::spawn(connection(stream, context.clone(), shutdown.clone()));
        }
        let _ = std::fs::remove_file(&path);
        let _ = tracker.await;
    }
}

/// Who is connecting.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Peer {
    uid: u32,
    gid: u32,
    /// Supplementary groups, as far as they can be read (`/proc/PID/status`).
    groups: Vec<u32>,
}

fn peer_of(cred: &tokio::net::unix::UCred) -> Peer {
    let groups = cred
        .pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .map(|status| supplementary_groups(&status))
        .unwrap_or_default();
    Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        groups,
    }
}

/// The `Groups:` line of `/proc/PID/status`.
fn supplementary_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Root, the daemon's own user, and members of the socket's group may connect.
fn may_connect(peer: &Peer, own_uid: u32, socket_gid: Option<u32>) -> bool {
    peer.uid == 0
        || peer.uid == own_uid
        || socket_gid.is_some_and(|gid| peer.gid == gid || peer.groups.contains(&gid))
}

struct Context {
    book: Mutex<Book>,
    events: broadcast::Sender<Event>,
    commands: mpsc::Sender<Command>,
    hardware: Hardware,
    started: Instant,
    config: Option<ConfigControl>,
    desk: Option<Desk>,
    health: Option<Sources>,
    refunds: Option<Arc<RefundDesk>>,
    state_dir: Option<std::path::PathBuf>,
}

/// What `status` answers, kept up to date by [`track`].
#[derive(Default)]
struct Book {
    state: String,
    maintenance: bool,
    payment: Option<CurrentPayment>,
    last_error: Option<LastError>,
    counters: Counters,
    /// What the flow shows as wrong now (card payment unavailable, out of service).
    problem: Option<Problem>,
}

impl Context {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn status(&self) -> Status {
        let book = self.book();
        Status {
            state: book.state.clone(),
            maintenance: book.maintenance,
            payment: book.payment.clone(),
            last_error: book.last_error.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            counters: book.counters.clone(),
            health: self
                .health
                .as_ref()
                .map(|h| Box::new(h.read(book.problem.clone()))),
            config: self
                .config
                .as_ref()
                .map(|c| c.state.borrow().clone())
                .unwrap_or_default(),
        }
    }

    /// Passes a config request to the daemon and waits for its answer, which `reply` turns
    /// into the reply.
    async fn config<T>(
        &self,
        request: fn(oneshot::Sender<Result<T, String>>) -> ConfigRequest,
        reply: fn(T) -> Reply,
    ) -> Reply {
        let Some(control) = &self.config else {
            return Reply::error(
                "this kiosk runs without a config file to reload (a demo or a test)",
            );
        };
        let (tx, rx) = oneshot::channel();
        if control.requests.send(request(tx)).await.is_err() {
            return Reply::error("the daemon is stopping; try again once it is back");
        }
        match rx.await {
            Ok(Ok(answer)) => reply(answer),
            Ok(Err(e)) => Reply::error(e),
            Err(_) => Reply::error("the daemon is stopping; try again once it is back"),
        }
    }

    async fn answer(&self, line: &[u8], events: &mut Option<broadcast::Receiver<Event>>) -> Reply {
        match parse_request(line) {
            Err(e) => Reply::error(e),
            Ok(Request::Status {}) => Reply {
                status: Some(self.status()),
                ..Reply::ok()
            },
            Ok(Request::Maintenance { on }) => {
                if self.commands.send(Command::Maintenance(on)).await.is_err() {
                    return Reply::error(
                        "the payment flow has stopped; restart the daemon: systemctl restart kioskpay",
                    );
                }
                self.book().maintenance = on;
                info!(on, "maintenance asked for on the control socket");
                if let Some(dir) = &self.state_dir {
                    let note = format!(
                        "maintenance asked for on the control socket at {}; removed by maintenance off",
                        now_rfc3339()
                    );
                    if let Err(e) = super::maintenance::record(dir, on, &note) {
                        error!(on, error = %e, dir = %dir.display(), "maintenance is in force now but cannot be kept in the state directory: a restart would not keep it");
                    }
                }
                Reply {
                    maintenance: Some(on),
                    ..Reply::ok()
                }
            }
            Ok(Request::Events {}) => {
                *events = Some(self.events.subscribe());
                Reply::ok()
            }
            Ok(Request::Reload {}) => self.config(ConfigRequest::Reload, config_reply).await,
            Ok(Request::Confirm {}) => self.config(ConfigRequest::Confirm, config_reply).await,
            Ok(Request::CheckCredentials {}) => {
                let reply = |said| Reply {
                    credentials: Some(said),
                    ..Reply::ok()
                };
                self.config(ConfigRequest::CheckCredentials, reply).await
            }
            Ok(Request::Terminal {}) => self.at_desk(|d| async move { d.report().await }).await,
            Ok(Request::TerminalSync {}) => self.at_desk(|d| async move { d.sync().await }).await,
            Ok(Request::TerminalOperation { operation, key }) => {
                let running = self.book().payment.is_some();
                let Some(desk) = self.desk.clone() else {
                    return Reply::error(NO_DESK);
                };
                match desk.start(&operation, &key, running).await {
                    Ok(op) => {
                        info!(operation = %op.operation, id = %op.id, "terminal operation asked for on the control socket");
                        Reply {
                            operation: Some(Box::new(op)),
                            ..Reply::ok()
                        }
                    }
                    Err(e) => Reply::error(e),
                }
            }
            Ok(Request::TestPayment { amount, technician }) => {
                let Some(desk) = self.desk.clone() else {
                    return Reply::error(NO_DESK);
                };
                let (in_force, running) = {
                    let book = self.book();
                    (
                        book.maintenance && book.state == "technician",
                        book.payment.is_some(),
                    )
                };
                if running {
                    return Reply::error("a payment is running; the test payment waits for its end: try again when status shows no payment");
                }
                if !in_force {
                    return Reply::error("a test payment needs maintenance in force (no customer can pay beside it): maintenance on, then try again when the technician screen shows");
                }
                let cart = desk.test_cart(amount, &technician);
                info!(amount, %technician, "test payment asked for on the control socket");
                if self
                    .commands
                    .send(Command::TestPayment(cart))
                    .await
                    .is_err()
                {
                    return Reply::error(
                        "the payment flow has stopped; restart the daemon: systemctl restart kioskpay",
                    );
                }
                Reply::ok()
            }
            Ok(Request::TerminalOperations {}) => {
                let Some(desk) = self.desk.clone() else {
                    return Reply::error(NO_DESK);
                };
                match desk.operations().await {
                    Ok(ops) => Reply {
                        operations: Some(ops),
                        ..Reply::ok()
                    },
                    Err(e) => Reply::error(e),
                }
            }
            Ok(Request::Payment { transaction_id }) => {
                let Some(desk) = self.refunds.clone() else {
                    return no_desk();
                };
                match desk.payment(&transaction_id).await {
                    Ok(view) => Reply {
                        payment: Some(Box::new(view)),
                        ..Reply::ok()
                    },
                    Err(e) => Reply::error(e),
                }
            }
            Ok(Request::Refund {
                transaction_id,
                amount,
                technician,
            }) => {
                let Some(desk) = self.refunds.clone() else {
                    return no_desk();
                };
                let keep_maintenance = self.book().maintenance;
                info!(%transaction_id, ?amount, %technician, "refund asked for on the control socket");
                // A task of its own: a console that stops waiting (^C, a cut cable) must not
                // cancel a refund half-way.
                let refund = tokio::spawn(async move {
                    desk.refund(&transaction_id, amount, &technician, keep_maintenance)
                        .await
                });
                match refund.await {
                    Ok(Ok(refund)) => Reply {
                        refund: Some(Box::new(refund)),
                        ..Reply::ok()
                    },
                    Ok(Err(e)) => Reply::error(e),
                    Err(_) => Reply::error(
                        "the refund stopped abnormally; its state is in the refund journal: payment REF shows it",
                    ),
                }
            }
            Ok(Request::Void {
                session_id,
                technician,
            }) => {
                let Some(desk) = self.refunds.clone() else {
                    return no_desk();
                };
                info!(%session_id, %technician, "void asked for on the control socket");
                let void = tokio::spawn(async move { desk.void(&session_id).await });
                match void.await {
                    Ok(Ok(view)) => Reply {
                        payment: Some(Box::new(view)),
                        ..Reply::ok()
                    },
                    Ok(Err(e)) => Reply::error(e),
                    Err(_) => Reply::error(
                        "the void stopped abnormally; payment REF shows what Dintero says now",
                    ),
                }
            }
            Ok(Request::Resolve {
                merchant_reference,
                technician,
            }) => {
                info!(%merchant_reference, %technician, "resolve asked for on the control socket");
                if self
                    .commands
                    .send(Command::Resolve(merchant_reference))
                    .await
                    .is_err()
                {
                    return Reply::error(
                        "the payment flow has stopped; restart the daemon: systemctl restart kioskpay",
                    );
                }
                if let Some(desk) = self.refunds.clone() {
                    // Its own task: the lookups take as long as Dintero does, and a console
                    // that stops waiting must not cut them short.
                    tokio::spawn(async move { desk.recover().await });
                }
                Reply::ok()
            }
            Ok(Request::Transactions { since }) => {
                let Some(desk) = self.refunds.clone() else {
                    return no_desk();
                };
                match desk.transactions(since).await {
                    Ok((transactions, truncated)) => Reply {
                        transactions: Some(transactions),
                        truncated: Some(truncated),
                        ..Reply::ok()
                    },
                    Err(e) => Reply::error(e),
                }
            }
            Ok(Request::ScanTest {}) => self.scan_test().await,
            Ok(Request::DisplayTest { screen }) => self.display_test(screen),
            Ok(Request::GpioTest { seen }) => self.gpio_test(seen).await,
            Ok(Request::GpioToggle { line }) => self.gpio_toggle(line).await,
        }
    }

    /// A terminal report from `call`, or why there is none.
    async fn at_desk<F, Fut>(&self, call: F) -> Reply
    where
        F: FnOnce(Desk) -> Fut,
        Fut: std::future::Future<Output = Result<TerminalReport, String>>,
    {
        let Some(desk) = self.desk.clone() else {
            return Reply::error(NO_DESK);
        };
        match call(desk).await {
            Ok(report) => Reply {
                terminal: Some(Box::new(report)),
                ..Reply::ok()
            },
            Err(e) => Reply::error(e),
        }
    }

    /// Flips one output for [`crate::gpio::outputs::TOGGLE_FOR`] and answers when it is back.
    async fn gpio_toggle(&self, line: u32) -> Reply {
        let Some(toggles) = &self.hardware.gpio_toggles else {
            return Reply::error(
                "this kiosk has no GPIO lines ([gpio] is not enabled); nothing to toggle",
            );
        };
        if let Some(why) = self.untestable() {
            return Reply::error(why);
        }
        let (done, toggled) = tokio::sync::oneshot::channel();
        if toggles.send(Toggle { line, done }).await.is_err() {
            return Reply::error(
                "the GPIO unit has stopped; restart the daemon: systemctl restart kioskpay",
            );
        }
        match toggled.await {
            Ok(Some(asserted)) => Reply {
                toggled: Some(asserted),
                ..Reply::ok()
            },
            Ok(None) => Reply::error(format!(
                "line {line} is not one of this kiosk's GPIO outputs; test gpio lists them"
            )),
            Err(_) => Reply::error(
                "the GPIO unit has stopped; restart the daemon: systemctl restart kioskpay",
            ),
        }
    }

    /// The GPIO lines, at once or after the next edge past `seen`.
    async fn gpio_test(&self, seen: Option<u64>) -> Reply {
        let Some(levels) = &self.hardware.gpio else {
            return Reply::error(
                "this kiosk has no GPIO lines ([gpio] is not enabled); nothing to test",
            );
        };
        if let Some(why) = self.untestable() {
            return Reply::error(why);
        }
        let mut levels = levels.clone();
        if let Some(seen) = seen {
            let wait = std::time::Duration::from_secs(GPIO_TEST_WAIT_S);
            // No edge in time, or the GPIO unit gone: the levels as they are.
            let _ = tokio::time::timeout(wait, levels.wait_for(|l| l.changes > seen)).await;
        }
        let now = levels.borrow().clone();
        Reply {
            gpio: Some(Box::new(Gpio {
                changes: now.changes,
                inputs: now
                    .inputs
                    .into_iter()
                    .map(|i| GpioInput {
                        line: i.line,
                        role: i.role,
                        active: i.active,
                    })
                    .collect(),
                outputs: now
                    .outputs
                    .into_iter()
                    .map(|(line, role)| GpioOutput {
                        line,
                        role: role.into(),
                    })
                    .collect(),
            })),
            ..Reply::ok()
        }
    }

    /// Puts the test pattern or a customer screen on the panel, or (`None`) the kiosk's own
    /// screen back.
    fn display_test(&self, screen: Option<String>) -> Reply {
        let Some(display) = &self.hardware.display else {
            return Reply::error(
                "this kiosk has no display ([display] kind = \"none\"); nothing to test",
            );
        };
        let Some(name) = screen else {
            display.send_replace(None);
            return Reply::ok();
        };
        if let Some(why) = self.untestable() {
            return Reply::error(why);
        }
        let shown = match name.as_str() {
            pattern::NAME => Override::Pattern,
            _ => match sample_state(&name, tokio::time::Instant::now()) {
                Some(state) => Override::State(state),
                None => {
                    return Reply::error(format!(
                        "no screen named {name:?}; kioskpay render --list names them"
                    ))
                }
            },
        };
        info!(screen = %name, "display test: a screen on the panel");
        display.send_replace(Some(shown));
        Reply::ok()
    }

    /// Why a hardware test may not run now: it needs maintenance in force, so that no customer
    /// pays or watches while a technician tests. In force means the technician screen shows, or
    /// the refusal of a cart scanned or pressed during maintenance does (a GPIO button pressed
    /// in `test gpio` is such a cart).
    fn untestable(&self) -> Option<String> {
        let book = self.book();
        let shown = [KioskState::Technician.name(), "refused"].contains(&book.state.as_str());
        (!book.maintenance || book.payment.is_some() || !shown).then(|| {
            "maintenance on first: the kiosk must not sell while you test (type: maintenance on; a payment in flight finishes first)".to_string()
        })
    }

    /// Waits for the next scan, which the input unit hands here instead of to the flow.
    async fn scan_test(&self) -> Reply {
        if let Some(why) = self.untestable() {
            return Reply::error(why);
        }
        let Some(scans) = &self.hardware.scans else {
            return Reply::error(
                "this kiosk has no scanner ([input] kind = \"gpio\"); nothing to test",
            );
        };
        let wait = std::time::Duration::from_secs(SCAN_TEST_WAIT_S);
        let scan = match tokio::time::timeout(wait, scans.claim()).await {
            Ok(Ok(ScanReport::Decoded {
                format,
                amount,
                reference,
            })) => Scan::Decoded {
                format: format.into(),
                amount: amount.minor,
                currency: amount.currency.code().into(),
                reference,
            },
            Ok(Ok(ScanReport::Refused { reason, customer })) => Scan::Refused {
                error: reason,
                customer: customer.to_string(),
            },
            Ok(Err(_)) => {
                return Reply::error(
                    "another scanner test took the next scan; run one test at a time",
                )
            }
            Err(_) => {
                return Reply::error(format!("no scan within {SCAN_TEST_WAIT_S} s; check the scanner's cable and power, and that its baud rate matches [input] baud"))
            }
        };
        info!(?scan, "scanner test: a scan was decoded and not paid");
        Reply {
            scan: Some(Box::new(scan)),
            ..Reply::ok()
        }
    }
}

fn config_reply(state: ConfigState) -> Reply {
    Reply {
        config: Some(state),
        ..Reply::ok()
    }
}
/// Why a daemon without an API client cannot answer for the terminal.
const NO_DESK: &str =
    "this daemon has no Dintero client to ask about the terminal; run the kiosk with kioskpay run";
/// The answer to a refund request when the daemon has no refund desk.
fn no_desk() -> Reply {
    Reply::error(
        "this daemon cannot refund: its refund journal could not be opened (see its log: journalctl -u kioskpay)",
    )
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Follows the flow's state and reports into the book and out as events.
async fn track(
    context: Arc<Context>,
    mut state: watch::Receiver<KioskState>,
    mut reports: mpsc::UnboundedReceiver<PaymentReport>,
    shutdown: CancellationToken,
) {
    let mut state_open = true;
    let mut reports_open = true;
    note_state(&context, &state.borrow_and_update().clone());
    while state_open || reports_open {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = state.changed(), if state_open => match changed {
                Ok(()) => {
                    let now = state.borrow_and_update().clone();
                    note_state(&context, &now);
                }
                Err(_) => state_open = false,
            },
            report = reports.recv(), if reports_open => match report {
                Some(report) => note_report(&context, &report),
                None => reports_open = false,
            },
        }
    }
}

fn note_state(context: &Context, state: &KioskState) {
    // A display test ends when maintenance does: a customer never sees a test screen.
    if *state != KioskState::Technician {
        if let Some(display) = &context.hardware.display {
            display.send_if_modified(|test| test.take().is_some());
        }
    }
    let mut started = None;
    {
        let mut book = context.book();
        book.state = state.name().to_string();
        let running = match state {
            KioskState::Creating { amount, reference }
            | KioskState::WaitingForCard {
                amount, reference, ..
            }
            | KioskState::Processing { amount, reference } => Some((reference, Some(amount))),
            KioskState::Checking { reference } => Some((reference, None)),
            // A refusal of a second cart is shown on top of a running payment.
            KioskState::Refused { .. } => {
                drop(book);
                send(
                    context,
                    Event::State {
                        state: state.name().into(),
                    },
                );
                return;
            }
            _ => None,
        };
        match running {
            Some((reference, amount)) => {
                let same = book
                    .payment
                    .as_ref()
                    .is_some_and(|p| p.reference == *reference);
                if !same {
                    if let Some(amount) = amount {
                        book.counters.payments_started += 1;
                        started = Some(Event::PaymentStarted {
                            reference: reference.clone(),
                            amount: amount.minor,
                            currency: amount.currency.code().to_string(),
                        });
                    }
                }
                let known = book.payment.as_ref().filter(|_| same);
                book.payment = Some(CurrentPayment {
                    reference: reference.clone(),
                    amount: amount
                        .map(|a| a.minor)
                        .or_else(|| known.and_then(|p| p.amount)),
                    currency: amount
                        .map(|a| a.currency.code().to_string())
                        .or_else(|| known.and_then(|p| p.currency.clone())),
                    state: state.name().to_string(),
                });
            }
            None => book.payment = None,
        }
        book.problem = match state {
            KioskState::Unavailable { reason } => Some(Problem {
                code: reason.code().into(),
                message: format!("card payment unavailable: {reason}"),
            }),
            KioskState::OutOfService { code } => Some(Problem {
                code: code.clone(),
                message: "out of service".into(),
            }),
            _ => None,
        };
        let problem = match state {
            KioskState::Unavailable { reason } => {
                Some(format!("card payment unavailable: {reason}"))
            }
            KioskState::OutOfService { code } => Some(format!("out of service: {code}")),
            _ => None,
        };
        if let Some(message) = problem {
            book.last_error = Some(LastError {
                at: now_rfc3339(),
                message,
            });
        }
    }
    if let Some(event) = started {
        send(context, event);
    }
    send(
        context,
        Event::State {
            state: state.name().into(),
        },
    );
}

fn note_report(context: &Context, report: &PaymentReport) {
    {
        let mut book = context.book();
        book.counters.payments_finished += 1;
        if matches!(report.outcome, Final::Approved { .. }) {
            book.counters.approved += 1;
        }
        if matches!(
            report.outcome,
            Final::Failed { .. } | Final::Conflict { .. } | Final::NotCreated { .. }
        ) {
            book.last_error = Some(LastError {
                at: now_rfc3339(),
                message: format!("payment {}: {}", report.merchant_reference, report.outcome),
            });
        }
    }
    send(
        context,
        Event::PaymentFinished {
            reference: report.merchant_reference.clone(),
            amount: report.amount.minor,
            currency: report.amount.currency.code().to_string(),
            outcome: report.outcome.outcome().as_str().to_string(),
            detail: report.outcome.to_string(),
        },
    );
}

fn send(context: &Context, event: Event) {
    // No subscriber is no error: events are for whoever listens now.
    let _ = context.events.send(event);
}

/// Reads one line into `buf` (kept across calls, so a read interrupted by an event loses
/// nothing). `Ok(true)`: a whole line; `Ok(false)`: the peer closed.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<bool, &'static str> {
    loop {
        let room = (MAX_LINE + 1).saturating_sub(buf.len()) as u64;
        let read = (&mut *reader)
            .take(room)
            .read_until(b'\n', buf)
            .await
            .map_err(|_| "read failed")?;
        if buf.ends_with(b"\n") {
            return Ok(true);
        }
        if buf.len() > MAX_LINE {
            return Err("the request is longer than 4096 bytes; the connection is closed");
        }
        if read == 0 {
            return Ok(false);
        }
    }
}

async fn connection(stream: UnixStream, context: Arc<Context>, shutdown: CancellationToken) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut events: Option<broadcast::Receiver<Event>> = None;
    let mut buf = Vec::new();
    loop {
        let out = tokio::select! {
            _ = shutdown.cancelled() => break,
            event = next_event(&mut events) => match event {
                Some(event) => serde_json::to_string(&event),
                None => continue,
            },
            line = read_line(&mut reader, &mut buf) => match line {
                Ok(true) => {
                    // A test waiting for the hardware ends with its client (^C at the console).
                    let reply = tokio::select! {
                        reply = context.answer(&buf, &mut events) => reply,
                        () = peer_gone(&mut reader) => break,
                    };
                    buf.clear();
                    serde_json::to_string(&reply)
                }
                Ok(false) => break,
                Err(why) => {
                    debug!(why, "control socket: connection closed");
                    let reply = serde_json::to_string(&Reply::error(why)).unwrap_or_default();
                    let _ = writer.write_all(format!("{reply}\n").as_bytes()).await;
                    break;
                }
            },
        };
        let Ok(mut line) = out else { break };
        line.push('\n');
        if writer.write_all(line.as_bytes()).await.is_err() {
            break;
        }
    }
}

/// Resolves when the peer has closed its side; never while it is there, whatever it sends.
async fn peer_gone<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) {
    if let Ok(buffered) = reader.fill_buf().await {
        if !buffered.is_empty() {
            std::future::pending::<()>().await;
        }
    }
}

/// The next event for a subscribed connection; `None` after missed events (a slow reader) and
/// never for a connection that did not subscribe.
async fn next_event(events: &mut Option<broadcast::Receiver<Event>>) -> Option<Event> {
    match events {
        Some(rx) => match rx.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(_)) => None,
            Err(broadcast::error::RecvError::Closed) => {
                *events = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_the_daemons_user_and_the_sockets_group_may_connect_no_one_else() {
        let peer = |uid, gid, groups: &[u32]| Peer {
            uid,
            gid,
            groups: groups.to_vec(),
        };
        let (daemon, group) = (999, Some(997));
        assert!(may_connect(&peer(0, 0, &[]), daemon, group));
        assert!(may_connect(&peer(999, 999, &[]), daemon, group));
        assert!(may_connect(&peer(1000, 997, &[]), daemon, group));
        assert!(may_connect(&peer(1000, 1000, &[20, 997]), daemon, group));
        assert!(!may_connect(&peer(1000, 1000, &[20]), daemon, group));
        assert!(!may_connect(&peer(1000, 1000, &[997]), daemon, None));
    }

    #[test]
    fn supplementary_groups_are_read_from_proc_status() {
        let status =
            "Name:\tkioskpay\nUid:\t1000\t1000\t1000\t1000\nGroups:\t20 44 997 \nVmPeak:\t1 kB\n";
        assert_eq!(supplementary_groups(status), vec![20, 44, 997]);
        assert_eq!(supplementary_groups("Groups:\n"), Vec::<u32>::new());
        assert_eq!(supplementary_groups(""), Vec::<u32>::new());
    }

    use crate::control::client::{Client, ClientError};
    use crate::money::{Currency, Money};
    use tokio::io::AsyncBufReadExt;

    struct Running {
        dir: tempfile::TempDir,
        state: watch::Sender<KioskState>,
        reports: mpsc::UnboundedSender<PaymentReport>,
        commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    impl Running {
        fn path(&self) -> PathBuf {
            self.dir.path().join("control.sock")
        }
    }

    async fn running() -> Running {
        let dir = tempfile::tempdir().unwrap();
        let (state, state_rx) = watch::channel(KioskState::Idle);
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let (commands_tx, commands) = mpsc::channel(4);
        let server = Server::bind(&dir.path().join("control.sock"))
            .await
            .unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(
            Observed {
                state: state_rx,
                reports: reports_rx,
                commands: commands_tx,
                config: None,
                desk: None,
                health: None,
                hardware: Hardware::default(),
                state_dir: None,
            },
            shutdown.clone(),
        ));
        Running {
            dir,
            state,
            reports,
            commands,
            shutdown,
            task,
        }
    }

    /// Sends raw bytes and reads one reply line.
    async fn raw(path: &Path, bytes: &[u8]) -> Reply {
        let stream = UnixStream::connect(path).await.unwrap();
        let (r, mut w) = stream.into_split();
        w.write_all(bytes).await.unwrap();
        let mut line = String::new();
        BufReader::new(r).read_line(&mut line).await.unwrap();
        serde_json::from_str(&line).unwrap()
    }

    #[tokio::test]
    async fn status_and_maintenance_over_a_real_socket() {
        let mut k = running().await;
        let mode = std::fs::metadata(k.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let mut client = Client::connect(&k.path()).await.unwrap();
        let status = client.status().await.unwrap();
        assert_eq!(status.state, "idle");
        assert!(!status.maintenance && status.payment.is_none());
        assert_eq!(status.version, env!("CARGO_PKG_VERSION"));

        client.maintenance(true).await.unwrap();
        assert_eq!(k.commands.recv().await, Some(Command::Maintenance(true)));
        assert!(client.status().await.unwrap().maintenance);

        let events = Client::connect(&k.path()).await.unwrap();
        let mut events = events.subscribe().await.unwrap();
        let amount = Money::new(39900, Currency::NOK);
        k.state.send_replace(KioskState::Creating {
            amount,
            reference: "kiosk-1-X-20261205-000001".into(),
        });
        assert_eq!(
            events.next().await,
            Some(Event::PaymentStarted {
                reference: "kiosk-1-X-20261205-000001".into(),
                amount: 39900,
                currency: "NOK".into(),
            })
        );
        let status = client.status().await.unwrap();
        assert_eq!(status.counters.payments_started, 1);
        assert_eq!(status.payment.unwrap().amount, Some(39900));
        k.reports
            .send(PaymentReport {
                merchant_reference: "kiosk-1-X-20261205-000001".into(),
                amount,
                cart_reference: None,
                outcome: Final::NotCreated {
                    reason: "refused".into(),
                },
                recovered: false,
            })
            .unwrap();
        loop {
            match events.next().await.unwrap() {
                Event::PaymentFinished { outcome, .. } => {
                    assert_eq!(outcome, "not_created");
                    break;
                }
                Event::State { .. } => continue,
                other => panic!("{other:?}"),
            }
        }
        let status = client.status().await.unwrap();
        assert_eq!(status.counters.payments_finished, 1);
        assert!(status.last_error.unwrap().message.contains("not created"));

        let path = k.path();
        k.shutdown.cancel();
        k.task.await.unwrap();
        assert!(!path.exists(), "the socket is removed at shutdown");
        assert!(matches!(
            Client::connect(&path).await,
            Err(ClientError::NotRunning { .. })
        ));
    }

    #[tokio::test]
    async fn garbage_and_overlong_lines_get_an_error_object_and_the_server_keeps_serving() {
        let k = running().await;
        for garbage in [
            &b"\xff\xfe\x00garbage\n"[..],
            b"{\"cmd\":\"reboot\"}\n",
            b"\n",
        ] {
            let reply = raw(&k.path(), garbage).await;
            assert!(!reply.ok && reply.error.unwrap().contains("not a request"));
        }
        let mut long = vec![b'x'; MAX_LINE + 10];
        long.push(b'\n');
        let reply = raw(&k.path(), &long).await;
        assert!(reply.error.unwrap().contains("longer than 4096"));
        let reply = raw(&k.path(), b"{\"cmd\":\"status\"}\n").await;
        assert!(reply.ok && reply.status.is_some());
        k.shutdown.cancel();
        k.task.await.unwrap();
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_but_a_live_one_is_not() {
        let k = running().await;
        let second = Server::bind(&k.path()).await;
        assert!(second.is_err(), "a second daemon must not take the socket");
        let path = k.path();
        k.shutdown.cancel();
        k.task.await.unwrap();
        // A socket file left behind by a daemon that was killed.
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(Server::bind(&path).await.is_ok());
    }
}
