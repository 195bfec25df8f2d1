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

use std::fs::File;
use std::io;
use std::path::Path;

pub(crate) use crate::journal::write_atomically;

/// Makes a created or renamed directory entry durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
