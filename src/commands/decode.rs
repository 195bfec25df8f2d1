//! `kioskpay decode`: what the kiosk would charge for a code, without paying, so a merchant can
//! check their barcodes before a kiosk meets them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::config::{Config, EXIT_CONFIG};

/// What `kioskpay decode` prints for a code the kiosk would charge, fields in this order.
#[derive(serde::Serialize)]
struct Decoded<'a> {
    format: &'a str,
    amount: u64,
    currency: &'a str,
    reference: Option<&'a str>,
}

/// Longest code `decode` reads from stdin: far above any barcode, low enough that a wrong file
/// piped in does not fill the memory.
const MAX_DECODE_INPUT: u64 = 64 * 1024;

/// Decodes `code` (or one line of stdin) with the config's formats (or the defaults in NOK) and
/// prints one JSON object: what would be charged, or why the code is refused (exit 1).
pub fn decode(config: Option<PathBuf>, code: Option<String>) -> Result<ExitCode> {
    use std::io::Read;
    let mut decode_config = match config {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|error| {
                crate::config::ConfigError::Read {
                    path: path.clone(),
                    error,
                }
            })?;
            let mut config = Config::parse(&text, &path)?;
            config.input.load_signing_key()?;
            config.input.decode_config(config.currency())
        }
        None => crate::input::codes::DecodeConfig::new(crate::money::Currency::NOK),
    };
    decode_config.now_unix = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let raw = match code {
        Some(text) => match unescape(&text) {
            Ok(raw) => raw,
            Err(problem) => {
                eprintln!("kioskpay: the code argument {text:?}: {problem}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
        None => {
            let mut raw = Vec::new();
            std::io::stdin()
                .lock()
                .take(MAX_DECODE_INPUT)
                .read_to_end(&mut raw)
                .context("reading the code from stdin")?;
            for ending in [&b"\r\n"[..], b"\n", b"\r"] {
                if let Some(stripped) = raw.strip_suffix(ending) {
                    raw.truncate(stripped.len());
                    break;
                }
            }
            raw
        }
    };
    match crate::input::codes::decode(&raw, &decode_config) {
        Ok(d) => {
            let answer = Decoded {
                format: d.format.name(),
                amount: d.amount.minor,
                currency: d.amount.currency.code(),
                reference: d.reference.as_deref(),
            };
            println!("{}", serde_json::to_string(&answer)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}", serde_json::json!({ "error": e.to_string() }));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Turns `\xNN` escapes into bytes and `\\` into a backslash, so that a GS (`\x1D`) or any other
/// byte a scanner sends can be typed in a shell.
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(b'x' | b'X') => {
                let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                let byte = std::str::from_utf8(&hex)
                    .ok()
                    .filter(|h| h.len() == 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("\\x must be followed by two hex digits, e.g. \\x1D for GS")?;
                out.push(byte);
            }
            _ => return Err("a backslash starts \\xNN (a byte) or \\\\ (a backslash)".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_reads_bytes_and_backslashes() {
        assert_eq!(unescape(r"a\x1Db\x1d\\").unwrap(), b"a\x1db\x1d\\");
        assert_eq!(unescape("ø").unwrap(), "ø".as_bytes());
        for bad in [r"\x1", r"\xZZ", r"\n", "\\"] {
            assert!(unescape(bad).is_err(), "{bad:?}");
        }
    }
}
