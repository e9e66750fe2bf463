//! The proxy's own endpoints, answered in the accept phase and never forwarded: the consent endpoint and
//! choices page, the feedback endpoint, the "why am I seeing this" page, the widgets' assets under the reserved
//! prefix, and `/.well-known/gpc.json` when enabled. Posts are rate limited per client (`limits.visitor_posts_*`).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::body::ResponseBody;
use super::error::Refusal;
use super::{Proxy, RequestContext};
use crate::audit::{Choices, ConsentRecord, Record};
use crate::consent::choice::{self, ChoiceError, OriginError};
use crate::consent::signals::{self, FirstParty};

const CONSENT_JS: &[u8] = include_bytes!("../../assets/consent.js");
const CONSENT_CSS: &[u8] = include_bytes!("../../assets/consent.css");
const FEEDBACK_JS: &[u8] = include_bytes!("../../assets/feedback.js");
const WIDGETS_CSS: &[u8] = include_bytes!("../../assets/widgets.css");
pub const GPC_PATH: &str = "/.well-known/gpc.json";

/// What a request to the proxy itself asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ConsentPost,
    ConsentPage,
    FeedbackPost,
    Why,
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
        "feedback.js" => read_only(
            method,
            Route::Asset {
                body: FEEDBACK_JS,
                content_type: "text/javascript; charset=utf-8",
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
        "consent.js" => read_only(
            method,
            Route::Asset {
                body: CONSENT_JS,
                content_type: "text/javascript; charset=utf-8",
            },
        )
        .map(Some),
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

/// Answer a request routed to the proxy itself.
pub async fn serve(
    proxy: &Proxy,
    route: Route,
    req: Request<Incoming>,
    ctx: &RequestContext,
) -> Response<ResponseBody> {
    match route {
        Route::Asset { body, content_type } => {
            let mut resp = Response::new(ResponseBody::full(Bytes::from_static(body)));
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            resp
        }
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
        Route::ConsentPage => consent_page(proxy, &req, ctx),
        Route::Why => super::why::page(proxy, &req, ctx).await,
        Route::ConsentPost => {
            let result = match rate_limit(proxy, ctx, "consent") {
                Ok(()) => consent_post(proxy, req, ctx).await,
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
                Ok(()) => super::feedback::post(proxy, req, ctx).await,
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

/// What a refused post is told, per endpoint.
pub(super) struct PostMessages {
    pub cross_site: &'static str,
    pub no_origin: &'static str,
    pub media_type: &'static str,
}

/// The checks every form post to the proxy passes before its body is read: sent from a page of this site, as
/// `application/x-www-form-urlencoded`, not declaring more than `max_body` bytes.
pub(super) fn check_post(
    headers: &HeaderMap,
    ctx: &RequestContext,
    max_body: usize,
    messages: &PostMessages,
) -> Result<(), Refusal> {
    let host = ctx
        .host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    choice::check_same_origin(
        headers.get(header::ORIGIN).map(HeaderValue::as_bytes),
        headers.get("sec-fetch-site").map(HeaderValue::as_bytes),
        ctx.scheme,
        host,
    )
    .map_err(|e| {
        Refusal::Forbidden(match e {
            OriginError::CrossSite | OriginError::OtherOrigin => messages.cross_site,
            OriginError::NoEvidence => messages.no_origin,
        })
    })?;
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(Refusal::UnsupportedMediaType(messages.media_type));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max_body) {
        return Err(Refusal::PayloadTooLarge);
    }
    Ok(())
}

/// Read a post's body: at most `max` bytes, within the client header timeout.
pub(super) async fn read_body(proxy: &Proxy, body: Incoming, max: usize) -> Result<Bytes, Refusal> {
    let read = Limited::new(body, max).collect();
    match tokio::time::timeout(proxy.settings().timeouts.client_header, read).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal::PayloadTooLarge),
        Ok(Err(_)) | Err(_) => Err(Refusal::BadRequest("The request body could not be read.")),
    }
}

/// The visitor's current first-party choice (if readable) and whether GPC is on, from one read of the signals.
fn current_choice(proxy: &Proxy, headers: &HeaderMap, secure: bool) -> (Option<FirstParty>, bool) {
    let consent = &proxy.settings().consent;
    let s = signals::read(headers, None, &consent.names, &consent.keys, secure);
    // Only a cookie this proxy signed is a choice (and lends its consent id to the next one).
    let verified = s
        .first_party
        .and_then(Result::ok)
        .filter(|fp| fp.integrity.verified());
    (verified, s.gpc)
}

type Failure = (Refusal, &'static str);

/// `POST {prefix}consent`: check it comes from this site, read the bounded form, write the proof-of-consent
/// record, and only then set the cookie.
async fn consent_post(
    proxy: &Proxy,
    req: Request<Incoming>,
    ctx: &RequestContext,
) -> Result<Response<ResponseBody>, Failure> {
    let settings = proxy.settings();
    let headers = req.headers();
    check_post(
        headers,
        ctx,
        choice::MAX_BODY_BYTES,
        &PostMessages {
            cross_site: "Choices can only be sent from a page of this site.",
            no_origin: "Choices can only be sent from a page of this site (the request has no Origin header).",
            media_type: "Choices are sent as application/x-www-form-urlencoded.",
        },
    )
    .map_err(|r| (r, "refused"))?;
    let (previous, gpc) = current_choice(proxy, headers, ctx.scheme == "https");
    let accepts_json = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"));
    let body = read_body(proxy, req.into_body(), choice::MAX_BODY_BYTES)
        .await
        .map_err(|r| (r, "refused"))?;
    let chosen = choice::parse_form(&body).map_err(|e| {
        (
            Refusal::BadRequest(match e {
                ChoiceError::MissingChoice => "The form needs `choice` = accept, reject or custom.",
                ChoiceError::BadChoice => "`choice` must be accept, reject or custom.",
                ChoiceError::Malformed => "The form is not valid URL-encoded UTF-8.",
            }),
            "refused",
        )
    })?;
    let now = crate::classify::unix_now();
    let consent = &settings.consent;
    let (Some(key), Some(cookie)) = (
        consent.keys.current.as_ref(),
        choice::cookie_value(previous.as_ref(), &chosen, &consent.banner_version, now),
    ) else {
        return Err((
            Refusal::Unavailable("Your choice could not be recorded; nothing was changed."),
            "failed",
        ));
    };
    let geo = proxy.sources().firmographics.geo(ctx.client.addr);
    let record = Record::Consent(ConsentRecord {
        time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        consent_id: cookie.consent_id.clone(),
        action: chosen.action,
        choices: Choices {
            firmographic: chosen.firmographic,
            personal: chosen.personal,
        },
        banner_version: consent.banner_version.clone(),
        page: choice::page_of(&chosen.return_to).to_string(),
        jurisdiction: consent
            .policy
            .jurisdiction(geo.country.as_deref(), geo.subdivision.as_deref()),
        gpc,
        request_id: ctx.request_id.to_str().unwrap_or("-").to_string(),
    });
    // No record, no cookie: the choice takes effect only once it is durably recorded.
    if let Err(e) = proxy
        .audit
        .records
        .durable(crate::audit::gate::Kind::Other, &record)
        .await
    {
        tracing::error!(request_id = ctx.request_id.to_str().unwrap_or("-"), error = %e, "consent record not written; choice refused");
        return Err((
            Refusal::Unavailable(
                "Your choice could not be recorded; nothing was changed. Please try again later.",
            ),
            "failed",
        ));
    }
    proxy.metrics().consent_record("recorded");
    // Over HTTPS the cookie is `__Host-<name>` (host-only, Secure, Path=/: nothing else can set it).
    let set_cookie = if ctx.scheme == "https" {
        format!(
            "{}={}; Path=/; Max-Age={}; SameSite=Lax; Secure",
            consent.names.host_only_cookie(),
            cookie.encode(key),
            consent.policy.max_age_seconds,
        )
    } else {
        format!(
            "{}={}; Path=/; Max-Age={}; SameSite=Lax",
            consent.names.first_party_cookie,
            cookie.encode(key),
            consent.policy.max_age_seconds,
        )
    };
    let mut resp = if accepts_json {
        let body = serde_json::json!({
            "consentId": cookie.consent_id,
            "bannerVersion": cookie.banner_version,
            "firmographic": cookie.firmographic,
            "personal": cookie.personal,
        });
        let mut r = Response::new(ResponseBody::full(format!("{body}\n")));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    } else {
        let mut r = Response::new(ResponseBody::empty());
        *r.status_mut() = StatusCode::SEE_OTHER;
        if let Ok(v) = HeaderValue::from_str(&chosen.return_to) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&set_cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Escape text for HTML text and quoted attribute values.
/// One of the proxy's own HTML pages (choices, why, refusals): UTF-8, never stored.
pub(super) fn html_page(body: String) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(super) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    crate::rules::template::escape_attr(s, &mut out);
    out
}

/// `GET {prefix}consent`: the choices page (no script needed), reachable from the banner and from any page
/// that links to it, so a visitor can change their choices later.
fn consent_page(
    proxy: &Proxy,
    req: &Request<Incoming>,
    ctx: &RequestContext,
) -> Response<ResponseBody> {
    let settings = proxy.settings();
    let prefix = &settings.proxy.reserved_prefix;
    let return_to = signals::query_param(req.uri().query(), "return")
        .and_then(choice::return_param)
        .unwrap_or_else(|| "/".to_string());
    let (previous, gpc) = current_choice(proxy, req.headers(), ctx.scheme == "https");
    let checked = |b: bool| if b { " checked" } else { "" };
    let status = match &previous {
        Some(p) => format!(
            "Your current choices: your organization — <strong>{}</strong>; you personally — <strong>{}</strong> \
             (consent id <code>{}</code>).",
            if p.firmographic { "allowed" } else { "not allowed" },
            if p.personal { "allowed" } else { "not allowed" },
            escape_html(&p.consent_id)
        ),
        None => "You have not made a choice on this site yet.".to_string(),
    };
    let gpc_note = if gpc {
        "<p class=\"cc-status\">Your browser sends a Global Privacy Control signal. We honour it: whatever you choose \
         here, we do not look up your organization or remember you while it is on.</p>"
    } else {
        ""
    };
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Your privacy choices</title><link rel=\"stylesheet\" href=\"{prefix}consent.css\"></head>\n\
         <body><main class=\"cc-page\"><h1>Your privacy choices</h1>\
         <p>This site can tailor what it shows. Some of that uses no personal data at all; the rest only happens if \
         you agree, and you can change your mind here at any time.</p>\
         <p class=\"cc-status\">{status}</p>{gpc_note}\
         <form method=\"post\" action=\"{prefix}consent\">\
         <input type=\"hidden\" name=\"return\" value=\"{ret}\">\
         <fieldset class=\"cc-details\"><legend>Choose what we may use</legend>\
         <p class=\"cc-tier-text\">Always on: the page you are on, the campaign link you followed and your country. \
         None of this identifies you.</p>\
         <div class=\"cc-tier\"><input type=\"checkbox\" id=\"cc-f\" name=\"firmographic\" value=\"on\" aria-describedby=\"cc-f-text\"{f}>\
         <label for=\"cc-f\">Your organization</label>\
         <p id=\"cc-f-text\" class=\"cc-tier-text\">We may look up which company your network belongs to, to show content \
         for your industry or company.</p></div>\
         <div class=\"cc-tier\"><input type=\"checkbox\" id=\"cc-p\" name=\"personal\" value=\"on\" aria-describedby=\"cc-p-text\"{p}>\
         <label for=\"cc-p\">You personally</label>\
         <p id=\"cc-p-text\" class=\"cc-tier-text\">We may remember you across visits to tailor what you see.</p></div>\
         </fieldset>\
         <div class=\"cc-actions\">\
         <button type=\"submit\" name=\"choice\" value=\"accept\" class=\"cc-button\">Accept all</button>\
         <button type=\"submit\" name=\"choice\" value=\"reject\" class=\"cc-button\">Reject all</button>\
         <button type=\"submit\" name=\"choice\" value=\"custom\" class=\"cc-button\">Save my choices</button>\
         </div></form>\
         <p><a href=\"{prefix}why?page={why}\">Why am I seeing this?</a> · <a href=\"{ret}\">Back to the site</a></p>\
         </main></body></html>\n",
        prefix = escape_html(prefix),
        ret = escape_html(&return_to),
        why = escape_html(&crate::feedback::encode_component(choice::page_of(&return_to))),
        f = checked(previous.as_ref().is_some_and(|p| p.firmographic)),
        p = checked(previous.as_ref().is_some_and(|p| p.personal)),
    );
    html_page(page)
}
