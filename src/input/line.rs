//! One scanned line, `AMOUNT[;REFERENCE]`, judged on its own.
//!
//! This is the plain cart code a kiosk owner can print with any barcode generator: the total in
//! major units with the currency's decimals (`399.00`), optionally followed by `;` and the
//! merchant's own reference (a KID, an order number): `399.00;KID12345`.
//!
//! The code is judged here and nowhere else, and only the code: whether the kiosk may charge the
//! amount now (`max_amount`, a payment already running) is the payment flow's decision. A code
//! that does not say exactly one positive amount is refused, never guessed at: `1.001`, `1e3`,
//! `-1.00` and `0.00` are all errors, because charging a customer a rounded or reinterpreted
//! total is worse than asking them to call staff.

use crate::cart::{Cart, CartSource};
use crate::money::{AmountError, Currency, Money};

/// Longest reference kept: Dintero's `merchant_reference_2` is short, and a longer "reference"
/// on a kiosk code is far more likely a misprint than a real order number.
pub const MAX_REFERENCE_LEN: usize = 64;

/// Longest amount text looked at: `u64::MAX` minor units is 20 digits, so anything longer is
/// noise, and refusing it early keeps error messages short.
const MAX_AMOUNT_LEN: usize = 24;

/// How much of a bad code an error message quotes: enough to recognise it in the log, never a
/// screenful of line noise.
const EXCERPT_LEN: usize = 40;

/// Why a scanned code is not a cart. Messages quote the offending text escaped and shortened,
/// so they are safe for the log and the console whatever came down the wire.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// The line holds nothing but whitespace.
    #[error("empty code: expected AMOUNT[;REFERENCE], e.g. 399.00;KID12345")]
    Empty,
    /// Something before `;` was expected to be the amount and there is nothing there.
    #[error(
        "code {shown} has no amount before ';': expected AMOUNT[;REFERENCE], e.g. 399.00;KID12345"
    )]
    MissingAmount {
        /// The whole code, escaped and shortened.
        shown: String,
    },
    /// The amount text is longer than any chargeable amount.
    #[error("amount {shown} is {len} characters long; no amount is longer than {MAX_AMOUNT_LEN}")]
    AmountTooLong {
        /// The amount text, escaped and shortened.
        shown: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The amount is not exactly one amount in the kiosk's currency.
    #[error("bad amount: {0}")]
    Amount(#[from] AmountError),
    /// The amount is zero: nothing to charge, and a terminal would refuse it anyway.
    #[error("amount {shown} is zero; the smallest cart is {smallest}")]
    Zero {
        /// The amount as written.
        shown: String,
        /// One minor unit in the kiosk's currency, e.g. `0.01`.
        smallest: String,
    },
    /// The reference is longer than [`MAX_REFERENCE_LEN`].
    #[error("reference {shown} is {len} characters long; at most {MAX_REFERENCE_LEN} are allowed")]
    ReferenceTooLong {
        /// The reference, escaped and shortened.
        shown: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The reference holds a character outside the allowed set.
    #[error(
        "reference {shown} has {bad} at position {position}; only letters A-Z a-z, digits and - _ . / : are allowed"
    )]
    ReferenceChar {
        /// The reference, escaped and shortened.
        shown: String,
        /// The first offending character, escaped.
        bad: String,
        /// Its 1-based character position in the reference.
        position: usize,
    },
}

/// Parses one line `AMOUNT[;REFERENCE]` into a cart.
///
/// Both parts are trimmed of surrounding whitespace; an empty reference (`399.00;`) means none.
/// The amount goes through [`Money::parse_major`], so it is integer arithmetic and refuses signs,
/// exponents, grouping and more decimals than `currency` has.
pub fn parse_line(line: &str, currency: Currency, source: CartSource) -> Result<Cart, CodeError> {
    let line = line.trim();
    if line.is_empty() {
        return Err(CodeError::Empty);
    }
    let (amount_text, reference) = match line.split_once(';') {
        Some((a, r)) => (a.trim(), Some(r.trim())),
        None => (line, None),
    };
    if amount_text.is_empty() {
        return Err(CodeError::MissingAmount {
            shown: excerpt(line.as_bytes()),
        });
    }
    if amount_text.len() > MAX_AMOUNT_LEN {
        return Err(CodeError::AmountTooLong {
            shown: excerpt(amount_text.as_bytes()),
            len: amount_text.len(),
        });
    }
    let amount = Money::parse_major(amount_text, currency)?;
    if amount.minor == 0 {
        return Err(CodeError::Zero {
            shown: amount_text.to_string(),
            smallest: Money::new(1, currency).plain(),
        });
    }
    let reference = match reference {
        Some(r) if !r.is_empty() => Some(check_reference(r)?),
        _ => None,
    };
    Ok(Cart {
        amount,
        reference,
        source,
    })
}

fn check_reference(reference: &str) -> Result<String, CodeError> {
    if let Some((i, c)) = reference
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || "-_./:".contains(c)))
    {
        return Err(CodeError::ReferenceChar {
            shown: excerpt(reference.as_bytes()),
            bad: excerpt(c.to_string().as_bytes()),
            position: i + 1,
        });
    }
    // Checked after the characters so that the length is in ASCII characters.
    if reference.len() > MAX_REFERENCE_LEN {
        return Err(CodeError::ReferenceTooLong {
            shown: excerpt(reference.as_bytes()),
            len: reference.len(),
        });
    }
    Ok(reference.to_string())
}

/// Renders bytes from the wire for a log line: printable ASCII as is, everything else as `\xNN`,
/// quoted, and cut after a few dozen characters with the total length noted.
///
/// Whatever a scanner or a noisy line sends, the result is one short line of plain ASCII, so it
/// cannot corrupt a terminal, a journal or the display.
pub fn excerpt(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(EXCERPT_LEN + 16);
    out.push('"');
    for &b in bytes.iter().take(EXCERPT_LEN) {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    if bytes.len() > EXCERPT_LEN {
        out.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_escapes_and_limits() {
        assert_eq!(excerpt(b"399.00;A"), r#""399.00;A""#);
        assert_eq!(excerpt(b"a\x00\xff\"\\"), r#""a\x00\xff\"\\""#);
        assert_eq!(excerpt("ø".as_bytes()), r#""\xc3\xb8""#);
        let long = excerpt(&[b'x'; 100]);
        assert!(long.ends_with("... (100 bytes)"), "{long}");
        assert_eq!(long.matches('x').count(), EXCERPT_LEN);
    }
}
