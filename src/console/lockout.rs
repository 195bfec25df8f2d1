//! What a wrong PIN costs: a growing wait, then a lockout that a restart or a power cut does not
//! lift.
//!
//! ## The rules
//!
//! | wrong PINs in a row | next attempt accepted after |
//! |---------------------|-----------------------------|
//! | 1 | 1 s |
//! | 2 | 2 s |
//! | 3 | 4 s |
//! | 4 | 8 s |
//! | 5 | 15 minutes: the console line is locked |
//!
//! A correct PIN clears the count. After a lockout has run out the count starts again at 1; so
//! does it when 15 minutes pass without an attempt. During a wait or a lockout the PIN is not
//! even checked: the console says how long is left.
//!
//! ## Per console line, not per technician
//!
//! The count belongs to the console line (`/dev/serial0`, or `stdio` for an SSH session), as on
//! a payment terminal, whose PIN-entry lockout belongs to the device and not to the cashier. A
//! count per technician id would give whoever holds the cable five guesses for every id they
//! can think of, and would tell them which ids exist (an unknown id must count just the same).
//! The price is that anyone at the cable can lock the line for 15 minutes; they could as well
//! pull the cable, and another line (an SSH session) keeps its own count.
//!
//! ## Surviving restarts and power cuts
//!
//! The count and the end of the current wait are kept in `<state.dir>/console-<line>.lockout`
//! (JSON, replaced atomically). An attempt is counted as a failure and written down *before* the
//! PIN is checked, and only cleared when the PIN is right: cutting the power while the PIN is
//! being hashed, to avoid the count, gains nothing.
//!
//! ## Clocks
//!
//! While the console runs, waits are measured on the monotonic clock, which setting the date
//! does not move. The file has to hold wall-clock times, the only times that mean something
//! after a reboot, and a Raspberry Pi has no battery clock: it boots at the time
//! `fake-hwclock` saved at shutdown (earlier than the real time) until NTP steps it forward.
//! So when the file is read:
//!
//! - a wait that ends in the past has run out (time really passed, or the clock was stepped
//!   forward, which nobody at the console can do before logging in);
//! - a wait that ends further ahead than it could ever have been set (more than 15 minutes for
//!   a lockout, more than 8 s after a fourth failure) means the clock was set back: the full
//!   wait is served again from now, instead of a wait of years, and instead of none;
//! - an unreadable file locks the line for the full 15 minutes (and is replaced at the next
//!   attempt), so damaging the file does not reset the count.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::technicians::{authenticate_async, Login, Pin, Technicians};
use serde::{Deserialize, Serialize};

/// Wrong PINs in a row that lock the console line.
pub const MAX_FAILURES: u32 = 5;
/// How long a lockout lasts.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Failures with this long a quiet time after them are forgotten.
pub const FORGET_AFTER: Duration = LOCKOUT;

/// The time, read twice: monotonic for measuring waits, wall-clock for the file. Injected so that
/// tests can step either.
pub trait Clock {
    /// The monotonic clock (does not move when the date is set).
    fn now(&self) -> Instant;
    /// The wall clock.
    fn wall(&self) -> SystemTime;
}

/// The real clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Whether a login attempt may be made now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes.
    Open,
    /// Not yet: a wrong PIN was entered; this much of the wait is left.
    Wait(Duration),
    /// The console line is locked; this much of the lockout is left.
    LockedOut(Duration),
}

/// Why an attempt cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum LockoutError {
    /// A wait or a lockout is running.
    #[error("{}", refusal_text(*.0))]
    Refused(Admission),
    /// The count could not be written: the attempt is not allowed, since it could not be counted.
    #[error("cannot record the login attempt in {path}: {source}; no login until it can be (is the state directory writable and the disk not full?)")]
    Io {
        /// The lockout file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn refusal_text(admission: Admission) -> String {
    match admission {
        Admission::Open => "the console is open".into(),
        Admission::Wait(left) => format!(
            "wrong PIN: wait {} s before the next attempt",
            left.as_secs() + u64::from(left.subsec_nanos() > 0)
        ),
        Admission::LockedOut(left) => format!(
            "{MAX_FAILURES} wrong PINs: this console is locked for {} more minute(s)",
            left.as_secs().div_ceil(60).max(1)
        ),
    }
}

/// The wait after the `failures`-th wrong PIN in a row.
fn wait_after(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n if n >= MAX_FAILURES => LOCKOUT,
        n => Duration::from_secs(1 << (n - 1)),
    }
}

/// What the file holds: wall-clock times in milliseconds since 1970.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    failures: u32,
    not_before_unix_ms: i64,
    forget_at_unix_ms: i64,
}

/// The wrong-PIN count of one console line.
#[derive(Debug)]
pub struct Lockout<C: Clock> {
    clock: C,
    path: PathBuf,
    failures: u32,
    /// No attempt before this.
    not_before: Instant,
    /// The count is forgotten at this time.
    forget_at: Instant,
}

/// The lockout file of console line `line` (e.g. `serial0`, `ttyAMA2`, `stdio`) in `state_dir`.
pub fn path_for(state_dir: &Path, line: &str) -> PathBuf {
    let name: String = line
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    state_dir.join(format!("console-{name}.lockout"))
}

fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

impl<C: Clock> Lockout<C> {
    /// Reads the line's count from `path` (see the module docs for how the clock is judged). A
    /// missing file is no failures; an unreadable one is a full lockout. Errors only when the
    /// file exists but cannot be read at all.
    pub fn load(path: &Path, clock: C) -> Result<Lockout<C>, LockoutError> {
        let now = clock.now();
        let wall_now = unix_ms(clock.wall());
        let mut lockout = Lockout {
            path: path.to_path_buf(),
            failures: 0,
            not_before: now,
            forget_at: now,
            clock,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(lockout),
            Err(source) => {
                return Err(LockoutError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        // What is left of a stored deadline: never negative, never more than `longest`.
        let left = |deadline_ms: i64, longest: Duration| {
            let ms = deadline_ms.saturating_sub(wall_now);
            if ms <= 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(ms.unsigned_abs()).min(longest)
            }
        };
        match serde_json::from_slice::<Stored>(&bytes) {
            Ok(stored) => {
                lockout.failures = stored.failures;
                lockout.not_before =
                    now + left(stored.not_before_unix_ms, wait_after(stored.failures));
                lockout.forget_at = now + left(stored.forget_at_unix_ms, FORGET_AFTER);
            }
            Err(e) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "the console lockout file is unreadable: the console stays locked for {} minutes",
                    LOCKOUT.as_secs() / 60
                );
                lockout.failures = MAX_FAILURES;
                lockout.not_before = now + LOCKOUT;
                lockout.forget_at = now + FORGET_AFTER;
            }
        }
        Ok(lockout)
    }

    /// Whether an attempt may be made now.
    pub fn admission(&self) -> Admission {
        let now = self.clock.now();
        if now >= self.not_before {
            Admission::Open
        } else if self.failures >= MAX_FAILURES {
            Admission::LockedOut(self.not_before - now)
        } else {
            Admission::Wait(self.not_before - now)
        }
    }

    /// Wrong PINs counted so far (including an attempt begun and not yet judged).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts a login attempt: refused during a wait or a lockout; otherwise counted as a
    /// failure and written down before the PIN is checked. Call [`Lockout::succeeded`] if the
    /// PIN is right; a wrong PIN needs nothing more, [`Lockout::admission`] then says how long to
    /// wait.
    pub fn begin_attempt(&mut self) -> Result<(), LockoutError> {
        let admission = self.admission();
        if admission != Admission::Open {
            return Err(LockoutError::Refused(admission));
        }
        let now = self.clock.now();
        if self.failures >= MAX_FAILURES || now >= self.forget_at {
            self.failures = 0;
        }
        self.failures += 1;
        self.not_before = now + wait_after(self.failures);
        self.forget_at = now + FORGET_AFTER;
        // Not undone when the write fails: an attempt that cannot be counted is not allowed, and
        // the count in memory still holds for this process.
        self.save()
    }

    /// Checks `pin` for technician `id` the counted way, for `login` and `pin change` alike:
    /// [`Lockout::begin_attempt`] first (so cutting the power while it is hashed gains
    /// nothing), then the hash off the async runtime, then [`Lockout::succeeded`] if it is right.
    /// `Ok(None)`: a wrong PIN or an unknown id, counted; [`Lockout::admission`] says what now.
    pub async fn authenticate(
        &mut self,
        technicians: &Technicians,
        id: &str,
        pin: Pin,
    ) -> Result<Option<Login>, LockoutError> {
        self.begin_attempt()?;
        let login = authenticate_async(technicians, id, pin).await;
        if login.is_some() {
            self.succeeded()?;
        }
        Ok(login)
    }

    /// The PIN was right: the count is cleared (and written down).
    pub fn succeeded(&mut self) -> Result<(), LockoutError> {
        let now = self.clock.now();
        self.failures = 0;
        self.not_before = now;
        self.forget_at = now;
        self.save()
    }

    fn save(&self) -> Result<(), LockoutError> {
        let now = self.clock.now();
        let wall_now = unix_ms(self.clock.wall());
        let at = |deadline: Instant| {
            let ms = i64::try_from(deadline.saturating_duration_since(now).as_millis())
                .unwrap_or(i64::MAX);
            wall_now.saturating_add(ms)
        };
        let stored = Stored {
            failures: self.failures,
            not_before_unix_ms: at(self.not_before),
            forget_at_unix_ms: at(self.forget_at),
        };
        let mut text = serde_json::to_vec(&stored).unwrap_or_default();
        text.push(b'\n');
        super::write_atomically(&self.path, &text, 0o640).map_err(|source| LockoutError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    /// Both clocks under the test's control; clones share them.
    #[derive(Clone)]
    struct TestClock {
        base: Instant,
        monotonic: Rc<Cell<Duration>>,
        wall: Rc<Cell<SystemTime>>,
    }

    impl TestClock {
        fn new() -> TestClock {
            TestClock {
                base: Instant::now(),
                monotonic: Rc::new(Cell::new(Duration::ZERO)),
                wall: Rc::new(Cell::new(UNIX_EPOCH + Duration::from_secs(1_796_000_000))),
            }
        }
        /// Time passes: both clocks move.
        fn advance(&self, by: Duration) {
            self.monotonic.set(self.monotonic.get() + by);
            self.wall.set(self.wall.get() + by);
        }
        /// Someone sets the date: only the wall clock moves.
        fn set_wall(&self, to: SystemTime) {
            self.wall.set(to);
        }
        /// A reboot: a new monotonic clock, the wall clock where the test says.
        fn reboot(&self) -> TestClock {
            TestClock {
                base: Instant::now(),
                monotonic: Rc::new(Cell::new(Duration::ZERO)),
                wall: Rc::new(Cell::new(self.wall.get())),
            }
        }
    }

    impl Clock for TestClock {
        fn now(&self) -> Instant {
            self.base + self.monotonic.get()
        }
        fn wall(&self) -> SystemTime {
            self.wall.get()
        }
    }

    fn fresh() -> (tempfile::TempDir, PathBuf, TestClock, Lockout<TestClock>) {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(dir.path(), "serial0");
        let clock = TestClock::new();
        let lockout = Lockout::load(&path, clock.clone()).unwrap();
        (dir, path, clock, lockout)
    }

    fn fail(lockout: &mut Lockout<TestClock>) {
        lockout.begin_attempt().unwrap();
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn waits_grow_1_2_4_8_then_the_line_locks_for_15_minutes() {
        let (_dir, _path, clock, mut lockout) = fresh();
        assert_eq!(lockout.admission(), Admission::Open);
        for wait in [1, 2, 4, 8] {
            fail(&mut lockout);
            let wait = Duration::from_secs(wait);
            assert_eq!(lockout.admission(), Admission::Wait(wait));
            clock.advance(wait - Duration::from_millis(1));
            assert!(matches!(
                lockout.begin_attempt(),
                Err(LockoutError::Refused(Admission::Wait(left))) if left == Duration::from_millis(1)
            ));
            clock.advance(Duration::from_millis(1));
            assert_eq!(lockout.admission(), Admission::Open);
        }
        fail(&mut lockout);
        assert_eq!(lockout.admission(), Admission::LockedOut(LOCKOUT));
        let message = lockout.begin_attempt().unwrap_err().to_string();
        assert_eq!(
            message,
            "5 wrong PINs: this console is locked for 15 more minute(s)"
        );
        clock.advance(LOCKOUT - SECOND);
        assert_eq!(lockout.admission(), Admission::LockedOut(SECOND));
        clock.advance(SECOND);
        assert_eq!(lockout.admission(), Admission::Open);
        // After the lockout the count starts again.
        fail(&mut lockout);
        assert_eq!(lockout.failures(), 1);
        assert_eq!(lockout.admission(), Admission::Wait(SECOND));
    }

    #[test]
    fn a_right_pin_clears_the_count() {
        let (_dir, _path, clock, mut lockout) = fresh();
        for _ in 0..3 {
            fail(&mut lockout);
            clock.advance(Duration::from_secs(10));
        }
        lockout.begin_attempt().unwrap();
        lockout.succeeded().unwrap();
        assert_eq!(lockout.failures(), 0);
        assert_eq!(lockout.admission(), Admission::Open);
        fail(&mut lockout);
        assert_eq!(lockout.admission(), Admission::Wait(SECOND));
    }

    #[test]
    fn failures_are_forgotten_after_15_quiet_minutes() {
        let (_dir, _path, clock, mut lockout) = fresh();
        for _ in 0..4 {
            fail(&mut lockout);
            clock.advance(Duration::from_secs(10));
        }
        clock.advance(FORGET_AFTER);
        fail(&mut lockout);
        assert_eq!(lockout.failures(), 1);
        assert_eq!(lockout.admission(), Admission::Wait(SECOND));
    }

    #[test]
    fn the_lockout_survives_a_restart() {
        let (_dir, path, clock, mut lockout) = fresh();
        for _ in 0..MAX_FAILURES {
            clock.advance(Duration::from_secs(20));
            fail(&mut lockout);
        }
        clock.advance(Duration::from_secs(60));
        drop(lockout);
        let rebooted = clock.reboot();
        rebooted.advance(Duration::from_secs(60));
        let lockout = Lockout::load(&path, rebooted.clone()).unwrap();
        assert_eq!(lockout.failures(), MAX_FAILURES);
        assert_eq!(
            lockout.admission(),
            Admission::LockedOut(LOCKOUT - Duration::from_secs(120))
        );
        rebooted.advance(LOCKOUT);
        assert_eq!(lockout.admission(), Admission::Open);
    }

    #[test]
    fn a_power_cut_while_the_pin_is_checked_still_counts() {
        let (_dir, path, clock, mut lockout) = fresh();
        lockout.begin_attempt().unwrap();
        // The power goes before the PIN is judged: neither success nor anything else.
        drop(lockout);
        let lockout = Lockout::load(&path, clock.reboot()).unwrap();
        assert_eq!(lockout.failures(), 1);
        assert_eq!(lockout.admission(), Admission::Wait(SECOND));
    }

    #[test]
    fn setting_the_date_neither_ends_nor_stretches_a_lockout() {
        let (_dir, path, clock, mut lockout) = fresh();
        for _ in 0..MAX_FAILURES {
            clock.advance(Duration::from_secs(20));
            fail(&mut lockout);
        }
        // While running: a date set a day ahead changes nothing.
        clock.set_wall(clock.wall() + Duration::from_secs(86_400));
        assert_eq!(lockout.admission(), Admission::LockedOut(LOCKOUT));
        clock.set_wall(clock.wall() - Duration::from_secs(86_400));
        drop(lockout);

        // Rebooted with the clock a year behind (no battery clock): the stored end looks a
        // year away; the full lockout is served from now, not a year.
        let rebooted = clock.reboot();
        rebooted.set_wall(clock.wall() - Duration::from_secs(365 * 86_400));
        let lockout = Lockout::load(&path, rebooted.clone()).unwrap();
        assert_eq!(lockout.admission(), Admission::LockedOut(LOCKOUT));
        rebooted.advance(LOCKOUT);
        assert_eq!(lockout.admission(), Admission::Open);

        // A short wait stored with the clock far behind is capped at its own length.
        let (_dir, path, clock, mut lockout) = fresh();
        fail(&mut lockout);
        fail_after(&clock, &mut lockout, SECOND);
        drop(lockout);
        let rebooted = clock.reboot();
        rebooted.set_wall(clock.wall() - Duration::from_secs(86_400));
        let lockout = Lockout::load(&path, rebooted).unwrap();
        assert_eq!(lockout.admission(), Admission::Wait(2 * SECOND));

        // Rebooted an hour later: the lockout has run out.
        let (_dir, path, clock, mut lockout) = fresh();
        for _ in 0..MAX_FAILURES {
            fail_after(&clock, &mut lockout, Duration::from_secs(10));
        }
        drop(lockout);
        let rebooted = clock.reboot();
        rebooted.set_wall(clock.wall() + Duration::from_secs(3600));
        let lockout = Lockout::load(&path, rebooted).unwrap();
        assert_eq!(lockout.admission(), Admission::Open);
    }

    fn fail_after(clock: &TestClock, lockout: &mut Lockout<TestClock>, after: Duration) {
        clock.advance(after);
        fail(lockout);
    }

    #[test]
    fn a_damaged_file_locks_the_line_and_is_replaced() {
        let (_dir, path, clock, _lockout) = fresh();
        std::fs::write(&path, b"{\"failures\":0,").unwrap();
        let mut lockout = Lockout::load(&path, clock.clone()).unwrap();
        assert_eq!(lockout.admission(), Admission::LockedOut(LOCKOUT));
        clock.advance(LOCKOUT);
        fail(&mut lockout);
        assert_eq!(lockout.failures(), 1);
        let reloaded = Lockout::load(&path, clock.reboot()).unwrap();
        assert_eq!(reloaded.admission(), Admission::Wait(SECOND));
    }

    #[test]
    fn an_attempt_that_cannot_be_written_down_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("missing"), "stdio");
        let mut lockout = Lockout::load(&path, TestClock::new()).unwrap();
        let message = lockout.begin_attempt().unwrap_err().to_string();
        assert!(
            message.starts_with("cannot record the login attempt in")
                && message.contains("no login"),
            "{message}"
        );
    }

    #[test]
    fn each_line_has_its_own_file() {
        let dir = Path::new("/var/lib/kioskpay");
        assert_eq!(
            path_for(dir, "serial0"),
            Path::new("/var/lib/kioskpay/console-serial0.lockout")
        );
        assert_eq!(
            path_for(dir, "../tty/AMA0"),
            Path::new("/var/lib/kioskpay/console-___tty_AMA0.lockout")
        );
    }

    #[test]
    fn refusals_round_the_wait_up() {
        assert_eq!(
            refusal_text(Admission::Wait(Duration::from_millis(1500))),
            "wrong PIN: wait 2 s before the next attempt"
        );
        assert_eq!(
            refusal_text(Admission::LockedOut(Duration::from_secs(61))),
            "5 wrong PINs: this console is locked for 2 more minute(s)"
        );
    }
}
