//! The accept phase's sockets: listeners, TLS handshakes, HTTP/1.1 and HTTP/2 connections, idle and shutdown.
//!
//! Invariants: a connection never outlives a shutdown's grace period (on [`Phase::Draining`] it is told to
//! finish its in-flight requests and close; on [`Phase::Closing`] it is dropped); a connection that moves no
//! bytes for `client_idle` is told to close, and dropped after a second idle period; one bad connection only
//! ever ends itself; an accept error (e.g. out of file descriptors) backs off instead of spinning; at most
//! `limits.max_connections` client connections are open at once (the rest wait in the kernel's backlog).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::{ConnInfo, Proxy};
use crate::client_ip;
use crate::config::{Limits, ListenerSettings, Timeouts};
use crate::metrics::ClientErrorKind;

/// Held by every connection task; the server is drained when all clones are gone.
pub type DrainToken = mpsc::Sender<()>;

/// Where the server is in its life; broadcast to every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    /// Stop accepting; connections finish their in-flight requests and close.
    Draining,
    /// The grace period is over: drop every connection now.
    Closing,
}

/// What a connection (and a tunnel it turns into) needs to follow the server's life.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    pub phase: watch::Receiver<Phase>,
    pub drain: DrainToken,
    pub idle: Duration,
}

/// How connections on one listener are served.
pub struct ListenerConfig {
    pub settings: ListenerSettings,
    pub tls: Option<TlsAcceptor>,
}

/// HTTP/1.1 + HTTP/2 connection builders with the configured limits.
#[derive(Clone)]
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

fn builder(limits: &Limits, timeouts: &Timeouts) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.client_header)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_header_bytes as u32)
        // No PING keep-alives: they would count as activity and defeat the idle timeout, which already
        // closes connections to vanished peers.
        .max_concurrent_streams(limits.h2_max_concurrent_streams);
    b
}

impl Builders {
    fn new(limits: &Limits, timeouts: &Timeouts) -> Builders {
        let base = builder(limits, timeouts);
        Builders {
            auto: base.clone(),
            h1: base.clone().http1_only(),
            h2: base.http2_only(),
        }
    }
}

/// Accept connections on `listener` until the server leaves [`Phase::Serving`].
pub async fn serve_listener(
    listener: TcpListener,
    config: ListenerConfig,
    proxy: Arc<Proxy>,
    lifecycle: Lifecycle,
    permits: Arc<Semaphore>,
) {
    let settings = proxy.settings();
    let builders = Arc::new(Builders::new(&settings.limits, &settings.timeouts));
    let timeouts = settings.timeouts;
    let local = listener.local_addr().unwrap_or(config.settings.address);
    let label = local.to_string();
    let listener_metrics = proxy.metrics().listener(&label);
    let config = Arc::new(config);
    let mut phase = lifecycle.phase.clone();
    loop {
        if *phase.borrow() != Phase::Serving {
            break;
        }
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                tracing::warn!(listener = %label, "connection limit reached; new connections wait");
                tokio::select! {
                    _ = phase.changed() => continue,
                    p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                }
            }
        };
        let accepted = tokio::select! {
            biased;
            _ = phase.changed() => continue,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE/ENFILE and friends: the listener is fine, the process is out of something. Back off.
                tracing::error!(listener = %label, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let guard = listener_metrics.connection_opened();
        let proxy = proxy.clone();
        let builders = builders.clone();
        let config = config.clone();
        let lifecycle = lifecycle.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let _permit = permit;
            let accepted_at = tokio::time::Instant::now();
            let _ = tcp.set_nodelay(true);
            let mut tcp = tcp;
            let (base, base_source, leftover) = if config.settings.proxy_protocol {
                match accept_proxy_header(&mut tcp, peer, &proxy, timeouts.proxy_header).await {
                    Some(found) => found,
                    None => return,
                }
            } else {
                (
                    peer.ip().to_canonical(),
                    client_ip::Source::Peer,
                    Vec::new(),
                )
            };
            let info = ConnInfo {
                peer,
                tls: config.tls.is_some(),
                redirect_https: config.settings.redirect_to_https,
                lifecycle,
                base,
                base_source,
                client: super::headers::ClientAddr::new(base),
            };
            let io = Rewind::new(tcp, leftover);
            serve_connection(io, info, &config, &builders, proxy, timeouts, accepted_at).await;
        });
    }
    tracing::debug!(listener = %label, "listener closed");
}

/// Read the PROXY protocol header a trusted balancer sends first. `None` (connection to be closed) if the peer
/// is not trusted, or the header is missing, malformed, too large or too slow. Otherwise the client address,
/// where it came from, and the bytes read past the header.
async fn accept_proxy_header(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    proxy: &Proxy,
    timeout: Duration,
) -> Option<(std::net::IpAddr, client_ip::Source, Vec<u8>)> {
    use client_ip::proxy_protocol::{parse, Parsed, V2_MAX};
    use tokio::io::AsyncReadExt;

    let fail = |why: &str| {
        proxy
            .metrics()
            .client_error(ClientErrorKind::proxy_protocol);
        tracing::debug!(%peer, why, "PROXY protocol header refused; connection closed");
        None
    };
    if !proxy
        .settings()
        .client_ip
        .trusted_proxies
        .contains(peer.ip())
    {
        return fail("peer is not a trusted proxy");
    }
    let mut buf = Vec::with_capacity(256);
    let read = tokio::time::timeout(timeout, async {
        let mut chunk = [0u8; 512];
        loop {
            let n = tcp.read(&mut chunk).await.map_err(|_| "read error")?;
            if n == 0 {
                return Err("connection closed before the header ended");
            }
            buf.extend_from_slice(&chunk[..n]);
            match parse(&buf) {
                Parsed::Complete { source, len } => return Ok((source, len)),
                Parsed::Incomplete if buf.len() <= V2_MAX => continue,
                Parsed::Incomplete => return Err("header too large"),
                Parsed::Invalid(why) => return Err(why),
            }
        }
    })
    .await;
    match read {
        Err(_) => fail("timed out"),
        Ok(Err(why)) => fail(why),
        Ok(Ok((source, len))) => {
            let leftover = buf.split_off(len);
            Some(match source {
                Some(s) => (
                    s.ip().to_canonical(),
                    client_ip::Source::ProxyProtocol,
                    leftover,
                ),
                // LOCAL / UNKNOWN: the balancer's own connection (health checks).
                None => (peer.ip().to_canonical(), client_ip::Source::Peer, leftover),
            })
        }
    }
}

async fn serve_connection(
    tcp: Rewind<TcpStream>,
    info: ConnInfo,
    config: &ListenerConfig,
    builders: &Builders,
    proxy: Arc<Proxy>,
    timeouts: Timeouts,
    accepted_at: tokio::time::Instant,
) {
    let activity = Arc::new(Activity::new());
    let tcp = Tracked::new(tcp, activity.clone());
    let max_head = proxy.settings().limits.max_header_bytes;
    match &config.tls {
        None => {
            let builder = if config.settings.http2 {
                &builders.auto
            } else {
                &builders.h1
            };
            let deadline = accepted_at + timeouts.client_header;
            let Some(tcp) = first_head(
                tcp,
                deadline,
                max_head,
                true,
                &proxy,
                info.peer,
                &info.lifecycle.phase,
            )
            .await
            else {
                return;
            };
            if config.settings.http2 && tcp.starts_with(super::h2guard::PREFACE) {
                let guarded = h2_guard(tcp, &proxy, info.peer, activity.clone());
                drive(guarded, info, builder, proxy, activity).await;
            } else {
                drive(tcp, info, builder, proxy, activity).await;
            }
        }
        Some(acceptor) => {
            let tls = match tokio::time::timeout(timeouts.tls_handshake, acceptor.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    proxy.metrics().tls_handshake_error();
                    tracing::debug!(peer = %info.peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    proxy.metrics().tls_handshake_error();
                    tracing::debug!(peer = %info.peer, "TLS handshake timed out");
                    return;
                }
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let builder = if h2 { &builders.h2 } else { &builders.h1 };
            // The head's time counts from the end of the handshake (which has its own bound).
            let deadline = tokio::time::Instant::now() + timeouts.client_header;
            let Some(tls) = first_head(
                tls,
                deadline,
                max_head,
                !h2,
                &proxy,
                info.peer,
                &info.lifecycle.phase,
            )
            .await
            else {
                return;
            };
            if h2 {
                let guarded = h2_guard(tls, &proxy, info.peer, activity.clone());
                drive(guarded, info, builder, proxy, activity).await;
            } else {
                drive(tls, info, builder, proxy, activity).await;
            }
        }
    }
}

async fn drive<IO>(
    io: IO,
    info: ConnInfo,
    builder: &auto::Builder<TokioExecutor>,
    proxy: Arc<Proxy>,
    activity: Arc<Activity>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = info.peer;
    let idle = info.lifecycle.idle;
    let mut phase = info.lifecycle.phase.clone();
    let metrics = proxy.metrics().clone();
    let info = Arc::new(info);
    let service = service_fn(move |req| proxy.clone().handle(req, info.clone()));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let now = *phase.borrow_and_update();
        match now {
            Phase::Closing => return,
            Phase::Draining if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ => {}
        }
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    // A connection cut off for abuse was counted when it was cut.
                    if !activity.cut_off.load(Ordering::Relaxed) {
                        let kind = client_error_kind(e.as_ref());
                        metrics.client_error(kind);
                        tracing::debug!(%peer, ?kind, error = %e, "connection ended with an error");
                    }
                }
                return;
            }
            changed = phase.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = activity.idle_for(idle) => {
                if closing {
                    // Told to close one idle period ago and still no bytes moved: the peer is gone or stuck.
                    tracing::debug!(%peer, ?idle, "dropping a connection that did not close");
                    return;
                }
                tracing::debug!(%peer, ?idle, "closing idle connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// An HTTP/2 connection's IO with the rapid-reset budget enforced (`limits.h2_max_client_resets`).
fn h2_guard<IO>(
    io: IO,
    proxy: &Proxy,
    peer: SocketAddr,
    activity: Arc<Activity>,
) -> super::h2guard::H2Guard<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let budget = super::h2guard::Budget {
        max_resets: proxy.settings().limits.h2_max_client_resets,
    };
    let metrics = proxy.metrics().clone();
    super::h2guard::H2Guard::new(
        io,
        budget,
        Box::new(move |streams, resets| {
            metrics.client_error(ClientErrorKind::rapid_reset);
            activity.cut_off.store(true, Ordering::Relaxed);
            tracing::warn!(%peer, streams, resets, "HTTP/2 client reset too many streams (rapid reset): GOAWAY(ENHANCE_YOUR_CALM), connection closed");
        }),
    )
}

/// What a client that sent part of a request head and then stalled gets (HAProxy answers the same way).
fn request_timeout() -> Vec<u8> {
    let body = "<!doctype html>\n<html lang=\"en\"><head><title>408 Request Timeout</title></head>\
                <body><p>The request did not arrive in time.</p></body></html>\n";
    format!(
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The connection's first request head must arrive by `deadline` (HTTP/1.1: a complete head; HTTP/2: the
/// preface), whatever hyper's own timer does (it starts at the first byte, so a connection that sends nothing
/// would otherwise be kept until the idle timeout). The bytes read go to hyper unchanged. `None`: the
/// connection is done — closed by the peer, or timed out (with a 408 when part of an HTTP/1.1 head arrived).
#[allow(clippy::too_many_arguments)]
async fn first_head<IO>(
    mut io: IO,
    deadline: tokio::time::Instant,
    max_head: usize,
    http1: bool,
    proxy: &Proxy,
    peer: SocketAddr,
    phase: &watch::Receiver<Phase>,
) -> Option<Rewind<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut phase = phase.clone();
    let read = tokio::time::timeout_at(deadline, async {
        loop {
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(buf.capacity());
            }
            let before = buf.len();
            let nothing_yet = buf.is_empty();
            let n = tokio::select! {
                r = io.read_buf(&mut buf) => r?,
                // Draining: a connection that has not asked for anything yet is closed at once.
                _ = phase.wait_for(|p| *p != Phase::Serving), if nothing_yet => {
                    return Ok::<bool, io::Error>(false)
                }
            };
            if n == 0 {
                return Ok(false);
            }
            if head_complete(&buf, before) || buf.len() > max_head {
                return Ok(true);
            }
        }
    })
    .await;
    match read {
        Ok(Ok(true)) => Some(Rewind::new(io, buf)),
        // Closed (or failed) before a head arrived: nothing to answer.
        Ok(Ok(false)) | Ok(Err(_)) => None,
        Err(_) => {
            proxy
                .metrics()
                .client_error(ClientErrorKind::header_timeout);
            if http1 && !buf.is_empty() {
                tracing::debug!(%peer, bytes = buf.len(), "request head incomplete at the deadline; 408");
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    io.write_all(&request_timeout()).await?;
                    io.shutdown().await
                })
                .await;
            } else {
                tracing::debug!(%peer, "no request within the header timeout; connection closed");
            }
            None
        }
    }
}

/// Whether `buf` (of which the bytes from `new` on just arrived) holds a complete request head: an HTTP/2
/// client preface (all 24 bytes — it contains a blank line at byte 18, so a preface split there must not count),
/// or an HTTP/1.x head ending in a blank line (CRLF or, as hyper also accepts, bare LF).
fn head_complete(buf: &[u8], new: usize) -> bool {
    use super::h2guard::PREFACE;
    if buf.len() < PREFACE.len() && PREFACE.starts_with(buf) {
        return false;
    }
    if buf.starts_with(PREFACE) {
        return true;
    }
    // Only the new bytes (and the three before them) can complete the head.
    let recent = &buf[new.saturating_sub(3)..];
    recent.windows(4).any(|w| w == b"\r\n\r\n") || recent.windows(2).any(|w| w == b"\n\n")
}

fn client_error_kind(e: &(dyn std::error::Error + 'static)) -> ClientErrorKind {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse_too_large() {
                return ClientErrorKind::too_large;
            }
            if h.is_parse() {
                return ClientErrorKind::malformed;
            }
            if h.is_timeout() {
                return ClientErrorKind::header_timeout;
            }
        }
        source = err.source();
    }
    if e.to_string().contains("timeout") {
        return ClientErrorKind::header_timeout;
    }
    ClientErrorKind::other
}

/// Whether a connection moved bytes: a counter bumped by every completed read or write (no clock read on the
/// I/O path), sampled once per idle period.
pub(crate) struct Activity {
    ops: AtomicU64,
    /// The connection was cut off for abuse (rapid reset), already counted: its ending error is not another.
    cut_off: std::sync::atomic::AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            ops: AtomicU64::new(0),
            cut_off: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        // Relaxed is enough: this is a hint for the idle timer, not a synchronisation point.
        self.ops.store(
            self.ops.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// Completes once a whole `idle` period passed without any byte moving (so within one to two periods of
    /// the last activity).
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            let before = self.ops.load(Ordering::Relaxed);
            tokio::time::sleep(idle).await;
            if self.ops.load(Ordering::Relaxed) == before {
                return;
            }
        }
    }
}

/// An IO that records activity for the idle timer.
pub(crate) struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Tracked<T> {
        Tracked { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if poll.is_ready() {
            self.activity.touch();
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if poll.is_ready() {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if poll.is_ready() {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bind a TCP listener with a production backlog and `SO_REUSEADDR` (restarts don't wait for TIME_WAIT).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// An IO that first yields bytes already read (past a PROXY protocol header), then reads from `inner`.
pub(crate) struct Rewind<T> {
    prefix: Vec<u8>,
    pos: usize,
    inner: T,
}

impl<T> Rewind<T> {
    pub(crate) fn new(inner: T, prefix: Vec<u8>) -> Rewind<T> {
        Rewind {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<T> Rewind<T> {
    /// The bytes read ahead (not yet passed on) start with `prefix`.
    pub(crate) fn starts_with(&self, prefix: &[u8]) -> bool {
        self.pos == 0 && self.prefix.starts_with(prefix)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
