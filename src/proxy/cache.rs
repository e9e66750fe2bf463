//! The origin-response cache (`[cache] enabled = true`; off by default): the origin's responses that it marks
//! shared-cacheable, held in memory so a repeat page view needs no origin round trip.
//!
//! What is cached is the *origin's* response, exactly as it arrived — never a page we personalized. A hit goes
//! through the same decision, record gate and rewrite as a response fresh from the origin, so each visitor's page
//! is still decided and recorded on its own.
//!
//! Freshness is RFC 9111's, computed by the maintained `http-cache-semantics` crate as a *shared* cache
//! (`s-maxage`, `private`, `no-store`, `no-cache`, `Vary`, `Authorization`, `Age` on the way out). On top of it,
//! deliberately stricter than the RFC requires:
//! - only explicit freshness (`max-age`, `s-maxage`, `Expires`): no heuristic from `Last-Modified`, so a site
//!   that says nothing about caching is never cached;
//! - only `GET` without a body, `Authorization`, `Range` or conditional headers, and without cookies other than
//!   the proxy's own (consent, visitor id): an origin that reads a session cookie without saying `Vary: Cookie`
//!   must not hand one visitor's page to another;
//! - only `200` responses without `Set-Cookie` or trailers, with a body of at most `cache.max_entry_bytes`,
//!   read to the end (a response cut off is never stored);
//! - a stale entry is a miss: the request goes to the origin as it came (no revalidation), and its answer
//!   replaces the entry.
//!
//! Memory: bodies are bounded by `cache.max_bytes`; the oldest entries go first. Each URL keeps at most
//! [`MAX_VARIANTS`] variants (`Vary`).

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, response, Method, StatusCode};
use http_cache_semantics::{BeforeRequest, CacheOptions, CachePolicy};

use crate::config::CacheSettings;
use crate::metrics::Metrics;

/// Variants kept per URL (one per `Vary` combination seen: e.g. gzip and identity).
pub(crate) const MAX_VARIANTS: usize = 4;

/// An `Age` past this is not believed (and a larger one would overflow the crate's arithmetic later).
const MAX_AGE_HEADER: u64 = 365 * 24 * 3600;

/// At most this much is reserved up front for a body being collected, whatever its `Content-Length` says.
const PREALLOCATE: usize = 64 * 1024;

/// Why a request is not one the cache may answer or fill (for tests and debug logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bypass {
    Method,
    Body,
    Authorization,
    Range,
    Conditional,
    Cookie,
    Upgrade,
    /// A header sent twice: `Vary` matching compares one value, so the variant could be the wrong one.
    RepeatedHeader,
}

struct Entry {
    id: u64,
    policy: CachePolicy,
    /// The origin's head as it came (repeated headers and `Date` kept; the crate's own copy keeps neither).
    head: response::Parts,
    body: Bytes,
    /// What it is charged against `cache.max_bytes`: body, heads and key.
    cost: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Box<str>, Vec<Arc<Entry>>>,
    /// Insertion order for eviction; ids no longer in `map` are skipped (and compacted away).
    order: VecDeque<(Box<str>, u64)>,
    live: usize,
    bytes: usize,
    next_id: u64,
}

impl Inner {
    fn remove_where(&mut self, key: &str, mut gone: impl FnMut(&Entry) -> bool) {
        let Some(variants) = self.map.get_mut(key) else {
            return;
        };
        let before = variants.len();
        let mut freed = 0;
        variants.retain(|e| {
            let drop = gone(e);
            if drop {
                freed += e.cost;
            }
            !drop
        });
        self.live -= before - variants.len();
        self.bytes -= freed;
        if variants.is_empty() {
            self.map.remove(key);
        }
    }

    fn evict_to(&mut self, max_bytes: usize) {
        while self.bytes > max_bytes {
            let Some((key, id)) = self.order.pop_front() else {
                break;
            };
            self.remove_where(&key, |e| e.id == id);
        }
        // Replaced entries leave their ids behind; keep the queue proportional to what is live.
        if self.order.len() > 2 * self.live + 64 {
            let map = &self.map;
            self.order.retain(|(key, id)| {
                map.get(key)
                    .is_some_and(|variants| variants.iter().any(|e| e.id == *id))
            });
        }
    }
}

/// The cache, shared by every connection.
pub(crate) struct Cache {
    inner: Mutex<Inner>,
    max_bytes: usize,
    max_entry_bytes: usize,
    /// Bytes of bodies being collected right now (not yet stored), bounded by `max_bytes` too.
    in_flight: AtomicUsize,
    /// The proxy's own cookies: they never reach the origin's logic, so they do not make a request personal.
    own_cookies: Vec<String>,
    metrics: Arc<Metrics>,
}

/// The request headers that make up the key besides the target: what the origin is told about the host and the
/// scheme the visitor used (`Host`, and the forwarding headers the proxy sets), so a page built from them is
/// never handed to a request that told another story.
const KEY_HEADERS: [HeaderName; 3] = [
    header::HOST,
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-proto"),
];

impl Cache {
    pub(crate) fn new(
        settings: &CacheSettings,
        own_cookies: Vec<String>,
        metrics: Arc<Metrics>,
    ) -> Cache {
        Cache {
            inner: Mutex::new(Inner::default()),
            max_bytes: settings.max_bytes,
            max_entry_bytes: settings.max_entry_bytes,
            in_flight: AtomicUsize::new(0),
            own_cookies,
            metrics,
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn options() -> CacheOptions {
        CacheOptions {
            shared: true,
            cache_heuristic: 0.0,
            immutable_min_time_to_live: Duration::ZERO,
            ignore_cargo_cult: false,
        }
    }

    /// The cache key of a request as it goes to the origin (origin-form target, `Host` and forwarding headers
    /// set), or why the cache may neither answer nor store it.
    pub(crate) fn key_for(&self, req: &request::Parts, has_body: bool) -> Result<Box<str>, Bypass> {
        if req.method != Method::GET {
            return Err(Bypass::Method);
        }
        if has_body {
            return Err(Bypass::Body);
        }
        let h = &req.headers;
        if h.contains_key(header::AUTHORIZATION) {
            return Err(Bypass::Authorization);
        }
        if h.contains_key(header::RANGE) {
            return Err(Bypass::Range);
        }
        if [
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_MATCH,
            header::IF_UNMODIFIED_SINCE,
            header::IF_RANGE,
        ]
        .iter()
        .any(|n| h.contains_key(n))
        {
            return Err(Bypass::Conditional);
        }
        if h.contains_key(header::UPGRADE) {
            return Err(Bypass::Upgrade);
        }
        if !self.only_own_cookies(h) {
            return Err(Bypass::Cookie);
        }
        if h.keys_len() != h.len()
            && h.keys()
                .any(|n| n != header::COOKIE && h.get_all(n).iter().nth(1).is_some())
        {
            return Err(Bypass::RepeatedHeader);
        }
        let mut key = String::new();
        for name in &KEY_HEADERS {
            if let Some(v) = h.get(name) {
                key.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
            key.push('\n');
        }
        key.push_str(req.uri.path_and_query().map_or("/", |pq| pq.as_str()));
        Ok(key.into_boxed_str())
    }

    fn only_own_cookies(&self, h: &HeaderMap) -> bool {
        h.get_all(header::COOKIE).iter().all(|v| {
            // Undecodable bytes: a cookie we cannot name is not one of ours.
            let Ok(s) = v.to_str() else { return false };
            s.split(';').all(|pair| {
                let name = pair.split('=').next().unwrap_or("").trim();
                name.is_empty() || self.own_cookies.iter().any(|own| own == name)
            })
        })
    }

    /// Whether `e` may answer `req` now without the origin: RFC 9111 says fresh (a client's `max-stale` is not
    /// taken up: a stale entry is a miss). A panic in the crate on hostile values counts as "no".
    fn fresh_for(e: &Entry, req: &request::Parts, now: SystemTime) -> bool {
        catch_unwind(AssertUnwindSafe(|| {
            matches!(e.policy.before_request(req, now), BeforeRequest::Fresh(_))
                && !e.policy.is_stale(now)
        }))
        .unwrap_or(false)
    }

    /// A fresh stored response for this request: the origin's head (with `Age`) and body.
    pub(crate) fn lookup(
        &self,
        key: &str,
        req: &request::Parts,
    ) -> Option<(response::Parts, Bytes)> {
        let now = SystemTime::now();
        // Judged outside the lock: every hit's freshness check formats dates and clones headers.
        let variants: Vec<Arc<Entry>> = self.inner().map.get(key).cloned().unwrap_or_default();
        let found = variants
            .iter()
            .find(|e| Cache::fresh_for(e, req, now))
            .and_then(|e| {
                let age = catch_unwind(AssertUnwindSafe(|| e.policy.age(now))).ok()?;
                let mut head = clone_head(&e.head);
                head.headers
                    .insert(header::AGE, HeaderValue::from(age.as_secs()));
                Some((head, e.body.clone()))
            });
        self.metrics
            .origin_cache(if found.is_some() { "hit" } else { "miss" });
        found
    }

    /// Whether this origin response may be stored; if so, the [`Store`] that collects its body.
    pub(crate) fn storable(
        self: &Arc<Self>,
        key: Box<str>,
        req: &request::Parts,
        resp: &response::Parts,
    ) -> Option<Store> {
        let h = &resp.headers;
        if resp.status != StatusCode::OK || h.contains_key(header::SET_COOKIE) {
            return None;
        }
        // Only a body whose end we can tell from a cut: a declared length, or chunked framing.
        let declared = match h.get(header::CONTENT_LENGTH) {
            Some(v) => Some(v.to_str().ok()?.trim().parse::<u64>().ok()?),
            None => None,
        };
        let chunked = h.get_all(header::TRANSFER_ENCODING).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.to_ascii_lowercase().contains("chunked"))
        });
        if declared.is_none() && !chunked {
            return None;
        }
        if declared.is_some_and(|n| n > self.max_entry_bytes as u64) {
            return None;
        }
        let vary = vary_names(h)?;
        let age_ok = match h.get(header::AGE) {
            None => true,
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .is_some_and(|a| a <= MAX_AGE_HEADER),
        };
        if !age_ok {
            return None;
        }
        // The policy keeps only what it judges by: the host, the request's cache directives, the varied headers.
        let trimmed = trimmed_request(req, &vary);
        let now = SystemTime::now();
        let policy = catch_unwind(AssertUnwindSafe(|| {
            let p = CachePolicy::new_options(&trimmed, resp, now, Cache::options());
            (p.is_storable() && !p.time_to_live(now).is_zero()).then_some(p)
        }))
        .ok()
        .flatten()?;
        let capacity = declared.map_or(PREALLOCATE, |n| (n as usize).min(PREALLOCATE));
        Some(Store {
            reservation: Reservation {
                cache: self.clone(),
                bytes: 0,
            },
            key,
            request: trimmed,
            head: clone_head(resp),
            policy,
            declared,
            body: BytesMut::with_capacity(capacity),
            failed: false,
        })
    }

    fn insert(
        &self,
        key: Box<str>,
        request: request::Parts,
        policy: CachePolicy,
        head: response::Parts,
        body: Bytes,
    ) {
        let now = SystemTime::now();
        let cost = body.len()
            + head_bytes(&head.headers)
            + head_bytes(&request.headers)
            + 2 * key.len()
            + 256;
        // The new answer replaces the variants it answers for, and stale ones go (judged outside the lock).
        let existing: Vec<Arc<Entry>> = self.inner().map.get(&key).cloned().unwrap_or_default();
        let replaced: Vec<u64> = existing
            .iter()
            .filter(|e| {
                catch_unwind(AssertUnwindSafe(|| {
                    match e.policy.before_request(&request, now) {
                        BeforeRequest::Fresh(_) => true,
                        BeforeRequest::Stale { matches, .. } => matches || e.policy.is_stale(now),
                    }
                }))
                .unwrap_or(true)
            })
            .map(|e| e.id)
            .collect();
        let mut inner = self.inner();
        inner.remove_where(&key, |e| replaced.contains(&e.id));
        let id = inner.next_id;
        inner.next_id += 1;
        let variants = inner.map.entry(key.clone()).or_default();
        let mut freed = 0;
        let mut dropped = 0;
        if variants.len() >= MAX_VARIANTS {
            let e = variants.remove(0);
            freed = e.cost;
            dropped = 1;
        }
        variants.push(Arc::new(Entry {
            id,
            policy,
            head,
            body,
            cost,
        }));
        inner.live = inner.live + 1 - dropped;
        inner.bytes = inner.bytes + cost - freed;
        inner.order.push_back((key, id));
        inner.evict_to(self.max_bytes);
        let bytes = inner.bytes;
        drop(inner);
        self.metrics.origin_cache("stored");
        self.metrics.origin_cache_bytes(bytes);
    }

    /// Count a request the cache may not answer.
    pub(crate) fn bypassed(&self) {
        self.metrics.origin_cache("bypass");
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        let inner = self.inner();
        (inner.live, inner.bytes)
    }
}

/// The header names a response's `Vary` lists (lowercase); `None` for `Vary: *` or an unreadable `Vary`.
fn vary_names(h: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut out = Vec::new();
    for v in h.get_all(header::VARY) {
        for name in v.to_str().ok()?.split(',') {
            let name = name.trim();
            if name == "*" {
                return None;
            }
            if !name.is_empty() {
                out.push(HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?);
            }
        }
    }
    Some(out)
}

/// The request as the policy needs it: target, method, `Host`, `Cache-Control`, `Pragma` and the varied headers.
fn trimmed_request(req: &request::Parts, vary: &[HeaderName]) -> request::Parts {
    let mut out = http::Request::new(());
    *out.method_mut() = req.method.clone();
    *out.uri_mut() = req.uri.clone();
    *out.version_mut() = req.version;
    let h = out.headers_mut();
    for name in [header::HOST, header::CACHE_CONTROL, header::PRAGMA]
        .iter()
        .chain(vary)
    {
        for v in req.headers.get_all(name) {
            h.append(name.clone(), v.clone());
        }
    }
    out.into_parts().0
}

fn clone_head(head: &response::Parts) -> response::Parts {
    let mut out = http::Response::new(());
    *out.status_mut() = head.status;
    *out.version_mut() = head.version;
    *out.headers_mut() = head.headers.clone();
    out.into_parts().0
}

fn head_bytes(h: &HeaderMap) -> usize {
    h.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum()
}

/// Bytes of a body being collected, counted in `cache.in_flight` until dropped.
struct Reservation {
    cache: Arc<Cache>,
    bytes: usize,
}

impl Reservation {
    /// Count `n` more bytes; `false` if bodies being collected together would pass `cache.max_bytes`.
    fn add(&mut self, n: usize) -> bool {
        self.bytes += n;
        self.cache.in_flight.fetch_add(n, Ordering::Relaxed) + n <= self.cache.max_bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.cache
            .in_flight
            .fetch_sub(std::mem::take(&mut self.bytes), Ordering::Relaxed);
    }
}

/// Collects one origin body on its way to the client; stored when it ends whole and within bounds.
pub(crate) struct Store {
    reservation: Reservation,
    key: Box<str>,
    request: request::Parts,
    head: response::Parts,
    policy: CachePolicy,
    declared: Option<u64>,
    body: BytesMut,
    failed: bool,
}

impl Store {
    /// Take a data frame; `false` once the body has grown past `cache.max_entry_bytes`, or bodies being collected
    /// together past `cache.max_bytes` (then nothing is stored).
    pub(crate) fn push(&mut self, data: &[u8]) -> bool {
        if self.failed {
            return false;
        }
        let fits = self.body.len() + data.len() <= self.reservation.cache.max_entry_bytes
            && self.reservation.add(data.len());
        if !fits {
            self.failed = true;
            self.body = BytesMut::new();
            return false;
        }
        self.body.extend_from_slice(data);
        true
    }

    /// The body ended whole: store it (if it is as long as it said).
    pub(crate) fn finish(self) {
        let Store {
            reservation,
            key,
            request,
            head,
            policy,
            declared,
            body,
            failed,
        } = self;
        if failed || declared.is_some_and(|n| n != body.len() as u64) {
            return;
        }
        // Growth may have left spare capacity; what is stored is only what is charged.
        let body = if body.capacity() > body.len() + body.len() / 8 + 64 {
            Bytes::copy_from_slice(&body)
        } else {
            body.freeze()
        };
        reservation.cache.insert(key, request, policy, head, body);
    }
}

/// A copy of a request's head (method, target, version, headers), to judge the origin's answer by.
pub(crate) fn request_head(req: &request::Parts) -> request::Parts {
    let mut out = http::Request::new(());
    *out.method_mut() = req.method.clone();
    *out.uri_mut() = req.uri.clone();
    *out.version_mut() = req.version;
    *out.headers_mut() = req.headers.clone();
    out.into_parts().0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_bytes: usize, max_entry_bytes: usize) -> Arc<Cache> {
        Arc::new(Cache::new(
            &CacheSettings {
                enabled: true,
                max_bytes,
                max_entry_bytes,
            },
            vec!["concierge_consent".into(), "concierge_vid".into()],
            Metrics::new(),
        ))
    }

    fn req(target: &str, headers: &[(&str, &str)]) -> request::Parts {
        let mut b = http::Request::get(target).header("host", "site.example");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn resp(headers: &[(&str, &str)]) -> response::Parts {
        let mut b = http::Response::builder()
            .status(200)
            .header("content-type", "text/html");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        if !headers.iter().any(|(n, _)| *n == "content-length") {
            b = b.header("transfer-encoding", "chunked");
        }
        b.body(()).expect("response").into_parts().0
    }

    fn fill(c: &Arc<Cache>, r: &request::Parts, head: &[(&str, &str)], body: &[u8]) -> bool {
        let key = c.key_for(r, false).expect("eligible");
        match c.storable(key, r, &resp(head)) {
            Some(mut s) => {
                let ok = s.push(body);
                s.finish();
                ok
            }
            None => false,
        }
    }

    fn hit(c: &Arc<Cache>, r: &request::Parts) -> Option<Bytes> {
        let key = c.key_for(r, false).ok()?;
        c.lookup(&key, r).map(|(_, b)| b)
    }

    #[test]
    fn a_shared_cacheable_page_is_served_again_with_its_age() {
        let c = cache(1 << 20, 1 << 16);
        let r = req("/pricing?x=1", &[]);
        assert!(fill(
            &c,
            &r,
            &[("cache-control", "public, max-age=60")],
            b"<p>hi</p>"
        ));
        let key = c.key_for(&r, false).expect("key");
        let (head, body) = c.lookup(&key, &r).expect("hit");
        assert_eq!(&body[..], b"<p>hi</p>");
        assert_eq!(head.status, 200);
        assert!(head.headers.contains_key(header::AGE), "{:?}", head.headers);
        // Another target, another host: misses.
        assert!(hit(&c, &req("/pricing?x=2", &[])).is_none());
        let mut other = req("/pricing?x=1", &[]);
        other
            .headers
            .insert(header::HOST, "other.example".parse().expect("host"));
        assert!(hit(&c, &other).is_none());
    }

    #[test]
    fn what_the_origin_does_not_mark_fresh_or_shared_is_never_stored() {
        let c = cache(1 << 20, 1 << 16);
        let r = req("/", &[]);
        for head in [
            vec![],                                                       // nothing said: no heuristic
            vec![("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")], // heuristic freshness refused
            vec![("cache-control", "private, max-age=60")],           // private
            vec![("cache-control", "no-store")],                      // no-store
            vec![("cache-control", "max-age=0")],                     // already stale
            vec![("cache-control", "max-age=60"), ("set-cookie", "s=1")], // sets a cookie
            vec![("cache-control", "max-age=60"), ("vary", "*")],     // varies on everything
            vec![("cache-control", "max-age=60, s-maxage=0")],        // shared caches: stale
        ] {
            assert!(!fill(&c, &r, &head, b"x"), "{head:?} was stored");
        }
        assert_eq!(c.held(), (0, 0));
        // A non-200 answer.
        let key = c.key_for(&r, false).expect("key");
        let mut notfound = resp(&[("cache-control", "max-age=60")]);
        notfound.status = StatusCode::NOT_FOUND;
        assert!(c.storable(key, &r, &notfound).is_none());
    }

    #[test]
    fn personal_requests_bypass_the_cache() {
        let c = cache(1 << 20, 1 << 16);
        let cases: [(&[(&str, &str)], Bypass); 6] = [
            (&[("authorization", "Bearer x")], Bypass::Authorization),
            (&[("cookie", "session=abc")], Bypass::Cookie),
            (
                &[("cookie", "concierge_consent=v1.x; session=abc")],
                Bypass::Cookie,
            ),
            (&[("range", "bytes=0-10")], Bypass::Range),
            (&[("if-none-match", "\"a\"")], Bypass::Conditional),
            (&[("upgrade", "websocket")], Bypass::Upgrade),
        ];
        for (headers, why) in cases {
            assert_eq!(
                c.key_for(&req("/", headers), false),
                Err(why),
                "{headers:?}"
            );
        }
        // The proxy's own cookies do not make a request personal.
        assert!(c
            .key_for(
                &req(
                    "/",
                    &[("cookie", "concierge_consent=v1.x; concierge_vid=ab")]
                ),
                false
            )
            .is_ok());
        assert_eq!(c.key_for(&req("/", &[]), true), Err(Bypass::Body));
        let mut post = req("/", &[]);
        post.method = Method::POST;
        assert_eq!(c.key_for(&post, false), Err(Bypass::Method));
    }

    #[test]
    fn vary_keeps_one_variant_per_request_shape() {
        let c = cache(1 << 20, 1 << 16);
        let gz = req("/", &[("accept-encoding", "gzip")]);
        let id = req("/", &[("accept-encoding", "identity")]);
        let head = [("cache-control", "max-age=60"), ("vary", "Accept-Encoding")];
        assert!(fill(&c, &gz, &head, b"gzip-bytes"));
        assert!(
            hit(&c, &id).is_none(),
            "a gzip answer served to an identity request"
        );
        assert!(fill(&c, &id, &head, b"plain"));
        assert_eq!(&hit(&c, &gz).expect("gzip variant")[..], b"gzip-bytes");
        assert_eq!(&hit(&c, &id).expect("identity variant")[..], b"plain");
        // The same shape again replaces its variant instead of adding one.
        assert!(fill(&c, &gz, &head, b"gzip-2"));
        assert_eq!(&hit(&c, &gz).expect("gzip variant")[..], b"gzip-2");
        let (live, bytes) = c.held();
        assert_eq!(live, 2);
        assert!(bytes >= b"gzip-2".len() + b"plain".len());
        // The request's own no-cache is honoured (a reload goes to the origin).
        assert!(hit(
            &c,
            &req(
                "/",
                &[("accept-encoding", "gzip"), ("cache-control", "no-cache")]
            )
        )
        .is_none());
    }

    #[test]
    fn memory_stays_within_its_bounds() {
        let c = cache(64 * 1024, 16 * 1024);
        let head = [("cache-control", "max-age=60")];
        // Too long for one entry, by what it declares or by what it sends.
        let r = req("/big", &[]);
        let key = c.key_for(&r, false).expect("key");
        assert!(c
            .storable(
                key,
                &r,
                &resp(&[("cache-control", "max-age=60"), ("content-length", "20000")]),
            )
            .is_none());
        assert!(!fill(&c, &r, &head, &vec![b'x'; 16 * 1024 + 1]));
        assert!(hit(&c, &r).is_none());
        // Many pages: the oldest go, the total stays bounded.
        for i in 0..100 {
            assert!(fill(
                &c,
                &req(&format!("/p{i}"), &[]),
                &head,
                &vec![b'y'; 10_000]
            ));
            let (_, bytes) = c.held();
            assert!(bytes <= 64 * 1024, "{bytes} bytes held");
        }
        assert!(
            hit(&c, &req("/p0", &[])).is_none(),
            "the oldest page was kept"
        );
        assert!(
            hit(&c, &req("/p99", &[])).is_some(),
            "the newest page is gone"
        );
        // Rewriting one page over and over keeps the eviction queue small.
        for _ in 0..1000 {
            fill(&c, &req("/same", &[]), &head, b"z");
        }
        let inner = c.inner();
        assert!(
            inner.order.len() <= 2 * inner.live + 64,
            "{} queued",
            inner.order.len()
        );
    }

    #[test]
    fn a_body_cut_off_is_never_stored() {
        let c = cache(1 << 20, 1 << 16);
        let r = req("/", &[]);
        let key = c.key_for(&r, false).expect("key");
        let mut s = c
            .storable(key, &r, &resp(&[("cache-control", "max-age=60")]))
            .expect("storable");
        assert!(s.push(b"half of a page"));
        drop(s); // the client went away, or the origin broke off
        assert!(hit(&c, &r).is_none());
    }

    #[test]
    fn what_the_origin_was_told_about_host_and_scheme_is_part_of_the_key() {
        let c = cache(1 << 20, 1 << 16);
        let head = [("cache-control", "max-age=60")];
        let https = req(
            "/",
            &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "site.example"),
            ],
        );
        assert!(fill(&c, &https, &head, b"https page"));
        // A visitor who told another host, or came over http, must not get the page built for this one.
        let evil = req(
            "/",
            &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
            ],
        );
        let http = req(
            "/",
            &[
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "site.example"),
            ],
        );
        assert!(hit(&c, &evil).is_none());
        assert!(hit(&c, &http).is_none());
        assert_eq!(&hit(&c, &https).expect("same story")[..], b"https page");
        // A header sent twice (Vary compares one value) is not a request the cache answers.
        let mut twice = req("/", &[("accept-language", "en")]);
        twice
            .headers
            .append("accept-language", HeaderValue::from_static("fr"));
        assert_eq!(c.key_for(&twice, false), Err(Bypass::RepeatedHeader));
    }

    #[test]
    fn a_hit_carries_the_origins_head_as_it_came() {
        let c = cache(1 << 20, 1 << 16);
        let r = req("/", &[]);
        let head = [
            ("cache-control", "public, max-age=60"),
            ("date", "Tue, 01 Dec 2026 10:00:00 GMT"),
            ("content-security-policy", "default-src 'self'"),
            ("content-security-policy", "frame-ancestors 'none'"),
            ("link", "</a.css>; rel=preload"),
            ("link", "</b.css>; rel=preload"),
        ];
        assert!(fill(&c, &r, &head, b"x"));
        let key = c.key_for(&r, false).expect("key");
        let (got, _) = c.lookup(&key, &r).expect("hit");
        assert_eq!(
            got.headers
                .get_all("content-security-policy")
                .iter()
                .count(),
            2
        );
        assert_eq!(got.headers.get_all("link").iter().count(), 2);
        assert_eq!(got.headers["date"], "Tue, 01 Dec 2026 10:00:00 GMT");
        assert!(got.headers.contains_key(header::AGE));
    }

    #[test]
    fn hostile_or_unframed_answers_are_not_stored() {
        let c = cache(1 << 20, 1 << 16);
        let r = req("/", &[]);
        let key = || c.key_for(&r, false).expect("key");
        // An Age that would overflow the freshness arithmetic later.
        let huge = resp(&[
            ("cache-control", "max-age=18446744073709551615"),
            ("age", "18446744073709551614"),
        ]);
        assert!(c.storable(key(), &r, &huge).is_none());
        // A body whose end is the connection closing: a cut cannot be told from the end.
        let mut close = resp(&[("cache-control", "max-age=60")]);
        close.headers.remove("transfer-encoding");
        assert!(c.storable(key(), &r, &close).is_none());
        // Shorter than it said.
        let mut s = c
            .storable(
                key(),
                &r,
                &resp(&[("cache-control", "max-age=60"), ("content-length", "10")]),
            )
            .expect("storable");
        assert!(s.push(b"short"));
        s.finish();
        assert!(hit(&c, &r).is_none());
    }

    #[test]
    fn a_stale_entry_is_a_miss_even_for_max_stale() {
        let c = cache(1 << 20, 1 << 16);
        let r = req("/", &[]);
        assert!(fill(&c, &r, &[("cache-control", "max-age=60")], b"x"));
        let e = c.inner().map.values().next().expect("entry")[0].clone();
        let later = SystemTime::now() + Duration::from_secs(120);
        let lenient = req("/", &[("cache-control", "max-stale")]);
        assert!(!Cache::fresh_for(&e, &lenient, later));
        assert!(Cache::fresh_for(&e, &lenient, SystemTime::now()));
    }

    #[test]
    fn bodies_being_collected_share_the_bound() {
        let c = cache(64 * 1024, 48 * 1024);
        let head = resp(&[("cache-control", "max-age=60")]);
        let r1 = req("/one", &[]);
        let r2 = req("/two", &[]);
        let mut a = c
            .storable(c.key_for(&r1, false).expect("key"), &r1, &head)
            .expect("a");
        let mut b = c
            .storable(c.key_for(&r2, false).expect("key"), &r2, &head)
            .expect("b");
        assert!(a.push(&vec![b'a'; 40 * 1024]));
        assert!(
            !b.push(&vec![b'b'; 40 * 1024]),
            "two bodies in flight past max_bytes"
        );
        drop(b);
        a.finish();
        assert_eq!(c.in_flight.load(Ordering::Relaxed), 0);
        assert!(hit(&c, &r1).is_some());
    }
}
