//! IAB TCF v2.2 TC string decoder (our own: of the existing crates one panics on malformed input and the other
//! reads publisher restrictions in the wrong layout).
//!
//! Invariants: never panics, whatever the input (property tests and a fuzz target); bounded work — strings over
//! [`MAX_LEN`] characters and vendor ids over [`MAX_VENDOR_ID`] are refused before anything expands; anything
//! undecodable is an error with the reason, which the consent engine treats as "no TCF consent".
//! Field names in JSON follow the IAB reference library's model (`cmpId`, `purposeConsents`, …).

use std::collections::BTreeSet;

use serde::Serialize;

use super::bits::{BitReader, BitsError};

/// Longest TC string accepted (characters).
pub const MAX_LEN: usize = 4096;
/// Largest vendor id accepted; the Global Vendor List is far below it.
pub const MAX_VENDOR_ID: u16 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TcfError {
    #[error("empty TC string")]
    Empty,
    #[error("TC string longer than {MAX_LEN} characters")]
    TooLong,
    #[error("not a TCF v2 string (a TC string starts with C; GPP strings start with D, US Privacy strings look like 1YNN)")]
    Version(u64),
    #[error(transparent)]
    Bits(#[from] BitsError),
    #[error("vendor id {0} is above the accepted maximum {MAX_VENDOR_ID}")]
    VendorIdTooLarge(u64),
    #[error("vendor range {0}–{1} is empty or starts at 0")]
    BadRange(u64, u64),
    #[error("letter code {0} is not A–Z")]
    BadLetter(u64),
    #[error(
        "segment type {0} is not 1 (disclosed vendors), 2 (allowed vendors) or 3 (publisher TC)"
    )]
    UnknownSegment(u64),
    #[error("segment type {0} appears twice")]
    DuplicateSegment(u64),
}

/// A decoded TC string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcString {
    pub version: u8,
    /// RFC 3339, UTC.
    pub created: String,
    pub last_updated: String,
    #[serde(skip)]
    pub created_deciseconds: u64,
    #[serde(skip)]
    pub last_updated_deciseconds: u64,
    pub cmp_id: u16,
    pub cmp_version: u16,
    pub consent_screen: u8,
    pub consent_language: String,
    pub vendor_list_version: u16,
    pub policy_version: u8,
    pub is_service_specific: bool,
    pub use_non_standard_texts: bool,
    pub special_feature_optins: BTreeSet<u8>,
    pub purpose_consents: BTreeSet<u8>,
    pub purpose_legitimate_interests: BTreeSet<u8>,
    pub purpose_one_treatment: bool,
    pub publisher_country_code: String,
    pub vendor_consents: BTreeSet<u16>,
    pub vendor_legitimate_interests: BTreeSet<u16>,
    pub publisher_restrictions: Vec<PublisherRestriction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disclosed_vendors: Option<BTreeSet<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_vendors: Option<BTreeSet<u16>>,
    /// The publisher TC segment: its fields at the top level, as the IAB library gives them (empty without
    /// the segment, never absent).
    #[serde(flatten)]
    pub publisher_tc: PublisherTc,
    /// The string carried a publisher TC segment.
    #[serde(skip)]
    pub has_publisher_tc: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublisherRestriction {
    pub purpose_id: u8,
    /// 0 not allowed, 1 require consent, 2 require legitimate interest, 3 undefined.
    pub restriction_type: u8,
    pub vendors: BTreeSet<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublisherTc {
    pub publisher_consents: BTreeSet<u8>,
    pub publisher_legitimate_interests: BTreeSet<u8>,
    pub num_custom_purposes: u8,
    pub publisher_custom_consents: BTreeSet<u8>,
    pub publisher_custom_legitimate_interests: BTreeSet<u8>,
}

impl TcString {
    /// Policy problems of a string that decoded (TCF 2.2: policy version ≥ 4; no legitimate interest for
    /// purposes 3–6). Empty when the string may be relied on.
    pub fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.policy_version < 4 {
            v.push(format!(
                "tcf:policy-version-{}-before-2.2",
                self.policy_version
            ));
        }
        for p in 3..=6 {
            if self.purpose_legitimate_interests.contains(&p) {
                v.push(format!("tcf:legitimate-interest-for-purpose{p}"));
            }
        }
        v
    }
}

/// Two TC strings for one visitor, as one that grants only what both grant: purposes and vendors consented in
/// both, legitimate interests claimed in either (so a violation in either is seen), the older update time (so
/// either being stale makes the merge stale), the older policy version.
pub fn most_restrictive(mut a: TcString, b: &TcString) -> TcString {
    a.purpose_consents = a
        .purpose_consents
        .intersection(&b.purpose_consents)
        .copied()
        .collect();
    a.purpose_legitimate_interests
        .extend(b.purpose_legitimate_interests.iter().copied());
    a.vendor_consents = a
        .vendor_consents
        .intersection(&b.vendor_consents)
        .copied()
        .collect();
    a.special_feature_optins = a
        .special_feature_optins
        .intersection(&b.special_feature_optins)
        .copied()
        .collect();
    if b.last_updated_deciseconds < a.last_updated_deciseconds {
        a.last_updated_deciseconds = b.last_updated_deciseconds;
        a.last_updated = b.last_updated.clone();
    }
    a.policy_version = a.policy_version.min(b.policy_version);
    a
}

/// Decode a TC string (core segment plus optional disclosed/allowed vendors and publisher TC segments).
pub fn decode(s: &str) -> Result<TcString, TcfError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(TcfError::Empty);
    }
    if s.len() > MAX_LEN {
        return Err(TcfError::TooLong);
    }
    let mut segments = s.split('.');
    let core = segments.next().unwrap_or_default();
    let mut r = BitReader::from_base64url(core)?;
    let version = r.read(6, "Version")?;
    if version != 2 {
        return Err(TcfError::Version(version));
    }
    let created = r.read(36, "Created")?;
    let last_updated = r.read(36, "LastUpdated")?;
    let cmp_id = r.read(12, "CmpId")? as u16;
    let cmp_version = r.read(12, "CmpVersion")? as u16;
    let consent_screen = r.read(6, "ConsentScreen")? as u8;
    let consent_language = letters(&mut r, "ConsentLanguage")?;
    let vendor_list_version = r.read(12, "VendorListVersion")? as u16;
    let policy_version = r.read(6, "TcfPolicyVersion")? as u8;
    let is_service_specific = r.bool("IsServiceSpecific")?;
    let use_non_standard_texts = r.bool("UseNonStandardTexts")?;
    let special_feature_optins = flags(&mut r, 12, "SpecialFeatureOptIns")?;
    let purpose_consents = flags(&mut r, 24, "PurposesConsent")?;
    let purpose_legitimate_interests = flags(&mut r, 24, "PurposesLITransparency")?;
    let purpose_one_treatment = r.bool("PurposeOneTreatment")?;
    let publisher_country_code = letters(&mut r, "PublisherCC")?;
    let vendor_consents = vendor_section(&mut r, "VendorConsents")?;
    let vendor_legitimate_interests = vendor_section(&mut r, "VendorLegitimateInterests")?;
    let num_restrictions = r.read(12, "NumPubRestrictions")?;
    let mut publisher_restrictions = Vec::new();
    for _ in 0..num_restrictions {
        let purpose_id = r.read(6, "PurposeId")? as u8;
        let restriction_type = r.read(2, "RestrictionType")? as u8;
        let vendors = range_entries(&mut r, "PubRestrictionEntry")?;
        publisher_restrictions.push(PublisherRestriction {
            purpose_id,
            restriction_type,
            vendors,
        });
    }
    let mut tc = TcString {
        version: version as u8,
        created: rfc3339(created),
        last_updated: rfc3339(last_updated),
        created_deciseconds: created,
        last_updated_deciseconds: last_updated,
        cmp_id,
        cmp_version,
        consent_screen,
        consent_language,
        vendor_list_version,
        policy_version,
        is_service_specific,
        use_non_standard_texts,
        special_feature_optins,
        purpose_consents,
        purpose_legitimate_interests,
        purpose_one_treatment,
        publisher_country_code,
        vendor_consents,
        vendor_legitimate_interests,
        publisher_restrictions,
        disclosed_vendors: None,
        allowed_vendors: None,
        publisher_tc: PublisherTc::default(),
        has_publisher_tc: false,
    };
    for segment in segments {
        let mut r = BitReader::from_base64url(segment)?;
        let kind = r.read(3, "SegmentType")?;
        match kind {
            1 | 2 => {
                let set = vendor_section(
                    &mut r,
                    if kind == 1 {
                        "DisclosedVendors"
                    } else {
                        "AllowedVendors"
                    },
                )?;
                let slot = if kind == 1 {
                    &mut tc.disclosed_vendors
                } else {
                    &mut tc.allowed_vendors
                };
                if slot.replace(set).is_some() {
                    return Err(TcfError::DuplicateSegment(kind));
                }
            }
            3 => {
                let publisher_consents = flags(&mut r, 24, "PubPurposesConsent")?;
                let publisher_legitimate_interests =
                    flags(&mut r, 24, "PubPurposesLITransparency")?;
                let n = r.read(6, "NumCustomPurposes")? as usize;
                let publisher_custom_consents = flags(&mut r, n, "CustomPurposesConsent")?;
                let publisher_custom_legitimate_interests =
                    flags(&mut r, n, "CustomPurposesLITransparency")?;
                let ptc = PublisherTc {
                    publisher_consents,
                    publisher_legitimate_interests,
                    num_custom_purposes: n as u8,
                    publisher_custom_consents,
                    publisher_custom_legitimate_interests,
                };
                if std::mem::replace(&mut tc.has_publisher_tc, true) {
                    return Err(TcfError::DuplicateSegment(3));
                }
                tc.publisher_tc = ptc;
            }
            other => return Err(TcfError::UnknownSegment(other)),
        }
    }
    Ok(tc)
}

fn letters(r: &mut BitReader, field: &'static str) -> Result<String, TcfError> {
    let mut out = String::with_capacity(2);
    for _ in 0..2 {
        let v = r.read(6, field)?;
        if v > 25 {
            return Err(TcfError::BadLetter(v));
        }
        out.push((b'A' + v as u8) as char);
    }
    Ok(out)
}

/// `n` flag bits; bit i set → id i + 1.
fn flags(r: &mut BitReader, n: usize, field: &'static str) -> Result<BTreeSet<u8>, TcfError> {
    let mut set = BTreeSet::new();
    for i in 0..n {
        if r.bool(field)? {
            set.insert((i + 1) as u8);
        }
    }
    Ok(set)
}

/// MaxVendorId, IsRangeEncoding, then a bitfield or range entries.
fn vendor_section(r: &mut BitReader, field: &'static str) -> Result<BTreeSet<u16>, TcfError> {
    let max = r.read(16, field)?;
    if max > u64::from(MAX_VENDOR_ID) {
        return Err(TcfError::VendorIdTooLarge(max));
    }
    if r.bool(field)? {
        let set = range_entries(r, field)?;
        if set.last().is_some_and(|&v| u64::from(v) > max) {
            return Err(TcfError::VendorIdTooLarge(u64::from(
                *set.last().unwrap_or(&0),
            )));
        }
        Ok(set)
    } else {
        let mut set = BTreeSet::new();
        for id in 1..=max {
            if r.bool(field)? {
                set.insert(id as u16);
            }
        }
        Ok(set)
    }
}

/// NumEntries (12), then per entry IsARange (1), Start (16), End (16, only for ranges; inclusive).
fn range_entries(r: &mut BitReader, field: &'static str) -> Result<BTreeSet<u16>, TcfError> {
    let n = r.read(12, field)?;
    let mut set = BTreeSet::new();
    for _ in 0..n {
        let is_range = r.bool(field)?;
        let start = r.read(16, field)?;
        let end = if is_range { r.read(16, field)? } else { start };
        if start == 0 || end < start {
            return Err(TcfError::BadRange(start, end));
        }
        if end > u64::from(MAX_VENDOR_ID) {
            return Err(TcfError::VendorIdTooLarge(end));
        }
        set.extend((start as u16)..=(end as u16));
    }
    Ok(set)
}

/// Deciseconds since the Unix epoch as RFC 3339 UTC with milliseconds (`2020-01-26T17:01:00.000Z`,
/// `2020-03-05T19:24:40.900Z`).
pub fn rfc3339(deciseconds: u64) -> String {
    let secs = deciseconds / 10;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    // Deciseconds as milliseconds, always three digits, like the IAB library's `Date.toISOString()`.
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{}00Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        deciseconds % 10
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::bits::BitWriter;
    use super::*;
    use proptest::prelude::*;

    fn set8(ids: &[u8]) -> BTreeSet<u8> {
        ids.iter().copied().collect()
    }

    fn set16(ids: &[u16]) -> BTreeSet<u16> {
        ids.iter().copied().collect()
    }

    /// Regression (issue 13, item 5): the tenths of a second were dropped, and without a publisher TC segment
    /// its fields were absent instead of empty as the IAB library gives them.
    #[test]
    fn deciseconds_and_publisher_fields_as_the_iab_library_gives_them() {
        assert_eq!(rfc3339(15_834_362_809), "2020-03-05T19:24:40.900Z");
        assert_eq!(rfc3339(15_834_362_800), "2020-03-05T19:24:40.000Z");
        let tc = decode("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA").unwrap();
        let v = serde_json::to_value(&tc).unwrap();
        assert_eq!(v["publisherConsents"], serde_json::json!([]));
        assert_eq!(v["publisherLegitimateInterests"], serde_json::json!([]));
        assert_eq!(v["publisherCustomConsents"], serde_json::json!([]));
        assert_eq!(v["numCustomPurposes"], 0);
    }

    #[test]
    fn vector_1_core_fields() {
        let tc = decode("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA").unwrap();
        assert_eq!(tc.created, "2020-01-26T17:01:00.000Z");
        assert_eq!(tc.last_updated, "2021-02-02T17:01:00.000Z");
        assert_eq!((tc.cmp_id, tc.cmp_version, tc.consent_screen), (675, 2, 1));
        assert_eq!(tc.vendor_list_version, 15);
        assert_eq!(tc.policy_version, 2);
        assert_eq!(tc.consent_language, "EN");
        assert_eq!(tc.publisher_country_code, "AA");
        assert!(!tc.is_service_specific);
        assert!(tc.purpose_one_treatment);
        assert_eq!(tc.special_feature_optins, set8(&[1]));
        assert_eq!(tc.purpose_consents, set8(&[2, 10]));
        assert_eq!(tc.purpose_legitimate_interests, set8(&[2, 9]));
        assert_eq!(tc.violations(), ["tcf:policy-version-2-before-2.2"]);
    }

    #[test]
    fn vector_2_vendors_and_segments() {
        let core =
            "COrEAV4OrXx94ACABBENAHCIAD-AAAAAAACAAxAAAAgAIAwgAgAAAAEAgQAAAAAEAYQAQAAAACAAAABAAA";
        let tc = decode(core).unwrap();
        assert_eq!(tc.purpose_consents, set8(&[3, 4, 5, 6, 7, 8, 9]));
        assert_eq!(tc.vendor_consents, set16(&[23, 37, 47, 48, 53, 65, 98]));
        assert_eq!(
            tc.vendor_legitimate_interests,
            set16(&[37, 47, 48, 53, 65, 98, 129])
        );
        let full = format!("{core}.IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA");
        let tc = decode(&full).unwrap();
        assert_eq!(tc.allowed_vendors, Some(set16(&[12, 23, 37, 47, 48, 53])));
        assert_eq!(
            tc.disclosed_vendors,
            Some(set16(&[23, 37, 47, 48, 53, 65, 98, 129]))
        );
    }

    #[test]
    fn vectors_3_to_8() {
        let tc = decode("COv__-wOv__-wC2AAAENAPCgAAAAAAAAAAAAA_wAQA_gEBABAEAAAA").unwrap();
        assert_eq!(tc.vendor_legitimate_interests, set16(&[128]));
        let tc = decode("COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAYFfAV-BVkAGBVYFWAAA").unwrap();
        assert_eq!(tc.vendor_consents, set16(&[702, 703]));
        let tc = decode("COwBOpCOwBOpCLqAAAENAPCAAAAAAAAAAAAAFfwAQFfgUbABAUaAAA").unwrap();
        assert_eq!(tc.vendor_consents, set16(&[703]));
        let tc = decode("COwxsONOwxsONKpAAAENAdCAAMAAAAAAAAAAAAAAAAAA").unwrap();
        assert!(tc.purpose_consents.contains(&1) && tc.purpose_consents.contains(&2));
        let tc = decode("COvcSpYOvcSpYC9AAAENAPCAAAAAAAAAAAAACvwDQABAAIAAYABIAC4AJQAagA9ACEAPgAjIBJoCvAK-AAAAAA").unwrap();
        assert_eq!(tc.created, "2020-02-27T19:51:49.600Z");
        assert_eq!(tc.created, tc.last_updated);
        let tc = decode("COyiBqdOyiBqdObAAAENAfCIAP8AAH-AAAAAB4AXQQgEAAAgoAAAAABAIYQUAAAAAAAAAAAAAAAIQIQCxIvkgQMAAAABgAIAAAAAAAAAAABAZAkAAA").unwrap();
        assert_eq!(tc.cmp_id, 923);
        let tc = decode("COx3XOeOx3XOeLkAAAENAfCIAAAAAHgAAIAAAAAAAAAA").unwrap();
        assert!(tc.purpose_one_treatment);
        assert_eq!(tc.special_feature_optins, set8(&[1]));
        assert_eq!(tc.purpose_legitimate_interests, set8(&[2, 3, 4, 5]));
        assert!(tc
            .violations()
            .iter()
            .any(|v| v == "tcf:legitimate-interest-for-purpose3"));
    }

    #[test]
    fn vector_9_publisher_restrictions() {
        let tc = decode("COwAdDhOwAdDhN4ABAENAPCgAAQAAv___wAAAFP_AAp_4AI6ACACAA").unwrap();
        assert_eq!((tc.cmp_id, tc.cmp_version, tc.consent_screen), (888, 1, 0));
        assert_eq!(tc.consent_language, "EN");
        assert_eq!(tc.vendor_list_version, 15);
        let applies = |purpose: u8, kind: u8, vendor: u16| {
            tc.publisher_restrictions.iter().any(|r| {
                r.purpose_id == purpose && r.restriction_type == kind && r.vendors.contains(&vendor)
            })
        };
        assert!(applies(7, 1, 32));
        assert!(!applies(7, 1, 7));
        assert!(!applies(5, 1, 32));
    }

    #[test]
    fn vectors_10_and_11() {
        assert!(
            decode("COvcSpYOvcSpYC9AAAENAPCAAAAAAAAAAAAAAFAAAAA").is_err(),
            "vector 10 is malformed"
        );
        assert_eq!(
            decode("COyiHgFOyiHgFN4ABABGAPCAAAAAAAAAAAAAAFAAAAoAAAA")
                .unwrap()
                .consent_language,
            "BG"
        );
        assert_eq!(
            decode("COyiHgFOyiHgFN4ABASVAPCAAAAAAAAAAAAAAFAAAAoAAAA")
                .unwrap()
                .consent_language,
            "SV"
        );
    }

    #[test]
    fn rejections() {
        assert_eq!(decode(""), Err(TcfError::Empty));
        assert_eq!(decode(&"C".repeat(MAX_LEN + 1)), Err(TcfError::TooLong));
        assert!(matches!(
            decode("BOEFEAyOEFEAyAHABDENAI4AAAB9vABAASA"),
            Err(TcfError::Version(1))
        ));
        assert!(matches!(
            decode("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA.4AAA"),
            Err(TcfError::UnknownSegment(7))
        ));
        assert!(matches!(
            decode("CO!"),
            Err(TcfError::Bits(BitsError::BadCharacter('!')))
        ));
        assert!(
            decode("COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA=").is_ok(),
            "padding accepted"
        );
    }

    #[test]
    fn every_truncation_of_every_vector_fails_cleanly() {
        for v in [
            "COtybn4PA_zT4KjACBENAPCIAEBAAECAAIAAAAAAAAAA",
            "COrEAV4OrXx94ACABBENAHCIAD-AAAAAAACAAxAAAAgAIAwgAgAAAAEAgQAAAAAEAYQAQAAAACAAAABAAA.IBAgAAAgAIAwgAgAAAAEAAAACA.QAagAQAgAIAwgA",
            "COwAdDhOwAdDhN4ABAENAPCgAAQAAv___wAAAFP_AAp_4AI6ACACAA",
            "COvcSpYOvcSpYC9AAAENAPCAAAAAAAAAAAAACvwDQABAAIAAYABIAC4AJQAagA9ACEAPgAjIBJoCvAK-AAAAAA",
        ] {
            for n in 0..v.len() {
                // No panic; a cut inside the core segment is an error (cuts after it may still decode).
                let r = decode(&v[..n]);
                if !v[..n].contains('.') && n < 40 {
                    assert!(r.is_err(), "{}", &v[..n]);
                }
            }
        }
    }

    /// A TC string encoder for tests: core segment with range-encoded vendor sets.
    pub(crate) fn encode(tc: &TcString) -> String {
        let mut w = BitWriter::default();
        w.write(2, 6);
        w.write(tc.created_deciseconds, 36);
        w.write(tc.last_updated_deciseconds, 36);
        w.write(u64::from(tc.cmp_id), 12);
        w.write(u64::from(tc.cmp_version), 12);
        w.write(u64::from(tc.consent_screen), 6);
        for c in tc.consent_language.bytes() {
            w.write(u64::from(c - b'A'), 6);
        }
        w.write(u64::from(tc.vendor_list_version), 12);
        w.write(u64::from(tc.policy_version), 6);
        w.bool(tc.is_service_specific);
        w.bool(tc.use_non_standard_texts);
        let write_flags = |w: &mut BitWriter, set: &BTreeSet<u8>, n: u8| {
            for i in 1..=n {
                w.bool(set.contains(&i));
            }
        };
        write_flags(&mut w, &tc.special_feature_optins, 12);
        write_flags(&mut w, &tc.purpose_consents, 24);
        write_flags(&mut w, &tc.purpose_legitimate_interests, 24);
        w.bool(tc.purpose_one_treatment);
        for c in tc.publisher_country_code.bytes() {
            w.write(u64::from(c - b'A'), 6);
        }
        let write_ranges = |w: &mut BitWriter, set: &BTreeSet<u16>| {
            w.write(set.len() as u64, 12);
            for v in set {
                w.bool(false);
                w.write(u64::from(*v), 16);
            }
        };
        for (i, set) in [&tc.vendor_consents, &tc.vendor_legitimate_interests]
            .into_iter()
            .enumerate()
        {
            w.write(set.last().copied().map_or(0, u64::from), 16);
            if i == 0 {
                w.bool(true);
                write_ranges(&mut w, set);
            } else {
                w.bool(false);
                for id in 1..=set.last().copied().unwrap_or(0) {
                    w.bool(set.contains(&id));
                }
            }
        }
        w.write(tc.publisher_restrictions.len() as u64, 12);
        for r in &tc.publisher_restrictions {
            w.write(u64::from(r.purpose_id), 6);
            w.write(u64::from(r.restriction_type), 2);
            write_ranges(&mut w, &r.vendors);
        }
        w.to_base64url()
    }

    fn letter_code() -> impl Strategy<Value = String> {
        "[A-Z]{2}"
    }

    prop_compose! {
        fn tc_strings()(
            created in 0u64..(1 << 36), last in 0u64..(1 << 36), cmp_id in 0u16..4096, cmp_version in 0u16..4096,
            screen in 0u8..64, lang in letter_code(), vlv in 0u16..4096, policy in 0u8..64,
            flags in any::<[bool; 3]>(),
            features in prop::collection::btree_set(1u8..=12, 0..4),
            consents in prop::collection::btree_set(1u8..=24, 0..10),
            li in prop::collection::btree_set(1u8..=24, 0..10),
            cc in letter_code(),
            vendors in prop::collection::btree_set(1u16..=1500, 0..40),
            vendor_li in prop::collection::btree_set(1u16..=300, 0..20),
            restrictions in prop::collection::vec((1u8..=24, 0u8..4, prop::collection::btree_set(1u16..=1500, 1..5)), 0..3),
        ) -> TcString {
            TcString {
                version: 2, created: rfc3339(created), last_updated: rfc3339(last),
                created_deciseconds: created, last_updated_deciseconds: last,
                cmp_id, cmp_version, consent_screen: screen, consent_language: lang, vendor_list_version: vlv,
                policy_version: policy, is_service_specific: flags[0], use_non_standard_texts: flags[1],
                special_feature_optins: features, purpose_consents: consents, purpose_legitimate_interests: li,
                purpose_one_treatment: flags[2], publisher_country_code: cc,
                vendor_consents: vendors, vendor_legitimate_interests: vendor_li,
                publisher_restrictions: restrictions.into_iter().map(|(purpose_id, restriction_type, vendors)| {
                    PublisherRestriction { purpose_id, restriction_type, vendors }
                }).collect(),
                disclosed_vendors: None, allowed_vendors: None, publisher_tc: PublisherTc::default(),
                has_publisher_tc: false,
            }
        }
    }

    proptest! {
        #[test]
        fn encoded_strings_round_trip(tc in tc_strings()) {
            let s = encode(&tc);
            prop_assert_eq!(decode(&s).unwrap(), tc);
        }

        #[test]
        fn arbitrary_input_never_panics(s in "[A-Za-z0-9_=.-]{0,300}") {
            let _ = decode(&s);
        }

        #[test]
        fn truncated_encodings_never_panic(tc in tc_strings(), cut in 0usize..400) {
            let s = encode(&tc);
            let _ = decode(&s[..cut.min(s.len())]);
        }
    }
}
