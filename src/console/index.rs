//! What the console knows of a stream without reading it again: where every record starts, its time, and which
//! records carry a request id, a consent id or a company — built once, then extended with what was appended
//! since (the log only grows at its end). With it a search by id or account, a search from a date, and one
//! record by its seq read only the records they show, however long the log; and the experiments and feedback
//! reports over the whole log are kept up to date from the appended records alone.
//!
//! Invariants:
//! - The index never decides what a record says: every hit is read back from the file and matched by the same
//!   `audit::query::Filter` the CLI uses, so a stale or colliding entry can only cost a read, never a wrong row.
//! - Only closed segments are trusted to be unchanged; a segment that shrank or disappeared (retention) makes
//!   the index start over. Tampering is `verify`'s to find, not the index's.
//! - Memory: about 40 bytes a record (offsets, times, three key chains and two hash maps).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::audit::chain;
use crate::audit::query::Filter;

const NONE: u32 = u32::MAX;

/// Seconds by which records' times may be out of order in the log.
const SLACK: u32 = 3600;

/// Records with the same key, newest first: the last one per key, and per record the one before it.
#[derive(Default)]
struct Keyed {
    last: HashMap<u64, u32>,
    prev: Vec<u32>,
}

impl Keyed {
    fn push(&mut self, key: Option<u64>) {
        let before = match key {
            Some(k) => self.last.insert(k, self.prev.len() as u32).unwrap_or(NONE),
            None => NONE,
        };
        self.prev.push(before);
    }

    /// The records with this key, oldest first.
    fn positions(&self, key: u64) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = self.last.get(&key).copied().unwrap_or(NONE);
        while at != NONE {
            out.push(at);
            at = self.prev[at as usize];
        }
        out.reverse();
        out
    }
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
    /// Bytes indexed: the end of the last complete line read.
    len: u64,
    /// The position (record number in the index) of its first line.
    first_pos: u32,
}

/// Which kind of stream, for the report kept over it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Audit,
    Feedback,
}

/// What a search found.
pub(super) struct Found {
    pub rows: Vec<Value>,
    /// With the record store: each row's instance (empty for this instance's own log).
    pub instances: Vec<String>,
    pub more: bool,
    /// Why it stopped before the end, if it did.
    pub stopped: Option<String>,
}

pub(super) struct StreamIndex {
    dir: PathBuf,
    kind: Kind,
    hasher: std::collections::hash_map::RandomState,
    segments: Vec<Segment>,
    /// Per record: its segment (high 24 bits) and the byte offset of its line (low 40 bits).
    at: Vec<u64>,
    /// Per record: the latest `time` (unix seconds) of it and every record before it — monotonic, so the
    /// first record of a date range is found by bisection, exactly, however the log's times are ordered.
    times: Vec<u32>,
    /// A record's time was more than [`SLACK`] before one written ahead of it (a clock stepped back): a
    /// search up to a date then reads on to the end instead of stopping at the first later record.
    disordered: bool,
    request: Keyed,
    consent: Keyed,
    company: Keyed,
    experiments: crate::experiments::report::Builder,
    feedback: crate::feedback::report::Builder,
}

fn unix(time: &str) -> u32 {
    humantime::parse_rfc3339_weak(time.get(..19).unwrap_or(time))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs().min(u64::from(u32::MAX)) as u32)
}

impl StreamIndex {
    pub(super) fn new(dir: PathBuf, kind: Kind) -> StreamIndex {
        StreamIndex {
            dir,
            kind,
            hasher: std::collections::hash_map::RandomState::new(),
            segments: Vec::new(),
            at: Vec::new(),
            times: Vec::new(),
            disordered: false,
            request: Keyed::default(),
            consent: Keyed::default(),
            company: Keyed::default(),
            experiments: crate::experiments::report::Builder::new(Default::default()),
            feedback: crate::feedback::report::Builder::new(Default::default()),
        }
    }

    fn key(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    fn company_key(&self, s: &str) -> u64 {
        self.hasher.hash_one(s.to_ascii_lowercase())
    }

    /// Read what was appended since the last refresh (everything, the first time).
    pub(super) fn refresh(&mut self) -> std::io::Result<()> {
        match self.refresh_once()? {
            true => Ok(()),
            // The log changed under us (retention deleted a segment, one shrank): start over, once.
            false => {
                *self = StreamIndex::new(self.dir.clone(), self.kind);
                match self.refresh_once()? {
                    true => Ok(()),
                    false => Err(std::io::Error::other(
                        "the log changed while it was read; try again",
                    )),
                }
            }
        }
    }

    /// One pass; `false` when the files no longer fit what was indexed (the caller starts over).
    fn refresh_once(&mut self) -> std::io::Result<bool> {
        let now = chain::segments(&self.dir)?;
        let same_prefix = now.len() >= self.segments.len()
            && self
                .segments
                .iter()
                .zip(&now)
                .all(|(s, (first, path))| s.first_seq == *first && &s.path == path);
        if !same_prefix {
            *self = StreamIndex::new(self.dir.clone(), self.kind);
        }
        let start = self.segments.len().saturating_sub(1);
        for (i, (first, path)) in now.iter().enumerate().skip(start) {
            if i == self.segments.len() {
                self.segments.push(Segment {
                    first_seq: *first,
                    path: path.clone(),
                    len: 0,
                    first_pos: self.at.len() as u32,
                });
            }
            let len = match std::fs::metadata(path) {
                Ok(m) => m.len(),
                // Deleted between listing and reading (retention).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            };
            if len < self.segments[i].len {
                return Ok(false);
            }
            if len > self.segments[i].len {
                self.read_segment(i)?;
            }
        }
        Ok(true)
    }

    fn read_segment(&mut self, i: usize) -> std::io::Result<()> {
        let mut file = std::fs::File::open(&self.segments[i].path)?;
        let mut offset = self.segments[i].len;
        file.seek(SeekFrom::Start(offset))?;
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = (&mut reader)
                .take(chain::MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)?;
            if n == 0 || buf.last() != Some(&b'\n') {
                break; // the end, or a line still being written
            }
            let line = &buf[..n - 1];
            self.index_line(i, offset, line);
            offset += n as u64;
            // Kept line by line: an error on the next read must not index this one twice.
            self.segments[i].len = offset;
        }
        Ok(())
    }

    fn index_line(&mut self, segment: usize, offset: u64, line: &[u8]) {
        // Read as `Filter::matches` reads it (a `Value`: the last of repeated keys, any field that is not a
        // string ignored), so the index keys a record exactly where the filter would match it.
        let v: Option<Value> = serde_json::from_slice(line).ok();
        let field = |k: &str| v.as_ref().and_then(|v| v[k].as_str());
        let time = field("time").map_or(0, unix);
        let request = field("request_id").map(|r| self.key(r));
        let consent = field("consent_id").map(|c| self.key(c));
        let company = field("company").map(|c| self.company_key(c));
        self.at
            .push(((segment as u64) << 40) | (offset & ((1 << 40) - 1)));
        let latest = self.times.last().copied().unwrap_or(0);
        if time.saturating_add(SLACK) < latest {
            self.disordered = true;
        }
        self.times.push(time.max(latest));
        self.request.push(request);
        self.consent.push(consent);
        self.company.push(company);
        match self.kind {
            Kind::Audit => self.experiments.add_line(line),
            Kind::Feedback => {
                if let Some(v) = &v {
                    self.feedback.add(v);
                }
            }
        }
    }

    /// The experiments report's builder over the whole stream, as of the last refresh.
    pub(super) fn experiments(&self) -> &crate::experiments::report::Builder {
        &self.experiments
    }

    /// The feedback report's builder over the whole stream, as of the last refresh.
    pub(super) fn feedback(&self) -> &crate::feedback::report::Builder {
        &self.feedback
    }

    fn locate(&self, pos: u32) -> (&Path, u64) {
        let packed = self.at[pos as usize];
        let seg = (packed >> 40) as usize;
        (&self.segments[seg].path, packed & ((1 << 40) - 1))
    }

    /// The raw line of one record.
    fn read_at(&self, pos: u32) -> std::io::Result<Vec<u8>> {
        let (path, offset) = self.locate(pos);
        let mut file = std::fs::File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut reader = BufReader::with_capacity(8192, file);
        let mut buf = Vec::new();
        (&mut reader)
            .take(chain::MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        Ok(buf)
    }

    /// The record with sequence number `seq`: its raw line and its value.
    pub(super) fn record(&self, seq: u64) -> std::io::Result<Option<(Vec<u8>, Value)>> {
        let i = self.segments.partition_point(|s| s.first_seq <= seq);
        let Some(seg) = i.checked_sub(1).map(|i| &self.segments[i]) else {
            return Ok(None);
        };
        let end = self
            .segments
            .get(i)
            .map_or(self.at.len() as u64, |next| u64::from(next.first_pos));
        // Where the chain is whole, the record is at its place in the segment; otherwise it is not there.
        let Some(guess) = (seq - seg.first_seq)
            .checked_add(u64::from(seg.first_pos))
            .filter(|g| *g < end)
        else {
            return Ok(None);
        };
        let line = self.read_at(guess as u32)?;
        Ok(serde_json::from_slice::<Value>(&line)
            .ok()
            .filter(|v| v["seq"].as_u64() == Some(seq))
            .map(|v| (line, v)))
    }

    /// The records `f` matches, from the `skip`-th on, at most `take`; bounded by `limit` records read and
    /// `budget` time where no key narrows the search.
    pub(super) fn search(
        &self,
        f: &Filter,
        skip: usize,
        take: usize,
        limit: u64,
        budget: Duration,
    ) -> std::io::Result<Found> {
        let start = Instant::now();
        let mut found = Found {
            rows: Vec::new(),
            instances: Vec::new(),
            more: false,
            stopped: None,
        };
        let mut matched = 0usize;
        let mut keep = |v: Value, found: &mut Found| -> bool {
            if !f.matches(&v) {
                return true;
            }
            matched += 1;
            if matched > skip + take {
                found.more = true;
                return false;
            }
            if matched > skip {
                found.rows.push(v);
            }
            true
        };
        // A key narrows the search to the records that carry it.
        let keyed = if let Some(r) = &f.request_id {
            Some(self.request.positions(self.key(r)))
        } else if let Some(c) = &f.consent {
            Some(self.consent.positions(self.key(c)))
        } else {
            f.account
                .as_ref()
                .map(|a| self.company.positions(self.company_key(a)))
        };
        if let Some(positions) = keyed {
            for (n, pos) in positions.into_iter().enumerate() {
                if n > 0 && n % 1024 == 0 {
                    if n as u64 >= limit {
                        found.stopped = Some(format!("after reading {n} records"));
                        break;
                    }
                    if start.elapsed() > budget {
                        found.stopped =
                            Some(format!("after {} s ({n} records read)", budget.as_secs()));
                        break;
                    }
                }
                let line = self.read_at(pos)?;
                if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                    if !keep(v, &mut found) {
                        break;
                    }
                }
            }
            return Ok(found);
        }
        // Otherwise in order, from the first record that can be in the range: before it, every record is
        // older than `since` (the times are running maxima). Times are truncated to the second, so the bound
        // is too; the filter decides on the exact strings.
        let from = match &f.since {
            Some(s) => {
                let t = unix(s);
                self.times.partition_point(|x| *x < t)
            }
            None => 0,
        };
        let until = f.until.as_deref().map(unix);
        let mut read = 0u64;
        let mut pos = from;
        while pos < self.at.len() {
            // Read sequentially through one segment at a time.
            let seg = (self.at[pos] >> 40) as usize;
            let end = self
                .segments
                .get(seg + 1)
                .map_or(self.at.len(), |s| s.first_pos as usize);
            let (path, offset) = self.locate(pos as u32);
            let mut file = std::fs::File::open(path)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut reader = BufReader::with_capacity(1 << 16, file);
            let mut buf = Vec::new();
            while pos < end {
                buf.clear();
                let n = (&mut reader)
                    .take(chain::MAX_LINE as u64 + 1)
                    .read_until(b'\n', &mut buf)?;
                if n == 0 {
                    break;
                }
                pos += 1;
                read += 1;
                // Past `until` by more than the slack, in a log whose times never stepped back by as much:
                // nothing later can be in the range.
                if !self.disordered
                    && until.is_some_and(|u| self.times[pos - 1] > u.saturating_add(SLACK))
                {
                    return Ok(found);
                }
                if let Ok(v) =
                    serde_json::from_slice::<Value>(buf.strip_suffix(b"\n").unwrap_or(&buf))
                {
                    if !keep(v, &mut found) {
                        return Ok(found);
                    }
                }
                if read % 4096 == 0 {
                    if read >= limit {
                        found.stopped = Some(format!("after reading {read} records"));
                        return Ok(found);
                    }
                    if start.elapsed() > budget {
                        found.stopped = Some(format!(
                            "after {} s ({read} records read)",
                            budget.as_secs()
                        ));
                        return Ok(found);
                    }
                }
            }
            pos = end;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::writer::{Options, Writer};
    use std::sync::Arc;

    /// Write `n` records (ids and companies from `i`) through the real writer, segments of a few KB.
    fn write(dir: &Path, from: u64, n: u64) {
        write_with(dir, from, n, false)
    }

    /// `monotonic`: times only go forward (as a live log's do), else they cycle through the month.
    fn write_with(dir: &Path, from: u64, n: u64, monotonic: bool) {
        let key = Arc::new(crate::audit::keys::SigningKey::generate().unwrap().1);
        let mut o = Options::new("audit");
        o.segment_bytes = 4096;
        let (w, t) = Writer::open(dir, key, o).unwrap();
        for i in from..from + n {
            let consent = if i % 5 == 0 {
                format!(",\"consent_id\":\"c{}\"", i / 10)
            } else {
                String::new()
            };
            let line = format!(
                "{{\"type\":\"{}\",\"time\":\"2027-01-{:02}T10:00:00.000Z\",\"request_id\":\"r{}\",\"company\":\"Acct-{}.example\"{consent}}}",
                if i % 3 == 0 { "consent" } else { "decision" },
                if monotonic { 1 + (i / 16).min(27) } else { 1 + i % 28 },
                i / 2,
                i % 7
            );
            let ack = w.submit_bytes(line.as_bytes(), true).unwrap();
            w.written_blocking(ack, Duration::from_secs(5)).unwrap();
        }
        drop(w);
        t.join().unwrap();
    }

    /// What a plain scan of the stream with the same filter finds (the CLI's way).
    fn scan(dir: &Path, f: &Filter) -> Vec<Value> {
        let mut out = Vec::new();
        crate::audit::query::for_each(dir, |_, v| {
            if f.matches(v) {
                out.push(v.clone());
            }
        })
        .unwrap();
        out
    }

    fn all(index: &StreamIndex, f: &Filter) -> Vec<Value> {
        let found = index
            .search(f, 0, 1_000_000, u64::MAX, Duration::from_secs(60))
            .unwrap();
        assert!(!found.more && found.stopped.is_none());
        found.rows
    }

    #[test]
    fn the_index_finds_what_a_scan_finds_and_follows_appends() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 0, 300);
        let stream = dir.path().join("audit");
        assert!(
            chain::segments(&stream).unwrap().len() > 3,
            "several segments"
        );
        let mut index = StreamIndex::new(stream.clone(), Kind::Audit);
        index.refresh().unwrap();
        let filters = |round: u64| {
            let t = |d: u32| Some(format!("2027-01-{d:02}T00:00:00.000Z"));
            vec![
                Filter::default(),
                Filter {
                    request_id: Some(format!("r{}", 40 + round)),
                    ..Filter::default()
                },
                Filter {
                    consent: Some("c3".into()),
                    ..Filter::default()
                },
                Filter {
                    account: Some("acct-3.EXAMPLE".into()),
                    ..Filter::default()
                },
                Filter {
                    account: Some("acct-3.example".into()),
                    kind: Some("consent".into()),
                    ..Filter::default()
                },
                Filter {
                    since: t(20),
                    ..Filter::default()
                },
                Filter {
                    since: t(5),
                    until: t(9),
                    ..Filter::default()
                },
                Filter {
                    request_id: Some("nobody".into()),
                    ..Filter::default()
                },
            ]
        };
        for f in filters(0) {
            assert_eq!(all(&index, &f), scan(&stream, &f), "{f:?}");
        }
        // Appended records are found after a refresh, without reading the rest again.
        write(dir.path(), 300, 120);
        index.refresh().unwrap();
        assert_eq!(index.at.len(), 420);
        for f in filters(150) {
            assert_eq!(all(&index, &f), scan(&stream, &f), "{f:?}");
        }
        // Pages: skip and take, and whether more follow.
        let f = Filter::default();
        let page = index
            .search(&f, 100, 50, u64::MAX, Duration::from_secs(60))
            .unwrap();
        assert_eq!(page.rows, scan(&stream, &f)[100..150].to_vec());
        assert!(page.more);
        // One record by its seq.
        for seq in [0, 1, 77, 299, 300, 419] {
            let (line, v) = index.record(seq).unwrap().unwrap();
            assert_eq!(v["seq"].as_u64(), Some(seq));
            assert_eq!(serde_json::from_slice::<Value>(&line).unwrap(), v);
        }
        assert!(index.record(420).unwrap().is_none());
    }

    #[test]
    fn a_date_range_stops_early_only_where_times_go_forward() {
        for monotonic in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            write_with(dir.path(), 0, 400, monotonic);
            let stream = dir.path().join("audit");
            let mut index = StreamIndex::new(stream.clone(), Kind::Audit);
            index.refresh().unwrap();
            assert_eq!(index.disordered, !monotonic);
            for (since, until) in [(3, 5), (1, 2), (20, 28), (27, 28)] {
                let f = Filter {
                    since: Some(format!("2027-01-{since:02}T00:00:00.000Z")),
                    until: Some(format!("2027-01-{until:02}T10:00:00.000Z")),
                    ..Filter::default()
                };
                assert_eq!(all(&index, &f), scan(&stream, &f), "{monotonic} {f:?}");
            }
        }
    }

    #[test]
    fn hostile_lines_are_keyed_as_the_filter_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(crate::audit::keys::SigningKey::generate().unwrap().1);
        let (w, t) = Writer::open(dir.path(), key, Options::new("audit")).unwrap();
        for line in [
            // Repeated keys: the last one counts, for the filter and for the index.
            r#"{"type":"decision","time":"2027-01-02T00:00:00.000Z","request_id":"first","request_id":"dup"}"#,
            // A field that is not a string beside ones that are.
            r#"{"type":"decision","time":"2027-01-03T00:00:00.000Z","company":5,"request_id":"num"}"#,
            r#"{"type":"decision","time":7,"request_id":"badtime"}"#,
        ] {
            let ack = w.submit_bytes(line.as_bytes(), true).unwrap();
            w.written_blocking(ack, Duration::from_secs(5)).unwrap();
        }
        drop(w);
        t.join().unwrap();
        let stream = dir.path().join("audit");
        let mut index = StreamIndex::new(stream.clone(), Kind::Audit);
        index.refresh().unwrap();
        for id in ["first", "dup", "num", "badtime"] {
            let f = Filter {
                request_id: Some(id.into()),
                ..Filter::default()
            };
            assert_eq!(all(&index, &f), scan(&stream, &f), "{id}");
        }
        let f = Filter {
            since: Some("2027-01-01T00:00:00.000Z".into()),
            ..Filter::default()
        };
        assert_eq!(all(&index, &f), scan(&stream, &f));
        // A seq past the end, or absurdly large: no record, no scan, no panic.
        assert!(index.record(3).unwrap().is_none());
        assert!(index.record(u64::MAX).unwrap().is_none());
    }

    #[test]
    fn a_deleted_segment_makes_the_index_start_over() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 0, 200);
        let stream = dir.path().join("audit");
        let mut index = StreamIndex::new(stream.clone(), Kind::Audit);
        index.refresh().unwrap();
        let first = chain::segments(&stream).unwrap()[0].1.clone();
        std::fs::remove_file(first).unwrap();
        index.refresh().unwrap();
        let f = Filter::default();
        assert_eq!(all(&index, &f), scan(&stream, &f));
        let first_seq = scan(&stream, &f)[0]["seq"].as_u64().unwrap();
        assert!(first_seq > 0);
        assert_eq!(
            index.record(first_seq).unwrap().unwrap().1["seq"].as_u64(),
            Some(first_seq)
        );
        assert!(index.record(0).unwrap().is_none());
    }
}
