use super::*;
use crate::consent::policy::{Decision, Jurisdiction, Regime, Tier};
use crate::firmographics::company::Company;
use crate::firmographics::Geo;
use crate::rules::{names_one_element, RuleSet};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;

const PAGE: &str = "<!doctype html><html><head><title>Héllo — ünïcode ✓</title></head><body>\
<h1 class=\"hero\">Welcome</h1><p class=\"lead\">Generic lead — ✓✓✓</p>\
<a class=\"cta\" href=\"/demo\">Book a demo</a><div id=\"old\">remove me</div>\
<footer>日本語のテキスト</footer></body></html>";

fn rules(dir: &Path) -> RuleSet {
    std::fs::create_dir_all(dir.join("accounts")).unwrap();
    std::fs::create_dir_all(dir.join("snippets")).unwrap();
    std::fs::write(
        dir.join("snippets/note.html"),
        "<aside class=\"note\">for {{ company.name }}</aside>",
    )
    .unwrap();
    std::fs::write(
        dir.join("accounts/acme.example.toml"),
        r##"
[account]
domain = "acme.example"
name = "Acme"

[[personalization]]
id = "all"
tier = "firmographic"

[[personalization.action]]
select = "h1"
set_text = "Welcome, {{ company.name }}"

[[personalization.action]]
select = "a.cta"
set_attribute = { name = "href", value = "/demo?company={{ company.name }}" }

[[personalization.action]]
select = "a.cta"
set_attribute = { name = "title", value = "For {{ company.name }}" }

[[personalization.action]]
select = "#old"
remove = true

[[personalization.action]]
select = "p.lead"
after = { html = "snippets/note.html" }

[[personalization.action]]
select = "h1"
add_class = "abm"
"##,
    )
    .unwrap();
    RuleSet::load(dir).unwrap_or_else(|e| panic!("{e:?}"))
}

fn ops(company_name: &str) -> Vec<Op> {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules(dir.path());
    let company = Company {
        domain: Some("acme.example".into()),
        name: company_name.into(),
        account: true,
        ..Company::default()
    };
    let geo = Geo::default();
    let decision = Decision {
        jurisdiction: Jurisdiction {
            regime: Regime::OptOut,
            region: "US-CA".into(),
        },
        permitted: BTreeSet::from([Tier::Anonymous, Tier::Firmographic]),
        reasons: vec![],
        show_banner: false,
        consent_id: None,
        basis: "opt-out:not-withdrawn",
    };
    let v = Visitor {
        path: "/",
        query: None,
        referrer_host: None,
        cookies: vec![],
        geo: &geo,
        company: Some(&company),
        decision: &decision,
        now: 0,
    };
    let plan = rules.plan(&v);
    render_plan(&plan, &v, &test_page("/_concierge/"))
}

fn rewrite_chunks(ops: Vec<Op>, input: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut r = Rewriter::new(ops, None, 1 << 20);
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        let (b, e) = r.write(chunk);
        assert!(e.is_none(), "{e:?}");
        out.extend_from_slice(&b);
        rest = tail;
        i += 1;
    }
    let (b, e) = r.end();
    assert!(e.is_none());
    out.extend_from_slice(&b);
    out
}

#[test]
fn applies_every_action_and_escapes_values() {
    let out = String::from_utf8(rewrite_chunks(
        ops("Acme & <Sons> \"Q\""),
        PAGE.as_bytes(),
        &[PAGE.len()],
    ))
    .unwrap();
    assert!(
        out.contains("<h1 class=\"hero abm\">Welcome, Acme &amp; &lt;Sons&gt; \"Q\"</h1>"),
        "{out}"
    );
    assert!(
        out.contains("href=\"/demo?company=Acme%20%26%20%3CSons%3E%20%22Q%22\""),
        "{out}"
    );
    assert!(
        out.contains("title=\"For Acme &amp; &lt;Sons&gt; &quot;Q&quot;\""),
        "{out}"
    );
    assert!(!out.contains("remove me"));
    assert!(
        out.contains("</p><aside class=\"note\">for Acme &amp; &lt;Sons&gt; &quot;Q&quot;</aside>"),
        "{out}"
    );
    assert!(
        out.contains("&amp;lang=en\" defer></script></head>"),
        "banner in head: {out}"
    );
    assert!(out.contains("日本語のテキスト"));
}

#[test]
fn injection_attempts_come_out_inert() {
    for evil in [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "javascript:alert(1)",
        "' onmouseover='alert(1)",
        "</h1><script>x</script>",
    ] {
        let out = String::from_utf8(rewrite_chunks(ops(evil), PAGE.as_bytes(), &[7])).unwrap();
        assert!(!out.contains("<script>"), "{evil}: {out}");
        assert!(!out.contains("<img"), "{evil}: {out}");
        assert_eq!(
            out.matches("<script").count(),
            1,
            "only the banner's own script tag: {out}"
        );
        assert!(!out.contains("href=\"javascript"), "{evil}: {out}");
        for tag in out
            .split('<')
            .skip(1)
            .map(|t| t.split('>').next().unwrap_or(""))
        {
            // Outside quoted attribute values, no event-handler attribute appeared.
            let unquoted: String = tag.split('"').step_by(2).collect();
            assert!(
                !unquoted.contains("onmouseover") && !unquoted.contains("onerror"),
                "{evil}: <{tag}>"
            );
        }
    }
}

#[test]
fn memory_limit_bails_out_and_passes_the_rest_through() {
    // A huge start tag split over chunks forces lol_html to buffer beyond a tiny limit.
    let mut page = String::from("<html><body><h1>Welcome</h1><div data-x=\"");
    page.push_str(&"z".repeat(20_000));
    page.push_str("\">tail</div><p class=\"lead\">end</p></body></html>");
    let mut r = Rewriter::new(ops("Acme"), None, 4096);
    let mut out = Vec::new();
    let mut error = None;
    for chunk in page.as_bytes().chunks(1000) {
        let (b, e) = r.write(chunk);
        out.extend_from_slice(&b);
        error = error.or(e);
    }
    let (b, _) = r.end();
    out.extend_from_slice(&b);
    assert!(error.is_some(), "the limit was hit");
    assert!(r.bailed());
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.starts_with(&format!(
            "<html><body>{}<h1 class=\"abm\">Welcome, Acme</h1>",
            noscript_markup(&test_page("/_concierge/"), "/")
        )),
        "rewritten up to the limit: {}",
        &out[..200]
    );
    assert!(
        out.ends_with("\">tail</div><p class=\"lead\">end</p></body></html>"),
        "the rest untouched"
    );
    assert_eq!(out.matches('z').count(), 20_000, "nothing lost");
}

#[test]
fn charsets() {
    assert_eq!(charset("text/html"), None);
    assert_eq!(
        charset("text/html; charset=utf-8"),
        Some(Some(encoding_rs::UTF_8))
    );
    assert_eq!(
        charset("text/html;charset=\"ISO-8859-1\""),
        Some(Some(encoding_rs::WINDOWS_1252))
    );
    assert_eq!(
        charset("text/html; charset=utf-16le"),
        Some(None),
        "not ASCII-compatible: pass through"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Random chunk boundaries, 1-byte chunks, splits inside multi-byte UTF-8: byte-identical output.
    #[test]
    fn chunking_never_changes_the_output(sizes in proptest::collection::vec(1usize..40, 1..20)) {
        let whole = rewrite_chunks(ops("Acme"), PAGE.as_bytes(), &[PAGE.len()]);
        let split = rewrite_chunks(ops("Acme"), PAGE.as_bytes(), &sizes);
        prop_assert_eq!(&whole, &split);
        let bytewise = rewrite_chunks(ops("Acme"), PAGE.as_bytes(), &[1]);
        prop_assert_eq!(whole, bytewise);
    }
}

const ID_PAGE: &str = "<!doctype html><html><head><title>Ids — ✓</title></head><body>\
<h1 id=\"hero\" class=\"big\">Welcome</h1><p id=\"lead\">Generic lead — ✓✓✓</p>\
<a id=\"cta\" class=\"btn\" href=\"/demo\">Book a demo</a><div id=\"old\">remove <b>me</b></div>\
<ul id=\"list\"><li>one</li></ul><img id=\"logo\" src=\"/l.svg\">\
<section><h1 id=\"hero\">A second hero (an invalid duplicate id)</h1><p>日本語のテキスト</p>\
<div class=\"tail\">a long tail the rewriter need not parse <a href=\"/x\">x</a></div></section></body></html>";

fn op(selector: &str, kind: OpKind) -> Op {
    Op {
        selector: Arc::new(selector.parse().unwrap()),
        kind,
        once: names_one_element(selector),
    }
}

/// One op per kind, every one naming a single element.
fn id_ops() -> Vec<Op> {
    vec![
        op("#hero", OpKind::SetContent("Hi, Acme".into(), false)),
        op(
            "a#cta",
            OpKind::SetAttribute("href".into(), "/demo?a=acme".into()),
        ),
        op("#cta.btn", OpKind::AddClass("abm".into())),
        op("#cta", OpKind::AppendAttribute("title".into(), "!".into())),
        op("#old", OpKind::Remove),
        op(
            "#lead",
            OpKind::Insert(Position::After, "<aside>note</aside>".into(), true),
        ),
        op(
            "#lead",
            OpKind::Insert(Position::Before, "<hr>".into(), true),
        ),
        op(
            "#list",
            OpKind::Insert(Position::Append, "<li>two</li>".into(), true),
        ),
        op(
            "#list",
            OpKind::Insert(Position::Prepend, "<li>zero</li>".into(), true),
        ),
        op("#logo", OpKind::SetAttribute("alt".into(), "Acme".into())),
        op(
            "head",
            OpKind::Insert(Position::Append, banner_markup(&test_page("/_c/")), true),
        ),
    ]
}

fn rewrite_flagged(ops: Vec<Op>, input: &[u8], sizes: &[usize]) -> (Vec<u8>, bool) {
    let mut r = Rewriter::new(ops, None, 1 << 20);
    let mut out = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        let (b, e) = r.write(chunk);
        assert!(e.is_none(), "{e:?}");
        out.extend_from_slice(&b);
        rest = tail;
        i += 1;
    }
    let early = r.finished_early();
    let (b, e) = r.end();
    assert!(e.is_none());
    out.extend_from_slice(&b);
    (out, early)
}

#[test]
fn selectors_that_name_one_element() {
    for s in [
        "#hero",
        "h1#hero",
        "#cta.btn.primary",
        "a#c-1_x",
        "head",
        " BODY ",
    ] {
        assert!(names_one_element(s), "{s}");
    }
    for s in [
        "h1",
        ".cta",
        "#a #b",
        "#a > b",
        "#a, #b",
        "a[href='#x']",
        "#a:not(.b)",
        "#a[href]",
        "div#",
        "#",
        "head > link",
    ] {
        assert!(!names_one_element(s), "{s}");
    }
}

#[test]
fn once_only_ops_apply_to_the_first_match_and_parsing_stops_when_all_are_done() {
    let (out, early) = rewrite_flagged(id_ops(), ID_PAGE.as_bytes(), &[ID_PAGE.len()]);
    let out = String::from_utf8(out).unwrap();
    assert!(early, "every op completed before the end of the page");
    assert!(
        out.contains("<h1 id=\"hero\" class=\"big\">Hi, Acme</h1>"),
        "{out}"
    );
    assert!(
        out.contains("<h1 id=\"hero\">A second hero"),
        "first match only: {out}"
    );
    assert!(
        out.contains("<hr><p id=\"lead\">Generic lead — ✓✓✓</p><aside>note</aside>"),
        "{out}"
    );
    assert!(
        out.contains("<a id=\"cta\" class=\"btn abm\" href=\"/demo?a=acme\" title=\"!\">"),
        "{out}"
    );
    assert!(!out.contains("remove"), "{out}");
    assert!(
        out.contains("<ul id=\"list\"><li>zero</li><li>one</li><li>two</li></ul>"),
        "{out}"
    );
    assert!(
        out.contains("<img id=\"logo\" src=\"/l.svg\" alt=\"Acme\">"),
        "{out}"
    );
    assert!(out.contains("lang=en\" defer></script></head>"), "{out}");
    // Each kind alone completes too (end-tag ops included), so parsing stops for any mix.
    for o in id_ops() {
        let what = format!("{:?}", o.kind);
        let (_, early) = rewrite_flagged(vec![o], ID_PAGE.as_bytes(), &[64]);
        assert!(early, "{what}");
    }
    // A selector that may name several elements keeps the parser on to the end.
    let mut ops = id_ops();
    ops.push(op(".never", OpKind::Remove));
    let (full, early) = rewrite_flagged(ops, ID_PAGE.as_bytes(), &[ID_PAGE.len()]);
    assert!(!early);
    assert_eq!(
        String::from_utf8(full).unwrap(),
        out,
        "stopping early changes nothing"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Stopping early at any chunk boundary (an unfinished tag held by the parser included) gives the bytes
    /// a full parse gives.
    #[test]
    fn stopping_early_is_invisible_in_any_chunking(sizes in proptest::collection::vec(1usize..40, 1..20)) {
        let mut reference_ops = id_ops();
        reference_ops.push(op(".never", OpKind::Remove));
        let (reference, _) = rewrite_flagged(reference_ops, ID_PAGE.as_bytes(), &[ID_PAGE.len()]);
        let (split, early) = rewrite_flagged(id_ops(), ID_PAGE.as_bytes(), &sizes);
        prop_assert!(early);
        prop_assert_eq!(&reference, &split);
        let (bytewise, _) = rewrite_flagged(id_ops(), ID_PAGE.as_bytes(), &[1]);
        prop_assert_eq!(reference, bytewise);
    }
}

/// Issue 16, item 12: without JavaScript there is no banner, so a page that gets it also gets a plain link to
/// the choices page first in `<body>`.
#[test]
fn a_page_with_the_banner_carries_a_noscript_link_to_the_choices_page() {
    let rules = crate::rules::RuleSet::default();
    let plan = crate::rules::Plan {
        rules_version: &rules.version,
        ..Default::default()
    };
    let decision = crate::consent::policy::Decision {
        jurisdiction: crate::consent::policy::Jurisdiction {
            regime: crate::consent::policy::Regime::OptIn,
            region: "DE".into(),
        },
        permitted: [crate::consent::policy::Tier::Anonymous]
            .into_iter()
            .collect(),
        reasons: vec![],
        show_banner: true,
        consent_id: None,
        basis: "test",
    };
    let geo = crate::firmographics::Geo::default();
    let v = crate::rules::Visitor {
        path: "/",
        query: None,
        referrer_host: None,
        cookies: vec![],
        geo: &geo,
        company: None,
        decision: &decision,
        now: 1_790_000_000,
    };
    let page = test_page("/_concierge/");
    let ops = render_plan(&plan, &v, &page);
    let mut rw = Rewriter::new(ops, None, 1 << 20);
    let (a, _) = rw.write(b"<html><head></head><body><h1>x</h1></body></html>");
    let (b, _) = rw.end();
    let out = String::from_utf8_lossy(&[a, b].concat()).into_owned();
    assert!(
        out.contains(
            "<body><noscript><p class=\"concierge-noscript\" lang=\"en\"><a href=\"/_concierge/consent?return=/\">"
        ),
        "{out}"
    );
}

static CATALOG: std::sync::LazyLock<crate::consent::texts::Catalog> =
    std::sync::LazyLock::new(Default::default);

/// A page with the banner, in English, under `prefix`.
fn test_page(prefix: &'static str) -> crate::rewrite::Page<'static> {
    crate::rewrite::Page {
        prefix,
        banner: true,
        why_link: false,
        texts: CATALOG.by_tag("en"),
        texts_version: CATALOG.version(),
    }
}

/// Issue 16, item 15: the "why" link follows the changed content; without it on the page, it ends the page.
#[test]
fn the_why_link_sits_next_to_the_change_or_else_ends_the_page() {
    let run = |near: &str, html: &str| {
        let placed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let once = |selector: &str, kind| Op {
            once: true,
            ..op(selector, kind)
        };
        let ops = vec![
            once(
                near,
                OpKind::WhyNear("<span>why</span>".into(), placed.clone()),
            ),
            once("body", OpKind::WhyFallback("<p>why</p>".into(), placed)),
        ];
        let mut rw = Rewriter::new(ops, None, 1 << 20);
        let (a, _) = rw.write(html.as_bytes());
        let (b, _) = rw.end();
        String::from_utf8([a, b].concat()).unwrap()
    };
    let page =
        "<html><head><title>t</title></head><body><h1 class=\"hero\">Hi</h1><p>x</p></body></html>";
    assert_eq!(
        run("h1.hero", page),
        "<html><head><title>t</title></head><body><h1 class=\"hero\">Hi</h1><span>why</span><p>x</p></body></html>"
    );
    assert_eq!(
        run("h2.missing", page),
        "<html><head><title>t</title></head><body><h1 class=\"hero\">Hi</h1><p>x</p><p>why</p></body></html>"
    );
    // An element of <head> is never followed by the link (a selector that names no tag can still reach one).
    assert_eq!(
        run("*", page),
        "<html><head><title>t</title></head><body><h1 class=\"hero\">Hi</h1><p>x</p><p>why</p></body></html>"
    );
}
