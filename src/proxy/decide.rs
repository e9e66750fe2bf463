//! The decide phase: for a page request, the runtime-free pipeline's decision (classify, plan, record) against
//! the request's one generation of sources, and its metrics; for a request that meets an experiment's goal, its
//! conversion records.

use http::Request;
use hyper::body::Incoming;

use super::{Proxy, RequestContext};
use crate::sources::Sources;

/// What the classify and plan phases decided for a page request, carried to the response head.
pub(super) struct Considered {
    /// The changes, when there are any.
    pub(super) ops: Option<Vec<crate::rewrite::Op>>,
    /// Ids of the rules that contribute changes.
    pub(super) applied: Vec<String>,
    /// Completed (outcome, rules) at the response head, when it is known whether the page is rewritten.
    pub(super) record: Option<crate::audit::DecisionRecord>,
    /// The experiments' exposures, written at the response head if the page is one the rules could change.
    pub(super) exposures: Vec<crate::experiments::records::ExposureRecord>,
    /// A visitor-id cookie to set (minted for this visitor) or expire (the personal tier is no longer permitted).
    pub(super) set_cookie: Option<http::HeaderValue>,
}

impl Considered {
    /// Nothing to change or record, only the visitor-id cookie to set or expire.
    fn cookie_only(set_cookie: http::HeaderValue) -> Considered {
        Considered {
            ops: None,
            applied: Vec::new(),
            record: None,
            exposures: Vec::new(),
            set_cookie: Some(set_cookie),
        }
    }
}

impl Proxy {
    /// Classify and plan phases, for page requests (GET/HEAD asking for HTML), through the runtime-free
    /// pipeline (`crate::pipeline`): location → jurisdiction, signals → Decision, the company lookup only with
    /// the Decision's permit; then the rules that match and are permitted, rendered for this visitor (plus the
    /// consent banner when the Decision asks for it), and the decision record to write. `None`: nothing was
    /// considered (no change and nothing to record), so nothing to record.
    pub(super) fn decide_phase(
        &self,
        req: &Request<Incoming>,
        ctx: &RequestContext,
        sources: &Sources,
    ) -> Option<Considered> {
        let mut minted: Option<String> = None;
        let mut view = crate::pipeline::RequestView {
            method: &ctx.method,
            request_id: ctx.request_id.to_str().unwrap_or("-"),
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
            client: ctx.client.addr,
            secure: ctx.scheme == "https",
            now: crate::classify::unix_now(),
            visitor_id: None,
        };
        let page = view.is_page();
        let goal = !sources.experiments.is_empty()
            && sources
                .experiments
                .any_goal(view.method, view.path, view.now);
        if !page && !goal {
            return None;
        }
        let needs_visitor = sources.experiments.needs_visitor(view.now);
        if needs_visitor {
            view.visitor_id = view.visitor_cookie();
        }
        let c = crate::pipeline::classify(&view, sources, &self.settings);
        if goal {
            self.conversions(&c, &view, sources);
        }
        if !page {
            return None;
        }
        // `unit = "visitor"` experiments: an id only where the Decision permits the personal tier; a kept id
        // whose visitor no longer permits it is expired.
        let mut set_cookie = None;
        if needs_visitor {
            use crate::consent::policy::Tier;
            let max_age = self.settings.consent.policy.max_age_seconds;
            let secure = view.secure;
            match (
                view.visitor_id.is_some(),
                c.decision.permits(Tier::Personal),
            ) {
                (false, true) => {
                    minted = crate::experiments::assign::new_visitor_id();
                    set_cookie = minted.as_deref().map(|id| {
                        crate::experiments::assign::visitor_set_cookie(Some(id), secure, max_age)
                    });
                }
                (true, false) => {
                    set_cookie = Some(crate::experiments::assign::visitor_set_cookie(
                        None, secure, max_age,
                    ));
                }
                _ => {}
            }
            if minted.is_some() {
                view.visitor_id = minted.as_deref();
            }
        }
        let set_cookie = set_cookie.and_then(|v| http::HeaderValue::from_str(&v).ok());
        self.metrics.decision(
            c.decision.jurisdiction.regime.name(),
            c.highest_tier(),
            c.decision.show_banner,
        );
        let lookup_ran = c.company.ran();
        if lookup_ran {
            self.metrics.company_lookup(c.company.label());
        }
        // Every page decision is counted for the signed per-interval `counts` records.
        self.audit.tally.count(&c.decision, lookup_ran);
        let record_refusals = self.audit.record_refusals;
        if !crate::pipeline::worth_planning(&c, sources, record_refusals) {
            return set_cookie.map(Considered::cookie_only);
        }
        let d = crate::pipeline::plan_page(c, &view, sources, &self.settings);
        if !d.recorded(record_refusals) {
            return set_cookie.map(Considered::cookie_only);
        }
        let record = d.record(
            &view,
            self.audit.pseudonymizer.client(ctx.client.addr),
            view.path,
            "not_personalized",
        );
        let exposures = d.exposures(&view);
        Some(Considered {
            applied: d.applied,
            ops: (!d.ops.is_empty()).then_some(d.ops),
            record: Some(record),
            exposures,
            set_cookie,
        })
    }

    /// A request that meets an experiment's goal: its conversion records, through the gate (nothing waits on
    /// them: the request goes on to the origin either way). Not recorded — counted — without a basis.
    fn conversions(
        &self,
        c: &crate::classify::Classification,
        view: &crate::pipeline::RequestView,
        sources: &Sources,
    ) {
        match crate::pipeline::conversions(c, view, sources, &self.settings) {
            Ok(records) => {
                for r in records {
                    let record = crate::experiments::records::Record::Conversion(r);
                    if let Ok(t) = self.audit.records.submit(
                        crate::audit::gate::Kind::Conversion,
                        &record,
                        false,
                    ) {
                        t.accepted();
                    }
                }
            }
            Err(why) => self.metrics.conversion_unrecorded(why.label()),
        }
    }
}
