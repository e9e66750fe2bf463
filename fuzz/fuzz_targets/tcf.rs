//! TCF v2.2 TC strings, GPP strings and US Privacy strings: never panic on any text; decoded id sets respect
//! the caps.
#![no_main]

use concierge::consent::tcf::{decode, MAX_VENDOR_ID};
use concierge::consent::{gpp, usp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(tc) = decode(text) {
        assert!(tc.vendor_consents.iter().all(|v| *v >= 1 && *v <= MAX_VENDOR_ID));
        assert!(tc.purpose_consents.iter().all(|p| (1..=24).contains(p)));
    }
    let _ = gpp::decode(text);
    let _ = usp::decode(text);
});
