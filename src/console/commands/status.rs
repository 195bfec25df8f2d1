//! `status`: the kiosk at a glance, from the running daemon — its state and payment, the
//! terminal, the API's reachability and round-trip time, the token's age, scanner, display,
//! GPIO, disk, version, uptime, the last error, and each problem now with its short code (the
//! codes the customer display shows; README, "Troubleshooting", says what to check for each).
//!
//! `status --watch` prints a new block every 2 s until ^C. It prints rather than redraws in
//! place: clearing a screen needs the terminal to do as told, and a block per refresh also
//! leaves a history a technician can scroll back through.

use std::time::Duration;

use serde_json::json;

use super::money;
use crate::console::command::{first_word_of, Answer, Job, Spec};
use crate::console::technicians::Action;
use crate::control::protocol::{ConfigState, Status};

/// The family's commands.
pub const COMMANDS: &[Spec] = &[Spec {
    name: "status",
    usage: "status [--watch]",
    about: "the kiosk's state, payment, terminal, API round trip, token, scanner, display, GPIO, disk, last error and problem codes (needs the daemon); --watch repeats it every 2 s until ^C",
    example: "status --watch",
    action: Some(Action::Status),
    complete: |words| first_word_of(words, &["--watch"]),
    run: Some(|job, words| Box::pin(status(job, words))),
}];

/// How often `status --watch` refreshes.
const WATCH_EVERY: Duration = Duration::from_secs(2);

async fn status(job: Job, words: Vec<String>) -> Answer {
    let watch = match words.as_slice() {
        [] => false,
        [flag] if flag == "--watch" => true,
        _ => return Answer::refused("usage: status [--watch] (help status shows an example)"),
    };
    let mut client = match job.daemon().await {
        Ok(client) => client,
        Err(e) => return Answer::failed(e.to_string()),
    };
    if !watch {
        return match client.status().await {
            Ok(status) => Answer::ok(status_text(&status), json!({"ok": true, "status": status})),
            Err(e) => Answer::failed(e.to_string()),
        };
    }
    let mut shown = 0u64;
    loop {
        let status = match client.status().await {
            Ok(status) => status,
            Err(e) => return Answer::failed(e.to_string()),
        };
        shown += 1;
        job.print(format!(
            "--- status {shown} (every {} s; ^C stops) ---\n{}",
            WATCH_EVERY.as_secs(),
            status_text(&status)
        ))
        .await;
        tokio::select! {
            _ = job.cancelled() => {
                return Answer::ok(
                    format!("stopped watching after {shown} refreshes"),
                    json!({"ok": true, "refreshes": shown, "status": status}),
                );
            }
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
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
    let mut text = format!(
        "state        {}\nmaintenance  {}\npayment      {payment}\n",
        status.state,
        if status.maintenance { "on" } else { "off" },
    );
    if let Some(health) = &status.health {
        text.push_str(&health_text(health));
    }
    text.push_str(&config_text(
        &status.config,
        crate::config::rollback::now_unix_ms(),
    ));
    text.push_str(&format!(
        "last error   {last_error}\nuptime       {}\nversion      {}\npayments     {} started, {} finished, {} approved",
        duration(up),
        status.version,
        status.counters.payments_started,
        status.counters.payments_finished,
        status.counters.approved,
    ));
    if let Some(health) = &status.health {
        if health.problems.is_empty() {
            text.push_str("\nproblems     none");
        }
        for problem in &health.problems {
            text.push_str(&format!(
                "\nPROBLEM      {}  {}",
                problem.code, problem.message
            ));
        }
    }
    text
}

fn health_text(h: &crate::control::protocol::Health) -> String {
    let terminal = match (&h.terminal, h.terminal_seen_s) {
        (Some(status), Some(ago)) => format!("{status} (checked {} ago)", duration(ago)),
        _ => "not checked yet".into(),
    };
    let api = match (h.api_reachable, h.api_rtt_ms, h.api_seen_s) {
        (Some(reachable), Some(rtt), Some(ago)) => format!(
            "{}, round trip {rtt} ms ({} ago)",
            if reachable {
                "reachable"
            } else {
                "NOT reachable"
            },
            duration(ago)
        ),
        _ => "no call yet".into(),
    };
    let token = match h.token_age_s {
        Some(age) => format!("fetched {} ago", duration(age)),
        None => "none yet".into(),
    };
    let disk = match h.disk_free_bytes {
        Some(free) => format!("{} MiB free in the state directory", free / (1024 * 1024)),
        None => "unknown (the state directory cannot be read)".into(),
    };
    format!(
        "terminal     {terminal}\napi          {api}\ntoken        {token}\nscanner      {}\ndisplay      {}\ngpio         {}\ndisk         {disk}\n",
        h.scanner, h.display, h.gpio
    )
}

/// The config in force and, above all, an applied edit that rolls back by itself: a technician
/// who looks at `status` after an `apply --confirm-within` must see the clock running.
fn config_text(config: &ConfigState, now_unix_ms: i64) -> String {
    let mut text = if config.file.is_empty() {
        String::new()
    } else {
        format!("config       {}\n", config.file)
    };
    if let Some(deadline) = config.confirm_deadline_unix_ms {
        let left_s = deadline
            .saturating_sub(now_unix_ms)
            .max(0)
            .unsigned_abs()
            .div_ceil(1000);
        text.push_str(&format!(
            "CONFIRM      the applied edit is rolled back in {} unless confirm comes first\n",
            duration(left_s)
        ));
    }
    if let Some(at) = &config.rolled_back_at {
        text.push_str(&format!(
            "ROLLED BACK  an unconfirmed edit was rolled back at {at}\n"
        ));
    }
    if !config.needs_restart.is_empty() {
        text.push_str(&format!(
            "RESTART      {} take effect at the next restart\n",
            config.needs_restart.join(", ")
        ));
    }
    text
}

/// `1h 02m 03s`, `2m 03s` or `3s`.
fn duration(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m {:02}s", s / 3600, s / 60 % 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confirm_countdown_is_shown_in_whole_seconds_rounded_up() {
        let config = ConfigState {
            file: "/etc/kioskpay/kioskpay.toml".into(),
            confirm_deadline_unix_ms: Some(100_500),
            ..ConfigState::default()
        };
        let text = config_text(&config, 10_000);
        assert!(
            text.contains("config       /etc/kioskpay/kioskpay.toml\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "CONFIRM      the applied edit is rolled back in 1m 31s unless confirm comes first"
            ),
            "{text}"
        );
        let late = config_text(&config, 200_000);
        assert!(late.contains("rolled back in 0s"), "{late}");
    }

    #[test]
    fn a_rollback_and_keys_waiting_for_a_restart_are_shown() {
        let config = ConfigState {
            file: "/var/lib/kioskpay/config.previous.toml".into(),
            needs_restart: vec!["console.group".into(), "api.base_url".into()],
            confirm_deadline_unix_ms: None,
            rolled_back_at: Some("2026-12-05T10:00:00Z".into()),
        };
        let text = config_text(&config, 0);
        assert!(!text.contains("CONFIRM"), "{text}");
        assert!(
            text.contains(
                "ROLLED BACK  an unconfirmed edit was rolled back at 2026-12-05T10:00:00Z"
            ),
            "{text}"
        );
        assert!(
            text.contains("RESTART      console.group, api.base_url take effect"),
            "{text}"
        );
    }
}
