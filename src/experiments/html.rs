//! `--format html`: the report as one self-contained page — per experiment a results table, each goal's lift
//! with its interval drawn, and cumulative exposures and conversions per arm over time — as inline SVG, with no
//! script, no external request, and a print style.

use std::fmt::Write;

use super::report::{ExperimentResult, Report};

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    crate::rules::template::escape_attr(s, &mut out);
    out
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}%", v * 100.0))
}

fn signed(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:+.1}%", v * 100.0))
}

const STYLE: &str = "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1b1f24;margin:2rem auto;max-width:60rem;padding:0 1rem}h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2.5rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}table{border-collapse:collapse;margin:.8rem 0;width:100%}th,td{border-bottom:1px solid #e5e8eb;padding:.35rem .6rem;text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f6f8fa;font-weight:600}.note{background:#fff8c5;border-left:4px solid #d4a72c;padding:.4rem .7rem;margin:.5rem 0}.bad{background:#ffebe9;border-left-color:#cf222e}.muted{color:#57606a;font-size:.9rem}svg{max-width:100%;height:auto}@media print{body{margin:0}h2{break-before:auto}}";

/// The lift and its 95% interval on an axis that always shows zero.
fn lift_svg(lift: f64, low: f64, high: f64) -> String {
    let lo = low.min(0.0).min(lift) - 0.05;
    let hi = high.max(0.0).max(lift) + 0.05;
    let (w, left, right) = (560.0, 20.0, 540.0);
    let x = |v: f64| left + (v - lo) / (hi - lo) * (right - left);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg viewBox=\"0 0 {w} 60\" role=\"img\" aria-label=\"lift {} (95% interval {} to {})\">",
        signed(Some(lift)),
        signed(Some(low)),
        signed(Some(high))
    );
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"30\" x2=\"{right}\" y2=\"30\" stroke=\"#d0d7de\"/><line x1=\"{z:.1}\" y1=\"10\" x2=\"{z:.1}\" y2=\"50\" stroke=\"#57606a\" stroke-dasharray=\"3 3\"/><text x=\"{z:.1}\" y=\"58\" font-size=\"10\" text-anchor=\"middle\">0</text>",
        z = x(0.0)
    );
    let _ = write!(
        s,
        "<line x1=\"{:.1}\" y1=\"30\" x2=\"{:.1}\" y2=\"30\" stroke=\"#0969da\" stroke-width=\"6\" stroke-linecap=\"round\" opacity=\".35\"/><circle cx=\"{:.1}\" cy=\"30\" r=\"6\" fill=\"#0969da\"/>",
        x(low),
        x(high),
        x(lift)
    );
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"16\" font-size=\"11\" text-anchor=\"middle\">{}</text><text x=\"{:.1}\" y=\"16\" font-size=\"11\" text-anchor=\"middle\">{}</text></svg>",
        x(low),
        signed(Some(low)),
        x(high),
        signed(Some(high))
    );
    s
}

/// Cumulative exposures or conversions per arm, by day.
fn cumulative_svg(e: &ExperimentResult, conversions: bool) -> String {
    let mut c = 0u64;
    let mut t = 0u64;
    let points: Vec<(u64, u64)> = e
        .daily
        .iter()
        .map(|d| {
            if conversions {
                c += d.control_conversions;
                t += d.treatment_conversions;
            } else {
                c += d.control_exposures;
                t += d.treatment_exposures;
            }
            (c, t)
        })
        .collect();
    let max = points
        .iter()
        .map(|(a, b)| (*a).max(*b))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (w, h, l, r, top, bottom) = (560.0, 160.0, 40.0, 550.0, 10.0, 135.0);
    let n = points.len().max(2) as f64 - 1.0;
    let x = |i: usize| l + i as f64 / n * (r - l);
    let y = |v: u64| bottom - v as f64 / max * (bottom - top);
    let line = |pick: fn(&(u64, u64)) -> u64| {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(pick(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let what = if conversions {
        "conversions"
    } else {
        "exposures"
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"cumulative {what} per arm\">"
    );
    let _ = write!(
        s,
        "<line x1=\"{l}\" y1=\"{bottom}\" x2=\"{r}\" y2=\"{bottom}\" stroke=\"#d0d7de\"/><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">0</text>",
        l - 4.0,
        top + 8.0,
        max as u64,
        l - 4.0,
        bottom
    );
    if let (Some(first), Some(last)) = (e.daily.first(), e.daily.last()) {
        let _ = write!(
            s,
            "<text x=\"{l}\" y=\"152\" font-size=\"10\">{}</text><text x=\"{r}\" y=\"152\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            esc(&first.day),
            esc(&last.day)
        );
    }
    let _ = write!(
        s,
        "<polyline fill=\"none\" stroke=\"#8c959f\" stroke-width=\"2\" points=\"{}\"/><polyline fill=\"none\" stroke=\"#0969da\" stroke-width=\"2\" points=\"{}\"/>",
        line(|p| p.0),
        line(|p| p.1)
    );
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"22\" font-size=\"11\" fill=\"#0969da\">treatment {}</text><text x=\"{}\" y=\"36\" font-size=\"11\" fill=\"#57606a\">control {}</text></svg>",
        l + 8.0,
        t,
        l + 8.0,
        c
    );
    s
}

/// The whole report as one HTML page.
pub fn render(report: &Report) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Concierge experiments report</title><style>{STYLE}</style></head><body><h1>Experiments report</h1>"
    );
    s.push_str(&sections(report));
    let _ = writeln!(
        s,
        "<h2>How to read this</h2><p class=\"muted\">{}</p></body></html>",
        esc(report.tests)
    );
    s
}

/// The report's body — per experiment the tables, the lift drawn with its interval and the curves over time —
/// as HTML that uses classes only (`note`, `note bad`, `muted`) and no inline style, so a page with a strict
/// CSP (the console) can show it under its own style sheet.
pub fn sections(report: &Report) -> String {
    let mut s = String::new();
    if report.experiments.is_empty() {
        s.push_str("<p>No experiment records in this range.</p>");
    }
    for e in &report.experiments {
        let _ = write!(s, "<h2>Experiment {}</h2>", esc(&e.id));
        let _ = write!(
            s,
            "<table><tr><th>arm</th><th>accounts</th><th>exposures</th></tr>"
        );
        for a in &e.arms {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.arm.name(),
                a.accounts,
                a.exposures
            );
        }
        s.push_str("</table>");
        let _ = write!(
            s,
            "<p class=\"muted\">Split check (sample ratio mismatch, expected {:.0}% control): p = {:.4}{}</p>",
            e.srm.expected_control * 100.0,
            e.srm.p_value,
            if e.srm.flagged { " — <strong>flagged</strong>" } else { "" }
        );
        for n in &e.notes {
            let class = if n.starts_with("sample ratio mismatch") {
                "note bad"
            } else {
                "note"
            };
            let _ = write!(s, "<p class=\"{class}\">{}</p>", esc(n));
        }
        for (goal, g) in &e.goals {
            let c = e.arms[0].goals.get(goal).cloned().unwrap_or_default();
            let t = e.arms[1].goals.get(goal).cloned().unwrap_or_default();
            let _ = write!(s, "<h3>Goal {}</h3>", esc(goal));
            let _ = write!(
                s,
                "<table><tr><th></th><th>control</th><th>treatment</th></tr><tr><td>accounts converted</td><td>{} of {} ({})</td><td>{} of {} ({})</td></tr><tr><td>conversions</td><td>{}</td><td>{}</td></tr><tr><td>conversions per account</td><td>{}</td><td>{}</td></tr><tr><td>conversions per exposure</td><td>{}</td><td>{}</td></tr></table>",
                c.accounts_converted,
                e.arms[0].accounts,
                pct(g.rate_control),
                t.accounts_converted,
                e.arms[1].accounts,
                pct(g.rate_treatment),
                c.conversions,
                t.conversions,
                g.per_account.control.map_or("–".into(), |v| format!("{v:.3}")),
                g.per_account.treatment.map_or("–".into(), |v| format!("{v:.3}")),
                g.per_exposure.control.map_or("–".into(), |v| format!("{v:.4}")),
                g.per_exposure.treatment.map_or("–".into(), |v| format!("{v:.4}")),
            );
            match (g.enough_data, g.lift, g.ci_low, g.ci_high) {
                (true, Some(l), Some(lo), Some(hi)) => {
                    let _ = write!(
                        s,
                        "<p>Lift in the share of accounts converting: <strong>{}</strong> (95% interval {} to {}; p = {})</p>{}",
                        signed(Some(l)),
                        signed(Some(lo)),
                        signed(Some(hi)),
                        g.p_value.map_or("–".into(), |p| format!("{p:.4}")),
                        lift_svg(l, lo, hi)
                    );
                }
                _ => {
                    let _ = write!(
                        s,
                        "<p class=\"note\">Not enough data for a verdict yet (observed lift so far {}).</p>",
                        signed(g.lift)
                    );
                }
            }
            if let Some(n) = g.accounts_needed_per_arm {
                let _ = write!(
                    s,
                    "<p class=\"muted\">To detect a {:.0}% lift at 80% power: about {n} accounts per arm.</p>",
                    g.mde * 100.0
                );
            }
        }
        if !e.daily.is_empty() {
            let _ = write!(
                s,
                "<h3>Over time</h3><p class=\"muted\">Cumulative exposures</p>{}<p class=\"muted\">Cumulative conversions</p>{}",
                cumulative_svg(e, false),
                cumulative_svg(e, true)
            );
        }
    }
    s
}
