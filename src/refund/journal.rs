//! The refund journal: `<state.dir>/refunds.log`, append-only, one checked line per step.
//!
//! Lines are framed like the payment journal's (`<crc32> <json>\n`, see
//! [`crate::journal::frame_line`]), each append is synced before [`RefundJournal::append`]
//! returns, and one writer holds the file under an exclusive `flock`. A technician reads it
//! with `cut -d' ' -f2- /var/lib/kioskpay/refunds.log | jq`.
//!
//! A line that fails its checksum is reported and skipped. It can only be the last line a power
//! cut tore, and a torn line's step was never acted on: the refund call is made only after the
//! `sent` line is on stable storage, so a torn `requested` or `sent` line is a refund that was
//! never sent.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{RefundState, Step};
use crate::journal::{frame_line, lock, sync_dir, unframe_line, JournalError};

/// The file's name inside `state.dir`.
pub const FILE_NAME: &str = "refunds.log";

/// One step of one refund, as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RefundRecord {
    /// A technician asked for the refund; written before the kiosk is taken out of sale.
    Requested {
        /// Ours, sent to Dintero with the refund: how recovery recognises it.
        refund_reference: String,
        /// The refunded transaction.
        transaction_id: String,
        /// The payment's `merchant_reference`.
        merchant_reference: String,
        /// Minor units.
        amount: u64,
        /// ISO 4217 code.
        currency: String,
        /// What Dintero showed as refunded before this one, minor units: recovery's fallback
        /// when Dintero does not echo the refund reference.
        refunded_before: u64,
        /// Who asked.
        technician: String,
        /// RFC 3339.
        at: String,
    },
    /// Written and synced just before the refund call.
    Sent {
        /// Which refund.
        refund_reference: String,
        /// RFC 3339.
        at: String,
    },
    /// The refund shows on the transaction.
    Refunded {
        /// Which refund.
        refund_reference: String,
        /// The transaction's status after it (e.g. `PARTIALLY_REFUNDED`).
        status: String,
        /// RFC 3339.
        at: String,
    },
    /// Dintero refused it, or it was given up before the call: nothing was refunded.
    Failed {
        /// Which refund.
        refund_reference: String,
        /// Why, for the technician.
        reason: String,
        /// RFC 3339.
        at: String,
    },
    /// The call's outcome is not known (no answer, or no refund showing in time).
    Unknown {
        /// Which refund.
        refund_reference: String,
        /// What happened on the wire.
        reason: String,
        /// RFC 3339.
        at: String,
    },
    /// Recovery found no trace of the refund at Dintero: it did not happen, and is not retried.
    NotDone {
        /// Which refund.
        refund_reference: String,
        /// RFC 3339.
        at: String,
    },
}

impl RefundRecord {
    /// The refund the record is about.
    pub fn refund_reference(&self) -> &str {
        match self {
            RefundRecord::Requested {
                refund_reference, ..
            }
            | RefundRecord::Sent {
                refund_reference, ..
            }
            | RefundRecord::Refunded {
                refund_reference, ..
            }
            | RefundRecord::Failed {
                refund_reference, ..
            }
            | RefundRecord::Unknown {
                refund_reference, ..
            }
            | RefundRecord::NotDone {
                refund_reference, ..
            } => refund_reference,
        }
    }
}

/// Everything the journal knows about one refund.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// Ours, sent to Dintero.
    pub refund_reference: String,
    /// The refunded transaction.
    pub transaction_id: String,
    /// The payment's `merchant_reference`.
    pub merchant_reference: String,
    /// Minor units.
    pub amount: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Refunded before this one, minor units.
    pub refunded_before: u64,
    /// Who asked.
    pub technician: String,
    /// Where it stands.
    pub state: RefundState,
    /// When it was asked for (RFC 3339).
    pub requested_at: String,
    /// When it got where it stands (RFC 3339).
    pub updated_at: String,
    /// Why it failed or is unknown, or the transaction's status once refunded.
    pub detail: Option<String>,
}

/// What a replay found: the refunds, oldest first, and the lines that did not count.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Every refund, in the order they were asked for.
    pub refunds: Vec<Refund>,
    /// Lines that did not count, with why (logged at open).
    pub problems: Vec<String>,
    /// Where each refund reference is in `refunds`.
    index: BTreeMap<String, usize>,
}

impl Replayed {
    /// The refunds of one payment, by merchant reference or transaction id.
    pub fn of<'a>(&'a self, payment: &'a str) -> impl Iterator<Item = &'a Refund> + 'a {
        self.refunds
            .iter()
            .filter(move |r| r.merchant_reference == payment || r.transaction_id == payment)
    }

    /// The refund with this reference.
    pub fn get(&self, refund_reference: &str) -> Option<&Refund> {
        self.index.get(refund_reference).map(|&i| &self.refunds[i])
    }

    /// Takes one record into account, or says why it does not count.
    pub fn apply(&mut self, record: RefundRecord) -> Result<(), String> {
        let (reference, step, at, detail) = match record {
            RefundRecord::Requested {
                refund_reference,
                transaction_id,
                merchant_reference,
                amount,
                currency,
                refunded_before,
                technician,
                at,
            } => {
                if self.index.contains_key(&refund_reference) {
                    return Err(format!(
                        "refund {refund_reference} asked for a second time; the first counts"
                    ));
                }
                self.index
                    .insert(refund_reference.clone(), self.refunds.len());
                self.refunds.push(Refund {
                    refund_reference,
                    transaction_id,
                    merchant_reference,
                    amount,
                    currency,
                    refunded_before,
                    technician,
                    state: RefundState::Requested,
                    requested_at: at.clone(),
                    updated_at: at,
                    detail: None,
                });
                return Ok(());
            }
            RefundRecord::Sent {
                refund_reference,
                at,
            } => (refund_reference, Step::Sent, at, None),
            RefundRecord::Refunded {
                refund_reference,
                status,
                at,
            } => (refund_reference, Step::Refunded, at, Some(status)),
            RefundRecord::Failed {
                refund_reference,
                reason,
                at,
            } => (refund_reference, Step::Failed, at, Some(reason)),
            RefundRecord::Unknown {
                refund_reference,
                reason,
                at,
            } => (refund_reference, Step::Unknown, at, Some(reason)),
            RefundRecord::NotDone {
                refund_reference,
                at,
            } => (refund_reference, Step::NotDone, at, None),
        };
        let Some(&i) = self.index.get(&reference) else {
            return Err(format!(
                "a step of refund {reference} whose request is not in the journal"
            ));
        };
        let refund = &mut self.refunds[i];
        refund.state = refund
            .state
            .after(step)
            .map_err(|e| format!("refund {reference}: {e}"))?;
        refund.updated_at = at;
        if detail.is_some() {
            refund.detail = detail;
        }
        Ok(())
    }
}

/// Reads the journal's bytes back into refunds. Never fails: a bad line is a problem.
pub fn replay(bytes: &[u8]) -> Replayed {
    let mut out = Replayed::default();
    for (number, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let applied = unframe_line(line)
            .and_then(|json| {
                serde_json::from_slice::<RefundRecord>(json).map_err(|e| e.to_string())
            })
            .and_then(|record| out.apply(record));
        if let Err(why) = applied {
            out.problems.push(format!("line {}: {why}", number + 1));
        }
    }
    out
}

/// Reads `dir/refunds.log` without taking the writer's lock (the console, beside the daemon).
/// A missing file is a kiosk that never refunded.
pub fn read_only(dir: &Path) -> Result<Replayed, JournalError> {
    let path = dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(replay(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Replayed::default()),
        Err(source) => Err(JournalError::Io {
            action: "read",
            path,
            source,
        }),
    }
}

/// The open refund journal: the daemon's handle for appending.
#[derive(Debug)]
pub struct RefundJournal {
    path: PathBuf,
    file: File,
}

impl RefundJournal {
    /// Opens (creating if needed) `dir/refunds.log` for appending, under the writer's lock, and
    /// replays it. A last line without its newline gets one, so the next append starts clean.
    pub fn open(dir: &Path) -> Result<(RefundJournal, Replayed), JournalError> {
        let path = dir.join(FILE_NAME);
        let io_error = |action: &'static str| {
            let path = path.clone();
            move |source| JournalError::Io {
                action,
                path,
                source,
            }
        };
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&path)
            .map_err(io_error("open"))?;
        lock(&file, &path)?;
        if created {
            sync_dir(dir)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_error("read"))?;
        if !bytes.is_empty() && bytes.last() != Some(&b'\n') {
            (&file)
                .write_all(b"\n")
                .and_then(|()| file.sync_data())
                .map_err(io_error("end the last line of"))?;
        }
        Ok((RefundJournal { path, file }, replay(&bytes)))
    }

    /// Appends one record and returns only once it is on stable storage. On error, do not make
    /// the call the record announces.
    pub fn append(&mut self, record: &RefundRecord) -> Result<(), JournalError> {
        let json = serde_json::to_vec(record).map_err(JournalError::Encode)?;
        (&self.file)
            .write_all(&frame_line(&json))
            .and_then(|()| self.file.sync_data())
            .map_err(|source| JournalError::Io {
                action: "append to",
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(reference: &str) -> RefundRecord {
        RefundRecord::Requested {
            refund_reference: reference.into(),
            transaction_id: "T1".into(),
            merchant_reference: "kiosk-1-X-20261205-000001".into(),
            amount: 10000,
            currency: "NOK".into(),
            refunded_before: 0,
            technician: "kari".into(),
            at: "2026-12-05T10:00:00Z".into(),
        }
    }

    fn sent(reference: &str) -> RefundRecord {
        RefundRecord::Sent {
            refund_reference: reference.into(),
            at: "2026-12-05T10:00:01Z".into(),
        }
    }

    #[test]
    fn replay_follows_each_refund_through_its_steps() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, replayed) = RefundJournal::open(dir.path()).unwrap();
        assert!(replayed.refunds.is_empty());
        journal.append(&requested("R1")).unwrap();
        journal.append(&sent("R1")).unwrap();
        journal
            .append(&RefundRecord::Refunded {
                refund_reference: "R1".into(),
                status: "PARTIALLY_REFUNDED".into(),
                at: "2026-12-05T10:00:03Z".into(),
            })
            .unwrap();
        journal.append(&requested("R2")).unwrap();
        journal.append(&sent("R2")).unwrap();
        drop(journal);
        let replayed = read_only(dir.path()).unwrap();
        assert!(replayed.problems.is_empty(), "{:?}", replayed.problems);
        let states: Vec<_> = replayed.refunds.iter().map(|r| r.state).collect();
        assert_eq!(states, [RefundState::Refunded, RefundState::Sent]);
        assert_eq!(
            replayed.refunds[0].detail.as_deref(),
            Some("PARTIALLY_REFUNDED")
        );
        assert_eq!(replayed.of("kiosk-1-X-20261205-000001").count(), 2);
        assert_eq!(replayed.of("T1").count(), 2);
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_journal, _) = RefundJournal::open(dir.path()).unwrap();
        assert!(matches!(
            RefundJournal::open(dir.path()),
            Err(JournalError::Locked { .. })
        ));
    }

    #[test]
    fn a_torn_last_line_is_reported_and_the_next_append_starts_on_a_clean_line() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = RefundJournal::open(dir.path()).unwrap();
        journal.append(&requested("R1")).unwrap();
        drop(journal);
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        let torn = frame_line(&serde_json::to_vec(&sent("R1")).unwrap());
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();

        let (mut journal, replayed) = RefundJournal::open(dir.path()).unwrap();
        assert_eq!(replayed.problems.len(), 1, "{:?}", replayed.problems);
        assert_eq!(replayed.refunds[0].state, RefundState::Requested);
        journal.append(&sent("R1")).unwrap();
        drop(journal);
        let replayed = read_only(dir.path()).unwrap();
        assert_eq!(replayed.refunds[0].state, RefundState::Sent);
        assert_eq!(replayed.problems.len(), 1);
    }

    #[test]
    fn steps_out_of_order_or_without_a_request_are_problems_not_panics() {
        let mut bytes = Vec::new();
        for record in [
            sent("R9"),
            requested("R1"),
            sent("R1"),
            RefundRecord::Refunded {
                refund_reference: "R1".into(),
                status: "REFUNDED".into(),
                at: "t".into(),
            },
            sent("R1"),
            requested("R1"),
        ] {
            bytes.extend(frame_line(&serde_json::to_vec(&record).unwrap()));
        }
        bytes.extend_from_slice(b"garbage\n\xff\xfe\n");
        let replayed = replay(&bytes);
        assert_eq!(replayed.refunds.len(), 1);
        assert_eq!(replayed.refunds[0].state, RefundState::Refunded);
        assert_eq!(replayed.problems.len(), 5, "{:?}", replayed.problems);
    }
}
