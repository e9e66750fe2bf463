//! The upstream phase's client: pooled keep-alive HTTP/1.1 connections to the one origin, plain or TLS.
//!
//! Invariant: every request leaves with the origin's scheme and authority in its URI (so the pool keys and the
//! TLS server name are the origin's, never the client's), and with HTTP/1.1 framing chosen by hyper from the
//! body, so no client-supplied framing header reaches the origin.

use std::path::Path;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::config::{Timeouts, UpstreamScheme, UpstreamSettings};
use crate::metrics::UpstreamErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("upstream.ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
}

pub type HttpClient = Client<HttpsConnector<HttpConnector>, super::body::RequestBody>;

/// The origin and a connection pool to it.
pub struct Upstream {
    client: HttpClient,
    scheme: Scheme,
    authority: Authority,
    /// Upstream URL path prefix without trailing slash.
    base_path: String,
}

impl Upstream {
    pub fn new(
        settings: &UpstreamSettings,
        timeouts: &Timeouts,
    ) -> Result<Upstream, UpstreamSetupError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeouts.upstream_connect));
        http.set_keepalive(Some(Duration::from_secs(60)));

        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        if settings.scheme == UpstreamScheme::Https {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
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
                tracing::warn!("no trusted root certificates found for the https upstream; set upstream.ca_file");
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(timeouts.upstream_idle)
            .pool_max_idle_per_host(settings.pool_max_idle)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Upstream {
            client,
            scheme: match settings.scheme {
                UpstreamScheme::Http => Scheme::HTTP,
                UpstreamScheme::Https => Scheme::HTTPS,
            },
            authority: settings.authority.clone(),
            base_path: settings.base_path.clone(),
        })
    }

    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The origin URI for a client request target (`/path?query`).
    pub fn uri_for(&self, target: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let pq = match (target, self.base_path.is_empty()) {
            (Some(pq), true) if pq.as_str().starts_with('/') => pq.clone(),
            (Some(pq), _) if pq.as_str().starts_with('/') => {
                PathAndQuery::try_from(format!("{}{}", self.base_path, pq.as_str()))?
            }
            // `OPTIONS *` and absent targets go to the base path.
            _ => PathAndQuery::try_from(if self.base_path.is_empty() {
                "/".to_string()
            } else {
                self.base_path.clone()
            })?,
        };
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }
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

/// Sort a client error into a metrics kind, and whether it was a timeout (504) rather than a failure (502).
pub fn classify(err: &hyper_util::client::legacy::Error) -> UpstreamErrorKind {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut kind = if err.is_connect() {
        UpstreamErrorKind::connect
    } else {
        UpstreamErrorKind::other
    };
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::TimedOut if err.is_connect() => {
                    return UpstreamErrorKind::connect_timeout
                }
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
                    if !err.is_connect() =>
                {
                    return UpstreamErrorKind::reset
                }
                _ => {}
            }
        }
        if e.downcast_ref::<rustls::Error>().is_some() {
            return UpstreamErrorKind::tls;
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                kind = UpstreamErrorKind::reset;
            }
        }
        source = e.source();
    }
    kind
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
