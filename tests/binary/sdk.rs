//! Dintero's official Python SDK pointed at the emulator: the emulator must speak the API the
//! way Dintero's own clients expect, not only the way kioskpay's client does.
//!
//! `.ci/run` installs the SDK (`pip install dintero`); where Python or the SDK is missing the test
//! says so on stderr and is skipped, never silently passed.

use crate::support;

use std::process::Command;

const SCRIPT: &str = r#"
import sys, time
from dintero import Dintero
base = sys.argv[1]
d = Dintero("T12345678", "kiosk-demo", "demo-secret", api_url=base, checkout_url=base)
co = d.checkout()
session = co.create_session({
    "profile_id": "T12345678.kiosk-in-person",
    "url": {"return_url": "https://example.com/return"},
    "order": {
        "amount": 39900, "currency": "NOK", "merchant_reference": "sdk-test-1",
        "items": [{"id": "cart", "line_id": "1", "description": "Cart", "quantity": 1,
                   "amount": 39900, "vat_amount": 7980, "vat": 25}],
        "store": {"id": "oslo-center", "terminal_id": "T12345678-T0001",
                  "payout_destination_id": "seller-1"},
    },
})
sid = session["id"]
for _ in range(200):
    s = co.get_session(sid)
    if s.get("transaction_id"):
        tx = co.get_transaction(s["transaction_id"])
        if tx["status"] == "CAPTURED":
            print("CAPTURED", tx["id"], tx["amount"])
            sys.exit(0)
    time.sleep(0.05)
print("never captured", s)
sys.exit(1)
"#;

fn sdk_available() -> bool {
    match Command::new("python3")
        .args(["-c", "import dintero"])
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            support::skipped(&format!(
                "the Dintero Python SDK is not installed (pip install dintero): {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ));
            false
        }
        Err(e) => {
            support::skipped(&format!("python3 is not available: {e}"));
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_pays_against_the_emulator() {
    if !sdk_available() {
        return;
    }
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    let url = base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", SCRIPT, &url])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ledger = support::ledger(&base).await;
    let txs = support::transactions_for(&ledger, "sdk-test-1");
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0]["status"], "CAPTURED");
    assert!(stdout.contains(txs[0]["id"].as_str().unwrap()));
    emulator.shutdown().await;
}

/// A skip must show in the README's own test command: run the test above in a copy of this test
/// binary where python3 cannot be found, without `--nocapture`, and read what it prints.
#[test]
fn a_skipped_sdk_test_says_so_in_plain_cargo_test_output() {
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    // Under qemu-user the copy is started through the same runner as this test.
    let Some(mut copy) = support::command_for(&me.to_string_lossy(), "--list") else {
        return;
    };
    let out = copy
        .args([
            "sdk::the_official_python_sdk_pays_against_the_emulator",
            "--exact",
            "--test-threads=1",
        ])
        .env("PATH", "/nonexistent")
        .env_remove("KIOSKPAY_SKIP_LOG")
        .output();
    let Ok(out) = out else {
        support::skipped("this test binary cannot start a copy of itself here (qemu-user?)");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    // The filter must still name the test: a filter that matches nothing passes silently.
    assert!(stdout.contains("1 passed"), "{stdout}");
    // Natively the reason is that python3 is missing; under qemu-user a failed exec of the
    // child can come back as a failed python3 instead, and the reason says the SDK is missing.
    // Either way the skip and its reason are on the output a plain `cargo test` shows.
    assert!(
        stderr.contains("SKIPPED sdk::the_official_python_sdk_pays_against_the_emulator: "),
        "{stderr}"
    );
    if !cfg!(any(target_arch = "aarch64", target_arch = "arm")) {
        assert!(stderr.contains("python3 is not available"), "{stderr}");
    }
}
