//! A counting SPI device under the real panel driver, for benches and tests: what a screen
//! change costs on a real bus, without hardware. Test tooling (feature `emulator`): the kiosk's
//! binary has no use for it.

use std::sync::{Arc, Mutex, PoisonError};

use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::{ErrorType, Operation, SpiDevice};

use super::spi::{init, SpiPanel};
use crate::board::display::{ColorOrder, Controller, SpiConfig};

/// The panel the benches and tests measure: a 240×320 ST7789 at its 62.5 MHz on a Raspberry
/// Pi's `spidev0.0`, turned by `rotation` degrees (90: the Display HAT Mini's landscape).
pub fn st7789_240x320(rotation: u16) -> SpiConfig {
    SpiConfig {
        controller: Controller::St7789,
        width: 240,
        height: 320,
        offset_x: 0,
        offset_y: 0,
        rotation,
        color_order: ColorOrder::Rgb,
        invert: true,
        device: "/dev/spidev0.0".into(),
        clock_hz: 62_500_000,
        mode: 0,
        gpiochip: "/dev/gpiochip0".into(),
        dc: 9,
        reset: None,
        backlight: None,
    }
}

/// What a [`CountingSpi`] has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpiCounts {
    /// SPI transactions (one chip-select assertion each).
    pub transactions: u64,
    /// Bytes written, commands and pixels.
    pub bytes: u64,
    /// The largest single write, which spidev's `bufsiz` must hold.
    pub largest: usize,
}

/// An embedded-hal `SpiDevice` that sends nowhere and counts: transactions, bytes and the
/// largest transfer. Benches and tests put it under `mipidsi` to measure what a screen change
/// costs on a real bus; it can also be told to fail, to test recovery.
#[derive(Clone, Debug, Default)]
pub struct CountingSpi {
    counts: Arc<Mutex<SpiCounts>>,
    failing: Arc<Mutex<bool>>,
}

impl CountingSpi {
    /// A fresh counter.
    pub fn new() -> CountingSpi {
        CountingSpi::default()
    }

    /// The counts so far (clones share them).
    pub fn counts(&self) -> SpiCounts {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts counting from zero.
    pub fn reset(&self) {
        *self.counts.lock().unwrap_or_else(PoisonError::into_inner) = SpiCounts::default();
    }

    /// Makes every following transaction fail (`true`) or succeed again (`false`), like a panel
    /// losing power.
    pub fn set_failing(&self, failing: bool) {
        *self.failing.lock().unwrap_or_else(PoisonError::into_inner) = failing;
    }
}

impl ErrorType for CountingSpi {
    type Error = embedded_hal::spi::ErrorKind;
}

impl SpiDevice for CountingSpi {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), Self::Error> {
        if *self.failing.lock().unwrap_or_else(PoisonError::into_inner) {
            return Err(embedded_hal::spi::ErrorKind::Other);
        }
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.transactions += 1;
        for op in operations.iter() {
            let len = match op {
                Operation::Write(bytes) => bytes.len(),
                Operation::Transfer(_, bytes) => bytes.len(),
                Operation::Read(bytes) | Operation::TransferInPlace(bytes) => bytes.len(),
                Operation::DelayNs(_) => 0,
            };
            counts.bytes += len as u64;
            counts.largest = counts.largest.max(len);
        }
        Ok(())
    }
}

/// An output pin that goes nowhere (DC and reset under a [`CountingSpi`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPin;

impl embedded_hal::digital::ErrorType for NoPin {
    type Error = std::convert::Infallible;
}

impl OutputPin for NoPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A delay that returns at once, for controllers under a [`CountingSpi`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDelay;

impl DelayNs for NoDelay {
    fn delay_ns(&mut self, _ns: u32) {}
}

/// An SPI panel on a [`CountingSpi`], for benches and tests: the real `mipidsi` driver and
/// diffing, no hardware.
pub fn counting_panel(config: SpiConfig, spi: CountingSpi) -> SpiPanel {
    SpiPanel::with_opener(Box::new(move || {
        init(&config, spi.clone(), NoPin, None::<NoPin>, &mut NoDelay)
    }))
}
