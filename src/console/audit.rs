//! Audit: is the log intact (the verifier `concierge audit verify` runs), its checkpoints, a search over the
//! records (`concierge audit export`'s filter), one record's proof, and the search as CSV or JSON Lines.
//!
//! Bounds: a page shows [`MAX_PAGE`] records; a search reads at most [`SCAN_LIMIT`] records or for [`SCAN_TIME`],
//! then says where it stopped; a download holds at most [`EXPORT_LIMIT`] records (its file name says so when cut).

use std::path::PathBuf;
use std::time::Duration;

use maud::{html, Markup};
use serde_json::Value;

use super::view::{count, error_page, layout, status};
use super::{verified, Console, Query, Reply};
use crate::audit::keys::{Checkpoint, PublicKey};
use crate::audit::query::{self, Filter};
use crate::audit::{chain, AUDIT_STREAM, FEEDBACK_STREAM};
use crate::rules::template::percent_encode as encode;

pub(crate) const MAX_PAGE: usize = 100;
pub(crate) const SCAN_LIMIT: u64 = 5_000_000;
pub(crate) const SCAN_TIME: Duration = Duration::from_secs(5);
pub(crate) const EXPORT_LIMIT: usize = 1_000_000;

pub(crate) enum Export {
    Csv,
    Jsonl,
}

/// The search's parameters, checked: every problem in words for the page.
fn filter(q: &Query) -> Result<Filter, String> {
    let choice = |key: &str, allowed: &[&str], what: &str| -> Result<Option<String>, String> {
        match q.get(key) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
            Some(v) => Err(format!(
                "“{v}” is not a {what}; choose one of: {}.",
                allowed.join(", ")
            )),
        }
    };
    let (since, until) = q.range()?;
    Ok(Filter {
        since,
        until,
        account: q.term("account", "account domain")?,
        decision: choice("decision", query::DECISIONS, "decision outcome or tier")?,
        kind: choice("type", query::RECORD_TYPES, "record type")?,
        consent: q.term("consent", "consent id")?,
        request_id: q.term("request", "request id")?,
    })
}

/// The search's parameters again, for links (paging, downloads).
fn query_string(q: &Query, page: Option<usize>) -> String {
    let mut parts: Vec<String> = [
        "since", "until", "account", "decision", "type", "consent", "request",
    ]
    .iter()
    .filter_map(|k| q.get(k).map(|v| format!("{k}={}", encode(v))))
    .collect();
    if let Some(p) = page {
        parts.push(format!("page={p}"));
    }
    parts.join("&")
}

fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn search_form(q: &Query) -> Markup {
    let opt = |key: &str, values: &[&str]| -> Markup {
        html! {
            select id=(key) name=(key) {
                option value="" { "any" }
                @for v in values { option value=(v) selected[q.get(key) == Some(*v)] { (v) } }
            }
        }
    };
    html! {
        form.search method="get" action="/console/audit" role="search" aria-label="Search the records" {
            div { label for="since" { "From (date or time)" } input id="since" name="since" placeholder="2026-11-24" value=(q.get("since").unwrap_or("")); }
            div { label for="until" { "Until (before)" } input id="until" name="until" placeholder="2026-12-01" value=(q.get("until").unwrap_or("")); }
            div { label for="consent" { "Consent id" } input id="consent" name="consent" value=(q.get("consent").unwrap_or("")); }
            div { label for="request" { "Request id" } input id="request" name="request" value=(q.get("request").unwrap_or("")); }
            div { label for="account" { "Account domain" } input id="account" name="account" placeholder="acme.example" value=(q.get("account").unwrap_or("")); }
            div { label for="type" { "Record type" } (opt("type", query::RECORD_TYPES)) }
            div { label for="decision" { "Outcome or tier" } (opt("decision", query::DECISIONS)) }
            div { button type="submit" { "Search" } }
        }
    }
}

pub(super) fn search_page(c: &Console, q: &Query) -> Reply {
    let f = match filter(q) {
        Ok(f) => f,
        Err(e) => {
            let body = html! { p.notice.bad role="alert" { (e) } (search_form(q)) };
            return Reply::html(400, layout("Audit", "Audit", body));
        }
    };
    let page = match q.get("page").map(str::parse::<usize>) {
        None => 1,
        Some(Ok(p)) if (1..=100_000).contains(&p) => p,
        Some(_) => {
            return Reply::html(
                400,
                error_page(
                    "Bad request",
                    "The page number must be a whole number from 1.",
                ),
            )
        }
    };
    let dir = c.audit_dir().join(AUDIT_STREAM);
    let store = c.store();
    let found = match &store {
        Some(store) => match store_search(store, &f, (page - 1) * MAX_PAGE, MAX_PAGE) {
            Ok(found) => found,
            Err(e) => return super::view::unreadable(e),
        },
        None => match c.index(AUDIT_STREAM).and_then(|index| {
            index.search(&f, (page - 1) * MAX_PAGE, MAX_PAGE, SCAN_LIMIT, SCAN_TIME)
        }) {
            Ok(found) => found,
            Err(e) => return super::view::unreadable(format!("{}: {e}", dir.display())),
        },
    };
    let qs = query_string(q, None);
    let body = html! {
        p { a href="/console/audit/verify" { "Verify the log" } " — checks every record's link, every checkpoint's signature and the ends of the log." }
        h2 { "Search the records" }
        (search_form(q))
        @if let Some(store) = &store { p.muted.small role="status" { "Every instance's records, in time order: " (store.describe()) "." } }
        @if let Some(why) = &found.stopped {
            p.notice role="status" { "The search stopped " (why) ". Narrow it with dates to see the rest." }
        }
        p.muted role="status" {
            @if found.rows.is_empty() { "No record matches." }
            @else { "Records " ((page - 1) * MAX_PAGE + 1) "–" ((page - 1) * MAX_PAGE + found.rows.len()) @if found.more { " (more follow)" } "." }
        }
        @if !found.rows.is_empty() {
            div.scroll { table {
                thead { tr {
                    @if store.is_some() { th scope="col" { "instance" } }
                    th scope="col" { "seq" } th scope="col" { "time" } th scope="col" { "type" } th scope="col" { "outcome" }
                    th scope="col" { "company" } th scope="col" { "consent id" } th scope="col" { "request id" }
                } }
                tbody { @for (i, v) in found.rows.iter().enumerate() {
                    @let seq = v["seq"].as_u64().unwrap_or(0);
                    @let instance = found.instances.get(i);
                    tr {
                        @if let Some(instance) = instance { td { code.small { (instance) } } }
                        td.num {
                            @match instance {
                                Some(instance) => a href={"/console/audit/record?stream=audit&instance=" (encode(instance)) "&seq=" (seq)} aria-label={"Record " (seq) " of " (instance)} { (seq) },
                                None => a href={"/console/audit/record?stream=audit&seq=" (seq)} aria-label={"Record " (seq)} { (seq) },
                            }
                        }
                        td { (field(v, "time")) }
                        td { (field(v, "type")) }
                        td { (field(v, "outcome")) (field(v, "action")) }
                        td { (field(v, "company")) }
                        td { code.small { (field(v, "consent_id")) } }
                        td { code.small { (field(v, "request_id")) } }
                    }
                } }
            } }
        }
        div.actions {
            @if page > 1 { a href={"/console/audit?" (query_string(q, Some(page - 1)))} rel="prev" { "← Previous page" } }
            @if found.more { a href={"/console/audit?" (query_string(q, Some(page + 1)))} rel="next" { "Next page →" } }
            span { "Download this search: " a href={"/console/audit/export.csv?" (qs)} download { "CSV" } " · " a href={"/console/audit/export.jsonl?" (qs)} download { "JSON Lines" } }
        }
    };
    Reply::html(200, layout("Audit", "Audit", body))
}

/// A page of the search over the record store, in time order over every instance, bounded as the local one.
fn store_search(
    store: &crate::records::Records,
    f: &Filter,
    skip: usize,
    take: usize,
) -> Result<super::index::Found, String> {
    let start = std::time::Instant::now();
    let mut found = super::index::Found {
        rows: Vec::new(),
        instances: Vec::new(),
        more: false,
        stopped: None,
    };
    let (mut matched, mut read) = (0usize, 0u64);
    store.rows(
        AUDIT_STREAM,
        &crate::postgres::read::Pushdown::from(f),
        crate::postgres::read::Order::Time,
        |instance, line| {
            read += 1;
            if read % 1024 == 0 {
                if read >= SCAN_LIMIT {
                    found.stopped = Some(format!("after reading {read} records"));
                    return false;
                }
                if start.elapsed() > SCAN_TIME {
                    found.stopped = Some(format!(
                        "after {} s ({read} records read)",
                        SCAN_TIME.as_secs()
                    ));
                    return false;
                }
            }
            let Ok(v) = serde_json::from_slice::<Value>(line) else {
                return true;
            };
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
                found.instances.push(instance.unwrap_or("?").to_string());
            }
            true
        },
    )?;
    Ok(found)
}

pub(super) fn export(c: &Console, q: &Query, format: Export) -> Reply {
    let f = match filter(q) {
        Ok(f) => f,
        Err(e) => return Reply::html(400, error_page("Bad request", &e)),
    };
    let dir = c.audit_dir().join(AUDIT_STREAM);
    let mut out: Vec<u8> = Vec::new();
    let mut rows = 0usize;
    let mut csv = matches!(format, Export::Csv).then(|| {
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record(query::CSV_COLUMNS);
        w
    });
    let store = c.store();
    let result = if let Some(store) = &store {
        store
            .rows(
                AUDIT_STREAM,
                &crate::postgres::read::Pushdown::from(&f),
                crate::postgres::read::Order::Time,
                |_, line| {
                    let Ok(v) = serde_json::from_slice::<Value>(line) else {
                        return true;
                    };
                    if !f.matches(&v) {
                        return true;
                    }
                    rows += 1;
                    match csv.as_mut() {
                        Some(w) => {
                            let _ = w.write_record(query::csv_row(&v));
                        }
                        None => {
                            out.extend_from_slice(line);
                            out.push(b'\n');
                        }
                    }
                    rows < EXPORT_LIMIT
                },
            )
            .map_err(std::io::Error::other)
    } else if dir.is_dir() {
        query::scan(&dir, |line, v| {
            if !f.matches(v) {
                return true;
            }
            rows += 1;
            match csv.as_mut() {
                Some(w) => {
                    let _ = w.write_record(query::csv_row(v));
                }
                None => {
                    out.extend_from_slice(line);
                    out.push(b'\n');
                }
            }
            rows < EXPORT_LIMIT
        })
    } else {
        Ok(())
    };
    if let Err(e) = result {
        return super::view::unreadable(format!("{}: {e}", dir.display()));
    }
    if let Some(w) = csv {
        out = w.into_inner().unwrap_or_default();
    }
    let cut = if rows >= EXPORT_LIMIT {
        format!("-first-{EXPORT_LIMIT}")
    } else {
        String::new()
    };
    let (ct, ext) = match format {
        Export::Csv => ("text/csv; charset=utf-8", "csv"),
        Export::Jsonl => ("application/jsonl; charset=utf-8", "jsonl"),
    };
    Reply {
        status: 200,
        content_type: ct,
        body: out,
        download: Some(format!("concierge-audit{cut}.{ext}")),
        challenge: false,
        frame: false,
    }
}

pub(super) fn trusted_key(c: &Console) -> (PathBuf, Result<PublicKey, String>) {
    let path = c
        .settings
        .audit
        .signing_key
        .clone()
        .unwrap_or_else(|| c.audit_dir().join("signing.key"));
    let key = PublicKey::load(&path).map_err(|e| e.to_string());
    (path, key)
}

fn checkpoints(dir: &std::path::Path) -> Vec<Checkpoint> {
    std::fs::read_to_string(dir.join(chain::CHECKPOINTS))
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn verify_page(c: &Console) -> Reply {
    let dir = c.audit_dir();
    let (key_path, key) = trusted_key(c);
    let key = match key {
        Ok(k) => k,
        Err(e) => {
            return Reply::html(
                500,
                error_page(
                    "Verify the log",
                    &format!(
                        "No trusted key to verify with ({}): {e}",
                        key_path.display()
                    ),
                ),
            )
        }
    };
    let (verified, running) = match c.verifier.answer(&dir, &key) {
        verified::Answer::Current(v) => (Some(v), None),
        verified::Answer::Running { last, since } => (last, Some(since)),
        verified::Answer::Failed(e) => return Reply::html(500, error_page("Verify the log", &e)),
    };
    let stamp = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let Some(v) = verified else {
        let body = html! {
            p.notice role="status" {
                "The log is being verified (" (count(verified::Fingerprint::of(&dir, &key).bytes() as f64 / 1e6)) " MB, since "
                (stamp(running.unwrap_or_else(std::time::SystemTime::now))) "): reload this page in a few seconds for the result."
            }
        };
        return Reply::html(200, layout("Verify the log", "Audit", body));
    };
    let report = &v.report;
    let body = html! {
        p { "Verified at " (stamp(v.at)) " in " (format!("{:.2}", v.took.as_secs_f64())) " s, against the public key of " code { (key_path.display()) } " (" code.small { (key.encode()) } ")." }
        @if let Some(since) = running {
            p.notice role="status" { "The log has grown since; a new verification is under way (since " (stamp(since)) "). This is the last complete result: reload the page for the new one." }
        } @else {
            p.muted.small { "The log has not changed since." }
        }
        @match report.first_problem() {
            None if report.intact => p { (status(true, "intact", "")) " Every record links to the one before it, every checkpoint is signed by the trusted key and matches the record it covers." },
            None => p { (status(true, "empty", "")) " Nothing to verify yet in " code { (dir.display()) } "." },
            Some((stream, p)) => div.notice.bad role="alert" {
                (status(false, "", "TAMPERED")) " The first bad record is in stream " code { (stream) } " at " code { (p.at) }
                @if let Some(seq) = p.seq { " (seq " (seq) ")" } ": " (p.what)
            },
        }
        div.scroll { table {
            caption.muted.small { "Per stream." }
            thead { tr {
                th scope="col" { "stream" } th.num scope="col" { "records" } th.num scope="col" { "segments" } th scope="col" { "seq" }
                th.num scope="col" { "checkpoints" } th.num scope="col" { "after the last checkpoint" } th scope="col" { "status" }
            } }
            tbody { @for s in &report.streams { tr {
                td { code { (s.stream) } @if let Some(i) = &s.instance { br; span.muted.small { "instance " (i) } } }
                td.num { (count(s.records as f64)) }
                td.num { (s.segments) }
                td { @if let (Some(a), Some(b)) = (s.first_seq, s.last_seq) { (a) "–" (b) } }
                td.num { (s.checkpoints) }
                td.num { (count(s.unsigned_tail as f64)) }
                td { (status(s.problems.is_empty(), "intact", "bad")) @for n in &s.notes { br; span.muted.small { (n) } } }
            } } }
        } }
        @for s in &report.streams {
            @if !s.problems.is_empty() {
                h2 { "Problems in " code { (s.stream) } }
                ul { @for p in &s.problems { li { code { (p.at) } ": " (p.what) } } }
            }
        }
        @for stream in [AUDIT_STREAM, FEEDBACK_STREAM] {
            @let cps = checkpoints(&dir.join(stream));
            @if !cps.is_empty() {
                h2 { "Checkpoints of " code { (stream) } " (latest " (cps.len().min(50)) " of " (cps.len()) ")" }
                div.scroll { table {
                    thead { tr { th.num scope="col" { "covers seq" } th scope="col" { "time" } th scope="col" { "record hash" } th scope="col" { "signature" } } }
                    tbody { @for cp in cps.iter().rev().take(50) { tr {
                        td.num { (cp.seq) } td { (cp.time) } td { code.small { (cp.hash.get(..16).unwrap_or(&cp.hash)) "…" } }
                        td { (status(cp.verify(&key), "valid", "NOT by the trusted key")) }
                    } } }
                } }
            }
        }
    };
    Reply::html(200, layout("Verify the log", "Audit", body))
}

/// One record of another instance, from the record store (its proof: `concierge audit verify --postgres`).
fn store_record(store: &crate::records::Records, instance: &str, stream: &str, seq: u64) -> Reply {
    if !crate::audit::valid_instance(instance) {
        return Reply::html(
            400,
            error_page("Bad request", "That is not an instance id."),
        );
    }
    let line = match store.record(instance, stream, seq) {
        Ok(Some(line)) => line,
        Ok(None) => {
            return Reply::html(
                404,
                error_page(
                    "No such record",
                    &format!("Instance `{instance}` has no record with seq {seq} in stream `{stream}` in the record store."),
                ),
            )
        }
        Err(e) => return super::view::unreadable(e),
    };
    let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
    let body = html! {
        dl.kv {
            dt { "instance" } dd { code { (instance) } }
            dt { "stream" } dd { code { (stream) } }
            dt { "seq" } dd { (seq) }
            dt { "time" } dd { (field(&v, "time")) }
            dt { "type" } dd { (field(&v, "type")) }
            dt { "line hash (SHA-256)" } dd { code.small { (chain::hash(line.as_bytes())) } }
            dt { "previous line's hash" } dd { code.small { (field(&v, "prev")) } }
            dt { "proof" } dd { "the record store's copy; whether every instance's chain and checkpoints hold: " code { "concierge audit verify --postgres URL" } "." }
            @if let Some(id) = v["consent_id"].as_str() {
                dt { "consent" } dd { a href={"/console/audit?consent=" (encode(id))} { "every record of consent " code { (id) } } }
            }
        }
        h2 { "The record as stored" }
        pre { (pretty) }
    };
    Reply::html(
        200,
        layout(&format!("Record {seq} of {instance}"), "Audit", body),
    )
}

pub(super) fn record_page(c: &Console, q: &Query) -> Reply {
    let stream = q.get("stream").unwrap_or(AUDIT_STREAM);
    if stream != AUDIT_STREAM && stream != FEEDBACK_STREAM {
        return Reply::html(
            400,
            error_page("Bad request", "The stream is `audit` or `feedback`."),
        );
    }
    let Some(Ok(seq)) = q.get("seq").map(str::parse::<u64>) else {
        return Reply::html(
            400,
            error_page(
                "Bad request",
                "Give the record's sequence number: ?seq=123.",
            ),
        );
    };
    let dir = c.audit_dir().join(stream);
    if let (Some(instance), Some(store)) = (q.get("instance"), c.store()) {
        return store_record(&store, instance, stream, seq);
    }
    let hit = match c.index(stream).and_then(|index| index.record(seq)) {
        Ok(hit) => hit,
        Err(e) => return super::view::unreadable(format!("{}: {e}", dir.display())),
    };
    let Some((line, v)) = hit else {
        return Reply::html(
            404,
            error_page(
                "No such record",
                &format!("Stream `{stream}` has no record with seq {seq}."),
            ),
        );
    };
    let (_, key) = trusted_key(c);
    let cover = checkpoints(&dir).into_iter().find(|cp| cp.seq >= seq);
    let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
    let body = html! {
        dl.kv {
            dt { "stream" } dd { code { (stream) } }
            dt { "seq" } dd { (seq) }
            dt { "time" } dd { (field(&v, "time")) }
            dt { "type" } dd { (field(&v, "type")) }
            dt { "line hash (SHA-256)" } dd { code.small { (chain::hash(&line)) } }
            dt { "previous line's hash" } dd { code.small { (field(&v, "prev")) } }
            dt { "covered by" } dd {
                @match &cover {
                    Some(cp) => {
                        "the checkpoint of seq " (cp.seq) " at " (cp.time) ", signature "
                        @match &key { Ok(k) => (status(cp.verify(k), "valid", "NOT by the trusted key")), Err(_) => span.status.warn { "no trusted key" } }
                        ". Whether every link between them holds: " a href="/console/audit/verify" { "verify the log" } "."
                    }
                    None => "no checkpoint yet: the record is protected by the chain only until the next checkpoint is written.",
                }
            }
            @if let Some(id) = v["consent_id"].as_str() {
                dt { "consent" } dd { a href={"/console/audit?consent=" (encode(id))} { "every record of consent " code { (id) } } }
            }
        }
        h2 { "The record as stored" }
        pre { (pretty) }
    };
    Reply::html(200, layout(&format!("Record {seq}"), "Audit", body))
}
