//! `payments` and `pending`: what the journal in the state directory says. They read it
//! without the daemon, so they work when it is stopped or cannot start.

use std::path::Path;

use serde_json::json;

use super::money;
use crate::console::command::{no_words, Answer, Job, Spec};
use crate::console::technicians::Action;

/// Payments listed by `payments` without a count.
const DEFAULT_PAYMENTS: usize = 10;

/// The family's commands.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "payments",
        usage: "payments [N]",
        about: "the last N payments in the journal, newest last (default 10; works without the daemon)",
        example: "payments 20",
        action: Some(Action::Payments),
        complete: no_words,
        run: Some(|job, words| Box::pin(payments_command(job, words))),
    },
    Spec {
        name: "pending",
        usage: "pending",
        about: "payments in the journal without an outcome yet; the daemon resolves them with Dintero at its next start (works without the daemon)",
        example: "pending",
        action: Some(Action::Payments),
        complete: no_words,
        run: Some(|job, words| Box::pin(pending_command(job, words))),
    },
];

async fn payments_command(job: Job, words: Vec<String>) -> Answer {
    let n = match words.as_slice() {
        [] => DEFAULT_PAYMENTS,
        [n] => match n.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return Answer::refused("usage: payments [N], N a count from 1, e.g. payments 20"),
        },
        _ => return Answer::refused("usage: payments [N], N a count from 1, e.g. payments 20"),
    };
    payments(&job.paths.state_dir, n)
}

async fn pending_command(job: Job, words: Vec<String>) -> Answer {
    if !words.is_empty() {
        return Answer::refused("usage: pending (help pending shows an example)");
    }
    pending(&job.paths.state_dir)
}

fn read_journal(state_dir: &Path) -> Result<Vec<crate::journal::PaymentRecord>, Answer> {
    match crate::journal::read_only(state_dir) {
        Ok(replay) => Ok(replay.payments),
        Err(crate::journal::JournalError::Missing { .. }) => Ok(Vec::new()),
        Err(e) => Err(Answer::failed(e.to_string())),
    }
}

fn payment_line(p: &crate::journal::PaymentRecord) -> String {
    format!(
        "{}  {:>14}  {:<16} {}",
        p.merchant_reference,
        money(p.amount, &p.currency),
        p.state,
        p.started_at
    )
}

fn payments(state_dir: &Path, n: usize) -> Answer {
    let all = match read_journal(state_dir) {
        Ok(all) => all,
        Err(answer) => return answer,
    };
    let shown = &all[all.len().saturating_sub(n)..];
    let text = if shown.is_empty() {
        format!("no payments in the journal in {}", state_dir.display())
    } else {
        shown
            .iter()
            .map(payment_line)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let json: Vec<_> = shown.iter().map(crate::journal::summary_json).collect();
    Answer::ok(text, json!({"ok": true, "payments": json}))
}

fn pending(state_dir: &Path) -> Answer {
    let all = match read_journal(state_dir) {
        Ok(all) => all,
        Err(answer) => return answer,
    };
    let open: Vec<_> = all.iter().filter(|p| p.outcome.is_none()).collect();
    let text = if open.is_empty() {
        "no pending payments: every payment in the journal has its outcome".to_string()
    } else {
        let mut text: Vec<String> = open.iter().map(|p| payment_line(p)).collect();
        text.push(format!(
            "{} pending; the daemon resolves them with Dintero before it takes a cart (systemctl restart kioskpay if it is not running)",
            open.len()
        ));
        text.join("\n")
    };
    let json: Vec<_> = open
        .iter()
        .map(|p| crate::journal::summary_json(p))
        .collect();
    Answer::ok(text, json!({"ok": true, "pending": json}))
}
