//! The origin's page fetched for the console's preview: one GET through the proxy's own upstream client (its
//! pool, TLS and timeouts), with no visitor's cookies, decoded and bounded.
//!
//! Invariants: at most [`MAX_PAGE`] decoded bytes are kept; the whole fetch is bounded by the upstream
//! response timeout; nothing is recorded or counted as a visitor's request.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request};
use http_body_util::BodyExt;

use super::upstream::RequestBody;
use super::Proxy;
use crate::config::HostHeader;

/// The most decoded bytes of a previewed page.
pub const MAX_PAGE: u64 = 4 * 1024 * 1024;

/// The origin's answer.
pub struct Fetched {
    pub status: u16,
    pub content_type: Option<String>,
    /// The body: decoded when the proxy would rewrite it, else as sent.
    pub body: Vec<u8>,
    /// Whether the proxy would rewrite this answer (`crate::rewrite::rewritable`): with which declared charset,
    /// or why not.
    pub rewritable: Result<Option<&'static encoding_rs::Encoding>, &'static str>,
}

impl Proxy {
    /// GET `target` (`/path?query`) from the origin as the preview's original page. `host`: the host of the
    /// URL the preview was asked for, used where the proxy would preserve the visitor's `Host`.
    pub async fn fetch_page(&self, target: &str, host: Option<&str>) -> Result<Fetched, String> {
        let budget = self.settings.timeouts.upstream_response + Duration::from_secs(1);
        tokio::time::timeout(budget, self.fetch_inner(target, host))
            .await
            .map_err(|_| format!("the origin did not answer within {}s", budget.as_secs()))?
    }

    async fn fetch_inner(&self, target: &str, host: Option<&str>) -> Result<Fetched, String> {
        let pq = target
            .parse::<http::uri::PathAndQuery>()
            .map_err(|_| format!("`{target}` is not a path"))?;
        let target = self
            .upstream
            .target_for(Some(&pq))
            .map_err(|e| e.to_string())?;
        let host = match &self.settings.upstream.host_header {
            HostHeader::Preserve => host
                .and_then(|h| HeaderValue::from_str(h).ok())
                .or_else(|| self.upstream_host.clone()),
            HostHeader::Upstream => self.upstream_host.clone(),
            HostHeader::Custom(v) => Some(v.clone()),
        };
        let mut req = Request::get(target.as_str())
            .header(header::ACCEPT, "text/html")
            .header(header::ACCEPT_ENCODING, "gzip, deflate, br, zstd")
            .header(header::USER_AGENT, "concierge-console-preview")
            .body(RequestBody::empty())
            .map_err(|e| e.to_string())?;
        if let Some(h) = host {
            req.headers_mut().insert(header::HOST, h);
        }
        let (resp, lease) = self
            .upstream
            .send(req)
            .await
            .map_err(|e| format!("the origin could not be reached: {e}"))?;
        let status = resp.status().as_u16();
        let head = resp.headers().clone();
        let content_type = head
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        // What the proxy would do with this answer: rewrite it (with this charset and coding), or pass it on.
        let verdict = crate::rewrite::rewritable(status, &head);
        let limits = crate::rewrite::codec::DecodeLimits {
            max_output: MAX_PAGE.min(self.settings.limits.max_decoded_body),
            max_ratio: self.settings.limits.max_decode_ratio,
        };
        let mut decoder = match verdict {
            Ok((_, Some(coding))) => Some(
                crate::rewrite::codec::Decoder::new(coding, limits).map_err(|e| e.to_string())?,
            ),
            _ => None,
        };
        let mut body = Vec::new();
        let mut stream = resp.into_body();
        let push = |body: &mut Vec<u8>, data: &[u8]| -> Result<(), String> {
            if body.len() as u64 + data.len() as u64 > limits.max_output {
                return Err(format!(
                    "the origin's page is larger than {} bytes",
                    limits.max_output
                ));
            }
            body.extend_from_slice(data);
            Ok(())
        };
        while let Some(frame) = stream.frame().await {
            let frame = frame.map_err(|e| format!("the origin's body broke off: {e}"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let data: Bytes = data;
            match decoder.as_mut() {
                None => push(&mut body, &data)?,
                Some(d) => {
                    let out = d.write(&data).map_err(|e| e.to_string())?;
                    push(&mut body, &out)?;
                }
            }
        }
        if let Some(d) = decoder.as_mut() {
            let out = d.finish().map_err(|e| e.to_string())?;
            push(&mut body, &out)?;
        }
        lease.release();
        Ok(Fetched {
            status,
            content_type,
            body,
            rewritable: verdict.map(|(charset, _)| charset),
        })
    }
}
