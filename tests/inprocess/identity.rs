//! A payment's identity cannot be borrowed: the review's scenarios, each through the whole kiosk
//! (flow, journal, real HTTP client, PNG display) against the emulator on loopback.
//!
//! In each, an earlier payment was captured under a reference the next cart could have reused,
//! and the next cart's create answer is lost, so the kiosk has to look its payment up by
//! reference. Before installation ids and identity checks, that lookup found the earlier
//! payment and reported the new cart approved with the earlier payment's money. Now the new
//! cart never gets that reference, and where a reference does repeat (a state directory restored
//! from a backup) the lookup proves the payment it finds is not this one: a conflict, never an
//! approval. Every test checks the report, the journal and the emulator's ledger, which is the
//! ground truth: exactly one capture, the earlier one, and no approval for the new cart.
//!
//! Where only a power cut gets a kiosk there (between the intent and the create call), the
//! intent is written with the journal's own `next_reference` and `append`, as the daemon does.

use crate::support;

use std::path::Path;
use std::time::Duration;

use kioskpay::journal::{self, Journal, Outcome, Record};
use kioskpay::money::{Currency, Language, Money};
use kioskpay::payment::Final;
use kioskpay::state::KioskState;
use serde_json::{json, Value};
use support::kiosk::{boot, kiosk_on, start, Running};
use tokio::io::AsyncWriteExt;

const TERMINAL: &str = "T12345678-T0001";

/// The emulator loses the answer to the next create call after doing nothing: the kiosk cannot
/// know whether a session exists and must look it up by reference.
async fn lose_next_create_answer(base: &str) {
    support::request(
        "POST",
        &format!("{base}/_emulator/faults"),
        Some(
            json!({"rules": [{"route": "POST /v1/sessions-profile", "kind": "reset", "count": 1}]}),
        ),
    )
    .await;
}

/// The ledger's captured transactions.
async fn captures(base: &str) -> Vec<Value> {
    let ledger = support::ledger(base).await;
    ledger["transactions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["status"] == "CAPTURED")
        .cloned()
        .collect()
}

/// Pays `line` and waits until the kiosk is idle again; returns the approved report.
async fn pay(k: &mut Running, line: &str) -> kioskpay::payment::flow::PaymentReport {
    k.idle().await;
    let report = k.scan(line).await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "{report:?}"
    );
    k.idle().await;
    report
}

/// Scans `line` with the create answer lost and returns the report.
async fn pay_blind(k: &mut Running, line: &str) -> kioskpay::payment::flow::PaymentReport {
    k.idle().await;
    lose_next_create_answer(&k.base).await;
    k.scanner
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), k.kiosk.reports.recv())
        .await
        .expect("an outcome within 60 s")
        .expect("kiosk running")
}

fn not_approved(report: &kioskpay::payment::flow::PaymentReport) {
    assert!(
        !matches!(report.outcome, Final::Approved { .. }),
        "another payment's money taken for this cart: {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_state_never_reuses_a_reference() {
    let mut k = start(0.01, "").await;
    let first = pay(&mut k, "100.00").await;
    let (emulator, dir) = k.halt().await;
    // Re-imaged SD card, purge and reinstall, a changed state.dir: the state is gone.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();

    let mut k = boot(emulator, dir, "formats = [\"plain\", \"gs1\"]", "");
    let second = pay_blind(&mut k, "450.00").await;
    not_approved(&second);
    assert_ne!(second.merchant_reference, first.merchant_reference);
    let captured = captures(&k.base).await;
    assert_eq!(captured.len(), 1, "{captured:?}");
    assert_eq!(captured[0]["merchant_reference"], first.merchant_reference);
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_kiosks_on_one_id_never_share_a_reference() {
    // Both keep the packaged kiosk.id = "kiosk-1"; B is paired with the second terminal.
    let mut a = start(0.01, "").await;
    let dir_b = tempfile::tempdir().unwrap();
    let (b, mut b_scanner) = kiosk_on(
        &a.base,
        dir_b.path(),
        "formats = [\"plain\"]",
        "",
        "T12345678-T0002",
    );
    let paid_by_a = pay(&mut a, "100.00").await;

    let mut b_states = b.state.clone();
    tokio::time::timeout(
        Duration::from_secs(60),
        b_states.wait_for(|s| *s == KioskState::Idle),
    )
    .await
    .expect("kiosk B idle")
    .unwrap();
    lose_next_create_answer(&a.base).await;
    b_scanner.write_all(b"450.00\r\n").await.unwrap();
    let mut b = b;
    let blind_b = tokio::time::timeout(Duration::from_secs(60), b.reports.recv())
        .await
        .expect("an outcome within 60 s")
        .expect("kiosk B running");
    not_approved(&blind_b);
    assert_ne!(blind_b.merchant_reference, paid_by_a.merchant_reference);
    let kiosk_id = |r: &str| r.split('-').take(2).collect::<Vec<_>>().join("-");
    assert_eq!(
        kiosk_id(&blind_b.merchant_reference),
        kiosk_id(&paid_by_a.merchant_reference),
        "both kiosks are kiosk-1"
    );
    let captured = captures(&a.base).await;
    assert_eq!(captured.len(), 1, "{captured:?}");
    assert_eq!(
        captured[0]["merchant_reference"],
        paid_by_a.merchant_reference
    );
    b.stop().await.unwrap();
    a.stop().await;
}

/// Writes the intent of a cart as the daemon does right before its create call, and stops
/// there, as a power cut would.
fn intent_then_power_cut(state: &Path, amount: u64) -> String {
    let (mut j, _) = Journal::open(state).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let (reference, sequence) = j.next_reference("kiosk-1", now.date());
    j.append(&Record::Intent {
        merchant_reference: reference.clone(),
        amount,
        currency: "NOK".into(),
        cart_reference: None,
        terminal_id: TERMINAL.into(),
        sequence,
        at: now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
    })
    .unwrap();
    reference
}

/// The journal's lines, each with its newline.
fn lines(state: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(state.join(journal::FILE_NAME)).unwrap();
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// The index of the intent line of `reference`.
fn intent_line(lines: &[Vec<u8>], reference: &str) -> usize {
    lines
        .iter()
        .position(|l| {
            let l = String::from_utf8_lossy(l);
            l.contains("\"type\":\"intent\"") && l.contains(reference)
        })
        .expect("the intent is in the journal")
}

/// Starts a kiosk on a damaged journal with a 500.00 intent cut off by a power cut, and checks
/// that the new cart is not approved and that the earlier payment is still in the journal,
/// approved with its own transaction.
async fn damaged_then_new_cart(k: Running, first: kioskpay::payment::flow::PaymentReport) {
    let (emulator, dir) = k.halt().await;
    let state = dir.path().join("state");
    let new = intent_then_power_cut(&state, 50000);
    assert_ne!(
        new, first.merchant_reference,
        "a damaged line lowered the sequence"
    );

    let mut k = boot(emulator, dir, "formats = [\"plain\"]", "");
    // Recovery settles every unfinished payment in journal order; the new cart's is the last.
    loop {
        let report = tokio::time::timeout(Duration::from_secs(60), k.kiosk.reports.recv())
            .await
            .expect("recovery reports")
            .expect("kiosk running");
        assert!(report.recovered, "{report:?}");
        if report.merchant_reference == new {
            not_approved(&report);
            assert!(
                matches!(report.outcome, Final::NotCreated { .. }),
                "{report:?}"
            );
            break;
        }
        // The earlier payment, if the damage took every record of it but its reference, is
        // looked up and recorded with its own transaction.
        assert_eq!(report.merchant_reference, first.merchant_reference);
        assert_eq!(report.outcome, first.outcome);
    }
    k.idle().await;
    let replay = journal::read_only(&k.dir.path().join("state")).unwrap();
    let old = replay
        .get(&first.merchant_reference)
        .expect("not forgotten");
    assert_eq!(old.outcome, Some(Outcome::Approved));
    assert_eq!(
        old.transaction_id,
        first.outcome.transaction_id().map(str::to_string)
    );
    let new_record = replay.get(&new).unwrap();
    assert_eq!(new_record.outcome, Some(Outcome::NotCreated));
    let captured = captures(&k.base).await;
    assert_eq!(captured.len(), 1, "{captured:?}");
    assert_eq!(captured[0]["merchant_reference"], first.merchant_reference);
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_the_newest_intent_does_not_lower_the_sequence() {
    let mut k = start(0.01, "").await;
    let first = pay(&mut k, "13.00").await;
    let state = k.dir.path().join("state");
    let mut damaged = lines(&state);
    let i = intent_line(&damaged, &first.merchant_reference);
    let at = damaged[i].len() / 2;
    damaged[i][at] ^= 0x04;
    std::fs::write(state.join(journal::FILE_NAME), damaged.concat()).unwrap();
    damaged_then_new_cart(k, first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_last_page_inside_an_intent_forgets_no_payment() {
    let mut k = start(0.01, "").await;
    let first = pay(&mut k, "13.00").await;
    let state = k.dir.path().join("state");
    let all = lines(&state);
    let i = intent_line(&all, &first.merchant_reference);
    // The page holding the intent and everything after it is lost mid-line; the reference
    // survives, the amount does not.
    let intent = &all[i];
    let cut = String::from_utf8_lossy(intent).find("\"amount\"").unwrap();
    let mut bytes = all[..i].concat();
    bytes.extend_from_slice(&intent[..cut]);
    std::fs::write(state.join(journal::FILE_NAME), bytes).unwrap();
    damaged_then_new_cart(k, first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_repeats_a_reference_and_the_lookup_refuses_it() {
    let mut k = start(0.01, "").await;
    k.idle().await;
    let state = k.dir.path().join("state");
    let backup = tempfile::tempdir().unwrap();
    for name in [journal::FILE_NAME, journal::identity::FILE_NAME] {
        std::fs::copy(state.join(name), backup.path().join(name)).unwrap();
    }
    let first = pay(&mut k, "100.00").await;
    let (emulator, dir) = k.halt().await;
    let state = dir.path().join("state");
    for name in [journal::FILE_NAME, journal::identity::FILE_NAME] {
        std::fs::copy(backup.path().join(name), state.join(name)).unwrap();
    }

    let mut k = boot(emulator, dir, "formats = [\"plain\"]", "");
    let mut states = k.kiosk.state.clone();
    let second = pay_blind(&mut k, "450.00").await;
    assert_eq!(
        second.merchant_reference, first.merchant_reference,
        "the backup rewound the sequence under the same installation id"
    );
    let Final::Conflict { detail } = &second.outcome else {
        panic!("expected a conflict: {second:?}");
    };
    assert!(detail.contains("amount 10000 instead of 45000"), "{detail}");

    let shown = KioskState::Conflict {
        amount: Money::new(45000, Currency::NOK),
        reference: first.merchant_reference.clone(),
    };
    tokio::time::timeout(Duration::from_secs(10), states.wait_for(|s| *s == shown))
        .await
        .expect("the conflict is on screen")
        .unwrap();
    let replay = journal::read_only(&k.dir.path().join("state")).unwrap();
    let record = replay.get(&first.merchant_reference).unwrap();
    assert_eq!(record.outcome, Some(Outcome::Conflict));
    assert_eq!(
        record.transaction_id, None,
        "never the other payment's transaction"
    );
    let captured = captures(&k.base).await;
    assert_eq!(captured.len(), 1, "{captured:?}");

    // What the customer saw, pixel for pixel: the conflict frame is among the PNGs written.
    let expected = kioskpay::display::render_png(
        &shown,
        Language::En,
        embedded_graphics::geometry::Size::new(240, 320),
        tokio::time::Instant::now(),
    );
    let frames = k.dir.path().join("frames");
    let drawn = || {
        std::fs::read_dir(&frames)
            .unwrap()
            .filter_map(|e| std::fs::read(e.unwrap().path()).ok())
            .any(|png| png == expected)
    };
    // The display task draws on its own time: wait for the frame, not for a fixed while.
    assert!(
        support::wait_until(Duration::from_secs(10), drawn).await,
        "no frame in {} shows the conflict",
        frames.display()
    );
    k.stop().await;
}
