//! Overview: what the proxy did since it started, read from its own metrics (the same text `/metrics` serves),
//! and the rules generation it serves.

use std::collections::BTreeMap;

use maud::{html, Markup};

use super::view::{count, layout, share};
use crate::metrics::Metrics;
use crate::sources::Sources;

/// One series of the Prometheus text: name, labels, value.
#[derive(Debug, PartialEq)]
pub(super) struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Series {
    fn label(&self, key: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Parse the text exposition format as our registry writes it (no timestamps; label values quoted with `\"`,
/// `\\` and `\n` escapes). Lines that do not parse are skipped.
pub(super) fn parse(text: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((name, rest)) => {
                let Some(body) = rest.strip_suffix('}') else {
                    continue;
                };
                (name.to_string(), labels(body))
            }
        };
        out.push(Series {
            name,
            labels,
            value,
        });
    }
    out
}

fn labels(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').trim().to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

/// Sum of a metric's series, grouped by the values of `keys` (joined with " · ").
fn by(series: &[Series], name: &str, keys: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for s in series.iter().filter(|s| s.name == name) {
        let key = keys
            .iter()
            .map(|k| s.label(k))
            .collect::<Vec<_>>()
            .join(" · ");
        *out.entry(key).or_insert(0.0) += s.value;
    }
    out
}

fn total(series: &[Series], name: &str) -> f64 {
    series
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

fn table(caption: &str, head: &[&str], rows: &BTreeMap<String, f64>, whole: f64) -> Markup {
    html! {
        div.scroll {
            table {
                caption.muted.small { (caption) }
                thead { tr { @for h in head { th scope="col" { (h) } } th.num scope="col" { "count" } th.num scope="col" { "share" } } }
                tbody {
                    @if rows.is_empty() {
                        tr { td colspan=(head.len() + 2) .muted { "none yet" } }
                    }
                    @for (k, v) in rows {
                        tr {
                            @for part in k.split(" · ") { td { (part) } }
                            td.num { (count(*v)) }
                            td.num { (share(*v, whole)) }
                        }
                    }
                }
            }
        }
    }
}

pub(super) fn page(
    metrics: &Metrics,
    sources: &Sources,
    last: Option<&crate::sources::LastReload>,
) -> String {
    let s = parse(&metrics.encode());
    let requests = total(&s, "concierge_http_requests_total");
    let decisions = total(&s, "concierge_consent_decisions_total");
    let rewrites = by(&s, "concierge_rewrites_total", &["result"]);
    let rewritten = rewrites.get("rewritten").copied().unwrap_or(0.0);
    let records = by(&s, "concierge_decision_records_total", &["result"]);
    let refused: f64 = records
        .iter()
        .filter(|(k, _)| k.starts_with("refused"))
        .map(|(_, v)| v)
        .sum();
    let reloads = by(&s, "concierge_source_reloads_total", &["source", "result"]);
    let rules = &sources.rules;
    let body = html! {
        p.muted { "Since this proxy started. Counters from its own metrics (" code { "/metrics" } " on this listener); the signed record of each decision is under " a href="/console/audit" { "Audit" } "." }
        div.cards {
            div.card { div.k { "Requests" } div.v { (count(requests)) } }
            div.card { div.k { "Page decisions" } div.v { (count(decisions)) } }
            div.card { div.k { "Pages personalized" } div.v { (count(rewritten)) } div.k { (share(rewritten, decisions)) " of page decisions" } }
            div.card {
                div.k { "Record writer" }
                div.v { @if refused > 0.0 { span.status.bad { "refusing" } } @else { span.status.ok { "healthy" } } }
                div.k { (count(refused)) " records refused" }
            }
            div.card { div.k { "Rules" } div.v { (rules.personalizations.len()) } div.k { "version " code { (rules.version) } ", generation " (sources.generation) } }
        }
        h2 { "Page decisions by regime and permitted tier" }
        (table("Each page request's consent decision: the jurisdiction's regime, the highest tier it permitted, whether the banner was due.", &["regime", "highest tier", "banner"], &by(&s, "concierge_consent_decisions_total", &["regime", "highest_tier", "banner"]), decisions))
        h2 { "Consent choices" }
        (table("What visitors chose in the banner or on the choices page (recorded choices; the share is of all recorded choices).", &["choice"], &by(&s, "concierge_consent_choices_total", &["action"]), total(&s, "concierge_consent_choices_total")))
        (table("Choices posted to the consent endpoint, by result.", &["result"], &by(&s, "concierge_consent_records_total", &["result"]), total(&s, "concierge_consent_records_total")))
        h2 { "Rewrite outcomes" }
        (table("Responses with a personalization plan: rewritten, or why not (bailed out, skipped_*).", &["outcome"], &rewrites, rewrites.values().sum()))
        h2 { "Decision records" }
        (table("Every planned page's record through the record gate: accepted, or refused (the page then went out unpersonalized).", &["result"], &records, records.values().sum()))
        h2 { "Source reloads" }
        (super::view::last_reload(last))
        (table("Reloads of the rule files and company tables since start.", &["source", "result"], &reloads, reloads.values().sum()))
        h2 { "Company lookups" }
        (table("IP-to-company lookups (only where the decision permitted the firmographic tier and a rule could use it).", &["result"], &by(&s, "concierge_company_lookups_total", &["result"]), total(&s, "concierge_company_lookups_total")))
    };
    layout("Overview", "Overview", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_text_reads_back() {
        let text = "# HELP x y\nconcierge_a_total{result=\"ok\",source=\"rules \\\"x\\\"\"} 3\nconcierge_b 1.5\nbroken{ 1\n";
        let s = parse(text);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].label("result"), "ok");
        assert_eq!(s[0].label("source"), "rules \"x\"");
        assert_eq!(s[0].value, 3.0);
        assert_eq!(s[1].name, "concierge_b");
    }

    #[test]
    fn the_page_shows_the_live_counters() {
        let m = Metrics::new();
        m.decision("opt-in", "anonymous", true);
        m.decision("opt-in", "anonymous", true);
        m.rewrite("rewritten");
        for action in ["accept", "accept", "accept", "reject"] {
            m.consent_choice(action);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let sources = Sources::load(&Default::default(), dir.path()).expect("no rules load");
        let html = page(&m, &sources, None);
        assert!(html.contains("opt-in"), "{html}");
        assert!(html.contains("50.0%"), "{html}");
        assert!(html.contains("healthy"));
        assert!(html.contains("75.0%") && html.contains("25.0%"), "{html}");
    }
}
