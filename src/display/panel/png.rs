//! The PNG backend: every new frame becomes a numbered PNG file.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{Panel, PanelError};
use crate::display::frame::Frame;
use crate::display::screen::Screen;

/// Writes each new frame as `frame-00001.png`, `frame-00002.png`, … in a directory.
///
/// A frame identical to the previous one is not written, so the files are exactly the distinct
/// pictures the customer saw, in order (a countdown gives one file per second). Numbering
/// continues after the highest `frame-NNNNN.png` already in the directory, so a restart never
/// overwrites earlier frames; point it at an empty directory for a clean sequence. Each file is
/// written under a temporary name and renamed, so a viewer never opens half a PNG.
///
/// Only the newest [`DEFAULT_PNG_KEEP`] frames stay (see [`PngPanel::keeping`]): a payment draws
/// about 220 KB of frames, and they usually share the journal's file system, so frames kept
/// forever would one day leave no room for the journal and stop every payment.
#[derive(Debug)]
pub struct PngPanel {
    dir: PathBuf,
    next: u64,
    last: Option<Frame>,
    /// The numbers of the frames in the directory, oldest first.
    on_disk: VecDeque<u64>,
    /// How many frames stay; 0 keeps every one.
    keep: usize,
}

/// How many frames a [`PngPanel`] keeps unless told otherwise (`display.png_keep`).
pub const DEFAULT_PNG_KEEP: usize = 200;

impl PngPanel {
    /// A panel writing into `dir`, which is created (with its parents) if missing.
    pub fn new(dir: impl Into<PathBuf>) -> Result<PngPanel, PanelError> {
        let dir = dir.into();
        let create_error = |source| PanelError::CreateDir {
            dir: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(create_error)?;
        let mut on_disk = Vec::new();
        for entry in fs::read_dir(&dir).map_err(create_error)? {
            let entry = entry.map_err(create_error)?;
            if let Some(n) = entry.file_name().to_str().and_then(frame_number) {
                on_disk.push(n);
            }
        }
        on_disk.sort_unstable();
        Ok(PngPanel {
            dir,
            next: on_disk.last().map_or(1, |n| n + 1),
            last: None,
            on_disk: on_disk.into(),
            keep: DEFAULT_PNG_KEEP,
        })
    }

    /// Keeps only the newest `keep` frames in the directory (0: every frame, for the demo and
    /// screenshots). Older frames, those of earlier runs included, are deleted as new ones are
    /// written.
    pub fn keeping(mut self, keep: usize) -> PngPanel {
        self.keep = keep;
        self
    }

    /// Deletes the oldest frames beyond `keep`. A frame that cannot be deleted is logged and
    /// forgotten: the customer's screen does not depend on it.
    fn prune(&mut self) {
        if self.keep == 0 {
            return;
        }
        while self.on_disk.len() > self.keep {
            let Some(n) = self.on_disk.pop_front() else {
                break;
            };
            let path = self.dir.join(frame_name(n));
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete an old frame; frames may fill the disk");
                }
                _ => {}
            }
        }
    }

    /// The directory frames are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write(&self, frame: &Frame, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("png.tmp");
        let written = File::create(&tmp).and_then(|file| {
            let mut out = BufWriter::new(file);
            frame.write_png(&mut out).map_err(|e| match e {
                ::png::EncodingError::IoError(e) => e,
                other => std::io::Error::other(other),
            })?;
            out.flush()?;
            out.get_ref().sync_data()
        });
        match written.and_then(|()| fs::rename(&tmp, path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Best effort: a leftover temporary file is harmless, the error is what matters.
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

impl Panel for PngPanel {
    fn show(&mut self, _screen: &Screen, frame: &Frame) -> Result<(), PanelError> {
        if self.last.as_ref() == Some(frame) {
            return Ok(());
        }
        let path = self.dir.join(frame_name(self.next));
        self.write(frame, &path)
            .map_err(|source| PanelError::WriteFrame {
                path: path.clone(),
                source,
            })?;
        self.on_disk.push_back(self.next);
        self.next += 1;
        self.prune();
        match &mut self.last {
            Some(last) => last.clone_from(frame),
            None => self.last = Some(frame.clone()),
        }
        Ok(())
    }
}

/// 42 → `frame-00042.png`.
fn frame_name(n: u64) -> String {
    format!("frame-{n:05}.png")
}

/// `frame-00042.png` → 42.
fn frame_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("frame-")?.strip_suffix(".png")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_its_own_file_names() {
        assert_eq!(frame_number("frame-00042.png"), Some(42));
        assert_eq!(frame_number("frame-123456.png"), Some(123456));
        assert_eq!(frame_number("frame-.png"), None);
        assert_eq!(frame_number("frame-00001.png.tmp"), None);
        assert_eq!(frame_number("frame-+1.png"), None);
        assert_eq!(frame_number("other-00001.png"), None);
    }
}
