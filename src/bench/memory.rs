//! Memory across thousands of payments and journal compactions, and the idle daemon's CPU and
//! wake-ups, measured on a real `kioskpay run` child.
//!
//! The daemon is a child process (this binary, or the one `--daemon` names), so that
//! `/proc/<pid>` holds only the kiosk: its resident memory (`VmRSS`, split into anonymous and
//! file-backed pages, and the high water mark `VmHWM`), its CPU time and its context switches. It pays back-to-back carts typed
//! on its stdin against an in-process emulator at time scale 0.001, so that the terminal
//! answers within milliseconds: the memory a payment leaves behind does not depend on how long
//! its terminal took. Signed callbacks are on, as on a kiosk that takes them; the listener lets
//! ten a second in (its rate limit, which this run exceeds on purpose), and the rest of the
//! payments are found by the poll, fixed at 50 ms (the shortest the config allows) so that
//! they do not wait for the adaptive policy's first read. That is about 27 payments a second,
//! 10,005 in about six minutes, and more requests per payment than a real kiosk makes, which
//! if anything leaves more behind. The journal lives on `/dev/shm` where there is one: this
//! figure is about memory, and 70,000 disk syncs would only make it slow. With
//! `state.keep_final` at its default (2,000), the daemon compacts its journal after every 2,001
//! payments, so the full run goes on to the fifth compaction.
//!
//! Idle is measured after the payments, in the steady state, over [`Plan::idle`]: CPU is the
//! time every thread of the daemon spent on a CPU (`/proc/<pid>/task/*/schedstat`), wake-ups
//! are their context switches (voluntary and not), which also count the health checks (one a
//! minute by default) and whatever else wakes the daemon.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::{progress, Row, Verdict};
use crate::emulator::{self, EmulatorConfig, TERMINAL_IDS};
use crate::secret::Secret;

/// `state.keep_final` as the daemon ships it: a compaction after every `KEEP_FINAL + 1`.
const KEEP_FINAL: u64 = 2_000;
/// The resident memory a steady kiosk may use.
const RSS_LIMIT_KIB: u64 = 8 * 1024;
/// How much the anonymous memory may grow from the first hundred payments to the end and
/// still count as flat: less than one compaction's journal in memory.
const FLAT_KIB: u64 = 1024;
/// Longest one payment may take before the run is given up.
const PAYMENT_GUARD: Duration = Duration::from_secs(30);
const SIGNATURE_SECRET: &str = "bench-memory-callback-secret";

/// How much to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// After how many payments memory is read; the last is the run's length.
    pub checkpoints: Vec<u64>,
    /// How long the idle daemon is watched.
    pub idle: Duration,
}

impl Plan {
    /// The full run: 0, 100, 1,000, 5,000 and 10,000 payments, then on to the fifth
    /// compaction; a minute idle. The smoke run: 0, 100 and 300 payments, 5 s idle.
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                checkpoints: vec![0, 100, 300],
                idle: Duration::from_secs(5),
            }
        } else {
            Plan {
                checkpoints: vec![0, 100, 1_000, 5_000, 10_000, 5 * (KEEP_FINAL + 1)],
                idle: Duration::from_secs(60),
            }
        }
    }
}

/// What `/proc/<pid>/status` says about memory, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident now.
    pub rss: u64,
    /// The most ever resident.
    pub hwm: u64,
    /// Resident anonymous pages: the heap, stacks.
    pub anon: u64,
    /// Resident file-backed pages: mostly the binary itself.
    pub file: u64,
}

impl Memory {
    /// Parses the text of `/proc/<pid>/status`.
    pub fn parse(status: &str) -> Result<Memory> {
        let field = |name: &str| {
            status_number(status, name).ok_or_else(|| anyhow!("/proc status has no {name}"))
        };
        Ok(Memory {
            rss: field("VmRSS")?,
            hwm: field("VmHWM")?,
            anon: field("RssAnon")?,
            file: field("RssFile")?,
        })
    }

    fn read(pid: u32) -> Result<Memory> {
        Memory::parse(&std::fs::read_to_string(format!("/proc/{pid}/status"))?)
    }
}

/// The number a `/proc/<pid>/status` line `name:` starts with (its unit, if any, left off).
fn status_number(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn mib(kib: u64) -> String {
    // Integer tenths: money is not the only thing kept out of floats where a division does.
    format!("{}.{} MiB", kib / 1024, (kib % 1024) * 10 / 1024)
}

/// CPU time (ns) and context switches of every thread of `pid`, by thread id.
fn threads(pid: u32) -> Result<HashMap<u32, (u64, u64)>> {
    let mut found = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        let Some(tid) = task
            .file_name()
            .and_then(|n| n.to_str()?.parse::<u32>().ok())
        else {
            continue;
        };
        // A thread may end between the listing and the read: it no longer counts.
        let (Ok(schedstat), Ok(status)) = (
            std::fs::read_to_string(task.join("schedstat")),
            std::fs::read_to_string(task.join("status")),
        ) else {
            continue;
        };
        let ns = schedstat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let switches = ["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"]
            .iter()
            .filter_map(|name| status_number(&status, name))
            .sum();
        found.insert(tid, (ns, switches));
    }
    Ok(found)
}

/// CPU time (ns) and context switches of `pid` from `before` to `after` (see [`threads`]).
///
/// By thread, not as sums: a blocking-pool thread that ends in between takes its counts with
/// it, and a sum would go down. Such a thread sat idle for tokio's keep-alive (10 s) before it
/// ended, so what it did inside the window is its exit, which is not counted. A thread
/// started in between counts whole.
fn spent(before: &HashMap<u32, (u64, u64)>, after: &HashMap<u32, (u64, u64)>) -> (u64, u64) {
    after.iter().fold((0, 0), |(ns, switches), (tid, now)| {
        let then = before.get(tid).copied().unwrap_or_default();
        (
            ns + now.0.saturating_sub(then.0),
            switches + now.1.saturating_sub(then.1),
        )
    })
}

/// The daemon under measurement.
struct Daemon {
    child: Child,
    stdin: tokio::process::ChildStdin,
    log: tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    pid: u32,
}

impl Daemon {
    fn start(exe: &Path, config: &Path, dir: &Path) -> Result<Daemon> {
        let mut child = Command::new(exe)
            .args(["run", "--config"])
            .arg(config)
            // Each payment's end is read from its `payment finished` line.
            .env("KIOSKPAY_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            // The console's socket is part of the steady daemon, so it is bound, in the sandbox.
            .env(crate::control::SOCKET_ENV, dir.join("control.sock"))
            // The console's socket is part of the steady daemon, so it is bound, in the sandbox.
            .env(crate::control::SOCKET_ENV, dir.join("control.sock"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} run", exe.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("kioskpay run ended at once"))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        Ok(Daemon {
            child,
            stdin,
            log: BufReader::new(stderr).lines(),
            pid,
        })
    }

    /// Waits for a log line containing one of `texts` and returns which; fails on an error
    /// line or when the daemon ends.
    async fn wait_for(&mut self, texts: &[&str], what: &str) -> Result<usize> {
        let wait = async {
            // What it said last, for when it ends without an error line (a refused config).
            let mut last = std::collections::VecDeque::new();
            while let Some(line) = self.log.next_line().await? {
                if let Some(i) = texts.iter().position(|t| line.contains(t)) {
                    return Ok(i);
                }
                if line.contains("ERROR") {
                    bail!("kioskpay run logged an error while {what}: {line}");
                }
                if last.len() == 3 {
                    last.pop_front();
                }
                last.push_back(line);
            }
            let said = Vec::from(last).join(" / ");
            bail!("kioskpay run ended while {what}; its last words: {said:?}")
        };
        tokio::time::timeout(PAYMENT_GUARD, wait)
            .await
            .map_err(|_| {
                anyhow!(
                    "no {texts:?} within {} s while {what}",
                    PAYMENT_GUARD.as_secs()
                )
            })?
    }

    /// Types one cart (again if the daemon refused it, e.g. during a health check) and waits
    /// for its payment to finish.
    async fn pay(&mut self, n: u64) -> Result<()> {
        loop {
            self.stdin
                .write_all(format!("399.00;MEMORY-{n}\n").as_bytes())
                .await?;
            self.stdin.flush().await?;
            let what = format!("paying cart {n}");
            match self
                .wait_for(&["payment finished", "cart refused"], &what)
                .await?
            {
                0 => return Ok(()),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // SAFETY: kill(2) on our own child's pid with a valid signal has no memory effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Runs the payments, reads memory at each checkpoint, then watches the idle daemon.
pub async fn measure(plan: &Plan, daemon: &Path) -> Result<Vec<Row>> {
    let emulator = emulator::spawn(EmulatorConfig {
        time_scale: 0.001,
        signature_secret: Some(Secret::new(SIGNATURE_SECRET)),
        ..Default::default()
    })
    .await?;
    let work = tempfile::Builder::new()
        .prefix("kioskpay-bench-memory-")
        .tempdir_in("/dev/shm")
        .or_else(|_| {
            tempfile::Builder::new()
                .prefix("kioskpay-bench-memory-")
                .tempdir()
        })?;
    let dir = work.path();
    let ours = format!(
        "[input]\nduplicate_window_ms = 0\n\
         [payment]\npolling = \"fixed\"\npoll_interval_ms = 50\n\
         [state]\nkeep_final = {KEEP_FINAL}\n{}",
        super::kiosk::callback(dir, SIGNATURE_SECRET)?
    );
    let config = super::kiosk::write_config(&emulator.base_url(), dir, TERMINAL_IDS[0], &ours)?;

    let mut daemon = Daemon::start(daemon, &config, dir)?;
    let result = run(&mut daemon, plan).await;
    daemon.stop().await;
    emulator.shutdown().await;
    result
}

async fn run(daemon: &mut Daemon, plan: &Plan) -> Result<Vec<Row>> {
    daemon
        .wait_for(&["card payment available"], "starting")
        .await
        .context("waiting for the daemon's first health check")?;
    let mut rows = Vec::new();
    let mut readings = Vec::new();
    let mut paid = 0;
    let started = Instant::now();
    for &checkpoint in &plan.checkpoints {
        while paid < checkpoint {
            paid += 1;
            daemon.pay(paid).await?;
            if paid % 1_000 == 0 {
                progress(&format!(
                    "  memory: {paid} payments in {:.0} s",
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        // Past the result screen and whatever the last payment left to the blocking pool.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let memory = Memory::read(daemon.pid)?;
        let compactions = paid / (KEEP_FINAL + 1);
        rows.push(Row::new(
            format!("memory after {paid} payments ({compactions} compactions)"),
            "VmRSS ≤ 8 MiB",
            format!(
                "VmRSS {} (anon {}, file {}), VmHWM {}",
                mib(memory.rss),
                mib(memory.anon),
                mib(memory.file),
                mib(memory.hwm)
            ),
            Verdict::of(memory.rss <= RSS_LIMIT_KIB),
        ));
        readings.push((paid, memory));
    }
    if let (Some((from, first)), Some((to, last))) = (
        readings.iter().find(|(n, _)| *n >= 100).copied(),
        readings.last().copied(),
    ) {
        if to > from {
            let growth = last.anon.saturating_sub(first.anon);
            rows.push(Row::new(
                format!("memory growth, payments {from} → {to}"),
                "anonymous ≤ +1 MiB (flat)",
                format!(
                    "anon {} → {} ({:+} KiB), {:.1} payments/s",
                    mib(first.anon),
                    mib(last.anon),
                    last.anon as i64 - first.anon as i64,
                    paid as f64 / started.elapsed().as_secs_f64().max(1e-3)
                ),
                Verdict::of(growth <= FLAT_KIB),
            ));
        }
    }

    progress(&format!(
        "  memory: watching the idle daemon for {} s",
        plan.idle.as_secs()
    ));
    let before = threads(daemon.pid)?;
    let watched = Instant::now();
    tokio::time::sleep(plan.idle).await;
    let after = threads(daemon.pid)?;
    let wall = watched.elapsed();
    let (cpu_ns, wakeups) = spent(&before, &after);
    // Parts per million of one core: integers, and fine enough for 0.001 %.
    let ppm = u128::from(cpu_ns) * 1_000_000 / wall.as_nanos().max(1);
    rows.push(Row::new(
        format!("idle: CPU over {} s", plan.idle.as_secs()),
        "≤ 0.1 % of a core",
        format!(
            "{}.{:03} % of a core ({:.1} ms of CPU)",
            ppm / 10_000,
            (ppm % 10_000) / 10,
            cpu_ns as f64 / 1e6
        ),
        Verdict::of(ppm <= 1_000),
    ));
    rows.push(Row::new(
        format!("idle: wake-ups over {} s", plan.idle.as_secs()),
        "≤ 1/s besides health checks",
        format!(
            "{:.2}/s ({wakeups} context switches, all threads)",
            wakeups as f64 / wall.as_secs_f64()
        ),
        Verdict::Info,
    ));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_read_from_proc_status() {
        let status = "Name:\tkioskpay\nVmHWM:\t   12000 kB\nVmRSS:\t    9800 kB\n\
                      RssAnon:\t    2100 kB\nRssFile:\t    7700 kB\nRssShmem:\t       0 kB\n";
        assert_eq!(
            Memory::parse(status).unwrap(),
            Memory {
                rss: 9800,
                hwm: 12000,
                anon: 2100,
                file: 7700
            }
        );
        assert!(Memory::parse("Name:\tkioskpay\n").is_err());
    }

    #[test]
    fn this_process_has_memory_and_cpu_to_read() {
        let pid = std::process::id();
        let memory = Memory::read(pid).unwrap();
        assert!(memory.rss > 0 && memory.hwm >= memory.rss, "{memory:?}");
        let threads = threads(pid).unwrap();
        assert!(threads.contains_key(&pid), "{threads:?}");
        assert!(threads.values().map(|t| t.0).sum::<u64>() > 0);
    }

    #[test]
    fn a_thread_that_ends_takes_nothing_off_and_a_new_one_counts_whole() {
        let before = HashMap::from([(1, (1_000, 10)), (2, (5_000, 50))]);
        let after = HashMap::from([(1, (1_500, 12)), (3, (300, 3))]);
        assert_eq!(spent(&before, &after), (800, 5));
    }

    #[test]
    fn mebibytes_are_shown_to_a_tenth() {
        assert_eq!(mib(9800), "9.5 MiB");
        assert_eq!(mib(8 * 1024), "8.0 MiB");
    }
}
