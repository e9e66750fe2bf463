use std::collections::BTreeSet;
use std::path::Path;

use super::template::Context;
use super::*;
use crate::consent::policy::{Decision, Jurisdiction, Regime};
use crate::firmographics::company::Company;
use crate::firmographics::Geo;

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const ACME: &str = r#"
[account]
domain = "acme.example"
name = "Acme"
networks = ["127.0.10.0/24"]

[[personalization]]
id = "hero"
tier = "firmographic"
paths = ["/", "/pricing*"]

[[personalization.action]]
select = "h1"
set_text = "Built for {{ company.name }}"

[[personalization.action]]
select = "a.cta"
set_attribute = { name = "href", value = "/demo?account={{ account.domain }}" }
"#;

const SEGMENT: &str = r#"
[[personalization]]
id = "manufacturing"
tier = "firmographic"
when.industry = ["Manufacturing"]

[[personalization.action]]
select = "h1"
set_text = "For manufacturers"

[[personalization.action]]
select = "p.lead"
set_text = "Plants run better with us."
"#;

const REGION: &str = r#"
[[personalization]]
id = "dach"
tier = "anonymous"
when.country = ["DE", "AT", "CH"]

[[personalization.action]]
select = "p.lead"
set_text = "Jetzt auch in {{ geo.country }}."
"#;

fn decision(tiers: &[Tier]) -> Decision {
    Decision {
        jurisdiction: Jurisdiction {
            regime: Regime::OptOut,
            region: "US-CA".into(),
        },
        permitted: tiers.iter().copied().collect::<BTreeSet<_>>(),
        reasons: vec![],
        show_banner: false,
        consent_id: None,
        basis: "opt-out:not-withdrawn",
    }
}

fn set() -> (tempfile::TempDir, RuleSet) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "accounts/acme.example.toml", ACME);
    write(dir.path(), "segments/manufacturing.toml", SEGMENT);
    write(dir.path(), "regions/dach.toml", REGION);
    let rules = RuleSet::load(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
    (dir, rules)
}

fn acme() -> Company {
    Company {
        domain: Some("acme.example".into()),
        name: "Acme".into(),
        industry: Some("Manufacturing".into()),
        employees: Some("1000-4999".into()),
        account: true,
        ..Company::default()
    }
}

#[test]
fn precedence_conflicts_and_gating() {
    let (_dir, rules) = set();
    assert_eq!(rules.personalizations.len(), 3);
    assert_eq!(rules.personalizations[0].id, "acme.example/hero");
    // check reports the statically possible conflicts: h1 (account beats segment), p.lead (segment beats region).
    let c: Vec<(&str, &str, &str)> = rules
        .conflicts
        .iter()
        .map(|c| (c.selector.as_str(), c.winner.as_str(), c.loser.as_str()))
        .collect();
    assert_eq!(
        c,
        [
            ("h1", "acme.example/hero", "manufacturing/manufacturing"),
            ("p.lead", "manufacturing/manufacturing", "dach/dach")
        ]
    );

    let company = acme();
    let geo = Geo {
        country: Some("DE".into()),
        subdivision: None,
    };
    let all = decision(&[Tier::Anonymous, Tier::Firmographic]);
    let v = Visitor {
        path: "/pricing",
        query: None,
        referrer_host: None,
        cookies: vec![],
        geo: &geo,
        company: Some(&company),
        decision: &all,
        now: 1_790_000_000,
    };
    let plan = rules.plan(&v);
    let applied: Vec<(&str, &str)> = plan
        .actions
        .iter()
        .map(|(p, a)| (p.id.as_str(), a.selector.as_str()))
        .collect();
    assert_eq!(
        applied,
        [
            ("acme.example/hero", "h1"),
            ("acme.example/hero", "a.cta"),
            ("manufacturing/manufacturing", "p.lead")
        ]
    );
    assert!(
        matches!(plan.verdicts[2].1, Verdict::Overridden(_)),
        "{:?}",
        plan.verdicts
    );
    let ActionKind::SetAttribute { value, url, .. } = &plan.actions[1].1.kind else {
        panic!()
    };
    assert!(*url);
    assert_eq!(
        render(value, Context::Url, &v),
        "/demo?account=acme.example"
    );

    // Anonymous only: the company is not even known (no lookup); only the region rule applies.
    let anon = decision(&[Tier::Anonymous]);
    let v = Visitor {
        company: None,
        decision: &anon,
        ..v
    };
    let plan = rules.plan(&v);
    assert_eq!(plan.applied(), ["dach/dach"]);
    assert!(matches!(plan.verdicts[0].1, Verdict::NotPermitted(_)));
    let (_, a) = &plan.actions[0];
    let ActionKind::SetContent(Content::Text(t)) = &a.kind else {
        panic!()
    };
    assert_eq!(render(t, Context::Text, &v), "Jetzt auch in DE.");
}

#[test]
fn conditions() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "campaign.toml",
        r#"
[[personalization]]
id = "spring"
tier = "anonymous"
paths = ["/blog/*"]
when.utm_campaign = ["spring"]
when.referrer_host = ["linkedin.com"]
when.cookie = "seen"
when.from = "2026-01-01"
when.until = "2027-01-01"

[[personalization.action]]
select = "h1"
append = { text = " ({{ utm.campaign }})" }
"#,
    );
    let rules = RuleSet::load(dir.path()).unwrap();
    let geo = Geo::default();
    let anon = decision(&[Tier::Anonymous]);
    let base = Visitor {
        path: "/blog/post",
        query: Some("utm_campaign=spring&x=1"),
        referrer_host: Some("www.linkedin.com"),
        cookies: vec!["seen"],
        geo: &geo,
        company: None,
        decision: &anon,
        now: 1_790_000_000, // 2026-09
    };
    assert_eq!(rules.plan(&base).applied(), ["campaign/spring"]);
    let why = |v: &Visitor| match &rules.plan(v).verdicts[0].1 {
        Verdict::NotMatched(w) => w.clone(),
        other => panic!("{other:?}"),
    };
    assert!(why(&Visitor {
        path: "/blog/a/b",
        ..base_clone(&base)
    })
    .contains("path"));
    assert!(why(&Visitor {
        query: Some("utm_campaign=fall"),
        ..base_clone(&base)
    })
    .contains("utm_campaign"));
    assert!(why(&Visitor {
        referrer_host: Some("notlinkedin.com"),
        ..base_clone(&base)
    })
    .contains("referrer"));
    assert!(why(&Visitor {
        cookies: vec![],
        ..base_clone(&base)
    })
    .contains("cookie"));
    assert!(why(&Visitor {
        now: 1_900_000_000,
        ..base_clone(&base)
    })
    .contains("until"));
}

fn base_clone<'a>(v: &Visitor<'a>) -> Visitor<'a> {
    Visitor {
        path: v.path,
        query: v.query,
        referrer_host: v.referrer_host,
        cookies: v.cookies.clone(),
        geo: v.geo,
        company: v.company,
        decision: v.decision,
        now: v.now,
    }
}

#[test]
fn globs() {
    let m = |p: &str, s: &str| PathPattern(p.into()).matches(s);
    assert!(m("/", "/"));
    assert!(!m("/", "/a"));
    assert!(m("/pricing*", "/pricing"));
    assert!(m("/pricing*", "/pricing-2"));
    assert!(!m("/pricing*", "/pricing/x"));
    assert!(m("/blog/**", "/blog/a/b"));
    assert!(m("/**", "/anything/at/all"));
    assert!(m("/a/*/c", "/a/b/c"));
    assert!(!m("/a/*/c", "/a/b/x/c"));
}

#[test]
fn errors_name_file_line_column_and_what_is_wrong() {
    let cases: &[(&str, &str, &str)] = &[
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"Hi {{ company.name }}\"\n", "uses company.name (tier firmographic), but its tier is anonymous"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"Hi {{ compnay.name }}\"\n", "a.toml:6:12: unknown variable `compnay.name`"),
        // Issue 16, item 4: "did you mean" for variables and keys.
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"firmographic\"\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"Hi {{ compnay.name }}\"\n", "unknown variable `compnay.name` (did you mean `company.name`?)"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\npriorty = 3\n", "did you mean `priority`?"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"a\"\nadd_class = \"b\"\n", "this one has set_text and add_class"),
        // Regression (issue 13, item 10): errors in an action's values point at the key's line, not at the
        // [[personalization.action]] header.
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"a\"\nset_attribute = { name = \"href\", value = \"javascript:alert(1)\" }\n", "a.toml:6:42: `javascript:alert(1)` is not a safe URL"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"a\"\nbefore = { text = \"{{ nope }}\" }\n", "a.toml:6:19: unknown variable `nope`"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"a\"\nadd_class = \"two words\"\n", "a.toml:6:13: add_class"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"h1[\"\nset_text = \"Hi\"\n", "a.toml:5:10: selector `h1[`"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"everyone\"\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"Hi\"\n", "a.toml:3:8: tier `everyone`"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"a\"\nset_attribute = { name = \"href\", value = \"javascript:alert(1)\" }\n", "not a safe URL"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"a\"\nset_attribute = { name = \"onclick\", value = \"x()\" }\n", "can run script"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"a\"\nremove = true\n", "exactly one thing"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"h1\"\nset_html = \"../secret\"\n", "inside the rules folder"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\nwhen.industry = [\"Retail\"]\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"a\"\n", "tier must be firmographic"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\nwhen.colour = \"red\"\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"a\"\n", "a.toml:4:6: `colour` is not a key here (known keys: industry,"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n", "already used on line 2"),
        ("accounts/a.toml", "[account]\ndomain = \"a.example\"\nname = \"A\"\n[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"a\"\n", "its tier is firmographic"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\nwhen.from = \"tomorrow\"\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"a\"\n", "not a date"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"h1\"\ninject = \"feedback\"\n", "injects the feedback widget but has no [personalization.feedback] question"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"a\"\n[personalization.feedback]\nquestion = \"  \"\n", "a.toml:7:1: feedback.question must be one line of 1–200 characters"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"a\"\n[personalization.feedback]\nquestion = \"two\\nlines\"\n", "feedback.question must be one line"),
        ("segments/a.toml", "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"h1\"\ninject = \"survey\"\n", "not one of consent-banner, feedback, why-link"),
    ];
    for (rel, text, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), rel, text);
        let errors = RuleSet::load(dir.path()).expect_err(expected);
        let all = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains(expected), "expected `{expected}` in:\n{all}");
    }
}

/// Regression (issue 13, item 10): a file that is not UTF-8 was refused without saying where.
#[test]
fn a_file_that_is_not_utf8_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("accounts")).unwrap();
    std::fs::write(
        dir.path().join("accounts/a.toml"),
        b"[account]\ndomain = \"a.example\"\nname = \"M\xfcnchen AG\"\n",
    )
    .unwrap();
    let all = RuleSet::load(dir.path())
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        all.contains("a.toml:3:10: not UTF-8: byte 0xFC at line 3, column 10"),
        "{all}"
    );
}

#[test]
fn snippets_are_read_from_the_rules_folder() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "snippets/quote.html",
        "<blockquote>{{ geo.country }} &amp; more</blockquote>",
    );
    write(
        dir.path(),
        "default.toml",
        "[[personalization]]\nid = \"q\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"main\"\nappend = { html = \"snippets/quote.html\" }\n",
    );
    let rules = RuleSet::load(dir.path()).unwrap();
    let ActionKind::Insert(Position::Append, Content::Html(t)) =
        &rules.personalizations[0].actions[0].kind
    else {
        panic!()
    };
    let geo = Geo {
        country: Some("<b>".into()),
        subdivision: None,
    };
    let anon = decision(&[Tier::Anonymous]);
    let v = Visitor {
        path: "/",
        query: None,
        referrer_host: None,
        cookies: vec![],
        geo: &geo,
        company: None,
        decision: &anon,
        now: 0,
    };
    assert_eq!(
        render(t, Context::Html, &v),
        "<blockquote>&lt;b&gt; &amp; more</blockquote>"
    );
}

#[test]
fn the_shipped_rules_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let rules = RuleSet::load(&dir).unwrap_or_else(|e| panic!("{e:?}"));
    let ids: Vec<&str> = rules
        .personalizations
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "acme.example/home-hero",
            "globex.example/announcement",
            "initech.example/pricing",
            "logistics/subheadline",
            "dach/note"
        ],
        "the demo's rules, in precedence order"
    );
    assert!(rules.conflicts.is_empty(), "{:?}", rules.conflicts);
    assert_eq!(rules.version.len(), 16);
}

/// Issue 16, item 5: two accounts' rules on the same selector can never meet one visitor, so they are no
/// conflict; an account rule and a segment rule can, so they are.
#[test]
fn only_conflicts_that_can_happen_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "accounts/acme.example.toml", ACME);
    write(
        dir.path(),
        "accounts/globex.example.toml",
        &ACME
            .replace("acme.example", "globex.example")
            .replace("127.0.10.0/24", "127.0.11.0/24")
            .replace("\"Acme\"", "\"Globex\""),
    );
    let rules = RuleSet::load(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(rules.conflicts.is_empty(), "{:?}", rules.conflicts);
    write(dir.path(), "segments/manufacturing.toml", SEGMENT);
    let rules = RuleSet::load(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
    let c: Vec<(&str, &str)> = rules
        .conflicts
        .iter()
        .filter(|c| c.selector == "h1")
        .map(|c| (c.winner.as_str(), c.loser.as_str()))
        .collect();
    assert_eq!(c, [("acme.example/hero", "manufacturing/manufacturing")]);
}

/// Issue 16, item 4: a file with a mistake of every kind reports them all in one pass, in the file's order,
/// at the offending key's line, in plain words — not one per round of `check`.
#[test]
fn every_error_of_a_file_comes_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "segments/a.toml",
        "[[personalization]]\nid = \"hero\"\ntier = \"anonymus\"\npriority = \"high\"\npaths = [\"pricing\"]\n\
         [[personalization.action]]\nselect = \"h1..x\"\nset_text = \"Hi {{ utm.campain }}\"\n\
         [[personalization.action]]\nselect = \"p\"\nset_text = \"a\"\nremove = true\nadd_class = \"b\"\n\
         [[personalization.action]]\nselect = \"h2\"\nremov = true\n",
    );
    let errors = RuleSet::load(dir.path()).expect_err("errors");
    let said: Vec<String> = errors
        .iter()
        .map(|e| {
            let s = e.to_string();
            s[s.find("a.toml:").unwrap()..].to_string()
        })
        .collect();
    let expect = [
        "a.toml:3:8: tier `anonymus` is not one of anonymous, firmographic, personal; did you mean `anonymous`?",
        "a.toml:4:12: `priority` must be a whole number (e.g. 10), not the text \"high\"",
        "a.toml:5:10: path `pricing` must start with `/`",
        "a.toml:7:10: selector `h1..x`",
        "a.toml:8:12: unknown variable `utm.campain` (did you mean `utm.campaign`?)",
        "a.toml:13:13: an action does exactly one thing, this one has set_text and remove and add_class",
        "a.toml:16:1: `remov` is not a key here; did you mean `remove`?",
    ];
    assert!(said.len() >= expect.len(), "{said:#?}");
    for (got, want) in said.iter().zip(expect) {
        assert!(
            got.starts_with(want),
            "expected `{want}`, got `{got}`\nall: {said:#?}"
        );
    }
}
