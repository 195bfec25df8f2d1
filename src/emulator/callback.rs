//! Callbacks: the emulator calls a session's `url.callback_url` as Dintero does.
//!
//! When a session was created with `url.callback_url`, the emulator calls that URL once the
//! payment is authorized, and (only when the URL carries `report_error=true`) when it fails or
//! is cancelled, with `error` = `authorization`, `cancelled` or `failed`. The call is a `GET`
//! with the query parameters `transaction_id` (when a transaction exists), `session_id`,
//! `merchant_reference` and `time` (RFC 3339) added to the URL's own; with `method=POST` in the
//! URL's query it is a `POST` whose JSON body is the transaction. With a signature secret
//! ([`super::EmulatorConfig::signature_secret`]) every call carries `Dintero-Signature`
//! ([`crate::dintero::signature`]), made with the system clock as a receiver checks it.
//!
//! Delivery is *at least once*, as Dintero promises: a `5xx`, a timeout (10 s) or a connection
//! error is retried, up to 20 attempts in all, after 1, 2, 4 … 64 s (scaled by the time scale);
//! any `4xx` is final. Fault rules with the route `"callback"` make it worse on purpose:
//! `callback_twice` delivers a callback twice, `callback_late` holds it back `delay_ms` (not
//! scaled). A receiver must therefore expect duplicates and stragglers and always re-read the
//! transaction.
//!
//! Sending happens in one background task, the courier, which wakes when a request may have
//! queued a callback and when the next payment step falls due; the books stay lazy.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until};

use super::faults::CallbackFault;
use super::server::Shared;
use super::terminal::scaled;
use super::ACCOUNT_ID;
use crate::dintero::signature;
use crate::secret::Secret;

/// Attempts per callback, the first included.
const MAX_ATTEMPTS: u32 = 20;
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// One callback to send: the URL with its query complete, and the body of a `POST`.
#[derive(Clone, Debug)]
pub struct CallbackJob {
    /// `GET` or `POST`.
    method: &'static str,
    /// The receiver's URL with Dintero's parameters appended.
    url: String,
    /// The transaction, for `method=POST`.
    body: Option<Value>,
    /// For the log line.
    session_id: String,
}

impl CallbackJob {
    /// Builds the call for an event of a session; `None` when `error` is set but the URL did
    /// not ask for errors with `report_error=true`, or the URL is not `http(s)`.
    pub fn new(
        callback_url: &str,
        session_id: &str,
        transaction_id: Option<&str>,
        merchant_reference: &str,
        error: Option<&str>,
        time: String,
    ) -> Option<CallbackJob> {
        if !(callback_url.starts_with("http://") || callback_url.starts_with("https://")) {
            return None;
        }
        let (base, query) = match callback_url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (callback_url, ""),
        };
        let asked = |key: &str, value: &str| {
            form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == key && v == value)
        };
        if error.is_some() && !asked("report_error", "true") {
            return None;
        }
        let method = if asked("method", "POST") {
            "POST"
        } else {
            "GET"
        };
        let mut added = form_urlencoded::Serializer::new(String::new());
        if let Some(tx) = transaction_id {
            added.append_pair("transaction_id", tx);
        }
        added.append_pair("session_id", session_id);
        added.append_pair("merchant_reference", merchant_reference);
        added.append_pair("time", &time);
        if let Some(error) = error {
            added.append_pair("error", error);
        }
        let added = added.finish();
        let url = if query.is_empty() {
            format!("{base}?{added}")
        } else {
            format!("{base}?{query}&{added}")
        };
        Some(CallbackJob {
            method,
            url,
            body: None,
            session_id: session_id.to_string(),
        })
    }

    /// Whether the call is a `POST` that carries the transaction.
    pub fn wants_body(&self) -> bool {
        self.method == "POST"
    }

    /// Sets the `POST` body.
    pub fn with_body(mut self, body: Value) -> CallbackJob {
        self.body = Some(body);
        self
    }
}

/// Sends every callback the books queue, until aborted (the server aborts it at shutdown, and
/// with it every delivery in flight).
pub async fn courier(shared: Arc<Shared>) {
    let mut deliveries = JoinSet::new();
    loop {
        let (jobs, next_due) = {
            let mut ledger = shared.ledger();
            (ledger.take_callbacks(), ledger.next_due())
        };
        for job in jobs {
            let fault = shared.callback_fault();
            deliveries.spawn(deliver(
                job,
                fault,
                shared.signature_secret.clone(),
                shared.time_scale,
            ));
        }
        let due = async {
            match next_due {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = due => {}
            () = shared.courier_wake.notified() => {}
            Some(_) = deliveries.join_next(), if !deliveries.is_empty() => {}
        }
    }
}

/// Delivers one callback under its fault, if any.
async fn deliver(
    job: CallbackJob,
    fault: Option<CallbackFault>,
    secret: Option<Secret>,
    time_scale: f64,
) {
    let copies = match fault {
        Some(CallbackFault::Twice) => {
            tracing::info!(session = %job.session_id, "fault: delivering the callback twice");
            2
        }
        Some(CallbackFault::Late(delay)) => {
            tracing::info!(session = %job.session_id, ?delay, "fault: delivering the callback late");
            sleep(delay).await;
            1
        }
        None => 1,
    };
    for _ in 0..copies {
        send_until_done(&job, secret.as_ref(), time_scale).await;
    }
}

/// What one attempt came to.
enum Attempt {
    /// `2xx`/`3xx`, or a `4xx` (final: the receiver refused it for good).
    Done(u16),
    /// `5xx`, timeout or connection error: try again.
    Retry(String),
}

async fn send_until_done(job: &CallbackJob, secret: Option<&Secret>, time_scale: f64) {
    for attempt in 0..MAX_ATTEMPTS {
        let job_copy = job.clone();
        let secret = secret.cloned();
        let result = tokio::task::spawn_blocking(move || send_once(&job_copy, secret.as_ref()))
            .await
            .unwrap_or_else(|e| Attempt::Retry(format!("the sending task failed: {e}")));
        match result {
            Attempt::Done(status) => {
                tracing::info!(session = %job.session_id, method = job.method, status, attempt, "callback delivered");
                return;
            }
            Attempt::Retry(why) => {
                tracing::info!(session = %job.session_id, attempt, %why, "callback not delivered; retrying");
                let wait = f64::from(1u32 << attempt.min(6));
                sleep(scaled(wait, time_scale)).await;
            }
        }
    }
    tracing::warn!(session = %job.session_id, "callback given up after {MAX_ATTEMPTS} attempts");
}

fn send_once(job: &CallbackJob, secret: Option<&Secret>) -> Attempt {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(ATTEMPT_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let signature = secret.map(|secret| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        signature::sign(secret, now, ACCOUNT_ID, job.method, &job.url)
    });
    let result = if job.method == "POST" {
        let mut request = agent.post(&job.url);
        if let Some(sig) = &signature {
            request = request.header("Dintero-Signature", sig);
        }
        match &job.body {
            Some(body) => request.send_json(body),
            None => request.send_empty(),
        }
    } else {
        let mut request = agent.get(&job.url);
        if let Some(sig) = &signature {
            request = request.header("Dintero-Signature", sig);
        }
        request.call()
    };
    classify(result)
}

fn classify(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Attempt {
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            if status >= 500 {
                Attempt::Retry(format!("the receiver answered {status}"))
            } else {
                Attempt::Done(status)
            }
        }
        Err(e) => Attempt::Retry(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_gets_dinteros_parameters_after_its_own() {
        let job = CallbackJob::new(
            "https://shop.example/cb?kiosk=7",
            "T1.s",
            Some("T1.t"),
            "k-1 2",
            None,
            "2026-01-01T00:00:00Z".into(),
        )
        .unwrap();
        assert_eq!(job.method, "GET");
        assert_eq!(
            job.url,
            "https://shop.example/cb?kiosk=7&transaction_id=T1.t&session_id=T1.s&\
             merchant_reference=k-1+2&time=2026-01-01T00%3A00%3A00Z"
        );
    }

    #[test]
    fn errors_only_with_report_error_and_post_only_when_asked() {
        let new = |url: &str, error| CallbackJob::new(url, "s", None, "r", error, "t".into());
        assert!(new("http://h/cb", Some("cancelled")).is_none());
        let job = new(
            "http://h/cb?report_error=true&method=POST",
            Some("cancelled"),
        )
        .unwrap();
        assert!(job.wants_body());
        assert!(job.url.ends_with("&error=cancelled"), "{}", job.url);
        assert!(new("ftp://h/cb", None).is_none());
    }
}
