//! IAB Global Privacy Platform strings: `Header~Section~Section…`.
//!
//! Decoded sections: 2 `tcfeuv2` (a TC string), 6 `uspv1` (a US Privacy string), 7 `usnat` (v1 and v2, with
//! the optional GPC sub-section), and the US state sections 8 `usca` … 22 `ustn` (core fields plus GPC where
//! the state defines it). Other sections are listed by id and name but not decoded.
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
    /// A US state section (8 `usca` … 22 `ustn`).
    UsState(UsState),
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

impl Section {
    /// The section says the visitor opted out (of sale, sharing or targeted advertising, or by GPC).
    pub fn opted_out(&self) -> bool {
        match self {
            Section::Usp(u) => u.opted_out(),
            Section::UsNat(n) => n.opted_out(),
            Section::UsState(st) => st.opted_out(),
            Section::Tcf(_) | Section::NotDecoded => false,
        }
    }
}

impl Gpp {
    /// Names of the sections that say the visitor opted out.
    pub fn opt_outs(&self) -> impl Iterator<Item = &str> {
        self.sections
            .iter()
            .filter(|(_, s)| s.opted_out())
            .map(|(name, _)| name.as_str())
    }

    /// Any section says the visitor opted out.
    pub fn opted_out(&self) -> bool {
        self.opt_outs().next().is_some()
    }
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

/// A US state section: the core fields in the specification's order and names, and the GPC sub-section for
/// the states that define one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsState {
    pub id: u16,
    pub version: u8,
    pub fields: Vec<(&'static str, StateValue)>,
    pub gpc: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StateValue {
    One(u8),
    List(Vec<u8>),
}

impl Serialize for UsState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.fields.len() + 2))?;
        m.serialize_entry("Version", &self.version)?;
        for (name, value) in &self.fields {
            m.serialize_entry(name, value)?;
        }
        if let Some(g) = self.gpc {
            m.serialize_entry("Gpc", &g)?;
        }
        m.end()
    }
}

impl UsState {
    pub fn field(&self, name: &str) -> Option<&StateValue> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Opted out of sale, sharing or targeted advertising (1 = opted out), or GPC set.
    pub fn opted_out(&self) -> bool {
        ["SaleOptOut", "SharingOptOut", "TargetedAdvertisingOptOut"]
            .iter()
            .any(|f| self.field(f) == Some(&StateValue::One(1)))
            || self.gpc == Some(true)
    }
}

/// One core field of a state section: every value is 2 bits; a count > 1 is a fixed-length list.
type FieldSpec = (&'static str, u8);

const MSPA: [FieldSpec; 3] = [
    ("MspaCoveredTransaction", 1),
    ("MspaOptOutOptionMode", 1),
    ("MspaServiceProviderMode", 1),
];

/// The core layout after the 6-bit Version, and whether a GPC sub-section is defined. Layouts as in the IAB
/// GPP US state specifications (checked against the IAB Java encoder and the iab_gpp crate, both agreeing).
fn state_layout(id: u16) -> Option<(Vec<FieldSpec>, bool)> {
    // The shape shared by most states after usca: notice, sale/targeted-ad notices and opt-outs, sensitive
    // data list, children's consents, an optional extra field, then the MSPA fields.
    let common = |first: &'static str,
                  extra_notice: Option<&'static str>,
                  sensitive: u8,
                  children: u8,
                  additional: bool| {
        let mut v: Vec<FieldSpec> = vec![
            (first, 1),
            ("SaleOptOutNotice", 1),
            ("TargetedAdvertisingOptOutNotice", 1),
        ];
        if let Some(n) = extra_notice {
            v.push((n, 1));
        }
        v.extend([
            ("SaleOptOut", 1),
            ("TargetedAdvertisingOptOut", 1),
            ("SensitiveDataProcessing", sensitive),
            ("KnownChildSensitiveDataConsents", children),
        ]);
        if additional {
            v.push(("AdditionalDataProcessingConsent", 1));
        }
        v.extend(MSPA);
        v
    };
    Some(match id {
        8 => {
            let mut v = vec![
                ("SaleOptOutNotice", 1),
                ("SharingOptOutNotice", 1),
                ("SensitiveDataLimitUseNotice", 1),
                ("SaleOptOut", 1),
                ("SharingOptOut", 1),
                ("SensitiveDataProcessing", 9),
                ("KnownChildSensitiveDataConsents", 2),
                ("PersonalDataConsents", 1),
            ];
            v.extend(MSPA);
            (v, true)
        }
        9 => (common("SharingNotice", None, 8, 1, false), false),
        10 => (common("SharingNotice", None, 7, 1, false), true),
        11 => (
            common(
                "SharingNotice",
                Some("SensitiveDataProcessingOptOutNotice"),
                8,
                1,
                false,
            ),
            false,
        ),
        12 => (common("SharingNotice", None, 8, 3, false), true),
        13 => (common("ProcessingNotice", None, 8, 3, true), false),
        14 => (common("SharingNotice", None, 8, 3, true), true),
        15 => (common("ProcessingNotice", None, 11, 3, true), true),
        16 | 19 | 22 => (common("ProcessingNotice", None, 8, 1, true), true),
        17 => (common("ProcessingNotice", None, 9, 5, true), true),
        18 => (
            common(
                "ProcessingNotice",
                Some("SensitiveDataOptOutNotice"),
                8,
                1,
                false,
            ),
            true,
        ),
        20 => (common("ProcessingNotice", None, 8, 3, true), true),
        21 => (common("ProcessingNotice", None, 10, 5, true), true),
        _ => return None,
    })
}

fn us_state(id: u16, body: &str) -> Result<Option<UsState>, BitsError> {
    let Some((layout, has_gpc)) = state_layout(id) else {
        return Ok(None);
    };
    let mut subsections = body.split('.');
    let mut r = BitReader::from_base64url(subsections.next().unwrap_or_default())?;
    let version = r.read(6, "Version")? as u8;
    let mut fields = Vec::with_capacity(layout.len());
    for (name, count) in layout {
        let value = if count == 1 {
            StateValue::One(r.read(2, name)? as u8)
        } else {
            StateValue::List(
                (0..count)
                    .map(|_| r.read(2, name).map(|v| v as u8))
                    .collect::<Result<_, _>>()?,
            )
        };
        fields.push((name, value));
    }
    let mut gpc = None;
    if has_gpc {
        for sub in subsections {
            let mut s = BitReader::from_base64url(sub)?;
            if s.read(2, "SubsectionType")? == 1 {
                gpc = Some(s.bool("Gpc")?);
            }
        }
    }
    Ok(Some(UsState {
        id,
        version,
        fields,
        gpc,
    }))
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
            _ => match us_state(id, body).map_err(|e| fail(e.to_string()))? {
                Some(state) => Section::UsState(state),
                None => Section::NotDecoded,
            },
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

    fn state(g: &Gpp, name: &str) -> UsState {
        match g.sections.get(name) {
            Some(Section::UsState(s)) => s.clone(),
            other => panic!("{name}: {other:?}"),
        }
    }

    fn one(s: &UsState, f: &str) -> u8 {
        match s.field(f) {
            Some(StateValue::One(v)) => *v,
            other => panic!("{f}: {other:?}"),
        }
    }

    fn list(s: &UsState, f: &str) -> Vec<u8> {
        match s.field(f) {
            Some(StateValue::List(v)) => v.clone(),
            other => panic!("{f}: {other:?}"),
        }
    }

    /// Full strings from the iab_gpp crate's test data (noirotm/iabgpp-rs, tests/data).
    #[test]
    fn us_state_vectors() {
        let g = decode("DBABBg~BVVVVVVY").unwrap();
        assert_eq!(g.section_ids, [8]);
        let ca = state(&g, "usca");
        assert_eq!((one(&ca, "SaleOptOut"), one(&ca, "SharingOptOut")), (1, 1));
        assert_eq!(list(&ca, "SensitiveDataProcessing"), [1; 9]);
        assert_eq!(one(&ca, "MspaServiceProviderMode"), 2);
        assert_eq!(ca.gpc, None);
        assert!(ca.opted_out());

        let ca = state(&decode("DBABBg~BVqqqqpY.YA").unwrap(), "usca");
        assert_eq!((one(&ca, "SaleOptOut"), one(&ca, "SharingOptOut")), (2, 2));
        assert_eq!(list(&ca, "SensitiveDataProcessing"), [2; 9]);
        assert_eq!(list(&ca, "KnownChildSensitiveDataConsents"), [2, 2]);
        assert_eq!(one(&ca, "PersonalDataConsents"), 2);
        assert_eq!(ca.gpc, Some(true));
        assert!(ca.opted_out(), "GPC set in the section");

        let ca = state(&decode("DBABBg~BAAAAACA").unwrap(), "usca");
        assert_eq!(one(&ca, "MspaCoveredTransaction"), 2);
        assert!(!ca.opted_out());

        let va = state(&decode("DBABRg~BVVVVWY").unwrap(), "usva");
        assert_eq!(
            (
                one(&va, "SaleOptOut"),
                one(&va, "TargetedAdvertisingOptOut")
            ),
            (1, 1)
        );
        assert_eq!(list(&va, "SensitiveDataProcessing").len(), 8);
        assert_eq!(one(&va, "KnownChildSensitiveDataConsents"), 1);
        assert_eq!(one(&va, "MspaCoveredTransaction"), 2);
        assert!(!state(&decode("DBABRg~BAAAABA").unwrap(), "usva").opted_out());

        let co = state(&decode("DBABJg~BVVVVVg.YA").unwrap(), "usco");
        assert_eq!(list(&co, "SensitiveDataProcessing"), [1; 7]);
        assert_eq!(co.gpc, Some(true));
        assert_eq!(state(&decode("DBABJg~BVVVVVg").unwrap(), "usco").gpc, None);
        let ct = state(&decode("DBABVg~BVVVVVVg.YA").unwrap(), "usct");
        assert_eq!(list(&ct, "KnownChildSensitiveDataConsents"), [1; 3]);
        assert_eq!(ct.gpc, Some(true));
        let ut = state(&decode("DBABFg~BVVVVVmA").unwrap(), "usut");
        assert_eq!(one(&ut, "SensitiveDataProcessingOptOutNotice"), 1);
        assert_eq!(one(&ut, "MspaCoveredTransaction"), 2);

        let json = serde_json::to_value(decode("DBABBg~BVqqqqpY.YA").unwrap()).unwrap();
        assert_eq!(json["sections"]["usca"]["Version"], 1);
        assert_eq!(json["sections"]["usca"]["SharingOptOut"], 2);
        assert_eq!(json["sections"]["usca"]["Gpc"], true);
        assert_eq!(json["sections"]["usca"]["SensitiveDataProcessing"][8], 2);
    }

    /// Section bodies from the IAB Java encoder's tests (iabgpp-java, Us??Test): the "example" values are
    /// every notice and opt-out 1, sensitive data 2,1,0,… and MSPA 1,1,2; the defaults are zeros with
    /// MspaCoveredTransaction 1.
    #[test]
    fn us_state_sections_of_every_state() {
        let sensitive =
            |n: usize| -> Vec<u8> { [2, 1, 0].iter().copied().cycle().take(n).collect() };
        let cases: &[(u16, &str, usize, Option<bool>)] = &[
            (8, "BVWSSSVY.YA", 9, Some(true)),
            (9, "BVWSSVY", 8, None),
            (10, "BVWSSVg.YA", 7, Some(true)),
            (11, "BVVkklWA", 8, None),
            (12, "BVWSSZFg.YA", 8, Some(true)),
            (13, "BVWSSZlY", 8, None),
            (14, "BVWSSZFY.YA", 8, Some(true)),
            (16, "BVWSSVWA.YA", 8, Some(true)),
            (18, "BVVkklWA.YA", 8, Some(true)),
            (19, "BVWSSVWA.YA", 8, Some(true)),
            (20, "BVWSSZFY.YA", 8, Some(true)),
            (22, "BVWSSVWA.YA", 8, Some(true)),
        ];
        for &(id, body, n, gpc) in cases {
            let s = us_state(id, body).unwrap().unwrap();
            assert_eq!(s.version, 1, "{id}");
            assert_eq!(list(&s, "SensitiveDataProcessing"), sensitive(n), "{id}");
            assert_eq!(one(&s, "SaleOptOut"), 1, "{id}");
            assert_eq!(
                (
                    one(&s, "MspaCoveredTransaction"),
                    one(&s, "MspaOptOutOptionMode"),
                    one(&s, "MspaServiceProviderMode")
                ),
                (1, 1, 2),
                "{id}"
            );
            assert_eq!(s.gpc, gpc, "{id}");
            assert!(s.opted_out(), "{id}");
        }
        // Oregon, Delaware, New Jersey: longer sensitive-data lists.
        let or = us_state(15, "BVWSSRpFYA.YA").unwrap().unwrap();
        assert_eq!(
            list(&or, "SensitiveDataProcessing"),
            [2, 1, 0, 2, 1, 0, 2, 1, 0, 1, 2]
        );
        let de = us_state(17, "BVWSSSSVYA.YA").unwrap().unwrap();
        assert_eq!(
            list(&de, "KnownChildSensitiveDataConsents"),
            [2, 1, 0, 2, 1]
        );
        let nj = us_state(21, "BVWSSRklWA.YA").unwrap().unwrap();
        assert_eq!(
            list(&nj, "SensitiveDataProcessing"),
            [2, 1, 0, 2, 1, 0, 2, 1, 0, 1]
        );
        assert_eq!(
            list(&nj, "KnownChildSensitiveDataConsents"),
            [2, 1, 0, 2, 1]
        );
        let fl = us_state(13, "BVWSSZlY").unwrap().unwrap();
        assert_eq!(list(&fl, "KnownChildSensitiveDataConsents"), [2, 1, 2]);
        assert_eq!(one(&fl, "AdditionalDataProcessingConsent"), 1);
        // Defaults: nothing opted out.
        for (id, body) in [
            (8, "BAAAAABA.QA"),
            (9, "BAAAABA"),
            (13, "BAAAAABA"),
            (21, "BAAAAAAAQA.QA"),
        ] {
            let s = us_state(id, body).unwrap().unwrap();
            assert!(!s.opted_out(), "{id}");
            assert_eq!(one(&s, "MspaCoveredTransaction"), 1, "{id}");
        }
        // Truncated bodies fail cleanly.
        assert!(us_state(8, "BVWSS").is_err());
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
        let g = decode("DBABD~BAAA").unwrap();
        assert_eq!(g.section_ids, [5]);
        assert_eq!(g.sections.get("tcfcav1"), Some(&Section::NotDecoded));
        assert!(serde_json::to_value(&g).unwrap()["sections"]["tcfcav1"].is_null());
        let g = decode("DBACLMA~BVVVVVVVVWA~BAAAABA").unwrap();
        assert_eq!(g.section_ids, [7, 9]);
        assert!(matches!(g.sections.get("usva"), Some(Section::UsState(_))));
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
