//! `kioskpay demo`: the whole loop, for real, on the embedded emulator.
//!
//! It starts the Dintero emulator in-process on a free loopback port, writes a config for it
//! (secret file with mode 600, journal in a temporary directory), starts the same kiosk the
//! daemon runs, and types a scripted list of scanner lines into the real input parser: one cart
//! per outcome worth seeing. It prints every screen change as it happens, writes every frame as a
//! PNG, and ends with a table checked against the emulator's ledger, which is the ground truth:
//! the demo exits 0 only when every outcome is the expected one and matches the ledger.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::cart::CartSource;
use crate::config::Config;
use crate::daemon::{InputWiring, Kiosk};
use crate::dintero::client::{Client, ClientConfig};
use crate::emulator::{self, sandbox, EmulatorConfig, TERMINAL_IDS};
use crate::input::ScanConfig;
use crate::money::Language;
use crate::payment::flow::PaymentReport;
use crate::payment::Final;
use crate::state::{CancelledBy, DeclineKind, FailKind, KioskState};

/// Options of `kioskpay demo`.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Where frames are written.
    pub frames: PathBuf,
    /// Language of the screens.
    pub lang: Language,
    /// Emulator time scale.
    pub time_scale: f64,
}

/// One scripted cart and the outcome the emulator's table promises for it.
struct Step {
    label: &'static str,
    line: &'static str,
    expect: &'static str,
}

const SCRIPT: &[Step] = &[
    Step {
        label: "approved (contactless)",
        line: "399.00;ORDER-1001",
        expect: "approved",
    },
    Step {
        label: "declined by issuer",
        line: "149.51;ORDER-1002",
        expect: "declined",
    },
    Step {
        label: "insufficient funds",
        line: "89.52",
        expect: "declined",
    },
    Step {
        label: "customer cancels",
        line: "75.53;ORDER-1004",
        expect: "cancelled",
    },
    Step {
        label: "slow approval (45 s)",
        line: "1200.57;ORDER-1005",
        expect: "approved",
    },
    Step {
        label: "terminal offline",
        line: "50.55;ORDER-1006",
        expect: "failed",
    },
];

/// Runs the demo; `Ok(ExitCode::FAILURE)` when an outcome does not match.
pub async fn run(options: DemoOptions) -> Result<ExitCode> {
    if !(options.time_scale > 0.0 && options.time_scale <= 1.0) {
        bail!(
            "--time-scale {}: expected a number above 0 and at most 1",
            options.time_scale
        );
    }
    let emulator = emulator::spawn(EmulatorConfig {
        time_scale: options.time_scale,
        ..Default::default()
    })
    .await
    .context("starting the embedded emulator")?;
    let base = emulator.base_url();
    let work = tempfile::Builder::new()
        .prefix("kioskpay-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    let config = demo_config(&base, work.path(), &options)?;
    println!(
        "kioskpay demo: Dintero emulator on {base} (time scale {}), frames in {}",
        options.time_scale,
        options.frames.display()
    );
    println!(
        "kiosk {} → terminal {}\n",
        config.kiosk.id, config.store.terminal_id
    );

    let client = Client::new(ClientConfig::from_config(&config.dintero)?);
    let mut kiosk = Kiosk::start(&config, Arc::new(client), InputWiring::External)?;
    let (mut scanner, scanner_rx) = tokio::io::duplex(1024);
    let feeder_tx = kiosk.inputs.clone();
    let scan = ScanConfig::from_config(&config.input, config.currency());
    let feeder = tokio::spawn(async move {
        crate::input::read_carts(scanner_rx, &scan, CartSource::Demo, &feeder_tx).await
    });

    let started = Instant::now();
    let mut states = kiosk.state.clone();
    // What the printer has printed last: the script waits on this, not on the kiosk's state, so
    // that a cart's last line ("idle") is printed before the next cart's heading.
    let (printed_tx, mut printed) = tokio::sync::watch::channel(KioskState::Starting);
    let printer = tokio::spawn(async move {
        let mut last = String::new();
        while states.changed().await.is_ok() {
            let state = states.borrow_and_update().clone();
            let line = describe(&state, options.lang);
            if line != last {
                println!("  [{:>5.1}s] {line}", started.elapsed().as_secs_f64());
                last = line;
            }
            printed_tx.send_replace(state);
        }
    });

    let mut rows = Vec::new();
    for (i, step) in SCRIPT.iter().enumerate() {
        // The offline terminal comes last: after it the health gate keeps card payment
        // unavailable until its next check, as it should on a real kiosk.
        wait_printed(&mut printed, "idle", |s| matches!(s, KioskState::Idle)).await?;
        println!(
            "cart {}/{}: {} — scanner sends {:?}",
            i + 1,
            SCRIPT.len(),
            step.label,
            step.line
        );
        let t0 = Instant::now();
        scanner
            .write_all(format!("{}\r\n", step.line).as_bytes())
            .await?;
        let report = tokio::time::timeout(Duration::from_secs(120), kiosk.reports.recv())
            .await
            .context("no outcome within 120 s")?
            .context("the kiosk stopped")?;
        rows.push((step, report, t0.elapsed()));
    }
    drop(scanner);
    let _ = feeder.await;
    // The last cart's result screen, then the screen that follows it ("card payment unavailable"
    // after the offline terminal), are customer screens too: let them be drawn before stopping.
    wait_printed(&mut printed, "back from the last result screen", |s| {
        matches!(s, KioskState::Idle | KioskState::Unavailable { .. })
    })
    .await?;
    frames_settled(&options.frames).await;

    let ledger = fetch_ledger(&base).await?;
    kiosk.stop().await?;
    printer.abort();
    emulator.shutdown().await;

    println!();
    println!(
        "{:<3} {:<24} {:>10}  {:<30} {:<34} {:>6}  ledger",
        "#", "cart", "amount", "outcome", "transaction", "secs"
    );
    let mut all_ok = true;
    for (i, (step, report, took)) in rows.iter().enumerate() {
        let verdict = check_against_ledger(step, report, &ledger);
        all_ok &= verdict.is_ok();
        println!(
            "{:<3} {:<24} {:>10}  {:<30} {:<34} {:>6.1}  {}",
            i + 1,
            step.label,
            report.amount.plain(),
            report.outcome.to_string(),
            report.outcome.transaction_id().unwrap_or("-"),
            took.as_secs_f64(),
            match &verdict {
                Ok(status) => format!("ok ({status})"),
                Err(why) => format!("MISMATCH: {why}"),
            }
        );
    }
    let sessions = ledger["sessions"].as_array().map(Vec::len).unwrap_or(0);
    if sessions != SCRIPT.len() {
        all_ok = false;
        println!(
            "MISMATCH: the emulator holds {sessions} sessions for {} carts",
            SCRIPT.len()
        );
    }
    println!();
    if all_ok {
        println!("demo OK: {} carts, every outcome matches the emulator's ledger; {} sessions, none doubled", rows.len(), sessions);
        Ok(ExitCode::SUCCESS)
    } else {
        println!("demo FAILED: see the mismatches above");
        Ok(ExitCode::FAILURE)
    }
}

/// The demo kiosk's config: the sandbox config, typed on stdin in every development format,
/// every frame kept as a PNG.
fn demo_config(base: &str, work: &std::path::Path, options: &DemoOptions) -> Result<Config> {
    sandbox::write_secret(work)?;
    let demo = format!(
        r#"
[kiosk]
id = "demo-kiosk"
language = "{lang}"

[input]
kind = "stdin"
formats = ["plain", "gs1", "digital_link"]

[display]
kind = "png"
png_dir = {frames}
png_keep = 0

[payment]
timeout_s = 60
poll_interval_ms = 100
pickup_timeout_s = 2
result_screen_s = 1
"#,
        lang = options.lang.code(),
        frames = toml::Value::String(options.frames.display().to_string()),
    );
    let text =
        sandbox::config(base, work, TERMINAL_IDS[0], &[&demo]).map_err(anyhow::Error::msg)?;
    Ok(Config::load_str(&text, &work.join("demo.toml"))?)
}

/// Waits until the printer has printed a state that `done` accepts (after a result screen).
async fn wait_printed(
    printed: &mut tokio::sync::watch::Receiver<KioskState>,
    what: &str,
    done: impl FnMut(&KioskState) -> bool,
) -> Result<()> {
    let reached = tokio::time::timeout(Duration::from_secs(30), printed.wait_for(done))
        .await
        .map(|r| r.map(|_| ()));
    match reached {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => bail!("the kiosk stopped"),
        Err(_) => bail!(
            "the kiosk was not {what} within 30 s: it shows {}",
            printed.borrow().name()
        ),
    }
}

/// Waits until the display has written its last frame: no new PNG for a while (the display
/// draws a change within one frame interval), at most a few seconds.
async fn frames_settled(dir: &std::path::Path) {
    let count = || std::fs::read_dir(dir).map_or(0, |entries| entries.count());
    let quiet = crate::display::MIN_FRAME_INTERVAL * 6;
    let give_up = Instant::now() + Duration::from_secs(5);
    let mut seen = count();
    while Instant::now() < give_up {
        tokio::time::sleep(quiet).await;
        let now = count();
        if now == seen {
            return;
        }
        seen = now;
    }
}

fn describe(state: &KioskState, lang: Language) -> String {
    let amount = |m: &crate::money::Money| m.display(lang).replace('\u{a0}', " ");
    match state {
        KioskState::WaitingForCard { amount: a, .. } => {
            format!("waiting for card         {}", amount(a))
        }
        KioskState::Creating { amount: a, .. } => format!("creating session         {}", amount(a)),
        KioskState::Processing { amount: a, .. } => {
            format!("processing               {}", amount(a))
        }
        KioskState::Approved {
            amount: a, card, ..
        } => {
            format!(
                "APPROVED                 {} {}",
                amount(a),
                card.as_deref().unwrap_or("")
            )
        }
        KioskState::Declined { kind, .. } => format!(
            "DECLINED ({})",
            match kind {
                DeclineKind::Declined => "by the card issuer",
                DeclineKind::InsufficientFunds => "insufficient funds",
            }
        ),
        KioskState::Cancelled { by, .. } => format!(
            "CANCELLED by the {}",
            match by {
                CancelledBy::Customer => "customer",
                CancelledBy::Kiosk => "kiosk",
            }
        ),
        KioskState::Failed { kind, .. } => format!(
            "FAILED ({})",
            match kind {
                FailKind::Technical => "technical error",
                FailKind::TerminalOffline => "terminal offline",
                FailKind::Rejected => "Dintero refused the payment",
            }
        ),
        KioskState::Unavailable { reason } => format!("card payment unavailable: {reason}"),
        other => other.name().replace('_', " "),
    }
}

async fn fetch_ledger(base: &str) -> Result<serde_json::Value> {
    let url = format!("{base}/_emulator/ledger");
    tokio::task::spawn_blocking(move || -> Result<serde_json::Value> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let body = agent.get(&url).call()?.body_mut().read_to_string()?;
        Ok(serde_json::from_str(&body)?)
    })
    .await?
}

/// Compares one payment's reported outcome with the emulator's ledger.
fn check_against_ledger(
    step: &Step,
    report: &PaymentReport,
    ledger: &serde_json::Value,
) -> Result<String, String> {
    let outcome = report.outcome.outcome();
    let word = serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    if word != step.expect {
        return Err(format!("expected {}, kiosk said {word}", step.expect));
    }
    let empty = Vec::new();
    let sessions = ledger["sessions"].as_array().unwrap_or(&empty);
    let transactions = ledger["transactions"].as_array().unwrap_or(&empty);
    let mine: Vec<_> = sessions
        .iter()
        .filter(|s| s["merchant_reference"].as_str() == Some(report.merchant_reference.as_str()))
        .collect();
    let [session] = mine.as_slice() else {
        return Err(format!(
            "{} sessions in the ledger for {}",
            mine.len(),
            report.merchant_reference
        ));
    };
    if session["amount"].as_u64() != Some(report.amount.minor) {
        return Err(format!("ledger amount {} differs", session["amount"]));
    }
    let tx = transactions
        .iter()
        .find(|t| t["session_id"] == session["id"]);
    match (&report.outcome, tx) {
        (Final::Approved { transaction_id, .. }, Some(tx)) => {
            if tx["id"].as_str() != Some(transaction_id) {
                return Err("transaction id differs".into());
            }
            match tx["status"].as_str() {
                Some("CAPTURED") => Ok("CAPTURED".into()),
                other => Err(format!("kiosk says approved, ledger says {other:?}")),
            }
        }
        (
            Final::Failed {
                transaction_id: None,
                ..
            },
            None,
        ) if session["cancelled_at"].is_string() => Ok("no transaction, session cancelled".into()),
        (outcome, Some(tx)) if !matches!(outcome, Final::Approved { .. }) => {
            match tx["status"].as_str() {
                Some("CAPTURED") => Err("kiosk says not paid, ledger says CAPTURED".into()),
                Some(status) => Ok(status.to_string()),
                None => Err("ledger transaction has no status".into()),
            }
        }
        (_, tx) => Err(format!("ledger transaction {tx:?} does not fit")),
    }
}
