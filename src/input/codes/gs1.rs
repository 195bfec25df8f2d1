//! GS1 payment slips as element strings (GS1-128, GS1 DataMatrix, GS1 QR, GS1 DataBar).
//!
//! A payment slip carries exactly these Application Identifiers, in any order:
//!
//! | AI | content | rule from the dictionary |
//! |---|---|---|
//! | 415 | GLN of the invoicing party | `N13,csum`, predefined length (no GS after it) |
//! | 8020 | payment reference (a KID fits) | `X..25`, variable length |
//! | 390n | amount in the kiosk's currency, n implied decimals | `N..15`, variable length |
//! | 391n | ISO 4217 numeric currency + amount | `N3,iso4217 N..15`, variable length |
//!
//! The scanner sends each FNC1 separator as GS (0x1D); a GS must follow every variable-length
//! AI that is not last, and one after the last AI is tolerated. Lengths, character sets, check
//! digits, required companions (`req=`) and exclusions (`ex=`, which forbids 390n with 391n)
//! all come from GS1's syntax dictionary ([`super::gs1_dictionary`]); kioskpay adds only what
//! makes a slip payable here: no other AIs, no AI twice, an amount present, the kiosk's currency.
//! 392n/393n are refused by name: they are prices of variable-measure trade items, not totals.

use crate::money::{Currency, Money};

use super::gs1_dictionary::{matches_pattern, AiEntry, Dictionary};
use super::{excerpt, implied_decimals_to_minor, iso4217, CodeError};

/// The Group Separator a scanner sends for FNC1.
pub const GS: char = '\u{1d}';

/// A payment slip that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentSlip {
    /// AI 415: who is paid.
    pub gln: String,
    /// AI 8020: the payment reference.
    pub reference: String,
    /// AI 390n/391n converted to minor units of the kiosk's currency.
    pub amount: Money,
}

/// The dictionary compiled into kioskpay, as a [`CodeError`] when it is broken.
pub(crate) fn dictionary() -> Result<&'static Dictionary, CodeError> {
    Dictionary::embedded().map_err(|e| CodeError::Dictionary(e.to_string()))
}

/// Parses and validates a GS1 element string (the data after the AIM identifier).
pub fn parse_element_string(data: &str, currency: Currency) -> Result<PaymentSlip, CodeError> {
    let dict = dictionary()?;
    let elements = split_elements(dict, data)?;
    slip_from_elements(dict, elements, currency)
}

/// Splits an element string into `(AI, value)` pairs: a predefined-length AI takes its
/// dictionary length, any other AI runs to the next GS.
pub fn split_elements(dict: &Dictionary, data: &str) -> Result<Vec<(String, String)>, CodeError> {
    let mut elements = Vec::new();
    let mut offset = 0;
    while offset < data.len() {
        let rest = &data[offset..];
        let entry = dict.ai_at_start(rest).ok_or_else(|| CodeError::UnknownAi {
            text: excerpt(rest),
            offset,
        })?;
        let value_start = offset + entry.ai.len();
        let after = &data[value_start..];
        let value_len = match entry.predefined_len() {
            Some(n) => after
                .char_indices()
                .nth(n)
                .map_or(after.len(), |(i, _)| i)
                .min(after.find(GS).unwrap_or(after.len())),
            None => after.find(GS).unwrap_or(after.len()),
        };
        let value = &after[..value_len];
        elements.push((entry.ai.clone(), value.to_string()));
        offset = value_start + value_len;
        if data[offset..].starts_with(GS) {
            offset += GS.len_utf8();
        }
    }
    Ok(elements)
}

/// The AIs a payment slip may carry.
fn allowed_on_slip(ai: &str) -> bool {
    ai == "415" || ai == "8020" || matches_pattern(ai, "390n") || matches_pattern(ai, "391n")
}

/// Validates `(AI, value)` pairs from an element string or a Digital Link as a payment slip.
pub fn slip_from_elements(
    dict: &Dictionary,
    elements: Vec<(String, String)>,
    currency: Currency,
) -> Result<PaymentSlip, CodeError> {
    let mut looked_up = Vec::with_capacity(elements.len());
    for (ai, value) in elements {
        let entry = dict.get(&ai).ok_or_else(|| CodeError::UnknownAi {
            text: excerpt(&ai),
            offset: 0,
        })?;
        looked_up.push((entry, value));
    }
    let is_price = |ai: &str| matches_pattern(ai, "392n") || matches_pattern(ai, "393n");
    if let Some((entry, _)) = looked_up
        .iter()
        .filter(|(e, _)| !allowed_on_slip(&e.ai))
        .min_by_key(|(e, _)| !is_price(&e.ai))
    {
        return Err(CodeError::AiNotAccepted {
            ai: entry.ai.clone(),
            title: entry.title.clone(),
            why: if is_price(&entry.ai) {
                "392n/393n are prices of trade items, not basket totals"
            } else {
                "a payment slip carries only (415) GLN, (8020) reference and (390n) or (391n) amount"
            },
        });
    }
    let mut entries: Vec<(&AiEntry, String)> = Vec::with_capacity(looked_up.len());
    for (entry, value) in looked_up {
        if entries.iter().any(|(e, _)| e.ai == entry.ai) {
            return Err(CodeError::DuplicateAi {
                ai: entry.ai.clone(),
            });
        }
        entry
            .validate(&value)
            .map_err(|problem| CodeError::InvalidValue {
                ai: entry.ai.clone(),
                value: excerpt(&value),
                problem,
            })?;
        entries.push((entry, value));
    }
    check_pairings(&entries)?;

    let find = |pred: &dyn Fn(&str) -> bool| {
        entries
            .iter()
            .find(|(e, _)| pred(&e.ai))
            .map(|(e, v)| (e.ai.as_str(), v.as_str()))
    };
    let (_, gln) = find(&|ai| ai == "415").ok_or(CodeError::SlipIncomplete {
        missing: "GLN: AI (415)",
    })?;
    let (_, reference) = find(&|ai| ai == "8020").ok_or(CodeError::SlipIncomplete {
        missing: "payment reference: AI (8020)",
    })?;
    let amount = match (
        find(&|ai| matches_pattern(ai, "390n")),
        find(&|ai| matches_pattern(ai, "391n")),
    ) {
        (Some((ai, digits)), None) => implied_decimals_to_minor(digits, decimals(ai), currency)?,
        (None, Some((ai, value))) => {
            let (code, digits) = value.split_at(3);
            let numeric: u16 = code.parse().unwrap_or(0);
            if numeric != currency.numeric() {
                return Err(CodeError::CurrencyNotAccepted {
                    alpha: iso4217::alpha(numeric).unwrap_or("???").to_string(),
                    numeric,
                    kiosk: currency,
                });
            }
            implied_decimals_to_minor(digits, decimals(ai), currency)?
        }
        (Some((a, _)), Some((b, _))) => {
            return Err(CodeError::ExcludedPair {
                ai: a.to_string(),
                other: b.to_string(),
                pattern: "391n".into(),
            })
        }
        (None, None) => {
            return Err(CodeError::SlipIncomplete {
                missing: "amount: AI (390n) or (391n)",
            })
        }
    };
    Ok(PaymentSlip {
        gln: gln.to_string(),
        reference: reference.to_string(),
        amount,
    })
}

/// The implied decimals of 390n/391n: the AI's last digit.
fn decimals(ai: &str) -> u8 {
    ai.bytes().last().map_or(0, |b| b.saturating_sub(b'0'))
}

/// Applies the dictionary's `ex=` and `req=` attributes to the AIs present.
fn check_pairings(entries: &[(&AiEntry, String)]) -> Result<(), CodeError> {
    let present = |pattern: &str, except: &str| {
        entries
            .iter()
            .map(|(e, _)| e.ai.as_str())
            .find(|ai| *ai != except && matches_pattern(ai, pattern))
    };
    for (entry, _) in entries {
        for pattern in &entry.excludes {
            if let Some(other) = present(pattern, &entry.ai) {
                return Err(CodeError::ExcludedPair {
                    ai: entry.ai.clone(),
                    other: other.to_string(),
                    pattern: pattern.clone(),
                });
            }
        }
    }
    for (entry, _) in entries {
        for alternatives in &entry.requires {
            let satisfied = alternatives
                .iter()
                .any(|all| all.iter().all(|p| present(p, "").is_some()));
            if !satisfied {
                let needs: Vec<String> = alternatives
                    .iter()
                    .map(|all| {
                        all.iter()
                            .map(|p| format!("({p})"))
                            .collect::<Vec<_>>()
                            .join("+")
                    })
                    .collect();
                return Err(CodeError::MissingCompanion {
                    ai: entry.ai.clone(),
                    needs: needs.join(" | "),
                });
            }
        }
    }
    Ok(())
}

/// Builds a payment-slip element string (as a scanner sends it, without AIM identifier), for
/// tests and for printing test slips: 415 first (predefined length, no GS), then 8020, GS, amount.
pub fn element_string(gln: &str, reference: &str, amount_ai: &str, amount: &str) -> String {
    format!("415{gln}8020{reference}{GS}{amount_ai}{amount}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // GLN 7080003824349 (a Norwegian GLN): check digit 9, see gs1_dictionary's tests.
    const GLN: &str = "7080003824349";

    #[test]
    fn splits_fixed_and_variable_ais() {
        let d = dictionary().unwrap();
        let data = format!("8020KID123{GS}4157080003824349390239900{GS}");
        let e = split_elements(d, &data).unwrap();
        assert_eq!(
            e,
            vec![
                ("8020".into(), "KID123".into()),
                ("415".into(), GLN.into()),
                ("3902".into(), "39900".into())
            ]
        );
        assert!(matches!(
            split_elements(d, &format!("415{GLN}{GS}{GS}3902100")),
            Err(CodeError::UnknownAi { offset: 17, .. })
        ));
    }

    #[test]
    fn accepts_a_slip_and_refuses_a_price() {
        let nok = Currency::NOK;
        let slip = parse_element_string(&element_string(GLN, "1234", "3902", "39900"), nok);
        assert_eq!(slip.unwrap().amount, Money::new(39900, nok));
        let price = format!("0107038010054471{GS}392239900");
        let err = parse_element_string(&price, nok).unwrap_err();
        assert!(err.to_string().contains("prices of trade items"), "{err}");
    }
}
