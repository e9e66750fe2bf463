//! The consent engine in the proxy: the endpoint (cookie set only after the record is written, cross-site
//! and oversized posts refused), the choices page and banner assets, `/.well-known/gpc.json`, and "no
//! permitted tier, no lookup" counted through the metrics.

use std::path::Path;

use http_body_util::BodyExt;

use crate::support::*;

const FORM: &str = "application/x-www-form-urlencoded";
const SITE: &str = "http://www.example.test";

/// The consent records in the audit log under `dir`.
fn records(dir: &Path) -> Vec<serde_json::Value> {
    audit_records(dir)
        .into_iter()
        .filter(|r| r["type"] == "consent")
        .collect()
}

async fn post(
    addr: std::net::SocketAddr,
    headers: &[(&str, &str)],
    body: &str,
) -> (http::Response<()>, bytes::Bytes) {
    let resp = send(
        addr,
        request(
            "POST",
            "/_concierge/consent",
            headers,
            full(body.to_string()),
        ),
    )
    .await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (http::Response::from_parts(parts, ()), bytes)
}

/// A proxy whose loopback clients are in Germany (opt-in) except 127.0.10.0/24 (California, opt-out), with
/// one account on 127.0.0.0/8 and records in `audit`.
async fn consent_proxy(origin: &Origin, audit: &Path, extra: &str) -> concierge::app::Server {
    let rules = audit.join("rules");
    std::fs::create_dir_all(rules.join("accounts")).unwrap();
    std::fs::write(
        rules.join("accounts/loop.example.toml"),
        // A rule for the account on every page, so the company is worth looking up wherever consent permits
        // it (its selector finds nothing on the test pages).
        "[account]\ndomain = \"loop.example\"\nname = \"Loop Corp\"\nnetworks = [\"127.0.0.0/8\"]\n\
         [[personalization]]\nid = \"all\"\ntier = \"firmographic\"\n\
         [[personalization.action]]\nselect = \"#loop-never\"\nset_text = \"{{ company.name }}\"\n",
    )
    .unwrap();
    proxy(
        &origin.url(),
        &format!(
            "[rules]\ndir = \"{}\"\n[audit]\ndir = \"{}\"\n\
             [[geo.static]]\nnetwork = \"127.0.0.0/8\"\ncountry = \"DE\"\n\
             [[geo.static]]\nnetwork = \"127.0.10.0/24\"\ncountry = \"US\"\nsubdivision = \"CA\"\n{extra}",
            rules.display(),
            audit.display()
        ),
    )
    .await
}

#[tokio::test]
async fn a_same_origin_choice_is_recorded_then_set_as_a_cookie() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = consent_proxy(&origin, dir.path(), "").await;
    let addr = server.listeners[0];

    let (resp, _) = post(
        addr,
        &[
            ("origin", SITE),
            ("sec-fetch-site", "same-origin"),
            ("content-type", FORM),
        ],
        "choice=custom&firmographic=on&return=%2Fpricing%3Femail%3Da%40b.example",
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        resp.headers()["location"],
        "/pricing?email=a@b.example",
        "back to the page"
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("concierge_consent=2~"), "{cookie}");
    assert!(
        cookie.contains("; Path=/; Max-Age=34128000; SameSite=Lax"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("concierge_consent=")
        .to_string();
    let parts: Vec<&str> = value.split('~').collect();
    assert_eq!(parts.len(), 7, "signed: key id and tag at the end");
    assert_eq!(parts[4], "yn", "firmographic yes, personal no");

    let recs = records(dir.path());
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r["type"], "consent");
    assert_eq!(
        r["consent_id"], parts[1],
        "the record carries the cookie's consent id"
    );
    assert_eq!(r["action"], "custom");
    assert_eq!(r["choices"]["firmographic"], true);
    assert_eq!(r["choices"]["personal"], false);
    assert_eq!(r["banner_version"], "1");
    assert_eq!(r["page"], "/pricing", "no query string in the record");
    assert_eq!(r["jurisdiction"]["region"], "DE");
    assert_eq!(r["jurisdiction"]["regime"], "opt-in");
    assert!(
        !serde_json::to_string(r).unwrap().contains("127.0.0.1"),
        "no IP address in the record"
    );

    // The banner's script asks for JSON; the same consent id is kept for a returning visitor.
    let (resp, body) = post(
        addr,
        &[
            ("origin", SITE),
            (
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            ),
            ("accept", "application/json"),
            ("cookie", &format!("concierge_consent={value}")),
        ],
        "choice=reject",
    )
    .await;
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["consentId"], parts[1]);
    assert_eq!(json["firmographic"], false);
    assert!(resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("~nn~"));
    assert_eq!(records(dir.path()).len(), 2);
    assert!(
        origin.seen().is_empty(),
        "the endpoint never reaches the origin"
    );
    let (_, metrics) = admin(&server, "/metrics").await;
    assert_eq!(
        metric_value(
            &metrics,
            "concierge_consent_records_total{result=\"recorded\"}"
        ),
        Some(2.0)
    );
    for action in ["custom", "reject"] {
        assert_eq!(
            metric_value(
                &metrics,
                &format!("concierge_consent_choices_total{{action=\"{action}\"}}")
            ),
            Some(1.0),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn cross_site_unproven_oversized_and_mistyped_posts_are_refused_without_a_record() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = consent_proxy(&origin, dir.path(), "").await;
    let addr = server.listeners[0];
    let big = format!("choice=accept&pad={}", "x".repeat(4096));
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, u16);
    let cases: Vec<Case> = vec![
        (
            "other origin",
            vec![("origin", "https://evil.example"), ("content-type", FORM)],
            "choice=accept",
            403,
        ),
        (
            "other scheme",
            vec![
                ("origin", "https://www.example.test"),
                ("content-type", FORM),
            ],
            "choice=accept",
            403,
        ),
        (
            "cross-site fetch",
            vec![("sec-fetch-site", "cross-site"), ("content-type", FORM)],
            "choice=accept",
            403,
        ),
        (
            "same-site is not same-origin",
            vec![
                ("origin", SITE),
                ("sec-fetch-site", "same-site"),
                ("content-type", FORM),
            ],
            "choice=accept",
            403,
        ),
        (
            "no evidence",
            vec![("content-type", FORM)],
            "choice=accept",
            403,
        ),
        (
            "oversized",
            vec![("origin", SITE), ("content-type", FORM)],
            &big,
            413,
        ),
        (
            "JSON body",
            vec![("origin", SITE), ("content-type", "application/json")],
            "{\"choice\":\"accept\"}",
            415,
        ),
        (
            "no choice",
            vec![("origin", SITE), ("content-type", FORM)],
            "firmographic=on",
            400,
        ),
    ];
    for (name, headers, body, status) in cases {
        let (resp, _) = post(addr, &headers, body).await;
        assert_eq!(resp.status(), status, "{name}");
        assert!(resp.headers().get("set-cookie").is_none(), "{name}");
    }
    // Oversized without a Content-Length (chunked): cut off while reading.
    let mut chunked = format!(
        "POST /_concierge/consent HTTP/1.1\r\nHost: www.example.test\r\nOrigin: {SITE}\r\n\
         Content-Type: {FORM}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1000\r\n"
    )
    .into_bytes();
    chunked.extend(std::iter::repeat_n(b'a', 4096));
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(raw(addr, &chunked).await.status, 413);
    assert!(records(dir.path()).is_empty(), "nothing recorded");
    let (_, metrics) = admin(&server, "/metrics").await;
    assert_eq!(
        metric_value(
            &metrics,
            "concierge_consent_records_total{result=\"refused\"}"
        ),
        Some(9.0)
    );
}

#[tokio::test]
async fn no_record_no_cookie_when_the_record_cannot_be_written() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Every write to the log fails (ENOSPC).
    std::fs::create_dir_all(dir.path().join("audit")).unwrap();
    std::os::unix::fs::symlink(
        "/dev/full",
        dir.path().join("audit/00000000000000000000.jsonl"),
    )
    .unwrap();
    let server = consent_proxy(&origin, dir.path(), "").await;
    let (resp, body) = post(
        server.listeners[0],
        &[("origin", SITE), ("content-type", FORM)],
        "choice=accept",
    )
    .await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("set-cookie").is_none());
    assert!(String::from_utf8_lossy(&body).contains("could not be recorded"));
}

#[tokio::test]
async fn an_unusable_audit_directory_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = start_error(&format!(
        "[upstream]\nurl = \"http://127.0.0.1:9\"\n[audit]\ndir = \"{}\"\n",
        file.join("audit").display()
    ))
    .await;
    assert!(err.starts_with("audit.dir:"), "{err}");
}

#[tokio::test]
async fn banner_assets_choices_page_and_gpc_json_are_served_by_the_proxy() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = consent_proxy(
        &origin,
        dir.path(),
        "[consent]\ngpc_well_known = true\ngpc_last_update = \"2026-11-01\"\n",
    )
    .await;
    let addr = server.listeners[0];

    let (resp, body) = get(addr, "/_concierge/consent.js", &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    let js = String::from_utf8_lossy(&body);
    assert!(js.contains("Accept all") && js.contains("Reject all") && js.contains("Choose"));
    assert!(
        !js.contains("innerHTML"),
        "the banner builds DOM nodes, never markup"
    );
    let (resp, body) = get(addr, "/_concierge/consent.css", &[]).await;
    assert_eq!(resp.headers()["content-type"], "text/css; charset=utf-8");
    assert!(String::from_utf8_lossy(&body).contains(".cc-button"));

    // The choices page works without script, reflects the cookie, and escapes what it echoes.
    let (resp, body) = get(
        addr,
        "/_concierge/consent?return=%2Fa%22%3E%3Cscript%3E",
        &[(
            "cookie",
            &signed_consent(dir.path(), true, false, unix_now()),
        )],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("<form method=\"post\" action=\"/_concierge/consent\">"));
    assert!(
        page.contains("value=\"/a&quot;&gt;&lt;script&gt;\""),
        "{page}"
    );
    assert!(!page.contains("<script"), "no script at all on the page");
    assert!(page.contains(
        "id=\"cc-f\" name=\"firmographic\" value=\"on\" aria-describedby=\"cc-f-text\" checked"
    ));
    assert!(page.contains("0123456789abcdef0123456789abcdef"));

    let (resp, body) = get(addr, "/.well-known/gpc.json", &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"gpc": true, "lastUpdate": "2026-11-01"})
    );

    let (resp, _) = get(addr, "/_concierge/nothing", &[]).await;
    assert_eq!(resp.status(), 404);
    let resp = send(addr, request("PUT", "/_concierge/consent.js", &[], empty())).await;
    assert_eq!(resp.status(), 405);
    assert!(origin.seen().is_empty(), "none of this reached the origin");
}

#[tokio::test]
async fn gpc_json_is_the_origins_unless_enabled() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = consent_proxy(&origin, dir.path(), "").await;
    let (resp, _) = get(server.listeners[0], "/.well-known/gpc.json", &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(origin.last().uri, "/.well-known/gpc.json");
}

/// "No permitted tier, no lookup", counted: the lookup counter moves only for requests whose Decision
/// permits the firmographic tier.
#[tokio::test]
async fn the_company_lookup_runs_only_when_the_decision_permits_it() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = consent_proxy(&origin, dir.path(), "").await;
    let addr = server.listeners[0];
    let page = ("accept", "text/html,application/xhtml+xml");
    let lookups = |m: &str| {
        metric_value(m, "concierge_company_lookups_total{result=\"match\"}").unwrap_or(0.0)
    };

    // Germany, no signal: banner due, no lookup.
    get(addr, "/", &[page]).await;
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(lookups(&m), 0.0);
    assert_eq!(
        metric_value(
            &m,
            "concierge_consent_decisions_total{regime=\"opt-in\",highest_tier=\"anonymous\",banner=\"true\"}"
        ),
        Some(1.0)
    );
    // Germany with a TC string that does not consent: no lookup. With GPC and our cookie's grant: no lookup.
    let granted = signed_consent(dir.path(), true, true, unix_now());
    get(addr, "/", &[page, ("sec-gpc", "1"), ("cookie", &granted)]).await;
    get(
        addr,
        "/",
        &[
            page,
            (
                "cookie",
                "euconsent-v2=COvcSpYOvcSpYC9AAAENAPCAAAAAAAAAAAAAAFAAAAA",
            ),
        ],
    )
    .await;
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(lookups(&m), 0.0, "no permitted tier, no lookup");

    // Our cookie's grant: the lookup runs and finds the account.
    get(addr, "/", &[page, ("cookie", &granted)]).await;
    // California (opt-out), no signal: permitted, lookup runs.
    get_from("127.0.10.5", addr, "/", &[page]).await;
    // California with GPC: withdrawn.
    get_from("127.0.10.5", addr, "/", &[page, ("sec-gpc", "1")]).await;
    // Not a page request (an image): not classified at all.
    get_from("127.0.10.5", addr, "/logo.png", &[("accept", "image/*")]).await;
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(lookups(&m), 2.0);
    assert_eq!(
        metric_value(
            &m,
            "concierge_consent_decisions_total{regime=\"opt-out\",highest_tier=\"personal\",banner=\"false\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(
            &m,
            "concierge_consent_decisions_total{regime=\"opt-out\",highest_tier=\"anonymous\",banner=\"false\"}"
        ),
        Some(1.0)
    );
    // GPC reaches the origin untouched.
    assert!(origin
        .seen()
        .iter()
        .any(|s| s.headers.iter().any(|(n, v)| n == "sec-gpc" && v == "1")));
}

fn page_request(cookie: &[u8]) -> http::Request<TestBody> {
    let mut req = request("GET", "/", &[("accept", "text/html")], empty());
    req.headers_mut().insert(
        "cookie",
        http::HeaderValue::from_bytes(cookie).expect("header bytes"),
    );
    req
}

fn lookups(metrics: &str) -> f64 {
    metric_value(metrics, "concierge_company_lookups_total{result=\"match\"}").unwrap_or(0.0)
}

/// Regression (issue 13, item 1): a California visitor's opt-out was ignored when any other cookie held a
/// non-ASCII byte — the whole Cookie header was skipped as text.
#[tokio::test]
async fn an_opt_out_is_honoured_beside_a_foreign_non_ascii_cookie() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = consent_proxy(&origin, dir.path(), "").await;
    let addr = server.listeners[0];
    let refusal = signed_consent(dir.path(), false, false, unix_now());
    let withdrawals: [&[u8]; 2] = [b"usprivacy=1YYN", refusal.as_bytes()];
    let foreign: [&[u8]; 3] = [
        b"city=M\xc3\xbcnchen",
        b"city=M\xfcnchen",
        b"x=\"\xe2\x80\xae\"",
    ];
    for w in withdrawals {
        for f in foreign {
            let cookie = [f, b"; ", w].concat();
            send_from("127.0.10.5", addr, page_request(&cookie)).await;
            let cookie = [w, b"; ", f].concat();
            send_from("127.0.10.5", addr, page_request(&cookie)).await;
        }
    }
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(lookups(&m), 0.0, "no lookup for a withdrawn visitor");
    assert_eq!(
        metric_value(
            &m,
            "concierge_consent_decisions_total{regime=\"opt-out\",highest_tier=\"anonymous\",banner=\"false\"}"
        ),
        Some(12.0)
    );
    // An undecodable consent cookie of ours is a withdrawal too (it might be one).
    send_from(
        "127.0.10.5",
        addr,
        page_request(b"concierge_consent=2~\xff~1~1~yy~k~t"),
    )
    .await;
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(lookups(&m), 0.0);
    // Without the withdrawal, the same foreign cookies leave the visitor permitted.
    send_from("127.0.10.5", addr, page_request(b"city=M\xfcnchen")).await;
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(lookups(&m), 1.0);
}

/// Regression (issue 13, item 3): a cookie with a consent id the proxy never issued granted personalization.
#[tokio::test]
async fn a_consent_cookie_the_proxy_did_not_sign_grants_nothing() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = consent_proxy(&origin, dir.path(), "").await;
    let addr = server.listeners[0];
    let now = unix_now();
    let genuine = signed_consent(dir.path(), true, true, now);
    let other_key = concierge::consent::first_party::CookieKey::from_secret(&[7; 32]);
    let mut foreign_signed = concierge::consent::first_party::FirstParty::decode(
        genuine.trim_start_matches("concierge_consent="),
        &concierge::consent::first_party::CookieKeys::default(),
    )
    .unwrap();
    foreign_signed.consent_id = "feedfacefeedfacefeedfacefeedface".into();
    let tampered = genuine.replacen("0123456789abcdef0123456789abcdef", "ffff", 1);
    let year_2100 = signed_consent(dir.path(), true, true, 4_102_444_800);
    for cookie in [
        format!("concierge_consent=1~abc~1~{now}~yy"),
        format!("concierge_consent={}", foreign_signed.encode(&other_key)),
        tampered,
        year_2100,
    ] {
        get(addr, "/", &[("accept", "text/html"), ("cookie", &cookie)]).await;
    }
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(lookups(&m), 0.0, "an unverifiable grant is no grant");
    assert_eq!(
        metric_value(
            &m,
            "concierge_consent_decisions_total{regime=\"opt-in\",highest_tier=\"anonymous\",banner=\"true\"}"
        ),
        Some(4.0),
        "no choice: the banner asks again"
    );
    get(addr, "/", &[("accept", "text/html"), ("cookie", &genuine)]).await;
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(lookups(&m), 1.0, "the proxy's own cookie grants");

    // The choices page shows no choice for a forged cookie, and a new choice gets a fresh consent id.
    let (_, body) = get(
        addr,
        "/_concierge/consent",
        &[("cookie", &format!("concierge_consent=1~abc~1~{now}~yy"))],
    )
    .await;
    assert!(String::from_utf8_lossy(&body).contains("not made a choice"));
    let (resp, _) = post(
        addr,
        &[
            ("origin", SITE),
            ("content-type", FORM),
            ("cookie", &format!("concierge_consent=1~abc~1~{now}~yy")),
        ],
        "choice=accept",
    )
    .await;
    let set = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(!set.starts_with("concierge_consent=2~abc~"), "{set}");
}

/// Issue 13, item 3: every decision that relied on our cookie names its consent id, and `audit export
/// --consent ID` lists the proof of consent with the decisions that relied on it.
#[tokio::test]
async fn decisions_name_the_consent_they_relied_on() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = consent_proxy(&origin, dir.path(), "").await;
    let addr = server.listeners[0];
    let (resp, _) = post(
        addr,
        &[("origin", SITE), ("content-type", FORM)],
        "choice=custom&firmographic=on",
    )
    .await;
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let id = cookie.split('~').nth(1).unwrap().to_string();
    get(
        addr,
        "/pricing",
        &[("accept", "text/html"), ("cookie", &cookie)],
    )
    .await;
    // Another visitor's decision, without our cookie.
    get_from("127.0.10.5", addr, "/", &[("accept", "text/html")]).await;
    let audit = server.audit();
    tokio::task::spawn_blocking(move || audit.flush())
        .await
        .unwrap();
    let decisions: Vec<_> = audit_records(dir.path())
        .into_iter()
        .filter(|r| r["type"] == "decision")
        .collect();
    assert_eq!(decisions.len(), 2);
    assert_eq!(decisions[0]["consent_id"], id.as_str());
    assert_eq!(decisions[0]["lookup"], "matched");
    assert_eq!(
        decisions[0]["signals"]["first_party"]["integrity"],
        "signed"
    );
    assert!(decisions[1].get("consent_id").is_none());

    let out = concierge()
        .args(["audit", "export"])
        .arg(dir.path())
        .args(["--consent", &id])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["type"], "consent");
    assert_eq!(lines[1]["type"], "decision");
    assert!(lines.iter().all(|l| l["consent_id"] == id.as_str()));
}

/// Issue 16, item 13: the choices page describes the state that applies where the visitor is — in an opt-out
/// region, that content may be tailored unless they object (and the boxes show it), not "only if you agree".
#[tokio::test]
async fn the_choices_page_tells_the_truth_in_opt_out_regions() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let account =
        "[account]\ndomain = \"acme.example\"\nname = \"Acme\"\nnetworks = [\"127.0.10.0/24\"]\n";
    let server = audited_proxy(&origin, dir.path(), account, "").await;
    let addr = server.listeners[0];
    let (_, body) = get_from("127.0.10.5", addr, "/_concierge/consent", &[]).await;
    let california = String::from_utf8_lossy(&body);
    assert!(california.contains("unless you object"), "{california}");
    assert!(california.contains("You have not objected"), "{california}");
    assert!(
        california
            .contains("name=\"firmographic\" value=\"on\" aria-describedby=\"cc-f-text\" checked"),
        "{california}"
    );
    let (_, body) = get_from("127.0.0.1", addr, "/_concierge/consent", &[]).await;
    let germany = String::from_utf8_lossy(&body);
    assert!(germany.contains("only happens if you agree"), "{germany}");
    assert!(germany.contains("You have not made a choice"), "{germany}");
    assert!(
        !germany.contains("aria-describedby=\"cc-f-text\" checked"),
        "{germany}"
    );
}

/// Issue 17: no use, no lookup. Where no rule of the firmographic or personal tier can change the page and no
/// experiment counts it as a goal, the company is not looked up even though consent permits it — and so no
/// record of a lookup is due (a page nothing could personalize costs what a plain proxy costs).
#[tokio::test]
async fn the_company_is_looked_up_only_where_something_could_use_it() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("accounts")).unwrap();
    std::fs::create_dir_all(rules.join("experiments")).unwrap();
    std::fs::write(
        rules.join("accounts/loop.example.toml"),
        "[account]\ndomain = \"loop.example\"\nname = \"Loop Corp\"\nnetworks = [\"127.0.0.0/8\"]\n\
         [[personalization]]\nid = \"pricing\"\ntier = \"firmographic\"\npaths = [\"/pricing\"]\n\
         [[personalization.action]]\nselect = \"h1\"\nset_text = \"{{ company.name }}\"\n",
    )
    .unwrap();
    std::fs::write(
        rules.join("experiments/e.toml"),
        "[experiment]\nid = \"e\"\nrules = [\"loop.example/pricing\"]\ncontrol = 0.5\n\
         [[experiment.goal]]\nid = \"demo\"\npath = \"/demo-request\"\n",
    )
    .unwrap();
    let server = proxy(
        &origin.url(),
        &format!(
            "[rules]\ndir = \"{}\"\n[audit]\ndir = \"{}\"\n\
             [[geo.static]]\nnetwork = \"127.0.0.0/8\"\ncountry = \"US\"\nsubdivision = \"CA\"\n",
            rules.display(),
            dir.path().join("log").display()
        ),
    )
    .await;
    let addr = server.listeners[0];
    let page = ("accept", "text/html");
    // California (opt-out): permitted everywhere, but only /pricing and the goal page can use the company.
    get(addr, "/", &[page]).await;
    get(addr, "/about", &[page]).await;
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(lookups(&m), 0.0, "nothing on / or /about could use it");
    get(addr, "/pricing", &[page]).await;
    get(addr, "/demo-request", &[page]).await;
    let (_, m) = admin(&server, "/metrics").await;
    assert_eq!(lookups(&m), 2.0, "a rule's page and a goal page");
    // Records: the two lookups, none for the pages nothing could use.
    let pages: Vec<String> = (0..50)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            audit_records(&dir.path().join("log"))
        })
        .find(|r| r.iter().filter(|r| r["type"] == "decision").count() >= 2)
        .unwrap_or_default()
        .iter()
        .filter(|r| r["type"] == "decision")
        .map(|r| r["page"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(pages, ["/pricing", "/demo-request"]);
    concierge::app::stop(server).await;
}
