//! One request's consent inputs — headers, cookies, query string, the consent endpoint's form body — from
//! arbitrary bytes: reading, deciding and parsing never panic; a decision always permits the anonymous tier and
//! a withdrawal (GPC) always leaves only it; a parsed form never returns off-site.
#![no_main]

use concierge::consent::choice::{parse_form, safe_return};
use concierge::consent::policy::{Policy, Tier};
use concierge::consent::signals::{read, FirstParty, SignalNames};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Split the input into: cookie header, query string, form body.
    let mut parts = data.splitn(3, |b| *b == 0);
    let cookie = parts.next().unwrap_or_default();
    let query = parts.next().and_then(|q| std::str::from_utf8(q).ok());
    let form = parts.next().unwrap_or_default();

    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(cookie) {
        headers.append(HeaderName::from_static("cookie"), v);
    }
    let policy = Policy::default();
    let names = SignalNames::default();
    let now = 1_790_000_000;
    for (country, sub) in [(Some("DE"), None), (Some("US"), Some("CA")), (None, None)] {
        let j = policy.jurisdiction(country, sub);
        let signals = read(&headers, query, &names);
        let d = policy.decide(j.clone(), &signals, now);
        assert!(d.permits(Tier::Anonymous));
        let mut withdrawn = signals.clone();
        withdrawn.gpc = true;
        let d = policy.decide(j, &withdrawn, now);
        assert_eq!(d.permitted.len(), 1, "GPC leaves only the anonymous tier");
    }
    if let Ok(text) = std::str::from_utf8(cookie) {
        if let Ok(fp) = FirstParty::decode(text) {
            assert_eq!(FirstParty::decode(&fp.encode()), Ok(fp));
        }
    }
    if let Ok(choice) = parse_form(form) {
        assert!(safe_return(&choice.return_to).is_some());
    }
});
