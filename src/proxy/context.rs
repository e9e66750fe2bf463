//! The context phase: who is asking (the resolved client), for what host, under which request id — read once
//! per request; and what the accept loop learned about the connection.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Version};
use hyper::body::Incoming;

use super::{headers, server, Proxy};
use crate::client_ip::{self, ClientIp};

/// What the accept phase learned about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    /// Answer every request with a redirect to HTTPS on this port.
    pub redirect_https: Option<u16>,
    /// The server's life, for connections that outlive their request (upgrades).
    pub lifecycle: server::Lifecycle,
    /// The connection's client before any forwarding header: the PROXY protocol source, else the TCP peer.
    pub base: IpAddr,
    pub base_source: crate::client_ip::Source,
    /// `base` as the forwarding headers write it, built once per connection.
    pub client: headers::ClientAddr,
}

/// The immutable per-request context every phase reads.
pub struct RequestContext {
    pub request_id: HeaderValue,
    /// The resolved client: every later phase uses this, and the origin is told it.
    pub client: ClientIp,
    /// `http` or `https` as the client used it (a trusted balancer's `X-Forwarded-Proto` wins).
    pub scheme: &'static str,
    /// The host the client asked for (`Host`, or the authority of an absolute-form or HTTP/2 request),
    /// validated by [`headers::valid_host`].
    pub host: Option<HeaderValue>,
    /// The host to report in `X-Forwarded-Host`/`Forwarded`: a trusted balancer's `X-Forwarded-Host`, else
    /// `host`.
    pub forwarded_host: Option<HeaderValue>,
    pub method: Method,
    pub version: Version,
    pub start: Instant,
}

impl Proxy {
    /// Client phase: who is asking, for what host, under which request id.
    pub(super) fn context(&self, req: &Request<Incoming>, conn: &ConnInfo) -> RequestContext {
        let proxy = &self.settings.proxy;
        let trusted = &self.settings.client_ip.trusted_proxies;
        // With trusted proxies configured, only their request ids are believed.
        let trust_id =
            proxy.trust_request_id && (trusted.is_empty() || trusted.contains(conn.base));
        let request_id = req
            .headers()
            .get(&proxy.request_id_header)
            .filter(|v| trust_id && headers::acceptable_request_id(v))
            .cloned()
            .unwrap_or_else(headers::new_request_id);
        let resolved = client_ip::resolve(
            conn.base,
            conn.base_source,
            req.headers(),
            trusted,
            self.settings.client_ip.header,
        );
        // RFC 9112 §3.2.2: an absolute-form target's authority wins over Host; HTTP/2 carries it as :authority.
        let host = match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => req.headers().get(header::HOST).cloned(),
        }
        .filter(|h| headers::valid_host(h.as_bytes()));
        RequestContext {
            request_id,
            client: resolved.client,
            scheme: resolved
                .proto
                .unwrap_or(if conn.tls { "https" } else { "http" }),
            forwarded_host: resolved.host.or_else(|| host.clone()),
            host,
            method: req.method().clone(),
            version: req.version(),
            start: Instant::now(),
        }
    }
}
