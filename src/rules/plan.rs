//! Planning: for one visitor, the rules that match and are permitted, conflicts resolved, a verdict for
//! every candidate.

use serde::Serialize;

use super::template::{Context, Template};
use super::{Action, Personalization, RuleSet};
use crate::consent::policy::Decision;
use crate::firmographics::company::Company;
use crate::firmographics::Geo;

/// Everything a plan is made from, for one request.
pub struct Visitor<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub referrer_host: Option<&'a str>,
    /// Names of the cookies the request carries.
    pub cookies: Vec<&'a str>,
    pub geo: &'a Geo,
    /// The company, when the lookup ran and found one.
    pub company: Option<&'a Company>,
    pub decision: &'a Decision,
    /// Unix seconds.
    pub now: u64,
}

impl Visitor<'_> {
    fn query_param(&self, name: &str) -> Option<&str> {
        crate::consent::signals::query_param(self.query, name)
    }

    /// A template variable's value.
    pub fn variable(&self, name: &str) -> Option<String> {
        let c = self.company;
        let account = c.filter(|c| c.account);
        match name {
            "page.path" => Some(self.path.to_string()),
            "geo.country" => self.geo.country.clone(),
            "geo.subdivision" => self.geo.subdivision.clone(),
            "utm.source" | "utm.medium" | "utm.campaign" | "utm.term" | "utm.content" => self
                .query_param(&format!("utm_{}", &name[4..]))
                .map(|v| v.replace('+', " ")),
            "company.name" => c.map(|c| c.name.clone()),
            "company.domain" => c.and_then(|c| c.domain.clone()),
            "company.industry" => c.and_then(|c| c.industry.clone()),
            "company.employees" => c.and_then(|c| c.employees.clone()),
            "company.country" => c.and_then(|c| c.country.clone()),
            "account.name" => account.map(|c| c.name.clone()),
            "account.domain" => account.and_then(|c| c.domain.clone()),
            "account.owner" => account.and_then(|c| c.owner.clone()),
            "account.industry" => account.and_then(|c| c.industry.clone()),
            _ => None,
        }
    }
}

/// Why a candidate did or did not make it into the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "why", rename_all = "snake_case")]
pub enum Verdict {
    Applied,
    NotPermitted(String),
    NotMatched(String),
    /// Matched, but every action lost a conflict to a rule with higher precedence.
    Overridden(String),
    /// Matched and permitted, but the visitor's account is in an experiment's control group (or the global
    /// holdout): the origin's page, for comparison.
    HeldOut(String),
}

impl Verdict {
    /// The verdict in words and why (empty for `applied`), as `explain` and the console's preview show it.
    pub fn label(&self) -> (&'static str, &str) {
        match self {
            Verdict::Applied => ("applied", ""),
            Verdict::NotPermitted(w) => ("not permitted", w),
            Verdict::NotMatched(w) => ("not matched", w),
            Verdict::Overridden(w) => ("overridden", w),
            Verdict::HeldOut(w) => ("held out", w),
        }
    }
}

/// The plan for one response: the actions to apply, and the verdict on every candidate.
/// Borrows from the [`RuleSet`] it was made from: planning copies nothing.
#[derive(Debug, Clone, Default)]
pub struct Plan<'a> {
    pub actions: Vec<(&'a Personalization, &'a Action)>,
    pub verdicts: Vec<(&'a Personalization, Verdict)>,
    pub rules_version: &'a str,
}

impl Plan<'_> {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Ids of the rules that contribute at least one action.
    pub fn applied(&self) -> Vec<&str> {
        self.verdicts
            .iter()
            .filter(|(_, v)| *v == Verdict::Applied)
            .map(|(p, _)| p.id.as_str())
            .collect()
    }
}

fn industry_matches(wanted: &[String], have: Option<&str>) -> bool {
    let Some(have) = have else { return false };
    let have = have.trim().to_lowercase();
    wanted.contains(&have)
}

/// `1000-4999`, `5000+`, `250` → (low, high).
fn employee_range(s: &str) -> Option<(u64, u64)> {
    let s = s.trim().replace([',', ' '], "");
    if let Some(low) = s.strip_suffix('+') {
        return Some((low.parse().ok()?, u64::MAX));
    }
    match s.split_once('-') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => s.parse().ok().map(|n| (n, n)),
    }
}

fn check_when(p: &Personalization, v: &Visitor) -> Result<(), String> {
    let w = &p.when;
    if let Some(domain) = &p.account {
        let visitor_domain = v.company.and_then(|c| c.domain.as_deref());
        if visitor_domain != Some(domain.as_str()) {
            return Err(format!("the visitor is not from {domain}"));
        }
    }
    if !p.paths.iter().any(|pat| pat.matches(v.path)) {
        return Err(format!(
            "path {} matches none of {}",
            v.path,
            p.paths
                .iter()
                .map(|p| p.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !w.industry.is_empty()
        && !industry_matches(&w.industry, v.company.and_then(|c| c.industry.as_deref()))
    {
        return Err(format!("industry is not one of {}", w.industry.join(", ")));
    }
    if w.employees_min.is_some() || w.employees_max.is_some() {
        let Some((low, high)) = v
            .company
            .and_then(|c| c.employees.as_deref())
            .and_then(employee_range)
        else {
            return Err("the company's size is unknown".into());
        };
        if w.employees_min.is_some_and(|m| high < m) || w.employees_max.is_some_and(|m| low > m) {
            return Err("company size outside the range".into());
        }
    }
    if !w.country.is_empty()
        && !v
            .geo
            .country
            .as_ref()
            .is_some_and(|c| w.country.contains(c))
    {
        return Err(format!("country is not one of {}", w.country.join(", ")));
    }
    if !w.subdivision.is_empty() {
        let region = v
            .geo
            .country
            .as_ref()
            .zip(v.geo.subdivision.as_ref())
            .map(|(c, s)| format!("{c}-{s}"));
        if !region.is_some_and(|r| w.subdivision.contains(&r)) {
            return Err(format!("region is not one of {}", w.subdivision.join(", ")));
        }
    }
    for (key, wanted) in [
        ("utm_source", &w.utm_source),
        ("utm_medium", &w.utm_medium),
        ("utm_campaign", &w.utm_campaign),
    ] {
        if !wanted.is_empty()
            && !v
                .query_param(key)
                .is_some_and(|q| wanted.iter().any(|w| w == q))
        {
            return Err(format!("{key} is not one of {}", wanted.join(", ")));
        }
    }
    for (k, want) in &w.query {
        if v.query_param(k) != Some(want.as_str()) {
            return Err(format!("query parameter {k} is not {want}"));
        }
    }
    if !w.referrer_host.is_empty() {
        let host = v.referrer_host.map(str::to_ascii_lowercase);
        let ok = host.as_deref().is_some_and(|h| {
            w.referrer_host
                .iter()
                .any(|r| h == r || h.ends_with(&format!(".{r}")))
        });
        if !ok {
            return Err(format!("referrer is not {}", w.referrer_host.join(", ")));
        }
    }
    if let Some(c) = &w.cookie {
        if !v.cookies.contains(&c.as_str()) {
            return Err(format!("no cookie {c}"));
        }
    }
    if w.from.is_some_and(|f| v.now < f) {
        return Err("before the rule's from date".into());
    }
    if w.until.is_some_and(|u| v.now >= u) {
        return Err("after the rule's until date".into());
    }
    Ok(())
}

impl RuleSet {
    /// The plan for `visitor`. Rules are considered in precedence order; the first rule to claim a
    /// (selector, slot) keeps it.
    pub fn plan(&self, v: &Visitor) -> Plan<'_> {
        let mut plan = Plan {
            rules_version: &self.version,
            ..Plan::default()
        };
        // Per (selector, slot): the rule that took it.
        let mut claimed: Vec<Option<&str>> = vec![None; self.slots];
        for p in &self.personalizations {
            if !v.decision.permits(p.tier) {
                plan.verdicts.push((
                    p,
                    Verdict::NotPermitted(format!(
                        "needs the {} tier; the consent decision does not permit it",
                        p.tier.name()
                    )),
                ));
                continue;
            }
            if let Err(why) = check_when(p, v) {
                plan.verdicts.push((p, Verdict::NotMatched(why)));
                continue;
            }
            // A template whose variable has no value for this visitor would render empty: skip the rule.
            let missing = p
                .actions
                .iter()
                .flat_map(|a| a.templates())
                .flat_map(|t| t.variables())
                .find(|var| v.variable(var).is_none());
            if let Some(var) = missing {
                plan.verdicts
                    .push((p, Verdict::NotMatched(format!("no value for {var}"))));
                continue;
            }
            let mut won = 0;
            let mut lost_to = None;
            for a in &p.actions {
                match claimed[a.slot] {
                    Some(winner) => lost_to = Some(winner),
                    None => {
                        claimed[a.slot] = Some(&p.id);
                        plan.actions.push((p, a));
                        won += 1;
                    }
                }
            }
            let verdict = match (won, lost_to) {
                (0, Some(w)) => Verdict::Overridden(format!("every action is taken by {w}")),
                _ => Verdict::Applied,
            };
            plan.verdicts.push((p, verdict));
        }
        plan
    }
}

/// Render a template for `v` in `ctx`.
pub fn render(t: &Template, ctx: Context, v: &Visitor) -> String {
    t.render(ctx, &|name| v.variable(name))
}
