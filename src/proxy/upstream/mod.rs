//! The upstream phase's client: pooled keep-alive HTTP/1.1 connections to the one origin, plain or TLS.
//!
//! Why not hyper-util's pooled client: it is built for many hosts (a hash map of pools keyed by scheme and
//! authority, a task spawned per request to return connections) and that bookkeeping was the largest single
//! cost per proxied request in our profiles (see BENCHMARKS.md). With exactly one origin, a pool is a stack of
//! idle connections. Connections are hyper's own `client::conn::http1`; TLS is tokio-rustls.
//!
//! Invariants:
//! - A connection goes back to the pool only after its response body was read to the end, so the next request
//!   on it can never see bytes of the previous response.
//! - A request that a pooled connection hands back unsent (the origin closed it while idle) is retried on
//!   another connection; a request that was sent is never retried (it may not be idempotent).
//! - Requests leave in origin-form (`/path?query`) with HTTP/1.1 framing chosen by hyper from the body, so no
//!   client-supplied framing header reaches the origin.

mod request_body;
pub use request_body::{Ahead, RequestBody};

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::uri::PathAndQuery;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use crate::config::{Timeouts, UpstreamScheme, UpstreamSettings};
use crate::metrics::UpstreamErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("upstream.ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("upstream.url: `{0}` cannot be used as a TLS server name")]
    ServerName(String),
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Why a request to the origin failed before its response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to the origin: {0}")]
    Connect(#[source] io::Error),
    #[error("connect to the origin timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("TLS handshake with the origin: {0}")]
    Tls(#[source] io::Error),
    #[error("HTTP/1.1 handshake with the origin: {0}")]
    Handshake(#[source] hyper::Error),
    #[error("request to the origin: {0}")]
    Request(#[source] hyper::Error),
}

impl UpstreamError {
    /// The metrics label, which also decides 502 versus 504.
    pub fn kind(&self) -> UpstreamErrorKind {
        match self {
            UpstreamError::Connect(_) => UpstreamErrorKind::connect,
            UpstreamError::ConnectTimeout(_) => UpstreamErrorKind::connect_timeout,
            UpstreamError::Tls(_) => UpstreamErrorKind::tls,
            UpstreamError::Handshake(_) => UpstreamErrorKind::other,
            UpstreamError::Request(e) => {
                let reset = e.is_incomplete_message()
                    || e.is_closed()
                    || e.is_canceled()
                    || std::error::Error::source(e)
                        .and_then(|s| s.downcast_ref::<io::Error>())
                        .is_some_and(|io| {
                            matches!(
                                io.kind(),
                                io::ErrorKind::ConnectionReset
                                    | io::ErrorKind::ConnectionAborted
                                    | io::ErrorKind::BrokenPipe
                                    | io::ErrorKind::UnexpectedEof
                            )
                        });
                if reset {
                    UpstreamErrorKind::reset
                } else {
                    UpstreamErrorKind::other
                }
            }
        }
    }
}

struct Idle {
    sender: SendRequest<RequestBody>,
    since: Instant,
}

/// Idle connections, most recently used on top (warm connections get reused, cold ones age out).
struct Pool {
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    fn take(&self) -> Option<SendRequest<RequestBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if !c.sender.is_closed() && c.since.elapsed() < self.idle_timeout {
                return Some(c.sender);
            }
        }
        None
    }

    fn put(&self, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Close connections idle for longer than the timeout (or closed by the origin).
    fn prune(&self) {
        let expired: Vec<Idle> = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            let (keep, expired) = idle
                .drain(..)
                .partition(|c| !c.sender.is_closed() && c.since.elapsed() < self.idle_timeout);
            *idle = keep;
            expired
        };
        drop(expired);
    }
}

/// A connection borrowed for one request; [`Lease::release`] returns it once the response was read to the end.
/// Dropped instead, the connection closes after whatever is in flight.
pub struct Lease {
    sender: SendRequest<RequestBody>,
    pool: Arc<Pool>,
}

impl Lease {
    pub fn release(self) {
        self.pool.put(self.sender);
    }
}

/// The origin and a connection pool to it.
pub struct Upstream {
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    /// Upstream URL path prefix without trailing slash.
    base_path: String,
    pool: Arc<Pool>,
}

impl Upstream {
    /// Build the client; spawns the pool's pruning task, so call it inside a Tokio runtime.
    pub fn new(
        settings: &UpstreamSettings,
        timeouts: &Timeouts,
    ) -> Result<Upstream, UpstreamSetupError> {
        let tls = match settings.scheme {
            UpstreamScheme::Http => None,
            UpstreamScheme::Https => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    // A single unparsable system certificate must not take the others down.
                    let _ = roots.add(cert);
                }
                if let Some(path) = &settings.ca_file {
                    for cert in load_ca_file(path)? {
                        roots.add(cert).map_err(|e| UpstreamSetupError::CaFile {
                            path: path.display().to_string(),
                            reason: e.to_string(),
                        })?;
                    }
                }
                if roots.is_empty() {
                    tracing::warn!(
                        "no trusted root certificates for the https upstream; set upstream.ca_file"
                    );
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let mut config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
                let name = ServerName::try_from(settings.host.clone())
                    .map_err(|_| UpstreamSetupError::ServerName(settings.host.clone()))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
            }
        };
        let pool = Arc::new(Pool {
            idle: Mutex::new(Vec::new()),
            max_idle: settings.pool_max_idle,
            idle_timeout: timeouts.upstream_idle,
        });
        let weak: Weak<Pool> = Arc::downgrade(&pool);
        let every = (timeouts.upstream_idle / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match weak.upgrade() {
                    Some(pool) => pool.prune(),
                    None => return,
                }
            }
        });
        Ok(Upstream {
            host: settings.host.clone(),
            port: settings.authority.port_u16().unwrap_or(80),
            tls,
            connect_timeout: timeouts.upstream_connect,
            base_path: settings.base_path.clone(),
            pool,
        })
    }

    /// The origin-form target for a client request target (`/path?query`), under the upstream's base path.
    pub fn target_for(&self, target: Option<&PathAndQuery>) -> Result<PathAndQuery, http::Error> {
        Ok(match (target, self.base_path.is_empty()) {
            (Some(pq), true) if pq.as_str().starts_with('/') => pq.clone(),
            (Some(pq), _) if pq.as_str().starts_with('/') => {
                PathAndQuery::try_from(format!("{}{}", self.base_path, pq.as_str()))?
            }
            // Authority-only HTTP/2 requests go to the base path.
            _ if self.base_path.is_empty() => PathAndQuery::from_static("/"),
            _ => PathAndQuery::try_from(self.base_path.clone())?,
        })
    }

    /// Send `req` (origin-form URI, `Host` set) on a pooled or new connection.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Lease), UpstreamError> {
        while let Some(mut sender) = self.pool.take() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, self.lease(sender))),
                Err(mut e) => match e.take_message() {
                    // Never written: the origin closed this idle connection; try the next one.
                    Some(unsent) => req = unsent,
                    None => return Err(UpstreamError::Request(e.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        sender.ready().await.map_err(UpstreamError::Handshake)?;
        match sender.send_request(req).await {
            Ok(resp) => Ok((resp, self.lease(sender))),
            Err(e) => Err(UpstreamError::Request(e)),
        }
    }

    fn lease(&self, sender: SendRequest<RequestBody>) -> Lease {
        Lease {
            sender,
            pool: self.pool.clone(),
        }
    }

    async fn connect(&self) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| UpstreamError::ConnectTimeout(self.connect_timeout))?
        .map_err(UpstreamError::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let tls = tokio::time::timeout(
                    self.connect_timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| UpstreamError::ConnectTimeout(self.connect_timeout))?
                .map_err(UpstreamError::Tls)?;
                handshake(tls).await
            }
        }
    }
}

async fn handshake<IO>(io: IO) -> Result<SendRequest<RequestBody>, UpstreamError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "origin connection ended with an error");
        }
    });
    Ok(sender)
}

fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamSetupError> {
    let fail = |reason: String| UpstreamSetupError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no PEM CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The full cause chain of an error on one line, for logs.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}
