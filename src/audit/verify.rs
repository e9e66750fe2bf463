//! `concierge audit verify`: every line's sequence number and link to the line before, every checkpoint's
//! signature against a trusted key, every checkpoint against the record it covers, and the ends of the log.
//!
//! What it detects and how it names it (the first problem is the first bad record):
//! - an edited record: the chain breaks after it (and its checkpoint, if one covers it, no longer matches);
//! - a deleted record: a gap in the sequence numbers; deleted leading segments without a sealing checkpoint;
//! - reordered records: sequence numbers out of order;
//! - truncation: a signed checkpoint covers records that are no longer there;
//! - a forged or replaced checkpoint: its signature does not verify with the trusted key;
//! - a replayed checkpoint: checkpoints only move forward (sequence and time), so a genuine older one appended
//!   again, or two swapped, is named by its line.
//!
//! Limits, stated in the report: records after the last checkpoint are protected only by the chain (someone who
//! can rewrite the files can cut or rewrite that tail undetected) — checkpoints shipped elsewhere close that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::chain;
use super::keys::{Checkpoint, PublicKey};

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `file:line`.
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub what: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamReport {
    pub stream: String,
    /// The instance the stream's checkpoints name (absent for checkpoints written before instances were named).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub segments: usize,
    pub records: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    pub checkpoints: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_signed_seq: Option<u64>,
    /// Records after the last checkpoint (protected by the chain only).
    pub unsigned_tail: u64,
    pub problems: Vec<Problem>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub intact: bool,
    pub streams: Vec<StreamReport>,
}

impl Report {
    pub fn first_problem(&self) -> Option<(&str, &Problem)> {
        self.streams
            .iter()
            .find_map(|s| s.problems.first().map(|p| (s.stream.as_str(), p)))
    }
}

/// Verify every stream under `dir` (each subdirectory holding segments or checkpoints).
pub fn verify(dir: &Path, key: &PublicKey) -> std::io::Result<Report> {
    let mut streams = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for path in entries {
        let has_log = path.join(chain::CHECKPOINTS).exists()
            || !chain::segments(&path).unwrap_or_default().is_empty();
        if has_log {
            streams.push(verify_stream(&path, key)?);
        }
    }
    let intact = !streams.is_empty() && streams.iter().all(|s| s.problems.is_empty());
    Ok(Report { intact, streams })
}

fn name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn lines(path: &Path) -> std::io::Result<Vec<(usize, Vec<u8>, bool)>> {
    chain::Lines::open(path)?.collect()
}

pub fn verify_stream(dir: &Path, key: &PublicKey) -> std::io::Result<StreamReport> {
    let mut r = StreamReport {
        stream: name(dir),
        ..StreamReport::default()
    };
    // Checkpoints: seq → hash, from those whose signature verifies.
    let mut signed: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let cp_path = dir.join(chain::CHECKPOINTS);
    if cp_path.exists() {
        let all = lines(&cp_path)?;
        let count = all.len();
        // Checkpoints only move forward, in sequence and in time: a genuine older one appended again (a replay,
        // e.g. to make a cut log look sealed at an earlier point) is a failure.
        let mut last: Option<(u64, String, String)> = None;
        for (n, line, complete) in all {
            let at = format!("{}:{n}", chain::CHECKPOINTS);
            match serde_json::from_slice::<Checkpoint>(&line) {
                Ok(c) if c.verify(key) => {
                    r.checkpoints += 1;
                    // One chain, one instance: a checkpoint naming another is another instance's, copied in.
                    if let Some(i) = &c.instance {
                        match &r.instance {
                            None => r.instance = Some(i.clone()),
                            Some(first) if first != i => r.problems.push(Problem {
                                at: at.clone(),
                                seq: Some(c.seq),
                                what: format!(
                                    "checkpoint of instance `{i}` in the chain of instance `{first}`: another instance's checkpoint"
                                ),
                            }),
                            Some(_) => {}
                        }
                    }
                    if let Some((seq, time, before)) = &last {
                        if c.seq > *seq && c.time < *time {
                            // A later record signed at an earlier time: the clock went back (NTP step, VM
                            // restore), not a replay — the sequence decides.
                            r.notes.push(format!(
                                "{at}: checkpoint seq {} is timed {} — before seq {seq} at {time} ({before}); the clock went back",
                                c.seq, c.time
                            ));
                        }
                        if c.seq <= *seq {
                            r.problems.push(Problem {
                                at: at.clone(),
                                seq: Some(c.seq),
                                what: format!(
                                    "checkpoint out of order: seq {} at {} comes after seq {seq} at {time} ({before}) —                                      checkpoints only move forward; a replayed or reordered checkpoint",
                                    c.seq, c.time
                                ),
                            });
                        }
                    }
                    if last.as_ref().is_none_or(|(seq, _, _)| c.seq > *seq) {
                        last = Some((c.seq, c.time.clone(), at.clone()));
                    }
                    if let Some((hash, _)) = signed.get(&c.seq) {
                        if *hash != c.hash {
                            r.problems.push(Problem {
                                at,
                                seq: Some(c.seq),
                                what: "two signed checkpoints disagree about this record".into(),
                            });
                        }
                        continue;
                    }
                    signed.insert(c.seq, (c.hash, at));
                }
                Ok(c) => r.problems.push(Problem {
                    at,
                    seq: Some(c.seq),
                    what: "checkpoint signature does not verify with the trusted key (forged, altered or signed with another key)".into(),
                }),
                Err(_) if n == count && !complete => r.notes.push(format!(
                    "{at}: an unfinished last checkpoint line (the writer was interrupted) was ignored"
                )),
                Err(e) => r.problems.push(Problem {
                    at,
                    seq: None,
                    what: format!("unreadable checkpoint line: {e}"),
                }),
            }
        }
    }
    r.last_signed_seq = signed.keys().next_back().copied();

    let segments = chain::segments(dir)?;
    r.segments = segments.len();
    let mut expected: Option<u64> = None;
    let mut prev_hash = String::new();
    let mut prev_at = String::new();
    // Where a line's prev did not match the line before: (seq, at, the line before's at).
    let mut broken: Vec<(u64, String, String)> = Vec::new();
    // Records found where another sequence number was expected: seq → where.
    let mut misplaced: BTreeMap<u64, String> = BTreeMap::new();
    let last_segment = segments.len().saturating_sub(1);
    for (si, (_, path)) in segments.iter().enumerate() {
        let file = name(path);
        // Line by line (a segment is up to 64 MiB: never held whole in memory).
        let mut all = chain::Lines::open(path)?.peekable();
        while let Some(item) = all.next() {
            let (n, line, complete) = item?;
            let is_last = all.peek().is_none();
            let at = format!("{file}:{n}");
            if !complete && si == last_segment && is_last {
                r.notes.push(format!(
                    "{at}: an unfinished last line (the writer was interrupted); set aside at the next start"
                ));
                continue;
            }
            let head = match chain::head(&line) {
                Ok(h) => h,
                Err(e) => {
                    r.problems.push(Problem {
                        at,
                        seq: expected,
                        what: format!("unreadable record line: {e}"),
                    });
                    continue;
                }
            };
            let hash = chain::hash(&line);
            match expected {
                None => {
                    // The first record present.
                    if head.seq == 0 {
                        if head.prev != chain::GENESIS {
                            broken.push((0, at.clone(), String::new()));
                        }
                    } else {
                        match signed.get(&(head.seq - 1)) {
                            Some((h, _)) if *h == head.prev => r.notes.push(format!(
                                "records before seq {} were removed (retention); a signed checkpoint vouches for the last of them",
                                head.seq
                            )),
                            _ => r.problems.push(Problem {
                                at: at.clone(),
                                seq: Some(head.seq),
                                what: format!(
                                    "records 0..={} are missing (deleted) and no signed checkpoint vouches for the gap",
                                    head.seq - 1
                                ),
                            }),
                        }
                    }
                    r.first_seq = Some(head.seq);
                }
                Some(want) if head.seq > want => {
                    misplaced.insert(head.seq, at.clone());
                    r.problems.push(Problem {
                        at: at.clone(),
                        seq: Some(want),
                        what: if head.seq - 1 == want {
                            format!("record seq {want} is missing (deleted)")
                        } else {
                            format!(
                                "records seq {want}..={} are missing (deleted)",
                                head.seq - 1
                            )
                        },
                    });
                }
                Some(want) if head.seq < want => {
                    misplaced.insert(head.seq, at.clone());
                    r.problems.push(Problem {
                        at: at.clone(),
                        seq: Some(head.seq),
                        what: format!(
                            "record seq {} appears where seq {want} belongs (reordered or duplicated)",
                            head.seq
                        ),
                    });
                }
                Some(_) => {
                    if head.prev != prev_hash {
                        broken.push((head.seq, at.clone(), prev_at.clone()));
                    }
                }
            }
            if let Some((h, cp_at)) = signed.get(&head.seq) {
                if *h != hash {
                    r.problems.push(Problem {
                        at: at.clone(),
                        seq: Some(head.seq),
                        what: format!(
                            "record seq {} differs from its signed checkpoint ({cp_at}): altered",
                            head.seq
                        ),
                    });
                }
            }
            r.records += 1;
            r.last_seq = Some(head.seq);
            expected = Some(head.seq + 1);
            prev_hash = hash;
            prev_at = at;
        }
    }
    // A broken link at N: if the link N → N+1 also broke, record N itself was changed; else the one before it.
    let broken_seqs: Vec<u64> = broken.iter().map(|(s, _, _)| *s).collect();
    for (seq, at, before_at) in &broken {
        let problem = if broken_seqs.contains(&(seq + 1)) || *seq == 0 {
            Problem {
                at: at.clone(),
                seq: Some(*seq),
                what: format!("record seq {seq} was altered (it no longer links to the record before it, nor the next one to it)"),
            }
        } else if r.last_seq == Some(*seq) {
            Problem {
                at: before_at.clone(),
                seq: Some(seq - 1),
                what: format!("the chain breaks between seq {} ({before_at}) and seq {seq} ({at}): one of them was altered", seq - 1),
            }
        } else {
            Problem {
                at: before_at.clone(),
                seq: Some(seq - 1),
                what: format!(
                    "record seq {} was altered (its hash no longer matches the prev of seq {seq})",
                    seq - 1
                ),
            }
        };
        // Skip the second half of a pair already reported.
        if broken_seqs.contains(&(seq.wrapping_sub(1))) && problem.seq == Some(seq - 1) {
            continue;
        }
        r.problems.push(problem);
    }
    if let Some(last_signed) = r.last_signed_seq {
        match r.last_seq {
            Some(last) if last >= last_signed => {}
            last => r.problems.push(Problem {
                at: signed
                    .get(&last_signed)
                    .map(|(_, a)| a.clone())
                    .unwrap_or_default(),
                seq: Some(last.map_or(0, |l| l + 1)),
                what: format!(
                    "the log ends at {} but a signed checkpoint covers seq {last_signed}: records after it were removed (truncated)",
                    last.map_or("nothing".to_string(), |l| format!("seq {l}"))
                ),
            }),
        }
    }
    r.unsigned_tail = match (r.last_seq, r.last_signed_seq) {
        (Some(last), Some(signed)) if last > signed => last - signed,
        (Some(last), None) => last + 1 - r.first_seq.unwrap_or(0),
        _ => 0,
    };
    // A "missing" record that turned up elsewhere was moved, not deleted.
    for p in &mut r.problems {
        if let Some(seq) = p.seq {
            if p.what.contains("missing (deleted)") && !p.what.contains("..=") {
                if let Some(found) = misplaced.get(&seq) {
                    p.what =
                        format!("record seq {seq} is out of order (reordered): it is at {found}");
                }
            }
        }
    }
    // Report problems in log order.
    r.problems.sort_by_key(|p| p.seq.unwrap_or(u64::MAX));
    for entry in std::fs::read_dir(dir)?.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.contains(".torn-") {
            r.notes.push(format!(
                "{n}: an unfinished line set aside after a crash (never acknowledged)"
            ));
        }
    }
    Ok(r)
}
