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
//!
//! `show` is called on a blocking thread (see [`super::run`]), so a backend may do slow, blocking
//! I/O such as a full SPI transfer; while it works, newer states wait and intermediate ones are
//! skipped.

mod png;
mod terminal;

use std::path::PathBuf;

pub use self::png::PngPanel;
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
}

/// A panel that shows nothing, for kiosks without a customer display (the flow still runs).
#[derive(Clone, Copy, Debug, Default)]
pub struct NullPanel;

impl Panel for NullPanel {
    fn show(&mut self, _screen: &Screen, _frame: &Frame) -> Result<(), PanelError> {
        Ok(())
    }
}
