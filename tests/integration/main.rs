//! Integration tests: one binary, real sockets on ephemeral ports, a real origin started per test, real TLS
//! with generated certificates.
//!
//! - `forwarding`: streaming both ways, keep-alive reuse, header hygiene, forwarding headers, Host modes,
//!   upgrades, the reserved prefix, HTTP→HTTPS redirect, admin endpoints, the demo site.
//! - `failures`: 502/504 and resets, header and URI limits, request smuggling shapes.
//! - `client_ip`: loopback source addresses, trusted X-Forwarded-For / Forwarded hops, spoofing, PROXY v1/v2.
//! - `tls`: HTTP/2 over TLS by ALPN, SNI selection, certificate reload (SIGHUP path and file watch, good and bad).
//! - `consent`: the consent endpoint, banner assets, gpc.json, and "no permitted tier, no lookup".
//! - `feedback`: the feedback widget and endpoint (abuse, rate limit), `concierge feedback report`, the why page.
//! - `experiments`: account-randomized experiments through the proxy, and the report recovering a known effect.
//! - `lifecycle`: graceful shutdown with requests in flight, the drain deadline, `concierge check`, signals.
//! - `cache`: the origin-response cache (off by default): fetched once, personalized per visitor, bypassed when personal.
//! - `browser`: what a visitor does in headless Chromium (Debian's, driven by Playwright for Python; the scripts
//!   are in `tests/browser/`, installed by `scripts/setup-browser`).

mod audit;
mod browser;
mod cache;
mod client_ip;
mod consent;
mod console;
mod experiments;
mod failures;
mod feedback;
mod forwarding;
mod lifecycle;
mod postgres;
mod record_store;
mod rules;
mod support;
mod tls;
