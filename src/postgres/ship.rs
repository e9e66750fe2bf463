//! Shipping a stream's records and checkpoints from the local files into the record store. The local file is
//! the source of truth and is already on disk, so shipping reads it: from the record after the last one the
//! database holds for (instance, stream), in order, in batches of one transaction each. Every row is keyed by
//! (instance, stream, seq) and inserted with `ON CONFLICT DO NOTHING`, so a batch resent after a crash or a
//! network failure is harmless: nothing is lost (the next run starts after what was committed) and nothing is
//! duplicated.
//!
//! Invariants: records go in sequence order and stop at the first line that cannot be shipped as it is (an
//! unfinished last line, or one that is not a record): never a gap the verifier would have to explain.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::{db, PgError};
use crate::audit::chain;

/// What one run shipped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shipped {
    pub records: u64,
    pub checkpoints: u64,
}

/// One row, as the insert takes it.
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
}

const INSERT: &str = "INSERT INTO concierge_record
    (instance, stream, seq, time, type, line, hash, prev, request_id, consent_id, company, experiment, body)
  SELECT $1, $2, r.seq, r.time::timestamptz, r.type, r.line, r.hash, r.prev, r.request_id, r.consent_id,
         r.company, r.experiment, r.line::jsonb
  FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
              $10::text[], $11::text[], $12::text[])
       AS r(seq, time, type, line, hash, prev, request_id, consent_id, company, experiment)
  ON CONFLICT DO NOTHING";

async fn commit(
    client: &mut tokio_postgres::Client,
    url: &str,
    instance: &str,
    stream: &str,
    b: &mut Batch,
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
    *b = Batch::default();
    Ok(n)
}

/// Ship what the database does not hold yet of the stream at `stream_dir`, `batch` records a transaction.
pub async fn ship_stream(
    client: &mut tokio_postgres::Client,
    url: &str,
    instance: &str,
    stream_dir: &Path,
    batch: usize,
) -> Result<Shipped, PgError> {
    let e = db(url);
    let io = |err: std::io::Error| PgError::Db {
        at: stream_dir.display().to_string(),
        reason: err.to_string(),
    };
    let stream = stream_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("audit")
        .to_string();
    let have: Option<i64> = client
        .query_one(
            "SELECT max(seq) FROM concierge_record WHERE instance = $1 AND stream = $2",
            &[&instance, &stream],
        )
        .await
        .map_err(&e)?
        .get(0);
    let mut shipped = Shipped::default();
    let mut b = Batch::default();
    let segments = chain::segments(stream_dir).map_err(io)?;
    'segments: for (i, (first, path)) in segments.iter().enumerate() {
        // A segment whose successor starts at or before what is shipped holds nothing new.
        if let (Some(h), Some((next, _))) = (have, segments.get(i + 1)) {
            if (*next as i64) <= h + 1 && *first as i64 <= h {
                continue;
            }
        }
        for item in chain::Lines::open(path).map_err(io)? {
            let (_, line, complete) = item.map_err(io)?;
            if !complete {
                break 'segments;
            }
            let (Ok(head), Ok(text)) = (chain::head(&line), std::str::from_utf8(&line)) else {
                break 'segments;
            };
            let seq = head.seq as i64;
            if have.is_some_and(|h| seq <= h) {
                continue;
            }
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            let field = |k: &str| v[k].as_str().map(str::to_string);
            let Some(time) = field("time") else {
                break 'segments;
            };
            b.months.insert(format!(
                "{}-01T00:00:00Z",
                time.get(..7).unwrap_or("1970-01")
            ));
            b.seq.push(seq);
            b.kind.push(field("type").unwrap_or_default());
            b.hash.push(chain::hash(&line));
            b.prev.push(head.prev.clone());
            b.request_id.push(field("request_id"));
            b.consent_id.push(field("consent_id"));
            b.company
                .push(field("company").or_else(|| field("account")));
            b.experiment.push(field("experiment"));
            b.time.push(time);
            b.line.push(text.to_string());
            if b.len() >= batch {
                shipped.records += commit(client, url, instance, &stream, &mut b).await?;
            }
        }
    }
    if b.len() > 0 {
        shipped.records += commit(client, url, instance, &stream, &mut b).await?;
    }
    // Checkpoints: few; every complete line, idempotently.
    let cp = stream_dir.join(chain::CHECKPOINTS);
    if cp.exists() {
        let tx = client.transaction().await.map_err(&e)?;
        for item in chain::Lines::open(&cp).map_err(io)? {
            let (_, line, complete) = item.map_err(io)?;
            let Ok(text) = std::str::from_utf8(&line) else {
                continue;
            };
            let Some(seq) = complete
                .then(|| serde_json::from_str::<Value>(text).ok())
                .flatten()
                .and_then(|v| v["seq"].as_i64())
            else {
                continue;
            };
            shipped.checkpoints += tx
                .execute(
                    "INSERT INTO concierge_checkpoint (instance, stream, seq, line) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&instance, &stream, &seq, &text],
                )
                .await
                .map_err(&e)?;
        }
        tx.commit().await.map_err(&e)?;
    }
    Ok(shipped)
}
