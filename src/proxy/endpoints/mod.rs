//! The proxy's own endpoints, answered in the accept phase and never forwarded: the consent endpoint and
//! choices page, the feedback endpoint, the "why am I seeing this" page, the widgets' assets under the reserved
//! prefix, and `/.well-known/gpc.json` when enabled. Posts are rate limited per client (`limits.visitor_posts_*`).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response};
use hyper::body::Incoming;

mod consent;
mod feedback;
mod form;
mod page;
pub(crate) mod ratelimit;
mod why;

pub(crate) use page::html_page;

use crate::proxy::body::ResponseBody;
use crate::proxy::error::Refusal;
use crate::proxy::{Proxy, RequestContext};

const CONSENT_CSS: &[u8] = include_bytes!("../../../assets/consent.css");
const WIDGETS_CSS: &[u8] = include_bytes!("../../../assets/widgets.css");
const FEEDBACK_CSS: &[u8] = include_bytes!("../../../assets/feedback.css");
pub const GPC_PATH: &str = "/.well-known/gpc.json";

/// What a request to the proxy itself asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ConsentPost,
    ConsentPage,
    FeedbackPost,
    Why,
    /// The banner script, with the texts of the language its query names.
    ConsentScript,
    /// The feedback prompt's script, likewise.
    FeedbackScript,
    Asset {
        body: &'static [u8],
        content_type: &'static str,
    },
    GpcJson,
}

/// Which endpoint `path` names, if any: `Ok(None)` means "not ours, forward it"; `Err` answers now.
pub fn route(proxy: &Proxy, method: &Method, path: &str) -> Result<Option<Route>, Refusal> {
    let settings = proxy.settings();
    if path == GPC_PATH && settings.consent.gpc_well_known {
        return read_only(method, Route::GpcJson).map(Some);
    }
    let Some(rest) = path.strip_prefix(settings.proxy.reserved_prefix.as_str()) else {
        return Ok(None);
    };
    match rest {
        "consent" => match *method {
            Method::POST => Ok(Some(Route::ConsentPost)),
            Method::GET | Method::HEAD => Ok(Some(Route::ConsentPage)),
            _ => Err(Refusal::MethodNotAllowed),
        },
        "feedback" => match *method {
            Method::POST => Ok(Some(Route::FeedbackPost)),
            _ => Err(Refusal::MethodNotAllowed),
        },
        "why" => read_only(method, Route::Why).map(Some),
        "feedback.js" => read_only(method, Route::FeedbackScript).map(Some),
        "feedback.css" => read_only(
            method,
            Route::Asset {
                body: FEEDBACK_CSS,
                content_type: "text/css; charset=utf-8",
            },
        )
        .map(Some),
        "widgets.css" => read_only(
            method,
            Route::Asset {
                body: WIDGETS_CSS,
                content_type: "text/css; charset=utf-8",
            },
        )
        .map(Some),
        "consent.js" => read_only(method, Route::ConsentScript).map(Some),
        "consent.css" => read_only(
            method,
            Route::Asset {
                body: CONSENT_CSS,
                content_type: "text/css; charset=utf-8",
            },
        )
        .map(Some),
        // Nothing under the reserved prefix is ever forwarded to the origin.
        _ => Err(Refusal::NotFound),
    }
}

fn read_only(method: &Method, r: Route) -> Result<Route, Refusal> {
    if *method == Method::GET || *method == Method::HEAD {
        Ok(r)
    } else {
        Err(Refusal::MethodNotAllowed)
    }
}

/// One of the widgets' assets: shared-cacheable as `cache` says, never sniffed.
fn asset(body: Bytes, content_type: &'static str, cache: &'static str) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Answer a request routed to the proxy itself.
pub async fn serve(
    proxy: &Proxy,
    route: Route,
    req: Request<Incoming>,
    ctx: &RequestContext,
) -> Response<ResponseBody> {
    match route {
        Route::ConsentScript | Route::FeedbackScript => {
            let texts = &proxy.settings().consent.texts;
            let query = req.uri().query();
            let lang = crate::consent::signals::query_param(query, "lang").unwrap_or_default();
            // The URL the page names carries the texts' fingerprint: that one may be cached for a day.
            let current = crate::consent::signals::query_param(query, "v")
                .is_some_and(|v| v == texts.version());
            let body = if route == Route::ConsentScript {
                texts.script(lang)
            } else {
                texts.feedback_script(lang)
            };
            let cache = if current {
                "public, max-age=86400"
            } else {
                "public, max-age=300"
            };
            asset(body, "text/javascript; charset=utf-8", cache)
        }
        Route::Asset { body, content_type } => asset(
            Bytes::from_static(body),
            content_type,
            "public, max-age=300",
        ),
        Route::GpcJson => {
            let consent = &proxy.settings().consent;
            let body = match &consent.gpc_last_update {
                Some(d) => format!("{{\"gpc\": true, \"lastUpdate\": \"{d}\"}}\n"),
                None => "{\"gpc\": true}\n".to_string(),
            };
            let mut resp = Response::new(ResponseBody::full(body));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            );
            resp
        }
        Route::ConsentPage => consent::page(proxy, &req, ctx),
        Route::Why => why::page(proxy, &req, ctx).await,
        Route::ConsentPost => {
            let result = match rate_limit(proxy, ctx, "consent") {
                Ok(()) => consent::post(proxy, req, ctx).await,
                Err(refusal) => Err((refusal, "rate_limited")),
            };
            match result {
                Ok(resp) => resp,
                Err((refusal, result)) => {
                    proxy.metrics().consent_record(result);
                    refusal.response(&ctx.request_id)
                }
            }
        }
        Route::FeedbackPost => {
            let result = match rate_limit(proxy, ctx, "feedback") {
                Ok(()) => feedback::post(proxy, req, ctx).await,
                Err(refusal) => Err((refusal, "unknown", "rate_limited")),
            };
            match result {
                Ok((resp, event)) => {
                    proxy.metrics().feedback_record(event, "recorded");
                    resp
                }
                Err((refusal, event, result)) => {
                    proxy.metrics().feedback_record(event, result);
                    refusal.response(&ctx.request_id)
                }
            }
        }
    }
}

/// Take a token from the client's bucket, or refuse with 429.
fn rate_limit(proxy: &Proxy, ctx: &RequestContext, endpoint: &'static str) -> Result<(), Refusal> {
    proxy
        .posts
        .check(ctx.client.addr, std::time::Instant::now())
        .map_err(|wait| {
            proxy.metrics().rate_limited(endpoint);
            Refusal::TooManyRequests(wait.as_secs_f64().ceil() as u64)
        })
}
