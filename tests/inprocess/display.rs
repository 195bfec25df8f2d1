//! The customer display as a customer and an operator meet it: real pixels of every screen at
//! every supported size, PNG files on disk, the terminal rendering, and the display task driven
//! through a watch channel with tokio's paused clock.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use kioskpay::display::draw::layout;
use kioskpay::display::panel::render_text;
use kioskpay::display::screen::Icon;
use kioskpay::display::{
    draw, render_png, run, sample_state, sample_states, screen_for, Frame, Panel, PanelError,
    PngPanel, Screen, TerminalPanel,
};
use kioskpay::money::{Currency, Language, Money};
use kioskpay::state::{DeclineKind, KioskState};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

const SIZES: [(u32, u32); 3] = [(240, 320), (320, 240), (480, 320)];
const LANGS: [Language; 2] = [Language::Nb, Language::En];

fn sample(name: &str, now: Instant) -> KioskState {
    sample_state(name, now).unwrap_or_else(|| panic!("no sample state {name}"))
}

/// A draw target that remembers every pixel drawn outside its bounds instead of dropping it.
struct Strict {
    frame: Frame,
    outside: usize,
}

impl Strict {
    fn new(width: u32, height: u32) -> Strict {
        Strict {
            frame: Frame::new(width, height),
            outside: 0,
        }
    }
}

impl OriginDimensions for Strict {
    fn size(&self) -> Size {
        self.frame.size()
    }
}

impl DrawTarget for Strict {
    type Color = Rgb565;
    type Error = Infallible;

    fn draw_iter<I: IntoIterator<Item = Pixel<Rgb565>>>(
        &mut self,
        pixels: I,
    ) -> Result<(), Infallible> {
        let bounds = self.bounding_box();
        for pixel in pixels {
            if bounds.contains(pixel.0) {
                self.frame.draw_iter([pixel])?;
            } else {
                self.outside += 1;
            }
        }
        Ok(())
    }
}

fn count(frame: &Frame, area: Rectangle, pred: impl Fn(Rgb565) -> bool) -> usize {
    area.points()
        .filter_map(|p| frame.pixel(p))
        .filter(|c| pred(*c))
        .count()
}

fn rendered(screen: &Screen, (w, h): (u32, u32)) -> Frame {
    let mut target = Strict::new(w, h);
    draw(screen, &mut target).unwrap();
    assert_eq!(target.outside, 0, "{} drew outside {w}x{h}", screen.title);
    target.frame
}

#[test]
fn every_screen_is_drawn_inside_its_target_with_its_text_in_place() {
    let now = Instant::now();
    for size in SIZES {
        let bounds = Rectangle::new(Point::zero(), Size::new(size.0, size.1));
        for lang in LANGS {
            for (name, state) in sample_states(now) {
                let what = format!("{name} {} {}x{}", lang.code(), size.0, size.1);
                let screen = screen_for(&state, lang, now);
                let frame = rendered(&screen, size);
                let regions = layout(&screen, Size::new(size.0, size.1));

                // The header band fills the top, in a colour that is not the background.
                let band = frame.pixel(Point::new(1, 1)).unwrap();
                assert_ne!(band, Rgb565::BLACK, "{what}: no header band");
                assert!(regions.header.size.height >= 40, "{what}: header too small");

                // Regions stay inside the target and do not overlap.
                for r in [regions.header, regions.content]
                    .into_iter()
                    .chain(regions.footer)
                {
                    assert_eq!(
                        bounds.intersection(&r),
                        r,
                        "{what}: {r:?} leaves the target"
                    );
                }
                assert!(regions.content.top_left.y >= regions.header.bottom_right().unwrap().y);
                if let Some(footer) = regions.footer {
                    assert!(footer.top_left.y > regions.content.bottom_right().unwrap().y);
                }

                // Title text in the band's text colour, inside the title region.
                let title_ink = count(&frame, regions.title, |c| c != band);
                assert!(
                    title_ink > 100,
                    "{what}: title region has {title_ink} ink pixels"
                );
                // The icon is drawn (a disc with a mark: two colours besides the band).
                let icon_colors: HashSet<Rgb565> = regions
                    .icon
                    .points()
                    .filter_map(|p| frame.pixel(p))
                    .collect();
                assert!(icon_colors.len() >= 2, "{what}: icon missing");

                // The amount must always make it onto the screen, in white, and big.
                if screen.amount.is_some() {
                    let amount = regions
                        .amount
                        .unwrap_or_else(|| panic!("{what}: amount dropped"));
                    assert!(amount.size.height >= 20, "{what}: amount only {amount:?}");
                    assert!(
                        count(&frame, amount, |c| c == Rgb565::WHITE) > 200,
                        "{what}"
                    );
                }
                let body = regions.body.unwrap_or_else(|| panic!("{what}: no lines"));
                assert!(count(&frame, body, |c| c == Rgb565::WHITE) > 100, "{what}");
                if screen.countdown.is_some() {
                    let countdown = regions.countdown.unwrap();
                    assert!(
                        regions.content.contains(countdown.bottom_right().unwrap()),
                        "{what}"
                    );
                    assert!(
                        count(&frame, countdown, |c| c == Rgb565::WHITE) > 50,
                        "{what}"
                    );
                }
                if let Some(footer) = regions.footer {
                    assert!(count(&frame, footer, |c| c != Rgb565::BLACK) > 50, "{what}");
                }
                // Not blank: a good share of the screen is ink or band.
                let ink = frame
                    .pixels()
                    .iter()
                    .filter(|c| **c != Rgb565::BLACK)
                    .count();
                assert!(ink * 10 > frame.pixels().len(), "{what}: nearly blank");
            }
        }
    }
}

#[test]
fn outcomes_differ_in_pixels_and_in_icon_shape_not_only_colour() {
    let now = Instant::now();
    let outcomes = [
        "approved",
        "declined",
        "insufficient_funds",
        "cancelled",
        "timed_out",
        "failed",
        "checking",
        "waiting",
        "idle",
    ];
    for size in SIZES {
        let mut frames = Vec::new();
        let mut shapes: Vec<(Icon, Vec<bool>)> = Vec::new();
        for name in outcomes {
            let screen = screen_for(&sample(name, now), Language::Nb, now);
            let frame = rendered(&screen, size);
            // The icon reduced to black and white: which pixels are the band colour.
            let regions = layout(&screen, Size::new(size.0, size.1));
            let band = frame.pixel(Point::new(1, 1)).unwrap();
            let mask: Vec<bool> = regions
                .icon
                .points()
                .map(|p| frame.pixel(p) == Some(band))
                .collect();
            for (icon, other) in &shapes {
                assert!(
                    *icon == screen.icon || *other != mask,
                    "{name}: its icon has the same shape as {icon:?} at {size:?}"
                );
            }
            shapes.push((screen.icon, mask));
            frames.push((name, frame));
        }
        for (i, (a, fa)) in frames.iter().enumerate() {
            for (b, fb) in &frames[i + 1..] {
                assert_ne!(fa, fb, "{a} and {b} look the same at {size:?}");
            }
        }
        let icons: HashSet<Icon> = shapes.iter().map(|(i, _)| *i).collect();
        assert!(icons.len() >= 7, "outcomes share icons: {icons:?}");
    }
}

#[test]
fn a_countdown_changes_the_picture_every_second() {
    let now = Instant::now();
    let state = sample("waiting", now);
    let a = rendered(&screen_for(&state, Language::Nb, now), (240, 320));
    let b = rendered(
        &screen_for(&state, Language::Nb, now + Duration::from_secs(1)),
        (240, 320),
    );
    assert_ne!(a, b);
}

fn decode(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
    let decoder = png::Decoder::new(bytes);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info, buf)
}

#[test]
fn png_output_decodes_to_the_right_size_and_pixels() {
    let now = Instant::now();
    for (w, h) in SIZES {
        let state = sample("approved", now);
        let bytes = render_png(&state, Language::En, Size::new(w, h), now);
        let (info, data) = decode(&bytes);
        assert_eq!((info.width, info.height), (w, h));
        assert_eq!(info.color_type, png::ColorType::Rgb);

        let frame = rendered(&screen_for(&state, Language::En, now), (w, h));
        for point in [Point::new(0, 0), Point::new(w as i32 / 2, h as i32 / 2)] {
            let expected = Rgb888::from(frame.pixel(point).unwrap());
            let i = 3 * (point.y as usize * w as usize + point.x as usize);
            assert_eq!(
                &data[i..i + 3],
                &[expected.r(), expected.g(), expected.b()],
                "{point:?}"
            );
        }
    }
}

fn frame_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn drawn(state: &KioskState, now: Instant) -> (Screen, Frame) {
    let screen = screen_for(state, Language::Nb, now);
    let mut frame = Frame::new(240, 320);
    draw(&screen, &mut frame).unwrap();
    (screen, frame)
}

#[test]
fn png_panel_writes_numbered_files_only_for_changed_frames() {
    let now = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("frames/kiosk");
    let mut panel = PngPanel::new(&dir).unwrap();
    let (idle_screen, idle) = drawn(&KioskState::Idle, now);
    let (paid_screen, paid) = drawn(&sample("approved", now), now);

    for (screen, frame) in [
        (&idle_screen, &idle),
        (&idle_screen, &idle),
        (&paid_screen, &paid),
        (&paid_screen, &paid),
        (&paid_screen, &paid),
        (&idle_screen, &idle),
    ] {
        panel.show(screen, frame).unwrap();
    }
    assert_eq!(
        frame_files(&dir),
        ["frame-00001.png", "frame-00002.png", "frame-00003.png"]
    );
    let second = std::fs::read(dir.join("frame-00002.png")).unwrap();
    assert_eq!(second, paid.to_png());
    assert_eq!(decode(&second).0.width, 240);

    // A restarted kiosk continues the numbering instead of overwriting.
    let mut again = PngPanel::new(&dir).unwrap();
    again.show(&paid_screen, &paid).unwrap();
    assert_eq!(frame_files(&dir).last().unwrap(), "frame-00004.png");
}

#[test]
fn png_panel_keeps_only_the_newest_frames() {
    let now = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("frames");
    let mut panel = PngPanel::new(&dir).unwrap().keeping(5);
    let (idle_screen, idle) = drawn(&KioskState::Idle, now);
    let (paid_screen, paid) = drawn(&sample("approved", now), now);
    for i in 0..12 {
        match i % 2 {
            0 => panel.show(&idle_screen, &idle).unwrap(),
            _ => panel.show(&paid_screen, &paid).unwrap(),
        }
    }
    let expected: Vec<String> = (8..=12).map(|n| format!("frame-{n:05}.png")).collect();
    assert_eq!(frame_files(&dir), expected, "the newest 5 of 12");
    assert_eq!(
        std::fs::read(dir.join("frame-00012.png")).unwrap(),
        paid.to_png()
    );

    // After a restart with a smaller limit, earlier runs' frames count too.
    let mut again = PngPanel::new(&dir).unwrap().keeping(3);
    again.show(&idle_screen, &idle).unwrap();
    assert_eq!(
        frame_files(&dir),
        ["frame-00011.png", "frame-00012.png", "frame-00013.png"]
    );

    // 0 keeps every frame.
    let mut all = PngPanel::new(&dir).unwrap().keeping(0);
    for i in 0..4 {
        match i % 2 {
            0 => all.show(&paid_screen, &paid).unwrap(),
            _ => all.show(&idle_screen, &idle).unwrap(),
        }
    }
    assert_eq!(frame_files(&dir).len(), 7);
}

#[test]
fn png_panel_errors_name_the_path_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = PngPanel::new(file.join("frames")).unwrap_err();
    assert!(matches!(err, PanelError::CreateDir { .. }));
    let message = err.to_string();
    assert!(message.contains("not-a-dir"), "{message}");
    assert!(message.contains("writ"), "{message}");

    // The directory disappearing under a running panel is reported, and the next frame retried.
    let dir = tmp.path().join("frames");
    let mut panel = PngPanel::new(&dir).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    let now = Instant::now();
    let (screen, frame) = drawn(&KioskState::Idle, now);
    let err = panel.show(&screen, &frame).unwrap_err();
    assert!(matches!(err, PanelError::WriteFrame { .. }), "{err}");
    std::fs::create_dir(&dir).unwrap();
    panel.show(&screen, &frame).unwrap();
    assert_eq!(frame_files(&dir), ["frame-00001.png"]);
}

#[test]
fn terminal_rendering_shows_amounts_and_the_right_words() {
    let now = Instant::now();
    let expectations: &[(&str, &str, &str)] = &[
        ("idle", "Skann koden", "Scan your code"),
        (
            "waiting",
            "Følg instruksjonene på kortterminalen",
            "Follow the instructions on the card terminal",
        ),
        ("approved", "godkjent", "approved"),
        ("declined", "avvist", "declined"),
        ("insufficient_funds", "dekning", "Insufficient funds"),
        ("cancelled", "avbrutt", "cancelled"),
        ("timed_out", "Tiden gikk ut", "Time ran out"),
        ("failed", "teknisk feil", "technical error"),
        ("unavailable", "ikke mulig", "unavailable"),
        ("refused", "kunne ikke leses", "could not be read"),
        (
            "scanner_unavailable",
            "Skanneren virker ikke",
            "Scanner not working",
        ),
        (
            "refused_not_payment_code",
            "ikke en betalingskode",
            "This code is not a payment code",
        ),
        ("refused_expired", "Koden er utløpt", "The code has expired"),
        (
            "refused_already_paid",
            "allerede betalt",
            "This code has already been paid",
        ),
        ("checking", "Sjekker betalingen", "Checking your payment"),
        (
            "conflict",
            "Ingenting mer blir trukket",
            "Nothing more will be charged",
        ),
    ];
    for (name, nb, en) in expectations {
        let state = sample(name, now);
        let text_nb = render_text(&screen_for(&state, Language::Nb, now));
        let text_en = render_text(&screen_for(&state, Language::En, now));
        assert!(text_nb.contains(nb), "{name} nb:\n{text_nb}");
        assert!(text_en.contains(en), "{name} en:\n{text_en}");
        let has_amount = !matches!(
            state,
            KioskState::Idle
                | KioskState::Unavailable { .. }
                | KioskState::Refused { .. }
                | KioskState::Checking { .. }
        );
        assert_eq!(
            text_nb.contains("kr 399,00"),
            has_amount,
            "{name} nb:\n{text_nb}"
        );
        assert_eq!(
            text_en.contains("NOK 399.00"),
            has_amount,
            "{name} en:\n{text_en}"
        );
        if has_amount || matches!(state, KioskState::Checking { .. }) {
            assert!(
                text_nb.contains("Referanse: kiosk-1-7KQ2FX-20261204-000042"),
                "{text_nb}"
            );
            assert!(
                text_en.contains("Reference: kiosk-1-7KQ2FX-20261204-000042"),
                "{text_en}"
            );
        }
        // A box: every row the same width.
        let widths: HashSet<usize> = text_nb.lines().map(|l| l.chars().count()).collect();
        assert_eq!(widths.len(), 1, "{text_nb}");
    }
    let waiting = render_text(&screen_for(&sample("waiting", now), Language::En, now));
    assert!(waiting.contains("60 seconds left"), "{waiting}");
}

#[test]
fn terminal_panel_prints_a_box_per_change_not_per_tick() {
    let now = Instant::now();
    let waiting = sample("waiting", now);
    let mut panel = TerminalPanel::new(Vec::new());
    let frame = Frame::new(1, 1);
    for second in 0..5 {
        let screen = screen_for(&waiting, Language::Nb, now + Duration::from_secs(second));
        panel.show(&screen, &frame).unwrap();
    }
    panel
        .show(
            &screen_for(&sample("approved", now), Language::Nb, now),
            &frame,
        )
        .unwrap();
    let out = String::from_utf8(panel.into_inner()).unwrap();
    assert_eq!(out.matches('┌').count(), 2, "{out}");
    assert!(out.contains("60 sekunder igjen"), "{out}");
    assert!(out.contains("Betalingen er godkjent"), "{out}");
}

/// What the display task handed to its panel.
#[derive(Clone, Default)]
struct Shown(Arc<Mutex<Vec<Screen>>>);

impl Shown {
    fn titles(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.title.clone())
            .collect()
    }
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn countdowns(&self) -> Vec<u64> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|s| s.countdown.as_ref().map(|c| c.seconds))
            .collect()
    }
}

/// A panel that records every screen and tells the test each time it is called.
struct Recorder {
    shown: Shown,
    calls: mpsc::UnboundedSender<String>,
}

impl Panel for Recorder {
    fn show(&mut self, screen: &Screen, frame: &Frame) -> Result<(), PanelError> {
        assert_eq!((frame.width(), frame.height()), (240, 320));
        self.shown.0.lock().unwrap().push(screen.clone());
        let _ = self.calls.send(screen.title.clone());
        Ok(())
    }
}

struct Task {
    states: watch::Sender<KioskState>,
    calls: mpsc::UnboundedReceiver<String>,
    stop: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

impl Task {
    /// The next panel call, with a (virtual-time) guard against a display that never draws.
    async fn next_call(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(600), self.calls.recv())
            .await
            .expect("the display never called its panel")
            .unwrap()
    }

    fn no_pending_calls(&mut self) -> bool {
        self.calls.try_recv().is_err()
    }
}

fn start(
    initial: KioskState,
    panel: impl FnOnce(mpsc::UnboundedSender<String>) -> Box<dyn Panel>,
) -> Task {
    let (states, rx) = watch::channel(initial);
    let (calls_tx, calls) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(run(
        rx,
        panel(calls_tx),
        Language::Nb,
        Size::new(240, 320),
        async move {
            let _ = stopped.await;
        },
    ));
    Task {
        states,
        calls,
        stop: Some(stop),
        handle,
    }
}

fn nok(minor: u64) -> Money {
    Money::new(minor, Currency::NOK)
}

#[tokio::test(start_paused = true)]
async fn redraws_once_per_change_and_sleeps_while_idle() {
    let shown = Shown::default();
    let recorder = shown.clone();
    let mut task = start(KioskState::Idle, move |calls| {
        Box::new(Recorder {
            shown: recorder,
            calls,
        })
    });
    assert_eq!(task.next_call().await, "Velkommen");

    // A long idle stretch: not a single redraw.
    tokio::time::sleep(Duration::from_secs(6 * 3600)).await;
    assert!(task.no_pending_calls());
    assert_eq!(shown.len(), 1);

    let now = Instant::now();
    let approved = sample("approved", now);
    task.states.send(approved.clone()).unwrap();
    assert_eq!(task.next_call().await, "Betalingen er godkjent");
    // Publishing the same state again is not a change.
    task.states.send(approved).unwrap();
    task.states
        .send(KioskState::Declined {
            amount: nok(39900),
            reference: "r".into(),
            kind: DeclineKind::InsufficientFunds,
        })
        .unwrap();
    assert_eq!(task.next_call().await, "Ikke nok dekning");
    task.states.send(KioskState::Idle).unwrap();
    assert_eq!(task.next_call().await, "Velkommen");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        shown.titles(),
        [
            "Velkommen",
            "Betalingen er godkjent",
            "Ikke nok dekning",
            "Velkommen"
        ]
    );

    task.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), task.handle)
        .await
        .expect("the display did not stop on shutdown")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn ticks_once_per_second_during_a_countdown_and_stops_at_zero() {
    let shown = Shown::default();
    let recorder = shown.clone();
    let mut task = start(KioskState::Idle, move |calls| {
        Box::new(Recorder {
            shown: recorder,
            calls,
        })
    });
    task.next_call().await;

    let deadline = Instant::now() + Duration::from_secs(30);
    task.states
        .send(KioskState::WaitingForCard {
            amount: nok(39900),
            reference: "r".into(),
            deadline,
        })
        .unwrap();
    task.next_call().await;
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    assert_eq!(shown.countdowns(), (20..=30).rev().collect::<Vec<u64>>());

    // Past the deadline the countdown rests at zero and the display sleeps again.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(shown.countdowns(), (0..=30).rev().collect::<Vec<u64>>());
    assert_eq!(shown.len(), 1 + 31);

    // Busy screens tick their activity indicator once per second, and only while shown.
    task.states
        .send(KioskState::Processing {
            amount: nok(39900),
            reference: "r".into(),
        })
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    task.states.send(KioskState::Idle).unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
    let screens = shown.0.lock().unwrap().clone();
    let phases: Vec<u8> = screens[32..].iter().filter_map(|s| s.activity).collect();
    assert_eq!(phases, [0, 1, 2, 0, 1, 2]);
    assert_eq!(screens.len(), 32 + 6 + 1);
}

/// A panel whose `show` blocks until the test lets it finish, like a slow SPI transfer.
struct Slow {
    shown: Shown,
    calls: mpsc::UnboundedSender<String>,
    go: std_mpsc::Receiver<()>,
}

impl Panel for Slow {
    fn show(&mut self, screen: &Screen, _frame: &Frame) -> Result<(), PanelError> {
        let _ = self.calls.send(screen.title.clone());
        let _ = self.go.recv();
        self.shown.0.lock().unwrap().push(screen.clone());
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_panel_skips_intermediate_states() {
    let shown = Shown::default();
    let recorder = shown.clone();
    let (go, go_rx) = std_mpsc::channel();
    go.send(()).unwrap();
    let mut task = start(KioskState::Idle, move |calls| {
        Box::new(Slow {
            shown: recorder,
            calls,
            go: go_rx,
        })
    });
    assert_eq!(task.next_call().await, "Velkommen");

    let now = Instant::now();
    task.states.send(sample("approved", now)).unwrap();
    assert_eq!(task.next_call().await, "Betalingen er godkjent");
    // While the panel is still busy with "approved", three more states arrive.
    task.states.send(sample("declined", now)).unwrap();
    task.states.send(sample("cancelled", now)).unwrap();
    task.states.send(sample("timed_out", now)).unwrap();
    go.send(()).unwrap();
    go.send(()).unwrap();
    assert_eq!(task.next_call().await, "Tiden gikk ut");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(task.no_pending_calls());
    assert_eq!(
        shown.titles(),
        ["Velkommen", "Betalingen er godkjent", "Tiden gikk ut"]
    );
}

/// A panel that fails its first `failures` calls.
struct Flaky {
    failures: usize,
    attempts: Arc<AtomicUsize>,
    shown: Shown,
    calls: mpsc::UnboundedSender<String>,
}

impl Panel for Flaky {
    fn show(&mut self, screen: &Screen, _frame: &Frame) -> Result<(), PanelError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        let result = if attempt < self.failures {
            Err(PanelError::Terminal(std::io::Error::other("bus glitch")))
        } else {
            self.shown.0.lock().unwrap().push(screen.clone());
            Ok(())
        };
        // Told last, so the test sees the call's effects once it hears of it.
        let _ = self.calls.send(screen.title.clone());
        result
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_panel_is_retried_with_back_off_and_never_stops_the_task() {
    let shown = Shown::default();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (recorder, counter) = (shown.clone(), attempts.clone());
    let mut task = start(KioskState::Idle, move |calls| {
        Box::new(Flaky {
            failures: usize::MAX,
            attempts: counter,
            shown: recorder,
            calls,
        })
    });
    task.next_call().await;
    // Ten minutes of a dead panel: retried, but backing off rather than spinning.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let tried = attempts.load(Ordering::SeqCst);
    assert!((5..=30).contains(&tried), "{tried} attempts in 10 minutes");
    assert!(!task.handle.is_finished());
    assert!(shown.titles().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_panel_that_recovers_shows_the_latest_state() {
    let shown = Shown::default();
    let attempts = Arc::new(AtomicUsize::new(0));
    let (recorder, counter) = (shown.clone(), attempts.clone());
    let mut task = start(KioskState::Idle, move |calls| {
        Box::new(Flaky {
            failures: 2,
            attempts: counter,
            shown: recorder,
            calls,
        })
    });
    task.next_call().await;
    let now = Instant::now();
    // The change is retried at once, even before the back-off runs out.
    task.states.send(sample("approved", now)).unwrap();
    assert_eq!(task.next_call().await, "Betalingen er godkjent");
    assert_eq!(task.next_call().await, "Betalingen er godkjent");
    assert_eq!(shown.titles(), ["Betalingen er godkjent"]);
    task.states.send(KioskState::Idle).unwrap();
    assert_eq!(task.next_call().await, "Velkommen");
    assert_eq!(shown.titles(), ["Betalingen er godkjent", "Velkommen"]);
    assert_eq!(attempts.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn the_task_ends_when_the_state_publisher_goes_away() {
    let mut task = start(KioskState::Idle, |calls| {
        Box::new(Recorder {
            shown: Shown::default(),
            calls,
        })
    });
    task.next_call().await;
    drop(task.states);
    tokio::time::timeout(Duration::from_secs(60), task.handle)
        .await
        .expect("the display did not end")
        .unwrap();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Odd, tiny and huge panels: drawing never panics and never leaves the target.
    #[test]
    fn any_size_draws_inside_the_target(
        width in 1u32..700,
        height in 1u32..700,
        which in 0usize..25,
        english in proptest::bool::ANY,
    ) {
        let now = Instant::now();
        let states = sample_states(now);
        let (_, state) = &states[which % states.len()];
        let lang = if english { Language::En } else { Language::Nb };
        let mut target = Strict::new(width, height);
        draw(&screen_for(state, lang, now), &mut target).unwrap();
        proptest::prop_assert_eq!(target.outside, 0);
    }
}

#[test]
fn tiny_panels_do_not_panic() {
    let now = Instant::now();
    for (w, h) in [(1, 1), (3, 5), (16, 16), (64, 32), (32, 200), (800, 20)] {
        for (_, state) in sample_states(now) {
            rendered(&screen_for(&state, Language::Nb, now), (w, h));
        }
    }
}

#[test]
fn every_code_refusal_has_its_own_words_in_both_languages() {
    use kioskpay::input::CustomerReason::*;
    use kioskpay::state::RefusalReason;
    let now = Instant::now();
    let reasons = [
        Unreadable,
        NotAPaymentCode,
        NotAccepted,
        WrongCurrency,
        InvalidAmount,
        Expired,
        AlreadyPaid,
        Forged,
        KioskFault,
    ];
    for lang in LANGS {
        let mut seen = HashSet::new();
        for customer in reasons {
            let state = KioskState::Refused {
                reason: RefusalReason::Code {
                    detail: "GS1 AI (415) value \"123\": secret detail".into(),
                    customer,
                },
            };
            let screen = screen_for(&state, lang, now);
            let all = screen.lines.join(" ");
            assert!(
                !all.contains("secret detail"),
                "the log detail is not for the customer"
            );
            assert!(
                all.chars().all(|c| (c as u32) < 0x100),
                "Latin-1 only: {all}"
            );
            assert!(
                screen.lines.len() >= 3,
                "what, what to do, nothing charged: {all}"
            );
            assert!(seen.insert(screen.lines[0].clone()), "{customer:?}: {all}");
        }
    }
}
