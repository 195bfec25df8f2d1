//! Wiring: the tasks of a running kiosk and the one shutdown signal they share.
//!
//! [`Kiosk::start`] opens the journal, then spawns the display task (observes the state), the
//! input task (produces carts), the GPIO unit when configured (buttons and pulses produce carts,
//! handshake outputs observe the state), the callback listener when `[callback]` is configured
//! (nudges the flow to read a payment at once) and the payment flow (owns payments). The daemon (`kioskpay
//! run`), the demo and the integration tests all start a kiosk through here, so what the tests
//! exercise is what runs on a board; they differ only in where carts come from
//! ([`InputWiring`]) and which [`Gateway`] is plugged in.
//!
//! The kiosk also carries what operations need: the flow's [`Liveness`] for systemd's watchdog
//! ([`crate::systemd`]), [`Counters`] for the metrics file ([`crate::metrics`]), and
//! [`Kiosk::reload`] for SIGHUP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::callback::{CallbackError, Listener};
use crate::config::rollback::{self, Deadline, Pending};
use crate::config::{Config, DisplayKind};
use crate::control::protocol::ConfigState;
use crate::control::server::Hardware;
use crate::control::server::{ConfigControl, ConfigRequest};
use crate::dintero::Gateway;
use crate::display;
use crate::gpio::{self, GpioBackend, GpioError, GpioUnit};
use crate::input::{self, InputEvent, ScanDiversion};
use crate::journal::{Journal, JournalError, Outcome};
use crate::metrics::{Counters, Metered};
use crate::payment::flow::{Command, Flow, FlowChannels, FlowConfig, FlowError, PaymentReport};
use crate::payment::late::LateWatch;
use crate::state::KioskState;
use crate::systemd::{Heartbeat, Liveness};

/// Where a kiosk's carts come from.
pub enum InputWiring {
    /// The input unit named in the config (`[input]`).
    FromConfig,
    /// Only what the caller sends on [`Kiosk::inputs`] (demo, tests, soak).
    External,
}

/// Starts the display task for `config`, stopped by its own token or the kiosk's shutdown.
fn spawn_display(
    config: &Config,
    states: watch::Receiver<KioskState>,
    shutdown: &CancellationToken,
    health: &watch::Sender<display::PanelHealth>,
    tests: watch::Receiver<Option<display::Override>>,
) -> Result<Option<(CancellationToken, JoinHandle<()>, bool)>, StartError> {
    if config.display.kind == DisplayKind::None && config.display.board.is_none() {
        return Ok(None);
    }
    let setup =
        display::setup_for(&config.display).map_err(|e| StartError::Display(e.to_string()))?;
    let settings = display::Settings {
        lang: config.kiosk.language,
        size: setup.size,
        receipt_url: config
            .display
            .receipt_url
            .as_deref()
            .and_then(|t| display::ReceiptUrl::parse(t).ok()),
    };
    let customer_facing = setup.customer_facing;
    let health = customer_facing.then(|| health.clone());
    let token = shutdown.child_token();
    let stop = token.clone();
    let panel = setup.panel;
    let handle = tokio::spawn(async move {
        display::run_tested(
            states,
            tests,
            panel,
            settings,
            health,
            stop.cancelled_owned(),
        )
        .await;
    });
    Ok(Some((token, handle, customer_facing)))
}

/// Why a kiosk could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The journal in `state.dir` could not be opened.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The display backend could not be set up.
    #[error("display: {0}")]
    Display(String),
    /// The GPIO lines in `[gpio]` could not be claimed.
    #[error(transparent)]
    Gpio(#[from] GpioError),
    /// The callback listener in `[callback]` could not be bound.
    #[error(transparent)]
    Callback(#[from] CallbackError),
}

/// A running kiosk.
pub struct Kiosk {
    /// What the kiosk shows, as the flow publishes it.
    pub state: watch::Receiver<KioskState>,
    /// Feeds input events to the flow (the config's input unit uses a clone of it).
    pub inputs: mpsc::Sender<InputEvent>,
    /// Commands to the flow (cancel, health check).
    pub commands: mpsc::Sender<Command>,
    /// One report per finished payment.
    pub reports: mpsc::UnboundedReceiver<PaymentReport>,
    /// The flow's proof of life and readiness, for systemd and the metrics.
    pub liveness: Liveness,
    /// Counters the metrics file reports (gateway errors, scanner reconnects, display errors,
    /// callbacks).
    pub counters: Arc<Counters>,
    /// Where the callback listener listens (`[callback]`), with the port the OS chose for 0.
    pub callback_addr: Option<SocketAddr>,
    /// Whether the serial scanner is there (from the input task's reports); `None` without
    /// one.
    pub scanner: Option<watch::Receiver<bool>>,
    /// What the console's hardware tests reach: the next scan, the panel, the GPIO lines.
    pub hardware: Hardware,
    /// The config in force; [`Kiosk::reload`] replaces its run-time part.
    config: Config,
    /// Whether the display is a customer-facing panel that reports its health.
    customer_facing: bool,
    /// New payment settings for the flow after a reload.
    settings: watch::Sender<FlowConfig>,
    /// The display task and its own stop token: a reload restarts it with the new settings.
    display: Option<(CancellationToken, JoinHandle<()>)>,
    /// The display's health channel, shared by every display task the kiosk runs.
    display_health: watch::Sender<display::PanelHealth>,
    /// What `test display` shows instead of the kiosk's screen, for every display task.
    display_tests: watch::Sender<Option<display::Override>>,
    shutdown: CancellationToken,
    flow: JoinHandle<Result<(), FlowError>>,
    helpers: Vec<JoinHandle<()>>,
}

impl Kiosk {
    /// Opens the journal and starts every task of the kiosk. Payments the journal shows as
    /// unfinished are resolved by the flow before it takes any cart. With
    /// [`InputWiring::FromConfig`] and GPIO configured, the configured GPIO driver is opened too.
    pub fn start<G: Gateway>(
        config: &Config,
        gateway: Arc<G>,
        inputs: InputWiring,
    ) -> Result<Kiosk, StartError> {
        let gpio = match inputs {
            InputWiring::FromConfig if config.gpio_enabled() => {
                Some(gpio::open_backend(&config.gpio)?)
            }
            _ => None,
        };
        Kiosk::start_with_gpio(config, gateway, inputs, gpio)
    }

    /// [`Kiosk::start`] with the `[gpio]` lines on `gpio` instead of the configured driver
    /// (tests plug in a fake; `None` runs without GPIO).
    pub fn start_with_gpio<G: Gateway>(
        config: &Config,
        gateway: Arc<G>,
        inputs: InputWiring,
        gpio: Option<Box<dyn GpioBackend>>,
    ) -> Result<Kiosk, StartError> {
        // Compacted here, from the bytes just replayed, before anything runs: the start reads
        // and parses a big journal once.
        let (journal, replay) =
            Journal::open_compacting(&config.state.dir, config.state.keep_final)?;
        for problem in &replay.problems {
            error!(%problem, "journal problem");
        }
        let unresolved: Vec<_> = replay.unresolved().cloned().collect();
        if !unresolved.is_empty() {
            info!(
                count = unresolved.len(),
                "unfinished payments in the journal; resolving them first"
            );
        }
        let counters = crate::metrics::process_counters();
        // Bound before any task starts, so a port in use leaves nothing running and says so.
        let (nudge_tx, nudge_rx) = mpsc::channel(8);
        let callback = match &config.callback {
            Some(callback) => Some(Listener::bind(
                callback,
                &config.dintero.account_id.to_string(),
                nudge_tx,
                counters.callbacks.clone(),
            )?),
            None => None,
        };
        let callback_addr = callback.as_ref().and_then(|l| l.local_addr().ok());
        let shutdown = CancellationToken::new();
        let (state_tx, state_rx) = watch::channel(KioskState::Starting);
        let (input_tx, input_rx) = mpsc::channel(16);
        let (command_tx, command_rx) = mpsc::channel(8);
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let mut helpers = Vec::new();
        let mut hardware = Hardware::default();

        if let Some(backend) = gpio {
            // Claimed before any task starts, so a GPIO error leaves nothing running.
            let unit = GpioUnit::open(&config.gpio, config.currency(), backend)?;
            hardware.gpio = Some(unit.levels());
            hardware.gpio_toggles = Some(unit.toggles());
            let token = shutdown.clone();
            let (inputs, commands, states) =
                (input_tx.clone(), command_tx.clone(), state_rx.clone());
            helpers.push(tokio::spawn(async move {
                unit.run(inputs, commands, states, token.cancelled_owned())
                    .await;
            }));
        }
        // One health channel for the kiosk's life: a display restarted by a reload reports on it
        // too, so the flow's gate keeps working.
        let (display_health, display_health_rx) = watch::channel(display::PanelHealth::Unknown);
        let (display_tests, _) = watch::channel(None);
        let display = spawn_display(
            config,
            state_rx.clone(),
            &shutdown,
            &display_health,
            display_tests.subscribe(),
        )?;
        if display.is_some() {
            hardware.display = Some(display_tests.clone());
        }
        let customer_facing = display.as_ref().is_some_and(|d| d.2);
        let display = display.map(|(token, handle, _)| (token, handle));
        let (scanner_tx, scanner_rx) = watch::channel(true);
        let scanner = (matches!(inputs, InputWiring::FromConfig)
            && config.input.kind == crate::config::InputKind::Serial)
            .then_some(scanner_rx);
        if let InputWiring::FromConfig = inputs {
            let token = shutdown.clone();
            let (tap_tx, mut tap_rx) = mpsc::channel(16);
            let input_config = config.input.clone();
            let currency = config.currency();
            let scans = ScanDiversion::default();
            if config.input.kind != input::InputKind::Gpio {
                hardware.scans = Some(scans.clone());
            }
            helpers.push(tokio::spawn(async move {
                input::run_diverted(
                    input_config,
                    currency,
                    tap_tx,
                    scans,
                    token.cancelled_owned(),
                )
                .await;
            }));
            // Counts scanner reconnects on the way to the flow; the tap ends with the input.
            let tx = input_tx.clone();
            let tap_counters = counters.clone();
            helpers.push(tokio::spawn(async move {
                while let Some(event) = tap_rx.recv().await {
                    if event == InputEvent::ScannerBack {
                        tap_counters
                            .scanner_reconnects
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    match event {
                        InputEvent::ScannerBack => scanner_tx.send_replace(true),
                        InputEvent::ScannerUnavailable => scanner_tx.send_replace(false),
                        _ => true,
                    };
                    if tx.send(event).await.is_err() {
                        break;
                    }
                }
            }));
        }

        let paid_carts = replay
            .payments
            .iter()
            .filter(|p| p.outcome == Some(Outcome::Approved))
            .filter_map(|p| p.cart_reference.clone());
        let flow_config = FlowConfig::from_config(config);
        let (settings, settings_rx) = watch::channel(flow_config.clone());
        let (heartbeat, liveness) = Heartbeat::new(crate::systemd::beat_period(
            crate::systemd::watchdog_from_env(),
        ));
        let flow = Flow::new(
            Arc::new(Metered::new(gateway, counters.clone())),
            journal,
            unresolved,
            flow_config,
            FlowChannels {
                inputs: input_rx,
                commands: command_rx,
                state: state_tx,
                reports: Some(report_tx),
            },
        )
        .with_paid_cart_references(paid_carts)
        .with_late_watch(LateWatch::from_journal(
            &replay.payments,
            time::OffsetDateTime::now_utc(),
            config.currency(),
        ))
        .with_heartbeat(heartbeat)
        .with_settings(settings_rx)
        .with_maintenance(crate::control::maintenance::kept(&config.state.dir));
        let flow = if customer_facing {
            flow.with_display_health(display_health_rx)
        } else {
            flow
        };
        let flow = match callback {
            Some(listener) => {
                let token = shutdown.clone();
                helpers.push(tokio::spawn(listener.run(token.cancelled_owned())));
                flow.with_callbacks(nudge_rx)
            }
            None => flow,
        };
        let token = shutdown.clone();
        let flow = tokio::spawn(async move { flow.run(token.cancelled_owned()).await });
        Ok(Kiosk {
            state: state_rx,
            inputs: input_tx,
            commands: command_tx,
            reports: report_rx,
            liveness,
            counters,
            callback_addr,
            scanner,
            hardware,
            config: config.clone(),
            customer_facing,
            settings,
            display,
            display_health,
            display_tests,
            shutdown,
            flow,
            helpers,
        })
    }

    /// Puts a re-read config in force without a restart (SIGHUP): the language, the display,
    /// `max_amount` and the `[payment]` timings. The flow takes the new settings between
    /// payments; the display is restarted with the new ones. Returns the keys that changed but
    /// need a restart (identity, Dintero account, store, input, state, metrics, callback); those
    /// keep their running values, and each is logged.
    pub fn reload(&mut self, new: &Config) -> Result<Vec<&'static str>, StartError> {
        let old = &self.config;
        let mut needs_restart = Vec::new();
        let mut differs = |key: &'static str, changed: bool| {
            if changed {
                tracing::warn!(
                    key,
                    "changed in the config file; takes effect only after a restart"
                );
                needs_restart.push(key);
            }
        };
        differs("kiosk.id", old.kiosk.id != new.kiosk.id);
        differs("kiosk.currency", old.kiosk.currency != new.kiosk.currency);
        differs(
            "dintero",
            old.dintero.account_id != new.dintero.account_id
                || old.dintero.client_id != new.dintero.client_id
                || old.dintero.client_secret_file != new.dintero.client_secret_file
                || old.dintero.profile_id != new.dintero.profile_id
                || old.dintero.checkout_url != new.dintero.checkout_url
                || old.dintero.api_url != new.dintero.api_url
                || old.dintero.return_url != new.dintero.return_url
                || old.dintero.vat_percent != new.dintero.vat_percent
                || old.dintero.call_timeout != new.dintero.call_timeout
                || old.dintero.connect_timeout != new.dintero.connect_timeout,
        );
        differs("store", old.store != new.store);
        differs(
            "input",
            format!("{:?}", old.input) != format!("{:?}", new.input),
        );
        differs("state", old.state != new.state);
        differs("metrics", old.metrics != new.metrics);
        differs("callback", old.callback != new.callback);

        let mut merged = old.clone();
        merged.kiosk.language = new.kiosk.language;
        merged.kiosk.max_amount = new.kiosk.max_amount;
        merged.display = new.display.clone();
        merged.payment = new.payment.clone();
        if format!("{:?}", merged.display) != format!("{:?}", old.display)
            || merged.kiosk.language != old.kiosk.language
        {
            let states = self.state.clone();
            let tests = self.display_tests.subscribe();
            let display =
                spawn_display(&merged, states, &self.shutdown, &self.display_health, tests)?
                    .map(|(token, handle, _)| (token, handle));
            if let Some((token, _)) = std::mem::replace(&mut self.display, display) {
                token.cancel();
            }
            info!(language = merged.kiosk.language.code(), display = ?merged.display.kind, "display restarted with the new settings");
        }
        self.settings.send_replace(FlowConfig::from_config(&merged));
        self.config = merged;
        Ok(needs_restart)
    }

    /// A handle that stops the kiosk when cancelled (for signal handlers).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until the shutdown token is cancelled or the flow stops by itself.
    pub async fn wait(self) -> Result<(), FlowError> {
        let Kiosk {
            shutdown,
            flow,
            mut helpers,
            display,
            ..
        } = self;
        helpers.extend(display.map(|(_, handle)| handle));
        let result = match flow.await {
            Ok(result) => result,
            Err(e) => {
                error!(error = %e, "the payment flow task ended abnormally");
                Ok(())
            }
        };
        shutdown.cancel();
        for helper in helpers {
            let _ = helper.await;
        }
        result
    }

    /// Stops every task and waits for them. A payment in flight stays in the journal and is
    /// resolved at the next start.
    pub async fn stop(self) -> Result<(), FlowError> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// `kioskpay run`: loads the config, starts the kiosk, the systemd supervisor and the metrics
/// writer, and runs until SIGTERM or Ctrl-C; SIGHUP reloads the config.
pub async fn run(path: PathBuf) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use tokio::signal::unix::{signal, SignalKind};
    // The state directory is where an applied edit's confirm deadline is kept: known before
    // the config in force is, because that deadline decides which file it is.
    let state_dir = crate::config::state_dir_of(None, Some(path.clone()))?;
    let (config_state, config_state_rx) = watch::channel(ConfigState::default());
    let mut source = ConfigSource {
        path,
        state_dir,
        state: config_state,
        deadline: None,
    };
    let config = match source.load() {
        Ok(config) => config,
        // A config error keeps its type: it is what makes the exit status 2.
        Err(LoadError::Config(e)) => return Err(e.into()),
        Err(LoadError::Deadline(e)) => anyhow::bail!(e),
    };
    let client = crate::dintero::client::Client::new(
        crate::dintero::client::ClientConfig::from_config(&config.dintero)?,
    );
    tracing::info!(kiosk = %config.kiosk.id, terminal = %config.store.terminal_id, "kioskpay starting");
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let desk = crate::control::desk::Desk::new(
        client.clone(),
        config.store.terminal_id.as_str().to_string(),
        config.currency(),
    );
    let client = Arc::new(client);
    let mut kiosk = Kiosk::start(&config, client.clone(), InputWiring::FromConfig)
        .context("starting the kiosk")?;
    let refunds = open_refund_desk(&config, client, &kiosk);
    let token = kiosk.shutdown_token();
    let watchdog = crate::systemd::watchdog_from_env();
    let supervisor = tokio::spawn(crate::systemd::supervise(
        kiosk.liveness.clone(),
        kiosk.state.clone(),
        watchdog,
        crate::systemd::SdNotify::default(),
        token.clone().cancelled_owned(),
    ));
    // The metrics and the control socket both want every payment report: one copy each.
    let (metrics_reports, control_reports) = fan_out(std::mem::replace(
        &mut kiosk.reports,
        tokio::sync::mpsc::unbounded_channel().1,
    ));
    let (config_requests_tx, mut config_requests) = mpsc::channel(4);
    let config_control = ConfigControl {
        requests: config_requests_tx,
        state: config_state_rx,
    };
    let control = serve_control(
        &kiosk,
        control_reports,
        desk,
        refunds,
        config_control,
        token.clone(),
    )
    .await;
    let metrics = config.metrics.textfile.clone().map(|textfile| {
        tokio::spawn(crate::metrics::run(
            crate::metrics::MetricsOptions {
                textfile,
                interval: config.metrics.interval,
                state_dir: config.state.dir.clone(),
            },
            kiosk.counters.clone(),
            kiosk.state.clone(),
            metrics_reports,
            kiosk.liveness.clone(),
            token.clone().cancelled_owned(),
        ))
    });
    let mut exit = ExitCode::SUCCESS;
    loop {
        let deadline = source.deadline.as_ref().map(Deadline::remaining);
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hangup.recv() => {
                let _ = reload(&mut kiosk, &mut source);
            }
            Some(request) = config_requests.recv() => match request {
                ConfigRequest::Reload(reply) => {
                    let _ = reply.send(reload(&mut kiosk, &mut source));
                }
                ConfigRequest::Confirm(reply) => {
                    let _ = reply.send(source.confirm());
                }
                ConfigRequest::CheckCredentials(reply) => {
                    // A token request takes up to the call timeout: not in this loop.
                    let file = PathBuf::from(&source.state.borrow().file);
                    tokio::spawn(async move {
                        let _ = reply.send(check_credentials(&file).await);
                    });
                }
            },
            _ = tokio::time::sleep(deadline.unwrap_or_default()), if deadline.is_some() => {
                if roll_back(&mut kiosk, &mut source) {
                    // Restarted by the service manager (Restart=always) on the previous file.
                    exit = ExitCode::FAILURE;
                    break;
                }
            }
        }
    }
    tracing::info!("stopping: no new carts; a payment in flight is journaled for the next start");
    kiosk.stop().await?;
    let _ = supervisor.await;
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
    if let Some(control) = control {
        let _ = control.await;
    }
    tracing::info!("stopped");
    Ok(exit)
}

/// Serves the control socket ([`crate::control::socket_path`]) for the technician console until
/// `shutdown`. A socket that cannot be bound is logged and the kiosk runs without it: taking
/// payments matters more than the console.
async fn serve_control(
    kiosk: &Kiosk,
    reports: mpsc::UnboundedReceiver<PaymentReport>,
    desk: crate::control::desk::Desk,
    refunds: Option<Arc<crate::refund::Desk>>,
    config: ConfigControl,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    let path = crate::control::socket_path();
    match crate::control::server::Server::bind(&path).await {
        Ok(server) => {
            let server = match refunds {
                Some(refunds) => server.with_refund_desk(refunds),
                None => server,
            };
            let observed = crate::control::server::Observed {
                state: kiosk.state.clone(),
                reports,
                commands: kiosk.commands.clone(),
                health: Some(crate::control::health::Sources {
                    client: desk.client().clone(),
                    scanner: kiosk.scanner.clone(),
                    input_kind: format!("{:?}", kiosk.config.input.kind).to_lowercase(),
                    display: kiosk
                        .customer_facing
                        .then(|| kiosk.display_health.subscribe()),
                    display_kind: format!("{:?}", kiosk.config.display.kind).to_lowercase(),
                    gpio: kiosk.config.gpio_enabled(),
                    state_dir: kiosk.config.state.dir.clone(),
                }),
                desk: Some(desk),
                config: Some(config),
                hardware: kiosk.hardware.clone(),
                state_dir: Some(kiosk.config.state.dir.clone()),
            };
            Some(tokio::spawn(server.serve(observed, shutdown)))
        }
        Err(e) => {
            error!(error = %e, "no control socket");
            None
        }
    }
}

/// Opens the refund desk and settles, in the background, the refunds a crash left open (they
/// need Dintero, not the terminal, so carts need not wait for them). A refund journal that
/// cannot be opened is logged and the kiosk runs without refunds: taking payments matters more.
fn open_refund_desk<G: Gateway>(
    config: &Config,
    gateway: Arc<G>,
    kiosk: &Kiosk,
) -> Option<Arc<crate::refund::Desk>> {
    let side = crate::refund::KioskSide {
        terminal_id: config.store.terminal_id.to_string(),
        commands: kiosk.commands.clone(),
        state: kiosk.state.clone(),
    };
    match crate::refund::Desk::open(
        &config.state.dir,
        gateway,
        side,
        crate::refund::Timing::for_kiosk(),
    ) {
        Ok(desk) => {
            let desk = Arc::new(desk);
            let recovering = desk.clone();
            tokio::spawn(async move { recovering.settle_open().await });
            Some(desk)
        }
        Err(e) => {
            error!(error = %e, "no refund desk: the console cannot refund or void");
            None
        }
    }
}

/// Copies every report to two receivers; ends when the flow's sender is gone.
fn fan_out(
    mut reports: mpsc::UnboundedReceiver<PaymentReport>,
) -> (
    mpsc::UnboundedReceiver<PaymentReport>,
    mpsc::UnboundedReceiver<PaymentReport>,
) {
    let (first, first_rx) = mpsc::unbounded_channel();
    let (second, second_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(report) = reports.recv().await {
            let _ = first.send(report.clone());
            let _ = second.send(report);
        }
    });
    (first_rx, second_rx)
}

/// The daemon's config file and the confirm deadline of an edit applied to it: which file is
/// in force, and when an unconfirmed edit is rolled back ([`crate::config::rollback`] says why
/// the daemon keeps that deadline).
struct ConfigSource {
    /// The config file (`--config`).
    path: PathBuf,
    /// Where the deadline and the previous file are kept.
    state_dir: PathBuf,
    /// The config in force, for `status` on the control socket.
    state: watch::Sender<ConfigState>,
    /// The deadline being kept, while an applied edit awaits a confirm.
    deadline: Option<Deadline>,
}

/// Why the config in force could not be loaded.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    /// The file itself.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The confirm deadline's files in the state directory.
    #[error("{0}")]
    Deadline(String),
}

impl ConfigSource {
    /// Loads the file in force: the config file, or the previous one after a rollback.
    fn load(&mut self) -> Result<Config, LoadError> {
        let (file, deadline) =
            rollback::in_force(&self.path, &self.state_dir).map_err(LoadError::Deadline)?;
        let config = Config::load(&file)?;
        if file != self.path {
            tracing::warn!(
                file = %file.display(),
                config = %self.path.display(),
                "an unconfirmed config edit was rolled back: running on the previous file until a technician console restores it over the config file"
            );
        }
        self.state.send_modify(|state| {
            state.file = file.display().to_string();
            state.confirm_deadline_unix_ms = deadline.as_ref().map(|d| d.deadline_unix_ms);
        });
        self.deadline = deadline;
        Ok(config)
    }

    /// `confirm`: the applied edit stays.
    fn confirm(&mut self) -> Result<ConfigState, String> {
        match rollback::pending(&self.state_dir)? {
            Pending::Awaiting(_) => {
                rollback::confirm(&self.state_dir).map_err(|e| {
                    format!(
                        "cannot remove the confirm deadline in {}: {e}; is the state directory writable?",
                        self.state_dir.display()
                    )
                })?;
                info!("the applied config edit was confirmed; it stays");
                self.deadline = None;
                self.state
                    .send_modify(|state| state.confirm_deadline_unix_ms = None);
                Ok(self.state.borrow().clone())
            }
            Pending::RolledBack(deadline) => Err(format!(
                "too late: the edit applied at {} was not confirmed in time and has been rolled back; stage it again and apply it",
                deadline.applied_at
            )),
            Pending::Nothing => Err("no applied config edit awaits a confirm".into()),
        }
    }
}

/// `check_credentials`: a token request with the credentials the config file in force names
/// now, made as the daemon's user, so that it also proves the daemon may read the new secret
/// file. The running client keeps its credentials until a restart.
async fn check_credentials(file: &std::path::Path) -> Result<String, String> {
    let config = Config::load(file).map_err(|e| e.to_string())?;
    config.dintero.check_credentials().await?;
    Ok(format!(
        "{}: token issued to client {}",
        config.dintero.api_url, config.dintero.client_id
    ))
}

/// SIGHUP and `reload`: re-reads the config in force and puts what can change at run time in
/// force (the flow takes it between payments). A file that does not load leaves the running
/// config as it is; the error says why.
fn reload(kiosk: &mut Kiosk, source: &mut ConfigSource) -> Result<ConfigState, String> {
    let mut notifier = crate::systemd::SdNotify::default();
    use crate::systemd::Notifier as _;
    notifier.send(crate::systemd::Message::Reloading);
    let result = source
        .load()
        .map_err(|e| e.to_string())
        .and_then(|new| kiosk.reload(&new).map_err(|e| e.to_string()));
    notifier.send(crate::systemd::Message::Ready);
    match result {
        Ok(needs_restart) => {
            tracing::info!(
                path = %source.path.display(),
                needs_restart = ?needs_restart,
                "config reloaded"
            );
            source.state.send_modify(|state| {
                state.needs_restart = needs_restart.iter().map(|k| k.to_string()).collect();
            });
            Ok(source.state.borrow().clone())
        }
        Err(e) => {
            tracing::error!(error = %e, "config reload failed; the running settings stay");
            Err(format!("{e}; the running settings stay"))
        }
    }
}

/// The confirm deadline passed: marks the edit rolled back and puts the previous file in force.
/// Returns true when the daemon must restart for it: the edit changed keys that only a start
/// reads (the Dintero account, the store) and the daemon had started with them.
fn roll_back(kiosk: &mut Kiosk, source: &mut ConfigSource) -> bool {
    match rollback::roll_back(&source.state_dir) {
        Ok(Some(deadline)) => tracing::warn!(
            applied_at = %deadline.applied_at,
            "the config edit was not confirmed in time: rolling back to the previous file"
        ),
        // No longer awaited (the deadline file was removed by hand): nothing to roll back.
        Ok(None) => {
            source.deadline = None;
            source
                .state
                .send_modify(|state| state.confirm_deadline_unix_ms = None);
            return false;
        }
        Err(e) => tracing::error!(
            error = %e,
            "cannot mark the unconfirmed config edit rolled back; rolling back in memory only"
        ),
    }
    source.deadline = None;
    let loaded = match Config::load(&source.state_dir.join(rollback::PREVIOUS)) {
        Ok(previous) => kiosk.reload(&previous).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    source.state.send_modify(|state| {
        state.file = source
            .state_dir
            .join(rollback::PREVIOUS)
            .display()
            .to_string();
        state.confirm_deadline_unix_ms = None;
        state.rolled_back_at = Some(at);
    });
    match loaded {
        Ok(needs_restart) if needs_restart.is_empty() => {
            info!("the previous config is in force again");
            false
        }
        Ok(needs_restart) => {
            tracing::warn!(keys = ?needs_restart, "the rolled-back edit changed keys only a start reads: restarting on the previous file");
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "the previous config file does not load: the edited one stays in force; fix it at the console");
            false
        }
    }
}
