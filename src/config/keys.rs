//! The keys a technician may type, for the console's tab completion of `config get|set`.
//!
//! The keys come from the packaged config file (`packaging/kioskpay.toml`, compiled in), which
//! documents every key an installer is expected to touch, set or commented out: one list, read
//! where installers read it, instead of a copy that drifts. A test checks that the parser knows
//! each of them. The values of the keys that take a word from a fixed set are listed here, and a
//! test checks each list against the parser's own error message, which names the accepted words.

use crate::money::Currency;

/// The packaged config file, whose keys are completed.
const PACKAGED: &str = include_str!("../../packaging/kioskpay.toml");

/// The accepted words of the keys that take one from a fixed set.
const WORDS: &[(&str, &[&str])] = &[
    ("kiosk.language", &["nb", "en"]),
    ("payment.polling", &["adaptive", "fixed"]),
    ("input.kind", &["serial", "stdin", "gpio"]),
    (
        "display.kind",
        &["png", "terminal", "none", "spi", "framebuffer"],
    ),
];

/// Every dotted key the packaged file documents (`kiosk.language`, `payment.timeout_s`, …), in
/// its order.
pub fn known() -> Vec<String> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in PACKAGED.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        let is_key = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit());
        let dotted = format!("{section}.{key}");
        if is_key && !section.is_empty() && !keys.contains(&dotted) {
            keys.push(dotted);
        }
    }
    keys
}

/// The words `key` accepts, when it takes one from a fixed set; empty otherwise.
pub fn words(key: &str) -> Vec<String> {
    if key == "kiosk.currency" {
        return Currency::known_codes()
            .iter()
            .map(|c| c.to_string())
            .collect();
    }
    WORDS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, words)| words.iter().map(|w| w.to_string()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    const MINIMAL: &str = "[kiosk]\nid = \"kiosk-1\"\n[dintero]\naccount_id = \"T12345678\"\nclient_id = \"c\"\nclient_secret_file = \"/nonexistent\"\nprofile_id = \"p\"\n[store]\nid = \"s\"\nterminal_id = \"T12345678-T0001\"\npayout_destination_id = \"d\"\n";

    /// MINIMAL with `key` set to `value` (TOML).
    fn with(key: &str, value: &str) -> String {
        let mut doc: toml_edit::DocumentMut = MINIMAL.parse().unwrap();
        let (section, name) = key.split_once('.').unwrap();
        if doc.get(section).is_none() {
            doc[section] = toml_edit::table();
        }
        doc[section][name] = toml_edit::value(value.parse::<toml_edit::Value>().unwrap());
        doc.to_string()
    }

    #[test]
    fn every_packaged_key_is_one_the_parser_knows() {
        let keys = known();
        assert!(keys.len() > 20, "{keys:?}");
        for key in [
            "kiosk.language",
            "payment.poll_interval_ms",
            "metrics.interval_s",
        ] {
            assert!(keys.contains(&key.to_string()), "{key} in {keys:?}");
        }
        for key in keys {
            // A value of a type no key takes: the error must be about the value, not the key.
            let e = Config::parse(&with(&key, "{ x = 1 }"), Path::new("k.toml"))
                .unwrap_err()
                .to_string();
            assert!(!e.contains("unknown field"), "{key}: {e}");
        }
    }

    #[test]
    fn the_listed_words_are_exactly_those_the_parser_accepts() {
        for (key, words) in WORDS {
            for word in *words {
                let text = with(key, &format!("{word:?}"));
                // Only that key's own complaint counts: other keys may need more with it.
                if let Err(e) = Config::parse(&text, Path::new("k.toml")) {
                    assert!(
                        !e.to_string().contains("unknown variant"),
                        "{key} {word}: {e}"
                    );
                }
            }
            let e = Config::parse(&with(key, "\"nonsense\""), Path::new("k.toml"))
                .unwrap_err()
                .to_string();
            let expected = e.split("expected ").nth(1).unwrap_or_default();
            for word in *words {
                assert!(expected.contains(&format!("`{word}`")), "{key}: {e}");
            }
            assert_eq!(expected.matches('`').count(), words.len() * 2, "{key}: {e}");
        }
        assert!(words("kiosk.currency").contains(&"NOK".to_string()));
        assert!(words("payment.timeout_s").is_empty());
    }
}
