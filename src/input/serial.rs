//! The scanner's serial device: opening it, and getting it back after an unplug.
//!
//! The device is opened with `tokio-serial` (no libudev) at `input.baud`, 8 data bits, one stop
//! bit, `input.parity` (default none) and `input.flow_control` (default none; `software` is
//! XON/XOFF, `hardware` RTS/CTS and needs the RTS/CTS wires of an RS-232 scanner), in raw mode,
//! and exclusively (`TIOCEXCL` plus an exclusive `flock`), so that ModemManager or a stray
//! `screen` cannot steal half of the bytes. Set these to what the scanner's manual or its
//! configuration barcodes say; a mismatch shows up in the log as codes refused for control
//! bytes or invalid UTF-8. USB CDC-ACM scanners ignore all of them. Whatever was
//! waiting in the kernel's buffer before the port opened is discarded: a code scanned while the
//! daemon was down belongs to a customer who has probably left.
//!
//! When the device cannot be opened or goes away (a USB scanner unplugged shows up as a read
//! error or end of input), the payment flow gets [`InputEvent::ScannerUnavailable`] and the
//! device is opened again every two seconds until it is back, which the flow learns from
//! [`InputEvent::ScannerBack`]. Point `input.device` at a stable udev name
//! (`/dev/serial/by-id/...` or a `SYMLINK+=` rule) rather than `/dev/ttyACM0`, whose number can
//! change when the scanner is plugged back in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_serial::{DataBits, SerialPort, SerialStream, StopBits};

use super::scanner::{frame, AtEnd, ScanConfig, Stop};
use super::InputEvent;
use crate::cart::CartSource;
use crate::input::InputConfig;

/// Parity of the scanner's line (`input.parity`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit (8N1, the usual setting).
    #[default]
    None,
    /// Even parity.
    Even,
    /// Odd parity.
    Odd,
}

/// Flow control of the scanner's line (`input.flow_control`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowControl {
    /// None (the usual setting: a scanner sends a few bytes at a time).
    #[default]
    None,
    /// XON/XOFF.
    Software,
    /// RTS/CTS.
    Hardware,
}

/// How the serial line is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineSettings {
    /// Baud rate.
    pub baud: u32,
    /// Parity.
    pub parity: Parity,
    /// Flow control.
    pub flow_control: FlowControl,
}

impl LineSettings {
    /// `baud` 8N1 without flow control: the factory default of most scanners.
    pub fn new(baud: u32) -> LineSettings {
        LineSettings {
            baud,
            parity: Parity::None,
            flow_control: FlowControl::None,
        }
    }

    /// The line settings of `[input]`.
    pub fn from_config(input: &InputConfig) -> LineSettings {
        LineSettings {
            baud: input.baud,
            parity: input.parity,
            flow_control: input.flow_control,
        }
    }
}

/// How often a missing scanner is looked for: quick enough that a re-plugged scanner works before
/// the next customer reaches it, slow enough to cost nothing on a Pi.
pub const REOPEN_INTERVAL: Duration = Duration::from_secs(2);

/// Why the scanner's device cannot be opened, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// No such file.
    #[error(
        "{device} does not exist: check input.device in the config, that the scanner is plugged \
         in (dmesg shows it), and the udev rule that names it"
    )]
    NotFound {
        /// The configured device.
        device: PathBuf,
    },
    /// The daemon's user may not open the device.
    #[error(
        "permission denied on {device}: add the kioskpay user to the dialout group \
         (usermod -aG dialout kioskpay, then restart the service) or fix the udev rule's \
         GROUP/MODE"
    )]
    PermissionDenied {
        /// The configured device.
        device: PathBuf,
    },
    /// Another process holds the device exclusively.
    #[error(
        "{device} is in use by another program: stop it (ModemManager, a getty or serial \
         console on that port, screen, minicom); fuser {device} shows which"
    )]
    Busy {
        /// The configured device.
        device: PathBuf,
    },
    /// The device or the system does not implement the serial-port ioctls (ENOSYS).
    #[error(
        "{device} cannot be set up as a serial port (function not implemented): it is not a \
         serial device, or this runs under an emulator such as qemu-user that lacks the TCGETS2 \
         ioctl; use input.kind = \"stdin\" there"
    )]
    Unsupported {
        /// The configured device.
        device: PathBuf,
    },
    /// The path is not valid UTF-8, which `tokio-serial` requires.
    #[error("input.device {device:?} is not valid UTF-8; rename the device link")]
    BadPath {
        /// The configured device.
        device: PathBuf,
    },
    /// Anything else the OS reported.
    #[error(
        "cannot open {device} at {baud} baud: {detail}; check input.device and input.baud \
         (9600 and 115200 are usual for scanners)"
    )]
    Other {
        /// The configured device.
        device: PathBuf,
        /// The configured baud rate.
        baud: u32,
        /// The OS's description.
        detail: String,
    },
}

/// Opens `device` as the scanner: 8 data bits, one stop bit, baud, parity and flow control as
/// `line` says, raw, exclusive, input flushed.
pub fn open(device: &Path, line: &LineSettings) -> Result<SerialStream, SerialError> {
    let Some(path) = device.to_str() else {
        return Err(SerialError::BadPath {
            device: device.to_path_buf(),
        });
    };
    let baud = line.baud;
    let builder = tokio_serial::new(path, baud)
        .data_bits(DataBits::Eight)
        .parity(match line.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .stop_bits(StopBits::One)
        .flow_control(match line.flow_control {
            FlowControl::None => tokio_serial::FlowControl::None,
            FlowControl::Software => tokio_serial::FlowControl::Software,
            FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
        })
        .exclusive(true);
    let port = SerialStream::open(&builder).map_err(|e| classify(device, baud, e))?;
    if let Err(e) = port.clear(tokio_serial::ClearBuffer::Input) {
        // Not fatal: the port works, it may merely deliver one stale code.
        tracing::warn!(device = %device.display(), error = %e, "could not flush stale input");
    }
    Ok(port)
}

/// Maps `serialport`'s error onto what the operator must do. `serialport` keeps the errno only
/// as a kind or, for kinds it does not name (ENOSYS among them), as the OS's description.
fn classify(device: &Path, baud: u32, e: tokio_serial::Error) -> SerialError {
    use std::io::ErrorKind as Io;
    use tokio_serial::ErrorKind as K;
    let device = device.to_path_buf();
    match e.kind {
        K::Io(Io::NotFound) => SerialError::NotFound { device },
        K::Io(Io::PermissionDenied) => SerialError::PermissionDenied { device },
        // EBUSY from TIOCEXCL, or the exclusive flock held by someone else.
        K::NoDevice => SerialError::Busy { device },
        K::Unknown if e.description.contains("not implemented") => {
            SerialError::Unsupported { device }
        }
        _ => SerialError::Other {
            device,
            baud,
            detail: e.description,
        },
    }
}

/// Reads carts from the scanner on `device` for as long as the payment flow listens, reopening
/// the device every `reopen` after it fails or disappears.
///
/// Sends [`InputEvent::ScannerUnavailable`] once when the scanner is lost (or cannot be opened at
/// start) and [`InputEvent::ScannerBack`] once it is open again. Returns only when the receiver
/// is dropped; cancel it (drop the future) to stop earlier.
pub async fn run(
    device: &Path,
    line: &LineSettings,
    scan: &ScanConfig,
    tx: &mpsc::Sender<InputEvent>,
    reopen: Duration,
) {
    let baud = line.baud;
    // Whether the flow believes the scanner is there; events are sent only on a change.
    let mut available = true;
    // The last open error logged, so that a scanner missing for a day logs once, not hourly.
    let mut last_error: Option<String> = None;
    loop {
        let port = match open(device, line) {
            Ok(port) => port,
            Err(e) => {
                let message = e.to_string();
                if last_error.as_deref() != Some(message.as_str()) {
                    tracing::error!(device = %device.display(), "scanner unavailable: {message}");
                    last_error = Some(message);
                }
                if available {
                    available = false;
                    if tx.send(InputEvent::ScannerUnavailable).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(reopen).await;
                continue;
            }
        };
        last_error = None;
        if available {
            tracing::info!(device = %device.display(), baud, "scanner open");
        } else {
            tracing::info!(device = %device.display(), baud, "scanner back");
            if tx.send(InputEvent::ScannerBack).await.is_err() {
                return;
            }
        }
        let stop = frame(port, scan, CartSource::Serial, tx, AtEnd::Drop).await;
        match stop {
            Stop::ReceiverGone => return,
            Stop::Eof => tracing::warn!(
                device = %device.display(),
                "scanner closed the line (unplugged?); reopening every {reopen:?}"
            ),
            Stop::Io(e) => tracing::warn!(
                device = %device.display(),
                error = %e,
                "scanner read failed (unplugged?); reopening every {reopen:?}"
            ),
        }
        available = false;
        if tx.send(InputEvent::ScannerUnavailable).await.is_err() {
            return;
        }
        // Wait before the first reopen: a device node that still exists but is hung up would
        // otherwise flap between open and lost as fast as the CPU allows.
        tokio::time::sleep(reopen).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio_serial::{Error, ErrorKind};

    use super::*;

    fn classified(kind: ErrorKind, description: &str) -> SerialError {
        classify(
            Path::new("/dev/ttyACM0"),
            9600,
            Error::new(kind, description),
        )
    }

    #[test]
    fn open_errors_tell_the_operator_what_to_do() {
        use std::io::ErrorKind as Io;
        let e = classified(ErrorKind::Io(Io::PermissionDenied), "Permission denied");
        assert!(e.to_string().contains("dialout group"), "{e}");
        let e = classified(ErrorKind::Io(Io::NotFound), "No such file or directory");
        assert!(e.to_string().contains("check input.device"), "{e}");
        let e = classified(ErrorKind::NoDevice, "Unable to acquire exclusive lock");
        assert!(e.to_string().contains("in use by another program"), "{e}");
        // serialport keeps ENOSYS only as nix's description of it.
        let e = classified(ErrorKind::Unknown, "Function not implemented");
        assert!(matches!(e, SerialError::Unsupported { .. }), "{e}");
        let e = classified(ErrorKind::Unknown, "No such device or address");
        assert!(
            e.to_string()
                .contains("9600 baud: No such device or address"),
            "{e}"
        );
    }
}
