//! Rules and streaming rewriting through the real proxy: an account visitor gets their page, consent gates it
//! (and the lookup), opt-in visitors get the banner, cache headers, non-HTML untouched, hot reload keeps the
//! last good rules.

use http_body_util::BodyExt;
use std::path::Path;

use crate::support::*;

const ACME: &str = r#"
[account]
domain = "acme.example"
name = "Acme & Sons"
networks = ["127.0.10.0/24"]
owner = "Dana"

[[personalization]]
id = "hero"
tier = "firmographic"
paths = ["/landing", "/pricing"]

[[personalization.action]]
select = "h1.hero"
set_text = "Software for {{ company.name }}"

[[personalization.action]]
select = "a.cta"
set_attribute = { name = "href", value = "/demo?account={{ account.domain }}" }
"#;

const REGION: &str = r#"
[[personalization]]
id = "dach"
tier = "anonymous"
when.country = ["DE"]

[[personalization.action]]
select = "p.lead"
set_text = "Jetzt in {{ geo.country }}."
"#;

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

async fn rules_proxy(origin: &Origin, rules: &Path) -> concierge::app::Server {
    proxy(
        &origin.url(),
        &format!(
            "[rules]\ndir = \"{}\"\n[firmographics]\nwatch_interval = \"50ms\"\n\
             [[geo.static]]\nnetwork = \"127.0.0.0/8\"\ncountry = \"DE\"\n\
             [[geo.static]]\nnetwork = \"127.0.10.0/24\"\ncountry = \"US\"\nsubdivision = \"CA\"\n",
            rules.display()
        ),
    )
    .await
}

const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml");

#[tokio::test]
async fn an_account_visitor_gets_their_page_and_consent_gates_it() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "accounts/acme.example.toml", ACME);
    write(dir.path(), "regions/dach.toml", REGION);
    let server = rules_proxy(&origin, dir.path()).await;
    let addr = server.listeners[0];

    // California, no signal: personalized.
    let (resp, body) = get_from(
        "127.0.10.5",
        addr,
        "/landing",
        &[HTML, ("accept-encoding", "gzip, br")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-encoding"],
        "br",
        "compressed for the client"
    );
    assert!(resp
        .headers()
        .get_all("vary")
        .iter()
        .any(|v| v == "Accept-Encoding"));
    let mut plain = Vec::new();
    std::io::Read::read_to_end(&mut brotli::Decompressor::new(&body[..], 4096), &mut plain)
        .unwrap();
    let body = String::from_utf8(plain).unwrap();
    assert!(
        body.contains("<h1 class=\"hero\">Software for Acme &amp; Sons</h1>"),
        "{body}"
    );
    assert!(
        body.contains("href=\"/demo?account=acme.example\""),
        "{body}"
    );
    assert!(
        body.contains("<p class=\"lead\">Generic lead.</p>"),
        "region rule is for DE only"
    );
    assert!(!body.contains("consent.js"), "opt-out region: no banner");
    let h = resp.headers();
    assert_eq!(h["cache-control"], "private, no-store");
    assert!(h.get("etag").is_none() && h.get("last-modified").is_none());
    assert!(h.get("content-length").is_none());
    assert_eq!(
        origin
            .last()
            .headers
            .iter()
            .find(|(n, _)| n == "accept-encoding")
            .map(|(_, v)| v.as_str()),
        Some("gzip, br"),
        "the origin is asked only for codings we can decode"
    );

    // California with GPC: the origin's page, byte for byte, with its caching headers.
    let (resp, body) = get_from("127.0.10.5", addr, "/landing", &[HTML, ("sec-gpc", "1")]).await;
    assert_eq!(body, PAGE.as_bytes());
    assert_eq!(resp.headers()["cache-control"], "public, max-age=600");
    assert_eq!(resp.headers()["etag"], "\"p1\"");

    // Germany, no consent: the anonymous region rule and the banner, no company rule, no lookup.
    let (_, body) = get(addr, "/landing", &[HTML]).await;
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        body.contains("<p class=\"lead\">Jetzt in DE.</p>"),
        "{body}"
    );
    assert!(body.contains("<h1 class=\"hero\">Software for every team</h1>"));
    assert!(
        body.contains("<link rel=\"preload\" as=\"style\" href=\"/_concierge/consent.css\"><script src=\"/_concierge/consent.js?v="),
        "{body}"
    );
    assert!(
        body.contains("&amp;lang=en\" defer></script></head>"),
        "{body}"
    );

    // Not a page: untouched even though a rule and the banner apply to the visitor.
    let (_, body) = get(addr, "/logo.svg", &[HTML]).await;
    assert_eq!(&body[..], b"<svg><h1>not a page</h1></svg>");

    let (_, m) = admin(&server, "/metrics").await;
    // Only the account's first request: not with GPC, not from Germany without consent.
    assert_eq!(
        metric_value(&m, "concierge_company_lookups_total{result=\"match\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&m, "concierge_rewrites_total{result=\"rewritten\"}"),
        Some(2.0)
    );
    assert_eq!(
        metric_value(&m, "concierge_rewrites_total{result=\"skipped_not_html\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn rewritten_pages_are_compressed_as_the_client_asks() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "accounts/acme.example.toml", ACME);
    let server = rules_proxy(&origin, dir.path()).await;
    let addr = server.listeners[0];
    for (ae, coding) in [
        ("gzip", Some("gzip")),
        ("zstd;q=1, gzip;q=0.5", Some("zstd")),
        ("identity", None),
        ("br;q=0", None),
    ] {
        let (resp, body) = get_from(
            "127.0.10.5",
            addr,
            "/landing",
            &[HTML, ("accept-encoding", ae)],
        )
        .await;
        assert_eq!(
            resp.headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            coding,
            "{ae}"
        );
        let plain = match coding {
            Some("gzip") => {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut v)
                    .unwrap();
                v
            }
            Some("zstd") => zstd::stream::decode_all(&body[..]).unwrap(),
            _ => body.to_vec(),
        };
        assert!(
            String::from_utf8(plain)
                .unwrap()
                .contains("Software for Acme &amp; Sons"),
            "{ae}"
        );
    }
}

#[tokio::test]
async fn compressed_origin_pages_are_decoded_rewritten_and_encoded_again() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "accounts/acme.example.toml",
        &ACME.replace("\"/pricing\"", "\"/landing.z\""),
    );
    let server = rules_proxy(&origin, dir.path()).await;
    let addr = server.listeners[0];
    for origin_coding in ["gzip", "deflate", "br", "zstd"] {
        for (client_ae, client_coding) in [
            ("gzip, deflate, br, zstd, compress", Some("br")),
            ("gzip", Some("gzip")),
            ("identity", None),
        ] {
            let what = format!("origin {origin_coding}, client {client_ae}");
            let (resp, body) = get_from(
                "127.0.10.5",
                addr,
                &format!("/landing.z?c={origin_coding}"),
                &[HTML, ("accept-encoding", client_ae)],
            )
            .await;
            assert_eq!(resp.status(), 200, "{what}");
            let h = resp.headers();
            assert_eq!(
                h.get("content-encoding").map(|v| v.to_str().unwrap()),
                client_coding,
                "{what}"
            );
            assert!(h.get("content-length").is_none(), "{what}");
            assert_eq!(
                h.get_all("vary").iter().count(),
                1,
                "{what}: the origin's Vary: Accept-Encoding is not repeated"
            );
            let page = String::from_utf8(decompress(client_coding.unwrap_or(""), &body)).unwrap();
            assert!(
                page.contains("Software for Acme &amp; Sons"),
                "{what}: {page}"
            );
            assert!(page.ends_with("</html>"), "{what}: the whole page arrived");
            // The origin was asked only for codings we decode (and the client accepts).
            let seen = origin.last();
            let ae = seen
                .headers
                .iter()
                .find(|(n, _)| n == "accept-encoding")
                .map(|(_, v)| v.as_str());
            let expected = match client_ae {
                "identity" => "identity",
                "gzip" => "gzip",
                _ => "gzip, deflate, br, zstd",
            };
            assert_eq!(ae, Some(expected), "{what}");
        }
    }
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(
        metric_value(&m, "concierge_rewrites_total{result=\"rewritten\"}"),
        Some(12.0)
    );
}

#[tokio::test]
async fn a_decompression_bomb_is_cut_off() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "accounts/acme.example.toml", ACME);
    write(
        dir.path(),
        "everywhere.toml",
        "[[personalization]]\nid = \"all\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"p\"\nadd_class = \"x\"\n",
    );
    let server = rules_proxy(&origin, dir.path()).await;
    let addr = server.listeners[0];
    let tcp = connect_from("127.0.10.5", addr).await;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    // Cut off at once (no head sent: the connection closes) or after some output (the body ends in an error).
    let mut received = 0usize;
    let mut failed = false;
    match sender
        .send_request(request(
            "GET",
            "/bomb",
            &[HTML, ("accept-encoding", "identity")],
            empty(),
        ))
        .await
    {
        Err(_) => failed = true,
        Ok(resp) => {
            assert_eq!(resp.status(), 200);
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => received += f.data_ref().map_or(0, |d| d.len()),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
        }
    }
    assert!(failed, "the body ends in an error, not as a complete page");
    // 64 KiB in at most 100× (plus the first MiB) out: far from the 64 MiB the bomb holds.
    assert!(received < 16 * 1024 * 1024, "{received} bytes came out");
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(
        metric_value(&m, "concierge_rewrites_total{result=\"decode_failed\"}"),
        Some(1.0)
    );
    // The proxy is fine.
    let (resp, _) = get_from("127.0.10.5", addr, "/landing", &[HTML]).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_meta_charset_page_is_rewritten_in_its_own_encoding() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "accounts/acme.example.toml",
        &ACME
            .replace(
                "Software for {{ company.name }}",
                "Grüße, {{ company.name }}",
            )
            .replace(
                "paths = [\"/landing\", \"/pricing\"]",
                "paths = [\"/landing\", \"/latin1\"]",
            ),
    );
    let server = rules_proxy(&origin, dir.path()).await;
    let (resp, body) = get_from("127.0.10.5", server.listeners[0], "/latin1", &[HTML]).await;
    assert_eq!(resp.status(), 200);
    // windows-1252 bytes: ü = FC, ß = DF; the page's own Ü (DC) is untouched elsewhere.
    let expected: &[u8] = b"<h1 class=\"hero\">Gr\xfc\xdfe, Acme &amp; Sons</h1>";
    assert!(
        body.windows(expected.len()).any(|w| w == expected),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn a_broken_rule_file_on_reload_keeps_the_previous_rules_serving() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "accounts/acme.example.toml", ACME);
    let server = rules_proxy(&origin, dir.path()).await;
    let addr = server.listeners[0];
    let hero = |body: &[u8]| String::from_utf8_lossy(body).contains("Software for Acme");

    // Broken: an unknown template variable.
    write(
        dir.path(),
        "accounts/acme.example.toml",
        &ACME.replace("{{ company.name }}", "{{ company.nmae }}"),
    );
    let metrics = server.metrics.clone();
    eventually("the failed reload is counted", || {
        metrics
            .encode()
            .contains("concierge_source_reloads_total{source=\"rules\",result=\"failure\"}")
    })
    .await;
    let (_, body) = get_from("127.0.10.5", addr, "/landing", &[HTML]).await;
    assert!(hero(&body), "old rules still serve");

    // Fixed, with new text: swapped in.
    write(
        dir.path(),
        "accounts/acme.example.toml",
        &ACME.replace(
            "Software for {{ company.name }}",
            "Made for {{ company.name }}",
        ),
    );
    eventually("the good reload is counted", || {
        metrics
            .encode()
            .contains("concierge_source_reloads_total{source=\"rules\",result=\"success\"}")
    })
    .await;
    let (_, body) = get_from("127.0.10.5", addr, "/landing", &[HTML]).await;
    assert!(String::from_utf8_lossy(&body).contains("Made for Acme &amp; Sons"));
}

/// Regression (issue 13, item 10): an edit `check` rejects was half-live — new personalization text went live
/// while the file's networks (with a bad CIDR) stayed old, and the rules counter said "success".
#[tokio::test]
async fn a_reload_is_all_or_nothing() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Acme starts on the lower half of its /24 (all of it in California in this proxy's geo table).
    let acme = ACME.replace("\"127.0.10.0/24\"", "\"127.0.10.0/25\"");
    write(dir.path(), "accounts/acme.example.toml", &acme);
    let server = rules_proxy(&origin, dir.path()).await;
    let addr = server.listeners[0];
    let metrics = server.metrics.clone();
    let count = move |source: &str, result: &str| {
        metric_value(
            &metrics.encode(),
            &format!("concierge_source_reloads_total{{source=\"{source}\",result=\"{result}\"}}"),
        )
        .unwrap_or(0.0)
    };
    // New text, a new (valid) network and a bad network in the same edit.
    write(
        dir.path(),
        "accounts/acme.example.toml",
        &acme.replace("Software for", "Now for").replace(
            "\"127.0.10.0/25\"",
            "\"127.0.10.0/25\", \"127.0.10.128/25\", \"10.0.0.0/33\"",
        ),
    );
    let c = count.clone();
    eventually("the refused reload is counted", || {
        c("firmographics", "failure") >= 1.0
    })
    .await;
    assert_eq!(
        count("rules", "failure"),
        1.0,
        "the rules did not go live either"
    );
    assert_eq!(count("rules", "success"), 0.0);
    let (_, body) = get_from("127.0.10.5", addr, "/landing", &[HTML]).await;
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("Software for Acme"),
        "the old set serves: {body}"
    );
    assert!(!body.contains("Now for"), "no half of the new set is live");
    let (_, body) = get_from("127.0.10.200", addr, "/landing", &[HTML]).await;
    let body = String::from_utf8_lossy(&body);
    assert!(
        !body.contains("for Acme"),
        "the new network is not live either: {body}"
    );
    // The same broken files are not retried (nor logged) every watch interval.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(count("rules", "failure"), 1.0, "refused once per change");
    // Fixed: the whole new set goes live, the new network with it.
    write(
        dir.path(),
        "accounts/acme.example.toml",
        &acme.replace("Software for", "Now for").replace(
            "\"127.0.10.0/25\"",
            "\"127.0.10.0/25\", \"127.0.10.128/25\"",
        ),
    );
    let c = count.clone();
    eventually("the good reload is counted", || {
        c("rules", "success") >= 1.0
    })
    .await;
    assert_eq!(count("firmographics", "success"), 1.0);
    let (_, body) = get_from("127.0.10.5", addr, "/landing", &[HTML]).await;
    assert!(String::from_utf8_lossy(&body).contains("Now for Acme"));
    let (_, body) = get_from("127.0.10.200", addr, "/landing", &[HTML]).await;
    assert!(String::from_utf8_lossy(&body).contains("Now for Acme"));
}

#[tokio::test]
async fn broken_rules_stop_the_start_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "regions/bad.toml",
        "[[personalization]]\nid = \"x\"\ntier = \"anonymous\"\n[[personalization.action]]\nselect = \"h1[\"\nset_text = \"x\"\n",
    );
    let err = start_error(&format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[rules]\ndir = \"{}\"\n[audit]\ndir = \"{}\"\n",
        dir.path().display(),
        dir.path().join("audit").display()
    ))
    .await;
    assert!(err.contains("bad.toml:5:10: selector `h1[`"), "{err}");
}

#[tokio::test]
async fn each_demo_account_sees_its_page_through_the_demo_setup() {
    let origin = concierge::demo::start_origin("127.0.0.1:0".parse().unwrap())
        .await
        .expect("demo origin");
    let dir = tempfile::tempdir().unwrap();
    let overrides = concierge::config::Overrides {
        listen: vec!["127.0.0.1:0".into()],
        upstream: Some(format!("http://{origin}")),
        rules: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")),
        admin: Some("127.0.0.1:0".into()),
        ..Default::default()
    };
    let settings = concierge::config::Settings::from_toml(
        &concierge::demo::settings_toml(
            &dir.path().join("log"),
            &signing_key(&dir.path().join("k")),
        ),
        &overrides,
    )
    .unwrap();
    let server = concierge::app::Server::start(settings).await.unwrap();
    let addr = server.listeners[0];
    for (from, path, expect) in [
        (
            "127.0.10.7",
            "/",
            "Acme Manufacturing: see every dollar before it leaves the plant.",
        ),
        ("127.0.10.7", "/", "Book your demo with Dana Whitfield"),
        (
            "127.0.20.7",
            "/",
            "Welcome back, Globex Logistics — your renewal review with Sam Okafor is ready.",
        ),
        (
            "127.0.30.7",
            "/pricing.html",
            "Plans for Initech Software&#39;s finance team",
        ),
    ] {
        let (resp, body) = get_from(from, addr, path, &[HTML]).await;
        let page = String::from_utf8_lossy(&body);
        assert_eq!(resp.status(), 200);
        assert!(
            page.contains(expect) || page.contains(&expect.replace("&#39;", "'")),
            "{from} {path}: {expect}\n{page}"
        );
        assert_eq!(resp.headers()["cache-control"], "private, no-store");
    }
    // 127.0.0.1 is in Germany: no consent yet, so no account personalization — the banner asks.
    let (_, body) = get_from("127.0.0.1", addr, "/", &[HTML]).await;
    let page = String::from_utf8_lossy(&body);
    assert!(!page.contains("Acme Manufacturing"));
    assert!(page.contains("consent.js"), "the banner is injected");
    concierge::app::stop(server).await;
    let decisions = audit_records(&dir.path().join("log"))
        .into_iter()
        .filter(|r| r["type"] == "decision" && r["outcome"] == "personalized")
        .count();
    // Four account pages, and the German visitor's page (the DACH region rule is anonymous-tier).
    assert_eq!(decisions, 5, "one decision record per personalized page");
}

/// Issue 14: `concierge explain` and the proxy reach the same decision, plan and record for the same input —
/// random visitors (address, consent signals, cookies, campaign) through the real proxy and the real binary.
#[test]
fn explain_and_the_proxy_decide_alike() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let origin = rt.block_on(Origin::start());
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "rules/accounts/acme.example.toml", ACME);
    write(dir.path(), "rules/regions/dach.toml", REGION);
    let log = dir.path().join("log");
    let config_text = format!(
        "[rules]\ndir = \"{}\"\n[audit]\ndir = \"{}\"\nsigning_key = \"{}\"\n\
         [[geo.static]]\nnetwork = \"127.0.0.0/8\"\ncountry = \"DE\"\n\
         [[geo.static]]\nnetwork = \"127.0.10.0/24\"\ncountry = \"US\"\nsubdivision = \"CA\"\n",
        dir.path().join("rules").display(),
        log.display(),
        signing_key(&dir.path().join("keys")).display()
    );
    let config = dir.path().join("concierge.toml");
    std::fs::write(&config, &config_text).unwrap();
    let server = rt.block_on(proxy(&origin.url(), &config_text));
    let addr = server.listeners[0];
    let granted = signed_consent(&log, true, false, unix_now());
    let strategy = (
        prop_oneof![Just("127.0.10.5"), Just("127.0.0.7"), Just("127.0.10.9")],
        any::<bool>(), // GPC
        prop_oneof![
            Just(String::new()),
            Just("usprivacy=1YYN".to_string()),
            Just("usprivacy=1YNN; city=M\u{fc}nchen".to_string()),
            Just(granted.clone()),
        ],
        prop_oneof![Just(""), Just("?utm_campaign=spring"), Just("?x=1")],
    );
    // A fixed seed: which cases reach a record is then the same in every run, so the count below is a property
    // of the code, not of the draw (a random draw of 12 once gave only 3 cases with a record and failed CI).
    let runner_config = Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(runner_config.rng_algorithm);
    let mut runner = TestRunner::new_with_rng(runner_config, rng);
    let compared = std::cell::Cell::new(0);
    runner
        .run(&strategy, |(from, gpc, cookie, query)| {
            let url = format!("/landing{query}");
            let mut headers: Vec<(&str, &str)> = vec![HTML];
            if gpc {
                headers.push(("sec-gpc", "1"));
            }
            let cookie = cookie.replace('\u{fc}', "u");
            if !cookie.is_empty() {
                headers.push(("cookie", &cookie));
            }
            let (resp, _) = rt.block_on(get_from(from, addr, &url, &headers));
            let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
            let mut cmd = concierge();
            cmd.args(["explain", "--config"])
                .arg(&config)
                .args(["--ip", from, "--url", &url, "--json"]);
            if gpc {
                cmd.args(["--header", "Sec-GPC: 1"]);
            }
            if !cookie.is_empty() {
                cmd.args(["--header", &format!("Cookie: {cookie}")]);
            }
            let out = cmd.output().unwrap();
            prop_assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let explained: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let same = |r: &serde_json::Value| {
                let mut r = r.clone();
                for volatile in ["seq", "prev", "time", "request_id", "client"] {
                    r.as_object_mut().unwrap().remove(volatile);
                }
                r
            };
            // The proxy's record (a page that was not rewritten did not wait for it: allow its commit a moment).
            let find = || {
                audit_records(&log)
                    .into_iter()
                    .find(|r| r["type"] == "decision" && r["request_id"] == id.as_str())
            };
            let mut proxied = find();
            for _ in 0..100 {
                if proxied.is_some() || explained["record"].is_null() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
                proxied = find();
            }
            if proxied.is_some() {
                compared.set(compared.get() + 1);
            }
            match (&proxied, explained["record"].is_null()) {
                (None, true) => {}
                (Some(p), false) => prop_assert_eq!(same(p), same(&explained["record"])),
                (p, _) => prop_assert!(
                    false,
                    "proxy recorded {:?}, explain {}",
                    p,
                    explained["record"]
                ),
            }
            Ok(())
        })
        .unwrap();
    // Both kinds of case were exercised: pages with a record to compare (9 of the 16 with this seed) and pages
    // without one.
    assert!(
        (4..16).contains(&compared.get()),
        "cases with a record to compare: {} of 16",
        compared.get()
    );
}
