//! `config show|get|set|diff|apply|revert` and `confirm`: the daemon's config file, edited from
//! the console.
//!
//! Edits are **staged** before they are applied: `config set KEY VALUE` writes the config file
//! with the edit into `config.staged.toml` in the state directory, so that a dropped line loses
//! nothing and a second console sees the same staged edits. Each `set` validates the whole
//! staged file with the parser `kioskpay check` uses, and refuses a value it does not accept
//! with the same message; a refused `set` changes no file. `set` edits the TOML in place
//! (`toml_edit`): comments, order and layout stay as the installer left them.
//!
//! `config apply` checks the staged file again, keeps the file in force as
//! `config.previous.toml` in the state directory, writes the staged one over the config file
//! atomically (temporary file, fsync, rename, fsync of the directory; same mode and owner) and
//! asks the daemon to reload it: the language, the display, `max_amount` and `[payment]` take
//! effect between payments, and the answer names what waits for a restart. The secret files the
//! file names are judged by that reload, as the daemon's user (root reading a file the service
//! user owns is refused on purpose); a file the daemon cannot load is replaced by the previous
//! one at once, so that it cannot keep the daemon from starting next time. With `--confirm-within SECONDS` the edit is rolled back by itself unless
//! `confirm` comes in time; the daemon keeps that deadline, not this console (see
//! [`crate::config::rollback`] for why and how), so it holds when the session ends, the line
//! drops or this process dies. Every command here first restores the config file after such a
//! rollback, and says so.
//!
//! Secrets never appear: the config file names secret *files*, whose paths are shown; a value of
//! a secret-looking key ([`crate::console::audit::is_secret_key`]) is shown as `***` by `show`,
//! `get` and `diff`.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::config::rollback::{self, Deadline, Pending};
use crate::config::{keys, Config};
use crate::console::audit::is_secret_key;
use crate::console::command::{no_words, Answer, Job, Spec};
use crate::console::technicians::Action;
use crate::control::client::ClientError;
use crate::control::protocol::ConfigState;

/// The family's commands.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "config",
        usage: "config show|get KEY|set KEY VALUE|set KEY=VALUE KEY=VALUE…|diff|apply [--confirm-within SECONDS]|revert",
        about: "the daemon's config file: show it, stage edits checked as kioskpay check does (keys that must agree, such as an account and its terminal, in one set KEY=VALUE KEY=VALUE), see them, apply them with a reload (a payment in flight finishes first), or drop them (secrets shown as ***; apply --confirm-within rolls back by itself unless confirm comes in time)",
        example: "config set payment.poll_interval_ms 500",
        action: Some(Action::Config),
        complete: complete_config,
        run: Some(|job, words| Box::pin(config(job, words))),
    },
    Spec {
        name: "confirm",
        usage: "confirm",
        about: "keeps the edit applied with config apply --confirm-within; without it the previous file comes back at the deadline",
        example: "confirm",
        action: Some(Action::Config),
        complete: no_words,
        run: Some(|job, words| Box::pin(confirm(job, words))),
    },
];

const SUBCOMMANDS: &[&str] = &["show", "get", "set", "diff", "apply", "revert"];

const USAGE: &str = "usage: config show|get KEY|set KEY VALUE|set KEY=VALUE KEY=VALUE…|diff|apply [--confirm-within SECONDS]|revert, e.g. config set payment.poll_interval_ms 500";

/// `KEY=VALUE` words, or `None` when one is not.
fn pairs<'a>(words: &[&'a str]) -> Option<Vec<(&'a str, &'a str)>> {
    words
        .iter()
        .map(|w| w.split_once('=').filter(|(key, _)| !key.is_empty()))
        .collect()
}

fn complete_config(words: &[&str]) -> Vec<String> {
    match words {
        [] => SUBCOMMANDS.iter().map(|s| s.to_string()).collect(),
        ["get" | "set"] => keys::known(),
        ["set", key] => keys::words(key),
        ["apply"] => vec!["--confirm-within".into()],
        _ => Vec::new(),
    }
}

async fn config(job: Job, words: Vec<String>) -> Answer {
    if let Err(answer) = settle(&job).await {
        return answer;
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["show"] => show(&job),
        ["get", key] => get(&job, key),
        ["set", first, ..] if first.contains('=') => match pairs(&words[1..]) {
            Some(pairs) => set(&job, &pairs),
            None => Err(Answer::refused(USAGE)),
        },
        ["set", key, value @ ..] if !value.is_empty() => set(&job, &[(key, &value.join(" "))]),
        ["diff"] => diff(&job),
        ["apply"] => apply(&job, None).await,
        ["apply", "--confirm-within", seconds] => match seconds.parse::<u64>() {
            Ok(s) if (1..=rollback::MAX_CONFIRM_WITHIN.as_secs()).contains(&s) => {
                apply(&job, Some(Duration::from_secs(s))).await
            }
            _ => Err(Answer::refused(format!(
                "--confirm-within takes 1 to {} seconds, e.g. config apply --confirm-within 120",
                rollback::MAX_CONFIRM_WITHIN.as_secs()
            ))),
        },
        ["revert"] => revert(&job),
        _ => Err(Answer::refused(USAGE)),
    };
    result.unwrap_or_else(|answer| answer)
}

/// The state directory's file `name`.
fn state_file(job: &Job, name: &str) -> std::path::PathBuf {
    job.paths.state_dir.join(name)
}

fn read_text(path: &Path) -> Result<String, Answer> {
    std::fs::read_to_string(path).map_err(|e| {
        Answer::failed(format!(
            "cannot read {}: {e}; is --config the daemon's config file?",
            path.display()
        ))
    })
}

/// The staged file's text, if edits are staged.
fn staged(job: &Job) -> Result<Option<String>, Answer> {
    match std::fs::read_to_string(state_file(job, rollback::STAGED)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Answer::failed(format!(
            "cannot read the staged edits {}: {e}",
            state_file(job, rollback::STAGED).display()
        ))),
    }
}

/// After an unconfirmed edit was rolled back, the daemon runs on the previous file until the
/// config file is the previous file again: this puts it back, and tells the technician. A
/// deadline that passed while no daemon ran is rolled back here.
async fn settle(job: &Job) -> Result<(), Answer> {
    let state = &job.paths.state_dir;
    let mut pending = rollback::pending(state).map_err(Answer::failed)?;
    if let Pending::Awaiting(deadline) = &pending {
        let daemon_gone = matches!(job.daemon().await, Err(ClientError::NotRunning { .. }));
        if deadline.remaining().is_zero() && daemon_gone {
            rollback::roll_back(state).map_err(|e| {
                Answer::failed(format!(
                    "cannot mark the unconfirmed edit rolled back in {}: {e}",
                    state.display()
                ))
            })?;
            pending = rollback::pending(state).map_err(Answer::failed)?;
        }
    }
    let Pending::RolledBack(deadline) = pending else {
        return Ok(());
    };
    let previous_path = state_file(job, rollback::PREVIOUS);
    let previous = std::fs::read(&previous_path).map_err(|e| {
        Answer::failed(format!(
            "the unconfirmed edit was rolled back, but the previous file {} cannot be read: {e}; restore {} by hand",
            previous_path.display(),
            job.paths.config.display()
        ))
    })?;
    let config = &job.paths.config;
    write_like(config, &previous, std::fs::metadata(config).ok().as_ref())
        .and_then(|()| std::fs::remove_file(state_file(job, rollback::ROLLED_BACK)))
        .map_err(|e| {
            Answer::failed(format!(
                "the unconfirmed edit was rolled back, but {} cannot be restored: {e}; the daemon runs on {} meanwhile",
                config.display(),
                previous_path.display()
            ))
        })?;
    job.print(format!(
        "The edit applied at {} was not confirmed in time and was rolled back: {} is the previous file again.",
        deadline.applied_at,
        config.display()
    ))
    .await;
    Ok(())
}

/// Writes `bytes` to `path` atomically with the mode, owner and group of `like` (the file it
/// replaces): the daemon reads the config as its group, and a root console must not take that
/// away. Without `like`, root-only reading and the group's (0640).
pub(super) fn write_like(
    path: &Path,
    bytes: &[u8],
    like: Option<&Metadata>,
) -> std::io::Result<()> {
    let mode = like.map_or(0o640, |m| m.permissions().mode() & 0o777);
    write_owned(path, bytes, mode, like)
}

/// Writes `bytes` to `path` atomically with `mode`, owned by the owner and group of `owner`
/// when given.
pub(super) fn write_owned(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    owner: Option<&Metadata>,
) -> std::io::Result<()> {
    crate::console::write_atomically(path, bytes, mode)?;
    if let Some(owner) = owner {
        let now = std::fs::metadata(path)?;
        if (now.uid(), now.gid()) != (owner.uid(), owner.gid()) {
            // Only root gets here (a file is created as its creator), and root may give it
            // away. The daemon reads the file only when asked to, after this.
            std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))?;
        }
    }
    Ok(())
}

/// Whether the value of `key` (dotted) is a secret to mask: a secret-looking key, unless it
/// names the file the secret is in.
fn is_secret(key: &str) -> bool {
    is_secret_key(key) && !key.ends_with("_file")
}

/// The file with every secret value replaced by `***`, comments and layout kept.
fn masked(text: &str) -> String {
    let Ok(mut doc) = text.parse::<toml_edit::DocumentMut>() else {
        // Not TOML: no key can be told from a value, so nothing of it is shown.
        return "(the file is not valid TOML; config set cannot edit it: fix it from a root shell, then kioskpay check)".into();
    };
    mask_table(doc.as_table_mut(), "");
    doc.to_string()
}

fn mask_table(table: &mut toml_edit::Table, prefix: &str) {
    for (key, item) in table.iter_mut() {
        let dotted = format!("{prefix}{}", key.get());
        match item {
            toml_edit::Item::Table(t) => mask_table(t, &format!("{dotted}.")),
            toml_edit::Item::Value(v) if is_secret(&dotted) => {
                let decor = v.decor().clone();
                *v = toml_edit::Value::from("***");
                *v.decor_mut() = decor;
            }
            toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
                let mut table = t.clone().into_table();
                mask_table(&mut table, &format!("{dotted}."));
                *t = table.into_inline_table();
            }
            toml_edit::Item::ArrayOfTables(tables) => {
                for t in tables.iter_mut() {
                    mask_table(t, &format!("{dotted}."));
                }
            }
            _ => {}
        }
    }
}

/// Every value in the file by dotted key, as TOML text, secrets masked.
fn flatten(text: &str) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    let dotted = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&dotted, value, out);
                }
            }
            _ if is_secret(prefix) => {
                out.insert(prefix.to_string(), "\"***\"".into());
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(table) = text.parse::<toml::Table>() {
        walk("", &toml::Value::Table(table), &mut out);
    }
    out
}

/// What changed from `old` to `new`, one line per key.
fn changes(old: &str, new: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let (old, new) = (flatten(old), flatten(new));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| (k.clone(), old.get(k).cloned(), new.get(k).cloned()))
        .collect()
}

fn change_line((key, old, new): &(String, Option<String>, Option<String>)) -> String {
    match (old, new) {
        (Some(old), Some(new)) => format!("  {key}: {old} -> {new}"),
        (None, Some(new)) => format!("+ {key} = {new}   (was not set: the default)"),
        (Some(old), None) => format!("- {key} = {old}   (the default applies)"),
        (None, None) => String::new(),
    }
}

fn change_json((key, old, new): &(String, Option<String>, Option<String>)) -> serde_json::Value {
    json!({"key": key, "in_force": old, "staged": new})
}

/// A line about the confirm deadline, if an applied edit awaits one.
fn deadline_line(job: &Job) -> Option<String> {
    match rollback::pending(&job.paths.state_dir) {
        Ok(Pending::Awaiting(deadline)) => Some(format!(
            "The edit applied at {} is rolled back in {} s unless confirm comes first.",
            deadline.applied_at,
            deadline.remaining().as_secs()
        )),
        _ => None,
    }
}

fn show(job: &Job) -> Result<Answer, Answer> {
    let text = read_text(&job.paths.config)?;
    let mut shown = format!("# {}\n{}", job.paths.config.display(), masked(&text));
    if staged(job)?.is_some() {
        shown.push_str(
            "\nEdits are staged: config diff shows them, config apply puts them in force.",
        );
    }
    if let Some(line) = deadline_line(job) {
        shown.push('\n');
        shown.push_str(&line);
    }
    let values: serde_json::Map<String, serde_json::Value> = flatten(&text)
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect();
    Ok(Answer::ok(
        shown.trim_end().to_string(),
        json!({"ok": true, "file": job.paths.config.display().to_string(), "values": values}),
    ))
}

fn get(job: &Job, key: &str) -> Result<Answer, Answer> {
    let in_force = flatten(&read_text(&job.paths.config)?).remove(key);
    let staged = staged(job)?.and_then(|text| flatten(&text).remove(key));
    let mut text = match &in_force {
        Some(value) => format!("{key} = {value}"),
        None => format!("{key} is not set in the file: the default applies"),
    };
    if staged.is_some() && staged != in_force {
        text.push_str(&format!(
            "\nstaged: {}",
            staged.as_deref().unwrap_or("(removed)")
        ));
    }
    Ok(Answer::ok(
        text,
        json!({"ok": true, "key": key, "value": in_force, "staged": staged}),
    ))
}

/// `text` with `key` (dotted) set to `value`: a TOML value as typed (`500`, `true`,
/// `["gs1", "plain"]`, `"a b"`), else the words as a string (`en`). Comments and layout stay; a
/// value keeps the comment after it.
pub(super) fn set_key(text: &str, key: &str, value: &str) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| {
        format!("the file is not valid TOML ({e}); fix it from a root shell, then kioskpay check")
    })?;
    let parts: Vec<&str> = key.split('.').collect();
    let well_formed = parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if !well_formed {
        return Err(format!(
            "{key:?} is not a key: write SECTION.KEY, e.g. payment.poll_interval_ms (Tab completes)"
        ));
    }
    let new = value
        .parse::<toml_edit::Value>()
        .unwrap_or_else(|_| toml_edit::Value::from(value));
    let (last, sections) = parts.split_last().unwrap_or((&"", &[]));
    let mut table = doc.as_table_mut();
    for (i, section) in sections.iter().enumerate() {
        let item = table
            .entry(section)
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
        table = item.as_table_mut().ok_or_else(|| {
            format!(
                "{} is a value, not a section: config set cannot go inside it",
                parts[..=i].join(".")
            )
        })?;
    }
    match table.get_mut(last) {
        Some(toml_edit::Item::Value(old)) => {
            let decor = old.decor().clone();
            *old = new;
            *old.decor_mut() = decor;
        }
        Some(toml_edit::Item::None) | None => {
            table.insert(last, toml_edit::value(new));
        }
        Some(_) => {
            return Err(format!(
                "{key} is a section, not a value: set its keys one by one"
            ))
        }
    }
    Ok(doc.to_string())
}

/// Stages `edits` together, checked as one file: keys that must agree (an account and its
/// terminal) change in one `config set KEY=VALUE KEY=VALUE`.
fn set(job: &Job, edits: &[(&str, &str)]) -> Result<Answer, Answer> {
    if edits.iter().any(|(key, _)| is_secret(key)) {
        // The parser's refusal would quote the line, value and all, on the screen.
        return Err(Answer::refused(
            "secrets are not kept in the config file: credentials set writes the client secret to the file dintero.client_secret_file names",
        ));
    }
    let in_force = read_text(&job.paths.config)?;
    let mut text = staged(job)?.unwrap_or_else(|| in_force.clone());
    for (key, value) in edits {
        text = set_key(&text, key, value).map_err(Answer::refused)?;
    }
    // The parser `kioskpay check` runs, so the message is the one it would print.
    Config::parse(&text, &job.paths.config).map_err(|e| {
        let message = e.to_string();
        // A refusal about another key than the one set: the two must change together.
        let about_another = edits.len() == 1 && !message.contains(edits[0].0);
        Answer::refused(if about_another {
            format!("{message}; keys that must agree are set in one line, e.g. config set dintero.account_id=T12345678 store.terminal_id=T12345678-T0001")
        } else {
            message
        })
    })?;
    let staged_path = state_file(job, rollback::STAGED);
    let like = std::fs::metadata(&job.paths.config).ok();
    write_like(&staged_path, text.as_bytes(), like.as_ref()).map_err(|e| {
        Answer::failed(format!(
            "cannot stage the edit in {}: {e}; is the state directory writable?",
            staged_path.display()
        ))
    })?;
    let mut flat = flatten(&text);
    let shown: Vec<(String, String)> = edits
        .iter()
        .map(|(key, value)| {
            let value = flat.remove(*key).unwrap_or_else(|| value.to_string());
            (key.to_string(), value)
        })
        .collect();
    let listed: Vec<String> = shown.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    let text_out = format!(
        "staged: {}; config diff shows the staged edits, config apply puts them in force",
        listed.join(", ")
    );
    let json = match shown.as_slice() {
        [(key, value)] => json!({"ok": true, "staged": {"key": key, "value": value}}),
        _ => {
            json!({"ok": true, "staged": shown.iter().map(|(key, value)| json!({"key": key, "value": value})).collect::<Vec<_>>()})
        }
    };
    Ok(Answer::ok(text_out, json))
}

fn diff(job: &Job) -> Result<Answer, Answer> {
    let in_force = read_text(&job.paths.config)?;
    let deadline = deadline_line(job);
    let Some(staged) = staged(job)? else {
        let mut text = "no staged edits: the file in force is the config file".to_string();
        if let Some(line) = &deadline {
            text = format!("{text}\n{line}");
        }
        return Ok(Answer::ok(
            text,
            json!({"ok": true, "changes": [], "confirm": deadline}),
        ));
    };
    let changes = changes(&in_force, &staged);
    let mut lines: Vec<String> = vec![format!(
        "staged edits against {} (apply puts them in force):",
        job.paths.config.display()
    )];
    lines.extend(changes.iter().map(change_line));
    if changes.is_empty() {
        lines = vec![
            "the staged file says the same as the file in force (layout or comments only)".into(),
        ];
    }
    lines.extend(deadline.clone());
    Ok(Answer::ok(
        lines.join("\n"),
        json!({"ok": true, "changes": changes.iter().map(change_json).collect::<Vec<_>>(), "confirm": deadline}),
    ))
}

fn revert(job: &Job) -> Result<Answer, Answer> {
    let path = state_file(job, rollback::STAGED);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(Answer::ok(
            "staged edits dropped; the file in force is unchanged",
            json!({"ok": true, "reverted": true}),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Answer::ok(
            "no staged edits to drop",
            json!({"ok": true, "reverted": false}),
        )),
        Err(e) => Err(Answer::failed(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

async fn apply(job: &Job, within: Option<Duration>) -> Result<Answer, Answer> {
    let state = &job.paths.state_dir;
    if let Pending::Awaiting(deadline) = rollback::pending(state).map_err(Answer::failed)? {
        return Err(Answer::refused(format!(
            "the edit applied at {} awaits confirm ({} s left): type confirm to keep it, or wait for the rollback, before applying more",
            deadline.applied_at,
            deadline.remaining().as_secs()
        )));
    }
    let config = &job.paths.config;
    let in_force = read_text(config)?;
    let Some(staged) = staged(job)? else {
        return Err(Answer::refused(
            "nothing staged: config set KEY VALUE first, e.g. config set payment.poll_interval_ms 500",
        ));
    };
    let changes = changes(&in_force, &staged);
    if staged == in_force {
        let _ = std::fs::remove_file(state_file(job, rollback::STAGED));
        return Ok(Answer::ok(
            "nothing to apply: the staged file is the file in force",
            json!({"ok": true, "applied": false}),
        ));
    }
    // The parser `kioskpay check` runs. The secret files it then reads are judged by the
    // daemon's reload below, as the daemon's user: root reading a file that user owns is
    // refused on purpose (`crate::config`'s secrets rules).
    Config::parse(&staged, config).map_err(|e| Answer::refused(e.to_string()))?;
    let same_dir = |dir: &Path| {
        let real = |d: &Path| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf());
        real(dir) == real(&job.paths.state_dir)
    };
    if within.is_some() && !state_dir_of(&in_force, config).is_some_and(|d| same_dir(&d)) {
        return Err(Answer::refused(format!(
            "the daemon keeps the confirm deadline in the state.dir of {}, not in this console's {}: start the console with that --state-dir, or apply without --confirm-within",
            config.display(),
            job.paths.state_dir.display()
        )));
    }
    let like = std::fs::metadata(config).ok();
    let previous = state_file(job, rollback::PREVIOUS);
    write_like(&previous, in_force.as_bytes(), like.as_ref()).map_err(|e| {
        Answer::failed(format!(
            "cannot keep the file in force as {}: {e}; nothing was applied",
            previous.display()
        ))
    })?;
    let deadline = within.map(Deadline::from_now);
    if let Some(deadline) = &deadline {
        // Before the config file: a crash in between leaves a deadline over an unchanged file,
        // whose rollback changes nothing.
        let record = serde_json::to_vec(deadline).unwrap_or_default();
        crate::console::write_atomically(&state_file(job, rollback::AWAITING), &record, 0o640)
            .map_err(|e| {
                Answer::failed(format!(
                    "cannot record the confirm deadline in {}: {e}; nothing was applied",
                    state.display()
                ))
            })?;
    }
    write_like(config, staged.as_bytes(), like.as_ref()).map_err(|e| {
        let _ = std::fs::remove_file(state_file(job, rollback::AWAITING));
        Answer::failed(format!(
            "cannot write {}: {e}; the file in force is unchanged",
            config.display()
        ))
    })?;
    let _ = std::fs::remove_file(state_file(job, rollback::STAGED));
    let mut lines = vec![format!("written to {}:", config.display())];
    lines.extend(changes.iter().map(change_line));
    let reloaded = match job.daemon().await {
        Ok(mut client) => client.reload().await,
        Err(e) => Err(e),
    };
    let state_json = match &reloaded {
        Ok(state) => {
            lines.push(reload_line(state));
            Some(state.clone())
        }
        Err(ClientError::NotRunning { .. }) => {
            lines.push("the daemon is not running: the edit takes effect at its next start".into());
            if let Err(e) = Config::load_str(&staged, config) {
                lines.push(format!(
                    "note: for this console's user the secret files do not check out ({e}); credentials set writes the API client's secret; kioskpay check --offline, run as the daemon's user at its start, judges them"
                ));
            }
            None
        }
        Err(ClientError::Refused(e)) => {
            // The daemon could not load the file: it must not be left for the next start.
            return Err(put_back(job, &in_force, like.as_ref(), e));
        }
        Err(e) => {
            lines.push(format!("the daemon did not put it in force: {e}"));
            None
        }
    };
    if let Some(within) = within {
        lines.push(format!(
            "Type confirm within {} s to keep it; otherwise the previous file comes back by itself, even if this console is gone.",
            within.as_secs()
        ));
    }
    let json = json!({
        "ok": true,
        "applied": true,
        "changes": changes.iter().map(change_json).collect::<Vec<_>>(),
        "reloaded": state_json.is_some(),
        "config": state_json,
        "confirm_deadline_unix_ms": deadline.map(|d| d.deadline_unix_ms),
    });
    Ok(Answer::ok(lines.join("\n"), json))
}

/// The daemon refused the file just written (`why`): the file in force before goes back, and
/// the deadline with it; the staged edits are gone with the apply, the answer shows them.
fn put_back(job: &Job, in_force: &str, like: Option<&Metadata>, why: &str) -> Answer {
    let _ = std::fs::remove_file(state_file(job, rollback::AWAITING));
    let config = &job.paths.config;
    match write_like(config, in_force.as_bytes(), like) {
        Ok(()) => Answer::failed(format!(
            "the daemon could not load the edited file: {why}; the previous file is back in {} (config set and apply again)",
            config.display()
        )),
        Err(e) => Answer::failed(format!(
            "the daemon could not load the edited file: {why}; and the previous file could not be put back ({e}): it is in {}",
            state_file(job, rollback::PREVIOUS).display()
        )),
    }
}

/// The `state.dir` a config text names (the daemon's state directory).
fn state_dir_of(text: &str, path: &Path) -> Option<std::path::PathBuf> {
    Config::parse(text, path).ok().map(|c| c.state.dir)
}

fn reload_line(state: &ConfigState) -> String {
    if state.needs_restart.is_empty() {
        "the daemon reloaded it: in force now (a payment in flight finishes on the old settings)"
            .into()
    } else {
        format!(
            "the daemon reloaded it; these keep their running values until a restart (systemctl restart kioskpay): {}",
            state.needs_restart.join(", ")
        )
    }
}

async fn confirm(job: Job, words: Vec<String>) -> Answer {
    if !words.is_empty() {
        return Answer::refused("usage: confirm (help confirm shows an example)");
    }
    if let Err(answer) = settle(&job).await {
        return answer;
    }
    let confirmed = match job.daemon().await {
        Ok(mut client) => client.confirm().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match confirmed {
        Ok(()) => Answer::ok(
            "confirmed: the applied edit stays",
            json!({"ok": true, "confirmed": true}),
        ),
        // No daemon keeps the deadline now: the file is the record it would keep.
        Err(ClientError::NotRunning { .. }) => match rollback::confirm(&job.paths.state_dir) {
            Ok(Some(_)) => Answer::ok(
                "confirmed: the applied edit stays (the daemon is not running; it starts on it)",
                json!({"ok": true, "confirmed": true}),
            ),
            Ok(None) => Answer::refused("no applied config edit awaits a confirm"),
            Err(e) => Answer::failed(format!(
                "cannot remove the confirm deadline in {}: {e}",
                job.paths.state_dir.display()
            )),
        },
        Err(e) => Answer::failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# The kiosk.\n[kiosk]\nid = \"kiosk-1\"   # unique per kiosk\n# language = \"nb\"\n\n[payment]\npoll_interval_ms = 250 # fast\n";

    #[test]
    fn set_keeps_comments_and_layout_and_types_values() {
        let text = set_key(FILE, "payment.poll_interval_ms", "500").unwrap();
        assert_eq!(
            text,
            FILE.replace(
                "poll_interval_ms = 250 # fast",
                "poll_interval_ms = 500 # fast"
            )
        );
        // A new key goes to the end of its section's keys, before the comments that follow.
        let text = set_key(FILE, "kiosk.language", "en").unwrap();
        assert_eq!(
            text,
            FILE.replace("# language", "language = \"en\"\n# language")
        );
        let text = set_key(FILE, "display.kind", "\"none\"").unwrap();
        assert!(text.ends_with("[display]\nkind = \"none\"\n"), "{text}");
        let text = set_key(FILE, "input.formats", "[\"gs1\", \"plain\"]").unwrap();
        assert!(text.contains("formats = [\"gs1\", \"plain\"]"), "{text}");
    }

    #[test]
    fn set_refuses_what_is_not_a_key_or_goes_inside_a_value() {
        for (key, want) in [
            ("poll_interval_ms", "not a key"),
            ("payment..x", "not a key"),
            ("kiosk.id.x", "kiosk.id is a value"),
            ("payment", "not a key"),
        ] {
            let e = set_key(FILE, key, "1").unwrap_err();
            assert!(e.contains(want), "{key}: {e}");
        }
        let e = set_key("[kiosk\n", "kiosk.id", "x").unwrap_err();
        assert!(e.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn secret_values_are_masked_and_secret_file_paths_are_not() {
        let text = "[dintero]\nclient_secret_file = \"/etc/kioskpay/client_secret\"\nclient_secret = \"s3cr3t-value\" # never here\n[x]\napi_token = \"tok-123\"\n";
        let shown = masked(text);
        assert!(
            !shown.contains("s3cr3t-value") && !shown.contains("tok-123"),
            "{shown}"
        );
        assert!(
            shown.contains("client_secret = \"***\" # never here"),
            "{shown}"
        );
        assert!(shown.contains("/etc/kioskpay/client_secret"), "{shown}");
        let flat = flatten(text);
        assert_eq!(flat["dintero.client_secret"], "\"***\"");
        assert_eq!(flat["x.api_token"], "\"***\"");
        assert_eq!(
            flat["dintero.client_secret_file"],
            "\"/etc/kioskpay/client_secret\""
        );
    }

    #[test]
    fn changes_name_each_key_with_both_values() {
        let new = set_key(FILE, "payment.poll_interval_ms", "500").unwrap();
        let new = set_key(&new, "kiosk.language", "en").unwrap();
        let lines: Vec<String> = changes(FILE, &new).iter().map(change_line).collect();
        assert_eq!(
            lines,
            vec![
                "+ kiosk.language = \"en\"   (was not set: the default)".to_string(),
                "  payment.poll_interval_ms: 250 -> 500".to_string(),
            ]
        );
    }

    #[test]
    fn completion_offers_subcommands_keys_and_words() {
        assert!(complete_config(&[]).contains(&"apply".to_string()));
        assert!(complete_config(&["set"]).contains(&"payment.poll_interval_ms".to_string()));
        assert_eq!(
            complete_config(&["set", "kiosk.language"]),
            vec!["nb", "en"]
        );
        assert_eq!(complete_config(&["apply"]), vec!["--confirm-within"]);
        assert!(complete_config(&["show", "x"]).is_empty());
    }
}
