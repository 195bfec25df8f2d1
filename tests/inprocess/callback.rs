//! The signed-callback fast path end to end: a kiosk with `[callback]`, wired as `kioskpay run`
//! wires it, against the emulator sending Dintero's signed callbacks, on loopback sockets.
//!
//! What the kiosk does is measured by what it asks Dintero (a gateway that counts reads and
//! cancels), never by the clock: the waits below are hang guards.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kioskpay::cart::{Cart, CartSource};
use kioskpay::config::Config;
use kioskpay::daemon::{InputWiring, Kiosk};
use kioskpay::dintero::client::{Client, ClientConfig};
use kioskpay::dintero::{
    signature, ApiError, CreatedSession, Gateway, RefundOutcome, RefundRequest, Session,
    SessionProfileRequest, Terminal, Transaction, TransactionQuery,
};
use kioskpay::emulator::{self, EmulatorConfig, EmulatorHandle, FaultPlan};
use kioskpay::messages::InputEvent;
use kioskpay::money::{Currency, Money};
use kioskpay::payment::phase::Final;
use kioskpay::secret::Secret;
use kioskpay::state::KioskState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support;

const SECRET: &str = "callback-signature-secret-for-tests";
const GUARD: Duration = Duration::from_secs(60);

/// The real client, counting what the flow asks.
struct Counting {
    inner: Client,
    session_reads: AtomicUsize,
    transaction_reads: AtomicUsize,
    cancels: AtomicUsize,
}

impl Counting {
    fn reads(&self) -> (usize, usize) {
        (
            self.session_reads.load(Ordering::SeqCst),
            self.transaction_reads.load(Ordering::SeqCst),
        )
    }
}

impl Gateway for Counting {
    async fn create_session(
        &self,
        request: &SessionProfileRequest,
    ) -> Result<CreatedSession, ApiError> {
        self.inner.create_session(request).await
    }
    async fn get_session(&self, id: &str) -> Result<Session, ApiError> {
        self.session_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_session(id).await
    }
    async fn search_sessions(&self, text: &str) -> Result<Vec<Session>, ApiError> {
        self.inner.search_sessions(text).await
    }
    async fn get_transaction(&self, id: &str) -> Result<Transaction, ApiError> {
        self.transaction_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_transaction(id).await
    }
    async fn list_transactions(
        &self,
        query: &TransactionQuery,
    ) -> Result<Vec<Transaction>, ApiError> {
        self.inner.list_transactions(query).await
    }
    async fn cancel_session(&self, id: &str) -> Result<(), ApiError> {
        self.cancels.fetch_add(1, Ordering::SeqCst);
        self.inner.cancel_session(id).await
    }
    async fn refund(
        &self,
        transaction_id: &str,
        request: &RefundRequest,
    ) -> Result<RefundOutcome, ApiError> {
        self.inner.refund(transaction_id, request).await
    }
    async fn terminal(&self, terminal_id: &str) -> Result<Terminal, ApiError> {
        self.inner.terminal(terminal_id).await
    }
    async fn ensure_token(&self) -> Result<(), ApiError> {
        self.inner.ensure_token().await
    }
}

/// An idle kiosk with `[callback]` on a free loopback port, and the emulator signing its
/// callbacks with the same secret.
struct Setup {
    kiosk: Kiosk,
    gateway: Arc<Counting>,
    emulator: EmulatorHandle,
    addr: SocketAddr,
    public_url: String,
    dir: tempfile::TempDir,
}

async fn setup(time_scale: f64, faults: Option<serde_json::Value>, payment: &str) -> Setup {
    let faults = faults.map(|f| serde_json::from_value::<FaultPlan>(f).unwrap());
    let emulator = emulator::spawn(EmulatorConfig {
        time_scale,
        faults,
        signature_secret: Some(Secret::new(SECRET)),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("callback_secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The public URL must name the port before the kiosk binds it: a port the OS just gave out.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public_url = format!("http://127.0.0.1:{port}/dintero/callback");
    let extra = format!(
        "[payment]\n{payment}\n[callback]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"{public_url}\"\nsignature_secret_file = {:?}\n",
        secret_file.display().to_string()
    );
    let config = Config::load(&support::write_config(
        dir.path(),
        &emulator.base_url(),
        &extra,
    ))
    .unwrap();
    let gateway = Arc::new(Counting {
        inner: Client::new(ClientConfig::from_config(&config.dintero).unwrap()),
        session_reads: AtomicUsize::new(0),
        transaction_reads: AtomicUsize::new(0),
        cancels: AtomicUsize::new(0),
    });
    let kiosk = Kiosk::start(&config, gateway.clone(), InputWiring::External).unwrap();
    let addr = kiosk.callback_addr.expect("the listener is bound");
    let mut states = kiosk.state.clone();
    tokio::time::timeout(GUARD, states.wait_for(|s| *s == KioskState::Idle))
        .await
        .expect("idle")
        .unwrap();
    Setup {
        kiosk,
        gateway,
        emulator,
        addr,
        public_url,
        dir,
    }
}

impl Setup {
    async fn pay(&self, minor: u64) {
        self.kiosk
            .inputs
            .send(InputEvent::Cart(Cart {
                amount: Money::new(minor, Currency::NOK),
                reference: None,
                source: CartSource::Serial,
            }))
            .await
            .unwrap();
    }

    /// A callback request for `query` signed at `t` with `secret`, as Dintero would send it.
    fn signed(&self, query: &str, t: u64, secret: &str) -> Vec<u8> {
        let url = format!("{}?{query}", self.public_url);
        let header = signature::sign(&Secret::new(secret), t, emulator::ACCOUNT_ID, "GET", &url);
        format!(
            "GET /dintero/callback?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nDintero-Signature: {header}\r\n\r\n"
        )
        .into_bytes()
    }

    async fn stop(self) {
        self.kiosk.stop().await.unwrap();
        self.emulator.shutdown().await;
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sends `bytes`, half-closes, and returns the answer's status code ("" if the connection
/// was closed without one).
async fn send(addr: SocketAddr, bytes: &[u8]) -> String {
    tokio::time::timeout(GUARD, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(bytes).await;
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer)
            .get(9..12)
            .unwrap_or_default()
            .to_string()
    })
    .await
    .expect("an answer or a close")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_callback_has_the_kiosk_read_the_approval_long_before_its_next_poll() {
    // Polls 10 s apart and a 10 s kiosk timeout: a payment the kiosk learned of by polling
    // alone would be read at the timeout, and cancelled there (the payment then wins). The
    // callback is held back until the capture (the emulator calls at the authorization).
    let faults = serde_json::json!({"seed": 1, "rules": [
        {"route": "callback", "kind": "callback_late", "delay_ms": 300}
    ]});
    let mut s = setup(
        0.01,
        Some(faults),
        "poll_interval_ms = 10000\ntimeout_s = 10\npickup_timeout_s = 5",
    )
    .await;
    s.pay(39900).await;
    let report = tokio::time::timeout(GUARD, s.kiosk.reports.recv())
        .await
        .expect("an outcome")
        .unwrap();
    assert!(
        matches!(report.outcome, Final::Approved { .. }),
        "{report:?}"
    );
    // One read right after the create and one after the callback: the 10 s poll never came,
    // so the kiosk never reached its timeout and never cancelled.
    assert_eq!(s.gateway.cancels.load(Ordering::SeqCst), 0);
    let (sessions, transactions) = s.gateway.reads();
    assert!(
        (1..=2).contains(&transactions) && sessions <= 4,
        "{sessions} session and {transactions} transaction reads"
    );
    assert!(s.kiosk.counters.callbacks.verified.load(Ordering::SeqCst) >= 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_replayed_callbacks_do_not_make_the_kiosk_read() {
    // A payment the terminal picks up after 2.5 s and holds for minutes (amount ending 57 on
    // a clock 5 times slower), polled 10 s apart: within the test, every read after the first
    // is one a callback asked for.
    let s = setup(
        5.0,
        None,
        "poll_interval_ms = 10000\ntimeout_s = 600\npickup_timeout_s = 30",
    )
    .await;
    s.pay(10057).await;
    let base = s.emulator.base_url();
    let session = support::wait_for(GUARD, async || {
        let ledger = support::ledger(&base).await;
        let picked_up = &ledger["sessions"][0];
        picked_up["transaction_id"].as_str()?;
        picked_up["id"].as_str().map(str::to_string)
    })
    .await
    .expect("the terminal picks the session up");
    let query = |n: u32| format!("session_id={session}&merchant_reference=x&time=t&n={n}");
    // Once the journal holds the transaction id, the read that found it is over, and from then
    // on each read the flow makes is exactly one transaction read. The read right after the
    // create came before the pickup, unless the machine is slow; then a first callback has the
    // kiosk read the payment and find it.
    let state = s.dir.path().join("state");
    let journaled = || {
        kioskpay::journal::read_only(&state)
            .ok()
            .and_then(|j| j.payments.last().and_then(|p| p.transaction_id.clone()))
            .is_some()
    };
    if !journaled() {
        assert_eq!(
            send(s.addr, &s.signed(&query(0), now(), SECRET)).await,
            "200"
        );
        assert!(
            support::wait_until(GUARD, journaled).await,
            "the first callback had the payment read"
        );
    }
    let before = s.gateway.reads().1;

    let refused = [
        s.signed(&query(1), now(), "not-the-secret"),
        s.signed(&query(1), now() - 600, SECRET),
        format!("GET /dintero/callback?{} HTTP/1.1\r\n\r\n", query(1)).into_bytes(),
    ];
    for request in &refused {
        assert_eq!(send(s.addr, request).await, "401");
    }
    let valid = s.signed(&query(1), now(), SECRET);
    assert_eq!(send(s.addr, &valid).await, "200");
    assert_eq!(send(s.addr, &valid).await, "200", "a replay is answered");
    let other = s.signed("session_id=T12345678.someone-else", now(), SECRET);
    assert_eq!(
        send(s.addr, &other).await,
        "200",
        "another payment's callback"
    );
    // The flow takes nudges in order: once a last valid callback has been read for, every
    // nudge before it has been acted on.
    assert_eq!(
        send(s.addr, &s.signed(&query(2), now(), SECRET)).await,
        "200"
    );
    assert!(
        support::wait_until(GUARD, || s.gateway.reads().1 >= before + 2).await,
        "the valid callbacks had the payment read"
    );
    assert_eq!(
        s.gateway.reads().1,
        before + 2,
        "one read per valid, new callback for this payment; none for the forged, stale, \
         unsigned, replayed or another payment's"
    );
    assert_eq!(s.gateway.cancels.load(Ordering::SeqCst), 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kiosks_listener_refuses_oversized_heads_survives_garbage_and_rate_limits() {
    let s = setup(1.0, None, "").await;
    let huge = format!(
        "GET /dintero/callback?a=b HTTP/1.1\r\nX-Padding: {}\r\n\r\n",
        "p".repeat(16 * 1024)
    );
    assert_eq!(send(s.addr, huge.as_bytes()).await, "431");
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..10 {
        let bytes: Vec<u8> = (0..rng.usize(1..4096)).map(|_| rng.u8(..)).collect();
        let status = send(s.addr, &bytes).await;
        assert!(
            status.is_empty() || status == "400" || status == "431",
            "{status}"
        );
    }
    assert_eq!(
        send(s.addr, &s.signed("session_id=x", now(), SECRET)).await,
        "200",
        "still serving after garbage"
    );
    // 10 a second with a burst of 20: a quick run of requests meets the limit.
    let mut limited = false;
    for _ in 0..200 {
        if send(s.addr, b"GET /dintero/callback HTTP/1.1\r\n\r\n").await == "429" {
            limited = true;
            break;
        }
    }
    assert!(limited, "no 429 in 200 requests");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_stops_the_kiosk_from_starting_and_says_what_to_change() {
    let emulator = support::emulator(1.0).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("callback_secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let extra = format!(
        "[callback]\nbind = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}/cb\"\nsignature_secret_file = {:?}\n",
        secret_file.display().to_string()
    );
    let config = Config::load(&support::write_config(
        dir.path(),
        &emulator.base_url(),
        &extra,
    ))
    .unwrap();
    let client = Client::new(ClientConfig::from_config(&config.dintero).unwrap());
    let Err(e) = Kiosk::start(&config, Arc::new(client), InputWiring::External) else {
        panic!("started on a port in use");
    };
    let message = e.to_string();
    assert!(
        message.contains(&format!("callback.bind = 127.0.0.1:{port}"))
            && message.contains("another process"),
        "{message}"
    );
    assert!(!message.contains(SECRET));
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_listener_logs_refusals_and_callbacks_without_secret_or_signature() {
    use kioskpay::callback::{CallbackConfig, CallbackCounts, Listener, PublicUrl};
    let (log, _guard) = support::log::capture();
    let public_url = "http://127.0.0.1/dintero/callback";
    let config = CallbackConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        public_url: PublicUrl::parse(public_url).unwrap(),
        signature_secret_file: "/nonexistent".into(),
        signature_secret: Some(Secret::new(SECRET)),
    };
    let (tx, mut nudges) = tokio::sync::mpsc::channel(8);
    let listener = Listener::bind(
        &config,
        emulator::ACCOUNT_ID,
        tx,
        Arc::new(CallbackCounts::default()),
    )
    .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(listener.run(async move {
        let _ = stopped.await;
    }));
    let query = "session_id=T12345678.s1&transaction_id=T12345678.t1";
    let url = format!("{public_url}?{query}");
    let header = signature::sign(
        &Secret::new("forged"),
        now(),
        emulator::ACCOUNT_ID,
        "GET",
        &url,
    );
    let forged =
        format!("GET /dintero/callback?{query} HTTP/1.1\r\nDintero-Signature: {header}\r\n\r\n");
    assert_eq!(send(addr, forged.as_bytes()).await, "401");
    let header = signature::sign(
        &Secret::new(SECRET),
        now(),
        emulator::ACCOUNT_ID,
        "GET",
        &url,
    );
    let valid =
        format!("GET /dintero/callback?{query} HTTP/1.1\r\nDintero-Signature: {header}\r\n\r\n");
    assert_eq!(send(addr, valid.as_bytes()).await, "200");
    assert!(nudges.try_recv().is_ok());
    let _ = stop.send(());
    served.await.unwrap();

    let all = log.all();
    assert_eq!(log.lines("callback refused").len(), 1, "{all}");
    assert!(
        log.lines("callback refused")[0].contains("does not match"),
        "{all}"
    );
    assert_eq!(log.lines("signed callback").len(), 1, "{all}");
    let signature_hex = header.rsplit('=').next().unwrap();
    assert!(
        !all.contains(SECRET) && !all.contains(signature_hex),
        "{all}"
    );
}
