//! The consent Decision: which personalization tiers a request may use, and why.
//!
//! Rules (privacy-first defaults, all configurable through [`Policy`]):
//! - *anonymous* needs no consent;
//! - in an **opt-in** jurisdiction (EU/EEA/UK, Switzerland by default, and any unknown region) *firmographic*
//!   and *personal* need a positive grant: our first-party cookie's choice for the tier, or TCF consent to the
//!   tier's purposes (default 5 + 6, and 1 for *personal*, which reads a cookie);
//! - in an **opt-out** jurisdiction (US privacy states) they are permitted unless withdrawn;
//! - withdrawn everywhere by: GPC, a US Privacy or GPP usnat opt-out, our cookie's refusal — when signals
//!   conflict, the most restrictive wins;
//! - a grant older than 13 months is stale and counts as no grant; a TC string that breaks TCF 2.2 rules is
//!   ignored, with the violation as the reason.
//!
//! Every conclusion carries machine-readable reasons (`gpc`, `tcf:purpose5-missing`,
//! `jurisdiction:opt-in:no-signal`, …) for the audit log and `explain`.

use std::collections::BTreeSet;

use serde::Serialize;

use super::first_party::MAX_CLOCK_SKEW_SECONDS;
use super::gpp::Section;
use super::signals::Signals;

/// A personalization tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Anonymous,
    Firmographic,
    Personal,
}

impl Tier {
    /// The tier's name in rule files, reasons and output.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Anonymous => "anonymous",
            Tier::Firmographic => "firmographic",
            Tier::Personal => "personal",
        }
    }
}

/// The legal regime the visitor's location puts the request under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Regime {
    OptIn,
    OptOut,
}

impl Regime {
    pub fn name(self) -> &'static str {
        match self {
            Regime::OptIn => "opt-in",
            Regime::OptOut => "opt-out",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jurisdiction {
    pub regime: Regime,
    /// `DE`, `US-CA`, or `unknown`.
    pub region: String,
}

/// What the policy knows and decides with.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Countries under opt-in (ISO alpha-2).
    pub opt_in_countries: BTreeSet<String>,
    /// US states (or other subdivisions, as `CC-SS`) under opt-out.
    pub opt_out_regions: BTreeSet<String>,
    /// Regime for a known region in neither list.
    pub other_regions: Regime,
    /// Regime when the location is unknown (no geo data for the address).
    pub unknown_region: Regime,
    /// TCF purposes that grant each tier.
    pub firmographic_purposes: Vec<u8>,
    pub personal_purposes: Vec<u8>,
    /// DNT withdraws consent too (default: only recorded).
    pub dnt_is_opt_out: bool,
    /// Grants older than this many seconds are stale (13 months).
    pub max_age_seconds: u64,
}

/// The 27 EU member states.
pub const EU: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
];
/// EEA members outside the EU.
pub const EEA_EXTRA: &[&str] = &["IS", "LI", "NO"];
/// US states with a comprehensive privacy law in force or enacted (2026).
pub const US_PRIVACY_STATES: &[&str] = &[
    "CA", "VA", "CO", "CT", "UT", "MT", "OR", "TX", "FL", "DE", "IA", "NE", "NH", "NJ", "TN", "MN",
    "MD", "IN", "KY", "RI",
];

impl Default for Policy {
    fn default() -> Self {
        let opt_in: BTreeSet<String> = EU
            .iter()
            .chain(EEA_EXTRA)
            .chain(&["GB", "CH"])
            .map(|c| c.to_string())
            .collect();
        Policy {
            opt_in_countries: opt_in,
            opt_out_regions: US_PRIVACY_STATES
                .iter()
                .map(|s| format!("US-{s}"))
                .collect(),
            other_regions: Regime::OptIn,
            unknown_region: Regime::OptIn,
            firmographic_purposes: vec![5, 6],
            personal_purposes: vec![1, 5, 6],
            dnt_is_opt_out: false,
            max_age_seconds: 13 * 30 * 24 * 3600 + 5 * 24 * 3600,
        }
    }
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub jurisdiction: Jurisdiction,
    pub permitted: BTreeSet<Tier>,
    pub reasons: Vec<String>,
    /// Opt-in region and nothing decisive: ask with the banner.
    pub show_banner: bool,
    /// The consent id of the first-party cookie the Decision relied on (signed by this proxy, fresh), so a
    /// reviewer can join the decision to its proof-of-consent record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
    /// What decided the firmographic tier, as counted in the audit log's per-interval `counts` records:
    /// `opt-out:not-withdrawn`, `first-party:granted`, `tcf:granted` (permitted), or the first withdrawal or
    /// missing grant — `gpc`, `dnt`, `usp:opt-out`, `gpp:opt-out`, `unreadable`, `first-party:refused`,
    /// `tcf:refused`, `opt-in:no-grant`.
    pub basis: &'static str,
}

impl Decision {
    pub fn permits(&self, tier: Tier) -> bool {
        self.permitted.contains(&tier)
    }

    /// The permit the company lookup needs: only a Decision that permits the firmographic tier gives one, so
    /// "no permitted tier, no lookup" is a property of the types.
    pub fn lookup_permit(&self) -> Option<LookupPermit> {
        self.permits(Tier::Firmographic).then_some(LookupPermit(()))
    }
}

/// What [`crate::firmographics::Firmographics::company`] requires. Made only by
/// [`Decision::lookup_permit`] — and by [`LookupPermit::operator`] for the operator's own `concierge lookup`,
/// which looks up addresses the operator types, never a visitor's.
#[derive(Debug)]
pub struct LookupPermit(());

impl LookupPermit {
    /// For `concierge lookup` and tests: an operator looking up an address by hand, outside any request.
    pub fn operator() -> LookupPermit {
        LookupPermit(())
    }
}

impl Policy {
    pub fn jurisdiction(&self, country: Option<&str>, subdivision: Option<&str>) -> Jurisdiction {
        let Some(country) = country.map(str::to_ascii_uppercase) else {
            return Jurisdiction {
                regime: self.unknown_region,
                region: "unknown".into(),
            };
        };
        if let Some(sub) = subdivision {
            let region = format!("{country}-{}", sub.to_ascii_uppercase());
            if self.opt_out_regions.contains(&region) {
                return Jurisdiction {
                    regime: Regime::OptOut,
                    region,
                };
            }
        }
        let regime = if self.opt_in_countries.contains(&country) {
            Regime::OptIn
        } else {
            self.other_regions
        };
        let region = match subdivision {
            Some(s) if country == "US" => format!("US-{}", s.to_ascii_uppercase()),
            _ => country,
        };
        Jurisdiction { regime, region }
    }

    /// Decide for `signals` in `jurisdiction`, at `now` (Unix seconds).
    pub fn decide(&self, jurisdiction: Jurisdiction, signals: &Signals, now: u64) -> Decision {
        let mut reasons = vec![format!(
            "jurisdiction:{}:{}",
            jurisdiction.regime.name(),
            jurisdiction.region
        )];
        // Withdrawals, from any signal.
        let mut withdrawn_all = false;
        // The first withdrawal found, for the decision's basis.
        let mut withdrawal: Option<&'static str> = None;
        if signals.gpc {
            reasons.push("gpc".into());
            withdrawn_all = true;
            withdrawal.get_or_insert("gpc");
        }
        if signals.dnt {
            reasons.push(
                if self.dnt_is_opt_out {
                    "dnt:opt-out"
                } else {
                    "dnt:recorded"
                }
                .into(),
            );
            withdrawn_all |= self.dnt_is_opt_out;
            if self.dnt_is_opt_out {
                withdrawal.get_or_insert("dnt");
            }
        }
        match &signals.usp {
            Some(Ok(u)) if u.opted_out() => {
                reasons.push("usp:opt-out".into());
                withdrawn_all = true;
                withdrawal.get_or_insert("usp:opt-out");
            }
            Some(Err(e)) => {
                withdrawn_all |= unreadable(&mut reasons, "usp", e);
                withdrawal.get_or_insert("unreadable");
            }
            _ => {}
        }
        let mut gpp_tcf = None;
        match &signals.gpp {
            Some(Ok(g)) => {
                for (name, section) in &g.sections {
                    match section {
                        Section::UsNat(n) if n.opted_out() => {
                            reasons.push("gpp:usnat:opt-out".into());
                            withdrawn_all = true;
                            withdrawal.get_or_insert("gpp:opt-out");
                        }
                        Section::UsState(st) if st.opted_out() => {
                            reasons.push(format!("gpp:{name}:opt-out"));
                            withdrawn_all = true;
                            withdrawal.get_or_insert("gpp:opt-out");
                        }
                        Section::Usp(u) if u.opted_out() => {
                            reasons.push("gpp:uspv1:opt-out".into());
                            withdrawn_all = true;
                            withdrawal.get_or_insert("gpp:opt-out");
                        }
                        Section::Tcf(t) if name == "tcfeuv2" => gpp_tcf = Some(t.as_ref()),
                        _ => {}
                    }
                }
            }
            Some(Err(e)) => {
                withdrawn_all |= unreadable(&mut reasons, "gpp", e);
                withdrawal.get_or_insert("unreadable");
            }
            None => {}
        }
        // Our own cookie: a grant or refusal per tier. Its refusals count whatever its state (a withdrawal needs
        // no proof); its grants only from a cookie the proxy signed, dated neither in the future nor too long ago.
        let mut first_party = None;
        let mut first_party_grants = false;
        match &signals.first_party {
            Some(Ok(fp)) if now.saturating_sub(fp.time) > self.max_age_seconds => {
                reasons.push("first-party:stale".into());
            }
            Some(Ok(fp)) => {
                first_party = Some(fp);
                if !fp.integrity.verified() {
                    reasons.push(format!("first-party:unverified:{}", fp.integrity.token()));
                } else if fp.time > now + MAX_CLOCK_SKEW_SECONDS {
                    reasons.push("first-party:future".into());
                } else {
                    first_party_grants = true;
                }
            }
            Some(Err(e)) => {
                withdrawn_all |= unreadable(&mut reasons, "first-party", e);
                withdrawal.get_or_insert("unreadable");
            }
            None => {}
        }
        // TCF: the standalone string, else the GPP section.
        let mut tcf_unreadable = false;
        let tcf = match &signals.tcf {
            Some(Ok(t)) => Some(t),
            Some(Err(e)) => {
                // An unreadable TC string might be a refusal: it withdraws, and no other copy (a GPP section)
                // grants in its place.
                tcf_unreadable = true;
                unreadable(&mut reasons, "tcf", e);
                withdrawal.get_or_insert("unreadable");
                None
            }
            None => gpp_tcf,
        };
        let tcf = tcf.filter(|t| {
            let violations = t.violations();
            let updated = t.last_updated_deciseconds / 10;
            let stale = now.saturating_sub(updated) > self.max_age_seconds;
            let future = updated > now + MAX_CLOCK_SKEW_SECONDS;
            if stale {
                reasons.push("tcf:stale".into());
            }
            if future {
                reasons.push("tcf:future".into());
            }
            reasons.extend(violations.iter().cloned());
            violations.is_empty() && !stale && !future
        });

        let mut permitted = BTreeSet::from([Tier::Anonymous]);
        let mut decisive = withdrawn_all;
        let mut basis = "opt-in:no-grant";
        for (tier, purposes, name) in [
            (
                Tier::Firmographic,
                &self.firmographic_purposes,
                "firmographic",
            ),
            (Tier::Personal, &self.personal_purposes, "personal"),
        ] {
            let fp_choice = first_party.map(|fp| {
                if tier == Tier::Firmographic {
                    fp.firmographic
                } else {
                    fp.personal
                }
            });
            if fp_choice == Some(false) {
                reasons.push(format!("first-party:refused:{name}"));
            }
            // An unverified cookie's grant is no grant, and no choice: the banner asks again.
            let fp_choice = fp_choice.filter(|&c| !c || first_party_grants);
            if fp_choice.is_some() && first_party_grants {
                decisive = true;
            }
            let tcf_grant = tcf.map(|t| {
                let missing: Vec<u8> = purposes
                    .iter()
                    .copied()
                    .filter(|p| !t.purpose_consents.contains(p))
                    .collect();
                for p in &missing {
                    reasons.push(format!("tcf:purpose{p}-missing:{name}"));
                }
                missing.is_empty()
            });
            if tcf.is_some() {
                decisive = true;
            }
            // A TC string that lacks the tier's purposes (or cannot be read) is a refusal like any other: when
            // signals disagree, the most restrictive wins — also over our own cookie's grant.
            let withdrawn = withdrawn_all
                || fp_choice == Some(false)
                || tcf_grant == Some(false)
                || tcf_unreadable;
            let granted = fp_choice == Some(true) || tcf_grant == Some(true);
            if granted && !withdrawn {
                reasons.push(format!(
                    "{}:granted:{name}",
                    if fp_choice == Some(true) {
                        "first-party"
                    } else {
                        "tcf"
                    }
                ));
            }
            let allowed = !withdrawn
                && match jurisdiction.regime {
                    Regime::OptIn => granted,
                    // Opt-out: no withdrawal means permitted.
                    Regime::OptOut => true,
                };
            if allowed {
                permitted.insert(tier);
            }
            if tier == Tier::Firmographic {
                basis = if allowed {
                    if fp_choice == Some(true) {
                        "first-party:granted"
                    } else if tcf_grant == Some(true) {
                        "tcf:granted"
                    } else {
                        "opt-out:not-withdrawn"
                    }
                } else if let Some(w) = withdrawal {
                    w
                } else if fp_choice == Some(false) {
                    "first-party:refused"
                } else if tcf_unreadable {
                    "unreadable"
                } else if tcf_grant == Some(false) {
                    "tcf:refused"
                } else {
                    "opt-in:no-grant"
                };
            }
        }
        let show_banner = jurisdiction.regime == Regime::OptIn && !decisive;
        if show_banner {
            reasons.push(format!(
                "jurisdiction:opt-in:no-signal{}",
                if signals.tcf.is_some() || signals.first_party.is_some() {
                    ":unusable"
                } else {
                    ""
                }
            ));
        }
        reasons.dedup();
        let consent_id = first_party
            .filter(|_| first_party_grants)
            .map(|fp| fp.consent_id.clone());
        Decision {
            jurisdiction,
            permitted,
            reasons,
            show_banner,
            consent_id,
            basis,
        }
    }
}

/// An unreadable signal: its reason (`cookie:undecodable:<name>` as it is, anything else as
/// `<signal>:invalid:<why>`) and `<signal>:unreadable:withdrawn` — a withdrawal we cannot read counts as one.
/// Returns true (withdrawn) for the caller to apply.
fn unreadable(reasons: &mut Vec<String>, signal: &str, e: &str) -> bool {
    if e.starts_with("cookie:") {
        reasons.push(e.to_string());
    } else {
        reasons.push(format!("{signal}:invalid:{}", slug(e)));
    }
    reasons.push(format!("{signal}:unreadable:withdrawn"));
    true
}

/// A reason's free text as a short, log-safe token.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|w| !w.is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::super::signals::{FirstParty, Integrity, Signals};
    use super::super::{gpp, tcf, usp};
    use super::*;

    const NOW: u64 = 1_764_000_000; // 2025-11-24

    fn tc(purposes: &[u8], li: &[u8], policy: u8, last_updated: u64) -> tcf::TcString {
        let mut t = tcf::decode("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA").unwrap();
        t.purpose_consents = purposes.iter().copied().collect();
        t.purpose_legitimate_interests = li.iter().copied().collect();
        t.policy_version = policy;
        t.last_updated_deciseconds = last_updated * 10;
        t
    }

    fn fp(f: bool, p: bool, time: u64) -> FirstParty {
        FirstParty {
            consent_id: "id".into(),
            banner_version: "b1".into(),
            time,
            firmographic: f,
            personal: p,
            integrity: Integrity::Signed,
        }
    }

    fn decide(country: Option<&str>, sub: Option<&str>, s: &Signals) -> Decision {
        let p = Policy::default();
        p.decide(p.jurisdiction(country, sub), s, NOW)
    }

    fn tiers(d: &Decision) -> Vec<Tier> {
        d.permitted.iter().copied().collect()
    }

    use Tier::*;

    #[test]
    fn jurisdictions() {
        let p = Policy::default();
        assert_eq!(p.jurisdiction(Some("de"), None).regime, Regime::OptIn);
        assert_eq!(p.jurisdiction(Some("GB"), None).regime, Regime::OptIn);
        assert_eq!(p.jurisdiction(Some("CH"), None).regime, Regime::OptIn);
        let ca = p.jurisdiction(Some("US"), Some("CA"));
        assert_eq!((ca.regime, ca.region.as_str()), (Regime::OptOut, "US-CA"));
        assert_eq!(
            p.jurisdiction(Some("US"), Some("AL")).regime,
            Regime::OptIn,
            "other regions: opt-in"
        );
        assert_eq!(p.jurisdiction(None, None).region, "unknown");
    }

    #[test]
    fn opt_in_table() {
        let none = Signals::default();
        let d = decide(Some("DE"), None, &none);
        assert_eq!(tiers(&d), [Anonymous]);
        assert!(d.show_banner);
        assert!(d
            .reasons
            .contains(&"jurisdiction:opt-in:no-signal".to_string()));

        let granted = Signals {
            tcf: Some(Ok(tc(&[1, 5, 6], &[], 4, NOW - 100))),
            ..Default::default()
        };
        assert_eq!(
            tiers(&decide(Some("DE"), None, &granted)),
            [Anonymous, Firmographic, Personal]
        );

        let partial = Signals {
            tcf: Some(Ok(tc(&[5, 6], &[], 4, NOW - 100))),
            ..Default::default()
        };
        let d = decide(Some("FR"), None, &partial);
        assert_eq!(tiers(&d), [Anonymous, Firmographic]);
        assert!(d
            .reasons
            .contains(&"tcf:purpose1-missing:personal".to_string()));
        assert!(!d.show_banner, "a TC string is a decisive signal");

        let no5 = Signals {
            tcf: Some(Ok(tc(&[1, 6], &[], 4, NOW - 100))),
            ..Default::default()
        };
        let d = decide(Some("IT"), None, &no5);
        assert_eq!(tiers(&d), [Anonymous]);
        assert!(d
            .reasons
            .contains(&"tcf:purpose5-missing:firmographic".to_string()));

        let ours = Signals {
            first_party: Some(Ok(fp(true, false, NOW - 10))),
            ..Default::default()
        };
        let d = decide(Some("NL"), None, &ours);
        assert_eq!(tiers(&d), [Anonymous, Firmographic]);
        assert!(d
            .reasons
            .contains(&"first-party:refused:personal".to_string()));

        // Unknown region: opt-in.
        assert_eq!(tiers(&decide(None, None, &none)), [Anonymous]);
    }

    #[test]
    fn withdrawals_win() {
        let granted = || tc(&[1, 5, 6], &[], 4, NOW - 100);
        let gpc = Signals {
            gpc: true,
            tcf: Some(Ok(granted())),
            ..Default::default()
        };
        let d = decide(Some("DE"), None, &gpc);
        assert_eq!(tiers(&d), [Anonymous]);
        assert!(d.reasons.contains(&"gpc".to_string()));
        let refused = Signals {
            tcf: Some(Ok(granted())),
            first_party: Some(Ok(fp(false, false, NOW))),
            ..Default::default()
        };
        assert_eq!(
            tiers(&decide(Some("DE"), None, &refused)),
            [Anonymous],
            "most restrictive wins"
        );
    }

    #[test]
    fn opt_out_table() {
        let none = Signals::default();
        let d = decide(Some("US"), Some("CA"), &none);
        assert_eq!(tiers(&d), [Anonymous, Firmographic, Personal]);
        assert!(!d.show_banner);
        for (name, s) in [
            (
                "gpc",
                Signals {
                    gpc: true,
                    ..Default::default()
                },
            ),
            (
                "usp",
                Signals {
                    usp: Some(Ok(usp::decode("1NYN").unwrap())),
                    ..Default::default()
                },
            ),
            (
                "usnat",
                Signals {
                    gpp: Some(Ok(gpp::decode("DBABLA~BVVVVVVVVWA").unwrap())),
                    ..Default::default()
                },
            ),
            (
                "usca",
                Signals {
                    gpp: Some(Ok(gpp::decode("DBABBg~BVVVVVVY").unwrap())),
                    ..Default::default()
                },
            ),
            (
                "usco-gpc",
                Signals {
                    gpp: Some(Ok(gpp::decode("DBABJg~BAAAAEA.YA").unwrap())),
                    ..Default::default()
                },
            ),
            (
                "first-party",
                Signals {
                    first_party: Some(Ok(fp(false, false, NOW))),
                    ..Default::default()
                },
            ),
        ] {
            assert_eq!(
                tiers(&decide(Some("US"), Some("CA"), &s)),
                [Anonymous],
                "{name}"
            );
        }
        let d = decide(
            Some("US"),
            Some("CA"),
            &Signals {
                gpp: Some(Ok(gpp::decode("DBABBg~BVVVVVVY").unwrap())),
                ..Default::default()
            },
        );
        assert!(d.reasons.contains(&"gpp:usca:opt-out".to_string()));
        let not_applicable = Signals {
            gpp: Some(Ok(gpp::decode("DBABBg~BAAAAACA").unwrap())),
            ..Default::default()
        };
        assert_eq!(
            tiers(&decide(Some("US"), Some("CA"), &not_applicable)).len(),
            3
        );
        let no_opt_out = Signals {
            usp: Some(Ok(usp::decode("1YNN").unwrap())),
            ..Default::default()
        };
        assert_eq!(tiers(&decide(Some("US"), Some("VA"), &no_opt_out)).len(), 3);
        let dnt = Signals {
            dnt: true,
            ..Default::default()
        };
        let d = decide(Some("US"), Some("CA"), &dnt);
        assert_eq!(
            tiers(&d).len(),
            3,
            "DNT is recorded, not an opt-out, by default"
        );
        assert!(d.reasons.contains(&"dnt:recorded".to_string()));
    }

    #[test]
    fn stale_invalid_and_violating_signals_grant_nothing() {
        let stale = Signals {
            tcf: Some(Ok(tc(&[1, 5, 6], &[], 4, NOW - 400 * 86_400))),
            ..Default::default()
        };
        let d = decide(Some("DE"), None, &stale);
        assert_eq!(tiers(&d), [Anonymous]);
        assert!(d.reasons.contains(&"tcf:stale".to_string()));
        let old_policy = Signals {
            tcf: Some(Ok(tc(&[1, 5, 6], &[], 2, NOW))),
            ..Default::default()
        };
        assert!(decide(Some("DE"), None, &old_policy)
            .reasons
            .contains(&"tcf:policy-version-2-before-2.2".to_string()));
        let li = Signals {
            tcf: Some(Ok(tc(&[1, 5, 6], &[4], 4, NOW))),
            ..Default::default()
        };
        assert_eq!(tiers(&decide(Some("DE"), None, &li)), [Anonymous]);
        let garbage = Signals {
            tcf: Some(Err("the string ends inside field `CmpId`".into())),
            ..Default::default()
        };
        let d = decide(Some("DE"), None, &garbage);
        assert_eq!(tiers(&d), [Anonymous]);
        assert!(
            d.reasons
                .iter()
                .any(|r| r.starts_with("tcf:invalid:the-string-ends")),
            "{:?}",
            d.reasons
        );
        assert!(d.show_banner);
        let old_choice = Signals {
            first_party: Some(Ok(fp(true, true, NOW - 500 * 86_400))),
            ..Default::default()
        };
        let d = decide(Some("DE"), None, &old_choice);
        assert_eq!(tiers(&d), [Anonymous]);
        assert!(d.reasons.contains(&"first-party:stale".to_string()));
    }

    #[test]
    fn the_basis_names_what_decided_the_firmographic_tier() {
        let basis = |country, sub, s: &Signals| decide(Some(country), sub, s).basis;
        assert_eq!(
            basis("US", Some("CA"), &Signals::default()),
            "opt-out:not-withdrawn"
        );
        assert_eq!(basis("DE", None, &Signals::default()), "opt-in:no-grant");
        let gpc = Signals {
            gpc: true,
            usp: Some(Ok(usp::decode("1YYN").unwrap())),
            ..Default::default()
        };
        assert_eq!(basis("US", Some("CA"), &gpc), "gpc", "the first withdrawal");
        let usp = Signals {
            usp: Some(Ok(usp::decode("1YYN").unwrap())),
            ..Default::default()
        };
        assert_eq!(basis("US", Some("CA"), &usp), "usp:opt-out");
        let refused = Signals {
            first_party: Some(Ok(fp(false, false, NOW))),
            ..Default::default()
        };
        assert_eq!(basis("US", Some("CA"), &refused), "first-party:refused");
        let granted = Signals {
            first_party: Some(Ok(fp(true, false, NOW))),
            ..Default::default()
        };
        assert_eq!(basis("DE", None, &granted), "first-party:granted");
        let broken = Signals {
            gpp: Some(Err("bad".into())),
            ..Default::default()
        };
        assert_eq!(basis("US", Some("CA"), &broken), "unreadable");
    }

    /// Review finding: our cookie's grant beat a TCF string that refused the tier's purposes; the most
    /// restrictive signal wins.
    #[test]
    fn a_tcf_refusal_beats_our_cookies_grant() {
        for (country, sub) in [("DE", None), ("US", Some("CA"))] {
            let s = Signals {
                first_party: Some(Ok(fp(true, true, NOW - 10))),
                tcf: Some(Ok(tc(&[1], &[], 4, NOW - 100))),
                ..Default::default()
            };
            let d = decide(Some(country), sub, &s);
            assert_eq!(tiers(&d), [Anonymous], "{country}: {:?}", d.reasons);
            assert_eq!(d.basis, "tcf:refused");
        }
    }

    #[test]
    fn grants_from_the_future_are_not_believed() {
        // Regression: a cookie dated 2100 granted both tiers in an opt-in region and never went stale.
        let year_2100 = 4_102_444_800;
        let future = Signals {
            first_party: Some(Ok(fp(true, true, year_2100))),
            ..Default::default()
        };
        let d = decide(Some("DE"), None, &future);
        assert_eq!(tiers(&d), [Anonymous]);
        assert!(d.reasons.contains(&"first-party:future".to_string()));
        assert!(d.show_banner);
        assert_eq!(d.consent_id, None);
        // Within the allowed clock skew: believed.
        let skewed = Signals {
            first_party: Some(Ok(fp(true, true, NOW + 120))),
            ..Default::default()
        };
        assert_eq!(tiers(&decide(Some("DE"), None, &skewed)).len(), 3);
        let tcf_future = Signals {
            tcf: Some(Ok(tc(&[1, 5, 6], &[], 4, year_2100))),
            ..Default::default()
        };
        let d = decide(Some("DE"), None, &tcf_future);
        assert_eq!(tiers(&d), [Anonymous]);
        assert!(d.reasons.contains(&"tcf:future".to_string()));
    }

    #[test]
    fn unverified_cookies_grant_nothing_but_their_refusals_count() {
        for integrity in [
            Integrity::BadTag,
            Integrity::Unsigned,
            Integrity::UnknownKey,
        ] {
            let mut granted = fp(true, true, NOW - 10);
            granted.integrity = integrity;
            let s = Signals {
                first_party: Some(Ok(granted.clone())),
                ..Default::default()
            };
            let d = decide(Some("DE"), None, &s);
            assert_eq!(tiers(&d), [Anonymous], "{integrity:?}");
            assert!(d.show_banner, "no choice: the banner asks again");
            assert!(d
                .reasons
                .contains(&format!("first-party:unverified:{}", integrity.token())));
            assert_eq!(d.consent_id, None);
            let mut refused = granted;
            refused.firmographic = false;
            refused.personal = false;
            let s = Signals {
                first_party: Some(Ok(refused)),
                ..Default::default()
            };
            let d = decide(Some("US"), Some("CA"), &s);
            assert_eq!(tiers(&d), [Anonymous], "a refusal needs no proof");
        }
        let mut old_key = fp(true, false, NOW - 10);
        old_key.integrity = Integrity::PreviousKey;
        let d = decide(
            Some("DE"),
            None,
            &Signals {
                first_party: Some(Ok(old_key)),
                ..Default::default()
            },
        );
        assert_eq!(tiers(&d), [Anonymous, Firmographic]);
        assert_eq!(d.consent_id.as_deref(), Some("id"));
    }

    #[test]
    fn unreadable_withdrawals_count_as_withdrawals() {
        for (name, s) in [
            (
                "usp",
                Signals {
                    usp: Some(Err("cookie:undecodable:usprivacy".into())),
                    ..Default::default()
                },
            ),
            (
                "gpp",
                Signals {
                    gpp: Some(Err("the string ends inside field `x`".into())),
                    ..Default::default()
                },
            ),
            (
                "first-party",
                Signals {
                    first_party: Some(Err("cookie:ambiguous:concierge_consent".into())),
                    ..Default::default()
                },
            ),
            (
                "tcf",
                Signals {
                    tcf: Some(Err("bad base64".into())),
                    ..Default::default()
                },
            ),
        ] {
            let d = decide(Some("US"), Some("CA"), &s);
            assert_eq!(tiers(&d), [Anonymous], "{name}: {:?}", d.reasons);
            assert!(
                d.reasons.contains(&format!("{name}:unreadable:withdrawn")),
                "{name}: {:?}",
                d.reasons
            );
        }
        let d = decide(
            Some("US"),
            Some("CA"),
            &Signals {
                usp: Some(Err("cookie:undecodable:usprivacy".into())),
                ..Default::default()
            },
        );
        assert!(d
            .reasons
            .contains(&"cookie:undecodable:usprivacy".to_string()));
    }
}
