//! Our own first-party consent cookie, and the keys that make it unforgeable.
//!
//! Format (version 2): `2~<consent id>~<banner version>~<unix seconds>~<f><p>~<key id>~<tag>` — `f`/`p` are `y`
//! or `n` for the firmographic and personal tiers; `tag` is HMAC-SHA-256 under the key named by `key id` over
//! everything before it, truncated to 128 bits, base64url. Only the proxy holds the key, so only the proxy can
//! write a cookie that grants anything.
//!
//! Invariant: a grant counts only from a cookie whose tag verifies under a configured key
//! ([`Integrity::verified`]); a refusal counts from any cookie we can read, signed or not — a withdrawal needs no
//! proof, a grant does. Version 1 cookies (`1~…`, before signing) read as [`Integrity::Unsigned`].

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine as _;
use serde::Serialize;

/// How far in the future a choice time may be (clock skew between proxies) before it is not believed.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 300;

/// Bytes of a key file's secret, at least.
const KEY_BYTES: usize = 32;
/// Bytes of the tag kept in the cookie.
const TAG_BYTES: usize = 16;
/// Domain separation: the tag is never valid for anything else signed with the same key.
const TAG_CONTEXT: &[u8] = b"concierge-consent-cookie/2\n";

/// Whether a cookie's integrity tag verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Integrity {
    /// Signed with the current key.
    Signed,
    /// Signed with a previous key (`consent.cookie_previous_keys`): still good, re-signed at the next choice.
    PreviousKey,
    /// A version 1 cookie, written before cookies were signed.
    Unsigned,
    /// Names a key this proxy does not have.
    UnknownKey,
    /// The tag does not match: altered or forged.
    BadTag,
    /// Signed, but sent over HTTPS under the plain name instead of `__Host-<name>`: it may have been planted
    /// by a sibling subdomain, so it grants nothing.
    NotHostOnly,
}

impl Integrity {
    /// The cookie may grant a tier.
    pub fn verified(self) -> bool {
        matches!(self, Integrity::Signed | Integrity::PreviousKey)
    }

    /// The reason token for an unverified cookie (`first-party:unverified:<token>`).
    pub fn token(self) -> &'static str {
        match self {
            Integrity::Signed => "signed",
            Integrity::PreviousKey => "previous-key",
            Integrity::Unsigned => "unsigned",
            Integrity::UnknownKey => "unknown-key",
            Integrity::BadTag => "bad-tag",
            Integrity::NotHostOnly => "not-host-only",
        }
    }
}

/// A decoded first-party cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FirstParty {
    pub consent_id: String,
    pub banner_version: String,
    /// When the choice was made (Unix seconds).
    pub time: u64,
    pub firmographic: bool,
    pub personal: bool,
    /// Set by [`FirstParty::decode`]; ignored by [`FirstParty::encode`], which always signs.
    pub integrity: Integrity,
}

#[derive(Debug, thiserror::Error)]
pub enum CookieKeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: not a cookie key (expected the base64 of at least 32 random bytes, from `concierge consent keygen`)")]
    NotAKey(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot generate a key: the system's random number generator failed")]
    Generate,
}

/// One HMAC key with its short id (derived from the key, so a cookie names the key it was signed with without
/// revealing anything about it).
pub struct CookieKey {
    id: String,
    key: ring::hmac::Key,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CookieKey({})", self.id)
    }
}

impl CookieKey {
    pub fn from_secret(secret: &[u8]) -> CookieKey {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &[b"concierge-cookie-key-id\n", secret].concat(),
        );
        CookieKey {
            id: crate::audit::chain::hex(&digest.as_ref()[..4]),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        }
    }

    /// A fresh random key: (the key file's text, the key).
    pub fn generate() -> Result<(String, CookieKey), CookieKeyError> {
        use ring::rand::SecureRandom;
        let mut secret = [0u8; KEY_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| CookieKeyError::Generate)?;
        Ok((B64.encode(secret) + "\n", CookieKey::from_secret(&secret)))
    }

    pub fn load(path: &Path) -> Result<CookieKey, CookieKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| CookieKeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let secret = B64
            .decode(text.trim())
            .ok()
            .filter(|s| s.len() >= KEY_BYTES)
            .ok_or_else(|| CookieKeyError::NotAKey(path.display().to_string()))?;
        Ok(CookieKey::from_secret(&secret))
    }

    /// A new key written to `path`, readable by its owner only.
    pub fn create(path: &Path) -> Result<CookieKey, CookieKeyError> {
        let (text, key) = CookieKey::generate()?;
        crate::audit::keys::write_private(path, &text).map_err(|source| CookieKeyError::Write {
            path: path.display().to_string(),
            source,
        })?;
        Ok(key)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn tag(&self, payload: &str) -> String {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(TAG_CONTEXT);
        ctx.update(payload.as_bytes());
        B64URL.encode(&ctx.sign().as_ref()[..TAG_BYTES])
    }
}

/// The keys a proxy signs and verifies cookies with: the current one, and previous ones still accepted while
/// the cookies they signed live (rotation without logging everyone out).
#[derive(Debug, Default)]
pub struct CookieKeys {
    pub current: Option<CookieKey>,
    pub previous: Vec<CookieKey>,
}

/// Where the keys come from (`consent.cookie_key`, `consent.cookie_previous_keys`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CookieKeyFiles {
    /// The current key; `None`: `<audit.dir>/cookie.key`, created on first start.
    pub current: Option<PathBuf>,
    pub previous: Vec<PathBuf>,
}

impl CookieKeys {
    /// Load the configured keys. Without `consent.cookie_key`, the key at `default_path` is used — created
    /// when `create` is set (serving), else left out (the CLI then verifies nothing).
    pub fn load(
        files: &CookieKeyFiles,
        default_path: &Path,
        create: bool,
    ) -> Result<CookieKeys, CookieKeyError> {
        let current = match &files.current {
            Some(path) => Some(CookieKey::load(path)?),
            None if default_path.exists() => Some(CookieKey::load(default_path)?),
            None if create => {
                if let Some(dir) = default_path.parent() {
                    std::fs::create_dir_all(dir).map_err(|source| CookieKeyError::Write {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                let key = CookieKey::create(default_path)?;
                tracing::warn!(
                    key = %default_path.display(),
                    "consent.cookie_key is not set: created a key for the consent cookie; every proxy serving \
                     this site must share it (copy it, and set consent.cookie_key)"
                );
                Some(key)
            }
            None => None,
        };
        let previous = files
            .previous
            .iter()
            .map(|p| CookieKey::load(p))
            .collect::<Result<_, _>>()?;
        Ok(CookieKeys { current, previous })
    }

    /// Keys held in memory (tests, the demo).
    pub fn with(current: CookieKey) -> CookieKeys {
        CookieKeys {
            current: Some(current),
            previous: Vec::new(),
        }
    }

    fn verify(&self, kid: &str, payload: &str, tag: &str) -> Integrity {
        let candidates = self
            .current
            .iter()
            .map(|k| (k, Integrity::Signed))
            .chain(self.previous.iter().map(|k| (k, Integrity::PreviousKey)));
        for (key, integrity) in candidates {
            if key.id == kid {
                let Ok(tag) = B64URL.decode(tag) else {
                    return Integrity::BadTag;
                };
                let mut ctx = ring::hmac::Context::with_key(&key.key);
                ctx.update(TAG_CONTEXT);
                ctx.update(payload.as_bytes());
                let full = ctx.sign();
                // Compared without an early exit (ring's constant-time compare is deprecated for outside use).
                let differ = full.as_ref()[..TAG_BYTES]
                    .iter()
                    .zip(&tag)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                return if tag.len() == TAG_BYTES && differ == 0 {
                    integrity
                } else {
                    Integrity::BadTag
                };
            }
        }
        Integrity::UnknownKey
    }
}

fn token(t: &str, max: usize) -> bool {
    !t.is_empty()
        && t.len() <= max
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl FirstParty {
    /// The cookie value, signed with `key`.
    pub fn encode(&self, key: &CookieKey) -> String {
        let yn = |b: bool| if b { 'y' } else { 'n' };
        let payload = format!(
            "2~{}~{}~{}~{}{}~{}",
            self.consent_id,
            self.banner_version,
            self.time,
            yn(self.firmographic),
            yn(self.personal),
            key.id
        );
        let tag = key.tag(&payload);
        format!("{payload}~{tag}")
    }

    /// Read a cookie value; its [`FirstParty::integrity`] says whether it can be believed. Err: not a
    /// first-party cookie at all (which the policy treats as an unreadable withdrawal).
    pub fn decode(s: &str, keys: &CookieKeys) -> Result<FirstParty, String> {
        let parts: Vec<&str> = s.splitn(8, '~').collect();
        let (fields, integrity) = match parts[..] {
            ["1", id, banner, time, choices] => ([id, banner, time, choices], Integrity::Unsigned),
            ["2", id, banner, time, choices, kid, tag] => {
                if !token(kid, 16) || !token(tag, 64) {
                    return Err("first-party cookie: bad key id or tag".into());
                }
                let payload_len = s.len() - tag.len() - 1;
                let integrity = keys.verify(kid, &s[..payload_len], tag);
                ([id, banner, time, choices], integrity)
            }
            [v, ..] if v != "1" && v != "2" => {
                return Err(format!(
                    "first-party cookie: version {}",
                    v.chars().take(8).collect::<String>()
                ))
            }
            _ => return Err("first-party cookie: wrong number of fields".into()),
        };
        let [id, banner, time, choices] = fields;
        if !token(id, 64) || !token(banner, 32) {
            return Err("first-party cookie: bad consent id or banner version".into());
        }
        if time.is_empty() || time.len() > 20 || !time.bytes().all(|b| b.is_ascii_digit()) {
            return Err("first-party cookie: bad time".into());
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
            integrity,
        })
    }
}

/// `concierge consent keygen`'s default and the key's place without `consent.cookie_key`.
pub fn default_key_path(audit_dir: &Path) -> PathBuf {
    audit_dir.join("cookie.key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fp(f: bool, p: bool) -> FirstParty {
        FirstParty {
            consent_id: "c0ffee".into(),
            banner_version: "b2".into(),
            time: 1_764_000_000,
            firmographic: f,
            personal: p,
            integrity: Integrity::Signed,
        }
    }

    fn key(byte: u8) -> CookieKey {
        CookieKey::from_secret(&[byte; 32])
    }

    #[test]
    fn signed_cookies_round_trip_and_rotate() {
        let keys = CookieKeys::with(key(1));
        let v = fp(true, false).encode(&key(1));
        assert!(v.starts_with("2~c0ffee~b2~1764000000~yn~"), "{v}");
        assert_eq!(FirstParty::decode(&v, &keys).unwrap(), fp(true, false));
        // Rotation: the old key moves to `previous`; its cookies stay good.
        let rotated = CookieKeys {
            current: Some(key(2)),
            previous: vec![key(1)],
        };
        assert_eq!(
            FirstParty::decode(&v, &rotated).unwrap().integrity,
            Integrity::PreviousKey
        );
        let dropped = CookieKeys::with(key(2));
        assert_eq!(
            FirstParty::decode(&v, &dropped).unwrap().integrity,
            Integrity::UnknownKey
        );
    }

    #[test]
    fn forged_and_legacy_cookies_are_not_verified() {
        let keys = CookieKeys::with(key(1));
        let good = fp(false, false).encode(&key(1));
        // Flip the refusal into a grant, keep the tag.
        let forged = good.replacen("~nn~", "~yy~", 1);
        let d = FirstParty::decode(&forged, &keys).unwrap();
        assert_eq!(d.integrity, Integrity::BadTag);
        assert!(d.firmographic, "read as written, just not believed");
        // Signed under a key the attacker made up, naming our key id.
        let attacker = key(9);
        let mut made_up = fp(true, true).encode(&attacker);
        made_up = made_up.replace(attacker.id(), key(1).id());
        assert_eq!(
            FirstParty::decode(&made_up, &keys).unwrap().integrity,
            Integrity::BadTag
        );
        let legacy = FirstParty::decode("1~abc~1~1764000000~yy", &keys).unwrap();
        assert_eq!(legacy.integrity, Integrity::Unsigned);
        assert!(!legacy.integrity.verified());
        assert_eq!(
            FirstParty::decode("1~abc~1~1764000000~yy", &CookieKeys::default())
                .unwrap()
                .integrity,
            Integrity::Unsigned
        );
    }

    #[test]
    fn malformed_cookies() {
        let keys = CookieKeys::with(key(1));
        for bad in [
            "",
            "3~a~b~1~yn",
            "1~a~b~x~yn",
            "1~a~b~+1~yn",
            "1~a~b~1~y",
            "1~a b~b~1~yn",
            "1~a~b~1~yx",
            "1~a~b~1~yn~extra",
            "2~a~b~1~yn~kid",
            "2~a~b~1~yn~k d~tag",
            "2~a~b~1~yn~kid~tag~more",
        ] {
            assert!(FirstParty::decode(bad, &keys).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cookie.key");
        let files = CookieKeyFiles::default();
        let none = CookieKeys::load(&files, &path, false).unwrap();
        assert!(none.current.is_none() && !path.exists());
        let created = CookieKeys::load(&files, &path, true).unwrap();
        let again = CookieKeys::load(&files, &path, false).unwrap();
        assert_eq!(
            created.current.unwrap().id(),
            again.current.as_ref().unwrap().id()
        );
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(
            CookieKeys::load(&files, &path, false),
            Err(CookieKeyError::NotAKey(_))
        ));
    }

    proptest! {
        #[test]
        fn any_value_decodes_or_fails_cleanly(s in "\\PC{0,120}") {
            let keys = CookieKeys::with(key(1));
            if let Ok(c) = FirstParty::decode(&s, &keys) {
                // Nothing but our own encoding verifies.
                if c.integrity.verified() {
                    prop_assert_eq!(c.encode(&key(1)), s);
                }
            }
        }

        #[test]
        fn only_the_key_holder_can_grant(id in "[a-f0-9]{1,32}", f: bool, p: bool, time in 0u64..5_000_000_000) {
            let keys = CookieKeys::with(key(1));
            let c = FirstParty { consent_id: id, banner_version: "1".into(), time, firmographic: f, personal: p,
                                 integrity: Integrity::Signed };
            let ours = c.encode(&key(1));
            prop_assert_eq!(FirstParty::decode(&ours, &keys).unwrap(), c.clone());
            let theirs = c.encode(&key(7));
            prop_assert!(!FirstParty::decode(&theirs, &keys).unwrap().integrity.verified());
        }
    }
}
