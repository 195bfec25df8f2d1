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
use crate::config::{Config, DisplayKind};
use crate::dintero::Gateway;
use crate::display;
use crate::gpio::{self, GpioBackend, GpioError, GpioUnit};
use crate::input::{self, InputEvent};
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
        display::run_with(states, panel, settings, health, stop.cancelled_owned()).await;
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
    /// The config in force; [`Kiosk::reload`] replaces its run-time part.
    config: Config,
    /// New payment settings for the flow after a reload.
    settings: watch::Sender<FlowConfig>,
    /// The display task and its own stop token: a reload restarts it with the new settings.
    display: Option<(CancellationToken, JoinHandle<()>)>,
    /// The display's health channel, shared by every display task the kiosk runs.
    display_health: watch::Sender<display::PanelHealth>,
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
        let (journal, replay) = Journal::open(&config.state.dir)?;
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

        if let Some(backend) = gpio {
            // Claimed before any task starts, so a GPIO error leaves nothing running.
            let unit = GpioUnit::open(&config.gpio, config.currency(), backend)?;
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
        let display = spawn_display(config, state_rx.clone(), &shutdown, &display_health)?;
        let customer_facing = display.as_ref().is_some_and(|d| d.2);
        let display = display.map(|(token, handle, _)| (token, handle));
        if let InputWiring::FromConfig = inputs {
            let token = shutdown.clone();
            let (tap_tx, mut tap_rx) = mpsc::channel(16);
            let input_config = config.input.clone();
            let currency = config.currency();
            helpers.push(tokio::spawn(async move {
                input::run(input_config, currency, tap_tx, token.cancelled_owned()).await;
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
        .with_settings(settings_rx);
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
            config: config.clone(),
            settings,
            display,
            display_health,
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
            let display = spawn_display(&merged, states, &self.shutdown, &self.display_health)?
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
    let config = Config::load(&path)?;
    let client = crate::dintero::client::Client::new(
        crate::dintero::client::ClientConfig::from_config(&config.dintero)?,
    );
    tracing::info!(kiosk = %config.kiosk.id, terminal = %config.store.terminal_id, "kioskpay starting");
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let client = Arc::new(client);
    let mut kiosk = Kiosk::start(&config, client.clone(), InputWiring::FromConfig)
        .context("starting the kiosk")?;
    let desk = open_refund_desk(&config, client, &kiosk);
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
    let control = serve_control(&kiosk, control_reports, desk, token.clone()).await;
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
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hangup.recv() => reload(&mut kiosk, &path),
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
    Ok(ExitCode::SUCCESS)
}

/// Serves the control socket ([`crate::control::socket_path`]) for the technician console until
/// `shutdown`. A socket that cannot be bound is logged and the kiosk runs without it: taking
/// payments matters more than the console.
async fn serve_control(
    kiosk: &Kiosk,
    reports: mpsc::UnboundedReceiver<PaymentReport>,
    desk: Option<Arc<crate::refund::Desk>>,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    let path = crate::control::socket_path();
    match crate::control::server::Server::bind(&path).await {
        Ok(server) => {
            let server = match desk {
                Some(desk) => server.with_refund_desk(desk),
                None => server,
            };
            let observed = crate::control::server::Observed {
                state: kiosk.state.clone(),
                reports,
                commands: kiosk.commands.clone(),
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
        crate::refund::Timing::default(),
    ) {
        Ok(desk) => {
            let desk = Arc::new(desk);
            let recovering = desk.clone();
            tokio::spawn(async move {
                let open = recovering.recover().await;
                if open > 0 {
                    tracing::warn!(open, "refunds still open: Dintero could not be read for them; they are looked up again before the next refund");
                }
            });
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

/// SIGHUP: re-reads the config file and puts what can change at run time in force. A file that
/// does not load leaves the running config as it is.
fn reload(kiosk: &mut Kiosk, path: &std::path::Path) {
    let mut notifier = crate::systemd::SdNotify::default();
    use crate::systemd::Notifier as _;
    notifier.send(crate::systemd::Message::Reloading);
    match Config::load(path) {
        Ok(new) => match kiosk.reload(&new) {
            Ok(needs_restart) => tracing::info!(
                path = %path.display(),
                needs_restart = ?needs_restart,
                "config reloaded"
            ),
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; the running settings stay")
            }
        },
        Err(e) => tracing::error!(error = %e, "config reload failed; the running settings stay"),
    }
    notifier.send(crate::systemd::Message::Ready);
}
