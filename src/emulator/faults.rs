//! Fault injection: make chosen routes answer errors, answer late, reset the connection, or do
//! the work and then never answer.
//!
//! The last kind is the one that matters most for a payment client: after it the client cannot
//! know whether its `POST /v1/sessions-profile` started a payment, and must find out by
//! `merchant_reference` instead of retrying. A plan is deterministic for its seed: the same
//! sequence of requests meets the same faults.
//!
//! `late_work` is the nastier cousin: the connection closes unanswered and the work is done
//! `delay_ms` later, after a client that looked the request up in vain may have concluded it
//! never happened. On `POST /v1/sessions-profile` that is a payment the terminal starts
//! prompting for minutes after the kiosk gave up on it.
//!
//! Three kinds are not about the answer to a request:
//! - `terminal_offline` (route `POST /v1/sessions-profile` only): the session is created and
//!   picked up, then the terminal drops off the network mid-payment. The transaction stays
//!   `INITIATED` and the terminal busy until someone cancels the session.
//! - `callback_twice` and `callback_late` (route `"callback"`): a session's `url.callback_url`
//!   is called twice, or `delay_ms` late. Dintero promises *at least once*, never *exactly once*
//!   or *on time*, and a receiver must cope with both.
//!
//! Every fault that fires is counted by kind; `GET /_emulator/faults` shows the counts, so a
//! chaos run can say what it survived.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A set of fault rules and the seed of their dice.
///
/// JSON, e.g. for `kioskpay emulator --faults FILE` or `POST /_emulator/faults`:
/// ```json
/// {"seed": 1, "rules": [
///   {"route": "POST /v1/sessions-profile", "kind": "drop_response", "count": 1},
///   {"route": "GET /v1/sessions/{id}", "kind": "status", "status": 503, "probability": 0.2}
/// ]}
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// Seeds the dice of rules with a `probability`, so a failing run can be replayed.
    #[serde(default)]
    pub seed: u64,
    /// Tried in order; the first rule that matches the request and fires decides.
    pub rules: Vec<FaultRule>,
}

/// One fault rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// `"METHOD /path"`; a `{name}` segment matches any one path segment. The query string is
    /// ignored, so `"GET /v1/transactions"` matches the list call (and only it).
    pub route: String,
    /// What happens to a request the rule fires on.
    pub kind: FaultKind,
    /// The HTTP status of a `status` fault (e.g. 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long a `delay` fault holds the answer, in milliseconds of tokio time (not scaled by
    /// the time scale: it models the network, not the terminal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Chance in `[0, 1]` that a matching request is hit; absent means always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Hit at most this many requests, then let the rest through; absent means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Seconds for a `Retry-After` header on a `status` fault (Dintero may send one with 429
    /// and 503), so a client's back-off can be tested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

/// What a fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `status` with Dintero's error body, without doing the work.
    Status,
    /// Do the work, then hold the answer for `delay_ms`.
    Delay,
    /// Close the connection with a TCP RST, without doing the work.
    Reset,
    /// Do the work, then close the connection without answering.
    DropResponse,
    /// Close the connection without answering, and do the work `delay_ms` later: a request
    /// stuck in Dintero's back end that lands after the client has given up on it and looked
    /// for it in vain.
    LateWork,
    /// Create the session, then let its terminal go offline after pickup (route
    /// `POST /v1/sessions-profile` only).
    TerminalOffline,
    /// Deliver a callback twice (route `"callback"`).
    CallbackTwice,
    /// Deliver a callback `delay_ms` late (route `"callback"`).
    CallbackLate,
}

impl FaultKind {
    /// The JSON spelling, also the key of the fired counts.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Status => "status",
            FaultKind::Delay => "delay",
            FaultKind::Reset => "reset",
            FaultKind::DropResponse => "drop_response",
            FaultKind::LateWork => "late_work",
            FaultKind::TerminalOffline => "terminal_offline",
            FaultKind::CallbackTwice => "callback_twice",
            FaultKind::CallbackLate => "callback_late",
        }
    }

    fn is_callback(self) -> bool {
        matches!(self, FaultKind::CallbackTwice | FaultKind::CallbackLate)
    }
}

/// The `route` of rules about outgoing callbacks rather than incoming requests.
pub const CALLBACK_ROUTE: &str = "callback";
/// The only route a `terminal_offline` rule may name: the call that starts a payment.
const CREATE_ROUTE: &str = "POST /v1/sessions-profile";

/// Why a fault plan cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FaultPlanError {
    /// The file could not be read.
    #[error("cannot read fault plan {path}: {source}; check the path given with --faults")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a fault plan in JSON.
    #[error("fault plan {path} is not valid: {source}; expected {{\"seed\":1,\"rules\":[{{\"route\":\"POST /v1/sessions-profile\",\"kind\":\"status\",\"status\":503}}]}}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde_json's message, with line and column.
        source: serde_json::Error,
    },
    /// A rule is well-formed JSON but makes no sense.
    #[error("fault rule {index} ({route}): {problem}")]
    Invalid {
        /// Position in `rules`, from 0.
        index: usize,
        /// The rule's route, to find it in the file.
        route: String,
        /// What is wrong and what would be accepted.
        problem: String,
    },
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

impl FaultPlan {
    /// Reads and validates a plan from a JSON file.
    pub fn load(path: impl AsRef<Path>) -> Result<FaultPlan, FaultPlanError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| FaultPlanError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let plan: FaultPlan =
            serde_json::from_str(&text).map_err(|source| FaultPlanError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        plan.validate()?;
        Ok(plan)
    }

    /// Checks every rule, so a typo fails loudly at start instead of silently never firing.
    pub fn validate(&self) -> Result<(), FaultPlanError> {
        for (index, rule) in self.rules.iter().enumerate() {
            let invalid = |problem: String| FaultPlanError::Invalid {
                index,
                route: rule.route.clone(),
                problem,
            };
            if rule.kind.is_callback() != (rule.route == CALLBACK_ROUTE) {
                return Err(invalid(format!(
                    "callback_twice and callback_late rules, and only they, take the route \
                     \"{CALLBACK_ROUTE}\""
                )));
            }
            if rule.kind == FaultKind::TerminalOffline && rule.route != CREATE_ROUTE {
                return Err(invalid(format!(
                    "a terminal_offline rule takes the route \"{CREATE_ROUTE}\""
                )));
            }
            if let Some(p) = rule.probability {
                if !(0.0..=1.0).contains(&p) {
                    return Err(invalid(format!("probability {p} is not within 0..=1")));
                }
            }
            match rule.kind {
                FaultKind::CallbackLate if rule.delay_ms.is_none() => {
                    return Err(invalid("a callback_late fault needs \"delay_ms\"".into()));
                }
                FaultKind::CallbackTwice | FaultKind::CallbackLate => continue,
                _ => {}
            }
            let (method, path) = rule.route.split_once(' ').ok_or_else(|| {
                invalid("route must be \"METHOD /path\", e.g. \"GET /v1/sessions/{id}\"".into())
            })?;
            if !METHODS.contains(&method) {
                return Err(invalid(format!(
                    "method {method:?} is not one of {}",
                    METHODS.join(", ")
                )));
            }
            if !path.starts_with('/') || path.contains(['?', ' ']) {
                return Err(invalid(
                    "path must start with '/' and carry no query string".into(),
                ));
            }
            match rule.kind {
                FaultKind::Status => match rule.status {
                    Some(s) if (400..=599).contains(&s) => {}
                    _ => return Err(invalid("a status fault needs \"status\": 400..599".into())),
                },
                FaultKind::Delay | FaultKind::LateWork => {
                    if rule.delay_ms.is_none() {
                        return Err(invalid(format!(
                            "a {} fault needs \"delay_ms\"",
                            rule.kind.name()
                        )));
                    }
                }
                FaultKind::Reset
                | FaultKind::DropResponse
                | FaultKind::TerminalOffline
                | FaultKind::CallbackTwice
                | FaultKind::CallbackLate => {}
            }
        }
        Ok(())
    }
}

/// What the server does to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer this status without doing the work, with a `Retry-After` of so many seconds.
    Status(u16, Option<u64>),
    /// Do the work and answer after this long.
    Delay(Duration),
    /// RST the connection without doing the work.
    Reset,
    /// Do the work and close without answering.
    DropResponse,
    /// Close without answering; do the work this much later.
    LateWork(Duration),
    /// Do the work; the new session's terminal goes offline after pickup.
    TerminalOffline,
}

/// What happens to one outgoing callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackFault {
    /// Deliver it twice.
    Twice,
    /// Deliver it this much later than due.
    Late(Duration),
}

/// The active plan with its dice, per-rule hit counts and per-kind fired counts.
#[derive(Debug)]
pub struct FaultState {
    plan: FaultPlan,
    rng: fastrand::Rng,
    hits: Vec<u32>,
    fired: BTreeMap<&'static str, u64>,
}

impl FaultState {
    /// Arms a validated plan with fresh dice and counters.
    pub fn new(plan: FaultPlan) -> FaultState {
        FaultState {
            rng: fastrand::Rng::with_seed(plan.seed),
            hits: vec![0; plan.rules.len()],
            fired: BTreeMap::new(),
            plan,
        }
    }

    /// The first rule matching `matches` that fires; counts the hit.
    fn roll(&mut self, matches: impl Fn(&FaultRule) -> bool) -> Option<FaultRule> {
        for (i, rule) in self.plan.rules.iter().enumerate() {
            if !matches(rule) {
                continue;
            }
            if rule.count.is_some_and(|c| self.hits[i] >= c) {
                continue;
            }
            if let Some(p) = rule.probability {
                if self.rng.f64() >= p {
                    continue;
                }
            }
            self.hits[i] += 1;
            *self.fired.entry(rule.kind.name()).or_default() += 1;
            return Some(rule.clone());
        }
        None
    }

    /// Decides the fate of a request. Only matching rules roll dice, so unrelated traffic does
    /// not change which request a rule hits.
    pub fn decide(&mut self, method: &str, path: &str) -> Option<FaultAction> {
        let rule =
            self.roll(|rule| !rule.kind.is_callback() && route_matches(&rule.route, method, path))?;
        Some(match rule.kind {
            FaultKind::Status => {
                FaultAction::Status(rule.status.unwrap_or(503), rule.retry_after_s)
            }
            FaultKind::Delay => {
                FaultAction::Delay(Duration::from_millis(rule.delay_ms.unwrap_or(0)))
            }
            FaultKind::Reset => FaultAction::Reset,
            FaultKind::DropResponse => FaultAction::DropResponse,
            FaultKind::LateWork => {
                FaultAction::LateWork(Duration::from_millis(rule.delay_ms.unwrap_or(0)))
            }
            FaultKind::TerminalOffline => FaultAction::TerminalOffline,
            FaultKind::CallbackTwice | FaultKind::CallbackLate => return None,
        })
    }

    /// Decides the fate of one callback about to be sent.
    pub fn decide_callback(&mut self) -> Option<CallbackFault> {
        let rule = self.roll(|rule| rule.kind.is_callback())?;
        match rule.kind {
            FaultKind::CallbackTwice => Some(CallbackFault::Twice),
            _ => Some(CallbackFault::Late(Duration::from_millis(
                rule.delay_ms.unwrap_or(0),
            ))),
        }
    }

    /// `GET /_emulator/faults`: the plan, and how often each rule and each kind fired.
    pub fn report(&self) -> serde_json::Value {
        serde_json::json!({
            "seed": self.plan.seed,
            "rules": self.plan.rules,
            "hits": self.hits,
            "fired": self.fired,
        })
    }
}

/// Whether `"METHOD /a/{x}/c"` matches a request.
fn route_matches(route: &str, method: &str, path: &str) -> bool {
    let Some((m, pattern)) = route.split_once(' ') else {
        return false;
    };
    if m != method {
        return false;
    }
    let mut want = pattern.trim_end_matches('/').split('/');
    let mut got = path.trim_end_matches('/').split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) => {
                let wildcard = w.starts_with('{') && w.ends_with('}');
                if !(wildcard && !g.is_empty() || w == g) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(route: &str, kind: FaultKind) -> FaultRule {
        FaultRule {
            route: route.into(),
            kind,
            status: Some(503),
            delay_ms: Some(10),
            probability: None,
            count: None,
            retry_after_s: None,
        }
    }

    #[test]
    fn routes_match_segment_wildcards_and_not_the_list() {
        assert!(route_matches(
            "GET /v1/sessions/{id}",
            "GET",
            "/v1/sessions/T1.abc"
        ));
        assert!(!route_matches(
            "GET /v1/sessions/{id}",
            "GET",
            "/v1/sessions"
        ));
        assert!(!route_matches(
            "GET /v1/sessions/{id}",
            "POST",
            "/v1/sessions/x"
        ));
        assert!(route_matches(
            "GET /v1/transactions",
            "GET",
            "/v1/transactions"
        ));
        assert!(!route_matches(
            "GET /v1/transactions",
            "GET",
            "/v1/transactions/T1.x"
        ));
        assert!(route_matches(
            "POST /v1/accounts/{aid}/auth/token",
            "POST",
            "/v1/accounts/T12345678/auth/token"
        ));
    }

    #[test]
    fn count_limits_hits_and_seed_makes_dice_repeatable() {
        let mut once = rule("POST /v1/sessions-profile", FaultKind::DropResponse);
        once.count = Some(1);
        let mut s = FaultState::new(FaultPlan {
            seed: 1,
            rules: vec![once],
        });
        assert_eq!(
            s.decide("POST", "/v1/sessions-profile"),
            Some(FaultAction::DropResponse)
        );
        assert_eq!(s.decide("POST", "/v1/sessions-profile"), None);

        let mut maybe = rule("GET /v1/sessions/{id}", FaultKind::Status);
        maybe.probability = Some(0.5);
        let plan = FaultPlan {
            seed: 7,
            rules: vec![maybe],
        };
        let run = |plan: &FaultPlan| {
            let mut s = FaultState::new(plan.clone());
            (0..64)
                .map(|_| s.decide("GET", "/v1/sessions/x").is_some())
                .collect::<Vec<_>>()
        };
        let a = run(&plan);
        assert_eq!(a, run(&plan));
        assert!(a.contains(&true) && a.contains(&false));
    }

    #[test]
    fn validation_names_the_rule() {
        let mut bad = rule("FETCH /v1/sessions", FaultKind::Reset);
        let plan = FaultPlan {
            seed: 0,
            rules: vec![rule("GET /x", FaultKind::Reset), bad.clone()],
        };
        let err = plan.validate().unwrap_err().to_string();
        assert!(
            err.contains("fault rule 1") && err.contains("FETCH"),
            "{err}"
        );
        bad.route = "GET /x".into();
        bad.kind = FaultKind::Status;
        bad.status = None;
        let err = FaultPlan {
            seed: 0,
            rules: vec![bad],
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.contains("status"), "{err}");
    }

    #[test]
    fn load_reads_a_file_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(
            &good,
            r#"{"seed":3,"rules":[{"route":"GET /v1/sessions/{id}","kind":"delay","delay_ms":5}]}"#,
        )
        .unwrap();
        let plan = FaultPlan::load(&good).unwrap();
        assert_eq!(plan.rules[0].kind, FaultKind::Delay);
        let bad = dir.path().join("bad.json");
        std::fs::write(
            &bad,
            r#"{"rules":[{"route":"GET /x","kind":"reset","propability":1}]}"#,
        )
        .unwrap();
        let err = FaultPlan::load(&bad).unwrap_err().to_string();
        assert!(err.contains("propability"), "{err}");
    }
}
