//! The end-of-run checks: the emulator's ledger (the ground truth) against every journal
//! record, and the journal problems the soak's own damage explains.

use crate::dintero::TransactionStatus;
use crate::journal::{self, Outcome, PaymentRecord, ProblemKind};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

use super::control::control;
use super::plan::KillKind;
use super::report::SoakReport;
use super::tally::{has_intent, missing_intent_reference};
use super::{Kiosk, Soak};

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

impl Soak {
    /// The final checks against the emulator's ledger; builds the report.
    pub(super) async fn check(&mut self) -> SoakReport {
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;

    use super::super::tally::tests::{intent, record};
    use super::*;
    use serde_json::json;

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
