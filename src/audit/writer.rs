//! The writer: one thread per stream that owns the segment files, takes records from a bounded queue, appends
//! them in batches (group commit), links them into the hash chain, fsyncs by policy, signs checkpoints, rotates
//! segments and applies retention.
//!
//! Producers call [`Writer::submit_record`], which never blocks for long: the record is serialized on the
//! caller's thread (into a reused per-thread buffer) and appended to the queue — one byte buffer shared with the
//! writer under a mutex held for a copy — or refused at once (queue full, writer failing, record too large), and
//! then the caller must not act on it. A record's sequence number is fixed when it is queued; the returned
//! [`Ack`] can be waited on ([`Writer::written`], [`Writer::written_blocking`]) until the record is written (and
//! fsynced, if the policy says so). Producers allocate nothing per record and wake the writer at most once per
//! commit window; the writer swaps the queue's buffer for an empty one and links the batch into one output
//! buffer, so a steady stream of records allocates nothing on either side.
//!
//! Failure: when a write or fsync fails, the batch stays in memory and is retried every second (the file is cut
//! back to its last good line first); meanwhile the writer reports itself unhealthy and `submit` refuses, so no
//! new personalization depends on a record that may not land. Start-up: a torn last line (a crash mid-write) is
//! moved to `<segment>.torn-<unix time>` and the chain continues from the last good record.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::chain;
use super::keys::{Checkpoint, SigningKey};

/// When the writer fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every batch that holds a record someone waits to be durable ([`Writer::submit_durable`]): its ack
    /// resolves once it is fsynced. Batches nobody waits for are written at once and fsynced within
    /// [`LAZY_SYNC`] (or with the next waited batch or checkpoint, whichever comes first).
    Batch,
    /// At most this often; acks resolve after the write (in the page cache), before the fsync.
    Interval(Duration),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Stream name (`audit`, `feedback`): the directory under the audit dir and the checkpoints' stream.
    pub stream: String,
    /// Queue capacity (records; the queue also holds at most [`QUEUE_BYTES`]).
    pub queue: usize,
    /// Records that end a commit window early (the writer is woken to write them at once).
    pub batch: usize,
    /// Group-commit window: two commits (a batch's write, and its fsync when someone waits) are at least this
    /// far apart. A record after a quiet spell is written at once; under load the records of one window share
    /// one write and fsync (unless the batch is full or a flush is asked for). Without it every record costs
    /// the writer a wake-up, a write and an fsync of its own — on a busy proxy that was more than the rest of
    /// the request; with it a record costs a little memory copy.
    pub commit_window: Duration,
    pub fsync: Fsync,
    pub checkpoint_records: u64,
    pub checkpoint_interval: Duration,
    pub segment_bytes: u64,
    pub segment_age: Duration,
    /// Segments whose last write is older than this are deleted (their sealing checkpoints stay).
    pub retention: Duration,
    /// The instance this chain belongs to, named (and signed) in every checkpoint.
    pub instance: Option<String>,
    /// With a record store: the first sequence number it does not hold yet (kept current by the shipper).
    /// Retention keeps every segment holding a record at or after it, so a record the store lacks is never
    /// deleted; starts at 0 (keep everything) until the shipper knows better.
    pub keep_from: Option<Arc<AtomicU64>>,
}

impl Options {
    pub fn new(stream: &str) -> Options {
        Options {
            stream: stream.to_string(),
            queue: 65_536,
            batch: 4096,
            commit_window: Duration::from_millis(2),
            fsync: Fsync::Batch,
            checkpoint_records: 10_000,
            checkpoint_interval: Duration::from_secs(10),
            segment_bytes: 64 * 1024 * 1024,
            segment_age: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(400 * 24 * 3600),
            instance: None,
            keep_from: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why a record was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the audit queue is full")]
    QueueFull,
    #[error("the audit log cannot be written (disk error); retrying")]
    Failing,
    #[error("the audit writer has stopped")]
    Stopped,
    #[error("the record is too large")]
    TooLarge,
    #[error("the record was not on disk in time")]
    Timeout,
}

impl Refused {
    /// The `result` label of `concierge_decision_records_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::QueueFull => "refused_queue_full",
            Refused::Failing => "refused_failing",
            Refused::Stopped => "refused_stopped",
            Refused::TooLarge => "refused_too_large",
            Refused::Timeout => "refused_timeout",
        }
    }
}

/// A queued record: its sequence number, fixed when it was queued. Wait for it with [`Writer::written`] or
/// [`Writer::written_blocking`]; dropping it waits for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a record is only known to be written once its ack is waited on"]
pub struct Ack {
    pub seq: u64,
    /// Queued with [`Writer::submit_durable`]: the ack resolves once the record is fsynced (under
    /// [`Fsync::Batch`]), not merely written.
    pub durable: bool,
}

/// Under [`Fsync::Batch`], records nobody waits for are fsynced at most this long after they were written.
pub const LAZY_SYNC: Duration = Duration::from_secs(1);

/// How long after a failed checkpoint write the writer tries again.
const CHECKPOINT_RETRY: Duration = Duration::from_secs(1);

/// Most bytes of serialized records the queue holds (with [`Options::queue`] records at most). While a slow disk
/// catches up, the writer can hold about twice that again (the batch it took and that batch linked), so a
/// stream's peak is about 3× this; a steady load uses what one commit window brings.
pub const QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// What producers and the writer thread share.
struct Shared {
    queue: Mutex<Queue>,
    /// The writer waits on it: for a first record, the end of the commit window, a flush, the close.
    wake: Condvar,
    /// Blocking waiters wait on it: records written, flushes done, the writer stopped.
    progress: Condvar,
    /// `(every seq below this is written, … and fsynced, the writer stopped)`, for async waiters.
    written: tokio::sync::watch::Sender<(u64, u64, bool)>,
    /// Acks of durable records wait for the fsync (only under [`Fsync::Batch`]).
    sync_acks: bool,
    /// Cleared while writes fail; `submit` refuses meanwhile.
    healthy: AtomicBool,
    capacity: usize,
    batch: usize,
    /// Times the writer thread woke (tests: an idle writer sleeps).
    wakeups: AtomicU64,
    /// fsyncs of the segment (tests: only waited batches are fsynced at once).
    syncs: AtomicU64,
}

struct Queue {
    /// Serialized records back to back, `lens` their lengths; swapped out whole by the writer.
    buf: Vec<u8>,
    lens: Vec<u32>,
    /// The sequence number the next queued record gets.
    next_seq: u64,
    /// Every record below this sequence number is written (in the file; the page cache survives a crash of the
    /// process).
    written: u64,
    /// Every record below this sequence number is fsynced.
    synced: u64,
    /// Records below this sequence number were queued durable: the batch holding them is fsynced.
    sync_wanted: u64,
    flush_asked: u64,
    flushed: u64,
    /// The writer waits for a first record: the producer that queues it wakes the writer.
    idle: bool,
    /// Every [`Writer`] handle is gone: write what is queued, seal, stop.
    closed: bool,
    /// The writer thread ended.
    stopped: bool,
}

impl Queue {
    /// Nothing for the writer to do before its next deadline.
    fn quiet(&self) -> bool {
        self.lens.is_empty() && self.flush_asked == self.flushed && !self.closed
    }

    /// The commit window may go on: records are waiting, but not a batch's worth, no flush, no close.
    fn gathering(&self, batch: usize) -> bool {
        !self.full_batch(batch) && self.flush_asked == self.flushed && !self.closed
    }

    /// Enough is waiting to write it now: a batch's worth of records, or half the queue's bytes.
    fn full_batch(&self, batch: usize) -> bool {
        self.lens.len() >= batch || self.buf.len() >= QUEUE_BYTES / 2
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The last [`Writer`] handle going away closes the queue: the thread writes what is queued and a final
/// checkpoint, then ends.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// Marks the writer stopped when its thread ends (also by a panic), so nobody waits for it in vain.
struct Stopped(Arc<Shared>);

impl Drop for Stopped {
    fn drop(&mut self) {
        let (written, synced) = {
            let mut q = self.0.lock();
            q.stopped = true;
            (q.written, q.synced)
        };
        self.0.progress.notify_all();
        self.0.written.send_replace((written, synced, true));
    }
}

thread_local! {
    /// Per-thread serialization buffer: a record is serialized here, then copied into the queue.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A handle producers share. Dropping the last one ends the thread after it wrote everything queued and a final
/// checkpoint.
#[derive(Clone)]
pub struct Writer {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Open (recovering a torn tail) and start the writer thread for `dir/<stream>`.
    pub fn open(
        dir: &Path,
        key: Arc<SigningKey>,
        options: Options,
    ) -> Result<(Writer, std::thread::JoinHandle<()>), OpenError> {
        let stream_dir = dir.join(&options.stream);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        std::fs::create_dir_all(&stream_dir).map_err(io(&stream_dir))?;
        let segments = chain::segments(&stream_dir).map_err(io(&stream_dir))?;
        // The chain continues from the last good record of the last segment (or of the one before, if the last
        // one holds nothing good).
        let mut next_seq = 0;
        let mut prev = chain::GENESIS.to_string();
        let mut current = None;
        for (first, path) in segments.iter().rev() {
            let tail = chain::scan(path).map_err(io(path))?;
            if !tail.torn.is_empty() {
                set_aside(path, &tail).map_err(io(path))?;
            }
            if current.is_none() {
                current = Some((*first, path.clone()));
            }
            if let Some((seq, hash)) = tail.last {
                next_seq = seq + 1;
                prev = hash;
                break;
            }
        }
        if next_seq == 0 {
            // Every segment was deleted by retention: continue from the last checkpoint.
            if let Some(c) = last_checkpoint(&stream_dir) {
                next_seq = c.seq + 1;
                prev = c.hash;
            }
        }
        let (first, path) = match current {
            Some((first, path)) if first <= next_seq => (first, path),
            _ => (next_seq, stream_dir.join(chain::segment_name(next_seq))),
        };
        let file = open_append(&path).map_err(io(&path))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let cp_path = stream_dir.join(chain::CHECKPOINTS);
        cut_torn_checkpoint(&cp_path).map_err(io(&cp_path))?;
        let checkpoints = open_append(&cp_path).map_err(io(&cp_path))?;
        let checkpoints_len = checkpoints.metadata().map_or(0, |m| m.len());
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                buf: Vec::new(),
                lens: Vec::new(),
                next_seq,
                written: next_seq,
                synced: next_seq,
                sync_wanted: 0,
                flush_asked: 0,
                flushed: 0,
                idle: false,
                closed: false,
                stopped: false,
            }),
            wake: Condvar::new(),
            progress: Condvar::new(),
            written: tokio::sync::watch::Sender::new((next_seq, next_seq, false)),
            sync_acks: matches!(options.fsync, Fsync::Batch),
            healthy: AtomicBool::new(true),
            capacity: options.queue.max(1),
            // A batch never bigger than the queue, or a full queue would wait out the whole window.
            batch: options.batch.clamp(1, options.queue.max(1)),
            wakeups: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
        });
        let thread_name = format!("audit-{}", options.stream);
        let mut state = State {
            dir: stream_dir,
            options,
            key,
            shared: shared.clone(),
            file,
            path,
            first,
            size,
            opened: Instant::now(),
            next_seq,
            prev,
            checkpoints,
            signed_seq: None,
            last_checkpoint: Instant::now(),
            checkpoint_failed: None,
            checkpoints_len,
            last_sync: Instant::now(),
            dirty: false,
            synced: next_seq,
            last_commit: None,
            last_retention: None,
            out: Vec::new(),
        };
        state.signed_seq = last_checkpoint(&state.dir).map(|c| c.seq);
        if state
            .signed_seq
            .is_some_and(|s| s >= state.next_seq && state.next_seq > 0)
        {
            // The log lost records a checkpoint vouched for (a segment gone after a power loss, or tampering);
            // `audit verify` will name it. The chain goes on from what is there.
            tracing::warn!(
                stream = %state.options.stream,
                next_seq = state.next_seq,
                last_signed = state.signed_seq,
                "audit log: the last checkpoint is ahead of the records on disk; run `concierge audit verify`"
            );
        }
        let handle = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || state.run())
            .map_err(io(Path::new("audit writer thread")))?;
        Ok((
            Writer {
                handle: Arc::new(Handle { shared }),
            },
            handle,
        ))
    }

    /// Serialize and queue a record (a JSON object) that nobody will wait to be durable: it is written with its
    /// batch and fsynced lazily ([`LAZY_SYNC`]). Never waits for the writer.
    pub fn submit_record<T: serde::Serialize>(&self, record: &T) -> Result<Ack, Refused> {
        self.serialize_and_submit(record, false)
    }

    /// Queue a record whose ack must mean "on disk": the batch holding it is fsynced before the ack resolves
    /// (under [`Fsync::Batch`]). For records an effect depends on: a consent cookie, a personalized page.
    pub fn submit_durable<T: serde::Serialize>(&self, record: &T) -> Result<Ack, Refused> {
        self.serialize_and_submit(record, true)
    }

    fn serialize_and_submit<T: serde::Serialize>(
        &self,
        record: &T,
        durable: bool,
    ) -> Result<Ack, Refused> {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                serde_json::to_writer(&mut *buf, record).map_err(|_| Refused::TooLarge)?;
                let result = self.submit_bytes(&buf, durable);
                if buf.capacity() > chain::MAX_LINE {
                    *buf = Vec::new();
                }
                result
            }
            // Only if serializing a record submitted another one on this thread; no such record exists.
            Err(_) => self.submit_bytes(
                &serde_json::to_vec(record).map_err(|_| Refused::TooLarge)?,
                durable,
            ),
        })
    }

    /// Queue a record's JSON object (serde_json's compact form: one line); `durable` as in
    /// [`Writer::submit_durable`].
    pub fn submit_bytes(&self, body: &[u8], durable: bool) -> Result<Ack, Refused> {
        if body.len() > chain::MAX_LINE - 200 {
            return Err(Refused::TooLarge);
        }
        debug_assert!(body.first() == Some(&b'{') && !body.contains(&b'\n'));
        let s = &self.handle.shared;
        if !s.healthy.load(Ordering::Relaxed) {
            return Err(Refused::Failing);
        }
        let mut q = s.lock();
        if q.stopped {
            return Err(Refused::Stopped);
        }
        if q.lens.len() >= s.capacity || q.buf.len() + body.len() > QUEUE_BYTES {
            return Err(Refused::QueueFull);
        }
        let was_full = q.full_batch(s.batch);
        if q.buf.capacity() - q.buf.len() < body.len() {
            // Grow as a Vec would, but never past the bound.
            let want = (q.buf.capacity() * 2)
                .max(q.buf.len() + body.len())
                .min(QUEUE_BYTES);
            let len = q.buf.len();
            q.buf.reserve_exact(want - len);
        }
        q.buf.extend_from_slice(body);
        q.lens.push(body.len() as u32);
        let seq = q.next_seq;
        q.next_seq += 1;
        if durable {
            q.sync_wanted = q.next_seq;
        }
        // Wake the writer for the first record after a quiet spell, and once when a batch is full; never for
        // the records in between (they wait for the commit window).
        let wake = std::mem::replace(&mut q.idle, false) || (!was_full && q.full_batch(s.batch));
        drop(q);
        if wake {
            s.wake.notify_one();
        }
        Ok(Ack {
            seq,
            durable: durable && s.sync_acks,
        })
    }

    /// Wait until the record is written — and fsynced, for a durable record under [`Fsync::Batch`]. Err if the
    /// writer stopped first.
    pub async fn written(&self, ack: Ack) -> Result<u64, Refused> {
        let mut rx = self.handle.shared.written.subscribe();
        let done =
            |&(w, synced, _): &(u64, u64, bool)| (if ack.durable { synced } else { w }) > ack.seq;
        let waited = rx.wait_for(|v| done(v) || v.2).await;
        if waited.is_ok_and(|v| done(&v)) {
            Ok(ack.seq)
        } else {
            Err(Refused::Stopped)
        }
    }

    /// How far the writer got, without keeping it alive: `borrow().0` is the sequence number below which
    /// every record is in the file (the shipper's lag is measured against it).
    pub fn progress(&self) -> tokio::sync::watch::Receiver<(u64, u64, bool)> {
        self.handle.shared.written.subscribe()
    }

    /// [`Writer::written`] for threads outside the async runtime; Err(Failing) after `timeout`.
    pub fn written_blocking(&self, ack: Ack, timeout: Duration) -> Result<u64, Refused> {
        let s = &self.handle.shared;
        let q = s.lock();
        let done = |q: &Queue| (if ack.durable { q.synced } else { q.written }) > ack.seq;
        let (q, _) = s
            .progress
            .wait_timeout_while(q, timeout, |q| !done(q) && !q.stopped)
            .unwrap_or_else(PoisonError::into_inner);
        if done(&q) {
            Ok(ack.seq)
        } else if q.stopped {
            Err(Refused::Stopped)
        } else {
            Err(Refused::Failing)
        }
    }

    /// Write everything queued so far and a checkpoint; returns when done (blocking).
    /// Waits at most 10 s (a writer stuck on a failing disk must not hold up a shutdown forever).
    pub fn flush(&self) {
        let s = &self.handle.shared;
        let mut q = s.lock();
        q.flush_asked += 1;
        let asked = q.flush_asked;
        s.wake.notify_one();
        let _ = s
            .progress
            .wait_timeout_while(q, Duration::from_secs(10), |q| {
                q.flushed < asked && !q.stopped
            });
    }

    /// How often the writer thread has woken up (for tests: an idle writer sleeps).
    pub fn wakeups(&self) -> u64 {
        self.handle.shared.wakeups.load(Ordering::Relaxed)
    }

    /// How often the segment was fsynced (for tests and benchmarks).
    pub fn syncs(&self) -> u64 {
        self.handle.shared.syncs.load(Ordering::Relaxed)
    }
}

/// A buffer holding on to much more memory than its last use needed (kept: up to 4 MiB, or a quarter used).
fn oversized(buf: &Vec<u8>) -> bool {
    buf.capacity() > 4 * 1024 * 1024 && buf.len() < buf.capacity() / 4
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// A crash mid-checkpoint leaves an unfinished last line; cut it off so the next checkpoint starts a line.
fn cut_torn_checkpoint(path: &Path) -> std::io::Result<()> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if data.is_empty() || data.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    tracing::warn!(file = %path.display(), bytes = data.len() - keep, "audit checkpoints: unfinished last line cut off");
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(keep as u64)?;
    f.sync_all()
}

/// Move a torn tail aside and cut the segment back to its last good line.
fn set_aside(path: &Path, tail: &chain::Tail) -> std::io::Result<()> {
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = path.with_extension(format!("jsonl.torn-{stamp}"));
    std::fs::write(&aside, &tail.torn)?;
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(tail.good_len)?;
    f.sync_all()?;
    tracing::warn!(
        segment = %path.display(),
        bytes = tail.torn.len(),
        set_aside = %aside.display(),
        "audit log: torn last line (a write cut short) set aside; the chain continues from the last good record"
    );
    Ok(())
}

/// The last readable checkpoint of a stream directory.
pub fn last_checkpoint(stream_dir: &Path) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(stream_dir.join(chain::CHECKPOINTS)).ok()?;
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Checkpoint>(l).ok())
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

struct State {
    dir: PathBuf,
    options: Options,
    key: Arc<SigningKey>,
    shared: Arc<Shared>,
    file: File,
    path: PathBuf,
    /// First sequence number of the current segment.
    first: u64,
    size: u64,
    opened: Instant,
    next_seq: u64,
    prev: String,
    checkpoints: File,
    /// Last sequence number covered by a checkpoint.
    signed_seq: Option<u64>,
    last_checkpoint: Instant,
    /// When a checkpoint last failed to be written (retried after [`CHECKPOINT_RETRY`]).
    checkpoint_failed: Option<Instant>,
    /// Bytes of complete lines in the checkpoint file.
    checkpoints_len: u64,
    /// Last fsync of the segment (for [`Fsync::Interval`]).
    last_sync: Instant,
    /// Written but not fsynced.
    dirty: bool,
    /// Every record below this is fsynced (what waiters were last told).
    synced: u64,
    /// When the last batch was written (commits are at least `commit_window` apart).
    last_commit: Option<Instant>,
    last_retention: Option<Instant>,
    /// The batch being linked and written (kept between batches: no allocation per batch).
    out: Vec<u8>,
}

impl State {
    fn run(mut self) {
        let shared = self.shared.clone();
        let _stopped = Stopped(shared.clone());
        let batch = shared.batch;
        // The queue's buffers are swapped with these; both keep their capacity.
        let mut bodies: Vec<u8> = Vec::new();
        let mut lens: Vec<u32> = Vec::new();
        loop {
            let mut q = shared.lock();
            if q.quiet() {
                // Sleep until a first record, a flush or the close (the producer wakes us), or the next deadline.
                q.idle = true;
                q = shared
                    .wake
                    .wait_timeout_while(q, self.next_deadline(), |q| q.quiet())
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                q.idle = false;
                shared.wakeups.fetch_add(1, Ordering::Relaxed);
            }
            // Group commit: commits are at least a window apart. A record after a quiet spell is written at once
            // (its wait is one write and fsync); under load, records gather until a window has passed since the
            // last commit. Producers do not wake the writer meanwhile (only a full batch, a flush or the close end
            // the wait early), so a busy proxy pays one wake-up and at most one fsync per window, not per record.
            let wait = self.last_commit.map_or(Duration::ZERO, |t| {
                self.options.commit_window.saturating_sub(t.elapsed())
            });
            if !q.lens.is_empty() && !wait.is_zero() && q.gathering(batch) {
                q = shared
                    .wake
                    .wait_timeout_while(q, wait, |q| q.gathering(batch))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut q.buf, &mut bodies);
            std::mem::swap(&mut q.lens, &mut lens);
            // Fsync this batch only if a record in it was queued durable (someone waits for it on disk).
            let sync = matches!(self.options.fsync, Fsync::Batch) && q.sync_wanted > self.next_seq;
            let flush = q.flush_asked;
            let flushing = flush != q.flushed;
            let closed = q.closed;
            drop(q);
            if !lens.is_empty() {
                // Keep the checkpoint cadence: a batch is written in parts that end where a checkpoint is due,
                // so one falls every `checkpoint_records` records however the records were batched.
                let (mut rec, mut byte) = (0, 0);
                while rec < lens.len() {
                    // (While a failed checkpoint waits for its retry, the rest of the batch goes in one part.)
                    let room = if self.checkpoint_failed.is_some() {
                        u64::MAX
                    } else {
                        self.options
                            .checkpoint_records
                            .saturating_sub(self.unsigned())
                            .max(1)
                    };
                    let n = (lens.len() - rec).min(usize::try_from(room).unwrap_or(usize::MAX));
                    let bytes: usize = lens[rec..rec + n].iter().map(|&l| l as usize).sum();
                    self.write_batch(&bodies[byte..byte + bytes], &lens[rec..rec + n], sync);
                    rec += n;
                    byte += bytes;
                    if rec < lens.len() {
                        self.housekeeping(false);
                    }
                }
                // A burst (a stalled disk, a flood) must not keep its memory for good; a steady load keeps it.
                if oversized(&bodies) {
                    bodies = Vec::new();
                    lens = Vec::new();
                }
                bodies.clear();
                lens.clear();
                self.last_commit = Some(Instant::now());
                self.publish();
            }
            self.housekeeping(flushing || closed);
            self.publish();
            if flushing {
                shared.lock().flushed = flush;
                shared.progress.notify_all();
            }
            if closed {
                // No handle is left to queue more; everything queued was written above.
                break;
            }
        }
    }

    fn sync_file(&mut self) -> bool {
        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        self.file.sync_data().is_ok()
    }

    /// Tell waiters how far the file is written and fsynced (only when that moved).
    fn publish(&mut self) {
        let synced = if self.dirty {
            self.synced
        } else {
            self.next_seq
        };
        let changed = {
            let mut q = self.shared.lock();
            let changed = q.written != self.next_seq || q.synced != synced;
            q.written = self.next_seq;
            q.synced = synced;
            changed
        };
        self.synced = synced;
        if changed {
            self.shared.progress.notify_all();
            self.shared
                .written
                .send_replace((self.next_seq, synced, false));
        }
    }

    /// Records written since the last checkpoint (0 also when a checkpoint is ahead of the records on disk).
    fn unsigned(&self) -> u64 {
        self.next_seq
            .saturating_sub(self.signed_seq.map_or(0, |s| s + 1))
    }

    fn next_deadline(&self) -> Duration {
        let unsigned = self.unsigned();
        let mut d = if unsigned == 0 {
            // Nothing to sign: wake only for the periodic chores (retention).
            self.options.checkpoint_interval
        } else {
            self.options
                .checkpoint_interval
                .saturating_sub(self.last_checkpoint.elapsed())
        };
        if unsigned > 0 {
            if let Some(t) = self.checkpoint_failed {
                // A failing checkpoint file is retried once a second, not in a loop.
                d = d.max(CHECKPOINT_RETRY.saturating_sub(t.elapsed()));
            }
        }
        if self.dirty {
            d = d.min(self.sync_every().saturating_sub(self.last_sync.elapsed()));
        }
        d.max(Duration::from_millis(1))
    }

    /// How long written data may stay un-fsynced: the interval, or (under `Batch`, for records nobody waits
    /// for) [`LAZY_SYNC`].
    fn sync_every(&self) -> Duration {
        match self.options.fsync {
            Fsync::Interval(i) => i,
            Fsync::Batch => LAZY_SYNC,
        }
    }

    /// Link, write and (by policy) fsync one batch (`bodies` holds the records back to back, `lens` their
    /// lengths); retry until it lands.
    fn write_batch(&mut self, bodies: &[u8], lens: &[u32], sync: bool) {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let mut seq = self.next_seq;
        let mut prev = [0u8; 64];
        let mut at = 0;
        for (i, &len) in lens.iter().enumerate() {
            let body = &bodies[at..at + len as usize];
            at += len as usize;
            let start = out.len();
            let link = if i == 0 {
                self.prev.as_bytes()
            } else {
                &prev[..]
            };
            chain::append_line(&mut out, seq, link, body);
            prev = chain::hash_hex(&out[start..]);
            out.push(b'\n');
            seq += 1;
        }
        let mut attempt = 0u32;
        loop {
            let result = self.file.write_all(&out).and_then(|()| {
                if sync {
                    self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            });
            match result {
                Ok(()) => break,
                Err(e) => {
                    if attempt == 0 {
                        tracing::error!(
                            stream = %self.options.stream,
                            segment = %self.path.display(),
                            error = %e,
                            records = lens.len(),
                            "audit log write failed; personalization is off until it succeeds (retrying every second)"
                        );
                    }
                    attempt += 1;
                    self.shared.healthy.store(false, Ordering::Relaxed);
                    // Cut back any partial write, then retry the whole batch.
                    let _ = self.file.set_len(self.size);
                    std::thread::sleep(Duration::from_secs(1));
                    if let Ok(f) = open_append(&self.path) {
                        self.file = f;
                    }
                }
            }
        }
        if attempt > 0 {
            tracing::info!(stream = %self.options.stream, "audit log writable again");
            self.shared.healthy.store(true, Ordering::Relaxed);
        }
        self.size += out.len() as u64;
        if sync {
            // sync_data covered everything written before too.
            self.dirty = false;
            self.last_sync = Instant::now();
        } else if !self.dirty {
            self.dirty = true;
            // The lazy fsync's clock starts with the first un-fsynced write.
            self.last_sync = Instant::now();
        }
        self.next_seq = seq;
        self.prev = prev.iter().copied().map(char::from).collect();
        if oversized(&out) {
            out = Vec::new();
        }
        self.out = out;
    }

    /// Interval fsync, checkpoints, rotation, retention.
    fn housekeeping(&mut self, force_checkpoint: bool) {
        if self.dirty
            && (force_checkpoint || self.last_sync.elapsed() >= self.sync_every())
            && self.sync_file()
        {
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        let written = self.next_seq;
        let unsigned = self.unsigned();
        let retry_wait = self
            .checkpoint_failed
            .is_some_and(|t| t.elapsed() < CHECKPOINT_RETRY);
        let due = !retry_wait
            && (unsigned >= self.options.checkpoint_records
                || (unsigned > 0
                    && self.last_checkpoint.elapsed() >= self.options.checkpoint_interval));
        let rotate = self.size >= self.options.segment_bytes
            || (self.size > 0 && self.opened.elapsed() >= self.options.segment_age);
        if (due || rotate || force_checkpoint) && unsigned > 0 {
            self.checkpoint();
        } else if due || force_checkpoint {
            self.last_checkpoint = Instant::now();
        }
        if rotate && self.signed_seq == written.checked_sub(1) {
            self.rotate();
        }
        if self
            .last_retention
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(3600))
        {
            self.retention();
            self.last_retention = Some(Instant::now());
        }
    }

    fn checkpoint(&mut self) {
        let Some(seq) = self.next_seq.checked_sub(1) else {
            return;
        };
        // The file's records must be durable before a signature vouches for them.
        if self.dirty {
            if !self.sync_file() {
                self.checkpoint_failed = Some(Instant::now());
                return;
            }
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        let c = Checkpoint::new(
            &self.key,
            self.options.instance.as_deref(),
            &self.options.stream,
            seq,
            &self.prev,
            now_rfc3339(),
        );
        let Ok(mut line) = serde_json::to_vec(&c) else {
            return;
        };
        line.push(b'\n');
        match self
            .checkpoints
            .write_all(&line)
            .and_then(|()| self.checkpoints.sync_data())
        {
            Ok(()) => {
                self.signed_seq = Some(seq);
                self.last_checkpoint = Instant::now();
                self.checkpoints_len += line.len() as u64;
                self.checkpoint_failed = None;
            }
            Err(e) => {
                if self.checkpoint_failed.is_none() {
                    tracing::error!(stream = %self.options.stream, error = %e, "audit checkpoint not written; retrying every second");
                }
                // Cut back a partial line so the next checkpoint starts its own.
                let _ = self.checkpoints.set_len(self.checkpoints_len);
                self.checkpoint_failed = Some(Instant::now());
            }
        }
    }

    fn rotate(&mut self) {
        let path = self.dir.join(chain::segment_name(self.next_seq));
        match open_append(&path) {
            Ok(f) => {
                let _ = self.file.sync_all();
                self.file = f;
                self.path = path;
                self.first = self.next_seq;
                self.size = 0;
                self.opened = Instant::now();
            }
            Err(e) => {
                tracing::error!(segment = %path.display(), error = %e, "audit segment rotation failed; keeping the current one");
            }
        }
    }

    fn retention(&mut self) {
        let Ok(segments) = chain::segments(&self.dir) else {
            return;
        };
        let keep_from = self
            .options
            .keep_from
            .as_ref()
            .map(|k| k.load(Ordering::Acquire));
        let firsts: Vec<u64> = segments.iter().map(|(f, _)| *f).collect();
        for (i, (first, path)) in segments.into_iter().enumerate() {
            if first >= self.first {
                break;
            }
            // A segment holding a record the record store does not have yet stays.
            let next_first = firsts.get(i + 1).copied().unwrap_or(self.first);
            if keep_from.is_some_and(|k| next_first > k) {
                break;
            }
            let old = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > self.options.retention);
            if old {
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(segment = %path.display(), "audit segment past retention deleted")
                    }
                    Err(e) => {
                        tracing::warn!(segment = %path.display(), error = %e, "audit segment past retention not deleted")
                    }
                }
            }
        }
    }
}
