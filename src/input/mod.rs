//! # The input unit: where carts come from
//!
//! The kiosk's input unit turns what a customer scans into [`InputEvent`]s for the payment flow.
//! It judges only the code itself (is this exactly one positive amount, is the reference sane);
//! whether the kiosk may charge it now (`kiosk.max_amount`, a payment already running, the
//! terminal's health) is the payment flow's decision, and the flow shows every refusal on the
//! display.
//!
//! ## What a code looks like
//!
//! One line per cart: `AMOUNT[;REFERENCE]`, the amount in major units with the currency's
//! decimals, e.g. `399.00` or `399.00;KID12345`. Rules are in [`line`](mod@line); `1.001`, `0.00`, `-1`,
//! `1e3` and references with spaces or more than 64 characters are refused, never rounded or
//! cleaned up.
//!
//! ## Sources (`[input]` in the config)
//!
//! ```toml
//! [input]
//! kind = "serial"                           # or "stdin" for development and the demo
//! device = "/dev/serial/by-id/usb-Scanner"  # default /dev/ttyACM0
//! baud = 9600                               # the scanner's setting; 115200 is also common
//! max_line = 512                            # longer lines are noise and are dropped
//! ```
//!
//! - **serial**: an RS-232 scanner through an adapter (`/dev/ttyUSB*`, `/dev/ttyAMA*`) or a USB
//!   scanner in CDC-ACM mode (`/dev/ttyACM*`). Set the scanner to send CR, LF, CRLF or TAB after
//!   each code. The `kioskpay` user must be in the `dialout` group. An unplugged scanner is
//!   reported to the flow and looked for every two seconds; see [`serial`].
//! - **gpio**: no scanner; carts come from preset buttons or a pulse train, see [`gpio`]. GPIO
//!   can also run beside a scanner with `[gpio] enabled = true`.
//! - **stdin**: one code per line on standard input. At end of input the unit stops reading but
//!   the daemon keeps running, so `echo 399.00 | kioskpay run` finishes its payment.
//!
//! Framing (terminators, over-long lines, binary noise) is the same for every source; see
//! [`scanner`].
//!
//! ## Logs
//!
//! Every cart is logged at info with its amount and reference; every refused code at warn with
//! the reason, quoting the bytes escaped and shortened; a lost or found scanner at warn/info; an
//! open error once per distinct cause, with what to do about it.

use std::future::Future;

use tokio::sync::mpsc;

use crate::cart::{Cart, CartSource};
use crate::config::{InputConfig, InputKind};
use crate::money::Currency;

pub mod codes;
pub mod gpio;
pub mod line;
pub mod scanner;
pub mod serial;
mod stdin;

pub use line::{parse_line, CodeError};
pub use scanner::read_carts;

/// What the input unit tells the payment flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputEvent {
    /// A code that names a cart; the flow decides whether to charge it now.
    Cart(Cart),
    /// Something was scanned but it is not a cart code. The flow shows a refusal so the customer
    /// is not left waiting; the reason is for the log only.
    Unreadable {
        /// What is wrong, precise, ASCII, with any quoted bytes escaped and shortened.
        reason: String,
    },
    /// The scanner cannot be opened or has gone away: the kiosk cannot take carts.
    ScannerUnavailable,
    /// The scanner is open again after [`InputEvent::ScannerUnavailable`].
    ScannerBack,
}

/// Runs the configured input until `shutdown` completes or the flow drops its receiver.
///
/// Serial input runs until then, reopening a lost scanner. Stdin input stops reading at end of
/// input and then only waits for `shutdown`: the end of a pipe is not a reason to stop a daemon
/// in the middle of a payment.
pub async fn run(
    config: InputConfig,
    currency: Currency,
    tx: mpsc::Sender<InputEvent>,
    shutdown: impl Future<Output = ()>,
) {
    let work = async {
        match config.kind {
            InputKind::Serial => {
                serial::run(
                    &config.device,
                    config.baud,
                    config.max_line,
                    currency,
                    &tx,
                    serial::REOPEN_INTERVAL,
                )
                .await
            }
            InputKind::Stdin => read_stdin(config.max_line, currency, &tx).await,
            // The GPIO unit (`[gpio]`) is its own task, started by the daemon beside this one.
            InputKind::Gpio => std::future::pending().await,
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown => tracing::debug!("input stopped for shutdown"),
    }
}

async fn read_stdin(max_line: usize, currency: Currency, tx: &mpsc::Sender<InputEvent>) {
    let reader = match stdin::spawn() {
        Ok(reader) => reader,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the stdin reader thread; no carts from stdin");
            return std::future::pending().await;
        }
    };
    match read_carts(reader, currency, CartSource::Stdin, max_line, tx).await {
        Ok(()) => tracing::info!("stdin ended; no more carts from stdin, still running"),
        Err(e) => tracing::warn!(error = %e, "reading stdin failed; no more carts from stdin"),
    }
    if !tx.is_closed() {
        std::future::pending::<()>().await;
    }
}
