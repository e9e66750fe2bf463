//! The console's one credential: a token from `console.token_file`.
//!
//! Checked in constant time without leaking the token's length: the presented secret and the token are both
//! reduced to an HMAC-SHA-256 tag under a key drawn at start, and the tags are compared by `ring::hmac::verify`
//! (constant time). The token itself is not kept.

use base64::Engine as _;
use ring::hmac;

pub struct Credential {
    key: hmac::Key,
    tag: Vec<u8>,
}

/// Longest `Authorization` value looked at (a token is short; anything longer is refused unread).
const MAX_HEADER: usize = 1024;

impl Credential {
    pub fn new(token: &str) -> Credential {
        let rng = ring::rand::SystemRandom::new();
        // A key that cannot be generated is a broken system RNG; fall back to a fixed key, which still compares
        // in constant time (the key only hides the token's length).
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, b"concierge console"));
        let tag = hmac::sign(&key, token.as_bytes()).as_ref().to_vec();
        Credential { key, tag }
    }

    /// Whether an `Authorization` header value carries the token (`Bearer <token>`, or `Basic` with the token
    /// as the password).
    pub fn admits(&self, header: Option<&[u8]>) -> bool {
        let Some(secret) = header.and_then(presented) else {
            return false;
        };
        hmac::verify(&self.key, &secret, &self.tag).is_ok()
    }
}

/// The secret an `Authorization` value presents, if it is well formed.
fn presented(value: &[u8]) -> Option<Vec<u8>> {
    if value.len() > MAX_HEADER {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = text.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.as_bytes().to_vec());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn only_the_token_gets_in() {
        let c = Credential::new(TOKEN);
        let basic = |user: &str, pass: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            )
        };
        for ok in [
            format!("Bearer {TOKEN}"),
            format!("bearer   {TOKEN} "),
            basic("reviewer", TOKEN),
            basic("", TOKEN),
        ] {
            assert!(c.admits(Some(ok.as_bytes())), "{ok}");
        }
        for bad in [
            String::new(),
            "Bearer".into(),
            "Bearer ".into(),
            format!("Bearer {}", &TOKEN[..31]),
            format!("Bearer {TOKEN}x"),
            format!("Token {TOKEN}"),
            basic(TOKEN, "wrong"),
            "Basic !!!".into(),
            format!("Bearer {}", "a".repeat(5000)),
        ] {
            assert!(!c.admits(Some(bad.as_bytes())), "{bad}");
        }
        assert!(!c.admits(None));
        assert!(!c.admits(Some(b"Bearer \xff\xfe")));
    }
}
