//! A journal that cannot be written keeps the kiosk unavailable until it can, on paused time,
//! whether a customer's intent found out or the health gate's probe did.
//!
//! The failure is the kernel's, through the real journal: `RLIMIT_FSIZE` makes every write that
//! would grow a file past the limit fail (`EFBIG`, with `SIGXFSZ` ignored), as a full disk
//! does with `ENOSPC`, and raising the limit again is the technician freeing space. The limit
//! holds for the whole process, so this file has this one test and nothing else.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kioskpay::cart::{Cart, CartSource};
use kioskpay::dintero::{
    ApiError, CreatedSession, Gateway, RefundOutcome, RefundRequest, Session,
    SessionProfileRequest, Terminal, TerminalStatus, Transaction, TransactionQuery,
};
use kioskpay::input::InputEvent;
use kioskpay::journal::Journal;
use kioskpay::money::{Currency, Money};
use kioskpay::payment::flow::{Flow, FlowChannels};
use kioskpay::state::{KioskState, RefusalReason, UnavailableReason};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Dintero that is healthy and refuses every payment: this test is about the journal.
#[derive(Clone, Default)]
struct Healthy {
    creates: Arc<Mutex<usize>>,
}

impl Gateway for Healthy {
    async fn create_session(&self, _: &SessionProfileRequest) -> Result<CreatedSession, ApiError> {
        *self.creates.lock().unwrap() += 1;
        Err(ApiError::Rejected {
            status: 400,
            code: None,
            message: "scripted refusal".into(),
        })
    }
    async fn get_session(&self, _: &str) -> Result<Session, ApiError> {
        Err(unreachable_in_this_test())
    }
    async fn search_sessions(&self, _: &str) -> Result<Vec<Session>, ApiError> {
        Ok(Vec::new())
    }
    async fn get_transaction(&self, _: &str) -> Result<Transaction, ApiError> {
        Err(unreachable_in_this_test())
    }
    async fn list_transactions(&self, _: &TransactionQuery) -> Result<Vec<Transaction>, ApiError> {
        Ok(Vec::new())
    }
    async fn cancel_session(&self, _: &str) -> Result<(), ApiError> {
        Err(unreachable_in_this_test())
    }
    async fn refund(&self, _: &str, _: &RefundRequest) -> Result<RefundOutcome, ApiError> {
        Err(unreachable_in_this_test())
    }
    async fn terminal(&self, id: &str) -> Result<Terminal, ApiError> {
        Ok(Terminal {
            terminal_id: id.into(),
            device_serial_number: None,
            device_model: None,
            store_id: None,
            status: TerminalStatus::Active,
        })
    }
    async fn ensure_token(&self) -> Result<(), ApiError> {
        Ok(())
    }
}

fn unreachable_in_this_test() -> ApiError {
    ApiError::Unreachable {
        reason: "not scripted".into(),
    }
}

fn cart() -> InputEvent {
    InputEvent::Cart(Cart {
        amount: Money::new(39900, Currency::NOK),
        reference: None,
        source: CartSource::Serial,
    })
}

/// Files of this process may not grow past a limit while it lives; the old limit comes back
/// when it is dropped, also when an assertion fails.
struct FileSizeLimit(libc::rlimit);

impl FileSizeLimit {
    fn set(bytes: u64) -> FileSizeLimit {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: signal(2) with SIG_IGN and get/setrlimit(2) with valid pointers to rlimit
        // values on the stack; nothing else in this test binary depends on SIGXFSZ.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut old), 0);
            let limited = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: old.rlim_max,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limited), 0);
        }
        FileSizeLimit(old)
    }
}

impl Drop for FileSizeLimit {
    fn drop(&mut self) {
        // SAFETY: as in `set`; the soft limit goes back to what it was, within the hard limit.
        unsafe {
            libc::setrlimit(libc::RLIMIT_FSIZE, &self.0);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_journal_that_takes_no_writes_keeps_the_kiosk_unavailable_until_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = Journal::open(dir.path()).unwrap();
    let gateway = Healthy::default();
    let (inputs, input_rx) = mpsc::channel(8);
    let (_commands, command_rx) = mpsc::channel(8);
    let (state_tx, mut state) = watch::channel(KioskState::Starting);
    let flow = Flow::new(
        Arc::new(gateway.clone()),
        journal,
        Vec::new(),
        support::flow_config(),
        FlowChannels {
            inputs: input_rx,
            commands: command_rx,
            state: state_tx,
            reports: None,
        },
    );
    let seen = support::record_states(&state);
    let stop = CancellationToken::new();
    let task = tokio::spawn(flow.run(stop.clone().cancelled_owned()));
    state.wait_for(|s| *s == KioskState::Idle).await.unwrap();

    let journal_file = dir.path().join(kioskpay::journal::FILE_NAME);
    let full = FileSizeLimit::set(std::fs::metadata(&journal_file).unwrap().len());
    inputs.send(cart()).await.unwrap();
    state
        .wait_for(|s| {
            *s == KioskState::Refused {
                reason: RefusalReason::Unavailable,
            }
        })
        .await
        .unwrap();
    let storage = KioskState::Unavailable {
        reason: UnavailableReason::Storage,
    };
    state.wait_for(|s| *s == storage).await.unwrap();
    seen.lock().unwrap().clear();

    // Three health intervals (a check every 5 s while unavailable), and a customer meanwhile.
    tokio::time::sleep(Duration::from_secs(90)).await;
    inputs.send(cart()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert_eq!(*state.borrow(), storage);
    let shown: Vec<KioskState> = seen.lock().unwrap().drain(..).collect();
    assert!(
        shown.iter().all(|s| matches!(
            s,
            KioskState::Unavailable {
                reason: UnavailableReason::Storage
            } | KioskState::Refused {
                reason: RefusalReason::Unavailable
            }
        )),
        "only unavailable (E-JOURNAL) and refusals while the journal takes no writes: {shown:?}"
    );
    assert!(shown.contains(&KioskState::Refused {
        reason: RefusalReason::Unavailable
    }));
    assert_eq!(*gateway.creates.lock().unwrap(), 0);
    let replay = kioskpay::journal::read_only(dir.path()).unwrap();
    assert!(replay.payments.is_empty(), "no intent reached the journal");

    // Space again: the next check proves it with a journal append, and carts are taken.
    drop(full);
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| *s == KioskState::Idle),
    )
    .await
    .expect("available within one check of the journal taking writes again")
    .unwrap();
    inputs.send(cart()).await.unwrap();
    state
        .wait_for(|s| matches!(s, KioskState::Failed { .. }))
        .await
        .unwrap();
    assert_eq!(*gateway.creates.lock().unwrap(), 1);
    let replay = kioskpay::journal::read_only(dir.path()).unwrap();
    assert_eq!(replay.payments.len(), 1, "the intent was journaled");
    assert!(replay.problems.is_empty(), "{:?}", replay.problems);
    state.wait_for(|s| *s == KioskState::Idle).await.unwrap();

    // The disk fills while the kiosk is idle: the next health check finds out, before any
    // customer is turned away, and the kiosk is back once there is space again.
    let full = FileSizeLimit::set(std::fs::metadata(&journal_file).unwrap().len());
    tokio::time::timeout(Duration::from_secs(61), state.wait_for(|s| *s == storage))
        .await
        .expect("unavailable from the next health check on")
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(*state.borrow(), storage);
    drop(full);
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| *s == KioskState::Idle),
    )
    .await
    .expect("available again")
    .unwrap();
    stop.cancel();
    task.await.unwrap().unwrap();
}
