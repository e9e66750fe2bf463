//! Streaming rewrite throughput (issue 5): the demo home page padded to ~10 KB, ~100 KB and ~1 MB, five actions
//! (set text, set attribute, add class, insert after, remove), fed in 16 KiB chunks as an origin would; identity
//! output and gzip output (the rewritten page compressed for the client). Plan rendering per request included.
//!
//! Two rule sets with the same five actions: `ids` selects by id (`#hero-headline`: each names one element, so
//! the rewriter stops parsing once all five are done and the rest of the page streams through), `classes`
//! selects by tag and class (`h1`, `a.btn-primary`: any number of elements, so the whole page is parsed).
//! Run with `cargo bench --bench rewrite`; results in BENCHMARKS.md.

use std::collections::BTreeSet;
use std::hint::black_box;

use concierge::consent::policy::{Decision, Jurisdiction, Regime, Tier};
use concierge::firmographics::company::Company;
use concierge::firmographics::Geo;
use concierge::rewrite::codec::{Coding, Encoder};
use concierge::rewrite::{render_plan, Rewriter};
use concierge::rules::{RuleSet, Visitor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const RULES: &str = r##"
[account]
domain = "acme.example"
name = "Acme"

[[personalization]]
id = "five"
tier = "firmographic"

[[personalization.action]]
select = "#hero-headline"
set_text = "{{ company.name }}: see every dollar before it leaves the plant."

[[personalization.action]]
select = "#cta-primary"
set_attribute = { name = "href", value = "/demo-request.html?account={{ account.domain }}" }

[[personalization.action]]
select = "#cta-primary"
add_class = "abm"

[[personalization.action]]
select = "#hero-subheadline"
after = { text = "Built for {{ company.name }}." }

[[personalization.action]]
select = "#announcement"
remove = true
"##;

/// The same five actions with selectors that may match several elements.
fn classes(rules: &str) -> String {
    rules
        .replace("#hero-headline", "h1")
        .replace("#cta-primary", "a.btn-primary")
        .replace("#hero-subheadline", "p.lead")
        .replace("#announcement", "div.announcement")
}

fn page(target: usize) -> Vec<u8> {
    let base = include_str!("../examples/site/index.html");
    let (head, tail) = base.split_at(base.rfind("</main>").unwrap_or(base.len()));
    let mut s = String::from(head);
    let filler = "<section class=\"features\"><h2>Approvals that keep up</h2><p>Route every request to the right \
                  approver with rules your controllers write once — ünïcode ✓ — and see the audit trail.</p>\
                  <ul><li><a href=\"/pricing.html\">Pricing</a></li><li>Cards</li><li>AP inbox</li></ul></section>\n";
    while s.len() + tail.len() < target {
        s.push_str(filler);
    }
    s.push_str(tail);
    s.into_bytes()
}

fn bench(c: &mut Criterion) {
    let load = |text: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("accounts")).expect("mkdir");
        std::fs::write(dir.path().join("accounts/acme.example.toml"), text).expect("write");
        RuleSet::load(dir.path()).expect("rules")
    };
    let sets = [("ids", load(RULES)), ("classes", load(&classes(RULES)))];
    let company = Company {
        domain: Some("acme.example".into()),
        name: "Acme Manufacturing".into(),
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
    let visitor = Visitor {
        path: "/",
        query: None,
        referrer_host: None,
        cookies: vec![],
        geo: &geo,
        company: Some(&company),
        decision: &decision,
        now: 0,
    };
    let mut g = c.benchmark_group("rewrite");
    for (name, size) in [
        ("10KB", 10 * 1024),
        ("100KB", 100 * 1024),
        ("1MB", 1024 * 1024),
    ] {
        let body = page(size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        for (selectors, rules) in &sets {
            for gzip in [false, true] {
                let label = format!(
                    "{name}/{selectors}/{}",
                    if gzip { "gzip" } else { "identity" }
                );
                let catalog = concierge::consent::texts::Catalog::default();
                g.bench_function(label, |b| {
                    b.iter(|| {
                        let plan = rules.plan(&visitor);
                        let ops = render_plan(
                            &plan,
                            &visitor,
                            &concierge::rewrite::Page {
                                prefix: "/_concierge/",
                                banner: false,
                                why_link: false,
                                texts: catalog.by_tag("en"),
                                texts_version: catalog.version(),
                            },
                        );
                        let mut rw = Rewriter::new(ops, None, 1 << 20);
                        let mut enc = gzip.then(|| Encoder::new(Coding::Gzip).expect("encoder"));
                        let mut n = 0;
                        for chunk in body.chunks(16 * 1024) {
                            let (out, _) = rw.write(chunk);
                            n += match enc.as_mut() {
                                Some(e) => e.write(&out).expect("gzip").len(),
                                None => out.len(),
                            };
                        }
                        let (out, _) = rw.end();
                        n += match enc.as_mut() {
                            Some(e) => {
                                e.write(&out).expect("gzip").len() + e.finish().expect("gzip").len()
                            }
                            None => out.len(),
                        };
                        black_box(n)
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
