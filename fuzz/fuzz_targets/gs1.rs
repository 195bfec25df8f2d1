//! GS1 element strings: any text must give a slip or an error, never a panic.
#![no_main]

use kioskpay::input::codes::gs1;
use kioskpay::money::Currency;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(slip) = gs1::parse_element_string(text, Currency::NOK) {
            // Whatever was accepted must be a 13-digit GLN and a non-empty reference.
            assert_eq!(slip.gln.len(), 13);
            assert!(!slip.reference.is_empty() && slip.reference.len() <= 25);
        }
    }
});
