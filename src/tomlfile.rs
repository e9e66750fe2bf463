//! Reading the TOML files people write (rule, account, experiment and config files): every wrong-typed value
//! and unknown key of a file in one pass, in plain words, at the line of the offending key.
//!
//! serde stops at the first error, which made fixing a file take one round of `check` per mistake. Here, after
//! an error with a location, the offending key is blanked out — replaced by spaces, so every later offset and
//! line number stays true — and the file is read again, up to [`MAX_ROUNDS`] times. A repair that would break
//! the file's syntax, and errors without a location (a missing key), end the rounds. When a round succeeds, the
//! value read from the repaired text is returned along with the errors, so the caller's own checks can report
//! the rest of the file too (the file still fails: it had errors).

use std::ops::Range;

use serde::de::DeserializeOwned;

/// The most errors one file reports from reading (each costs a parse of the file).
pub(crate) const MAX_ROUNDS: usize = 20;

/// One reading error: where, and what, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub span: Option<Range<usize>>,
    pub message: String,
}

/// Read `text` as `T`, collecting every error (see the module docs). `Some` when some round read it whole.
pub(crate) fn read<T: DeserializeOwned>(text: &str) -> (Option<T>, Vec<Problem>) {
    let mut current = text.to_string();
    let mut problems = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let e = match toml::from_str::<T>(&current) {
            Ok(v) => return (Some(v), problems),
            Err(e) => e,
        };
        let span = e.span();
        let key = span.as_ref().and_then(|s| key_at(text, s.start));
        problems.push(Problem {
            span: span.clone(),
            message: plain(e.message(), key.as_deref()),
        });
        let Some(span) = span else { break };
        // A missing key cannot be repaired by removing one, and the same error twice means no progress.
        let last = problems.len() - 1;
        if e.message().starts_with("missing field")
            || problems[..last].iter().any(|p| p == &problems[last])
        {
            break;
        }
        // Only data errors are repaired: a syntax error (the first round's, necessarily) ends it.
        if problems.len() == 1 && toml::from_str::<toml::Table>(text).is_err() {
            break;
        }
        let Some(repaired) = blank_entry(&current, &span) else {
            break;
        };
        if toml::from_str::<toml::Table>(&repaired).is_err() {
            break;
        }
        current = repaired;
    }
    (None, problems)
}

/// `text` with the lines of the entry holding `span` replaced by spaces (newlines kept): from the start of the
/// span's first line to the end of its last, which covers `key = value` whether the span is on the key (an
/// unknown key) or on the value, a value over several lines, and one element of a multi-line list. `None` for a
/// table header; the caller re-reads the result and gives up if it no longer parses.
fn blank_entry(text: &str, span: &Range<usize>) -> Option<String> {
    if span.start >= text.len() || span.end > text.len() || span.start > span.end {
        return None;
    }
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    if text[line_start..].trim_start().starts_with('[')
        && !text[line_start..span.start].contains('=')
    {
        return None;
    }
    let end = text[span.end..]
        .find('\n')
        .map_or(text.len(), |i| span.end + i);
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..line_start]);
    for c in text[line_start..end].chars() {
        if c == '\n' {
            out.push('\n');
        } else {
            for _ in 0..c.len_utf8() {
                out.push(' ');
            }
        }
    }
    out.push_str(&text[end..]);
    Some(out)
}

/// The key of the entry on the line holding `at`, if that line is `key = value`.
fn key_at(text: &str, at: usize) -> Option<String> {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = &text[line_start..line_end];
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('[') && !key.starts_with('#'))
        .then(|| key.trim_matches('"').to_string())
}

/// serde's and toml's messages, said plainly: what was expected and what was found, named by the key.
pub(crate) fn plain(message: &str, key: Option<&str>) -> String {
    let message = message.trim_end();
    let named = |rest: String| match key {
        Some(k) => format!("`{k}` {rest}"),
        None => format!("this value {rest}"),
    };
    if let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return named(format!(
                "must be {}, not {}",
                expected_words(expected),
                found_words(found)
            ));
        }
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((given, tail)) = rest.split_once('`') {
            let mut out = format!("`{given}` is not a key here");
            if let Some(hint) = crate::hint::unknown_key(message) {
                out.push_str(&format!("; did you mean `{hint}`?"));
            }
            let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            if !expected.is_empty() {
                out.push_str(&format!(" (known keys: {})", expected.join(", ")));
            }
            return out;
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        if let Some((given, tail)) = rest.split_once('`') {
            let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            let mut out = named(format!("cannot be `{given}`"));
            if let Some(hint) = crate::hint::closest(given, expected.iter().copied()) {
                out.push_str(&format!("; did you mean `{hint}`?"));
            }
            if !expected.is_empty() {
                out.push_str(&format!(" (one of: {})", expected.join(", ")));
            }
            return out;
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some((field, _)) = rest.split_once('`') {
            return format!("`{field}` is missing; this table needs it");
        }
    }
    if message.starts_with("duplicate key") {
        return format!("{message}: each key may appear once per table");
    }
    message.to_string()
}

fn expected_words(expected: &str) -> String {
    let e = expected.trim();
    let integer = [
        "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize", "isize",
    ];
    if integer.contains(&e) || e == "an integer" {
        return "a whole number (e.g. 10)".into();
    }
    match e {
        "f32" | "f64" | "a float" => "a number (e.g. 0.5)".into(),
        "a string" | "a borrowed string" => "text in quotes (e.g. \"…\")".into(),
        "a sequence" => "a list in brackets (e.g. [\"…\"])".into(),
        "a boolean" => "true or false".into(),
        "a map" => "a table".into(),
        _ if e.starts_with("struct ") => "a table".into(),
        _ => e.to_string(),
    }
}

fn found_words(found: &str) -> String {
    let f = found.trim();
    let quoted = |s: &str| s.trim_matches('`').to_string();
    if let Some(s) = f.strip_prefix("string ") {
        return format!("the text {s}");
    }
    if let Some(n) = f
        .strip_prefix("integer ")
        .or_else(|| f.strip_prefix("floating point "))
    {
        return format!("the number {}", quoted(n));
    }
    if let Some(b) = f.strip_prefix("boolean ") {
        return quoted(b);
    }
    match f {
        "sequence" => "a list".into(),
        "map" => "a table".into(),
        _ => f.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Raw {
        name: String,
        #[serde(default)]
        priority: i32,
        #[serde(default)]
        paths: Vec<String>,
        #[serde(default)]
        item: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        select: String,
        #[serde(default)]
        on: bool,
    }

    fn line(text: &str, p: &Problem) -> usize {
        text[..p.span.clone().unwrap().start].matches('\n').count() + 1
    }

    #[test]
    fn every_type_error_and_unknown_key_is_reported_in_one_pass_at_its_line() {
        let text = "name = \"x\"\npriority = \"high\"\npaths = \"/a\"\n\n[[item]]\nselec = \"h1\"\nselect = \"h1\"\non = 1\n\n[[item]]\nselect = \"p\"\n";
        let (value, problems) = read::<Raw>(text);
        let said: Vec<(usize, &str)> = problems
            .iter()
            .map(|p| (line(text, p), p.message.as_str()))
            .collect();
        assert_eq!(
            said,
            [
                (
                    2,
                    "`priority` must be a whole number (e.g. 10), not the text \"high\""
                ),
                (
                    3,
                    "`paths` must be a list in brackets (e.g. [\"…\"]), not the text \"/a\""
                ),
                (
                    6,
                    "`selec` is not a key here; did you mean `select`? (known keys: select, on)"
                ),
                (8, "`on` must be true or false, not the number 1"),
            ],
            "{problems:#?}"
        );
        // The rest of the file was read: the caller's own checks see both items.
        assert_eq!(value.unwrap().item.len(), 2);
    }

    #[test]
    fn a_syntax_error_or_a_missing_key_ends_the_rounds() {
        let (v, p) = read::<Raw>("name = \"x\nfoo");
        assert!(v.is_none());
        assert_eq!(p.len(), 1);
        let (v, p) = read::<Raw>("priority = \"high\"\n");
        assert!(v.is_none());
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[1].message, "`name` is missing; this table needs it");
    }

    #[test]
    fn a_multi_line_value_is_blanked_whole_and_offsets_stay_true() {
        let text = "name = \"x\"\npaths = [\n  \"/a\",\n  5,\n]\npriority = true\n";
        let (v, p) = read::<Raw>(text);
        assert!(v.is_some(), "{p:?}");
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(line(text, &p[1]), 6);
        assert_eq!(
            p[1].message,
            "`priority` must be a whole number (e.g. 10), not true"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_read_or_refused_without_panicking(text in "[a-z =\\[\\]\"0-9\n.,{}#]{0,200}") {
            let (_, problems) = read::<Raw>(&text);
            proptest::prop_assert!(problems.len() <= MAX_ROUNDS);
        }
    }
}
