//! Experiments: which rules are compared against the origin's page, for which accounts, and against which goals.
//!
//! An experiment file (`rules/experiments/*.toml`, loaded and swapped with the rules in one generation of
//! [`crate::sources::Sources`]) governs some rules. Every account (the unit: the visitor's company domain, no
//! visitor identifier) is assigned an arm by a hash of (salt, domain) — the same on every instance, after every
//! restart, stored nowhere ([`assign`]). The control arm gets the origin's page for the governed rules; both
//! arms are recorded as *exposures* where a governed rule would have applied, and requests that match a goal as
//! *conversions* ([`records`]); [`report`] turns the records into per-account results with the statistics of
//! [`stats`].
//!
//! Runtime-free: the pipeline applies an experiment to a plan ([`ExperimentSet::apply`]) as a plain function.
//!
//! Invariants: the arm is a pure function of (salt, unit key, control share); a bot or an excluded network is
//! never assigned and never counted; a conversion is only recorded where the Decision permitted the company
//! lookup that names the account.

pub mod assign;
pub mod html;
mod load;
pub mod records;
pub mod report;
pub mod stats;

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::rules::{PathPattern, Plan, Verdict};

pub use load::{load, parse as parse_file, watched_files, MAX_EXPERIMENT_BYTES};

/// Which side of the comparison a unit is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    Control,
    Treatment,
}

impl Arm {
    pub fn name(self) -> &'static str {
        match self {
            Arm::Control => "control",
            Arm::Treatment => "treatment",
        }
    }
}

/// What is randomized.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// The visitor's company (its domain is the assignment key).
    #[default]
    Account,
    /// One browser, by a random id in a first-party cookie set only where the Decision permits the personal
    /// tier (so only for rules of that tier).
    Visitor,
}

/// The visitor-id cookie of `unit = "visitor"` experiments (`__Host-` prefixed over HTTPS).
pub const VISITOR_COOKIE: &str = "concierge_vid";

/// The visitor-id cookie's name for a request over HTTPS (`secure`) or not.
pub fn visitor_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-concierge_vid"
    } else {
        VISITOR_COOKIE
    }
}

/// A visitor id as this proxy mints them: 32 lowercase hex digits.
pub fn valid_visitor_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A request that counts as a success.
#[derive(Debug, Clone)]
pub struct Goal {
    pub id: String,
    pub path: PathPattern,
    /// Any method when `None`.
    pub method: Option<http::Method>,
}

impl Goal {
    pub fn matches(&self, method: &http::Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && self.path.matches(path)
    }
}

/// One validated experiment.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub id: String,
    pub hypothesis: Option<String>,
    /// The `rules` patterns as written.
    pub patterns: Vec<String>,
    /// The rule ids the patterns name (in the rule set this experiment was loaded with).
    pub rules: Vec<String>,
    /// Share of units held out, 0 < control < 1.
    pub control: f64,
    pub unit: Unit,
    /// Unix seconds, inclusive; none: from the start.
    pub start: Option<u64>,
    /// Unix seconds, exclusive; none: open-ended.
    pub end: Option<u64>,
    pub salt: String,
    pub goals: Vec<Goal>,
    pub file: PathBuf,
}

impl Experiment {
    /// Whether the experiment runs at `now` (Unix seconds).
    pub fn running(&self, now: u64) -> bool {
        self.start.is_none_or(|s| now >= s) && self.end.is_none_or(|e| now < e)
    }

    pub fn governs(&self, rule: &str) -> bool {
        self.rules.iter().any(|r| r == rule)
    }
}

/// Every experiment of one generation.
#[derive(Debug, Clone, Default)]
pub struct ExperimentSet {
    pub experiments: Vec<Experiment>,
}

/// What `[experiments]` in the configuration says.
#[derive(Debug, Clone)]
pub struct ExperimentSettings {
    /// Share of accounts that never get any personalization (0 = none), for cumulative impact.
    pub global_holdout: f64,
    /// Internal traffic: never assigned, never counted (it sees what the rules give).
    pub exclude_networks: Vec<ipnetwork::IpNetwork>,
    /// User-agent substrings (case-insensitive) of bots: never assigned, never counted.
    pub bots: Vec<String>,
    /// No verdict below this many accounts in either arm.
    pub min_accounts: u64,
    /// No verdict below this many exposures in all.
    pub min_exposures: u64,
}

/// Crawlers, link previews and monitors that announce themselves; matched case-insensitively as substrings.
pub const DEFAULT_BOTS: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "slurp",
    "mediapartners",
    "facebookexternalhit",
    "embedly",
    "preview",
    "pingdom",
    "uptime",
    "monitor",
    "lighthouse",
    "headlesschrome",
    "phantomjs",
    "python-requests",
    "go-http-client",
    "curl/",
    "wget/",
];

impl Default for ExperimentSettings {
    fn default() -> ExperimentSettings {
        ExperimentSettings {
            global_holdout: 0.0,
            exclude_networks: Vec::new(),
            bots: DEFAULT_BOTS.iter().map(|s| s.to_string()).collect(),
            min_accounts: 8,
            min_exposures: 100,
        }
    }
}

impl ExperimentSettings {
    /// Why this request takes no part in experiments, if it does not: `bot` or `excluded_network`.
    pub fn excluded(&self, client: IpAddr, user_agent: Option<&[u8]>) -> Option<&'static str> {
        if self.exclude_networks.iter().any(|n| n.contains(client)) {
            return Some("excluded_network");
        }
        let ua = user_agent?;
        let is_bot = self.bots.iter().any(|b| {
            let b = b.as_bytes();
            !b.is_empty() && ua.windows(b.len()).any(|w| w.eq_ignore_ascii_case(b))
        });
        is_bot.then_some("bot")
    }
}

/// The name the global holdout's exposures and conversions are recorded under.
pub const GLOBAL_HOLDOUT: &str = "global-holdout";
/// The salt of the global holdout's assignment (fixed, so every instance agrees).
const GLOBAL_HOLDOUT_SALT: &str = "concierge/global-holdout";

/// One experiment's part in a page: the arm and the governed rules that would have applied.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Assignment {
    pub experiment: String,
    pub arm: Arm,
    pub unit: Unit,
    /// The unit's key (the account's domain, or the visitor id).
    pub key: String,
    /// The share held out when it was assigned (recorded, so the report checks the split it was run with).
    pub control: f64,
    /// The governed rules that matched this visitor (and so would have applied).
    pub rules: Vec<String>,
}

impl Assignment {
    /// In plain words (built on demand: `explain` and the verdicts of held-out rules need it, a page does not).
    pub fn why(&self) -> String {
        let who = match self.unit {
            Unit::Account => self.key.as_str(),
            Unit::Visitor => "this browser",
        };
        let unit = self.unit.name();
        match (self.experiment.as_str(), self.arm) {
            (GLOBAL_HOLDOUT, Arm::Control) => format!(
                "{who} is in the global holdout ({:.0}% of accounts never get personalization, to measure its overall effect)",
                self.control * 100.0
            ),
            (GLOBAL_HOLDOUT, Arm::Treatment) => format!("{who} is not in the global holdout"),
            (id, Arm::Control) => format!(
                "{who} is in the control group of experiment {id} ({:.0}% of {unit}s, by a hash of the {unit}): the standard page, for comparison",
                self.control * 100.0
            ),
            (id, Arm::Treatment) => format!(
                "{who} is in the treatment group of experiment {id} ({:.0}% of {unit}s)",
                (1.0 - self.control) * 100.0
            ),
        }
    }
}

/// What the experiments did to one page's plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    pub assignments: Vec<Assignment>,
    /// Why the visitor takes no part (`bot`, `excluded_network`), when a governed rule matched.
    pub excluded: Option<&'static str>,
}

/// An assignment as `explain --json` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explained {
    #[serde(flatten)]
    pub assignment: Assignment,
    pub why: String,
}

/// `Applied` as `explain --json` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AppliedExplained {
    pub assignments: Vec<Explained>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded: Option<&'static str>,
}

impl Applied {
    pub fn explained(&self) -> AppliedExplained {
        AppliedExplained {
            assignments: self
                .assignments
                .iter()
                .map(|a| Explained {
                    assignment: a.clone(),
                    why: a.why(),
                })
                .collect(),
            excluded: self.excluded,
        }
    }
}

impl ExperimentSet {
    pub fn is_empty(&self) -> bool {
        self.experiments.is_empty()
    }

    /// Whether a running experiment is randomized by visitor (the proxy then keeps a visitor id where the
    /// Decision permits the personal tier).
    pub fn needs_visitor(&self, now: u64) -> bool {
        self.experiments
            .iter()
            .any(|e| e.unit == Unit::Visitor && e.running(now))
    }

    /// Whether any running experiment has a goal `method path` meets (cheap; checked on every request when
    /// experiments are configured).
    pub fn any_goal(&self, method: &http::Method, path: &str, now: u64) -> bool {
        self.experiments
            .iter()
            .any(|e| e.running(now) && e.goals.iter().any(|g| g.matches(method, path)))
    }

    /// Apply the running experiments (and the global holdout) to `plan`, made for a visitor from `account`
    /// (`None`: no company known) with visitor id `visitor` (`None`: none, or the Decision does not permit the
    /// personal tier). Control units lose the governed rules' actions (their verdict says why);
    /// held-out accounts lose every rule's. `excluded`: why the request takes no part (bot, internal network).
    pub fn apply<'r>(
        &self,
        plan: &mut Plan<'r>,
        account: Option<&str>,
        visitor: Option<&str>,
        excluded: Option<&'static str>,
        settings: &ExperimentSettings,
        now: u64,
    ) -> Applied {
        let mut out = Applied::default();
        let applied: Vec<&'r str> = plan
            .verdicts
            .iter()
            .filter(|(_, v)| *v == Verdict::Applied)
            .map(|(p, _)| p.id.as_str())
            .collect();
        if applied.is_empty() {
            return out;
        }
        // Rules held out, with the index of the assignment that says why.
        let mut held_out: Vec<(&'r str, usize)> = Vec::new();
        for e in self.experiments.iter().filter(|e| e.running(now)) {
            let rules: Vec<String> = applied
                .iter()
                .filter(|r| e.governs(r))
                .map(|r| r.to_string())
                .collect();
            if rules.is_empty() {
                continue;
            }
            if excluded.is_some() {
                out.excluded = excluded;
                continue;
            }
            // A governed rule is firmographic or personal (checked at load), so a company is known here; a
            // company without a domain (or a visitor without an id) has no unit key and takes no part.
            let key = match e.unit {
                Unit::Account => account,
                Unit::Visitor => visitor,
            };
            let Some(key) = key else { continue };
            let arm = assign::arm(assign::bucket(&e.salt, key), e.control);
            if arm == Arm::Control {
                let i = out.assignments.len();
                held_out.extend(applied.iter().filter(|r| e.governs(r)).map(|r| (*r, i)));
            }
            out.assignments.push(Assignment {
                experiment: e.id.clone(),
                arm,
                unit: e.unit,
                key: key.to_string(),
                control: e.control,
                rules,
            });
        }
        if settings.global_holdout > 0.0 && excluded.is_none() {
            if let Some(key) = account {
                let arm = assign::arm(
                    assign::bucket(GLOBAL_HOLDOUT_SALT, key),
                    settings.global_holdout,
                );
                if arm == Arm::Control {
                    let i = out.assignments.len();
                    held_out.extend(applied.iter().map(|r| (*r, i)));
                }
                out.assignments.push(Assignment {
                    experiment: GLOBAL_HOLDOUT.into(),
                    arm,
                    unit: Unit::Account,
                    key: key.to_string(),
                    control: settings.global_holdout,
                    rules: applied.iter().map(|r| r.to_string()).collect(),
                });
            }
        }
        if !held_out.is_empty() {
            plan.actions
                .retain(|(p, _)| !held_out.iter().any(|(r, _)| *r == p.id));
            for (p, v) in &mut plan.verdicts {
                if let Some((_, i)) = held_out.iter().find(|(r, _)| *r == p.id) {
                    if *v == Verdict::Applied {
                        *v = Verdict::HeldOut(out.assignments[*i].why());
                    }
                }
            }
        }
        out
    }

    /// The goals `method path` meets, per running experiment whose unit key is known (`account`: the permitted
    /// lookup's company domain; `visitor`: the visitor id where the personal tier is permitted).
    pub fn conversions<'a>(
        &'a self,
        method: &http::Method,
        path: &str,
        account: Option<&str>,
        visitor: Option<&str>,
        settings: &ExperimentSettings,
        now: u64,
    ) -> Vec<Conversion<'a>> {
        let mut out = Vec::new();
        for e in self.experiments.iter().filter(|e| e.running(now)) {
            let key = match e.unit {
                Unit::Account => account,
                Unit::Visitor => visitor,
            };
            let Some(key) = key else { continue };
            for g in e.goals.iter().filter(|g| g.matches(method, path)) {
                out.push(Conversion {
                    experiment: &e.id,
                    goal: &g.id,
                    arm: assign::arm(assign::bucket(&e.salt, key), e.control),
                    unit: e.unit,
                    key: key.to_string(),
                });
                if let (Some(account), true) = (account, settings.global_holdout > 0.0) {
                    out.push(Conversion {
                        experiment: GLOBAL_HOLDOUT,
                        goal: &g.id,
                        arm: assign::arm(
                            assign::bucket(GLOBAL_HOLDOUT_SALT, account),
                            settings.global_holdout,
                        ),
                        unit: Unit::Account,
                        key: account.to_string(),
                    });
                }
            }
        }
        out.sort_by(|a, b| (a.experiment, a.goal).cmp(&(b.experiment, b.goal)));
        out.dedup_by(|a, b| a.experiment == b.experiment && a.goal == b.goal);
        out
    }
}

/// A goal met, for one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion<'a> {
    pub experiment: &'a str,
    pub goal: &'a str,
    pub arm: Arm,
    pub unit: Unit,
    pub key: String,
}

impl Unit {
    pub fn is_account(&self) -> bool {
        *self == Unit::Account
    }

    pub fn name(self) -> &'static str {
        match self {
            Unit::Account => "account",
            Unit::Visitor => "visitor",
        }
    }
}

#[cfg(test)]
mod tests;
