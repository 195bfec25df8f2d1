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

use std::collections::VecDeque;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{debug, error, info, warn};

use crate::cart::Cart;
use crate::dintero::{
    ApiError, Gateway, Order, OrderItem, Session, SessionProfileRequest, SessionUrl, Store,
    TerminalStatus, Transaction, TransactionQuery,
};
use crate::input::codes::CodeError;
use crate::journal::{Journal, JournalError, PaymentRecord, Record};
pub use crate::messages::Command;
use crate::messages::{InputEvent, PanelHealth};
use crate::money::{Currency, Money};
use crate::payment::identity;
use crate::payment::late::LateWatch;
use crate::payment::phase::{classify, CancelReason, Event, Final, Payment, Phase, Progress};
use crate::state::{KioskState, RefusalReason, UnavailableReason};
use crate::systemd::Heartbeat;

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
    /// `order.store`.
    pub store: Store,
    /// The kiosk's own payment timeout.
    pub timeout: Duration,
    /// Poll period of a running payment.
    pub poll_interval: Duration,
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
}

impl FlowConfig {
    fn terminal_id(&self) -> &str {
        self.store.terminal_id.as_deref().unwrap_or_default()
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
    /// Payments started since the journal was last compacted.
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
}

/// The cart references of the newest approved payments with when each was approved (or,
/// for those from the journal, when the flow started), oldest first, at most `capacity`.
struct PaidCarts {
    capacity: usize,
    references: VecDeque<(String, Instant)>,
}

impl PaidCarts {
    fn new(capacity: usize) -> PaidCarts {
        PaidCarts {
            capacity: capacity.max(1),
            references: VecDeque::new(),
        }
    }

    /// Whether `reference` was approved, within `window` when one is given.
    fn paid(&self, reference: &str, window: Option<Duration>) -> bool {
        self.references
            .iter()
            .any(|(r, at)| r == reference && window.is_none_or(|window| at.elapsed() < window))
    }

    fn insert(&mut self, reference: String) {
        self.references.retain(|(r, _)| *r != reference);
        while self.references.len() >= self.capacity {
            self.references.pop_front();
        }
        self.references.push_back((reference, Instant::now()));
    }
}

type Shutdown<'a> = Pin<&'a mut (dyn Future<Output = ()> + Send)>;

/// What a lookup by reference found.
enum Lookup {
    /// This payment's session (and its transaction, if it has one); boxed, since the other
    /// variants are small and a lookup is rare.
    Found(Box<(Session, Option<Transaction>)>),
    /// Only payments under this reference that are not this one: what did not match.
    Foreign(String),
    /// Nothing under this reference.
    Nothing,
}

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
        }
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

    /// The error code of a broken customer screen, if it is broken.
    fn display_fault(&self) -> Option<String> {
        if self.display_gone {
            return Some("E-PANEL-GONE".into());
        }
        match self.display.as_ref().map(|rx| rx.borrow().clone()) {
            Some(PanelHealth::Broken { code }) => Some(code.to_string()),
            _ => None,
        }
    }

    /// Whether the customer can see what a payment does: a screen that works, or no screen
    /// that needs to.
    fn display_ready(&self) -> bool {
        match &self.display {
            None => !self.display_gone,
            Some(rx) => *rx.borrow() == PanelHealth::Working,
        }
    }

    fn on_display_change(&mut self, changed: Result<(), watch::error::RecvError>) {
        if changed.is_err() {
            error!("the customer display task ended; no payments until kioskpay restarts");
            self.display = None;
            self.display_gone = true;
        } else if let Some(rx) = self.display.as_mut() {
            match &*rx.borrow_and_update() {
                PanelHealth::Working => info!("customer display working; payments allowed"),
                PanelHealth::Broken { code } => {
                    warn!(
                        code,
                        "customer display broken; out of service until it works"
                    )
                }
                PanelHealth::Unknown => {}
            }
        }
        self.show_idle_unless_held();
    }

    /// Has the flow prove its liveness: it beats `heartbeat` from inside its select loops (while
    /// idle, recovering and driving a payment) and marks it ready once recovery is over.
    pub fn with_heartbeat(mut self, heartbeat: Heartbeat) -> Flow<G> {
        let mut ticks = tokio::time::interval(heartbeat.period());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.heartbeat = Some((heartbeat, ticks));
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
            poll_interval_ms = new.poll_interval.as_millis() as u64,
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
        self.compact().await;
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

    /// Refuses a cart whose reference an approved payment already carries (approved within
    /// `window` when one is given).
    fn already_paid(&self, cart: &Cart, window: Option<Duration>) -> Option<RefusalReason> {
        let reference = cart.reference.as_ref()?;
        if !self.paid_carts.paid(reference, window) {
            return None;
        }
        let e = CodeError::AlreadyPaid {
            reference: reference.clone(),
        };
        warn!(reason = %e, amount = %cart.amount, "code refused: an approved payment in the journal carries this cart reference");
        Some(RefusalReason::Code {
            detail: e.to_string(),
            customer: e.customer_reason(),
        })
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

    fn idle_state(&self) -> KioskState {
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

    /// Refuses what the flow cannot charge, before any call to Dintero.
    fn refusal(&self, cart: &Cart) -> Option<RefusalReason> {
        if cart.amount.currency != self.config.currency {
            return Some(RefusalReason::WrongCurrency {
                given: cart.amount.currency.code().into(),
            });
        }
        if cart.amount.minor == 0 {
            return Some(RefusalReason::ZeroAmount);
        }
        if cart.amount.minor > self.config.max_amount.minor {
            return Some(RefusalReason::TooLarge {
                max: self.config.max_amount,
            });
        }
        if self.health != Health::Ready || !self.display_ready() {
            return Some(RefusalReason::Unavailable);
        }
        None
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
        self.finished_since_compaction += 1;
        if self.finished_since_compaction > self.config.keep_final.max(1) {
            self.finished_since_compaction = 0;
            self.compact().await;
        }
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
        }
        driven
    }

    /// Resolves one payment the journal shows as unfinished.
    async fn recover(&mut self, record: PaymentRecord, shutdown: Shutdown<'_>) -> Driven {
        let payment = Payment::from_record(&record, self.config.currency);
        info!(reference = %payment.merchant_reference, session_id = record.session_id.as_deref().unwrap_or("-"), "recovering an unfinished payment");
        // A payment reopened after a late create keeps its policy across a restart.
        let driving = match record.reopened_at {
            Some(_) => Driving::Withdrawal,
            None => Driving::Recovery,
        };
        self.settle(payment, record.session_id, driving, shutdown)
            .await
    }

    /// Drives a payment whose state the kiosk does not know to its outcome, and reports it as
    /// recovered.
    async fn settle(
        &mut self,
        payment: Payment,
        session_id: Option<String>,
        driving: Driving,
        shutdown: Shutdown<'_>,
    ) -> Driven {
        let phase = Phase::Checking {
            payment: payment.clone(),
            session_id,
        };
        let deadline = Instant::now() + self.config.timeout;
        self.publish(&phase, deadline);
        let driven = self.drive(phase, deadline, driving, shutdown).await;
        if let Driven::Finished(outcome) = &driven {
            self.finish(&payment, outcome, true);
        }
        driven
    }

    /// Looks up the payments under late watch (see [`crate::payment::late`]). One that Dintero
    /// has after all is journaled as reopened, then settled like a payment found at start-up.
    /// A lookup that fails ends the round: the next health check tries again.
    async fn look_for_late_creates(&mut self, mut shutdown: Shutdown<'_>) -> ControlFlow<()> {
        let all = std::mem::take(&mut self.look_for_all_late);
        for payment in self.late.due(all) {
            // Each lookup is a turn of the loop: many in a row must not look like a stuck flow
            // to the watchdog, whose period allows for three slow calls, not for a whole round.
            if let Some((heartbeat, _)) = &self.heartbeat {
                heartbeat.beat();
            }
            let reference = payment.merchant_reference.clone();
            let session_id = match self.find(&payment).await {
                Ok(Lookup::Found(found)) => found.0.id,
                Ok(Lookup::Nothing) => continue,
                Ok(Lookup::Foreign(detail)) => {
                    error!(%reference, %detail, "Dintero has a payment under this reference that is not this one; it is not taken for this cart (check that kiosk.id is this kiosk's own and that state.dir was not restored from a backup)");
                    continue;
                }
                Err(e) => {
                    debug!(%reference, error = %e, "could not look for a late create; trying again at the next health check");
                    return ControlFlow::Continue(());
                }
            };
            warn!(%reference, %session_id, "a payment written off as not created exists at Dintero after all; settling it");
            let reopened = Record::Reopened {
                merchant_reference: reference.clone(),
                session_id: session_id.clone(),
                at: now_rfc3339(),
            };
            if let Err(e) = self.write(reopened).await {
                error!(%reference, error = %e, "cannot journal the reopened payment; it stays under watch");
                return ControlFlow::Continue(());
            }
            self.late.found(&reference);
            if let Driven::ShutDown = self
                .settle(
                    payment,
                    Some(session_id),
                    Driving::Withdrawal,
                    shutdown.as_mut(),
                )
                .await
            {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// Compacts the journal while no payment runs, so replay stays short on a kiosk that runs
    /// for years. Only finished payments beyond `keep_final` are dropped.
    async fn compact(&self) {
        let journal = self.journal.clone();
        let keep = self.config.keep_final;
        match tokio::task::spawn_blocking(move || lock(&journal).compact(keep)).await {
            Ok(Ok(stats)) => debug!(?stats, "journal compacted"),
            Ok(Err(e)) => {
                warn!(error = %e, "journal compaction failed; the journal is still valid")
            }
            Err(e) => warn!(error = %e, "journal compaction did not run"),
        }
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

    /// Applies an event, journals what changed, publishes the view.
    async fn step(&mut self, phase: Phase, event: Event, deadline: Instant) -> Phase {
        let before = phase.clone();
        let next = match phase.apply(event) {
            Ok(next) => next,
            Err(e) => {
                error!(error = %e, "ignored an event the state machine does not allow");
                return before;
            }
        };
        let reference = next.payment().merchant_reference.clone();
        if before.session_id().is_none() {
            if let Some(session_id) = next.session_id() {
                self.write_logged(Record::Session {
                    merchant_reference: reference.clone(),
                    session_id: session_id.to_string(),
                })
                .await;
            }
        }
        if transaction_of(&before).is_none() {
            if let Some(transaction_id) = transaction_of(&next) {
                self.write_logged(Record::Transaction {
                    merchant_reference: reference.clone(),
                    transaction_id: transaction_id.to_string(),
                })
                .await;
            }
        }
        if let Phase::Done { outcome, .. } = &next {
            self.write_logged(Record::Final {
                merchant_reference: reference,
                outcome: outcome.outcome(),
                transaction_id: outcome.transaction_id().map(str::to_string),
                status: match outcome {
                    Final::Approved { status, .. } => Some(status.as_str().to_string()),
                    _ => None,
                },
                at: now_rfc3339(),
            })
            .await;
        } else if next.name() != before.name() {
            self.write_logged(Record::State {
                merchant_reference: reference,
                state: next.name().to_string(),
            })
            .await;
        }
        if next.name() != before.name() {
            debug!(from = before.name(), to = next.name(), "payment phase");
        }
        self.publish(&next, deadline);
        next
    }

    fn publish(&mut self, phase: &Phase, deadline: Instant) {
        if let Phase::Done { .. } = phase {
            self.hold(phase.view(deadline));
            return;
        }
        if self.hold_until.is_some_and(|until| Instant::now() < until) {
            return;
        }
        self.hold_until = None;
        self.state.send_replace(phase.view(deadline));
    }

    /// Drives a payment from `phase` until it ends or the kiosk shuts down.
    async fn drive(
        &mut self,
        mut phase: Phase,
        deadline: Instant,
        driving: Driving,
        mut shutdown: Shutdown<'_>,
    ) -> Driven {
        let created_at = Instant::now();
        let mut errors: u32 = 0;
        // When the cancel was last sent: a cancel whose answer was lost may never have reached
        // Dintero, so it is sent again while the payment is still not over.
        let mut cancel_sent: Option<Instant> = None;
        let mut first_miss: Option<Instant> = None;
        // What a lookup found under the reference that was not this payment.
        let mut foreign: Option<String> = None;
        let mut session: Option<Session> = None;
        let mut next_step = Instant::now();
        loop {
            if let Phase::Done { outcome, .. } = &phase {
                return Driven::Finished(outcome.clone());
            }
            let hold_end = self.hold_until.unwrap_or_else(far_future);
            tokio::select! {
                _ = shutdown.as_mut() => {
                    let reference = phase.payment().merchant_reference.clone();
                    self.write_logged(Record::State {
                        merchant_reference: reference.clone(),
                        state: format!("interrupted_{}", phase.name()),
                    })
                    .await;
                    info!(%reference, phase = phase.name(), "shutting down with a payment in flight; the journal has it for the next start");
                    return Driven::ShutDown;
                }
                () = beat(&mut self.heartbeat) => {}
                event = self.inputs.recv(), if self.inputs_open => match event {
                    Some(InputEvent::Cart(cart) | InputEvent::SignedCart(cart) | InputEvent::SlipCart(cart)) => {
                        info!(amount = %cart.amount, "cart refused: a payment is running");
                        self.state.send_replace(KioskState::Refused { reason: RefusalReason::Busy });
                        self.hold_until = Some(Instant::now() + self.config.result_screen.min(Duration::from_secs(2)));
                    }
                    Some(other) => self.on_input_while_busy(other),
                    None => self.inputs_open = false,
                },
                command = self.commands.recv(), if self.commands_open => match command {
                    Some(Command::Cancel) => {
                        if matches!(phase, Phase::AwaitingPickup { .. } | Phase::WaitingForCard { .. }) {
                            info!(reference = %phase.payment().merchant_reference, "cancel requested");
                            phase = self.step(phase, Event::Cancel(CancelReason::Requested), deadline).await;
                            next_step = Instant::now();
                        } else {
                            info!(phase = phase.name(), "cancel requested but the payment is past cancelling");
                        }
                    }
                    Some(Command::CheckHealth) => {}
                    None => self.commands_open = false,
                },
                _ = sleep_until(hold_end), if self.hold_until.is_some() => {
                    self.hold_until = None;
                    self.publish(&phase, deadline);
                }
                _ = sleep_until(next_step) => {
                    let now = Instant::now();
                    // Timers first: they turn into events the state machine judges.
                    let timer_event = match &phase {
                        Phase::AwaitingPickup { .. } | Phase::WaitingForCard { .. } if now >= deadline => {
                            info!(reference = %phase.payment().merchant_reference, "kiosk timeout; cancelling and reading again");
                            Some(CancelReason::Timeout)
                        }
                        _ => None,
                    };
                    if let Some(reason) = timer_event {
                        phase = self.step(phase, Event::Cancel(reason), deadline).await;
                        continue;
                    }
                    let polled_at = Instant::now();
                    let result = self.advance(&phase, driving, &mut cancel_sent, &mut first_miss, &mut foreign, &mut session).await;
                    match result {
                        Ok(Some(event)) => {
                            errors = 0;
                            phase = self.step(phase, event, deadline).await;
                            next_step = Instant::now() + self.config.poll_interval;
                        }
                        // Offline is judged by what Dintero says, not by the clock alone: only a
                        // read sent after the pickup deadline that still shows no transaction
                        // counts, so a slow kiosk never cancels a payment the terminal has taken.
                        Ok(None) if matches!(phase, Phase::AwaitingPickup { .. }) && polled_at >= created_at + self.config.pickup_timeout => {
                            errors = 0;
                            warn!(reference = %phase.payment().merchant_reference, "the terminal has not picked the payment up; cancelling");
                            phase = self.step(phase, Event::Cancel(CancelReason::TerminalOffline), deadline).await;
                            next_step = Instant::now();
                        }
                        Ok(None) => {
                            errors = 0;
                            next_step = Instant::now() + self.config.poll_interval;
                        }
                        Err(e) => {
                            errors += 1;
                            self.note_api_error(&e);
                            let wait = backoff(self.config.poll_interval, errors, e.retry_after());
                            warn!(reference = %phase.payment().merchant_reference, error = %e, attempt = errors, retry_in_ms = wait.as_millis() as u64, "could not read the payment; retrying");
                            if errors >= 3 && !matches!(phase, Phase::Checking { .. }) {
                                self.state.send_replace(KioskState::Checking { reference: phase.payment().merchant_reference.clone() });
                            }
                            next_step = Instant::now() + wait;
                        }
                    }
                }
            }
        }
    }

    fn on_input_while_busy(&mut self, event: InputEvent) {
        match event {
            InputEvent::Cart(_) | InputEvent::SignedCart(_) | InputEvent::SlipCart(_) => {}
            InputEvent::Unreadable { reason, .. } => {
                info!(%reason, "code ignored: a payment is running")
            }
            InputEvent::ScannerUnavailable | InputEvent::ScannerBack => self.note_scanner(event),
        }
    }

    /// One step of talking to Dintero for the current phase; `Ok(None)` means nothing new.
    async fn advance(
        &mut self,
        phase: &Phase,
        driving: Driving,
        cancel_sent: &mut Option<Instant>,
        first_miss: &mut Option<Instant>,
        foreign: &mut Option<String>,
        session: &mut Option<Session>,
    ) -> Result<Option<Event>, ApiError> {
        match phase {
            Phase::Checking {
                payment,
                session_id: None,
            } => match self.find(payment).await? {
                Lookup::Found(found) => {
                    let (s, tx) = *found;
                    let progress = classify(&s, tx.as_ref(), None);
                    let session_id = s.id.clone();
                    *session = Some(s);
                    Ok(Some(Event::Found {
                        session_id,
                        progress,
                    }))
                }
                // Someone else's payment under this reference counts as a miss: this payment's
                // own session may still show up (a create that lands late) and is then taken.
                missed => {
                    if let Lookup::Foreign(detail) = missed {
                        warn!(reference = %payment.merchant_reference, %detail, "a payment under this reference is not this one; looking again before deciding");
                        *foreign = Some(detail);
                    }
                    let now = Instant::now();
                    match first_miss {
                        None => {
                            *first_miss = Some(now);
                            Ok(None)
                        }
                        Some(at) if now >= *at + self.config.lookup_confirm_delay => {
                            Ok(Some(match foreign.take() {
                                Some(detail) => Event::Conflict { detail },
                                None => Event::NotFound,
                            }))
                        }
                        Some(_) => Ok(None),
                    }
                }
            },
            Phase::Cancelling { session_id, .. }
                if cancel_sent
                    .is_none_or(|at| Instant::now() >= at + self.config.lookup_confirm_delay) =>
            {
                match self.gateway.cancel_session(session_id).await {
                    Ok(()) => info!(
                        session_id,
                        "session cancelled; reading what really happened"
                    ),
                    Err(e) if e.outcome_unknown() => {
                        warn!(session_id, error = %e, "cancel outcome unknown; reading the payment again");
                    }
                    Err(ApiError::Rejected {
                        status, message, ..
                    }) => {
                        info!(session_id, status, %message, "cancel refused (the payment may have completed); reading it again");
                    }
                    Err(e) => return Err(e),
                }
                *cancel_sent = Some(Instant::now());
                let progress = self.poll(session_id, None, session, phase).await?;
                Ok(Some(Event::Polled(progress)))
            }
            _ => {
                let Some(session_id) = phase.session_id() else {
                    return Ok(None);
                };
                let known_tx = transaction_of(phase).map(str::to_string);
                let progress = self
                    .poll(session_id, known_tx.as_deref(), session, phase)
                    .await?;
                let withdraw = match driving {
                    Driving::Live => false,
                    Driving::Recovery => progress == Progress::NotPickedUp,
                    Driving::Withdrawal => {
                        matches!(progress, Progress::NotPickedUp | Progress::Prompting { .. })
                            && !matches!(phase, Phase::Cancelling { .. })
                    }
                };
                if withdraw {
                    return Ok(Some(Event::Cancel(CancelReason::Recovery)));
                }
                let unchanged = match (&progress, phase) {
                    (Progress::NotPickedUp, Phase::AwaitingPickup { .. }) => true,
                    (Progress::Prompting { .. }, Phase::WaitingForCard { .. }) => true,
                    (Progress::Authorized { .. }, Phase::Processing { .. }) => true,
                    (Progress::Ended(_), _) => false,
                    (_, Phase::Cancelling { .. }) => true,
                    _ => false,
                };
                Ok(if unchanged {
                    None
                } else {
                    Some(Event::Polled(progress))
                })
            }
        }
    }

    /// Reads the payment: the transaction when its id is known (one call per poll), the session
    /// otherwise, and the session again once the transaction has ended, for the reason why.
    async fn poll(
        &self,
        session_id: &str,
        known_tx: Option<&str>,
        session: &mut Option<Session>,
        phase: &Phase,
    ) -> Result<Progress, ApiError> {
        let cancel = match phase {
            Phase::Cancelling { reason, .. } => Some(*reason),
            _ => None,
        };
        let tx_id = match known_tx {
            Some(id) => id.to_string(),
            None => {
                let s = self.gateway.get_session(session_id).await?;
                let tx_id = s.transaction_id.clone();
                *session = Some(s);
                match tx_id {
                    Some(id) => id,
                    None => {
                        let s = session.as_ref().map(|s| classify(s, None, cancel));
                        return Ok(s.unwrap_or(Progress::NotPickedUp));
                    }
                }
            }
        };
        let tx = self.gateway.get_transaction(&tx_id).await?;
        // A transaction that ended after the session was read: the session read just before it
        // may not have the event that says why yet (seen under load: a customer cancel taken
        // for a technical failure), so it is read again.
        if tx.status.is_final() {
            *session = Some(self.gateway.get_session(session_id).await?);
        }
        match session.as_ref() {
            Some(s) => Ok(classify(s, Some(&tx), cancel)),
            None => {
                let s = self.gateway.get_session(session_id).await?;
                let progress = classify(&s, Some(&tx), cancel);
                *session = Some(s);
                Ok(progress)
            }
        }
    }

    /// Looks a payment up by our reference: sessions first, then transactions on our terminal.
    /// What it finds counts only if it proves to be this payment (see [`super::identity`]).
    async fn find(&self, payment: &Payment) -> Result<Lookup, ApiError> {
        let reference = payment.merchant_reference.as_str();
        let mut others = Vec::new();
        let sessions = self.gateway.search_sessions(reference).await?;
        let mut ours = Vec::new();
        for s in sessions.into_iter().filter(|s| {
            s.order
                .as_ref()
                .is_some_and(|o| o.merchant_reference == reference)
        }) {
            let mismatches = identity::session_mismatches(payment, &s);
            if mismatches.is_empty() {
                ours.push(s);
            } else {
                others.push(format!(
                    "session {}: {}",
                    s.id,
                    identity::describe(&mismatches)
                ));
            }
        }
        if let Some(found) = self.one_of_ours(ours, &mut others) {
            let tx = match &found.transaction_id {
                Some(id) => Some(self.gateway.get_transaction(id).await?),
                None => None,
            };
            return Ok(Lookup::Found(Box::new((found, tx))));
        }
        let query = TransactionQuery {
            merchant_reference: Some(reference.to_string()),
            terminal_id: Some(self.config.terminal_id().to_string()),
            limit: Some(10),
        };
        let txs = self.gateway.list_transactions(&query).await?;
        let mut ours = Vec::new();
        for tx in txs
            .into_iter()
            .filter(|t| t.merchant_reference.as_deref() == Some(reference))
        {
            let Some(session_id) = tx.session_id.clone() else {
                warn!(reference, transaction_id = %tx.id, "transaction found without a session id");
                continue;
            };
            let mut mismatches = identity::transaction_mismatches(payment, &tx);
            let s = self.gateway.get_session(&session_id).await?;
            for m in identity::session_mismatches(payment, &s) {
                if !mismatches.contains(&m) {
                    mismatches.push(m);
                }
            }
            if mismatches.is_empty() {
                ours.push((s, tx));
            } else {
                others.push(format!(
                    "transaction {}: {}",
                    tx.id,
                    identity::describe(&mismatches)
                ));
            }
        }
        if let Some((s, tx)) = self.one_of_ours(ours, &mut others) {
            return Ok(Lookup::Found(Box::new((s, Some(tx)))));
        }
        Ok(match others.is_empty() {
            true => Lookup::Nothing,
            false => Lookup::Foreign(others.join(" | ")),
        })
    }

    /// The one candidate that proved to be this payment; several that all match cannot be told
    /// apart, which is as bad as none.
    fn one_of_ours<T>(&self, mut ours: Vec<T>, others: &mut Vec<String>) -> Option<T> {
        match ours.len() {
            1 => ours.pop(),
            0 => None,
            n => {
                others.push(format!(
                    "{n} payments match this one in every respect and cannot be told apart"
                ));
                None
            }
        }
    }

    fn session_request(&self, payment: &Payment) -> SessionProfileRequest {
        let amount = payment.amount.minor;
        let vat_amount = vat_included(amount, self.config.vat_percent);
        let description = match &payment.cart_reference {
            Some(r) => format!("Kiosk {} cart {r}", self.config.kiosk_id),
            None => format!("Kiosk {} purchase", self.config.kiosk_id),
        };
        SessionProfileRequest {
            profile_id: self.config.profile_id.clone(),
            url: SessionUrl {
                return_url: self.config.return_url.clone(),
                callback_url: None,
            },
            order: Order {
                amount,
                currency: payment.amount.currency.code().to_string(),
                merchant_reference: payment.merchant_reference.clone(),
                merchant_reference_2: payment.cart_reference.clone(),
                vat_amount: Some(vat_amount),
                items: vec![OrderItem {
                    id: "cart".into(),
                    line_id: "1".into(),
                    description: Some(description),
                    quantity: 1,
                    amount,
                    vat_amount: Some(vat_amount),
                    vat: Some(self.config.vat_percent),
                }],
                store: Some(self.config.store.clone()),
            },
        }
    }

    /// The health gate: a journal that takes writes, a valid token, and the terminal `ACTIVE`.
    async fn check_health(&mut self) {
        let before = self.health.clone();
        self.health_log.note_between_checks(&before, Instant::now());
        let (mut health, mut cause) = match self.storage_health().await {
            Some(unavailable) => (
                unavailable,
                "the journal takes no writes (see the error logged before)".to_string(),
            ),
            None => self.read_health().await,
        };
        if before == Health::Ready
            && health == Health::Unavailable(UnavailableReason::ApiUnreachable)
        {
            // One lost answer must not turn a customer away: ask once more before believing it.
            debug!(%cause, "health check failed once; asking again before refusing carts");
            tokio::time::sleep(HEALTH_RECHECK).await;
            (health, cause) = self.read_health().await;
        }
        self.health = health;
        self.health_log.note(&self.health, &cause, Instant::now());
        let period = match self.health {
            Health::Ready => self.config.health_interval,
            Health::Unavailable(_) => self.config.health_interval.min(Duration::from_secs(5)),
        };
        self.next_health = Instant::now() + period;
    }

    /// The journal's part of the health gate: `None` when payments can be journaled. After a
    /// failed journal write only a journal append proves it: a [`Record::Sequence`], which
    /// belongs to no payment and repeats the last sequence number handed out.
    async fn storage_health(&mut self) -> Option<Health> {
        let unavailable = Some(Health::Unavailable(UnavailableReason::Storage));
        if self.journal_poisoned {
            return unavailable;
        }
        if self.storage_failed {
            let last = lock(&self.journal).next_sequence().saturating_sub(1);
            if self.write(Record::Sequence { last }).await.is_err() {
                return unavailable;
            }
            info!("the journal takes writes again");
            self.storage_failed = false;
            return None;
        }
        let dir = lock(&self.journal).path().parent()?.to_owned();
        let probed = tokio::task::spawn_blocking(move || {
            crate::payment::storage::probe(&dir).map_err(|e| (dir, e))
        })
        .await;
        match probed {
            Ok(Ok(())) => None,
            Ok(Err((dir, e))) => {
                let e = JournalError::Io {
                    action: "write a probe file in",
                    path: dir,
                    source: e,
                };
                error!(error = %e, "the state directory takes no writes; refusing card payments until the journal does");
                self.journal_failed(&e);
                unavailable
            }
            Err(e) => {
                warn!(error = %e, "the storage probe did not run; trying again at the next health check");
                None
            }
        }
    }

    /// A journal write failed: the gate closes until a journal append succeeds (a poisoned
    /// journal: until a restart).
    fn journal_failed(&mut self, e: &JournalError) {
        if matches!(e, JournalError::Poisoned { .. }) && !self.journal_poisoned {
            error!(error = %e, "out of service (E-JOURNAL-RESTART) until kioskpay is restarted");
            self.journal_poisoned = true;
        }
        self.storage_failed = true;
        self.health = Health::Unavailable(UnavailableReason::Storage);
        self.next_health = self
            .next_health
            .min(Instant::now() + self.config.health_interval.min(Duration::from_secs(5)));
    }

    /// One reading of the health gate: a valid token, and the terminal's status; with the cause
    /// an operator needs when it is not ready.
    async fn read_health(&mut self) -> (Health, String) {
        match self.gateway.ensure_token().await {
            Err(e) => (unavailable_for(&e), e.to_string()),
            Ok(()) => match self.gateway.terminal(self.config.terminal_id()).await {
                Ok(t) if t.status == TerminalStatus::Active => (Health::Ready, String::new()),
                Ok(t) => (
                    Health::Unavailable(UnavailableReason::TerminalNotActive(
                        t.status.as_str().to_string(),
                    )),
                    format!(
                        "Dintero says terminal {} is {}",
                        t.terminal_id,
                        t.status.as_str()
                    ),
                ),
                Err(ApiError::Auth { status: 403, .. }) => {
                    if !self.terminal_scope_warned {
                        warn!("the API client may not read terminals (403); the health gate checks the API alone");
                        self.terminal_scope_warned = true;
                    }
                    (Health::Ready, String::new())
                }
                Err(e @ ApiError::Rejected { .. }) => (
                    Health::Unavailable(UnavailableReason::TerminalNotActive(
                        e.code().unwrap_or("NOT_FOUND").to_string(),
                    )),
                    format!(
                        "terminal {} lookup refused: {e}; check store.terminal_id",
                        self.config.terminal_id()
                    ),
                ),
                Err(e) => (unavailable_for(&e), e.to_string()),
            },
        }
    }

    fn note_api_error(&mut self, e: &ApiError) {
        match e {
            ApiError::Auth { .. } => {
                self.health = Health::Unavailable(UnavailableReason::Credentials)
            }
            ApiError::Unreachable { .. } => {
                self.health = Health::Unavailable(UnavailableReason::ApiUnreachable)
            }
            _ => return,
        }
        self.next_health = Instant::now() + self.config.health_interval.min(Duration::from_secs(5));
    }

    /// Appends to the journal on the blocking pool (it fsyncs). A failure closes the health gate.
    async fn write(&mut self, record: Record) -> Result<(), JournalError> {
        let journal = self.journal.clone();
        let result = match tokio::task::spawn_blocking(move || lock(&journal).append(&record)).await
        {
            Ok(result) => {
                #[cfg(feature = "emulator")]
                if result.is_ok() {
                    crash_hook();
                }
                result
            }
            Err(e) => Err(JournalError::Io {
                action: "append to",
                path: Default::default(),
                source: std::io::Error::other(e.to_string()),
            }),
        };
        if let Err(e) = &result {
            self.journal_failed(e);
        }
        result
    }

    /// Appends a record that follows an effect already made: a failure is logged loudly but the
    /// payment goes on (recovery can rebuild the missing step by reference).
    async fn write_logged(&mut self, record: Record) {
        if let Err(e) = self.write(record).await {
            error!(error = %e, "journal write failed");
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

/// **Test hook, never set on a kiosk.** With `KIOSKPAY_CRASH_AFTER_JOURNAL=<n>` in its
/// environment the process kills itself with `SIGKILL` right after its n-th successful journal
/// append of this run, before the call that append announced: the moment a power cut hurts
/// most. `kioskpay soak` uses it to put crashes exactly between "journal" and "effect", which a
/// kill from outside only hits by luck. Unset (or not a number) it does nothing.
///
/// Compiled only with the `emulator` feature: the packaged kiosk has no such hook.
#[cfg(feature = "emulator")]
pub const CRASH_AFTER_JOURNAL_ENV: &str = "KIOSKPAY_CRASH_AFTER_JOURNAL";

#[cfg(feature = "emulator")]
fn crash_hook() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    static APPENDS: AtomicU64 = AtomicU64::new(0);
    let Some(at) = *AT.get_or_init(|| {
        std::env::var(CRASH_AFTER_JOURNAL_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
    }) else {
        return;
    };
    if APPENDS.fetch_add(1, Ordering::SeqCst) + 1 == at {
        error!("{CRASH_AFTER_JOURNAL_ENV}={at}: killing the process after this journal append (test hook)");
        // SAFETY: kill(2) on our own pid takes no pointers; SIGKILL cannot be caught, so nothing
        // after the append runs, exactly like a power cut.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}

/// How long the health gate waits before asking again after one failed check.
const HEALTH_RECHECK: Duration = Duration::from_millis(250);

/// A health gate that stays down for the same cause is logged again this often, with the number
/// of checks in between: the gate checks every few seconds while down.
const HEALTH_LOG_EVERY: Duration = Duration::from_secs(600);

/// What the health gate last logged: each change (down with its cause, up again) is logged once,
/// at WARN and INFO; the same failure again only every [`HEALTH_LOG_EVERY`].
#[derive(Default)]
struct HealthLog {
    last: Option<(Health, String, Instant)>,
    unlogged: u32,
}

impl HealthLog {
    /// A payment can take the gate down between checks (terminal offline, credentials refused);
    /// logged at the next check, so that the gate's coming back up follows its going down.
    fn note_between_checks(&mut self, health: &Health, now: Instant) {
        let logged_other = self.last.as_ref().is_some_and(|(last, ..)| last != health);
        if logged_other && *health != Health::Ready {
            self.note(health, "found by the last payment", now);
        }
    }

    fn note(&mut self, health: &Health, cause: &str, now: Instant) {
        if let Some((last, last_cause, at)) = &mut self.last {
            if last == health && last_cause == cause {
                if let Health::Unavailable(reason) = health {
                    if now.duration_since(*at) < HEALTH_LOG_EVERY {
                        self.unlogged += 1;
                    } else {
                        warn!(%reason, %cause, checks_since = self.unlogged + 1, "card payment still unavailable");
                        *at = now;
                        self.unlogged = 0;
                    }
                }
                return;
            }
        }
        match (health, &self.last) {
            (Health::Ready, Some((Health::Unavailable(was), ..))) => {
                info!(was = %was, "card payment available again")
            }
            (Health::Ready, _) => info!("card payment available"),
            (Health::Unavailable(reason), _) => {
                warn!(%reason, %cause, "card payment unavailable")
            }
        }
        self.last = Some((health.clone(), cause.to_string(), now));
        self.unlogged = 0;
    }
}

fn unavailable_for(e: &ApiError) -> Health {
    Health::Unavailable(match e {
        ApiError::Auth { .. } | ApiError::Rejected { .. } => UnavailableReason::Credentials,
        ApiError::Unknown { .. } | ApiError::Unreachable { .. } => {
            UnavailableReason::ApiUnreachable
        }
    })
}

/// Resolves when the display reports a new health; never without a display to watch.
async fn display_changed(
    display: &mut Option<watch::Receiver<PanelHealth>>,
) -> Result<(), watch::error::RecvError> {
    match display {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

fn transaction_of(phase: &Phase) -> Option<&str> {
    match phase {
        Phase::WaitingForCard { transaction_id, .. } | Phase::Processing { transaction_id, .. } => {
            Some(transaction_id)
        }
        Phase::Done { outcome, .. } => outcome.transaction_id(),
        _ => None,
    }
}

/// Capped exponential backoff with jitter, or Dintero's `Retry-After` when it is longer.
fn backoff(base: Duration, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let cap = Duration::from_secs(10);
    let exp = base.saturating_mul(1u32 << attempt.min(6)).min(cap);
    let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
    match retry_after {
        Some(ra) => ra.max(jittered).min(Duration::from_secs(60)),
        None => jittered,
    }
}

/// The VAT included in `amount` at `percent`, rounded half up, integer arithmetic only.
pub fn vat_included(amount: u64, percent: u32) -> u64 {
    let amount = u128::from(amount);
    let p = u128::from(percent);
    let vat = (amount * p * 2 + (100 + p)) / (2 * (100 + p));
    u64::try_from(vat).unwrap_or(u64::MAX)
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

    #[test]
    fn vat_is_integer_and_rounded() {
        assert_eq!(vat_included(39900, 25), 7980);
        assert_eq!(vat_included(100, 25), 20);
        assert_eq!(vat_included(1, 25), 0);
        assert_eq!(vat_included(3, 25), 1);
        assert_eq!(vat_included(1000, 0), 0);
        assert_eq!(vat_included(u64::MAX, 25), u64::MAX / 5);
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
        let config = crate::config::Config::parse(
            "[kiosk]\nid = \"kiosk-1\"\n[dintero]\naccount_id = \"T12345678\"\n\
             client_id = \"c\"\nclient_secret_file = \"/nonexistent\"\n\
             profile_id = \"T12345678.kiosk-in-person\"\n[store]\nid = \"s\"\n\
             terminal_id = \"T12345678-T0001\"\npayout_destination_id = \"p\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
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
        let config = crate::config::Config::parse(
            "[kiosk]\nid = \"kiosk-1\"\n[dintero]\naccount_id = \"T12345678\"\n\
             client_id = \"c\"\nclient_secret_file = \"/nonexistent\"\n\
             profile_id = \"T12345678.kiosk-in-person\"\n[store]\nid = \"s\"\n\
             terminal_id = \"T12345678-T0001\"\npayout_destination_id = \"p\"\n",
            std::path::Path::new("test.toml"),
        )
        .unwrap();
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

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        let base = Duration::from_millis(500);
        for attempt in 0..20 {
            let d = backoff(base, attempt, None);
            assert!(d <= Duration::from_secs(10), "{d:?}");
        }
        assert!(backoff(base, 1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert!(backoff(base, 1, Some(Duration::from_secs(3600))) <= Duration::from_secs(60));
    }
}
