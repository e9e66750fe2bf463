//! Experiments end to end through the real proxy: a few hundred loopback accounts (one source address each),
//! traffic with a known effect, and `concierge experiments report` (the real binary) recovering it; the same
//! arms after a restart and on a second instance; no conversion without a basis; bots not counted.

use std::path::Path;

use crate::support::*;

const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml");
const ACCOUNTS: usize = 300;

/// Account `i`'s source address: 127.1.x.5 then 127.2.x.5.
fn address(i: usize) -> String {
    format!("127.{}.{}.5", 1 + i / 200, i % 200)
}

fn domain(i: usize) -> String {
    format!("account-{i}.example")
}

fn write_rules(dir: &Path) {
    let accounts = dir.join("accounts");
    std::fs::create_dir_all(&accounts).unwrap();
    for i in 0..ACCOUNTS {
        let net = format!("127.{}.{}.0/24", 1 + i / 200, i % 200);
        std::fs::write(
            accounts.join(format!("{}.toml", domain(i))),
            format!(
                "[account]\ndomain = \"{d}\"\nname = \"Account {i}\"\nnetworks = [\"{net}\"]\n\n\
                 [[personalization]]\nid = \"hero\"\ntier = \"firmographic\"\npaths = [\"/landing\"]\n\
                 [[personalization.action]]\nselect = \"h1.hero\"\nset_text = \"Made for {{{{ company.name }}}}\"\n",
                d = domain(i)
            ),
        )
        .unwrap();
    }
    std::fs::create_dir_all(dir.join("experiments")).unwrap();
    std::fs::write(
        dir.join("experiments/hero.toml"),
        "[experiment]\nid = \"hero-test\"\nrules = [\"*/hero\"]\ncontrol = 0.5\n\n\
         [[experiment.goal]]\nid = \"demo-request\"\npath = \"/demo-request*\"\nmethod = \"POST\"\n",
    )
    .unwrap();
}

const GEO: &str =
    "[[geo.static]]\nnetwork = \"127.0.0.0/8\"\ncountry = \"US\"\nsubdivision = \"CA\"\n";

async fn experiment_proxy(origin: &Origin, dir: &Path, exclude: &str) -> concierge::app::Server {
    proxy(
        &origin.url(),
        &format!(
            "[rules]\ndir = \"{}\"\n[audit]\ndir = \"{}\"\nsigning_key = \"{}\"\n\
             [experiments]\nexclude_networks = [{exclude}]\n{GEO}",
            dir.join("rules").display(),
            dir.join("log").display(),
            signing_key(&dir.join("keys")).display()
        ),
    )
    .await
}

/// Visit the landing page as account `i`; whether it came back personalized (the treatment arm).
async fn visit(addr: std::net::SocketAddr, i: usize, extra: &[(&str, &str)]) -> bool {
    let mut headers = vec![HTML];
    headers.extend_from_slice(extra);
    let (resp, body) = get_from(&address(i), addr, "/landing", &headers).await;
    assert_eq!(resp.status(), 200);
    String::from_utf8_lossy(&body).contains(&format!("Made for Account {i}<"))
}

async fn convert(addr: std::net::SocketAddr, i: usize, extra: &[(&str, &str)]) {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    let req = request("POST", "/demo-request", &headers, full("name=Jo"));
    let _ = send_from(&address(i), addr, req).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_recovers_a_known_effect_from_account_randomized_traffic() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_rules(&dir.path().join("rules"));
    let server = experiment_proxy(&origin, dir.path(), "").await;
    let addr = server.listeners[0];

    // Control accounts convert with probability 0.2, treated ones with 0.4: a true lift of +100%.
    let mut rng = fastrand::Rng::with_seed(2027);
    let mut arms = Vec::new();
    for i in 0..ACCOUNTS {
        let treated = visit(addr, i, &[]).await;
        assert_eq!(
            treated,
            visit(addr, i, &[]).await,
            "the same arm on every page"
        );
        arms.push(treated);
        if rng.f64() < if treated { 0.4 } else { 0.2 } {
            convert(addr, i, &[]).await;
        }
    }
    let treated = arms.iter().filter(|t| **t).count();
    assert!(
        (110..190).contains(&treated),
        "about half the accounts are treated: {treated}"
    );
    // Traffic that takes no part: a bot and the office network convert, but are not counted; a visitor whose
    // Decision does not permit the lookup (GPC) is not attributed.
    convert(
        addr,
        0,
        &[("user-agent", "Mozilla/5.0 (compatible; Googlebot/2.1)")],
    )
    .await;
    convert(addr, 1, &[("sec-gpc", "1")]).await;
    let metrics = server.metrics.clone();
    eventually("the unattributed conversions are counted", || {
        let text = metrics.encode();
        metric_value(
            &text,
            "concierge_experiment_conversions_unrecorded_total{reason=\"no_basis\"}",
        ) == Some(1.0)
            && metric_value(
                &text,
                "concierge_experiment_conversions_unrecorded_total{reason=\"bot\"}",
            ) == Some(1.0)
    })
    .await;

    // A restart and a second instance assign the same accounts to the same arms.
    concierge::app::stop(server).await;
    let again = experiment_proxy(&origin, dir.path(), "").await;
    let second_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(second_dir.path().join("rules")).unwrap();
    write_rules(&second_dir.path().join("rules"));
    let second = experiment_proxy(&origin, second_dir.path(), "").await;
    for i in (0..ACCOUNTS).step_by(37) {
        assert_eq!(
            visit(again.listeners[0], i, &[]).await,
            arms[i],
            "account {i} after a restart"
        );
        assert_eq!(
            visit(second.listeners[0], i, &[]).await,
            arms[i],
            "account {i} on another instance"
        );
    }
    concierge::app::stop(again).await;
    concierge::app::stop(second).await;

    let out = concierge()
        .args(["experiments", "report"])
        .arg(dir.path().join("log"))
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let e = &report["experiments"][0];
    assert_eq!(e["id"], "hero-test");
    let arm = |name: &str| {
        e["arms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["arm"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(arm("treatment")["accounts"], treated as u64);
    assert_eq!(arm("control")["accounts"], (ACCOUNTS - treated) as u64);
    let exposures = arm("treatment")["exposures"].as_u64().unwrap()
        + arm("control")["exposures"].as_u64().unwrap();
    // Two visits per account, then 9 accounts visited once more on the restarted instance.
    assert_eq!(exposures, 2 * ACCOUNTS as u64 + 9);
    assert_eq!(e["srm"]["flagged"], false);
    let g = &e["goals"]["demo-request"];
    assert_eq!(g["enough_data"], true, "{g}");
    let (low, high) = (
        g["ci_low"].as_f64().unwrap(),
        g["ci_high"].as_f64().unwrap(),
    );
    assert!(
        low <= 1.0 && 1.0 <= high,
        "the 95% interval {low:.2}..{high:.2} covers the true lift of +100%: {g}"
    );
    assert!(low > 0.0, "and excludes no effect: {g}");
    let converted = arm("control")["goals"]["demo-request"]["accounts_converted"]
        .as_u64()
        .unwrap()
        + arm("treatment")["goals"]["demo-request"]["accounts_converted"]
            .as_u64()
            .unwrap();
    let recorded = audit_records(&dir.path().join("log"))
        .iter()
        .filter(|r| r["type"] == "conversion")
        .count();
    assert_eq!(
        converted as usize, recorded,
        "one conversion per converting account, no bot, no GPC visitor"
    );

    // The stream is part of the tamper-evident log.
    let verify = concierge()
        .args(["audit", "verify"])
        .arg(dir.path().join("log"))
        .arg("--public-key")
        .arg(concierge::audit::keys::public_path(&signing_key(
            &dir.path().join("keys"),
        )))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // The HTML report is one self-contained page.
    let html = concierge()
        .args(["experiments", "report"])
        .arg(dir.path().join("log"))
        .args(["--format", "html"])
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&html.stdout);
    assert!(page.contains("<svg") && page.contains("hero-test"));
    assert!(!page.contains("<script") && !page.contains("http://") && !page.contains("https://"));

    // The console's Experiments page shows the same report: the CLI page's body, byte for byte.
    let console = console_proxy(&origin, dir.path()).await;
    let (status, html) = console_page(&console, "/console/experiments?experiment=hero-test").await;
    assert_eq!(status, 200, "{html}");
    let sections = page
        .split("<h1>Experiments report</h1>")
        .nth(1)
        .and_then(|rest| rest.split("<h2>How to read this</h2>").next())
        .expect("the CLI page's body");
    assert!(
        html.contains(&format!("<div class=\"report\">{sections}</div>")),
        "{html}"
    );
    let (status, html) = console_page(&console, "/console/experiments?experiment=nope").await;
    assert_eq!(status, 400);
    assert!(html.contains("No experiment “nope”"), "{html}");
    let (status, _) = console_page(&console, "/console/experiments?mde=-1").await;
    assert_eq!(status, 400);
    concierge::app::stop(console).await;
}

#[tokio::test]
async fn a_control_account_sees_the_origin_page_and_the_why_page_says_so() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_rules(&dir.path().join("rules"));
    // The office network holds account 299.
    let server = experiment_proxy(&origin, dir.path(), "\"127.2.99.0/24\"").await;
    let addr = server.listeners[0];
    let mut control = None;
    for i in 0..40 {
        if !visit(addr, i, &[]).await {
            control = Some(i);
            break;
        }
    }
    let i = control.expect("a control account among the first 40");
    let (_, body) = get_from(&address(i), addr, "/_concierge/why?page=/landing", &[]).await;
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("standard page as part of a comparison"),
        "{body}"
    );
    // explain names the arm.
    let config = dir.path().join("explain.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[rules]\ndir = \"{}\"\n{GEO}",
            dir.path().join("rules").display()
        ),
    )
    .unwrap();
    let out = concierge()
        .arg("explain")
        .arg("--config")
        .arg(&config)
        .args(["--ip", &address(i), "--url", "/landing"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("experiment hero-test: control arm"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Internal traffic sees the rules as written and is not recorded.
    let log = dir.path().join("log");
    let exposures = || {
        audit_records(&log)
            .iter()
            .filter(|r| r["account"] == "account-299.example")
            .count()
    };
    assert!(
        visit(addr, 299, &[]).await,
        "the office sees the personalized page"
    );
    concierge::app::stop(server).await;
    assert_eq!(exposures(), 0, "and is not counted");
}

const PERSONAL: &str = r#"
[account]
domain = "acme.example"
name = "Acme"
networks = ["127.0.0.1/32"]

[[personalization]]
id = "welcome-back"
tier = "personal"
paths = ["/landing"]
[[personalization.action]]
select = "h1.hero"
set_text = "Welcome back"
"#;

/// `unit = "visitor"`: an id only for a visitor who permits the personal tier, the same arm for that id on
/// every page, the id expired once the permission is gone.
#[tokio::test]
async fn a_visitor_experiment_keys_arms_by_a_cookie_set_only_with_personal_consent() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let experiments = dir.path().join("rules/experiments");
    std::fs::create_dir_all(&experiments).unwrap();
    std::fs::write(
        experiments.join("welcome.toml"),
        "[experiment]\nid = \"welcome\"\nrules = [\"acme.example/welcome-back\"]\ncontrol = 0.5\nunit = \"visitor\"\n\n\
         [[experiment.goal]]\nid = \"signup\"\npath = \"/signup\"\nmethod = \"POST\"\n",
    )
    .unwrap();
    let server = audited_proxy(&origin, dir.path(), PERSONAL, "").await;
    let addr = server.listeners[0];
    let log = dir.path().join("log");
    let consent = signed_consent(&log, true, true, unix_now());
    let firmographic_only = signed_consent(&log, true, false, unix_now());

    // Without the personal tier: no id, no exposure.
    let (resp, _) = get_from(
        "127.0.0.1",
        addr,
        "/landing",
        &[HTML, ("cookie", &firmographic_only)],
    )
    .await;
    assert!(
        resp.headers().get("set-cookie").is_none(),
        "{:?}",
        resp.headers()
    );

    // With it: an id is set (host-only attributes, HttpOnly), the response is not storable by a shared cache.
    let (resp, first) =
        get_from("127.0.0.1", addr, "/landing", &[HTML, ("cookie", &consent)]).await;
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.starts_with("concierge_vid=") && set.contains("HttpOnly"),
        "{set}"
    );
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let id = set["concierge_vid=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 32);
    let treated = String::from_utf8_lossy(&first).contains("Welcome back");
    let cookies = format!("{consent}; concierge_vid={id}");
    for _ in 0..3 {
        let (resp, body) =
            get_from("127.0.0.1", addr, "/landing", &[HTML, ("cookie", &cookies)]).await;
        assert!(
            resp.headers().get("set-cookie").is_none(),
            "kept, not set again"
        );
        assert_eq!(
            String::from_utf8_lossy(&body).contains("Welcome back"),
            treated,
            "the same arm"
        );
    }
    // A conversion of this visitor.
    let req = request(
        "POST",
        "/signup",
        &[
            ("cookie", &cookies),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        full("x=1"),
    );
    let _ = send_from("127.0.0.1", addr, req).await;

    // Permission withdrawn (firmographic only now): the id is expired.
    let stale = format!("{firmographic_only}; concierge_vid={id}");
    let (resp, _) = get_from("127.0.0.1", addr, "/landing", &[HTML, ("cookie", &stale)]).await;
    let set = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(
        set.starts_with("concierge_vid=;") && set.contains("Max-Age=0"),
        "{set}"
    );
    concierge::app::stop(server).await;

    let records = audit_records(&log);
    let exposures: Vec<_> = records.iter().filter(|r| r["type"] == "exposure").collect();
    assert_eq!(exposures.len(), 4, "{records:?}");
    let arm = if treated { "treatment" } else { "control" };
    for e in &exposures {
        assert_eq!(e["unit"], "visitor");
        assert_eq!(e["visitor"], id.as_str());
        assert_eq!(e["arm"], arm);
    }
    let conversions: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "conversion")
        .collect();
    assert_eq!(conversions.len(), 1, "{records:?}");
    assert_eq!(conversions[0]["visitor"], id.as_str());
    assert_eq!(conversions[0]["arm"], arm);
}
