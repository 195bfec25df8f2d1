//! Technicians: who may log in on the console, with which PIN, and what each may do.
//!
//! ## Roles
//!
//! Separated as payment terminals separate their operators; each role may do everything the one
//! before it may:
//!
//! | role | may |
//! |------|-----|
//! | `service` | status, tests, logs, payments (read) |
//! | `refund` | the above, plus refund and void |
//! | `admin` | the above, plus config, credentials and technicians |
//!
//! ## PINs
//!
//! Six to sixteen digits. Refused, with the reason: all one digit (`000000`), a run of
//! consecutive digits up or down (`123456`, `654321`, `890123`), a shorter group repeated
//! (`121212`, `123123`), and a short list of patterns people pick first (`112233`, `123321`, keypad
//! columns such as `147258`). There is no default PIN: the first technician is added from a root
//! shell.
//!
//! A PIN is stored only as an Argon2id hash in a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), salted with 16 random bytes from the operating
//! system. The parameters are OWASP's first recommendation for Argon2id: 19 MiB of memory, 2
//! passes, 1 lane. One hash took 41–70 ms on the 2-core x86-64 build machine (optimised, under
//! the load of other builds; `hashes_are_salted_argon2id_and_verify` prints it with
//! `--nocapture`); a Raspberry Pi 3/4 core is several times slower, a few hundred milliseconds
//! (not measured here): unnoticeable at login, and 19 MiB is affordable on a 512 MiB board. Hashing runs on tokio's blocking pool
//! ([`hash_pin_async`], [`authenticate_async`]), never on the runtime's worker threads.
//!
//! A six-digit PIN has only a million possibilities: whoever reads the hashes can try them all
//! offline in hours. The hashes are therefore as secret as the PINs: the file is root-owned,
//! mode 0600, and refused when group or others may read it. Online guessing at the console is
//! what [`super::lockout`] stops.
//!
//! ## The file
//!
//! `/etc/kioskpay/technicians.toml` ([`DEFAULT_FILE`]), beside the config: an administrator's
//! decision, like the config, and read-only to the payment daemon (its unit has
//! `ProtectSystem=strict`), so a compromised daemon cannot add itself a technician. It is written
//! by `kioskpay technician add|remove` (and later by the console's `technician` and `pin change`
//! commands), always atomically: temporary file, fsync, rename, fsync of the directory.
//!
//! ```toml
//! [[technician]]
//! id = "kari"
//! role = "admin"
//! pin = "$argon2id$v=19$m=19456,t=2,p=1$…"
//! added = "2026-12-04T17:40:00Z"
//! ```
//!
//! ## Commands
//!
//! ```text
//! # kioskpay technician add kari --role admin
//! PIN for kari (6 or more digits, not shown):
//! Same PIN again:
//! technician kari added (admin) to /etc/kioskpay/technicians.toml
//! # kioskpay technician list
//! kari             admin    added 2026-12-04T17:40:00Z
//! # kioskpay technician remove kari
//! technician kari removed from /etc/kioskpay/technicians.toml
//! ```
//!
//! When stdin is not a terminal the PIN is read once, as the first line of stdin, for scripts:
//! `printf '482915\n' | kioskpay technician add ola --role service --file ./technicians.toml`.

use std::fmt;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

/// Where the technicians are kept unless `--file` says otherwise.
pub const DEFAULT_FILE: &str = "/etc/kioskpay/technicians.toml";

/// Argon2id memory cost in KiB (19 MiB, OWASP).
const ARGON2_M_KIB: u32 = 19 * 1024;
/// Argon2id passes (OWASP, with 19 MiB).
const ARGON2_T: u32 = 2;
/// Argon2id lanes: one, so a login does not take both cores of a Pi from the payment flow.
const ARGON2_P: u32 = 1;

/// Shortest PIN accepted.
pub const PIN_MIN_DIGITS: usize = 6;
/// Longest PIN accepted: beyond what anyone types on a console, short enough to bound the work.
pub const PIN_MAX_DIGITS: usize = 16;

/// Patterns people pick first that the rules for runs and repeats do not already catch.
const COMMON_PINS: [&str; 10] = [
    "112233", "223344", "123321", "111222", "147258", "258369", "159357", "102030", "010203",
    "147852",
];

/// What a technician may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Status, tests, logs and reading payments.
    Service,
    /// Service, plus refund and void.
    Refund,
    /// Refund, plus config, credentials and technicians.
    Admin,
}

/// The kinds of console command, as far as roles tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `status`, `status --watch`.
    Status,
    /// `test display|scanner|gpio|network|terminal`.
    Test,
    /// `logs`.
    Logs,
    /// `payments`, `payment`, `pending`, `resolve`, `reconcile`.
    Payments,
    /// `maintenance on|off`: the technician screen and no new carts.
    Maintenance,
    /// `refund`.
    Refund,
    /// `void`.
    Void,
    /// `config show|get|set|diff|apply|revert`.
    Config,
    /// `credentials set`.
    Credentials,
    /// `technician add|remove|list`.
    Technicians,
    /// `restart`: the daemon, through the service manager.
    Restart,
    /// `factory-reset`.
    FactoryReset,
}

impl Role {
    /// Whether this role may do `action`.
    pub fn may(self, action: Action) -> bool {
        match action {
            Action::Status
            | Action::Test
            | Action::Logs
            | Action::Payments
            | Action::Maintenance
            | Action::Restart => true,
            Action::Refund | Action::Void => matches!(self, Role::Refund | Role::Admin),
            Action::Config | Action::Credentials | Action::Technicians | Action::FactoryReset => {
                self == Role::Admin
            }
        }
    }

    /// The role's name as written in the file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Service => "service",
            Role::Refund => "refund",
            Role::Admin => "admin",
        }
    }
}

/// A PIN as typed. Prints as `***`; the only way to the digits is inside this module.
/// (Comparable: a new PIN is typed twice.)
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    /// Takes a PIN typed at login, whatever it is: a wrong PIN is a failed login, not an error.
    pub fn entered(text: impl Into<String>) -> Pin {
        Pin(text.into())
    }

    /// Takes a new PIN, refusing a short, non-numeric or trivial one with the reason.
    pub fn new(text: impl Into<String>) -> Result<Pin, PinError> {
        let text = text.into();
        check_new_pin(&text)?;
        Ok(Pin(text))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(***)")
    }
}

/// Why a new PIN is refused. The messages never repeat the PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// Fewer than six digits.
    #[error("the PIN is too short: use {PIN_MIN_DIGITS} or more digits")]
    TooShort,
    /// More than sixteen digits.
    #[error("the PIN is too long: use at most {PIN_MAX_DIGITS} digits")]
    TooLong,
    /// Something other than 0–9.
    #[error("the PIN may only contain the digits 0-9")]
    NotDigits,
    /// `000000`.
    #[error("the PIN is one digit repeated, the first thing anyone tries: choose digits without a pattern")]
    OneDigit,
    /// `123456`, `654321`.
    #[error("the PIN is a run of consecutive digits (like 123456 or 654321), among the first tried: choose digits without a pattern")]
    Run,
    /// `121212`, `123123`.
    #[error("the PIN repeats a shorter group of digits (like 121212 or 123123), among the first tried: choose digits without a pattern")]
    Repeated,
    /// On the list of common PINs.
    #[error("the PIN is a well-known pattern (like 112233 or a keypad column), among the first tried: choose digits without a pattern")]
    Common,
    /// The two entries differ.
    #[error("the two PINs differ; nothing was changed")]
    Mismatch,
}

fn check_new_pin(pin: &str) -> Result<(), PinError> {
    if !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PinError::NotDigits);
    }
    let digits: Vec<i8> = pin.bytes().map(|b| (b - b'0') as i8).collect();
    if digits.len() < PIN_MIN_DIGITS {
        return Err(PinError::TooShort);
    }
    if digits.len() > PIN_MAX_DIGITS {
        return Err(PinError::TooLong);
    }
    if digits.iter().all(|&d| d == digits[0]) {
        return Err(PinError::OneDigit);
    }
    // Steps of +1 or -1, wrapping 9→0 as the keypad row does (890123).
    let steps: Vec<i8> = digits
        .windows(2)
        .map(|w| (w[1] - w[0]).rem_euclid(10))
        .collect();
    if steps.iter().all(|&s| s == 1) || steps.iter().all(|&s| s == 9) {
        return Err(PinError::Run);
    }
    let repeats = (2..=digits.len() / 2)
        .any(|period| (period..digits.len()).all(|i| digits[i] == digits[i - period]));
    if repeats {
        return Err(PinError::Repeated);
    }
    if COMMON_PINS.contains(&pin) {
        return Err(PinError::Common);
    }
    Ok(())
}

/// A technician's id: what they type at `login`, and what the audit log records.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TechnicianId(String);

impl TechnicianId {
    /// Checks an id: 1 to 32 characters of `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter
    /// or digit, so that it is one word on the console and one field in the audit log.
    pub fn new(text: &str) -> Result<TechnicianId, TechnicianError> {
        let ok_start = text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_chars = text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
        if ok_start && ok_chars && text.len() <= 32 {
            Ok(TechnicianId(text.to_owned()))
        } else {
            Err(TechnicianError::InvalidId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TechnicianId {
    type Error = TechnicianError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        TechnicianId::new(&text)
    }
}

impl From<TechnicianId> for String {
    fn from(id: TechnicianId) -> String {
        id.0
    }
}

impl fmt::Display for TechnicianId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that `technician list` can line up its columns.
        f.pad(&self.0)
    }
}

/// A PIN's Argon2id hash as a PHC string. As secret as the PIN (see the module docs): prints as
/// `PinHash(***)`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PinHash(String);

impl fmt::Debug for PinHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinHash(***)")
    }
}

fn hasher() -> Argon2<'static> {
    // The constants are within Argon2's limits; `Params::default()` is the same values and only
    // stands in should that ever change.
    let params =
        Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).unwrap_or_else(|_| Params::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl PinHash {
    /// Hashes a PIN with a fresh random salt. Takes tens to hundreds of milliseconds: call it
    /// from blocking code or through [`hash_pin_async`].
    pub fn new(pin: &Pin) -> Result<PinHash, TechnicianError> {
        hasher()
            .hash_password(pin.0.as_bytes())
            .map(|hash| PinHash(hash.to_string()))
            .map_err(|e| TechnicianError::Hash(e.to_string()))
    }

    /// Whether `pin` is the PIN this hash was made from (constant-time comparison).
    pub fn verify(&self, pin: &Pin) -> bool {
        hasher()
            .verify_password(pin.0.as_bytes(), self.0.as_str())
            .is_ok()
    }

    /// Whether the string is an Argon2id PHC string, as [`PinHash::new`] writes.
    fn is_argon2id(&self) -> bool {
        PasswordHash::new(&self.0).is_ok_and(|h| h.algorithm.as_str() == "argon2id")
    }
}

/// [`PinHash::new`] on tokio's blocking pool.
pub async fn hash_pin_async(pin: Pin) -> Result<PinHash, TechnicianError> {
    tokio::task::spawn_blocking(move || PinHash::new(&pin))
        .await
        .map_err(|e| TechnicianError::Hash(e.to_string()))?
}

/// One technician.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Technician {
    /// What they type at `login`.
    pub id: TechnicianId,
    /// What they may do.
    pub role: Role,
    /// Their PIN's hash.
    pub pin: PinHash,
    /// When they were added (RFC 3339, UTC).
    pub added: String,
}

/// A successful login: who, and with which role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    /// The technician.
    pub id: TechnicianId,
    /// Their role.
    pub role: Role,
}

/// The technicians file's content.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Technicians {
    /// In the order they were added.
    #[serde(default, rename = "technician")]
    pub list: Vec<Technician>,
}

/// What went wrong with the technicians file or an id; says what to do.
#[derive(Debug, thiserror::Error)]
pub enum TechnicianError {
    /// Reading or writing failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Group or others may read or write the file.
    #[error("{path} has mode {mode:03o}: other users could read the PIN hashes (a six-digit PIN is guessed from its hash in hours); run: chmod 600 {path}")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Owned by someone other than root (or the user running this).
    #[error("{path} is owned by uid {uid}, who could rewrite the technicians; run: chown root:root {path}")]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// Not a valid technicians file.
    #[error("{path} is not a valid technicians file: {message}; fix it, or move it away and add the technicians again")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A PIN hash that is not Argon2id.
    #[error("{path}: technician {id} has a PIN that is not an Argon2id hash; run: kioskpay technician remove {id}, then add them again")]
    NotArgon2id {
        /// The file.
        path: PathBuf,
        /// The technician.
        id: TechnicianId,
    },
    /// An id that does not follow the rules.
    #[error("a technician id is 1 to 32 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit (e.g. kari or tech-07)")]
    InvalidId,
    /// `add` of an id that exists.
    #[error("technician {0} already exists; remove them first to give them a new role or PIN")]
    Exists(TechnicianId),
    /// `remove` of an id that does not exist.
    #[error("there is no technician {0}; `kioskpay technician list` shows who there is")]
    NotFound(TechnicianId),
    /// Hashing failed (no random numbers from the OS, or out of memory).
    #[error("cannot hash the PIN: {0}")]
    Hash(String),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> TechnicianError {
    let path = path.to_path_buf();
    move |source| TechnicianError::Io {
        action,
        path,
        source,
    }
}

impl Technicians {
    /// Reads the file; a missing file is no technicians. Refuses a file that group or others
    /// may access, or that someone other than root (or the user running this) owns.
    pub fn load(path: &Path) -> Result<Technicians, TechnicianError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Technicians::default()),
            Err(e) => return Err(io_error("open", path)(e)),
        };
        // Judged and read through one handle: the file checked is the file read.
        let meta = file.metadata().map_err(io_error("inspect", path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TechnicianError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        // SAFETY: geteuid(2) takes no arguments and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != 0 && meta.uid() != me {
            return Err(TechnicianError::Owner {
                path: path.to_path_buf(),
                uid: meta.uid(),
            });
        }
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(io_error("read", path))?;
        let technicians: Technicians =
            toml::from_str(&text).map_err(|e| TechnicianError::Parse {
                path: path.to_path_buf(),
                // The message quotes the offending line, which may be a hash: only the reason.
                message: e.message().to_owned(),
            })?;
        for t in &technicians.list {
            if !t.pin.is_argon2id() {
                return Err(TechnicianError::NotArgon2id {
                    path: path.to_path_buf(),
                    id: t.id.clone(),
                });
            }
        }
        let mut ids: Vec<&TechnicianId> = technicians.list.iter().map(|t| &t.id).collect();
        ids.sort();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(TechnicianError::Parse {
                path: path.to_path_buf(),
                message: format!("technician {} is listed twice", w[0]),
            });
        }
        Ok(technicians)
    }

    /// Writes the file atomically, root-only (mode 0600).
    pub fn save(&self, path: &Path) -> Result<(), TechnicianError> {
        let body = toml::to_string(self).map_err(|e| TechnicianError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let text = format!(
            "# kioskpay technicians, written by `kioskpay technician add|remove`. PINs are Argon2id\n\
             # hashes: keep this file root-only (chmod 600). Do not edit by hand.\n\n{body}"
        );
        super::write_atomically(path, text.as_bytes(), 0o600).map_err(io_error("write", path))
    }

    /// The technician with this id.
    pub fn get(&self, id: &str) -> Option<&Technician> {
        self.list.iter().find(|t| t.id.as_str() == id)
    }

    /// Adds a technician (the PIN already hashed).
    pub fn add(
        &mut self,
        id: TechnicianId,
        role: Role,
        pin: PinHash,
    ) -> Result<(), TechnicianError> {
        if self.get(id.as_str()).is_some() {
            return Err(TechnicianError::Exists(id));
        }
        self.list.push(Technician {
            id,
            role,
            pin,
            added: now_rfc3339(),
        });
        Ok(())
    }

    /// Removes a technician.
    pub fn remove(&mut self, id: &TechnicianId) -> Result<(), TechnicianError> {
        let before = self.list.len();
        self.list.retain(|t| &t.id != id);
        if self.list.len() == before {
            return Err(TechnicianError::NotFound(id.clone()));
        }
        Ok(())
    }

    /// Checks an id and PIN. An unknown id costs one hash too, so that the time taken does not
    /// tell whether the id exists. Blocking: see [`authenticate_async`].
    pub fn authenticate(&self, id: &str, pin: &Pin) -> Option<Login> {
        match self.get(id) {
            Some(t) => t.pin.verify(pin).then(|| Login {
                id: t.id.clone(),
                role: t.role,
            }),
            None => {
                let _ = hasher().hash_password_with_salt(pin.0.as_bytes(), &[0x5a; 16]);
                None
            }
        }
    }
}

/// [`Technicians::authenticate`] on tokio's blocking pool.
pub async fn authenticate_async(technicians: &Technicians, id: &str, pin: Pin) -> Option<Login> {
    let technicians = technicians.clone();
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || technicians.authenticate(&id, &pin))
        .await
        .ok()
        .flatten()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `kioskpay technician add NAME --role ROLE [--file PATH]`: asks for the PIN (twice, hidden,
/// on a terminal; the first line of stdin otherwise) and adds the technician.
pub fn add_command(file: &Path, name: &str, role: Role) -> anyhow::Result<ExitCode> {
    let id = TechnicianId::new(name)?;
    let mut technicians = Technicians::load(file)?;
    if technicians.get(id.as_str()).is_some() {
        return Err(TechnicianError::Exists(id).into());
    }
    let pin = match read_new_pin(&id) {
        Ok(pin) => pin,
        Err(PinInputError::Refused(e)) => {
            eprintln!("kioskpay: {e}");
            return Ok(ExitCode::from(crate::config::EXIT_CONFIG));
        }
        Err(PinInputError::Io(e)) => return Err(anyhow::anyhow!("reading the PIN: {e}")),
    };
    let hash = PinHash::new(&pin)?;
    technicians.add(id.clone(), role, hash)?;
    technicians.save(file)?;
    println!(
        "technician {id} added ({}) to {}",
        role.as_str(),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `kioskpay technician remove NAME [--file PATH]`.
pub fn remove_command(file: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let id = TechnicianId::new(name)?;
    let mut technicians = Technicians::load(file)?;
    technicians.remove(&id)?;
    technicians.save(file)?;
    println!("technician {id} removed from {}", file.display());
    if !technicians.list.iter().any(|t| t.role == Role::Admin) {
        eprintln!(
            "note: no admin is left; only a root shell can add technicians now \
             (kioskpay technician add NAME --role admin)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `kioskpay technician list [--file PATH]`: ids, roles and when they were added; never hashes.
pub fn list_command(file: &Path) -> anyhow::Result<ExitCode> {
    let technicians = Technicians::load(file)?;
    if technicians.list.is_empty() {
        println!(
            "no technicians in {}; add the first from a root shell: kioskpay technician add NAME --role admin",
            file.display()
        );
    }
    for t in &technicians.list {
        println!("{:<16} {:<8} added {}", t.id, t.role.as_str(), t.added);
    }
    Ok(ExitCode::SUCCESS)
}

enum PinInputError {
    Refused(PinError),
    Io(io::Error),
}

/// Reads a new PIN: on a terminal hidden and twice, with three tries for an acceptable one;
/// otherwise the first line of stdin, once.
fn read_new_pin(id: &TechnicianId) -> Result<Pin, PinInputError> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        // A PIN is short: a wrong file piped in is not read whole.
        stdin
            .lock()
            .take(256)
            .read_line(&mut line)
            .map_err(PinInputError::Io)?;
        return Pin::new(line.trim_end_matches(['\r', '\n'])).map_err(PinInputError::Refused);
    }
    let mut last = PinError::TooShort;
    for _ in 0..3 {
        let first = read_hidden(&format!(
            "PIN for {id} ({PIN_MIN_DIGITS} or more digits, not shown): "
        ))
        .map_err(PinInputError::Io)?;
        let pin = match Pin::new(first) {
            Ok(pin) => pin,
            Err(e) => {
                eprintln!("{e}");
                last = e;
                continue;
            }
        };
        let again = read_hidden("Same PIN again: ").map_err(PinInputError::Io)?;
        if again == pin.0 {
            return Ok(pin);
        }
        eprintln!("{}", PinError::Mismatch);
        last = PinError::Mismatch;
    }
    Err(PinInputError::Refused(last))
}

/// Prompts on stderr and reads one line from the terminal on stdin with echo off.
fn read_hidden(prompt: &str) -> io::Result<String> {
    // Echo off before the prompt: whatever is typed once the prompt shows is never echoed.
    let _echo_off = EchoOff::new()?;
    eprint!("{prompt}");
    io::stderr().flush()?;
    let mut line = String::new();
    io::stdin().lock().take(256).read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Turns the terminal's echo off until dropped (Enter still moves to the next line).
struct EchoOff(libc::termios);

impl EchoOff {
    fn new() -> io::Result<EchoOff> {
        // SAFETY: termios is plain data; tcgetattr fills it and we only use it when it succeeded.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 is open for the whole process; `saved` is a valid termios to write.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: as above; `quiet` is a valid termios read from this terminal.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EchoOff(saved))
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same descriptor.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn roles_include_the_ones_before_them() {
        let all = [
            Action::Status,
            Action::Test,
            Action::Logs,
            Action::Payments,
            Action::Refund,
            Action::Void,
            Action::Config,
            Action::Credentials,
            Action::Technicians,
        ];
        let allowed =
            |role: Role| -> Vec<Action> { all.iter().copied().filter(|&a| role.may(a)).collect() };
        assert_eq!(
            allowed(Role::Service),
            [Action::Status, Action::Test, Action::Logs, Action::Payments]
        );
        assert_eq!(
            allowed(Role::Refund),
            [
                Action::Status,
                Action::Test,
                Action::Logs,
                Action::Payments,
                Action::Refund,
                Action::Void
            ]
        );
        assert_eq!(allowed(Role::Admin), all);
    }

    #[test]
    fn trivial_pins_are_refused_with_the_reason() {
        let cases: [(&str, PinError); 16] = [
            ("12345", PinError::TooShort),
            ("", PinError::TooShort),
            ("12345678901234567", PinError::TooLong),
            ("12a456", PinError::NotDigits),
            (" 482915", PinError::NotDigits),
            ("４８２９１５", PinError::NotDigits),
            ("000000", PinError::OneDigit),
            ("99999999", PinError::OneDigit),
            ("123456", PinError::Run),
            ("654321", PinError::Run),
            ("890123", PinError::Run),
            ("123123", PinError::Repeated),
            ("121212", PinError::Repeated),
            ("1234512345", PinError::Repeated),
            ("112233", PinError::Common),
            ("147258", PinError::Common),
        ];
        for (pin, expected) in cases {
            assert_eq!(Pin::new(pin).err(), Some(expected), "{pin:?}");
        }
        for good in ["482915", "1357924680", "902114", "1212123"] {
            assert!(Pin::new(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn refusals_and_debug_output_never_show_the_pin() {
        for pin in ["777777", "345678", "343434", "223344", "98765"] {
            let message = Pin::new(pin).unwrap_err().to_string();
            assert!(!message.contains(pin), "{message}");
        }
        let pin = Pin::new("482915").unwrap();
        let hash = PinHash::new(&pin).unwrap();
        let shown = format!("{pin:?} {hash:?}");
        assert_eq!(shown, "Pin(***) PinHash(***)");
        let mut technicians = Technicians::default();
        technicians
            .add(
                TechnicianId::new("kari").unwrap(),
                Role::Admin,
                hash.clone(),
            )
            .unwrap();
        let debug = format!("{technicians:?}");
        assert!(
            !debug.contains("argon2") && !debug.contains("482915"),
            "{debug}"
        );
    }

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let pin = Pin::new("482915").unwrap();
        let started = std::time::Instant::now();
        let a = PinHash::new(&pin).unwrap();
        let took = started.elapsed();
        let b = PinHash::new(&pin).unwrap();
        assert!(
            a.0.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            a.0
        );
        assert_ne!(a, b, "each hash has its own salt");
        assert!(a.is_argon2id());
        assert!(a.verify(&pin) && b.verify(&pin));
        assert!(!a.verify(&Pin::entered("482916")));
        assert!(!a.verify(&Pin::entered("")));
        // Measured on the build machine; printed with --nocapture for the module docs.
        println!("one Argon2id hash (m=19 MiB, t=2, p=1): {took:?}");
    }

    #[test]
    fn ids_are_one_plain_word() {
        for good in ["kari", "tech-07", "ola.nordmann", "a", "0day"] {
            assert!(TechnicianId::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Kari",
            "-x",
            "two words",
            "kari\n",
            "ø",
            &"x".repeat(33),
        ] {
            assert!(TechnicianId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_file_round_trips_at_mode_600_and_authenticates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("technicians.toml");
        assert!(Technicians::load(&path).unwrap().list.is_empty());
        let mut technicians = Technicians::default();
        let kari = TechnicianId::new("kari").unwrap();
        technicians
            .add(
                kari.clone(),
                Role::Admin,
                PinHash::new(&Pin::new("482915").unwrap()).unwrap(),
            )
            .unwrap();
        technicians
            .add(
                TechnicianId::new("ola").unwrap(),
                Role::Service,
                PinHash::new(&Pin::new("902114").unwrap()).unwrap(),
            )
            .unwrap();
        assert!(matches!(
            technicians.add(kari.clone(), Role::Service, PinHash(String::new())),
            Err(TechnicianError::Exists(_))
        ));
        technicians.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = Technicians::load(&path).unwrap();
        assert_eq!(
            loaded.authenticate("kari", &Pin::entered("482915")),
            Some(Login {
                id: kari.clone(),
                role: Role::Admin
            })
        );
        assert_eq!(loaded.authenticate("kari", &Pin::entered("902114")), None);
        assert_eq!(loaded.authenticate("nobody", &Pin::entered("482915")), None);
        let mut loaded = loaded;
        loaded.remove(&kari).unwrap();
        assert!(matches!(
            loaded.remove(&kari),
            Err(TechnicianError::NotFound(_))
        ));
        loaded.save(&path).unwrap();
        assert_eq!(Technicians::load(&path).unwrap().list.len(), 1);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_file_others_can_read_is_refused_with_the_chmod_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("technicians.toml");
        Technicians::default().save(&path).unwrap();
        for mode in [0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let message = Technicians::load(&path).unwrap_err().to_string();
            assert!(
                message.contains(&format!("mode {mode:03o}"))
                    && message.contains(&format!("chmod 600 {}", path.display())),
                "{message}"
            );
        }
    }

    #[test]
    fn a_damaged_file_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("technicians.toml");
        let write = |text: &str| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        write("[[technician]]\nid = \"kari\"\nrole = \"admin\"\npin = \"$pbkdf2$secretvalue\"\nadded = \"x\"\n");
        let message = Technicians::load(&path).unwrap_err().to_string();
        assert!(
            message.contains("not an Argon2id hash") && !message.contains("secretvalue"),
            "{message}"
        );
        write("[[technician]]\nid = \"kari\"\nrole = \"root\"\npin = \"$argon2id$secretvalue\"\nadded = \"x\"\n");
        let message = Technicians::load(&path).unwrap_err().to_string();
        assert!(
            message.contains("not a valid technicians file") && !message.contains("secretvalue"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn hashing_and_checking_run_off_the_runtime() {
        let hash = hash_pin_async(Pin::new("482915").unwrap()).await.unwrap();
        let mut technicians = Technicians::default();
        technicians
            .add(TechnicianId::new("kari").unwrap(), Role::Refund, hash)
            .unwrap();
        let login = authenticate_async(&technicians, "kari", Pin::entered("482915")).await;
        assert_eq!(login.map(|l| l.role), Some(Role::Refund));
        assert_eq!(
            authenticate_async(&technicians, "kari", Pin::entered("000000")).await,
            None
        );
    }
}
