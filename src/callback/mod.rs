//! The signed-callback fast path: a small HTTP listener that Dintero calls when a payment
//! changes, so that the flow reads it at once instead of at its next poll.
//!
//! With `[callback]` in the config, every session the kiosk creates carries
//! `url.callback_url = <public_url>?report_error=true`, and Dintero calls that URL when the
//! payment is authorized, fails or is cancelled (see `/work/shared/dintero/README.md`,
//! "Callbacks"). Polling stays the primary path: a kiosk behind NAT never hears a callback, and
//! a lost one costs only the wait until the next poll.
//!
//! **A callback's content is never trusted.** The signature covers only the URL, so a verified
//! callback says "Dintero called at time `t` about this session", never "this payment is paid".
//! The listener hands the flow a [`CallbackNudge`] with the ids from the query and nothing
//! else; the flow re-reads the payment from Dintero and acts on what it reads. A body (Dintero
//! sends the transaction with `method=POST`) is read and thrown away.
//!
//! **Safe to expose.** It is meant to sit behind a TLS proxy on the open internet, so it is
//! small and bounded: HTTP/1.1 request heads only (parsed by `httparse`), at most 8 KiB of head
//! and 64 KiB of body, 5 s to send them, 16 connections at a time, one request per connection
//! (`Connection: close`), `GET` and `POST` only, and a token bucket of 10 requests a second
//! (burst 20) across all clients, so that a flood cannot make the kiosk spend its CPU on
//! HMACs. A request is answered:
//!
//! | answer | when |
//! |---|---|
//! | `200` | a valid `Dintero-Signature` over `public_url`'s host and path with the request's query, at most 5 minutes from the kiosk's clock: the flow is nudged; a signature seen before answers `200` too (Dintero delivers at least once) but nudges nothing |
//! | `401` | no signature, a malformed, forged or stale one (a clock off by more than 5 minutes: check NTP) |
//! | `400`, `405`, `408`, `413`, `431` | not HTTP, another method, too slow, body or head too large |
//! | `429` | over the rate limit; Dintero does not retry a `4xx`, and the kiosk's poll still finds the payment |
//! | `503` | all 16 connections busy; Dintero retries a `5xx` |
//!
//! The signature is checked against `public_url`, not against the `Host` the request names:
//! Dintero signed the URL the merchant registered, and a proxy in between may rewrite host and
//! path, but never the query. Refusals are logged at warn (peer and reason, never the header
//! or the secret), at most one line every 10 s with a count of those not logged, and counted
//! in [`CallbackCounts`] for the metrics file.

mod config;
mod guard;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout_at, Instant};
use tracing::{debug, info, warn};

pub use self::config::{CallbackConfig, PublicUrl};
use self::guard::{Bucket, Replays, Warnings};
use crate::dintero::signature::{self, SignatureError};
use crate::messages::CallbackNudge;
use crate::secret::Secret;

/// What the listener tolerates; the defaults are [`LIMITS`].
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Largest request head (request line and headers).
    max_head: usize,
    /// Most body bytes read (and thrown away) after the head.
    max_body: u64,
    /// From accepting a connection to having its whole head; also bounds the answer.
    read_timeout: Duration,
    /// Connections served at once; one more is answered `503` and closed.
    max_connections: usize,
    /// Requests a second the token bucket refills with.
    rate_per_s: f64,
    /// Requests the bucket holds.
    burst: f64,
    /// How far a signature's timestamp may be from the kiosk's clock, either way.
    tolerance: Duration,
}

/// A callback is a request of a few hundred bytes; Dintero sends one per payment event and
/// retries after seconds, so these bounds never refuse it but keep a flood cheap.
const LIMITS: Limits = Limits {
    max_head: 8 * 1024,
    max_body: 64 * 1024,
    read_timeout: Duration::from_secs(5),
    max_connections: 16,
    rate_per_s: 10.0,
    burst: 20.0,
    // Dintero's own recommendation.
    tolerance: Duration::from_secs(300),
};

/// Headers kept from a request head; a callback has fewer than ten.
const MAX_HEADERS: usize = 32;

/// Counters of the callbacks the listener answered, for the metrics file.
#[derive(Debug, Default)]
pub struct CallbackCounts {
    /// Verified callbacks that nudged the flow.
    pub verified: AtomicU64,
    /// Requests that nudged nothing: refused (unsigned, forged, stale, malformed, too large,
    /// too slow, over the rate limit, busy) or a replay of a callback already taken.
    pub rejected: AtomicU64,
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The socket could not be bound.
    #[error("cannot listen for Dintero callbacks on callback.bind = {addr}: {error}; {advice}")]
    Bind {
        /// The address from `callback.bind`.
        addr: SocketAddr,
        /// The OS error.
        error: std::io::Error,
        /// What to change.
        advice: &'static str,
    },
    /// The config was parsed but its secret was never read.
    #[error("callback.signature_secret_file {path}: the secret has not been read; load the config with Config::load")]
    NoSecret {
        /// The file.
        path: PathBuf,
    },
}

/// A bound callback listener; [`Listener::run`] serves it.
pub struct Listener {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Listener {
    /// Binds `config.bind` now, so that a port in use is a start-up error and not a silent
    /// loss of callbacks. Verified callbacks are signed for `account_id`; their nudges go to
    /// `nudges` (dropped when the flow has not taken the previous ones: it polls anyway).
    /// Must be called inside a tokio runtime.
    pub fn bind(
        config: &CallbackConfig,
        account_id: &str,
        nudges: mpsc::Sender<CallbackNudge>,
        counts: Arc<CallbackCounts>,
    ) -> Result<Listener, CallbackError> {
        Listener::bind_with(config, account_id, nudges, counts, LIMITS)
    }

    fn bind_with(
        config: &CallbackConfig,
        account_id: &str,
        nudges: mpsc::Sender<CallbackNudge>,
        counts: Arc<CallbackCounts>,
        limits: Limits,
    ) -> Result<Listener, CallbackError> {
        let secret = config
            .signature_secret
            .clone()
            .ok_or_else(|| CallbackError::NoSecret {
                path: config.signature_secret_file.clone(),
            })?;
        let addr = config.bind;
        let bind_error = |error: std::io::Error| CallbackError::Bind {
            addr,
            advice: advice(&error),
            error,
        };
        let std_listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        std_listener.set_nonblocking(true).map_err(bind_error)?;
        let listener = TcpListener::from_std(std_listener).map_err(bind_error)?;
        Ok(Listener {
            listener,
            shared: Arc::new(Shared {
                secret,
                account_id: account_id.to_string(),
                public_url: config.public_url.clone(),
                limits,
                bucket: Mutex::new(Bucket::new(limits.rate_per_s, limits.burst, Instant::now())),
                replays: Mutex::new(Replays::default()),
                warnings: Mutex::new(Warnings::default()),
                nudges,
                counts,
            }),
        })
    }

    /// The address it listens on (the port the OS chose for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves callbacks until `shutdown` completes, then drops every open connection.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut connections = JoinSet::new();
        let addr = self
            .local_addr()
            .map_or_else(|e| e.to_string(), |a| a.to_string());
        info!(%addr, public_url = %self.shared.public_url, "listening for signed Dintero callbacks");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) if connections.len() < self.shared.limits.max_connections => {
                        connections.spawn(serve(self.shared.clone(), stream, peer));
                    }
                    Ok((stream, peer)) => {
                        // Answered without reading: a slot is what is missing. The write goes
                        // to the socket's buffer or nowhere; it never waits.
                        self.shared.refused(peer, Status::Busy, "all connections busy");
                        let _ = stream.try_write(&response(Status::Busy));
                    }
                    Err(e) => {
                        // Out of file descriptors, usually: accepting again at once would spin.
                        self.shared.warn_limited(|not_logged| warn!(error = %e, not_logged, "cannot accept a callback connection"));
                        sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        connections.shutdown().await;
    }
}

/// What to change when `callback.bind` cannot be bound.
fn advice(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "another process listens on that port: stop it, or set another port in callback.bind (and in the proxy in front)"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges kioskpay does not have: bind a port above 1024 and let the TLS proxy listen on 443"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "that address is not one of this kiosk's: use 0.0.0.0 (all interfaces) or an address the kiosk has"
        }
        _ => "fix callback.bind, or remove [callback] to run on polling alone",
    }
}

/// The state every connection shares.
struct Shared {
    secret: Secret,
    account_id: String,
    public_url: PublicUrl,
    limits: Limits,
    bucket: Mutex<Bucket>,
    replays: Mutex<Replays>,
    warnings: Mutex<Warnings>,
    nudges: mpsc::Sender<CallbackNudge>,
    counts: Arc<CallbackCounts>,
}

/// The answers the listener gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Ok,
    BadRequest,
    Unauthorized,
    MethodNotAllowed,
    Timeout,
    TooLarge,
    TooManyRequests,
    HeadTooLarge,
    Busy,
}

impl Status {
    fn line(self) -> &'static str {
        match self {
            Status::Ok => "200 OK",
            Status::BadRequest => "400 Bad Request",
            Status::Unauthorized => "401 Unauthorized",
            Status::MethodNotAllowed => "405 Method Not Allowed\r\nAllow: GET, POST",
            Status::Timeout => "408 Request Timeout",
            Status::TooLarge => "413 Content Too Large",
            Status::TooManyRequests => "429 Too Many Requests\r\nRetry-After: 1",
            Status::HeadTooLarge => "431 Request Header Fields Too Large",
            Status::Busy => "503 Service Unavailable\r\nRetry-After: 1",
        }
    }
}

fn response(status: Status) -> Vec<u8> {
    format!(
        "HTTP/1.1 {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        status.line()
    )
    .into_bytes()
}

/// The parts of a request head the listener looks at.
#[derive(Debug)]
struct Head {
    method: String,
    target: String,
    signature: Option<Vec<u8>>,
    content_length: Option<Vec<u8>>,
}

/// How reading a request head ended.
#[derive(Debug)]
enum Read {
    Head(Head),
    /// The peer closed the connection before sending a byte (a port probe).
    Nothing,
    Refused(Status, &'static str),
}

/// What a request came to.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Verified and new: the flow is told.
    Nudge(CallbackNudge),
    /// Verified, but seen before.
    Replay,
    Refused(Status, String),
}

/// Serves one connection: one request, one answer, then close.
async fn serve(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr) {
    let deadline = Instant::now() + shared.limits.read_timeout;
    let read = timeout_at(deadline, read_head(&mut stream, shared.limits.max_head))
        .await
        .unwrap_or(Ok(Read::Refused(
            Status::Timeout,
            "no complete request head in time",
        )));
    let verdict = match read {
        Ok(Read::Head(head)) => shared.judge(&head, unix_now(), Instant::now()),
        Ok(Read::Nothing) => return,
        Ok(Read::Refused(status, why)) => Verdict::Refused(status, why.to_string()),
        Err(e) => {
            debug!(%peer, error = %e, "callback connection failed before its request was read");
            return;
        }
    };
    let status = shared.settle(verdict, peer);
    // A body is read and thrown away after the answer, so that closing does not reset a
    // connection whose peer is still sending (it would lose the answer); bounded like the head.
    let max_body = shared.limits.max_body;
    let _ = timeout_at(deadline + shared.limits.read_timeout, async {
        stream.write_all(&response(status)).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0u64;
        while drained <= max_body {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n as u64,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Reads until a complete request head, the head limit, or the peer's end.
async fn read_head(stream: &mut TcpStream, max_head: usize) -> std::io::Result<Read> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if buf.is_empty() {
                Read::Nothing
            } else {
                Read::Refused(Status::BadRequest, "the connection ended inside the head")
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let find = |name: &str| {
                    request
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| h.value.to_vec())
                };
                return Ok(Read::Head(Head {
                    method: request.method.unwrap_or_default().to_string(),
                    target: request.path.unwrap_or_default().to_string(),
                    signature: find("Dintero-Signature"),
                    content_length: find("Content-Length"),
                }));
            }
            Ok(httparse::Status::Partial) if buf.len() < max_head => {}
            Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
                return Ok(Read::Refused(
                    Status::HeadTooLarge,
                    "request head over the limit",
                ))
            }
            Err(_) => return Ok(Read::Refused(Status::BadRequest, "not an HTTP/1.x request")),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Shared {
    /// Judges a request head: cheap checks first, the HMAC only for what the bucket admits.
    fn judge(&self, head: &Head, now_unix: u64, now: Instant) -> Verdict {
        let refuse = |status, why: &str| Verdict::Refused(status, why.to_string());
        if head.method != "GET" && head.method != "POST" {
            return refuse(Status::MethodNotAllowed, "a method other than GET or POST");
        }
        if let Some(length) = &head.content_length {
            let length = std::str::from_utf8(length)
                .ok()
                .and_then(|l| l.trim().parse::<u64>().ok());
            match length {
                None => return refuse(Status::BadRequest, "Content-Length is not a number"),
                Some(l) if l > self.limits.max_body => {
                    return refuse(Status::TooLarge, "a body over the limit")
                }
                Some(_) => {}
            }
        }
        if !lock(&self.bucket).take(now) {
            return refuse(Status::TooManyRequests, "over the rate limit");
        }
        let Some(header) = head
            .signature
            .as_deref()
            .and_then(|h| std::str::from_utf8(h).ok())
        else {
            return refuse(Status::Unauthorized, "no Dintero-Signature header");
        };
        let query = head.target.split_once('?').map_or("", |(_, query)| query);
        let url = self.public_url.with_query(query);
        let verified = signature::verify(
            &self.secret,
            header,
            &self.account_id,
            &head.method,
            &url,
            now_unix,
            self.limits.tolerance,
        );
        let timestamp = match verified {
            Ok(timestamp) => timestamp,
            Err(e @ SignatureError::Stale { .. }) => {
                return Verdict::Refused(Status::Unauthorized, e.to_string())
            }
            Err(SignatureError::Malformed(why)) => {
                return Verdict::Refused(
                    Status::Unauthorized,
                    format!("malformed Dintero-Signature ({why})"),
                )
            }
            Err(SignatureError::Mismatch) => {
                return refuse(
                    Status::Unauthorized,
                    "Dintero-Signature does not match (forged, or the wrong secret, account or public_url)",
                )
            }
        };
        // A replay is the same signed text again, however its header is dressed up (extra
        // signatures, another order of the query): the key is the payload, not the header.
        let payload = signature::signed_payload(timestamp, &self.account_id, &head.method, &url);
        let key: [u8; 32] = Sha256::digest(payload.as_bytes()).into();
        let tolerance_s = self.limits.tolerance.as_secs();
        if !lock(&self.replays).first_time(key, timestamp, now_unix, tolerance_s) {
            return Verdict::Replay;
        }
        let mut nudge = CallbackNudge::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "session_id" if nudge.session_id.is_none() => {
                    nudge.session_id = Some(value.into_owned())
                }
                "transaction_id" if nudge.transaction_id.is_none() => {
                    nudge.transaction_id = Some(value.into_owned())
                }
                _ => {}
            }
        }
        Verdict::Nudge(nudge)
    }

    /// Acts on a verdict (nudge, count, log) and says what to answer.
    fn settle(&self, verdict: Verdict, peer: SocketAddr) -> Status {
        match verdict {
            Verdict::Nudge(nudge) => {
                self.counts.verified.fetch_add(1, Ordering::Relaxed);
                info!(
                    session_id = nudge.session_id.as_deref().unwrap_or("-"),
                    transaction_id = nudge.transaction_id.as_deref().unwrap_or("-"),
                    "signed callback; the payment is read again now"
                );
                if let Err(e) = self.nudges.try_send(nudge) {
                    // The flow has nudges it has not taken yet, or is gone: its poll covers it.
                    debug!(error = %e, "callback nudge not passed on");
                }
                Status::Ok
            }
            Verdict::Replay => {
                self.counts.rejected.fetch_add(1, Ordering::Relaxed);
                debug!(%peer, "a callback seen before (Dintero delivers at least once); answered, nothing done");
                Status::Ok
            }
            Verdict::Refused(status, why) => {
                self.refused(peer, status, &why);
                status
            }
        }
    }

    fn refused(&self, peer: SocketAddr, status: Status, why: &str) {
        self.counts.rejected.fetch_add(1, Ordering::Relaxed);
        let code = status.line().get(..3).unwrap_or_default();
        self.warn_limited(|not_logged| {
            warn!(%peer, status = code, reason = why, not_logged, "callback refused");
        });
    }

    /// Logs through `log` unless a warning went out in the last 10 s; `log` gets how many
    /// were not logged since the last one.
    fn warn_limited(&self, log: impl FnOnce(u64)) {
        let due = lock(&self.warnings).due(Instant::now());
        if let Some(not_logged) = due {
            log(not_logged);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
