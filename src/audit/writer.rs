//! The writer: one thread per stream that owns the segment files, takes records from a bounded queue, appends
//! them in batches (group commit), links them into the hash chain, fsyncs by policy, signs checkpoints, rotates
//! segments and applies retention.
//!
//! Producers call [`Writer::submit`], which never blocks: the record is serialized on the caller's thread and
//! queued, or refused at once (queue full, writer failing) — and then the caller must not act on it. The returned
//! [`Ack`] resolves when the record is written (and fsynced, if the policy says so).
//!
//! Failure: when a write or fsync fails, the batch stays in memory and is retried every second (the file is cut
//! back to its last good line first); meanwhile the writer reports itself unhealthy and `submit` refuses, so no
//! new personalization depends on a record that may not land. Start-up: a torn last line (a crash mid-write) is
//! moved to `<segment>.torn-<unix time>` and the chain continues from the last good record.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::chain;
use super::keys::{Checkpoint, SigningKey};

/// When the writer fsyncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every batch (group commit): a record is durable when its ack resolves.
    Batch,
    /// At most this often; acks resolve after the write (in the page cache), before the fsync.
    Interval(Duration),
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Stream name (`audit`, `feedback`): the directory under the audit dir and the checkpoints' stream.
    pub stream: String,
    /// Queue capacity (records).
    pub queue: usize,
    /// Most records per write.
    pub batch: usize,
    /// Group-commit window: after the first record of a batch arrives, the writer waits this long for more
    /// before writing (unless the batch is full or a flush is asked for). Without it every record costs the
    /// writer a wake-up, a write and (under `Fsync::Batch`) an fsync of its own — on a busy proxy that was
    /// more than the rest of the request; with it a record costs a little memory copy.
    pub commit_window: Duration,
    pub fsync: Fsync,
    pub checkpoint_records: u64,
    pub checkpoint_interval: Duration,
    pub segment_bytes: u64,
    pub segment_age: Duration,
    /// Segments whose last write is older than this are deleted (their sealing checkpoints stay).
    pub retention: Duration,
}

impl Options {
    pub fn new(stream: &str) -> Options {
        Options {
            stream: stream.to_string(),
            queue: 65_536,
            batch: 4096,
            commit_window: Duration::from_millis(10),
            fsync: Fsync::Batch,
            checkpoint_records: 10_000,
            checkpoint_interval: Duration::from_secs(10),
            segment_bytes: 64 * 1024 * 1024,
            segment_age: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(400 * 24 * 3600),
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
}

impl Refused {
    /// The `result` label of `concierge_decision_records_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::QueueFull => "refused_queue_full",
            Refused::Failing => "refused_failing",
            Refused::Stopped => "refused_stopped",
            Refused::TooLarge => "refused_too_large",
        }
    }
}

/// Resolves to the record's sequence number once written (and fsynced under [`Fsync::Batch`]).
pub type Ack = tokio::sync::oneshot::Receiver<u64>;

struct Job {
    body: Vec<u8>,
    ack: Option<tokio::sync::oneshot::Sender<u64>>,
}

enum Msg {
    Record(Job),
    /// Write a checkpoint now, then answer (shutdown, tests).
    Flush(std::sync::mpsc::Sender<()>),
}

/// A handle producers share. Dropping the last one (and [`Writer::close`]) ends the thread after it wrote
/// everything queued and a final checkpoint.
#[derive(Clone)]
pub struct Writer {
    tx: SyncSender<Msg>,
    /// Cleared while writes fail; `submit` refuses meanwhile.
    healthy: Arc<AtomicBool>,
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
        let healthy = Arc::new(AtomicBool::new(true));
        let (tx, rx) = sync_channel(options.queue.max(1));
        let thread_name = format!("audit-{}", options.stream);
        let mut state = State {
            dir: stream_dir,
            options,
            key,
            healthy: healthy.clone(),
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
            dirty: false,
            last_retention: None,
        };
        state.signed_seq = last_checkpoint(&state.dir).map(|c| c.seq);
        let handle = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || state.run(rx))
            .map_err(io(Path::new("audit writer thread")))?;
        Ok((Writer { tx, healthy }, handle))
    }

    /// Queue a record (its JSON object). Never blocks.
    pub fn submit(&self, body: Vec<u8>) -> Result<Ack, Refused> {
        if body.len() > chain::MAX_LINE - 200 {
            return Err(Refused::TooLarge);
        }
        if !self.healthy.load(Ordering::Relaxed) {
            return Err(Refused::Failing);
        }
        let (ack, rx) = tokio::sync::oneshot::channel();
        match self.tx.try_send(Msg::Record(Job {
            body,
            ack: Some(ack),
        })) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(Refused::QueueFull),
            Err(TrySendError::Disconnected(_)) => Err(Refused::Stopped),
        }
    }

    /// Serialize and queue a record.
    pub fn submit_record<T: serde::Serialize>(&self, record: &T) -> Result<Ack, Refused> {
        let body = serde_json::to_vec(record).map_err(|_| Refused::TooLarge)?;
        self.submit(body)
    }

    /// Write everything queued so far and a checkpoint; returns when done (blocking).
    /// Waits at most 10 s (a writer stuck on a failing disk must not hold up a shutdown forever).
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.try_send(Msg::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
    }
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
    healthy: Arc<AtomicBool>,
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
    /// Written but not fsynced.
    dirty: bool,
    last_retention: Option<Instant>,
}

impl State {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<Job> = Vec::with_capacity(self.options.batch);
        let mut flushes = Vec::new();
        loop {
            let wait = self.next_deadline();
            let first = match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Some(m) = first {
                match m {
                    Msg::Record(j) => batch.push(j),
                    Msg::Flush(done) => flushes.push(done),
                }
                let drain = |batch: &mut Vec<Job>, flushes: &mut Vec<_>| {
                    while batch.len() < self.options.batch {
                        match rx.try_recv() {
                            Ok(Msg::Record(j)) => batch.push(j),
                            Ok(Msg::Flush(done)) => flushes.push(done),
                            Err(_) => break,
                        }
                    }
                };
                drain(&mut batch, &mut flushes);
                // Group commit: give the records of the next moment a chance to share this write. Producers never
                // wake a sleeping writer, so a busy proxy pays one wake-up per window, not one per record.
                if batch.len() < self.options.batch
                    && flushes.is_empty()
                    && !self.options.commit_window.is_zero()
                {
                    std::thread::sleep(self.options.commit_window);
                    drain(&mut batch, &mut flushes);
                }
            }
            if !batch.is_empty() {
                self.write_batch(&mut batch);
            }
            self.housekeeping(!flushes.is_empty());
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
        // Everyone hung up: everything queued was written above; seal with a checkpoint.
        self.housekeeping(true);
    }

    fn next_deadline(&self) -> Duration {
        let mut d = self
            .options
            .checkpoint_interval
            .saturating_sub(self.last_checkpoint.elapsed());
        if let Fsync::Interval(i) = self.options.fsync {
            if self.dirty {
                d = d.min(i);
            }
        }
        d.max(Duration::from_millis(1))
    }

    /// Link, write and (by policy) fsync one batch; retry until it lands.
    fn write_batch(&mut self, batch: &mut Vec<Job>) {
        let mut buf = Vec::with_capacity(batch.len() * 512);
        let mut seq = self.next_seq;
        let mut prev = std::mem::take(&mut self.prev);
        for job in batch.iter() {
            let line = chain::line(seq, &prev, &job.body);
            prev = chain::hash(&line);
            buf.extend_from_slice(&line);
            buf.push(b'\n');
            seq += 1;
        }
        let mut attempt = 0u32;
        loop {
            let sync = matches!(self.options.fsync, Fsync::Batch);
            let result = self.file.write_all(&buf).and_then(|()| {
                if sync {
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
                            records = batch.len(),
                            "audit log write failed; personalization is off until it succeeds (retrying every second)"
                        );
                    }
                    attempt += 1;
                    self.healthy.store(false, Ordering::Relaxed);
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
            self.healthy.store(true, Ordering::Relaxed);
        }
        self.size += buf.len() as u64;
        self.dirty = !matches!(self.options.fsync, Fsync::Batch);
        self.next_seq = seq;
        self.prev = prev;
        let first = seq - batch.len() as u64;
        for (i, job) in batch.drain(..).enumerate() {
            if let Some(ack) = job.ack {
                let _ = ack.send(first + i as u64);
            }
        }
    }

    /// Interval fsync, checkpoints, rotation, retention.
    fn housekeeping(&mut self, force_checkpoint: bool) {
        if self.dirty {
            if let Fsync::Interval(_) = self.options.fsync {
                if self.file.sync_data().is_ok() {
                    self.dirty = false;
                }
            }
        }
        let written = self.next_seq;
        let unsigned = written - self.signed_seq.map_or(0, |s| s + 1);
        let due = unsigned >= self.options.checkpoint_records
            || (unsigned > 0 && self.last_checkpoint.elapsed() >= self.options.checkpoint_interval);
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
            if self.file.sync_data().is_err() {
                return;
            }
            self.dirty = false;
        }
        let c = Checkpoint::new(
            &self.key,
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
            }
            Err(e) => {
                tracing::error!(stream = %self.options.stream, error = %e, "audit checkpoint not written; will retry");
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
        for (first, path) in segments {
            if first >= self.first {
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
