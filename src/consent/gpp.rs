//! IAB Global Privacy Platform strings: `Header~Section~Section…`.
//!
//! Decoded sections: 2 `tcfeuv2` (a TC string), 6 `uspv1` (a US Privacy string), 7 `usnat` (v1 and v2, with
//! the optional GPC sub-section). Other sections are listed by id and name but not decoded.
//! Invariants as for TCF: bounded (same length cap), never panics, errors carry the reason.

use std::collections::BTreeMap;

use serde::Serialize;

use super::bits::{BitReader, BitsError};
use super::{tcf, usp};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GppError {
    #[error("empty GPP string")]
    Empty,
    #[error("GPP string longer than {} characters", tcf::MAX_LEN)]
    TooLong,
    #[error("GPP header type {0} (expected 3) or version {1} (expected 1)")]
    Header(u64, u64),
    #[error(transparent)]
    Bits(#[from] BitsError),
    #[error("bad Fibonacci code in the section list")]
    Fibonacci,
    #[error("section id {0} is out of range")]
    SectionId(u64),
    #[error("the header lists {listed} sections but {present} follow")]
    SectionCount { listed: usize, present: usize },
    #[error("section {id}: {reason}")]
    Section { id: u16, reason: String },
}

/// A decoded GPP string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gpp {
    /// Section ids in the header, in order.
    pub section_ids: Vec<u16>,
    /// Decoded sections by name (`tcfeuv2`, `uspv1`, `usnat`); others by name with `null`.
    pub sections: BTreeMap<String, Section>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Section {
    Tcf(Box<tcf::TcString>),
    Usp(usp::UsPrivacy),
    UsNat(UsNat),
    /// Present, not decoded by this version (`null` in JSON).
    NotDecoded,
}

/// `usnat` core (+ GPC sub-section), field names as in the GPP specification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UsNat {
    pub version: u8,
    pub sharing_notice: u8,
    pub sale_opt_out_notice: u8,
    pub sharing_opt_out_notice: u8,
    pub targeted_advertising_opt_out_notice: u8,
    pub sensitive_data_processing_opt_out_notice: u8,
    pub sensitive_data_limit_use_notice: u8,
    /// 0 not applicable, 1 opted out, 2 did not opt out.
    pub sale_opt_out: u8,
    pub sharing_opt_out: u8,
    pub targeted_advertising_opt_out: u8,
    pub sensitive_data_processing: Vec<u8>,
    pub known_child_sensitive_data_consents: Vec<u8>,
    pub personal_data_consents: u8,
    pub mspa_covered_transaction: u8,
    pub mspa_opt_out_option_mode: u8,
    pub mspa_service_provider_mode: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpc: Option<bool>,
}

impl UsNat {
    /// Opted out of sale, sharing or targeted advertising.
    pub fn opted_out(&self) -> bool {
        [
            self.sale_opt_out,
            self.sharing_opt_out,
            self.targeted_advertising_opt_out,
        ]
        .contains(&1)
            || self.gpc == Some(true)
    }
}

/// The GPP name of a section id.
pub fn section_name(id: u16) -> &'static str {
    match id {
        2 => "tcfeuv2",
        5 => "tcfcav1",
        6 => "uspv1",
        7 => "usnat",
        8 => "usca",
        9 => "usva",
        10 => "usco",
        11 => "usut",
        12 => "usct",
        13 => "usfl",
        14 => "usmt",
        15 => "usor",
        16 => "ustx",
        17 => "usde",
        18 => "usia",
        19 => "usne",
        20 => "usnh",
        21 => "usnj",
        22 => "ustn",
        23 => "usmn",
        _ => "unknown",
    }
}

pub fn decode(s: &str) -> Result<Gpp, GppError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(GppError::Empty);
    }
    if s.len() > tcf::MAX_LEN {
        return Err(GppError::TooLong);
    }
    let mut parts = s.split('~');
    let mut r = BitReader::from_base64url(parts.next().unwrap_or_default())?;
    let kind = r.read(6, "Type")?;
    let version = r.read(6, "Version")?;
    if kind != 3 || version != 1 {
        return Err(GppError::Header(kind, version));
    }
    let section_ids = fibonacci_range(&mut r)?;
    let bodies: Vec<&str> = parts.collect();
    if bodies.len() != section_ids.len() {
        return Err(GppError::SectionCount {
            listed: section_ids.len(),
            present: bodies.len(),
        });
    }
    let mut sections = BTreeMap::new();
    for (&id, body) in section_ids.iter().zip(bodies) {
        let fail = |reason: String| GppError::Section { id, reason };
        let section = match id {
            2 => Section::Tcf(Box::new(
                tcf::decode(body).map_err(|e| fail(e.to_string()))?,
            )),
            6 => Section::Usp(usp::decode(body).map_err(|e| fail(e.to_string()))?),
            7 => Section::UsNat(usnat(body).map_err(|e| fail(e.to_string()))?),
            _ => Section::NotDecoded,
        };
        sections.insert(section_name(id).to_string(), section);
    }
    Ok(Gpp {
        section_ids,
        sections,
    })
}

/// The header's section list: a 12-bit count, then per entry a group flag and Fibonacci-coded offsets.
fn fibonacci_range(r: &mut BitReader) -> Result<Vec<u16>, GppError> {
    let count = r.read(12, "SectionIds")?;
    let mut ids = Vec::new();
    let mut last: u64 = 0;
    for _ in 0..count {
        let group = r.bool("SectionIds")?;
        let start = last + fibonacci(r)?;
        let end = if group { start + fibonacci(r)? } else { start };
        if end > 64 {
            return Err(GppError::SectionId(end));
        }
        for id in start..=end {
            ids.push(id as u16);
        }
        last = end;
    }
    Ok(ids)
}

/// One Fibonacci (Zeckendorf) code: bits for 1, 2, 3, 5, 8, … ended by two consecutive 1s.
fn fibonacci(r: &mut BitReader) -> Result<u64, GppError> {
    let (mut a, mut b) = (1u64, 2u64);
    let mut value = 0u64;
    let mut previous = false;
    for _ in 0..24 {
        let bit = r.bool("Fibonacci")?;
        if bit && previous {
            return if value == 0 {
                Err(GppError::Fibonacci)
            } else {
                Ok(value)
            };
        }
        if bit {
            value += a;
        }
        previous = bit;
        (a, b) = (b, a + b);
    }
    Err(GppError::Fibonacci)
}

fn usnat(body: &str) -> Result<UsNat, BitsError> {
    let mut subsections = body.split('.');
    let mut r = BitReader::from_base64url(subsections.next().unwrap_or_default())?;
    let version = r.read(6, "Version")? as u8;
    let two = |r: &mut BitReader, f: &'static str| r.read(2, f).map(|v| v as u8);
    let sharing_notice = two(&mut r, "SharingNotice")?;
    let sale_opt_out_notice = two(&mut r, "SaleOptOutNotice")?;
    let sharing_opt_out_notice = two(&mut r, "SharingOptOutNotice")?;
    let targeted_advertising_opt_out_notice = two(&mut r, "TargetedAdvertisingOptOutNotice")?;
    let sensitive_data_processing_opt_out_notice =
        two(&mut r, "SensitiveDataProcessingOptOutNotice")?;
    let sensitive_data_limit_use_notice = two(&mut r, "SensitiveDataLimitUseNotice")?;
    let sale_opt_out = two(&mut r, "SaleOptOut")?;
    let sharing_opt_out = two(&mut r, "SharingOptOut")?;
    let targeted_advertising_opt_out = two(&mut r, "TargetedAdvertisingOptOut")?;
    let (sensitive, children) = if version >= 2 { (16, 3) } else { (12, 2) };
    let sensitive_data_processing = (0..sensitive)
        .map(|_| two(&mut r, "SensitiveDataProcessing"))
        .collect::<Result<Vec<_>, _>>()?;
    let known_child_sensitive_data_consents = (0..children)
        .map(|_| two(&mut r, "KnownChildSensitiveDataConsents"))
        .collect::<Result<Vec<_>, _>>()?;
    let personal_data_consents = two(&mut r, "PersonalDataConsents")?;
    let mspa_covered_transaction = two(&mut r, "MspaCoveredTransaction")?;
    let mspa_opt_out_option_mode = two(&mut r, "MspaOptOutOptionMode")?;
    let mspa_service_provider_mode = two(&mut r, "MspaServiceProviderMode")?;
    let mut gpc = None;
    for sub in subsections {
        let mut s = BitReader::from_base64url(sub)?;
        if s.read(2, "SubsectionType")? == 1 {
            gpc = Some(s.bool("Gpc")?);
        }
    }
    Ok(UsNat {
        version,
        sharing_notice,
        sale_opt_out_notice,
        sharing_opt_out_notice,
        targeted_advertising_opt_out_notice,
        sensitive_data_processing_opt_out_notice,
        sensitive_data_limit_use_notice,
        sale_opt_out,
        sharing_opt_out,
        targeted_advertising_opt_out,
        sensitive_data_processing,
        known_child_sensitive_data_consents,
        personal_data_consents,
        mspa_covered_transaction,
        mspa_opt_out_option_mode,
        mspa_service_provider_mode,
        gpc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids(header_only: &str) -> Vec<u16> {
        let mut r = BitReader::from_base64url(header_only).unwrap();
        r.read(12, "h").unwrap();
        fibonacci_range(&mut r).unwrap()
    }

    #[test]
    fn header_vectors() {
        assert_eq!(ids("DBABM"), [2]);
        assert_eq!(ids("DBACNY"), [2, 6]);
        assert_eq!(ids("DBABLA"), [7]);
        assert_eq!(ids("DBABzw"), [6, 7]);
        assert_eq!(ids("DBACLMA"), [7, 9]);
    }

    #[test]
    fn usnat_vectors() {
        let g = decode("DBABLA~BVVVVVVVVWA").unwrap();
        assert_eq!(g.section_ids, [7]);
        let Some(Section::UsNat(n)) = g.sections.get("usnat") else {
            panic!("{g:?}")
        };
        assert_eq!(
            (
                n.sale_opt_out,
                n.sharing_opt_out,
                n.targeted_advertising_opt_out
            ),
            (1, 1, 1)
        );
        assert_eq!(n.mspa_covered_transaction, 1);
        assert_eq!(n.gpc, None);
        assert!(n.opted_out());
        let g = decode("DBABLA~BVVVVVVVVWA.YA").unwrap();
        let Some(Section::UsNat(n)) = g.sections.get("usnat") else {
            panic!()
        };
        assert_eq!(n.gpc, Some(true));
        let g = decode("DBABLA~BVVVVVVVVWA.QA").unwrap();
        let Some(Section::UsNat(n)) = g.sections.get("usnat") else {
            panic!()
        };
        assert_eq!(n.gpc, Some(false));
        let json = serde_json::to_value(&g).unwrap();
        assert_eq!(json["sections"]["usnat"]["SaleOptOut"], 1);
        assert_eq!(json["sections"]["usnat"]["Gpc"], false);
    }

    #[test]
    fn tcf_and_usp_sections() {
        let g = decode("DBACNY~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN").unwrap();
        assert_eq!(g.section_ids, [2, 6]);
        let Some(Section::Tcf(t)) = g.sections.get("tcfeuv2") else {
            panic!("{g:?}")
        };
        assert_eq!((t.cmp_id, t.cmp_version, t.consent_screen), (31, 640, 1));
        assert_eq!(t.consent_language, "EN");
        assert_eq!(t.vendor_list_version, 126);
        assert!(t.is_service_specific);
        assert_eq!(t.publisher_country_code, "DE");
        assert!(t.purpose_consents.is_empty());
        let Some(Section::Usp(u)) = g.sections.get("uspv1") else {
            panic!()
        };
        assert!(!u.opted_out());
    }

    #[test]
    fn undecoded_sections_are_listed_as_null() {
        let g = decode("DBACLMA~BVVVVVVVVWA~BAAA").unwrap();
        assert_eq!(g.section_ids, [7, 9]);
        assert_eq!(g.sections.get("usva"), Some(&Section::NotDecoded));
        assert!(serde_json::to_value(&g).unwrap()["sections"]["usva"].is_null());
    }

    #[test]
    fn malformed() {
        assert_eq!(decode(""), Err(GppError::Empty));
        assert!(matches!(decode("CBABM~x"), Err(GppError::Header(..))));
        assert!(matches!(
            decode("DBACNY~1YNN"),
            Err(GppError::SectionCount {
                listed: 2,
                present: 1
            })
        ));
        assert!(matches!(
            decode("DBABLA~B"),
            Err(GppError::Section { id: 7, .. })
        ));
        assert!(matches!(
            decode("DBACNY~CO~1YNN"),
            Err(GppError::Section { id: 2, .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics(s in "[A-Za-z0-9_.~-]{0,200}") {
            let _ = decode(&s);
        }

        #[test]
        fn truncations_never_panic(cut in 0usize..80) {
            let s = "DBACNY~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN";
            let _ = decode(&s[..cut.min(s.len())]);
            let s = "DBABLA~BVVVVVVVVWA.YA";
            let _ = decode(&s[..cut.min(s.len())]);
        }
    }
}
