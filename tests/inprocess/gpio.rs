//! The GPIO unit through its seam: a fake backend that injects edges and records output levels
//! with their (paused) tokio time, the shipped pin maps, the pulse decoder's properties, and a
//! whole kiosk paid for by a button press against the emulator.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kioskpay::cart::CartSource;
use kioskpay::config::{Config, GpioConfig};
use kioskpay::daemon::{InputWiring, Kiosk};
use kioskpay::dintero::client::{Client, ClientConfig};
use kioskpay::gpio::outputs::busy_level;
use kioskpay::gpio::pulse::{Decoded, PulseDecoder, PulseTiming, Rejection};
use kioskpay::gpio::{Edge, GpioBackend, GpioError, GpioUnit, InputRequest, OutputLine};
use kioskpay::input::InputEvent;
use kioskpay::money::{Currency, Money};
use kioskpay::payment::flow::Command;
use kioskpay::payment::Final;
use kioskpay::state::{CancelledBy, KioskState, RefusalReason, UnavailableReason};
use proptest::prelude::*;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// The fake backend
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct FakeState {
    edges: Option<mpsc::Sender<Edge>>,
    watched: Vec<InputRequest>,
    /// Every level written to an output: (line, high, when).
    levels: Vec<(u32, bool, Instant)>,
}

/// A GPIO backend whose lines are the test's: edges are sent by the test with "kernel"
/// timestamps taken from tokio's clock, output levels are recorded.
#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<FakeState>>,
    epoch: Instant,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            state: Arc::default(),
            epoch: Instant::now(),
        }
    }

    /// An edge now on `line`, electrically rising or falling.
    async fn edge(&self, line: u32, rising: bool) {
        let tx = self
            .state
            .lock()
            .unwrap()
            .edges
            .clone()
            .expect("inputs watched");
        let at = Instant::now() - self.epoch;
        tx.send(Edge { line, rising, at }).await.unwrap();
    }

    /// Drives an active-low line through `(active, ms to hold)` steps.
    async fn active_low(&self, line: u32, steps: &[(bool, u64)]) {
        for &(active, hold) in steps {
            self.edge(line, !active).await;
            sleep(Duration::from_millis(hold)).await;
        }
    }

    /// A clean press of an active-low button with contact bounce on both edges.
    async fn press(&self, line: u32) {
        self.active_low(
            line,
            &[
                (true, 1),
                (false, 1),
                (true, 2),
                (false, 1),
                (true, 80),
                (false, 1),
                (true, 1),
                (false, 100),
            ],
        )
        .await;
    }

    fn levels(&self, line: u32) -> Vec<(bool, Instant)> {
        let state = self.state.lock().unwrap();
        let levels = state.levels.iter().filter(|(l, _, _)| *l == line);
        levels.map(|&(_, high, at)| (high, at)).collect()
    }
}

impl GpioBackend for Fake {
    fn watch(&mut self, inputs: &[InputRequest]) -> Result<mpsc::Receiver<Edge>, GpioError> {
        let (tx, rx) = mpsc::channel(256);
        let mut state = self.state.lock().unwrap();
        state.edges = Some(tx);
        state.watched = inputs.to_vec();
        Ok(rx)
    }

    fn output(&mut self, line: u32, high: bool) -> Result<Box<dyn OutputLine>, GpioError> {
        self.state
            .lock()
            .unwrap()
            .levels
            .push((line, high, Instant::now()));
        Ok(Box::new(FakeOut {
            line,
            state: self.state.clone(),
        }))
    }
}

struct FakeOut {
    line: u32,
    state: Arc<Mutex<FakeState>>,
}

impl OutputLine for FakeOut {
    fn set_high(&mut self, high: bool) -> Result<(), GpioError> {
        let mut state = self.state.lock().unwrap();
        let same = state.levels.iter().rev().find(|(l, _, _)| *l == self.line);
        if same.map(|&(_, h, _)| h) != Some(high) {
            state.levels.push((self.line, high, Instant::now()));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Config and pin maps
// ---------------------------------------------------------------------------------------------

fn board(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("board/pins/{name}.toml"))
}

fn config_with(dir: &Path, gpio: &str) -> Result<Config, String> {
    let path = support::write_config(dir, "http://127.0.0.1:9", gpio);
    Config::load(&path).map_err(|e| e.to_string())
}

fn gpio_config(gpio: &str) -> GpioConfig {
    let dir = tempfile::tempdir().unwrap();
    config_with(dir.path(), gpio).unwrap().gpio
}

#[test]
fn shipped_pin_maps_are_valid_configs() {
    let hat = gpio_config(&format!(
        "[input]\nkind = \"gpio\"\n[gpio]\nbackend = \"rppal\"\nboard = {:?}\n",
        board("display-hat-mini")
    ));
    let pins: Vec<_> = hat.buttons.iter().flatten().map(|b| b.pin).collect();
    assert_eq!(pins, [5, 6, 16]);
    assert!(hat.buttons.iter().flatten().all(|b| b.active_low));
    assert_eq!(
        hat.cancel.as_ref().map(|c| (c.pin, c.active_low)),
        Some((24, true))
    );

    let vending = gpio_config(&format!(
        "[input]\nkind = \"gpio\"\n[gpio]\nboard = {:?}\n",
        board("vending-interface")
    ));
    let pulse = vending.pulse.unwrap();
    assert_eq!((pulse.pin, pulse.unit, pulse.active_low), (17, 100, true));
    assert_eq!(vending.busy.unwrap().pin, 27);
    assert_eq!(vending.vend.unwrap().pin, 22);
}

#[test]
fn config_keys_win_over_the_pin_map_and_relative_maps_are_found_beside_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(board("display-hat-mini"), dir.path().join("hat.toml")).unwrap();
    let config = config_with(
        dir.path(),
        "[gpio]\nenabled = true\nboard = \"hat.toml\"\n[[gpio.buttons]]\npin = 5\namount = 4200\nactive_low = true\n",
    )
    .unwrap();
    assert!(config.gpio_enabled());
    let buttons = config.gpio.buttons.unwrap();
    assert_eq!(buttons.len(), 1);
    assert_eq!(buttons[0].amount, 4200);
    assert_eq!(
        config.gpio.cancel.unwrap().pin,
        24,
        "the map's cancel stays"
    );
}

#[test]
fn gpio_config_errors_name_the_key_the_value_and_what_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let pulse = |extra: &str| {
        format!("[input]\nkind = \"gpio\"\n[gpio.pulse]\npin = 17\nunit = 100\n{extra}\n")
    };
    let cases = [
        ("[input]\nkind = \"gpio\"\n".to_string(), "input.kind = \"gpio\": expected [[gpio.buttons]] or [gpio.pulse]"),
        ("[gpio]\nenabled = true\n".into(), "gpio.enabled = true: expected at least one of"),
        (
            "[input]\nkind = \"gpio\"\n[[gpio.buttons]]\npin = 5\namount = 0\n".into(),
            "gpio.buttons.amount = 0 (pin 5): expected a positive amount",
        ),
        (
            "[input]\nkind = \"gpio\"\n[[gpio.buttons]]\npin = 5\namount = 2000000\n".into(),
            "up to kiosk.max_amount (1000000)",
        ),
        (
            "[input]\nkind = \"gpio\"\n[[gpio.buttons]]\npin = 5\namount = 100\ndebounce_ms = 0\n".into(),
            "gpio.buttons.debounce_ms = 0: expected 1 to 1000 milliseconds",
        ),
        (
            "[input]\nkind = \"gpio\"\n[[gpio.buttons]]\npin = 5\namount = 100\n[gpio.cancel]\npin = 5\n".into(),
            "gpio.pin = 5: expected each line used once; gpio.buttons and gpio.cancel both use it",
        ),
        (
            "[input]\nkind = \"gpio\"\n[gpio]\nbackend = \"rppal\"\n[[gpio.buttons]]\npin = 60\namount = 100\n".into(),
            "gpio.pin = 60: expected a BCM GPIO number from 0 to 53",
        ),
        (
            "[input]\nkind = \"gpio\"\n[gpio]\nchip = \"gpiochip0\"\n[[gpio.buttons]]\npin = 5\namount = 100\n".into(),
            "gpio.chip = \"gpiochip0\": expected an absolute path",
        ),
        (pulse("min_width_ms = 0"), "gpio.pulse.min_width_ms = 0"),
        (pulse("max_width_ms = 20"), "gpio.pulse.max_width_ms = 20: expected more than gpio.pulse.min_width_ms"),
        (pulse("gap_ms = 10"), "gpio.pulse.gap_ms = 10"),
        (pulse("max_pulses = 0"), "gpio.pulse.max_pulses = 0"),
        (
            "[input]\nkind = \"gpio\"\n[gpio]\nboard = \"missing.toml\"\n".into(),
            "gpio.board = \"missing.toml\": expected a readable pin map file",
        ),
        (
            "[input]\nkind = \"gpio\"\n[gpio]\nbackend = \"wiringpi\"\n".into(),
            "unknown variant `wiringpi`, expected `cdev` or `rppal`",
        ),
        (
            "[gpio]\nenabled = true\n[gpio.vend]\npin = 22\npulse_ms = 1\n".into(),
            "gpio.vend.pulse_ms = 1: expected 10 to 10000 milliseconds",
        ),
    ];
    for (gpio, want) in cases {
        let msg = config_with(dir.path(), &gpio).unwrap_err();
        assert!(msg.contains(want), "{gpio}\n=> {msg}");
    }
    let bad_map = dir.path().join("bad.toml");
    std::fs::write(&bad_map, "[[buttons]]\npin = 5\nprice = 100\n").unwrap();
    let msg =
        config_with(dir.path(), "[gpio]\nenabled = true\nboard = \"bad.toml\"\n").unwrap_err();
    assert!(
        msg.contains("bad.toml") && msg.contains("unknown field `price`"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// Buttons, cancel and pulses through the fake lines
// ---------------------------------------------------------------------------------------------

struct Unit {
    fake: Fake,
    inputs: mpsc::Receiver<InputEvent>,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<KioskState>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start_unit(gpio: &str) -> Unit {
    let config = gpio_config(gpio);
    let fake = Fake::new();
    let unit = GpioUnit::open(&config, Currency::NOK, Box::new(fake.clone())).unwrap();
    let (in_tx, inputs) = mpsc::channel(16);
    let (cmd_tx, commands) = mpsc::channel(16);
    let (state, states) = watch::channel(KioskState::Starting);
    let stop = CancellationToken::new();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        unit.run(in_tx, cmd_tx, states, token.cancelled_owned())
            .await;
    });
    Unit {
        fake,
        inputs,
        commands,
        state,
        stop,
        task,
    }
}

fn hat() -> String {
    format!(
        "[input]\nkind = \"gpio\"\n[gpio]\nboard = {:?}\n",
        board("display-hat-mini")
    )
}

fn cart(minor: u64) -> InputEvent {
    InputEvent::Cart(kioskpay::cart::Cart {
        amount: Money::new(minor, Currency::NOK),
        reference: None,
        source: CartSource::Gpio,
    })
}

#[tokio::test(start_paused = true)]
async fn bouncy_button_presses_become_one_cart_each_and_spikes_none() {
    let mut u = start_unit(&hat());
    {
        let state = u.fake.state.lock().unwrap();
        let lines: Vec<_> = state.watched.iter().map(|r| r.line).collect();
        assert_eq!(lines, [5, 6, 16, 24]);
        assert!(state
            .watched
            .iter()
            .all(|r| r.pull == kioskpay::config::Pull::Up
                && r.debounce == Some(Duration::from_millis(20))));
    }
    u.fake.press(5).await;
    assert_eq!(u.inputs.try_recv().unwrap(), cart(2000));
    assert!(u.inputs.try_recv().is_err(), "one press, one cart");

    // Spikes shorter than the debounce period, alone and in a burst.
    u.fake.active_low(6, &[(true, 5), (false, 100)]).await;
    u.fake
        .active_low(6, &[(true, 3), (false, 3), (true, 3), (false, 100)])
        .await;
    assert!(u.inputs.try_recv().is_err(), "spikes are not presses");

    // Held for a minute: still one cart.
    u.fake.active_low(16, &[(true, 60_000), (false, 100)]).await;
    assert_eq!(u.inputs.try_recv().unwrap(), cart(10_000));
    assert!(u.inputs.try_recv().is_err());

    // Two buttons in turn.
    u.fake.press(16).await;
    u.fake.press(5).await;
    assert_eq!(u.inputs.try_recv().unwrap(), cart(10_000));
    assert_eq!(u.inputs.try_recv().unwrap(), cart(2000));
    assert!(u.commands.try_recv().is_err(), "no button here cancels");
    u.stop.cancel();
    u.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_cancel_button_sends_cancel_to_the_flow_not_a_cart() {
    let mut u = start_unit(&hat());
    u.fake.press(24).await;
    assert_eq!(u.commands.try_recv().unwrap(), Command::Cancel);
    assert!(u.commands.try_recv().is_err());
    assert!(u.inputs.try_recv().is_err());
    u.fake.active_low(24, &[(true, 4), (false, 100)]).await;
    assert!(u.commands.try_recv().is_err(), "a spike does not cancel");
    u.stop.cancel();
    u.task.await.unwrap();
}

fn vending() -> String {
    format!(
        "[input]\nkind = \"gpio\"\n[gpio]\nboard = {:?}\n",
        board("vending-interface")
    )
}

#[tokio::test(start_paused = true)]
async fn a_pulse_train_becomes_a_cart_and_a_stuck_line_is_refused() {
    let mut u = start_unit(&vending());
    {
        let state = u.fake.state.lock().unwrap();
        assert_eq!(
            state.watched[0].debounce, None,
            "the decoder needs raw edges"
        );
        assert_eq!(state.watched[0].pull, kioskpay::config::Pull::Off);
    }
    // 7 pulses of 50 ms with 50 ms pauses, a glitch in a pause and a bounce in a pulse.
    for i in 0..7 {
        if i == 3 {
            u.fake
                .active_low(17, &[(true, 40), (false, 1), (true, 10)])
                .await;
        } else {
            u.fake.active_low(17, &[(true, 50)]).await;
        }
        if i == 5 {
            u.fake
                .active_low(17, &[(false, 20), (true, 2), (false, 30)])
                .await;
        } else {
            u.fake.active_low(17, &[(false, 50)]).await;
        }
    }
    assert!(
        u.inputs.try_recv().is_err(),
        "not before the end-of-train gap"
    );
    sleep(Duration::from_millis(600)).await;
    assert_eq!(u.inputs.try_recv().unwrap(), cart(700));

    // Stuck active: refused as soon as it is too long, nothing charged when it recovers.
    u.fake
        .active_low(17, &[(true, 5_000), (false, 1_000)])
        .await;
    match u.inputs.try_recv().unwrap() {
        InputEvent::Unreadable { reason, .. } => assert!(reason.contains("stuck"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(u.inputs.try_recv().is_err());
    u.stop.cancel();
    u.task.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Handshake outputs
// ---------------------------------------------------------------------------------------------

fn approved(tx: &str) -> KioskState {
    KioskState::Approved {
        amount: Money::new(2000, Currency::NOK),
        reference: "kiosk-1-1".into(),
        transaction_id: tx.into(),
        card: None,
    }
}

#[tokio::test(start_paused = true)]
async fn busy_follows_the_state_and_vend_pulses_once_per_transaction() {
    // Busy active low (asserted = 0 V), vend active high.
    let u = start_unit(
        "[gpio]\nenabled = true\n[gpio.busy]\npin = 27\nactive_low = true\n[gpio.vend]\npin = 22\npulse_ms = 300\n",
    );
    let t0 = Instant::now();
    let settle = || sleep(Duration::from_millis(10));
    settle().await;
    assert_eq!(
        u.fake.levels(27),
        [(false, t0)],
        "claimed asserted while starting"
    );
    assert_eq!(u.fake.levels(22), [(false, t0)], "vend claimed released");

    u.state.send_replace(KioskState::Idle);
    settle().await;
    u.state.send_replace(KioskState::Refused {
        reason: RefusalReason::ZeroAmount,
    });
    settle().await;
    assert_eq!(u.fake.levels(27).len(), 2, "refused leaves busy as it was");
    assert!(u.fake.levels(27)[1].0, "idle releases busy");
    u.state.send_replace(KioskState::Creating {
        amount: Money::new(2000, Currency::NOK),
        reference: "kiosk-1-1".into(),
    });
    settle().await;
    assert!(!u.fake.levels(27)[2].0, "a payment asserts busy");

    let t_approved = Instant::now();
    u.state.send_replace(approved("T1"));
    settle().await;
    // The flow republishes the same state after a brief refusal: no second pulse.
    u.state.send_replace(KioskState::Refused {
        reason: RefusalReason::Busy,
    });
    settle().await;
    u.state.send_replace(approved("T1"));
    sleep(Duration::from_secs(2)).await;
    assert_eq!(
        u.fake.levels(22)[1..],
        [
            (true, t_approved),
            (false, t_approved + Duration::from_millis(300))
        ],
        "exactly one pulse of pulse_ms"
    );
    assert_eq!(
        u.fake.levels(27).len(),
        3,
        "busy stays asserted on the result"
    );

    u.state.send_replace(KioskState::Idle);
    settle().await;
    u.state.send_replace(KioskState::Unavailable {
        reason: UnavailableReason::ApiUnreachable,
    });
    settle().await;
    let busy: Vec<bool> = u.fake.levels(27).iter().map(|l| l.0).collect();
    assert_eq!(busy, [false, true, false, true, false]);

    // Another payment pulses again; shutdown in the middle of the pulse ends it and asserts busy.
    u.state.send_replace(approved("T2"));
    settle().await;
    u.stop.cancel();
    u.task.await.unwrap();
    let vend: Vec<bool> = u.fake.levels(22).iter().map(|l| l.0).collect();
    assert_eq!(vend, [false, true, false, true, false]);
    assert!(
        !u.fake.levels(27).last().unwrap().0,
        "busy asserted (low) at exit"
    );
}

#[test]
fn busy_is_released_only_when_idle() {
    let amount = Money::new(100, Currency::NOK);
    let r = || "r".to_string();
    let states = [
        (KioskState::Starting, Some(true)),
        (KioskState::Idle, Some(false)),
        (
            KioskState::Refused {
                reason: RefusalReason::Busy,
            },
            None,
        ),
        (
            KioskState::Unavailable {
                reason: UnavailableReason::Storage,
            },
            Some(true),
        ),
        (
            KioskState::Creating {
                amount,
                reference: r(),
            },
            Some(true),
        ),
        (
            KioskState::WaitingForCard {
                amount,
                reference: r(),
                deadline: Instant::now(),
            },
            Some(true),
        ),
        (
            KioskState::Processing {
                amount,
                reference: r(),
            },
            Some(true),
        ),
        (KioskState::Checking { reference: r() }, Some(true)),
        (approved("T"), Some(true)),
        (
            KioskState::Cancelled {
                amount,
                reference: r(),
                by: CancelledBy::Kiosk,
            },
            Some(true),
        ),
    ];
    for (state, want) in states {
        assert_eq!(busy_level(&state), want, "{}", state.name());
    }
}

// ---------------------------------------------------------------------------------------------
// Decoder properties
// ---------------------------------------------------------------------------------------------

const MIN: u64 = 20_000; // µs
const MAX: u64 = 200_000;
const GAP: u64 = 500_000;

fn timing() -> PulseTiming {
    PulseTiming {
        min_width: Duration::from_micros(MIN),
        max_width: Duration::from_micros(MAX),
        gap: Duration::from_micros(GAP),
        max_pulses: 50,
    }
}

/// Decodes `(active, µs)` edges and lets time run out; returns every output.
fn decode(edges: &[(bool, u64)]) -> Vec<Decoded> {
    let mut d = PulseDecoder::new(timing());
    let mut out = Vec::new();
    let mut last = 0;
    for &(active, at) in edges {
        out.extend(d.edge(active, Duration::from_micros(at)));
        last = at;
    }
    out.extend(d.advance(Duration::from_micros(last + 10 * GAP)));
    out
}

/// One pulse: width, then the pause after it, plus contact bounces at its start (each shorter
/// than `MIN`, together well under it).
fn pulse() -> impl Strategy<Value = (u64, u64, Vec<u64>)> {
    (
        MIN..MAX - MIN,
        MIN..GAP - 1,
        prop::collection::vec(1..MIN / 8, 0..4),
    )
}

/// Lays out a train; returns its edges and where it ends.
fn train(start: u64, pulses: &[(u64, u64, Vec<u64>)]) -> (Vec<(bool, u64)>, u64) {
    let mut edges = Vec::new();
    let mut t = start;
    for (width, pause, bounces) in pulses {
        // Bounces at the start: active/inactive flickers inside the first MIN/2 µs.
        edges.push((true, t));
        let mut b = t;
        for (i, len) in bounces.iter().enumerate() {
            b += len;
            edges.push((i % 2 == 1, b));
        }
        if bounces.len() % 2 == 1 {
            b += 1;
            edges.push((true, b));
        }
        edges.push((false, t + width));
        t += width + pause;
    }
    (edges, t)
}

proptest! {
    #[test]
    fn any_valid_train_decodes_to_its_pulse_count(
        pulses in prop::collection::vec(pulse(), 1..=50),
        start in 0u64..1_000_000_000,
    ) {
        let (edges, _) = train(start, &pulses);
        prop_assert_eq!(decode(&edges), vec![Decoded::Train { pulses: pulses.len() as u32 }]);
    }

    #[test]
    fn noise_shorter_than_min_width_never_adds_a_pulse(
        pulses in prop::collection::vec((MIN..MAX - MIN, 3 * MIN..GAP - 1), 1..=20),
        spikes in prop::collection::vec((0usize..20, 1..MIN, 0u64..1000), 0..10),
    ) {
        // A spike sits in a pause, at least MIN from the pulses around it.
        let mut edges = Vec::new();
        let mut t = 1_000;
        for (i, (width, pause)) in pulses.iter().enumerate() {
            edges.push((true, t));
            edges.push((false, t + width));
            let end = t + width;
            if let Some((_, len, pos)) = spikes.iter().find(|s| s.0 == i) {
                let room = pause - 2 * MIN - len;
                let at = end + MIN + pos * room / 1000;
                edges.push((true, at));
                edges.push((false, at + len));
            }
            t = end + pause;
        }
        prop_assert_eq!(decode(&edges), vec![Decoded::Train { pulses: pulses.len() as u32 }]);
    }

    #[test]
    fn a_too_long_pulse_anywhere_refuses_the_whole_train(
        pulses in prop::collection::vec(pulse(), 1..=20),
        which in 0usize..20,
        long in MAX..10 * MAX,
    ) {
        let mut pulses = pulses;
        let which = which % pulses.len();
        pulses[which].0 = long;
        let (edges, _) = train(0, &pulses);
        prop_assert_eq!(
            decode(&edges),
            vec![Decoded::Rejected(Rejection::TooLong { width: Duration::from_micros(MAX) })]
        );
    }

    #[test]
    fn more_than_max_pulses_is_refused(extra in 1usize..10) {
        let pulses = vec![(50_000, 50_000, Vec::new()); 50 + extra];
        let (edges, _) = train(0, &pulses);
        prop_assert_eq!(
            decode(&edges),
            vec![Decoded::Rejected(Rejection::TooManyPulses { max: 50 })]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The whole kiosk, paid for with a button
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preset_button_pays_through_the_whole_kiosk_and_pulses_vend_once() {
    let emulator = support::emulator(0.05).await;
    let base = emulator.base_url();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[payment]\npoll_interval_ms = 50\npickup_timeout_s = 1\nresult_screen_s = 1\ntimeout_s = 30\n\
         [gpio]\nenabled = true\nboard = {:?}\n\
         [[gpio.buttons]]\npin = 5\namount = 2000\nactive_low = true\n\
         [[gpio.buttons]]\npin = 6\namount = 2054\nactive_low = true\n\
         [gpio.busy]\npin = 27\n[gpio.vend]\npin = 22\npulse_ms = 100\n",
        board("display-hat-mini")
    );
    let config = Config::load(&support::write_config(dir.path(), &base, &extra)).unwrap();
    let client = Client::new(ClientConfig::from_config(&config.dintero).unwrap());
    let fake = Fake::new();
    let mut kiosk = Kiosk::start_with_gpio(
        &config,
        Arc::new(client),
        InputWiring::External,
        Some(Box::new(fake.clone())),
    )
    .unwrap();
    let idle = |kiosk: &Kiosk| {
        let mut states = kiosk.state.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(60),
                states.wait_for(|s| *s == KioskState::Idle),
            )
            .await
            .expect("idle within 60 s")
            .unwrap();
        }
    };
    idle(&kiosk).await;

    fake.press(5).await;
    let report = tokio::time::timeout(Duration::from_secs(60), kiosk.reports.recv())
        .await
        .expect("an outcome")
        .unwrap();
    let Final::Approved { transaction_id, .. } = &report.outcome else {
        panic!("{report:?}");
    };
    assert_eq!(report.amount, Money::new(2000, Currency::NOK));
    let ledger = support::ledger(&base).await;
    let txs = support::transactions_for(&ledger, &report.merchant_reference);
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0]["status"], "CAPTURED");
    assert_eq!(txs[0]["id"], transaction_id.as_str());
    idle(&kiosk).await;
    let vend: Vec<bool> = fake.levels(22).iter().map(|l| l.0).collect();
    assert_eq!(vend, [false, true, false], "one vend pulse for one capture");

    // A payment where nobody presents a card, cancelled with the Y button.
    fake.press(6).await;
    let mut states = kiosk.state.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        states.wait_for(|s| matches!(s, KioskState::WaitingForCard { .. })),
    )
    .await
    .expect("waiting for the card")
    .unwrap();
    fake.press(24).await;
    let report = tokio::time::timeout(Duration::from_secs(60), kiosk.reports.recv())
        .await
        .expect("an outcome")
        .unwrap();
    assert!(
        matches!(
            report.outcome,
            Final::Cancelled {
                by: CancelledBy::Kiosk,
                ..
            }
        ),
        "{report:?}"
    );
    idle(&kiosk).await;
    let vend: Vec<bool> = fake.levels(22).iter().map(|l| l.0).collect();
    assert_eq!(
        vend,
        [false, true, false],
        "no vend pulse for a cancelled payment"
    );
    // The outputs see Idle a moment after the test does; poll with a deadline as a hang guard.
    let busy = || fake.levels(27).iter().map(|l| l.0).collect::<Vec<bool>>();
    let want = [true, false, true, false, true, false];
    support::wait_until(Duration::from_secs(10), || busy().len() >= want.len()).await;
    assert_eq!(busy(), want, "busy per payment");
    kiosk.stop().await.unwrap();
    assert_eq!(
        fake.levels(27).last().map(|l| l.0),
        Some(true),
        "busy at exit"
    );
    emulator.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Driver errors an installer can meet on a machine without GPIO lines
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_missing_or_wrong_chip_stops_start_up_with_what_to_change() {
    let dir = tempfile::tempdir().unwrap();
    for chip in ["/dev/gpiochip-kioskpay-test-missing", "/dev/null"] {
        let extra = format!(
            "[gpio]\nenabled = true\nbackend = \"cdev\"\nchip = {chip:?}\n[gpio.busy]\npin = 27\n"
        );
        let config = Config::load(&support::write_config(
            dir.path(),
            "http://127.0.0.1:9",
            &extra,
        ))
        .unwrap();
        let client = Client::new(ClientConfig::from_config(&config.dintero).unwrap());
        let err = match Kiosk::start(&config, Arc::new(client), InputWiring::FromConfig) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{chip}: started without a GPIO chip"),
        };
        assert!(
            err.starts_with(&format!("{chip} is not a GPIO chip"))
                && err.contains("set gpio.chip to one listed by `gpiodetect`"),
            "{chip}: {err}"
        );
    }
}
