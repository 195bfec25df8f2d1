//! `refund`, `void` and `payment REF` as a technician uses them: the real console on a pty, the
//! real daemon on the emulator, and the emulator's ledger as the judge of what money moved.
//! Crashes between the refund journal and the refund call use the daemon's crash hooks
//! (`KIOSKPAY_CRASH_AFTER_REFUND_JOURNAL`, `KIOSKPAY_CRASH_AFTER_REFUND_CALL`).

use std::time::Duration;

use crate::console_harness::*;
use crate::support;

const CONFIRM: &str = "Type yes to go on: ";

/// Scans a cart of `amount` (major units) and waits until the journal shows it approved;
/// returns its merchant reference.
async fn approved_payment(site: &Site, daemon: &mut Daemon, amount: &str, cart: &str) -> String {
    daemon.scan(&format!("{amount};{cart}"));
    let state = site.state();
    support::wait_for(Duration::from_secs(60), async || {
        let replay = kioskpay::journal::read_only(&state).ok()?;
        replay
            .payments
            .iter()
            .find(|p| {
                p.cart_reference.as_deref() == Some(cart)
                    && p.outcome == Some(kioskpay::journal::Outcome::Approved)
            })
            .map(|p| p.merchant_reference.clone())
    })
    .await
    .expect("the payment was never approved")
}

/// What the emulator booked as refunded on the payment `reference`.
async fn refunded(base: &str, reference: &str) -> u64 {
    let ledger = support::ledger(base).await;
    let txs = support::transactions_for(&ledger, reference);
    assert_eq!(txs.len(), 1, "{ledger}");
    txs[0]["refunded_amount"].as_u64().unwrap()
}

/// The state of the refund `refund_reference` in the refund journal, once it has one.
fn refund_state(site: &Site, refund_reference: &str) -> Option<String> {
    let replayed = kioskpay::refund::journal::read_only(&site.state()).ok()?;
    replayed
        .get(refund_reference)
        .map(|r| r.state.as_str().to_string())
}

/// Types `refund WORDS`, answers the confirmation with yes and returns the answer.
async fn refund(console: &mut Console, words: &str) -> String {
    console.line(&format!("refund {words}"));
    let shown = console.expect(CONFIRM).await;
    console.line("yes");
    let answer = console.expect(PROMPT).await;
    format!("{shown}{answer}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_technician_refunds_part_then_the_rest_and_never_more_than_was_paid() {
    let Some(site) = Site::new("refund") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    let mut daemon = Daemon::start(&site, &base).await;
    let reference = approved_payment(&site, &mut daemon, "399.00", "REFUND-1").await;
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;

    // Not confirmed: nothing happens.
    console.line(&format!("refund {reference} 100,00"));
    let shown = console.expect(CONFIRM).await;
    assert!(
        shown.contains("captured     NOK 399.00") && shown.contains("refundable   NOK 399.00"),
        "{shown}"
    );
    console.line("no");
    console
        .expect("refund not confirmed; nothing was sent")
        .await;
    assert_eq!(refunded(&base, &reference).await, 0);

    let answer = refund(&mut console, &format!("{reference} 100,00")).await;
    assert!(
        answer.contains("Present the card on the terminal")
            && answer.contains(&format!(
                "Refunded NOK 100.00 of payment {reference} (refund {reference}-R1); the transaction is now PARTIALLY_REFUNDED"
            )),
        "{answer}"
    );
    assert_eq!(refunded(&base, &reference).await, 10000);

    // More than is left: refused before anything is asked or sent.
    let refused = console
        .ask(&format!("refund {reference} 300"), PROMPT)
        .await;
    assert!(
        refused.contains("NOK 300.00 is more than the NOK 299.00 still refundable")
            && !refused.contains(CONFIRM),
        "{refused}"
    );
    let refused = console
        .ask(&format!("refund {reference} 1.001"), PROMPT)
        .await;
    assert!(refused.contains("AMOUNT:"), "{refused}");
    assert_eq!(refunded(&base, &reference).await, 10000);

    // The rest, by default.
    let answer = refund(&mut console, &reference).await;
    assert!(
        answer.contains("Refunded NOK 299.00") && answer.contains("now REFUNDED"),
        "{answer}"
    );
    assert_eq!(refunded(&base, &reference).await, 39900);
    let nothing = console.ask(&format!("refund {reference}"), PROMPT).await;
    assert!(nothing.contains("nothing to refund"), "{nothing}");

    let shown = console.ask(&format!("payment {reference}"), PROMPT).await;
    assert!(
        shown.contains("state        approved")
            && shown.contains(&format!("{reference}-R1  NOK 100.00  refunded  by kari"))
            && shown.contains(&format!("{reference}-R2  NOK 299.00  refunded  by kari"))
            && shown.contains("dintero      REFUNDED  captured NOK 399.00  refunded NOK 399.00"),
        "{shown}"
    );
    // A captured payment is not voided.
    let refused = console.ask(&format!("void {reference}"), PROMPT).await;
    assert!(
        refused.contains("it is captured") && refused.contains("refund it instead"),
        "{refused}"
    );
    // The kiosk went back to sale after each refund.
    assert!(kiosk_state(&site, "idle").await);

    let audit = std::fs::read_to_string(site.state().join("audit.log")).unwrap();
    assert!(
        audit.contains(&format!("refund {reference} 100,00")),
        "{audit}"
    );
    audit_verify(&site);
    assert_no_pin(&site, &[&console.screen()]);
    console.stop();
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_technician_may_look_at_a_payment_but_not_refund_it() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    let mut daemon = Daemon::start(&site, &base).await;
    let reference = approved_payment(&site, &mut daemon, "25.00", "SERVICE-1").await;
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;
    let refused = console.ask(&format!("refund {reference}"), PROMPT).await;
    assert!(
        refused.contains("refund: the service role may not"),
        "{refused}"
    );
    let refused = console.ask(&format!("void {reference}"), PROMPT).await;
    assert!(
        refused.contains("void: the service role may not"),
        "{refused}"
    );
    let shown = console.ask(&format!("payment {reference}"), PROMPT).await;
    assert!(
        shown.contains("dintero      CAPTURED") && shown.contains("refundable NOK 25.00"),
        "{shown}"
    );
    assert_eq!(refunded(&base, &reference).await, 0);
    console.stop();
    daemon.stop();
}

/// `refund REF 100,00` with the daemon killed by the crash hook `env`: the first refund is
/// left `sent` with `booked` refunded in the ledger. Returns the payment's reference and the
/// console (logged in).
async fn crash_during_refund(
    site: &Site,
    base: &str,
    env: (&str, &str),
    booked: u64,
) -> (String, Console) {
    let mut daemon = Daemon::start_with(site, base, &[env]).await;
    let reference = approved_payment(site, &mut daemon, "399.00", "CRASH-1").await;
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;
    console.line(&format!("refund {reference} 100,00"));
    console.expect(CONFIRM).await;
    console.line("yes");
    console.expect("the connection to the daemon failed").await;
    console.expect(PROMPT).await;
    let status = daemon.child.wait().unwrap();
    assert!(!status.success(), "the crash hook did not kill the daemon");
    let first = format!("{reference}-R1");
    assert_eq!(refund_state(site, &first).as_deref(), Some("sent"));
    assert_eq!(refunded(base, &reference).await, booked);
    (reference, console)
}

/// [`crash_during_refund`], then the daemon starts again (with `restart_env`) and its recovery
/// settles the refund as `settled` without sending anything. Returns the reference, the console
/// and the daemon.
async fn crash_and_restart(
    site: &Site,
    base: &str,
    env: (&str, &str),
    booked: u64,
    settled: &str,
    restart_env: &[(&str, &str)],
) -> (String, Console, Daemon) {
    let (reference, console) = crash_during_refund(site, base, env, booked).await;
    let first = format!("{reference}-R1");
    let daemon = Daemon::start_with(site, base, restart_env).await;
    assert!(
        support::wait_until(Duration::from_secs(30), || {
            refund_state(site, &first).as_deref() == Some(settled)
        })
        .await,
        "recovery never settled the refund as {settled}"
    );
    assert_eq!(
        refunded(base, &reference).await,
        booked,
        "recovery refunded"
    );
    (reference, console, daemon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_refund_call_leaves_it_not_done_and_it_can_be_refunded_once() {
    let Some(site) = Site::new("refund") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    // The second refund journal append is `sent`, written just before the call. A `sent`
    // refund without a trace may still complete on the terminal for 10 minutes (the next
    // test); this one was never sent, and the test hook shortens the wait to nothing.
    let hook = ("KIOSKPAY_CRASH_AFTER_REFUND_JOURNAL", "2");
    let settle_now = [("KIOSKPAY_REFUND_SETTLE_AFTER_MS", "0")];
    let (reference, mut console, daemon) =
        crash_and_restart(&site, &base, hook, 0, "not_done", &settle_now).await;
    let shown = console.ask(&format!("payment {reference}"), PROMPT).await;
    assert!(
        shown.contains(&format!("{reference}-R1  NOK 100.00  not_done"))
            && shown.contains("refund again if the customer is owed"),
        "{shown}"
    );
    let answer = refund(&mut console, &format!("{reference} 100,00")).await;
    assert!(
        answer.contains(&format!("(refund {reference}-R2)")),
        "{answer}"
    );
    assert_eq!(refunded(&base, &reference).await, 10000);
    console.stop();
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_refund_call_is_recovered_as_refunded_without_a_second_refund() {
    let Some(site) = Site::new("refund") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    let hook = ("KIOSKPAY_CRASH_AFTER_REFUND_CALL", "1");
    let (reference, mut console, daemon) =
        crash_and_restart(&site, &base, hook, 10000, "refunded", &[]).await;
    let shown = console.ask(&format!("payment {reference}"), PROMPT).await;
    assert!(
        shown.contains(&format!("{reference}-R1  NOK 100.00  refunded"))
            && shown.contains("refundable NOK 299.00"),
        "{shown}"
    );
    console.stop();
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_that_completes_after_a_crash_and_restart_is_not_settled_as_not_done() {
    let Some(site) = Site::new("refund") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    // Dintero takes the refund but the answer never comes, and the cardholder approves it on
    // the terminal 8 s later, as a `202` refund completes; the daemon dies right after the call.
    let faults = serde_json::json!({"rules": [
        {"route": "POST /v1/transactions/{id}/refund", "kind": "late_work", "delay_ms": 8000, "count": 1}
    ]});
    support::request("POST", &format!("{base}/_emulator/faults"), Some(faults)).await;
    let hook = ("KIOSKPAY_CRASH_AFTER_REFUND_CALL", "1");
    let (reference, mut console) = crash_during_refund(&site, &base, hook, 0).await;
    let first = format!("{reference}-R1");

    // Restarted before the refund lands: no trace on the transaction yet, so it stays open,
    // and a second refund of the payment is refused rather than sent beside it.
    let daemon = Daemon::start(&site, &base).await;
    let again = refund(&mut console, &format!("{reference} 100,00")).await;
    assert!(
        again.contains(&format!("refund {first} of this payment was sent at"))
            && again.contains("may still complete on the terminal"),
        "{again}"
    );
    assert_eq!(refund_state(&site, &first).as_deref(), Some("sent"));

    // It lands; the daemon's own look-ups settle it, with exactly one refund booked.
    assert!(
        support::wait_until(Duration::from_secs(60), || {
            refund_state(&site, &first).as_deref() == Some("refunded")
        })
        .await,
        "the refund that landed was never settled as refunded"
    );
    assert_eq!(refunded(&base, &reference).await, 10000);
    let shown = console.ask(&format!("payment {reference}"), PROMPT).await;
    assert!(
        shown.contains(&format!("{first}  NOK 100.00  refunded"))
            && shown.contains("refundable NOK 299.00"),
        "{shown}"
    );
    console.stop();
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_left_open_because_dintero_could_not_be_read_is_resolved_by_a_technician() {
    let Some(site) = Site::new("refund") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    let hook = ("KIOSKPAY_CRASH_AFTER_REFUND_CALL", "1");
    let (reference, mut console) = crash_during_refund(&site, &base, hook, 10000).await;
    // The restarted daemon cannot read the transaction: its recovery leaves the refund open.
    let faults = serde_json::json!({"rules": [
        {"route": "GET /v1/transactions/{id}", "kind": "status", "status": 503}
    ]});
    support::request("POST", &format!("{base}/_emulator/faults"), Some(faults)).await;
    let daemon = Daemon::start(&site, &base).await;
    let log = site.path().join("daemon.log");
    assert!(
        support::wait_until(Duration::from_secs(30), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("an open refund cannot be looked up yet")
        })
        .await,
        "the restarted daemon never tried the open refund"
    );
    let first = format!("{reference}-R1");
    assert_eq!(refund_state(&site, &first).as_deref(), Some("sent"));
    support::request("DELETE", &format!("{base}/_emulator/faults"), None).await;

    console.line(&format!("resolve {reference}"));
    let plan = console.expect(CONFIRM).await;
    assert!(
        plan.contains(&format!("refund {first} of NOK 100.00 is sent"))
            && plan.contains("never sent again"),
        "{plan}"
    );
    console.line("yes");
    let answer = console.expect(PROMPT).await;
    assert!(
        answer.contains(&format!("Resolved: payment {reference} is approved"))
            && answer.contains(&format!("refund {first} is refunded")),
        "{answer}"
    );
    assert_eq!(refunded(&base, &reference).await, 10000);
    let again = console.ask(&format!("resolve {reference}"), PROMPT).await;
    assert!(again.contains("nothing to resolve"), "{again}");
    console.stop();
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorized_payment_not_yet_captured_is_voided() {
    let Some(site) = Site::new("refund") else {
        return;
    };
    // Real time: an amount ending in 58 stays AUTHORIZED for 20 s before its capture, the
    // window a void has.
    let emulator = support::emulator(1.0).await;
    let base = emulator.base_url();
    let mut daemon = Daemon::start(&site, &base).await;
    daemon.scan("100.58;VOID-1");
    let state = site.state();
    let reference = support::wait_for(Duration::from_secs(30), async || {
        let replay = kioskpay::journal::read_only(&state).ok()?;
        let p = replay
            .payments
            .iter()
            .find(|p| p.cart_reference.as_deref() == Some("VOID-1"))?;
        p.transaction_id.as_ref()?;
        let ledger = support::ledger(&base).await;
        let txs = support::transactions_for(&ledger, &p.merchant_reference);
        (txs.first()?["status"] == "AUTHORIZED").then(|| p.merchant_reference.clone())
    })
    .await
    .expect("the payment never became AUTHORIZED");
    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;
    let report = console.ask("reconcile", PROMPT).await;
    assert!(
        report.contains(&format!("{:<22} {reference}", "authorization open"))
            && report.contains("dintero AUTHORIZED")
            && report.contains("0 approved without a capture, 1 authorizations open"),
        "{report}"
    );
    console.line(&format!("void {reference}"));
    let shown = console.expect(CONFIRM).await;
    assert!(
        shown.contains("AUTHORIZED") && shown.contains("the customer is not charged"),
        "{shown}"
    );
    console.line("yes");
    let answer = console.expect(PROMPT).await;
    assert!(
        answer.contains(&format!(
            "Voided: payment {reference} is AUTHORIZATION_VOIDED"
        )),
        "{answer}"
    );
    let ledger = support::ledger(&base).await;
    let txs = support::transactions_for(&ledger, &reference);
    assert_eq!(txs[0]["status"], "AUTHORIZATION_VOIDED", "{ledger}");
    let refused = console.ask(&format!("void {reference}"), PROMPT).await;
    assert!(refused.contains("not an open authorization"), "{refused}");
    console.stop();
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_a_capture_the_journal_lost_and_an_approval_dintero_never_captured() {
    let Some(site) = Site::new("service") else {
        return;
    };
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    let mut daemon = Daemon::start(&site, &base).await;
    let lost = approved_payment(&site, &mut daemon, "10.00", "RECONCILE-1").await;
    let kept = approved_payment(&site, &mut daemon, "20.00", "RECONCILE-2").await;
    // An amount ending in 51 is declined.
    daemon.scan("10.51;RECONCILE-3");
    let state = site.state();
    let declined = support::wait_for(Duration::from_secs(30), async || {
        let replay = kioskpay::journal::read_only(&state).ok()?;
        replay
            .payments
            .iter()
            .find(|p| p.cart_reference.as_deref() == Some("RECONCILE-3") && p.outcome.is_some())
            .map(|p| p.merchant_reference.clone())
    })
    .await
    .expect("the declined payment never ended");
    // The journal loses the first payment's outcome, as a card that dropped a page would, and
    // shows the declined one approved, as a journal written by a faulty build might: each line
    // framed with a valid checksum, so only Dintero can tell.
    let path = site.state().join(kioskpay::journal::FILE_NAME);
    let text = std::fs::read_to_string(&path).unwrap();
    let is_final_of = |l: &str, reference: &str| {
        l.contains("\"type\":\"final\"") && l.contains(&format!("\"{reference}\""))
    };
    let edited: String = text
        .lines()
        .filter(|l| !is_final_of(l, &lost))
        .map(|l| {
            if !is_final_of(l, &declined) {
                return format!("{l}\n");
            }
            let json = kioskpay::journal::unframe_line(l.as_bytes()).unwrap();
            let mut record: serde_json::Value = serde_json::from_slice(json).unwrap();
            record["outcome"] = "approved".into();
            String::from_utf8(kioskpay::journal::frame_line(
                &serde_json::to_vec(&record).unwrap(),
            ))
            .unwrap()
        })
        .collect();
    assert_ne!(edited, text, "the final records were not found");
    std::fs::write(&path, edited).unwrap();

    let mut console = site.console("console", &[], &[]);
    console.wake().await;
    console.login(KARI_PIN).await;
    let report = console.ask("reconcile", PROMPT).await;
    assert!(
        report.contains(&format!("captured, not approved {lost}"))
            && report.contains("dintero CAPTURED")
            && report.contains(&format!("{:<22} {declined}", "approved, no capture"))
            && report.contains("dintero FAILED")
            && !report.contains(&kept)
            && report.contains(
                "1 captured but not approved in the journal, 1 approved without a capture, 0 authorizations open"
            ),
        "{report}"
    );
    let today = time::OffsetDateTime::now_utc().date();
    let report = console
        .ask(&format!("reconcile --since {today}"), PROMPT)
        .await;
    assert!(
        report.contains(&format!("since {today}T00:00:00Z")),
        "{report}"
    );
    let refused = console.ask("reconcile --since yesterday", PROMPT).await;
    assert!(refused.contains("not a date"), "{refused}");
    console.stop();
    daemon.stop();
}
