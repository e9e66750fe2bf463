//! The classify phase: location → jurisdiction; consent signals → [`Decision`]; and the IP → company lookup
//! **only** when the Decision permits the firmographic tier ("no permitted tier, no lookup").
//!
//! Pure and synchronous, shared by the proxy and the CLI (`concierge consent decide`), so what an operator
//! sees on the command line is what a visitor gets.

use std::net::IpAddr;

use http::HeaderMap;
use serde::Serialize;

use crate::consent::policy::Decision;
use crate::consent::signals::{self, Signals};
use crate::consent::ConsentSettings;
use crate::firmographics::{CompanyMatch, Firmographics, Geo, NoCompany};

/// The company lookup's outcome.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Lookup {
    /// The Decision does not permit the firmographic tier: the lookup did not run.
    NotRun,
    /// Nothing on this page could use the company — no rule of the firmographic or personal tier can change
    /// it and no experiment counts it as a goal — so the lookup did not run (data minimization: no lookup, no
    /// record of one).
    NotNeeded,
    Matched(CompanyMatch),
    NoCompany(NoCompany),
}

impl Lookup {
    /// Whether the lookup ran (and is to be recorded).
    pub fn ran(&self) -> bool {
        matches!(self, Lookup::Matched(_) | Lookup::NoCompany(_))
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Lookup::NotRun => "not_run",
            Lookup::NotNeeded => "not_needed",
            Lookup::Matched(_) => "match",
            Lookup::NoCompany(n) => match n {
                NoCompany::NoMatch => "no_match",
                NoCompany::NotACompany { .. } => "not_a_company",
                NoCompany::Anonymizer { .. } => "anonymizer",
                NoCompany::Mobile => "mobile",
                NoCompany::DenyListed { .. } => "deny_listed",
            },
        }
    }
}

/// What the classify phase learned about one request.
#[derive(Debug, Clone)]
pub struct Classification {
    pub geo: Geo,
    pub signals: Signals,
    pub decision: Decision,
    pub company: Lookup,
}

impl Classification {
    /// The matched company's domain: the unit key of account experiments, the `company` of records.
    pub fn account(&self) -> Option<&str> {
        match &self.company {
            Lookup::Matched(m) => m.company.domain.as_deref(),
            _ => None,
        }
    }

    /// The decision record for this classification (the audit log's `decision` type). `applied`: ids of the
    /// rules whose changes go into the page; `outcome` as in [`crate::audit::DecisionRecord::outcome`].
    pub fn decision_record(
        &self,
        request_id: &str,
        client: Option<String>,
        page: &str,
        applied: Vec<String>,
        rules_version: &str,
        outcome: &'static str,
    ) -> crate::audit::DecisionRecord {
        crate::audit::DecisionRecord {
            time: crate::audit::writer::now_rfc3339(),
            request_id: request_id.to_string(),
            client,
            page: page.to_string(),
            jurisdiction: self.decision.jurisdiction.clone(),
            signals: crate::audit::SignalsSummary::of(&self.signals),
            consent_id: self.decision.consent_id.clone(),
            permitted: self.decision.permitted.iter().map(|t| t.name()).collect(),
            reasons: self.decision.reasons.clone(),
            banner: self.decision.show_banner,
            lookup: match &self.company {
                Lookup::NotRun => "not_run",
                Lookup::NotNeeded => "not_needed",
                Lookup::Matched(_) => "matched",
                Lookup::NoCompany(_) => "no_company",
            },
            company: self.account().map(str::to_string),
            rules: applied,
            rules_version: rules_version.to_string(),
            outcome,
            experiments: Vec::new(),
        }
    }

    /// The visitor the rules are planned for: this classification with the request's page, query, referrer host
    /// and cookie names (read from the request by [`crate::pipeline::RequestView`]).
    pub fn visitor<'a>(
        &'a self,
        path: &'a str,
        query: Option<&'a str>,
        referrer_host: Option<&'a str>,
        cookies: Vec<&'a str>,
        now: u64,
    ) -> crate::rules::Visitor<'a> {
        crate::rules::Visitor {
            path,
            query,
            referrer_host,
            cookies,
            geo: &self.geo,
            company: match &self.company {
                Lookup::Matched(m) => Some(m.company.as_ref()),
                _ => None,
            },
            decision: &self.decision,
            now,
        }
    }

    pub fn highest_tier(&self) -> &'static str {
        self.decision
            .permitted
            .iter()
            .next_back()
            .map_or("anonymous", |t| t.name())
    }
}

/// Classify a request from `client` carrying `headers` and `query`, at `now` (Unix seconds); `secure`: the
/// visitor reached the site over HTTPS (our consent cookie is then only believed under its `__Host-` name);
/// `needed`: something on the page could use the company (else it is not looked up, even where permitted).
#[allow(clippy::too_many_arguments)]
pub fn classify(
    firmographics: &Firmographics,
    consent: &ConsentSettings,
    client: IpAddr,
    headers: &HeaderMap,
    query: Option<&str>,
    secure: bool,
    now: u64,
    needed: bool,
) -> Classification {
    let geo = firmographics.geo(client);
    let jurisdiction = consent
        .policy
        .jurisdiction(geo.country.as_deref(), geo.subdivision.as_deref());
    let signals = signals::read(headers, query, &consent.names, &consent.keys, secure);
    let decision = consent.policy.decide(jurisdiction, &signals, now);
    let company = match decision.lookup_permit() {
        Some(_) if !needed => Lookup::NotNeeded,
        Some(permit) => match firmographics.company(client, permit) {
            Ok(m) => Lookup::Matched(m),
            Err(n) => Lookup::NoCompany(n),
        },
        None => Lookup::NotRun,
    };
    Classification {
        geo,
        signals,
        decision,
        company,
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmographics::FirmographicsSettings;
    use http::HeaderValue;

    /// Accounts on 10.20.0.0/16; 10.20.1.0/24 is in Germany (opt-in), 10.20.2.0/24 in California (opt-out).
    fn fixture() -> (tempfile::TempDir, Firmographics) {
        let dir = tempfile::tempdir().unwrap();
        let accounts = dir.path().join("accounts");
        std::fs::create_dir_all(&accounts).unwrap();
        std::fs::write(
            accounts.join("acme.example.toml"),
            "[account]\ndomain = \"acme.example\"\nname = \"Acme\"\nnetworks = [\"10.20.0.0/16\"]\n",
        )
        .unwrap();
        let geo = |net: &str, cc: &str, sub: Option<&str>| {
            (
                net.parse().unwrap(),
                Geo {
                    country: Some(cc.into()),
                    subdivision: sub.map(Into::into),
                },
            )
        };
        let settings = FirmographicsSettings {
            geo_static: vec![
                geo("10.20.1.0/24", "DE", None),
                geo("10.20.2.0/24", "US", Some("CA")),
            ],
            ..FirmographicsSettings::default()
        };
        let f = Firmographics::load(&settings, dir.path()).unwrap();
        (dir, f)
    }

    #[test]
    fn the_lookup_runs_only_when_the_decision_permits_it() {
        let (_dir, f) = fixture();
        let key = crate::consent::first_party::CookieKey::from_secret(&[1; 32]);
        let consent = ConsentSettings {
            keys: std::sync::Arc::new(crate::consent::first_party::CookieKeys::with(
                crate::consent::first_party::CookieKey::from_secret(&[1; 32]),
            )),
            ..ConsentSettings::default()
        };
        let now = unix_now();
        let de: IpAddr = "10.20.1.5".parse().unwrap();
        let ca: IpAddr = "10.20.2.5".parse().unwrap();
        let none = HeaderMap::new();
        let mut gpc = HeaderMap::new();
        gpc.insert("sec-gpc", HeaderValue::from_static("1"));

        // Opt-in, no signal: banner, no lookup.
        let c = classify(&f, &consent, de, &none, None, false, now, true);
        assert!(matches!(c.company, Lookup::NotRun));
        assert!(c.decision.show_banner);
        assert_eq!(c.decision.jurisdiction.region, "DE");
        // Opt-out, no signal: permitted, lookup runs and finds the account.
        let c = classify(&f, &consent, ca, &none, None, false, now, true);
        assert_eq!(c.highest_tier(), "personal");
        let Lookup::Matched(m) = &c.company else {
            panic!("{:?}", c.company)
        };
        assert_eq!(m.company.domain.as_deref(), Some("acme.example"));
        // Opt-out with GPC: withdrawn, no lookup.
        let c = classify(&f, &consent, ca, &gpc, None, false, now, true);
        assert!(matches!(c.company, Lookup::NotRun));
        assert!(c.decision.reasons.iter().any(|r| r == "gpc"));
        // Opt-in with our cookie granting firmographic only.
        let mut cookie = HeaderMap::new();
        cookie.insert(
            "cookie",
            HeaderValue::from_str(&format!(
                "concierge_consent={}",
                crate::consent::first_party::FirstParty {
                    consent_id: "abc".into(),
                    banner_version: "1".into(),
                    time: now,
                    firmographic: true,
                    personal: false,
                    integrity: crate::consent::first_party::Integrity::Signed,
                }
                .encode(&key)
            ))
            .unwrap(),
        );
        let c = classify(&f, &consent, de, &cookie, None, false, now, true);
        assert_eq!(c.highest_tier(), "firmographic");
        assert!(matches!(c.company, Lookup::Matched(_)));
        assert_eq!(c.decision.consent_id.as_deref(), Some("abc"));
        // Unknown location: opt-in by default.
        let c = classify(
            &f,
            &consent,
            "192.0.2.1".parse().unwrap(),
            &none,
            None,
            false,
            now,
            true,
        );
        assert_eq!(c.decision.jurisdiction.region, "unknown");
        assert!(matches!(c.company, Lookup::NotRun));
    }
}
