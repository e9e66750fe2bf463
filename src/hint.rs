//! "Did you mean": the closest of the names a value could have been, by edit distance.

/// The candidate closest to `given`, if it is close enough to be a likely typo.
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|cand| (edit_distance(given, cand), cand))
        .filter(|(d, cand)| *d <= 2.max(cand.len() / 3))
        .min()
        .map(|(_, c)| c)
}

/// From serde's "unknown field `x`, expected one of `a`, `b`" pick the expected name closest to `x`.
pub fn unknown_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (given, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    closest(given, expected).map(str::to_string)
}

/// Levenshtein distance over chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    #[test]
    fn typos_are_found_and_strangers_are_not() {
        assert_eq!(
            super::closest("contrl", ["control", "rules"]),
            Some("control")
        );
        assert_eq!(super::closest("zzzzzz", ["control", "rules"]), None);
        assert_eq!(
            super::unknown_key("unknown field `hypotesis`, expected one of `id`, `hypothesis`"),
            Some("hypothesis".into())
        );
    }
}
