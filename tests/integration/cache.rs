//! The origin-response cache (`[cache] enabled = true`): a page the origin marks shared-cacheable is fetched once
//! and then served from memory, while every visitor's page is still decided, recorded and rewritten on its own.

use crate::support::*;

const ACME: &str = r#"
[account]
domain = "acme.example"
name = "Acme"
networks = ["127.0.10.0/24"]

[[personalization]]
id = "hero"
tier = "firmographic"

[[personalization.action]]
select = "h1.hero"
set_text = "Software for {{ company.name }}"
"#;

const HTML: (&str, &str) = ("accept", "text/html");

fn landing_fetches(origin: &Origin) -> usize {
    origin
        .seen()
        .iter()
        .filter(|s| s.uri.starts_with("/landing"))
        .count()
}

#[tokio::test]
async fn a_cacheable_page_is_fetched_once_and_still_personalized_per_visitor() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = audited_proxy(&origin, dir.path(), ACME, "[cache]\nenabled = true\n").await;
    let addr = server.listeners[0];

    // An account in California: personalized; the origin's page (public, max-age=600) is stored.
    let (resp, body) = get_from("127.0.10.5", addr, "/landing", &[HTML]).await;
    assert_eq!(resp.status(), 200);
    assert!(String::from_utf8_lossy(&body).contains("Software for Acme"));
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    assert_eq!(landing_fetches(&origin), 1);

    // Another visitor of the account: personalized again, from the stored page.
    let (resp, body) = get_from("127.0.10.6", addr, "/landing", &[HTML]).await;
    assert!(String::from_utf8_lossy(&body).contains("Software for Acme"));
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    // A visitor with GPC: the origin's page byte for byte, with its caching headers and its age.
    let (resp, body) = get_from("127.0.10.7", addr, "/landing", &[HTML, ("sec-gpc", "1")]).await;
    assert_eq!(body, PAGE.as_bytes());
    assert_eq!(resp.headers()["cache-control"], "public, max-age=600");
    assert_eq!(resp.headers()["etag"], "\"p1\"");
    assert!(resp.headers().contains_key("age"), "{:?}", resp.headers());
    // Germany, no consent: the banner, no company, from the same stored page.
    let (_, body) = get_from("127.0.0.9", addr, "/landing", &[HTML]).await;
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("Software for every team") && body.contains("consent.js"));
    assert_eq!(landing_fetches(&origin), 1, "served from the cache");

    // Every personalized page has its own decision record, cached or not.
    eventually("two personalized decision records", || {
        audit_records(&dir.path().join("log"))
            .iter()
            .filter(|r| r["outcome"] == "personalized")
            .count()
            == 2
    })
    .await;

    // A request with a cookie of the site's own (a session?) goes to the origin; the proxy's own cookies do not
    // make a request personal.
    get_from(
        "127.0.10.5",
        addr,
        "/landing",
        &[HTML, ("cookie", "session=1")],
    )
    .await;
    assert_eq!(landing_fetches(&origin), 2);
    let consent = signed_consent(&dir.path().join("log"), true, false, unix_now());
    get_from("127.0.0.9", addr, "/landing", &[HTML, ("cookie", &consent)]).await;
    assert_eq!(landing_fetches(&origin), 2);
    // A reload (`Cache-Control: no-cache`) goes to the origin too.
    get_from(
        "127.0.10.5",
        addr,
        "/landing",
        &[HTML, ("cache-control", "no-cache")],
    )
    .await;
    assert_eq!(landing_fetches(&origin), 3);

    // A page the origin does not mark cacheable (`/plain` answers without Cache-Control) is never stored.
    for _ in 0..2 {
        let (resp, _) = get(addr, "/plain", &[]).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        origin.seen().iter().filter(|s| s.uri == "/plain").count(),
        2
    );

    let (_, m) = admin(&server, "/metrics").await;
    let v = |r: &str| {
        metric_value(
            &m,
            &format!("concierge_origin_cache_total{{result=\"{r}\"}}"),
        )
    };
    assert_eq!(v("hit"), Some(4.0), "{m}");
    assert!(v("stored").unwrap_or(0.0) >= 1.0, "{m}");
    assert!(v("bypass").unwrap_or(0.0) >= 1.0, "{m}");
    assert!(
        metric_value(&m, "concierge_origin_cache_bytes").unwrap_or(0.0) >= PAGE.len() as f64,
        "{m}"
    );
}

#[tokio::test]
async fn without_the_key_nothing_is_cached() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = audited_proxy(&origin, dir.path(), ACME, "").await;
    let addr = server.listeners[0];
    for _ in 0..2 {
        get_from("127.0.10.5", addr, "/landing", &[HTML]).await;
    }
    assert_eq!(landing_fetches(&origin), 2);
}
