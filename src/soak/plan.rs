//! What a run asks for, drawn from `--seed`: the fault plan over the routes the kiosk calls,
//! the cart amounts and their outcomes, and which restarts bring a kill or a state fault.

use crate::emulator::{FaultKind, FaultPlan, FaultRule};

use super::FAULT_DELAY_MS;

/// The routes the daemon calls, each of which gets the fault mix.
const ROUTES: [&str; 8] = [
    "POST /v1/accounts/{aid}/auth/token",
    "GET /v1/accounts/{aid}/terminals/{id}",
    "POST /v1/sessions-profile",
    "GET /v1/sessions",
    "GET /v1/sessions/{id}",
    "POST /v1/sessions/{id}/cancel",
    "GET /v1/transactions",
    "GET /v1/transactions/{id}",
];

/// The fault mix: kind, status, `Retry-After`, share of the fault rate.
const MIX: [(FaultKind, Option<u16>, Option<u64>, f64); 5] = [
    (FaultKind::Status, Some(500), None, 0.30),
    (FaultKind::Status, Some(503), Some(1), 0.05),
    (FaultKind::Delay, None, None, 0.20),
    (FaultKind::Reset, None, None, 0.20),
    (FaultKind::DropResponse, None, None, 0.25),
];

/// Share of session creations whose terminal goes offline mid-payment, relative to the fault
/// rate. Small: each one costs the kiosk its whole payment timeout.
const TERMINAL_OFFLINE_SHARE: f64 = 0.01;

/// Cart amounts: the last two digits pick the emulator's outcome; weights out of 100.
const OUTCOME_MIX: [(Option<u64>, u32); 10] = [
    (None, 50),     // approved, contactless
    (Some(51), 6),  // declined
    (Some(52), 4),  // insufficient funds
    (Some(53), 7),  // customer cancels
    (Some(54), 4),  // no card (terminal timeout)
    (Some(55), 3),  // terminal offline
    (Some(56), 5),  // technical failure
    (Some(57), 5),  // slow issuer
    (Some(58), 6),  // capture lag
    (Some(59), 10), // chip and PIN
];

/// The fault plan of a soak: every route gets every kind of `MIX`, with probabilities
/// chained so that each kind fires on `rate × share` of the route's requests.
pub fn fault_plan(rate: f64, seed: u64) -> FaultPlan {
    let mut rules = Vec::new();
    for route in ROUTES {
        let mut mix: Vec<(FaultKind, Option<u16>, Option<u64>, f64)> = MIX.to_vec();
        if route == "POST /v1/sessions-profile" {
            mix.push((
                FaultKind::TerminalOffline,
                None,
                None,
                TERMINAL_OFFLINE_SHARE,
            ));
        }
        let mut taken = 0.0;
        for (kind, status, retry_after_s, share) in mix {
            let want = rate * share;
            // The chance this rule fires given that no earlier one did.
            let probability = (want / (1.0 - taken)).clamp(0.0, 1.0);
            taken += want;
            rules.push(FaultRule {
                route: route.to_string(),
                kind,
                status,
                delay_ms: (kind == FaultKind::Delay).then_some(FAULT_DELAY_MS),
                probability: Some(probability),
                count: None,
                retry_after_s,
            });
        }
    }
    FaultPlan { seed, rules }
}

/// How a kill was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KillKind {
    /// The daemon's own hook, right after a journal append.
    Journal,
    /// `SIGKILL` from the soak at a random moment.
    Random,
}

/// What a restart does to the kiosk's state directory before the daemon starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StateFault {
    /// Deletes it: a re-imaged SD card.
    Lose,
    /// Damages the journal (one of [`DAMAGES`]).
    Damage,
}

/// Which of the first `restarts` restarts bring which state fault: `lose` losses and `damage`
/// damages at distinct restarts drawn from `rng`, `None` for the others.
pub(super) fn state_fault_plan(
    restarts: usize,
    lose: usize,
    damage: usize,
    rng: &mut fastrand::Rng,
) -> Vec<Option<StateFault>> {
    let mut plan: Vec<Option<StateFault>> = std::iter::repeat_n(Some(StateFault::Lose), lose)
        .chain(std::iter::repeat_n(Some(StateFault::Damage), damage))
        .chain(std::iter::repeat(None))
        .take(restarts.max(lose + damage))
        .collect();
    rng.shuffle(&mut plan);
    plan
}

/// The `i`-th cart's amount in minor units: a few kroner to a few thousand, last two digits
/// from [`OUTCOME_MIX`].
pub(super) fn cart_amount(rng: &mut fastrand::Rng) -> u64 {
    let mut pick = rng.u32(0..100);
    let mut digits = None;
    for (d, weight) in OUTCOME_MIX {
        if pick < weight {
            digits = d;
            break;
        }
        pick -= weight;
    }
    let kroner = rng.u64(5..5000);
    kroner * 100 + digits.unwrap_or_else(|| rng.u64(0..51))
}

pub(super) fn cart_line(amount: u64, cart: &str) -> String {
    format!("{}.{:02};{cart}\n", amount / 100, amount % 100)
}

#[cfg(test)]
mod tests {
    use super::super::CALL_TIMEOUT_MS;
    use super::*;

    #[test]
    fn fault_plan_hits_each_route_at_the_asked_rate() {
        let plan = fault_plan(0.2, 7);
        plan.validate().unwrap();
        for route in ROUTES {
            let rules: Vec<&FaultRule> = plan.rules.iter().filter(|r| r.route == route).collect();
            // P(some rule fires) = 1 - Π(1 - p).
            let none: f64 = rules
                .iter()
                .map(|r| 1.0 - r.probability.unwrap_or(1.0))
                .product();
            let total = 1.0 - none;
            let want = if route == "POST /v1/sessions-profile" {
                0.2 * (1.0 + TERMINAL_OFFLINE_SHARE)
            } else {
                0.2
            };
            assert!((total - want).abs() < 1e-9, "{route}: {total}");
        }
        assert!(plan
            .rules
            .iter()
            .any(|r| r.kind == FaultKind::Delay && r.delay_ms > Some(CALL_TIMEOUT_MS)));
    }

    #[test]
    fn cart_lines_are_scanner_codes_in_major_units() {
        assert_eq!(cart_line(39951, "SOAK-7"), "399.51;SOAK-7\n");
        assert_eq!(cart_line(505, "SOAK-B-0"), "5.05;SOAK-B-0\n");
        let mut rng = fastrand::Rng::with_seed(1);
        let amounts: Vec<u64> = (0..1000).map(|_| cart_amount(&mut rng)).collect();
        assert!(amounts.iter().all(|a| *a >= 500));
        for digits in 51..=59 {
            assert!(amounts.iter().any(|a| a % 100 == digits), "{digits}");
        }
    }

    #[test]
    fn the_state_fault_plan_places_each_fault_at_its_own_restart() {
        let mut rng = fastrand::Rng::with_seed(7);
        let plan = state_fault_plan(20, 3, 4, &mut rng);
        assert_eq!(plan.len(), 20);
        let count = |f| plan.iter().filter(|p| **p == Some(f)).count();
        assert_eq!(count(StateFault::Lose), 3);
        assert_eq!(count(StateFault::Damage), 4);
        let again = state_fault_plan(20, 3, 4, &mut fastrand::Rng::with_seed(7));
        assert_eq!(plan, again, "the seed decides");
        assert!(state_fault_plan(0, 0, 0, &mut rng).is_empty());
        assert_eq!(
            state_fault_plan(2, 1, 1, &mut rng).iter().flatten().count(),
            2
        );
    }
}
