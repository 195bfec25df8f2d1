//! `kioskpay decode` as a technician (or the technician console) runs it: one code in, one JSON
//! object out, and an exit status scripts can branch on.

use crate::support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary, through qemu when the tests run cross-built (see `support::kioskpay_bin`).
fn bin() -> Command {
    support::kioskpay_bin().expect("the kioskpay binary can be started here")
}

use kioskpay::input::codes::signed::sign_cart;
use kioskpay::money::{Currency, Money};
use kioskpay::secret::Secret;

/// A GLN whose check digit is right.
const GLN: &str = "7080003824349";
const KEY: &str = "pos-shared-key-for-tests-0123456789";

fn decode(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = bin()
        .arg("decode")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// The one JSON line on stdout.
fn json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "one line of JSON: {stdout}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn decoded(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(out)
}

fn error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1));
    let v = json(out);
    assert_eq!(v.as_object().unwrap().len(), 1, "only \"error\": {v}");
    v["error"].as_str().unwrap().to_string()
}

#[test]
fn an_argument_with_gs_escapes_is_decoded_to_json() {
    let slip = format!("]C1415{GLN}8020KID-4711\\x1D390200039950");
    let v = decoded(&decode(&[&slip], None));
    assert_eq!(
        v,
        serde_json::json!({"format": "gs1", "amount": 39950, "currency": "NOK", "reference": "KID-4711"})
    );
    // The keys come in the documented order.
    let out = decode(&[&slip], None);
    let line = String::from_utf8_lossy(&out.stdout);
    let order: Vec<usize> = ["\"format\"", "\"amount\"", "\"currency\"", "\"reference\""]
        .iter()
        .map(|k| line.find(k).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{line}");

    let link = format!("https://id.example.com/415/{GLN}/8020/KID-4711?3902=39950");
    assert_eq!(decoded(&decode(&[&link], None))["format"], "digital_link");
    let plain = decoded(&decode(&["399,00"], None));
    assert_eq!(plain["amount"], 39900);
    assert_eq!(plain["reference"], serde_json::Value::Null);
}

#[test]
fn raw_bytes_on_stdin_are_decoded_with_one_line_ending_dropped() {
    let mut slip = format!("]C1415{GLN}8020R1").into_bytes();
    slip.push(0x1d);
    slip.extend_from_slice(b"391257812550\r\n");
    let v = decoded(&decode(&[], Some(&slip)));
    assert_eq!(v["amount"], 12550);
    assert_eq!(v["reference"], "R1");
    assert_eq!(
        decoded(&decode(&[], Some(b"2012345019959\n")))["format"],
        "ean13"
    );
}

#[test]
fn refused_codes_print_the_reason_and_exit_1() {
    let e = error(&decode(&[&format!("]C1415{GLN}8020R1")], None));
    assert!(e.contains("no amount"), "{e}");
    let e = error(&decode(&["7038010069307"], None));
    assert!(e.contains("product number"), "{e}");
    // Currency 040 (ATS) is not the kiosk's.
    let e = error(&decode(
        &[&format!("]C1415{GLN}8020R1\\x1d39120401000")],
        None,
    ));
    assert!(e.contains("not accepted"), "{e}");
    let e = error(&decode(&[], Some(b"")));
    assert!(e.contains("empty"), "{e}");
    // Signed codes need the key, which only a config can name.
    let code = sign_cart(
        Money::new(100, Currency::NOK),
        "C1",
        u64::MAX / 2,
        &Secret::new(KEY),
    )
    .unwrap();
    let e = error(&decode(&[&code], None));
    assert!(e.contains("signing_key_file"), "{e}");
}

fn config_with_input(dir: &Path, input: &str) -> String {
    let path = support::write_config(dir, "http://127.0.0.1:9", &format!("[input]\n{input}\n"));
    path.to_str().unwrap().to_string()
}

#[test]
fn the_config_decides_currency_formats_and_the_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing_key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = config_with_input(
        dir.path(),
        &format!("signing_key_file = \"{}\"", key.display()),
    );

    // Default formats: GS1 slips, Digital Link and (with a key) signed codes; not plain, and
    // not EAN-13 until an installer has checked the store's price labels.
    let code = sign_cart(
        Money::new(39900, Currency::NOK),
        "ORDER-9",
        u64::MAX / 2,
        &Secret::new(KEY),
    )
    .unwrap();
    let v = decoded(&decode(&["--config", &config, &code], None));
    assert_eq!(v["format"], "signed");
    assert_eq!(v["reference"], "ORDER-9");
    let e = error(&decode(&["--config", &config, "399.00"], None));
    assert!(e.contains("not a payment code this kiosk reads"), "{e}");
    assert!(e.contains("with \"plain\" added to input.formats"), "{e}");
    let e = error(&decode(&["--config", &config, "hello"], None));
    assert!(
        !e.contains("plain"),
        "no advice for what plain would refuse too: {e}"
    );
    let e = error(&decode(&["--config", &config, "2012345019959"], None));
    assert!(e.contains("add \"ean13\" to input.formats"), "{e}");
    let out = decode(&["--config", &config, "399.00"], None);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(KEY)
            && !String::from_utf8_lossy(&out.stderr).contains(KEY)
    );

    // A kiosk charging SEK refuses a NOK slip.
    let sek_dir = tempfile::tempdir().unwrap();
    let sek = support::write_config(sek_dir.path(), "http://127.0.0.1:9", "");
    let text = std::fs::read_to_string(&sek)
        .unwrap()
        .replace("currency = \"NOK\"", "currency = \"SEK\"");
    std::fs::write(&sek, text).unwrap();
    let slip = format!("]C1415{GLN}8020R1\\x1D39125781000");
    let e = error(&decode(&["--config", sek.to_str().unwrap(), &slip], None));
    assert!(e.contains("NOK/578 not accepted"), "{e}");
}

#[test]
fn a_bad_config_or_escape_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_input(dir.path(), "formats = [\"barcode\"]");
    let out = decode(&["--config", &config, "399.00"], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown variant `barcode`"), "{stderr}");

    let out = decode(&["]C1415\\x1"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("two hex digits"));
}

#[test]
fn help_explains_input_and_output_with_examples() {
    let out = bin().args(["decode", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for want in ["Examples:", "\\x1D", "--config", "{\"error\"", "exits 1"] {
        assert!(help.contains(want), "{want:?} missing:\n{help}");
    }
}

#[test]
fn a_code_that_starts_with_a_dash_is_the_code_not_an_option() {
    let out = decode(&["-5.00;X"], None);
    let message = error(&out);
    assert!(message.contains("plain code"), "{message}");
}

/// The README's own examples work with the README's own config, and with the config the package
/// installs: every `kioskpay decode` example prints what the README says, and every code quoted
/// in the README is accepted.
#[test]
fn every_readme_example_decodes_with_the_readmes_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = &readme[readme
        .find("## Configuration")
        .expect("a Configuration section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let config_text = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let readme_config = dir.path().join("kioskpay.toml");
    std::fs::write(&readme_config, config_text).unwrap();
    let configs = [
        readme_config.to_str().unwrap().to_string(),
        root.join("packaging/kioskpay.toml")
            .to_str()
            .unwrap()
            .to_string(),
    ];

    let prompt = "$ kioskpay decode --config /etc/kioskpay/kioskpay.toml '";
    let lines: Vec<&str> = readme.lines().collect();
    let mut console = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(code) = line.strip_prefix(prompt).and_then(|c| c.strip_suffix('\'')) else {
            continue;
        };
        console += 1;
        for config in &configs {
            let out = decode(&["--config", config, code], None);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim_end(),
                lines[i + 1],
                "README line {}: {code} with {config}: {}",
                i + 1,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert!(console >= 2, "the README shows kioskpay decode examples");

    let looks_like_code = |span: &str| {
        ["]C1", "]d2", "]Q3", "]e0", "]E0", "https://id.", "KP1."]
            .iter()
            .any(|p| span.starts_with(p))
            || span.split_once(';').is_some_and(|(amount, _)| {
                !amount.is_empty()
                    && amount
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
            })
    };
    // Inline code in the prose, fenced blocks left out (their backticks would pair wrongly).
    let mut fenced = false;
    let prose: String = readme
        .lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect::<Vec<_>>()
        .join("\n");
    let quoted: Vec<&str> = prose
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| looks_like_code(span))
        .collect();
    assert!(quoted.len() >= 2, "{quoted:?}");
    for code in quoted {
        for config in &configs {
            let out = decode(&["--config", config, code], None);
            assert_eq!(
                out.status.code(),
                Some(0),
                "the README quotes {code:?}, which {config} refuses: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}
