//! Pin map files: which GPIO lines a board's buttons, pulse input and handshake outputs use.
//!
//! A kiosk builder wires a board once; every kiosk of that build names the same file in
//! `gpio.board` (the files ship in `board/pins/`, installed to `/usr/share/kioskpay/pins/`).
//! The file holds the pin keys of `[gpio]`; keys set in `[gpio]` itself win over the map's, so a
//! kiosk that moved one button overrides that one line and keeps the rest.

use std::path::Path;

use serde::Deserialize;

/// Why a pin map file cannot be used.
#[derive(Debug)]
pub enum PinMapError {
    /// The file could not be read.
    Read(std::io::Error),
    /// The file is not a valid pin map: toml's message, quoting the line and the key.
    Parse(String),
}

/// Reads and parses a pin map file.
pub fn load(path: &Path) -> Result<PinMap, PinMapError> {
    let text = std::fs::read_to_string(path).map_err(PinMapError::Read)?;
    toml::from_str(&text).map_err(|e| PinMapError::Parse(e.to_string().trim_end().to_string()))
}

/// Pull resistor on an input line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pull {
    /// Pull up: for a switch or open collector to ground (active low).
    Up,
    /// Pull down: for a switch to 3.3 V (active high).
    Down,
    /// No pull: the circuit has its own resistor (an optocoupler with a pull-up).
    Off,
}

/// A preset-amount button: a press charges `amount`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonPin {
    /// Line offset on `gpio.chip` (cdev) or BCM number (rppal).
    pub pin: u32,
    /// What a press charges, in minor units.
    pub amount: u64,
    /// The button pulls the line low when pressed.
    #[serde(default)]
    pub active_low: bool,
    /// Pull resistor; default up for active-low lines, down otherwise, so a button never floats.
    #[serde(default)]
    pub pull: Option<Pull>,
    /// The line must be steady this long before a press or release counts.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
}

/// The cancel button: cancels the payment in progress while the terminal waits for the card.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelPin {
    /// Line offset (cdev) or BCM number (rppal).
    pub pin: u32,
    /// The button pulls the line low when pressed.
    #[serde(default)]
    pub active_low: bool,
    /// Pull resistor; default as for [`ButtonPin::pull`].
    #[serde(default)]
    pub pull: Option<Pull>,
    /// Debounce time in milliseconds.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
}

/// Pulse-train price input: the vending machine sends one pulse per `unit`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulsePin {
    /// Line offset (cdev) or BCM number (rppal).
    pub pin: u32,
    /// Value of one pulse in minor units (100 = 1.00).
    pub unit: u64,
    /// Shorter levels are noise (glitches on the pulse, bounces between pulses).
    #[serde(default = "default_min_width_ms")]
    pub min_width_ms: u64,
    /// A longer pulse means a stuck line: the whole train is refused.
    #[serde(default = "default_max_width_ms")]
    pub max_width_ms: u64,
    /// Quiet time after the last pulse that ends the train.
    #[serde(default = "default_pulse_gap_ms")]
    pub gap_ms: u64,
    /// A train with more pulses is refused, never charged.
    #[serde(default = "default_max_pulses")]
    pub max_pulses: u32,
    /// A pulse pulls the line low (an optocoupler's open collector).
    #[serde(default)]
    pub active_low: bool,
    /// Pull resistor; default as for [`ButtonPin::pull`].
    #[serde(default)]
    pub pull: Option<Pull>,
}

/// A handshake output line.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputPin {
    /// Line offset (cdev) or BCM number (rppal).
    pub pin: u32,
    /// Asserted means driven low (e.g. an optocoupler LED wired from 3.3 V to the pin).
    #[serde(default)]
    pub active_low: bool,
}

/// The vend-approved output: pulsed once per captured payment.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendPin {
    /// Line offset (cdev) or BCM number (rppal).
    pub pin: u32,
    /// Asserted means driven low.
    #[serde(default)]
    pub active_low: bool,
    /// How long the pulse lasts.
    #[serde(default = "default_vend_pulse_ms")]
    pub pulse_ms: u64,
}

/// A board's pin map (`board/pins/*.toml`): the pin keys of `[gpio]`, shared by every kiosk
/// built on that board. Keys set in `[gpio]` itself win over the map's.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinMap {
    /// What the board is, for people reading the file.
    #[serde(default)]
    pub description: Option<String>,
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

fn default_debounce_ms() -> u64 {
    20
}
fn default_min_width_ms() -> u64 {
    20
}
fn default_max_width_ms() -> u64 {
    200
}
fn default_pulse_gap_ms() -> u64 {
    500
}
fn default_max_pulses() -> u32 {
    100
}
fn default_vend_pulse_ms() -> u64 {
    250
}
