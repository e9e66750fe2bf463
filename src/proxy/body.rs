//! Response bodies and the *record* phase.
//!
//! [`ResponseBody`] is what every response the proxy sends carries: the origin's streamed body or a small body of
//! our own. It holds the request's [`Recorder`], which writes the access-log line and the metrics exactly once,
//! when the body finished or was dropped (client gone, origin reset) — so the record phase runs on every exit.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode, Version};
use std::future::Future;

use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::metrics::Metrics;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The origin sent nothing for longer than the upstream response timeout while streaming a body.
#[derive(Debug, thiserror::Error)]
#[error("origin sent no body data for {0:?}")]
pub struct BodyStalled(pub Duration);

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Upstream {
        body: Incoming,
        /// Longest wait for the next frame.
        stall: Duration,
        timer: Option<Pin<Box<Sleep>>>,
        /// A frame arrived since the timer was armed.
        progressed: bool,
    },
}

/// The body of every response the proxy sends.
pub struct ResponseBody {
    kind: Kind,
    recorder: Option<Recorder>,
}

impl ResponseBody {
    pub fn empty() -> Self {
        ResponseBody {
            kind: Kind::Empty,
            recorder: None,
        }
    }

    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Full(Some(bytes.into())),
            recorder: None,
        }
    }

    /// The origin's body, failing if it stalls for longer than `stall` between frames.
    pub fn upstream(body: Incoming, stall: Duration) -> Self {
        ResponseBody {
            kind: Kind::Upstream {
                body,
                stall,
                timer: None,
                progressed: false,
            },
            recorder: None,
        }
    }

    pub(crate) fn set_recorder(&mut self, recorder: Recorder) {
        self.recorder = Some(recorder);
    }

    fn count(&mut self, n: usize) {
        if let Some(r) = &mut self.recorder {
            r.bytes += n as u64;
        }
    }

    fn finished(&mut self) {
        if let Some(mut r) = self.recorder.take() {
            r.completed = true;
            drop(r);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = match &mut this.kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream {
                body,
                stall,
                timer,
                progressed,
            } => match Pin::new(body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    *progressed = true;
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => {
                    let deadline = tokio::time::Instant::now() + *stall;
                    match timer {
                        None => *timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
                        Some(t) if *progressed => t.as_mut().reset(deadline),
                        Some(_) => {}
                    }
                    *progressed = false;
                    match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                        Some(Poll::Ready(())) => Poll::Ready(Some(Err(BodyStalled(*stall).into()))),
                        _ => Poll::Pending,
                    }
                }
            },
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, Bytes::len);
                this.count(n);
                if this.is_end_stream() {
                    this.finished();
                }
            }
            Poll::Ready(None) => this.finished(),
            Poll::Ready(Some(Err(e))) => {
                tracing::warn!(error = %e, "response body aborted");
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(b) => b.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}

/// What the record phase writes for one request. Dropping it writes the access-log line and the metrics.
pub(crate) struct Recorder {
    pub metrics: Arc<Metrics>,
    pub access_log: bool,
    pub request_id: http::HeaderValue,
    pub client: std::net::IpAddr,
    pub method: Method,
    pub host: Option<String>,
    pub path: String,
    pub version: Version,
    pub status: StatusCode,
    pub start: Instant,
    pub bytes: u64,
    pub completed: bool,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        // A response with no body (HEAD, 204, 304) that hyper never polled still counts as complete.
        self.metrics
            .record_request(self.status.as_u16(), elapsed.as_secs_f64(), self.completed);
        if self.access_log {
            tracing::info!(
                target: "concierge::access",
                request_id = self.request_id.to_str().unwrap_or("-"),
                client = %self.client,
                method = %self.method,
                host = self.host.as_deref().unwrap_or("-"),
                path = %self.path,
                version = ?self.version,
                status = self.status.as_u16(),
                bytes = self.bytes,
                duration_ms = (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
                completed = self.completed,
            );
        }
    }
}
