//! TLS: loading certificate/key pairs (PEM), choosing one by SNI, and reloading them without a restart.
//!
//! Invariant: the resolver always holds a complete, valid certificate set. A reload builds a new set off to the
//! side and swaps it in atomically only if every pair loaded; otherwise the last good set keeps serving and the
//! failure is logged and counted. Protocol versions are TLS 1.2 and 1.3 only.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::config::{TlsSettings, TlsVersion};
use crate::metrics::{Metrics, ReloadResult};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a PEM certificate chain: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{path}: no PEM private key found (expected PKCS#8, PKCS#1 or SEC1): {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error("{cert} / {key}: key does not fit the certificate or is unsupported: {source}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "{path}: the certificate names no DNS subject alternative name, so no SNI can select it"
    )]
    NoNames { path: PathBuf },
    #[error("no certificate/key pairs found in {dir} (expected NAME.crt + NAME.key, NAME.pem + NAME.key, or NAME/fullchain.pem + NAME/privkey.pem; see certs/README.md)")]
    NoCertificates { dir: PathBuf },
    #[error("tls.default_certificate: no loaded certificate is valid for `{name}`")]
    UnknownDefault { name: String },
    #[error("TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// What one loaded pair serves, for `concierge check` and logs.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub names: Vec<String>,
}

/// One complete, immutable certificate set.
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.` (`example.com` for `*.example.com`).
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    pub entries: Vec<CertInfo>,
}

impl CertStore {
    fn select(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(ck) = self.exact.get(&name) {
                return ck.clone();
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(ck) = self.wildcard.get(parent) {
                    return ck.clone();
                }
            }
        }
        self.default.clone()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The (cert, key) pairs `settings` names, or those found in its certs directory.
pub fn certificate_paths(settings: &TlsSettings) -> Result<Vec<(PathBuf, PathBuf)>, TlsError> {
    if !settings.certificates.is_empty() {
        return Ok(settings.certificates.clone());
    }
    let dir = &settings.certs_dir;
    let entries = std::fs::read_dir(dir).map_err(|source| TlsError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut pairs = Vec::new();
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    names.sort();
    for path in names {
        if path.is_dir() {
            let (chain, key) = (path.join("fullchain.pem"), path.join("privkey.pem"));
            if chain.is_file() && key.is_file() {
                pairs.push((chain, key));
            }
            continue;
        }
        let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let stem = match file.rsplit_once('.') {
            Some((stem, "crt" | "pem")) if !stem.ends_with(".key") && !stem.ends_with("-key") => {
                stem
            }
            _ => continue,
        };
        let key = dir.join(format!("{stem}.key"));
        if key.is_file() {
            pairs.push((path.clone(), key));
        }
    }
    if pairs.is_empty() {
        return Err(TlsError::NoCertificates { dir: dir.clone() });
    }
    Ok(pairs)
}

fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<(CertifiedKey, Vec<String>), TlsError> {
    let cert_bytes = std::fs::read(cert).map_err(|source| TlsError::Read {
        path: cert.to_path_buf(),
        source,
    })?;
    let key_bytes = std::fs::read(key).map_err(|source| TlsError::Read {
        path: key.to_path_buf(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::BadCertificate {
            path: cert.to_path_buf(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TlsError::BadKey {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let end_entity =
        webpki::EndEntityCert::try_from(&chain[0]).map_err(|e| TlsError::BadCertificate {
            path: cert.to_path_buf(),
            reason: format!("{e:?}"),
        })?;
    let names: Vec<String> = end_entity
        .valid_dns_names()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    if names.is_empty() {
        return Err(TlsError::NoNames {
            path: cert.to_path_buf(),
        });
    }
    let ck = CertifiedKey::from_der(chain, private_key, provider).map_err(|source| {
        TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        }
    })?;
    Ok((ck, names))
}

/// Load every pair `settings` names; fails if any one fails (a half-loaded set would silently drop a site).
pub fn load_store(settings: &TlsSettings) -> Result<CertStore, TlsError> {
    let provider = provider();
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut entries = Vec::new();
    let mut first = None;
    for (cert, key) in certificate_paths(settings)? {
        let (ck, names) = load_pair(&cert, &key, &provider)?;
        let ck = Arc::new(ck);
        first.get_or_insert_with(|| ck.clone());
        for n in &names {
            match n.strip_prefix("*.") {
                Some(suffix) => wildcard
                    .entry(suffix.to_string())
                    .or_insert_with(|| ck.clone()),
                None => exact.entry(n.clone()).or_insert_with(|| ck.clone()),
            };
        }
        entries.push(CertInfo { cert, key, names });
    }
    let Some(first) = first else {
        return Err(TlsError::NoCertificates {
            dir: settings.certs_dir.clone(),
        });
    };
    let mut store = CertStore {
        exact,
        wildcard,
        default: first,
        entries,
    };
    if let Some(name) = &settings.default_certificate {
        let name = name.to_ascii_lowercase();
        let chosen = store.exact.get(&name).cloned().or_else(|| {
            name.split_once('.')
                .and_then(|(_, parent)| store.wildcard.get(parent).cloned())
        });
        match chosen {
            Some(ck) => store.default = ck,
            None => return Err(TlsError::UnknownDefault { name }),
        }
    }
    Ok(store)
}

/// Picks the certificate for each handshake from the current set.
pub struct SniResolver {
    store: ArcSwap<CertStore>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver")
            .field("certificates", &self.store.load().entries.len())
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.store.load().select(hello.server_name()))
    }
}

impl SniResolver {
    pub fn new(store: CertStore) -> Arc<SniResolver> {
        Arc::new(SniResolver {
            store: ArcSwap::from_pointee(store),
        })
    }
}

/// A rustls server config using `resolver`, offering h2 (if `http2`) and http/1.1 by ALPN.
pub fn server_config(
    resolver: Arc<SniResolver>,
    min_version: TlsVersion,
    http2: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // The server's preference order (strongest first) decides, not the client's (testssl.sh: "server cipher
    // order"), so a client listing a weaker suite first still gets the strongest both support.
    config.ignore_client_order = true;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

use crate::watch::Fingerprint;

/// Reloads a resolver's certificate set from its files, keeping the last good set on failure.
pub struct CertReloader {
    settings: TlsSettings,
    resolver: Arc<SniResolver>,
    metrics: Arc<Metrics>,
    fingerprint: Mutex<Fingerprint>,
}

impl CertReloader {
    pub fn new(
        settings: TlsSettings,
        resolver: Arc<SniResolver>,
        metrics: Arc<Metrics>,
    ) -> CertReloader {
        let fingerprint = Mutex::new(fingerprint(&settings));
        CertReloader {
            settings,
            resolver,
            metrics,
            fingerprint,
        }
    }

    /// Whether any watched file differs from the set that is loaded. A failed reload leaves this true, so
    /// the watcher keeps retrying until the files are fixed (e.g. a key written after its certificate).
    pub fn files_changed(&self) -> bool {
        let now = fingerprint(&self.settings);
        *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) != now
    }

    /// Load the set again; swap it in if it is complete, otherwise keep serving the old one.
    pub fn reload(&self, reason: &str) -> Result<usize, TlsError> {
        let before = fingerprint(&self.settings);
        match load_store(&self.settings) {
            Ok(store) => {
                let n = store.entries.len();
                self.resolver.store.store(Arc::new(store));
                *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) = before;
                self.metrics.tls_reload(ReloadResult::success);
                tracing::info!(reason, certificates = n, "TLS certificates reloaded");
                Ok(n)
            }
            Err(e) => {
                self.metrics.tls_reload(ReloadResult::failure);
                tracing::error!(reason, error = %e, "TLS certificate reload failed; keeping the previous certificates");
                Err(e)
            }
        }
    }
}

fn fingerprint(settings: &TlsSettings) -> Fingerprint {
    let mut files: Vec<PathBuf> = match certificate_paths(settings) {
        Ok(pairs) => pairs.into_iter().flat_map(|(c, k)| [c, k]).collect(),
        Err(_) => Vec::new(),
    };
    if settings.certificates.is_empty() {
        files.push(settings.certs_dir.clone());
    }
    crate::watch::fingerprint(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, stem: &str, names: &[&str]) {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .expect("generate");
        std::fs::write(dir.join(format!("{stem}.crt")), ck.cert.pem()).expect("write");
        std::fs::write(
            dir.join(format!("{stem}.key")),
            ck.signing_key.serialize_pem(),
        )
        .expect("write");
    }

    fn settings(dir: &Path) -> TlsSettings {
        TlsSettings {
            certs_dir: dir.to_path_buf(),
            certificates: vec![],
            default_certificate: None,
            watch_interval: None,
            min_version: TlsVersion::V1_2,
        }
    }

    #[test]
    fn discovers_pairs_and_selects_by_sni() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_pair(dir.path(), "a", &["a.test"]);
        write_pair(dir.path(), "b", &["b.test", "*.wild.test"]);
        std::fs::write(dir.path().join("README.md"), "not a cert").expect("write");
        let store = load_store(&settings(dir.path())).expect("load");
        assert_eq!(store.entries.len(), 2);
        let a = store.exact.get("a.test").expect("a").clone();
        let b = store.exact.get("b.test").expect("b").clone();
        assert!(Arc::ptr_eq(&store.select(Some("A.TEST.")), &a));
        assert!(Arc::ptr_eq(&store.select(Some("x.wild.test")), &b));
        assert!(
            Arc::ptr_eq(&store.select(Some("unknown.test")), &a),
            "first pair is the default"
        );
        assert!(Arc::ptr_eq(&store.select(None), &a));
    }

    #[test]
    fn default_certificate_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_pair(dir.path(), "a", &["a.test"]);
        write_pair(dir.path(), "b", &["b.test"]);
        let mut s = settings(dir.path());
        s.default_certificate = Some("b.test".into());
        let store = load_store(&s).expect("load");
        assert!(Arc::ptr_eq(
            &store.select(None),
            store.exact.get("b.test").expect("b")
        ));
        s.default_certificate = Some("c.test".into());
        assert!(matches!(
            load_store(&s),
            Err(TlsError::UnknownDefault { .. })
        ));
    }

    #[test]
    fn broken_pairs_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            load_store(&settings(dir.path())),
            Err(TlsError::NoCertificates { .. })
        ));
        write_pair(dir.path(), "a", &["a.test"]);
        write_pair(dir.path(), "b", &["b.test"]);
        // a key that belongs to another certificate
        std::fs::copy(dir.path().join("b.key"), dir.path().join("a.key")).expect("copy");
        let err = load_store(&settings(dir.path())).err().expect("mismatch");
        assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
        std::fs::write(
            dir.path().join("a.crt"),
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
        )
        .expect("write");
        let err = load_store(&settings(dir.path())).err().expect("garbage");
        assert!(err.to_string().contains("a.crt"), "{err}");
    }
}
