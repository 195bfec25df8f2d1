//! In-store EAN-13 price codes: the labels a shop's scale or price printer makes, prefix 20-29
//! ("restricted circulation numbers": each GS1 member organisation or shop decides their layout).
//!
//! A price code is 13 digits: the 2-digit prefix, the article number, optionally a price check
//! digit, the price, and the EAN-13 check digit. Which prefixes carry a price, how many digits
//! and decimals the price has and whether a price check digit precedes it is a rule table,
//! `input.ean13_rules`:
//!
//! ```toml
//! [[input.ean13_rules]]
//! kind = "price"       # or "weight": refused, a weight is not an amount payable
//! prefix = 20
//! price_digits = 5     # 4 or 5, the digits just before the EAN-13 check digit
//! decimals = 2
//! price_check = false  # true: the digit before the price is GS1's 4/5-digit price check digit
//! ```
//!
//! The default is the convention commonly used in Norway and Sweden: 20/21/22 = price with
//! 2/1/0 decimals in the last 5 digits before the check digit, no price check digit; 23/24/25
//! = weight, refused as "weight, not a price"; 26-29 have no rule and are refused.
//! **GS1 Norway does not confirm this convention**: in-store layouts are the retailer's choice,
//! and at least one open-source GS1 library reads the Swedish/Norwegian prefixes with a
//! 4-digit price field instead. Check a real label from the store (and its receipt) before
//! enabling `ean13`, and write the store's own table if it differs.
//!
//! Both check digits are verified: the EAN-13 check digit always, the price check digit where
//! the rule has one (GS1 General Specifications, price/weight check digit for 4- and 5-digit
//! fields). EAN-13 numbers outside 20-29 are products (GTINs) and are refused.

use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};

use super::gs1_dictionary::gs1_check_digit;
use super::{excerpt, implied_decimals_to_minor, CodeError};

/// How one in-store prefix is read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Ean13Rule {
    /// The prefix carries a price.
    Price {
        /// 20 to 29.
        prefix: u8,
        /// 4 or 5: how many digits before the EAN-13 check digit are the price.
        #[serde(default = "default_price_digits")]
        price_digits: u8,
        /// Implied decimals of the price (2: `01995` is 19.95).
        decimals: u8,
        /// Whether the digit before the price is GS1's price check digit.
        #[serde(default)]
        price_check: bool,
    },
    /// The prefix carries a weight: refused, a weight needs a unit price the kiosk does not have.
    Weight {
        /// 20 to 29.
        prefix: u8,
    },
}

fn default_price_digits() -> u8 {
    5
}

impl Ean13Rule {
    /// The prefix the rule is for.
    pub fn prefix(&self) -> u8 {
        match self {
            Ean13Rule::Price { prefix, .. } | Ean13Rule::Weight { prefix } => *prefix,
        }
    }
}

/// Why an EAN-13 rule table cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Ean13RuleError {
    /// A prefix outside the in-store range.
    #[error("input.ean13_rules: prefix {0} is not an in-store prefix (20 to 29)")]
    Prefix(u8),
    /// Two rules for one prefix.
    #[error("input.ean13_rules: prefix {0} has two rules; keep one")]
    Duplicate(u8),
    /// A price width other than 4 or 5.
    #[error("input.ean13_rules: prefix {prefix} has price_digits = {digits}; GS1 price fields are 4 or 5 digits")]
    PriceDigits {
        /// The prefix.
        prefix: u8,
        /// The width given.
        digits: u8,
    },
    /// More decimals than a price has digits.
    #[error("input.ean13_rules: prefix {prefix} has decimals = {decimals}, more than its {digits} price digits")]
    Decimals {
        /// The prefix.
        prefix: u8,
        /// The decimals given.
        decimals: u8,
        /// The price width.
        digits: u8,
    },
}

/// The validated rule table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Ean13Rule>", into = "Vec<Ean13Rule>")]
pub struct Ean13Rules {
    rules: Vec<Ean13Rule>,
}

impl Ean13Rules {
    /// Validates a rule table.
    pub fn new(rules: Vec<Ean13Rule>) -> Result<Ean13Rules, Ean13RuleError> {
        for (i, rule) in rules.iter().enumerate() {
            let prefix = rule.prefix();
            if !(20..=29).contains(&prefix) {
                return Err(Ean13RuleError::Prefix(prefix));
            }
            if rules[..i].iter().any(|r| r.prefix() == prefix) {
                return Err(Ean13RuleError::Duplicate(prefix));
            }
            if let Ean13Rule::Price {
                price_digits,
                decimals,
                ..
            } = *rule
            {
                if !(4..=5).contains(&price_digits) {
                    return Err(Ean13RuleError::PriceDigits {
                        prefix,
                        digits: price_digits,
                    });
                }
                if decimals > price_digits {
                    return Err(Ean13RuleError::Decimals {
                        prefix,
                        decimals,
                        digits: price_digits,
                    });
                }
            }
        }
        Ok(Ean13Rules { rules })
    }

    /// The Norwegian/Swedish convention (not confirmed by GS1 Norway, see the module docs).
    pub fn nordic() -> Ean13Rules {
        let price = |prefix, decimals| Ean13Rule::Price {
            prefix,
            price_digits: 5,
            decimals,
            price_check: false,
        };
        Ean13Rules {
            rules: vec![
                price(20, 2),
                price(21, 1),
                price(22, 0),
                Ean13Rule::Weight { prefix: 23 },
                Ean13Rule::Weight { prefix: 24 },
                Ean13Rule::Weight { prefix: 25 },
            ],
        }
    }

    /// The rules, in the order given.
    pub fn rules(&self) -> &[Ean13Rule] {
        &self.rules
    }

    fn rule(&self, prefix: u8) -> Option<&Ean13Rule> {
        self.rules.iter().find(|r| r.prefix() == prefix)
    }
}

impl Default for Ean13Rules {
    fn default() -> Self {
        Ean13Rules::nordic()
    }
}

impl TryFrom<Vec<Ean13Rule>> for Ean13Rules {
    type Error = Ean13RuleError;
    fn try_from(rules: Vec<Ean13Rule>) -> Result<Self, Self::Error> {
        Ean13Rules::new(rules)
    }
}

impl From<Ean13Rules> for Vec<Ean13Rule> {
    fn from(rules: Ean13Rules) -> Self {
        rules.rules
    }
}

/// A price read from an in-store EAN-13.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InStorePrice {
    /// The price in minor units.
    pub amount: Money,
    /// Prefix and article number (the digits before the price check digit or price).
    pub article: String,
    /// The in-store prefix.
    pub prefix: u8,
}

/// Reads an in-store EAN-13 price code.
pub fn parse(
    text: &str,
    rules: &Ean13Rules,
    currency: Currency,
) -> Result<InStorePrice, CodeError> {
    let digits = text.as_bytes();
    if digits.len() != 13 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(CodeError::NotText {
            text: excerpt(text),
            problem: "an EAN-13 is exactly 13 digits",
        });
    }
    let expected = gs1_check_digit(&digits[..12]);
    let found = digits[12] - b'0';
    if found != expected {
        return Err(CodeError::Ean13CheckDigit {
            digits: text.to_string(),
            found,
            expected,
        });
    }
    let prefix = (digits[0] - b'0') * 10 + (digits[1] - b'0');
    if !(20..=29).contains(&prefix) {
        return Err(CodeError::Ean13Product {
            digits: text.to_string(),
        });
    }
    let (price_digits, decimals, price_check) = match rules.rule(prefix) {
        None => {
            return Err(CodeError::Ean13NoRule {
                digits: text.to_string(),
                prefix,
            })
        }
        Some(Ean13Rule::Weight { .. }) => {
            return Err(CodeError::Ean13Weight {
                digits: text.to_string(),
                prefix,
            })
        }
        Some(&Ean13Rule::Price {
            price_digits,
            decimals,
            price_check,
            ..
        }) => (usize::from(price_digits), decimals, price_check),
    };
    let price_start = 12 - price_digits;
    let price = &digits[price_start..12];
    let article_end = if price_check {
        let found = digits[price_start - 1] - b'0';
        let expected = price_check_digit(price).unwrap_or(u8::MAX);
        if found != expected {
            return Err(CodeError::PriceCheckDigit {
                digits: text.to_string(),
                found,
                expected,
                price_len: price_digits as u8,
            });
        }
        price_start - 1
    } else {
        price_start
    };
    let amount = implied_decimals_to_minor(&text[price_start..12], decimals, currency)?;
    Ok(InStorePrice {
        amount,
        article: text[..article_end].to_string(),
        prefix,
    })
}

/// "2-" weighting: 2×d, units digit minus tens digit, mod 10.
const TWO_MINUS: [u8; 10] = [0, 2, 4, 6, 8, 9, 1, 3, 5, 7];
/// "3" weighting: units digit of 3×d.
const THREE: [u8; 10] = [0, 3, 6, 9, 2, 5, 8, 1, 4, 7];
/// "5+" weighting: 5×d, units digit plus tens digit, mod 10.
const FIVE_PLUS: [u8; 10] = [0, 5, 1, 6, 2, 7, 3, 8, 4, 9];
/// "5-" weighting: 5×d, units digit minus tens digit, mod 10.
const FIVE_MINUS: [u8; 10] = [0, 5, 9, 4, 8, 3, 7, 2, 6, 1];

/// GS1's price/weight check digit for a 4- or 5-digit field (ASCII digits); `None` for any
/// other input.
///
/// Four digits: weights 2-, 2-, 3, 5-; the sum times 3, units digit. Five digits: weights 5+,
/// 2-, 5-, 5+, 2-; the check digit is the one whose 5- product equals 10 minus the sum's
/// units digit. GS1's worked examples: 2875 → 9, 14685 → 6.
pub fn price_check_digit(price: &[u8]) -> Option<u8> {
    if !price.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let d = |i: usize| usize::from(price[i] - b'0');
    match price.len() {
        4 => {
            let sum = u32::from(TWO_MINUS[d(0)])
                + u32::from(TWO_MINUS[d(1)])
                + u32::from(THREE[d(2)])
                + u32::from(FIVE_MINUS[d(3)]);
            Some((sum * 3 % 10) as u8)
        }
        5 => {
            let sum = u32::from(FIVE_PLUS[d(0)])
                + u32::from(TWO_MINUS[d(1)])
                + u32::from(FIVE_MINUS[d(2)])
                + u32::from(FIVE_PLUS[d(3)])
                + u32::from(TWO_MINUS[d(4)]);
            let target = ((10 - sum % 10) % 10) as u8;
            FIVE_MINUS
                .iter()
                .position(|&p| p == target)
                .map(|c| c as u8)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_check_digits_match_gs1_examples() {
        assert_eq!(price_check_digit(b"2875"), Some(9));
        assert_eq!(price_check_digit(b"14685"), Some(6));
        assert_eq!(price_check_digit(b"123"), None);
        assert_eq!(price_check_digit(b"12a4"), None);
        // Every 5- product is distinct, so every 5-digit field has exactly one check digit.
        let mut seen = FIVE_MINUS;
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn rule_tables_are_validated() {
        let price = |prefix, price_digits, decimals| Ean13Rule::Price {
            prefix,
            price_digits,
            decimals,
            price_check: false,
        };
        assert_eq!(
            Ean13Rules::new(vec![price(19, 5, 2)]),
            Err(Ean13RuleError::Prefix(19))
        );
        assert_eq!(
            Ean13Rules::new(vec![price(20, 5, 2), Ean13Rule::Weight { prefix: 20 }]),
            Err(Ean13RuleError::Duplicate(20))
        );
        assert!(matches!(
            Ean13Rules::new(vec![price(20, 6, 2)]),
            Err(Ean13RuleError::PriceDigits { .. })
        ));
        assert!(matches!(
            Ean13Rules::new(vec![price(20, 4, 5)]),
            Err(Ean13RuleError::Decimals { .. })
        ));
        assert_eq!(
            Ean13Rules::new(Ean13Rules::nordic().rules().to_vec()),
            Ok(Ean13Rules::nordic())
        );
    }
}
