//! `[client_ip]`, `[firmographics]` and `[geo]`: who the client is, which company and where.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{defaults, resolve, Check, ListenerSettings};
use crate::firmographics::mmdb::FieldPath;
use crate::firmographics::Geo;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientIp {
    pub trusted_proxies: Option<Vec<String>>,
    pub header: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFirmographics {
    pub watch_interval: Option<String>,
    pub files: Option<Vec<PathBuf>>,
    pub deny_organizations: Option<Vec<String>>,
    pub mmdb: Option<Vec<RawCompanyDb>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompanyDb {
    pub path: Option<PathBuf>,
    pub organization: Option<String>,
    pub domain: Option<String>,
    pub user_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeo {
    pub mmdb: Option<PathBuf>,
    pub country: Option<String>,
    pub subdivision: Option<String>,
    pub anonymous_ip: Option<PathBuf>,
    pub connection_type: Option<PathBuf>,
    #[serde(rename = "static")]
    pub fixed: Option<Vec<RawGeoStatic>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeoStatic {
    pub network: Option<String>,
    pub country: Option<String>,
    pub subdivision: Option<String>,
}

/// Who may tell us the client's address, and how.
#[derive(Debug, Clone)]
pub struct ClientIpSettings {
    pub trusted_proxies: crate::client_ip::TrustedProxies,
    pub header: crate::client_ip::ForwardingHeader,
}

pub(super) fn validate_client_ip(
    c: &mut Check,
    raw: Option<RawClientIp>,
    listeners: &[ListenerSettings],
) -> ClientIpSettings {
    let rc = raw.unwrap_or_default();
    let nets = c.networks(
        "client_ip.trusted_proxies",
        &rc.trusted_proxies.unwrap_or_default(),
    );
    let header = match rc.header.as_deref() {
        None | Some("x-forwarded-for") => crate::client_ip::ForwardingHeader::XForwardedFor,
        Some("forwarded") => crate::client_ip::ForwardingHeader::Forwarded,
        Some("none") => crate::client_ip::ForwardingHeader::None,
        Some(other) => {
            c.fail(
                "client_ip.header",
                format!("`{other}` is not supported; use \"x-forwarded-for\", \"forwarded\" or \"none\""),
            );
            crate::client_ip::ForwardingHeader::XForwardedFor
        }
    };
    for (i, l) in listeners.iter().enumerate() {
        if l.proxy_protocol && nets.is_empty() {
            c.fail(
                format!("listener[{i}].proxy_protocol"),
                "needs client_ip.trusted_proxies: the PROXY header is accepted only from trusted load balancers",
            );
        }
    }
    ClientIpSettings {
        trusted_proxies: crate::client_ip::TrustedProxies::new(nets),
        header,
    }
}

pub(super) fn validate_firmographics(
    c: &mut Check,
    rf: Option<RawFirmographics>,
    rg: Option<RawGeo>,
    base: &Path,
) -> crate::firmographics::FirmographicsSettings {
    let field = |c: &mut Check, key: String, text: Option<&String>| -> Option<FieldPath> {
        let text = text?;
        let parsed = FieldPath::parse(text);
        if parsed.is_none() {
            c.fail(
                key,
                format!("`{text}` is not a field path; write e.g. \"traits.organization\""),
            );
        }
        parsed
    };
    let rf = rf.unwrap_or_default();
    let mut company_dbs = Vec::new();
    for (i, db) in rf.mmdb.unwrap_or_default().into_iter().enumerate() {
        let key = format!("firmographics.mmdb[{i}]");
        let Some(path) = db.path else {
            c.fail(format!("{key}.path"), "missing");
            continue;
        };
        let Some(organization) = db.organization.as_ref() else {
            c.fail(
                format!("{key}.organization"),
                "missing; the field path of the organization name, e.g. \"traits.organization\" (GeoIP2 \
                 Enterprise), \"organization\" (GeoIP2 ISP), \"autonomous_system_organization\" (ASN)",
            );
            continue;
        };
        let organization = field(c, format!("{key}.organization"), Some(organization));
        let domain = field(c, format!("{key}.domain"), db.domain.as_ref());
        let user_type = field(c, format!("{key}.user_type"), db.user_type.as_ref());
        if let Some(organization) = organization {
            company_dbs.push(crate::firmographics::CompanyDbSettings {
                path: resolve(base, &path),
                organization,
                domain,
                user_type,
            });
        }
    }
    let rg = rg.unwrap_or_default();
    let watch = c.duration(
        "firmographics.watch_interval",
        rf.watch_interval.as_ref(),
        defaults::SOURCES_WATCH,
    );
    crate::firmographics::FirmographicsSettings {
        watch_interval: (!watch.is_zero()).then_some(watch),
        files: rf
            .files
            .unwrap_or_default()
            .iter()
            .map(|p| resolve(base, p))
            .collect(),
        company_dbs,
        deny_organizations: rf.deny_organizations.unwrap_or_default(),
        geo_db: rg.mmdb.as_ref().map(|p| resolve(base, p)),
        geo_country: field(c, "geo.country".into(), rg.country.as_ref()),
        geo_subdivision: field(c, "geo.subdivision".into(), rg.subdivision.as_ref()),
        anonymous_ip_db: rg.anonymous_ip.as_ref().map(|p| resolve(base, p)),
        connection_type_db: rg.connection_type.as_ref().map(|p| resolve(base, p)),
        geo_static: validate_geo_static(c, rg.fixed),
    }
}

pub(super) fn validate_geo_static(
    c: &mut Check,
    raw: Option<Vec<RawGeoStatic>>,
) -> Vec<(ipnetwork::IpNetwork, Geo)> {
    let mut out = Vec::new();
    for (i, e) in raw.unwrap_or_default().into_iter().enumerate() {
        let key = format!("geo.static[{i}]");
        let Some(net) = e.network else {
            c.fail(
                format!("{key}.network"),
                "missing; write e.g. \"10.0.0.0/8\"",
            );
            continue;
        };
        let Ok(network) = net.parse::<ipnetwork::IpNetwork>() else {
            c.fail(
                format!("{key}.network"),
                format!("`{net}` is not a network; write e.g. \"10.0.0.0/8\""),
            );
            continue;
        };
        // Codes are compared in upper case; errors echo the value as written.
        let country = match e.country.as_deref().map(|s| (s, s.to_ascii_uppercase())) {
            Some((_, cc)) if is_code(&cc, 2) => cc,
            other => {
                c.fail(
                    format!("{key}.country"),
                    match other {
                        Some((written, _)) => format!(
                            "`{written}` is not an ISO 3166-1 alpha-2 country code; write e.g. \"DE\""
                        ),
                        None => "missing; write e.g. \"DE\"".into(),
                    },
                );
                continue;
            }
        };
        let subdivision = match e
            .subdivision
            .as_deref()
            .map(|s| (s, s.to_ascii_uppercase()))
        {
            Some((_, sub)) if (1..=3).contains(&sub.len()) && is_code(&sub, sub.len()) => Some(sub),
            Some((written, _)) => {
                c.fail(
                    format!("{key}.subdivision"),
                    format!("`{written}` is not a subdivision code; write e.g. \"CA\""),
                );
                continue;
            }
            None => None,
        };
        out.push((
            network,
            Geo {
                country: Some(country),
                subdivision,
            },
        ));
    }
    out
}

fn is_code(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_alphabetic())
}
