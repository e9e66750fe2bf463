//! `Accept-Language` from arbitrary bytes: negotiation never panics, names only a configured language, and
//! never picks one the header excluded with `q=0` on its exact tag.
#![no_main]

use concierge::consent::texts::negotiate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let langs = ["en", "de", "pt-br", "zh-hant-tw"];
    if let Some(i) = negotiate(data, langs.iter().copied()) {
        assert!(i < langs.len());
        if let Ok(text) = std::str::from_utf8(data) {
            let excluded = format!("{};q=0", langs[i]);
            assert!(!text.split(',').take(32).any(|r| r.trim().eq_ignore_ascii_case(&excluded)));
        }
    }
});
