//! Hardware panels without hardware: the real `mipidsi` drivers on a counting SPI device, the
//! framebuffer backend on a plain file, and a kiosk whose screen breaks and comes back.
//!
//! What is measured is what a Raspberry Pi's SPI bus would carry: bytes and transactions per
//! screen change, the largest single transfer (spidev's default `bufsiz` is 4096), and nothing
//! at all when nothing changes.

use crate::support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kioskpay::board::display::{ColorOrder, Controller, SpiConfig};
use kioskpay::cart::CartSource;
use kioskpay::config::Config;
use kioskpay::dintero::client::{Client, ClientConfig};
use kioskpay::display::panel::counting::{counting_panel, st7789_240x320, CountingSpi};
use kioskpay::display::panel::fb::{Geometry, PixelFormat};
use kioskpay::display::panel::spi::MAX_TRANSFER;
use kioskpay::display::{
    draw, run_with, sample_state, screen_for, Frame, FramebufferPanel, Panel, PanelError,
    PanelHealth, Screen, Settings, Size,
};
use kioskpay::journal::Journal;
use kioskpay::money::Language;
use kioskpay::payment::flow::{Flow, FlowChannels, FlowConfig};
use kioskpay::payment::Final;
use kioskpay::state::{KioskState, RefusalReason};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The three tested panel shapes as real controllers: ST7789 portrait, ST7789 turned to
/// landscape (Display HAT Mini), ILI9486 turned to landscape.
fn panels() -> Vec<(&'static str, SpiConfig)> {
    let st7789 = SpiConfig {
        backlight: Some(13),
        ..st7789_240x320(0)
    };
    vec![
        ("st7789 240x320", st7789.clone()),
        (
            "st7789 320x240",
            SpiConfig {
                rotation: 90,
                ..st7789.clone()
            },
        ),
        (
            "ili9486 480x320",
            SpiConfig {
                controller: Controller::Ili9486,
                width: 320,
                height: 480,
                rotation: 90,
                color_order: ColorOrder::Bgr,
                invert: false,
                ..st7789
            },
        ),
    ]
}

fn frame_of(screen: &Screen, size: Size) -> Frame {
    let mut frame = Frame::new(size.width, size.height);
    draw(screen, &mut frame).unwrap();
    frame
}

fn sample(name: &str, now: Instant) -> KioskState {
    sample_state(name, now).unwrap()
}

#[test]
fn only_changed_rectangles_cross_the_bus_in_transfers_spidev_accepts() {
    let now = Instant::now();
    for (name, config) in panels() {
        let size = config.size();
        let full = u64::from(size.width * size.height) * config.bytes_per_pixel();
        for lang in [Language::Nb, Language::En] {
            let spi = CountingSpi::new();
            let mut panel = counting_panel(config.clone(), spi.clone());
            let waiting = sample("waiting", now);
            let first = screen_for(&waiting, lang, now);
            panel.show(&first, &frame_of(&first, size)).unwrap();
            let init = spi.counts();
            assert!(init.bytes >= full, "{name}: first frame is sent whole");
            assert!(init.largest <= MAX_TRANSFER, "{name}: {init:?}");

            // The same frame again: not a byte, not a transaction.
            spi.reset();
            panel.show(&first, &frame_of(&first, size)).unwrap();
            assert_eq!(
                spi.counts().transactions,
                0,
                "{name}: resent an unchanged frame"
            );

            // Countdown ticks, including the one where the number gets shorter: each moves at
            // most a tenth of a frame.
            for (from, to) in [(60, 59), (10, 9), (2, 1)] {
                let at = |left: u64| waiting_deadline(&waiting, left);
                let a = screen_for(&at(from), lang, now);
                let b = screen_for(&at(to), lang, now);
                panel.show(&a, &frame_of(&a, size)).unwrap();
                spi.reset();
                panel.show(&b, &frame_of(&b, size)).unwrap();
                let tick = spi.counts();
                assert!(tick.bytes > 0, "{name} {from}->{to}: nothing sent");
                assert!(
                    tick.bytes * 10 <= full,
                    "{name} {} {from}->{to}: {} bytes of {full}",
                    lang.code(),
                    tick.bytes
                );
                assert!(tick.largest <= MAX_TRANSFER);
            }

            // The activity indicator stepping: also a small region.
            let processing = sample("processing", now);
            let mut a = screen_for(&processing, lang, now);
            panel.show(&a, &frame_of(&a, size)).unwrap();
            spi.reset();
            a.activity = Some(1);
            panel.show(&a, &frame_of(&a, size)).unwrap();
            let tick = spi.counts();
            assert!(
                tick.bytes > 0 && tick.bytes * 10 <= full,
                "{name}: {tick:?}"
            );

            // A new screen costs at most a full frame plus a little addressing.
            let approved = screen_for(&sample("approved", now), lang, now);
            spi.reset();
            panel.show(&approved, &frame_of(&approved, size)).unwrap();
            let change = spi.counts();
            assert!(
                change.bytes <= full + 64 * change.transactions,
                "{name}: {change:?}"
            );
            assert!(change.largest <= MAX_TRANSFER);
        }
    }
}

/// `state` (waiting for card) with exactly `left` seconds to go at the test's `now`.
fn waiting_deadline(state: &KioskState, left: u64) -> KioskState {
    let KioskState::WaitingForCard {
        amount, reference, ..
    } = state
    else {
        panic!("not a waiting state")
    };
    KioskState::WaitingForCard {
        amount: *amount,
        reference: reference.clone(),
        deadline: Instant::now() + Duration::from_secs(left),
    }
}

#[test]
fn a_panel_that_fails_is_reopened_and_gets_a_full_frame() {
    let now = Instant::now();
    let (_, config) = panels().remove(0);
    let size = config.size();
    let spi = CountingSpi::new();
    let mut panel = counting_panel(config, spi.clone());
    let idle = screen_for(&KioskState::Idle, Language::Nb, now);
    let approved = screen_for(&sample("approved", now), Language::Nb, now);
    panel.show(&idle, &frame_of(&idle, size)).unwrap();

    spi.set_failing(true);
    let error = panel
        .show(&approved, &frame_of(&approved, size))
        .unwrap_err();
    assert!(matches!(error, PanelError::Send { .. }), "{error}");
    assert_eq!(error.code(), "E-PANEL-SEND");
    // While it stays broken, re-initialising fails too.
    let error = panel
        .show(&approved, &frame_of(&approved, size))
        .unwrap_err();
    assert_eq!(error.code(), "E-PANEL-INIT", "{error}");

    spi.set_failing(false);
    spi.reset();
    panel.show(&approved, &frame_of(&approved, size)).unwrap();
    // Re-initialised and sent whole: the glass may show anything after a fault.
    assert!(spi.counts().bytes >= u64::from(size.width * size.height) * 2);
}

#[test]
fn the_framebuffer_gets_converted_pixels_only_where_they_changed() {
    let now = Instant::now();
    for format in [PixelFormat::Rgb565, PixelFormat::Xrgb8888] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb0");
        let (w, h) = (240u32, 320u32);
        // Rows padded to 64-byte multiples and a panning offset, as real drivers do.
        let stride = (w * format.bytes() as u32).div_ceil(64) * 64;
        let geometry = Geometry {
            width: w,
            height: h,
            stride,
            y_offset: 8,
            format,
        };
        std::fs::write(&path, vec![0xAAu8; (stride * (h + 16)) as usize]).unwrap();
        let mut panel = FramebufferPanel::with_geometry(&path, geometry);

        let waiting = sample("waiting", now);
        let a = screen_for(&waiting_deadline(&waiting, 30), Language::En, now);
        let frame = frame_of(&a, Size::new(w, h));
        panel.show(&a, &frame).unwrap();
        let full = u64::from(w * h) * format.bytes() as u64;
        assert_eq!(panel.bytes_written(), full);

        let bytes = std::fs::read(&path).unwrap();
        // Padding and rows above the panning offset are untouched.
        assert!(bytes[..(stride * 8) as usize].iter().all(|b| *b == 0xAA));
        for (x, y) in [(0u32, 0u32), (120, 160), (239, 319), (5, 100)] {
            let color = frame.pixel(embedded_graphics::prelude::Point::new(x as i32, y as i32));
            let rgb = embedded_graphics::pixelcolor::Rgb888::from(color.unwrap());
            use embedded_graphics::pixelcolor::raw::RawData;
            use embedded_graphics::pixelcolor::RgbColor;
            let at = ((y + 8) * stride + x * format.bytes() as u32) as usize;
            match format {
                PixelFormat::Rgb565 => {
                    let raw = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
                    let raw_expected =
                        embedded_graphics::pixelcolor::raw::RawU16::from(color.unwrap())
                            .into_inner();
                    assert_eq!(raw, raw_expected, "{x},{y}");
                }
                _ => assert_eq!(
                    &bytes[at..at + 3],
                    &[rgb.b(), rgb.g(), rgb.r()],
                    "{format:?} {x},{y}"
                ),
            }
        }
        if stride > w * format.bytes() as u32 {
            let pad = (8 * stride + w * format.bytes() as u32) as usize;
            assert_eq!(bytes[pad], 0xAA, "row padding was overwritten");
        }

        // Unchanged: nothing written. A countdown tick: a few rows.
        panel.show(&a, &frame).unwrap();
        assert_eq!(panel.bytes_written(), full);
        let b = screen_for(&waiting_deadline(&waiting, 29), Language::En, now);
        panel.show(&b, &frame_of(&b, Size::new(w, h))).unwrap();
        let tick = panel.bytes_written() - full;
        assert!(
            tick > 0 && tick * 10 <= full,
            "{format:?}: {tick} of {full}"
        );
    }
}

#[test]
fn a_framebuffer_of_another_size_says_which_size_to_configure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fb0");
    std::fs::write(&path, vec![0u8; 800 * 480 * 4]).unwrap();
    let geometry = Geometry {
        width: 800,
        height: 480,
        stride: 3200,
        y_offset: 0,
        format: PixelFormat::Xrgb8888,
    };
    let mut panel = FramebufferPanel::with_geometry(&path, geometry);
    let screen = screen_for(&KioskState::Idle, Language::En, Instant::now());
    let error = panel
        .show(&screen, &frame_of(&screen, Size::new(480, 320)))
        .unwrap_err();
    let msg = error.to_string();
    assert_eq!(error.code(), "E-PANEL-INIT");
    assert!(msg.contains("800x480") && msg.contains("480x320"), "{msg}");

    let mut missing = FramebufferPanel::new(dir.path().join("fb9"));
    let error = missing
        .show(&screen, &frame_of(&screen, Size::new(480, 320)))
        .unwrap_err();
    assert_eq!(error.code(), "E-PANEL-OPEN");
    assert!(error.to_string().contains("fb9"), "{error}");
    // A regular file is not a framebuffer: the ioctl says so, nothing is written.
    let mut not_fb = FramebufferPanel::new(&path);
    let error = not_fb
        .show(&screen, &frame_of(&screen, Size::new(480, 320)))
        .unwrap_err();
    assert!(error.to_string().contains("not a framebuffer"), "{error}");
}

/// A panel that records when each frame reached it.
struct Timed {
    at: Arc<Mutex<Vec<Instant>>>,
}

impl Panel for Timed {
    fn show(&mut self, _screen: &Screen, _frame: &Frame) -> Result<(), PanelError> {
        self.at.lock().unwrap().push(Instant::now());
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_display_draws_at_most_twenty_frames_a_second() {
    let at = Arc::new(Mutex::new(Vec::new()));
    let (states, rx) = watch::channel(KioskState::Idle);
    let settings = Settings {
        lang: Language::En,
        size: Size::new(240, 320),
        receipt_url: None,
    };
    let token = CancellationToken::new();
    let task = tokio::spawn(run_with(
        rx,
        Box::new(Timed { at: at.clone() }),
        settings,
        None,
        token.clone().cancelled_owned(),
    ));
    // A state every 5 ms for two seconds: 400 states.
    let kinds = [KioskState::Idle, KioskState::Technician];
    for i in 0..400 {
        states.send(kinds[i % 2].clone()).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    token.cancel();
    task.await.unwrap();
    let at = at.lock().unwrap();
    assert!(at.len() >= 10, "the display kept up at all: {}", at.len());
    for pair in at.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(50),
            "frames {:?} apart",
            pair[1] - pair[0]
        );
    }
    assert!(at.len() <= 2 * 20 + 2, "{} frames in two seconds", at.len());
}

#[tokio::test(start_paused = true)]
async fn an_idle_kiosk_sends_nothing_and_a_countdown_sends_one_small_update_a_second() {
    let (_, config) = panels().remove(1);
    let size = config.size();
    let full = u64::from(size.width * size.height) * 2;
    let spi = CountingSpi::new();
    let panel = counting_panel(config, spi.clone());
    let (states, rx) = watch::channel(KioskState::Idle);
    let (health_tx, mut health) = watch::channel(PanelHealth::Unknown);
    let settings = Settings {
        lang: Language::Nb,
        size,
        receipt_url: None,
    };
    let token = CancellationToken::new();
    let task = tokio::spawn(run_with(
        rx,
        Box::new(panel),
        settings,
        Some(health_tx),
        token.clone().cancelled_owned(),
    ));
    health
        .wait_for(|h| *h == PanelHealth::Working)
        .await
        .unwrap();
    let after_first = spi.counts();
    tokio::time::sleep(Duration::from_secs(4 * 3600)).await;
    assert_eq!(spi.counts(), after_first, "an idle kiosk used the bus");

    let waiting = waiting_deadline(&sample("waiting", Instant::now()), 5);
    states.send(waiting).unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut last = spi.counts();
    let mut ticks = Vec::new();
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = spi.counts();
        ticks.push(now.bytes - last.bytes);
        last = now;
    }
    // Five seconds: 4, 3, 2, 1, 0 shown, then silence.
    let sent: Vec<u64> = ticks.iter().copied().filter(|b| *b > 0).collect();
    assert_eq!(sent.len(), 5, "{ticks:?}");
    assert!(sent.iter().all(|b| b * 10 <= full), "{ticks:?} of {full}");
    assert_eq!(&ticks[5..], [0, 0, 0]);
    token.cancel();
    task.await.unwrap();
}

/// A kiosk wired like `Kiosk::start` but with its SPI panel on a counting bus that can fail.
struct Kiosk {
    state: watch::Receiver<KioskState>,
    scanner: tokio::io::DuplexStream,
    reports: mpsc::UnboundedReceiver<kioskpay::payment::flow::PaymentReport>,
    spi: CountingSpi,
    token: CancellationToken,
    emulator: kioskpay::emulator::EmulatorHandle,
    _dir: tempfile::TempDir,
}

async fn kiosk() -> Kiosk {
    let emulator = support::emulator(0.01).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "[input]\nformats = [\"plain\"]\n[payment]\npoll_interval_ms = 50\npickup_timeout_s = 1\nresult_screen_s = 1\ntimeout_s = 10\n";
    let path = support::write_config(dir.path(), &emulator.base_url(), extra);
    let config = Config::load(&path).unwrap();
    let client = Client::new(ClientConfig::from_config(&config.dintero).unwrap());
    let (journal, replay) = Journal::open(&config.state.dir).unwrap();
    let (inputs, input_rx) = mpsc::channel(16);
    let (_commands, command_rx) = mpsc::channel(8);
    let (state_tx, state) = watch::channel(KioskState::Starting);
    let (report_tx, reports) = mpsc::unbounded_channel();
    let (health_tx, health_rx) = watch::channel(PanelHealth::Unknown);
    let flow = Flow::new(
        Arc::new(client),
        journal,
        replay.unresolved().cloned().collect(),
        FlowConfig::from_config(&config),
        FlowChannels {
            inputs: input_rx,
            commands: command_rx,
            state: state_tx,
            reports: Some(report_tx),
        },
    )
    .with_display_health(health_rx);
    let token = CancellationToken::new();
    let spi = CountingSpi::new();
    let (_, spi_config) = panels().remove(1);
    let settings = Settings {
        lang: Language::En,
        size: spi_config.size(),
        receipt_url: None,
    };
    tokio::spawn(run_with(
        state.clone(),
        Box::new(counting_panel(spi_config, spi.clone())),
        settings,
        Some(health_tx),
        token.clone().cancelled_owned(),
    ));
    let t = token.clone();
    tokio::spawn(async move { flow.run(t.cancelled_owned()).await });
    let (scanner, scanner_rx) = tokio::io::duplex(256);
    let scan = kioskpay::input::ScanConfig::from_config(&config.input, config.currency());
    tokio::spawn(async move {
        kioskpay::input::read_carts(scanner_rx, &scan, CartSource::Serial, &inputs).await
    });
    Kiosk {
        state,
        scanner,
        reports,
        spi,
        token,
        emulator,
        _dir: dir,
    }
}

impl Kiosk {
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&KioskState) -> bool) {
        let mut state = self.state.clone();
        tokio::time::timeout(Duration::from_secs(60), state.wait_for(|s| pred(s)))
            .await
            .unwrap_or_else(|_| panic!("never {what}: {:?}", *self.state.borrow()))
            .unwrap();
    }

    async fn scan(&mut self, line: &str) -> Final {
        self.scanner
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), self.reports.recv())
            .await
            .expect("an outcome")
            .expect("kiosk running")
            .outcome
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_screen_takes_the_kiosk_out_of_service_until_it_works_again() {
    let mut kiosk = kiosk().await;
    kiosk.wait_for("idle", |s| *s == KioskState::Idle).await;
    let outcome = kiosk.scan("12.50").await;
    assert!(matches!(outcome, Final::Approved { .. }), "{outcome:?}");
    kiosk.wait_for("idle", |s| *s == KioskState::Idle).await;

    // The panel loses power; the next frame (a refused code) fails, and the kiosk says so.
    kiosk.spi.set_failing(true);
    kiosk.scanner.write_all(b"not a code\r\n").await.unwrap();
    kiosk
        .wait_for("out of service", |s| {
            matches!(s, KioskState::OutOfService { code } if code == "E-PANEL-SEND" || code == "E-PANEL-INIT")
        })
        .await;
    // No payment while the customer cannot see it: refused before any call to Dintero.
    kiosk.scanner.write_all(b"99.00\r\n").await.unwrap();
    kiosk
        .wait_for("the cart refused", |s| {
            *s == KioskState::Refused {
                reason: RefusalReason::Unavailable,
            }
        })
        .await;
    kiosk
        .wait_for("out of service after the refusal", |s| {
            matches!(s, KioskState::OutOfService { .. })
        })
        .await;
    let ledger = support::ledger(&kiosk.emulator.base_url()).await;
    assert_eq!(
        ledger["sessions"].as_array().map(Vec::len),
        Some(1),
        "a session was created for a cart the customer could not follow"
    );

    // Power back. The display retries on a back-off timer (tested in tests/inprocess/display.rs) and on
    // every new frame; a scanned code gives it one now. It re-initialises the panel, reports it
    // working, and carts are taken again.
    kiosk.spi.set_failing(false);
    kiosk.scanner.write_all(b"not a code\r\n").await.unwrap();
    kiosk
        .wait_for("idle again", |s| *s == KioskState::Idle)
        .await;
    let outcome = kiosk.scan("12.50").await;
    assert!(matches!(outcome, Final::Approved { .. }), "{outcome:?}");
    kiosk.token.cancel();
    kiosk.emulator.shutdown().await;
}

#[test]
fn the_shipped_board_files_load_and_give_their_panel_sizes() {
    use kioskpay::config::DisplayConfig;
    use kioskpay::display::Hardware;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("board/displays");
    let cases = [
        ("pimoroni-display-hat-mini.toml", Some((320, 240))),
        ("waveshare-2.4-ili9341.toml", Some((240, 320))),
        ("framebuffer-hdmi-dsi.toml", None),
    ];
    for (file, spi_size) in cases {
        let config = DisplayConfig {
            board: Some(dir.join(file)),
            ..DisplayConfig::default()
        };
        let hardware = config.hardware().unwrap().unwrap();
        match (hardware, spi_size) {
            (Hardware::Spi(spi), Some((w, h))) => {
                assert_eq!(spi.size(), Size::new(w, h), "{file}");
                let setup = kioskpay::display::setup_for(&config).unwrap();
                assert_eq!(setup.size, Size::new(w, h));
                assert!(setup.customer_facing);
            }
            (Hardware::Framebuffer(fb), None) => {
                assert_eq!(fb.device, PathBuf::from("/dev/fb0"))
            }
            (other, _) => panic!("{file}: {other:?}"),
        }
    }
    let missing = DisplayConfig {
        board: Some(dir.join("no-such-board.toml")),
        ..DisplayConfig::default()
    };
    let msg = missing.hardware().unwrap_err().to_string();
    assert!(
        msg.contains("no-such-board.toml") && msg.contains("display.board"),
        "{msg}"
    );
}

#[test]
fn display_config_keys_are_checked_when_the_config_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let base = "http://127.0.0.1:9";
    let load = |extra: &str| {
        let path = support::write_config(dir.path(), base, "");
        // The extra keys replace the display table's `kind` and `png_dir` lines, so that a
        // `[display.spi]` table can follow them.
        let text: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("png_dir"))
            .map(|l| if l == "kind = \"png\"" { extra } else { l })
            .collect::<Vec<_>>()
            .join("\n");
        Config::parse(&text, &path)
    };
    let msg = load("kind = \"png\"\nreceipt_url = \"https://r.example.no/receipt\"")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("display.receipt_url") && msg.contains("{transaction_id}"),
        "{msg}"
    );
    let msg = load("kind = \"spi\"\n[display.spi]\ncontroller = \"st7789\"\nwidth = 240\nheight = 320\nrotation = 45\ndc = 9")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("display.spi") && msg.contains("rotation"),
        "{msg}"
    );

    let config = load(
        "kind = \"spi\"\n[display.spi]\ncontroller = \"ili9341\"\nwidth = 240\nheight = 320\nrotation = 270\ndc = 25\nreset = 27",
    )
    .unwrap();
    let setup = kioskpay::display::setup_for(&config.display).unwrap();
    assert_eq!(setup.size, Size::new(320, 240));
    assert!(setup.customer_facing);
    // `kind = "spi"` without its table says what to add.
    let config = load("kind = \"spi\"").unwrap();
    let msg = kioskpay::display::setup_for(&config.display)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("[display.spi]"), "{msg}");
}
