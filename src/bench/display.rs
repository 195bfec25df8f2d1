//! What a screen change costs: the customer display of a 240×320 ST7789 on a Raspberry Pi's
//! SPI bus, measured as `cargo bench --bench display` does, with the real `mipidsi` driver and
//! the display's own diffing on a counting SPI device.
//!
//! Bus time is bytes × 8 / 62.5 MHz (the ST7789's limit); it leaves out the few µs between
//! transactions. A full 240×320 RGB565 frame is 153,600 bytes, 19.7 ms on the wire.

use std::time::Duration;

use tokio::time::Instant;

use super::{ms, Row, Verdict};
use crate::display::panel::counting::{counting_panel, st7789_240x320, CountingSpi};
use crate::display::{draw, sample_state, sample_waiting, screen_for, Frame, Panel, Screen};
use crate::money::Language;
use crate::state::KioskState;

/// Draws of each frame to time it.
const RENDER_RUNS: usize = 21;
/// The ST7789's SPI clock.
const SPI_HZ: f64 = 62.5e6;

/// One measured screen change.
struct Change {
    name: &'static str,
    render: Duration,
    bytes: u64,
}

impl Change {
    fn bus(&self) -> Duration {
        Duration::from_secs_f64(self.bytes as f64 * 8.0 / SPI_HZ)
    }
}

/// The display figure.
pub struct Measured {
    full: u64,
    changes: Vec<Change>,
    /// Render and bus time of the processing → approved change: what the approved frame adds
    /// after the kiosk publishes the approval.
    pub approved_draw: Duration,
}

/// Shows a payment's screens in order on a counting ST7789 and times each.
pub fn measure() -> Measured {
    let now = Instant::now();
    let lang = Language::Nb;
    let sample = |name| sample_state(name, now).unwrap_or(KioskState::Idle);
    let waiting = |left| sample_waiting(now, Duration::from_secs(left));
    let steps: [(&str, Screen); 5] = [
        ("idle", screen_for(&KioskState::Idle, lang, now)),
        ("idle → waiting", screen_for(&waiting(60), lang, now)),
        ("countdown tick", screen_for(&waiting(59), lang, now)),
        (
            "waiting → processing",
            screen_for(&sample("processing"), lang, now),
        ),
        (
            "processing → approved",
            screen_for(&sample("approved"), lang, now),
        ),
    ];
    let config = st7789_240x320(0);
    let size = config.size();
    let full = u64::from(size.width * size.height) * config.bytes_per_pixel();
    let spi = CountingSpi::new();
    let mut panel = counting_panel(config, spi.clone());
    let mut changes = Vec::new();
    for (name, screen) in steps {
        let mut frame = Frame::new(size.width, size.height);
        let mut times = Vec::with_capacity(RENDER_RUNS);
        for _ in 0..RENDER_RUNS {
            let started = std::time::Instant::now();
            let Ok(()) = draw(&screen, &mut frame);
            times.push(started.elapsed());
        }
        times.sort_unstable();
        spi.reset();
        let bytes = match panel.show(&screen, &frame) {
            Ok(()) => spi.counts().bytes,
            Err(e) => {
                super::progress(&format!("display: {name}: the counting panel failed: {e}"));
                continue;
            }
        };
        changes.push(Change {
            name,
            render: times[RENDER_RUNS / 2],
            bytes,
        });
    }
    let approved_draw = changes
        .iter()
        .find(|c| c.name == "processing → approved")
        .map_or(Duration::ZERO, |c| c.render + c.bus());
    Measured {
        full,
        changes,
        approved_draw,
    }
}

impl Measured {
    /// One row per change after the first frame (which carries the controller's init).
    pub fn rows(&self) -> Vec<Row> {
        self.changes
            .iter()
            .skip(1)
            .map(|c| {
                let share = c.bytes as f64 * 100.0 / self.full as f64;
                let (target, verdict) = if c.name == "countdown tick" {
                    ("< 10 % of a frame", Verdict::of(share < 10.0))
                } else {
                    ("(full frame 153,600 B, 19.7 ms)", Verdict::Info)
                };
                Row::new(
                    format!("display: {} (ST7789 240×320)", c.name),
                    target,
                    format!(
                        "{} B = {share:.1} % of a frame, render {}, SPI {} at 62.5 MHz",
                        c.bytes,
                        ms(c.render),
                        ms(c.bus())
                    ),
                    verdict,
                )
            })
            .collect()
    }
}
