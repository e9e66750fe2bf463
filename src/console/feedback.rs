//! Feedback: per rule the prompts shown, the answers, the response rate, the share of "yes", the newest
//! comments and the figures per day — `feedback::report::Builder` over the feedback stream, as
//! `concierge feedback report` computes them. Comments are visitors' text: escaped by the template, never
//! markup.

use maud::{html, Markup};

use super::view::{count, layout};
use super::{Console, Query, Reply};
use crate::feedback::report::{Builder, FeedbackDay, Filter};

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{:.1}%", x * 100.0))
}

fn form(q: &Query, rules: &[String]) -> Markup {
    html! {
        form.search method="get" action="/console/feedback" aria-label="Choose the rule and the range" {
            div { label for="rule" { "Rule" }
                select id="rule" name="rule" {
                    option value="" { "all" }
                    @for r in rules { option value=(r) selected[q.get("rule") == Some(r.as_str())] { (r) } }
                }
            }
            div { label for="account" { "Account domain" } input id="account" name="account" placeholder="acme.example" value=(q.get("account").unwrap_or("")); }
            div { label for="since" { "From (date or time)" } input id="since" name="since" placeholder="2026-11-24" value=(q.get("since").unwrap_or("")); }
            div { label for="until" { "Until (before)" } input id="until" name="until" placeholder="2026-12-01" value=(q.get("until").unwrap_or("")); }
            div { button type="submit" { "Show" } }
        }
    }
}

/// Prompts shown and answers (yes / no) per day, as bars: shown behind, answers stacked in front.
fn chart(rule: &str, days: &[FeedbackDay]) -> Markup {
    let (w, h, l, r, top, bottom) = (560.0, 130.0, 36.0, 552.0, 8.0, 110.0);
    let max = days
        .iter()
        .map(|d| d.impressions.max(d.answers))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = days.len().max(1) as f64;
    let slot = (r - l) / n;
    let bar = (slot * 0.7).max(1.0);
    let y = |v: u64| bottom - v as f64 / max * (bottom - top);
    let label = format!(
        "Prompts shown and answers per day for {rule}, {} day(s)",
        days.len()
    );
    html! {
        svg.chart viewBox={"0 0 " (w) " " (h)} role="img" aria-label=(label) {
            line x1=(l) y1=(bottom) x2=(r) y2=(bottom) {}
            text x=(l - 4.0) y=(top + 8.0) text-anchor="end" { (max as u64) }
            text x=(l - 4.0) y=(bottom) text-anchor="end" { "0" }
            @for (i, d) in days.iter().enumerate() {
                @let x = l + i as f64 * slot + (slot - bar) / 2.0;
                rect.shown x=(format!("{x:.1}")) y=(format!("{:.1}", y(d.impressions))) width=(format!("{bar:.1}")) height=(format!("{:.1}", bottom - y(d.impressions))) {}
                rect.no x=(format!("{x:.1}")) y=(format!("{:.1}", y(d.no))) width=(format!("{bar:.1}")) height=(format!("{:.1}", bottom - y(d.no))) {}
                rect.yes x=(format!("{x:.1}")) y=(format!("{:.1}", y(d.no + d.yes) )) width=(format!("{bar:.1}")) height=(format!("{:.1}", y(d.no) - y(d.no + d.yes))) {}
            }
            @if let (Some(first), Some(last)) = (days.first(), days.last()) {
                text x=(l) y=(h - 4.0) { (first.day) }
                @if days.len() > 1 { text x=(r) y=(h - 4.0) text-anchor="end" { (last.day) } }
            }
        }
    }
}

pub(super) fn page(c: &Console, q: &Query) -> Reply {
    let sources = c.sources.load();
    let mut rules: Vec<String> = sources
        .rules
        .personalizations
        .iter()
        .filter(|p| p.feedback.is_some())
        .map(|p| p.id.clone())
        .collect();
    let bad = |rules: &[String], e: String| {
        Reply::html(
            400,
            layout(
                "Feedback",
                "Feedback",
                html! { p.notice.bad role="alert" { (e) } (form(q, rules)) },
            ),
        )
    };
    let (since, until) = match q.range() {
        Ok(r) => r,
        Err(e) => return bad(&rules, e),
    };
    let (account, rule) = match (
        q.term("account", "account domain"),
        q.term("rule", "rule id"),
    ) {
        (Ok(a), Ok(r)) => (a, r),
        (Err(e), _) | (_, Err(e)) => return bad(&rules, e),
    };
    // Without a filter the index keeps the report up to date; a filter reads the stream again.
    let store = c.store();
    let builder = if let Some(store) = &store {
        // Every instance's records, from the record store.
        let mut builder = Builder::new(Filter {
            since,
            until,
            account,
            rule,
        });
        if let Err(e) = store.values(
            crate::audit::FEEDBACK_STREAM,
            &crate::postgres::read::Pushdown::default(),
            crate::postgres::read::Order::Any,
            |_, v| builder.add(v),
        ) {
            return super::view::unreadable(e);
        }
        builder
    } else if since.is_none() && until.is_none() && account.is_none() && rule.is_none() {
        match c.index(crate::audit::FEEDBACK_STREAM) {
            Ok(index) => index.feedback().clone(),
            Err(e) => return super::view::unreadable(e),
        }
    } else {
        let mut builder = Builder::new(Filter {
            since,
            until,
            account,
            rule,
        });
        let dir = c.audit_dir().join(crate::audit::FEEDBACK_STREAM);
        if dir.is_dir() {
            if let Err(e) = crate::audit::query::for_each(&dir, |_, v| builder.add(v)) {
                return super::view::unreadable(format!("{}: {e}", dir.display()));
            }
        }
        builder
    };
    for r in builder.known_rules() {
        if !rules.contains(r) {
            rules.push(r.clone());
        }
    }
    rules.sort();
    let report = builder.finish();
    let body = html! {
        p {
            "What visitors answered to the question a rule asks (" code { "feedback" } " in its rule file), from the log's feedback stream — as "
            code { "concierge feedback report" } " counts it. The response rate is answers per prompt shown."
        }
        (form(q, &rules))
        @if let Some(store) = &store { p.muted.small role="status" { "Over every instance: " (store.describe()) "." } }
        @if report.rules.is_empty() {
            p.muted { "No feedback records in this range." }
        } @else {
            p.muted.small { (count(report.records as f64)) " record(s)"
                @if let (Some(a), Some(b)) = (&report.first_time, &report.last_time) { ", " (a) " to " (b) } "." }
            div.scroll { table {
                thead { tr {
                    th scope="col" { "rule" } th.num scope="col" { "shown" } th.num scope="col" { "answers" } th.num scope="col" { "response rate" }
                    th.num scope="col" { "yes" } th.num scope="col" { "no" } th.num scope="col" { "share yes" } th.num scope="col" { "closed" }
                } }
                tbody { @for r in &report.rules { tr {
                    td { a href={"#rule-" (r.rule.replace('/', "-"))} { code { (r.rule) } } }
                    td.num { (count(r.impressions as f64)) } td.num { (count(r.answers as f64)) } td.num { (percent(r.response_rate)) }
                    td.num { (count(r.positive as f64)) } td.num { (count(r.negative as f64)) } td.num { (percent(r.share_positive)) }
                    td.num { (count(r.dismissals as f64)) }
                } } }
            } }
            @for r in &report.rules {
                h2 id={"rule-" (r.rule.replace('/', "-"))} { "Rule " code { (r.rule) } }
                @if !r.daily.is_empty() {
                    div.legend aria-hidden="true" { span { span.k.shown {} "shown" } span { span.k.yes {} "yes" } span { span.k.no {} "no" } }
                    (chart(&r.rule, &r.daily))
                    details {
                        summary { "Figures per day" }
                        div.scroll { table {
                            thead { tr { th scope="col" { "day" } th.num scope="col" { "shown" } th.num scope="col" { "answers" } th.num scope="col" { "yes" } th.num scope="col" { "no" } } }
                            tbody { @for d in &r.daily { tr { td { (d.day) } td.num { (d.impressions) } td.num { (d.answers) } td.num { (d.yes) } td.num { (d.no) } } } }
                        } }
                    }
                }
                h3 { "Newest comments" }
                @if r.latest_comments.is_empty() {
                    p.muted { "None." }
                } @else {
                    ul { @for cm in &r.latest_comments { li {
                        span.muted.small { (cm.time) " · " code { (cm.page) } @if let Some(a) = &cm.account { " · " (a) } " · answered " (cm.answer) }
                        blockquote { (cm.comment) }
                    } } }
                }
                @if r.rules_versions.len() > 1 {
                    p.notice role="status" { "The records span " (r.rules_versions.len()) " rule-set versions: the rule's text may have changed between them." }
                }
            }
        }
    };
    Reply::html(200, layout("Feedback", "Feedback", body))
}
