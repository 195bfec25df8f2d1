//! A config edit applied with a deadline: `config apply --confirm-within SECONDS` at the
//! technician console puts the edit in force and, unless `confirm` comes in time, the kiosk goes
//! back to the file it had before by itself. A new API URL or a client id that cuts the kiosk
//! off must not need a site visit to undo.
//!
//! **Who keeps the deadline: the daemon.** It runs all the time, whereas a console session ends
//! at logout, when the line drops or when its process is killed; a timer in the console would
//! die with it. The deadline is a file in the state directory, so it also survives a restart of
//! the daemon: a daemon that starts after the deadline has passed starts on the previous file.
//!
//! **Who restores the file: the console.** The daemon runs as the `kioskpay` user under
//! `ProtectSystem=strict` and cannot write `/etc/kioskpay` (that is what keeps a compromised
//! daemon from rewriting its own config or the technicians file). So when the deadline passes
//! the daemon puts the previous file in force *in memory* and renames the deadline file to
//! [`ROLLED_BACK`]; from then on it loads [`PREVIOUS`] instead of the config file, at a reload
//! and at a start, until a console (root) has copied [`PREVIOUS`] back over the config file and
//! removed the marker. Every `config` and `confirm` command does that first, and says so.
//!
//! Files in the state directory:
//!
//! | file | written by | what it is |
//! |------|------------|------------|
//! | [`STAGED`] | console `config set` | the config file with the edits not applied yet |
//! | [`PREVIOUS`] | console `config apply` | the config file as it was before the last apply |
//! | [`AWAITING`] | console `config apply --confirm-within` | the deadline, while a confirm is awaited |
//! | [`ROLLED_BACK`] | daemon (a rename of [`AWAITING`]) | the deadline passed: [`PREVIOUS`] is in force |
//!
//! The daemon only renames and removes files here (both atomic), never writes their content.
//!
//! Most keys an edit changes are put back by the rollback's reload at once. Keys only a start
//! reads (the Dintero account and client, the store, the input) keep their running values at a
//! reload; if the daemon had started with the edited ones, the rollback stops it as SIGTERM
//! would (a payment in flight is journaled and resolved at the next start), and the service
//! manager starts it again on the previous file.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The staged config file: the edits made by `config set` that `config apply` will write.
pub const STAGED: &str = "config.staged.toml";
/// The config file as it was before the last `config apply`.
pub const PREVIOUS: &str = "config.previous.toml";
/// The deadline of an applied edit awaiting `confirm`.
pub const AWAITING: &str = "config.confirm.json";
/// The deadline of an edit that was not confirmed in time: [`PREVIOUS`] is in force.
pub const ROLLED_BACK: &str = "config.rolled-back.json";

/// The longest `--confirm-within`: long enough to test a payment, short enough that a kiosk cut
/// off is back the same hour.
pub const MAX_CONFIRM_WITHIN: Duration = Duration::from_secs(3600);

/// When an applied edit is rolled back unless confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deadline {
    /// The deadline, milliseconds since the Unix epoch (wall clock: it must survive a reboot).
    pub deadline_unix_ms: i64,
    /// When the edit was applied (RFC 3339, UTC), for the operator.
    pub applied_at: String,
}

impl Deadline {
    /// A deadline `within` from now.
    pub fn from_now(within: Duration) -> Deadline {
        let now = time::OffsetDateTime::now_utc();
        Deadline {
            deadline_unix_ms: unix_ms(now) + within.as_millis() as i64,
            applied_at: now
                .replace_nanosecond(0)
                .unwrap_or(now)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        }
    }

    /// How long until the deadline; zero once it has passed.
    pub fn remaining(&self) -> Duration {
        let left = self.deadline_unix_ms - now_unix_ms();
        Duration::from_millis(left.max(0) as u64)
    }
}

/// Now, in milliseconds since the Unix epoch: the unit of [`Deadline::deadline_unix_ms`].
pub fn now_unix_ms() -> i64 {
    unix_ms(time::OffsetDateTime::now_utc())
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Where an applied edit stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pending {
    /// No edit awaits a confirm.
    Nothing,
    /// An edit awaits `confirm` until the deadline.
    Awaiting(Deadline),
    /// The deadline passed without a confirm: [`PREVIOUS`] is in force, and the config file
    /// still holds the edit until a console restores it.
    RolledBack(Deadline),
}

/// Reads where an applied edit stands in `state_dir`. A deadline file that cannot be read is
/// an error that names it: guessing could leave an unconfirmed edit in force.
pub fn pending(state_dir: &Path) -> Result<Pending, String> {
    if let Some(deadline) = read_deadline(&state_dir.join(ROLLED_BACK))? {
        return Ok(Pending::RolledBack(deadline));
    }
    Ok(match read_deadline(&state_dir.join(AWAITING))? {
        Some(deadline) => Pending::Awaiting(deadline),
        None => Pending::Nothing,
    })
}

fn read_deadline(path: &Path) -> Result<Option<Deadline>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            format!(
                "{}: {e}; remove it to forget the deadline (the config file in force stays)",
                path.display()
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The deadline passed: marks the edit rolled back (a rename, atomic) so that every later load
/// takes [`PREVIOUS`]. Returns the deadline, or `None` when no edit was awaiting one.
pub fn roll_back(state_dir: &Path) -> io::Result<Option<Deadline>> {
    let Ok(Pending::Awaiting(deadline)) = pending(state_dir) else {
        return Ok(None);
    };
    std::fs::rename(state_dir.join(AWAITING), state_dir.join(ROLLED_BACK))?;
    sync_dir(state_dir)?;
    Ok(Some(deadline))
}

/// `confirm`: the applied edit stays. Returns the deadline it had, or `None` when none was
/// awaited.
pub fn confirm(state_dir: &Path) -> io::Result<Option<Deadline>> {
    let Ok(Pending::Awaiting(deadline)) = pending(state_dir) else {
        return Ok(None);
    };
    std::fs::remove_file(state_dir.join(AWAITING))?;
    sync_dir(state_dir)?;
    Ok(Some(deadline))
}

/// The file the daemon loads for the config at `config`: [`PREVIOUS`] while an edit is rolled
/// back (or its deadline has passed, which rolls it back now), else `config` itself; with the
/// deadline still to keep, if any.
pub fn in_force(config: &Path, state_dir: &Path) -> Result<(PathBuf, Option<Deadline>), String> {
    match pending(state_dir)? {
        Pending::Nothing => Ok((config.to_path_buf(), None)),
        Pending::RolledBack(_) => Ok((state_dir.join(PREVIOUS), None)),
        Pending::Awaiting(deadline) if deadline.remaining().is_zero() => {
            roll_back(state_dir).map_err(|e| {
                format!(
                    "cannot mark the unconfirmed config edit rolled back in {}: {e}",
                    state_dir.display()
                )
            })?;
            Ok((state_dir.join(PREVIOUS), None))
        }
        Pending::Awaiting(deadline) => Ok((config.to_path_buf(), Some(deadline))),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, deadline: &Deadline) {
        std::fs::write(dir.join(name), serde_json::to_string(deadline).unwrap()).unwrap();
    }

    #[test]
    fn without_a_deadline_the_config_file_is_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("k.toml");
        assert_eq!(pending(dir.path()), Ok(Pending::Nothing));
        assert_eq!(in_force(&config, dir.path()), Ok((config.clone(), None)));
        assert_eq!(confirm(dir.path()).unwrap(), None);
        assert_eq!(roll_back(dir.path()).unwrap(), None);
    }

    #[test]
    fn awaiting_then_confirmed_keeps_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("k.toml");
        let deadline = Deadline::from_now(Duration::from_secs(60));
        write(dir.path(), AWAITING, &deadline);
        assert!(deadline.remaining() > Duration::from_secs(50));
        assert_eq!(
            in_force(&config, dir.path()),
            Ok((config.clone(), Some(deadline.clone())))
        );
        assert_eq!(confirm(dir.path()).unwrap(), Some(deadline));
        assert_eq!(pending(dir.path()), Ok(Pending::Nothing));
        assert_eq!(in_force(&config, dir.path()), Ok((config, None)));
    }

    #[test]
    fn awaiting_then_rolled_back_puts_the_previous_file_in_force_until_it_is_restored() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("k.toml");
        let deadline = Deadline::from_now(Duration::from_secs(60));
        write(dir.path(), AWAITING, &deadline);
        assert_eq!(roll_back(dir.path()).unwrap(), Some(deadline.clone()));
        assert_eq!(pending(dir.path()), Ok(Pending::RolledBack(deadline)));
        let previous = dir.path().join(PREVIOUS);
        assert_eq!(in_force(&config, dir.path()), Ok((previous, None)));
        assert_eq!(confirm(dir.path()).unwrap(), None, "too late to confirm");
    }

    #[test]
    fn a_deadline_passed_while_nobody_watched_rolls_back_at_the_next_load() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("k.toml");
        let passed = Deadline {
            deadline_unix_ms: 1,
            applied_at: "1970-01-01T00:00:00Z".into(),
        };
        write(dir.path(), AWAITING, &passed);
        assert_eq!(passed.remaining(), Duration::ZERO);
        let previous = dir.path().join(PREVIOUS);
        assert_eq!(in_force(&config, dir.path()), Ok((previous, None)));
        assert_eq!(pending(dir.path()), Ok(Pending::RolledBack(passed)));
    }

    #[test]
    fn a_garbled_deadline_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(AWAITING), "{nonsense").unwrap();
        let e = pending(dir.path()).unwrap_err();
        assert!(e.contains(AWAITING) && e.contains("remove it"), "{e}");
    }
}
