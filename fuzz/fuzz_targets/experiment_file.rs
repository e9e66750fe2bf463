//! Experiment files (`rules/experiments/*.toml`) against a small rule set: any text either loads or fails with
//! errors that each name the file; nothing panics. A loaded experiment assigns and applies to a plan.
#![no_main]

use std::path::Path;

use concierge::experiments::{assign, parse_file};
use concierge::rules::{parse_file as parse_rules, RuleSet, Scale};
use libfuzzer_sys::fuzz_target;

const RULES: &str = "[account]\ndomain = \"acme.example\"\nname = \"Acme\"\nnetworks = [\"10.0.0.0/8\"]\n\n\
[[personalization]]\nid = \"home-hero\"\ntier = \"firmographic\"\npaths = [\"/\"]\n[[personalization.action]]\nselect = \"h1\"\nset_text = \"Hi\"\n\n\
[[personalization]]\nid = \"welcome\"\ntier = \"personal\"\npaths = [\"/\"]\n[[personalization.action]]\nselect = \"h2\"\nset_text = \"Back\"\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let rules_file = Path::new("rules/accounts/acme.example.toml");
    let ps = parse_rules(rules_file, RULES, Scale::Account, Path::new("/nonexistent")).expect("fixture rules");
    let rules = RuleSet::from_personalizations(ps);
    let file = Path::new("rules/experiments/fuzz.toml");
    match parse_file(file, text, &rules) {
        Ok(e) => {
            assert!(e.control > 0.0 && e.control < 1.0);
            assert!(!e.goals.is_empty() && !e.rules.is_empty());
            for key in ["acme.example", "", "ÄÖÜ.example"] {
                let b = assign::bucket(&e.salt, key);
                assert!((0.0..1.0).contains(&b));
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for err in errors {
                assert_eq!(err.file, file);
            }
        }
    }
});
