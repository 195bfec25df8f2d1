//! An in-process emulator of Dintero's in-person payment API, with simulated card terminals.
//!
//! The demo, the integration tests and the benchmarks run the real Dintero client against it
//! on loopback. It follows `/work/shared/dintero/README.md` (the contract kioskpay speaks) and,
//! where Dintero is silent, that file's *emulator conventions*, restated here.
//!
//! # Starting it
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use kioskpay::emulator::{spawn, EmulatorConfig};
//! let emulator = spawn(EmulatorConfig { time_scale: 0.1, ..Default::default() }).await?;
//! // Point both dintero.api_url and dintero.checkout_url at this:
//! println!("{}", emulator.base_url());
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```
//! [`spawn`] binds `127.0.0.1:0`; [`serve`] runs on a listener you bound (the
//! `kioskpay emulator` command) until its shutdown future resolves. One listener serves both
//! Dintero hosts (`api.dintero.com` and `checkout.dintero.com` routes). The control API has no
//! authentication: bind loopback only.
//!
//! # The seeded sandbox
//! | what | value |
//! |---|---|
//! | account | [`ACCOUNT_ID`] `T12345678` |
//! | API client | [`CLIENT_ID`] `kiosk-demo`, secret [`CLIENT_SECRET`] `demo-secret` |
//! | payment profile (in-person only) | [`PROFILE_ID`] `T12345678.kiosk-in-person` |
//! | store, payout destination | `oslo-center`, `seller-1` |
//! | terminals (`ACTIVE`) | `T12345678-T0001` (serial `SIMULATED-T12345678-001`), `T12345678-T0002` |
//!
//! # Routes
//! Every route but the token one needs `Authorization: Bearer <token>`; a missing, unknown or
//! expired token answers `401`. Every refusal, including unknown routes (404) and wrong methods
//! (405), answers Dintero's body `{"error": {"code"?, "message"}}`; validation messages start
//! with the offending field (`order.store.terminal_id: …`).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/accounts/{aid}/auth/token` | HTTP Basic `client_id:secret` (or `client_id`/`client_secret` in the body, as an older Node SDK sends), body `{"grant_type":"client_credentials","audience":"…/v1/accounts/{aid}"}`; any audience ending in `/v1/accounts/{aid}` is accepted because the SDKs build it from their own base URL. Answers `{"access_token","token_type":"Bearer","expires_in"}`. |
//! | `GET /v1/accounts/{aid}/terminals?status=&device_model=&device_serial_number=` | array of terminals, each with `status_reason` (see *Terminal operations*) |
//! | `GET /v1/accounts/{aid}/terminals/{id}` | `{terminal_id, device_serial_number, device_model, store_id, status}`; 404 for an unknown terminal |
//! | `POST /v1/accounts/{aid}/terminals/{id}/sync` | a terminal in `ERROR` or `SYNC_ERROR` is `ACTIVE` again at once and is answered; any other status `409 TERMINAL_NOT_RETRYABLE`; 404 for an unknown terminal |
//! | `POST /v1/sessions-profile[?include_session=true]` | starts the payment; `{"id":"T12345678.<base58>","url"}`. 400 naming the field (profile, `url.return_url`, `order.amount` not an integer or not the sum of the items, currency, merchant reference, store/terminal/payout destination missing, unknown, not matching or not `ACTIVE`); 409 `TERMINAL_BUSY`. |
//! | `GET /v1/sessions/{id}` | the session: `order`, `url`, `created_at`, `expires_at`, `transaction_id` (absent until pickup), `events[]`, `cancelled_at`, `cancelled_by` |
//! | `GET /v1/sessions?search=&limit=` | array, newest first; `search` matches `merchant_reference` or `merchant_reference_2` (case-insensitive substring) or the id |
//! | `POST /v1/sessions/{id}/cancel` | see *Cancel* below; answers the session |
//! | `GET /v1/transactions?merchant_reference=&terminal_id=&store_id=&status=&created_at.gte=&starting_after=&limit=` | array, newest first; all filters exact |
//! | `GET /v1/transactions/{id}` | the transaction (`status`, `amount`, `currency`, references, `session_id`, `payment_product` `seitatech`, `payment_product_type` `seitatech.in_person`, `store`, `card`, `events[]`, `created_at`) |
//! | `POST /v1/transactions/{id}/refund` | `{"amount", "terminal_id", "refund_reference"?}`; see *Refunds* |
//! | `POST /v1/admin/terminals/operations` | `{"terminal_id","operation":"end_of_day"\|"send_logs"\|"check_update"\|"open_menu"}`, optional `Idempotency-Key`; see *Terminal operations* |
//! | `GET /v1/admin/terminals/operations?terminal_id=` | array, newest first |
//!
//! # The simulated terminal
//! A terminal picks a new session up after **0.5 s**: from then the session has a
//! `transaction_id` and the transaction exists as `INITIATED` with an `INITIALIZE` event. The
//! **last two digits of `order.amount`** decide what happens next (times from pickup):
//!
//! | digits | transaction | session events |
//! |---|---|---|
//! | `51` | after 3 s `FAILED`, `AUTHORIZE` `success:false`, `error.type ["DECLINED"]` | `PAY_FAILED` (`details.error` `authorization`) |
//! | `52` | as `51` with `INSUFFICIENT_FUNDS` | `PAY_FAILED` (`authorization`) |
//! | `53` | after 3 s `FAILED`, type `CANCELLED` | `CANCELLED` (`cancelled`), `cancelled_by` `terminal` |
//! | `54` | after 90 s `FAILED`, type `TIMEOUT` | `CANCELLED` (`timeout`), `cancelled_by` `terminal` |
//! | `55` | never: the session is not picked up, no transaction, terminal still `ACTIVE` | none |
//! | `56` | after 3 s `FAILED`, type `ERROR` | `FAILED` (`failed`) |
//! | `57` | `AUTHORIZED` after 45 s, `CAPTURED` 1 s later | `AUTHORIZED`, `COMPLETED` |
//! | `58` | `AUTHORIZED` after 2 s, `CAPTURED` 20 s later | `AUTHORIZED`, `COMPLETED` |
//! | `59` | chip and PIN (`entry_method` `chip`): `AUTHORIZED` after 8 s, `CAPTURED` 1 s later | `AUTHORIZED`, `COMPLETED` |
//! | other | contactless: `AUTHORIZED` after 2 s, `CAPTURED` 1 s later | `AUTHORIZED`, `COMPLETED` |
//!
//! Every session gets `INITIATED` at pickup. `AUTHORIZE` events carry
//! `metadata."seitatech:receiptNumber"` (and a `seitatech:customerReceipt`; failures a
//! `seitatech:outcomeReason`). A terminal runs one payment at a time: it is busy from session
//! creation until the card step ends (authorized or failed) or the session is cancelled;
//! meanwhile a new session for it gets `409 TERMINAL_BUSY`. An offline (`55`) session keeps its
//! terminal busy until it is cancelled. `expires_at` is shown (1 h) but not enforced.
//!
//! **Callbacks**: a session created with `url.callback_url` gets Dintero's callback (a `GET`
//! with `transaction_id`, `session_id`, `merchant_reference`, `time`; `method=POST` in the URL
//! sends the transaction as body; `report_error=true` adds failures and cancels with `error`),
//! signed with `Dintero-Signature` when [`EmulatorConfig::signature_secret`] is set, delivered
//! at least once (retried on `5xx` and connection errors, `4xx` is final). See the `callback`
//! module. kioskpay asks for callbacks only with `[callback]` configured, and then only as a
//! nudge to read the payment at once (`crate::callback`); it polls either way.
//!
//! **Cancel** (`POST /v1/sessions/{id}/cancel`): not yet picked up → cancelled, no transaction;
//! `INITIATED` → the terminal stops, `FAILED`, session event `CANCELLED`; `AUTHORIZED` →
//! `AUTHORIZATION_VOIDED` with a `VOID` event; `CAPTURED` or otherwise final → `400`,
//! unchanged. `cancelled_by` is the API client's id.
//!
//! **Refunds** need `terminal_id` (an `ACTIVE` terminal of the same payout destination, not
//! busy: else 400/409); the cardholder approves after **2 s**, then the answer is `200` with
//! the transaction `REFUNDED` or `PARTIALLY_REFUNDED` and a `REFUND` event. Only `CAPTURED` or
//! `PARTIALLY_REFUNDED` transactions refund, up to what is left.
//!
//! **Terminal operations** (ours, where Dintero is silent): an operation is `PENDING` for the
//! first half of **2 s**, `IN_PROGRESS` for the second, then `COMPLETED`. While it runs the
//! terminal is busy: a session or a second operation for it gets `409 TERMINAL_BUSY`, and the
//! terminal list shows the operation's name in capitals as its `status_reason`
//! (`CHECK_UPDATE`). An operation on a terminal running a payment or a refund is refused with
//! `409 TERMINAL_BUSY` rather than queued (a queued `end_of_day` would close the batch under a
//! payment). An unknown terminal is `404`. The same `Idempotency-Key` again answers the first
//! operation as it is now, whatever the body, and creates nothing. `PUT
//! /_emulator/terminals/{id}/status` with `{"status":"ERROR","status_reason":"…"}` puts a
//! terminal where `sync` can retry it.
//!
//! # Time
//! All time is tokio's (`tokio::time`), so tests may pause it. Terminal delays (pickup, outcome
//! table, refund approval, operations) are multiplied by [`EmulatorConfig::time_scale`]
//! (1.0 real time; 0.01 makes a 90 s timeout 0.9 s). Token lifetime and fault delays are *not*
//! scaled: they model the auth server and the network. Timestamps are wall time anchored at
//! start and advanced by tokio's clock. Payment steps are applied lazily on the next request
//! once due, so there are no background tasks.
//!
//! Three settings exist for benchmarks and are off by default
//! ([`EmulatorConfig::connection_cost`], [`EmulatorConfig::record_traffic`],
//! [`EmulatorConfig::card_jitter`]): a delay before a new connection's first answer (what a
//! handshake costs off loopback), a record of every API request with its connection and times
//! ([`EmulatorHandle::traffic`]), and a seeded random delay added to each card step, so that a
//! client's poll period cannot line up with the table's whole seconds. `kioskpay bench` uses
//! them, with [`EmulatorHandle::captures`] for when each capture happened.
//!
//! With paused time, note that a *blocking* client call (ureq in `spawn_blocking`) stops tokio
//! from auto-advancing; a request that waits inside the emulator (a refund, a `delay` fault)
//! would then never finish. Use real time with a small time scale for those.
//!
//! # Control API (`/_emulator/`, no token)
//! ```text
//! curl -s localhost:PORT/_emulator/ledger
//!   {"sessions":[{"id","merchant_reference","merchant_reference_2","amount","currency",
//!                 "terminal_id","transaction_id","cancelled_at"}],
//!    "transactions":[{"id","session_id","merchant_reference","amount","currency","status",
//!                     "refunded_amount"}]}
//! curl -s -X POST localhost:PORT/_emulator/terminals/T12345678-T0001/outcome -d '{"outcome":"decline"}'
//!   # next payment on that terminal only: approve decline insufficient_funds customer_cancel
//!   # no_card offline fail slow capture_lag chip_pin offline_mid_payment
//!   # (offline_mid_payment: picked up, then the terminal drops off the network; the
//!   # transaction stays INITIATED and the terminal busy until the session is cancelled)
//! curl -s -X PUT localhost:PORT/_emulator/terminals/T12345678-T0001/status -d '{"status":"INACTIVE"}'
//!   # a non-ACTIVE terminal refuses new sessions with 400 naming it; also ERROR and
//!   # SYNC_ERROR (for sync), with an optional "status_reason" shown by the terminal list
//! curl -s -X POST localhost:PORT/_emulator/reset
//!   # seeded sandbox again, and the fault plan the emulator started with; tokens survive
//! curl -s -X POST localhost:PORT/_emulator/faults -d '{"seed":1,"rules":[
//!   {"route":"POST /v1/sessions-profile","kind":"drop_response","count":1},
//!   {"route":"GET /v1/sessions/{id}","kind":"status","status":503,"probability":0.2,"retry_after_s":1},
//!   {"route":"GET /v1/transactions","kind":"delay","delay_ms":3000},
//!   {"route":"POST /v1/accounts/{aid}/auth/token","kind":"reset","count":2}]}'
//! curl -s -X DELETE localhost:PORT/_emulator/faults
//! curl -s localhost:PORT/_emulator/faults
//!   {"seed":1,"rules":[...],"hits":[3,0,...],"fired":{"drop_response":3,...}}   # or null
//! ```
//! Fault rules ([`FaultPlan`], also loadable from a file with [`FaultPlan::load`]): `route` is
//! `"METHOD /path"` where a `{name}` segment matches any one segment (`"GET /v1/transactions"`
//! is the list only). Kinds: `status` answers that status with Dintero's error body without
//! doing the work; `delay` does the work and answers `delay_ms` later; `reset` closes the
//! connection with a TCP RST without doing the work; `drop_response` does the work (e.g. the
//! session exists) and closes the connection without answering; `late_work` closes the
//! connection without answering and does the work `delay_ms` later (a create that lands after
//! the client gave up looking for it). `probability` (default 1) and
//! `count` (default unlimited) limit a rule; `retry_after_s` adds a `Retry-After` header to a
//! `status` fault; the first rule that fires wins; dice are seeded by
//! `seed`. Faults never apply to `/_emulator/` routes. Three more kinds act beyond the answer:
//! `terminal_offline` (route `POST /v1/sessions-profile` only) creates the session and lets its
//! terminal drop off the network after pickup; `callback_twice` and `callback_late` (with
//! `delay_ms`; route `"callback"`) duplicate or hold back a callback. `GET /_emulator/faults`
//! counts what fired, per rule (`hits`) and per kind (`fired`), so a chaos run can say what
//! it survived; the ledger keeps its documented shape.
//!
//! Secrets: the client secret and tokens are never logged; only client ids are.

mod api;
mod callback;
mod control;
mod error;
mod faults;
mod ids;
mod ledger;
pub mod sandbox;
mod server;
mod terminal;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::secret::Secret;

pub use faults::{FaultKind, FaultPlan, FaultPlanError, FaultRule, CALLBACK_ROUTE};
pub use server::{RequestRec, Traffic};
pub use terminal::{Outcome, OUTCOME_TABLE};

/// The seeded sandbox account.
pub const ACCOUNT_ID: &str = "T12345678";
/// The seeded API client's id.
pub const CLIENT_ID: &str = "kiosk-demo";
/// The seeded API client's secret (a published demo value, not a secret worth hiding).
pub const CLIENT_SECRET: &str = "demo-secret";
/// The seeded payment profile whose only method is Seitatech in-person.
pub const PROFILE_ID: &str = "T12345678.kiosk-in-person";
/// The seeded store.
pub const STORE_ID: &str = "oslo-center";
/// The seeded store's payout destination.
pub const PAYOUT_DESTINATION_ID: &str = "seller-1";
/// The seeded simulated terminals, both `ACTIVE`.
pub const TERMINAL_IDS: [&str; 2] = ["T12345678-T0001", "T12345678-T0002"];

/// How the emulator behaves.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Multiplies every emulated terminal delay: 1.0 is real time, 0.01 makes a demo or test
    /// a hundred times faster. Must be positive.
    pub time_scale: f64,
    /// How long an access token is valid, in (unscaled) tokio time; `expires_in` says it in
    /// whole seconds. Dintero's examples use 14400 s.
    pub token_ttl: Duration,
    /// Faults active from the start (and again after `POST /_emulator/reset`).
    pub faults: Option<FaultPlan>,
    /// The account's signature secret: when set, every callback carries `Dintero-Signature`.
    pub signature_secret: Option<Secret>,
    /// Held before a new connection's first answer, in (unscaled) tokio time: what DNS, TCP
    /// and TLS cost a kiosk on a real network and loopback hides, so that a benchmark sees a
    /// client that opens connections where it could have kept one. Zero by default.
    pub connection_cost: Duration,
    /// Keeps every API request's method, path, connection and times for
    /// [`EmulatorHandle::traffic`] (the benchmark counts and times with it). Off by default:
    /// a long-running emulator would grow without end.
    pub record_traffic: bool,
    /// Up to this much (uniformly drawn, seeded, unscaled) is added to each payment's card
    /// step and everything after it: customers take varying time to present a card, so a
    /// kiosk's reads should fall anywhere in a step. Without it the table's whole-second
    /// delays and a poll period that divides them line up the same way on every payment.
    /// Zero by default, so tests see the table's exact times.
    pub card_jitter: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            time_scale: 1.0,
            token_ttl: Duration::from_secs(14400),
            faults: None,
            signature_secret: None,
            connection_cost: Duration::ZERO,
            record_traffic: false,
            card_jitter: Duration::ZERO,
        }
    }
}

/// Serves the emulator on `listener` until `shutdown` resolves, then closes every connection.
///
/// Fails at once with `InvalidInput` if the configuration is unusable (time scale not positive,
/// invalid fault plan).
pub async fn serve(
    listener: TcpListener,
    config: EmulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(server::Shared::new(config)?);
    server::run(listener, shared, shutdown).await
}

/// A running emulator on loopback. Dropping it stops the emulator too; [`shutdown`] also
/// waits until it has stopped.
///
/// [`shutdown`]: EmulatorHandle::shutdown
#[derive(Debug)]
pub struct EmulatorHandle {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

/// Starts an emulator on `127.0.0.1:0` in a tokio task.
pub async fn spawn(config: EmulatorConfig) -> std::io::Result<EmulatorHandle> {
    let shared = Arc::new(server::Shared::new(config)?);
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server::run(listener, shared.clone(), async move {
        // Either an explicit stop or the handle being dropped ends the emulator.
        let _ = stopped.await;
    }));
    Ok(EmulatorHandle {
        addr,
        shared,
        stop,
        task,
    })
}

impl EmulatorHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the base URL for both the API and the checkout host.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every access token issued and not yet expired, so that a test can prove none of them
    /// reached a log. The HTTP control API never shows them: they are secrets like the client's.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.live_tokens()
    }

    /// The connections accepted so far and, with [`EmulatorConfig::record_traffic`], every API
    /// request (the control API's are left out: they are the observer's, not the client's).
    pub fn traffic(&self) -> Traffic {
        self.shared.traffic()
    }

    /// Every captured payment's `merchant_reference` and the tokio instant of its capture (the
    /// moment it became due, not the moment a read noticed it): where a customer's wait for the
    /// approved screen starts.
    pub fn captures(&self) -> Vec<(String, tokio::time::Instant)> {
        self.shared.ledger().captures()
    }

    /// Stops accepting, closes open connections and waits for the server task to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "emulator ended with an error"),
            Err(e) => tracing::warn!(error = %e, "emulator task failed"),
        }
    }
}
