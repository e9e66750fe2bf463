//! The experiment records of the `audit` stream: an exposure per (page, experiment) where a governed rule would
//! have applied — treated and control alike —, and a conversion per (request, experiment, goal) that meets a
//! goal. In the same hash chain as the page's decision record (and in the same group commit: an exposure costs
//! no write or fsync of its own); no IP. The unit is the account, or — for `unit = "visitor"`
//! experiments, where the visitor permitted the personal tier — a random visitor id from our own cookie.

use serde::{Deserialize, Serialize};

use super::{Arm, Unit};

/// A unit saw (treatment) or was held out from (control) a governed rule on a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExposureRecord {
    pub time: String,
    pub request_id: String,
    pub experiment: String,
    pub arm: Arm,
    /// Left out for `account` (the default), to keep the most common record short.
    #[serde(default, skip_serializing_if = "Unit::is_account")]
    pub unit: Unit,
    /// The account's domain (the unit of `unit = "account"`; with `visitor`, the company when known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The visitor id (the unit of `unit = "visitor"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor: Option<String>,
    /// Path only.
    pub page: String,
    /// The governed rules that matched.
    pub rules: Vec<String>,
    pub rules_version: String,
    /// The control share the assignment used.
    pub control: f64,
}

/// A request met an experiment's goal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionRecord {
    pub time: String,
    pub request_id: String,
    pub experiment: String,
    pub goal: String,
    /// The unit's arm in the experiment (a pure function of the unit key; the report counts the conversion only
    /// if the unit was exposed before it).
    pub arm: Arm,
    #[serde(default, skip_serializing_if = "Unit::is_account")]
    pub unit: Unit,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor: Option<String>,
    pub page: String,
    pub method: String,
}

/// One line of the stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Exposure(ExposureRecord),
    Conversion(ConversionRecord),
}
