//! Money as integers in minor units, end to end.
//!
//! Card payments are settled in minor units (øre for NOK), Dintero's API speaks minor units, and
//! the journal records minor units. Floats never touch an amount: parsing a typed or scanned
//! amount, converting implied decimals and formatting for the customer are all integer
//! arithmetic here, so that `399.00` is always exactly 39900 and never 39899.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The language the customer reads.
///
/// Norwegian Bokmål is the default because the first kiosks stand in Norway; English is for
/// tourists and for technicians reading demo output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Norwegian Bokmål: `kr 1 399,00`.
    #[default]
    Nb,
    /// English: `NOK 1,399.00`.
    En,
}

impl Language {
    /// The config and CLI spelling (`nb`, `en`).
    pub fn code(self) -> &'static str {
        match self {
            Language::Nb => "nb",
            Language::En => "en",
        }
    }
}

/// An ISO 4217 currency that kioskpay can charge in.
///
/// The table is short on purpose: only currencies a Nordic kiosk meets, each with its numeric
/// code (GS1 AI 391n carries it) and its number of minor-unit digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    numeric: u16,
    exponent: u8,
}

const CURRENCIES: &[Currency] = &[
    Currency {
        code: "NOK",
        numeric: 578,
        exponent: 2,
    },
    Currency {
        code: "SEK",
        numeric: 752,
        exponent: 2,
    },
    Currency {
        code: "DKK",
        numeric: 208,
        exponent: 2,
    },
    Currency {
        code: "EUR",
        numeric: 978,
        exponent: 2,
    },
    Currency {
        code: "USD",
        numeric: 840,
        exponent: 2,
    },
    Currency {
        code: "GBP",
        numeric: 826,
        exponent: 2,
    },
    Currency {
        code: "ISK",
        numeric: 352,
        exponent: 0,
    },
];

impl Currency {
    /// Norwegian kroner, the default.
    pub const NOK: Currency = Currency {
        code: "NOK",
        numeric: 578,
        exponent: 2,
    };

    /// Looks a currency up by its alphabetic code (`NOK`), case-insensitively.
    pub fn from_code(code: &str) -> Option<Currency> {
        CURRENCIES
            .iter()
            .copied()
            .find(|c| c.code.eq_ignore_ascii_case(code))
    }

    /// Looks a currency up by its ISO 4217 numeric code (578 for NOK).
    pub fn from_numeric(numeric: u16) -> Option<Currency> {
        CURRENCIES.iter().copied().find(|c| c.numeric == numeric)
    }

    /// The alphabetic code, as Dintero wants it in `order.currency`.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// The ISO 4217 numeric code.
    pub fn numeric(self) -> u16 {
        self.numeric
    }

    /// How many minor-unit digits the currency has (2 for NOK, 0 for ISK).
    pub fn exponent(self) -> u8 {
        self.exponent
    }

    /// Every currency kioskpay knows, for error messages that list the choices.
    pub fn known_codes() -> Vec<&'static str> {
        CURRENCIES.iter().map(|c| c.code).collect()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::from_code(&code).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown currency {code:?}, expected one of {}",
                Currency::known_codes().join(", ")
            ))
        })
    }
}

/// An amount in minor units of a currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units (øre for NOK). Never negative: refunds say so by the call they are in.
    pub minor: u64,
    /// The currency the amount is in.
    pub currency: Currency,
}

/// Why a written amount is not a valid amount.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Nothing, or something other than digits and one decimal separator.
    #[error("{0:?} is not an amount: write digits with at most one '.' or ',' (e.g. 399.00)")]
    Malformed(String),
    /// More decimals than the currency has minor units: refused, never rounded.
    #[error("{text:?} has more than {exponent} decimals; amounts smaller than one minor unit are refused")]
    TooPrecise {
        /// The text as given.
        text: String,
        /// The currency's number of minor-unit digits.
        exponent: u8,
    },
    /// So many digits that the amount does not fit in 64 bits.
    #[error("{0:?} is too large to be an amount")]
    Overflow(String),
}

impl Money {
    /// An amount of `minor` minor units.
    pub fn new(minor: u64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    /// Parses an amount written in major units, `399.00` or `399,00` or `399`.
    ///
    /// A leading sign, grouping characters, exponents and more decimals than the currency has are
    /// all refused: a scanned code that does not say exactly one amount is not guessed at.
    pub fn parse_major(text: &str, currency: Currency) -> Result<Money, AmountError> {
        let malformed = || AmountError::Malformed(text.to_string());
        let (whole, frac) = match text.find(['.', ',']) {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) {
            return Err(malformed());
        }
        let frac = frac.unwrap_or("");
        if !all_digits(frac) || (text.len() > whole.len() && frac.is_empty()) {
            return Err(malformed());
        }
        let exponent = currency.exponent();
        if frac.len() > usize::from(exponent) {
            return Err(AmountError::TooPrecise {
                text: text.to_string(),
                exponent,
            });
        }
        let overflow = || AmountError::Overflow(text.to_string());
        let mut minor: u64 = 0;
        for b in whole.bytes().chain(frac.bytes()) {
            minor = minor
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(b - b'0')))
                .ok_or_else(overflow)?;
        }
        let pad = u32::from(exponent) - frac.len() as u32;
        minor = minor.checked_mul(10u64.pow(pad)).ok_or_else(overflow)?;
        Ok(Money { minor, currency })
    }

    /// Formats the amount as a customer reads it: `kr 1 399,00` in nb, `NOK 1,399.00` in en.
    ///
    /// The nb group separator is a no-break space so that a panel's line wrapping never splits
    /// an amount.
    pub fn display(&self, lang: Language) -> String {
        let exp = u32::from(self.currency.exponent());
        let unit = 10u64.pow(exp);
        let whole = self.minor / unit;
        let frac = self.minor % unit;
        let (group, decimal) = match lang {
            Language::Nb => ('\u{a0}', ','),
            Language::En => (',', '.'),
        };
        let digits = whole.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(group);
            }
            grouped.push(c);
        }
        let number = if exp == 0 {
            grouped
        } else {
            format!("{grouped}{decimal}{frac:0width$}", width = exp as usize)
        };
        let symbol = match (lang, self.currency.code()) {
            (Language::Nb, "NOK") | (Language::Nb, "SEK") | (Language::Nb, "DKK") => "kr",
            (_, code) => code,
        };
        format!("{symbol}\u{a0}{number}")
    }

    /// Formats the amount in major units with a dot, for logs and machine-readable tables:
    /// `399.00`.
    pub fn plain(&self) -> String {
        let exp = u32::from(self.currency.exponent());
        if exp == 0 {
            return self.minor.to_string();
        }
        let unit = 10u64.pow(exp);
        format!(
            "{}.{:0width$}",
            self.minor / unit,
            self.minor % unit,
            width = exp as usize
        )
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.currency, self.plain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nok(minor: u64) -> Money {
        Money::new(minor, Currency::NOK)
    }

    #[test]
    fn parses_major_units_exactly() {
        assert_eq!(Money::parse_major("399.00", Currency::NOK), Ok(nok(39900)));
        assert_eq!(Money::parse_major("399,5", Currency::NOK), Ok(nok(39950)));
        assert_eq!(Money::parse_major("399", Currency::NOK), Ok(nok(39900)));
        assert_eq!(Money::parse_major("0.01", Currency::NOK), Ok(nok(1)));
        assert_eq!(Money::parse_major("0", Currency::NOK), Ok(nok(0)));
        // 0.1 + 0.2 style float traps do not exist here.
        assert_eq!(
            Money::parse_major("1234567.89", Currency::NOK),
            Ok(nok(123456789))
        );
    }

    #[test]
    fn refuses_what_is_not_exactly_one_amount() {
        for bad in [
            "", ".", "1.", ".5", "-1.00", "+1", "1e3", "1.2.3", "1,2.3", "12a", " 1", "1 000",
        ] {
            assert!(
                matches!(
                    Money::parse_major(bad, Currency::NOK),
                    Err(AmountError::Malformed(_))
                ),
                "{bad:?} should be malformed"
            );
        }
        assert!(matches!(
            Money::parse_major("1.001", Currency::NOK),
            Err(AmountError::TooPrecise { exponent: 2, .. })
        ));
        assert!(matches!(
            Money::parse_major("99999999999999999999", Currency::NOK),
            Err(AmountError::Overflow(_))
        ));
        let isk = Currency::from_code("ISK").unwrap();
        assert!(matches!(
            Money::parse_major("5.0", isk),
            Err(AmountError::TooPrecise { .. })
        ));
        assert_eq!(Money::parse_major("5", isk), Ok(Money::new(5, isk)));
    }

    #[test]
    fn formats_per_language() {
        assert_eq!(nok(39900).display(Language::Nb), "kr\u{a0}399,00");
        assert_eq!(nok(39900).display(Language::En), "NOK\u{a0}399.00");
        assert_eq!(nok(139905).display(Language::Nb), "kr\u{a0}1\u{a0}399,05");
        assert_eq!(
            nok(123456789).display(Language::En),
            "NOK\u{a0}1,234,567.89"
        );
        assert_eq!(nok(5).display(Language::En), "NOK\u{a0}0.05");
        assert_eq!(nok(39900).plain(), "399.00");
        let eur = Currency::from_code("eur").unwrap();
        assert_eq!(Money::new(100, eur).display(Language::Nb), "EUR\u{a0}1,00");
    }

    #[test]
    fn currency_lookups() {
        assert_eq!(Currency::from_numeric(578), Some(Currency::NOK));
        assert_eq!(Currency::from_numeric(40), None);
        assert_eq!(Currency::from_code("nok"), Some(Currency::NOK));
        let json = serde_json::to_string(&nok(100)).unwrap();
        assert_eq!(json, r#"{"minor":100,"currency":"NOK"}"#);
        assert!(serde_json::from_str::<Currency>("\"XYZ\"").is_err());
    }
}
