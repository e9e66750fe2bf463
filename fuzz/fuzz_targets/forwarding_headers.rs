//! X-Forwarded-For and Forwarded parsing and the right-to-left walk: never panic, and the same input always
//! gives the same client.
#![no_main]

use concierge::client_ip::{resolve, ForwardingHeader, Source, TrustedProxies};
use http::header::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-for", value.clone());
    headers.insert("forwarded", value);
    let trusted = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
    let peer = "10.0.0.2".parse().unwrap();
    for mode in [ForwardingHeader::XForwardedFor, ForwardingHeader::Forwarded] {
        let a = resolve(peer, Source::Peer, &headers, &trusted, mode);
        let b = resolve(peer, Source::Peer, &headers, &trusted, mode);
        assert_eq!(a, b);
        // Falling back is always to the peer itself.
        if a.client.source == Source::Peer {
            assert_eq!(a.client.addr, peer);
        }
    }
});
