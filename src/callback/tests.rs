//! The listener on real loopback sockets, and its judgement against Dintero's published vector.

use super::*;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

// Dintero's published vector (/work/shared/dintero/signature-test-vector.json).
const VECTOR_SECRET: &str = "123";
const VECTOR_TIMESTAMP: u64 = 1582236537;
const VECTOR_ACCOUNT: &str = "P00000000";
const VECTOR_HEADER: &str =
    "t=1582236537,v0-hmac-sha256=6bed2ab1b919d460ef7465a20dc6c97260dca73fab6647106ca525f0908df64a";

const SECRET: &str = "callback-secret-for-tests";
const ACCOUNT: &str = "T12345678";
const PUBLIC: &str = "https://kiosk-1.example.com/dintero/callback";
/// A hang guard, never a timing assertion.
const GUARD: Duration = Duration::from_secs(30);

fn config(public_url: &str, secret: &str) -> CallbackConfig {
    CallbackConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        public_url: PublicUrl::parse(public_url).unwrap(),
        signature_secret_file: "/nonexistent".into(),
        signature_secret: Some(Secret::new(secret)),
    }
}

struct Running {
    addr: SocketAddr,
    nudges: mpsc::Receiver<CallbackNudge>,
    counts: Arc<CallbackCounts>,
    _stop: oneshot::Sender<()>,
}

fn start(limits: Limits) -> Running {
    let (tx, nudges) = mpsc::channel(8);
    let counts = Arc::new(CallbackCounts::default());
    let listener =
        Listener::bind_with(&config(PUBLIC, SECRET), ACCOUNT, tx, counts.clone(), limits).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(listener.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        nudges,
        counts,
        _stop: stop,
    }
}

/// Sends `bytes`, half-closes, and reads the whole answer.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    tokio::time::timeout(GUARD, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The listener may answer and close before all of a large request is written.
        let _ = stream.write_all(bytes).await;
        let _ = stream.shutdown().await;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    })
    .await
    .expect("an answer")
}

fn status(answer: &str) -> &str {
    answer.get(9..12).unwrap_or(answer)
}

fn now() -> u64 {
    unix_now()
}

/// A callback request for `query` signed at `t` with `secret`.
fn signed(method: &str, query: &str, t: u64, secret: &str) -> Vec<u8> {
    let url = format!("{PUBLIC}?{query}");
    let header = signature::sign(&Secret::new(secret), t, ACCOUNT, method, &url);
    format!(
        "{method} /dintero/callback?{query} HTTP/1.1\r\nHost: kiosk-1.example.com\r\n\
         Dintero-Signature: {header}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

const QUERY: &str = "report_error=true&transaction_id=T12345678.tx1&session_id=T12345678.s1\
                     &merchant_reference=kiosk-1-20261205-000001&time=2026-12-05T05%3A00%3A00Z";

#[test]
fn the_published_vector_verifies_against_the_public_urls_host_and_path() {
    let (tx, _rx) = mpsc::channel(1);
    let config = config("https://example.com/callback", VECTOR_SECRET);
    let shared = Shared {
        secret: config.signature_secret.clone().unwrap(),
        account_id: VECTOR_ACCOUNT.into(),
        public_url: config.public_url,
        limits: LIMITS,
        bucket: Mutex::new(Bucket::new(1.0, 5.0, Instant::now())),
        replays: Mutex::new(Replays::default()),
        warnings: Mutex::new(Warnings::default()),
        nudges: tx,
        counts: Arc::default(),
    };
    // A proxy forwarded it to another path on another host: the signature still holds, since
    // it covers the URL Dintero called.
    let head = |signature: &str, target: &str| Head {
        method: "GET".into(),
        target: target.into(),
        signature: Some(signature.as_bytes().to_vec()),
        content_length: None,
    };
    let at = Instant::now();
    assert_eq!(
        shared.judge(
            &head(VECTOR_HEADER, "/cb?B=123&A=992"),
            VECTOR_TIMESTAMP + 10,
            at
        ),
        Verdict::Nudge(CallbackNudge::default())
    );
    assert_eq!(
        shared.judge(
            &head(VECTOR_HEADER, "/cb?A=992&B=123"),
            VECTOR_TIMESTAMP + 10,
            at
        ),
        Verdict::Replay,
        "the same payload with the query reordered is a replay"
    );
    assert!(matches!(
        shared.judge(
            &head(VECTOR_HEADER, "/cb?B=124&A=992"),
            VECTOR_TIMESTAMP + 10,
            at
        ),
        Verdict::Refused(Status::Unauthorized, _)
    ));
    assert!(matches!(
        shared.judge(
            &head(VECTOR_HEADER, "/cb?B=123&A=992"),
            VECTOR_TIMESTAMP + 301,
            at
        ),
        Verdict::Refused(Status::Unauthorized, why) if why.contains("NTP")
    ));
}

#[tokio::test]
async fn a_signed_callback_nudges_once_and_its_replay_answers_200_without_effect() {
    let mut l = start(LIMITS);
    let request = signed("GET", QUERY, now(), SECRET);
    let answer = exchange(l.addr, &request).await;
    assert_eq!(status(&answer), "200", "{answer}");
    assert!(answer.contains("Connection: close"), "{answer}");
    let nudge = l.nudges.try_recv().expect("a nudge before the answer");
    assert_eq!(nudge.session_id.as_deref(), Some("T12345678.s1"));
    assert_eq!(nudge.transaction_id.as_deref(), Some("T12345678.tx1"));

    let again = exchange(l.addr, &request).await;
    assert_eq!(status(&again), "200", "{again}");
    assert!(l.nudges.try_recv().is_err(), "a replay nudges nothing");
    assert_eq!(l.counts.verified.load(Ordering::Relaxed), 1);
    assert_eq!(l.counts.rejected.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_post_with_a_body_is_verified_and_its_body_ignored() {
    let mut l = start(LIMITS);
    let query = format!("method=POST&{QUERY}");
    let url = format!("{PUBLIC}?{query}");
    let header = signature::sign(&Secret::new(SECRET), now(), ACCOUNT, "POST", &url);
    let body = r#"{"status":"CAPTURED","amount":99999999}"#;
    let request = format!(
        "POST /dintero/callback?{query} HTTP/1.1\r\nDintero-Signature: {header}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(l.addr, request.as_bytes()).await;
    assert_eq!(status(&answer), "200", "{answer}");
    assert_eq!(
        l.nudges.try_recv().unwrap(),
        CallbackNudge {
            session_id: Some("T12345678.s1".into()),
            transaction_id: Some("T12345678.tx1".into()),
        },
        "ids only: nothing of the body"
    );
}

#[tokio::test]
async fn unsigned_forged_stale_and_future_callbacks_are_refused_without_effect() {
    let mut l = start(LIMITS);
    let t = now();
    let unsigned = format!("GET /dintero/callback?{QUERY} HTTP/1.1\r\n\r\n");
    let forged = signed("GET", QUERY, t, "another-secret");
    let stale = signed("GET", QUERY, t - 600, SECRET);
    let future = signed("GET", QUERY, t + 600, SECRET);
    let garbled = format!(
        "GET /dintero/callback?{QUERY} HTTP/1.1\r\nDintero-Signature: t=x,v0-hmac-sha256=zz\r\n\r\n"
    );
    // Signed for GET, sent as POST: the method is signed too.
    let other_method = String::from_utf8(signed("GET", QUERY, t, SECRET))
        .unwrap()
        .replacen("GET", "POST", 1);
    let requests = [
        unsigned.into_bytes(),
        forged,
        stale,
        future,
        garbled.into_bytes(),
        other_method.into_bytes(),
    ];
    for request in &requests {
        let answer = exchange(l.addr, request).await;
        assert_eq!(
            status(&answer),
            "401",
            "{}: {answer}",
            String::from_utf8_lossy(request)
        );
    }
    assert!(l.nudges.try_recv().is_err());
    assert_eq!(l.counts.verified.load(Ordering::Relaxed), 0);
    assert_eq!(
        l.counts.rejected.load(Ordering::Relaxed),
        requests.len() as u64
    );
}

#[tokio::test]
async fn oversized_heads_and_bodies_other_methods_and_garbage_are_refused() {
    let mut l = start(LIMITS);
    let long_head = format!(
        "GET /dintero/callback?{QUERY} HTTP/1.1\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(9 * 1024)
    );
    let many_headers = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "X-A: b\r\n".repeat(MAX_HEADERS + 1)
    );
    let big_body = "POST / HTTP/1.1\r\nContent-Length: 1000000\r\n\r\n";
    let bad_length = "POST / HTTP/1.1\r\nContent-Length: lots\r\n\r\n";
    let cases: [(&[u8], &str); 7] = [
        (long_head.as_bytes(), "431"),
        (many_headers.as_bytes(), "431"),
        (big_body.as_bytes(), "413"),
        (bad_length.as_bytes(), "400"),
        (b"DELETE / HTTP/1.1\r\n\r\n", "405"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "400"),
        (b"GET / HTTP/1.1\r\nHost: x", "400"),
    ];
    for (request, want) in cases {
        let answer = exchange(l.addr, request).await;
        assert_eq!(
            status(&answer),
            want,
            "{}: {answer}",
            String::from_utf8_lossy(request)
        );
    }
    assert!(l.nudges.try_recv().is_err());
}

#[tokio::test]
async fn random_bytes_never_break_the_listener() {
    let mut l = start(LIMITS);
    let mut rng = fastrand::Rng::with_seed(13);
    for round in 0..200 {
        let len = rng.usize(0..3000);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        // Half of them look like the start of a request, so the parser gets further.
        if round % 2 == 0 {
            let mut head = format!("GET /dintero/callback?{QUERY} HTTP/1.1\r\n").into_bytes();
            head.append(&mut bytes);
            bytes = head;
        }
        let answer = exchange(l.addr, &bytes).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 "),
            "{answer}"
        );
    }
    assert!(l.nudges.try_recv().is_err());
    let answer = exchange(l.addr, &signed("GET", QUERY, now(), SECRET)).await;
    assert_eq!(status(&answer), "200", "still serving: {answer}");
}

#[tokio::test]
async fn over_the_rate_limit_answers_429_before_any_hmac() {
    let mut l = start(Limits {
        rate_per_s: 0.0,
        burst: 3.0,
        ..LIMITS
    });
    for i in 0..3 {
        let answer = exchange(l.addr, &signed("GET", &format!("n={i}"), now(), SECRET)).await;
        assert_eq!(status(&answer), "200", "{answer}");
    }
    let answer = exchange(l.addr, &signed("GET", QUERY, now(), SECRET)).await;
    assert_eq!(status(&answer), "429", "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    for _ in 0..3 {
        assert!(l.nudges.try_recv().is_ok());
    }
    assert!(l.nudges.try_recv().is_err());
}

#[tokio::test]
async fn a_client_that_never_finishes_its_head_gets_408() {
    let l = start(Limits {
        read_timeout: Duration::from_millis(100),
        ..LIMITS
    });
    let mut slow = TcpStream::connect(l.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(GUARD, slow.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status(&answer), "408", "{answer}");
    assert_eq!(l.counts.rejected.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_are_turned_away_with_503() {
    let mut l = start(Limits {
        max_connections: 1,
        ..LIMITS
    });
    // Holds the only slot: connected and accepted first, and it never sends its head.
    let _slow = TcpStream::connect(l.addr).await.unwrap();
    let busy = exchange(l.addr, &signed("GET", QUERY, now(), SECRET)).await;
    // The refusal is written without reading the request; the peer may see it or a reset.
    assert!(busy.is_empty() || status(&busy) == "503", "{busy}");
    assert!(l.nudges.try_recv().is_err());
    assert_eq!(l.counts.rejected.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_port_in_use_is_an_error_that_says_what_to_change() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = config(PUBLIC, SECRET);
    config.bind = taken.local_addr().unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let Err(e) = Listener::bind(&config, ACCOUNT, tx.clone(), Arc::default()) else {
        panic!("bound a port in use");
    };
    let message = e.to_string();
    assert!(
        message.contains("callback.bind") && message.contains("another process"),
        "{message}"
    );
    config.signature_secret = None;
    let Err(e) = Listener::bind(&config, ACCOUNT, tx, Arc::default()) else {
        panic!("bound without a secret");
    };
    assert!(e.to_string().contains("Config::load"), "{e}");
    assert!(!message.contains(SECRET));
}
