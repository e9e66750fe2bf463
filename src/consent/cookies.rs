//! The `Cookie` header read as bytes.
//!
//! A request's cookies are hostile bytes: any cookie of any site on the visitor's browser can hold UTF-8 text or
//! a stray Latin-1 byte. Reading the whole header as text would make one such foreign cookie hide every consent
//! cookie next to it — an opt-out silently lost. So the header is split on bytes and only the values we look
//! for are decoded.
//!
//! Invariant: a consent cookie is either absent, read (exactly one distinct value, valid UTF-8), or reported as
//! unreadable with the reason ([`Unreadable`]) — never silently skipped. Foreign cookies never change what is
//! read for ours.

use http::header::{HeaderMap, COOKIE};

/// Why a cookie that is present could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Its value is not valid UTF-8.
    Undecodable,
    /// The request carries it more than once with different values (e.g. set for two paths or domains).
    Ambiguous,
}

impl Unreadable {
    /// The reason token, as in `cookie:undecodable:usprivacy`.
    pub fn token(self) -> &'static str {
        match self {
            Unreadable::Undecodable => "undecodable",
            Unreadable::Ambiguous => "ambiguous",
        }
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unreadable::Undecodable => "the cookie's value is not valid UTF-8",
            Unreadable::Ambiguous => "the cookie is sent more than once with different values",
        })
    }
}

/// Every `name=value` pair of every `Cookie` header, as bytes: the name trimmed, the value trimmed and
/// unquoted. Pairs without `=` are skipped (they name no cookie we read).
pub fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=')?;
            let name = pair[..eq].trim_ascii();
            let mut value = pair[eq + 1..].trim_ascii();
            if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                value = &value[1..value.len() - 1];
            }
            Some((name, value))
        })
}

/// The value of cookie `name`: `None` when absent, the text when present once (or several times with the same
/// value), else why it cannot be read.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<Result<&'a str, Unreadable>> {
    let mut found: Option<&[u8]> = None;
    for (n, v) in pairs(headers) {
        if n != name.as_bytes() {
            continue;
        }
        match found {
            None => found = Some(v),
            Some(first) if first == v => {}
            Some(_) => return Some(Err(Unreadable::Ambiguous)),
        }
    }
    found.map(|v| std::str::from_utf8(v).map_err(|_| Unreadable::Undecodable))
}

/// The names of the cookies the request carries that are valid UTF-8 (at most `max`), for rule conditions.
pub fn names(headers: &HeaderMap, max: usize) -> Vec<&str> {
    pairs(headers)
        .filter_map(|(n, _)| std::str::from_utf8(n).ok())
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(COOKIE, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn foreign_bytes_do_not_hide_our_cookies() {
        let h = headers(&[b"city=M\xc3\xbcnchen; usprivacy=1YYN; latin=\xfc"]);
        assert_eq!(get(&h, "usprivacy"), Some(Ok("1YYN")));
        assert_eq!(get(&h, "latin"), Some(Err(Unreadable::Undecodable)));
        assert_eq!(get(&h, "city"), Some(Ok("München")));
        assert_eq!(get(&h, "absent"), None);
    }

    #[test]
    fn duplicates_and_quotes() {
        let h = headers(&[b"a=\"x\"; a=x", b"b=1; b=2"]);
        assert_eq!(get(&h, "a"), Some(Ok("x")), "same value twice is one value");
        assert_eq!(get(&h, "b"), Some(Err(Unreadable::Ambiguous)));
        let h = headers(&[b"  spaced  =  v  ;novalue; =empty"]);
        assert_eq!(get(&h, "spaced"), Some(Ok("v")));
        assert_eq!(get(&h, ""), Some(Ok("empty")));
        assert_eq!(names(&h, 8), ["spaced", ""]);
    }
}
