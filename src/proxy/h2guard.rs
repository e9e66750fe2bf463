//! HTTP/2 rapid reset (CVE-2023-44487) defence, at the bytes of the connection.
//!
//! A client that opens streams and resets them at once costs the proxy a request each (and the origin one, until
//! the cancellation reaches it) while never counting against `max_concurrent_streams`. h2 itself only limits
//! streams reset *before* the server accepted them; hyper accepts at once, so a client sending HEADERS and
//! RST_STREAM in turn was never stopped (12,032 streams in 8 s in one test). hyper does not let a server send a
//! GOAWAY with an error code of its choosing, so this wrapper sits between hyper and the socket (inside TLS):
//! it reads the client's frame headers as they pass (it never changes a byte), counts streams opened (HEADERS)
//! and streams reset (RST_STREAM) against a refilling budget ([`Budget`]: a burst of resets, or resets now and
//! then on a long-lived browser connection, never trip it; resets beyond it do, at once when they are half the
//! streams or more, after a second budget's worth when padded with other streams), and then lets hyper finish
//! the frame it is writing, writes `GOAWAY(ENHANCE_YOUR_CALM)` itself and ends the connection. Ending it drops every request still in flight on it, which cancels their origin requests.
//!
//! Invariants: bytes pass through unchanged and in order; the GOAWAY goes out only at a frame boundary of the
//! server's stream (never inside a frame hyper is writing); after it hyper gets an error at once (its streams
//! and their origin requests end), while the socket lingers a moment on its own — write side shut, the client's
//! remaining bytes read and dropped — so the kernel does not answer them with a reset that would destroy the
//! GOAWAY before the client read it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_GOAWAY: u8 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// When a connection's resets are too many: a bucket of `max_resets` resets, refilled at `max_resets` per
/// [`REFILL`]. Once it is empty, a client whose resets are half its streams or more is cut off at once; one that
/// pads its resets with other streams, after another `max_resets` resets beyond the empty bucket.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub max_resets: u64,
}

/// The time in which a bucket of resets refills.
const REFILL: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a tripped connection waits for hyper to finish the frame it is writing before it closes without the
/// GOAWAY (a client that stops reading can hold a frame half-written).
const BOUNDARY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads a byte stream as HTTP/2 frames, header by header (payloads skipped).
#[derive(Debug, Default)]
struct Frames {
    /// Bytes of the preface still to skip (client side only).
    preface: usize,
    /// Bytes of the current frame's payload still to pass.
    payload: usize,
    header: [u8; 9],
    have: usize,
}

impl Frames {
    /// Feed `bytes`; `on_header(type, stream id)` for each complete frame header.
    fn feed(&mut self, mut bytes: &[u8], mut on_header: impl FnMut(u8, u32)) {
        while !bytes.is_empty() {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
                continue;
            }
            if self.payload > 0 {
                let n = self.payload.min(bytes.len());
                self.payload -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                let h = self.header;
                self.payload = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                self.have = 0;
                on_header(h[3], stream);
            }
        }
    }

    /// Between two frames (no header or payload under way).
    fn at_boundary(&self) -> bool {
        self.preface == 0 && self.payload == 0 && self.have == 0
    }

    /// How many bytes may still be written before the next frame boundary (`None`: at one).
    fn to_boundary(&self) -> Option<usize> {
        if self.at_boundary() {
            None
        } else if self.have > 0 {
            // Inside a header: its rest; the payload length is not known yet, so only the header.
            Some(9 - self.have)
        } else {
            Some(self.payload)
        }
    }
}

enum State {
    Open,
    /// Too many resets: finish the frame being written, then send GOAWAY.
    Tripped,
    /// Writing the GOAWAY (from this offset).
    GoingAway(usize),
    /// GOAWAY sent: the connection is over.
    Done,
}

/// How long a cut-off connection lingers (write side shut, reads drained) before it is closed.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// An HTTP/2 server connection's IO with the reset budget enforced.
pub struct H2Guard<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    /// Taken only by `Drop`, to linger.
    inner: Option<T>,
    budget: Budget,
    incoming: Frames,
    outgoing: Frames,
    streams: u64,
    resets: u64,
    /// Resets left in the bucket, and when it was last refilled.
    tokens: f64,
    refilled: std::time::Instant,
    /// Resets that found the bucket empty.
    over: u64,
    /// Highest client stream id seen (the GOAWAY's last stream id).
    last_stream: u32,
    state: State,
    /// Tripped: how long hyper may take to reach a frame boundary.
    boundary_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    goaway: [u8; 17],
    on_trip: Option<Box<dyn FnOnce(u64, u64) + Send>>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> H2Guard<T> {
    /// Guard `inner`, whose first bytes are the client preface; `on_trip(streams, resets)` runs once when the
    /// budget is exceeded.
    pub fn new(inner: T, budget: Budget, on_trip: Box<dyn FnOnce(u64, u64) + Send>) -> H2Guard<T> {
        H2Guard {
            inner: Some(inner),
            budget,
            incoming: Frames {
                preface: PREFACE.len(),
                ..Frames::default()
            },
            outgoing: Frames::default(),
            streams: 0,
            resets: 0,
            tokens: budget.max_resets as f64,
            refilled: std::time::Instant::now(),
            over: 0,
            last_stream: 0,
            state: State::Open,
            boundary_deadline: None,
            goaway: [0; 17],
            on_trip: Some(on_trip),
        }
    }

    fn io(&mut self) -> Pin<&mut T> {
        Pin::new(self.inner.as_mut().expect("taken only on drop"))
    }

    fn count(&mut self, bytes: &[u8]) {
        let (mut streams, mut resets, mut last) = (self.streams, self.resets, self.last_stream);
        self.incoming.feed(bytes, |kind, stream| match kind {
            // A HEADERS frame on a new (odd, client-initiated) stream opens it; trailers reuse an id.
            FRAME_HEADERS if stream > last => {
                streams += 1;
                last = stream;
            }
            FRAME_RST_STREAM => resets += 1,
            _ => {}
        });
        let new_resets = resets - self.resets;
        self.streams = streams;
        self.resets = resets;
        self.last_stream = last;
        if new_resets > 0 {
            let cap = self.budget.max_resets as f64;
            let now = std::time::Instant::now();
            let refill =
                now.duration_since(self.refilled).as_secs_f64() / REFILL.as_secs_f64() * cap;
            self.tokens = (self.tokens + refill).min(cap);
            self.refilled = now;
            let spent = (new_resets as f64).min(self.tokens.floor());
            self.tokens -= spent;
            self.over += new_resets - spent as u64;
        }
        let rapid = self.over > 0 && self.resets * 2 >= self.streams;
        let padded = self.over >= self.budget.max_resets;
        if matches!(self.state, State::Open) && (rapid || padded) {
            self.state = State::Tripped;
            let mut g = [0u8; 17];
            g[2] = 8; // payload length
            g[3] = FRAME_GOAWAY;
            g[9..13].copy_from_slice(&self.last_stream.to_be_bytes());
            g[13..17].copy_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
            self.goaway = g;
            if let Some(f) = self.on_trip.take() {
                f(self.streams, self.resets);
            }
        }
    }
}

/// Why the guard ended a connection (the `io::Error` hyper reports carries it).
#[derive(Debug, thiserror::Error)]
#[error("HTTP/2 client reset too many streams (GOAWAY ENHANCE_YOUR_CALM sent)")]
pub struct RapidReset;

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, RapidReset)
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for H2Guard<T> {
    fn drop(&mut self) {
        if !matches!(self.state, State::Done) {
            return;
        }
        let (Some(mut io), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        rt.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = tokio::time::timeout(LINGER, async {
                let _ = io.shutdown().await;
                let mut sink = [0u8; 4096];
                while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        });
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> H2Guard<T> {
    /// Once tripped and at a frame boundary of the server's stream: write the GOAWAY. Ready(Ok) when it is out.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.state {
                State::Open => return Poll::Ready(Ok(())),
                State::Done => return Poll::Ready(Ok(())),
                State::Tripped if self.outgoing.at_boundary() => self.state = State::GoingAway(0),
                // hyper still has part of a frame to write; it goes first.
                State::Tripped => return Poll::Ready(Ok(())),
                State::GoingAway(at) => {
                    let goaway = self.goaway;
                    let n = match self.io().poll_write(cx, &goaway[at..]) {
                        Poll::Ready(Ok(n)) => n,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    };
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    if at + n >= self.goaway.len() {
                        self.state = State::Done;
                        // Best effort: push it out now; the connection ends either way.
                        let _ = self.io().poll_flush(cx);
                        return Poll::Ready(Ok(()));
                    }
                    self.state = State::GoingAway(at + n);
                }
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for H2Guard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !matches!(this.state, State::Open) {
            // Send the GOAWAY from here if hyper is not writing; then the connection is over.
            match this.poll_goaway(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if matches!(this.state, State::Done) => {
                    return Poll::Ready(Err(gone()))
                }
                // Tripped while hyper is mid-frame: nothing more of the client's reaches hyper; wait (bounded)
                // for hyper's write to reach the boundary, where poll_write sends the GOAWAY.
                Poll::Ready(Ok(())) => {
                    let deadline = this
                        .boundary_deadline
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(BOUNDARY_WAIT)));
                    return match deadline.as_mut().poll(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(()) => {
                            this.state = State::Done;
                            Poll::Ready(Err(gone()))
                        }
                    };
                }
            }
        }
        let before = buf.filled().len();
        let polled = this.io().poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.count(&buf.filled()[before..]);
            if matches!(this.state, State::Tripped) {
                // Wake ourselves so the GOAWAY goes out even if hyper has nothing to write.
                cx.waker().wake_by_ref();
            }
        }
        polled
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for H2Guard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let mut limit = buf.len();
        match this.state {
            State::Open => {}
            State::Tripped => match this.outgoing.to_boundary() {
                // Only the rest of the frame under way.
                Some(n) => limit = limit.min(n),
                None => {
                    return match this.poll_goaway(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => Poll::Ready(Err(gone())),
                    }
                }
            },
            State::GoingAway(_) => {
                return match this.poll_goaway(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => Poll::Ready(Err(gone())),
                }
            }
            State::Done => return Poll::Ready(Err(gone())),
        }
        let polled = this.io().poll_write(cx, &buf[..limit]);
        if let Poll::Ready(Ok(n)) = polled {
            this.outgoing.feed(&buf[..n], |_, _| {});
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !matches!(this.state, State::Open) {
            // Past the budget: one buffer at a time, cut at the frame boundary.
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            return Pin::new(this).poll_write(cx, first);
        }
        let polled = this.io().poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(mut n)) = polled {
            for b in bufs {
                if n == 0 {
                    break;
                }
                let take = n.min(b.len());
                this.outgoing.feed(&b[..take], |_, _| {});
                n -= take;
            }
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Poll::Ready(Err(e)) = this.poll_goaway(cx) {
            return Poll::Ready(Err(e));
        }
        this.io().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, 0];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    type Tripped = std::sync::Arc<std::sync::atomic::AtomicBool>;

    /// A guard with a budget of 100 over an in-memory pipe: (client end, guard, whether it tripped).
    fn guarded() -> (
        tokio::io::DuplexStream,
        H2Guard<tokio::io::DuplexStream>,
        Tripped,
    ) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let tripped = Tripped::default();
        let t = tripped.clone();
        let guard = H2Guard::new(
            server,
            Budget { max_resets: 100 },
            Box::new(move |_, _| t.store(true, std::sync::atomic::Ordering::SeqCst)),
        );
        (client, guard, tripped)
    }

    /// The budget: resets past `max_resets` cut a connection off only when they are half its streams or more; the
    /// GOAWAY names the last stream and ENHANCE_YOUR_CALM, and goes out only between the server's frames.
    #[tokio::test]
    async fn resets_past_the_budget_and_half_the_streams_get_goaway() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, mut guard, tripped) = guarded();
        let mut input = PREFACE.to_vec();
        for i in 0..300u32 {
            input.extend(frame(FRAME_HEADERS, 2 * i + 1, &[0; 5]));
        }
        for i in 0..149u32 {
            input.extend(frame(FRAME_RST_STREAM, 2 * i + 1, &[0, 0, 0, 8]));
        }
        client.write_all(&input).await.unwrap();
        let mut sink = vec![0u8; input.len()];
        guard.read_exact(&mut sink).await.unwrap();
        assert!(
            !tripped.load(std::sync::atomic::Ordering::SeqCst),
            "149 of 300: under half"
        );
        // The server is in the middle of a frame when the last reset arrives.
        let half = frame(0x0, 1, &[1; 20]);
        guard.write_all(&half[..12]).await.unwrap();
        client
            .write_all(&frame(FRAME_RST_STREAM, 299, &[0, 0, 0, 8]))
            .await
            .unwrap();
        let mut more = [0u8; 13];
        guard.read_exact(&mut more).await.unwrap();
        assert!(
            tripped.load(std::sync::atomic::Ordering::SeqCst),
            "150 of 300"
        );
        // hyper's frame is finished first; then the GOAWAY; then writes fail.
        guard.write_all(&half[12..]).await.unwrap();
        assert!(guard.write_all(b"more").await.is_err());
        let mut out = vec![0u8; half.len() + 17];
        client.read_exact(&mut out).await.unwrap();
        assert_eq!(&out[..half.len()], &half[..]);
        let goaway = &out[half.len()..];
        assert_eq!(goaway[3], FRAME_GOAWAY);
        assert_eq!(
            u32::from_be_bytes(goaway[9..13].try_into().unwrap()),
            599,
            "last stream"
        );
        assert_eq!(
            u32::from_be_bytes(goaway[13..17].try_into().unwrap()),
            ENHANCE_YOUR_CALM
        );
    }

    /// Resets padded with other streams (to stay under half) are cut off one budget past the empty bucket.
    #[tokio::test]
    async fn padded_resets_are_cut_off_too() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, mut guard, tripped) = guarded();
        let mut input = PREFACE.to_vec();
        for i in 0..2000u32 {
            input.extend(frame(FRAME_HEADERS, 2 * i + 1, &[0; 5]));
        }
        for i in 0..199u32 {
            input.extend(frame(FRAME_RST_STREAM, 2 * i + 1, &[0, 0, 0, 8]));
        }
        client.write_all(&input).await.unwrap();
        let mut sink = vec![0u8; input.len()];
        guard.read_exact(&mut sink).await.unwrap();
        assert!(
            !tripped.load(std::sync::atomic::Ordering::SeqCst),
            "199 resets: a budget and 99 over"
        );
        let last = frame(FRAME_RST_STREAM, 401, &[0, 0, 0, 8]);
        client.write_all(&last).await.unwrap();
        let mut sink = vec![0u8; last.len()];
        guard.read_exact(&mut sink).await.unwrap();
        assert!(
            tripped.load(std::sync::atomic::Ordering::SeqCst),
            "200: a second budget past the empty bucket"
        );
    }

    proptest! {
        /// Frame headers are found however the bytes are split.
        #[test]
        fn frames_are_counted_in_any_chunking(cuts in proptest::collection::vec(1usize..40, 1..30)) {
            let mut bytes = PREFACE.to_vec();
            for i in 0..10u32 {
                bytes.extend(frame(FRAME_HEADERS, 2 * i + 1, &[0; 13]));
                bytes.extend(frame(0x0, 2 * i + 1, &[7; 30]));
                bytes.extend(frame(FRAME_RST_STREAM, 2 * i + 1, &[0, 0, 0, 8]));
            }
            let mut f = Frames { preface: PREFACE.len(), ..Frames::default() };
            let (mut headers, mut resets) = (0, 0);
            let mut rest = &bytes[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                f.feed(&rest[..n], |k, _| match k {
                    FRAME_HEADERS => headers += 1,
                    FRAME_RST_STREAM => resets += 1,
                    _ => {}
                });
                rest = &rest[n..];
                i += 1;
            }
            prop_assert_eq!((headers, resets), (10, 10));
            prop_assert!(f.at_boundary());
        }
    }
}
