//! The checks and the bounded read every visitor form post to the proxy goes through.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::consent::choice::{self, OriginError};
use crate::proxy::error::Refusal;
use crate::proxy::{Proxy, RequestContext};

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
