//! Experiment files (`rules/experiments/*.toml`): read bounded, validated against the rule set they govern, every
//! error of every file in one pass, each with file:line:col.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Experiment, ExperimentSet, Goal, Unit};
use crate::consent::policy::Tier;
use crate::firmographics::company::{line_col, read_text, SourceError};
use crate::rules::{PathPattern, RuleSet};

/// Largest experiment file read.
pub const MAX_EXPERIMENT_BYTES: u64 = 64 * 1024;
/// The folder under the rules folder.
pub const FOLDER: &str = "experiments";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    experiment: Option<Spanned<RawExperiment>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    id: Option<Spanned<String>>,
    hypothesis: Option<Spanned<String>>,
    rules: Option<Spanned<Vec<Spanned<String>>>>,
    control: Option<Spanned<f64>>,
    unit: Option<Spanned<String>>,
    start: Option<Spanned<String>>,
    end: Option<Spanned<String>>,
    salt: Option<Spanned<String>>,
    #[serde(default)]
    goal: Vec<Spanned<RawGoal>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGoal {
    id: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// `YYYY-MM-DD` (start of that UTC day) as Unix seconds.
fn day(s: &str) -> Option<u64> {
    (s.len() == 10)
        .then(|| crate::rules::compile::parse_date(s))
        .flatten()
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

struct Errors<'a> {
    file: &'a Path,
    text: &'a str,
    list: Vec<SourceError>,
}

impl Errors<'_> {
    fn at<T>(&mut self, spanned: &Spanned<T>, msg: impl Into<String>) {
        let loc = line_col(self.text, spanned.span().start);
        self.list.push(SourceError::new(self.file, Some(loc), msg));
    }

    fn file(&mut self, msg: impl Into<String>) {
        self.list.push(SourceError::new(self.file, None, msg));
    }
}

/// The rule id (or, for a pattern with a `*` part, the pattern with its last part corrected) closest to `text`.
fn suggest(text: &str, rules: &RuleSet) -> Option<String> {
    let ids = rules.personalizations.iter().map(|p| p.id.as_str());
    if let Some(found) = crate::hint::closest(text, ids) {
        return Some(found.to_string());
    }
    let (prefix, local) = text.rsplit_once('/')?;
    let locals: Vec<&str> = rules
        .personalizations
        .iter()
        .filter_map(|p| p.id.rsplit_once('/').map(|(_, l)| l))
        .collect();
    crate::hint::closest(local, locals).map(|l| format!("{prefix}/{l}"))
}

/// Parse and validate one experiment file against `rules`.
pub fn parse(file: &Path, text: &str, rules: &RuleSet) -> Result<Experiment, Vec<SourceError>> {
    let (raw, read_errors) = crate::tomlfile::read::<RawFile>(text);
    let read_errors: Vec<SourceError> = read_errors
        .into_iter()
        .map(|p| SourceError::new(file, p.span.map(|s| line_col(text, s.start)), p.message))
        .collect();
    let Some(raw) = raw else {
        return Err(read_errors);
    };
    let mut errs = Errors {
        file,
        text,
        list: read_errors,
    };
    let Some(exp) = raw.experiment else {
        errs.file("an experiment file needs an [experiment] table");
        return Err(errs.list);
    };
    let exp_span = exp.span();
    let exp = exp.into_inner();
    let header = Spanned::new(exp_span.clone(), ());

    let id = match &exp.id {
        None => {
            errs.at(&header, "[experiment] needs an `id`");
            String::new()
        }
        Some(id) if !valid_id(id.get_ref().trim()) => {
            errs.at(
                id,
                format!(
                    "id `{}` must be 1–64 letters, digits, `-`, `_` or `.`",
                    id.get_ref()
                ),
            );
            String::new()
        }
        Some(id) => id.get_ref().trim().to_string(),
    };

    let hypothesis = exp.hypothesis.as_ref().map(|h| {
        if h.get_ref().chars().count() > 500 {
            errs.at(h, "the hypothesis is longer than 500 characters");
        }
        h.get_ref().trim().to_string()
    });

    let control = match &exp.control {
        None => {
            errs.at(
                &header,
                "[experiment] needs `control`, the share of accounts held out (e.g. 0.5)",
            );
            0.5
        }
        Some(c) if !(*c.get_ref() > 0.0 && *c.get_ref() < 1.0) => {
            errs.at(
                c,
                format!(
                    "control = {} must be between 0 and 1 (exclusive): the share of accounts that see the standard page",
                    c.get_ref()
                ),
            );
            0.5
        }
        Some(c) => *c.get_ref(),
    };

    let unit = match exp.unit.as_ref().map(|u| (u, u.get_ref().as_str())) {
        None | Some((_, "account")) => Unit::Account,
        Some((_, "visitor")) => Unit::Visitor,
        Some((u, other)) => {
            let hint = crate::hint::closest(other, ["account", "visitor"])
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_default();
            errs.at(
                u,
                format!("unit `{other}` is not one of account, visitor{hint}"),
            );
            Unit::Account
        }
    };

    let when = |key: &str, v: &Option<Spanned<String>>, errs: &mut Errors| -> Option<u64> {
        let v = v.as_ref()?;
        let d = day(v.get_ref().trim());
        if d.is_none() {
            errs.at(
                v,
                format!(
                    "{key} = \"{}\" is not a day; write it as YYYY-MM-DD (UTC), e.g. \"2027-01-10\"",
                    v.get_ref()
                ),
            );
        }
        d
    };
    let start = when("start", &exp.start, &mut errs);
    let end = when("end", &exp.end, &mut errs);
    if let (Some(s), Some(e), Some(raw_end)) = (start, end, &exp.end) {
        if e <= s {
            errs.at(raw_end, "end must be after start");
        }
    }

    let salt = match &exp.salt {
        Some(s) if s.get_ref().trim().is_empty() => {
            errs.at(s, "salt must not be empty (leave it out to use the id)");
            id.clone()
        }
        Some(s) => s.get_ref().clone(),
        None => id.clone(),
    };

    // Rules: each pattern names at least one rule; each governed rule uses the company.
    let mut patterns = Vec::new();
    let mut governed: Vec<String> = Vec::new();
    match &exp.rules {
        None => errs.at(
            &header,
            "[experiment] needs `rules`, the rule ids it governs as `check` prints them (e.g. [\"acme.example/home-hero\"] or [\"*/home-hero\"])",
        ),
        Some(list) if list.get_ref().is_empty() => errs.at(list, "`rules` is empty"),
        Some(list) => {
            for pat in list.get_ref() {
                let text = pat.get_ref().trim();
                patterns.push(text.to_string());
                let pp = PathPattern(text.to_string());
                let matched: Vec<&crate::rules::Personalization> = rules
                    .personalizations
                    .iter()
                    .filter(|p| pp.matches(&p.id))
                    .collect();
                if matched.is_empty() {
                    let hint = suggest(text, rules)
                        .map(|h| format!("; did you mean `{h}`?"))
                    .unwrap_or_else(|| {
                        if rules.personalizations.is_empty() {
                            " (there are no rules)".into()
                        } else {
                            "; `concierge check` lists the rule ids".into()
                        }
                    });
                    errs.at(pat, format!("`{text}` names no rule{hint}"));
                }
                for p in matched {
                    if unit == Unit::Visitor && p.tier != Tier::Personal {
                        errs.at(
                            pat,
                            format!(
                                "rule {} is of the {} tier: unit = \"visitor\" keys arms by a cookie set only where the visitor permits the personal tier, so it governs personal rules only",
                                p.id,
                                p.tier.name()
                            ),
                        );
                    } else if p.tier == Tier::Anonymous {
                        errs.at(
                            pat,
                            format!(
                                "rule {} is of the anonymous tier: it does not know the visitor's company, so an account experiment cannot govern it",
                                p.id
                            ),
                        );
                    } else if !governed.contains(&p.id) {
                        governed.push(p.id.clone());
                    }
                }
            }
        }
    }

    let mut goals: Vec<Goal> = Vec::new();
    if exp.goal.is_empty() {
        errs.at(
            &header,
            "an experiment needs at least one [[experiment.goal]] (what counts as a success: id, path, method)",
        );
    }
    let mut goal_ids: HashMap<String, usize> = HashMap::new();
    for g in &exp.goal {
        let g_span = g.span();
        let g_header = Spanned::new(g_span, ());
        let g = g.get_ref();
        let gid = match &g.id {
            None => {
                errs.at(&g_header, "[[experiment.goal]] needs an `id`");
                continue;
            }
            Some(i) if !valid_id(i.get_ref().trim()) => {
                errs.at(
                    i,
                    format!(
                        "goal id `{}` must be 1–64 letters, digits, `-`, `_` or `.`",
                        i.get_ref()
                    ),
                );
                continue;
            }
            Some(i) => {
                let v = i.get_ref().trim().to_string();
                if let Some(line) = goal_ids.insert(v.clone(), line_col(text, i.span().start).0) {
                    errs.at(i, format!("goal id `{v}` is already used on line {line}"));
                    continue;
                }
                v
            }
        };
        let path = match &g.path {
            None => {
                errs.at(
                    &g_header,
                    format!("goal {gid} needs a `path` (e.g. \"/demo-request*\")"),
                );
                continue;
            }
            Some(p) => {
                let v = p.get_ref();
                if !v.starts_with('/') || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    errs.at(p, format!("path `{v}` must start with `/` and contain no spaces; `*` matches within a segment, `**` across"));
                    None
                } else {
                    Some(PathPattern(v.clone()))
                }
            }
        };
        let method = match &g.method {
            None => Some(None),
            Some(m) => {
                let up = m.get_ref().trim().to_ascii_uppercase();
                if METHODS.contains(&up.as_str()) {
                    Some(http::Method::from_bytes(up.as_bytes()).ok())
                } else {
                    errs.at(
                        m,
                        format!(
                            "method `{}` is not one of {}",
                            m.get_ref(),
                            METHODS.join(", ")
                        ),
                    );
                    None
                }
            }
        };
        if let (Some(path), Some(method)) = (path, method) {
            goals.push(Goal {
                id: gid,
                path,
                method,
            });
        }
    }

    if !errs.list.is_empty() {
        return Err(errs.list);
    }
    Ok(Experiment {
        id,
        hypothesis,
        patterns,
        rules: governed,
        control,
        unit,
        start,
        end,
        salt,
        goals,
        file: file.to_path_buf(),
    })
}

/// The experiment files under `<rules_dir>/experiments/`, in name order.
fn files(rules_dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let folder = rules_dir.join(FOLDER);
    match std::fs::read_dir(&folder) {
        Ok(entries) => {
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                .collect();
            found.sort();
            Ok(found)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(SourceError::new(
            &folder,
            None,
            format!("cannot read the folder: {e}"),
        )),
    }
}

/// Every file and folder experiments are read from (for change detection).
pub fn watched_files(rules_dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![rules_dir.join(FOLDER)];
    out.extend(files(rules_dir).unwrap_or_default());
    out
}

/// Load every experiment file against `rules`; all errors of all files together. A rule governed by two
/// experiments is an error (its pages could not be attributed to either).
pub fn load(rules_dir: &Path, rules: &RuleSet) -> Result<ExperimentSet, Vec<SourceError>> {
    let files = files(rules_dir).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut experiments: Vec<Experiment> = Vec::new();
    for path in &files {
        let text = match read_text(path, MAX_EXPERIMENT_BYTES) {
            Ok(t) => t,
            Err((loc, e)) => {
                errors.push(SourceError::new(path, loc, e));
                continue;
            }
        };
        match parse(path, &text, rules) {
            Ok(e) => experiments.push(e),
            Err(es) => errors.extend(es),
        }
    }
    let mut ids: HashMap<&str, &Path> = HashMap::new();
    let mut owner: HashMap<&str, &str> = HashMap::new();
    for e in &experiments {
        if let Some(other) = ids.insert(&e.id, &e.file) {
            errors.push(SourceError::new(
                &e.file,
                None,
                format!(
                    "experiment id `{}` is also used by {}",
                    e.id,
                    other.display()
                ),
            ));
        }
        if e.id == super::GLOBAL_HOLDOUT {
            errors.push(SourceError::new(
                &e.file,
                None,
                format!(
                    "experiment id `{}` is reserved for [experiments] global_holdout",
                    e.id
                ),
            ));
        }
        for r in &e.rules {
            if let Some(first) = owner.insert(r, &e.id) {
                if first != e.id {
                    errors.push(SourceError::new(
                        &e.file,
                        None,
                        format!("rule {r} is governed by experiments {first} and {}; a rule can be in one experiment at a time", e.id),
                    ));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ExperimentSet { experiments })
}
