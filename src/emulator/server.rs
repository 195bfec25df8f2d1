//! The listener: our own accept loop serving the axum router over hyper, one task per
//! connection, so a fault can close a connection without an answer or with a TCP RST.
//!
//! `axum::serve` hides the socket, which makes exactly the faults a payment client must
//! survive (work done but no answer; connection reset) impossible to produce. Here each
//! connection owns a kill switch: a fault flips it and the connection task drops the hyper
//! connection, closing the socket (with `SO_LINGER` 0 for a reset, so the kernel sends RST).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::error::ApiErr;
use super::faults::{CallbackFault, FaultAction, FaultPlan, FaultState};
use super::ids::IdGen;
use super::ledger::{Clock, Ledger};
use super::{api, control, EmulatorConfig};
use crate::secret::Secret;

/// A live access token. Only its expiry and owner are kept; the value is the map key and is
/// never logged.
#[derive(Debug)]
struct TokenRec {
    client_id: String,
    expires: Instant,
}

#[derive(Debug, Default)]
struct Tokens {
    ids: IdGen,
    live: HashMap<String, TokenRec>,
}

/// State shared by every connection.
#[derive(Debug)]
pub struct Shared {
    /// Multiplies every emulated terminal delay.
    pub time_scale: f64,
    /// Lifetime of an access token, in tokio time (not scaled).
    pub token_ttl: Duration,
    ledger: Mutex<Ledger>,
    tokens: Mutex<Tokens>,
    faults: Mutex<Option<FaultState>>,
    configured_faults: Option<FaultPlan>,
    /// Signs callbacks when set.
    pub signature_secret: Option<Secret>,
    /// Wakes the callback courier after a request that may have queued a callback.
    pub courier_wake: Notify,
    /// Held before a new connection is served ([`EmulatorConfig::connection_cost`]).
    connection_cost: Duration,
    traffic: Mutex<Traffic>,
    /// Whether `traffic` keeps requests ([`EmulatorConfig::record_traffic`]).
    record_traffic: bool,
}

/// What clients did to the emulator: see [`super::EmulatorHandle::traffic`].
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    /// Connections accepted.
    pub connections: u64,
    /// API requests in arrival order (empty unless recording).
    pub requests: Vec<RequestRec>,
}

/// One API request as the emulator saw it.
#[derive(Clone, Debug)]
pub struct RequestRec {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// Which accepted connection it came on (1 is the first), so a reader can tell a request
    /// on a fresh connection from one on a kept one.
    pub connection: u64,
    /// When its head had been read, in tokio time.
    pub arrived: Instant,
    /// When its answer was ready (after any connection cost); `None` for a request a fault
    /// answered, closed or delayed.
    pub answered: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the books half-written in a way that matters
    // more than keeping the emulator answering, so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Checks the configuration and seeds the sandbox.
    pub fn new(config: EmulatorConfig) -> io::Result<Shared> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        if !(config.time_scale.is_finite() && config.time_scale > 0.0 && config.time_scale <= 1e6) {
            return Err(invalid(format!(
                "emulator time scale {} must be a positive number (1.0 is real time)",
                config.time_scale
            )));
        }
        if let Some(plan) = &config.faults {
            plan.validate().map_err(|e| invalid(e.to_string()))?;
        }
        Ok(Shared {
            time_scale: config.time_scale,
            token_ttl: config.token_ttl,
            ledger: Mutex::new(
                Ledger::new(Clock::start(), config.time_scale).with_card_jitter(config.card_jitter),
            ),
            tokens: Mutex::new(Tokens::default()),
            faults: Mutex::new(config.faults.clone().map(FaultState::new)),
            configured_faults: config.faults,
            signature_secret: config.signature_secret,
            courier_wake: Notify::new(),
            connection_cost: config.connection_cost,
            traffic: Mutex::new(Traffic::default()),
            record_traffic: config.record_traffic,
        })
    }

    /// The books, brought up to tokio's now.
    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        let mut ledger = lock(&self.ledger);
        ledger.advance(Instant::now());
        ledger
    }

    /// Back to the start: seeded sandbox, the configured fault plan with fresh dice. Tokens
    /// survive, so a client's cached token keeps working across test cases.
    pub fn reset(&self) {
        lock(&self.ledger).reset();
        self.set_faults(self.configured_faults.clone());
    }

    /// Installs (or with `None` removes) a validated fault plan.
    pub fn set_faults(&self, plan: Option<FaultPlan>) {
        *lock(&self.faults) = plan.map(FaultState::new);
    }

    /// Issues a token for `client_id` valid for `token_ttl` from `now`.
    pub fn issue_token(&self, client_id: &str, now: Instant) -> String {
        let mut tokens = lock(&self.tokens);
        tokens.live.retain(|_, t| t.expires > now);
        let token = tokens.ids.token();
        tokens.live.insert(
            token.clone(),
            TokenRec {
                client_id: client_id.to_string(),
                expires: now + self.token_ttl,
            },
        );
        token
    }

    /// The tokens issued and still live (for [`super::EmulatorHandle::issued_tokens`]).
    pub fn live_tokens(&self) -> Vec<String> {
        lock(&self.tokens).live.keys().cloned().collect()
    }

    /// The client a bearer token belongs to, or 401.
    pub fn check_token(&self, token: &str, now: Instant) -> Result<String, ApiErr> {
        match lock(&self.tokens).live.get(token) {
            Some(t) if t.expires > now => Ok(t.client_id.clone()),
            Some(_) => Err(ApiErr::unauthorized(
                "the access token has expired; fetch a new one",
            )),
            None => Err(ApiErr::unauthorized("invalid access token")),
        }
    }

    fn fault_for(&self, method: &str, path: &str) -> Option<FaultAction> {
        lock(&self.faults).as_mut()?.decide(method, path)
    }

    /// The fate of one outgoing callback under the fault plan.
    pub fn callback_fault(&self) -> Option<CallbackFault> {
        lock(&self.faults).as_mut()?.decide_callback()
    }

    /// A copy of the traffic so far.
    pub fn traffic(&self) -> Traffic {
        lock(&self.traffic).clone()
    }

    /// Counts an accepted connection and returns its number.
    fn accepted(&self) -> u64 {
        let mut traffic = lock(&self.traffic);
        traffic.connections += 1;
        traffic.connections
    }

    /// Records a request's arrival (when recording) and returns its index for [`Self::answered`].
    fn arrived(&self, method: &str, path: &str, connection: u64) -> Option<usize> {
        if !self.record_traffic {
            return None;
        }
        let mut traffic = lock(&self.traffic);
        traffic.requests.push(RequestRec {
            method: method.to_string(),
            path: path.to_string(),
            connection,
            arrived: Instant::now(),
            answered: None,
        });
        Some(traffic.requests.len() - 1)
    }

    fn answered(&self, index: Option<usize>) {
        if let Some(index) = index {
            if let Some(request) = lock(&self.traffic).requests.get_mut(index) {
                request.answered = Some(Instant::now());
            }
        }
    }

    /// The installed fault plan and what it has fired so far (`null` without a plan).
    pub fn fault_report(&self) -> serde_json::Value {
        lock(&self.faults)
            .as_ref()
            .map_or(serde_json::Value::Null, FaultState::report)
    }
}

/// The whole router: Dintero's routes, the control API, and Dintero-shaped 404 and 405.
fn router(shared: Arc<Shared>) -> Router {
    api::routes()
        .merge(control::routes())
        .fallback(|req: Request<Body>| async move {
            ApiErr::not_found(format!(
                "no route for {} {}",
                req.method(),
                req.uri().path()
            ))
        })
        .method_not_allowed_fallback(|req: Request<Body>| async move {
            ApiErr::with_status(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                format!("{} is not allowed on {}", req.method(), req.uri().path()),
            )
        })
        .with_state(shared)
}

/// Serves until `shutdown` resolves, then closes every open connection.
pub async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let router = router(shared.clone());
    let mut connections = JoinSet::new();
    let courier = tokio::spawn(super::callback::courier(shared.clone()));
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, time_scale = shared.time_scale, "Dintero emulator listening");
    }
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small JSON answers: don't let Nagle hold them back.
                    let _ = stream.set_nodelay(true);
                    let number = shared.accepted();
                    connections.spawn(connection(stream, shared.clone(), router.clone(), number));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "emulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    courier.abort();
    connections.shutdown().await;
    tracing::info!("Dintero emulator stopped");
    Ok(())
}

/// The socket of one connection. Dropping it closes the connection; with `reset` set it first
/// sets `SO_LINGER` 0 so the close is an RST instead of a FIN.
struct ConnIo {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// How a fault ends a connection.
#[derive(Clone)]
struct KillSwitch {
    fired: Arc<Notify>,
    reset: Arc<AtomicBool>,
}

impl KillSwitch {
    fn close(&self, reset: bool) {
        self.reset.store(reset, Ordering::SeqCst);
        self.fired.notify_one();
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>, router: Router, number: u64) {
    if !shared.connection_cost.is_zero() {
        // The client has connected and may already have sent its request: it waits for the
        // answer as it would for a handshake.
        tokio::time::sleep(shared.connection_cost).await;
    }
    let kill = KillSwitch {
        fired: Arc::new(Notify::new()),
        reset: Arc::new(AtomicBool::new(false)),
    };
    let io = TokioIo::new(ConnIo {
        stream,
        reset: kill.reset.clone(),
    });
    let fired = kill.fired.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        handle(req, shared.clone(), router.clone(), kill.clone(), number)
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::select! {
        result = conn => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "emulator connection ended with an error");
            }
        }
        () = fired.notified() => tracing::debug!("emulator closed a connection for a fault"),
    }
}

/// Wakes the courier when a request is done with, however it ends (a fault's connection
/// close drops the handler future).
struct WakeCourier<'a>(&'a Shared);

impl Drop for WakeCourier<'_> {
    fn drop(&mut self) {
        self.0.courier_wake.notify_one();
    }
}

/// Largest request body a `late_work` fault keeps for later: far above any API body.
const MAX_LATE_BODY: usize = 1 << 20;

/// One request: apply the fault plan (never to the control API), then the router.
async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    router: Router,
    kill: KillSwitch,
    connection: u64,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().as_str().to_string();
    tracing::debug!(%method, %path, "emulator request");
    let (fault, recorded) = if path.starts_with("/_emulator/") {
        (None, None)
    } else {
        (
            shared.fault_for(&method, &path),
            shared.arrived(&method, &path, connection),
        )
    };
    let req = req.map(Body::new);
    // Whatever the request did may have queued a callback or moved the next step's due time.
    let _wake = WakeCourier(&shared);
    match fault {
        None => {
            let response = router.oneshot(req).await.into_response();
            shared.answered(recorded);
            Ok(response)
        }
        Some(FaultAction::Status(status, retry_after)) => {
            tracing::info!(%method, %path, status, "fault: answering an error without doing the work");
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut response =
                ApiErr::with_status(status, "EMULATED_FAULT", "emulated fault").into_response();
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            Ok(response)
        }
        Some(FaultAction::Delay(delay)) => {
            tracing::info!(%method, %path, ?delay, "fault: answering late");
            let response = router.oneshot(req).await.into_response();
            tokio::time::sleep(delay).await;
            Ok(response)
        }
        Some(FaultAction::Reset) => {
            tracing::info!(%method, %path, "fault: resetting the connection");
            kill.close(true);
            std::future::pending().await
        }
        Some(FaultAction::TerminalOffline) => {
            tracing::info!(%method, %path, "fault: this payment's terminal goes offline after pickup");
            let mut req = req;
            req.extensions_mut().insert(api::TerminalOffline);
            Ok(router.oneshot(req).await.into_response())
        }
        Some(FaultAction::LateWork(delay)) => {
            tracing::info!(%method, %path, ?delay, "fault: closing unanswered; the work lands later");
            let (parts, body) = req.into_parts();
            // Read now, while the connection is open; the work outlives the connection.
            if let Ok(bytes) = axum::body::to_bytes(body, MAX_LATE_BODY).await {
                let late = Request::from_parts(parts, Body::from(bytes));
                let shared = shared.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _wake = WakeCourier(&shared);
                    let _ = router.oneshot(late).await;
                });
            }
            kill.close(false);
            std::future::pending().await
        }
        Some(FaultAction::DropResponse) => {
            tracing::info!(%method, %path, "fault: doing the work, then dropping the answer");
            let _ = router.oneshot(req).await;
            kill.close(false);
            std::future::pending().await
        }
    }
}
