//! The plain development format: `AMOUNT[;REFERENCE]`, amount in major units.
//!
//! `399.00`, `399,5` or `399;ORDER-17`: what a technician types on stdin or prints as a plain
//! Code 128 to test a kiosk. The amount follows [`Money::parse_major`] (never rounded, never
//! guessed); the reference, when present, is 1 to 64 printable characters. Production kiosks
//! normally leave `plain` out of `input.formats`.

use crate::money::{AmountError, Currency, Money};

use super::{excerpt, CodeError};

/// Longest reference accepted.
pub const MAX_REFERENCE_LEN: usize = 64;

/// A plain code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlainCart {
    /// The amount.
    pub amount: Money,
    /// The reference after `;`, if any.
    pub reference: Option<String>,
}

/// Parses `AMOUNT[;REFERENCE]`.
pub fn parse(text: &str, currency: Currency) -> Result<PlainCart, CodeError> {
    let (amount, reference) = match text.split_once(';') {
        Some((a, r)) => (a, Some(r)),
        None => (text, None),
    };
    let amount = Money::parse_major(amount, currency).map_err(|e| {
        CodeError::PlainAmount(match e {
            AmountError::Malformed(t) => AmountError::Malformed(excerpt(&t)),
            AmountError::TooPrecise { text, exponent } => AmountError::TooPrecise {
                text: excerpt(&text),
                exponent,
            },
            AmountError::Overflow(t) => AmountError::Overflow(excerpt(&t)),
        })
    })?;
    let reference = match reference {
        None => None,
        Some(r) => {
            let problem = if r.is_empty() {
                Some("empty after ';' (leave the ';' out for no reference)")
            } else if r.chars().count() > MAX_REFERENCE_LEN {
                Some("longer than 64 characters")
            } else if r.chars().any(char::is_control) {
                Some("contains control characters")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(CodeError::PlainReference {
                    reference: excerpt(r),
                    problem,
                });
            }
            Some(r.to_string())
        }
    };
    Ok(PlainCart { amount, reference })
}
