//! Rule files (`[[personalization]]`, conditions, actions, templates, selectors): any text either loads or
//! fails with errors that each name the file; nothing panics. A loaded rule set plans for a visitor and the plan
//! renders without panicking.
#![no_main]

use std::collections::BTreeSet;
use std::path::Path;

use concierge::consent::policy::{Decision, Jurisdiction, Regime, Tier};
use concierge::firmographics::company::Company;
use concierge::firmographics::Geo;
use concierge::rules::{parse_file, Scale, Visitor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("rules/segments/fuzz.toml");
    match parse_file(file, text, Scale::Segment, Path::new("/nonexistent-rules-dir")) {
        Ok(ps) => {
            let geo = Geo { country: Some("DE".into()), subdivision: Some("BY".into()) };
            let company = Company { name: "A<b>\"c".into(), domain: Some("a.example".into()), ..Company::default() };
            let decision = Decision {
                jurisdiction: Jurisdiction { regime: Regime::OptOut, region: "DE".into() },
                permitted: BTreeSet::from([Tier::Anonymous, Tier::Firmographic, Tier::Personal]),
                reasons: vec![],
                show_banner: true,
                consent_id: None,
                basis: "opt-out:not-withdrawn",
            };
            let set = concierge::rules::RuleSet::from_personalizations(ps);
            let v = Visitor {
                path: "/a/b",
                query: Some("utm_campaign=x&ref=y"),
                referrer_host: Some("www.linkedin.com"),
                cookies: vec!["c"],
                geo: &geo,
                company: Some(&company),
                decision: &decision,
                now: 1_790_000_000,
            };
            let plan = set.plan(&v);
            let catalog = concierge::consent::texts::Catalog::default();
            let ops = concierge::rewrite::render_plan(
                &plan,
                &v,
                &concierge::rewrite::Page {
                    prefix: "/_concierge/",
                    banner: true,
                    why_link: true,
                    texts: catalog.by_tag("de"),
                    texts_version: catalog.version(),
                },
            );
            let mut rw = concierge::rewrite::Rewriter::new(ops, None, 1 << 20);
            let _ = rw.write(b"<html><head></head><body><h1 class=x>t</h1><a href=/>l</a></body></html>");
            let _ = rw.end();
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            assert!(errors.iter().all(|e| e.file == file));
        }
    }
});
