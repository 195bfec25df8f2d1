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
//! Whatever the merchant prints: GS1 payment slips (as GS1-128, DataMatrix or QR, or as a GS1
//! Digital Link URI), in-store EAN-13 price labels, kioskpay's own signed cart codes, and for
//! development the plain `AMOUNT[;REFERENCE]`. [`codes`] reads them; `input.formats` says which
//! ones this kiosk accepts. A code that does not say exactly one chargeable amount is refused,
//! never guessed at, and the display tells the customer why in their words.
//!
//! ## Sources (`[input]` in the config)
//!
//! ```toml
//! [input]
//! kind = "serial"                           # or "stdin" for development and the demo
//! device = "/dev/serial/by-id/usb-Scanner"  # default /dev/ttyACM0
//! baud = 9600                               # the scanner's setting; 115200 is also common
//! parity = "none"                           # or "even", "odd"
//! flow_control = "none"                     # or "software" (XON/XOFF), "hardware" (RTS/CTS)
//! framing = "line"                          # or "stx_etx", or "gap" for scanners without a suffix
//! terminator = "any"                        # or "cr", "lf", "crlf", "tab"
//! gap_ms = 50                               # framing = "gap": a pause this long ends a code
//! duplicate_window_ms = 1000                # the same code again within 1 s counts once
//! max_line = 512                            # longer codes are noise and are dropped
//! formats = ["gs1", "digital_link"]         # default; add "ean13", "signed", "plain" as needed
//! signing_key_file = "/etc/kioskpay/signing_key"  # for "signed"; chmod 600
//! ```
//!
//! - **serial**: an RS-232 scanner through an adapter (`/dev/ttyUSB*`, `/dev/ttyAMA*`) or a USB
//!   scanner in CDC-ACM mode (`/dev/ttyACM*`). The `kioskpay` user must be in the `dialout`
//!   group. An unplugged scanner is reported to the flow, which shows that the scanner is
//!   unavailable, and looked for every two seconds; see [`serial`].
//! - **gpio**: no scanner; carts come from preset buttons or a pulse train, see [`crate::gpio`]. GPIO
//!   can also run beside a scanner with `[gpio] enabled = true`.
//! - **stdin**: one code per line on standard input. At end of input the unit stops reading but
//!   the daemon keeps running, so `echo 399.00 | kioskpay run` finishes its payment (with
//!   `plain` in `input.formats`).
//!
//! Framing (terminators, STX/ETX, gaps, over-long lines, binary noise, repeated scans) is the
//! same for every source; see [`scanner`]. `kioskpay decode` reads one code the same way and
//! prints what the kiosk would charge.
//!
//! ## Logs
//!
//! Every cart is logged at info with its format, amount and reference; every refused code at
//! warn with the decoder's precise reason and the customer reason; a lost or found scanner at warn/info; an
//! open error once per distinct cause, with what to do about it.

use std::future::Future;

use tokio::sync::mpsc;

pub use self::config::{InputConfig, InputKind};
use crate::cart::CartSource;
use crate::money::Currency;

pub mod codes;
pub mod config;
pub mod scanner;
pub mod serial;
mod stdin;

pub use crate::messages::{CustomerReason, InputEvent, ScanDiversion, ScanReport};
pub use scanner::{read_carts, ScanConfig};

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
    run_diverted(config, currency, tx, ScanDiversion::default(), shutdown).await
}

/// [`run`], handing a scan to a technician's scanner test while `diversion` holds a claim.
pub async fn run_diverted(
    config: InputConfig,
    currency: Currency,
    tx: mpsc::Sender<InputEvent>,
    diversion: ScanDiversion,
    shutdown: impl Future<Output = ()>,
) {
    let mut scan = ScanConfig::from_config(&config, currency);
    scan.diversion = diversion;
    let work = async {
        match config.kind {
            InputKind::Serial => {
                serial::run(
                    &config.device,
                    &serial::LineSettings::from_config(&config),
                    &scan,
                    &tx,
                    serial::REOPEN_INTERVAL,
                )
                .await
            }
            InputKind::Stdin => read_stdin(&scan, &tx).await,
            // The GPIO unit (`[gpio]`) is its own task, started by the daemon beside this one.
            InputKind::Gpio => std::future::pending().await,
        }
    };
    tokio::select! {
        () = work => {}
        () = shutdown => tracing::debug!("input stopped for shutdown"),
    }
}

async fn read_stdin(scan: &ScanConfig, tx: &mpsc::Sender<InputEvent>) {
    let reader = match stdin::spawn() {
        Ok(reader) => reader,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the stdin reader thread; no carts from stdin");
            return std::future::pending().await;
        }
    };
    match read_carts(reader, scan, CartSource::Stdin, tx).await {
        Ok(()) => tracing::info!("stdin ended; no more carts from stdin, still running"),
        Err(e) => tracing::warn!(error = %e, "reading stdin failed; no more carts from stdin"),
    }
    if !tx.is_closed() {
        std::future::pending::<()>().await;
    }
}
