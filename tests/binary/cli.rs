//! The `kioskpay` binary as an operator runs it: help texts, exit statuses, `check`, `run` fed
//! on stdin and on a real pseudo-terminal serial line, `journal`, and the demo.

use crate::support;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn kioskpay(args: &[&str]) -> Option<std::process::Output> {
    let out = support::kioskpay_bin()?
        .args(args)
        .env("KIOSKPAY_LOG", "info")
        .output()
        .expect("binary runs");
    Some(out)
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn help_lists_every_command_with_examples() {
    let Some(out) = kioskpay(&["--help"]) else {
        return;
    };
    assert!(out.status.success());
    let help = text(&out);
    for cmd in ["run", "demo", "emulator", "check", "journal"] {
        assert!(help.contains(cmd), "{cmd} missing from --help");
        let sub = kioskpay(&[cmd, "--help"]).unwrap();
        assert!(sub.status.success(), "{cmd} --help");
        assert!(
            text(&sub).contains("Example"),
            "{cmd} --help has no example"
        );
    }
}

#[test]
fn a_bad_config_exits_2_naming_key_value_and_expectation() {
    if support::kioskpay_bin().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = support::write_config(dir.path(), "http://127.0.0.1:9", "");
    let good = std::fs::read_to_string(&path).unwrap();
    let cases = [
        ("language = \"en\"", "language = \"de\"", "language"),
        ("max_amount = 1000000", "max_amount = -5", "max_amount"),
        (
            "terminal_id = \"T12345678-T0001\"",
            "terminal_id = \"T1\"",
            "store.terminal_id = \"T1\"",
        ),
        (
            "[store]",
            "[store]\ncolour = \"red\"",
            "unknown field `colour`",
        ),
    ];
    for (from, to, want) in cases {
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let out = kioskpay(&["check", "--offline", "--config", path.to_str().unwrap()]).unwrap();
        assert_eq!(out.status.code(), Some(2), "{to}: {}", text(&out));
        assert!(text(&out).contains(want), "{to}: {}", text(&out));
    }
    let out = kioskpay(&["check", "--config", "/nonexistent/kioskpay.toml"]).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("/nonexistent/kioskpay.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_gets_a_token_and_reads_the_terminal() {
    if support::kioskpay_bin().is_none() {
        return;
    }
    let emulator = support::emulator(0.01).await;
    let dir = tempfile::tempdir().unwrap();
    // No scanner device on a test machine: check exits 3 for a missing one (below).
    let path = support::write_config(
        dir.path(),
        &emulator.base_url(),
        "[input]\nkind = \"stdin\"\n",
    );
    let out = tokio::task::spawn_blocking(move || {
        kioskpay(&["check", "--config", path.to_str().unwrap()]).unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("token OK") && text(&out).contains("ACTIVE"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("demo-secret"));
    emulator.shutdown().await;
}

/// Waits until the journal shows `n` final payments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_3_when_the_api_or_the_scanner_is_not_there() {
    if support::kioskpay_bin().is_none() {
        return;
    }
    let emulator = support::emulator(0.01).await;
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("ttyACM9");
    let with_device = format!("[input]\nkind = \"serial\"\ndevice = {device:?}\n");
    let up = support::write_config(dir.path(), &emulator.base_url(), &with_device);
    let check = |path: std::path::PathBuf, offline: bool| async move {
        tokio::task::spawn_blocking(move || {
            let path = path.to_str().unwrap();
            let args = if offline {
                vec!["check", "--offline", "--config", path]
            } else {
                vec!["check", "--config", path]
            };
            kioskpay(&args).unwrap()
        })
        .await
        .unwrap()
    };
    let out = check(up.clone(), false).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("ttyACM9: not present now") && text(&out).contains("ACTIVE"),
        "{}",
        text(&out)
    );
    // --offline is for ExecStartPre: the file alone, as before.
    let out = check(up.clone(), true).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    std::fs::write(&device, "").unwrap();
    let out = check(up, false).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("ttyACM9: present"), "{}", text(&out));

    // Nothing listens on port 9 of loopback: connection refused.
    let down = support::write_config(dir.path(), "http://127.0.0.1:9", &with_device);
    let out = check(down.clone(), false).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("not reachable now"), "{}", text(&out));
    let out = check(down, true).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    emulator.shutdown().await;
}

#[test]
fn check_warns_when_kiosk_id_is_the_packaged_default() {
    if support::kioskpay_bin().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = support::write_config(dir.path(), "http://127.0.0.1:9", "");
    let out = kioskpay(&["check", "--offline", "--config", path.to_str().unwrap()]).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARNING: kiosk.id is still the packaged default \"kiosk-1\"")
            && stderr.contains("Set kiosk.id in"),
        "{stderr}"
    );
    let renamed = std::fs::read_to_string(&path)
        .unwrap()
        .replace("id = \"kiosk-1\"", "id = \"kiosk-oslo-7\"");
    std::fs::write(&path, renamed).unwrap();
    let out = kioskpay(&["check", "--offline", "--config", path.to_str().unwrap()]).unwrap();
    assert!(!text(&out).contains("WARNING"), "{}", text(&out));
}

#[test]
fn the_emulator_warns_off_loopback_and_a_bad_faults_file_is_a_usage_error() {
    if support::kioskpay_bin().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let faults = dir.path().join("bad.json");
    std::fs::write(&faults, "{not json").unwrap();
    let out = kioskpay(&[
        "emulator",
        "--listen",
        "0.0.0.0:0",
        "--faults",
        faults.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("bad.json"),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_names_its_os_error_once() {
    let Some(out) = kioskpay(&["journal", "--config", "/nonexistent/kioskpay.toml"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out).matches("No such file or directory").count(),
        1,
        "{}",
        text(&out)
    );
}

async fn wait_for_final(state: &std::path::Path, n: usize) -> kioskpay::journal::Replay {
    support::wait_for(Duration::from_secs(60), async || {
        let replay = kioskpay::journal::read_only(state).ok()?;
        let finished = replay.payments.iter().filter(|p| p.outcome.is_some());
        (finished.count() >= n).then_some(replay)
    })
    .await
    .expect("no final payment in the journal within 60 s")
}

fn sigterm(child: &std::process::Child) {
    // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_takes_carts_on_stdin_and_journal_shows_them() {
    let emulator = support::emulator(0.01).await;
    let dir = tempfile::tempdir().unwrap();
    let path = support::write_config(
        dir.path(),
        &emulator.base_url(),
        "[input]\nkind = \"stdin\"\nformats = [\"plain\"]\n[payment]\npoll_interval_ms = 50\nresult_screen_s = 1\n",
    );
    let Some(mut command) = support::kioskpay_bin() else {
        return;
    };
    let mut child = command
        .args(["run", "--config", path.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"399.00;KID-42\n")
        .unwrap();
    let replay = wait_for_final(&dir.path().join("state"), 1).await;
    assert_eq!(
        replay.payments[0].outcome,
        Some(kioskpay::journal::Outcome::Approved)
    );
    assert_eq!(replay.payments[0].cart_reference.as_deref(), Some("KID-42"));
    sigterm(&child);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("demo-secret"),
        "the secret leaked into the output"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("cart scanned") && !log.contains('\x1b'),
        "a log that is not a terminal gets no colour codes: {log}"
    );

    let journal = kioskpay(&["journal", "--json", "--config", path.to_str().unwrap()]).unwrap();
    assert!(journal.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&journal.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["state"], "approved");
    assert_eq!(lines[0]["amount"], 39900);
    assert_eq!(lines[0]["currency"], "NOK");
    // The table for a technician: major units, and no payment left unresolved.
    let table = kioskpay(&["journal", "--config", path.to_str().unwrap()]).unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains(" 399.00 NOK  approved "),
        "amount in major units: {table}"
    );
    assert_eq!(table.lines().last(), Some("1 payment"), "{table}");
    let ledger = support::ledger(&emulator.base_url()).await;
    assert_eq!(lines[0]["transaction_id"], ledger["transactions"][0]["id"]);
    assert_eq!(ledger["transactions"][0]["status"], "CAPTURED");
    assert_eq!(ledger["sessions"][0]["merchant_reference_2"], "KID-42");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_level_prints_the_client_secret_or_a_token() {
    use base64::Engine;
    let emulator = support::emulator(0.01).await;
    let dir = tempfile::tempdir().unwrap();
    let path = support::write_config(
        dir.path(),
        &emulator.base_url(),
        "[input]\nkind = \"stdin\"\nformats = [\"plain\"]\n[payment]\npoll_interval_ms = 50\nresult_screen_s = 1\n",
    );
    let Some(mut command) = support::kioskpay_bin() else {
        return;
    };
    // Files, not pipes: a trace log outgrows a pipe's buffer and would block the kiosk.
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    // Everything at trace, and the HTTP and TLS libraries asked for by name on top.
    let mut child = command
        .args(["run", "--config", path.to_str().unwrap()])
        .env(
            "KIOSKPAY_LOG",
            "trace,ureq=trace,ureq_proto=trace,ureq_proto::util=trace,rustls=trace",
        )
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"399.00;KID-43\n")
        .unwrap();
    let replay = wait_for_final(&dir.path().join("state"), 1).await;
    assert_eq!(
        replay.payments[0].outcome,
        Some(kioskpay::journal::Outcome::Approved)
    );
    let tokens = emulator.issued_tokens();
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let all =
        std::fs::read_to_string(&stdout).unwrap() + &std::fs::read_to_string(&stderr).unwrap();
    assert!(status.success(), "kioskpay run ended with {status}");
    assert!(
        all.contains("TRACE"),
        "the run logged at trace: {} bytes",
        all.len()
    );
    assert!(!tokens.is_empty(), "the kiosk fetched a token");
    // A hex dump shows 16 bytes a row, so a secret can straddle rows: their text columns
    // (the last word of each line) are joined and searched as well.
    let dumped: String = all
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .filter(|word| word.len() == 16)
        .collect();
    let basic = base64::engine::general_purpose::STANDARD.encode("kiosk-demo:demo-secret");
    let mut secrets = vec![
        ("the client secret", "demo-secret".to_string()),
        ("the Basic auth header", basic),
    ];
    secrets.extend(tokens.into_iter().map(|t| ("an access token", t)));
    for (what, secret) in &secrets {
        // Logs never print the secrets, so a failure message must not print the log.
        assert!(
            !all.contains(secret.as_str()) && !dumped.contains(secret.as_str()),
            "{what} is in the output of a run at KIOSKPAY_LOG=trace"
        );
    }
    for target in ["ureq", "rustls"] {
        let below_info = all.lines().filter(|l| {
            (l.contains(" TRACE ") || l.contains(" DEBUG ")) && l.contains(&format!(" {target}"))
        });
        assert_eq!(
            below_info.count(),
            0,
            "{target} logged below info although its dumps carry secrets"
        );
    }
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reads_a_scanner_on_a_real_serial_line() {
    let (master, slave_path) = support::openpty();
    if !support::serial_supported() {
        return;
    }
    let emulator = support::emulator(0.01).await;
    let dir = tempfile::tempdir().unwrap();
    let path = support::write_config(
        dir.path(),
        &emulator.base_url(),
        &format!("[input]\nkind = \"serial\"\ndevice = \"{slave_path}\"\nbaud = 9600\nformats = [\"plain\"]\n[payment]\npoll_interval_ms = 50\n"),
    );
    let Some(mut command) = support::kioskpay_bin() else {
        return;
    };
    let child = command
        .args(["run", "--config", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut scanner = std::fs::File::from(master);
    let state = dir.path().join("state");
    // The daemon opens the port after recovery and the health check; repeat the scan until it is read.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        scanner.write_all(b"149.51;SCAN-1\r").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let replay = kioskpay::journal::read_only(&state).ok();
        if replay.is_some_and(|r| !r.payments.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never read the scanner line"
        );
    }
    let replay = wait_for_final(&state, 1).await;
    assert_eq!(
        replay.payments[0].outcome,
        Some(kioskpay::journal::Outcome::Declined)
    );
    assert_eq!(replay.payments[0].amount, 14951);
    sigterm(&child);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    emulator.shutdown().await;
}

#[test]
fn the_demo_runs_every_outcome_and_matches_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    let Some(out) = kioskpay(&[
        "demo",
        "--time-scale",
        "0.05",
        "--lang",
        "en",
        "--frames",
        frames.to_str().unwrap(),
    ]) else {
        return;
    };
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    assert!(output.contains("demo OK"), "{output}");
    for outcome in [
        "approved",
        "declined",
        "cancelled",
        "failed (terminal offline)",
    ] {
        assert!(output.contains(outcome), "{outcome} missing:\n{output}");
    }
    let mut pngs: Vec<std::path::PathBuf> = std::fs::read_dir(&frames)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    pngs.sort();
    assert!(pngs.len() >= 6, "frames were not written");
    // The last customer screens are drawn too: the offline terminal's "payment failed", then
    // "card payment unavailable" until the health gate clears it.
    let expected = dir.path().join("terminal_offline.png");
    let render = kioskpay(&[
        "render",
        "--screen",
        "terminal_offline",
        "--size",
        "240x320",
        "--lang",
        "en",
        "--out",
        expected.to_str().unwrap(),
    ])
    .unwrap();
    assert!(render.status.success(), "{}", text(&render));
    assert_eq!(
        std::fs::read(pngs.last().unwrap()).unwrap(),
        std::fs::read(&expected).unwrap(),
        "the last frame is the 'card payment unavailable' screen"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAILED (terminal offline)")
            && stdout.contains("card payment unavailable: the terminal did not pick"),
        "{stdout}"
    );
    for raw in [
        "InsufficientFunds",
        "TerminalOffline",
        "Customer)",
        "by Customer",
    ] {
        assert!(
            !stdout.contains(raw),
            "enum name {raw:?} printed:\n{stdout}"
        );
    }
    // Each cart's lines, down to its "idle", come before the next cart's heading.
    let lines: Vec<&str> = stdout.lines().collect();
    for (i, line) in lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("cart "))
    {
        if !line.starts_with("cart 1/") {
            assert!(lines[i - 1].ends_with("] idle"), "{stdout}");
        }
    }
}

/// The packaged config says how many sections it marks REQUIRED, and the README names every key
/// the packaged config shows.
#[test]
fn the_packaged_config_and_the_readme_agree_on_the_keys() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let packaged = std::fs::read_to_string(root.join("packaging/kioskpay.toml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let required = packaged
        .lines()
        .filter(|l| l.starts_with("# REQUIRED:"))
        .count();
    let words = ["zero", "one", "two", "three", "four", "five"];
    assert!(
        packaged.contains(&format!(
            "Fill in the {} sections marked REQUIRED",
            words[required]
        )),
        "{required} sections are marked REQUIRED"
    );
    let mut section = String::new();
    for line in packaged.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let setting = line.strip_prefix("# ").unwrap_or(line);
        let Some((key, _)) = setting.split_once(" = ") else {
            continue;
        };
        if key.contains(' ') || section.is_empty() {
            continue;
        }
        let dotted = format!("`{section}.{key}`");
        let in_readme_config =
            readme.contains(&format!("\n{key} = ")) || readme.contains(&format!("\n# {key} = "));
        assert!(
            readme.contains(&dotted) || in_readme_config,
            "{section}.{key} is in packaging/kioskpay.toml but not in the README"
        );
    }
}
