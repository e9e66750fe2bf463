//! Reading the consent signals a request carries: `Sec-GPC`, `DNT`, cookies (TC string, GPP, US Privacy, our
//! own first-party consent) and the `gdpr_consent` / `gpp` / `gpp_sid` / `us_privacy` query parameters.
//!
//! Invariant: reading never fails — an undecodable signal is kept as the reason it could not be read (which the
//! policy treats as "no signal"), and every value is bounded before it is decoded.

use http::header::{HeaderMap, COOKIE};
use serde::Serialize;

use super::{gpp, tcf, usp};

/// Names of the cookies and query parameters signals are read from.
#[derive(Debug, Clone)]
pub struct SignalNames {
    pub tcf_cookie: String,
    pub first_party_cookie: String,
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

/// Our own first-party consent cookie: `1~<consent id>~<banner version>~<unix seconds>~<f><p>` where `f` and
/// `p` are `y` or `n` for the firmographic and personal tiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirstParty {
    pub consent_id: String,
    pub banner_version: String,
    /// When the choice was made (Unix seconds).
    pub time: u64,
    pub firmographic: bool,
    pub personal: bool,
}

impl FirstParty {
    pub fn encode(&self) -> String {
        let yn = |b: bool| if b { 'y' } else { 'n' };
        format!(
            "1~{}~{}~{}~{}{}",
            self.consent_id,
            self.banner_version,
            self.time,
            yn(self.firmographic),
            yn(self.personal)
        )
    }

    pub fn decode(s: &str) -> Result<FirstParty, String> {
        let parts: Vec<&str> = s.split('~').collect();
        let [version, id, banner, time, choices] = parts[..] else {
            return Err("first-party cookie: expected 5 fields".into());
        };
        if version != "1" {
            return Err(format!("first-party cookie: version {version}"));
        }
        let token = |t: &str, max: usize| {
            !t.is_empty()
                && t.len() <= max
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !token(id, 64) || !token(banner, 32) {
            return Err("first-party cookie: bad consent id or banner version".into());
        }
        let time: u64 = time
            .parse()
            .map_err(|_| "first-party cookie: bad time".to_string())?;
        let flag = |c: u8| match c {
            b'y' => Ok(true),
            b'n' => Ok(false),
            _ => Err("first-party cookie: choices must be y or n".to_string()),
        };
        let [f, p] = choices.as_bytes() else {
            return Err("first-party cookie: two choices expected".into());
        };
        Ok(FirstParty {
            consent_id: id.into(),
            banner_version: banner.into(),
            time,
            firmographic: flag(*f)?,
            personal: flag(*p)?,
        })
    }
}

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

/// Cookie values by name from every `Cookie` header (first occurrence wins), bounded in size.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
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

/// Read the signals of one request. The query string wins over cookies for TCF (`gdpr_consent`, set by ad
/// links) and GPP.
pub fn read(headers: &HeaderMap, query: Option<&str>, names: &SignalNames) -> Signals {
    let gpc = headers
        .get_all("sec-gpc")
        .iter()
        .any(|v| v.as_bytes().trim_ascii() == b"1");
    let dnt = headers
        .get_all("dnt")
        .iter()
        .any(|v| v.as_bytes().trim_ascii() == b"1");
    let tcf = query_param(query, "gdpr_consent")
        .or_else(|| cookie(headers, &names.tcf_cookie))
        .map(|v| bounded(v).and_then(|v| tcf::decode(v).map_err(|e| e.to_string())));
    let gpp = query_param(query, "gpp")
        .or_else(|| cookie(headers, "__gpp"))
        .map(|v| bounded(v).and_then(|v| gpp::decode(v).map_err(|e| e.to_string())));
    let gpp_sid = query_param(query, "gpp_sid")
        .or_else(|| cookie(headers, "__gpp_sid"))
        .map(|v| {
            v.split([',', '_'])
                .filter_map(|s| s.trim().parse().ok())
                .take(32)
                .collect()
        })
        .unwrap_or_default();
    let usp = cookie(headers, "usprivacy")
        .or_else(|| cookie(headers, "us_privacy"))
        .or_else(|| query_param(query, "us_privacy"))
        .map(|v| usp::decode(v).map_err(|e| e.to_string()));
    let first_party =
        cookie(headers, &names.first_party_cookie).map(|v| bounded(v).and_then(FirstParty::decode));
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
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn reads_every_signal() {
        let fp = FirstParty {
            consent_id: "c0ffee".into(),
            banner_version: "b2".into(),
            time: 1_764_000_000,
            firmographic: true,
            personal: false,
        };
        let h = headers(&[
            ("sec-gpc", "1"),
            ("dnt", "1"),
            (
                "cookie",
                &format!(
                    "a=b; euconsent-v2=COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA; usprivacy=1NYN; concierge_consent={}",
                    fp.encode()
                ),
            ),
            ("cookie", "__gpp=DBABLA~BVVVVVVVVWA; __gpp_sid=7"),
        ]);
        let s = read(&h, None, &SignalNames::default());
        assert!(s.gpc && s.dnt);
        assert_eq!(s.tcf.unwrap().unwrap().cmp_id, 675);
        assert!(s.usp.unwrap().unwrap().opted_out());
        assert_eq!(s.gpp.unwrap().unwrap().section_ids, [7]);
        assert_eq!(s.gpp_sid, [7]);
        assert_eq!(s.first_party.unwrap().unwrap(), fp);
    }

    #[test]
    fn query_wins_and_bad_values_keep_their_reason() {
        let h = headers(&[("cookie", "euconsent-v2=garbage"), ("sec-gpc", "0")]);
        let s = read(
            &h,
            Some("x=1&gdpr_consent=COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA"),
            &SignalNames::default(),
        );
        assert!(s.tcf.unwrap().is_ok());
        assert!(!s.gpc, "only the value 1 means GPC");
        let s = read(&h, None, &SignalNames::default());
        assert!(s.tcf.unwrap().is_err());
        let huge = format!("euconsent-v2={}", "C".repeat(5000));
        let s = read(
            &headers(&[("cookie", &huge)]),
            None,
            &SignalNames::default(),
        );
        assert!(s.tcf.unwrap().unwrap_err().contains("longer than"));
    }

    #[test]
    fn first_party_cookie_format() {
        for bad in [
            "",
            "2~a~b~1~yn",
            "1~a~b~x~yn",
            "1~a~b~1~y",
            "1~a b~b~1~yn",
            "1~a~b~1~yx",
            "1~a~b~1~yn~extra",
        ] {
            assert!(FirstParty::decode(bad).is_err(), "{bad}");
        }
    }
}
