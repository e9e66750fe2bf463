//! Header hygiene between client and origin: hop-by-hop removal, `Via`, the forwarding headers, request ids.
//!
//! Invariants:
//! - No hop-by-hop header (RFC 9110 §7.6.1), nor any header named in `Connection`, crosses the proxy in either
//!   direction, except the `Upgrade`/`Connection: upgrade` pair of a protocol upgrade we pass through.
//! - The forwarding headers the origin sees (`X-Forwarded-For/-Proto/-Host`, `Forwarded`) are written by us from
//!   the resolved client; whatever the client sent under those names is replaced, never trusted blindly.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

/// Hop-by-hop headers that are removed whether or not `Connection` names them. (`Trailer` is end-to-end per
/// RFC 9110 §6.6.2 and passes; `TE` is hop-by-hop, but its `trailers` token is passed on, see below.)
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Whether this HTTP/1.1 request asks for a WebSocket upgrade (`Connection: upgrade` + `Upgrade: websocket`).
/// Other upgrade tokens (`h2c`, `TLS/1.0`) are not passed through: their `Upgrade` header is removed like any
/// hop-by-hop header and the request is forwarded as an ordinary one.
pub fn is_upgrade_request(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && connection_has(headers, "upgrade")
        && headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                t.trim()
                    .split('/')
                    .next()
                    .is_some_and(|p| p.eq_ignore_ascii_case("websocket"))
            })
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Remove hop-by-hop headers and those `Connection` names. With `keep_upgrade`, the `Upgrade` header survives
/// and `Connection: upgrade` is set again, as a pass-through upgrade needs.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names, no hashing: which hop-by-hop headers are actually present? Usually none, or
    // only `Connection: keep-alive`.
    let mut present: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if is_hop_by_hop(name) && !present.contains(name) {
            present.push(name.clone());
        }
    }
    if present.is_empty() && !keep_upgrade {
        return;
    }
    // Names listed in Connection (collected first: values borrow the map). The common tokens name nothing
    // that is not removed anyway.
    let mut listed: Vec<HeaderName> = Vec::new();
    if present.contains(&header::CONNECTION) {
        for value in headers.get_all(header::CONNECTION) {
            let Ok(v) = value.to_str() else { continue };
            for token in v.split(',') {
                let token = token.trim();
                if token.is_empty()
                    || token.eq_ignore_ascii_case("keep-alive")
                    || token.eq_ignore_ascii_case("close")
                {
                    continue;
                }
                // from_bytes lowercases; a token that is no header name names nothing to remove.
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    listed.push(name);
                }
            }
        }
    }
    let te_trailers = present.contains(&header::TE)
        && headers
            .get_all(header::TE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("trailers"));
    for name in &present {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        headers.remove(name);
    }
    if te_trailers {
        // The next hop may send trailers; hyper forwards them (gRPC-style responses need this).
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    for name in listed {
        if keep_upgrade && name == header::UPGRADE {
            continue;
        }
        // Never let `Connection: host` or similar strip end-to-end headers the proxy itself relies on.
        if name == header::HOST || name == header::CONTENT_LENGTH || name == header::TE {
            continue;
        }
        headers.remove(&name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::UPGRADE
}

/// Our `Via` entries (RFC 9110 §7.6.3), one per protocol version, built once.
#[derive(Debug, Clone)]
pub struct ViaValues {
    http10: HeaderValue,
    http11: HeaderValue,
    http2: HeaderValue,
}

impl ViaValues {
    pub fn new(via_name: &str) -> ViaValues {
        let make = |proto: &str| {
            HeaderValue::from_str(&format!("{proto} {via_name}"))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 -"))
        };
        ViaValues {
            http10: make("1.0"),
            http11: make("1.1"),
            http2: make("2"),
        }
    }

    /// Append our entry for a message received with `version`.
    pub fn append(&self, headers: &mut HeaderMap, version: Version) {
        let v = match version {
            Version::HTTP_10 | Version::HTTP_09 => &self.http10,
            Version::HTTP_2 => &self.http2,
            _ => &self.http11,
        };
        headers.append(header::VIA, v.clone());
    }
}

/// HTTP/2 clients may split `Cookie` into several fields (RFC 9113 §8.2.3); an HTTP/1.1 origin must get one.
pub fn join_cookies(headers: &mut HeaderMap) {
    if headers.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined: Vec<u8> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// The client's address as the forwarding headers write it, built once per connection.
#[derive(Debug, Clone)]
pub struct ClientAddr {
    /// `X-Forwarded-For` value.
    pub xff: HeaderValue,
    /// `for=` element of `Forwarded` (IPv6 quoted and bracketed).
    pub forwarded_for: String,
}

impl ClientAddr {
    pub fn new(client: IpAddr) -> ClientAddr {
        let ip = client.to_string();
        let forwarded_for = match client {
            IpAddr::V4(_) => format!("for={ip}"),
            IpAddr::V6(_) => format!("for=\"[{ip}]\""),
        };
        ClientAddr {
            xff: HeaderValue::from_str(&ip).unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            forwarded_for,
        }
    }
}

/// Drop request headers whose names contain `_` (unless `pass` is set, like nginx's `underscores_in_headers`),
/// and always those that would read as a header the proxy manages once `_` is taken for `-`: CGI, WSGI and
/// many frameworks fold `X_Forwarded_For` and `X-Forwarded-For` into one `HTTP_X_FORWARDED_FOR`, so a
/// client's `X_Forwarded_For: 6.6.6.6` would ride along with the address the proxy wrote.
pub fn drop_underscored(headers: &mut HeaderMap, pass: bool, request_id: &HeaderName) {
    // One pass over the names: usually none has an underscore.
    if !headers.keys().any(|n| n.as_str().contains('_')) {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .filter(|n| !pass || is_managed(&n.as_str().replace('_', "-"), request_id))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// A header the proxy writes or interprets itself (forwarding, framing, hop-by-hop, its request id).
fn is_managed(name: &str, request_id: &HeaderName) -> bool {
    name.starts_with("x-forwarded-")
        || name.starts_with("proxy-")
        || name == request_id.as_str()
        || [
            "forwarded",
            "x-real-ip",
            "via",
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "te",
            "upgrade",
            "trailer",
        ]
        .contains(&name)
}

/// What the origin is told about the client and the original request.
pub struct Forwarding<'a> {
    pub client: &'a ClientAddr,
    /// `http` or `https`: the scheme the client used to reach us.
    pub proto: &'static str,
    /// The host the client asked for, if it sent a valid one.
    pub host: Option<&'a HeaderValue>,
}

/// Replace the forwarding headers with ours.
pub fn set_forwarding(headers: &mut HeaderMap, fwd: &Forwarding<'_>) {
    // Remove what the client sent under our names; one pass finds whether there is anything to remove.
    if headers.keys().any(|n| {
        n == header::FORWARDED
            || n == X_FORWARDED_FOR
            || n == X_FORWARDED_PROTO
            || n == X_FORWARDED_HOST
            || n == X_REAL_IP
    }) {
        headers.remove(&X_FORWARDED_FOR);
        headers.remove(&X_FORWARDED_PROTO);
        headers.remove(&X_FORWARDED_HOST);
        headers.remove(&X_REAL_IP);
        headers.remove(header::FORWARDED);
    }
    headers.insert(X_FORWARDED_FOR.clone(), fwd.client.xff.clone());
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(fwd.proto),
    );
    let mut forwarded = String::with_capacity(fwd.client.forwarded_for.len() + 64);
    forwarded.push_str(&fwd.client.forwarded_for);
    if let Some(host) = fwd.host {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
        forwarded.push_str(";host=");
        push_forwarded_value(&mut forwarded, host.to_str().unwrap_or(""));
    }
    forwarded.push_str(";proto=");
    forwarded.push_str(fwd.proto);
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.insert(header::FORWARDED, v);
    }
}

/// RFC 7239 value: a token as is, anything else (e.g. `host:port`) as a quoted string.
fn push_forwarded_value(out: &mut String, value: &str) {
    let is_token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if is_token {
        out.push_str(value);
    } else {
        out.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
}

/// A client-supplied request id we are willing to propagate: 1–128 visible, log-safe characters.
pub fn acceptable_request_id(value: &HeaderValue) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:+/=".contains(c))
}

/// A fresh request id: 128 random bits as 32 hex digits.
pub fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = fastrand::u128(..);
    let mut buf = [0u8; 32];
    for b in buf.iter_mut().rev() {
        *b = HEX[(n & 0xf) as usize];
        n >>= 4;
    }
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

pub use crate::host::valid_host;

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_standard_and_listed_hop_by_hop_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "x-other"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("x-other", "2"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-connection", "keep-alive"),
            ("upgrade", "websocket"),
            ("trailer", "x-checksum"),
            ("accept", "text/html"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(
            left,
            ["accept", "te", "trailer"],
            "Trailer is end-to-end; TE keeps only `trailers`"
        );
        assert_eq!(h.get("te").unwrap(), "trailers");

        let mut h = map(&[("te", "gzip, deflate")]);
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("te").is_none());
    }

    #[test]
    fn connection_cannot_remove_host_or_content_length() {
        let mut h = map(&[
            ("connection", "host, content-length"),
            ("host", "a"),
            ("content-length", "3"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.get("host").unwrap(), "a");
        assert_eq!(h.get("content-length").unwrap(), "3");
    }

    #[test]
    fn upgrade_pass_through_keeps_upgrade_pair() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_upgrade_request(Version::HTTP_11, &h));
        assert!(!is_upgrade_request(Version::HTTP_10, &h));
        let h2c = map(&[("connection", "upgrade"), ("upgrade", "h2c")]);
        assert!(!is_upgrade_request(Version::HTTP_11, &h2c));
        assert!(!is_upgrade_request(
            Version::HTTP_11,
            &map(&[("upgrade", "websocket")])
        ));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
        assert_eq!(h.get("sec-websocket-key").unwrap(), "k");
    }

    #[test]
    fn forwarding_headers_replace_client_values() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-host", "evil"),
            ("x-real-ip", "6.6.6.6"),
        ]);
        set_forwarding(
            &mut h,
            &Forwarding {
                client: &ClientAddr::new("192.0.2.7".parse().unwrap()),
                proto: "https",
                host: Some(&HeaderValue::from_static("www.example.com:8443")),
            },
        );
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.7");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(h.get("x-forwarded-host").unwrap(), "www.example.com:8443");
        assert_eq!(
            h.get("forwarded").unwrap(),
            "for=192.0.2.7;host=\"www.example.com:8443\";proto=https"
        );
        assert!(h.get("x-real-ip").is_none());
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    }

    #[test]
    fn forwarded_quotes_ipv6() {
        let mut h = HeaderMap::new();
        set_forwarding(
            &mut h,
            &Forwarding {
                client: &ClientAddr::new("2001:db8::1".parse().unwrap()),
                proto: "http",
                host: Some(&HeaderValue::from_static("example.com")),
            },
        );
        assert_eq!(
            h.get("forwarded").unwrap(),
            "for=\"[2001:db8::1]\";host=example.com;proto=http"
        );
    }

    #[test]
    fn split_cookies_are_joined() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
        join_cookies(&mut h);
        let all: Vec<_> = h.get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
    }

    #[test]
    fn via_is_appended() {
        let mut h = map(&[("via", "1.0 cdn")]);
        ViaValues::new("concierge").append(&mut h, Version::HTTP_2);
        let all: Vec<_> = h
            .get_all("via")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(all, ["1.0 cdn", "2 concierge"]);
    }

    #[test]
    fn request_ids() {
        let id = new_request_id();
        assert_eq!(id.len(), 32);
        assert!(acceptable_request_id(&id));
        assert_ne!(new_request_id(), id);
        assert!(!acceptable_request_id(&HeaderValue::from_static(
            "has space"
        )));
        assert!(!acceptable_request_id(
            &HeaderValue::from_str(&"a".repeat(129)).unwrap()
        ));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const NAMES: &[&str] = &[
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authorization",
            "proxy-authenticate",
            "te",
            "transfer-encoding",
            "upgrade",
            "trailer",
            "accept",
            "cookie",
            "x-custom",
            "x-other",
            "host",
            "content-length",
        ];

        fn header_list() -> impl Strategy<Value = Vec<(usize, String)>> {
            prop::collection::vec((0..NAMES.len(), "[a-zA-Z0-9 ,=-]{0,12}"), 0..16)
        }

        proptest! {
            #[test]
            fn strip_removes_hop_by_hop_and_keeps_the_rest(list in header_list(), connection in "[a-z, -]{0,30}") {
                let mut h = HeaderMap::new();
                for (i, v) in &list {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        h.append(HeaderName::from_static(NAMES[*i]), v);
                    }
                }
                if let Ok(v) = HeaderValue::from_str(&connection) {
                    h.append(header::CONNECTION, v);
                }
                let listed: Vec<String> = h
                    .get_all(header::CONNECTION)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .map(|t| t.trim().to_ascii_lowercase())
                    .filter(|t| !t.is_empty())
                    .collect();
                let before = h.clone();
                strip_hop_by_hop(&mut h, false);
                for name in h.keys() {
                    prop_assert!(
                        !is_hop_by_hop(name) || (name == header::TE && h.get(name).unwrap() == "trailers"),
                        "{} survived", name
                    );
                    let protected = name == header::HOST || name == header::CONTENT_LENGTH || name == header::TE;
                    prop_assert!(protected || !listed.contains(&name.as_str().to_string()), "{} was listed", name);
                }
                for (name, value) in before.iter() {
                    let end_to_end = !is_hop_by_hop(name) && !listed.contains(&name.as_str().to_string());
                    let protected = name == header::HOST || name == header::CONTENT_LENGTH;
                    if end_to_end || protected {
                        prop_assert!(h.get_all(name).iter().any(|v| v == value), "{} lost", name);
                    }
                }
            }
        }
    }
}
