//! What one journal line says, and how it is framed on disk.
//!
//! A line is `<crc32 of the JSON as 8 lowercase hex digits> <compact JSON>\n`. The checksum is
//! CRC-32 (IEEE, as computed by `crc32fast`) over the JSON bytes only. serde_json never writes a
//! raw newline inside compact JSON (newlines in strings are escaped), so `\n` is an unambiguous
//! record separator and a line can be checked without knowing anything about its neighbours.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// How a payment ended, as far as the kiosk is concerned.
///
/// The names are the ones `kioskpay journal` prints and scripts match on; they are fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The transaction is captured: the customer paid.
    Approved,
    /// The issuer declined the card; nothing was charged.
    Declined,
    /// The customer or the kiosk cancelled; nothing was charged.
    Cancelled,
    /// Nobody presented a card in time; nothing was charged.
    TimedOut,
    /// A technical failure; nothing was charged.
    Failed,
    /// Dintero never created the session (refused, or recovery found no trace of it), so no
    /// payment ever reached the terminal.
    NotCreated,
    /// Dintero holds a payment under this reference that is not this one (another amount,
    /// terminal, cart or an older creation time): not approved, nothing more charged, and a
    /// technician must look (see [`crate::payment::identity`]).
    Conflict,
}

impl Outcome {
    /// The snake_case name, the same as the JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Declined => "declined",
            Outcome::Cancelled => "cancelled",
            Outcome::TimedOut => "timed_out",
            Outcome::Failed => "failed",
            Outcome::NotCreated => "not_created",
            Outcome::Conflict => "conflict",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One fact the payment flow wrote down before acting on it.
///
/// Serialised with an internal `type` tag (`{"type":"intent",...}`) so that a technician can read
/// the file with `cut -d' ' -f2- | jq` and so that a record type added by a newer kioskpay is
/// recognisable (and reported, not fatal) here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// Written and synced *before* the session is created: from here on the kiosk must assume a
    /// payment may exist at Dintero under this reference, because session creation has no
    /// idempotency key and starts the terminal.
    Intent {
        /// Our unique reference, from [`super::format_merchant_reference`].
        merchant_reference: String,
        /// The total in minor units.
        amount: u64,
        /// ISO 4217 code.
        currency: String,
        /// The cart's own reference (`merchant_reference_2`), if the code carried one.
        cart_reference: Option<String>,
        /// The terminal the payment goes to; recovery searches transactions by it.
        terminal_id: String,
        /// The number inside `merchant_reference`; the journal keeps it increasing forever.
        sequence: u64,
        /// When the intent was written, RFC 3339.
        at: String,
    },
    /// Dintero answered the create call with this session id.
    Session {
        /// Whose session.
        merchant_reference: String,
        /// Dintero's session id.
        session_id: String,
    },
    /// The terminal picked the payment up: the session has this transaction.
    Transaction {
        /// Whose transaction.
        merchant_reference: String,
        /// Dintero's transaction id.
        transaction_id: String,
    },
    /// The payment moved to another intermediate state (e.g. `waiting_for_card`), so a
    /// technician reading the journal after a power cut sees how far it got.
    State {
        /// Whose state.
        merchant_reference: String,
        /// The state's machine name.
        state: String,
    },
    /// The payment is over; nothing more will be done for it.
    Final {
        /// Whose outcome.
        merchant_reference: String,
        /// How it ended.
        outcome: Outcome,
        /// The transaction, when one existed.
        transaction_id: Option<String>,
        /// Dintero's transaction status as last read (e.g. `CAPTURED`), for the record.
        status: Option<String>,
        /// When the outcome was known, RFC 3339.
        at: String,
    },
    /// A payment that ended `not_created` turned up at Dintero after all (a create call that
    /// landed after the kiosk had looked for it in vain): it is open again, with this session,
    /// until a later [`Record::Final`] settles it. Written before anything is done about it.
    Reopened {
        /// The payment.
        merchant_reference: String,
        /// The session found under its reference.
        session_id: String,
        /// When it was found, RFC 3339.
        at: String,
    },
    /// Written first by compaction: the intents that carried the highest sequence number may be
    /// compacted away, and the sequence must never go back.
    Sequence {
        /// The highest sequence number ever handed out.
        last: u64,
    },
}

/// The `type` tags this version understands; any other is a record from a newer kioskpay.
pub(crate) const KNOWN_TYPES: &[&str] = &[
    "intent",
    "session",
    "transaction",
    "state",
    "final",
    "reopened",
    "sequence",
];

impl Record {
    /// The payment the record belongs to; `None` for bookkeeping records.
    pub fn merchant_reference(&self) -> Option<&str> {
        match self {
            Record::Intent {
                merchant_reference, ..
            }
            | Record::Session {
                merchant_reference, ..
            }
            | Record::Transaction {
                merchant_reference, ..
            }
            | Record::State {
                merchant_reference, ..
            }
            | Record::Final {
                merchant_reference, ..
            }
            | Record::Reopened {
                merchant_reference, ..
            } => Some(merchant_reference),
            Record::Sequence { .. } => None,
        }
    }

    /// The sequence number the record vouches for having been handed out, if any.
    pub(crate) fn sequence(&self) -> Option<u64> {
        match self {
            Record::Intent { sequence, .. } => Some(*sequence),
            Record::Sequence { last } => Some(*last),
            _ => None,
        }
    }
}

/// Frames a record as one journal line, newline included.
pub(crate) fn encode_line(record: &Record) -> Result<Vec<u8>, serde_json::Error> {
    Ok(frame_line(&serde_json::to_vec(record)?))
}

/// Frames compact JSON as one checked line, newline included: the payment journal's framing,
/// shared with the other append-only logs in the state directory (the refund journal), so one
/// reader's checks hold for all of them.
pub fn frame_line(json: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(json.len() + 10);
    line.extend_from_slice(format!("{:08x} ", crc32fast::hash(json)).as_bytes());
    line.extend_from_slice(json);
    line.push(b'\n');
    line
}

/// Checks the frame and checksum of one line (without its newline) and returns its JSON bytes,
/// or why the line is not a whole record.
pub fn unframe_line(line: &[u8]) -> Result<&[u8], String> {
    let Some((sum, json)) = line.split_at_checked(9) else {
        return Err(format!("line too short ({} bytes)", line.len()));
    };
    if sum[8] != b' ' {
        return Err("no space after the checksum".into());
    }
    let Some(expected) = std::str::from_utf8(&sum[..8])
        .ok()
        .filter(|s| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .and_then(|s| u32::from_str_radix(s, 16).ok())
    else {
        return Err("checksum is not 8 lowercase hex digits".into());
    };
    let actual = crc32fast::hash(json);
    if actual != expected {
        return Err(format!(
            "checksum mismatch (line says {expected:08x}, content has {actual:08x})"
        ));
    }
    Ok(json)
}

/// What one line (without its newline) turned out to be.
#[derive(Debug)]
pub(crate) enum Decoded {
    /// A record this version understands.
    Record(Record),
    /// A well-formed, checksummed record of a type this version does not know.
    Unknown {
        /// Its `type` tag.
        kind: String,
    },
    /// Not a valid line: why.
    Bad(String),
}

/// Just the `type` of a record, read before the record itself: a line of a type a newer
/// kioskpay wrote is recognised without being parsed as one of ours, and a line of ours is
/// parsed once, straight into its [`Record`], not into a generic JSON value first (open +
/// replay 16.3-17.4 -> 15.1-16.6 µs per payment in `cargo bench --bench journal`). Lines as
/// kioskpay writes them skip even this read (see [`leading_tag`]: 15.2-16.4 -> 12.2-13.6 µs).
#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

/// The `type` of a line as kioskpay writes it: serde puts an internally tagged record's tag
/// first, so `{"type":"intent",...` names its type in its first bytes and the line need not be
/// read twice. `None` for any other spelling (the tag elsewhere, an escape in it), which the
/// full read of [`Tag`] handles; the record's own parse checks the rest of the line either way.
fn leading_tag(json: &[u8]) -> Option<&str> {
    let rest = json.strip_prefix(br#"{"type":""#)?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

/// Checks the frame and checksum of one line and parses its JSON.
pub(crate) fn decode_line(line: &[u8]) -> Decoded {
    let json = match unframe_line(line) {
        Ok(json) => json,
        Err(why) => return Decoded::Bad(why),
    };
    let kind = match leading_tag(json) {
        Some(kind) => Cow::Borrowed(kind),
        None => match serde_json::from_slice::<Tag>(json) {
            Ok(Tag { kind: Some(kind) }) => kind,
            Ok(Tag { kind: None }) => return Decoded::Bad("record has no \"type\"".into()),
            Err(e) => {
                return Decoded::Bad(format!(
                    "checksum matches but the JSON is not a record: {e}"
                ))
            }
        },
    };
    if !KNOWN_TYPES.contains(&kind.as_ref()) {
        return Decoded::Unknown {
            kind: kind.into_owned(),
        };
    }
    match serde_json::from_slice(json) {
        Ok(record) => Decoded::Record(record),
        Err(e) => Decoded::Bad(format!("not a valid \"{kind}\" record: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent() -> Record {
        Record::Intent {
            merchant_reference: "kiosk-1-20261124-000001".into(),
            amount: 39900,
            currency: "NOK".into(),
            cart_reference: Some("KID 123\nwith newline".into()),
            terminal_id: "T12345678-T0001".into(),
            sequence: 1,
            at: "2026-11-24T07:00:00Z".into(),
        }
    }

    #[test]
    fn line_is_checksum_space_json_newline() {
        let line = encode_line(&intent()).unwrap();
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(
            text.matches('\n').count(),
            1,
            "newline in a string must be escaped"
        );
        let (sum, json) = text.trim_end().split_once(' ').unwrap();
        assert_eq!(sum.len(), 8);
        assert_eq!(sum, format!("{:08x}", crc32fast::hash(json.as_bytes())));
        assert!(json.starts_with(r#"{"type":"intent","#), "{json}");
    }

    #[test]
    fn decodes_what_it_encodes() {
        let line = encode_line(&intent()).unwrap();
        match decode_line(&line[..line.len() - 1]) {
            Decoded::Record(r) => assert_eq!(r, intent()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn outcome_spellings() {
        for (o, s) in [
            (Outcome::Approved, "approved"),
            (Outcome::Declined, "declined"),
            (Outcome::Cancelled, "cancelled"),
            (Outcome::TimedOut, "timed_out"),
            (Outcome::Failed, "failed"),
            (Outcome::NotCreated, "not_created"),
            (Outcome::Conflict, "conflict"),
        ] {
            assert_eq!(o.as_str(), s);
            assert_eq!(serde_json::to_value(o).unwrap(), s);
        }
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let line = encode_line(&intent()).unwrap();
        let body = &line[..line.len() - 1];
        for i in 0..body.len() {
            for bit in 0..8 {
                let mut bad = body.to_vec();
                bad[i] ^= 1 << bit;
                assert!(
                    matches!(decode_line(&bad), Decoded::Bad(_)),
                    "flip of bit {bit} in byte {i} not caught"
                );
            }
        }
    }

    /// `json` as a journal line with a valid checksum (no newline).
    fn framed(json: &[u8]) -> Vec<u8> {
        let mut line = format!("{:08x} ", crc32fast::hash(json)).into_bytes();
        line.extend_from_slice(json);
        line
    }

    #[test]
    fn unknown_type_is_recognised_not_bad() {
        let json = br#"{"type":"refund","merchant_reference":"x","amount":1}"#;
        match decode_line(&framed(json)) {
            Decoded::Unknown { kind } => assert_eq!(kind, "refund"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn known_type_with_wrong_fields_is_bad() {
        let json = br#"{"type":"session","merchant_reference":"x"}"#;
        assert!(matches!(decode_line(&framed(json)), Decoded::Bad(_)));
    }

    #[test]
    fn checksummed_json_that_is_no_record_is_bad_and_says_why() {
        for (json, why) in [
            (&br#"{"merchant_reference":"x"}"#[..], "no \"type\""),
            (br#"{"type":7}"#, "not a record"),
            // serde reads a struct from an array too: the record itself then fails.
            (br#"["intent"]"#, "not a valid \"intent\" record"),
            (br#"{"type":"intent""#, "EOF while parsing"),
        ] {
            match decode_line(&framed(json)) {
                Decoded::Bad(detail) => assert!(detail.contains(why), "{detail}"),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(json)),
            }
        }
    }

    #[test]
    fn the_leading_tag_is_read_only_as_kioskpay_writes_it() {
        assert_eq!(
            leading_tag(br#"{"type":"intent","amount":1}"#),
            Some("intent")
        );
        assert_eq!(
            leading_tag(br#"{"type":"future_kind"}"#),
            Some("future_kind")
        );
        for other in [
            &br#"{"amount":1,"type":"intent"}"#[..],
            br#"{"type":"int\u0065nt"}"#,
            br#"{ "type":"intent"}"#,
            br#"{"type":1}"#,
            br#"{"type":"intent"#,
            br#"["type","intent"]"#,
        ] {
            assert_eq!(
                leading_tag(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn a_leading_tag_with_a_line_that_is_no_record_is_refused() {
        match decode_line(&framed(br#"{"type":"intent","amount":"#)) {
            Decoded::Bad(why) => assert!(why.contains("not a valid \"intent\""), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_type_is_found_wherever_it_stands_and_however_it_is_escaped() {
        let record = intent();
        let line = encode_line(&record).unwrap();
        let json = std::str::from_utf8(&line[9..line.len() - 1]).unwrap();
        // The tag last, and spelt with a JSON escape: still an intent.
        let moved = format!(
            "{{{},\"type\":\"int\\u0065nt\"}}",
            &json[json.find(',').unwrap() + 1..json.len() - 1]
        );
        match decode_line(&framed(moved.as_bytes())) {
            Decoded::Record(decoded) => assert_eq!(decoded, record),
            other => panic!("{moved}: {other:?}"),
        }
    }
}
