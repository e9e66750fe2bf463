//! `[cache]`: the origin-response cache (off by default).

use serde::Deserialize;

use super::Check;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub enabled: Option<bool>,
    pub max_bytes: Option<u64>,
    pub max_entry_bytes: Option<u64>,
}

/// The origin-response cache: responses the origin marks shared-cacheable, kept in memory so a repeat page view
/// needs no origin round trip. What is cached is the origin's page, never a personalized one: every visitor's
/// page is still decided, recorded and rewritten on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    pub enabled: bool,
    /// Bytes of bodies held at most (oldest entries go first).
    pub max_bytes: usize,
    /// A response with a longer body is not stored.
    pub max_entry_bytes: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: false,
            max_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 2 * 1024 * 1024,
        }
    }
}

pub(super) fn validate_cache(c: &mut Check, raw: Option<RawCache>) -> CacheSettings {
    let raw = raw.unwrap_or_default();
    let d = CacheSettings::default();
    let to_usize = |v: Option<u64>| v.map(|v| usize::try_from(v).unwrap_or(usize::MAX));
    let max_bytes = c.range(
        "cache.max_bytes",
        to_usize(raw.max_bytes),
        d.max_bytes,
        64 * 1024,
        64 * 1024 * 1024 * 1024,
    );
    let max_entry_bytes = c.range(
        "cache.max_entry_bytes",
        to_usize(raw.max_entry_bytes),
        d.max_entry_bytes.min(max_bytes),
        1,
        usize::MAX,
    );
    if max_entry_bytes > max_bytes {
        c.fail(
            "cache.max_entry_bytes",
            format!("{max_entry_bytes} is more than cache.max_bytes ({max_bytes}): no such response would fit"),
        );
    }
    CacheSettings {
        enabled: raw.enabled.unwrap_or(false),
        max_bytes,
        max_entry_bytes,
    }
}
