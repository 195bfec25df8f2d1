//! The health gate's proof that the state directory takes writes.
//!
//! A payment may only start once its intent is on stable storage, so a kiosk whose disk is
//! full must not tell customers that card payment is available. The flow's health gate (see
//! [`crate::payment::flow`], "Health gate") checks the journal's file system at each health
//! check with [`probe`]: a new file in the state directory, one block written and synced, then
//! deleted. It writes no payment record, and it needs a block the file system does not have
//! when it is full, which overwriting a file in place would not (its blocks are already there).
//!
//! After a journal write has failed, the probe is not proof enough: the journal may refuse
//! appends for a cause of its own ([`crate::journal::JournalError::Poisoned`]). Then the gate
//! stays closed until an append to the journal itself succeeds; the flow appends a
//! [`crate::journal::Record::Sequence`], which belongs to no payment.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// The probe's file in the state directory; it exists only while a probe runs.
pub const PROBE_NAME: &str = ".write-probe";

/// What the probe writes: one file-system block.
const PROBE_BYTES: usize = 4096;

/// Creates [`PROBE_NAME`] in `dir`, writes a block, syncs it and deletes the file again.
pub fn probe(dir: &Path) -> io::Result<()> {
    let path = dir.join(PROBE_NAME);
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut file| {
            file.write_all(&[0; PROBE_BYTES])?;
            file.sync_data()
        });
    let removed = match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    written.and(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_leaves_nothing_behind_and_fails_where_nothing_can_be_written() {
        let dir = tempfile::tempdir().unwrap();
        probe(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let missing = dir.path().join("no-such-dir");
        assert!(probe(&missing).is_err());
    }
}
