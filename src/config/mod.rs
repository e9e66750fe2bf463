//! Configuration: the TOML file read *raw* (serde structs that mirror the file, unknown keys rejected), then
//! *validated* into [`Settings`], the typed runtime values every other module reads.
//!
//! Invariant: a [`Settings`] value is always complete and valid. Validation collects every problem it finds,
//! each naming the key it concerns, so an operator fixes a broken file in one pass. Relative paths in a config
//! file are resolved against the directory that holds the file.

//!
//! One file per section (or group of small sections) holds its raw shape, its settings type and its
//! validation; this module holds what they share ([`Check`], path resolution, the defaults) and puts the
//! sections together.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod audit;
mod cache;
mod consent;
mod console;
mod experiments;
mod limits;
mod listen;
mod network;
mod service;
#[cfg(test)]
mod tests;
mod upstream;

pub use crate::audit::AuditSettings;
pub use cache::{CacheSettings, RawCache};
pub use consent::RawConsent;
pub use console::{ConsoleSettings, ConsoleToken, RawConsole, MIN_TOKEN_CHARS};
pub use experiments::RawExperiments;
pub use limits::{Limits, RawLimits, RawTimeouts, Timeouts};
pub use listen::{ListenerSettings, RawCertificate, RawListener, RawTls, TlsSettings, TlsVersion};
pub use network::{
    ClientIpSettings, RawClientIp, RawCompanyDb, RawFirmographics, RawGeo, RawGeoStatic,
};
pub use service::{
    LogFormat, LogSettings, ProxySettings, RawAdmin, RawLog, RawProxy, RawRules, RawRuntime,
};
pub use upstream::{HostHeader, RawUpstream, UpstreamScheme, UpstreamSettings};

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
    pub audit: Option<audit::RawAudit>,
    pub experiments: Option<experiments::RawExperiments>,
    pub cache: Option<cache::RawCache>,
    pub console: Option<console::RawConsole>,
}

/// Defaults, chosen after nginx, Envoy and HAProxy (see the README's configuration reference for the reasoning).
pub(crate) mod defaults {
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
    pub experiments: crate::experiments::ExperimentSettings,
    pub cache: CacheSettings,
    pub console: ConsoleSettings,
    /// The file these settings came from, if any.
    pub source: Option<PathBuf>,
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
                let (raw, errors) = parse(&text, &p.display().to_string());
                let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
                let Some(raw) = raw else {
                    return Err(ConfigErrors(errors));
                };
                if !errors.is_empty() {
                    // Every problem at once: what could be read is validated too.
                    let mut all = errors;
                    if let Err(ConfigErrors(more)) = validate(raw, &base, overrides) {
                        all.extend(more);
                    }
                    return Err(ConfigErrors(all));
                }
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
        let (raw, mut errors) = parse(text, "config");
        let Some(raw) = raw else {
            return Err(ConfigErrors(errors));
        };
        match validate(raw, Path::new(""), overrides) {
            Ok(s) if errors.is_empty() => Ok(s),
            Ok(_) => Err(ConfigErrors(errors)),
            Err(ConfigErrors(more)) => {
                errors.extend(more);
                Err(ConfigErrors(errors))
            }
        }
    }
}

/// Parse TOML into the raw shape, with every wrong-typed value and unknown key (with a "did you mean") at
/// once, each named `<origin>:<line>:<column>`; the shape is `Some` when what remains could be read.
pub fn parse(text: &str, origin: &str) -> (Option<RawConfig>, Vec<ConfigError>) {
    let (raw, problems) = crate::tomlfile::read::<RawConfig>(text);
    let errors = problems
        .into_iter()
        .map(|p| {
            let key = match p.span {
                Some(s) => {
                    let (l, c) = crate::firmographics::company::line_col(text, s.start);
                    format!("{origin}:{l}:{c}")
                }
                None => origin.to_string(),
            };
            ConfigError {
                key,
                message: p.message,
            }
        })
        .collect();
    (raw, errors)
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
                // humantime's own words ("expected number at 0") are parser jargon: say what is wrong.
                let why = match e {
                    humantime::DurationError::UnknownUnit { unit, .. } => {
                        format!("`{unit}` is not a unit of time (ms, s, m, h, days, weeks)")
                    }
                    humantime::DurationError::NumberOverflow => "it is too long".to_string(),
                    humantime::DurationError::Empty => "it is empty".to_string(),
                    _ => "a duration is a number followed by a unit".to_string(),
                };
                self.fail(
                    key,
                    format!("`{text}` is not a duration: {why}; write e.g. \"500ms\", \"10s\", \"2m\", \"30days\""),
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

    /// A list of networks (`10.0.0.0/8`, `2001:db8::/32`); one with host bits set is almost always a typo.
    fn networks(&mut self, key: &str, list: &[String]) -> Vec<ipnetwork::IpNetwork> {
        let mut out = Vec::new();
        for (i, text) in list.iter().enumerate() {
            match text.parse::<ipnetwork::IpNetwork>() {
                Ok(n) if n.network() != n.ip() => self.fail(
                    format!("{key}[{i}]"),
                    format!("`{text}` has host bits set; did you mean `{}/{}`?", n.network(), n.prefix()),
                ),
                Ok(n) => out.push(n),
                Err(_) => self.fail(
                    format!("{key}[{i}]"),
                    format!("`{text}` is not an IP address or CIDR; write e.g. \"10.0.0.0/8\" or \"2001:db8::/32\""),
                ),
            }
        }
        out
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

/// Turn the raw file (plus command-line overrides) into [`Settings`], collecting every error.
pub fn validate(raw: RawConfig, base: &Path, ov: &Overrides) -> Result<Settings, ConfigErrors> {
    let mut c = Check { errors: Vec::new() };
    let listeners = listen::validate_listeners(&mut c, raw.listener, &ov.listen);
    let upstream = upstream::validate_upstream(&mut c, raw.upstream, ov.upstream.clone(), base);
    let tls = listen::validate_tls(&mut c, raw.tls, base);
    let limits = limits::validate_limits(&mut c, raw.limits);
    let timeouts = limits::validate_timeouts(&mut c, raw.timeouts);
    let admin = service::validate_admin(&mut c, raw.admin, ov.admin.as_deref(), &listeners);
    let log = service::validate_log(&mut c, raw.log, ov.log_format);
    let proxy = service::validate_proxy(&mut c, raw.proxy);
    let rules_dir = service::rules_dir(raw.rules, ov.rules.as_ref(), base);
    let worker_threads = service::worker_threads(&mut c, raw.runtime);
    let client_ip = network::validate_client_ip(&mut c, raw.client_ip, &listeners);
    let firmographics = network::validate_firmographics(&mut c, raw.firmographics, raw.geo, base);
    let consent = consent::validate_consent(&mut c, raw.consent, base);
    let audit = audit::validate_audit(
        &mut c,
        raw.audit,
        base,
        Duration::from_secs(consent.policy.max_age_seconds),
    );
    let experiments = experiments::validate_experiments(&mut c, raw.experiments);
    let cache = cache::validate_cache(&mut c, raw.cache);
    let console = console::validate_console(&mut c, raw.console, base, admin.is_some());

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
                experiments,
                cache,
                console,
                source: None,
            });
        }
    }
    Err(ConfigErrors(c.errors))
}
