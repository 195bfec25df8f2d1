//! Talking to systemd: readiness, `STATUS=` lines and the watchdog, proven by the payment flow.
//!
//! The unit (`systemd/kioskpay.service`) runs the daemon with `Type=notify` and `WatchdogSec=`.
//! Three promises follow from that, and this module keeps them:
//!
//! - **READY=1 means "taking carts".** The flow signals readiness through its [`Heartbeat`] only
//!   after every unfinished payment in the journal has been resolved and the first health check
//!   has run. Until then systemd keeps the unit in `activating`, and `systemctl start` waits.
//!   Recovery can take long (Dintero unreachable at boot); while the flow keeps beating, the
//!   start timeout is extended with `EXTEND_TIMEOUT_USEC=`, so a slow recovery is not killed but
//!   a hung one is.
//! - **WATCHDOG=1 means "the payment loop is turning".** The pings are not sent by a timer of
//!   their own: the flow beats from inside its select loops, and [`supervise`] forwards a ping only
//!   if the flow beat since the last check. A flow stuck on an await that never returns stops the
//!   pings, and systemd restarts the service (`Restart=always`); recovery then resolves the
//!   payment it was on.
//! - **STATUS= says what the kiosk is doing** (`systemctl status kioskpay` shows
//!   `Status: "idle"`), taken from the published [`KioskState`].
//!
//! Without `NOTIFY_SOCKET` (run by hand, in tests) nothing is sent; without `WATCHDOG_USEC` no
//! pings are sent and the flow's beats cost one atomic store every few seconds.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tracing::{debug, error, warn};

use crate::state::KioskState;

/// How often the flow beats when systemd gave no watchdog period (the beats then feed only the
/// start-timeout extension and the metrics).
const DEFAULT_BEAT: Duration = Duration::from_secs(5);

/// The flow beats this many times per watchdog period: often enough that a flow busy for a
/// whole Dintero call (up to `call_timeout_ms`, 15 s by default) still beats several times per
/// check.
const BEATS_PER_PERIOD: u32 = 12;

/// The supervisor checks the beats this many times per watchdog period; a ping every third of
/// the period leaves room for one late check before systemd gives up.
const CHECKS_PER_PERIOD: u32 = 3;

/// Without a watchdog the supervisor checks this often, six beats' worth: a check at the beat's
/// own period would race it and report a healthy flow as stalled every few seconds. Longer than
/// any single Dintero call (`call_timeout_ms`, 15 s by default), so only a real stall warns.
const DEFAULT_CHECK: Duration = Duration::from_secs(30);

/// What the flow has proven so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pulse {
    /// Beats since start; it only grows while the flow's loop turns.
    pub beats: u64,
    /// Recovery is over and the kiosk takes carts.
    pub ready: bool,
}

/// The flow's side: it beats from its select loops and says when recovery is over.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    pulse: watch::Sender<Pulse>,
    period: Duration,
}

/// The supervisor's side of a [`Heartbeat`].
#[derive(Clone, Debug)]
pub struct Liveness {
    pulse: watch::Receiver<Pulse>,
}

impl Heartbeat {
    /// A heartbeat the flow beats every `period` (see [`beat_period`]).
    pub fn new(period: Duration) -> (Heartbeat, Liveness) {
        let (tx, rx) = watch::channel(Pulse::default());
        (
            Heartbeat {
                pulse: tx,
                period: period.max(Duration::from_millis(10)),
            },
            Liveness { pulse: rx },
        )
    }

    /// How often the flow should beat.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The flow's loop turned.
    pub fn beat(&self) {
        self.pulse
            .send_modify(|p| p.beats = p.beats.wrapping_add(1));
    }

    /// Recovery is over: the kiosk takes carts from now on.
    pub fn ready(&self) {
        self.pulse.send_if_modified(|p| {
            let changed = !p.ready;
            p.ready = true;
            changed
        });
    }
}

impl Liveness {
    /// What the flow has proven so far.
    pub fn pulse(&self) -> Pulse {
        *self.pulse.borrow()
    }

    /// Waits until the flow says it is ready; returns at once if it already is. Returns `false`
    /// if the flow is gone without ever being ready.
    pub async fn ready(&mut self) -> bool {
        self.pulse.wait_for(|p| p.ready).await.is_ok()
    }
}

/// How often the flow should beat for a watchdog of `watchdog` (or none).
pub fn beat_period(watchdog: Option<Duration>) -> Duration {
    match watchdog {
        Some(w) => (w / BEATS_PER_PERIOD).max(Duration::from_millis(10)),
        None => DEFAULT_BEAT,
    }
}

/// The watchdog period systemd asked for (`WatchdogSec=`), if any.
pub fn watchdog_from_env() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// One notification to the service manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// `READY=1`.
    Ready,
    /// `STATUS=…`.
    Status(String),
    /// `WATCHDOG=1`.
    Watchdog,
    /// `EXTEND_TIMEOUT_USEC=…`: recovery is still making progress.
    ExtendTimeout(Duration),
    /// `STOPPING=1`.
    Stopping,
    /// `RELOADING=1` (then `READY=1` when the new config is in force).
    Reloading,
}

/// Where notifications go: systemd's socket in the daemon, a recorder in tests.
pub trait Notifier: Send + 'static {
    /// Sends one notification; failures are the notifier's to log.
    fn send(&mut self, message: Message);
}

/// The real thing: `sd_notify(3)` over `NOTIFY_SOCKET`, a no-op when the variable is unset.
#[derive(Debug, Default)]
pub struct SdNotify {
    /// A failing socket is logged once, not on every ping.
    failed: bool,
}

impl Notifier for SdNotify {
    fn send(&mut self, message: Message) {
        use sd_notify::NotifyState;
        let usec;
        let state = match &message {
            Message::Ready => NotifyState::Ready,
            Message::Status(s) => NotifyState::Status(s),
            Message::Watchdog => NotifyState::Watchdog,
            Message::ExtendTimeout(d) => {
                usec = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
                NotifyState::ExtendTimeoutUsec(usec)
            }
            Message::Stopping => NotifyState::Stopping,
            Message::Reloading => NotifyState::Reloading,
        };
        match sd_notify::notify(&[state]) {
            Ok(()) => self.failed = false,
            Err(e) if !self.failed => {
                self.failed = true;
                error!(error = %e, ?message, "cannot notify systemd (NOTIFY_SOCKET); the watchdog may restart kioskpay");
            }
            Err(_) => {}
        }
    }
}

/// Keeps systemd informed until `shutdown` completes: READY=1 once the flow is ready, a
/// `STATUS=` line per published state, and a watchdog ping per check in which the flow beat.
pub async fn supervise<N: Notifier>(
    mut liveness: Liveness,
    mut states: watch::Receiver<KioskState>,
    watchdog: Option<Duration>,
    mut notifier: N,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let check_every = watchdog.map_or(DEFAULT_CHECK, |w| {
        (w / CHECKS_PER_PERIOD).max(Duration::from_millis(10))
    });
    let mut checks = interval_at(Instant::now() + check_every, check_every);
    checks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = liveness.pulse();
    let mut ready = false;
    let mut stalled_since: Option<Instant> = None;
    let mut status = states.borrow_and_update().name();
    notifier.send(Message::Status(status.into()));
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                notifier.send(Message::Stopping);
                notifier.send(Message::Status("stopping".into()));
                return;
            }
            is_ready = liveness.ready(), if !ready => {
                if !is_ready {
                    return;
                }
                ready = true;
                status = states.borrow_and_update().name();
                notifier.send(Message::Status(status.into()));
                notifier.send(Message::Ready);
                debug!("told systemd the kiosk is ready");
            }
            changed = states.changed() => {
                if changed.is_err() {
                    return;
                }
                let name = states.borrow_and_update().name();
                if name != status {
                    status = name;
                    notifier.send(Message::Status(status.into()));
                }
            }
            _ = checks.tick() => {
                let now = liveness.pulse();
                if now.beats != last.beats {
                    last = now;
                    if let Some(at) = stalled_since.take() {
                        warn!(stalled_ms = at.elapsed().as_millis() as u64, "the payment flow is turning again");
                    }
                    match (watchdog, ready) {
                        (Some(_), true) => notifier.send(Message::Watchdog),
                        (Some(w), false) => notifier.send(Message::ExtendTimeout(w)),
                        (None, _) => {}
                    }
                } else if stalled_since.is_none() {
                    stalled_since = Some(Instant::now());
                    warn!("the payment flow has not turned since the last check; watchdog pings are held back");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Message>>>);

    impl Notifier for Recorder {
        fn send(&mut self, message: Message) {
            self.0.lock().unwrap().push(message);
        }
    }

    impl Recorder {
        fn take(&self) -> Vec<Message> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    fn count(messages: &[Message], wanted: &Message) -> usize {
        messages.iter().filter(|m| *m == wanted).count()
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_flow_stops_the_watchdog_pings() {
        let watchdog = Duration::from_secs(30);
        let (heartbeat, liveness) = Heartbeat::new(beat_period(Some(watchdog)));
        let (_state_tx, states) = watch::channel(KioskState::Idle);
        let recorder = Recorder::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(supervise(
            liveness,
            states,
            Some(watchdog),
            recorder.clone(),
            stop.clone().cancelled_owned(),
        ));
        heartbeat.ready();
        let beating = {
            let heartbeat = heartbeat.clone();
            tokio::spawn(async move {
                loop {
                    heartbeat.beat();
                    tokio::time::sleep(heartbeat.period()).await;
                }
            })
        };
        tokio::time::sleep(watchdog * 2).await;
        let sent = recorder.take();
        assert!(sent.contains(&Message::Ready), "{sent:?}");
        assert!(count(&sent, &Message::Watchdog) >= 5, "{sent:?}");

        beating.abort();
        tokio::time::sleep(watchdog * 2).await;
        let sent = recorder.take();
        assert!(
            count(&sent, &Message::Watchdog) <= 1,
            "a stuck flow must not be pinged for: {sent:?}"
        );

        heartbeat.beat();
        tokio::time::sleep(watchdog).await;
        assert!(recorder.take().contains(&Message::Watchdog));
        stop.cancel();
        task.await.unwrap();
        assert_eq!(
            recorder.take(),
            vec![Message::Stopping, Message::Status("stopping".into())]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ready_waits_for_the_flow_and_recovery_extends_the_start_timeout() {
        let watchdog = Duration::from_secs(30);
        let (heartbeat, liveness) = Heartbeat::new(beat_period(Some(watchdog)));
        let (state_tx, states) = watch::channel(KioskState::Starting);
        let recorder = Recorder::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(supervise(
            liveness,
            states,
            Some(watchdog),
            recorder.clone(),
            stop.clone().cancelled_owned(),
        ));
        state_tx.send_replace(KioskState::Checking {
            reference: "kiosk-1-20261124-000001".into(),
        });
        for _ in 0..24 {
            heartbeat.beat();
            tokio::time::sleep(heartbeat.period()).await;
        }
        let sent = recorder.take();
        assert!(!sent.contains(&Message::Ready), "{sent:?}");
        assert!(!sent.contains(&Message::Watchdog), "{sent:?}");
        assert!(sent.contains(&Message::ExtendTimeout(watchdog)), "{sent:?}");
        assert!(
            sent.contains(&Message::Status("checking".into())),
            "{sent:?}"
        );

        state_tx.send_replace(KioskState::Idle);
        heartbeat.ready();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let sent = recorder.take();
        let ready_at = sent.iter().position(|m| *m == Message::Ready).unwrap();
        assert_eq!(sent[ready_at - 1], Message::Status("idle".into()));
        stop.cancel();
        task.await.unwrap();
    }
}
