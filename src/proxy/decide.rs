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
    pub(super) record: crate::audit::DecisionRecord,
    /// The experiments' exposures, written at the response head if the page is one the rules could change.
    pub(super) exposures: Vec<crate::experiments::records::ExposureRecord>,
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
        let view = crate::pipeline::RequestView {
            method: &ctx.method,
            request_id: ctx.request_id.to_str().unwrap_or("-"),
            path: req.uri().path(),
            query: req.uri().query(),
            headers: req.headers(),
            client: ctx.client.addr,
            secure: ctx.scheme == "https",
            now: crate::classify::unix_now(),
        };
        let page = view.is_page();
        let goal = !sources.experiments.is_empty()
            && sources
                .experiments
                .any_goal(view.method, view.path, view.now);
        if !page && !goal {
            return None;
        }
        let c = crate::pipeline::classify(&view, sources, &self.settings);
        if goal {
            self.conversions(&c, &view, sources);
        }
        if !page {
            return None;
        }
        self.metrics.decision(
            c.decision.jurisdiction.regime.name(),
            c.highest_tier(),
            c.decision.show_banner,
        );
        let lookup_ran = !matches!(c.company, crate::classify::Lookup::NotRun);
        if lookup_ran {
            self.metrics.company_lookup(c.company.label());
        }
        // Every page decision is counted for the signed per-interval `counts` records.
        self.audit.tally.count(&c.decision, lookup_ran);
        let record_refusals = self.audit.record_refusals;
        if !crate::pipeline::worth_planning(&c, sources, record_refusals) {
            return None;
        }
        let d = crate::pipeline::plan_page(c, &view, sources, &self.settings);
        if !d.recorded(record_refusals) {
            return None;
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
            record,
            exposures,
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
                    if let Ok(t) = self.audit.experiments.submit(
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
