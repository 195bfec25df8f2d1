//! `logs`, `restart` and `factory-reset`: the service manager's side of the kiosk. All three
//! work without the daemon (a daemon that cannot start is what a technician most often came
//! for): the log is the system journal's, read with `journalctl`; a restart is `systemctl`'s.
//!
//! The console runs the two tools it finds on `PATH` and reads their output; it never parses
//! the journal's files itself, so what `logs` shows is exactly what `journalctl -u kioskpay`
//! shows a technician with a shell.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::console::command::{no_words, Answer, Job, Spec};
use crate::console::technicians::Action;

/// The daemon's unit, as the package installs it.
const UNIT: &str = "kioskpay.service";

/// Log lines shown by `logs` without a count, and the most it shows.
const DEFAULT_LINES: usize = 50;
const MAX_LINES: usize = 10_000;

/// How long `restart` waits for the daemon to answer on its control socket again.
const RESTART_WAIT: Duration = Duration::from_secs(60);

/// The config the package installs, for `factory-reset`: carried in the binary, so a kiosk
/// whose `/etc` was edited beyond repair still has it.
const PACKAGED_CONFIG: &str = include_str!("../../../packaging/kioskpay.toml");

/// The family's commands.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "logs",
        usage: "logs [N] [--follow]",
        about: "the daemon's last N log lines from the system journal (default 50); --follow keeps printing new ones until ^C (works without the daemon)",
        example: "logs 100 --follow",
        action: Some(Action::Logs),
        complete: |words| match words {
            [] | [_] => vec!["--follow".into()],
            _ => Vec::new(),
        },
        run: Some(|job, words| Box::pin(logs(job, words))),
    },
    Spec {
        name: "restart",
        usage: "restart",
        about: "restarts the daemon (systemctl restart kioskpay) and waits until it answers again; asks first when a payment is running, which is then resolved at the start (works without the daemon)",
        example: "restart",
        action: Some(Action::Restart),
        complete: no_words,
        run: Some(|job, words| Box::pin(restart(job, words))),
    },
    Spec {
        name: "factory-reset",
        usage: "factory-reset",
        about: "puts the packaged config back, deletes the credentials, the technicians, staged edits and lockouts, and restarts the daemon; keeps the payment journal and the audit log; asks you to type the kiosk's id",
        example: "factory-reset",
        action: Some(Action::FactoryReset),
        complete: no_words,
        run: Some(|job, words| Box::pin(factory_reset(job, words))),
    },
];

/// `logs [N] [--follow]`.
async fn logs(job: Job, words: Vec<String>) -> Answer {
    let usage = "usage: logs [N] [--follow], N a count from 1 to 10000, e.g. logs 100 --follow";
    let mut lines = DEFAULT_LINES;
    let mut follow = false;
    for word in &words {
        match word.as_str() {
            "--follow" | "-f" => follow = true,
            n => match n.parse::<usize>() {
                Ok(n) if (1..=MAX_LINES).contains(&n) => lines = n,
                _ => return Answer::refused(usage),
            },
        }
    }
    let mut command = Command::new(&job.paths.tools.journalctl);
    command
        .args([
            "--unit",
            UNIT,
            "--no-pager",
            "--output",
            "short-iso",
            "--lines",
        ])
        .arg(lines.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if follow {
        command.arg("--follow");
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Answer::failed(
                "journalctl is not installed here: the daemon logs to the system journal under systemd, and to its stderr otherwise",
            )
        }
        Err(e) => return Answer::failed(format!("cannot run journalctl: {e}")),
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Answer::failed("journalctl started without its output pipes");
    };
    let mut out = BufReader::new(stdout).lines();
    let mut shown = Vec::new();
    let cancelled = loop {
        tokio::select! {
            line = out.next_line() => match line {
                Ok(Some(line)) => {
                    if follow {
                        job.print(line.clone()).await;
                    }
                    shown.push(line);
                    if shown.len() > MAX_LINES {
                        shown.remove(0);
                    }
                }
                Ok(None) | Err(_) => break false,
            },
            _ = job.cancelled() => break true,
        }
    };
    if cancelled {
        let _ = child.kill().await;
        return Answer::ok(
            format!("stopped following after {} line(s)", shown.len()),
            json!({"ok": true, "lines": shown.len(), "followed": true}),
        );
    }
    let status = child.wait().await;
    let mut errors = String::new();
    let _ = tokio::io::AsyncReadExt::read_to_string(
        &mut tokio::io::AsyncReadExt::take(stderr, 4096),
        &mut errors,
    )
    .await;
    match status {
        Ok(status) if status.success() => {
            let text = if follow {
                "the journal ended".to_string()
            } else if shown.is_empty() {
                format!("no log lines for {UNIT} in the journal")
            } else {
                shown.join("\n")
            };
            Answer::ok(text, json!({"ok": true, "lines": shown}))
        }
        _ => Answer::failed(format!(
            "journalctl failed: {} (is the journal readable by this user?)",
            first_line(&errors)
        )),
    }
}

/// `restart`.
async fn restart(job: Job, words: Vec<String>) -> Answer {
    if !words.is_empty() {
        return Answer::refused("usage: restart (help restart shows an example)");
    }
    let running = match job.daemon().await {
        Ok(mut client) => client.status().await.ok().and_then(|s| s.payment),
        Err(_) => None,
    };
    if let Some(payment) = running {
        let question = format!(
            "Payment {} is {}: a restart stops following it, and the daemon resolves it with Dintero when it is back.",
            payment.reference, payment.state
        );
        if !job.confirm(&question).await {
            return Answer::refused("restart not confirmed: nothing was done");
        }
    }
    job.print(format!("restarting {UNIT}…")).await;
    if let Err(answer) = systemctl(&job, &["restart", UNIT]).await {
        return answer;
    }
    let socket = job.paths.socket.clone();
    let back = crate::control::client::wait_until_answering(&socket, RESTART_WAIT).await;
    match back {
        Some(status) => Answer::ok(
            format!("{UNIT} restarted; the daemon answers: {}", status.state),
            json!({"ok": true, "state": status.state}),
        ),
        None => Answer::failed(format!(
            "{UNIT} was restarted but its control socket did not answer within {} s: see logs 50",
            RESTART_WAIT.as_secs()
        )),
    }
}

/// Runs `systemctl ARGS`; its first error line when it fails.
async fn systemctl(job: &Job, args: &[&str]) -> Result<(), Answer> {
    let output = Command::new(&job.paths.tools.systemctl)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await;
    match output {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(Answer::failed(format!(
            "systemctl {} failed ({}): {}",
            args.join(" "),
            output.status,
            first_line(&String::from_utf8_lossy(&output.stderr))
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Answer::failed(
            "systemctl is not installed here: restart the daemon by the means that started it",
        )),
        Err(e) => Err(Answer::failed(format!("cannot run systemctl: {e}"))),
    }
}

/// `factory-reset`.
async fn factory_reset(job: Job, words: Vec<String>) -> Answer {
    if !words.is_empty() {
        return Answer::refused("usage: factory-reset (help factory-reset shows an example)");
    }
    let config = &job.paths.config;
    let in_force = std::fs::read_to_string(config).unwrap_or_default();
    let kiosk_id = kiosk_id_of(&in_force).unwrap_or_else(|| "factory-reset".into());
    let doomed = Doomed::of(&job, &in_force);
    job.print(format!(
        "This erases:\n{}\nIt keeps the payment journal and the audit log in {}.",
        doomed.describe(),
        job.paths.state_dir.display()
    ))
    .await;
    let typed = job
        .ask(
            format!("Type the kiosk's id ({kiosk_id}) to erase it all: "),
            crate::console::line::Echo::Visible,
        )
        .await;
    if typed.as_deref().map(str::trim) != Some(kiosk_id.as_str()) {
        return Answer::refused("factory reset not confirmed: nothing was changed");
    }
    if let Err(e) = doomed.erase(config) {
        return Answer::failed(format!(
            "factory reset stopped part way: {e}; run factory-reset again to finish it"
        ));
    }
    job.print(format!("erased; restarting {UNIT}…")).await;
    let restarted = match systemctl(&job, &["restart", UNIT]).await {
        Ok(()) => "restarted",
        Err(answer) => {
            job.print(answer.text).await;
            "not restarted"
        }
    };
    Answer::ok(
        format!(
            "Factory reset done ({UNIT} {restarted}). The console has no technicians now: wake it and type setup to create the first one."
        ),
        json!({"ok": true, "erased": doomed.paths(), "restarted": restarted == "restarted"}),
    )
}

/// What a factory reset removes, found before asking so that the question can list it.
struct Doomed {
    /// Secret files the config in force names, in the config's own directory.
    secrets: Vec<PathBuf>,
    technicians: PathBuf,
    /// Staged config edits and console lockouts in the state directory.
    state_files: Vec<PathBuf>,
    config: PathBuf,
}

impl Doomed {
    fn of(job: &Job, in_force: &str) -> Doomed {
        let config_dir = job
            .paths
            .config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let secrets = secret_files_of(in_force)
            .into_iter()
            // Only the kiosk's own files: a config naming a path elsewhere is not a licence to
            // delete it.
            .filter(|p| p.parent() == Some(config_dir.as_path()) && p.exists())
            .collect();
        let state_files = std::fs::read_dir(&job.paths.state_dir)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                        name.ends_with(".lockout") || name.starts_with("config.")
                    })
                    .collect()
            })
            .unwrap_or_default();
        Doomed {
            secrets,
            technicians: job.paths.technicians.clone(),
            state_files,
            config: job.paths.config.clone(),
        }
    }

    fn paths(&self) -> Vec<String> {
        let mut all = vec![
            self.config.display().to_string(),
            self.technicians.display().to_string(),
        ];
        all.extend(self.secrets.iter().map(|p| p.display().to_string()));
        all.extend(self.state_files.iter().map(|p| p.display().to_string()));
        all
    }

    fn describe(&self) -> String {
        let mut lines = vec![
            format!(
                "  {}: replaced by the packaged config",
                self.config.display()
            ),
            format!("  {}: every technician", self.technicians.display()),
        ];
        for p in &self.secrets {
            lines.push(format!("  {}: a secret (credentials or key)", p.display()));
        }
        for p in &self.state_files {
            lines.push(format!("  {}", p.display()));
        }
        lines.join("\n")
    }

    /// Secrets first, the config last: a reset cut short leaves the old config naming files
    /// that are gone (the daemon says which), never the old credentials under a fresh config.
    fn erase(&self, config: &Path) -> std::io::Result<()> {
        for p in self.secrets.iter().chain(&self.state_files) {
            remove(p)?;
        }
        remove(&self.technicians)?;
        crate::console::write_atomically(config, PACKAGED_CONFIG.as_bytes(), 0o640)
    }
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(std::io::Error::new(
            e.kind(),
            format!("removing {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}

/// `kiosk.id` of a config file, read leniently: a broken config can still be reset.
fn kiosk_id_of(text: &str) -> Option<String> {
    let table = text.parse::<toml::Table>().ok()?;
    Some(table.get("kiosk")?.get("id")?.as_str()?.to_string())
}

/// Every `*_file` value under a key naming a secret or key, read leniently.
fn secret_files_of(text: &str) -> Vec<PathBuf> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for section in table.values().filter_map(toml::Value::as_table) {
        for (key, value) in section {
            let secret = key.ends_with("_file") && (key.contains("secret") || key.contains("key"));
            if let (true, Some(path)) = (secret, value.as_str()) {
                files.push(PathBuf::from(path));
            }
        }
    }
    files
}

fn first_line(text: &str) -> &str {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if line.is_empty() {
        "no message"
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_the_secret_and_key_file_values() {
        let text = "[dintero]\nclient_secret_file = \"/etc/kioskpay/client_secret\"\nclient_id = \"x\"\n[input]\nsigning_key_file = \"/etc/kioskpay/signing.key\"\n[display]\nfont_file = \"/usr/share/f\"\n";
        assert_eq!(
            secret_files_of(text),
            [
                PathBuf::from("/etc/kioskpay/client_secret"),
                PathBuf::from("/etc/kioskpay/signing.key")
            ]
        );
        assert!(secret_files_of("not toml [").is_empty());
    }

    #[test]
    fn the_kiosk_id_is_read_from_a_config_that_does_not_validate() {
        assert_eq!(
            kiosk_id_of("[kiosk]\nid = \"kiosk-7\"\nunknown = 1\n").as_deref(),
            Some("kiosk-7")
        );
        assert_eq!(kiosk_id_of("[kiosk]\n"), None);
    }

    #[test]
    fn the_packaged_config_names_a_kiosk() {
        assert!(kiosk_id_of(PACKAGED_CONFIG).is_some());
    }
}
