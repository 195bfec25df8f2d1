//! The technician console over an in-memory byte stream instead of a pseudo-terminal: the
//! session is the same code whatever carries its bytes, and this variant runs where a pty
//! cannot be opened as a serial line (qemu-user on the boards' architectures). It covers what
//! needs no serial line: the first-boot setup, login, a command run as a job that asks a
//! question (`factory-reset`'s typed confirmation), ^C at that question, and the audit trail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kioskpay::console::command::ServiceTools;
use kioskpay::console::session::{session, ConsoleOptions, LineKind, Terminal};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const PIN: &str = "480257";

/// The test's end of the line: what it types and everything the console wrote.
struct Line {
    stream: DuplexStream,
    seen: String,
    read_to: usize,
}

impl Line {
    async fn type_text(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).await.unwrap();
    }

    /// Waits until the console has written `text` after what earlier expectations consumed;
    /// returns what it wrote up to and including it.
    async fn expect(&mut self, text: &str) -> String {
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(at) = self.seen[self.read_to..].find(text) {
                    let upto = self.read_to + at + text.len();
                    let seen = self.seen[self.read_to..upto].to_string();
                    self.read_to = upto;
                    return seen;
                }
                let mut buf = [0u8; 1024];
                let n = self.stream.read(&mut buf).await.unwrap();
                assert!(
                    n > 0,
                    "the console closed the line; it wrote:\n{}",
                    self.seen
                );
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "the console never wrote {text:?}; after the last expectation it wrote:\n{}",
                &self.seen[self.read_to..]
            )
        })
    }
}

fn options(dir: &Path) -> ConsoleOptions {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    ConsoleOptions {
        line: LineKind::Stdio,
        columns: 80,
        json: false,
        state_dir: state,
        technicians: dir.join("technicians.toml"),
        socket: dir.join("control.sock"),
        config: dir.join("kioskpay.toml"),
        tools: ServiceTools {
            journalctl: dir.join("no-journalctl"),
            systemctl: dir.join("no-systemctl"),
        },
        idle_timeout: Duration::from_secs(300),
    }
}

/// Starts a session on an in-memory line.
fn start(options: ConsoleOptions) -> (Line, tokio::task::JoinHandle<()>) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move {
        session(Terminal::from_stream(theirs), &options, "memory")
            .await
            .unwrap();
    });
    let line = Line {
        stream: ours,
        seen: String::new(),
        read_to: 0,
    };
    (line, task)
}

fn audit(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("state/audit.log")).unwrap()
}

#[tokio::test]
async fn the_first_administrator_is_created_at_first_boot_and_a_reset_needs_the_kiosk_id() {
    let dir = tempfile::tempdir().unwrap();
    let config: PathBuf = dir.path().join("kioskpay.toml");
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, "s3cr3t-value").unwrap();
    let original = format!(
        "[kiosk]\nid = \"kiosk-7\"\n[dintero]\nclient_secret_file = {:?}\n",
        secret.to_str().unwrap()
    );
    std::fs::write(&config, &original).unwrap();
    let (mut line, task) = start(options(dir.path()));

    line.type_text("\r\r\r").await;
    line.expect("No technician yet: type setup").await;
    line.expect("kioskpay> ").await;
    // Before setup, nobody can log in, and the answer says how to begin.
    line.type_text("login kari\r").await;
    line.expect("PIN: ").await;
    line.type_text(&format!("{PIN}\r")).await;
    line.expect("type setup").await;

    line.type_text("setup\r").await;
    line.expect("New administrator's id: ").await;
    line.type_text("kari\r").await;
    line.expect("not shown): ").await;
    line.type_text("123456\r").await;
    let refused = line.expect("kioskpay> ").await;
    assert!(refused.contains("type setup to try again"), "{refused}");

    line.type_text("setup\r").await;
    line.expect("New administrator's id: ").await;
    line.type_text("kari\r").await;
    line.expect("not shown): ").await;
    line.type_text(&format!("{PIN}\r")).await;
    line.expect("Same PIN again: ").await;
    line.type_text(&format!("{PIN}\r")).await;
    line.expect("Administrator kari created. Type login kari.")
        .await;
    line.expect("kioskpay> ").await;
    // The offer ends with the first technician.
    line.type_text("setup\r").await;
    line.expect("this kiosk has technicians").await;

    line.type_text("login kari\r").await;
    line.expect("PIN: ").await;
    line.type_text(&format!("{PIN}\r")).await;
    line.expect("Logged in as kari (admin)").await;
    line.expect("kioskpay kari> ").await;

    // A job that asks: the wrong id leaves everything as it was, ^C too.
    line.type_text("factory-reset\r").await;
    let listed = line.expect("Type the kiosk's id (kiosk-7)").await;
    assert!(listed.contains("client_secret: a secret"), "{listed}");
    assert!(
        listed.contains("technicians.toml: every technician"),
        "{listed}"
    );
    line.type_text("kiosk-8\r").await;
    line.expect("factory reset not confirmed: nothing was changed")
        .await;
    line.type_text("factory-reset\r").await;
    line.expect("Type the kiosk's id (kiosk-7)").await;
    line.type_text("\x03").await;
    line.expect("factory reset not confirmed").await;
    line.expect("kioskpay kari> ").await;
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    assert!(secret.exists());
    assert!(dir.path().join("technicians.toml").exists());

    // The right id: secrets and technicians gone, the packaged config back, journal and audit
    // log kept. (No systemctl here: the answer says the daemon was not restarted; natively it
    // says systemctl is missing, under qemu-user the failed exec looks like a failed run.)
    line.type_text("factory-reset\r").await;
    line.expect("Type the kiosk's id (kiosk-7)").await;
    line.type_text("kiosk-7\r").await;
    line.expect("Factory reset done (kioskpay.service not restarted)")
        .await;
    line.expect("kioskpay kari> ").await;
    assert!(!secret.exists());
    assert!(!dir.path().join("technicians.toml").exists());
    let reset = std::fs::read_to_string(&config).unwrap();
    assert_ne!(reset, original);
    assert!(reset.contains("[kiosk]"), "{reset}");

    line.type_text("logout\r").await;
    line.expect("Logged out.").await;
    drop(line);
    task.await.unwrap();

    let audit = audit(dir.path());
    assert!(audit.contains("\"setup\""), "{audit}");
    assert!(audit.contains("factory-reset"), "{audit}");
    assert!(!audit.contains(PIN), "the PIN is in the audit log");
    assert!(
        !audit.contains("s3cr3t-value"),
        "the secret is in the audit log"
    );
}
