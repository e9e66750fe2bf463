//! The accept phase: refuse what must not reach the origin (smuggling, malformed hosts, oversized heads),
//! redirect to HTTPS, or route to the proxy's own endpoints.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, Version};
use hyper::body::Incoming;

use super::body::ResponseBody;
use super::error::{self, Refusal};
use super::{endpoints, ConnInfo, Proxy, RequestContext, Step};

impl Proxy {
    /// Accept phase: refuse what must not reach the origin, redirect, or answer the proxy's own endpoints.
    pub(super) fn accept_phase(
        &self,
        req: &Request<Incoming>,
        ctx: &RequestContext,
        conn: &ConnInfo,
    ) -> Step {
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
}
