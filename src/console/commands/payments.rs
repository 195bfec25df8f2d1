//! `payments`, `pending` and `payment REF`: what the journal in the state directory says. They
//! read it without the daemon, so they work when it is stopped or cannot start; `payment REF`
//! adds what Dintero says now when the daemon runs (the daemon reads it: the console holds no
//! credentials).

use std::path::Path;

use serde_json::json;

use super::money;
use crate::console::command::{first_word_of, no_words, Answer, Job, Spec};
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
    Spec {
        name: "payment",
        usage: "payment REF|TXN",
        about: "everything the journal knows about one payment (records, outcome, refunds) and, when the daemon runs, what Dintero says now",
        example: "payment kiosk-1-7KQ2FX-20261205-000042",
        action: Some(Action::Payments),
        complete: no_words,
        run: Some(|job, words| Box::pin(payment_command(job, words))),
    },
    // Role service: resolving writes down what Dintero already says and moves no money, and a
    // service technician must be able to unstick a kiosk; the daemon stays the journals' only
    // writer.
    Spec {
        name: "resolve",
        usage: "resolve REF",
        about: "settle what a crash left open for one payment: the daemon reads it from Dintero and writes its outcome, and looks up its open refunds; shows what it will do and asks first",
        example: "resolve kiosk-1-7KQ2FX-20261205-000042",
        action: Some(Action::Payments),
        complete: no_words,
        run: Some(|job, words| Box::pin(resolve_command(job, words))),
    },
    Spec {
        name: "reconcile",
        usage: "reconcile [--since DATE]",
        about: "the journal against Dintero's transactions on the kiosk's terminal: captures the journal does not show as approved, approvals without a capture, authorizations left open (DATE as 2026-12-01; default: everything)",
        example: "reconcile --since 2026-12-01",
        action: Some(Action::Payments),
        complete: |words| first_word_of(words, &["--since"]),
        run: Some(|job, words| Box::pin(reconcile_command(job, words))),
    },
];

/// How long `resolve` waits for the journals to show the result.
const RESOLVE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// A payment named on the command line: one in the journal (by merchant reference or
/// transaction id), or a transaction id the journal does not know.
pub enum Found {
    /// In the journal.
    Journal(Box<crate::journal::PaymentRecord>),
    /// Not in the journal: taken for a Dintero transaction id.
    Transaction(String),
}

impl Found {
    /// The transaction, when one is known.
    pub fn transaction_id(&self) -> Option<String> {
        match self {
            Found::Journal(p) => p.transaction_id.clone(),
            Found::Transaction(id) => Some(id.clone()),
        }
    }

    /// The session, when the journal has it.
    pub fn session_id(&self) -> Option<String> {
        match self {
            Found::Journal(p) => p.session_id.clone(),
            Found::Transaction(_) => None,
        }
    }
}

/// Finds `word` in the journal as a merchant reference or a transaction id; anything else is
/// taken for a transaction id for Dintero to know.
pub fn find_payment(state_dir: &Path, word: &str) -> Result<Found, Answer> {
    let all = read_journal(state_dir)?;
    let known = all
        .iter()
        .rev()
        .find(|p| p.merchant_reference == word)
        .or_else(|| {
            all.iter()
                .rev()
                .find(|p| p.transaction_id.as_deref() == Some(word))
        });
    Ok(match known {
        Some(p) => Found::Journal(Box::new(p.clone())),
        None => Found::Transaction(word.to_string()),
    })
}

async fn payment_command(job: Job, words: Vec<String>) -> Answer {
    let [target] = words.as_slice() else {
        return Answer::refused(
            "usage: payment REF|TXN, e.g. payment kiosk-1-7KQ2FX-20261205-000042",
        );
    };
    let found = match find_payment(&job.paths.state_dir, target) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let refunds = match crate::refund::journal::read_only(&job.paths.state_dir) {
        Ok(replayed) => replayed,
        Err(e) => return Answer::failed(e.to_string()),
    };
    let mut text = Vec::new();
    let journal = match &found {
        Found::Journal(p) => {
            text.push(format!("payment      {}", p.merchant_reference));
            text.push(format!("amount       {}", money(p.amount, &p.currency)));
            text.push(format!(
                "state        {}{}",
                p.state,
                if p.outcome.is_none() {
                    " (pending: no outcome yet)"
                } else {
                    ""
                }
            ));
            text.push(format!("started      {}", p.started_at));
            if let Some(at) = &p.finished_at {
                text.push(format!("finished     {at}"));
            }
            if let Some(at) = &p.reopened_at {
                text.push(format!("reopened     {at}"));
            }
            text.push(format!("terminal     {}", p.terminal_id));
            if let Some(cart) = &p.cart_reference {
                text.push(format!("cart         {cart}"));
            }
            text.push(format!(
                "session      {}",
                p.session_id.as_deref().unwrap_or("-")
            ));
            text.push(format!(
                "transaction  {}{}",
                p.transaction_id.as_deref().unwrap_or("-"),
                p.status
                    .as_deref()
                    .map(|s| format!(" ({s} when it ended)"))
                    .unwrap_or_default()
            ));
            crate::journal::summary_json(p)
        }
        Found::Transaction(id) => {
            text.push(format!(
                "{id} is not in the journal; taken for a Dintero transaction id"
            ));
            serde_json::Value::Null
        }
    };
    let transaction_id = found.transaction_id();
    let mine: Vec<_> = refunds
        .refunds
        .iter()
        .filter(|r| {
            Some(&r.transaction_id) == transaction_id.as_ref() || r.merchant_reference == *target
        })
        .collect();
    for r in &mine {
        let not_done = match r.state {
            crate::refund::RefundState::NotDone => {
                " (not done: no trace at Dintero after a restart; refund again if the customer is owed)"
            }
            _ => "",
        };
        text.push(format!(
            "refund       {}  {}  {}  by {} at {}{}{not_done}",
            r.refund_reference,
            money(r.amount, &r.currency),
            r.state,
            r.technician,
            r.updated_at,
            r.detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default(),
        ));
    }
    let dintero = match &transaction_id {
        None => {
            text.push("dintero      - (no transaction: the terminal never took it)".into());
            None
        }
        Some(id) => match job.daemon().await {
            Ok(mut daemon) => match daemon.payment(id).await {
                Ok(view) => {
                    text.push(format!(
                        "dintero      {}  captured {}  refunded {}  refundable {}  card {}",
                        view.status,
                        money(view.captured, &view.currency),
                        money(view.refunded, &view.currency),
                        money(view.refundable, &view.currency),
                        view.card.as_deref().unwrap_or("-")
                    ));
                    Some(view)
                }
                Err(e) => {
                    text.push(format!("dintero      not read: {e}"));
                    None
                }
            },
            Err(e) => {
                text.push(format!("dintero      not asked: {e}"));
                None
            }
        },
    };
    if matches!(found, Found::Transaction(_)) && dintero.is_none() {
        return Answer::failed(format!(
            "{target} is neither a payment in the journal nor a transaction Dintero could be asked about; payments lists the journal"
        ));
    }
    Answer::ok(
        text.join("\n"),
        json!({"ok": true, "journal": journal, "refunds": mine, "dintero": dintero}),
    )
}

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

/// What is open for `reference`: whether the payment lacks its outcome, and its open refunds.
fn open_for(
    state_dir: &Path,
    reference: &str,
) -> Result<
    (
        crate::journal::PaymentRecord,
        Vec<crate::refund::journal::Refund>,
    ),
    Answer,
> {
    let payment = match find_payment(state_dir, reference)? {
        Found::Journal(p) => *p,
        Found::Transaction(_) => {
            return Err(Answer::refused(format!(
                "{reference} is not a payment in the journal; resolve settles journal records (payments lists them)"
            )))
        }
    };
    let refunds = crate::refund::journal::read_only(state_dir)
        .map_err(|e| Answer::failed(e.to_string()))?
        .of(&payment.merchant_reference)
        .filter(|r| !r.state.is_final())
        .cloned()
        .collect();
    Ok((payment, refunds))
}

async fn resolve_command(job: Job, words: Vec<String>) -> Answer {
    let [target] = words.as_slice() else {
        return Answer::refused("usage: resolve REF, e.g. resolve kiosk-1-7KQ2FX-20261205-000042");
    };
    let (payment, open_refunds) = match open_for(&job.paths.state_dir, target) {
        Ok(open) => open,
        Err(answer) => return answer,
    };
    let reference = payment.merchant_reference.clone();
    if payment.outcome.is_some() && open_refunds.is_empty() {
        return Answer::ok(
            format!(
                "nothing to resolve: payment {reference} is {} and none of its refunds is open",
                payment.state
            ),
            json!({"ok": true, "changed": false, "payment": crate::journal::summary_json(&payment)}),
        );
    }
    let mut daemon = match job.daemon().await {
        Ok(daemon) => daemon,
        Err(e) => {
            return Answer::failed(format!(
                "{e}; the daemon resolves what is open when it starts"
            ))
        }
    };
    if payment.outcome.is_none() {
        match daemon.status().await {
            Ok(status) => match status.payment {
                Some(running) if running.reference == reference => {
                    return Answer::refused(format!(
                        "payment {reference} is being followed by the kiosk now; it gets its outcome by itself"
                    ))
                }
                Some(running) => {
                    return Answer::refused(format!(
                        "payment {} is in flight; resolve {reference} once the kiosk is idle",
                        running.reference
                    ))
                }
                None => {}
            },
            Err(e) => return Answer::failed(e.to_string()),
        }
    }
    let mut plan = Vec::new();
    if let Some(txn) = &payment.transaction_id {
        match daemon.payment(txn).await {
            Ok(view) => plan.push(format!(
                "Dintero shows transaction {txn} as {} (captured {}, refunded {})",
                view.status,
                money(view.captured, &view.currency),
                money(view.refunded, &view.currency)
            )),
            Err(e) => plan.push(format!("Dintero cannot be read now: {e}")),
        }
    }
    if payment.outcome.is_none() {
        plan.push(format!(
            "payment {reference} has no outcome in the journal (state {}): the daemon reads it from Dintero and writes its outcome, as at start-up",
            payment.state
        ));
    }
    for r in &open_refunds {
        plan.push(format!(
            "refund {} of {} is {}: the daemon looks it up; refunded if it shows on the transaction, else not_done (never sent again)",
            r.refund_reference,
            money(r.amount, &r.currency),
            r.state
        ));
    }
    job.print(plan.join("\n")).await;
    if !job.confirm("Resolve it?").await {
        return Answer::refused("resolve not confirmed; nothing was changed");
    }
    let technician = job.login.id.to_string();
    if let Err(e) = daemon.resolve(&reference, &technician).await {
        return Answer::failed(e.to_string());
    }
    let state_dir = job.paths.state_dir.clone();
    let settled = async {
        loop {
            if let Ok((p, open)) = open_for(&state_dir, &reference) {
                if p.outcome.is_some() && open.is_empty() {
                    return (p, open);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    };
    let (after, still_open) = tokio::select! {
        done = tokio::time::timeout(RESOLVE_WAIT, settled) => match done {
            Ok(done) => done,
            Err(_) => match open_for(&state_dir, &reference) {
                Ok(now) => now,
                Err(answer) => return answer,
            },
        },
        _ = job.cancelled() => {
            return Answer::failed(format!(
                "stopped waiting; the daemon goes on: payment {reference} shows the result"
            ));
        }
    };
    let refunds = crate::refund::journal::read_only(&state_dir)
        .map(|r| r.of(&reference).cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    let refund_lines: Vec<String> = refunds
        .iter()
        .map(|r| format!("refund {} is {}", r.refund_reference, r.state))
        .collect();
    let json = json!({
        "ok": after.outcome.is_some() && still_open.is_empty(),
        "changed": true,
        "payment": crate::journal::summary_json(&after),
        "refunds": refunds,
    });
    if after.outcome.is_some() && still_open.is_empty() {
        let mut text = vec![format!("Resolved: payment {reference} is {}", after.state)];
        text.extend(refund_lines);
        Answer::ok(text.join("\n"), json)
    } else {
        Answer {
            json,
            ..Answer::failed(format!(
                "payment {reference} is still open after {} s (Dintero unreachable?); the daemon tries again at its next start; payment {reference} shows where it stands",
                RESOLVE_WAIT.as_secs()
            ))
        }
    }
}

const RECONCILE_USAGE: &str =
    "usage: reconcile [--since DATE], DATE as 2026-12-01, e.g. reconcile --since 2026-12-01";

/// `--since DATE` as the RFC 3339 start of that day (UTC).
fn parse_since(words: &[String]) -> Result<Option<String>, Answer> {
    match words {
        [] => Ok(None),
        [flag, date] if flag == "--since" => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(date, &format)
                .map(|d| Some(format!("{d}T00:00:00Z")))
                .map_err(|_| {
                    Answer::refused(format!("--since {date}: not a date; {RECONCILE_USAGE}"))
                })
        }
        _ => Err(Answer::refused(RECONCILE_USAGE)),
    }
}

/// One finding of `reconcile`.
#[derive(serde::Serialize)]
struct Finding {
    reference: String,
    transaction_id: Option<String>,
    dintero: Option<String>,
    journal: Option<String>,
    amount: u64,
    currency: String,
}

impl Finding {
    fn line(&self, kind: &str) -> String {
        format!(
            "{kind:<22} {}  {}  dintero {}  journal {}  {}",
            self.reference,
            self.transaction_id.as_deref().unwrap_or("-"),
            self.dintero.as_deref().unwrap_or("-"),
            self.journal.as_deref().unwrap_or("-"),
            money(self.amount, &self.currency)
        )
    }
}

async fn reconcile_command(job: Job, words: Vec<String>) -> Answer {
    let since = match parse_since(&words) {
        Ok(since) => since,
        Err(answer) => return answer,
    };
    let journal = match read_journal(&job.paths.state_dir) {
        Ok(all) => all,
        Err(answer) => return answer,
    };
    let mut daemon = match job.daemon().await {
        Ok(daemon) => daemon,
        Err(e) => return Answer::failed(format!("{e}; reconcile needs it to ask Dintero")),
    };
    let (transactions, truncated) = match daemon.transactions(since.as_deref()).await {
        Ok(listed) => listed,
        Err(e) => return Answer::failed(e.to_string()),
    };
    // RFC 3339 UTC times of one format compare as text.
    let in_window = |p: &&crate::journal::PaymentRecord| {
        since.as_deref().is_none_or(|s| p.started_at.as_str() >= s)
    };
    let journal_of = |tx: &crate::refund::PaymentView| {
        journal.iter().rev().find(|p| {
            p.transaction_id.as_deref() == Some(tx.transaction_id.as_str())
                || Some(&p.merchant_reference) == tx.merchant_reference.as_ref()
        })
    };
    let approved = Some(crate::journal::Outcome::Approved);
    let mut captured_not_approved = Vec::new();
    let mut open_authorizations = Vec::new();
    for tx in &transactions {
        let record = journal_of(tx);
        let finding = || Finding {
            reference: tx.merchant_reference.clone().unwrap_or_default(),
            transaction_id: Some(tx.transaction_id.clone()),
            dintero: Some(tx.status.clone()),
            journal: record.map(|p| p.state.clone()),
            amount: tx.amount,
            currency: tx.currency.clone(),
        };
        if tx.captured > 0 && record.is_none_or(|p| p.outcome != approved) {
            captured_not_approved.push(finding());
        }
        if tx.status == "AUTHORIZED" {
            open_authorizations.push(finding());
        }
    }
    let mut approved_not_captured = Vec::new();
    for p in journal
        .iter()
        .filter(in_window)
        .filter(|p| p.outcome == approved)
    {
        let at_dintero = transactions.iter().find(|tx| {
            p.transaction_id.as_deref() == Some(tx.transaction_id.as_str())
                || tx.merchant_reference.as_ref() == Some(&p.merchant_reference)
        });
        if at_dintero.is_none_or(|tx| tx.captured == 0) {
            approved_not_captured.push(Finding {
                reference: p.merchant_reference.clone(),
                transaction_id: p.transaction_id.clone(),
                dintero: at_dintero.map(|tx| tx.status.clone()),
                journal: Some(p.state.clone()),
                amount: p.amount,
                currency: p.currency.clone(),
            });
        }
    }
    let mut text = Vec::new();
    text.extend(
        captured_not_approved
            .iter()
            .map(|f| f.line("captured, not approved")),
    );
    text.extend(
        approved_not_captured
            .iter()
            .map(|f| f.line("approved, no capture")),
    );
    text.extend(
        open_authorizations
            .iter()
            .map(|f| f.line("authorization open")),
    );
    text.push(format!(
        "{} transactions at Dintero{}, {} payments in the journal: {} captured but not approved in the journal, {} approved without a capture, {} authorizations open",
        transactions.len(),
        since.as_deref().map(|s| format!(" since {s}")).unwrap_or_default(),
        journal.iter().filter(in_window).count(),
        captured_not_approved.len(),
        approved_not_captured.len(),
        open_authorizations.len(),
    ));
    if truncated {
        text.push("the list stopped at the daemon's page limit: the oldest transactions were not compared; narrow it with --since".into());
    }
    if !captured_not_approved.is_empty() || !approved_not_captured.is_empty() {
        text.push(
            "payment REF shows one in full; resolve REF settles one the journal left unfinished"
                .into(),
        );
    }
    Answer::ok(
        text.join("\n"),
        json!({
            "ok": true,
            "since": since,
            "transactions": transactions.len(),
            "truncated": truncated,
            "captured_not_approved": captured_not_approved,
            "approved_not_captured": approved_not_captured,
            "open_authorizations": open_authorizations,
        }),
    )
}
