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
//!    - every journal record is final, and the journal reads back without problems (but those
//!      its own damage explains, see below);
//!    - no session is left open (not cancelled, and without a final transaction);
//!    - the daemon never exited by itself and never got stuck on a cart.
//!
//! # State faults and shared ids
//! A merchant reference is how a kiosk finds a payment whose create answer it never saw, so a
//! reference that names two payments lets a lookup approve a cart with another payment's money.
//! Three flags put the kiosk where that used to happen:
//! - `--lose-state N`: N restarts first **delete the kiosk's state directory** (a re-imaged SD
//!   card): journal, installation id, all of it.
//! - `--damage-state N`: N restarts first **damage the journal**, one of (a quarter each): one
//!   bit flipped inside the newest intent line, one bit flipped inside any line, the file cut
//!   inside its last line, the file cut inside the newest intent line (a garbled last page:
//!   everything after the cut is gone).
//! - `--kiosks 2`: a second daemon (kiosk `B`) with the **same `kiosk.id`**, its own state
//!   directory (`<work>/kiosk-b/state`), the emulator's second terminal and its own carts
//!   (`SOAK-B-<i>`). Carts alternate between the kiosks, one at a time; both daemons run all
//!   along, so one's recovery and late watch overlap the other's payments. A timed kill hits
//!   the kiosk that is paying, a hook kill the daemon whose append armed it; a state fault hits
//!   the kiosk being restarted. The one-shot dropped answer meets the next creation of either.
//!
//! Which restarts bring a state fault is drawn from `--seed` (out of the `--kills` restarts
//! after a kill). A fault is made only where every payment in that kiosk's journal is final: a
//! kiosk re-imaged in the middle of a payment forgets that payment, which no kiosk can help, and
//! a cut can take an unfinished payment's only line with it. So when a kill left a payment
//! unfinished the fault waits: it is made before the next cart of a kiosk whose journal is all
//! final, at a clean restart (`SIGTERM`, fault, start), or at such a restart of an idle kiosk
//! after the last cart. Damage only touches lines the soak has already read, so its checks
//! still know every payment. After each state fault the next session creation's answer is dropped (a one-shot
//! `drop_response` rule put in front of the fault plan), so the kiosk's first payment after the
//! loss or damage is found by reference: the very lookup a reused reference would fool.
//!
//! The end-of-run checks then also require:
//! - no merchant reference names two payments (two intents with another cart, amount, terminal
//!   or start time, across kiosks and lost state directories; or two sessions at Dintero);
//! - every `approved` record's transaction carries that payment's reference, amount and
//!   terminal (not another payment's money);
//! - no `conflict` hides a capture of that reference for that cart (money taken, kiosk said no).
//!
//! `conflict` itself is a legal outcome (the kiosk refusing money it cannot prove is its own)
//! and is counted. The journal problems the soak caused are expected (a torn tail, corrupt
//! lines and the sequence skip after damage, a missing intent for a damaged intent line); any
//! other problem is still a violation.
//!
//! It prints progress on stderr while it runs and a table at the end (payments by outcome,
//! faults by kind, kills, restarts, recoveries, state losses and damages, violations, duration), or JSON with `--json`.
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

use crate::emulator::{self, EmulatorConfig};
use crate::journal::{self, Outcome, PaymentRecord};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};

mod child;
mod control;
mod invariants;
mod plan;
mod report;
mod state_faults;
mod tally;

pub use plan::fault_plan;
pub use report::{table, SoakReport};

use plan::{cart_amount, cart_line, state_fault_plan, KillKind, StateFault};

/// Options of `kioskpay soak`.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// Carts to pay.
    pub payments: usize,
    /// Chance that any one Dintero call meets a fault, in `[0, 1)`.
    pub fault_rate: f64,
    /// How many times the daemon is killed with `SIGKILL`.
    pub kills: usize,
    /// Restarts that first delete the kiosk's state directory (see "State faults").
    pub lose_state: usize,
    /// Restarts that first damage the kiosk's journal.
    pub damage_state: usize,
    /// Daemons side by side on one `kiosk.id`, each on its own terminal (1 or 2).
    pub kiosks: usize,
    /// Seeds the carts, the fault dice, the kill plan and the state faults.
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
        if !(1..=KIOSKS.len()).contains(&self.kiosks) {
            return Err(format!(
                "--kiosks {}: expected 1 to {} (the emulator has {} terminals)",
                self.kiosks,
                KIOSKS.len(),
                KIOSKS.len()
            ));
        }
        if self.lose_state.saturating_add(self.damage_state) > self.kills {
            return Err(format!(
                "--lose-state {} and --damage-state {}: together at most --kills ({}), since \
                 each happens at the restart after a kill",
                self.lose_state, self.damage_state, self.kills
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

/// The kiosks a run can have: name, cart reference prefix (`merchant_reference_2`), work
/// subdirectory (kiosk A keeps the layout of a one-kiosk run), terminal.
const KIOSKS: [(&str, &str, &str, &str); 2] = [
    ("A", "SOAK-", "", emulator::TERMINAL_IDS[0]),
    ("B", "SOAK-B-", "kiosk-b", emulator::TERMINAL_IDS[1]),
];

/// Seeds the state-fault dice apart from the carts' and kills', so that a run without state
/// faults asks for exactly what it asked for before they existed.
const STATE_SEED: u64 = 0x5747_efa1;

/// What the daemon's log says that the journal cannot.
#[derive(Debug)]
enum LogEvent {
    /// The daemon refused the cart it was given (unavailable, busy).
    Refused,
    /// The daemon started resolving an unfinished payment.
    Recovering,
    /// The daemon replayed its journal: its signal handlers are installed by then.
    Ready,
}

/// One run of the daemon binary.
struct Daemon {
    /// Index into [`Soak::kiosks`].
    kiosk: usize,
    generation: u64,
    child: Child,
    stdin: Option<ChildStdin>,
    /// The journal append after which this daemon kills itself, if armed.
    hook: Option<u64>,
    /// Set once the soak sent `SIGKILL`.
    killed: bool,
    /// Set once it logged [`LogEvent::Ready`]: a `SIGTERM` before that ends it unhandled.
    ready: bool,
}

/// A timed kill: at `delay` after cart `cart` is first fed.
#[derive(Clone, Copy, Debug)]
struct TimedKill {
    cart: usize,
    delay: Duration,
    at: Option<Instant>,
}

/// One kiosk of the run: its daemon, config, state directory and carts.
struct Kiosk {
    /// `A`, `B`: in messages and `daemon.log`.
    name: &'static str,
    /// Prefix of its cart references.
    cart_prefix: &'static str,
    config: PathBuf,
    state_dir: PathBuf,
    daemon: Option<Daemon>,
    /// Whether a daemon ran on it before: the next start is a restart.
    started: bool,
    /// Whether its last daemon was stopped with `SIGTERM` rather than killed.
    stopped_cleanly: bool,
    /// Journal identity (inode, length) at the last read, to skip unchanged files.
    journal_seen: Option<(u64, u64)>,
    /// Whether the soak damaged the journal in its current state directory.
    damaged: bool,
    /// References whose intent line the soak damaged there.
    damaged_intents: HashSet<String>,
}

impl Kiosk {
    fn cart(&self, i: usize) -> String {
        format!("{}{i}", self.cart_prefix)
    }
}

struct Soak {
    options: SoakOptions,
    base: String,
    log: tokio::fs::File,
    rng: fastrand::Rng,
    kiosks: Vec<Kiosk>,
    generations: u64,
    restarts: u64,
    /// Restarts after a kill: the index into `state_plan`.
    kill_restarts: usize,
    events_tx: mpsc::UnboundedSender<(u64, LogEvent)>,
    events: mpsc::UnboundedReceiver<(u64, LogEvent)>,
    log_lines: mpsc::UnboundedReceiver<String>,
    log_lines_tx: mpsc::UnboundedSender<String>,
    timed_kill: Option<TimedKill>,
    kills: Vec<KillKind>,
    recoveries: u64,
    refeeds: u64,
    /// Everything the journals said about every payment, kept across compactions, damage and
    /// lost state directories.
    tally: HashMap<String, PaymentRecord>,
    /// References found naming two payments, with what the two were.
    reused: BTreeMap<String, String>,
    /// Dice of the state faults, apart from the carts' and kills' (see [`STATE_SEED`]).
    state_rng: fastrand::Rng,
    /// Which restart brings which state fault.
    state_plan: Vec<Option<StateFault>>,
    /// State faults due and not yet made.
    owed: VecDeque<StateFault>,
    losses: u64,
    damages: BTreeMap<String, u64>,
    postponed: u64,
    /// Fault counts of the plans replaced so far: the emulator counts per plan.
    faults_banked: BTreeMap<String, u64>,
    /// Fault plans installed after the first, which seeds each one's dice.
    plans: u64,
    /// Whether the plan in force starts with the one-shot rule that drops a create's answer.
    drop_armed: bool,
    creates_dropped: u64,
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

impl Soak {
    async fn new(options: SoakOptions, base: String, work: PathBuf) -> Result<Soak> {
        let mut kiosks = Vec::new();
        for (name, cart_prefix, sub, terminal) in KIOSKS.into_iter().take(options.kiosks) {
            let home = work.join(sub);
            std::fs::create_dir_all(&home)
                .with_context(|| format!("creating {}", home.display()))?;
            let state_dir = home.join("state");
            if state_dir.join(journal::FILE_NAME).exists() {
                bail!(
                    "{} already holds a journal; give --dir an empty directory",
                    state_dir.display()
                );
            }
            let config = home.join("kioskpay.toml");
            emulator::sandbox::write_secret(&home)
                .with_context(|| format!("writing the client secret into {}", home.display()))?;
            std::fs::write(&config, daemon_config(&base, &home, terminal)?)
                .with_context(|| format!("writing {}", config.display()))?;
            kiosks.push(Kiosk {
                name,
                cart_prefix,
                config,
                state_dir,
                daemon: None,
                started: false,
                stopped_cleanly: false,
                journal_seen: None,
                damaged: false,
                damaged_intents: HashSet::new(),
            });
        }
        let log_path = work.join("daemon.log");
        let log = tokio::fs::File::create(&log_path)
            .await
            .with_context(|| format!("creating {}", log_path.display()))?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let (log_lines_tx, log_lines) = mpsc::unbounded_channel();
        let now = Instant::now();
        let mut state_rng = fastrand::Rng::with_seed(options.seed ^ STATE_SEED);
        let state_plan = state_fault_plan(
            options.kills,
            options.lose_state,
            options.damage_state,
            &mut state_rng,
        );
        Ok(Soak {
            rng: fastrand::Rng::with_seed(options.seed),
            options,
            base,
            log,
            kiosks,
            generations: 0,
            restarts: 0,
            kill_restarts: 0,
            events_tx,
            events,
            log_lines,
            log_lines_tx,
            timed_kill: None,
            kills: Vec::new(),
            recoveries: 0,
            refeeds: 0,
            tally: HashMap::new(),
            reused: BTreeMap::new(),
            state_rng,
            state_plan,
            owed: VecDeque::new(),
            losses: 0,
            damages: BTreeMap::new(),
            postponed: 0,
            faults_banked: BTreeMap::new(),
            plans: 0,
            drop_armed: false,
            creates_dropped: 0,
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

    /// Daemons that carry the crash-after-journal hook: each may still make a kill.
    fn hooks_armed(&self) -> usize {
        self.kiosks
            .iter()
            .filter_map(|k| k.daemon.as_ref())
            .filter(|d| d.hook.is_some())
            .count()
    }

    /// The kiosk cart `i` goes to: they take turns.
    fn kiosk_of(&self, i: usize) -> usize {
        i % self.kiosks.len()
    }

    fn progress(&mut self, force: bool) {
        let now = Instant::now();
        if !force && now < self.last_progress + Duration::from_secs(2) {
            return;
        }
        self.last_progress = now;
        eprintln!(
            "soak: {}/{} carts, {} payments, {}/{} kills, {} restarts, {} state faults, {} \
             violations, {:.1} s",
            self.carts_done,
            self.options.payments,
            self.tally.len(),
            self.kills.len(),
            self.options.kills,
            self.restarts,
            self.losses + self.damages.values().sum::<u64>(),
            self.violations.len(),
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Waits a tick, then handles whatever happened: log lines, a due kill, an exited daemon
    /// (started again), a changed journal. Returns the log events of the tick.
    async fn tick(&mut self) -> Result<Vec<(u64, LogEvent)>> {
        sleep(TICK).await;
        let events = self.drain_logs().await;
        if let Some(kill) = self.timed_kill.as_mut() {
            if kill.at.is_none() && self.current_cart >= kill.cart {
                kill.at = Some(Instant::now() + kill.delay);
            }
        }
        let paying = self.kiosk_of(self.current_cart);
        if let Some(kill) = self.timed_kill {
            if kill.at.is_some_and(|at| Instant::now() >= at)
                && self.kiosks[paying].daemon.is_some()
            {
                self.timed_kill = None;
                self.kill(paying).await?;
            }
        }
        for k in 0..self.kiosks.len() {
            self.reap(k, false).await?;
            self.refresh_journal(k);
        }
        self.ensure_daemons().await?;
        self.progress(false);
        Ok(events)
    }

    /// Starts every kiosk's daemon that is not running.
    async fn ensure_daemons(&mut self) -> Result<()> {
        for k in 0..self.kiosks.len() {
            if self.kiosks[k].daemon.is_none() {
                self.spawn(k, self.current_cart).await?;
            }
        }
        Ok(())
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
        // kiosk, so that the run always makes the number asked for. A daemon with an armed
        // hook goes first: its hook could otherwise make one kill too many.
        self.current_cart = self.options.payments;
        while self.kills_left() > 0
            && self.violations.is_empty()
            && !self.interrupted.load(Ordering::SeqCst)
        {
            self.ensure_daemons().await?;
            sleep(Duration::from_millis(self.rng.u64(50..300))).await;
            let k = self
                .kiosks
                .iter()
                .position(|k| k.daemon.as_ref().is_some_and(|d| d.hook.is_some()))
                .unwrap_or(self.kills.len() % self.kiosks.len());
            if self.kiosks[k].daemon.is_some() {
                self.kill(k).await?;
            }
        }
        self.ensure_daemons().await?;
        // State faults still owed (every restart so far came with a payment unfinished) are
        // made now, at a clean restart of an idle kiosk once its journal is all final.
        let mut tries = 0;
        while !self.owed.is_empty()
            && tries < 4 * self.kiosks.len()
            && self.violations.is_empty()
            && !self.interrupted.load(Ordering::SeqCst)
        {
            let k = tries % self.kiosks.len();
            tries += 1;
            let deadline = Instant::now() + CART_DEADLINE;
            while !self.all_final(k) && Instant::now() < deadline {
                self.tick().await?;
            }
            self.stop_kiosk(k).await;
            self.spawn(k, self.options.payments).await?;
        }
        // Let the last daemons start (and resolve anything the last kill or state fault left)
        // before stopping.
        let deadline = Instant::now() + CART_DEADLINE;
        loop {
            self.tick().await?;
            // The journals too: a payment whose final record a damage cut off is final in the
            // tally but not yet again in the journal its daemon is recovering it from.
            if self.tally.values().all(|p| p.outcome.is_some())
                && (0..self.kiosks.len()).all(|k| self.all_final(k))
                && self
                    .kiosks
                    .iter()
                    .all(|k| k.daemon.as_ref().is_some_and(|d| d.ready))
            {
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

    /// Feeds cart `i` to its kiosk until one of its payments reaches an outcome.
    async fn pay(&mut self, i: usize, amount: u64) -> Result<()> {
        self.current_cart = i;
        let k = self.kiosk_of(i);
        let cart = self.kiosks[k].cart(i);
        let line = cart_line(amount, &cart);
        let mut scans = 0;
        let deadline = Instant::now() + CART_DEADLINE;
        // A state fault that waited at a restart for a payment to finish is made now, while
        // this kiosk is idle: a clean stop, the fault, a start, and this cart's create meets
        // the dropped answer.
        self.refresh_journal(k);
        if !self.owed.is_empty() && self.kiosks[k].daemon.is_some() && self.all_final(k) {
            self.stop_kiosk(k).await;
            self.spawn(k, i).await?;
        }
        'feed: loop {
            self.ensure_daemons().await?;
            // Only a refusal logged after this feed counts.
            self.drain_logs().await;
            let generation = self.kiosks[k].daemon.as_ref().map_or(0, |d| d.generation);
            if self.open_payments(&cart).is_empty() {
                if let Some(daemon) = self.kiosks[k].daemon.as_mut() {
                    if let Some(stdin) = daemon.stdin.as_mut() {
                        // A write error means the daemon is gone; the next tick sees it.
                        let _ = stdin.write_all(line.as_bytes()).await;
                        let _ = stdin.flush().await;
                    }
                }
            }
            loop {
                let events = self.tick().await?;
                let open = self.open_payments(&cart);
                if open.len() > 1 {
                    let refs: Vec<&str> =
                        open.iter().map(|p| p.merchant_reference.as_str()).collect();
                    self.violations.push(format!(
                        "cart {cart}: one scan started {} payments: {}",
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
                    let died =
                        self.kiosks[k].daemon.as_ref().map(|d| d.generation) != Some(generation);
                    if refused || died {
                        self.refeeds += 1;
                        if refused {
                            sleep(Duration::from_millis(50)).await;
                        }
                        continue 'feed;
                    }
                }
                if Instant::now() > deadline {
                    self.violations.push(format!(
                        "cart {cart} ({amount} minor units): no outcome within {} s (stuck); \
                         journal: {:?}",
                        CART_DEADLINE.as_secs(),
                        self.open_payments(&cart)
                            .first()
                            .map(|p| (&p.merchant_reference, &p.state))
                    ));
                    return Ok(());
                }
            }
        }
    }
}

/// The config of a soak kiosk: the sandbox config with the soak's short timeouts and quick
/// polling, carts typed on stdin, no display. The soak types `AMOUNT;REFERENCE` lines (the
/// development format `plain`) and types a refused cart again at once, so the scanner's repeat
/// filter is off.
fn daemon_config(base: &str, home: &Path, terminal: &str) -> Result<String> {
    let soak = format!(
        r#"
[kiosk]
id = "soak"

[dintero]
connect_timeout_ms = 100
call_timeout_ms = {CALL_TIMEOUT_MS}

[input]
kind = "stdin"
formats = ["plain"]
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
keep_final = 50
"#
    );
    let text =
        emulator::sandbox::config(base, home, terminal, &[&soak]).map_err(anyhow::Error::msg)?;
    Ok(format!(
        "# Written by `kioskpay soak`: the daemon under test, against the in-process emulator.\n{text}"
    ))
}
