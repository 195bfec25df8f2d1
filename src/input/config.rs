//! The `[input]` and `[gpio]` sections of the config file: the input unit's own settings.
//!
//! They live with the input because the input reads them; [`crate::config`] composes them into
//! the whole config, loads and validates it (the rules that need the rest of the file, such as
//! a button's amount against `kiosk.max_amount`, are there).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::codes::ean13::Ean13Rules;
use super::codes::{DecodeConfig, Format};
use super::scanner::{Framing, Terminator};
use super::serial::{FlowControl, Parity};
use crate::money::Currency;
use crate::secret::Secret;
use crate::setting::Invalid;

/// Which input unit feeds carts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// A barcode scanner on a serial device.
    #[default]
    Serial,
    /// Lines on standard input.
    Stdin,
    /// GPIO buttons or a pulse train only (`[gpio]`); no scanner.
    Gpio,
}

/// `[input]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// `serial`, `stdin` or `gpio`.
    #[serde(default)]
    pub kind: InputKind,
    /// The serial device.
    #[serde(default = "default_device")]
    pub device: PathBuf,
    /// Baud rate.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Parity of the serial line (`none`, `even`, `odd`): the scanner's setting; 8N1 is usual.
    #[serde(default)]
    pub parity: Parity,
    /// Flow control of the serial line (`none`, `software`, `hardware`): the scanner's setting.
    #[serde(default)]
    pub flow_control: FlowControl,
    /// Longest line accepted; longer ones are dropped (noise on the line).
    #[serde(default = "default_max_line")]
    pub max_line: usize,
    /// How codes are cut out of the byte stream: `line` (a terminator ends a code), `stx_etx`
    /// (STX ... ETX), `gap` (a terminator or a pause of `gap_ms` ends a code).
    #[serde(default)]
    pub framing: Framing,
    /// Which byte(s) end a code: `cr`, `lf`, `crlf`, `tab` or `any` of them.
    #[serde(default)]
    pub terminator: Terminator,
    /// With `framing = "gap"`: a pause this long ends a code (scanners without a suffix).
    #[serde(default = "default_gap_ms")]
    pub gap_ms: u64,
    /// The same code read again within this many milliseconds of the last read counts once
    /// (a scanner in presentation mode re-reads a code held under it); 0 turns this off.
    #[serde(default = "default_duplicate_window_ms")]
    pub duplicate_window_ms: u64,
    /// The payment-code formats this kiosk accepts; `None` (key absent) means the default,
    /// see [`InputConfig::enabled_formats`].
    #[serde(default)]
    pub formats: Option<Vec<Format>>,
    /// How in-store EAN-13 price codes are read (`[[input.ean13_rules]]`); the Norwegian/Swedish
    /// convention by default.
    #[serde(default)]
    pub ean13_rules: Ean13Rules,
    /// File holding the key shared with the merchant's POS for signed cart codes; must not be
    /// group- or world-readable.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// The key, read from `signing_key_file` by [`crate::config::Config::load`] or
    /// [`InputConfig::load_signing_key`].
    #[serde(skip)]
    pub signing_key: Option<Secret>,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            kind: InputKind::default(),
            device: default_device(),
            baud: default_baud(),
            parity: Parity::default(),
            flow_control: FlowControl::default(),
            max_line: default_max_line(),
            framing: Framing::default(),
            terminator: Terminator::default(),
            gap_ms: default_gap_ms(),
            duplicate_window_ms: default_duplicate_window_ms(),
            formats: None,
            ean13_rules: Ean13Rules::default(),
            signing_key_file: None,
            signing_key: None,
        }
    }
}

impl InputConfig {
    /// Checks what serde cannot: line speeds and sizes a scanner can have, at least one code
    /// format, the key that signed codes need, timings that frame a scan.
    pub fn check(&self) -> Result<(), Invalid> {
        let invalid = |key, value: String, expected: &str| Invalid::quoted(key, value, expected);
        if !(1200..=4_000_000).contains(&self.baud) {
            return Err(invalid(
                "input.baud",
                self.baud.to_string(),
                "a baud rate such as 9600 or 115200",
            ));
        }
        if !(16..=65536).contains(&self.max_line) {
            return Err(invalid(
                "input.max_line",
                self.max_line.to_string(),
                "16 to 65536 bytes",
            ));
        }
        let formats = self.enabled_formats();
        if formats.is_empty() {
            return Err(invalid(
                "input.formats",
                "[]".into(),
                "at least one of \"gs1\", \"digital_link\", \"ean13\", \"signed\", \"plain\"",
            ));
        }
        if formats.contains(&Format::Signed) && self.signing_key_file.is_none() {
            return Err(Invalid::plain(
                "input.signing_key_file",
                "(not set)",
                "a file with the key shared with the POS, because input.formats lists \"signed\"",
            ));
        }
        if !(5..=2_000).contains(&self.gap_ms) {
            return Err(invalid(
                "input.gap_ms",
                self.gap_ms.to_string(),
                "5 to 2000 milliseconds, longer than the pause between two bytes of one code \
                 (20 to 100 is usual)",
            ));
        }
        if self.duplicate_window_ms > 60_000 {
            return Err(invalid(
                "input.duplicate_window_ms",
                self.duplicate_window_ms.to_string(),
                "0 (off) to 60000 milliseconds",
            ));
        }
        Ok(())
    }

    /// The formats the kiosk accepts: `input.formats` when given, else the production default
    /// `gs1` and `digital_link`, plus `signed` when a signing key is configured.
    ///
    /// `plain` is for development and the demo. `ean13` is off by default because in-store
    /// price layouts are each retailer's choice (see [`crate::input::codes::ean13`]): a wrong
    /// rule table charges a wrong amount, so an installer turns it on after checking a label.
    pub fn enabled_formats(&self) -> Vec<Format> {
        match &self.formats {
            Some(formats) => formats.clone(),
            None => {
                let mut formats = vec![Format::Gs1, Format::DigitalLink];
                if self.signing_key_file.is_some() {
                    formats.push(Format::Signed);
                }
                formats
            }
        }
    }

    /// `gap_ms` as a duration.
    pub fn gap(&self) -> Duration {
        Duration::from_millis(self.gap_ms)
    }

    /// `duplicate_window_ms` as a duration.
    pub fn duplicate_window(&self) -> Duration {
        Duration::from_millis(self.duplicate_window_ms)
    }

    /// What the code decoder needs: the kiosk's currency, the enabled formats, the EAN-13 rules
    /// and the signing key. `now_unix` is 0; the reader sets the time of each scan.
    pub fn decode_config(&self, currency: Currency) -> DecodeConfig {
        DecodeConfig {
            currency,
            formats: self.enabled_formats(),
            ean13_rules: self.ean13_rules.clone(),
            signing_key: self.signing_key.clone(),
            now_unix: 0,
        }
    }
}

fn default_device() -> PathBuf {
    "/dev/ttyACM0".into()
}
fn default_baud() -> u32 {
    9600
}
fn default_max_line() -> usize {
    512
}
fn default_gap_ms() -> u64 {
    50
}
fn default_duplicate_window_ms() -> u64 {
    1_000
}
