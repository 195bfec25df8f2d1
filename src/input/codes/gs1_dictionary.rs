//! GS1's Barcode Syntax Dictionary, embedded and parsed: the source of every length and
//! character-set rule kioskpay applies to GS1 data.
//!
//! The dictionary (`data/gs1/gs1-syntax-dictionary.txt`, release 2026-01-27, Apache-2.0, see
//! `data/gs1/README.md`) is compiled into the binary with `include_str!` and parsed once, on the
//! first GS1 scan. Nothing about an Application Identifier is hard-coded here: whether it needs a
//! GS separator (flag `*`), whether it may sit in a Digital Link query (flag `?`), its components
//! (`N13,csum`, `X..25`, `N3,iso4217 N..15`), which AIs it needs beside it (`req=`) and which it
//! must not meet (`ex=`) all come from the file. Updating to a newer GS1 release is a file copy
//! and a test run.
//!
//! The linters kioskpay implements are the ones the payment-slip AIs use (`csum`, `iso4217`,
//! `gcppos1`, `gcppos2`); any other linter refuses the value with
//! [`ValueProblem::UnsupportedLinter`] rather than passing it unchecked.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use super::iso4217;

/// The dictionary text as shipped with kioskpay.
pub const DICTIONARY_TEXT: &str = include_str!("../../../data/gs1/gs1-syntax-dictionary.txt");

static EMBEDDED: LazyLock<Result<Dictionary, DictionaryError>> =
    LazyLock::new(|| Dictionary::parse(DICTIONARY_TEXT));

/// The characters a component may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharSet {
    /// `N`: digits.
    Numeric,
    /// `X`: GS1 AI encodable character set 82 (letters, digits and 20 symbols).
    Cset82,
    /// `Y`: GS1 AI encodable character set 39 (upper case, digits, `#`, `-`, `/`).
    Cset39,
    /// `Z`: base64url, with `=` padding.
    Cset64,
}

impl CharSet {
    fn from_letter(c: u8) -> Option<CharSet> {
        match c {
            b'N' => Some(CharSet::Numeric),
            b'X' => Some(CharSet::Cset82),
            b'Y' => Some(CharSet::Cset39),
            b'Z' => Some(CharSet::Cset64),
            _ => None,
        }
    }

    /// Whether the byte belongs to the set.
    pub fn allows(self, b: u8) -> bool {
        match self {
            CharSet::Numeric => b.is_ascii_digit(),
            CharSet::Cset82 => b.is_ascii_alphanumeric() || b"!\"%&'()*+,-./:;<=>?_".contains(&b),
            CharSet::Cset39 => b.is_ascii_digit() || b.is_ascii_uppercase() || b"#-/".contains(&b),
            CharSet::Cset64 => b.is_ascii_alphanumeric() || b"-_=".contains(&b),
        }
    }

    /// The set's name for error messages.
    pub fn name(self) -> &'static str {
        match self {
            CharSet::Numeric => "digits",
            CharSet::Cset82 => "GS1 character set 82",
            CharSet::Cset39 => "GS1 character set 39",
            CharSet::Cset64 => "base64url",
        }
    }
}

/// A content check named after a component's type in the dictionary (`N13,csum`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Linter {
    /// GS1 mod-10 check digit in the last position.
    Csum,
    /// An ISO 4217 numeric currency code.
    Iso4217,
    /// Starts (at position 1 or 2) with the four digits every GS1 Company Prefix has.
    GcpPos(usize),
    /// A linter kioskpay does not implement; a value that needs it is refused.
    Other(String),
}

impl Linter {
    fn from_name(name: &str) -> Linter {
        match name {
            "csum" => Linter::Csum,
            "iso4217" => Linter::Iso4217,
            "gcppos1" => Linter::GcpPos(1),
            "gcppos2" => Linter::GcpPos(2),
            other => Linter::Other(other.to_string()),
        }
    }

    /// Whether kioskpay can run this linter.
    pub fn is_supported(&self) -> bool {
        !matches!(self, Linter::Other(_))
    }

    fn check(&self, part: &[u8]) -> Result<(), ValueProblem> {
        match self {
            Linter::Csum => {
                let (payload, check) = match part.split_last() {
                    Some((check, payload)) if part.iter().all(u8::is_ascii_digit) => {
                        (payload, check - b'0')
                    }
                    _ => return Err(ValueProblem::NotDigits),
                };
                let expected = gs1_check_digit(payload);
                if expected == check {
                    Ok(())
                } else {
                    Err(ValueProblem::CheckDigit {
                        found: check,
                        expected,
                    })
                }
            }
            Linter::Iso4217 => {
                let text = std::str::from_utf8(part).unwrap_or("");
                match text.parse::<u16>().ok().and_then(iso4217::alpha) {
                    Some(_) if part.len() == 3 => Ok(()),
                    _ => Err(ValueProblem::NotACurrency(text.to_string())),
                }
            }
            Linter::GcpPos(pos) => {
                let start = pos - 1;
                match part.get(start..start + 4) {
                    Some(gcp) if gcp.iter().all(u8::is_ascii_digit) => Ok(()),
                    _ => Err(ValueProblem::NoCompanyPrefix),
                }
            }
            Linter::Other(name) => Err(ValueProblem::UnsupportedLinter(name.clone())),
        }
    }
}

/// The GS1 mod-10 check digit of `payload` (digits only): weights 3, 1, 3, ... from the right.
pub fn gs1_check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d.saturating_sub(b'0')) * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// One component of an AI's data field, e.g. `N3,iso4217` or `[X..17]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// The allowed characters.
    pub charset: CharSet,
    /// Shortest length (equals `max_len` for a fixed-length component).
    pub min_len: usize,
    /// Longest length.
    pub max_len: usize,
    /// Written in `[...]`: may be left out when the data ends before it.
    pub optional: bool,
    /// Content checks run on the component.
    pub linters: Vec<Linter>,
}

/// Everything the dictionary says about one Application Identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AiEntry {
    /// The AI, e.g. `3902`.
    pub ai: String,
    /// Flag `*`: predefined length, so no GS separator follows it.
    pub predefined_length: bool,
    /// Flag `?`: may appear in a Digital Link query string.
    pub dl_attribute: bool,
    /// The data field's components, in order.
    pub components: Vec<Component>,
    /// Each `req=` key: one of the alternatives must be present; an alternative is a list of
    /// AIs or patterns (`35nn`) that must all be present.
    pub requires: Vec<Vec<Vec<String>>>,
    /// `ex=`: AIs or patterns that must not appear beside this one.
    pub excludes: Vec<String>,
    /// `dlpkey`: a Digital Link primary key; each alternative lists its qualifiers in order.
    pub dl_primary_key: Option<Vec<Vec<String>>>,
    /// The title after `#`, e.g. `AMOUNT`.
    pub title: String,
}

/// Why a value does not satisfy its AI's specification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueProblem {
    /// No data at all.
    Empty,
    /// Shorter than the mandatory components.
    TooShort {
        /// Length given.
        got: usize,
        /// Shortest allowed.
        min: usize,
    },
    /// Longer than all components together.
    TooLong {
        /// Length given.
        got: usize,
        /// Longest allowed.
        max: usize,
    },
    /// A character outside the component's set.
    BadChar {
        /// The character.
        ch: char,
        /// Its byte position in the value.
        at: usize,
        /// The set it should have come from.
        charset: CharSet,
    },
    /// A `csum` component's check digit is wrong.
    CheckDigit {
        /// The digit in the data.
        found: u8,
        /// The digit the other digits give.
        expected: u8,
    },
    /// A `csum` component held something other than digits.
    NotDigits,
    /// An `iso4217` component is not a currency code.
    NotACurrency(String),
    /// A `gcppos` component does not start with four digits.
    NoCompanyPrefix,
    /// The component needs a linter kioskpay does not implement.
    UnsupportedLinter(String),
}

impl fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueProblem::Empty => f.write_str("empty value"),
            ValueProblem::TooShort { got, min } => {
                write!(f, "{got} characters, at least {min} required")
            }
            ValueProblem::TooLong { got, max } => write!(
                f,
                "{got} characters, at most {max} allowed (a GS separator missing after a \
                 variable-length AI shows up this way)"
            ),
            ValueProblem::BadChar { ch, at, charset } => write!(
                f,
                "{ch:?} at position {at} is not in {} (a GS separator missing after a \
                 variable-length AI shows up this way)",
                charset.name()
            ),
            ValueProblem::CheckDigit { found, expected } => write!(
                f,
                "check digit is {found}, the GS1 mod-10 check digit of the other digits is \
                 {expected} (misread or mistyped number)"
            ),
            ValueProblem::NotDigits => f.write_str("check-digit field is not all digits"),
            ValueProblem::NotACurrency(code) => {
                write!(f, "{code:?} is not an ISO 4217 numeric currency code")
            }
            ValueProblem::NoCompanyPrefix => {
                f.write_str("does not start with a GS1 Company Prefix (four digits)")
            }
            ValueProblem::UnsupportedLinter(name) => write!(
                f,
                "needs the GS1 linter {name:?}, which kioskpay does not implement"
            ),
        }
    }
}

impl AiEntry {
    /// The value length when the AI has a predefined length (flag `*` and only fixed
    /// components): the element string parser takes exactly this many characters.
    pub fn predefined_len(&self) -> Option<usize> {
        if !self.predefined_length {
            return None;
        }
        self.components
            .iter()
            .map(|c| (!c.optional && c.min_len == c.max_len).then_some(c.min_len))
            .sum()
    }

    fn min_len(&self) -> usize {
        self.components
            .iter()
            .filter(|c| !c.optional)
            .map(|c| c.min_len)
            .sum()
    }

    fn max_len(&self) -> usize {
        self.components.iter().map(|c| c.max_len).sum()
    }

    /// Checks a value against the components: lengths, character sets, linters.
    pub fn validate(&self, value: &str) -> Result<(), ValueProblem> {
        let bytes = value.as_bytes();
        if bytes.is_empty() {
            return Err(ValueProblem::Empty);
        }
        let mut pos = 0;
        for c in &self.components {
            let remaining = bytes.len() - pos;
            if remaining == 0 {
                if c.optional {
                    break;
                }
                return Err(ValueProblem::TooShort {
                    got: bytes.len(),
                    min: self.min_len(),
                });
            }
            let take = if c.min_len == c.max_len {
                if remaining < c.min_len {
                    return Err(ValueProblem::TooShort {
                        got: bytes.len(),
                        min: self.min_len(),
                    });
                }
                c.min_len
            } else {
                remaining.min(c.max_len)
            };
            let part = &bytes[pos..pos + take];
            if let Some(i) = part.iter().position(|&b| !c.charset.allows(b)) {
                let at = pos + i;
                let ch = value
                    .get(at..)
                    .and_then(|s| s.chars().next())
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(ValueProblem::BadChar {
                    ch,
                    at,
                    charset: c.charset,
                });
            }
            for linter in &c.linters {
                linter.check(part)?;
            }
            pos += take;
        }
        if pos < bytes.len() {
            return Err(ValueProblem::TooLong {
                got: bytes.len(),
                max: self.max_len(),
            });
        }
        Ok(())
    }
}

/// Whether `ai` matches a dictionary pattern such as `390n` or `31nn` (or is that AI).
pub fn matches_pattern(ai: &str, pattern: &str) -> bool {
    ai.len() == pattern.len()
        && ai
            .bytes()
            .zip(pattern.bytes())
            .all(|(a, p)| a == p || (p == b'n' && a.is_ascii_digit()))
}

/// Why the dictionary text could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("GS1 syntax dictionary line {line}: {problem}")]
pub struct DictionaryError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub problem: String,
}

/// The parsed dictionary: AI → entry, ranges expanded.
#[derive(Clone, Debug)]
pub struct Dictionary {
    entries: HashMap<String, AiEntry>,
}

impl Dictionary {
    /// The dictionary compiled into kioskpay (parsed on first use).
    pub fn embedded() -> Result<&'static Dictionary, &'static DictionaryError> {
        EMBEDDED.as_ref()
    }

    /// Parses dictionary text in GS1's format (see the file's header).
    pub fn parse(text: &str) -> Result<Dictionary, DictionaryError> {
        let mut entries = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let err = |problem: String| DictionaryError {
                line: i + 1,
                problem,
            };
            let (body, title) = match line.split_once('#') {
                Some((body, title)) => (body, title.trim()),
                None => (line, ""),
            };
            let mut tokens = body.split_whitespace().peekable();
            let Some(ai_token) = tokens.next() else {
                continue;
            };
            let ais = expand_range(ai_token).map_err(err)?;
            let mut predefined_length = false;
            let mut dl_attribute = false;
            if let Some(flags) = tokens.next_if(|t| t.bytes().all(|b| FLAG_CHARS.contains(&b))) {
                predefined_length = flags.contains('*');
                dl_attribute = flags.contains('?');
            }
            let mut components = Vec::new();
            while let Some(tok) = tokens.next_if(|t| t.starts_with(['N', 'X', 'Y', 'Z', '['])) {
                components.push(parse_component(tok).map_err(err)?);
            }
            if components.is_empty() {
                return Err(err(format!("AI {ai_token} has no specification")));
            }
            let mut requires = Vec::new();
            let mut excludes = Vec::new();
            let mut dl_primary_key = None;
            for tok in tokens {
                match tok.split_once('=') {
                    Some(("req", v)) => requires.push(
                        v.split(',')
                            .map(|alt| alt.split('+').map(String::from).collect())
                            .collect(),
                    ),
                    Some(("ex", v)) => excludes.extend(v.split(',').map(String::from)),
                    Some(("dlpkey", v)) => {
                        dl_primary_key = Some(
                            v.split('|')
                                .map(|alt| alt.split(',').map(String::from).collect())
                                .collect(),
                        )
                    }
                    None if tok == "dlpkey" => dl_primary_key = Some(vec![Vec::new()]),
                    _ => {}
                }
            }
            for ai in ais {
                let entry = AiEntry {
                    ai: ai.clone(),
                    predefined_length,
                    dl_attribute,
                    components: components.clone(),
                    requires: requires.clone(),
                    excludes: excludes.clone(),
                    dl_primary_key: dl_primary_key.clone(),
                    title: title.to_string(),
                };
                if entries.insert(ai.clone(), entry).is_some() {
                    return Err(err(format!("AI {ai} defined twice")));
                }
            }
        }
        if entries.is_empty() {
            return Err(DictionaryError {
                line: 0,
                problem: "no AI entries".into(),
            });
        }
        Ok(Dictionary { entries })
    }

    /// The entry for an AI.
    pub fn get(&self, ai: &str) -> Option<&AiEntry> {
        self.entries.get(ai)
    }

    /// The AI at the start of `data`: AIs are two to four digits and no AI is a prefix of
    /// another, so the first length that names an AI is the one.
    pub fn ai_at_start(&self, data: &str) -> Option<&AiEntry> {
        (2..=4)
            .filter_map(|n| data.get(..n))
            .find_map(|prefix| self.entries.get(prefix))
    }

    /// How many AIs the dictionary defines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the dictionary is empty (never, for a parsed one).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

const FLAG_CHARS: &[u8] = b"*!?\"$%&'()+,-./:;<=>@[\\]^_`{|}~";

fn expand_range(token: &str) -> Result<Vec<String>, String> {
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    match token.split_once('-') {
        None if digits(token) => Ok(vec![token.to_string()]),
        Some((a, b)) if digits(a) && digits(b) && a.len() == b.len() => {
            let (start, end) = (
                a.parse::<u32>().map_err(|e| e.to_string())?,
                b.parse::<u32>().map_err(|e| e.to_string())?,
            );
            if start > end {
                return Err(format!("AI range {token} runs backwards"));
            }
            Ok((start..=end)
                .map(|n| format!("{n:0width$}", width = a.len()))
                .collect())
        }
        _ => Err(format!("{token:?} is not an AI or AI range")),
    }
}

fn parse_component(token: &str) -> Result<Component, String> {
    let optional = token.starts_with('[');
    let plain: String = token.chars().filter(|c| !matches!(c, '[' | ']')).collect();
    let mut parts = plain.split(',');
    let ty = parts.next().unwrap_or("");
    let bad = || format!("component {token:?} is not Type+length such as N13 or X..25");
    let charset = ty
        .bytes()
        .next()
        .and_then(CharSet::from_letter)
        .ok_or_else(bad)?;
    let len = &ty[1..];
    let (min_len, max_len) = match len.strip_prefix("..") {
        Some(max) => (1, max.parse::<usize>().map_err(|_| bad())?),
        None => {
            let n = len.parse::<usize>().map_err(|_| bad())?;
            (n, n)
        }
    };
    if max_len == 0 {
        return Err(bad());
    }
    Ok(Component {
        charset,
        min_len,
        max_len,
        optional,
        linters: parts.map(Linter::from_name).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_dictionary_parses_and_knows_the_payment_ais() {
        let d = Dictionary::embedded().unwrap();
        assert!(d.len() > 400, "{} AIs", d.len());
        let gln = d.get("415").unwrap();
        assert!(gln.predefined_length);
        assert_eq!(gln.predefined_len(), Some(13));
        assert_eq!(gln.components[0].linters[0], Linter::Csum);
        assert_eq!(gln.requires, vec![vec![vec!["8020".to_string()]]]);
        assert_eq!(gln.dl_primary_key, Some(vec![vec!["8020".to_string()]]));
        let reference = d.get("8020").unwrap();
        assert!(!reference.predefined_length && !reference.dl_attribute);
        assert_eq!(reference.predefined_len(), None);
        let amount = d.get("3902").unwrap();
        assert!(amount.dl_attribute && !amount.predefined_length);
        assert!(amount.excludes.contains(&"391n".to_string()));
        let foreign = d.get("3919").unwrap();
        assert_eq!(foreign.components.len(), 2);
        assert_eq!(foreign.components[0].linters, vec![Linter::Iso4217]);
        assert_eq!(d.get("3920").unwrap().title, "PRICE");
        // Optional components with linters outside the brackets parse too.
        assert!(d.get("253").unwrap().components[1].optional);
        assert!(d.get("4309").is_some());
    }

    #[test]
    fn every_component_of_the_payment_ais_has_an_implemented_linter() {
        let d = Dictionary::embedded().unwrap();
        for ai in ["415", "8020", "3900", "3909", "3910", "3919"] {
            for c in &d.get(ai).unwrap().components {
                assert!(c.linters.iter().all(Linter::is_supported), "{ai}: {c:?}");
            }
        }
    }

    #[test]
    fn finds_the_ai_at_the_start() {
        let d = Dictionary::embedded().unwrap();
        assert_eq!(d.ai_at_start("4157080003824349").unwrap().ai, "415");
        assert_eq!(d.ai_at_start("390239900").unwrap().ai, "3902");
        assert_eq!(d.ai_at_start("8020123").unwrap().ai, "8020");
        assert_eq!(d.ai_at_start("0107038010054471").unwrap().ai, "01");
        assert!(d.ai_at_start("").is_none());
        assert!(d.ai_at_start("4").is_none());
        assert!(d.ai_at_start("éé").is_none());
    }

    #[test]
    fn validates_values_against_components() {
        let d = Dictionary::embedded().unwrap();
        let gln = d.get("415").unwrap();
        assert_eq!(gln.validate("7080003824349"), Ok(()));
        assert_eq!(
            gln.validate("7080003824348"),
            Err(ValueProblem::CheckDigit {
                found: 8,
                expected: 9
            })
        );
        assert!(matches!(
            gln.validate("708000382434"),
            Err(ValueProblem::TooShort { got: 12, min: 13 })
        ));
        let reference = d.get("8020").unwrap();
        assert_eq!(reference.validate("KID-12/34"), Ok(()));
        assert!(matches!(
            reference.validate("a b"),
            Err(ValueProblem::BadChar { ch: ' ', at: 1, .. })
        ));
        assert!(matches!(
            reference.validate(&"1".repeat(26)),
            Err(ValueProblem::TooLong { got: 26, max: 25 })
        ));
        assert!(matches!(
            reference.validate("ø"),
            Err(ValueProblem::BadChar { ch: 'ø', .. })
        ));
        let foreign = d.get("3912").unwrap();
        assert_eq!(foreign.validate("57839900"), Ok(()));
        assert_eq!(
            foreign.validate("00139900"),
            Err(ValueProblem::NotACurrency("001".into()))
        );
        assert!(matches!(
            foreign.validate("578"),
            Err(ValueProblem::TooShort { .. })
        ));
        assert_eq!(
            d.get("3902").unwrap().validate(""),
            Err(ValueProblem::Empty)
        );
    }

    #[test]
    fn check_digits_and_patterns() {
        // GLN 708000382434-9: from the right 4·3+3+4·3+2+8·3+3+0+0+0+8+0+7 = 71 → 9.
        assert_eq!(gs1_check_digit(b"708000382434"), 9);
        assert_eq!(gs1_check_digit(b"703801005447"), 1);
        assert!(matches_pattern("3902", "390n"));
        assert!(matches_pattern("3123", "31nn"));
        assert!(!matches_pattern("3912", "390n"));
        assert!(!matches_pattern("390", "390n"));
    }

    #[test]
    fn refuses_broken_dictionary_text() {
        assert!(Dictionary::parse("# nothing\n").is_err());
        assert!(Dictionary::parse("41x N13\n").is_err());
        assert!(Dictionary::parse("415 *\n").is_err());
        assert!(Dictionary::parse("3909-3900 N..15\n").is_err());
        assert!(Dictionary::parse("415 N13\n415 N13\n").is_err());
        assert!(Dictionary::parse("415 Q13\n").is_err());
        assert!(Dictionary::parse("415 N..x\n").is_err());
        let d = Dictionary::parse("3900-3902 ? N..15 req=8020 # AMOUNT\n").unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d.get("3901").unwrap().title, "AMOUNT");
    }
}
