//! What each screen change costs on a Raspberry Pi's SPI bus, measured with the real `mipidsi`
//! drivers on a counting SPI device: render time, bytes sent against a full frame, SPI
//! transactions (each at most 4096 bytes) and the time those bytes take on the wire at the
//! ST7789's 62.5 MHz and a conservative 31.25 MHz.
//!
//! ```sh
//! cargo bench --bench display
//! ```
//!
//! Bus time is bytes × 8 / clock: it leaves out the gaps between transactions (a few µs each on
//! a Pi), which is why the transaction count is printed too.

use std::time::{Duration, Instant as WallClock};

use kioskpay::board::display::{Controller, SpiConfig};
use kioskpay::display::panel::counting::{counting_panel, st7789_240x320, CountingSpi};
use kioskpay::display::{draw, sample_state, sample_waiting, screen_for, Frame, Panel, Screen};
use kioskpay::money::Language;
use kioskpay::state::KioskState;
use tokio::time::Instant;

/// How many times each frame is drawn to time it.
const RENDER_RUNS: u32 = 20;

fn main() {
    let now = Instant::now();
    let lang = Language::Nb;
    let state = |name| sample_state(name, now).unwrap_or(KioskState::Idle);
    let waiting = |left| sample_waiting(now, Duration::from_secs(left));
    let processing = screen_for(&state("processing"), lang, now);
    let mut processing_next = processing.clone();
    processing_next.activity = Some(1);
    let steps: Vec<(&str, Screen)> = vec![
        (
            "idle (first frame)",
            screen_for(&KioskState::Idle, lang, now),
        ),
        ("idle again", screen_for(&KioskState::Idle, lang, now)),
        ("idle -> waiting 60 s", screen_for(&waiting(60), lang, now)),
        ("countdown 60 -> 59", screen_for(&waiting(59), lang, now)),
        ("countdown 10", screen_for(&waiting(10), lang, now)),
        ("countdown 10 -> 9", screen_for(&waiting(9), lang, now)),
        ("waiting -> processing", processing),
        ("activity tick", processing_next),
        (
            "processing -> approved",
            screen_for(&state("approved"), lang, now),
        ),
        ("approved -> idle", screen_for(&KioskState::Idle, lang, now)),
    ];

    for (label, config) in [
        ("ST7789 240x320", st7789_240x320(0)),
        ("ST7789 320x240 (Display HAT Mini)", st7789_240x320(90)),
        (
            "ILI9486 480x320 (RGB666)",
            SpiConfig {
                controller: Controller::Ili9486,
                width: 320,
                height: 480,
                rotation: 90,
                ..st7789_240x320(0)
            },
        ),
    ] {
        let size = config.size();
        let full = u64::from(size.width * size.height) * config.bytes_per_pixel();
        let spi = CountingSpi::new();
        let mut panel = counting_panel(config, spi.clone());
        println!("\n{label}: full frame {full} bytes");
        println!(
            "{:<24} {:>10} {:>9} {:>7} {:>6} {:>10} {:>10}",
            "change", "render ms", "bytes", "ratio", "xfers", "62.5 MHz", "31.25 MHz"
        );
        for (i, (name, screen)) in steps.iter().enumerate() {
            let mut frame = Frame::new(size.width, size.height);
            let started = WallClock::now();
            for _ in 0..RENDER_RUNS {
                let Ok(()) = draw(screen, &mut frame);
            }
            let render = started.elapsed() / RENDER_RUNS;
            spi.reset();
            if let Err(e) = panel.show(screen, &frame) {
                println!("{name}: panel error {e}");
                continue;
            }
            let counts = spi.counts();
            // The first frame includes the controller's init sequence.
            let bytes = counts.bytes;
            let bus = |hz: f64| bytes as f64 * 8.0 / hz * 1000.0;
            println!(
                "{:<24} {:>10.2} {:>9} {:>6.1}% {:>6} {:>8.2}ms {:>8.2}ms{}",
                name,
                render.as_secs_f64() * 1000.0,
                bytes,
                bytes as f64 * 100.0 / full as f64,
                counts.transactions,
                bus(62.5e6),
                bus(31.25e6),
                if i == 0 { "  (with init)" } else { "" }
            );
        }
    }
}
