//! The Dintero routes: auth, terminals, sessions, transactions, refunds, terminal operations.
//!
//! Handlers parse bodies themselves (from bytes, not through a typed JSON extractor) so that
//! every refusal names the offending field in Dintero's error body, the way the real API's
//! validation does, and so that a client sending `Content-Type: application/json` on a GET (the
//! Python SDK does) is not refused.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use base64::prelude::{Engine, BASE64_STANDARD};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use super::error::ApiErr;
use super::ledger::{NewSession, RefundReq, TerminalListFilter, TxFilter};
use super::server::Shared;
use super::terminal::{scaled, Outcome, REFUND_S};
use super::{ACCOUNT_ID, CLIENT_ID, CLIENT_SECRET, PROFILE_ID};

type Params = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;
pub(super) type Body = Result<Bytes, axum::extract::rejection::BytesRejection>;

/// The Dintero part of the emulator's router.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/accounts/{aid}/auth/token", post(token))
        .route("/v1/accounts/{aid}/terminals", get(list_terminals))
        .route("/v1/accounts/{aid}/terminals/{terminal_id}", get(terminal))
        .route(
            "/v1/accounts/{aid}/terminals/{terminal_id}/sync",
            post(sync_terminal),
        )
        .route("/v1/sessions-profile", post(create_session))
        .route("/v1/sessions", get(search_sessions))
        .route("/v1/sessions/{id}", get(get_session))
        .route("/v1/sessions/{id}/cancel", post(cancel_session))
        .route("/v1/view/{id}", get(view))
        .route("/v1/transactions", get(list_transactions))
        .route("/v1/transactions/{id}", get(get_transaction))
        .route("/v1/transactions/{id}/refund", post(refund))
        .route(
            "/v1/admin/terminals/operations",
            post(create_operation).get(list_operations),
        )
}

/// The API client behind a valid bearer token.
pub struct Caller {
    client_id: String,
}

impl FromRequestParts<Arc<Shared>> for Caller {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiErr> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiErr::unauthorized(format!(
                    "missing bearer token: get one from POST /v1/accounts/{ACCOUNT_ID}/auth/token"
                ))
            })?;
        let client_id = shared.check_token(token.trim(), Instant::now())?;
        Ok(Caller { client_id })
    }
}

pub(super) fn json_body(body: Body) -> Result<Value, ApiErr> {
    let bytes = body.map_err(|e| ApiErr::bad_request(format!("cannot read the body: {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiErr::bad_request(format!("the body is not valid JSON: {e}")))
}

fn params(q: Params) -> Result<HashMap<String, String>, ApiErr> {
    q.map(|Query(p)| p)
        .map_err(|e| ApiErr::bad_request(format!("bad query string: {e}")))
}

fn limit(p: &HashMap<String, String>, default: usize) -> Result<usize, ApiErr> {
    match p.get("limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(ApiErr::bad_request(format!(
                "limit: {v:?} is not an integer from 1 to 100"
            ))),
        },
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(BASE64_STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// `POST /v1/accounts/{aid}/auth/token`.
///
/// Credentials come as HTTP Basic (Python SDK, current Node SDK) or, when no Basic header is
/// sent, as `client_id`/`client_secret` in the JSON body (an older Node SDK does that).
/// `grant_type` and `audience` are checked when present; the audience only has to end with
/// `/v1/accounts/{aid}`, because SDKs build it from their own configured API base URL.
async fn token(
    State(shared): State<Arc<Shared>>,
    Path(aid): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiErr> {
    if aid != ACCOUNT_ID {
        return Err(ApiErr::not_found(format!(
            "account {aid} not found; the emulator's sandbox account is {ACCOUNT_ID}"
        )));
    }
    let body = json_body(body)?;
    let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
    let (client_id, secret) = match basic_credentials(&headers) {
        Some(c) => c,
        None => match (field("client_id"), field("client_secret")) {
            (Some(id), Some(secret)) => (id, secret),
            _ => {
                return Err(ApiErr::unauthorized(
                    "missing client credentials: send HTTP Basic client_id:client_secret",
                ))
            }
        },
    };
    if let Some(g) = body.get("grant_type") {
        if g != "client_credentials" {
            return Err(ApiErr::bad_request(
                "grant_type: only \"client_credentials\" is supported",
            ));
        }
    }
    if let Some(a) = body.get("audience") {
        let suffix = format!("/v1/accounts/{aid}");
        if !a
            .as_str()
            .is_some_and(|a| a.trim_end_matches('/').ends_with(&suffix))
        {
            return Err(ApiErr::bad_request(format!(
                "audience: must be the API base URL followed by {suffix}"
            )));
        }
    }
    if client_id != CLIENT_ID || secret != CLIENT_SECRET {
        tracing::warn!(client_id = %client_id, "token refused: bad client credentials");
        return Err(ApiErr::unauthorized("invalid client credentials"));
    }
    let access_token = shared.issue_token(&client_id, Instant::now());
    Ok(Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": shared.token_ttl.as_secs(),
    }))
    .into_response())
}

/// `GET /v1/accounts/{aid}/terminals/{terminal_id}`.
async fn terminal(
    _caller: Caller,
    State(shared): State<Arc<Shared>>,
    Path((aid, terminal_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiErr> {
    let found = (aid == ACCOUNT_ID)
        .then(|| shared.ledger().terminal(&terminal_id))
        .flatten();
    found.map(Json).ok_or_else(|| {
        ApiErr::not_found(format!("terminal {terminal_id} not found on account {aid}"))
    })
}

/// `GET /v1/accounts/{aid}/terminals?status=&device_model=&device_serial_number=`.
async fn list_terminals(
    _caller: Caller,
    State(shared): State<Arc<Shared>>,
    Path(aid): Path<String>,
    query: Params,
) -> Result<Json<Value>, ApiErr> {
    if aid != ACCOUNT_ID {
        return Err(ApiErr::not_found(format!("account {aid} not found")));
    }
    let mut p = params(query)?;
    let filter = TerminalListFilter {
        status: p.remove("status"),
        device_model: p.remove("device_model"),
        device_serial_number: p.remove("device_serial_number"),
    };
    Ok(Json(Value::Array(
        shared.ledger().terminals(&filter, Instant::now()),
    )))
}

/// `POST /v1/accounts/{aid}/terminals/{terminal_id}/sync`.
async fn sync_terminal(
    _caller: Caller,
    State(shared): State<Arc<Shared>>,
    Path((aid, terminal_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiErr> {
    if aid != ACCOUNT_ID {
        return Err(ApiErr::not_found(format!(
            "terminal {terminal_id} not found on account {aid}"
        )));
    }
    shared.ledger().sync_terminal(&terminal_id).map(Json)
}

fn req_str<'a>(v: &'a Value, key: &str, path: &str) -> Result<&'a str, ApiErr> {
    match v.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(ApiErr::bad_request(format!("{path} must not be empty"))),
        Some(_) => Err(ApiErr::bad_request(format!("{path} must be a string"))),
        None => Err(ApiErr::bad_request(format!("{path} is required"))),
    }
}

fn req_amount(v: &Value, key: &str, path: &str) -> Result<u64, ApiErr> {
    match v.get(key) {
        None => Err(ApiErr::bad_request(format!("{path} is required"))),
        Some(a) => a.as_u64().ok_or_else(|| {
            ApiErr::bad_request(format!(
                "{path} must be a non-negative integer in minor units, got {a}"
            ))
        }),
    }
}

/// Checks a `POST /v1/sessions-profile` body the way Dintero's validation does, naming the
/// first bad field.
fn parse_new_session(body: &Value) -> Result<NewSession, ApiErr> {
    if !body.is_object() {
        return Err(ApiErr::bad_request("the body must be a JSON object"));
    }
    let profile = req_str(body, "profile_id", "profile_id")?;
    if profile != PROFILE_ID {
        return Err(ApiErr::bad_request(format!(
            "profile_id: profile {profile} not found on account {ACCOUNT_ID}"
        )));
    }
    let url = body
        .get("url")
        .filter(|u| u.is_object())
        .ok_or_else(|| ApiErr::bad_request("url.return_url is required"))?;
    req_str(url, "return_url", "url.return_url")?;
    let order = body
        .get("order")
        .filter(|o| o.is_object())
        .ok_or_else(|| ApiErr::bad_request("order is required"))?;
    let amount = req_amount(order, "amount", "order.amount")?;
    let currency = req_str(order, "currency", "order.currency")?;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiErr::bad_request(format!(
            "order.currency: {currency:?} is not an ISO 4217 code such as NOK"
        )));
    }
    let merchant_reference = req_str(order, "merchant_reference", "order.merchant_reference")?;
    let merchant_reference_2 = match order.get("merchant_reference_2") {
        None | Some(Value::Null) => None,
        Some(_) => Some(req_str(
            order,
            "merchant_reference_2",
            "order.merchant_reference_2",
        )?),
    };
    if let Some(items) = order.get("items") {
        let items = items
            .as_array()
            .ok_or_else(|| ApiErr::bad_request("order.items must be an array"))?;
        if !items.is_empty() {
            let mut sum: u64 = 0;
            for (i, item) in items.iter().enumerate() {
                let a = req_amount(item, "amount", &format!("order.items[{i}].amount"))?;
                sum = sum.checked_add(a).ok_or_else(|| {
                    ApiErr::bad_request("order.items[].amount: the sum overflows")
                })?;
            }
            if sum != amount {
                return Err(ApiErr::bad_request(format!(
                    "order.amount: {amount} does not equal the sum of order.items[].amount ({sum})"
                )));
            }
        }
    }
    let store = order
        .get("store")
        .filter(|s| s.is_object())
        .ok_or_else(|| ApiErr::bad_request("order.store is required for in-person payments"))?;
    Ok(NewSession {
        store_id: req_str(store, "id", "order.store.id")?.to_string(),
        terminal_id: req_str(store, "terminal_id", "order.store.terminal_id")?.to_string(),
        payout_destination_id: req_str(
            store,
            "payout_destination_id",
            "order.store.payout_destination_id",
        )?
        .to_string(),
        order: order.clone(),
        url: url.clone(),
        amount,
        currency: currency.to_string(),
        merchant_reference: merchant_reference.to_string(),
        merchant_reference_2: merchant_reference_2.map(str::to_string),
    })
}

/// Marks a create request hit by a `terminal_offline` fault: its terminal goes offline after
/// pickup.
#[derive(Clone, Copy, Debug)]
pub struct TerminalOffline;

/// `POST /v1/sessions-profile`: starts the payment on the terminal.
async fn create_session(
    _caller: Caller,
    State(shared): State<Arc<Shared>>,
    offline: Option<Extension<TerminalOffline>>,
    headers: HeaderMap,
    query: Params,
    body: Body,
) -> Result<Json<Value>, ApiErr> {
    let include_session = params(query)?
        .get("include_session")
        .is_some_and(|v| v == "true");
    let new = parse_new_session(&json_body(body)?)?;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let mut ledger = shared.ledger();
    let forced = offline.map(|_| Outcome::OfflineMidPayment);
    let id = ledger.create_session(new, forced, Instant::now())?;
    let mut answer = json!({ "id": id, "url": format!("http://{host}/v1/view/{id}") });
    if include_session {
        answer["session"] = ledger.session(&id).unwrap_or(Value::Null);
    }
    Ok(Json(answer))
}

/// `GET /v1/sessions?search=&limit=`.
async fn search_sessions(
    _caller: Caller,
    State(shared): State<Arc<Shared>>,
    query: Params,
) -> Result<Json<Value>, ApiErr> {
    let p = params(query)?;
    let limit = limit(&p, 25)?;
    let text = p.get("search").map(String::as_str).unwrap_or("");
    Ok(Json(Value::Array(
        shared.ledger().search_sessions(text, limit),
    )))
}

/// `GET /v1/sessions/{id}`.
async fn get_session(
    _caller: Caller,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiErr> {
    shared
        .ledger()
        .session(&id)
        .map(Json)
        .ok_or_else(|| ApiErr::not_found(format!("session {id} not found")))
}

/// `POST /v1/sessions/{id}/cancel`: answers the session as it is after the cancel.
async fn cancel_session(
    caller: Caller,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiErr> {
    let mut ledger = shared.ledger();
    ledger.cancel_session(&id, &caller.client_id, Instant::now())?;
    Ok(Json(ledger.session(&id).unwrap_or(Value::Null)))
}

/// `GET /v1/view/{id}`: the page a session's `url` points to. A terminal session has nothing
/// to show in a browser, so it says where the payment happens.
async fn view(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Result<String, ApiErr> {
    let ledger = shared.ledger();
    let session = ledger
        .session(&id)
        .ok_or_else(|| ApiErr::not_found(format!("session {id} not found")))?;
    let terminal = session["order"]["store"]["terminal_id"]
        .as_str()
        .unwrap_or("?");
    Ok(format!("Session {id} is paid on terminal {terminal}.\n"))
}

/// `GET /v1/transactions`.
async fn list_transactions(
    _caller: Caller,
    State(shared): State<Arc<Shared>>,
    query: Params,
) -> Result<Json<Value>, ApiErr> {
    let p = params(query)?;
    let created_gte = match p.get("created_at.gte") {
        None => None,
        Some(v) => Some(OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
            ApiErr::bad_request(format!("created_at.gte: {v:?} is not an RFC 3339 time"))
        })?),
    };
    let filter = TxFilter {
        merchant_reference: p.get("merchant_reference").cloned(),
        terminal_id: p.get("terminal_id").cloned(),
        store_id: p.get("store_id").cloned(),
        status: p.get("status").cloned(),
        created_gte,
        starting_after: p.get("starting_after").cloned(),
        limit: limit(&p, 10)?,
    };
    Ok(Json(Value::Array(
        shared.ledger().list_transactions(&filter)?,
    )))
}

/// `GET /v1/transactions/{id}`.
async fn get_transaction(
    _caller: Caller,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiErr> {
    shared
        .ledger()
        .transaction(&id)
        .map(Json)
        .ok_or_else(|| ApiErr::not_found(format!("transaction {id} not found")))
}

/// Frees a refund's terminal if the request is dropped while the cardholder is "approving"
/// (client gone, server shutting down), so an abandoned refund never leaves a terminal busy.
struct RefundReservation {
    shared: Arc<Shared>,
    tx_id: String,
    terminal_id: String,
    armed: bool,
}

impl Drop for RefundReservation {
    fn drop(&mut self) {
        if self.armed {
            self.shared
                .ledger()
                .abandon_refund(&self.tx_id, &self.terminal_id);
        }
    }
}

/// `POST /v1/transactions/{id}/refund`: waits for the cardholder on the terminal, then answers
/// 200 with the refunded transaction.
async fn refund(
    _caller: Caller,
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiErr> {
    let body = json_body(body)?;
    if !body.is_object() {
        return Err(ApiErr::bad_request("the body must be a JSON object"));
    }
    let amount = req_amount(&body, "amount", "amount")?;
    let terminal_id = match body.get("terminal_id") {
        None => {
            return Err(ApiErr::bad_request(
                "terminal_id is required: a seitatech.in_person refund is approved by the \
                 cardholder on a terminal of the same payout destination",
            ))
        }
        Some(_) => req_str(&body, "terminal_id", "terminal_id")?.to_string(),
    };
    let refund_reference = body
        .get("refund_reference")
        .and_then(Value::as_str)
        .map(str::to_string);
    let req = RefundReq {
        amount,
        terminal_id,
        refund_reference,
    };
    shared.ledger().begin_refund(&id, &req)?;
    let mut reservation = RefundReservation {
        shared: shared.clone(),
        tx_id: id.clone(),
        terminal_id: req.terminal_id.clone(),
        armed: true,
    };
    tokio::time::sleep(scaled(REFUND_S, shared.time_scale)).await;
    reservation.armed = false;
    let tx = shared.ledger().finish_refund(&id, &req, Instant::now())?;
    Ok(Json(tx))
}

const OPERATIONS: [&str; 4] = ["end_of_day", "send_logs", "check_update", "open_menu"];

/// `POST /v1/admin/terminals/operations`.
async fn create_operation(
    _caller: Caller,
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiErr> {
    let body = json_body(body)?;
    let terminal_id = req_str(&body, "terminal_id", "terminal_id")?;
    let operation = req_str(&body, "operation", "operation")?;
    if !OPERATIONS.contains(&operation) {
        return Err(ApiErr::bad_request(format!(
            "operation: {operation:?} is not one of {}",
            OPERATIONS.join(", ")
        )));
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
    let op = shared
        .ledger()
        .create_operation(terminal_id, operation, key, Instant::now())?;
    Ok((StatusCode::OK, Json(op)).into_response())
}

/// `GET /v1/admin/terminals/operations?terminal_id=`.
async fn list_operations(
    _caller: Caller,
    State(shared): State<Arc<Shared>>,
    query: Params,
) -> Result<Json<Value>, ApiErr> {
    let p = params(query)?;
    let ops = shared
        .ledger()
        .operations(p.get("terminal_id").map(String::as_str), Instant::now());
    Ok(Json(Value::Array(ops)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Value {
        json!({
            "profile_id": PROFILE_ID,
            "url": {"return_url": "https://example.com"},
            "order": {
                "amount": 39900, "currency": "NOK", "merchant_reference": "k1-1",
                "items": [{"id":"a","line_id":"1","quantity":1,"amount":39900}],
                "store": {"id": "oslo-center", "terminal_id": "T12345678-T0001",
                          "payout_destination_id": "seller-1"}
            }
        })
    }

    fn refused(mut edit: impl FnMut(&mut Value)) -> String {
        let mut b = body();
        edit(&mut b);
        parse_new_session(&b).unwrap_err().message
    }

    #[test]
    fn validation_names_the_field() {
        assert!(parse_new_session(&body()).is_ok());
        assert!(refused(|b| b["order"]["amount"] = json!(399.5)).starts_with("order.amount"));
        assert!(refused(|b| b["order"]["amount"] = json!("39900")).starts_with("order.amount"));
        assert!(refused(|b| b["order"]["amount"] = json!(100)).contains("sum of order.items"));
        assert!(refused(|b| b["profile_id"] = json!("T12345678.web")).starts_with("profile_id"));
        assert!(refused(|b| b["url"] = json!({})).starts_with("url.return_url"));
        assert!(refused(|b| {
            b["order"].as_object_mut().unwrap().remove("currency");
        })
        .starts_with("order.currency"));
        assert!(refused(|b| {
            b["order"]
                .as_object_mut()
                .unwrap()
                .remove("merchant_reference");
        })
        .starts_with("order.merchant_reference"));
        assert!(refused(|b| {
            b["order"]["store"]
                .as_object_mut()
                .unwrap()
                .remove("terminal_id");
        })
        .starts_with("order.store.terminal_id"));
        assert!(refused(|b| {
            b["order"].as_object_mut().unwrap().remove("store");
        })
        .starts_with("order.store"));
    }
}
