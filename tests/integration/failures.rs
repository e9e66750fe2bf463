use std::time::Duration;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

async fn metrics_text(server: &concierge::app::Server) -> String {
    admin(server, "/metrics").await.1
}

#[tokio::test]
async fn refused_origin_gives_502_with_a_page() {
    let dead = closed_port().await;
    let server = proxy(&format!("http://{dead}"), "").await;
    let (resp, body) = get(server.listeners[0], "/", &[]).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("502 Bad Gateway"), "{page}");
    let id = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(page.contains(id), "the page shows the request id");
    assert!(metrics_text(&server)
        .await
        .contains("concierge_upstream_errors_total{kind=\"connect\"} 1"));
}

#[tokio::test]
async fn slow_origin_gives_504() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "[timeouts]\nupstream_response = \"300ms\"\n").await;
    let (resp, body) = get(server.listeners[0], "/slow", &[]).await;
    assert_eq!(resp.status(), 504);
    assert!(String::from_utf8_lossy(&body).contains("504 Gateway Timeout"));
    assert!(metrics_text(&server)
        .await
        .contains("concierge_upstream_errors_total{kind=\"response_timeout\"} 1"));
    // The proxy is still fine afterwards.
    let (resp, _) = get(server.listeners[0], "/echo", &[]).await;
    assert_eq!(resp.status(), 200);
}

/// An origin that answers with a chunked head, sends one chunk and closes without the last chunk (so only the
/// proxy's own error handling can tell the client the body is incomplete).
async fn resetting_origin() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc")
                    .await;
                drop(s);
            });
        }
    });
    addr
}

/// An origin that closes the connection without answering.
async fn hangup_origin() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    addr
}

#[tokio::test]
async fn origin_hanging_up_before_the_head_gives_502() {
    let addr = hangup_origin().await;
    let server = proxy(&format!("http://{addr}"), "").await;
    let (resp, _) = get(server.listeners[0], "/", &[]).await;
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn origin_reset_mid_body_aborts_the_client_response() {
    let addr = resetting_origin().await;
    let server = proxy(&format!("http://{addr}"), "").await;
    let resp = send(server.listeners[0], request("GET", "/", &[], empty())).await;
    assert_eq!(resp.status(), 200, "the head was already on its way");
    let body = resp.into_body().collect().await;
    assert!(
        body.is_err(),
        "a truncated body must not look complete to the client"
    );
    // The proxy keeps serving (the origin cuts every body short, so only the head is checked).
    let resp = send(server.listeners[0], request("GET", "/", &[], empty())).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn header_and_uri_limits() {
    let origin = Origin::start().await;
    let server = proxy(
        &origin.url(),
        "[limits]\nmax_headers = 20\nmax_uri_bytes = 1024\n",
    )
    .await;
    let addr = server.listeners[0];

    let mut many = String::from("GET / HTTP/1.1\r\nHost: a.test\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        raw(addr, many.as_bytes()).await.status,
        431,
        "too many headers"
    );

    let huge = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: {}\r\n\r\n",
        "v".repeat(100 * 1024)
    );
    assert_eq!(
        raw(addr, huge.as_bytes()).await.status,
        431,
        "head larger than max_header_bytes"
    );

    let long_value = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "v".repeat(9000)
    );
    assert_eq!(
        raw(addr, long_value.as_bytes()).await.status,
        431,
        "one header value over 8 KiB"
    );

    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
        "a".repeat(2000)
    );
    assert_eq!(raw(addr, long_uri.as_bytes()).await.status, 414);

    assert!(
        origin.seen().is_empty(),
        "nothing over a limit reached the origin"
    );
    let (resp, _) = get(addr, "/ok", &[]).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn request_smuggling_shapes_never_reach_the_origin() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let addr = server.listeners[0];
    let cases: &[(&str, &[u8])] = &[
        (
            "conflicting CL",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabcGET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ),
        (
            "TE not chunked",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        ),
        (
            "obfuscated TE",
            b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        ),
        ("missing Host", b"GET / HTTP/1.1\r\n\r\n"),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n"),
        ("bad Host", b"GET / HTTP/1.1\r\nHost: a.test/../x\r\n\r\n"),
        ("TE on HTTP/1.0", b"POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ];
    for (name, bytes) in cases {
        let resp = raw(addr, bytes).await;
        assert!(
            (400..500).contains(&resp.status),
            "{name}: got {}",
            resp.status
        );
        assert!(
            !String::from_utf8_lossy(&resp.body).contains("200 OK"),
            "{name}: a second response followed"
        );
    }
    assert!(
        origin.seen().is_empty(),
        "no smuggling shape reached the origin: {:?}",
        origin.seen()
    );

    // CL + TE: read by Transfer-Encoding alone, Content-Length dropped, connection closed after the response,
    // so the bytes after the chunked body are never taken as a second request.
    let both = raw(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n",
    )
    .await;
    assert_eq!(both.status, 200);
    assert!(
        !String::from_utf8_lossy(&both.body).contains("HTTP/1.1"),
        "only one response on that connection"
    );
    let seen = origin.seen();
    assert_eq!(
        seen.len(),
        1,
        "the smuggled request never reached the origin: {seen:?}"
    );
    assert_eq!(seen[0].uri, "/echo");
    assert_eq!(seen[0].body_len, 0);
    assert!(
        seen[0].header("content-length").is_none_or(|v| v == "0"),
        "{seen:?}"
    );

    // A chunked request is forwarded with unambiguous framing.
    let resp = raw(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = origin.last();
    assert_eq!(seen.uri, "/echo");
    assert_eq!(seen.body_len, 5);
    assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
    assert!(seen.header("content-length").is_none());
}

#[tokio::test]
async fn slow_request_head_is_cut_off() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "[timeouts]\nclient_header = \"300ms\"\n").await;
    let mut s = tokio::net::TcpStream::connect(server.listeners[0])
        .await
        .expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the proxy closed the slowloris connection");
    // Regression (issue 13, item 14): it was closed silently; a partial head gets a 408, as HAProxy answers.
    let resp = parse_raw(&buf);
    assert_eq!(resp.status, 408, "{}", resp.head);
    assert!(origin.seen().is_empty());
}

/// Regression (issue 13, item 14): a connection that sent nothing was kept until `client_idle` (60 s), not
/// `client_header` as documented.
#[tokio::test]
async fn a_silent_connection_is_closed_at_the_header_timeout() {
    let origin = Origin::start().await;
    let server = proxy(
        &origin.url(),
        "[timeouts]\nclient_header = \"300ms\"\nclient_idle = \"60s\"\n",
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(server.listeners[0])
        .await
        .expect("connect");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "closed long before client_idle");
    assert!(buf.is_empty(), "nothing was asked, nothing is answered");
    let m = metrics_text(&server).await;
    assert_eq!(
        metric_value(&m, "concierge_client_errors_total{kind=\"header_timeout\"}"),
        Some(1.0)
    );
    // A request that arrives in time is served, and its keep-alive connection stays usable.
    let (resp, _) = get(server.listeners[0], "/", &[]).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn origin_stalling_mid_body_cuts_the_response() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "[timeouts]\nupstream_response = \"300ms\"\n").await;
    let resp = send(server.listeners[0], request("GET", "/stall", &[], empty())).await;
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
        .await
        .expect("the stall was detected, not waited out");
    assert!(
        body.is_err(),
        "a stalled body ends in an error, not a clean end"
    );
}

#[tokio::test]
async fn https_origin_with_an_untrusted_certificate_gives_502() {
    let ca = TestCa::new();
    let (origin, _) = tls_origin(&ca).await;
    // No ca_file: the test CA is not trusted.
    let server = proxy(&format!("https://localhost:{}", origin.port()), "").await;
    let (resp, _) = get(server.listeners[0], "/", &[]).await;
    assert_eq!(resp.status(), 502);
    assert!(metrics_text(&server)
        .await
        .contains("concierge_upstream_errors_total{kind=\"tls\"} 1"));
}

/// A listener that never accepts, with its tiny backlog already full: further connection attempts get no
/// SYN-ACK and hang, as against a blackholed origin (all on loopback).
fn blackhole() -> (
    std::net::SocketAddr,
    Vec<std::net::TcpStream>,
    tokio::net::TcpListener,
) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(1).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    (addr, fillers, listener)
}

#[tokio::test]
async fn origin_connect_timeout_gives_504() {
    let (addr, _fillers, _listener) = blackhole();
    let server = proxy(
        &format!("http://{addr}"),
        "[timeouts]\nupstream_connect = \"300ms\"\n",
    )
    .await;
    let started = std::time::Instant::now();
    let (resp, body) = get(server.listeners[0], "/", &[]).await;
    assert_eq!(resp.status(), 504);
    assert!(String::from_utf8_lossy(&body).contains("504 Gateway Timeout"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(metrics_text(&server)
        .await
        .contains("concierge_upstream_errors_total{kind=\"connect_timeout\"} 1"));
}

/// Issue 13, item 16: the low-severity framing and target shapes, decided and pinned.
#[tokio::test]
async fn identical_content_lengths_fragments_and_h2_host_mismatch() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let addr = server.listeners[0];
    // RFC 9110 §8.6 allows taking a list of identical values as one, or refusing it. Refused (400), as nginx
    // does: a list is never needed, and no two parsers on the path can then read it differently.
    let body = "x".repeat(42);
    let resp = raw(
        addr,
        format!("POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 42, 42\r\nConnection: close\r\n\r\n{body}")
            .as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 400);
    assert!(origin.seen().is_empty());
    // The same value on two lines (a repeated field, which hyper takes as one): the origin gets one value.
    let resp = raw(
        addr,
        format!("POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 42\r\nContent-Length: 42\r\nConnection: close\r\n\r\n{body}")
            .as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = origin.last();
    assert_eq!(seen.body_len, 42);
    assert_eq!(seen.all("content-length"), ["42"]);
    // A fragment is not part of a request target (RFC 9112 §3.2). hyper's parser drops it before anything
    // reads the target, so the proxy, the rules and the origin all see the same path: no two readings.
    let resp = raw(
        addr,
        b"GET /page?q=1#frag HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(origin.last().uri, "/page?q=1");
    // HTTP/2: a Host header that differs from :authority makes the request malformed (RFC 9113 §8.3.1).
    let (mut h2, _conn) = h2c(addr).await;
    let req = http::Request::builder()
        .uri("http://www.example.test/echo")
        .header("host", "evil.example")
        .body(empty())
        .unwrap();
    let resp = h2.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 400);
    let req = http::Request::builder()
        .uri("http://www.example.test/echo")
        .header("host", "WWW.example.test")
        .body(empty())
        .unwrap();
    let resp = h2.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200, "the same host in another case is fine");
}

/// Regression (issue 13, item 12): a malformed chunked request body was answered 502 "the site's server could
/// not be reached", counted as an upstream error, and the origin received a truncated request.
#[tokio::test]
async fn a_malformed_request_body_is_the_clients_fault() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let addr = server.listeners[0];
    // Bad from the first chunk: refused before the origin sees anything.
    let resp = raw(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 400, "{}", resp.head);
    assert!(String::from_utf8_lossy(&resp.body).contains("request body"));
    assert!(origin.seen().is_empty(), "no half request at the origin");
    // Bad after a good chunk: the origin got an unfinished body (and a closed connection), the client a 400.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(b"zz\r\nworld\r\n0\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert_eq!(parse_raw(&buf).status, 400);
    let m = metrics_text(&server).await;
    assert!(
        !m.lines()
            .any(|l| l.starts_with("concierge_upstream_errors_total{") && !l.ends_with(" 0")),
        "no upstream error counted:\n{}",
        m.lines()
            .filter(|l| l.contains("upstream_errors"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        metric_value(&m, "concierge_client_errors_total{kind=\"malformed\"}"),
        Some(2.0)
    );
}

/// An origin that holds every request for 3 s before answering, counting requests in progress — until answered
/// or until the proxy closes the connection (a cancelled request). Returns (address, in progress, most at once,
/// requests seen).
async fn holding_origin() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (now, max, seen) = (
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicUsize::new(0)),
    );
    let (n, m, s) = (now.clone(), max.clone(), seen.clone());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (n, m, s) = (n.clone(), m.clone(), s.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                s.fetch_add(1, SeqCst);
                let cur = n.fetch_add(1, SeqCst) + 1;
                m.fetch_max(cur, SeqCst);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(3)) => {
                        let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                    }
                    _ = tcp.read(&mut chunk) => {} // closed by the proxy: cancelled
                }
                n.fetch_sub(1, SeqCst);
            });
        }
    });
    (addr, now, max, seen)
}

/// Regression (issue 13, item 11): one HTTP/2 connection dispatching 128 requests and resetting them, over and
/// over, drove 12,032 streams in 8 s with no GOAWAY and kept up to 3,143 requests in progress at the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_gets_goaway_and_its_origin_requests_are_cancelled() {
    use std::sync::atomic::Ordering::SeqCst;
    let (origin, in_progress, most, seen) = holding_origin().await;
    let server = proxy(&format!("http://{origin}"), "").await;
    let tcp = tokio::net::TcpStream::connect(server.listeners[0])
        .await
        .unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.expect("h2c");
    let conn = tokio::spawn(conn);
    let mut sent = 0usize;
    'attack: for _ in 0..100 {
        let mut streams = Vec::new();
        for _ in 0..128 {
            client = match client.ready().await {
                Ok(c) => c,
                Err(_) => break 'attack,
            };
            let req = http::Request::get("http://www.example.test/hold")
                .body(())
                .unwrap();
            match client.send_request(req, true) {
                Ok((_, stream)) => {
                    streams.push(stream);
                    sent += 1;
                }
                Err(_) => break 'attack,
            }
        }
        // Let the proxy dispatch them to the origin, then cancel them all.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for mut s in streams {
            s.send_reset(h2::Reason::CANCEL);
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the proxy ended the connection")
        .unwrap();
    let err = ended.expect_err("a connection error");
    assert!(
        err.is_go_away() && err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM),
        "GOAWAY(ENHANCE_YOUR_CALM), got {err:?} after {sent} streams"
    );
    assert!(sent <= 512, "cut off early: {sent} streams");
    assert!(seen.load(SeqCst) > 0, "the requests reached the origin");
    // Every origin request of the reset streams is cancelled (its connection closed), long before the origin's
    // own 3 s; never more in progress than the stream limit.
    let mut cancelled = false;
    for _ in 0..100 {
        if in_progress.load(SeqCst) == 0 {
            cancelled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cancelled,
        "{} origin requests still in progress",
        in_progress.load(SeqCst)
    );
    assert!(most.load(SeqCst) <= 128, "{} at once", most.load(SeqCst));
    let m = metrics_text(&server).await;
    assert_eq!(
        metric_value(&m, "concierge_client_errors_total{kind=\"rapid_reset\"}"),
        Some(1.0)
    );
    // A client that resets now and then is not cut off.
    let tcp = tokio::net::TcpStream::connect(server.listeners[0])
        .await
        .unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2c");
    let conn = tokio::spawn(conn);
    let mut client = client;
    // (Dropping both handles of an unfinished stream resets it too: the others are kept.)
    let mut open = Vec::new();
    for i in 0..120 {
        client = client.ready().await.expect("still open");
        let uri = if i % 5 == 0 { "/hold" } else { "/fast" };
        let req = http::Request::get(format!("http://www.example.test{uri}"))
            .body(())
            .unwrap();
        let (resp, stream) = client.send_request(req, true).expect("sent");
        open.push((i, resp, stream));
    }
    // A moment later (as a browser cancels a navigation), every fifth is cancelled.
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (i, _, stream) in open.iter_mut() {
        if *i % 5 == 0 {
            stream.send_reset(h2::Reason::CANCEL);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    if conn.is_finished() {
        panic!("24 resets in 120 streams are fine, but: {:?}", conn.await);
    }
    drop(open);
}
