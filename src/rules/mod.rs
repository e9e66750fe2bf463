//! Rule files: what to change on which pages, for whom. One TOML file per account (`rules/accounts/`), plus
//! segments (`rules/segments/`) and regions (`rules/regions/`), and site-wide defaults (`rules/*.toml`).
//!
//! Loading validates everything (file, line and column in every error; selectors parsed; templates checked
//! against the rule's tier) and compiles a [`RuleSet`]; [`RuleSet::plan`] picks, for one visitor, the
//! personalizations that match **and** are permitted by the consent Decision, resolves conflicts
//! deterministically (account > segment > region > default, then `priority`, then file order) and returns a
//! [`Plan`] with the reason for every candidate — what `concierge explain` prints.
//!
//! Invariants: a rule set is complete and valid or not loaded at all; a rule needing a tier the Decision does
//! not permit never applies; the plan never depends on anything but its inputs.

pub(crate) mod compile;
mod plan;
mod schema;
pub(crate) mod template;

pub use compile::{names_one_element, parse_file, watched_files};
pub use plan::{render, Plan, Verdict, Visitor};
pub use schema::RawFeedback;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::consent::policy::Tier;
use template::Template;

/// Largest rule file and snippet read (a rule file is hand-written; anything larger is a mistake).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
const MAX_SNIPPET_BYTES: u64 = 256 * 1024;

/// The scale a rule file works at; earlier variants win conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Account,
    Segment,
    Region,
    Default,
}

// ------------------------------------------------------------------------------------------------ compiled

/// What to insert: text (escaped by the rewriter) or HTML (a trusted snippet, values escaped).
#[derive(Debug, Clone)]
pub enum Content {
    Text(Template),
    Html(Template),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    Before,
    After,
    Prepend,
    Append,
}

/// Proxy-provided assets a rule can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Asset {
    ConsentBanner,
    Feedback,
    WhyLink,
}

#[derive(Debug, Clone)]
pub enum ActionKind {
    SetContent(Content),
    SetAttribute {
        name: String,
        value: Template,
        url: bool,
    },
    AppendAttribute {
        name: String,
        value: Template,
        url: bool,
    },
    Insert(Position, Content),
    Remove,
    AddClass(String),
    Inject(Asset),
}

/// One change to the elements a selector matches.
#[derive(Debug, Clone)]
pub struct Action {
    pub selector: String,
    /// `selector`, parsed once at load (shared with every response's rewriter, never re-parsed).
    pub parsed: Arc<lol_html::Selector>,
    pub kind: ActionKind,
    /// The selector names one element ([`names_one_element`]), decided at load.
    pub names_one: bool,
    /// Index of this action's (selector, slot) in the rule set: actions with the same index conflict.
    /// Assigned when the set is assembled, so planning compares integers.
    pub slot: usize,
}

impl Action {
    /// What two actions must share to conflict: the same selector and the same slot of the element.
    fn slot_key(&self) -> (String, String) {
        let slot = match &self.kind {
            ActionKind::SetContent(_) | ActionKind::Remove => "content".to_string(),
            ActionKind::SetAttribute { name, .. } => format!("attribute {name}"),
            ActionKind::AppendAttribute { name, .. } => format!("attribute {name} (append)"),
            ActionKind::Insert(p, _) => format!("insert {p:?}").to_lowercase(),
            ActionKind::AddClass(c) => format!("class {c}"),
            ActionKind::Inject(a) => format!("inject {a:?}"),
        };
        (self.selector.clone(), slot)
    }

    fn templates(&self) -> Vec<&Template> {
        match &self.kind {
            ActionKind::SetContent(Content::Text(t) | Content::Html(t))
            | ActionKind::Insert(_, Content::Text(t) | Content::Html(t))
            | ActionKind::SetAttribute { value: t, .. }
            | ActionKind::AppendAttribute { value: t, .. } => vec![t],
            _ => vec![],
        }
    }
}

/// Conditions; every one given must hold.
#[derive(Debug, Clone, Default)]
pub struct When {
    pub industry: Vec<String>,
    pub employees_min: Option<u64>,
    pub employees_max: Option<u64>,
    pub country: Vec<String>,
    pub subdivision: Vec<String>,
    pub utm_source: Vec<String>,
    pub utm_medium: Vec<String>,
    pub utm_campaign: Vec<String>,
    pub query: BTreeMap<String, String>,
    pub referrer_host: Vec<String>,
    pub cookie: Option<String>,
    /// Unix seconds, inclusive / exclusive.
    pub from: Option<u64>,
    pub until: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Feedback {
    pub question: String,
    pub comment: bool,
}

/// Longest feedback question, in characters (it is a one-line prompt).
pub const MAX_QUESTION_CHARS: usize = 200;

/// One personalization, compiled.
#[derive(Debug, Clone)]
pub struct Personalization {
    /// `<file stem>/<id>`, unique in the set.
    pub id: String,
    pub file: PathBuf,
    pub scale: Scale,
    /// For account files: the account's domain (the rule applies only to visitors from it).
    pub account: Option<String>,
    pub tier: Tier,
    pub priority: i32,
    pub paths: Vec<PathPattern>,
    pub when: When,
    pub actions: Vec<Action>,
    pub feedback: Option<Feedback>,
    /// Pages this rule personalizes carry the "why am I seeing this" link.
    pub why_link: bool,
    /// Load order, the last tie-breaker.
    pub order: usize,
}

/// A path pattern: `*` matches within one segment, `**` across segments; anything else literally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(pub String);

impl PathPattern {
    pub fn matches(&self, path: &str) -> bool {
        glob(self.0.as_bytes(), path.as_bytes())
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    // Iterative matcher with backtracking for the last star (linear in practice; patterns are short).
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize, bool)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            let double = p.get(pi + 1) == Some(&b'*');
            pi += if double { 2 } else { 1 };
            star = Some((pi, si, double));
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss, double)) = star {
            if !double && s[ss] == b'/' {
                return false;
            }
            star = Some((sp, ss + 1, double));
            pi = sp;
            si = ss + 1;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// A loaded, validated rule set.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// In precedence order, winner first.
    pub personalizations: Vec<Personalization>,
    /// Number of distinct (selector, slot) pairs (see [`Action::slot`]).
    slots: usize,
    /// Statically possible conflicts (same selector and slot in two rules): (winner, loser, slot).
    pub conflicts: Vec<Conflict>,
    /// A short fingerprint of the set's content (recorded with decisions).
    pub version: String,
    /// The pages a rule of the firmographic or personal tier could change: only there is a company lookup of
    /// any use.
    pub company_paths: CompanyPaths,
}

/// Path patterns of the rules that use the company, decided when the set is assembled.
#[derive(Debug, Clone, Default)]
pub struct CompanyPaths {
    /// Some such rule applies to every page.
    all: bool,
    patterns: Vec<PathPattern>,
}

impl CompanyPaths {
    /// The paths of `rules` whose tier is above anonymous (deduplicated).
    pub fn of<'a>(rules: impl Iterator<Item = &'a Personalization>) -> CompanyPaths {
        let mut out = CompanyPaths::default();
        for r in rules.filter(|r| r.tier > crate::consent::policy::Tier::Anonymous) {
            for p in &r.paths {
                if p.0 == "/**" {
                    out.all = true;
                } else if !out.patterns.contains(p) {
                    out.patterns.push(p.clone());
                }
            }
        }
        if out.all {
            out.patterns.clear();
        }
        out
    }

    pub fn matches(&self, path: &str) -> bool {
        self.all || self.patterns.iter().any(|p| p.matches(path))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    pub selector: String,
    pub slot: String,
    pub winner: String,
    pub loser: String,
}

#[cfg(test)]
mod tests;
