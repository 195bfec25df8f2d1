//! The emulator's books: terminals, sessions, transactions and terminal operations.
//!
//! Everything lives behind one mutex and is never held across an `.await`. Time moves lazily:
//! every access first calls [`Ledger::advance`], which applies each payment step whose due
//! time tokio's clock has passed, in due order. A cancel and a step that fall due at the same
//! moment are therefore ordered exactly as tokio's clock says, never by task scheduling.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::callback::CallbackJob;
use super::error::ApiErr;
use super::ids::IdGen;
use super::terminal::{scaled, EntryMethod, Failure, Outcome, Step, OPERATION_S};
use super::{ACCOUNT_ID, PAYOUT_DESTINATION_ID, STORE_ID, TERMINAL_IDS};
use crate::dintero::{TerminalStatus, TransactionStatus};

/// How long a session stays valid, as shown in `expires_at` (not enforced: a session that was
/// never picked up keeps its terminal busy until it is cancelled, as on a real offline
/// terminal).
const SESSION_LIFETIME_S: u64 = 3600;

/// Turns tokio instants into wall-clock timestamps.
///
/// Anchored once at start, so timestamps advance with tokio's clock: paused-time tests get
/// consistent, ordered timestamps, and the time scale shows as shorter gaps between events.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base_instant: Instant,
    base_wall: OffsetDateTime,
}

impl Clock {
    /// Anchors the clock at tokio's now and the system's wall time.
    pub fn start() -> Clock {
        Clock {
            base_instant: Instant::now(),
            base_wall: OffsetDateTime::now_utc(),
        }
    }

    /// The wall time of `at`, to the millisecond like Dintero's timestamps.
    pub fn wall(&self, at: Instant) -> OffsetDateTime {
        let since = at.saturating_duration_since(self.base_instant);
        let wall = time::Duration::try_from(since)
            .ok()
            .and_then(|d| self.base_wall.checked_add(d))
            .unwrap_or(self.base_wall);
        let millis = wall.nanosecond() / 1_000_000 * 1_000_000;
        wall.replace_nanosecond(millis).unwrap_or(wall)
    }

    /// `at` in RFC 3339 (`2026-05-04T10:15:30.250Z`).
    pub fn rfc3339(&self, at: Instant) -> String {
        self.wall(at).format(&Rfc3339).unwrap_or_default()
    }
}

/// `device_model` of every simulated terminal.
const DEVICE_MODEL: &str = "SIMULATED";

/// Filters of `GET /v1/accounts/{aid}/terminals`, all exact.
#[derive(Clone, Debug, Default)]
pub struct TerminalListFilter {
    /// `status`.
    pub status: Option<String>,
    /// `device_model`.
    pub device_model: Option<String>,
    /// `device_serial_number`.
    pub device_serial_number: Option<String>,
}

/// What a terminal is doing, for `TERMINAL_BUSY`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Busy {
    /// Running the payment of this session.
    Session(String),
    /// Waiting for the cardholder to approve a refund of this transaction.
    Refund(String),
}

impl Busy {
    /// What the terminal is doing, as `TERMINAL_BUSY` says it.
    fn doing(&self) -> String {
        match self {
            Busy::Session(s) => format!("session {s}"),
            Busy::Refund(t) => format!("a refund of transaction {t}"),
        }
    }
}

/// Refuses with `TERMINAL_BUSY` while the terminal runs a payment or a refund, or an operation
/// started less than `due` ago: a terminal runs one thing at a time. A free function over the
/// fields it reads, so that a caller may hold the terminal mutably meanwhile.
fn check_free(
    terminal_id: &str,
    busy: Option<&Busy>,
    operations: &[OperationRec],
    due: Duration,
    now: Instant,
) -> Result<(), ApiErr> {
    if let Some(busy) = busy {
        return Err(ApiErr::terminal_busy(terminal_id, &busy.doing()));
    }
    match operations
        .iter()
        .find(|o| o.terminal_id == terminal_id && now < o.created + due)
    {
        Some(op) => Err(ApiErr::terminal_busy(
            terminal_id,
            &format!("operation {} ({})", op.id, op.operation),
        )),
        None => Ok(()),
    }
}

#[derive(Debug)]
struct TerminalRec {
    id: String,
    serial: String,
    store_id: String,
    payout_destination_id: String,
    status: TerminalStatus,
    busy: Option<Busy>,
    next_outcome: Option<Outcome>,
    receipts: u32,
    /// Why it is in its status, as the control API set it (a running operation's name
    /// overrides it in the list).
    status_reason: Option<String>,
}

#[derive(Debug)]
struct SessionEventRec {
    name: &'static str,
    at: Instant,
    error: Option<&'static str>,
}

#[derive(Debug)]
struct SessionRec {
    id: String,
    order: Value,
    url: Value,
    amount: u64,
    currency: String,
    merchant_reference: String,
    merchant_reference_2: Option<String>,
    store_id: String,
    terminal_id: String,
    payout_destination_id: String,
    created: Instant,
    transaction: Option<usize>,
    events: Vec<SessionEventRec>,
    cancelled: Option<(Instant, String)>,
}

#[derive(Debug)]
struct TxEventRec {
    event: &'static str,
    success: bool,
    amount: u64,
    error: Option<Failure>,
    metadata: Vec<(&'static str, String)>,
    at: Instant,
}

#[derive(Debug)]
struct TxRec {
    id: String,
    session: usize,
    status: TransactionStatus,
    card: Option<EntryMethod>,
    events: Vec<TxEventRec>,
    created: Instant,
    refunded: u64,
}

#[derive(Debug)]
struct OperationRec {
    id: String,
    terminal_id: String,
    operation: String,
    created: Instant,
}

/// A validated `POST /v1/sessions-profile` body.
#[derive(Clone, Debug)]
pub struct NewSession {
    /// `order` exactly as sent, echoed by `GET /v1/sessions/{id}`.
    pub order: Value,
    /// `url` exactly as sent.
    pub url: Value,
    /// `order.amount`.
    pub amount: u64,
    /// `order.currency`.
    pub currency: String,
    /// `order.merchant_reference`.
    pub merchant_reference: String,
    /// `order.merchant_reference_2`.
    pub merchant_reference_2: Option<String>,
    /// `order.store.id`.
    pub store_id: String,
    /// `order.store.terminal_id`.
    pub terminal_id: String,
    /// `order.store.payout_destination_id`.
    pub payout_destination_id: String,
}

/// A validated refund body.
#[derive(Clone, Debug)]
pub struct RefundReq {
    /// Minor units.
    pub amount: u64,
    /// The terminal the cardholder approves the refund on.
    pub terminal_id: String,
    /// The merchant's reference for this refund.
    pub refund_reference: Option<String>,
}

/// Filters of `GET /v1/transactions`.
#[derive(Clone, Debug, Default)]
pub struct TxFilter {
    /// Exact match.
    pub merchant_reference: Option<String>,
    /// Exact match on `store.terminal_id`.
    pub terminal_id: Option<String>,
    /// Exact match on `store.id`.
    pub store_id: Option<String>,
    /// Exact match on the status.
    pub status: Option<String>,
    /// Only transactions created at or after this time.
    pub created_gte: Option<OffsetDateTime>,
    /// Continue after this transaction id (in the list's newest-first order).
    pub starting_after: Option<String>,
    /// Page size.
    pub limit: usize,
}

/// The books.
#[derive(Debug)]
pub struct Ledger {
    clock: Clock,
    time_scale: f64,
    ids: IdGen,
    terminals: Vec<TerminalRec>,
    sessions: Vec<SessionRec>,
    session_index: HashMap<String, usize>,
    transactions: Vec<TxRec>,
    tx_index: HashMap<String, usize>,
    /// Pending steps of live payments: `(due, sequence)` → `(session, step)`.
    queue: BTreeMap<(Instant, u64), (usize, Step)>,
    seq: u64,
    operations: Vec<OperationRec>,
    idempotency: HashMap<String, usize>,
    /// Callbacks due to be sent, taken by the courier ([`Ledger::take_callbacks`]).
    outbox: Vec<CallbackJob>,
    /// Upper bound of the random time added to each payment's card step
    /// ([`super::EmulatorConfig::card_jitter`]), and its dice.
    card_jitter: Duration,
    jitter_rng: fastrand::Rng,
}

impl Ledger {
    /// The seeded sandbox at `time_scale`.
    pub fn new(clock: Clock, time_scale: f64) -> Ledger {
        let mut ledger = Ledger {
            clock,
            time_scale,
            ids: IdGen::default(),
            terminals: Vec::new(),
            sessions: Vec::new(),
            session_index: HashMap::new(),
            transactions: Vec::new(),
            tx_index: HashMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            operations: Vec::new(),
            idempotency: HashMap::new(),
            outbox: Vec::new(),
            card_jitter: Duration::ZERO,
            jitter_rng: fastrand::Rng::with_seed(13),
        };
        ledger.reset();
        ledger
    }

    /// Adds a uniformly random `[0, jitter)` to every later payment's steps after the pickup.
    pub fn with_card_jitter(mut self, jitter: Duration) -> Ledger {
        self.card_jitter = jitter;
        self
    }

    /// Back to the seeded sandbox: no sessions, transactions or operations; both terminals
    /// `ACTIVE`, idle, without outcome overrides.
    pub fn reset(&mut self) {
        self.terminals = TERMINAL_IDS
            .iter()
            .enumerate()
            .map(|(i, id)| TerminalRec {
                id: (*id).to_string(),
                serial: format!("SIMULATED-{ACCOUNT_ID}-{:03}", i + 1),
                store_id: STORE_ID.to_string(),
                payout_destination_id: PAYOUT_DESTINATION_ID.to_string(),
                status: TerminalStatus::Active,
                busy: None,
                next_outcome: None,
                receipts: 0,
                status_reason: None,
            })
            .collect();
        self.sessions.clear();
        self.session_index.clear();
        self.transactions.clear();
        self.tx_index.clear();
        self.queue.clear();
        self.operations.clear();
        self.idempotency.clear();
        self.outbox.clear();
    }

    /// The callbacks that fell due since the last call, for the courier to send.
    pub fn take_callbacks(&mut self) -> Vec<CallbackJob> {
        std::mem::take(&mut self.outbox)
    }

    /// When the next payment step falls due, so the courier can wake for its callback.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|((at, _), _)| *at)
    }

    /// Queues the callback of session `s` for an event at `at`, if the session has a
    /// `callback_url`; an `error` (`authorization`, `cancelled`, `failed`) only goes out when
    /// the URL asks for it with `report_error=true`.
    fn queue_callback(&mut self, s: usize, at: Instant, error: Option<&'static str>) {
        let session = &self.sessions[s];
        let Some(url) = session.url.get("callback_url").and_then(Value::as_str) else {
            return;
        };
        let Some(job) = CallbackJob::new(
            url,
            &session.id,
            session
                .transaction
                .map(|t| self.transactions[t].id.as_str()),
            &session.merchant_reference,
            error,
            self.clock.rfc3339(at),
        ) else {
            return;
        };
        let job = match (job.wants_body(), session.transaction) {
            (true, Some(t)) => job.with_body(self.tx_json(t)),
            _ => job,
        };
        self.outbox.push(job);
    }

    /// Applies every payment step due at or before `now`, oldest first.
    pub fn advance(&mut self, now: Instant) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((at, _), (session, step)) = entry.remove_entry();
            self.apply(session, at, step);
        }
    }

    fn terminal_mut(&mut self, id: &str) -> Option<&mut TerminalRec> {
        self.terminals.iter_mut().find(|t| t.id == id)
    }

    fn release(&mut self, terminal_id: &str, busy: &Busy) {
        if let Some(t) = self.terminal_mut(terminal_id) {
            if t.busy.as_ref() == Some(busy) {
                t.busy = None;
            }
        }
    }

    fn next_receipt(&mut self, terminal_id: &str) -> String {
        let n = self.terminal_mut(terminal_id).map_or(0, |t| {
            t.receipts += 1;
            t.receipts
        });
        format!("{n:06}")
    }

    fn apply(&mut self, s: usize, at: Instant, step: Step) {
        let session_id = self.sessions[s].id.clone();
        let terminal_id = self.sessions[s].terminal_id.clone();
        let amount = self.sessions[s].amount;
        match step {
            Step::Pickup => {
                let id = self.ids.object(ACCOUNT_ID);
                let t = self.transactions.len();
                self.transactions.push(TxRec {
                    id: id.clone(),
                    session: s,
                    status: TransactionStatus::Initiated,
                    card: None,
                    events: vec![TxEventRec {
                        event: "INITIALIZE",
                        success: true,
                        amount,
                        error: None,
                        metadata: vec![("seitatech:terminalId", terminal_id.clone())],
                        at,
                    }],
                    created: at,
                    refunded: 0,
                });
                self.tx_index.insert(id.clone(), t);
                let session = &mut self.sessions[s];
                session.transaction = Some(t);
                session.events.push(SessionEventRec {
                    name: "INITIATED",
                    at,
                    error: None,
                });
                tracing::info!(session = %session_id, transaction = %id, terminal = %terminal_id, "terminal picked the session up");
            }
            Step::Authorize(entry) => {
                let receipt = self.next_receipt(&terminal_id);
                let Some(t) = self.sessions[s].transaction else {
                    return;
                };
                let tx = &mut self.transactions[t];
                if tx.status != TransactionStatus::Initiated {
                    return;
                }
                tx.status = TransactionStatus::Authorized;
                tx.card = Some(entry);
                tx.events.push(TxEventRec {
                    event: "AUTHORIZE",
                    success: true,
                    amount,
                    error: None,
                    metadata: vec![
                        ("seitatech:receiptNumber", receipt.clone()),
                        (
                            "seitatech:customerReceipt",
                            format!("SIMULATED RECEIPT {receipt}\nAPPROVED"),
                        ),
                    ],
                    at,
                });
                let session = &mut self.sessions[s];
                for name in ["AUTHORIZED", "COMPLETED"] {
                    session.events.push(SessionEventRec {
                        name,
                        at,
                        error: None,
                    });
                }
                self.release(&terminal_id, &Busy::Session(session_id.clone()));
                self.queue_callback(s, at, None);
                tracing::info!(session = %session_id, "payment authorized");
            }
            Step::Capture => {
                let Some(t) = self.sessions[s].transaction else {
                    return;
                };
                let tx = &mut self.transactions[t];
                if tx.status != TransactionStatus::Authorized {
                    return;
                }
                tx.status = TransactionStatus::Captured;
                tx.events.push(TxEventRec {
                    event: "CAPTURE",
                    success: true,
                    amount,
                    error: None,
                    metadata: Vec::new(),
                    at,
                });
                tracing::info!(session = %session_id, "payment captured");
            }
            Step::Fail(failure) => {
                self.fail(s, at, failure, "terminal");
                tracing::info!(session = %session_id, reason = failure.message(), "payment failed");
            }
        }
    }

    /// Ends an `INITIATED` payment without money.
    fn fail(&mut self, s: usize, at: Instant, failure: Failure, by: &str) {
        let receipt = self.next_receipt(&self.sessions[s].terminal_id.clone());
        let amount = self.sessions[s].amount;
        if let Some(t) = self.sessions[s].transaction {
            let tx = &mut self.transactions[t];
            tx.status = TransactionStatus::Failed;
            if matches!(failure, Failure::Declined | Failure::InsufficientFunds) {
                tx.card = Some(EntryMethod::Contactless);
            }
            tx.events.push(TxEventRec {
                event: "AUTHORIZE",
                success: false,
                amount,
                error: Some(failure),
                metadata: vec![
                    ("seitatech:receiptNumber", receipt),
                    ("seitatech:outcomeReason", failure.message().to_string()),
                ],
                at,
            });
        }
        let (name, error) = failure.session_event();
        let session = &mut self.sessions[s];
        session.events.push(SessionEventRec {
            name,
            at,
            error: Some(error),
        });
        if failure.cancels_session() {
            session.cancelled = Some((at, by.to_string()));
        }
        let (terminal_id, busy) = (
            session.terminal_id.clone(),
            Busy::Session(session.id.clone()),
        );
        self.release(&terminal_id, &busy);
        self.queue_callback(s, at, Some(failure.callback_error()));
    }

    /// Starts a payment: checks the terminal, then schedules its outcome (`forced` by a fault,
    /// else the control API's next outcome, else the amount's). Returns the session id.
    pub fn create_session(
        &mut self,
        new: NewSession,
        forced: Option<Outcome>,
        now: Instant,
    ) -> Result<String, ApiErr> {
        let Some(terminal) = self.terminals.iter_mut().find(|t| t.id == new.terminal_id) else {
            return Err(ApiErr::bad_request(format!(
                "order.store.terminal_id: terminal {} is not enrolled on account {ACCOUNT_ID}",
                new.terminal_id
            )));
        };
        if terminal.status != TerminalStatus::Active {
            return Err(ApiErr::bad_request(format!(
                "order.store.terminal_id: terminal {} is {} and takes no payments",
                terminal.id,
                terminal.status.as_str()
            )));
        }
        if terminal.store_id != new.store_id {
            return Err(ApiErr::bad_request(format!(
                "order.store.id: terminal {} belongs to store {}, not {}",
                terminal.id, terminal.store_id, new.store_id
            )));
        }
        if terminal.payout_destination_id != new.payout_destination_id {
            return Err(ApiErr::bad_request(format!(
                "order.store.payout_destination_id: store {} pays out to {}, not {}",
                terminal.store_id, terminal.payout_destination_id, new.payout_destination_id
            )));
        }
        check_free(
            &new.terminal_id,
            terminal.busy.as_ref(),
            &self.operations,
            scaled(OPERATION_S, self.time_scale),
            now,
        )?;
        let outcome = forced
            .or_else(|| terminal.next_outcome.take())
            .unwrap_or_else(|| Outcome::from_amount(new.amount));
        let id = self.ids.object(ACCOUNT_ID);
        terminal.busy = Some(Busy::Session(id.clone()));
        let s = self.sessions.len();
        tracing::info!(session = %id, terminal = %new.terminal_id, amount = new.amount, outcome = outcome.name(), "session created");
        self.sessions.push(SessionRec {
            id: id.clone(),
            order: new.order,
            url: new.url,
            amount: new.amount,
            currency: new.currency,
            merchant_reference: new.merchant_reference,
            merchant_reference_2: new.merchant_reference_2,
            store_id: new.store_id,
            terminal_id: new.terminal_id,
            payout_destination_id: new.payout_destination_id,
            created: now,
            transaction: None,
            events: Vec::new(),
            cancelled: None,
        });
        self.session_index.insert(id.clone(), s);
        let jitter = self.card_jitter.mul_f64(self.jitter_rng.f64());
        for (delay, step) in outcome.script(self.time_scale) {
            let delay = if step == Step::Pickup {
                delay
            } else {
                delay + jitter
            };
            self.seq += 1;
            self.queue.insert((now + delay, self.seq), (s, step));
        }
        Ok(id)
    }

    /// `POST /v1/sessions/{id}/cancel` by the API client `by`.
    pub fn cancel_session(&mut self, id: &str, by: &str, now: Instant) -> Result<(), ApiErr> {
        let s = *self
            .session_index
            .get(id)
            .ok_or_else(|| ApiErr::not_found(format!("session {id} not found")))?;
        if self.sessions[s].cancelled.is_some() {
            return Err(ApiErr::bad_request(format!(
                "session {id} is already cancelled"
            )));
        }
        match self.sessions[s].transaction {
            None => {
                self.queue.retain(|_, (session, _)| *session != s);
                let session = &mut self.sessions[s];
                session.events.push(SessionEventRec {
                    name: "CANCELLED",
                    at: now,
                    error: Some("cancelled"),
                });
                session.cancelled = Some((now, by.to_string()));
                let (terminal_id, busy) = (
                    session.terminal_id.clone(),
                    Busy::Session(session.id.clone()),
                );
                self.release(&terminal_id, &busy);
                self.queue_callback(s, now, Some("cancelled"));
            }
            Some(t) => match self.transactions[t].status {
                TransactionStatus::Initiated => {
                    self.queue.retain(|_, (session, _)| *session != s);
                    self.fail(s, now, Failure::ApiCancel, by);
                }
                TransactionStatus::Authorized => {
                    self.queue.retain(|_, (session, _)| *session != s);
                    let amount = self.sessions[s].amount;
                    let tx = &mut self.transactions[t];
                    tx.status = TransactionStatus::AuthorizationVoided;
                    tx.events.push(TxEventRec {
                        event: "VOID",
                        success: true,
                        amount,
                        error: None,
                        metadata: Vec::new(),
                        at: now,
                    });
                    let session = &mut self.sessions[s];
                    session.events.push(SessionEventRec {
                        name: "CANCELLED",
                        at: now,
                        error: Some("cancelled"),
                    });
                    session.cancelled = Some((now, by.to_string()));
                    self.queue_callback(s, now, Some("cancelled"));
                }
                ref other => {
                    return Err(ApiErr::bad_request(format!(
                        "session {id} cannot be cancelled: its transaction is {}",
                        other.as_str()
                    )))
                }
            },
        }
        tracing::info!(session = %id, "session cancelled by the API client");
        Ok(())
    }

    /// Checks a refund and reserves its terminal while the cardholder approves it.
    pub fn begin_refund(&mut self, tx_id: &str, req: &RefundReq) -> Result<(), ApiErr> {
        let t = *self
            .tx_index
            .get(tx_id)
            .ok_or_else(|| ApiErr::not_found(format!("transaction {tx_id} not found")))?;
        let payout = self.sessions[self.transactions[t].session]
            .payout_destination_id
            .clone();
        self.check_refundable(t, req.amount)?;
        let Some(terminal) = self.terminal_mut(&req.terminal_id) else {
            return Err(ApiErr::bad_request(format!(
                "terminal_id: terminal {} is not enrolled on account {ACCOUNT_ID}",
                req.terminal_id
            )));
        };
        if terminal.status != TerminalStatus::Active {
            return Err(ApiErr::bad_request(format!(
                "terminal_id: terminal {} is {}",
                terminal.id,
                terminal.status.as_str()
            )));
        }
        if terminal.payout_destination_id != payout {
            return Err(ApiErr::bad_request(format!(
                "terminal_id: terminal {} pays out to {}, the transaction to {payout}",
                terminal.id, terminal.payout_destination_id
            )));
        }
        if let Some(busy) = &terminal.busy {
            return Err(ApiErr::terminal_busy(&terminal.id, &busy.doing()));
        }
        terminal.busy = Some(Busy::Refund(tx_id.to_string()));
        Ok(())
    }

    fn check_refundable(&self, t: usize, amount: u64) -> Result<(), ApiErr> {
        let tx = &self.transactions[t];
        if !matches!(
            tx.status,
            TransactionStatus::Captured | TransactionStatus::PartiallyRefunded
        ) {
            return Err(ApiErr::bad_request(format!(
                "transaction {} is {}; only a captured transaction can be refunded",
                tx.id,
                tx.status.as_str()
            )));
        }
        let left = self.sessions[tx.session].amount - tx.refunded;
        if amount == 0 || amount > left {
            return Err(ApiErr::bad_request(format!(
                "amount: {amount} is not between 1 and the refundable {left}"
            )));
        }
        Ok(())
    }

    /// The cardholder approved on the terminal: books the refund and frees the terminal.
    pub fn finish_refund(
        &mut self,
        tx_id: &str,
        req: &RefundReq,
        now: Instant,
    ) -> Result<Value, ApiErr> {
        self.release(&req.terminal_id, &Busy::Refund(tx_id.to_string()));
        let t = *self
            .tx_index
            .get(tx_id)
            .ok_or_else(|| ApiErr::not_found(format!("transaction {tx_id} not found")))?;
        self.check_refundable(t, req.amount)?;
        let receipt = self.next_receipt(&req.terminal_id);
        let total = self.sessions[self.transactions[t].session].amount;
        let tx = &mut self.transactions[t];
        tx.refunded += req.amount;
        tx.status = if tx.refunded == total {
            TransactionStatus::Refunded
        } else {
            TransactionStatus::PartiallyRefunded
        };
        let mut metadata = vec![
            ("seitatech:receiptNumber", receipt),
            ("seitatech:terminalId", req.terminal_id.clone()),
        ];
        if let Some(r) = &req.refund_reference {
            metadata.push(("refund_reference", r.clone()));
        }
        tx.events.push(TxEventRec {
            event: "REFUND",
            success: true,
            amount: req.amount,
            error: None,
            metadata,
            at: now,
        });
        tracing::info!(transaction = %tx_id, amount = req.amount, "refund approved on the terminal");
        Ok(self.tx_json(t))
    }

    /// Gives a reserved terminal back when a refund request was abandoned mid-way.
    pub fn abandon_refund(&mut self, tx_id: &str, terminal_id: &str) {
        self.release(terminal_id, &Busy::Refund(tx_id.to_string()));
    }

    /// `GET /v1/sessions/{id}`.
    pub fn session(&self, id: &str) -> Option<Value> {
        self.session_index.get(id).map(|&s| self.session_json(s))
    }

    /// `GET /v1/sessions?search=`: newest first; `text` matches `merchant_reference` or
    /// `merchant_reference_2` (case-insensitive substring) or the session id.
    pub fn search_sessions(&self, text: &str, limit: usize) -> Vec<Value> {
        let needle = text.to_lowercase();
        let contains = |hay: &str| hay.to_lowercase().contains(&needle);
        self.sessions
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, s)| {
                text.is_empty()
                    || s.id == text
                    || contains(&s.merchant_reference)
                    || s.merchant_reference_2.as_deref().is_some_and(contains)
            })
            .take(limit)
            .map(|(i, _)| self.session_json(i))
            .collect()
    }

    /// `GET /v1/transactions/{id}`.
    pub fn transaction(&self, id: &str) -> Option<Value> {
        self.tx_index.get(id).map(|&t| self.tx_json(t))
    }

    /// `GET /v1/transactions`: newest first.
    pub fn list_transactions(&self, f: &TxFilter) -> Result<Vec<Value>, ApiErr> {
        let mut newest_first = self.transactions.iter().enumerate().rev().peekable();
        if let Some(after) = &f.starting_after {
            if !self.tx_index.contains_key(after) {
                return Err(ApiErr::bad_request(format!(
                    "starting_after: transaction {after} not found"
                )));
            }
            for (_, tx) in newest_first.by_ref() {
                if &tx.id == after {
                    break;
                }
            }
        }
        Ok(newest_first
            .filter(|(_, tx)| {
                let s = &self.sessions[tx.session];
                f.merchant_reference
                    .as_ref()
                    .is_none_or(|r| *r == s.merchant_reference)
                    && f.terminal_id.as_ref().is_none_or(|v| *v == s.terminal_id)
                    && f.store_id.as_ref().is_none_or(|v| *v == s.store_id)
                    && f.status.as_ref().is_none_or(|v| v == tx.status.as_str())
                    && f.created_gte
                        .is_none_or(|gte| self.clock.wall(tx.created) >= gte)
            })
            .take(f.limit)
            .map(|(t, _)| self.tx_json(t))
            .collect())
    }

    /// `GET {api}/v1/accounts/{aid}/terminals/{id}`.
    pub fn terminal(&self, id: &str) -> Option<Value> {
        self.terminals.iter().find(|t| t.id == id).map(|t| {
            json!({
                "terminal_id": t.id,
                "device_serial_number": t.serial,
                "device_model": DEVICE_MODEL,
                "store_id": t.store_id,
                "status": t.status.as_str(),
            })
        })
    }

    /// `GET /v1/accounts/{aid}/terminals`: every terminal matching `filter`, each with its
    /// `status_reason` (the running operation's name in capitals, e.g. `CHECK_UPDATE`, else
    /// what the control API set, else `null`).
    pub fn terminals(&self, filter: &TerminalListFilter, now: Instant) -> Vec<Value> {
        let due = scaled(OPERATION_S, self.time_scale);
        self.terminals
            .iter()
            .filter(|t| {
                filter
                    .status
                    .as_deref()
                    .is_none_or(|s| t.status.as_str() == s)
            })
            .filter(|_| {
                filter
                    .device_model
                    .as_deref()
                    .is_none_or(|m| m == DEVICE_MODEL)
            })
            .filter(|t| {
                filter
                    .device_serial_number
                    .as_deref()
                    .is_none_or(|n| n == t.serial)
            })
            .map(|t| {
                let running = self
                    .operations
                    .iter()
                    .find(|o| o.terminal_id == t.id && now < o.created + due)
                    .map(|o| o.operation.to_ascii_uppercase());
                json!({
                    "terminal_id": t.id,
                    "device_serial_number": t.serial,
                    "device_model": DEVICE_MODEL,
                    "store_id": t.store_id,
                    "status": t.status.as_str(),
                    "status_reason": running.or_else(|| t.status_reason.clone()),
                })
            })
            .collect()
    }

    /// `POST /v1/accounts/{aid}/terminals/{id}/sync`: a terminal in `ERROR` or `SYNC_ERROR` is
    /// synced at once and is `ACTIVE` again; any other status is `409 TERMINAL_NOT_RETRYABLE`;
    /// an unknown terminal `404`.
    pub fn sync_terminal(&mut self, id: &str) -> Result<Value, ApiErr> {
        let terminal = self.terminal_mut(id).ok_or_else(|| {
            ApiErr::not_found(format!("terminal {id} not found on account {ACCOUNT_ID}"))
        })?;
        if !matches!(
            terminal.status,
            TerminalStatus::Error | TerminalStatus::SyncError
        ) {
            return Err(ApiErr::with_status(
                axum::http::StatusCode::CONFLICT,
                "TERMINAL_NOT_RETRYABLE",
                format!(
                    "terminal {id} is {} and has nothing to retry; only a terminal in ERROR or SYNC_ERROR can be synced",
                    terminal.status.as_str()
                ),
            ));
        }
        terminal.status = TerminalStatus::Active;
        terminal.status_reason = None;
        tracing::info!(terminal = %id, "terminal synced");
        self.terminal(id)
            .ok_or_else(|| ApiErr::not_found(format!("terminal {id} not found")))
    }

    /// Control API: the next payment on `terminal_id` gets `outcome` whatever its amount.
    pub fn set_next_outcome(&mut self, terminal_id: &str, outcome: Outcome) -> bool {
        self.terminal_mut(terminal_id)
            .map(|t| t.next_outcome = Some(outcome))
            .is_some()
    }

    /// Control API: switch a terminal on or off in the management API.
    pub fn set_terminal_status(
        &mut self,
        terminal_id: &str,
        status: TerminalStatus,
        reason: Option<String>,
    ) -> bool {
        self.terminal_mut(terminal_id)
            .map(|t| {
                t.status = status;
                t.status_reason = reason;
            })
            .is_some()
    }

    /// `POST /v1/admin/terminals/operations`; the same `Idempotency-Key` gives the same operation.
    pub fn create_operation(
        &mut self,
        terminal_id: &str,
        operation: &str,
        idempotency_key: Option<&str>,
        now: Instant,
    ) -> Result<Value, ApiErr> {
        if let Some(&o) = idempotency_key.and_then(|k| self.idempotency.get(k)) {
            return Ok(self.operation_json(o, now));
        }
        let Some(terminal) = self.terminals.iter().find(|t| t.id == terminal_id) else {
            return Err(ApiErr::not_found(format!(
                "terminal_id: terminal {terminal_id} is not enrolled on account {ACCOUNT_ID}"
            )));
        };
        check_free(
            terminal_id,
            terminal.busy.as_ref(),
            &self.operations,
            scaled(OPERATION_S, self.time_scale),
            now,
        )?;
        let o = self.operations.len();
        self.operations.push(OperationRec {
            id: self.ids.operation(),
            terminal_id: terminal_id.to_string(),
            operation: operation.to_string(),
            created: now,
        });
        if let Some(k) = idempotency_key {
            self.idempotency.insert(k.to_string(), o);
        }
        Ok(self.operation_json(o, now))
    }

    /// `GET /v1/admin/terminals/operations?terminal_id=`: newest first.
    pub fn operations(&self, terminal_id: Option<&str>, now: Instant) -> Vec<Value> {
        (0..self.operations.len())
            .rev()
            .filter(|&o| terminal_id.is_none_or(|t| self.operations[o].terminal_id == t))
            .map(|o| self.operation_json(o, now))
            .collect()
    }

    fn operation_json(&self, o: usize, now: Instant) -> Value {
        let op = &self.operations[o];
        let took = now.saturating_duration_since(op.created);
        let due = scaled(OPERATION_S, self.time_scale);
        let status = if took >= due {
            "COMPLETED"
        } else if took >= due / 2 {
            "IN_PROGRESS"
        } else {
            "PENDING"
        };
        json!({
            "id": op.id,
            "terminal_id": op.terminal_id,
            "operation": op.operation,
            "status": status,
            "created_at": self.clock.rfc3339(op.created),
        })
    }

    /// `(merchant_reference, when it was captured)` for every captured transaction.
    pub fn captures(&self) -> Vec<(String, Instant)> {
        self.transactions
            .iter()
            .filter_map(|tx| {
                let at = tx.events.iter().find(|e| e.event == "CAPTURE")?.at;
                Some((self.sessions[tx.session].merchant_reference.clone(), at))
            })
            .collect()
    }

    /// Control API: every session and transaction in a fixed, flat shape for test assertions.
    pub fn summary(&self) -> Value {
        let sessions: Vec<Value> = self
            .sessions
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "merchant_reference": s.merchant_reference,
                    "merchant_reference_2": s.merchant_reference_2,
                    "amount": s.amount,
                    "currency": s.currency,
                    "terminal_id": s.terminal_id,
                    "transaction_id": s.transaction.map(|t| self.transactions[t].id.clone()),
                    "cancelled_at": s.cancelled.as_ref().map(|(at, _)| self.clock.rfc3339(*at)),
                })
            })
            .collect();
        let transactions: Vec<Value> = self
            .transactions
            .iter()
            .map(|tx| {
                let s = &self.sessions[tx.session];
                json!({
                    "id": tx.id,
                    "session_id": s.id,
                    "merchant_reference": s.merchant_reference,
                    "amount": s.amount,
                    "currency": s.currency,
                    "status": tx.status.as_str(),
                    "refunded_amount": tx.refunded,
                })
            })
            .collect();
        json!({ "sessions": sessions, "transactions": transactions })
    }

    fn session_json(&self, s: usize) -> Value {
        let rec = &self.sessions[s];
        let mut out = Map::new();
        out.insert("id".into(), json!(rec.id));
        out.insert("order".into(), rec.order.clone());
        out.insert("url".into(), rec.url.clone());
        out.insert("created_at".into(), json!(self.clock.rfc3339(rec.created)));
        out.insert(
            "expires_at".into(),
            json!(self
                .clock
                .rfc3339(rec.created + std::time::Duration::from_secs(SESSION_LIFETIME_S))),
        );
        if let Some(t) = rec.transaction {
            out.insert("transaction_id".into(), json!(self.transactions[t].id));
        }
        let events: Vec<Value> = rec
            .events
            .iter()
            .map(|e| {
                let mut ev = json!({ "name": e.name, "created_at": self.clock.rfc3339(e.at) });
                if let Some(err) = e.error {
                    ev["details"] = json!({ "error": err });
                }
                ev
            })
            .collect();
        out.insert("events".into(), Value::Array(events));
        if let Some((at, by)) = &rec.cancelled {
            out.insert("cancelled_at".into(), json!(self.clock.rfc3339(*at)));
            out.insert("cancelled_by".into(), json!(by));
        }
        Value::Object(out)
    }

    fn tx_json(&self, t: usize) -> Value {
        let tx = &self.transactions[t];
        let s = &self.sessions[tx.session];
        let events: Vec<Value> = tx
            .events
            .iter()
            .map(|e| {
                let mut ev = json!({
                    "event": e.event,
                    "success": e.success,
                    "amount": e.amount,
                    "created_at": self.clock.rfc3339(e.at),
                });
                if let Some(f) = e.error {
                    ev["error"] = json!({
                        "code": f.error_type(),
                        "message": f.message(),
                        "type": [f.error_type()],
                    });
                }
                if !e.metadata.is_empty() {
                    let meta: Map<String, Value> = e
                        .metadata
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), json!(v)))
                        .collect();
                    ev["metadata"] = Value::Object(meta);
                }
                ev
            })
            .collect();
        let mut out = json!({
            "id": tx.id,
            "session_id": s.id,
            "status": tx.status.as_str(),
            "amount": s.amount,
            "currency": s.currency,
            "merchant_reference": s.merchant_reference,
            "payment_product": "seitatech",
            "payment_product_type": "seitatech.in_person",
            "store": {
                "id": s.store_id,
                "terminal_id": s.terminal_id,
                "payout_destination_id": s.payout_destination_id,
            },
            "events": events,
            "created_at": self.clock.rfc3339(tx.created),
        });
        if let Some(r2) = &s.merchant_reference_2 {
            out["merchant_reference_2"] = json!(r2);
        }
        if let Some(entry) = tx.card {
            let (brand, pan) = match entry {
                EntryMethod::Contactless => ("VISA", "************0004"),
                EntryMethod::Chip => ("MASTERCARD", "************4444"),
            };
            out["card"] =
                json!({ "brand": brand, "masked_pan": pan, "entry_method": entry.as_str() });
        }
        out
    }
}
