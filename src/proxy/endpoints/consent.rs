//! `POST {prefix}consent` (a visitor's choice, recorded before the cookie is set) and `GET {prefix}consent`
//! (the choices page).

use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::form::{check_post, read_body, PostMessages};
use super::page::{escape_html, html_page};
use crate::audit::{Choices, ConsentRecord, Record};
use crate::consent::choice::{self, ChoiceError};
use crate::consent::signals::{self, FirstParty};
use crate::consent::texts::Key;
use crate::proxy::body::ResponseBody;
use crate::proxy::error::Refusal;
use crate::proxy::{Proxy, RequestContext};

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
pub(super) async fn post(
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
        language: chosen.language.filter(|l| consent.texts.knows(l)),
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
    proxy.metrics().consent_choice(chosen.action);
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

/// `GET {prefix}consent`: the choices page (no script needed), reachable from the banner and from any page
/// that links to it, so a visitor can change their choices later.
pub(super) fn page(
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
    // What applies to this visitor now, decided as for a page: the page tells the truth about it.
    let view = crate::pipeline::RequestView {
        method: req.method(),
        request_id: ctx.request_id.to_str().unwrap_or("-"),
        path: "/",
        query: None,
        headers: req.headers(),
        client: ctx.client.addr,
        secure: ctx.scheme == "https",
        now: crate::classify::unix_now(),
        visitor_id: None,
    };
    let decision = crate::pipeline::classify(&view, &proxy.sources(), settings).decision;
    let opt_out = decision.jurisdiction.regime == crate::consent::policy::Regime::OptOut
        && decision.jurisdiction.region != "unknown";
    let t = settings.consent.texts.negotiate(
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .map(|v| v.as_bytes()),
    );
    let text = |k: Key| escape_html(t.get(k));
    let strong = |s: &str| format!("<strong>{}</strong>", escape_html(s));
    let checked = |b: bool| if b { " checked" } else { "" };
    // The boxes show what applies now: the visitor's choice, else what the Decision permits.
    let shown = |tier, chosen: fn(&FirstParty) -> bool| {
        previous
            .as_ref()
            .map_or_else(|| decision.permits(tier), chosen)
    };
    let status = match &previous {
        Some(p) => {
            let said = |b: bool| strong(t.get(if b { Key::Allowed } else { Key::NotAllowed }));
            t.html(
                Key::PageCurrent,
                &[
                    ("firmographic", &said(p.firmographic)),
                    ("personal", &said(p.personal)),
                    (
                        "consent_id",
                        &format!("<code>{}</code>", escape_html(&p.consent_id)),
                    ),
                ],
            )
        }
        None if opt_out && decision.permits(crate::consent::policy::Tier::Firmographic) => {
            text(Key::PageNotObjected)
        }
        None => text(Key::PageNoChoice),
    };
    let intro = if opt_out {
        t.html(
            Key::PageIntroOptOut,
            &[(
                "region",
                &strong(&crate::places::region_in_words(
                    &decision.jurisdiction.region,
                )),
            )],
        )
    } else {
        text(Key::PageIntro)
    };
    let gpc_note = if gpc {
        format!("<p class=\"cc-status\">{}</p>", text(Key::PageGpc))
    } else {
        String::new()
    };
    let policy = settings
        .consent
        .texts
        .policy_url()
        .map(|u| {
            format!(
                " · <a href=\"{}\">{}</a>",
                escape_html(u),
                text(Key::Policy)
            )
        })
        .unwrap_or_default();
    let page = format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"{prefix}consent.css\"></head>\n\
         <body><main class=\"cc-page\"><h1>{title}</h1>\
         <p>{intro}</p>\
         <p class=\"cc-status\">{status}</p>{gpc_note}\
         <form method=\"post\" action=\"{prefix}consent\">\
         <input type=\"hidden\" name=\"return\" value=\"{ret}\">\
         <input type=\"hidden\" name=\"lang\" value=\"{lang}\">\
         <fieldset class=\"cc-details\"><legend>{legend}</legend>\
         <p class=\"cc-tier-text\">{always_on}</p>\
         <div class=\"cc-tier\"><input type=\"checkbox\" id=\"cc-f\" name=\"firmographic\" value=\"on\" aria-describedby=\"cc-f-text\"{f}>\
         <label for=\"cc-f\">{firmographic}</label>\
         <p id=\"cc-f-text\" class=\"cc-tier-text\">{firmographic_text}</p></div>\
         <div class=\"cc-tier\"><input type=\"checkbox\" id=\"cc-p\" name=\"personal\" value=\"on\" aria-describedby=\"cc-p-text\"{p}>\
         <label for=\"cc-p\">{personal}</label>\
         <p id=\"cc-p-text\" class=\"cc-tier-text\">{personal_text}</p></div>\
         </fieldset>\
         <div class=\"cc-actions\">\
         <button type=\"submit\" name=\"choice\" value=\"accept\" class=\"cc-button\">{accept}</button>\
         <button type=\"submit\" name=\"choice\" value=\"reject\" class=\"cc-button\">{reject}</button>\
         <button type=\"submit\" name=\"choice\" value=\"custom\" class=\"cc-button\">{save}</button>\
         </div></form>\
         <p><a href=\"{prefix}why?page={why}\">{why_text}</a>{policy} · <a href=\"{ret}\">{back}</a></p>\
         </main></body></html>\n",
        lang = escape_html(&t.lang),
        title = text(Key::Title),
        legend = text(Key::Legend),
        always_on = text(Key::AlwaysOn),
        firmographic = text(Key::Firmographic),
        firmographic_text = text(Key::FirmographicText),
        personal = text(Key::Personal),
        personal_text = text(Key::PersonalText),
        accept = text(Key::Accept),
        reject = text(Key::Reject),
        save = text(Key::Save),
        why_text = text(Key::Why),
        back = text(Key::Back),
        prefix = escape_html(prefix),
        ret = escape_html(&return_to),
        why = escape_html(&crate::feedback::encode_component(choice::page_of(&return_to))),
        f = checked(shown(crate::consent::policy::Tier::Firmographic, |p| p.firmographic)),
        p = checked(shown(crate::consent::policy::Tier::Personal, |p| p.personal)),
    );
    html_page(page)
}
