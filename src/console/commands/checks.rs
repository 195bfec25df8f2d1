//! `test network` and `test terminal`.
//!
//! `test network`: the way from this kiosk to Dintero, step by step, each step's result and time
//! printed as it is done. It runs in the console itself from the config file (the one
//! `console --config` names), so it works when the daemon is stopped or cannot start — which is
//! when a technician needs it most.
//!
//! | step | what it proves |
//! |------|----------------|
//! | `dns` | the API's host name resolves (for each of `dintero.api_url` and `dintero.checkout_url` when their hosts differ) |
//! | `tcp` | a connection opens to the first address |
//! | `tls` | the TLS handshake completes and the server's certificate is trusted (`not used (http)` on a loopback emulator) |
//! | `token` | the client id and secret get an access token (`POST …/auth/token`), with the same client the daemon uses |
//! | `api` | a round trip with that token: the kiosk's terminal (`GET …/terminals/{id}`) |
//! | `checkout` | a round trip to the checkout API: the terminal's newest transaction (`GET /v1/transactions`) |
//!
//! The first step that fails ends the test and is named in the answer with what to check. The
//! secret and the token are never printed: the token step says only whether one came.
//!
//! `test terminal`: the terminal's status from Dintero (through the daemon, like
//! `terminal status`); then, for role `refund` and after a typed confirmation, a test payment
//! of [`TEST_AMOUNT`] minor units that the daemon runs as a cart from the console (the console
//! never drives a payment). The daemon takes it only with maintenance in force, so no customer
//! pays beside it; the technician presents a card and sees the outcome here. An approved test
//! payment is then refunded through the daemon's refund desk exactly as `refund REF` does
//! (journaled before the call, after its own confirmation), so commissioning leaves no money
//! taken; a technician who declines that question refunds it later with `refund REF`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::Config;
use crate::console::audit::Outcome;
use crate::console::command::{Answer, Job};
use crate::console::technicians::Action;
use crate::dintero::client::{Client, ClientConfig};
use crate::dintero::{Gateway, TransactionQuery};

/// `test network`, run by the `test` command ([`super::hardware`] owns the name): `words` are
/// all its words, `network` first.
pub async fn run_network(job: Job, words: Vec<String>) -> Answer {
    match words.as_slice() {
        [_] => network(&job).await,
        _ => Answer::refused("usage: test network (help test shows an example)"),
    }
}

/// `test terminal`, run by the `test` command like [`run_network`].
pub async fn run_terminal(job: Job, words: Vec<String>) -> Answer {
    match words.as_slice() {
        [_] => terminal(&job).await,
        _ => Answer::refused("usage: test terminal (help test shows an example)"),
    }
}

/// One step's result, as printed and as put in the JSON answer.
struct Step {
    name: &'static str,
    /// `None`: skipped (TLS on `http://`).
    ok: Option<bool>,
    ms: Option<u64>,
    detail: String,
}

impl Step {
    fn line(&self) -> String {
        let result = match self.ok {
            Some(true) => "OK",
            Some(false) => "FAIL",
            None => "-",
        };
        let ms = self
            .ms
            .map(|ms| format!("{ms:>5} ms"))
            .unwrap_or_else(|| "       -".into());
        format!("{:<9}{result:<5}{ms}  {}", self.name, self.detail)
    }

    fn json(&self) -> Value {
        json!({"step": self.name, "ok": self.ok, "ms": self.ms, "detail": self.detail})
    }
}

/// Runs the steps in order, printing each; stops at the first failure.
struct Run<'a> {
    job: &'a Job,
    steps: Vec<Step>,
}

impl Run<'_> {
    async fn record(&mut self, step: Step) {
        self.job.print(step.line()).await;
        self.steps.push(step);
    }

    /// Times `work` and records its result as step `name`, described by `described` when it
    /// succeeded; `None` when it failed.
    async fn timed<T, E: std::fmt::Display>(
        &mut self,
        name: &'static str,
        work: impl std::future::Future<Output = Result<T, E>>,
        described: impl FnOnce(&T) -> String,
    ) -> Option<T> {
        let started = Instant::now();
        let result = work.await;
        let ms = Some(elapsed_ms(started));
        let (ok, detail, value) = match result {
            Ok(value) => (true, described(&value), Some(value)),
            Err(e) => (false, e.to_string(), None),
        };
        self.record(Step {
            name,
            ok: Some(ok),
            ms,
            detail,
        })
        .await;
        value
    }

    fn answer(self, failure: Option<String>) -> Answer {
        let steps: Vec<Value> = self.steps.iter().map(Step::json).collect();
        match failure {
            None => Answer::ok(
                "network OK: every step passed",
                json!({"ok": true, "steps": steps}),
            ),
            Some(why) => {
                let mut answer = Answer::failed(why.clone());
                answer.json = json!({"ok": false, "error": why, "steps": steps});
                answer
            }
        }
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Where a base URL points.
struct Endpoint {
    /// `api` or `checkout`: the config key it comes from, for the failure message.
    key: &'static str,
    host: String,
    port: u16,
    tls: bool,
}

impl Endpoint {
    fn parse(key: &'static str, url: &str) -> Result<Endpoint, String> {
        let uri: ureq::http::Uri = url
            .parse()
            .map_err(|e| format!("dintero.{key}_url {url:?} is not a URL: {e}"))?;
        let tls = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| format!("dintero.{key}_url {url:?} has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Endpoint {
            key,
            host,
            port,
            tls,
        })
    }
}

async fn network(job: &Job) -> Answer {
    let path = job.paths.config.clone();
    let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
    let config = match loaded {
        Ok(Ok(config)) => config,
        Ok(Err(e)) => {
            return Answer::failed(format!(
                "test network needs the config file {}: {e}",
                job.paths.config.display()
            ))
        }
        Err(e) => return Answer::failed(format!("reading the config stopped: {e}")),
    };
    let d = &config.dintero;
    let mut run = Run {
        job,
        steps: Vec::new(),
    };
    let mut endpoints = Vec::new();
    for (key, url) in [
        ("api", d.api_url.as_str()),
        ("checkout", d.checkout_url.as_str()),
    ] {
        match Endpoint::parse(key, url) {
            Ok(e) => endpoints.push(e),
            Err(why) => return run.answer(Some(why)),
        }
    }
    if endpoints[0].host == endpoints[1].host && endpoints[0].port == endpoints[1].port {
        endpoints.truncate(1);
    }
    for endpoint in &endpoints {
        if let Err(why) = reach(&mut run, endpoint, d.connect_timeout).await {
            return run.answer(Some(why));
        }
    }

    let client = match ClientConfig::from_config(d) {
        Ok(c) => Client::new(c),
        Err(e) => return run.answer(Some(e.to_string())),
    };
    let token = run
        .timed("token", client.ensure_token(), |_| {
            format!("an access token for {} ({})", d.client_id, d.account_id)
        })
        .await;
    if token.is_none() {
        return run.answer(Some(
            "the token step failed: check dintero.client_id, the client secret file and dintero.account_id (credentials set)".into(),
        ));
    }
    let terminal_id = config.store.terminal_id.as_str().to_string();
    let terminal = run
        .timed("api", client.terminal(&terminal_id), |t| {
            format!("GET terminal {}: {}", t.terminal_id, t.status.as_str())
        })
        .await;
    if terminal.is_none() {
        return run.answer(Some(format!(
            "the api round trip failed: the token works but terminal {terminal_id} could not be read; check store.terminal_id"
        )));
    }
    let query = TransactionQuery {
        terminal_id: Some(terminal_id),
        limit: Some(1),
        ..TransactionQuery::default()
    };
    let listed = run
        .timed("checkout", client.list_transactions(&query), |list| {
            format!("GET /v1/transactions: {} listed", list.len())
        })
        .await;
    if listed.is_none() {
        return run.answer(Some(
            "the checkout round trip failed: check dintero.checkout_url and the API client's scopes".into(),
        ));
    }
    run.answer(None)
}

/// DNS, TCP and TLS to one endpoint; the error names the failing step and what to check.
async fn reach(run: &mut Run<'_>, endpoint: &Endpoint, timeout: Duration) -> Result<(), String> {
    let Endpoint {
        key,
        host,
        port,
        tls,
    } = endpoint;
    let lookup = async {
        match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), *port))).await {
            Err(_) => Err(format!(
                "{host}: no answer within {} ms",
                timeout.as_millis()
            )),
            Ok(Err(e)) => Err(format!("{host}: {e}")),
            Ok(Ok(addrs)) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() {
                    Err(format!("{host}: no address"))
                } else {
                    Ok(addrs)
                }
            }
        }
    };
    let addrs = run
        .timed("dns", lookup, |addrs: &Vec<SocketAddr>| {
            let more = match addrs.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            format!("{host} is {}{more}", addrs[0].ip())
        })
        .await
        .ok_or_else(|| {
            format!("the dns step for dintero.{key}_url failed: check the network's DNS server and the host name")
        })?;
    let addr = addrs[0];
    let connect = async {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Err(_) => Err(format!(
                "{addr}: no answer within {} ms",
                timeout.as_millis()
            )),
            Ok(Err(e)) => Err(format!("{addr}: {e}")),
            Ok(Ok(stream)) => Ok(stream),
        }
    };
    let stream = run
        .timed("tcp", connect, |_| format!("connected to {addr}"))
        .await
        .ok_or_else(|| {
            format!("the tcp step to dintero.{key}_url ({addr}) failed: check dintero.{key}_url, the firewall and the route to the internet")
        })?;
    if !tls {
        run.record(Step {
            name: "tls",
            ok: None,
            ms: None,
            detail: "not used (http)".into(),
        })
        .await;
        return Ok(());
    }
    let handshake = handshake(stream, host.clone(), timeout);
    run.timed("tls", handshake, |version: &String| {
        format!("{version}, certificate of {host} trusted")
    })
    .await
    .map(drop)
    .ok_or_else(|| {
        format!("the tls step with {host} failed: check the kiosk's clock (certificates need it) and whether a proxy intercepts TLS")
    })
}

/// A TLS handshake on `stream`, verified against the web's root certificates (the ones the API
/// client trusts); the protocol version agreed.
async fn handshake(
    stream: tokio::net::TcpStream,
    host: String,
    timeout: Duration,
) -> Result<String, String> {
    let stream = stream.into_std().map_err(|e| e.to_string())?;
    let work = tokio::task::spawn_blocking(move || -> Result<String, String> {
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let mut connection =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let mut stream = stream;
        while connection.is_handshaking() {
            connection
                .complete_io(&mut stream)
                .map_err(|e| e.to_string())?;
        }
        Ok(connection
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_else(|| "TLS".into()))
    });
    work.await.map_err(|e| e.to_string())?
}

/// The test payment's amount in minor units: 1.00. The emulator approves any amount that does
/// not end in 51–59, so 1.00 is approved there; on a real terminal it is the smallest amount
/// that looks like a real purchase to the acquirer.
pub const TEST_AMOUNT: u64 = 100;

/// `test terminal`: the terminal's status, then (role refund, confirmed) a test payment.
pub async fn terminal(job: &Job) -> Answer {
    let mut daemon = match job.daemon().await {
        Ok(client) => client,
        Err(e) => return Answer::failed(e.to_string()),
    };
    let report = match daemon.terminal().await {
        Ok(report) => report,
        Err(e) => return Answer::failed(e.to_string()),
    };
    job.print(super::terminal::report_text(&report)).await;
    let status = report.terminal.terminal.status.as_str().to_string();
    if report.terminal.terminal.status != crate::dintero::TerminalStatus::Active {
        return Answer::failed(format!(
            "the terminal is {status}, not ACTIVE: it takes no payments (terminal sync retries one in ERROR)"
        ));
    }
    if !job.may(Action::Refund) {
        return Answer::ok(
            "terminal ACTIVE; a test payment needs role refund (its refund does), so none was made",
            json!({"ok": true, "terminal": report, "payment": null}),
        );
    }
    // The prompt and the answer share one 80-column line: the question says only what is
    // charged; the line before it says where.
    job.print(format!(
        "A test payment charges a real card on {} (maintenance must be on).",
        report.terminal.terminal.terminal_id
    ))
    .await;
    let question = format!(
        "Pay {}.{:02} as a test?",
        TEST_AMOUNT / 100,
        TEST_AMOUNT % 100
    );
    if !job.confirm(&question).await {
        return Answer::refused("no test payment made: not confirmed");
    }
    let mut events = match job.daemon().await {
        Ok(client) => match client.subscribe().await {
            Ok(events) => events,
            Err(e) => return Answer::failed(e.to_string()),
        },
        Err(e) => return Answer::failed(e.to_string()),
    };
    if let Err(e) = daemon
        .test_payment(TEST_AMOUNT, job.login.id.as_str())
        .await
    {
        return Answer::failed(e.to_string());
    }
    job.print("test payment asked for; present a card on the terminal (^C stops waiting)")
        .await;
    let mut ours: Option<String> = None;
    loop {
        let event = tokio::select! {
            _ = job.cancelled() => {
                return Answer::ok(
                    match &ours {
                        Some(reference) => format!("stopped waiting; payment {reference} goes on: payment {reference} shows how it ends"),
                        None => "stopped waiting before the payment started; payments shows it if it does".into(),
                    },
                    json!({"ok": true, "payment": ours, "waiting": "stopped"}),
                );
            }
            event = events.next() => event,
        };
        let Some(event) = event else {
            return Answer::failed(
                "the daemon closed the connection; status shows whether it is running",
            );
        };
        use crate::control::protocol::Event;
        match event {
            Event::State { state } if ours.is_none() && state == "refused" => {
                return Answer::failed(
                    "the kiosk refused the test payment (card payment unavailable now?); status shows why",
                );
            }
            Event::PaymentStarted {
                reference,
                amount,
                currency,
            } if ours.is_none() => {
                job.print(format!(
                    "payment {reference} started: {}",
                    super::money(amount, &currency)
                ))
                .await;
                ours = Some(reference);
            }
            Event::PaymentFinished {
                reference,
                outcome,
                detail,
                amount,
                currency,
            } if ours.as_deref() == Some(reference.as_str()) => {
                let text = format!(
                    "test payment {reference} of {}: {detail}",
                    super::money(amount, &currency)
                );
                let json = json!({"ok": outcome == "approved", "terminal": report, "payment": {
                    "reference": reference, "outcome": outcome, "detail": detail,
                    "amount": amount, "currency": currency}});
                return if outcome == "approved" {
                    job.print(format!("{text}\nThe test payment is refunded now, on the same terminal, as refund {reference} would."))
                        .await;
                    let refund = super::refunds::refund(job, &reference, None).await;
                    let mut json = json;
                    json["refund"] = refund.json;
                    match refund.outcome {
                        // Declined (or nothing refundable): the test itself passed; the money
                        // is the technician's to give back, and the answer says how.
                        Outcome::Refused(why) => Answer::ok(
                            format!("test payment {reference} approved and NOT refunded ({why}): refund {reference} gives it back"),
                            json,
                        ),
                        outcome => Answer {
                            text: refund.text,
                            json,
                            outcome,
                        },
                    }
                } else {
                    let mut answer = Answer::failed(format!(
                        "{text}; the terminal works if it showed the card step: check its own screen"
                    ));
                    answer.json = json;
                    answer
                };
            }
            _ => {}
        }
    }
}
