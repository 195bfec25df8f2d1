//! The console's terminal, network and status commands as a technician types them, through
//! [`crate::console_harness`]: a real daemon on the emulator, the real console on a pty.

use crate::console_harness::*;
use crate::support;

use serde_json::json;

/// Sets the emulated terminal's status through the emulator's control API.
async fn set_terminal_status(base: &str, body: serde_json::Value) {
    let url = format!("{base}/_emulator/terminals/T12345678-T0001/status");
    let answer = tokio::task::spawn_blocking(move || ureq::put(&url).send_json(body))
        .await
        .unwrap();
    assert_eq!(answer.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_reads_syncs_and_operates_the_terminal_through_the_daemon() {
    let Some(site) = Site::new("service") else {
        return;
    };
    // Real time: an operation runs 2 s, so its progress is seen at the console's 1 s polls.
    let emulator = support::emulator(1.0).await;
    let base = emulator.base_url();
    let mut daemon = Daemon::start(&site, &base).await;
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;

    let status = console.ask("status", PROMPT).await;
    assert!(
        status.contains("terminal     ACTIVE (checked ")
            && status.contains("api          reachable, round trip ")
            && status.contains("token        fetched ")
            && status.contains("scanner      not used (input.kind = stdin)")
            && status.contains("gpio         not configured")
            && status.contains(" MiB free in the state directory")
            && status.contains("problems     none"),
        "{status}"
    );

    let status = console.ask("terminal status", PROMPT).await;
    assert!(
        status.contains("terminal     T12345678-T0001 ACTIVE")
            && status.contains("serial       SIMULATED-T12345678-001")
            && status.contains("last op      none"),
        "{status}"
    );

    let refused = console.ask("terminal sync", PROMPT).await;
    assert!(
        refused
            .contains("has nothing to retry: sync only retries a terminal in ERROR or SYNC_ERROR")
            && refused.contains("409 TERMINAL_NOT_RETRYABLE"),
        "{refused}"
    );

    set_terminal_status(
        &base,
        json!({"status": "ERROR", "status_reason": "SYNC_FAILED"}),
    )
    .await;
    let broken = console.ask("terminal status", PROMPT).await;
    assert!(
        broken.contains("T12345678-T0001 ERROR") && broken.contains("reason       SYNC_FAILED"),
        "{broken}"
    );
    let status = console.ask("status", PROMPT).await;
    assert!(
        status.contains("terminal     ERROR (checked ")
            && status.contains("PROBLEM      E-TERM  Dintero says the terminal is ERROR"),
        "{status}"
    );
    let synced = console.ask("terminal sync", PROMPT).await;
    assert!(
        synced.contains("sync asked for") && synced.contains("T12345678-T0001 ACTIVE"),
        "{synced}"
    );

    let eod = console.ask("terminal end-of-day", PROMPT).await;
    assert!(eod.contains(": PENDING"), "{eod}");
    assert!(eod.contains(": IN_PROGRESS"), "progress is printed: {eod}");
    assert!(
        eod.contains("on terminal T12345678-T0001: COMPLETED"),
        "{eod}"
    );
    for (sub, wire) in [
        ("send-logs", "send_logs"),
        ("check-update", "check_update"),
        ("open-menu", "open_menu"),
    ] {
        let done = console.ask(&format!("terminal {sub}"), PROMPT).await;
        assert!(
            done.contains(&format!("{wire} ")) && done.contains("T12345678-T0001: COMPLETED"),
            "{done}"
        );
    }
    let status = console.ask("terminal status", PROMPT).await;
    assert!(
        status.contains("last op      open_menu ") && status.contains(" COMPLETED"),
        "{status}"
    );
    let usage = console.ask("terminal reboot", PROMPT).await;
    assert!(
        usage.contains("terminal reboot: not a subcommand"),
        "{usage}"
    );

    // A customer pays (nobody presents a card: the payment stays at the terminal): the daemon
    // refuses the operation rather than cut the payment off.
    daemon.scan("25.54;CONSOLE-BUSY");
    console.expect("* payment started: kiosk-1-").await;
    let busy = console.ask("terminal end-of-day", PROMPT).await;
    assert!(
        busy.contains("a payment is running on terminal T12345678-T0001"),
        "{busy}"
    );

    audit_verify(&site);
    let screen = console.screen();
    assert!(
        !screen.contains("demo-secret"),
        "the client secret is never shown"
    );
    assert_no_pin(&site, &[&screen]);
    console.stop();
    daemon.stop();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_network_works_without_the_daemon_and_names_the_step_that_fails() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    // No daemon: the console reads the config file and calls Dintero itself.
    let config = support::write_config(site.path(), &emulator.base_url(), "");
    let config_arg = config.display().to_string();
    let mut console = site.console("console", &[], &["--config", &config_arg]);
    console.wake().await;
    console.login(KARI_PIN).await;
    let steps = console.ask("test network", PROMPT).await;
    for step in [
        "dns      OK",
        "tcp      OK",
        "token    OK",
        "api      OK",
        "checkout OK",
    ] {
        assert!(steps.contains(step), "{step} missing:\n{steps}");
    }
    assert!(
        steps.contains("tls      -") && steps.contains("not used (http)"),
        "{steps}"
    );
    assert!(steps.contains(" ms  "), "each step has its time:\n{steps}");
    assert!(
        steps.contains("GET terminal T12345678-T0001: ACTIVE"),
        "{steps}"
    );
    assert!(steps.contains("network OK"), "{steps}");
    console.stop();

    // The API's URL points where nothing listens: the TCP step fails and is named.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    support::write_config(
        site.path(),
        &emulator.base_url(),
        &format!("[dintero]\napi_url = \"http://127.0.0.1:{port}\"\n"),
    );
    let mut console = site.console("wrong-url", &[], &["--config", &config_arg]);
    console.wake().await;
    console.login(KARI_PIN).await;
    let failed = console.ask("test network", PROMPT).await;
    assert!(failed.contains("tcp      FAIL"), "{failed}");
    assert!(
        failed.contains("the tcp step to dintero.api_url (127.0.0.1:") && failed.contains("failed"),
        "{failed}"
    );
    assert!(
        !failed.contains("token"),
        "no step runs after a failure:\n{failed}"
    );
    let screen = console.screen();
    assert!(!screen.contains("demo-secret"), "the secret is never shown");
    assert_no_pin(&site, &[&screen]);
    console.stop();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_prints_a_block_every_two_seconds_until_ctrl_c() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let daemon = Daemon::start(&site, &emulator.base_url()).await;
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;
    console.line("status --watch");
    console
        .expect("--- status 1 (every 2 s; ^C stops) ---")
        .await;
    console.expect("state        idle").await;
    console.expect("--- status 2 ").await;
    console.expect("problems     none").await;
    console.type_bytes(b"\x03");
    let stopped = console.expect(PROMPT).await;
    assert!(stopped.contains("stopped watching after "), "{stopped}");
    // The line is the technician's again.
    let help = console.ask("help status", PROMPT).await;
    assert!(help.contains("status --watch"), "{help}");
    console.stop();
    daemon.stop();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_terminal_reads_the_terminal_then_pays_once_in_maintenance_and_refunds_it_after_a_yes()
{
    let Some(site) = Site::new("refund") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let daemon = Daemon::start(&site, &emulator.base_url()).await;
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;

    // Not confirmed: nothing is charged.
    console.line("test terminal");
    console.expect("terminal     T12345678-T0001 ACTIVE").await;
    console.expect("Type yes to go on: ").await;
    console.line("no");
    console.expect("no test payment made: not confirmed").await;
    console.expect(PROMPT).await;

    // Confirmed but the kiosk is on sale: the daemon refuses, a customer could be paying.
    console.line("test terminal");
    console.expect("Type yes to go on: ").await;
    console.line("yes");
    console
        .expect("a test payment needs maintenance in force")
        .await;
    console.expect(PROMPT).await;

    console.line("maintenance on");
    console.expect("Maintenance on").await;
    console.expect(PROMPT).await;
    assert!(kiosk_state(&site, "technician").await);
    console.line("test terminal");
    console.expect("Type yes to go on: ").await;
    console.line("yes");
    console.expect("started: ").await;
    let approved = console.expect("Type yes to go on: ").await;
    assert!(
        approved.contains("test payment kiosk-1-")
            && approved.contains("approved")
            && approved.contains("The test payment is refunded now")
            && approved.contains("Refund NOK 1.00?"),
        "{approved}"
    );
    console.line("yes");
    let done = console.expect(PROMPT).await;
    assert!(
        done.contains("Refunded NOK 1.00 of payment kiosk-1-") && done.contains("REFUNDED"),
        "{done}"
    );
    assert!(
        kiosk_state(&site, "technician").await,
        "back to the technician screen after the test payment"
    );
    let listing = console.ask("payments", PROMPT).await;
    assert!(listing.contains("approved"), "{listing}");
    let ledger = tokio::task::spawn_blocking({
        let url = format!("{}/_emulator/ledger", emulator.base_url());
        move || {
            ureq::get(&url)
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let ledger: serde_json::Value = serde_json::from_str(&ledger).unwrap();
    let sessions = ledger["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "exactly one test payment: {ledger}");
    assert_eq!(sessions[0]["amount"], 100);
    assert_eq!(sessions[0]["merchant_reference_2"], "technician-test-kari");
    let reference = sessions[0]["merchant_reference"]
        .as_str()
        .unwrap()
        .to_string();
    let txs = support::transactions_for(&ledger, &reference);
    assert_eq!(txs.len(), 1, "{ledger}");
    assert_eq!(
        txs[0]["refunded_amount"], 100,
        "the test payment was refunded: {ledger}"
    );

    // Declined: the test payment stays, and the answer says how to give it back.
    console.line("test terminal");
    console.expect("Pay 1.00 as a test?").await;
    console.line("yes");
    console.expect("Refund NOK 1.00?").await;
    console.line("no");
    let kept = console.expect(PROMPT).await;
    assert!(
        kept.contains("approved and NOT refunded") && kept.contains("gives it back"),
        "{kept}"
    );
    console.stop();
    daemon.stop();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_terminal_for_role_service_reads_the_terminal_and_charges_nothing() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let daemon = Daemon::start(&site, &emulator.base_url()).await;
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;
    let answer = console.ask("test terminal", PROMPT).await;
    assert!(
        answer.contains("T12345678-T0001 ACTIVE")
            && answer.contains("a test payment needs role refund"),
        "{answer}"
    );
    console.stop();
    daemon.stop();
    emulator.shutdown().await;
}
