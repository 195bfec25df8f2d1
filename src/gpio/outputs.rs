//! Handshake outputs to the machine the kiosk sits in: busy/inhibit and vend-approved.
//!
//! Like the display, the outputs only observe the published [`KioskState`]; they never drive
//! the payment flow. A watch channel may skip intermediate states, which is harmless here: the
//! busy line follows the latest state, and the vend pulse is keyed by the transaction id of an
//! `Approved` state that stays published for the whole result screen.
//!
//! - **busy** is asserted whenever the kiosk cannot take a new cart: starting, a payment
//!   running (creating, waiting for the card, processing, checking an unknown outcome), the
//!   result screen of a payment, and while card payment is unavailable. It is released only when
//!   the kiosk is idle. A brief "refused" screen leaves it as it was, so refusing a cart does
//!   not glitch the line. At shutdown it is asserted and left so.
//! - **vend** is pulsed for `pulse_ms` once per captured payment: a republished `Approved`
//!   state with the same transaction id does not pulse again.
//!
//! A technician's `test gpio` may flip either line for [`TOGGLE_FOR`] ([`Toggle`]), after a
//! typed confirmation at the console; the state decides the level again right after.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};
use tracing::{info, warn};

use super::lines::OutputLine;
use crate::state::KioskState;

/// Whether the busy line should be asserted in `state`; `None` leaves it as it is.
pub fn busy_level(state: &KioskState) -> Option<bool> {
    match state {
        KioskState::Idle => Some(false),
        KioskState::Refused { .. } => None,
        KioskState::Starting
        | KioskState::Unavailable { .. }
        | KioskState::Creating { .. }
        | KioskState::WaitingForCard { .. }
        | KioskState::Processing { .. }
        | KioskState::Checking { .. }
        | KioskState::Approved { .. }
        | KioskState::Declined { .. }
        | KioskState::Cancelled { .. }
        | KioskState::TimedOut { .. }
        | KioskState::Failed { .. }
        | KioskState::Conflict { .. }
        | KioskState::OutOfService { .. }
        | KioskState::Technician => Some(true),
    }
}

/// An output line with its logic sense, writing only on change.
pub struct Output {
    line: Box<dyn OutputLine>,
    pin: u32,
    active_low: bool,
    asserted: Option<bool>,
}

impl Output {
    /// Wraps a claimed line; `active_low` means asserted is driven low.
    pub fn new(line: Box<dyn OutputLine>, pin: u32, active_low: bool) -> Output {
        Output {
            line,
            pin,
            active_low,
            asserted: None,
        }
    }

    /// The electrical level that means `asserted`, for claiming the line at that level.
    pub fn level(active_low: bool, asserted: bool) -> bool {
        asserted != active_low
    }

    /// The line.
    pub fn pin(&self) -> u32 {
        self.pin
    }

    /// Whether it is asserted, as last written; `None` before a write succeeded.
    pub fn asserted(&self) -> Option<bool> {
        self.asserted
    }

    /// Asserts or releases the line. A driver error is logged: a handshake line that cannot be
    /// written must not stop payments, and the next change tries again.
    pub fn set(&mut self, asserted: bool) {
        if self.asserted == Some(asserted) {
            return;
        }
        match self.line.set_high(Output::level(self.active_low, asserted)) {
            Ok(()) => self.asserted = Some(asserted),
            Err(e) => {
                self.asserted = None;
                warn!(pin = self.pin, error = %e, "cannot drive a GPIO handshake line");
            }
        }
    }
}

/// How long a technician's toggle holds an output at the other level.
pub const TOGGLE_FOR: Duration = Duration::from_secs(1);

/// A technician's `test gpio` asks to flip the output on `line` for [`TOGGLE_FOR`]; then the
/// state decides its level again.
#[derive(Debug)]
pub struct Toggle {
    /// The output's line.
    pub line: u32,
    /// Whether the line was asserted during the toggle; `None`: no output on that line.
    pub done: oneshot::Sender<Option<bool>>,
}

/// The vend-approved output and its pulse length.
pub struct Vend {
    /// The line.
    pub output: Output,
    /// How long it stays asserted after a capture.
    pub pulse: Duration,
}

/// Drives the handshake outputs from the kiosk's state until `shutdown` completes or the state
/// channel closes; then asserts busy and ends any vend pulse.
pub async fn run(
    mut states: watch::Receiver<KioskState>,
    mut busy: Option<Output>,
    mut vend: Option<Vend>,
    mut toggles: mpsc::Receiver<Toggle>,
    shutdown: impl Future<Output = ()>,
) {
    let mut toggles_open = true;
    let mut last_vended: Option<String> = None;
    let mut vend_until: Option<Instant> = None;
    tokio::pin!(shutdown);
    let state = states.borrow_and_update().clone();
    apply(
        &state,
        &mut busy,
        &mut vend,
        &mut last_vended,
        &mut vend_until,
    );
    loop {
        let pulse_end = vend_until.unwrap_or_else(Instant::now);
        tokio::select! {
            () = &mut shutdown => break,
            changed = states.changed() => {
                if changed.is_err() {
                    break;
                }
                let state = states.borrow_and_update().clone();
                apply(&state, &mut busy, &mut vend, &mut last_vended, &mut vend_until);
            }
            () = sleep_until(pulse_end), if vend_until.is_some() => {
                vend_until = None;
                if let Some(v) = vend.as_mut() {
                    v.output.set(false);
                }
            }
            toggle = toggles.recv(), if toggles_open => match toggle {
                Some(Toggle { line, done }) => {
                    let output = busy
                        .iter_mut()
                        .chain(vend.iter_mut().map(|v| &mut v.output))
                        .find(|o| o.pin() == line);
                    let Some(output) = output else {
                        let _ = done.send(None);
                        continue;
                    };
                    let flipped = !output.asserted().unwrap_or(false);
                    info!(line, asserted = flipped, "output toggled by a technician's test");
                    output.set(flipped);
                    // The machine reads the line while the loop waits: a second is long
                    // enough to see, and the state is applied again right after.
                    tokio::time::sleep(TOGGLE_FOR).await;
                    output.set(!flipped);
                    let state = states.borrow_and_update().clone();
                    apply(&state, &mut busy, &mut vend, &mut last_vended, &mut vend_until);
                    let _ = done.send(Some(flipped));
                }
                None => toggles_open = false,
            },
        }
    }
    if let Some(v) = vend.as_mut() {
        v.output.set(false);
    }
    if let Some(b) = busy.as_mut() {
        b.set(true);
    }
}

fn apply(
    state: &KioskState,
    busy: &mut Option<Output>,
    vend: &mut Option<Vend>,
    last_vended: &mut Option<String>,
    vend_until: &mut Option<Instant>,
) {
    if let (Some(b), Some(level)) = (busy.as_mut(), busy_level(state)) {
        b.set(level);
    }
    let (
        Some(v),
        KioskState::Approved {
            transaction_id,
            amount,
            ..
        },
    ) = (vend.as_mut(), state)
    else {
        return;
    };
    if last_vended.as_deref() == Some(transaction_id.as_str()) {
        return;
    }
    info!(%transaction_id, %amount, "payment captured: pulsing vend-approved");
    *last_vended = Some(transaction_id.clone());
    v.output.set(true);
    *vend_until = Some(Instant::now() + v.pulse);
}
