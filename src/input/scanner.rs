//! Cutting scanned codes out of a byte stream, whatever the stream is, and judging each one.
//!
//! The reader is generic over [`tokio::io::AsyncRead`]: the real serial device, a pseudo-terminal,
//! stdin or `tokio::io::duplex` in tests all go through the same code, so what the tests prove
//! holds on the kiosk, on every target, including under qemu-user where serial ports cannot be
//! opened.
//!
//! ## Framing (`input.framing`, `input.terminator`, `input.gap_ms`)
//!
//! | `framing` | a code ends at | for scanners that |
//! |---|---|---|
//! | `line` (default) | the `terminator` | send a suffix (CR, LF, CRLF or TAB; factory default on most) |
//! | `stx_etx` | ETX (0x03), after an STX (0x02) | wrap each code in STX/ETX; bytes outside a frame are noise |
//! | `gap` | the `terminator`, or a pause of `gap_ms` | send no suffix at all |
//!
//! `terminator` is `cr`, `lf`, `crlf` (LF ends the code, a CR before it is dropped), `tab`, or
//! `any` (default: CR, LF and TAB each end a code, and CRLF is a code plus an empty one). Pick
//! one terminator only when codes contain one of the others; a terminator byte that is not the
//! configured one stays in the code, which is then refused as not text.
//!
//! Rules for every mode, chosen for what scanners actually send:
//! - Empty or whitespace-only codes are ignored.
//! - A code longer than `max_line` bytes is noise (a scanner in the wrong mode, a wrong baud
//!   rate): it is dropped with one warning and the reader resynchronises at the next terminator
//!   (or ETX, or STX). Memory is bounded by `max_line` whatever arrives.
//! - The same code read again within `duplicate_window_ms` of its last reading counts once. The
//!   window restarts at every repeat, so a code lying under a scanner in presentation mode is
//!   charged once however long it lies there; it can be scanned again after a pause.
//! - At end of input an unterminated last line is judged like any other when the stream is a
//!   pipe or file ([`read_carts`]), and dropped when it is a device that went away.
//!
//! ## Judging
//!
//! Each code goes through [`codes::decode`] with the configured formats. A code that names an
//! amount becomes [`InputEvent::Cart`] (or [`InputEvent::SignedCart`] for a signed code, and
//! [`InputEvent::SlipCart`] for a GS1 payment slip with a cart reference, which may be paid
//! only once: the payment flow checks that against its journal). Anything else
//! becomes [`InputEvent::Unreadable`] with the decoder's precise reason for the log and the
//! customer reason for the display; nothing about a refused code ever reaches Dintero.
//!
//! While a technician runs `test scanner`, the next code judged after the duplicate window goes
//! to the test instead, as a [`ScanReport`] through [`ScanConfig::diversion`]: the flow never
//! sees it, so a test scan cannot start a payment.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::codes::{self, DecodeConfig, Format};
use super::InputEvent;
use crate::cart::{Cart, CartSource};
use crate::input::InputConfig;
use crate::messages::{ScanDiversion, ScanReport};
use crate::money::Currency;

/// Size of one read: a few scanned codes, small enough to live on the stack.
const READ_CHUNK: usize = 256;

/// How much of a bad line a log message quotes: enough to recognise it, never a screenful of
/// line noise.
const EXCERPT_LEN: usize = 40;

const STX: u8 = 0x02;
const ETX: u8 = 0x03;

/// How codes are cut out of the byte stream (`input.framing`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// A terminator ends a code.
    #[default]
    Line,
    /// Each code is STX, data, ETX; anything between frames is noise.
    StxEtx,
    /// A terminator or a pause of `gap_ms` ends a code, for scanners without a suffix.
    Gap,
}

/// Which byte(s) end a code (`input.terminator`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Terminator {
    /// Carriage return.
    Cr,
    /// Line feed.
    Lf,
    /// CR LF: the LF ends the code and the CR before it is dropped.
    Crlf,
    /// Horizontal tab.
    Tab,
    /// Any of CR, LF and TAB.
    #[default]
    Any,
}

impl Terminator {
    fn ends_code(self, b: u8) -> bool {
        match self {
            Terminator::Cr => b == b'\r',
            Terminator::Lf | Terminator::Crlf => b == b'\n',
            Terminator::Tab => b == b'\t',
            Terminator::Any => matches!(b, b'\r' | b'\n' | b'\t'),
        }
    }
}

/// Everything the reader needs: how to frame, and how to judge what it framed.
#[derive(Clone, Debug)]
pub struct ScanConfig {
    /// How codes are cut out of the stream.
    pub framing: Framing,
    /// Which byte(s) end a code.
    pub terminator: Terminator,
    /// With [`Framing::Gap`]: the pause that ends a code.
    pub gap: Duration,
    /// Longest code kept; longer ones are dropped as noise.
    pub max_line: usize,
    /// A repeat of the same code within this window counts once; zero turns it off.
    pub duplicate_window: Duration,
    /// Formats, currency, EAN-13 rules and signing key for [`codes::decode`].
    pub decode: DecodeConfig,
    /// Where a scan goes instead of the flow while a technician tests the scanner.
    pub diversion: ScanDiversion,
}

impl ScanConfig {
    /// The reader settings of `[input]`, for a kiosk charging in `currency`.
    pub fn from_config(input: &InputConfig, currency: Currency) -> ScanConfig {
        ScanConfig {
            framing: input.framing,
            terminator: input.terminator,
            gap: input.gap(),
            max_line: input.max_line,
            duplicate_window: input.duplicate_window(),
            decode: input.decode_config(currency),
            diversion: ScanDiversion::default(),
        }
    }

    /// Line framing on any terminator, 512-byte codes, no duplicate window, and `formats`:
    /// what development tools and tests start from.
    pub fn new(currency: Currency, formats: &[Format]) -> ScanConfig {
        let mut decode = DecodeConfig::new(currency);
        decode.formats = formats.to_vec();
        ScanConfig {
            framing: Framing::Line,
            terminator: Terminator::Any,
            gap: Duration::from_millis(50),
            max_line: 512,
            duplicate_window: Duration::ZERO,
            decode,
            diversion: ScanDiversion::default(),
        }
    }
}

/// What happens to an unterminated line when the stream ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtEnd {
    /// Judge it: a file or pipe ending without a newline is complete.
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

/// Reads codes from `reader` and sends each as a cart or an unreadable code on `tx`.
///
/// Returns `Ok(())` at end of input or when the receiver is gone, and the error when a read
/// fails (for a serial device: usually unplugged). Never panics on any byte sequence.
pub async fn read_carts<R: AsyncRead + Unpin>(
    reader: R,
    config: &ScanConfig,
    source: CartSource,
    tx: &mpsc::Sender<InputEvent>,
) -> std::io::Result<()> {
    match frame(reader, config, source, tx, AtEnd::Parse).await {
        Stop::Eof | Stop::ReceiverGone => Ok(()),
        Stop::Io(e) => Err(e),
    }
}

/// The framing loop behind [`read_carts`], with the end-of-stream policy left to the caller.
pub(crate) async fn frame<R: AsyncRead + Unpin>(
    mut reader: R,
    config: &ScanConfig,
    source: CartSource,
    tx: &mpsc::Sender<InputEvent>,
    at_end: AtEnd,
) -> Stop {
    let mut framer = Framer::new(config.framing, config.terminator, config.max_line);
    let mut judge = Judge::new(config, source);
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let read = reader.read(&mut chunk);
        let gap_ends = (config.framing == Framing::Gap && framer.has_partial())
            .then(|| Instant::now() + config.gap);
        let wake = match (gap_ends, judge.refusals.summary_due()) {
            (Some(gap), Some(summary)) => Some(gap.min(summary)),
            (gap, summary) => gap.or(summary),
        };
        let result = match wake {
            // Cancelling a pending read loses no bytes: AsyncReadExt::read is cancel-safe.
            Some(wake) => match tokio::time::timeout_at(wake, read).await {
                Ok(result) => result,
                Err(_) => {
                    judge.refusals.summarize_if_due(source, Instant::now());
                    if gap_ends.is_some_and(|at| at <= Instant::now()) {
                        if let Some(code) = framer.end(source) {
                            if !judge.deliver(&code, tx).await {
                                return Stop::ReceiverGone;
                            }
                        }
                    }
                    continue;
                }
            },
            None => read.await,
        };
        let n = match result {
            Ok(0) => {
                judge.refusals.summarize(source);
                if let Some(code) = framer.finish(source) {
                    match at_end {
                        AtEnd::Parse => {
                            if !judge.deliver(&code, tx).await {
                                return Stop::ReceiverGone;
                            }
                        }
                        AtEnd::Drop => tracing::warn!(
                            %source,
                            line = %excerpt(&code),
                            "input ended in the middle of a code; dropped it, a truncated code \
                             could name a wrong amount"
                        ),
                    }
                }
                return Stop::Eof;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                judge.refusals.summarize(source);
                if framer.has_partial() {
                    tracing::warn!(%source, "read failed in the middle of a code; dropped it");
                }
                return Stop::Io(e);
            }
        };
        for &b in &chunk[..n] {
            if let Some(code) = framer.push(b, source) {
                if !judge.deliver(&code, tx).await {
                    return Stop::ReceiverGone;
                }
            }
        }
    }
}

/// Turns framed codes into events: the duplicate window, then [`codes::decode`].
struct Judge {
    decode: DecodeConfig,
    diversion: ScanDiversion,
    source: CartSource,
    window: Duration,
    /// The last code judged and when it was last seen, for the duplicate window.
    last: Option<(Vec<u8>, Instant)>,
    refusals: RefusalLog,
}

/// Refused scans logged one by one per minute; the rest are counted into one summary line, so
/// that a scanner sending garbage (wrong baud rate, a hostile device) cannot flood the log.
const REFUSALS_LOGGED_PER_WINDOW: u32 = 5;
const REFUSAL_WINDOW: Duration = Duration::from_secs(60);

/// Rate limit for "code refused" lines.
#[derive(Default)]
struct RefusalLog {
    /// When the current window started (at its first refusal).
    since: Option<Instant>,
    logged: u32,
    unlogged: u32,
}

impl RefusalLog {
    /// Counts one refusal; `true` when it is to be logged on its own.
    fn refused(&mut self, source: CartSource, now: Instant) -> bool {
        self.summarize_if_due(source, now);
        self.since.get_or_insert(now);
        if self.logged < REFUSALS_LOGGED_PER_WINDOW {
            self.logged += 1;
            true
        } else {
            self.unlogged += 1;
            false
        }
    }

    /// When the summary of unlogged refusals is due, if any are waiting.
    fn summary_due(&self) -> Option<Instant> {
        self.since
            .filter(|_| self.unlogged > 0)
            .map(|since| since + REFUSAL_WINDOW)
    }

    fn summarize_if_due(&mut self, source: CartSource, now: Instant) {
        if self
            .since
            .is_some_and(|since| now >= since + REFUSAL_WINDOW)
        {
            self.summarize(source);
        }
    }

    /// Logs the count of refusals not logged one by one, and starts a new window.
    fn summarize(&mut self, source: CartSource) {
        if self.unlogged > 0 {
            tracing::warn!(
                %source,
                not_logged = self.unlogged,
                "{} more refused scans in the last minute (a scanner sending garbage: check its \
                 baud rate and mode)",
                self.unlogged
            );
        }
        *self = RefusalLog::default();
    }
}

impl Judge {
    fn new(config: &ScanConfig, source: CartSource) -> Judge {
        Judge {
            decode: config.decode.clone(),
            diversion: config.diversion.clone(),
            source,
            window: config.duplicate_window,
            last: None,
            refusals: RefusalLog::default(),
        }
    }

    /// Judges one code and sends the event; `false` when the receiver is gone.
    async fn deliver(&mut self, code: &[u8], tx: &mpsc::Sender<InputEvent>) -> bool {
        let source = self.source;
        let now = Instant::now();
        if let Some((last, seen)) = &mut self.last {
            if last.as_slice() == code && now.duration_since(*seen) < self.window {
                *seen = now;
                tracing::debug!(%source, code = %excerpt(code), "repeated scan ignored");
                return true;
            }
        }
        if !self.window.is_zero() {
            self.last = Some((code.to_vec(), now));
        }
        self.decode.now_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let decoded = codes::decode(code, &self.decode);
        let diverted = self.diversion.divert(|| match &decoded {
            Ok(d) => ScanReport::Decoded {
                format: d.format.name(),
                amount: d.amount,
                reference: d.reference.clone(),
            },
            Err(e) => ScanReport::Refused {
                reason: e.to_string(),
                customer: e.customer_reason(),
            },
        });
        if diverted {
            tracing::info!(%source, "scan handed to the scanner test, not to the payment flow");
            return true;
        }
        let event = match decoded {
            Ok(decoded) => {
                tracing::info!(
                    %source,
                    format = %decoded.format,
                    amount = %decoded.amount,
                    reference = decoded.reference.as_deref().unwrap_or("-"),
                    "cart scanned"
                );
                let cart = Cart {
                    amount: decoded.amount,
                    reference: decoded.reference,
                    source,
                };
                match decoded.format {
                    Format::Signed => InputEvent::SignedCart(cart),
                    Format::Gs1 | Format::DigitalLink if cart.reference.is_some() => {
                        InputEvent::SlipCart(cart)
                    }
                    _ => InputEvent::Cart(cart),
                }
            }
            Err(e) => {
                let customer = e.customer_reason();
                if self.refusals.refused(source, now) {
                    tracing::warn!(%source, reason = %e, %customer, "code refused");
                }
                InputEvent::Unreadable {
                    reason: e.to_string(),
                    customer,
                }
            }
        };
        tx.send(event).await.is_ok()
    }
}

/// Byte-at-a-time code splitter with a hard bound on what it holds.
struct Framer {
    framing: Framing,
    terminator: Terminator,
    code: Vec<u8>,
    max_line: usize,
    /// Bytes seen since an over-long code started; nonzero means "discarding until the end".
    overflow: usize,
    /// STX/ETX framing: whether an STX opened a frame that is still collecting.
    in_frame: bool,
    /// STX/ETX framing: bytes dropped outside frames since the last warning.
    noise: usize,
}

impl Framer {
    fn new(framing: Framing, terminator: Terminator, max_line: usize) -> Framer {
        Framer {
            framing,
            terminator,
            code: Vec::with_capacity(max_line.min(1024)),
            max_line,
            overflow: 0,
            in_frame: false,
            noise: 0,
        }
    }

    /// Feeds one byte; returns a complete, non-blank code when `b` ends one.
    fn push(&mut self, b: u8, source: CartSource) -> Option<Vec<u8>> {
        match self.framing {
            Framing::Line | Framing::Gap => {
                if self.terminator.ends_code(b) {
                    return self.end(source);
                }
                self.collect(b);
                None
            }
            Framing::StxEtx => self.push_framed(b, source),
        }
    }

    fn push_framed(&mut self, b: u8, source: CartSource) -> Option<Vec<u8>> {
        match (b, self.in_frame) {
            (STX, in_frame) => {
                if in_frame && (!self.code.is_empty() || self.overflow > 0) {
                    tracing::warn!(
                        %source,
                        start = %excerpt(&self.code),
                        "STX inside a frame: dropped the unfinished code before it (noise, or a \
                         scanner that lost its ETX)"
                    );
                }
                self.report_noise(source);
                self.code.clear();
                self.overflow = 0;
                self.in_frame = true;
                None
            }
            (ETX, true) => {
                self.in_frame = false;
                self.end(source)
            }
            (_, true) => {
                self.collect(b);
                None
            }
            // Suffixes a scanner may add after ETX are not noise.
            (b'\r' | b'\n' | b'\t' | b' ', false) => None,
            (_, false) => {
                self.noise = self.noise.saturating_add(1);
                None
            }
        }
    }

    fn report_noise(&mut self, source: CartSource) {
        if self.noise > 0 {
            tracing::warn!(
                %source,
                bytes = self.noise,
                "dropped bytes outside STX/ETX frames (noise, or the scanner is not set to \
                 STX/ETX framing: check input.framing)"
            );
            self.noise = 0;
        }
    }

    fn collect(&mut self, b: u8) {
        if self.overflow > 0 {
            self.overflow = self.overflow.saturating_add(1);
        } else if self.code.len() >= self.max_line {
            // Keep the start for the warning, stop growing.
            self.overflow = self.code.len() + 1;
        } else {
            self.code.push(b);
        }
    }

    /// A terminator, ETX or (with gap framing) a pause ended the current code.
    fn end(&mut self, source: CartSource) -> Option<Vec<u8>> {
        if self.overflow > 0 {
            tracing::warn!(
                %source,
                bytes = self.overflow,
                max_line = self.max_line,
                start = %excerpt(&self.code),
                "dropped an over-long code (noise, or the scanner is set to a different baud \
                 rate or mode); raise input.max_line only if real codes are this long"
            );
            self.overflow = 0;
            self.code.clear();
            return None;
        }
        if self.terminator == Terminator::Crlf && self.code.last() == Some(&b'\r') {
            self.code.pop();
        }
        self.take()
    }

    /// The pending code at end of input, unless it is blank, over-long or an unclosed frame.
    fn finish(&mut self, source: CartSource) -> Option<Vec<u8>> {
        if self.framing == Framing::StxEtx {
            self.report_noise(source);
            if self.in_frame {
                tracing::warn!(%source, start = %excerpt(&self.code), "input ended inside an STX frame; dropped it");
            }
            return None;
        }
        if self.overflow > 0 {
            tracing::warn!(
                %source,
                bytes = self.overflow,
                max_line = self.max_line,
                "input ended inside an over-long code; dropped it"
            );
            return None;
        }
        self.take()
    }

    fn has_partial(&self) -> bool {
        !self.code.is_empty() || self.overflow > 0 || self.in_frame
    }

    fn take(&mut self) -> Option<Vec<u8>> {
        let blank = self.code.iter().all(|&b| b == b' ');
        let code = std::mem::take(&mut self.code);
        self.code.reserve(self.max_line.min(1024));
        (!blank).then_some(code)
    }
}

/// Renders bytes from the wire for a log line: printable ASCII as is, everything else as `\xNN`,
/// quoted, and cut after a few dozen characters with the total length noted.
///
/// Whatever a scanner or a noisy line sends, the result is one short line of plain ASCII, so it
/// cannot corrupt a terminal, a journal or the display.
pub fn excerpt(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(EXCERPT_LEN + 16);
    out.push('"');
    for &b in bytes.iter().take(EXCERPT_LEN) {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    if bytes.len() > EXCERPT_LEN {
        out.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::money::Money;

    async fn frame_to_end(input: &[u8], at_end: AtEnd) -> Vec<InputEvent> {
        let (reader, mut writer) = tokio::io::duplex(64);
        writer.write_all(input).await.unwrap();
        drop(writer);
        let (tx, mut rx) = mpsc::channel(8);
        let config = ScanConfig::new(Currency::NOK, &[Format::Plain]);
        let stop = frame(reader, &config, CartSource::Serial, &tx, at_end).await;
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

    #[test]
    fn excerpt_escapes_and_limits() {
        assert_eq!(excerpt(b"399.00;A"), r#""399.00;A""#);
        assert_eq!(excerpt(b"a\x00\xff\"\\"), r#""a\x00\xff\"\\""#);
        assert_eq!(excerpt("ø".as_bytes()), r#""\xc3\xb8""#);
        let long = excerpt(&[b'x'; 100]);
        assert!(long.ends_with("... (100 bytes)"), "{long}");
        assert_eq!(long.matches('x').count(), EXCERPT_LEN);
    }
}
