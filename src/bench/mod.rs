//! `kioskpay bench`: the end-to-end figures of issue 13 in one table anyone can re-run.
//!
//! ```text
//! kioskpay bench                  # the full run, about ten minutes
//! kioskpay bench --quick          # a smoke run, about a minute: same rows, fewer samples
//!                                 # (its request rates are info: the full run's mix is judged)
//! kioskpay bench --json out.json  # the table as JSON too (default target/bench.json)
//! kioskpay bench --daemon /usr/bin/kioskpay  # start-up and memory of the packaged build
//! ```
//!
//! Everything runs in this process against in-process [emulators](crate::emulator) on
//! loopback, with the same kiosk `kioskpay run` wires up (journal, flow, real HTTP client, real
//! scanner parser fed through a pipe). Progress goes to stderr; the table to stdout. Exit `0`
//! when every figure with a target meets it, `1` when one does not (its row says `FAIL`), `2`
//! on bad arguments.
//!
//! # The figures
//! - **Outcome → screen and requests** ([`outcome`]): several kiosks per polling policy pay a
//!   realistic mix of the emulator's outcome table (quick contactless approvals, chip and PIN
//!   8 s, capture lag 20 s, slow issuer 45 s, declines, a customer cancel) at the same time,
//!   one emulator per two kiosks (each emulator has two terminals), every policy side by side
//!   in one run: adaptive (the default, base 250 ms), fixed 500 ms, 1 s and 5 s, adaptive with
//!   signed callbacks (some duplicated, some 2 s late), and adaptive with callbacks configured
//!   but all of them lost.
//! - **Scan → create** and the **warm path** ([`create`]): one kiosk on an emulator that makes
//!   every new connection cost what a handshake costs on a real network; back-to-back payments
//!   count the requests between a scan's last byte and the create and time kioskpay's part, then
//!   payments after more than 15 s idle (ureq's default idle-connection age) count the
//!   connections opened.
//! - **Start-up** ([`startup`]): exec of `kioskpay run` (as a child: this binary, or the one
//!   `--daemon` names) to its `READY=1` on a fake `NOTIFY_SOCKET`, with an empty journal and
//!   with 50,000 records.
//! - **Memory and idle** ([`memory`]): a `kioskpay run` child (the same binary) pays 10,005
//!   back-to-back carts (five journal compactions) against an emulator at time scale 0.001;
//!   `VmRSS`, `VmHWM` and anonymous against file-backed pages after 0, 100, 1,000, 5,000,
//!   10,000 and 10,005 payments, then its CPU and context switches over a minute idle. This
//!   binary carries the emulator and the bench, which are file pages the packaged daemon does
//!   not have: `--daemon` measures the packaged build instead.
//! - **Display** ([`display`]): the real `mipidsi` ST7789 driver on a counting SPI device, as
//!   `cargo bench --bench display` does: bytes per update against a full frame, render time, and
//!   the bus time at 62.5 MHz.
//!
//! # Why real time, and what the times include
//! The emulator's terminal delays can be scaled down, but the kiosk's poll periods and the
//! adaptive policy's phase thresholds (5 s, 20 s, 60 s) are real time; scaling one and not the
//! other would measure a policy nobody runs. Paused tokio time would make the latency figure
//! pure poll arithmetic and hide what a read really costs. So the outcome figures run at time
//! scale 1.0, and the run stays short by paying many payments at once: each kiosk has its own
//! terminal, journal and HTTP client, as on a real site. (Scan → create does not depend on
//! the terminal's timing and runs at time scale 0.05.)
//!
//! "Outcome → screen" starts at the capture's instant in the emulator's books (when it became
//! due, not when a read noticed it) and ends when the kiosk publishes the approved state to its
//! display task, plus the render and SPI time of the processing → approved change measured in
//! the display figure: the kiosks here draw nowhere, so that two dozen PNG encoders do not
//! steal the CPU the figure is about. Requests are everything the emulator served, token and
//! health checks included; "per second" divides them by the summed time from scan to outcome.
//!
//! Numbers come from a shared, noisy machine: compare runs on the same machine, and never
//! assert them in a test (the test of this command only checks the table's shape).

mod create;
mod display;
mod kiosk;
mod memory;
mod outcome;
mod startup;

pub use startup::approved_payment;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

/// Options of `kioskpay bench`.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Payments per polling policy in the outcome figure (spread over its kiosks).
    pub payments: Option<usize>,
    /// Fewer samples and kiosks, for a smoke run.
    pub quick: bool,
    /// Where the table goes as JSON.
    pub json: PathBuf,
    /// The `kioskpay` whose `run` the start-up and memory figures start; `None`: this binary.
    pub daemon: Option<PathBuf>,
}

/// Whether a row meets its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Meets the target.
    Pass,
    /// Misses it.
    Fail,
    /// A comparison or a figure without a target.
    Info,
}

impl Verdict {
    fn of(ok: bool) -> Verdict {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Info => "info",
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What is measured.
    pub figure: String,
    /// The limit from issue 13, or what the row is compared with.
    pub target: String,
    /// The measured value(s).
    pub measured: String,
    /// Against the target.
    pub verdict: Verdict,
}

impl Row {
    fn new(figure: impl Into<String>, target: &str, measured: String, verdict: Verdict) -> Row {
        Row {
            figure: figure.into(),
            target: target.to_string(),
            measured,
            verdict,
        }
    }
}

/// What the JSON file holds.
#[derive(Serialize)]
struct Report<'a> {
    quick: bool,
    seconds: f64,
    rows: &'a [Row],
}

/// Prints progress on stderr: the run takes minutes and the table comes at the end.
fn progress(line: &str) {
    eprintln!("bench: {line}");
}

/// `p` (0..=100) percentile of `samples` by nearest rank; `None` when empty.
fn percentile(samples: &[Duration], p: u32) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (n * p as usize).div_ceil(100).clamp(1, n);
    Some(sorted[rank - 1])
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Runs every figure and prints the table.
pub async fn run(options: BenchOptions) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let daemon = match options.daemon {
        Some(path) => path,
        None => std::env::current_exe()
            .context("finding this binary to start `kioskpay run`; pass --daemon PATH")?,
    };
    let mut rows = Vec::new();

    progress("display: rendering every screen change on a counting SPI bus");
    let display = display::measure();
    rows.extend(display.rows());

    // Alone, before the rest: a start-up is CPU-bound and the other figures would slow it.
    progress("start-up: kioskpay run until READY=1, with an empty journal and a big one");
    rows.extend(or_unmeasured(
        "start-up: exec → READY=1",
        "≤ 100 ms",
        startup::measure(if options.quick { 2 } else { 5 }, &daemon).await,
    ));

    let outcome_plan = outcome::Plan::new(options.quick, options.payments);
    let create_plan = create::Plan::new(options.quick);
    progress(&format!(
        "outcome → screen: {} policies × {} kiosks, {} payments each policy; scan → create and \
         warm path alongside ({} back-to-back payments, {} after {} s idle)",
        outcome::POLICIES.len(),
        outcome_plan.kiosks,
        outcome_plan.payments,
        create_plan.hot,
        create_plan.cold,
        create::IDLE.as_secs()
    ));
    let (outcome, create) = tokio::join!(
        outcome::measure(&outcome_plan, display.approved_draw),
        create::measure(&create_plan)
    );
    rows.extend(or_unmeasured("outcome → screen", "p50 ≤ 300 ms", outcome));
    rows.extend(or_unmeasured("scan → create", "1 request", create));

    // Alone again: the idle daemon's CPU would count the other figures' load.
    let memory_plan = memory::Plan::new(options.quick);
    progress(&format!(
        "memory and idle: kioskpay run pays {} carts, then idles {} s",
        memory_plan.checkpoints.last().copied().unwrap_or(0),
        memory_plan.idle.as_secs()
    ));
    rows.extend(or_unmeasured(
        "memory and idle",
        "VmRSS ≤ 8 MiB",
        memory::measure(&memory_plan, &daemon).await,
    ));

    let seconds = started.elapsed().as_secs_f64();
    print_table(&rows);
    println!("\n{} rows in {seconds:.0} s", rows.len());
    let json = serde_json::to_string_pretty(&Report {
        quick: options.quick,
        seconds,
        rows: &rows,
    })?;
    if let Some(parent) = options.json.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&options.json, json + "\n").with_context(|| {
        format!(
            "cannot write {}; pass --json with a path you may write",
            options.json.display()
        )
    })?;
    println!("JSON: {}", options.json.display());
    let failed = rows.iter().filter(|r| r.verdict == Verdict::Fail).count();
    if failed > 0 {
        println!("{failed} figure(s) miss their target");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The rows of a figure, or one failing row saying why it could not be measured: the other
/// figures are still worth the run (a start-up cannot be measured where this binary cannot
/// start itself, e.g. under qemu-user without binfmt_misc).
fn or_unmeasured(figure: &str, target: &str, measured: Result<Vec<Row>>) -> Vec<Row> {
    match measured {
        Ok(rows) => rows,
        Err(e) => {
            progress(&format!("{figure}: not measured: {e:#}"));
            vec![Row::new(
                figure,
                target,
                format!("not measured: {e:#}"),
                Verdict::Fail,
            )]
        }
    }
}

fn print_table(rows: &[Row]) {
    let width = |f: fn(&Row) -> &str, title: &str| {
        rows.iter()
            .map(|r| f(r).chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let (wf, wt, wm) = (
        width(|r| &r.figure, "figure"),
        width(|r| &r.target, "target"),
        width(|r| &r.measured, "measured"),
    );
    println!(
        "\n| {:<wf$} | {:<wt$} | {:<wm$} | verdict |",
        "figure", "target", "measured"
    );
    println!(
        "|{}|{}|{}|---------|",
        "-".repeat(wf + 2),
        "-".repeat(wt + 2),
        "-".repeat(wm + 2)
    );
    for row in rows {
        println!(
            "| {} | {} | {} | {:<7} |",
            pad(&row.figure, wf),
            pad(&row.target, wt),
            pad(&row.measured, wm),
            row.verdict.word()
        );
    }
}

/// Left-aligns by characters (the table has `→` and `≤`, which `{:<}` counts right but a
/// byte-width pad would not).
fn pad(text: &str, width: usize) -> String {
    let n = text.chars().count();
    format!("{text}{}", " ".repeat(width.saturating_sub(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&samples, 99), Some(Duration::from_millis(99)));
        assert_eq!(
            percentile(&[Duration::from_millis(7)], 99),
            Some(Duration::from_millis(7))
        );
        assert_eq!(percentile(&[], 50), None);
    }
}
