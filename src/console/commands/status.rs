//! `status`: the kiosk at a glance, from the running daemon.

use serde_json::json;

use super::money;
use crate::console::command::{no_words, Answer, Job, Spec};
use crate::console::technicians::Action;
use crate::control::protocol::Status;

/// The family's commands.
pub const COMMANDS: &[Spec] = &[Spec {
    name: "status",
    usage: "status",
    about: "the kiosk's state, the payment running, the last error, uptime, version and counts (needs the daemon)",
    example: "status",
    action: Some(Action::Status),
    complete: no_words,
    run: Some(|job, words| Box::pin(status(job, words))),
}];

async fn status(job: Job, words: Vec<String>) -> Answer {
    if !words.is_empty() {
        return Answer::refused("usage: status (help status shows an example)");
    }
    let status = match job.daemon().await {
        Ok(mut client) => client.status().await,
        Err(e) => Err(e),
    };
    match status {
        Ok(status) => Answer::ok(status_text(&status), json!({"ok": true, "status": status})),
        Err(e) => Answer::failed(e.to_string()),
    }
}

fn status_text(status: &Status) -> String {
    let payment = match &status.payment {
        Some(p) => format!(
            "{} {} ({})",
            p.reference,
            match (p.amount, &p.currency) {
                (Some(amount), Some(currency)) => money(amount, currency),
                _ => "amount not known yet".into(),
            },
            p.state
        ),
        None => "none".into(),
    };
    let last_error = match &status.last_error {
        Some(e) => format!("{} ({})", e.message, e.at),
        None => "none".into(),
    };
    let up = status.uptime_s;
    format!(
        "state        {}\nmaintenance  {}\npayment      {payment}\nlast error   {last_error}\nuptime       {}h {:02}m {:02}s\nversion      {}\npayments     {} started, {} finished, {} approved",
        status.state,
        if status.maintenance { "on" } else { "off" },
        up / 3600,
        up / 60 % 60,
        up % 60,
        status.version,
        status.counters.payments_started,
        status.counters.payments_finished,
        status.counters.approved,
    )
}
