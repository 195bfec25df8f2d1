//! Panels: where a drawn screen goes.
//!
//! A [`Panel`] receives every screen the display task decides to show, both as the model
//! ([`Screen`]) and as pixels ([`Frame`]), and picks what it needs: a pixel panel sends the frame,
//! a text backend prints the model. Backends here:
//!
//! | backend | use | output |
//! |---|---|---|
//! | [`PngPanel`] | demos, docs, acceptance checks without hardware | `frame-00001.png`, … in a directory, one per *changed* frame |
//! | [`TerminalPanel`] | the demo's progress on stdout, headless debugging | a text box per changed screen |
//! | [`NullPanel`] | kiosks without a customer display | nothing |
//! | [`SpiPanel`] | ST7789 / ILI9341 / ILI9486 SPI TFT panels | changed rectangles over spidev |
//! | [`FramebufferPanel`] | HDMI and DSI screens | changed rows into `/dev/fb0` |
//!
//! `show` is called on a blocking thread (see [`super::run`]), so a backend may do slow, blocking
//! I/O such as a full SPI transfer; while it works, newer states wait and intermediate ones are
//! skipped.

#[cfg(feature = "emulator")]
pub mod counting;
pub mod fb;
mod png;
pub mod spi;
mod terminal;

use std::path::PathBuf;

pub use self::fb::FramebufferPanel;
pub use self::png::{PngPanel, DEFAULT_PNG_KEEP};
pub use self::spi::SpiPanel;
pub use self::terminal::{render_text, TerminalPanel};
use super::frame::Frame;
use super::screen::Screen;

/// A customer display backend.
pub trait Panel: Send {
    /// Shows `screen`, already drawn into `frame` at the panel's size.
    ///
    /// An error leaves the panel usable: the display task logs it and calls `show` again with
    /// the next screen.
    fn show(&mut self, screen: &Screen, frame: &Frame) -> Result<(), PanelError>;
}

/// Why a panel could not show a screen, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    /// The PNG frame directory could not be created.
    #[error(
        "cannot create the frame directory {dir}: {source}; create it by hand, or choose a \
         directory the kioskpay user may write to"
    )]
    CreateDir {
        /// The directory asked for.
        dir: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A PNG frame could not be written.
    #[error(
        "cannot write the frame {path}: {source}; check that the directory is writable by the \
         kioskpay user and that the disk is not full"
    )]
    WriteFrame {
        /// The file being written.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The text rendering could not be written.
    #[error(
        "cannot write the text display: {0}; the output (stdout or a pipe) was closed; start \
         the daemon with its output attached, or choose the null or png display"
    )]
    Terminal(std::io::Error),
    /// A panel device (spidev, gpiochip, framebuffer) could not be opened or set up.
    #[error(
        "cannot open the display device {device}: {detail}; check that it exists (SPI: \
         dtparam=spi=on in config.txt; framebuffer: a screen is attached), that the kioskpay \
         user is in the spi, gpio and video groups, and the board file's device and line numbers"
    )]
    Open {
        /// The device file.
        device: PathBuf,
        /// What failed.
        detail: String,
    },
    /// The panel did not accept its set-up (init sequence, size, pixel format).
    #[error(
        "the display panel could not be initialised: {detail}; check the board file's \
         controller, size and offsets, the panel's power and its ribbon cable"
    )]
    Init {
        /// What failed.
        detail: String,
    },
    /// Sending pixels to a working panel failed.
    #[error(
        "sending to the display panel failed: {detail}; check the wiring and power; lower \
         spi.clock_hz if it happens under load"
    )]
    Send {
        /// What failed.
        detail: String,
    },
}

impl PanelError {
    /// A short code for the out-of-service screen, to look up in the manual (module docs of
    /// [`crate::display`]).
    pub fn code(&self) -> &'static str {
        match self {
            PanelError::Open { .. } => "E-PANEL-OPEN",
            PanelError::Init { .. } => "E-PANEL-INIT",
            PanelError::Send { .. } => "E-PANEL-SEND",
            PanelError::CreateDir { .. } | PanelError::WriteFrame { .. } => "E-PANEL-FILE",
            PanelError::Terminal(_) => "E-PANEL-TERM",
        }
    }
}

/// A panel that shows nothing, for kiosks without a customer display (the flow still runs).
#[derive(Clone, Copy, Debug, Default)]
pub struct NullPanel;

impl Panel for NullPanel {
    fn show(&mut self, _screen: &Screen, _frame: &Frame) -> Result<(), PanelError> {
        Ok(())
    }
}
