//! `Dintero-Signature`: proving that a callback came from Dintero.
//!
//! When the account has a signature secret (`POST /v1/admin/signature`), Dintero signs every
//! callback it sends with the header
//!
//! ```text
//! Dintero-Signature: t=<unix seconds>,v0-hmac-sha256=<lower-case hex>
//! ```
//!
//! where the MAC is HMAC-SHA256, keyed with the secret, over
//!
//! ```text
//! <t>\n<account_id>\n<METHOD>\n<hostname>\n<path>\n<query, parameters sorted by name>
//! ```
//!
//! This module follows Dintero's published Node example exactly, because that is what the
//! published test vector was made with: the host is the URL's *hostname* (no port), the query is
//! re-serialized as `application/x-www-form-urlencoded` (spaces as `+`, not `%20`) after a stable
//! sort by parameter name, and an empty query still ends the payload with a newline.
//!
//! Only the URL is signed, never a body: a valid signature says "Dintero called this URL at
//! time `t`", not "this transaction is paid". Always re-read the transaction before acting on a
//! callback. Dintero recommends rejecting timestamps more than five minutes away from now to
//! blunt replays; [`verify`] takes that tolerance as a parameter.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Why a `Dintero-Signature` header was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<unix>,v0-hmac-sha256=<64 hex digits>`.
    #[error(
        "malformed Dintero-Signature header ({0}); expected t=<unix seconds>,v0-hmac-sha256=<hex>"
    )]
    Malformed(&'static str),
    /// The timestamp is further from now than the tolerance: a replay, or a clock that is off.
    #[error("Dintero-Signature timestamp is {age_s} s away from this kiosk's clock (tolerance {tolerance_s} s); check NTP on the kiosk if callbacks keep failing")]
    Stale {
        /// Distance between the header's `t` and now, in seconds.
        age_s: u64,
        /// The allowed distance.
        tolerance_s: u64,
    },
    /// No signature in the header matches: wrong secret, wrong account id, or the URL was
    /// changed on the way (a proxy rewriting host or query).
    #[error("Dintero-Signature does not match; check the signature secret, dintero.account_id and that no proxy rewrites the callback URL")]
    Mismatch,
}

/// The exact text that is signed, for diagnosing a mismatch (it contains no secret).
pub fn signed_payload(timestamp: u64, account_id: &str, method: &str, url: &str) -> String {
    let parts = UrlParts::parse(url);
    format!(
        "{timestamp}\n{account_id}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        parts.hostname,
        parts.path,
        sorted_query(parts.query)
    )
}

/// The `Dintero-Signature` header value for a request to `url` at `timestamp`.
pub fn sign(secret: &Secret, timestamp: u64, account_id: &str, method: &str, url: &str) -> String {
    let mac = mac_over(secret, &signed_payload(timestamp, account_id, method, url));
    format!(
        "t={timestamp},v0-hmac-sha256={}",
        hex(&mac.finalize().into_bytes())
    )
}

/// Checks a `Dintero-Signature` header against the request it came with.
///
/// `now_unix` is the kiosk's clock; a timestamp more than `tolerance` away from it (either
/// direction) is refused before the MAC is even computed. Several `v0-hmac-sha256` entries
/// (Dintero rotating a secret) are accepted if any one matches. The comparison is constant
/// time, so a forger learns nothing from how long a refusal takes. Answers the verified
/// timestamp, which names the callback for a receiver that refuses replays.
pub fn verify(
    secret: &Secret,
    header_value: &str,
    account_id: &str,
    method: &str,
    url: &str,
    now_unix: u64,
    tolerance: Duration,
) -> Result<u64, SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header_value.split(',').map(str::trim) {
        if let Some(t) = part.strip_prefix("t=") {
            let t = t
                .parse::<u64>()
                .map_err(|_| SignatureError::Malformed("t is not a unix timestamp"))?;
            timestamp = Some(t);
        } else if let Some(sig) = part.strip_prefix("v0-hmac-sha256=") {
            candidates
                .push(unhex(sig).ok_or(SignatureError::Malformed("signature is not hexadecimal"))?);
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t="))?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed("no v0-hmac-sha256="));
    }
    let age_s = now_unix.abs_diff(timestamp);
    if age_s > tolerance.as_secs() {
        return Err(SignatureError::Stale {
            age_s,
            tolerance_s: tolerance.as_secs(),
        });
    }
    let mac = mac_over(secret, &signed_payload(timestamp, account_id, method, url));
    if candidates
        .iter()
        .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
    {
        Ok(timestamp)
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn mac_over(secret: &Secret, payload: &str) -> HmacSha256 {
    // RFC 2104 hashes a key longer than the block and zero-pads a shorter one; doing that here
    // gives a block-sized key for the infallible constructor, the same MAC as any other route.
    let key = secret.expose().as_bytes();
    let mut block = hmac::digest::generic_array::GenericArray::default();
    if key.len() > block.len() {
        let hashed = Sha256::digest(key);
        block[..hashed.len()].copy_from_slice(&hashed);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new(&block);
    mac.update(payload.as_bytes());
    mac
}

/// The pieces of a URL the signature covers. Parsed by hand, leniently: a URL this cannot make
/// sense of simply yields a payload that will not match.
struct UrlParts<'a> {
    hostname: String,
    path: &'a str,
    query: &'a str,
}

impl<'a> UrlParts<'a> {
    fn parse(url: &'a str) -> UrlParts<'a> {
        let url = url.split('#').next().unwrap_or_default();
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, remainder) = rest.split_at(authority_end);
        let host_port = authority.rsplit('@').next().unwrap_or_default();
        let hostname = if host_port.starts_with('[') {
            host_port
                .find(']')
                .map_or(host_port, |end| &host_port[..=end])
        } else {
            host_port.split(':').next().unwrap_or_default()
        };
        let (path, query) = remainder.split_once('?').unwrap_or((remainder, ""));
        UrlParts {
            hostname: hostname.to_ascii_lowercase(),
            path: if path.is_empty() { "/" } else { path },
            query,
        }
    }
}

/// Like `URLSearchParams.sort()` then `toString()`: decoded, stably sorted by name, re-encoded
/// as a form (spaces as `+`).
fn sorted_query(query: &str) -> String {
    let mut pairs: Vec<_> = form_urlencoded::parse(query.as_bytes()).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Dintero's published vector (/work/shared/dintero/signature-test-vector.json).
    const SECRET: &str = "123";
    const TIMESTAMP: u64 = 1582236537;
    const ACCOUNT: &str = "P00000000";
    const URL: &str = "https://example.com/callback?B=123&A=992";
    const PAYLOAD: &str = "1582236537\nP00000000\nGET\nexample.com\n/callback\nA=992&B=123";
    const HEADER: &str =
        "t=1582236537,v0-hmac-sha256=6bed2ab1b919d460ef7465a20dc6c97260dca73fab6647106ca525f0908df64a";
    const UNSORTED_PREFIX: &str = "14751103";
    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    #[test]
    fn published_vector_signs_and_verifies() {
        let secret = Secret::new(SECRET);
        assert_eq!(signed_payload(TIMESTAMP, ACCOUNT, "GET", URL), PAYLOAD);
        assert_eq!(sign(&secret, TIMESTAMP, ACCOUNT, "GET", URL), HEADER);
        assert_eq!(
            verify(
                &secret,
                HEADER,
                ACCOUNT,
                "GET",
                URL,
                TIMESTAMP + 10,
                FIVE_MINUTES
            ),
            Ok(TIMESTAMP)
        );
    }

    #[test]
    fn block_sized_key_gives_the_same_mac_as_the_general_constructor() {
        for len in [0, 3, 63, 64, 65, 200] {
            let key = "k".repeat(len);
            let mut reference = HmacSha256::new_from_slice(key.as_bytes()).unwrap();
            reference.update(b"payload");
            assert_eq!(
                mac_over(&Secret::new(key), "payload")
                    .finalize()
                    .into_bytes(),
                reference.finalize().into_bytes(),
                "key length {len}"
            );
        }
    }

    #[test]
    fn unsorted_query_gives_the_wrong_signature() {
        let unsorted = PAYLOAD.replace("A=992&B=123", "B=123&A=992");
        let mac = mac_over(&Secret::new(SECRET), &unsorted);
        let wrong = hex(&mac.finalize().into_bytes());
        assert!(wrong.starts_with(UNSORTED_PREFIX), "{wrong}");
        let header = format!("t={TIMESTAMP},v0-hmac-sha256={wrong}");
        assert_eq!(
            verify(
                &Secret::new(SECRET),
                &header,
                ACCOUNT,
                "GET",
                URL,
                TIMESTAMP,
                FIVE_MINUTES
            ),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn spaces_are_plus_port_is_dropped_and_empty_query_keeps_its_line() {
        assert_eq!(
            signed_payload(
                1,
                "T1",
                "get",
                "http://Kiosk.Example:8080/cb?z=a%20b&session_id=x+y#frag"
            ),
            "1\nT1\nGET\nkiosk.example\n/cb\nsession_id=x+y&z=a+b"
        );
        assert_eq!(
            signed_payload(1, "T1", "POST", "https://example.com"),
            "1\nT1\nPOST\nexample.com\n/\n"
        );
    }

    #[test]
    fn refuses_wrong_secret_account_url_and_stale_or_garbled_headers() {
        let secret = Secret::new(SECRET);
        let check = |secret: &Secret, header: &str, account: &str, url: &str, now: u64| {
            verify(secret, header, account, "GET", url, now, FIVE_MINUTES)
        };
        assert_eq!(
            check(&Secret::new("124"), HEADER, ACCOUNT, URL, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&secret, HEADER, "P00000001", URL, TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(
                &secret,
                HEADER,
                ACCOUNT,
                "https://example.com/callback?B=124&A=992",
                TIMESTAMP
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&secret, HEADER, ACCOUNT, URL, TIMESTAMP + 301),
            Err(SignatureError::Stale {
                age_s: 301,
                tolerance_s: 300
            })
        );
        assert!(check(&secret, HEADER, ACCOUNT, URL, TIMESTAMP - 300).is_ok());
        for garbled in [
            "",
            "t=abc,v0-hmac-sha256=00",
            "t=1582236537",
            "v0-hmac-sha256=6bed",
            "t=1582236537,v0-hmac-sha256=xyz",
            "t=1582236537,v0-hmac-sha256=6be",
        ] {
            assert!(
                matches!(
                    check(&secret, garbled, ACCOUNT, URL, TIMESTAMP),
                    Err(SignatureError::Malformed(_))
                ),
                "{garbled:?}"
            );
        }
        let rotated = format!("t={TIMESTAMP},v0-hmac-sha256=00ff,{}", &HEADER[13..]);
        assert_eq!(
            check(&secret, &rotated, ACCOUNT, URL, TIMESTAMP),
            Ok(TIMESTAMP)
        );
    }
}
