//! The console's page shell, styles and shared pieces. Templates are maud: checked when the crate compiles, every
//! interpolated value escaped for HTML.

use maud::{html, Markup, DOCTYPE};

/// The pages in the navigation: (path, name).
const NAV: &[(&str, &str)] = &[
    ("/console/", "Overview"),
    ("/console/rules", "Rules"),
    ("/console/experiments", "Experiments"),
    ("/console/feedback", "Feedback"),
    ("/console/instances", "Instances"),
    ("/console/audit", "Audit"),
];

/// One stylesheet, served at `/console/console.css` (no inline style: the CSP forbids it).
pub(super) const CSS: &str = r#"
:root{--fg:#1b1f24;--muted:#57606a;--bg:#fff;--panel:#f6f8fa;--line:#d0d7de;--accent:#0550ae;--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9da7b3;--bg:#0d1117;--panel:#161b22;--line:#30363d;--accent:#6cb6ff;--ok:#3fb950;--bad:#ff7b72;--warn:#d29922}}
*{box-sizing:border-box}body{margin:0}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:.5rem;background:var(--bg);padding:.3rem .6rem;z-index:2}
header.top{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.5rem;padding:.6rem 1.2rem;border-bottom:1px solid var(--line);background:var(--panel)}
.brand{font-weight:700;color:var(--fg);text-decoration:none}
nav ul{display:flex;flex-wrap:wrap;gap:.2rem 1rem;list-style:none;margin:0;padding:0}
nav a{color:var(--accent);text-decoration:none;padding:.2rem 0}nav a[aria-current=page]{color:var(--fg);font-weight:600;border-bottom:2px solid var(--accent)}
main{max-width:72rem;margin:0 auto;padding:1rem 1.2rem 3rem}
h1{font-size:1.6rem;margin:.6rem 0 1rem}h2{font-size:1.2rem;margin:2rem 0 .6rem;border-bottom:1px solid var(--line);padding-bottom:.25rem}
a{color:var(--accent)}a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.muted{color:var(--muted)}.small{font-size:.875rem}
.scroll{overflow-x:auto;margin:.5rem 0 1rem}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid var(--line);padding:.4rem .6rem;text-align:left;vertical-align:top}
th{background:var(--panel);font-weight:600;white-space:nowrap}td.num,th.num{text-align:right}
th a{color:inherit}
p code,li code,dd code{overflow-wrap:anywhere}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.875rem}
pre{background:var(--panel);border:1px solid var(--line);padding:.8rem;overflow-x:auto;white-space:pre-wrap;word-break:break-word}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(12rem,1fr));gap:.8rem;margin:.5rem 0 1rem}
.card{border:1px solid var(--line);border-radius:6px;padding:.7rem .9rem;background:var(--panel)}
.card .v{font-size:1.5rem;font-weight:650}.card .k{color:var(--muted);font-size:.875rem}
.status{display:inline-block;border-radius:4px;padding:.05rem .45rem;font-weight:600;font-size:.875rem;border:1px solid}
.status.ok{color:var(--ok)}.status.bad{color:var(--bad)}.status.warn{color:var(--warn)}
.notice{border-left:4px solid var(--warn);background:var(--panel);padding:.5rem .8rem;margin:.8rem 0}
.notice.bad{border-left-color:var(--bad)}
form.search{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:.6rem 1rem;align-items:end;margin:.5rem 0 1rem}
label{display:block;font-size:.875rem;font-weight:600}
input,select{width:100%;font:inherit;padding:.35rem .5rem;border:1px solid var(--line);border-radius:4px;background:var(--bg);color:var(--fg)}
button{font:inherit;padding:.4rem .9rem;border-radius:4px;border:1px solid var(--accent);background:var(--accent);color:var(--bg);cursor:pointer}
.actions{display:flex;flex-wrap:wrap;gap:.8rem;align-items:center}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dl.kv dt{font-weight:600}dl.kv dd{margin:0;word-break:break-word}
.frames{display:grid;grid-template-columns:1fr 1fr;gap:1rem;margin:.5rem 0 1rem}.frames figure{margin:0}.frames figcaption{font-weight:600;margin-bottom:.3rem}
.frames iframe{width:100%;height:28rem;border:1px solid var(--line);border-radius:4px;background:#fff}
pre.diff ins{text-decoration:none;color:var(--ok);display:inline}pre.diff del{text-decoration:none;color:var(--bad);display:inline}
.report svg{width:100%;max-width:40rem;height:auto;display:block;margin:.3rem 0 1rem}.report svg text:not([fill]){fill:var(--fg)}
.report h3{font-size:1.05rem;margin:1.4rem 0 .4rem}.note{border-left:4px solid var(--warn);background:var(--panel);padding:.5rem .8rem;margin:.6rem 0}.note.bad{border-left-color:var(--bad)}
.report table td:not(:first-child),.report table th:not(:first-child){text-align:right}
svg.chart{max-width:100%;height:auto;display:block}svg.chart text{fill:var(--muted);font-size:11px}svg.chart .yes{fill:var(--ok)}svg.chart .no{fill:var(--bad)}svg.chart .shown{fill:var(--line)}svg.chart line{stroke:var(--line)}
.legend{display:flex;gap:1rem;font-size:.875rem;color:var(--muted);margin:.2rem 0}.legend .k{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.3rem;vertical-align:-.1rem}.legend .yes{background:var(--ok)}.legend .no{background:var(--bad)}.legend .shown{background:var(--line)}
blockquote{margin:.4rem 0;padding:.3rem .8rem;border-left:3px solid var(--line);white-space:pre-wrap;word-break:break-word}
@media (max-width:48rem){.frames{grid-template-columns:1fr}}
@media (max-width:40rem){main{padding:.8rem}th,td{padding:.35rem .4rem}}
"#;

/// The console's icon (a browser asks for one; without it, a 404 in its console on every page).
pub(super) const FAVICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#0550ae"/><path d="M21.5 10.5a8 8 0 1 0 0 11" fill="none" stroke="#fff" stroke-width="3.5" stroke-linecap="round"/></svg>"##;

/// A whole page: the shell, the navigation with `current` marked, and `body` under the page's heading.
pub(super) fn layout(title: &str, current: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Concierge console" }
                link rel="stylesheet" href="/console/console.css";
                link rel="icon" href="/console/favicon.svg" type="image/svg+xml";
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    a.brand href="/console/" { "Concierge console" }
                    nav aria-label="Console pages" {
                        ul {
                            @for (href, name) in NAV {
                                li { a href=(href) aria-current=[(*name == current).then_some("page")] { (name) } }
                            }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
    .into_string()
}

/// A page that says what went wrong (bad parameters, unknown page).
pub(crate) fn error_page(title: &str, message: &str) -> String {
    layout(title, "", html! { p.notice.bad role="alert" { (message) } })
}

/// The answer when the log cannot be read (`what`: the path and the error).
pub(super) fn unreadable(what: impl std::fmt::Display) -> super::Reply {
    super::Reply::html(500, error_page("The log cannot be read", &what.to_string()))
}

/// `intact` / `TAMPERED`-style status marks.
pub(super) fn status(ok: bool, yes: &str, no: &str) -> Markup {
    html! {
        @if ok { span.status.ok { (yes) } } @else { span.status.bad { (no) } }
    }
}

/// A number with thin grouping (12 345), as people read counts.
pub(super) fn count(n: f64) -> String {
    if n.fract() != 0.0 || !n.is_finite() {
        return format!("{n:.2}");
    }
    let digits = format!("{}", n.abs() as u64);
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(ch);
    }
    if n < 0.0 {
        out.insert(0, '−');
    }
    out
}

/// A share as a percentage, or "–" when there is nothing to divide by.
pub(super) fn share(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", part / whole * 100.0)
    } else {
        "–".into()
    }
}

/// The last reload: when, why, and — if it was refused — every error (the previous generation keeps serving).
pub(super) fn last_reload(last: Option<&crate::sources::LastReload>) -> maud::Markup {
    maud::html! {
        @match last {
            None => p.muted { "No reload since start: the rules and company tables loaded at start serve." },
            Some(r) if r.errors.is_empty() => p { (status(true, "reloaded", "")) " " (r.at) " (" (r.reason) "): the new generation went live." },
            Some(r) => div.notice.bad role="alert" {
                p { (status(false, "", "refused")) " The reload at " (r.at) " (" (r.reason) ") was refused; the previous generation keeps serving. Its errors:" }
                ul { @for e in &r.errors { li { code { (e) } } } }
            },
        }
    }
}
