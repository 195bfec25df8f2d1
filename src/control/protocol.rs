//! The control protocol: line-delimited JSON, one request and one reply per line.
//!
//! ```text
//! → {"cmd":"status"}
//! ← {"ok":true,"status":{"state":"idle","maintenance":false,"payment":null,...}}
//! → {"cmd":"maintenance","on":true}
//! ← {"ok":true,"maintenance":true}
//! → {"cmd":"events"}
//! ← {"ok":true}
//! → {"cmd":"refund","transaction_id":"T12345678.2ed…","amount":10000,"technician":"kari"}
//! ← {"ok":true,"refund":{"refund_reference":"kiosk-1-…-000042-R1","state":"refunded",...}}
//! ← {"event":"payment_started","reference":"kiosk-1-…-000042","amount":39900,"currency":"NOK"}
//! → nonsense
//! ← {"ok":false,"error":"not a request: …"}
//! ```
//!
//! A line is at most [`MAX_LINE`] bytes; a longer one is answered with an error and the
//! connection closed. Unknown fields are errors, so a typo is not silently ignored. The types
//! here are the contract: the server writes them and the client reads them, so both agree by
//! construction; `docs/control-protocol.md` describes them for scripts.

use serde::{Deserialize, Serialize};

/// The longest request or reply line, in bytes, newline excluded.
pub const MAX_LINE: usize = 4096;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The kiosk's status. (Braces: serde refuses unknown fields only on a struct variant.)
    Status {},
    /// Maintenance on or off (the flow decides when: after a payment in flight).
    Maintenance {
        /// On or off.
        on: bool,
    },
    /// From now on, also send [`Event`]s on this connection.
    Events {},
    /// The payment behind a transaction as Dintero shows it now (the daemon reads it).
    Payment {
        /// Dintero's transaction id.
        transaction_id: String,
    },
    /// Refund a captured payment on the kiosk's terminal (journaled before the call; see
    /// [`crate::refund`]). Answered when the refund has its result.
    Refund {
        /// Dintero's transaction id.
        transaction_id: String,
        /// Minor units; everything still refundable when absent.
        #[serde(default)]
        amount: Option<u64>,
        /// Who asks, for the refund journal.
        technician: String,
    },
    /// Void an authorized payment that is not captured (`POST /v1/sessions/{id}/cancel`), then
    /// read it again: the answer is what Dintero shows after the cancel.
    Void {
        /// Dintero's session id.
        session_id: String,
        /// Who asks, for the daemon's log.
        technician: String,
    },
    /// Settle what a crash or an unanswered call left open for one payment: the payment flow
    /// reads an unfinished payment from Dintero and writes its outcome (as at start-up), and the
    /// refund desk looks up its open refunds. The reply comes at once; the journals show the
    /// result.
    Resolve {
        /// Our `merchant_reference`.
        merchant_reference: String,
        /// Who asks, for the daemon's log.
        technician: String,
    },
    /// Every transaction on the kiosk's terminal since a time, as Dintero lists them (for
    /// `reconcile`, which sets them against the journal).
    Transactions {
        /// RFC 3339; all when absent.
        #[serde(default)]
        since: Option<String>,
    },
}

/// The answer to one request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Whether the request was carried out.
    pub ok: bool,
    /// Why not, in words for the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The answer to `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// The answer to `maintenance`: maintenance as now asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<bool>,
    /// The answer to `payment` and `void`: the payment as Dintero shows it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<Box<crate::refund::PaymentView>>,
    /// The answer to `refund`: the refund as journaled, with its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<Box<crate::refund::journal::Refund>>,
    /// The answer to `transactions`, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<Vec<crate::refund::PaymentView>>,
    /// With `transactions`: the list stopped at its page limit, so the oldest are missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
}

impl Reply {
    /// A plain success.
    pub fn ok() -> Reply {
        Reply {
            ok: true,
            ..Reply::default()
        }
    }

    /// A failure with what to do about it.
    pub fn error(message: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(message.into()),
            ..Reply::default()
        }
    }
}

/// The kiosk as the daemon sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The published state's name (`idle`, `waiting_for_card`, `technician`, …).
    pub state: String,
    /// Whether maintenance was asked for (the state follows once a payment in flight is over).
    pub maintenance: bool,
    /// The payment running now.
    pub payment: Option<CurrentPayment>,
    /// The newest problem seen (a health gate cause, an out-of-service code, a failed payment).
    pub last_error: Option<LastError>,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// The daemon's version.
    pub version: String,
    /// Payments since the daemon started.
    pub counters: Counters,
}

/// The payment running now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentPayment {
    /// Our `merchant_reference`.
    pub reference: String,
    /// Minor units, when the state shows it (a payment being checked after a restart does not).
    pub amount: Option<u64>,
    /// ISO 4217 code, with the amount.
    pub currency: Option<String>,
    /// The state it is in.
    pub state: String,
}

/// The newest problem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    /// When it was seen (RFC 3339, UTC).
    pub at: String,
    /// What it was.
    pub message: String,
}

/// Counts since the daemon started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Payments that reached the terminal's side (a session was being created).
    pub payments_started: u64,
    /// Payments with an outcome.
    pub payments_finished: u64,
    /// Of those, approved.
    pub approved: u64,
}

/// Something that happened, sent to connections that asked for `events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A payment started.
    PaymentStarted {
        /// Our `merchant_reference`.
        reference: String,
        /// Minor units.
        amount: u64,
        /// ISO 4217 code.
        currency: String,
    },
    /// A payment has its outcome.
    PaymentFinished {
        /// Our `merchant_reference`.
        reference: String,
        /// Minor units.
        amount: u64,
        /// ISO 4217 code.
        currency: String,
        /// The journal's word for it (`approved`, `declined`, …).
        outcome: String,
        /// The outcome in words.
        detail: String,
    },
    /// The kiosk's state changed.
    State {
        /// The new state's name.
        state: String,
    },
}

/// One line from the server: an event, or the reply to a request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServerLine {
    /// An event (has an `event` field).
    Event(Event),
    /// A reply (has an `ok` field).
    Reply(Reply),
}

/// Reads one request line; the error says what a request looks like.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not a request: the line is not UTF-8; send one JSON object per line, e.g. {\"cmd\":\"status\"}".to_string())?;
    serde_json::from_str(text.trim()).map_err(|e| {
        format!("not a request: {e}; send one JSON object per line: {{\"cmd\":\"status\"}}, {{\"cmd\":\"maintenance\",\"on\":true}} or {{\"cmd\":\"events\"}}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_and_garbage_is_an_error_that_shows_a_request() {
        assert_eq!(
            parse_request(b"{\"cmd\":\"status\"}\n"),
            Ok(Request::Status {})
        );
        assert_eq!(
            parse_request(b"{\"cmd\":\"maintenance\",\"on\":true}"),
            Ok(Request::Maintenance { on: true })
        );
        assert_eq!(
            parse_request(br#"{"cmd":"refund","transaction_id":"T1","technician":"kari"}"#),
            Ok(Request::Refund {
                transaction_id: "T1".into(),
                amount: None,
                technician: "kari".into()
            })
        );
        assert_eq!(
            parse_request(
                br#"{"cmd":"refund","transaction_id":"T1","amount":100,"technician":"kari"}"#
            ),
            Ok(Request::Refund {
                transaction_id: "T1".into(),
                amount: Some(100),
                technician: "kari".into()
            })
        );
        for garbage in [
            &b"\xff\xfe"[..],
            b"",
            b"status",
            b"{\"cmd\":\"format_disk\"}",
            b"{\"cmd\":\"maintenance\"}",
            b"{\"cmd\":\"status\",\"extra\":1}",
            br#"{"cmd":"refund","transaction_id":"T1","amount":-5,"technician":"kari"}"#,
            br#"{"cmd":"refund","transaction_id":"T1","amount":1.5,"technician":"kari"}"#,
            br#"{"cmd":"void","technician":"kari"}"#,
            b"[1,2,3]",
        ] {
            let e = parse_request(garbage).unwrap_err();
            assert!(e.contains("{\"cmd\":\"status\"}"), "{e}");
        }
    }

    #[test]
    fn replies_and_events_are_told_apart_on_the_wire() {
        let event = Event::State {
            state: "idle".into(),
        };
        let line = serde_json::to_string(&event).unwrap();
        assert_eq!(line, r#"{"event":"state","state":"idle"}"#);
        assert_eq!(
            serde_json::from_str::<ServerLine>(&line).unwrap(),
            ServerLine::Event(event)
        );
        let line = serde_json::to_string(&Reply::error("no")).unwrap();
        assert_eq!(line, r#"{"ok":false,"error":"no"}"#);
        assert_eq!(
            serde_json::from_str::<ServerLine>(&line).unwrap(),
            ServerLine::Reply(Reply::error("no"))
        );
    }
}
