use super::*;

#[test]
fn query_strings_are_input_like_any_other() {
    let q = Query::parse("since=2026-11-24&consent=ab%20c&empty=&x").expect("parses");
    assert_eq!(q.get("since"), Some("2026-11-24"));
    assert_eq!(q.get("consent"), Some("ab c"));
    assert_eq!(q.get("empty"), None);
    assert!(
        Query::parse("a=1&a=2").is_err(),
        "a repeated key is ambiguous"
    );
    assert!(Query::parse("a=%ff").is_err(), "not UTF-8");
    assert!(Query::parse("a=%zz").is_err());
    let many: Vec<String> = (0..40).map(|i| format!("k{i}=v")).collect();
    assert!(Query::parse(&many.join("&")).is_err());
}
