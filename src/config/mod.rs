//! Configuration: the TOML file read *raw* (serde structs that mirror the file, unknown keys rejected), then
//! *validated* into [`Settings`], the typed runtime values every other module reads.
//!
//! Invariant: a [`Settings`] value is always complete and valid. Validation collects every problem it finds,
//! each naming the key it concerns, so an operator fixes a broken file in one pass. Relative paths in a config
//! file are resolved against the directory that holds the file.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::HeaderName;
use http::Uri;
use serde::Deserialize;

use crate::firmographics::mmdb::FieldPath;

mod consent;
pub use consent::AuditSettings;

/// One problem found while loading the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key the problem concerns (`upstream.url`, `listener[1].address`), or the file for parse errors.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// All problems found while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Raw file shape
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listener: Option<Vec<RawListener>>,
    pub upstream: Option<RawUpstream>,
    pub tls: Option<RawTls>,
    pub limits: Option<RawLimits>,
    pub timeouts: Option<RawTimeouts>,
    pub admin: Option<RawAdmin>,
    pub log: Option<RawLog>,
    pub proxy: Option<RawProxy>,
    pub rules: Option<RawRules>,
    pub runtime: Option<RawRuntime>,
    pub client_ip: Option<RawClientIp>,
    pub firmographics: Option<RawFirmographics>,
    pub geo: Option<RawGeo>,
    pub consent: Option<consent::RawConsent>,
    pub audit: Option<consent::RawAudit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirmographics {
    pub watch_interval: Option<String>,
    pub files: Option<Vec<PathBuf>>,
    pub deny_organizations: Option<Vec<String>>,
    pub mmdb: Option<Vec<RawCompanyDb>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompanyDb {
    pub path: Option<PathBuf>,
    pub organization: Option<String>,
    pub domain: Option<String>,
    pub user_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeo {
    pub mmdb: Option<PathBuf>,
    pub country: Option<String>,
    pub subdivision: Option<String>,
    pub anonymous_ip: Option<PathBuf>,
    pub connection_type: Option<PathBuf>,
    #[serde(rename = "static")]
    pub fixed: Option<Vec<consent::RawGeoStatic>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientIp {
    pub trusted_proxies: Option<Vec<String>>,
    pub header: Option<String>,
}

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
pub struct RawUpstream {
    pub url: Option<String>,
    pub host_header: Option<String>,
    pub custom_host: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub pool_max_idle: Option<usize>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_uri_bytes: Option<usize>,
    pub max_header_value_bytes: Option<usize>,
    pub h2_max_concurrent_streams: Option<u32>,
    pub h2_max_client_resets: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_decoded_body: Option<usize>,
    pub max_decode_ratio: Option<usize>,
    pub visitor_posts_per_minute: Option<usize>,
    pub visitor_posts_burst: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub client_header: Option<String>,
    pub client_idle: Option<String>,
    pub tls_handshake: Option<String>,
    pub proxy_header: Option<String>,
    pub upstream_connect: Option<String>,
    pub upstream_response: Option<String>,
    pub upstream_idle: Option<String>,
    pub shutdown_grace: Option<String>,
}

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

// ---------------------------------------------------------------------------------------------------------------
// Validated settings
// ---------------------------------------------------------------------------------------------------------------

/// Defaults, chosen after nginx, Envoy and HAProxy (see the README's configuration reference for the reasoning).
pub mod defaults {
    use std::time::Duration;

    pub const LISTEN: &str = "127.0.0.1:8080";
    pub const ADMIN: &str = "127.0.0.1:9901";
    /// Whole request head (request line + headers). Envoy: 60 KiB; nginx: 4 × 8 KiB buffers.
    pub const MAX_HEADER_BYTES: usize = 64 * 1024;
    /// Header lines per request. Envoy and HAProxy: 100 / 101.
    pub const MAX_HEADERS: usize = 100;
    /// Request target length. nginx: one 8 KiB large header buffer.
    pub const MAX_URI_BYTES: usize = 8 * 1024;
    /// One header value. nginx: 8 KiB per line.
    pub const MAX_HEADER_VALUE_BYTES: usize = 8 * 1024;
    pub const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
    /// Open client connections across all listeners (each may also hold one upstream connection).
    pub const MAX_CONNECTIONS: usize = 10_000;
    pub const MAX_DECODED_BODY: usize = 64 * 1024 * 1024;
    pub const MAX_DECODE_RATIO: usize = 100;
    /// A visitor posts a consent choice now and then and at most a few feedback events per page; a whole
    /// office behind one address posts more, so the default leaves room.
    pub const VISITOR_POSTS_PER_MINUTE: usize = 60;
    pub const VISITOR_POSTS_BURST: usize = 30;
    /// HAProxy `timeout http-request 10s` in its recommended config; nginx's 60 s is generous to slowloris.
    pub const CLIENT_HEADER: Duration = Duration::from_secs(10);
    /// nginx `keepalive_timeout 75s`, HAProxy `timeout client` typically 30–60 s.
    pub const CLIENT_IDLE: Duration = Duration::from_secs(60);
    pub const TLS_HANDSHAKE: Duration = Duration::from_secs(10);
    /// HAProxy's `timeout client` commonly bounds it; the balancer sends the header at once, so keep it short.
    pub const PROXY_HEADER: Duration = Duration::from_secs(5);
    /// Envoy `connect_timeout` 5 s, HAProxy `timeout connect 5s`.
    pub const UPSTREAM_CONNECT: Duration = Duration::from_secs(5);
    /// nginx `proxy_read_timeout 60s`.
    pub const UPSTREAM_RESPONSE: Duration = Duration::from_secs(60);
    /// Pooled upstream connections are closed after this long unused (below nginx's 75 s keep-alive).
    pub const UPSTREAM_IDLE: Duration = Duration::from_secs(50);
    pub const POOL_MAX_IDLE: usize = 256;
    /// Kubernetes' default termination grace period is 30 s; leave room for the process to exit.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
    pub const TLS_WATCH: Duration = Duration::from_secs(5);
    pub const SOURCES_WATCH: Duration = Duration::from_secs(5);
    pub const RESERVED_PREFIX: &str = "/_concierge/";
    pub const REQUEST_ID_HEADER: &str = "x-request-id";
    pub const VIA_NAME: &str = "concierge";
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listeners: Vec<ListenerSettings>,
    pub upstream: UpstreamSettings,
    pub tls: TlsSettings,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub admin: Option<SocketAddr>,
    pub log: LogSettings,
    pub proxy: ProxySettings,
    pub rules_dir: PathBuf,
    pub worker_threads: Option<usize>,
    pub client_ip: ClientIpSettings,
    pub firmographics: crate::firmographics::FirmographicsSettings,
    pub consent: crate::consent::ConsentSettings,
    pub audit: AuditSettings,
    /// The file these settings came from, if any.
    pub source: Option<PathBuf>,
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

/// Who may tell us the client's address, and how.
#[derive(Debug, Clone)]
pub struct ClientIpSettings {
    pub trusted_proxies: crate::client_ip::TrustedProxies,
    pub header: crate::client_ip::ForwardingHeader,
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

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_uri_bytes: usize,
    pub max_header_value_bytes: usize,
    pub h2_max_concurrent_streams: u32,
    /// Streams an HTTP/2 client may reset (when that is also half its streams or more) before its connection
    /// gets GOAWAY(ENHANCE_YOUR_CALM) and is closed: rapid reset.
    pub h2_max_client_resets: u64,
    pub max_connections: usize,
    /// Most bytes a compressed origin page may decode to before it is cut off.
    pub max_decoded_body: u64,
    /// Most decoded bytes per compressed byte (past the first MiB) before it is cut off.
    pub max_decode_ratio: u64,
    /// Posts to the proxy's own endpoints (consent choices, feedback) per resolved client address (IPv6: per
    /// /64) and minute, sustained; and how many may arrive at once.
    pub visitor_posts_per_minute: u32,
    pub visitor_posts_burst: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub client_header: Duration,
    pub client_idle: Duration,
    pub tls_handshake: Duration,
    pub proxy_header: Duration,
    pub upstream_connect: Duration,
    pub upstream_response: Duration,
    pub upstream_idle: Duration,
    pub shutdown_grace: Duration,
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

/// Command-line values that take precedence over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Vec<String>,
    pub upstream: Option<String>,
    pub rules: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub admin: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------------------------

impl Settings {
    /// Read `path` (if any), apply `overrides`, validate.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Settings, ConfigErrors> {
        let (raw, base) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ConfigErrors(vec![ConfigError {
                        key: p.display().to_string(),
                        message: format!("cannot read the config file: {e}"),
                    }])
                })?;
                let raw = parse(&text).map_err(|mut e| {
                    e.key = p.display().to_string();
                    ConfigErrors(vec![e])
                })?;
                let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
                (raw, base)
            }
            None => (RawConfig::default(), PathBuf::new()),
        };
        let mut settings = validate(raw, &base, overrides)?;
        settings.source = path.map(Path::to_path_buf);
        Ok(settings)
    }

    /// Validate a config given as text (paths relative to the current directory).
    pub fn from_toml(text: &str, overrides: &Overrides) -> Result<Settings, ConfigErrors> {
        let raw = parse(text).map_err(|e| ConfigErrors(vec![e]))?;
        validate(raw, Path::new(""), overrides)
    }
}

/// Parse TOML into the raw shape; an unknown key gets a "did you mean" hint.
pub fn parse(text: &str) -> Result<RawConfig, ConfigError> {
    toml::from_str::<RawConfig>(text).map_err(|e| {
        let mut message = e.to_string().trim_end().to_string();
        if let Some(hint) = unknown_key_hint(e.message()) {
            message.push_str(&format!("\nhint: did you mean `{hint}`?"));
        }
        ConfigError {
            key: "config".into(),
            message,
        }
    })
}

/// From serde's "unknown field `x`, expected one of `a`, `b`" pick the expected name closest to `x`.
fn unknown_key_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (given, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    expected
        .into_iter()
        .map(|cand| (edit_distance(given, cand), cand))
        .filter(|(d, cand)| *d <= 2.max(cand.len() / 3))
        .min()
        .map(|(_, c)| c.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Accumulates errors while validating.
struct Check {
    errors: Vec<ConfigError>,
}

impl Check {
    fn fail(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, key: &str, raw: Option<&String>, default: Duration) -> Duration {
        let Some(text) = raw else { return default };
        match humantime::parse_duration(text) {
            Ok(d) => d,
            Err(e) => {
                self.fail(
                    key,
                    format!(
                        "`{text}` is not a duration ({e}); write e.g. \"500ms\", \"10s\", \"2m\""
                    ),
                );
                default
            }
        }
    }

    fn positive_duration(
        &mut self,
        key: &str,
        raw: Option<&String>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(key, raw, default);
        if d.is_zero() {
            self.fail(key, "must be greater than zero");
            return default;
        }
        d
    }

    fn addr(&mut self, key: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.fail(
                    key,
                    format!("`{text}` is not an IP address with a port; write e.g. \"127.0.0.1:8080\" or \"[::]:443\""),
                );
                None
            }
        }
    }

    fn range(
        &mut self,
        key: &str,
        value: Option<usize>,
        default: usize,
        min: usize,
        max: usize,
    ) -> usize {
        let v = value.unwrap_or(default);
        if v < min || v > max {
            self.fail(key, format!("{v} is out of range; allowed {min}..={max}"));
            return default;
        }
        v
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() || base.as_os_str().is_empty() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
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

/// Turn the raw file (plus command-line overrides) into [`Settings`], collecting every error.
pub fn validate(raw: RawConfig, base: &Path, ov: &Overrides) -> Result<Settings, ConfigErrors> {
    let mut c = Check { errors: Vec::new() };

    // --- listeners
    let mut listeners = Vec::new();
    if !ov.listen.is_empty() {
        for (i, a) in ov.listen.iter().enumerate() {
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
        let raw_listeners = raw.listener.unwrap_or_default();
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

    // --- upstream
    let raw_up = raw.upstream.unwrap_or_default();
    let url_text = ov.upstream.clone().or(raw_up.url);
    let upstream = match url_text {
        None => {
            c.fail(
                "upstream.url",
                "missing; set it in the file or pass --upstream http://host:port",
            );
            None
        }
        Some(text) => parse_upstream(
            &mut c,
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
    };

    // --- tls
    let raw_tls = raw.tls.unwrap_or_default();
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
    let tls = TlsSettings {
        certs_dir,
        certificates,
        default_certificate: raw_tls.default_certificate,
        watch_interval: (!watch.is_zero()).then_some(watch),
        min_version,
    };

    // --- limits
    let rl = raw.limits.unwrap_or_default();
    let limits = Limits {
        max_header_bytes: c.range(
            "limits.max_header_bytes",
            rl.max_header_bytes,
            defaults::MAX_HEADER_BYTES,
            8192,
            1024 * 1024,
        ),
        max_headers: c.range(
            "limits.max_headers",
            rl.max_headers,
            defaults::MAX_HEADERS,
            8,
            1000,
        ),
        max_uri_bytes: c.range(
            "limits.max_uri_bytes",
            rl.max_uri_bytes,
            defaults::MAX_URI_BYTES,
            256,
            1024 * 1024,
        ),
        max_header_value_bytes: c.range(
            "limits.max_header_value_bytes",
            rl.max_header_value_bytes,
            defaults::MAX_HEADER_VALUE_BYTES,
            256,
            1024 * 1024,
        ),
        h2_max_concurrent_streams: c.range(
            "limits.h2_max_concurrent_streams",
            rl.h2_max_concurrent_streams.map(|v| v as usize),
            defaults::H2_MAX_CONCURRENT_STREAMS as usize,
            1,
            10_000,
        ) as u32,
        h2_max_client_resets: c.range(
            "limits.h2_max_client_resets",
            rl.h2_max_client_resets.map(|v| v as usize),
            100,
            1,
            1_000_000,
        ) as u64,
        max_connections: c.range(
            "limits.max_connections",
            rl.max_connections,
            defaults::MAX_CONNECTIONS,
            1,
            1_000_000,
        ),
        max_decoded_body: c.range(
            "limits.max_decoded_body",
            rl.max_decoded_body,
            defaults::MAX_DECODED_BODY,
            1024 * 1024,
            1 << 32,
        ) as u64,
        max_decode_ratio: c.range(
            "limits.max_decode_ratio",
            rl.max_decode_ratio,
            defaults::MAX_DECODE_RATIO,
            10,
            100_000,
        ) as u64,
        visitor_posts_per_minute: c.range(
            "limits.visitor_posts_per_minute",
            rl.visitor_posts_per_minute,
            defaults::VISITOR_POSTS_PER_MINUTE,
            1,
            1_000_000,
        ) as u32,
        visitor_posts_burst: c.range(
            "limits.visitor_posts_burst",
            rl.visitor_posts_burst,
            defaults::VISITOR_POSTS_BURST,
            1,
            1_000_000,
        ) as u32,
    };

    // --- timeouts
    let rt = raw.timeouts.unwrap_or_default();
    let timeouts = Timeouts {
        client_header: c.positive_duration(
            "timeouts.client_header",
            rt.client_header.as_ref(),
            defaults::CLIENT_HEADER,
        ),
        client_idle: c.positive_duration(
            "timeouts.client_idle",
            rt.client_idle.as_ref(),
            defaults::CLIENT_IDLE,
        ),
        tls_handshake: c.positive_duration(
            "timeouts.tls_handshake",
            rt.tls_handshake.as_ref(),
            defaults::TLS_HANDSHAKE,
        ),
        proxy_header: c.positive_duration(
            "timeouts.proxy_header",
            rt.proxy_header.as_ref(),
            defaults::PROXY_HEADER,
        ),
        upstream_connect: c.positive_duration(
            "timeouts.upstream_connect",
            rt.upstream_connect.as_ref(),
            defaults::UPSTREAM_CONNECT,
        ),
        upstream_response: c.positive_duration(
            "timeouts.upstream_response",
            rt.upstream_response.as_ref(),
            defaults::UPSTREAM_RESPONSE,
        ),
        upstream_idle: c.positive_duration(
            "timeouts.upstream_idle",
            rt.upstream_idle.as_ref(),
            defaults::UPSTREAM_IDLE,
        ),
        shutdown_grace: c.duration(
            "timeouts.shutdown_grace",
            rt.shutdown_grace.as_ref(),
            defaults::SHUTDOWN_GRACE,
        ),
    };

    // --- admin
    let ra = raw.admin.unwrap_or_default();
    let admin = if ov.admin.as_deref() == Some("off") {
        None
    } else if let Some(a) = &ov.admin {
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

    // --- log
    let rlog = raw.log.unwrap_or_default();
    let format = match (ov.log_format, rlog.format.as_deref()) {
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
    let log = LogSettings {
        format,
        level,
        access_log: rlog.access_log.unwrap_or(true),
    };

    // --- proxy
    let rp = raw.proxy.unwrap_or_default();
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
    let proxy = ProxySettings {
        via_name,
        request_id_header,
        trust_request_id: rp.trust_request_id.unwrap_or(false),
        reserved_prefix,
        why_link: rp.why_link.unwrap_or(false),
        underscores_in_headers: rp.underscores_in_headers.unwrap_or(false),
    };

    // --- rules, runtime
    let rules_dir = match &ov.rules {
        Some(p) => p.clone(),
        None => resolve(
            base,
            &raw.rules
                .and_then(|r| r.dir)
                .unwrap_or_else(|| PathBuf::from("rules")),
        ),
    };
    let worker_threads = match raw.runtime.and_then(|r| r.worker_threads) {
        None | Some(0) => None,
        Some(n) if n > 1024 => {
            c.fail(
                "runtime.worker_threads",
                format!("{n} is out of range; allowed 0 (one per core)..=1024"),
            );
            None
        }
        Some(n) => Some(n),
    };

    // --- client_ip
    let rc = raw.client_ip.unwrap_or_default();
    let mut nets = Vec::new();
    for (i, text) in rc.trusted_proxies.unwrap_or_default().iter().enumerate() {
        match text.parse::<ipnetwork::IpNetwork>() {
            // A network with host bits set (10.0.0.1/8) is almost always a typo for something else.
            Ok(n) if n.network() != n.ip() => c.fail(
                format!("client_ip.trusted_proxies[{i}]"),
                format!("`{text}` has host bits set; did you mean `{}/{}`?", n.network(), n.prefix()),
            ),
            Ok(n) => nets.push(n),
            Err(_) => c.fail(
                format!("client_ip.trusted_proxies[{i}]"),
                format!("`{text}` is not an IP address or CIDR; write e.g. \"10.0.0.0/8\" or \"2001:db8::/32\""),
            ),
        }
    }
    let header = match rc.header.as_deref() {
        None | Some("x-forwarded-for") => crate::client_ip::ForwardingHeader::XForwardedFor,
        Some("forwarded") => crate::client_ip::ForwardingHeader::Forwarded,
        Some("none") => crate::client_ip::ForwardingHeader::None,
        Some(other) => {
            c.fail(
                "client_ip.header",
                format!("`{other}` is not supported; use \"x-forwarded-for\", \"forwarded\" or \"none\""),
            );
            crate::client_ip::ForwardingHeader::XForwardedFor
        }
    };
    for (i, l) in listeners.iter().enumerate() {
        if l.proxy_protocol && nets.is_empty() {
            c.fail(
                format!("listener[{i}].proxy_protocol"),
                "needs client_ip.trusted_proxies: the PROXY header is accepted only from trusted load balancers",
            );
        }
    }
    let client_ip = ClientIpSettings {
        trusted_proxies: crate::client_ip::TrustedProxies::new(nets),
        header,
    };

    // --- firmographics, geo
    let field = |c: &mut Check, key: String, text: Option<&String>| -> Option<FieldPath> {
        let text = text?;
        let parsed = FieldPath::parse(text);
        if parsed.is_none() {
            c.fail(
                key,
                format!("`{text}` is not a field path; write e.g. \"traits.organization\""),
            );
        }
        parsed
    };
    let rf = raw.firmographics.unwrap_or_default();
    let mut company_dbs = Vec::new();
    for (i, db) in rf.mmdb.unwrap_or_default().into_iter().enumerate() {
        let key = format!("firmographics.mmdb[{i}]");
        let Some(path) = db.path else {
            c.fail(format!("{key}.path"), "missing");
            continue;
        };
        let Some(organization) = db.organization.as_ref() else {
            c.fail(
                format!("{key}.organization"),
                "missing; the field path of the organization name, e.g. \"traits.organization\" (GeoIP2 \
                 Enterprise), \"organization\" (GeoIP2 ISP), \"autonomous_system_organization\" (ASN)",
            );
            continue;
        };
        let organization = field(&mut c, format!("{key}.organization"), Some(organization));
        let domain = field(&mut c, format!("{key}.domain"), db.domain.as_ref());
        let user_type = field(&mut c, format!("{key}.user_type"), db.user_type.as_ref());
        if let Some(organization) = organization {
            company_dbs.push(crate::firmographics::CompanyDbSettings {
                path: resolve(base, &path),
                organization,
                domain,
                user_type,
            });
        }
    }
    let rg = raw.geo.unwrap_or_default();
    let watch = c.duration(
        "firmographics.watch_interval",
        rf.watch_interval.as_ref(),
        defaults::SOURCES_WATCH,
    );
    let firmographics = crate::firmographics::FirmographicsSettings {
        watch_interval: (!watch.is_zero()).then_some(watch),
        files: rf
            .files
            .unwrap_or_default()
            .iter()
            .map(|p| resolve(base, p))
            .collect(),
        company_dbs,
        deny_organizations: rf.deny_organizations.unwrap_or_default(),
        geo_db: rg.mmdb.as_ref().map(|p| resolve(base, p)),
        geo_country: field(&mut c, "geo.country".into(), rg.country.as_ref()),
        geo_subdivision: field(&mut c, "geo.subdivision".into(), rg.subdivision.as_ref()),
        anonymous_ip_db: rg.anonymous_ip.as_ref().map(|p| resolve(base, p)),
        connection_type_db: rg.connection_type.as_ref().map(|p| resolve(base, p)),
        geo_static: consent::validate_geo_static(&mut c, rg.fixed),
    };
    let consent = consent::validate_consent(&mut c, raw.consent, base);
    let audit = consent::validate_audit(
        &mut c,
        raw.audit,
        base,
        Duration::from_secs(consent.policy.max_age_seconds),
    );

    if c.errors.is_empty() {
        if let Some(upstream) = upstream {
            return Ok(Settings {
                listeners,
                upstream,
                tls,
                limits,
                timeouts,
                admin,
                log,
                proxy,
                rules_dir,
                worker_threads,
                client_ip,
                firmographics,
                consent,
                audit,
                source: None,
            });
        }
    }
    Err(ConfigErrors(c.errors))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Settings {
        Settings::from_toml(text, &Overrides::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn errs(text: &str) -> Vec<ConfigError> {
        Settings::from_toml(text, &Overrides::default())
            .expect_err("should fail")
            .0
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let s = ok("[upstream]\nurl = \"http://127.0.0.1:3000\"\n");
        assert_eq!(s.listeners.len(), 1);
        assert_eq!(s.listeners[0].address.to_string(), defaults::LISTEN);
        assert_eq!(s.upstream.authority.as_str(), "127.0.0.1:3000");
        assert_eq!(s.timeouts.upstream_connect, defaults::UPSTREAM_CONNECT);
        assert_eq!(
            s.admin.map(|a| a.to_string()).as_deref(),
            Some(defaults::ADMIN)
        );
        assert_eq!(s.upstream.host_header, HostHeader::Preserve);
    }

    #[test]
    fn unknown_key_names_key_and_hints() {
        let e = errs("[upstream]\nurl = \"http://a:1\"\nhost_heder = \"upstream\"\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("host_heder"), "{}", e[0].message);
        assert!(
            e[0].message.contains("did you mean `host_header`"),
            "{}",
            e[0].message
        );
        assert!(e[0].message.contains("line 3"), "{}", e[0].message);
    }

    #[test]
    fn all_errors_are_collected_with_keys() {
        let e = errs(
            "[[listener]]\naddress = \"nonsense\"\n[timeouts]\nclient_header = \"ten\"\n[log]\nformat = \"xml\"\n",
        );
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "listener[0].address",
                "upstream.url",
                "timeouts.client_header",
                "log.format"
            ]
        );
    }

    #[test]
    fn overrides_win_over_file() {
        let ov = Overrides {
            listen: vec!["127.0.0.1:9999".into()],
            upstream: Some("https://origin.example:8443/base/".into()),
            ..Default::default()
        };
        let s = Settings::from_toml(
            "[upstream]\nurl = \"http://a:1\"\n[[listener]]\naddress = \"0.0.0.0:80\"\n",
            &ov,
        )
        .expect("valid");
        assert_eq!(s.listeners.len(), 1);
        assert_eq!(s.listeners[0].address.port(), 9999);
        assert_eq!(s.upstream.scheme, UpstreamScheme::Https);
        assert_eq!(s.upstream.authority.as_str(), "origin.example:8443");
        assert_eq!(s.upstream.base_path, "/base");
    }

    #[test]
    fn bad_upstream_urls_are_rejected() {
        for u in [
            "ftp://a",
            "127.0.0.1:3000",
            "http://u:p@a:1",
            "http://a:1/?q=1",
            "not a url",
        ] {
            let e = errs(&format!("[upstream]\nurl = \"{u}\"\n"));
            assert_eq!(e[0].key, "upstream.url", "{u}: {e:?}");
        }
    }

    #[test]
    fn redirect_only_on_plain_listeners() {
        let e = errs("[upstream]\nurl=\"http://a:1\"\n[[listener]]\naddress=\"127.0.0.1:1\"\ntls=true\nredirect_to_https=true\n");
        assert_eq!(e[0].key, "listener[0].redirect_to_https");
        let s = ok("[upstream]\nurl=\"http://a:1\"\n[[listener]]\naddress=\"127.0.0.1:1\"\nredirect_to_https=true\nhttps_port=8443\n");
        assert_eq!(s.listeners[0].redirect_to_https, Some(8443));
    }

    #[test]
    fn host_header_modes() {
        let s = ok("[upstream]\nurl=\"http://a:1\"\nhost_header=\"upstream\"\n");
        assert_eq!(s.upstream.host_header, HostHeader::Upstream);
        let s = ok("[upstream]\nurl=\"http://a:1\"\nhost_header=\"custom\"\ncustom_host=\"www.example.com\"\n");
        assert!(matches!(s.upstream.host_header, HostHeader::Custom(_)));
        let e = errs("[upstream]\nurl=\"http://a:1\"\nhost_header=\"sometimes\"\n");
        assert_eq!(e[0].key, "upstream.host_header");
    }

    #[test]
    fn request_id_header_cannot_be_a_managed_header() {
        for name in ["Host", "content-length", "X-Forwarded-For"] {
            let e = errs(&format!(
                "[upstream]\nurl=\"http://a:1\"\n[proxy]\nrequest_id_header=\"{name}\"\n"
            ));
            assert_eq!(e[0].key, "proxy.request_id_header", "{name}");
        }
        let s =
            ok("[upstream]\nurl=\"http://a:1\"\n[proxy]\nrequest_id_header=\"X-Correlation-Id\"\n");
        assert_eq!(s.proxy.request_id_header.as_str(), "x-correlation-id");
        assert!(
            !s.proxy.trust_request_id,
            "ids from the internet are not trusted by default"
        );
    }

    #[test]
    fn client_ip_settings() {
        let s = ok("[upstream]\nurl=\"http://a:1\"\n[client_ip]\ntrusted_proxies=[\"10.0.0.0/8\", \"2001:db8::/32\", \"127.0.0.1\"]\nheader=\"forwarded\"\n[[listener]]\naddress=\"127.0.0.1:1\"\nproxy_protocol=true\n");
        assert!(s
            .client_ip
            .trusted_proxies
            .contains("10.1.2.3".parse().unwrap()));
        assert!(s
            .client_ip
            .trusted_proxies
            .contains("127.0.0.1".parse().unwrap()));
        assert!(!s
            .client_ip
            .trusted_proxies
            .contains("127.0.0.2".parse().unwrap()));
        assert_eq!(
            s.client_ip.header,
            crate::client_ip::ForwardingHeader::Forwarded
        );
        assert!(s.listeners[0].proxy_protocol);
        let e = errs("[upstream]\nurl=\"http://a:1\"\n[client_ip]\ntrusted_proxies=[\"10.0.0.1/8\", \"nope\"]\n");
        assert_eq!(e[0].key, "client_ip.trusted_proxies[0]");
        assert!(e[0].message.contains("10.0.0.0/8"), "{}", e[0].message);
        assert_eq!(e[1].key, "client_ip.trusted_proxies[1]");
        let e = errs("[upstream]\nurl=\"http://a:1\"\n[[listener]]\naddress=\"127.0.0.1:1\"\nproxy_protocol=true\n");
        assert_eq!(e[0].key, "listener[0].proxy_protocol");
    }

    #[test]
    fn duplicate_listener_is_an_error() {
        let e = errs("[upstream]\nurl=\"http://a:1\"\n[[listener]]\naddress=\"127.0.0.1:1\"\n[[listener]]\naddress=\"127.0.0.1:1\"\n");
        assert_eq!(e[0].key, "listener[1].address");
    }

    #[test]
    fn example_config_is_valid_and_documents_every_section() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("concierge.example.toml");
        let s =
            Settings::load(Some(&path), &Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.listeners.len(), 2);
        assert!(s.listeners[1].tls);
        assert_eq!(
            s.tls.certs_dir,
            Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
        );
        let text = std::fs::read_to_string(&path).expect("read");
        for section in [
            "[upstream]",
            "[tls]",
            "[limits]",
            "[timeouts]",
            "[admin]",
            "[log]",
            "[proxy]",
            "[rules]",
            "[runtime]",
            "[consent]",
            "[audit]",
            "[[geo.static]]",
        ] {
            assert!(text.contains(section), "{section} missing from the example");
        }
    }

    #[test]
    fn consent_policy_keys() {
        let s = ok("[upstream]\nurl = \"http://a:1\"\n");
        let p = &s.consent.policy;
        assert!(p.opt_in_countries.contains("DE") && p.opt_in_countries.contains("CH"));
        assert!(p.opt_out_regions.contains("US-CA"));
        assert_eq!(p.max_age_seconds, 395 * 86_400);
        assert_eq!(s.audit.dir, Path::new("audit"));
        let s = ok("[upstream]\nurl = \"http://a:1\"\n[consent]\nopt_in_countries = [\"eea\", \"GB\"]\n\
             opt_out_regions = [\"US-PRIVACY-STATES\", \"CA-QC\"]\nother_regions = \"opt-out\"\n\
             firmographic_purposes = [6, 5, 5]\ndnt = \"opt-out\"\nmax_age = \"180days\"\n\
             cookie_name = \"my_consent\"\nbanner_version = \"2026-11\"\ngpc_well_known = true\n\
             gpc_last_update = \"2026-11-24\"\n[[geo.static]]\nnetwork = \"10.0.0.0/8\"\ncountry = \"de\"\n");
        let p = &s.consent.policy;
        assert!(!p.opt_in_countries.contains("CH") && p.opt_in_countries.contains("NO"));
        assert!(p.opt_out_regions.contains("CA-QC") && p.opt_out_regions.contains("US-TX"));
        assert_eq!(p.other_regions, crate::consent::policy::Regime::OptOut);
        assert_eq!(p.firmographic_purposes, [5, 6]);
        assert!(p.dnt_is_opt_out);
        assert_eq!(p.max_age_seconds, 180 * 86_400);
        assert_eq!(s.consent.names.first_party_cookie, "my_consent");
        assert_eq!(s.consent.banner_version, "2026-11");
        assert_eq!(s.consent.gpc_last_update.as_deref(), Some("2026-11-24"));
        assert_eq!(
            s.firmographics.geo_static[0].1.country.as_deref(),
            Some("DE")
        );

        let e = errs("[upstream]\nurl = \"http://a:1\"\n[consent]\nopt_in_countries = [\"Germany\"]\n\
             opt_out_regions = [\"California\"]\nother_regions = \"maybe\"\npersonal_purposes = [12]\n\
             firmographic_purposes = []\ndnt = \"ignore\"\nmax_age = \"0s\"\ncookie_name = \"a b\"\n\
             banner_version = \"\"\ngpc_last_update = \"24.11.2026\"\n[[geo.static]]\nnetwork = \"10.0.0.0/33\"\n\
             country = \"DE\"\n[[geo.static]]\nnetwork = \"10.0.0.0/8\"\n");
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "geo.static[0].network",
                "geo.static[1].country",
                "consent.opt_in_countries[0]",
                "consent.opt_out_regions[0]",
                "consent.other_regions",
                "consent.firmographic_purposes",
                "consent.personal_purposes[0]",
                "consent.dnt",
                "consent.max_age",
                "consent.cookie_name",
                "consent.banner_version",
                "consent.gpc_last_update",
            ]
        );
    }

    #[test]
    fn edit_distance_works() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
