//! `kioskpay console`: one technician session on a serial line (`--device`) or this terminal
//! (`--stdio`), built from the foundations beside it.
//!
//! The session is dormant until the wake sequence ([`super::wake`]): kernel messages and line
//! noise get no answer. Awake, only `help` and `login ID` exist until a PIN is accepted (hidden,
//! never echoed, never written anywhere); a wrong one costs a growing wait and five lock the line
//! ([`super::lockout`]). Every login attempt and every command line is written to the audit log
//! ([`super::audit`], secrets masked) before it is answered. After five minutes without a key,
//! or at `logout`, the session ends: history cleared, the kiosk back to sale if this session put
//! it in maintenance, and the console dormant again.
//!
//! Commands that need the daemon reach it over the control socket ([`crate::control`]); when it
//! is not running they say so in one line with how to start it. `payments` and `pending` read
//! the journal in the state directory and need no daemon. While logged in, payments starting
//! and finishing are printed above the line being typed.
//!
//! The terminal is a byte stream in and out ([`Terminal`]): the serial device, this process's
//! stdin and stdout, or a test's pseudo-terminal, all the same to the session.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::audit::{AuditLog, Outcome};
use super::command::{
    first_word_of, no_words, Answer, Job, Paths, Request, Running, ServiceTools, Spec,
};
use super::commands::{self, money};
use super::line::{Completer, Echo, Event, LineEditor};
use super::lockout::{Admission, Lockout, LockoutError, SystemClock};
use super::technicians::{
    hash_pin_async, Action, Login, Pin, Role, TechnicianId, Technicians, PIN_MIN_DIGITS,
};
use super::wake::WakeDetector;
use crate::control::client::{Client, ClientError, Events};
use crate::control::protocol::Event as DaemonEvent;

/// Idle logout after this long without a key, unless the (hidden) option says otherwise.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Where the session's bytes come from and go to.
pub enum LineKind {
    /// This process's stdin and stdout (an SSH session, a script).
    Stdio,
    /// A serial device, 8N1 at `baud`.
    Device {
        /// The device, e.g. `/dev/serial0`.
        path: PathBuf,
        /// Its speed.
        baud: u32,
    },
}

/// What `kioskpay console` was asked for.
pub struct ConsoleOptions {
    /// The line.
    pub line: LineKind,
    /// The terminal's width in columns (a typed line fits on one row after the prompt).
    pub columns: usize,
    /// Answer every command with one JSON object per line.
    pub json: bool,
    /// The state directory: journal, audit log, lockout file.
    pub state_dir: PathBuf,
    /// The technicians file.
    pub technicians: PathBuf,
    /// The daemon's control socket.
    pub socket: PathBuf,
    /// The daemon's config file.
    pub config: PathBuf,
    /// `journalctl` and `systemctl`.
    pub tools: ServiceTools,
    /// Idle logout after this long without a key.
    pub idle_timeout: Duration,
}

/// A terminal: chunks of bytes typed (the channel ends when the line does) and a writer for
/// what the console shows.
pub struct Terminal {
    /// What was typed.
    pub input: mpsc::Receiver<Vec<u8>>,
    /// Where the console writes.
    pub output: Box<dyn AsyncWrite + Unpin + Send>,
}

impl Terminal {
    /// A terminal on any byte stream (a serial port, a socket): a task forwards what is read.
    pub fn from_stream<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S) -> Terminal {
        let (mut reader, writer) = tokio::io::split(stream);
        let (tx, input) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Terminal {
            input,
            output: Box::new(writer),
        }
    }

    /// This process's stdin and stdout. Stdin is read on a thread of its own: a read blocked on
    /// a terminal cannot be cancelled, and a runtime thread must not wait for it at exit.
    fn stdio() -> Terminal {
        let (tx, input) = mpsc::channel(16);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut stdin = io::stdin().lock();
            let mut buf = [0u8; 256];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Terminal {
            input,
            output: Box::new(tokio::io::stdout()),
        }
    }
}

/// Puts a terminal on stdin into raw mode (no echo, no line buffering, ^C as a byte) for the
/// session's own line editor, and back as it was when dropped.
struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enable() -> RawMode {
        // SAFETY: isatty, tcgetattr and tcsetattr only read and write the termios struct we own.
        unsafe {
            if libc::isatty(0) != 1 {
                return RawMode(None);
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return RawMode(None);
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                return RawMode(None);
            }
            RawMode(Some(saved))
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the attributes read in `enable`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, saved);
            }
        }
    }
}

/// `kioskpay console`: runs one console until its line ends.
pub async fn run(options: ConsoleOptions) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    match &options.line {
        LineKind::Stdio => {
            let _raw = RawMode::enable();
            let terminal = Terminal::stdio();
            session(terminal, &options, "stdio").await
        }
        LineKind::Device { path, baud } => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "serial".into());
            let text = path.to_str().context("the device path is not UTF-8")?;
            let builder = tokio_serial::new(text, *baud)
                .data_bits(tokio_serial::DataBits::Eight)
                .parity(tokio_serial::Parity::None)
                .stop_bits(tokio_serial::StopBits::One)
                .flow_control(tokio_serial::FlowControl::None)
                .exclusive(true);
            let port = tokio_serial::SerialStream::open(&builder).with_context(|| {
                format!(
                    "cannot open {} at {baud} baud (is it the right UART, enabled in config.txt, and not held by a serial-getty or the kernel console?)",
                    path.display()
                )
            })?;
            session(Terminal::from_stream(port), &options, &name).await
        }
    }
}

/// Runs a session on `terminal` until its input ends; `line` names the console line for the
/// lockout file (`stdio`, `serial0`).
pub async fn session(
    mut terminal: Terminal,
    options: &ConsoleOptions,
    line: &str,
) -> anyhow::Result<ExitCode> {
    let audit = AuditLog::open(&options.state_dir)?;
    let lockout_file = super::lockout::path_for(&options.state_dir, line);
    let lockout = Lockout::load(&lockout_file, SystemClock)?;
    let mut console = Console {
        options,
        out: Vec::new(),
        editor: LineEditor::with_columns(options.columns),
        wake: WakeDetector::new(),
        phase: Phase::Dormant,
        audit,
        lockout,
        events: None,
        put_in_maintenance: false,
        paths: Arc::new(Paths {
            state_dir: options.state_dir.clone(),
            technicians: options.technicians.clone(),
            lockout: lockout_file,
            socket: options.socket.clone(),
            config: options.config.clone(),
            tools: options.tools.clone(),
        }),
        job: None,
    };
    let mut last_key = Instant::now();
    loop {
        let idle_at = last_key + options.idle_timeout;
        tokio::select! {
            chunk = terminal.input.recv() => match chunk {
                Some(bytes) => {
                    // The idle clock runs only while awake, so a chunk that wakes the console
                    // starts it too.
                    last_key = Instant::now();
                    console.feed(&bytes).await;
                }
                None => {
                    console.end_session("logout (the line closed)").await;
                    flush(&mut terminal, &mut console.out).await?;
                    return Ok(ExitCode::SUCCESS);
                }
            },
            event = next_event(&mut console.events) => console.daemon_event(event),
            event = next_job_event(&mut console.job) => console.job_event(event).await,
            _ = tokio::time::sleep_until(idle_at), if !matches!(console.phase, Phase::Dormant) => {
                console.idle().await;
            }
        }
        flush(&mut terminal, &mut console.out).await?;
    }
}

async fn flush(terminal: &mut Terminal, out: &mut Vec<u8>) -> io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    terminal.output.write_all(out).await?;
    terminal.output.flush().await?;
    out.clear();
    Ok(())
}

async fn next_event(events: &mut Option<Events>) -> Option<DaemonEvent> {
    match events {
        Some(events) => events.next().await,
        None => std::future::pending().await,
    }
}

enum Phase {
    /// Silent until the wake sequence.
    Dormant,
    /// Awake, nobody logged in.
    Awake,
    /// `login ID` was typed; the PIN is being entered.
    Pin(String),
    /// A technician is logged in.
    LoggedIn(Login),
    /// First-boot setup: the first administrator is being created.
    Setup(SetupStep),
}

/// First-boot setup, on a kiosk without technicians: an id, then a PIN twice.
enum SetupStep {
    /// Asking for the new administrator's id.
    Id,
    /// Asking for their PIN.
    Pin(TechnicianId),
    /// Asking for it again.
    Again(TechnicianId, Pin),
}

struct Console<'a> {
    options: &'a ConsoleOptions,
    out: Vec<u8>,
    editor: LineEditor,
    wake: WakeDetector,
    phase: Phase,
    audit: AuditLog,
    lockout: Lockout<SystemClock>,
    events: Option<Events>,
    /// This session asked for maintenance: logout returns the kiosk to sale.
    put_in_maintenance: bool,
    paths: Arc<Paths>,
    /// The command running, if one is.
    job: Option<RunningJob>,
}

/// A command running as a job ([`super::command`]).
struct RunningJob {
    /// The command line, for the audit log when it ends.
    line: String,
    requests: mpsc::Receiver<Request>,
    done: JoinHandle<Answer>,
    cancel: CancellationToken,
    /// The job asked for a line and waits for it.
    asking: Option<oneshot::Sender<Option<String>>>,
}

/// What a running job did next.
enum JobEvent {
    Request(Request),
    Done(Answer),
}

/// The next thing the running job asks for, or its answer once it has ended; never, when no
/// job runs. Requests come first, so that progress printed just before the end is shown before
/// the answer.
async fn next_job_event(job: &mut Option<RunningJob>) -> JobEvent {
    let Some(job) = job else {
        return std::future::pending().await;
    };
    if let Some(request) = job.requests.recv().await {
        return JobEvent::Request(request);
    }
    JobEvent::Done(match (&mut job.done).await {
        Ok(answer) => answer,
        Err(e) if e.is_panic() => Answer::failed(
            "the command failed unexpectedly (a bug: the daemon and the kiosk are unaffected; please report it with the audit log line)",
        ),
        Err(_) => Answer::failed("the command was stopped"),
    })
}

/// The commands the session runs itself, because they change the session: listed first by
/// `help`.
const SESSION_FIRST: &[Spec] = &[
    Spec {
        name: "help",
        usage: "help [COMMAND]",
        about: "lists the commands, or explains one",
        example: "help payments",
        action: None,
        complete: no_words,
        run: None,
    },
    Spec {
        name: "setup",
        usage: "setup",
        about: "first-boot setup, only while the kiosk has no technician: creates the first administrator (an id, then a PIN twice, not shown)",
        example: "setup",
        action: None,
        complete: no_words,
        run: None,
    },
    Spec {
        name: "login",
        usage: "login ID",
        about: "logs in as technician ID; the PIN is asked for and not shown",
        example: "login kari",
        action: None,
        complete: no_words,
        run: None,
    },
];

/// The session's own commands listed after the families'.
const SESSION_LAST: &[Spec] = &[
    Spec {
        name: "maintenance",
        usage: "maintenance on|off",
        about: "on: the kiosk shows the technician screen and takes no new carts (a payment in flight finishes first); off: back to sale (needs the daemon)",
        example: "maintenance on",
        action: Some(Action::Maintenance),
        complete: |words| first_word_of(words, &["on", "off"]),
        run: None,
    },
    Spec {
        name: "logout",
        usage: "logout",
        about: "ends the session (also ^D); returns the kiosk to sale if this session put it in maintenance",
        example: "logout",
        action: None,
        complete: no_words,
        run: None,
    },
];

/// Every command, in `help`'s order.
fn all_commands() -> impl Iterator<Item = &'static Spec> {
    SESSION_FIRST
        .iter()
        .chain(commands::ALL.iter().flat_map(|family| family.iter()))
        .chain(SESSION_LAST.iter())
}

fn command(name: &str) -> Option<&'static Spec> {
    all_commands().find(|c| c.name == name)
}

/// Tab completion: the command names this phase allows, then their arguments.
struct Words<'a> {
    logged_in: bool,
    role: Option<&'a Login>,
}

impl Completer for Words<'_> {
    fn complete(&self, words: &[&str], _partial: &str) -> Vec<String> {
        let available = |c: &&Spec| match (self.logged_in, c.action) {
            (false, _) => c.action.is_none() && c.name != "logout",
            (true, None) => c.name != "login",
            (true, Some(action)) => self.role.is_some_and(|l| l.role.may(action)),
        };
        match words {
            [] | ["help"] => all_commands()
                .filter(available)
                .map(|c| c.name.to_string())
                .collect(),
            [name, rest @ ..] => match command(name) {
                Some(c) if available(&c) => (c.complete)(rest),
                _ => Vec::new(),
            },
        }
    }
}

impl Console<'_> {
    /// Shows the prompt of the current phase; returns a line typed ahead, already complete.
    fn prompt(&mut self) -> Option<Event> {
        if self.job.is_some() {
            // The job owns the line until it ends; it asks with prompts of its own.
            return None;
        }
        let (prompt, echo) = match &self.phase {
            Phase::Dormant => return None,
            Phase::Awake => ("kioskpay> ".to_string(), Echo::Visible),
            Phase::Pin(_) => ("PIN: ".to_string(), Echo::Nothing),
            Phase::Setup(SetupStep::Id) => ("New administrator's id: ".to_string(), Echo::Visible),
            Phase::Setup(SetupStep::Pin(_)) => (
                format!("PIN ({PIN_MIN_DIGITS} or more digits, not shown): "),
                Echo::Nothing,
            ),
            Phase::Setup(SetupStep::Again(..)) => ("Same PIN again: ".to_string(), Echo::Nothing),
            Phase::LoggedIn(login) => (format!("kioskpay {}> ", login.id), Echo::Visible),
        };
        self.editor.start(&prompt, echo, &mut self.out)
    }

    /// Prints `text`, one terminal line per line (the terminal is raw: CR LF).
    fn say(&mut self, text: &str) {
        for line in text.trim_end_matches('\n').split('\n') {
            self.out.extend_from_slice(line.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
    }

    fn technician(&self) -> Option<String> {
        match &self.phase {
            Phase::LoggedIn(login) => Some(login.id.to_string()),
            _ => None,
        }
    }

    async fn feed(&mut self, bytes: &[u8]) {
        if let Phase::Dormant = self.phase {
            if self.wake.feed_all(bytes, std::time::Instant::now()) {
                self.phase = Phase::Awake;
                self.say("");
                self.say(&format!(
                    "kioskpay {} technician console. Type help, or login YOUR-ID.",
                    env!("CARGO_PKG_VERSION")
                ));
                if Technicians::load(&self.options.technicians).is_ok_and(|t| t.list.is_empty()) {
                    self.say("No technician yet: type setup to create the first administrator.");
                }
                if let Some(event) = self.prompt() {
                    self.handle(event).await;
                }
            }
            return;
        }
        for &byte in bytes {
            let login = match &self.phase {
                Phase::LoggedIn(login) => Some(login.clone()),
                _ => None,
            };
            let words = Words {
                logged_in: login.is_some(),
                role: login.as_ref(),
            };
            if let Some(event) = self.editor.feed(byte, &words, &mut self.out) {
                self.handle(event).await;
            }
            if let Phase::Dormant = self.phase {
                // The session ended: what follows was typed for it, not for the next one.
                return;
            }
        }
    }

    /// Handles one event from the editor, and any line typed ahead that the next prompt ends.
    async fn handle(&mut self, first: Event) {
        let mut next = Some(first);
        while let Some(event) = next.take() {
            if self.job.is_some() {
                self.job_input(event).await;
                return;
            }
            match event {
                Event::Cancelled => {
                    if let Phase::Pin(_) | Phase::Setup(_) = self.phase {
                        self.phase = Phase::Awake;
                    }
                }
                Event::EndOfInput => {
                    self.end_session("logout").await;
                    return;
                }
                Event::Secret(pin) => match std::mem::replace(&mut self.phase, Phase::Awake) {
                    Phase::Pin(id) => self.attempt(&id, Pin::entered(pin.expose())).await,
                    Phase::Setup(step) => self.setup_secret(step, pin.expose()).await,
                    _ => {}
                },
                Event::Line(line) => {
                    if let Phase::Setup(SetupStep::Id) = self.phase {
                        self.setup_id(&line);
                    } else if self.command_line(&line).await {
                        return;
                    }
                }
            }
            next = self.prompt();
        }
    }

    /// A line, a secret, ^C or ^D typed while a job runs: the answer to its question, or a
    /// cancel.
    async fn job_input(&mut self, event: Event) {
        let Some(job) = &mut self.job else {
            return;
        };
        match event {
            Event::Line(line) => {
                if let Some(reply) = job.asking.take() {
                    let _ = reply.send(Some(line));
                }
            }
            Event::Secret(secret) => {
                if let Some(reply) = job.asking.take() {
                    let _ = reply.send(Some(secret.expose().to_string()));
                }
            }
            Event::Cancelled => match job.asking.take() {
                Some(reply) => {
                    let _ = reply.send(None);
                }
                None => job.cancel.cancel(),
            },
            Event::EndOfInput => {
                self.stop_job().await;
                self.end_session("logout").await;
            }
        }
    }

    /// Runs one command line; true when the session ended.
    async fn command_line(&mut self, line: &str) -> bool {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(&name) = words.first() else {
            return false;
        };
        let logged_in = matches!(self.phase, Phase::LoggedIn(_));
        let answer = match (name, command(name)) {
            ("login", _) if logged_in => Answer::refused("already logged in; logout first"),
            ("login", _) => match words.as_slice() {
                [_, id] => {
                    self.begin_login(id);
                    return false;
                }
                _ => Answer::refused("usage: login ID, e.g. login kari"),
            },
            ("logout", _) if logged_in => {
                self.end_session("logout").await;
                return true;
            }
            ("help", _) => self.help(words.get(1).copied()),
            ("setup", _) if logged_in => {
                Answer::refused("setup is for a kiosk without technicians; logout first")
            }
            ("setup", _) => match self.begin_setup() {
                Ok(()) => return false,
                Err(answer) => answer,
            },
            (_, None) => Answer::refused(format!(
                "unknown command {}: type help for the list",
                printable_word(name)
            )),
            (_, Some(_)) if !logged_in => {
                Answer::refused(format!("{name}: log in first (login YOUR-ID)"))
            }
            (_, Some(help)) => match (&self.phase, help.action) {
                (Phase::LoggedIn(login), Some(action)) if !login.role.may(action) => {
                    Answer::refused(format!(
                        "{name}: the {} role may not; ask an administrator",
                        login.role.as_str()
                    ))
                }
                _ => match self.run_command(line, &words).await {
                    Some(answer) => answer,
                    None => return false,
                },
            },
        };
        self.answer(line, answer);
        false
    }

    /// Records `line` with its result in the audit log, then shows the answer; a line that
    /// cannot be recorded is answered with why instead.
    fn answer(&mut self, line: &str, answer: Answer) {
        let technician = self.technician();
        self.answer_as(technician.as_deref(), line, answer);
    }

    /// [`Console::answer`] for a login attempt, recorded with the id typed.
    fn answer_as(&mut self, technician: Option<&str>, line: &str, answer: Answer) {
        match self.audit.record(technician, line, &answer.outcome) {
            Ok(sha256) => {
                // The same line in the system journal, with the chain's hash: a copy outside the
                // state directory that `audit verify`'s last hash can be compared with.
                let (result, reason) = match &answer.outcome {
                    Outcome::Ok => ("ok", String::new()),
                    Outcome::Failed(r) => ("failed", super::audit::mask_words(r)),
                    Outcome::Refused(r) => ("refused", super::audit::mask_words(r)),
                };
                tracing::info!(
                    target: "kioskpay::audit",
                    technician = technician.unwrap_or("-"),
                    command = %super::audit::mask_words(line),
                    result,
                    reason,
                    sha256,
                    "console audit"
                );
            }
            Err(e) => {
                let e = e.to_string();
                tracing::error!(error = %e, "the console could not write its audit log; commands are refused until it can");
                self.show(&Answer::failed(e));
                return;
            }
        }
        self.show(&answer);
    }

    fn show(&mut self, answer: &Answer) {
        if self.options.json {
            let text = answer.json.to_string();
            self.say(&text);
        } else {
            let text = answer.text.clone();
            self.say(&text);
        }
    }

    fn help(&self, topic: Option<&str>) -> Answer {
        match topic {
            None => {
                let logged_in = matches!(self.phase, Phase::LoggedIn(_));
                let mut text = String::from("Commands (Tab completes; help COMMAND for one):\n");
                let mut names = Vec::new();
                for c in all_commands() {
                    let available = if logged_in {
                        c.name != "login"
                    } else {
                        c.action.is_none() && c.name != "logout"
                    };
                    if available {
                        text.push_str(&format!("  {:<20} {}\n", c.usage, first_clause(c.about)));
                        names.push(c.name);
                    }
                }
                Answer::ok(text, json!({"ok": true, "commands": names}))
            }
            Some(name) => match command(name) {
                Some(c) => Answer::ok(
                    format!("{}\n  {}\nExample:\n  {}", c.usage, c.about, c.example),
                    json!({"ok": true, "usage": c.usage, "about": c.about, "example": c.example}),
                ),
                None => Answer::refused(format!(
                    "no command {}: type help for the list",
                    printable_word(name)
                )),
            },
        }
    }

    /// `setup`: starts the first-boot setup when the technicians file has nobody in it.
    fn begin_setup(&mut self) -> Result<(), Answer> {
        let technicians = Technicians::load(&self.options.technicians)
            .map_err(|e| Answer::failed(e.to_string()))?;
        if !technicians.list.is_empty() {
            return Err(Answer::refused(
                "this kiosk has technicians: login YOUR-ID (an administrator adds more with technician add)",
            ));
        }
        self.say("First-boot setup: creates the first administrator. ^C stops.");
        self.phase = Phase::Setup(SetupStep::Id);
        Ok(())
    }

    fn setup_id(&mut self, line: &str) {
        match TechnicianId::new(line.trim()) {
            Ok(id) => self.phase = Phase::Setup(SetupStep::Pin(id)),
            Err(e) => {
                self.phase = Phase::Awake;
                self.answer(
                    "setup",
                    Answer::refused(format!("{e}; type setup to try again")),
                );
            }
        }
    }

    async fn setup_secret(&mut self, step: SetupStep, typed: &str) {
        match step {
            SetupStep::Id => {}
            SetupStep::Pin(id) => match Pin::new(typed) {
                Ok(pin) => self.phase = Phase::Setup(SetupStep::Again(id, pin)),
                Err(e) => {
                    let answer = Answer::refused(format!("{e}; type setup to try again"))
                        .recorded_as("the code was refused by the rules");
                    self.answer_as(Some(id.as_str()), "setup", answer);
                }
            },
            SetupStep::Again(id, pin) => {
                let answer = if Pin::entered(typed) == pin {
                    self.create_first_admin(&id, pin).await
                } else {
                    Answer::refused("the two entries differ; type setup to try again")
                        .recorded_as("the two entries differ")
                };
                self.answer_as(Some(id.as_str()), "setup", answer);
            }
        }
    }

    async fn create_first_admin(&mut self, id: &TechnicianId, pin: Pin) -> Answer {
        let hash = match hash_pin_async(pin).await {
            Ok(hash) => hash,
            Err(e) => return Answer::failed(e.to_string()),
        };
        let file = &self.options.technicians;
        let result = Technicians::load(file).and_then(|mut technicians| {
            // Checked again: another console may have finished a setup meanwhile.
            if !technicians.list.is_empty() {
                return Ok(false);
            }
            technicians.add(id.clone(), Role::Admin, hash)?;
            technicians.save(file).map(|()| true)
        });
        match result {
            Ok(true) => Answer::ok(
                format!("Administrator {id} created. Type login {id}."),
                json!({"ok": true, "technician": id.as_str(), "role": "admin"}),
            ),
            Ok(false) => {
                Answer::refused("another console created a technician meanwhile: login YOUR-ID")
            }
            Err(e) => Answer::failed(e.to_string()),
        }
    }

    /// Reads the line's wrong-PIN count again: `pin change` counts in the same file. A file that
    /// cannot be read keeps the count in memory, which [`Lockout::begin_attempt`] then fails to
    /// write, so no login happens until it can be counted.
    fn reload_lockout(&mut self) {
        if let Ok(lockout) = Lockout::load(&self.paths.lockout, SystemClock) {
            self.lockout = lockout;
        }
    }

    /// `login ID`: asks for the PIN, unless a wait or a lockout is running (then the PIN is not
    /// even asked for, and the attempt is recorded as refused).
    fn begin_login(&mut self, id: &str) {
        self.reload_lockout();
        match self.lockout.admission() {
            Admission::Open => self.phase = Phase::Pin(id.to_string()),
            refused => {
                let text = LockoutError::Refused(refused).to_string();
                let answer = Answer::refused(text).recorded_as(locked_reason(refused));
                self.answer_as(Some(id), &format!("login {id}"), answer);
            }
        }
    }

    /// A PIN was entered for `id`: counted before it is checked, so that cutting the power
    /// while it is hashed gains nothing.
    async fn attempt(&mut self, id: &str, pin: Pin) {
        let line = format!("login {id}");
        let answer = match self.try_login(id, pin).await {
            Ok(login) => {
                let text = format!(
                    "Logged in as {} ({}). Type help for the commands.",
                    login.id,
                    login.role.as_str()
                );
                let json = json!({"ok": true, "technician": login.id.as_str(), "role": login.role.as_str()});
                self.answer_as(Some(id), &line, Answer::ok(text, json));
                self.phase = Phase::LoggedIn(login);
                self.subscribe().await;
                return;
            }
            Err(answer) => answer,
        };
        self.answer_as(Some(id), &line, answer);
    }

    async fn try_login(&mut self, id: &str, pin: Pin) -> Result<Login, Answer> {
        if let refused @ (Admission::Wait(_) | Admission::LockedOut(_)) = self.lockout.admission() {
            return Err(Answer::refused(LockoutError::Refused(refused).to_string())
                .recorded_as(locked_reason(refused)));
        }
        let technicians = Technicians::load(&self.options.technicians)
            .map_err(|e| Answer::failed(e.to_string()))?;
        if technicians.list.is_empty() {
            return Err(Answer::failed(format!(
                "no technician may log in yet: type setup, or add one from a root shell: sudo kioskpay technician add NAME --role admin (file {})",
                self.options.technicians.display()
            )));
        }
        match self
            .lockout
            .authenticate(&technicians, id, pin)
            .await
            .map_err(|e| Answer::failed(e.to_string()))?
        {
            Some(login) => Ok(login),
            None => {
                let then = match self.lockout.admission() {
                    Admission::Open => String::new(),
                    refused => format!("; {}", LockoutError::Refused(refused)),
                };
                Err(
                    Answer::failed(format!("wrong PIN or unknown technician{then}"))
                        .recorded_as("wrong id or code"),
                )
            }
        }
    }

    /// Live events from the daemon while logged in; none when it is not running.
    async fn subscribe(&mut self) {
        if self.events.is_some() {
            return;
        }
        if let Ok(client) = Client::connect(&self.options.socket).await {
            self.events = client.subscribe().await.ok();
        }
    }

    fn daemon_event(&mut self, event: Option<DaemonEvent>) {
        let Some(event) = event else {
            self.events = None;
            let text = if self.options.json {
                json!({"event": "daemon_gone"}).to_string()
            } else {
                "the connection to the daemon ended: no live events until it is back and you log in again".to_string()
            };
            self.editor.print_above(&text, &mut self.out);
            return;
        };
        let text = if self.options.json {
            match serde_json::to_string(&event) {
                Ok(text) => text,
                Err(_) => return,
            }
        } else {
            match &event {
                DaemonEvent::PaymentStarted {
                    reference,
                    amount,
                    currency,
                } => format!(
                    "* payment started: {reference} {}",
                    money(*amount, currency)
                ),
                DaemonEvent::PaymentFinished {
                    reference, detail, ..
                } => format!("* payment finished: {reference} {detail}"),
                // The state is what `status` is for; a line per change would drown the screen.
                DaemonEvent::State { .. } => return,
            }
        };
        self.editor.print_above(&text, &mut self.out);
    }

    async fn idle(&mut self) {
        match self.phase {
            Phase::Dormant => {}
            Phase::LoggedIn(_) => {
                let secs = self.options.idle_timeout.as_secs();
                let idle = if secs % 60 == 0 {
                    format!("{} minute(s)", secs / 60)
                } else {
                    format!("{secs} s")
                };
                self.editor.print_above(
                    &format!("logged out after {idle} without a key"),
                    &mut self.out,
                );
                self.end_session("logout (idle)").await;
            }
            Phase::Awake | Phase::Pin(_) | Phase::Setup(_) => {
                self.editor.print_above("console asleep", &mut self.out);
                self.sleep();
            }
        }
    }

    /// Logs out (when logged in), returns the kiosk to sale if this session put it in
    /// maintenance, forgets the history, and goes dormant.
    async fn end_session(&mut self, action: &str) {
        self.stop_job().await;
        if let Phase::LoggedIn(_) = self.phase {
            let mut answer = Answer::ok(
                "Logged out. Press Enter three times to wake the console.",
                json!({"ok": true, "logged_out": true}),
            );
            if self.put_in_maintenance {
                match self.maintenance(false).await {
                    Ok(()) => {
                        answer.text = format!("The kiosk is back to sale. {}", answer.text);
                    }
                    Err(e) => {
                        answer.text = format!(
                            "The kiosk could not be returned to sale: {e}; it stays in maintenance, also across a restart, until maintenance off succeeds. {}",
                            answer.text
                        );
                        answer.outcome = Outcome::Failed(format!("maintenance off failed: {e}"));
                    }
                }
            }
            self.say("");
            self.answer(action, answer);
        }
        self.sleep();
    }

    fn sleep(&mut self) {
        self.phase = Phase::Dormant;
        self.editor = LineEditor::with_columns(self.options.columns);
        self.wake.reset();
        self.events = None;
        self.put_in_maintenance = false;
    }

    async fn maintenance(&mut self, on: bool) -> Result<(), ClientError> {
        let mut client = Client::connect(&self.options.socket).await?;
        client.maintenance(on).await?;
        self.put_in_maintenance = on;
        Ok(())
    }

    /// Runs a command the role allows: the session's own at once, any other as a job. `None`
    /// when a job started: its answer comes when it ends.
    async fn run_command(&mut self, line: &str, words: &[&str]) -> Option<Answer> {
        let answer = match words {
            ["maintenance", switch @ ("on" | "off")] => {
                let on = *switch == "on";
                match self.maintenance(on).await {
                    Ok(()) => Answer::ok(
                        if on {
                            "Maintenance on: the kiosk shows the technician screen and takes no new carts (after a payment in flight)."
                        } else {
                            "Maintenance off: the kiosk is back to sale."
                        },
                        json!({"ok": true, "maintenance": on}),
                    ),
                    Err(e) => Answer::failed(e.to_string()),
                }
            }
            [name, rest @ ..] => match (command(name).and_then(|c| c.run), &self.phase) {
                (Some(run), Phase::LoggedIn(login)) => {
                    self.start_job(line, run, login.clone(), rest);
                    return None;
                }
                _ => {
                    let usage = command(name).map_or("", |c| c.usage);
                    Answer::refused(format!("usage: {usage} (help {name} shows an example)"))
                }
            },
            [] => Answer::refused("type help for the list"),
        };
        Some(answer)
    }

    fn start_job(
        &mut self,
        line: &str,
        run: fn(Job, Vec<String>) -> Running,
        login: Login,
        words: &[&str],
    ) {
        let (requests_tx, requests) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let job = Job::new(
            self.paths.clone(),
            login,
            self.options.json,
            requests_tx,
            cancel.clone(),
        );
        let words = words.iter().map(|w| w.to_string()).collect();
        let done = tokio::spawn(run(job, words));
        self.job = Some(RunningJob {
            line: line.to_string(),
            requests,
            done,
            cancel,
            asking: None,
        });
    }

    /// A running job printed, asked or ended.
    async fn job_event(&mut self, event: JobEvent) {
        match event {
            JobEvent::Request(Request::Print(text)) => {
                self.editor.print_above(&text, &mut self.out)
            }
            JobEvent::Request(Request::Ask {
                prompt,
                echo,
                reply,
            }) => {
                if let Some(job) = &mut self.job {
                    job.asking = Some(reply);
                }
                if let Some(event) = self.editor.start(&prompt, echo, &mut self.out) {
                    self.handle(event).await;
                }
            }
            JobEvent::Done(answer) => {
                if let Some(job) = self.job.take() {
                    self.answer(&job.line, answer);
                }
                // `pin change` counts a wrong current PIN in the line's file: the fifth locks the
                // line, and a locked line has nobody logged in.
                self.reload_lockout();
                if let Admission::LockedOut(_) = self.lockout.admission() {
                    self.end_session("logout (the line is locked)").await;
                    return;
                }
                if let Some(event) = self.prompt() {
                    self.handle(event).await;
                }
            }
        }
    }

    /// Cancels the running job, if any, and records its answer: before a logout, the job must
    /// not outlive the session that started it.
    async fn stop_job(&mut self) {
        let Some(job) = &self.job else {
            return;
        };
        job.cancel.cancel();
        let waited = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match next_job_event(&mut self.job).await {
                    JobEvent::Request(Request::Ask { reply, .. }) => {
                        let _ = reply.send(None);
                    }
                    JobEvent::Request(Request::Print(text)) => {
                        self.editor.print_above(&text, &mut self.out)
                    }
                    JobEvent::Done(answer) => return answer,
                }
            }
        })
        .await;
        let answer = waited.unwrap_or_else(|_| {
            Answer::failed(
                "the command did not stop within 5 s of being cancelled and was abandoned",
            )
        });
        if let Some(job) = self.job.take() {
            job.done.abort();
            self.answer(&job.line, answer);
        }
    }
}

/// Why a login attempt was not even tried, for the audit log.
fn locked_reason(admission: Admission) -> &'static str {
    match admission {
        Admission::LockedOut(_) => "the line is locked after repeated wrong codes",
        _ => "too soon after a wrong code",
    }
}

/// The first part of a help text, for the list.
fn first_clause(about: &str) -> &str {
    about.split(" (").next().unwrap_or(about)
}

/// A word typed at the console as it may be echoed back: control characters shown as `?`,
/// shortened.
fn printable_word(word: &str) -> String {
    word.chars()
        .take(32)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
