//! The console on the admin listener: nothing without the token, every page with it, bad input a clear 400.

use crate::support::*;

const TOKEN: &str = CONSOLE_TOKEN;

async fn console_get(
    server: &concierge::app::Server,
    path: &str,
    auth: Option<&str>,
) -> (u16, String, http::HeaderMap) {
    let addr = server.admin.expect("admin listener");
    let mut headers = vec![];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    let (resp, body) = get(addr, path, &headers).await;
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
        resp.headers().clone(),
    )
}

#[tokio::test]
async fn the_console_needs_its_token_on_every_route_and_serves_its_pages() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let account = "[account]\ndomain = \"acme.example\"\nname = \"Acme\"\nnetworks = [\"127.0.10.0/24\"]\n\n[[personalization]]\nid = \"hero\"\ntier = \"firmographic\"\n\n[[personalization.action]]\nselect = \"h1.hero\"\nset_text = \"Hi {{ company.name }}\"\n";
    let server = audited_proxy(&origin, dir.path(), account, &console_section(dir.path())).await;
    // Something to find: a personalized page and its record.
    let (resp, _) = get_from(
        "127.0.10.5",
        server.listeners[0],
        "/landing",
        &[("accept", "text/html")],
    )
    .await;
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    eventually("a decision record", || {
        !audit_records(&dir.path().join("log")).is_empty()
    })
    .await;

    let routes = [
        "/console",
        "/console/",
        "/console/console.css",
        "/console/favicon.svg",
        "/console/rules",
        "/console/rules/preview",
        "/console/rules/preview/frame?id=00000000000000000000000000000000&page=original",
        "/console/experiments",
        "/console/feedback",
        "/console/audit",
        "/console/audit/verify",
        "/console/audit/record?seq=0",
        "/console/audit/export.csv",
        "/console/audit/export.jsonl",
        "/console/nothing-here",
    ];
    let bearer = format!("Bearer {TOKEN}");
    for route in routes {
        for auth in [
            None,
            Some("Bearer wrong-token-wrong-token-wrong-token"),
            Some("Basic Og=="),
        ] {
            let (status, body, h) = console_get(&server, route, auth).await;
            assert_eq!(status, 401, "{route} with {auth:?}");
            assert!(h.contains_key("www-authenticate"));
            assert_eq!(h["cache-control"], "no-store");
            assert!(!body.contains(TOKEN));
        }
        let (status, _, h) = console_get(&server, route, Some(&bearer)).await;
        let expect = if route.ends_with("nothing-here") || route.contains("/frame?") {
            404
        } else {
            200
        };
        assert_eq!(status, expect, "{route}");
        assert_eq!(h["cache-control"], "no-store", "{route}");
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'"));
    }
    // Basic credentials with the token as the password (what a browser asks for).
    let basic = format!("Basic {}", base64_encode(&format!("reviewer:{TOKEN}")));
    assert_eq!(console_get(&server, "/console/", Some(&basic)).await.0, 200);

    let (_, html, _) = console_get(&server, "/console/rules", Some(&bearer)).await;
    assert!(
        html.contains("acme.example/hero") && html.contains("firmographic"),
        "{html}"
    );
    let (_, html, _) = console_get(&server, "/console/audit/verify", Some(&bearer)).await;
    assert!(html.contains("intact"), "{html}");
    let (status, html, _) = console_get(
        &server,
        &format!("/console/audit?request={request_id}"),
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&request_id) && html.contains("personalized"),
        "{html}"
    );
    let (_, csv, h) = console_get(
        &server,
        &format!("/console/audit/export.csv?request={request_id}"),
        Some(&bearer),
    )
    .await;
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .contains("concierge-audit.csv"));
    assert_eq!(csv.lines().count(), 2, "{csv}");
    // Bad input: a clear message, not a 500.
    let (status, html, _) =
        console_get(&server, "/console/audit?since=yesterday", Some(&bearer)).await;
    assert_eq!(status, 400);
    assert!(html.contains("is not a date"), "{html}");
    let (status, _, _) = console_get(&server, "/console/audit?type=a&type=b", Some(&bearer)).await;
    assert_eq!(status, 400);
    // A refused reload: the rules page says so, with every error, while the previous rules keep serving.
    std::fs::write(
        dir.path().join("rules/accounts/acme.example.toml"),
        "[account]\ndomain = \"acme.example\"\nname = 5\n",
    )
    .unwrap();
    assert!(server.reload_sources("test").is_err());
    let (_, html, _) = console_get(&server, "/console/rules", Some(&bearer)).await;
    assert!(
        html.contains("refused") && html.contains("acme.example.toml:3"),
        "{html}"
    );
    assert!(
        html.contains("acme.example/hero"),
        "the previous rules still serve"
    );
    // The proxy's own admin endpoints are untouched by the console.
    assert_eq!(admin(&server, "/healthz").await.0, 200);
}

#[tokio::test]
async fn the_preview_runs_the_pipeline_over_the_origins_page_and_records_nothing() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let account = "[account]\ndomain = \"acme.example\"\nname = \"Acme\"\nnetworks = [\"127.0.10.0/24\"]\n\n[[personalization]]\nid = \"hero\"\ntier = \"firmographic\"\npaths = [\"/landing\"]\n\n[[personalization.action]]\nselect = \"h1.hero\"\nset_text = \"Hi <{{ company.name }}>\"\n";
    let server = audited_proxy(&origin, dir.path(), account, &console_section(dir.path())).await;
    let bearer = format!("Bearer {TOKEN}");
    // Without the token: 401, and the origin is not asked for anything.
    let before = origin.seen().len();
    let (status, _, _) = console_get(
        &server,
        "/console/rules/preview?account=Acme&url=%2Flanding",
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        origin.seen().len(),
        before,
        "no fetch before the token is checked"
    );

    // Made by another site (the browser holds the credentials): refused before any work, no fetch.
    let addr = server.admin.unwrap();
    for site in ["cross-site", "same-site"] {
        let (resp, _) = get(
            addr,
            "/console/rules/preview?account=Acme&url=%2Flanding",
            &[("authorization", bearer.as_str()), ("sec-fetch-site", site)],
        )
        .await;
        assert_eq!(resp.status(), 403, "{site}");
    }
    let (resp, _) = get(
        addr,
        "/console/audit",
        &[
            ("authorization", bearer.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 200, "the console's own links");
    // Only GET previews: a POST is refused without a fetch.
    let resp = send(
        addr,
        request(
            "POST",
            "/console/rules/preview?account=Acme&url=%2Flanding",
            &[("authorization", bearer.as_str())],
            empty(),
        ),
    )
    .await;
    assert_eq!(resp.status(), 405);
    assert_eq!(
        origin.seen().len(),
        before,
        "no fetch for a refused request"
    );

    // An answer the proxy does not rewrite: said so, with the reason.
    let (status, html, _) = console_get(
        &server,
        "/console/rules/preview?account=Acme&url=%2Flogo.svg",
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("pass it through unchanged (not text/html)"),
        "{html}"
    );

    // The empty form.
    let (status, html, _) = console_get(&server, "/console/rules/preview", Some(&bearer)).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("name=\"ip\"") && html.contains("<option value=\"Acme\""),
        "{html}"
    );

    // Acme (California: opt-out, nothing withdrawn) on /landing with a campaign.
    let (status, html, _) = console_get(
        &server,
        "/console/rules/preview?account=Acme&url=%2Flanding&utm_campaign=spring",
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("127.0.10.1"),
        "the account's first address: {html}"
    );
    assert!(
        html.contains("acme.example/hero") && html.contains(">applied<"),
        "{html}"
    );
    // The inserted text, escaped as it will be inserted, and escaped again on the console page.
    assert!(html.contains("Hi &amp;lt;Acme&amp;gt;"), "{html}");
    assert!(
        html.contains("&quot;outcome&quot;: &quot;personalized&quot;"),
        "the record: {html}"
    );
    assert!(
        html.contains("<del>- Software for every team&lt;/h1&gt;</del>"),
        "the diff: {html}"
    );
    assert_eq!(
        origin.last().uri,
        "/landing?utm_campaign=spring",
        "fetched from the origin"
    );
    assert!(origin.last().header("cookie").is_none());
    // The frames: each page under a sandbox, framed by the console only.
    let id = html
        .split("preview/frame?id=")
        .nth(1)
        .and_then(|s| s.get(..32))
        .expect("a frame")
        .to_string();
    let (status, page, h) = console_get(
        &server,
        &format!("/console/rules/preview/frame?id={id}&page=rewritten"),
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 200);
    assert!(page.contains("Hi &lt;Acme&gt;"), "{page}");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("sandbox;") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");
    let (_, page, _) = console_get(
        &server,
        &format!("/console/rules/preview/frame?id={id}&page=original"),
        Some(&bearer),
    )
    .await;
    assert!(page.contains("Software for every team") && !page.contains("Acme"));
    let (status, _, _) = console_get(
        &server,
        "/console/rules/preview/frame?id=00000000000000000000000000000000&page=original",
        Some(&bearer),
    )
    .await;
    assert_eq!(status, 404);

    // GPC is a withdrawal in California: the rule is not permitted, no lookup runs.
    let (_, html, _) = console_get(
        &server,
        "/console/rules/preview?ip=127.0.10.9&url=%2Flanding&gpc=on",
        Some(&bearer),
    )
    .await;
    assert!(
        html.contains(">not permitted<") && html.contains("lookup not run"),
        "{html}"
    );

    // Bad input: a clear 400 on the page.
    for (query, says) in [
        ("ip=300.1.1.1", "is not an IP address"),
        ("ip=127.0.0.1&account=Acme", "not both"),
        ("account=Globex", "no target account named"),
        ("ip=127.0.0.1&url=landing", "is not a path"),
        ("ip=127.0.0.1&consent=maybe", "is not one of"),
    ] {
        let (status, html, _) = console_get(
            &server,
            &format!("/console/rules/preview?{query}"),
            Some(&bearer),
        )
        .await;
        assert_eq!(status, 400, "{query}");
        assert!(html.contains(says), "{query}: {html}");
    }
    // Nothing of this was recorded: the log holds no decision record.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        audit_records(&dir.path().join("log"))
            .iter()
            .all(|r| r["type"] != "decision"),
        "the preview wrote a record"
    );
}

#[test]
fn a_console_without_a_good_token_file_is_a_config_error() {
    let check = |extra: &str| {
        concierge::config::Settings::from_toml(
            &format!(
                "[upstream]\nurl = \"http://127.0.0.1:1\"\n[console]\nenabled = true\n{extra}"
            ),
            &Default::default(),
        )
        .expect_err("refused")
        .to_string()
    };
    assert!(check("").contains("console.token_file"));
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("t");
    std::fs::write(&short, "short").unwrap();
    let err = check(&format!("token_file = \"{}\"\n", short.display()));
    assert!(err.contains("shorter than 32"), "{err}");
    let err = check(&format!(
        "token_file = \"{}\"\n",
        dir.path().join("missing").display()
    ));
    assert!(err.contains("cannot read it"), "{err}");
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
