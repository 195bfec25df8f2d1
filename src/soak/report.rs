//! What the soak found: the report and its table.

use serde::Serialize;
use std::collections::BTreeMap;

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
