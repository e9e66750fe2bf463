//! Account rule files: never panic on any text, errors always name the file.
#![no_main]

use concierge::firmographics::company::parse_account;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errors) = parse_account(std::path::Path::new("fuzz.toml"), text) {
        assert!(!errors.is_empty());
        for e in errors {
            assert!(e.to_string().starts_with("fuzz.toml"));
        }
    }
});
