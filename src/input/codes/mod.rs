//! Payment codes: what a scanned barcode says the customer should pay.
//!
//! A kiosk is handed whatever the merchant prints. [`decode`] takes the raw bytes of one scan
//! (after the line framing, before anything else) and either returns a [`Decoded`] amount with
//! the merchant's reference, or a [`CodeError`] that says precisely, for the log, what was wrong,
//! and through [`CodeError::customer_reason`] what the customer should be told.
//!
//! | format (`input.formats`) | what it is | reference sent as `merchant_reference_2` |
//! |---|---|---|
//! | `gs1` | GS1 payment slip: AI 415 (GLN) + 8020 (reference) + 390n/391n (amount) in GS1-128, GS1 DataMatrix, GS1 QR or DataBar | the 8020 value |
//! | `digital_link` | the same slip as a GS1 Digital Link URI, `https://host/415/<GLN>/8020/<ref>?3902=<amount>` | the 8020 value |
//! | `ean13` | in-store EAN-13 price code, prefix 20-29 ([`ean13`] describes the rule table) | the article digits |
//! | `signed` | kioskpay's own HMAC-signed cart code, printed by the merchant's POS ([`signed`]) | the cart reference |
//! | `plain` | `AMOUNT[;REFERENCE]`, amount in major units: development and the demo | the reference |
//!
//! How a scan is routed: the AIM symbology identifier ([`aim`]) comes first. `]C1`, `]d2`, `]Q3`,
//! `]e0` mean GS1 data; `]E0` means EAN-13; other identifiers mean text. Text starting with
//! `http://` or `https://` is a Digital Link, `KP1.` a signed code, 13 digits an EAN-13, and
//! anything else is tried as plain. Scanners that do not send identifiers still work for every
//! format except that GS1 data is then recognised only by a GS byte or a leading `415`: turn
//! "transmit AIM ID" on.
//!
//! Every amount is converted with integer arithmetic only. A code that states an amount finer
//! than the kiosk currency's minor unit (3 decimals in NOK with a non-zero last digit) is refused,
//! never rounded; a code in another currency than the kiosk's is refused; a zero amount is
//! refused. No input, however malformed, makes these parsers panic: each has a fuzz target
//! (`fuzz/`) and a property test (`tests/inprocess/codes.rs`).
//!
//! "Already paid" is not decided here: decoding is pure, and only the payment flow knows which
//! carts its journal shows as paid (see [`crate::payment::flow`]).

pub mod aim;
pub mod digital_link;
pub mod ean13;
pub mod gs1;
pub mod gs1_dictionary;
pub mod iso4217;
pub mod plain;
pub mod signed;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::messages::CustomerReason;
use crate::money::{AmountError, Currency, Money};
use crate::secret::Secret;

use self::aim::{Aim, AimKind};
use self::ean13::Ean13Rules;
use self::gs1_dictionary::ValueProblem;

/// A payment-code format; the config list `input.formats` says which ones a kiosk accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Format {
    /// GS1 payment slip as an element string (GS1-128, GS1 DataMatrix, GS1 QR, DataBar).
    #[serde(rename = "gs1")]
    Gs1,
    /// GS1 payment slip as a GS1 Digital Link URI.
    #[serde(rename = "digital_link")]
    DigitalLink,
    /// In-store EAN-13 price code (prefix 20-29).
    #[serde(rename = "ean13")]
    Ean13Price,
    /// kioskpay's HMAC-signed cart code.
    #[serde(rename = "signed")]
    Signed,
    /// `AMOUNT[;REFERENCE]`, for development and the demo.
    #[serde(rename = "plain")]
    Plain,
}

impl Format {
    /// Every format, in the order the docs list them.
    pub const ALL: [Format; 5] = [
        Format::Gs1,
        Format::DigitalLink,
        Format::Ean13Price,
        Format::Signed,
        Format::Plain,
    ];

    /// The config spelling (`gs1`, `digital_link`, `ean13`, `signed`, `plain`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Gs1 => "gs1",
            Format::DigitalLink => "digital_link",
            Format::Ean13Price => "ean13",
            Format::Signed => "signed",
            Format::Plain => "plain",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`decode`] needs to know about the kiosk.
#[derive(Clone, Debug)]
pub struct DecodeConfig {
    /// The kiosk's currency: codes in any other currency are refused.
    pub currency: Currency,
    /// The formats this kiosk accepts (`input.formats`).
    pub formats: Vec<Format>,
    /// How in-store EAN-13 prefixes are read.
    pub ean13_rules: Ean13Rules,
    /// The key shared with the merchant's POS for signed cart codes; without it signed codes
    /// are refused.
    pub signing_key: Option<Secret>,
    /// The current time in Unix seconds, for the expiry of signed codes. Passed in so that
    /// decoding stays a pure function and tests choose the time.
    pub now_unix: u64,
}

impl DecodeConfig {
    /// Every format, the Norwegian/Swedish EAN-13 convention, no signing key, time 0.
    pub fn new(currency: Currency) -> DecodeConfig {
        DecodeConfig {
            currency,
            formats: Format::ALL.to_vec(),
            ean13_rules: Ean13Rules::default(),
            signing_key: None,
            now_unix: 0,
        }
    }
}

/// An amount payable read from a code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// Which format the code was.
    pub format: Format,
    /// The amount, in the kiosk's currency, never zero.
    pub amount: Money,
    /// The merchant's reference (8020 value, article digits, cart reference), sent to Dintero as
    /// `order.merchant_reference_2`.
    pub reference: Option<String>,
    /// For signed codes: when the code stops being payable (Unix seconds).
    pub expires_unix: Option<u64>,
}

/// Why a scan is not an amount payable. Messages are for the operator's log: they quote the
/// offending text (escaped, at most 64 characters) and say what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Nothing was scanned.
    #[error("empty scan: the scanner sent an AIM identifier or a line ending and no data")]
    Empty,
    /// Bytes that are not text, or control characters where none belong.
    #[error("scan {text:?} is not text: {problem}")]
    NotText {
        /// The scan, lossily decoded.
        text: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A recognised format that `input.formats` does not list.
    #[error("{format} code {text:?} refused: this kiosk does not accept {format} codes (add \"{format}\" to input.formats to accept them)")]
    FormatDisabled {
        /// The format the code is in.
        format: Format,
        /// The scan.
        text: String,
    },
    /// Text that no enabled format reads.
    #[error("{text:?} is not a payment code this kiosk reads (enabled formats: {enabled}){hint}")]
    NotRecognized {
        /// The scan.
        text: String,
        /// `input.formats`, for the operator.
        enabled: String,
        /// How to accept it, when it would be a valid code in a disabled format; else empty.
        hint: &'static str,
    },
    /// An EAN/UPC symbol other than EAN-13 (EAN-8, add-on): product codes.
    #[error("{aim} symbol {text:?} is an EAN-8 or EAN/UPC add-on, a product code and never an amount payable")]
    ProductSymbol {
        /// The AIM identifier.
        aim: String,
        /// The data.
        text: String,
    },
    /// GS1 data where no Application Identifier starts.
    #[error("GS1 data {text:?}: no Application Identifier starts at byte {offset} (a doubled GS, or not GS1 data at all)")]
    UnknownAi {
        /// The data from the offending position.
        text: String,
        /// Byte offset in the element string.
        offset: usize,
    },
    /// A known AI that has no place on a payment slip.
    #[error("GS1 AI ({ai}) {title} is not accepted on a payment slip: {why}")]
    AiNotAccepted {
        /// The AI.
        ai: String,
        /// Its dictionary title.
        title: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// A value that does not satisfy its AI's dictionary specification.
    #[error("GS1 AI ({ai}) value {value:?}: {problem}")]
    InvalidValue {
        /// The AI.
        ai: String,
        /// The value (at most 64 characters).
        value: String,
        /// What is wrong with it.
        problem: ValueProblem,
    },
    /// The same AI twice.
    #[error("GS1 AI ({ai}) appears twice: a payment code must state each thing once")]
    DuplicateAi {
        /// The AI.
        ai: String,
    },
    /// Two AIs the dictionary says must not appear together (`ex=`), e.g. 390n and 391n.
    #[error(
        "GS1 AI ({ai}) cannot appear together with ({other}) (GS1 syntax dictionary: ex={pattern})"
    )]
    ExcludedPair {
        /// The AI whose entry forbids the pairing.
        ai: String,
        /// The AI present that it forbids.
        other: String,
        /// The `ex=` pattern that matched.
        pattern: String,
    },
    /// An AI without the companion the dictionary requires (`req=`), e.g. 8020 without 415.
    #[error("GS1 AI ({ai}) needs one of {needs} beside it (GS1 syntax dictionary: req=)")]
    MissingCompanion {
        /// The AI.
        ai: String,
        /// The alternatives, e.g. `(415)` or `(255) | (8020)`.
        needs: String,
    },
    /// A payment slip without its GLN, its reference or its amount.
    #[error("GS1 payment slip has no {missing}")]
    SlipIncomplete {
        /// What is missing, e.g. `amount: AI (390n) or (391n)`.
        missing: &'static str,
    },
    /// An amount in another currency than the kiosk's.
    #[error("currency {alpha}/{numeric:03} not accepted: this kiosk charges {kiosk} only")]
    CurrencyNotAccepted {
        /// ISO 4217 alphabetic code, `???` when unknown.
        alpha: String,
        /// ISO 4217 numeric code (0 when the code named only the alphabetic one).
        numeric: u16,
        /// The kiosk's currency.
        kiosk: Currency,
    },
    /// An amount finer than the currency's minor unit.
    #[error("amount {digits:?} with {decimals} implied decimals is not a whole number of {currency} minor units: sub-minor-unit amounts are refused, never rounded")]
    SubMinorUnit {
        /// The amount digits.
        digits: String,
        /// Implied decimals.
        decimals: u8,
        /// The currency.
        currency: Currency,
    },
    /// An amount that does not fit in 64 bits of minor units.
    #[error("amount {digits:?} with {decimals} implied decimals is too large to charge")]
    AmountOverflow {
        /// The amount digits.
        digits: String,
        /// Implied decimals.
        decimals: u8,
    },
    /// An amount of zero.
    #[error("{format} code states an amount of zero: nothing to charge")]
    ZeroAmount {
        /// The format.
        format: Format,
    },
    /// A Digital Link URI that is not well formed.
    #[error("GS1 Digital Link {uri:?}: {problem}")]
    DigitalLink {
        /// The URI (at most 64 characters).
        uri: String,
        /// What is wrong.
        problem: String,
    },
    /// An EAN-13 whose check digit is wrong.
    #[error(
        "EAN-13 {digits:?}: check digit is {found}, the other digits give {expected} (misread)"
    )]
    Ean13CheckDigit {
        /// The 13 digits.
        digits: String,
        /// The digit scanned.
        found: u8,
        /// The digit computed.
        expected: u8,
    },
    /// An in-store EAN-13 whose price check digit is wrong.
    #[error("EAN-13 {digits:?}: price check digit is {found}, GS1's {price_len}-digit price check gives {expected} (misprinted or altered price)")]
    PriceCheckDigit {
        /// The 13 digits.
        digits: String,
        /// The digit scanned.
        found: u8,
        /// The digit computed.
        expected: u8,
        /// 4 or 5.
        price_len: u8,
    },
    /// An EAN-13 outside the in-store range 20-29: a product number.
    #[error(
        "EAN-13 {digits:?} is a product number (GTIN), not an in-store price code (prefix 20-29)"
    )]
    Ean13Product {
        /// The 13 digits.
        digits: String,
    },
    /// An in-store EAN-13 whose prefix carries a weight.
    #[error("EAN-13 {digits:?}: prefix {prefix} is a weight, not a price (input.ean13_rules)")]
    Ean13Weight {
        /// The 13 digits.
        digits: String,
        /// The prefix.
        prefix: u8,
    },
    /// An in-store EAN-13 whose prefix has no rule.
    #[error("EAN-13 {digits:?}: no rule for in-store prefix {prefix}; add one to input.ean13_rules if this store prints prices with it")]
    Ean13NoRule {
        /// The 13 digits.
        digits: String,
        /// The prefix.
        prefix: u8,
    },
    /// A signed cart code that does not have the expected shape.
    #[error("signed cart code {text:?}: {problem}")]
    SignedMalformed {
        /// The code (at most 64 characters).
        text: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A signed cart code whose signature does not verify.
    #[error("signed cart code {text:?}: signature does not verify (altered, forged, or signed with another key than input.signing_key_file)")]
    Forged {
        /// The code (at most 64 characters).
        text: String,
    },
    /// A signed cart code past its expiry.
    #[error("signed cart code for cart {reference:?} expired at {expires_unix}, it is now {now_unix} (check the kiosk's clock if this repeats)")]
    Expired {
        /// The cart reference.
        reference: String,
        /// The code's expiry.
        expires_unix: u64,
        /// The time it was checked.
        now_unix: u64,
    },
    /// A signed cart code or a payment slip whose cart was charged already.
    #[error("the cart {reference:?} of this code was already paid (an approved payment carries its reference); nothing was charged")]
    AlreadyPaid {
        /// The cart reference.
        reference: String,
    },
    /// Signed codes are enabled but no key is configured.
    #[error(
        "signed cart codes are enabled but no signing key is configured (input.signing_key_file)"
    )]
    NoSigningKey,
    /// The configured signing key is too short to be safe.
    #[error(
        "the signing key is {len} bytes; use at least {min} random bytes (input.signing_key_file)"
    )]
    WeakSigningKey {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// A plain code whose amount does not parse.
    #[error("plain code: {0}")]
    PlainAmount(AmountError),
    /// A plain code whose reference is unusable.
    #[error("plain code reference {reference:?}: {problem}")]
    PlainReference {
        /// The reference (at most 64 characters).
        reference: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The GS1 dictionary compiled into kioskpay does not parse: a build defect.
    #[error("the embedded GS1 syntax dictionary does not load ({0}): this kioskpay build is broken, report it")]
    Dictionary(String),
}

impl CodeError {
    /// What the customer is told.
    pub fn customer_reason(&self) -> CustomerReason {
        use CodeError::*;
        match self {
            Empty
            | NotText { .. }
            | UnknownAi { .. }
            | InvalidValue { .. }
            | DuplicateAi { .. }
            | ExcludedPair { .. }
            | MissingCompanion { .. }
            | SlipIncomplete { .. }
            | DigitalLink { .. }
            | Ean13CheckDigit { .. }
            | PriceCheckDigit { .. }
            | SignedMalformed { .. }
            | PlainAmount(AmountError::Malformed(_))
            | PlainReference { .. } => CustomerReason::Unreadable,
            NotRecognized { .. }
            | ProductSymbol { .. }
            | AiNotAccepted { .. }
            | Ean13Product { .. }
            | Ean13Weight { .. }
            | Ean13NoRule { .. } => CustomerReason::NotAPaymentCode,
            FormatDisabled { .. } => CustomerReason::NotAccepted,
            CurrencyNotAccepted { .. } => CustomerReason::WrongCurrency,
            SubMinorUnit { .. } | AmountOverflow { .. } | ZeroAmount { .. } | PlainAmount(_) => {
                CustomerReason::InvalidAmount
            }
            Expired { .. } => CustomerReason::Expired,
            AlreadyPaid { .. } => CustomerReason::AlreadyPaid,
            Forged { .. } => CustomerReason::Forged,
            NoSigningKey | WeakSigningKey { .. } | Dictionary(_) => CustomerReason::KioskFault,
        }
    }
}

/// At most 64 characters of `text`, for quoting in a log line (messages print it with `{:?}`,
/// which escapes control characters).
pub(crate) fn excerpt(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Converts amount digits with `decimals` implied decimals into minor units of `currency`,
/// with integer arithmetic only: surplus decimals must be zeros, missing ones are added.
pub(crate) fn implied_decimals_to_minor(
    digits: &str,
    decimals: u8,
    currency: Currency,
) -> Result<Money, CodeError> {
    let overflow = || CodeError::AmountOverflow {
        digits: excerpt(digits),
        decimals,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CodeError::PlainAmount(AmountError::Malformed(excerpt(
            digits,
        ))));
    }
    let mut value: u64 = 0;
    for b in digits.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    let exponent = currency.exponent();
    let minor = if decimals > exponent {
        let divisor = 10u64
            .checked_pow(u32::from(decimals - exponent))
            .ok_or_else(overflow)?;
        if value % divisor != 0 {
            return Err(CodeError::SubMinorUnit {
                digits: excerpt(digits),
                decimals,
                currency,
            });
        }
        value / divisor
    } else {
        10u64
            .checked_pow(u32::from(exponent - decimals))
            .and_then(|m| value.checked_mul(m))
            .ok_or_else(overflow)?
    };
    Ok(Money::new(minor, currency))
}

/// Decodes one scan into an amount payable, or says why not.
///
/// `raw` is one scan as the scanner sent it, AIM identifier included, line ending removed.
pub fn decode(raw: &[u8], config: &DecodeConfig) -> Result<Decoded, CodeError> {
    let (aim, body) = Aim::strip(raw);
    if body.is_empty() {
        return Err(CodeError::Empty);
    }
    let lossy = || excerpt(&String::from_utf8_lossy(body));
    let text = std::str::from_utf8(body).map_err(|_| CodeError::NotText {
        text: lossy(),
        problem: "not valid UTF-8 (wrong scanner keyboard/code page setting?)",
    })?;
    if text.chars().any(|c| c.is_control() && c != '\u{1d}') {
        return Err(CodeError::NotText {
            text: lossy(),
            problem: "contains control characters other than GS (a line ending inside the scan?)",
        });
    }
    if text.chars().any(is_invisible) {
        return Err(CodeError::NotText {
            text: lossy(),
            problem:
                "contains invisible formatting characters (bidirectional overrides, \
                      zero-width spaces): a reference must read the same in the journal as on paper",
        });
    }
    let format = match aim.map(Aim::kind) {
        Some(AimKind::Gs1) => Format::Gs1,
        Some(AimKind::Ean13) => Format::Ean13Price,
        Some(AimKind::OtherEanUpc) => {
            return Err(CodeError::ProductSymbol {
                aim: aim.map(Aim::text).unwrap_or_default(),
                text: excerpt(text),
            })
        }
        Some(AimKind::Text) => classify_text(text, false),
        None => classify_text(text, true),
    };
    if !config.formats.contains(&format) {
        if format == Format::Plain {
            let enabled: Vec<&str> = config.formats.iter().map(|f| f.name()).collect();
            // Plain is what everything else falls back to, so only text that would be a valid
            // plain code gets the advice.
            let hint = if plain::parse(text, config.currency).is_ok() {
                "; as a plain AMOUNT;REFERENCE code it would be accepted with \"plain\" added to \
                 input.formats (meant for development and tests)"
            } else {
                ""
            };
            return Err(CodeError::NotRecognized {
                text: excerpt(text),
                enabled: enabled.join(", "),
                hint,
            });
        }
        return Err(CodeError::FormatDisabled {
            format,
            text: excerpt(text),
        });
    }
    if format != Format::Gs1 && text.contains('\u{1d}') {
        return Err(CodeError::NotText {
            text: excerpt(text),
            problem: "GS separators outside GS1 data",
        });
    }
    let decoded = match format {
        Format::Gs1 => {
            let slip = gs1::parse_element_string(text, config.currency)?;
            Decoded {
                format,
                amount: slip.amount,
                reference: Some(slip.reference),
                expires_unix: None,
            }
        }
        Format::DigitalLink => {
            let slip = digital_link::parse(text, config.currency)?;
            Decoded {
                format,
                amount: slip.amount,
                reference: Some(slip.reference),
                expires_unix: None,
            }
        }
        Format::Ean13Price => {
            let price = ean13::parse(text, &config.ean13_rules, config.currency)?;
            Decoded {
                format,
                amount: price.amount,
                reference: Some(price.article),
                expires_unix: None,
            }
        }
        Format::Signed => {
            let key = config.signing_key.as_ref().ok_or(CodeError::NoSigningKey)?;
            let cart = signed::verify(text, key, config.currency, config.now_unix)?;
            Decoded {
                format,
                amount: cart.amount,
                reference: Some(cart.reference),
                expires_unix: Some(cart.expires_unix),
            }
        }
        Format::Plain => {
            let cart = plain::parse(text, config.currency)?;
            Decoded {
                format,
                amount: cart.amount,
                reference: cart.reference,
                expires_unix: None,
            }
        }
    };
    if decoded.amount.minor == 0 {
        return Err(CodeError::ZeroAmount { format });
    }
    Ok(decoded)
}

/// Characters that change how text is shown without being seen: Unicode's format characters
/// (category Cf: bidirectional controls like U+202E, zero-width spaces and joiners, the BOM,
/// soft hyphen, tag characters) and the line and paragraph separators. A reference containing
/// one can look like another in the journal, `journal --json` and Dintero's backoffice. Checked
/// here, once, for every format.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// Picks the format of text that carries no (or a non-GS1) symbology identifier.
fn classify_text(text: &str, without_aim: bool) -> Format {
    let lower_start = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    if lower_start.starts_with("https://") || lower_start.starts_with("http://") {
        Format::DigitalLink
    } else if text.starts_with(signed::PREFIX) {
        Format::Signed
    } else if text.len() == 13 && text.bytes().all(|b| b.is_ascii_digit()) {
        Format::Ean13Price
    } else if without_aim
        && (text.contains('\u{1d}') || (text.starts_with("415") && text.len() > 20))
    {
        Format::Gs1
    } else {
        Format::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implied_decimals_are_exact() {
        let nok = Currency::NOK;
        let minor = |d, n| implied_decimals_to_minor(d, n, nok).map(|m| m.minor);
        assert_eq!(minor("399", 0), Ok(39900));
        assert_eq!(minor("3990", 1), Ok(39900));
        assert_eq!(minor("39900", 2), Ok(39900));
        assert_eq!(minor("399000", 3), Ok(39900));
        assert!(matches!(
            minor("399001", 3),
            Err(CodeError::SubMinorUnit { .. })
        ));
        assert_eq!(minor("1000000000", 9), Ok(100));
        assert!(matches!(
            minor("999999999999999", 0),
            Ok(99_999_999_999_999_900)
        ));
        assert!(matches!(
            minor("99999999999999999999", 0),
            Err(CodeError::AmountOverflow { .. })
        ));
        assert!(matches!(
            minor("184467440737095517", 0),
            Err(CodeError::AmountOverflow { .. })
        ));
        let isk = Currency::from_code("ISK").unwrap();
        assert_eq!(
            implied_decimals_to_minor("500", 2, isk).map(|m| m.minor),
            Ok(5)
        );
        assert!(implied_decimals_to_minor("501", 2, isk).is_err());
    }

    #[test]
    fn excerpt_truncates_on_char_boundaries() {
        assert_eq!(excerpt("abc"), "abc");
        let long = "ø".repeat(100);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), 65);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn invisible_formatting_characters_are_refused_in_every_format() {
        let config = DecodeConfig::new(Currency::NOK);
        for hidden in [
            '\u{202E}',
            '\u{200B}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{E0041}',
        ] {
            for code in [
                format!("399.00;KID{hidden}123"),
                format!("https://id.example.com/415/7080003824349/8020/KID{hidden}1?3902=39900"),
                format!("{hidden}399.00"),
            ] {
                let err = decode(code.as_bytes(), &config).unwrap_err();
                assert!(
                    matches!(err, CodeError::NotText { problem, .. } if problem.contains("invisible")),
                    "{code:?}: {err}"
                );
                assert_eq!(err.customer_reason(), CustomerReason::Unreadable);
            }
        }
        // Visible non-ASCII text stays a valid plain reference.
        let ok = decode("399.00;Bestilling-ÆØÅ".as_bytes(), &config).unwrap();
        assert_eq!(ok.reference.as_deref(), Some("Bestilling-ÆØÅ"));
    }

    #[test]
    fn formats_have_their_config_names() {
        for f in Format::ALL {
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(json, format!("\"{}\"", f.name()));
            assert_eq!(serde_json::from_str::<Format>(&json).unwrap(), f);
        }
        assert_eq!(Format::Ean13Price.to_string(), "ean13");
    }
}
