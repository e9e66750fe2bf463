//! The request body on its way to the origin: streamed, its end signalled (the response timeout starts
//! there), a malformed or interrupted client body told apart from an origin failure.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// The client's request body on its way to the origin. It reports when it is finished (or dropped), which is
/// when the wait for the origin's response starts to count: a long upload is not an origin timeout. It also
/// remembers whether the *client* broke it (malformed chunked framing, a reset), so that failure is answered as
/// the client's (400), not as an origin error.
pub struct RequestBody {
    /// `None`: no body (a request the proxy makes itself, the console's preview).
    inner: Option<Incoming>,
    /// A frame read ahead ([`RequestBody::read_ahead`]), yielded first.
    ahead: Option<Frame<Bytes>>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
    client_failed: Arc<std::sync::atomic::AtomicBool>,
}

/// How a body's first frame came out of [`RequestBody::read_ahead`].
pub enum Ahead {
    /// Read (or the body is empty or has not started within the wait): send the request.
    Ready,
    /// The client's body is malformed before a byte of it could be forwarded.
    Malformed(hyper::Error),
}

impl RequestBody {
    pub fn new(inner: Incoming, done: tokio::sync::oneshot::Sender<()>) -> RequestBody {
        RequestBody {
            inner: Some(inner),
            ahead: None,
            done: Some(done),
            client_failed: Arc::default(),
        }
    }

    /// No body at all, for a request the proxy makes itself.
    pub fn empty() -> RequestBody {
        RequestBody {
            inner: None,
            ahead: None,
            done: None,
            client_failed: Arc::default(),
        }
    }

    fn inner_ended(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    /// Whether the client's body failed (set while the body is read, also after it was handed to the origin
    /// connection).
    pub fn client_failed(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.client_failed.clone()
    }

    /// Read the first frame before the request goes to the origin (waiting at most `wait`), so a body that is
    /// malformed from its first bytes (a bad chunk size) is refused without the origin ever seeing half a
    /// request. A body that has not started within `wait` is forwarded as it comes.
    pub async fn read_ahead(&mut self, wait: Duration) -> Ahead {
        let Some(inner) = self.inner.as_mut() else {
            return Ahead::Ready;
        };
        if inner.is_end_stream() {
            return Ahead::Ready;
        }
        // At most a second: a body whose first byte waits for the response must not wait long.
        let wait = wait.min(Duration::from_secs(1));
        let first = std::future::poll_fn(|cx| Pin::new(&mut *inner).poll_frame(cx));
        match tokio::time::timeout(wait, first).await {
            Ok(Some(Ok(frame))) => {
                self.ahead = Some(frame);
                if self.inner_ended() {
                    self.done.take();
                }
                Ahead::Ready
            }
            Ok(Some(Err(e))) => {
                self.client_failed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.done.take();
                Ahead::Malformed(e)
            }
            Ok(None) => {
                self.done.take();
                Ahead::Ready
            }
            Err(_) => Ahead::Ready,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(frame) = self.ahead.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        let finished = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Err(_))) => {
                self.client_failed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                true
            }
            Poll::Ready(Some(Ok(_))) => self.inner_ended(),
            Poll::Pending => false,
        };
        if finished {
            // Dropping the sender is the signal.
            self.done.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_none() && self.inner_ended()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self
            .inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        let Some(n) = self
            .ahead
            .as_ref()
            .and_then(Frame::data_ref)
            .map(Bytes::len)
        else {
            return inner;
        };
        // The frame read ahead still counts: an exact length stays exact (the origin gets Content-Length).
        let n = n as u64;
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(n));
        }
        hint.set_lower(inner.lower().saturating_add(n));
        hint
    }
}
