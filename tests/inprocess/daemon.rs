//! The whole kiosk (flow, journal, real HTTP client, display) against the emulator on loopback,
//! with carts typed into the real scanner parser. The emulator's ledger is the ground truth.

use crate::support;

use std::time::Duration;

use kioskpay::dintero::{ApiError, Gateway};
use kioskpay::journal::Outcome;
use kioskpay::payment::flow::Command;
use kioskpay::payment::Final;
use kioskpay::state::{CancelledBy, DeclineKind, FailKind, KioskState, UnavailableReason};
use support::kiosk::{boot, client, request, start};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gs1_payment_slip_is_paid_with_its_reference_as_merchant_reference_2() {
    let mut k = start(0.01, "").await;
    k.idle().await;
    // A GS1-128 slip as a scanner with AIM identifiers sends it: ]C1, GLN (415), reference
    // (8020), GS, amount with 2 implied decimals (3902).
    let report = k
        .scan("]C1415708000382434980201234567-ORDER\u{1d}390200039900")
        .await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "{report:?}"
    );
    assert_eq!(report.amount.minor, 39900);
    assert_eq!(report.cart_reference.as_deref(), Some("1234567-ORDER"));
    let ledger = support::ledger(&k.base).await;
    let sessions = support::sessions_for(&ledger, &report.merchant_reference);
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["merchant_reference_2"], "1234567-ORDER");
    assert_eq!(sessions[0]["amount"], 39900);
    let txs = support::transactions_for(&ledger, &report.merchant_reference);
    assert_eq!(txs[0]["status"], "CAPTURED");
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_code_paid_before_a_restart_is_refused_after_it() {
    use kioskpay::input::codes::signed::sign_cart;
    use kioskpay::input::CustomerReason;
    use kioskpay::money::{Currency, Money};
    use kioskpay::secret::Secret;
    use kioskpay::state::RefusalReason;
    use std::os::unix::fs::PermissionsExt;

    let emulator = support::emulator(0.01).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("signing_key");
    std::fs::write(&key_file, "pos-shared-key-for-tests-0123456789\n").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let input = format!(
        "formats = [\"signed\"]\nsigning_key_file = \"{}\"",
        key_file.display()
    );
    let key = Secret::new("pos-shared-key-for-tests-0123456789");
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let code = sign_cart(
        Money::new(12500, Currency::NOK),
        "POS-CART-77",
        expires,
        &key,
    )
    .unwrap();

    let mut k = boot(emulator, dir, &input, "");
    k.idle().await;
    let report = k.scan(&code).await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "{report:?}"
    );
    let (emulator, dir) = k.halt().await;

    // After a restart the journal still knows the cart was paid.
    let mut k = boot(emulator, dir, &input, "");
    k.idle().await;
    k.scanner
        .write_all(format!("{code}\r\n").as_bytes())
        .await
        .unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        k.kiosk
            .state
            .wait_for(|s| matches!(s, KioskState::Refused { .. })),
    )
    .await
    .expect("the code is refused within 60 s")
    .unwrap()
    .clone();
    match refused {
        KioskState::Refused {
            reason: RefusalReason::Code { detail, customer },
        } => {
            assert_eq!(customer, CustomerReason::AlreadyPaid);
            assert!(detail.contains("POS-CART-77"), "{detail}");
        }
        other => panic!("expected an already-paid refusal, got {other:?}"),
    }
    let ledger = support::ledger(&k.base).await;
    assert_eq!(
        ledger["sessions"].as_array().unwrap().len(),
        1,
        "nothing was sent to Dintero for the second scan"
    );
    k.stop().await;
}

/// Waits for the kiosk to refuse a code as already paid.
async fn refused_as_already_paid(k: &mut support::kiosk::Running, reference: &str) {
    use kioskpay::input::CustomerReason;
    use kioskpay::state::RefusalReason;
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        k.kiosk
            .state
            .wait_for(|s| matches!(s, KioskState::Refused { .. })),
    )
    .await
    .expect("the code is refused within 60 s")
    .unwrap()
    .clone();
    match refused {
        KioskState::Refused {
            reason: RefusalReason::Code { detail, customer },
        } => {
            assert_eq!(customer, CustomerReason::AlreadyPaid);
            assert!(detail.contains(reference), "{detail}");
        }
        other => panic!("expected an already-paid refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_slip_scanned_again_is_refused_as_paid_also_after_a_restart() {
    const SLIP: &str = "]C1415708000382434980201234567-SLIP\u{1d}390200039900";
    let emulator = support::emulator(0.01).await;
    let dir = tempfile::tempdir().unwrap();
    let mut k = boot(emulator, dir, "formats = [\"gs1\"]", "");
    k.idle().await;
    let report = k.scan(SLIP).await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "{report:?}"
    );
    k.idle().await;
    // Past the scanner's duplicate window (input.duplicate_window_ms, 1 s): a new scan. This
    // sleep is what the test simulates (a customer scanning again later), not a wait for the
    // kiosk: the kiosk runs on real time, and a scan within the window would be dropped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    k.scanner
        .write_all(format!("{SLIP}\r\n").as_bytes())
        .await
        .unwrap();
    refused_as_already_paid(&mut k, "1234567-SLIP").await;
    let (emulator, dir) = k.halt().await;

    // After a restart the journal still knows the slip was paid.
    let mut k = boot(emulator, dir, "formats = [\"gs1\"]", "");
    k.idle().await;
    k.scanner
        .write_all(format!("{SLIP}\r\n").as_bytes())
        .await
        .unwrap();
    refused_as_already_paid(&mut k, "1234567-SLIP").await;
    let ledger = support::ledger(&k.base).await;
    assert_eq!(
        ledger["sessions"].as_array().unwrap().len(),
        1,
        "nothing was sent to Dintero for the later scans"
    );
    let captured = ledger["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "CAPTURED")
        .count();
    assert_eq!(captured, 1, "one slip, one capture");
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_of_the_emulator_table_through_the_full_daemon() {
    let mut k = start(0.01, "").await;
    k.idle().await;
    type Check = fn(&Final) -> bool;
    let table: &[(&str, &str, Check)] = &[
        ("399.00;ORDER-1", "CAPTURED", |f| {
            matches!(f, Final::Approved { .. })
        }),
        ("149.51", "FAILED", |f| {
            matches!(
                f,
                Final::Declined {
                    kind: DeclineKind::Declined,
                    ..
                }
            )
        }),
        ("89.52", "FAILED", |f| {
            matches!(
                f,
                Final::Declined {
                    kind: DeclineKind::InsufficientFunds,
                    ..
                }
            )
        }),
        ("75.53", "FAILED", |f| {
            matches!(
                f,
                Final::Cancelled {
                    by: CancelledBy::Customer,
                    ..
                }
            )
        }),
        ("20.54", "FAILED", |f| {
            matches!(
                f,
                Final::TimedOut {
                    transaction_id: Some(_)
                }
            )
        }),
        ("30.56", "FAILED", |f| {
            matches!(
                f,
                Final::Failed {
                    kind: FailKind::Technical,
                    ..
                }
            )
        }),
        ("10.57", "CAPTURED", |f| matches!(f, Final::Approved { .. })),
        ("10.58", "CAPTURED", |f| matches!(f, Final::Approved { .. })),
        ("10.59", "CAPTURED", |f| matches!(f, Final::Approved { .. })),
        ("50.55", "", |f| {
            matches!(
                f,
                Final::Failed {
                    kind: FailKind::TerminalOffline,
                    transaction_id: None
                }
            )
        }),
    ];
    let mut references = Vec::new();
    for (line, ledger_status, check) in table {
        let report = k.scan(line).await;
        assert!(check(&report.outcome), "{line}: {report:?}");
        let ledger = support::ledger(&k.base).await;
        let sessions = support::sessions_for(&ledger, &report.merchant_reference);
        assert_eq!(sessions.len(), 1, "{line}: exactly one session per cart");
        let txs = support::transactions_for(&ledger, &report.merchant_reference);
        if ledger_status.is_empty() {
            assert!(
                txs.is_empty(),
                "{line}: offline terminal made a transaction"
            );
            assert!(
                sessions[0]["cancelled_at"].is_string(),
                "{line}: session left open"
            );
        } else {
            assert_eq!(txs.len(), 1, "{line}");
            assert_eq!(txs[0]["status"], *ledger_status, "{line}");
            assert_eq!(txs[0]["amount"], report.amount.minor, "{line}");
            assert_eq!(
                Some(txs[0]["id"].as_str().unwrap()),
                report.outcome.transaction_id(),
                "{line}"
            );
        }
        references.push((report.merchant_reference.clone(), report.outcome.outcome()));
        if matches!(
            report.outcome,
            Final::Failed {
                kind: FailKind::TerminalOffline,
                ..
            }
        ) {
            let want = KioskState::Unavailable {
                reason: UnavailableReason::TerminalOffline,
            };
            k.kiosk
                .state
                .clone()
                .wait_for(|s| *s == want)
                .await
                .unwrap();
            k.kiosk.commands.send(Command::CheckHealth).await.unwrap();
        }
        k.idle().await;
    }
    let ledger = support::ledger(&k.base).await;
    assert_eq!(ledger["sessions"].as_array().unwrap().len(), table.len());
    let journal = kioskpay::journal::read_only(&k.dir.path().join("state")).unwrap();
    assert_eq!(journal.payments.len(), table.len());
    for (reference, outcome) in references {
        assert_eq!(
            journal.get(&reference).and_then(|p| p.outcome),
            Some(outcome),
            "{reference}"
        );
    }
    let frames = std::fs::read_dir(k.dir.path().join("frames"))
        .unwrap()
        .count();
    assert!(frames >= table.len(), "the display wrote {frames} frames");
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kiosk_timeout_cancels_and_the_ledger_agrees() {
    // Scale 0.2: the terminal's own 90 s timeout would come at 18 s, after the kiosk's 10 s.
    let mut k = start(0.2, "").await;
    k.idle().await;
    let report = k.scan("20.54").await;
    assert!(
        matches!(
            report.outcome,
            Final::TimedOut {
                transaction_id: Some(_)
            }
        ),
        "{report:?}"
    );
    let ledger = support::ledger(&k.base).await;
    let txs = support::transactions_for(&ledger, &report.merchant_reference);
    assert_eq!(txs[0]["status"], "FAILED");
    assert!(
        support::sessions_for(&ledger, &report.merchant_reference)[0]["cancelled_at"].is_string()
    );
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_terminal_gates_carts_until_it_is_active_again() {
    let mut k = start(0.01, "").await;
    k.idle().await;
    let url = format!("{}/_emulator/terminals/T12345678-T0001/status", k.base);
    support::request("PUT", &url, Some(serde_json::json!({"status": "INACTIVE"}))).await;
    k.kiosk.commands.send(Command::CheckHealth).await.unwrap();
    let want = KioskState::Unavailable {
        reason: UnavailableReason::TerminalNotActive("INACTIVE".into()),
    };
    k.kiosk
        .state
        .clone()
        .wait_for(|s| *s == want)
        .await
        .unwrap();
    k.scanner.write_all(b"399.00\r\n").await.unwrap();
    k.kiosk
        .state
        .clone()
        .wait_for(|s| s.name() == "refused")
        .await
        .unwrap();
    support::request("PUT", &url, Some(serde_json::json!({"status": "ACTIVE"}))).await;
    k.kiosk.commands.send(Command::CheckHealth).await.unwrap();
    k.idle().await;
    let report = k.scan("399.00").await;
    assert!(matches!(report.outcome, Final::Approved { .. }));
    assert_eq!(
        support::ledger(&k.base).await["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_response_is_found_not_charged_twice() {
    let mut k = start(0.01, "").await;
    k.idle().await;
    let faults = serde_json::json!({"seed": 1, "rules": [
        {"route": "POST /v1/sessions-profile", "kind": "drop_response", "count": 1}
    ]});
    support::request(
        "POST",
        &format!("{}/_emulator/faults", k.base),
        Some(faults),
    )
    .await;
    let report = k.scan("399.00").await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "{report:?}"
    );
    let ledger = support::ledger(&k.base).await;
    assert_eq!(
        support::sessions_for(&ledger, &report.merchant_reference).len(),
        1
    );
    assert_eq!(
        support::transactions_for(&ledger, &report.merchant_reference)[0]["status"],
        "CAPTURED"
    );
    let journal = kioskpay::journal::read_only(&k.dir.path().join("state")).unwrap();
    assert_eq!(journal.payments[0].outcome, Some(Outcome::Approved));
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_validation_errors_name_the_field() {
    let emulator = support::emulator(0.01).await;
    let c = client(&emulator.base_url(), "demo-secret");
    let profile = "T12345678.kiosk-in-person";
    let cases = [
        (
            request("test-ref-1", 1000, 1000, None, profile),
            "terminal_id",
        ),
        (
            request("test-ref-1", 1000, 999, Some("T12345678-T0001"), profile),
            "amount",
        ),
        (
            request("test-ref-1", 1000, 1000, Some("T12345678-T0099"), profile),
            "T12345678-T0099",
        ),
        (
            request(
                "test-ref-1",
                1000,
                1000,
                Some("T12345678-T0001"),
                "T12345678.nope",
            ),
            "profile_id",
        ),
    ];
    for (req, field) in cases {
        match c.create_session(&req).await {
            Err(ApiError::Rejected {
                status: 400,
                message,
                ..
            }) => {
                assert!(message.contains(field), "{field}: {message}")
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    assert_eq!(
        support::ledger(&emulator.base_url()).await["sessions"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    match client(&emulator.base_url(), "wrong-secret")
        .ensure_token()
        .await
    {
        Err(ApiError::Auth { status: 401, .. }) => {}
        other => panic!("{other:?}"),
    }
    emulator.shutdown().await;
}

// On paused time: the emulator's tokens and the client's token cache both keep tokio's time,
// and the client's calls run on the blocking pool, which keeps the clock from jumping while
// one is under way.
#[tokio::test(start_paused = true)]
async fn an_expired_token_is_replaced_without_failing_a_call() {
    let emulator = kioskpay::emulator::spawn(kioskpay::emulator::EmulatorConfig {
        time_scale: 0.01,
        token_ttl: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client(&emulator.base_url(), "demo-secret");
    // The tokens the emulator holds after each call.
    let mut live = Vec::new();
    for _ in 0..3 {
        let t = c
            .terminal("T12345678-T0001")
            .await
            .expect("terminal readable");
        assert_eq!(t.status, kioskpay::dintero::TerminalStatus::Active);
        let mut tokens = emulator.issued_tokens();
        tokens.sort();
        live.push(tokens);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // One token at first. The emulator forgets an expired token only when it issues another,
    // so the first token gone by the last call means a token was fetched after it expired: the
    // last call used a refreshed token, not one that never expired.
    assert_eq!(live[0].len(), 1, "{live:?}");
    let first = &live[0][0];
    assert!(!live[2].contains(first), "never refreshed: {live:?}");
    assert!(!live[2].is_empty(), "{live:?}");
    emulator.shutdown().await;
}
