//! `[consent]`, `[audit]` and `[[geo.static]]`: raw shapes and their validation.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{resolve, Check};
use crate::consent::policy::{Regime, EEA_EXTRA, EU, US_PRIVACY_STATES};
use crate::consent::ConsentSettings;
use crate::firmographics::Geo;

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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub dir: Option<PathBuf>,
    pub signing_key: Option<PathBuf>,
    pub fsync: Option<String>,
    pub wait: Option<String>,
    pub queue: Option<usize>,
    pub checkpoint_records: Option<u64>,
    pub checkpoint_interval: Option<String>,
    pub commit_window: Option<String>,
    pub segment_bytes: Option<u64>,
    pub segment_age: Option<String>,
    pub retention: Option<String>,
    pub client: Option<String>,
    pub client_key_rotation: Option<String>,
    pub record_refusals: Option<bool>,
    pub sink: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeoStatic {
    pub network: Option<String>,
    pub country: Option<String>,
    pub subdivision: Option<String>,
}

/// The audit log: where, how durable, how the client is pseudonymized.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub dir: PathBuf,
    /// Ed25519 private key (PEM) signing checkpoints; required to serve.
    pub signing_key: Option<PathBuf>,
    pub fsync: crate::audit::writer::Fsync,
    /// A personalized response waits for its record to be durable (else: for the writer to accept it).
    pub wait_durable: bool,
    pub queue: usize,
    pub checkpoint_records: u64,
    pub checkpoint_interval: Duration,
    pub commit_window: Duration,
    pub segment_bytes: u64,
    pub segment_age: Duration,
    pub retention: Duration,
    pub client: crate::audit::ClientMode,
    pub client_key_rotation: Duration,
    /// A decision record also for every page where the Decision withheld the firmographic tier.
    pub record_refusals: bool,
    /// Where records go: the file writer (always, in production), or nowhere (benchmarks).
    pub sink: crate::audit::SinkKind,
}

impl AuditSettings {
    /// Writer options for one stream.
    pub fn writer_options(&self, stream: &str) -> crate::audit::writer::Options {
        crate::audit::writer::Options {
            queue: self.queue,
            fsync: self.fsync,
            checkpoint_records: self.checkpoint_records,
            checkpoint_interval: self.checkpoint_interval,
            commit_window: self.commit_window,
            segment_bytes: self.segment_bytes,
            segment_age: self.segment_age,
            retention: self.retention,
            ..crate::audit::writer::Options::new(stream)
        }
    }
}

pub const DEFAULT_AUDIT_DIR: &str = "audit";
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

pub(super) fn validate_audit(
    c: &mut Check,
    raw: Option<RawAudit>,
    base: &Path,
    consent_max_age: Duration,
) -> AuditSettings {
    use crate::audit::writer::Fsync;
    use crate::audit::ClientMode;
    let raw = raw.unwrap_or_default();
    let dir = raw.dir.unwrap_or_else(|| PathBuf::from(DEFAULT_AUDIT_DIR));
    let fsync = match raw.fsync.as_deref() {
        None | Some("batch") => Fsync::Batch,
        Some(text) => {
            match humantime::parse_duration(text) {
                Ok(d) if !d.is_zero() && d <= Duration::from_secs(60) => Fsync::Interval(d),
                _ => {
                    c.fail(
                    "audit.fsync",
                    format!("`{text}` is neither \"batch\" nor an interval up to 60s such as \"100ms\""),
                );
                    Fsync::Batch
                }
            }
        }
    };
    // "durable" by default: no audit record, no personalization — also across a crash.
    let wait_durable = match raw.wait.as_deref() {
        None | Some("durable") => true,
        Some("accepted") => false,
        Some(other) => {
            c.fail(
                "audit.wait",
                format!("`{other}` is not a policy; write \"durable\" or \"accepted\""),
            );
            true
        }
    };
    let client = match raw.client.as_deref() {
        None | Some("keyed-hash") => ClientMode::KeyedHash,
        Some("truncate") => ClientMode::Truncate,
        Some("omit") => ClientMode::Omit,
        Some(other) => {
            c.fail(
                "audit.client",
                format!("`{other}` is not a mode; write \"keyed-hash\", \"truncate\" or \"omit\""),
            );
            ClientMode::KeyedHash
        }
    };
    let queue = c.range("audit.queue", raw.queue, 65_536, 16, 10_000_000);
    let checkpoint_records = c.range(
        "audit.checkpoint_records",
        raw.checkpoint_records.map(|v| v as usize),
        10_000,
        1,
        100_000_000,
    ) as u64;
    let checkpoint_interval = c.positive_duration(
        "audit.checkpoint_interval",
        raw.checkpoint_interval.as_ref(),
        Duration::from_secs(10),
    );
    let commit_window = c.duration(
        "audit.commit_window",
        raw.commit_window.as_ref(),
        Duration::from_millis(2),
    );
    if commit_window > Duration::from_millis(100) {
        c.fail(
            "audit.commit_window",
            "must be at most 100ms (records wait this long before they are written)",
        );
    }
    let segment_bytes = c.range(
        "audit.segment_bytes",
        raw.segment_bytes.map(|v| v as usize),
        64 * 1024 * 1024,
        64 * 1024,
        1 << 40,
    ) as u64;
    let segment_age = c.positive_duration(
        "audit.segment_age",
        raw.segment_age.as_ref(),
        Duration::from_secs(24 * 3600),
    );
    let retention = c.positive_duration(
        "audit.retention",
        raw.retention.as_ref(),
        Duration::from_secs(400 * 24 * 3600),
    );
    if retention < consent_max_age {
        c.fail(
            "audit.retention",
            format!(
                "{} is shorter than consent.max_age ({}): proof of consent must be kept as long as the consent lasts",
                humantime::format_duration(retention),
                humantime::format_duration(consent_max_age)
            ),
        );
    }
    let client_key_rotation = c.positive_duration(
        "audit.client_key_rotation",
        raw.client_key_rotation.as_ref(),
        Duration::from_secs(24 * 3600),
    );
    AuditSettings {
        dir: resolve(base, &dir),
        signing_key: raw.signing_key.map(|p| resolve(base, &p)),
        fsync,
        wait_durable,
        queue,
        checkpoint_records,
        checkpoint_interval,
        commit_window,
        segment_bytes,
        segment_age,
        retention,
        client,
        client_key_rotation,
        record_refusals: raw.record_refusals.unwrap_or(false),
        sink: match raw.sink.as_deref() {
            None | Some("file") => crate::audit::SinkKind::File,
            Some("discard-for-benchmarks") => crate::audit::SinkKind::DiscardForBenchmarks,
            Some(other) => {
                c.fail(
                    "audit.sink",
                    format!(
                        "`{other}` is not a sink; write \"file\" (the only one for production)"
                    ),
                );
                crate::audit::SinkKind::File
            }
        },
    }
}

pub(super) fn validate_geo_static(
    c: &mut Check,
    raw: Option<Vec<RawGeoStatic>>,
) -> Vec<(ipnetwork::IpNetwork, Geo)> {
    let mut out = Vec::new();
    for (i, e) in raw.unwrap_or_default().into_iter().enumerate() {
        let key = format!("geo.static[{i}]");
        let Some(net) = e.network else {
            c.fail(
                format!("{key}.network"),
                "missing; write e.g. \"10.0.0.0/8\"",
            );
            continue;
        };
        let Ok(network) = net.parse::<ipnetwork::IpNetwork>() else {
            c.fail(
                format!("{key}.network"),
                format!("`{net}` is not a network; write e.g. \"10.0.0.0/8\""),
            );
            continue;
        };
        let country = match e.country.map(|s| s.to_ascii_uppercase()) {
            Some(cc) if is_code(&cc, 2) => cc,
            other => {
                c.fail(
                    format!("{key}.country"),
                    match other {
                        Some(cc) => format!("`{cc}` is not an ISO 3166-1 alpha-2 country code"),
                        None => "missing; write e.g. \"DE\"".into(),
                    },
                );
                continue;
            }
        };
        let subdivision = match e.subdivision.map(|s| s.to_ascii_uppercase()) {
            Some(sub) if (1..=3).contains(&sub.len()) && is_code(&sub, sub.len()) => Some(sub),
            Some(sub) => {
                c.fail(
                    format!("{key}.subdivision"),
                    format!("`{sub}` is not a subdivision code; write e.g. \"CA\""),
                );
                continue;
            }
            None => None,
        };
        out.push((
            network,
            Geo {
                country: Some(country),
                subdivision,
            },
        ));
    }
    out
}
