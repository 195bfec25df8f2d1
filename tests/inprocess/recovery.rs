//! Recovery at start-up, one test per branch, through the whole kiosk (flow, journal, real HTTP
//! client) against the emulator on loopback.
//!
//! Each test leaves a state directory exactly as a kiosk that lost power at that point would
//! have left it, starts a kiosk on it and checks three things against each other: the report
//! the flow gives, the journal it leaves (`kioskpay journal` reads the same file) and the
//! emulator's ledger, which is the ground truth. Where the kiosk itself can get there, it does:
//! it is stopped mid-payment and started again on the same directory (the journal is written
//! before every effect, so a stop and a power cut at the same moment leave the same journal).
//! Where only a power cut gets there (between the intent and the answer to the create call), the
//! journal is written with the same `Journal::append` the daemon uses.

use crate::support;

use std::path::Path;
use std::time::Duration;

use kioskpay::dintero::Gateway;
use kioskpay::journal::{Journal, Outcome, PaymentRecord, Record};
use kioskpay::payment::flow::PaymentReport;
use kioskpay::payment::Final;
use kioskpay::state::{CancelledBy, DeclineKind, KioskState, RefusalReason};
use serde_json::{json, Value};
use support::kiosk::{boot, client, request, start, Running};
use tokio::io::AsyncWriteExt;

const TERMINAL: &str = "T12345678-T0001";
const PROFILE: &str = "T12345678.kiosk-in-person";
/// The merchant reference of the journals written by hand (sequence 1 on 2026-11-24).
const REFERENCE: &str = "kiosk-1-20261124-000001";

/// The intent a kiosk writes before its create call, as the first record of a journal.
fn journal_intent(dir: &Path, amount: u64) {
    let (mut journal, _) = Journal::open(&dir.join("state")).unwrap();
    journal
        .append(&Record::Intent {
            merchant_reference: REFERENCE.into(),
            amount,
            currency: "NOK".into(),
            cart_reference: None,
            terminal_id: TERMINAL.into(),
            sequence: 1,
            at: "2026-11-24T08:00:00Z".into(),
        })
        .unwrap();
}

/// Does what the lost create call did at Dintero: starts the payment on the terminal.
async fn created_at_dintero(base: &str, amount: u64) -> String {
    client(base, "demo-secret")
        .create_session(&request(REFERENCE, amount, amount, Some(TERMINAL), PROFILE))
        .await
        .expect("the emulator creates the session")
        .id
}

/// Starts a kiosk on `dir`'s journal and waits for the one payment it recovers.
async fn recover(
    emulator: kioskpay::emulator::EmulatorHandle,
    dir: tempfile::TempDir,
    reference: &str,
) -> (Running, PaymentReport) {
    let mut k = boot(emulator, dir, "formats = [\"plain\"]", "");
    let report = tokio::time::timeout(Duration::from_secs(60), k.kiosk.reports.recv())
        .await
        .expect("recovery reports within 60 s")
        .expect("kiosk running");
    assert!(report.recovered, "{report:?}");
    assert_eq!(report.merchant_reference, reference);
    (k, report)
}

/// The ledger's only transaction of `reference`, once `done` says it is where the test wants it.
async fn ledger_transaction(base: &str, reference: &str, done: impl Fn(&str) -> bool) -> Value {
    let found = support::wait_for(Duration::from_secs(30), async || {
        let ledger = support::ledger(base).await;
        match support::transactions_for(&ledger, reference)[..] {
            [tx] if done(tx["status"].as_str().unwrap_or_default()) => Some(tx.clone()),
            _ => None,
        }
    })
    .await;
    match found {
        Some(tx) => tx,
        None => panic!(
            "the ledger never showed the transaction of {reference} as wanted: {}",
            support::ledger(base).await
        ),
    }
}

/// Scans a cart and stops the kiosk as soon as its journal shows `reached` for the payment;
/// returns the emulator, the state directory, the emulator's URL and the merchant reference.
async fn stopped_mid_payment(
    time_scale: f64,
    line: &str,
    reached: impl Fn(&PaymentRecord) -> bool,
) -> (
    kioskpay::emulator::EmulatorHandle,
    tempfile::TempDir,
    String,
    String,
) {
    let mut k = start(time_scale, "").await;
    k.idle().await;
    k.scanner
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    let state = k.dir.path().join("state");
    let got_there = support::wait_until(Duration::from_secs(30), || {
        kioskpay::journal::read_only(&state)
            .unwrap()
            .payments
            .first()
            .is_some_and(&reached)
    })
    .await;
    assert!(
        got_there,
        "the journal never got there: {:?}",
        kioskpay::journal::read_only(&state)
    );
    let base = k.base.clone();
    let (emulator, dir) = k.halt().await;
    let journal = kioskpay::journal::read_only(&dir.path().join("state")).unwrap();
    assert_eq!(journal.payments.len(), 1);
    assert_eq!(
        journal.payments[0].outcome, None,
        "stopped before the outcome"
    );
    let reference = journal.payments[0].merchant_reference.clone();
    (emulator, dir, base, reference)
}

/// The journal after recovery: one payment, final with `outcome`, matching the ledger's
/// transaction id when there is one.
fn assert_journal(dir: &Path, reference: &str, outcome: Outcome, transaction_id: Option<&str>) {
    let journal = kioskpay::journal::read_only(&dir.join("state")).unwrap();
    assert!(journal.problems.is_empty(), "{:?}", journal.problems);
    let payment = journal
        .payments
        .iter()
        .find(|p| p.merchant_reference == reference)
        .expect("the recovered payment is in the journal");
    assert_eq!(payment.outcome, Some(outcome), "{payment:?}");
    assert_eq!(payment.transaction_id.as_deref(), transaction_id);
}

/// `report` is an approval that the ledger and the journal agree on: one session for its
/// reference, one transaction, `CAPTURED`, with the id the report and the journal name.
async fn assert_approved_once(k: &Running, report: &PaymentReport) -> Value {
    let Final::Approved {
        transaction_id,
        status,
        ..
    } = &report.outcome
    else {
        panic!("approved: {report:?}");
    };
    assert_eq!(status.as_str(), "CAPTURED", "{report:?}");
    let reference = &report.merchant_reference;
    let ledger = support::ledger(&k.base).await;
    assert_eq!(
        support::sessions_for(&ledger, reference).len(),
        1,
        "created once: {ledger}"
    );
    let txs = support::transactions_for(&ledger, reference);
    assert_eq!(txs.len(), 1, "{ledger}");
    assert_eq!(
        (txs[0]["id"].as_str(), txs[0]["status"].as_str()),
        (Some(transaction_id.as_str()), Some("CAPTURED"))
    );
    assert_journal(
        k.dir.path(),
        reference,
        Outcome::Approved,
        Some(transaction_id),
    );
    ledger
}

/// After recovery the kiosk takes carts again, continuing the journal's sequence.
async fn takes_the_next_cart(k: &mut Running) {
    k.idle().await;
    let next = k.scan("10.00").await;
    assert!(!next.recovered);
    assert!(
        next.merchant_reference.ends_with("-000002"),
        "{}",
        next.merchant_reference
    );
    assert!(matches!(next.outcome, Final::Approved { .. }), "{next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_yet_and_none_at_dintero_ends_not_created_without_creating_one() {
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    let dir = tempfile::tempdir().unwrap();
    // The power went after the intent and before the create call reached Dintero.
    journal_intent(dir.path(), 39900);
    let (mut k, report) = recover(emulator, dir, REFERENCE).await;
    assert!(
        matches!(report.outcome, Final::NotCreated { .. }),
        "{report:?}"
    );
    let ledger = support::ledger(&base).await;
    assert!(
        support::sessions_for(&ledger, REFERENCE).is_empty(),
        "recovery never creates a session: {ledger}"
    );
    assert_journal(k.dir.path(), REFERENCE, Outcome::NotCreated, None);
    takes_the_next_cart(&mut k).await;
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_response_is_found_by_reference_and_followed_to_captured() {
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    let dir = tempfile::tempdir().unwrap();
    // The create call went through, and the power went before its answer reached the journal.
    journal_intent(dir.path(), 39900);
    created_at_dintero(&base, 39900).await;
    let (mut k, report) = recover(emulator, dir, REFERENCE).await;
    assert_approved_once(&k, &report).await;
    takes_the_next_cart(&mut k).await;
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_a_transaction_is_cancelled_so_it_cannot_start_late() {
    // Amount ending in 55: the terminal never picks the session up.
    let (emulator, dir, base, reference) =
        stopped_mid_payment(0.01, "20.55", |p| p.session_id.is_some()).await;
    let (mut k, report) = recover(emulator, dir, &reference).await;
    assert_eq!(
        report.outcome,
        Final::Cancelled {
            transaction_id: None,
            by: CancelledBy::Kiosk
        }
    );
    let ledger = support::ledger(&base).await;
    let sessions = support::sessions_for(&ledger, &reference);
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0]["cancelled_at"].is_string(), "{ledger}");
    assert!(support::transactions_for(&ledger, &reference).is_empty());
    assert_journal(k.dir.path(), &reference, Outcome::Cancelled, None);
    takes_the_next_cart(&mut k).await;
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorized_transaction_is_followed_until_captured_and_never_cancelled() {
    // Amount ending in 58: AUTHORIZED for 20 s before the capture, 4 s at this time scale.
    let (emulator, dir, base, reference) =
        stopped_mid_payment(0.2, "399.58", |p| p.state == "processing").await;
    let tx = ledger_transaction(&base, &reference, |s| s != "INITIATED").await;
    assert_eq!(
        tx["status"], "AUTHORIZED",
        "still authorized when the kiosk starts again"
    );
    let (mut k, report) = recover(emulator, dir, &reference).await;
    let ledger = assert_approved_once(&k, &report).await;
    assert_eq!(report.outcome.transaction_id(), tx["id"].as_str());
    assert!(
        support::sessions_for(&ledger, &reference)[0]["cancelled_at"].is_null(),
        "a payment the terminal took is followed, never voided: {ledger}"
    );
    takes_the_next_cart(&mut k).await;
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_captured_while_the_kiosk_was_off_is_recorded_approved() {
    let (emulator, dir, base, reference) =
        stopped_mid_payment(0.2, "399.58", |p| p.state == "processing").await;
    // The kiosk stays off until the capture.
    let tx = ledger_transaction(&base, &reference, |s| s == "CAPTURED").await;
    let (mut k, report) = recover(emulator, dir, &reference).await;
    assert_approved_once(&k, &report).await;
    assert_eq!(report.outcome.transaction_id(), tx["id"].as_str());
    takes_the_next_cart(&mut k).await;
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_declined_while_the_kiosk_was_off_is_recorded_declined() {
    // Amount ending in 51: the issuer declines 3 s after pickup, 0.6 s at this time scale.
    let (emulator, dir, base, reference) =
        stopped_mid_payment(0.2, "149.51", |p| p.transaction_id.is_some()).await;
    let tx = ledger_transaction(&base, &reference, |s| s == "FAILED").await;
    let (mut k, report) = recover(emulator, dir, &reference).await;
    assert_eq!(
        report.outcome,
        Final::Declined {
            transaction_id: tx["id"].as_str().unwrap().into(),
            kind: DeclineKind::Declined
        }
    );
    assert_journal(
        k.dir.path(),
        &reference,
        Outcome::Declined,
        tx["id"].as_str(),
    );
    takes_the_next_cart(&mut k).await;
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_api_down_at_boot_the_kiosk_shows_checking_takes_no_cart_and_resolves_later() {
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    let dir = tempfile::tempdir().unwrap();
    journal_intent(dir.path(), 39900);
    created_at_dintero(&base, 39900).await;
    // Every route the kiosk calls answers 503 until the faults are cleared.
    let rules: Vec<Value> = [
        "POST /v1/accounts/{aid}/auth/token",
        "GET /v1/accounts/{aid}/terminals/{id}",
        "GET /v1/sessions",
        "GET /v1/sessions/{id}",
        "POST /v1/sessions/{id}/cancel",
        "POST /v1/sessions-profile",
        "GET /v1/transactions",
        "GET /v1/transactions/{id}",
    ]
    .iter()
    .map(|route| json!({"route": route, "kind": "status", "status": 503}))
    .collect();
    let faults = format!("{base}/_emulator/faults");
    support::request("POST", &faults, Some(json!({"seed": 1, "rules": rules}))).await;

    let mut k = boot(emulator, dir, "formats = [\"plain\"]", "");
    let checking = KioskState::Checking {
        reference: REFERENCE.into(),
    };
    let mut states = k.kiosk.state.clone();
    tokio::time::timeout(Duration::from_secs(30), states.wait_for(|s| *s == checking))
        .await
        .expect("the checking screen with the reference")
        .unwrap();
    // A customer scans while the old payment is unresolved: refused, nothing created. (Another
    // amount than the next cart's: the scanner would drop that one as a repeated scan.)
    k.scanner.write_all(b"12.00\r\n").await.unwrap();
    let busy = KioskState::Refused {
        reason: RefusalReason::Busy,
    };
    tokio::time::timeout(Duration::from_secs(30), states.wait_for(|s| *s == busy))
        .await
        .expect("the cart refused while the old payment is unresolved")
        .unwrap();
    // The kiosk goes on asking after the refusal, and nothing answers: two more failed calls.
    let failed_calls = async || {
        let report = support::request("GET", &faults, None).await;
        report["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
    };
    let refused_at = failed_calls().await;
    let asked_again = support::wait_for(Duration::from_secs(30), async || {
        (failed_calls().await >= refused_at + 2).then_some(())
    })
    .await;
    assert!(asked_again.is_some(), "the kiosk stopped asking Dintero");
    assert!(
        k.kiosk.reports.try_recv().is_err(),
        "nothing resolves while the API is down"
    );
    assert_ne!(
        *k.kiosk.state.borrow(),
        KioskState::Idle,
        "no cart is taken before recovery"
    );

    support::request("DELETE", &faults, None).await;
    let report = tokio::time::timeout(Duration::from_secs(60), k.kiosk.reports.recv())
        .await
        .expect("recovered once the API answers")
        .unwrap();
    assert!(
        report.recovered && report.merchant_reference == REFERENCE,
        "{report:?}"
    );
    let ledger = assert_approved_once(&k, &report).await;
    assert_eq!(
        ledger["sessions"].as_array().unwrap().len(),
        1,
        "the cart scanned during recovery created nothing: {ledger}"
    );
    takes_the_next_cart(&mut k).await;
    k.stop().await;
}

// A create that lands after the kiosk wrote the payment off as `not_created` (see
// `kioskpay::payment::late`): the emulator's `late_work` fault closes the connection unanswered
// and creates the session 7 s later, after the kiosk's two lookups (5 s apart with this config's
// 5 s call timeout) found nothing.

/// Makes the next session creation land 7 s late, unanswered.
async fn next_create_lands_late(base: &str) {
    support::request(
        "POST",
        &format!("{base}/_emulator/faults"),
        Some(
            json!({"rules": [{"route": "POST /v1/sessions-profile", "kind": "late_work",
            "delay_ms": 7000, "count": 1}]}),
        ),
    )
    .await;
}

/// A kiosk whose first payment (`line`) met a create that lands 7 s late, and that wrote it
/// off as `not_created`.
async fn written_off_by_a_late_create(
    time_scale: f64,
    extra: &str,
    line: &str,
) -> (Running, PaymentReport) {
    let mut k = start(time_scale, extra).await;
    k.idle().await;
    next_create_lands_late(&k.base).await;
    let written_off = k.scan(line).await;
    assert!(
        matches!(written_off.outcome, Final::NotCreated { .. }),
        "{written_off:?}"
    );
    (k, written_off)
}

async fn next_report(k: &mut Running) -> PaymentReport {
    tokio::time::timeout(Duration::from_secs(60), k.kiosk.reports.recv())
        .await
        .expect("a report within 60 s")
        .expect("kiosk running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_lands_after_the_kiosk_gave_up_is_found_and_its_payment_recorded() {
    let (mut k, written_off) =
        written_off_by_a_late_create(0.01, "health_interval_s = 1", "399.00").await;
    // The terminal takes the late payment and the customer pays; the kiosk finds it at a
    // health check and records what really happened.
    let found = next_report(&mut k).await;
    assert_eq!(found.merchant_reference, written_off.merchant_reference);
    assert!(found.recovered, "{found:?}");
    assert_approved_once(&k, &found).await;
    let log = std::fs::read_to_string(k.dir.path().join("state/journal.log")).unwrap();
    assert!(
        log.contains(r#""type":"reopened""#),
        "reopened before it was settled: {log}"
    );
    takes_the_next_cart(&mut k).await;
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_create_nobody_picks_up_is_cancelled_as_soon_as_it_blocks_the_terminal() {
    // The default health interval (60 s): only the 409 makes the kiosk look at once.
    // Amount ending in 55: the terminal never picks it up, and stays busy with it.
    let (mut k, written_off) = written_off_by_a_late_create(0.01, "", "20.55").await;
    let reference = written_off.merchant_reference.clone();
    let landed = support::wait_for(Duration::from_secs(30), async || {
        let ledger = support::ledger(&k.base).await;
        (!support::sessions_for(&ledger, &reference).is_empty()).then_some(())
    })
    .await;
    assert!(landed.is_some(), "the late create never landed");
    // The next customer: Dintero says the terminal is busy.
    let busy = k.scan("10.00").await;
    assert!(
        matches!(&busy.outcome, Final::NotCreated { reason } if reason.contains("409")),
        "{busy:?}"
    );
    let found = next_report(&mut k).await;
    assert_eq!(found.merchant_reference, reference);
    assert_eq!(
        found.outcome,
        Final::Cancelled {
            transaction_id: None,
            by: CancelledBy::Kiosk
        }
    );
    let ledger = support::ledger(&k.base).await;
    assert!(
        support::sessions_for(&ledger, &reference)[0]["cancelled_at"].is_string(),
        "{ledger}"
    );
    assert_journal(k.dir.path(), &reference, Outcome::Cancelled, None);
    // The terminal is free again (another amount: the scanner drops a repeated scan).
    let next = k.scan("12.00").await;
    assert!(matches!(next.outcome, Final::Approved { .. }), "{next:?}");
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_written_off_before_a_restart_is_still_watched_after_it() {
    let emulator = support::emulator(0.01).await;
    let base = emulator.base_url();
    let dir = tempfile::tempdir().unwrap();
    journal_intent(dir.path(), 39900);
    {
        let (mut journal, _) = Journal::open(&dir.path().join("state")).unwrap();
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        journal
            .append(&Record::Final {
                merchant_reference: REFERENCE.into(),
                outcome: Outcome::NotCreated,
                transaction_id: None,
                status: None,
                at: now,
            })
            .unwrap();
    }
    // While the kiosk was off, the create it gave up on landed.
    created_at_dintero(&base, 39900).await;
    let (mut k, report) = recover(emulator, dir, REFERENCE).await;
    assert_approved_once(&k, &report).await;
    takes_the_next_cart(&mut k).await;
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_payment_the_terminal_still_prompts_for_is_withdrawn_not_collected() {
    // Amount ending in 54: the terminal prompts for 90 s (18 s at this time scale) and nobody
    // presents a card; the kiosk's first lookup comes 10 s after the write-off. The customer
    // was told this payment failed: the kiosk must not collect it.
    let (mut k, written_off) =
        written_off_by_a_late_create(0.2, "health_interval_s = 1", "30.54").await;
    let found = next_report(&mut k).await;
    assert_eq!(found.merchant_reference, written_off.merchant_reference);
    let Final::Cancelled {
        transaction_id: Some(transaction_id),
        by: CancelledBy::Kiosk,
    } = &found.outcome
    else {
        panic!("withdrawn while prompting: {found:?}");
    };
    let ledger = support::ledger(&k.base).await;
    let txs = support::transactions_for(&ledger, &found.merchant_reference);
    assert_eq!(
        (txs[0]["id"].as_str(), txs[0]["status"].as_str()),
        (Some(transaction_id.as_str()), Some("FAILED")),
        "{ledger}"
    );
    assert_journal(
        k.dir.path(),
        &found.merchant_reference,
        Outcome::Cancelled,
        Some(transaction_id),
    );
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_payment_found_unfinished_at_start_is_still_withdrawn() {
    // Killed right after journaling the reopen: the next start withdraws it as the killed
    // kiosk would have, instead of waiting for the terminal as with any other payment.
    let emulator = support::emulator(0.2).await;
    let base = emulator.base_url();
    let dir = tempfile::tempdir().unwrap();
    journal_intent(dir.path(), 3054);
    let session_id = created_at_dintero(&base, 3054).await;
    let tx = ledger_transaction(&base, REFERENCE, |s| s == "INITIATED").await;
    {
        let (mut journal, _) = Journal::open(&dir.path().join("state")).unwrap();
        for record in [
            Record::Final {
                merchant_reference: REFERENCE.into(),
                outcome: Outcome::NotCreated,
                transaction_id: None,
                status: None,
                at: "2026-11-24T08:00:06Z".into(),
            },
            Record::Reopened {
                merchant_reference: REFERENCE.into(),
                session_id,
                at: "2026-11-24T08:00:20Z".into(),
            },
        ] {
            journal.append(&record).unwrap();
        }
    }
    let (k, report) = recover(emulator, dir, REFERENCE).await;
    assert_eq!(
        report.outcome,
        Final::Cancelled {
            transaction_id: tx["id"].as_str().map(str::to_string),
            by: CancelledBy::Kiosk
        },
        "withdrawn while the terminal prompts"
    );
    assert_journal(
        k.dir.path(),
        REFERENCE,
        Outcome::Cancelled,
        tx["id"].as_str(),
    );
    k.stop().await;
}
