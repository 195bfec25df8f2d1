//! Board files: how a kiosk build is wired, kept out of each kiosk's own config.
//!
//! A kiosk builder chooses the hardware once (a display HAT, a module on jumper wires, buttons
//! and a coin mechanism on GPIO lines) and every kiosk of that build is wired the same way. The
//! wiring lives in board files that ship with the package (`board/pins/`, `board/displays/` in
//! the source tree; `/usr/share/kioskpay/pins/`, `/etc/kioskpay/displays/` on a kiosk), and a
//! kiosk's config names its files (`gpio.board`, `display.board`) instead of repeating pin
//! numbers and panel timings.
//!
//! This module owns the files' formats and reading them; the subsystems that drive the hardware
//! ([`crate::input`] for GPIO lines, [`crate::display`] for panels) take the parsed values.

pub mod display;
pub mod pins;
