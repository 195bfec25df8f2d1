//! `credentials set`, `pin change` and `technician add|remove|list`: who may reach Dintero, and
//! who may log in here.
//!
//! `credentials set` asks for the API client's id (shown) and secret (never echoed), writes the
//! secret file the config names (`dintero.client_secret_file`) atomically at mode 0600, owned
//! as before so that the daemon can still read it, and puts a new client id in the config file.
//! Then it has the daemon ask Dintero for a token with them, as the daemon's own user (which
//! also proves that the daemon may read the new file); without a daemon, the console asks
//! itself. If the API does not accept them, the previous credentials can be put back at once.
//! The running daemon keeps the client it started with until it restarts.
//!
//! `pin change` and `technician add|remove|list` edit the technicians file with the same code as
//! `kioskpay technician` ([`crate::console::technicians`]): the same PIN rules, Argon2id hashing
//! off the async runtime, the file replaced atomically at mode 0600. An administrator cannot
//! remove themselves while logged in, nor the last administrator.
//!
//! Nothing secret is shown, logged or kept but in its file: the secret and the PINs are asked
//! for with [`Echo::Nothing`], they are not in the command line the audit log records, and the
//! answers never repeat them.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::config::{set_key, write_like, write_owned};
use crate::config::{rollback, Config};
use crate::console::command::{first_word_of, Answer, Job, Spec};
use crate::console::line::Echo;
use crate::console::lockout::{Admission, Lockout, LockoutError, SystemClock, MAX_FAILURES};
use crate::console::technicians::{
    hash_pin_async, Action, Pin, PinError, Role, TechnicianId, Technicians,
};
use crate::control::client::ClientError;
use crate::secret::Secret;

/// The family's commands.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "credentials",
        usage: "credentials set",
        about: "asks for the Dintero API client id and secret (the secret is not shown), writes them (the secret file at mode 0600, atomically) and checks them with a token request; offers the previous ones back if the API does not accept them (the daemon uses new ones after a restart)",
        example: "credentials set",
        action: Some(Action::Credentials),
        complete: |words| first_word_of(words, &["set"]),
        run: Some(|job, words| Box::pin(credentials(job, words))),
    },
    Spec {
        name: "pin",
        usage: "pin change",
        about: "changes your own PIN: the current one, then the new one twice (6 or more digits, no trivial pattern; none is shown)",
        example: "pin change",
        action: Some(Action::OwnPin),
        complete: |words| first_word_of(words, &["change"]),
        run: Some(|job, words| Box::pin(pin(job, words))),
    },
    Spec {
        name: "technician",
        usage: "technician add NAME --role service|refund|admin|remove NAME|list",
        about: "the technicians who may log in: add one (their PIN is asked twice, not shown), remove one (not yourself, not the last admin), or list them",
        example: "technician add ola --role service",
        action: Some(Action::Technicians),
        complete: complete_technician,
        run: Some(|job, words| Box::pin(technician(job, words))),
    },
];

const ROLES: &[&str] = &["service", "refund", "admin"];

fn complete_technician(words: &[&str]) -> Vec<String> {
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    match words {
        [] => strings(&["add", "remove", "list"]),
        ["add", _] => strings(&["--role"]),
        ["add", _, "--role"] => strings(ROLES),
        _ => Vec::new(),
    }
}

/// Asks for a line; `None` (^C, the session ending) cancels the command with nothing changed.
async fn ask(job: &Job, prompt: &str, echo: Echo) -> Result<String, Answer> {
    job.ask(prompt, echo)
        .await
        .ok_or_else(|| Answer::refused("cancelled: nothing was changed"))
}

async fn credentials(job: Job, words: Vec<String>) -> Answer {
    if words != ["set"] {
        return Answer::refused("usage: credentials set (help credentials shows an example)");
    }
    credentials_set(&job).await.unwrap_or_else(|answer| answer)
}

/// The credentials as they were, to put back.
struct Previous {
    /// The secret file's content and metadata; `None`: there was none.
    secret: Option<(Vec<u8>, std::fs::Metadata)>,
    /// The files whose client id was changed, with their text before.
    texts: Vec<(PathBuf, String)>,
}

async fn credentials_set(job: &Job) -> Result<Answer, Answer> {
    let path = &job.paths.config;
    let text = std::fs::read_to_string(path).map_err(|e| {
        Answer::failed(format!(
            "cannot read {}: {e}; is --config the daemon's config file?",
            path.display()
        ))
    })?;
    let config = Config::parse(&text, path).map_err(|e| {
        Answer::failed(format!(
            "{e}; fix the file first (config set), it names where the secret goes"
        ))
    })?;
    let secret_file = config.dintero.client_secret_file.clone();
    let current = config.dintero.client_id.clone();
    let id = ask(job, &format!("API client id [{current}]: "), Echo::Visible).await?;
    let id = match id.trim() {
        "" => current.clone(),
        typed => typed.to_string(),
    };
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Answer::refused(
            "a client id has no spaces: copy it from Dintero Backoffice, Settings > API clients; nothing was changed",
        ));
    }
    let secret = ask(job, "API client secret (not shown): ", Echo::Nothing).await?;
    let secret = Secret::new(secret.trim());
    if secret.expose().is_empty() {
        return Err(Answer::refused("no secret typed: nothing was changed"));
    }
    let mut previous = Previous {
        secret: std::fs::read(&secret_file)
            .ok()
            .zip(std::fs::metadata(&secret_file).ok()),
        texts: Vec::new(),
    };
    write_secret(job, &secret_file, &secret)?;
    if id != current {
        previous.texts = write_client_id(job, &id)?;
    }
    let written = format!(
        "written: client id {id}, secret in {} (mode 0600)",
        secret_file.display()
    );
    match check(job).await {
        Ok(said) => Ok(Answer::ok(
            format!("{written}\nthe API accepted them ({said})\nthe daemon uses them after a restart: type restart"),
            json!({"ok": true, "client_id": id, "secret_file": secret_file.display().to_string(), "accepted": true}),
        )),
        Err(why) => {
            job.print(format!("{written}\nthe API did not accept them: {why}"))
                .await;
            if !job.confirm("Put the previous credentials back?").await {
                return Ok(Answer::failed(format!(
                    "the new credentials stay written but were not accepted ({why}); credentials set to try again"
                )));
            }
            put_back(&secret_file, previous)?;
            Ok(Answer::failed(format!(
                "the new credentials were not accepted ({why}); the previous ones are back"
            )))
        }
    }
}

/// Writes the secret file at 0600, owned as the file it replaces, else as the state directory:
/// the daemon's user owns both, and must read it.
fn write_secret(job: &Job, secret_file: &Path, secret: &Secret) -> Result<(), Answer> {
    let owner = std::fs::metadata(secret_file)
        .or_else(|_| std::fs::metadata(&job.paths.state_dir))
        .ok();
    let body = format!("{}\n", secret.expose());
    write_owned(secret_file, body.as_bytes(), 0o600, owner.as_ref()).map_err(|e| {
        Answer::failed(format!(
            "cannot write the secret file {}: {e}; nothing was changed (is its directory writable?)",
            secret_file.display()
        ))
    })
}

/// Puts the new client id in the config file, and in the staged edits if there are any (or
/// applying them would take it back); returns the files changed with their text before.
fn write_client_id(job: &Job, id: &str) -> Result<Vec<(PathBuf, String)>, Answer> {
    let quoted = toml_edit::Value::from(id).to_string();
    let mut changed = Vec::new();
    for file in [
        job.paths.config.clone(),
        job.paths.state_dir.join(rollback::STAGED),
    ] {
        let Ok(old) = std::fs::read_to_string(&file) else {
            continue;
        };
        let new = set_key(&old, "dintero.client_id", &quoted).map_err(Answer::failed)?;
        write_like(
            &file,
            new.as_bytes(),
            std::fs::metadata(&file).ok().as_ref(),
        )
        .map_err(|e| {
            Answer::failed(format!(
                "the secret is written, but the client id could not be: cannot write {}: {e}",
                file.display()
            ))
        })?;
        changed.push((file, old));
    }
    Ok(changed)
}

/// Puts the previous secret file (or none) and client id back.
fn put_back(secret_file: &Path, previous: Previous) -> Result<(), Answer> {
    use std::os::unix::fs::PermissionsExt;
    let mut restored = match &previous.secret {
        Some((bytes, meta)) => write_owned(
            secret_file,
            bytes,
            meta.permissions().mode() & 0o777,
            Some(meta),
        ),
        None => std::fs::remove_file(secret_file),
    };
    for (file, text) in &previous.texts {
        restored = restored.and_then(|()| {
            write_like(file, text.as_bytes(), std::fs::metadata(file).ok().as_ref())
        });
    }
    restored.map_err(|e| {
        Answer::failed(format!(
            "the previous credentials could not be put back: {e}; run credentials set again"
        ))
    })
}

/// A token request with the credentials now written: by the daemon, as its user; by this
/// console when no daemon runs.
async fn check(job: &Job) -> Result<String, String> {
    let asked = match job.daemon().await {
        Ok(mut client) => client.check_credentials().await,
        Err(e) => Err(e),
    };
    match asked {
        Ok(said) => Ok(said),
        Err(ClientError::NotRunning { .. }) => {
            let config = Config::load(&job.paths.config).map_err(|e| e.to_string())?;
            config.dintero.check_credentials().await?;
            Ok(format!(
                "{}: token issued; checked from the console, the daemon is not running",
                config.dintero.api_url
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Asks for a new PIN twice (hidden) and hashes it, or says why not in words the audit log
/// keeps (it masks the word after "PIN").
async fn new_pin(job: &Job, whose: &str) -> Result<crate::console::technicians::PinHash, Answer> {
    let first = ask(job, &format!("New PIN for {whose}: "), Echo::Nothing).await?;
    let pin = Pin::new(first)
        .map_err(|e| Answer::refused(e.to_string()).recorded_as("the new code breaks the rules"))?;
    let again = ask(job, "The same PIN again: ", Echo::Nothing).await?;
    if Pin::entered(again) != pin {
        return Err(
            Answer::refused(PinError::Mismatch.to_string()).recorded_as("the two new codes differ")
        );
    }
    hash_pin_async(pin)
        .await
        .map_err(|e| Answer::failed(e.to_string()))
}

fn load(file: &Path) -> Result<Technicians, Answer> {
    Technicians::load(file).map_err(|e| Answer::failed(e.to_string()))
}

fn save(technicians: &Technicians, file: &Path) -> Result<(), Answer> {
    technicians
        .save(file)
        .map_err(|e| Answer::failed(e.to_string()))
}

async fn pin(job: Job, words: Vec<String>) -> Answer {
    if words != ["change"] {
        return Answer::refused("usage: pin change (help pin shows an example)");
    }
    pin_change(&job).await.unwrap_or_else(|answer| answer)
}

async fn pin_change(job: &Job) -> Result<Answer, Answer> {
    let file = &job.paths.technicians;
    let me = job.login.id.clone();
    let mut lockout = Lockout::load(&job.paths.lockout, SystemClock)
        .map_err(|e| Answer::failed(e.to_string()))?;
    if let refused @ (Admission::Wait(_) | Admission::LockedOut(_)) = lockout.admission() {
        return Err(Answer::refused(LockoutError::Refused(refused).to_string())
            .recorded_as("too soon after a wrong code"));
    }
    let current = ask(job, "Current PIN: ", Echo::Nothing).await?;
    let technicians = load(file)?;
    // Counted like a PIN at login: a stolen session guesses no more than a stranger.
    let login = lockout
        .authenticate(&technicians, me.as_str(), Pin::entered(current))
        .await
        .map_err(|e| Answer::failed(e.to_string()))?;
    if login.is_none() {
        let then = match lockout.admission() {
            Admission::LockedOut(_) => format!(
                "; {} wrong PINs in a row lock this console line: you are logged out",
                MAX_FAILURES
            ),
            Admission::Wait(left) => format!(
                "; wrong PINs count toward the lockout of this line (wait {} s before the next try)",
                left.as_secs().max(1)
            ),
            Admission::Open => String::new(),
        };
        return Err(
            Answer::failed(format!("wrong PIN: nothing was changed{then}"))
                .recorded_as("wrong current code"),
        );
    }
    let hash = new_pin(job, me.as_str()).await?;
    // Read again: another console may have changed the file while the PINs were typed.
    let mut technicians = load(file)?;
    let Some(entry) = technicians.list.iter_mut().find(|t| t.id == me) else {
        return Err(Answer::failed(format!(
            "{me} is no longer in {}: nothing was changed",
            file.display()
        )));
    };
    entry.pin = hash;
    save(&technicians, file)?;
    Ok(Answer::ok(
        "PIN changed: use the new one from the next login",
        json!({"ok": true, "technician": me.as_str(), "pin_changed": true}),
    ))
}

async fn technician(job: Job, words: Vec<String>) -> Answer {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let result = match words.as_slice() {
        ["list"] => list(&job),
        ["add", name, "--role", role] | ["add", "--role", role, name] => {
            match <Role as clap::ValueEnum>::from_str(role, false) {
                Ok(role) => add(&job, name, role).await,
                Err(_) => Err(Answer::refused(format!(
                    "no role {role}: the roles are service, refund and admin"
                ))),
            }
        }
        ["remove", name] => remove(&job, name),
        _ => Err(Answer::refused(
            "usage: technician add NAME --role service|refund|admin, technician remove NAME, or technician list",
        )),
    };
    result.unwrap_or_else(|answer| answer)
}

fn list(job: &Job) -> Result<Answer, Answer> {
    let technicians = load(&job.paths.technicians)?;
    let lines: Vec<String> = technicians
        .list
        .iter()
        .map(|t| format!("{:<16} {:<8} added {}", t.id, t.role.as_str(), t.added))
        .collect();
    let json: Vec<_> = technicians
        .list
        .iter()
        .map(|t| json!({"id": t.id.as_str(), "role": t.role.as_str(), "added": t.added}))
        .collect();
    Ok(Answer::ok(
        lines.join("\n"),
        json!({"ok": true, "technicians": json}),
    ))
}

async fn add(job: &Job, name: &str, role: Role) -> Result<Answer, Answer> {
    let file = &job.paths.technicians;
    let id = TechnicianId::new(name).map_err(|e| Answer::refused(e.to_string()))?;
    if load(file)?.get(id.as_str()).is_some() {
        return Err(Answer::refused(format!(
            "{id} is already a technician: technician remove {id} first to give them a new role"
        )));
    }
    let hash = new_pin(job, id.as_str()).await?;
    let mut technicians = load(file)?;
    technicians
        .add(id.clone(), role, hash)
        .map_err(|e| Answer::refused(e.to_string()))?;
    save(&technicians, file)?;
    Ok(Answer::ok(
        format!(
            "technician {id} added ({}): they log in with login {id}",
            role.as_str()
        ),
        json!({"ok": true, "added": id.as_str(), "role": role.as_str()}),
    ))
}

fn remove(job: &Job, name: &str) -> Result<Answer, Answer> {
    let file = &job.paths.technicians;
    let id = TechnicianId::new(name).map_err(|e| Answer::refused(e.to_string()))?;
    if id == job.login.id {
        return Err(Answer::refused(
            "you cannot remove yourself while logged in: another admin can, or a root shell (kioskpay technician remove)",
        ));
    }
    let mut technicians = load(file)?;
    let admins = technicians
        .list
        .iter()
        .filter(|t| t.role == Role::Admin)
        .count();
    if technicians
        .get(id.as_str())
        .is_some_and(|t| t.role == Role::Admin)
        && admins == 1
    {
        return Err(Answer::refused(format!(
            "{id} is the last admin: add another admin first, or nobody could manage the kiosk from here"
        )));
    }
    technicians
        .remove(&id)
        .map_err(|e| Answer::refused(e.to_string()))?;
    save(&technicians, file)?;
    Ok(Answer::ok(
        format!("technician {id} removed"),
        json!({"ok": true, "removed": id.as_str()}),
    ))
}
