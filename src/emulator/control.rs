//! The control API under `/_emulator/`: never part of Dintero's API, no token needed.
//!
//! It lets tests, demos and acceptance checks see the books and steer the terminals. It has no
//! authentication, which is why the emulator should only ever listen on loopback.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::api::{json_body, Body};
use super::error::ApiErr;
use super::faults::FaultPlan;
use super::server::Shared;
use super::terminal::Outcome;
use crate::dintero::TerminalStatus;

/// The `/_emulator/` routes.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_emulator/ledger", get(ledger))
        .route("/_emulator/terminals/{id}/outcome", post(outcome))
        .route("/_emulator/terminals/{id}/status", put(status))
        .route("/_emulator/reset", post(reset))
        .route(
            "/_emulator/faults",
            get(fault_report).post(set_faults).delete(clear_faults),
        )
}

/// `GET /_emulator/ledger`.
async fn ledger(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(shared.ledger().summary())
}

fn field<'a>(body: &'a Value, key: &str) -> Result<&'a str, ApiErr> {
    body.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiErr::bad_request(format!("{key} is required (a string)")))
}

/// `POST /_emulator/terminals/{id}/outcome`: the next payment on that terminal only.
async fn outcome(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiErr> {
    let body = json_body(body)?;
    let name = field(&body, "outcome")?;
    let outcome = Outcome::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Outcome::ALL.iter().map(|o| o.name()).collect();
        ApiErr::bad_request(format!(
            "outcome: {name:?} is not one of {}",
            names.join(", ")
        ))
    })?;
    if !shared.ledger().set_next_outcome(&id, outcome) {
        return Err(ApiErr::not_found(format!("terminal {id} not found")));
    }
    tracing::info!(terminal = %id, outcome = name, "next outcome set");
    Ok(Json(json!({ "terminal_id": id, "next_outcome": name })))
}

/// `PUT /_emulator/terminals/{id}/status`.
async fn status(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiErr> {
    let body = json_body(body)?;
    let status = match field(&body, "status")? {
        "ACTIVE" => TerminalStatus::Active,
        "INACTIVE" => TerminalStatus::Inactive,
        "PENDING" => TerminalStatus::Pending,
        "ACTION_REQUIRED" => TerminalStatus::ActionRequired,
        "DELETED" => TerminalStatus::Deleted,
        "ERROR" => TerminalStatus::Error,
        "SYNC_ERROR" => TerminalStatus::SyncError,
        other => {
            return Err(ApiErr::bad_request(format!(
            "status: {other:?} is not one of ACTIVE, INACTIVE, PENDING, ACTION_REQUIRED, DELETED, ERROR, SYNC_ERROR"
        )))
        }
    };
    let reason = body
        .get("status_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = status.as_str().to_string();
    if !shared.ledger().set_terminal_status(&id, status, reason) {
        return Err(ApiErr::not_found(format!("terminal {id} not found")));
    }
    tracing::info!(terminal = %id, status = %name, "terminal status set");
    Ok(Json(json!({ "terminal_id": id, "status": name })))
}

/// `POST /_emulator/reset`: the state the emulator started in.
async fn reset(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.reset();
    tracing::info!("emulator reset to the seeded sandbox");
    Json(json!({ "reset": true }))
}

/// `POST /_emulator/faults`: replaces the fault plan.
async fn set_faults(State(shared): State<Arc<Shared>>, body: Body) -> Result<Json<Value>, ApiErr> {
    let body = json_body(body)?;
    let plan: FaultPlan = serde_json::from_value(body)
        .map_err(|e| ApiErr::bad_request(format!("not a fault plan: {e}")))?;
    plan.validate()
        .map_err(|e| ApiErr::bad_request(e.to_string()))?;
    let rules = plan.rules.len();
    shared.set_faults(Some(plan));
    tracing::info!(rules, "fault plan installed");
    Ok(Json(json!({ "rules": rules })))
}

/// `GET /_emulator/faults`: the plan in force with its hit counts per rule and its fired
/// counts per kind (`null` without a plan). The ledger stays the books; this says what was
/// done to the traffic.
async fn fault_report(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(shared.fault_report())
}

/// `DELETE /_emulator/faults`.
async fn clear_faults(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.set_faults(None);
    tracing::info!("fault plan cleared");
    Json(json!({ "rules": 0 }))
}
