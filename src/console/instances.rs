//! Instances: with a record store (`[audit.postgres]`), this instance's shipping (what `/healthz/records`
//! says) and every instance the store knows — whether its key is registered, its newest record and
//! checkpoint per stream, and how long ago that record was written. An instance whose newest record is old
//! while others' are recent is one that stopped shipping (or serving): the store cannot see what an instance
//! has not shipped, so its own lag is on its `/healthz/records` and `concierge_audit_ship_lag_*` metrics.

use std::time::SystemTime;

use maud::html;

use super::view::{count, layout, status};
use super::{Console, Reply};
use crate::postgres::read::StreamState;

/// At most this many (instance, stream) rows on the page.
pub(crate) const MAX_ROWS: usize = 500;

pub(super) fn page(c: &Console) -> Reply {
    let Some(store) = c.store() else {
        let body = html! {
            p { "No record store is configured (" code { "[audit.postgres]" } "): this proxy's records are in its own folder, " code { (c.audit_dir().display()) } ", and every other instance's in its own. With a record store, every instance, whether its key is registered and how current its records are show here." }
        };
        return Reply::html(200, layout("Instances", "Instances", body));
    };
    let (this, this_key) = c
        .records_health
        .as_ref()
        .map(|h| h.instance())
        .unwrap_or_default();
    let shipping = c.records_health.as_ref().map(|h| h.status());
    // One more than shown: whether there are more.
    let listed = store.instances(MAX_ROWS + 1);
    let now = SystemTime::now();
    let body = html! {
        p.muted { "Every instance that writes to " (store.describe()) ". The store holds what each instance has shipped; what an instance has not shipped yet is on its own " code { "/healthz/records" } "." }
        h2 { "This instance" }
        @match &shipping {
            None => p { "This proxy does not ship to the store (its shipper is not running)." },
            Some((healthy, text)) => {
                p { "Instance " code { (this) } ", checkpoint key " code { (this_key) } ": " (status(*healthy, "healthy", "needs attention")) }
                pre.small role="status" { (text) }
            }
        }
        h2 { "Every instance in the store" }
        @match &listed {
            Err(e) => div.notice.bad role="alert" { p { "The record store cannot be read: " code { (e) } } },
            Ok(rows) => {
                div.scroll {
                    table {
                        caption.muted.small { "Per instance and stream: the key central verification trusts for it (" code { "concierge audit register" } "), its newest record and checkpoint in the store." }
                        thead { tr {
                            th scope="col" { "instance" } th scope="col" { "key" } th scope="col" { "stream" }
                            th.num scope="col" { "newest seq" } th scope="col" { "newest record" } th scope="col" { "age" }
                            th.num scope="col" { "newest checkpoint" } th.num scope="col" { "records after it" }
                        } }
                        tbody {
                            @if rows.is_empty() { tr { td colspan="8" .muted { "The store holds no instance yet." } } }
                            @for r in rows.iter().take(MAX_ROWS) {
                                tr {
                                    td { code { (r.instance) } @if r.instance == this { " " span.muted.small { "(this one)" } } }
                                    td { (key_cell(r, &this, &this_key)) }
                                    td { @if r.stream.is_empty() { span.muted { "none yet" } } @else { (r.stream) } }
                                    td.num { @if let Some((seq, _)) = &r.last_record { (count(*seq as f64)) } @else { "–" } }
                                    td { @if let Some((_, t)) = &r.last_record { (t) } @else { span.muted { "no record" } } }
                                    td { @if let Some((_, t)) = &r.last_record { (age(t, now)) } }
                                    td.num { @if let Some(seq) = r.last_checkpoint { (count(seq as f64)) } @else { "–" } }
                                    td.num { @if let Some((last, _)) = &r.last_record { (count(after_checkpoint(*last, r.last_checkpoint) as f64)) } }
                                }
                            }
                        }
                    }
                }
                @if rows.len() > MAX_ROWS { p.muted.small { "The first " (MAX_ROWS) " instances and streams, by name." } }
            }
        }
    };
    Reply::html(200, layout("Instances", "Instances", body))
}

fn key_cell(r: &StreamState, this: &str, this_key: &str) -> maud::Markup {
    html! {
        @match &r.key {
            None => { (status(false, "", "not registered")) " " span.muted.small { "verification reports it NOT VERIFIED" } },
            Some((key, _)) if r.instance == this && key != this_key => {
                (status(false, "", "another key")) " " span.muted.small { "than this instance signs with: its records will not verify" }
            },
            Some((_, at)) => { (status(true, "registered", "")) " " span.muted.small { (at) } },
        }
    }
}

/// Records up to `last` that no checkpoint covers yet (seqs start at 0).
fn after_checkpoint(last: u64, checkpoint: Option<u64>) -> u64 {
    match checkpoint {
        Some(cp) => last.saturating_sub(cp),
        None => last.saturating_add(1),
    }
}

/// How long ago an RFC 3339 time was, in words ("4 min"); empty when it does not parse.
fn age(time: &str, now: SystemTime) -> String {
    let Ok(t) = humantime::parse_rfc3339(time) else {
        return String::new();
    };
    let Ok(d) = now.duration_since(t) else {
        return "in the future".into();
    };
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} days", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_people_say_them() {
        let now = humantime::parse_rfc3339("2026-12-03T12:00:00Z").expect("time");
        assert_eq!(age("2026-12-03T11:59:30Z", now), "30 s");
        assert_eq!(age("2026-12-03T11:55:00Z", now), "5 min");
        assert_eq!(age("2026-12-03T09:30:00Z", now), "2 h 30 min");
        assert_eq!(age("2026-11-30T12:00:00Z", now), "3 days");
        assert_eq!(age("2026-12-03T12:00:05Z", now), "in the future");
        assert_eq!(age("not a time", now), "");
    }

    #[test]
    fn records_after_the_newest_checkpoint() {
        assert_eq!(after_checkpoint(2, None), 3);
        assert_eq!(after_checkpoint(10, Some(10)), 0);
        assert_eq!(after_checkpoint(10, Some(7)), 3);
    }
}
