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
    /// Re-read the config file and put what can change at run time in force, as SIGHUP does
    /// (between payments); the reply's `config` says what needs a restart.
    Reload {},
    /// Keep the edit applied with a confirm deadline (`config apply --confirm-within`).
    Confirm {},
    /// Ask the API for a token with the credentials the config file names now, as the daemon's
    /// user (`credentials set` after writing new ones); the running client is not changed.
    CheckCredentials {},
    /// The kiosk's terminal as Dintero sees it now, with its newest operation.
    Terminal {},
    /// Asks Dintero to retry the terminal's set-up (only a terminal in `ERROR` or `SYNC_ERROR`).
    TerminalSync {},
    /// Starts a remote operation on the terminal; refused while a payment runs.
    TerminalOperation {
        /// `end_of_day`, `send_logs`, `check_update` or `open_menu`.
        operation: String,
        /// Sent to Dintero as `Idempotency-Key`: the same key again gets the same operation.
        key: String,
    },
    /// The terminal's operations, newest first, to follow one until it is done.
    TerminalOperations {},
    /// A technician's test payment of `amount` minor units in the kiosk's currency; only while
    /// maintenance is in force and no payment runs. Follow it with `events`.
    TestPayment {
        /// Minor units.
        amount: u64,
        /// Who asks, for the log and the cart's reference.
        technician: String,
    },
    /// The next scan, decoded but not paid (needs maintenance; waits up to [`SCAN_TEST_WAIT_S`]).
    ScanTest {},
    /// The test pattern or a customer screen on the panel by its `kioskpay render` name; `null`
    /// gives the panel back to the kiosk (needs maintenance).
    DisplayTest {
        /// `test-pattern`, a name from `kioskpay render --list`, or `null`.
        screen: Option<String>,
    },
    /// The GPIO lines: at once without `seen`, else once more than `seen` edges were seen (or
    /// after [`GPIO_TEST_WAIT_S`]) (needs maintenance).
    GpioTest {
        /// The `changes` of the last answer.
        seen: Option<u64>,
    },
    /// Flips the GPIO output on `line` for a second, then the kiosk's state drives it again
    /// (needs maintenance).
    GpioToggle {
        /// The output's line.
        line: u32,
    },
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

/// How long a `gpio_test` with `seen` waits for an edge before it answers the same levels.
pub const GPIO_TEST_WAIT_S: u64 = 30;

/// How long a `scan_test` waits for a scan, in seconds.
pub const SCAN_TEST_WAIT_S: u64 = 60;

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
    /// The answer to `reload` and `confirm`: the config in force now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigState>,
    /// The answer to `check_credentials`: what the API said, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
    /// The answer to `terminal` and `terminal_sync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal: Option<Box<TerminalReport>>,
    /// The answer to `terminal_operation`: the operation as Dintero answered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Box<crate::dintero::TerminalOperation>>,
    /// The answer to `terminal_operations`, newest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<crate::dintero::TerminalOperation>>,
    /// The answer to `scan_test`: what the scan came to (boxed: most replies carry none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<Box<Scan>>,
    /// The answer to `gpio_test`: the lines and their levels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpio: Option<Box<Gpio>>,
    /// The answer to `gpio_toggle`: whether the output was asserted during the toggle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toggled: Option<bool>,
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

/// The kiosk's terminal as Dintero sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TerminalReport {
    /// The terminal, with why it is in its status when the list says.
    pub terminal: crate::dintero::ListedTerminal,
    /// Its newest remote operation, if any.
    pub last_operation: Option<crate::dintero::TerminalOperation>,
}

/// The GPIO lines as `gpio_test` answers them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpio {
    /// Edges seen since the daemon started: pass it as `seen` to wait for the next.
    pub changes: u64,
    /// The watched inputs.
    pub inputs: Vec<GpioInput>,
    /// The handshake outputs.
    pub outputs: Vec<GpioOutput>,
}

/// One input line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpioInput {
    /// BCM number or line offset.
    pub line: u32,
    /// What it is for (`preset button NOK 20.00`, `cancel button`, `pulse input, …`).
    pub role: String,
    /// Active (pressed, pulse on); `null` until its first edge.
    pub active: Option<bool>,
}

/// One output line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpioOutput {
    /// BCM number or line offset.
    pub line: u32,
    /// `busy output` or `vend output`.
    pub role: String,
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
    /// The parts around the payment flow and the problems seen in them; `None` from a daemon
    /// that does not watch them (an older version, or a test without an API client).
    #[serde(default)]
    pub health: Option<Box<Health>>,
    /// The config in force, and an applied edit's confirm deadline.
    #[serde(default)]
    pub config: ConfigState,
}

/// The config file in force, as `status`, `reload` and `confirm` tell it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigState {
    /// The file loaded last: the config file, or the state directory's
    /// `config.previous.toml` after an unconfirmed edit was rolled back.
    pub file: String,
    /// Keys whose new values in that file wait for a restart (the running ones stay).
    pub needs_restart: Vec<String>,
    /// When an applied edit is rolled back unless confirmed (milliseconds since the Unix
    /// epoch); `None`: no edit awaits a confirm.
    pub confirm_deadline_unix_ms: Option<i64>,
    /// When an unconfirmed edit was rolled back (RFC 3339), if one was since the daemon started.
    pub rolled_back_at: Option<String>,
}

/// The kiosk's parts, as the daemon sees them now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The terminal's status at the health gate's newest reading.
    pub terminal: Option<String>,
    /// Seconds since that reading.
    pub terminal_seen_s: Option<u64>,
    /// Whether Dintero answered the newest call (any HTTP status counts as reachable).
    pub api_reachable: Option<bool>,
    /// That call's round-trip time.
    pub api_rtt_ms: Option<u64>,
    /// Seconds since that call.
    pub api_seen_s: Option<u64>,
    /// Seconds since the access token in use was fetched.
    pub token_age_s: Option<u64>,
    /// `present`, `absent`, or `not used (input.kind = …)`.
    pub scanner: String,
    /// `working`, `no frame yet`, `broken (E-PANEL-…)` or `none`.
    pub display: String,
    /// `in use` or `not configured`.
    pub gpio: String,
    /// Free bytes for the daemon in the state directory's file system.
    pub disk_free_bytes: Option<u64>,
    /// What is wrong now, each with its short code (`E-NET`, `E-TERM`, …; see README,
    /// "Troubleshooting"); empty when nothing is.
    pub problems: Vec<Problem>,
}

/// One thing wrong now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The short code a kiosk reader shows (`E-NET`).
    pub code: String,
    /// What it is, in words.
    pub message: String,
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

/// What a scan came to, as `kioskpay decode` says it: the charge, or why the code is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Scan {
    /// A code the kiosk would charge.
    Decoded {
        /// The decoder's name for the format (`gs1`, `digital_link`, `ean13`, `signed`, `plain`).
        format: String,
        /// Minor units.
        amount: u64,
        /// ISO 4217 code.
        currency: String,
        /// The cart's own reference, if the code carried one.
        reference: Option<String>,
    },
    /// A code the kiosk refuses.
    Refused {
        /// The decoder's reason.
        error: String,
        /// What the customer would be told (`unreadable`, `not_a_payment_code`, …).
        customer: String,
    },
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
    /// A reply (has an `ok` field). Boxed: a reply with a status is many times an event's size.
    Reply(Box<Reply>),
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
            parse_request(br#"{"cmd":"terminal_operation","operation":"end_of_day","key":"k1"}"#),
            Ok(Request::TerminalOperation {
                operation: "end_of_day".into(),
                key: "k1".into()
            })
        );
        assert_eq!(
            parse_request(br#"{"cmd":"test_payment","amount":100,"technician":"kari"}"#),
            Ok(Request::TestPayment {
                amount: 100,
                technician: "kari".into()
            })
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
            parse_request(b"{\"cmd\":\"scan_test\"}"),
            Ok(Request::ScanTest {})
        );
        assert_eq!(
            parse_request(b"{\"cmd\":\"display_test\",\"screen\":\"idle\"}"),
            Ok(Request::DisplayTest {
                screen: Some("idle".into())
            })
        );
        assert_eq!(
            parse_request(b"{\"cmd\":\"display_test\",\"screen\":null}"),
            Ok(Request::DisplayTest { screen: None })
        );
        assert_eq!(
            parse_request(b"{\"cmd\":\"gpio_test\",\"seen\":3}"),
            Ok(Request::GpioTest { seen: Some(3) })
        );
        assert_eq!(
            parse_request(b"{\"cmd\":\"gpio_toggle\",\"line\":23}"),
            Ok(Request::GpioToggle { line: 23 })
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
            b"{\"cmd\":\"terminal_operation\",\"operation\":\"end_of_day\"}",
            b"{\"cmd\":\"test_payment\",\"amount\":-1,\"technician\":\"kari\"}",
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
    fn a_scan_is_a_charge_or_a_refusal_on_the_wire() {
        for scan in [
            Scan::Decoded {
                format: "plain".into(),
                amount: 2500,
                currency: "NOK".into(),
                reference: None,
            },
            Scan::Refused {
                error: "not a code".into(),
                customer: "unreadable".into(),
            },
        ] {
            let line = serde_json::to_string(&scan).unwrap();
            assert_eq!(serde_json::from_str::<Scan>(&line).unwrap(), scan, "{line}");
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
            ServerLine::Reply(Box::new(Reply::error("no")))
        );
    }
}
