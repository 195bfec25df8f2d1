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
pub use crate::board::pins::{ButtonPin, CancelPin, OutputPin, PinMap, Pull, PulsePin, VendPin};
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

/// Which driver the GPIO unit uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpioBackendKind {
    /// The Linux GPIO character device (`gpio.chip`): any board with a GPIO controller driver.
    #[default]
    Cdev,
    /// rppal: Raspberry Pi only (BCM numbers), refuses to start on other boards.
    Rppal,
}

/// `[gpio]`
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioConfig {
    /// Run the GPIO unit beside the `[input]` scanner (implied by `input.kind = "gpio"`).
    #[serde(default)]
    pub enabled: bool,
    /// `cdev` (any Linux board) or `rppal` (Raspberry Pi).
    #[serde(default)]
    pub backend: GpioBackendKind,
    /// The GPIO character device for `cdev` (default `/dev/gpiochip0`).
    #[serde(default)]
    pub chip: Option<PathBuf>,
    /// A pin map file; relative paths are read from the config file's directory.
    #[serde(default)]
    pub board: Option<PathBuf>,
    /// Preset-amount buttons.
    #[serde(default)]
    pub buttons: Option<Vec<ButtonPin>>,
    /// The cancel button.
    #[serde(default)]
    pub cancel: Option<CancelPin>,
    /// The pulse-train input.
    #[serde(default)]
    pub pulse: Option<PulsePin>,
    /// The busy/inhibit output.
    #[serde(default)]
    pub busy: Option<OutputPin>,
    /// The vend-approved output.
    #[serde(default)]
    pub vend: Option<VendPin>,
}

impl GpioConfig {
    /// The GPIO character device to open.
    pub fn chip_path(&self) -> PathBuf {
        self.chip
            .clone()
            .unwrap_or_else(|| PathBuf::from("/dev/gpiochip0"))
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

impl GpioConfig {
    /// Checks the section for a kiosk whose input unit is `kind` and whose largest cart is
    /// `max_amount`: amounts within it, timings a real button or pulse train can meet, each line
    /// used once and numbered as the backend counts.
    pub fn check(&self, kind: InputKind, max_amount: u64) -> Result<(), Invalid> {
        let invalid = |key, value: String, expected: &str| Invalid::plain(key, value, expected);
        let buttons = self.buttons.as_deref().unwrap_or_default();
        if kind == InputKind::Gpio && buttons.is_empty() && self.pulse.is_none() {
            return Err(invalid(
                "input.kind",
                "\"gpio\"".into(),
                "[[gpio.buttons]] or [gpio.pulse] (or a gpio.board file with them): with \
                 input.kind = \"gpio\" nothing else produces carts",
            ));
        }
        let mut pins: Vec<(u32, &str)> = Vec::new();
        for b in buttons {
            pins.push((b.pin, "gpio.buttons"));
            if b.amount == 0 || b.amount > max_amount {
                return Err(invalid(
                    "gpio.buttons.amount",
                    format!("{} (pin {})", b.amount, b.pin),
                    &format!(
                        "a positive amount in minor units up to kiosk.max_amount ({max_amount})"
                    ),
                ));
            }
            check_debounce("gpio.buttons.debounce_ms", b.debounce_ms)?;
        }
        if let Some(c) = &self.cancel {
            pins.push((c.pin, "gpio.cancel"));
            check_debounce("gpio.cancel.debounce_ms", c.debounce_ms)?;
        }
        if let Some(p) = &self.pulse {
            pins.push((p.pin, "gpio.pulse"));
            if p.unit == 0 || p.unit > max_amount {
                return Err(invalid(
                    "gpio.pulse.unit",
                    p.unit.to_string(),
                    "the value of one pulse in minor units, positive and at most kiosk.max_amount",
                ));
            }
            if !(1..=1000).contains(&p.min_width_ms) {
                return Err(invalid(
                    "gpio.pulse.min_width_ms",
                    p.min_width_ms.to_string(),
                    "1 to 1000 milliseconds (the shortest real pulse is longer)",
                ));
            }
            if p.max_width_ms <= p.min_width_ms || p.max_width_ms > 60_000 {
                return Err(invalid(
                    "gpio.pulse.max_width_ms",
                    p.max_width_ms.to_string(),
                    "more than gpio.pulse.min_width_ms and at most 60000 milliseconds",
                ));
            }
            if p.gap_ms <= p.min_width_ms || p.gap_ms > 60_000 {
                return Err(invalid(
                    "gpio.pulse.gap_ms",
                    p.gap_ms.to_string(),
                    "more than gpio.pulse.min_width_ms (and longer than any pause inside a \
                     train), at most 60000 milliseconds",
                ));
            }
            let most = u64::from(p.max_pulses).checked_mul(p.unit);
            if p.max_pulses == 0 || most.is_none() {
                return Err(invalid(
                    "gpio.pulse.max_pulses",
                    p.max_pulses.to_string(),
                    "a positive number of pulses whose total fits in minor units",
                ));
            }
        }
        if let Some(b) = &self.busy {
            pins.push((b.pin, "gpio.busy"));
        }
        if let Some(v) = &self.vend {
            pins.push((v.pin, "gpio.vend"));
            if !(10..=10_000).contains(&v.pulse_ms) {
                return Err(invalid(
                    "gpio.vend.pulse_ms",
                    v.pulse_ms.to_string(),
                    "10 to 10000 milliseconds",
                ));
            }
        }
        if pins.is_empty() {
            return Err(invalid(
                "gpio.enabled",
                "true".into(),
                "at least one of gpio.buttons, gpio.cancel, gpio.pulse, gpio.busy, gpio.vend \
                 (directly or through gpio.board)",
            ));
        }
        for (i, (pin, key)) in pins.iter().enumerate() {
            if let Some((_, other)) = pins[..i].iter().find(|(p, _)| p == pin) {
                return Err(invalid(
                    "gpio.pin",
                    pin.to_string(),
                    &format!("each line used once; {other} and {key} both use it"),
                ));
            }
            if self.backend == GpioBackendKind::Rppal && *pin > 53 {
                return Err(invalid(
                    "gpio.pin",
                    pin.to_string(),
                    "a BCM GPIO number from 0 to 53 with backend = \"rppal\" (27 on the header)",
                ));
            }
        }
        if self.backend == GpioBackendKind::Cdev && !self.chip_path().is_absolute() {
            return Err(invalid(
                "gpio.chip",
                format!("{:?}", self.chip_path().display().to_string()),
                "an absolute path such as /dev/gpiochip0",
            ));
        }
        Ok(())
    }
}

fn check_debounce(key: &'static str, ms: u64) -> Result<(), Invalid> {
    if (1..=1000).contains(&ms) {
        return Ok(());
    }
    Err(Invalid::plain(
        key,
        ms,
        "1 to 1000 milliseconds (5 to 50 suits push buttons)",
    ))
}
