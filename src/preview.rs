//! One made-up page request run through the proxy's decision pipeline: what `concierge explain` prints and
//! the console's preview shows. Both call [`run`], so the two can never disagree with each other or with the
//! proxy (which runs the same `pipeline::classify` / `pipeline::plan_page`).
//!
//! Invariants:
//! - Nothing here writes: no record, no metric, no cookie. The record is built as the proxy would write it and
//!   returned for display.
//! - A banner choice ([`Consent::Accept`] / [`Consent::Reject`]) is our consent cookie signed with the
//!   configured key; without one, with a key made for this run only (the proxy would then not honour it, which
//!   the preview says through the decision's reasons — it reads the cookie as any other).

use std::net::IpAddr;

use http::HeaderMap;

use crate::config::Settings;
use crate::pipeline::{PageDecision, RequestView};
use crate::sources::Sources;

/// The visitor's choice in our banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// No choice made: only the request's own signals (GPC, TCF, GPP…) count.
    None,
    /// Accepted: both tiers.
    Accept,
    /// Rejected: neither.
    Reject,
}

impl Consent {
    pub fn parse(text: &str) -> Option<Consent> {
        match text {
            "none" | "" => Some(Consent::None),
            "accept" => Some(Consent::Accept),
            "reject" => Some(Consent::Reject),
            _ => None,
        }
    }
}

/// The most HTML a preview rewrites.
pub const MAX_HTML: usize = 64 * 1024 * 1024;

/// The request to preview.
pub struct Input<'a> {
    pub ip: IpAddr,
    /// A path with query (`/pricing?utm_campaign=spring`) or an `http(s)://` URL; `https://` is read as the
    /// proxy reads an HTTPS request (the `__Host-` consent cookie).
    pub url: &'a str,
    pub headers: HeaderMap,
    pub consent: Consent,
    /// The origin's page to rewrite, if any (decoded), and the charset its `Content-Type` declares.
    pub html: Option<&'a [u8]>,
    pub charset: Option<&'static encoding_rs::Encoding>,
    /// The request id the record would carry.
    pub request_id: &'a str,
}

/// Why a preview cannot run.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    #[error("`{0}` is not a URL or path")]
    Url(String),
    #[error("cannot make a consent cookie key: {0}")]
    Key(String),
    #[error("the cookies do not form a valid header")]
    Cookie,
}

/// What the pipeline decided, and what the page would become.
pub struct Outcome<'v, 's> {
    pub view: &'v RequestView<'v>,
    /// The settings decided with (the configured ones, or with a key made for this run).
    pub settings: &'v Settings,
    pub decided: PageDecision<'s>,
    /// The decision record the proxy would write for a 200 text/html answer (client pseudonymized as
    /// configured; a keyed hash differs from the proxy's, whose key lives only in its memory).
    pub record: Option<crate::audit::DecisionRecord>,
    /// The page rewritten (with the rewriter's error, if it gave up part way), when HTML was given.
    pub rewritten: Option<(Vec<u8>, Option<String>)>,
    /// Planned changes whose selector finds nothing on the given page.
    pub warnings: Vec<String>,
}

/// Run the pipeline for `input` against one generation of sources, and hand the outcome to `f` (the outcome
/// borrows from the request view and the sources, so it is lent rather than returned).
pub fn run<R>(
    input: Input<'_>,
    sources: &Sources,
    settings: &Settings,
    f: impl FnOnce(&Outcome<'_, '_>) -> R,
) -> Result<R, PreviewError> {
    let uri = input
        .url
        .parse::<http::Uri>()
        .map_err(|_| PreviewError::Url(input.url.to_string()))?;
    let secure = input.url.starts_with("https://");
    let mut headers = input.headers;
    let owned;
    let settings = match input.consent {
        Consent::None => settings,
        choice => {
            let (cookie, generated) = consent_cookie(settings, choice == Consent::Accept, secure)?;
            let joined = match headers
                .get(http::header::COOKIE)
                .and_then(|v| v.to_str().ok())
            {
                Some(existing) => format!("{existing}; {cookie}"),
                None => cookie,
            };
            let value = http::HeaderValue::from_str(&joined).map_err(|_| PreviewError::Cookie)?;
            headers.insert(http::header::COOKIE, value);
            match generated {
                Some(s) => {
                    owned = s;
                    &owned
                }
                None => settings,
            }
        }
    };
    let mut view = RequestView {
        method: &http::Method::GET,
        request_id: input.request_id,
        path: uri.path(),
        query: uri.query(),
        headers: &headers,
        client: input.ip,
        secure,
        now: crate::classify::unix_now(),
        visitor_id: None,
    };
    // As the proxy does: the visitor cookie is read only while a `unit = "visitor"` experiment runs, and a
    // first visit that permits the personal tier gets a new id (so its arm is a fresh draw).
    let needs_visitor = sources.experiments.needs_visitor(view.now);
    if needs_visitor {
        view.visitor_id = view.visitor_cookie();
    }
    let classification = crate::pipeline::classify(&view, sources, settings);
    let minted = (needs_visitor
        && view.visitor_id.is_none()
        && classification
            .decision
            .permits(crate::consent::policy::Tier::Personal))
    .then(crate::experiments::assign::new_visitor_id)
    .flatten();
    if minted.is_some() {
        view.visitor_id = minted.as_deref();
    }
    let decided = crate::pipeline::plan_page(classification, &view, sources, settings);
    let record = decided.recorded(settings.audit.record_refusals).then(|| {
        let client = crate::audit::Pseudonymizer::new(
            settings.audit.client,
            settings.audit.client_key_rotation,
        )
        .client(input.ip);
        decided.record(&view, client, uri.path(), decided.planned_outcome())
    });
    let mut warnings = Vec::new();
    let rewritten = input.html.map(|body| {
        let selectors: Vec<&str> = decided
            .plan
            .actions
            .iter()
            .map(|(_, a)| a.selector.as_str())
            .collect();
        let counts = crate::rewrite::count_matches(body, &selectors);
        for ((p, a), n) in decided.plan.actions.iter().zip(counts) {
            if n == Some(0) {
                warnings.push(format!(
                    "`{}` ({}) matches nothing on this page: the change would not be made",
                    a.selector, p.id
                ));
            }
        }
        let mut rw = crate::rewrite::Rewriter::new(decided.ops.clone(), input.charset, MAX_HTML);
        let (head, e1) = rw.write(body);
        let (tail, e2) = rw.end();
        ([head, tail].concat(), e1.or(e2))
    });
    let outcome = Outcome {
        view: &view,
        settings,
        decided,
        record,
        rewritten,
        warnings,
    };
    Ok(f(&outcome))
}

/// Our consent cookie (`name=value`) as the banner would set it for `accept`, and the settings to decide with
/// when no key is configured (a key made for this run only).
fn consent_cookie(
    settings: &Settings,
    accept: bool,
    secure: bool,
) -> Result<(String, Option<Settings>), PreviewError> {
    use crate::consent::first_party::{CookieKey, CookieKeys, FirstParty, Integrity};
    let cookie = FirstParty {
        consent_id: "00000000000000000000000000000000".into(),
        banner_version: settings.consent.banner_version.clone(),
        time: crate::classify::unix_now(),
        firmographic: accept,
        personal: accept,
        integrity: Integrity::Signed,
    };
    let name = if secure {
        settings.consent.names.host_only_cookie()
    } else {
        settings.consent.names.first_party_cookie.clone()
    };
    let (encoded, generated) = match &settings.consent.keys.current {
        Some(key) => (cookie.encode(key), None),
        None => {
            let (_, key) = CookieKey::generate().map_err(|e| PreviewError::Key(e.to_string()))?;
            let encoded = cookie.encode(&key);
            let mut s = settings.clone();
            s.consent.keys = std::sync::Arc::new(CookieKeys {
                current: Some(key),
                previous: Vec::new(),
            });
            (encoded, Some(s))
        }
    };
    Ok((format!("{name}={encoded}"), generated))
}

/// An address the preview can use for a target account: the first host of its first network (the account's
/// name, file stem or domain, case-insensitive). `None` when no account matches or the matching account has
/// no network (an account known only through a company database).
pub fn account_address(
    f: &crate::firmographics::Firmographics,
    account: &str,
) -> Option<Result<IpAddr, String>> {
    let wanted = account.trim().to_lowercase();
    let a = f.accounts().iter().find(|a| {
        a.company.name.to_lowercase() == wanted
            || a.company.domain.as_deref().map(str::to_lowercase) == Some(wanted.clone())
            || a.file
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_lowercase)
                == Some(wanted.clone())
    })?;
    Some(match a.networks.first() {
        None => Err(format!(
            "the account {} has no network in its file ({}): give an IP address instead",
            a.company.name,
            a.file.display()
        )),
        Some(net) => Ok(first_host(net)),
    })
}

/// The first usable host of a network (the network address itself for /31, /32, /127 and /128).
fn first_host(net: &ipnetwork::IpNetwork) -> IpAddr {
    match net {
        ipnetwork::IpNetwork::V4(n) if n.prefix() < 31 => IpAddr::V4(std::net::Ipv4Addr::from(
            u32::from(n.network()).saturating_add(1),
        )),
        ipnetwork::IpNetwork::V6(n) if n.prefix() < 127 => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(n.network()).saturating_add(1),
        )),
        other => other.network(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_host_of_networks() {
        let h = |s: &str| first_host(&s.parse().unwrap()).to_string();
        assert_eq!(h("127.0.10.0/24"), "127.0.10.1");
        assert_eq!(h("192.0.2.7/32"), "192.0.2.7");
        assert_eq!(h("192.0.2.6/31"), "192.0.2.6");
        assert_eq!(h("2001:db8::/48"), "2001:db8::1");
        assert_eq!(h("2001:db8::5/128"), "2001:db8::5");
    }

    #[test]
    fn consent_names_round_trip() {
        assert_eq!(Consent::parse("none"), Some(Consent::None));
        assert_eq!(Consent::parse("accept"), Some(Consent::Accept));
        assert_eq!(Consent::parse("reject"), Some(Consent::Reject));
        assert_eq!(Consent::parse("maybe"), None);
    }
}
