//! Maintenance kept across a restart: a technician who put the kiosk in maintenance to repair
//! it must not find it selling again after a `restart`, a crash or a power cut in the middle of
//! the work.
//!
//! The technician's ask is kept as the file `maintenance` in the state directory: present means
//! on. Only the control server writes it (maintenance asked for on the socket); the refund
//! desk's own short maintenance around a refund is not kept, since a refund's recovery never
//! needs the terminal. At start the daemon reads it before the flow takes its first cart, so no
//! customer can pay between the start and the technician screen.

use std::io;
use std::path::{Path, PathBuf};

/// The file's name in the state directory.
pub const FILE_NAME: &str = "maintenance";

/// The file for `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Whether a technician left the kiosk in maintenance. A file that cannot be checked (the
/// directory unreadable) counts as on: a kiosk that stays out of sale is safer than one that
/// sells while a technician works on it.
pub fn kept(state_dir: &Path) -> bool {
    match std::fs::symlink_metadata(path(state_dir)) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// Records maintenance `on` (with who asked and when, for a technician reading the directory)
/// or off, durably: the file is written and synced, then the directory.
pub fn record(state_dir: &Path, on: bool, note: &str) -> io::Result<()> {
    let file = path(state_dir);
    if on {
        return crate::journal::write_atomically(&file, format!("{note}\n").as_bytes(), 0o640);
    }
    match std::fs::remove_file(&file) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    crate::journal::sync_dir(state_dir).map_err(|e| io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_is_kept_until_off_and_off_twice_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!kept(dir.path()));
        record(dir.path(), true, "maintenance on by the control socket").unwrap();
        assert!(kept(dir.path()));
        assert!(std::fs::read_to_string(path(dir.path()))
            .unwrap()
            .contains("control socket"));
        record(dir.path(), true, "again").unwrap();
        assert!(kept(dir.path()));
        record(dir.path(), false, "").unwrap();
        assert!(!kept(dir.path()));
        record(dir.path(), false, "").unwrap();
        assert!(!kept(dir.path()));
    }

    #[test]
    fn a_state_directory_that_cannot_be_read_counts_as_on() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-directory");
        std::fs::write(&file, "").unwrap();
        // `<file>/maintenance` fails with ENOTDIR, not NotFound.
        assert!(kept(&file));
    }
}
