//! The per-request decision, free of any HTTP runtime: classify (location → jurisdiction, signals → Decision, the
//! company lookup only with the Decision's [`crate::consent::policy::LookupPermit`]) → the visitor → the plan
//! (the rules that match and are permitted) → the changes (rendered, escaped operations) → the record.
//!
//! The proxy's page requests, `concierge explain`, the why page and the feedback endpoint all call it; none
//! re-implements any part of it, so what an operator sees from the command line is what a visitor gets.
//!
//! Invariants: every input comes through [`RequestView`] and one generation of [`Sources`]; nothing here reads
//! a clock, a socket or a global; the same inputs give the same decision, plan, changes and record.

use std::net::IpAddr;

use http::HeaderMap;
use serde::Serialize;

use crate::classify::{Classification, Lookup};
use crate::config::Settings;
use crate::rules::Plan;
use crate::sources::Sources;

/// What the decision reads of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a http::Method,
    /// The request id records carry.
    pub request_id: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The resolved client address.
    pub client: IpAddr,
    /// The visitor reached the site over HTTPS (our consent cookie is then read under its `__Host-` name).
    pub secure: bool,
    /// Unix seconds.
    pub now: u64,
    /// The visitor id of `unit = "visitor"` experiments (from our cookie, [`RequestView::visitor_cookie`], or
    /// minted by the proxy for this response); used only where the Decision permits the personal tier.
    pub visitor_id: Option<&'a str>,
}

impl<'a> RequestView<'a> {
    /// A page request, the only kind personalization touches: GET or HEAD, and a browser navigation or a request
    /// that accepts HTML.
    pub fn is_page(&self) -> bool {
        let h = self.headers;
        (*self.method == http::Method::GET || *self.method == http::Method::HEAD)
            && (h
                .get("sec-fetch-dest")
                .is_some_and(|v| v.as_bytes() == b"document")
                || h.get_all(http::header::ACCEPT)
                    .iter()
                    .any(|v| v.as_bytes().windows(9).any(|w| w == b"text/html")))
    }

    /// The request's `Accept-Language`, which picks the banner's language.
    pub fn accept_language(&self) -> Option<&'a [u8]> {
        self.headers
            .get(http::header::ACCEPT_LANGUAGE)
            .map(|v| v.as_bytes())
    }

    /// The host of the request's `Referer`, for `when.referrer_host`.
    pub fn referrer_host(&self) -> Option<String> {
        self.headers
            .get(http::header::REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<http::Uri>().ok())
            .and_then(|u| u.host().map(str::to_string))
    }

    /// The visitor id our cookie carries, if it is one we could have minted.
    pub fn visitor_cookie(&self) -> Option<&'a str> {
        let name = crate::experiments::visitor_cookie_name(self.secure);
        crate::consent::cookies::get(self.headers, name)
            .and_then(Result::ok)
            .filter(|v| crate::experiments::valid_visitor_id(v))
    }

    /// Why this request takes no part in experiments (`bot`, `excluded_network`), if it does not.
    pub fn experiment_exclusion(&self, settings: &Settings) -> Option<&'static str> {
        settings.experiments.excluded(
            self.client,
            self.headers
                .get(http::header::USER_AGENT)
                .map(http::HeaderValue::as_bytes),
        )
    }

    /// The names of the cookies the request carries (at most 64), for `when.cookie`. Read as bytes: a cookie
    /// holding non-ASCII bytes hides none of the others.
    pub fn cookie_names(&self) -> Vec<&'a str> {
        crate::consent::cookies::names(self.headers, 64)
    }
}

/// Classify a request: location, jurisdiction, consent Decision, and the company only when the Decision permits
/// the firmographic tier and something on the page could use it ([`Sources::needs_company`]).
pub fn classify(view: &RequestView, sources: &Sources, settings: &Settings) -> Classification {
    classify_needing(view, sources, settings, sources.needs_company(view.path))
}

/// [`classify`] with the question "could the page use the company?" answered by the caller (`consent decide`
/// answers for consent, not a page: always yes).
pub fn classify_needing(
    view: &RequestView,
    sources: &Sources,
    settings: &Settings,
    needed: bool,
) -> Classification {
    crate::classify::classify(
        &sources.firmographics,
        &settings.consent,
        view.client,
        view.headers,
        view.query,
        view.secure,
        view.now,
        needed,
    )
}

/// Everything decided for one page.
pub struct PageDecision<'s> {
    pub classification: Classification,
    /// Every rule's verdict and the actions that apply (borrowed from the rule set of the generation).
    pub plan: Plan<'s>,
    /// The changes, rendered for this visitor (the consent banner and the "why" link included).
    pub ops: Vec<crate::rewrite::Op>,
    /// Ids of the rules whose changes go into the page.
    pub applied: Vec<String>,
    /// The experiments this page takes part in (arms, governed rules), already applied to `plan`.
    pub experiments: crate::experiments::Applied,
    /// The `Referer` host the rules saw.
    referrer_host: Option<String>,
}

/// Whether planning a page is worth it at all: nothing to change (no rules, no banner) and nothing to record
/// (no lookup ran; refusals not recorded) means the page passes untouched and unrecorded.
pub fn worth_planning(c: &Classification, sources: &Sources, record_refusals: bool) -> bool {
    !sources.rules.personalizations.is_empty()
        || c.decision.show_banner
        || recordable(c, record_refusals)
}

/// Why a request that meets a goal is not recorded as a conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoConversion {
    /// A bot or an excluded network: never counted.
    Excluded(&'static str),
    /// The Decision did not permit the firmographic tier: no lookup, so no account to attribute it to.
    NoBasis,
    /// The lookup found no company with a domain.
    NoAccount,
}

impl NoConversion {
    pub fn label(self) -> &'static str {
        match self {
            NoConversion::Excluded(why) => why,
            NoConversion::NoBasis => "no_basis",
            NoConversion::NoAccount => "no_account",
        }
    }
}

/// The conversion records of a request that meets one or more goals (`sources.experiments.any_goal` said so):
/// one per (experiment, goal), attributed to the account the permitted lookup found.
pub fn conversions(
    c: &Classification,
    view: &RequestView,
    sources: &Sources,
    settings: &Settings,
) -> Result<Vec<crate::experiments::records::ConversionRecord>, NoConversion> {
    if let Some(why) = view.experiment_exclusion(settings) {
        return Err(NoConversion::Excluded(why));
    }
    let visitor = visitor_key(c, view);
    if !c.company.ran() && visitor.is_none() {
        return Err(NoConversion::NoBasis);
    }
    let account = c.account();
    if account.is_none() && visitor.is_none() {
        return Err(NoConversion::NoAccount);
    }
    let found = sources.experiments.conversions(
        view.method,
        view.path,
        account,
        visitor,
        &settings.experiments,
        view.now,
    );
    if found.is_empty() {
        // Only goals of experiments whose unit key this request lacks.
        return Err(if account.is_none() {
            NoConversion::NoAccount
        } else {
            NoConversion::NoBasis
        });
    }
    Ok(found
        .into_iter()
        .map(|conv| crate::experiments::records::ConversionRecord {
            time: crate::audit::writer::now_rfc3339(),
            request_id: view.request_id.to_string(),
            experiment: conv.experiment.to_string(),
            goal: conv.goal.to_string(),
            arm: conv.arm,
            unit: conv.unit,
            account: account.map(str::to_string),
            visitor: (conv.unit == crate::experiments::Unit::Visitor).then(|| conv.key.clone()),
            page: view.path.to_string(),
            method: view.method.as_str().to_string(),
        })
        .collect())
}

/// The visitor id, where the Decision permits the personal tier (else none is used).
fn visitor_key<'a>(c: &Classification, view: &RequestView<'a>) -> Option<&'a str> {
    view.visitor_id
        .filter(|_| c.decision.permits(crate::consent::policy::Tier::Personal))
}

/// A decision record is due whatever the page: a lookup ran, or (`audit.record_refusals`) the Decision withheld
/// the lookup.
fn recordable(c: &Classification, record_refusals: bool) -> bool {
    c.company.ran()
        || (record_refusals
            && !c
                .decision
                .permits(crate::consent::policy::Tier::Firmographic))
}

/// Plan the page `view` asks for, for the visitor `classification` describes, against the generation `sources`.
pub fn plan_page<'s>(
    classification: Classification,
    view: &RequestView,
    sources: &'s Sources,
    settings: &Settings,
) -> PageDecision<'s> {
    let referrer_host = view.referrer_host();
    let visitor = classification.visitor(
        view.path,
        view.query,
        referrer_host.as_deref(),
        view.cookie_names(),
        view.now,
    );
    let mut plan = sources.rules.plan(&visitor);
    let experiments =
        if sources.experiments.is_empty() && settings.experiments.global_holdout <= 0.0 {
            crate::experiments::Applied::default()
        } else {
            sources.experiments.apply(
                &mut plan,
                classification.account(),
                visitor_key(&classification, view),
                view.experiment_exclusion(settings),
                &settings.experiments,
                view.now,
            )
        };
    let page = page(settings, &classification, view.accept_language());
    let ops = crate::rewrite::render_plan(&plan, &visitor, &page);
    let applied = plan.applied().into_iter().map(str::to_string).collect();
    drop(visitor);
    PageDecision {
        classification,
        plan,
        ops,
        applied,
        experiments,
        referrer_host,
    }
}

/// What the proxy adds to a page of its own accord, for this visitor.
/// `accept_language`: the request's `Accept-Language`, which picks the banner's language.
pub fn page<'a>(
    settings: &'a Settings,
    c: &Classification,
    accept_language: Option<&[u8]>,
) -> crate::rewrite::Page<'a> {
    let texts = &settings.consent.texts;
    crate::rewrite::Page {
        prefix: &settings.proxy.reserved_prefix,
        banner: c.decision.show_banner,
        why_link: settings.proxy.why_link,
        texts: texts.negotiate(accept_language),
        texts_version: texts.version(),
    }
}

impl PageDecision<'_> {
    /// The visitor the plan was made for (to render one action again, as `explain` describes them).
    pub fn visitor<'v>(&'v self, view: &RequestView<'v>) -> crate::rules::Visitor<'v> {
        self.classification.visitor(
            view.path,
            view.query,
            self.referrer_host.as_deref(),
            view.cookie_names(),
            view.now,
        )
    }

    /// A decision record is due for this page (`record_refusals`: `audit.record_refusals`).
    pub fn recorded(&self, record_refusals: bool) -> bool {
        !self.ops.is_empty() || recordable(&self.classification, record_refusals)
    }

    /// The record's outcome if the page is rewritten as planned: `personalized` (rules' changes), `banner`
    /// (only the proxy's own additions) or `not_personalized`.
    pub fn planned_outcome(&self) -> &'static str {
        match (self.applied.is_empty(), self.ops.is_empty()) {
            (false, _) => "personalized",
            (true, false) => "banner",
            (true, true) => "not_personalized",
        }
    }

    /// The decision record for this page (`page`: the path it is recorded under), with `outcome` as it turned
    /// out.
    pub fn record(
        &self,
        view: &RequestView,
        client: Option<String>,
        page: &str,
        outcome: &'static str,
    ) -> crate::audit::DecisionRecord {
        let rules = if outcome == "personalized" || outcome == "banner" {
            self.applied.clone()
        } else {
            Vec::new()
        };
        let mut r = self.classification.decision_record(
            view.request_id,
            client,
            page,
            rules,
            self.plan.rules_version,
            outcome,
        );
        r.experiments = self
            .experiments
            .assignments
            .iter()
            .map(|a| crate::audit::ExperimentArm {
                experiment: a.experiment.clone(),
                arm: a.arm,
            })
            .collect();
        r
    }

    /// The exposure records of this page: one per experiment it takes part in, control and treatment alike
    /// (written once the page turns out to be one the rules could change: a 200 HTML page; none for HEAD).
    pub fn exposures(
        &self,
        view: &RequestView,
    ) -> Vec<crate::experiments::records::ExposureRecord> {
        // A HEAD request shows nobody anything.
        if *view.method == http::Method::HEAD {
            return Vec::new();
        }
        let account = self.classification.account();
        self.experiments
            .assignments
            .iter()
            .map(|a| crate::experiments::records::ExposureRecord {
                time: crate::audit::writer::now_rfc3339(),
                request_id: view.request_id.to_string(),
                experiment: a.experiment.clone(),
                arm: a.arm,
                unit: a.unit,
                account: account.map(str::to_string),
                visitor: (a.unit == crate::experiments::Unit::Visitor).then(|| a.key.clone()),
                page: view.path.to_string(),
                rules: a.rules.clone(),
                rules_version: self.plan.rules_version.to_string(),
                control: a.control,
            })
            .collect()
    }
}

/// What `concierge explain --json` prints (and the console will show): the visitor, the Decision, every rule's
/// verdict, the plan with each value as it will be inserted, what the proxy adds, and the record it would write.
#[derive(Debug, Serialize)]
pub struct Explanation<'a> {
    pub ip: String,
    pub url: String,
    pub geo: &'a crate::firmographics::Geo,
    pub company: &'a Lookup,
    pub decision: &'a crate::consent::policy::Decision,
    pub rules_version: &'a str,
    pub candidates: Vec<Candidate<'a>>,
    pub plan: Vec<PlannedAction<'a>>,
    pub additions: ExplainedAdditions<'a>,
    /// The experiments this page takes part in: each one's arm and why.
    pub experiments: crate::experiments::AppliedExplained,
    pub record: Option<crate::audit::Record>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite_error: Option<Option<String>>,
    /// With `--html`: planned changes whose selector matches nothing on that page.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One rule and its verdict.
#[derive(Debug, Serialize)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub file: String,
    pub scale: crate::rules::Scale,
    pub tier: crate::consent::policy::Tier,
    pub verdict: &'a crate::rules::Verdict,
}

/// One planned action, described as the rewriter will carry it out.
#[derive(Debug, Serialize)]
pub struct PlannedAction<'a> {
    pub rule: &'a str,
    pub selector: &'a str,
    pub action: String,
    pub value: String,
}

/// What the proxy adds of its own accord.
#[derive(Debug, Serialize)]
pub struct ExplainedAdditions<'a> {
    pub banner: bool,
    pub feedback: Vec<ExplainedPrompt<'a>>,
    pub why_link: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ExplainedPrompt<'a> {
    pub rule: &'a str,
    pub question: Option<&'a str>,
    pub comment: bool,
}

impl<'s> PageDecision<'s> {
    /// One action described from what the rewriter will actually do, with values escaped as they will be
    /// inserted: (what, value).
    pub fn describe(
        &self,
        view: &RequestView,
        settings: &Settings,
        rule: &crate::rules::Personalization,
        action: &crate::rules::Action,
    ) -> (String, String) {
        use crate::rewrite::OpKind;
        let visitor = self.visitor(view);
        let page = page(settings, &self.classification, view.accept_language());
        match crate::rewrite::render_action(rule, action, &visitor, &page, self.plan.rules_version)
        {
            Some(OpKind::SetContent(v, html)) => {
                (if html { "set html" } else { "set text" }.into(), v)
            }
            Some(OpKind::SetAttribute(name, v)) => (format!("set attribute {name}"), v),
            Some(OpKind::AppendAttribute(name, v)) => (format!("append to attribute {name}"), v),
            Some(OpKind::Insert(pos, v, _)) => (format!("insert {pos:?}").to_lowercase(), v),
            Some(OpKind::Remove) => ("remove".into(), String::new()),
            Some(OpKind::AddClass(class)) => ("add class".into(), class),
            Some(OpKind::WhyNear(v, _) | OpKind::WhyFallback(v, _)) => {
                ("insert why link".into(), v)
            }
            None => ("inject (not for this response)".into(), String::new()),
        }
    }

    /// The whole explanation of this page for `ip` and `url`, with the record the proxy would write (`record`).
    pub fn explain<'d>(
        &'d self,
        view: &RequestView,
        settings: &'d Settings,
        ip: IpAddr,
        url: &str,
        record: Option<crate::audit::DecisionRecord>,
    ) -> Explanation<'d> {
        let page = page(settings, &self.classification, view.accept_language());
        let additions = crate::rewrite::Additions::of(&self.plan, &page);
        Explanation {
            ip: ip.to_string(),
            url: url.to_string(),
            geo: &self.classification.geo,
            company: &self.classification.company,
            decision: &self.classification.decision,
            rules_version: self.plan.rules_version,
            candidates: self
                .plan
                .verdicts
                .iter()
                .map(|(p, v)| Candidate {
                    id: &p.id,
                    file: p.file.display().to_string(),
                    scale: p.scale,
                    tier: p.tier,
                    verdict: v,
                })
                .collect(),
            plan: self
                .plan
                .actions
                .iter()
                .map(|(p, a)| {
                    let (action, value) = self.describe(view, settings, p, a);
                    PlannedAction {
                        rule: &p.id,
                        selector: &a.selector,
                        action,
                        value,
                    }
                })
                .collect(),
            additions: ExplainedAdditions {
                banner: additions.banner,
                feedback: additions
                    .prompts
                    .iter()
                    .map(|p| ExplainedPrompt {
                        rule: &p.id,
                        question: p.feedback.as_ref().map(|f| f.question.as_str()),
                        comment: p.feedback.as_ref().is_some_and(|f| f.comment),
                    })
                    .collect(),
                why_link: additions
                    .why_link
                    .then(|| crate::feedback::why_href(page.prefix, view.path)),
            },
            experiments: self.experiments.explained(),
            record: record.map(|r| crate::audit::Record::Decision(Box::new(r))),
            html: None,
            rewrite_error: None,
            warnings: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    /// One generation with an account on 10.20.0.0/16 (California) with a rule on /landing.
    fn fixture() -> (tempfile::TempDir, Sources, Settings) {
        let dir = tempfile::tempdir().unwrap();
        let accounts = dir.path().join("accounts");
        std::fs::create_dir_all(&accounts).unwrap();
        std::fs::write(
            accounts.join("acme.example.toml"),
            "[account]\ndomain = \"acme.example\"\nname = \"Acme\"\nnetworks = [\"10.20.0.0/16\"]\n\
             [[personalization]]\nid = \"hero\"\ntier = \"firmographic\"\npaths = [\"/landing\"]\n\
             [[personalization.action]]\nselect = \"h1\"\nset_text = \"For {{ company.name }}\"\n",
        )
        .unwrap();
        let toml = format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[rules]\ndir = \"{}\"\n\
             [[geo.static]]\nnetwork = \"10.20.0.0/16\"\ncountry = \"US\"\nsubdivision = \"CA\"\n\
             [[geo.static]]\nnetwork = \"10.30.0.0/16\"\ncountry = \"DE\"\n",
            dir.path().display()
        );
        let settings = Settings::from_toml(&toml, &Overrides::default()).unwrap();
        let sources = Sources::load(&settings.firmographics, &settings.rules_dir).unwrap();
        (dir, sources, settings)
    }

    fn view<'a>(headers: &'a HeaderMap, client: &str, path: &'a str) -> RequestView<'a> {
        RequestView {
            method: &http::Method::GET,
            request_id: "r",
            path,
            query: None,
            headers,
            client: client.parse().unwrap(),
            secure: false,
            now: 1_790_000_000,
            visitor_id: None,
        }
    }

    #[test]
    fn a_page_is_decided_planned_and_recorded_in_one_pass() {
        let (_dir, sources, settings) = fixture();
        let h = HeaderMap::new();
        let v = view(&h, "10.20.1.1", "/landing");
        let c = classify(&v, &sources, &settings);
        assert!(worth_planning(&c, &sources, false));
        let d = plan_page(c, &v, &sources, &settings);
        assert_eq!(d.applied, ["acme.example/hero"]);
        assert_eq!(d.planned_outcome(), "personalized");
        assert!(d.recorded(false));
        let r = d.record(&v, None, "/landing", "personalized");
        assert_eq!(r.rules, ["acme.example/hero"]);
        assert_eq!(r.company.as_deref(), Some("acme.example"));
        // Not rewritten after all (say, a 404): the record names no rules.
        assert!(d
            .record(&v, None, "/landing", "not_personalized")
            .rules
            .is_empty());
    }

    #[test]
    fn no_permit_no_lookup_no_record() {
        let (_dir, sources, settings) = fixture();
        let mut h = HeaderMap::new();
        h.insert("sec-gpc", http::HeaderValue::from_static("1"));
        let v = view(&h, "10.20.1.1", "/landing");
        let c = classify(&v, &sources, &settings);
        assert!(matches!(c.company, Lookup::NotRun));
        let d = plan_page(c, &v, &sources, &settings);
        assert!(d.ops.is_empty() && d.applied.is_empty());
        assert!(!d.recorded(false), "nothing changed, nothing looked up");
        assert!(
            d.recorded(true),
            "record_refusals records the withheld page"
        );
        assert_eq!(
            d.record(&v, None, "/", "not_personalized").lookup,
            "not_run"
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_decision() {
        let (_dir, sources, settings) = fixture();
        let h = HeaderMap::new();
        for client in ["10.20.1.1", "10.30.1.1", "192.0.2.1"] {
            for path in ["/", "/landing"] {
                let v = view(&h, client, path);
                let a = plan_page(classify(&v, &sources, &settings), &v, &sources, &settings);
                let b = plan_page(classify(&v, &sources, &settings), &v, &sources, &settings);
                let ra =
                    serde_json::to_value(a.record(&v, None, path, a.planned_outcome())).unwrap();
                let rb =
                    serde_json::to_value(b.record(&v, None, path, b.planned_outcome())).unwrap();
                let strip = |mut v: serde_json::Value| {
                    v.as_object_mut().unwrap().remove("time");
                    v
                };
                assert_eq!(strip(ra), strip(rb), "{client} {path}");
                assert_eq!(a.ops.len(), b.ops.len());
            }
        }
    }
}
