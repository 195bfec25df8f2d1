//! Wiring: the tasks of a running kiosk and the one shutdown signal they share.
//!
//! [`Kiosk::start`] opens the journal, then spawns the display task (observes the state), the
//! input task (produces carts), the GPIO unit when configured (buttons and pulses produce carts,
//! handshake outputs observe the state) and the payment flow (owns payments). The daemon (`kioskpay
//! run`), the demo and the integration tests all start a kiosk through here, so what the tests
//! exercise is what runs on a board; they differ only in where carts come from
//! ([`InputWiring`]) and which [`Gateway`] is plugged in.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{Config, DisplayKind};
use crate::dintero::Gateway;
use crate::display;
use crate::input::gpio::{self, GpioBackend, GpioError, GpioUnit};
use crate::input::{self, InputEvent};
use crate::journal::{Journal, JournalError, Outcome};
use crate::payment::flow::{Command, Flow, FlowChannels, FlowConfig, FlowError, PaymentReport};
use crate::state::KioskState;

/// Where a kiosk's carts come from.
pub enum InputWiring {
    /// The input unit named in the config (`[input]`).
    FromConfig,
    /// Only what the caller sends on [`Kiosk::inputs`] (demo, tests, soak).
    External,
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
        let shutdown = CancellationToken::new();
        let (state_tx, state_rx) = watch::channel(KioskState::Starting);
        let (input_tx, input_rx) = mpsc::channel(16);
        let (command_tx, command_rx) = mpsc::channel(8);
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let mut helpers = Vec::new();

        let setup =
            display::setup_for(&config.display).map_err(|e| StartError::Display(e.to_string()))?;
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
        let mut display_health = None;
        if config.display.kind != DisplayKind::None || config.display.board.is_some() {
            let token = shutdown.clone();
            let settings = display::Settings {
                lang: config.kiosk.language,
                size: setup.size,
                receipt_url: config
                    .display
                    .receipt_url
                    .as_deref()
                    .and_then(|t| display::ReceiptUrl::parse(t).ok()),
            };
            let health = setup.customer_facing.then(|| {
                let (tx, rx) = watch::channel(display::PanelHealth::Unknown);
                display_health = Some(rx);
                tx
            });
            let states = state_rx.clone();
            let panel = setup.panel;
            helpers.push(tokio::spawn(async move {
                display::run_with(states, panel, settings, health, token.cancelled_owned()).await;
            }));
        }
        if let InputWiring::FromConfig = inputs {
            let token = shutdown.clone();
            let tx = input_tx.clone();
            let input_config = config.input.clone();
            let currency = config.currency();
            helpers.push(tokio::spawn(async move {
                input::run(input_config, currency, tx, token.cancelled_owned()).await;
            }));
        }

        let paid_carts = replay
            .payments
            .iter()
            .filter(|p| p.outcome == Some(Outcome::Approved))
            .filter_map(|p| p.cart_reference.clone());
        let flow = Flow::new(
            gateway,
            journal,
            unresolved,
            FlowConfig::from_config(config),
            FlowChannels {
                inputs: input_rx,
                commands: command_rx,
                state: state_tx,
                reports: Some(report_tx),
            },
        )
        .with_paid_cart_references(paid_carts);
        let flow = match display_health {
            Some(health) => flow.with_display_health(health),
            None => flow,
        };
        let token = shutdown.clone();
        let flow = tokio::spawn(async move { flow.run(token.cancelled_owned()).await });
        Ok(Kiosk {
            state: state_rx,
            inputs: input_tx,
            commands: command_tx,
            reports: report_rx,
            shutdown,
            flow,
            helpers,
        })
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
            helpers,
            ..
        } = self;
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
