use std::path::Path;

use proptest::prelude::*;
use serde_json::Value;

use super::stats::{self, Moments};
use super::*;
use crate::rules::RuleSet;

// ------------------------------------------------------------------------------------------ statistics

fn reference() -> Value {
    serde_json::from_str(include_str!("../../tests/fixtures/stats/reference.json"))
        .expect("reference.json")
}

fn close(got: f64, want: f64, rel: f64, what: &str) {
    let tol = rel * want.abs().max(1e-12);
    assert!(
        (got - want).abs() <= tol.max(1e-14),
        "{what}: got {got:e}, SciPy says {want:e}"
    );
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn special_functions_agree_with_scipy() {
    let r = reference();
    for row in r["ln_gamma"].as_array().unwrap() {
        let v = nums(row);
        close(
            stats::ln_gamma(v[0]),
            v[1],
            1e-12,
            &format!("ln_gamma({})", v[0]),
        );
    }
    for row in r["beta_inc"].as_array().unwrap() {
        let v = nums(row);
        close(
            stats::beta_inc(v[0], v[1], v[2]),
            v[3],
            1e-10,
            &format!("beta_inc{v:?}"),
        );
    }
    for row in r["gamma_q"].as_array().unwrap() {
        let v = nums(row);
        close(
            stats::gamma_q(v[0], v[1]),
            v[2],
            1e-10,
            &format!("gamma_q{v:?}"),
        );
    }
    for row in r["t_two_sided_p"].as_array().unwrap() {
        let v = nums(row);
        close(
            stats::t_two_sided_p(v[0], v[1]),
            v[2],
            1e-9,
            &format!("t p{v:?}"),
        );
    }
    for row in r["chi2_sf"].as_array().unwrap() {
        let v = nums(row);
        close(
            stats::chi2_sf(v[0], v[1]),
            v[2],
            1e-9,
            &format!("chi2 sf{v:?}"),
        );
    }
    close(
        stats::Z_95,
        r["z"]["z_975"].as_f64().unwrap(),
        1e-12,
        "z 0.975",
    );
    close(
        stats::Z_80,
        r["z"]["z_80"].as_f64().unwrap(),
        1e-12,
        "z 0.8",
    );
}

#[test]
fn welch_srm_and_sample_size_agree_with_scipy() {
    let r = reference();
    for case in r["welch"].as_array().unwrap() {
        let c = Moments::of(&nums(&case["control"]));
        let t = Moments::of(&nums(&case["treatment"]));
        let (tt, df, p) = stats::welch(c, t).expect("defined");
        close(tt, case["t"].as_f64().unwrap(), 1e-10, "welch t");
        close(df, case["df"].as_f64().unwrap(), 1e-10, "welch df");
        close(p, case["p"].as_f64().unwrap(), 1e-8, "welch p");
    }
    for case in r["srm"].as_array().unwrap() {
        let p = stats::srm_p(&nums(&case["observed"]), &nums(&case["shares"]));
        close(p, case["p"].as_f64().unwrap(), 1e-9, "srm p");
    }
    for row in r["units_needed"].as_array().unwrap() {
        let v = nums(row);
        assert_eq!(
            stats::units_needed(v[0], v[1]),
            Some(v[2] as u64),
            "units needed for p={} mde={}",
            v[0],
            v[1]
        );
    }
}

/// One simulated account-randomized experiment: `n` accounts per arm, conversion probabilities `pc`/`pt`;
/// returns (Welch p, lift interval covers `true_lift`).
fn simulate(rng: &mut fastrand::Rng, n: usize, pc: f64, pt: f64) -> (Option<f64>, Option<bool>) {
    let arm = |rng: &mut fastrand::Rng, p: f64| -> Vec<f64> {
        (0..n)
            .map(|_| if rng.f64() < p { 1.0 } else { 0.0 })
            .collect()
    };
    let c = Moments::of(&arm(rng, pc));
    let t = Moments::of(&arm(rng, pt));
    let p = stats::welch(c, t).map(|w| w.2);
    let true_lift = pt / pc - 1.0;
    let covered = stats::relative_lift(c, t).map(|(_, lo, hi)| lo <= true_lift && true_lift <= hi);
    (p, covered)
}

#[test]
fn a_a_simulation_keeps_false_positives_near_five_percent() {
    // 4,000 A/A experiments of 150 accounts per arm converting at 20%: the share with p < 0.05 is 5% ± 3
    // standard errors of a binomial proportion at 4,000 draws (±1.0 point).
    let mut rng = fastrand::Rng::with_seed(15);
    let runs = 4000;
    let mut significant = 0;
    let mut covered = 0;
    let mut defined = 0;
    for _ in 0..runs {
        let (p, c) = simulate(&mut rng, 150, 0.2, 0.2);
        if p.is_some_and(|p| p < 0.05) {
            significant += 1;
        }
        if let Some(c) = c {
            defined += 1;
            covered += usize::from(c);
        }
    }
    let rate = significant as f64 / runs as f64;
    assert!(
        (0.04..=0.06).contains(&rate),
        "false-positive rate {rate:.4} is not within 1 point of 5%"
    );
    // The delta-method interval for the relative lift covers the true lift (0) about 95% of the time.
    let coverage = covered as f64 / defined as f64;
    assert!(
        (0.935..=0.965).contains(&coverage),
        "A/A coverage {coverage:.4}"
    );
}

#[test]
fn with_a_real_effect_the_interval_covers_it_and_the_test_finds_it() {
    let mut rng = fastrand::Rng::with_seed(16);
    let runs = 1000;
    let (mut covered, mut found) = (0, 0);
    for _ in 0..runs {
        let (p, c) = simulate(&mut rng, 400, 0.2, 0.26);
        covered += usize::from(c == Some(true));
        found += usize::from(p.is_some_and(|p| p < 0.05));
    }
    let coverage = covered as f64 / runs as f64;
    assert!((0.93..=0.97).contains(&coverage), "coverage {coverage:.3}");
    // The power for +30% on 20% with 400 accounts per arm is about 0.52 (normal approximation: the
    // difference 0.06 is 2.02 standard errors).
    let power = found as f64 / runs as f64;
    assert!((0.45..=0.59).contains(&power), "power {power:.3}");
}

#[test]
fn srm_simulation_flags_near_a_tenth_of_a_percent_on_a_fair_split_and_catches_a_skew() {
    let mut rng = fastrand::Rng::with_seed(17);
    let accounts = 2000;
    let runs = 20_000;
    let mut flagged = 0;
    for _ in 0..runs {
        let control = (0..accounts).filter(|_| rng.f64() < 0.5).count() as f64;
        if stats::srm_p(&[control, accounts as f64 - control], &[0.5, 0.5]) < 0.001 {
            flagged += 1;
        }
    }
    let rate = flagged as f64 / runs as f64;
    // Expected 0.1% (20 of 20,000); binomial ± 3 sd is about ± 0.07 points.
    assert!(rate <= 0.002, "fair split flagged {rate:.4} of the time");
    // A 45/55 split of 2,000 accounts is flagged.
    assert!(stats::srm_p(&[900.0, 1100.0], &[0.5, 0.5]) < 0.001);
    // Assigned at random with a 45% control share, the count itself varies (sd 22 accounts): the check flags
    // it whenever it lands more than 3.29 standard errors from 1,000, about 88% of the time.
    let mut caught = 0;
    for _ in 0..2000 {
        let control = (0..accounts).filter(|_| rng.f64() < 0.45).count() as f64;
        if stats::srm_p(&[control, accounts as f64 - control], &[0.5, 0.5]) < 0.001 {
            caught += 1;
        }
    }
    let power = caught as f64 / 2000.0;
    assert!(
        (0.85..=0.91).contains(&power),
        "a random 45/55 skew flagged {power:.3} of the time"
    );
}

// ------------------------------------------------------------------------------------------ assignment

#[test]
fn assignment_is_a_fixed_function_of_salt_and_account() {
    // Pinned: changing the hash would reassign every running experiment's accounts.
    let b = assign::bucket("q1-hero", "acme.example");
    assert_eq!(
        b,
        assign::bucket("q1-hero", "ACME.example"),
        "domains are case-insensitive"
    );
    assert_eq!(format!("{b:.12}"), "0.042657089808");
    assert_ne!(
        b,
        assign::bucket("q2-hero", "acme.example"),
        "a new salt reshuffles"
    );
    assert!((0.0..1.0).contains(&b));
}

#[test]
fn changing_the_control_share_moves_only_the_accounts_between_the_old_and_new_share() {
    let mut moved = 0;
    for i in 0..5000 {
        let key = format!("account-{i}.example");
        let b = assign::bucket("exp", &key);
        let before = assign::arm(b, 0.5);
        let after = assign::arm(b, 0.3);
        if before != after {
            moved += 1;
            assert_eq!(before, Arm::Control);
            assert!((0.3..0.5).contains(&b));
        }
    }
    // About 20% of accounts move.
    assert!((800..1200).contains(&moved), "{moved}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn assignment_is_balanced(salt in "[a-z0-9-]{1,16}", control in 0.05f64..0.95) {
        let n = 10_000;
        let held = (0..n)
            .filter(|i| assign::arm(assign::bucket(&salt, &format!("a{i}.example")), control) == Arm::Control)
            .count() as f64;
        // ± 6 standard errors of a binomial share at 10,000 accounts (at most ± 3 points): a fair hash falls
        // outside it with p ≈ 2·10⁻⁹ per case, so 64 random cases a run do not fail by chance (the bound was 4
        // standard errors, p ≈ 6·10⁻⁵ per case, ~0.4 % a run — and a run failed on it); a biased split of
        // more than 3 points is still caught.
        let sd = (control * (1.0 - control) / n as f64).sqrt();
        prop_assert!((held / n as f64 - control).abs() <= 6.0 * sd, "{held} of {n} at {control}");
    }
}

// ------------------------------------------------------------------------------------------ files

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const ACME: &str = r#"
[account]
domain = "acme.example"
name = "Acme"
networks = ["10.20.0.0/16"]

[[personalization]]
id = "home-hero"
tier = "firmographic"
paths = ["/"]
[[personalization.action]]
select = "h1"
set_text = "Hello Acme"
"#;

const GLOBEX: &str = r#"
[account]
domain = "globex.example"
name = "Globex"
networks = ["10.30.0.0/16"]

[[personalization]]
id = "home-hero"
tier = "firmographic"
paths = ["/"]
[[personalization.action]]
select = "h1"
set_text = "Hello Globex"

[[personalization]]
id = "pricing"
tier = "firmographic"
paths = ["/pricing"]
[[personalization.action]]
select = "h1"
set_text = "Globex pricing"
"#;

const EXPERIMENT: &str = r#"
[experiment]
id = "q1-hero"
hypothesis = "Account headlines raise demo requests"
rules = ["*/home-hero"]
control = 0.5

[[experiment.goal]]
id = "demo-request"
path = "/demo-request*"
method = "POST"
"#;

fn fixture(experiment: &str) -> (tempfile::TempDir, RuleSet) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "accounts/acme.example.toml", ACME);
    write(dir.path(), "accounts/globex.example.toml", GLOBEX);
    write(dir.path(), "experiments/q1.toml", experiment);
    let rules = RuleSet::load(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
    (dir, rules)
}

#[test]
fn an_experiment_file_loads_with_its_rules_resolved() {
    let (dir, rules) = fixture(EXPERIMENT);
    let set = load(dir.path(), &rules).unwrap_or_else(|e| panic!("{e:?}"));
    let e = &set.experiments[0];
    assert_eq!(e.id, "q1-hero");
    assert_eq!(e.salt, "q1-hero", "the salt defaults to the id");
    assert_eq!(
        e.rules,
        ["acme.example/home-hero", "globex.example/home-hero"]
    );
    assert!(e.goals[0].matches(&http::Method::POST, "/demo-request-sent"));
    assert!(!e.goals[0].matches(&http::Method::GET, "/demo-request"));
}

#[test]
fn every_error_of_a_file_comes_in_one_pass_with_its_line() {
    let broken = r#"
[experiment]
id = "q1 hero"
rules = ["*/home-hreo", "*/nothing-like-it"]
control = 1.5
unit = "acount"
start = "2027-13-01"

[[experiment.goal]]
id = "demo"
path = "demo-request"
method = "FETCH"
"#;
    let (dir, rules) = fixture(broken);
    let errors: Vec<String> = load(dir.path(), &rules)
        .expect_err("broken")
        .iter()
        .map(ToString::to_string)
        .collect();
    let all = errors.join("\n");
    for want in [
        ":3:", // id
        "must be 1–64 letters",
        ":4:", // rules
        "did you mean `*/home-hero`",
        "`*/nothing-like-it` names no rule",
        ":5:",
        "control = 1.5 must be between 0 and 1",
        "did you mean `account`",
        "\"2027-13-01\" is not a day",
        "path `demo-request` must start with `/`",
        "method `FETCH` is not one of",
    ] {
        assert!(all.contains(want), "missing {want:?} in:\n{all}");
    }
    assert!(errors.len() >= 7, "{all}");
}

#[test]
fn unknown_keys_get_a_did_you_mean() {
    let (dir, rules) = fixture(&EXPERIMENT.replace("control = 0.5", "contrl = 0.5"));
    let all = format!("{:?}", load(dir.path(), &rules).expect_err("typo"));
    assert!(all.contains("did you mean `control`"), "{all}");
}

#[test]
fn a_rule_in_two_experiments_is_refused() {
    let (dir, rules) = fixture(EXPERIMENT);
    write(
        dir.path(),
        "experiments/q2.toml",
        &EXPERIMENT
            .replace("q1-hero", "q2-hero")
            .replace("*/home-hero", "globex.example/*"),
    );
    let all = format!("{:?}", load(dir.path(), &rules).expect_err("overlap"));
    assert!(
        all.contains(
            "rule globex.example/home-hero is governed by experiments q1-hero and q2-hero"
        ),
        "{all}"
    );
}

// ------------------------------------------------------------------------------------------ applying

fn plan_for<'r>(rules: &'r RuleSet, domain: &str) -> crate::rules::Plan<'r> {
    use crate::consent::policy::{Decision, Jurisdiction, Regime, Tier};
    let company = crate::firmographics::company::Company {
        name: domain.into(),
        domain: Some(domain.into()),
        account: true,
        ..Default::default()
    };
    let geo = crate::firmographics::Geo::default();
    let decision = Decision {
        jurisdiction: Jurisdiction {
            regime: Regime::OptOut,
            region: "US-CA".into(),
        },
        permitted: [Tier::Anonymous, Tier::Firmographic].into_iter().collect(),
        reasons: vec![],
        show_banner: false,
        consent_id: None,
        basis: "test",
    };
    let v = crate::rules::Visitor {
        path: "/",
        query: None,
        referrer_host: None,
        cookies: vec![],
        geo: &geo,
        company: Some(&company),
        decision: &decision,
        now: 1_800_000_000,
    };
    let plan = rules.plan(&v);
    // The plan borrows only the rule set; the visitor's parts may go.
    plan
}

/// An account in each arm of `e` (found by trying domains).
fn accounts_in_arms(e: &Experiment) -> (String, String) {
    let mut control = None;
    let mut treatment = None;
    for i in 0..100 {
        let d = format!("a{i}.example");
        match assign::arm(assign::bucket(&e.salt, &d), e.control) {
            Arm::Control => control = control.or(Some(d)),
            Arm::Treatment => treatment = treatment.or(Some(d)),
        }
    }
    (control.unwrap(), treatment.unwrap())
}

#[test]
fn the_control_arm_gets_the_origin_page_for_governed_rules_and_both_arms_are_exposed() {
    let (dir, rules) = fixture(EXPERIMENT);
    let set = load(dir.path(), &rules).unwrap();
    let settings = ExperimentSettings::default();
    let e = &set.experiments[0];
    let arm_of = |d: &str| assign::arm(assign::bucket(&e.salt, d), e.control);
    for domain in ["acme.example", "globex.example"] {
        let mut plan = plan_for(&rules, domain);
        assert_eq!(plan.applied().len(), 1, "{domain}: its home-hero applies");
        let applied = set.apply(
            &mut plan,
            Some(domain),
            None,
            None,
            &settings,
            1_800_000_000,
        );
        assert_eq!(applied.assignments.len(), 1);
        let a = &applied.assignments[0];
        assert_eq!(a.arm, arm_of(domain));
        assert_eq!(a.rules, [format!("{domain}/home-hero")]);
        match a.arm {
            Arm::Control => {
                assert!(
                    plan.actions.is_empty(),
                    "control: the governed rule's changes are gone"
                );
                assert!(plan
                    .verdicts
                    .iter()
                    .any(|(_, v)| matches!(v, crate::rules::Verdict::HeldOut(w) if w.contains("control group"))));
            }
            Arm::Treatment => assert_eq!(plan.actions.len(), 1),
        }
    }
    // Excluded traffic (a bot, the office network) is neither assigned nor changed.
    let mut plan = plan_for(&rules, "acme.example");
    let applied = set.apply(
        &mut plan,
        Some("acme.example"),
        None,
        Some("bot"),
        &settings,
        1_800_000_000,
    );
    assert!(applied.assignments.is_empty());
    assert_eq!(applied.excluded, Some("bot"));
    assert_eq!(plan.actions.len(), 1);
}

#[test]
fn outside_its_window_an_experiment_changes_nothing() {
    let (dir, rules) = fixture(&EXPERIMENT.replace(
        "control = 0.5",
        "control = 0.5\nstart = \"2027-01-10\"\nend = \"2027-03-01\"",
    ));
    let set = load(dir.path(), &rules).unwrap();
    let e = &set.experiments[0];
    let (control, _) = accounts_in_arms(e);
    let before = 1_790_000_000; // 2026-09
    let during = 1_800_000_000; // 2027-01-15
    assert!(!e.running(before) && e.running(during));
    let mut plan = plan_for(&rules, "acme.example");
    let n = plan.actions.len();
    let applied = set.apply(
        &mut plan,
        Some(&control),
        None,
        None,
        &ExperimentSettings::default(),
        before,
    );
    assert!(applied.assignments.is_empty());
    assert_eq!(plan.actions.len(), n);
}

#[test]
fn the_global_holdout_takes_every_rule_from_its_accounts() {
    let (dir, rules) = fixture(EXPERIMENT);
    let set = load(dir.path(), &rules).unwrap();
    let settings = ExperimentSettings {
        global_holdout: 0.5,
        ..ExperimentSettings::default()
    };
    let mut held = 0;
    for i in 0..200 {
        let d = format!("a{i}.example");
        let mut plan = plan_for(&rules, "globex.example");
        let applied = set.apply(&mut plan, Some(&d), None, None, &settings, 1_800_000_000);
        let h = applied
            .assignments
            .iter()
            .find(|a| a.experiment == GLOBAL_HOLDOUT)
            .expect("the holdout assignment");
        if h.arm == Arm::Control {
            held += 1;
            assert!(plan.actions.is_empty());
        }
    }
    assert!((70..130).contains(&held), "{held}");
}

#[test]
fn bots_and_internal_networks_are_recognised() {
    let s = ExperimentSettings {
        exclude_networks: vec!["192.0.2.0/24".parse().unwrap()],
        ..ExperimentSettings::default()
    };
    let ip = |t: &str| t.parse::<std::net::IpAddr>().unwrap();
    assert_eq!(s.excluded(ip("192.0.2.9"), None), Some("excluded_network"));
    assert_eq!(
        s.excluded(
            ip("198.51.100.1"),
            Some(b"Mozilla/5.0 (compatible; Googlebot/2.1)")
        ),
        Some("bot")
    );
    assert_eq!(
        s.excluded(
            ip("198.51.100.1"),
            Some(b"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Safari/605.1.15")
        ),
        None
    );
    assert_eq!(s.excluded(ip("198.51.100.1"), None), None);
}

#[test]
fn a_visitor_experiment_governs_personal_rules_only() {
    let (dir, rules) =
        fixture(&EXPERIMENT.replace("control = 0.5", "control = 0.5\nunit = \"visitor\""));
    let all = format!(
        "{:?}",
        load(dir.path(), &rules).expect_err("firmographic rules")
    );
    assert!(all.contains("governs personal rules only"), "{all}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    /// Any text: an experiment or errors that each name the file; never a panic.
    #[test]
    fn any_text_loads_or_fails_with_named_errors(text in "(\\[experiment\\]\n|\\[\\[experiment\\.goal\\]\\]\n|id = \"[a-z-]{0,8}\"\n|control = -?[0-9]\\.[0-9]{1,3}\n|rules = \\[\"[*a-z./-]{0,24}\"\\]\n|path = \"/?[a-z*-]{0,10}\"\n|method = \"[A-Z]{0,6}\"\n|unit = \"[a-z]{0,8}\"\n|start = \"[0-9-]{0,12}\"\n|[a-z]{1,6} = [0-9]\n|\u{0}|\\]|=)*") {
        let (_dir, rules) = fixture(EXPERIMENT);
        let file = Path::new("rules/experiments/p.toml");
        match parse_file(file, &text, &rules) {
            Ok(e) => {
                prop_assert!(e.control > 0.0 && e.control < 1.0);
                prop_assert!(!e.goals.is_empty() && !e.rules.is_empty());
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for err in errors {
                    prop_assert_eq!(err.file.as_path(), file);
                }
            }
        }
    }

    /// A well-formed file loads with exactly what it says.
    #[test]
    fn a_well_formed_file_loads_as_written(
        id in "[a-z][a-z0-9-]{0,20}",
        control in 0.001f64..0.999,
        goal in "[a-z][a-z-]{0,12}",
        method in proptest::sample::select(vec!["GET", "POST", "put"]),
    ) {
        let (_dir, rules) = fixture(EXPERIMENT);
        let text = format!(
            "[experiment]\nid = \"{id}\"\nrules = [\"*/home-hero\"]\ncontrol = {control}\n\n[[experiment.goal]]\nid = \"{goal}\"\npath = \"/{goal}*\"\nmethod = \"{method}\"\n"
        );
        let e = parse_file(Path::new("x.toml"), &text, &rules).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(&e.id, &id);
        prop_assert_eq!(&e.salt, &id);
        prop_assert_eq!(e.control, control);
        prop_assert_eq!(e.goals[0].method.as_ref().map(|m| m.as_str().to_string()), Some(method.to_uppercase()));
    }
}

// ------------------------------------------------------------------------------- report: order and parts

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The report over records read in parts on several threads and merged, or in any order, is the report
    /// over them read in one go — ties in time (two exposures of an account at once in both arms, two control
    /// shares at once) included.
    #[test]
    fn the_report_does_not_depend_on_order_or_on_reading_in_parts(
        records in proptest::collection::vec(
            (0u8..3, 0u8..4, 0u8..3, any::<bool>(), 0u8..4, 0u8..3, any::<bool>()),
            0..60,
        ),
        parts in proptest::collection::vec(0u8..3, 60),
    ) {
        use report::{Builder, Floors};
        let lines: Vec<String> = records
            .iter()
            .map(|&(kind, acct, minute, treat, share, exp, visitor)| {
                let kind = ["exposure", "conversion", "decision"][kind as usize];
                let arm = if treat { "treatment" } else { "control" };
                let unit = if visitor {
                    format!(r#""unit":"visitor","visitor":"v{acct}""#)
                } else {
                    format!(r#""account":"a{acct}""#)
                };
                format!(
                    r#"{{"type":"{kind}","time":"2027-01-0{}T10:00:00.000Z","experiment":"e{exp}","arm":"{arm}",{unit},"goal":"g{}","control":{}}}"#,
                    1 + minute,
                    acct % 2,
                    [0.5, 0.3, 0.25, 0.1][share as usize],
                )
            })
            .collect();
        let json = |b: Builder| serde_json::to_string(&b.finish(Floors::default())).unwrap_or_default();
        let mut whole = Builder::new(Default::default());
        for l in &lines {
            whole.add_line(l.as_bytes());
        }
        let mut reversed = Builder::new(Default::default());
        for l in lines.iter().rev() {
            reversed.add_line(l.as_bytes());
        }
        let mut split = [whole.empty_like(), whole.empty_like(), whole.empty_like()];
        for (l, p) in lines.iter().zip(&parts) {
            split[*p as usize].add_line(l.as_bytes());
        }
        let [mut a, b, c] = split;
        a.merge(c);
        a.merge(b);
        let whole = json(whole);
        prop_assert_eq!(&json(reversed), &whole);
        prop_assert_eq!(&json(a), &whole);
    }
}
