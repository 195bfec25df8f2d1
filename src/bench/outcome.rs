//! Outcome → screen and requests per payment, for every polling policy side by side.
//!
//! Each policy gets its own emulators (two terminals each) and kiosks, all running at once in
//! real time; every kiosk pays the same mix of the outcome table, starting at a different
//! place in it so that slow and quick payments overlap. See the [module](super) docs for what
//! the times include.

use std::time::Duration;

use anyhow::{Context, Result};

use super::kiosk::BenchKiosk;
use super::{ms, percentile, progress, Row, Verdict};
use crate::emulator::{self, EmulatorConfig, EmulatorHandle, FaultPlan, TERMINAL_IDS};
use crate::payment::Final;
use crate::secret::Secret;

/// Added at random to each payment's card step: as long as the slowest fixed period, so that no
/// policy's reads line up with the emulator's whole-second delays.
const CARD_JITTER: Duration = Duration::from_secs(5);

/// The callbacks' signature secret (the emulator signs, the kiosks verify).
const SIGNATURE_SECRET: &str = "bench-callback-signature-secret";

/// Amounts in minor units; the last two digits pick the emulator's outcome.
const MIX: &[u64] = &[
    39900,  // contactless: approved 2 s after pickup, captured 1 s later
    12059,  // chip and PIN: approved after 8 s
    4900,   // contactless
    8958,   // approved after 2 s, captured only 20 s later
    14951,  // declined by the issuer after 3 s
    2500,   // contactless
    8952,   // insufficient funds after 3 s
    120057, // slow issuer: approved after 45 s
    3559,   // chip and PIN
    7553,   // the customer cancels after 3 s
];

/// The smoke run's mix: contactless approvals and a decline, nothing slow.
const QUICK_MIX: &[u64] = &[39900, 14951, 4900];

/// How callbacks reach a policy's kiosks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Callbacks {
    /// No `[callback]`: polling only.
    Off,
    /// Signed callbacks, one in five sent twice and one in five 2 s late.
    On,
    /// `[callback]` configured, but no callback ever arrives (held back for an hour).
    Lost,
}

/// A policy under test.
pub struct Policy {
    name: &'static str,
    payment: &'static str,
    callbacks: Callbacks,
    /// Whether the row is judged against the target (the shipped default and its callback
    /// variants) or only shown beside it.
    judged: bool,
}

/// The policies, in the table's order.
pub const POLICIES: &[Policy] = &[
    Policy {
        name: "adaptive 250 ms (default)",
        payment: "polling = \"adaptive\"\npoll_interval_ms = 250\n",
        callbacks: Callbacks::Off,
        judged: true,
    },
    Policy {
        name: "fixed 500 ms (before)",
        payment: "polling = \"fixed\"\npoll_interval_ms = 500\n",
        callbacks: Callbacks::Off,
        judged: false,
    },
    Policy {
        name: "fixed 1 s",
        payment: "polling = \"fixed\"\npoll_interval_ms = 1000\n",
        callbacks: Callbacks::Off,
        judged: false,
    },
    Policy {
        name: "fixed 5 s",
        payment: "polling = \"fixed\"\npoll_interval_ms = 5000\n",
        callbacks: Callbacks::Off,
        judged: false,
    },
    Policy {
        name: "adaptive + callbacks",
        payment: "polling = \"adaptive\"\npoll_interval_ms = 250\n",
        callbacks: Callbacks::On,
        judged: true,
    },
    Policy {
        name: "adaptive + callbacks lost",
        payment: "polling = \"adaptive\"\npoll_interval_ms = 250\n",
        callbacks: Callbacks::Lost,
        judged: true,
    },
];

/// How much to run.
#[derive(Clone, Copy)]
pub struct Plan {
    /// Kiosks per policy.
    pub kiosks: usize,
    /// Payments per policy.
    pub payments: usize,
    mix: &'static [u64],
    /// The smoke run's mix (nothing slow) instead of the realistic one.
    quick: bool,
}

impl Plan {
    /// The full run (four kiosks, the whole mix each) or the smoke run; `payments` overrides
    /// the count per policy.
    pub fn new(quick: bool, payments: Option<usize>) -> Plan {
        let (kiosks, mix) = if quick { (2, QUICK_MIX) } else { (4, MIX) };
        Plan {
            kiosks,
            payments: payments.unwrap_or(kiosks * mix.len()).max(1),
            mix,
            quick,
        }
    }
}

/// What one policy measured.
struct Measured {
    latencies: Vec<Duration>,
    requests: u64,
    payments: usize,
    paying: Duration,
}

/// Runs every policy at once; `draw` is the render and SPI time of the approved frame.
pub async fn measure(plan: &Plan, draw: Duration) -> Result<Vec<Row>> {
    let plan = *plan;
    let runs = POLICIES.iter().map(move |policy| run_policy(policy, plan));
    let results = futures_join_all(runs).await;
    let mut rows = Vec::new();
    for (policy, result) in POLICIES.iter().zip(results) {
        let m = result.with_context(|| format!("policy {}", policy.name))?;
        let (p50, p99) = (
            percentile(&m.latencies, 50).map(|d| d + draw),
            percentile(&m.latencies, 99).map(|d| d + draw),
        );
        let judge = |ok: bool| {
            if policy.judged {
                Verdict::of(ok)
            } else {
                Verdict::Info
            }
        };
        rows.push(Row::new(
            format!("outcome → screen, {}", policy.name),
            if policy.judged {
                "p50 ≤ 300 ms"
            } else {
                "comparison"
            },
            match (p50, p99) {
                (Some(p50), Some(p99)) => {
                    format!("p50 {}, p99 {} (n={})", ms(p50), ms(p99), m.latencies.len())
                }
                _ => "no approval seen".into(),
            },
            judge(p50.is_some_and(|p| p <= Duration::from_millis(300))),
        ));
        let per_payment = m.requests as f64 / m.payments as f64;
        let per_second = m.requests as f64 / m.paying.as_secs_f64().max(1e-3);
        // A rate per second depends on how long the payments take: only the realistic mix
        // (slow approvals, capture lag) can be held to the limit. The smoke run's quick
        // approvals are all the busy first seconds, so its rate says nothing against it.
        let realistic = !plan.quick;
        rows.push(Row::new(
            format!("requests per payment, {}", policy.name),
            match (policy.judged, realistic) {
                (true, true) => "≤ 1 request/s per payment",
                (true, false) => "≤ 1/s, judged on the full run's mix",
                (false, _) => "comparison",
            },
            format!(
                "{per_payment:.1} per payment, {per_second:.2}/s (n={})",
                m.payments
            ),
            if realistic {
                judge(per_second <= 1.0)
            } else {
                Verdict::Info
            },
        ));
    }
    Ok(rows)
}

/// `join_all` for a handful of futures without another dependency: each runs in its own task.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(value) => out.push(value),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

async fn run_policy(policy: &'static Policy, plan: Plan) -> Result<Measured> {
    let emulators = plan.kiosks.div_ceil(TERMINAL_IDS.len());
    let mut handles: Vec<EmulatorHandle> = Vec::new();
    for _ in 0..emulators {
        handles.push(emulator::spawn(emulator_config(policy.callbacks)).await?);
    }
    let per_kiosk = plan.payments.div_ceil(plan.kiosks);
    let mut tasks = Vec::new();
    for k in 0..plan.kiosks {
        let emulator = &handles[k / TERMINAL_IDS.len()];
        let terminal = TERMINAL_IDS[k % TERMINAL_IDS.len()];
        let secret = (policy.callbacks != Callbacks::Off).then_some(SIGNATURE_SECRET);
        let mut kiosk = BenchKiosk::start(
            &emulator.base_url(),
            terminal,
            &overrides(policy, k),
            secret,
        )
        .with_context(|| format!("starting kiosk {k}"))?;
        let amounts: Vec<u64> = (0..per_kiosk)
            .filter(|j| k + j * plan.kiosks < plan.payments)
            .map(|j| plan.mix[(k + j) % plan.mix.len()])
            .collect();
        let name = policy.name;
        tasks.push(tokio::spawn(async move {
            let mut paid = Vec::new();
            for (j, amount) in amounts.into_iter().enumerate() {
                match kiosk.pay(amount, &format!("BENCH-{k}-{j}")).await {
                    Ok(p) => paid.push(p),
                    Err(e) => {
                        let _ = kiosk.stop().await;
                        return Err(e);
                    }
                }
            }
            // The watcher sees the approved state in its own task, after the report may have
            // arrived here: back to idle, every approval has been seen.
            kiosk.idle().await?;
            let paid: Vec<_> = paid
                .into_iter()
                .map(|p| {
                    let approved = matches!(p.report.outcome, Final::Approved { .. })
                        .then(|| kiosk.approved_at(&p.report.merchant_reference))
                        .flatten();
                    (p, approved)
                })
                .collect();
            progress(&format!(
                "  {name}: kiosk {k} done ({} payments)",
                paid.len()
            ));
            kiosk.stop().await?;
            Ok::<_, anyhow::Error>(paid)
        }));
    }
    let mut latencies = Vec::new();
    let mut payments = 0;
    let mut paying = Duration::ZERO;
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let mut captures = Vec::new();
    let mut requests = 0;
    for emulator in handles {
        captures.extend(emulator.captures());
        requests += emulator.traffic().requests.len() as u64;
        emulator.shutdown().await;
    }
    for (paid, approved) in all {
        payments += 1;
        paying += paid.done - paid.scanned;
        let capture = captures
            .iter()
            .find(|(reference, _)| *reference == paid.report.merchant_reference);
        if let (Some(shown), Some((_, captured))) = (approved, capture) {
            latencies.push(shown.saturating_duration_since(*captured));
        }
    }
    Ok(Measured {
        latencies,
        requests,
        payments,
        paying,
    })
}

fn emulator_config(callbacks: Callbacks) -> EmulatorConfig {
    let rules = match callbacks {
        Callbacks::Off => None,
        Callbacks::On => Some(serde_json::json!([
            {"route": "callback", "kind": "callback_twice", "probability": 0.2},
            {"route": "callback", "kind": "callback_late", "delay_ms": 2000, "probability": 0.25}
        ])),
        Callbacks::Lost => Some(serde_json::json!([
            {"route": "callback", "kind": "callback_late", "delay_ms": 3_600_000}
        ])),
    };
    EmulatorConfig {
        time_scale: 1.0,
        record_traffic: true,
        card_jitter: CARD_JITTER,
        signature_secret: (callbacks != Callbacks::Off).then(|| Secret::new(SIGNATURE_SECRET)),
        faults: rules.map(|rules| {
            serde_json::from_value::<FaultPlan>(serde_json::json!({"seed": 13, "rules": rules}))
                .expect("the bench's callback fault plan is valid")
        }),
        ..Default::default()
    }
}

/// The kiosk's `[kiosk]` and `[payment]` keys for `policy`.
fn overrides(policy: &Policy, kiosk: usize) -> String {
    format!(
        "[kiosk]\nid = \"bench-{kiosk}\"\n[payment]\n{}",
        policy.payment
    )
}
