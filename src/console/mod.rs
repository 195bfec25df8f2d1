//! The technician console's foundations: who may log in, what a wrong PIN costs, what is written
//! down, and how bytes from a serial cable become command lines.
//!
//! The console itself (`kioskpay console --device /dev/serial0`, [`session`]) is built on these
//! parts; each one works without it and is tested on its own:
//!
//! | part | what it does for the technician |
//! |------|--------------------------------|
//! | [`technicians`] | technician ids, roles (`service`, `refund`, `admin`) and PINs, kept as Argon2id hashes in `/etc/kioskpay/technicians.toml`; `kioskpay technician add`, `remove`, `list` |
//! | [`lockout`] | a wrong PIN costs 1, 2, 4, 8 s; the fifth locks the console line for 15 minutes, across restarts and power cuts |
//! | [`audit`] | every login attempt and command in `audit.log`, each line chained to the previous one by SHA-256; `kioskpay audit verify` |
//! | [`wake`] | the console stays silent until Enter is pressed three times within two seconds |
//! | [`line`](mod@line) | line editing for a plain VT100 terminal: history, tab completion, hidden PIN entry, live events printed above the line being typed |
//!
//! Files, and why they live where they do:
//!
//! - `/etc/kioskpay/technicians.toml` (root, mode 0600): who may log in. Beside the config,
//!   because it is configuration an administrator decides, and because the daemon's unit makes
//!   `/etc` read-only (`ProtectSystem=strict`): a compromised payment daemon cannot add itself a
//!   technician. The daemon never needs the file; the console checks PINs itself.
//! - `<state.dir>/console-<line>.lockout` (default state dir `/var/lib/kioskpay`): the wrong-PIN
//!   count of one console line. Run-time state, like the journal.
//! - `<state.dir>/audit.log`: the audit trail, beside the payment journal it explains.
//!
//! Every file here is replaced atomically (written to a temporary file, synced, renamed over the
//! old one, directory synced) or appended and synced line by line, so a power cut leaves either
//! the old or the new content, never a mix.

pub mod audit;
pub mod command;
pub mod commands;
pub mod line;
pub mod lockout;
pub mod session;
pub mod technicians;
pub mod wake;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Replaces `path` with `bytes` so that a crash or power cut at any moment leaves either the old
/// file or the new one: written to `.NAME.tmp` in the same directory with `mode`, synced, renamed
/// over `path`, and the directory synced so that the rename itself survives a power cut.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
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
    sync_dir(dir)
}

/// Makes a created or renamed directory entry durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
