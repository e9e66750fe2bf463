//! `POST {prefix}feedback`: what the feedback widget reports (prompt shown, answer, dismissal) becomes a record
//! on the `feedback` stream — after the same checks as the consent endpoint (same-origin, form type, size, rate).
//! The answer is acknowledged only once its record is written.

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::form::{check_post, read_body, PostMessages};
use crate::feedback::{self, Event, FeedbackRecord};
use crate::proxy::body::ResponseBody;
use crate::proxy::error::Refusal;
use crate::proxy::{Proxy, RequestContext};

/// A refusal, the event it concerned (metric label) and the result label.
pub type Failure = (Refusal, &'static str, &'static str);

pub async fn post(
    proxy: &Proxy,
    req: Request<Incoming>,
    ctx: &RequestContext,
) -> Result<(Response<ResponseBody>, &'static str), Failure> {
    let refused = |r: Refusal| (r, "unknown", "refused");
    check_post(
        req.headers(),
        ctx,
        feedback::MAX_BODY_BYTES,
        &PostMessages {
            cross_site: "Feedback can only be sent from a page of this site.",
            no_origin: "Feedback can only be sent from a page of this site (the request has no Origin header).",
            media_type: "Feedback is sent as application/x-www-form-urlencoded.",
        },
    )
    .map_err(refused)?;
    let (parts, body) = req.into_parts();
    let body = read_body(proxy, body, feedback::MAX_BODY_BYTES)
        .await
        .map_err(refused)?;
    let submission =
        feedback::parse(&body).map_err(|e| refused(Refusal::BadRequest(e.message())))?;
    let event = submission.event.kind();
    let refused = |r: Refusal| (r, event, "refused");
    // One generation of rules and tables for the whole request.
    let sources = proxy.sources();
    // Only prompts the rule set has: nobody can fill the report with rules that do not exist.
    {
        let rules = &sources.rules;
        let prompt = rules
            .personalizations
            .iter()
            .find(|p| p.id == submission.rule)
            .and_then(|p| p.feedback.as_ref())
            .ok_or_else(|| {
                refused(Refusal::BadRequest(
                    "No rule with a feedback prompt has that id.",
                ))
            })?;
        if !prompt.comment
            && matches!(
                submission.event,
                Event::Answer {
                    comment: Some(_),
                    ..
                } | Event::Comment { .. }
            )
        {
            return Err(refused(Refusal::BadRequest(
                "This prompt does not take a comment.",
            )));
        }
    }
    // The account, only where this request's consent decision permits the company lookup.
    let mut view = crate::pipeline::RequestView {
        method: &parts.method,
        request_id: ctx.request_id.to_str().unwrap_or("-"),
        path: &submission.page,
        query: None,
        headers: &parts.headers,
        client: ctx.client.addr,
        secure: ctx.scheme == "https",
        now: crate::classify::unix_now(),
        visitor_id: None,
    };
    view.visitor_id = view.visitor_cookie();
    let c = crate::pipeline::classify(&view, &sources, proxy.settings());
    let account = match c.company {
        crate::classify::Lookup::Matched(m) => m.company.domain.clone(),
        _ => None,
    };
    let request_id = ctx.request_id.to_str().unwrap_or("-");
    let record = FeedbackRecord::new(submission, account);
    if let Err(e) = proxy
        .audit
        .feedback
        .durable(crate::audit::gate::Kind::Other, &record)
        .await
    {
        tracing::error!(request_id, error = %e, "feedback record not written");
        return Err((
            Refusal::Unavailable("Your feedback could not be recorded. Please try again later."),
            event,
            "failed",
        ));
    }
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((resp, event))
}
