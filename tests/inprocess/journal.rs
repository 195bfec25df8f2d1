//! The journal as the payment flow and `kioskpay journal` use it: real files in a temporary
//! directory, reopened the way a rebooted kiosk reopens them, damaged the way power cuts and
//! failing SD cards damage them.

use std::collections::VecDeque;
use std::fs;
use std::path::Path;

use kioskpay::journal::{
    self, read_only, summary_json, Journal, JournalError, Outcome, PaymentRecord, ProblemKind,
    Record,
};
use proptest::prelude::*;
use serde_json::json;

const LOG: &str = "journal.log";

fn reference(sequence: u64) -> String {
    // As the version before installation ids wrote them: a journal keeps working across the
    // upgrade, and replay reads the sequence out of either format.
    format!("kiosk-7-20261124-{sequence:06}")
}

fn intent(sequence: u64, amount: u64) -> Record {
    Record::Intent {
        merchant_reference: reference(sequence),
        amount,
        currency: "NOK".into(),
        cart_reference: None,
        terminal_id: "T12345678-T0001".into(),
        sequence,
        at: "2026-11-24T10:00:00Z".into(),
    }
}

fn state(sequence: u64, state: &str) -> Record {
    Record::State {
        merchant_reference: reference(sequence),
        state: state.into(),
    }
}

fn finish(sequence: u64, outcome: Outcome) -> Record {
    Record::Final {
        merchant_reference: reference(sequence),
        outcome,
        transaction_id: None,
        status: None,
        at: "2026-11-24T10:01:00Z".into(),
    }
}

fn log_bytes(dir: &Path) -> Vec<u8> {
    fs::read(dir.join(LOG)).unwrap()
}

/// The file's lines, newlines included, for damaging one on purpose.
fn lines(dir: &Path) -> Vec<Vec<u8>> {
    log_bytes(dir)
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn every_field_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, replay) = Journal::open(dir.path()).unwrap();
    assert!(replay.payments.is_empty());
    assert_eq!(j.next_sequence(), 1);

    let paid = reference(1);
    j.append(&Record::Intent {
        merchant_reference: paid.clone(),
        amount: 39_900,
        currency: "NOK".into(),
        cart_reference: Some("KID 0042 \"ø\"\n".into()),
        terminal_id: "T12345678-T0001".into(),
        sequence: 1,
        at: "2026-11-24T10:00:00+01:00".into(),
    })
    .unwrap();
    j.append(&Record::Session {
        merchant_reference: paid.clone(),
        session_id: "T12345678.4v8mP".into(),
    })
    .unwrap();
    j.append(&state(1, "waiting_for_card")).unwrap();
    j.append(&Record::Transaction {
        merchant_reference: paid.clone(),
        transaction_id: "T12345678.4v8mQ".into(),
    })
    .unwrap();
    j.append(&state(1, "processing")).unwrap();
    j.append(&Record::Final {
        merchant_reference: paid.clone(),
        outcome: Outcome::Approved,
        transaction_id: Some("T12345678.4v8mQ".into()),
        status: Some("CAPTURED".into()),
        at: "2026-11-24T10:00:09+01:00".into(),
    })
    .unwrap();
    j.append(&intent(2, 5_000)).unwrap();
    j.append(&state(2, "creating")).unwrap();
    drop(j);

    let (j, replay) = Journal::open(dir.path()).unwrap();
    assert!(replay.problems.is_empty(), "{:?}", replay.problems);
    assert_eq!(replay.last_sequence, 2);
    assert_eq!(j.next_sequence(), 3);
    assert_eq!(
        replay.payments,
        vec![
            PaymentRecord {
                merchant_reference: "kiosk-7-20261124-000001".into(),
                amount: 39_900,
                currency: "NOK".into(),
                cart_reference: Some("KID 0042 \"ø\"\n".into()),
                terminal_id: "T12345678-T0001".into(),
                session_id: Some("T12345678.4v8mP".into()),
                transaction_id: Some("T12345678.4v8mQ".into()),
                state: "approved".into(),
                outcome: Some(Outcome::Approved),
                status: Some("CAPTURED".into()),
                started_at: "2026-11-24T10:00:00+01:00".into(),
                finished_at: Some("2026-11-24T10:00:09+01:00".into()),
                reopened_at: None,
            },
            PaymentRecord {
                merchant_reference: "kiosk-7-20261124-000002".into(),
                amount: 5_000,
                currency: "NOK".into(),
                cart_reference: None,
                terminal_id: "T12345678-T0001".into(),
                session_id: None,
                transaction_id: None,
                state: "creating".into(),
                outcome: None,
                status: None,
                started_at: "2026-11-24T10:00:00Z".into(),
                finished_at: None,
                reopened_at: None,
            },
        ]
    );
    let unresolved: Vec<_> = replay
        .unresolved()
        .map(|p| p.merchant_reference.as_str())
        .collect();
    assert_eq!(unresolved, ["kiosk-7-20261124-000002"]);
    assert_eq!(replay.get(&paid).unwrap().amount, 39_900);
}

#[test]
fn lines_are_checksummed_json_a_technician_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    j.append(&intent(1, 100)).unwrap();
    let text = String::from_utf8(log_bytes(dir.path())).unwrap();
    let (sum, body) = text.strip_suffix('\n').unwrap().split_once(' ').unwrap();
    assert_eq!(sum, format!("{:08x}", crc32fast::hash(body.as_bytes())));
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(value["type"], "intent");
    assert_eq!(value["merchant_reference"], "kiosk-7-20261124-000001");
    assert_eq!(value["amount"], 100);
}

#[test]
fn sequence_continues_across_reopen_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    for s in 1..=3 {
        assert_eq!(j.next_sequence(), s);
        j.append(&intent(s, 100)).unwrap();
        j.append(&finish(s, Outcome::Declined)).unwrap();
    }
    drop(j);

    let (mut j, _) = Journal::open(dir.path()).unwrap();
    assert_eq!(j.next_sequence(), 4);
    let stats = j.compact(0).unwrap();
    assert_eq!((stats.payments_kept, stats.payments_dropped), (0, 3));
    assert!(stats.bytes_after < stats.bytes_before);
    assert_eq!(j.next_sequence(), 4);
    drop(j);

    // Every intent is gone; only the sequence record remembers 3.
    let (mut j, replay) = Journal::open(dir.path()).unwrap();
    assert!(replay.payments.is_empty());
    assert_eq!(replay.last_sequence, 3);
    assert_eq!(j.next_sequence(), 4);
    // Compacting again keeps the number too (the new sequence record replaces the old one).
    j.compact(0).unwrap();
    j.compact(0).unwrap();
    assert_eq!(lines(dir.path()).len(), 1);
    drop(j);
    assert_eq!(Journal::open(dir.path()).unwrap().0.next_sequence(), 4);
}

#[test]
fn open_creates_the_state_directory_and_file() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("var/lib/kioskpay");
    let (_j, replay) = Journal::open(&dir).unwrap();
    assert!(replay.payments.is_empty() && replay.problems.is_empty());
    assert_eq!(fs::metadata(dir.join(LOG)).unwrap().len(), 0);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_j, _) = Journal::open(dir.path()).unwrap();
    let err = Journal::open(dir.path()).unwrap_err();
    assert!(matches!(err, JournalError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("kioskpay journal"), "{err}");
    // The reader is not a writer and still works.
    read_only(dir.path()).unwrap();
}

#[test]
fn a_corrupt_middle_line_is_reported_and_the_rest_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    j.append(&intent(1, 100)).unwrap(); // line 1
    j.append(&state(1, "waiting_for_card")).unwrap(); // line 2
    j.append(&state(1, "processing")).unwrap(); // line 3
    j.append(&finish(1, Outcome::Approved)).unwrap(); // line 4
    j.append(&intent(2, 200)).unwrap(); // line 5
    drop(j);

    let mut damaged = lines(dir.path());
    damaged[2][20] ^= 0x04; // a bit flips on the SD card
    let bytes = damaged.concat();
    fs::write(dir.path().join(LOG), &bytes).unwrap();

    let (mut j, replay) = Journal::open(dir.path()).unwrap();
    assert_eq!(replay.problems.len(), 1, "{:?}", replay.problems);
    assert_eq!(replay.problems[0].kind, ProblemKind::Corrupt);
    assert_eq!(replay.problems[0].line, Some(3));
    assert!(replay.problems[0].to_string().starts_with("line 3: "));
    assert_eq!(replay.payments.len(), 2);
    assert_eq!(replay.payments[0].outcome, Some(Outcome::Approved));
    assert_eq!(replay.payments[1].amount, 200);
    assert_eq!(j.next_sequence(), 3);
    // The damaged line stays where it is: only a torn tail is ever cut.
    assert_eq!(log_bytes(dir.path()), bytes);
    j.append(&finish(2, Outcome::Failed)).unwrap();
    drop(j);
    let replay = read_only(dir.path()).unwrap();
    assert_eq!(replay.payments[1].outcome, Some(Outcome::Failed));
    assert_eq!(replay.problems.len(), 1);
}

#[test]
fn a_payment_whose_intent_was_lost_is_still_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    j.append(&intent(1, 100)).unwrap();
    j.append(&Record::Session {
        merchant_reference: reference(1),
        session_id: "T12345678.abc".into(),
    })
    .unwrap();
    j.append(&state(1, "waiting_for_card")).unwrap();
    drop(j);
    let mut damaged = lines(dir.path());
    damaged[0][0] = b'X';
    fs::write(dir.path().join(LOG), damaged.concat()).unwrap();

    let replay = read_only(dir.path()).unwrap();
    let kinds: Vec<_> = replay.problems.iter().map(|p| (p.kind, p.line)).collect();
    // No readable intent follows the damaged line: it may have been a newer intent, so the
    // sequence skips past whatever it could have held.
    assert_eq!(
        kinds,
        [
            (ProblemKind::Corrupt, Some(1)),
            (ProblemKind::SequenceSkipped, None),
            (ProblemKind::MissingIntent, Some(2))
        ]
    );
    assert_eq!(replay.last_sequence, 1 + journal::DAMAGE_GAP);
    let lost: Vec<_> = replay.unresolved().collect();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].merchant_reference, reference(1));
    assert_eq!(lost[0].amount, 0);
    assert_eq!(lost[0].session_id.as_deref(), Some("T12345678.abc"));
    assert_eq!(lost[0].state, "waiting_for_card");
}

#[test]
fn contradicting_records_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    j.append(&intent(1, 100)).unwrap();
    j.append(&finish(1, Outcome::Declined)).unwrap();
    j.append(&state(1, "waiting_for_card")).unwrap();
    drop(j);
    let replay = read_only(dir.path()).unwrap();
    assert_eq!(replay.problems.len(), 1);
    assert_eq!(replay.problems[0].kind, ProblemKind::Inconsistent);
    assert_eq!(replay.problems[0].line, Some(3));
    assert_eq!(
        replay.payments[0].state, "declined",
        "a state never reopens"
    );
}

fn reopened(sequence: u64) -> Record {
    Record::Reopened {
        merchant_reference: reference(sequence),
        session_id: "T12345678.late".into(),
        at: "2026-11-24T10:05:00Z".into(),
    }
}

#[test]
fn a_not_created_payment_found_late_is_open_again_until_its_new_final() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    j.append(&intent(1, 100)).unwrap();
    j.append(&finish(1, Outcome::NotCreated)).unwrap();
    j.append(&reopened(1)).unwrap();
    let replay = read_only(dir.path()).unwrap();
    assert!(replay.problems.is_empty(), "{:?}", replay.problems);
    let p = &replay.payments[0];
    assert_eq!((p.outcome, p.state.as_str()), (None, "reopened"));
    assert_eq!(p.session_id.as_deref(), Some("T12345678.late"));
    assert_eq!(p.finished_at, None);
    assert_eq!(p.reopened_at.as_deref(), Some("2026-11-24T10:05:00Z"));
    assert_eq!(
        replay.unresolved().count(),
        1,
        "recovery settles it at the next start"
    );
    // Compaction keeps it whatever keep_final says, and the new outcome counts once written.
    j.compact(0).unwrap();
    assert_eq!(read_only(dir.path()).unwrap().unresolved().count(), 1);
    j.append(&finish(1, Outcome::Approved)).unwrap();
    drop(j);
    let replay = read_only(dir.path()).unwrap();
    assert!(replay.problems.is_empty(), "{:?}", replay.problems);
    assert_eq!(replay.payments[0].outcome, Some(Outcome::Approved));
}

#[test]
fn reopening_a_payment_that_did_not_end_not_created_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    j.append(&intent(1, 100)).unwrap();
    j.append(&finish(1, Outcome::Declined)).unwrap();
    j.append(&reopened(1)).unwrap();
    drop(j);
    let replay = read_only(dir.path()).unwrap();
    assert_eq!(replay.problems.len(), 1, "{:?}", replay.problems);
    assert_eq!(replay.problems[0].kind, ProblemKind::Inconsistent);
    assert_eq!(replay.problems[0].line, Some(3));
    assert_eq!(
        replay.payments[0].outcome, None,
        "open again all the same: Dintero has it"
    );
}

/// A line as a newer kioskpay would write it: valid checksum, unknown type.
fn future_line() -> Vec<u8> {
    let body = r#"{"type":"refund","merchant_reference":"kiosk-7-20261124-000001","amount":100}"#;
    format!("{:08x} {body}\n", crc32fast::hash(body.as_bytes())).into_bytes()
}

#[test]
fn records_from_a_newer_version_are_reported_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    j.append(&intent(1, 100)).unwrap();
    j.append(&finish(1, Outcome::Approved)).unwrap();
    drop(j);
    let mut bytes = log_bytes(dir.path());
    bytes.extend_from_slice(&future_line());
    fs::write(dir.path().join(LOG), &bytes).unwrap();

    let (mut j, replay) = Journal::open(dir.path()).unwrap();
    assert_eq!(replay.problems.len(), 1);
    assert_eq!(replay.problems[0].kind, ProblemKind::UnknownRecord);
    assert_eq!(replay.problems[0].line, Some(3));
    assert!(replay.problems[0].detail.contains("refund"));
    assert_eq!(replay.payments[0].outcome, Some(Outcome::Approved));

    let stats = j.compact(0).unwrap();
    assert_eq!(stats.unreadable_kept, 1);
    assert_eq!(stats.payments_dropped, 1);
    let after = lines(dir.path());
    assert_eq!(after.len(), 2, "sequence record and the unknown line");
    assert_eq!(after[1], future_line());
}

#[test]
fn compaction_keeps_unfinished_payments_and_the_newest_finished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    // 1..=8; 3 and 6 never finish; 2 finishes only after 7 started.
    for s in 1..=8 {
        j.append(&intent(s, s * 100)).unwrap();
        j.append(&state(s, "waiting_for_card")).unwrap();
        if ![2, 3, 6].contains(&s) {
            j.append(&finish(s, Outcome::Approved)).unwrap();
        }
        if s == 7 {
            j.append(&finish(2, Outcome::Cancelled)).unwrap();
        }
    }
    let before = read_only(dir.path()).unwrap();
    let stats = j.compact(2).unwrap();
    assert_eq!((stats.payments_kept, stats.payments_dropped), (4, 4));
    drop(j);

    let (j, after) = Journal::open(dir.path()).unwrap();
    let kept: Vec<_> = after
        .payments
        .iter()
        .map(|p| p.merchant_reference.clone())
        .collect();
    assert_eq!(
        kept,
        [reference(3), reference(6), reference(7), reference(8)]
    );
    for p in &after.payments {
        assert_eq!(Some(p), before.get(&p.merchant_reference));
    }
    assert!(after.problems.is_empty(), "{:?}", after.problems);
    assert_eq!(j.next_sequence(), 9);
    drop(j);

    // keep_final larger than what exists keeps everything.
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    let stats = j.compact(100).unwrap();
    assert_eq!((stats.payments_kept, stats.payments_dropped), (4, 0));
    assert_eq!(read_only(dir.path()).unwrap().payments, after.payments);
}

#[test]
fn open_compacting_compacts_from_what_it_read_even_a_last_line_without_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    for s in 1..=6 {
        j.append(&intent(s, s * 100)).unwrap();
        if s != 4 {
            j.append(&finish(s, Outcome::Approved)).unwrap();
        }
    }
    drop(j);
    // A power cut took the last newline: the record is whole, its checksum proves it.
    let path = dir.path().join(LOG);
    let text = fs::read(&path).unwrap();
    fs::write(&path, &text[..text.len() - 1]).unwrap();
    let before = read_only(dir.path()).unwrap();

    // At most as many finished payments as kept: nothing is rewritten.
    let (j, replay) = Journal::open_compacting(dir.path(), 5).unwrap();
    assert_eq!(replay.payments, before.payments);
    drop(j);
    assert_eq!(read_only(dir.path()).unwrap().payments, before.payments);

    let (mut j, replay) = Journal::open_compacting(dir.path(), 2).unwrap();
    // The replay is of the journal as opened; the file keeps the unfinished one and the two
    // newest finished.
    assert_eq!(replay.payments, before.payments);
    j.append(&intent(7, 700)).unwrap();
    drop(j);
    let after = read_only(dir.path()).unwrap();
    let kept: Vec<_> = after
        .payments
        .iter()
        .map(|p| p.merchant_reference.clone())
        .collect();
    assert_eq!(
        kept,
        [reference(4), reference(5), reference(6), reference(7)]
    );
    assert!(after.problems.is_empty(), "{:?}", after.problems);
    assert_eq!(after.unresolved().count(), 2);
    let (j, _) = Journal::open(dir.path()).unwrap();
    assert_eq!(j.next_sequence(), 8);
}

#[test]
fn compaction_never_drops_an_unfinished_payment() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    for s in 1..=5 {
        j.append(&intent(s, 100)).unwrap();
    }
    let stats = j.compact(0).unwrap();
    assert_eq!((stats.payments_kept, stats.payments_dropped), (5, 0));
    assert_eq!(read_only(dir.path()).unwrap().unresolved().count(), 5);
}

#[test]
fn summary_json_shape() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    j.append(&intent(1, 39_900)).unwrap();
    j.append(&Record::Transaction {
        merchant_reference: reference(1),
        transaction_id: "T12345678.tx".into(),
    })
    .unwrap();
    j.append(&Record::Final {
        merchant_reference: reference(1),
        outcome: Outcome::TimedOut,
        transaction_id: Some("T12345678.tx".into()),
        status: Some("FAILED".into()),
        at: "2026-11-24T10:01:30Z".into(),
    })
    .unwrap();
    j.append(&intent(2, 100)).unwrap();
    j.append(&state(2, "waiting_for_card")).unwrap();
    let replay = read_only(dir.path()).unwrap();

    assert_eq!(
        summary_json(&replay.payments[0]),
        json!({
            "merchant_reference": "kiosk-7-20261124-000001",
            "amount": 39900,
            "currency": "NOK",
            "cart_reference": null,
            "terminal_id": "T12345678-T0001",
            "state": "timed_out",
            "outcome": "timed_out",
            "unresolved": false,
            "session_id": null,
            "transaction_id": "T12345678.tx",
            "status": "FAILED",
            "started_at": "2026-11-24T10:00:00Z",
            "finished_at": "2026-11-24T10:01:30Z",
            "reopened_at": null,
        })
    );
    let open = summary_json(&replay.payments[1]);
    assert_eq!(open["state"], "waiting_for_card");
    assert_eq!(open["outcome"], serde_json::Value::Null);
    assert_eq!(open["unresolved"], true);
}

#[test]
fn read_only_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    j.append(&intent(1, 100)).unwrap();
    j.append(&state(1, "waiting_for_card")).unwrap();
    drop(j);
    // A power cut mid-append, and a compaction that never finished.
    let mut bytes = log_bytes(dir.path());
    bytes.extend_from_slice(b"1234abcd {\"type\":\"sta");
    fs::write(dir.path().join(LOG), &bytes).unwrap();
    fs::write(dir.path().join("journal.log.compact"), b"partial").unwrap();
    let listing = |d: &Path| {
        let mut names: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                (e.file_name(), m.len(), m.modified().unwrap())
            })
            .collect();
        names.sort();
        names
    };
    let before = listing(dir.path());

    let replay = read_only(dir.path()).unwrap();
    assert_eq!(replay.payments.len(), 1);
    assert_eq!(replay.problems.len(), 2, "{:?}", replay.problems);
    assert_eq!(replay.problems[0].kind, ProblemKind::TornTail);
    assert_eq!(replay.problems[0].line, Some(3));
    assert_eq!(replay.problems[1].kind, ProblemKind::SequenceSkipped);

    assert_eq!(listing(dir.path()), before);
    assert_eq!(log_bytes(dir.path()), bytes);

    let missing = dir.path().join("nowhere");
    let err = read_only(&missing).unwrap_err();
    assert!(matches!(err, JournalError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("state.dir"));
    assert!(!missing.exists(), "read_only must not create the directory");
}

#[test]
fn open_removes_an_unfinished_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    j.append(&intent(1, 100)).unwrap();
    drop(j);
    let before = log_bytes(dir.path());
    fs::write(dir.path().join("journal.log.compact"), b"half a compaction").unwrap();
    let (_j, replay) = Journal::open(dir.path()).unwrap();
    assert!(!dir.path().join("journal.log.compact").exists());
    assert_eq!(log_bytes(dir.path()), before);
    assert_eq!(replay.payments.len(), 1);
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, control characters and newlines included: JSON escaping must keep every
    // record on one line.
    any::<String>()
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Approved),
        Just(Outcome::Declined),
        Just(Outcome::Cancelled),
        Just(Outcome::TimedOut),
        Just(Outcome::Failed),
        Just(Outcome::NotCreated),
    ]
}

/// Any record, with a sequence above the fixed prefix's.
fn any_record() -> impl Strategy<Value = Record> {
    prop_oneof![
        (
            text(),
            any::<u64>(),
            text(),
            proptest::option::of(text()),
            text(),
            10..u64::MAX,
            text()
        )
            .prop_map(
                |(
                    merchant_reference,
                    amount,
                    currency,
                    cart_reference,
                    terminal_id,
                    sequence,
                    at,
                )| {
                    Record::Intent {
                        merchant_reference,
                        amount,
                        currency,
                        cart_reference,
                        terminal_id,
                        sequence,
                        at,
                    }
                }
            ),
        (text(), text()).prop_map(|(merchant_reference, session_id)| Record::Session {
            merchant_reference,
            session_id
        }),
        (text(), text()).prop_map(|(merchant_reference, transaction_id)| {
            Record::Transaction {
                merchant_reference,
                transaction_id,
            }
        }),
        (text(), text()).prop_map(|(merchant_reference, state)| Record::State {
            merchant_reference,
            state
        }),
        (
            text(),
            outcome(),
            proptest::option::of(text()),
            proptest::option::of(text()),
            text()
        )
            .prop_map(
                |(merchant_reference, outcome, transaction_id, status, at)| Record::Final {
                    merchant_reference,
                    outcome,
                    transaction_id,
                    status,
                    at
                }
            ),
        (text(), text(), text()).prop_map(|(merchant_reference, session_id, at)| {
            Record::Reopened {
                merchant_reference,
                session_id,
                at,
            }
        }),
        (10..u64::MAX).prop_map(|last| Record::Sequence { last }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A power cut during the last append, at every byte of it (or a garbled last page): nothing
    /// earlier is lost, the torn bytes stay in the journal as a damaged line (and are kept aside
    /// in journal.torn), the sequence skips past anything the line may have held, a payment it
    /// names that nothing else does is listed to be looked up, and the next append starts on a
    /// clean line.
    #[test]
    fn a_torn_last_line_at_any_byte_loses_nothing_earlier(last in any_record()) {
        let scratch = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(scratch.path()).unwrap();
        j.append(&intent(1, 100)).unwrap();
        j.append(&state(1, "waiting_for_card")).unwrap();
        j.append(&intent(2, 200)).unwrap();
        j.append(&finish(2, Outcome::Declined)).unwrap();
        let prefix = log_bytes(scratch.path());
        let baseline = read_only(scratch.path()).unwrap();
        j.append(&last).unwrap();
        drop(j);
        let full = log_bytes(scratch.path());
        let line = &full[prefix.len()..];

        // Every cut but the one before the newline, which leaves a whole record (see
        // `a_last_record_missing_only_its_newline_counts`).
        let mut cases: Vec<Vec<u8>> =
            (1..line.len() - 1).map(|cut| line[..cut].to_vec()).collect();
        // Full length, but the middle of the line never reached the card.
        let mut zeroed = line.to_vec();
        let n = zeroed.len();
        zeroed[n / 2..n - 1].fill(0);
        cases.push(zeroed);

        let dir = tempfile::tempdir().unwrap();
        for torn in cases {
            let mut bytes = prefix.clone();
            bytes.extend_from_slice(&torn);
            fs::write(dir.path().join(LOG), &bytes).unwrap();
            let _ = fs::remove_file(dir.path().join("journal.torn"));

            let (mut j, replay) = Journal::open(dir.path()).unwrap();
            for p in &baseline.payments {
                prop_assert_eq!(Some(p), replay.get(&p.merchant_reference));
            }
            for extra in replay.payments.iter().filter(|p| baseline.get(&p.merchant_reference).is_none()) {
                prop_assert!(extra.outcome.is_none() && extra.amount == 0, "{:?}", extra);
                let named = String::from_utf8_lossy(&torn).contains(extra.merchant_reference.as_str());
                prop_assert!(named, "{:?}", extra);
            }
            prop_assert!(replay.last_sequence >= baseline.last_sequence + journal::DAMAGE_GAP);
            prop_assert_eq!(replay.problems[0].kind, ProblemKind::TornTail);
            prop_assert_eq!(replay.problems[0].line, Some(5));
            let mut ended = prefix.clone();
            ended.extend_from_slice(&torn);
            if !torn.ends_with(b"\n") {
                ended.push(b'\n');
            }
            prop_assert_eq!(log_bytes(dir.path()), ended);
            let kept = fs::read(dir.path().join("journal.torn")).unwrap();
            prop_assert!(kept.starts_with(&torn));
            let next = j.next_sequence();

            j.append(&finish(1, Outcome::Approved)).unwrap();
            drop(j);
            let replay = read_only(dir.path()).unwrap();
            let kinds: Vec<_> = replay.problems.iter().map(|p| (p.kind, p.line)).collect();
            prop_assert_eq!(kinds.first(), Some(&(ProblemKind::Corrupt, Some(5))));
            prop_assert_eq!(replay.payments[0].outcome, Some(Outcome::Approved));
            prop_assert_eq!(replay.last_sequence + 1, next, "the skip holds across restarts");
        }
    }
}

#[test]
fn a_last_record_missing_only_its_newline_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    j.append(&intent(1, 100)).unwrap();
    drop(j);
    let mut bytes = log_bytes(dir.path());
    bytes.pop();
    fs::write(dir.path().join(LOG), &bytes).unwrap();

    let (mut j, replay) = Journal::open(dir.path()).unwrap();
    assert!(replay.problems.is_empty(), "{:?}", replay.problems);
    assert_eq!(replay.payments[0].amount, 100);
    assert_eq!(j.next_sequence(), 2);
    j.append(&finish(1, Outcome::Approved)).unwrap();
    drop(j);
    let replay = read_only(dir.path()).unwrap();
    assert!(replay.problems.is_empty(), "{:?}", replay.problems);
    assert_eq!(replay.payments[0].outcome, Some(Outcome::Approved));
}

/// One payment's life as the flow would journal it.
#[derive(Clone, Debug)]
struct Script {
    amount: u64,
    cart_reference: Option<String>,
    session: bool,
    transaction: bool,
    states: Vec<String>,
    /// Outcome, whether the final record names the transaction, and the status.
    end: Option<(Outcome, bool, Option<String>)>,
    /// Found at Dintero after it ended `not_created` (the script's end is then `not_created`):
    /// reopened, and perhaps ended again.
    late: Option<Option<(Outcome, bool, Option<String>)>>,
}

fn script() -> impl Strategy<Value = Script> {
    (
        0..1_000_000u64,
        proptest::option::of(text()),
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec("[a-z_]{1,16}", 0..4),
        proptest::option::of(end()),
        proptest::option::weighted(0.3, proptest::option::of(end())),
    )
        .prop_map(
            |(amount, cart_reference, session, transaction, states, end, late)| Script {
                amount,
                cart_reference,
                session,
                transaction,
                states,
                // Only a payment that ended `not_created` is ever reopened.
                end: match late {
                    Some(_) => Some((Outcome::NotCreated, false, None)),
                    None => end,
                },
                late,
            },
        )
}

/// How a payment ends: outcome, whether the final record names the transaction, status.
fn end() -> impl Strategy<Value = (Outcome, bool, Option<String>)> {
    (
        outcome(),
        any::<bool>(),
        proptest::option::of("[A-Z_]{1,12}"),
    )
}

impl Script {
    fn records(&self, name: &str, sequence: u64) -> VecDeque<Record> {
        let r = || name.to_owned();
        let transaction = || Record::Transaction {
            merchant_reference: r(),
            transaction_id: format!("t-{name}"),
        };
        let mut out = VecDeque::from([Record::Intent {
            merchant_reference: r(),
            amount: self.amount,
            currency: "SEK".into(),
            cart_reference: self.cart_reference.clone(),
            terminal_id: "T12345678-T0002".into(),
            sequence,
            at: format!("start of {name}"),
        }]);
        if self.session {
            out.push_back(Record::Session {
                merchant_reference: r(),
                session_id: format!("s-{name}"),
            });
        }
        for (i, s) in self.states.iter().enumerate() {
            out.push_back(Record::State {
                merchant_reference: r(),
                state: s.clone(),
            });
            if i == 0 && self.transaction {
                out.push_back(transaction());
            }
        }
        if self.transaction && self.states.is_empty() {
            out.push_back(transaction());
        }
        if let Some((outcome, names_tx, status)) = &self.end {
            out.push_back(Record::Final {
                merchant_reference: r(),
                outcome: *outcome,
                transaction_id: names_tx.then(|| format!("t-{name}")),
                status: status.clone(),
                at: format!("end of {name}"),
            });
        }
        if let Some(late) = &self.late {
            out.push_back(Record::Reopened {
                merchant_reference: r(),
                session_id: format!("s-{name}"),
                at: format!("found late: {name}"),
            });
            if let Some((outcome, names_tx, status)) = late {
                out.push_back(Record::Final {
                    merchant_reference: r(),
                    outcome: *outcome,
                    transaction_id: names_tx.then(|| format!("t-{name}")),
                    status: status.clone(),
                    at: format!("late end of {name}"),
                });
            }
        }
        out
    }

    /// What replay must make of it, worked out from the script, not from the records.
    fn expected(&self, name: &str) -> PaymentRecord {
        if let Some(late) = &self.late {
            let late = late.as_ref();
            let mut p = Script {
                late: None,
                end: None,
                ..self.clone()
            }
            .expected(name);
            p.session_id = Some(format!("s-{name}"));
            if late.is_some_and(|e| e.1) {
                p.transaction_id = Some(format!("t-{name}"));
            }
            p.state = late.map_or("reopened".to_owned(), |e| e.0.as_str().to_owned());
            p.outcome = late.map(|e| e.0);
            p.status = late.and_then(|e| e.2.clone());
            p.finished_at = late.map(|_| format!("late end of {name}"));
            p.reopened_at = Some(format!("found late: {name}"));
            return p;
        }
        let end = self.end.as_ref();
        PaymentRecord {
            merchant_reference: name.to_owned(),
            amount: self.amount,
            currency: "SEK".into(),
            cart_reference: self.cart_reference.clone(),
            terminal_id: "T12345678-T0002".into(),
            session_id: self.session.then(|| format!("s-{name}")),
            transaction_id: (self.transaction || end.is_some_and(|e| e.1))
                .then(|| format!("t-{name}")),
            state: match end {
                Some((o, _, _)) => o.as_str().to_owned(),
                None => self
                    .states
                    .last()
                    .map_or(journal::INITIAL_STATE.to_owned(), Clone::clone),
            },
            outcome: end.map(|e| e.0),
            status: end.and_then(|e| e.2.clone()),
            started_at: format!("start of {name}"),
            finished_at: end.map(|_| format!("end of {name}")),
            reopened_at: None,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any interleaving of valid payment histories replays to exactly what the histories say,
    /// after a reopen, and after a compaction keeps what it promises.
    #[test]
    fn replay_matches_the_model(
        scripts in proptest::collection::vec(script(), 0..6),
        schedule in proptest::collection::vec(any::<prop::sample::Index>(), 0..80),
        keep_final in 0..4usize,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        // Payments not started yet, and the remaining records of those that are.
        let mut pending: Vec<usize> = (0..scripts.len()).collect();
        let mut queues: Vec<VecDeque<Record>> = Vec::new();
        let mut started = Vec::new();
        let mut choices = schedule.into_iter();
        loop {
            let live = queues.iter().filter(|q| !q.is_empty()).count() + pending.len();
            if live == 0 {
                break;
            }
            let pick = choices.next().map_or(0, |c| c.index(live));
            let record = if pick < pending.len() {
                // Intents take their sequence when they are appended, as in the flow.
                let i = pending.remove(pick);
                let sequence = j.next_sequence();
                let name = reference(sequence);
                let mut q = scripts[i].records(&name, sequence);
                let intent = q.pop_front().unwrap();
                started.push((i, name));
                queues.push(q);
                intent
            } else {
                queues
                    .iter_mut()
                    .filter(|q| !q.is_empty())
                    .nth(pick - pending.len())
                    .and_then(VecDeque::pop_front)
                    .unwrap()
            };
            j.append(&record).unwrap();
        }
        drop(j);

        let model: Vec<PaymentRecord> =
            started.iter().map(|(i, name)| scripts[*i].expected(name)).collect();
        let (mut j, replay) = Journal::open(dir.path()).unwrap();
        prop_assert!(replay.problems.is_empty(), "{:?}", replay.problems);
        prop_assert_eq!(&replay.payments, &model);
        prop_assert_eq!(j.next_sequence(), scripts.len() as u64 + 1);

        j.compact(keep_final).unwrap();
        drop(j);
        let finished: Vec<usize> =
            (0..model.len()).filter(|&k| model[k].outcome.is_some()).collect();
        let dropped = &finished[..finished.len().saturating_sub(keep_final)];
        let kept: Vec<PaymentRecord> = model
            .iter()
            .enumerate()
            .filter(|(k, _)| !dropped.contains(k))
            .map(|(_, p)| p.clone())
            .collect();
        let (j, replay) = Journal::open(dir.path()).unwrap();
        prop_assert!(replay.problems.is_empty(), "{:?}", replay.problems);
        prop_assert_eq!(replay.payments, kept);
        prop_assert_eq!(j.next_sequence(), scripts.len() as u64 + 1);
    }
}

/// What happens to a journal between two starts of the kiosk.
#[derive(Clone, Debug)]
enum Damage {
    /// A payment: its intent under the journal's next reference, and up to three later records.
    Pay(usize),
    /// One bit flips somewhere in the file (line and byte as fractions of the file's extent).
    Flip(f64, f64, u8),
    /// The file is cut inside a line and everything after it is lost: a garbled last page.
    Cut(f64, f64),
    /// The daemon compacts, keeping this many finished payments.
    Compact(usize),
    /// Power cut and restart: the journal is opened again.
    Reopen,
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        5 => (0..4usize).prop_map(Damage::Pay),
        2 => (0.0..1.0f64, 0.0..1.0f64, 0..8u8).prop_map(|(l, b, bit)| Damage::Flip(l, b, bit)),
        1 => (0.0..1.0f64, 0.0..1.0f64).prop_map(|(l, b)| Damage::Cut(l, b)),
        1 => (0..3usize).prop_map(Damage::Compact),
        2 => Just(Damage::Reopen),
    ]
}

/// The line (start, end without its newline) picked by a fraction, and a byte inside it.
fn pick(bytes: &[u8], line: f64, byte: f64) -> Option<usize> {
    let lines: Vec<(usize, usize)> = bytes
        .split_inclusive(|&b| b == b'\n')
        .scan(0, |start, l| {
            let s = *start;
            *start += l.len();
            Some((s, s + l.len() - usize::from(l.ends_with(b"\n"))))
        })
        .filter(|(s, e)| e > s)
        .collect();
    let &(start, end) = lines.get(((lines.len() as f64) * line) as usize)?;
    Some(start + (((end - start) as f64) * byte) as usize)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever bits flip and wherever a page is cut inside a line, with compactions and power
    /// cuts in between, the journal never hands out a reference it ever held: a reused reference
    /// is how a lookup would take another payment's money.
    ///
    /// A cut exactly on a line boundary is not among the damages: it leaves a journal that looks
    /// as if the lost lines had never been written, and no file can know what it never held. A
    /// garbled page cuts inside a line; the lookup's identity checks (`payment::identity`) are
    /// the defence for the rest.
    #[test]
    fn the_next_reference_is_never_one_the_journal_ever_held(
        damages in proptest::collection::vec(damage(), 1..40)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        let day = time::macros::date!(2026 - 12 - 04);
        let mut held = std::collections::HashSet::new();
        for step in damages {
            match step {
                Damage::Pay(later) => {
                    let (reference, sequence) = j.next_reference("kiosk-1", day);
                    prop_assert!(!held.contains(&reference), "{} handed out again", reference);
                    let written = j.append(&Record::Intent {
                        merchant_reference: reference.clone(),
                        amount: 1300,
                        currency: "NOK".into(),
                        cart_reference: None,
                        terminal_id: "T12345678-T0001".into(),
                        sequence,
                        at: "2026-12-04T10:00:00Z".into(),
                    });
                    held.insert(reference.clone());
                    written.unwrap();
                    for record in [
                        Record::Session { merchant_reference: reference.clone(), session_id: "s".into() },
                        Record::State { merchant_reference: reference.clone(), state: "waiting_for_card".into() },
                        Record::Final {
                            merchant_reference: reference.clone(),
                            outcome: Outcome::Approved,
                            transaction_id: Some("t".into()),
                            status: Some("CAPTURED".into()),
                            at: "2026-12-04T10:00:09Z".into(),
                        },
                    ].into_iter().take(later) {
                        j.append(&record).unwrap();
                    }
                }
                Damage::Flip(line, byte, bit) => {
                    drop(j);
                    let mut bytes = log_bytes(dir.path());
                    if let Some(at) = pick(&bytes, line, byte) {
                        bytes[at] ^= 1 << bit;
                        fs::write(dir.path().join(LOG), &bytes).unwrap();
                    }
                    j = Journal::open(dir.path()).unwrap().0;
                }
                Damage::Cut(line, byte) => {
                    drop(j);
                    let bytes = log_bytes(dir.path());
                    // Strictly inside the line: at least its first byte stays and more than its
                    // newline goes, or the cut would be on a line boundary (see above).
                    if let Some(at) = pick(&bytes, line, byte).and_then(|at| {
                        let start = bytes[..=at.min(bytes.len() - 1)]
                            .iter()
                            .rposition(|&b| b == b'\n')
                            .map_or(0, |nl| nl + 1);
                        let end = bytes[at..].iter().position(|&b| b == b'\n').map(|nl| at + nl)?;
                        (end - start >= 3).then(|| (at.max(start + 1)).min(end - 1))
                    }) {
                        fs::write(dir.path().join(LOG), &bytes[..at]).unwrap();
                    }
                    j = Journal::open(dir.path()).unwrap().0;
                }
                Damage::Compact(keep) => {
                    j.compact(keep).unwrap();
                }
                Damage::Reopen => {
                    drop(j);
                    j = Journal::open(dir.path()).unwrap().0;
                }
            }
            let (next, _) = j.next_reference("kiosk-1", day);
            prop_assert!(!held.contains(&next), "{} would be handed out again", next);
        }
    }
}
