//! The preview on the Rules page: one made-up visit (an IP address or a target account, a URL, a consent
//! state, UTM parameters) run through `preview::run` — the function `concierge explain` calls, over the
//! generation of sources the proxy serves now. It shows every rule's verdict, the plan, the record the proxy
//! would write, and the origin's page beside the rewritten one (each in a sandboxed frame) with a text diff.
//!
//! Invariants:
//! - The origin's page is fetched by `app.rs` (through the proxy's upstream client, bounded) only after the
//!   token was checked; this module sees it as bytes ([`OriginPage`]).
//! - Previewed pages are served back only inside frames whose answer carries `Content-Security-Policy:
//!   sandbox` with `default-src 'none'`: no script runs, nothing is loaded. At most [`KEPT`] previews are kept,
//!   in memory, for their frames.

use std::collections::VecDeque;
use std::sync::Mutex;

use maud::{html, Markup};

use super::view::layout;
use super::{Console, Query, Reply};
use crate::preview::Consent;

/// The origin's answer for the previewed URL.
#[derive(Debug, Clone)]
pub struct OriginPage {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Whether the proxy would rewrite this answer: with which declared charset, or why not.
    pub rewritable: Result<Option<&'static encoding_rs::Encoding>, &'static str>,
}

/// Previews kept for their frames.
pub(super) const KEPT: usize = 4;

/// The longest URL or parameter value the form takes.
const MAX_URL: usize = 2048;
const MAX_VALUE: usize = 256;

/// Segments (or lines) per page a diff takes at most.
const MAX_SEGMENTS: usize = 50_000;

/// Changed lines of the diff shown at most.
const MAX_DIFF_LINES: usize = 600;

/// The UTM parameters the form offers.
const UTM: &[&str] = &[
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

/// One kept preview: (id, original, rewritten).
type Kept = (String, Vec<u8>, Vec<u8>);

/// The previews whose frames can still be shown.
#[derive(Default)]
pub(super) struct Frames {
    kept: Mutex<VecDeque<Kept>>,
}

impl Frames {
    fn keep(&self, original: Vec<u8>, rewritten: Vec<u8>) -> Option<String> {
        let mut id = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id).ok()?;
        let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((id.clone(), original, rewritten));
        Some(id)
    }

    fn get(&self, id: &str, rewritten: bool) -> Option<Vec<u8>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .find(|(have, _, _)| have == id)
            .map(|(_, o, r)| if rewritten { r.clone() } else { o.clone() })
    }
}

/// The visit the form describes.
pub(super) struct Form {
    ip: Option<String>,
    account: Option<String>,
    /// The URL with the UTM parameters added.
    url: String,
    consent: Consent,
    gpc: bool,
    referer: Option<String>,
}

impl Form {
    /// The form's values; `Ok(None)` when nothing was asked yet (the empty form).
    pub(super) fn parse(q: &Query) -> Result<Option<Form>, String> {
        let ip = q.get("ip").map(str::to_string);
        let account = q.get("account").map(str::to_string);
        if ip.is_none() && account.is_none() {
            return Ok(None);
        }
        if ip.is_some() && account.is_some() {
            return Err("Give an IP address or an account, not both.".into());
        }
        let mut url = q.get("url").unwrap_or("/").to_string();
        // A fragment never reaches the server; the UTM parameters go before where it was.
        if let Some(at) = url.find('#') {
            url.truncate(at);
        }
        if url.len() > MAX_URL {
            return Err(format!("The URL is longer than {MAX_URL} characters."));
        }
        let absolute = url.starts_with("http://") || url.starts_with("https://");
        if !absolute && !url.starts_with('/') {
            return Err(format!(
                "`{url}` is not a path (/pricing) or an http(s):// URL."
            ));
        }
        let parsed = url
            .parse::<http::Uri>()
            .map_err(|_| format!("`{url}` is not a valid URL or path."))?;
        if absolute && parsed.host().is_none() {
            return Err(format!("`{url}` has no host."));
        }
        for key in UTM {
            if let Some(v) = q.get(key) {
                if v.len() > MAX_VALUE {
                    return Err(format!("{key} is longer than {MAX_VALUE} characters."));
                }
                let sep = if parsed.query().is_some() || url.contains('?') {
                    '&'
                } else {
                    '?'
                };
                url.push(sep);
                url.push_str(key);
                url.push('=');
                url.push_str(&crate::rules::template::percent_encode(v));
            }
        }
        url.parse::<http::Uri>()
            .map_err(|_| format!("`{url}` is not a valid URL."))?;
        let consent = match q.get("consent") {
            None => Consent::None,
            Some(c) => Consent::parse(c).ok_or_else(|| {
                format!("The consent state `{c}` is not one of none, accept, reject.")
            })?,
        };
        let gpc = match q.get("gpc") {
            None => false,
            Some("on" | "1") => true,
            Some(other) => return Err(format!("gpc `{other}` is not on or off.")),
        };
        let referer = q.get("referer").map(str::to_string);
        if let Some(r) = &referer {
            if r.len() > MAX_URL || http::HeaderValue::from_str(r).is_err() {
                return Err("The referrer is not a valid URL.".into());
            }
        }
        if let Some(ip) = &ip {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| format!("`{ip}` is not an IP address."))?;
        }
        Ok(Some(Form {
            ip,
            account,
            url,
            consent,
            gpc,
            referer,
        }))
    }

    /// What to fetch from the origin: the target (`/path?query`) and the URL's host, if it named one.
    pub(super) fn origin_target(&self) -> (String, Option<String>) {
        let uri = self.url.parse::<http::Uri>().ok();
        let target = uri
            .as_ref()
            .and_then(|u| u.path_and_query())
            .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string());
        // The host (and port) a browser would send as `Host`: never the userinfo.
        let host = uri.as_ref().and_then(|u| {
            let host = u.host()?;
            Some(match u.port_u16() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            })
        });
        (target, host)
    }
}

/// The Rules page's preview: the form, and — once asked — what the pipeline decided and the pages.
pub(super) fn page(
    console: &Console,
    q: &Query,
    original: Option<&Result<OriginPage, String>>,
) -> Reply {
    let sources = console.sources.load();
    let form = match Form::parse(q) {
        Ok(f) => f,
        Err(e) => {
            return Reply::html(
                400,
                layout(
                    "Preview",
                    "Rules",
                    html! { (form_markup(q, &sources)) p.notice.bad role="alert" { (e) } },
                ),
            )
        }
    };
    let Some(form) = form else {
        return Reply::html(
            200,
            layout(
                "Preview",
                "Rules",
                html! {
                    (intro())
                    (form_markup(q, &sources))
                },
            ),
        );
    };
    let ip = match (&form.ip, &form.account) {
        (Some(ip), _) => match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                return Reply::html(
                    400,
                    layout(
                        "Preview",
                        "Rules",
                        html! { (form_markup(q, &sources)) p.notice.bad role="alert" { "Not an IP address." } },
                    ),
                )
            }
        },
        (None, Some(account)) => {
            match crate::preview::account_address(&sources.firmographics, account) {
                Some(Ok(ip)) => ip,
                Some(Err(e)) => {
                    return Reply::html(
                        400,
                        layout(
                            "Preview",
                            "Rules",
                            html! { (form_markup(q, &sources)) p.notice.bad role="alert" { "Cannot preview: " (e) "." } },
                        ),
                    )
                }
                None => {
                    return Reply::html(
                        400,
                        layout(
                            "Preview",
                            "Rules",
                            html! { (form_markup(q, &sources)) p.notice.bad role="alert" { "There is no target account named " code { (account) } "." } },
                        ),
                    )
                }
            }
        }
        (None, None) => {
            return Reply::html(
                400,
                layout("Preview", "Rules", html! { (form_markup(q, &sources)) }),
            )
        }
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static("text/html"),
    );
    if form.gpc {
        headers.insert("sec-gpc", http::HeaderValue::from_static("1"));
    }
    if let Some(r) = form
        .referer
        .as_deref()
        .and_then(|r| http::HeaderValue::from_str(r).ok())
    {
        headers.insert(http::header::REFERER, r);
    }
    let html_page = original
        .and_then(|o| o.as_ref().ok())
        .filter(|o| is_html(o));
    let input = crate::preview::Input {
        ip,
        url: &form.url,
        headers,
        consent: form.consent,
        html: html_page.map(|o| o.body.as_slice()),
        charset: html_page.and_then(|o| o.rewritable.ok().flatten()),
        request_id: "console-preview",
    };
    let settings = &console.settings;
    let result = crate::preview::run(input, &sources, settings, |o| {
        let explained = o
            .decided
            .explain(o.view, o.settings, ip, &form.url, o.record.clone());
        let frames = match (&o.rewritten, html_page) {
            (Some((rewritten, _)), Some(page)) => {
                console.frames.keep(page.body.clone(), rewritten.clone())
            }
            _ => None,
        };
        let diff = match (&o.rewritten, html_page) {
            (Some((rewritten, _)), Some(page)) => Some(diff(&page.body, rewritten)),
            _ => None,
        };
        let outcome = o.decided.planned_outcome();
        html! {
            (form_markup(q, &sources))
            h2 { "Decision" }
            dl.kv {
                dt { "visitor" } dd { code { (ip) } " — " (location(&explained.geo.country, &explained.geo.subdivision)) }
                dt { "company" } dd { (company(explained.company)) }
                dt { "consent" } dd {
                    (explained.decision.jurisdiction.region) " (" (explained.decision.jurisdiction.regime.name()) "): permitted "
                    @let tiers: Vec<&str> = explained.decision.permitted.iter().map(|t| t.name()).collect();
                    strong { (tiers.join(", ")) }
                    @if explained.decision.show_banner { "; the banner is shown" }
                    br; span.muted.small { "basis " code { (explained.decision.basis) } "; reasons: " (explained.decision.reasons.join(", ")) }
                }
                dt { "rules version" } dd { code { (explained.rules_version) } }
                dt { "outcome" } dd { (outcome.replace('_', " ")) }
            }
            h2 { "Rules (" (explained.candidates.len()) ")" }
            @if explained.candidates.is_empty() {
                p.muted { "No rule is written for this page." }
            } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "rule" } th scope="col" { "file" } th scope="col" { "scale" } th scope="col" { "tier" } th scope="col" { "verdict" } th scope="col" { "why" } } }
                    tbody { @for c in &explained.candidates {
                        @let (what, why) = c.verdict.label();
                        @let ok = matches!(c.verdict, crate::rules::Verdict::Applied);
                        tr {
                            td { code { (c.id) } }
                            td { code { (std::path::Path::new(&c.file).file_name().map(|f| f.to_string_lossy()).unwrap_or_default()) } }
                            td { (format!("{:?}", c.scale).to_lowercase()) }
                            td { (c.tier.name()) }
                            td { @if ok { span.status.ok { (what) } } @else { span.status.warn { (what) } } }
                            td { (why) }
                        }
                    } }
                } }
            }
            @if !explained.experiments.assignments.is_empty() || explained.experiments.excluded.is_some() {
                h2 { "Experiments" }
                ul {
                    @for a in &explained.experiments.assignments {
                        li { code { (a.assignment.experiment) } ": " strong { (a.assignment.arm.name()) } " arm — " (a.why) }
                    }
                    @if let Some(why) = explained.experiments.excluded {
                        li { "Not taking part (" (why.replace('_', " ")) "): governed rules apply as written, nothing is recorded." }
                    }
                }
            }
            h2 { "Plan" }
            @if explained.plan.is_empty() && !explained.additions.banner && explained.additions.feedback.is_empty() && explained.additions.why_link.is_none() {
                p.muted { "Nothing to change: the page goes out as the origin sent it." }
            } @else {
                div.scroll { table {
                    thead { tr { th scope="col" { "element" } th scope="col" { "change" } th scope="col" { "value (as inserted)" } th scope="col" { "rule" } } }
                    tbody {
                        @for a in &explained.plan { tr { td { code { (a.selector) } } td { (a.action) } td { code { (a.value) } } td { code { (a.rule) } } } }
                        @if explained.additions.banner { tr { td { code { "head" } } td { "insert" } td { "the consent banner" } td.muted { "proxy" } } }
                        @for p in &explained.additions.feedback { tr { td { code { "body" } } td { "insert" } td { "feedback prompt " @if let Some(qn) = p.question { "“" (qn) "”" } @if p.comment { " with a comment field" } } td { code { (p.rule) } } } }
                        @if let Some(href) = &explained.additions.why_link { tr { td { code { "body" } } td { "append" } td { "“Why am I seeing this?” → " code { (href) } } td.muted { "proxy" } } }
                    }
                } }
            }
            @for w in &o.warnings { p.notice role="status" { (w) } }
            h2 { "The record it would write" }
            @match &explained.record {
                Some(r) => {
                    p.muted.small { "For a 200 text/html answer. The client is pseudonymized as configured; a keyed hash differs from the proxy's, whose key lives only in its memory." }
                    pre { code { (serde_json::to_string_pretty(r).unwrap_or_default()) } }
                },
                None => p.muted { "None: no lookup ran and nothing changes on this page." },
            }
            h2 { "The page" }
            (page_section(original, o.rewritten.as_ref(), frames.as_deref(), diff))
        }
    });
    match result {
        Ok(body) => Reply::html(200, layout("Preview", "Rules", body)),
        Err(e) => Reply::html(
            400,
            layout(
                "Preview",
                "Rules",
                html! { (form_markup(q, &sources)) p.notice.bad role="alert" { "Cannot preview: " (e) "." } },
            ),
        ),
    }
}

/// One previewed page's frame (`?id=…&page=original|rewritten`).
pub(super) fn frame(console: &Console, q: &Query) -> Reply {
    let rewritten = match q.get("page") {
        Some("original") => false,
        Some("rewritten") => true,
        _ => return Reply::text(400, "page must be original or rewritten\n"),
    };
    let Some(id) = q
        .get("id")
        .filter(|i| i.len() == 32 && i.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return Reply::text(400, "id must be a preview's id\n");
    };
    match console.frames.get(id, rewritten) {
        Some(body) => Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body,
            download: None,
            challenge: false,
            frame: true,
        },
        None => Reply::text(404, "This preview is no longer kept: run it again.\n"),
    }
}

fn is_html(o: &OriginPage) -> bool {
    o.content_type.as_deref().is_some_and(|c| {
        let media = c.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case("text/html")
            || media.eq_ignore_ascii_case("application/xhtml+xml")
    })
}

fn intro() -> Markup {
    html! {
        p {
            "What a visitor would get, decided by the pipeline the proxy runs, over the rules it serves now (the same as "
            code { "concierge explain" } "). The page is fetched from the origin without the visitor's cookies; nothing is recorded."
        }
    }
}

fn form_markup(q: &Query, sources: &crate::sources::Sources) -> Markup {
    let v = |k: &str| q.get(k).unwrap_or("").to_string();
    let consent = q.get("consent").unwrap_or("none");
    let accounts = sources.firmographics.accounts();
    html! {
        form.search method="get" action="/console/rules/preview" aria-label="Preview a visit" {
            div { label for="p-ip" { "IP address" } input id="p-ip" name="ip" value=(v("ip")) placeholder="203.0.113.7" inputmode="text" autocomplete="off"; }
            div { label for="p-account" { "or target account" }
                select id="p-account" name="account" {
                    option value="" selected[q.get("account").is_none()] { "—" }
                    @for a in accounts {
                        option value=(a.company.name) selected[q.get("account") == Some(a.company.name.as_str())] { (a.company.name) }
                    }
                }
            }
            div { label for="p-url" { "URL" } input id="p-url" name="url" value=(q.get("url").unwrap_or("/")) placeholder="/pricing"; }
            div { label for="p-consent" { "Consent" }
                select id="p-consent" name="consent" {
                    option value="none" selected[consent == "none"] { "No choice made" }
                    option value="accept" selected[consent == "accept"] { "Accepted the banner" }
                    option value="reject" selected[consent == "reject"] { "Rejected the banner" }
                }
            }
            div { label for="p-gpc" { "Global Privacy Control" }
                select id="p-gpc" name="gpc" {
                    option value="" selected[q.get("gpc").is_none()] { "not sent" }
                    option value="on" selected[q.get("gpc").is_some()] { "sent (Sec-GPC: 1)" }
                }
            }
            div { label for="p-referer" { "Referrer" } input id="p-referer" name="referer" value=(v("referer")) placeholder="https://www.linkedin.com/"; }
            @for key in UTM {
                div { label for={"p-" (key)} { (key) } input id={"p-" (key)} name=(key) value=(v(key)); }
            }
            div.actions { button type="submit" { "Preview" } }
        }
    }
}

fn location(country: &Option<String>, sub: &Option<String>) -> String {
    match (country, sub) {
        (Some(c), Some(s)) => format!("{c}-{s}"),
        (Some(c), None) => c.clone(),
        _ => "location unknown".into(),
    }
}

fn company(l: &crate::classify::Lookup) -> Markup {
    use crate::classify::Lookup;
    html! {
        @match l {
            Lookup::NotRun => span.muted { "lookup not run: the firmographic tier is not permitted" },
            Lookup::NotNeeded => span.muted { "lookup not needed: no rule or goal on this page uses the company" },
            Lookup::Matched(m) => { strong { (m.company.name) } @if let Some(d) = &m.company.domain { " (" (d) ")" } @if m.company.account { " — target account" } },
            Lookup::NoCompany(_) => span.muted { "no company for this address" },
        }
    }
}

fn page_section(
    original: Option<&Result<OriginPage, String>>,
    rewritten: Option<&(Vec<u8>, Option<String>)>,
    frames: Option<&str>,
    diff: Option<Markup>,
) -> Markup {
    html! {
        @match original {
            None => p.muted { "The origin's page was not fetched." },
            Some(Err(e)) => p.notice.bad role="alert" { "The origin's page could not be fetched: " (e) "." },
            Some(Ok(o)) if !is_html(o) => p.notice role="status" {
                "The origin answered " (o.status) " " code { (o.content_type.as_deref().unwrap_or("without a content type")) } ": the proxy would pass it through unchanged ("
                (match o.rewritable { Err("skipped_status") => "only a 200 is rewritten", Err("skipped_not_html") => "not text/html", Err("skipped_encoding") => "a content coding it does not decode", Err("skipped_charset") => "a charset it cannot read", _ => "not rewritable" })
                "). Its decision and record are still as shown above."
            },
            Some(Ok(o)) => {
                p.muted.small {
                    "The origin answered " (o.status) " with " (super::view::count(o.body.len() as f64)) " bytes of HTML. "
                    "Both pages are shown in sandboxed frames: no script runs, and no style sheet, image or font is loaded (inline styles only)."
                }
                @if let Some((_, Some(e))) = rewritten { p.notice role="status" { "The rewriter gave up part way (" (e) "); the rest of the page is unchanged." } }
                @if let Some(id) = frames {
                    div.frames {
                        figure { figcaption { "Original" } iframe sandbox="" title="The origin's page" src={"/console/rules/preview/frame?id=" (id) "&page=original"} {} }
                        figure { figcaption { "Rewritten" } iframe sandbox="" title="The page as the visitor gets it" src={"/console/rules/preview/frame?id=" (id) "&page=rewritten"} {} }
                    }
                }
                @if let Some(d) = diff { h2 { "Text diff" } (d) }
            },
        }
    }
}

/// A diff of the two pages by markup segment (each line split after every `>`, so a minified page still
/// diffs by element), bounded in time (1 s, then approximated) and in lines shown.
fn diff(original: &[u8], rewritten: &[u8]) -> Markup {
    let a = String::from_utf8_lossy(original);
    let b = String::from_utf8_lossy(rewritten);
    // By markup segment while that stays small; by line beyond; not at all past that (a hostile page of
    // a million tags must not cost a million-element diff).
    fn segments(s: &str) -> Vec<&str> {
        s.split_inclusive('\n')
            .flat_map(|line| line.split_inclusive('>'))
            .take(MAX_SEGMENTS + 1)
            .collect()
    }
    let (mut ra, mut rb) = (segments(&a), segments(&b));
    if ra.len() > MAX_SEGMENTS || rb.len() > MAX_SEGMENTS {
        ra = a.split_inclusive('\n').take(MAX_SEGMENTS + 1).collect();
        rb = b.split_inclusive('\n').take(MAX_SEGMENTS + 1).collect();
        if ra.len() > MAX_SEGMENTS || rb.len() > MAX_SEGMENTS {
            return html! { p.muted { "The pages are too large to diff here (more than " (MAX_SEGMENTS) " lines)." } };
        }
    }
    let d = similar::TextDiff::configure()
        .timeout(std::time::Duration::from_secs(1))
        .diff_slices(&ra, &rb);
    let (mut added, mut removed) = (0usize, 0usize);
    let mut lines: Vec<(char, String)> = Vec::new();
    let mut truncated = false;
    for (i, group) in d.grouped_ops(2).iter().enumerate() {
        if i > 0 {
            lines.push((' ', "…".into()));
        }
        for op in group {
            for change in d.iter_changes(op) {
                let mark = match change.tag() {
                    similar::ChangeTag::Equal => ' ',
                    similar::ChangeTag::Insert => {
                        added += 1;
                        '+'
                    }
                    similar::ChangeTag::Delete => {
                        removed += 1;
                        '-'
                    }
                };
                if lines.len() < MAX_DIFF_LINES {
                    lines.push((mark, change.value().trim_end_matches('\n').to_string()));
                } else {
                    truncated = true;
                }
            }
        }
    }
    html! {
        @if added == 0 && removed == 0 {
            p.muted { "No difference: the page goes out as the origin sent it." }
        } @else {
            p.muted.small { (added) " segment(s) added, " (removed) " removed (by markup segment, 2 of context)." @if truncated { " Only the first " (MAX_DIFF_LINES) " lines are shown." } }
            pre.diff aria-label="Differences between the origin's page and the rewritten page" {
                @for (mark, text) in &lines {
                    @match mark {
                        '+' => { ins { "+ " (text) } "\n" },
                        '-' => { del { "- " (text) } "\n" },
                        _ => { span { "  " (text) } "\n" },
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(s).unwrap()
    }

    #[test]
    fn form_adds_utm_and_validates() {
        let f = Form::parse(&q("ip=127.0.0.1&url=%2Fpricing&utm_campaign=spring+sale"))
            .unwrap()
            .unwrap();
        assert_eq!(f.url, "/pricing?utm_campaign=spring%20sale");
        assert_eq!(
            f.origin_target(),
            ("/pricing?utm_campaign=spring%20sale".into(), None)
        );
        let f = Form::parse(&q(
            "ip=127.0.0.1&url=https%3A%2F%2Fwww.example.com%2Fa%3Fx%3D1&utm_source=li",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(f.url, "https://www.example.com/a?x=1&utm_source=li");
        assert_eq!(
            f.origin_target(),
            (
                "/a?x=1&utm_source=li".into(),
                Some("www.example.com".into())
            )
        );
        assert!(Form::parse(&q("")).unwrap().is_none());
        for bad in [
            "ip=1.2.3&url=/",
            "ip=127.0.0.1&account=Acme",
            "ip=127.0.0.1&url=pricing",
            "ip=127.0.0.1&consent=maybe",
            "ip=127.0.0.1&gpc=yes",
            "ip=127.0.0.1&url=http%3A%2F%2F",
        ] {
            assert!(Form::parse(&q(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn diff_marks_changes_only() {
        let a = b"<html><body><h1>Hello</h1><p>Same</p></body></html>";
        let b = b"<html><body><h1>Hello, Acme</h1><p>Same</p></body></html>";
        let out = diff(a, b).into_string();
        assert!(out.contains("<del>- Hello&lt;/h1&gt;</del>"), "{out}");
        assert!(out.contains("<ins>+ Hello, Acme&lt;/h1&gt;</ins>"), "{out}");
        assert!(diff(a, a).into_string().contains("No difference"));
    }

    #[test]
    fn frames_keep_the_last_few() {
        let f = Frames::default();
        let ids: Vec<String> = (0..KEPT + 1)
            .map(|i| f.keep(vec![i as u8], vec![]).unwrap())
            .collect();
        assert!(f.get(&ids[0], false).is_none());
        assert_eq!(f.get(&ids[KEPT], false), Some(vec![KEPT as u8]));
    }
}
