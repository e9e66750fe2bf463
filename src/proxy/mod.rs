//! The proxy: the hyper service that takes one request through the phases, and the listeners that feed it.
//!
//! ```text
//! accept ─► client ─► (classify ─► plan) ─► upstream ─► response head ─► response body ─► record
//! ```
//! Each phase is a method below that reads the per-request [`RequestContext`] and either continues or answers
//! now. `classify` (geo, consent, company) and `plan` (rules) arrive with their modules; today a request goes
//! from `client` straight to `upstream`. The record phase lives in [`body::Recorder`] and runs on every exit.

pub mod body;
pub mod endpoints;
pub mod error;
pub mod h2guard;
pub mod headers;
pub mod server;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::client_ip::{self, ClientIp};
use crate::config::{HostHeader, Settings};
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::sources::Sources;
use arc_swap::ArcSwap;
use body::{Recorder, ResponseBody};
use error::Refusal;
use upstream::Upstream;

/// What the accept phase learned about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    /// Answer every request with a redirect to HTTPS on this port.
    pub redirect_https: Option<u16>,
    /// The server's life, for connections that outlive their request (upgrades).
    pub lifecycle: server::Lifecycle,
    /// The connection's client before any forwarding header: the PROXY protocol source, else the TCP peer.
    pub base: IpAddr,
    pub base_source: crate::client_ip::Source,
    /// `base` as the forwarding headers write it, built once per connection.
    pub client: headers::ClientAddr,
}

/// The immutable per-request context every phase reads.
pub struct RequestContext {
    pub request_id: HeaderValue,
    /// The resolved client: every later phase uses this, and the origin is told it.
    pub client: ClientIp,
    /// `http` or `https` as the client used it (a trusted balancer's `X-Forwarded-Proto` wins).
    pub scheme: &'static str,
    /// The host the client asked for (`Host`, or the authority of an absolute-form or HTTP/2 request),
    /// validated by [`headers::valid_host`].
    pub host: Option<HeaderValue>,
    /// The host to report in `X-Forwarded-Host`/`Forwarded`: a trusted balancer's `X-Forwarded-Host`, else
    /// `host`.
    pub forwarded_host: Option<HeaderValue>,
    pub method: Method,
    pub version: Version,
    pub start: Instant,
}

/// Shared by every connection: settings, the upstream pool, metrics, and header values built once.
pub struct Proxy {
    settings: Arc<Settings>,
    upstream: Upstream,
    metrics: Arc<Metrics>,
    via: headers::ViaValues,
    /// `Host` for `host_header = "upstream"`: the URL's authority as written (no default port added).
    upstream_host: Option<HeaderValue>,
    /// The company/location tables and the rules, swapped together on reload.
    sources: Arc<ArcSwap<Sources>>,
    /// The audit log (proof-of-consent and decision records).
    audit: Arc<crate::audit::Audit>,
    /// Posts to the proxy's own endpoints, per client.
    posts: endpoints::ratelimit::RateLimiter,
}

/// What the classify and plan phases decided for a page request, carried to the response head.
struct Considered {
    /// The changes, when there are any.
    ops: Option<Vec<crate::rewrite::Op>>,
    /// Ids of the rules that contribute changes.
    applied: Vec<String>,
    /// Completed (outcome, rules) at the response head, when it is known whether the page is rewritten.
    record: crate::audit::DecisionRecord,
}

/// lol_html's buffer limit per response (a start tag or text run split across chunks is buffered whole).
const REWRITE_MEMORY: usize = 1024 * 1024;

/// What the accept phase decided. (Returned once per request by value; boxing the response would add an
/// allocation to every refusal for nothing.)
#[allow(clippy::large_enum_variant)]
enum Step {
    /// Answer now (refusal, redirect).
    Respond(Response<ResponseBody>),
    /// One of the proxy's own endpoints.
    Own(endpoints::Route),
    /// On to classify and the origin.
    Forward,
}

impl Proxy {
    pub fn new(
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        sources: Arc<ArcSwap<Sources>>,
        audit: Arc<crate::audit::Audit>,
    ) -> Result<Arc<Proxy>, upstream::UpstreamSetupError> {
        let upstream = Upstream::new(&settings.upstream, &settings.timeouts)?;
        let posts = endpoints::ratelimit::RateLimiter::new(
            settings.limits.visitor_posts_per_minute,
            settings.limits.visitor_posts_burst,
        );
        let via = headers::ViaValues::new(&settings.proxy.via_name);
        let upstream_host = settings
            .upstream
            .url
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        Ok(Arc::new(Proxy {
            settings,
            upstream,
            metrics,
            via,
            upstream_host,
            sources,
            audit,
            posts,
        }))
    }

    /// The current generation of company/location tables and rules (swapped together on reload). A request
    /// loads it once and decides everything against it.
    pub fn sources(&self) -> Arc<Sources> {
        self.sources.load_full()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The hyper service entry point: run the phases, then attach the record phase to the response.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> Result<Response<ResponseBody>, std::convert::Infallible> {
        let ctx = self.context(&req, &conn);
        let access_log = self.settings.log.access_log;
        let path = access_log.then(|| req.uri().path().to_string());
        let mut resp = match self.accept_phase(&req, &ctx, &conn) {
            Step::Respond(early) => early,
            Step::Own(route) => endpoints::serve(&self, route, req, &ctx).await,
            Step::Forward => {
                let sources = self.sources();
                let considered = self.decide_phase(&req, &ctx, &sources);
                self.upstream_phase(req, &ctx, &conn, considered).await
            }
        };
        resp.headers_mut().insert(
            self.settings.proxy.request_id_header.clone(),
            ctx.request_id.clone(),
        );
        let completed = resp.body().is_end_stream() || ctx.method == Method::HEAD;
        let recorder = Recorder {
            metrics: self.metrics.clone(),
            access_log,
            request_id: ctx.request_id,
            client: ctx.client.addr,
            method: ctx.method,
            host: ctx
                .host
                .as_ref()
                .filter(|_| access_log)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string),
            path,
            version: ctx.version,
            status: resp.status(),
            start: ctx.start,
            bytes: 0,
            completed,
        };
        resp.body_mut().set_recorder(recorder);
        Ok(resp)
    }

    /// Client phase: who is asking, for what host, under which request id.
    fn context(&self, req: &Request<Incoming>, conn: &ConnInfo) -> RequestContext {
        let proxy = &self.settings.proxy;
        let trusted = &self.settings.client_ip.trusted_proxies;
        // With trusted proxies configured, only their request ids are believed.
        let trust_id =
            proxy.trust_request_id && (trusted.is_empty() || trusted.contains(conn.base));
        let request_id = req
            .headers()
            .get(&proxy.request_id_header)
            .filter(|v| trust_id && headers::acceptable_request_id(v))
            .cloned()
            .unwrap_or_else(headers::new_request_id);
        let resolved = client_ip::resolve(
            conn.base,
            conn.base_source,
            req.headers(),
            trusted,
            self.settings.client_ip.header,
        );
        // RFC 9112 §3.2.2: an absolute-form target's authority wins over Host; HTTP/2 carries it as :authority.
        let host = match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => req.headers().get(header::HOST).cloned(),
        }
        .filter(|h| headers::valid_host(h.as_bytes()));
        RequestContext {
            request_id,
            client: resolved.client,
            scheme: resolved
                .proto
                .unwrap_or(if conn.tls { "https" } else { "http" }),
            forwarded_host: resolved.host.or_else(|| host.clone()),
            host,
            method: req.method().clone(),
            version: req.version(),
            start: Instant::now(),
        }
    }

    /// Accept phase: refuse what must not reach the origin, redirect, or answer the proxy's own endpoints.
    fn accept_phase(&self, req: &Request<Incoming>, ctx: &RequestContext, conn: &ConnInfo) -> Step {
        let limits = &self.settings.limits;
        let refuse = |r: Refusal| Step::Respond(r.response(&ctx.request_id));
        if req.method() == Method::CONNECT {
            // A reverse proxy is no tunnel to arbitrary hosts.
            return refuse(Refusal::MethodNotAllowed);
        }
        if req
            .uri()
            .path_and_query()
            .is_some_and(|pq| pq.as_str() == "*")
        {
            return refuse(Refusal::BadRequest(
                "Asterisk-form requests (OPTIONS *) are not forwarded.",
            ));
        }
        if req.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > limits.max_uri_bytes {
            return refuse(Refusal::UriTooLong);
        }
        if req
            .headers()
            .values()
            .any(|v| v.len() > limits.max_header_value_bytes)
        {
            return refuse(Refusal::HeaderTooLarge);
        }
        let h = req.headers();
        // Request smuggling: hyper's HTTP/1 parser already refuses conflicting Content-Length values, a final
        // transfer coding other than chunked, Transfer-Encoding on HTTP/1.0 and malformed header lines. A request
        // with both Content-Length and Transfer-Encoding is read by Transfer-Encoding alone, its Content-Length
        // dropped and the connection closed after the response (RFC 9112 §6.1); the upstream client frames the
        // body afresh, so the origin only ever sees one framing.
        let host_sent = req.uri().authority().is_some() || h.contains_key(header::HOST);
        if ctx.host.is_none() && (host_sent || req.version() != Version::HTTP_10) {
            return refuse(Refusal::BadRequest(
                "The request has a missing or malformed Host header.",
            ));
        }
        if h.get_all(header::HOST).iter().count() > 1 {
            return refuse(Refusal::BadRequest(
                "The request has more than one Host header.",
            ));
        }
        // RFC 9113 §8.3.1: an HTTP/2 request whose Host differs from :authority is malformed (and would let the
        // origin and the proxy disagree about the site).
        if req.version() == Version::HTTP_2 {
            if let (Some(authority), Some(host)) = (req.uri().authority(), h.get(header::HOST)) {
                if !authority
                    .as_str()
                    .as_bytes()
                    .eq_ignore_ascii_case(host.as_bytes())
                {
                    return refuse(Refusal::BadRequest(
                        "The request's Host header differs from its :authority.",
                    ));
                }
            }
        }
        if let Some(port) = conn.redirect_https {
            // ACME HTTP-01 challenges must reach the origin over plain HTTP.
            if !req.uri().path().starts_with("/.well-known/acme-challenge/") {
                return Step::Respond(self.https_redirect(req, ctx, port));
            }
        }
        // The reserved prefix belongs to the proxy: nothing under it is ever forwarded to the origin.
        match endpoints::route(self, req.method(), req.uri().path()) {
            Ok(Some(route)) => Step::Own(route),
            Ok(None) => Step::Forward,
            Err(refusal) => refuse(refusal),
        }
    }

    /// Classify and plan phases, for page requests (GET/HEAD asking for HTML), through the runtime-free
    /// pipeline (`crate::pipeline`): location → jurisdiction, signals → Decision, the company lookup only with
    /// the Decision's permit; then the rules that match and are permitted, rendered for this visitor (plus the
    /// consent banner when the Decision asks for it), and the decision record to write. `None`: nothing was
    /// considered (no change and nothing to record), so nothing to record.
    fn decide_phase(
        &self,
        req: &Request<Incoming>,
        ctx: &RequestContext,
        sources: &Sources,
    ) -> Option<Considered> {
        if !(ctx.method == Method::GET || ctx.method == Method::HEAD)
            || !is_page_request(req.headers())
        {
            return None;
        }
        let view = crate::pipeline::RequestView {
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
            client: ctx.client.addr,
            secure: ctx.scheme == "https",
            now: crate::classify::unix_now(),
        };
        let c = crate::pipeline::classify(&view, sources, &self.settings);
        self.metrics.decision(
            c.decision.jurisdiction.regime.name(),
            c.highest_tier(),
            c.decision.show_banner,
        );
        let lookup_ran = !matches!(c.company, crate::classify::Lookup::NotRun);
        if lookup_ran {
            self.metrics.company_lookup(c.company.label());
        }
        // Every page decision is counted for the signed per-interval `counts` records.
        self.audit.tally.count(&c.decision, lookup_ran);
        let record_refusals = self.audit.record_refusals;
        if !crate::pipeline::worth_planning(&c, sources, record_refusals) {
            return None;
        }
        let d = crate::pipeline::plan_page(c, &view, sources, &self.settings);
        if !d.recorded(record_refusals) {
            return None;
        }
        let record = d.record(
            ctx.request_id.to_str().unwrap_or("-"),
            self.audit.pseudonymizer.client(ctx.client.addr),
            view.path,
            "not_personalized",
        );
        Some(Considered {
            applied: d.applied,
            ops: (!d.ops.is_empty()).then_some(d.ops),
            record,
        })
    }

    fn https_redirect(
        &self,
        req: &Request<Incoming>,
        ctx: &RequestContext,
        port: u16,
    ) -> Response<ResponseBody> {
        let Some(host) = ctx
            .host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
        else {
            return Refusal::BadRequest("The request has a missing or malformed Host header.")
                .response(&ctx.request_id);
        };
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let location = if port == 443 {
            format!("https://{}{}", host.host(), target)
        } else if host.host().contains(':') {
            format!(
                "https://[{}]:{}{}",
                host.host().trim_matches(['[', ']']),
                port,
                target
            )
        } else {
            format!("https://{}:{}{}", host.host(), port, target)
        };
        match HeaderValue::from_str(&location) {
            Ok(v) => error::redirect(v),
            Err(_) => Refusal::BadRequest("The request target cannot be redirected.")
                .response(&ctx.request_id),
        }
    }

    /// Upstream phase: rewrite the head for the origin, send, wait (bounded) for the response head.
    async fn upstream_phase(
        &self,
        mut req: Request<Incoming>,
        ctx: &RequestContext,
        conn: &ConnInfo,
        considered: Option<Considered>,
    ) -> Response<ResponseBody> {
        let settings = &self.settings;
        let upgrade = headers::is_upgrade_request(req.version(), req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        parts.uri = match self.upstream.target_for(parts.uri.path_and_query()) {
            Ok(target) => http::Uri::from(target),
            Err(_) => {
                return Refusal::BadRequest("The request target is malformed.")
                    .response(&ctx.request_id)
            }
        };
        let received_version = parts.version;
        parts.version = Version::HTTP_11;
        let h = &mut parts.headers;
        headers::strip_hop_by_hop(h, upgrade);
        headers::drop_underscored(
            h,
            settings.proxy.underscores_in_headers,
            &settings.proxy.request_id_header,
        );
        if received_version == Version::HTTP_2 {
            headers::join_cookies(h);
        }
        self.via.append(h, received_version);
        let client_addr = if ctx.client.addr == conn.base {
            std::borrow::Cow::Borrowed(&conn.client)
        } else {
            std::borrow::Cow::Owned(headers::ClientAddr::new(ctx.client.addr))
        };
        headers::set_forwarding(
            h,
            &headers::Forwarding {
                client: &client_addr,
                proto: ctx.scheme,
                host: ctx.forwarded_host.as_ref(),
            },
        );
        // hyper's client connection needs a Host; an HTTP/1.0 client may have sent none.
        let host_value = match &settings.upstream.host_header {
            HostHeader::Preserve => ctx.host.clone().or_else(|| self.upstream_host.clone()),
            HostHeader::Upstream => self.upstream_host.clone(),
            HostHeader::Custom(v) => Some(v.clone()),
        };
        if let Some(v) = host_value {
            h.insert(header::HOST, v);
        }
        h.insert(
            settings.proxy.request_id_header.clone(),
            ctx.request_id.clone(),
        );
        // A page we may rewrite must arrive in a form we can read; we compress it for the client ourselves.
        let (ops, record) = match considered {
            Some(c) => (c.ops, Some((c.record, c.applied))),
            None => (None, None),
        };
        let client_coding = ops.as_ref().and_then(|_| {
            crate::rewrite::codec::Coding::negotiate(
                h.get_all(header::ACCEPT_ENCODING)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            )
        });
        if ops.is_some() {
            // Only codings we can decode (and the client accepts, for a response we end up not rewriting).
            let accept = crate::rewrite::codec::upstream_accept_encoding(
                h.get_all(header::ACCEPT_ENCODING)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            let value = HeaderValue::from_str(&accept)
                .unwrap_or_else(|_| HeaderValue::from_static("identity"));
            h.insert(header::ACCEPT_ENCODING, value);
        }

        // The response timeout counts from the end of the request body: a slow upload is the client's time.
        let (body_done, body_finished) = tokio::sync::oneshot::channel();
        let mut body = body::RequestBody::new(body, body_done);
        // Not for `Expect: 100-continue`: reading the body would answer 100 for the origin, which may refuse.
        let expects_continue = parts
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !expects_continue {
            if let body::Ahead::Malformed(e) =
                body.read_ahead(settings.timeouts.client_header).await
            {
                return self.client_body_refused(ctx, &e);
            }
        }
        let client_failed = body.client_failed();
        let sent = self.upstream.send(Request::from_parts(parts, body));
        tokio::pin!(sent);
        let timeout = settings.timeouts.upstream_response;
        let result = tokio::select! {
            r = &mut sent => Some(r),
            _ = body_finished => tokio::time::timeout(timeout, &mut sent).await.ok(),
        };
        let (mut resp, lease) = match result {
            Some(Ok(pair)) => pair,
            Some(Err(_)) if client_failed.load(std::sync::atomic::Ordering::Relaxed) => {
                // The client broke its own body mid-way (the origin saw an unfinished body and a closed
                // connection, never a complete request): the client's fault, not the origin's.
                return self.client_body_refused(ctx, &"malformed or interrupted request body");
            }
            Some(Err(e)) => {
                let kind = e.kind();
                self.metrics.upstream_error(kind);
                let cause = upstream::error_chain(&e);
                tracing::warn!(
                    request_id = ctx.request_id.to_str().unwrap_or("-"),
                    kind = ?kind,
                    cause,
                    "upstream request failed"
                );
                let refusal = match kind {
                    UpstreamErrorKind::connect_timeout => Refusal::GatewayTimeout,
                    _ => Refusal::BadGateway,
                };
                return refusal.response(&ctx.request_id);
            }
            None => {
                self.metrics
                    .upstream_error(UpstreamErrorKind::response_timeout);
                tracing::warn!(
                    request_id = ctx.request_id.to_str().unwrap_or("-"),
                    ?timeout,
                    "origin did not send a response head in time"
                );
                return Refusal::GatewayTimeout.response(&ctx.request_id);
            }
        };

        // Response head phase.
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            let Some(client_upgrade) = client_upgrade else {
                self.metrics.upstream_error(UpstreamErrorKind::other);
                tracing::warn!(
                    request_id = ctx.request_id.to_str().unwrap_or("-"),
                    "origin switched protocols without an upgrade request"
                );
                return Refusal::BadGateway.response(&ctx.request_id);
            };
            let origin_upgrade = hyper::upgrade::on(&mut resp);
            tunnel(
                client_upgrade,
                origin_upgrade,
                ctx.request_id.clone(),
                conn.lifecycle.clone(),
                self.metrics.clone(),
            );
        }
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, switching);
        self.via.append(&mut parts.headers, parts.version);
        // An upgraded connection belongs to the tunnel now; it never goes back to the pool.
        let lease = (!switching).then_some(lease);
        let mut rewrite = None;
        let rewritable = ops.as_ref().map(|_| self.rewritable(&parts));
        // No audit record, no personalization — also across a crash. The record of what is about to happen is
        // queued now; with `audit.wait = "durable"` (the default) the head goes out at once but no personalized
        // byte leaves before the group commit holding the record is on disk (the body waits on `gate`); with
        // "accepted", once it is queued.
        let mut audited = false;
        let mut gate: Option<body::Gate> = None;
        if let Some((mut r, applied)) = record {
            let personalize = matches!(rewritable, Some(Ok(_)));
            if personalize {
                // Rewritten: with the rules' changes, or only to add the consent banner.
                r.outcome = if applied.is_empty() {
                    "banner"
                } else {
                    "personalized"
                };
                r.rules = applied;
            }
            let record = crate::audit::Record::Decision(Box::new(r));
            let wait = personalize && self.audit.wait_durable;
            // The gate counts the outcome (accepted / refused_*) and says whether we may act on the record.
            match self
                .audit
                .records
                .submit(crate::audit::gate::Kind::Decision, &record, wait)
            {
                Ok(ticket) => {
                    audited = true;
                    if wait {
                        let metrics = self.metrics.clone();
                        gate = Some(Box::pin(async move {
                            let on_disk = ticket.on_disk().await.is_ok();
                            metrics.rewrite(if on_disk {
                                "rewritten"
                            } else {
                                "skipped_audit"
                            });
                            on_disk
                        }));
                    } else {
                        ticket.accepted();
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        request_id = ctx.request_id.to_str().unwrap_or("-"),
                        error = %e,
                        "decision record not accepted; the page goes out unpersonalized"
                    );
                }
            }
        }
        if let (Some(ops), Some(rewritable)) = (ops, rewritable) {
            let rewritable = if audited {
                rewritable
            } else {
                Err("skipped_audit")
            };
            match rewritable {
                Ok((encoding, origin_coding)) => {
                    // A personalized page is never storable by a shared cache, and the origin's validators
                    // and length no longer describe it.
                    let h = &mut parts.headers;
                    h.remove(header::CONTENT_LENGTH);
                    h.remove(header::ETAG);
                    h.remove(header::LAST_MODIFIED);
                    h.insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("private, no-store"),
                    );
                    if !vary_names(h, "accept-encoding") {
                        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
                    }
                    h.remove(header::CONTENT_ENCODING);
                    let limits = crate::rewrite::codec::DecodeLimits {
                        max_output: settings.limits.max_decoded_body,
                        max_ratio: settings.limits.max_decode_ratio,
                    };
                    let decoder = origin_coding
                        .and_then(|c| crate::rewrite::codec::Decoder::new(c, limits).ok());
                    let encoder = client_coding.and_then(|c| {
                        let e = crate::rewrite::codec::Encoder::new(c).ok()?;
                        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c.name()));
                        Some(e)
                    });
                    if gate.is_none() {
                        self.metrics.rewrite("rewritten");
                    }
                    let mut r = body::Rewrite::new(
                        decoder,
                        crate::rewrite::Rewriter::new(ops, encoding, REWRITE_MEMORY),
                        encoder,
                        self.metrics.clone(),
                    );
                    if let Some(g) = gate.take() {
                        r.set_gate(g);
                    }
                    rewrite = Some(r);
                }
                Err(why) => self.metrics.rewrite(why),
            }
        }
        if let Some(g) = gate {
            // Recorded but not rewritten after all: nothing waits on the record; count how it ends.
            tokio::spawn(g);
        }
        let mut out = ResponseBody::upstream(body, timeout, lease);
        if let Some(r) = rewrite {
            out.set_rewrite(r);
        }
        Response::from_parts(parts, out)
    }
}

impl Proxy {
    /// A request whose body the client sent malformed: 400, counted as a client error, never an upstream one.
    fn client_body_refused(
        &self,
        ctx: &RequestContext,
        why: &dyn std::fmt::Display,
    ) -> Response<ResponseBody> {
        self.metrics
            .client_error(crate::metrics::ClientErrorKind::malformed);
        tracing::info!(
            request_id = ctx.request_id.to_str().unwrap_or("-"),
            error = %why,
            "request body malformed; answered 400"
        );
        // hyper closes an HTTP/1.1 connection whose request body broke; the answer needs no Connection header.
        Refusal::BadRequest("The request body is malformed.").response(&ctx.request_id)
    }

    /// Whether this response can be rewritten, and if so with which declared charset; else why not.
    fn rewritable(
        &self,
        parts: &http::response::Parts,
    ) -> Result<
        (
            Option<&'static encoding_rs::Encoding>,
            Option<crate::rewrite::codec::Origin>,
        ),
        &'static str,
    > {
        if parts.status != StatusCode::OK {
            return Err("skipped_status");
        }
        let ct = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("text/html") {
            return Err("skipped_not_html");
        }
        // One coding we can decode (or none); stacked or unknown codings pass through.
        let mut coding = None;
        for token in parts
            .headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        {
            if token.trim().eq_ignore_ascii_case("identity") {
                continue;
            }
            match crate::rewrite::codec::Origin::from_token(token) {
                Some(c) if coding.is_none() => coding = Some(c),
                _ => return Err("skipped_encoding"),
            }
        }
        match crate::rewrite::charset(ct) {
            Some(None) => Err("skipped_charset"),
            Some(Some(enc)) => Ok((Some(enc), coding)),
            None => Ok((None, coding)),
        }
    }
}

/// Whether a `Vary` header already names `name` (or `*`).
fn vary_names(h: &http::HeaderMap, name: &str) -> bool {
    h.get_all(header::VARY).iter().any(|v| {
        v.to_str().unwrap_or("").split(',').any(|n| {
            let n = n.trim();
            n == "*" || n.eq_ignore_ascii_case(name)
        })
    })
}

/// A browser navigation or a request that accepts HTML: the only responses personalization can touch.
fn is_page_request(h: &http::HeaderMap) -> bool {
    h.get("sec-fetch-dest")
        .is_some_and(|v| v.as_bytes() == b"document")
        || h.get_all(header::ACCEPT)
            .iter()
            .any(|v| v.as_bytes().windows(9).any(|w| w == b"text/html"))
}

/// After a 101, splice the client's and the origin's upgraded connections together until either side closes,
/// the tunnel idles for `client_idle`, or the server's grace period ends.
fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    origin: hyper::upgrade::OnUpgrade,
    request_id: HeaderValue,
    lifecycle: server::Lifecycle,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(async move {
        let _drain = lifecycle.drain;
        let mut phase = lifecycle.phase;
        let (client, origin) = match tokio::try_join!(client, origin) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(request_id = request_id.to_str().unwrap_or("-"), error = %e, "upgrade failed");
                return;
            }
        };
        let _open = metrics.tunnel_opened();
        let activity = Arc::new(server::Activity::new());
        let mut client = server::Tracked::new(TokioIo::new(client), activity.clone());
        let mut origin = TokioIo::new(origin);
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut origin) => {
                if let Err(e) = r {
                    tracing::debug!(request_id = request_id.to_str().unwrap_or("-"), error = %e, "upgraded connection ended");
                }
            }
            _ = activity.idle_for(lifecycle.idle) => {
                tracing::debug!(request_id = request_id.to_str().unwrap_or("-"), "upgraded connection idle; closed");
            }
            _ = phase.wait_for(|p| *p == server::Phase::Closing) => {}
        }
    });
}
