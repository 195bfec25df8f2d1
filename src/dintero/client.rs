//! The real Dintero client: HTTPS calls with `ureq`, run on tokio's blocking pool.
//!
//! # What it talks to
//! Two base URLs, both configurable so the same client talks to Dintero or to the
//! [emulator](crate::emulator) on loopback (`http://127.0.0.1:PORT` for both):
//! - `dintero.checkout_url` (`https://checkout.dintero.com`): sessions, transactions, cancel,
//!   refund;
//! - `dintero.api_url` (`https://api.dintero.com`): the access token and terminal status, under
//!   `/v1/accounts/{account_id}`.
//!
//! # Timeouts
//! ureq has no timeouts unless told, and a blocking call on the blocking pool cannot be
//! aborted, so every call is bounded: `dintero.connect_timeout_ms` for name resolution and for
//! the TCP (and TLS) connect each, `dintero.call_timeout_ms` for the whole call including the
//! answer's body. Keep the connect timeout well below the call timeout: a call timeout that
//! expires while still connecting is reported as "outcome unknown", the cautious reading.
//!
//! # Connections
//! One ureq agent, so one pool of kept-alive connections per host. ureq closes a connection
//! idle for 15 s by default; the kiosk is idle for minutes between customers, so nearly every
//! create paid a new DNS lookup, TCP and TLS handshake, which loopback hides and a 4G link
//! does not. An idle connection is kept for [`IDLE_CONNECTION_AGE`] instead: longer than the
//! 60 s between health checks, so the API host's connection (token, terminal status) stays
//! warm for as long as the kiosk runs, and the checkout host's survives two minutes between
//! customers. ureq probes a pooled connection before reusing it, so one the server or a
//! middlebox has closed meanwhile is replaced, never written to.
//!
//! # Access token
//! Fetched with the client id and secret (HTTP Basic) on first use, cached, and refreshed once
//! half its lifetime has passed (as Dintero's Node SDK does), so a token never expires in the
//! middle of a payment. Callers that need a token at the same moment share one fetch. A `401`
//! on any call fetches a fresh token and retries that call once (a 401 means the call was
//! refused, so even a session create is safe to repeat); a second 401, or a 403, is
//! [`ApiError::Auth`]. Neither the secret nor the token is ever logged, printed by `Debug`, or
//! put in an error.
//!
//! # What an error means
//! The payment flow must never start a second payment because it misread a failure, so errors
//! are sorted by whether the call can have taken effect ([`ApiError`]):
//! - [`ApiError::Unreachable`]: nothing was sent. DNS failure, connection refused, network or
//!   host unreachable, connect timeout, or a request that could not be built. Linux reports the
//!   unreachable errors on an established connection only after minutes of retransmissions, far
//!   beyond the call timeout, so seeing one here means the connect failed.
//! - [`ApiError::Unknown`]: the request may have been processed. A timeout after connecting, a
//!   reset or closed connection, an unreadable answer, `5xx`, `408`, `429` (with `Retry-After`
//!   in seconds when sent). Anything this module cannot classify lands here too.
//! - [`ApiError::Rejected`]: Dintero answered `4xx` (or an unexpected redirect) and did
//!   nothing; its `error.code` and `error.message` are kept (non-JSON bodies are tolerated).
//! - [`ApiError::Auth`]: the credentials were refused (see above).
//!
//! # Logs
//! One `tracing` debug line per HTTP exchange with method, path, status (or error) and
//! duration, under the target `kioskpay::dintero::client`. Paths contain session and
//! transaction ids, never credentials.
//!
//! # Headers
//! Every call carries `Accept: application/json`, `Dintero-System-Name: kioskpay` and
//! `Dintero-System-Version`, and names this client as the plugin with
//! `Dintero-System-Plugin-Name`/`-Version`, as Dintero's own SDKs do, so Dintero support can
//! tell kiosk traffic apart.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::debug;

use crate::dintero::{
    ApiError, CreatedSession, ErrorBody, Gateway, ListedTerminal, OperationKind, RefundOutcome,
    RefundRequest, Session, SessionProfileRequest, Terminal, TerminalFilter, TerminalOperation,
    TerminalStatus, TokenResponse, Transaction, TransactionQuery,
};
use crate::secret::Secret;

/// `Dintero-System-Name`: the merchant system making the calls.
const SYSTEM_NAME: &str = "kioskpay";
/// `Dintero-System-Plugin-Name`: the integration library inside that system (this module).
const PLUGIN_NAME: &str = "kioskpay-dintero-client";
/// Both versions are the crate's: the client ships inside the daemon.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Largest answer body read. A session or transaction is a few kB; a list of a hundred a few
/// hundred kB. A larger body is treated as unreadable rather than filling a small board's RAM.
const MAX_BODY: u64 = 4 * 1024 * 1024;
/// Longest half-life a token is trusted for, whatever `expires_in` says. Also keeps the clock
/// arithmetic far from overflow on an absurd `expires_in`.
const MAX_TOKEN_HALF_LIFE: Duration = Duration::from_secs(24 * 3600);
/// How long an idle connection is kept: above the default `payment.health_interval_s` (60 s),
/// below the 2 h 4 min RFC 5382 asks NATs to keep an idle TCP mapping.
pub const IDLE_CONNECTION_AGE: Duration = Duration::from_secs(120);
/// How much of a non-JSON error body goes into an error message.
const MAX_ERROR_TEXT: usize = 200;

/// A path segment keeps only RFC 3986 unreserved characters; everything else (`/`, `?`, `#`,
/// `%`, spaces, non-ASCII) is percent-encoded, so an id from an answer or a journal can never
/// change which endpoint is called.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Everything the client needs to know, separate from the config file so tests and the
/// integrator can point it anywhere (e.g. `http://127.0.0.1:PORT` for both base URLs).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URL of the checkout API, without a trailing `/`.
    pub checkout_url: String,
    /// Base URL of the management API (token, terminals), without a trailing `/`.
    pub api_url: String,
    /// `T` + 8 digits (sandbox) or `P` + 8 digits (production).
    pub account_id: String,
    /// The API client's id, the user half of the token request's Basic auth.
    pub client_id: String,
    /// The API client's secret, the password half.
    pub client_secret: Secret,
    /// Bound on name resolution and on connecting, each.
    pub connect_timeout: Duration,
    /// Bound on a whole call, answer body included.
    pub call_timeout: Duration,
}

/// The Dintero API over HTTP. Cheap to clone (one shared connection pool and token cache), and
/// `Send + Sync`, so the flow and the health gate can hold one each.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// One agent for every call, so connections (and TLS sessions) are reused.
    agent: ureq::Agent,
    config: ClientConfig,
    /// Held across a token fetch: concurrent callers wait for that one fetch instead of each
    /// starting their own.
    token: Mutex<TokenSlot>,
    /// What the calls so far showed, for the daemon's `status`.
    seen: std::sync::Mutex<Seen>,
}

/// What this client's calls have shown so far: the newest exchange, the token's age and the
/// terminal's status at its last reading (the payment flow's health gate reads it every
/// health interval). Clones of a client share it.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// The newest HTTP exchange.
    pub last_call: Option<LastCall>,
    /// When the token in use was fetched.
    pub token_fetched: Option<std::time::Instant>,
    /// The terminal's status at the newest `GET …/terminals/{id}`, and when.
    pub terminal: Option<(TerminalStatus, std::time::Instant)>,
}

/// One HTTP exchange, as `status` shows it.
#[derive(Clone, Debug)]
pub struct LastCall {
    /// When it ended.
    pub at: std::time::Instant,
    /// From sending to the end of the answer (or the failure).
    pub round_trip: Duration,
    /// `None`: Dintero answered (any status: the API is reachable); else what failed on the
    /// way.
    pub failure: Option<String>,
}

#[derive(Default)]
struct TokenSlot {
    current: Option<CachedToken>,
    /// Tokens fetched so far; numbers each token so a caller whose token was refused can tell
    /// whether someone else already replaced it.
    fetched: u64,
}

struct CachedToken {
    /// The whole `Authorization` value, `Bearer <token>`.
    authorization: Secret,
    generation: u64,
    /// Half-way through the token's life. tokio's clock, so tests can pause and advance it.
    refresh_at: Instant,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("Client")
            .field("checkout_url", &c.checkout_url)
            .field("api_url", &c.api_url)
            .field("account_id", &c.account_id)
            .field("client_id", &c.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug)]
enum Method {
    Get,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// One prepared call, cheap to repeat after a token refresh.
#[derive(Clone)]
struct Request {
    method: Method,
    /// Encoded path (for the log line).
    path: String,
    /// Full URL: base, path and encoded query.
    url: String,
    /// JSON body of a POST; `None` sends an empty body.
    body: Option<String>,
    /// `Idempotency-Key`, on the calls that take one.
    idempotency_key: Option<String>,
}

/// What came back, reduced to what the callers use, so the ureq response does not leave the
/// blocking thread.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    event_request_id: Option<String>,
    location: Option<String>,
    /// The body, or why it could not be read.
    body: Result<Vec<u8>, String>,
}

impl Client {
    /// A client for `config`. No I/O happens until the first call.
    pub fn new(config: ClientConfig) -> Client {
        let mut config = config;
        config.checkout_url = config.checkout_url.trim_end_matches('/').to_string();
        config.api_url = config.api_url.trim_end_matches('/').to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.call_timeout))
            .timeout_resolve(Some(config.connect_timeout))
            .timeout_connect(Some(config.connect_timeout))
            .max_idle_age(IDLE_CONNECTION_AGE)
            // Error statuses carry Dintero's error body; we read and classify them ourselves.
            .http_status_as_error(false)
            // Dintero does not redirect API calls; following one could turn a POST into a GET
            // or send the token elsewhere. A redirect comes back as an answer and is refused.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(format!("{SYSTEM_NAME}/{VERSION}"))
            .accept("application/json")
            .build()
            .into();
        Client {
            inner: Arc::new(Inner {
                agent,
                config,
                token: Mutex::new(TokenSlot::default()),
                seen: std::sync::Mutex::new(Seen::default()),
            }),
        }
    }

    /// What the calls so far have shown.
    pub fn seen(&self) -> Seen {
        self.seen_mut().clone()
    }

    fn seen_mut(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.inner.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn checkout(&self, method: Method, path: String, query: &[(&str, &str)]) -> Request {
        Request::new(method, &self.inner.config.checkout_url, path, query)
    }

    fn management(&self, method: Method, path: &str) -> Request {
        self.management_query(method, path, &[])
    }

    fn management_query(&self, method: Method, path: &str, query: &[(&str, &str)]) -> Request {
        let path = format!(
            "/v1/accounts/{}{path}",
            segment(&self.inner.config.account_id)
        );
        Request::new(method, &self.inner.config.api_url, path, query)
    }

    /// Sends an authorized call, refreshing the token and retrying once on a 401. Returns only
    /// 2xx answers; everything else becomes the matching [`ApiError`].
    async fn call(&self, request: Request) -> Result<Answer, ApiError> {
        let (authorization, generation) = self.authorization(None).await?;
        let mut answer = self.send(&request, &authorization).await?;
        if answer.status == 401 {
            debug!("access token refused; fetching a new one and retrying the call once");
            let (authorization, _) = self.authorization(Some(generation)).await?;
            answer = self.send(&request, &authorization).await?;
            if answer.status == 401 {
                return Err(auth_error(&answer));
            }
        }
        if (200..300).contains(&answer.status) {
            Ok(answer)
        } else {
            Err(status_error(&answer))
        }
    }

    /// The `Authorization` value of a valid token, fetching one if none is cached, the cached
    /// one is past half its life, or it is the one numbered `refused`.
    async fn authorization(&self, refused: Option<u64>) -> Result<(Secret, u64), ApiError> {
        let mut slot = self.inner.token.lock().await;
        if let Some(token) = &slot.current {
            if Some(token.generation) != refused && Instant::now() < token.refresh_at {
                return Ok((token.authorization.clone(), token.generation));
            }
        }
        let requested_at = Instant::now();
        let fresh = self.fetch_token().await?;
        slot.fetched += 1;
        let half_life = Duration::from_secs(fresh.expires_in / 2).min(MAX_TOKEN_HALF_LIFE);
        let token = CachedToken {
            authorization: Secret::new(format!("Bearer {}", fresh.access_token)),
            generation: slot.fetched,
            refresh_at: requested_at + half_life,
        };
        debug!(
            expires_in_s = fresh.expires_in,
            "fetched a Dintero access token"
        );
        let result = (token.authorization.clone(), token.generation);
        slot.current = Some(token);
        self.seen_mut().token_fetched = Some(std::time::Instant::now());
        Ok(result)
    }

    async fn fetch_token(&self) -> Result<TokenResponse, ApiError> {
        let c = &self.inner.config;
        let mut request = self.management(Method::Post, "/auth/token");
        request.body = Some(
            serde_json::json!({
                "grant_type": "client_credentials",
                "audience": format!("{}/v1/accounts/{}", c.api_url, c.account_id),
            })
            .to_string(),
        );
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            c.client_id,
            c.client_secret.expose()
        ));
        let answer = self
            .send(&request, &Secret::new(format!("Basic {credentials}")))
            .await?;
        match answer.status {
            200..=299 => {}
            401 | 403 => return Err(auth_error(&answer)),
            _ => return Err(status_error(&answer)),
        }
        // serde's messages can quote the offending value, which here could be the token: say
        // only what was expected.
        let body = answer.body.map_err(|reason| ApiError::Unknown {
            reason: format!("the token answer could not be read: {reason}"),
            retry_after: None,
        })?;
        serde_json::from_slice(&body).map_err(|_| ApiError::Unknown {
            reason: "the token answer was not JSON with access_token and expires_in".into(),
            retry_after: None,
        })
    }

    /// One HTTP exchange on the blocking pool, logged.
    async fn send(&self, request: &Request, authorization: &Secret) -> Result<Answer, ApiError> {
        let inner = Arc::clone(&self.inner);
        let prepared = request.clone();
        let authorization = authorization.clone();
        let started = std::time::Instant::now();
        let outcome =
            tokio::task::spawn_blocking(move || exchange(&inner.agent, &prepared, &authorization))
                .await;
        let round_trip = started.elapsed();
        let elapsed_ms = u64::try_from(round_trip.as_millis()).unwrap_or(u64::MAX);
        self.seen_mut().last_call = Some(LastCall {
            at: std::time::Instant::now(),
            round_trip,
            failure: match &outcome {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(transport_error(e).to_string()),
                Err(join) => Some(join.to_string()),
            },
        });
        let method = request.method.as_str();
        let path = request.path.as_str();
        match outcome {
            Ok(Ok(answer)) => {
                debug!(
                    method,
                    path,
                    status = answer.status,
                    elapsed_ms,
                    "dintero call"
                );
                Ok(answer)
            }
            Ok(Err(error)) => {
                let error = transport_error(&error);
                debug!(method, path, error = %error, elapsed_ms, "dintero call failed");
                Err(error)
            }
            Err(join) => {
                debug!(method, path, error = %join, elapsed_ms, "dintero call failed");
                Err(ApiError::Unknown {
                    reason: format!("the HTTP worker stopped mid-call: {join}"),
                    retry_after: None,
                })
            }
        }
    }
}

impl Request {
    fn new(method: Method, base: &str, path: String, query: &[(&str, &str)]) -> Request {
        let mut url = format!("{base}{path}");
        if !query.is_empty() {
            url.push('?');
            url.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(query)
                    .finish(),
            );
        }
        Request {
            method,
            path,
            url,
            body: None,
            idempotency_key: None,
        }
    }

    fn with_json(mut self, body: &impl serde::Serialize) -> Result<Request, ApiError> {
        let body = serde_json::to_string(body).map_err(|e| ApiError::Unreachable {
            reason: format!("the request body could not be written as JSON: {e}"),
        })?;
        self.body = Some(body);
        Ok(self)
    }
}

/// An id as one path segment. Empty, `.` and `..` would address a different resource (the
/// list, the parent) even when encoded, so they are refused before anything is sent.
fn id_segment(what: &str, id: &str) -> Result<String, ApiError> {
    if id.is_empty() || id == "." || id == ".." {
        return Err(ApiError::Unreachable {
            reason: format!("refusing to call Dintero with {what} {id:?}: not an id"),
        });
    }
    Ok(segment(id))
}

fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// The blocking part: send, then read status, the headers we use, and the body.
fn exchange(
    agent: &ureq::Agent,
    request: &Request,
    authorization: &Secret,
) -> Result<Answer, ureq::Error> {
    let mut response = match (request.method, &request.body) {
        (Method::Get, _) => with_headers(agent.get(&request.url), request, authorization).call()?,
        (Method::Post, Some(body)) => {
            with_headers(agent.post(&request.url), request, authorization)
                .header("Content-Type", "application/json")
                .send(body.as_str())?
        }
        (Method::Post, None) => {
            with_headers(agent.post(&request.url), request, authorization).send_empty()?
        }
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
    };
    let status = response.status().as_u16();
    let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v));
    let event_request_id = header("event-request-id");
    let location = header("location");
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| e.to_string());
    Ok(Answer {
        status,
        retry_after,
        event_request_id,
        location,
        body,
    })
}

fn with_headers<B>(
    builder: ureq::RequestBuilder<B>,
    request: &Request,
    authorization: &Secret,
) -> ureq::RequestBuilder<B> {
    let builder = match &request.idempotency_key {
        Some(key) => builder.header("Idempotency-Key", key.as_str()),
        None => builder,
    };
    builder
        .header("Authorization", authorization.expose())
        .header("Dintero-System-Name", SYSTEM_NAME)
        .header("Dintero-System-Version", VERSION)
        .header("Dintero-System-Plugin-Name", PLUGIN_NAME)
        .header("Dintero-System-Plugin-Version", VERSION)
}

/// `Retry-After` in its seconds form. The HTTP-date form is ignored: a kiosk's clock may be off
/// and the caller has its own backoff.
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// Sorts a failure without an answer by whether the request can have reached Dintero.
fn transport_error(error: &ureq::Error) -> ApiError {
    use std::io::ErrorKind;
    use ureq::Error as E;
    let nothing_sent = match error {
        E::HostNotFound
        | E::ConnectionFailed
        | E::BadUri(_)
        | E::Http(_)
        | E::RequireHttpsOnly(_)
        | E::InvalidProxyUrl
        | E::ConnectProxyFailed(_)
        | E::Tls(_)
        | E::TlsRequired => true,
        E::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => true,
        E::Io(io) => {
            matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::NetworkDown
                    | ErrorKind::AddrNotAvailable
            ) || io
                .to_string()
                .starts_with("failed to lookup address information")
        }
        _ => false,
    };
    if nothing_sent {
        ApiError::Unreachable {
            reason: error.to_string(),
        }
    } else {
        ApiError::Unknown {
            reason: error.to_string(),
            retry_after: None,
        }
    }
}

/// Sorts a non-2xx answer (after any 401 retry) by what it means for the payment.
fn status_error(answer: &Answer) -> ApiError {
    let status = answer.status;
    let (code, message) = error_text(answer);
    match status {
        401 | 403 => auth_error(answer),
        408 | 429 | 500..=599 => ApiError::Unknown {
            reason: format!(
                "Dintero answered {status}{}: {message}",
                code.map(|c| format!(" {c}")).unwrap_or_default()
            ),
            retry_after: answer.retry_after,
        },
        300..=399 => ApiError::Rejected {
            status,
            code: None,
            message: format!(
                "unexpected redirect to {}; check dintero.checkout_url and dintero.api_url",
                answer.location.as_deref().unwrap_or("(no Location)")
            ),
        },
        400..=499 => ApiError::Rejected {
            status,
            code,
            message,
        },
        _ => ApiError::Unknown {
            reason: format!("Dintero answered an unexpected status {status}: {message}"),
            retry_after: answer.retry_after,
        },
    }
}

fn auth_error(answer: &Answer) -> ApiError {
    ApiError::Auth {
        status: answer.status,
        message: error_text(answer).1,
    }
}

/// Dintero's `error.code` and `error.message`, or the start of whatever else the body was.
fn error_text(answer: &Answer) -> (Option<String>, String) {
    let body = match &answer.body {
        Ok(body) => body,
        Err(reason) => return (None, format!("(error body unreadable: {reason})")),
    };
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        if !parsed.error.message.is_empty() || parsed.error.code.is_some() {
            return (parsed.error.code, parsed.error.message);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return (None, "(no error body)".into());
    }
    let mut short: String = text.chars().take(MAX_ERROR_TEXT).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    (None, short)
}

/// A 2xx body as `T`; a body that cannot be read or parsed leaves the outcome unknown.
fn parse<T: DeserializeOwned>(answer: &Answer) -> Result<T, ApiError> {
    let body = answer.body.as_ref().map_err(|reason| ApiError::Unknown {
        reason: format!("the answer ({}) could not be read: {reason}", answer.status),
        retry_after: None,
    })?;
    serde_json::from_slice(body).map_err(|e| ApiError::Unknown {
        reason: format!(
            "the answer ({}) was not the expected JSON: {e}",
            answer.status
        ),
        retry_after: None,
    })
}

/// A list answer: a JSON array, or (tolerantly) an object holding the array under `key` or
/// `data`.
fn parse_list<T: DeserializeOwned>(answer: &Answer, key: &str) -> Result<Vec<T>, ApiError> {
    let unexpected = |what: String| ApiError::Unknown {
        reason: format!("the list answer ({}) {what}", answer.status),
        retry_after: None,
    };
    let list = match parse::<serde_json::Value>(answer)? {
        list @ serde_json::Value::Array(_) => list,
        serde_json::Value::Object(mut fields) => [key, "data"]
            .iter()
            .find_map(|k| fields.remove(*k).filter(serde_json::Value::is_array))
            .ok_or_else(|| unexpected(format!("has no {key} array")))?,
        _ => return Err(unexpected("is not a list".into())),
    };
    serde_json::from_value(list).map_err(|e| unexpected(format!("has an unreadable item: {e}")))
}

/// Terminal management: what a technician asks for through the daemon, never the payment flow,
/// so these are not part of [`Gateway`] (the flow's fakes need not pretend to have them).
impl Client {
    /// `GET {api}/v1/accounts/{aid}/terminals` with `filter`.
    pub async fn terminals(
        &self,
        filter: &TerminalFilter,
    ) -> Result<Vec<ListedTerminal>, ApiError> {
        let pairs: Vec<(&str, &str)> = [
            ("status", filter.status.as_ref().map(TerminalStatus::as_str)),
            ("device_model", filter.device_model.as_deref()),
            (
                "device_serial_number",
                filter.device_serial_number.as_deref(),
            ),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
        let call = self.management_query(Method::Get, "/terminals", &pairs);
        parse_list(&self.call(call).await?, "terminals")
    }

    /// `POST {api}/v1/accounts/{aid}/terminals/{terminal_id}/sync`: retries a terminal in
    /// `ERROR` or `SYNC_ERROR`; any other status is refused with `409 TERMINAL_NOT_RETRYABLE`.
    /// The answer's body is not relied on: read the terminal again for its status.
    pub async fn sync_terminal(&self, terminal_id: &str) -> Result<(), ApiError> {
        let path = format!(
            "/terminals/{}/sync",
            id_segment("terminal id", terminal_id)?
        );
        self.call(self.management(Method::Post, &path)).await?;
        Ok(())
    }

    /// `POST {checkout}/v1/admin/terminals/operations`. The same `idempotency_key` sent again
    /// (after a timeout, say) gets the same operation instead of a second one.
    pub async fn start_operation(
        &self,
        terminal_id: &str,
        kind: OperationKind,
        idempotency_key: &str,
    ) -> Result<TerminalOperation, ApiError> {
        let mut call = self
            .checkout(Method::Post, "/v1/admin/terminals/operations".into(), &[])
            .with_json(&serde_json::json!({"terminal_id": terminal_id, "operation": kind}))?;
        call.idempotency_key = Some(idempotency_key.to_string());
        parse(&self.call(call).await?)
    }

    /// `GET {checkout}/v1/admin/terminals/operations?terminal_id=…`: newest first.
    pub async fn operations(&self, terminal_id: &str) -> Result<Vec<TerminalOperation>, ApiError> {
        let call = self.checkout(
            Method::Get,
            "/v1/admin/terminals/operations".into(),
            &[("terminal_id", terminal_id)],
        );
        parse_list(&self.call(call).await?, "operations")
    }
}

impl Gateway for Client {
    async fn create_session(
        &self,
        request: &SessionProfileRequest,
    ) -> Result<CreatedSession, ApiError> {
        let call = self
            .checkout(Method::Post, "/v1/sessions-profile".into(), &[])
            .with_json(request)?;
        parse(&self.call(call).await?)
    }

    async fn get_session(&self, id: &str) -> Result<Session, ApiError> {
        let path = format!("/v1/sessions/{}", id_segment("session id", id)?);
        parse(&self.call(self.checkout(Method::Get, path, &[])).await?)
    }

    async fn search_sessions(&self, text: &str) -> Result<Vec<Session>, ApiError> {
        let call = self.checkout(Method::Get, "/v1/sessions".into(), &[("search", text)]);
        parse_list(&self.call(call).await?, "sessions")
    }

    async fn get_transaction(&self, id: &str) -> Result<Transaction, ApiError> {
        let path = format!("/v1/transactions/{}", id_segment("transaction id", id)?);
        parse(&self.call(self.checkout(Method::Get, path, &[])).await?)
    }

    async fn list_transactions(
        &self,
        query: &TransactionQuery,
    ) -> Result<Vec<Transaction>, ApiError> {
        let limit = query.limit.map(|l| l.to_string());
        let pairs: Vec<(&str, &str)> = [
            ("merchant_reference", query.merchant_reference.as_deref()),
            ("terminal_id", query.terminal_id.as_deref()),
            ("limit", limit.as_deref()),
            ("starting_after", query.starting_after.as_deref()),
            ("created_at.gte", query.created_at_gte.as_deref()),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
        .collect();
        let call = self.checkout(Method::Get, "/v1/transactions".into(), &pairs);
        parse_list(&self.call(call).await?, "transactions")
    }

    async fn cancel_session(&self, id: &str) -> Result<(), ApiError> {
        let path = format!("/v1/sessions/{}/cancel", id_segment("session id", id)?);
        self.call(self.checkout(Method::Post, path, &[])).await?;
        Ok(())
    }

    async fn refund(
        &self,
        transaction_id: &str,
        request: &RefundRequest,
    ) -> Result<RefundOutcome, ApiError> {
        let path = format!(
            "/v1/transactions/{}/refund",
            id_segment("transaction id", transaction_id)?
        );
        let call = self.checkout(Method::Post, path, &[]).with_json(request)?;
        let answer = self.call(call).await?;
        if answer.status == 202 {
            Ok(RefundOutcome::Pending {
                event_request_id: answer.event_request_id,
            })
        } else {
            Ok(RefundOutcome::Done(Box::new(parse(&answer)?)))
        }
    }

    async fn terminal(&self, terminal_id: &str) -> Result<Terminal, ApiError> {
        let path = format!("/terminals/{}", id_segment("terminal id", terminal_id)?);
        let terminal: Terminal = parse(&self.call(self.management(Method::Get, &path)).await?)?;
        self.seen_mut().terminal = Some((terminal.status.clone(), std::time::Instant::now()));
        Ok(terminal)
    }

    async fn ensure_token(&self) -> Result<(), ApiError> {
        self.authorization(None).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn io_error(kind: io::ErrorKind) -> ureq::Error {
        ureq::Error::Io(io::Error::from(kind))
    }

    #[test]
    fn only_failures_before_sending_are_unreachable() {
        let unreachable = [
            ureq::Error::HostNotFound,
            ureq::Error::Timeout(ureq::Timeout::Connect),
            ureq::Error::Timeout(ureq::Timeout::Resolve),
            io_error(io::ErrorKind::ConnectionRefused),
            io_error(io::ErrorKind::NetworkUnreachable),
            ureq::Error::Io(io::Error::other(
                "failed to lookup address information: Name or service not known",
            )),
            ureq::Error::BadUri("no host".into()),
        ];
        for error in unreachable {
            let shown = error.to_string();
            assert!(
                matches!(transport_error(&error), ApiError::Unreachable { .. }),
                "{shown}"
            );
        }
        let unknown = [
            ureq::Error::Timeout(ureq::Timeout::Global),
            ureq::Error::Timeout(ureq::Timeout::RecvResponse),
            ureq::Error::Timeout(ureq::Timeout::RecvBody),
            io_error(io::ErrorKind::ConnectionReset),
            io_error(io::ErrorKind::UnexpectedEof),
            io_error(io::ErrorKind::BrokenPipe),
            io_error(io::ErrorKind::TimedOut),
            ureq::Error::BodyExceedsLimit(1),
        ];
        for error in unknown {
            let shown = error.to_string();
            assert!(
                matches!(transport_error(&error), ApiError::Unknown { .. }),
                "{shown}"
            );
        }
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert_eq!(
            id_segment("session id", "T123.AbC_9-~").unwrap(),
            "T123.AbC_9-~"
        );
        assert_eq!(
            id_segment("session id", "a/../b?x=1#f %æ").unwrap(),
            "a%2F..%2Fb%3Fx%3D1%23f%20%25%C3%A6"
        );
        for bad in ["", ".", ".."] {
            assert!(matches!(
                id_segment("session id", bad),
                Err(ApiError::Unreachable { .. })
            ));
        }
    }
}
