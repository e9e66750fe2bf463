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
    /// The report's fact of an exposure or conversion (`experiments::report::Fact`; schema 4), else `None`.
    fact_time: Vec<Option<String>>,
    arm: Vec<Option<&'static str>>,
    account: Vec<Option<String>>,
    visitor: Vec<Option<String>>,
    goal: Vec<Option<String>>,
    control: Vec<Option<f64>>,
    months: BTreeSet<String>,
}

impl Batch {
    fn len(&self) -> usize {
        self.seq.len()
    }

    /// Add one complete line; `false` if it is not a record that can be shipped as it is.
    fn push(&mut self, line: &[u8]) -> bool {
        let (Ok(head), Some(d)) = (chain::head(line), Derived::of(line)) else {
            return false;
        };
        let Ok(text) = std::str::from_utf8(line) else {
            return false;
        };
        self.months.insert(format!(
            "{}-01T00:00:00Z",
            d.time.get(..7).unwrap_or("1970-01")
        ));
        self.seq.push(head.seq as i64);
        self.kind.push(d.kind);
        self.hash.push(chain::hash(line));
        self.prev.push(head.prev);
        self.request_id.push(d.request_id);
        self.consent_id.push(d.consent_id);
        match d.fact {
            Some(x) => {
                self.fact_time.push(Some(x.time));
                self.arm.push(Some(x.arm));
                self.account.push(Some(x.account));
                self.visitor.push(Some(x.visitor));
                self.goal.push(Some(x.goal));
                self.control.push(x.control);
            }
            None => {
                self.fact_time.push(None);
                self.arm.push(None);
                self.account.push(None);
                self.visitor.push(None);
                self.goal.push(None);
                self.control.push(None);
            }
        }
        self.company.push(d.company);
        self.experiment.push(d.experiment);
        self.time.push(d.time);
        self.line.push(text.to_string());
        true
    }
}

/// Every column of a record's row the shipper derives from its line (all but the key, `line`, `hash` and
/// `prev`): what shipping writes and what verification checks a row's columns against.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Derived {
    pub time: String,
    pub kind: String,
    pub request_id: Option<String>,
    pub consent_id: Option<String>,
    /// `company`, else `account`.
    pub company: Option<String>,
    pub experiment: Option<String>,
    pub fact: Option<FactColumns>,
}

/// An exposure's or conversion's `experiments::report::Fact` as its row's columns hold it (schema 4).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FactColumns {
    pub time: String,
    pub arm: &'static str,
    pub account: String,
    pub visitor: String,
    pub goal: String,
    pub control: Option<f64>,
}

impl Derived {
    /// `None` if the line is not a record that can be shipped as it is (not UTF-8, not a JSON object, no
    /// string `time`).
    pub(crate) fn of(line: &[u8]) -> Option<Derived> {
        let text = std::str::from_utf8(line).ok()?;
        let f = Columns::of(text)?;
        let time = f.time?;
        // The fact, for the only records that have one (the second parse is of those alone).
        let fact = matches!(f.kind.as_deref(), Some("exposure" | "conversion"))
            .then(|| crate::experiments::report::Fact::of(line))
            .flatten()
            .and_then(|x| {
                Some(FactColumns {
                    arm: x.arm?.name(),
                    time: x.time.into_owned(),
                    account: x.account.into_owned(),
                    visitor: x.visitor.into_owned(),
                    goal: x.goal.into_owned(),
                    control: x.control,
                })
            });
        Some(Derived {
            time,
            kind: f.kind.unwrap_or_default(),
            request_id: f.request_id,
            consent_id: f.consent_id,
            company: f.company.or(f.account),
            experiment: f.experiment,
            fact,
        })
    }
}

/// The columns a record row is searched by, each the field's string value (`None`: absent or not a string).
#[derive(Default)]
struct Columns {
    time: Option<String>,
    kind: Option<String>,
    request_id: Option<String>,
    consent_id: Option<String>,
    company: Option<String>,
    account: Option<String>,
    experiment: Option<String>,
}

/// The same fields, borrowed from the line without building the whole document (parsing every line into a
/// `serde_json::Value` was the largest part of the shipper's CPU: a map and a string per field).
#[derive(serde::Deserialize)]
struct Borrowed<'a> {
    #[serde(borrow)]
    time: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, rename = "type")]
    kind: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    request_id: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    consent_id: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    company: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    account: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    experiment: Option<&'a serde_json::value::RawValue>,
}

impl Columns {
    /// `None` if `text` is not a JSON object.
    fn of(text: &str) -> Option<Columns> {
        let string = |raw: Option<&serde_json::value::RawValue>| {
            raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok())
        };
        match serde_json::from_str::<Borrowed>(text) {
            Ok(b) => Some(Columns {
                time: string(b.time),
                kind: string(b.kind),
                request_id: string(b.request_id),
                consent_id: string(b.consent_id),
                company: string(b.company),
                account: string(b.account),
                experiment: string(b.experiment),
            }),
            // What the borrowing parse refuses (a repeated field, say) is read as a whole document, which
            // takes the last of a repeated field, as every other reader of the line does.
            Err(_) => {
                let v = serde_json::from_str::<Value>(text).ok()?;
                let field = |k: &str| v[k].as_str().map(str::to_string);
                v.is_object().then(|| Columns {
                    time: field("time"),
                    kind: field("type"),
                    request_id: field("request_id"),
                    consent_id: field("consent_id"),
                    company: field("company"),
                    account: field("account"),
                    experiment: field("experiment"),
                })
            }
        }
    }
}

const INSERT: &str = "INSERT INTO concierge_record
    (instance, stream, seq, time, type, line, hash, prev, request_id, consent_id, company, experiment,
     fact_time, arm, account, visitor, goal, control)
  SELECT $1, $2, r.seq, r.time::timestamptz, r.type, r.line, r.hash, r.prev, r.request_id, r.consent_id,
         r.company, r.experiment, r.fact_time, r.arm, r.account, r.visitor, r.goal, r.control
  FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
              $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
              $17::text[], $18::float8[])
       AS r(seq, time, type, line, hash, prev, request_id, consent_id, company, experiment,
            fact_time, arm, account, visitor, goal, control)
  ON CONFLICT DO NOTHING";

/// Create the partitions of `months` not known to exist yet, each in a transaction of its own (before the
/// batches that need them are inserted: a partition created inside one of a group's concurrent transactions
/// would lock the table against the others until it commits, which waits for them).
async fn partitions(
    client: &tokio_postgres::Client,
    url: &str,
    known: &mut BTreeSet<String>,
    group: &[Batch],
) -> Result<(), PgError> {
    let e = db(url);
    for month in group.iter().flat_map(|b| &b.months) {
        if !known.contains(month) {
            client
                .execute(
                    "SELECT concierge_partition($1::text::timestamptz)",
                    &[month],
                )
                .await
                .map_err(&e)?;
            known.insert(month.clone());
        }
    }
    Ok(())
}

async fn insert(
    tx: &tokio_postgres::Transaction<'_>,
    url: &str,
    instance: &str,
    stream: &str,
    b: &Batch,
) -> Result<u64, PgError> {
    tx.execute(
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
            &b.fact_time,
            &b.arm,
            &b.account,
            &b.visitor,
            &b.goal,
            &b.control,
        ],
    )
    .await
    .map_err(db(url))
}

/// Insert a group of consecutive batches, one transaction each on a connection each, all at once (a single
/// backend inserting is CPU-bound on one core: index maintenance), then commit them in sequence order, each
/// only once the one before it is confirmed. A failure anywhere leaves no gap: what committed is a prefix of
/// the group, and the transactions after a failed commit are rolled back (dropped) — also when this process
/// dies between two commits, as the database rolls back a transaction whose connection is gone. So the
/// highest seq in the database is still where the next run starts.
///
/// Two shippers of one stream at once (an operator's `audit ship` beside the proxy's) must not interleave
/// their groups: a transaction waiting for the other shipper's uncommitted rows while that shipper waits for
/// this one's insert before it commits is a deadlock the database cannot see (one edge of it is in the
/// client). The first transaction takes an advisory lock on (instance, stream) before any insert starts, so
/// groups of one stream go one at a time.
async fn commit_group(
    clients: &mut [tokio_postgres::Client],
    url: &str,
    instance: &str,
    stream: &str,
    group: &[Batch],
) -> Result<u64, PgError> {
    let e = db(url);
    let mut txs = Vec::with_capacity(group.len());
    for client in clients.iter_mut().take(group.len()) {
        txs.push(client.transaction().await.map_err(&e)?);
    }
    if let (Some(first), true) = (txs.first(), group.len() > 1) {
        first
            .execute(
                "SELECT pg_advisory_xact_lock(7268156, hashtext($1 || '/' || $2))",
                &[&instance, &stream],
            )
            .await
            .map_err(&e)?;
    }
    let inserts = txs
        .iter()
        .zip(group)
        .map(|(tx, b)| insert(tx, url, instance, stream, b));
    let rows: u64 = futures_util::future::try_join_all(inserts)
        .await?
        .into_iter()
        .sum();
    for tx in txs {
        tx.commit().await.map_err(&e)?;
    }
    Ok(rows)
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
    /// The months whose partition is known to exist (forgotten with the place).
    months: BTreeSet<String>,
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
            months: BTreeSet::new(),
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

    /// Ship what the database does not hold yet, over `clients` (at least one; a group of as many batches as
    /// there are clients is inserted at once, see [`commit_group`]; checkpoints go over the first). On an
    /// error the place is forgotten (the next run asks the database where to start).
    pub async fn run(
        &mut self,
        clients: &mut [tokio_postgres::Client],
        url: &str,
    ) -> Result<Shipped, PgError> {
        let result = self.run_inner(clients, url).await;
        if result.is_err() {
            self.place = None;
            self.checkpoints_offset = 0;
            self.months.clear();
        }
        result
    }

    async fn run_inner(
        &mut self,
        clients: &mut [tokio_postgres::Client],
        url: &str,
    ) -> Result<Shipped, PgError> {
        let e = db(url);
        let Some(first) = clients.first() else {
            return Ok(Shipped::default());
        };
        if self.place.is_none() {
            let have: Option<i64> = first
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
        let width = clients.len();
        let budget = self.max_batches.unwrap_or(usize::MAX);
        let read = |place: Place, n: usize| {
            let (dir, batch) = (self.dir.clone(), self.batch);
            tokio::task::spawn_blocking(move || read_group(&dir, batch, n, &place))
        };
        let joined = |e: tokio::task::JoinError| PgError::Db {
            at: self.dir.display().to_string(),
            reason: e.to_string(),
        };
        let mut next = match self.place.clone() {
            Some(place) => Some(read(place, width.min(budget)).await.map_err(joined)??),
            None => None,
        };
        let mut batches = 0;
        while let Some((group, after)) = next.take() {
            if group.is_empty() {
                self.place = Some(after);
                break;
            }
            batches += group.len();
            // The next group is read from disk while this one commits.
            let left = budget.saturating_sub(batches);
            let reading = read(after.clone(), width.min(left.max(1)));
            if let Some(first) = clients.first() {
                partitions(first, url, &mut self.months, &group).await?;
            }
            shipped.records +=
                commit_group(clients, url, &self.instance, &self.stream, &group).await?;
            self.place = Some(after);
            let following = reading.await.map_err(joined)??;
            if left == 0 {
                shipped.more = !following.0.is_empty();
                break;
            }
            next = Some(following);
        }
        if let Some(first) = clients.first_mut() {
            shipped.checkpoints = self.ship_checkpoints(first, url).await?;
        }
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

/// Up to `n` batches of `batch` records from `place`, stopping after one that is not full (the end of what
/// is written, or a line that cannot be shipped); and the place after them.
fn read_group(
    dir: &Path,
    batch: usize,
    n: usize,
    place: &Place,
) -> Result<(Vec<Batch>, Place), PgError> {
    let mut group = Vec::with_capacity(n);
    let mut at = place.clone();
    while group.len() < n {
        let (b, after) = read_batch(dir, batch, &at)?;
        let full = b.len() == batch;
        if b.len() > 0 {
            group.push(b);
        }
        at = after;
        if !full {
            break;
        }
    }
    Ok((group, at))
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

/// Ship what the database does not hold yet of the stream at `stream_dir`, `batch` records a transaction,
/// as many transactions at once as there are `clients` (`concierge audit ship`).
pub async fn ship_stream(
    clients: &mut [tokio_postgres::Client],
    url: &str,
    instance: &str,
    stream_dir: &Path,
    batch: usize,
) -> Result<Shipped, PgError> {
    StreamShipper::new(instance, stream_dir, batch)
        .run(clients, url)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: every field read from the whole document.
    fn reference(text: &str) -> Option<Vec<Option<String>>> {
        let v = serde_json::from_str::<Value>(text).ok()?;
        if !v.is_object() {
            return None;
        }
        let keys = [
            "time",
            "type",
            "request_id",
            "consent_id",
            "company",
            "account",
            "experiment",
        ];
        Some(
            keys.iter()
                .map(|k| v[*k].as_str().map(str::to_string))
                .collect(),
        )
    }

    fn columns(text: &str) -> Option<Vec<Option<String>>> {
        Columns::of(text).map(|c| {
            vec![
                c.time,
                c.kind,
                c.request_id,
                c.consent_id,
                c.company,
                c.account,
                c.experiment,
            ]
        })
    }

    #[test]
    fn the_columns_are_the_documents_fields() {
        for text in [
            r#"{"seq":1,"time":"2026-12-01T00:00:00Z","type":"decision","company":"Acme \"Q\" \u00e9"}"#,
            r#"{"type":5,"company":null,"account":"acme","request_id":["x"]}"#,
            r#"{"company":"first","company":"last"}"#,
            r#"{"nested":{"company":"no"},"experiment":"e1"}"#,
            r#"[1,2]"#,
            r#""text""#,
            r#"{"time":"#,
        ] {
            assert_eq!(columns(text), reference(text), "{text}");
        }
    }

    proptest! {
        #[test]
        fn any_object_reads_as_the_whole_document_does(
            fields in proptest::collection::vec(
                (
                    prop_oneof![
                        Just("time"), Just("type"), Just("company"), Just("account"),
                        Just("experiment"), Just("request_id"), Just("other"),
                    ],
                    prop_oneof![
                        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
                        any::<i64>().prop_map(|n| n.to_string()),
                        Just("null".to_string()),
                        Just(r#"{"company":"inner"}"#.to_string()),
                    ],
                ),
                0..8,
            )
        ) {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let text = format!("{{{}}}", body.join(","));
            prop_assert_eq!(columns(&text), reference(&text));
        }
    }

    /// The experiment report read as the store serves it — each row's fact from its columns, the line of
    /// each exposure or conversion without one, nothing of the other rows — against the report of the lines.
    fn reports(lines: &[String]) -> (String, String) {
        use crate::experiments::report::{Builder, Fact, Floors};
        let mut from_lines = Builder::new(Default::default());
        let mut from_store = Builder::new(Default::default());
        for line in lines {
            from_lines.add_line(line.as_bytes());
            let Some(d) = Derived::of(line.as_bytes()) else {
                continue; // not shipped
            };
            match &d.fact {
                Some(f) => from_store.add(&Fact {
                    kind: d.kind.as_str().into(),
                    time: f.time.as_str().into(),
                    experiment: d.experiment.as_deref().unwrap_or_default().into(),
                    arm: match f.arm {
                        "control" => Some(crate::experiments::Arm::Control),
                        _ => Some(crate::experiments::Arm::Treatment),
                    },
                    account: f.account.as_str().into(),
                    visitor: f.visitor.as_str().into(),
                    goal: f.goal.as_str().into(),
                    control: f.control,
                }),
                None if d.kind == "exposure" || d.kind == "conversion" => {
                    from_store.add_line(line.as_bytes())
                }
                None => {}
            }
        }
        let json =
            |b: Builder| serde_json::to_string(&b.finish(Floors::default())).unwrap_or_default();
        (json(from_store), json(from_lines))
    }

    proptest! {
        #[test]
        fn the_report_from_facts_is_the_report_from_lines(
            records in proptest::collection::vec(
                (
                    prop_oneof![Just("exposure"), Just("conversion"), Just("decision"), Just("exposur")],
                    0u8..4,
                    proptest::collection::vec(
                        (
                            prop_oneof![
                                Just("experiment"), Just("arm"), Just("account"), Just("visitor"),
                                Just("goal"), Just("control"), Just("type"), Just("time"), Just("other"),
                            ],
                            prop_oneof![
                                Just(r#""e1""#.to_string()),
                                Just(r#""control""#.to_string()),
                                Just(r#""treatment""#.to_string()),
                                Just(r#""a1""#.to_string()),
                                Just(r#""""#.to_string()),
                                Just("0.5".to_string()),
                                Just("null".to_string()),
                                Just("7".to_string()),
                                any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
                            ],
                        ),
                        0..4,
                    ),
                ),
                0..40,
            )
        ) {
            let lines: Vec<String> = records
                .iter()
                .enumerate()
                .map(|(i, (kind, day, extra))| {
                    let arm = if i % 3 == 0 { "control" } else { "treatment" };
                    let mut body = vec![
                        format!(r#""type":"{kind}""#),
                        format!(r#""time":"2027-01-0{}T10:00:{:02}.000Z""#, day + 1, i % 60),
                        r#""experiment":"e1""#.to_string(),
                        format!(r#""arm":"{arm}""#),
                        format!(r#""account":"a{}""#, i % 5),
                        r#""goal":"g""#.to_string(),
                    ];
                    // Extra fields: replacing one (a repeated key), or new ones.
                    body.extend(extra.iter().map(|(k, v)| format!(r#""{k}":{v}"#)));
                    format!("{{{}}}", body.join(","))
                })
                .collect();
            let (store, lines) = reports(&lines);
            prop_assert_eq!(store, lines);
        }
    }
}
