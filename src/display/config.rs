//! The `[display]` section of the config file: the customer display's own settings.
//!
//! It lives with the display because the display reads it; [`crate::config`] composes it into
//! the whole config, loads and validates it.

use std::path::PathBuf;

use serde::Deserialize;

use crate::board::display::{self as board, BoardError, FramebufferConfig, PanelKind, SpiConfig};
use crate::setting::Invalid;

/// Which display backend draws the customer screen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisplayKind {
    /// Numbered PNG files in `png_dir`.
    #[default]
    Png,
    /// A text rendering on the terminal (the demo).
    Terminal,
    /// No display.
    None,
    /// An SPI TFT panel (ST7789, ILI9341, ILI9486) from `display.board` or `[display.spi]`.
    Spi,
    /// A Linux framebuffer (HDMI, DSI) from `display.board` or `[display.framebuffer]`.
    Framebuffer,
}

/// `[display]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayConfig {
    /// `png`, `terminal` or `none`.
    #[serde(default)]
    pub kind: DisplayKind,
    /// Where the `png` backend writes frames.
    #[serde(default = "default_png_dir")]
    pub png_dir: PathBuf,
    /// How many of the newest frames the `png` backend keeps in `png_dir`; 0 keeps all.
    #[serde(default = "default_png_keep")]
    pub png_keep: usize,
    /// Panel width in pixels.
    #[serde(default = "default_width")]
    pub width: u32,
    /// Panel height in pixels.
    #[serde(default = "default_height")]
    pub height: u32,
    /// A board file from `board/displays/` describing the panel's wiring; overrides `kind`.
    #[serde(default)]
    pub board: Option<PathBuf>,
    /// An SPI panel's wiring written inline instead of a board file.
    #[serde(default)]
    pub spi: Option<SpiConfig>,
    /// A framebuffer device written inline instead of a board file.
    #[serde(default)]
    pub framebuffer: Option<FramebufferConfig>,
    /// The receipt link shown as a QR code on the approved screen, with `{transaction_id}`
    /// where Dintero's transaction id goes; no QR code without it.
    #[serde(default)]
    pub receipt_url: Option<String>,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            kind: DisplayKind::default(),
            png_dir: default_png_dir(),
            png_keep: default_png_keep(),
            width: default_width(),
            height: default_height(),
            board: None,
            spi: None,
            framebuffer: None,
            receipt_url: None,
        }
    }
}

fn default_png_dir() -> PathBuf {
    "/var/lib/kioskpay/frames".into()
}
fn default_png_keep() -> usize {
    super::panel::DEFAULT_PNG_KEEP
}
fn default_width() -> u32 {
    240
}
fn default_height() -> u32 {
    320
}

impl DisplayConfig {
    /// Checks what serde cannot: a panel size that exists, a receipt URL template that yields a
    /// URL, an SPI table a controller can be driven with.
    pub fn check(&self) -> Result<(), Invalid> {
        if !(64..=4096).contains(&self.width) || !(64..=4096).contains(&self.height) {
            return Err(Invalid::quoted(
                "display.width",
                format!("{}x{}", self.width, self.height),
                "a panel size from 64 to 4096 pixels each way (240x320, 320x240, 480x320)",
            ));
        }
        if let Some(template) = &self.receipt_url {
            if let Err(expected) = super::ReceiptUrl::parse(template) {
                return Err(Invalid::quoted("display.receipt_url", template, expected));
            }
        }
        if let Some(spi) = &self.spi {
            if let Err(e) = spi.validate() {
                return Err(Invalid::quoted("display.spi", "(table)", e.to_string()));
            }
        }
        Ok(())
    }
}

/// Which hardware panel to drive, resolved from `display.board` or the inline tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hardware {
    /// An SPI TFT panel.
    Spi(SpiConfig),
    /// A framebuffer device.
    Framebuffer(FramebufferConfig),
}

impl DisplayConfig {
    /// The hardware panel this section asks for, reading `display.board` if set; `None` for the
    /// PNG, terminal and null backends.
    pub fn hardware(&self) -> Result<Option<Hardware>, BoardError> {
        let (kind, spi, framebuffer) = match &self.board {
            Some(path) => {
                let board = board::load(path)?;
                let kind = match board.kind {
                    PanelKind::Spi => DisplayKind::Spi,
                    PanelKind::Framebuffer => DisplayKind::Framebuffer,
                };
                (kind, board.spi, board.framebuffer)
            }
            None => (self.kind, self.spi.clone(), self.framebuffer.clone()),
        };
        let hardware = match kind {
            DisplayKind::Spi => {
                let spi = spi.ok_or(BoardError::Missing { kind: "spi" })?;
                spi.validate()?;
                Hardware::Spi(spi)
            }
            DisplayKind::Framebuffer => Hardware::Framebuffer(framebuffer.unwrap_or_default()),
            DisplayKind::Png | DisplayKind::Terminal | DisplayKind::None => return Ok(None),
        };
        Ok(Some(hardware))
    }
}
