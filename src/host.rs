//! What a valid `Host`, `:authority` or `X-Forwarded-Host` value is: `host[:port]` and nothing else.
//! Shared by the proxy (the client's Host) and `client_ip` (a trusted balancer's X-Forwarded-Host).

/// Does a Host (or :authority) value look like `host[:port]` and nothing else? A byte-level check (no
/// allocation): a registered name or IPv4 address of letters, digits, `-`, `.`, `_`, or a bracketed IPv6
/// literal, then an optional `:port` of 1–5 digits.
pub fn valid_host(host: &[u8]) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let rest = if host[0] == b'[' {
        match host.iter().position(|&b| b == b']') {
            Some(end) if end > 1 => {
                let inside = &host[1..end];
                if !inside
                    .iter()
                    .all(|b| b.is_ascii_hexdigit() || b":.".contains(b))
                {
                    return false;
                }
                &host[end + 1..]
            }
            _ => return false,
        }
    } else {
        let end = host.iter().position(|&b| b == b':').unwrap_or(host.len());
        let name = &host[..end];
        if name.is_empty()
            || !name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b))
        {
            return false;
        }
        &host[end..]
    };
    match rest {
        [] => true,
        [b':', port @ ..] => {
            !port.is_empty() && port.len() <= 5 && port.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_validation() {
        for good in [
            "example.com",
            "example.com:8080",
            "[::1]:8080",
            "[2001:db8::1]",
            "127.0.0.1",
            "a_b.test",
        ] {
            assert!(valid_host(good.as_bytes()), "{good}");
        }
        for bad in [
            "",
            "a b",
            "user@example.com",
            "example.com/path",
            "example.com:",
            "example.com:123456",
            "example.com:80x",
            "[::1",
            "[]",
            "[zz::1]",
            ":80",
            "a.test/../x",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn accepted_hosts_are_authorities(s in "\\PC{0,40}") {
                if valid_host(s.as_bytes()) {
                    prop_assert!(s.parse::<http::uri::Authority>().is_ok(), "{:?}", s);
                    prop_assert!(!s.contains(['/', '@', ' ', '?', '#']));
                }
            }

            #[test]
            fn well_formed_hosts_are_accepted(
                name in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z0-9]{1,10}){0,3}",
                port in proptest::option::of(1u16..),
            ) {
                let host = match port { Some(p) => format!("{name}:{p}"), None => name };
                prop_assert!(valid_host(host.as_bytes()), "{}", host);
            }

        }
    }
}
