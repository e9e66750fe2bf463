//! `concierge feedback report`: per rule — impressions, answers, response rate, share positive, latest
//! comments — from the `feedback` stream.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// Comments kept per rule (the newest).
pub const LATEST_COMMENTS: usize = 5;

/// Which records count.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Inclusive lower bound on `time` (canonical RFC 3339, as [`crate::audit::query::parse_time`] returns).
    pub since: Option<String>,
    /// Exclusive upper bound.
    pub until: Option<String>,
    /// Only records whose account is this domain (records without an account never match).
    pub account: Option<String>,
    /// Only this rule id.
    pub rule: Option<String>,
}

impl Filter {
    fn matches(&self, v: &Value) -> bool {
        let time = v["time"].as_str().unwrap_or("");
        if self.since.as_deref().is_some_and(|s| time < s)
            || self.until.as_deref().is_some_and(|u| time >= u)
        {
            return false;
        }
        if let Some(a) = &self.account {
            if !v["account"]
                .as_str()
                .is_some_and(|x| x.eq_ignore_ascii_case(a))
            {
                return false;
            }
        }
        if let Some(r) = &self.rule {
            if v["rule"].as_str() != Some(r) {
                return false;
            }
        }
        true
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Comment {
    pub time: String,
    pub page: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub answer: String,
    pub comment: String,
}

/// One rule's figures.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RuleFeedback {
    pub rule: String,
    /// Prompts shown (each visitor counts once per page).
    pub impressions: u64,
    pub answers: u64,
    /// Answers "yes" (named as in the table and CSV).
    #[serde(rename = "yes")]
    pub positive: u64,
    /// Answers "no".
    #[serde(rename = "no")]
    pub negative: u64,
    pub dismissals: u64,
    /// answers / impressions; absent without impressions.
    pub response_rate: Option<f64>,
    /// positive / answers; absent without answers.
    pub share_positive: Option<f64>,
    /// Newest first.
    pub latest_comments: Vec<Comment>,
    /// Rule-set versions the records name (a rule's text may have changed between them).
    pub rules_versions: Vec<String>,
    /// Per UTC day with records, in order: impressions and answers (the figures over time).
    pub daily: Vec<FeedbackDay>,
}

/// One rule's figures on one UTC day.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FeedbackDay {
    /// `2026-11-24`.
    pub day: String,
    pub impressions: u64,
    pub answers: u64,
    pub yes: u64,
    pub no: u64,
}

/// The report: rules in id order.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub rules: Vec<RuleFeedback>,
    /// Records read (after the filter).
    pub records: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_time: Option<String>,
}

/// Builds a [`Report`] from records in log order.
#[derive(Debug, Default, Clone)]
pub struct Builder {
    filter: Filter,
    /// Every rule id the records name, whatever the filter (to tell a `--rule` that names nothing).
    known: std::collections::BTreeSet<String>,
    rules: BTreeMap<String, RuleFeedback>,
    records: u64,
    first_time: Option<String>,
    last_time: Option<String>,
    /// (rule, rules version) → the earliest time a record named it.
    version_first_seen: BTreeMap<(String, String), String>,
}

impl Builder {
    /// Every rule id the records read so far name.
    pub fn known_rules(&self) -> &std::collections::BTreeSet<String> {
        &self.known
    }

    pub fn new(filter: Filter) -> Builder {
        Builder {
            filter,
            ..Builder::default()
        }
    }

    pub fn add(&mut self, v: &Value) {
        let (Some(kind), Some(rule)) = (v["type"].as_str(), v["rule"].as_str()) else {
            return;
        };
        if !self.known.contains(rule) {
            self.known.insert(rule.to_string());
        }
        if !self.filter.matches(v) {
            return;
        }
        self.records += 1;
        let time = v["time"].as_str().unwrap_or("").to_string();
        // Order-independent: the records of several instances come in any order.
        if self.first_time.as_ref().is_none_or(|f| time < *f) {
            self.first_time = Some(time.clone());
        }
        if self.last_time.as_ref().is_none_or(|l| time > *l) {
            self.last_time = Some(time.clone());
        }
        let r = self
            .rules
            .entry(rule.to_string())
            .or_insert_with(|| RuleFeedback {
                rule: rule.to_string(),
                ..RuleFeedback::default()
            });
        if let Some(version) = v["rules_version"].as_str() {
            // In the order they were first seen in (by time, whatever order the records come in).
            let first = self
                .version_first_seen
                .entry((rule.to_string(), version.to_string()))
                .or_insert_with(|| time.clone());
            if time < *first {
                *first = time.clone();
            }
            if !r.rules_versions.iter().any(|x| x == version) {
                r.rules_versions.push(version.to_string());
            }
        }
        let day = time.get(..10).unwrap_or("").to_string();
        // Days in order, whatever order the records come in (usually the last one).
        let at = match r.daily.iter().rposition(|d| d.day <= day) {
            Some(i) if r.daily[i].day == day => i,
            Some(i) => {
                r.daily.insert(
                    i + 1,
                    FeedbackDay {
                        day,
                        ..FeedbackDay::default()
                    },
                );
                i + 1
            }
            None => {
                r.daily.insert(
                    0,
                    FeedbackDay {
                        day,
                        ..FeedbackDay::default()
                    },
                );
                0
            }
        };
        if let Some(d) = r.daily.get_mut(at) {
            match kind {
                "impression" => d.impressions += 1,
                "feedback" => {
                    d.answers += 1;
                    match v["answer"].as_str() {
                        Some("yes") => d.yes += 1,
                        Some("no") => d.no += 1,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        match kind {
            "impression" => r.impressions += 1,
            "dismissal" => r.dismissals += 1,
            "feedback" | "comment" => {
                let answer = v["answer"].as_str().unwrap_or("?");
                // A comment follows its answer as its own record; only the answer counts as one.
                if kind == "feedback" {
                    r.answers += 1;
                    match answer {
                        "yes" => r.positive += 1,
                        "no" => r.negative += 1,
                        _ => {}
                    }
                }
                if let Some(c) = v["comment"].as_str() {
                    let comment = Comment {
                        time,
                        page: v["page"].as_str().unwrap_or("").to_string(),
                        account: v["account"].as_str().map(str::to_string),
                        answer: answer.to_string(),
                        comment: c.to_string(),
                    };
                    // Newest first; among equal times the later record first (log order within one instance).
                    let key = |c: &Comment| c.time.clone();
                    let at = r
                        .latest_comments
                        .iter()
                        .position(|x| key(x) <= key(&comment))
                        .unwrap_or(r.latest_comments.len());
                    r.latest_comments.insert(at, comment);
                    r.latest_comments.truncate(LATEST_COMMENTS);
                }
            }
            _ => {}
        }
    }

    pub fn finish(self) -> Report {
        let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        Report {
            rules: self
                .rules
                .into_values()
                .map(|mut r| {
                    let seen = |v: &String| {
                        self.version_first_seen
                            .get(&(r.rule.clone(), v.clone()))
                            .cloned()
                            .unwrap_or_default()
                    };
                    r.rules_versions
                        .sort_by(|a, b| seen(a).cmp(&seen(b)).then_with(|| a.cmp(b)));
                    r.response_rate = ratio(r.answers, r.impressions);
                    r.share_positive = ratio(r.positive, r.answers);
                    r
                })
                .collect(),
            records: self.records,
            first_time: self.first_time,
            last_time: self.last_time,
        }
    }
}

/// Text for a terminal: control characters shown escaped, so a hostile comment cannot drive the terminal.
fn terminal_safe(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// A spreadsheet cell that cannot start a formula (OWASP CSV injection).
pub fn csv_safe(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{:.1}%", x * 100.0))
}

impl Report {
    pub fn table(&self) -> String {
        if self.rules.is_empty() {
            return "no feedback records\n".to_string();
        }
        let width = self
            .rules
            .iter()
            .map(|r| r.rule.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = format!(
            "{:<width$}  {:>11}  {:>7}  {:>5}  {:>5}  {:>9}  {:>8}  {:>8}\n",
            "rule", "impressions", "answers", "yes", "no", "dismissed", "response", "positive"
        );
        for r in &self.rules {
            out.push_str(&format!(
                "{:<width$}  {:>11}  {:>7}  {:>5}  {:>5}  {:>9}  {:>8}  {:>8}\n",
                terminal_safe(&r.rule),
                r.impressions,
                r.answers,
                r.positive,
                r.negative,
                r.dismissals,
                percent(r.response_rate),
                percent(r.share_positive)
            ));
        }
        for r in self.rules.iter().filter(|r| !r.latest_comments.is_empty()) {
            out.push_str(&format!(
                "\nlatest comments on {}:\n",
                terminal_safe(&r.rule)
            ));
            for c in &r.latest_comments {
                out.push_str(&format!(
                    "  {}  {:<3}  {}{}\n    \"{}\"\n",
                    c.time,
                    terminal_safe(&c.answer),
                    terminal_safe(&c.page),
                    c.account
                        .as_deref()
                        .map(|a| format!("  ({})", terminal_safe(a)))
                        .unwrap_or_default(),
                    terminal_safe(&c.comment)
                ));
            }
        }
        if let (Some(a), Some(b)) = (&self.first_time, &self.last_time) {
            out.push_str(&format!("\n{} records from {a} to {b}\n", self.records));
        }
        out
    }

    pub const CSV_COLUMNS: &'static [&'static str] = &[
        "rule",
        "impressions",
        "answers",
        "yes",
        "no",
        "dismissals",
        "response_rate",
        "share_positive",
        "latest_comment",
    ];

    pub fn csv_rows(&self) -> Vec<Vec<String>> {
        let ratio = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{x:.4}"));
        self.rules
            .iter()
            .map(|r| {
                vec![
                    csv_safe(&r.rule),
                    r.impressions.to_string(),
                    r.answers.to_string(),
                    r.positive.to_string(),
                    r.negative.to_string(),
                    r.dismissals.to_string(),
                    ratio(r.response_rate),
                    ratio(r.share_positive),
                    r.latest_comments
                        .first()
                        .map(|c| csv_safe(&c.comment))
                        .unwrap_or_default(),
                ]
            })
            .collect()
    }
}
