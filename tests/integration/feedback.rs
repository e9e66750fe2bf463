//! Feedback prompts and "why am I seeing this" through the real proxy and binary: the widget on personalized
//! pages, answers on the feedback stream (no IP, account only where consent allowed the lookup), abuse of the
//! endpoint refused without a record, the per-client rate limit, `concierge feedback report`, and the why page.

use crate::support::*;

const HTML: (&str, &str) = ("accept", "text/html");
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const SAME_ORIGIN: (&str, &str) = ("origin", "http://www.example.test");

const ACME: &str = r#"
[account]
domain = "acme.example"
name = "Acme & Sons"
networks = ["127.0.10.0/24"]

[[personalization]]
id = "hero"
tier = "firmographic"
paths = ["/landing"]
why_link = true

[[personalization.action]]
select = "h1.hero"
set_text = "Software for {{ company.name }}"

[personalization.feedback]
question = 'Was this "useful" <b>to you</b>?'
comment = true

[[personalization]]
id = "lead"
tier = "firmographic"
paths = ["/landing"]

[[personalization.action]]
select = "p.lead"
set_text = "Acme's lead"

[[personalization.action]]
select = "p.lead"
inject = "feedback"

[personalization.feedback]
question = "Short one?"

[[personalization]]
id = "silent"
tier = "firmographic"
paths = ["/other"]

[[personalization.action]]
select = "h1.hero"
set_text = "No prompt here"
"#;

/// The value of `attr="…"` in the first tag containing `marker`.
fn attr(html: &str, marker: &str, attr: &str) -> String {
    let at = html.find(marker).expect("marker");
    let tag_end = html[at..].find('>').unwrap() + at;
    let tag_start = html[..at].rfind('<').unwrap();
    let tag = &html[tag_start..tag_end];
    let key = format!("{attr}=\"");
    let from = tag.find(&key).expect("attribute") + key.len();
    tag[from..from + tag[from..].find('"').unwrap()].to_string()
}

#[tokio::test]
async fn prompts_ride_on_personalized_pages_and_answers_become_feedback_records() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = audited_proxy(&origin, dir.path(), ACME, "").await;
    let addr = server.listeners[0];

    let (resp, body) = get_from("127.0.10.5", addr, "/landing?utm_source=x", &[HTML]).await;
    let html = String::from_utf8_lossy(&body).into_owned();
    assert!(html.contains("Software for Acme &amp; Sons"), "{html}");
    assert_eq!(
        resp.headers()["cache-control"],
        "private, no-store",
        "a page with a prompt is personalized"
    );
    // The hero rule's widget at the end of <body>, the question escaped for its attribute; the lead rule's
    // where its inject action says (appended inside p.lead); the why link; the assets, same-origin, once.
    assert!(
        html.contains("data-rule=\"acme.example/hero\" data-version=\"",),
        "{html}"
    );
    assert!(
        html.contains(
            "data-page=\"/landing\" data-question=\"Was this &quot;useful&quot; &lt;b&gt;to you&lt;/b&gt;?\" data-comment=\"1\" hidden></div>"
        ),
        "{html}"
    );
    assert!(html.contains(
        "<p class=\"lead\">Acme's lead<div class=\"concierge-feedback\" data-concierge-feedback=\"\" data-rule=\"acme.example/lead\""
    ), "{html}");
    // The why link right after the first changed element (issue 16, item 15), once.
    assert!(html.contains(
        "</h1><span class=\"concierge-why concierge-why-near\"><a href=\"/_concierge/why?page=/landing\" rel=\"nofollow\">Why am I seeing this?</a></span>"
    ), "{html}");
    assert_eq!(html.matches("Why am I seeing this?").count(), 1, "{html}");
    assert!(
        html.contains(
            "<body><div class=\"concierge-feedback\" data-concierge-feedback=\"\" data-rule=\"acme.example/hero\""
        ),
        "the prompt right after <body>, so it never holds up an early stop: {html}"
    );
    assert_eq!(html.matches("/_concierge/feedback.js").count(), 1, "{html}");
    assert_eq!(html.matches("/_concierge/widgets.css").count(), 1);
    assert!(!html.contains("<script>"), "no inline script");
    let version = attr(&html, "data-rule=\"acme.example/hero\"", "data-version");
    assert_eq!(version.len(), 16);

    // A page whose rule has no prompt gets no widget and no why link.
    let (_, body) = get_from("127.0.10.5", addr, "/other", &[HTML]).await;
    let other = String::from_utf8_lossy(&body);
    assert!(
        !other.contains("concierge-feedback") && !other.contains("concierge-why"),
        "{other}"
    );

    // The assets.
    for (path, ctype, needle) in [
        (
            "/_concierge/feedback.js",
            "text/javascript; charset=utf-8",
            "data-concierge-feedback",
        ),
        (
            "/_concierge/widgets.css",
            "text/css; charset=utf-8",
            ".concierge-feedback",
        ),
    ] {
        let (resp, body) = get_from("127.0.0.9", addr, path, &[]).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["content-type"], ctype);
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        assert!(String::from_utf8_lossy(&body).contains(needle));
    }

    // The widget's three events.
    let base = format!("rule=acme.example%2Fhero&version={version}&page=%2Flanding");
    let headers = [FORM, SAME_ORIGIN];
    for (from, body) in [
        ("127.0.10.5", format!("event=shown&{base}")),
        (
            "127.0.10.5",
            format!("event=answer&answer=yes&{base}&comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E+spot+on"),
        ),
        // A visitor in Germany without consent: recorded, but without the account.
        ("127.0.0.9", format!("event=dismiss&{base}")),
        (
            "127.0.10.6",
            format!("event=answer&answer=no&rule=acme.example%2Flead&version={version}&page=%2Flanding"),
        ),
    ] {
        let (resp, text) = post_from(from, addr, "/_concierge/feedback", &headers, &body).await;
        assert_eq!(resp.status(), 204, "{body}: {text}");
        assert_eq!(resp.headers()["cache-control"], "no-store");
    }
    let (_, metrics) = admin(&server, "/metrics").await;
    assert_eq!(
        metric_value(
            &metrics,
            "concierge_feedback_records_total{event=\"feedback\",result=\"recorded\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    concierge::app::stop(server).await;

    let log = dir.path().join("log");
    let records = stream_records(&log, "feedback");
    assert_eq!(records.len(), 4, "{records:#?}");
    assert_eq!(records[0]["type"], "impression");
    assert_eq!(records[0]["account"], "acme.example");
    assert_eq!(records[0]["page"], "/landing");
    assert_eq!(records[0]["rules_version"], version.as_str());
    assert_eq!(records[1]["type"], "feedback");
    assert_eq!(records[1]["answer"], "yes");
    assert_eq!(
        records[1]["comment"], "<script>alert(1)</script> spot on",
        "stored as data, as given"
    );
    assert_eq!(records[2]["type"], "dismissal");
    assert!(
        records[2].get("account").is_none(),
        "no consent, no lookup: {}",
        records[2]
    );
    assert!(records.iter().all(|r| r.get("request_id").is_none()));
    let raw = std::fs::read_to_string(log.join("feedback/00000000000000000000.jsonl")).unwrap();
    assert!(!raw.contains("127.0."), "no IP in feedback records");

    // The marketer's report, from the binary.
    let out = concierge()
        .args(["feedback", "report"])
        .arg(&log)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let hero = &report["rules"][0];
    assert_eq!(hero["rule"], "acme.example/hero");
    assert_eq!(
        (&hero["impressions"], &hero["answers"], &hero["dismissals"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(1)
        )
    );
    assert_eq!(hero["response_rate"], 1.0);
    assert_eq!(hero["share_positive"], 1.0);
    assert_eq!(
        (&hero["yes"], &hero["no"]),
        (&serde_json::json!(1), &serde_json::json!(0)),
        "the same names as the table and CSV"
    );
    assert_eq!(
        hero["latest_comments"][0]["comment"],
        "<script>alert(1)</script> spot on"
    );
    assert_eq!(report["rules"][1]["share_positive"], 0.0);
    let out = concierge()
        .args(["feedback", "report"])
        .arg(&log)
        .args(["--account", "acme.example", "--rule", "acme.example/hero"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(table.contains("acme.example/hero"), "{table}");
    // The console's Feedback page: the same figures, the comment escaped, a chart per rule.
    let console = console_proxy(&origin, dir.path()).await;
    let (status, html) = console_page(&console, "/console/feedback").await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt; spot on"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("100.0%") && html.contains("0.0%"), "{html}");
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 2, "{html}");
    let (status, html) = console_page(&console, "/console/feedback?rule=acme.example%2Flead").await;
    assert_eq!(status, 200);
    assert!(!html.contains("spot on"), "{html}");
    let (status, _) = console_page(&console, "/console/feedback?until=soon").await;
    assert_eq!(status, 400);
    concierge::app::stop(console).await;
    assert!(!table.contains("acme.example/lead"), "{table}");
    assert!(
        table.contains("2 records"),
        "the dismissal has no account: {table}"
    );
    let out = concierge()
        .args(["feedback", "report"])
        .arg(&log)
        .args(["--format", "csv"])
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.starts_with(
        "rule,impressions,answers,yes,no,dismissals,response_rate,share_positive,latest_comment\n"
    ));
    assert!(
        csv.contains("acme.example/hero,1,1,1,0,1,1.0000,1.0000,"),
        "{csv}"
    );
    // Regression (issue 13, item 8): a rule that is nowhere is a usage error naming the known ones, not an
    // empty report.
    let out = concierge()
        .args(["feedback", "report"])
        .arg(&log)
        .args(["--rule", "nope"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nope") && err.contains("acme.example/hero"),
        "{err}"
    );
    // The feedback stream is hash-chained and signed like the audit stream.
    let out = concierge()
        .args(["audit", "verify"])
        .arg(&log)
        .arg("--public-key")
        .arg(dir.path().join("keys/signing.key.pub"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("stream feedback: 4 records"), "{text}");
}

#[tokio::test]
async fn abusive_feedback_posts_are_refused_and_leave_no_record() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = audited_proxy(&origin, dir.path(), ACME, "").await;
    let addr = server.listeners[0];
    let base = "rule=acme.example%2Fhero&version=0123456789abcdef&page=%2Flanding";
    let long_comment = "x".repeat(501);
    // (request headers, body, expected status, what the refusal says)
    type Case<'a> = (Vec<(&'a str, &'a str)>, String, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            vec![FORM, ("origin", "https://evil.example")],
            format!("event=shown&{base}"),
            403,
            "from a page of this site",
        ),
        (
            vec![FORM, ("sec-fetch-site", "cross-site")],
            format!("event=shown&{base}"),
            403,
            "from a page of this site",
        ),
        (
            vec![FORM],
            format!("event=shown&{base}"),
            403,
            "no Origin header",
        ),
        (
            vec![("content-type", "text/plain"), SAME_ORIGIN],
            format!("event=shown&{base}"),
            415,
            "application/x-www-form-urlencoded",
        ),
        (
            vec![("content-type", "application/json"), SAME_ORIGIN],
            "{\"event\":\"shown\"}".into(),
            415,
            "application/x-www-form-urlencoded",
        ),
        (
            vec![FORM, SAME_ORIGIN],
            format!(
                "event=answer&answer=yes&{base}&comment={}",
                "x".repeat(5000)
            ),
            413,
            "larger than",
        ),
        (
            vec![FORM, SAME_ORIGIN],
            "event=shown&rule=acme.example%2Fsilent&version=v&page=%2F".into(),
            400,
            "No rule with a feedback prompt",
        ),
        (
            vec![FORM, SAME_ORIGIN],
            "event=shown&rule=nobody%2Fnothing&version=v&page=%2F".into(),
            400,
            "No rule with a feedback prompt",
        ),
        (
            vec![FORM, SAME_ORIGIN],
            "event=answer&answer=yes&rule=acme.example%2Flead&version=v&page=%2F&comment=hi".into(),
            400,
            "does not take a comment",
        ),
        (
            vec![FORM, SAME_ORIGIN],
            format!("event=answer&answer=yes&{base}&comment={long_comment}"),
            400,
            "longer than 500",
        ),
        (
            vec![FORM, SAME_ORIGIN],
            "event=shown&rule=acme.example%2Fhero&version=v&page=https%3A%2F%2Fevil.example%2F"
                .into(),
            400,
            "path on this site",
        ),
        (
            vec![FORM, SAME_ORIGIN],
            format!("event=answer&answer=maybe&{base}"),
            400,
            "yes or no",
        ),
        (
            vec![FORM, SAME_ORIGIN],
            format!("event=shown&{base}&event=shown"),
            400,
            "repeats",
        ),
    ];
    for (i, (headers, body, status, says)) in cases.iter().enumerate() {
        // Each from its own address: the rate limit is not what is tested here.
        let from = format!("127.0.10.{}", 20 + i);
        let (resp, text) = post_from(&from, addr, "/_concierge/feedback", headers, body).await;
        assert_eq!(resp.status(), *status, "case {i}: {text}");
        assert!(text.contains(says), "case {i}: {text}");
    }
    // A body without Content-Length that turns out too large is cut off at the cap.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let req = http::Request::builder()
        .method("POST")
        .uri("/_concierge/feedback")
        .header("host", "www.example.test")
        .header(FORM.0, FORM.1)
        .header(SAME_ORIGIN.0, SAME_ORIGIN.1)
        .body(http_body_util::BodyExt::boxed(ChannelBody(rx)))
        .unwrap();
    tokio::spawn(async move {
        for _ in 0..4 {
            if tx.send(bytes::Bytes::from(vec![b'a'; 2048])).await.is_err() {
                break;
            }
        }
    });
    let (resp, _) = send_from("127.0.10.60", addr, req).await;
    assert_eq!(resp.status(), 413);
    // Other methods.
    let (resp, _) = get_from("127.0.10.61", addr, "/_concierge/feedback", &[]).await;
    assert_eq!(resp.status(), 405);
    concierge::app::stop(server).await;
    assert!(
        stream_records(&dir.path().join("log"), "feedback").is_empty(),
        "nothing refused was recorded"
    );
}

#[tokio::test]
async fn posts_are_rate_limited_per_client() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = audited_proxy(
        &origin,
        dir.path(),
        ACME,
        "[limits]\nvisitor_posts_per_minute = 1\nvisitor_posts_burst = 3\n",
    )
    .await;
    let addr = server.listeners[0];
    let shown = "event=shown&rule=acme.example%2Fhero&version=0123456789abcdef&page=%2Flanding";
    let headers = [FORM, SAME_ORIGIN];
    for _ in 0..3 {
        let (resp, text) =
            post_from("127.0.10.5", addr, "/_concierge/feedback", &headers, shown).await;
        assert_eq!(resp.status(), 204, "{text}");
    }
    let (resp, text) = post_from("127.0.10.5", addr, "/_concierge/feedback", &headers, shown).await;
    assert_eq!(resp.status(), 429, "{text}");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // The consent endpoint shares the client's budget.
    let (resp, _) = post_from(
        "127.0.10.5",
        addr,
        "/_concierge/consent",
        &headers,
        "choice=accept",
    )
    .await;
    assert_eq!(resp.status(), 429);
    // Another client is not affected; page requests are never limited.
    let (resp, _) = post_from("127.0.10.6", addr, "/_concierge/feedback", &headers, shown).await;
    assert_eq!(resp.status(), 204);
    let (resp, _) = get_from("127.0.10.5", addr, "/landing", &[HTML]).await;
    assert_eq!(resp.status(), 200);
    let (_, metrics) = admin(&server, "/metrics").await;
    assert_eq!(
        metric_value(
            &metrics,
            "concierge_rate_limited_total{endpoint=\"feedback\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "concierge_rate_limited_total{endpoint=\"consent\"}"
        ),
        Some(1.0)
    );
    concierge::app::stop(server).await;
    assert_eq!(stream_records(&dir.path().join("log"), "feedback").len(), 4);
}

#[tokio::test]
async fn the_why_page_says_in_plain_words_what_was_used() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = audited_proxy(&origin, dir.path(), ACME, "[proxy]\nwhy_link = true\n").await;
    let addr = server.listeners[0];
    let why = |from: &'static str,
               path: &'static str,
               headers: &'static [(&'static str, &'static str)]| async move {
        let (resp, body) = get_from(from, addr, path, headers).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
        String::from_utf8_lossy(&body).into_owned()
    };

    // An account visitor in California: the company, the region, the rules, how to change it.
    let page = why("127.0.10.5", "/_concierge/why?page=%2Flanding", &[HTML]).await;
    assert!(
        page.contains("Your network belongs to <strong>Acme &amp; Sons</strong> (acme.example)"),
        "{page}"
    );
    // Where, in words; what was changed, element by element (issue 16, item 15).
    assert!(
        page.contains("<strong>California, United States</strong>"),
        "{page}"
    );
    assert!(page.contains("acme.example/hero") && page.contains("acme.example/lead"));
    assert!(page.contains("the text of <code>h1.hero</code>"), "{page}");
    assert!(page.contains("for your organization"));
    assert!(page.contains("href=\"/_concierge/consent?return=/landing\""));
    // With GPC: no lookup, said so, and the signal named.
    let page = why(
        "127.0.10.5",
        "/_concierge/why?page=%2Flanding",
        &[HTML, ("sec-gpc", "1")],
    )
    .await;
    assert!(page.contains("Global Privacy Control"), "{page}");
    assert!(page.contains("We did not look up which organization"));
    assert!(!page.contains("Acme"));
    assert!(page.contains("Nothing on <code>/landing</code> is tailored"));
    // Germany without a choice.
    let page = why("127.0.0.9", "/_concierge/why?page=%2Flanding", &[]).await;
    assert!(page.contains("<strong>Germany</strong>"), "{page}");
    assert!(page.contains("You have not made a choice on this site yet"));
    // A hostile page parameter never reaches the page.
    let page = why(
        "127.0.0.9",
        "/_concierge/why?page=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
        &[],
    )
    .await;
    assert!(!page.contains("<script>"), "{page}");
    let page = why(
        "127.0.0.9",
        "/_concierge/why?page=/%22%3E%3Cimg%20src=x%3E",
        &[],
    )
    .await;
    assert!(!page.contains("<img"), "{page}");
    // With proxy.why_link every personalized page links to it, also where the rule does not ask.
    let (_, body) = get_from("127.0.10.5", addr, "/other", &[HTML]).await;
    let other = String::from_utf8_lossy(&body);
    assert!(
        other.contains("<a href=\"/_concierge/why?page=/other\" rel=\"nofollow\">"),
        "{other}"
    );
    // The choices page and the banner link to it.
    let page = why("127.0.0.9", "/_concierge/consent?return=/landing", &[]).await;
    assert!(
        page.contains("href=\"/_concierge/why?page=/landing\""),
        "{page}"
    );
    let (_, js) = get_from("127.0.0.9", addr, "/_concierge/consent.js", &[]).await;
    assert!(String::from_utf8_lossy(&js).contains("Why am I seeing this?"));
    concierge::app::stop(server).await;

    // Showing the lookup's result is recorded like any other use of it; the GPC and German requests ran no
    // lookup and wrote nothing.
    let explained: Vec<_> = audit_records(&dir.path().join("log"))
        .into_iter()
        .filter(|r| r["outcome"] == "explained")
        .collect();
    assert_eq!(explained.len(), 1, "{explained:#?}");
    assert_eq!(explained[0]["page"], "/_concierge/why");
    assert_eq!(explained[0]["company"], "acme.example");
}
