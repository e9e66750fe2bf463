//! The forward phase: the request head rewritten for the origin (hop-by-hop headers, forwarding headers, Host,
//! request id, Accept-Encoding for a page we may rewrite), the body streamed, the response head awaited
//! within `timeouts.upstream_response` counted from the end of the request body.

use http::header::{self, HeaderValue};
use http::{Request, Response, Version};
use http_body::Body as _;
use hyper::body::Incoming;

use super::body::{ResponseBody, Source};
use super::error::Refusal;
use super::upstream::{self, Lease, RequestBody};
use super::{headers, ConnInfo, Proxy, RequestContext};
use crate::config::HostHeader;
use crate::metrics::UpstreamErrorKind;

/// What the forward phase hands to the response head phase.
pub(super) struct Forwarded {
    pub(super) resp: Response<Source>,
    /// The origin connection (none for an answer from the origin-response cache).
    pub(super) lease: Option<Lease>,
    /// The origin-response cache collects this body.
    pub(super) store: Option<super::cache::Store>,
    /// The client's side of the upgrade it asked for, if it did.
    pub(super) client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// How a rewritten page is compressed for this client.
    pub(super) client_coding: Option<crate::rewrite::codec::Coding>,
}

impl Proxy {
    /// Forward phase: rewrite the head for the origin, send, wait (bounded) for the response head. `rewriting`:
    /// the page may be rewritten, so it must arrive in a coding we can decode. `Err`: answered now (the origin
    /// failed or timed out, the client's body was malformed).
    pub(super) async fn forward_phase(
        &self,
        mut req: Request<Incoming>,
        ctx: &RequestContext,
        conn: &ConnInfo,
        rewriting: bool,
    ) -> Result<Forwarded, Response<ResponseBody>> {
        let settings = &self.settings;
        let upgrade = headers::is_upgrade_request(req.version(), req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        parts.uri = match self.upstream.target_for(parts.uri.path_and_query()) {
            Ok(target) => http::Uri::from(target),
            Err(_) => {
                return Err(Refusal::BadRequest("The request target is malformed.")
                    .response(&ctx.request_id))
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
        let client_coding = rewriting
            .then(|| {
                crate::rewrite::codec::Coding::negotiate(
                    h.get_all(header::ACCEPT_ENCODING)
                        .iter()
                        .filter_map(|v| v.to_str().ok()),
                )
            })
            .flatten();
        if rewriting {
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

        // The origin-response cache: a fresh stored answer needs no origin round trip.
        let has_body = !body.is_end_stream();
        let cache_key = match &self.cache {
            Some(cache) => match cache.key_for(&parts, has_body) {
                Ok(key) => {
                    if let Some((head, bytes)) = cache.lookup(&key, &parts) {
                        return Ok(Forwarded {
                            resp: Response::from_parts(head, Source::Cached(Some(bytes))),
                            lease: None,
                            store: None,
                            client_upgrade,
                            client_coding,
                        });
                    }
                    // Kept to judge the origin's answer by the request it answered.
                    Some((key, super::cache::request_head(&parts)))
                }
                Err(_) => {
                    cache.bypassed();
                    None
                }
            },
            None => None,
        };

        // The response timeout counts from the end of the request body: a slow upload is the client's time.
        let (body_done, body_finished) = tokio::sync::oneshot::channel();
        let mut body = RequestBody::new(body, body_done);
        // Not for `Expect: 100-continue`: reading the body would answer 100 for the origin, which may refuse.
        let expects_continue = parts
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !expects_continue {
            if let upstream::Ahead::Malformed(e) =
                body.read_ahead(settings.timeouts.client_header).await
            {
                return Err(self.client_body_refused(ctx, &e));
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
        let (resp, lease) = match result {
            Some(Ok(pair)) => pair,
            Some(Err(_)) if client_failed.load(std::sync::atomic::Ordering::Relaxed) => {
                // The client broke its own body mid-way (the origin saw an unfinished body and a closed
                // connection, never a complete request): the client's fault, not the origin's.
                return Err(self.client_body_refused(ctx, &"malformed or interrupted request body"));
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
                return Err(refusal.response(&ctx.request_id));
            }
            None => {
                self.metrics
                    .upstream_error(UpstreamErrorKind::response_timeout);
                tracing::warn!(
                    request_id = ctx.request_id.to_str().unwrap_or("-"),
                    ?timeout,
                    "origin did not send a response head in time"
                );
                return Err(Refusal::GatewayTimeout.response(&ctx.request_id));
            }
        };
        let (head, body) = resp.into_parts();
        let store = match (&self.cache, cache_key) {
            (Some(cache), Some((key, req))) => cache.storable(key, &req, &head),
            _ => None,
        };
        Ok(Forwarded {
            resp: Response::from_parts(head, Source::Live(body)),
            lease: Some(lease),
            store,
            client_upgrade,
            client_coding,
        })
    }

    /// A request whose body the client sent malformed: 400, counted as a client error, never an upstream one.
    pub(super) fn client_body_refused(
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
}
