//! `terminal status|sync|end-of-day|send-logs|check-update|open-menu`: the kiosk's card terminal
//! at Dintero, through the daemon (which holds the API client and knows the terminal id).
//!
//! - `terminal status`: the terminal's status and why (`status_reason`), its serial, model and
//!   store, and its newest remote operation.
//! - `terminal sync`: asks Dintero to retry a terminal in `ERROR` or `SYNC_ERROR`; any other
//!   status has nothing to retry and Dintero says so (`409 TERMINAL_NOT_RETRYABLE`).
//! - `terminal end-of-day|send-logs|check-update|open-menu`: starts that remote operation and
//!   follows it until it is done, printing each change of its status. ^C stops the waiting
//!   only: the terminal carries on, and `terminal status` shows how it ended. The daemon refuses
//!   an operation while a payment runs (see [`crate::control::desk`]).
//!
//! All of it needs role `service`: none of it moves money. `end-of-day` closes the terminal's
//! batch, which a terminal does by itself every night anyway.

use std::time::Duration;

use serde_json::json;

use crate::console::command::{first_word_of, Answer, Job, Spec};
use crate::console::technicians::Action;
use crate::control::client::Client;
use crate::control::protocol::TerminalReport;
use crate::dintero::{OperationKind, TerminalOperation};

/// The family's commands.
pub const COMMANDS: &[Spec] = &[Spec {
    name: "terminal",
    usage: "terminal status|sync|end-of-day|send-logs|check-update|open-menu",
    about: "the card terminal at Dintero: its status, a sync of a terminal in ERROR, or a remote operation followed until done (needs the daemon)",
    example: "terminal end-of-day",
    action: Some(Action::Status),
    complete: |words| first_word_of(words, SUBCOMMANDS),
    run: Some(|job, words| Box::pin(terminal(job, words))),
}];

const SUBCOMMANDS: &[&str] = &[
    "status",
    "sync",
    "end-of-day",
    "send-logs",
    "check-update",
    "open-menu",
];

/// How often a running operation is asked about. Dintero gives no figure; once a second keeps
/// the technician informed without hammering the API.
const POLL: Duration = Duration::from_secs(1);

/// How long an operation is followed before the console hands the line back. An update can
/// take a while; the operation goes on after that, and `terminal status` shows how it ended.
const FOLLOW_AT_MOST: Duration = Duration::from_secs(15 * 60);

async fn terminal(job: Job, words: Vec<String>) -> Answer {
    let sub = match words.as_slice() {
        [sub] => sub.as_str(),
        _ => {
            return Answer::refused(format!(
                "usage: terminal {} (help terminal shows an example)",
                SUBCOMMANDS.join("|")
            ))
        }
    };
    let mut daemon = match job.daemon().await {
        Ok(client) => client,
        Err(e) => return Answer::failed(e.to_string()),
    };
    match sub {
        "status" => match daemon.terminal().await {
            Ok(report) => Answer::ok(
                report_text(&report),
                json!({"ok": true, "terminal": report}),
            ),
            Err(e) => Answer::failed(e.to_string()),
        },
        "sync" => match daemon.terminal_sync().await {
            Ok(report) => Answer::ok(
                format!("sync asked for\n{}", report_text(&report)),
                json!({"ok": true, "terminal": report}),
            ),
            Err(e) => Answer::failed(e.to_string()),
        },
        other => {
            let Some(kind) = OperationKind::parse(&other.replace('-', "_")) else {
                return Answer::refused(format!(
                    "terminal {other}: not a subcommand; use one of {}",
                    SUBCOMMANDS.join(", ")
                ));
            };
            operation(&job, &mut daemon, kind).await
        }
    }
}

/// Starts `kind` and follows it until it is final, ^C, or [`FOLLOW_AT_MOST`].
async fn operation(job: &Job, daemon: &mut Client, kind: OperationKind) -> Answer {
    let key = format!("kioskpay-console-{:016x}", fastrand::u64(..));
    let started = match daemon.terminal_operation(kind.as_str(), &key).await {
        Ok(op) => op,
        Err(e) => return Answer::failed(e.to_string()),
    };
    job.print(format!(
        "{} {} on terminal {}: {}",
        started.operation,
        started.id,
        started.terminal_id,
        started.status.as_str()
    ))
    .await;
    let mut last = started.clone();
    let deadline = tokio::time::Instant::now() + FOLLOW_AT_MOST;
    while !last.status.is_final() {
        tokio::select! {
            _ = job.cancelled() => {
                return Answer::ok(
                    format!("stopped waiting; {} {} goes on on the terminal ({} when last seen); terminal status shows how it ends", last.operation, last.id, last.status.as_str()),
                    json!({"ok": true, "operation": last, "waiting": "stopped"}),
                );
            }
            _ = tokio::time::sleep_until(deadline) => {
                return Answer::failed(format!(
                    "{} {} is still {} after {} minutes; it goes on on the terminal; terminal status shows how it ends",
                    last.operation, last.id, last.status.as_str(), FOLLOW_AT_MOST.as_secs() / 60
                ));
            }
            _ = tokio::time::sleep(POLL) => {}
        }
        let now = match daemon.terminal_operations().await {
            Ok(ops) => ops.into_iter().find(|o| o.id == started.id),
            Err(e) => {
                job.print(format!(
                    "could not ask about the operation ({e}); asking again"
                ))
                .await;
                continue;
            }
        };
        let Some(now) = now else {
            return Answer::failed(format!(
                "Dintero no longer lists operation {}; terminal status shows the terminal",
                started.id
            ));
        };
        if now.status != last.status {
            job.print(format!(
                "{} {}: {}",
                now.operation,
                now.id,
                now.status.as_str()
            ))
            .await;
        }
        last = now;
    }
    outcome(last)
}

fn outcome(op: TerminalOperation) -> Answer {
    let text = format!(
        "{} {} on terminal {}: {}",
        op.operation,
        op.id,
        op.terminal_id,
        op.status.as_str()
    );
    if op.status == crate::dintero::OperationStatus::Completed {
        Answer::ok(text, json!({"ok": true, "operation": op}))
    } else {
        Answer::failed(format!(
            "{text}; the terminal could not do it: see its own screen, or try again"
        ))
    }
}

/// The report, one fact a line.
pub(super) fn report_text(report: &TerminalReport) -> String {
    let t = &report.terminal.terminal;
    let dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    let last = match &report.last_operation {
        Some(op) => format!(
            "{} {} {}{}",
            op.operation,
            op.id,
            op.status.as_str(),
            op.created_at
                .as_deref()
                .map(|at| format!(" (asked {at})"))
                .unwrap_or_default()
        ),
        None => "none".into(),
    };
    format!(
        "terminal     {} {}\nreason       {}\nserial       {}\nmodel        {}\nstore        {}\nlast op      {last}",
        t.terminal_id,
        t.status.as_str(),
        dash(report.terminal.status_reason.as_deref()),
        dash(t.device_serial_number.as_deref()),
        dash(t.device_model.as_deref()),
        dash(t.store_id.as_deref()),
    )
}
