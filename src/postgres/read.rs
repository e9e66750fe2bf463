//! Reading records back from the store for the readers (`audit export`, `audit stats`, `feedback report`,
//! `experiments report`, the console): the lines exactly as the instances wrote them, streamed (never the
//! whole result in memory), with what the store can narrow by index pushed down into the query.
//!
//! Invariant: the pushdown only ever narrows to a superset of what the reader's own filter keeps — the reader
//! still applies its filter to every line, so the store and the files give the same answer.

use std::time::SystemTime;

use futures_util::TryStreamExt;
use tokio_postgres::types::ToSql;

use super::{db, PgError};
use crate::experiments::report::{Builder, Fact};
use crate::experiments::Arm;

/// What the query narrows by (each `None`/empty: not narrowed).
#[derive(Debug, Clone, Default)]
pub struct Pushdown {
    /// Canonical RFC 3339 bounds, as the readers' filters hold them. The query widens them by a second (the
    /// readers compare times as strings, which orders `…:00.5Z` before `…:00Z`).
    pub since: Option<String>,
    pub until: Option<String>,
    /// Record types (`decision`, `exposure`, …).
    pub types: Vec<String>,
    pub consent_id: Option<String>,
    pub request_id: Option<String>,
    /// A company, compared ignoring ASCII case (schema 3's index).
    pub company: Option<String>,
    /// A piece of the time line, `[from, to)` (a reader reading in parts over several connections).
    pub within: Option<(SystemTime, SystemTime)>,
}

impl From<&crate::audit::query::Filter> for Pushdown {
    /// What the store can narrow an export's filter by (the filter still judges every line).
    fn from(f: &crate::audit::query::Filter) -> Pushdown {
        Pushdown {
            since: f.since.clone(),
            until: f.until.clone(),
            types: f
                .kind
                .iter()
                .cloned()
                .chain(
                    (f.account.is_some() || f.decision.is_some()).then(|| "decision".to_string()),
                )
                .collect(),
            consent_id: f.consent.clone(),
            request_id: f.request_id.clone(),
            company: f.account.clone(),
            within: None,
        }
    }
}

/// In which order lines come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// By time, then instance and seq (exports: one chronology over every instance).
    Time,
    /// As the store finds them (aggregates, whose result does not depend on the order).
    Any,
}

/// One record by its key.
pub async fn record(
    client: &tokio_postgres::Client,
    url: &str,
    instance: &str,
    stream: &str,
    seq: u64,
) -> Result<Option<String>, PgError> {
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    let row = client
        .query_opt(
            "SELECT line FROM concierge_record WHERE instance = $1 AND stream = $2 AND seq = $3",
            &[&instance, &stream, &seq],
        )
        .await
        .map_err(db(url))?;
    Ok(row.map(|r| r.get(0)))
}

/// Call `f` with every line of `stream` the pushdown lets through; returns how many.
pub async fn for_each(
    client: &tokio_postgres::Client,
    url: &str,
    stream: &str,
    p: &Pushdown,
    order: Order,
    mut f: impl FnMut(&[u8]),
) -> Result<u64, PgError> {
    rows(client, url, stream, p, order, |_, line| {
        f(line);
        true
    })
    .await
}

/// [`for_each`] with each line's instance; stops when `f` returns `false`.
pub async fn rows(
    client: &tokio_postgres::Client,
    url: &str,
    stream: &str,
    p: &Pushdown,
    order: Order,
    mut f: impl FnMut(&str, &[u8]) -> bool,
) -> Result<u64, PgError> {
    let e = db(url);
    let (mut sql, params) = query(
        "SELECT instance, line FROM concierge_record WHERE stream = $1",
        stream,
        p,
    );
    if order == Order::Time {
        sql.push_str(" ORDER BY time, instance, seq");
    }
    each_row(client, url, &sql, &params, |row| {
        let instance: &str = row.try_get(0).map_err(&e)?;
        let line: &str = row.try_get(1).map_err(&e)?;
        Ok(f(instance, line.as_bytes()))
    })
    .await
}

type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// Run `sql` and call `f` with each row as it streams in (never the whole result in memory), until `f` says
/// `false`; returns how many rows it was given.
async fn each_row(
    client: &tokio_postgres::Client,
    url: &str,
    sql: &str,
    params: &Params,
    mut f: impl FnMut(&tokio_postgres::Row) -> Result<bool, PgError>,
) -> Result<u64, PgError> {
    let e = db(url);
    let rows = client
        .query_raw(
            sql,
            params.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)),
        )
        .await
        .map_err(&e)?;
    let mut rows = std::pin::pin!(rows);
    let mut n = 0;
    while let Some(row) = rows.try_next().await.map_err(&e)? {
        n += 1;
        if !f(&row)? {
            break;
        }
    }
    Ok(n)
}

/// `select` (whose `$1` is the stream) narrowed by `p`, with its parameters.
fn query(select: &str, stream: &str, p: &Pushdown) -> (String, Params) {
    let mut sql = String::from(select);
    let mut params: Params = vec![Box::new(stream.to_string())];
    let mut arg = |sql: &mut String, clause: &str, v: Box<dyn ToSql + Sync + Send>| {
        params.push(v);
        sql.push_str(&clause.replace('?', &format!("${}", params.len())));
    };
    if let Some(s) = &p.since {
        arg(
            &mut sql,
            " AND time >= ?::text::timestamptz - interval '1 second'",
            Box::new(s.clone()),
        );
    }
    if let Some(u) = &p.until {
        arg(
            &mut sql,
            " AND time < ?::text::timestamptz + interval '1 second'",
            Box::new(u.clone()),
        );
    }
    if !p.types.is_empty() {
        arg(&mut sql, " AND type = ANY(?)", Box::new(p.types.clone()));
    }
    if let Some(c) = &p.consent_id {
        arg(&mut sql, " AND consent_id = ?", Box::new(c.clone()));
    }
    if let Some(r) = &p.request_id {
        arg(&mut sql, " AND request_id = ?", Box::new(r.clone()));
    }
    if let Some(c) = &p.company {
        // Exactly the index's expression (0003_company_ascii.sql); the filter still judges every line.
        arg(
            &mut sql,
            " AND company IS NOT NULL AND translate(company, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') = ?",
            Box::new(c.to_ascii_lowercase()),
        );
    }
    if let Some((from, to)) = p.within {
        arg(&mut sql, " AND time >= ?", Box::new(from));
        arg(&mut sql, " AND time < ?", Box::new(to));
    }
    (sql, params)
}

/// The earliest and latest time of `stream`'s rows `p` lets through (`facts`: only rows with a report fact);
/// `None` if there are none.
pub async fn span(
    client: &tokio_postgres::Client,
    url: &str,
    stream: &str,
    p: &Pushdown,
    facts: bool,
) -> Result<Option<(SystemTime, SystemTime)>, PgError> {
    let (sql, params) = if facts {
        query(
            "SELECT min(time), max(time) FROM concierge_record WHERE stream = $1 AND arm IS NOT NULL",
            stream,
            &times(p),
        )
    } else {
        query(
            "SELECT min(time), max(time) FROM concierge_record WHERE stream = $1",
            stream,
            p,
        )
    };
    let params: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let row = client.query_one(&sql, &params).await.map_err(db(url))?;
    let lo: Option<SystemTime> = row.try_get(0).map_err(db(url))?;
    let hi: Option<SystemTime> = row.try_get(1).map_err(db(url))?;
    Ok(lo.zip(hi))
}

/// Only `p`'s time bounds (the report's types are its own).
fn times(p: &Pushdown) -> Pushdown {
    Pushdown {
        since: p.since.clone(),
        until: p.until.clone(),
        within: p.within,
        ..Pushdown::default()
    }
}

/// The experiment report's input from `stream` within `p`'s times (and piece), into `report`: each row's
/// fact from its columns (schema 4: an index-only scan, no JSON). Returns how many rows.
pub async fn facts(
    client: &tokio_postgres::Client,
    url: &str,
    stream: &str,
    p: &Pushdown,
    report: &mut Builder,
) -> Result<u64, PgError> {
    let e = db(url);
    let (sql, params) = query(
        "SELECT type, fact_time, experiment, arm, account, visitor, goal, control
         FROM concierge_record WHERE stream = $1 AND arm IS NOT NULL",
        stream,
        &times(p),
    );
    each_row(client, url, &sql, &params, |row| {
        let text = |i: usize| -> Result<&str, PgError> {
            row.try_get::<_, Option<&str>>(i)
                .map(Option::unwrap_or_default)
                .map_err(&e)
        };
        let arm = match text(3)? {
            "control" => Arm::Control,
            "treatment" => Arm::Treatment,
            other => {
                return Err(PgError::Db {
                    at: super::shown(url),
                    reason: format!(
                        "a row of stream `{stream}` has arm `{other}`, which no line says \
                         (`concierge audit verify --postgres` names the row)"
                    ),
                })
            }
        };
        report.add(&Fact {
            kind: text(0)?.into(),
            time: text(1)?.into(),
            experiment: text(2)?.into(),
            arm: Some(arm),
            account: text(4)?.into(),
            visitor: text(5)?.into(),
            goal: text(6)?.into(),
            control: row.try_get(7).map_err(&e)?,
        });
        Ok(true)
    })
    .await
}

/// The line of every exposure or conversion row of `stream` within `p`'s times (and piece) that has no fact (shipped
/// before schema 4, or one the report's parser refuses), into `report`, which reads it as it reads a
/// folder's. Returns how many rows.
pub async fn lines_without_facts(
    client: &tokio_postgres::Client,
    url: &str,
    stream: &str,
    p: &Pushdown,
    report: &mut Builder,
) -> Result<u64, PgError> {
    let e = db(url);
    let (sql, params) = query(
        "SELECT line FROM concierge_record
         WHERE stream = $1 AND arm IS NULL AND type IN ('exposure', 'conversion')",
        stream,
        &times(p),
    );
    // The planner takes `arm` and `type` as independent: with half the rows decisions (no arm) and half
    // exposures, it expects a quarter of the table here and scans all of it (3.5 s over 10 M rows) for what is
    // no row at all once every row has its fact. The partial index `concierge_record_no_fact` holds exactly
    // these rows, so the scan of the table is ruled out for this query.
    client
        .batch_execute("SET enable_seqscan = off; SET jit = off")
        .await
        .map_err(&e)?;
    let n = each_row(client, url, &sql, &params, |row| {
        let l: &str = row.try_get(0).map_err(&e)?;
        report.add_line(l.as_bytes());
        Ok(true)
    })
    .await?;
    client
        .batch_execute("RESET enable_seqscan; RESET jit")
        .await
        .map_err(&e)?;
    Ok(n)
}

/// What the store holds of one instance's stream: its newest record and checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamState {
    pub instance: String,
    pub stream: String,
    /// The key registered for the instance (encoded) and since when; `None`: not registered.
    pub key: Option<(String, String)>,
    /// The newest record's seq and time (RFC 3339, UTC); `None`: no record (checkpoints only, or nothing).
    pub last_record: Option<(u64, String)>,
    /// The newest checkpoint's seq.
    pub last_checkpoint: Option<u64>,
}

/// Every (instance, stream) the store knows — from its records, checkpoints and registered instances —
/// with its newest record and checkpoint, at most `limit`. The distinct pairs are found by skipping through
/// the primary keys of records and of checkpoints (recursive queries: an index probe per pair and partition,
/// not a scan of every row).
pub(crate) async fn instances(
    client: &tokio_postgres::Client,
    url: &str,
    limit: usize,
) -> Result<Vec<StreamState>, PgError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = client
        .query(
            "WITH RECURSIVE pairs AS (
                 (SELECT instance, stream FROM concierge_record ORDER BY instance, stream LIMIT 1)
                 UNION ALL
                 SELECT n.instance, n.stream FROM pairs p, LATERAL (
                     SELECT r.instance, r.stream FROM concierge_record r
                     WHERE (r.instance, r.stream) > (p.instance, p.stream)
                     ORDER BY r.instance, r.stream LIMIT 1) n
             ), checkpointed AS (
                 (SELECT instance, stream FROM concierge_checkpoint ORDER BY instance, stream LIMIT 1)
                 UNION ALL
                 SELECT n.instance, n.stream FROM checkpointed p, LATERAL (
                     SELECT c.instance, c.stream FROM concierge_checkpoint c
                     WHERE (c.instance, c.stream) > (p.instance, p.stream)
                     ORDER BY c.instance, c.stream LIMIT 1) n
             ), every AS (
                 SELECT instance, stream FROM pairs
                 UNION SELECT instance, stream FROM checkpointed
                 UNION SELECT instance, NULL FROM concierge_instance i
                     WHERE NOT EXISTS (SELECT 1 FROM checkpointed c WHERE c.instance = i.instance)
                       AND NOT EXISTS (SELECT 1 FROM pairs p WHERE p.instance = i.instance)
             )
             SELECT e.instance, e.stream, i.public_key,
                    to_char(i.registered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), r.seq,
                    to_char(r.time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), c.seq
             FROM every e
             LEFT JOIN concierge_instance i ON i.instance = e.instance
             LEFT JOIN LATERAL (SELECT seq, time FROM concierge_record r
                 WHERE r.instance = e.instance AND r.stream = e.stream ORDER BY seq DESC LIMIT 1) r ON true
             LEFT JOIN LATERAL (SELECT seq FROM concierge_checkpoint c
                 WHERE c.instance = e.instance AND c.stream = e.stream ORDER BY seq DESC LIMIT 1) c ON true
             ORDER BY e.instance, e.stream NULLS FIRST
             LIMIT $1",
            &[&limit],
        )
        .await
        .map_err(db(url))?;
    let e = db(url);
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let seq = |v: Option<i64>| v.and_then(|s| u64::try_from(s).ok());
        let key: Option<String> = row.try_get(2).map_err(&e)?;
        let at: Option<String> = row.try_get(3).map_err(&e)?;
        let record_seq: Option<i64> = row.try_get(4).map_err(&e)?;
        let record_time: Option<String> = row.try_get(5).map_err(&e)?;
        out.push(StreamState {
            instance: row.try_get(0).map_err(&e)?,
            stream: row
                .try_get::<_, Option<String>>(1)
                .map_err(&e)?
                .unwrap_or_default(),
            key: key.map(|k| (k, at.unwrap_or_default())),
            last_record: seq(record_seq).zip(record_time),
            last_checkpoint: seq(row.try_get(6).map_err(&e)?),
        });
    }
    Ok(out)
}
