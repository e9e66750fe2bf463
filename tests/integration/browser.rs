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
    let server = audited_proxy(
        &origin,
        dir.path(),
        ACME,
        "[[geo.static]]\nnetwork = \"127.0.0.1/32\"\ncountry = \"US\"\nsubdivision = \"CA\"\n",
    )
    .await;
    let url = format!("http://{}/landing", server.listeners[0]);
    let seen = tokio::task::spawn_blocking(move || browser("feedback_prompt.py", &[&url]))
        .await
        .unwrap();
    assert_eq!(seen["question"], "Was this page relevant to you?");
    assert_eq!(seen["answer_status"], 204);
    assert_eq!(seen["comment_status"], 204);
    assert_eq!(seen["closed_hidden"], true);

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
    let server = audited_proxy(
        &origin,
        dir.path(),
        ACME,
        "[[geo.static]]\nnetwork = \"127.0.0.1/32\"\ncountry = \"US\"\nsubdivision = \"CA\"\n",
    )
    .await;
    let url = format!("http://{}/landing", server.listeners[0]);
    let seen = tokio::task::spawn_blocking(move || browser("feedback_keys.py", &[&url]))
        .await
        .unwrap();
    assert_eq!(seen["dismiss_status"], 204, "{seen}");
    assert_eq!(seen["escape_hidden"], true, "{seen}");
    assert_eq!(seen["focus_after_answer"], "cf-comment", "{seen}");
    assert_eq!(seen["focus_after_send"], "cf-status", "{seen}");
}
