//! The seam between the session and the commands: what a command is told, what it may do while
//! it runs, and what it answers.
//!
//! A command runs as a **job**: a task of its own, so that a long one (`status --watch`,
//! `logs --follow`, a refund waiting for the customer's card, a terminal operation polled until
//! it is done) neither freezes the line nor keeps live events from being shown. While it runs it
//! may print progress ([`Job::print`]) and ask the technician for a line, a hidden secret or a
//! typed confirmation ([`Job::ask`], [`Job::confirm`]); ^C at the console cancels it
//! ([`Job::cancelled`]), and so does an idle logout or the line closing. When it ends, its
//! [`Answer`] is written to the audit log and then shown, like every other command's.
//!
//! The commands live in [`super::commands`], one file per family, each a table of [`Spec`]s.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::audit::Outcome;
use super::line::Echo;
use super::technicians::{Action, Login};
use crate::control::client::{Client, ClientError};

/// What a command answered: text for a person, JSON for a script, and the audit's result.
pub struct Answer {
    /// Shown without `--json`.
    pub text: String,
    /// Shown with `--json`: one object, `"ok"` first.
    pub json: serde_json::Value,
    /// What the audit log records.
    pub outcome: Outcome,
}

impl Answer {
    /// The command did what was asked.
    pub fn ok(text: impl Into<String>, json: serde_json::Value) -> Answer {
        Answer {
            text: text.into(),
            json,
            outcome: Outcome::Ok,
        }
    }

    /// The command was tried and did not succeed: `message` says why and what to do.
    pub fn failed(message: impl Into<String>) -> Answer {
        let message = message.into();
        Answer {
            json: json!({"ok": false, "error": message}),
            outcome: Outcome::Failed(message.clone()),
            text: message,
        }
    }

    /// The command was not tried (a usage error, a role that may not, a confirmation not
    /// given): `message` says why.
    pub fn refused(message: impl Into<String>) -> Answer {
        let message = message.into();
        Answer {
            json: json!({"ok": false, "error": message}),
            outcome: Outcome::Refused(message.clone()),
            text: message,
        }
    }

    /// Records `reason` in the audit log instead of the text shown. The audit log masks the
    /// word after "PIN", so a message about PINs is recorded in words that survive the mask.
    pub fn recorded_as(mut self, reason: &str) -> Answer {
        self.outcome = match self.outcome {
            Outcome::Ok => Outcome::Ok,
            Outcome::Failed(_) => Outcome::Failed(reason.into()),
            Outcome::Refused(_) => Outcome::Refused(reason.into()),
        };
        self
    }
}

/// What a console knows that a command may need: where things are.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The state directory: journal, audit log, lockout files.
    pub state_dir: PathBuf,
    /// The technicians file.
    pub technicians: PathBuf,
    /// This console line's wrong-PIN count ([`super::lockout`]): a wrong current PIN at
    /// `pin change` counts like one at `login`, or a stolen session could guess without limit.
    pub lockout: PathBuf,
    /// The daemon's control socket.
    pub socket: PathBuf,
    /// The daemon's config file.
    pub config: PathBuf,
    /// The service manager's tools.
    pub tools: ServiceTools,
}

/// The programs `logs`, `restart` and `factory-reset` run: `journalctl` and `systemctl`, found
/// on `PATH` unless a test names stand-ins.
#[derive(Clone, Debug)]
pub struct ServiceTools {
    /// Reads the system journal.
    pub journalctl: PathBuf,
    /// Restarts the daemon.
    pub systemctl: PathBuf,
}

impl Default for ServiceTools {
    fn default() -> ServiceTools {
        ServiceTools {
            journalctl: "journalctl".into(),
            systemctl: "systemctl".into(),
        }
    }
}

/// A command's running future.
pub type Running = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// One command: what `help` says about it, who may run it, how its words complete and what it
/// does.
pub struct Spec {
    /// The first word.
    pub name: &'static str,
    /// Its words, as `help` lists them.
    pub usage: &'static str,
    /// What it does, for `help COMMAND` (the first clause is the list's summary).
    pub about: &'static str,
    /// One line to copy.
    pub example: &'static str,
    /// The role action it needs; `None`: available before login (`help`, `login`).
    pub action: Option<Action>,
    /// Candidates for the next word, given the words after the name typed so far.
    pub complete: fn(&[&str]) -> Vec<String>,
    /// Starts the command with the words after its name. `None` for the session's own
    /// commands (`help`, `login`, `logout`, `maintenance`), which change the session itself.
    pub run: Option<fn(Job, Vec<String>) -> Running>,
}

/// Completes nothing: for commands without arguments or with free-form ones.
pub fn no_words(_: &[&str]) -> Vec<String> {
    Vec::new()
}

/// Completes `choices` as the first word after the name, and nothing after it.
pub fn first_word_of(words: &[&str], choices: &[&str]) -> Vec<String> {
    match words {
        [] => choices.iter().map(|c| c.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// What a job asks the session to do.
pub enum Request {
    /// Print a line above the prompt (or alone when none is shown).
    Print(String),
    /// Show `prompt`, read one line echoed as `echo`, and send it back; `None` when the
    /// technician pressed ^C or the session ended.
    Ask {
        /// The prompt, e.g. `Refund 399,00 NOK? Type yes: `.
        prompt: String,
        /// Visible, or hidden for a secret.
        echo: Echo,
        /// Where the line goes.
        reply: oneshot::Sender<Option<String>>,
    },
}

/// A running command's handle on its session.
#[derive(Clone)]
pub struct Job {
    /// Where things are.
    pub paths: Arc<Paths>,
    /// Who runs it.
    pub login: Login,
    /// Whether the console answers in JSON (a script is on the line).
    pub json: bool,
    requests: mpsc::Sender<Request>,
    cancel: CancellationToken,
}

impl Job {
    /// A job for `login`, with the channel its session reads and the token its session cancels.
    pub fn new(
        paths: Arc<Paths>,
        login: Login,
        json: bool,
        requests: mpsc::Sender<Request>,
        cancel: CancellationToken,
    ) -> Job {
        Job {
            paths,
            login,
            json,
            requests,
            cancel,
        }
    }

    /// Prints a progress line. With `--json` it is sent as `{"progress": text}`, so a script
    /// reading one object per line still can.
    pub async fn print(&self, text: impl Into<String>) {
        let text = text.into();
        let text = if self.json {
            json!({ "progress": text }).to_string()
        } else {
            text
        };
        // A session that is gone has nobody to show it to.
        let _ = self.requests.send(Request::Print(text)).await;
    }

    /// Asks for one line; `None` when the technician pressed ^C, the job was cancelled or the
    /// session ended.
    pub async fn ask(&self, prompt: impl Into<String>, echo: Echo) -> Option<String> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Ask {
            prompt: prompt.into(),
            echo,
            reply,
        };
        self.requests.send(request).await.ok()?;
        tokio::select! {
            line = answer => line.ok().flatten(),
            _ = self.cancel.cancelled() => None,
        }
    }

    /// Asks `question` and returns true only when `yes` is typed: anything else, ^C or silence
    /// until the session ends leaves things as they are.
    pub async fn confirm(&self, question: &str) -> bool {
        let prompt = format!("{question} Type yes to go on: ");
        matches!(self.ask(prompt, Echo::Visible).await, Some(line) if line.trim() == "yes")
    }

    /// Resolves when the technician pressed ^C or the session is ending: a long command stops
    /// there and answers with what it has.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// Whether [`Job::cancelled`] has happened.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// A connection to the daemon's control socket.
    pub async fn daemon(&self) -> Result<Client, ClientError> {
        Client::connect(&self.paths.socket).await
    }

    /// Whether the technician's role allows `action` (for a subcommand that needs more than its
    /// command does, e.g. `test terminal`'s payment).
    pub fn may(&self, action: Action) -> bool {
        self.login.role.may(action)
    }
}
