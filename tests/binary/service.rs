//! `kioskpay run` as systemd runs it: sd_notify on a fake `NOTIFY_SOCKET`, SIGTERM with a
//! payment in flight, recovery before READY=1, watchdog pings, SIGHUP reloads, and the metrics
//! text file for node_exporter.

use crate::support;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

use kioskpay::journal::{self, Outcome};

/// A fake service manager: the datagrams the daemon sends to `NOTIFY_SOCKET`.
struct Manager {
    socket: UnixDatagram,
    seen: Vec<String>,
    /// The daemon's log, quoted when an expected notification does not come.
    log: PathBuf,
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

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Waits for the child to exit (hang guard 40 s: longer than the unit's TimeoutStopSec).
fn wait_exit(mut child: Child) -> std::process::ExitStatus {
    let mut status = None;
    let exited = support::wait_until_blocking(Duration::from_secs(40), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(exited, "the daemon did not stop on SIGTERM");
    status.unwrap()
}

fn journal_payment(state: &Path) -> Option<journal::PaymentRecord> {
    journal::read_only(state)
        .ok()
        .and_then(|r| r.payments.into_iter().next())
}

/// The stdin scanner, reading plain amounts; a test adds its own keys below it.
const INPUT: &str = "[input]\nkind = \"stdin\"\nformats = [\"plain\"]\n";

/// `kioskpay run` as systemd runs it: a fake service manager on `NOTIFY_SOCKET`, a watchdog of
/// 0.9 s, carts on stdin, stdout and stderr in a log file.
struct Daemon {
    child: Child,
    stdin: ChildStdin,
    /// Lent to a blocking task while a notification is awaited.
    manager: Option<Manager>,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon on `config`; `name` tells this run's socket and log apart from another
    /// run's in the same directory. `None` where the binary cannot run (see
    /// [`support::kioskpay_bin`]).
    fn start(dir: &Path, config: &Path, name: &str) -> Option<Daemon> {
        let mut command = support::kioskpay_bin()?;
        let socket = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        let manager = Manager::bind(&socket, &log);
        let out = std::fs::File::create(&log).unwrap();
        let mut child = command
            .args(["run", "--config", config.to_str().unwrap()])
            .env("NOTIFY_SOCKET", &socket)
            .env("WATCHDOG_USEC", "900000")
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        Some(Daemon {
            child,
            stdin,
            manager: Some(manager),
            log,
        })
    }

    /// Waits for the notification `line`; returns how many came before it.
    async fn notified(&mut self, line: &str) -> usize {
        let mut manager = self.manager.take().unwrap();
        let line = line.to_string();
        let (manager, at) = tokio::task::spawn_blocking(move || {
            let at = manager.wait_for(&line);
            (manager, at)
        })
        .await
        .unwrap();
        self.manager = Some(manager);
        at
    }

    /// Every notification so far.
    fn seen(&self) -> &[String] {
        &self.manager.as_ref().unwrap().seen
    }

    /// A scanner line.
    fn scan(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
    }

    /// SIGTERM, as `systemctl stop` sends. Every run ends the same way: `STOPPING=1`, exit
    /// status 0, and no trace of the client secret in the log. Returns the log.
    async fn stop(mut self) -> String {
        signal(&self.child, libc::SIGTERM);
        self.notified("STOPPING=1").await;
        let Daemon {
            child, stdin, log, ..
        } = self;
        let status = tokio::task::spawn_blocking(move || wait_exit(child))
            .await
            .unwrap();
        drop(stdin);
        let output = std::fs::read_to_string(&log).unwrap();
        assert!(status.success(), "{output}");
        assert!(
            !output.contains("demo-secret"),
            "the secret leaked: {output}"
        );
        output
    }
}

/// A daemon stopped by SIGTERM while a payment waits for a card: it leaves the payment
/// journaled as interrupted, still open at Dintero (emulator `base`, in real time). Returns
/// the daemon's log, or `None` where the binary cannot run.
async fn interrupt_a_payment(dir: &Path, base: &str) -> Option<String> {
    let config = support::write_config(
        dir,
        base,
        &format!("{INPUT}[payment]\npoll_interval_ms = 100\ntimeout_s = 600\n"),
    );
    let mut daemon = Daemon::start(dir, &config, "first-run")?;
    // Real-time emulator: an amount ending in 54 waits 90 s for a card that never comes.
    daemon.scan("100.54;HANG");
    let state = dir.join("state");
    assert!(
        support::wait_until(Duration::from_secs(60), || {
            journal_payment(&state).is_some_and(|p| p.state == "waiting_for_card")
        })
        .await,
        "the payment never reached waiting_for_card: {:?}",
        journal_payment(&state)
    );
    Some(daemon.stop().await)
}

/// The config of the start after [`interrupt_a_payment`]: the shortest kiosk timeout (10 s)
/// makes recovery cancel the interrupted payment, which ends `timed_out`.
fn recovering_config(dir: &Path, base: &str, extra: &str) -> PathBuf {
    support::write_config(
        dir,
        base,
        &format!(
            "{INPUT}[payment]\npoll_interval_ms = 100\ntimeout_s = 10\npickup_timeout_s = 5\n{extra}"
        ),
    )
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
async fn sigterm_with_a_payment_in_flight_journals_it_as_interrupted_and_exits_cleanly() {
    let emulator = support::emulator(1.0).await;
    let dir = tempfile::tempdir().unwrap();
    let Some(output) = interrupt_a_payment(dir.path(), &emulator.base_url()).await else {
        return;
    };
    assert!(output.contains("payment in flight"), "{output}");
    let payment = journal_payment(&dir.path().join("state")).unwrap();
    assert_eq!(payment.outcome, None, "the payment is not over at Dintero");
    assert_eq!(payment.state, "interrupted_waiting_for_card");
    assert!(payment.session_id.is_some());
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_interrupted_payment_ready_comes_only_once_recovery_has_resolved_it() {
    let emulator = support::emulator(1.0).await;
    let dir = tempfile::tempdir().unwrap();
    if interrupt_a_payment(dir.path(), &emulator.base_url())
        .await
        .is_none()
    {
        return;
    }
    let config = recovering_config(dir.path(), &emulator.base_url(), "");
    let mut daemon = Daemon::start(dir.path(), &config, "second-run").unwrap();
    let ready_at = daemon.notified("READY=1").await;
    let recovered = journal_payment(&dir.path().join("state")).unwrap();
    assert_eq!(
        recovered.outcome,
        Some(Outcome::TimedOut),
        "READY=1 came before recovery finished"
    );
    let before = &daemon.seen()[..ready_at];
    assert!(
        before
            .iter()
            .any(|l| l == "STATUS=starting" || l == "STATUS=checking"),
        "{before:?}"
    );
    assert_eq!(before.last().map(String::as_str), Some("STATUS=idle"));
    daemon.stop().await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_is_fed_once_the_flow_is_turning() {
    let emulator = support::emulator(1.0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(
        dir.path(),
        &emulator.base_url(),
        &format!("{INPUT}[payment]\npoll_interval_ms = 100\n"),
    );
    let Some(mut daemon) = Daemon::start(dir.path(), &config, "run") else {
        return;
    };
    daemon.notified("READY=1").await;
    daemon.notified("WATCHDOG=1").await;
    daemon.stop().await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_file_counts_outcomes_in_the_textfile_collectors_format() {
    let emulator = support::emulator(1.0).await;
    let dir = tempfile::tempdir().unwrap();
    if interrupt_a_payment(dir.path(), &emulator.base_url())
        .await
        .is_none()
    {
        return;
    }
    let metrics = dir.path().join("kioskpay.prom");
    let config = recovering_config(
        dir.path(),
        &emulator.base_url(),
        &format!(
            "[metrics]\ntextfile = \"{}\"\ninterval_s = 1\n",
            metrics.display()
        ),
    );
    let mut daemon = Daemon::start(dir.path(), &config, "second-run").unwrap();
    daemon.notified("READY=1").await;
    // Once the recovered payment is counted, the file says the kiosk is ready.
    let samples = support::wait_for(Duration::from_secs(30), async || {
        let samples = parse_prom(&std::fs::read_to_string(&metrics).ok()?);
        (sample(&samples, "kioskpay_ready") == 1.0).then_some(samples)
    })
    .await
    .expect("no metrics file with ready 1");
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
    daemon.stop().await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_puts_a_lower_max_amount_in_force_at_once_and_says_what_needs_a_restart() {
    let emulator = support::emulator(1.0).await;
    let dir = tempfile::tempdir().unwrap();
    let payment = "[payment]\npoll_interval_ms = 100\n";
    let config = support::write_config(
        dir.path(),
        &emulator.base_url(),
        &format!("{INPUT}{payment}"),
    );
    let Some(mut daemon) = Daemon::start(dir.path(), &config, "run") else {
        return;
    };
    let ready_at = daemon.notified("READY=1").await;

    // A lower max_amount is in force at once; a changed input section needs a restart.
    let changed = support::write_config(
        dir.path(),
        &emulator.base_url(),
        &format!("{INPUT}max_line = 100\n{payment}"),
    );
    let text = std::fs::read_to_string(&changed).unwrap();
    assert!(text.contains("max_amount = 1000000"), "{text}");
    std::fs::write(
        &changed,
        text.replace("max_amount = 1000000", "max_amount = 1000"),
    )
    .unwrap();
    signal(&daemon.child, libc::SIGHUP);
    let reloading = daemon.notified("RELOADING=1").await;
    assert!(reloading > ready_at);
    daemon.notified("READY=1").await;
    daemon.scan("50.00;TOO-MUCH");
    daemon.notified("STATUS=refused").await;
    let replay = journal::read_only(&dir.path().join("state")).unwrap();
    assert!(
        replay.payments.is_empty(),
        "the refused cart was not charged: {:?}",
        replay.payments
    );
    let ledger = support::ledger(&emulator.base_url()).await;
    assert_eq!(ledger["sessions"], serde_json::json!([]), "{ledger}");

    let output = daemon.stop().await;
    assert!(output.contains("config reloaded"), "{output}");
    assert!(
        output.contains("reason=too large: above kiosk.max_amount NOK 10.00"),
        "{output}"
    );
    assert!(
        output
            .lines()
            .any(|l| l.contains("only after a restart") && l.contains("input")),
        "{output}"
    );
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
