//! What a request is decided against: the company and location tables and the rule set, loaded together,
//! validated together and swapped together.
//!
//! Invariant: the rules and the account identities they hold come from one generation of the files. A reload
//! builds both, and only if both load cleanly replaces the pair in one atomic swap; a request loads the pair once,
//! so it never plans one generation's rules against another's tables.

use std::path::PathBuf;
use std::sync::Arc;

use crate::firmographics::{Firmographics, FirmographicsSettings};
use crate::rules::RuleSet;

/// One generation of the sources.
pub struct Sources {
    /// 1 for the set loaded at start, +1 for every reload that went live (logged with it).
    pub generation: u64,
    pub firmographics: Arc<Firmographics>,
    pub rules: Arc<RuleSet>,
}

/// Why a generation was refused: the errors of each source that failed (the other may have loaded fine — it is
/// refused with the set).
#[derive(Debug, Default)]
pub struct SourceErrors {
    pub rules: Vec<String>,
    pub firmographics: Vec<String>,
}

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
    /// Load both sources from their files; `Err` with every error of both when either fails.
    pub fn load(
        settings: &FirmographicsSettings,
        rules_dir: &std::path::Path,
    ) -> Result<Sources, SourceErrors> {
        let rules = RuleSet::load(rules_dir);
        let firmographics = Firmographics::load(settings, rules_dir);
        match (rules, firmographics) {
            (Ok(r), Ok(f)) => Ok(Sources {
                generation: 1,
                firmographics: Arc::new(f),
                rules: Arc::new(r),
            }),
            (r, f) => Err(SourceErrors {
                rules: r
                    .err()
                    .map(|e| e.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
                firmographics: f
                    .err()
                    .map(|e| e.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
            }),
        }
    }
}

/// Every file the sources are read from (for the change watcher).
pub fn watched(settings: &FirmographicsSettings, rules_dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = settings.watched_files(rules_dir);
    files.extend(crate::rules::watched_files(rules_dir));
    files
}
