//! Reading the log back for reviewers: `concierge audit export` and `concierge audit stats`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::chain;
use super::stats_line::{self, Object, StatsLine, Text};

/// Which records to read.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Inclusive lower bound on `time` (canonical RFC 3339 with milliseconds, UTC).
    pub since: Option<String>,
    /// Exclusive upper bound.
    pub until: Option<String>,
    /// Decision records whose company domain is this (consent records never match).
    pub account: Option<String>,
    /// Decision records whose outcome (`personalized`, `not_personalized`) or highest permitted tier
    /// (`anonymous`, `firmographic`, `personal`) is this.
    pub decision: Option<String>,
    /// Record type (`consent`, `decision`, `counts`, `exposure`, `conversion`).
    pub kind: Option<String>,
    /// Records that carry this consent id: its proof-of-consent records and the decisions that relied on it.
    pub consent: Option<String>,
    /// Records of this request (its `request_id`, as the visitor's response header and the access log name it).
    pub request_id: Option<String>,
}

/// Values `--type` takes.
pub const RECORD_TYPES: &[&str] = &["consent", "decision", "counts", "exposure", "conversion"];
/// Values `--decision` takes: an outcome or the highest permitted tier.
pub const DECISIONS: &[&str] = &[
    "personalized",
    "banner",
    "not_personalized",
    "explained",
    "anonymous",
    "firmographic",
    "personal",
];

/// A time bound from `2026-11-24` or an RFC 3339 time, as the canonical string records carry.
pub fn parse_time(text: &str) -> Option<String> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&full)
        .or_else(|_| humantime::parse_rfc3339(&full))
        .ok()?;
    Some(humantime::format_rfc3339_millis(t).to_string())
}

/// The highest tier in a decision record's `permitted`.
fn highest_tier(v: &Value) -> &str {
    let tiers: Vec<&str> = v["permitted"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    ["personal", "firmographic", "anonymous"]
        .into_iter()
        .find(|t| tiers.contains(t))
        .unwrap_or("none")
}

/// Add `n` to `key`'s count (no allocation when the key is there already).
fn bump(m: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    match m.get_mut(key) {
        Some(c) => *c += n,
        None => {
            m.insert(key.to_string(), n);
        }
    }
}

/// A field's text, `?` when absent (as the `Value` path reads it).
fn or_unknown<'s>(s: &'s Option<Text<'_>>) -> &'s str {
    s.as_deref().unwrap_or("?")
}

impl Filter {
    /// The time bounds and the record type of [`Filter::matches`] (`None`: the field is absent or not a
    /// string).
    fn matches_time_and_kind(&self, time: Option<&str>, kind: Option<&str>) -> bool {
        let time = time.unwrap_or("");
        if self.since.as_deref().is_some_and(|s| time < s) {
            return false;
        }
        if self.until.as_deref().is_some_and(|u| time >= u) {
            return false;
        }
        self.kind.as_deref().is_none_or(|k| k == kind.unwrap_or(""))
    }

    pub fn matches(&self, v: &Value) -> bool {
        if !self.matches_time_and_kind(v["time"].as_str(), v["type"].as_str()) {
            return false;
        }
        let kind = v["type"].as_str().unwrap_or("");
        if let Some(a) = &self.account {
            if kind != "decision"
                || !v["company"]
                    .as_str()
                    .is_some_and(|c| c.eq_ignore_ascii_case(a))
            {
                return false;
            }
        }
        if let Some(c) = &self.consent {
            if v["consent_id"].as_str() != Some(c) {
                return false;
            }
        }
        if let Some(r) = &self.request_id {
            if v["request_id"].as_str() != Some(r) {
                return false;
            }
        }
        if let Some(d) = &self.decision {
            if kind != "decision" || (v["outcome"].as_str() != Some(d) && highest_tier(v) != d) {
                return false;
            }
        }
        true
    }
}

/// Every readable record of a stream, in order, with its raw line.
pub fn for_each(stream_dir: &Path, mut f: impl FnMut(&[u8], &Value)) -> std::io::Result<()> {
    scan(stream_dir, |line, v| {
        f(line, v);
        true
    })
}

/// [`for_each`] that stops as soon as `f` returns `false` (a page of search results is full).
pub fn scan(stream_dir: &Path, mut f: impl FnMut(&[u8], &Value) -> bool) -> std::io::Result<()> {
    for (_, path) in chain::segments(stream_dir)? {
        for line in chain::Lines::open(&path)? {
            let (_, line, complete) = line?;
            if !complete {
                break; // an unfinished last line
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                if !f(&line, &v) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

pub const CSV_COLUMNS: &[&str] = &[
    "seq",
    "time",
    "type",
    "request_id",
    "consent_id",
    "client",
    "page",
    "regime",
    "region",
    "permitted",
    "banner",
    "lookup",
    "company",
    "rules",
    "rules_version",
    "outcome",
    "action",
    "firmographic",
    "personal",
    "gpc",
    "reasons",
    "banner_version",
    "experiment",
    "arm",
    "goal",
    "language",
];

/// One record as CSV fields (lists joined with `;`).
pub fn csv_row(v: &Value) -> Vec<String> {
    let s = |x: &Value| match x {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(";"),
        other => other.to_string(),
    };
    let choice = |k: &str| {
        let c = &v["choices"][k];
        if c.is_null() {
            String::new()
        } else {
            c.to_string()
        }
    };
    let gpc = if v["type"] == "consent" {
        s(&v["gpc"])
    } else {
        s(&v["signals"]["gpc"])
    };
    vec![
        s(&v["seq"]),
        s(&v["time"]),
        s(&v["type"]),
        s(&v["request_id"]),
        s(&v["consent_id"]),
        s(&v["client"]),
        s(&v["page"]),
        s(&v["jurisdiction"]["regime"]),
        s(&v["jurisdiction"]["region"]),
        s(&v["permitted"]),
        s(&v["banner"]),
        s(&v["lookup"]),
        if v["company"].is_null() {
            s(&v["account"])
        } else {
            s(&v["company"])
        },
        s(&v["rules"]),
        s(&v["rules_version"]),
        s(&v["outcome"]),
        s(&v["action"]),
        choice("firmographic"),
        choice("personal"),
        gpc,
        s(&v["reasons"]),
        s(&v["banner_version"]),
        s(&v["experiment"]),
        s(&v["arm"]),
        s(&v["goal"]),
        s(&v["language"]),
    ]
}

/// Counts for `concierge audit stats`.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub decisions: u64,
    pub consent_records: u64,
    pub by_jurisdiction: BTreeMap<String, u64>,
    pub by_highest_tier: BTreeMap<String, u64>,
    pub by_reason: BTreeMap<String, u64>,
    pub by_outcome: BTreeMap<String, u64>,
    pub by_lookup: BTreeMap<String, u64>,
    pub consent_by_action: BTreeMap<String, u64>,
    /// Page decisions in the signed per-interval `counts` records (every classified page, recorded or not).
    pub counted_decisions: u64,
    /// … by what decided the firmographic tier (`gpc`, `usp:opt-out`, `opt-out:not-withdrawn`, …).
    pub counted_by_signal: BTreeMap<String, u64>,
    /// … by `<region> <regime>`.
    pub counted_by_jurisdiction: BTreeMap<String, u64>,
    /// … by whether the company lookup ran (`ran`, `not_run`).
    pub counted_by_lookup: BTreeMap<String, u64>,
    /// … by signal and lookup together (`gpc lookup:not_run`): the evidence that honoured refusals ran none.
    pub counted_by_signal_and_lookup: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time: Option<String>,
}

impl Stats {
    /// These stats as if `other`'s records had been added too.
    pub fn merge(&mut self, other: Stats) {
        // Every field by name: a field added to `Stats` must be merged too (or this does not compile).
        let Stats {
            decisions,
            consent_records,
            by_jurisdiction,
            by_highest_tier,
            by_reason,
            by_outcome,
            by_lookup,
            consent_by_action,
            counted_decisions,
            counted_by_signal,
            counted_by_jurisdiction,
            counted_by_lookup,
            counted_by_signal_and_lookup,
            first_time,
            last_time,
        } = other;
        self.decisions += decisions;
        self.consent_records += consent_records;
        self.counted_decisions += counted_decisions;
        for (mine, theirs) in [
            (&mut self.by_jurisdiction, by_jurisdiction),
            (&mut self.by_highest_tier, by_highest_tier),
            (&mut self.by_reason, by_reason),
            (&mut self.by_outcome, by_outcome),
            (&mut self.by_lookup, by_lookup),
            (&mut self.consent_by_action, consent_by_action),
            (&mut self.counted_by_signal, counted_by_signal),
            (&mut self.counted_by_jurisdiction, counted_by_jurisdiction),
            (&mut self.counted_by_lookup, counted_by_lookup),
            (
                &mut self.counted_by_signal_and_lookup,
                counted_by_signal_and_lookup,
            ),
        ] {
            for (k, n) in theirs {
                *mine.entry(k).or_default() += n;
            }
        }
        if let Some(t) = first_time {
            if self.first_time.as_deref().is_none_or(|f| t.as_str() < f) {
                self.first_time = Some(t);
            }
        }
        if let Some(t) = last_time {
            if self.last_time.as_deref().is_none_or(|l| t.as_str() > l) {
                self.last_time = Some(t);
            }
        }
    }

    /// Add one line of the log if it is a record `f` keeps — the same as parsing it as a [`Value`] and calling
    /// [`Filter::matches`] and [`Stats::add`], without building the whole document: the fields the stats read
    /// are read borrowed from the line (a profile of `audit stats` had two thirds of its time in building and
    /// freeing `Value`s; see [`stats_line`] for why that reader is hand-written). A line the typed read
    /// refuses — a field of another type, an array where an object belongs, anything a `Value` refuses too —
    /// and a filter on more than time and type take the `Value` path, so both give one answer for every line
    /// (property tests over hostile lines hold them to it).
    pub fn add_line(&mut self, line: &[u8], f: &Filter) {
        let simple_filter = f.account.is_none()
            && f.decision.is_none()
            && f.consent.is_none()
            && f.request_id.is_none();
        if simple_filter {
            if let Some(r) = stats_line::parse(line) {
                if f.matches_time_and_kind(r.time.as_deref(), r.kind.as_deref()) {
                    self.add_typed(&r);
                }
                return;
            }
        }
        if let Ok(v) = serde_json::from_slice::<Value>(line) {
            if f.matches(&v) {
                self.add(&v);
            }
        }
    }

    /// [`Stats::add`] of a record read as [`StatsLine`].
    fn add_typed(&mut self, r: &StatsLine<'_>) {
        if let Some(t) = r.time.as_deref() {
            self.note_time(t);
        }
        match r.kind.as_deref() {
            Some("decision") => {
                let (region, regime) = match &r.jurisdiction {
                    Some(Object(j)) => (or_unknown(&j.region), or_unknown(&j.regime)),
                    None => ("?", "?"),
                };
                let permitted = r.permitted.as_deref().unwrap_or_default();
                let highest = ["personal", "firmographic", "anonymous"]
                    .into_iter()
                    .find(|t| permitted.iter().any(|p| &**p == *t))
                    .unwrap_or("none");
                self.add_decision(
                    region,
                    regime,
                    highest,
                    or_unknown(&r.outcome),
                    or_unknown(&r.lookup),
                    r.reasons.iter().flatten().map(|t| &**t),
                );
            }
            Some("counts") => {
                for Object(c) in r.counts.iter().flatten() {
                    self.add_count(
                        c.decisions.unwrap_or(0),
                        or_unknown(&c.signal),
                        or_unknown(&c.lookup),
                        or_unknown(&c.region),
                        or_unknown(&c.regime),
                    );
                }
            }
            Some("consent") => self.add_consent(or_unknown(&r.action)),
            _ => {}
        }
    }

    pub fn add(&mut self, v: &Value) {
        fn text(v: &Value) -> &str {
            v.as_str().unwrap_or("?")
        }
        if let Some(t) = v["time"].as_str() {
            self.note_time(t);
        }
        match v["type"].as_str() {
            Some("decision") => self.add_decision(
                text(&v["jurisdiction"]["region"]),
                text(&v["jurisdiction"]["regime"]),
                highest_tier(v),
                text(&v["outcome"]),
                text(&v["lookup"]),
                v["reasons"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| r.as_str().unwrap_or("?")),
            ),
            Some("counts") => {
                for c in v["counts"].as_array().into_iter().flatten() {
                    self.add_count(
                        c["decisions"].as_u64().unwrap_or(0),
                        text(&c["signal"]),
                        text(&c["lookup"]),
                        text(&c["region"]),
                        text(&c["regime"]),
                    );
                }
            }
            Some("consent") => self.add_consent(text(&v["action"])),
            _ => {}
        }
    }

    /// A record's time: the first and last seen (order-independent: the records of several instances come in
    /// any order).
    fn note_time(&mut self, t: &str) {
        if self.first_time.as_deref().is_none_or(|f| t < f) {
            self.first_time = Some(t.to_string());
        }
        if self.last_time.as_deref().is_none_or(|l| t > l) {
            self.last_time = Some(t.to_string());
        }
    }

    /// A decision record, its fields as read (`?` for one absent).
    fn add_decision<'r>(
        &mut self,
        region: &str,
        regime: &str,
        highest_tier: &str,
        outcome: &str,
        lookup: &str,
        reasons: impl Iterator<Item = &'r str>,
    ) {
        self.decisions += 1;
        bump(&mut self.by_jurisdiction, &format!("{region} {regime}"), 1);
        bump(&mut self.by_highest_tier, highest_tier, 1);
        bump(&mut self.by_outcome, outcome, 1);
        bump(&mut self.by_lookup, lookup, 1);
        for reason in reasons {
            bump(&mut self.by_reason, reason, 1);
        }
    }

    /// One entry of a `counts` record: `n` page decisions.
    fn add_count(&mut self, n: u64, signal: &str, lookup: &str, region: &str, regime: &str) {
        self.counted_decisions += n;
        bump(&mut self.counted_by_signal, signal, n);
        bump(&mut self.counted_by_lookup, lookup, n);
        bump(
            &mut self.counted_by_jurisdiction,
            &format!("{region} {regime}"),
            n,
        );
        bump(
            &mut self.counted_by_signal_and_lookup,
            &format!("{signal} lookup:{lookup}"),
            n,
        );
    }

    fn add_consent(&mut self, action: &str) {
        self.consent_records += 1;
        bump(&mut self.consent_by_action, action, 1);
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "decision records: {}\nconsent records:  {}\npage decisions counted (signed per-interval counts): {}\n",
            self.decisions, self.consent_records, self.counted_decisions
        );
        if let (Some(a), Some(b)) = (&self.first_time, &self.last_time) {
            out.push_str(&format!("from {a} to {b}\n"));
        }
        for (title, map) in [
            ("by jurisdiction", &self.by_jurisdiction),
            ("by highest permitted tier", &self.by_highest_tier),
            ("by outcome", &self.by_outcome),
            ("by company lookup", &self.by_lookup),
            ("by reason", &self.by_reason),
            ("consent choices by action", &self.consent_by_action),
            ("counted page decisions by signal", &self.counted_by_signal),
            (
                "counted page decisions by signal and company lookup",
                &self.counted_by_signal_and_lookup,
            ),
            (
                "counted page decisions by jurisdiction",
                &self.counted_by_jurisdiction,
            ),
        ] {
            if map.is_empty() {
                continue;
            }
            out.push_str(&format!("\n{title}:\n"));
            let mut rows: Vec<_> = map.iter().collect();
            rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (k, n) in rows {
                out.push_str(&format!("  {n:>10}  {k}\n"));
            }
        }
        out
    }
}
