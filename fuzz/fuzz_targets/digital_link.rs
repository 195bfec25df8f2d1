//! GS1 Digital Link URIs: any text must give a slip or an error, never a panic.
#![no_main]

use kioskpay::input::codes::digital_link;
use kioskpay::money::Currency;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(slip) = digital_link::parse(text, Currency::NOK) {
            assert_eq!(slip.gln.len(), 13);
            assert_eq!(slip.amount.currency, Currency::NOK);
        }
    }
});
