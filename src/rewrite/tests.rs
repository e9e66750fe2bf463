use super::*;
use crate::consent::policy::{Decision, Jurisdiction, Regime, Tier};
use crate::firmographics::company::Company;
use crate::firmographics::Geo;
use crate::rules::RuleSet;
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
    render_plan(&plan, &v, Some("/_concierge/"))
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
        out.contains("<script src=\"/_concierge/consent.js\" defer></script></head>"),
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
        out.starts_with("<html><body><h1 class=\"abm\">Welcome, Acme</h1>"),
        "rewritten up to the limit"
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
