//! `kioskpay journal`: the payments in the journal as a table for a technician, or as JSON for a
//! script, read without taking the daemon's lock.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::config::Config;

/// Prints the journal's payments: a table, or with `json` one JSON array for scripts.
pub fn journal(path: PathBuf, json: bool) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(&path).map_err(|error| crate::config::ConfigError::Read {
            path: path.clone(),
            error,
        })?;
    let config = Config::parse(&text, &path)?;
    let replay = crate::journal::read_only(&config.state.dir)?;
    for problem in &replay.problems {
        eprintln!("journal problem: {problem}");
    }
    if json {
        for p in &replay.payments {
            println!("{}", crate::journal::summary_json(p));
        }
    } else {
        print!("{}", journal_table(&replay.payments));
    }
    Ok(ExitCode::SUCCESS)
}

/// `kioskpay journal` for a technician: amounts in major units (the journal keeps minor units),
/// when each payment started, and a last line that says how many are still unresolved.
fn journal_table(payments: &[crate::journal::PaymentRecord]) -> String {
    use std::fmt::Write;
    let rows: Vec<[String; 7]> = payments
        .iter()
        .map(|p| {
            // A payment whose intent was lost has no currency: its amount cannot be scaled.
            let amount = crate::money::Currency::from_code(&p.currency)
                .map(|c| crate::money::Money::new(p.amount, c).plain())
                .unwrap_or_else(|| "?".into());
            // RFC 3339 to the second: "2026-11-24T08:00:00.123Z" → "2026-11-24 08:00:00".
            let started = p.started_at.get(..19).unwrap_or("-").replace('T', " ");
            let state = match p.outcome {
                // A technician must look: another payment holds this one's reference.
                Some(crate::journal::Outcome::Conflict) => "CONFLICT".to_string(),
                Some(_) => p.state.clone(),
                None => format!("UNRESOLVED:{}", p.state),
            };
            [
                p.merchant_reference.clone(),
                started,
                amount,
                p.currency.clone(),
                state,
                p.session_id.clone().unwrap_or_else(|| "-".into()),
                p.transaction_id.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    // Each column as wide as its widest cell, so that long states
    // (`UNRESOLVED:waiting_for_card`) and kiosk ids do not shift the columns after them.
    let headings = [
        "merchant_reference",
        "started (UTC)",
        "amount",
        "cur",
        "state",
        "session",
        "transaction",
    ];
    let minimum = [28, 20, 12, 4, 17, 32, 0];
    let mut widths = [0usize; 7];
    for (i, width) in widths.iter_mut().enumerate() {
        *width = rows
            .iter()
            .map(|r| r[i].chars().count())
            .chain([headings[i].len(), minimum[i]])
            .max()
            .unwrap_or(0);
    }
    let line = |out: &mut String, cells: [&str; 7]| {
        let [reference, started, amount, currency, state, session, transaction] = cells;
        let _ = writeln!(
            out,
            "{reference:<w0$} {started:<w1$} {amount:>w2$} {currency:<w3$} {state:<w4$} {session:<w5$} {transaction}",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
            w5 = widths[5],
        );
    };
    let mut out = String::new();
    line(&mut out, headings);
    for r in &rows {
        line(&mut out, std::array::from_fn(|i| r[i].as_str()));
    }
    let unresolved = payments.iter().filter(|p| p.outcome.is_none()).count();
    let plural = if payments.len() == 1 { "" } else { "s" };
    let _ = write!(out, "{} payment{plural}", payments.len());
    if unresolved > 0 {
        let _ = write!(
            out,
            ", {unresolved} unresolved: the daemon resolves them with Dintero before it takes a cart"
        );
    }
    let conflicts = payments
        .iter()
        .filter(|p| p.outcome == Some(crate::journal::Outcome::Conflict))
        .count();
    if conflicts > 0 {
        let _ = write!(
            out,
            ", {conflicts} CONFLICT: Dintero holds another payment under the reference; nothing \
             more was charged; look it up with `kioskpay journal --json` and in Dintero's \
             back office, and check that kiosk.id is this kiosk's own"
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(reference: &str, amount: u64, currency: &str) -> crate::journal::PaymentRecord {
        crate::journal::PaymentRecord {
            merchant_reference: reference.into(),
            amount,
            currency: currency.into(),
            cart_reference: None,
            terminal_id: "T12345678-T0001".into(),
            session_id: None,
            transaction_id: None,
            state: "awaiting_pickup".into(),
            outcome: None,
            status: None,
            started_at: "2026-11-24T08:00:00.123456Z".into(),
            finished_at: None,
            reopened_at: None,
        }
    }

    #[test]
    fn the_journal_table_shows_major_units_and_counts_what_is_unresolved() {
        let mut done = payment("kiosk-1-20261124-000001", 39900, "NOK");
        done.outcome = Some(crate::journal::Outcome::Approved);
        done.state = "approved".into();
        let pending = payment("kiosk-1-20261124-000002", 5, "NOK");
        // A payment whose intent line was damaged: amount and currency are unknown.
        let mut lost = payment("kiosk-1-20261124-000003", 0, "");
        lost.started_at.clear();
        let table = journal_table(&[done, pending, lost]);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 5, "{table}");
        assert!(
            rows[1].contains("2026-11-24 08:00:00") && rows[1].contains(" 399.00 NOK  approved "),
            "{table}"
        );
        assert!(
            rows[2].contains(" 0.05 NOK  UNRESOLVED:awaiting_pickup "),
            "{table}"
        );
        assert!(
            rows[3].contains(" - ") && rows[3].contains(" ?      UNRESOLVED:"),
            "{table}"
        );
        assert_eq!(
            rows[4],
            "3 payments, 2 unresolved: the daemon resolves them with Dintero before it takes a cart"
        );
        assert_eq!(journal_table(&[]).lines().last(), Some("0 payments"));

        let mut waiting = payment("kiosk-1-20261124-000004", 100, "NOK");
        waiting.state = "waiting_for_card".into();
        waiting.session_id = Some("T12345678.4vXq2SmPnD8kTfWbE1yLcR".into());
        let table = journal_table(&[waiting, payment("kiosk-1-20261124-000005", 100, "NOK")]);
        let rows: Vec<&str> = table.lines().collect();
        let session_at = |row: &str, text: &str| row.find(text).expect(text);
        assert_eq!(
            session_at(rows[0], "session"),
            session_at(rows[1], "T12345678.4vXq2"),
            "{table}"
        );
        assert_eq!(
            session_at(rows[0], "session"),
            session_at(rows[2], "- "),
            "{table}"
        );
    }

    #[test]
    fn the_journal_table_marks_and_counts_conflicts_for_the_technician() {
        let mut conflict = payment("kiosk-1-7KQ2FX-20261204-000002", 45000, "NOK");
        conflict.outcome = Some(crate::journal::Outcome::Conflict);
        conflict.state = "conflict".into();
        let table = journal_table(&[conflict]);
        let rows: Vec<&str> = table.lines().collect();
        assert!(rows[1].contains(" 450.00 NOK  CONFLICT "), "{table}");
        assert!(
            rows[2].starts_with("1 payment, 1 CONFLICT: Dintero holds another payment"),
            "{table}"
        );
    }
}
