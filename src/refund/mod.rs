//! Refunds and voids, run by the daemon for the technician console: the refund desk.
//!
//! A refund moves money back to a card, so it is treated like a payment: **journal before
//! effect**. The console never calls Dintero for money; it asks the daemon over the control
//! socket, and the [`Desk`] here runs the refund:
//!
//! 1. reads the transaction from Dintero and refuses, before anything is written, an amount
//!    above what is still refundable (the captured amount minus the successful `REFUND` events:
//!    Dintero's events are the truth, not the journal);
//! 2. writes a `requested` record ([`journal`]) with a deterministic `refund_reference`
//!    (`<merchant reference>-R<n>`, n counting this payment's refunds in the journal);
//! 3. takes the terminal from the payment flow: maintenance on, then waits until the kiosk
//!    shows the technician screen, which the flow does only once a payment in flight is over;
//! 4. writes `sent`, synced, and only then calls `POST /v1/transactions/{id}/refund` with the
//!    reference and the kiosk's `terminal_id`; the cardholder approves on the terminal;
//! 5. writes the result: `refunded` once the refund shows on the transaction (a `202`, or no
//!    answer, is followed by reading the transaction until it shows, for a bounded time),
//!    `failed` when Dintero refused it, `unknown` when nothing could be told;
//! 6. gives the kiosk back to sale, unless a technician had put it in maintenance before.
//!
//! Each refund's place is a [`RefundState`]; its transitions are the only ones the journal
//! accepts. After a crash, [`Desk::recover`] (at daemon start, and again before each new
//! refund while one is open) settles every open refund without ever sending one again: a
//! `requested` refund was never sent (`sent` is written before the call), so it is `not_done`;
//! a `sent` or `unknown` one is looked up on its transaction: a `REFUND` event carrying our
//! reference, or failing that a refunded total grown by exactly our amount since the request,
//! makes it `refunded`; no trace makes it `not_done`, but only once [`Timing::settle_after`]
//! has passed since it was sent or last looked up: a refund Dintero accepted (`202`) completes
//! when the cardholder approves on the terminal, which can be after the daemon's restart.
//! Until then it stays open, is looked up again ([`Desk::settle_open`]), and a second refund
//! of the same payment is refused. A refund that is not done is **not
//! retried by the kiosk**: the technician sees it in `payment REF` and refunds again.
//!
//! A void (`POST /v1/sessions/{id}/cancel`) needs no terminal and moves no money back, so it is
//! not journaled here: after the cancel the desk reads the transaction again and reports only
//! that ("the payment wins": a capture that came first stays a capture, to be refunded).

pub mod journal;
mod recovery;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::dintero::{
    ApiError, Gateway, RefundOutcome, RefundRequest, Session, Transaction, TransactionQuery,
    TransactionStatus,
};
use crate::journal::JournalError;
use crate::messages::Command;
use crate::state::KioskState;
use journal::{Refund, RefundJournal, RefundRecord, Replayed};

/// **Test hooks, never set on a kiosk** (feature `emulator` only): with `<n>` the daemon kills
/// itself right after the n-th refund journal append of its run, before the call it announces.
#[cfg(feature = "emulator")]
pub const CRASH_AFTER_REFUND_JOURNAL_ENV: &str = "KIOSKPAY_CRASH_AFTER_REFUND_JOURNAL";
/// With `<n>`, right after the n-th refund call of its run has answered, before its result is
/// journaled: the refund happened and the kiosk does not know it.
#[cfg(feature = "emulator")]
pub const CRASH_AFTER_REFUND_CALL_ENV: &str = "KIOSKPAY_CRASH_AFTER_REFUND_CALL";

/// Where a refund stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Asked for and journaled; not sent.
    Requested,
    /// About to be sent, or sent: Dintero may have it.
    Sent,
    /// It shows on the transaction. Final.
    Refunded,
    /// Dintero refused it, or it was given up before the call: nothing refunded. Final.
    Failed,
    /// Sent, and what came of it is not known; recovery looks it up.
    Unknown,
    /// Recovery found no trace of it: nothing refunded, and not retried. Final.
    NotDone,
}

/// What can happen to a refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The call is about to be made.
    Sent,
    /// The refund shows on the transaction.
    Refunded,
    /// Refused, or given up before the call.
    Failed,
    /// No telling what came of the call.
    Unknown,
    /// No trace of it at Dintero after a crash or an unknown outcome.
    NotDone,
}

/// A step a refund in its state cannot take (a journal written out of order).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a refund that is {from} cannot become {step:?}")]
pub struct BadStep {
    from: RefundState,
    step: Step,
}

impl RefundState {
    /// The state after `step`, or why the step is not possible from here.
    pub fn after(self, step: Step) -> Result<RefundState, BadStep> {
        use RefundState as S;
        match (self, step) {
            (S::Requested, Step::Sent) => Ok(S::Sent),
            // Given up before the call (the kiosk did not come free), or found unsent after a
            // crash: either way nothing went to Dintero.
            (S::Requested, Step::Failed) => Ok(S::Failed),
            (S::Requested, Step::NotDone) => Ok(S::NotDone),
            (S::Sent, Step::Refunded) => Ok(S::Refunded),
            (S::Sent, Step::Failed) => Ok(S::Failed),
            (S::Sent, Step::Unknown) => Ok(S::Unknown),
            (S::Sent, Step::NotDone) => Ok(S::NotDone),
            (S::Unknown, Step::Refunded) => Ok(S::Refunded),
            (S::Unknown, Step::NotDone) => Ok(S::NotDone),
            (from, step) => Err(BadStep { from, step }),
        }
    }

    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RefundState::Refunded | RefundState::Failed | RefundState::NotDone
        )
    }

    /// The journal's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Requested => "requested",
            RefundState::Sent => "sent",
            RefundState::Refunded => "refunded",
            RefundState::Failed => "failed",
            RefundState::Unknown => "unknown",
            RefundState::NotDone => "not_done",
        }
    }
}

impl std::fmt::Display for RefundState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payment as Dintero shows it now, with what a refund needs to know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentView {
    /// Dintero's transaction id.
    pub transaction_id: String,
    /// Ours.
    pub merchant_reference: Option<String>,
    /// The session that started it.
    pub session_id: Option<String>,
    /// Dintero's status (`CAPTURED`, `PARTIALLY_REFUNDED`, …).
    pub status: String,
    /// Authorized amount, minor units.
    pub amount: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Captured, minor units.
    pub captured: u64,
    /// Refunded so far (successful `REFUND` events), minor units.
    pub refunded: u64,
    /// What a refund may still take back, minor units.
    pub refundable: u64,
    /// Card brand and last digits, when presented.
    pub card: Option<String>,
    /// When Dintero created the transaction (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
}

impl PaymentView {
    /// Reads what a refund needs from a transaction.
    pub fn of(tx: &Transaction) -> PaymentView {
        let captures: u64 = tx
            .events
            .iter()
            .filter(|e| e.event == "CAPTURE" && e.success != Some(false))
            .filter_map(|e| e.amount)
            .sum();
        // Terminal payments are auto-captured: a paid transaction without a CAPTURE amount in
        // its events was captured in full.
        let captured = match (captures, tx.status.is_paid()) {
            (0, true) => tx.amount,
            (c, _) => c,
        };
        let refunded = refunded_total(tx);
        PaymentView {
            transaction_id: tx.id.clone(),
            merchant_reference: tx.merchant_reference.clone(),
            session_id: tx.session_id.clone(),
            status: tx.status.as_str().to_string(),
            amount: tx.amount,
            currency: tx.currency.clone(),
            captured,
            refunded,
            refundable: if tx.status.is_paid() {
                captured.saturating_sub(refunded)
            } else {
                0
            },
            card: tx.card_summary(),
            created_at: tx.created_at.clone(),
        }
    }
}

/// The sum of the transaction's successful `REFUND` events.
fn refunded_total(tx: &Transaction) -> u64 {
    tx.events
        .iter()
        .filter(|e| e.event == "REFUND" && e.success != Some(false))
        .filter_map(|e| e.amount)
        .sum()
}

/// Whether `refund` shows on `tx`: a `REFUND` event carrying its reference, or, when Dintero
/// does not echo references, the refunded total grown by exactly its amount.
pub fn shows_on(refund: &Refund, tx: &Transaction) -> bool {
    let by_reference = tx.events.iter().any(|e| {
        e.event == "REFUND"
            && e.success != Some(false)
            && e.metadata
                .as_ref()
                .and_then(|m| m.get("refund_reference"))
                .and_then(|r| r.as_str())
                == Some(refund.refund_reference.as_str())
    });
    by_reference || refunded_total(tx) == refund.refunded_before.saturating_add(refund.amount)
}

/// The Dintero calls the desk makes, object-safe so the control server can hold a desk
/// whatever gateway the daemon runs with.
trait Api: Send + Sync {
    fn transaction<'a>(&'a self, id: &'a str) -> Call<'a, Transaction>;
    fn session<'a>(&'a self, id: &'a str) -> Call<'a, Session>;
    fn refund<'a>(&'a self, id: &'a str, request: &'a RefundRequest) -> Call<'a, RefundOutcome>;
    fn cancel<'a>(&'a self, session_id: &'a str) -> Call<'a, ()>;
    fn list<'a>(&'a self, query: &'a TransactionQuery) -> Call<'a, Vec<Transaction>>;
}

type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

impl<G: Gateway> Api for G {
    fn transaction<'a>(&'a self, id: &'a str) -> Call<'a, Transaction> {
        Box::pin(self.get_transaction(id))
    }
    fn session<'a>(&'a self, id: &'a str) -> Call<'a, Session> {
        Box::pin(self.get_session(id))
    }
    fn refund<'a>(&'a self, id: &'a str, request: &'a RefundRequest) -> Call<'a, RefundOutcome> {
        Box::pin(Gateway::refund(self, id, request))
    }
    fn cancel<'a>(&'a self, session_id: &'a str) -> Call<'a, ()> {
        Box::pin(self.cancel_session(session_id))
    }
    fn list<'a>(&'a self, query: &'a TransactionQuery) -> Call<'a, Vec<Transaction>> {
        Box::pin(self.list_transactions(query))
    }
}

/// How long the desk waits for things.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Between reads of a transaction whose refund has not shown yet.
    pub poll_every: Duration,
    /// How long a refund may take to show after the call before it is `unknown`.
    pub poll_for: Duration,
    /// How long a payment in flight may keep the terminal before a refund gives up.
    pub free_within: Duration,
    /// How long after it was sent (or last looked up) a refund without a trace on its
    /// transaction may still complete on the terminal: until then recovery keeps it open.
    pub settle_after: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            poll_every: Duration::from_secs(2),
            poll_for: Duration::from_secs(120),
            // A payment runs at most the kiosk's timeout plus its checks: a few minutes.
            free_within: Duration::from_secs(300),
            // Longer than a terminal waits for the cardholder to approve a refund.
            settle_after: Duration::from_secs(600),
        }
    }
}

impl Timing {
    /// The kiosk's timing: the default, except that a test build (feature `emulator`) takes
    /// [`SETTLE_AFTER_ENV`] in milliseconds, so a test can see a refund settled as `not_done`
    /// without waiting ten minutes.
    pub fn for_kiosk() -> Timing {
        #[cfg(feature = "emulator")]
        if let Some(ms) = std::env::var(SETTLE_AFTER_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            return Timing {
                settle_after: Duration::from_millis(ms),
                ..Timing::default()
            };
        }
        Timing::default()
    }
}

/// **Test hook, never set on a kiosk** (feature `emulator` only): [`Timing::settle_after`] in
/// milliseconds.
#[cfg(feature = "emulator")]
pub const SETTLE_AFTER_ENV: &str = "KIOSKPAY_REFUND_SETTLE_AFTER_MS";

/// What the desk needs from the running kiosk: its terminal, and the flow's state and command
/// channel to take the terminal for a refund.
pub struct KioskSide {
    /// The terminal refunds are approved on (the kiosk's own).
    pub terminal_id: String,
    /// Maintenance on and off.
    pub commands: mpsc::Sender<Command>,
    /// What the flow shows: the technician screen means no payment is in flight.
    pub state: watch::Receiver<KioskState>,
}

/// The daemon's refund desk: the refund journal's single writer and the only caller of the
/// refund and cancel endpoints.
pub struct Desk {
    api: Arc<dyn Api>,
    kiosk: KioskSide,
    timing: Timing,
    journal: Arc<Mutex<RefundJournal>>,
    /// What the journal says; the lock also keeps refunds one at a time.
    book: tokio::sync::Mutex<Replayed>,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Desk {
    /// Opens the refund journal in `state_dir` (logging what it found wrong) for a kiosk
    /// calling Dintero through `gateway`.
    pub fn open<G: Gateway>(
        state_dir: &std::path::Path,
        gateway: Arc<G>,
        kiosk: KioskSide,
        timing: Timing,
    ) -> Result<Desk, JournalError> {
        let (journal, replayed) = RefundJournal::open(state_dir)?;
        for problem in &replayed.problems {
            warn!(%problem, "refund journal problem");
        }
        let api: Arc<dyn Api> = gateway;
        Ok(Desk {
            api,
            kiosk,
            timing,
            journal: Arc::new(Mutex::new(journal)),
            book: tokio::sync::Mutex::new(replayed),
        })
    }

    /// Appends `record` on the blocking pool (it syncs) and then applies it to `book`.
    async fn write(&self, book: &mut Replayed, record: RefundRecord) -> Result<(), String> {
        let journal = self.journal.clone();
        let line = record.clone();
        let written = tokio::task::spawn_blocking(move || {
            journal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .append(&line)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = written {
            warn!(error = %e, "refund journal append failed");
            return Err(format!(
                "the refund journal could not be written ({e}); nothing was sent; fix the cause (disk full?) and try again"
            ));
        }
        #[cfg(feature = "emulator")]
        {
            static HOOK: crate::journal::crash::Hook =
                crate::journal::crash::Hook::new(CRASH_AFTER_REFUND_JOURNAL_ENV);
            HOOK.hit();
        }
        if let Err(e) = book.apply(record) {
            warn!(error = %e, "refund journal: a record did not apply");
        }
        Ok(())
    }

    /// Settles the refunds a crash or an unknown outcome left open (see the module's docs).
    /// Returns how many are still open (Dintero could not be read for them).
    pub async fn recover(&self) -> usize {
        let mut book = self.book.lock().await;
        self.recover_locked(&mut book).await
    }

    /// Everything the refund journal says, for `payment REF`.
    pub async fn refunds(&self) -> Vec<Refund> {
        self.book.lock().await.refunds.clone()
    }

    /// The payment behind `transaction_id` as Dintero shows it now.
    pub async fn payment(&self, transaction_id: &str) -> Result<PaymentView, String> {
        self.api
            .transaction(transaction_id)
            .await
            .map(|tx| PaymentView::of(&tx))
            .map_err(|e| read_failed(transaction_id, &e))
    }

    /// Refunds `amount` (everything still refundable when `None`) of `transaction_id` on the
    /// kiosk's terminal, for `technician`. `keep_maintenance`: a technician had the kiosk in
    /// maintenance already, so it stays so afterwards. Returns the refund as journaled; an
    /// error means nothing was sent.
    pub async fn refund(
        &self,
        transaction_id: &str,
        amount: Option<u64>,
        technician: &str,
        keep_maintenance: bool,
    ) -> Result<Refund, String> {
        let mut book = self.book.lock().await;
        self.recover_locked(&mut book).await;
        if let Some(stuck) = book.of(transaction_id).find(|r| !r.state.is_final()) {
            return Err(
                if stuck.state != RefundState::Requested
                    && recovery::may_still_complete(stuck, self.timing.settle_after)
                {
                    format!(
                        "refund {} of this payment was sent at {} and may still complete on the terminal; it is settled within {} minutes of that (payment REF shows it): refund again only if it then shows not_done",
                        stuck.refund_reference,
                        stuck.updated_at,
                        self.timing.settle_after.as_secs() / 60
                    )
                } else {
                    format!(
                        "refund {} of this payment is {} and Dintero cannot be read to settle it; try again when Dintero answers (status shows the API)",
                        stuck.refund_reference, stuck.state
                    )
                },
            );
        }
        let tx = self
            .api
            .transaction(transaction_id)
            .await
            .map_err(|e| read_failed(transaction_id, &e))?;
        let view = PaymentView::of(&tx);
        if !tx.status.is_paid() {
            let hint = if tx.status == TransactionStatus::Authorized {
                "; an authorized payment that is not captured is voided instead: void REF"
            } else {
                ""
            };
            return Err(format!(
                "transaction {transaction_id} is {}: only a captured payment can be refunded{hint}",
                view.status
            ));
        }
        let amount = amount.unwrap_or(view.refundable);
        if amount == 0 || amount > view.refundable {
            return Err(format!(
                "{amount} (minor units) is more than the {} {} still refundable (captured {}, refunded {}); nothing was sent",
                view.refundable, view.currency, view.captured, view.refunded
            ));
        }
        let merchant_reference = tx
            .merchant_reference
            .clone()
            .unwrap_or_else(|| transaction_id.to_string());
        let attempt = book.of(transaction_id).count() + 1;
        let refund_reference = format!("{merchant_reference}-R{attempt}");
        self.write(
            &mut book,
            RefundRecord::Requested {
                refund_reference: refund_reference.clone(),
                transaction_id: transaction_id.to_string(),
                merchant_reference,
                amount,
                currency: view.currency.clone(),
                refunded_before: view.refunded,
                technician: technician.to_string(),
                at: now_rfc3339(),
            },
        )
        .await?;
        info!(%refund_reference, amount, technician, "refund requested");
        let result = self
            .send(&mut book, transaction_id, &refund_reference, amount)
            .await;
        if !keep_maintenance {
            // The kiosk goes back to sale whatever came of the refund.
            let _ = self.kiosk.commands.send(Command::Maintenance(false)).await;
        }
        result?;
        book.get(&refund_reference)
            .cloned()
            .ok_or_else(|| format!("refund {refund_reference} is not in the refund journal"))
    }

    /// Takes the terminal, journals `sent`, calls, and journals the result.
    async fn send(
        &self,
        book: &mut Replayed,
        transaction_id: &str,
        refund_reference: &str,
        amount: u64,
    ) -> Result<(), String> {
        let give_up = |reason: String| RefundRecord::Failed {
            refund_reference: refund_reference.to_string(),
            reason,
            at: now_rfc3339(),
        };
        if let Err(why) = self.take_terminal().await {
            self.write(book, give_up(why.clone())).await?;
            return Err(why);
        }
        self.write(
            book,
            RefundRecord::Sent {
                refund_reference: refund_reference.to_string(),
                at: now_rfc3339(),
            },
        )
        .await?;
        let request = RefundRequest {
            amount,
            reason: None,
            refund_reference: Some(refund_reference.to_string()),
            terminal_id: Some(self.kiosk.terminal_id.clone()),
        };
        let answer = self.api.refund(transaction_id, &request).await;
        #[cfg(feature = "emulator")]
        {
            static HOOK: crate::journal::crash::Hook =
                crate::journal::crash::Hook::new(CRASH_AFTER_REFUND_CALL_ENV);
            HOOK.hit();
        }
        let refund = book
            .get(refund_reference)
            .cloned()
            .ok_or_else(|| format!("refund {refund_reference} is not in the refund journal"))?;
        let record = match answer {
            Ok(RefundOutcome::Done(tx)) if shows_on(&refund, &tx) => RefundRecord::Refunded {
                refund_reference: refund_reference.to_string(),
                status: tx.status.as_str().to_string(),
                at: now_rfc3339(),
            },
            Ok(RefundOutcome::Done(_)) | Ok(RefundOutcome::Pending { .. }) => {
                self.follow(&refund, "the refund was accepted but has not shown yet")
                    .await
            }
            Err(e) if e.outcome_unknown() => self.follow(&refund, &e.to_string()).await,
            Err(e) => give_up(e.to_string()),
        };
        info!(refund_reference, record = ?record, "refund result");
        self.write(book, record).await
    }

    /// Puts the kiosk in maintenance and waits until no payment is in flight.
    async fn take_terminal(&self) -> Result<(), String> {
        if self
            .kiosk
            .commands
            .send(Command::Maintenance(true))
            .await
            .is_err()
        {
            return Err(
                "the payment flow has stopped; restart the daemon (systemctl restart kioskpay) and refund again"
                    .into(),
            );
        }
        let mut state = self.kiosk.state.clone();
        let free = tokio::time::timeout(
            self.timing.free_within,
            state.wait_for(|s| *s == KioskState::Technician),
        )
        .await
        .map(|r| r.map(drop));
        match free {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err("the payment flow has stopped; restart the daemon (systemctl restart kioskpay) and refund again".into()),
            Err(_) => Err(format!(
                "the terminal did not come free within {} s (a payment in flight?); nothing was sent; refund again later",
                self.timing.free_within.as_secs()
            )),
        }
    }

    /// Reads the transaction until `refund` shows, for [`Timing::poll_for`].
    async fn follow(&self, refund: &Refund, why: &str) -> RefundRecord {
        let deadline = tokio::time::Instant::now() + self.timing.poll_for;
        loop {
            if let Ok(tx) = self.api.transaction(&refund.transaction_id).await {
                if shows_on(refund, &tx) {
                    return RefundRecord::Refunded {
                        refund_reference: refund.refund_reference.clone(),
                        status: tx.status.as_str().to_string(),
                        at: now_rfc3339(),
                    };
                }
            }
            if tokio::time::Instant::now() + self.timing.poll_every > deadline {
                return RefundRecord::Unknown {
                    refund_reference: refund.refund_reference.clone(),
                    reason: format!(
                        "{why}; not showing on the transaction after {} s",
                        self.timing.poll_for.as_secs()
                    ),
                    at: now_rfc3339(),
                };
            }
            tokio::time::sleep(self.timing.poll_every).await;
        }
    }

    /// Voids the authorized, not captured payment of `session_id`, then reads it again and
    /// answers what Dintero shows: a payment captured first stays captured.
    pub async fn void(&self, session_id: &str) -> Result<PaymentView, String> {
        let session = self.api.session(session_id).await.map_err(|e| {
            format!("cannot read session {session_id} from Dintero: {e}; try again")
        })?;
        let Some(transaction_id) = session.transaction_id else {
            return Err(format!(
                "session {session_id} has no transaction: the terminal never took the payment, so nothing is authorized to void"
            ));
        };
        let tx = self
            .api
            .transaction(&transaction_id)
            .await
            .map_err(|e| read_failed(&transaction_id, &e))?;
        if tx.status.is_paid() {
            return Err(format!(
                "transaction {transaction_id} is {}: it is captured, so it cannot be voided; refund it instead: refund {}",
                tx.status.as_str(),
                tx.merchant_reference.as_deref().unwrap_or(&transaction_id)
            ));
        }
        if tx.status.is_final() {
            return Err(format!(
                "transaction {transaction_id} is {}: it is final and holds no money; nothing to void",
                tx.status.as_str()
            ));
        }
        if let Err(e) = self.api.cancel(session_id).await {
            // "The payment wins": a refusal may mean it was captured meanwhile; what Dintero
            // shows now is the answer.
            warn!(session = session_id, error = %e, "void: the cancel was not accepted");
        }
        info!(session = session_id, "void asked for");
        self.payment(&transaction_id).await
    }
}

/// Transactions `reconcile` reads per page.
const PAGE: u32 = 100;
/// Pages `reconcile` reads at most: a kiosk's weeks of payments, not a year's at once.
const MAX_PAGES: usize = 50;

impl Desk {
    /// Every transaction on the kiosk's terminal created at or after `since` (RFC 3339; all
    /// when `None`), newest first, read page by page. `true` with them when [`MAX_PAGES`] were
    /// not enough: the oldest are missing.
    pub async fn transactions(
        &self,
        since: Option<String>,
    ) -> Result<(Vec<PaymentView>, bool), String> {
        let mut all = Vec::new();
        let mut query = TransactionQuery {
            terminal_id: Some(self.kiosk.terminal_id.clone()),
            limit: Some(PAGE),
            created_at_gte: since,
            ..TransactionQuery::default()
        };
        for _ in 0..MAX_PAGES {
            let page = self.api.list(&query).await.map_err(|e| {
                format!("cannot list the terminal's transactions at Dintero: {e}; try again")
            })?;
            let full = page.len() >= PAGE as usize;
            query.starting_after = page.last().map(|tx| tx.id.clone());
            all.extend(page.iter().map(PaymentView::of));
            if !full || query.starting_after.is_none() {
                return Ok((all, false));
            }
        }
        Ok((all, true))
    }
}

fn read_failed(transaction_id: &str, e: &ApiError) -> String {
    format!(
        "cannot read transaction {transaction_id} from Dintero: {e}; nothing was changed; try again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_takes_only_its_steps() {
        use RefundState as S;
        let all_steps = [
            Step::Sent,
            Step::Refunded,
            Step::Failed,
            Step::Unknown,
            Step::NotDone,
        ];
        let allowed: &[(S, &[(Step, S)])] = &[
            (
                S::Requested,
                &[
                    (Step::Sent, S::Sent),
                    (Step::Failed, S::Failed),
                    (Step::NotDone, S::NotDone),
                ],
            ),
            (
                S::Sent,
                &[
                    (Step::Refunded, S::Refunded),
                    (Step::Failed, S::Failed),
                    (Step::Unknown, S::Unknown),
                    (Step::NotDone, S::NotDone),
                ],
            ),
            (
                S::Unknown,
                &[(Step::Refunded, S::Refunded), (Step::NotDone, S::NotDone)],
            ),
            (S::Refunded, &[]),
            (S::Failed, &[]),
            (S::NotDone, &[]),
        ];
        for (from, steps) in allowed {
            for step in all_steps {
                let expected = steps.iter().find(|(s, _)| *s == step).map(|(_, to)| *to);
                match (from.after(step), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} + {step:?}"),
                    (Err(e), None) => assert!(e.to_string().contains(from.as_str()), "{e}"),
                    (got, want) => panic!("{from} + {step:?}: got {got:?}, want {want:?}"),
                }
            }
            assert_eq!(from.is_final(), steps.is_empty(), "{from}");
        }
    }

    fn transaction(events: serde_json::Value) -> Transaction {
        serde_json::from_value(serde_json::json!({
            "id": "T1", "status": "PARTIALLY_REFUNDED", "amount": 39900, "currency": "NOK",
            "merchant_reference": "kiosk-1-X-20261205-000001", "events": events,
        }))
        .unwrap()
    }

    fn refund(reference: &str, before: u64, amount: u64) -> Refund {
        Refund {
            refund_reference: reference.into(),
            transaction_id: "T1".into(),
            merchant_reference: "kiosk-1-X-20261205-000001".into(),
            amount,
            currency: "NOK".into(),
            refunded_before: before,
            technician: "kari".into(),
            state: RefundState::Sent,
            requested_at: String::new(),
            updated_at: String::new(),
            detail: None,
        }
    }

    #[test]
    fn the_view_counts_captures_and_successful_refunds_only() {
        let tx = transaction(serde_json::json!([
            {"event": "CAPTURE", "success": true, "amount": 39900},
            {"event": "REFUND", "success": true, "amount": 10000},
            {"event": "REFUND", "success": false, "amount": 5000},
        ]));
        let view = PaymentView::of(&tx);
        assert_eq!(
            (view.captured, view.refunded, view.refundable),
            (39900, 10000, 29900)
        );
    }

    #[test]
    fn a_refund_shows_by_its_reference_or_by_the_total_grown_by_its_amount() {
        let tx = transaction(serde_json::json!([
            {"event": "CAPTURE", "success": true, "amount": 39900},
            {"event": "REFUND", "success": true, "amount": 10000,
             "metadata": {"refund_reference": "kiosk-1-X-20261205-000001-R1"}},
        ]));
        assert!(shows_on(
            &refund("kiosk-1-X-20261205-000001-R1", 0, 10000),
            &tx
        ));
        // Not echoed, but the total grew by exactly its amount since it was asked for.
        assert!(shows_on(&refund("other-R1", 0, 10000), &tx));
        assert!(!shows_on(&refund("other-R2", 10000, 10000), &tx));
        assert!(!shows_on(&refund("other-R3", 0, 5000), &tx));
    }
}
