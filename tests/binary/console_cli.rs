//! The console's offline commands as an operator runs them: `kioskpay technician add|remove|list`
//! with the PIN on stdin, and `kioskpay audit verify` on a real audit log.

use crate::support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Output, Stdio};

/// Runs kioskpay with `stdin` as its standard input (a pipe, so the PIN is read as a line).
fn kioskpay(args: &[&str], stdin: &str) -> Option<Output> {
    let mut child = support::kioskpay_bin()?
        .args(args)
        .env("KIOSKPAY_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn file_arg(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn technicians_are_added_listed_and_removed_without_showing_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("technicians.toml");
    let file = file_arg(&file);
    let add = |name: &str, role: &str, pin: &str| {
        kioskpay(
            &["technician", "add", name, "--role", role, "--file", &file],
            pin,
        )
    };
    let Some(out) = add("kari", "admin", "482915\n") else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("technician kari added (admin)"),
        "{}",
        text(&out)
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(stored.contains("$argon2id$v=19$m=19456,t=2,p=1$") && !stored.contains("482915"));

    let out = add("ola", "service", "902114").unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Trivial PINs: exit 2, the reason, never the PIN.
    for (pin, reason) in [
        ("000000\n", "one digit repeated"),
        ("123456\n", "run of consecutive digits"),
        ("454545\n", "repeats a shorter group"),
        ("2468\n", "too short"),
    ] {
        let out = add("per", "refund", pin).unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(reason), "{}", text(&out));
        assert!(!text(&out).contains("454545") && !text(&out).contains("2468"));
    }
    let out = add("kari", "service", "482915\n").unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("already exists"), "{}", text(&out));

    let out = kioskpay(&["technician", "list", "--file", &file], "").unwrap();
    assert!(out.status.success());
    let listing = text(&out);
    assert!(
        listing.contains("kari             admin    added 20"),
        "{listing}"
    );
    assert!(
        listing.contains("ola") && listing.contains("service"),
        "{listing}"
    );
    assert!(!listing.contains("per"), "{listing}");
    assert!(!listing.contains("argon2"), "{listing}");

    let out = kioskpay(&["technician", "remove", "kari", "--file", &file], "").unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no admin is left"), "{}", text(&out));
    let out = kioskpay(&["technician", "remove", "kari", "--file", &file], "").unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("there is no technician kari"));

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = kioskpay(&["technician", "list", "--file", &file], "").unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("chmod 600 {file}")),
        "{}",
        text(&out)
    );
}

#[test]
fn technician_help_has_examples() {
    let Some(out) = kioskpay(&["technician", "add", "--help"], "") else {
        return;
    };
    assert!(out.status.success());
    let help = text(&out);
    assert!(
        help.contains("Examples:") && help.contains("--role admin"),
        "{help}"
    );
}

#[test]
fn audit_verify_finds_an_edited_line_and_says_which() {
    use kioskpay::console::audit::{AuditLog, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(dir.path(), "http://127.0.0.1:9", "");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut log = AuditLog::open(&state).unwrap();
    log.record(Some("kari"), "login", &Outcome::Ok).unwrap();
    log.record(Some("kari"), "status", &Outcome::Ok).unwrap();
    log.record(
        Some("kari"),
        "refund K-1",
        &Outcome::Failed("declined".into()),
    )
    .unwrap();
    let last = log.record(Some("kari"), "logout", &Outcome::Ok).unwrap();
    drop(log);
    let state_arg = state.display().to_string();
    let config_arg = config.display().to_string();

    let Some(out) = kioskpay(&["audit", "verify", "--state-dir", &state_arg], "") else {
        return;
    };
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "4 records, the chain is intact; last line sha256 {last}"
        )),
        "{}",
        text(&out)
    );

    let path = state.join("audit.log");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, original.replace("declined", "approved")).unwrap();
    let out = kioskpay(&["audit", "verify", "--config", &config_arg], "").unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("line 3 was changed after it was written"),
        "{}",
        text(&out)
    );

    // A power cut in the middle of a line is not tampering.
    std::fs::write(&path, format!("{original}{{\"seq\":5,\"ti")).unwrap();
    let out = kioskpay(&["audit", "verify", "--state-dir", &state_arg], "").unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("line 5 is incomplete: cut short by a power loss"),
        "{}",
        text(&out)
    );
}

#[test]
fn on_a_terminal_the_pin_is_asked_twice_and_never_echoed() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("technicians.toml");
    let (master, slave_path) = support::openpty();
    let Some(mut command) = support::kioskpay_bin() else {
        return;
    };
    let terminal = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&slave_path)
        .unwrap();
    let mut child = command
        .args(["technician", "add", "kari", "--role", "admin", "--file"])
        .arg(&file)
        .stdin(terminal)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let stderr = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 256];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                stderr.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        })
    };
    let wait_for = |text: &str| {
        support::wait_until_blocking(Duration::from_secs(20), || {
            String::from_utf8_lossy(&stderr.lock().unwrap()).contains(text)
        })
    };
    let mut keyboard = std::fs::File::from(master.try_clone().unwrap());
    if !wait_for("PIN for kari") {
        let said = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
        let _ = child.kill();
        let _ = child.wait();
        // qemu-user may not emulate the terminal ioctls.
        assert!(said.contains("reading the PIN"), "no PIN prompt: {said}");
        support::skipped(&format!("no terminal ioctls here: {said}"));
        return;
    }
    keyboard.write_all(b"482915\r").unwrap();
    assert!(wait_for("Same PIN again"), "{:?}", stderr.lock().unwrap());
    keyboard.write_all(b"482915\r").unwrap();
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&stderr.lock().unwrap())
    );
    // What the terminal showed: only the line ends, never a digit.
    // SAFETY: fcntl on the master descriptor we own.
    unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut screen = Vec::new();
    let _ = std::fs::File::from(master).read_to_end(&mut screen);
    let screen = String::from_utf8_lossy(&screen);
    // The screen is not printed on failure: it would hold the PIN.
    assert!(
        !screen.contains("4829"),
        "the PIN was echoed to the terminal"
    );
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(stored.contains("$argon2id$"));
}
