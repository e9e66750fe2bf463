//! `[experiments]`: the global holdout, traffic that never takes part, and the report's floors.

use serde::Deserialize;

use super::Check;
use crate::experiments::ExperimentSettings;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExperiments {
    pub global_holdout: Option<f64>,
    pub exclude_networks: Option<Vec<String>>,
    pub bots: Option<Vec<String>>,
    pub min_accounts: Option<u64>,
    pub min_exposures: Option<u64>,
}

pub(super) fn validate_experiments(
    c: &mut Check,
    raw: Option<RawExperiments>,
) -> ExperimentSettings {
    let raw = raw.unwrap_or_default();
    let mut s = ExperimentSettings::default();
    if let Some(h) = raw.global_holdout {
        if (0.0..1.0).contains(&h) {
            s.global_holdout = h;
        } else {
            c.fail(
                "experiments.global_holdout",
                format!("{h} must be at least 0 and below 1: the share of accounts that never get personalization"),
            );
        }
    }
    s.exclude_networks = c.networks(
        "experiments.exclude_networks",
        &raw.exclude_networks.unwrap_or_default(),
    );
    if let Some(bots) = raw.bots {
        for (i, b) in bots.iter().enumerate() {
            if b.trim().is_empty() {
                c.fail(
                    format!("experiments.bots[{i}]"),
                    "an empty pattern would match every visitor",
                );
            }
        }
        s.bots = bots.into_iter().map(|b| b.trim().to_string()).collect();
    }
    if let Some(n) = raw.min_accounts {
        if n < 2 {
            c.fail(
                "experiments.min_accounts",
                "must be at least 2 (a test needs two accounts per arm)",
            );
        } else {
            s.min_accounts = n;
        }
    }
    if let Some(n) = raw.min_exposures {
        s.min_exposures = n;
    }
    s
}
