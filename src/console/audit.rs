//! The audit log: every login attempt and every console command, with who, when and the result,
//! in a file where an edited, removed, inserted or reordered line is found.
//!
//! ## The file
//!
//! `<state.dir>/audit.log` (by default `/var/lib/kioskpay/audit.log`), beside the payment
//! journal it explains. One JSON object per line, written and synced (`fsync`) before the command
//! it records is answered:
//!
//! ```text
//! {"seq":1,"time":"2026-12-04T17:40:00.123Z","technician":"kari","action":"login","result":"ok","prev":"0000…0000"}
//! {"seq":2,"time":"2026-12-04T17:40:09.877Z","technician":"kari","action":"config set dintero.client_secret ***","result":"failed","reason":"not applied","prev":"5f1c…"}
//! ```
//!
//! - `seq` counts from 1; `technician` is the id typed (null before one is); `result` is `ok`,
//!   `failed` or `refused`, with a `reason` for the last two.
//! - `prev` is the SHA-256 (hex) of the previous line's bytes, without its newline; the first line
//!   chains from 64 zeros ([`GENESIS`]).
//! - Secrets never reach the file: the action and the reason pass through [`mask_words`], which
//!   replaces the value after (or `=` in) any word that names a PIN, secret, password or token.
//!
//! ## `kioskpay audit verify`
//!
//! ```text
//! $ kioskpay audit verify --config /etc/kioskpay/kioskpay.toml
//! /var/lib/kioskpay/audit.log: 212 records, the chain is intact; last line sha256 9c0e…
//! $ kioskpay audit verify --state-dir /var/lib/kioskpay
//! /var/lib/kioskpay/audit.log: line 17 was changed after it was written: line 18 holds a different hash of it
//! ```
//!
//! Exit 0: intact (also when only the last line is cut short by a power loss, which is reported
//! as such and is not tampering); 1: broken, with the first line number where it breaks.
//!
//! ## What the chain proves, and what it does not
//!
//! It finds a line edited, removed, inserted or moved by someone who did not recompute the hashes
//! after it. It cannot see an edit of the *last* line (nothing chains from it yet), lines cut off
//! the end, or a whole file rewritten with fresh hashes: for that the hashes must also be kept
//! outside the file. [`AuditLog::record`] returns each line's hash so that the console can send it
//! to the daemon's log (journald), and `verify` prints the last one to compare with it.
//!
//! ## Power cuts and two writers
//!
//! A line cut short by a power loss is, when the log is next opened, moved to `audit.torn` and cut
//! off, and the cut is itself recorded; the chain continues from the last whole line. Two consoles
//! (the serial line and an SSH session) may write at once: each record takes an exclusive `flock`
//! on the file and chains from the line actually last in it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The audit log's file name in the state directory.
pub const FILE_NAME: &str = "audit.log";
/// Where a line cut short by a power loss is kept.
pub const TORN_NAME: &str = "audit.torn";
/// What the first line chains from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest action or reason kept, in characters: a line stays short, and a pasted file does not
/// end up in the log.
const MAX_TEXT: usize = 512;
/// Longest technician id kept (ids are at most 32; a login attempt may type anything).
const MAX_TECHNICIAN: usize = 64;
/// Words that make the value after them a secret.
const SECRET_MARKERS: [&str; 5] = ["pin", "secret", "password", "passwd", "token"];

/// How a command or login attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked.
    Ok,
    /// It was tried and failed (a wrong PIN, an API error).
    Failed(String),
    /// It was not tried (locked out, the role may not).
    Refused(String),
}

/// One line of the log.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    seq: u64,
    time: String,
    technician: Option<String>,
    action: String,
    result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    prev: String,
}

/// What went wrong with the audit log; says what to do.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} the audit log {path}: {source}; the console does not run commands it cannot record (is the state directory writable and the disk not full?)")]
pub struct AuditError {
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AuditError {
    let path = path.to_path_buf();
    move |source| AuditError {
        action,
        path,
        source,
    }
}

/// Whether `word` names a secret: contains `pin`, `secret`, `password`, `passwd` or `token`
/// (any case, e.g. `dintero.client_secret`, `--pin`, `API_TOKEN`).
pub fn is_secret_key(word: &str) -> bool {
    let word = word.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| word.contains(m))
}

/// Masks secrets in a command line before it is logged: `KEY=VALUE` with a secret-looking key
/// becomes `KEY=***`, and the word after a secret-looking key becomes `***`. The first word is the
/// command (`pin change`), not a key.
pub fn mask_words(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut mask_next = false;
    for (i, word) in text.split_whitespace().enumerate() {
        if mask_next {
            out.push("***".into());
            mask_next = false;
            continue;
        }
        match word.split_once('=') {
            Some((key, _)) if is_secret_key(key) => out.push(format!("{key}=***")),
            _ => {
                mask_next = i > 0 && is_secret_key(word);
                out.push(word.to_owned());
            }
        }
    }
    out.join(" ")
}

/// Masks the values of secret-looking keys (see [`is_secret_key`]) anywhere in a JSON value, for
/// structured requests that are logged.
pub fn mask_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if is_secret_key(key) {
                    *value = serde_json::Value::String("***".into());
                } else {
                    mask_json(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_json),
        _ => {}
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

fn clip(text: &str, max: usize) -> String {
    // Control characters would let a typed id or a reason fake a line on a terminal reading it.
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(max)
        .collect()
}

/// Where the chain stands: what the next line chains from, and its number.
struct Tail {
    len: u64,
    prev: String,
    next_seq: u64,
}

/// The audit log, open for appending.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// The file's length after our last write, and the chain there; `None` after a failed write
    /// or when unknown.
    tail: Option<(u64, String, u64)>,
}

impl AuditLog {
    /// Opens (or creates) `audit.log` in `state_dir`. A last line cut short by a power loss is
    /// moved to `audit.torn`, cut off, and the cut recorded.
    pub fn open(state_dir: &Path) -> Result<AuditLog, AuditError> {
        let path = state_dir.join(FILE_NAME);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&path)
            .map_err(io_error("open", &path))?;
        if !existed {
            super::sync_dir(state_dir).map_err(io_error("create", &path))?;
        }
        let mut log = AuditLog {
            path,
            file,
            tail: None,
        };
        let torn = {
            let _lock = Flock::exclusive(&log.file).map_err(io_error("lock", &log.path))?;
            log.scan_tail()?.1
        };
        if torn > 0 {
            let action =
                format!("audit repair: {torn} bytes of a line cut short moved to {TORN_NAME}");
            log.record(None, &action, &Outcome::Ok).map(drop)?;
            tracing::warn!(
                path = %log.path.display(),
                bytes = torn,
                "the audit log's last line was cut short (a power loss while it was written); it was moved to {TORN_NAME}"
            );
        }
        Ok(log)
    }

    /// Appends one record and syncs it to disk; returns the line's SHA-256 (hex), for the
    /// daemon's log. `action` is the command as typed; it and the reason are masked with
    /// [`mask_words`] here, whatever the caller did.
    pub fn record(
        &mut self,
        technician: Option<&str>,
        action: &str,
        outcome: &Outcome,
    ) -> Result<String, AuditError> {
        let now = time::OffsetDateTime::now_utc();
        let time = now
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .unwrap_or_default();
        let (result, reason) = match outcome {
            Outcome::Ok => ("ok", None),
            Outcome::Failed(reason) => ("failed", Some(reason)),
            Outcome::Refused(reason) => ("refused", Some(reason)),
        };
        let _lock = Flock::exclusive(&self.file).map_err(io_error("lock", &self.path))?;
        let tail = self.current_tail()?;
        let entry = Entry {
            seq: tail.next_seq,
            time,
            technician: technician.map(|t| clip(t, MAX_TECHNICIAN)),
            action: clip(&mask_words(action), MAX_TEXT),
            result: result.into(),
            reason: reason.map(|r| clip(&mask_words(r), MAX_TEXT)),
            prev: tail.prev,
        };
        let line = serde_json::to_string(&entry).map_err(|e| AuditError {
            action: "encode a line for",
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        let hash = sha256_hex(line.as_bytes());
        self.tail = None;
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(io_error("write to", &self.path))?;
        self.tail = Some((tail.len + bytes.len() as u64, hash.clone(), entry.seq + 1));
        Ok(hash)
    }

    /// The chain's end: remembered when the file is as we left it, read from it otherwise
    /// (another console wrote, or our last write failed).
    fn current_tail(&mut self) -> Result<Tail, AuditError> {
        let len = self
            .file
            .metadata()
            .map_err(io_error("inspect", &self.path))?
            .len();
        if let Some((known_len, prev, next_seq)) = &self.tail {
            if *known_len == len {
                return Ok(Tail {
                    len,
                    prev: prev.clone(),
                    next_seq: *next_seq,
                });
            }
        }
        Ok(self.scan_tail()?.0)
    }

    /// Reads the file to find the last whole line; cuts off (and keeps) a torn one. Returns the
    /// tail and how many torn bytes were cut. The caller holds the lock.
    fn scan_tail(&mut self) -> Result<(Tail, usize), AuditError> {
        let mut bytes = Vec::new();
        self.file
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.file.read_to_end(&mut bytes))
            .map_err(io_error("read", &self.path))?;
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let torn = bytes.len() - whole;
        if torn > 0 {
            // The torn bytes follow the last newline: keep_torn ends them with one.
            crate::journal::keep_torn(&self.path.with_file_name(TORN_NAME), &bytes[whole..])
                .map_err(|(_, e)| io_error("keep the torn line of", &self.path)(e))?;
            self.file
                .set_len(whole as u64)
                .and_then(|()| self.file.sync_all())
                .map_err(io_error("cut the torn last line off", &self.path))?;
        }
        let lines: Vec<&[u8]> = bytes[..whole]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let tail = match lines.last() {
            None => Tail {
                len: 0,
                prev: GENESIS.into(),
                next_seq: 1,
            },
            Some(last) => Tail {
                len: whole as u64,
                prev: sha256_hex(last),
                // A damaged last line still chains; its number is then its position.
                next_seq: serde_json::from_slice::<Entry>(last)
                    .map_or(lines.len() as u64, |e| e.seq)
                    + 1,
            },
        };
        self.tail = Some((tail.len, tail.prev.clone(), tail.next_seq));
        Ok((tail, torn))
    }
}

/// An exclusive `flock` held until dropped. Holds the descriptor number, not a borrow, so that
/// the log can read and write its file meanwhile; every guard lives inside one method of the
/// [`AuditLog`] that owns the file.
struct Flock(std::os::fd::RawFd);

impl Flock {
    fn exclusive(file: &File) -> io::Result<Flock> {
        let fd = file.as_raw_fd();
        // SAFETY: flock(2) on a descriptor the caller's File keeps open.
        if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Flock(fd))
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        // SAFETY: the File is still open (see the type's docs); unlocking cannot harm it.
        unsafe { libc::flock(self.0, libc::LOCK_UN) };
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every line chains to the one before it.
    Intact {
        /// Whole lines.
        records: u64,
        /// The last line's SHA-256 (hex), to compare with the copy kept outside the file;
        /// [`GENESIS`] for an empty log.
        last_hash: String,
    },
    /// Intact, but the last line was cut short by a power loss while it was written.
    TornTail {
        /// Whole lines before it.
        records: u64,
        /// The last whole line's SHA-256 (hex).
        last_hash: String,
    },
    /// The chain breaks at `line` (1-based).
    Broken {
        /// The first line found edited, missing, inserted or out of place.
        line: u64,
        /// What is wrong there.
        problem: String,
    },
}

#[derive(Deserialize)]
struct Chained {
    seq: u64,
    prev: String,
}

/// Checks the chain of an audit log's bytes; reports the first problem.
pub fn verify(bytes: &[u8]) -> Verdict {
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let torn = whole < bytes.len();
    let lines: Vec<&[u8]> = if whole == 0 {
        Vec::new()
    } else {
        bytes[..whole - 1].split(|&b| b == b'\n').collect()
    };
    let parsed: Vec<Option<Chained>> = lines
        .iter()
        .map(|l| {
            // The full shape is required, not just the two fields the chain needs.
            serde_json::from_slice::<Entry>(l).ok().map(|e| Chained {
                seq: e.seq,
                prev: e.prev,
            })
        })
        .collect();
    let line_of = |seq: u64, except: usize| {
        parsed
            .iter()
            .enumerate()
            .find(|(i, c)| *i != except && c.as_ref().is_some_and(|c| c.seq == seq))
            .map(|(i, _)| i as u64 + 1)
    };
    let mut prev = GENESIS.to_owned();
    for (i, (line, entry)) in lines.iter().zip(&parsed).enumerate() {
        let number = i as u64 + 1;
        let expected = number;
        let broken = |problem: String| Verdict::Broken {
            line: number,
            problem,
        };
        let Some(entry) = entry else {
            return broken(format!(
                "line {number} is not an audit record: it was edited or damaged"
            ));
        };
        if entry.seq < expected {
            let first = line_of(entry.seq, i).unwrap_or(entry.seq);
            return broken(format!(
                "line {number} holds record {} again (also on line {first}): a line was inserted or copied, or lines were reordered",
                entry.seq
            ));
        }
        if entry.seq > expected {
            return match line_of(expected, i) {
                Some(later) => broken(format!(
                    "line {number} holds record {}, but record {expected} is on line {later}: lines were reordered",
                    entry.seq
                )),
                None if entry.seq == expected + 1 => broken(format!(
                    "record {expected} is missing before line {number}: a line was removed"
                )),
                None => broken(format!(
                    "records {expected} to {} are missing before line {number}: lines were removed",
                    entry.seq - 1
                )),
            };
        }
        if entry.prev != prev {
            return if number == 1 {
                broken("line 1 does not chain from the genesis value: it was edited".into())
            } else {
                Verdict::Broken {
                    line: number - 1,
                    problem: format!(
                        "line {} was changed after it was written: line {number} holds a different hash of it",
                        number - 1
                    ),
                }
            };
        }
        prev = sha256_hex(line);
    }
    let records = lines.len() as u64;
    if torn {
        Verdict::TornTail {
            records,
            last_hash: prev,
        }
    } else {
        Verdict::Intact {
            records,
            last_hash: prev,
        }
    }
}

/// `kioskpay audit verify [--state-dir DIR | --config FILE]`: exit 0 intact, 1 broken.
pub fn verify_command(
    state_dir: Option<PathBuf>,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let dir = crate::config::state_dir_of(state_dir, config)?;
    let path = dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            println!(
                "{}: no audit log: nothing was recorded yet (or the file was deleted)",
                path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(io_error("read", &path)(e).into()),
    };
    match verify(&bytes) {
        Verdict::Intact { records, last_hash } => {
            println!(
                "{}: {records} records, the chain is intact; last line sha256 {last_hash}",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Verdict::TornTail { records, last_hash } => {
            println!(
                "{}: {records} records, the chain is intact; last line sha256 {last_hash}\n\
                 line {} is incomplete: cut short by a power loss while it was written (not \
                 tampering); the console moves it to {TORN_NAME} when it next opens the log",
                path.display(),
                records + 1
            );
            Ok(ExitCode::SUCCESS)
        }
        Verdict::Broken { problem, .. } => {
            println!("{}: {problem}", path.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of `n` records in a fresh state directory.
    fn log_with(n: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path()).unwrap();
        log.record(Some("kari"), "login", &Outcome::Ok).unwrap();
        for i in 1..n {
            log.record(
                Some("kari"),
                &format!("status {i}"),
                &Outcome::Failed("daemon not running".into()),
            )
            .unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        (dir, path)
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn rewrite(lines: &[String]) -> Verdict {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        verify(text.as_bytes())
    }

    fn broken_at(verdict: Verdict) -> (u64, String) {
        match verdict {
            Verdict::Broken { line, problem } => (line, problem),
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn records_chain_from_genesis_and_verify() {
        let (_dir, path) = log_with(5);
        let lines = lines(&path);
        assert_eq!(lines.len(), 5);
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["seq"], 1);
        assert_eq!(first["prev"], GENESIS);
        assert_eq!(first["technician"], "kari");
        assert_eq!(first["action"], "login");
        assert_eq!(first["result"], "ok");
        assert!(first.get("reason").is_none());
        let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["prev"], sha256_hex(lines[0].as_bytes()));
        assert_eq!(second["result"], "failed");
        assert_eq!(second["reason"], "daemon not running");
        assert_eq!(
            verify(&std::fs::read(&path).unwrap()),
            Verdict::Intact {
                records: 5,
                last_hash: sha256_hex(lines[4].as_bytes())
            }
        );
        assert_eq!(
            verify(b""),
            Verdict::Intact {
                records: 0,
                last_hash: GENESIS.into()
            }
        );
    }

    #[test]
    fn an_edited_line_is_found_by_its_number() {
        let (_dir, path) = log_with(6);
        let mut edited = lines(&path);
        edited[2] = edited[2].replace("status 2", "status 9");
        let (line, problem) = broken_at(rewrite(&edited));
        assert_eq!(line, 3, "{problem}");
        assert!(problem.contains("line 3 was changed"), "{problem}");

        let mut first = lines(&path);
        first[0] = first[0].replace("kari", "ola");
        assert_eq!(broken_at(rewrite(&first)).0, 1);

        let mut garbage = lines(&path);
        garbage[3] = "{\"seq\":4}".into();
        let (line, problem) = broken_at(rewrite(&garbage));
        assert_eq!(line, 4);
        assert!(problem.contains("not an audit record"), "{problem}");
    }

    #[test]
    fn a_removed_line_is_found_by_its_number() {
        let (_dir, path) = log_with(6);
        let mut removed = lines(&path);
        removed.remove(3);
        let (line, problem) = broken_at(rewrite(&removed));
        assert_eq!(line, 4, "{problem}");
        assert!(problem.contains("record 4 is missing"), "{problem}");
        let mut head = lines(&path);
        head.drain(0..2);
        let (line, problem) = broken_at(rewrite(&head));
        assert_eq!(line, 1, "{problem}");
        assert!(problem.contains("records 1 to 2 are missing"), "{problem}");
    }

    #[test]
    fn a_reordered_line_is_found_by_its_number() {
        let (_dir, path) = log_with(6);
        let mut swapped = lines(&path);
        swapped.swap(2, 4);
        let (line, problem) = broken_at(rewrite(&swapped));
        assert_eq!(line, 3, "{problem}");
        assert!(
            problem.contains("record 3 is on line 5") && problem.contains("reordered"),
            "{problem}"
        );
    }

    #[test]
    fn an_inserted_line_is_found_by_its_number() {
        let (_dir, path) = log_with(5);
        let mut inserted = lines(&path);
        // A forged record 3 that chains correctly from line 2, before the real record 3.
        let forged = Entry {
            seq: 3,
            time: "2026-12-04T18:00:00.000Z".into(),
            technician: Some("mallory".into()),
            action: "refund X".into(),
            result: "ok".into(),
            reason: None,
            prev: sha256_hex(inserted[1].as_bytes()),
        };
        inserted.insert(2, serde_json::to_string(&forged).unwrap());
        let (line, problem) = broken_at(rewrite(&inserted));
        assert_eq!(line, 4, "{problem}");
        assert!(
            problem.contains("holds record 3 again (also on line 3)"),
            "{problem}"
        );
    }

    #[test]
    fn a_torn_last_line_is_a_power_cut_not_tampering_and_is_repaired() {
        let (dir, path) = log_with(3);
        let intact = lines(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"seq\":4,\"time\":\"2026-12-0");
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            verify(&bytes),
            Verdict::TornTail {
                records: 3,
                last_hash: sha256_hex(intact[2].as_bytes())
            }
        );
        // Opening the log cuts it off, keeps it, records the repair, and chains on.
        let mut log = AuditLog::open(dir.path()).unwrap();
        log.record(Some("kari"), "logout", &Outcome::Ok).unwrap();
        let repaired = lines(&path);
        assert_eq!(repaired.len(), 5);
        assert!(
            repaired[3].contains("\"action\":\"audit repair: 26 bytes"),
            "{}",
            repaired[3]
        );
        assert!(matches!(
            verify(&std::fs::read(&path).unwrap()),
            Verdict::Intact { records: 5, .. }
        ));
        let torn = std::fs::read_to_string(dir.path().join(TORN_NAME)).unwrap();
        assert_eq!(torn, "{\"seq\":4,\"time\":\"2026-12-0\n");
    }

    #[test]
    fn two_writers_keep_one_chain() {
        let (dir, path) = log_with(2);
        let mut serial = AuditLog::open(dir.path()).unwrap();
        let mut ssh = AuditLog::open(dir.path()).unwrap();
        for i in 0..3 {
            serial
                .record(Some("kari"), &format!("status {i}"), &Outcome::Ok)
                .unwrap();
            ssh.record(Some("ola"), &format!("logs {i}"), &Outcome::Ok)
                .unwrap();
        }
        assert!(matches!(
            verify(&std::fs::read(&path).unwrap()),
            Verdict::Intact { records: 8, .. }
        ));
    }

    #[test]
    fn secrets_are_masked_before_they_are_written() {
        assert_eq!(
            mask_words("config set dintero.client_secret s3cr3t-value"),
            "config set dintero.client_secret ***"
        );
        assert_eq!(mask_words("login kari pin=482915"), "login kari pin=***");
        assert_eq!(
            mask_words("credentials set --token abc --verbose"),
            "credentials set --token *** --verbose"
        );
        assert_eq!(mask_words("pin change"), "pin change");
        assert_eq!(mask_words("config get kiosk.id"), "config get kiosk.id");
        let mut json = serde_json::json!({
            "command": "config set",
            "key": "dintero.client_secret",
            "args": [{"PIN": "482915"}, {"api_token": {"nested": "x"}}],
            "Password": "hunter2",
        });
        mask_json(&mut json);
        assert_eq!(
            json,
            serde_json::json!({
                "command": "config set",
                "key": "dintero.client_secret",
                "args": [{"PIN": "***"}, {"api_token": "***"}],
                "Password": "***",
            })
        );

        let dir = tempfile::tempdir().unwrap();
        let mut log = AuditLog::open(dir.path()).unwrap();
        log.record(
            Some("kari\x1b[2J"),
            "config set dintero.client_secret s3cr3t-value",
            &Outcome::Refused("token=abc123 rejected".into()),
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(
            !text.contains("s3cr3t") && !text.contains("abc123"),
            "{text}"
        );
        assert!(text.contains("\"technician\":\"kari?[2J\""), "{text}");
        assert!(
            text.contains("\"result\":\"refused\",\"reason\":\"token=*** rejected\""),
            "{text}"
        );
    }
}
