//! The front door: raw scanner bytes, every format enabled.
#![no_main]

use kioskpay::input::codes::{decode, DecodeConfig};
use kioskpay::money::Currency;
use kioskpay::secret::Secret;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut config = DecodeConfig::new(Currency::NOK);
    config.signing_key = Some(Secret::new("fuzz-signing-key-0123456789"));
    config.now_unix = 1_767_225_600;
    if let Ok(decoded) = decode(data, &config) {
        assert!(decoded.amount.minor > 0);
        assert_eq!(decoded.amount.currency, Currency::NOK);
        if let Err(e) = decode(data, &config) {
            panic!("second decode of the same bytes failed: {e}");
        }
    }
});
