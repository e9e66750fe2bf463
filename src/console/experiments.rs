//! Experiments: the report `concierge experiments report` prints (`experiments::report::Builder` over the
//! audit stream, the same floors from the configuration), per experiment or all, over a date range — drawn by
//! `experiments::html::sections`, the body of `--format html`, under the console's style sheet.

use maud::{html, Markup, PreEscaped};

use super::view::layout;
use super::{Console, Query, Reply};
use crate::experiments::report::{Builder, Filter, Floors};

fn form(q: &Query, ids: &[String]) -> Markup {
    html! {
        form.search method="get" action="/console/experiments" aria-label="Choose the experiment and the range" {
            div { label for="experiment" { "Experiment" }
                select id="experiment" name="experiment" {
                    option value="" { "all" }
                    @for id in ids { option value=(id) selected[q.get("experiment") == Some(id.as_str())] { (id) } }
                }
            }
            div { label for="since" { "From (date or time)" } input id="since" name="since" placeholder="2026-11-24" value=(q.get("since").unwrap_or("")); }
            div { label for="until" { "Until (before)" } input id="until" name="until" placeholder="2026-12-01" value=(q.get("until").unwrap_or("")); }
            div { label for="mde" { "Lift to detect (for the sample size)" } input id="mde" name="mde" placeholder="0.2" inputmode="decimal" value=(q.get("mde").unwrap_or("")); }
            div { button type="submit" { "Show" } }
        }
    }
}

pub(super) fn page(c: &Console, q: &Query) -> Reply {
    let sources = c.sources.load();
    // The experiments the rules define now, and (below) those the records name.
    let mut ids: Vec<String> = sources
        .experiments
        .experiments
        .iter()
        .map(|e| e.id.clone())
        .collect();
    let bad = |ids: &[String], e: String| {
        Reply::html(
            400,
            layout(
                "Experiments",
                "Experiments",
                html! { p.notice.bad role="alert" { (e) } (form(q, ids)) },
            ),
        )
    };
    let (since, until) = match q.range() {
        Ok(r) => r,
        Err(e) => return bad(&ids, e),
    };
    let experiment = match q.term("experiment", "experiment id") {
        Ok(e) => e,
        Err(e) => return bad(&ids, e),
    };
    let mut floors = Floors {
        min_accounts: c.settings.experiments.min_accounts,
        min_exposures: c.settings.experiments.min_exposures,
        ..Floors::default()
    };
    if let Some(m) = q.get("mde") {
        match m.parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => floors.mde = v,
            _ => {
                return bad(
                    &ids,
                    format!("“{m}” is not a positive share (0.2 = a 20% lift)."),
                )
            }
        }
    }
    // The whole log's report is kept up to date by the index (one experiment is the whole report's part for
    // it: each experiment's figures are its own records'); a date range reads the log again.
    let store = c.store();
    let builder = if let Some(store) = &store {
        // Every instance's records, from the record store.
        let push = crate::postgres::read::Pushdown {
            since: since.clone(),
            until: until.clone(),
            types: vec!["exposure".into(), "conversion".into()],
            ..Default::default()
        };
        let mut builder = Builder::new(Filter {
            since,
            until,
            experiment: experiment.clone(),
        });
        if let Err(e) = store.report_into(crate::audit::AUDIT_STREAM, &push, &mut builder) {
            return super::view::unreadable(e);
        }
        builder
    } else if since.is_none() && until.is_none() {
        match c.index(crate::audit::AUDIT_STREAM) {
            Ok(index) => index.experiments().clone(),
            Err(e) => return super::view::unreadable(e),
        }
    } else {
        let mut builder = Builder::new(Filter {
            since,
            until,
            experiment: experiment.clone(),
        });
        let dir = c.audit_dir().join(crate::audit::AUDIT_STREAM);
        if dir.is_dir() {
            if let Err(e) = builder.read_stream(&dir) {
                return super::view::unreadable(format!("{}: {e}", dir.display()));
            }
        }
        builder
    };
    for id in builder.known() {
        if !ids.iter().any(|have| have == id) {
            ids.push(id.to_string());
        }
    }
    ids.sort();
    if let Some(id) = &experiment {
        if !builder.known().contains(&id.as_str()) {
            let defined = sources.experiments.experiments.iter().any(|e| &e.id == id);
            let msg = if defined {
                format!("The experiment “{id}” has no records in this range yet.")
            } else {
                format!("No experiment “{id}” in the rules or the records.")
            };
            return Reply::html(
                if defined { 200 } else { 400 },
                layout(
                    "Experiments",
                    "Experiments",
                    html! { (form(q, &ids)) p.notice role="status" { (msg) } },
                ),
            );
        }
    }
    let mut report = builder.finish(floors);
    if let Some(id) = &experiment {
        report.experiments.retain(|e| &e.id == id);
    }
    let body = html! {
        p {
            "Exposures and conversions per arm from the audit log, with the lift of each goal and its 95% interval — the report of "
            code { "concierge experiments report" } ", which gives it as a table, JSON, CSV or one HTML file."
        }
        (form(q, &ids))
        @if let Some(store) = &store { p.muted.small role="status" { "Over every instance: " (store.describe()) "." } }
        div.report { (PreEscaped(crate::experiments::html::sections(&report))) }
        h2 { "How to read this" }
        p.muted { (report.tests) }
    };
    Reply::html(200, layout("Experiments", "Experiments", body))
}
