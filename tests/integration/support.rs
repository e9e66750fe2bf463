//! Shared test parts: a real origin server with scripted behaviours, a proxy on ephemeral ports, raw and
//! hyper clients over real sockets, and generated TLS certificates.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use concierge::app::Server;
use concierge::config::{Overrides, Settings};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

pub type TestBody = BoxBody<Bytes, std::io::Error>;

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> TestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// What the origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl Seen {
    fn of(
        method: &http::Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body_len: usize,
    ) -> Seen {
        Seen {
            method: method.to_string(),
            uri: uri.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body_len,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A real HTTP origin on 127.0.0.1 with scripted paths:
/// - `/echo`: 200, records the request (see [`Origin::seen`]);
/// - `/gated`: sends `first` chunk, waits for [`Origin::release`], then sends the rest (streaming proof);
/// - `/slow`: waits 2 s before the head;
/// - `/hop`: answers with hop-by-hop headers;
/// - `/upload`: reports each request body chunk on a channel as it arrives, then 200 with the total;
/// - `/ws`: 101 upgrade to a byte echo;
/// - `/big`: 1 MiB body;
/// - `/stall`: one chunk, then an open body that sends nothing for 30 s;
/// - `/switch`: 101 even when no upgrade was asked for.
pub struct Origin {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Arc<Notify>,
    pub upload_chunks: tokio::sync::Mutex<mpsc::UnboundedReceiver<usize>>,
}

impl Origin {
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Notify::new());
        let (chunk_tx, chunk_rx) = mpsc::unbounded_channel();
        let (c, s, g) = (connections.clone(), seen.clone(), gate.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (s, g, tx) = (s.clone(), g.clone(), chunk_tx.clone());
                tokio::spawn(async move {
                    let svc =
                        service_fn(move |req| origin_handle(req, s.clone(), g.clone(), tx.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Origin {
            addr,
            connections,
            seen,
            gate,
            upload_chunks: tokio::sync::Mutex::new(chunk_rx),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().last().cloned().expect("origin saw a request")
    }

    pub fn release(&self) {
        self.gate.notify_one();
    }
}

/// A windows-1252 page that says so only in `<meta>`: "Über" is one byte per letter.
pub const LATIN1_PAGE: &[u8] =
    b"<html><head><meta charset=\"windows-1252\"></head><body><h1 class=\"hero\">\xdcber uns</h1>\
<p class=\"lead\">x</p><a class=\"cta\" href=\"/demo\">Demo</a></body></html>";

/// `data` compressed with a `Content-Encoding` name (gzip, deflate = zlib, br, zstd).
pub fn compress(coding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).unwrap();
            }
            out
        }
        "zstd" => zstd::stream::encode_all(data, 3).unwrap(),
        other => panic!("no coding {other}"),
    }
}

/// The inverse of [`compress`].
pub fn decompress(coding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        "deflate" => {
            flate2::read::ZlibDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::stream::decode_all(data).unwrap(),
        _ => out = data.to_vec(),
    }
    out
}

/// A body sent in frames of `size` bytes.
fn chunked(data: Vec<u8>, size: usize) -> TestBody {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let data = Bytes::from(data);
        let mut at = 0;
        while at < data.len() {
            let end = (at + size).min(data.len());
            if tx.send(data.slice(at..end)).await.is_err() {
                return;
            }
            at = end;
        }
    });
    BodyExt::boxed(ChannelBody(rx))
}

async fn origin_handle(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Arc<Notify>,
    chunks: mpsc::UnboundedSender<usize>,
) -> Result<Response<TestBody>, std::io::Error> {
    let path = req.uri().path().to_string();
    let record = |req: &Request<Incoming>, body_len| {
        Seen::of(req.method(), req.uri(), req.headers(), body_len)
    };
    match path.as_str() {
        "/gated" => {
            seen.lock().unwrap().push(record(&req, 0));
            let (tx, rx) = mpsc::channel::<Bytes>(2);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from(vec![b'a'; 64 * 1024])).await;
                gate.notified().await;
                let _ = tx.send(Bytes::from_static(b"END")).await;
            });
            let body = ChannelBody(rx);
            Ok(Response::builder()
                .header("content-type", "text/plain")
                .body(BodyExt::boxed(body))
                .expect("response"))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(Response::new(full("slow")))
        }
        "/hop" => Ok(Response::builder()
            .header("connection", "x-origin-hop, keep-alive")
            .header("x-origin-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("trailer", "x-sum")
            .header("x-end-to-end", "kept")
            .body(full("hop"))
            .expect("response")),
        "/upload" => {
            let mut total = 0;
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(std::io::Error::other)?;
                if let Some(d) = frame.data_ref() {
                    total += d.len();
                    let _ = chunks.send(d.len());
                }
            }
            Ok(Response::new(full(format!("{total}"))))
        }
        "/ws" => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            seen.lock().unwrap().push(record(&req, 0));
            tokio::spawn(async move {
                if let Ok(up) = on_upgrade.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            Ok(Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(empty())
                .expect("response"))
        }
        "/big" => Ok(Response::new(full(vec![b'x'; 1024 * 1024]))),
        "/site" | "/site.css" => {
            // A site that does its worst to the widgets: dark, global styles with !important, a strict CSP.
            let (ct, body) = if path == "/site" {
                ("text/html; charset=utf-8", SITE)
            } else {
                ("text/css", SITE_CSS)
            };
            Ok(Response::builder()
                .header("content-type", ct)
                .header("content-security-policy", "default-src 'self'")
                .body(full(body))
                .expect("response"))
        }
        "/landing" => {
            let (parts, _) = req.into_parts();
            seen.lock()
                .unwrap()
                .push(Seen::of(&parts.method, &parts.uri, &parts.headers, 0));
            Ok(Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .header("etag", "\"p1\"")
                .header("last-modified", "Tue, 24 Nov 2026 10:00:00 GMT")
                .header("cache-control", "public, max-age=600")
                .body(full(PAGE))
                .expect("response"))
        }
        "/landing.z" => {
            // The landing page compressed as `?c=` says, sent in 100-byte frames.
            let (parts, _) = req.into_parts();
            seen.lock()
                .unwrap()
                .push(Seen::of(&parts.method, &parts.uri, &parts.headers, 0));
            let coding = parts
                .uri
                .query()
                .unwrap_or("c=gzip")
                .trim_start_matches("c=");
            let body = compress(coding, PAGE.as_bytes());
            Ok(Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .header("content-encoding", coding)
                .header("vary", "Accept-Encoding")
                .body(chunked(body, 100))
                .expect("response"))
        }
        "/bomb" => {
            // 64 MiB of markup that gzips to about 64 KiB.
            static BOMB: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
                let mut page = b"<html><head></head><body><p>".to_vec();
                page.resize(64 * 1024 * 1024, b'a');
                compress("gzip", &page)
            });
            Ok(Response::builder()
                .header("content-type", "text/html")
                .header("content-encoding", "gzip")
                .body(chunked(BOMB.clone(), 16 * 1024))
                .expect("response"))
        }
        "/latin1" => Ok(Response::builder()
            .header("content-type", "text/html")
            .body(full(LATIN1_PAGE.to_vec()))
            .expect("response")),
        "/logo.svg" => Ok(Response::builder()
            .header("content-type", "image/svg+xml")
            .body(full("<svg><h1>not a page</h1></svg>"))
            .expect("response")),
        "/stall" => {
            // One chunk, then silence with the body still open.
            let (tx, rx) = mpsc::channel::<Bytes>(1);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"first")).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(tx);
            });
            Ok(Response::new(BodyExt::boxed(ChannelBody(rx))))
        }
        "/switch" => Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(empty())
            .expect("response")),
        _ => {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            let s = Seen::of(&parts.method, &parts.uri, &parts.headers, body.len());
            seen.lock().unwrap().push(s);
            Ok(Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .header("etag", "\"v1\"")
                .body(full(format!("<html><body>echo {path}</body></html>")))
                .expect("response"))
        }
    }
}

/// The page `/landing` serves.
pub const PAGE: &str = "<!doctype html><html lang=\"en\"><head><title>Example</title></head><body>\
<h1 class=\"hero\">Software for every team</h1><p class=\"lead\">Generic lead.</p>\
<a class=\"cta\" href=\"/demo\">Book a demo</a></body></html>";

/// `/site`: an accessible dark-scheme page whose styles try to reach into the widgets (served with
/// `Content-Security-Policy: default-src 'self'`).
pub const SITE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Dark site</title>\
<link rel=\"stylesheet\" href=\"/site.css\"></head><body>\
<header><nav aria-label=\"Main\"><a id=\"home\" href=\"/site\">Home</a> <a href=\"/site#pricing\">Pricing</a></nav></header>\
<main><h1 class=\"hero\">Software for every team</h1><h2>Why teams choose us</h2>\
<p class=\"lead\">Generic lead.</p><p><a class=\"cta\" href=\"/site#demo\">Book a demo</a></p>\
<p id=\"pricing\">Plans for every size.</p></main>\
<footer><p>Example Inc.</p></footer></body></html>";

const SITE_CSS: &str = "html { background: #0d1117; color-scheme: dark; }\
body { display: flex; flex-direction: column; gap: 3rem; margin: 0 auto; max-width: 50rem; padding: 1rem; \
  color: #e6edf3; font: 18px/1.6 Georgia, serif; }\
a { color: #7ee787; }\
h2 { color: #e6edf3 !important; font-size: 3rem !important; }\
section h2, [role=region] h2, body > div h2 { color: #111 !important; }\
button, input, textarea { background: hotpink !important; color: #000 !important; font-size: 30px !important; }\
p { margin: 4rem 0 !important; letter-spacing: 0.3em; text-transform: uppercase; }\
div, section, fieldset { border: 5px dashed red !important; padding: 3rem !important; }";

/// A body fed from a channel: each message is one data frame.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Every record of the `audit` stream under the audit directory `dir`, in order.
pub fn audit_records(dir: &Path) -> Vec<serde_json::Value> {
    stream_records(dir, "audit")
}

/// Every record of `stream` under the audit directory `dir`, in order (none if the stream has no directory).
pub fn stream_records(dir: &Path, stream: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let stream_dir = dir.join(stream);
    if stream_dir.is_dir() {
        concierge::audit::query::for_each(&stream_dir, |_, v| out.push(v.clone()))
            .expect("read the audit log");
    }
    out
}

/// The `concierge` binary built for these tests.
pub fn concierge() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_concierge"))
}

/// A proxy whose loopback clients are in Germany (opt-in) except 127.0.10.0/24 (California, opt-out), with
/// `account` as `rules/accounts/acme.example.toml` and an audit log (`dir/log`, signed by `dir/keys/signing.key`)
/// under `dir`, plus `extra` TOML.
pub async fn audited_proxy(origin: &Origin, dir: &Path, account: &str, extra: &str) -> Server {
    let rules = dir.join("rules");
    std::fs::create_dir_all(rules.join("accounts")).expect("rules dir");
    std::fs::write(rules.join("accounts/acme.example.toml"), account).expect("account file");
    proxy(
        &origin.url(),
        &format!(
            "[rules]\ndir = \"{}\"\n[audit]\ndir = \"{}\"\nsigning_key = \"{}\"\n{extra}\n\
             [[geo.static]]\nnetwork = \"127.0.0.0/8\"\ncountry = \"DE\"\n\
             [[geo.static]]\nnetwork = \"127.0.10.0/24\"\ncountry = \"US\"\nsubdivision = \"CA\"\n",
            rules.display(),
            dir.join("log").display(),
            signing_key(&dir.join("keys")).display()
        ),
    )
    .await
}

/// A first-party consent cookie (`concierge_consent=…`) signed, as the consent endpoint would, with the cookie
/// key a proxy using the audit directory `audit_dir` created at start.
pub fn signed_consent(audit_dir: &Path, firmographic: bool, personal: bool, time: u64) -> String {
    use concierge::consent::first_party::{CookieKey, FirstParty, Integrity};
    let key =
        CookieKey::load(&audit_dir.join("cookie.key")).expect("the proxy created its cookie key");
    let fp = FirstParty {
        consent_id: "0123456789abcdef0123456789abcdef".into(),
        banner_version: "1".into(),
        time,
        firmographic,
        personal,
        integrity: Integrity::Signed,
    };
    format!("concierge_consent={}", fp.encode(&key))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A fresh checkpoint signing key at `dir/signing.key` (and its public half at `dir/signing.key.pub`).
pub fn signing_key(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("key dir");
    let path = dir.join("signing.key");
    if !path.exists() {
        concierge::audit::keys::create(&path).expect("key");
    }
    path
}

/// Start a proxy in this process on an ephemeral port in front of `upstream`, with extra TOML. The access log is
/// off (it writes straight to this process's stderr, past the test harness's capture); the binary's tests and
/// `accesslog`'s unit tests cover it.
pub async fn proxy(upstream: &str, extra_toml: &str) -> Server {
    let mut toml = format!(
        "[upstream]\nurl = \"{upstream}\"\n[admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = false\n{extra_toml}"
    );
    if !extra_toml.contains("[audit]") {
        // Records go to a directory of the test's own (kept: a test may read it after the proxy stops).
        let dir = tempfile::tempdir().expect("tempdir").keep();
        toml.push_str(&format!(
            "\n[audit]\ndir = \"{}\"\nsigning_key = \"{}\"\n",
            dir.display(),
            signing_key(&dir).display()
        ));
    }
    let has_listener = extra_toml.contains("[[listener]]");
    let overrides = Overrides {
        listen: if has_listener {
            vec![]
        } else {
            vec!["127.0.0.1:0".into()]
        },
        ..Default::default()
    };
    let settings =
        Settings::from_toml(&toml, &overrides).unwrap_or_else(|e| panic!("test config: {e}"));
    Server::start(settings).await.expect("proxy starts")
}

/// Start a proxy with this whole TOML config (an ephemeral listener added) and return why it refused to start.
pub async fn start_error(toml: &str) -> String {
    let overrides = Overrides {
        listen: vec!["127.0.0.1:0".into()],
        ..Default::default()
    };
    let settings =
        Settings::from_toml(toml, &overrides).unwrap_or_else(|e| panic!("test config: {e}"));
    Server::start(settings)
        .await
        .err()
        .expect("the proxy refuses to start")
        .to_string()
}

/// A parsed HTTP/1.x response read from a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Send raw bytes, read until the peer closes (or 5 s), parse the first response.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    parse_raw(&buf)
}

pub fn parse_raw(buf: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(buf);
    let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body_start = head.len() + 4;
    RawResponse {
        status,
        head: head.to_string(),
        body: buf.get(body_start..).unwrap_or_default().to_vec(),
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the response with its body collected.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (Response<()>, Bytes) {
    let resp = send(addr, request("GET", path, headers, empty())).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (Response::from_parts(parts, ()), bytes)
}

pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> Request<TestBody> {
    let mut b = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        b = b.header("host", "www.example.test");
    }
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(body).expect("request")
}

/// Send over a fresh HTTP/1.1 connection; the connection task runs in the background.
pub async fn send(addr: SocketAddr, req: Request<TestBody>) -> Response<Incoming> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn.with_upgrades());
    sender.send_request(req).await.expect("response")
}

/// An address on which nothing listens.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    a
}

/// Fetch an admin path.
pub async fn admin(server: &Server, path: &str) -> (u16, String) {
    let (resp, body) = get(server.admin.expect("admin enabled"), path, &[]).await;
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

// ------------------------------------------------------------------------------------------------- TLS

/// A test CA and a leaf signed by it for `names`, written as `stem.crt` / `stem.key` in `dir`.
pub struct TestCa {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Concierge Test CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("ca");
        let issuer_key = rcgen::KeyPair::from_pem(&key.serialize_pem()).expect("key copy");
        let issuer = rcgen::Issuer::new(params, issuer_key);
        TestCa { cert, key, issuer }
    }

    /// Write a leaf for `names` as `dir/stem.crt` + `dir/stem.key`; returns the leaf's DER.
    pub fn write_leaf(&self, dir: &Path, stem: &str, names: &[&str]) -> Vec<u8> {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).expect("write cert");
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).expect("write key");
        cert.der().to_vec()
    }

    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("root");
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// TLS-connect to `addr` with SNI `name`; returns the stream, the negotiated ALPN and the leaf certificate.
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<
    (
        tokio_rustls::client::TlsStream<TcpStream>,
        Option<Vec<u8>>,
        Vec<u8>,
    ),
    std::io::Error,
> {
    let tcp = TcpStream::connect(addr).await?;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server_name, tcp)
        .await?;
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(|p| p.to_vec());
    let leaf = session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    Ok((tls, alpn, leaf))
}

/// Wait (bounded) until `cond` holds.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for: {what}");
}

pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

pub fn map_of(seen: &Seen) -> HashMap<String, String> {
    seen.headers.iter().cloned().collect()
}

pub fn executor() -> TokioExecutor {
    TokioExecutor::new()
}

/// An HTTPS origin on 127.0.0.1 with a leaf for `localhost` and 127.0.0.1 signed by `ca`; answers every request
/// with 200 and the request's path, and counts connections.
pub async fn tls_origin(ca: &TestCa) -> (SocketAddr, Arc<AtomicUsize>) {
    let dir = tempfile::tempdir().expect("tempdir");
    ca.write_leaf(dir.path(), "origin", &["localhost", "127.0.0.1"]);
    let chain: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::pem::PemObject::pem_file_iter(dir.path().join("origin.crt"))
            .expect("pem")
            .collect::<Result<_, _>>()
            .expect("certs");
    let key: rustls::pki_types::PrivateKeyDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_file(dir.path().join("origin.key"))
            .expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let host = req
                        .headers()
                        .get("host")
                        .map(|h| h.to_str().unwrap_or("").to_string());
                    Ok::<_, std::io::Error>(Response::new(full(format!(
                        "tls origin {} host={}",
                        req.uri().path(),
                        host.unwrap_or_default()
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, connections)
}

/// An origin that answers each request with a keep-alive response and then closes the connection a moment
/// later, as an origin whose keep-alive timeout just expired does.
pub async fn closing_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(s);
            });
        }
    });
    (addr, connections)
}

/// POST to `path` with a body fed from the returned sender; the task yields the status and the body.
pub fn streaming_upload(
    addr: SocketAddr,
    path: &str,
) -> (
    mpsc::Sender<Bytes>,
    tokio::task::JoinHandle<(StatusCode, Bytes)>,
) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let req = Request::builder()
        .method("POST")
        .uri(path)
        .header("host", "www.example.test")
        .body(BodyExt::boxed(ChannelBody(rx)))
        .expect("request");
    let pending = tokio::spawn(async move {
        let resp = send(addr, req).await;
        let status = resp.status();
        (
            status,
            resp.into_body().collect().await.expect("body").to_bytes(),
        )
    });
    (tx, pending)
}

/// An HTTP/2 prior-knowledge (h2c) connection; the task drives it and ends when the server closes it.
pub async fn h2c(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<TestBody>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http2::handshake(executor(), TokioIo::new(tcp))
        .await
        .expect("h2c handshake");
    (sender, tokio::spawn(conn))
}

/// Connect to `addr` from the loopback source address `from` (any 127.x.y.z works on Linux).
pub async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("source"))
        .expect("bind source");
    socket.connect(addr).await.expect("connect")
}

/// Send `req` over a fresh HTTP/1.1 connection from source address `from`; returns the response with its body.
pub async fn send_from(
    from: &str,
    addr: SocketAddr,
    req: Request<TestBody>,
) -> (Response<()>, Bytes) {
    let tcp = connect_from(from, addr).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("response");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (Response::from_parts(parts, ()), bytes)
}

/// One HTTP/1.1 request from source address `from`; returns the response with its body.
pub async fn get_from(
    from: &str,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (Response<()>, Bytes) {
    send_from(from, addr, request("GET", path, headers, empty())).await
}

/// The console's token in the tests.
pub const CONSOLE_TOKEN: &str = "console-token-0123456789abcdef0123456789";

/// `[console]` on, its token ([`CONSOLE_TOKEN`], with a line feed as `openssl rand -hex 32 > file` writes
/// it) in `dir/console.token`.
pub fn console_section(dir: &Path) -> String {
    let token = dir.join("console.token");
    std::fs::write(&token, format!("{CONSOLE_TOKEN}\n")).expect("token file");
    format!(
        "[console]\nenabled = true\ntoken_file = \"{}\"\n",
        token.display()
    )
}

/// A proxy over the rules (`dir/rules`) and the log (`dir/log`, its key under `dir/keys`) another test proxy
/// wrote, with the console on (geo: everything in California).
pub async fn console_proxy(origin: &Origin, dir: &Path) -> Server {
    proxy(
        &origin.url(),
        &format!(
            "[rules]\ndir = \"{}\"\n[audit]\ndir = \"{}\"\nsigning_key = \"{}\"\n{}\
             [[geo.static]]\nnetwork = \"127.0.0.0/8\"\ncountry = \"US\"\nsubdivision = \"CA\"\n",
            dir.join("rules").display(),
            dir.join("log").display(),
            signing_key(&dir.join("keys")).display(),
            console_section(dir)
        ),
    )
    .await
}

/// A console page with the token: (status, body).
pub async fn console_page(server: &Server, path: &str) -> (u16, String) {
    let bearer = format!("Bearer {CONSOLE_TOKEN}");
    let (resp, body) = get(
        server.admin.expect("admin listener"),
        path,
        &[("authorization", bearer.as_str())],
    )
    .await;
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// POST `body` from the source address `from`: (response head, body as text).
pub async fn post_from(
    from: &str,
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (http::Response<()>, String) {
    let (resp, body) = send_from(
        from,
        addr,
        request("POST", path, headers, full(body.to_string())),
    )
    .await;
    (resp, String::from_utf8_lossy(&body).into_owned())
}

/// A throwaway PostgreSQL cluster of the test's own: `initdb` in a temp directory, the server on a free
/// loopback port (as the `postgres` user when the tests run as root — the server refuses root), password
/// authentication (SCRAM) over TCP for the role `concierge`; stopped when dropped. `scripts/setup-postgres`
/// installs the binaries.
pub struct Postgres {
    pub port: u16,
    pub password: String,
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    as_postgres: bool,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                d.flatten()
                    .map(|e| e.path().join("bin"))
                    .find(|b| b.join("initdb").exists())
            })
            .expect("PostgreSQL server binaries: run scripts/setup-postgres (scripts/test does)");
        let as_postgres = running_as_root();
        let dir = tempfile::tempdir().expect("tempdir");
        let password = "pw-0123456789".to_string();
        std::fs::write(dir.path().join("pwfile"), &password).unwrap();
        if as_postgres {
            let _ = std::process::Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status();
        }
        let command = |tool: &str| {
            if as_postgres {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
                c
            } else {
                std::process::Command::new(bin.join(tool))
            }
        };
        let run = |tool: &str, args: &[&str]| {
            let out = command(tool).args(args).output().expect("runs");
            assert!(
                out.status.success(),
                "{tool}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let data = dir.path().join("data");
        run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "concierge",
                "--pwfile",
                dir.path().join("pwfile").to_str().unwrap(),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        // A free port, taken by the server a moment later: another test may bind it in between (a proxy on
        // an ephemeral port), so a start that fails is tried again on another port.
        let log = dir.path().join("log");
        let mut attempt = 0;
        let port = loop {
            attempt += 1;
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
                dir.path().display()
            );
            let args = [
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ];
            if attempt == 3 {
                run("pg_ctl", &args);
                break port;
            }
            if command("pg_ctl")
                .args(args)
                .output()
                .expect("runs")
                .status
                .success()
            {
                break port;
            }
        };
        Postgres {
            port,
            password,
            bin,
            dir,
            as_postgres,
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            std::process::Command::new(self.bin.join("pg_ctl"))
        };
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(args)
            .output()
            .expect("pg_ctl runs")
    }

    /// Kill the server as a crash would (`pg_ctl stop -m immediate`: no checkpoint, transactions in flight
    /// lost).
    /// Stop the server cleanly (`-m fast`: sessions ended, every commit kept — unlike [`Postgres::crash`],
    /// which with `synchronous_commit=off` may lose the last ones).
    pub fn stop(&self) {
        let out = self.pg_ctl(&["-m", "fast", "-w", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn crash(&self) {
        let out = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start it again after [`Postgres::crash`], on the same port (it recovers from its WAL).
    pub fn restart(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let out = self.pg_ctl(&["-l", log.to_str().unwrap(), "-o", &opts, "-w", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL, without the password (give it by file or `CONCIERGE_POSTGRES_PASSWORD`).
    pub fn url(&self) -> String {
        format!(
            "postgres://concierge@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// A file holding the password.
    pub fn password_file(&self) -> std::path::PathBuf {
        self.dir.path().join("pwfile")
    }

    /// `concierge audit register` of `public_key` (a `.pub` file) for `instance` in this store.
    pub fn register(&self, instance: &str, public_key: &Path) -> std::process::Output {
        crate::support::concierge()
            .args([
                "audit",
                "register",
                "--postgres",
                &self.url(),
                "--instance",
                instance,
            ])
            .arg("--password-file")
            .arg(self.password_file())
            .arg("--public-key")
            .arg(public_key)
            .output()
            .expect("concierge runs")
    }

    /// `concierge audit verify` of this store (central verification).
    pub fn verify(&self) -> std::process::Output {
        crate::support::concierge()
            .args([
                "audit",
                "verify",
                "--postgres",
                &self.url(),
                "--password-file",
            ])
            .arg(self.password_file())
            .output()
            .expect("concierge runs")
    }

    /// A client connection (for the test's own queries).
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=concierge dbname=postgres password={} sslmode=disable",
                self.port, self.password
            ),
            tokio_postgres::NoTls,
        )
        .await
        .expect("connect");
        tokio::spawn(conn);
        client
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            std::process::Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// Whether this process runs as root (from /proc, without libc).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}
