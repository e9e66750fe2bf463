use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use concierge::app::Drained;
use http_body_util::BodyExt;

use crate::support::*;

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_responses_finish() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "").await;
    let addr = server.listeners[0];
    let resp = send(addr, request("GET", "/gated", &[], empty())).await;
    let mut body = resp.into_body();
    let first = body.frame().await.expect("frame").expect("ok");
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));

    let shutdown = tokio::spawn(server.shutdown());
    // New connections are refused once the listener is closed.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "listener closed on shutdown");
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the in-flight response"
    );
    origin.release();
    let rest = body
        .collect()
        .await
        .expect("in-flight response completed")
        .to_bytes();
    assert!(rest.ends_with(b"END"));
    assert_eq!(shutdown.await.expect("join"), Drained::Clean);
}

#[tokio::test]
async fn shutdown_deadline_cuts_stuck_connections() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "[timeouts]\nshutdown_grace = \"300ms\"\n").await;
    let resp = send(server.listeners[0], request("GET", "/gated", &[], empty())).await;
    let body = resp.into_body();
    let started = std::time::Instant::now();
    assert_eq!(server.shutdown().await, Drained::Deadline);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The stuck response was cut: its body ends (in an error) instead of hanging.
    let rest = tokio::time::timeout(Duration::from_secs(5), body.collect())
        .await
        .expect("connection was dropped at the deadline");
    assert!(rest.is_err(), "cut short, not complete");
}

#[tokio::test]
async fn readyz_turns_unavailable_while_draining() {
    let origin = Origin::start().await;
    let server = proxy(&origin.url(), "[timeouts]\nshutdown_grace = \"2s\"\n").await;
    let admin_addr = server.admin.expect("admin");
    let resp = send(server.listeners[0], request("GET", "/gated", &[], empty())).await;
    let shutdown = tokio::spawn(server.shutdown());
    let mut status = 0;
    for _ in 0..100 {
        status = get(admin_addr, "/readyz", &[]).await.0.status().as_u16();
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, 503);
    origin.release();
    let _ = resp.into_body().collect().await;
    assert_eq!(shutdown.await.expect("join"), Drained::Clean);
}

#[test]
fn check_accepts_a_good_config_and_lists_what_it_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    std::fs::create_dir(dir.path().join("certs")).expect("mkdir");
    ca.write_leaf(&dir.path().join("certs"), "site", &["www.example.test"]);
    let cfg = dir.path().join("concierge.toml");
    std::fs::write(
        &cfg,
        "[[listener]]\naddress = \"127.0.0.1:8443\"\ntls = true\n[upstream]\nurl = \"http://127.0.0.1:3000\"\n",
    )
    .expect("write");
    let out = concierge()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(
        stdout.contains("www.example.test"),
        "certs/ resolved next to the config file: {stdout}"
    );
}

/// Issue 16, item 6: a marketer validating a rules folder has no origin.
#[test]
fn check_validates_a_rules_folder_without_an_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let out = concierge()
        .current_dir(dir.path())
        .args(["check", "--rules"])
        .arg(&rules)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("upstream  not configured"), "{stdout}");
    assert!(
        stdout.contains("experiment logistics-subheadline"),
        "{stdout}"
    );
    // The demo's accounts use the same selectors on different accounts: no false conflict between them.
    assert!(
        !stdout.contains("acme.example/home-hero wins over globex"),
        "{stdout}"
    );
}

#[test]
fn check_lists_every_error_with_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("broken.toml");
    std::fs::write(
        &cfg,
        "[[listener]]\naddress = \"localhost\"\n[upstream]\nurl = \"ftp://origin\"\n[timeouts]\nupstream_connect = \"soon\"\n",
    )
    .expect("write");
    let out = concierge()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "listener[0].address",
        "upstream.url",
        "timeouts.upstream_connect",
        "3 error(s)",
    ] {
        assert!(stderr.contains(key), "{key} missing in: {stderr}");
    }

    std::fs::write(
        &cfg,
        "[upstream]\nurl = \"http://a:1\"\n[limits]\nmax_header = 10\n",
    )
    .expect("write");
    let out = concierge()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(":4:1: `max_header` is not a key here; did you mean `max_headers`?"),
        "{stderr}"
    );

    // A TLS listener whose certificates are missing is caught by check, not at 3 a.m.
    std::fs::write(
        &cfg,
        "[[listener]]\naddress = \"127.0.0.1:8443\"\ntls = true\n[upstream]\nurl = \"http://a:1\"\n[tls]\ncerts_dir = \"nowhere\"\n",
    )
    .expect("write");
    let out = concierge()
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}

#[test]
fn serve_works_with_flags_only_and_stops_cleanly_on_sigterm() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let origin = rt.block_on(Origin::start());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let cwd = tempfile::tempdir().expect("tempdir");
    let child = concierge()
        .current_dir(cwd.path())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            &origin.url(),
            "--admin",
            "off",
        ])
        .args(["--log-format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut ok = false;
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(ok, "serve came up");
    let (resp, body) = rt.block_on(get(addr, "/echo", &[]));
    assert_eq!(resp.status(), 200);
    assert_eq!(
        body,
        Bytes::from_static(b"<html><body>echo /echo</body></html>")
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "exit after SIGTERM: {:?}", out.status);
    let log = String::from_utf8_lossy(&out.stderr);
    let access = log
        .lines()
        .find(|l| l.contains("\"status\":200"))
        .expect("a JSON access-log line");
    assert!(access.contains("\"path\":\"/echo\""), "{access}");
    assert!(log.contains("SIGTERM"), "{log}");
}

#[test]
fn lookup_explains_company_and_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/maxmind/test-data");
    std::fs::create_dir_all(dir.path().join("rules/accounts")).expect("mkdir");
    std::fs::write(
        dir.path().join("rules/accounts/acme.example.toml"),
        "[account]\ndomain = \"acme.example\"\nname = \"Acme\"\nnetworks = [\"127.0.10.0/24\"]\nindustry = \"Manufacturing\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("vendor.csv"),
        "network,domain,name,type\n198.51.100.0/24,initech.example,Initech,business\n192.0.2.0/24,,Big Telco,isp\n",
    )
    .expect("write");
    let cfg = dir.path().join("concierge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[firmographics]\nfiles = [\"vendor.csv\"]\n[[firmographics.mmdb]]\npath = \"{d}/GeoIP2-Enterprise-Test.mmdb\"\n\
             organization = \"traits.organization\"\nuser_type = \"traits.user_type\"\n[geo]\nmmdb = \"{d}/GeoIP2-City-Test.mmdb\"\n",
            d = data.display()
        ),
    )
    .expect("write");
    let out = concierge()
        .args(["lookup", "--config"])
        .arg(&cfg)
        .args([
            "127.0.10.5",
            "198.51.100.9",
            "192.0.2.1",
            "214.78.120.5",
            "216.160.83.56",
            "203.0.113.1",
        ])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "company  Acme (acme.example) — account file",
        "network 127.0.10.0/24",
        "company  Initech (initech.example) — vendor file",
        "company  none: isp network of Big Telco",
        "company  none: residential network of Starlink",
        "company  Lariat Software",
        "geo      US, WA",
        "company  none: no source knows this address",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let out = concierge()
        .args(["lookup", "--json", "--config"])
        .arg(&cfg)
        .args(["216.160.83.56"])
        .output()
        .expect("run");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json[0]["company"]["name"], "Lariat Software");
    assert_eq!(json[0]["company"]["source"]["kind"], "mmdb");
    assert_eq!(json[0]["geo"]["country"], "US");
    assert_eq!(json[0]["geo"]["subdivision"], "WA");

    // A broken database is reported, naming the file.
    std::fs::write(
        &cfg,
        format!(
            "[geo]\nmmdb = \"{}/MaxMind-DB-test-broken-search-tree-24.mmdb\"\n",
            data.display()
        ),
    )
    .expect("write");
    let out = concierge()
        .args(["lookup", "--config"])
        .arg(&cfg)
        .arg("1.1.1.1")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken-search-tree"));
}

#[test]
fn consent_decode_cli() {
    let out = concierge()
        .args([
            "consent",
            "decode",
            "--json",
            "COwAdDhOwAdDhN4ABAENAPCgAAQAAv___wAAAFP_AAp_4AI6ACACAA",
        ])
        .output()
        .expect("run");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["cmpId"], 888);
    assert_eq!(v["publisherRestrictions"][0]["purposeId"], 7);
    assert_eq!(
        v["publisherRestrictions"][0]["vendors"],
        serde_json::json!([32])
    );
    assert_eq!(v["vendorConsents"][0], 1);

    let out = concierge()
        .args(["consent", "decode", "DBABLA~BVVVVVVVVWA.YA", "--json"])
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["sectionIds"], serde_json::json!([7]));
    assert_eq!(v["sections"]["usnat"]["Gpc"], true);
    assert_eq!(v["sections"]["usnat"]["SaleOptOut"], 1);

    let out = concierge()
        .args(["consent", "decode", "1NYN"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("optOutSale: Y"));

    let out = concierge()
        .args([
            "consent",
            "decode",
            "COvcSpYOvcSpYC9AAAENAPCAAAAAAAAAAAAAAFAAAAA",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "malformed: exit 2");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ends inside field"));
}

#[test]
fn consent_decide_cli_uses_the_configured_geo_policy_and_accounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("rules/accounts")).expect("mkdir");
    std::fs::write(
        dir.path().join("rules/accounts/acme.example.toml"),
        "[account]\ndomain = \"acme.example\"\nname = \"Acme\"\nnetworks = [\"192.0.2.0/24\"]\n",
    )
    .expect("write");
    let cfg = dir.path().join("concierge.toml");
    std::fs::write(
        &cfg,
        "[rules]\ndir = \"rules\"\n\
         [[geo.static]]\nnetwork = \"192.0.2.0/25\"\ncountry = \"US\"\nsubdivision = \"CA\"\n\
         [[geo.static]]\nnetwork = \"192.0.2.128/25\"\ncountry = \"CH\"\n\
         [consent]\nopt_in_countries = [\"EEA\", \"GB\"]\nother_regions = \"opt-out\"\n",
    )
    .expect("write");
    let decide = |args: &[&str]| {
        let out = concierge()
            .args(["consent", "decide", "--json", "--config"])
            .arg(&cfg)
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let v = decide(&["--ip", "192.0.2.5"]);
    assert_eq!(v["decision"]["jurisdiction"]["region"], "US-CA");
    assert_eq!(
        v["decision"]["permitted"],
        serde_json::json!(["anonymous", "firmographic", "personal"])
    );
    assert_eq!(v["company"]["status"], "matched");
    assert_eq!(v["company"]["domain"], "acme.example");
    let v = decide(&["--ip", "192.0.2.5", "--header", "Sec-GPC: 1"]);
    assert_eq!(v["decision"]["permitted"], serde_json::json!(["anonymous"]));
    assert_eq!(v["company"]["status"], "not_run");
    assert!(v["decision"]["reasons"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("gpc")));
    let v = decide(&["--ip", "192.0.2.5", "--cookie", "usprivacy=1NYN"]);
    assert_eq!(v["company"]["status"], "not_run");
    // Switzerland taken out of the opt-in list, other regions opt-out: permitted without a signal.
    let v = decide(&["--ip", "192.0.2.200"]);
    assert_eq!(v["decision"]["jurisdiction"]["regime"], "opt-out");
    // A first-party grant made 14 months before --at is stale.
    let v = decide(&[
        "--ip",
        "10.0.0.1",
        "--cookie",
        "concierge_consent=1~abc~1~1727000000~yy",
        "--at",
        "2025-12-01T00:00:00Z",
    ]);
    assert_eq!(v["decision"]["jurisdiction"]["region"], "unknown");
    assert!(v["decision"]["reasons"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("first-party:stale")));
    assert_eq!(v["decision"]["show_banner"], true);

    let out = concierge()
        .args(["consent", "decide", "--ip", "not-an-ip"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = concierge()
        .args([
            "consent", "decide", "--ip", "10.0.0.1", "--header", "nocolon",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'Name: value'"));
}

#[test]
fn explain_shows_decision_candidates_plan_and_the_rewritten_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("concierge.toml");
    std::fs::write(
        &cfg,
        "[[geo.static]]\nnetwork = \"127.0.10.0/24\"\ncountry = \"US\"\nsubdivision = \"CA\"\n\
         [[geo.static]]\nnetwork = \"127.0.0.0/8\"\ncountry = \"DE\"\n",
    )
    .expect("write");
    let page = dir.path().join("index.html");
    std::fs::write(
        &page,
        "<html><head></head><body><h1 id=\"hero-headline\">Generic</h1><p class=\"hero-note\">n</p></body></html>",
    )
    .expect("write");
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let run = |ip: &str, extra: &[&str]| {
        let out = concierge()
            .args([
                "explain",
                "--json",
                "--url",
                "/?utm_source=x",
                "--ip",
                ip,
                "--config",
            ])
            .arg(&cfg)
            .arg("--rules")
            .arg(&rules)
            .arg("--html")
            .arg(&page)
            .args(extra)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let v = run("127.0.10.5", &[]);
    assert_eq!(v["company"]["domain"], "acme.example");
    let verdict = |v: &serde_json::Value, id: &str| {
        v["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["verdict"]["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(verdict(&v, "acme.example/home-hero"), "applied");
    assert_eq!(verdict(&v, "globex.example/announcement"), "not_matched");
    assert_eq!(v["plan"][0]["selector"], "#hero-headline");
    // The decision record the proxy would write.
    assert_eq!(v["record"]["type"], "decision");
    assert_eq!(v["record"]["outcome"], "personalized");
    assert_eq!(v["record"]["company"], "acme.example");
    assert_eq!(v["record"]["page"], "/", "no query string");
    assert!(v["record"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "acme.example/home-hero"));
    assert!(v["html"]
        .as_str()
        .unwrap()
        .contains("<h1 id=\"hero-headline\">Acme Manufacturing: see every dollar"));
    // What the proxy adds: Acme's feedback prompt and the why link, shown in the plan and in the page.
    assert_eq!(
        v["additions"]["feedback"][0]["question"],
        "Was this page relevant to Acme?"
    );
    assert_eq!(v["additions"]["why_link"], "/_concierge/why?page=/");
    let html = v["html"].as_str().unwrap();
    assert!(html.contains("data-concierge-feedback") && html.contains("/_concierge/feedback.js"));
    assert!(html.contains("href=\"/_concierge/why?page=/\""));
    // With GPC: nothing firmographic, the lookup not run, the page unchanged.
    let v = run("127.0.10.5", &["--header", "Sec-GPC: 1"]);
    assert_eq!(v["company"]["status"], "not_run");
    assert_eq!(verdict(&v, "acme.example/home-hero"), "not_permitted");
    assert!(v["html"].as_str().unwrap().contains(">Generic</h1>"));
    assert!(!v["html"].as_str().unwrap().contains("concierge-feedback"));
    assert!(
        v["record"].is_null(),
        "no lookup, nothing to change: no record"
    );
    // Germany: the region rule and the banner.
    let v = run("127.0.0.1", &[]);
    assert_eq!(verdict(&v, "dach/note"), "applied");
    let html = v["html"].as_str().unwrap();
    assert!(html.contains("Hosted in Frankfurt") && html.contains("consent.js"));
}

/// Lines the running `concierge demo` printed until `until` appeared (bounded), with the child.
fn start_demo(cwd: &Path, extra: &[&str], until: &str) -> (std::process::Child, Vec<String>) {
    use std::io::BufRead;
    let mut child = concierge()
        .current_dir(cwd)
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "off"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        let done = line.contains(until);
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines)
}

fn persona_port(lines: &[String], name: &str) -> u16 {
    let line = lines
        .iter()
        .find(|l| l.contains(name) && l.contains("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no persona line for {name}: {lines:#?}"));
    line.split("127.0.0.1:")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Issue 16, items 1–3: the demo is self-contained from any folder, its personas can be visited from a browser
/// (a demo-only port each), and its effective configuration makes `explain` tell what the browser sees.
#[tokio::test]
async fn the_demo_runs_from_any_folder_with_personas_and_a_configuration_explain_agrees_with() {
    let cwd = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_demo(cwd.path(), &[], "Press Ctrl-C");
    let acme = persona_port(&lines, "Acme (manufacturing");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{acme}").parse().unwrap();
    let (_, body) = get(addr, "/", &[("accept", "text/html")]).await;
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("Acme Manufacturing: see every dollar"),
        "{body}"
    );
    let config = lines
        .iter()
        .find_map(|l| l.strip_prefix("Effective configuration: "))
        .unwrap_or_else(|| panic!("{lines:#?}"))
        .to_string();
    let out = concierge()
        .args([
            "explain",
            "--config",
            &config,
            "--ip",
            "127.0.10.5",
            "--url",
            "/",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("applied        acme.example/home-hero"),
        "{text}"
    );
    let temp = Path::new(&config).parent().unwrap().to_path_buf();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(temp);
}

/// `concierge demo --rules DIR`: the marketer's folder, live as it is edited.
#[tokio::test]
async fn the_demo_runs_on_a_marketers_rules_folder_with_hot_reload() {
    let cwd = tempfile::tempdir().unwrap();
    let rules = cwd.path().join("my-rules");
    std::fs::create_dir_all(rules.join("accounts")).unwrap();
    let acme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/accounts/acme.example.toml"),
    )
    .unwrap();
    std::fs::write(rules.join("accounts/acme.example.toml"), &acme).unwrap();
    let (mut child, lines) = start_demo(cwd.path(), &["--rules", "my-rules"], "Press Ctrl-C");
    let addr: std::net::SocketAddr =
        format!("127.0.0.1:{}", persona_port(&lines, "Acme (manufacturing"))
            .parse()
            .unwrap();
    std::fs::write(
        rules.join("accounts/acme.example.toml"),
        acme.replace("see every dollar", "see every cent"),
    )
    .unwrap();
    let mut seen = String::new();
    for _ in 0..60 {
        let (_, body) = get(addr, "/", &[("accept", "text/html")]).await;
        seen = String::from_utf8_lossy(&body).into_owned();
        if seen.contains("see every cent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Some(config) = lines
        .iter()
        .find_map(|l| l.strip_prefix("Effective configuration: "))
    {
        let _ = std::fs::remove_dir_all(Path::new(config).parent().unwrap());
    }
    assert!(
        seen.contains("see every cent"),
        "the edit went live: {seen}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("my-rules") && l.contains("yours")),
        "{lines:#?}"
    );
}

/// Issue 16, item 7: `explain --consent accept|reject` instead of a hand-built cookie, and with `--html` a
/// warning for every change whose selector finds nothing on the page.
#[test]
fn explain_takes_a_banner_choice_and_warns_about_selectors_that_match_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("concierge.toml");
    std::fs::write(
        &config,
        format!(
            "[upstream]\nurl = \"http://127.0.0.1:9\"\n[rules]\ndir = {:?}\n{}",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("rules")
                .display()
                .to_string(),
            concierge::demo::settings_toml(&dir.path().join("log"), &dir.path().join("none.key"))
        ),
    )
    .unwrap();
    let explain = |extra: &[&str]| {
        let out = concierge()
            .args(["explain", "--config"])
            .arg(&config)
            .args(extra)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    // Germany (opt-in): accept permits the firmographic tier, reject and no choice do not.
    let accepted = explain(&["--ip", "127.0.0.1", "--url", "/", "--consent", "accept"]);
    assert!(
        accepted.contains("permitted anonymous, firmographic, personal"),
        "{accepted}"
    );
    let rejected = explain(&["--ip", "127.0.0.1", "--url", "/", "--consent", "reject"]);
    assert!(!rejected.contains("firmographic, personal"), "{rejected}");
    // A page without Acme's hero: the warning names the selector.
    let page = dir.path().join("page.html");
    std::fs::write(
        &page,
        "<html><body><h1>Other page</h1><a id=\"cta-primary\" href=\"/x\">x</a></body></html>",
    )
    .unwrap();
    let out = explain(&[
        "--ip",
        "127.0.10.5",
        "--url",
        "/",
        "--html",
        page.to_str().unwrap(),
    ]);
    assert!(
        out.contains(
            "warning    `#hero-headline` (acme.example/home-hero) matches nothing on this page"
        ),
        "{out}"
    );
    assert!(
        !out.contains("`#cta-primary` (acme.example/home-hero) matches nothing"),
        "{out}"
    );
}

/// Issue 16, item 8: `consent decode` says what GPP values mean, and what a string that is not a TC string is.
#[test]
fn consent_decode_explains_gpp_values_and_names_what_it_did_not_recognise() {
    let out = concierge()
        .args(["consent", "decode", "DBABLA~BVQqAAAAAgA.QA"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SaleOptOut: 2 (did not opt out)"), "{text}");
    assert!(
        text.contains("SaleOptOutNotice: 1 (notice given)"),
        "{text}"
    );
    let out = concierge()
        .args(["consent", "decode", "hello"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("not a TCF v2 string") && !err.contains("version"),
        "{err}"
    );
}
