//! The Dintero emulator driven the way a client drives it: real HTTP on 127.0.0.1 with ureq (on
//! tokio's blocking pool), or a raw TCP socket where the wire itself is the point (faults).
//!
//! Two kinds of tests. Real-time ones run at time scale 0.01 and poll with a deadline that is
//! only a hang guard. Paused-time ones (`start_paused`) check what is true at given points of
//! emulated time: a blocking call stops tokio's clock from auto-advancing, so the clock moves
//! only when the test sleeps, and "before pickup" or "while AUTHORIZED" are exact.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::prelude::{Engine, BASE64_STANDARD};
use kioskpay::dintero::{Session, Transaction, TransactionStatus};
use kioskpay::emulator::{spawn, EmulatorConfig, EmulatorHandle, FaultPlan};
use serde_json::{json, Value};

const T1: &str = "T12345678-T0001";
const T2: &str = "T12345678-T0002";

#[derive(Clone)]
struct Client {
    base: String,
    agent: ureq::Agent,
    token: String,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", BASE64_STANDARD.encode(format!("{id}:{secret}")))
}

impl Client {
    /// A client with a fresh token from the seeded API client, the way the Python SDK asks.
    fn connect(base: &str) -> Client {
        let mut c = Client {
            base: base.to_string(),
            agent: agent(Duration::from_secs(20)),
            token: String::new(),
        };
        let (status, body) = c.token_call(
            Some(basic("kiosk-demo", "demo-secret")),
            json!({"grant_type": "client_credentials",
                   "audience": "https://api.dintero.com/v1/accounts/T12345678"}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["expires_in"].as_u64().unwrap() > 0, "{body}");
        c.token = body["access_token"].as_str().unwrap().to_string();
        c
    }

    fn token_call(&self, authorization: Option<String>, body: Value) -> (u16, Value) {
        let mut req = self
            .agent
            .post(format!("{}/v1/accounts/T12345678/auth/token", self.base));
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
        }
        read(req.send_json(body))
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.agent, method, path, body)
    }

    fn call_as(
        &self,
        agent: &ureq::Agent,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let result = match method {
            "GET" => agent.get(&url).header("Authorization", &auth).call(),
            "DELETE" => agent.delete(&url).header("Authorization", &auth).call(),
            "POST" => {
                let r = agent.post(&url).header("Authorization", &auth);
                match body {
                    Some(b) => r.send_json(b),
                    None => r.send_empty(),
                }
            }
            "PUT" => agent
                .put(&url)
                .header("Authorization", &auth)
                .send_json(body.unwrap_or(Value::Null)),
            other => panic!("no helper for {other}"),
        };
        read(result)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {v}");
        v
    }

    fn create(&self, body: Value) -> String {
        self.ok("POST", "/v1/sessions-profile", Some(body))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn session(&self, id: &str) -> Value {
        self.ok("GET", &format!("/v1/sessions/{id}"), None)
    }

    fn transaction(&self, id: &str) -> Value {
        self.ok("GET", &format!("/v1/transactions/{id}"), None)
    }

    fn ledger(&self) -> Value {
        self.ok("GET", "/_emulator/ledger", None)
    }

    /// Polls until `f` gives a value. The deadline only guards against a hang.
    fn wait_for<T>(&self, what: &str, mut f: impl FnMut(&Client) -> Option<T>) -> T {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gave up waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the session's transaction to reach a final status and returns it.
    fn final_transaction(&self, session_id: &str) -> Value {
        self.wait_for("a final transaction", |c| {
            let tx_id = c.session(session_id)["transaction_id"]
                .as_str()?
                .to_string();
            let tx = c.transaction(&tx_id);
            let status = TransactionStatus::parse(tx["status"].as_str()?);
            status.is_final().then_some(tx)
        })
    }
}

fn read(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = result.expect("the emulator answered");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

fn order(amount: u64, reference: &str, terminal: &str) -> Value {
    json!({
        "profile_id": "T12345678.kiosk-in-person",
        "url": {"return_url": "https://kiosk.example/return"},
        "order": {
            "amount": amount, "currency": "NOK", "merchant_reference": reference,
            "vat_amount": amount / 5,
            "items": [{"id": "cart", "line_id": "1", "description": "Cart", "quantity": 1,
                       "amount": amount, "vat_amount": amount / 5, "vat": 25}],
            "store": {"id": "oslo-center", "terminal_id": terminal,
                      "payout_destination_id": "seller-1"}
        }
    })
}

fn fast() -> EmulatorConfig {
    EmulatorConfig {
        time_scale: 0.01,
        ..Default::default()
    }
}

/// Runs a blocking scenario against a fresh emulator in real time.
async fn scenario(config: EmulatorConfig, f: impl FnOnce(Client, &str) + Send + 'static) {
    let emulator = spawn(config).await.unwrap();
    let base = emulator.base_url();
    let result = tokio::task::spawn_blocking(move || f(Client::connect(&base), &base)).await;
    emulator.shutdown().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// One blocking call from a paused-time test.
async fn blocking<T: Send + 'static>(
    c: &Client,
    f: impl FnOnce(&Client) -> T + Send + 'static,
) -> T {
    let c = c.clone();
    tokio::task::spawn_blocking(move || f(&c)).await.unwrap()
}

async fn paused_emulator(config: EmulatorConfig) -> (EmulatorHandle, Client) {
    let emulator = spawn(config).await.unwrap();
    let base = emulator.base_url();
    let client = tokio::task::spawn_blocking(move || Client::connect(&base))
        .await
        .unwrap();
    (emulator, client)
}

async fn sleep_s(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

fn event_names(events: &Value, key: &str) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[key].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_outcome_of_the_table() {
    scenario(fast(), |c, _| {
        // (amount, status, last AUTHORIZE success, error type, final session event, details.error)
        let table = [
            (
                39951,
                "FAILED",
                false,
                Some("DECLINED"),
                "PAY_FAILED",
                Some("authorization"),
            ),
            (
                39952,
                "FAILED",
                false,
                Some("INSUFFICIENT_FUNDS"),
                "PAY_FAILED",
                Some("authorization"),
            ),
            (
                39953,
                "FAILED",
                false,
                Some("CANCELLED"),
                "CANCELLED",
                Some("cancelled"),
            ),
            (
                39954,
                "FAILED",
                false,
                Some("TIMEOUT"),
                "CANCELLED",
                Some("timeout"),
            ),
            (
                39956,
                "FAILED",
                false,
                Some("ERROR"),
                "FAILED",
                Some("failed"),
            ),
            (39957, "CAPTURED", true, None, "COMPLETED", None),
            (39958, "CAPTURED", true, None, "COMPLETED", None),
            (39959, "CAPTURED", true, None, "COMPLETED", None),
            (39900, "CAPTURED", true, None, "COMPLETED", None),
        ];
        for (amount, status, success, error_type, session_event, details) in table {
            let reference = format!("kiosk-1-{amount}");
            let id = c.create(order(amount, &reference, T1));
            assert!(id.starts_with("T12345678."), "{id}");
            let tx = c.final_transaction(&id);
            assert_eq!(tx["status"], status, "{amount}: {tx}");
            assert_eq!(tx["amount"], amount);
            assert_eq!(tx["merchant_reference"], reference.as_str());
            assert_eq!(tx["session_id"], id.as_str());
            assert_eq!(tx["payment_product_type"], "seitatech.in_person");
            assert_eq!(tx["store"]["terminal_id"], T1);
            let kinds = event_names(&tx["events"], "event");
            assert_eq!(kinds[0], "INITIALIZE");
            let authorize = tx["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["event"] == "AUTHORIZE")
                .unwrap();
            assert_eq!(authorize["success"], success, "{amount}");
            assert!(authorize["metadata"]["seitatech:receiptNumber"].is_string());
            match error_type {
                Some(t) => assert_eq!(authorize["error"]["type"], json!([t]), "{amount}"),
                None => {
                    assert_eq!(kinds, ["INITIALIZE", "AUTHORIZE", "CAPTURE"]);
                    let entry = if amount == 39959 {
                        "chip"
                    } else {
                        "contactless"
                    };
                    assert_eq!(tx["card"]["entry_method"], entry);
                }
            }
            let session = c.session(&id);
            let last = session["events"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .clone();
            assert_eq!(last["name"], session_event, "{amount}: {session}");
            assert_eq!(last["details"]["error"].as_str(), details, "{amount}");
            let cancelled = matches!(amount, 39953 | 39954);
            assert_eq!(session["cancelled_at"].is_string(), cancelled, "{amount}");
            if cancelled {
                assert_eq!(session["cancelled_by"], "terminal");
            }
            // The crate's own models read what the emulator writes.
            let typed: Transaction = serde_json::from_value(tx.clone()).unwrap();
            assert_eq!(typed.status.as_str(), status);
            let typed: Session = serde_json::from_value(session).unwrap();
            assert_eq!(typed.transaction_id.as_deref(), tx["id"].as_str());
            if !success {
                assert_eq!(typed_failure(&tx), vec![error_type.unwrap().to_string()]);
            }
        }
    })
    .await;
}

fn typed_failure(tx: &Value) -> Vec<String> {
    serde_json::from_value::<Transaction>(tx.clone())
        .unwrap()
        .failure_types()
}

#[tokio::test(start_paused = true)]
async fn pickup_then_approval_in_emulated_time() {
    let (emulator, c) = paused_emulator(EmulatorConfig::default()).await;
    let (id, first) = blocking(&c, |c| {
        let id = c.create(order(39900, "kiosk-1-pickup", T1));
        (id.clone(), c.session(&id))
    })
    .await;
    assert!(first.get("transaction_id").is_none(), "{first}");
    assert!(blocking(&c, |c| c.ledger()).await["transactions"]
        .as_array()
        .unwrap()
        .is_empty());

    sleep_s(0.6).await;
    let tx_id = {
        let id = id.clone();
        blocking(&c, move |c| {
            c.session(&id)["transaction_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .await
    };
    let tx = {
        let tx_id = tx_id.clone();
        blocking(&c, move |c| c.transaction(&tx_id)).await
    };
    assert_eq!(tx["status"], "INITIATED");
    assert_eq!(event_names(&tx["events"], "event"), ["INITIALIZE"]);

    sleep_s(2.0).await; // 2.6 s: card read, authorized
    let tx = {
        let tx_id = tx_id.clone();
        blocking(&c, move |c| c.transaction(&tx_id)).await
    };
    assert_eq!(tx["status"], "AUTHORIZED");
    sleep_s(1.0).await; // 3.6 s: captured
    let tx = blocking(&c, move |c| c.transaction(&tx_id)).await;
    assert_eq!(tx["status"], "CAPTURED");
    emulator.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn capture_lag_stays_authorized_then_captures() {
    let (emulator, c) = paused_emulator(EmulatorConfig::default()).await;
    let id = blocking(&c, |c| c.create(order(39958, "kiosk-1-lag", T1))).await;
    let status = |secs: f64| {
        let (c, id) = (c.clone(), id.clone());
        async move {
            sleep_s(secs).await;
            blocking(&c, move |c| {
                let tx = c.session(&id)["transaction_id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                c.transaction(&tx)["status"].as_str().unwrap().to_string()
            })
            .await
        }
    };
    assert_eq!(status(3.0).await, "AUTHORIZED"); // 3 s
    assert_eq!(status(15.0).await, "AUTHORIZED"); // 18 s
    assert_eq!(status(5.0).await, "CAPTURED"); // 23 s
    emulator.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn offline_terminal_never_picks_up_and_stays_busy_until_cancelled() {
    let (emulator, c) = paused_emulator(EmulatorConfig::default()).await;
    let id = blocking(&c, |c| c.create(order(39955, "kiosk-1-offline", T1))).await;
    sleep_s(600.0).await;
    let id2 = id.clone();
    blocking(&c, move |c| {
        let session = c.session(&id2);
        assert!(session.get("transaction_id").is_none(), "{session}");
        let (_, list) = c.get("/v1/transactions?merchant_reference=kiosk-1-offline");
        assert_eq!(list, json!([]));
        let terminal = c.ok(
            "GET",
            &format!("/v1/accounts/T12345678/terminals/{T1}"),
            None,
        );
        assert_eq!(terminal["status"], "ACTIVE");
        assert_eq!(terminal["device_serial_number"], "SIMULATED-T12345678-001");
        let (status, busy) = c.post("/v1/sessions-profile", order(39900, "kiosk-1-next", T1));
        assert_eq!(status, 409, "{busy}");
        assert_eq!(busy["error"]["code"], "TERMINAL_BUSY");

        let cancelled = c.ok("POST", &format!("/v1/sessions/{id2}/cancel"), None);
        assert_eq!(cancelled["cancelled_by"], "kiosk-demo");
        assert!(cancelled.get("transaction_id").is_none());
        c.create(order(39900, "kiosk-1-next", T1));
    })
    .await;
    emulator.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn cancel_while_initiated_authorized_and_captured() {
    let (emulator, c) = paused_emulator(EmulatorConfig::default()).await;

    // INITIATED (picked up at 0.5 s, card at 2.5 s): the terminal stops, FAILED.
    let a = blocking(&c, |c| c.create(order(39900, "kiosk-1-c1", T1))).await;
    sleep_s(1.0).await;
    let a2 = a.clone();
    let tx = blocking(&c, move |c| {
        let s = c.ok("POST", &format!("/v1/sessions/{a2}/cancel"), None);
        assert_eq!(s["cancelled_by"], "kiosk-demo");
        assert!(s["cancelled_at"].is_string());
        let last = s["events"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["name"], "CANCELLED");
        assert_eq!(last["details"]["error"], "cancelled");
        s["transaction_id"].as_str().unwrap().to_string()
    })
    .await;
    sleep_s(10.0).await; // the approval that would have come stays away
    let tx2 = tx.clone();
    let after = blocking(&c, move |c| c.transaction(&tx2)).await;
    assert_eq!(after["status"], "FAILED", "{after}");
    assert_eq!(typed_failure(&after), ["CANCELLED"]);

    // AUTHORIZED (capture lag): the authorization is voided and never captured.
    let b = blocking(&c, |c| c.create(order(39958, "kiosk-1-c2", T1))).await;
    sleep_s(5.0).await;
    let b2 = b.clone();
    let tx = blocking(&c, move |c| {
        let tx = c.session(&b2)["transaction_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(c.transaction(&tx)["status"], "AUTHORIZED");
        c.ok("POST", &format!("/v1/sessions/{b2}/cancel"), None);
        tx
    })
    .await;
    sleep_s(60.0).await;
    let voided = blocking(&c, move |c| c.transaction(&tx)).await;
    assert_eq!(voided["status"], "AUTHORIZATION_VOIDED");
    assert_eq!(
        event_names(&voided["events"], "event"),
        ["INITIALIZE", "AUTHORIZE", "VOID"]
    );

    // CAPTURED: refused, unchanged.
    let d = blocking(&c, |c| c.create(order(39900, "kiosk-1-c3", T1))).await;
    sleep_s(5.0).await;
    blocking(&c, move |c| {
        let (status, body) = c.call("POST", &format!("/v1/sessions/{d}/cancel"), None);
        assert_eq!(status, 400, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CAPTURED"));
        let s = c.session(&d);
        assert!(s.get("cancelled_at").is_none());
        let tx = c.transaction(s["transaction_id"].as_str().unwrap());
        assert_eq!(tx["status"], "CAPTURED");
    })
    .await;
    emulator.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn one_payment_per_terminal() {
    let (emulator, c) = paused_emulator(EmulatorConfig::default()).await;
    blocking(&c, |c| {
        c.create(order(39900, "kiosk-1-b1", T1));
        let (status, body) = c.post("/v1/sessions-profile", order(39900, "kiosk-1-b2", T1));
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "TERMINAL_BUSY");
        assert!(body["error"]["message"].as_str().unwrap().contains(T1));
        c.create(order(39900, "kiosk-2-b1", T2));
    })
    .await;
    sleep_s(3.0).await; // authorized: the terminal is free again
    blocking(&c, |c| c.create(order(39900, "kiosk-1-b2", T1))).await;
    emulator.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn outcome_override_applies_to_the_next_payment_only() {
    let (emulator, c) = paused_emulator(EmulatorConfig::default()).await;
    let first = blocking(&c, |c| {
        let v = c.ok(
            "POST",
            &format!("/_emulator/terminals/{T1}/outcome"),
            Some(json!({"outcome": "insufficient_funds"})),
        );
        assert_eq!(v["next_outcome"], "insufficient_funds");
        let (status, bad) = c.call(
            "POST",
            &format!("/_emulator/terminals/{T1}/outcome"),
            Some(json!({"outcome": "maybe"})),
        );
        assert_eq!(status, 400, "{bad}");
        c.create(order(39900, "kiosk-1-o1", T1))
    })
    .await;
    sleep_s(5.0).await;
    let second = blocking(&c, move |c| {
        let tx = c.session(&first)["transaction_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(typed_failure(&c.transaction(&tx)), ["INSUFFICIENT_FUNDS"]);
        c.create(order(39900, "kiosk-1-o2", T1))
    })
    .await;
    sleep_s(5.0).await;
    blocking(&c, move |c| {
        let tx = c.session(&second)["transaction_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(c.transaction(&tx)["status"], "CAPTURED");
    })
    .await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn inactive_terminal_refuses_sessions() {
    scenario(fast(), |c, _| {
        c.ok(
            "PUT",
            &format!("/_emulator/terminals/{T2}/status"),
            Some(json!({"status": "INACTIVE"})),
        );
        let t = c.ok(
            "GET",
            &format!("/v1/accounts/T12345678/terminals/{T2}"),
            None,
        );
        assert_eq!(t["status"], "INACTIVE");
        let (status, body) = c.post("/v1/sessions-profile", order(39900, "kiosk-2-i", T2));
        assert_eq!(status, 400, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(T2) && message.contains("INACTIVE"),
            "{message}"
        );
        c.ok(
            "PUT",
            &format!("/_emulator/terminals/{T2}/status"),
            Some(json!({"status": "ACTIVE"})),
        );
        c.create(order(39900, "kiosk-2-i", T2));
    })
    .await;
}

#[tokio::test]
async fn refunds_need_a_terminal_and_add_up() {
    scenario(fast(), |c, _| {
        let id = c.create(order(39900, "kiosk-1-r", T1));
        let tx = c.final_transaction(&id);
        assert_eq!(tx["status"], "CAPTURED");
        let path = format!("/v1/transactions/{}/refund", tx["id"].as_str().unwrap());

        let (status, body) = c.post(&path, json!({"amount": 1000}));
        assert_eq!(status, 400);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("terminal_id"));
        let (status, _) = c.post(
            &path,
            json!({"amount": 1000, "terminal_id": "T12345678-T9999"}),
        );
        assert_eq!(status, 400);

        let partial = c.ok(
            "POST",
            &path,
            Some(json!({"amount": 1000, "terminal_id": T2})),
        );
        assert_eq!(partial["status"], "PARTIALLY_REFUNDED");
        let refund = partial["events"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            (refund["event"].clone(), refund["amount"].clone()),
            (json!("REFUND"), json!(1000))
        );
        let (status, body) = c.post(&path, json!({"amount": 38901, "terminal_id": T2}));
        assert_eq!(status, 400, "more than is left: {body}");
        let full = c.ok(
            "POST",
            &path,
            Some(json!({"amount": 38900, "terminal_id": T1})),
        );
        assert_eq!(full["status"], "REFUNDED");
        let (status, _) = c.post(&path, json!({"amount": 1, "terminal_id": T1}));
        assert_eq!(status, 400);
        let ledger = c.ledger();
        assert_eq!(ledger["transactions"][0]["refunded_amount"], 39900);
        assert_eq!(ledger["transactions"][0]["status"], "REFUNDED");

        let failed = c.final_transaction(&c.create(order(39951, "kiosk-1-r2", T1)));
        let (status, body) = c.post(
            &format!("/v1/transactions/{}/refund", failed["id"].as_str().unwrap()),
            json!({"amount": 100, "terminal_id": T1}),
        );
        assert_eq!(status, 400, "{body}");
    })
    .await;
}

/// A change that makes a valid session body invalid.
type Edit = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn validation_errors_name_the_field() {
    scenario(fast(), |c, _| {
        let cases: Vec<(&str, Edit)> = vec![
            (
                "order.amount",
                Box::new(|b| b["order"]["amount"] = json!(399.5)),
            ),
            (
                "order.amount",
                Box::new(|b| b["order"]["items"][0]["amount"] = json!(100)),
            ),
            (
                "order.store.terminal_id",
                Box::new(|b| {
                    b["order"]["store"]
                        .as_object_mut()
                        .unwrap()
                        .remove("terminal_id");
                }),
            ),
            (
                "order.store.terminal_id",
                Box::new(|b| b["order"]["store"]["terminal_id"] = json!("T12345678-T0404")),
            ),
            (
                "profile_id",
                Box::new(|b| b["profile_id"] = json!("T12345678.other")),
            ),
            (
                "url.return_url",
                Box::new(|b| {
                    b["url"].as_object_mut().unwrap().remove("return_url");
                }),
            ),
            (
                "order.currency",
                Box::new(|b| {
                    b["order"].as_object_mut().unwrap().remove("currency");
                }),
            ),
            (
                "order.merchant_reference",
                Box::new(|b| {
                    b["order"]
                        .as_object_mut()
                        .unwrap()
                        .remove("merchant_reference");
                }),
            ),
            (
                "order.store.id",
                Box::new(|b| b["order"]["store"]["id"] = json!("bergen")),
            ),
            (
                "order.store.payout_destination_id",
                Box::new(|b| b["order"]["store"]["payout_destination_id"] = json!("seller-2")),
            ),
        ];
        for (field, edit) in cases {
            let mut body = order(39900, "kiosk-1-v", T1);
            edit(&mut body);
            let (status, answer) = c.post("/v1/sessions-profile", body);
            assert_eq!(status, 400, "{field}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(field), "{field}: {message}");
        }
        assert_eq!(c.ledger()["sessions"], json!([]));
    })
    .await;
}

#[tokio::test]
async fn credentials_and_bearer_tokens() {
    scenario(fast(), |c, _| {
        let (status, body) = c.token_call(Some(basic("kiosk-demo", "wrong")), json!({}));
        assert_eq!(status, 401);
        assert!(body["error"]["message"].is_string());
        assert!(!body.to_string().contains("wrong"));
        let (status, _) = c.token_call(None, json!({"grant_type": "client_credentials"}));
        assert_eq!(status, 401);
        // Node SDK: audience from its own base URL; older Node SDK: credentials in the body.
        let (status, _) = c.token_call(
            Some(basic("kiosk-demo", "demo-secret")),
            json!({"grant_type": "client_credentials",
                   "audience": "http://127.0.0.1:1/v1/accounts/T12345678/"}),
        );
        assert_eq!(status, 200);
        let (status, body) = c.token_call(
            None,
            json!({"client_id": "kiosk-demo", "client_secret": "demo-secret"}),
        );
        assert_eq!(status, 200);
        assert_eq!(
            body["expires_in"], 14400,
            "the default lifetime, as in Dintero's docs"
        );
        let (status, body) = c.token_call(
            Some(basic("kiosk-demo", "demo-secret")),
            json!({"grant_type": "client_credentials",
                   "audience": "https://api.dintero.com/v1/accounts/P12345678"}),
        );
        assert_eq!(status, 400);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("audience"));

        let mut stranger = c.clone();
        stranger.token = "not-a-token".into();
        let (status, body) = stranger.get("/v1/sessions?search=x");
        assert_eq!(status, 401);
        assert!(body["error"]["message"].is_string());
        let response = c
            .agent
            .get(format!("{}/v1/transactions", c.base))
            .call()
            .unwrap();
        assert_eq!(response.status(), 401);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn expired_token_is_refused() {
    let (emulator, c) = paused_emulator(EmulatorConfig {
        token_ttl: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    blocking(&c, |c| assert_eq!(c.get("/v1/sessions").0, 200)).await;
    sleep_s(61.0).await;
    blocking(&c, |c| {
        let (status, body) = c.get("/v1/sessions");
        assert_eq!(status, 401);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"));
    })
    .await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn ledger_has_exactly_the_documented_shape() {
    scenario(fast(), |c, _| {
        let mut body = order(39900, "kiosk-1-l", T1);
        body["order"]["merchant_reference_2"] = json!("KID-42");
        let id = c.create(body);
        let tx = c.final_transaction(&id);
        let ledger = c.ledger();
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&ledger), ["sessions", "transactions"]);
        let session = &ledger["sessions"][0];
        assert_eq!(
            keys(session),
            [
                "amount",
                "cancelled_at",
                "currency",
                "id",
                "merchant_reference",
                "merchant_reference_2",
                "terminal_id",
                "transaction_id"
            ]
        );
        assert_eq!(session["id"], id.as_str());
        assert_eq!(session["merchant_reference_2"], "KID-42");
        assert_eq!(session["transaction_id"], tx["id"]);
        assert_eq!(session["cancelled_at"], Value::Null);
        let t = &ledger["transactions"][0];
        assert_eq!(
            keys(t),
            [
                "amount",
                "currency",
                "id",
                "merchant_reference",
                "refunded_amount",
                "session_id",
                "status"
            ]
        );
        assert_eq!(
            (t["status"].clone(), t["refunded_amount"].clone()),
            (json!("CAPTURED"), json!(0))
        );

        c.ok("POST", "/_emulator/reset", None);
        assert_eq!(c.ledger(), json!({"sessions": [], "transactions": []}));
        assert_eq!(c.get(&format!("/v1/sessions/{id}")).0, 404);
    })
    .await;
}

#[tokio::test]
async fn search_and_list_filters() {
    scenario(fast(), |c, _| {
        let mut first = order(10000, "shop-A-1", T1);
        first["order"]["merchant_reference_2"] = json!("KID-777");
        let a = c.create(first);
        let b = c.create(order(20000, "shop-A-2", T2));
        let ta = c.final_transaction(&a);
        let tb = c.final_transaction(&b);
        let c_id = c.create(order(30051, "shop-B-1", T1));
        let tc = c.final_transaction(&c_id);

        let ids = |v: Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            ids(c.ok("GET", "/v1/sessions?search=KID-777", None)),
            std::slice::from_ref(&a)
        );
        assert_eq!(
            ids(c.ok("GET", "/v1/sessions?search=shop-A", None)),
            [b.clone(), a.clone()]
        );
        assert_eq!(
            ids(c.ok("GET", "/v1/sessions?search=nothing", None)).len(),
            0
        );

        let list = |q: &str| ids(c.ok("GET", &format!("/v1/transactions?{q}"), None));
        let id = |t: &Value| t["id"].as_str().unwrap().to_string();
        assert_eq!(list("merchant_reference=shop-A-1"), [id(&ta)]);
        assert!(
            list("merchant_reference=shop-A").is_empty(),
            "exact match only"
        );
        assert_eq!(list(&format!("terminal_id={T2}")), [id(&tb)]);
        assert_eq!(list("status=FAILED"), [id(&tc)]);
        assert_eq!(list("store_id=oslo-center"), [id(&tc), id(&tb), id(&ta)]);
        assert!(list("store_id=bergen").is_empty());
        assert_eq!(list("limit=1"), [id(&tc)]);
        assert_eq!(
            list(&format!("limit=1&starting_after={}", id(&tc))),
            [id(&tb)]
        );
        assert_eq!(list("created_at.gte=2000-01-01T00:00:00Z").len(), 3);
        assert!(list("created_at.gte=2999-01-01T00:00:00Z").is_empty());
        let (status, body) = c.get("/v1/transactions?limit=0");
        assert_eq!(status, 400);
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("limit"));
    })
    .await;
}

#[tokio::test]
async fn unknown_routes_ids_and_methods_answer_dinteros_error_body() {
    scenario(fast(), |c, _| {
        for (method, path, want) in [
            ("GET", "/v1/nothing-here", 404),
            ("GET", "/v1/sessions/T12345678.nope", 404),
            ("GET", "/v1/transactions/T12345678.nope", 404),
            (
                "GET",
                "/v1/accounts/T12345678/terminals/T12345678-T0404",
                404,
            ),
            ("DELETE", "/v1/sessions-profile", 405),
        ] {
            let (status, body) = c.call(method, path, None);
            assert_eq!(status, want, "{method} {path}");
            assert!(
                body["error"]["message"].is_string(),
                "{method} {path}: {body}"
            );
        }
        let (status, body) = c.call("POST", "/v1/sessions-profile", None);
        assert_eq!(status, 400, "{body}");
    })
    .await;
}

#[tokio::test]
async fn terminal_operations_are_idempotent_by_key() {
    scenario(fast(), |c, _| {
        let url = format!("{}/v1/admin/terminals/operations", c.base);
        let send = |key: &str| {
            read(
                c.agent
                    .post(&url)
                    .header("Authorization", format!("Bearer {}", c.token))
                    .header("Idempotency-Key", key)
                    .send_json(json!({"terminal_id": T1, "operation": "end_of_day"})),
            )
        };
        let (status, op) = send("eod-1");
        assert_eq!(status, 200, "{op}");
        assert_eq!(op["status"], "PENDING");
        assert_eq!(send("eod-1").1["id"], op["id"]);
        c.wait_for("the operation to complete", |c| {
            let ops = c.ok(
                "GET",
                &format!("/v1/admin/terminals/operations?terminal_id={T1}"),
                None,
            );
            let mine = ops
                .as_array()?
                .iter()
                .find(|o| o["id"] == op["id"])?
                .clone();
            (mine["status"] == "COMPLETED").then_some(())
        });
        let (status, again) = send("eod-1");
        assert_eq!((status, &again["id"]), (200, &op["id"]));
        assert_eq!(
            again["status"], "COMPLETED",
            "the same operation as it is now"
        );
        let (status, second) = send("eod-2");
        assert_eq!(status, 200, "{second}");
        assert_ne!(second["id"], op["id"]);
        let (status, _) = c.post(
            "/v1/admin/terminals/operations",
            json!({"terminal_id": T1, "operation": "reboot"}),
        );
        assert_eq!(status, 400);
    })
    .await;
}

#[tokio::test]
async fn terminal_list_filters_and_sync_retries_only_a_terminal_in_error() {
    scenario(fast(), |c, _| {
        let all = c.ok("GET", "/v1/accounts/T12345678/terminals", None);
        let ids: Vec<&str> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["terminal_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [T1, T2]);
        assert!(all[0]["status_reason"].is_null(), "{all}");
        let one = c.ok(
            "GET",
            "/v1/accounts/T12345678/terminals?device_serial_number=SIMULATED-T12345678-002",
            None,
        );
        assert_eq!(one.as_array().unwrap().len(), 1);
        assert_eq!(one[0]["terminal_id"], T2);
        let none = c.ok("GET", "/v1/accounts/T12345678/terminals?status=ERROR", None);
        assert!(none.as_array().unwrap().is_empty(), "{none}");

        let sync = format!("/v1/accounts/T12345678/terminals/{T1}/sync");
        let (status, body) = c.call("POST", &sync, None);
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "TERMINAL_NOT_RETRYABLE");
        let (status, body) = c.call(
            "POST",
            "/v1/accounts/T12345678/terminals/T12345678-T9999/sync",
            None,
        );
        assert_eq!((status, &body["error"]["code"]), (404, &json!("NOT_FOUND")));

        c.ok(
            "PUT",
            &format!("/_emulator/terminals/{T1}/status"),
            Some(json!({"status": "ERROR", "status_reason": "SYNC_FAILED"})),
        );
        let broken = c.ok("GET", "/v1/accounts/T12345678/terminals?status=ERROR", None);
        assert_eq!(broken[0]["terminal_id"], T1);
        assert_eq!(broken[0]["status_reason"], "SYNC_FAILED");
        let synced = c.ok("POST", &sync, None);
        assert_eq!(synced["status"], "ACTIVE", "{synced}");
        let t = c.ok(
            "GET",
            &format!("/v1/accounts/T12345678/terminals/{T1}"),
            None,
        );
        assert_eq!(t["status"], "ACTIVE");
        let (status, _) = c.call("POST", &sync, None);
        assert_eq!(status, 409, "synced once, nothing left to retry");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_operation_runs_in_emulated_time_and_keeps_its_terminal_busy() {
    let (emulator, c) = paused_emulator(EmulatorConfig::default()).await;
    let ops = "/v1/admin/terminals/operations";
    let op = blocking(&c, move |c| {
        let (status, body) = c.post(
            ops,
            json!({"terminal_id": "T12345678-T9999", "operation": "end_of_day"}),
        );
        assert_eq!(status, 404, "unknown terminal: {body}");
        let op = c.ok(
            "POST",
            ops,
            Some(json!({"terminal_id": T1, "operation": "check_update"})),
        );
        assert_eq!(op["status"], "PENDING");
        assert_eq!(op["operation"], "check_update");
        let list = c.ok(
            "GET",
            "/v1/accounts/T12345678/terminals?device_serial_number=SIMULATED-T12345678-001",
            None,
        );
        assert_eq!(list[0]["status_reason"], "CHECK_UPDATE");
        let (status, body) = c.post(ops, json!({"terminal_id": T1, "operation": "send_logs"}));
        assert_eq!(
            (status, &body["error"]["code"]),
            (409, &json!("TERMINAL_BUSY")),
            "{body}"
        );
        let (status, body) = c.post("/v1/sessions-profile", order(39900, "kiosk-1-op", T1));
        assert_eq!(
            (status, &body["error"]["code"]),
            (409, &json!("TERMINAL_BUSY")),
            "{body}"
        );
        op
    })
    .await;
    sleep_s(1.1).await;
    let list = format!("{ops}?terminal_id={T1}");
    let now = blocking(&c, move |c| c.ok("GET", &list, None)).await;
    assert_eq!(now[0]["id"], op["id"]);
    assert_eq!(now[0]["status"], "IN_PROGRESS");
    sleep_s(1.0).await;
    blocking(&c, move |c| {
        let list = c.ok("GET", &format!("{ops}?terminal_id={T1}"), None);
        assert_eq!(list[0]["status"], "COMPLETED");
        let t = c.ok(
            "GET",
            "/v1/accounts/T12345678/terminals?device_serial_number=SIMULATED-T12345678-001",
            None,
        );
        assert!(t[0]["status_reason"].is_null(), "{t}");
        // A payment now holds the terminal: the operation is refused, not queued.
        c.create(order(39900, "kiosk-1-op", T1));
        let (status, body) = c.post(ops, json!({"terminal_id": T1, "operation": "open_menu"}));
        assert_eq!(
            (status, &body["error"]["code"]),
            (409, &json!("TERMINAL_BUSY")),
            "{body}"
        );
        let menu = c.ok(
            "POST",
            ops,
            Some(json!({"terminal_id": T2, "operation": "open_menu"})),
        );
        assert_eq!(menu["status"], "PENDING");
    })
    .await;
    emulator.shutdown().await;
}

fn raw_request(
    base: &str,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
) -> std::io::Result<Vec<u8>> {
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let body = body.to_string();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

#[tokio::test]
async fn fault_status_answers_without_doing_the_work() {
    scenario(fast(), |c, _| {
        c.ok(
            "POST",
            "/_emulator/faults",
            Some(json!({"seed": 1, "rules": [
                {"route": "POST /v1/sessions-profile", "kind": "status", "status": 503, "count": 1}]})),
        );
        let (status, body) = c.post("/v1/sessions-profile", order(39900, "kiosk-1-f1", T1));
        assert_eq!(status, 503);
        assert!(body["error"]["message"].is_string());
        assert_eq!(c.ledger()["sessions"], json!([]));
        c.create(order(39900, "kiosk-1-f1", T1));

        c.ok(
            "POST",
            "/_emulator/faults",
            Some(json!({"rules": [{"route": "GET /v1/sessions/{id}", "kind": "status",
                                   "status": 429, "retry_after_s": 7}]})),
        );
        let response = c
            .agent
            .get(format!("{}/v1/sessions/T12345678.any", c.base))
            .header("Authorization", format!("Bearer {}", c.token))
            .call()
            .unwrap();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "7");
        assert_eq!(c.get("/v1/sessions?search=kiosk").0, 200, "only the single-session route");
        let (status, body) = c.post("/_emulator/faults", json!({"rules": [{"route": "nope", "kind": "reset"}]}));
        assert_eq!(status, 400, "{body}");
    })
    .await;
}

#[tokio::test]
async fn fault_delay_does_the_work_and_answers_late() {
    scenario(fast(), |c, _| {
        c.ok(
            "POST",
            "/_emulator/faults",
            Some(json!({"rules": [
                {"route": "POST /v1/sessions-profile", "kind": "delay", "delay_ms": 5000, "count": 1}]})),
        );
        let impatient = agent(Duration::from_millis(300));
        let url = format!("{}/v1/sessions-profile", c.base);
        let result = impatient
            .post(&url)
            .header("Authorization", format!("Bearer {}", c.token))
            .send_json(order(39900, "kiosk-1-f2", T1));
        assert!(result.is_err(), "the answer was held back");
        let sessions = c.ledger()["sessions"].clone();
        assert_eq!(sessions[0]["merchant_reference"], "kiosk-1-f2", "the work was done");
        // Only one hit: the next call is answered at once.
        let (status, _) = c.post("/v1/sessions-profile", order(39900, "kiosk-2-f2", T2));
        assert_eq!(status, 200);
    })
    .await;
}

#[tokio::test]
async fn fault_reset_closes_with_rst_without_doing_the_work() {
    scenario(fast(), |c, base| {
        c.ok(
            "POST",
            "/_emulator/faults",
            Some(json!({"rules": [{"route": "POST /v1/sessions-profile", "kind": "reset"}]})),
        );
        let err = raw_request(
            base,
            "POST",
            "/v1/sessions-profile",
            &c.token,
            &order(39900, "kiosk-1-f3", T1),
        )
        .expect_err("a reset connection");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        assert_eq!(c.ledger()["sessions"], json!([]));
        c.ok("DELETE", "/_emulator/faults", None);
        c.create(order(39900, "kiosk-1-f3", T1));
    })
    .await;
}

#[tokio::test]
async fn fault_drop_response_does_the_work_then_closes_silently() {
    scenario(fast(), |c, base| {
        c.ok(
            "POST",
            "/_emulator/faults",
            Some(json!({"seed": 9, "rules": [
                {"route": "POST /v1/sessions-profile", "kind": "drop_response", "count": 1}]})),
        );
        let answer = raw_request(
            base,
            "POST",
            "/v1/sessions-profile",
            &c.token,
            &order(39900, "kiosk-1-f4", T1),
        )
        .expect("an orderly close");
        assert!(
            answer.is_empty(),
            "no answer at all, got {:?}",
            String::from_utf8_lossy(&answer)
        );
        let sessions = c.ledger()["sessions"].clone();
        assert_eq!(sessions.as_array().unwrap().len(), 1);
        assert_eq!(sessions[0]["merchant_reference"], "kiosk-1-f4");
        // The client finds the payment it never heard about, by its reference.
        let found = c.ok("GET", "/v1/sessions?search=kiosk-1-f4", None);
        assert_eq!(found[0]["id"], sessions[0]["id"]);
    })
    .await;
}

#[tokio::test]
async fn fault_late_work_closes_unanswered_and_creates_the_session_later() {
    scenario(fast(), |c, base| {
        c.ok(
            "POST",
            "/_emulator/faults",
            Some(json!({"rules": [
                {"route": "POST /v1/sessions-profile", "kind": "late_work", "delay_ms": 400, "count": 1}]})),
        );
        let answer = raw_request(
            base,
            "POST",
            "/v1/sessions-profile",
            &c.token,
            &order(39900, "kiosk-1-f5", T1),
        )
        .expect("an orderly close");
        assert!(answer.is_empty(), "no answer at all");
        // A client that looks right away finds nothing ...
        assert_eq!(c.ok("GET", "/v1/sessions?search=kiosk-1-f5", None), json!([]));
        assert_eq!(c.ledger()["sessions"], json!([]));
        // ... and the payment starts all the same, later.
        let found = c.wait_for("the late session", |c| {
            let found = c.ok("GET", "/v1/sessions?search=kiosk-1-f5", None);
            (found != json!([])).then_some(found)
        });
        assert_eq!(found[0]["order"]["merchant_reference"], "kiosk-1-f5", "{found}");
        let faults = c.ok("GET", "/_emulator/faults", None);
        assert_eq!(faults["fired"]["late_work"], 1, "{faults}");
    })
    .await;
}

#[test]
fn a_late_work_rule_needs_its_delay() {
    let plan: FaultPlan = serde_json::from_value(json!({"rules": [
        {"route": "POST /v1/sessions-profile", "kind": "late_work"}]}))
    .unwrap();
    let error = plan.validate().unwrap_err().to_string();
    assert!(
        error.contains("a late_work fault needs \"delay_ms\""),
        "{error}"
    );
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let emulator = spawn(fast()).await.unwrap();
    let addr = emulator.addr();
    assert_eq!(emulator.base_url(), format!("http://{addr}"));
    emulator.shutdown().await;
    let refused = tokio::task::spawn_blocking(move || TcpStream::connect(addr))
        .await
        .unwrap();
    assert!(refused.is_err());
}
