//! Framing scanned lines out of a byte stream, whatever the stream is.
//!
//! The reader is generic over [`tokio::io::AsyncRead`]: the real serial device, a pseudo-terminal,
//! stdin or `tokio::io::duplex` in tests all go through the same code, so what the tests prove
//! holds on the kiosk, on every target, including under qemu-user where serial ports cannot be
//! opened.
//!
//! Framing rules, chosen for what scanners actually send:
//! - A line ends at CR, LF or TAB (the three suffixes scanners are configured with); CRLF is a
//!   line followed by an empty line, and empty or whitespace-only lines are ignored.
//! - A line longer than `max_line` bytes is noise (a scanner in the wrong mode, a wrong baud
//!   rate): it is dropped with one warning and the reader resynchronises at the next terminator.
//!   Memory is bounded by `max_line` whatever arrives.
//! - A line with control bytes or invalid UTF-8 becomes [`InputEvent::Unreadable`] with the bytes
//!   escaped, so the customer is told and the log shows what came down the wire.
//! - At end of input an unterminated last line is parsed like any other (`echo -n 399.00 |`).

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::line::{excerpt, parse_line};
use super::InputEvent;
use crate::cart::CartSource;
use crate::money::Currency;

/// Size of one read: a few scanned lines, small enough to live on the stack.
const READ_CHUNK: usize = 256;

/// What happens to an unterminated line when the stream ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtEnd {
    /// Parse it: a file or pipe ending without a newline is complete.
    Parse,
    /// Drop it: a device that vanished mid-line sent a truncated code, and `399.00` cut to `39`
    /// must never become a charge of 0.39.
    Drop,
}

/// Why framing stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The stream ended (EOF).
    Eof,
    /// The payment flow dropped its receiver: the daemon is shutting down.
    ReceiverGone,
    /// Reading failed.
    Io(std::io::Error),
}

/// Reads lines from `reader`, sends each as a cart or an unreadable code on `tx`.
///
/// Returns `Ok(())` at end of input or when the receiver is gone, and the error when a read
/// fails (for a serial device: usually unplugged). Never panics on any byte sequence.
pub async fn read_carts<R: AsyncRead + Unpin>(
    reader: R,
    currency: Currency,
    source: CartSource,
    max_line: usize,
    tx: &mpsc::Sender<InputEvent>,
) -> std::io::Result<()> {
    match frame(reader, currency, source, max_line, tx, AtEnd::Parse).await {
        Stop::Eof | Stop::ReceiverGone => Ok(()),
        Stop::Io(e) => Err(e),
    }
}

/// The framing loop behind [`read_carts`], with the end-of-stream policy left to the caller.
pub(crate) async fn frame<R: AsyncRead + Unpin>(
    mut reader: R,
    currency: Currency,
    source: CartSource,
    max_line: usize,
    tx: &mpsc::Sender<InputEvent>,
    at_end: AtEnd,
) -> Stop {
    let mut framer = Framer::new(max_line);
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) => {
                if let Some(line) = framer.finish() {
                    match at_end {
                        AtEnd::Parse => {
                            if !deliver(&line, currency, source, tx).await {
                                return Stop::ReceiverGone;
                            }
                        }
                        AtEnd::Drop => tracing::warn!(
                            %source,
                            line = %excerpt(&line),
                            "input ended in the middle of a line; dropped it, a truncated code \
                             could name a wrong amount"
                        ),
                    }
                }
                return Stop::Eof;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if framer.has_partial() {
                    tracing::warn!(%source, "read failed in the middle of a line; dropped it");
                }
                return Stop::Io(e);
            }
        };
        for &b in &chunk[..n] {
            if let Some(line) = framer.push(b, source) {
                if !deliver(&line, currency, source, tx).await {
                    return Stop::ReceiverGone;
                }
            }
        }
    }
}

/// Turns one framed line into an event and sends it; `false` when the receiver is gone.
async fn deliver(
    line: &[u8],
    currency: Currency,
    source: CartSource,
    tx: &mpsc::Sender<InputEvent>,
) -> bool {
    let event = judge(line, currency, source);
    match &event {
        InputEvent::Cart(cart) => tracing::info!(
            %source,
            amount = %cart.amount,
            reference = cart.reference.as_deref().unwrap_or("-"),
            "cart scanned"
        ),
        InputEvent::Unreadable { reason } => {
            tracing::warn!(%source, %reason, "unreadable code")
        }
        InputEvent::ScannerUnavailable | InputEvent::ScannerBack => {}
    }
    tx.send(event).await.is_ok()
}

/// Judges one non-blank line.
fn judge(line: &[u8], currency: Currency, source: CartSource) -> InputEvent {
    if let Some(pos) = line.iter().position(|&b| b < 0x20 || b == 0x7f) {
        return InputEvent::Unreadable {
            reason: format!(
                "control byte 0x{:02x} at position {} in {}",
                line[pos],
                pos + 1,
                excerpt(line)
            ),
        };
    }
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(e) => {
            return InputEvent::Unreadable {
                reason: format!(
                    "not UTF-8 at byte {} in {}; check the scanner's baud rate and character set",
                    e.valid_up_to() + 1,
                    excerpt(line)
                ),
            }
        }
    };
    match parse_line(text, currency, source) {
        Ok(cart) => InputEvent::Cart(cart),
        Err(e) => InputEvent::Unreadable {
            reason: e.to_string(),
        },
    }
}

/// Byte-at-a-time line splitter with a hard bound on what it holds.
struct Framer {
    line: Vec<u8>,
    max_line: usize,
    /// Bytes seen since an over-long line started; nonzero means "discarding until terminator".
    overflow: usize,
}

impl Framer {
    fn new(max_line: usize) -> Framer {
        Framer {
            line: Vec::with_capacity(max_line.min(1024)),
            max_line,
            overflow: 0,
        }
    }

    /// Feeds one byte; returns a complete, non-blank line when `b` ends one.
    fn push(&mut self, b: u8, source: CartSource) -> Option<Vec<u8>> {
        if matches!(b, b'\r' | b'\n' | b'\t') {
            if self.overflow > 0 {
                tracing::warn!(
                    %source,
                    bytes = self.overflow,
                    max_line = self.max_line,
                    start = %excerpt(&self.line),
                    "dropped an over-long line (noise, or the scanner is set to a different baud \
                     rate or mode); raise input.max_line only if real codes are this long"
                );
                self.overflow = 0;
                self.line.clear();
                return None;
            }
            return self.take();
        }
        if self.overflow > 0 {
            self.overflow = self.overflow.saturating_add(1);
        } else if self.line.len() >= self.max_line {
            // Keep the start for the warning, stop growing.
            self.overflow = self.line.len() + 1;
        } else {
            self.line.push(b);
        }
        None
    }

    /// The pending line at end of input, unless it is blank or over-long.
    fn finish(&mut self) -> Option<Vec<u8>> {
        if self.overflow > 0 {
            tracing::warn!(
                bytes = self.overflow,
                max_line = self.max_line,
                "input ended inside an over-long line; dropped it"
            );
            return None;
        }
        self.take()
    }

    fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.overflow > 0
    }

    fn take(&mut self) -> Option<Vec<u8>> {
        let blank = self.line.iter().all(|&b| b == b' ');
        let line = std::mem::take(&mut self.line);
        self.line.reserve(self.max_line.min(1024));
        (!blank).then_some(line)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::cart::Cart;
    use crate::money::Money;

    async fn frame_to_end(input: &[u8], at_end: AtEnd) -> Vec<InputEvent> {
        let (reader, mut writer) = tokio::io::duplex(64);
        writer.write_all(input).await.unwrap();
        drop(writer);
        let (tx, mut rx) = mpsc::channel(8);
        let stop = frame(reader, Currency::NOK, CartSource::Serial, 512, &tx, at_end).await;
        assert!(matches!(stop, Stop::Eof), "{stop:?}");
        drop(tx);
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    }

    #[tokio::test]
    async fn device_ending_mid_line_drops_the_truncated_code() {
        let whole = InputEvent::Cart(Cart {
            amount: Money::new(100, Currency::NOK),
            reference: None,
            source: CartSource::Serial,
        });
        // "399.00\r\n" cut after "39" by an unplug: 0.39 must not be charged.
        assert_eq!(
            frame_to_end(b"1.00\r\n39", AtEnd::Drop).await,
            vec![whole.clone()]
        );
        // The same bytes from a pipe are a complete last line.
        assert_eq!(frame_to_end(b"1.00\r\n39", AtEnd::Parse).await.len(), 2);
    }
}
