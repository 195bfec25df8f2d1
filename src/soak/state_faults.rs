//! Lost and damaged state: deleting a kiosk's state directory (a re-imaged SD card) and
//! damaging its journal (a flipped bit, a cut) between a kill and the restart.

use crate::journal::{self};
use anyhow::{Context, Result};
use std::ops::Range;

use super::plan::StateFault;
use super::Soak;

/// How a journal is damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Damage {
    /// One bit flipped inside the newest intent line: the line whose loss could let its
    /// reference be handed out again.
    FlipNewestIntent,
    /// One bit flipped inside any line.
    FlipAnyLine,
    /// The file cut inside its last line.
    CutLastLine,
    /// The file cut inside the newest intent line: everything after the cut is gone.
    CutNewestIntent,
}

/// Drawn with equal chances: half of the damage lands in the newest intent.
pub(super) const DAMAGES: [Damage; 4] = [
    Damage::FlipNewestIntent,
    Damage::FlipAnyLine,
    Damage::CutLastLine,
    Damage::CutNewestIntent,
];

impl Damage {
    fn name(self) -> &'static str {
        match self {
            Damage::FlipNewestIntent => "bit_flip_newest_intent",
            Damage::FlipAnyLine => "bit_flip_any_line",
            Damage::CutLastLine => "cut_in_last_line",
            Damage::CutNewestIntent => "cut_in_newest_intent",
        }
    }
}

/// The byte ranges of a journal's lines, without their newlines (an unended last line too).
fn line_spans(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            spans.push(start..i);
            start = i + 1;
        }
    }
    if start < bytes.len() {
        spans.push(start..bytes.len());
    }
    spans
}

/// The `merchant_reference` of an intent line, `None` for any other line.
fn intent_reference(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    if !text.contains(r#""type":"intent""#) {
        return None;
    }
    let key = r#""merchant_reference":""#;
    let rest = &text[text.find(key)? + key.len()..];
    Some(rest[..rest.find('"')?].to_string())
}

/// A journal after [`damage`].
#[derive(Debug, PartialEq, Eq)]
struct Damaged {
    /// The whole file as it is to be written back.
    bytes: Vec<u8>,
    /// Where the damage is: the flipped byte, or the new length.
    at: usize,
    /// The reference of the intent line the damage is in, if it is in one.
    intent_of: Option<String>,
}

/// `journal` damaged as `kind` says, at a place drawn from `rng`; `None` when it has no line
/// of that kind (no intent yet) or the line is too short to damage inside.
fn damage(journal: &[u8], kind: Damage, rng: &mut fastrand::Rng) -> Option<Damaged> {
    let spans = line_spans(journal);
    let newest_intent = || {
        spans
            .iter()
            .rposition(|s| intent_reference(&journal[s.clone()]).is_some())
    };
    let line = match kind {
        Damage::FlipNewestIntent | Damage::CutNewestIntent => newest_intent()?,
        Damage::FlipAnyLine => (!spans.is_empty()).then(|| rng.usize(..spans.len()))?,
        Damage::CutLastLine => spans.len().checked_sub(1)?,
    };
    let span = spans[line].clone();
    if span.len() < 2 {
        return None;
    }
    let intent_of = intent_reference(&journal[span.clone()]);
    let mut bytes = journal.to_vec();
    let at = match kind {
        Damage::FlipNewestIntent | Damage::FlipAnyLine => {
            let at = rng.usize(span);
            let mut bit = rng.u8(0..8);
            // A flip that makes a newline would split the line in two instead of damaging one.
            if bytes[at] ^ (1 << bit) == b'\n' {
                bit = (bit + 1) % 8;
            }
            bytes[at] ^= 1 << bit;
            at
        }
        Damage::CutLastLine | Damage::CutNewestIntent => {
            // At least one byte of the line stays and at least one of its bytes goes: a cut at
            // its end would leave a whole record that only lacks its newline.
            let at = rng.usize(span.start + 1..span.end);
            bytes.truncate(at);
            at
        }
    };
    Some(Damaged {
        bytes,
        at,
        intent_of,
    })
}

impl Soak {
    /// Makes the oldest state fault owed on kiosk `k`, whose daemon is down, unless a payment
    /// in its journal is unfinished (then it waits for a later restart).
    pub(super) async fn state_fault(&mut self, k: usize) -> Result<()> {
        let Some(&fault) = self.owed.front() else {
            return Ok(());
        };
        // Everything the journal holds goes into the tally before any of it is lost.
        self.kiosks[k].journal_seen = None;
        self.refresh_journal(k);
        let dir = self.kiosks[k].state_dir.clone();
        let path = dir.join(journal::FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let all_final = bytes.is_empty()
            || journal::read_only(&dir).is_ok_and(|r| r.unresolved().next().is_none());
        let damaged = match fault {
            StateFault::Lose => None,
            StateFault::Damage => {
                let kind = DAMAGES[self.state_rng.usize(..DAMAGES.len())];
                damage(&bytes, kind, &mut self.state_rng).map(|d| (kind, d))
            }
        };
        let name = self.kiosks[k].name;
        match (fault, damaged) {
            _ if !all_final => self.postponed += 1,
            (StateFault::Lose, _) => {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("deleting {}", dir.display()))?;
                }
                let kiosk = &mut self.kiosks[k];
                kiosk.journal_seen = None;
                kiosk.damaged = false;
                kiosk.damaged_intents.clear();
                self.losses += 1;
                self.owed.pop_front();
                eprintln!("soak: kiosk {name} lost its state directory (a re-imaged SD card)");
                self.drop_next_create().await?;
            }
            (StateFault::Damage, Some((kind, d))) => {
                std::fs::write(&path, &d.bytes)
                    .with_context(|| format!("damaging {}", path.display()))?;
                let kiosk = &mut self.kiosks[k];
                kiosk.damaged = true;
                kiosk.damaged_intents.extend(d.intent_of);
                *self.damages.entry(kind.name().to_string()).or_insert(0) += 1;
                self.owed.pop_front();
                eprintln!(
                    "soak: kiosk {name}'s journal damaged: {} at byte {}",
                    kind.name(),
                    d.at
                );
                self.drop_next_create().await?;
            }
            // Nothing of that kind to damage yet (an empty journal, no intent).
            (StateFault::Damage, None) => self.postponed += 1,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal of three lines as the daemon writes them (checksums need not be right here).
    fn journal_bytes() -> Vec<u8> {
        let lines = [
            r#"00000000 {"type":"intent","merchant_reference":"soak-AAAAAA-20260101-000001","amount":100}"#,
            r#"00000000 {"type":"intent","merchant_reference":"soak-AAAAAA-20260101-000002","amount":200}"#,
            r#"00000000 {"type":"final","merchant_reference":"soak-AAAAAA-20260101-000002","outcome":"approved"}"#,
        ];
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    #[test]
    fn lines_and_intents_are_found_in_journal_bytes() {
        assert_eq!(line_spans(b"ab\ncd\n"), vec![0..2, 3..5]);
        assert_eq!(line_spans(b"ab\ncd"), vec![0..2, 3..5]);
        assert_eq!(line_spans(b""), Vec::<Range<usize>>::new());
        let bytes = journal_bytes();
        let spans = line_spans(&bytes);
        assert_eq!(
            intent_reference(&bytes[spans[1].clone()]).as_deref(),
            Some("soak-AAAAAA-20260101-000002")
        );
        assert_eq!(intent_reference(&bytes[spans[2].clone()]), None);
        assert_eq!(intent_reference(b"\xff\xfe"), None);
        assert_eq!(
            intent_reference(br#"{"type":"intent","merchant_reference":"x"#),
            None
        );
    }

    #[test]
    fn a_bit_flip_changes_one_bit_inside_the_chosen_line() {
        let bytes = journal_bytes();
        let spans = line_spans(&bytes);
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let d = damage(&bytes, Damage::FlipNewestIntent, &mut rng).unwrap();
            assert_eq!(d.bytes.len(), bytes.len());
            assert!(spans[1].contains(&d.at), "{seed}: {}", d.at);
            let diff: u32 = d
                .bytes
                .iter()
                .zip(&bytes)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(diff, 1, "{seed}");
            assert_eq!(line_spans(&d.bytes).len(), 3, "no new line: {seed}");
            assert_eq!(d.intent_of.as_deref(), Some("soak-AAAAAA-20260101-000002"));
            let any = damage(&bytes, Damage::FlipAnyLine, &mut rng).unwrap();
            assert!(spans.iter().any(|s| s.contains(&any.at)));
            assert_eq!(line_spans(&any.bytes).len(), 3, "no new line: {seed}");
        }
    }

    #[test]
    fn a_cut_ends_inside_the_chosen_line() {
        let bytes = journal_bytes();
        let spans = line_spans(&bytes);
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let last = damage(&bytes, Damage::CutLastLine, &mut rng).unwrap();
            assert!(
                last.at > spans[2].start && last.at < spans[2].end,
                "{}",
                last.at
            );
            assert_eq!(last.bytes, bytes[..last.at]);
            assert_eq!(last.intent_of, None);
            let intent = damage(&bytes, Damage::CutNewestIntent, &mut rng).unwrap();
            assert!(intent.at > spans[1].start && intent.at < spans[1].end);
            assert_eq!(intent.bytes, bytes[..intent.at]);
            assert_eq!(
                intent.intent_of.as_deref(),
                Some("soak-AAAAAA-20260101-000002")
            );
        }
    }

    #[test]
    fn damage_needs_a_line_of_its_kind() {
        let mut rng = fastrand::Rng::with_seed(1);
        for kind in DAMAGES {
            assert_eq!(damage(b"", kind, &mut rng), None, "{kind:?}");
            assert_eq!(damage(b"x\n", kind, &mut rng), None, "{kind:?}");
        }
        let no_intent = b"00000000 {\"type\":\"final\"}\n";
        assert_eq!(damage(no_intent, Damage::FlipNewestIntent, &mut rng), None);
        assert_eq!(damage(no_intent, Damage::CutNewestIntent, &mut rng), None);
        assert!(damage(no_intent, Damage::CutLastLine, &mut rng).is_some());
    }
}
