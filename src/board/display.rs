//! Display board files: how a panel is wired.
//!
//! A kiosk builder picks a display board once (a HAT, a module on jumper wires, an HDMI screen)
//! and every kiosk of that build uses the same wiring. That wiring lives in a board file under
//! `board/displays/` (installed to `/etc/kioskpay/displays/`), named by `display.board`:
//!
//! ```toml
//! [display]
//! board = "/etc/kioskpay/displays/pimoroni-display-hat-mini.toml"
//! ```
//!
//! A board file holds `kind` and the table for it, the same keys as inline config:
//!
//! ```toml
//! kind = "spi"
//! [spi]
//! controller = "st7789"     # st7789 | ili9341 | ili9486
//! width = 240               # the controller's native width and height, before rotation
//! height = 320
//! rotation = 90             # 0 | 90 | 180 | 270; 90 and 270 swap width and height
//! color_order = "rgb"       # rgb | bgr: red and blue swapped on screen means the other one
//! invert = true             # IPS ST7789 panels need inversion; black shows white without it
//! device = "/dev/spidev0.1"
//! clock_hz = 62_500_000     # the Pi rounds down to 250 MHz / even divisor
//! gpiochip = "/dev/gpiochip0"
//! dc = 9                    # line offsets on gpiochip (BCM numbers on a Pi)
//! backlight = 13            # optional
//! reset = 27                # optional; without it the panel gets a software reset
//! ```
//!
//! or, for HDMI and DSI screens:
//!
//! ```toml
//! kind = "framebuffer"
//! [framebuffer]
//! device = "/dev/fb0"
//! ```
//!
//! Without `display.board` the same tables can be written inline as `[display.spi]` or
//! `[display.framebuffer]` together with `display.kind`. The panel size follows from the board
//! (SPI: native size and rotation; framebuffer: `display.width`/`display.height`, which must
//! match the screen mode).

use std::path::{Path, PathBuf};

use embedded_graphics::geometry::Size;
use serde::Deserialize;

/// The SPI display controllers kioskpay drives (all through `mipidsi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    /// Sitronix ST7789 (Pimoroni Display HAT Mini, many 1.3"-2.8" IPS modules); up to 62.5 MHz.
    St7789,
    /// Ilitek ILI9341 (Waveshare 2.4", most 2.2"-2.8" TN modules), RGB565.
    Ili9341,
    /// Ilitek ILI9486 (3.5" 480×320 modules). Over 4-wire SPI it only takes 18-bit colour,
    /// three bytes a pixel: a full frame is 460,800 bytes (118 ms at 31.25 MHz), so partial
    /// updates matter most here.
    Ili9486,
}

/// Order of the colour channels in the controller's memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    /// Red first.
    #[default]
    Rgb,
    /// Blue first (many ILI9341 modules).
    Bgr,
}

/// `[display.spi]` or `[spi]` in a board file: an SPI TFT panel.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpiConfig {
    /// The controller chip.
    pub controller: Controller,
    /// Native width in pixels, before rotation.
    pub width: u16,
    /// Native height in pixels, before rotation.
    pub height: u16,
    /// Columns between the controller's memory origin and the glass (some 240×240 and 135×240
    /// modules).
    #[serde(default)]
    pub offset_x: u16,
    /// Rows between the controller's memory origin and the glass.
    #[serde(default)]
    pub offset_y: u16,
    /// Clockwise rotation in degrees: 0, 90, 180 or 270.
    #[serde(default)]
    pub rotation: u16,
    /// `rgb` or `bgr`.
    #[serde(default)]
    pub color_order: ColorOrder,
    /// Invert colours (IPS panels).
    #[serde(default)]
    pub invert: bool,
    /// The spidev device: `/dev/spidev<bus>.<chip select>`.
    #[serde(default = "default_spi_device")]
    pub device: PathBuf,
    /// SPI clock in Hz.
    #[serde(default = "default_clock_hz")]
    pub clock_hz: u32,
    /// SPI mode, 0 to 3 (clock polarity and phase); 0 for nearly every panel.
    #[serde(default)]
    pub mode: u8,
    /// The GPIO character device the DC, reset and backlight lines are on.
    #[serde(default = "default_gpiochip")]
    pub gpiochip: PathBuf,
    /// Data/command line offset.
    pub dc: u32,
    /// Reset line offset, if wired.
    #[serde(default)]
    pub reset: Option<u32>,
    /// Backlight line offset, if switchable; driven high once the panel is initialised.
    #[serde(default)]
    pub backlight: Option<u32>,
}

/// Controllers' clock limits are well below this; a higher value is a typo (kHz for Hz).
const MAX_CLOCK_HZ: u32 = 125_000_000;

impl SpiConfig {
    /// The size frames are drawn at: the native size, turned by the rotation.
    pub fn size(&self) -> Size {
        let (w, h) = (u32::from(self.width), u32::from(self.height));
        if self.rotation % 180 == 90 {
            Size::new(h, w)
        } else {
            Size::new(w, h)
        }
    }

    /// Bytes one pixel takes on the bus: 2 (RGB565), or 3 for the ILI9486 (RGB666).
    pub fn bytes_per_pixel(&self) -> u64 {
        match self.controller {
            Controller::Ili9486 => 3,
            Controller::St7789 | Controller::Ili9341 => 2,
        }
    }

    /// Checks what can be checked without the hardware, naming the key and the fix.
    pub fn validate(&self) -> Result<(), BoardError> {
        let invalid = |key: &'static str, value: String, expected: &str| BoardError::Invalid {
            key,
            value,
            expected: expected.to_string(),
        };
        let (max_w, max_h) = match self.controller {
            Controller::St7789 => (240, 320),
            Controller::Ili9341 => (240, 320),
            Controller::Ili9486 => (320, 480),
        };
        if self.width == 0
            || self.height == 0
            || u32::from(self.width) + u32::from(self.offset_x) > max_w
            || u32::from(self.height) + u32::from(self.offset_y) > max_h
        {
            return Err(invalid(
                "spi.width",
                format!("{}x{}", self.width, self.height),
                &format!(
                    "the controller's native size, at most {max_w}x{max_h} including offsets \
                     (portrait; use rotation for landscape)"
                ),
            ));
        }
        if !matches!(self.rotation, 0 | 90 | 180 | 270) {
            return Err(invalid(
                "spi.rotation",
                self.rotation.to_string(),
                "0, 90, 180 or 270",
            ));
        }
        if !(100_000..=MAX_CLOCK_HZ).contains(&self.clock_hz) {
            return Err(invalid(
                "spi.clock_hz",
                self.clock_hz.to_string(),
                "a clock in Hz such as 62500000 (ST7789) or 31250000 (ILI9341)",
            ));
        }
        if self.mode > 3 {
            return Err(invalid("spi.mode", self.mode.to_string(), "0, 1, 2 or 3"));
        }
        let lines = [Some(self.dc), self.reset, self.backlight];
        let used: Vec<u32> = lines.iter().flatten().copied().collect();
        if (1..used.len()).any(|i| used[..i].contains(&used[i])) {
            return Err(invalid(
                "spi.dc",
                format!("{used:?}"),
                "different GPIO lines for dc, reset and backlight",
            ));
        }
        Ok(())
    }
}

/// `[display.framebuffer]` or `[framebuffer]` in a board file: a Linux framebuffer device.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FramebufferConfig {
    /// The device, `/dev/fb0` for the first HDMI or DSI output.
    #[serde(default = "default_fb_device")]
    pub device: PathBuf,
}

impl Default for FramebufferConfig {
    fn default() -> Self {
        FramebufferConfig {
            device: default_fb_device(),
        }
    }
}

fn default_spi_device() -> PathBuf {
    "/dev/spidev0.0".into()
}
fn default_clock_hz() -> u32 {
    31_250_000
}
fn default_gpiochip() -> PathBuf {
    "/dev/gpiochip0".into()
}
fn default_fb_device() -> PathBuf {
    "/dev/fb0".into()
}

/// The kinds of panel a board file can describe: hardware, not the PNG or terminal stand-ins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PanelKind {
    /// An SPI TFT panel driven by kioskpay.
    Spi,
    /// A screen the kernel drives (HDMI, DSI), through its framebuffer.
    Framebuffer,
}

/// A board file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardFile {
    /// `spi` or `framebuffer`.
    pub kind: PanelKind,
    /// The SPI panel, for `kind = "spi"`.
    #[serde(default)]
    pub spi: Option<SpiConfig>,
    /// The framebuffer, for `kind = "framebuffer"`.
    #[serde(default)]
    pub framebuffer: Option<FramebufferConfig>,
}

/// Why the display's board settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// The board file could not be read.
    #[error(
        "cannot read the display board file {path}: {source}; check display.board (the files \
         ship in board/displays/)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The board file is not valid.
    #[error("display board file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, quoting the line and key.
        message: String,
    },
    /// A key has a value that cannot work.
    #[error("display board key {key} = {value}: expected {expected}")]
    Invalid {
        /// The key, e.g. `spi.rotation`.
        key: &'static str,
        /// The value as written.
        value: String,
        /// What would work.
        expected: String,
    },
    /// `display.kind` names a hardware panel but its table is missing.
    #[error(
        "display.kind = \"{kind}\" needs its settings: set display.board to a file from \
         board/displays/, or write a [display.{kind}] table"
    )]
    Missing {
        /// `spi` or `framebuffer`.
        kind: &'static str,
    },
}

/// Reads and parses a board file.
pub fn load(path: &Path) -> Result<BoardFile, BoardError> {
    let text = std::fs::read_to_string(path).map_err(|source| BoardError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses board file text (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<BoardFile, BoardError> {
    toml::from_str(text).map_err(|e| BoardError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAT: &str = r#"
kind = "spi"
[spi]
controller = "st7789"
width = 240
height = 320
rotation = 90
invert = true
device = "/dev/spidev0.1"
clock_hz = 62_500_000
dc = 9
backlight = 13
"#;

    #[test]
    fn a_board_file_gives_the_panel_and_its_landscape_size() {
        let board = parse(HAT, Path::new("hat.toml")).unwrap();
        let spi = board.spi.unwrap();
        spi.validate().unwrap();
        assert_eq!(spi.size(), Size::new(320, 240));
        assert_eq!(spi.gpiochip, PathBuf::from("/dev/gpiochip0"));
        assert_eq!(spi.reset, None);
    }

    #[test]
    fn bad_values_name_the_key_and_the_fix() {
        let cases = [
            (
                "rotation = 90",
                "rotation = 45",
                "spi.rotation = 45: expected 0, 90",
            ),
            (
                "clock_hz = 62_500_000",
                "clock_hz = 62500",
                "spi.clock_hz = 62500",
            ),
            ("height = 320", "height = 480", "spi.width = 240x480"),
            ("backlight = 13", "backlight = 9", "different GPIO lines"),
        ];
        for (from, to, want) in cases {
            let board = parse(&HAT.replace(from, to), Path::new("hat.toml")).unwrap();
            let msg = board.spi.unwrap().validate().unwrap_err().to_string();
            assert!(msg.contains(want), "{to}: {msg}");
        }
        let msg = parse(&HAT.replace("dc = 9", "dc_pin = 9"), Path::new("hat.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("hat.toml") && msg.contains("dc_pin"), "{msg}");
    }
}
