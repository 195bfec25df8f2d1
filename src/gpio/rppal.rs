//! The Raspberry Pi backend, through rppal.
//!
//! Pins are BCM GPIO numbers (GPIO5 is physical pin 29), not header positions. rppal reads edges
//! through the kernel's GPIO character device with the kernel's timestamps and debounce, on a
//! thread of its own; this backend forwards them to the async side on a channel. The service
//! user needs the `gpio` group (Raspberry Pi OS creates it and gives it `/dev/gpiochip*` and
//! `/dev/gpiomem`).
//!
//! [`RppalBackend::open`] fails with [`GpioError::NotAPi`] anywhere but on a Raspberry Pi.

use rppal::gpio::{Gpio, Level, Pin, Trigger};
use tokio::sync::mpsc;

use super::lines::{Edge, GpioBackend, GpioError, InputRequest, OutputLine, EDGE_BUFFER};
use crate::gpio::Pull;

/// rppal's GPIO with the input pins it has claimed.
pub struct RppalBackend {
    gpio: Gpio,
    /// Claimed inputs: dropping one ends its interrupt.
    inputs: Vec<rppal::gpio::InputPin>,
}

impl RppalBackend {
    /// Opens the Raspberry Pi's GPIO.
    pub fn open() -> Result<RppalBackend, GpioError> {
        let gpio = Gpio::new().map_err(|e| match e {
            rppal::gpio::Error::PermissionDenied(path) => {
                GpioError::Permission { path: path.into() }
            }
            other => GpioError::NotAPi {
                detail: other.to_string(),
            },
        })?;
        Ok(RppalBackend {
            gpio,
            inputs: Vec::new(),
        })
    }

    fn pin(&self, line: u32) -> Result<Pin, GpioError> {
        let bcm = u8::try_from(line).map_err(|_| GpioError::NoLine {
            chip: "the Raspberry Pi".into(),
            line,
            detail: "BCM numbers go from 0 to 53".into(),
        })?;
        self.gpio.get(bcm).map_err(|e| pin_error(line, e))
    }
}

fn pin_error(line: u32, e: rppal::gpio::Error) -> GpioError {
    match e {
        rppal::gpio::Error::PinUsed(_) => GpioError::Busy {
            line,
            consumer: "another part of kioskpay (the pin appears twice in the config)".into(),
        },
        rppal::gpio::Error::PinNotAvailable(_) => GpioError::NoLine {
            chip: "the Raspberry Pi".into(),
            line,
            detail: "this model has no such BCM GPIO".into(),
        },
        rppal::gpio::Error::PermissionDenied(path) => GpioError::Permission { path: path.into() },
        rppal::gpio::Error::Io(io) if io.raw_os_error() == Some(libc::EBUSY) => GpioError::Busy {
            line,
            consumer: "another process or a kernel driver".into(),
        },
        other => GpioError::Line {
            line,
            detail: other.to_string(),
        },
    }
}

impl GpioBackend for RppalBackend {
    fn watch(&mut self, inputs: &[InputRequest]) -> Result<mpsc::Receiver<Edge>, GpioError> {
        let (tx, rx) = mpsc::channel(EDGE_BUFFER);
        for request in inputs {
            let pin = self.pin(request.line)?;
            let mut input = match request.pull {
                Pull::Up => pin.into_input_pullup(),
                Pull::Down => pin.into_input_pulldown(),
                Pull::Off => pin.into_input(),
            };
            let tx = tx.clone();
            let line = request.line;
            input
                .set_async_interrupt(Trigger::Both, request.debounce, move |event| {
                    let edge = Edge {
                        line,
                        rising: event.trigger == Trigger::RisingEdge,
                        at: event.timestamp,
                    };
                    // rppal's interrupt thread is not a tokio thread, so blocking here is
                    // allowed; an error only means kioskpay is shutting down.
                    let _ = tx.blocking_send(edge);
                })
                .map_err(|e| pin_error(line, e))?;
            self.inputs.push(input);
        }
        Ok(rx)
    }

    fn output(&mut self, line: u32, high: bool) -> Result<Box<dyn OutputLine>, GpioError> {
        let pin = self.pin(line)?;
        let mut out = if high {
            pin.into_output_high()
        } else {
            pin.into_output_low()
        };
        // Keep the last level when kioskpay exits: busy stays asserted rather than floating.
        out.set_reset_on_drop(false);
        Ok(Box::new(RppalOutput(out)))
    }
}

struct RppalOutput(rppal::gpio::OutputPin);

impl OutputLine for RppalOutput {
    fn set_high(&mut self, high: bool) -> Result<(), GpioError> {
        self.0.write(if high { Level::High } else { Level::Low });
        Ok(())
    }
}
