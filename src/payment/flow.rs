//! The payment flow: the one task that owns payments.
//!
//! It is the only code that calls Dintero and the only writer of the journal. Inputs send it
//! [`InputEvent`]s; the console and buttons send it [`Command`]s; it publishes what the kiosk is
//! doing as a [`KioskState`] for the display, and a [`PaymentReport`] per finished payment for
//! whoever wants a tally (the demo, the soak test).
//!
//! The rules it lives by:
//! - **Journal before effect.** The intent (reference, amount, terminal) is fsync'd before the
//!   create call; the session id as soon as it is known; every phase change; the outcome.
//! - **One payment at a time.** Carts that arrive during a payment are refused with a message
//!   on the display, never queued.
//! - **Never create twice.** After a create call whose outcome is unknown the payment is looked
//!   up by `merchant_reference`; only a lookup that finds nothing twice, far enough apart,
//!   concludes that no session exists. That payment is then over; a new cart gets a new
//!   reference.
//! - **The payment wins.** After the kiosk cancels (its own timeout, an offline terminal, a
//!   technician), it reads the payment again and reports what really happened.
//! - **Health gate.** While the terminal is not `ACTIVE` or Dintero cannot be reached, carts are
//!   refused and the idle screen says card payment is unavailable; the gate re-checks by itself.
//!   The journal is part of it: each check first proves that the state directory takes a write
//!   ([`crate::payment::storage`]), and once any journal write has failed (disk full, I/O
//!   error) the gate stays closed, showing `E-JOURNAL`, until an append to the journal itself
//!   succeeds again. A journal that refuses appends until a restart
//!   ([`JournalError::Poisoned`]) puts the kiosk out of service with `E-JOURNAL-RESTART`.
//! - **A signed code or a payment slip is paid once.** A signed cart code whose cart reference
//!   an approved payment already carries is refused as already paid. The flow keeps the cart
//!   references of the approved payments its journal holds (the daemon hands them over at
//!   start, see [`Flow::with_paid_cart_references`]) and adds each one it approves; like the
//!   journal it remembers the last `state.keep_final` of them, far more than any code's
//!   lifetime holds. Cart references are the merchant's (`merchant_reference_2`), so a signed
//!   code for a cart that a payment slip with the same reference already paid is refused too.
//!   A payment slip with a cart reference ([`InputEvent::SlipCart`]) is refused the same way
//!   for `payment.paid_cart_window_s` after the approval (a day by default): a slip is for one
//!   cart, and a customer who scans it again must not pay again. A restart cannot tell by the
//!   wall clock how long ago an approval was (a clock stepped by NTP), so approvals from the
//!   journal count as made at the start: a restart lengthens the window, never shortens it.
//!   Codes that carry no cart reference (EAN-13 price labels name an article a shop sells many
//!   times; plain development codes) are never refused as paid.
//! - **Display gate.** When the kiosk has a customer screen (an SPI or framebuffer panel), carts
//!   are refused until it has shown a frame, and while it is broken the kiosk shows
//!   [`KioskState::OutOfService`] with the panel's error code: a customer who cannot see the
//!   outcome cannot follow a payment. A payment already running is finished regardless; the
//!   display only reports, it never steers a payment.
//! - **Recovery uses the same rules.** At start-up every payment the journal does not show as
//!   final is driven to a final state before any new cart is taken.
//!
//! This file is the loop (what the idle kiosk waits for, taking a cart, finishing a payment);
//! the rest of the task is in one file per concern: `follow` (driving a payment to its
//! outcome), `lookup` (finding a payment by reference and proving it is this one), `recovery`
//! (unfinished payments at start-up, late creates), `gates` (health, display and cart checks,
//! paid carts), `request` (the session request), `journaling` (journal before effect).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, error, info, warn};

use crate::cart::{Cart, CartSource};
use crate::dintero::{
    ApiError, Gateway, Order, OrderItem, Session, SessionProfileRequest, SessionUrl, Store,
    TerminalId, TerminalStatus, Transaction, TransactionQuery,
};
use crate::input::codes::CodeError;
use crate::journal::{Journal, JournalError, PaymentRecord, Record};
pub use crate::messages::Command;
use crate::messages::{CallbackNudge, InputEvent, PanelHealth};
use crate::money::{Currency, Money};
use crate::payment::identity;
use crate::payment::late::LateWatch;
use crate::payment::phase::{classify, CancelReason, Event, Final, Payment, Phase, Progress};
use crate::payment::poll::{Polling, Waiting};
use crate::state::{KioskState, RefusalReason, UnavailableReason};
use crate::systemd::Heartbeat;

mod follow;
mod gates;
mod journaling;
mod lookup;
mod recovery;
mod request;

use self::gates::{display_changed, HealthLog, PaidCarts};
#[cfg(feature = "emulator")]
pub use self::journaling::CRASH_AFTER_JOURNAL_ENV;
use self::lookup::Lookup;
pub use self::request::vat_included;

/// One finished payment, for observers that keep a tally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentReport {
    /// Our `merchant_reference`.
    pub merchant_reference: String,
    /// The total.
    pub amount: Money,
    /// The cart's own reference.
    pub cart_reference: Option<String>,
    /// How it ended.
    pub outcome: Final,
    /// Whether this payment was found unfinished in the journal at start-up.
    pub recovered: bool,
}

/// The settings the flow needs, taken from the config file (`FlowConfig::from_config` in [`crate::config`]).
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// `kiosk.id`, the prefix of every merchant reference.
    pub kiosk_id: String,
    /// The kiosk's currency.
    pub currency: Currency,
    /// The largest cart.
    pub max_amount: Money,
    /// The in-person-only payment profile.
    pub profile_id: String,
    /// `url.return_url` of sessions.
    pub return_url: String,
    /// VAT rate on the order line, percent.
    pub vat_percent: u32,
    /// `order.store.id`.
    pub store_id: String,
    /// The paired terminal: `order.store.terminal_id`, and the terminal the health gate asks.
    pub terminal_id: TerminalId,
    /// `order.store.payout_destination_id`.
    pub payout_destination_id: String,
    /// The kiosk's own payment timeout.
    pub timeout: Duration,
    /// How often a running payment is read.
    pub polling: Polling,
    /// A session not picked up after this long means the terminal is offline.
    pub pickup_timeout: Duration,
    /// How long result screens and refusals stay up.
    pub result_screen: Duration,
    /// Health gate period while idle and healthy.
    pub health_interval: Duration,
    /// Finished payments kept when the journal is compacted.
    pub keep_final: usize,
    /// How long to wait between the two lookups that must both find nothing before a create
    /// with an unknown outcome is taken as never having happened: longer than one call can take.
    pub lookup_confirm_delay: Duration,
    /// How long after its approval a payment slip is refused as already paid (0: never).
    pub paid_cart_window: Duration,
    /// `url.callback_url` of sessions (`[callback]`): Dintero calls it as a payment changes,
    /// and the listener nudges the flow to read the payment at once. `None`: polling only.
    pub callback_url: Option<String>,
}

impl FlowConfig {
    fn terminal_id(&self) -> &str {
        self.terminal_id.as_str()
    }

    /// `order.store` of the sessions the kiosk creates.
    fn store(&self) -> Store {
        Store {
            id: self.store_id.clone(),
            terminal_id: Some(self.terminal_id.to_string()),
            payout_destination_id: Some(self.payout_destination_id.clone()),
        }
    }
}

/// Why the flow stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The journal could not be read at start-up.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The kiosk's health as far as taking card payments goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Health {
    Ready,
    Unavailable(UnavailableReason),
}

/// The channels the flow is wired to.
pub struct FlowChannels {
    /// Carts and scanner events from the inputs.
    pub inputs: mpsc::Receiver<InputEvent>,
    /// Commands from the console and buttons.
    pub commands: mpsc::Receiver<Command>,
    /// Where the kiosk's state is published.
    pub state: watch::Sender<KioskState>,
    /// Finished payments, for observers (optional).
    pub reports: Option<mpsc::UnboundedSender<PaymentReport>>,
}

/// The payment flow task.
pub struct Flow<G: Gateway> {
    gateway: Arc<G>,
    journal: Arc<Mutex<Journal>>,
    /// Payments the journal showed as unfinished at open, resolved before any new cart.
    unresolved: Vec<PaymentRecord>,
    config: FlowConfig,
    inputs: mpsc::Receiver<InputEvent>,
    inputs_open: bool,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    state: watch::Sender<KioskState>,
    reports: Option<mpsc::UnboundedSender<PaymentReport>>,
    health: Health,
    next_health: Instant,
    /// The 403 fallback of the health gate is logged once, not every minute.
    terminal_scope_warned: bool,
    /// A refusal or result shown on top of the current state until this instant.
    hold_until: Option<Instant>,
    /// Payments finished since the journal was last compacted.
    finished_since_compaction: usize,
    /// Whether the barcode scanner is there; the idle screen says so when it is not.
    scanner_available: bool,
    /// Cart references of approved payments, for refusing a signed code paid already.
    paid_carts: PaidCarts,
    /// The customer screen's health, when the kiosk has one that must work (see the module
    /// docs, "Display gate").
    display: Option<watch::Receiver<PanelHealth>>,
    /// The display task ended: the screen shows nothing any more.
    display_gone: bool,
    /// Beaten from the select loops, so that only a turning loop feeds the watchdog.
    heartbeat: Option<(Heartbeat, tokio::time::Interval)>,
    /// What the health gate last logged, so that a lasting failure is not logged on every check.
    health_log: HealthLog,
    /// New settings after a config reload (SIGHUP), applied between payments.
    settings: Option<watch::Receiver<FlowConfig>>,
    /// Payments that ended `not_created`, looked up again in case Dintero creates them late.
    late: LateWatch,
    /// A create met `409`: every watched payment is looked up at the next health check.
    look_for_all_late: bool,
    /// A journal write failed: the gate stays closed until a journal append succeeds.
    storage_failed: bool,
    /// The journal refuses appends until kioskpay restarts.
    journal_poisoned: bool,
    /// A technician put the kiosk in maintenance: the technician screen, no new carts.
    maintenance: bool,
    /// Nudges from the callback listener (`[callback]`): read the named payment now.
    callbacks: Option<mpsc::Receiver<CallbackNudge>>,
}

type Shutdown<'a> = Pin<&'a mut (dyn Future<Output = ()> + Send)>;

/// Whose payment [`Flow::drive`] follows, which decides what it may cancel on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driving {
    /// A payment the customer in front of the kiosk started: cancelled only by the kiosk's
    /// timeouts and by request.
    Live,
    /// A payment found unfinished at start-up: a session no terminal picked up is cancelled,
    /// so that it cannot start late.
    Recovery,
    /// A payment the kiosk wrote off as not created and found at Dintero later: the customer
    /// was told it failed, so it is cancelled while the terminal still prompts; one that got
    /// further is followed and recorded (the payment wins).
    Withdrawal,
}

/// What one pass of driving a payment produced.
enum Driven {
    Finished(Final),
    ShutDown,
}
impl<G: Gateway> Flow<G> {
    /// Opens the journal in `state_dir` and prepares the flow; nothing runs until [`Flow::run`].
    pub fn new(
        gateway: Arc<G>,
        journal: Journal,
        unresolved: Vec<PaymentRecord>,
        config: FlowConfig,
        channels: FlowChannels,
    ) -> Flow<G> {
        Flow {
            gateway,
            journal: Arc::new(Mutex::new(journal)),
            unresolved,
            inputs: channels.inputs,
            inputs_open: true,
            commands: channels.commands,
            commands_open: true,
            state: channels.state,
            reports: channels.reports,
            health: Health::Unavailable(UnavailableReason::ApiUnreachable),
            next_health: Instant::now(),
            terminal_scope_warned: false,
            hold_until: None,
            finished_since_compaction: 0,
            scanner_available: true,
            paid_carts: PaidCarts::new(config.keep_final),
            config,
            display: None,
            display_gone: false,
            heartbeat: None,
            health_log: HealthLog::default(),
            settings: None,
            late: LateWatch::default(),
            look_for_all_late: false,
            storage_failed: false,
            journal_poisoned: false,
            maintenance: false,
            callbacks: None,
        }
    }

    /// Starts in maintenance (technician screen, no carts): a technician left the kiosk so
    /// before a restart ([`crate::control::maintenance`]).
    pub fn with_maintenance(mut self, on: bool) -> Self {
        if on {
            info!("maintenance kept from before the start: the technician screen, no new carts until maintenance off");
        }
        self.maintenance = on;
        self
    }

    /// Watches the payments the journal shows ended `not_created` most recently (see
    /// [`crate::payment::late`]), so that a restart does not end their watch.
    pub fn with_late_watch(mut self, late: LateWatch) -> Self {
        self.late = late;
        self
    }

    /// Tells the flow the cart references of payments approved before it started (from the
    /// journal, oldest first), so that a signed code or a payment slip paid before a restart is
    /// still refused (a slip for a whole `paid_cart_window` from now).
    pub fn with_paid_cart_references(
        mut self,
        references: impl IntoIterator<Item = String>,
    ) -> Self {
        for reference in references {
            self.paid_carts.insert(reference);
        }
        self
    }

    /// Gates payments on the customer screen's health as the display task reports it.
    pub fn with_display_health(mut self, health: watch::Receiver<PanelHealth>) -> Flow<G> {
        self.display = Some(health);
        self
    }

    /// Has the flow prove its liveness: it beats `heartbeat` from inside its select loops (while
    /// idle, recovering and driving a payment) and marks it ready once recovery is over.
    pub fn with_heartbeat(mut self, heartbeat: Heartbeat) -> Flow<G> {
        let mut ticks = tokio::time::interval(heartbeat.period());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.heartbeat = Some((heartbeat, ticks));
        self
    }

    /// Has the flow read a running payment at once when a verified Dintero callback names it
    /// (see [`crate::callback`]); the nudge only brings the next read forward, and what that
    /// read finds decides, as with any poll.
    pub fn with_callbacks(mut self, nudges: mpsc::Receiver<CallbackNudge>) -> Flow<G> {
        self.callbacks = Some(nudges);
        self
    }

    /// Lets the flow take new settings (a reloaded config) while it runs. They are applied
    /// between payments: a payment keeps the timings it started with.
    pub fn with_settings(mut self, settings: watch::Receiver<FlowConfig>) -> Flow<G> {
        self.settings = Some(settings);
        self
    }

    fn apply_settings(&mut self) {
        let Some(settings) = self.settings.as_mut() else {
            return;
        };
        let new = settings.borrow_and_update().clone();
        info!(
            max_amount = %new.max_amount,
            timeout_s = new.timeout.as_secs(),
            polling = ?new.polling,
            health_interval_s = new.health_interval.as_secs(),
            "new payment settings in force"
        );
        if new.health_interval != self.config.health_interval {
            self.next_health = self.next_health.min(Instant::now() + new.health_interval);
        }
        self.config = new;
    }

    /// Runs until `shutdown` completes: recovery first, then one payment at a time.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<(), FlowError> {
        let shutdown = std::pin::pin!(shutdown);
        let mut shutdown: Shutdown<'_> = shutdown;
        self.state.send_replace(KioskState::Starting);
        for record in std::mem::take(&mut self.unresolved) {
            if let Driven::ShutDown = self.recover(record, shutdown.as_mut()).await {
                return Ok(());
            }
        }
        self.check_health().await;
        if self
            .look_for_late_creates(shutdown.as_mut())
            .await
            .is_break()
        {
            return Ok(());
        }
        self.show_idle();
        if let Some((heartbeat, _)) = &self.heartbeat {
            heartbeat.ready();
        }
        loop {
            tokio::select! {
                _ = shutdown.as_mut() => return Ok(()),
                () = beat(&mut self.heartbeat) => {}
                changed = settings_changed(&mut self.settings) => match changed {
                    true => self.apply_settings(),
                    false => self.settings = None,
                },
                event = self.inputs.recv(), if self.inputs_open => match event {
                    Some(InputEvent::Cart(cart)) => {
                        if let Driven::ShutDown = self.take_cart(cart, shutdown.as_mut()).await {
                            return Ok(());
                        }
                    }
                    Some(InputEvent::SignedCart(cart)) => match self.already_paid(&cart, None) {
                        Some(reason) => self.hold(KioskState::Refused { reason }),
                        None => {
                            if let Driven::ShutDown = self.take_cart(cart, shutdown.as_mut()).await {
                                return Ok(());
                            }
                        }
                    },
                    Some(InputEvent::SlipCart(cart)) => match self.already_paid(&cart, Some(self.config.paid_cart_window)) {
                        Some(reason) => self.hold(KioskState::Refused { reason }),
                        None => {
                            if let Driven::ShutDown = self.take_cart(cart, shutdown.as_mut()).await {
                                return Ok(());
                            }
                        }
                    },
                    Some(other) => self.on_input_while_idle(other),
                    None => {
                        info!("input closed; the kiosk keeps running for recovery and the console");
                        self.inputs_open = false;
                    }
                },
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(Command::CheckHealth) => {
                        self.check_health().await;
                        if self.look_for_late_creates(shutdown.as_mut()).await.is_break() {
                            return Ok(());
                        }
                        self.show_idle_unless_held();
                    }
                    Some(Command::Cancel) => info!("cancel asked for, but no payment is running"),
                    Some(Command::TestPayment(cart)) => {
                        if self.maintenance && cart.source == CartSource::Console {
                            info!(amount = %cart.amount, "a technician's test payment");
                            if let Driven::ShutDown = self.take_cart(cart, shutdown.as_mut()).await {
                                return Ok(());
                            }
                        } else {
                            warn!(amount = %cart.amount, "a test payment is taken only from the console in maintenance; ignored");
                        }
                    }
                    Some(Command::Maintenance(on)) => {
                        self.set_maintenance(on);
                        // A refusal on screen gives way at once: the technician sees the change.
                        self.hold_until = None;
                        self.show_idle();
                    }
                    Some(Command::Resolve(reference)) => {
                        if self.resolve(&reference, shutdown.as_mut()).await.is_break() {
                            return Ok(());
                        }
                        self.show_idle();
                    }
                    None => self.commands_open = false,
                },
                _ = sleep_until(self.next_health) => {
                    self.check_health().await;
                    if self.look_for_late_creates(shutdown.as_mut()).await.is_break() {
                        return Ok(());
                    }
                    self.show_idle_unless_held();
                }
                _ = sleep_until(self.hold_until.unwrap_or_else(far_future)), if self.hold_until.is_some() => {
                    self.hold_until = None;
                    self.show_idle();
                }
                changed = display_changed(&mut self.display) => self.on_display_change(changed),
            }
        }
    }

    fn on_input_while_idle(&mut self, event: InputEvent) {
        match event {
            InputEvent::Cart(_) | InputEvent::SignedCart(_) | InputEvent::SlipCart(_) => {}
            InputEvent::Unreadable { reason, customer } => {
                // The input that read the code has logged it, rate-limited.
                debug!(%reason, %customer, "code refused");
                self.hold(KioskState::Refused {
                    reason: RefusalReason::Code {
                        detail: reason,
                        customer,
                    },
                });
            }
            InputEvent::ScannerUnavailable | InputEvent::ScannerBack => {
                self.note_scanner(event);
                self.show_idle_unless_held();
            }
        }
    }

    /// Records whether the scanner is there; the idle screen follows at its next showing.
    fn note_scanner(&mut self, event: InputEvent) {
        let available = event == InputEvent::ScannerBack;
        if available == self.scanner_available {
            return;
        }
        self.scanner_available = available;
        if available {
            info!("scanner back; the kiosk shows its idle screen again");
        } else {
            warn!("scanner unavailable; the kiosk shows that it cannot scan until it is back");
        }
    }

    /// Shows `state` for `result_screen`, then the idle screen.
    fn hold(&mut self, state: KioskState) {
        self.state.send_replace(state);
        self.hold_until = Some(Instant::now() + self.config.result_screen);
    }

    /// Records maintenance on or off; the screen follows at the next idle showing, so a
    /// payment in flight keeps its screens until it is over.
    fn set_maintenance(&mut self, on: bool) {
        if on == self.maintenance {
            return;
        }
        self.maintenance = on;
        if on {
            info!("maintenance on: the technician screen, no new carts");
        } else {
            info!("maintenance off: the kiosk takes carts again");
        }
    }

    fn idle_state(&self) -> KioskState {
        if self.maintenance {
            // The technician is at the kiosk: whatever else is wrong, customers are told to
            // wait, and the technician's console shows the underlying problem.
            return KioskState::Technician;
        }
        if let Some(code) = self.display_fault() {
            return KioskState::OutOfService { code };
        }
        if self.journal_poisoned {
            return KioskState::OutOfService {
                code: "E-JOURNAL-RESTART".into(),
            };
        }
        if !self.display_ready() {
            // The screen has not shown its first frame: still starting, as far as a customer
            // could tell.
            return KioskState::Starting;
        }
        if !self.scanner_available {
            // Before the API health: with no scanner nobody can start a payment at all.
            return KioskState::Unavailable {
                reason: UnavailableReason::Scanner,
            };
        }
        match &self.health {
            Health::Ready => KioskState::Idle,
            Health::Unavailable(reason) => KioskState::Unavailable {
                reason: reason.clone(),
            },
        }
    }

    fn show_idle(&mut self) {
        let state = self.idle_state();
        self.state.send_if_modified(|current| {
            if *current == state {
                false
            } else {
                *current = state;
                true
            }
        });
    }

    fn show_idle_unless_held(&mut self) {
        if self.hold_until.is_none() {
            self.show_idle();
        }
    }

    async fn take_cart(&mut self, cart: Cart, shutdown: Shutdown<'_>) -> Driven {
        if let Some(reason) = self.refusal(&cart) {
            info!(amount = %cart.amount, source = %cart.source, %reason, "cart refused");
            self.hold(KioskState::Refused { reason });
            return Driven::Finished(Final::NotCreated {
                reason: "refused".into(),
            });
        }
        self.hold_until = None;
        let started_at = time::OffsetDateTime::now_utc();
        let (merchant_reference, sequence) =
            lock(&self.journal).next_reference(&self.config.kiosk_id, started_at.date());
        let payment = Payment {
            merchant_reference: merchant_reference.clone(),
            amount: cart.amount,
            cart_reference: cart.reference.clone(),
            terminal_id: Some(self.config.terminal_id().to_string()),
            started_at: Some(started_at),
        };
        let intent = Record::Intent {
            merchant_reference: merchant_reference.clone(),
            amount: cart.amount.minor,
            currency: cart.amount.currency.code().to_string(),
            cart_reference: cart.reference.clone(),
            terminal_id: self.config.terminal_id().to_string(),
            sequence,
            at: rfc3339(started_at),
        };
        if let Err(e) = self.write(intent).await {
            error!(error = %e, "cannot journal the payment intent; refusing card payments until the journal is writable");
            self.health = Health::Unavailable(UnavailableReason::Storage);
            self.next_health =
                Instant::now() + self.config.health_interval.min(Duration::from_secs(10));
            self.hold(KioskState::Refused {
                reason: RefusalReason::Unavailable,
            });
            return Driven::Finished(Final::NotCreated {
                reason: "journal not writable".into(),
            });
        }
        info!(%merchant_reference, amount = %cart.amount, source = %cart.source, "payment started");
        let deadline = Instant::now() + self.config.timeout;
        let phase = Phase::Creating(payment.clone());
        self.publish(&phase, deadline);
        let request = self.session_request(&payment);
        let event = match self.gateway.create_session(&request).await {
            Ok(created) => Event::Created {
                session_id: created.id,
            },
            Err(e) if e.outcome_unknown() => {
                warn!(%merchant_reference, error = %e, "create outcome unknown; looking the payment up before anything else");
                Event::CreateUnknown
            }
            Err(e) => {
                warn!(%merchant_reference, error = %e, "Dintero refused the payment");
                self.note_api_error(&e);
                if matches!(e, ApiError::Rejected { status: 409, .. }) && !self.late.is_empty() {
                    // The terminal is busy, perhaps with a payment written off as not created
                    // that Dintero created late: look for all of them now.
                    self.look_for_all_late = true;
                    self.next_health = Instant::now();
                }
                Event::CreateRejected {
                    reason: e.to_string(),
                }
            }
        };
        let phase = self.step(phase, event, deadline).await;
        let driven = self.drive(phase, deadline, Driving::Live, shutdown).await;
        if let Driven::Finished(outcome) = &driven {
            if matches!(
                outcome,
                Final::Failed {
                    kind: crate::state::FailKind::TerminalOffline,
                    ..
                }
            ) {
                self.health = Health::Unavailable(UnavailableReason::TerminalOffline);
                self.next_health =
                    Instant::now() + self.config.health_interval.min(Duration::from_secs(30));
            }
            self.finish(&payment, outcome, false);
            // Here, with the result on screen, and not when the next cart comes: compaction
            // rewrites the journal (tens of milliseconds on an SD card) and must not stand
            // between a scan and its create.
            self.finished_since_compaction += 1;
            if self.finished_since_compaction > self.config.keep_final.max(1) {
                self.finished_since_compaction = 0;
                self.compact().await;
            }
        }
        driven
    }

    fn finish(&mut self, payment: &Payment, outcome: &Final, recovered: bool) {
        if let Final::Conflict { detail } = outcome {
            error!(reference = %payment.merchant_reference, amount = %payment.amount, %detail, recovered, "payment not confirmed: Dintero has a payment under this reference that is not this one; nothing more is charged, the customer is asked to fetch staff (check that kiosk.id is this kiosk's own and that state.dir was not restored from a backup)");
        } else {
            info!(reference = %payment.merchant_reference, amount = %payment.amount, %outcome, recovered, "payment finished");
        }
        // Both rest on not finding this payment at Dintero: watched in case it lands late.
        if let Final::NotCreated { .. } | Final::Conflict { .. } = outcome {
            self.late.watch(payment.clone());
        }
        if let (Final::Approved { .. }, Some(cart_reference)) = (outcome, &payment.cart_reference) {
            self.paid_carts.insert(cart_reference.clone());
        }
        if let Some(reports) = &self.reports {
            let _ = reports.send(PaymentReport {
                merchant_reference: payment.merchant_reference.clone(),
                amount: payment.amount,
                cart_reference: payment.cart_reference.clone(),
                outcome: outcome.clone(),
                recovered,
            });
        }
    }
}

/// Beats the heartbeat on its period; never completes when there is none.
async fn beat(heartbeat: &mut Option<(Heartbeat, tokio::time::Interval)>) {
    match heartbeat {
        Some((heartbeat, ticks)) => {
            ticks.tick().await;
            heartbeat.beat();
        }
        None => std::future::pending().await,
    }
}

/// Completes when new settings arrive (`true`) or their sender is gone (`false`); never
/// completes when the flow takes no new settings.
async fn settings_changed(settings: &mut Option<watch::Receiver<FlowConfig>>) -> bool {
    match settings {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

fn lock(journal: &Mutex<Journal>) -> std::sync::MutexGuard<'_, Journal> {
    journal
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest config that loads: the flow's settings come from it.
    fn minimal_config() -> crate::config::Config {
        crate::config::Config::parse(
            "[kiosk]\nid = \"kiosk-1\"\n[dintero]\naccount_id = \"T12345678\"\n\
             client_id = \"c\"\nclient_secret_file = \"/nonexistent\"\n\
             profile_id = \"T12345678.kiosk-in-person\"\n[store]\nid = \"s\"\n\
             terminal_id = \"T12345678-T0001\"\npayout_destination_id = \"p\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap()
    }

    /// Dintero that answers the health gate but never answers a create call: the flow's loop is
    /// stuck inside `take_cart` as it would be on a hung await.
    struct HangsOnCreate;

    impl Gateway for HangsOnCreate {
        async fn create_session(
            &self,
            _: &SessionProfileRequest,
        ) -> Result<crate::dintero::CreatedSession, ApiError> {
            std::future::pending().await
        }
        async fn get_session(&self, _: &str) -> Result<Session, ApiError> {
            std::future::pending().await
        }
        async fn search_sessions(&self, _: &str) -> Result<Vec<Session>, ApiError> {
            std::future::pending().await
        }
        async fn get_transaction(&self, _: &str) -> Result<Transaction, ApiError> {
            std::future::pending().await
        }
        async fn list_transactions(
            &self,
            _: &TransactionQuery,
        ) -> Result<Vec<Transaction>, ApiError> {
            std::future::pending().await
        }
        async fn cancel_session(&self, _: &str) -> Result<(), ApiError> {
            std::future::pending().await
        }
        async fn refund(
            &self,
            _: &str,
            _: &crate::dintero::RefundRequest,
        ) -> Result<crate::dintero::RefundOutcome, ApiError> {
            std::future::pending().await
        }
        async fn terminal(&self, id: &str) -> Result<crate::dintero::Terminal, ApiError> {
            Ok(crate::dintero::Terminal {
                terminal_id: id.into(),
                device_serial_number: None,
                device_model: None,
                store_id: None,
                status: TerminalStatus::Active,
            })
        }
        async fn ensure_token(&self) -> Result<(), ApiError> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_flow_stuck_on_a_call_stops_beating_and_the_watchdog_stops() {
        use crate::systemd::{beat_period, supervise, Heartbeat, Message, Notifier};
        #[derive(Clone, Default)]
        struct Recorder(Arc<Mutex<Vec<Message>>>);
        impl Notifier for Recorder {
            fn send(&mut self, message: Message) {
                self.0.lock().unwrap().push(message);
            }
        }
        let watchdog = Duration::from_secs(30);
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        let config = minimal_config();
        let (input_tx, inputs) = mpsc::channel(4);
        let (_command_tx, commands) = mpsc::channel(4);
        let (state, states) = watch::channel(KioskState::Starting);
        let (heartbeat, liveness) = Heartbeat::new(beat_period(Some(watchdog)));
        let flow = Flow::new(
            Arc::new(HangsOnCreate),
            journal,
            Vec::new(),
            FlowConfig::from_config(&config),
            FlowChannels {
                inputs,
                commands,
                state,
                reports: None,
            },
        )
        .with_heartbeat(heartbeat);
        let recorder = Recorder::default();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(supervise(
            liveness,
            states.clone(),
            Some(watchdog),
            recorder.clone(),
            stop.clone().cancelled_owned(),
        ));
        tokio::spawn(flow.run(stop.clone().cancelled_owned()));

        tokio::time::sleep(watchdog * 2).await;
        let pings = |r: &Recorder| {
            let sent = std::mem::take(&mut *r.0.lock().unwrap());
            sent.iter().filter(|m| **m == Message::Watchdog).count()
        };
        assert!(recorder.0.lock().unwrap().contains(&Message::Ready));
        assert!(pings(&recorder) >= 5, "an idle flow feeds the watchdog");

        input_tx
            .send(InputEvent::Cart(Cart {
                amount: Money::new(10000, Currency::NOK),
                reference: None,
                source: crate::cart::CartSource::Stdin,
            }))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(states.borrow().name(), "creating");
        // Beats from just before the cart may still be forwarded by the next check or two.
        tokio::time::sleep(watchdog).await;
        pings(&recorder);
        tokio::time::sleep(watchdog * 3).await;
        let stuck_pings = pings(&recorder);
        assert!(
            stuck_pings == 0,
            "a flow stuck in a call must not feed the watchdog: {stuck_pings} pings, state {}",
            states.borrow().name()
        );
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_poisoned_journal_keeps_the_kiosk_out_of_service_until_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        let config = minimal_config();
        let (_inputs, input_rx) = mpsc::channel(1);
        let (_commands, command_rx) = mpsc::channel(1);
        let (state, _states) = watch::channel(KioskState::Starting);
        let mut flow = Flow::new(
            Arc::new(HangsOnCreate),
            journal,
            Vec::new(),
            FlowConfig::from_config(&config),
            FlowChannels {
                inputs: input_rx,
                commands: command_rx,
                state,
                reports: None,
            },
        );
        flow.check_health().await;
        assert_eq!(flow.idle_state(), KioskState::Idle);
        flow.journal_failed(&JournalError::Poisoned {
            path: dir.path().join(crate::journal::FILE_NAME),
            cause: "sync failed: Input/output error".into(),
        });
        let out_of_service = KioskState::OutOfService {
            code: "E-JOURNAL-RESTART".into(),
        };
        for _ in 0..3 {
            flow.check_health().await;
            assert_eq!(flow.idle_state(), out_of_service);
            tokio::time::sleep(flow.config.health_interval).await;
        }
        let cart = Cart {
            amount: Money::new(100, Currency::NOK),
            reference: None,
            source: crate::cart::CartSource::Stdin,
        };
        assert_eq!(flow.refusal(&cart), Some(RefusalReason::Unavailable));
    }
}
