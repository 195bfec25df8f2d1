//! `kioskpay console` as a technician uses it: the real binary on a pseudo-terminal (its
//! `--device`, like a USB-serial cable), against a real daemon and the emulator where a command
//! needs one. What the console prints is read from the terminal's master side, in order: a test
//! that waits for an answer has proved that everything typed before it was handled.

use crate::support;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kioskpay::control::client::Client;

/// The technicians' PINs: none of these may appear in any output, log or file but the hashes.
const KARI_PIN: &str = "482915";
const WRONG_PIN: &str = "907341";

/// How long a wait for the console's answer may take before the test fails (a hang guard).
const ANSWER: Duration = Duration::from_secs(30);

/// A console on a pseudo-terminal.
struct Console {
    child: Child,
    master: std::fs::File,
    /// Everything the console wrote to the terminal.
    screen: Arc<Mutex<Vec<u8>>>,
    /// How much of `screen` the last [`Console::expect`] consumed.
    read_to: usize,
    log: PathBuf,
}

/// A test's directory: state, technicians file, control socket path.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    /// A state directory and a technicians file with kari (`role`), added as an operator would.
    fn new(role: &str) -> Option<Site> {
        // qemu-user cannot open the console's `--device`; the native run covers these tests.
        if !support::serial_supported() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let site = Site { dir };
        let mut child = support::kioskpay_bin()?
            .args(["technician", "add", "kari", "--role", role, "--file"])
            .arg(site.technicians())
            .env("KIOSKPAY_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{KARI_PIN}").unwrap();
        assert!(child.wait().unwrap().success());
        Some(site)
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    fn technicians(&self) -> PathBuf {
        self.path().join("technicians.toml")
    }

    fn socket(&self) -> PathBuf {
        self.path().join("control.sock")
    }

    /// Starts a console on a new pseudo-terminal; `extra` are further arguments.
    fn console(&self, name: &str, env: &[(&str, &str)], extra: &[&str]) -> Console {
        let (master, slave) = support::openpty();
        raw(&master);
        // The console names its lockout file after the device it was given: one name for the
        // line, whichever pseudo-terminal a restart gets, as /dev/serial0 on a board.
        let line = self.path().join("serial0");
        let _ = std::fs::remove_file(&line);
        std::os::unix::fs::symlink(&slave, &line).unwrap();
        let log = self.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut command = support::kioskpay_bin().expect("checked by Site::new");
        command
            .args(["console", "--device"])
            .arg(&line)
            .arg("--state-dir")
            .arg(self.state())
            .arg("--technicians")
            .arg(self.technicians())
            .args(extra)
            .env("KIOSKPAY_CONTROL_SOCKET", self.socket())
            .env("KIOSKPAY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().unwrap();
        Console::on(child, master, log)
    }

    /// Every file the console and the daemon wrote, and their logs, as text.
    fn everything_written(&self) -> String {
        let mut text = String::new();
        let mut stack = vec![self.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() && path != self.technicians() {
                    // Files only: the `serial0` link leads to a terminal, which has no end.
                    text.push_str(&String::from_utf8_lossy(
                        &std::fs::read(&path).unwrap_or_default(),
                    ));
                }
            }
        }
        text
    }
}

impl Console {
    fn on(child: Child, master: OwnedFd, log: PathBuf) -> Console {
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone().unwrap();
        let screen = Arc::new(Mutex::new(Vec::new()));
        let shared = screen.clone();
        // Reads until the pty is gone with the test; a blocked read holds nothing else up.
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shared.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Console {
            child,
            master,
            screen,
            read_to: 0,
            log,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    fn type_bytes(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    /// Types a line and Enter.
    fn line(&mut self, text: &str) {
        self.type_bytes(format!("{text}\r").as_bytes());
    }

    /// Waits until the console has printed `text` after what earlier expectations consumed;
    /// returns what it printed up to and including it.
    async fn expect(&mut self, text: &str) -> String {
        let from = self.read_to;
        let screen = self.screen.clone();
        let found = support::wait_for(ANSWER, async || {
            let bytes = screen.lock().unwrap();
            let seen = String::from_utf8_lossy(&bytes[from.min(bytes.len())..]).into_owned();
            seen.find(text).map(|at| (seen, at))
        })
        .await;
        let Some((seen, at)) = found else {
            panic!(
                "the console never printed {text:?}; after the last answer it printed:\n{}\nits log:\n{}",
                &self.screen()[from.min(self.screen().len())..],
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        };
        let upto = at + text.len();
        self.read_to = from + seen[..upto].len();
        seen[..upto].to_string()
    }

    /// Types `command` and returns its answer: what the console printed after the echo of the
    /// line, up to the next `prompt`.
    async fn ask(&mut self, command: &str, prompt: &str) -> String {
        self.line(command);
        self.expect(&format!("{command}\r\n")).await;
        self.expect(prompt).await
    }

    /// The wake sequence; waits for the banner.
    async fn wake(&mut self) {
        self.type_bytes(b"\r\r\r");
        self.expect("technician console").await;
        self.expect("kioskpay> ").await;
    }

    async fn login(&mut self, pin: &str) -> String {
        self.line("login kari");
        self.expect("PIN: ").await;
        self.line(pin);
        self.expect("> ").await
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kioskpay run` against the emulator, carts on stdin, its control socket at the site's.
struct Daemon {
    child: Child,
    stdin: ChildStdin,
}

impl Daemon {
    async fn start(site: &Site, base: &str) -> Daemon {
        let config = support::write_config(
            site.path(),
            base,
            "[input]\nkind = \"stdin\"\nformats = [\"plain\"]\n[payment]\npoll_interval_ms = 100\n",
        );
        let log = std::fs::File::create(site.path().join("daemon.log")).unwrap();
        let mut child = support::kioskpay_bin()
            .expect("checked by Site::new")
            .args(["run", "--config"])
            .arg(&config)
            .env("KIOSKPAY_CONTROL_SOCKET", site.socket())
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let daemon = Daemon { child, stdin };
        assert!(
            kiosk_state(site, "idle").await,
            "the daemon never became idle on its control socket; its log:\n{}",
            std::fs::read_to_string(site.path().join("daemon.log")).unwrap_or_default()
        );
        daemon
    }

    fn scan(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
    }

    fn stop(mut self) {
        // SAFETY: kill(2) on our own child with a valid signal has no memory effects.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A new pseudo-terminal echoes and edits lines until the console opens it and sets it raw:
/// what the test types before then would come back as if the console had answered.
fn raw(master: &OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: tcgetattr and tcsetattr only read and write the termios struct we own.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(master.as_raw_fd(), &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(master.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
}

/// Waits until the daemon's control socket reports `state`.
async fn kiosk_state(site: &Site, state: &str) -> bool {
    let socket = site.socket();
    support::wait_for(Duration::from_secs(60), async || {
        let mut client = Client::connect(&socket).await.ok()?;
        let status = client.status().await.ok()?;
        (status.state == state).then_some(())
    })
    .await
    .is_some()
}

fn assert_no_pin(site: &Site, consoles: &[&str]) {
    let mut all = site.everything_written();
    for screen in consoles {
        all.push_str(screen);
    }
    for pin in [KARI_PIN, WRONG_PIN] {
        assert!(!all.contains(pin), "a PIN appears in an output or a file");
    }
}

fn audit_verify(site: &Site) -> String {
    let out = support::kioskpay_bin()
        .unwrap()
        .args(["audit", "verify", "--state-dir"])
        .arg(site.state())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_silent_until_woken_and_before_login_offers_only_help_and_login() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let mut console = site.console("console", &[], &[]);
    // Kernel messages and line noise: each line has other bytes between its Enters.
    console.type_bytes(b"[    0.000000] Booting Linux on physical CPU 0x0\r\n");
    console.type_bytes(b"\x00\xff~~noise\r\x1b[A\r\nlogin kari\r");
    console.wake().await;
    let before_banner = console.screen();
    let banner_at = before_banner.find("kioskpay ").unwrap();
    assert!(
        before_banner[..banner_at].trim().is_empty(),
        "the console answered before it was woken: {before_banner:?}"
    );
    console.line("status");
    console.expect("status: log in first (login YOUR-ID)").await;
    let help = console.ask("help", "kioskpay> ").await;
    assert!(
        help.contains("login ID") && !help.contains("maintenance"),
        "{help}"
    );
    let help = console.ask("help maintenance", "kioskpay> ").await;
    assert!(
        help.contains("Example:") && help.contains("maintenance on"),
        "{help}"
    );
    // Tab completes a command name.
    console.type_bytes(b"he\t");
    console.expect("help").await;
    console.type_bytes(b"\x15");
    console.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_costs_a_wait_and_the_fifth_locks_the_line_across_a_restart() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let mut console = site.console("first", &[], &[]);
    console.wake().await;
    console.line("login kari");
    console.expect("PIN: ").await;
    console.line(WRONG_PIN);
    console
        .expect("wrong PIN or unknown technician; wrong PIN: wait 1 s")
        .await;
    // Straight away: not even asked for a PIN.
    let refused = console.ask("login kari", "kioskpay> ").await;
    assert!(
        refused.contains("wait") && !refused.lines().any(|l| l.starts_with("PIN: ")),
        "{refused}"
    );
    let first_screen = console.screen();
    console.stop();

    // Four wrong PINs in a row whose last wait is over (their waits of 1, 2 and 4 s are the
    // lockout's unit tests' business), as the lockout file keeps them across a restart.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let lockout = site.state().join("console-serial0.lockout");
    assert!(lockout.exists(), "the first wrong PIN is kept for the line");
    std::fs::write(
        &lockout,
        format!(
            "{{\"failures\":4,\"not_before_unix_ms\":{},\"forget_at_unix_ms\":{}}}",
            now_ms - 1000,
            now_ms + 600_000
        ),
    )
    .unwrap();
    let mut console = site.console("third", &[], &[]);
    console.wake().await;
    console.line("login kari");
    console.expect("PIN: ").await;
    console.line(WRONG_PIN);
    console
        .expect("5 wrong PINs: this console is locked for 15 more minute(s)")
        .await;
    let third_screen = console.screen();
    console.stop();

    // A restart (or a power cut) does not lift it, and the right PIN is not even asked for.
    let mut console = site.console("fourth", &[], &[]);
    console.wake().await;
    let refused = console.ask("login kari", "kioskpay> ").await;
    assert!(
        refused.contains("locked for 15 more minute(s)")
            && !refused.lines().any(|l| l.starts_with("PIN: ")),
        "{refused}"
    );
    let audit = std::fs::read_to_string(site.state().join("audit.log")).unwrap();
    assert_eq!(
        audit.matches("\"action\":\"login kari\"").count(),
        4,
        "{audit}"
    );
    assert!(audit.contains("\"result\":\"refused\""), "{audit}");
    audit_verify(&site);
    assert_no_pin(&site, &[&first_screen, &third_screen, &console.screen()]);
    console.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_checks_and_maintains_a_running_kiosk_and_sees_its_payments() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let mut daemon = Daemon::start(&site, &emulator.base_url()).await;
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    let welcome = console.login(KARI_PIN).await;
    assert!(welcome.contains("Logged in as kari (service)"), "{welcome}");

    let status = console.ask("status", "kioskpay kari> ").await;
    assert!(
        status.contains("state        idle") && status.contains("maintenance  off"),
        "{status}"
    );

    console.line("maintenance on");
    console.expect("Maintenance on").await;
    assert!(
        kiosk_state(&site, "technician").await,
        "the kiosk never showed the technician screen"
    );
    let status = console.ask("status", "kioskpay kari> ").await;
    assert!(
        status.contains("state        technician") && status.contains("maintenance  on"),
        "{status}"
    );
    console.line("maintenance off");
    console.expect("Maintenance off").await;
    assert!(
        kiosk_state(&site, "idle").await,
        "the kiosk never went back to sale"
    );

    // A payment while logged in: its start and end are printed above the prompt.
    daemon.scan("25.00;CONSOLE-1");
    console.expect("* payment started: kiosk-1-").await;
    console.expect("* payment finished: kiosk-1-").await;
    let listing = console.ask("payments", "kioskpay kari> ").await;
    assert!(
        listing.contains("NOK 25.00") && listing.contains("approved"),
        "{listing}"
    );

    // Maintenance left on at logout: the kiosk goes back to sale by itself.
    console.line("maintenance on");
    console.expect("Maintenance on").await;
    assert!(kiosk_state(&site, "technician").await);
    console.line("logout");
    console
        .expect("The kiosk is back to sale. Logged out.")
        .await;
    assert!(
        kiosk_state(&site, "idle").await,
        "logout did not return the kiosk to sale"
    );

    // With the daemon stopped: one line saying so and how to start it; the journal still reads.
    daemon.stop();
    console.wake().await;
    console.login(KARI_PIN).await;
    console.line("status");
    console
        .expect("the kioskpay daemon is not running (nothing answers on ")
        .await;
    console
        .expect("start it with: systemctl start kioskpay")
        .await;
    let listing = console.ask("payments 5", "kioskpay kari> ").await;
    assert!(listing.contains("NOK 25.00"), "{listing}");
    console.line("pending");
    console.expect("no pending payments").await;
    console.line("logout");
    console.expect("Logged out.").await;

    let audit = std::fs::read_to_string(site.state().join("audit.log")).unwrap();
    for action in [
        "login kari",
        "status",
        "maintenance on",
        "maintenance off",
        "payments",
        "pending",
        "logout",
    ] {
        assert!(
            audit.contains(&format!("\"technician\":\"kari\",\"action\":\"{action}\"")),
            "{action} is not in the audit log:\n{audit}"
        );
    }
    assert!(audit_verify(&site).contains("the chain is intact"));
    assert_no_pin(&site, &[&console.screen()]);
    console.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_logged_out_and_json_answers_one_object_per_command() {
    let Some(site) = Site::new("admin") else {
        return;
    };
    let mut console = site.console("console", &[("KIOSKPAY_CONSOLE_IDLE_S", "1")], &["--json"]);
    console.wake().await;
    console.line("login kari");
    console.expect("PIN: ").await;
    console.line(KARI_PIN);
    console
        .expect(r#"{"ok":true,"role":"admin","technician":"kari"}"#)
        .await;
    console.expect("kioskpay kari> ").await;
    let answer = console.ask("status", "kioskpay kari> ").await;
    let object = answer
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON answer: {answer}"));
    let value: serde_json::Value = serde_json::from_str(object.trim()).unwrap();
    assert_eq!(value["ok"], false);
    assert!(value["error"]
        .as_str()
        .unwrap()
        .contains("systemctl start kioskpay"));
    // Nothing typed for a second: logged out, dormant again.
    console.expect("logged out after 1 s without a key").await;
    console.expect(r#""logged_out":true"#).await;
    console.wake().await;
    let audit = std::fs::read_to_string(site.state().join("audit.log")).unwrap();
    assert!(audit.contains("\"action\":\"logout (idle)\""), "{audit}");
    audit_verify(&site);
    assert_no_pin(&site, &[&console.screen()]);
    console.stop();
}
