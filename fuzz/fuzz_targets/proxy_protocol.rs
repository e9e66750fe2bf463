//! PROXY protocol v1/v2 header parsing: never panic, never claim more bytes than given.
#![no_main]

use concierge::client_ip::proxy_protocol::{parse, Parsed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Parsed::Complete { len, .. } = parse(data) {
        assert!(len <= data.len());
    }
});
