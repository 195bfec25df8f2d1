//! The harness for driving `kioskpay console` as a technician does: a site (state directory,
//! technicians file, control socket), the real binary on a pseudo-terminal given as its
//! `--device` (like a USB-serial cable), and a real daemon on the emulator for commands that need
//! one. What the console prints is read from the terminal's master side, in order: a test that
//! waits for an answer has proved that everything typed before it was handled.

use crate::support;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kioskpay::control::client::Client;

/// The technicians' PINs: none of these may appear in any output, log or file but the hashes.
pub(crate) const KARI_PIN: &str = "482915";
pub(crate) const WRONG_PIN: &str = "907341";

/// The prompt once kari (the site's technician) is logged in.
pub(crate) const PROMPT: &str = "kioskpay kari> ";

/// How long a wait for the console's answer may take before the test fails (a hang guard).
pub(crate) const ANSWER: Duration = Duration::from_secs(30);

/// A console on a pseudo-terminal.
pub(crate) struct Console {
    child: Child,
    master: std::fs::File,
    /// Everything the console wrote to the terminal.
    screen: Arc<Mutex<Vec<u8>>>,
    /// How much of `screen` the last [`Console::expect`] consumed.
    read_to: usize,
    log: PathBuf,
}

/// A test's directory: state, technicians file, control socket path.
pub(crate) struct Site {
    pub(crate) dir: tempfile::TempDir,
}

impl Site {
    /// A state directory and a technicians file with kari (`role`), added as an operator would.
    pub(crate) fn new(role: &str) -> Option<Site> {
        let site = Site::without_technicians()?;
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

    /// A state directory and no technician at all: a kiosk as the package leaves it.
    pub(crate) fn without_technicians() -> Option<Site> {
        // qemu-user cannot open the console's `--device`; the native run covers these tests.
        if !support::serial_supported() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        Some(Site { dir })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    pub(crate) fn technicians(&self) -> PathBuf {
        self.path().join("technicians.toml")
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.path().join("control.sock")
    }

    /// Starts a console on a new pseudo-terminal; `extra` are further arguments.
    pub(crate) fn console(&self, name: &str, env: &[(&str, &str)], extra: &[&str]) -> Console {
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
    pub(crate) fn everything_written(&self) -> String {
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
    pub(crate) fn on(child: Child, master: OwnedFd, log: PathBuf) -> Console {
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

    pub(crate) fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    pub(crate) fn type_bytes(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    /// Types a line and Enter.
    pub(crate) fn line(&mut self, text: &str) {
        self.type_bytes(format!("{text}\r").as_bytes());
    }

    /// Waits until the console has printed `text` after what earlier expectations consumed;
    /// returns what it printed up to and including it.
    pub(crate) async fn expect(&mut self, text: &str) -> String {
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
    pub(crate) async fn ask(&mut self, command: &str, prompt: &str) -> String {
        self.line(command);
        self.expect(&format!("{command}\r\n")).await;
        self.expect(prompt).await
    }

    /// The wake sequence; waits for the banner.
    pub(crate) async fn wake(&mut self) {
        self.type_bytes(b"\r\r\r");
        self.expect("technician console").await;
        self.expect("kioskpay> ").await;
    }

    pub(crate) async fn login(&mut self, pin: &str) -> String {
        self.line("login kari");
        self.expect("PIN: ").await;
        self.line(pin);
        self.expect("> ").await
    }

    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kioskpay run` against the emulator, carts on stdin, its control socket at the site's.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) stdin: ChildStdin,
}

impl Daemon {
    pub(crate) async fn start(site: &Site, base: &str) -> Daemon {
        Daemon::start_with(site, base, &[]).await
    }

    /// [`Daemon::start`] with `env` set for it (the crash hooks of the `emulator` feature).
    pub(crate) async fn start_with(site: &Site, base: &str, env: &[(&str, &str)]) -> Daemon {
        let daemon = Daemon::spawn(site, base, env);
        assert!(
            kiosk_state(site, "idle").await,
            "the daemon never became idle on its control socket; its log:\n{}",
            std::fs::read_to_string(site.path().join("daemon.log")).unwrap_or_default()
        );
        daemon
    }

    /// Starts the daemon without waiting for it to take carts (it may start in maintenance).
    pub(crate) fn spawn(site: &Site, base: &str, env: &[(&str, &str)]) -> Daemon {
        let config = support::write_config(
            site.path(),
            base,
            "[input]\nkind = \"stdin\"\nformats = [\"plain\"]\n[payment]\npoll_interval_ms = 100\n",
        );
        // Appended to: a daemon restarted after a crash keeps the first one's lines.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(site.path().join("daemon.log"))
            .unwrap();
        let mut child = support::kioskpay_bin()
            .expect("checked by Site::new")
            .args(["run", "--config"])
            .arg(&config)
            .env("KIOSKPAY_CONTROL_SOCKET", site.socket())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        Daemon { child, stdin }
    }

    pub(crate) fn scan(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
    }

    pub(crate) fn stop(mut self) {
        // SAFETY: kill(2) on our own child with a valid signal has no memory effects.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A new pseudo-terminal echoes and edits lines until the console opens it and sets it raw:
/// what the test types before then would come back as if the console had answered.
pub(crate) fn raw(master: &OwnedFd) {
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
pub(crate) async fn kiosk_state(site: &Site, state: &str) -> bool {
    let socket = site.socket();
    support::wait_for(Duration::from_secs(60), async || {
        let mut client = Client::connect(&socket).await.ok()?;
        let status = client.status().await.ok()?;
        (status.state == state).then_some(())
    })
    .await
    .is_some()
}

pub(crate) fn assert_no_pin(site: &Site, consoles: &[&str]) {
    let mut all = site.everything_written();
    for screen in consoles {
        all.push_str(screen);
    }
    for pin in [KARI_PIN, WRONG_PIN] {
        assert!(!all.contains(pin), "a PIN appears in an output or a file");
    }
}

pub(crate) fn audit_verify(site: &Site) -> String {
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
