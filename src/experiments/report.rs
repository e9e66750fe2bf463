//! `concierge experiments report`: per experiment and arm — accounts, exposures, conversions per goal —, the
//! sample-ratio-mismatch check, and per goal the lift with its interval, from the exposure and conversion records
//! of the `audit` stream.
//!
//! The unit of analysis is the account, as it is the unit of randomization: each account counts once per arm,
//! with its own conversion indicator (did it convert after its first exposure?) and counts. Tests used:
//! - conversion rate (share of accounts that converted) and conversions per account: Welch's t-test on the
//!   per-account values, the relative lift's 95% interval by the delta method;
//! - conversions per exposure: a ratio of sums with delta-method variance over accounts (visits are never
//!   treated as independent);
//! - sample ratio mismatch: chi-square goodness of fit of the account counts against the configured split,
//!   flagged at p < 0.001 once both arms have the minimum number of accounts;
//! - accounts needed: per arm, for a relative minimum detectable effect at 80% power and α = 0.05 (two-sided),
//!   from the control arm's conversion rate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::stats::{self, Moments};
use super::Arm;

/// Which records count.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Inclusive lower bound on `time` (canonical RFC 3339).
    pub since: Option<String>,
    /// Exclusive upper bound.
    pub until: Option<String>,
    pub experiment: Option<String>,
}

/// What a verdict needs, and what the sample size is computed for.
#[derive(Debug, Clone, Copy)]
pub struct Floors {
    pub min_accounts: u64,
    pub min_exposures: u64,
    /// Relative minimum detectable effect for `accounts_needed_per_arm`.
    pub mde: f64,
}

impl Default for Floors {
    fn default() -> Floors {
        Floors {
            min_accounts: 8,
            min_exposures: 100,
            mde: 0.2,
        }
    }
}

/// What the report reads of an `audit` stream line: parsed from the line (`Builder::add_line`), or — from
/// the record store — read from the columns the shipper filled with exactly this parse of the line
/// (`Fact::of`; schema 4), so both give one report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Fact<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub time: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub experiment: std::borrow::Cow<'a, str>,
    #[serde(default)]
    pub arm: Option<Arm>,
    #[serde(default, borrow)]
    pub account: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub visitor: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub goal: std::borrow::Cow<'a, str>,
    #[serde(default)]
    pub control: Option<f64>,
}

impl<'a> Fact<'a> {
    /// The line's fact if it is one the report can take as it is: an exposure or a conversion, with an arm
    /// (`None` for every other line — those the report skips, or reads only to know an experiment's name;
    /// the store keeps no fact for them and the report reads their line).
    pub fn of(line: &'a [u8]) -> Option<Fact<'a>> {
        serde_json::from_slice::<Fact>(line)
            .ok()
            .filter(|f| (f.kind == "exposure" || f.kind == "conversion") && f.arm.is_some())
    }
}

#[derive(Debug, Default, Clone)]
struct Account {
    arm: Option<Arm>,
    /// The arm changed between exposures (the control share was changed mid-experiment).
    switched: bool,
    first_exposure: String,
    exposures: u64,
}

impl Account {
    /// One exposure in `arm` at `time`. Order-independent (records of several instances come in any order):
    /// the account's arm is that of its earliest exposure (of two at the same time, control's), and it
    /// switched if any exposure was in the other.
    fn exposed(&mut self, arm: Arm, time: &str) {
        match self.arm {
            None => {
                self.arm = Some(arm);
                self.first_exposure = time.to_string();
            }
            Some(a) => {
                if a != arm {
                    self.switched = true;
                }
                if (time, arm) < (self.first_exposure.as_str(), a) {
                    self.arm = Some(arm);
                    time.clone_into(&mut self.first_exposure);
                }
            }
        }
        self.exposures += 1;
    }

    /// The account as if `other`'s exposures had been added to it.
    fn merge(&mut self, other: Account) {
        let Some(b) = other.arm else { return };
        match self.arm {
            None => *self = other,
            Some(a) => {
                self.switched |= other.switched || a != b;
                if (other.first_exposure.as_str(), b) < (self.first_exposure.as_str(), a) {
                    self.arm = Some(b);
                    self.first_exposure = other.first_exposure;
                }
                self.exposures += other.exposures;
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Agg {
    /// Randomized by visitor (`unit = "visitor"`): "accounts" below are visitors.
    by_visitor: bool,
    /// The control share of the latest exposure (of several at that time, the largest), and that time.
    control_share: Option<f64>,
    control_share_time: String,
    /// Distinct control shares seen (their bits; the smallest 8).
    shares_seen: BTreeSet<u64>,
    accounts: HashMap<String, Account>,
    /// (time, account, goal, arm)
    conversions: Vec<(String, String, String, Arm)>,
    /// day → [control, treatment] × (exposures, conversions)
    daily: BTreeMap<String, [[u64; 2]; 2]>,
}

impl Agg {
    /// An exposure's control share at `time`.
    fn share(&mut self, c: f64, time: &str) {
        let later = match self.control_share {
            None => true,
            Some(have) => (time, c) > (self.control_share_time.as_str(), have),
        };
        if later {
            self.control_share = Some(c);
            if self.control_share_time != time {
                time.clone_into(&mut self.control_share_time);
            }
        }
        if !self.shares_seen.contains(&c.to_bits()) {
            self.shares_seen.insert(c.to_bits());
            if self.shares_seen.len() > 8 {
                self.shares_seen.pop_last();
            }
        }
    }

    /// The aggregate as if `other`'s records had been added to it.
    fn merge(&mut self, other: Agg) {
        self.by_visitor |= other.by_visitor;
        if let Some(c) = other.control_share {
            self.share(c, &other.control_share_time);
        }
        for bits in other.shares_seen {
            self.shares_seen.insert(bits);
        }
        while self.shares_seen.len() > 8 {
            self.shares_seen.pop_last();
        }
        for (key, account) in other.accounts {
            match self.accounts.get_mut(&key) {
                Some(a) => a.merge(account),
                None => {
                    self.accounts.insert(key, account);
                }
            }
        }
        self.conversions.extend(other.conversions);
        for (day, counts) in other.daily {
            let d = self.daily.entry(day).or_default();
            for (arm, c) in counts.iter().enumerate() {
                d[arm][0] += c[0];
                d[arm][1] += c[1];
            }
        }
    }
}

/// The experiment's aggregate, created if new.
fn agg_of<'m>(experiments: &'m mut BTreeMap<String, Agg>, id: &str) -> &'m mut Agg {
    if !experiments.contains_key(id) {
        experiments.insert(id.to_string(), Agg::default());
    }
    experiments.get_mut(id).expect("inserted above")
}

fn idx(a: Arm) -> usize {
    match a {
        Arm::Control => 0,
        Arm::Treatment => 1,
    }
}

/// Reads records and builds the report.
#[derive(Clone)]
pub struct Builder {
    filter: Filter,
    experiments: BTreeMap<String, Agg>,
    /// Lines that are not experiment records or could not be read.
    pub skipped: u64,
}

impl Builder {
    pub fn new(filter: Filter) -> Builder {
        Builder {
            filter,
            experiments: BTreeMap::new(),
            skipped: 0,
        }
    }

    /// An empty builder with this one's filter (for reading part of the records on another thread).
    pub fn empty_like(&self) -> Builder {
        Builder::new(self.filter.clone())
    }

    /// This builder as if it had read `other`'s records too (the report does not depend on the order).
    pub fn merge(&mut self, other: Builder) {
        self.skipped += other.skipped;
        for (id, agg) in other.experiments {
            agg_of(&mut self.experiments, &id).merge(agg);
        }
    }

    /// Experiments the records name (for `--experiment` errors).
    pub fn known(&self) -> Vec<&str> {
        self.experiments.keys().map(String::as_str).collect()
    }

    /// One line of the stream.
    pub fn add_line(&mut self, line: &[u8]) {
        match serde_json::from_slice::<Fact>(line) {
            Ok(f) => self.add(&f),
            Err(_) => self.skipped += 1,
        }
    }

    /// One line's fact.
    pub fn add(&mut self, l: &Fact) {
        if l.kind != "exposure" && l.kind != "conversion" {
            return; // decision, consent and counts records share the stream
        }
        if self.filter.since.as_deref().is_some_and(|s| *l.time < *s)
            || self.filter.until.as_deref().is_some_and(|u| *l.time >= *u)
        {
            return;
        }
        if self
            .filter
            .experiment
            .as_deref()
            .is_some_and(|e| e != l.experiment)
        {
            // Still known, for the error message.
            agg_of(&mut self.experiments, &l.experiment);
            return;
        }
        let Some(arm) = l.arm else {
            self.skipped += 1;
            return;
        };
        // The unit: the visitor of a `unit = "visitor"` experiment, else the account.
        let unit_key = if l.visitor.is_empty() {
            &l.account
        } else {
            &l.visitor
        };
        if unit_key.is_empty() {
            self.skipped += 1;
            return;
        }
        // (Looked up before they are inserted: a report reads millions of records of a few thousand units,
        // and a key built for every record was a good part of its time.)
        let agg = agg_of(&mut self.experiments, &l.experiment);
        if !l.visitor.is_empty() {
            agg.by_visitor = true;
        }
        match &*l.kind {
            "exposure" => {
                if let Some(c) = l.control {
                    agg.share(c, &l.time);
                }
                match agg.accounts.get_mut(&**unit_key) {
                    Some(a) => a.exposed(arm, &l.time),
                    None => agg
                        .accounts
                        .entry(unit_key.to_string())
                        .or_default()
                        .exposed(arm, &l.time),
                }
                let day = l.time.get(..10).unwrap_or("");
                match agg.daily.get_mut(day) {
                    Some(d) => d[idx(arm)][0] += 1,
                    None => agg.daily.entry(day.to_string()).or_default()[idx(arm)][0] += 1,
                }
            }
            "conversion" => {
                agg.conversions.push((
                    l.time.to_string(),
                    unit_key.to_string(),
                    l.goal.to_string(),
                    arm,
                ));
            }
            _ => self.skipped += 1,
        }
    }

    /// Read a whole stream folder.
    pub fn read_stream(&mut self, dir: &Path) -> std::io::Result<()> {
        for (_, path) in crate::audit::chain::segments(dir)? {
            for line in crate::audit::chain::Lines::open(&path)? {
                let (_, line, complete) = line?;
                if !complete {
                    break;
                }
                self.add_line(&line);
            }
        }
        Ok(())
    }

    pub fn finish(self, floors: Floors) -> Report {
        let experiments = self
            .experiments
            .into_iter()
            .filter(|(id, _)| {
                self.filter
                    .experiment
                    .as_deref()
                    .is_none_or(|e| e == id.as_str())
            })
            .map(|(id, agg)| result(id, agg, floors))
            .collect();
        Report {
            experiments,
            tests: TESTS,
        }
    }
}

const TESTS: &str = "unit of analysis: the account (the unit of randomization). Conversion rate and conversions per account: Welch's t-test on per-account values; relative lift with a 95% interval by the delta method. Conversions per exposure: ratio of sums, delta-method variance over accounts. Sample ratio mismatch: chi-square goodness of fit on account counts, flagged at p < 0.001. Accounts needed: 80% power, alpha 0.05 two-sided, from the control rate.";

/// One arm's figures for one goal.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ArmGoal {
    pub accounts_converted: u64,
    pub conversions: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ArmResult {
    pub arm: Arm,
    pub accounts: u64,
    pub exposures: u64,
    pub goals: BTreeMap<String, ArmGoal>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Srm {
    pub p_value: f64,
    pub flagged: bool,
    /// The control share the split is checked against (from the exposure records).
    pub expected_control: f64,
}

/// A comparison of one metric between the arms.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Comparison {
    pub control: Option<f64>,
    pub treatment: Option<f64>,
    pub lift: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub p_value: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GoalResult {
    /// Share of the control arm's accounts that converted (after their first exposure).
    pub rate_control: Option<f64>,
    pub rate_treatment: Option<f64>,
    /// Relative: treatment / control − 1.
    pub lift: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub p_value: Option<f64>,
    pub enough_data: bool,
    /// Conversions per account.
    pub per_account: Comparison,
    /// Conversions per exposure (delta method over accounts).
    pub per_exposure: Comparison,
    /// Accounts per arm needed to detect a lift of `mde` at 80% power, from the control rate.
    pub accounts_needed_per_arm: Option<u64>,
    pub mde: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Day {
    pub day: String,
    pub control_exposures: u64,
    pub treatment_exposures: u64,
    pub control_conversions: u64,
    pub treatment_conversions: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExperimentResult {
    pub id: String,
    /// `account`, or `visitor` (then `accounts` count visitors).
    pub unit: super::Unit,
    pub arms: Vec<ArmResult>,
    pub srm: Srm,
    pub goals: BTreeMap<String, GoalResult>,
    pub enough_data: bool,
    /// Conversions not counted: the account had no exposure before them.
    pub unattributed_conversions: u64,
    pub daily: Vec<Day>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub experiments: Vec<ExperimentResult>,
    pub tests: &'static str,
}

fn comparison(c: Moments, t: Moments) -> Comparison {
    let lift = stats::relative_lift(c, t);
    Comparison {
        control: (c.n > 0.0).then_some(c.mean),
        treatment: (t.n > 0.0).then_some(t.mean),
        lift: lift.map(|l| l.0),
        ci_low: lift.map(|l| l.1),
        ci_high: lift.map(|l| l.2),
        p_value: stats::welch(c, t).map(|w| w.2),
    }
}

fn per_exposure(conv: [&[f64]; 2], exp: [&[f64]; 2]) -> Comparison {
    let c = stats::ratio(conv[0], exp[0]);
    let t = stats::ratio(conv[1], exp[1]);
    let mut out = Comparison {
        control: c.map(|x| x.0),
        treatment: t.map(|x| x.0),
        ..Comparison::default()
    };
    if let (Some((rc, vc)), Some((rt, vt))) = (c, t) {
        if rc > 0.0 {
            let lift = rt / rc - 1.0;
            let var = vt / (rc * rc) + rt * rt * vc / (rc * rc * rc * rc);
            let half = stats::Z_95 * var.sqrt();
            out.lift = Some(lift);
            out.ci_low = Some(lift - half);
            out.ci_high = Some(lift + half);
            let se = (vc + vt).sqrt();
            if se > 0.0 {
                // A z-test: the ratio's variance is asymptotic already.
                let z = (rt - rc) / se;
                out.p_value = Some(stats::chi2_sf(z * z, 1.0));
            }
        }
    }
    out
}

fn result(id: String, mut agg: Agg, floors: Floors) -> ExperimentResult {
    let control_share = agg.control_share.unwrap_or(0.5);
    let mut notes = Vec::new();
    if agg.shares_seen.len() > 1 {
        notes.push(format!(
            "the control share changed during the experiment ({}); the split is checked against the last one",
            agg.shares_seen
                .iter()
                .map(|b| format!("{}", f64::from_bits(*b)))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let switched = agg.accounts.values().filter(|a| a.switched).count();
    if switched > 0 {
        notes.push(format!(
            "{switched} account(s) were exposed in both arms (the control share changed); each counts in the arm of its first exposure"
        ));
    }
    let goals: BTreeSet<String> = agg.conversions.iter().map(|c| c.2.clone()).collect();
    // Per account: conversions per goal after the first exposure.
    let mut conv: HashMap<(&str, &str), u64> = HashMap::new();
    let mut unattributed = 0;
    let mut daily = std::mem::take(&mut agg.daily);
    for (time, account, goal, _) in &agg.conversions {
        match agg.accounts.get(account) {
            Some(a) if a.arm.is_some() && *time >= a.first_exposure => {
                *conv.entry((account.as_str(), goal.as_str())).or_default() += 1;
                let arm = a.arm.unwrap_or(Arm::Treatment);
                daily
                    .entry(time.get(..10).unwrap_or("").to_string())
                    .or_default()[idx(arm)][1] += 1;
            }
            _ => unattributed += 1,
        }
    }
    let mut arms = Vec::new();
    // Per arm: (accounts in order, exposures per account)
    let mut members: [Vec<&str>; 2] = [Vec::new(), Vec::new()];
    let mut exposures: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut names: Vec<&String> = agg.accounts.keys().collect();
    names.sort();
    for name in names {
        let a = &agg.accounts[name];
        let Some(arm) = a.arm else { continue };
        members[idx(arm)].push(name);
        exposures[idx(arm)].push(a.exposures as f64);
    }
    for arm in [Arm::Control, Arm::Treatment] {
        let i = idx(arm);
        let mut g = BTreeMap::new();
        for goal in &goals {
            let counts: Vec<u64> = members[i]
                .iter()
                .map(|a| conv.get(&(*a, goal.as_str())).copied().unwrap_or(0))
                .collect();
            g.insert(
                goal.clone(),
                ArmGoal {
                    accounts_converted: counts.iter().filter(|c| **c > 0).count() as u64,
                    conversions: counts.iter().sum(),
                },
            );
        }
        arms.push(ArmResult {
            arm,
            accounts: members[i].len() as u64,
            exposures: exposures[i].iter().sum::<f64>() as u64,
            goals: g,
        });
    }
    let n = [members[0].len() as u64, members[1].len() as u64];
    let total_exposures = arms[0].exposures + arms[1].exposures;
    let enough = n[0] >= floors.min_accounts
        && n[1] >= floors.min_accounts
        && total_exposures >= floors.min_exposures;
    let srm_p = stats::srm_p(
        &[n[0] as f64, n[1] as f64],
        &[control_share, 1.0 - control_share],
    );
    let srm = Srm {
        p_value: srm_p,
        flagged: srm_p < 0.001 && n[0] >= floors.min_accounts && n[1] >= floors.min_accounts,
        expected_control: control_share,
    };
    if srm.flagged {
        notes.push(format!(
            "sample ratio mismatch: {} control and {} treatment accounts against an expected {:.0}% control (p = {:.2e}); assignment or recording is broken, do not trust the results",
            n[0], n[1], control_share * 100.0, srm_p
        ));
    }
    if !enough {
        notes.push(format!(
            "not enough data for a verdict: needs {} accounts in each arm and {} exposures (has {} / {} accounts, {} exposures)",
            floors.min_accounts, floors.min_exposures, n[0], n[1], total_exposures
        ));
    }
    let mut goal_results = BTreeMap::new();
    for goal in &goals {
        let counts: [Vec<f64>; 2] = [0, 1].map(|i| {
            members[i]
                .iter()
                .map(|a| conv.get(&(*a, goal.as_str())).copied().unwrap_or(0) as f64)
                .collect()
        });
        let indicator = [0, 1].map(|i| {
            counts[i]
                .iter()
                .map(|c| if *c > 0.0 { 1.0 } else { 0.0 })
                .collect::<Vec<f64>>()
        });
        let rate = comparison(Moments::of(&indicator[0]), Moments::of(&indicator[1]));
        let per_account = comparison(Moments::of(&counts[0]), Moments::of(&counts[1]));
        let per_exp = per_exposure([&counts[0], &counts[1]], [&exposures[0], &exposures[1]]);
        goal_results.insert(
            goal.clone(),
            GoalResult {
                rate_control: rate.control,
                rate_treatment: rate.treatment,
                lift: rate.lift,
                ci_low: rate.ci_low,
                ci_high: rate.ci_high,
                p_value: rate.p_value,
                enough_data: enough && !srm.flagged,
                accounts_needed_per_arm: rate
                    .control
                    .and_then(|p| stats::units_needed(p, floors.mde)),
                mde: floors.mde,
                per_account,
                per_exposure: per_exp,
            },
        );
    }
    ExperimentResult {
        id,
        unit: if agg.by_visitor {
            super::Unit::Visitor
        } else {
            super::Unit::Account
        },
        arms,
        srm,
        goals: goal_results,
        enough_data: enough,
        unattributed_conversions: unattributed,
        daily: daily
            .into_iter()
            .map(|(day, v)| Day {
                day,
                control_exposures: v[0][0],
                treatment_exposures: v[1][0],
                control_conversions: v[0][1],
                treatment_conversions: v[1][1],
            })
            .collect(),
        notes,
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}%", v * 100.0))
}

fn signed_pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:+.1}%", v * 100.0))
}

fn p(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| {
        if v < 0.0001 {
            "<0.0001".into()
        } else {
            format!("{v:.4}")
        }
    })
}

impl Report {
    pub const CSV_COLUMNS: &'static [&'static str] = &[
        "experiment",
        "goal",
        "arm",
        "accounts",
        "exposures",
        "accounts_converted",
        "conversions",
        "rate",
        "lift",
        "ci_low",
        "ci_high",
        "p_value",
        "enough_data",
        "srm_p_value",
        "srm_flagged",
    ];

    pub fn csv_rows(&self) -> Vec<Vec<String>> {
        let f = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
        let mut rows = Vec::new();
        for e in &self.experiments {
            for (goal, g) in &e.goals {
                for a in &e.arms {
                    let ag = a.goals.get(goal).cloned().unwrap_or_default();
                    let treated = a.arm == Arm::Treatment;
                    rows.push(vec![
                        e.id.clone(),
                        goal.clone(),
                        a.arm.name().into(),
                        a.accounts.to_string(),
                        a.exposures.to_string(),
                        ag.accounts_converted.to_string(),
                        ag.conversions.to_string(),
                        f(if treated {
                            g.rate_treatment
                        } else {
                            g.rate_control
                        }),
                        if treated { f(g.lift) } else { String::new() },
                        if treated { f(g.ci_low) } else { String::new() },
                        if treated { f(g.ci_high) } else { String::new() },
                        if treated { f(g.p_value) } else { String::new() },
                        g.enough_data.to_string(),
                        format!("{}", e.srm.p_value),
                        e.srm.flagged.to_string(),
                    ]);
                }
            }
        }
        rows
    }

    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        if self.experiments.is_empty() {
            out.push_str("no experiment records\n");
            return out;
        }
        for e in &self.experiments {
            let _ = writeln!(out, "experiment {}", e.id);
            for a in &e.arms {
                let _ = writeln!(
                    out,
                    "  {:<9}  {:>6} accounts  {:>8} exposures",
                    a.arm.name(),
                    a.accounts,
                    a.exposures
                );
            }
            let _ = writeln!(
                out,
                "  split check (SRM): p = {}{}",
                p(Some(e.srm.p_value)),
                if e.srm.flagged { "  FLAGGED" } else { "" }
            );
            for (goal, g) in &e.goals {
                let c = e.arms[0].goals.get(goal).cloned().unwrap_or_default();
                let t = e.arms[1].goals.get(goal).cloned().unwrap_or_default();
                let _ = writeln!(out, "  goal {goal}");
                let _ = writeln!(
                    out,
                    "    converted accounts  control {} of {} ({})   treatment {} of {} ({})",
                    c.accounts_converted,
                    e.arms[0].accounts,
                    pct(g.rate_control),
                    t.accounts_converted,
                    e.arms[1].accounts,
                    pct(g.rate_treatment)
                );
                if g.enough_data {
                    let _ = writeln!(
                        out,
                        "    lift {}  (95% interval {} to {})  p = {}",
                        signed_pct(g.lift),
                        signed_pct(g.ci_low),
                        signed_pct(g.ci_high),
                        p(g.p_value)
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "    lift: not enough data (observed so far {})",
                        signed_pct(g.lift)
                    );
                }
                if let Some(n) = g.accounts_needed_per_arm {
                    let _ = writeln!(
                        out,
                        "    to detect a {:.0}% lift at 80% power: about {n} accounts per arm",
                        g.mde * 100.0
                    );
                }
            }
            if e.unattributed_conversions > 0 {
                let _ = writeln!(
                    out,
                    "  {} conversion(s) not counted: no exposure of the account before them",
                    e.unattributed_conversions
                );
            }
            for n in &e.notes {
                let _ = writeln!(out, "  note: {n}");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "tests: {}", self.tests);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposure(time: &str, exp: &str, arm: &str, account: &str) -> String {
        format!(
            r#"{{"seq":0,"prev":"","type":"exposure","time":"{time}","request_id":"r","experiment":"{exp}","arm":"{arm}","account":"{account}","page":"/","rules":["a/b"],"rules_version":"v","control":0.5}}"#
        )
    }

    fn conversion(time: &str, exp: &str, arm: &str, account: &str, goal: &str) -> String {
        format!(
            r#"{{"seq":0,"prev":"","type":"conversion","time":"{time}","request_id":"r","experiment":"{exp}","goal":"{goal}","arm":"{arm}","account":"{account}","page":"/demo","method":"POST"}}"#
        )
    }

    #[test]
    fn accounts_are_the_unit_and_conversions_need_an_earlier_exposure() {
        let mut b = Builder::new(Filter::default());
        for i in 0..10 {
            let arm = if i % 2 == 0 { "control" } else { "treatment" };
            let acct = format!("a{i}.example");
            // Many page views of one account are one unit.
            for _ in 0..5 {
                b.add_line(exposure("2027-01-10T10:00:00.000Z", "x", arm, &acct).as_bytes());
            }
            if i < 4 {
                b.add_line(
                    conversion("2027-01-10T11:00:00.000Z", "x", arm, &acct, "demo").as_bytes(),
                );
            }
        }
        // A conversion before any exposure of its account is not counted.
        b.add_line(
            conversion(
                "2027-01-09T00:00:00.000Z",
                "x",
                "control",
                "a8.example",
                "demo",
            )
            .as_bytes(),
        );
        // Nor one of an account never exposed.
        b.add_line(
            conversion(
                "2027-01-10T12:00:00.000Z",
                "x",
                "control",
                "zz.example",
                "demo",
            )
            .as_bytes(),
        );
        let r = b.finish(Floors::default());
        let e = &r.experiments[0];
        assert_eq!(e.arms[0].accounts, 5);
        assert_eq!(e.arms[1].accounts, 5);
        assert_eq!(e.arms[0].exposures, 25);
        assert_eq!(e.arms[0].goals["demo"].accounts_converted, 2);
        assert_eq!(e.arms[1].goals["demo"].accounts_converted, 2);
        assert_eq!(e.unattributed_conversions, 2);
        let g = &e.goals["demo"];
        assert_eq!(g.rate_control, Some(0.4));
        assert_eq!(g.lift, Some(0.0));
        assert!(!g.enough_data, "5 accounts per arm is below the floor of 8");
        assert!(!e.srm.flagged);
    }
}
