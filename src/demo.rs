//! `concierge demo`: a built-in origin serving the example B2B site (embedded from `examples/site/`, so the
//! binary needs no files), with the proxy in front of it.
//!
//! The demo origin is a plain hyper server; it also answers `/echo` with the request headers it received, which
//! shows what the proxy tells an origin (forwarding headers, `Via`, request id).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The site's files: (path, content type, bytes).
pub const SITE: &[(&str, &str, &[u8])] = &[
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_bytes!("../examples/site/index.html"),
    ),
    (
        "/pricing.html",
        "text/html; charset=utf-8",
        include_bytes!("../examples/site/pricing.html"),
    ),
    (
        "/case-study.html",
        "text/html; charset=utf-8",
        include_bytes!("../examples/site/case-study.html"),
    ),
    (
        "/demo-request.html",
        "text/html; charset=utf-8",
        include_bytes!("../examples/site/demo-request.html"),
    ),
    (
        "/thanks.html",
        "text/html; charset=utf-8",
        include_bytes!("../examples/site/thanks.html"),
    ),
    (
        "/404.html",
        "text/html; charset=utf-8",
        include_bytes!("../examples/site/404.html"),
    ),
    (
        "/styles.css",
        "text/css; charset=utf-8",
        include_bytes!("../examples/site/styles.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_bytes!("../examples/site/favicon.svg"),
    ),
];

/// Largest demo-request form body the origin reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

fn file(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = if path == "/" { "/index.html" } else { path };
    SITE.iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, t, b)| (*t, *b))
}

fn response(
    status: StatusCode,
    ctype: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    resp
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let resp = match (req.method(), path.as_str()) {
        (&Method::GET | &Method::HEAD, "/echo") => {
            let mut text = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
            for (name, value) in req.headers() {
                text.push_str(&format!(
                    "{}: {}\n",
                    name,
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
            let mut r = response(StatusCode::OK, "text/plain; charset=utf-8", text);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        (&Method::POST, "/demo-request") => {
            // Read (bounded) and discard: the demo stores nothing.
            match Limited::new(req.into_body(), MAX_FORM_BYTES)
                .collect()
                .await
            {
                Ok(_) => {
                    let mut r = response(
                        StatusCode::SEE_OTHER,
                        "text/plain; charset=utf-8",
                        "See /thanks.html\n",
                    );
                    r.headers_mut()
                        .insert(header::LOCATION, HeaderValue::from_static("/thanks.html"));
                    r
                }
                Err(_) => response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain; charset=utf-8",
                    "Form too large\n",
                ),
            }
        }
        (&Method::GET | &Method::HEAD, p) => match file(p) {
            Some((ctype, bytes)) => response(StatusCode::OK, ctype, Bytes::from_static(bytes)),
            None => {
                let (ctype, bytes) = file("/404.html").unwrap_or(("text/plain", b"not found"));
                response(StatusCode::NOT_FOUND, ctype, Bytes::from_static(bytes))
            }
        },
        _ => {
            let mut r = response(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "Method not allowed\n",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            r
        }
    };
    Ok(resp)
}

/// Start the demo origin on `addr` (port 0 picks one); returns the bound address.
pub async fn start_origin(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service_fn(handle))
                    .await;
            });
        }
    });
    Ok(local)
}

/// The demo's rules, embedded like its site (the repository's `rules/` folder), written out at start unless
/// `concierge demo --rules DIR` names a folder of the marketer's own.
pub const RULES: &[(&str, &[u8])] = &[
    (
        "accounts/acme.example.toml",
        include_bytes!("../rules/accounts/acme.example.toml"),
    ),
    (
        "accounts/globex.example.toml",
        include_bytes!("../rules/accounts/globex.example.toml"),
    ),
    (
        "accounts/initech.example.toml",
        include_bytes!("../rules/accounts/initech.example.toml"),
    ),
    (
        "regions/dach.toml",
        include_bytes!("../rules/regions/dach.toml"),
    ),
    (
        "segments/logistics.toml",
        include_bytes!("../rules/segments/logistics.toml"),
    ),
    (
        "experiments/logistics-subheadline.toml",
        include_bytes!("../rules/experiments/logistics-subheadline.toml"),
    ),
];

/// Write the embedded rules under `dir`.
pub fn write_rules(dir: &std::path::Path) -> std::io::Result<()> {
    for (rel, bytes) in RULES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, bytes)?;
    }
    Ok(())
}

/// The demo's personas: a browser on 127.0.0.1 cannot take another address, so each persona gets a demo-only
/// port that forwards to the proxy from the persona's address.
pub const PERSONAS: &[(&str, &str)] = &[
    ("Acme (manufacturing, California)", "127.0.10.5"),
    ("Globex (logistics, California)", "127.0.20.5"),
    ("Initech (software, California)", "127.0.30.5"),
    ("no company, Germany (the banner asks)", "127.0.0.1"),
];

/// Start one persona port: every connection to it is spliced to `proxy` from source address `from`. Demo
/// only — nothing outside `concierge demo` can pick its client address.
pub async fn start_persona(
    from: std::net::IpAddr,
    proxy: SocketAddr,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let socket = match from {
                    std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                    std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
                };
                let Ok(socket) = socket else { return };
                if socket.bind(SocketAddr::new(from, 0)).is_err() {
                    return;
                }
                if let Ok(mut upstream) = socket.connect(proxy).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    Ok(local)
}

/// The demo's whole effective configuration as a file, so `explain`, `lookup` and `consent decide` reproduce
/// exactly what the browser sees (`--config` it).
pub fn effective_toml(
    proxy: SocketAddr,
    origin: SocketAddr,
    admin: Option<SocketAddr>,
    rules_dir: &std::path::Path,
    audit_dir: &std::path::Path,
    signing_key: &std::path::Path,
) -> String {
    format!(
        "# The configuration `concierge demo` is running with (written at start; for explain, lookup, consent decide).\n\
         [[listener]]\naddress = \"{proxy}\"\n\n[upstream]\nurl = \"http://{origin}\"\n\n[admin]\n{admin}\n\n\
         [rules]\ndir = {rules:?}\n\n{rest}",
        admin = match admin {
            Some(a) => format!("address = \"{a}\""),
            None => "enabled = false".into(),
        },
        rules = rules_dir.display().to_string(),
        rest = settings_toml(audit_dir, signing_key)
    )
}

/// The demo's settings beyond the command-line flags: where records go, and fixed locations for loopback
/// addresses so every jurisdiction can be tried from one machine — 127.0.0.1 (your browser) is in Germany
/// (opt-in: the banner asks), the demo accounts' ranges 127.0.10–30.x are in California (opt-out: personalized
/// unless withdrawn, e.g. with `Sec-GPC: 1`); and curl is not a bot here, so the experiment counts it.
pub fn settings_toml(audit_dir: &std::path::Path, signing_key: &std::path::Path) -> String {
    format!(
        "[audit]\ndir = {dir:?}\nsigning_key = {key:?}\n\n\
         [[geo.static]]\nnetwork = \"127.0.0.0/8\"\ncountry = \"DE\"\n\n\
         [[geo.static]]\nnetwork = \"127.0.10.0/24\"\ncountry = \"US\"\nsubdivision = \"CA\"\n\n\
         [[geo.static]]\nnetwork = \"127.0.20.0/24\"\ncountry = \"US\"\nsubdivision = \"CA\"\n\n\
         [[geo.static]]\nnetwork = \"127.0.30.0/24\"\ncountry = \"US\"\nsubdivision = \"CA\"\n\n\
         [consent]\ngpc_well_known = true\n\n\
         [firmographics]\nwatch_interval = \"1s\"\n\n\
         [experiments]\nbots = [{bots}]\n",
        dir = audit_dir.display().to_string(),
        key = signing_key.display().to_string(),
        // The demo is tried with curl, which production counts as a bot.
        bots = crate::experiments::DEFAULT_BOTS
            .iter()
            .filter(|b| **b != "curl/")
            .map(|b| format!("{b:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The demo's console: a token made for this run (written to `token_file`), and its configuration section.
pub fn console_toml(token_file: &std::path::Path) -> std::io::Result<(String, String)> {
    let mut raw = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| std::io::Error::other("no randomness for the console token"))?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(token_file, format!("{token}\n"))?;
    Ok((
        token,
        format!(
            "\n[console]\nenabled = true\ntoken_file = {:?}\n",
            token_file.display().to_string()
        ),
    ))
}

/// What `concierge demo` prints once everything is up.
pub fn banner(proxy: SocketAddr, origin: SocketAddr, admin: Option<SocketAddr>) -> String {
    let mut s = format!(
        "\nConcierge demo is running.\n\n  Site through the proxy:  http://{proxy}/\n  Demo origin (direct):    http://{origin}/\n"
    );
    if let Some(a) = admin {
        s.push_str(&format!(
            "  Health and metrics:      http://{a}/healthz  http://{a}/metrics\n"
        ));
    }
    s.push_str(&format!(
        "\nTry:\n  curl -s --interface 127.0.10.5 http://{proxy}/ -H 'Accept: text/html' | grep hero-headline   # Acme's page\n  \
         curl -s --interface 127.0.20.5 http://{proxy}/ -H 'Accept: text/html' | grep announcement    # Globex\n  \
         curl -s --interface 127.0.10.5 http://{proxy}/ -H 'Accept: text/html' -H 'Sec-GPC: 1' | grep hero-headline   # GPC: unchanged\n  \
         curl -s  http://{proxy}/ -H 'Accept: text/html' | grep -E 'hero-note|consent.js'   # Germany: region rule + banner\n  \
         curl -si http://{proxy}/ | head -n 15          # the home page, with x-request-id\n  \
         curl -s  http://{proxy}/echo                   # what the origin receives: Via, X-Forwarded-*, Forwarded\n  \
         curl -s  http://{proxy}/_concierge/ -o /dev/null -w '%{{http_code}}\\n'   # the reserved prefix never reaches the origin\n  \
         in your browser: http://{proxy}/_concierge/consent   # the privacy-choices page (127.0.0.1 is in Germany here)\n  \
         curl -s --interface 127.0.10.5 http://{proxy}/ -H 'Accept: text/html' | grep -E 'concierge-feedback|concierge-why'   # Acme's feedback prompt and why link\n  \
         curl -s --interface 127.0.10.5 'http://{proxy}/_concierge/why?page=/'   # \"Why am I seeing this?\" for Acme\n  \
         curl -si http://{proxy}/_concierge/consent -H 'Origin: http://{proxy}' \\\n           \
         -d 'choice=custom&firmographic=on&return=/pricing'   # record a choice: 303 + Set-Cookie\n"
    ));
    if let Some(a) = admin {
        s.push_str(&format!(
            "  curl -s  http://{a}/metrics | grep concierge_http_requests\n"
        ));
    }
    s
}
