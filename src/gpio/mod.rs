//! # GPIO: preset buttons, a pulse-train price input and handshake outputs
//!
//! For kiosks built into another machine (a vending machine, a car wash, a locker bank) or with
//! a few buttons instead of a scanner. The GPIO unit runs as its own task, alone
//! (`input.kind = "gpio"`) or beside a scanner (`gpio.enabled = true`):
//!
//! - **Preset buttons**: each press of a button charges its configured amount
//!   ([`InputEvent::Cart`] with [`CartSource::Gpio`]).
//! - **Cancel button**: sends [`Command::Cancel`] to the payment flow, which cancels only while
//!   the terminal waits for the card. A card already presented wins: the payment completes.
//! - **Pulse train**: the machine tells the price as pulses, `unit` minor units each; see
//!   [`pulse`] for how glitches, bounces and stuck lines are rejected.
//! - **Handshake outputs**: `busy` (inhibit) while the kiosk cannot take a cart and
//!   `vend` pulsed once per captured payment; see [`outputs`].
//!
//! ## Configuration
//!
//! ```toml
//! [input]
//! kind = "gpio"                 # or keep "serial" and set gpio.enabled = true
//!
//! [gpio]
//! backend = "rppal"             # Raspberry Pi; "cdev" (default) for any Linux board
//! chip = "/dev/gpiochip0"       # cdev only
//! board = "/usr/share/kioskpay/pins/display-hat-mini.toml"   # pin map; keys below win over it
//!
//! [[gpio.buttons]]
//! pin = 5                       # BCM number (rppal) or line offset (cdev)
//! amount = 2000                 # minor units: 20.00
//! active_low = true             # pressed pulls the line to ground
//! debounce_ms = 20              # default 20; pull defaults to up for active-low lines
//!
//! [gpio.cancel]
//! pin = 24
//! active_low = true
//!
//! [gpio.pulse]
//! pin = 17
//! unit = 100                    # each pulse is 1.00
//! min_width_ms = 20             # shorter levels are noise
//! max_width_ms = 200            # a pulse this long means a stuck line: the train is refused
//! gap_ms = 500                  # quiet time that ends the train
//! max_pulses = 100              # more is refused, never charged
//! active_low = true
//! pull = "off"                  # the optocoupler board has its own pull-up
//!
//! [gpio.busy]
//! pin = 22                      # asserted while the kiosk cannot take a cart
//!
//! [gpio.vend]
//! pin = 23
//! pulse_ms = 250                # length of the vend-approved pulse
//! ```
//!
//! Pin maps for supported boards are in `board/pins/` (installed in `/usr/share/kioskpay/pins/`);
//! `board/README.md` has the wiring, the `config.txt` lines and the level-shifting notes
//! (a Raspberry Pi's GPIO is 3.3 V only and is destroyed by 5 V or 24 V machine signals).
//!
//! ## Permissions and errors
//!
//! The service user needs the `gpio` group. Start-up fails with a message saying what to change
//! when the chip is missing, a line does not exist, a line is held by another program or kernel
//! driver, or the rppal backend runs on something other than a Raspberry Pi ([`GpioError`]).
//!
//! ## Testing the lines
//!
//! A technician's `test gpio` (through the daemon's control socket) follows the input lines'
//! [`Levels`] as edges arrive. Without GPIO hardware, [`crate::daemon::Kiosk::start_with_gpio`]
//! takes any [`GpioBackend`], which is how the tests simulate pins.
//!
//! ## Logs
//!
//! Each button press and decoded train at info, each refused train at warn with the reason, each
//! vend pulse at info with the transaction id.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::config::{
    ButtonPin, CancelPin, GpioBackendKind, GpioConfig, OutputPin, PinMap, Pull, PulsePin, VendPin,
};
use crate::cart::{Cart, CartSource};
use crate::messages::{Command, CustomerReason, InputEvent};
use crate::money::{Currency, Money};
use crate::state::KioskState;

pub mod buttons;
pub mod cdev;
pub mod config;
pub mod lines;
pub mod outputs;
pub mod pulse;
pub mod rppal;

pub use lines::{Edge, GpioBackend, GpioError, InputRequest, OutputLine};

use buttons::Debouncer;
use outputs::{Output, Toggle, Vend};
use pulse::{Decoded, PulseDecoder, PulseTiming};

/// Opens the driver `gpio.backend` names.
pub fn open_backend(config: &GpioConfig) -> Result<Box<dyn GpioBackend>, GpioError> {
    Ok(match config.backend {
        GpioBackendKind::Cdev => Box::new(cdev::CdevBackend::open(&config.chip_path())?),
        GpioBackendKind::Rppal => Box::new(rppal::RppalBackend::open()?),
    })
}

/// What an input line is for.
enum Role {
    /// A preset button charging this many minor units.
    Preset(Debouncer, u64),
    /// The cancel button.
    Cancel(Debouncer),
    /// The pulse-train input, each pulse worth `unit` minor units.
    Pulse(PulseDecoder, u64),
}

/// One watched input line.
struct Watched {
    line: u32,
    active_low: bool,
    role: Role,
}

/// What a decoder recognised.
enum Happened {
    Preset {
        line: u32,
        amount: u64,
    },
    Cancel {
        line: u32,
    },
    Pulses {
        line: u32,
        decoded: Decoded,
        unit: u64,
    },
}

impl Watched {
    fn deadline(&self) -> Option<Duration> {
        match &self.role {
            Role::Preset(d, _) | Role::Cancel(d) => d.deadline(),
            Role::Pulse(p, _) => p.deadline(),
        }
    }

    /// Feeds an edge (`Some(active)`) or the passing of time (`None`) to the decoder.
    fn feed(&mut self, edge: Option<bool>, at: Duration) -> Option<Happened> {
        let line = self.line;
        match &mut self.role {
            Role::Preset(d, amount) => {
                let pressed = match edge {
                    Some(active) => d.edge(active, at),
                    None => d.advance(at),
                };
                pressed.then_some(Happened::Preset {
                    line,
                    amount: *amount,
                })
            }
            Role::Cancel(d) => {
                let pressed = match edge {
                    Some(active) => d.edge(active, at),
                    None => d.advance(at),
                };
                pressed.then_some(Happened::Cancel { line })
            }
            Role::Pulse(p, unit) => {
                let decoded = match edge {
                    Some(active) => p.edge(active, at),
                    None => p.advance(at),
                };
                decoded.map(|decoded| Happened::Pulses {
                    line,
                    decoded,
                    unit: *unit,
                })
            }
        }
    }
}

/// One input line as a technician's `test gpio` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputLevel {
    /// The line (BCM number or line offset).
    pub line: u32,
    /// What it is for, in words (`preset button NOK 20.00`, `cancel button`, `pulse input`).
    pub role: String,
    /// Whether it is active (pressed, pulse on), after `active_low`; `None` until its first edge:
    /// the drivers report edges, not levels.
    pub active: Option<bool>,
}

/// The input lines as last seen, for `test gpio`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Levels {
    /// Edges seen since the unit started: a reader that saw `changes` waits for more.
    pub changes: u64,
    /// Every watched input, in the config's order.
    pub inputs: Vec<InputLevel>,
    /// The handshake outputs, as `(line, role)`.
    pub outputs: Vec<(u32, &'static str)>,
}

/// The GPIO unit with its lines claimed, ready to run.
pub struct GpioUnit {
    edges: Option<mpsc::Receiver<Edge>>,
    watched: Vec<Watched>,
    levels: watch::Sender<Levels>,
    toggles: (mpsc::Sender<Toggle>, mpsc::Receiver<Toggle>),
    busy: Option<Output>,
    vend: Option<Vend>,
    currency: Currency,
    /// Holds the lines for as long as the unit runs.
    _backend: Box<dyn GpioBackend>,
}

fn pull_for(pull: Option<Pull>, active_low: bool) -> Pull {
    pull.unwrap_or(if active_low { Pull::Up } else { Pull::Down })
}

impl GpioUnit {
    /// Claims every line `config` names on `backend`: inputs with edge detection, outputs with
    /// busy asserted (the kiosk is not ready yet) and vend released.
    pub fn open(
        config: &GpioConfig,
        currency: Currency,
        mut backend: Box<dyn GpioBackend>,
    ) -> Result<GpioUnit, GpioError> {
        let mut watched = Vec::new();
        let mut requests = Vec::new();
        for b in config.buttons.iter().flatten() {
            let debounce = Duration::from_millis(b.debounce_ms);
            requests.push(InputRequest {
                line: b.pin,
                pull: pull_for(b.pull, b.active_low),
                debounce: Some(debounce),
            });
            watched.push(Watched {
                line: b.pin,
                active_low: b.active_low,
                role: Role::Preset(Debouncer::new(debounce), b.amount),
            });
        }
        if let Some(c) = &config.cancel {
            let debounce = Duration::from_millis(c.debounce_ms);
            requests.push(InputRequest {
                line: c.pin,
                pull: pull_for(c.pull, c.active_low),
                debounce: Some(debounce),
            });
            watched.push(Watched {
                line: c.pin,
                active_low: c.active_low,
                role: Role::Cancel(Debouncer::new(debounce)),
            });
        }
        if let Some(p) = &config.pulse {
            requests.push(InputRequest {
                line: p.pin,
                pull: pull_for(p.pull, p.active_low),
                debounce: None,
            });
            watched.push(Watched {
                line: p.pin,
                active_low: p.active_low,
                role: Role::Pulse(PulseDecoder::new(PulseTiming::from_config(p)), p.unit),
            });
        }
        let edges = if requests.is_empty() {
            None
        } else {
            Some(backend.watch(&requests)?)
        };
        let busy = match &config.busy {
            Some(b) => {
                let line = backend.output(b.pin, Output::level(b.active_low, true))?;
                let mut out = Output::new(line, b.pin, b.active_low);
                out.set(true);
                Some(out)
            }
            None => None,
        };
        let vend = match &config.vend {
            Some(v) => {
                let line = backend.output(v.pin, Output::level(v.active_low, false))?;
                let mut output = Output::new(line, v.pin, v.active_low);
                output.set(false);
                Some(Vend {
                    output,
                    pulse: Duration::from_millis(v.pulse_ms),
                })
            }
            None => None,
        };
        info!(
            inputs = watched.len(),
            busy = busy.is_some(),
            vend = vend.is_some(),
            "GPIO lines claimed"
        );
        let inputs = watched
            .iter()
            .map(|w| InputLevel {
                line: w.line,
                role: match &w.role {
                    Role::Preset(_, amount) => {
                        format!("preset button {}", Money::new(*amount, currency))
                    }
                    Role::Cancel(_) => "cancel button".into(),
                    Role::Pulse(_, unit) => {
                        format!("pulse input, {} a pulse", Money::new(*unit, currency))
                    }
                },
                active: None,
            })
            .collect();
        let outputs = [
            config.busy.as_ref().map(|b| (b.pin, "busy output")),
            config.vend.as_ref().map(|v| (v.pin, "vend output")),
        ]
        .into_iter()
        .flatten()
        .collect();
        let (levels, _) = watch::channel(Levels {
            changes: 0,
            inputs,
            outputs,
        });
        Ok(GpioUnit {
            edges,
            watched,
            levels,
            toggles: mpsc::channel(1),
            busy,
            vend,
            currency,
            _backend: backend,
        })
    }

    /// The input lines' levels as they change, for a technician's `test gpio`.
    pub fn levels(&self) -> watch::Receiver<Levels> {
        self.levels.subscribe()
    }

    /// Where a technician's `test gpio` asks to flip an output.
    pub fn toggles(&self) -> mpsc::Sender<Toggle> {
        self.toggles.0.clone()
    }

    /// Runs until `shutdown` completes: input lines become carts on `inputs` and cancels on
    /// `commands`; the handshake outputs follow `states`.
    pub async fn run(
        self,
        inputs: mpsc::Sender<InputEvent>,
        commands: mpsc::Sender<Command>,
        states: watch::Receiver<KioskState>,
        shutdown: impl Future<Output = ()>,
    ) {
        let GpioUnit {
            edges,
            watched,
            levels,
            toggles: (_, toggles),
            busy,
            vend,
            currency,
            _backend,
        } = self;
        let stop = CancellationToken::new();
        let drive = outputs::run(states, busy, vend, toggles, stop.clone().cancelled_owned());
        let read = async {
            if let Some(edges) = edges {
                read_inputs(edges, watched, currency, &levels, &inputs, &commands).await;
            }
        };
        let until_shutdown = async {
            tokio::pin!(shutdown);
            tokio::select! {
                () = &mut shutdown => {}
                // Reading ended early (the driver failed or the flow is gone): the outputs
                // still follow the state until shutdown.
                () = read => shutdown.await,
            }
            stop.cancel();
        };
        tokio::join!(drive, until_shutdown);
    }
}

/// Feeds edges and the passing of time to every decoder and delivers what they recognise.
async fn read_inputs(
    mut edges: mpsc::Receiver<Edge>,
    mut watched: Vec<Watched>,
    currency: Currency,
    levels: &watch::Sender<Levels>,
    inputs: &mpsc::Sender<InputEvent>,
    commands: &mpsc::Sender<Command>,
) {
    // Decoders think in kernel time; timers run on tokio's clock. The last edge pairs the two.
    let mut anchor: Option<(Duration, Instant)> = None;
    loop {
        let wake = anchor.and_then(|(kernel, local)| {
            let next = watched.iter().filter_map(Watched::deadline).min()?;
            Some(local + next.saturating_sub(kernel))
        });
        let mut happened = Vec::new();
        tokio::select! {
            edge = edges.recv() => {
                let Some(edge) = edge else {
                    warn!("the GPIO driver stopped reporting edges; buttons and pulses are no longer read");
                    return;
                };
                anchor = Some((edge.at, Instant::now()));
                for w in watched.iter_mut().filter(|w| w.line == edge.line) {
                    let active = edge.rising != w.active_low;
                    happened.extend(w.feed(Some(active), edge.at));
                    levels.send_modify(|levels| {
                        levels.changes += 1;
                        for input in levels.inputs.iter_mut().filter(|i| i.line == edge.line) {
                            input.active = Some(active);
                        }
                    });
                }
            }
            () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                if let Some((kernel, local)) = anchor {
                    let now = kernel.saturating_add(Instant::now().saturating_duration_since(local));
                    for w in &mut watched {
                        happened.extend(w.feed(None, now));
                    }
                }
            }
        }
        for h in happened {
            if !deliver(h, currency, inputs, commands).await {
                return;
            }
        }
    }
}

/// Sends what a decoder recognised to the flow; `false` once the flow has gone.
async fn deliver(
    happened: Happened,
    currency: Currency,
    inputs: &mpsc::Sender<InputEvent>,
    commands: &mpsc::Sender<Command>,
) -> bool {
    let cart = |minor| {
        InputEvent::Cart(Cart {
            amount: Money::new(minor, currency),
            reference: None,
            source: CartSource::Gpio,
        })
    };
    let event = match happened {
        Happened::Cancel { line } => {
            info!(line, "cancel button pressed");
            return commands.send(Command::Cancel).await.is_ok();
        }
        Happened::Preset { line, amount } => {
            info!(line, amount, "preset button pressed");
            cart(amount)
        }
        Happened::Pulses {
            line,
            decoded: Decoded::Train { pulses },
            unit,
        } => match unit.checked_mul(u64::from(pulses)) {
            Some(amount) => {
                info!(line, pulses, amount, "pulse train decoded");
                cart(amount)
            }
            None => {
                let reason = format!("{pulses} pulses of {unit} overflow an amount");
                warn!(line, %reason, "pulse train refused");
                InputEvent::Unreadable {
                    reason,
                    customer: CustomerReason::InvalidAmount,
                }
            }
        },
        Happened::Pulses {
            line,
            decoded: Decoded::Rejected(why),
            ..
        } => {
            warn!(line, reason = %why, "pulse train refused");
            InputEvent::Unreadable {
                reason: why.to_string(),
                customer: CustomerReason::Unreadable,
            }
        }
    };
    inputs.send(event).await.is_ok()
}
