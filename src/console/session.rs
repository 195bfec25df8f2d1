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
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::audit::{AuditLog, Outcome};
use super::line::{Completer, Echo, Event, LineEditor};
use super::lockout::{Admission, Lockout, LockoutError, SystemClock};
use super::technicians::{authenticate_async, Action, Login, Pin, Technicians};
use super::wake::WakeDetector;
use crate::control::client::{Client, ClientError, Events};
use crate::control::protocol::{Event as DaemonEvent, Status};
use crate::money::{Currency, Money};

/// Idle logout after this long without a key, unless the (hidden) option says otherwise.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Payments listed by `payments` without a count.
const DEFAULT_PAYMENTS: usize = 10;

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
    /// Answer every command with one JSON object per line.
    pub json: bool,
    /// The state directory: journal, audit log, lockout file.
    pub state_dir: PathBuf,
    /// The technicians file.
    pub technicians: PathBuf,
    /// The daemon's control socket.
    pub socket: PathBuf,
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
    let lockout = Lockout::load(
        &super::lockout::path_for(&options.state_dir, line),
        SystemClock,
    )?;
    let mut console = Console {
        options,
        out: Vec::new(),
        editor: LineEditor::new(),
        wake: WakeDetector::new(),
        phase: Phase::Dormant,
        audit,
        lockout,
        events: None,
        put_in_maintenance: false,
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
}

/// The commands, with what `help` says about each and the role action it needs.
struct CommandHelp {
    name: &'static str,
    usage: &'static str,
    about: &'static str,
    example: &'static str,
    /// `None`: available before login.
    action: Option<Action>,
}

const COMMANDS: &[CommandHelp] = &[
    CommandHelp {
        name: "help",
        usage: "help [COMMAND]",
        about: "lists the commands, or explains one",
        example: "help payments",
        action: None,
    },
    CommandHelp {
        name: "login",
        usage: "login ID",
        about: "logs in as technician ID; the PIN is asked for and not shown",
        example: "login kari",
        action: None,
    },
    CommandHelp {
        name: "status",
        usage: "status",
        about: "the kiosk's state, the payment running, the last error, uptime, version and counts (needs the daemon)",
        example: "status",
        action: Some(Action::Status),
    },
    CommandHelp {
        name: "maintenance",
        usage: "maintenance on|off",
        about: "on: the kiosk shows the technician screen and takes no new carts (a payment in flight finishes first); off: back to sale (needs the daemon)",
        example: "maintenance on",
        action: Some(Action::Maintenance),
    },
    CommandHelp {
        name: "payments",
        usage: "payments [N]",
        about: "the last N payments in the journal, newest last (default 10; works without the daemon)",
        example: "payments 20",
        action: Some(Action::Payments),
    },
    CommandHelp {
        name: "pending",
        usage: "pending",
        about: "payments in the journal without an outcome yet; the daemon resolves them with Dintero at its next start (works without the daemon)",
        example: "pending",
        action: Some(Action::Payments),
    },
    CommandHelp {
        name: "logout",
        usage: "logout",
        about: "ends the session (also ^D); returns the kiosk to sale if this session put it in maintenance",
        example: "logout",
        action: None,
    },
];

fn command(name: &str) -> Option<&'static CommandHelp> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Tab completion: the command names this phase allows, then their arguments.
struct Words<'a> {
    logged_in: bool,
    role: Option<&'a Login>,
}

impl Completer for Words<'_> {
    fn complete(&self, words: &[&str], _partial: &str) -> Vec<String> {
        let available = |c: &&CommandHelp| match (self.logged_in, c.action) {
            (false, _) => c.action.is_none() && c.name != "logout",
            (true, None) => c.name != "login",
            (true, Some(action)) => self.role.is_some_and(|l| l.role.may(action)),
        };
        match words {
            [] => COMMANDS
                .iter()
                .filter(available)
                .map(|c| c.name.to_string())
                .collect(),
            ["help"] => COMMANDS
                .iter()
                .filter(available)
                .map(|c| c.name.to_string())
                .collect(),
            ["maintenance"] if self.logged_in => vec!["on".into(), "off".into()],
            _ => Vec::new(),
        }
    }
}

/// What a command answered: text for a person, JSON for a script, and the audit's result.
struct Answer {
    text: String,
    json: serde_json::Value,
    outcome: Outcome,
}

impl Answer {
    fn ok(text: impl Into<String>, json: serde_json::Value) -> Answer {
        Answer {
            text: text.into(),
            json,
            outcome: Outcome::Ok,
        }
    }

    fn failed(message: impl Into<String>) -> Answer {
        let message = message.into();
        Answer {
            json: json!({"ok": false, "error": message}),
            outcome: Outcome::Failed(message.clone()),
            text: message,
        }
    }

    /// Records `reason` in the audit log instead of the text shown. The audit log masks the
    /// word after "PIN", so a message about PINs is recorded in words that survive the mask.
    fn recorded_as(mut self, reason: &str) -> Answer {
        self.outcome = match self.outcome {
            Outcome::Ok => Outcome::Ok,
            Outcome::Failed(_) => Outcome::Failed(reason.into()),
            Outcome::Refused(_) => Outcome::Refused(reason.into()),
        };
        self
    }

    fn refused(message: impl Into<String>) -> Answer {
        let message = message.into();
        Answer {
            json: json!({"ok": false, "error": message}),
            outcome: Outcome::Refused(message.clone()),
            text: message,
        }
    }
}

impl Console<'_> {
    /// Shows the prompt of the current phase; returns a line typed ahead, already complete.
    fn prompt(&mut self) -> Option<Event> {
        let (prompt, echo) = match &self.phase {
            Phase::Dormant => return None,
            Phase::Awake => ("kioskpay> ".to_string(), Echo::Visible),
            Phase::Pin(_) => ("PIN: ".to_string(), Echo::Nothing),
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
            match event {
                Event::Cancelled => {
                    if let Phase::Pin(_) = self.phase {
                        self.phase = Phase::Awake;
                    }
                }
                Event::EndOfInput => {
                    self.end_session("logout").await;
                    return;
                }
                Event::Secret(pin) => {
                    if let Phase::Pin(id) = std::mem::replace(&mut self.phase, Phase::Awake) {
                        self.attempt(&id, Pin::entered(pin.expose())).await;
                    }
                }
                Event::Line(line) => {
                    if self.command_line(&line).await {
                        return;
                    }
                }
            }
            next = self.prompt();
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
                _ => self.run_command(&words).await,
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
        if let Err(e) = self.audit.record(technician, line, &answer.outcome) {
            let e = e.to_string();
            self.show(&Answer::failed(e));
            return;
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
                for c in COMMANDS {
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

    /// `login ID`: asks for the PIN, unless a wait or a lockout is running (then the PIN is not
    /// even asked for, and the attempt is recorded as refused).
    fn begin_login(&mut self, id: &str) {
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
                "no technician may log in yet: add one from a root shell: sudo kioskpay technician add NAME --role admin (file {})",
                self.options.technicians.display()
            )));
        }
        self.lockout
            .begin_attempt()
            .map_err(|e| Answer::failed(e.to_string()))?;
        match authenticate_async(&technicians, id, pin).await {
            Some(login) => {
                self.lockout
                    .succeeded()
                    .map_err(|e| Answer::failed(e.to_string()))?;
                Ok(login)
            }
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
            Phase::Awake | Phase::Pin(_) => {
                self.editor.print_above("console asleep", &mut self.out);
                self.sleep();
            }
        }
    }

    /// Logs out (when logged in), returns the kiosk to sale if this session put it in
    /// maintenance, forgets the history, and goes dormant.
    async fn end_session(&mut self, action: &str) {
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
                            "The kiosk could not be returned to sale: {e}; it stays in maintenance until the daemon restarts. {}",
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
        self.editor = LineEditor::new();
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

    async fn run_command(&mut self, words: &[&str]) -> Answer {
        match words {
            ["status"] => match self.status().await {
                Ok(status) => {
                    Answer::ok(status_text(&status), json!({"ok": true, "status": status}))
                }
                Err(e) => Answer::failed(e.to_string()),
            },
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
            ["payments"] => payments(&self.options.state_dir, DEFAULT_PAYMENTS),
            ["payments", n] => match n.parse::<usize>() {
                Ok(n) if n > 0 => payments(&self.options.state_dir, n),
                _ => Answer::refused("usage: payments [N], N a count from 1, e.g. payments 20"),
            },
            ["pending"] => pending(&self.options.state_dir),
            [name, ..] => {
                let usage = command(name).map_or("", |c| c.usage);
                Answer::refused(format!("usage: {usage} (help {name} shows an example)"))
            }
            [] => Answer::refused("type help for the list"),
        }
    }

    async fn status(&mut self) -> Result<Status, ClientError> {
        let status = Client::connect(&self.options.socket)
            .await?
            .status()
            .await?;
        self.subscribe().await;
        Ok(status)
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

fn money(minor: u64, currency: &str) -> String {
    match Currency::from_code(currency) {
        Some(c) => Money::new(minor, c).to_string(),
        None => format!("{minor} (minor units) {currency}"),
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
