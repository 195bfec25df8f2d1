//! `kioskpay console` as a technician uses it: waking, logging in, the lockout, maintenance and
//! the journal, through [`crate::console_harness`].

use crate::console_harness::*;
use crate::support;

/// The site's console line's lockout file.
fn lockout_file(site: &Site) -> std::path::PathBuf {
    site.state().join("console-serial0.lockout")
}

/// Writes the line's lockout file as four wrong PINs in a row whose last wait is over: the next
/// wrong PIN is the fifth.
fn four_wrong_pins_waited_out(site: &Site) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    std::fs::write(
        lockout_file(site),
        format!(
            "{{\"failures\":4,\"not_before_unix_ms\":{},\"forget_at_unix_ms\":{}}}",
            now_ms - 1000,
            now_ms + 600_000
        ),
    )
    .unwrap();
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
    assert!(
        lockout_file(&site).exists(),
        "the first wrong PIN is kept for the line"
    );
    four_wrong_pins_waited_out(&site);
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
async fn a_wrong_current_pin_at_pin_change_counts_toward_the_lines_lockout() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;
    console.line("pin change");
    console.expect("Current PIN: ").await;
    console.line(WRONG_PIN);
    console
        .expect("wrong PIN: nothing was changed; wrong PINs count toward the lockout of this line (wait 1 s")
        .await;
    // Straight away: the wait holds here as at login, so not even asked.
    let refused = console.ask("pin change", PROMPT).await;
    assert!(
        refused.contains("wrong PIN: wait") && !refused.contains("Current PIN: "),
        "{refused}"
    );

    // Four wrong PINs in a row whose last wait is over: the fifth, typed at `pin change`, locks
    // the line and ends the session.
    four_wrong_pins_waited_out(&site);
    console.line("pin change");
    console.expect("Current PIN: ").await;
    console.line(WRONG_PIN);
    console
        .expect("5 wrong PINs in a row lock this console line: you are logged out")
        .await;
    console.expect("Logged out.").await;
    console.wake().await;
    let refused = console.ask("login kari", "kioskpay> ").await;
    assert!(
        refused.contains("locked for 15 more minute(s)")
            && !refused.lines().any(|l| l.starts_with("PIN: ")),
        "{refused}"
    );
    audit_verify(&site);
    let audit = std::fs::read_to_string(site.state().join("audit.log")).unwrap();
    assert_eq!(audit.matches("wrong current code").count(), 2, "{audit}");
    assert_no_pin(&site, &[&console.screen()]);
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

    // Maintenance is kept across a restart (a crash, a power cut): the kiosk comes back on the
    // technician screen, and stays there until maintenance off.
    console.line("maintenance on");
    console.expect("Maintenance on").await;
    assert!(kiosk_state(&site, "technician").await);
    assert!(site.state().join("maintenance").exists());
    daemon.stop();
    daemon = Daemon::spawn(&site, &emulator.base_url(), &[]);
    assert!(
        kiosk_state(&site, "technician").await,
        "the restart put the kiosk back on sale"
    );
    let status = console.ask("status", "kioskpay kari> ").await;
    assert!(
        status.contains("state        technician") && status.contains("maintenance  on"),
        "{status}"
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
