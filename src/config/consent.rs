//! `[consent]`: raw shape and its validation.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{resolve, Check};
use crate::consent::policy::{Regime, EEA_EXTRA, EU, US_PRIVACY_STATES};
use crate::consent::ConsentSettings;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsent {
    pub opt_in_countries: Option<Vec<String>>,
    pub opt_out_regions: Option<Vec<String>>,
    pub other_regions: Option<String>,
    pub unknown_region: Option<String>,
    pub firmographic_purposes: Option<Vec<i64>>,
    pub personal_purposes: Option<Vec<i64>>,
    pub dnt: Option<String>,
    pub max_age: Option<String>,
    pub tcf_cookie: Option<String>,
    pub cookie_name: Option<String>,
    pub banner_version: Option<String>,
    pub gpc_well_known: Option<bool>,
    pub gpc_last_update: Option<String>,
    pub cookie_key: Option<PathBuf>,
    pub cookie_previous_keys: Option<Vec<PathBuf>>,
    pub policy_url: Option<String>,
    pub default_language: Option<String>,
    pub texts:
        Option<std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>>,
}

/// 13 months (the CNIL's and most consent managers' limit), as days.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(395 * 24 * 3600);

fn regime(c: &mut Check, key: &str, raw: Option<&String>) -> Regime {
    match raw.map(String::as_str) {
        None | Some("opt-in") => Regime::OptIn,
        Some("opt-out") => Regime::OptOut,
        Some(other) => {
            c.fail(
                key,
                format!("`{other}` is not a regime; write \"opt-in\" or \"opt-out\""),
            );
            Regime::OptIn
        }
    }
}

fn is_code(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn countries(c: &mut Check, key: &str, list: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, item) in list.iter().enumerate() {
        let up = item.trim().to_ascii_uppercase();
        match up.as_str() {
            "EU" => out.extend(EU.iter().map(|s| s.to_string())),
            "EEA" => out.extend(EU.iter().chain(EEA_EXTRA).map(|s| s.to_string())),
            code if is_code(code, 2) => {
                out.insert(up);
            }
            _ => c.fail(
                format!("{key}[{i}]"),
                format!("`{item}` is not an ISO 3166-1 alpha-2 country code (e.g. \"CH\") or a group (\"EU\", \"EEA\")"),
            ),
        }
    }
    out
}

fn regions(c: &mut Check, key: &str, list: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, item) in list.iter().enumerate() {
        let up = item.trim().to_ascii_uppercase();
        if up == "US-PRIVACY-STATES" {
            out.extend(US_PRIVACY_STATES.iter().map(|s| format!("US-{s}")));
            continue;
        }
        match up.split_once('-') {
            Some((cc, sub)) if is_code(cc, 2) && (1..=3).contains(&sub.len()) && is_code(sub, sub.len()) => {
                out.insert(up);
            }
            _ => c.fail(
                format!("{key}[{i}]"),
                format!("`{item}` is not a region; write country-subdivision as in ISO 3166-2, e.g. \"US-CA\", or the group \"US-PRIVACY-STATES\""),
            ),
        }
    }
    out
}

fn purposes(c: &mut Check, key: &str, raw: Option<&Vec<i64>>, default: &[u8]) -> Vec<u8> {
    let Some(list) = raw else {
        return default.to_vec();
    };
    if list.is_empty() {
        c.fail(
            key,
            "must list at least one purpose: an empty list would grant the tier to any TC string",
        );
        return default.to_vec();
    }
    let mut out = Vec::new();
    let mut bad = false;
    for (i, p) in list.iter().enumerate() {
        match u8::try_from(*p) {
            Ok(p @ 1..=11) => out.push(p),
            _ => {
                bad = true;
                c.fail(
                    format!("{key}[{i}]"),
                    format!("{p} is not a TCF purpose; purposes are 1..=11"),
                );
            }
        }
    }
    if bad {
        return default.to_vec();
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A cookie name per RFC 6265 (a token).
fn cookie_name(c: &mut Check, key: &str, raw: Option<String>, default: String) -> String {
    let Some(name) = raw else { return default };
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b));
    if !ok {
        c.fail(
            key,
            format!("`{name}` is not a cookie name (letters, digits, `-_.`; up to 64)"),
        );
        return default;
    }
    name
}

pub(super) fn validate_consent(
    c: &mut Check,
    raw: Option<RawConsent>,
    base: &Path,
) -> ConsentSettings {
    let raw = raw.unwrap_or_default();
    let mut s = ConsentSettings::default();
    s.key_files.current = raw.cookie_key.as_ref().map(|p| resolve(base, p));
    s.key_files.previous = raw
        .cookie_previous_keys
        .iter()
        .flatten()
        .map(|p| resolve(base, p))
        .collect();
    let p = &mut s.policy;
    if let Some(list) = &raw.opt_in_countries {
        p.opt_in_countries = countries(c, "consent.opt_in_countries", list);
    }
    if let Some(list) = &raw.opt_out_regions {
        p.opt_out_regions = regions(c, "consent.opt_out_regions", list);
    }
    p.other_regions = regime(c, "consent.other_regions", raw.other_regions.as_ref());
    p.unknown_region = regime(c, "consent.unknown_region", raw.unknown_region.as_ref());
    p.firmographic_purposes = purposes(
        c,
        "consent.firmographic_purposes",
        raw.firmographic_purposes.as_ref(),
        &p.firmographic_purposes.clone(),
    );
    p.personal_purposes = purposes(
        c,
        "consent.personal_purposes",
        raw.personal_purposes.as_ref(),
        &p.personal_purposes.clone(),
    );
    p.dnt_is_opt_out = match raw.dnt.as_deref() {
        None | Some("record") => false,
        Some("opt-out") => true,
        Some(other) => {
            c.fail(
                "consent.dnt",
                format!("`{other}` is not a DNT policy; write \"record\" or \"opt-out\""),
            );
            false
        }
    };
    let max_age = c.positive_duration("consent.max_age", raw.max_age.as_ref(), DEFAULT_MAX_AGE);
    p.max_age_seconds = max_age.as_secs();
    s.names.tcf_cookie = cookie_name(
        c,
        "consent.tcf_cookie",
        raw.tcf_cookie,
        s.names.tcf_cookie.clone(),
    );
    s.names.first_party_cookie = cookie_name(
        c,
        "consent.cookie_name",
        raw.cookie_name,
        s.names.first_party_cookie.clone(),
    );
    if let Some(v) = raw.banner_version {
        if v.is_empty()
            || v.len() > 32
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            c.fail(
                "consent.banner_version",
                format!("`{v}` must be 1–32 letters, digits, `-`, `_` or `.`"),
            );
        } else {
            s.banner_version = v;
        }
    }
    let (catalog, problems) = crate::consent::texts::configure(
        &raw.texts.unwrap_or_default(),
        raw.default_language.as_deref(),
        raw.policy_url.as_deref(),
    );
    for (key, message) in problems {
        c.fail(key, message);
    }
    s.texts = std::sync::Arc::new(catalog);
    s.gpc_well_known = raw.gpc_well_known.unwrap_or(false);
    if let Some(d) = raw.gpc_last_update {
        let b = d.as_bytes();
        let ok = b.len() == 10
            && b[4] == b'-'
            && b[7] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, ch)| i == 4 || i == 7 || ch.is_ascii_digit());
        if ok {
            s.gpc_last_update = Some(d);
        } else {
            c.fail(
                "consent.gpc_last_update",
                format!("`{d}` is not a date; write YYYY-MM-DD"),
            );
        }
    }
    s
}
