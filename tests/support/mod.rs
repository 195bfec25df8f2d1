//! Shared helpers for the end-to-end tests: an emulator on loopback, a config file for it, the
//! emulator's ledger over HTTP, and waits for a condition (instead of sleeps).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use kioskpay::emulator::{self, EmulatorConfig, EmulatorHandle};

pub mod kiosk;
pub mod log;

/// An emulator on 127.0.0.1 with a fast clock.
pub async fn emulator(time_scale: f64) -> EmulatorHandle {
    emulator::spawn(EmulatorConfig {
        time_scale,
        ..Default::default()
    })
    .await
    .expect("emulator starts")
}

/// Writes a private secret file and a config pointing at `base`; returns the config path.
pub fn write_config(dir: &Path, base: &str, extra: &str) -> PathBuf {
    write_config_on(dir, base, extra, "T12345678-T0001")
}

/// [`write_config`] for a kiosk paired with `terminal`: the sandbox config
/// ([`kioskpay::emulator::sandbox`]) with a 5 s call timeout, PNG frames in `<dir>/frames`, and
/// `extra` (TOML) merged over it.
pub fn write_config_on(dir: &Path, base: &str, extra: &str, terminal: &str) -> PathBuf {
    use kioskpay::emulator::sandbox;
    sandbox::write_secret(dir).unwrap();
    let frames = toml::Value::String(dir.join("frames").display().to_string());
    let ours = format!(
        "[dintero]\ncall_timeout_ms = 5000\n[display]\nkind = \"png\"\npng_dir = {frames}\n"
    );
    let text = sandbox::config(base, dir, terminal, &[&ours, extra]).unwrap();
    let path = dir.join("kioskpay.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The payment flow's settings for the tests that run the flow on its own (`tests/inprocess/flow.rs`,
/// `tests/storage.rs`): the seeded sandbox's profile, store and terminal (those
/// [`write_config`] names), a 60 s kiosk timeout and a health check a minute.
pub fn flow_config() -> kioskpay::payment::flow::FlowConfig {
    use kioskpay::money::{Currency, Money};
    kioskpay::payment::flow::FlowConfig {
        kiosk_id: "kiosk-1".into(),
        currency: Currency::NOK,
        max_amount: Money::new(1_000_000, Currency::NOK),
        profile_id: "T12345678.kiosk-in-person".into(),
        return_url: "https://kioskpay.invalid/return".into(),
        vat_percent: 25,
        store_id: "oslo-center".into(),
        terminal_id: kioskpay::dintero::TerminalId::parse(
            "T12345678-T0001",
            &kioskpay::dintero::AccountId::parse("T12345678").unwrap(),
        )
        .unwrap(),
        payout_destination_id: "seller-1".into(),
        timeout: Duration::from_secs(60),
        polling: kioskpay::payment::poll::Polling::Fixed {
            period: Duration::from_millis(250),
        },
        pickup_timeout: Duration::from_secs(10),
        result_screen: Duration::from_secs(3),
        health_interval: Duration::from_secs(60),
        keep_final: 100,
        lookup_confirm_delay: Duration::from_secs(16),
        paid_cart_window: Duration::from_secs(24 * 3600),
        callback_url: None,
    }
}

/// Every state the flow publishes on `state` from now on, in order, recorded by a task of its
/// own (a watch receiver alone shows only the latest).
pub fn record_states(
    state: &tokio::sync::watch::Receiver<kioskpay::state::KioskState>,
) -> std::sync::Arc<std::sync::Mutex<Vec<kioskpay::state::KioskState>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut watcher = state.clone();
    let log = seen.clone();
    tokio::spawn(async move {
        while watcher.changed().await.is_ok() {
            log.lock()
                .unwrap()
                .push(watcher.borrow_and_update().clone());
        }
    });
    seen
}

/// `GET /_emulator/ledger`.
pub async fn ledger(base: &str) -> serde_json::Value {
    request("GET", &format!("{base}/_emulator/ledger"), None).await
}

/// A control-API call; returns the JSON body.
pub async fn request(
    method: &str,
    url: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let method = method.to_string();
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = match (method.as_str(), body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            ("POST", Some(b)) => agent.post(&url).send_json(b),
            ("POST", None) => agent.post(&url).send_empty(),
            ("PUT", Some(b)) => agent.put(&url).send_json(b),
            (m, _) => panic!("unsupported {m}"),
        }
        .expect("emulator answers");
        let text = response.body_mut().read_to_string().unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    })
    .await
    .unwrap()
}

/// The ledger's transactions for one merchant reference.
pub fn transactions_for<'a>(
    ledger: &'a serde_json::Value,
    reference: &str,
) -> Vec<&'a serde_json::Value> {
    ledger["transactions"]
        .as_array()
        .map(|txs| {
            txs.iter()
                .filter(|t| t["merchant_reference"] == reference)
                .collect()
        })
        .unwrap_or_default()
}

/// The ledger's sessions for one merchant reference.
pub fn sessions_for<'a>(
    ledger: &'a serde_json::Value,
    reference: &str,
) -> Vec<&'a serde_json::Value> {
    ledger["sessions"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter(|s| s["merchant_reference"] == reference)
                .collect()
        })
        .unwrap_or_default()
}

/// A command that runs the `kioskpay` binary built for this test run.
///
/// Under qemu-user (the cross-target test runs in `.ci/run`) the test process is emulated but
/// its children are not: exec'ing the foreign-architecture binary fails with ENOEXEC unless the
/// kernel's binfmt_misc has qemu registered, which a fresh machine or container often has not.
/// Then the child is started through the same qemu runner as the tests (`KIOSKPAY_TEST_RUNNER`,
/// e.g. `qemu-aarch64-static -L /usr/aarch64-linux-gnu`, or Debian's default for this
/// architecture). `None`, with a SKIPPED line on stderr, if neither works.
pub fn kioskpay_bin() -> Option<std::process::Command> {
    command_for(env!("CARGO_BIN_EXE_kioskpay"), "--version")
}

/// A command that runs `program`, built for this test run's architecture: directly where it
/// runs (`probe`, e.g. `--version`, must succeed), else through the qemu runner, named by its
/// absolute path so that a child `PATH` the test changes does not hide it. `None`, with a
/// SKIPPED line, where neither works. See [`kioskpay_bin`].
pub fn command_for(program: &str, probe: &str) -> Option<std::process::Command> {
    use std::process::{Command, Stdio};
    let runs = |command: &mut Command| {
        command
            .arg(probe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    // With binfmt_misc unregistered, exec fails with ENOEXEC and std's fallback hands the file
    // to /bin/sh, so "it ran" is not enough: the probe must succeed.
    if runs(&mut Command::new(program)) {
        return Some(Command::new(program));
    }
    let runner = std::env::var("KIOSKPAY_TEST_RUNNER")
        .ok()
        .or_else(|| default_runner().map(str::to_string));
    let Some(runner) = runner else {
        panic!("{program} {probe} fails on its own architecture");
    };
    let mut words = runner.split_whitespace();
    let name = words.next()?;
    let absolute = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| name.into());
    let with_runner = || {
        let mut command = Command::new(&absolute);
        command.args(runner.split_whitespace().skip(1)).arg(program);
        command
    };
    if runs(&mut with_runner()) {
        Some(with_runner())
    } else {
        skipped(&format!("{program} is for another architecture, binfmt_misc does not run it and the runner `{runner}` cannot start it (install qemu-user-static or set KIOSKPAY_TEST_RUNNER)"));
        None
    }
}

/// Debian's qemu-user runner for this architecture (`.cargo/config.toml` uses the same).
fn default_runner() -> Option<&'static str> {
    if cfg!(target_arch = "aarch64") {
        Some("qemu-aarch64-static -L /usr/aarch64-linux-gnu")
    } else if cfg!(target_arch = "arm") {
        Some("qemu-arm-static -L /usr/arm-linux-gnueabihf")
    } else {
        None
    }
}

/// Says that a test is skipped and why: on stderr, where plain `cargo test` shows it, and
/// appended to the file named by `KIOSKPAY_SKIP_LOG` when set, so that `.ci/run` can list every
/// skip after a run.
pub fn skipped(reason: &str) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    // Written to the stderr file descriptor, not with eprintln!: the test harness captures what
    // eprintln! prints and hides it for a test that passes, which a skipped test does.
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {reason}");
    if let Some(path) = std::env::var_os("KIOSKPAY_SKIP_LOG") {
        if let Ok(mut log) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(log, "SKIPPED {test}: {reason}");
        }
    }
}

/// Whether a pseudo-terminal can be opened as a serial line here, as the scanner and the
/// console open their devices; prints SKIPPED with the reason when it cannot. qemu-user does not
/// emulate TCGETS2 (ENOSYS); any other failure is a real one. Call it from a tokio runtime.
pub fn serial_supported() -> bool {
    use kioskpay::input::serial::{self, LineSettings, SerialError};
    let (_master, slave) = openpty();
    match serial::open(Path::new(&slave), &LineSettings::new(9600)) {
        Ok(_) => true,
        Err(e @ SerialError::Unsupported { .. }) => {
            skipped(&format!(
                "a pseudo-terminal cannot be opened as a serial line here (ENOSYS, e.g. a \
                 qemu-user build without TCGETS2 emulation): {e}"
            ));
            false
        }
        Err(e) => panic!("opening a pty as a serial port failed: {e}"),
    }
}

/// A pseudo-terminal pair: the master end, and the path of the slave end, which a child opens
/// like a serial device or a technician's terminal.
pub fn openpty() -> (std::os::fd::OwnedFd, String) {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut master = 0;
    let mut slave = 0;
    // SAFETY: openpty writes two descriptors into the integers we pass; name and attributes are null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty failed");
    // SAFETY: both descriptors were just returned by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let path = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // The child opens the slave by its path; ours stays open so the master never sees a hangup.
    std::mem::forget(slave);
    (master, path)
}

// Waiting for a condition instead of sleeping for a while: a fixed sleep is either too short on
// a slow machine (a flaky test) or so long that what the test asserts after it may have held
// without proving anything. The timeout is a hang guard in wall-clock time, never a timing
// assertion: each helper says whether the condition came and the caller asserts on that, with
// its own message. The poll sleeps on tokio's clock, so under paused time each look lets the
// clock run on.

/// How long a wait sleeps between two looks.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// Looks at `done` every 20 ms until it holds (`true`) or `timeout` has passed (`false`).
pub async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    wait_for(timeout, async || done().then_some(()))
        .await
        .is_some()
}

/// Calls `f` every 20 ms until it gives a value, or `None` once `timeout` has passed; for a
/// condition that needs an `.await` (an HTTP call) or that yields what it found.
pub async fn wait_for<T>(timeout: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(found) = f().await {
            return Some(found);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// [`wait_until`] for a test or a thread without a runtime: sleeps the thread between looks.
pub fn wait_until_blocking(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(WAIT_POLL);
    }
}
