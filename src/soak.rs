//! `kioskpay soak`: a chaos run that proves the kiosk neither loses nor doubles a payment.
//!
//! # What it does
//! 1. Starts the Dintero [emulator] in-process on `127.0.0.1` with a small time
//!    scale and a seeded fault plan that hits **every Dintero route the kiosk calls** at rate
//!    `--fault-rate`: `500` answers, `503` with `Retry-After: 1`, answers held beyond the
//!    client's call timeout, connection resets, responses dropped after the work was done, and,
//!    on session creation, terminals that go offline mid-payment.
//! 2. Writes a config for the daemon into a work directory (short `dintero.call_timeout_ms`,
//!    50 ms polling, `input.kind = "stdin"`, no display) and runs the **real daemon binary** as a
//!    child process: `kioskpay run --config …` (the running executable itself).
//! 3. Feeds carts through the daemon's real input path, one stdin line `AMOUNT;SOAK-<i>` per
//!    cart, waiting for each payment's outcome in the journal before the next. The amounts'
//!    last two digits mix the emulator's outcomes (approved, declined, customer cancel, no card,
//!    terminal offline, technical failure, slow issuer, capture lag, chip and PIN). A cart the
//!    daemon refused (card payment unavailable, busy with recovery) or never read (killed
//!    first) has no intent in the journal and is fed again; a cart whose payment ended
//!    `not_created` is scanned again too (up to three times), as a customer would.
//! 4. `SIGKILL`s the daemon `--kills` times at seeded random moments and restarts it each time,
//!    so recovery runs with whatever was in flight. About half of the kills are placed
//!    **exactly between a journal write and the call it announces**, through the daemon's test
//!    hook [`crate::payment::flow::CRASH_AFTER_JOURNAL_ENV`].
//! 5. At the end it stops the daemon with `SIGTERM` and checks the emulator's ledger (the ground
//!    truth) against everything the journal said during the run:
//!    - no cart (`merchant_reference_2 = SOAK-<i>`) has more than one `CAPTURED` transaction;
//!    - every captured transaction has an `approved` journal record with the same reference
//!      and amount, and every `approved` record has its captured transaction;
//!    - every journal record is final, and the journal reads back without problems;
//!    - no session is left open (not cancelled, and without a final transaction);
//!    - the daemon never exited by itself and never got stuck on a cart.
//!
//! It prints progress on stderr while it runs and a table at the end (payments by outcome,
//! faults by kind, kills, restarts, recoveries, violations, duration), or JSON with `--json`.
//! SIGINT (Ctrl-C) or SIGTERM ends a run early: the cart in hand is finished, the checks run on
//! what was done, and the report says `interrupted` (exit status 1 even without violations,
//! since less was proven than asked for).
//!
//! The exit status is 0 only without violations; the work directory (config, journal, daemon
//! log) is kept when there are violations, and its path printed.
//!
//! # Reading the numbers
//! The run is deterministic in what it *asks* for (carts, fault dice, kill plan: all from
//! `--seed`), not in what happens: thread scheduling decides which request meets which die and
//! where a timed kill lands. A violation is therefore reported with enough context (cart,
//! merchant reference, ledger entry) to be understood without replaying it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};

use crate::dintero::TransactionStatus;
use crate::emulator::{self, EmulatorConfig, FaultKind, FaultPlan, FaultRule};
use crate::journal::{self, Outcome, PaymentRecord, ProblemKind};
use crate::payment::flow::CRASH_AFTER_JOURNAL_ENV;

/// Options of `kioskpay soak`.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// Carts to pay.
    pub payments: usize,
    /// Chance that any one Dintero call meets a fault, in `[0, 1)`.
    pub fault_rate: f64,
    /// How many times the daemon is killed with `SIGKILL`.
    pub kills: usize,
    /// Seeds the carts, the fault dice and the kill plan.
    pub seed: u64,
    /// Emulator time scale (0.01 makes the terminal's 3 s decline take 30 ms).
    pub time_scale: f64,
    /// Work directory to use and keep; a temporary one (kept only on violations) if `None`.
    pub dir: Option<PathBuf>,
    /// Print the final report as JSON instead of a table.
    pub json: bool,
}

impl SoakOptions {
    /// Checks the arguments; the message names the flag and what it takes.
    pub fn validate(&self) -> Result<(), String> {
        if self.payments == 0 {
            return Err("--payments must be at least 1".into());
        }
        if !(0.0..0.9).contains(&self.fault_rate) {
            return Err(format!(
                "--fault-rate {}: expected a chance from 0 to below 0.9 (0.2 = one call in five)",
                self.fault_rate
            ));
        }
        if !(self.time_scale > 0.0 && self.time_scale <= 1.0) {
            return Err(format!(
                "--time-scale {}: expected a number above 0 and at most 1",
                self.time_scale
            ));
        }
        Ok(())
    }
}

/// `dintero.call_timeout_ms` of the soak's daemon: short, so that held answers cost little,
/// but far above a loopback round trip on a busy board.
const CALL_TIMEOUT_MS: u64 = 200;
/// How long a `delay` fault holds the answer: beyond the call timeout, so the client gives up
/// on a call the emulator did carry out.
const FAULT_DELAY_MS: u64 = CALL_TIMEOUT_MS + 100;
/// How often the journal and the daemon are looked at.
const TICK: Duration = Duration::from_millis(15);
/// A cart without an outcome for this long means the kiosk is stuck: a violation.
const CART_DEADLINE: Duration = Duration::from_secs(120);
/// Scans of one cart whose payments ended `not_created` before the soak gives up on it.
const MAX_SCANS: u32 = 3;
/// Prefix of every cart reference (`merchant_reference_2`).
const CART_PREFIX: &str = "SOAK-";

/// The routes the daemon calls, each of which gets the fault mix.
const ROUTES: [&str; 8] = [
    "POST /v1/accounts/{aid}/auth/token",
    "GET /v1/accounts/{aid}/terminals/{id}",
    "POST /v1/sessions-profile",
    "GET /v1/sessions",
    "GET /v1/sessions/{id}",
    "POST /v1/sessions/{id}/cancel",
    "GET /v1/transactions",
    "GET /v1/transactions/{id}",
];

/// The fault mix: kind, status, `Retry-After`, share of the fault rate.
const MIX: [(FaultKind, Option<u16>, Option<u64>, f64); 5] = [
    (FaultKind::Status, Some(500), None, 0.30),
    (FaultKind::Status, Some(503), Some(1), 0.05),
    (FaultKind::Delay, None, None, 0.20),
    (FaultKind::Reset, None, None, 0.20),
    (FaultKind::DropResponse, None, None, 0.25),
];

/// Share of session creations whose terminal goes offline mid-payment, relative to the fault
/// rate. Small: each one costs the kiosk its whole payment timeout.
const TERMINAL_OFFLINE_SHARE: f64 = 0.01;

/// Cart amounts: the last two digits pick the emulator's outcome; weights out of 100.
const OUTCOME_MIX: [(Option<u64>, u32); 10] = [
    (None, 50),     // approved, contactless
    (Some(51), 6),  // declined
    (Some(52), 4),  // insufficient funds
    (Some(53), 7),  // customer cancels
    (Some(54), 4),  // no card (terminal timeout)
    (Some(55), 3),  // terminal offline
    (Some(56), 5),  // technical failure
    (Some(57), 5),  // slow issuer
    (Some(58), 6),  // capture lag
    (Some(59), 10), // chip and PIN
];

/// The fault plan of a soak: every route gets every kind of `MIX`, with probabilities
/// chained so that each kind fires on `rate × share` of the route's requests.
pub fn fault_plan(rate: f64, seed: u64) -> FaultPlan {
    let mut rules = Vec::new();
    for route in ROUTES {
        let mut mix: Vec<(FaultKind, Option<u16>, Option<u64>, f64)> = MIX.to_vec();
        if route == "POST /v1/sessions-profile" {
            mix.push((
                FaultKind::TerminalOffline,
                None,
                None,
                TERMINAL_OFFLINE_SHARE,
            ));
        }
        let mut taken = 0.0;
        for (kind, status, retry_after_s, share) in mix {
            let want = rate * share;
            // The chance this rule fires given that no earlier one did.
            let probability = (want / (1.0 - taken)).clamp(0.0, 1.0);
            taken += want;
            rules.push(FaultRule {
                route: route.to_string(),
                kind,
                status,
                delay_ms: (kind == FaultKind::Delay).then_some(FAULT_DELAY_MS),
                probability: Some(probability),
                count: None,
                retry_after_s,
            });
        }
    }
    FaultPlan { seed, rules }
}

/// How a kill was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KillKind {
    /// The daemon's own hook, right after a journal append.
    Journal,
    /// `SIGKILL` from the soak at a random moment.
    Random,
}

/// What the soak found, printed as a table or JSON.
#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    /// Carts asked for.
    pub carts: usize,
    /// Carts that reached an outcome.
    pub carts_done: usize,
    /// Payments started (journal intents), by outcome; `unresolved` for any without one.
    pub payments: BTreeMap<String, u64>,
    /// Total payments started.
    pub payments_total: u64,
    /// Faults the emulator injected, by kind (`status_500`, `status_503`, `delay`, …).
    pub faults: BTreeMap<String, u64>,
    /// Kills made right after a journal append (the daemon's test hook).
    pub kills_after_journal_write: u64,
    /// Kills at random moments.
    pub kills_random: u64,
    /// Daemon starts after the first.
    pub restarts: u64,
    /// Unfinished payments the restarted daemon resolved at start-up.
    pub recoveries: u64,
    /// Carts fed again because the daemon refused them or never read them.
    pub refeeds: u64,
    /// Everything that went wrong; the run fails if this is not empty.
    pub violations: Vec<String>,
    /// Wall-clock seconds.
    pub duration_s: f64,
    /// Payments per second.
    pub payments_per_s: f64,
    /// Inputs of the run, to repeat it.
    pub fault_rate: f64,
    /// Kills asked for.
    pub kills_asked: usize,
    /// The seed.
    pub seed: u64,
    /// Whether SIGINT/SIGTERM ended the run before all carts were paid.
    pub interrupted: bool,
}

/// What the daemon's log says that the journal cannot.
#[derive(Debug)]
enum LogEvent {
    /// The daemon refused the cart it was given (unavailable, busy).
    Refused,
    /// The daemon started resolving an unfinished payment.
    Recovering,
}

/// One run of the daemon binary.
struct Daemon {
    generation: u64,
    child: Child,
    stdin: Option<ChildStdin>,
    /// The journal append after which this daemon kills itself, if armed.
    hook: Option<u64>,
    /// Set once the soak sent `SIGKILL`.
    killed: bool,
}

/// A timed kill: at `delay` after cart `cart` is first fed.
#[derive(Clone, Copy, Debug)]
struct TimedKill {
    cart: usize,
    delay: Duration,
    at: Option<Instant>,
}

struct Soak {
    options: SoakOptions,
    base: String,
    config: PathBuf,
    state_dir: PathBuf,
    log: tokio::fs::File,
    rng: fastrand::Rng,
    daemon: Option<Daemon>,
    generations: u64,
    events_tx: mpsc::UnboundedSender<(u64, LogEvent)>,
    events: mpsc::UnboundedReceiver<(u64, LogEvent)>,
    log_lines: mpsc::UnboundedReceiver<String>,
    log_lines_tx: mpsc::UnboundedSender<String>,
    timed_kill: Option<TimedKill>,
    kills: Vec<KillKind>,
    recoveries: u64,
    refeeds: u64,
    /// Everything the journal said about every payment, kept across compactions.
    tally: HashMap<String, PaymentRecord>,
    /// Journal identity (inode, length) at the last read, to skip unchanged files.
    journal_seen: Option<(u64, u64)>,
    /// Payments whose outcome the soak has taken into account.
    concluded: HashSet<String>,
    violations: Vec<String>,
    started: Instant,
    last_progress: Instant,
    carts_done: usize,
    /// The cart being paid; timed kills fall due from their cart on.
    current_cart: usize,
    /// Set by SIGINT/SIGTERM: finish the cart in hand, then check and report.
    interrupted: Arc<AtomicBool>,
}

/// Runs the soak; `Ok(ExitCode::FAILURE)` when any violation was found.
pub async fn run(options: SoakOptions) -> Result<ExitCode> {
    if let Err(problem) = options.validate() {
        bail!(problem);
    }
    let emulator = emulator::spawn(EmulatorConfig {
        time_scale: options.time_scale,
        faults: Some(fault_plan(options.fault_rate, options.seed)),
        ..Default::default()
    })
    .await
    .context("starting the embedded emulator")?;
    let (work, temp) = match &options.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the work directory {}", dir.display()))?;
            (dir.clone(), None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("kioskpay-soak-")
                .tempdir()
                .context("creating a temporary directory")?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let mut soak = Soak::new(options, emulator.base_url(), work).await?;
    let interrupted = soak.interrupted.clone();
    let listener = tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!("soak: interrupted; finishing the cart in hand, then checking what was done");
        interrupted.store(true, Ordering::SeqCst);
    });
    let result = soak.run().await;
    listener.abort();
    soak.stop_daemon().await;
    let report = match result {
        Ok(()) => soak.check().await,
        Err(e) => {
            soak.violations
                .push(format!("the soak itself failed: {e:#}"));
            soak.check().await
        }
    };
    emulator.shutdown().await;
    if soak.options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    if report.violations.is_empty() && !report.interrupted {
        Ok(ExitCode::SUCCESS)
    } else if report.violations.is_empty() {
        Ok(ExitCode::FAILURE)
    } else {
        if let Some(temp) = temp {
            let kept = temp.keep();
            eprintln!(
                "kioskpay soak: violations found; config, journal and daemon log kept in {}",
                kept.display()
            );
        }
        Ok(ExitCode::FAILURE)
    }
}

/// The `i`-th cart's amount in minor units: a few kroner to a few thousand, last two digits
/// from [`OUTCOME_MIX`].
fn cart_amount(rng: &mut fastrand::Rng) -> u64 {
    let mut pick = rng.u32(0..100);
    let mut digits = None;
    for (d, weight) in OUTCOME_MIX {
        if pick < weight {
            digits = d;
            break;
        }
        pick -= weight;
    }
    let kroner = rng.u64(5..5000);
    kroner * 100 + digits.unwrap_or_else(|| rng.u64(0..51))
}

fn cart_line(amount: u64, i: usize) -> String {
    format!("{}.{:02};{CART_PREFIX}{i}\n", amount / 100, amount % 100)
}

impl Soak {
    async fn new(options: SoakOptions, base: String, work: PathBuf) -> Result<Soak> {
        let secret = work.join("client_secret");
        std::fs::write(&secret, format!("{}\n", emulator::CLIENT_SECRET))
            .with_context(|| format!("writing {}", secret.display()))?;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
        let state_dir = work.join("state");
        if state_dir.join(journal::FILE_NAME).exists() {
            bail!(
                "{} already holds a journal; give --dir an empty directory",
                state_dir.display()
            );
        }
        let config = work.join("kioskpay.toml");
        std::fs::write(&config, daemon_config(&base, &secret, &state_dir))
            .with_context(|| format!("writing {}", config.display()))?;
        let log_path = work.join("daemon.log");
        let log = tokio::fs::File::create(&log_path)
            .await
            .with_context(|| format!("creating {}", log_path.display()))?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let (log_lines_tx, log_lines) = mpsc::unbounded_channel();
        let now = Instant::now();
        Ok(Soak {
            rng: fastrand::Rng::with_seed(options.seed),
            options,
            base,
            config,
            state_dir,
            log,
            daemon: None,
            generations: 0,
            events_tx,
            events,
            log_lines,
            log_lines_tx,
            timed_kill: None,
            kills: Vec::new(),
            recoveries: 0,
            refeeds: 0,
            tally: HashMap::new(),
            journal_seen: None,
            concluded: HashSet::new(),
            violations: Vec::new(),
            started: now,
            last_progress: now,
            carts_done: 0,
            current_cart: 0,
            interrupted: Arc::new(AtomicBool::new(false)),
        })
    }

    fn kills_left(&self) -> usize {
        self.options.kills.saturating_sub(self.kills.len())
    }

    /// Starts the next daemon, deciding whether it gets the crash-after-journal hook.
    async fn spawn(&mut self, next_cart: usize) -> Result<()> {
        let carts_left = self.options.payments.saturating_sub(next_cart);
        // A payment appends about five records; the hook's append is drawn from those of the
        // carts one kill's share of the run covers, so hook kills spread over the run instead
        // of bunching right after each restart.
        let share = (carts_left / self.kills_left().max(1)).max(1) as u64;
        let hook = (self.kills_left() > 0 && carts_left >= 4 && self.rng.bool())
            .then(|| self.rng.u64(1..=(5 * share).max(12)));
        self.generations += 1;
        let generation = self.generations;
        let mut command = tokio::process::Command::new(
            std::env::current_exe().context("finding the kioskpay executable")?,
        );
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env(
                "KIOSKPAY_LOG",
                "warn,kioskpay::payment::flow=info,kioskpay::journal=info",
            )
            .env("NO_COLOR", "1")
            .env_remove(CRASH_AFTER_JOURNAL_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C in the terminal interrupts the soak, which then
            // stops the daemon itself, instead of reaching the daemon as a stop nobody asked for.
            .process_group(0);
        if let Some(n) = hook {
            command.env(CRASH_AFTER_JOURNAL_ENV, n.to_string());
        }
        let mut child = command.spawn().context("starting the daemon")?;
        let stdin = child.stdin.take();
        if let Some(stderr) = child.stderr.take() {
            let events = self.events_tx.clone();
            let lines_out = self.log_lines_tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let event = if line.contains("cart refused") {
                        Some(LogEvent::Refused)
                    } else if line.contains("recovering an unfinished payment") {
                        Some(LogEvent::Recovering)
                    } else {
                        None
                    };
                    if let Some(event) = event {
                        let _ = events.send((generation, event));
                    }
                    let _ = lines_out.send(format!("[{generation}] {line}\n"));
                }
            });
        }
        self.daemon = Some(Daemon {
            generation,
            child,
            stdin,
            hook,
            killed: false,
        });
        // Plan the next random kill, leaving room for the hook if this daemon carries one.
        let reserved = usize::from(hook.is_some());
        self.timed_kill = None;
        if self.kills_left() > reserved && carts_left > 0 {
            let gap = (carts_left / (self.kills_left() - reserved)).max(1);
            let cart = (next_cart + self.rng.usize(0..gap * 2)).min(self.options.payments - 1);
            self.timed_kill = Some(TimedKill {
                cart,
                delay: Duration::from_millis(self.rng.u64(0..400)),
                at: None,
            });
        }
        tracing::debug!(generation, ?hook, timed_kill = ?self.timed_kill, "daemon started");
        Ok(())
    }

    /// Copies the daemon's log lines to `daemon.log` and counts what they announce.
    async fn drain_logs(&mut self) -> Vec<(u64, LogEvent)> {
        let mut text = String::new();
        while let Ok(line) = self.log_lines.try_recv() {
            text.push_str(&line);
        }
        if !text.is_empty() {
            let _ = self.log.write_all(text.as_bytes()).await;
        }
        let mut out = Vec::new();
        while let Ok((generation, event)) = self.events.try_recv() {
            if let LogEvent::Recovering = event {
                self.recoveries += 1;
            }
            out.push((generation, event));
        }
        out
    }

    /// Sends `SIGKILL` to the running daemon and reaps it.
    async fn kill(&mut self) -> Result<()> {
        if let Some(daemon) = self.daemon.as_mut() {
            daemon.killed = true;
            daemon.child.start_kill().context("killing the daemon")?;
        }
        self.reap(true).await
    }

    /// If the daemon has exited (or, with `wait`, once it has), records how and forgets it.
    async fn reap(&mut self, wait: bool) -> Result<()> {
        let Some(daemon) = self.daemon.as_mut() else {
            return Ok(());
        };
        let status = if wait {
            Some(
                daemon
                    .child
                    .wait()
                    .await
                    .context("waiting for the daemon")?,
            )
        } else {
            daemon.child.try_wait().context("checking on the daemon")?
        };
        let Some(status) = status else {
            return Ok(());
        };
        let daemon = self.daemon.take();
        if let Some(daemon) = daemon {
            self.record_exit(&daemon, status);
        }
        Ok(())
    }

    fn record_exit(&mut self, daemon: &Daemon, status: ExitStatus) {
        if daemon.killed {
            self.kills.push(KillKind::Random);
        } else if status.signal() == Some(libc::SIGKILL) && daemon.hook.is_some() {
            self.kills.push(KillKind::Journal);
        } else {
            self.violations.push(format!(
                "daemon run {} exited by itself ({status}); see daemon.log",
                daemon.generation
            ));
        }
    }

    /// Re-reads the journal if it changed and merges it into the tally.
    fn refresh_journal(&mut self) {
        let path = self.state_dir.join(journal::FILE_NAME);
        let Ok(meta) = std::fs::metadata(&path) else {
            return;
        };
        let identity = (meta.ino(), meta.len());
        if self.journal_seen == Some(identity) {
            return;
        }
        let Ok(replay) = journal::read_only(&self.state_dir) else {
            return;
        };
        self.journal_seen = Some(identity);
        for p in replay.payments {
            match self.tally.get(&p.merchant_reference) {
                Some(old) if old.outcome.is_some() && p.outcome.is_none() => {}
                _ => {
                    self.tally.insert(p.merchant_reference.clone(), p);
                }
            }
        }
    }

    /// The payments for cart `i` whose outcome has not been taken into account yet.
    fn open_payments(&self, i: usize) -> Vec<PaymentRecord> {
        let reference = format!("{CART_PREFIX}{i}");
        self.tally
            .values()
            .filter(|p| p.cart_reference.as_deref() == Some(reference.as_str()))
            .filter(|p| !self.concluded.contains(&p.merchant_reference))
            .cloned()
            .collect()
    }

    fn progress(&mut self, force: bool) {
        let now = Instant::now();
        if !force && now < self.last_progress + Duration::from_secs(2) {
            return;
        }
        self.last_progress = now;
        eprintln!(
            "soak: {}/{} carts, {} payments, {}/{} kills, {} restarts, {} violations, {:.1} s",
            self.carts_done,
            self.options.payments,
            self.tally.len(),
            self.kills.len(),
            self.options.kills,
            self.generations.saturating_sub(1),
            self.violations.len(),
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Waits a tick, then handles whatever happened: log lines, a due kill, an exited daemon,
    /// a changed journal. Returns the log events of the tick.
    async fn tick(&mut self) -> Result<Vec<(u64, LogEvent)>> {
        sleep(TICK).await;
        let events = self.drain_logs().await;
        if let Some(kill) = self.timed_kill.as_mut() {
            if kill.at.is_none() && self.current_cart >= kill.cart {
                kill.at = Some(Instant::now() + kill.delay);
            }
        }
        if let Some(kill) = self.timed_kill {
            if kill.at.is_some_and(|at| Instant::now() >= at) && self.daemon.is_some() {
                self.timed_kill = None;
                self.kill().await?;
            }
        }
        self.reap(false).await?;
        self.refresh_journal();
        self.progress(false);
        Ok(events)
    }

    async fn run(&mut self) -> Result<()> {
        self.progress(true);
        for i in 0..self.options.payments {
            if self.interrupted.load(Ordering::SeqCst) {
                break;
            }
            let amount = cart_amount(&mut self.rng);
            self.pay(i, amount).await?;
            self.carts_done += 1;
            if self.violations.iter().any(|v| v.contains("stuck")) {
                break;
            }
        }
        // Kills the plan could not place before the carts ran out happen now, on an idle
        // kiosk, so that the run always makes the number asked for.
        self.current_cart = self.options.payments;
        while self.kills_left() > 0
            && self.violations.is_empty()
            && !self.interrupted.load(Ordering::SeqCst)
        {
            if self.daemon.is_none() {
                self.spawn(self.options.payments).await?;
            }
            sleep(Duration::from_millis(self.rng.u64(50..300))).await;
            if self.daemon.is_some() {
                self.kill().await?;
            }
        }
        if self.daemon.is_none() {
            self.spawn(self.options.payments).await?;
        }
        // Let the last daemon start (and resolve anything the last kill left) before stopping.
        let deadline = Instant::now() + CART_DEADLINE;
        loop {
            self.tick().await?;
            if self.daemon.is_none() {
                self.spawn(self.options.payments).await?;
            }
            if self.tally.values().all(|p| p.outcome.is_some()) {
                break;
            }
            if Instant::now() > deadline {
                self.violations
                    .push("payments left unresolved by the last daemon for 120 s (stuck)".into());
                break;
            }
        }
        self.progress(true);
        Ok(())
    }

    /// Feeds cart `i` until one of its payments reaches an outcome.
    async fn pay(&mut self, i: usize, amount: u64) -> Result<()> {
        self.current_cart = i;
        let line = cart_line(amount, i);
        let mut scans = 0;
        let deadline = Instant::now() + CART_DEADLINE;
        'feed: loop {
            if self.daemon.is_none() {
                self.spawn(i).await?;
            }
            // Only a refusal logged after this feed counts.
            self.drain_logs().await;
            let generation = self.daemon.as_ref().map_or(0, |d| d.generation);
            if self.open_payments(i).is_empty() {
                if let Some(daemon) = self.daemon.as_mut() {
                    if let Some(stdin) = daemon.stdin.as_mut() {
                        // A write error means the daemon is gone; the next tick sees it.
                        let _ = stdin.write_all(line.as_bytes()).await;
                        let _ = stdin.flush().await;
                    }
                }
            }
            loop {
                let events = self.tick().await?;
                let open = self.open_payments(i);
                if open.len() > 1 {
                    let refs: Vec<&str> =
                        open.iter().map(|p| p.merchant_reference.as_str()).collect();
                    self.violations.push(format!(
                        "cart {CART_PREFIX}{i}: one scan started {} payments: {}",
                        refs.len(),
                        refs.join(", ")
                    ));
                }
                if let Some(p) = open.first() {
                    if let Some(outcome) = p.outcome {
                        let reference = p.merchant_reference.clone();
                        self.concluded.insert(reference);
                        scans += 1;
                        if outcome == Outcome::NotCreated && scans < MAX_SCANS {
                            continue 'feed;
                        }
                        return Ok(());
                    }
                } else {
                    // No intent: fed again if the daemon refused the cart or died first.
                    let refused = events
                        .iter()
                        .any(|(g, e)| *g == generation && matches!(e, LogEvent::Refused));
                    let died = self.daemon.as_ref().map(|d| d.generation) != Some(generation);
                    if refused || died {
                        self.refeeds += 1;
                        if refused {
                            sleep(Duration::from_millis(50)).await;
                        }
                        continue 'feed;
                    }
                }
                if self.daemon.is_none() {
                    // Killed with the cart's payment in flight: the next daemon recovers it.
                    self.spawn(i).await?;
                }
                if Instant::now() > deadline {
                    self.violations.push(format!(
                        "cart {CART_PREFIX}{i} ({amount} minor units): no outcome within {} s \
                         (stuck); journal: {:?}",
                        CART_DEADLINE.as_secs(),
                        self.open_payments(i)
                            .first()
                            .map(|p| (&p.merchant_reference, &p.state))
                    ));
                    return Ok(());
                }
            }
        }
    }

    /// Stops the daemon with `SIGTERM` (a clean stop, unlike the kills) and reaps it.
    async fn stop_daemon(&mut self) {
        let Some(daemon) = self.daemon.as_mut() else {
            return;
        };
        if let Some(pid) = daemon.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) takes no pointers; the pid is our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let stopped = tokio::time::timeout(Duration::from_secs(15), daemon.child.wait()).await;
        match stopped {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => self
                .violations
                .push(format!("the daemon stopped on SIGTERM with {status}")),
            Ok(Err(e)) => self
                .violations
                .push(format!("cannot wait for the daemon: {e}")),
            Err(_) => {
                self.violations
                    .push("the daemon did not stop within 15 s of SIGTERM".into());
                let _ = daemon.child.kill().await;
            }
        }
        self.daemon = None;
        self.drain_logs().await;
        let _ = self.log.flush().await;
    }

    /// The final checks against the emulator's ledger; builds the report.
    async fn check(&mut self) -> SoakReport {
        self.journal_seen = None;
        self.refresh_journal();
        match journal::read_only(&self.state_dir) {
            Ok(replay) => {
                for problem in replay.problems {
                    if problem.kind != ProblemKind::TornTail {
                        self.violations
                            .push(format!("journal reads back with a problem: {problem}"));
                    }
                }
                for p in replay.payments.iter().filter(|p| p.outcome.is_none()) {
                    self.violations.push(format!(
                        "journal: {} ({}) is not final (state {})",
                        p.merchant_reference,
                        p.cart_reference.as_deref().unwrap_or("-"),
                        p.state
                    ));
                }
            }
            Err(e) => self
                .violations
                .push(format!("cannot read the journal: {e}")),
        }
        let ledger = control(&self.base, "/_emulator/ledger").await;
        let faults = control(&self.base, "/_emulator/faults").await;
        match ledger {
            Ok(ledger) => {
                let found = ledger_violations(&ledger, &self.tally);
                self.violations.extend(found);
            }
            Err(e) => self
                .violations
                .push(format!("cannot read the emulator's ledger: {e:#}")),
        }
        let mut fault_counts = BTreeMap::new();
        match faults {
            Ok(report) => {
                fault_counts = fault_counts_by_kind(&report);
            }
            Err(e) => self
                .violations
                .push(format!("cannot read the emulator's fault counts: {e:#}")),
        }
        let mut payments = BTreeMap::new();
        for p in self.tally.values() {
            let key = p.outcome.map_or("unresolved", Outcome::as_str);
            *payments.entry(key.to_string()).or_insert(0) += 1;
        }
        let payments_total = self.tally.len() as u64;
        let duration_s = self.started.elapsed().as_secs_f64();
        let count = |kind| self.kills.iter().filter(|k| **k == kind).count() as u64;
        SoakReport {
            carts: self.options.payments,
            carts_done: self.carts_done,
            payments,
            payments_total,
            faults: fault_counts,
            kills_after_journal_write: count(KillKind::Journal),
            kills_random: count(KillKind::Random),
            restarts: self.generations.saturating_sub(1),
            recoveries: self.recoveries,
            refeeds: self.refeeds,
            violations: self.violations.clone(),
            duration_s,
            payments_per_s: if duration_s > 0.0 {
                payments_total as f64 / duration_s
            } else {
                0.0
            },
            fault_rate: self.options.fault_rate,
            kills_asked: self.options.kills,
            seed: self.options.seed,
            interrupted: self.interrupted.load(Ordering::SeqCst),
        }
    }
}

/// The daemon's config: fast polling, short call timeout, stdin input, no display.
fn daemon_config(base: &str, secret: &Path, state: &Path) -> String {
    format!(
        r#"# Written by `kioskpay soak`: the daemon under test, against the in-process emulator.
[kiosk]
id = "soak"
currency = "NOK"
language = "en"
max_amount = 1000000

[dintero]
account_id = "{account}"
client_id = "{client}"
client_secret_file = "{secret}"
profile_id = "{profile}"
checkout_url = "{base}"
api_url = "{base}"
connect_timeout_ms = 100
call_timeout_ms = {CALL_TIMEOUT_MS}

[store]
id = "{store}"
terminal_id = "{terminal}"
payout_destination_id = "{payout}"

[input]
kind = "stdin"
# The soak types `AMOUNT;REFERENCE` lines, the development format.
formats = ["plain"]
# A refused cart is typed again at once; the scanner's repeat filter must not eat it.
duplicate_window_ms = 0

[display]
kind = "none"

[payment]
timeout_s = 10
poll_interval_ms = 50
pickup_timeout_s = 1
result_screen_s = 1
health_interval_s = 1

[state]
dir = "{state}"
keep_final = 50
"#,
        account = emulator::ACCOUNT_ID,
        client = emulator::CLIENT_ID,
        secret = secret.display(),
        profile = emulator::PROFILE_ID,
        store = emulator::STORE_ID,
        terminal = emulator::TERMINAL_IDS[0],
        payout = emulator::PAYOUT_DESTINATION_ID,
        state = state.display(),
    )
}

/// A control-API GET on the emulator.
async fn control(base: &str, path: &str) -> Result<Value> {
    let url = format!("{base}{path}");
    tokio::task::spawn_blocking(move || -> Result<Value> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut response = agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .with_context(|| format!("reading {url}"))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {url}"))
    })
    .await
    .context("the control call did not run")?
}

/// `GET /_emulator/faults`' fired counts, with `status` split by code using the plan's rules.
fn fault_counts_by_kind(report: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let rules = report["rules"].as_array().cloned().unwrap_or_default();
    let hits = report["hits"].as_array().cloned().unwrap_or_default();
    for (rule, hits) in rules.iter().zip(hits.iter()) {
        let kind = rule["kind"].as_str().unwrap_or("?");
        let key = match rule["status"].as_u64() {
            Some(status) => format!("{kind}_{status}"),
            None => kind.to_string(),
        };
        *out.entry(key).or_insert(0) += hits.as_u64().unwrap_or(0);
    }
    out
}

/// The ledger checks: doubles, captured without `approved`, `approved` without capture,
/// sessions left open.
fn ledger_violations(ledger: &Value, tally: &HashMap<String, PaymentRecord>) -> Vec<String> {
    let mut violations = Vec::new();
    let empty = Vec::new();
    let sessions = ledger["sessions"].as_array().unwrap_or(&empty);
    let transactions = ledger["transactions"].as_array().unwrap_or(&empty);
    let cart_of: HashMap<&str, &str> = sessions
        .iter()
        .filter_map(|s| Some((s["id"].as_str()?, s["merchant_reference_2"].as_str()?)))
        .collect();
    let status_of =
        |tx: &Value| TransactionStatus::parse(tx["status"].as_str().unwrap_or("UNKNOWN"));
    let mut captured_per_cart: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut captured_refs: HashMap<&str, u64> = HashMap::new();
    for tx in transactions {
        if !status_of(tx).is_paid() {
            continue;
        }
        let reference = tx["merchant_reference"].as_str().unwrap_or("");
        let amount = tx["amount"].as_u64().unwrap_or(0);
        captured_refs.insert(reference, amount);
        let session = tx["session_id"].as_str().unwrap_or("");
        if let Some(cart) = cart_of.get(session) {
            captured_per_cart.entry(cart).or_default().push(reference);
        }
        match tally.get(reference) {
            Some(p) if p.outcome == Some(Outcome::Approved) && p.amount == amount => {}
            Some(p) => violations.push(format!(
                "{reference}: captured {amount} at Dintero, but the journal says {} for {}",
                p.outcome.map_or("unresolved", Outcome::as_str),
                p.amount
            )),
            None => violations.push(format!(
                "{reference}: captured {amount} at Dintero, but the journal never heard of it"
            )),
        }
    }
    for (cart, refs) in captured_per_cart {
        if refs.len() > 1 {
            violations.push(format!(
                "cart {cart} was charged {} times: {}",
                refs.len(),
                refs.join(", ")
            ));
        }
    }
    let mut approved: Vec<&PaymentRecord> = tally
        .values()
        .filter(|p| p.outcome == Some(Outcome::Approved))
        .collect();
    approved.sort_by(|a, b| a.merchant_reference.cmp(&b.merchant_reference));
    for p in approved {
        match captured_refs.get(p.merchant_reference.as_str()) {
            Some(amount) if *amount == p.amount => {}
            Some(amount) => violations.push(format!(
                "{}: approved for {} in the journal, captured {amount} at Dintero",
                p.merchant_reference, p.amount
            )),
            None => violations.push(format!(
                "{}: approved in the journal, but no captured transaction at Dintero",
                p.merchant_reference
            )),
        }
    }
    let tx_status: HashMap<&str, TransactionStatus> = transactions
        .iter()
        .filter_map(|tx| Some((tx["id"].as_str()?, status_of(tx))))
        .collect();
    for s in sessions {
        if !s["cancelled_at"].is_null() {
            continue;
        }
        let open = match s["transaction_id"].as_str() {
            None => true,
            Some(tx) => !tx_status.get(tx).is_some_and(TransactionStatus::is_final),
        };
        if open {
            violations.push(format!(
                "session {} ({}) is left open: not cancelled, transaction {}",
                s["id"].as_str().unwrap_or("?"),
                s["merchant_reference"].as_str().unwrap_or("?"),
                s["transaction_id"]
                    .as_str()
                    .and_then(|t| tx_status.get(t))
                    .map_or("none", TransactionStatus::as_str)
            ));
        }
    }
    violations
}

/// The final table.
pub fn table(r: &SoakReport) -> String {
    let mut out = String::new();
    let mut row = |label: &str, value: String| out.push_str(&format!("{label:<28} {value:>10}\n"));
    row("carts", format!("{}/{}", r.carts_done, r.carts));
    row("payments", r.payments_total.to_string());
    for (outcome, n) in &r.payments {
        row(&format!("  {outcome}"), n.to_string());
    }
    row(
        "faults injected",
        r.faults.values().sum::<u64>().to_string(),
    );
    for (kind, n) in &r.faults {
        row(&format!("  {kind}"), n.to_string());
    }
    row(
        "kills",
        (r.kills_after_journal_write + r.kills_random).to_string(),
    );
    row(
        "  after a journal write",
        r.kills_after_journal_write.to_string(),
    );
    row("  at a random moment", r.kills_random.to_string());
    row("restarts", r.restarts.to_string());
    row("recoveries", r.recoveries.to_string());
    row("carts fed again", r.refeeds.to_string());
    row("violations", r.violations.len().to_string());
    row("duration", format!("{:.1} s", r.duration_s));
    row("payments/s", format!("{:.2}", r.payments_per_s));
    if r.interrupted {
        out.push_str("INTERRUPTED: stopped before all carts were paid\n");
    }
    for v in &r.violations {
        out.push_str(&format!("VIOLATION: {v}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fault_plan_hits_each_route_at_the_asked_rate() {
        let plan = fault_plan(0.2, 7);
        plan.validate().unwrap();
        for route in ROUTES {
            let rules: Vec<&FaultRule> = plan.rules.iter().filter(|r| r.route == route).collect();
            // P(some rule fires) = 1 - Π(1 - p).
            let none: f64 = rules
                .iter()
                .map(|r| 1.0 - r.probability.unwrap_or(1.0))
                .product();
            let total = 1.0 - none;
            let want = if route == "POST /v1/sessions-profile" {
                0.2 * (1.0 + TERMINAL_OFFLINE_SHARE)
            } else {
                0.2
            };
            assert!((total - want).abs() < 1e-9, "{route}: {total}");
        }
        assert!(plan
            .rules
            .iter()
            .any(|r| r.kind == FaultKind::Delay && r.delay_ms > Some(CALL_TIMEOUT_MS)));
    }

    #[test]
    fn cart_lines_are_scanner_codes_in_major_units() {
        assert_eq!(cart_line(39951, 7), "399.51;SOAK-7\n");
        assert_eq!(cart_line(505, 0), "5.05;SOAK-0\n");
        let mut rng = fastrand::Rng::with_seed(1);
        let amounts: Vec<u64> = (0..1000).map(|_| cart_amount(&mut rng)).collect();
        assert!(amounts.iter().all(|a| *a >= 500));
        for digits in 51..=59 {
            assert!(amounts.iter().any(|a| a % 100 == digits), "{digits}");
        }
    }

    fn record(reference: &str, amount: u64, outcome: Option<Outcome>) -> PaymentRecord {
        PaymentRecord {
            merchant_reference: reference.into(),
            amount,
            currency: "NOK".into(),
            cart_reference: Some("SOAK-1".into()),
            terminal_id: "T12345678-T0001".into(),
            session_id: None,
            transaction_id: None,
            state: "x".into(),
            outcome,
            status: None,
            started_at: String::new(),
            finished_at: None,
            reopened_at: None,
        }
    }

    #[test]
    fn ledger_checks_catch_doubles_mismatches_and_open_sessions() {
        let ledger = json!({
            "sessions": [
                {"id": "s1", "merchant_reference": "r1", "merchant_reference_2": "SOAK-1",
                 "transaction_id": "t1", "cancelled_at": null},
                {"id": "s2", "merchant_reference": "r2", "merchant_reference_2": "SOAK-1",
                 "transaction_id": "t2", "cancelled_at": null},
                {"id": "s3", "merchant_reference": "r3", "merchant_reference_2": "SOAK-2",
                 "transaction_id": null, "cancelled_at": null},
                {"id": "s4", "merchant_reference": "r4", "merchant_reference_2": "SOAK-3",
                 "transaction_id": null, "cancelled_at": "2026-01-01T00:00:00Z"}
            ],
            "transactions": [
                {"id": "t1", "session_id": "s1", "merchant_reference": "r1", "amount": 100,
                 "status": "CAPTURED"},
                {"id": "t2", "session_id": "s2", "merchant_reference": "r2", "amount": 100,
                 "status": "CAPTURED"}
            ]
        });
        let mut tally = HashMap::new();
        tally.insert("r1".into(), record("r1", 100, Some(Outcome::Approved)));
        tally.insert("r2".into(), record("r2", 100, Some(Outcome::NotCreated)));
        tally.insert("r5".into(), record("r5", 300, Some(Outcome::Approved)));
        let v = ledger_violations(&ledger, &tally);
        let all = v.join("\n");
        assert!(
            all.contains("r2: captured 100 at Dintero, but the journal says not_created"),
            "{all}"
        );
        assert!(all.contains("cart SOAK-1 was charged 2 times"), "{all}");
        assert!(
            all.contains("r5: approved in the journal, but no captured"),
            "{all}"
        );
        assert!(all.contains("session s3 (r3) is left open"), "{all}");
        assert!(!all.contains("s4"), "{all}");
        assert_eq!(v.len(), 4, "{all}");

        tally.insert("r2".into(), record("r2", 100, Some(Outcome::Approved)));
        tally.remove("r5");
        let v = ledger_violations(&ledger, &tally);
        assert_eq!(v.len(), 2, "{v:?}");
    }
}
