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

use super::upstream::Lease;
use crate::metrics::Metrics;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The origin sent nothing for longer than the upstream response timeout while streaming a body.
#[derive(Debug, thiserror::Error)]
#[error("origin sent no body data for {0:?}")]
pub struct BodyStalled(pub Duration);

/// Where an origin response's body comes from: the origin connection, or the origin-response cache.
pub enum Source {
    Live(Incoming),
    Cached(Option<Bytes>),
}

impl Body for Source {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Source::Live(body) => Pin::new(body).poll_frame(cx),
            Source::Cached(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Source::Live(body) => body.is_end_stream(),
            Source::Cached(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Source::Live(body) => body.size_hint(),
            Source::Cached(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Upstream {
        body: Source,
        /// Longest wait for the next frame.
        stall: Duration,
        /// Armed at the first wait; when it fires, re-armed if a frame arrived meanwhile, else the body
        /// fails. A stall is so detected within one to two `stall` periods, with no clock read per frame.
        timer: Option<Pin<Box<Sleep>>>,
        /// A frame arrived since the timer was armed.
        progressed: bool,
        /// The origin connection, returned to the pool when this body was read to the end.
        lease: Option<Lease>,
        /// Personalization: the body goes through this rewriter on its way out.
        rewrite: Option<Box<Rewrite>>,
        /// The origin-response cache collects this body (the origin's bytes, before any rewrite).
        store: Option<Box<super::cache::Store>>,
        /// The origin's body was read to its end (only then is it stored).
        source_done: bool,
    },
}

/// Resolves once the decision record of a page being personalized is on disk (`true`), or could not be made so
/// in time (`false`: the page then goes out as the origin sent it).
pub type Gate = Pin<Box<dyn Future<Output = bool> + Send>>;

/// A body being rewritten.
pub struct Rewrite {
    /// No personalized byte leaves before this resolves (`audit.wait = "durable"`).
    gate: Option<Gate>,
    /// The record could not be made durable: the origin's bytes pass through unchanged (decoded and encoded
    /// again, as the head already promised the client's coding).
    bypass: bool,
    /// Decodes the origin's compressed page first, when it is compressed.
    pub decoder: Option<crate::rewrite::codec::Decoder>,
    pub rewriter: crate::rewrite::Rewriter,
    /// Compresses the rewritten page for the client, when it accepts a coding.
    pub encoder: Option<crate::rewrite::codec::Encoder>,
    pub metrics: Arc<Metrics>,
    /// The origin's body ended and the rewriter's tail was sent.
    ended: bool,
}

impl Rewrite {
    pub fn new(
        decoder: Option<crate::rewrite::codec::Decoder>,
        rewriter: crate::rewrite::Rewriter,
        encoder: Option<crate::rewrite::codec::Encoder>,
        metrics: Arc<Metrics>,
    ) -> Rewrite {
        Rewrite {
            gate: None,
            bypass: false,
            decoder,
            rewriter,
            encoder,
            metrics,
            ended: false,
        }
    }

    /// Hold the body until `gate` resolves; pass it through unchanged if it resolves `false`.
    pub fn set_gate(&mut self, gate: Gate) {
        self.gate = Some(gate);
    }

    /// Ready once the gate (if any) let the body go, either way.
    fn poll_gate(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(g) = self.gate.as_mut() else {
            return Poll::Ready(());
        };
        match g.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(on_disk) => {
                self.gate = None;
                if !on_disk {
                    self.bypass = true;
                    tracing::warn!(
                        "decision record not on disk in time; the page goes out unpersonalized"
                    );
                }
                Poll::Ready(())
            }
        }
    }

    /// Rewritten bytes → what goes to the client (compressed when negotiated).
    fn encode(&mut self, out: Bytes, last: bool) -> Result<Bytes, BoxError> {
        let Some(e) = self.encoder.as_mut() else {
            return Ok(out);
        };
        let mut v = if out.is_empty() {
            Vec::new()
        } else {
            e.write(&out)?
        };
        if last {
            v.extend(e.finish()?);
        }
        Ok(Bytes::from(v))
    }

    /// The origin's bytes → rewritten bytes for the client. A decoding failure (malformed stream, or a
    /// decompression bomb cut off) ends the body with an error: the headers already promised another coding,
    /// so the original bytes cannot be passed on.
    fn process(&mut self, data: &[u8], last: bool) -> Result<Bytes, BoxError> {
        let decoded = match self.decoder.as_mut() {
            Some(d) => {
                let r = d.write(data).and_then(|mut v| {
                    if last {
                        v.extend(d.finish()?);
                    }
                    Ok(v)
                });
                match r {
                    Ok(v) => Some(v),
                    Err(e) => {
                        self.metrics.rewrite("decode_failed");
                        tracing::warn!(error = %e, "compressed origin page could not be decoded; response cut off");
                        return Err(e.into());
                    }
                }
            }
            None => None,
        };
        let input = decoded.as_deref().unwrap_or(data);
        if self.bypass {
            return self.encode(Bytes::copy_from_slice(input), last);
        }
        let (mut out, error) = if input.is_empty() {
            (Bytes::new(), None)
        } else {
            self.rewriter.write(input)
        };
        self.report(error);
        if last {
            let (tail, error) = self.rewriter.end();
            self.report(error);
            if !tail.is_empty() {
                out = if out.is_empty() {
                    tail
                } else {
                    let mut v = Vec::with_capacity(out.len() + tail.len());
                    v.extend_from_slice(&out);
                    v.extend_from_slice(&tail);
                    Bytes::from(v)
                };
            }
        }
        self.encode(out, last)
    }

    fn report(&self, error: Option<String>) {
        if let Some(e) = error {
            self.metrics.rewrite("bailed_out");
            tracing::warn!(error = %e, "rewriting gave up; the rest of the page passes through unchanged");
        }
    }
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

    /// The origin's body, failing if it stalls for longer than `stall` between frames. `lease` goes back to the
    /// pool once the body has been read to the end (at once for bodiless responses).
    pub fn upstream(body: Source, stall: Duration, lease: Option<Lease>) -> Self {
        let lease = match lease {
            Some(l) if body.is_end_stream() => {
                l.release();
                None
            }
            other => other,
        };
        ResponseBody {
            kind: Kind::Upstream {
                body,
                stall,
                timer: None,
                progressed: false,
                lease,
                rewrite: None,
                store: None,
                source_done: false,
            },
            recorder: None,
        }
    }

    /// Let the origin-response cache collect the origin's body (before any frame was polled).
    pub(crate) fn set_store(&mut self, s: super::cache::Store) {
        if let Kind::Upstream { store, .. } = &mut self.kind {
            *store = Some(Box::new(s));
        }
    }

    /// Send the origin's body through `rewrite` (before any frame was polled).
    pub fn set_rewrite(&mut self, r: Rewrite) {
        if let Kind::Upstream { rewrite, .. } = &mut self.kind {
            *rewrite = Some(Box::new(r));
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

    /// The body was sent whole.
    fn finished(&mut self) {
        if let Kind::Upstream {
            lease,
            store,
            source_done,
            ..
        } = &mut self.kind
        {
            if let Some(l) = lease.take() {
                l.release();
            }
            // Stored only when the origin's body came to its end (not when a rewrite error ended ours).
            if let Some(s) = store.take().filter(|_| *source_done) {
                s.finish();
            }
        }
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
                rewrite,
                store,
                source_done,
                ..
            } => loop {
                if let Some(r) = rewrite.as_mut() {
                    if r.ended {
                        break Poll::Ready(None);
                    }
                    // Nothing of a personalized page leaves before its record is on disk.
                    if r.poll_gate(cx).is_pending() {
                        break Poll::Pending;
                    }
                }
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        *progressed = true;
                        if let Some(s) = store.as_mut() {
                            // Trailers, or a body past the entry bound: nothing is stored.
                            let kept = frame.data_ref().is_some_and(|d| s.push(d));
                            if !kept {
                                *store = None;
                            }
                        }
                        *source_done = body.is_end_stream();
                        let Some(r) = rewrite.as_mut() else {
                            break Poll::Ready(Some(Ok(frame)));
                        };
                        match frame.into_data() {
                            Ok(data) => match r.process(&data, false) {
                                Ok(b) if b.is_empty() => continue,
                                Ok(b) => break Poll::Ready(Some(Ok(Frame::data(b)))),
                                Err(e) => {
                                    r.ended = true;
                                    break Poll::Ready(Some(Err(e)));
                                }
                            },
                            // Trailers pass as they are.
                            Err(frame) => break Poll::Ready(Some(Ok(frame))),
                        }
                    }
                    Poll::Ready(Some(Err(e))) => break Poll::Ready(Some(Err(e.into()))),
                    Poll::Ready(None) => match rewrite.as_mut() {
                        Some(r) => {
                            r.ended = true;
                            match r.process(&[], true) {
                                Ok(b) if b.is_empty() => break Poll::Ready(None),
                                Ok(b) => break Poll::Ready(Some(Ok(Frame::data(b)))),
                                Err(e) => break Poll::Ready(Some(Err(e))),
                            }
                        }
                        None => break Poll::Ready(None),
                    },
                    Poll::Pending => {
                        let timer =
                            timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(*stall)));
                        break loop {
                            match timer.as_mut().poll(cx) {
                                Poll::Pending => break Poll::Pending,
                                Poll::Ready(()) if *progressed => {
                                    *progressed = false;
                                    timer.as_mut().reset(tokio::time::Instant::now() + *stall);
                                }
                                Poll::Ready(()) => {
                                    break Poll::Ready(Some(Err(BodyStalled(*stall).into())))
                                }
                            }
                        };
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
            Kind::Upstream { body, rewrite, .. } => match rewrite {
                Some(r) => r.ended,
                None => body.is_end_stream(),
            },
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream {
                rewrite: Some(_), ..
            } => SizeHint::default(),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}

/// What the record phase writes for one request. Dropping it writes the access-log line and the metrics.
pub(crate) struct Recorder {
    pub metrics: Arc<Metrics>,
    pub access_log: Option<crate::accesslog::AccessLog>,
    pub request_id: http::HeaderValue,
    pub client: std::net::IpAddr,
    pub method: Method,
    pub host: Option<String>,
    /// Only kept when the access log is on.
    pub path: Option<String>,
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
        if let Some(log) = &self.access_log {
            log.line(&crate::accesslog::Entry {
                request_id: self.request_id.to_str().unwrap_or("-"),
                client: self.client,
                method: &self.method,
                host: self.host.as_deref(),
                path: self.path.as_deref(),
                version: self.version,
                status: self.status.as_u16(),
                bytes: self.bytes,
                duration_ms: (elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
                completed: self.completed,
            });
        }
    }
}
