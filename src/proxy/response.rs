//! The response head phase: tunnel an upgrade, clean the head, pass the decision record through the record gate
//! and set up the rewrite — or leave the origin's page untouched.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::{self, ResponseBody};
use super::decide::Considered;
use super::error::Refusal;
use super::forward::Forwarded;
use super::{headers, ConnInfo, Proxy, RequestContext};
use crate::metrics::UpstreamErrorKind;

/// lol_html's buffer limit per response (a start tag or text run split across chunks is buffered whole).
const REWRITE_MEMORY: usize = 1024 * 1024;

impl Proxy {
    /// Response head phase: an upgrade becomes a tunnel; the head is cleaned for the client; a planned page's
    /// decision record goes through the record gate, and only a page whose record was accepted (and, by default,
    /// is durable before its first personalized byte) is rewritten.
    pub(super) fn response_head_phase(
        &self,
        forwarded: Forwarded,
        ctx: &RequestContext,
        conn: &ConnInfo,
        considered: Option<Considered>,
    ) -> Response<ResponseBody> {
        let settings = &self.settings;
        let timeout = settings.timeouts.upstream_response;
        let Forwarded {
            mut resp,
            lease,
            store,
            client_upgrade,
            client_coding,
        } = forwarded;
        let (ops, record, exposures, set_cookie) = match considered {
            Some(c) => (
                c.ops,
                c.record.map(|r| (r, c.applied)),
                c.exposures,
                c.set_cookie,
            ),
            None => (None, None, Vec::new(), None),
        };
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            let Some(client_upgrade) = client_upgrade else {
                self.metrics.upstream_error(UpstreamErrorKind::other);
                tracing::warn!(
                    request_id = ctx.request_id.to_str().unwrap_or("-"),
                    "origin switched protocols without an upgrade request"
                );
                return Refusal::BadGateway.response(&ctx.request_id);
            };
            let origin_upgrade = hyper::upgrade::on(&mut resp);
            super::tunnel::tunnel(
                client_upgrade,
                origin_upgrade,
                ctx.request_id.clone(),
                conn.lifecycle.clone(),
                self.metrics.clone(),
            );
        }
        let (mut parts, body) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, switching);
        self.via.append(&mut parts.headers, parts.version);
        if let Some(v) = set_cookie {
            // The visitor-id cookie of a `unit = "visitor"` experiment: a response that sets an identifier is
            // never storable by a shared cache.
            parts.headers.append(header::SET_COOKIE, v);
            parts.headers.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-store"),
            );
        }
        // An upgraded connection belongs to the tunnel now; it never goes back to the pool.
        let lease = lease.filter(|_| !switching);
        let mut rewrite = None;
        let rewritable = ops.as_ref().map(|_| self.rewritable(&parts));
        if !exposures.is_empty() {
            // Treated and control alike: an exposure wherever the page is one the rules could change (a 200
            // HTML page we can read), whether or not its arm changes it.
            let changeable = match &rewritable {
                Some(r) => r.is_ok(),
                None => self.rewritable(&parts).is_ok(),
            };
            if changeable {
                for e in exposures {
                    let record = crate::experiments::records::Record::Exposure(e);
                    if let Ok(t) = self.audit.records.submit(
                        crate::audit::gate::Kind::Exposure,
                        &record,
                        false,
                    ) {
                        t.accepted();
                    }
                }
            }
        }
        // No audit record, no personalization — also across a crash. The record of what is about to happen is
        // queued now; with `audit.wait = "durable"` (the default) the head goes out at once but no personalized
        // byte leaves before the group commit holding the record is on disk (the body waits on `gate`); with
        // "accepted", once it is queued.
        let mut audited = false;
        let mut gate: Option<body::Gate> = None;
        if let Some((mut r, applied)) = record {
            let personalize = matches!(rewritable, Some(Ok(_)));
            if personalize {
                // Rewritten: with the rules' changes, or only to add the consent banner.
                r.outcome = if applied.is_empty() {
                    "banner"
                } else {
                    "personalized"
                };
                r.rules = applied;
            }
            let record = crate::audit::Record::Decision(Box::new(r));
            let wait = personalize && self.audit.wait_durable;
            // The gate counts the outcome (accepted / refused_*) and says whether we may act on the record.
            match self
                .audit
                .records
                .submit(crate::audit::gate::Kind::Decision, &record, wait)
            {
                Ok(ticket) => {
                    audited = true;
                    if wait {
                        let metrics = self.metrics.clone();
                        gate = Some(Box::pin(async move {
                            let on_disk = ticket.on_disk().await.is_ok();
                            metrics.rewrite(if on_disk {
                                "rewritten"
                            } else {
                                "skipped_audit"
                            });
                            on_disk
                        }));
                    } else {
                        ticket.accepted();
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        request_id = ctx.request_id.to_str().unwrap_or("-"),
                        error = %e,
                        "decision record not accepted; the page goes out unpersonalized"
                    );
                }
            }
        }
        if let (Some(ops), Some(rewritable)) = (ops, rewritable) {
            let rewritable = if audited {
                rewritable
            } else {
                Err("skipped_audit")
            };
            match rewritable {
                Ok((encoding, origin_coding)) => {
                    // A personalized page is never storable by a shared cache, and the origin's validators
                    // and length no longer describe it.
                    let h = &mut parts.headers;
                    h.remove(header::CONTENT_LENGTH);
                    h.remove(header::ETAG);
                    h.remove(header::LAST_MODIFIED);
                    h.insert(
                        header::CACHE_CONTROL,
                        HeaderValue::from_static("private, no-store"),
                    );
                    if !vary_names(h, "accept-encoding") {
                        h.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
                    }
                    h.remove(header::CONTENT_ENCODING);
                    let limits = crate::rewrite::codec::DecodeLimits {
                        max_output: settings.limits.max_decoded_body,
                        max_ratio: settings.limits.max_decode_ratio,
                    };
                    let decoder = origin_coding
                        .and_then(|c| crate::rewrite::codec::Decoder::new(c, limits).ok());
                    let encoder = client_coding.and_then(|c| {
                        let e = crate::rewrite::codec::Encoder::new(c).ok()?;
                        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c.name()));
                        Some(e)
                    });
                    if gate.is_none() {
                        self.metrics.rewrite("rewritten");
                    }
                    let mut r = body::Rewrite::new(
                        decoder,
                        crate::rewrite::Rewriter::new(ops, encoding, REWRITE_MEMORY),
                        encoder,
                        self.metrics.clone(),
                    );
                    if let Some(g) = gate.take() {
                        r.set_gate(g);
                    }
                    rewrite = Some(r);
                }
                Err(why) => self.metrics.rewrite(why),
            }
        }
        if let Some(g) = gate {
            // Recorded but not rewritten after all: nothing waits on the record; count how it ends.
            tokio::spawn(g);
        }
        let mut out = ResponseBody::upstream(body, timeout, lease);
        if let Some(s) = store {
            out.set_store(s);
        }
        if let Some(r) = rewrite {
            out.set_rewrite(r);
        }
        Response::from_parts(parts, out)
    }

    /// Whether this response can be rewritten, and if so with which declared charset; else why not.
    pub(super) fn rewritable(
        &self,
        parts: &http::response::Parts,
    ) -> Result<
        (
            Option<&'static encoding_rs::Encoding>,
            Option<crate::rewrite::codec::Origin>,
        ),
        &'static str,
    > {
        crate::rewrite::rewritable(parts.status.as_u16(), &parts.headers)
    }
}

/// Whether a `Vary` header already names `name` (or `*`).
fn vary_names(h: &http::HeaderMap, name: &str) -> bool {
    h.get_all(header::VARY).iter().any(|v| {
        v.to_str().unwrap_or("").split(',').any(|n| {
            let n = n.trim();
            n == "*" || n.eq_ignore_ascii_case(name)
        })
    })
}
