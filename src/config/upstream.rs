//! `[upstream]`: the origin, how to reach it and what `Host` it gets.

use std::path::{Path, PathBuf};

use http::Uri;
use serde::Deserialize;

use super::{defaults, resolve, Check};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Option<String>,
    pub host_header: Option<String>,
    pub custom_host: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub pool_max_idle: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamScheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostHeader {
    /// Send the client's `Host` to the origin (the default: origins usually route on it).
    Preserve,
    /// Send the upstream URL's authority.
    Upstream,
    /// Send this value.
    Custom(http::HeaderValue),
}

impl std::fmt::Display for HostHeader {
    /// As the configuration writes it: `preserve`, `upstream`, or `custom "value"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostHeader::Preserve => f.write_str("preserve"),
            HostHeader::Upstream => f.write_str("upstream"),
            HostHeader::Custom(v) => {
                write!(f, "custom {:?}", String::from_utf8_lossy(v.as_bytes()))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub scheme: UpstreamScheme,
    /// `host:port` as written in the URL (the port made explicit).
    pub authority: http::uri::Authority,
    /// The upstream URL's host, for TLS server name and `HostHeader::Upstream`.
    pub host: String,
    /// Path prefix of the upstream URL without trailing slash ("" for none).
    pub base_path: String,
    pub host_header: HostHeader,
    pub ca_file: Option<PathBuf>,
    pub pool_max_idle: usize,
    pub url: Uri,
}

pub(super) fn validate_upstream(
    c: &mut Check,
    raw: Option<RawUpstream>,
    ov: Option<String>,
    base: &Path,
) -> Option<UpstreamSettings> {
    let raw_up = raw.unwrap_or_default();
    let url_text = ov.or(raw_up.url);
    match url_text {
        None => {
            c.fail(
                "upstream.url",
                "missing; set it in the file or pass --upstream http://host:port",
            );
            None
        }
        Some(text) => parse_upstream(
            c,
            &text,
            raw_up.host_header,
            raw_up.custom_host,
            &raw_up.ca_file,
            base,
        )
        .map(|mut u| {
            u.pool_max_idle = raw_up.pool_max_idle.unwrap_or(defaults::POOL_MAX_IDLE);
            u
        }),
    }
}

fn parse_upstream(
    c: &mut Check,
    text: &str,
    host_header: Option<String>,
    custom_host: Option<String>,
    ca_file: &Option<PathBuf>,
    base: &Path,
) -> Option<UpstreamSettings> {
    let key = "upstream.url";
    let uri: Uri = match text.parse() {
        Ok(u) => u,
        Err(e) => {
            c.fail(
                key,
                format!("`{text}` is not a URL ({e}); write e.g. \"http://127.0.0.1:3000\""),
            );
            return None;
        }
    };
    let scheme = match uri.scheme_str() {
        Some("http") => UpstreamScheme::Http,
        Some("https") => UpstreamScheme::Https,
        _ => {
            c.fail(key, format!("`{text}` must start with http:// or https://"));
            return None;
        }
    };
    let Some(auth) = uri.authority() else {
        c.fail(key, format!("`{text}` has no host"));
        return None;
    };
    if auth.as_str().contains('@') {
        c.fail(key, "credentials in the upstream URL are not supported");
        return None;
    }
    if uri.query().is_some() {
        c.fail(key, "the upstream URL must not have a query string");
        return None;
    }
    let host = auth
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = auth.port_u16().unwrap_or(match scheme {
        UpstreamScheme::Http => 80,
        UpstreamScheme::Https => 443,
    });
    let authority_text = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let authority: http::uri::Authority = match authority_text.parse() {
        Ok(a) => a,
        Err(e) => {
            c.fail(key, format!("bad host or port: {e}"));
            return None;
        }
    };
    let base_path = uri.path().trim_end_matches('/').to_string();
    let host_header = match (host_header.as_deref(), custom_host) {
        (None | Some("preserve"), None) => HostHeader::Preserve,
        (Some("upstream"), None) => HostHeader::Upstream,
        (Some("custom") | None, Some(h)) => match http::HeaderValue::from_str(&h) {
            Ok(v) if !h.is_empty() && h.parse::<http::uri::Authority>().is_ok() => {
                HostHeader::Custom(v)
            }
            _ => {
                c.fail(
                    "upstream.custom_host",
                    format!("`{h}` is not a valid host[:port]"),
                );
                HostHeader::Preserve
            }
        },
        (Some("custom"), None) => {
            c.fail(
                "upstream.custom_host",
                "required when host_header = \"custom\"",
            );
            HostHeader::Preserve
        }
        (Some(mode @ ("preserve" | "upstream")), Some(_)) => {
            c.fail(
                "upstream.custom_host",
                format!("only used with host_header = \"custom\" (it is \"{mode}\")"),
            );
            HostHeader::Preserve
        }
        (Some(other), _) => {
            c.fail(
                "upstream.host_header",
                format!("`{other}` is not a mode; use \"preserve\", \"upstream\" or \"custom\""),
            );
            HostHeader::Preserve
        }
    };
    let ca_file = ca_file.as_ref().map(|p| resolve(base, p));
    if let Some(p) = &ca_file {
        if scheme == UpstreamScheme::Http {
            c.fail("upstream.ca_file", "only used with an https:// upstream");
        } else if !p.is_file() {
            c.fail(
                "upstream.ca_file",
                format!("{} does not exist or is not a file", p.display()),
            );
        }
    }
    Some(UpstreamSettings {
        scheme,
        authority,
        host,
        base_path,
        host_header,
        ca_file,
        pool_max_idle: defaults::POOL_MAX_IDLE,
        url: uri,
    })
}
