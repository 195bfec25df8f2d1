//! Reading a journal back: from lines to what is known about every payment.
//!
//! Replay never stops at a bad line. A payment journal that refuses to load after one flipped
//! bit would leave the kiosk blind to every other payment in it, so each line stands on its
//! own (its own checksum), bad lines become [`Problem`]s, and whatever the good lines say is
//! still assembled into [`PaymentRecord`]s.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use serde::Serialize;

use super::record::{decode_line, Decoded, Outcome, Record};
use super::reference_sequence;

/// How far the sequence jumps past the highest one readable when a damaged line may have been a
/// newer intent than any readable one. Such a line's own sequence cannot be trusted (a flipped
/// bit in a digit can lower it), and a run hands out at most one sequence per append it tries,
/// so a thousand is far more than one damaged line can hide.
pub const DAMAGE_GAP: u64 = 1000;

/// The `state` of a payment whose intent is written but that has no `state` record yet: the
/// session may or may not have been created.
pub const INITIAL_STATE: &str = "intent";

/// Everything the journal knows about one payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PaymentRecord {
    /// Our reference; the key recovery searches Dintero by.
    pub merchant_reference: String,
    /// Total in minor units; 0 when the intent record was lost (see [`ProblemKind::MissingIntent`]).
    pub amount: u64,
    /// ISO 4217 code; empty when the intent was lost.
    pub currency: String,
    /// The cart's own reference, if any.
    pub cart_reference: Option<String>,
    /// The terminal; empty when the intent was lost.
    pub terminal_id: String,
    /// Dintero's session id, once the create call answered.
    pub session_id: Option<String>,
    /// Dintero's transaction id, once the terminal picked the payment up.
    pub transaction_id: Option<String>,
    /// The last `state` record, or the outcome's name once final ([`INITIAL_STATE`] before either).
    pub state: String,
    /// How it ended; `None` while the payment is unresolved.
    pub outcome: Option<Outcome>,
    /// Dintero's transaction status in the final record.
    pub status: Option<String>,
    /// When the intent was written (RFC 3339); empty when the intent was lost.
    pub started_at: String,
    /// When the outcome was written (RFC 3339).
    pub finished_at: Option<String>,
    /// When it was last reopened after ending `not_created` (a create that landed late), if
    /// ever: such a payment is withdrawn, not collected, while the terminal still prompts.
    pub reopened_at: Option<String>,
}

impl PaymentRecord {
    fn new(merchant_reference: &str) -> PaymentRecord {
        PaymentRecord {
            merchant_reference: merchant_reference.to_owned(),
            amount: 0,
            currency: String::new(),
            cart_reference: None,
            terminal_id: String::new(),
            session_id: None,
            transaction_id: None,
            state: INITIAL_STATE.to_owned(),
            outcome: None,
            status: None,
            started_at: String::new(),
            finished_at: None,
            reopened_at: None,
        }
    }
}

/// What kind of trouble replay met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The last line was cut short or garbled: a power cut during the final append, or a last
    /// page the card garbled later. What can be read of it counts like any damaged line; when
    /// the journal is opened for writing it is copied to `journal.torn` and ended with a newline
    /// where it stands (from then on it reads as [`ProblemKind::Corrupt`]).
    TornTail,
    /// A line before the last one is damaged (checksum, framing or JSON). It is skipped; the
    /// lines after it are still read. Usually failing storage: check the SD card.
    Corrupt,
    /// A well-formed record of a type this version does not know, written by a newer kioskpay.
    /// It is kept (compaction copies it) but not interpreted.
    UnknownRecord,
    /// Records exist for a payment whose intent line is gone, so its amount, currency and
    /// terminal are unknown; the payment is still listed so that recovery can look it up.
    MissingIntent,
    /// Records that contradict each other (a second intent, a changed session or transaction
    /// id, a state after the outcome, a changed outcome). Later facts win except that a state
    /// never reopens a finished payment.
    Inconsistent,
    /// A damaged line may have held an intent newer than any readable one, so the sequence
    /// skips [`DAMAGE_GAP`] numbers: a reference that line held is never handed out again.
    SequenceSkipped,
}

impl ProblemKind {
    fn as_str(self) -> &'static str {
        match self {
            ProblemKind::TornTail => "torn tail",
            ProblemKind::Corrupt => "corrupt line",
            ProblemKind::UnknownRecord => "unknown record type",
            ProblemKind::MissingIntent => "missing intent",
            ProblemKind::Inconsistent => "inconsistent records",
            ProblemKind::SequenceSkipped => "sequence skipped",
        }
    }
}

/// One thing replay could not take at face value. Never silent: the daemon logs each one at
/// start and `kioskpay journal` prints them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// 1-based line number in the journal file, where one line is to blame.
    pub line: Option<usize>,
    /// What exactly, for the technician.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "{}: {}", self.kind.as_str(), self.detail)
    }
}

/// The journal read back: every payment it knows, and everything that was wrong with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// Payments in the order they first appear in the journal (oldest first).
    pub payments: Vec<PaymentRecord>,
    /// Damaged, unknown or contradictory lines, in file order.
    pub problems: Vec<Problem>,
    /// The highest sequence number ever handed out (0 for a new journal).
    pub last_sequence: u64,
    /// A checksum of the damaged lines that no readable intent follows, when there are any:
    /// they may hide references, so the installation draws a new identity for them (once per
    /// distinct damage, see [`super::identity::redraw_for_damage`]).
    pub hidden_damage: Option<String>,
}

impl Replay {
    /// Payments without an outcome: started, perhaps charged, never resolved. Recovery must
    /// settle each of these with Dintero before the kiosk takes a new payment.
    pub fn unresolved(&self) -> impl Iterator<Item = &PaymentRecord> {
        self.payments.iter().filter(|p| p.outcome.is_none())
    }

    /// The payment with this reference.
    pub fn get(&self, merchant_reference: &str) -> Option<&PaymentRecord> {
        self.payments
            .iter()
            .find(|p| p.merchant_reference == merchant_reference)
    }
}

/// One line of the file, as compaction needs to see it.
pub(crate) struct Line {
    /// The bytes of the line in the file, newline included.
    pub range: Range<usize>,
    /// What compaction needs of the record, or `None` when the line is not understood (corrupt
    /// or unknown type): such lines are carried over verbatim, because a newer version or a
    /// forensic look may still make sense of them. Not the record itself: a scan of a big
    /// journal would hold every record of it in memory at once.
    pub read: Option<Read>,
    /// Whether the line is damaged (not a record of an unknown type): it may have been any
    /// record, an intent included.
    pub damaged: bool,
}

/// A readable line, as compaction sees it.
pub(crate) enum Read {
    /// A [`Record::Sequence`]: compaction writes its own.
    Sequence,
    /// A record of this payment.
    Payment(String),
}

/// A whole file, scanned.
pub(crate) struct Scan {
    /// What the good lines say.
    pub replay: Replay,
    /// Every line before the torn tail.
    pub lines: Vec<Line>,
    /// Bytes of the torn last line, if there is one; everything before it is whole lines.
    pub torn: Option<Range<usize>>,
    /// Where a last record that is whole but for its newline ends: the newline is added before
    /// anything else is appended.
    pub unterminated: Option<usize>,
}

/// Reads every line of a journal file's contents.
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    let mut builder = Builder::default();
    let mut lines = Vec::new();
    let mut torn = None;
    let mut unterminated = None;
    let mut start = 0;
    let mut number = 0;
    while start < bytes.len() {
        number += 1;
        let newline = bytes[start..].iter().position(|&b| b == b'\n');
        let end = newline.map_or(bytes.len(), |i| start + i + 1);
        let is_last = end == bytes.len();
        let content = &bytes[start..newline.map_or(end, |_| end - 1)];
        // A last line missing only its newline is a whole record: its checksum proves it.
        let decoded = match (newline, decode_line(content)) {
            (Some(_), decoded) | (None, decoded @ Decoded::Record(_)) => decoded,
            (None, _) => Decoded::Bad(format!("{} bytes without a final newline", content.len())),
        };
        match decoded {
            Decoded::Record(record) => {
                if newline.is_none() {
                    unterminated = Some(end);
                }
                builder.apply(&record, number);
                let read = match record.merchant_reference() {
                    Some(reference) => Read::Payment(reference.to_owned()),
                    None => Read::Sequence,
                };
                lines.push(Line {
                    range: start..end,
                    read: Some(read),
                    damaged: false,
                });
            }
            Decoded::Bad(why) if is_last => {
                builder.unreadable(content, number, true);
                builder.problem(
                    ProblemKind::TornTail,
                    Some(number),
                    format!(
                        "{why}; a power cut during the last write or a garbled last page: what \
                         can be read of it counts, the rest is lost"
                    ),
                );
                torn = Some(start..end);
            }
            Decoded::Bad(why) => {
                builder.unreadable(content, number, true);
                builder.problem(ProblemKind::Corrupt, Some(number), why);
                lines.push(Line {
                    range: start..end,
                    read: None,
                    damaged: true,
                });
            }
            Decoded::Unknown { kind } => {
                builder.unreadable(content, number, false);
                builder.problem(
                    ProblemKind::UnknownRecord,
                    Some(number),
                    format!("record type \"{kind}\" is from a newer kioskpay; kept unread"),
                );
                lines.push(Line {
                    range: start..end,
                    read: None,
                    damaged: false,
                });
            }
        }
        start = end;
    }
    Scan {
        replay: builder.finish(),
        lines,
        torn,
        unterminated,
    }
}

/// Folds records into payments.
#[derive(Default)]
struct Builder {
    payments: Vec<PaymentRecord>,
    index: HashMap<String, usize>,
    /// Per payment: whether its intent was seen, and the line it first appeared on.
    seen: Vec<(bool, usize)>,
    problems: Vec<Problem>,
    last_sequence: u64,
    /// Whether a damaged line came after the last readable intent or sequence record: it may
    /// have been a newer intent, whose sequence only [`DAMAGE_GAP`] is sure to clear.
    damage_after_last_sequence: bool,
    /// References read out of damaged or unknown lines, with their line numbers.
    damaged_references: Vec<(String, usize)>,
    /// CRC-32 over the numbers and bytes of the damaged lines since the last readable intent or
    /// sequence record: what may hide references nothing readable remembers.
    hidden_damage: crc32fast::Hasher,
}

impl Builder {
    fn problem(&mut self, kind: ProblemKind, line: Option<usize>, detail: String) {
        self.problems.push(Problem { kind, line, detail });
    }

    fn payment(&mut self, reference: &str, line: usize) -> usize {
        if let Some(&i) = self.index.get(reference) {
            return i;
        }
        let i = self.payments.len();
        self.payments.push(PaymentRecord::new(reference));
        self.seen.push((false, line));
        self.index.insert(reference.to_owned(), i);
        i
    }

    fn apply(&mut self, record: &Record, line: usize) {
        if let Some(sequence) = record.sequence() {
            self.last_sequence = self.last_sequence.max(sequence);
            self.damage_after_last_sequence = false;
            self.hidden_damage = crc32fast::Hasher::new();
        }
        let Some(reference) = record.merchant_reference() else {
            return;
        };
        // Every reference vouches for its sequence: a payment whose intent line is lost still
        // has its number in its other records.
        if let Some(sequence) = reference_sequence(reference) {
            self.last_sequence = self.last_sequence.max(sequence);
        }
        let i = self.payment(reference, line);
        let mut conflict = None;
        let p = &mut self.payments[i];
        match record {
            Record::Intent {
                amount,
                currency,
                cart_reference,
                terminal_id,
                at,
                ..
            } => {
                if self.seen[i].0 {
                    conflict = Some(format!("second intent for {reference} ignored"));
                } else {
                    self.seen[i].0 = true;
                    p.amount = *amount;
                    p.currency.clone_from(currency);
                    p.cart_reference.clone_from(cart_reference);
                    p.terminal_id.clone_from(terminal_id);
                    p.started_at.clone_from(at);
                }
            }
            Record::Session { session_id, .. } => {
                conflict = replaced(&mut p.session_id, session_id, reference, "session");
            }
            Record::Transaction { transaction_id, .. } => {
                conflict = replaced(
                    &mut p.transaction_id,
                    transaction_id,
                    reference,
                    "transaction",
                );
            }
            Record::State { state, .. } => match p.outcome {
                Some(outcome) => {
                    conflict = Some(format!(
                        "state \"{state}\" after {reference} ended {outcome} ignored"
                    ));
                }
                None => p.state.clone_from(state),
            },
            Record::Final {
                outcome,
                transaction_id,
                status,
                at,
                ..
            } => {
                if let Some(old) = p.outcome.filter(|old| old != outcome) {
                    conflict = Some(format!(
                        "{reference} ended {old} and then {outcome}; the later one counts"
                    ));
                }
                if let Some(id) = transaction_id {
                    if let Some(why) = replaced(&mut p.transaction_id, id, reference, "transaction")
                    {
                        conflict.get_or_insert(why);
                    }
                }
                p.outcome = Some(*outcome);
                p.state = outcome.as_str().to_owned();
                p.status.clone_from(status);
                p.finished_at = Some(at.clone());
            }
            Record::Reopened { session_id, at, .. } => {
                if p.outcome != Some(Outcome::NotCreated) {
                    conflict = Some(format!(
                        "{reference} reopened while it was {}; it is open again all the same",
                        p.state
                    ));
                }
                conflict =
                    replaced(&mut p.session_id, session_id, reference, "session").or(conflict);
                p.outcome = None;
                p.state = "reopened".to_owned();
                p.status = None;
                p.finished_at = None;
                p.reopened_at = Some(at.clone());
            }
            Record::Sequence { .. } => {}
        }
        if let Some(detail) = conflict {
            self.problem(ProblemKind::Inconsistent, Some(line), detail);
        }
    }

    /// Takes what can still be read out of a line that is not a record: the sequence numbers
    /// in its text, and for a damaged line (`damaged`; false for a whole record of an unknown
    /// type, which is not an intent) the reference of the payment it may have started.
    fn unreadable(&mut self, content: &[u8], line: usize, damaged: bool) {
        let found = salvage(content);
        if let Some(sequence) = found.sequence {
            self.last_sequence = self.last_sequence.max(sequence);
        }
        if damaged {
            if let Some(reference) = found.reference {
                self.damaged_references.push((reference, line));
            }
            self.damage_after_last_sequence = true;
            self.hidden_damage.update(&line.to_le_bytes());
            self.hidden_damage.update(content);
        }
    }

    fn finish(mut self) -> Replay {
        // A damaged line may have been the intent of a payment nothing else mentions: if its
        // reference can still be read, the payment is listed (unresolved, intent missing) so that
        // recovery looks it up at Dintero instead of forgetting it.
        for (reference, line) in std::mem::take(&mut self.damaged_references) {
            if !self.index.contains_key(&reference) {
                self.payment(&reference, line);
            }
        }
        if self.damage_after_last_sequence {
            let highest = self.last_sequence;
            self.last_sequence = highest.saturating_add(DAMAGE_GAP);
            self.problems.push(Problem {
                kind: ProblemKind::SequenceSkipped,
                line: None,
                detail: format!(
                    "a damaged line follows the last readable intent and may have held a newer \
                     one; merchant references continue after {} instead of {highest} so that \
                     none can repeat",
                    self.last_sequence
                ),
            });
        }
        for (p, &(has_intent, line)) in self.payments.iter().zip(&self.seen) {
            if !has_intent {
                self.problems.push(Problem {
                    kind: ProblemKind::MissingIntent,
                    line: Some(line),
                    detail: format!(
                        "no intent for {}: amount, currency and terminal unknown; look the \
                         payment up at Dintero by its reference",
                        p.merchant_reference
                    ),
                });
            }
        }
        Replay {
            payments: self.payments,
            problems: self.problems,
            last_sequence: self.last_sequence,
            hidden_damage: self
                .damage_after_last_sequence
                .then(|| format!("{:08x}", self.hidden_damage.finalize())),
        }
    }
}

/// What can still be read out of a line that is not a valid record.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Salvage {
    /// The highest sequence number in the text: `"sequence":N`, `"last":N`, or the number at
    /// the end of a merchant reference.
    pub sequence: Option<u64>,
    /// The first readable `"merchant_reference":"…"` that has the shape of one of ours.
    pub reference: Option<String>,
}

/// Reads sequence numbers and a reference out of a damaged line's bytes. It errs towards
/// finding more: a number it reads too high only skips references, one it misses is what
/// [`DAMAGE_GAP`] is for.
pub(crate) fn salvage(content: &[u8]) -> Salvage {
    let text = String::from_utf8_lossy(content);
    let mut found = Salvage::default();
    let mut note = |sequence: u64| {
        found.sequence = Some(found.sequence.map_or(sequence, |s: u64| s.max(sequence)));
    };
    for key in ["\"sequence\":", "\"last\":"] {
        for (at, _) in text.match_indices(key) {
            let digits: String = text[at + key.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse::<u64>() {
                note(n);
            }
        }
    }
    let key = "\"merchant_reference\":\"";
    for (at, _) in text.match_indices(key) {
        let value: String = text[at + key.len()..]
            .chars()
            .take_while(|&c| c != '"')
            .take(65)
            .collect();
        let shaped = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if let Some(sequence) = reference_sequence(&value).filter(|_| shaped) {
            note(sequence);
            found.reference.get_or_insert(value);
        }
    }
    found
}

/// Sets an id, returning a complaint when it replaces a different one.
fn replaced(slot: &mut Option<String>, new: &str, reference: &str, what: &str) -> Option<String> {
    let complaint = match slot.as_deref() {
        Some(old) if old != new => Some(format!(
            "{reference} had {what} {old} and now {new}; the later one counts"
        )),
        _ => None,
    };
    *slot = Some(new.to_owned());
    complaint
}
