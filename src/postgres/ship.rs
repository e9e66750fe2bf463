//! Shipping a stream's records and checkpoints from the local files into the record store. The local file is
//! the source of truth and is already on disk, so shipping reads it: from the record after the last one the
//! database holds for (instance, stream), in order, in batches of one transaction each. Every row is keyed by
//! (instance, stream, seq) and inserted with `ON CONFLICT DO NOTHING`, so a batch resent after a crash or a
//! network failure is harmless: nothing is lost (the next run starts after what was committed) and nothing is
//! duplicated.
//!
//! A [`StreamShipper`] keeps its place between runs (segment, byte offset, next seq), so the proxy's shipper
//! reads only what was appended since; any error forgets the place, and the next run asks the database again
//! where to start — the database, not the shipper's memory, says what is shipped.
//!
//! Invariants: records go in sequence order and stop at the first line that cannot be shipped as it is (an
//! unfinished last line, or one that is not a record): never a gap the verifier would have to explain. A
//! checkpoint goes only once the record it covers is in the database.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{db, PgError};
use crate::audit::chain;

/// What one run shipped.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct Shipped {
    pub records: u64,
    pub checkpoints: u64,
    /// The run stopped at its batch limit with records left to ship.
    pub more: bool,
}

/// The rows of one transaction, column by column (the insert unnests them).
#[derive(Default)]
struct Batch {
    seq: Vec<i64>,
    time: Vec<String>,
    kind: Vec<String>,
    line: Vec<String>,
    hash: Vec<String>,
    prev: Vec<String>,
    request_id: Vec<Option<String>>,
    consent_id: Vec<Option<String>>,
    company: Vec<Option<String>>,
    experiment: Vec<Option<String>>,
    months: BTreeSet<String>,
}

impl Batch {
    fn len(&self) -> usize {
        self.seq.len()
    }

    /// Add one complete line; `false` if it is not a record that can be shipped as it is.
    fn push(&mut self, line: &[u8]) -> bool {
        let (Ok(head), Ok(text)) = (chain::head(line), std::str::from_utf8(line)) else {
            return false;
        };
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return false;
        };
        let field = |k: &str| v[k].as_str().map(str::to_string);
        let Some(time) = field("time") else {
            return false;
        };
        self.months.insert(format!(
            "{}-01T00:00:00Z",
            time.get(..7).unwrap_or("1970-01")
        ));
        self.seq.push(head.seq as i64);
        self.kind.push(field("type").unwrap_or_default());
        self.hash.push(chain::hash(line));
        self.prev.push(head.prev);
        self.request_id.push(field("request_id"));
        self.consent_id.push(field("consent_id"));
        self.company
            .push(field("company").or_else(|| field("account")));
        self.experiment.push(field("experiment"));
        self.time.push(time);
        self.line.push(text.to_string());
        true
    }
}

const INSERT: &str = "INSERT INTO concierge_record
    (instance, stream, seq, time, type, line, hash, prev, request_id, consent_id, company, experiment)
  SELECT $1, $2, r.seq, r.time::timestamptz, r.type, r.line, r.hash, r.prev, r.request_id, r.consent_id,
         r.company, r.experiment
  FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
              $10::text[], $11::text[], $12::text[])
       AS r(seq, time, type, line, hash, prev, request_id, consent_id, company, experiment)
  ON CONFLICT DO NOTHING";

async fn commit(
    client: &mut tokio_postgres::Client,
    url: &str,
    instance: &str,
    stream: &str,
    b: &Batch,
) -> Result<u64, PgError> {
    let e = db(url);
    let tx = client.transaction().await.map_err(&e)?;
    for month in &b.months {
        tx.execute(
            "SELECT concierge_partition($1::text::timestamptz)",
            &[month],
        )
        .await
        .map_err(&e)?;
    }
    let n = tx
        .execute(
            INSERT,
            &[
                &instance,
                &stream,
                &b.seq,
                &b.time,
                &b.kind,
                &b.line,
                &b.hash,
                &b.prev,
                &b.request_id,
                &b.consent_id,
                &b.company,
                &b.experiment,
            ],
        )
        .await
        .map_err(&e)?;
    tx.commit().await.map_err(&e)?;
    Ok(n)
}

/// Where the next unshipped record starts.
#[derive(Debug, Clone)]
struct Place {
    /// The segment's first seq (its name) and path.
    first: u64,
    path: PathBuf,
    /// Bytes of the segment already shipped (the next line starts here).
    offset: u64,
    /// The seq of that next record.
    next_seq: u64,
}

/// One stream's shipper, keeping its place between runs.
pub struct StreamShipper {
    instance: String,
    stream: String,
    dir: PathBuf,
    batch: usize,
    place: Option<Place>,
    /// Bytes of the checkpoint file already shipped.
    checkpoints_offset: u64,
    /// Transactions a run sends at most (the proxy's shipper: its lag and health are refreshed between runs);
    /// `None`: until caught up.
    pub max_batches: Option<usize>,
}

/// A complete line read from a segment, with the offset after it.
type Read1 = (Vec<u8>, u64);

fn read_line(r: &mut BufReader<std::fs::File>, offset: u64) -> std::io::Result<Option<Read1>> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(chain::MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 || buf.last() != Some(&b'\n') {
        return Ok(None); // the end, or an unfinished last line (the writer is mid-write, or it is torn)
    }
    buf.pop();
    Ok(Some((buf, offset + n as u64)))
}

impl StreamShipper {
    /// `stream_dir`: `<audit.dir>/<stream>`.
    pub fn new(instance: &str, stream_dir: &Path, batch: usize) -> StreamShipper {
        StreamShipper {
            instance: instance.to_string(),
            stream: stream_dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("audit")
                .to_string(),
            dir: stream_dir.to_path_buf(),
            batch: batch.max(1),
            place: None,
            checkpoints_offset: 0,
            max_batches: None,
        }
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The first seq the database does not hold yet, once a run has found it.
    pub fn next_seq(&self) -> Option<u64> {
        self.place.as_ref().map(|p| p.next_seq)
    }

    fn io(&self) -> impl Fn(std::io::Error) -> PgError {
        io_error(&self.dir)
    }

    /// Where the first record after `have` (the database's highest seq) starts on disk.
    fn locate(&self, have: Option<u64>) -> Result<Option<Place>, PgError> {
        let io = self.io();
        let segments = chain::segments(&self.dir).map_err(&io)?;
        let want = have.map_or(0, |h| h + 1);
        // The last segment starting at or before `want` holds it (or the first segment, if retention took it).
        let start = segments
            .iter()
            .rposition(|(first, _)| *first <= want)
            .unwrap_or(0);
        let Some((first, path)) = segments.get(start) else {
            return Ok(None);
        };
        let mut r = BufReader::new(std::fs::File::open(path).map_err(&io)?);
        let mut offset = 0;
        let mut next_seq = *first;
        while next_seq < want {
            match read_line(&mut r, offset).map_err(&io)? {
                Some((line, after)) => {
                    let Ok(head) = chain::head(&line) else { break };
                    if head.seq >= want {
                        break;
                    }
                    offset = after;
                    next_seq = head.seq + 1;
                }
                None => break,
            }
        }
        Ok(Some(Place {
            first: *first,
            path: path.clone(),
            offset,
            next_seq,
        }))
    }

    /// Ship what the database does not hold yet. On an error the place is forgotten (the next run asks the
    /// database where to start).
    pub async fn run(
        &mut self,
        client: &mut tokio_postgres::Client,
        url: &str,
    ) -> Result<Shipped, PgError> {
        let result = self.run_inner(client, url).await;
        if result.is_err() {
            self.place = None;
            self.checkpoints_offset = 0;
        }
        result
    }

    async fn run_inner(
        &mut self,
        client: &mut tokio_postgres::Client,
        url: &str,
    ) -> Result<Shipped, PgError> {
        let e = db(url);
        if self.place.is_none() {
            let have: Option<i64> = client
                .query_one(
                    "SELECT max(seq) FROM concierge_record WHERE instance = $1 AND stream = $2",
                    &[&self.instance, &self.stream],
                )
                .await
                .map_err(&e)?
                .get(0);
            self.place = self.locate(have.map(|h| h.max(0) as u64))?;
        }
        let mut shipped = Shipped::default();
        let read = |place: Place| {
            let (dir, batch) = (self.dir.clone(), self.batch);
            tokio::task::spawn_blocking(move || read_batch(&dir, batch, &place))
        };
        let joined = |e: tokio::task::JoinError| PgError::Db {
            at: self.dir.display().to_string(),
            reason: e.to_string(),
        };
        let mut next = match self.place.clone() {
            Some(place) => Some(read(place).await.map_err(joined)??),
            None => None,
        };
        let mut batches = 0;
        while let Some((batch, after)) = next.take() {
            if batch.len() == 0 {
                self.place = Some(after);
                break;
            }
            // The next batch is read from disk while this one commits.
            let reading = read(after.clone());
            shipped.records += commit(client, url, &self.instance, &self.stream, &batch).await?;
            self.place = Some(after);
            batches += 1;
            let following = reading.await.map_err(joined)??;
            if self.max_batches.is_some_and(|m| batches >= m) {
                shipped.more = following.0.len() > 0;
                break;
            }
            next = Some(following);
        }
        shipped.checkpoints = self.ship_checkpoints(client, url).await?;
        Ok(shipped)
    }

    /// Checkpoint lines not shipped yet whose record is in the database, in one transaction.
    async fn ship_checkpoints(
        &mut self,
        client: &mut tokio_postgres::Client,
        url: &str,
    ) -> Result<u64, PgError> {
        let io = self.io();
        let path = self.dir.join(chain::CHECKPOINTS);
        let Some(shipped_below) = self.next_seq() else {
            return Ok(0);
        };
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(io(err)),
        };
        let len = file.metadata().map_err(&io)?.len();
        if len < self.checkpoints_offset {
            self.checkpoints_offset = 0; // the file is not the one read before: send it all again
        }
        if len == self.checkpoints_offset {
            return Ok(0);
        }
        file.seek(SeekFrom::Start(self.checkpoints_offset))
            .map_err(&io)?;
        let mut r = BufReader::new(file);
        let mut offset = self.checkpoints_offset;
        let mut rows: Vec<(i64, String)> = Vec::new();
        while let Some((line, after)) = read_line(&mut r, offset).map_err(&io)? {
            let text = String::from_utf8_lossy(&line).into_owned();
            let seq = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["seq"].as_i64());
            match seq {
                // Not yet: its record is not in the database.
                Some(s) if s < 0 || s as u64 >= shipped_below => break,
                Some(s) => rows.push((s, text)),
                None => {} // not a checkpoint; the verifier reports it on disk
            }
            offset = after;
        }
        if rows.is_empty() {
            self.checkpoints_offset = offset;
            return Ok(0);
        }
        let e = db(url);
        let tx = client.transaction().await.map_err(&e)?;
        let mut n = 0;
        for (seq, text) in &rows {
            n += tx
                .execute(
                    "INSERT INTO concierge_checkpoint (instance, stream, seq, line) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&self.instance, &self.stream, seq, text],
                )
                .await
                .map_err(&e)?;
        }
        tx.commit().await.map_err(&e)?;
        self.checkpoints_offset = offset;
        Ok(n)
    }
}

/// Up to `batch` complete records from `place`, crossing into the next segment at the end of one; and the
/// place after them.
fn read_batch(dir: &Path, batch: usize, place: &Place) -> Result<(Batch, Place), PgError> {
    let io = io_error(dir);
    let mut b = Batch::default();
    let mut at = place.clone();
    let mut r = BufReader::new(std::fs::File::open(&at.path).map_err(&io)?);
    r.seek(SeekFrom::Start(at.offset)).map_err(&io)?;
    while b.len() < batch {
        match read_line(&mut r, at.offset).map_err(&io)? {
            Some((line, after)) => {
                let in_order = chain::head(&line).is_ok_and(|h| h.seq == at.next_seq);
                if !in_order || !b.push(&line) {
                    break; // not a record in sequence: stop here, never a gap
                }
                at.offset = after;
                at.next_seq += 1;
            }
            None => {
                // The end of this segment: go on in the next one if the chain continues there.
                let segments = chain::segments(dir).map_err(&io)?;
                match segments.iter().find(|(first, _)| *first > at.first) {
                    Some((first, path)) if *first == at.next_seq => {
                        at = Place {
                            first: *first,
                            path: path.clone(),
                            offset: 0,
                            next_seq: *first,
                        };
                        r = BufReader::new(std::fs::File::open(&at.path).map_err(&io)?);
                    }
                    _ => break,
                }
            }
        }
    }
    Ok((b, at))
}

fn io_error(dir: &Path) -> impl Fn(std::io::Error) -> PgError {
    let at = dir.display().to_string();
    move |err| PgError::Db {
        at: at.clone(),
        reason: err.to_string(),
    }
}

/// Ship what the database does not hold yet of the stream at `stream_dir`, `batch` records a transaction
/// (`concierge audit ship`).
pub async fn ship_stream(
    client: &mut tokio_postgres::Client,
    url: &str,
    instance: &str,
    stream_dir: &Path,
    batch: usize,
) -> Result<Shipped, PgError> {
    StreamShipper::new(instance, stream_dir, batch)
        .run(client, url)
        .await
}
