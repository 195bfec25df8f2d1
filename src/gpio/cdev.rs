//! Any Linux board, through the GPIO character device (`/dev/gpiochipN`, uAPI v2).
//!
//! Lines are offsets on the chip named by `gpio.chip`; `gpioinfo` (package `gpiod`) lists them
//! with their names and current consumers. The kernel timestamps each edge on its monotonic
//! clock and debounces button lines itself. The service user needs read/write access to the
//! chip device: the `gpio` group on Raspberry Pi OS, or a udev rule elsewhere.
//!
//! Each input line is its own request read by its own tokio task, so that every button keeps
//! its own debounce period; the tasks end when the backend is dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gpiocdev::line::{Bias, EdgeDetection, EdgeKind, Value};
use gpiocdev::tokio::AsyncRequest;
use gpiocdev::{Chip, Request};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use super::lines::{Edge, GpioBackend, GpioError, InputRequest, OutputLine, EDGE_BUFFER};
use crate::gpio::Pull;

/// The name the kernel shows as the lines' consumer (`gpioinfo`).
const CONSUMER: &str = "kioskpay";

/// A GPIO chip and the readers of its claimed input lines.
pub struct CdevBackend {
    chip: PathBuf,
    /// The chip, kept open to explain failed requests (who holds a line, how many lines exist).
    info: Chip,
    readers: Vec<JoinHandle<()>>,
}

impl CdevBackend {
    /// Opens the chip, telling apart a missing device from one kioskpay may not open.
    pub fn open(chip: &Path) -> Result<CdevBackend, GpioError> {
        let info = Chip::from_path(chip).map_err(|e| match e {
            gpiocdev::Error::Os(errno) if errno.0 == libc::EACCES || errno.0 == libc::EPERM => {
                GpioError::Permission {
                    path: chip.to_path_buf(),
                }
            }
            other => GpioError::NoChip {
                path: chip.to_path_buf(),
                detail: other.to_string(),
            },
        })?;
        Ok(CdevBackend {
            chip: chip.to_path_buf(),
            info,
            readers: Vec::new(),
        })
    }

    /// Explains why requesting `line` failed.
    fn request_error(&self, line: u32, e: gpiocdev::Error) -> GpioError {
        match self.info.line_info(line) {
            Err(_) => GpioError::NoLine {
                chip: self.chip.display().to_string(),
                line,
                detail: match self.info.info() {
                    Ok(info) => format!("it has lines 0 to {}", info.num_lines.saturating_sub(1)),
                    Err(_) => e.to_string(),
                },
            },
            Ok(info) if info.used => GpioError::Busy {
                line,
                consumer: if info.consumer.is_empty() {
                    "an unnamed consumer".into()
                } else {
                    info.consumer
                },
            },
            Ok(_) => GpioError::Line {
                line,
                detail: e.to_string(),
            },
        }
    }
}

impl Drop for CdevBackend {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

impl GpioBackend for CdevBackend {
    fn watch(&mut self, inputs: &[InputRequest]) -> Result<mpsc::Receiver<Edge>, GpioError> {
        let (tx, rx) = mpsc::channel(EDGE_BUFFER);
        for input in inputs {
            let line = input.line;
            let mut builder = Request::builder();
            builder
                .on_chip(&self.chip)
                .with_consumer(CONSUMER)
                .with_line(line)
                .as_input()
                .with_bias(match input.pull {
                    Pull::Up => Bias::PullUp,
                    Pull::Down => Bias::PullDown,
                    Pull::Off => Bias::Disabled,
                })
                .with_edge_detection(EdgeDetection::BothEdges);
            if let Some(period) = input.debounce {
                builder.with_debounce_period(period);
            }
            let request = builder.request().map_err(|e| self.request_error(line, e))?;
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(GpioError::Line {
                    line,
                    detail: "GPIO inputs must be opened inside kioskpay's async runtime".into(),
                });
            }
            let request = AsyncRequest::new(request);
            let tx = tx.clone();
            self.readers.push(tokio::spawn(async move {
                loop {
                    let event = match request.read_edge_event().await {
                        Ok(event) => event,
                        Err(e) => {
                            warn!(line, error = %e, "reading GPIO edges failed; this line is no longer read");
                            return;
                        }
                    };
                    let edge = Edge {
                        line,
                        rising: event.kind == EdgeKind::Rising,
                        at: Duration::from_nanos(event.timestamp_ns),
                    };
                    if tx.send(edge).await.is_err() {
                        return;
                    }
                }
            }));
        }
        Ok(rx)
    }

    fn output(&mut self, line: u32, high: bool) -> Result<Box<dyn OutputLine>, GpioError> {
        let value = if high { Value::Active } else { Value::Inactive };
        let request = Request::builder()
            .on_chip(&self.chip)
            .with_consumer(CONSUMER)
            .with_line(line)
            .as_output(value)
            .request()
            .map_err(|e| self.request_error(line, e))?;
        Ok(Box::new(CdevOutput { request, line }))
    }
}

struct CdevOutput {
    request: Request,
    line: u32,
}

impl OutputLine for CdevOutput {
    fn set_high(&mut self, high: bool) -> Result<(), GpioError> {
        let value = if high { Value::Active } else { Value::Inactive };
        self.request
            .set_value(self.line, value)
            .map_err(|e| GpioError::Line {
                line: self.line,
                detail: e.to_string(),
            })
    }
}
