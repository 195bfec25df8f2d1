//! In-store EAN-13 price codes, with the default rules and with price-check-digit rules.
#![no_main]

use kioskpay::input::codes::ean13::{self, Ean13Rule, Ean13Rules};
use kioskpay::money::Currency;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ean13::parse(text, &Ean13Rules::default(), Currency::NOK);
    let checked = [20u8, 21, 22]
        .iter()
        .zip([4u8, 5, 5])
        .map(|(&prefix, price_digits)| Ean13Rule::Price {
            prefix,
            price_digits,
            decimals: 2,
            price_check: true,
        })
        .collect();
    if let Ok(rules) = Ean13Rules::new(checked) {
        if let Ok(price) = ean13::parse(text, &rules, Currency::NOK) {
            assert!((20..=22).contains(&price.prefix));
        }
    }
});
