//! The payment-code parsers driven the way a scanner drives them: raw bytes in, amount or
//! refusal out. Table tests per format, then property tests that no byte sequence panics and
//! that valid codes round-trip.
//!
//! The GLN used throughout is 7080003824349, a Norwegian organisation's GLN. Its check digit by
//! hand: the first 12 digits 708000382434, weighted 3,1,3,... from the right:
//! 4·3 + 3 + 4·3 + 2 + 8·3 + 3 + 0·3 + 0 + 0·3 + 8 + 0·3 + 7 = 71, and 10 − 1 = 9.

use kioskpay::input::codes::ean13::{Ean13Rule, Ean13Rules};
use kioskpay::input::codes::gs1_dictionary::ValueProblem;
use kioskpay::input::codes::signed::sign_cart;
use kioskpay::input::codes::{
    decode, digital_link, gs1, CodeError, CustomerReason, DecodeConfig, Decoded, Format,
};
use kioskpay::money::{Currency, Money};
use kioskpay::secret::Secret;
use proptest::prelude::*;

const GS: char = '\u{1d}';
const GLN: &str = "7080003824349";
/// The same GLN with the last digit off by one.
const BAD_GLN: &str = "7080003824348";
/// 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

fn key() -> Secret {
    Secret::new("pos-shared-key-for-tests-0123456789")
}

fn config() -> DecodeConfig {
    let mut c = DecodeConfig::new(Currency::NOK);
    c.signing_key = Some(key());
    c.now_unix = NOW;
    c
}

fn dec(raw: &str) -> Result<Decoded, CodeError> {
    decode(raw.as_bytes(), &config())
}

fn nok(minor: u64) -> Money {
    Money::new(minor, Currency::NOK)
}

fn ok(raw: &str, format: Format, minor: u64, reference: Option<&str>) {
    let d = dec(raw).unwrap_or_else(|e| panic!("{raw:?} refused: {e}"));
    assert_eq!(d.format, format, "{raw:?}");
    assert_eq!(d.amount, nok(minor), "{raw:?}");
    assert_eq!(d.reference.as_deref(), reference, "{raw:?}");
}

fn refused(raw: &str, reason: CustomerReason, log_contains: &str) -> CodeError {
    let err = match dec(raw) {
        Ok(d) => panic!("{raw:?} accepted as {d:?}"),
        Err(e) => e,
    };
    assert_eq!(err.customer_reason(), reason, "{raw:?}: {err}");
    assert!(
        err.to_string().contains(log_contains),
        "{raw:?}: {err} lacks {log_contains:?}"
    );
    err
}

#[test]
fn gs1_payment_slips_accepted() {
    let cases: Vec<(String, u64, &str)> = vec![
        // 415 is predefined length: no GS after it; 8020 is variable: GS before the amount.
        (
            format!("]C1415{GLN}8020KID12345{GS}390239900"),
            39900,
            "KID12345",
        ),
        (
            format!("]C1415{GLN}8020KID12345{GS}390239900{GS}"),
            39900,
            "KID12345",
        ),
        // Any order; the amount is variable so a GS follows it.
        (
            format!("]d28020KID12345{GS}390239900{GS}415{GLN}"),
            39900,
            "KID12345",
        ),
        (
            format!("]Q3390239900{GS}415{GLN}8020KID12345"),
            39900,
            "KID12345",
        ),
        (
            format!("]e0415{GLN}390239900{GS}8020KID12345"),
            39900,
            "KID12345",
        ),
        // n = 0..=3 implied decimals, all 399.00 NOK.
        (format!("]C1415{GLN}8020R{GS}3900399"), 39900, "R"),
        (format!("]C1415{GLN}8020R{GS}39013990"), 39900, "R"),
        (format!("]C1415{GLN}8020R{GS}390239900"), 39900, "R"),
        (format!("]C1415{GLN}8020R{GS}3903399000"), 39900, "R"),
        (format!("]C1415{GLN}8020R{GS}39030000010"), 1, "R"),
        // 391n with NOK's ISO 4217 number 578.
        (format!("]C1415{GLN}8020R{GS}391257839900"), 39900, "R"),
        (format!("]C1415{GLN}8020R{GS}3910578399"), 39900, "R"),
        // Reference at its 25-character maximum, with CSET 82 punctuation.
        (
            format!("]C1415{GLN}8020KID/2026-01_ABC*12345678{GS}39025"),
            5,
            "KID/2026-01_ABC*12345678",
        ),
        // Scanner without AIM identifiers: the GS marks GS1 data.
        (
            format!("415{GLN}8020KID12345{GS}390239900"),
            39900,
            "KID12345",
        ),
    ];
    for (raw, minor, reference) in &cases {
        ok(raw, Format::Gs1, *minor, Some(reference));
    }
}

#[test]
fn gs1_payment_slips_refused() {
    use CustomerReason::*;
    let e = refused(
        &format!("]C1415{BAD_GLN}8020R{GS}390239900"),
        Unreadable,
        "check digit is 8",
    );
    assert!(matches!(
        e,
        CodeError::InvalidValue {
            problem: ValueProblem::CheckDigit {
                found: 8,
                expected: 9
            },
            ..
        }
    ));
    refused(
        &format!("]C1415{GLN}8020R{GS}391204039900"),
        WrongCurrency,
        "currency ATS/040 not accepted",
    );
    refused(
        &format!("]C1415{GLN}8020R{GS}391275239900"),
        WrongCurrency,
        "currency SEK/752 not accepted",
    );
    refused(
        &format!("]C1415{GLN}8020R{GS}391200139900"),
        Unreadable,
        "not an ISO 4217",
    );
    // Letters in the amount.
    refused(
        &format!("]C1415{GLN}8020R{GS}3902399O0"),
        Unreadable,
        "'O' at position 3 is not in digits",
    );
    // 16 digits: the dictionary allows N..15.
    refused(
        &format!("]C1415{GLN}8020R{GS}39021234567890123456"),
        Unreadable,
        "16 characters, at most 15",
    );
    // Missing GS after the amount: the reference's AI and value run into the amount.
    refused(
        &format!("]C1415{GLN}3902399008020KID"),
        Unreadable,
        "'K' at position 9",
    );
    // Missing GS after the reference: the amount becomes part of the reference.
    refused(
        &format!("]C1415{GLN}8020KID390239900"),
        Unreadable,
        "no amount",
    );
    // Missing GS between reference and a long amount: the reference exceeds 25 characters.
    refused(
        &format!("]C1415{GLN}8020KID-2026-000000001390212345678"),
        Unreadable,
        "at most 25",
    );
    refused(
        &format!("]C1415{GLN}8020R{GS}390239900{GS}3902100"),
        Unreadable,
        "(3902) appears twice",
    );
    refused(
        &format!("]C1415{GLN}8020R{GS}8020S{GS}390239900"),
        Unreadable,
        "(8020) appears twice",
    );
    refused(
        &format!("]C1415{GLN}8020R{GS}390239900{GS}391257839900"),
        Unreadable,
        "cannot appear together with (3912)",
    );
    refused(
        &format!("]C1415{GLN}390239900"),
        Unreadable,
        "(415) needs one of (8020)",
    );
    refused(
        &format!("]C18020R{GS}390239900"),
        Unreadable,
        "(8020) needs one of (415)",
    );
    refused(&format!("]C1415{GLN}8020R"), Unreadable, "no amount");
    // Sub-øre: 3 decimals with a non-zero last digit.
    refused(
        &format!("]C1415{GLN}8020R{GS}3903399005"),
        InvalidAmount,
        "refused, never rounded",
    );
    refused(
        &format!("]C1415{GLN}8020R{GS}39020"),
        InvalidAmount,
        "amount of zero",
    );
    // A variable-measure price beside a GTIN is a product, not a basket total.
    refused(
        &format!("]C10107038010054471{GS}3922199{GS}3103000450"),
        NotAPaymentCode,
        "prices of trade items, not basket totals",
    );
    refused(
        &format!("]C1415{GLN}8020R{GS}393257839900"),
        NotAPaymentCode,
        "(3932) PRICE is not accepted",
    );
    refused("]C10107038010054471", NotAPaymentCode, "(01) GTIN");
    refused(
        "]C1ABC",
        Unreadable,
        "no Application Identifier starts at byte 0",
    );
    refused(
        &format!("]C1415{GLN}{GS}{GS}8020R"),
        Unreadable,
        "at byte 17",
    );
    refused(&format!("]C1415{GLN}"), Unreadable, "needs one of (8020)");
    refused("]C14157080", Unreadable, "at least 13 required");
}

#[test]
fn digital_links_accepted() {
    let cases: Vec<(String, u64, &str)> = vec![
        (
            format!("https://example.com/415/{GLN}/8020/KID12345?3902=39900"),
            39900,
            "KID12345",
        ),
        // Percent-encoded reference.
        (
            format!("https://example.com/415/{GLN}/8020/KID%2F2026%2D01?3902=39900"),
            39900,
            "KID/2026-01",
        ),
        // 391n in the query, currency 578 = NOK.
        (
            format!("https://example.com/415/{GLN}/8020/R?3912=57839900"),
            39900,
            "R",
        ),
        // A resolver path prefix, other query parameters and a fragment are ignored.
        (
            format!("https://pay.example.no/a/b/415/{GLN}/8020/R?linkType=gs1:payment&3901=3990#x"),
            39900,
            "R",
        ),
        (
            format!("HTTP://EXAMPLE.COM/415/{GLN}/8020/R/?3900=399"),
            39900,
            "R",
        ),
        (
            format!("]Q1https://example.com/415/{GLN}/8020/R?3903=399000"),
            39900,
            "R",
        ),
    ];
    for (raw, minor, reference) in &cases {
        ok(raw, Format::DigitalLink, *minor, Some(reference));
    }
}

#[test]
fn digital_links_refused() {
    use CustomerReason::*;
    let base = format!("https://example.com/415/{GLN}/8020/R");
    refused(
        &format!("{base}?3912=04039900"),
        WrongCurrency,
        "currency ATS/040 not accepted",
    );
    refused(
        &format!("https://example.com/415/{BAD_GLN}/8020/R?3902=100"),
        Unreadable,
        "check digit is 8",
    );
    refused(&format!("{base}?3902=39A00"), Unreadable, "not in digits");
    refused(
        &format!("{base}?3902=1234567890123456"),
        Unreadable,
        "at most 15",
    );
    refused(
        &format!("{base}?3903=399005"),
        InvalidAmount,
        "never rounded",
    );
    refused(&base, Unreadable, "no amount");
    refused(
        &format!("{base}?3902=100&3902=100"),
        Unreadable,
        "appears twice",
    );
    refused(
        &format!("{base}?3902=100&3912=578100"),
        Unreadable,
        "cannot appear together",
    );
    refused(
        &format!("https://example.com/415/{GLN}?8020=R&3902=100"),
        Unreadable,
        "(8020) is not allowed in the query",
    );
    refused(
        &format!("https://example.com/8020/R/415/{GLN}?3902=100"),
        Unreadable,
        "not a Digital Link primary key",
    );
    refused(
        &format!("https://example.com/415/{GLN}/3902/100"),
        Unreadable,
        "not allowed after key",
    );
    refused(
        "https://example.com/8020/R?3902=100",
        Unreadable,
        "not a Digital Link primary key",
    );
    refused(
        "https://example.com/pay?3902=100",
        Unreadable,
        "no GS1 key in the path",
    );
    refused(
        &format!("{base}%G1?3902=100"),
        Unreadable,
        "bad percent escape",
    );
    refused(
        &format!("https://example.com/415/{GLN}/8020/R%20S?3902=100"),
        Unreadable,
        "' ' at position 1",
    );
    refused(
        &format!("{base}?3922=100"),
        NotAPaymentCode,
        "prices of trade items",
    );
    refused("https:///415/x", Unreadable, "no host");
    let mut c = config();
    c.formats = vec![Format::Gs1, Format::Plain];
    let e = decode(format!("{base}?3902=100").as_bytes(), &c).unwrap_err();
    assert_eq!(e.customer_reason(), NotAccepted);
    assert!(e
        .to_string()
        .contains("add \"digital_link\" to input.formats"));
}

/// Appends the EAN-13 check digit, computed here independently of the library.
fn with_check(first12: &str) -> String {
    let sum: u32 = first12
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    format!("{first12}{}", (10 - sum % 10) % 10)
}

#[test]
fn ean13_prefix_rules() {
    use CustomerReason::*;
    // 20 12345 01995 + check. By hand: from the right 5·3+9+9·3+1+0·3+5+4·3+3+2·3+1+0·3+2 = 81 → 9.
    assert_eq!(with_check("201234501995"), "2012345019959");
    ok("2012345019959", Format::Ean13Price, 1995, Some("2012345"));
    ok(
        "]E02012345019959",
        Format::Ean13Price,
        1995,
        Some("2012345"),
    );
    // 21: one decimal, 1995 = 199.5 kr. The 1 in second place weighs 3: 84 → 6.
    ok("2112345019956", Format::Ean13Price, 19950, Some("2112345"));
    // 22: no decimals, 1995 kr. 87 → 3.
    ok("2212345019953", Format::Ean13Price, 199500, Some("2212345"));
    // 23/24/25: weights (90 → 0, 93 → 7, 96 → 4).
    for code in ["2312345019950", "2412345019957", "2512345019954"] {
        refused(code, NotAPaymentCode, "is a weight, not a price");
    }
    // 26-29: no rule by default (99 → 1).
    refused(
        "2612345019951",
        NotAPaymentCode,
        "no rule for in-store prefix 26",
    );
    refused(
        "2012345019958",
        Unreadable,
        "check digit is 8, the other digits give 9",
    );
    // A real product GTIN (703801005447, check 1: 7·3+4+4·3+5+0+0+1·3+0+8·3+3+0+7 = 79 → 1).
    refused("7038010054471", NotAPaymentCode, "product number (GTIN)");
    refused("]E412345670", NotAPaymentCode, "EAN-8");
    refused(&with_check("201234500000"), InvalidAmount, "amount of zero");
}

#[test]
fn ean13_price_check_digit_rules() {
    use CustomerReason::*;
    let mut c = config();
    c.ean13_rules = Ean13Rules::new(vec![
        Ean13Rule::Price {
            prefix: 20,
            price_digits: 4,
            decimals: 2,
            price_check: true,
        },
        Ean13Rule::Price {
            prefix: 22,
            price_digits: 5,
            decimals: 0,
            price_check: true,
        },
    ])
    .unwrap();
    let run = |code: &str| decode(code.as_bytes(), &c);
    // 20 12345 [9] 2875: GS1's worked 4-digit example gives price check digit 9.
    // EAN check: 5·3+7+8·3+2+9·3+5+4·3+3+2·3+1+0+2 = 104 → 6.
    assert_eq!(with_check("201234592875"), "2012345928756");
    let d = run("2012345928756").unwrap();
    assert_eq!(
        (d.amount, d.reference.as_deref()),
        (nok(2875), Some("2012345"))
    );
    // Price check digit 8 instead of 9 (EAN check recomputed so only the price check fails).
    let e = run(&with_check("201234582875")).unwrap_err();
    assert_eq!(e.customer_reason(), Unreadable);
    assert!(
        e.to_string()
            .contains("price check digit is 8, GS1's 4-digit price check gives 9"),
        "{e}"
    );
    // 22 1234 [6] 14685: GS1's worked 5-digit example gives 6; 14685 kr.
    let d = run(&with_check("221234614685")).unwrap();
    assert_eq!(
        (d.amount, d.reference.as_deref()),
        (nok(1_468_500), Some("221234"))
    );
    assert!(run(&with_check("221234514685")).is_err());
    // Prefix 21 has no rule in this table.
    let e = run(&with_check("211234501995")).unwrap_err();
    assert!(matches!(e, CodeError::Ean13NoRule { prefix: 21, .. }));
}

#[test]
fn ean13_rules_load_from_config_toml() {
    #[derive(serde::Deserialize)]
    struct Input {
        ean13_rules: Ean13Rules,
    }
    let text = r#"
        [[ean13_rules]]
        kind = "price"
        prefix = 20
        decimals = 2
        [[ean13_rules]]
        kind = "price"
        prefix = 28
        price_digits = 4
        decimals = 2
        price_check = true
        [[ean13_rules]]
        kind = "weight"
        prefix = 23
    "#;
    let input: Input = toml::from_str(text).unwrap();
    assert_eq!(input.ean13_rules.rules().len(), 3);
    assert_eq!(
        input.ean13_rules.rules()[0],
        Ean13Rule::Price {
            prefix: 20,
            price_digits: 5,
            decimals: 2,
            price_check: false
        }
    );
    let bad = "[[ean13_rules]]\nkind = \"price\"\nprefix = 30\ndecimals = 2\n";
    let err = toml::from_str::<Input>(bad).err().unwrap().to_string();
    assert!(err.contains("prefix 30 is not an in-store prefix"), "{err}");
    let typo = "[[ean13_rules]]\nkind = \"price\"\nprefix = 20\ndecimal = 2\n";
    assert!(toml::from_str::<Input>(typo).is_err());
}

#[test]
fn signed_cart_codes() {
    use CustomerReason::*;
    let code = sign_cart(nok(39900), "ORDER-4711", NOW + 600, &key()).unwrap();
    let (body, tag) = code.rsplit_once('.').unwrap();
    assert_eq!(body, format!("KP1.39900.NOK.ORDER-4711.{}", NOW + 600));
    assert_eq!(tag.len(), 43);
    let d = dec(&code).unwrap();
    assert_eq!(d.format, Format::Signed);
    assert_eq!(d.amount, nok(39900));
    assert_eq!(d.reference.as_deref(), Some("ORDER-4711"));
    assert_eq!(d.expires_unix, Some(NOW + 600));
    assert!(dec(&format!("]Q1{code}")).is_ok());

    // Replayed: decoding is pure and accepts it again; the payment flow refuses it as already
    // paid (tests/inprocess/flow.rs).
    assert_eq!(dec(&code).unwrap(), d);

    // Tampered amount, reference, expiry, currency: the signature no longer matches.
    for tampered in [
        code.replace(".39900.", ".39000."),
        code.replace("ORDER-4711", "ORDER-4712"),
        code.replace(&(NOW + 600).to_string(), &(NOW + 60_000).to_string()),
        code.replace(".NOK.", ".SEK."),
    ] {
        refused(&tampered, Forged, "signature does not verify");
    }
    // Signed with another key.
    let other = Secret::new("some-other-merchant-key-000000000");
    let forged = sign_cart(nok(100), "X", NOW + 600, &other).unwrap();
    refused(&forged, Forged, "signature does not verify");
    // Expired, including the exact second of expiry.
    for expiry in [NOW - 1, NOW] {
        let old = sign_cart(nok(100), "OLD-1", expiry, &key()).unwrap();
        refused(&old, Expired, "expired at");
    }
    let sek = sign_cart(
        Money::new(100, Currency::from_code("SEK").unwrap()),
        "S",
        NOW + 1,
        &key(),
    )
    .unwrap();
    refused(&sek, WrongCurrency, "currency SEK/752 not accepted");
    let zero = sign_cart(nok(0), "Z", NOW + 1, &key()).unwrap();
    refused(&zero, InvalidAmount, "amount of zero");
    for malformed in [
        "KP1.",
        "KP1.100.NOK.R.1",
        "KP1.100.NOK.R.1.2.3.4",
        "KP1.100.NOK.R.1767225700.not-a-signature",
        "KP1.100.NOK.R.1767225700.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA====",
    ] {
        refused(malformed, Unreadable, "signed cart code");
    }
    // Without a key the kiosk cannot check signatures: the operator must fix it.
    let mut c = config();
    c.signing_key = None;
    let e = decode(code.as_bytes(), &c).unwrap_err();
    assert_eq!(e.customer_reason(), KioskFault);
    c.signing_key = Some(Secret::new("short"));
    let e = decode(code.as_bytes(), &c).unwrap_err();
    assert_eq!(e.customer_reason(), KioskFault);
    assert!(!e.to_string().contains("short"));
    assert!(sign_cart(nok(1), "has space", NOW, &key()).is_err());
    assert!(sign_cart(nok(1), "", NOW, &key()).is_err());
    assert!(sign_cart(nok(1), "R", NOW, &Secret::new("short")).is_err());
    // The key never shows in Debug output of the config.
    assert!(!format!("{:?}", config()).contains(key().expose()));
}

#[test]
fn plain_codes() {
    use CustomerReason::*;
    ok("399.00", Format::Plain, 39900, None);
    ok("399,5;ORDER-17", Format::Plain, 39950, Some("ORDER-17"));
    ok("]C0399", Format::Plain, 39900, None);
    refused("1.001", InvalidAmount, "more than 2 decimals");
    refused("abc", Unreadable, "is not an amount");
    refused("0.00", InvalidAmount, "amount of zero");
    refused("399;", Unreadable, "empty after ';'");
    refused(
        &format!("399;{}", "x".repeat(65)),
        Unreadable,
        "longer than 64",
    );
    let mut c = config();
    c.formats = vec![Format::Gs1, Format::Signed];
    let e = decode(b"399.00", &c).unwrap_err();
    assert_eq!(e.customer_reason(), NotAPaymentCode);
    assert!(
        e.to_string().contains("enabled formats: gs1, signed"),
        "{e}"
    );
}

#[test]
fn front_door_refuses_what_is_not_text() {
    use CustomerReason::*;
    for raw in [&b""[..], b"]C1", b"]Q3"] {
        assert_eq!(decode(raw, &config()), Err(CodeError::Empty));
    }
    let e = decode(b"]C1\xff\xfe415", &config()).unwrap_err();
    assert_eq!(e.customer_reason(), Unreadable);
    assert!(e.to_string().contains("not valid UTF-8"));
    refused("399.00\r", Unreadable, "control characters");
    refused(
        &format!("]C0399{GS}00"),
        Unreadable,
        "GS separators outside GS1 data",
    );
    // Long garbage is quoted truncated and escaped in the log.
    let long = format!("]C1{}\u{7}", "9".repeat(500));
    let e = decode(long.as_bytes(), &config()).unwrap_err();
    assert!(e.to_string().len() < 300, "{e}");
}

// ---- properties ----

/// Element strings in every order, with or without trailing GS.
fn assemble(elements: &[(String, String)], order: &[usize], trailing_gs: bool) -> String {
    let mut out = String::from("]C1");
    for (i, &ix) in order.iter().enumerate() {
        let (ai, value) = &elements[ix];
        out.push_str(ai);
        out.push_str(value);
        let last = i + 1 == order.len();
        if ai != "415" && (!last || trailing_gs) {
            out.push(GS);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        let _ = decode(&bytes, &config());
    }

    #[test]
    fn decode_never_panics_on_near_codes(
        prefix in prop::sample::select(vec!["]C1", "]d2", "]E0", "]Q1", "https://e.com/", "KP1.", ""]),
        body in "[0-9\u{1d}A-Za-z%/?=&.#;,_-]{0,80}",
    ) {
        let _ = decode(format!("{prefix}{body}").as_bytes(), &config());
    }

    #[test]
    fn gs1_parser_never_panics(s in "[0-9\u{1d}A-Z]{0,60}|\\PC{0,60}") {
        let _ = gs1::parse_element_string(&s, Currency::NOK);
        let _ = digital_link::parse(&s, Currency::NOK);
    }

    #[test]
    fn gs1_slips_round_trip_in_any_order(
        units in 1u64..1_000_000_000_000,
        n in 0u8..=9,
        reference in "[A-Za-z0-9!%&()*+,./:;<=>?_-]{1,25}",
        foreign in any::<bool>(),
        order in Just(vec![0usize, 1, 2]).prop_shuffle(),
        trailing_gs in any::<bool>(),
    ) {
        let digits = units.to_string();
        prop_assume!(digits.len() <= 12);
        let amount = if foreign {
            (format!("391{n}"), format!("578{digits}"))
        } else {
            (format!("390{n}"), digits.clone())
        };
        let elements = vec![
            ("415".to_string(), GLN.to_string()),
            ("8020".to_string(), reference.clone()),
            amount,
        ];
        let raw = assemble(&elements, &order, trailing_gs);
        let result = decode(raw.as_bytes(), &config());
        // Independent conversion in u128: units × 100 / 10^n must be whole.
        let scaled = u128::from(units) * 100;
        let divisor = 10u128.pow(u32::from(n));
        if scaled % divisor == 0 {
            let d = result.unwrap();
            prop_assert_eq!(u128::from(d.amount.minor), scaled / divisor);
            prop_assert_eq!(d.reference, Some(reference));
        } else {
            prop_assert_eq!(result.unwrap_err().customer_reason(), CustomerReason::InvalidAmount);
        }
    }

    #[test]
    fn digital_links_round_trip(
        minor in 1u64..100_000_000,
        reference in "[A-Za-z0-9!%&()*+,./:;<=>?_\"'-]{1,25}",
    ) {
        let encoded = percent_encoding::utf8_percent_encode(&reference, percent_encoding::NON_ALPHANUMERIC);
        let uri = format!("https://example.com/415/{GLN}/8020/{encoded}?3902={minor}");
        let d = decode(uri.as_bytes(), &config()).unwrap();
        prop_assert_eq!(d.amount, nok(minor));
        prop_assert_eq!(d.reference, Some(reference));
    }

    #[test]
    fn ean13_price_codes_round_trip(
        prefix in 20u8..=22,
        article in 0u32..100_000,
        price in 1u32..100_000,
        wrong in 1u8..10,
    ) {
        let first12 = format!("{prefix}{article:05}{price:05}");
        let code = with_check(&first12);
        let d = decode(code.as_bytes(), &config()).unwrap();
        let expected = u64::from(price) * 10u64.pow(u32::from(prefix - 20));
        prop_assert_eq!(d.amount, nok(expected));
        prop_assert_eq!(d.reference, Some(format!("{prefix}{article:05}")));
        // Any other final digit is a misread.
        let last = code.as_bytes()[12] - b'0';
        let bad = format!("{first12}{}", (last + wrong) % 10);
        let is_check_error = matches!(
            decode(bad.as_bytes(), &config()),
            Err(CodeError::Ean13CheckDigit { .. })
        );
        prop_assert!(is_check_error);
    }

    #[test]
    fn signed_codes_round_trip_and_any_edit_is_refused(
        minor in 1u64..10_000_000_000,
        reference in "[A-Za-z0-9_-]{1,32}",
        lifetime in 1u64..1_000_000,
        edit_at in any::<prop::sample::Index>(),
        replacement in "[A-Za-z0-9._-]",
    ) {
        let code = sign_cart(nok(minor), &reference, NOW + lifetime, &key()).unwrap();
        let d = decode(code.as_bytes(), &config()).unwrap();
        prop_assert_eq!(d.amount, nok(minor));
        prop_assert_eq!(d.reference, Some(reference));
        let i = edit_at.index(code.len());
        prop_assume!(code[i..i + 1] != replacement);
        let edited = format!("{}{}{}", &code[..i], replacement, &code[i + 1..]);
        prop_assert!(decode(edited.as_bytes(), &config()).is_err(), "{} accepted", edited);
    }

    #[test]
    fn plain_amounts_round_trip(minor in 1u64..1_000_000_000_000) {
        let text = nok(minor).plain();
        let d = decode(text.as_bytes(), &config()).unwrap();
        prop_assert_eq!(d.amount, nok(minor));
    }
}
