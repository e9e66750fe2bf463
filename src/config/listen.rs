//! `[[listener]]` and `[tls]`: raw shapes, settings and their validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{defaults, resolve, Check};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: Option<String>,
    pub tls: Option<bool>,
    pub http2: Option<bool>,
    pub redirect_to_https: Option<bool>,
    pub https_port: Option<u16>,
    pub proxy_protocol: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certs_dir: Option<PathBuf>,
    pub certificate: Option<Vec<RawCertificate>>,
    pub default_certificate: Option<String>,
    pub watch_interval: Option<String>,
    pub min_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    pub address: SocketAddr,
    pub tls: bool,
    pub http2: bool,
    /// On a plain listener: answer every request with a redirect to `https://host[:port]`.
    pub redirect_to_https: Option<u16>,
    /// Every connection starts with a PROXY protocol (v1 or v2) header from a trusted load balancer.
    pub proxy_protocol: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub certs_dir: PathBuf,
    /// Explicit (cert, key) pairs; when empty, pairs are discovered in `certs_dir`.
    pub certificates: Vec<(PathBuf, PathBuf)>,
    /// Server name whose certificate answers clients that send no or an unknown SNI.
    pub default_certificate: Option<String>,
    /// How often certificate files are checked for changes (`None`: only on SIGHUP).
    pub watch_interval: Option<Duration>,
    pub min_version: TlsVersion,
}

pub(super) fn validate_listeners(
    c: &mut Check,
    raw: Option<Vec<RawListener>>,
    ov: &[String],
) -> Vec<ListenerSettings> {
    let mut listeners = Vec::new();
    if !ov.is_empty() {
        for (i, a) in ov.iter().enumerate() {
            if let Some(address) = c.addr(&format!("--listen[{i}]"), a) {
                listeners.push(ListenerSettings {
                    address,
                    tls: false,
                    http2: true,
                    redirect_to_https: None,
                    proxy_protocol: false,
                });
            }
        }
    } else {
        let raw_listeners = raw.unwrap_or_default();
        if raw_listeners.is_empty() {
            listeners.push(ListenerSettings {
                address: defaults::LISTEN.parse().expect("valid default address"),
                tls: false,
                http2: true,
                redirect_to_https: None,
                proxy_protocol: false,
            });
        }
        for (i, l) in raw_listeners.into_iter().enumerate() {
            let key = format!("listener[{i}]");
            let Some(addr_text) = l.address else {
                c.fail(
                    format!("{key}.address"),
                    "missing; every listener needs an address",
                );
                continue;
            };
            let Some(address) = c.addr(&format!("{key}.address"), &addr_text) else {
                continue;
            };
            let tls = l.tls.unwrap_or(false);
            let redirect = l.redirect_to_https.unwrap_or(false);
            if redirect && tls {
                c.fail(
                    format!("{key}.redirect_to_https"),
                    "only applies to plain (non-TLS) listeners",
                );
            }
            if l.https_port.is_some() && !redirect {
                c.fail(
                    format!("{key}.https_port"),
                    "only used with redirect_to_https = true",
                );
            }
            if l.https_port == Some(0) {
                c.fail(
                    format!("{key}.https_port"),
                    "must be a port number 1..=65535",
                );
            }
            listeners.push(ListenerSettings {
                address,
                tls,
                http2: l.http2.unwrap_or(true),
                redirect_to_https: (redirect && !tls).then(|| l.https_port.unwrap_or(443)),
                proxy_protocol: l.proxy_protocol.unwrap_or(false),
            });
        }
    }
    for (i, a) in listeners.iter().enumerate() {
        // Port 0 asks the OS for a free port, so two of those never collide.
        if a.address.port() != 0 && listeners[..i].iter().any(|b| b.address == a.address) {
            c.fail(
                format!("listener[{i}].address"),
                format!("{} is used by another listener", a.address),
            );
        }
    }
    listeners
}

pub(super) fn validate_tls(c: &mut Check, raw: Option<RawTls>, base: &Path) -> TlsSettings {
    let raw_tls = raw.unwrap_or_default();
    let certs_dir = resolve(
        base,
        &raw_tls.certs_dir.unwrap_or_else(|| PathBuf::from("certs")),
    );
    let mut certificates = Vec::new();
    for (i, pair) in raw_tls
        .certificate
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match (pair.cert, pair.key) {
            (Some(cert), Some(key)) => {
                certificates.push((resolve(base, &cert), resolve(base, &key)))
            }
            (None, _) => c.fail(format!("tls.certificate[{i}].cert"), "missing"),
            (_, None) => c.fail(format!("tls.certificate[{i}].key"), "missing"),
        }
    }
    let watch = c.duration(
        "tls.watch_interval",
        raw_tls.watch_interval.as_ref(),
        defaults::TLS_WATCH,
    );
    let min_version = match raw_tls.min_version.as_deref() {
        None | Some("1.2") => TlsVersion::V1_2,
        Some("1.3") => TlsVersion::V1_3,
        Some(other) => {
            c.fail(
                "tls.min_version",
                format!("`{other}` is not supported; use \"1.2\" or \"1.3\""),
            );
            TlsVersion::V1_2
        }
    };
    TlsSettings {
        certs_dir,
        certificates,
        default_certificate: raw_tls.default_certificate,
        watch_interval: (!watch.is_zero()).then_some(watch),
        min_version,
    }
}
