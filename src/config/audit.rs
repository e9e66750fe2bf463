//! `[audit]`: where records go, how durable, how the client is pseudonymized.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{resolve, Check};
use crate::audit::AuditSettings;

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
    pub instance: Option<String>,
    pub postgres: Option<RawPostgres>,
}

/// `[audit.postgres]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    pub url: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub ship_interval: Option<String>,
    pub ship_batch: Option<u32>,
    pub ship_connections: Option<u32>,
    pub max_lag: Option<String>,
    pub register: Option<bool>,
}

pub const DEFAULT_AUDIT_DIR: &str = "audit";

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
    let instance = raw.instance.filter(|i| {
        let ok = crate::audit::valid_instance(i);
        if !ok {
            c.fail(
                "audit.instance",
                format!("`{i}` is not an instance id: 1 to 64 letters, digits, '.', '_' or '-'"),
            );
        }
        ok
    });
    let postgres = raw.postgres.and_then(|p| {
        let Some(url) = p.url else {
            c.fail(
                "audit.postgres.url",
                "is required in [audit.postgres] (postgres://user@host/db)",
            );
            return None;
        };
        if let Err(e) = url.parse::<tokio_postgres::Config>() {
            c.fail("audit.postgres.url", format!("not a PostgreSQL URL: {e}"));
            return None;
        }
        let mut s = crate::postgres::PostgresSettings::for_url(
            &url,
            p.password_file.map(|f| resolve(base, &f)),
            p.ca_file.map(|f| resolve(base, &f)),
        );
        let mut duration = |key: &str, text: Option<String>, max: Duration| {
            let text = text?;
            match humantime::parse_duration(&text) {
                Ok(d) if !d.is_zero() && d <= max => Some(d),
                _ => {
                    c.fail(
                        key,
                        format!(
                            "`{text}` is not a duration between 1ms and {}",
                            humantime::format_duration(max)
                        ),
                    );
                    None
                }
            }
        };
        if let Some(d) = duration(
            "audit.postgres.ship_interval",
            p.ship_interval,
            Duration::from_secs(3600),
        ) {
            s.ship_interval = d;
        }
        if let Some(d) = duration(
            "audit.postgres.max_lag",
            p.max_lag,
            Duration::from_secs(7 * 24 * 3600),
        ) {
            s.max_lag = d;
        }
        match p.ship_batch {
            Some(n) if (1..=100_000).contains(&n) => s.ship_batch = n as usize,
            Some(n) => c.fail(
                "audit.postgres.ship_batch",
                format!("{n} is not between 1 and 100000"),
            ),
            None => {}
        }
        match p.ship_connections {
            Some(n) if (1..=8).contains(&n) => s.ship_connections = n as usize,
            Some(n) => c.fail(
                "audit.postgres.ship_connections",
                format!("{n} is not between 1 and 8"),
            ),
            None => {}
        }
        if let Some(r) = p.register {
            s.register = r;
        }
        Some(s)
    });
    AuditSettings {
        instance,
        postgres,
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
