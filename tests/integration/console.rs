//! The console on the admin listener: nothing without the token, every page with it, bad input a clear 400.

use crate::support::*;

const TOKEN: &str = "console-token-0123456789abcdef0123456789";

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
    let token_file = dir.path().join("console.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let account = "[account]\ndomain = \"acme.example\"\nname = \"Acme\"\nnetworks = [\"127.0.10.0/24\"]\n\n[[personalization]]\nid = \"hero\"\ntier = \"firmographic\"\n\n[[personalization.action]]\nselect = \"h1.hero\"\nset_text = \"Hi {{ company.name }}\"\n";
    let server = audited_proxy(
        &origin,
        dir.path(),
        account,
        &format!(
            "[console]\nenabled = true\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    )
    .await;
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
        "/console/rules",
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
        let expect = if route.ends_with("nothing-here") {
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
