use super::report::{Builder, Filter};
use super::*;
use proptest::prelude::*;

const BASE: &str = "rule=acme.example%2Fhome-hero&version=0123456789abcdef&page=%2Fpricing";

#[test]
fn parses_the_three_events() {
    let s = parse(format!("event=shown&{BASE}").as_bytes()).unwrap();
    assert_eq!(s.event, Event::Shown);
    assert_eq!(s.rule, "acme.example/home-hero");
    assert_eq!(s.version, "0123456789abcdef");
    assert_eq!(s.page, "/pricing");
    let s = parse(format!("event=dismiss&{BASE}").as_bytes()).unwrap();
    assert_eq!(s.event, Event::Dismissed);
    let s = parse(
        format!("event=answer&answer=no&{BASE}&comment=Not+for+us%0D%0Abut+close&other=ignored")
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        s.event,
        Event::Answer {
            positive: false,
            comment: Some("Not for us\nbut close".into())
        }
    );
    // An empty comment is no comment; the page loses its query.
    let s =
        parse("event=answer&answer=yes&rule=r&version=v&page=%2Fa%3Fq%3D1&comment=+".as_bytes())
            .unwrap();
    assert_eq!(
        s.event,
        Event::Answer {
            positive: true,
            comment: None
        }
    );
    assert_eq!(s.page, "/a");
}

/// Issue 13, item 9: the comment follows the answer as its own event (so an answer is never lost to a closed
/// prompt), and counts as a comment, not as a second answer.
#[test]
fn a_comment_is_its_own_event_after_the_answer() {
    let s = parse(format!("event=comment&answer=yes&{BASE}&comment=Spot+on").as_bytes()).unwrap();
    assert_eq!(
        s.event,
        Event::Comment {
            positive: true,
            comment: "Spot on".into()
        }
    );
    assert_eq!(s.event.kind(), "comment");
    assert_eq!(
        parse(format!("event=comment&answer=yes&{BASE}").as_bytes()),
        Err(FormError::MissingComment)
    );
    assert_eq!(
        parse(format!("event=comment&{BASE}&comment=x").as_bytes()),
        Err(FormError::BadAnswer)
    );
    let mut b = Builder::new(Filter::default());
    for form in [
        "event=shown",
        "event=answer&answer=yes",
        "event=comment&answer=yes&comment=Spot+on",
    ] {
        let sub = parse(format!("{form}&{BASE}").as_bytes()).unwrap();
        b.add(&serde_json::to_value(FeedbackRecord::new(sub, None)).unwrap());
    }
    let r = b.finish();
    let rule = &r.rules[0];
    assert_eq!((rule.impressions, rule.answers, rule.positive), (1, 1, 1));
    assert_eq!(rule.latest_comments[0].comment, "Spot on");
    assert_eq!(rule.latest_comments[0].answer, "yes");
}

#[test]
fn refuses_bad_forms_with_a_reason() {
    let cases: &[(&str, FormError)] = &[
        (
            "event=shown&rule=r&version=v&page=%2F&event=shown",
            FormError::Repeated,
        ),
        ("event=maybe&rule=r&version=v&page=%2F", FormError::BadEvent),
        ("rule=r&version=v&page=%2F", FormError::BadEvent),
        ("event=shown&version=v&page=%2F", FormError::BadRule),
        (
            "event=shown&rule=%3Cscript%3E&version=v&page=%2F",
            FormError::BadRule,
        ),
        ("event=shown&rule=r&page=%2F", FormError::BadVersion),
        (
            "event=shown&rule=r&version=a%20b&page=%2F",
            FormError::BadVersion,
        ),
        (
            "event=shown&rule=r&version=v&page=https%3A%2F%2Fevil.example%2F",
            FormError::BadPage,
        ),
        (
            "event=shown&rule=r&version=v&page=%2F%2Fevil.example",
            FormError::BadPage,
        ),
        ("event=shown&rule=r&version=v", FormError::BadPage),
        (
            "event=answer&rule=r&version=v&page=%2F",
            FormError::BadAnswer,
        ),
        (
            "event=answer&answer=meh&rule=r&version=v&page=%2F",
            FormError::BadAnswer,
        ),
        (
            "event=shown&rule=r&version=v&page=%2F&comment=hi",
            FormError::UnexpectedComment,
        ),
        (
            "event=shown&rule=r&version=v&page=%ZZ",
            FormError::Malformed,
        ),
    ];
    for (form, want) in cases {
        assert_eq!(parse(form.as_bytes()), Err(*want), "{form}");
    }
    assert_eq!(parse(b"\xff\xfe"), Err(FormError::Malformed));
    let long = format!(
        "event=answer&answer=yes&{BASE}&comment={}",
        "x".repeat(MAX_COMMENT_CHARS + 1)
    );
    assert_eq!(parse(long.as_bytes()), Err(FormError::CommentTooLong));
    let exact = format!(
        "event=answer&answer=yes&{BASE}&comment={}",
        "é".repeat(MAX_COMMENT_CHARS)
    );
    assert!(parse(exact.as_bytes()).is_ok());
}

#[test]
fn comments_lose_control_and_direction_characters() {
    assert_eq!(
        clean_comment("  a\u{1b}[31mred\u{7}\r\nb\u{202E}gnp.exe\u{2066}\tc  "),
        "a[31mred\nbgnp.exe\tc"
    );
}

#[test]
fn widget_markup_escapes_every_value() {
    let f = Feedback {
        question: "Was this \"relevant\" <b>to</b> you & yours?".into(),
        comment: true,
    };
    let m = widget_markup("acme.example/hero", "0123", "/a\"b?x=<y>", &f);
    assert_eq!(
        m,
        "<div class=\"concierge-feedback\" data-concierge-feedback=\"\" data-rule=\"acme.example/hero\" \
         data-version=\"0123\" data-page=\"/a&quot;b\" data-question=\"Was this &quot;relevant&quot; \
         &lt;b&gt;to&lt;/b&gt; you &amp; yours?\" data-comment=\"1\" hidden></div>"
    );
    assert_eq!(
        why_link_markup("/_c/", "/a b\"<&?q=1", "Why am I seeing this?"),
        "<p class=\"concierge-why\"><a href=\"/_c/why?page=/a%20b%22%3C%26\" rel=\"nofollow\">Why am I seeing this?</a></p>"
    );
    assert_eq!(
        assets_markup("/_c/", Some(("de", "0123abcd"))),
        "<link rel=\"stylesheet\" href=\"/_c/widgets.css\"><link rel=\"preload\" as=\"style\" href=\"/_c/feedback.css\"><script src=\"/_c/feedback.js?v=0123abcd&amp;lang=de\" defer></script>"
    );
}

fn record(kind: &str, rule: &str, time: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({
        "type": kind, "time": time, "page": "/", "rule": rule, "rules_version": "v1"
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

#[test]
fn report_counts_per_rule() {
    let mut b = Builder::new(Filter::default());
    let t = |i: u32| format!("2026-11-{:02}T10:00:00.000Z", 10 + i);
    // Rule a: 8 impressions, 4 answers (3 yes), 2 dismissals, 6 comments (the newest 5 kept).
    for i in 0..8 {
        b.add(&record("impression", "x/a", &t(i), serde_json::json!({})));
    }
    for (i, yes) in [true, true, false, true].into_iter().enumerate() {
        b.add(&record(
            "feedback",
            "x/a",
            &t(i as u32),
            serde_json::json!({"answer": if yes {"yes"} else {"no"}, "comment": format!("c{i}"), "account": "acme.example"}),
        ));
    }
    for i in 4..6 {
        b.add(&record(
            "feedback",
            "x/a",
            &t(i),
            serde_json::json!({"answer": "yes", "comment": format!("c{i}")}),
        ));
    }
    b.add(&record("dismissal", "x/a", &t(7), serde_json::json!({})));
    b.add(&record("dismissal", "x/a", &t(8), serde_json::json!({})));
    // Rule b: impressions only. Not a feedback record: ignored.
    b.add(&record("impression", "y/b", &t(1), serde_json::json!({})));
    b.add(&serde_json::json!({"type": "checkpoint", "time": t(2)}));
    let r = b.finish();
    assert_eq!(r.rules.len(), 2);
    let a = &r.rules[0];
    assert_eq!(
        (
            a.impressions,
            a.answers,
            a.positive,
            a.negative,
            a.dismissals
        ),
        (8, 6, 5, 1, 2)
    );
    assert_eq!(a.response_rate, Some(0.75));
    assert!((a.share_positive.unwrap() - 5.0 / 6.0).abs() < 1e-9);
    let comments: Vec<&str> = a
        .latest_comments
        .iter()
        .map(|c| c.comment.as_str())
        .collect();
    assert_eq!(comments, ["c5", "c4", "c3", "c2", "c1"]);
    let b_rule = &r.rules[1];
    assert_eq!((b_rule.impressions, b_rule.answers), (1, 0));
    assert_eq!(b_rule.response_rate, Some(0.0));
    assert_eq!(b_rule.share_positive, None);
    let table = r.table();
    assert!(table.contains("75.0%"), "{table}");
    assert!(table.contains("83.3%"), "{table}");
    // Filters: by account (only records naming it), by rule, by time.
    let mut b = Builder::new(Filter {
        account: Some("ACME.example".into()),
        ..Filter::default()
    });
    let mut c = Builder::new(Filter {
        rule: Some("y/b".into()),
        ..Filter::default()
    });
    let mut d = Builder::new(Filter {
        since: Some(t(5)),
        until: Some(t(8)),
        ..Filter::default()
    });
    for i in 0..4 {
        let v = record(
            "feedback",
            "x/a",
            &t(i),
            serde_json::json!({"answer": "no", "account": "acme.example"}),
        );
        b.add(&v);
        c.add(&v);
        d.add(&v);
    }
    for i in 0..10 {
        let v = record("impression", "y/b", &t(i), serde_json::json!({}));
        b.add(&v);
        c.add(&v);
        d.add(&v);
    }
    let (b, c, d) = (b.finish(), c.finish(), d.finish());
    assert_eq!(b.rules.len(), 1);
    assert_eq!(b.rules[0].negative, 4);
    assert_eq!(c.rules.len(), 1);
    assert_eq!(c.rules[0].impressions, 10);
    assert_eq!(d.records, 3);
}

#[test]
fn hostile_comments_are_inert_in_table_and_csv() {
    let mut b = Builder::new(Filter::default());
    b.add(&record(
        "feedback",
        "x/a",
        "2026-11-25T00:00:00.000Z",
        serde_json::json!({"answer": "yes", "comment": "=HYPERLINK(\"http://evil\")\u{1b}[2J"}),
    ));
    let r = b.finish();
    assert!(!r.table().contains('\u{1b}'));
    assert!(r.table().contains("\\u{1b}[2J"));
    assert_eq!(r.csv_rows()[0][8], "'=HYPERLINK(\"http://evil\")\u{1b}[2J");
}

proptest! {
    #[test]
    fn parse_never_panics_and_keeps_its_promises(body in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(s) = parse(&body) {
            prop_assert!(crate::consent::choice::safe_return(&s.page).is_some());
            prop_assert!(!s.page.contains(['?', '#']));
            if let Event::Answer { comment: Some(c), .. } = &s.event {
                prop_assert!(c.chars().count() <= MAX_COMMENT_CHARS);
                prop_assert!(!c.chars().any(|ch| ch.is_control() && ch != '\n' && ch != '\t'));
            }
        }
    }

    #[test]
    fn any_comment_text_round_trips_cleaned(comment in "\\PC{0,80}", yes in any::<bool>()) {
        let body = format!(
            "event=answer&answer={}&{BASE}&comment={}",
            if yes { "yes" } else { "no" },
            encode_component(&comment)
        );
        let s = parse(body.as_bytes()).unwrap();
        let cleaned = clean_comment(&comment);
        let want = (!cleaned.is_empty()).then_some(cleaned);
        prop_assert_eq!(s.event, Event::Answer { positive: yes, comment: want });
    }
}
