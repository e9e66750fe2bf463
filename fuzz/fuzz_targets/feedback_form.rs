//! The feedback endpoint's form body from arbitrary bytes: parsing never panics, and what it accepts is a path on
//! this site without query, a comment within its cap with no control characters but line breaks and tabs, and
//! markup that escapes it.
#![no_main]

use concierge::feedback::{parse, widget_markup, Event, MAX_COMMENT_CHARS};
use concierge::rules::Feedback;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = parse(data) else { return };
    assert!(s.page.starts_with('/') && !s.page.starts_with("//"));
    assert!(!s.page.contains(['?', '#']));
    if let Event::Answer {
        comment: Some(c), ..
    } = &s.event
    {
        assert!(c.chars().count() <= MAX_COMMENT_CHARS);
        assert!(!c.chars().any(|ch| ch.is_control() && ch != '\n' && ch != '\t'));
        let m = widget_markup(&s.rule, &s.version, &s.page, &Feedback { question: c.clone(), comment: true });
        assert_eq!(m.matches('<').count(), 2, "only the container's own tags: {m}");
        assert_eq!(m.matches('"').count(), 14, "no attribute broken out of: {m}");
    }
});
