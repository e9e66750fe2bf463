//! The access log: one line per request, as nginx writes it — formatted on the request's thread into a
//! buffer, written by a thread of its own in batches, never a system call or a lock held across one on the
//! request's path.
//!
//! The lines are byte for byte what the tracing subscriber printed before (operators' parsers are written
//! against them): human — `<RFC 3339 µs>  INFO concierge::access: request_id="…" client=… method=… host="…"
//! path="…" version=HTTP/1.1 status=200 bytes=… duration_ms=… completed=true` — or JSON with the same fields
//! (`log.format`). They go to standard error like every other log line, whole lines per write.
//!
//! Loss window, stated: a line reaches the file descriptor at most [`FLUSH_EVERY`] after its request ended
//! (sooner once [`FLUSH_BYTES`] are pending); a crash loses at most that window's lines; a clean stop flushes
//! everything. When the writer falls behind by [`MAX_PENDING`] bytes (a blocked stderr), new lines are dropped
//! and counted rather than letting memory grow — the request never waits for its log line.

use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::counter::Counter;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use crate::config::LogFormat;

/// Pending lines are written at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// ... and as soon as this much is pending.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Beyond this much pending, new lines are dropped (and counted).
pub const MAX_PENDING: usize = 8 * 1024 * 1024;

/// One request, as the access log shows it.
pub struct Entry<'a> {
    pub request_id: &'a str,
    pub client: IpAddr,
    pub method: &'a http::Method,
    pub host: Option<&'a str>,
    pub path: Option<&'a str>,
    pub version: http::Version,
    pub status: u16,
    pub bytes: u64,
    /// Milliseconds, rounded to three decimals.
    pub duration_ms: f64,
    pub completed: bool,
}

struct Shared {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    stop: AtomicBool,
    dropped: Counter,
}

struct Inner {
    format: LogFormat,
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The access log's writer (one per process); cloning shares it (one reference count).
#[derive(Clone)]
pub struct AccessLog(Arc<Inner>);

thread_local! {
    /// Each request thread formats into its own buffer, reused.
    static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(256));
}

impl AccessLog {
    /// Start the writer thread, writing to `out` (standard error in the proxy).
    /// `dropped` counts lines dropped when the writer is [`MAX_PENDING`] behind.
    pub fn start(format: LogFormat, mut out: Box<dyn Write + Send>, dropped: Counter) -> AccessLog {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(FLUSH_BYTES)),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            dropped,
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(FLUSH_BYTES);
                loop {
                    let stopping = {
                        let mut pending = s.pending.lock().unwrap_or_else(|p| p.into_inner());
                        if pending.len() < FLUSH_BYTES && !s.stop.load(Ordering::Acquire) {
                            pending = s
                                .wake
                                .wait_timeout(pending, FLUSH_EVERY)
                                .unwrap_or_else(|p| p.into_inner())
                                .0;
                        }
                        std::mem::swap(&mut *pending, &mut batch);
                        s.stop.load(Ordering::Acquire)
                    };
                    if !batch.is_empty() {
                        // Whole lines only: a batch is a run of complete lines. A write error (a closed
                        // stderr) loses the batch; the proxy goes on.
                        let _ = out.write_all(&batch).and_then(|()| out.flush());
                        batch.clear();
                    }
                    if stopping && s.pending.lock().map(|p| p.is_empty()).unwrap_or(true) {
                        return;
                    }
                }
            })
            .ok();
        AccessLog(Arc::new(Inner {
            format,
            shared,
            thread: Mutex::new(thread),
        }))
    }

    /// Log one request (formats it here; the writer thread writes it).
    pub fn line(&self, e: &Entry) {
        LINE.with(|cell| {
            let mut line = cell.borrow_mut();
            line.clear();
            format_entry(&mut line, self.0.format, SystemTime::now(), e);
            let shared = &self.0.shared;
            let wake = {
                let mut pending = shared.pending.lock().unwrap_or_else(|p| p.into_inner());
                if pending.len() + line.len() > MAX_PENDING {
                    shared.dropped.inc();
                    return;
                }
                let before = pending.len();
                pending.extend_from_slice(&line);
                before < FLUSH_BYTES && pending.len() >= FLUSH_BYTES
            };
            if wake {
                shared.wake.notify_one();
            }
        });
    }

    /// Write everything pending and stop the writer. Called last, at shutdown: a line logged after it is
    /// buffered but never written.
    pub fn stop(&self) {
        self.0.shared.stop.store(true, Ordering::Release);
        self.0.shared.wake.notify_one();
        let handle = self
            .0
            .thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// One line, exactly as tracing-subscriber's `fmt` layer printed the `concierge::access` event.
fn format_entry(out: &mut Vec<u8>, format: LogFormat, now: SystemTime, e: &Entry) {
    let ts = humantime::format_rfc3339_micros(now);
    let host = e.host.unwrap_or("-");
    let path = e.path.unwrap_or("-");
    match format {
        LogFormat::Human => {
            let _ = writeln!(
                out,
                "{ts}  INFO concierge::access: request_id={:?} client={} method={} host={:?} path={:?} \
                 version={:?} status={} bytes={} duration_ms={:?} completed={}",
                e.request_id,
                e.client,
                e.method,
                host,
                path,
                e.version,
                e.status,
                e.bytes,
                e.duration_ms,
                e.completed
            );
        }
        LogFormat::Json => {
            let s = |out: &mut Vec<u8>, v: &str| {
                let _ = serde_json::to_writer(&mut *out, v);
            };
            out.extend_from_slice(b"{\"timestamp\":\"");
            let _ = write!(out, "{ts}");
            out.extend_from_slice(b"\",\"level\":\"INFO\",\"request_id\":");
            s(out, e.request_id);
            // An address and a version need no escaping: written as they are, without a String.
            let _ = write!(out, ",\"client\":\"{}\",\"method\":", e.client);
            s(out, e.method.as_str());
            out.extend_from_slice(b",\"host\":");
            s(out, host);
            out.extend_from_slice(b",\"path\":");
            s(out, path);
            let _ = write!(
                out,
                ",\"version\":\"{:?}\",\"status\":{},\"bytes\":{},\"duration_ms\":",
                e.version, e.status, e.bytes
            );
            let _ = serde_json::to_writer(&mut *out, &e.duration_ms);
            let _ = writeln!(
                out,
                ",\"completed\":{},\"target\":\"concierge::access\"}}",
                e.completed
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(method: &'a http::Method) -> Entry<'a> {
        Entry {
            request_id: "b4948ca460935a6fcd0644b9963a7054",
            client: "127.0.0.1".parse().unwrap(),
            method,
            host: Some("127.0.0.1:18181"),
            path: Some("/a%22b"),
            version: http::Version::HTTP_11,
            status: 502,
            bytes: 521,
            duration_ms: 0.557,
            completed: true,
        }
    }

    fn at() -> SystemTime {
        humantime::parse_rfc3339("2026-12-02T04:17:58.768485Z").unwrap()
    }

    /// The lines the tracing subscriber printed for the same requests (copied from a run of the previous
    /// binary): operators' parsers must see no difference.
    #[test]
    fn lines_are_what_the_tracing_subscriber_printed() {
        let get = http::Method::GET;
        let mut out = Vec::new();
        format_entry(&mut out, LogFormat::Json, at(), &entry(&get));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"timestamp\":\"2026-12-02T04:17:58.768485Z\",\"level\":\"INFO\",\"request_id\":\"b4948ca460935a6fcd0644b9963a7054\",\"client\":\"127.0.0.1\",\"method\":\"GET\",\"host\":\"127.0.0.1:18181\",\"path\":\"/a%22b\",\"version\":\"HTTP/1.1\",\"status\":502,\"bytes\":521,\"duration_ms\":0.557,\"completed\":true,\"target\":\"concierge::access\"}\n"
        );
        let mut out = Vec::new();
        let head = http::Method::HEAD;
        let mut e = entry(&head);
        e.host = None;
        e.path = Some("/pricing");
        e.status = 404;
        e.bytes = 3040;
        e.duration_ms = 0.696;
        format_entry(&mut out, LogFormat::Human, at(), &e);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-12-02T04:17:58.768485Z  INFO concierge::access: request_id=\"b4948ca460935a6fcd0644b9963a7054\" client=127.0.0.1 method=HEAD host=\"-\" path=\"/pricing\" version=HTTP/1.1 status=404 bytes=3040 duration_ms=0.696 completed=true\n"
        );
        // Whole milliseconds keep their ".0", as tracing's Debug formatting did.
        let mut out = Vec::new();
        e.duration_ms = 2.0;
        format_entry(&mut out, LogFormat::Human, at(), &e);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains(" duration_ms=2.0 "));
    }

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_whole_within_the_window_and_stop_flushes_the_rest() {
        let sink = Sink::default();
        let dropped = Counter::default();
        let log = AccessLog::start(LogFormat::Human, Box::new(sink.clone()), dropped.clone());
        let get = http::Method::GET;
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    let get = http::Method::GET;
                    for _ in 0..500 {
                        log.line(&entry(&get));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        log.line(&entry(&get));
        // Within the flush window, without a stop.
        std::thread::sleep(FLUSH_EVERY * 3);
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(written.lines().count(), 2001);
        assert!(written.lines().all(|l| l.ends_with("completed=true")));
        log.line(&entry(&get));
        log.stop();
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            written.lines().count(),
            2002,
            "stop flushes what is pending"
        );
        assert_eq!(dropped.get(), 0);
    }
}
