//! Reading the consent signals a request carries: `Sec-GPC`, `DNT`, cookies (TC string, GPP, US Privacy, our
//! own first-party consent) and the `gdpr_consent` / `gpp` / `gpp_sid` / `us_privacy` query parameters.
//!
//! Invariant: reading never fails — an undecodable signal is kept as the reason it could not be read (which the
//! policy treats as "no signal"), and every value is bounded before it is decoded.

use http::header::HeaderMap;

use super::first_party::CookieKeys;
use super::{cookies, gpp, tcf, usp};

/// Names of the cookies and query parameters signals are read from.
#[derive(Debug, Clone)]
pub struct SignalNames {
    pub tcf_cookie: String,
    pub first_party_cookie: String,
}

impl SignalNames {
    /// The first-party cookie's name over HTTPS: `__Host-` + the configured name.
    pub fn host_only_cookie(&self) -> String {
        format!("__Host-{}", self.first_party_cookie)
    }
}

impl Default for SignalNames {
    fn default() -> Self {
        SignalNames {
            tcf_cookie: "euconsent-v2".into(),
            first_party_cookie: "concierge_consent".into(),
        }
    }
}

/// A signal that was present: decoded, or the reason it could not be.
pub type Read<T> = Result<T, String>;

pub use super::first_party::{FirstParty, Integrity};

/// Everything a request says about consent.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    pub gpc: bool,
    pub dnt: bool,
    pub tcf: Option<Read<tcf::TcString>>,
    pub gpp: Option<Read<gpp::Gpp>>,
    /// `__gpp_sid` / `gpp_sid`: the sections in force.
    pub gpp_sid: Vec<u16>,
    pub usp: Option<Read<usp::UsPrivacy>>,
    pub first_party: Option<Read<FirstParty>>,
}

/// A consent cookie's text, or why it cannot be read (`cookie:undecodable:<name>`, `cookie:ambiguous:<name>`:
/// the policy treats an unreadable consent cookie as a withdrawal).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<Read<&'a str>> {
    cookies::get(headers, name).map(|r| r.map_err(|why| format!("cookie:{}:{name}", why.token())))
}

/// A query parameter's raw value (not percent-decoded; the consent strings are base64url / digits, other callers
/// decode what they need).
pub fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn bounded(v: &str) -> Result<&str, String> {
    if v.len() > tcf::MAX_LEN {
        Err(format!("longer than {} characters", tcf::MAX_LEN))
    } else {
        Ok(v)
    }
}

/// A present value, bounded, then decoded.
fn decoded<T, E: std::fmt::Display>(
    value: Option<Read<&str>>,
    decode: impl Fn(&str) -> Result<T, E>,
) -> Option<Read<T>> {
    value.map(|v| v.and_then(|v| bounded(v).and_then(|v| decode(v).map_err(|e| e.to_string()))))
}

/// Of the values one signal arrived with, the one that withdraws most: the first unreadable one (it might hold a
/// withdrawal), else the first that opts out, else the first.
fn most_restrictive<T, const N: usize>(
    candidates: [Option<Read<T>>; N],
    opted_out: impl Fn(&T) -> bool,
) -> Option<Read<T>> {
    let mut present: Vec<Read<T>> = candidates.into_iter().flatten().collect();
    let pick = present
        .iter()
        .position(Result::is_err)
        .or_else(|| {
            present
                .iter()
                .position(|r| r.as_ref().is_ok_and(&opted_out))
        })
        .unwrap_or(0);
    (!present.is_empty()).then(|| present.swap_remove(pick))
}

/// Read the signals of one request; our own cookie is verified with `keys`. The query string wins over cookies
/// for TCF (`gdpr_consent`, set by ad links) and GPP.
pub fn read(
    headers: &HeaderMap,
    query: Option<&str>,
    names: &SignalNames,
    keys: &CookieKeys,
    secure: bool,
) -> Signals {
    let gpc = headers
        .get_all("sec-gpc")
        .iter()
        .any(|v| v.as_bytes().trim_ascii() == b"1");
    let dnt = headers
        .get_all("dnt")
        .iter()
        .any(|v| v.as_bytes().trim_ascii() == b"1");
    let from_query = |name| query_param(query, name).map(Ok);
    // The TC string of an ad link (`gdpr_consent`) and the CMP's cookie: both are read, and where both are
    // present only what both grant counts (a crafted link cannot override the visitor's refusal).
    let tcf = match (
        decoded(from_query("gdpr_consent"), tcf::decode),
        decoded(cookie(headers, &names.tcf_cookie), tcf::decode),
    ) {
        (Some(Ok(q)), Some(Ok(c))) if q != c => Some(Ok(tcf::most_restrictive(q, &c))),
        (Some(Err(e)), _) | (_, Some(Err(e))) => Some(Err(e)),
        (q, c) => q.or(c),
    };
    // GPP and US Privacy can each arrive from more than one place (query and cookie; two cookie names): every
    // one is read, and a withdrawal — or an unreadable value, which might be one — in any of them wins.
    let gpp = most_restrictive(
        [
            decoded(from_query("gpp"), gpp::decode),
            decoded(cookie(headers, "__gpp"), gpp::decode),
        ],
        gpp::Gpp::opted_out,
    );
    let gpp_sid = match from_query("gpp_sid").or_else(|| cookie(headers, "__gpp_sid")) {
        Some(Ok(v)) => v
            .split([',', '_'])
            .filter_map(|s| s.trim().parse().ok())
            .take(32)
            .collect(),
        _ => Vec::new(),
    };
    let usp = most_restrictive(
        [
            decoded(cookie(headers, "usprivacy"), usp::decode),
            decoded(cookie(headers, "us_privacy"), usp::decode),
            decoded(from_query("us_privacy"), usp::decode),
        ],
        usp::UsPrivacy::opted_out,
    );
    // Over HTTPS our cookie is `__Host-<name>`: host-only and Secure, so no sibling subdomain or network
    // attacker can plant one. A cookie under the plain name there may have been planted: its refusals count,
    // its grants do not.
    let decode = |v: &str| FirstParty::decode(v, keys);
    let first_party = if secure {
        match cookie(headers, &names.host_only_cookie()) {
            Some(v) => decoded(Some(v), decode),
            None => decoded(cookie(headers, &names.first_party_cookie), decode).map(|r| {
                r.map(|mut fp| {
                    if fp.integrity.verified() {
                        fp.integrity = Integrity::NotHostOnly;
                    }
                    fp
                })
            }),
        }
    } else {
        decoded(cookie(headers, &names.first_party_cookie), decode)
    };
    Signals {
        gpc,
        dnt,
        tcf,
        gpp,
        gpp_sid,
        usp,
        first_party,
    }
}

#[cfg(test)]
mod tests {
    use super::super::first_party::CookieKey;
    use super::super::policy::{Policy, Tier};
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    fn key() -> CookieKey {
        CookieKey::from_secret(&[5; 32])
    }

    fn keys() -> CookieKeys {
        CookieKeys::with(key())
    }

    fn read_h(h: &HeaderMap, query: Option<&str>) -> Signals {
        read(h, query, &SignalNames::default(), &keys(), false)
    }

    #[test]
    fn reads_every_signal() {
        let fp = FirstParty {
            consent_id: "c0ffee".into(),
            banner_version: "b2".into(),
            time: 1_764_000_000,
            firmographic: true,
            personal: false,
            integrity: Integrity::Signed,
        };
        let h = headers(&[
            ("sec-gpc", b"1"),
            ("dnt", b"1"),
            (
                "cookie",
                format!(
                    "a=b; euconsent-v2=COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA; usprivacy=1NYN; concierge_consent={}",
                    fp.encode(&key())
                ).as_bytes(),
            ),
            ("cookie", b"__gpp=DBABLA~BVVVVVVVVWA; __gpp_sid=7"),
        ]);
        let s = read_h(&h, None);
        assert!(s.gpc && s.dnt);
        assert_eq!(s.tcf.unwrap().unwrap().cmp_id, 675);
        assert!(s.usp.unwrap().unwrap().opted_out());
        assert_eq!(s.gpp.unwrap().unwrap().section_ids, [7]);
        assert_eq!(s.gpp_sid, [7]);
        assert_eq!(s.first_party.unwrap().unwrap(), fp);
    }

    #[test]
    fn the_query_is_read_and_bad_values_keep_their_reason() {
        let q = Some("x=1&gdpr_consent=COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA");
        let s = read_h(&headers(&[("sec-gpc", b"0")]), q);
        assert_eq!(s.tcf.unwrap().unwrap().cmp_id, 675);
        assert!(!s.gpc, "only the value 1 means GPC");
        // Beside an unreadable cookie copy, the query's grant does not count.
        let h = headers(&[("cookie", b"euconsent-v2=garbage")]);
        assert!(read_h(&h, q).tcf.unwrap().is_err());
        let s = read_h(&h, None);
        assert!(s.tcf.unwrap().is_err());
        let huge = format!("euconsent-v2={}", "C".repeat(5000));
        let s = read_h(&headers(&[("cookie", huge.as_bytes())]), None);
        assert!(s.tcf.unwrap().unwrap_err().contains("longer than"));
    }

    /// Regression: one foreign cookie holding UTF-8 or a Latin-1 byte made the whole Cookie header unreadable,
    /// and the opt-out beside it was lost.
    #[test]
    fn foreign_non_ascii_cookies_do_not_hide_an_opt_out() {
        for foreign in [&b"city=M\xc3\xbcnchen"[..], b"city=M\xfcnchen"] {
            let mut cookie = foreign.to_vec();
            cookie.extend_from_slice(b"; usprivacy=1YYN");
            let s = read_h(&headers(&[("cookie", &cookie)]), None);
            assert!(s.usp.unwrap().unwrap().opted_out());
        }
        // Our own cookie unreadable: kept as the reason, which the policy treats as a withdrawal.
        let s = read_h(
            &headers(&[("cookie", b"concierge_consent=2~\xff~1~1~yy~k~t")]),
            None,
        );
        assert_eq!(
            s.first_party.unwrap().unwrap_err(),
            "cookie:undecodable:concierge_consent"
        );
    }

    /// Review finding: a `gdpr_consent` query parameter replaced the cookie outright, so a crafted link could
    /// override a visitor's TCF refusal.
    #[test]
    fn a_link_cannot_override_the_cmps_refusal() {
        let mut refusing = tcf::decode("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA").unwrap();
        refusing.purpose_consents = [1].into();
        let mut granting = refusing.clone();
        granting.purpose_consents = [1, 5, 6].into();
        let enc = |t: &tcf::TcString| tcf::tests::encode(t);
        let h = headers(&[(
            "cookie",
            format!("euconsent-v2={}", enc(&refusing)).as_bytes(),
        )]);
        let s = read_h(&h, Some(&format!("gdpr_consent={}", enc(&granting))));
        let t = s.tcf.unwrap().unwrap();
        assert_eq!(t.purpose_consents, [1].into(), "only what both grant");
        let garbled = headers(&[("cookie", b"euconsent-v2=%%%")]);
        let s = read_h(&garbled, Some(&format!("gdpr_consent={}", enc(&granting))));
        assert!(s.tcf.unwrap().is_err(), "an unreadable copy fails closed");
    }

    /// Review finding: a signed cookie could be planted by a sibling subdomain (`Domain=.example.com`) or, on
    /// HTTP, by a network attacker. Over HTTPS only the `__Host-` cookie grants.
    #[test]
    fn over_https_only_the_host_only_cookie_grants() {
        let signed = FirstParty {
            consent_id: "c".into(),
            banner_version: "1".into(),
            time: 1_764_000_000,
            firmographic: true,
            personal: false,
            integrity: Integrity::Signed,
        }
        .encode(&key());
        let https = |h: &HeaderMap| read(h, None, &SignalNames::default(), &keys(), true);
        let plain = headers(&[("cookie", format!("concierge_consent={signed}").as_bytes())]);
        let fp = https(&plain).first_party.unwrap().unwrap();
        assert_eq!(fp.integrity, Integrity::NotHostOnly);
        assert!(!fp.integrity.verified());
        let host = headers(&[(
            "cookie",
            format!("__Host-concierge_consent={signed}").as_bytes(),
        )]);
        assert!(https(&host)
            .first_party
            .unwrap()
            .unwrap()
            .integrity
            .verified());
        // Over plain HTTP the plain name is all there is.
        assert!(read_h(&plain, None)
            .first_party
            .unwrap()
            .unwrap()
            .integrity
            .verified());
    }

    #[test]
    fn a_withdrawal_anywhere_wins() {
        let s = read_h(
            &headers(&[("cookie", b"usprivacy=1YNN; us_privacy=1YYN")]),
            None,
        );
        assert!(s.usp.unwrap().unwrap().opted_out(), "either cookie name");
        let s = read_h(
            &headers(&[("cookie", b"usprivacy=1YNN")]),
            Some("us_privacy=1YYN"),
        );
        assert!(s.usp.unwrap().unwrap().opted_out(), "cookie or query");
        let s = read_h(
            &headers(&[("cookie", b"usprivacy=1YNN; usprivacy=1YYN")]),
            None,
        );
        assert_eq!(
            s.usp.unwrap().unwrap_err(),
            "cookie:ambiguous:usprivacy",
            "the same cookie twice with different values"
        );
        let s = read_h(
            &headers(&[("cookie", b"__gpp=DBABBg~BAAAAACA")]),
            Some("gpp=DBABLA~BVVVVVVVVWA"),
        );
        assert!(s.gpp.unwrap().unwrap().opted_out());
    }

    /// Cookie names that are ours and must not be generated as "foreign".
    fn ours(name: &[u8]) -> bool {
        let name = name.trim_ascii();
        [
            &b"euconsent-v2"[..],
            b"concierge_consent",
            b"__gpp",
            b"__gpp_sid",
            b"usprivacy",
            b"us_privacy",
        ]
        .contains(&name)
    }

    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        // Every byte a header value may hold: visible ASCII, space, tab, obs-text.
        proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..40)
    }

    fn consent_cookie() -> impl Strategy<Value = String> {
        let now = 1_764_000_000u64;
        prop_oneof![
            Just("usprivacy=1YYN".to_string()),
            Just("usprivacy=1YNN".to_string()),
            Just("us_privacy=1NYN".to_string()),
            Just("__gpp=DBABLA~BVVVVVVVVWA".to_string()),
            Just("__gpp=DBABBg~BAAAAACA".to_string()),
            Just("euconsent-v2=COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA".to_string()),
            any::<(bool, bool)>().prop_map(move |(f, p)| format!(
                "concierge_consent={}",
                FirstParty {
                    consent_id: "abc".into(),
                    banner_version: "1".into(),
                    time: now - 60,
                    firmographic: f,
                    personal: p,
                    integrity: Integrity::Signed,
                }
                .encode(&key())
            )),
        ]
    }

    proptest! {
        /// Adding any foreign cookie, of any bytes, in the same header or its own, never turns a withheld tier
        /// into a permitted one.
        #[test]
        fn foreign_cookies_never_grant(
            base in proptest::collection::vec(consent_cookie(), 0..4),
            name in header_bytes().prop_filter("not one of ours", |n| !ours(n) && !n.contains(&b'=') && !n.contains(&b';')),
            value in header_bytes().prop_filter("one cookie", |v| !v.contains(&b';')),
            own_header: bool,
            region in prop_oneof![Just(("DE", None)), Just(("US", Some("CA")))],
        ) {
            let now = 1_764_000_000u64;
            let policy = Policy::default();
            let jurisdiction = policy.jurisdiction(Some(region.0), region.1);
            let base_line = base.join("; ");
            let mut foreign = name.clone();
            foreign.push(b'=');
            foreign.extend_from_slice(&value);
            let before = headers(&[("cookie", base_line.as_bytes())]);
            let after = if own_header {
                headers(&[("cookie", base_line.as_bytes()), ("cookie", &foreign)])
            } else {
                let mut line = foreign.clone();
                line.extend_from_slice(b"; ");
                line.extend_from_slice(base_line.as_bytes());
                headers(&[("cookie", &line)])
            };
            let d0 = policy.decide(jurisdiction.clone(), &read_h(&before, None), now);
            let d1 = policy.decide(jurisdiction, &read_h(&after, None), now);
            for tier in [Tier::Firmographic, Tier::Personal] {
                prop_assert!(d0.permits(tier) || !d1.permits(tier), "{tier:?}: {:?} → {:?}", d0.reasons, d1.reasons);
            }
        }
    }
}
