//! Start-up: from exec of `kioskpay run` to its `READY=1` on `NOTIFY_SOCKET`, as systemd sees
//! it, with an empty journal and with one of 50,000 records.
//!
//! The daemon is this very binary (`kioskpay run` is the same code with or without the test
//! tooling), a child process against an in-process emulator, with a fake service manager: a
//! datagram socket that timestamps what arrives. The big journal is written once through the
//! journal's own append (finished approved payments, seven records each) and copied fresh into
//! each run's state directory; with the default `state.keep_final` (2,000) the daemon compacts
//! it at start, which is part of what is measured.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use super::{ms, percentile, Row, Verdict};
use crate::emulator::{self, sandbox, EmulatorConfig, TERMINAL_IDS};
use crate::journal::{self, Journal, Outcome, Record};

/// Records in the big journal (rounded up to whole payments).
const RECORDS: u64 = 50_000;
/// Longest a start may take before the run is given up.
const GUARD: Duration = Duration::from_secs(30);

/// Runs `runs` starts of each kind of the `kioskpay` at `daemon` and returns the rows.
pub async fn measure(runs: usize, daemon: &Path) -> Result<Vec<Row>> {
    let emulator = emulator::spawn(EmulatorConfig::default()).await?;
    let base = emulator.base_url();
    let work = tempfile::Builder::new()
        .prefix("kioskpay-bench-startup-")
        .tempdir()?;
    // Built where a sync costs nothing, so that 50,000 records do not take 50,000 disk syncs;
    // each run copies it to the disk the measured daemon uses.
    let scratch = tempfile::Builder::new()
        .prefix("kioskpay-bench-journal-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir_in(work.path()))?;
    let big = scratch.path().to_path_buf();
    let records = tokio::task::spawn_blocking({
        let big = big.clone();
        move || build_journal(&big)
    })
    .await??;
    let mut rows = Vec::new();
    for (kind, (label, journal)) in [
        ("empty journal".to_string(), None),
        (format!("journal of {records} records"), Some(big.clone())),
    ]
    .into_iter()
    .enumerate()
    {
        let mut times = Vec::new();
        for run in 0..runs {
            let dir = work.path().join(format!("run-{kind}-{run}"));
            let base = base.clone();
            let journal = journal.clone();
            let daemon = daemon.to_path_buf();
            times.push(
                tokio::task::spawn_blocking(move || {
                    start_once(&daemon, &base, &dir, journal.as_deref())
                })
                .await??,
            );
        }
        let p50 = percentile(&times, 50).unwrap_or_default();
        rows.push(Row::new(
            format!("start-up: exec → READY=1, {label}"),
            "≤ 100 ms",
            format!(
                "p50 {}, max {} (n={})",
                ms(p50),
                ms(percentile(&times, 100).unwrap_or_default()),
                times.len()
            ),
            Verdict::of(p50 <= Duration::from_millis(100)),
        ));
    }
    emulator.shutdown().await;
    Ok(rows)
}

/// Writes finished payments into `dir` until it holds [`RECORDS`] records; returns the count.
fn build_journal(dir: &Path) -> Result<u64> {
    let (mut journal, _) = Journal::open(dir)?;
    let mut written = 0;
    let mut sequence = 0;
    while written < RECORDS {
        sequence += 1;
        for record in approved_payment(sequence) {
            journal.append(&record)?;
            written += 1;
        }
    }
    Ok(written)
}

/// The seven records of an approved payment, as the README's journal example shows them, with
/// the nanosecond timestamps the flow writes: the big journals of the start-up figure and of
/// `cargo bench --bench journal` are made of these.
pub fn approved_payment(sequence: u64) -> Vec<Record> {
    let r = format!("kiosk-1-20261124-{sequence:06}");
    let state = |s: &str| Record::State {
        merchant_reference: r.clone(),
        state: s.into(),
    };
    vec![
        Record::Intent {
            merchant_reference: r.clone(),
            amount: 39_900,
            currency: "NOK".into(),
            cart_reference: Some(format!("KID{sequence}")),
            terminal_id: TERMINAL_IDS[0].into(),
            sequence,
            at: "2026-11-24T08:00:00.123456789Z".into(),
        },
        Record::Session {
            merchant_reference: r.clone(),
            session_id: "T12345678.4vXq2SmPnD8kTfWbE1yLcR".into(),
        },
        state("awaiting_pickup"),
        Record::Transaction {
            merchant_reference: r.clone(),
            transaction_id: "T12345678.9HcNwKzA3fRtYb7QdLm2Up".into(),
        },
        state("waiting_for_card"),
        state("processing"),
        Record::Final {
            merchant_reference: r.clone(),
            outcome: Outcome::Approved,
            transaction_id: Some("T12345678.9HcNwKzA3fRtYb7QdLm2Up".into()),
            status: Some("CAPTURED".into()),
            at: "2026-11-24T08:00:04.123456789Z".into(),
        },
    ]
}

/// One start of the daemon `exe` in `dir` (with a copy of the journal in `journal`, if any):
/// the time from spawning it to its `READY=1`. The daemon is stopped with SIGTERM afterwards.
fn start_once(exe: &Path, base: &str, dir: &Path, journal: Option<&Path>) -> Result<Duration> {
    std::fs::create_dir_all(dir)?;
    sandbox::write_secret(dir)?;
    let state = dir.join("state");
    std::fs::create_dir_all(&state)?;
    if let Some(from) = journal {
        std::fs::copy(
            from.join(journal::FILE_NAME),
            state.join(journal::FILE_NAME),
        )?;
    }
    let text = sandbox::config(
        base,
        dir,
        TERMINAL_IDS[0],
        &["[input]\nkind = \"stdin\"\nformats = [\"plain\"]\n[display]\nkind = \"none\"\n"],
    )
    .map_err(|e| anyhow!(e))?;
    let config = dir.join("kioskpay.toml");
    std::fs::write(&config, text)?;
    let socket_path: PathBuf = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let started = Instant::now();
    let child = Command::new(exe)
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("KIOSKPAY_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} run", exe.display()))?;
    let ready = wait_ready(&socket, started);
    stop(child);
    ready
}

fn wait_ready(socket: &UnixDatagram, started: Instant) -> Result<Duration> {
    let mut buf = [0u8; 4096];
    while started.elapsed() < GUARD {
        if let Ok(n) = socket.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return Ok(started.elapsed());
            }
        }
    }
    Err(anyhow!(
        "kioskpay run sent no READY=1 within {} s",
        GUARD.as_secs()
    ))
}

fn stop(mut child: Child) {
    let pid = i32::try_from(child.id()).unwrap_or(0);
    // SAFETY: kill(2) on our own child's pid with a valid signal has no memory effects.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + GUARD;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
