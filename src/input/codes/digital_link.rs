//! GS1 payment slips as GS1 Digital Link URIs, the form a QR code on an invoice or a screen
//! carries:
//!
//! ```text
//! https://example.com/415/7080003824349/8020/KID%2F1234?3902=39900
//! https://example.com/pay/415/7080003824349/8020/1234?3912=57839900&linkType=gs1:payment
//! ```
//!
//! The path ends in `/415/<GLN>` (the primary key) optionally followed by `/8020/<reference>`
//! (the key's only qualifier, per the dictionary's `dlpkey=8020`); anything before the key is
//! the resolver's own path and is ignored, as is the host: a kiosk pays by the data, not by
//! visiting the link. The amount comes from the query, whose numeric keys must be AIs the
//! dictionary allows as Digital Link attributes (flag `?`); other keys (`linkType`, tracking
//! parameters) are ignored. Values are percent-decoded strictly (`%` must start a two-digit hex
//! escape) and then validated exactly like an element string ([`super::gs1`]).

use crate::money::Currency;

use super::gs1::{dictionary, slip_from_elements, PaymentSlip};
use super::{excerpt, CodeError};

/// Parses and validates a Digital Link URI as a payment slip.
pub fn parse(uri: &str, currency: Currency) -> Result<PaymentSlip, CodeError> {
    let fail = |problem: String| CodeError::DigitalLink {
        uri: excerpt(uri),
        problem,
    };
    if let Some(c) = uri.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(fail(format!(
            "{c:?} is not allowed in a URI (spaces and non-ASCII must be percent-encoded)"
        )));
    }
    let scheme_len = if uri
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        8
    } else if uri
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    {
        7
    } else {
        return Err(fail("not an http:// or https:// URI".into()));
    };
    let rest = &uri[scheme_len..];
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (location, query) = match rest.split_once('?') {
        Some((l, q)) => (l, Some(q)),
        None => (rest, None),
    };
    let (host, path) = location.split_once('/').unwrap_or((location, ""));
    if host.is_empty() {
        return Err(fail("no host".into()));
    }
    let dict = dictionary()?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<&str> = path.split('/').collect();

    // From the right, pairs of (AI, value) as long as the left one is a known AI.
    let mut path_pairs = Vec::new();
    let mut end = segments.len();
    while end >= 2 {
        let ai = segments[end - 2];
        if !ai.bytes().all(|b| b.is_ascii_digit()) || dict.get(ai).is_none() {
            break;
        }
        let value = percent_decode(segments[end - 1]).map_err(fail)?;
        path_pairs.push((ai.to_string(), value));
        end -= 2;
    }
    path_pairs.reverse();
    let Some((key, _)) = path_pairs.first() else {
        return Err(fail(
            "no GS1 key in the path: expected /415/<GLN>[/8020/<reference>]".into(),
        ));
    };
    let qualifiers: Vec<&str> = path_pairs[1..].iter().map(|(ai, _)| ai.as_str()).collect();
    let key_entry = dict.get(key).and_then(|e| e.dl_primary_key.as_ref());
    let Some(alternatives) = key_entry else {
        return Err(fail(format!(
            "path starts with AI ({key}), which is not a Digital Link primary key"
        )));
    };
    let in_order = alternatives.iter().any(|alt| {
        let mut allowed = alt.iter();
        qualifiers.iter().all(|q| allowed.any(|a| a.as_str() == *q))
    });
    if !in_order {
        return Err(fail(format!(
            "path qualifiers {qualifiers:?} are not allowed after key ({key}) in this order"
        )));
    }

    let mut elements = path_pairs;
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        if !k.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        match dict.get(k) {
            Some(entry) if entry.dl_attribute => {
                elements.push((k.to_string(), percent_decode(v).map_err(fail)?));
            }
            Some(_) => {
                return Err(fail(format!(
                    "AI ({k}) is not allowed in the query string (GS1 dictionary: no `?` flag)"
                )))
            }
            None => return Err(fail(format!("query key {k:?} is not a GS1 AI"))),
        }
    }
    slip_from_elements(dict, elements, currency)
}

/// Strict percent-decoding: `%` must be followed by two hex digits and the result must be UTF-8.
pub fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .filter(|_| bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit());
            match hex {
                Some(b) => out.push(b),
                None => return Err(format!("bad percent escape in {:?}", excerpt(text))),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| format!("{:?} decodes to bytes that are not UTF-8", excerpt(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_strict() {
        assert_eq!(percent_decode("KID%2F12").unwrap(), "KID/12");
        assert_eq!(percent_decode("a%41").unwrap(), "aA");
        assert!(percent_decode("%G1").is_err());
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%+1").is_err());
        assert!(percent_decode("%FF").is_err());
        assert_eq!(percent_decode("").unwrap(), "");
    }
}
