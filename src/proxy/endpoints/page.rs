//! The proxy's own HTML pages: the response they share and the escaping their text gets.

use http::header::{self, HeaderValue};
use http::Response;

use crate::proxy::body::ResponseBody;

/// One of the proxy's own HTML pages (choices, why, refusals): UTF-8, never stored.
pub(crate) fn html_page(body: String) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Escape text for HTML text and quoted attribute values.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    crate::rules::template::escape_attr(s, &mut out);
    out
}
