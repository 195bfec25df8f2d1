//! `[gpio]`: which lines the GPIO unit claims, and the rules they must meet before it does.

use std::path::PathBuf;

use serde::Deserialize;

pub use crate::board::pins::{ButtonPin, CancelPin, OutputPin, PinMap, Pull, PulsePin, VendPin};
use crate::setting::Invalid;

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

impl GpioConfig {
    /// Checks the section for a kiosk whose largest cart is `max_amount`, and where GPIO is the
    /// only source of carts when `sole_input` (`input.kind = "gpio"`): amounts within the
    /// largest cart, timings a real button or pulse train can meet, each line used once and
    /// numbered as the backend counts.
    pub fn check(&self, sole_input: bool, max_amount: u64) -> Result<(), Invalid> {
        let invalid = |key, value: String, expected: &str| Invalid::plain(key, value, expected);
        let buttons = self.buttons.as_deref().unwrap_or_default();
        if sole_input && buttons.is_empty() && self.pulse.is_none() {
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
