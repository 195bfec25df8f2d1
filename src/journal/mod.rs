//! The crash-safe payment journal: what the kiosk is about to do, written down before it does it.
//!
//! Creating a Dintero session starts the payment on the terminal, and the call has no
//! idempotency key. A kiosk that loses power between "create" and "the answer" must still know,
//! after it boots, that a payment may exist, under which `merchant_reference`, for how much and
//! on which terminal, so that recovery can ask Dintero instead of guessing or charging twice.
//! So the payment flow (the journal's only writer) follows one rule: **journal before effect**.
//! It appends a [`Record`] and [`Journal::append`] returns only after the line is on stable
//! storage (`fdatasync`); only then does the flow make the call.
//!
//! # On disk
//! One file, `<state.dir>/journal.log`, one record per line:
//!
//! ```text
//! 5f1c0a7e {"type":"intent","merchant_reference":"kiosk-7-20261124-000042","amount":39900,...}
//! ```
//!
//! The first field is the CRC-32 of the JSON (8 lowercase hex digits), so every line can be
//! checked on its own. A technician can read the file with
//! `cut -d' ' -f2- /var/lib/kioskpay/journal.log | jq`, or better with `kioskpay journal`, which
//! also checks it and never modifies it ([`read_only`]).
//!
//! Appends go to the end of the file (`O_APPEND`) and cost one write and one `fdatasync`; nothing
//! is ever rewritten in place. The file grows by a few hundred bytes per payment until
//! [`Journal::compact`] rewrites it, keeping every unfinished payment and the newest finished
//! ones.
//!
//! # After a power cut, or on a failing SD card
//! [`Journal::open`] replays the file (see [`Replay`]) and says what it found:
//! - a **torn last line** (the write in progress when power went, or a last page the card
//!   garbled after it was synced) is copied to `journal.torn` and ended with a newline where it
//!   stands, so that the next append starts on a clean line. It is not dropped: it may be an
//!   intent whose create call was made;
//! - a **damaged line anywhere** is reported with its line number; the lines after it still
//!   count, and so does what can be read of it: its sequence numbers, and the reference of a
//!   payment nothing else names, which is listed as unresolved so that recovery looks it up;
//! - the **sequence** never goes back: the highest one in any record's reference, in any
//!   damaged line's text or in a [`Record::Sequence`] counts, and a damaged line that no readable
//!   intent follows skips [`DAMAGE_GAP`] numbers and draws a new installation id (see
//!   [`identity`]), since it may have been a newer intent;
//! - records of a payment whose intent line is lost still form a [`PaymentRecord`] (amount 0)
//!   so that recovery can look it up at Dintero by its reference;
//! - records of a type written by a newer kioskpay are reported and kept, not fatal.
//! - a last line that lacks only its newline is a whole record (its checksum proves it): it
//!   counts, and the newline is added.
//!
//! - a payment that ended `not_created` and then turned up at Dintero (a create that landed
//!   late, see [`crate::payment::late`]) has a [`Record::Reopened`] after its final record: it
//!   is unresolved again until the next final record; a reopen of any other outcome is
//!   reported, and still reopens it, since Dintero has the payment.
//!
//! Each is a [`Problem`]; the daemon logs them at start. None stops the kiosk: losing sight of
//! every payment because of one bad line would be worse than any of them.
//!
//! # Compaction
//! [`Journal::compact`] writes `journal.log.compact` (a [`Record::Sequence`] first, so that
//! merchant reference numbers never repeat, then the lines it keeps, and the sequence record
//! again after them when damaged lines are among them), syncs it, renames it over
//! `journal.log` and syncs the directory. Until the rename the old file is untouched and
//! complete; after it the new one is. A `journal.log.compact` left by a crash is deleted at the
//! next open. Lines compaction cannot read (damaged, or from a newer version) are copied as they
//! are: compaction never throws away what it does not understand.
//!
//! # Operating it
//! - `state.dir` (default `/var/lib/kioskpay`) must be writable by the kioskpay user; with
//!   systemd use `StateDirectory=kioskpay`. It must be on persistent storage: a tmpfs forgets
//!   every payment at power off.
//! - One writer: the journal takes an exclusive `flock` on the file, so a second daemon on the
//!   same directory fails to start instead of interleaving lines.
//! - If an append fails (disk full, I/O error) the payment does not start. If the failure may
//!   have left the file in an unknown state, the journal refuses further appends until kioskpay
//!   restarts and re-reads it from disk ([`JournalError::Poisoned`]).

#[cfg(feature = "emulator")]
pub mod crash;
pub mod identity;
mod record;
mod replay;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;

pub use identity::Installation;
pub use record::{frame_line, unframe_line, Outcome, Record};
pub use replay::{PaymentRecord, Problem, ProblemKind, Replay, DAMAGE_GAP, INITIAL_STATE};

/// The journal's file name inside `state.dir`.
pub const FILE_NAME: &str = "journal.log";
/// Where compaction builds the new file before renaming it over [`FILE_NAME`].
const COMPACT_NAME: &str = "journal.log.compact";
/// Where torn last lines are kept for inspection after they are cut off the log.
pub const TORN_NAME: &str = "journal.torn";

/// Why the journal cannot be used; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file system operation failed.
    #[error("cannot {action} {path}: {source}; {hint}", hint = io_hint(.source))]
    Io {
        /// What the journal was doing, e.g. "sync".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `kioskpay journal` was pointed at a directory without a journal.
    #[error(
        "no journal at {path}; check state.dir in the config (kioskpay creates the journal \
         when it first starts)"
    )]
    Missing {
        /// The file that was expected.
        path: PathBuf,
    },
    /// Another process holds the journal open for writing.
    #[error(
        "journal {path} is in use by another process; stop the running kioskpay (systemctl \
         stop kioskpay) first, or use `kioskpay journal`, which only reads"
    )]
    Locked {
        /// The journal file.
        path: PathBuf,
    },
    /// An earlier write failed in a way that may have left the file in an unknown state.
    #[error(
        "an earlier write to journal {path} failed ({cause}); no payment can start until \
         kioskpay is restarted and re-reads the journal from disk; fix the cause first"
    )]
    Poisoned {
        /// The journal file.
        path: PathBuf,
        /// The failure that poisoned it.
        cause: String,
    },
    /// The caller tried to write an intent whose sequence number was already used, which would
    /// repeat a merchant reference. A bug in the caller, refused before anything is written.
    #[error(
        "intent sequence {given} is not above the last sequence {last}: merchant references \
         would repeat; take the sequence from Journal::next_sequence"
    )]
    SequenceNotIncreasing {
        /// The sequence in the record.
        given: u64,
        /// The highest one already handed out.
        last: u64,
    },
    /// A record could not be encoded as JSON (not expected for these types).
    #[error("cannot encode a journal record: {0}")]
    Encode(#[source] serde_json::Error),
}

/// The operator's next step for an OS error.
fn io_hint(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => {
            "the kioskpay user must own state.dir and be able to write it (systemd: \
             StateDirectory=kioskpay, or ReadWritePaths= under ProtectSystem=strict)"
        }
        Some(libc::EROFS) => {
            "the file system is read-only (a read-only root, or storage remounted read-only after \
             errors); point state.dir at writable persistent storage"
        }
        Some(libc::ENOSPC | libc::EDQUOT) => {
            "the disk is full; free space on the file system holding state.dir (e.g. \
             journalctl --vacuum-size=50M)"
        }
        Some(libc::EIO) => {
            "the storage reported an I/O error and may be failing; replace it and keep the old \
             card for recovering the journal"
        }
        Some(libc::ENOENT) => "a directory on the path does not exist; check state.dir",
        Some(libc::ENOTDIR) => "state.dir must name a directory",
        _ => "check state.dir in the config",
    }
}

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// What a compaction did, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactStats {
    /// Payments whose records were kept.
    pub payments_kept: usize,
    /// Finished payments dropped.
    pub payments_dropped: usize,
    /// Unreadable lines (damaged or from a newer version) copied as they were.
    pub unreadable_kept: usize,
    /// Size of the journal before.
    pub bytes_before: u64,
    /// Size of the journal after.
    pub bytes_after: u64,
}

/// The open journal: the payment flow's handle for appending.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
    /// Opened with `O_APPEND` and held under an exclusive `flock`.
    file: File,
    /// Bytes known to be whole lines on disk; a failed append is cut back to this.
    len: u64,
    /// The highest sequence number handed out, in the file or in a record being appended.
    last_sequence: u64,
    /// Why appends are refused, once a failure left the file in an unknown state.
    poisoned: Option<String>,
    /// This installation's identity, part of every merchant reference.
    installation: Installation,
}

impl Journal {
    /// Opens (creating if needed) `dir/journal.log` for appending and replays it.
    ///
    /// A torn last line is copied to `journal.torn` and cut off, so later appends start on a
    /// clean line; every problem found is logged and returned in the [`Replay`].
    pub fn open(dir: &Path) -> Result<(Journal, Replay), JournalError> {
        Journal::open_on(dir, &identity::machine_fingerprint())
    }

    /// [`Journal::open`] on the machine with this fingerprint (see
    /// [`identity::machine_fingerprint`]); tests use it to play a cloned SD card.
    pub fn open_on(dir: &Path, machine: &str) -> Result<(Journal, Replay), JournalError> {
        let (journal, _, scan) = Journal::open_scanned(dir, machine)?;
        Ok((journal, scan.replay))
    }

    /// [`Journal::open`], then a compaction keeping `keep_final` finished payments when the
    /// journal holds more: the daemon's start. It compacts from the bytes and the scan it
    /// opened with, so a big journal is read and parsed once, not again by the compaction.
    /// The [`Replay`] is of the journal as it was opened, every payment in it.
    pub fn open_compacting(
        dir: &Path,
        keep_final: usize,
    ) -> Result<(Journal, Replay), JournalError> {
        let (mut journal, bytes, scan) =
            Journal::open_scanned(dir, &identity::machine_fingerprint())?;
        let finished = scan
            .replay
            .payments
            .iter()
            .filter(|p| p.outcome.is_some())
            .count();
        if finished > keep_final {
            let prepared = journal.prepare_from(&bytes, &scan, keep_final)?;
            journal.install(prepared)?;
        }
        Ok((journal, scan.replay))
    }

    /// Opens and scans: the journal, the bytes it was opened with and their scan.
    fn open_scanned(
        dir: &Path,
        machine: &str,
    ) -> Result<(Journal, Vec<u8>, replay::Scan), JournalError> {
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(io_error("create the state directory", dir))?;
            // The new directory's own entry must survive a power cut too.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let path = dir.join(FILE_NAME);
        let stale = dir.join(COMPACT_NAME);
        match fs::remove_file(&stale) {
            Ok(()) => tracing::warn!(
                path = %stale.display(),
                "removed an unfinished compaction; the journal itself was untouched"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove the unfinished compaction", &stale)(e)),
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&path)
            .map_err(io_error("open", &path))?;
        lock(&file, &path)?;
        sync_dir(dir)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io_error("read", &path))?;
        let scan = replay::scan(&bytes);
        let mut len = bytes.len() as u64;
        if scan.unterminated.is_some() {
            (&file)
                .write_all(b"\n")
                .and_then(|()| file.sync_data())
                .map_err(io_error("end the last line of", &path))?;
            len += 1;
        }
        if let Some(torn) = scan.torn.clone() {
            // The torn line stays where it is, ended with a newline so that the next append
            // starts on a clean line: it may be an intent that did reach the card before the
            // page around it was garbled, and a damaged line is something replay looks up and
            // counts past (see `DAMAGE_GAP`), never something to forget.
            let torn_path = dir.join(TORN_NAME);
            keep_torn(&torn_path, &bytes[torn.clone()])
                .map_err(|(action, e)| io_error(action, &torn_path)(e))?;
            sync_dir(dir)?;
            if bytes.last() != Some(&b'\n') {
                (&file)
                    .write_all(b"\n")
                    .and_then(|()| file.sync_data())
                    .map_err(io_error("end the torn last line of", &path))?;
                len += 1;
            }
            tracing::warn!(
                path = %path.display(),
                line = scan.lines.len() + 1,
                bytes = torn.len(),
                "the journal's last line is torn (a power cut during a write, or a garbled \
                 page); it stays in the journal as a damaged line and a copy is kept in \
                 {TORN_NAME}"
            );
        }
        for problem in &scan.replay.problems {
            tracing::warn!(path = %path.display(), "journal: {problem}");
        }
        let (mut installation, redrawn) = identity::load_or_create(dir, machine)?;
        if let Some(mark) = &scan.replay.hidden_damage {
            let previous = installation.id.clone();
            let (now, redrawn) = identity::redraw_for_damage(dir, installation, mark)?;
            installation = now;
            if redrawn {
                tracing::warn!(
                    previous,
                    installation = installation.id,
                    "damaged journal lines may hide merchant references; new references use a \
                     new installation id so that none can repeat"
                );
            }
        }
        match redrawn {
            Some(identity::Redrawn::OtherMachine { previous }) => tracing::warn!(
                previous,
                installation = installation.id,
                "this state directory was made on another machine (a cloned SD image or a card \
                 moved to another board); a new installation id keeps its merchant references \
                 apart from the original's"
            ),
            Some(identity::Redrawn::Damaged { why }) => tracing::warn!(
                installation = installation.id,
                "the installation id file was damaged ({why}); drew a new one, the old file is \
                 kept as installation.damaged"
            ),
            None => {}
        }
        tracing::info!(
            path = %path.display(),
            installation = installation.id,
            payments = scan.replay.payments.len(),
            unresolved = scan.replay.unresolved().count(),
            last_sequence = scan.replay.last_sequence,
            "journal replayed"
        );
        let journal = Journal {
            dir: dir.to_owned(),
            path,
            file,
            len,
            last_sequence: scan.replay.last_sequence,
            poisoned: None,
            installation,
        };
        Ok((journal, bytes, scan))
    }

    /// The journal file, for log lines and messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number for the next intent: one above any ever handed out, so that
    /// [`format_merchant_reference`] never repeats a reference, across restarts and compactions.
    pub fn next_sequence(&self) -> u64 {
        self.last_sequence.saturating_add(1)
    }

    /// This installation's identity (see [`identity`]).
    pub fn installation(&self) -> &Installation {
        &self.installation
    }

    /// The merchant reference and sequence of the next intent on `date`: this installation's
    /// id and [`Journal::next_sequence`] make it one that no journal record ever held.
    pub fn next_reference(&self, kiosk_id: &str, date: time::Date) -> (String, u64) {
        let sequence = self.next_sequence();
        (
            format_merchant_reference(kiosk_id, &self.installation.id, date, sequence),
            sequence,
        )
    }

    /// Appends one record and returns only once it is on stable storage.
    ///
    /// An intent must carry a sequence above every one before it ([`Journal::next_sequence`]).
    /// On error the record must be treated as not written: do not make the call it announces.
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        self.check_usable()?;
        match *record {
            Record::Intent { sequence, .. } if sequence <= self.last_sequence => {
                return Err(JournalError::SequenceNotIncreasing {
                    given: sequence,
                    last: self.last_sequence,
                });
            }
            Record::Sequence { last } if last < self.last_sequence => {
                return Err(JournalError::SequenceNotIncreasing {
                    given: last,
                    last: self.last_sequence,
                });
            }
            _ => {}
        }
        let line = record::encode_line(record).map_err(JournalError::Encode)?;
        // Counted before the write: a number offered to a failed append is never offered again
        // in this run, so a record that reached the disk despite the error cannot share its
        // reference with a later payment.
        if let Some(sequence) = record.sequence() {
            self.last_sequence = self.last_sequence.max(sequence);
        }
        if let Err(e) = (&self.file).write_all(&line) {
            self.roll_back(&e);
            return Err(io_error("append to", &self.path)(e));
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed fsync Linux may have dropped the dirty pages and will report the
            // next fsync as clean: nothing in this process can tell what is on disk any more.
            self.poisoned = Some(format!("sync failed: {e}"));
            return Err(io_error("sync", &self.path)(e));
        }
        self.len += line.len() as u64;
        Ok(())
    }

    /// Cuts a half-written line back off, so the next append does not continue it. If that
    /// fails too, refuses further appends.
    fn roll_back(&mut self, cause: &io::Error) {
        let undone = self
            .file
            .set_len(self.len)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = undone {
            tracing::error!(path = %self.path.display(), "cannot undo a failed append: {e}");
            self.poisoned = Some(format!(
                "append failed ({cause}) and could not be undone ({e})"
            ));
        }
    }

    fn check_usable(&self) -> Result<(), JournalError> {
        match &self.poisoned {
            Some(cause) => Err(JournalError::Poisoned {
                path: self.path.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Rewrites the journal with only what is still needed: a [`Record::Sequence`], every record
    /// of every unfinished payment, and the records of the newest `keep_final` finished payments
    /// (newest by when they started). Never drops an unfinished payment or a line it cannot read.
    ///
    /// Crash-safe: the old file is complete until the new one, already synced, is renamed over
    /// it. Run it when no payment is running (at start, after recovery), since it reads the
    /// whole file.
    pub fn compact(&mut self, keep_final: usize) -> Result<CompactStats, JournalError> {
        let prepared = self.prepare_compaction(keep_final)?;
        self.install(prepared)
    }

    /// Writes and syncs the compacted file under its temporary name; the journal is unchanged.
    fn prepare_compaction(&self, keep_final: usize) -> Result<Prepared, JournalError> {
        self.check_usable()?;
        let bytes = fs::read(&self.path).map_err(io_error("read", &self.path))?;
        let scan = replay::scan(&bytes);
        self.prepare_from(&bytes, &scan, keep_final)
    }

    /// [`Journal::prepare_compaction`] from the file's `bytes` and their `scan`.
    fn prepare_from(
        &self,
        bytes: &[u8],
        scan: &replay::Scan,
        keep_final: usize,
    ) -> Result<Prepared, JournalError> {
        self.check_usable()?;
        let finished: Vec<&str> = scan
            .replay
            .payments
            .iter()
            .filter(|p| p.outcome.is_some())
            .map(|p| p.merchant_reference.as_str())
            .collect();
        // A payment named in a line compaction cannot read keeps its records: dropping them
        // would turn the damaged line back into a payment to look up at every start.
        let mut salvaged = HashSet::new();
        for line in scan.lines.iter().filter(|l| l.damaged) {
            if let Some(reference) = replay::salvage(&bytes[line.range.clone()]).reference {
                salvaged.insert(reference);
            }
        }
        let droppable: Vec<&str> = finished
            .into_iter()
            .filter(|r| !salvaged.contains(*r))
            .collect();
        let dropped: HashSet<&str> = droppable[..droppable.len().saturating_sub(keep_final)]
            .iter()
            .copied()
            .collect();
        let last = self.last_sequence.max(scan.replay.last_sequence);
        let sequence =
            record::encode_line(&Record::Sequence { last }).map_err(JournalError::Encode)?;
        let mut out = sequence.clone();
        let mut unreadable_kept = 0;
        let mut damaged_kept = scan.torn.is_some();
        for line in &scan.lines {
            match &line.read {
                Some(replay::Read::Sequence) => {}
                Some(replay::Read::Payment(reference)) => {
                    if !dropped.contains(reference.as_str()) {
                        out.extend_from_slice(&bytes[line.range.clone()]);
                    }
                }
                None => {
                    unreadable_kept += 1;
                    damaged_kept |= line.damaged;
                    out.extend_from_slice(&bytes[line.range.clone()]);
                }
            }
            // The last line may lack its newline in `bytes` (open added it to the file).
            if !out.ends_with(b"\n") {
                out.push(b'\n');
            }
        }
        if let Some(torn) = scan.torn.clone() {
            // Damaged since the journal was opened (the torn tail of a power cut was ended with
            // a newline then): kept like any other unreadable line.
            unreadable_kept += 1;
            out.extend_from_slice(&bytes[torn.clone()]);
            if bytes[torn].last() != Some(&b'\n') {
                out.push(b'\n');
            }
        }
        if damaged_kept {
            // Again after the damaged lines: replay skips the sequence past a damaged line that
            // no readable sequence follows, and `last` already holds that skip.
            out.extend_from_slice(&sequence);
        }
        let temp = self.dir.join(COMPACT_NAME);
        match fs::remove_file(&temp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error("remove the unfinished compaction", &temp)(e));
            }
            _ => {}
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o640)
            .open(&temp)
            .map_err(io_error("create", &temp))?;
        lock(&file, &temp)?;
        let written = file
            .write_all(&out)
            .and_then(|()| file.sync_all())
            .map_err(io_error("write", &temp));
        if let Err(e) = written {
            // Best effort: a leftover is removed at the next open anyway.
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        Ok(Prepared {
            file,
            temp,
            len: out.len() as u64,
            last_sequence: last,
            stats: CompactStats {
                payments_kept: scan.replay.payments.len() - dropped.len(),
                payments_dropped: dropped.len(),
                unreadable_kept,
                bytes_before: bytes.len() as u64,
                bytes_after: out.len() as u64,
            },
        })
    }

    /// Renames the prepared file over the journal and makes it the append target.
    fn install(&mut self, prepared: Prepared) -> Result<CompactStats, JournalError> {
        if let Err(e) = fs::rename(&prepared.temp, &self.path) {
            let _ = fs::remove_file(&prepared.temp);
            return Err(io_error("rename the compacted journal over", &self.path)(e));
        }
        // From here on the old handle names an unlinked file: appends through it would be lost.
        self.file = prepared.file;
        self.len = prepared.len;
        self.last_sequence = prepared.last_sequence;
        if let Err(e) = sync_dir(&self.dir) {
            // The rename may not survive a power cut, and with it every later append.
            self.poisoned = Some(format!("directory sync after compaction failed: {e}"));
            return Err(e);
        }
        let stats = prepared.stats;
        tracing::info!(
            path = %self.path.display(),
            kept = stats.payments_kept,
            dropped = stats.payments_dropped,
            unreadable_kept = stats.unreadable_kept,
            bytes_before = stats.bytes_before,
            bytes_after = stats.bytes_after,
            "journal compacted"
        );
        Ok(stats)
    }
}

/// A compacted journal written under its temporary name, not yet in place.
struct Prepared {
    file: File,
    temp: PathBuf,
    len: u64,
    last_sequence: u64,
    stats: CompactStats,
}

/// Reads `dir/journal.log` without changing anything: no truncation, no lock, no file created.
///
/// For `kioskpay journal`, which may run beside the daemon: a line the daemon is appending at
/// that moment can show up as a torn tail.
pub fn read_only(dir: &Path) -> Result<Replay, JournalError> {
    let path = dir.join(FILE_NAME);
    match fs::read(&path) {
        Ok(bytes) => Ok(replay::scan(&bytes).replay),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(JournalError::Missing { path }),
        Err(e) => Err(io_error("read", &path)(e)),
    }
}

/// One payment as `kioskpay journal --json` prints it.
///
/// `state` is the outcome (`approved`, `declined`, `cancelled`, `timed_out`, `failed`,
/// `not_created`) once the payment is final, else the last state written; `unresolved` is true
/// while there is no outcome.
pub fn summary_json(p: &PaymentRecord) -> serde_json::Value {
    json!({
        "merchant_reference": p.merchant_reference,
        "amount": p.amount,
        "currency": p.currency,
        "cart_reference": p.cart_reference,
        "terminal_id": p.terminal_id,
        "state": p.state,
        "outcome": p.outcome,
        "unresolved": p.outcome.is_none(),
        "session_id": p.session_id,
        "transaction_id": p.transaction_id,
        "status": p.status,
        "started_at": p.started_at,
        "finished_at": p.finished_at,
        "reopened_at": p.reopened_at,
    })
}

/// The `merchant_reference` of a payment:
/// `<kiosk id>-<installation id>-<YYYYMMDD>-<sequence, 6 digits or more>`, e.g.
/// `kiosk-7-7KQ2FX-20261104-000042`.
///
/// Unique because the installation id is drawn at random per state directory and machine (see
/// [`identity`]) and the journal never hands out a sequence that any of its records, readable or
/// not, held; the date is there for people (support calls, settlement reports).
pub fn format_merchant_reference(
    kiosk_id: &str,
    installation: &str,
    date: time::Date,
    sequence: u64,
) -> String {
    format!(
        "{kiosk_id}-{installation}-{:04}{:02}{:02}-{sequence:06}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// The sequence number at the end of a merchant reference (`…-000042` is 42), of this version's
/// format and of the one before the installation id; `None` for anything else.
pub fn reference_sequence(reference: &str) -> Option<u64> {
    let (_, digits) = reference.rsplit_once('-')?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Takes a log's single-writer lock, without waiting (the payment journal's, and the refund
/// journal's in `crate::refund`).
pub fn lock(file: &File, path: &Path) -> Result<(), JournalError> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only reads the descriptor number; `file` keeps it open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Err(JournalError::Locked {
            path: path.to_owned(),
        })
    } else {
        Err(io_error("lock", path)(e))
    }
}

/// Makes a created or renamed directory entry durable.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync the directory", dir))
}

/// Replaces `path` with `bytes` so that a crash or power cut at any moment leaves either the old
/// file or the new one: written to `.NAME.tmp` in the same directory with `mode`, synced, renamed
/// over `path`, and the directory synced so that the rename itself survives a power cut. For the
/// small files around the journal: the console's files, and maintenance kept across a restart.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(".tmp");
    let temp = dir.join(temp_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temp)?;
    // A temporary file left by an earlier crash keeps its old mode through `open`: set it.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)?;
    File::open(dir)?.sync_all()
}

/// Appends a torn line (`bytes`) to the file `torn`, created with mode 0640 if need be, ends it
/// with a newline and syncs the file, so that cutting the line off its log destroys nothing:
/// the journal keeps its torn lines in [`TORN_NAME`], the technician console's audit log in
/// `audit.torn`. Syncing the directory, where a new file must survive a power cut, is the
/// caller's. On failure, says which step failed (`"open"` or `"write"`) and why.
pub fn keep_torn(torn: &Path, bytes: &[u8]) -> Result<(), (&'static str, io::Error)> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(torn)
        .map_err(|e| ("open", e))?;
    file.write_all(bytes)
        .and_then(|()| {
            if bytes.last() == Some(&b'\n') {
                Ok(())
            } else {
                file.write_all(b"\n")
            }
        })
        .and_then(|()| file.sync_all())
        .map_err(|e| ("write", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(sequence: u64) -> Record {
        Record::Intent {
            merchant_reference: format!("k-20261124-{sequence:06}"),
            amount: 100 * sequence,
            currency: "NOK".into(),
            cart_reference: None,
            terminal_id: "T12345678-T0001".into(),
            sequence,
            at: "2026-11-24T07:00:00Z".into(),
        }
    }

    fn finish(sequence: u64) -> Record {
        Record::Final {
            merchant_reference: format!("k-20261124-{sequence:06}"),
            outcome: Outcome::Approved,
            transaction_id: None,
            status: None,
            at: "2026-11-24T07:01:00Z".into(),
        }
    }

    #[test]
    fn crash_before_the_rename_leaves_the_old_journal_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        for s in 1..=4 {
            journal.append(&intent(s)).unwrap();
            if s != 3 {
                journal.append(&finish(s)).unwrap();
            }
        }
        let before = fs::read(dir.path().join(FILE_NAME)).unwrap();
        let prepared = journal.prepare_compaction(0).unwrap();
        let temp = dir.path().join(COMPACT_NAME);
        assert!(temp.exists());
        assert!(fs::metadata(&temp).unwrap().len() < before.len() as u64);
        assert_eq!(fs::read(dir.path().join(FILE_NAME)).unwrap(), before);
        // Power cut: neither the rename nor anything after it happens.
        drop(prepared);
        drop(journal);

        let (journal, replay) = Journal::open(dir.path()).unwrap();
        assert!(!temp.exists(), "the unfinished compaction is cleaned up");
        assert_eq!(fs::read(dir.path().join(FILE_NAME)).unwrap(), before);
        assert_eq!(replay.payments.len(), 4);
        assert!(replay.problems.is_empty(), "{:?}", replay.problems);
        assert_eq!(journal.next_sequence(), 5);
    }

    #[test]
    fn appends_after_compaction_land_in_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal.append(&intent(1)).unwrap();
        journal.append(&finish(1)).unwrap();
        journal.compact(0).unwrap();
        journal.append(&intent(2)).unwrap();
        let replay = read_only(dir.path()).unwrap();
        assert_eq!(replay.payments.len(), 1);
        assert_eq!(replay.payments[0].merchant_reference, "k-20261124-000002");
        assert_eq!(replay.last_sequence, 2);
    }

    #[test]
    fn refuses_a_sequence_that_was_already_used() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal.append(&intent(1)).unwrap();
        let len = fs::metadata(journal.path()).unwrap().len();
        let err = journal.append(&intent(1)).unwrap_err();
        assert!(matches!(
            err,
            JournalError::SequenceNotIncreasing { given: 1, last: 1 }
        ));
        assert!(err.to_string().contains("next_sequence"));
        assert_eq!(fs::metadata(journal.path()).unwrap().len(), len);
        let err = journal.append(&Record::Sequence { last: 0 }).unwrap_err();
        assert!(matches!(err, JournalError::SequenceNotIncreasing { .. }));
    }

    #[test]
    fn poisoned_journal_refuses_appends_and_says_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal.poisoned = Some("sync failed: Input/output error".into());
        let err = journal.append(&intent(1)).unwrap_err();
        assert!(err.to_string().contains("restarted"), "{err}");
        assert!(journal.compact(1).is_err());
        assert_eq!(fs::metadata(journal.path()).unwrap().len(), 0);
    }

    #[test]
    fn io_errors_tell_the_operator_what_to_do() {
        let cases = [
            (libc::EACCES, "StateDirectory=kioskpay"),
            (libc::EROFS, "read-only"),
            (libc::ENOSPC, "disk is full"),
            (libc::EIO, "failing"),
        ];
        for (errno, advice) in cases {
            let err = JournalError::Io {
                action: "append to",
                path: "/var/lib/kioskpay/journal.log".into(),
                source: io::Error::from_raw_os_error(errno),
            };
            let text = err.to_string();
            assert!(text.contains(advice), "{text}");
            assert!(text.contains("/var/lib/kioskpay/journal.log"), "{text}");
        }
    }

    #[test]
    fn merchant_reference_format() {
        let date = time::macros::date!(2026 - 11 - 04);
        assert_eq!(
            format_merchant_reference("kiosk-7", "7KQ2FX", date, 42),
            "kiosk-7-7KQ2FX-20261104-000042"
        );
        assert_eq!(
            format_merchant_reference("k", "000000", date, 1_234_567),
            "k-000000-20261104-1234567"
        );
    }

    #[test]
    fn sequence_read_back_from_references() {
        assert_eq!(
            reference_sequence("kiosk-7-7KQ2FX-20261104-000042"),
            Some(42)
        );
        assert_eq!(reference_sequence("kiosk-1-20261124-000013"), Some(13));
        assert_eq!(
            reference_sequence("k-000000-20261104-1234567"),
            Some(1_234_567)
        );
        for not_ours in ["", "42", "kiosk-", "kiosk-12a", "x-99999999999999999999"] {
            assert_eq!(reference_sequence(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn a_kept_torn_line_is_appended_and_ended_with_one_newline() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let torn = dir.path().join("some.torn");
        keep_torn(&torn, b"{\"seq\":1,\"cut").unwrap();
        keep_torn(&torn, b"{\"seq\":2}\n").unwrap();
        assert_eq!(
            fs::read_to_string(&torn).unwrap(),
            "{\"seq\":1,\"cut\n{\"seq\":2}\n"
        );
        let mode = fs::metadata(&torn).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "{mode:o}");
        let (action, _) = keep_torn(&dir.path().join("no-such-dir/x.torn"), b"x").unwrap_err();
        assert_eq!(action, "open");
    }
}
