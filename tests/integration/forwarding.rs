use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn response_body_streams_before_the_origin_finishes() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let resp = send(server.listeners[0], request("GET", "/gated", &[], empty())).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // The first 64 KiB arrive while the origin is still holding the rest back.
    let mut got = 0;
    while got < 64 * 1024 {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("first chunk forwarded while the origin is still sending")
            .expect("frame")
            .expect("ok");
        got += frame.data_ref().map_or(0, Bytes::len);
    }
    origin.release();
    let rest = body.collect().await.expect("rest").to_bytes();
    assert_eq!(&rest[..], b"END");
}

#[tokio::test]
async fn request_body_streams_before_the_client_finishes() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let (tx, pending) = streaming_upload(server.listeners[0], "/upload");
    tx.send(Bytes::from(vec![1u8; 1000])).await.expect("send");
    // The origin sees the first chunk while the client still holds the body open.
    let first = tokio::time::timeout(Duration::from_secs(5), async {
        origin.upload_chunks.lock().await.recv().await
    });
    let first = first
        .await
        .expect("origin got the first chunk before the body ended")
        .expect("chunk");
    assert!(first > 0);
    tx.send(Bytes::from(vec![2u8; 500])).await.expect("send");
    drop(tx);
    let (status, body) = pending.await.expect("join");
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"1500");
}

#[tokio::test]
async fn keep_alive_reuses_upstream_connections() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    for i in 0..5 {
        // A new client connection each time: reuse must come from the upstream pool.
        let (resp, _) = get(server.listeners[0], &format!("/page{i}"), &[]).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        origin.connections.load(Ordering::SeqCst),
        1,
        "one pooled upstream connection for 5 requests"
    );
    assert_eq!(origin.seen().len(), 5);
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let resp = raw(
        server.listeners[0],
        b"GET /echo HTTP/1.1\r\nHost: www.example.test\r\nConnection: close, X-Client-Hop\r\nX-Client-Hop: 1\r\n\
          Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic YTpi\r\nProxy-Connection: keep-alive\r\n\
          Upgrade: h2c\r\nX-End-To-End: yes\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = origin.last();
    for h in [
        "x-client-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "upgrade",
        "connection",
    ] {
        assert!(seen.header(h).is_none(), "{h} reached the origin: {seen:?}");
    }
    assert_eq!(
        seen.header("te"),
        Some("trailers"),
        "TE keeps its trailers token"
    );
    assert_eq!(seen.header("x-end-to-end"), Some("yes"));

    let (resp, _) = get(server.listeners[0], "/hop", &[]).await;
    let h = resp.headers();
    for name in [
        "x-origin-hop",
        "keep-alive",
        "proxy-authenticate",
        "connection",
    ] {
        assert!(h.get(name).is_none(), "{name} reached the client");
    }
    assert_eq!(h.get("x-end-to-end").unwrap(), "kept");
    assert_eq!(h.get("trailer").unwrap(), "x-sum", "Trailer is end-to-end");
    assert_eq!(
        h.get("via").unwrap(),
        "1.1 concierge",
        "Via on responses too"
    );
}

#[tokio::test]
async fn forwarding_headers_via_and_request_id() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "[proxy]\ntrust_request_id = true\n").await;
    let (resp, _) = get(
        server.listeners[0],
        "/echo?q=1",
        &[
            ("host", "shop.example.test:8080"),
            ("x-forwarded-for", "203.0.113.66"),
            ("x-forwarded-host", "evil.test"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=203.0.113.66"),
            ("via", "1.0 edge"),
            ("x-request-id", "abc-123"),
        ],
    )
    .await;
    let seen = origin.last();
    assert_eq!(seen.uri, "/echo?q=1");
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "spoofed chain replaced by the real peer"
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some("shop.example.test:8080")
    );
    assert_eq!(
        seen.header("forwarded"),
        Some("for=127.0.0.1;host=\"shop.example.test:8080\";proto=http")
    );
    assert_eq!(seen.all("via"), ["1.0 edge", "1.1 concierge"]);
    assert_eq!(
        seen.header("host"),
        Some("shop.example.test:8080"),
        "Host preserved by default"
    );
    assert_eq!(
        seen.header("x-request-id"),
        Some("abc-123"),
        "valid incoming id propagated"
    );
    assert_eq!(resp.headers().get("x-request-id").unwrap(), "abc-123");

    // The default does not trust ids from clients.
    let untrusting = proxy(&origin.url(), "").await;
    let (resp, _) = get(
        untrusting.listeners[0],
        "/echo",
        &[("x-request-id", "abc-123")],
    )
    .await;
    assert_ne!(resp.headers().get("x-request-id").unwrap(), "abc-123");

    // An unacceptable id is replaced by a generated one, the same on both sides.
    let (resp, _) = get(
        server.listeners[0],
        "/echo",
        &[("x-request-id", "bad id with spaces")],
    )
    .await;
    let id = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 32);
    assert_eq!(origin.last().header("x-request-id"), Some(id.as_str()));
}

#[tokio::test]
async fn host_header_can_be_rewritten_to_the_upstream() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    drop(server);
    let toml = format!(
        "[upstream]\nurl = \"{}\"\nhost_header = \"upstream\"\n",
        origin.url()
    );
    let settings = concierge::config::Settings::from_toml(
        &toml,
        &concierge::config::Overrides {
            listen: vec!["127.0.0.1:0".into()],
            admin: Some("off".into()),
            ..Default::default()
        },
    )
    .expect("config");
    let server = concierge::app::Server::start(settings)
        .await
        .expect("start");
    get(
        server.listeners[0],
        "/echo",
        &[("host", "www.example.test")],
    )
    .await;
    let seen = origin.last();
    assert_eq!(seen.header("host"), Some(origin.addr.to_string().as_str()));
    assert_eq!(seen.header("x-forwarded-host"), Some("www.example.test"));
}

#[tokio::test]
async fn http2_cleartext_requests_are_forwarded_as_http11() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let (mut sender, _conn) = h2c(server.listeners[0]).await;
    let req = http::Request::builder()
        .uri("http://h2.example.test/echo")
        .body(empty())
        .expect("req");
    let resp = sender.send_request(req).await.expect("resp");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let seen = origin.last();
    assert_eq!(seen.header("via"), Some("2 concierge"));
    assert_eq!(seen.header("host"), Some("h2.example.test"));
}

#[tokio::test]
async fn upgrade_requests_pass_through() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let mut s = tokio::net::TcpStream::connect(server.listeners[0])
        .await
        .expect("connect");
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: www.example.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.expect("read head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    let seen = origin.last();
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(seen.header("connection"), Some("upgrade"));
    s.write_all(b"hello through the tunnel")
        .await
        .expect("write");
    let mut buf = [0u8; 24];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("echo")
        .expect("read");
    assert_eq!(&buf, b"hello through the tunnel");
}

#[tokio::test]
async fn reserved_prefix_never_reaches_the_origin() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let (resp, body) = get(server.listeners[0], "/_concierge/anything", &[]).await;
    assert_eq!(resp.status(), 404);
    assert!(String::from_utf8_lossy(&body).contains("404 Not Found"));
    assert!(origin.seen().is_empty());
}

#[tokio::test]
async fn plain_listener_can_redirect_to_https() {
    let origin = Origin::start().await;
    let server = proxy(
        &origin.url(),
        "[[listener]]\naddress = \"127.0.0.1:0\"\nredirect_to_https = true\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\nredirect_to_https = true\nhttps_port = 8443\n",
    )
    .await;
    let (resp, _) = get(
        server.listeners[0],
        "/pricing?plan=pro",
        &[("host", "www.example.test")],
    )
    .await;
    assert_eq!(resp.status(), 308);
    assert_eq!(
        resp.headers().get("location").unwrap(),
        "https://www.example.test/pricing?plan=pro"
    );
    let (resp, _) = get(server.listeners[1], "/", &[("host", "www.example.test:80")]).await;
    assert_eq!(
        resp.headers().get("location").unwrap(),
        "https://www.example.test:8443/"
    );
    // ACME HTTP-01 challenges still reach the origin.
    let (resp, _) = get(
        server.listeners[0],
        "/.well-known/acme-challenge/token",
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(origin.seen().len(), 1);
}

#[tokio::test]
async fn admin_endpoints_report_health_and_metrics() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    get(server.listeners[0], "/echo", &[]).await;
    let (status, body) = admin(&server, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _) = admin(&server, "/readyz").await;
    assert_eq!(status, 200);
    // The record phase runs when the body is finished, just after the client got it: poll briefly.
    let mut metrics = String::new();
    for _ in 0..100 {
        let (status, text) = admin(&server, "/metrics").await;
        assert_eq!(status, 200);
        metrics = text;
        if metrics.contains("concierge_http_requests_total{code=\"200\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        metrics.contains("concierge_http_requests_total{code=\"200\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("concierge_http_request_duration_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("concierge_open_connections{listener="),
        "{metrics}"
    );
    let (status, _) = admin(&server, "/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn demo_site_is_served_through_the_proxy() {
    let origin = concierge::demo::start_origin("127.0.0.1:0".parse().unwrap())
        .await
        .expect("demo origin");
    let server = proxy(&format!("http://{origin}"), "").await;
    let (resp, body) = get(server.listeners[0], "/", &[]).await;
    assert_eq!(resp.status(), 200);
    let html = String::from_utf8_lossy(&body);
    assert!(
        html.contains("id=\"hero-headline\""),
        "home page with the personalizable headline"
    );
    for page in [
        "/pricing.html",
        "/case-study.html",
        "/demo-request.html",
        "/styles.css",
    ] {
        let (resp, _) = get(server.listeners[0], page, &[]).await;
        assert_eq!(resp.status(), 200, "{page}");
    }
    let resp = send(
        server.listeners[0],
        request(
            "POST",
            "/demo-request",
            &[("content-type", "application/x-www-form-urlencoded")],
            full("name=Ada&email=ada%40example.test"),
        ),
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(resp.headers().get("location").unwrap(), "/thanks.html");
    let (resp, body) = get(server.listeners[0], "/echo", &[]).await;
    assert_eq!(resp.status(), 200);
    assert!(String::from_utf8_lossy(&body).contains("via: 1.1 concierge"));
}

#[tokio::test]
async fn other_upgrades_and_unrequested_switches_are_not_passed() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let resp = raw(
        server.listeners[0],
        b"GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200, "served as a plain request");
    let seen = origin.last();
    assert!(
        seen.header("upgrade").is_none() && seen.header("http2-settings").is_none(),
        "{seen:?}"
    );

    // An origin that answers 101 to a request that asked for no upgrade is broken: 502.
    let (resp, _) = get(server.listeners[0], "/switch", &[]).await;
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn head_requests_keep_framing_intact() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let tcp = tokio::net::TcpStream::connect(server.listeners[0])
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let resp = sender
        .send_request(request("HEAD", "/page", &[], empty()))
        .await
        .expect("head");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_some());
    assert!(resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .is_empty());
    // Same connection: the next response is read correctly, so HEAD sent no stray body bytes.
    let resp = sender
        .send_request(request("GET", "/page", &[], empty()))
        .await
        .expect("get");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"<html><body>echo /page</body></html>");
}

#[tokio::test]
async fn absolute_form_target_wins_over_host() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let resp = raw(
        server.listeners[0],
        b"GET http://abs.example.test/echo?x=1 HTTP/1.1\r\nHost: other.example.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = origin.last();
    assert_eq!(seen.uri, "/echo?x=1", "origin-form toward the origin");
    assert_eq!(seen.header("host"), Some("abs.example.test"));
}

#[tokio::test]
async fn http2_cookie_fields_are_joined_for_the_origin() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let (mut sender, _conn) = h2c(server.listeners[0]).await;
    let req = http::Request::builder()
        .uri("http://h2.example.test/echo")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(empty())
        .expect("req");
    assert_eq!(sender.send_request(req).await.expect("resp").status(), 200);
    assert_eq!(origin.last().all("cookie"), ["a=1; b=2"]);
}

#[tokio::test]
async fn connect_is_refused() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let resp = raw(
        server.listeners[0],
        b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 405);
    assert!(origin.seen().is_empty());
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "[timeouts]\nclient_idle = \"300ms\"\n").await;
    let (mut sender, conn) = h2c(server.listeners[0]).await;
    let req = http::Request::builder()
        .uri("http://a.test/echo")
        .body(empty())
        .expect("req");
    assert_eq!(sender.send_request(req).await.expect("resp").status(), 200);
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the proxy closed the idle connection")
        .expect("join")
        .ok();
}

#[tokio::test]
async fn a_slow_upload_is_not_an_origin_timeout() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "[timeouts]\nupstream_response = \"300ms\"\n").await;
    let (tx, pending) = streaming_upload(server.listeners[0], "/upload");
    tx.send(Bytes::from_static(b"part one;"))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(700)).await;
    tx.send(Bytes::from_static(b"part two"))
        .await
        .expect("send");
    drop(tx);
    let (status, body) = pending.await.expect("join");
    assert_eq!(
        status, 200,
        "the 300 ms response timeout starts when the upload ends"
    );
    assert_eq!(&body[..], b"17");
}

#[tokio::test]
async fn https_origin_with_an_extra_ca_file() {
    let ca = TestCa::new();
    let (origin, connections) = tls_origin(&ca).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = dir.path().join("origin-ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).expect("write ca");
    // ca_file belongs to [upstream]: build the config explicitly.
    let toml = format!(
        "[upstream]\nurl = \"https://localhost:{}\"\nca_file = \"{}\"\nhost_header = \"upstream\"\n[admin]\nenabled = false\n",
        origin.port(),
        ca_path.display()
    );
    let settings = concierge::config::Settings::from_toml(
        &toml,
        &concierge::config::Overrides {
            listen: vec!["127.0.0.1:0".into()],
            ..Default::default()
        },
    )
    .expect("config");
    let server = concierge::app::Server::start(settings)
        .await
        .expect("start");
    for _ in 0..3 {
        let (resp, body) = get(server.listeners[0], "/secure", &[]).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("tls origin /secure host=localhost:{}", origin.port())
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the TLS connection is pooled"
    );
}

#[tokio::test]
async fn requests_survive_an_origin_closing_idle_connections() {
    let (origin, connections) = closing_origin().await;
    let server = proxy(&format!("http://{origin}"), "").await;
    for i in 0..4 {
        let (resp, body) = get(server.listeners[0], "/", &[]).await;
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(&body[..], b"ok");
        // Give the origin time to close the kept-alive connection.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        4,
        "a fresh connection each time, never a 502"
    );
}

/// Regression (issue 13, item 13): `X_Forwarded_For: 6.6.6.6` reached the origin beside ours, where CGI/WSGI
/// merge both into `HTTP_X_FORWARDED_FOR`.
#[tokio::test]
async fn header_names_with_underscores_are_dropped() {
    let origin = Origin::start().await;
    let sneaky = [
        ("X_Forwarded_For", "6.6.6.6"),
        ("x_forwarded_host", "evil.example"),
        ("X_Real_IP", "6.6.6.6"),
        ("X_Request_Id", "forged"),
        ("X_Custom_Flag", "1"),
    ];
    let server = proxy(&origin.url(), "").await;
    get(server.listeners[0], "/", &sneaky).await;
    let seen = origin.last();
    assert!(
        seen.headers.iter().all(|(n, _)| !n.contains('_')),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(seen.header("x-forwarded-host"), Some("www.example.test"));

    // Passed on request, except names the proxy manages.
    let server = proxy(&origin.url(), "[proxy]\nunderscores_in_headers = true\n").await;
    get(server.listeners[0], "/", &sneaky).await;
    let seen = origin.last();
    let underscored: Vec<&str> = seen
        .headers
        .iter()
        .filter(|(n, _)| n.contains('_'))
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(underscored, ["x_custom_flag"]);
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"]);
}
