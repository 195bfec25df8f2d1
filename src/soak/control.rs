//! The emulator's control API as the soak uses it: arming a dropped answer, and counting the
//! faults the emulator injected.

use crate::emulator::{FaultKind, FaultRule};
use anyhow::{Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

use super::plan::fault_plan;
use super::Soak;

/// A control-API GET on the emulator.
pub(super) async fn control(base: &str, path: &str) -> Result<Value> {
    let url = format!("{base}{path}");
    tokio::task::spawn_blocking(move || -> Result<Value> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut response = agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        let text = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .with_context(|| format!("reading {url}"))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {url}"))
    })
    .await
    .context("the control call did not run")?
}

/// A control-API POST on the emulator with a JSON body.
async fn control_post(base: &str, path: &str, body: &str) -> Result<()> {
    let url = format!("{base}{path}");
    let body = body.to_string();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        agent
            .post(&url)
            .header("content-type", "application/json")
            .send(&body)
            .with_context(|| format!("POST {url}"))?;
        Ok(())
    })
    .await
    .context("the control call did not run")?
}

/// `GET /_emulator/faults`' fired counts, with `status` split by code using the plan's rules.
/// With `drop_first`, the first rule is the soak's one-shot drop after a state fault: its hits
/// are returned apart, not among the random faults.
fn fault_counts_by_kind(report: &Value, drop_first: bool) -> (BTreeMap<String, u64>, u64) {
    let mut out = BTreeMap::new();
    let rules = report["rules"].as_array().cloned().unwrap_or_default();
    let hits = report["hits"].as_array().cloned().unwrap_or_default();
    let skip = usize::from(drop_first);
    let dropped = if drop_first {
        hits.first().and_then(Value::as_u64).unwrap_or(0)
    } else {
        0
    };
    for (rule, hits) in rules.iter().zip(hits.iter()).skip(skip) {
        let kind = rule["kind"].as_str().unwrap_or("?");
        let key = match rule["status"].as_u64() {
            Some(status) => format!("{kind}_{status}"),
            None => kind.to_string(),
        };
        *out.entry(key).or_insert(0) += hits.as_u64().unwrap_or(0);
    }
    (out, dropped)
}

impl Soak {
    /// Puts a one-shot rule in front of the fault plan that drops the answer to the next
    /// session creation (the session is created), so the kiosk must find it by reference.
    pub(super) async fn drop_next_create(&mut self) -> Result<()> {
        let report = control(&self.base, "/_emulator/faults").await?;
        self.bank_fault_counts(&report);
        self.plans += 1;
        let mut plan = fault_plan(
            self.options.fault_rate,
            self.options.seed.wrapping_add(self.plans),
        );
        plan.rules.insert(
            0,
            FaultRule {
                route: "POST /v1/sessions-profile".into(),
                kind: FaultKind::DropResponse,
                status: None,
                delay_ms: None,
                probability: None,
                count: Some(1),
                retry_after_s: None,
            },
        );
        control_post(
            &self.base,
            "/_emulator/faults",
            &serde_json::to_string(&plan)?,
        )
        .await?;
        self.drop_armed = true;
        Ok(())
    }

    /// Adds the fault counts of the plan in force to those of the plans before it.
    pub(super) fn bank_fault_counts(&mut self, report: &Value) {
        let (counts, dropped) = fault_counts_by_kind(report, self.drop_armed);
        for (kind, n) in counts {
            *self.faults_banked.entry(kind).or_insert(0) += n;
        }
        self.creates_dropped += dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fault_counts_keep_the_one_shot_drop_apart() {
        let report = json!({
            "rules": [
                {"kind": "drop_response", "count": 1},
                {"kind": "status", "status": 500},
                {"kind": "drop_response"}
            ],
            "hits": [1, 4, 2]
        });
        let (counts, dropped) = fault_counts_by_kind(&report, true);
        assert_eq!(dropped, 1);
        assert_eq!(counts["status_500"], 4);
        assert_eq!(counts["drop_response"], 2);
        let (counts, dropped) = fault_counts_by_kind(&report, false);
        assert_eq!((dropped, counts["drop_response"]), (0, 3));
    }
}
