//! `GET {prefix}why?page=/path`: "Why am I seeing this?" — in plain words, what the proxy would use for this
//! visitor on that page right now (location, consent, organization, rules) and how to change it.
//!
//! The page is computed exactly as a page request is (same classify and plan), so it cannot tell a different
//! story from the one the proxy acts on. When the company lookup runs, a decision record is written first
//! (outcome `explained`); if it cannot be, the company is not shown — no record, no use of the lookup.

use http::{Request, Response};
use hyper::body::Incoming;

use super::page::{escape_html, html_page};
use crate::classify::Lookup;
use crate::consent::policy::{Regime, Tier};
use crate::proxy::body::ResponseBody;
use crate::proxy::{Proxy, RequestContext};
use crate::rules::Verdict;

/// The page a visitor asks about: `page` from the query, a path on this site, else `/`.
fn asked_page(query: Option<&str>) -> String {
    crate::consent::signals::query_param(query, "page")
        .and_then(crate::consent::choice::return_param)
        .map(|p| crate::consent::choice::page_of(&p).to_string())
        .filter(|p| p.len() <= crate::feedback::MAX_PAGE_BYTES)
        .unwrap_or_else(|| "/".to_string())
}

/// One consent reason in plain words (`None`: nothing worth telling a visitor).
fn reason_text(reason: &str) -> Option<String> {
    let tier = |name: &str| match name {
        "firmographic" => "use which organization your network belongs to",
        _ => "remember you personally",
    };
    let parts: Vec<&str> = reason.split(':').collect();
    Some(match parts.as_slice() {
        ["jurisdiction", "opt-in", "no-signal", ..] => {
            "You have not made a choice on this site yet, so we use nothing beyond the page itself.".into()
        }
        ["gpc"] => "Your browser sends a Global Privacy Control signal. We honour it as an objection: nothing \
                    beyond the page itself is used while it is on."
            .into(),
        ["dnt", "opt-out"] => "Your browser sends Do Not Track, which this site honours as an objection.".into(),
        ["usp", "opt-out"] | ["gpp", _, "opt-out"] => {
            "You have opted out of the sale or sharing of your personal information.".into()
        }
        ["first-party", "granted", t] => format!("You allowed us to {} (your choice on this site).", tier(t)),
        ["first-party", "refused", t] => format!("You chose not to let us {}.", tier(t)),
        ["tcf", "granted", t] => format!("Your choices in this site's consent tool allow us to {}.", tier(t)),
        ["tcf", p, t] if p.starts_with("purpose") => {
            format!("Your choices in this site's consent tool do not allow us to {}.", tier(t))
        }
        ["first-party", "stale"] | ["tcf", "stale"] => {
            "An earlier choice of yours has expired, so it no longer counts.".into()
        }
        [_, "invalid", ..] => "A privacy signal your browser sent could not be read, so it was not used.".into(),
        _ => return None,
    })
}

fn tier_words(t: Tier) -> &'static str {
    match t {
        Tier::Anonymous => "based only on this page, the link you followed or your country",
        Tier::Firmographic => "for your organization",
        Tier::Personal => "for you personally",
    }
}

/// What one action changes, in words a visitor can follow (the element named by its selector).
fn change_words(action: &crate::rules::Action) -> Option<String> {
    use crate::rules::{ActionKind, Content, Position};
    let what = format!("<code>{}</code>", escape_html(&action.selector));
    Some(match &action.kind {
        ActionKind::SetContent(Content::Text(_)) => format!("the text of {what}"),
        ActionKind::SetContent(Content::Html(_)) => format!("the content of {what}"),
        ActionKind::SetAttribute { name, .. } | ActionKind::AppendAttribute { name, .. } => {
            if name == "href" {
                format!("where {what} links to")
            } else {
                format!("the <code>{}</code> of {what}", escape_html(name))
            }
        }
        ActionKind::Insert(pos, _) => match pos {
            Position::Before => format!("something added before {what}"),
            Position::After => format!("something added after {what}"),
            Position::Prepend => format!("something added at the start of {what}"),
            Position::Append => format!("something added at the end of {what}"),
        },
        ActionKind::Remove => format!("{what} left out"),
        ActionKind::AddClass(_) => format!("the look of {what}"),
        ActionKind::Inject(_) => return None,
    })
}

pub async fn page(
    proxy: &Proxy,
    req: &Request<Incoming>,
    ctx: &RequestContext,
) -> Response<ResponseBody> {
    let settings = proxy.settings();
    let prefix = &settings.proxy.reserved_prefix;
    let asked = asked_page(req.uri().query());
    let sources = proxy.sources();
    // The page the visitor asks about, decided exactly as a request for it would be.
    let mut view = crate::pipeline::RequestView {
        method: req.method(),
        request_id: ctx.request_id.to_str().unwrap_or("-"),
        path: &asked,
        query: None,
        headers: req.headers(),
        client: ctx.client.addr,
        secure: ctx.scheme == "https",
        now: crate::classify::unix_now(),
        visitor_id: None,
    };
    view.visitor_id = view.visitor_cookie();
    let d = crate::pipeline::plan_page(
        crate::pipeline::classify(&view, &sources, settings),
        &view,
        &sources,
        settings,
    );
    let (c, plan) = (&d.classification, &d.plan);
    // A lookup ran: record it, and show its result only if the record was accepted.
    let mut company_shown = true;
    if c.company.ran() {
        let record = d.record(
            &view,
            proxy.audit.pseudonymizer.client(ctx.client.addr),
            &format!("{prefix}why"),
            "explained",
        );
        // Showing the company is an effect of the lookup like personalization: only once the record is on disk.
        let accepted = proxy
            .audit
            .records
            .durable(
                crate::audit::gate::Kind::Decision,
                &crate::audit::Record::Decision(Box::new(record)),
            )
            .await;
        company_shown = accepted.is_ok();
    }

    let e = |s: &str| escape_html(s);
    let mut used = Vec::new();
    let region = &c.decision.jurisdiction.region;
    used.push(match (c.decision.jurisdiction.regime, region.as_str()) {
        (_, "unknown") => "We could not tell where you are, so we apply the strictest rules: we ask before using \
                           anything about you or your organization."
            .to_string(),
        (Regime::OptIn, r) => format!(
            "Your connection appears to come from <strong>{}</strong>. There, we use information about you or your \
             organization only if you agree.",
            e(&crate::places::region_in_words(r))
        ),
        (Regime::OptOut, r) => format!(
            "Your connection appears to come from <strong>{}</strong>. There, we may tailor the site to your \
             organization unless you object.",
            e(&crate::places::region_in_words(r))
        ),
    });
    used.push(match (&c.company, company_shown) {
        (Lookup::Matched(m), true) => format!(
            "Your network belongs to <strong>{}</strong>{}. We used this information about the company, not \
             about you personally.",
            e(&m.company.name),
            m.company
                .domain
                .as_deref()
                .map(|d| format!(" ({})", e(d)))
                .unwrap_or_default()
        ),
        (Lookup::Matched(_), false) => {
            "We cannot show which organization your network belongs to right now, so nothing was tailored to one."
                .to_string()
        }
        (Lookup::NoCompany(_), _) => "We looked up which organization your network belongs to and found none we \
                                      tailor content for."
            .to_string(),
        (Lookup::NotNeeded, _) => "Nothing on this page is tailored to organizations, so we did not look up which \
                                   organization your network belongs to."
            .to_string(),
        (Lookup::NotRun, _) => "We did not look up which organization your network belongs to: your choices or \
                                signals do not allow it."
            .to_string(),
    });
    let consent: Vec<String> = c
        .decision
        .reasons
        .iter()
        .filter_map(|r| reason_text(r))
        .fold(Vec::new(), |mut v, t| {
            if !v.contains(&t) {
                v.push(t);
            }
            v
        });
    let applied: Vec<String> = plan
        .verdicts
        .iter()
        .filter(|(_, v)| *v == Verdict::Applied)
        .map(|(p, _)| {
            // What the rule changed: its actions on this page, in words.
            let changes: Vec<String> = plan
                .actions
                .iter()
                .filter(|(r, _)| r.id == p.id)
                .filter_map(|(_, a)| change_words(a))
                .collect();
            let changes = if changes.is_empty() {
                String::new()
            } else {
                format!(": {}", changes.join("; "))
            };
            format!(
                "<li>Content {}{changes} <small>(rule <code>{}</code>)</small></li>",
                tier_words(p.tier),
                e(&p.id)
            )
        })
        .collect();
    let li = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("<li>{i}</li>"))
            .collect::<String>()
    };
    // Held out on purpose: say so plainly (the visitor's organization is in a comparison group).
    let held_out = plan
        .verdicts
        .iter()
        .any(|(_, v)| matches!(v, Verdict::HeldOut(_)));
    let comparison = if held_out && company_shown {
        "<p>You are seeing the standard page as part of a comparison: some organizations see the tailored \
         version and some the standard one, so that we can tell whether tailoring helps. Which group an \
         organization is in is decided by a fixed calculation on its name, not by anything about you.</p>"
    } else {
        ""
    };
    let shown = if applied.is_empty() {
        format!(
            "<p>Nothing on <code>{}</code> is tailored for you right now.</p>{comparison}",
            e(&asked)
        )
    } else {
        format!(
            "<p>On <code>{}</code> we show:</p><ul>{}</ul>{comparison}",
            e(&asked),
            applied.concat()
        )
    };
    let consent_html = if consent.is_empty() {
        match c.decision.jurisdiction.regime {
            Regime::OptOut => {
                "<p>You have not objected. You can object at any time below, or by turning on \
                               Global Privacy Control in your browser.</p>"
                    .to_string()
            }
            Regime::OptIn => "<p>No privacy signal or choice of yours applies.</p>".to_string(),
        }
    } else {
        format!("<ul>{}</ul>", li(&consent))
    };
    let permitted: Vec<&str> = c.decision.permitted.iter().map(|t| t.name()).collect();
    let details = format!(
        "<details><summary>Technical details</summary><p>Permitted tiers: <code>{}</code>. Reasons: <code>{}</code>. \
         Rule set <code>{}</code>.</p></details>",
        e(&permitted.join(", ")),
        e(&c.decision.reasons.join(" ")),
        e(plan.rules_version)
    );
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>Why am I seeing this?</title><link rel=\"stylesheet\" href=\"{p}consent.css\"></head>\n\
         <body><main class=\"cc-page\"><h1>Why am I seeing this?</h1>\
         <p>This site can tailor what it shows. Here is what it uses for you, in plain words.</p>\
         <h2>What we use</h2><ul>{used}</ul>\
         <h2>Your consent</h2>{consent_html}\
         <h2>What is tailored</h2>{shown}\
         <p>We keep a record of each of these decisions so that we can prove we followed your choices. It does not \
         contain your IP address.</p>\
         <h2>Change it</h2><p><a href=\"{p}consent?return={ret}\">Change your privacy choices</a> at any time. \
         <a href=\"{back}\">Back to the page</a></p>{details}</main></body></html>\n",
        p = e(prefix),
        used = li(&used),
        ret = e(&crate::feedback::encode_component(&asked)),
        back = e(&asked),
    );
    html_page(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_asked_page_is_a_path_on_this_site() {
        assert_eq!(asked_page(Some("page=%2Fpricing%3Fa%3D1")), "/pricing");
        assert_eq!(asked_page(Some("x=1&page=/a/b")), "/a/b");
        assert_eq!(asked_page(Some("page=https%3A%2F%2Fevil.example")), "/");
        assert_eq!(asked_page(Some("page=%2F%2Fevil.example")), "/");
        assert_eq!(asked_page(None), "/");
    }

    #[test]
    fn reasons_read_as_plain_words() {
        assert!(reason_text("gpc")
            .unwrap()
            .contains("Global Privacy Control"));
        assert!(reason_text("first-party:granted:firmographic")
            .unwrap()
            .contains("organization"));
        assert!(reason_text("tcf:purpose4-missing:personal")
            .unwrap()
            .contains("remember you"));
        assert!(reason_text("tcf:invalid:bad-base64")
            .unwrap()
            .contains("could not be read"));
        assert_eq!(reason_text("jurisdiction:opt-out:US-CA"), None);
    }
}
