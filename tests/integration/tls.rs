use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use crate::support::*;

fn tls_toml(dir: &Path, extra: &str) -> String {
    format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = true\n[tls]\ncerts_dir = \"{}\"\n{extra}",
        dir.display()
    )
}

#[tokio::test]
async fn http2_over_tls_by_alpn() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.write_leaf(dir.path(), "site", &["www.example.test"]);
    let server = proxy(&origin.url(), &tls_toml(dir.path(), "")).await;
    let addr = server.listeners[0];

    let (tls, alpn, _) = tls_connect(
        addr,
        "www.example.test",
        ca.client_config(&[b"h2", b"http/1.1"]),
    )
    .await
    .expect("handshake");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(executor(), TokioIo::new(tls))
        .await
        .expect("h2");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("https://www.example.test/echo")
        .body(empty())
        .expect("req");
    let resp = sender.send_request(req).await.expect("resp");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let seen = origin.last();
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("via"), Some("2 concierge"));
    assert_eq!(seen.header("host"), Some("www.example.test"));

    // A client that only speaks HTTP/1.1 gets HTTP/1.1.
    let (tls, alpn, _) = tls_connect(addr, "www.example.test", ca.client_config(&[b"http/1.1"]))
        .await
        .expect("handshake");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("h1");
    tokio::spawn(conn);
    let resp = sender
        .send_request(request("GET", "/big", &[], empty()))
        .await
        .expect("resp");
    assert_eq!(resp.version(), http::Version::HTTP_11);
    assert_eq!(
        resp.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .len(),
        1024 * 1024
    );
}

#[tokio::test]
async fn min_version_1_3_refuses_tls_1_2_clients() {
    // Nothing older than TLS 1.2 exists in rustls at all; min_version = "1.3" also refuses 1.2-only clients.
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.write_leaf(dir.path(), "site", &["www.example.test"]);
    let server = proxy(
        &origin.url(),
        &tls_toml(dir.path(), "min_version = \"1.3\"\n"),
    )
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("root");
    let tls12_only = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    assert!(
        tls_connect(server.listeners[0], "www.example.test", tls12_only)
            .await
            .is_err()
    );
    assert!(tls_connect(
        server.listeners[0],
        "www.example.test",
        ca.client_config(&[])
    )
    .await
    .is_ok());
}

#[tokio::test]
async fn sni_selects_the_certificate() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let a = ca.write_leaf(dir.path(), "a", &["a.example.test"]);
    let b = ca.write_leaf(dir.path(), "b", &["b.example.test", "*.b.example.test"]);
    let server = proxy(
        &origin.url(),
        &tls_toml(dir.path(), "default_certificate = \"b.example.test\"\n"),
    )
    .await;
    let addr = server.listeners[0];
    let cfg = ca.client_config(&[]);
    let (_, _, leaf) = tls_connect(addr, "a.example.test", cfg.clone())
        .await
        .expect("a");
    assert_eq!(leaf, a);
    let (_, _, leaf) = tls_connect(addr, "b.example.test", cfg.clone())
        .await
        .expect("b");
    assert_eq!(leaf, b);
    let (_, _, leaf) = tls_connect(addr, "shop.b.example.test", cfg.clone())
        .await
        .expect("wildcard");
    assert_eq!(leaf, b);
    // Unknown name: the configured default certificate (b) is offered.
    let (_, _, leaf) = tls_connect(addr, "unknown.example.test", accept_any_certificate())
        .await
        .expect("default certificate");
    assert_eq!(leaf, b);
    assert_ne!(leaf, a);
    drop(cfg);
}

#[tokio::test]
async fn certificate_reload_keeps_the_last_good_set() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let first = ca.write_leaf(dir.path(), "site", &["www.example.test"]);
    let server = proxy(
        &origin.url(),
        &tls_toml(dir.path(), "watch_interval = \"0s\"\n"),
    )
    .await;
    let addr = server.listeners[0];
    let cfg = ca.client_config(&[]);

    // A good new certificate is picked up on reload (what SIGHUP does).
    let second = ca.write_leaf(dir.path(), "site", &["www.example.test"]);
    assert_ne!(first, second);
    assert_eq!(
        server
            .reload_tls("test")
            .expect("tls configured")
            .expect("reload ok"),
        1
    );
    let (_, _, leaf) = tls_connect(addr, "www.example.test", cfg.clone())
        .await
        .expect("handshake");
    assert_eq!(leaf, second);

    // A broken key: the reload fails, the previous certificate keeps serving, the failure is counted.
    std::fs::write(
        dir.path().join("site.key"),
        "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    assert!(server.reload_tls("test").expect("tls configured").is_err());
    let (_, _, leaf) = tls_connect(addr, "www.example.test", cfg)
        .await
        .expect("still serving");
    assert_eq!(leaf, second);
    let metrics = admin(&server, "/metrics").await.1;
    assert!(
        metrics.contains("concierge_tls_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("concierge_tls_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn certificate_files_are_watched() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.write_leaf(dir.path(), "site", &["www.example.test"]);
    let server = proxy(
        &origin.url(),
        &tls_toml(dir.path(), "watch_interval = \"100ms\"\n"),
    )
    .await;
    let cfg = ca.client_config(&[]);
    // mtime resolution can be coarse: make sure the rewrite is visible as a change.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = ca.write_leaf(
        dir.path(),
        "site",
        &["www.example.test", "new.example.test"],
    );
    let mut served = Vec::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok((_, _, leaf)) =
            tls_connect(server.listeners[0], "new.example.test", cfg.clone()).await
        {
            served = leaf;
            break;
        }
    }
    assert_eq!(
        served, second,
        "the changed certificate was loaded without a signal"
    );
}

#[tokio::test]
async fn broken_certificates_refuse_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("site.crt"), "garbage").expect("write");
    std::fs::write(dir.path().join("site.key"), "garbage").expect("write");
    let toml = format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[admin]\nenabled = false\n{}",
        tls_toml(dir.path(), "")
    );
    let settings =
        concierge::config::Settings::from_toml(&toml, &concierge::config::Overrides::default())
            .expect("config");
    let err = concierge::app::Server::start(settings)
        .await
        .err()
        .expect("must not start");
    assert!(err.to_string().contains("site.crt"), "{err}");
}

/// A client that accepts whatever certificate it is shown, to see which one the server picked.
fn accept_any_certificate() -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    #[derive(Debug)]
    struct AnyCert(std::sync::Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for AnyCert {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    std::sync::Arc::new(cfg)
}

/// Regression (issue 13, item 15): testssl.sh reported "no server cipher order": the client's first suite won.
#[tokio::test]
async fn the_server_chooses_the_cipher_suite() {
    use rustls::crypto::ring::cipher_suite as cs;
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.write_leaf(dir.path(), "site", &["www.example.test"]);
    let server = proxy(&origin.url(), &tls_toml(dir.path(), "")).await;
    let addr = server.listeners[0];
    for (version, weak_first, strongest) in [
        (
            &rustls::version::TLS13,
            vec![cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_AES_256_GCM_SHA384],
            cs::TLS13_AES_256_GCM_SHA384,
        ),
        (
            &rustls::version::TLS12,
            vec![
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ],
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
    ] {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert.der().clone()).expect("root");
        let provider = rustls::crypto::CryptoProvider {
            cipher_suites: weak_first,
            ..rustls::crypto::ring::default_provider()
        };
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
            .with_protocol_versions(&[version])
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (tls, _, _) = tls_connect(addr, "www.example.test", std::sync::Arc::new(config))
            .await
            .expect("handshake");
        let chosen = tls.get_ref().1.negotiated_cipher_suite().expect("suite");
        assert_eq!(chosen.suite(), strongest.suite(), "{version:?}");
    }
}

/// Review finding (issue 13, item 3): over HTTPS the consent cookie is `__Host-concierge_consent` (host-only,
/// Secure: no sibling subdomain can plant one); a signed cookie under the plain name there grants nothing.
#[tokio::test]
async fn over_https_the_consent_cookie_is_host_only() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    ca.write_leaf(dir.path(), "site", &["www.example.test"]);
    let rules = dir.path().join("rules/accounts");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("loop.example.toml"),
        // A rule on every page, so the company is looked up wherever consent permits it.
        "[account]\ndomain = \"loop.example\"\nname = \"Loop\"\nnetworks = [\"127.0.0.0/8\"]\n\
         [[personalization]]\nid = \"all\"\ntier = \"firmographic\"\n\
         [[personalization.action]]\nselect = \"#loop-never\"\nset_text = \"{{ company.name }}\"\n",
    )
    .unwrap();
    let audit = dir.path().join("audit");
    let server = proxy(
        &origin.url(),
        &tls_toml(
            dir.path(),
            &format!(
                "[rules]\ndir = \"{}\"\n[audit]\ndir = \"{}\"\n[[geo.static]]\nnetwork = \"127.0.0.0/8\"\ncountry = \"DE\"\n",
                dir.path().join("rules").display(),
                audit.display()
            ),
        ),
    )
    .await;
    let addr = server.listeners[0];
    let send = |req: http::Request<TestBody>| {
        let config = ca.client_config(&[b"http/1.1"]);
        async move {
            let (tls, _, _) = tls_connect(addr, "www.example.test", config)
                .await
                .expect("handshake");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .expect("h1");
            tokio::spawn(conn);
            sender.send_request(req).await.expect("response")
        }
    };
    let resp = send(request(
        "POST",
        "/_concierge/consent",
        &[
            ("origin", "https://www.example.test"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        full("choice=accept"),
    ))
    .await;
    assert_eq!(resp.status(), 303);
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("__Host-concierge_consent=2~"), "{set}");
    assert!(set.contains("; Path=/;") && set.ends_with("; Secure") && !set.contains("Domain"));
    let value = set
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("__Host-concierge_consent=");
    let lookups = |m: &str| {
        metric_value(m, "concierge_company_lookups_total{result=\"match\"}").unwrap_or(0.0)
    };
    // The same signed value under the plain name (as a sibling subdomain could set it): no grant.
    send(request(
        "GET",
        "/",
        &[
            ("accept", "text/html"),
            ("cookie", &format!("concierge_consent={value}")),
        ],
        empty(),
    ))
    .await;
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(
        lookups(&m),
        0.0,
        "a plain-named cookie over HTTPS grants nothing"
    );
    send(request(
        "GET",
        "/",
        &[
            ("accept", "text/html"),
            ("cookie", &format!("__Host-concierge_consent={value}")),
        ],
        empty(),
    ))
    .await;
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(lookups(&m), 1.0, "the host-only cookie grants");
}
