//! IP → company and IP → location, from data the operator controls, compiled off the hot path.
//!
//! Sources and precedence (first match wins):
//! 1. **account networks** from the rule files (`rules/accounts/*.toml`) — the ABM marketer's word beats any
//!    vendor's, even where a vendor has a more specific prefix;
//! 2. **vendor files** (CSV / JSON Lines), longest prefix across all files, the earlier file on equal prefixes;
//! 3. **MMDB company databases** in configured order, their organization name mapped onto an account through
//!    the accounts' names and aliases when it normalizes to the same name.
//!
//! A visitor on an ISP, mobile carrier, hosting or anonymizing network (vendor `type`, MMDB `user_type`,
//! connection type, anonymous-IP flags) or on a deny-listed organization is not treated as a company — except
//! on an account network, which the marketer declared.
//!
//! Invariant: a [`Firmographics`] is complete or not built at all; loading reports every broken source.

pub mod company;
pub mod mmdb;
pub(crate) mod table;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnetwork::IpNetwork;
use serde::Serialize;

use company::{normalize_org, Account, VendorEntry};
pub use company::{Company, SourceError};
use mmdb::{FieldPath, Mmdb, MmdbError};
pub use table::PrefixTable;

/// One MMDB company database and where its fields are.
#[derive(Debug, Clone)]
pub struct CompanyDbSettings {
    pub path: PathBuf,
    pub organization: FieldPath,
    pub domain: Option<FieldPath>,
    pub user_type: Option<FieldPath>,
}

/// Validated `[firmographics]` and `[geo]` settings.
#[derive(Debug, Clone, Default)]
pub struct FirmographicsSettings {
    /// How often the source files are checked for changes (`None`: only on SIGHUP).
    pub watch_interval: Option<std::time::Duration>,
    /// CSV / JSON Lines vendor files, in precedence order.
    pub files: Vec<PathBuf>,
    pub company_dbs: Vec<CompanyDbSettings>,
    /// Organizations never treated as companies (normalized names).
    pub deny_organizations: Vec<String>,
    pub geo_db: Option<PathBuf>,
    pub geo_country: Option<FieldPath>,
    pub geo_subdivision: Option<FieldPath>,
    /// Fixed locations for networks no database knows (internal ranges, tests, the demo); checked first.
    pub geo_static: Vec<(IpNetwork, Geo)>,
    pub anonymous_ip_db: Option<PathBuf>,
    pub connection_type_db: Option<PathBuf>,
}

/// Where a company match came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MatchSource {
    Account {
        file: PathBuf,
    },
    Vendor {
        file: PathBuf,
    },
    Mmdb {
        file: PathBuf,
        organization: String,
        via_alias: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompanyMatch {
    /// Serialized flat: the company's fields beside `source` and `network` (`company.name`, not
    /// `company.company.name`).
    #[serde(flatten)]
    pub company: Arc<Company>,
    pub source: MatchSource,
    /// The network the source stores the match under.
    #[serde(serialize_with = "ser_net")]
    pub network: Option<IpNetwork>,
}

fn ser_net<S: serde::Serializer>(n: &Option<IpNetwork>, s: S) -> Result<S::Ok, S::Error> {
    match n {
        Some(n) => s.serialize_str(&n.to_string()),
        None => s.serialize_none(),
    }
}

/// Why no company was assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NoCompany {
    /// No source knows the address.
    NoMatch,
    /// An ISP, carrier, hosting or similar network (the source's own classification).
    NotACompany {
        kind: String,
        name: String,
        source: PathBuf,
    },
    /// VPN, proxy, Tor or hosting exit according to the anonymous-IP database.
    Anonymizer { flag: String },
    /// A mobile (cellular) connection according to the connection-type database.
    Mobile,
    /// The organization is on the operator's deny list.
    DenyListed { organization: String },
}

/// Country and subdivision (e.g. US state) of an address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Geo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdivision: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Mmdb(#[from] MmdbError),
}

#[derive(Debug, Clone)]
struct AccountRef {
    company: Arc<Company>,
    file: Arc<Path>,
}

#[derive(Debug, Clone)]
enum VendorRef {
    Company(Arc<Company>, Arc<Path>),
    NotACompany {
        kind: String,
        name: String,
        file: Arc<Path>,
    },
}

struct CompanyDb {
    db: Mmdb,
    settings: CompanyDbSettings,
}

/// Every company and location source, compiled.
pub struct Firmographics {
    accounts: PrefixTable<(AccountRef, IpNetwork)>,
    account_list: Vec<Account>,
    /// Normalized account names and aliases → account.
    aliases: std::collections::HashMap<String, AccountRef>,
    vendors: PrefixTable<(VendorRef, IpNetwork)>,
    company_dbs: Vec<CompanyDb>,
    deny: Vec<String>,
    geo: Option<(Mmdb, FieldPath, FieldPath)>,
    geo_static: PrefixTable<Geo>,
    /// The anonymous-IP database and its flag paths (parsed once, checked with one lookup).
    anonymous: Option<(Mmdb, Vec<FieldPath>)>,
    connection_type: Option<(Mmdb, FieldPath)>,
}

const ANONYMOUS_FLAGS: &[&str] = &[
    "is_anonymous_vpn",
    "is_public_proxy",
    "is_tor_exit_node",
    "is_residential_proxy",
    "is_hosting_provider",
    "is_anonymous",
];

impl FirmographicsSettings {
    /// Every file the sources are read from (for change detection): the accounts folder and its files, vendor
    /// files, databases.
    pub fn watched_files(&self, rules_dir: &Path) -> Vec<PathBuf> {
        let accounts = rules_dir.join("accounts");
        let mut files = vec![accounts.clone()];
        if let Ok(entries) = std::fs::read_dir(&accounts) {
            let mut found: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            found.sort();
            files.extend(found);
        }
        files.extend(self.files.iter().cloned());
        files.extend(self.company_dbs.iter().map(|d| d.path.clone()));
        files.extend(
            [
                &self.geo_db,
                &self.anonymous_ip_db,
                &self.connection_type_db,
            ]
            .into_iter()
            .flatten()
            .cloned(),
        );
        files
    }
}

impl Firmographics {
    /// Load every source; all errors are returned together.
    pub fn load(
        settings: &FirmographicsSettings,
        rules_dir: &Path,
    ) -> Result<Firmographics, Vec<LoadError>> {
        let mut errors: Vec<LoadError> = Vec::new();
        let accounts = match company::load_accounts(rules_dir) {
            Ok(a) => a,
            Err(es) => {
                errors.extend(es.into_iter().map(LoadError::from));
                Vec::new()
            }
        };
        let mut account_entries = Vec::new();
        let mut aliases = std::collections::HashMap::new();
        for a in &accounts {
            let r = AccountRef {
                company: a.company.clone(),
                file: Arc::from(a.file.as_path()),
            };
            for n in &a.networks {
                account_entries.push((*n, (r.clone(), *n)));
            }
            for name in std::iter::once(&a.company.name).chain(a.aliases.iter()) {
                aliases
                    .entry(normalize_org(name))
                    .or_insert_with(|| r.clone());
            }
        }
        let mut vendor_entries = Vec::new();
        for file in &settings.files {
            match company::load_vendor_file(file) {
                Ok(rows) => {
                    let path: Arc<Path> = Arc::from(file.as_path());
                    for (net, entry) in rows {
                        let v = match entry {
                            VendorEntry::Company(c) => VendorRef::Company(c, path.clone()),
                            VendorEntry::NotACompany { kind, name } => VendorRef::NotACompany {
                                kind,
                                name,
                                file: path.clone(),
                            },
                        };
                        vendor_entries.push((net, (v, net)));
                    }
                }
                Err(e) => errors.push(e.into()),
            }
        }
        let mut open = |p: &Path| match Mmdb::open(p) {
            Ok(db) => Some(db),
            Err(e) => {
                errors.push(e.into());
                None
            }
        };
        let company_dbs: Vec<CompanyDb> = settings
            .company_dbs
            .iter()
            .filter_map(|s| {
                open(&s.path).map(|db| CompanyDb {
                    db,
                    settings: s.clone(),
                })
            })
            .collect();
        let geo = settings.geo_db.as_deref().and_then(&mut open).map(|db| {
            let country = settings
                .geo_country
                .clone()
                .unwrap_or_else(|| FieldPath::parse("country.iso_code").expect("static path"));
            let sub = settings.geo_subdivision.clone().unwrap_or_else(|| {
                FieldPath::parse("subdivisions.0.iso_code").expect("static path")
            });
            (db, country, sub)
        });
        let static_path = |p: &str| FieldPath::parse(p).expect("static path");
        let anonymous = settings
            .anonymous_ip_db
            .as_deref()
            .and_then(&mut open)
            .map(|db| (db, ANONYMOUS_FLAGS.iter().map(|f| static_path(f)).collect()));
        let connection_type = settings
            .connection_type_db
            .as_deref()
            .and_then(&mut open)
            .map(|db| (db, static_path("connection_type")));
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Firmographics {
            accounts: PrefixTable::build(account_entries),
            account_list: accounts,
            aliases,
            vendors: PrefixTable::build(vendor_entries),
            company_dbs,
            deny: settings
                .deny_organizations
                .iter()
                .map(|d| normalize_org(d))
                .collect(),
            geo,
            geo_static: PrefixTable::build(settings.geo_static.iter().cloned()),
            anonymous,
            connection_type,
        })
    }

    /// The target accounts loaded from the rule files.
    pub fn accounts(&self) -> &[Account] {
        &self.account_list
    }

    /// The company behind `ip`, or why there is none. Callers run this only when the consent decision
    /// permits the firmographic tier.
    /// The company behind `ip`. Needs the permit only a Decision permitting the firmographic tier gives.
    pub fn company(
        &self,
        ip: IpAddr,
        _permit: crate::consent::policy::LookupPermit,
    ) -> Result<CompanyMatch, NoCompany> {
        if let Some((a, net)) = self.accounts.lookup(ip) {
            return Ok(CompanyMatch {
                company: a.company.clone(),
                source: MatchSource::Account {
                    file: a.file.to_path_buf(),
                },
                network: Some(*net),
            });
        }
        if let Some((db, flags)) = &self.anonymous {
            if let Some(i) = db.first_true(ip, flags) {
                return Err(NoCompany::Anonymizer {
                    flag: ANONYMOUS_FLAGS[i].to_string(),
                });
            }
        }
        if let Some((db, path)) = &self.connection_type {
            if db
                .get(ip, path)
                .is_some_and(|f| f.value.eq_ignore_ascii_case("cellular"))
            {
                return Err(NoCompany::Mobile);
            }
        }
        if let Some((v, net)) = self.vendors.lookup(ip) {
            return match v {
                VendorRef::Company(c, file) => self.unless_denied(CompanyMatch {
                    company: c.clone(),
                    source: MatchSource::Vendor {
                        file: file.to_path_buf(),
                    },
                    network: Some(*net),
                }),
                VendorRef::NotACompany { kind, name, file } => Err(NoCompany::NotACompany {
                    kind: kind.clone(),
                    name: name.clone(),
                    source: file.to_path_buf(),
                }),
            };
        }
        for c in &self.company_dbs {
            let Some(org) = c.db.get(ip, &c.settings.organization) else {
                continue;
            };
            if let Some(kind) = c.settings.user_type.as_ref().and_then(|p| c.db.get(ip, p)) {
                if company::non_company_type(&kind.value) {
                    return Err(NoCompany::NotACompany {
                        kind: kind.value,
                        name: org.value,
                        source: c.db.path.clone(),
                    });
                }
            }
            let normalized = normalize_org(&org.value);
            if let Some(a) = self.aliases.get(&normalized) {
                return Ok(CompanyMatch {
                    company: a.company.clone(),
                    source: MatchSource::Mmdb {
                        file: c.db.path.clone(),
                        organization: org.value,
                        via_alias: true,
                    },
                    network: org.network,
                });
            }
            let domain = c
                .settings
                .domain
                .as_ref()
                .and_then(|p| c.db.get(ip, p))
                .map(|f| f.value.to_ascii_lowercase());
            return self.unless_denied(CompanyMatch {
                company: Arc::new(Company {
                    domain,
                    name: org.value.clone(),
                    ..Company::default()
                }),
                source: MatchSource::Mmdb {
                    file: c.db.path.clone(),
                    organization: org.value,
                    via_alias: false,
                },
                network: org.network,
            });
        }
        Err(NoCompany::NoMatch)
    }

    fn unless_denied(&self, m: CompanyMatch) -> Result<CompanyMatch, NoCompany> {
        let name = normalize_org(&m.company.name);
        if self.deny.contains(&name) {
            return Err(NoCompany::DenyListed {
                organization: m.company.name.clone(),
            });
        }
        Ok(m)
    }

    /// Country and subdivision of `ip` (empty without a geo database or data for the address).
    pub fn geo(&self, ip: IpAddr) -> Geo {
        if let Some(g) = self.geo_static.lookup(ip) {
            return g.clone();
        }
        let Some((db, country, sub)) = &self.geo else {
            return Geo::default();
        };
        Geo {
            country: db.get(ip, country).map(|f| f.value),
            subdivision: db.get(ip, sub).map(|f| f.value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mmdb::testdata;
    use super::*;
    use crate::consent::policy::LookupPermit;

    fn db(path: &str, org: &str, user_type: Option<&str>) -> CompanyDbSettings {
        CompanyDbSettings {
            path: testdata(path),
            organization: FieldPath::parse(org).unwrap(),
            domain: None,
            user_type: user_type.map(|u| FieldPath::parse(u).unwrap()),
        }
    }

    fn fixture() -> (tempfile::TempDir, FirmographicsSettings) {
        let dir = tempfile::tempdir().unwrap();
        let accounts = dir.path().join("rules/accounts");
        std::fs::create_dir_all(&accounts).unwrap();
        std::fs::write(
            accounts.join("bevtec.example.toml"),
            "[account]\ndomain = \"bevtec.example\"\nname = \"Bevtec Industrial\"\naliases = [\"Bevtec AB\"]\n",
        )
        .unwrap();
        std::fs::write(
            accounts.join("acme.example.toml"),
            "[account]\ndomain = \"acme.example\"\nname = \"Acme Corporation\"\nnetworks = [\"1.128.0.0/24\", \"2001:db8:ac::/48\"]\n",
        )
        .unwrap();
        let csv = dir.path().join("vendor.csv");
        std::fs::write(
            &csv,
            "network,domain,name,type\n1.128.0.0/11,telstra.example,Telstra,isp\n198.51.100.0/24,initech.example,Initech,business\n\
             203.0.113.0/24,,Amazon Technologies Inc.,business\n",
        )
        .unwrap();
        let settings = FirmographicsSettings {
            watch_interval: None,
            files: vec![csv],
            company_dbs: vec![
                db(
                    "GeoIP2-Enterprise-Test.mmdb",
                    "traits.organization",
                    Some("traits.user_type"),
                ),
                db("GeoIP2-ISP-Test.mmdb", "organization", None),
            ],
            deny_organizations: vec!["Amazon Technologies".into()],
            geo_db: Some(testdata("GeoIP2-City-Test.mmdb")),
            geo_country: None,
            geo_subdivision: None,
            geo_static: vec![(
                "10.1.0.0/16".parse().unwrap(),
                Geo {
                    country: Some("US".into()),
                    subdivision: Some("CA".into()),
                },
            )],
            anonymous_ip_db: Some(testdata("GeoIP2-Anonymous-IP-Test.mmdb")),
            connection_type_db: Some(testdata("GeoIP2-Connection-Type-Test.mmdb")),
        };
        (dir, settings)
    }

    #[test]
    fn sources_in_precedence_order() {
        let (dir, settings) = fixture();
        let f = Firmographics::load(&settings, &dir.path().join("rules"))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();

        // The account network wins over the vendor's ISP classification of the wider /11.
        let m = f
            .company(ip("1.128.0.9"), LookupPermit::operator())
            .unwrap();
        assert_eq!(m.company.domain.as_deref(), Some("acme.example"));
        assert!(matches!(m.source, MatchSource::Account { .. }));
        assert_eq!(m.network.unwrap().to_string(), "1.128.0.0/24");
        assert_eq!(
            f.company(ip("2001:db8:ac::1"), LookupPermit::operator())
                .unwrap()
                .company
                .name,
            "Acme Corporation"
        );

        // Outside the account: the vendor says ISP.
        assert!(
            matches!(f.company(ip("1.128.1.1"), LookupPermit::operator()), Err(NoCompany::NotACompany { kind, .. }) if kind == "isp")
        );
        assert_eq!(
            f.company(ip("198.51.100.4"), LookupPermit::operator())
                .unwrap()
                .company
                .name,
            "Initech"
        );
        assert!(matches!(
            f.company(ip("203.0.113.1"), LookupPermit::operator()),
            Err(NoCompany::DenyListed { .. })
        ));

        // MMDB organization ("Bevtec") mapped onto an account through its alias ("Bevtec AB").
        let m = f
            .company(ip("89.160.20.115"), LookupPermit::operator())
            .unwrap();
        assert_eq!(m.company.domain.as_deref(), Some("bevtec.example"));
        assert!(
            matches!(&m.source, MatchSource::Mmdb { via_alias: true, organization, .. } if organization == "Bevtec")
        );
        // The same database knows 81.2.69.160 as an office network, but the anonymous-IP database lists it as a
        // VPN exit: anonymizers are never companies.
        assert!(matches!(
            f.company(ip("81.2.69.160"), LookupPermit::operator()),
            Err(NoCompany::Anonymizer { .. })
        ));

        // MMDB user_type residential: not a company. Plain ISP database organization: a company by name.
        assert!(
            matches!(f.company(ip("214.78.120.5"), LookupPermit::operator()), Err(NoCompany::NotACompany { kind, .. }) if kind == "residential")
        );
        let m = f
            .company(ip("24.38.243.141"), LookupPermit::operator())
            .unwrap();
        assert_eq!(m.company.name, "LAWN MULLEN & GOOD INTERNATIONAL");

        // Anonymizer flag, and no match at all.
        assert!(matches!(
            f.company(ip("1.2.0.1"), LookupPermit::operator()),
            Err(NoCompany::Anonymizer { .. })
        ));
        assert_eq!(
            f.company(ip("192.0.2.1"), LookupPermit::operator()),
            Err(NoCompany::NoMatch)
        );

        // Geo.
        assert_eq!(
            f.geo(ip("216.160.83.56")),
            Geo {
                country: Some("US".into()),
                subdivision: Some("WA".into())
            }
        );
        assert_eq!(
            f.geo(ip("2001:218::1")).country.as_deref(),
            Some("JP"),
            "IPv6"
        );
        assert_eq!(f.geo(ip("10.0.0.1")), Geo::default(), "not in the database");
        assert_eq!(f.geo(ip("81.2.69.160")).country.as_deref(), Some("GB"));
        let fixed = f.geo(ip("10.1.2.3"));
        assert_eq!(
            (fixed.country.as_deref(), fixed.subdivision.as_deref()),
            (Some("US"), Some("CA")),
            "static entries answer first"
        );
    }

    #[test]
    fn broken_sources_are_all_reported() {
        let (dir, mut settings) = fixture();
        settings.geo_db = Some(testdata("GeoIP2-City-Test-Invalid-Node-Count.mmdb"));
        settings.files.push(dir.path().join("missing.csv"));
        std::fs::write(
            dir.path().join("rules/accounts/bad.toml"),
            "[account]\ndomain = \"bad.example\"\nname = \"Bad\"\nnetworks = [\"10.0.0.1/8\"]\n",
        )
        .unwrap();
        let errors = Firmographics::load(&settings, &dir.path().join("rules"))
            .err()
            .expect("errors");
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{text:#?}");
        assert!(text[0].contains("bad.toml:4:13"), "{text:#?}");
        assert!(text.iter().any(|t| t.contains("missing.csv")), "{text:#?}");
        assert!(
            text.iter().any(|t| t.contains("Invalid-Node-Count")),
            "{text:#?}"
        );
    }
}
