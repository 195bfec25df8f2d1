//! The real Dintero client against a scripted HTTP server on loopback.
//!
//! The server records every request (method, raw path, raw query, headers, body) and answers
//! each route from a script: canned JSON, raw answers with headers, a fresh access token, closing
//! the connection without a word, or answering only after a long delay. The last reply of a
//! route repeats, so a script of one reply answers every call.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use kioskpay::dintero::client::{Client, ClientConfig};
use kioskpay::dintero::{
    ApiError, Gateway, Order, OrderItem, RefundOutcome, RefundRequest, SessionProfileRequest,
    SessionUrl, Store, TerminalStatus, TransactionQuery, TransactionStatus,
};
use kioskpay::secret::Secret;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const ACCOUNT: &str = "T12345678";
const CLIENT_ID: &str = "kiosk-demo";
const SECRET: &str = "demo-secret";
const TOKEN_PATH: &str = "/v1/accounts/T12345678/auth/token";

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: String,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Clone, Debug)]
enum Reply {
    Json(u16, Value),
    Raw {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// `200` with access token `tok-<n>`, n counting token requests from 1.
    Token {
        expires_in: u64,
    },
    /// Close the connection without answering.
    Close,
    /// Answer only after this long.
    Slow(Duration, Box<Reply>),
}

enum Action {
    Send(Vec<u8>),
    Close,
    Later(Duration, Box<Action>),
}

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    routes: HashMap<(String, String), VecDeque<Reply>>,
    tokens: u64,
}

impl State {
    fn next(&mut self, method: &str, path: &str) -> Action {
        let reply = match self.routes.get_mut(&(method.to_string(), path.to_string())) {
            Some(queue) if queue.len() > 1 => queue.pop_front().unwrap(),
            Some(queue) => queue.front().cloned().unwrap(),
            None => Reply::Json(
                404,
                json!({"error": {"message": format!("no script for {method} {path}")}}),
            ),
        };
        self.action(reply)
    }

    fn action(&mut self, reply: Reply) -> Action {
        match reply {
            Reply::Json(status, value) => Action::Send(http(status, &[], &value.to_string())),
            Reply::Raw {
                status,
                headers,
                body,
            } => Action::Send(http(status, &headers, &body)),
            Reply::Token { expires_in } => {
                self.tokens += 1;
                let body = json!({"access_token": format!("tok-{}", self.tokens),
                                  "token_type": "Bearer", "expires_in": expires_in});
                Action::Send(http(200, &[], &body.to_string()))
            }
            Reply::Close => Action::Close,
            Reply::Slow(delay, reply) => Action::Later(delay, Box::new(self.action(*reply))),
        }
    }
}

fn http(status: u16, headers: &[(&str, String)], body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&shared)));
            }
        });
        Server { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn script(&self, method: &str, path: &str, replies: impl IntoIterator<Item = Reply>) {
        self.state
            .lock()
            .unwrap()
            .routes
            .entry((method.to_string(), path.to_string()))
            .or_default()
            .extend(replies);
    }

    fn token(&self, expires_in: u64) {
        self.script("POST", TOKEN_PATH, [Reply::Token { expires_in }]);
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    fn client(&self) -> Client {
        client_for(&self.url(), Duration::from_secs(10))
    }
}

fn client_for(url: &str, call_timeout: Duration) -> Client {
    Client::new(ClientConfig {
        checkout_url: url.to_string(),
        api_url: url.to_string(),
        account_id: ACCOUNT.into(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(SECRET),
        connect_timeout: Duration::from_secs(2),
        call_timeout,
    })
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path.to_string(), Some(query.to_string())),
            None => (target.clone(), None),
        };
        let mut action = {
            let mut state = state.lock().unwrap();
            state.requests.push(Recorded {
                method: method.clone(),
                path: path.clone(),
                query,
                headers,
                body: String::from_utf8(body).unwrap(),
            });
            state.next(&method, &path)
        };
        loop {
            match action {
                Action::Later(delay, then) => {
                    tokio::time::sleep(delay).await;
                    action = *then;
                }
                Action::Close => return,
                Action::Send(bytes) => {
                    if write.write_all(&bytes).await.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

fn session_json(id: &str) -> Value {
    json!({"id": id, "order": {"amount": 39900, "currency": "NOK", "merchant_reference": "kiosk-1-1"},
           "events": [{"name": "INITIATED", "created_at": "2026-01-01T10:00:00Z"}],
           "some_new_field": {"nested": true}})
}

fn transaction_json(id: &str, status: &str) -> Value {
    json!({"id": id, "status": status, "amount": 39900, "currency": "NOK",
           "merchant_reference": "kiosk-1-1", "payment_product_type": "seitatech.in_person",
           "card": {"brand": "VISA", "masked_pan": "************0004", "entry_method": "contactless"},
           "events": [{"event": "CAPTURE", "success": true, "amount": 39900,
                       "metadata": {"seitatech:receiptNumber": "42"}}],
           "unexpected": [1, 2, 3]})
}

fn error_json(code: Option<&str>, message: &str) -> Value {
    match code {
        Some(code) => json!({"error": {"code": code, "message": message}}),
        None => json!({"error": {"message": message}}),
    }
}

fn assert_no_secrets(text: &str) {
    assert!(!text.contains(SECRET), "client secret leaked: {text}");
    assert!(!text.contains("tok-"), "access token leaked: {text}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"));
    assert!(!text.contains(&basic), "basic credentials leaked: {text}");
}

#[tokio::test]
async fn token_request_and_call_headers_follow_the_contract() {
    let server = Server::start().await;
    server.token(14400);
    server.script(
        "GET",
        "/v1/sessions/T12345678.abc",
        [Reply::Json(200, session_json("T12345678.abc"))],
    );
    let session = server.client().get_session("T12345678.abc").await.unwrap();
    assert_eq!(session.id, "T12345678.abc");
    assert_eq!(session.events[0].name, "INITIATED");

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let token = &requests[0];
    assert_eq!(
        (token.method.as_str(), token.path.as_str()),
        ("POST", TOKEN_PATH)
    );
    let expected_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("kiosk-demo:demo-secret")
    );
    assert_eq!(token.header("authorization"), Some(expected_basic.as_str()));
    assert_eq!(token.header("content-type"), Some("application/json"));
    assert_eq!(
        token.json(),
        json!({"grant_type": "client_credentials",
               "audience": format!("{}/v1/accounts/T12345678", server.url())})
    );

    let call = &requests[1];
    assert_eq!(call.header("authorization"), Some("Bearer tok-1"));
    assert_eq!(call.header("accept"), Some("application/json"));
    assert_eq!(call.header("dintero-system-name"), Some("kioskpay"));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(call.header("dintero-system-version"), Some(version));
    assert_eq!(
        call.header("dintero-system-plugin-name"),
        Some("kioskpay-dintero-client")
    );
    assert_eq!(call.header("dintero-system-plugin-version"), Some(version));
}

#[tokio::test(start_paused = true)]
async fn token_is_cached_and_refreshed_at_half_life() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "GET",
        "/v1/sessions/s1",
        [Reply::Json(200, session_json("s1"))],
    );
    let client = server.client();

    client.get_session("s1").await.unwrap();
    client.get_session("s1").await.unwrap();
    tokio::time::advance(Duration::from_secs(1799)).await;
    client.get_session("s1").await.unwrap();
    assert_eq!(server.requests_to("POST", TOKEN_PATH).len(), 1);

    tokio::time::advance(Duration::from_secs(2)).await;
    client.get_session("s1").await.unwrap();
    assert_eq!(server.requests_to("POST", TOKEN_PATH).len(), 2);
    let calls = server.requests_to("GET", "/v1/sessions/s1");
    let used: Vec<_> = calls
        .iter()
        .map(|r| r.header("authorization").unwrap())
        .collect();
    assert_eq!(
        used,
        [
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-2"
        ]
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_token_fetch() {
    let server = Server::start().await;
    // A slow token answer keeps every caller waiting for the same fetch.
    server.script(
        "POST",
        TOKEN_PATH,
        [Reply::Slow(
            Duration::from_millis(200),
            Box::new(Reply::Token { expires_in: 3600 }),
        )],
    );
    server.script(
        "GET",
        "/v1/sessions/s1",
        [Reply::Json(200, session_json("s1"))],
    );
    let client = server.client();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let client = client.clone();
        calls.spawn(async move { client.get_session("s1").await });
    }
    while let Some(result) = calls.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(server.requests_to("POST", TOKEN_PATH).len(), 1);
    assert_eq!(server.requests_to("GET", "/v1/sessions/s1").len(), 5);
}

#[tokio::test]
async fn a_401_refreshes_the_token_and_retries_once() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "GET",
        "/v1/transactions/t1",
        [
            Reply::Json(401, error_json(None, "token expired")),
            Reply::Json(200, transaction_json("t1", "CAPTURED")),
        ],
    );
    let client = server.client();
    let tx = client.get_transaction("t1").await.unwrap();
    assert_eq!(tx.status, TransactionStatus::Captured);
    let calls = server.requests_to("GET", "/v1/transactions/t1");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].header("authorization"), Some("Bearer tok-1"));
    assert_eq!(calls[1].header("authorization"), Some("Bearer tok-2"));

    // The fresh token is cached: the next call needs no fetch.
    client.get_transaction("t1").await.unwrap();
    assert_eq!(server.requests_to("POST", TOKEN_PATH).len(), 2);
}

#[tokio::test]
async fn a_second_401_is_an_auth_error_without_further_retries() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "GET",
        "/v1/sessions/s1",
        [Reply::Json(401, error_json(None, "invalid token"))],
    );
    let err = server.client().get_session("s1").await.unwrap_err();
    assert_eq!(
        err,
        ApiError::Auth {
            status: 401,
            message: "invalid token".into()
        }
    );
    assert_eq!(server.requests_to("GET", "/v1/sessions/s1").len(), 2);
    assert_eq!(server.requests_to("POST", TOKEN_PATH).len(), 2);
    assert_no_secrets(&err.to_string());
}

#[tokio::test]
async fn a_403_is_an_auth_error_at_once() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "GET",
        "/v1/accounts/T12345678/terminals/T12345678-T0001",
        [Reply::Json(403, error_json(None, "missing scope"))],
    );
    let err = server
        .client()
        .terminal("T12345678-T0001")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Auth { status: 403, ref message } if message == "missing scope")
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn token_endpoint_refusals_and_rate_limits() {
    let server = Server::start().await;
    server.script(
        "POST",
        TOKEN_PATH,
        [Reply::Json(401, error_json(None, "bad client credentials"))],
    );
    let err = server.client().ensure_token().await.unwrap_err();
    assert!(matches!(err, ApiError::Auth { status: 401, .. }), "{err:?}");
    assert!(err.to_string().contains("dintero.client_id"));
    assert_no_secrets(&err.to_string());

    let server = Server::start().await;
    server.script(
        "POST",
        TOKEN_PATH,
        [Reply::Raw {
            status: 429,
            headers: vec![("Retry-After", "7".into())],
            body: String::new(),
        }],
    );
    let err = server.client().ensure_token().await.unwrap_err();
    assert!(err.outcome_unknown(), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    // A token answer of the wrong shape is unusable, and its values stay out of the error.
    let server = Server::start().await;
    server.script(
        "POST",
        TOKEN_PATH,
        [Reply::Json(
            200,
            json!({"access_token": ["tok-secretish"], "expires_in": "soon"}),
        )],
    );
    let err = server.client().ensure_token().await.unwrap_err();
    assert!(err.outcome_unknown(), "{err:?}");
    assert_no_secrets(&format!("{err} {err:?}"));
}

fn session_request() -> SessionProfileRequest {
    SessionProfileRequest {
        profile_id: "T12345678.kiosk-in-person".into(),
        url: SessionUrl {
            return_url: "https://kioskpay.invalid/return".into(),
            callback_url: None,
        },
        order: Order {
            amount: 39900,
            currency: "NOK".into(),
            merchant_reference: "kiosk-1-20260101-0001".into(),
            merchant_reference_2: None,
            vat_amount: Some(7980),
            items: vec![OrderItem {
                id: "cart".into(),
                line_id: "1".into(),
                description: Some("Kiosk purchase".into()),
                quantity: 1,
                amount: 39900,
                vat_amount: Some(7980),
                vat: Some(25),
            }],
            store: Some(Store {
                id: "oslo-center".into(),
                terminal_id: Some("T12345678-T0001".into()),
                payout_destination_id: Some("seller-1".into()),
            }),
        },
    }
}

#[tokio::test]
async fn session_create_sends_the_contract_body() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "POST",
        "/v1/sessions-profile",
        [Reply::Json(
            200,
            json!({"id": "T12345678.5Hk2", "url": "https://checkout.dintero.com/v1/view/x", "extra": 1}),
        )],
    );
    let request = session_request();
    let created = server.client().create_session(&request).await.unwrap();
    assert_eq!(created.id, "T12345678.5Hk2");

    let sent = server.requests_to("POST", "/v1/sessions-profile");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].query, None);
    assert_eq!(sent[0].header("content-type"), Some("application/json"));
    assert_eq!(sent[0].json(), serde_json::to_value(&request).unwrap());
    assert_eq!(
        sent[0].json(),
        json!({
            "profile_id": "T12345678.kiosk-in-person",
            "url": {"return_url": "https://kioskpay.invalid/return"},
            "order": {
                "amount": 39900, "currency": "NOK", "merchant_reference": "kiosk-1-20260101-0001",
                "vat_amount": 7980,
                "items": [{"id": "cart", "line_id": "1", "description": "Kiosk purchase",
                           "quantity": 1, "amount": 39900, "vat_amount": 7980, "vat": 25}],
                "store": {"id": "oslo-center", "terminal_id": "T12345678-T0001",
                          "payout_destination_id": "seller-1"}
            }
        })
    );
}

#[tokio::test]
async fn dintero_refusals_keep_code_and_message() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "POST",
        "/v1/sessions-profile",
        [
            Reply::Json(
                409,
                error_json(Some("TERMINAL_BUSY"), "terminal is running another payment"),
            ),
            Reply::Json(
                400,
                error_json(None, "order.amount must equal the sum of items"),
            ),
            Reply::Raw {
                status: 404,
                headers: vec![],
                body: "<html>Not Found</html>".into(),
            },
        ],
    );
    let client = server.client();
    let err = client.create_session(&session_request()).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::Rejected {
            status: 409,
            code: Some("TERMINAL_BUSY".into()),
            message: "terminal is running another payment".into()
        }
    );
    assert_eq!(err.code(), Some("TERMINAL_BUSY"));
    let err = client.create_session(&session_request()).await.unwrap_err();
    assert_eq!(
        err,
        ApiError::Rejected {
            status: 400,
            code: None,
            message: "order.amount must equal the sum of items".into()
        }
    );
    let err = client.create_session(&session_request()).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("<html>Not Found</html>"), "{err}");
    // Refusals are final: no retries behind the caller's back.
    assert_eq!(server.requests_to("POST", "/v1/sessions-profile").len(), 3);
}

#[tokio::test]
async fn server_trouble_leaves_the_outcome_unknown() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "GET",
        "/v1/sessions/s1",
        [
            Reply::Raw {
                status: 503,
                headers: vec![("Retry-After", "30".into())],
                body: error_json(None, "maintenance").to_string(),
            },
            Reply::Json(500, error_json(None, "internal")),
            Reply::Raw {
                status: 429,
                headers: vec![("Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT".into())],
                body: String::new(),
            },
            Reply::Json(408, json!({})),
            Reply::Raw {
                status: 200,
                headers: vec![],
                body: "{\"id\": \"s1\", \"events\": [".into(),
            },
            Reply::Close,
        ],
    );
    let client = server.client();
    let mut errors = Vec::new();
    for _ in 0..6 {
        errors.push(client.get_session("s1").await.unwrap_err());
    }
    for err in &errors {
        assert!(err.outcome_unknown(), "{err:?}");
    }
    assert_eq!(errors[0].retry_after(), Some(Duration::from_secs(30)));
    assert!(errors[0].to_string().contains("503"));
    assert_eq!(errors[1].retry_after(), None);
    // Only the seconds form of Retry-After is read.
    assert_eq!(errors[2].retry_after(), None);
    assert!(errors[4].to_string().contains("not the expected JSON"));
    for err in &errors {
        assert_no_secrets(&format!("{err} {err:?}"));
    }
}

#[tokio::test]
async fn a_create_whose_answer_never_comes_is_unknown() {
    let server = Server::start().await;
    server.token(3600);
    server.script("POST", "/v1/sessions-profile", [Reply::Close]);
    let err = server
        .client()
        .create_session(&session_request())
        .await
        .unwrap_err();
    assert!(err.outcome_unknown(), "{err:?}");
    // The request reached the server: exactly the case where the flow must look it up.
    assert_eq!(server.requests_to("POST", "/v1/sessions-profile").len(), 1);
}

#[tokio::test]
async fn a_server_slower_than_the_call_timeout_is_unknown() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "POST",
        "/v1/sessions-profile",
        [Reply::Slow(
            Duration::from_secs(600),
            Box::new(Reply::Json(200, json!({"id": "late"}))),
        )],
    );
    let client = client_for(&server.url(), Duration::from_millis(300));
    let err = client.create_session(&session_request()).await.unwrap_err();
    assert!(err.outcome_unknown(), "{err:?}");
    assert!(err.to_string().contains("timeout"), "{err}");
}

#[tokio::test]
async fn nothing_listening_or_no_such_host_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client_for(&format!("http://{addr}"), Duration::from_secs(5));
    let err = client.get_session("s1").await.unwrap_err();
    assert!(matches!(err, ApiError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("dintero.checkout_url"), "{err}");

    let client = client_for("http://kioskpay-test.invalid", Duration::from_secs(5));
    let err = client.ensure_token().await.unwrap_err();
    assert!(matches!(err, ApiError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn refund_done_and_pending() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "POST",
        "/v1/transactions/t1/refund",
        [
            Reply::Json(200, transaction_json("t1", "REFUNDED")),
            Reply::Raw {
                status: 202,
                headers: vec![("event-request-id", "evt-77".into())],
                body: String::new(),
            },
        ],
    );
    let client = server.client();
    let request = RefundRequest {
        amount: 39900,
        reason: Some("customer changed their mind".into()),
        refund_reference: None,
        terminal_id: Some("T12345678-T0001".into()),
    };
    match client.refund("t1", &request).await.unwrap() {
        RefundOutcome::Done(tx) => assert_eq!(tx.status, TransactionStatus::Refunded),
        other => panic!("expected Done, got {other:?}"),
    }
    assert_eq!(
        client.refund("t1", &request).await.unwrap(),
        RefundOutcome::Pending {
            event_request_id: Some("evt-77".into())
        }
    );
    let sent = server.requests_to("POST", "/v1/transactions/t1/refund");
    assert_eq!(
        sent[0].json(),
        json!({"amount": 39900, "reason": "customer changed their mind",
               "terminal_id": "T12345678-T0001"})
    );
}

#[tokio::test]
async fn cancel_posts_to_the_session_and_reports_refusal() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "POST",
        "/v1/sessions/s1/cancel",
        [
            Reply::Json(200, session_json("s1")),
            Reply::Json(400, error_json(None, "transaction is captured")),
        ],
    );
    let client = server.client();
    client.cancel_session("s1").await.unwrap();
    let err = client.cancel_session("s1").await.unwrap_err();
    assert!(
        matches!(err, ApiError::Rejected { status: 400, .. }),
        "{err:?}"
    );
    let sent = server.requests_to("POST", "/v1/sessions/s1/cancel");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].body, "");
}

#[tokio::test]
async fn queries_and_path_ids_are_encoded() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "GET",
        "/v1/sessions",
        [Reply::Json(200, json!([session_json("s1")]))],
    );
    server.script(
        "GET",
        "/v1/transactions",
        [Reply::Json(
            200,
            json!({"transactions": [transaction_json("t1", "CAPTURED")], "next_page_token": "x"}),
        )],
    );
    server.script(
        "GET",
        "/v1/sessions/a%2F..%2Fb%3Fc%20d",
        [Reply::Json(200, session_json("odd"))],
    );
    let client = server.client();

    let found = client.search_sessions("kiosk 1/ø&x=y").await.unwrap();
    assert_eq!(found.len(), 1);
    let listed = client
        .list_transactions(&TransactionQuery {
            merchant_reference: Some("kiosk-1 #7&more".into()),
            terminal_id: Some("T12345678-T0001".into()),
            limit: Some(10),
            ..TransactionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed[0].id, "t1");
    client
        .list_transactions(&TransactionQuery::default())
        .await
        .unwrap();
    assert_eq!(client.get_session("a/../b?c d").await.unwrap().id, "odd");
    assert!(matches!(
        client.get_session("").await,
        Err(ApiError::Unreachable { .. })
    ));

    let searches = server.requests_to("GET", "/v1/sessions");
    assert_eq!(
        searches[0].query.as_deref(),
        Some("search=kiosk+1%2F%C3%B8%26x%3Dy")
    );
    let lists = server.requests_to("GET", "/v1/transactions");
    assert_eq!(
        lists[0].query.as_deref(),
        Some("merchant_reference=kiosk-1+%237%26more&terminal_id=T12345678-T0001&limit=10")
    );
    assert_eq!(lists[1].query, None);
    // The empty id was refused before anything was sent.
    assert_eq!(server.requests_to("GET", "/v1/sessions/").len(), 0);
}

#[tokio::test]
async fn unknown_fields_and_statuses_are_tolerated() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "GET",
        "/v1/transactions/t1",
        [Reply::Json(200, transaction_json("t1", "SOMETHING_NEW"))],
    );
    server.script(
        "GET",
        "/v1/accounts/T12345678/terminals/T12345678-T0001",
        [Reply::Json(
            200,
            json!({"terminal_id": "T12345678-T0001", "status": "FIRMWARE_UPDATING",
                   "store_id": "oslo-center", "battery": 80}),
        )],
    );
    let client = server.client();
    let tx = client.get_transaction("t1").await.unwrap();
    assert_eq!(tx.status, TransactionStatus::Other("SOMETHING_NEW".into()));
    assert_eq!(tx.card_summary().as_deref(), Some("VISA **** 0004"));
    let terminal = client.terminal("T12345678-T0001").await.unwrap();
    assert_eq!(
        terminal.status,
        TerminalStatus::Other("FIRMWARE_UPDATING".into())
    );
    assert_eq!(terminal.store_id.as_deref(), Some("oslo-center"));
}

#[tokio::test]
async fn a_redirect_is_refused_not_followed() {
    let server = Server::start().await;
    server.token(3600);
    server.script(
        "POST",
        "/v1/sessions-profile",
        [Reply::Raw {
            status: 301,
            headers: vec![(
                "Location",
                "https://elsewhere.example/v1/sessions-profile".into(),
            )],
            body: String::new(),
        }],
    );
    let err = server
        .client()
        .create_session(&session_request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::Rejected { status: 301, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("elsewhere.example"), "{err}");
    assert_eq!(server.requests().len(), 2);
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_each_call_without_credentials_and_debug_hides_them() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = Server::start().await;
    server.token(3600);
    server.script(
        "GET",
        "/v1/sessions/s1",
        [
            Reply::Json(401, error_json(None, "expired")),
            Reply::Json(200, session_json("s1")),
        ],
    );
    let client = server.client();
    client.get_session("s1").await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let calls: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("dintero call"))
        .collect();
    assert_eq!(calls.len(), 4, "{logs}");
    assert!(calls.iter().any(|l| l.contains("method=\"GET\"")
        && l.contains("path=\"/v1/sessions/s1\"")
        && l.contains("status=401")
        && l.contains("elapsed_ms=")));
    assert!(calls
        .iter()
        .any(|l| l.contains(&format!("path=\"{TOKEN_PATH}\"")) && l.contains("status=200")));
    assert_no_secrets(&logs);
    assert_no_secrets(&format!("{client:?} {client:#?}"));
    assert!(format!("{client:?}").contains(ACCOUNT));
}

#[tokio::test]
async fn client_config_comes_from_the_loaded_config() {
    use kioskpay::config::Config;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "demo-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[kiosk]\nid = \"kiosk-1\"\n[dintero]\naccount_id = \"T12345678\"\nclient_id = \"kiosk-demo\"\n\
         client_secret_file = {:?}\nprofile_id = \"T12345678.kiosk-in-person\"\n\
         checkout_url = \"http://127.0.0.1:9\"\napi_url = \"http://127.0.0.1:9\"\ncall_timeout_ms = 2500\n\
         [store]\nid = \"oslo-center\"\nterminal_id = \"T12345678-T0001\"\npayout_destination_id = \"seller-1\"\n",
        secret.to_str().unwrap()
    );
    let path = dir.path().join("kioskpay.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();

    let parsed = Config::parse(&text, &path).unwrap();
    let err = ClientConfig::from_config(&parsed.dintero).unwrap_err();
    assert!(err.to_string().contains("Config::load"), "{err}");

    let loaded = Config::load(&path).unwrap();
    let config = ClientConfig::from_config(&loaded.dintero).unwrap();
    assert_eq!(config.client_secret.expose(), SECRET);
    assert_eq!(config.call_timeout, Duration::from_millis(2500));
    assert_eq!(config.connect_timeout, Duration::from_millis(3000));
    assert_eq!(config.api_url, "http://127.0.0.1:9");
    assert_no_secrets(&format!("{config:?}"));
}
