use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn loopback_source_addresses_reach_the_origin() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    for from in ["127.0.0.7", "127.0.0.42", "127.1.2.3"] {
        let (resp, _) = get_from(
            from,
            server.listeners[0],
            "/echo",
            &[("x-forwarded-for", "6.6.6.6")],
        )
        .await;
        assert_eq!(resp.status(), 200);
        let seen = origin.last();
        assert_eq!(
            seen.header("x-forwarded-for"),
            Some(from),
            "no trusted proxies: the peer is the client"
        );
        assert_eq!(
            seen.header("forwarded"),
            Some(format!("for={from};host=www.example.test;proto=http").as_str())
        );
    }
}

const TRUST_LB: &str = "[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";

#[tokio::test]
async fn a_trusted_hop_supplies_the_client_and_spoofing_fails() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), TRUST_LB).await;
    // Through the trusted balancer (127.0.0.1): the client forged 6.6.6.6, the balancer appended the real one.
    let (resp, _) = get_from(
        "127.0.0.1",
        server.listeners[0],
        "/echo",
        &[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let seen = origin.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("198.51.100.7"));
    assert_eq!(
        seen.header("x-forwarded-proto"),
        Some("https"),
        "the balancer terminated TLS"
    );
    assert_eq!(
        seen.header("forwarded"),
        Some("for=198.51.100.7;host=www.example.test;proto=https")
    );

    // The same headers from an untrusted address change nothing.
    get_from(
        "127.0.0.9",
        server.listeners[0],
        "/echo",
        &[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    let seen = origin.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.9"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));

    // A malformed chain from the balancer falls back to the balancer itself.
    get_from(
        "127.0.0.1",
        server.listeners[0],
        "/echo",
        &[("x-forwarded-for", "198.51.100.7, bogus")],
    )
    .await;
    assert_eq!(origin.last().header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn forwarded_header_mode() {
    let origin = Origin::start().await;
    let server = proxy(
        &origin.url(),
        "[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\nheader = \"forwarded\"\n",
    )
    .await;
    get_from(
        "127.0.0.1",
        server.listeners[0],
        "/echo",
        &[
            ("forwarded", "for=6.6.6.6, for=\"[2001:db8::7]:4711\""),
            ("x-forwarded-for", "203.0.113.1"),
        ],
    )
    .await;
    let seen = origin.last();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("2001:db8::7"),
        "X-Forwarded-For is not read in this mode"
    );
    assert!(seen
        .header("forwarded")
        .unwrap()
        .starts_with("for=\"[2001:db8::7]\";"));
}

const PROXY_LISTENER: &str = "[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
    [[listener]]\naddress = \"127.0.0.1:0\"\nproxy_protocol = true\n\
    [timeouts]\nproxy_header = \"500ms\"\n";

async fn read_all(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    buf
}

#[tokio::test]
async fn proxy_protocol_v1_split_across_segments() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), PROXY_LISTENER).await;
    let mut s = connect_from("127.0.0.1", server.listeners[0]).await;
    s.set_nodelay(true).expect("nodelay");
    let request: &[u8] = b"PROXY TCP4 198.51.100.7 10.0.0.1 56324 443\r\nGET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n";
    for piece in [
        &request[..9],
        &request[9..30],
        &request[30..50],
        &request[50..],
    ] {
        s.write_all(piece).await.expect("write");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let resp = parse_raw(&read_all(&mut s).await);
    assert_eq!(resp.status, 200);
    assert_eq!(
        origin.last().header("x-forwarded-for"),
        Some("198.51.100.7")
    );
}

#[tokio::test]
async fn proxy_protocol_v2_and_local() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), PROXY_LISTENER).await;
    let header = proxy_header::ProxyHeader::with_address(proxy_header::ProxiedAddress::stream(
        "[2001:db8::7]:4711".parse().unwrap(),
        "[2001:db8::1]:443".parse().unwrap(),
    ));
    let mut bytes = Vec::new();
    header.encode_v2(&mut bytes).expect("encode");
    bytes.extend_from_slice(b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    let mut s = connect_from("127.0.0.1", server.listeners[0]).await;
    s.write_all(&bytes).await.expect("write");
    assert_eq!(parse_raw(&read_all(&mut s).await).status, 200);
    assert_eq!(origin.last().header("x-forwarded-for"), Some("2001:db8::7"));

    // LOCAL (a balancer health check): the balancer itself is the client.
    let mut bytes = Vec::new();
    proxy_header::ProxyHeader::with_local()
        .encode_v2(&mut bytes)
        .expect("encode");
    bytes.extend_from_slice(b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    let mut s = connect_from("127.0.0.1", server.listeners[0]).await;
    s.write_all(&bytes).await.expect("write");
    assert_eq!(parse_raw(&read_all(&mut s).await).status, 200);
    assert_eq!(origin.last().header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn proxy_protocol_refusals_close_the_connection() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), PROXY_LISTENER).await;
    let cases: &[(&str, &[u8])] = &[
        // A PROXY header from an address that is not a trusted balancer.
        (
            "127.0.0.9",
            b"PROXY TCP4 198.51.100.7 10.0.0.1 1 2\r\nGET /echo HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        // The balancer forgot the header.
        ("127.0.0.1", b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n"),
        // Malformed.
        (
            "127.0.0.1",
            b"PROXY TCP4 banana 10.0.0.1 1 2\r\nGET /echo HTTP/1.1\r\nHost: a\r\n\r\n",
        ),
        // Too slow: an incomplete header, then silence past proxy_header (500 ms).
        ("127.0.0.1", b"PROXY TCP4 198.51."),
    ];
    for (from, bytes) in cases {
        let mut s = connect_from(from, server.listeners[0]).await;
        let _ = s.write_all(bytes).await;
        let answer = read_all(&mut s).await;
        assert!(
            answer.is_empty(),
            "{from} {bytes:?}: closed without an answer, got {answer:?}"
        );
    }
    assert!(origin.seen().is_empty());
    let metrics = admin(&server, "/metrics").await.1;
    assert!(
        metrics.contains("concierge_client_errors_total{kind=\"proxy_protocol\"} 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn company_sources_reload_and_keep_the_last_good_tables() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let accounts = dir.path().join("accounts");
    std::fs::create_dir(&accounts).expect("mkdir");
    std::fs::write(
        accounts.join("acme.example.toml"),
        "[account]\ndomain = \"acme.example\"\nname = \"Acme\"\nnetworks = [\"127.0.10.0/24\"]\n",
    )
    .expect("write");
    let server = proxy(
        &origin.url(),
        &format!(
            "[rules]\ndir = \"{}\"\n[firmographics]\nwatch_interval = \"50ms\"\n",
            dir.path().display()
        ),
    )
    .await;
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let company = |server: &concierge::app::Server, s: &str| {
        server
            .firmographics()
            .company(ip(s), concierge::consent::policy::LookupPermit::operator())
            .ok()
            .and_then(|m| m.company.domain.clone())
    };
    assert_eq!(
        company(&server, "127.0.10.5").as_deref(),
        Some("acme.example")
    );
    assert_eq!(company(&server, "127.0.20.5"), None);

    // A new account file is picked up without a restart.
    std::fs::write(
        accounts.join("globex.example.toml"),
        "[account]\ndomain = \"globex.example\"\nname = \"Globex\"\nnetworks = [\"127.0.20.0/24\"]\n",
    )
    .expect("write");
    let mut seen = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        seen = company(&server, "127.0.20.5");
        if seen.is_some() {
            break;
        }
    }
    assert_eq!(seen.as_deref(), Some("globex.example"));

    // A broken file: the previous tables keep serving, the failure is counted, SIGHUP's reload reports it.
    std::fs::write(accounts.join("broken.toml"), "[account]\ndomain = \"x\"\n").expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        company(&server, "127.0.10.5").as_deref(),
        Some("acme.example")
    );
    assert_eq!(
        company(&server, "127.0.20.5").as_deref(),
        Some("globex.example")
    );
    let err = server.reload_sources("test").expect_err("broken file");
    assert!(err.contains("broken.toml"), "{err}");
    let metrics = admin(&server, "/metrics").await.1;
    assert!(
        metrics.contains(
            "concierge_source_reloads_total{source=\"firmographics\",result=\"success\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "concierge_source_reloads_total{source=\"firmographics\",result=\"failure\"}"
        ),
        "{metrics}"
    );
}
