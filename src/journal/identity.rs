//! The installation's identity: a random name for one state directory on one machine, carried
//! in every merchant reference so that references never repeat across kiosks or lost state.
//!
//! A merchant reference is how a kiosk finds a payment whose create answer it never saw. If two
//! payments could share one, a lookup could take another payment's money for this cart. The
//! journal's sequence alone cannot prevent that:
//! - a **lost state directory** (re-imaged SD card, `apt purge` and reinstall, a changed
//!   `state.dir`) starts the sequence at 1 again;
//! - **two kiosks left on the same `kiosk.id`** (the packaged default) count the same numbers;
//! - a **cloned SD image** copies the journal, and with it the sequence, to a second board.
//!
//! So every installation draws a random identity ([`ID_LEN`] Crockford base32 characters, 30
//! bits from the kernel's random source) the first time its journal is opened, and keeps it in
//! `<state.dir>/installation` beside the journal. A new state directory is a new identity. The
//! file also records a fingerprint of the machine (`/etc/machine-id` and, on a Raspberry Pi, the
//! SoC serial number); a state directory that turns up on another machine (a cloned image, a card
//! moved to a spare board) draws a new identity and says so at WARN, because its copy of the
//! sequence is shared with the original.
//!
//! Journal damage that may hide references (a line cut or garbled after which no readable intent
//! follows, see [`super::DAMAGE_GAP`]) also draws a new identity, once per distinct damage: the
//! lines lost after a cut may have carried references that nothing readable remembers.
//!
//! What it cannot see: a backup of the state directory restored on the same machine rewinds the
//! sequence under the same identity. That case, and any other a random draw cannot rule out, is
//! caught by the second line of defence: a payment found by reference counts only when its
//! amount, currency, terminal, cart reference and creation time match the journaled intent (see
//! [`crate::payment::identity`]).
//!
//! The identity is short on purpose: customers read the reference aloud to support. Crockford's
//! alphabet has no I, L, O or U, so it survives being read out and typed back.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{io_error, sync_dir, JournalError};

/// The identity file's name inside `state.dir`.
pub const FILE_NAME: &str = "installation";
/// Where the identity is written before it is renamed into place.
const TEMP_NAME: &str = "installation.new";
/// Characters in an identity: 30 bits, about one in a billion for two installations to match.
pub const ID_LEN: usize = 6;
/// Crockford's base32 alphabet: no I, L, O, U to misread.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// This installation's identity, as kept in `<state.dir>/installation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    /// [`ID_LEN`] characters of Crockford base32, e.g. `7KQ2FX`.
    pub id: String,
    /// A hash of what identifies the machine it was drawn on (see [`machine_fingerprint`]).
    pub machine: String,
    /// When it was drawn, RFC 3339, for the technician.
    pub created_at: String,
    /// The journal damage it was drawn for, if it replaced an identity because damage may hide
    /// references (see [`redraw_for_damage`]); the same damage found again needs no new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drawn_for_damage: Option<String>,
}

/// Why [`load_or_create`] drew a new identity where a file existed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redrawn {
    /// The file was drawn on another machine: a cloned image or a card moved to another board.
    OtherMachine {
        /// The identity it had.
        previous: String,
    },
    /// The file could not be read as an identity (damaged storage); it is kept as
    /// `installation.damaged`.
    Damaged {
        /// What was wrong with it.
        why: String,
    },
}

impl Installation {
    /// Whether `id` is an identity as this module draws them.
    pub fn is_valid_id(id: &str) -> bool {
        id.len() == ID_LEN && id.bytes().all(|b| ALPHABET.contains(&b))
    }
}

/// Reads this installation's identity from `dir`, drawing a new one when there is none, when it
/// was drawn on another machine than `machine`, or when the file is damaged. A new identity is
/// on disk (synced, renamed into place, directory synced) before this returns.
pub fn load_or_create(
    dir: &Path,
    machine: &str,
) -> Result<(Installation, Option<Redrawn>), JournalError> {
    let path = dir.join(FILE_NAME);
    let redrawn = match fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<Installation>(&bytes) {
            Ok(found) if !Installation::is_valid_id(&found.id) => {
                keep_damaged(dir, &bytes)?;
                Some(Redrawn::Damaged {
                    why: format!("{:?} is not an installation id", found.id),
                })
            }
            Ok(found) if found.machine == machine => return Ok((found, None)),
            Ok(found) => Some(Redrawn::OtherMachine { previous: found.id }),
            Err(e) => {
                keep_damaged(dir, &bytes)?;
                Some(Redrawn::Damaged { why: e.to_string() })
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("read", &path)(e)),
    };
    let installation = draw(dir, machine, None)?;
    Ok((installation, redrawn))
}

/// Draws a new identity because journal damage (`mark` names it) may hide references this one
/// already used: a line cut inside can take every line after it along, and with them
/// references whose sequence nothing readable remembers. Under a new identity none of those can
/// come back. Damage seen before (the same `mark`) keeps the identity drawn for it.
pub fn redraw_for_damage(
    dir: &Path,
    current: Installation,
    mark: &str,
) -> Result<(Installation, bool), JournalError> {
    if current.drawn_for_damage.as_deref() == Some(mark) {
        return Ok((current, false));
    }
    Ok((draw(dir, &current.machine, Some(mark.to_owned()))?, true))
}

fn draw(
    dir: &Path,
    machine: &str,
    drawn_for_damage: Option<String>,
) -> Result<Installation, JournalError> {
    let installation = Installation {
        id: draw_id(dir)?,
        machine: machine.to_owned(),
        created_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        drawn_for_damage,
    };
    write(dir, &installation)?;
    Ok(installation)
}

/// Reads the identity without creating one, for read-only tools.
pub fn read(dir: &Path) -> Option<Installation> {
    let bytes = fs::read(dir.join(FILE_NAME)).ok()?;
    serde_json::from_slice::<Installation>(&bytes)
        .ok()
        .filter(|i| Installation::is_valid_id(&i.id))
}

/// A stable hash of what identifies this machine: `/etc/machine-id` and the SoC serial number
/// (Raspberry Pi and other device-tree boards). "unknown" when neither can be read, which turns
/// clone detection off but nothing else.
pub fn machine_fingerprint() -> String {
    let sources = [
        "/etc/machine-id",
        "/sys/firmware/devicetree/base/serial-number",
    ];
    let parts: Vec<String> = sources
        .iter()
        .filter_map(|p| fs::read(p).ok())
        .map(|b| {
            String::from_utf8_lossy(&b)
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        return "unknown".into();
    }
    let digest = Sha256::digest(parts.join("\n").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// [`ID_LEN`] characters from the kernel's random source.
fn draw_id(dir: &Path) -> Result<String, JournalError> {
    let source = Path::new("/dev/urandom");
    let mut bytes = [0u8; ID_LEN];
    File::open(source)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| JournalError::Io {
            action: "read random bytes for the installation id from",
            path: source.to_owned(),
            source: e,
        })
        .map_err(|e| {
            tracing::error!(dir = %dir.display(), "{e}");
            e
        })?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect())
}

fn write(dir: &Path, installation: &Installation) -> Result<(), JournalError> {
    let temp = dir.join(TEMP_NAME);
    let path = dir.join(FILE_NAME);
    let mut text = serde_json::to_vec_pretty(installation).map_err(JournalError::Encode)?;
    text.push(b'\n');
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(&temp)
        .map_err(io_error("create", &temp))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", &temp))?;
    fs::rename(&temp, &path).map_err(io_error("rename the installation id to", &path))?;
    sync_dir(dir)
}

/// Keeps an unreadable identity file for the technician before it is replaced.
fn keep_damaged(dir: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let path = dir.join("installation.damaged");
    fs::write(&path, bytes).map_err(io_error("write", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (first, redrawn) = load_or_create(dir.path(), "m1").unwrap();
        assert_eq!(redrawn, None);
        assert!(Installation::is_valid_id(&first.id), "{}", first.id);
        let (again, redrawn) = load_or_create(dir.path(), "m1").unwrap();
        assert_eq!(redrawn, None);
        assert_eq!(again, first);
        assert_eq!(read(dir.path()), Some(first));
    }

    #[test]
    fn another_machine_draws_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = load_or_create(dir.path(), "original-board").unwrap();
        let (clone, redrawn) = load_or_create(dir.path(), "cloned-board").unwrap();
        assert_eq!(
            redrawn,
            Some(Redrawn::OtherMachine {
                previous: first.id.clone()
            })
        );
        assert_ne!(clone.id, first.id);
        assert_eq!(clone.machine, "cloned-board");
    }

    #[test]
    fn a_damaged_file_is_kept_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{\"id\":\"7KQ\x00").unwrap();
        let (new, redrawn) = load_or_create(dir.path(), "m").unwrap();
        assert!(
            matches!(redrawn, Some(Redrawn::Damaged { .. })),
            "{redrawn:?}"
        );
        assert!(Installation::is_valid_id(&new.id));
        assert_eq!(
            fs::read(dir.path().join("installation.damaged")).unwrap(),
            b"{\"id\":\"7KQ\x00"
        );
        let bad_id = r#"{"id":"ILOU!!","machine":"m","created_at":""}"#;
        fs::write(dir.path().join(FILE_NAME), bad_id).unwrap();
        let (_, redrawn) = load_or_create(dir.path(), "m").unwrap();
        assert!(
            matches!(redrawn, Some(Redrawn::Damaged { .. })),
            "{redrawn:?}"
        );
    }

    #[test]
    fn new_damage_draws_a_new_identity_once() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = load_or_create(dir.path(), "m").unwrap();
        let (after, redrawn) = redraw_for_damage(dir.path(), first.clone(), "crc-1").unwrap();
        assert!(redrawn);
        assert_ne!(after.id, first.id);
        let (again, redrawn) = redraw_for_damage(dir.path(), after.clone(), "crc-1").unwrap();
        assert!(!redrawn, "the same damage found at the next start");
        assert_eq!(again, after);
        assert_eq!(
            load_or_create(dir.path(), "m").unwrap().0,
            after,
            "kept on disk"
        );
        let (other, redrawn) = redraw_for_damage(dir.path(), after.clone(), "crc-2").unwrap();
        assert!(redrawn);
        assert_ne!(other.id, after.id);
    }

    #[test]
    fn ids_use_the_whole_alphabet_and_differ() {
        let dir = tempfile::tempdir().unwrap();
        let ids: std::collections::HashSet<String> =
            (0..200).map(|_| draw_id(dir.path()).unwrap()).collect();
        assert!(ids.len() > 195, "random draws repeat: {}", ids.len());
        assert!(ids.iter().all(|id| Installation::is_valid_id(id)));
    }
}
