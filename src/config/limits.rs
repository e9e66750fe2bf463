//! `[limits]` and `[timeouts]`: how much and how long a client or the origin may take.

use std::time::Duration;

use serde::Deserialize;

use super::{defaults, Check};

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

pub(super) fn validate_limits(c: &mut Check, raw: Option<RawLimits>) -> Limits {
    let rl = raw.unwrap_or_default();
    Limits {
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
    }
}

pub(super) fn validate_timeouts(c: &mut Check, raw: Option<RawTimeouts>) -> Timeouts {
    let rt = raw.unwrap_or_default();
    Timeouts {
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
    }
}
