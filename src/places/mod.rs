//! Places in words: "California, United States" for `US-CA`, "Germany" for `DE`, for the pages visitors read.
//! The names are ISO's English short names (generated into `names.rs`); a code we have no name for is shown
//! as it is.

mod names;

/// The English name of a country (ISO 3166-1 alpha-2, any case).
pub(crate) fn country(code: &str) -> Option<&'static str> {
    let code = code.to_ascii_uppercase();
    names::COUNTRIES
        .binary_search_by(|(c, _)| (*c).cmp(code.as_str()))
        .ok()
        .map(|i| names::COUNTRIES[i].1)
}

/// The English name of a subdivision (ISO 3166-2, e.g. `US-CA`), for the countries whose regions consent
/// policies name.
pub(crate) fn subdivision(code: &str) -> Option<&'static str> {
    let code = code.to_ascii_uppercase();
    names::SUBDIVISIONS
        .binary_search_by(|(c, _)| (*c).cmp(code.as_str()))
        .ok()
        .map(|i| names::SUBDIVISIONS[i].1)
}

/// A jurisdiction's region (`US-CA`, `DE`, or `unknown`) in words: "California, United States", "Germany",
/// "an unknown place". Codes without a name stay as written (`US-ZZ` → "US-ZZ, United States").
pub(crate) fn region_in_words(region: &str) -> String {
    if region.is_empty() || region.eq_ignore_ascii_case("unknown") {
        return "an unknown place".to_string();
    }
    match region.split_once('-') {
        Some((cc, _)) => {
            let sub = subdivision(region).unwrap_or(region);
            match country(cc) {
                Some(c) => format!("{sub}, {c}"),
                None => region.to_string(),
            }
        }
        None => country(region).unwrap_or(region).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_read_as_words() {
        assert_eq!(region_in_words("US-CA"), "California, United States");
        assert_eq!(region_in_words("us-ca"), "California, United States");
        assert_eq!(region_in_words("DE"), "Germany");
        assert_eq!(region_in_words("CA-QC"), "Quebec, Canada");
        assert_eq!(region_in_words("unknown"), "an unknown place");
        assert_eq!(region_in_words("US-ZZ"), "US-ZZ, United States");
        assert_eq!(region_in_words("XX"), "XX");
        assert_eq!(region_in_words("FR-75"), "FR-75, France");
    }

    #[test]
    fn the_tables_are_sorted_for_binary_search() {
        assert!(names::COUNTRIES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(names::SUBDIVISIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(names::COUNTRIES.len(), 249);
    }
}
