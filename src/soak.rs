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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Range;
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

/// What a restart does to the kiosk's state directory before the daemon starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StateFault {
    /// Deletes it: a re-imaged SD card.
    Lose,
    /// Damages the journal (one of [`DAMAGES`]).
    Damage,
}

/// How a journal is damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Damage {
    /// One bit flipped inside the newest intent line: the line whose loss could let its
    /// reference be handed out again.
    FlipNewestIntent,
    /// One bit flipped inside any line.
    FlipAnyLine,
    /// The file cut inside its last line.
    CutLastLine,
    /// The file cut inside the newest intent line: everything after the cut is gone.
    CutNewestIntent,
}

/// Drawn with equal chances: half of the damage lands in the newest intent.
const DAMAGES: [Damage; 4] = [
    Damage::FlipNewestIntent,
    Damage::FlipAnyLine,
    Damage::CutLastLine,
    Damage::CutNewestIntent,
];

impl Damage {
    fn name(self) -> &'static str {
        match self {
            Damage::FlipNewestIntent => "bit_flip_newest_intent",
            Damage::FlipAnyLine => "bit_flip_any_line",
            Damage::CutLastLine => "cut_in_last_line",
            Damage::CutNewestIntent => "cut_in_newest_intent",
        }
    }
}

/// Which of the first `restarts` restarts bring which state fault: `lose` losses and `damage`
/// damages at distinct restarts drawn from `rng`, `None` for the others.
fn state_fault_plan(
    restarts: usize,
    lose: usize,
    damage: usize,
    rng: &mut fastrand::Rng,
) -> Vec<Option<StateFault>> {
    let mut plan: Vec<Option<StateFault>> = std::iter::repeat_n(Some(StateFault::Lose), lose)
        .chain(std::iter::repeat_n(Some(StateFault::Damage), damage))
        .chain(std::iter::repeat(None))
        .take(restarts.max(lose + damage))
        .collect();
    rng.shuffle(&mut plan);
    plan
}

/// The byte ranges of a journal's lines, without their newlines (an unended last line too).
fn line_spans(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            spans.push(start..i);
            start = i + 1;
        }
    }
    if start < bytes.len() {
        spans.push(start..bytes.len());
    }
    spans
}

/// The `merchant_reference` of an intent line, `None` for any other line.
fn intent_reference(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    if !text.contains(r#""type":"intent""#) {
        return None;
    }
    let key = r#""merchant_reference":""#;
    let rest = &text[text.find(key)? + key.len()..];
    Some(rest[..rest.find('"')?].to_string())
}

/// A journal after [`damage`].
#[derive(Debug, PartialEq, Eq)]
struct Damaged {
    /// The whole file as it is to be written back.
    bytes: Vec<u8>,
    /// Where the damage is: the flipped byte, or the new length.
    at: usize,
    /// The reference of the intent line the damage is in, if it is in one.
    intent_of: Option<String>,
}

/// `journal` damaged as `kind` says, at a place drawn from `rng`; `None` when it has no line
/// of that kind (no intent yet) or the line is too short to damage inside.
fn damage(journal: &[u8], kind: Damage, rng: &mut fastrand::Rng) -> Option<Damaged> {
    let spans = line_spans(journal);
    let newest_intent = || {
        spans
            .iter()
            .rposition(|s| intent_reference(&journal[s.clone()]).is_some())
    };
    let line = match kind {
        Damage::FlipNewestIntent | Damage::CutNewestIntent => newest_intent()?,
        Damage::FlipAnyLine => (!spans.is_empty()).then(|| rng.usize(..spans.len()))?,
        Damage::CutLastLine => spans.len().checked_sub(1)?,
    };
    let span = spans[line].clone();
    if span.len() < 2 {
        return None;
    }
    let intent_of = intent_reference(&journal[span.clone()]);
    let mut bytes = journal.to_vec();
    let at = match kind {
        Damage::FlipNewestIntent | Damage::FlipAnyLine => {
            let at = rng.usize(span);
            let mut bit = rng.u8(0..8);
            // A flip that makes a newline would split the line in two instead of damaging one.
            if bytes[at] ^ (1 << bit) == b'\n' {
                bit = (bit + 1) % 8;
            }
            bytes[at] ^= 1 << bit;
            at
        }
        Damage::CutLastLine | Damage::CutNewestIntent => {
            // At least one byte of the line stays and at least one of its bytes goes: a cut at
            // its end would leave a whole record that only lacks its newline.
            let at = rng.usize(span.start + 1..span.end);
            bytes.truncate(at);
            at
        }
    };
    Some(Damaged {
        bytes,
        at,
        intent_of,
    })
}

/// The reference a `MissingIntent` problem names.
fn missing_intent_reference(detail: &str) -> Option<&str> {
    detail.strip_prefix("no intent for ")?.split(':').next()
}

/// Whether a payment's intent was read (a payment known only from later records has none).
fn has_intent(p: &PaymentRecord) -> bool {
    !p.started_at.is_empty()
}

/// Merges what a journal read says about one payment into what the soak knew of it. Returns a
/// description when the two are different payments under one reference.
fn merge_payment(tally: &mut HashMap<String, PaymentRecord>, p: PaymentRecord) -> Option<String> {
    let Some(old) = tally.get_mut(&p.merchant_reference) else {
        tally.insert(p.merchant_reference.clone(), p);
        return None;
    };
    let key = |p: &PaymentRecord| {
        (
            p.amount,
            p.cart_reference.clone(),
            p.terminal_id.clone(),
            p.started_at.clone(),
        )
    };
    if has_intent(old) && has_intent(&p) && key(old) != key(&p) {
        return Some(format!(
            "{}: one reference, two payments: {} minor units for {} on {} at {}, and {} for {} on \
             {} at {}",
            p.merchant_reference,
            old.amount,
            old.cart_reference.as_deref().unwrap_or("-"),
            old.terminal_id,
            old.started_at,
            p.amount,
            p.cart_reference.as_deref().unwrap_or("-"),
            p.terminal_id,
            p.started_at
        ));
    }
    // A read from before a damage knew more: an outcome, or the intent's fields.
    if old.outcome.is_some() && p.outcome.is_none() {
        return None;
    }
    let mut p = p;
    if !has_intent(&p) {
        p.amount = old.amount;
        p.currency = std::mem::take(&mut old.currency);
        p.cart_reference = old.cart_reference.take();
        p.terminal_id = std::mem::take(&mut old.terminal_id);
        p.started_at = std::mem::take(&mut old.started_at);
    }
    *old = p;
    None
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
    /// Daemons side by side on the same `kiosk.id`.
    pub kiosks: usize,
    /// Payments started by each kiosk (`A`, `B`), told apart by their carts; `none` for one
    /// known only from a damaged line whose reference the damage garbled (no kiosk started it;
    /// its daemon looks it up and finds nothing).
    pub payments_by_kiosk: BTreeMap<String, u64>,
    /// State directories deleted at a restart.
    pub state_losses: u64,
    /// Journals damaged at a restart, by kind (`bit_flip_newest_intent`, `cut_in_last_line`, …).
    pub state_damages: BTreeMap<String, u64>,
    /// Restarts at which a state fault was due but waited, a payment being unfinished.
    pub state_faults_postponed: u64,
    /// State faults asked for but never made (no restart with every payment final came).
    pub state_faults_not_made: u64,
    /// Session creations whose answer was dropped right after a state fault.
    pub creates_dropped_after_state_fault: u64,
    /// Payments that ended `conflict`: the kiosk refused money it could not prove its own.
    pub conflicts: u64,
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
    /// State losses asked for.
    pub lose_state_asked: usize,
    /// State damages asked for.
    pub damage_state_asked: usize,
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

fn cart_line(amount: u64, cart: &str) -> String {
    format!("{}.{:02};{cart}\n", amount / 100, amount % 100)
}

impl Soak {
    async fn new(options: SoakOptions, base: String, work: PathBuf) -> Result<Soak> {
        let secret = work.join("client_secret");
        std::fs::write(&secret, format!("{}\n", emulator::CLIENT_SECRET))
            .with_context(|| format!("writing {}", secret.display()))?;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
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
            std::fs::write(&config, daemon_config(&base, &secret, &state_dir, terminal))
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

    /// Starts kiosk `k`'s next daemon, deciding whether it gets the crash-after-journal hook;
    /// a restart first makes the state fault due, if any.
    async fn spawn(&mut self, k: usize, next_cart: usize) -> Result<()> {
        if self.kiosks[k].started {
            if !self.kiosks[k].stopped_cleanly {
                let due = self.state_plan.get(self.kill_restarts).copied().flatten();
                self.kill_restarts += 1;
                self.owed.extend(due);
            }
            self.restarts += 1;
            self.state_fault(k).await?;
        }
        self.kiosks[k].started = true;
        self.kiosks[k].stopped_cleanly = false;
        let carts_left = self.options.payments.saturating_sub(next_cart);
        // A payment appends about five records; the hook's append is drawn from those of the
        // carts one kill's share of the run covers, so hook kills spread over the run instead
        // of bunching right after each restart. Another kiosk's armed hook is a kill already
        // spoken for.
        let share = (carts_left / self.kills_left().max(1)).max(1) as u64;
        let armed = self.hooks_armed();
        let hook = (self.kills_left() > armed && carts_left >= 4 && self.rng.bool())
            .then(|| self.rng.u64(1..=(5 * share).max(12)));
        self.generations += 1;
        let generation = self.generations;
        let name = self.kiosks[k].name;
        let mut command = tokio::process::Command::new(
            std::env::current_exe().context("finding the kioskpay executable")?,
        );
        command
            .arg("run")
            .arg("--config")
            .arg(&self.kiosks[k].config)
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
                    } else if line.contains("journal replayed") {
                        Some(LogEvent::Ready)
                    } else {
                        None
                    };
                    if let Some(event) = event {
                        let _ = events.send((generation, event));
                    }
                    let _ = lines_out.send(format!("[{name}{generation}] {line}\n"));
                }
            });
        }
        self.kiosks[k].daemon = Some(Daemon {
            kiosk: k,
            generation,
            child,
            stdin,
            hook,
            killed: false,
            ready: false,
        });
        // Plan the next random kill, leaving room for the armed hooks.
        let reserved = self.hooks_armed();
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
        tracing::debug!(generation, kiosk = name, ?hook, timed_kill = ?self.timed_kill, "daemon started");
        Ok(())
    }

    /// Makes the oldest state fault owed on kiosk `k`, whose daemon is down, unless a payment
    /// in its journal is unfinished (then it waits for a later restart).
    async fn state_fault(&mut self, k: usize) -> Result<()> {
        let Some(&fault) = self.owed.front() else {
            return Ok(());
        };
        // Everything the journal holds goes into the tally before any of it is lost.
        self.kiosks[k].journal_seen = None;
        self.refresh_journal(k);
        let dir = self.kiosks[k].state_dir.clone();
        let path = dir.join(journal::FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let all_final = bytes.is_empty()
            || journal::read_only(&dir).is_ok_and(|r| r.unresolved().next().is_none());
        let damaged = match fault {
            StateFault::Lose => None,
            StateFault::Damage => {
                let kind = DAMAGES[self.state_rng.usize(..DAMAGES.len())];
                damage(&bytes, kind, &mut self.state_rng).map(|d| (kind, d))
            }
        };
        let name = self.kiosks[k].name;
        match (fault, damaged) {
            _ if !all_final => self.postponed += 1,
            (StateFault::Lose, _) => {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("deleting {}", dir.display()))?;
                }
                let kiosk = &mut self.kiosks[k];
                kiosk.journal_seen = None;
                kiosk.damaged = false;
                kiosk.damaged_intents.clear();
                self.losses += 1;
                self.owed.pop_front();
                eprintln!("soak: kiosk {name} lost its state directory (a re-imaged SD card)");
                self.drop_next_create().await?;
            }
            (StateFault::Damage, Some((kind, d))) => {
                std::fs::write(&path, &d.bytes)
                    .with_context(|| format!("damaging {}", path.display()))?;
                let kiosk = &mut self.kiosks[k];
                kiosk.damaged = true;
                kiosk.damaged_intents.extend(d.intent_of);
                *self.damages.entry(kind.name().to_string()).or_insert(0) += 1;
                self.owed.pop_front();
                eprintln!(
                    "soak: kiosk {name}'s journal damaged: {} at byte {}",
                    kind.name(),
                    d.at
                );
                self.drop_next_create().await?;
            }
            // Nothing of that kind to damage yet (an empty journal, no intent).
            (StateFault::Damage, None) => self.postponed += 1,
        }
        Ok(())
    }

    /// Puts a one-shot rule in front of the fault plan that drops the answer to the next
    /// session creation (the session is created), so the kiosk must find it by reference.
    async fn drop_next_create(&mut self) -> Result<()> {
        let report = control(&self.base, "/_emulator/faults").await?;
        self.bank_fault_counts(&report);
        self.plans += 1;
        let mut plan = fault_plan(
            self.options.fault_rate,
            self.options.seed.wrapping_add(self.plans),
        );
        plan.rules.insert(
            0,
            FaultRule {
                route: "POST /v1/sessions-profile".into(),
                kind: FaultKind::DropResponse,
                status: None,
                delay_ms: None,
                probability: None,
                count: Some(1),
                retry_after_s: None,
            },
        );
        control_post(
            &self.base,
            "/_emulator/faults",
            &serde_json::to_string(&plan)?,
        )
        .await?;
        self.drop_armed = true;
        Ok(())
    }

    /// Adds the fault counts of the plan in force to those of the plans before it.
    fn bank_fault_counts(&mut self, report: &Value) {
        let (counts, dropped) = fault_counts_by_kind(report, self.drop_armed);
        for (kind, n) in counts {
            *self.faults_banked.entry(kind).or_insert(0) += n;
        }
        self.creates_dropped += dropped;
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
            match event {
                LogEvent::Recovering => self.recoveries += 1,
                LogEvent::Ready => {
                    for daemon in self.kiosks.iter_mut().filter_map(|k| k.daemon.as_mut()) {
                        if daemon.generation == generation {
                            daemon.ready = true;
                        }
                    }
                }
                LogEvent::Refused => {}
            }
            out.push((generation, event));
        }
        out
    }

    /// Sends `SIGKILL` to kiosk `k`'s daemon and reaps it.
    async fn kill(&mut self, k: usize) -> Result<()> {
        if let Some(daemon) = self.kiosks[k].daemon.as_mut() {
            daemon.killed = true;
            daemon.child.start_kill().context("killing the daemon")?;
        }
        self.reap(k, true).await
    }

    /// If kiosk `k`'s daemon has exited (or, with `wait`, once it has), records how and
    /// forgets it.
    async fn reap(&mut self, k: usize, wait: bool) -> Result<()> {
        let Some(daemon) = self.kiosks[k].daemon.as_mut() else {
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
        if let Some(daemon) = self.kiosks[k].daemon.take() {
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
                "daemon run {} of kiosk {} exited by itself ({status}); see daemon.log",
                daemon.generation, self.kiosks[daemon.kiosk].name
            ));
        }
    }

    /// Re-reads kiosk `k`'s journal if it changed and merges it into the tally.
    fn refresh_journal(&mut self, k: usize) {
        let kiosk = &mut self.kiosks[k];
        let path = kiosk.state_dir.join(journal::FILE_NAME);
        let Ok(meta) = std::fs::metadata(&path) else {
            return;
        };
        let identity = (meta.ino(), meta.len());
        if kiosk.journal_seen == Some(identity) {
            return;
        }
        let Ok(replay) = journal::read_only(&kiosk.state_dir) else {
            return;
        };
        kiosk.journal_seen = Some(identity);
        for p in replay.payments {
            let reference = p.merchant_reference.clone();
            if let Some(two) = merge_payment(&mut self.tally, p) {
                self.reused.entry(reference).or_insert(two);
            }
        }
    }

    /// Whether kiosk `k`'s journal, as last read, has no unfinished payment.
    fn all_final(&self, k: usize) -> bool {
        journal::read_only(&self.kiosks[k].state_dir)
            .map_or(true, |r| r.unresolved().next().is_none())
    }

    /// The payments for `cart` whose outcome has not been taken into account yet.
    fn open_payments(&self, cart: &str) -> Vec<PaymentRecord> {
        self.tally
            .values()
            .filter(|p| p.cart_reference.as_deref() == Some(cart))
            .filter(|p| !self.concluded.contains(&p.merchant_reference))
            .cloned()
            .collect()
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

    /// Stops every daemon with `SIGTERM`.
    async fn stop_daemon(&mut self) {
        for k in 0..self.kiosks.len() {
            self.stop_kiosk(k).await;
        }
        self.drain_logs().await;
        let _ = self.log.flush().await;
    }

    /// Stops kiosk `k`'s daemon with `SIGTERM` (a clean stop, unlike the kills) and reaps it.
    async fn stop_kiosk(&mut self, k: usize) {
        let name = self.kiosks[k].name;
        // A daemon stopped before its SIGTERM handler is installed would die of the signal.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.kiosks[k].daemon.as_ref().is_some_and(|d| !d.ready) && Instant::now() < deadline
        {
            sleep(TICK).await;
            self.drain_logs().await;
        }
        let Some(daemon) = self.kiosks[k].daemon.as_mut() else {
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
            // Its hook fired while it was being stopped: a kill like any other.
            Ok(Ok(status)) if status.signal() == Some(libc::SIGKILL) && daemon.hook.is_some() => {
                self.kills.push(KillKind::Journal);
            }
            Ok(Ok(status)) => self.violations.push(format!(
                "kiosk {name}'s daemon stopped on SIGTERM with {status}"
            )),
            Ok(Err(e)) => self
                .violations
                .push(format!("cannot wait for kiosk {name}'s daemon: {e}")),
            Err(_) => {
                self.violations.push(format!(
                    "kiosk {name}'s daemon did not stop within 15 s of SIGTERM"
                ));
                let _ = daemon.child.kill().await;
            }
        }
        self.kiosks[k].daemon = None;
        self.kiosks[k].stopped_cleanly = true;
    }

    /// The final checks against the emulator's ledger; builds the report.
    async fn check(&mut self) -> SoakReport {
        for k in 0..self.kiosks.len() {
            self.kiosks[k].journal_seen = None;
            self.refresh_journal(k);
            let name = self.kiosks[k].name;
            match journal::read_only(&self.kiosks[k].state_dir) {
                Ok(replay) => {
                    for problem in replay.problems {
                        if !caused_by_soak(&problem, &self.kiosks[k], &self.tally) {
                            self.violations.push(format!(
                                "journal of kiosk {name} reads back with a problem: {problem}"
                            ));
                        }
                    }
                    for p in replay.payments.iter().filter(|p| p.outcome.is_none()) {
                        self.violations.push(format!(
                            "journal of kiosk {name}: {} ({}) is not final (state {})",
                            p.merchant_reference,
                            p.cart_reference.as_deref().unwrap_or("-"),
                            p.state
                        ));
                    }
                }
                Err(e) => self
                    .violations
                    .push(format!("cannot read the journal of kiosk {name}: {e}")),
            }
        }
        for (reference, two) in &self.reused {
            self.violations
                .push(if two.starts_with(reference.as_str()) {
                    two.clone()
                } else {
                    format!("{reference}: {two}")
                });
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
        match faults {
            Ok(report) => self.bank_fault_counts(&report),
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
        let mut payments_by_kiosk = BTreeMap::new();
        for p in self.tally.values() {
            let cart = p.cart_reference.as_deref().unwrap_or("");
            // The longest prefix decides: `SOAK-B-` carts also start with `SOAK-`.
            let kiosk = self
                .kiosks
                .iter()
                .filter(|k| cart.starts_with(k.cart_prefix))
                .max_by_key(|k| k.cart_prefix.len())
                // Known only from a damaged journal line: its cart reference was lost with it.
                .map_or("unknown", |k| k.name);
            *payments_by_kiosk.entry(kiosk.to_string()).or_insert(0) += 1;
        }
        let conflicts = payments
            .get(Outcome::Conflict.as_str())
            .copied()
            .unwrap_or(0);
        let duration_s = self.started.elapsed().as_secs_f64();
        let count = |kind| self.kills.iter().filter(|k| **k == kind).count() as u64;
        SoakReport {
            carts: self.options.payments,
            carts_done: self.carts_done,
            payments,
            payments_total,
            faults: self.faults_banked.clone(),
            kills_after_journal_write: count(KillKind::Journal),
            kills_random: count(KillKind::Random),
            restarts: self.restarts,
            recoveries: self.recoveries,
            refeeds: self.refeeds,
            kiosks: self.kiosks.len(),
            payments_by_kiosk,
            state_losses: self.losses,
            state_damages: self.damages.clone(),
            state_faults_postponed: self.postponed,
            state_faults_not_made: self.owed.len() as u64
                + self
                    .state_plan
                    .iter()
                    .skip(self.kill_restarts)
                    .flatten()
                    .count() as u64,
            creates_dropped_after_state_fault: self.creates_dropped,
            conflicts,
            violations: self.violations.clone(),
            duration_s,
            payments_per_s: if duration_s > 0.0 {
                payments_total as f64 / duration_s
            } else {
                0.0
            },
            fault_rate: self.options.fault_rate,
            kills_asked: self.options.kills,
            lose_state_asked: self.options.lose_state,
            damage_state_asked: self.options.damage_state,
            seed: self.options.seed,
            interrupted: self.interrupted.load(Ordering::SeqCst),
        }
    }
}

/// Whether a journal problem of `kiosk` is what the soak's own doing explains: a torn tail
/// (also left by a kill during an append), corrupt lines and the sequence skip past them after
/// damage, and a missing intent where the soak damaged that intent line (or where the damage
/// garbled a reference into one that names no payment the soak saw begin).
fn caused_by_soak(
    problem: &journal::Problem,
    kiosk: &Kiosk,
    tally: &HashMap<String, PaymentRecord>,
) -> bool {
    match problem.kind {
        ProblemKind::TornTail => true,
        ProblemKind::Corrupt | ProblemKind::SequenceSkipped => kiosk.damaged,
        ProblemKind::MissingIntent => {
            kiosk.damaged
                && missing_intent_reference(&problem.detail).is_some_and(|r| {
                    kiosk.damaged_intents.contains(r) || !tally.get(r).is_some_and(has_intent)
                })
        }
        ProblemKind::UnknownRecord | ProblemKind::Inconsistent => false,
    }
}

/// The daemon's config: fast polling, short call timeout, stdin input, no display.
fn daemon_config(base: &str, secret: &Path, state: &Path, terminal: &str) -> String {
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

/// A control-API POST on the emulator with a JSON body.
async fn control_post(base: &str, path: &str, body: &str) -> Result<()> {
    let url = format!("{base}{path}");
    let body = body.to_string();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        agent
            .post(&url)
            .header("content-type", "application/json")
            .send(&body)
            .with_context(|| format!("POST {url}"))?;
        Ok(())
    })
    .await
    .context("the control call did not run")?
}

/// `GET /_emulator/faults`' fired counts, with `status` split by code using the plan's rules.
/// With `drop_first`, the first rule is the soak's one-shot drop after a state fault: its hits
/// are returned apart, not among the random faults.
fn fault_counts_by_kind(report: &Value, drop_first: bool) -> (BTreeMap<String, u64>, u64) {
    let mut out = BTreeMap::new();
    let rules = report["rules"].as_array().cloned().unwrap_or_default();
    let hits = report["hits"].as_array().cloned().unwrap_or_default();
    let skip = usize::from(drop_first);
    let dropped = if drop_first {
        hits.first().and_then(Value::as_u64).unwrap_or(0)
    } else {
        0
    };
    for (rule, hits) in rules.iter().zip(hits.iter()).skip(skip) {
        let kind = rule["kind"].as_str().unwrap_or("?");
        let key = match rule["status"].as_u64() {
            Some(status) => format!("{kind}_{status}"),
            None => kind.to_string(),
        };
        *out.entry(key).or_insert(0) += hits.as_u64().unwrap_or(0);
    }
    (out, dropped)
}

/// The ledger checks: doubles, captured without `approved`, `approved` without capture or with
/// another payment's transaction, one reference for two payments, a `conflict` over a capture
/// of its own cart, sessions left open.
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
    let session_by_id: HashMap<&str, &Value> = sessions
        .iter()
        .filter_map(|s| Some((s["id"].as_str()?, s)))
        .collect();
    let tx_by_id: HashMap<&str, &Value> = transactions
        .iter()
        .filter_map(|tx| Some((tx["id"].as_str()?, tx)))
        .collect();
    // Every session under one reference must be the same payment (a create whose answer was
    // lost may leave one the kiosk never saw, but with the same cart, amount and terminal).
    let mut by_reference: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for s in sessions {
        by_reference
            .entry(s["merchant_reference"].as_str().unwrap_or(""))
            .or_default()
            .push(s);
    }
    let payment_of = |s: &Value| {
        (
            s["merchant_reference_2"].as_str().map(str::to_string),
            s["amount"].as_u64(),
            s["terminal_id"].as_str().map(str::to_string),
        )
    };
    for (reference, group) in &by_reference {
        let first = payment_of(group[0]);
        if group.iter().any(|s| payment_of(s) != first) {
            let all: Vec<String> = group
                .iter()
                .map(|s| {
                    format!(
                        "{} {} on {}",
                        s["merchant_reference_2"].as_str().unwrap_or("-"),
                        s["amount"],
                        s["terminal_id"].as_str().unwrap_or("-")
                    )
                })
                .collect();
            violations.push(format!(
                "{reference}: one reference, {} payments at Dintero: {}",
                group.len(),
                all.join("; ")
            ));
        }
    }
    let mut finals: Vec<&PaymentRecord> = tally
        .values()
        .filter(|p| matches!(p.outcome, Some(Outcome::Approved | Outcome::Conflict)))
        .collect();
    finals.sort_by(|a, b| a.merchant_reference.cmp(&b.merchant_reference));
    for p in finals {
        let reference = p.merchant_reference.as_str();
        if p.outcome == Some(Outcome::Conflict) {
            // Refusing money is legal; refusing this cart's own captured money is not.
            for tx in transactions.iter().filter(|tx| {
                status_of(tx).is_paid() && tx["merchant_reference"].as_str() == Some(reference)
            }) {
                let cart = tx["session_id"]
                    .as_str()
                    .and_then(|s| cart_of.get(s).copied());
                if cart.is_some() && cart == p.cart_reference.as_deref() {
                    violations.push(format!(
                        "{reference} ({}): ended conflict, but Dintero captured {} for this cart \
                         under this reference (transaction {})",
                        cart.unwrap_or("-"),
                        tx["amount"],
                        tx["id"].as_str().unwrap_or("?")
                    ));
                }
            }
            continue;
        }
        let Some(tx_id) = p.transaction_id.as_deref() else {
            continue;
        };
        let Some(tx) = tx_by_id.get(tx_id) else {
            violations.push(format!(
                "{reference}: approved with transaction {tx_id}, which Dintero does not have"
            ));
            continue;
        };
        let tx_reference = tx["merchant_reference"].as_str().unwrap_or("");
        let tx_amount = tx["amount"].as_u64().unwrap_or(0);
        let terminal = tx["session_id"]
            .as_str()
            .and_then(|s| session_by_id.get(s))
            .and_then(|s| s["terminal_id"].as_str())
            .unwrap_or("");
        if tx_reference != reference
            || tx_amount != p.amount
            || (!p.terminal_id.is_empty() && terminal != p.terminal_id)
        {
            violations.push(format!(
                "{reference}: approved for {} on {} with another payment's money: transaction \
                 {tx_id} is {tx_reference}, {tx_amount} on {terminal}",
                p.amount, p.terminal_id
            ));
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
    row("kiosks on one id", r.kiosks.to_string());
    if r.kiosks > 1 {
        for (kiosk, n) in &r.payments_by_kiosk {
            let label = match kiosk.as_str() {
                "unknown" => "  payments of a damaged intent".to_string(),
                kiosk => format!("  payments of kiosk {kiosk}"),
            };
            row(&label, n.to_string());
        }
    }
    row(
        "state losses",
        format!("{}/{}", r.state_losses, r.lose_state_asked),
    );
    row(
        "state damages",
        format!(
            "{}/{}",
            r.state_damages.values().sum::<u64>(),
            r.damage_state_asked
        ),
    );
    for (kind, n) in &r.state_damages {
        row(&format!("  {kind}"), n.to_string());
    }
    row(
        "  postponed at restarts",
        r.state_faults_postponed.to_string(),
    );
    row("  never made", r.state_faults_not_made.to_string());
    row(
        "  create answers dropped",
        r.creates_dropped_after_state_fault.to_string(),
    );
    row("conflicts", r.conflicts.to_string());
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
        assert_eq!(cart_line(39951, "SOAK-7"), "399.51;SOAK-7\n");
        assert_eq!(cart_line(505, "SOAK-B-0"), "5.05;SOAK-B-0\n");
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

    /// A journal of three lines as the daemon writes them (checksums need not be right here).
    fn journal_bytes() -> Vec<u8> {
        let lines = [
            r#"00000000 {"type":"intent","merchant_reference":"soak-AAAAAA-20260101-000001","amount":100}"#,
            r#"00000000 {"type":"intent","merchant_reference":"soak-AAAAAA-20260101-000002","amount":200}"#,
            r#"00000000 {"type":"final","merchant_reference":"soak-AAAAAA-20260101-000002","outcome":"approved"}"#,
        ];
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    #[test]
    fn lines_and_intents_are_found_in_journal_bytes() {
        assert_eq!(line_spans(b"ab\ncd\n"), vec![0..2, 3..5]);
        assert_eq!(line_spans(b"ab\ncd"), vec![0..2, 3..5]);
        assert_eq!(line_spans(b""), Vec::<Range<usize>>::new());
        let bytes = journal_bytes();
        let spans = line_spans(&bytes);
        assert_eq!(
            intent_reference(&bytes[spans[1].clone()]).as_deref(),
            Some("soak-AAAAAA-20260101-000002")
        );
        assert_eq!(intent_reference(&bytes[spans[2].clone()]), None);
        assert_eq!(intent_reference(b"\xff\xfe"), None);
        assert_eq!(
            intent_reference(br#"{"type":"intent","merchant_reference":"x"#),
            None
        );
    }

    #[test]
    fn a_bit_flip_changes_one_bit_inside_the_chosen_line() {
        let bytes = journal_bytes();
        let spans = line_spans(&bytes);
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let d = damage(&bytes, Damage::FlipNewestIntent, &mut rng).unwrap();
            assert_eq!(d.bytes.len(), bytes.len());
            assert!(spans[1].contains(&d.at), "{seed}: {}", d.at);
            let diff: u32 = d
                .bytes
                .iter()
                .zip(&bytes)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(diff, 1, "{seed}");
            assert_eq!(line_spans(&d.bytes).len(), 3, "no new line: {seed}");
            assert_eq!(d.intent_of.as_deref(), Some("soak-AAAAAA-20260101-000002"));
            let any = damage(&bytes, Damage::FlipAnyLine, &mut rng).unwrap();
            assert!(spans.iter().any(|s| s.contains(&any.at)));
            assert_eq!(line_spans(&any.bytes).len(), 3, "no new line: {seed}");
        }
    }

    #[test]
    fn a_cut_ends_inside_the_chosen_line() {
        let bytes = journal_bytes();
        let spans = line_spans(&bytes);
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let last = damage(&bytes, Damage::CutLastLine, &mut rng).unwrap();
            assert!(
                last.at > spans[2].start && last.at < spans[2].end,
                "{}",
                last.at
            );
            assert_eq!(last.bytes, bytes[..last.at]);
            assert_eq!(last.intent_of, None);
            let intent = damage(&bytes, Damage::CutNewestIntent, &mut rng).unwrap();
            assert!(intent.at > spans[1].start && intent.at < spans[1].end);
            assert_eq!(intent.bytes, bytes[..intent.at]);
            assert_eq!(
                intent.intent_of.as_deref(),
                Some("soak-AAAAAA-20260101-000002")
            );
        }
    }

    #[test]
    fn damage_needs_a_line_of_its_kind() {
        let mut rng = fastrand::Rng::with_seed(1);
        for kind in DAMAGES {
            assert_eq!(damage(b"", kind, &mut rng), None, "{kind:?}");
            assert_eq!(damage(b"x\n", kind, &mut rng), None, "{kind:?}");
        }
        let no_intent = b"00000000 {\"type\":\"final\"}\n";
        assert_eq!(damage(no_intent, Damage::FlipNewestIntent, &mut rng), None);
        assert_eq!(damage(no_intent, Damage::CutNewestIntent, &mut rng), None);
        assert!(damage(no_intent, Damage::CutLastLine, &mut rng).is_some());
    }

    #[test]
    fn the_state_fault_plan_places_each_fault_at_its_own_restart() {
        let mut rng = fastrand::Rng::with_seed(7);
        let plan = state_fault_plan(20, 3, 4, &mut rng);
        assert_eq!(plan.len(), 20);
        let count = |f| plan.iter().filter(|p| **p == Some(f)).count();
        assert_eq!(count(StateFault::Lose), 3);
        assert_eq!(count(StateFault::Damage), 4);
        let again = state_fault_plan(20, 3, 4, &mut fastrand::Rng::with_seed(7));
        assert_eq!(plan, again, "the seed decides");
        assert!(state_fault_plan(0, 0, 0, &mut rng).is_empty());
        assert_eq!(
            state_fault_plan(2, 1, 1, &mut rng).iter().flatten().count(),
            2
        );
    }

    fn intent(reference: &str, amount: u64, cart: &str, started: &str) -> PaymentRecord {
        PaymentRecord {
            cart_reference: Some(cart.into()),
            started_at: started.into(),
            ..record(reference, amount, None)
        }
    }

    #[test]
    fn merging_keeps_what_damage_erased_and_catches_a_reused_reference() {
        let mut tally = HashMap::new();
        let first = intent("r1", 100, "SOAK-1", "2026-01-01T00:00:00Z");
        assert_eq!(merge_payment(&mut tally, first.clone()), None);
        // Read again after the intent line was damaged: amount and cart come from before.
        let mut damaged = record("r1", 0, Some(Outcome::Approved));
        damaged.terminal_id = String::new();
        damaged.cart_reference = None;
        assert_eq!(merge_payment(&mut tally, damaged), None);
        let p = &tally["r1"];
        assert_eq!(p.outcome, Some(Outcome::Approved));
        assert_eq!(
            (p.amount, p.cart_reference.as_deref()),
            (100, Some("SOAK-1"))
        );
        assert_eq!(p.terminal_id, "T12345678-T0001");
        // An unfinished read after a final one does not reopen the payment.
        assert_eq!(merge_payment(&mut tally, first), None);
        assert_eq!(tally["r1"].outcome, Some(Outcome::Approved));
        // Another payment under the same reference, from another kiosk or a lost directory.
        let other = intent("r1", 100, "SOAK-B-2", "2026-01-01T00:01:00Z");
        let found = merge_payment(&mut tally, other).unwrap();
        assert!(found.contains("one reference, two payments"), "{found}");
        assert!(found.contains("SOAK-B-2"), "{found}");
    }

    #[test]
    fn the_soak_accepts_the_problems_its_damage_explains_and_no_others() {
        let problem = |kind, detail: &str| journal::Problem {
            kind,
            line: Some(3),
            detail: detail.into(),
        };
        let mut kiosk = Kiosk {
            name: "A",
            cart_prefix: "SOAK-",
            config: PathBuf::new(),
            state_dir: PathBuf::new(),
            daemon: None,
            started: true,
            stopped_cleanly: false,
            journal_seen: None,
            damaged: false,
            damaged_intents: HashSet::new(),
        };
        let mut tally = HashMap::new();
        tally.insert("r1".into(), intent("r1", 100, "SOAK-1", "x"));
        tally.insert("r2".into(), intent("r2", 200, "SOAK-2", "x"));
        let missing = |r: &str| {
            problem(
                ProblemKind::MissingIntent,
                &format!("no intent for {r}: amount, currency and terminal unknown"),
            )
        };
        let corrupt = problem(ProblemKind::Corrupt, "checksum");
        let skipped = problem(ProblemKind::SequenceSkipped, "gap");
        let torn = problem(ProblemKind::TornTail, "cut");
        // Undamaged: only a torn tail (a kill during an append) is expected.
        assert!(caused_by_soak(&torn, &kiosk, &tally));
        for p in [&corrupt, &skipped, &missing("r1"), &missing("r9")] {
            assert!(!caused_by_soak(p, &kiosk, &tally), "{p}");
        }
        kiosk.damaged = true;
        kiosk.damaged_intents.insert("r1".into());
        assert!(caused_by_soak(&corrupt, &kiosk, &tally));
        assert!(caused_by_soak(&skipped, &kiosk, &tally));
        assert!(caused_by_soak(&missing("r1"), &kiosk, &tally));
        // A garbled reference that names no payment the soak saw begin.
        assert!(caused_by_soak(&missing("r9"), &kiosk, &tally));
        // r2's intent was never damaged: losing it is the kiosk's doing.
        assert!(!caused_by_soak(&missing("r2"), &kiosk, &tally));
        for kind in [ProblemKind::Inconsistent, ProblemKind::UnknownRecord] {
            assert!(!caused_by_soak(&problem(kind, "x"), &kiosk, &tally));
        }
        assert_eq!(missing_intent_reference("something else"), None);
    }

    #[test]
    fn fault_counts_keep_the_one_shot_drop_apart() {
        let report = json!({
            "rules": [
                {"kind": "drop_response", "count": 1},
                {"kind": "status", "status": 500},
                {"kind": "drop_response"}
            ],
            "hits": [1, 4, 2]
        });
        let (counts, dropped) = fault_counts_by_kind(&report, true);
        assert_eq!(dropped, 1);
        assert_eq!(counts["status_500"], 4);
        assert_eq!(counts["drop_response"], 2);
        let (counts, dropped) = fault_counts_by_kind(&report, false);
        assert_eq!((dropped, counts["drop_response"]), (0, 3));
    }

    #[test]
    fn ledger_checks_catch_borrowed_money_shared_references_and_hidden_captures() {
        let ledger = json!({
            "sessions": [
                {"id": "s1", "merchant_reference": "r1", "merchant_reference_2": "SOAK-1",
                 "amount": 100, "terminal_id": "T12345678-T0001",
                 "transaction_id": "t1", "cancelled_at": null},
                {"id": "s2", "merchant_reference": "r1", "merchant_reference_2": "SOAK-B-2",
                 "amount": 100, "terminal_id": "T12345678-T0002",
                 "transaction_id": "t2", "cancelled_at": null},
                {"id": "s3", "merchant_reference": "r3", "merchant_reference_2": "SOAK-3",
                 "amount": 300, "terminal_id": "T12345678-T0001",
                 "transaction_id": "t3", "cancelled_at": null}
            ],
            "transactions": [
                {"id": "t1", "session_id": "s1", "merchant_reference": "r1", "amount": 100,
                 "status": "CAPTURED"},
                {"id": "t2", "session_id": "s2", "merchant_reference": "r1", "amount": 100,
                 "status": "FAILED"},
                {"id": "t3", "session_id": "s3", "merchant_reference": "r3", "amount": 300,
                 "status": "CAPTURED"}
            ]
        });
        let mut tally = HashMap::new();
        // r1 approved with r3's transaction: another payment's money.
        let mut r1 = intent("r1", 100, "SOAK-1", "x");
        r1.outcome = Some(Outcome::Approved);
        r1.transaction_id = Some("t3".into());
        tally.insert("r1".into(), r1);
        // r3's kiosk said conflict while its own cart's money was captured.
        let mut r3 = intent("r3", 300, "SOAK-3", "x");
        r3.outcome = Some(Outcome::Conflict);
        tally.insert("r3".into(), r3);
        let v = ledger_violations(&ledger, &tally);
        let all = v.join("\n");
        assert!(
            all.contains("r1: one reference, 2 payments at Dintero"),
            "{all}"
        );
        assert!(
            all.contains("r1: approved for 100 on T12345678-T0001 with another payment's money"),
            "{all}"
        );
        assert!(
            all.contains("r3 (SOAK-3): ended conflict, but Dintero captured 300"),
            "{all}"
        );

        // The same payments told right: r1 approved with its own t1, r3 approved, no second
        // session under r1.
        let ledger = json!({
            "sessions": [ledger["sessions"][0], ledger["sessions"][2]],
            "transactions": [ledger["transactions"][0], ledger["transactions"][2]]
        });
        tally.get_mut("r1").unwrap().transaction_id = Some("t1".into());
        tally.get_mut("r3").unwrap().outcome = Some(Outcome::Approved);
        assert_eq!(ledger_violations(&ledger, &tally), Vec::<String>::new());
    }
}
