//! What a request is decided against: the company and location tables, the rule set and the experiments over it,
//! loaded together,
//! validated together and swapped together.
//!
//! Invariant: the rules and the account identities they hold come from one generation of the files. A reload
//! builds both, and only if both load cleanly replaces the pair in one atomic swap; a request loads the pair once,
//! so it never plans one generation's rules against another's tables.

use std::path::PathBuf;
use std::sync::Arc;

use crate::experiments::ExperimentSet;
use crate::firmographics::{Firmographics, FirmographicsSettings};
use crate::rules::RuleSet;

/// One generation of the sources.
pub struct Sources {
    /// 1 for the set loaded at start, +1 for every reload that went live (logged with it).
    pub generation: u64,
    pub firmographics: Arc<Firmographics>,
    pub rules: Arc<RuleSet>,
    /// The experiments over those rules.
    pub experiments: Arc<ExperimentSet>,
}

/// Why a generation was refused: the errors of each source that failed (the other may have loaded fine — it is
/// refused with the set).
#[derive(Debug, Default)]
pub struct SourceErrors {
    /// Rule and experiment files.
    pub rules: Vec<String>,
    pub firmographics: Vec<String>,
}

/// How the last reload of the sources went (none yet: only the set loaded at start), for the console.
#[derive(Debug, Clone, Default)]
pub struct LastReload {
    /// RFC 3339, UTC.
    pub at: String,
    pub reason: String,
    /// Empty when the new set went live; else every error (file:line:col and what), and the previous set serves.
    pub errors: Vec<String>,
}

/// Shared between the reloader that writes it and the console that reads it.
pub type ReloadStatus = std::sync::Arc<std::sync::Mutex<Option<LastReload>>>;

impl std::fmt::Display for SourceErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all: Vec<&str> = self
            .rules
            .iter()
            .chain(&self.firmographics)
            .map(String::as_str)
            .collect();
        f.write_str(&all.join("; "))
    }
}

impl Sources {
    /// Whether anything on the page at `path` could use the visitor's company: a rule of the firmographic or
    /// personal tier that can change it, or an experiment goal (a conversion is counted per account). Elsewhere
    /// the company is not looked up even where consent permits it, and no record of a lookup is due.
    pub fn needs_company(&self, path: &str) -> bool {
        self.rules.company_paths.matches(path)
            || self
                .experiments
                .experiments
                .iter()
                .any(|e| e.goals.iter().any(|g| g.path.matches(path)))
    }

    /// Load every source from its files; `Err` with every error of every source when any fails. Experiments
    /// are checked against the rules of the same generation.
    pub fn load(
        settings: &FirmographicsSettings,
        rules_dir: &std::path::Path,
    ) -> Result<Sources, SourceErrors> {
        let rules = RuleSet::load(rules_dir);
        let firmographics = Firmographics::load(settings, rules_dir);
        let experiments = match &rules {
            Ok(r) => crate::experiments::load(rules_dir, r),
            // Without a valid rule set the experiments cannot be checked; their errors wait for it.
            Err(_) => Ok(ExperimentSet::default()),
        };
        match (rules, firmographics, experiments) {
            (Ok(r), Ok(f), Ok(e)) => Ok(Sources {
                generation: 1,
                firmographics: Arc::new(f),
                rules: Arc::new(r),
                experiments: Arc::new(e),
            }),
            (r, f, e) => {
                let mut rules: Vec<String> = r
                    .err()
                    .map(|e| e.iter().map(ToString::to_string).collect())
                    .unwrap_or_default();
                rules.extend(
                    e.err()
                        .map(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>())
                        .unwrap_or_default(),
                );
                Err(SourceErrors {
                    rules,
                    firmographics: f
                        .err()
                        .map(|e| e.iter().map(ToString::to_string).collect())
                        .unwrap_or_default(),
                })
            }
        }
    }
}

/// Every file the sources are read from (for the change watcher).
pub fn watched(settings: &FirmographicsSettings, rules_dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = settings.watched_files(rules_dir);
    files.extend(crate::rules::watched_files(rules_dir));
    files.extend(crate::experiments::watched_files(rules_dir));
    files
}
