//! The visitor's choice as the consent endpoint receives it: the form body, the same-origin check and the
//! page to return to. Pure functions; the HTTP glue lives in the proxy.

use super::signals::FirstParty;

/// Bodies larger than this are refused (413): the form has four short fields.
pub const MAX_BODY_BYTES: usize = 2048;
const MAX_RETURN_LEN: usize = 2048;

/// What the visitor chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// `accept`, `reject` or `custom`.
    pub action: &'static str,
    pub firmographic: bool,
    pub personal: bool,
    /// A same-site path to go back to (validated; `/` when absent or unusable).
    pub return_to: String,
    /// The language of the texts the visitor chose on (`lang`), if it looks like a language tag; whether it is
    /// one of the configured languages is the caller's to check.
    pub language: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error("the form needs `choice` = accept, reject or custom")]
    MissingChoice,
    #[error("`choice` must be accept, reject or custom")]
    BadChoice,
    #[error("the form is not valid application/x-www-form-urlencoded UTF-8")]
    Malformed,
}

/// Why a request is not from a page on this site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("Sec-Fetch-Site says the request came from another site")]
    CrossSite,
    #[error("the Origin header names another site")]
    OtherOrigin,
    #[error("neither Origin nor Sec-Fetch-Site is present")]
    NoEvidence,
}

/// A POST must prove it comes from this site: `Sec-Fetch-Site: same-origin` when the browser sends it, and
/// `Origin` equal to `scheme://host` when present. At least one must be there (every current browser sends
/// `Origin` on POST; scripts can add it).
pub fn check_same_origin(
    origin: Option<&[u8]>,
    sec_fetch_site: Option<&[u8]>,
    scheme: &str,
    host: &str,
) -> Result<(), OriginError> {
    if let Some(site) = sec_fetch_site {
        if !site.trim_ascii().eq_ignore_ascii_case(b"same-origin") {
            return Err(OriginError::CrossSite);
        }
    }
    if let Some(origin) = origin {
        let expected_len = scheme.len() + 3 + host.len();
        let ok = origin.len() == expected_len
            && origin[..scheme.len()].eq_ignore_ascii_case(scheme.as_bytes())
            && &origin[scheme.len()..scheme.len() + 3] == b"://"
            && origin[scheme.len() + 3..].eq_ignore_ascii_case(host.as_bytes());
        if !ok {
            return Err(OriginError::OtherOrigin);
        }
    }
    if origin.is_none() && sec_fetch_site.is_none() {
        return Err(OriginError::NoEvidence);
    }
    Ok(())
}

/// A path on this site to send the visitor back to: absolute path, not protocol-relative, printable ASCII.
pub fn safe_return(path: &str) -> Option<&str> {
    let b = path.as_bytes();
    let ok = b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/' | b'\\'))
        && b.len() <= MAX_RETURN_LEN
        && b.iter().all(|c| c.is_ascii_graphic() && *c != b'\\');
    ok.then_some(path)
}

fn truthy(v: &str) -> bool {
    matches!(v, "on" | "yes" | "true" | "1")
}

/// Parse `choice=accept|reject|custom[&firmographic=on][&personal=on][&return=/path]`. `accept` grants and
/// `reject` refuses every tier whatever the check boxes say; `custom` takes them as given.
pub fn parse_form(body: &[u8]) -> Result<Choice, ChoiceError> {
    let text = std::str::from_utf8(body).map_err(|_| ChoiceError::Malformed)?;
    let mut action = None;
    let (mut firmographic, mut personal) = (false, false);
    let mut return_to = String::from("/");
    let mut language = None;
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or(ChoiceError::Malformed)?;
        match k {
            "choice" => {
                action = Some(match v.as_str() {
                    "accept" => "accept",
                    "reject" => "reject",
                    "custom" => "custom",
                    _ => return Err(ChoiceError::BadChoice),
                })
            }
            "firmographic" => firmographic = truthy(&v),
            "personal" => personal = truthy(&v),
            "return" => {
                if let Some(p) = safe_return(&v) {
                    return_to = p.to_string();
                }
            }
            "lang"
                if (2..=35).contains(&v.len())
                    && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                language = Some(v.to_ascii_lowercase());
            }
            _ => {}
        }
    }
    let action = action.ok_or(ChoiceError::MissingChoice)?;
    let (firmographic, personal) = match action {
        "accept" => (true, true),
        "reject" => (false, false),
        _ => (firmographic, personal),
    };
    Ok(Choice {
        action,
        firmographic,
        personal,
        return_to,
        language,
    })
}

/// A URL-encoded `return` parameter (e.g. from the choices page's query string), if it is a safe same-site
/// path.
pub fn return_param(encoded: &str) -> Option<String> {
    let decoded = percent_decode(encoded)?;
    safe_return(&decoded).map(str::to_string)
}

/// `application/x-www-form-urlencoded` value decoding (`+` is a space).
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The page part of a return path, for the record (no query string or fragment: those may carry personal
/// data).
pub fn page_of(return_to: &str) -> &str {
    return_to
        .split(['?', '#'])
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or("/")
}

/// A fresh consent id: 128 random bits from the operating system, as 32 hex digits.
pub fn new_consent_id() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The cookie value for a choice; keeps an existing consent id so a reviewer can follow one visitor's changes.
pub fn cookie_value(
    previous: Option<&FirstParty>,
    choice: &Choice,
    banner_version: &str,
    now: u64,
) -> Option<FirstParty> {
    let consent_id = match previous {
        Some(p) => p.consent_id.clone(),
        None => new_consent_id()?,
    };
    Some(FirstParty {
        consent_id,
        banner_version: banner_version.to_string(),
        time: now,
        firmographic: choice.firmographic,
        personal: choice.personal,
        integrity: super::first_party::Integrity::Signed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forms() {
        let c = parse_form(b"choice=custom&firmographic=on&return=%2Fpricing%3Fa%3D1").unwrap();
        assert_eq!(
            (c.action, c.firmographic, c.personal, c.return_to.as_str()),
            ("custom", true, false, "/pricing?a=1")
        );
        let c = parse_form(b"choice=reject&firmographic=on&personal=on").unwrap();
        assert!(!c.firmographic && !c.personal, "reject overrides boxes");
        let c = parse_form(b"choice=accept").unwrap();
        assert!(c.firmographic && c.personal);
        assert_eq!(c.return_to, "/");
        assert_eq!(
            parse_form(b"firmographic=on"),
            Err(ChoiceError::MissingChoice)
        );
        assert_eq!(parse_form(b"choice=maybe"), Err(ChoiceError::BadChoice));
        assert_eq!(parse_form(b"choice=%zz"), Err(ChoiceError::Malformed));
        assert_eq!(parse_form(b"choice=\xff"), Err(ChoiceError::Malformed));
        for evil in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "/a b",
            "/a\n",
        ] {
            let body = format!(
                "choice=accept&return={}",
                evil.replace('\n', "%0A").replace(' ', "+")
            );
            assert_eq!(
                parse_form(body.as_bytes()).unwrap().return_to,
                "/",
                "{evil}"
            );
        }
    }

    #[test]
    fn same_origin() {
        let ok = |o: Option<&str>, s: Option<&str>| {
            check_same_origin(
                o.map(str::as_bytes),
                s.map(str::as_bytes),
                "https",
                "www.example.com",
            )
        };
        assert_eq!(
            ok(Some("https://www.example.com"), Some("same-origin")),
            Ok(())
        );
        assert_eq!(ok(Some("https://WWW.example.com"), None), Ok(()));
        assert_eq!(ok(None, Some("same-origin")), Ok(()));
        assert_eq!(
            ok(Some("https://evil.example"), Some("same-origin")),
            Err(OriginError::OtherOrigin)
        );
        assert_eq!(
            ok(Some("http://www.example.com"), None),
            Err(OriginError::OtherOrigin)
        );
        assert_eq!(
            ok(Some("https://www.example.com.evil.example"), None),
            Err(OriginError::OtherOrigin)
        );
        assert_eq!(ok(Some("null"), None), Err(OriginError::OtherOrigin));
        assert_eq!(
            ok(Some("https://www.example.com"), Some("same-site")),
            Err(OriginError::CrossSite)
        );
        assert_eq!(ok(None, Some("cross-site")), Err(OriginError::CrossSite));
        assert_eq!(ok(None, None), Err(OriginError::NoEvidence));
    }

    #[test]
    fn ids_and_pages() {
        let a = new_consent_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_consent_id().unwrap());
        assert_eq!(page_of("/pricing?email=x@y#top"), "/pricing");
        let prev = FirstParty {
            consent_id: "keep".into(),
            banner_version: "0".into(),
            time: 1,
            firmographic: true,
            personal: true,
            integrity: crate::consent::first_party::Integrity::Signed,
        };
        let c = parse_form(b"choice=reject").unwrap();
        let v = cookie_value(Some(&prev), &c, "2", 99).unwrap();
        assert_eq!(
            (
                v.consent_id.as_str(),
                v.banner_version.as_str(),
                v.time,
                v.firmographic
            ),
            ("keep", "2", 99, false)
        );
        let key = crate::consent::first_party::CookieKey::from_secret(&[3; 32]);
        let keys = crate::consent::first_party::CookieKeys::with(
            crate::consent::first_party::CookieKey::from_secret(&[3; 32]),
        );
        assert_eq!(FirstParty::decode(&v.encode(&key), &keys).unwrap(), v);
    }

    proptest! {
        #[test]
        fn any_body_parses_or_fails_cleanly(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(c) = parse_form(&body) {
                prop_assert!(safe_return(&c.return_to).is_some());
            }
        }

        #[test]
        fn returns_never_leave_the_site(p in "\\PC{0,40}") {
            if let Some(r) = safe_return(&p) {
                prop_assert!(r.starts_with('/') && !r.starts_with("//") && !r.contains('\\'));
            }
        }
    }
}
