//! Every response the proxy makes up itself — errors, redirects, its own endpoints — in one place, so status
//! codes and pages stay consistent. Error pages are small, self-contained HTML that never echo client input
//! except the request id, which is validated to a safe alphabet before it is ever used.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::ResponseBody;

/// Why the proxy answered instead of the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The origin refused, reset or failed the connection.
    BadGateway,
    /// The origin did not answer in time.
    GatewayTimeout,
    /// The request is malformed in a way hyper lets through (ambiguous framing, bad Host).
    BadRequest(&'static str),
    UriTooLong,
    HeaderTooLarge,
    /// A path under the reserved prefix that no endpoint owns.
    NotFound,
    /// CONNECT: this is a reverse proxy, not a forward one.
    MethodNotAllowed,
    /// A proxy endpoint refused the request (e.g. a cross-site POST).
    Forbidden(&'static str),
    PayloadTooLarge,
    UnsupportedMediaType(&'static str),
    /// The proxy cannot do what was asked right now (e.g. a record could not be written).
    Unavailable(&'static str),
    /// The client posted to the proxy's endpoints too often; it may try again after this many seconds.
    TooManyRequests(u64),
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::BadGateway => StatusCode::BAD_GATEWAY,
            Refusal::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::UriTooLong => StatusCode::URI_TOO_LONG,
            Refusal::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn explanation(self) -> &'static str {
        match self {
            Refusal::BadGateway => "The site's server could not be reached or broke off the response. Please try again in a moment.",
            Refusal::GatewayTimeout => "The site's server took too long to answer. Please try again in a moment.",
            Refusal::BadRequest(why) => why,
            Refusal::UriTooLong => "The address is longer than this server accepts.",
            Refusal::HeaderTooLarge => "The request carries a header larger than this server accepts.",
            Refusal::NotFound => "There is nothing at this address.",
            Refusal::MethodNotAllowed => "This server does not accept that request method.",
            Refusal::Forbidden(why) | Refusal::UnsupportedMediaType(why) | Refusal::Unavailable(why) => why,
            Refusal::PayloadTooLarge => "The request body is larger than this endpoint accepts.",
            Refusal::TooManyRequests(_) => "Too many requests from your network in a short time. Please try again in a moment.",
        }
    }

    /// The response for this refusal; closes the connection for malformed requests.
    pub fn response(self, request_id: &HeaderValue) -> Response<ResponseBody> {
        let status = self.status();
        let title = format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error")
        );
        let page = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
             code{{color:#555}}</style></head>\n<body><h1>{title}</h1><p>{}</p>\
             <p><small>Request id: <code>{}</code></small></p></body></html>\n",
            self.explanation(),
            request_id.to_str().unwrap_or("-"),
        );
        let mut resp = super::endpoints::html_page(page);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        if let Refusal::TooManyRequests(seconds) = self {
            h.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if matches!(
            self,
            Refusal::BadRequest(_)
                | Refusal::HeaderTooLarge
                | Refusal::UriTooLong
                | Refusal::PayloadTooLarge
        ) {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// A permanent redirect (308 keeps the method and body).
pub fn redirect(location: HeaderValue) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(header::LOCATION, location);
    resp
}
