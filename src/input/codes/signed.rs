//! kioskpay's own signed cart codes, for merchants whose POS prints the code the customer
//! brings to the kiosk.
//!
//! ```text
//! KP1.39900.NOK.ORDER-4711.1767225600.<43 characters base64url HMAC-SHA256>
//!  │   │     │   │          │
//!  │   │     │   │          └ expiry, Unix seconds: refused from this second on
//!  │   │     │   └ cart reference, 1-32 of A-Z a-z 0-9 - _ (sent as merchant_reference_2)
//!  │   │     └ ISO 4217 code, must be the kiosk's currency
//!  │   └ amount in minor units (øre), digits, no leading zeros
//!  └ format version
//! ```
//!
//! The signature is HMAC-SHA256 over everything before the last `.`, keyed with a secret shared
//! with the POS (`input.signing_key_file`, at least [`MIN_KEY_LEN`] bytes), base64url without
//! padding. It is verified in constant time before any field is believed, so a code whose
//! amount was edited is refused as forged. A QR code holds the ~90 characters easily; so does a
//! Code 128 at a receipt printer's width if the reference is short.
//!
//! A valid signature does not make a code payable twice: the payment flow, which owns the
//! journal, refuses a signed code whose cart reference an approved payment already carries
//! (see [`crate::payment::flow`]). The POS must give every printed code a new cart reference. [`sign_cart`] makes
//! codes for tests and for a POS integration written in Rust.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::money::{Currency, Money};
use crate::secret::Secret;

use super::{excerpt, CodeError};

/// Every signed code starts with this.
pub const PREFIX: &str = "KP1.";
/// Shortest signing key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;
/// Longest cart reference.
pub const MAX_REFERENCE_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// A signed cart code that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCart {
    /// The amount.
    pub amount: Money,
    /// The POS's cart reference.
    pub reference: String,
    /// When the code stops being payable (Unix seconds).
    pub expires_unix: u64,
}

/// Why a code cannot be signed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The reference is empty, too long or has characters outside `A-Z a-z 0-9 - _`.
    #[error("cart reference {0:?} must be 1 to 32 of A-Z a-z 0-9 - _")]
    Reference(String),
    /// The key is too short.
    #[error("the signing key is {len} bytes; use at least {min} random bytes")]
    WeakKey {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
}

fn reference_ok(reference: &str) -> bool {
    (1..=MAX_REFERENCE_LEN).contains(&reference.len())
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn keyed(key: &Secret) -> Option<HmacSha256> {
    let bytes = key.expose().as_bytes();
    if bytes.len() < MIN_KEY_LEN {
        return None;
    }
    HmacSha256::new_from_slice(bytes).ok()
}

/// Makes a signed cart code.
pub fn sign_cart(
    amount: Money,
    reference: &str,
    expires_unix: u64,
    key: &Secret,
) -> Result<String, SignError> {
    if !reference_ok(reference) {
        return Err(SignError::Reference(reference.to_string()));
    }
    let mut mac = keyed(key).ok_or(SignError::WeakKey {
        len: key.expose().len(),
        min: MIN_KEY_LEN,
    })?;
    let body = format!(
        "{PREFIX}{}.{}.{reference}.{expires_unix}",
        amount.minor,
        amount.currency.code()
    );
    mac.update(body.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{body}.{tag}"))
}

fn decimal(text: &str, max_len: usize) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.len() <= max_len
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// Verifies a signed cart code and checks its currency and expiry.
pub fn verify(
    text: &str,
    key: &Secret,
    currency: Currency,
    now_unix: u64,
) -> Result<SignedCart, CodeError> {
    let malformed = |problem| CodeError::SignedMalformed {
        text: excerpt(text),
        problem,
    };
    let mut mac = keyed(key).ok_or(CodeError::WeakSigningKey {
        len: key.expose().len(),
        min: MIN_KEY_LEN,
    })?;
    if !text.starts_with(PREFIX) {
        return Err(malformed("does not start with KP1."));
    }
    let (body, tag) = text
        .rsplit_once('.')
        .ok_or_else(|| malformed("no signature"))?;
    let fields: Vec<&str> = body.split('.').collect();
    let [_, amount, code, reference, expiry] = fields[..] else {
        return Err(malformed(
            "expected KP1.<amount>.<currency>.<reference>.<expiry>.<signature>",
        ));
    };
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .ok()
        .filter(|t| t.len() == 32)
        .ok_or_else(|| malformed("signature is not 43 characters of base64url"))?;
    mac.update(body.as_bytes());
    mac.verify_slice(&tag).map_err(|_| CodeError::Forged {
        text: excerpt(text),
    })?;

    let minor = decimal(amount, 18).ok_or_else(|| malformed("amount is not minor units"))?;
    match Currency::from_code(code) {
        Some(c) if c == currency && code == c.code() => {}
        other => {
            return Err(CodeError::CurrencyNotAccepted {
                alpha: excerpt(code),
                numeric: other.map_or(0, Currency::numeric),
                kiosk: currency,
            })
        }
    }
    if !reference_ok(reference) {
        return Err(malformed("cart reference is not 1-32 of A-Z a-z 0-9 - _"));
    }
    let expires_unix =
        decimal(expiry, 20).ok_or_else(|| malformed("expiry is not Unix seconds"))?;
    if now_unix >= expires_unix {
        return Err(CodeError::Expired {
            reference: reference.to_string(),
            expires_unix,
            now_unix,
        });
    }
    Ok(SignedCart {
        amount: Money::new(minor, currency),
        reference: reference.to_string(),
        expires_unix,
    })
}
