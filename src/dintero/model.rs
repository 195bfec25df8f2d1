//! Dintero's request and response bodies, as typed serde structs.
//!
//! Responses are read tolerantly, as the contract asks: unknown fields are ignored (serde's
//! default), optional fields default, and statuses Dintero may add later deserialize into an
//! `Other` variant instead of failing. Requests are written strictly: the field names here are the
//! wire names.

use serde::{Deserialize, Deserializer, Serialize};

/// Body of `POST /v1/sessions-profile`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionProfileRequest {
    /// A payment profile whose only method is Seitatech in-person, so that the terminal starts
    /// prompting as soon as the session exists.
    pub profile_id: String,
    /// Required by the schema although a terminal session has no web page.
    pub url: SessionUrl,
    /// What is charged and where.
    pub order: Order,
}

/// `url` of a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionUrl {
    /// Where a web checkout would return; unused by the terminal.
    pub return_url: String,
    /// Optional callback; a kiosk behind NAT polls instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// `order` of a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Total in minor units; equals the sum of `items[].amount`.
    pub amount: u64,
    /// ISO 4217 code.
    pub currency: String,
    /// Ours: `<kiosk id>-<date>-<sequence>`, unique forever on a kiosk; how a restarted kiosk
    /// finds a payment whose create response it never saw.
    pub merchant_reference: String,
    /// The cart's own reference (a KID, an order number), when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_reference_2: Option<String>,
    /// VAT included in `amount`, minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_amount: Option<u64>,
    /// Order lines; their amounts sum to `amount`.
    #[serde(default)]
    pub items: Vec<OrderItem>,
    /// The store and terminal that take the payment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<Store>,
}

/// One order line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    /// Our item id.
    pub id: String,
    /// Line number, unique in the order.
    pub line_id: String,
    /// What the customer bought.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Number of units.
    pub quantity: u64,
    /// Line total in minor units.
    pub amount: u64,
    /// VAT included in the line, minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat_amount: Option<u64>,
    /// VAT rate in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vat: Option<u32>,
}

/// `order.store`: all three fields are required for in-person payments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Store {
    /// The merchant's own store id.
    pub id: String,
    /// The terminal's id from registration (`<aid>-T<4 digits>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_id: Option<String>,
    /// The payout destination linked to the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_destination_id: Option<String>,
}

/// Answer to `POST /v1/sessions-profile`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreatedSession {
    /// `<aid>.<base58>`.
    pub id: String,
    /// The session's web URL (unused by a terminal payment).
    #[serde(default)]
    pub url: Option<String>,
}

/// A checkout session, from `GET /v1/sessions/{id}` or the search list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Session id.
    pub id: String,
    /// The order as created.
    #[serde(default)]
    pub order: Option<Order>,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Absent until the terminal has picked the session up; at most one per session.
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// What happened, in order.
    #[serde(default)]
    pub events: Vec<SessionEvent>,
    /// Set when the session was cancelled.
    #[serde(default)]
    pub cancelled_at: Option<String>,
    /// Who cancelled (`terminal`, or the API client).
    #[serde(default)]
    pub cancelled_by: Option<String>,
}

/// One entry of `session.events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// `INITIATED`, `AUTHORIZED`, `COMPLETED`, `DECLINED`, `PAY_FAILED`, `FAILED`, `CANCELLED`, …
    pub name: String,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
    /// `details.error` says why a payment ended without success.
    #[serde(default)]
    pub details: Option<SessionEventDetails>,
}

/// `details` of a session event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionEventDetails {
    /// `authorization`, `cancelled`, `timeout`, `failed`, …
    #[serde(default)]
    pub error: Option<String>,
}

/// A transaction's status. Unknown values land in [`TransactionStatus::Other`], which the flow
/// treats as "not final yet": a status Dintero adds tomorrow must not crash a kiosk.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TransactionStatus {
    /// Created, waiting for the card.
    Initiated,
    /// Authorized; capture pending (terminal payments are auto-captured).
    Authorized,
    /// Held for review.
    OnHold,
    /// Captured: paid.
    Captured,
    /// Part of the amount captured.
    PartiallyCaptured,
    /// Fully refunded.
    Refunded,
    /// Part refunded.
    PartiallyRefunded,
    /// Part captured and that part refunded.
    PartiallyCapturedRefunded,
    /// The authorization was voided (cancelled after authorization).
    AuthorizationVoided,
    /// Declined.
    Declined,
    /// Failed (declined on the terminal, cancelled, timed out, technical error).
    Failed,
    /// Dintero's own `UNKNOWN`.
    Unknown,
    /// A status this version does not know.
    Other(String),
}

impl TransactionStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            TransactionStatus::Initiated => "INITIATED",
            TransactionStatus::Authorized => "AUTHORIZED",
            TransactionStatus::OnHold => "ON_HOLD",
            TransactionStatus::Captured => "CAPTURED",
            TransactionStatus::PartiallyCaptured => "PARTIALLY_CAPTURED",
            TransactionStatus::Refunded => "REFUNDED",
            TransactionStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
            TransactionStatus::PartiallyCapturedRefunded => "PARTIALLY_CAPTURED_REFUNDED",
            TransactionStatus::AuthorizationVoided => "AUTHORIZATION_VOIDED",
            TransactionStatus::Declined => "DECLINED",
            TransactionStatus::Failed => "FAILED",
            TransactionStatus::Unknown => "UNKNOWN",
            TransactionStatus::Other(s) => s,
        }
    }

    /// Parses the wire spelling; never fails.
    pub fn parse(s: &str) -> TransactionStatus {
        match s {
            "INITIATED" => TransactionStatus::Initiated,
            "AUTHORIZED" => TransactionStatus::Authorized,
            "ON_HOLD" => TransactionStatus::OnHold,
            "CAPTURED" => TransactionStatus::Captured,
            "PARTIALLY_CAPTURED" => TransactionStatus::PartiallyCaptured,
            "REFUNDED" => TransactionStatus::Refunded,
            "PARTIALLY_REFUNDED" => TransactionStatus::PartiallyRefunded,
            "PARTIALLY_CAPTURED_REFUNDED" => TransactionStatus::PartiallyCapturedRefunded,
            "AUTHORIZATION_VOIDED" => TransactionStatus::AuthorizationVoided,
            "DECLINED" => TransactionStatus::Declined,
            "FAILED" => TransactionStatus::Failed,
            "UNKNOWN" => TransactionStatus::Unknown,
            other => TransactionStatus::Other(other.to_string()),
        }
    }

    /// Money was taken: captured, or captured and since refunded in whole or part.
    pub fn is_paid(&self) -> bool {
        matches!(
            self,
            TransactionStatus::Captured
                | TransactionStatus::PartiallyCaptured
                | TransactionStatus::Refunded
                | TransactionStatus::PartiallyRefunded
                | TransactionStatus::PartiallyCapturedRefunded
        )
    }

    /// The payment will not change any more by itself (paid, or ended without money).
    /// `AUTHORIZED` is not final: Dintero retries the capture.
    pub fn is_final(&self) -> bool {
        self.is_paid()
            || matches!(
                self,
                TransactionStatus::AuthorizationVoided
                    | TransactionStatus::Declined
                    | TransactionStatus::Failed
            )
    }
}

impl Serialize for TransactionStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TransactionStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(TransactionStatus::parse(&String::deserialize(d)?))
    }
}

/// A transaction, from `GET /v1/transactions/{id}` or the list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// Transaction id.
    pub id: String,
    /// Where the payment stands.
    pub status: TransactionStatus,
    /// Authorized amount, minor units.
    #[serde(default)]
    pub amount: u64,
    /// ISO 4217 code.
    #[serde(default)]
    pub currency: String,
    /// Ours, copied from the order.
    #[serde(default)]
    pub merchant_reference: Option<String>,
    /// The cart's reference, when sent.
    #[serde(default)]
    pub merchant_reference_2: Option<String>,
    /// The session that started it.
    #[serde(default)]
    pub session_id: Option<String>,
    /// `seitatech`.
    #[serde(default)]
    pub payment_product: Option<String>,
    /// `seitatech.in_person`.
    #[serde(default)]
    pub payment_product_type: Option<String>,
    /// Store and terminal.
    #[serde(default)]
    pub store: Option<Store>,
    /// The card, once presented.
    #[serde(default)]
    pub card: Option<Card>,
    /// What happened, in order.
    #[serde(default)]
    pub events: Vec<TransactionEvent>,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Transaction {
    /// The error types of the last failed event (`DECLINED`, `INSUFFICIENT_FUNDS`, `ERROR`, …).
    pub fn failure_types(&self) -> Vec<String> {
        self.events
            .iter()
            .rev()
            .find(|e| e.success == Some(false))
            .and_then(|e| e.error.as_ref())
            .map(|e| e.types.clone())
            .unwrap_or_default()
    }

    /// Card brand and masked number for the receipt line, e.g. `VISA **** 0004`.
    pub fn card_summary(&self) -> Option<String> {
        let card = self.card.as_ref()?;
        let pan = card.masked_pan.as_deref().unwrap_or("");
        let last4: String = pan
            .chars()
            .rev()
            .take(4)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        match (&card.brand, last4.is_empty()) {
            (Some(b), false) => Some(format!("{b} **** {last4}")),
            (Some(b), true) => Some(b.clone()),
            (None, false) => Some(format!("**** {last4}")),
            (None, true) => None,
        }
    }
}

/// `transaction.card`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Card {
    /// `VISA`, `MASTERCARD`, …
    #[serde(default)]
    pub brand: Option<String>,
    /// e.g. `************0004`.
    #[serde(default)]
    pub masked_pan: Option<String>,
    /// `chip`, `contactless` or `magstripe`.
    #[serde(default)]
    pub entry_method: Option<String>,
}

/// One entry of `transaction.events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransactionEvent {
    /// `INITIALIZE`, `AUTHORIZE`, `CAPTURE`, `REFUND`, `VOID`, …
    pub event: String,
    /// Whether the step succeeded.
    #[serde(default)]
    pub success: Option<bool>,
    /// Amount of the step, minor units.
    #[serde(default)]
    pub amount: Option<u64>,
    /// Why the step failed.
    #[serde(default)]
    pub error: Option<TransactionError>,
    /// `seitatech:*` strings such as `seitatech:receiptNumber`.
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// `error` of a transaction event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransactionError {
    /// Machine code.
    #[serde(default)]
    pub code: Option<String>,
    /// Human message.
    #[serde(default)]
    pub message: Option<String>,
    /// Error types; the spec has an array, some answers a single string: both are read.
    #[serde(default, rename = "type", deserialize_with = "one_or_many")]
    pub types: Vec<String>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
        Nothing(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
        OneOrMany::Nothing(()) => Vec::new(),
    })
}

/// Filters of `GET /v1/transactions`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransactionQuery {
    /// Exact match on `merchant_reference`.
    pub merchant_reference: Option<String>,
    /// The terminal.
    pub terminal_id: Option<String>,
    /// Page size.
    pub limit: Option<u32>,
    /// The next page: transactions after this id, in the list's newest-first order.
    pub starting_after: Option<String>,
    /// Only transactions created at or after this time (RFC 3339), `created_at.gte`.
    pub created_at_gte: Option<String>,
}

/// Body of `POST /v1/transactions/{id}/refund`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefundRequest {
    /// Minor units to refund.
    pub amount: u64,
    /// Why, for the merchant's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The merchant's reference for this refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_reference: Option<String>,
    /// In-person refunds are approved by the cardholder on a terminal of the same payout
    /// destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_id: Option<String>,
}

/// What a refund call answered.
#[derive(Clone, Debug, PartialEq)]
pub enum RefundOutcome {
    /// `200`: done, with the updated transaction.
    Done(Box<Transaction>),
    /// `202`: accepted; poll the transaction until the refund shows.
    Pending {
        /// The `event-request-id` header.
        event_request_id: Option<String>,
    },
}

/// A terminal's status in the management API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TerminalStatus {
    /// Registered, not yet usable.
    Pending,
    /// Takes payments.
    Active,
    /// Needs attention in the terminal's own menu.
    ActionRequired,
    /// Switched off by the merchant.
    Inactive,
    /// Removed.
    Deleted,
    /// Failed to set up or to sync; `POST …/terminals/{id}/sync` retries it.
    Error,
    /// Its last sync failed; `POST …/terminals/{id}/sync` retries it.
    SyncError,
    /// A status this version does not know: treated as not active.
    Other(String),
}

impl TerminalStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            TerminalStatus::Pending => "PENDING",
            TerminalStatus::Active => "ACTIVE",
            TerminalStatus::ActionRequired => "ACTION_REQUIRED",
            TerminalStatus::Inactive => "INACTIVE",
            TerminalStatus::Deleted => "DELETED",
            TerminalStatus::Error => "ERROR",
            TerminalStatus::SyncError => "SYNC_ERROR",
            TerminalStatus::Other(s) => s,
        }
    }
}

impl Serialize for TerminalStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TerminalStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "PENDING" => TerminalStatus::Pending,
            "ACTIVE" => TerminalStatus::Active,
            "ACTION_REQUIRED" => TerminalStatus::ActionRequired,
            "INACTIVE" => TerminalStatus::Inactive,
            "DELETED" => TerminalStatus::Deleted,
            "ERROR" => TerminalStatus::Error,
            "SYNC_ERROR" => TerminalStatus::SyncError,
            _ => TerminalStatus::Other(s),
        })
    }
}

/// `GET {api}/v1/accounts/{aid}/terminals/{terminal_id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Terminal {
    /// `<aid>-T<4 digits>`.
    pub terminal_id: String,
    /// e.g. `SIMULATED-T12345678-001`.
    #[serde(default)]
    pub device_serial_number: Option<String>,
    /// The hardware model.
    #[serde(default)]
    pub device_model: Option<String>,
    /// The store it belongs to.
    #[serde(default)]
    pub store_id: Option<String>,
    /// Whether it takes payments.
    pub status: TerminalStatus,
}

/// One terminal of `GET {api}/v1/accounts/{aid}/terminals`: the terminal and why it is in its
/// status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListedTerminal {
    /// The terminal.
    #[serde(flatten)]
    pub terminal: Terminal,
    /// Why it is in that status, when the list says (e.g. `CHECK_UPDATE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
}

/// Filters of `GET {api}/v1/accounts/{aid}/terminals` (all exact; none lists every terminal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TerminalFilter {
    /// Only terminals in this status.
    pub status: Option<TerminalStatus>,
    /// Only this hardware model.
    pub device_model: Option<String>,
    /// Only this serial number.
    pub device_serial_number: Option<String>,
}

/// A remote operation on a terminal (`POST {checkout}/v1/admin/terminals/operations`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// Close the day's batch and print its report.
    EndOfDay,
    /// Upload the terminal's logs to its vendor.
    SendLogs,
    /// Look for a software update and install it.
    CheckUpdate,
    /// Open the terminal's own menu on its screen.
    OpenMenu,
}

impl OperationKind {
    /// Every operation, in the order the console lists them.
    pub const ALL: [OperationKind; 4] = [
        OperationKind::EndOfDay,
        OperationKind::SendLogs,
        OperationKind::CheckUpdate,
        OperationKind::OpenMenu,
    ];

    /// The wire spelling (`end_of_day`).
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::EndOfDay => "end_of_day",
            OperationKind::SendLogs => "send_logs",
            OperationKind::CheckUpdate => "check_update",
            OperationKind::OpenMenu => "open_menu",
        }
    }

    /// Reads the wire spelling.
    pub fn parse(text: &str) -> Option<OperationKind> {
        OperationKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl Serialize for OperationKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Where a terminal operation is. Dintero documents only `PENDING`; the rest is what the
/// emulator answers, and anything else is read as "not done yet".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationStatus {
    /// Sent to the terminal, not done.
    Pending,
    /// The terminal is working on it.
    InProgress,
    /// Done.
    Completed,
    /// The terminal could not do it.
    Failed,
    /// A status this version does not know: waited on like `PENDING`.
    Other(String),
}

impl OperationStatus {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            OperationStatus::Pending => "PENDING",
            OperationStatus::InProgress => "IN_PROGRESS",
            OperationStatus::Completed => "COMPLETED",
            OperationStatus::Failed => "FAILED",
            OperationStatus::Other(s) => s,
        }
    }

    /// Whether waiting longer can change it.
    pub fn is_final(&self) -> bool {
        matches!(self, OperationStatus::Completed | OperationStatus::Failed)
    }
}

impl Serialize for OperationStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OperationStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "PENDING" => OperationStatus::Pending,
            "IN_PROGRESS" => OperationStatus::InProgress,
            "COMPLETED" => OperationStatus::Completed,
            "FAILED" => OperationStatus::Failed,
            _ => OperationStatus::Other(s),
        })
    }
}

/// One terminal operation, as created or listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TerminalOperation {
    /// Dintero's id for it.
    pub id: String,
    /// The terminal it runs on.
    pub terminal_id: String,
    /// What it does, in the wire spelling (an operation this version does not know is shown
    /// as Dintero names it).
    pub operation: String,
    /// Where it is.
    pub status: OperationStatus,
    /// When it was asked for (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// Answer of the token endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// `Bearer`.
    #[serde(default)]
    pub token_type: Option<String>,
    /// Lifetime in seconds.
    pub expires_in: u64,
}

/// Dintero's error body: `{"error": {"code"?, "message", "errors"?}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Machine code, e.g. `TERMINAL_BUSY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Human message; names the field on validation errors.
    #[serde(default)]
    pub message: String,
    /// Further detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_statuses_and_fields_are_tolerated() {
        let tx: Transaction = serde_json::from_str(
            r#"{"id":"t1","status":"SOMETHING_NEW","amount":100,"brand_new_field":{"x":1},
                "events":[{"event":"AUTHORIZE","success":false,"error":{"type":"DECLINED"}},
                          {"event":"X","error":{"type":null}}]}"#,
        )
        .unwrap();
        assert_eq!(tx.status, TransactionStatus::Other("SOMETHING_NEW".into()));
        assert!(!tx.status.is_final());
        assert_eq!(tx.failure_types(), vec!["DECLINED".to_string()]);
        let t: Terminal = serde_json::from_str(r#"{"terminal_id":"a","status":"BROKEN"}"#).unwrap();
        assert_eq!(t.status, TerminalStatus::Other("BROKEN".into()));
        let t: ListedTerminal = serde_json::from_str(
            r#"{"terminal_id":"a","status":"SYNC_ERROR","status_reason":"CHECK_UPDATE"}"#,
        )
        .unwrap();
        assert_eq!(t.terminal.status, TerminalStatus::SyncError);
        assert_eq!(t.status_reason.as_deref(), Some("CHECK_UPDATE"));
        let op: TerminalOperation = serde_json::from_str(
            r#"{"id":"o1","terminal_id":"a","operation":"reboot","status":"QUEUED","x":1}"#,
        )
        .unwrap();
        assert_eq!(op.status, OperationStatus::Other("QUEUED".into()));
        assert!(!op.status.is_final());
        for kind in OperationKind::ALL {
            assert_eq!(OperationKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn status_finality() {
        assert!(!TransactionStatus::Authorized.is_final());
        assert!(!TransactionStatus::Initiated.is_final());
        assert!(TransactionStatus::Captured.is_paid());
        assert!(TransactionStatus::Failed.is_final() && !TransactionStatus::Failed.is_paid());
        for s in [
            "CAPTURED",
            "AUTHORIZED",
            "PARTIALLY_CAPTURED_REFUNDED",
            "UNKNOWN",
        ] {
            assert_eq!(TransactionStatus::parse(s).as_str(), s);
        }
    }

    #[test]
    fn card_summary_keeps_only_the_last_four_digits() {
        let mut tx: Transaction =
            serde_json::from_str(r#"{"id":"t","status":"CAPTURED"}"#).unwrap();
        assert_eq!(tx.card_summary(), None);
        tx.card = Some(Card {
            brand: Some("VISA".into()),
            masked_pan: Some("************0004".into()),
            entry_method: None,
        });
        assert_eq!(tx.card_summary().as_deref(), Some("VISA **** 0004"));
    }
}
