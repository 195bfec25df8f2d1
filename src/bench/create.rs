//! Scan → create and the warm path: what lies between a scan's last byte and the terminal
//! prompting, on a hot kiosk and on one that has been idle.
//!
//! One kiosk (adaptive polling, the default) on its own emulator, so that every request the
//! emulator records is this kiosk's. The emulator holds each new connection's first answer for
//! [`HANDSHAKE`], what DNS, TCP and TLS to Dintero cost a kiosk on a real network; loopback
//! would otherwise make a cold connection free. A first payment fetches the token and opens a
//! connection; then:
//! - **hot**: payments back to back. For each: the requests from the scan's last byte up to
//!   and including the create (the target is exactly one), and kioskpay's own time: from that
//!   byte to the create arriving at the emulator (framing, decoding, the journal's fsync,
//!   building and sending the request, and the loopback hop), beside the create's time inside
//!   the emulator.
//! - **after idle**: payments after [`IDLE`] without a request (longer than ureq's default
//!   15 s idle-connection age): how many new connections the way to the create opened, and the
//!   scan → create time including any handshake.
//!
//! The terminal's own delays do not matter here, so the emulator runs at time scale 0.05.

use std::time::Duration;

use super::kiosk::BenchKiosk;
use super::{ms, percentile, progress, Row, Verdict};
use crate::emulator::{self, EmulatorConfig, RequestRec, TERMINAL_IDS};
use anyhow::{anyhow, Result};

/// What a new connection costs: a TLS 1.3 handshake and a TCP one over a 4G link or a busy
/// site's Wi-Fi (about three round trips of 15 ms).
pub const HANDSHAKE: Duration = Duration::from_millis(45);

/// Idle time before a cold-path payment: beyond ureq's default 15 s idle-connection age, within
/// the 60 s between the kiosk's health checks (which would otherwise refresh the connection).
pub const IDLE: Duration = Duration::from_secs(17);

/// A contactless approval.
const AMOUNT: u64 = 39900;

/// How many payments of each kind.
pub struct Plan {
    /// Back-to-back payments.
    pub hot: usize,
    /// Payments after [`IDLE`].
    pub cold: usize,
}

impl Plan {
    /// The full run or the smoke run.
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan { hot: 5, cold: 1 }
        } else {
            Plan { hot: 30, cold: 3 }
        }
    }
}

/// New connections among `these`, given every request before them.
fn new_connections(before: &[RequestRec], these: &[RequestRec]) -> usize {
    let mut seen: Vec<u64> = before.iter().map(|r| r.connection).collect();
    let mut new = 0;
    for r in these {
        if !seen.contains(&r.connection) {
            new += 1;
            seen.push(r.connection);
        }
    }
    new
}

/// One payment's way to its create.
struct Sample {
    requests: usize,
    new_connections: usize,
    own: Duration,
    server: Option<Duration>,
}

/// Runs the plan and returns its rows.
pub async fn measure(plan: &Plan) -> Result<Vec<Row>> {
    let emulator = emulator::spawn(EmulatorConfig {
        time_scale: 0.05,
        connection_cost: HANDSHAKE,
        record_traffic: true,
        ..Default::default()
    })
    .await?;
    let mut kiosk = BenchKiosk::start(
        &emulator.base_url(),
        TERMINAL_IDS[0],
        "[kiosk]\nid = \"bench-create\"\n",
        None,
    )?;
    let result = async {
        kiosk.pay(AMOUNT, "WARM-UP").await?;
        let mut hot = Vec::new();
        for i in 0..plan.hot {
            hot.push(sample(&mut kiosk, &emulator, &format!("HOT-{i}")).await?);
        }
        progress(&format!("  scan → create: {} hot payments done", hot.len()));
        let mut cold = Vec::new();
        for i in 0..plan.cold {
            kiosk.idle().await?;
            tokio::time::sleep(IDLE).await;
            cold.push(sample(&mut kiosk, &emulator, &format!("COLD-{i}")).await?);
            progress(&format!(
                "  warm path: payment {}/{} after {} s idle done",
                i + 1,
                plan.cold,
                IDLE.as_secs()
            ));
        }
        Ok::<_, anyhow::Error>((hot, cold))
    }
    .await;
    kiosk.stop().await?;
    emulator.shutdown().await;
    let (hot, cold) = result?;
    Ok(rows(&hot, &cold))
}

async fn sample(
    kiosk: &mut BenchKiosk,
    emulator: &emulator::EmulatorHandle,
    reference: &str,
) -> Result<Sample> {
    let paid = kiosk.pay(AMOUNT, reference).await?;
    let requests = emulator.traffic().requests;
    let missing = || anyhow!("no create reached the emulator after the scan of {reference}");
    let first = requests
        .iter()
        .position(|r| r.arrived >= paid.scanned)
        .ok_or_else(missing)?;
    let create = first
        + requests[first..]
            .iter()
            .position(|r| r.method == "POST" && r.path == "/v1/sessions-profile")
            .ok_or_else(missing)?;
    let way = &requests[first..=create];
    let create = &requests[create];
    Ok(Sample {
        requests: way.len(),
        new_connections: new_connections(&requests[..first], way),
        own: create.arrived.saturating_duration_since(paid.scanned),
        server: create
            .answered
            .map(|a| a.saturating_duration_since(create.arrived)),
    })
}

fn rows(hot: &[Sample], cold: &[Sample]) -> Vec<Row> {
    let mut rows = Vec::new();
    let counts: Vec<usize> = hot.iter().map(|s| s.requests).collect();
    let (lo, hi) = (
        counts.iter().min().copied().unwrap_or(0),
        counts.iter().max().copied().unwrap_or(0),
    );
    rows.push(Row::new(
        "scan → create: HTTP requests (cached token, warm)",
        "exactly 1",
        if lo == hi {
            format!("{lo} in each of {} payments", hot.len())
        } else {
            format!("{lo} to {hi} over {} payments", hot.len())
        },
        Verdict::of(lo == 1 && hi == 1),
    ));
    let own: Vec<Duration> = hot.iter().map(|s| s.own).collect();
    let server: Vec<Duration> = hot.iter().filter_map(|s| s.server).collect();
    if let (Some(p50), Some(p99)) = (percentile(&own, 50), percentile(&own, 99)) {
        rows.push(Row::new(
            "scan → create: kioskpay's own time (scan's last byte → create at the server)",
            "p50 ≤ 2 ms, p99 ≤ 10 ms",
            format!(
                "p50 {}, p99 {} (n={}); the create inside the emulator p50 {}",
                ms(p50),
                ms(p99),
                own.len(),
                percentile(&server, 50).map_or("-".into(), ms)
            ),
            Verdict::of(p50 <= Duration::from_millis(2) && p99 <= Duration::from_millis(10)),
        ));
    }
    if !cold.is_empty() {
        let opened: usize = cold.iter().map(|s| s.new_connections).sum();
        let times: Vec<Duration> = cold.iter().map(|s| s.own).collect();
        rows.push(Row::new(
            format!(
                "warm path: new connections per create after {} s idle ({} ms handshake)",
                IDLE.as_secs(),
                HANDSHAKE.as_millis()
            ),
            "0",
            format!(
                "{:.1} per create, scan → create p50 {} (n={})",
                opened as f64 / cold.len() as f64,
                percentile(&times, 50).map_or("-".into(), ms),
                cold.len()
            ),
            Verdict::of(opened == 0),
        ));
    }
    rows
}
