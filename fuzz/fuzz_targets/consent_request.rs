//! One request's consent inputs — headers, cookies, query string, the consent endpoint's form body — from
//! arbitrary bytes: reading, deciding and parsing never panic; a decision always permits the anonymous tier and
//! a withdrawal (GPC) always leaves only it; a foreign cookie added to the header never turns a withheld tier
//! into a permitted one; only our own signed cookie verifies; a parsed form never returns off-site.
#![no_main]

use concierge::consent::choice::{parse_form, safe_return};
use concierge::consent::policy::{Policy, Tier};
use concierge::consent::first_party::{CookieKey, CookieKeys};
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
    let key = CookieKey::from_secret(&[9; 32]);
    let keys = CookieKeys::with(CookieKey::from_secret(&[9; 32]));
    let now = 1_790_000_000;
    // The same header with a foreign cookie in front (its value: the form bytes, without `;`).
    let mut foreign = b"zz_foreign=".to_vec();
    foreign.extend(form.iter().copied().filter(|b| *b != b';'));
    foreign.extend_from_slice(b"; ");
    foreign.extend_from_slice(cookie);
    let mut with_foreign = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(&foreign) {
        with_foreign.append(HeaderName::from_static("cookie"), v);
    }
    for (country, sub) in [(Some("DE"), None), (Some("US"), Some("CA")), (None, None)] {
        let j = policy.jurisdiction(country, sub);
        let signals = read(&headers, query, &names, &keys, false);
        let d = policy.decide(j.clone(), &signals, now);
        assert!(d.permits(Tier::Anonymous));
        if !with_foreign.is_empty() {
            let d2 = policy.decide(j.clone(), &read(&with_foreign, query, &names, &keys, false), now);
            for t in [Tier::Firmographic, Tier::Personal] {
                assert!(d.permits(t) || !d2.permits(t), "a foreign cookie granted {t:?}");
            }
        }
        let mut withdrawn = signals.clone();
        withdrawn.gpc = true;
        let d = policy.decide(j, &withdrawn, now);
        assert_eq!(d.permitted.len(), 1, "GPC leaves only the anonymous tier");
    }
    if let Ok(text) = std::str::from_utf8(cookie) {
        if let Ok(fp) = FirstParty::decode(text, &keys) {
            if fp.integrity.verified() {
                assert_eq!(fp.encode(&key), text, "only our own encoding verifies");
            }
            let signed = fp.encode(&key);
            assert!(FirstParty::decode(&signed, &keys).unwrap().integrity.verified());
            assert!(!FirstParty::decode(&signed, &CookieKeys::default()).unwrap().integrity.verified());
        }
    }
    if let Ok(choice) = parse_form(form) {
        assert!(safe_return(&choice.return_to).is_some());
    }
});
