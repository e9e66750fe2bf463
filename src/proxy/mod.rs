//! The proxy: the hyper service that takes one request through the phases, and the listeners that feed it.
//!
//! ```text
//! context ─► accept ─► decide (pages) ─► forward ─► response head ─► response body ─► record
//!                 └─► own endpoints                       └─► tunnel (upgrades)
//! ```
//! One file per phase: [`context`] (resolved client, host, request id), [`accept`] (refusals, redirects, routing to
//! [`endpoints`]), [`decide`] (the runtime-free [`crate::pipeline`] against one generation of sources),
//! [`forward`] (the head for the origin, the body, the bounded wait), [`response`] (the record gate, the
//! rewrite), [`tunnel`]. [`body`] carries every response and runs the record phase ([`body::Recorder`]: access
//! log and metrics) on every exit. [`server`] accepts connections and drives hyper.

mod accept;
pub mod body;
mod cache;
mod context;
mod decide;
pub mod endpoints;
pub mod error;
pub mod fetch;
mod forward;
pub mod h2guard;
pub mod headers;
mod response;
pub mod server;
mod tunnel;
pub mod upstream;

pub use context::{ConnInfo, RequestContext};

use std::sync::Arc;

use http::header::HeaderValue;
use http::{Method, Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::sources::Sources;
use arc_swap::ArcSwap;
use body::{Recorder, ResponseBody};
use upstream::Upstream;

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
    /// The access log's writer (`log.access_log`).
    access_log: Option<crate::accesslog::AccessLog>,
    /// The origin-response cache (`cache.enabled`).
    cache: Option<Arc<cache::Cache>>,
}

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
        access_log: Option<crate::accesslog::AccessLog>,
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
        let cache = settings.cache.enabled.then(|| {
            let names = &settings.consent.names;
            let own = vec![
                names.first_party_cookie.clone(),
                names.host_only_cookie(),
                crate::experiments::visitor_cookie_name(false).to_string(),
                crate::experiments::visitor_cookie_name(true).to_string(),
            ];
            Arc::new(cache::Cache::new(&settings.cache, own, metrics.clone()))
        });
        Ok(Arc::new(Proxy {
            cache,
            settings,
            upstream,
            metrics,
            via,
            upstream_host,
            sources,
            audit,
            posts,
            access_log,
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
        let access_log = self.access_log.is_some();
        let path = access_log.then(|| req.uri().path().to_string());
        let mut resp = match self.accept_phase(&req, &ctx, &conn) {
            Step::Respond(early) => early,
            Step::Own(route) => endpoints::serve(&self, route, req, &ctx).await,
            Step::Forward => {
                // One generation of sources for the whole request.
                let sources = self.sources();
                let considered = self.decide_phase(&req, &ctx, &sources);
                let rewriting = considered.as_ref().is_some_and(|c| c.ops.is_some());
                match self.forward_phase(req, &ctx, &conn, rewriting).await {
                    Ok(forwarded) => self.response_head_phase(forwarded, &ctx, &conn, considered),
                    Err(answered) => answered,
                }
            }
        };
        resp.headers_mut().insert(
            self.settings.proxy.request_id_header.clone(),
            ctx.request_id.clone(),
        );
        let completed = resp.body().is_end_stream() || ctx.method == Method::HEAD;
        let recorder = Recorder {
            metrics: self.metrics.clone(),
            access_log: self.access_log.clone(),
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
}

impl Proxy {}
