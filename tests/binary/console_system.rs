//! `logs`, `restart` and the audit trail in the system journal, as a technician uses them on
//! the serial line. `journalctl` and `systemctl` are stand-in scripts first on the console's
//! `PATH`: they record how they were called and answer as the real tools do, so the test sees
//! what the console runs and how it shows the answers.

use crate::console_harness::*;
use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writes an executable script `name` into `bin`.
fn script(bin: &Path, name: &str, body: &str) {
    let path = bin.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A `bin` directory with the stand-ins, and the `PATH` that puts it first.
fn stand_ins(site: &Site) -> (PathBuf, String) {
    let bin = site.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let calls = site.path().join("calls.txt");
    // journalctl: five lines, then with --follow one more every 100 ms until killed.
    script(
        &bin,
        "journalctl",
        &format!(
            "echo \"$@\" >> {calls:?}\n\
             i=1; while [ $i -le 5 ]; do echo \"2026-12-05T08:00:0$i+0000 kiosk kioskpay[1]: line $i\"; i=$((i+1)); done\n\
             case \"$*\" in *--follow*) while true; do echo \"2026-12-05T08:01:00+0000 kiosk kioskpay[1]: followed\"; sleep 0.1; done;; esac\n"
        ),
    );
    script(&bin, "systemctl", &format!("echo \"$@\" >> {calls:?}\n"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (bin, path)
}

fn calls(site: &Site) -> String {
    std::fs::read_to_string(site.path().join("calls.txt")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_read_and_followed_until_ctrl_c_and_restart_waits_for_the_daemon() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let (_bin, path) = stand_ins(&site);
    let mut console = site.console("console", &[("PATH", &path)], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;

    let logs = console.ask("logs 5", "kioskpay kari> ").await;
    assert!(logs.contains("line 1") && logs.contains("line 5"), "{logs}");
    assert!(
        calls(&site).contains("--unit kioskpay.service --no-pager --output short-iso --lines 5"),
        "{}",
        calls(&site)
    );
    let refused = console.ask("logs many", "kioskpay kari> ").await;
    assert!(refused.contains("usage: logs [N] [--follow]"), "{refused}");

    // --follow prints as lines come, above nothing: the job owns the line until ^C.
    console.line("logs 2 --follow");
    console.expect("followed").await;
    console.expect("followed").await;
    console.type_bytes(b"\x03");
    console.expect("stopped following after").await;
    console.expect("kioskpay kari> ").await;

    // restart runs systemctl, then waits until the daemon answers on its socket again.
    let emulator = support::emulator(0.01).await;
    let daemon = Daemon::start(&site, &emulator.base_url()).await;
    let restarted = console.ask("restart", "kioskpay kari> ").await;
    assert!(
        restarted.contains("kioskpay.service restarted; the daemon answers: idle"),
        "{restarted}"
    );
    assert!(calls(&site).contains("restart kioskpay.service"));
    daemon.stop();

    console.line("logout");
    console.expect("Logged out.").await;
    let screen = console.screen();
    console.stop();

    // Each command is in the system journal's copy of the audit trail, with the chain's hash.
    let log = std::fs::read_to_string(site.path().join("console.log")).unwrap();
    for command in ["logs 5", "logs 2 --follow", "restart"] {
        assert!(
            log.lines().any(|l| l.contains("console audit")
                && l.contains(command)
                && l.contains("sha256")),
            "no audit line for {command} in the console's log:\n{log}"
        );
    }
    assert_no_pin(&site, &[&screen]);
}
