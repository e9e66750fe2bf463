//! The client phase's question: who is the client? Trusted proxies, `X-Forwarded-For`, RFC 7239 `Forwarded`
//! and the PROXY protocol header.
//!
//! Invariants (each has tests, and the parsers property tests):
//! - Forwarding information is read only from a peer inside `client_ip.trusted_proxies`. From anyone else the
//!   client is the peer, whatever the headers say.
//! - A chain is walked from the right (the hop closest to us), skipping trusted hops; the first untrusted address
//!   is the client (nginx `real_ip_recursive on`). The leftmost entry is used only if every hop is trusted.
//! - A malformed chain, or one that exceeds [`MAX_HOPS`], falls back to the peer; a hop that hides its address
//!   (`unknown`, `_obfuscated`) makes the client unidentified — the peer address is used for forwarding but
//!   never for a company lookup.
//! - The parsers never panic and never allocate more than the input's size.
//!
//! Pure and synchronous: the socket side of the PROXY protocol lives in `proxy::server`.

use std::net::{IpAddr, SocketAddr};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ipnetwork::IpNetwork;

/// Longest forwarding chain that is walked; longer ones are treated as malformed.
pub const MAX_HOPS: usize = 32;

/// Where the client address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The TCP peer (or the PROXY protocol source): no trusted forwarding information.
    Peer,
    /// The PROXY protocol header sent by a trusted load balancer.
    ProxyProtocol,
    XForwardedFor,
    Forwarded,
    /// The first untrusted hop hid its address (`unknown` or an obfuscated identifier): `addr` is the hop that
    /// reported it, usable for forwarding headers but not for identifying a company.
    Unidentified,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Peer => "peer",
            Source::ProxyProtocol => "proxy-protocol",
            Source::XForwardedFor => "x-forwarded-for",
            Source::Forwarded => "forwarded",
            Source::Unidentified => "unidentified",
        }
    }
}

/// The resolved client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp {
    pub addr: IpAddr,
    pub source: Source,
}

impl ClientIp {
    /// Whether the address may be used to look up a company or a location.
    pub fn identified(&self) -> bool {
        self.source != Source::Unidentified
    }
}

/// Which forwarding header a trusted peer's requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardingHeader {
    XForwardedFor,
    Forwarded,
    /// Trust the peer (e.g. a PROXY protocol load balancer) but read no header.
    None,
}

/// The CIDRs whose forwarding information is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNetwork>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNetwork>) -> TrustedProxies {
        TrustedProxies { nets }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Is `ip` (IPv4-mapped IPv6 addresses count as IPv4) a trusted proxy?
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(ip))
    }
}

/// What the client phase concludes for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub client: ClientIp,
    /// `X-Forwarded-Proto` from a trusted peer (`http` or `https`).
    pub proto: Option<&'static str>,
    /// `X-Forwarded-Host` from a trusted peer, if it is a valid host.
    pub host: Option<HeaderValue>,
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Resolve the client of a request that arrived from `peer` (the TCP peer, or the PROXY protocol source with
/// `peer_source = ProxyProtocol`).
pub fn resolve(
    peer: IpAddr,
    peer_source: Source,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
    header: ForwardingHeader,
) -> Resolved {
    let peer = peer.to_canonical();
    let untouched = Resolved {
        client: ClientIp {
            addr: peer,
            source: peer_source,
        },
        proto: None,
        host: None,
    };
    if trusted.is_empty() || !trusted.contains(peer) {
        return untouched;
    }
    let hops = match header {
        ForwardingHeader::None => Ok(Vec::new()),
        ForwardingHeader::XForwardedFor => x_forwarded_for(headers),
        ForwardingHeader::Forwarded => forwarded_for(headers),
    };
    let client = match hops {
        Err(Malformed) => {
            return untouched;
        }
        Ok(hops) => walk(peer, peer_source, &hops, trusted, header),
    };
    let proto = headers
        .get(&X_FORWARDED_PROTO)
        .and_then(|v| match v.as_bytes() {
            b if b.eq_ignore_ascii_case(b"https") => Some("https"),
            b if b.eq_ignore_ascii_case(b"http") => Some("http"),
            _ => None,
        });
    let host = headers
        .get(&X_FORWARDED_HOST)
        .filter(|v| crate::host::valid_host(v.as_bytes()))
        .cloned();
    Resolved {
        client,
        proto,
        host,
    }
}

/// One hop of a forwarding chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    Addr(IpAddr),
    /// `unknown` or an obfuscated identifier (`_abc`): a hop that hides its address.
    Hidden,
}

/// The chain could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

fn walk(
    peer: IpAddr,
    peer_source: Source,
    hops: &[Hop],
    trusted: &TrustedProxies,
    header: ForwardingHeader,
) -> ClientIp {
    let source = match header {
        ForwardingHeader::Forwarded => Source::Forwarded,
        _ => Source::XForwardedFor,
    };
    // The nearest trusted hop so far: the address to fall back on if the next hop hides itself.
    let mut nearest = ClientIp {
        addr: peer,
        source: peer_source,
    };
    for hop in hops.iter().rev() {
        match *hop {
            Hop::Addr(ip) if trusted.contains(ip) => {
                nearest = ClientIp { addr: ip, source };
            }
            Hop::Addr(ip) => return ClientIp { addr: ip, source },
            Hop::Hidden => {
                return ClientIp {
                    addr: nearest.addr,
                    source: Source::Unidentified,
                }
            }
        }
    }
    // Every hop was trusted: the leftmost is the best we know.
    nearest
}

/// The hops of all `X-Forwarded-For` lines, left to right.
pub fn x_forwarded_for(headers: &HeaderMap) -> Result<Vec<Hop>, Malformed> {
    let mut hops = Vec::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        let text = value.to_str().map_err(|_| Malformed)?;
        for entry in text.split(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                // "a, , b" and trailing commas: tolerated as nginx does.
                continue;
            }
            if hops.len() == MAX_HOPS {
                return Err(Malformed);
            }
            hops.push(match entry {
                e if e.eq_ignore_ascii_case("unknown") => Hop::Hidden,
                e => Hop::Addr(parse_node_addr(e).ok_or(Malformed)?),
            });
        }
    }
    Ok(hops)
}

/// An address as forwarding headers write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`.
pub fn parse_node_addr(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = s.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

/// The `for=` nodes of all `Forwarded` lines (RFC 7239), left to right. Elements without `for` are skipped.
pub fn forwarded_for(headers: &HeaderMap) -> Result<Vec<Hop>, Malformed> {
    let mut hops = Vec::new();
    for value in headers.get_all(http::header::FORWARDED) {
        let text = value.to_str().map_err(|_| Malformed)?;
        for element in split_outside_quotes(text, ',')? {
            let mut node = None;
            for pair in split_outside_quotes(element, ';')? {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let (key, value) = pair.split_once('=').ok_or(Malformed)?;
                let value = unquote(value.trim())?;
                if key.trim().eq_ignore_ascii_case("for") {
                    if node.is_some() {
                        return Err(Malformed);
                    }
                    node = Some(parse_forwarded_node(&value)?);
                }
            }
            if let Some(hop) = node {
                if hops.len() == MAX_HOPS {
                    return Err(Malformed);
                }
                hops.push(hop);
            }
        }
    }
    Ok(hops)
}

/// RFC 7239 §6 node: `unknown`, `_obfuscated`, an IPv4 address, `[IPv6]`, each with an optional `:port` (or
/// obfuscated port).
fn parse_forwarded_node(node: &str) -> Result<Hop, Malformed> {
    if node.eq_ignore_ascii_case("unknown") || node.starts_with('_') {
        return Ok(Hop::Hidden);
    }
    let (host, port) = if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or(Malformed)?;
        let ip: std::net::Ipv6Addr = inside.parse().map_err(|_| Malformed)?;
        let port = match after {
            "" => None,
            a => Some(a.strip_prefix(':').ok_or(Malformed)?),
        };
        (IpAddr::V6(ip), port)
    } else {
        let (h, p) = match node.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (node, None),
        };
        let ip: std::net::Ipv4Addr = h.parse().map_err(|_| Malformed)?;
        (IpAddr::V4(ip), p)
    };
    if let Some(p) = port {
        let obfuscated = p.starts_with('_') && p.len() > 1;
        let numeric = p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok();
        let valid = obfuscated || numeric;
        if !valid {
            return Err(Malformed);
        }
    }
    Ok(Hop::Addr(host.to_canonical()))
}

/// Split on `sep` where it is not inside a quoted string; unbalanced quotes are malformed.
fn split_outside_quotes(s: &str, sep: char) -> Result<Vec<&str>, Malformed> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted {
        return Err(Malformed);
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// A token as is, or a quoted string without its quotes and escapes.
fn unquote(v: &str) -> Result<std::borrow::Cow<'_, str>, Malformed> {
    let Some(inner) = v.strip_prefix('"') else {
        if v.is_empty() || v.contains('"') {
            return Err(Malformed);
        }
        return Ok(v.into());
    };
    let inner = inner.strip_suffix('"').ok_or(Malformed)?;
    if !inner.contains('\\') {
        return Ok(inner.into());
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().ok_or(Malformed)?);
        } else {
            out.push(c);
        }
    }
    Ok(out.into())
}

/// PROXY protocol: parse a header at the start of what a trusted load balancer sent.
pub mod proxy_protocol {
    use std::net::SocketAddr;

    /// A v1 header is one line of at most 107 bytes.
    pub const V1_MAX: usize = 107;
    /// Largest v2 header accepted (16-byte preamble + addresses + TLVs). HAProxy sends well under 512 bytes.
    pub const V2_MAX: usize = 16 + 2048;

    /// The outcome of looking at the first bytes of a connection.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Parsed {
        /// A complete header of `len` bytes; `source` is the client (None for LOCAL, UNKNOWN or UNIX
        /// connections such as the balancer's own health checks).
        Complete {
            source: Option<SocketAddr>,
            len: usize,
        },
        /// Everything so far is a valid beginning; read more.
        Incomplete,
        Invalid(&'static str),
    }

    /// Parse the header at the start of `buf` (bounded: never looks past [`V2_MAX`] bytes).
    pub fn parse(buf: &[u8]) -> Parsed {
        const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
        let is_v2 = buf.first() == Some(&b'\r');
        if is_v2 {
            let n = buf.len().min(V2_SIGNATURE.len());
            if buf[..n] != V2_SIGNATURE[..n] {
                return Parsed::Invalid("not a PROXY protocol v2 signature");
            }
            if buf.len() >= 16 {
                let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
                if len > V2_MAX {
                    return Parsed::Invalid("PROXY protocol v2 header too large");
                }
            }
        } else {
            let n = buf.len().min(6);
            if buf[..n] != b"PROXY "[..n] {
                return Parsed::Invalid("not a PROXY protocol header");
            }
            let line_end = buf.iter().position(|&b| b == b'\n');
            match line_end {
                None if buf.len() >= V1_MAX => {
                    return Parsed::Invalid("PROXY protocol v1 line too long")
                }
                Some(i) if i + 1 > V1_MAX || i == 0 || buf[i - 1] != b'\r' => {
                    return Parsed::Invalid(
                        "PROXY protocol v1 line not ended by CRLF within 107 bytes",
                    )
                }
                _ => {}
            }
        }
        let config = proxy_header::ParseConfig {
            include_tlvs: false,
            allow_v1: !is_v2,
            allow_v2: is_v2,
        };
        match proxy_header::ProxyHeader::parse(&buf[..buf.len().min(V2_MAX)], config) {
            Ok((header, len)) => Parsed::Complete {
                source: header.proxied_address().map(|a| a.source),
                len,
            },
            Err(proxy_header::Error::BufferTooShort) => Parsed::Incomplete,
            Err(_) => Parsed::Invalid("malformed PROXY protocol header"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn xff(peer: &str, pairs: &[(&str, &str)], nets: &[&str]) -> ClientIp {
        resolve(
            peer.parse().unwrap(),
            Source::Peer,
            &headers(pairs),
            &trusted(nets),
            ForwardingHeader::XForwardedFor,
        )
        .client
    }

    fn fwd(peer: &str, pairs: &[(&str, &str)], nets: &[&str]) -> ClientIp {
        resolve(
            peer.parse().unwrap(),
            Source::Peer,
            &headers(pairs),
            &trusted(nets),
            ForwardingHeader::Forwarded,
        )
        .client
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let c = xff(
            "203.0.113.9",
            &[("x-forwarded-for", "198.51.100.1")],
            &["10.0.0.0/8"],
        );
        assert_eq!(
            c,
            ClientIp {
                addr: ip("203.0.113.9"),
                source: Source::Peer
            }
        );
        let c = xff("203.0.113.9", &[("x-forwarded-for", "198.51.100.1")], &[]);
        assert_eq!(c.addr, ip("203.0.113.9"));
    }

    #[test]
    fn chain_is_walked_from_the_right() {
        // spoof, real, lb: the client forged "spoof"; the load balancer appended the real address.
        let c = xff(
            "10.0.0.2",
            &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.1")],
            &["10.0.0.0/8"],
        );
        assert_eq!(
            c,
            ClientIp {
                addr: ip("198.51.100.7"),
                source: Source::XForwardedFor
            }
        );
    }

    #[test]
    fn several_header_lines_are_one_chain() {
        let c = xff(
            "10.0.0.2",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "198.51.100.7, 10.0.0.1"),
            ],
            &["10.0.0.0/8"],
        );
        assert_eq!(c.addr, ip("198.51.100.7"));
        let c = xff(
            "10.0.0.2",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-for", "198.51.100.7"),
            ],
            &["10.0.0.0/8"],
        );
        assert_eq!(c.addr, ip("198.51.100.7"));
    }

    #[test]
    fn all_trusted_uses_the_leftmost() {
        let c = xff(
            "10.0.0.2",
            &[("x-forwarded-for", "10.1.1.1, 10.0.0.1")],
            &["10.0.0.0/8"],
        );
        assert_eq!(
            c,
            ClientIp {
                addr: ip("10.1.1.1"),
                source: Source::XForwardedFor
            }
        );
    }

    #[test]
    fn malformed_chains_fall_back_to_the_peer() {
        for bad in [
            "198.51.100.7, garbage",
            "1.2.3.4.5",
            "198.51.100.7; 10.0.0.1",
            "[::1",
            "::1]:80",
        ] {
            let c = xff("10.0.0.2", &[("x-forwarded-for", bad)], &["10.0.0.0/8"]);
            assert_eq!(
                c,
                ClientIp {
                    addr: ip("10.0.0.2"),
                    source: Source::Peer
                },
                "{bad}"
            );
        }
        let long = vec!["198.51.100.7"; MAX_HOPS + 1].join(",");
        assert_eq!(
            xff("10.0.0.2", &[("x-forwarded-for", &long)], &["10.0.0.0/8"]).source,
            Source::Peer
        );
    }

    #[test]
    fn ports_brackets_and_ipv6() {
        let c = xff(
            "10.0.0.2",
            &[("x-forwarded-for", "[2001:db8::7]:4711, 10.0.0.1:80")],
            &["10.0.0.0/8"],
        );
        assert_eq!(c.addr, ip("2001:db8::7"));
        let c = xff(
            "::ffff:10.0.0.2",
            &[("x-forwarded-for", "::ffff:198.51.100.7")],
            &["10.0.0.0/8"],
        );
        assert_eq!(c.addr, ip("198.51.100.7"), "IPv4-mapped addresses are IPv4");
        let c = xff(
            "2001:db8:1::1",
            &[("x-forwarded-for", "2001:db8::7")],
            &["2001:db8:1::/48"],
        );
        assert_eq!(c.addr, ip("2001:db8::7"));
    }

    #[test]
    fn unknown_hop_is_unidentified() {
        let c = xff(
            "10.0.0.2",
            &[("x-forwarded-for", "198.51.100.7, unknown, 10.0.0.1")],
            &["10.0.0.0/8"],
        );
        assert_eq!(
            c,
            ClientIp {
                addr: ip("10.0.0.1"),
                source: Source::Unidentified
            }
        );
        assert!(!c.identified());
    }

    #[test]
    fn forwarded_header() {
        let c = fwd(
            "10.0.0.2",
            &[("forwarded", "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.1;by=10.0.0.2")],
            &["10.0.0.0/8"],
        );
        assert_eq!(
            c,
            ClientIp {
                addr: ip("2001:db8:cafe::17"),
                source: Source::Forwarded
            }
        );
        let c = fwd(
            "10.0.0.2",
            &[("forwarded", "For=\"198.51.100.7:8080\"")],
            &["10.0.0.0/8"],
        );
        assert_eq!(c.addr, ip("198.51.100.7"));
        let c = fwd(
            "10.0.0.2",
            &[("forwarded", "for=_hidden, for=10.0.0.1")],
            &["10.0.0.0/8"],
        );
        assert_eq!(c.source, Source::Unidentified);
        let c = fwd("10.0.0.2", &[("forwarded", "for=unknown")], &["10.0.0.0/8"]);
        assert_eq!(
            c,
            ClientIp {
                addr: ip("10.0.0.2"),
                source: Source::Unidentified
            }
        );
        let c = fwd(
            "10.0.0.2",
            &[("forwarded", "proto=https;host=a.test")],
            &["10.0.0.0/8"],
        );
        assert_eq!(
            c,
            ClientIp {
                addr: ip("10.0.0.2"),
                source: Source::Peer
            },
            "no for= element"
        );
        let c = fwd(
            "10.0.0.2",
            &[("forwarded", "for=198.51.100.7;host=\"a,b;c\"")],
            &["10.0.0.0/8"],
        );
        assert_eq!(c.addr, ip("198.51.100.7"), "separators inside quotes");
    }

    #[test]
    fn forwarded_malformed_falls_back() {
        for bad in [
            "for=2001:db8::1",
            "for=\"[2001:db8::1\"",
            "for=\"unterminated",
            "for",
            "for=1.2.3.4;for=5.6.7.8",
            "for=1.2.3.4:99999",
            "for=[2001:db8::1]x",
            "for=",
        ] {
            let c = fwd("10.0.0.2", &[("forwarded", bad)], &["10.0.0.0/8"]);
            assert_eq!(
                c,
                ClientIp {
                    addr: ip("10.0.0.2"),
                    source: Source::Peer
                },
                "{bad}"
            );
        }
    }

    #[test]
    fn proto_and_host_only_from_trusted_peers() {
        let h = [
            ("x-forwarded-proto", "HTTPS"),
            ("x-forwarded-host", "www.example.test"),
        ];
        let r = resolve(
            ip("10.0.0.2"),
            Source::Peer,
            &headers(&h),
            &trusted(&["10.0.0.0/8"]),
            ForwardingHeader::XForwardedFor,
        );
        assert_eq!(r.proto, Some("https"));
        assert_eq!(r.host.unwrap(), "www.example.test");
        let r = resolve(
            ip("203.0.113.1"),
            Source::Peer,
            &headers(&h),
            &trusted(&["10.0.0.0/8"]),
            ForwardingHeader::XForwardedFor,
        );
        assert_eq!((r.proto, r.host), (None, None));
        let bad = [("x-forwarded-proto", "gopher"), ("x-forwarded-host", "a b")];
        let r = resolve(
            ip("10.0.0.2"),
            Source::Peer,
            &headers(&bad),
            &trusted(&["10.0.0.0/8"]),
            ForwardingHeader::XForwardedFor,
        );
        assert_eq!((r.proto, r.host), (None, None));
    }

    mod proxy_v1_v2 {
        use super::super::proxy_protocol::{parse, Parsed};
        use std::net::SocketAddr;

        fn v2(src: &str, dst: &str) -> Vec<u8> {
            let header = proxy_header::ProxyHeader::with_address(
                proxy_header::ProxiedAddress::stream(src.parse().unwrap(), dst.parse().unwrap()),
            );
            let mut buf = Vec::new();
            header.encode_v2(&mut buf).unwrap();
            buf
        }

        #[test]
        fn v1_and_v2_complete() {
            let line = b"PROXY TCP4 198.51.100.7 10.0.0.1 56324 443\r\nGET / HTTP/1.1\r\n";
            let src: SocketAddr = "198.51.100.7:56324".parse().unwrap();
            assert_eq!(
                parse(line),
                Parsed::Complete {
                    source: Some(src),
                    len: 44
                }
            );
            let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n";
            assert!(
                matches!(parse(line), Parsed::Complete { source: Some(s), .. } if s.ip().to_string() == "2001:db8::7")
            );
            assert_eq!(
                parse(b"PROXY UNKNOWN\r\n"),
                Parsed::Complete {
                    source: None,
                    len: 15
                }
            );
            let h = v2("198.51.100.7:1234", "10.0.0.1:443");
            let mut with_rest = h.clone();
            with_rest.extend_from_slice(b"GET /");
            assert_eq!(
                parse(&with_rest),
                Parsed::Complete {
                    source: Some("198.51.100.7:1234".parse().unwrap()),
                    len: h.len()
                }
            );
        }

        #[test]
        fn every_prefix_is_incomplete() {
            let v1 = b"PROXY TCP4 198.51.100.7 10.0.0.1 56324 443\r\n".to_vec();
            for header in [
                v1,
                v2("198.51.100.7:1234", "10.0.0.1:443"),
                v2("[2001:db8::7]:1", "[2001:db8::1]:443"),
            ] {
                for n in 0..header.len() {
                    assert_eq!(
                        parse(&header[..n]),
                        Parsed::Incomplete,
                        "prefix {n} of {header:?}"
                    );
                }
                assert!(matches!(parse(&header), Parsed::Complete { .. }));
            }
        }

        #[test]
        fn invalid_headers() {
            for bad in [
                &b"GET / HTTP/1.1\r\n"[..],
                b"PROXY TCP4 198.51.100.7 10.0.0.1 56324 443\n",
                b"PROXY TCP4 banana 10.0.0.1 1 2\r\n",
                b"PROXY TCP9 1.2.3.4 1.2.3.4 1 2\r\n",
                b"\r\n\r\n\0\r\nQUIX\n",
            ] {
                assert!(matches!(parse(bad), Parsed::Invalid(_)), "{bad:?}");
            }
            let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
            assert!(matches!(parse(&long), Parsed::Invalid(_)));
            let mut huge = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
            huge.extend_from_slice(&u16::MAX.to_be_bytes());
            assert!(
                matches!(parse(&huge), Parsed::Invalid(_)),
                "v2 length over the cap"
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parsers_never_panic(s in "\\PC{0,200}") {
                if let Ok(v) = HeaderValue::from_str(&s) {
                    let mut h = HeaderMap::new();
                    h.insert(X_FORWARDED_FOR.clone(), v.clone());
                    h.insert(http::header::FORWARDED, v);
                    let _ = x_forwarded_for(&h);
                    let _ = forwarded_for(&h);
                }
                let _ = proxy_protocol::parse(s.as_bytes());
            }

            #[test]
            fn proxy_parse_never_panics_on_bytes(b in prop::collection::vec(any::<u8>(), 0..300)) {
                let _ = proxy_protocol::parse(&b);
                let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
                v2.extend_from_slice(&b);
                let _ = proxy_protocol::parse(&v2);
            }

            #[test]
            fn a_spoofed_prefix_never_changes_the_client(
                spoof in prop::collection::vec(any::<[u8; 4]>(), 0..5),
                real in any::<[u8; 4]>(),
            ) {
                // The client may prepend anything; the load balancer appends the real address.
                let real = IpAddr::from(real);
                prop_assume!(!trusted(&["10.0.0.0/8"]).contains(real));
                let mut chain: Vec<String> = spoof.iter().map(|o| IpAddr::from(*o).to_string()).collect();
                chain.push(real.to_string());
                let c = xff("10.0.0.2", &[("x-forwarded-for", &chain.join(", "))], &["10.0.0.0/8"]);
                prop_assert_eq!(c.addr, real);
            }
        }
    }
}
