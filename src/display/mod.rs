//! The customer display: the only thing telling a customer at an unattended kiosk what to do and
//! whether they paid.
//!
//! # What it shows
//!
//! The payment flow publishes a [`KioskState`] on a `tokio::sync::watch` channel; the display
//! observes it and never drives anything. Each state has one screen, in Norwegian Bokmål (the
//! default) or English:
//!
//! | state | title (nb / en) | icon | band |
//! |---|---|---|---|
//! | starting | Starter opp / Starting up | hourglass, dots | blue |
//! | idle | Velkommen / Welcome ("Skann koden din for å betale") | barcode | blue |
//! | unavailable | Kortbetaling er ikke mulig nå / Card payment unavailable, with the reason | ! | amber |
//! | refused | Kan ikke starte betaling / Cannot start payment, with the reason | ! | amber |
//! | creating | Starter betalingen / Starting payment, amount | card, dots | blue |
//! | waiting for card | Betal på kortterminalen / Pay on the card terminal, amount, seconds left | card | blue |
//! | processing | Behandler betalingen / Processing payment, amount | hourglass, dots | blue |
//! | approved | Betalingen er godkjent / Payment approved, amount, card, reference, receipt QR code if `display.receipt_url` is set | check | green |
//! | declined | Kortet ble avvist / Card declined (or Ikke nok dekning / Insufficient funds) | cross | red |
//! | cancelled | Betalingen er avbrutt / Payment cancelled | barred circle | amber |
//! | timed out | Tiden gikk ut / Time ran out | clock | amber |
//! | failed | Betalingen feilet / Payment failed, with the kind | ! | red |
//! | checking | Sjekker betalingen / Checking your payment, reference to quote, dots | hourglass | amber |
//! | scanner unavailable | Skanneren virker ikke / Scanner not working, `E-SCANNER` | ! | amber |
//! | out of service | Ute av drift / Out of service, error code | ! | red |
//! | technician | Vedlikehold pågår / Maintenance | wrench | amber |
//!
//! Every screen after a payment that did not go through says that nothing was charged and what to
//! do next. Colour is never the only signal: each outcome has its own title and icon shape.
//! Amounts are formatted by [`crate::money::Money::display`] (`kr 399,00`, `NOK 399.00`).
//!
//! # How it is built
//!
//! - [`screen`]: `KioskState` → [`Screen`], a pure model of the words, amount, tone and icon.
//! - [`text`]: every customer text in both languages.
//! - [`draw`](mod@draw): `Screen` → any embedded-graphics `DrawTarget<Color = Rgb565>`, sized to the
//!   target (240×320 portrait, 320×240 and 480×320 landscape are the tested sizes).
//! - [`frame`]: an in-memory RGB565 framebuffer with PNG export.
//! - [`diff`]: the rectangles that changed between two frames.
//! - [`panel`]: where frames go: SPI panels, the Linux framebuffer, PNG files, a text box on a
//!   terminal, or nowhere. [`crate::board::display`]: which panel and how it is wired (`board/displays/*.toml`).
//!
//! # Behaviour of the display task ([`run`])
//!
//! - It redraws when the state changes, and only then, except while a countdown or an activity
//!   indicator is on screen: then it redraws once per second, on the second boundaries of the
//!   countdown. An idle kiosk causes no wake-ups at all.
//! - At most 20 frames a second ([`MIN_FRAME_INTERVAL`]): a burst of states is drawn as its
//!   latest one.
//! - Hardware panels send only the changed rectangles of each frame; an unchanged frame sends
//!   nothing (see [`panel::spi`]).
//! - Drawing and the panel's `show` run on tokio's blocking pool, so a slow panel (a full SPI
//!   frame takes 20-40 ms) never stalls other tasks. While it works, new states wait in the watch
//!   channel; when it is done, the latest state is drawn and intermediate ones are skipped. A
//!   payment is never held up by the display.
//! - A panel error is logged (the first at once, then at most once a minute with a count) and the
//!   screen is retried on the next change, or after a back-off of 1 s doubling to 30 s, whichever
//!   comes first. The task keeps running; it ends when the shutdown future completes (a show
//!   in progress finishes first) or the state publisher goes away. A panel backend that panics
//!   ends the display task with an error in the log.
//! - With a customer-facing panel (SPI, framebuffer) the task reports [`PanelHealth`] to the
//!   payment flow after every frame that changes it; the flow takes no payment until the panel
//!   has shown a frame, and shows [`KioskState::OutOfService`] with the error code while it is
//!   broken. The display only reports: it never starts, stops or changes a payment. A panel that
//!   dies while nothing changes on screen is noticed at the next frame (there is nothing to read
//!   back from a write-only SPI panel).
//!
//! # Error codes on the out-of-service screen
//!
//! | code | meaning | what to check |
//! |---|---|---|
//! | `E-PANEL-OPEN` | a display device cannot be opened | `dtparam=spi=on`, groups `spi`/`gpio`/`video`, device and line numbers in the board file |
//! | `E-PANEL-INIT` | the panel refused its set-up, or the framebuffer mode differs from `display.width`×`height` | board file controller/size/offsets, power, cable, the mode the log names |
//! | `E-PANEL-SEND` | a transfer to a working panel failed | wiring and power; a lower `spi.clock_hz` |
//! | `E-PANEL-GONE`, `E-PANEL-PANIC` | the display task stopped | restart kioskpay; report the log |
//! | `E-PANEL-FILE`, `E-PANEL-TERM` | PNG or terminal output failed (development backends; these never stop payments) | disk space, permissions, stdout |
//!
//! # Testing a panel
//!
//! While the kiosk is in maintenance, a technician's `test display` (through the daemon's control
//! socket) puts the [`pattern`] and then each customer screen on the panel in turn ([`Override`],
//! [`run_tested`]); the kiosk's own screen comes back when the test ends or maintenance does.
//!
//! # Looking at the screens without hardware
//!
//! [`render_png`] draws any state at any size; [`sample_states`] names one state per screen, so
//! `kioskpay render` can write them all to PNG files for review (and `--screen test-pattern`
//! the test pattern). The [`PngPanel`] writes the
//! frames a running kiosk shows, numbered, one file per change.
//!
//! # Errors and their fixes
//!
//! See [`PanelError`]: every variant names the file or device and what to change (permissions,
//! disk space, a closed stdout).

pub mod config;
pub mod diff;
pub mod draw;
pub mod frame;
pub mod panel;
pub mod pattern;
pub mod screen;
pub mod text;

use std::future::Future;
use std::time::Duration;

/// Panel resolutions are embedded-graphics sizes; re-exported so callers need not depend on it.
pub use embedded_graphics::geometry::Size;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

pub use self::config::{DisplayConfig, DisplayKind, Hardware};
pub use self::draw::draw;
pub use self::frame::Frame;
pub use self::panel::{
    FramebufferPanel, NullPanel, Panel, PanelError, PngPanel, SpiPanel, TerminalPanel,
};
use self::screen::{next_change, ACTIVITY_PHASES};
pub use self::screen::{screen_for, ReceiptUrl, Screen};
use crate::messages::CustomerReason;
pub use crate::messages::PanelHealth;
use crate::money::{Currency, Language, Money};
use crate::state::{
    CancelledBy, DeclineKind, FailKind, KioskState, RefusalReason, UnavailableReason,
};

/// How often repeated panel failures are logged at most.
const LOG_FAILURES_EVERY: Duration = Duration::from_secs(60);

/// First retry delay after a panel failure; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);

/// Longest retry delay after panel failures.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A display backend ready for [`run_with`].
pub struct Setup {
    /// Where frames go.
    pub panel: Box<dyn Panel>,
    /// The size frames are drawn at: the panel's, after rotation.
    pub size: Size,
    /// Whether the panel is the customer's screen, so that the kiosk must not take payments
    /// while it is broken (SPI and framebuffer panels). The PNG and terminal backends are
    /// development aids: their failures are logged only.
    pub customer_facing: bool,
}

/// The panel, size and role `config` asks for. Errors are configuration errors (an unreadable
/// board file, an SPI table that cannot work), never hardware ones.
pub fn setup_for(config: &crate::display::DisplayConfig) -> Result<Setup, PanelError> {
    use crate::display::DisplayKind;
    let configured = Size::new(config.width, config.height);
    let board = config.hardware().map_err(|e| PanelError::Init {
        detail: e.to_string(),
    })?;
    if let Some(hardware) = board {
        return Ok(match hardware {
            Hardware::Spi(spi) => Setup {
                size: spi.size(),
                panel: Box::new(SpiPanel::new(spi)),
                customer_facing: true,
            },
            Hardware::Framebuffer(fb) => Setup {
                size: configured,
                panel: Box::new(FramebufferPanel::new(fb.device)),
                customer_facing: true,
            },
        });
    }
    let panel: Box<dyn Panel> = match config.kind {
        DisplayKind::Png => Box::new(PngPanel::new(&config.png_dir)?.keeping(config.png_keep)),
        DisplayKind::Terminal => Box::new(TerminalPanel::new(std::io::stdout())),
        DisplayKind::None | DisplayKind::Spi | DisplayKind::Framebuffer => Box::new(NullPanel),
    };
    Ok(Setup {
        panel,
        size: configured,
        customer_facing: false,
    })
}

/// How the display looks, besides the state it shows.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The customer's language.
    pub lang: Language,
    /// The panel's size in pixels.
    pub size: Size,
    /// The receipt link for the QR code on the approved screen.
    pub receipt_url: Option<ReceiptUrl>,
}

impl Settings {
    /// The screen for `state` at `now` with these settings.
    pub fn screen(&self, state: &KioskState, now: Instant) -> Screen {
        screen_for(state, self.lang, now).with_receipt(state, self.receipt_url.as_ref(), self.lang)
    }
}

/// The shortest time between two frames: at most 20 frames per second, however fast states
/// change, so a burst of states cannot keep the bus (and a core) busy.
pub const MIN_FRAME_INTERVAL: Duration = Duration::from_millis(50);

/// Runs the customer display until `shutdown` completes or the state sender is dropped.
///
/// `size` is the panel's resolution in pixels; `lang` the customer's language. See the module
/// docs for when it redraws. The same as [`run_with`] without a receipt link or health reports.
pub async fn run(
    states: watch::Receiver<KioskState>,
    panel: Box<dyn Panel>,
    lang: Language,
    size: Size,
    shutdown: impl Future<Output = ()>,
) {
    let settings = Settings {
        lang,
        size,
        receipt_url: None,
    };
    run_with(states, panel, settings, None, shutdown).await;
}

/// Runs the customer display until `shutdown` completes or the state sender is dropped,
/// reporting the panel's health on `health` after every frame that changes it.
pub async fn run_with(
    states: watch::Receiver<KioskState>,
    panel: Box<dyn Panel>,
    settings: Settings,
    health: Option<watch::Sender<PanelHealth>>,
    shutdown: impl Future<Output = ()>,
) {
    let (_, no_tests) = watch::channel(None);
    run_tested(states, no_tests, panel, settings, health, shutdown).await;
}

/// What a technician's `test display` puts on the panel instead of the kiosk's own screen.
#[derive(Clone, Debug, PartialEq)]
pub enum Override {
    /// The test pattern ([`pattern`]).
    Pattern,
    /// The screen of this state, as a customer would see it.
    State(KioskState),
}

/// [`run_with`], showing what `tests` holds instead of the kiosk's state while it holds
/// something: the daemon's control server sets it for `test display` and clears it when the
/// test ends or the kiosk leaves maintenance.
pub async fn run_tested(
    mut states: watch::Receiver<KioskState>,
    mut tests: watch::Receiver<Option<Override>>,
    panel: Box<dyn Panel>,
    settings: Settings,
    health: Option<watch::Sender<PanelHealth>>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut test = tests.borrow_and_update().clone();
    let mut tests_open = true;
    let lang = settings.lang;
    let mut painter = Painter {
        panel,
        frame: Frame::new(settings.size.width, settings.size.height),
    };
    let mut state = states.borrow_and_update().clone();
    let mut phase: u8 = 0;
    let mut shown: Option<Screen> = None;
    let mut failures = Failures::default();
    let mut last_show: Option<Instant> = None;
    loop {
        let mut now = Instant::now();
        if let Some(earliest) = last_show.map(|at| at + MIN_FRAME_INTERVAL) {
            if now < earliest {
                tokio::select! {
                    biased;
                    () = &mut shutdown => return,
                    () = sleep_until(earliest) => {}
                }
                now = Instant::now();
                if states.has_changed().unwrap_or(false) {
                    let new = states.borrow_and_update().clone();
                    if new != state {
                        state = new;
                        phase = 0;
                    }
                }
            }
        }
        let pattern = test == Some(Override::Pattern);
        let showing = match &test {
            Some(Override::State(tested)) => tested,
            _ => &state,
        };
        let mut screen = match pattern {
            true => pattern::screen(settings.size),
            false => settings.screen(showing, now),
        };
        if let Some(activity) = screen.activity.as_mut() {
            *activity = phase % ACTIVITY_PHASES;
        }
        let mut wake = next_change(showing, lang, now).filter(|_| !pattern);
        if shown.as_ref() != Some(&screen) {
            let result;
            last_show = Some(now);
            (painter, result) = match show(painter, screen.clone(), pattern).await {
                Some(done) => done,
                None => {
                    tracing::error!(
                        "the display panel panicked; the customer display stays as it is until \
                         kioskpay restarts"
                    );
                    report(
                        &health,
                        PanelHealth::Broken {
                            code: "E-PANEL-PANIC",
                        },
                    );
                    return;
                }
            };
            match result {
                Ok(()) => {
                    failures.recovered();
                    report(&health, PanelHealth::Working);
                    shown = Some(screen);
                }
                Err(error) => {
                    shown = None;
                    report(&health, PanelHealth::Broken { code: error.code() });
                    let retry = failures.failed(&error, now);
                    wake = Some(wake.map_or(retry, |w| w.min(retry)));
                }
            }
        }
        tokio::select! {
            biased;
            () = &mut shutdown => return,
            changed = states.changed() => {
                if changed.is_err() {
                    tracing::debug!("kiosk state publisher gone; the display task ends");
                    return;
                }
                let new = states.borrow_and_update().clone();
                if new != state {
                    state = new;
                    phase = 0;
                }
            }
            () = sleep_until(wake.unwrap_or(now)), if wake.is_some() => {
                phase = phase.wrapping_add(1);
            }
            changed = tests.changed(), if tests_open => match changed {
                Ok(()) => {
                    test = tests.borrow_and_update().clone();
                    phase = 0;
                }
                // Nobody can start a test any more: what is shown stays until it is cleared,
                // which now cannot happen, so the kiosk's own screen comes back.
                Err(_) => {
                    tests_open = false;
                    test = None;
                }
            },
        }
    }
}

/// Publishes `health` if it differs from the last report (no wake-up for the flow otherwise).
fn report(health: &Option<watch::Sender<PanelHealth>>, new: PanelHealth) {
    if let Some(health) = health {
        health.send_if_modified(|current| {
            if *current == new {
                false
            } else {
                *current = new;
                true
            }
        });
    }
}

/// The panel and the frame it is drawn into, moved to the blocking pool and back for each show.
struct Painter {
    panel: Box<dyn Panel>,
    frame: Frame,
}

/// Draws `screen` (or the test pattern) and hands it to the panel on the blocking pool. `None`
/// if the panel panicked (and took itself with it).
async fn show(
    mut painter: Painter,
    screen: Screen,
    pattern: bool,
) -> Option<(Painter, Result<(), PanelError>)> {
    tokio::task::spawn_blocking(move || {
        let Ok(()) = match pattern {
            true => pattern::draw(&mut painter.frame),
            false => draw(&screen, &mut painter.frame),
        };
        let result = painter.panel.show(&screen, &painter.frame);
        (painter, result)
    })
    .await
    .ok()
}

/// Rate-limited logging and back-off for a failing panel.
#[derive(Default)]
struct Failures {
    /// Failures in a row.
    count: u32,
    /// Failures not logged since the last log line.
    unlogged: u32,
    last_logged: Option<Instant>,
}

impl Failures {
    /// Records a failure and returns when to retry.
    fn failed(&mut self, error: &PanelError, now: Instant) -> Instant {
        self.count = self.count.saturating_add(1);
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= LOG_FAILURES_EVERY)
        {
            tracing::warn!(
                %error,
                failures_in_a_row = self.count,
                not_logged = self.unlogged,
                "the customer display panel failed; retrying"
            );
            self.last_logged = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        let doublings = self.count.saturating_sub(1).min(5);
        now + (RETRY_FIRST * 2u32.pow(doublings)).min(RETRY_MAX)
    }

    fn recovered(&mut self) {
        if self.count > 0 {
            tracing::info!(
                failures = self.count,
                "the customer display panel works again"
            );
        }
        *self = Failures::default();
    }
}

/// The sample state named `name` (see [`sample_states`]).
pub fn sample_state(name: &str, now: Instant) -> Option<KioskState> {
    sample_states(now)
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, state)| state)
}

/// The sample waiting screen with `left` on its countdown at `now`: what a countdown tick
/// redraws, for the display benches.
pub fn sample_waiting(now: Instant, left: Duration) -> KioskState {
    match sample_state("waiting", now) {
        Some(KioskState::WaitingForCard {
            amount, reference, ..
        }) => KioskState::WaitingForCard {
            amount,
            reference,
            deadline: now + left,
        },
        other => other.unwrap_or(KioskState::Idle),
    }
}

/// One representative state per screen, named, for `kioskpay render`, documentation and tests.
///
/// Countdowns are taken at `now` with 60 seconds left. Amounts are `kr 399,00`.
pub fn sample_states(now: Instant) -> Vec<(&'static str, KioskState)> {
    let amount = Money::new(39900, Currency::NOK);
    let reference = || "kiosk-1-7KQ2FX-20261204-000042".to_string();
    vec![
        ("starting", KioskState::Starting),
        ("idle", KioskState::Idle),
        (
            "unavailable",
            KioskState::Unavailable {
                reason: UnavailableReason::ApiUnreachable,
            },
        ),
        (
            "unavailable_credentials",
            KioskState::Unavailable {
                reason: UnavailableReason::Credentials,
            },
        ),
        (
            "terminal_not_active",
            KioskState::Unavailable {
                reason: UnavailableReason::TerminalNotActive("INACTIVE".into()),
            },
        ),
        (
            "terminal_offline",
            KioskState::Unavailable {
                reason: UnavailableReason::TerminalOffline,
            },
        ),
        (
            "scanner_unavailable",
            KioskState::Unavailable {
                reason: UnavailableReason::Scanner,
            },
        ),
        (
            "refused",
            KioskState::Refused {
                reason: RefusalReason::Code {
                    detail: "GS1 payment slip has no amount: AI (390n) or (391n)".into(),
                    customer: CustomerReason::Unreadable,
                },
            },
        ),
        (
            "refused_not_payment_code",
            KioskState::Refused {
                reason: RefusalReason::Code {
                    detail: "EAN-13 \"7038010069307\" is a product number (GTIN)".into(),
                    customer: CustomerReason::NotAPaymentCode,
                },
            },
        ),
        (
            "refused_expired",
            KioskState::Refused {
                reason: RefusalReason::Code {
                    detail: "signed cart code for cart \"ORDER-4711\" expired".into(),
                    customer: CustomerReason::Expired,
                },
            },
        ),
        (
            "refused_already_paid",
            KioskState::Refused {
                reason: RefusalReason::Code {
                    detail: "signed cart code for cart \"ORDER-4711\" was already paid".into(),
                    customer: CustomerReason::AlreadyPaid,
                },
            },
        ),
        (
            "refused_busy",
            KioskState::Refused {
                reason: RefusalReason::Busy,
            },
        ),
        (
            "refused_unavailable",
            KioskState::Refused {
                reason: RefusalReason::Unavailable,
            },
        ),
        (
            "refused_zero",
            KioskState::Refused {
                reason: RefusalReason::ZeroAmount,
            },
        ),
        (
            "refused_too_large",
            KioskState::Refused {
                reason: RefusalReason::TooLarge {
                    max: Money::new(500000, Currency::NOK),
                },
            },
        ),
        (
            "refused_currency",
            KioskState::Refused {
                reason: RefusalReason::WrongCurrency {
                    given: "SEK".into(),
                },
            },
        ),
        (
            "creating",
            KioskState::Creating {
                amount,
                reference: reference(),
            },
        ),
        (
            "waiting",
            KioskState::WaitingForCard {
                amount,
                reference: reference(),
                deadline: now + Duration::from_secs(60),
            },
        ),
        (
            "processing",
            KioskState::Processing {
                amount,
                reference: reference(),
            },
        ),
        (
            "approved",
            KioskState::Approved {
                amount,
                reference: reference(),
                transaction_id: "T12345678.4ZrUWvLJzDq6tMPcEhFr7A".into(),
                card: Some("Visa **** 4242".into()),
            },
        ),
        (
            "declined",
            KioskState::Declined {
                amount,
                reference: reference(),
                kind: DeclineKind::Declined,
            },
        ),
        (
            "insufficient_funds",
            KioskState::Declined {
                amount,
                reference: reference(),
                kind: DeclineKind::InsufficientFunds,
            },
        ),
        (
            "cancelled",
            KioskState::Cancelled {
                amount,
                reference: reference(),
                by: CancelledBy::Customer,
            },
        ),
        (
            "cancelled_by_kiosk",
            KioskState::Cancelled {
                amount,
                reference: reference(),
                by: CancelledBy::Kiosk,
            },
        ),
        (
            "timed_out",
            KioskState::TimedOut {
                amount,
                reference: reference(),
            },
        ),
        (
            "failed",
            KioskState::Failed {
                amount,
                reference: reference(),
                kind: FailKind::Technical,
            },
        ),
        (
            "failed_terminal_offline",
            KioskState::Failed {
                amount,
                reference: reference(),
                kind: FailKind::TerminalOffline,
            },
        ),
        (
            "failed_rejected",
            KioskState::Failed {
                amount,
                reference: reference(),
                kind: FailKind::Rejected,
            },
        ),
        (
            "conflict",
            KioskState::Conflict {
                amount,
                reference: reference(),
            },
        ),
        (
            "checking",
            KioskState::Checking {
                reference: reference(),
            },
        ),
        (
            "out_of_service",
            KioskState::OutOfService {
                code: "E-PANEL-SEND".into(),
            },
        ),
        ("technician", KioskState::Technician),
    ]
}

/// The receipt link the sample screens use: a realistic length for the QR code.
pub const SAMPLE_RECEIPT_URL: &str = "https://kvittering.example.no/r/{transaction_id}";

/// Every sample screen in `lang` at `now`: one per [`sample_states`] entry, plus
/// `approved_receipt`, the approved screen with a receipt QR code from [`SAMPLE_RECEIPT_URL`].
pub fn sample_screens(lang: Language, now: Instant) -> Vec<(&'static str, Screen)> {
    let plain = Settings {
        lang,
        size: Size::new(240, 320),
        receipt_url: None,
    };
    let mut screens = Vec::new();
    for (name, state) in sample_states(now) {
        screens.push((name, plain.screen(&state, now)));
        if name == "approved" {
            let with_receipt = Settings {
                receipt_url: ReceiptUrl::parse(SAMPLE_RECEIPT_URL).ok(),
                ..plain.clone()
            };
            screens.push(("approved_receipt", with_receipt.screen(&state, now)));
        }
    }
    screens
}

/// Draws `screen` on a panel of `size`, as PNG bytes.
pub fn render_screen_png(screen: &Screen, size: Size) -> Vec<u8> {
    let mut frame = Frame::new(size.width, size.height);
    let Ok(()) = draw(screen, &mut frame);
    frame.to_png()
}

/// Draws the test pattern ([`pattern`]) on a panel of `size`, as PNG bytes.
pub fn render_pattern_png(size: Size) -> Vec<u8> {
    let mut frame = Frame::new(size.width, size.height);
    let Ok(()) = pattern::draw(&mut frame);
    frame.to_png()
}

/// Draws `state` as the customer would see it at `now` on a panel of `size`, as PNG bytes.
pub fn render_png(state: &KioskState, lang: Language, size: Size, now: Instant) -> Vec<u8> {
    let mut frame = Frame::new(size.width, size.height);
    let Ok(()) = draw(&screen_for(state, lang, now), &mut frame);
    frame.to_png()
}
