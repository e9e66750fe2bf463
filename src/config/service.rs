//! `[admin]`, `[log]`, `[proxy]`, `[rules]` and `[runtime]`: how the proxy presents itself and runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::header::HeaderName;
use serde::Deserialize;

use super::{defaults, resolve, Check, ListenerSettings};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub enabled: Option<bool>,
    pub address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
    pub access_log: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub via_name: Option<String>,
    pub request_id_header: Option<String>,
    pub trust_request_id: Option<bool>,
    pub reserved_prefix: Option<String>,
    pub why_link: Option<bool>,
    pub underscores_in_headers: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntime {
    pub worker_threads: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
    pub access_log: bool,
}

#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub via_name: String,
    pub request_id_header: HeaderName,
    pub trust_request_id: bool,
    pub reserved_prefix: String,
    /// Every personalized page carries a "Why am I seeing this?" link (rules can also ask for it one by one).
    pub why_link: bool,
    /// Pass request headers whose names contain `_` to the origin (nginx's `underscores_in_headers`); names
    /// that normalize to a header the proxy manages are dropped either way.
    pub underscores_in_headers: bool,
}

/// Headers with a meaning to HTTP or to the proxy that must not double as the request id.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
    "via",
    "forwarded",
    "content-type",
    "content-encoding",
    "cache-control",
    "location",
];

pub(super) fn validate_admin(
    c: &mut Check,
    raw: Option<RawAdmin>,
    ov: Option<&str>,
    listeners: &[ListenerSettings],
) -> Option<SocketAddr> {
    let ra = raw.unwrap_or_default();
    let admin = if ov == Some("off") {
        None
    } else if let Some(a) = ov {
        c.addr("--admin", a)
    } else if ra.enabled == Some(false) {
        None
    } else {
        c.addr(
            "admin.address",
            ra.address.as_deref().unwrap_or(defaults::ADMIN),
        )
    };
    if let Some(a) = admin.filter(|a| a.port() != 0) {
        if listeners.iter().any(|l| l.address == a) {
            c.fail("admin.address", format!("{a} is also a proxy listener"));
        }
    }
    admin
}

pub(super) fn validate_log(
    c: &mut Check,
    raw: Option<RawLog>,
    ov: Option<LogFormat>,
) -> LogSettings {
    let rlog = raw.unwrap_or_default();
    let format = match (ov, rlog.format.as_deref()) {
        (Some(f), _) => f,
        (None, None | Some("human")) => LogFormat::Human,
        (None, Some("json")) => LogFormat::Json,
        (None, Some(other)) => {
            c.fail(
                "log.format",
                format!("`{other}` is not a log format; use \"human\" or \"json\""),
            );
            LogFormat::Human
        }
    };
    let level = rlog.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::builder()
        .parse(&level)
        .is_err()
    {
        c.fail("log.level", format!("`{level}` is not a level or filter; use e.g. \"info\", \"warn\", \"concierge=debug\""));
    }
    LogSettings {
        format,
        level,
        access_log: rlog.access_log.unwrap_or(true),
    }
}

pub(super) fn validate_proxy(c: &mut Check, raw: Option<RawProxy>) -> ProxySettings {
    let rp = raw.unwrap_or_default();
    let via_name = rp.via_name.unwrap_or_else(|| defaults::VIA_NAME.into());
    if via_name.is_empty()
        || !via_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        c.fail(
            "proxy.via_name",
            "must be a non-empty token of letters, digits, '-', '.', '_'",
        );
    }
    let rid = rp
        .request_id_header
        .unwrap_or_else(|| defaults::REQUEST_ID_HEADER.into());
    let request_id_header = match HeaderName::from_bytes(rid.to_ascii_lowercase().as_bytes()) {
        Ok(h)
            if RESERVED_HEADERS.contains(&h.as_str()) || h.as_str().starts_with("x-forwarded-") =>
        {
            c.fail(
                "proxy.request_id_header",
                format!("`{rid}` is a header the proxy manages; pick another name"),
            );
            HeaderName::from_static(defaults::REQUEST_ID_HEADER)
        }
        Ok(h) => h,
        Err(_) => {
            c.fail(
                "proxy.request_id_header",
                format!("`{rid}` is not a valid header name"),
            );
            HeaderName::from_static(defaults::REQUEST_ID_HEADER)
        }
    };
    let reserved_prefix = rp
        .reserved_prefix
        .unwrap_or_else(|| defaults::RESERVED_PREFIX.into());
    if !(reserved_prefix.starts_with('/')
        && reserved_prefix.ends_with('/')
        && reserved_prefix.len() > 2)
        || reserved_prefix.contains(['?', '#', ' '])
    {
        c.fail(
            "proxy.reserved_prefix",
            format!("`{reserved_prefix}` must be a path that starts and ends with '/', like \"/_concierge/\""),
        );
    }
    ProxySettings {
        via_name,
        request_id_header,
        trust_request_id: rp.trust_request_id.unwrap_or(false),
        reserved_prefix,
        why_link: rp.why_link.unwrap_or(false),
        underscores_in_headers: rp.underscores_in_headers.unwrap_or(false),
    }
}

pub(super) fn rules_dir(raw: Option<RawRules>, ov: Option<&PathBuf>, base: &Path) -> PathBuf {
    match ov {
        Some(p) => p.clone(),
        None => resolve(
            base,
            &raw.and_then(|r| r.dir)
                .unwrap_or_else(|| PathBuf::from("rules")),
        ),
    }
}

pub(super) fn worker_threads(c: &mut Check, raw: Option<RawRuntime>) -> Option<usize> {
    match raw.and_then(|r| r.worker_threads) {
        None | Some(0) => None,
        Some(n) if n > 1024 => {
            c.fail(
                "runtime.worker_threads",
                format!("{n} is out of range; allowed 0 (one per core)..=1024"),
            );
            None
        }
        Some(n) => Some(n),
    }
}
