//! The payment flow against a scripted in-memory Dintero, on paused tokio time.
//!
//! The fake plays each payment out on the virtual clock (pickup, card, capture), so these tests
//! cover the flow's decisions (timeouts, lost responses, refusals, the health gate, recovery)
//! exactly and in milliseconds of real time. The same flows against the real HTTP client and the
//! emulator are in `tests/inprocess/daemon.rs`.

use crate::support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kioskpay::cart::{Cart, CartSource};
use kioskpay::dintero::{
    ApiError, CreatedSession, Gateway, Order, RefundOutcome, RefundRequest, Session, SessionEvent,
    SessionEventDetails, SessionProfileRequest, Store, Terminal, TerminalStatus, Transaction,
    TransactionError, TransactionEvent, TransactionQuery, TransactionStatus,
};
use kioskpay::input::{CustomerReason, InputEvent};
use kioskpay::journal::{Journal, Outcome, Record};
use kioskpay::money::{Currency, Money};
use kioskpay::payment::flow::{Command, Flow, FlowChannels, FlowConfig, PaymentReport};
use kioskpay::payment::poll::Polling;
use kioskpay::payment::Final;
use kioskpay::state::{CancelledBy, FailKind, KioskState, RefusalReason, UnavailableReason};
use support::flow_config;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TERMINAL: &str = "T12345678-T0001";

/// How a scripted payment plays out, in seconds after the session is created.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// Picked up at 0.5, authorized at 2, captured at 3.
    Approve,
    /// Picked up at 0.5, declined at 3.
    Decline,
    /// Never picked up.
    Offline,
    /// Picked up at 0.5, nobody presents a card.
    NoCard,
    /// Picked up at 0.5, captured at this second; a cancel before then is refused (the race in
    /// which the payment wins).
    CaptureAt(u64),
}

struct FakeSession {
    session: Session,
    created: Instant,
    plan: Plan,
    /// When the kiosk cancelled, and what the transaction was then.
    cancelled: Option<(Instant, Option<TransactionStatus>)>,
}

#[derive(Default)]
struct FakeState {
    sessions: Vec<FakeSession>,
    plan_by_amount: HashMap<u64, Plan>,
    /// Create calls that do the work but lose the answer.
    lose_create_answers: u32,
    /// Create calls that time out without doing anything.
    fail_creates_unknown: u32,
    /// Create calls refused with this status and code.
    reject_create: Option<(u16, &'static str)>,
    /// GET calls that fail with an unknown outcome.
    failing_gets: u32,
    /// Cancel calls lost on the way: they fail with an unknown outcome and cancel nothing.
    lost_cancels: u32,
    /// GET calls answered 503 with this `Retry-After`.
    busy_gets: Option<(u32, Duration)>,
    /// `GET /v1/sessions?search=` finds nothing (a search index lagging behind), so only the
    /// transaction list can find a payment.
    search_blind: bool,
    /// Every GET with the virtual time it was made at; `… 503` marks a busy answer.
    timeline: Vec<(String, Instant)>,
    terminal_status: Option<TerminalStatus>,
    terminal_forbidden: bool,
    api_down: bool,
    calls: Vec<String>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

fn unknown() -> ApiError {
    ApiError::Unknown {
        reason: "scripted timeout".into(),
        retry_after: None,
    }
}

impl Fake {
    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }

    fn creates(&self) -> usize {
        self.with(|s| s.calls.iter().filter(|c| c.starts_with("create")).count())
    }

    fn count(&self, prefix: &str) -> usize {
        self.with(|s| s.calls.iter().filter(|c| c.starts_with(prefix)).count())
    }

    fn get(&self, what: &str) -> Result<(), ApiError> {
        self.with(|s| {
            s.calls.push(what.to_string());
            let busy = s.busy_gets.as_ref().is_some_and(|(left, _)| *left > 0);
            let mark = if busy { " 503" } else { "" };
            s.timeline.push((format!("{what}{mark}"), Instant::now()));
            if s.api_down {
                return Err(ApiError::Unreachable {
                    reason: "scripted: down".into(),
                });
            }
            if s.failing_gets > 0 {
                s.failing_gets -= 1;
                return Err(unknown());
            }
            if let Some((left, retry_after)) = s.busy_gets.as_mut() {
                if *left > 0 {
                    *left -= 1;
                    return Err(ApiError::Unknown {
                        reason: "Dintero answered 503".into(),
                        retry_after: Some(*retry_after),
                    });
                }
            }
            Ok(())
        })
    }

    /// The session and transaction as they stand now on the virtual clock.
    fn snapshot(fs: &FakeSession) -> (Session, Option<Transaction>) {
        let now = Instant::now();
        let at = |secs: f64| fs.created + Duration::from_secs_f64(secs);
        let mut session = fs.session.clone();
        let tx_id = format!("{}.tx", session.id);
        let picked_up = !matches!(fs.plan, Plan::Offline) && now >= at(0.5);
        let cut = fs.cancelled.as_ref().map(|(t, _)| *t);
        let natural = |t: Instant| -> Option<TransactionStatus> {
            let secs = t.saturating_duration_since(fs.created).as_secs_f64();
            Some(match fs.plan {
                Plan::Offline => return None,
                _ if secs < 0.5 => return None,
                Plan::Approve if secs >= 3.0 => TransactionStatus::Captured,
                Plan::Approve if secs >= 2.0 => TransactionStatus::Authorized,
                Plan::Decline if secs >= 3.0 => TransactionStatus::Failed,
                Plan::CaptureAt(c) if secs >= c as f64 => TransactionStatus::Captured,
                _ => TransactionStatus::Initiated,
            })
        };
        let mut events = vec![];
        let status = match &fs.cancelled {
            // The payment wins a race with the cancel.
            Some(_) if matches!(fs.plan, Plan::CaptureAt(_)) => natural(now),
            Some((_, before)) => match before {
                None => None,
                Some(TransactionStatus::Initiated) => Some(TransactionStatus::Failed),
                Some(TransactionStatus::Authorized) => Some(TransactionStatus::AuthorizationVoided),
                Some(other) => Some(other.clone()),
            },
            None => natural(now),
        };
        if let Some(t) = cut {
            if !matches!(fs.plan, Plan::CaptureAt(_))
                && !status.as_ref().is_some_and(|s| s.is_paid())
            {
                session.cancelled_at = Some(format!("{t:?}"));
                session.cancelled_by = Some("kiosk-demo".into());
                events.push(("CANCELLED", "cancelled"));
            }
        }
        if matches!(fs.plan, Plan::Decline)
            && status == Some(TransactionStatus::Failed)
            && cut.is_none()
        {
            events.push(("PAY_FAILED", "authorization"));
        }
        session.events = events
            .into_iter()
            .map(|(name, error)| SessionEvent {
                name: name.into(),
                created_at: None,
                details: Some(SessionEventDetails {
                    error: Some(error.into()),
                }),
            })
            .collect();
        let tx = if picked_up || status.is_some() {
            session.transaction_id = Some(tx_id.clone());
            let status = status.unwrap_or(TransactionStatus::Initiated);
            let declined = matches!(fs.plan, Plan::Decline) && status == TransactionStatus::Failed;
            Some(Transaction {
                id: tx_id,
                status,
                amount: session.order.as_ref().map(|o| o.amount).unwrap_or(0),
                currency: "NOK".into(),
                merchant_reference: session.order.as_ref().map(|o| o.merchant_reference.clone()),
                merchant_reference_2: session
                    .order
                    .as_ref()
                    .and_then(|o| o.merchant_reference_2.clone()),
                session_id: Some(session.id.clone()),
                payment_product: Some("seitatech".into()),
                payment_product_type: Some("seitatech.in_person".into()),
                store: session.order.as_ref().and_then(|o| o.store.clone()),
                card: None,
                events: if declined {
                    vec![TransactionEvent {
                        event: "AUTHORIZE".into(),
                        success: Some(false),
                        amount: None,
                        error: Some(TransactionError {
                            code: None,
                            message: None,
                            types: vec!["DECLINED".into()],
                        }),
                        metadata: None,
                        created_at: None,
                    }]
                } else {
                    vec![]
                },
                created_at: session.created_at.clone(),
            })
        } else {
            None
        };
        (session, tx)
    }

    fn find(&self, id: &str) -> Option<(Session, Option<Transaction>)> {
        self.with(|s| {
            s.sessions
                .iter()
                .find(|fs| fs.session.id == id)
                .map(Fake::snapshot)
        })
    }

    fn find_tx(&self, id: &str) -> Option<Transaction> {
        self.with(|s| {
            s.sessions
                .iter()
                .map(Fake::snapshot)
                .find_map(|(_, tx)| tx.filter(|t| t.id == id))
        })
    }

    /// Adds a session as if an earlier run (or a lost answer) had created it, for this kiosk's
    /// terminal and without a cart reference.
    fn insert(&self, reference: &str, amount: u64, plan: Plan, created: Instant) -> String {
        self.insert_order(order(reference, amount, None), plan, created)
    }

    /// Adds a session for `order`, created now by Dintero's (the real) clock.
    fn insert_order(&self, order: Order, plan: Plan, created: Instant) -> String {
        self.with(|s| {
            let id = format!("T12345678.s{}", s.sessions.len() + 1);
            s.sessions.push(FakeSession {
                session: Session {
                    id: id.clone(),
                    order: Some(order),
                    created_at: Some(
                        time::OffsetDateTime::now_utc()
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap(),
                    ),
                    expires_at: None,
                    transaction_id: None,
                    events: vec![],
                    cancelled_at: None,
                    cancelled_by: None,
                },
                created,
                plan,
                cancelled: None,
            });
            id
        })
    }
}

/// The order this kiosk's create call sends for a cart.
fn order(reference: &str, amount: u64, cart_reference: Option<&str>) -> Order {
    Order {
        amount,
        currency: "NOK".into(),
        merchant_reference: reference.into(),
        merchant_reference_2: cart_reference.map(str::to_string),
        vat_amount: None,
        items: vec![],
        store: Some(Store {
            id: "oslo-center".into(),
            terminal_id: Some(TERMINAL.into()),
            payout_destination_id: Some("seller-1".into()),
        }),
    }
}

impl Gateway for Fake {
    async fn create_session(
        &self,
        request: &SessionProfileRequest,
    ) -> Result<CreatedSession, ApiError> {
        let (lose, fail, reject, plan) = self.with(|s| {
            s.calls
                .push(format!("create {}", request.order.merchant_reference));
            let lose = s.lose_create_answers > 0;
            if lose {
                s.lose_create_answers -= 1;
            }
            let fail = s.fail_creates_unknown > 0;
            if fail {
                s.fail_creates_unknown -= 1;
            }
            let plan = s
                .plan_by_amount
                .get(&request.order.amount)
                .copied()
                .unwrap_or(Plan::Approve);
            (lose, fail, s.reject_create, plan)
        });
        if fail {
            return Err(unknown());
        }
        if let Some((status, code)) = reject {
            return Err(ApiError::Rejected {
                status,
                code: Some(code.into()),
                message: "scripted".into(),
            });
        }
        let id = self.insert_order(request.order.clone(), plan, Instant::now());
        if lose {
            return Err(unknown());
        }
        Ok(CreatedSession { id, url: None })
    }

    async fn get_session(&self, id: &str) -> Result<Session, ApiError> {
        self.get(&format!("get_session {id}"))?;
        self.find(id).map(|(s, _)| s).ok_or(ApiError::Rejected {
            status: 404,
            code: None,
            message: "no session".into(),
        })
    }

    async fn search_sessions(&self, text: &str) -> Result<Vec<Session>, ApiError> {
        self.get(&format!("search {text}"))?;
        if self.with(|s| s.search_blind) {
            return Ok(vec![]);
        }
        Ok(self.with(|s| {
            s.sessions
                .iter()
                .map(Fake::snapshot)
                .map(|(s, _)| s)
                .filter(|s| {
                    s.order
                        .as_ref()
                        .is_some_and(|o| o.merchant_reference.contains(text))
                })
                .collect()
        }))
    }

    async fn get_transaction(&self, id: &str) -> Result<Transaction, ApiError> {
        self.get(&format!("get_transaction {id}"))?;
        self.find_tx(id).ok_or(ApiError::Rejected {
            status: 404,
            code: None,
            message: "no tx".into(),
        })
    }

    async fn list_transactions(
        &self,
        query: &TransactionQuery,
    ) -> Result<Vec<Transaction>, ApiError> {
        self.get("list_transactions")?;
        Ok(self.with(|s| {
            s.sessions
                .iter()
                .map(Fake::snapshot)
                .filter_map(|(_, tx)| tx)
                .filter(|t| t.merchant_reference == query.merchant_reference)
                .collect()
        }))
    }

    async fn cancel_session(&self, id: &str) -> Result<(), ApiError> {
        self.with(|s| {
            s.calls.push(format!("cancel {id}"));
            if s.lost_cancels > 0 {
                s.lost_cancels -= 1;
                return Err(unknown());
            }
            let fs =
                s.sessions
                    .iter_mut()
                    .find(|fs| fs.session.id == id)
                    .ok_or(ApiError::Rejected {
                        status: 404,
                        code: None,
                        message: "no session".into(),
                    })?;
            let (_, tx) = Fake::snapshot(fs);
            if matches!(fs.plan, Plan::CaptureAt(_)) {
                return Err(ApiError::Rejected {
                    status: 400,
                    code: None,
                    message: "payment completing".into(),
                });
            }
            match tx.as_ref().map(|t| t.status.clone()) {
                Some(st) if st.is_final() => Err(ApiError::Rejected {
                    status: 400,
                    code: None,
                    message: "final".into(),
                }),
                before => {
                    fs.cancelled = Some((Instant::now(), before));
                    Ok(())
                }
            }
        })
    }

    async fn refund(&self, _: &str, _: &RefundRequest) -> Result<RefundOutcome, ApiError> {
        Err(ApiError::Rejected {
            status: 400,
            code: None,
            message: "not scripted".into(),
        })
    }

    async fn terminal(&self, terminal_id: &str) -> Result<Terminal, ApiError> {
        self.get("terminal")?;
        let (forbidden, status) = self.with(|s| (s.terminal_forbidden, s.terminal_status.clone()));
        if forbidden {
            return Err(ApiError::Auth {
                status: 403,
                message: "scope".into(),
            });
        }
        Ok(Terminal {
            terminal_id: terminal_id.into(),
            device_serial_number: None,
            device_model: None,
            store_id: None,
            status: status.unwrap_or(TerminalStatus::Active),
        })
    }

    async fn ensure_token(&self) -> Result<(), ApiError> {
        self.get("token")
    }
}

struct Harness {
    fake: Fake,
    inputs: mpsc::Sender<InputEvent>,
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<KioskState>,
    reports: mpsc::UnboundedReceiver<PaymentReport>,
    seen: Arc<Mutex<Vec<KioskState>>>,
    token: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    dir: Arc<tempfile::TempDir>,
}

fn start(fake: Fake, dir: Arc<tempfile::TempDir>, config: FlowConfig) -> Harness {
    start_with_paid(fake, dir, config, Vec::new())
}

/// Like [`start`], telling the flow these cart references were paid before it started.
fn start_with_paid(
    fake: Fake,
    dir: Arc<tempfile::TempDir>,
    config: FlowConfig,
    paid: Vec<String>,
) -> Harness {
    // As the daemon opens it: compacted at start, from what the replay read.
    let (journal, replay) = Journal::open_compacting(dir.path(), config.keep_final).unwrap();
    let unresolved = replay.unresolved().cloned().collect();
    let (inputs, input_rx) = mpsc::channel(16);
    let (commands, command_rx) = mpsc::channel(8);
    let (state_tx, state) = watch::channel(KioskState::Starting);
    let (report_tx, reports) = mpsc::unbounded_channel();
    let flow = Flow::new(
        Arc::new(fake.clone()),
        journal,
        unresolved,
        config,
        FlowChannels {
            inputs: input_rx,
            commands: command_rx,
            state: state_tx,
            reports: Some(report_tx),
        },
    )
    .with_paid_cart_references(paid);
    let token = CancellationToken::new();
    let seen = support::record_states(&state);
    let t = token.clone();
    let task = tokio::spawn(async move {
        flow.run(t.cancelled_owned()).await.unwrap();
    });
    Harness {
        fake,
        inputs,
        commands,
        state,
        reports,
        seen,
        token,
        task,
        dir,
    }
}

fn nok(minor: u64) -> Money {
    Money::new(minor, Currency::NOK)
}

fn cart(minor: u64) -> InputEvent {
    InputEvent::Cart(Cart {
        amount: nok(minor),
        reference: Some("KID-1".into()),
        source: CartSource::Stdin,
    })
}

impl Harness {
    async fn idle(&mut self) {
        tokio::time::timeout(
            Duration::from_secs(600),
            self.state.wait_for(|s| *s == KioskState::Idle),
        )
        .await
        .expect("kiosk never became idle")
        .unwrap();
    }

    async fn pay(&mut self, minor: u64) -> PaymentReport {
        self.inputs.send(cart(minor)).await.unwrap();
        self.report().await
    }

    async fn report(&mut self) -> PaymentReport {
        tokio::time::timeout(Duration::from_secs(3600), self.reports.recv())
            .await
            .expect("no report")
            .expect("flow ended")
    }

    fn seen_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> =
            self.seen.lock().unwrap().iter().map(|s| s.name()).collect();
        names.dedup();
        names
    }

    fn journal(&self) -> Vec<kioskpay::journal::PaymentRecord> {
        kioskpay::journal::read_only(self.dir.path())
            .unwrap()
            .payments
    }

    async fn stop(self) -> (Fake, Arc<tempfile::TempDir>) {
        self.token.cancel();
        self.task.await.unwrap();
        (self.fake, self.dir)
    }
}

fn tempdir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().unwrap())
}

#[tokio::test(start_paused = true)]
async fn approved_payment_is_journaled_before_and_after_each_effect() {
    let mut h = start(Fake::default(), tempdir(), flow_config());
    h.idle().await;
    let report = h.pay(39900).await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "{report:?}"
    );
    assert_eq!(report.amount, nok(39900));
    assert_eq!(
        report.merchant_reference.len(),
        "kiosk-1-7KQ2FX-20261124-000001".len(),
        "kiosk id, installation id, date, sequence: {}",
        report.merchant_reference
    );
    assert!(
        report.merchant_reference.starts_with("kiosk-1-")
            && report.merchant_reference.ends_with("-000001")
    );
    let names = h.seen_names();
    for want in ["creating", "waiting_for_card", "processing", "approved"] {
        assert!(names.contains(&want), "{names:?}");
    }
    h.idle().await;
    let journal = h.journal();
    assert_eq!(journal.len(), 1);
    let p = &journal[0];
    assert_eq!(p.outcome, Some(Outcome::Approved));
    assert_eq!(p.amount, 39900);
    assert_eq!(p.cart_reference.as_deref(), Some("KID-1"));
    assert!(p.session_id.is_some() && p.transaction_id.is_some());
    assert_eq!(h.fake.creates(), 1);
    // The next payment gets the next reference.
    let second = h.pay(1000).await;
    assert!(second.merchant_reference.ends_with("-000002"));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn declined_payment() {
    let fake = Fake::default();
    fake.with(|s| s.plan_by_amount.insert(14951, Plan::Decline));
    let mut h = start(fake, tempdir(), flow_config());
    h.idle().await;
    let report = h.pay(14951).await;
    assert!(
        matches!(report.outcome, Final::Declined { .. }),
        "{report:?}"
    );
    assert_eq!(h.state.borrow().name(), "declined");
    h.idle().await;
    assert_eq!(h.journal()[0].outcome, Some(Outcome::Declined));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_second_cart_during_a_payment_is_refused_not_queued() {
    let mut h = start(Fake::default(), tempdir(), flow_config());
    h.idle().await;
    h.inputs.send(cart(39900)).await.unwrap();
    h.state
        .wait_for(|s| s.name() == "waiting_for_card")
        .await
        .unwrap();
    h.inputs.send(cart(5000)).await.unwrap();
    h.state
        .wait_for(|s| {
            *s == KioskState::Refused {
                reason: RefusalReason::Busy,
            }
        })
        .await
        .unwrap();
    let report = h.report().await;
    assert_eq!(report.amount, nok(39900));
    h.idle().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        h.fake.creates(),
        1,
        "the refused cart must not start a payment"
    );
    assert!(h.reports.try_recv().is_err());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refusals_happen_before_any_call() {
    let mut h = start(Fake::default(), tempdir(), flow_config());
    h.idle().await;
    let cases = [
        (cart(0), RefusalReason::ZeroAmount),
        (
            cart(1_000_001),
            RefusalReason::TooLarge {
                max: nok(1_000_000),
            },
        ),
        (
            InputEvent::Cart(Cart {
                amount: Money::new(100, Currency::from_code("SEK").unwrap()),
                reference: None,
                source: CartSource::Stdin,
            }),
            RefusalReason::WrongCurrency {
                given: "SEK".into(),
            },
        ),
        (
            InputEvent::Unreadable {
                reason: "plain code: amount \"12a\" is malformed".into(),
                customer: CustomerReason::Unreadable,
            },
            RefusalReason::Code {
                detail: "plain code: amount \"12a\" is malformed".into(),
                customer: CustomerReason::Unreadable,
            },
        ),
        (
            InputEvent::Unreadable {
                reason: "signed cart code for cart \"A\" expired".into(),
                customer: CustomerReason::Expired,
            },
            RefusalReason::Code {
                detail: "signed cart code for cart \"A\" expired".into(),
                customer: CustomerReason::Expired,
            },
        ),
    ];
    for (event, reason) in cases {
        h.inputs.send(event).await.unwrap();
        let want = KioskState::Refused { reason };
        h.state.wait_for(|s| *s == want).await.unwrap();
        h.idle().await;
    }
    assert_eq!(h.fake.creates(), 0);
    assert!(
        h.journal().is_empty(),
        "refused carts leave no journal record"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn kiosk_timeout_cancels_and_reports_timed_out() {
    let fake = Fake::default();
    fake.with(|s| s.plan_by_amount.insert(7554, Plan::NoCard));
    let mut h = start(fake, tempdir(), flow_config());
    h.idle().await;
    let report = h.pay(7554).await;
    assert!(
        matches!(
            report.outcome,
            Final::TimedOut {
                transaction_id: Some(_)
            }
        ),
        "{report:?}"
    );
    assert_eq!(h.fake.count("cancel"), 1);
    h.idle().await;
    assert_eq!(h.journal()[0].outcome, Some(Outcome::TimedOut));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_payment_wins_over_the_kiosks_cancel() {
    let fake = Fake::default();
    // Captured one second after the kiosk's 60 s timeout; the cancel is refused meanwhile.
    fake.with(|s| s.plan_by_amount.insert(39900, Plan::CaptureAt(61)));
    let mut h = start(fake, tempdir(), flow_config());
    h.idle().await;
    let report = h.pay(39900).await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "the payment must win: {report:?}"
    );
    assert_eq!(h.fake.count("cancel"), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn terminal_offline_is_detected_cancelled_and_gates_new_carts() {
    let (log, _guard) = support::log::capture();
    let fake = Fake::default();
    fake.with(|s| s.plan_by_amount.insert(5055, Plan::Offline));
    let mut h = start(fake, tempdir(), flow_config());
    h.idle().await;
    let report = h.pay(5055).await;
    assert_eq!(
        report.outcome,
        Final::Failed {
            transaction_id: None,
            kind: FailKind::TerminalOffline
        }
    );
    assert_eq!(h.fake.count("cancel"), 1);
    let want = KioskState::Unavailable {
        reason: UnavailableReason::TerminalOffline,
    };
    h.state.wait_for(|s| *s == want).await.unwrap();
    h.inputs.send(cart(1000)).await.unwrap();
    h.state
        .wait_for(|s| {
            *s == KioskState::Refused {
                reason: RefusalReason::Unavailable,
            }
        })
        .await
        .unwrap();
    assert_eq!(h.fake.creates(), 1);
    // The health gate clears it by itself.
    h.idle().await;
    let ok = h.pay(1000).await;
    assert!(matches!(ok.outcome, Final::Approved { .. }));
    // Down and up again are both in the log, once each.
    let down = log.lines("card payment unavailable");
    assert_eq!(down.len(), 1, "{}", log.all());
    assert!(
        down[0].contains("did not pick the last payment up"),
        "{down:?}"
    );
    assert_eq!(
        log.lines("card payment available again").len(),
        1,
        "{}",
        log.all()
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_create_answer_is_found_by_reference_not_created_again() {
    let fake = Fake::default();
    fake.with(|s| s.lose_create_answers = 1);
    let mut h = start(fake, tempdir(), flow_config());
    h.idle().await;
    let report = h.pay(39900).await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "{report:?}"
    );
    assert_eq!(h.fake.creates(), 1, "never create twice for one intent");
    assert!(h.fake.count("search") >= 1);
    assert!(h.seen_names().contains(&"checking"));
    h.stop().await;
}

/// A kiosk whose 399.00 payment met a create with an unknown outcome that two lookups proved
/// never happened: written off as `not_created`.
async fn written_off() -> (Harness, PaymentReport) {
    let fake = Fake::default();
    fake.with(|s| s.fail_creates_unknown = 1);
    let mut h = start(fake, tempdir(), flow_config());
    h.idle().await;
    let report = h.pay(39900).await;
    assert!(
        matches!(report.outcome, Final::NotCreated { .. }),
        "{report:?}"
    );
    (h, report)
}

#[tokio::test(start_paused = true)]
async fn a_create_that_never_happened_ends_not_created_after_two_lookups() {
    let (mut h, _) = written_off().await;
    assert_eq!(h.fake.creates(), 1);
    assert!(
        h.fake.count("search") >= 2,
        "one lookup is not enough to conclude"
    );
    h.idle().await;
    assert_eq!(h.journal()[0].outcome, Some(Outcome::NotCreated));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_rejected_create_is_not_looked_up() {
    let fake = Fake::default();
    fake.with(|s| s.reject_create = Some((409, "TERMINAL_BUSY")));
    let mut h = start(fake, tempdir(), flow_config());
    h.idle().await;
    let report = h.pay(39900).await;
    assert!(
        matches!(&report.outcome, Final::NotCreated { reason } if reason.contains("TERMINAL_BUSY")),
        "{report:?}"
    );
    assert_eq!(h.fake.count("search"), 0);
    assert_eq!(h.state.borrow().name(), "failed");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn read_errors_show_checking_and_the_payment_is_still_followed() {
    let fake = Fake::default();
    let mut h = start(fake, tempdir(), flow_config());
    h.idle().await;
    h.inputs.send(cart(39900)).await.unwrap();
    h.state
        .wait_for(|s| s.name() == "waiting_for_card")
        .await
        .unwrap();
    h.fake.with(|s| s.failing_gets = 6);
    let report = h.report().await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "{report:?}"
    );
    assert!(h.seen_names().contains(&"checking"));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn technician_cancel_cancels_a_waiting_payment() {
    let fake = Fake::default();
    fake.with(|s| s.plan_by_amount.insert(7554, Plan::NoCard));
    let mut h = start(fake, tempdir(), flow_config());
    h.idle().await;
    h.inputs.send(cart(7554)).await.unwrap();
    h.state
        .wait_for(|s| s.name() == "waiting_for_card")
        .await
        .unwrap();
    h.commands.send(Command::Cancel).await.unwrap();
    let report = h.report().await;
    assert!(
        matches!(
            report.outcome,
            Final::Cancelled {
                by: CancelledBy::Kiosk,
                ..
            }
        ),
        "{report:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn health_gate_refuses_while_the_terminal_is_inactive_and_recovers_by_itself() {
    let fake = Fake::default();
    fake.with(|s| s.terminal_status = Some(TerminalStatus::Inactive));
    let mut h = start(fake, tempdir(), flow_config());
    let want = KioskState::Unavailable {
        reason: UnavailableReason::TerminalNotActive("INACTIVE".into()),
    };
    h.state.wait_for(|s| *s == want).await.unwrap();
    h.inputs.send(cart(1000)).await.unwrap();
    h.state
        .wait_for(|s| {
            *s == KioskState::Refused {
                reason: RefusalReason::Unavailable,
            }
        })
        .await
        .unwrap();
    h.fake
        .with(|s| s.terminal_status = Some(TerminalStatus::Active));
    h.idle().await;
    assert!(matches!(h.pay(1000).await.outcome, Final::Approved { .. }));
    assert_eq!(h.fake.creates(), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn health_gate_when_the_api_is_down_then_back() {
    let fake = Fake::default();
    fake.with(|s| s.api_down = true);
    let mut h = start(fake, tempdir(), flow_config());
    let want = KioskState::Unavailable {
        reason: UnavailableReason::ApiUnreachable,
    };
    h.state.wait_for(|s| *s == want).await.unwrap();
    h.fake.with(|s| s.api_down = false);
    h.idle().await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_health_gate_logs_each_change_once_with_its_cause() {
    let (log, _guard) = support::log::capture();
    let fake = Fake::default();
    fake.with(|s| s.api_down = true);
    let mut h = start(fake, tempdir(), flow_config());
    let want = KioskState::Unavailable {
        reason: UnavailableReason::ApiUnreachable,
    };
    h.state.wait_for(|s| *s == want).await.unwrap();
    // Checked every 5 s while down: two minutes of the same failure.
    tokio::time::sleep(Duration::from_secs(120)).await;
    h.inputs.send(cart(1000)).await.unwrap();
    h.state
        .wait_for(|s| matches!(s, KioskState::Refused { .. }))
        .await
        .unwrap();
    h.fake.with(|s| s.api_down = false);
    h.idle().await;

    let down = log.lines("card payment unavailable");
    assert_eq!(down.len(), 1, "{down:#?}");
    assert!(
        down[0].contains("WARN")
            && down[0].contains("reason=Dintero cannot be reached")
            && down[0].contains("could not reach Dintero: scripted: down"),
        "{down:#?}"
    );
    assert!(log.lines("still unavailable").is_empty());
    let up = log.lines("card payment available again");
    assert_eq!(up.len(), 1, "{up:#?}");
    assert!(up[0].contains("INFO"), "{up:#?}");
    let refused = log.lines("cart refused");
    assert!(
        refused.len() == 1 && refused[0].contains("reason=card payment is unavailable"),
        "{refused:#?}"
    );

    // An inactive terminal: its own change, with Dintero's word for it.
    h.fake
        .with(|s| s.terminal_status = Some(TerminalStatus::Inactive));
    h.commands.send(Command::CheckHealth).await.unwrap();
    let want = KioskState::Unavailable {
        reason: UnavailableReason::TerminalNotActive("INACTIVE".into()),
    };
    h.state.wait_for(|s| *s == want).await.unwrap();
    // A failure that lasts is repeated, with a count, every ten minutes, not every check.
    tokio::time::sleep(Duration::from_secs(601)).await;
    let down = log.lines("card payment unavailable");
    assert_eq!(down.len(), 2, "{down:#?}");
    assert!(
        down[1].contains("is INACTIVE") && down[1].contains("the terminal is INACTIVE, not ACTIVE"),
        "{down:#?}"
    );
    let again = log.lines("card payment still unavailable");
    assert_eq!(again.len(), 1, "{again:#?}");
    assert!(again[0].contains("checks_since="), "{again:#?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refused_carts_are_logged_in_words_not_structures() {
    let (log, _guard) = support::log::capture();
    let mut h = start(Fake::default(), tempdir(), flow_config());
    h.idle().await;
    h.inputs.send(cart(1_000_001)).await.unwrap();
    let want = KioskState::Refused {
        reason: RefusalReason::TooLarge {
            max: nok(1_000_000),
        },
    };
    h.state.wait_for(|s| *s == want).await.unwrap();
    let refused = log.lines("cart refused");
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(
        refused[0].contains("reason=too large: above kiosk.max_amount NOK 10000.00")
            && refused[0].contains("amount=NOK 10000.01"),
        "{refused:#?}"
    );
    assert!(!refused[0].contains("Money {"), "{refused:#?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn health_gate_falls_back_to_the_api_alone_without_the_terminal_scope() {
    let fake = Fake::default();
    fake.with(|s| s.terminal_forbidden = true);
    let mut h = start(fake, tempdir(), flow_config());
    h.idle().await;
    assert!(matches!(h.pay(1000).await.outcome, Final::Approved { .. }));
    h.stop().await;
}

fn intent(reference: &str, amount: u64, sequence: u64) -> Record {
    Record::Intent {
        merchant_reference: reference.into(),
        amount,
        currency: "NOK".into(),
        cart_reference: None,
        terminal_id: TERMINAL.into(),
        sequence,
        at: "2026-11-24T08:00:00Z".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn recovery_resolves_every_unfinished_payment_before_taking_carts() {
    let dir = tempdir();
    let fake = Fake::default();
    let long_ago = Instant::now();
    {
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        // 1: created and captured while the kiosk was off; only the intent reached the journal.
        journal
            .append(&intent("kiosk-1-20261124-000001", 39900, 1))
            .unwrap();
        // 2: a session no terminal ever picked up.
        journal
            .append(&intent("kiosk-1-20261124-000002", 2000, 2))
            .unwrap();
        let offline = fake.insert("kiosk-1-20261124-000002", 2000, Plan::Offline, long_ago);
        journal
            .append(&Record::Session {
                merchant_reference: "kiosk-1-20261124-000002".into(),
                session_id: offline,
            })
            .unwrap();
        // 3: the power went before the create call: nothing at Dintero.
        journal
            .append(&intent("kiosk-1-20261124-000003", 3000, 3))
            .unwrap();
    }
    fake.insert("kiosk-1-20261124-000001", 39900, Plan::Approve, long_ago);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut h = start(fake, dir, flow_config());
    let r1 = h.report().await;
    let r2 = h.report().await;
    let r3 = h.report().await;
    assert!(r1.recovered && r2.recovered && r3.recovered);
    assert!(matches!(r1.outcome, Final::Approved { .. }), "{r1:?}");
    assert!(
        matches!(
            r2.outcome,
            Final::Cancelled {
                by: CancelledBy::Kiosk,
                transaction_id: None
            }
        ),
        "{r2:?}"
    );
    assert!(matches!(r3.outcome, Final::NotCreated { .. }), "{r3:?}");
    assert_eq!(h.fake.creates(), 0, "recovery never creates a session");
    assert_eq!(h.fake.count("cancel"), 1);
    h.idle().await;
    assert!(h.journal().iter().all(|p| p.outcome.is_some()));
    // New payments continue the sequence.
    let next = h.pay(1000).await;
    assert!(
        next.merchant_reference.ends_with("-000004"),
        "{}",
        next.merchant_reference
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn recovery_waits_for_the_api_and_shows_checking() {
    let dir = tempdir();
    {
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal
            .append(&intent("kiosk-1-20261124-000001", 39900, 1))
            .unwrap();
    }
    let fake = Fake::default();
    fake.insert(
        "kiosk-1-20261124-000001",
        39900,
        Plan::Approve,
        Instant::now(),
    );
    fake.with(|s| s.api_down = true);
    let mut h = start(fake, dir, flow_config());
    let want = KioskState::Checking {
        reference: "kiosk-1-20261124-000001".into(),
    };
    h.state.wait_for(|s| *s == want).await.unwrap();
    h.inputs.send(cart(1000)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(
        h.reports.try_recv().is_err(),
        "nothing resolves while the API is down"
    );
    h.fake.with(|s| s.api_down = false);
    let r = h.report().await;
    assert!(matches!(r.outcome, Final::Approved { .. }) && r.recovered);
    assert_eq!(
        h.fake.creates(),
        0,
        "the cart sent during recovery was refused, not queued"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_mid_payment_leaves_it_for_the_next_start() {
    let dir = tempdir();
    let mut h = start(Fake::default(), dir, flow_config());
    h.idle().await;
    h.inputs.send(cart(39900)).await.unwrap();
    h.state
        .wait_for(|s| s.name() == "waiting_for_card")
        .await
        .unwrap();
    // Past the terminal's pickup: the journal knows the transaction, so the restarted kiosk
    // follows it (a session never picked up would be cancelled instead; see the recovery test).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (fake, dir) = h.stop().await;
    let unfinished = kioskpay::journal::read_only(dir.path()).unwrap();
    assert_eq!(unfinished.unresolved().count(), 1);
    let mut h = start(fake, dir, flow_config());
    let r = h.report().await;
    assert!(
        r.recovered && matches!(r.outcome, Final::Approved { .. }),
        "{r:?}"
    );
    assert_eq!(h.fake.creates(), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn recovery_follows_an_authorized_payment_and_reports_a_decline() {
    let dir = tempdir();
    let fake = Fake::default();
    let now = Instant::now();
    {
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        for (seq, (reference, amount, plan)) in [
            ("kiosk-1-20261124-000001", 39900, Plan::Approve),
            ("kiosk-1-20261124-000002", 14951, Plan::Decline),
        ]
        .into_iter()
        .enumerate()
        {
            journal
                .append(&intent(reference, amount, seq as u64 + 1))
                .unwrap();
            let id = fake.insert(reference, amount, plan, now);
            journal
                .append(&Record::Session {
                    merchant_reference: reference.into(),
                    session_id: id,
                })
                .unwrap();
        }
    }
    // 2.2 s in: the first is AUTHORIZED (capture pending), the second still prompting.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut h = start(fake, dir, flow_config());
    let r1 = h.report().await;
    let r2 = h.report().await;
    assert!(
        matches!(r1.outcome, Final::Approved { .. }),
        "authorized must be followed to captured: {r1:?}"
    );
    assert!(matches!(r2.outcome, Final::Declined { .. }), "{r2:?}");
    assert_eq!(h.fake.creates(), 0);
    assert_eq!(
        h.fake.count("cancel"),
        0,
        "a payment the terminal picked up is followed, not cancelled"
    );
    h.stop().await;
}

/// Compaction rewrites the journal (tens of milliseconds on an SD card): it runs as a payment
/// ends, with the result on screen, and never between the next scan and its create.
#[tokio::test(start_paused = true)]
async fn run_time_compaction_runs_as_a_payment_ends_not_when_the_next_cart_comes() {
    let dir = tempdir();
    let mut h = start(
        Fake::default(),
        dir,
        FlowConfig {
            keep_final: 2,
            ..flow_config()
        },
    );
    h.idle().await;
    for _ in 0..3 {
        h.pay(1000).await;
        h.idle().await;
    }
    let kept: Vec<String> = h
        .journal()
        .into_iter()
        .map(|p| p.merchant_reference)
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept[1].ends_with("-000003"), "{kept:?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_journal_is_compacted_at_start_keeping_unfinished_payments() {
    let dir = tempdir();
    // The first run keeps more than it makes, so that what the restart finds is all five.
    let mut h = start(
        Fake::default(),
        dir,
        FlowConfig {
            keep_final: 10,
            ..flow_config()
        },
    );
    h.idle().await;
    for _ in 0..5 {
        h.pay(1000).await;
        h.idle().await;
    }
    let (fake, dir) = h.stop().await;
    assert_eq!(
        kioskpay::journal::read_only(dir.path())
            .unwrap()
            .payments
            .len(),
        5
    );
    let mut h = start(
        fake,
        dir,
        FlowConfig {
            keep_final: 2,
            ..flow_config()
        },
    );
    h.idle().await;
    let replay = kioskpay::journal::read_only(h.dir.path()).unwrap();
    assert_eq!(
        replay.payments.len(),
        2,
        "compaction keeps the newest finished payments"
    );
    let next = h.pay(1000).await;
    assert!(
        next.merchant_reference.ends_with("-000006"),
        "the sequence survives compaction"
    );
    h.stop().await;
}

fn signed(minor: u64, reference: &str) -> InputEvent {
    InputEvent::SignedCart(Cart {
        amount: nok(minor),
        reference: Some(reference.into()),
        source: CartSource::Serial,
    })
}

fn already_paid(state: &KioskState) -> bool {
    matches!(
        state,
        KioskState::Refused {
            reason: RefusalReason::Code {
                customer: CustomerReason::AlreadyPaid,
                ..
            }
        }
    )
}

#[tokio::test(start_paused = true)]
async fn a_signed_code_is_paid_once() {
    let mut h = start(Fake::default(), tempdir(), flow_config());
    h.idle().await;
    h.inputs.send(signed(12500, "POS-1")).await.unwrap();
    let report = h.report().await;
    assert!(matches!(report.outcome, Final::Approved { .. }));
    h.idle().await;

    // The same paper again: refused before any call.
    h.inputs.send(signed(12500, "POS-1")).await.unwrap();
    h.state.wait_for(already_paid).await.unwrap();
    h.idle().await;
    assert_eq!(h.fake.creates(), 1);

    // Another cart is payable, and so is a cart that was declined rather than paid.
    h.fake
        .with(|s| s.plan_by_amount.insert(14951, Plan::Decline));
    h.inputs.send(signed(14951, "POS-2")).await.unwrap();
    assert!(matches!(h.report().await.outcome, Final::Declined { .. }));
    h.idle().await;
    h.fake.with(|s| s.plan_by_amount.remove(&14951));
    h.inputs.send(signed(14951, "POS-2")).await.unwrap();
    assert!(matches!(h.report().await.outcome, Final::Approved { .. }));
    h.idle().await;

    // Codes without a cart reference are not paid once: a shop may sell the same labelled
    // article twice.
    h.inputs
        .send(InputEvent::Cart(Cart {
            amount: nok(12500),
            reference: Some("POS-1".into()),
            source: CartSource::Serial,
        }))
        .await
        .unwrap();
    assert!(matches!(h.report().await.outcome, Final::Approved { .. }));
    assert_eq!(h.fake.creates(), 4);
    h.stop().await;
}

fn slip(minor: u64, reference: &str) -> InputEvent {
    InputEvent::SlipCart(Cart {
        amount: nok(minor),
        reference: Some(reference.into()),
        source: CartSource::Serial,
    })
}

#[tokio::test(start_paused = true)]
async fn a_payment_slip_is_paid_once_within_its_window() {
    let window = Duration::from_secs(3600);
    let mut h = start(
        Fake::default(),
        tempdir(),
        FlowConfig {
            paid_cart_window: window,
            ..flow_config()
        },
    );
    h.idle().await;
    h.inputs.send(slip(39900, "KID-77")).await.unwrap();
    assert!(matches!(h.report().await.outcome, Final::Approved { .. }));
    h.idle().await;

    // Scanned again a few seconds later, and again near the end of the window: refused.
    for wait in [Duration::from_secs(5), window - Duration::from_secs(60)] {
        tokio::time::sleep(wait).await;
        h.inputs.send(slip(39900, "KID-77")).await.unwrap();
        h.state.wait_for(already_paid).await.unwrap();
        h.idle().await;
    }
    assert_eq!(h.fake.creates(), 1);
    // A signed code with the slip's cart reference is refused too.
    h.inputs.send(signed(39900, "KID-77")).await.unwrap();
    h.state.wait_for(already_paid).await.unwrap();
    h.idle().await;
    assert_eq!(h.fake.creates(), 1);

    // Once the window is over the slip is a new payment; the signed code stays refused.
    tokio::time::sleep(Duration::from_secs(120)).await;
    h.inputs.send(signed(39900, "KID-77")).await.unwrap();
    h.state.wait_for(already_paid).await.unwrap();
    h.idle().await;
    h.inputs.send(slip(39900, "KID-77")).await.unwrap();
    assert!(matches!(h.report().await.outcome, Final::Approved { .. }));
    assert_eq!(h.fake.creates(), 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_zero_window_never_refuses_a_slip() {
    let mut h = start(
        Fake::default(),
        tempdir(),
        FlowConfig {
            paid_cart_window: Duration::ZERO,
            ..flow_config()
        },
    );
    h.idle().await;
    for _ in 0..2 {
        h.inputs.send(slip(39900, "SHARED")).await.unwrap();
        assert!(matches!(h.report().await.outcome, Final::Approved { .. }));
        h.idle().await;
    }
    assert_eq!(h.fake.creates(), 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_cancel_lost_on_the_way_is_sent_again() {
    // The terminal never picks up; the kiosk's first cancel is lost without reaching Dintero.
    // Following the session forever would hang the kiosk with the session open: the cancel
    // must go out again.
    let fake = Fake::default();
    fake.with(|s| {
        s.plan_by_amount.insert(5055, Plan::Offline);
        s.lost_cancels = 1;
    });
    let mut h = start(fake, tempdir(), flow_config());
    h.idle().await;
    let report = h.pay(5055).await;
    assert_eq!(
        report.outcome,
        Final::Failed {
            transaction_id: None,
            kind: FailKind::TerminalOffline
        }
    );
    assert_eq!(h.fake.count("cancel"), 2, "the lost cancel is sent again");
    assert_eq!(h.fake.creates(), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_signed_code_paid_before_the_flow_started_is_refused() {
    let paid = vec!["POS-OLD".to_string()];
    let mut h = start_with_paid(Fake::default(), tempdir(), flow_config(), paid);
    h.idle().await;
    h.inputs.send(signed(12500, "POS-OLD")).await.unwrap();
    h.state.wait_for(already_paid).await.unwrap();
    h.idle().await;
    assert_eq!(h.fake.creates(), 0);
    assert!(
        h.journal().is_empty(),
        "a refused code leaves no journal record"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reads_wait_for_retry_after_before_trying_again() {
    let fake = Fake::default();
    let mut h = start(fake, tempdir(), flow_config());
    h.idle().await;
    let retry_after = Duration::from_secs(7);
    h.fake.with(|s| s.busy_gets = Some((1, retry_after)));
    let report = h.pay(39900).await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "{report:?}"
    );
    let timeline = h.fake.with(|s| s.timeline.clone());
    let busy = timeline
        .iter()
        .position(|(what, _)| what.ends_with(" 503"))
        .expect("one read was answered 503");
    let (_, answered_at) = &timeline[busy];
    let (next, next_at) = &timeline[busy + 1];
    assert!(
        *next_at >= *answered_at + retry_after,
        "{next} came {:?} after the 503 with Retry-After {retry_after:?}",
        *next_at - *answered_at
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lost_scanner_is_shown_while_idle_and_cleared_when_it_is_back() {
    let mut h = start(Fake::default(), tempdir(), flow_config());
    h.idle().await;
    let scanner_gone = KioskState::Unavailable {
        reason: UnavailableReason::Scanner,
    };
    h.inputs.send(InputEvent::ScannerUnavailable).await.unwrap();
    h.state.wait_for(|s| *s == scanner_gone).await.unwrap();
    h.inputs.send(InputEvent::ScannerBack).await.unwrap();
    h.idle().await;

    // Lost during a payment: the payment finishes, its result is shown, then the scanner screen.
    h.inputs.send(cart(39900)).await.unwrap();
    h.state
        .wait_for(|s| s.name() == "waiting_for_card")
        .await
        .unwrap();
    h.inputs.send(InputEvent::ScannerUnavailable).await.unwrap();
    let report = h.report().await;
    assert!(matches!(report.outcome, Final::Approved { .. }));
    h.state.wait_for(|s| *s == scanner_gone).await.unwrap();
    assert!(
        h.seen_names().ends_with(&["approved", "unavailable"]),
        "{:?}",
        h.seen_names()
    );
    h.inputs.send(InputEvent::ScannerBack).await.unwrap();
    h.idle().await;
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn recovery_reads_a_captured_payment_it_already_knew_the_transaction_of() {
    // The kiosk lost power after journaling the transaction, while the customer paid.
    let dir = tempdir();
    let fake = Fake::default();
    let reference = "kiosk-1-20261124-000001";
    {
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal.append(&intent(reference, 39900, 1)).unwrap();
        let id = fake.insert(reference, 39900, Plan::Approve, Instant::now());
        journal
            .append(&Record::Session {
                merchant_reference: reference.into(),
                session_id: id.clone(),
            })
            .unwrap();
        journal
            .append(&Record::Transaction {
                merchant_reference: reference.into(),
                transaction_id: format!("{id}.tx"),
            })
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut h = start(fake, dir, flow_config());
    let r = h.report().await;
    assert!(
        r.recovered && matches!(r.outcome, Final::Approved { .. }),
        "{r:?}"
    );
    assert_eq!(h.fake.creates(), 0);
    assert_eq!(h.fake.count("cancel"), 0);
    assert_eq!(
        h.fake.count("search"),
        0,
        "a known session is read, not searched for"
    );
    h.idle().await;
    let p = &h.journal()[0];
    assert_eq!(p.outcome, Some(Outcome::Approved));
    assert_eq!(p.status.as_deref(), Some("CAPTURED"));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn recovery_finds_a_lost_create_through_the_transaction_list() {
    // Only the intent reached the journal before the power went; the create went through and
    // the customer paid. The session search does not find it (its index lags), so the
    // transaction list by merchant_reference and terminal must.
    let dir = tempdir();
    let fake = Fake::default();
    let reference = "kiosk-1-20261124-000001";
    {
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal.append(&intent(reference, 39900, 1)).unwrap();
    }
    fake.insert(reference, 39900, Plan::Approve, Instant::now());
    fake.with(|s| s.search_blind = true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut h = start(fake, dir, flow_config());
    let r = h.report().await;
    assert!(
        r.recovered && matches!(r.outcome, Final::Approved { .. }),
        "{r:?}"
    );
    assert!(h.fake.count("list_transactions") >= 1);
    assert_eq!(h.fake.creates(), 0, "recovery never creates a session");
    h.idle().await;
    let p = &h.journal()[0];
    assert_eq!(p.outcome, Some(Outcome::Approved));
    assert!(
        p.transaction_id.is_some(),
        "the found transaction is journaled"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn one_failed_health_check_does_not_turn_customers_away() {
    let mut h = start(Fake::default(), tempdir(), flow_config());
    h.idle().await;
    // The next periodic check meets one lost answer; the check after it is fine.
    h.fake.with(|s| s.failing_gets = 1);
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(h.fake.with(|s| s.failing_gets), 0, "the periodic check ran");
    assert!(
        !h.seen_names().contains(&"unavailable"),
        "{:?}",
        h.seen_names()
    );
    assert!(matches!(h.pay(1000).await.outcome, Final::Approved { .. }));
    // Down for real: two failures in a row make card payment unavailable.
    h.idle().await;
    h.fake.with(|s| s.api_down = true);
    let want = KioskState::Unavailable {
        reason: UnavailableReason::ApiUnreachable,
    };
    h.state.wait_for(|s| *s == want).await.unwrap();
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_payment_written_off_is_looked_for_a_few_times_until_its_window_ends() {
    let (mut h, _) = written_off().await;
    let before = h.fake.count("search");
    tokio::time::sleep(kioskpay::payment::late::WINDOW).await;
    let lookups = h.fake.count("search") - before;
    // Due 10, 30, 70, 150 and 310 s after the write-off, taken at the next health check
    // (every 60 s here): spaced out, not one per check.
    assert!((3..=5).contains(&lookups), "{lookups} lookups");
    let after_window = h.fake.count("search");
    tokio::time::sleep(flow_config().health_interval * 5).await;
    assert_eq!(
        h.fake.count("search"),
        after_window,
        "no lookups once its window is over"
    );
    assert!(h.reports.try_recv().is_err(), "nothing was found");
    assert_eq!(h.fake.creates(), 1, "looking never creates");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_payment_written_off_that_turns_up_is_reopened_and_followed() {
    let (mut h, report) = written_off().await;
    // Dintero creates it after all, and the customer pays at the terminal.
    h.fake.insert_order(
        order(
            &report.merchant_reference,
            39900,
            report.cart_reference.as_deref(),
        ),
        Plan::Approve,
        Instant::now(),
    );
    let found = h.report().await;
    assert_eq!(found.merchant_reference, report.merchant_reference);
    assert!(
        found.recovered && matches!(found.outcome, Final::Approved { .. }),
        "{found:?}"
    );
    assert_eq!(h.fake.creates(), 1);
    assert_eq!(
        h.fake.count("cancel"),
        0,
        "a payment the terminal took is followed"
    );
    assert_eq!(h.journal()[0].outcome, Some(Outcome::Approved));
    h.idle().await;
    h.stop().await;
}

/// The flow's settings with the adaptive polling policy at a 250 ms base (the default).
fn adaptive_config() -> FlowConfig {
    FlowConfig {
        polling: Polling::Adaptive {
            base: Duration::from_millis(250),
        },
        ..flow_config()
    }
}

/// The reads of the payment scanned at `scanned` (which the health gate's reads at the same
/// virtual instant are not): (call, time since the scan).
fn reads_since(h: &Harness, scanned: Instant) -> Vec<(String, Duration)> {
    h.fake.with(|s| {
        s.timeline
            .iter()
            .filter(|(what, at)| *at >= scanned && what.starts_with("get_"))
            .map(|(what, at)| (what.split(' ').next().unwrap().to_string(), *at - scanned))
            .collect()
    })
}

#[tokio::test(start_paused = true)]
async fn adaptive_polling_reads_an_approval_where_it_can_change_and_no_more() {
    // Picked up at 0.5 s, authorized at 2 s, captured at 3 s.
    let mut h = start(Fake::default(), tempdir(), adaptive_config());
    h.idle().await;
    let scanned = Instant::now();
    let report = h.pay(39900).await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "{report:?}"
    );
    let reads = reads_since(&h, scanned);
    let ms = |d: Duration| d.as_millis();
    // No read before the terminal can have taken the session.
    assert_eq!(ms(reads[0].1), 500, "{reads:?}");
    // While the card is awaited, every 1.5 s (so that a read lands in the second between the
    // authorization and the capture); while the capture is due, every 250 ms.
    let times: Vec<u128> = reads
        .iter()
        .filter(|(what, _)| what == "get_transaction")
        .map(|(_, at)| ms(*at))
        .collect();
    assert_eq!(times, [500, 2000, 2250, 2500, 2750, 3000], "{reads:?}");
    // The capture seen by the first read after it, and no session read after that: an
    // approval needs no reason.
    assert_eq!(reads.last().unwrap().0, "get_transaction", "{reads:?}");
    assert_eq!(
        reads
            .iter()
            .filter(|(what, _)| what == "get_session")
            .count(),
        1,
        "only the read that found the transaction: {reads:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn adaptive_polling_looks_less_often_the_longer_a_customer_takes() {
    let fake = Fake::default();
    fake.with(|s| s.plan_by_amount.insert(7554, Plan::NoCard));
    let mut h = start(fake, tempdir(), adaptive_config());
    h.idle().await;
    let scanned = Instant::now();
    let report = h.pay(7554).await;
    assert!(
        matches!(report.outcome, Final::TimedOut { .. }),
        "{report:?}"
    );
    let times: Vec<Duration> = reads_since(&h, scanned)
        .into_iter()
        .filter(|(what, _)| what == "get_transaction")
        .map(|(_, at)| at)
        .collect();
    let gap_after = |secs: f64| {
        let i = times
            .iter()
            .position(|t| t.as_secs_f64() >= secs)
            .expect("a read that late");
        times[i + 1] - times[i]
    };
    // The card awaited since 0.5 s: 1.5 s apart for 20 s, then 4 s, until the kiosk's 60 s
    // timeout cancels.
    assert_eq!(gap_after(1.0), Duration::from_millis(1500));
    assert_eq!(gap_after(17.0), Duration::from_millis(1500));
    assert_eq!(gap_after(21.0), Duration::from_secs(4));
    assert_eq!(gap_after(50.0), Duration::from_secs(4));
    // A fixed 500 ms period would have read about 120 times before the timeout.
    assert!(times.len() < 30, "{} reads", times.len());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn maintenance_on_while_idle_shows_the_technician_screen_and_off_returns_to_sale() {
    let mut h = start(Fake::default(), tempdir(), flow_config());
    h.idle().await;
    h.commands.send(Command::Maintenance(true)).await.unwrap();
    h.state
        .wait_for(|s| *s == KioskState::Technician)
        .await
        .unwrap();
    h.commands.send(Command::Maintenance(false)).await.unwrap();
    h.idle().await;
    let report = h.pay(1000).await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "after maintenance the kiosk takes carts again: {report:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn carts_are_refused_during_maintenance_before_any_call() {
    let mut h = start(Fake::default(), tempdir(), flow_config());
    h.idle().await;
    h.commands.send(Command::Maintenance(true)).await.unwrap();
    h.state
        .wait_for(|s| *s == KioskState::Technician)
        .await
        .unwrap();
    h.inputs.send(cart(1000)).await.unwrap();
    h.state
        .wait_for(|s| {
            *s == KioskState::Refused {
                reason: RefusalReason::Unavailable,
            }
        })
        .await
        .unwrap();
    // After the refusal the technician screen comes back, not the idle one.
    h.state
        .wait_for(|s| *s == KioskState::Technician)
        .await
        .unwrap();
    assert_eq!(h.fake.creates(), 0, "nothing may reach Dintero");
    assert!(h.journal().is_empty(), "a refused cart is not journaled");
    assert!(h.reports.try_recv().is_err(), "no payment was made");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_technicians_test_payment_is_taken_only_in_maintenance() {
    let mut h = start(Fake::default(), tempdir(), flow_config());
    h.idle().await;
    let test_cart = Cart {
        amount: nok(100),
        reference: Some("technician-test-kari".into()),
        source: CartSource::Console,
    };
    // On sale a customer may be about to pay: the test payment is ignored.
    h.commands
        .send(Command::TestPayment(test_cart.clone()))
        .await
        .unwrap();
    h.commands.send(Command::Maintenance(true)).await.unwrap();
    h.state
        .wait_for(|s| *s == KioskState::Technician)
        .await
        .unwrap();
    assert_eq!(h.fake.creates(), 0, "ignored on sale");
    // In maintenance it runs like any payment, journaled, and the technician screen returns.
    h.commands
        .send(Command::TestPayment(test_cart))
        .await
        .unwrap();
    let report = h.report().await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "{report:?}"
    );
    assert_eq!(
        report.cart_reference.as_deref(),
        Some("technician-test-kari")
    );
    assert_eq!(h.journal()[0].outcome, Some(Outcome::Approved));
    h.state
        .wait_for(|s| *s == KioskState::Technician)
        .await
        .unwrap();
    // A customer's cart is still refused in maintenance.
    h.inputs.send(cart(1000)).await.unwrap();
    h.state
        .wait_for(|s| {
            *s == KioskState::Refused {
                reason: RefusalReason::Unavailable,
            }
        })
        .await
        .unwrap();
    assert_eq!(h.fake.creates(), 1);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn maintenance_asked_for_during_a_payment_waits_until_it_has_finished() {
    let mut h = start(Fake::default(), tempdir(), flow_config());
    h.idle().await;
    h.inputs.send(cart(39900)).await.unwrap();
    h.state
        .wait_for(|s| s.name() == "waiting_for_card")
        .await
        .unwrap();
    h.commands.send(Command::Maintenance(true)).await.unwrap();
    let report = h.report().await;
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "the payment in flight finishes: {report:?}"
    );
    h.state
        .wait_for(|s| *s == KioskState::Technician)
        .await
        .unwrap();
    let names = h.seen_names();
    let approved = names.iter().position(|n| *n == "approved");
    let technician = names.iter().position(|n| *n == "technician");
    assert!(
        matches!((approved, technician), (Some(a), Some(t)) if a < t),
        "the customer sees the outcome before the technician screen: {names:?}"
    );
    assert_eq!(h.journal()[0].outcome, Some(Outcome::Approved));
    h.commands.send(Command::Maintenance(false)).await.unwrap();
    h.idle().await;
    h.stop().await;
}
