//! Records a compliance reviewer relies on, and where they are written.
//!
//! Today: the proof-of-consent record (written by the consent endpoint), the [`RecordSink`] interface every
//! producer writes through, and [`FileSink`], a simple durable sink (one JSON object per line, each line
//! fsynced before `append` returns). The tamper-evident, hash-chained writer replaces `FileSink` behind the same
//! interface.
//!
//! Invariant: a producer acts on a record (sets the consent cookie, personalizes a page) only after `append`
//! returned `Ok` — no record, no effect.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::consent::policy::Jurisdiction;

/// The file the consent records are appended to, inside the audit directory.
pub const CONSENT_FILE: &str = "consent-records.jsonl";
/// No record line is longer than this (every field is bounded well below it).
pub const MAX_RECORD_BYTES: usize = 16 * 1024;

/// A visitor's choice per tier, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Choices {
    pub firmographic: bool,
    pub personal: bool,
}

/// Proof of consent (GDPR Art. 7(1)): who (a consent id, also in the visitor's cookie — no IP), when, what
/// they chose, which banner text they saw, on which page, under which jurisdiction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentRecord {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    pub consent_id: String,
    /// `accept`, `reject` or `custom`: which control the visitor used.
    pub action: &'static str,
    pub choices: Choices,
    pub banner_version: String,
    /// The page path the choice was made on (no query string).
    pub page: String,
    pub jurisdiction: Jurisdiction,
    /// A GPC signal was present when the choice was made (it still withdraws consent whatever the choice).
    pub gpc: bool,
    pub request_id: String,
}

/// Everything a sink takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Consent(ConsentRecord),
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("record of {0} bytes exceeds the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("cannot serialize the record: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where records go. `append` returns only once the record is durable by the sink's own definition; an
/// error means the record was not written and the caller must not act on it.
pub trait RecordSink: Send + Sync {
    fn append(&self, record: &Record) -> Result<(), SinkError>;
}

/// Appends each record as one JSON line and fsyncs it before returning. Blocking: call it off the async
/// workers (`spawn_blocking`).
pub struct FileSink {
    path: PathBuf,
    file: Mutex<File>,
}

impl FileSink {
    /// Open (creating the directory and file if needed) `dir/consent-records.jsonl` for appending.
    pub fn open(dir: &Path) -> Result<FileSink, SinkError> {
        let path = dir.join(CONSENT_FILE);
        let io = |source| SinkError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        Ok(FileSink {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl RecordSink for FileSink {
    fn append(&self, record: &Record) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(record)?;
        if line.len() > MAX_RECORD_BYTES {
            return Err(SinkError::TooLarge(line.len()));
        }
        line.push(b'\n');
        // A poisoned lock only means another append panicked mid-write; the file handle is still usable.
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(|source| SinkError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::policy::Regime;

    pub fn record(id: &str) -> Record {
        Record::Consent(ConsentRecord {
            time: "2026-11-24T10:00:00.000Z".into(),
            consent_id: id.into(),
            action: "accept",
            choices: Choices {
                firmographic: true,
                personal: false,
            },
            banner_version: "1".into(),
            page: "/pricing".into(),
            jurisdiction: Jurisdiction {
                regime: Regime::OptIn,
                region: "DE".into(),
            },
            gpc: false,
            request_id: "r1".into(),
        })
    }

    #[test]
    fn file_sink_appends_one_line_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::open(&dir.path().join("nested")).unwrap();
        sink.append(&record("a")).unwrap();
        sink.append(&record("b")).unwrap();
        // Reopening appends rather than truncating.
        let sink = FileSink::open(&dir.path().join("nested")).unwrap();
        sink.append(&record("c")).unwrap();
        let text = std::fs::read_to_string(sink.path()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["type"], "consent");
        assert_eq!(lines[2]["consent_id"], "c");
        assert_eq!(lines[0]["choices"]["firmographic"], true);
        assert_eq!(lines[0]["jurisdiction"]["regime"], "opt-in");
    }

    #[test]
    fn unwritable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = FileSink::open(&file.join("sub")).err().unwrap().to_string();
        assert!(err.contains("cannot write"), "{err}");
    }
}
