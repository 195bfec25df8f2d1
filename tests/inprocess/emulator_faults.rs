//! The emulator's harder faults, over real loopback HTTP: a terminal that drops off the network
//! mid-payment, and callbacks to `url.callback_url` that are signed, retried, duplicated or
//! late. kioskpay itself polls and never asks for callbacks; these are for integrators and for
//! the emulator's own fidelity.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use kioskpay::dintero::client::{Client, ClientConfig};
use kioskpay::dintero::{
    signature, ApiError, Gateway, Order, OrderItem, SessionProfileRequest, SessionUrl, Store,
    TransactionStatus,
};
use kioskpay::emulator::{self, EmulatorConfig, EmulatorHandle};
use kioskpay::secret::Secret;
use serde_json::{json, Value};

const T1: &str = "T12345678-T0001";

fn client(base: &str) -> Client {
    Client::new(ClientConfig {
        checkout_url: base.into(),
        api_url: base.into(),
        account_id: emulator::ACCOUNT_ID.into(),
        client_id: emulator::CLIENT_ID.into(),
        client_secret: Secret::new(emulator::CLIENT_SECRET),
        connect_timeout: Duration::from_secs(2),
        call_timeout: Duration::from_secs(5),
    })
}

fn session(amount: u64, reference: &str, callback_url: Option<String>) -> SessionProfileRequest {
    SessionProfileRequest {
        profile_id: emulator::PROFILE_ID.into(),
        url: SessionUrl {
            return_url: "https://example.com/r".into(),
            callback_url,
        },
        order: Order {
            amount,
            currency: "NOK".into(),
            merchant_reference: reference.into(),
            merchant_reference_2: None,
            vat_amount: None,
            items: vec![OrderItem {
                id: "cart".into(),
                line_id: "1".into(),
                description: None,
                quantity: 1,
                amount,
                vat_amount: None,
                vat: None,
            }],
            store: Some(Store {
                id: emulator::STORE_ID.into(),
                terminal_id: Some(T1.into()),
                payout_destination_id: Some(emulator::PAYOUT_DESTINATION_ID.into()),
            }),
        },
    }
}

async fn start(faults: Option<Value>, secret: Option<&str>) -> (EmulatorHandle, Client) {
    let emulator = emulator::spawn(EmulatorConfig {
        time_scale: 0.01,
        faults: faults.map(|f| serde_json::from_value(f).unwrap()),
        signature_secret: secret.map(Secret::new),
        ..Default::default()
    })
    .await
    .unwrap();
    let client = client(&emulator.base_url());
    (emulator, client)
}

/// Polls `f` every 20 ms until it returns `Some`; a hang guard, not a timing assertion.
async fn eventually<T>(what: &str, f: impl AsyncFnMut() -> Option<T>) -> T {
    support::wait_for(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|| panic!("gave up waiting for {what}"))
}

/// Well past the moment 39900 would be captured (3 s after the session, times the emulator's
/// 0.01), on paused time: a payment that is still `INITIATED` then was really held.
const LONG_AFTER_THE_CAPTURE: Duration = Duration::from_secs(10);

/// One request the callback receiver got.
#[derive(Clone, Debug)]
struct Received {
    method: String,
    uri: String,
    signature: Option<String>,
    body: String,
}

/// A callback receiver on loopback that answers the scripted statuses in turn, then 200.
struct Receiver {
    base: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(statuses: Vec<u16>) -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(statuses.into_iter()));
        let log = got.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
                let log = log.clone();
                let script = script.clone();
                async move {
                    log.lock().unwrap().push(Received {
                        method: method.to_string(),
                        uri: uri.to_string(),
                        signature: headers
                            .get("dintero-signature")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string),
                        body,
                    });
                    let status = script.lock().unwrap().next().unwrap_or(200);
                    StatusCode::from_u16(status).unwrap()
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { base, got }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn query(r: &Received) -> Vec<(String, String)> {
        let query = r.uri.split_once('?').map_or("", |(_, q)| q);
        form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn param(r: &Received, key: &str) -> Option<String> {
        Receiver::query(r)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

async fn final_status(c: &Client, session_id: &str) -> (String, TransactionStatus) {
    eventually("a final transaction", async || {
        let s = c.get_session(session_id).await.ok()?;
        let tx = c.get_transaction(s.transaction_id.as_deref()?).await.ok()?;
        tx.status.is_final().then_some((tx.id, tx.status))
    })
    .await
}

async fn fault_report(base: &str) -> Value {
    support::request("GET", &format!("{base}/_emulator/faults"), None).await
}

// On paused time: the emulator plays the payment on tokio's clock, so a test that lets the clock
// run on sees exactly what a terminal held for that long does. The client's calls run on the
// blocking pool, which keeps the clock from jumping while one is under way.
#[tokio::test(start_paused = true)]
async fn a_terminal_that_goes_offline_mid_payment_holds_it_until_cancelled() {
    let faults = json!({"seed": 1, "rules": [
        {"route": "POST /v1/sessions-profile", "kind": "terminal_offline", "count": 1}
    ]});
    let (emulator, c) = start(Some(faults), None).await;
    let base = emulator.base_url();
    let id = c
        .create_session(&session(39900, "offline-mid-1", None))
        .await
        .unwrap()
        .id;
    // Picked up, then nothing: the approval that 39900 would get never comes.
    let tx_id = eventually("pickup", async || {
        c.get_session(&id).await.ok()?.transaction_id
    })
    .await;
    tokio::time::sleep(LONG_AFTER_THE_CAPTURE).await;
    let tx = c.get_transaction(&tx_id).await.unwrap();
    assert_eq!(tx.status, TransactionStatus::Initiated);
    let terminal = c.terminal(T1).await.unwrap();
    assert_eq!(terminal.status.as_str(), "ACTIVE", "it still says ACTIVE");
    // The terminal is held: a new payment is refused until the session is cancelled.
    let busy = c
        .create_session(&session(1000, "offline-mid-2", None))
        .await
        .unwrap_err();
    assert!(
        matches!(&busy, ApiError::Rejected { status: 409, code: Some(code), .. } if code == "TERMINAL_BUSY"),
        "{busy:?}"
    );
    c.cancel_session(&id).await.unwrap();
    let (_, status) = final_status(&c, &id).await;
    assert_eq!(status, TransactionStatus::Failed);
    let s = c.get_session(&id).await.unwrap();
    assert!(s.cancelled_at.is_some());
    // The fault fired once, and only once.
    let report = fault_report(&base).await;
    assert_eq!(report["fired"]["terminal_offline"], 1, "{report}");
    assert_eq!(report["hits"], json!([1]));
    let next = c
        .create_session(&session(1000, "offline-mid-3", None))
        .await
        .unwrap()
        .id;
    assert_eq!(final_status(&c, &next).await.1, TransactionStatus::Captured);

    // The control API can ask for the same thing for the next payment.
    support::request(
        "POST",
        &format!("{base}/_emulator/terminals/{T1}/outcome"),
        Some(json!({"outcome": "offline_mid_payment"})),
    )
    .await;
    let id = c
        .create_session(&session(1000, "offline-mid-4", None))
        .await
        .unwrap()
        .id;
    let tx_id = eventually("pickup", async || {
        c.get_session(&id).await.ok()?.transaction_id
    })
    .await;
    tokio::time::sleep(LONG_AFTER_THE_CAPTURE).await;
    assert_eq!(
        c.get_transaction(&tx_id).await.unwrap().status,
        TransactionStatus::Initiated
    );
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_payment_calls_back_once_signed_with_dinteros_parameters() {
    let secret = "callback-secret";
    let (emulator, c) = start(None, Some(secret)).await;
    let receiver = Receiver::start(vec![]).await;
    let callback = format!("{}/dintero/cb?kiosk=7", receiver.base);
    let id = c
        .create_session(&session(39900, "cb-ok-1", Some(callback)))
        .await
        .unwrap()
        .id;
    let (tx_id, _) = final_status(&c, &id).await;
    let got = eventually("the callback", async || {
        let got = receiver.got();
        (!got.is_empty()).then_some(got)
    })
    .await;
    let r = &got[0];
    assert_eq!(r.method, "GET");
    assert!(r.uri.starts_with("/dintero/cb?kiosk=7&"), "{}", r.uri);
    assert_eq!(Receiver::param(r, "transaction_id"), Some(tx_id));
    assert_eq!(Receiver::param(r, "session_id"), Some(id.clone()));
    assert_eq!(
        Receiver::param(r, "merchant_reference").as_deref(),
        Some("cb-ok-1")
    );
    assert!(Receiver::param(r, "time").is_some());
    assert_eq!(Receiver::param(r, "error"), None);
    // The signature checks out with the receiver's own view of the URL.
    let url = format!("{}{}", receiver.base, r.uri);
    let header = r.signature.as_deref().expect("Dintero-Signature is sent");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    signature::verify(
        &Secret::new(secret),
        header,
        emulator::ACCOUNT_ID,
        "GET",
        &url,
        now,
        Duration::from_secs(300),
    )
    .expect("a valid signature");
    assert!(signature::verify(
        &Secret::new("another-secret"),
        header,
        emulator::ACCOUNT_ID,
        "GET",
        &url,
        now,
        Duration::from_secs(300),
    )
    .is_err());
    // Exactly once: a later payment's callback arrives, and this one has not come again.
    let second = c
        .create_session(&session(
            1000,
            "cb-ok-2",
            Some(format!("{}/cb", receiver.base)),
        ))
        .await
        .unwrap()
        .id;
    final_status(&c, &second).await;
    let got = eventually("the second callback", async || {
        let got = receiver.got();
        (got.len() >= 2).then_some(got)
    })
    .await;
    let for_first = got
        .iter()
        .filter(|r| Receiver::param(r, "session_id").as_deref() == Some(id.as_str()))
        .count();
    assert_eq!(for_first, 1);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_reported_only_when_asked_and_post_carries_the_transaction() {
    let (emulator, c) = start(None, None).await;
    let receiver = Receiver::start(vec![]).await;
    // Declined, without report_error: no callback.
    let quiet = c
        .create_session(&session(
            14951,
            "cb-err-1",
            Some(format!("{}/quiet", receiver.base)),
        ))
        .await
        .unwrap()
        .id;
    assert_eq!(final_status(&c, &quiet).await.1, TransactionStatus::Failed);
    // Declined, with report_error and method=POST: one POST with error=authorization and the
    // transaction as its body.
    let loud = c
        .create_session(&session(
            14951,
            "cb-err-2",
            Some(format!(
                "{}/loud?report_error=true&method=POST",
                receiver.base
            )),
        ))
        .await
        .unwrap()
        .id;
    let (tx_id, _) = final_status(&c, &loud).await;
    let got = eventually("the error callback", async || {
        let got = receiver.got();
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert!(r.uri.starts_with("/loud?"), "{}", r.uri);
    assert_eq!(r.method, "POST");
    assert_eq!(
        Receiver::param(r, "error").as_deref(),
        Some("authorization")
    );
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["id"], tx_id.as_str());
    assert_eq!(body["status"], "FAILED");
    assert!(r.signature.is_none(), "no secret, no signature");
    // A cancel by the API client reports error=cancelled.
    let cancelled = c
        .create_session(&session(
            7554,
            "cb-err-3",
            Some(format!("{}/cancel?report_error=true", receiver.base)),
        ))
        .await
        .unwrap()
        .id;
    eventually("pickup", async || {
        c.get_session(&cancelled).await.ok()?.transaction_id
    })
    .await;
    c.cancel_session(&cancelled).await.unwrap();
    let got = eventually("the cancel callback", async || {
        let got = receiver.got();
        (got.len() >= 2).then_some(got)
    })
    .await;
    assert!(got[1].uri.starts_with("/cancel?"), "{}", got[1].uri);
    assert_eq!(
        Receiver::param(&got[1], "error").as_deref(),
        Some("cancelled")
    );
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_is_retried_on_5xx_and_stops_at_4xx() {
    let (emulator, c) = start(None, None).await;
    let retried = Receiver::start(vec![503, 500]).await;
    let id = c
        .create_session(&session(
            1000,
            "cb-retry-1",
            Some(format!("{}/cb", retried.base)),
        ))
        .await
        .unwrap()
        .id;
    final_status(&c, &id).await;
    let got = eventually("three attempts", async || {
        let got = retried.got();
        (got.len() >= 3).then_some(got)
    })
    .await;
    assert!(got
        .iter()
        .all(|r| Receiver::param(r, "session_id").as_deref() == Some(id.as_str())));

    let refused = Receiver::start(vec![410]).await;
    let id = c
        .create_session(&session(
            1000,
            "cb-retry-2",
            Some(format!("{}/cb", refused.base)),
        ))
        .await
        .unwrap()
        .id;
    final_status(&c, &id).await;
    eventually("the refused attempt", async || {
        (!refused.got().is_empty()).then_some(())
    })
    .await;
    // A later callback to the same receiver proves the courier moved on without retrying.
    let later = c
        .create_session(&session(
            1000,
            "cb-retry-3",
            Some(format!("{}/cb", refused.base)),
        ))
        .await
        .unwrap()
        .id;
    final_status(&c, &later).await;
    let got = eventually("the later callback", async || {
        let got = refused.got();
        got.iter()
            .any(|r| Receiver::param(r, "session_id").as_deref() == Some(later.as_str()))
            .then_some(got)
    })
    .await;
    assert_eq!(got.len(), 2, "a 4xx is final: {got:?}");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_can_come_twice_or_late() {
    let faults = json!({"seed": 3, "rules": [
        {"route": "callback", "kind": "callback_twice", "count": 1},
        {"route": "callback", "kind": "callback_late", "delay_ms": 3000, "count": 1}
    ]});
    let (emulator, c) = start(Some(faults), None).await;
    let base = emulator.base_url();
    let receiver = Receiver::start(vec![]).await;
    let twice = c
        .create_session(&session(
            1000,
            "cb-twice",
            Some(format!("{}/cb", receiver.base)),
        ))
        .await
        .unwrap()
        .id;
    final_status(&c, &twice).await;
    let got = eventually("two deliveries", async || {
        let got = receiver.got();
        (got.len() >= 2).then_some(got)
    })
    .await;
    assert_eq!(got[0].uri, got[1].uri, "the same callback, twice");

    let late = c
        .create_session(&session(
            1000,
            "cb-late",
            Some(format!("{}/cb", receiver.base)),
        ))
        .await
        .unwrap()
        .id;
    final_status(&c, &late).await;
    let for_late = |got: &[Received]| {
        got.iter()
            .filter(|r| Receiver::param(r, "session_id").as_deref() == Some(late.as_str()))
            .count()
    };
    // Captured at 35 ms of emulated time; the callback is held 3 s beyond that.
    assert_eq!(
        for_late(&receiver.got()),
        0,
        "the late callback is not there yet"
    );
    eventually("the late callback", async || {
        (for_late(&receiver.got()) == 1).then_some(())
    })
    .await;
    let report = fault_report(&base).await;
    assert_eq!(report["fired"]["callback_twice"], 1, "{report}");
    assert_eq!(report["fired"]["callback_late"], 1, "{report}");
    emulator.shutdown().await;
}

#[tokio::test]
async fn callback_rules_are_checked() {
    let bad = [
        json!({"rules": [{"route": "GET /v1/sessions/{id}", "kind": "callback_twice"}]}),
        json!({"rules": [{"route": "callback", "kind": "reset"}]}),
        json!({"rules": [{"route": "callback", "kind": "callback_late"}]}),
        json!({"rules": [{"route": "GET /v1/sessions/{id}", "kind": "terminal_offline"}]}),
    ];
    for plan in bad {
        let plan: kioskpay::emulator::FaultPlan = serde_json::from_value(plan.clone()).unwrap();
        let err = plan.validate().unwrap_err().to_string();
        assert!(err.contains("fault rule 0"), "{err}");
    }
}
