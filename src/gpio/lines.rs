//! The seam between kioskpay and a GPIO driver: edges in, levels out.
//!
//! A backend reports every edge of the watched input lines with the kernel's timestamp and
//! drives output lines to a level. It knows nothing of buttons, pulses or payments; everything
//! kioskpay decides about GPIO is above this seam, in pure decoders, so it is tested with
//! synthetic edges and a recording fake on any machine.
//!
//! Levels here are electrical (high = 3.3 V); `active_low` is applied above the seam, the same
//! way for every backend.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::gpio::Pull;

/// One edge on an input line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// The line (offset on the chip, or BCM number on a Raspberry Pi).
    pub line: u32,
    /// Low to high (`true`) or high to low.
    pub rising: bool,
    /// When the kernel saw it, on its monotonic clock: only differences between edges matter.
    pub at: Duration,
}

/// How to watch one input line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputRequest {
    /// The line.
    pub line: u32,
    /// The pull resistor to enable.
    pub pull: Pull,
    /// Debounce period for the kernel, for buttons; `None` for pulse inputs, whose decoder
    /// needs the raw edges.
    pub debounce: Option<Duration>,
}

/// A line driven by kioskpay.
pub trait OutputLine: Send {
    /// Drives the line high (`true`) or low.
    fn set_high(&mut self, high: bool) -> Result<(), GpioError>;
}

/// A GPIO driver. Lines stay claimed for as long as the backend lives.
pub trait GpioBackend: Send {
    /// Claims `inputs` as inputs with edge detection on both edges and returns their edges, in
    /// order, on one channel.
    fn watch(&mut self, inputs: &[InputRequest]) -> Result<mpsc::Receiver<Edge>, GpioError>;

    /// Claims `line` as an output, first driven to `high`.
    fn output(&mut self, line: u32, high: bool) -> Result<Box<dyn OutputLine>, GpioError>;
}

/// How many edges may wait for the decoders; at button and pulse rates this is seconds of
/// backlog, and a full channel only slows the driver's reader, it never loses an edge here.
pub const EDGE_BUFFER: usize = 256;

/// Why GPIO cannot be used. Every message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    /// The user kioskpay runs as may not open the GPIO device.
    #[error(
        "permission denied opening {path}: add the service user to the gpio group \
         (sudo usermod -aG gpio kioskpay) and restart, or allow the device in the unit's \
         DeviceAllow="
    )]
    Permission {
        /// The device.
        path: PathBuf,
    },
    /// The configured GPIO chip does not exist.
    #[error(
        "{path} is not a GPIO chip ({detail}): set gpio.chip to one listed by `gpiodetect` \
         or `ls /dev/gpiochip*`"
    )]
    NoChip {
        /// The configured device.
        path: PathBuf,
        /// What the system said.
        detail: String,
    },
    /// The line does not exist on the chip.
    #[error("{chip} has no line {line} ({detail}): check the pin number against `gpioinfo`")]
    NoLine {
        /// The chip (or "the Raspberry Pi" for rppal).
        chip: String,
        /// The configured line.
        line: u32,
        /// Why.
        detail: String,
    },
    /// Someone else holds the line.
    #[error(
        "line {line} is in use by {consumer:?}: another program or a kernel driver (a dtoverlay \
         in config.txt, e.g. SPI or I2C) claims it; free it or pick another pin (`gpioinfo` \
         shows the consumer)"
    )]
    Busy {
        /// The line.
        line: u32,
        /// Who holds it, as the kernel reports it.
        consumer: String,
    },
    /// rppal runs only on a Raspberry Pi.
    #[error(
        "the rppal backend cannot start ({detail}): it runs only on a Raspberry Pi; on other \
         boards set gpio.backend = \"cdev\""
    )]
    NotAPi {
        /// rppal's message.
        detail: String,
    },
    /// Any other driver error.
    #[error("GPIO line {line}: {detail}")]
    Line {
        /// The line.
        line: u32,
        /// The driver's message.
        detail: String,
    },
}
