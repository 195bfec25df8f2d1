//! `kioskpay soak` as CI runs it: the binary, a tiny run, its JSON report.

use crate::support;

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kioskpay");

/// The soak starts the daemon as its own child process, which only works where this
/// architecture's binaries execute directly (not under qemu-user without binfmt_misc).
fn runs_natively() -> bool {
    let ok = Command::new(BIN)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        support::skipped("the soak execs the daemon itself, and this foreign-architecture binary does not run without binfmt_misc; the native run covers the soak");
    }
    ok
}

#[test]
fn a_tiny_soak_kills_restarts_and_finds_no_violation() {
    if !runs_natively() {
        return;
    }
    let out = Command::new(BIN)
        .args([
            "soak",
            "--payments",
            "20",
            "--fault-rate",
            "0.2",
            "--kills",
            "3",
            "--seed",
            "11",
            "--json",
        ])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(
        report["violations"],
        Value::Array(vec![]),
        "{report:#}\n{stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(report["carts_done"], 20);
    assert!(
        report["payments_total"].as_u64().unwrap() >= 20,
        "{report:#}"
    );
    let kills = report["kills_after_journal_write"].as_u64().unwrap()
        + report["kills_random"].as_u64().unwrap();
    assert_eq!(kills, 3, "{report:#}");
    assert_eq!(
        report["restarts"], 3,
        "every kill is followed by a restart: {report:#}"
    );
    let faults: u64 = report["faults"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert!(faults > 0, "the emulator injected no fault: {report:#}");
    assert!(
        stderr.contains("soak: 20/20 carts"),
        "progress lines on stderr: {stderr}"
    );
}

#[test]
fn a_tiny_soak_with_lost_and_damaged_state_and_two_kiosks_on_one_id_finds_no_violation() {
    if !runs_natively() {
        return;
    }
    let out = Command::new(BIN)
        .args([
            "soak",
            "--payments",
            "16",
            "--fault-rate",
            "0.2",
            "--kills",
            "4",
            "--lose-state",
            "1",
            "--damage-state",
            "2",
            "--kiosks",
            "2",
            "--seed",
            "5",
            "--json",
        ])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(
        report["violations"],
        Value::Array(vec![]),
        "{report:#}\n{stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(report["carts_done"], 16);
    assert_eq!(report["kiosks"], 2);
    for kiosk in ["A", "B"] {
        assert!(
            report["payments_by_kiosk"][kiosk].as_u64().unwrap_or(0) >= 8,
            "each kiosk pays its own carts: {report:#}"
        );
    }
    assert_eq!(report["state_losses"], 1, "{report:#}");
    let damages: u64 = report["state_damages"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(damages, 2, "{report:#}");
    assert_eq!(report["state_faults_not_made"], 0, "{report:#}");
    let kills = report["kills_after_journal_write"].as_u64().unwrap()
        + report["kills_random"].as_u64().unwrap();
    assert_eq!(kills, 4, "{report:#}");
    // A state fault waiting for a payment to finish brings a clean restart of its own.
    assert!(report["restarts"].as_u64().unwrap() >= 4, "{report:#}");
    assert!(report["conflicts"].is_u64(), "{report:#}");
    assert!(
        stderr.contains("lost its state directory") && stderr.contains("journal damaged"),
        "{stderr}"
    );
}

#[test]
fn soak_arguments_are_checked_before_anything_runs() {
    if !runs_natively() {
        return;
    }
    let out = Command::new(BIN)
        .args(["soak", "--fault-rate", "1.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--fault-rate 1.5"), "{stderr}");

    let out = Command::new(BIN)
        .args([
            "soak",
            "--kills",
            "2",
            "--lose-state",
            "2",
            "--damage-state",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at most --kills (2)"), "{stderr}");

    let out = Command::new(BIN)
        .args(["soak", "--kiosks", "3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--kiosks 3"), "{stderr}");

    let help = Command::new(BIN).args(["soak", "--help"]).output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("Example") && text.contains("--kills"),
        "{text}"
    );
    for flag in ["--lose-state", "--damage-state", "--kiosks"] {
        assert!(text.contains(flag), "{flag}: {text}");
    }
}
