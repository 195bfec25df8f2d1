//! `kioskpay run` as systemd runs it: sd_notify on a fake `NOTIFY_SOCKET`, SIGTERM with a
//! payment in flight, recovery before READY=1, watchdog pings, SIGHUP reloads, and the metrics
//! text file for node_exporter.

mod support;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use kioskpay::journal::{self, Outcome};

/// A fake service manager: the datagrams the daemon sends to `NOTIFY_SOCKET`.
struct Manager {
    socket: UnixDatagram,
    seen: Vec<String>,
    /// The daemon's log, quoted when an expected notification does not come.
    log: std::path::PathBuf,
}

impl Manager {
    fn bind(path: &Path, log: &Path) -> Manager {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Manager {
            socket,
            seen: Vec::new(),
            log: log.to_path_buf(),
        }
    }

    /// Reads notifications until one equals `line`; returns how many came before it. Panics
    /// (hang guard) after 60 s.
    fn wait_for(&mut self, line: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 4096];
        let start = self.seen.len();
        loop {
            if let Some(i) = self.seen[start..].iter().position(|l| l == line) {
                return start + i;
            }
            assert!(
                Instant::now() < deadline,
                "no {line:?} from the daemon; got {:?}; its log:\n{}",
                self.seen,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            if let Ok(n) = self.socket.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.extend(text.lines().map(str::to_string));
            }
        }
    }
}

fn sigterm(child: &Child) {
    signal(child, libc::SIGTERM);
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Waits for the child to exit (hang guard 40 s: longer than the unit's TimeoutStopSec).
fn wait_exit(mut child: Child) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (status, text);
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn journal_payment(state: &Path) -> Option<journal::PaymentRecord> {
    journal::read_only(state)
        .ok()
        .and_then(|r| r.payments.into_iter().next())
}

/// Checks every line of a Prometheus text file; returns the samples by name and labels.
fn parse_prom(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut typed = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert!(
            typed.iter().any(|t| name.starts_with(t.as_str())),
            "{name} has no TYPE line before it"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for pair in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                    assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
                }
            }
        }
        samples.push((series.to_string(), value));
    }
    samples
}

fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .unwrap_or_else(|| panic!("{series} missing from {samples:?}"))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_journals_the_payment_and_the_next_start_is_ready_only_after_recovery() {
    let Some(mut first) = support::kioskpay_bin() else {
        return;
    };
    // Real-time emulator: an amount ending in 54 waits 90 s for a card that never comes.
    let emulator = support::emulator(1.0).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let path = support::write_config(
        dir.path(),
        &emulator.base_url(),
        "[input]\nkind = \"stdin\"\nformats = [\"plain\"]\n[payment]\npoll_interval_ms = 100\ntimeout_s = 600\n",
    );
    let mut child = first
        .args(["run", "--config", path.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"100.54;HANG\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while journal_payment(&state).is_none_or(|p| p.state != "waiting_for_card") {
        assert!(
            Instant::now() < deadline,
            "the payment never reached waiting_for_card"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&child);
    let (status, output) = tokio::task::spawn_blocking(move || wait_exit(child))
        .await
        .unwrap();
    drop(stdin);
    assert!(status.success(), "{output}");
    assert!(output.contains("payment in flight"), "{output}");
    let payment = journal_payment(&state).unwrap();
    assert_eq!(payment.outcome, None, "the payment is not over at Dintero");
    assert_eq!(payment.state, "interrupted_waiting_for_card");
    assert!(payment.session_id.is_some());

    // The next start: the shortest kiosk timeout (10 s) makes recovery cancel the payment.
    let path = support::write_config(
        dir.path(),
        &emulator.base_url(),
        "[input]\nkind = \"stdin\"\nformats = [\"plain\"]\n[payment]\npoll_interval_ms = 100\ntimeout_s = 10\npickup_timeout_s = 5\n\
         [metrics]\ntextfile = \"METRICS\"\ninterval_s = 1\n",
    );
    let metrics = dir.path().join("kioskpay.prom");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("METRICS", metrics.to_str().unwrap());
    std::fs::write(&path, &text).unwrap();
    let log = dir.path().join("second-run.log");
    let mut manager = Manager::bind(&dir.path().join("notify.sock"), &log);
    let mut child = support::kioskpay_bin()
        .unwrap()
        .args(["run", "--config", path.to_str().unwrap()])
        .env("NOTIFY_SOCKET", dir.path().join("notify.sock"))
        .env("WATCHDOG_USEC", "900000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let ready_at = tokio::task::spawn_blocking(move || {
        let at = manager.wait_for("READY=1");
        (manager, at)
    })
    .await
    .unwrap();
    let (mut manager, ready_at) = ready_at;
    let recovered = journal_payment(&state).unwrap();
    assert_eq!(
        recovered.outcome,
        Some(Outcome::TimedOut),
        "READY=1 came before recovery finished"
    );
    let before: Vec<_> = manager.seen[..ready_at].to_vec();
    assert!(
        before
            .iter()
            .any(|l| l == "STATUS=starting" || l == "STATUS=checking"),
        "{before:?}"
    );
    assert_eq!(before.last().map(String::as_str), Some("STATUS=idle"));

    // The flow is turning: the watchdog is fed.
    let manager = tokio::task::spawn_blocking(move || {
        manager.wait_for("WATCHDOG=1");
        manager
    })
    .await
    .unwrap();

    // The metrics file says what happened, in the textfile collector's format.
    let deadline = Instant::now() + Duration::from_secs(30);
    let samples = loop {
        if let Ok(text) = std::fs::read_to_string(&metrics) {
            let samples = parse_prom(&text);
            if sample(&samples, "kioskpay_ready") == 1.0 {
                break samples;
            }
        }
        assert!(Instant::now() < deadline, "no metrics file with ready 1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        sample(&samples, "kioskpay_payments_total{outcome=\"timed_out\"}"),
        1.0
    );
    assert_eq!(
        sample(&samples, "kioskpay_payments_total{outcome=\"approved\"}"),
        0.0
    );
    assert!(sample(&samples, "kioskpay_journal_bytes") > 0.0);
    assert_eq!(sample(&samples, "kioskpay_state{state=\"idle\"}"), 1.0);
    assert!(!std::fs::read_dir(dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));

    // SIGHUP: a lower max_amount is in force at once; a changed input section needs a restart.
    let reloaded = text.replace("max_amount = 1000000", "max_amount = 1000")
        + "\n[input]\nkind = \"stdin\"\nformats = [\"plain\"]\nmax_line = 100\n";
    let reloaded = reloaded.replacen(
        "[input]\nkind = \"stdin\"\nformats = [\"plain\"]\n[payment]",
        "[payment]",
        1,
    );
    std::fs::write(&path, reloaded).unwrap();
    signal(&child, libc::SIGHUP);
    let mut manager = tokio::task::spawn_blocking(move || {
        let mut manager = manager;
        let reloading = manager.wait_for("RELOADING=1");
        manager.wait_for("READY=1");
        assert!(reloading > ready_at);
        manager
    })
    .await
    .unwrap();
    stdin.write_all(b"50.00;TOO-MUCH\n").unwrap();
    manager = tokio::task::spawn_blocking(move || {
        manager.wait_for("STATUS=refused");
        manager
    })
    .await
    .unwrap();
    let replay = journal::read_only(&state).unwrap();
    assert_eq!(replay.payments.len(), 1, "the refused cart was not charged");

    sigterm(&child);
    let child_out = tokio::task::spawn_blocking(move || wait_exit(child));
    let (status, _) = child_out.await.unwrap();
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{output}");
    assert!(output.contains("config reloaded"), "{output}");
    assert!(
        output.contains("reason=too large: above kiosk.max_amount NOK 10.00"),
        "{output}"
    );
    assert!(
        output.contains("only after a restart") && output.contains("input"),
        "{output}"
    );
    assert!(!output.contains("demo-secret"), "the secret leaked");
    let manager = tokio::task::spawn_blocking(move || {
        let mut manager = manager;
        manager.wait_for("STOPPING=1");
    });
    manager.await.unwrap();
    emulator.shutdown().await;
}

/// Records notifications in memory, for the supervisor tests on paused time.
#[derive(Clone, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<kioskpay::systemd::Message>>>);

impl kioskpay::systemd::Notifier for Recorder {
    fn send(&mut self, message: kioskpay::systemd::Message) {
        self.0.lock().unwrap().push(message);
    }
}

#[tokio::test(start_paused = true)]
async fn a_healthy_flow_without_a_watchdog_is_never_reported_stalled() {
    use kioskpay::state::KioskState;
    use kioskpay::systemd::{beat_period, supervise, Heartbeat};
    let (log, _guard) = support::log::capture();
    let (heartbeat, liveness) = Heartbeat::new(beat_period(None));
    let (_states_tx, states) = tokio::sync::watch::channel(KioskState::Idle);
    let stop = tokio_util::sync::CancellationToken::new();
    let supervisor = tokio::spawn(supervise(
        liveness,
        states,
        None,
        Recorder::default(),
        stop.clone().cancelled_owned(),
    ));
    heartbeat.ready();
    // The flow's own beat, as in Flow::with_heartbeat: an interval at the heartbeat's period
    // that is late whenever the flow is busy, here with a 7 s health check every tenth beat
    // (a slow API), which shifts every later beat.
    let beating = {
        let heartbeat = heartbeat.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(heartbeat.period());
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 0u64.. {
                ticks.tick().await;
                heartbeat.beat();
                if n % 10 == 9 {
                    tokio::time::sleep(Duration::from_secs(7)).await;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(
        log.lines("WARN").is_empty(),
        "an idle kiosk beating on time: {}",
        log.all()
    );

    // A flow that really stops (stuck on an await) is reported, once, and so is its return.
    beating.abort();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let stalled = log.lines("has not turned");
    assert_eq!(stalled.len(), 1, "{}", log.all());
    heartbeat.beat();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(log.lines("turning again").len(), 1, "{}", log.all());
    stop.cancel();
    supervisor.await.unwrap();
}
