//! Rules: every rule and experiment the proxy serves with (the generation it holds now), their conflicts and
//! the rules version. Tables sort on the server (`?sort=<column>`), so they work without a script.

use maud::{html, Markup};

use super::view::layout;
use super::Query;
use crate::rules::{ActionKind, Personalization, When};
use crate::sources::Sources;

const SORTS: &[(&str, &str)] = &[
    ("precedence", "precedence"),
    ("rule", "rule"),
    ("file", "file"),
    ("scale", "scale"),
    ("tier", "tier"),
    ("priority", "priority"),
];

/// The conditions of a rule in words (`country DE, AT; utm_campaign spring`), or "always".
pub(super) fn conditions(w: &When) -> String {
    let mut parts = Vec::new();
    let list = |name: &str, v: &[String], parts: &mut Vec<String>| {
        if !v.is_empty() {
            parts.push(format!("{name} {}", v.join(", ")));
        }
    };
    list("industry", &w.industry, &mut parts);
    match (w.employees_min, w.employees_max) {
        (Some(a), Some(b)) => parts.push(format!("employees {a}–{b}")),
        (Some(a), None) => parts.push(format!("employees ≥ {a}")),
        (None, Some(b)) => parts.push(format!("employees ≤ {b}")),
        (None, None) => {}
    }
    list("country", &w.country, &mut parts);
    list("subdivision", &w.subdivision, &mut parts);
    list("utm_source", &w.utm_source, &mut parts);
    list("utm_medium", &w.utm_medium, &mut parts);
    list("utm_campaign", &w.utm_campaign, &mut parts);
    for (k, v) in &w.query {
        parts.push(format!("query {k}={v}"));
    }
    list("referrer", &w.referrer_host, &mut parts);
    if let Some(c) = &w.cookie {
        parts.push(format!("cookie {c}"));
    }
    let day = |t: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t))
            .to_string()
    };
    if let Some(f) = w.from {
        parts.push(format!("from {}", day(f)));
    }
    if let Some(u) = w.until {
        parts.push(format!("until {}", day(u)));
    }
    if parts.is_empty() {
        "always".into()
    } else {
        parts.join("; ")
    }
}

fn change(kind: &ActionKind) -> &'static str {
    match kind {
        ActionKind::SetContent(_) => "set content",
        ActionKind::SetAttribute { .. } => "set attribute",
        ActionKind::AppendAttribute { .. } => "append to attribute",
        ActionKind::Insert(..) => "insert",
        ActionKind::Remove => "remove",
        ActionKind::AddClass(_) => "add class",
        ActionKind::Inject(_) => "inject",
    }
}

fn scale(r: &Personalization) -> String {
    format!("{:?}", r.scale).to_lowercase()
}

pub(super) fn page(
    sources: &Sources,
    q: &Query,
    last: Option<&crate::sources::LastReload>,
) -> String {
    let rules = &sources.rules;
    let sort = q.get("sort").unwrap_or("precedence");
    let sort = if SORTS.iter().any(|(k, _)| *k == sort) {
        sort
    } else {
        "precedence"
    };
    let mut list: Vec<&Personalization> = rules.personalizations.iter().collect();
    match sort {
        "rule" => list.sort_by(|a, b| a.id.cmp(&b.id)),
        "file" => list.sort_by(|a, b| a.file.cmp(&b.file)),
        "scale" => list.sort_by_key(|r| r.scale),
        "tier" => list.sort_by_key(|r| r.tier),
        "priority" => list.sort_by_key(|r| std::cmp::Reverse(r.priority)),
        _ => {}
    }
    let governing = |id: &str| -> Vec<&str> {
        sources
            .experiments
            .experiments
            .iter()
            .filter(|e| e.governs(id))
            .map(|e| e.id.as_str())
            .collect()
    };
    let head = |key: &str, label: &str| -> Markup {
        html! {
            th scope="col" aria-sort=[(key == sort).then_some("ascending")] {
                @if key == sort { (label) " ▲" } @else { a href={"/console/rules?sort=" (key)} { (label) } }
            }
        }
    };
    let body = html! {
        p {
            "The rules this proxy serves now: generation " (sources.generation) ", version " code { (rules.version) } ". "
            "A rule file with an error never goes live (the proxy keeps serving the previous generation); "
            code { "concierge check" } " names every error with file, line and column."
        }
        (super::view::last_reload(last))
        p { a href="/console/rules/preview" { "Preview a visit" } ": what an IP address or a target account gets on a page, rule by rule, with the page before and after." }
        h2 { "Rules (" (list.len()) ")" }
        @if list.is_empty() {
            p.muted { "No rules: every page goes out as the origin sent it." }
        } @else {
            div.scroll {
                table {
                    caption.muted.small { "Sorted by " (sort) ". Earlier rows win conflicts when sorted by precedence." }
                    thead { tr {
                        (head("rule", "rule")) (head("file", "file")) (head("scale", "scale")) (head("tier", "tier"))
                        (head("priority", "priority")) th scope="col" { "paths" } th scope="col" { "conditions" }
                        th scope="col" { "changes" } th scope="col" { "experiment" } th scope="col" { "status" }
                    } }
                    tbody {
                        @for r in &list {
                            tr {
                                td { code { (r.id) } @if let Some(a) = &r.account { br; span.muted.small { "account " (a) } } }
                                td { code { (r.file.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()) } }
                                td { (scale(r)) }
                                td { (r.tier.name()) }
                                td.num { (r.priority) }
                                td { @for (i, p) in r.paths.iter().enumerate() { @if i > 0 { ", " } code { (p.0) } } }
                                td { (conditions(&r.when)) }
                                td.small { @for a in &r.actions { div { (change(&a.kind)) " " code { (a.selector) } } } }
                                td { @let g = governing(&r.id); @if g.is_empty() { span.muted { "–" } } @else { (g.join(", ")) } }
                                td { span.status.ok { "valid" } }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Conflicts that can happen (" (rules.conflicts.len()) ")" }
        @if rules.conflicts.is_empty() {
            p.muted { "None: no two rules that can meet on one page change the same part of the same element." }
        } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "selector" } th scope="col" { "part" } th scope="col" { "wins" } th scope="col" { "loses" } } }
                tbody { @for c in &rules.conflicts { tr { td { code { (c.selector) } } td { (c.slot) } td { code { (c.winner) } } td { code { (c.loser) } } } } }
            } }
        }
        h2 { "Experiments (" (sources.experiments.experiments.len()) ")" }
        @if sources.experiments.experiments.is_empty() {
            p.muted { "None." }
        } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "experiment" } th scope="col" { "rules" } th.num scope="col" { "control" } th scope="col" { "unit" } th scope="col" { "goals" } th scope="col" { "file" } } }
                tbody { @for e in &sources.experiments.experiments { tr {
                    td { code { (e.id) } @if let Some(h) = &e.hypothesis { br; span.muted.small { (h) } } }
                    td { @for (i, r) in e.rules.iter().enumerate() { @if i > 0 { ", " } code { (r) } } }
                    td.num { (format!("{:.0}%", e.control * 100.0)) }
                    td { (format!("{:?}", e.unit).to_lowercase()) }
                    td { @for (i, g) in e.goals.iter().enumerate() { @if i > 0 { ", " } code { (g.id) } } }
                    td { code { (e.file.file_name().map(|f| f.to_string_lossy()).unwrap_or_default()) } }
                } } }
            } }
        }
    };
    layout("Rules", "Rules", body)
}
