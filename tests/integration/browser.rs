//! What visitors see and do, in a real browser: headless Chromium from Debian's `chromium` package, driven by
//! Playwright for Python (`tests/browser/*.py`, with `executable_path="/usr/bin/chromium"`; never a browser
//! download). `scripts/test` installs both; without them these tests fail and say so.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

/// Run a browser script from `tests/browser/` with `args`; its JSON line of what the visitor saw.
fn browser(script: &str, args: &[&str]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "browser tests need Debian's chromium and Playwright for Python: run scripts/setup-browser (scripts/test does)"
    );
    let mut child = std::process::Command::new("python3")
        .arg(&path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    // Bounded: a hung browser must not hang the suite.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{script} did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed (scripts/setup-browser installs what it needs):\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// The browser's address (127.0.0.1) in California: no consent needed for the firmographic tier.
const BROWSER_IN_CALIFORNIA: &str =
    "[[geo.static]]\nnetwork = \"127.0.0.1/32\"\ncountry = \"US\"\nsubdivision = \"CA\"\n";

const ACME: &str = r#"
[account]
domain = "acme.example"
name = "Acme & Sons"
networks = ["127.0.0.1/32"]

[[personalization]]
id = "hero"
tier = "firmographic"
paths = ["/landing"]

[[personalization.action]]
select = "h1.hero"
set_text = "Software for {{ company.name }}"

[personalization.feedback]
question = "Was this page relevant to you?"
comment = true
"#;

/// Regression (issue 13, item 9): a visitor who answered "Yes" and then closed the prompt was recorded as a
/// dismissal — the answer was only posted together with the comment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_is_recorded_when_given_even_if_the_prompt_is_then_closed() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The browser's address (127.0.0.1) is Acme's, in California: no consent needed.
    let server = audited_proxy(&origin, dir.path(), ACME, BROWSER_IN_CALIFORNIA).await;
    let url = format!("http://{}/landing", server.listeners[0]);
    let seen = tokio::task::spawn_blocking(move || browser("feedback_prompt.py", &[&url]))
        .await
        .unwrap();
    assert_eq!(seen["question"], "Was this page relevant to you?");
    assert_eq!(seen["answer_status"], 204);
    assert_eq!(seen["comment_status"], 204);
    assert_eq!(seen["closed_hidden"], true);
    // The prompt, open and with its comment field, has nothing serious or critical for axe-core.
    assert_eq!(seen["axe"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["axe_comment"], serde_json::json!([]), "{seen}");

    let log = dir.path().join("log");
    let mut records = Vec::new();
    for _ in 0..50 {
        records = stream_records(&log, "feedback");
        if records.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kinds: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap_or(""),
                r["answer"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("impression", ""),
            ("feedback", "yes"),
            ("impression", ""),
            ("feedback", "no"),
            ("comment", "no"),
        ],
        "no dismissal: the first visitor answered before closing"
    );
    assert_eq!(records[4]["comment"], "Not for <b>us</b>");
    assert!(records.iter().all(|r| r["account"] == "acme.example"));
}

/// A marketer opens the HTML experiments report: one self-contained page (no request leaves the file, no
/// script), its tables and SVG charts drawn, readable on a phone, printable.
#[test]
fn the_html_experiments_report_is_self_contained_and_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let gen = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/experiments_records.py"))
        .arg(dir.path())
        .arg("20000")
        .status()
        .expect("python3 runs");
    assert!(gen.success());
    let file = dir.path().join("report.html");
    let out = concierge()
        .args(["experiments", "report"])
        .arg(dir.path())
        .args(["--format", "html", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = browser("experiment_report.py", &[file.to_str().unwrap()]);
    assert_eq!(
        seen["experiments"],
        serde_json::json!(["Experiment q1-hero", "Experiment q1-pricing"]),
        "{seen}"
    );
    // Per experiment: a lift chart for its goal and two cumulative charts.
    assert_eq!(seen["charts"], 6, "{seen}");
    assert!(
        seen["lift_line"]
            .as_str()
            .is_some_and(|l| l.contains("95% interval")),
        "{seen}"
    );
    assert_eq!(seen["overflow_on_phone"], false, "{seen}");
    assert!(seen["pdf_bytes"].as_u64().unwrap() > 10_000, "{seen}");
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
}

/// Issue 16, item 14 (in part): Escape closes the prompt; after answering and after sending, the keyboard focus
/// stays in the prompt instead of dropping to `<body>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prompt_works_with_the_keyboard() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = audited_proxy(&origin, dir.path(), ACME, BROWSER_IN_CALIFORNIA).await;
    let url = format!("http://{}/landing", server.listeners[0]);
    let seen = tokio::task::spawn_blocking(move || browser("feedback_keys.py", &[&url]))
        .await
        .unwrap();
    assert_eq!(seen["dismiss_status"], 204, "{seen}");
    assert_eq!(seen["escape_hidden"], true, "{seen}");
    assert_eq!(seen["focus_after_escape"], "Book a demo", "{seen}");
    assert_eq!(seen["focus_after_answer"], "cf-comment", "{seen}");
    assert_eq!(seen["focus_after_send"], "cf-status", "{seen}");
    assert_eq!(
        seen["german"],
        serde_json::json!(["Ja", "Nein", "Diese Frage schließen"]),
        "{seen}"
    );
}

/// Issue 16 (items 9–14): the banner and the choices page, as visitors meet them on a dark site with hostile
/// styles and a strict CSP — accept, reject with the keyboard, choose, 375 px portrait and landscape, dark
/// scheme, German, no JavaScript — with axe-core finding nothing serious or critical in any state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_banner_and_the_choices_page_work_for_every_visitor() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    // 127.0.0.1 is in Germany (opt-in): the banner asks.
    let server = audited_proxy(
        &origin,
        dir.path(),
        ACME,
        "[consent]\npolicy_url = \"/privacy\"\n",
    )
    .await;
    let base = format!("http://{}", server.listeners[0]);
    let seen = tokio::task::spawn_blocking(move || browser("banner.py", &[&base]))
        .await
        .unwrap();
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();

    // The site's styles do not reach the banner: its title is readable, its buttons are its own.
    let look = &seen["look"];
    assert_eq!(look["title"], "Your privacy choices", "{seen}");
    assert_eq!(look["first_in_body"], "concierge-consent", "{seen}");
    assert_eq!(look["button_background"], "rgb(26, 26, 26)", "{seen}");
    assert_eq!(look["button_font_size"], "16px", "{seen}");
    assert_eq!(
        look["buttons"],
        serde_json::json!(["Accept all", "Reject all", "Choose"]),
        "{seen}"
    );
    assert_eq!(
        look["links"],
        serde_json::json!([
            "More about your choices",
            "Privacy policy",
            "Why am I seeing this?"
        ]),
        "{seen}"
    );
    assert!(
        seen["title_contrast"]["ratio"].as_f64().unwrap() >= 4.5,
        "{seen}"
    );
    assert_eq!(seen["accept_banner_after"], 0, "{seen}");
    assert!(
        seen["accept_cookies"]
            .to_string()
            .contains("concierge_consent"),
        "{seen}"
    );

    // Keyboard: the banner is the first Tab stop; after Reject the focus goes on to the page's first link.
    assert_eq!(
        s(&seen["first_tab"]["text"]),
        "More about your choices",
        "{seen}"
    );
    assert_eq!(s(&seen["reject_reached"]["text"]), "Reject all", "{seen}");
    assert_eq!(seen["reject_status"], 200, "{seen}");
    assert_eq!(seen["focus_after_reject"]["id"], "home", "{seen}");
    assert_eq!(seen["announced"], "Your choice is saved.", "{seen}");
    assert_eq!(seen["reject_banner_after_reload"], 0, "{seen}");

    // Choose: the details open with the focus on the first box; the saved choice is what the page shows.
    assert_eq!(seen["choose_focus"]["id"], "cc-firmographic", "{seen}");
    assert_eq!(seen["choose_expanded"], "true", "{seen}");
    let status = s(&seen["choose_status"]);
    assert!(
        status.contains("your organization — allowed; you personally — not allowed"),
        "{status}"
    );

    // Small screens: the banner fits the window, scrolls inside, and its last button can be reached.
    for name in ["portrait", "landscape"] {
        let g = &seen[name];
        assert!(g["top"].as_f64().unwrap() >= 0.0, "{name}: {g}");
        assert!(
            g["bottom"].as_f64().unwrap() <= g["height"].as_f64().unwrap(),
            "{name}: {g}"
        );
        assert_eq!(g["overflow_x"], false, "{name}: {g}");
        assert_eq!(g["target"]["visible"], true, "{name}: {g}");
    }
    assert_eq!(seen["landscape"]["scrolls"], true, "{seen}");

    // Dark scheme: a dark banner whose title and text read well.
    assert_eq!(
        seen["dark_look"]["banner_background"], "rgb(31, 31, 31)",
        "{seen}"
    );
    assert!(
        seen["dark_title_contrast"]["ratio"].as_f64().unwrap() >= 4.5,
        "{seen}"
    );
    assert!(
        seen["dark_text_contrast"]["ratio"].as_f64().unwrap() >= 4.5,
        "{seen}"
    );
    assert!(
        seen["choices_dark_contrast"]["ratio"].as_f64().unwrap() >= 4.5,
        "{seen}"
    );

    // German, by Accept-Language.
    assert_eq!(
        seen["german_look"]["title"], "Ihre Datenschutz-Einstellungen",
        "{seen}"
    );
    assert_eq!(seen["german_look"]["lang"], "de", "{seen}");
    assert_eq!(
        seen["german_look"]["buttons"],
        serde_json::json!(["Alle akzeptieren", "Alle ablehnen", "Auswählen"]),
        "{seen}"
    );
    assert_eq!(
        seen["german_choices_title"], "Ihre Datenschutz-Einstellungen",
        "{seen}"
    );
    assert_eq!(seen["german_choices_lang"], "de", "{seen}");

    // No JavaScript: the noscript link, the choices page's plain form, back where the visitor was.
    assert_eq!(
        seen["nojs_link"], "Privacy choices: decide what this site may use about you",
        "{seen}"
    );
    assert_eq!(seen["nojs_link_visible"], true, "{seen}");
    assert_eq!(seen["nojs_banner"], 0, "{seen}");
    assert_eq!(seen["nojs_choices_title"], "Your privacy choices", "{seen}");
    assert!(s(&seen["nojs_back_at"]).ends_with("/site"), "{seen}");
    assert!(
        seen["nojs_cookies"]
            .to_string()
            .contains("concierge_consent"),
        "{seen}"
    );
    assert_eq!(seen["nojs_link_after"], 0, "{seen}");

    // Nothing blocked by the CSP, no script error, nothing serious for axe in any state.
    assert_eq!(seen["csp_violations"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    for (state, found) in seen["axe"].as_object().unwrap() {
        assert_eq!(found, &serde_json::json!([]), "axe, {state}: {found}");
    }
    assert_eq!(seen["axe"].as_object().unwrap().len(), 8, "{seen}");

    // The consent records name the language the visitor chose in.
    let records = audit_records(&dir.path().join("log"));
    let consent: Vec<_> = records.iter().filter(|r| r["type"] == "consent").collect();
    assert_eq!(
        consent.len(),
        4,
        "accept, reject, choose, no-JS reject: {consent:?}"
    );
    assert!(consent.iter().all(|r| r["language"] == "en"), "{consent:?}");
}

/// Issue 18: the console as a marketer and a reviewer use it — every page (overview, rules, the preview form,
/// experiments, feedback, audit search, a record, verify), a sorted table, a search, a CSV download, the 401
/// before the token, axe-core with nothing serious or critical, nothing blocked by the CSP, no page wider
/// than a phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_browser_for_marketers_and_reviewers() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let experiments = dir.path().join("rules/experiments");
    std::fs::create_dir_all(&experiments).unwrap();
    std::fs::write(
        experiments.join("hero.toml"),
        "[experiment]\nid = \"hero-test\"\nrules = [\"*/hero\"]\ncontrol = 0.5\nhypothesis = \"Naming the company lifts demo requests\"\n\n\
         [[experiment.goal]]\nid = \"demo-request\"\npath = \"/demo-request*\"\nmethod = \"POST\"\n",
    )
    .unwrap();
    let server = audited_proxy(
        &origin,
        dir.path(),
        ACME,
        &format!("{BROWSER_IN_CALIFORNIA}{}", console_section(dir.path())),
    )
    .await;
    let addr = server.listeners[0];
    // Something for every page: visits, an answer with a hostile comment, a choice, a conversion.
    let (resp, body) = get_from("127.0.0.1", addr, "/landing", &[("accept", "text/html")]).await;
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let html = String::from_utf8_lossy(&body).into_owned();
    let version = html
        .split("data-version=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the prompt's rules version")
        .to_string();
    let form = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("origin", "http://www.example.test"),
    ];
    let base = format!("rule=acme.example%2Fhero&version={version}&page=%2Flanding");
    for body in [
        format!("event=shown&{base}"),
        format!(
            "event=answer&answer=yes&{base}&comment=%3Cimg+src%3Dx+onerror%3Dalert(1)%3E+spot+on"
        ),
    ] {
        let (resp, _) = post_from("127.0.0.1", addr, "/_concierge/feedback", &form, &body).await;
        assert_eq!(resp.status(), 204);
    }
    let (resp, _) = post_from(
        "127.0.0.1",
        addr,
        "/_concierge/consent",
        &form,
        "choice=accept",
    )
    .await;
    assert!(
        resp.status().is_redirection() || resp.status() == 204,
        "{}",
        resp.status()
    );
    let req = request(
        "POST",
        "/demo-request",
        &[("content-type", "application/x-www-form-urlencoded")],
        full("name=Jo"),
    );
    let _ = send_from("127.0.0.1", addr, req).await;
    eventually("the records", || {
        audit_records(&dir.path().join("log")).len() >= 3
    })
    .await;

    let admin = format!("http://{}", server.admin.unwrap());
    let request_id_check = request_id.clone();
    let seen = tokio::task::spawn_blocking(move || {
        browser("console.py", &[&admin, CONSOLE_TOKEN, &request_id])
    })
    .await
    .unwrap();
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    assert_eq!(seen["unauthenticated"], 401, "{seen}");
    let pages = seen["pages"].as_object().unwrap();
    assert_eq!(pages.len(), 9, "{seen}");
    for (name, p) in pages {
        assert_eq!(p["status"], 200, "{name}: {p}");
        assert_eq!(p["axe"], serde_json::json!([]), "axe, {name}: {p}");
        assert_eq!(p["csp"], serde_json::json!([]), "CSP, {name}: {p}");
        assert_eq!(p["overflow_on_phone"], false, "{name}: {p}");
        assert_eq!(
            p["h1"].as_str().map(str::is_empty),
            Some(false),
            "{name}: {p}"
        );
    }
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["sorted"], "ascending", "{seen}");
    // The preview: the rule applies to Acme, the rewritten page shows it in its frame, no script runs there.
    assert_eq!(seen["preview_verdict"], "applied", "{seen}");
    assert_eq!(
        seen["preview_original_h1"], "Software for every team",
        "{seen}"
    );
    assert_eq!(
        seen["preview_rewritten_h1"], "Software for Acme & Sons",
        "{seen}"
    );
    assert!(seen["preview_diff_added"].as_u64().unwrap() >= 1, "{seen}");
    assert!(
        seen["frame_refusals"].as_u64().unwrap() >= 1,
        "the rewritten page's script was refused by its frame's sandbox: {seen}"
    );
    // The search by request id finds the page's decision and its experiment exposure; the record view shows
    // its proof.
    assert_eq!(seen["search_rows"], 2, "{seen}");
    assert!(
        s(&seen["record_text"]).contains(&request_id_check),
        "{seen}"
    );
    assert_eq!(seen["verify"], "intact", "{seen}");
    // The download is the search as CSV: a header and the two rows.
    assert_eq!(seen["download_name"], "concierge-audit.csv", "{seen}");
    assert_eq!(seen["download_lines"], 3, "{seen}");
    // The hostile comment is text on the Feedback page, never markup.
    assert!(
        s(&seen["comment"]).contains("<img src=x onerror=alert(1)> spot on"),
        "{seen}"
    );
    assert_eq!(seen["comment_images"], 0, "{seen}");
    assert_eq!(seen["experiment_heading"], "Experiment hero-test", "{seen}");
}

/// The console's Instances page in a browser, over a real record store: this instance shipping (healthy), and
/// another instance registered with a key but no record yet — reached by the navigation, accessible, no
/// CSP violation, no overflow at phone width, the table read as an operator reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instances_page_in_a_browser() {
    let pg = Postgres::start();
    let origin = Origin::start().await;
    let keys = tempfile::tempdir().unwrap();
    let other = signing_key(&keys.path().join("other"));
    let out = pg.register("edge-2", &concierge::audit::keys::public_path(&other));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let server = audited_proxy(
        &origin,
        dir.path(),
        ACME,
        &format!(
            "instance = \"edge-1\"\n[audit.postgres]\nurl = \"{}\"\npassword_file = \"{}\"\nship_interval = \"100ms\"\n{}",
            pg.url(),
            pg.password_file().display(),
            console_section(dir.path())
        ),
    )
    .await;
    for _ in 0..3 {
        let (resp, _) = get_from(
            "127.0.0.1",
            server.listeners[0],
            "/landing",
            &[("accept", "text/html")],
        )
        .await;
        assert_eq!(resp.status(), 200);
    }
    let admin_addr = server.admin.unwrap();
    let mut shipped = false;
    for _ in 0..200 {
        let (_, text) = admin(&server, "/healthz/records").await;
        if text.starts_with("ok: every record is in the record store") {
            shipped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(shipped, "every record shipped");
    let base = format!("http://{admin_addr}");
    let seen =
        tokio::task::spawn_blocking(move || browser("instances.py", &[&base, CONSOLE_TOKEN]))
            .await
            .unwrap();
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["axe"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["csp"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["overflow_on_phone"], false, "{seen}");
    assert_eq!(seen["h1"], "Instances");
    assert_eq!(seen["current"], "Instances");
    assert!(
        seen["status"]
            .as_str()
            .unwrap()
            .starts_with("ok: every record is in the record store"),
        "{seen}"
    );
    let rows = seen["rows"].as_array().unwrap();
    let cells = |r: &serde_json::Value| {
        r.as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let edge1 = rows
        .iter()
        .map(cells)
        .find(|r| r[0].starts_with("edge-1") && r[2] == "audit")
        .unwrap_or_else(|| panic!("{seen}"));
    assert!(
        edge1[0].contains("(this one)") && edge1[1].starts_with("registered"),
        "{edge1:?}"
    );
    let last = audit_records(&dir.path().join("log")).last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    assert_eq!(edge1[3], last.to_string(), "{edge1:?}");
    let edge2 = rows
        .iter()
        .map(cells)
        .find(|r| r[0] == "edge-2")
        .unwrap_or_else(|| panic!("{seen}"));
    assert_eq!(
        (
            edge2[1].starts_with("registered"),
            edge2[2].as_str(),
            edge2[4].as_str()
        ),
        (true, "none yet", "no record"),
        "{edge2:?}"
    );
    concierge::app::stop(server).await;
}
