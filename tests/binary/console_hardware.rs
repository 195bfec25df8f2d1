//! `test scanner|display|gpio` as a technician runs them at the console, against a real daemon
//! on the emulator, through [`crate::console_harness`].

use crate::console_harness::*;
use crate::support;

const PROMPT: &str = "kioskpay kari> ";

/// Sessions the emulator was asked to create, for any reference.
async fn sessions(base: &str) -> Vec<String> {
    let ledger = support::ledger(base).await;
    ledger["sessions"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|s| s["merchant_reference"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_scanner_shows_the_next_scan_decoded_or_refused_and_never_pays_it() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    let mut daemon = Daemon::start(&site, &base).await;
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;

    let help = console.ask("help test", PROMPT).await;
    assert!(
        help.contains("Example:") && help.contains("test scanner"),
        "{help}"
    );
    let refused = console.ask("test scanner", PROMPT).await;
    assert!(refused.contains("maintenance on first"), "{refused}");

    console.line("maintenance on");
    console.expect("Maintenance on").await;
    assert!(kiosk_state(&site, "technician").await);

    console.line("test scanner");
    console.expect("Scan a code now").await;
    daemon.scan("25.00;HWTEST-1");
    let shown = console.expect(PROMPT).await;
    assert!(
        shown.contains("format     plain")
            && shown.contains("amount     NOK 25.00")
            && shown.contains("reference  HWTEST-1")
            && shown.contains("nothing was paid"),
        "{shown}"
    );

    console.line("test scanner");
    console.expect("Scan a code now").await;
    daemon.scan("twenty crowns");
    let shown = console.expect(PROMPT).await;
    assert!(
        shown.contains("refused ") && shown.contains("would not charge"),
        "{shown}"
    );

    // ^C ends the wait; the next scan is the flow's again, which refuses it in maintenance.
    console.line("test scanner");
    console.expect("Scan a code now").await;
    console.type_bytes(b"\x03");
    console.expect("stopped before a scan").await;
    console.expect(PROMPT).await;
    daemon.scan("26.00;AFTER-THE-TEST");

    console.line("maintenance off");
    console.expect("Maintenance off").await;
    assert!(kiosk_state(&site, "idle").await);
    // Scans reach the flow in order: once this payment is over, any earlier scan that were
    // kept back for later would have been paid before it.
    daemon.scan("27.00;BACK-ON-SALE");
    console.expect("* payment finished: kiosk-1-").await;
    let created = sessions(&base).await;
    assert_eq!(
        created.len(),
        1,
        "only the scan after maintenance is paid: {created:?}"
    );

    let audit = std::fs::read_to_string(site.state().join("audit.log")).unwrap();
    assert!(audit.matches("test scanner").count() >= 4, "{audit}");
    console.stop();
    daemon.stop();
}
