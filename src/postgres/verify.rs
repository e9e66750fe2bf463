//! Central verification: every instance's chains and checkpoints checked from the database alone, against the
//! keys registered for the instances (never a key a row names). The rows of one (instance, stream) are laid out
//! in sequence order as the files they were shipped from, and the file verifier (`audit::verify`) runs over
//! them — one verifier, so an edited, deleted, reordered or forged row fails exactly as it would on disk. The
//! columns the readers search by are checked against their line too.

use std::path::Path;

use super::{db, PgError};
use crate::audit::keys::PublicKey;
use crate::audit::verify::{self, Problem, Report};

/// One instance's verdict.
pub struct InstanceReport {
    pub instance: String,
    /// `None`: the instance has rows but no registered key, so nothing of it could be verified.
    pub report: Option<Report>,
}

/// Verify every instance the database knows (registered, or with rows). `scratch`: an empty directory for the
/// laid-out files.
pub async fn verify_all(
    client: &tokio_postgres::Client,
    url: &str,
    scratch: &Path,
) -> Result<Vec<InstanceReport>, PgError> {
    let e = db(url);
    let io = |err: std::io::Error| PgError::Db {
        at: scratch.display().to_string(),
        reason: err.to_string(),
    };
    let rows = client
        .query(
            "SELECT i.instance, k.public_key FROM
               (SELECT instance FROM concierge_instance
                UNION SELECT DISTINCT instance FROM concierge_record
                UNION SELECT DISTINCT instance FROM concierge_checkpoint) i
             LEFT JOIN concierge_instance k USING (instance) ORDER BY 1",
            &[],
        )
        .await
        .map_err(&e)?;
    let mut out = Vec::new();
    for row in rows {
        let instance: String = row.get(0);
        let key: Option<String> = row.get(1);
        let Some(key) = key.as_deref().and_then(PublicKey::parse) else {
            out.push(InstanceReport {
                instance,
                report: None,
            });
            continue;
        };
        let dir = scratch.join(format!("{:04}", out.len()));
        let streams = client
            .query(
                "SELECT DISTINCT stream FROM concierge_record WHERE instance = $1
                 UNION SELECT DISTINCT stream FROM concierge_checkpoint WHERE instance = $1 ORDER BY 1",
                &[&instance],
            )
            .await
            .map_err(&e)?;
        let mut column_problems: Vec<(String, Problem)> = Vec::new();
        for s in streams {
            let stream: String = s.get(0);
            if !crate::audit::valid_instance(&stream) {
                continue;
            }
            let sdir = dir.join(&stream);
            std::fs::create_dir_all(&sdir).map_err(io)?;
            // Streamed into the laid-out segment (never the whole stream in memory); named by its first seq
            // once that is known.
            let rows = client
                .query_raw(
                    "SELECT seq, line, hash, prev, time, type, request_id, consent_id, company, experiment,
                            fact_time, arm, account, visitor, goal, control
                     FROM concierge_record WHERE instance = $1 AND stream = $2 ORDER BY seq",
                    [&instance as &(dyn tokio_postgres::types::ToSql + Sync), &stream],
                )
                .await
                .map_err(&e)?;
            let mut rows = std::pin::pin!(rows);
            let part = sdir.join("laying-out");
            let mut out = std::io::BufWriter::new(std::fs::File::create(&part).map_err(io)?);
            let mut first: Option<u64> = None;
            while let Some(r) = futures_util::TryStreamExt::try_next(&mut rows)
                .await
                .map_err(&e)?
            {
                let (seq, line, hash, prev): (i64, &str, &str, &str) = (
                    r.try_get(0).map_err(&e)?,
                    r.try_get(1).map_err(&e)?,
                    r.try_get(2).map_err(&e)?,
                    r.try_get(3).map_err(&e)?,
                );
                first.get_or_insert(seq.max(0) as u64);
                // The columns must say what the line says.
                let head = crate::audit::chain::head(line.as_bytes()).ok();
                let wrong = if head.as_ref().map(|h| h.seq as i64) != Some(seq)
                    || head.as_ref().map(|h| h.prev.as_str()) != Some(prev)
                    || crate::audit::chain::hash(line.as_bytes()) != hash
                {
                    Some("seq, prev or hash".to_string())
                } else {
                    derived_mismatch(&r, line).map_err(&e)?
                };
                if let Some(columns) = wrong {
                    column_problems.push((
                        stream.clone(),
                        Problem {
                            at: format!("row seq {seq}"),
                            seq: Some(seq.max(0) as u64),
                            what: format!("the row's {columns} column does not match its line"),
                        },
                    ));
                }
                std::io::Write::write_all(&mut out, line.as_bytes()).map_err(io)?;
                std::io::Write::write_all(&mut out, b"\n").map_err(io)?;
            }
            std::io::Write::flush(&mut out).map_err(io)?;
            drop(out);
            let first = first.unwrap_or(0);
            std::fs::rename(&part, sdir.join(format!("{first:020}.jsonl"))).map_err(io)?;
            let cps = client
                .query(
                    "SELECT line FROM concierge_checkpoint WHERE instance = $1 AND stream = $2 ORDER BY seq",
                    &[&instance, &stream],
                )
                .await
                .map_err(&e)?;
            let mut text = String::new();
            for c in &cps {
                text.push_str(&c.get::<_, String>(0));
                text.push('\n');
            }
            std::fs::write(sdir.join(crate::audit::chain::CHECKPOINTS), text).map_err(io)?;
        }
        let mut report = verify::verify(&dir, &key).map_err(io)?;
        // The laid-out copy is as large as the instance's rows: gone before the next instance's.
        let _ = std::fs::remove_dir_all(&dir);
        for s in &mut report.streams {
            for p in &mut s.problems {
                p.at = format!("{instance}/{} in the database, {}", s.stream, p.at);
            }
            // A chain's checkpoints must name the instance whose rows they are.
            if let Some(named) = &s.instance {
                if named != &instance {
                    s.problems.push(Problem {
                        at: format!("{instance}/{}", s.stream),
                        seq: None,
                        what: format!("its checkpoints name instance `{named}`"),
                    });
                }
            }
            for (stream, p) in column_problems.iter().filter(|(st, _)| *st == s.stream) {
                let _ = stream;
                s.problems.push(Problem {
                    at: format!("{instance}/{} in the database, {}", s.stream, p.at),
                    seq: p.seq,
                    what: p.what.clone(),
                });
            }
        }
        report.intact =
            !report.streams.is_empty() && report.streams.iter().all(|s| s.problems.is_empty());
        out.push(InstanceReport {
            instance,
            report: Some(report),
        });
    }
    Ok(out)
}

/// Which of the columns shipping derives from a row's line (`ship::Derived`) say something else, if any. A
/// row may have no fact at all (shipped before schema 4: the report then reads its line, which the chain
/// covers); if it has one, it must be the line's. `time` is compared where the line's time is RFC 3339 in
/// UTC, as the writer writes it (to the database's microsecond).
fn derived_mismatch(
    r: &tokio_postgres::Row,
    line: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    let Some(d) = super::ship::Derived::of(line.as_bytes()) else {
        return Ok(Some("line".into())); // not a record shipping would have taken
    };
    let text = |i: usize| r.try_get::<_, Option<String>>(i);
    let time: std::time::SystemTime = r.try_get(4)?;
    let time_ok = humantime::parse_rfc3339_weak(&d.time).map_or(true, |t| {
        let gap = t.duration_since(time).or_else(|_| time.duration_since(t));
        gap.is_ok_and(|g| g < std::time::Duration::from_micros(1))
    });
    let mut wrong = Vec::new();
    if !time_ok {
        wrong.push("time");
    }
    for (name, have, want) in [
        ("type", text(5)?, Some(d.kind.clone())),
        ("request_id", text(6)?, d.request_id.clone()),
        ("consent_id", text(7)?, d.consent_id.clone()),
        ("company", text(8)?, d.company.clone()),
        ("experiment", text(9)?, d.experiment.clone()),
    ] {
        if have != want {
            wrong.push(name);
        }
    }
    let fact = (
        text(10)?,
        text(11)?,
        text(12)?,
        text(13)?,
        text(14)?,
        r.try_get::<_, Option<f64>>(15)?,
    );
    let none = (None, None, None, None, None, None);
    if fact != none {
        let want = d.fact.as_ref().map_or(none, |f| {
            (
                Some(f.time.clone()),
                Some(f.arm.to_string()),
                Some(f.account.clone()),
                Some(f.visitor.clone()),
                Some(f.goal.clone()),
                f.control,
            )
        });
        if fact != want {
            wrong.push("fact (fact_time, arm, account, visitor, goal or control)");
        }
    }
    Ok((!wrong.is_empty()).then(|| wrong.join(", ")))
}
