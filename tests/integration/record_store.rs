//! The record store in operation (issue 19): the proxy shipping by itself while it serves, the database
//! crashing under it and the shipper catching up, the shipper killed mid-batch, the database killed
//! mid-transaction — every local record in the database exactly once afterwards —, and three instances
//! writing at once, whose records the readers (`audit export`, `audit stats`, `feedback report`,
//! `experiments report`) give the same answers over from the store as from the union of their folders.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

const HTML: (&str, &str) = ("accept", "text/html");

/// Every complete local line of `dir/<stream>` with its seq.
fn local_lines(dir: &Path, stream: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let sdir = dir.join(stream);
    if !sdir.is_dir() {
        return out;
    }
    concierge::audit::query::for_each(&sdir, |line, v| {
        out.push((
            v["seq"].as_i64().unwrap(),
            String::from_utf8(line.to_vec()).unwrap(),
        ))
    })
    .unwrap();
    out
}

/// The database's rows of (instance, stream), by seq — every row, duplicates included.
async fn db_lines(db: &tokio_postgres::Client, instance: &str, stream: &str) -> Vec<(i64, String)> {
    db.query(
        "SELECT seq, line FROM concierge_record WHERE instance = $1 AND stream = $2 ORDER BY seq",
        &[&instance, &stream],
    )
    .await
    .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    .unwrap_or_default()
}

/// Poll `check` (a fresh connection each time: the server may have been restarted) for up to 60 s.
async fn until<F, Fut>(pg: &Postgres, what: &str, mut check: F)
where
    F: FnMut(tokio_postgres::Client) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if let Ok(Ok((client, conn))) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio_postgres::connect(
                &format!(
                    "host=127.0.0.1 port={} user=concierge dbname=postgres password={} sslmode=disable",
                    pg.port, pg.password
                ),
                tokio_postgres::NoTls,
            ),
        )
        .await
        {
            tokio::spawn(conn);
            if check(client).await {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn store_section(pg: &Postgres, instance: &str) -> String {
    format!(
        "instance = \"{instance}\"\n[audit.postgres]\nurl = \"{}\"\npassword_file = \"{}\"\nship_interval = \"100ms\"\n",
        pg.url(),
        pg.password_file().display()
    )
}

const ACME: &str = r#"
[account]
domain = "acme.example"
name = "Acme"
networks = ["127.0.10.0/24"]

[[personalization]]
id = "hero"
tier = "firmographic"
paths = ["/landing"]

[[personalization.action]]
select = "h1.hero"
set_text = "Software for {{ company.name }}"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_ships_by_itself_and_catches_up_after_the_database_crashed() {
    let pg = Postgres::start();
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let server = audited_proxy(
        &origin,
        dir.path(),
        ACME,
        &format!("record_refusals = true\n{}", store_section(&pg, "edge-1")),
    )
    .await;
    let addr = server.listeners[0];
    for _ in 0..20 {
        let (resp, body) = get_from("127.0.10.5", addr, "/landing", &[HTML]).await;
        assert_eq!(resp.status(), 200);
        assert!(String::from_utf8_lossy(&body).contains("Software for Acme"));
    }
    // Shipped without anyone asking: every local record, once, as written.
    until(&pg, "the first records in the store", |db| {
        let log = log.clone();
        async move {
            let local = local_lines(&log, "audit");
            local.len() >= 20 && db_lines(&db, "edge-1", "audit").await == local
        }
    })
    .await;
    let (code, text) = admin(&server, "/healthz/records").await;
    assert_eq!(
        (code, text.as_str()),
        (200, "ok: every record is in the record store\n")
    );
    let (_, metrics) = admin(&server, "/metrics").await;
    assert_eq!(
        metric_value(&metrics, "concierge_audit_ship_up"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "concierge_audit_ship_lag_records{stream=\"audit\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&metrics, "concierge_audit_ship_key_registered"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, "concierge_audit_ship_key_mismatch"),
        Some(0.0)
    );
    // The instance registered its own key: the store verifies.
    let verify = pg.verify();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{text}");
    assert!(text.contains("instance edge-1:"), "{text}");

    // The database crashes. Serving goes on, personalized (records are on local disk first).
    pg.crash();
    for _ in 0..30 {
        let (resp, body) = get_from("127.0.10.5", addr, "/landing", &[HTML]).await;
        assert_eq!(resp.status(), 200);
        assert!(String::from_utf8_lossy(&body).contains("Software for Acme"));
    }
    let mut failing = String::new();
    for _ in 0..100 {
        let (code, text) = admin(&server, "/healthz/records").await;
        if code == 503 {
            failing = text;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        failing.starts_with("failing: PostgreSQL at concierge@127.0.0.1"),
        "{failing}"
    );
    assert!(
        failing.contains("record(s) wait on local disk"),
        "{failing}"
    );
    let (code, _) = admin(&server, "/readyz").await;
    assert_eq!(code, 200, "readiness does not depend on the record store");
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = admin(&server, "/metrics").await.1;
        if metric_value(
            &metrics,
            "concierge_audit_ship_lag_records{stream=\"audit\"}",
        )
        .is_some_and(|n| n >= 30.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric_value(&metrics, "concierge_audit_ship_up"),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        metric_value(
            &metrics,
            "concierge_audit_ship_lag_records{stream=\"audit\"}"
        )
        .is_some_and(|n| n >= 30.0),
        "the records served meanwhile wait: {metrics}"
    );

    // Back: the shipper catches up, in order, each record once.
    pg.restart();
    until(&pg, "the backlog shipped", |db| {
        let log = log.clone();
        async move {
            let local = local_lines(&log, "audit");
            local.len() >= 50 && db_lines(&db, "edge-1", "audit").await == local
        }
    })
    .await;
    let mut healthy = false;
    for _ in 0..100 {
        if admin(&server, "/healthz/records").await.0 == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy);
    // At shutdown the final checkpoint is shipped too, and the store verifies to the last record.
    concierge::app::stop(server).await;
    let local = local_lines(&log, "audit");
    let last = local.last().unwrap().0;
    until(&pg, "the final checkpoint shipped", |db| async move {
        db.query_one(
            "SELECT max(seq) FROM concierge_checkpoint WHERE instance = 'edge-1' AND stream = 'audit'",
            &[],
        )
        .await
        .ok()
        .and_then(|r| r.get::<_, Option<i64>>(0))
            == Some(last)
    })
    .await;
    let verify = pg.verify();
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{text}");
    assert!(!text.contains("protected by the chain only"), "{text}");
}

/// `concierge audit generate` `n` records into `log` (instance file written).
fn generate(log: &Path, key: &Path, instance: &str, n: u64) {
    std::fs::create_dir_all(log).unwrap();
    std::fs::write(log.join("instance"), format!("{instance}\n")).unwrap();
    let out = concierge()
        .args(["audit", "generate"])
        .arg(log)
        .arg("--key")
        .arg(key)
        .args(["--count", &n.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ship(pg: &Postgres, log: &Path, batch: u32) -> std::process::Child {
    concierge()
        .args(["audit", "ship"])
        .arg(log)
        .args(["--postgres", &pg.url(), "--password-file"])
        .arg(pg.password_file())
        .args(["--batch", &batch.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

async fn count(pg: &Postgres, instance: &str) -> i64 {
    pg.client()
        .await
        .query_one(
            "SELECT count(*) FROM concierge_record WHERE instance = $1",
            &[&instance],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_shipper_killed_mid_batch_or_a_database_killed_mid_transaction_loses_and_repeats_nothing()
{
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key(&dir.path().join("keys"));
    let log = dir.path().join("log");
    const N: u64 = 60_000;
    generate(&log, &key, "edge-k", N);
    let local = local_lines(&log, "audit");
    assert_eq!(local.len() as u64, N);

    // 1. The shipper is killed (SIGKILL) while it is shipping.
    let mut child = ship(&pg, &log, 500);
    let mut seen = 0;
    for _ in 0..2000 {
        seen = if pg
            .client()
            .await
            .query_one("SELECT to_regclass('concierge_record') IS NOT NULL", &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
        {
            count(&pg, "edge-k").await
        } else {
            0
        };
        if seen > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let after_kill = count(&pg, "edge-k").await;
    assert!(
        seen > 0 && after_kill < N as i64,
        "killed mid-way: {seen} then {after_kill} of {N}"
    );

    // 2. The database is killed (immediate stop: a crash, in-flight and unflushed commits lost) while a
    // second shipper is sending, in bigger transactions.
    let child = ship(&pg, &log, 5000);
    for _ in 0..2000 {
        if count(&pg, "edge-k").await > after_kill {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    pg.crash();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the shipper saw the database go");
    pg.restart();
    let before_last = count(&pg, "edge-k").await;
    assert!(
        before_last < N as i64,
        "the crash came before the end: {before_last}"
    );

    // 3. After recovery a plain rerun ships the rest: every local record exactly once.
    let out = ship(&pg, &log, 5000).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = pg.client().await;
    assert_eq!(db_lines(&db, "edge-k", "audit").await, local);
    let out = pg.register("edge-k", &key);
    assert!(out.status.success());
    let verify = pg.verify();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

/// A catch-up inserts a group of batches at once over several connections and commits them in order, each only
/// once the one before it is confirmed: when a commit fails, the batches after it are not committed either, so
/// the store never holds a gap and the next run starts at the first record it lacks.
#[tokio::test]
async fn a_commit_refused_mid_group_leaves_no_gap_and_the_next_run_ships_the_rest() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key(&dir.path().join("keys"));
    let log = dir.path().join("log");
    generate(&log, &key, "edge-g", 1000);
    let local = local_lines(&log, "audit");
    let migrate = concierge()
        .args([
            "audit",
            "migrate",
            "--postgres",
            &pg.url(),
            "--password-file",
        ])
        .arg(pg.password_file())
        .output()
        .unwrap();
    assert!(migrate.status.success());
    // Seq 250 is refused at commit time: the first transaction of the second group (batches of 100 over
    // two connections: [0, 200) then [200, 400)).
    let db = pg.client().await;
    db.batch_execute(
        "CREATE FUNCTION refuse_250() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.seq = 250 THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER refuse_250 AFTER INSERT ON concierge_record
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_250();",
    )
    .await
    .unwrap();
    let ship_with = |connections: &str| {
        concierge()
            .args(["audit", "ship"])
            .arg(&log)
            .args(["--postgres", &pg.url(), "--password-file"])
            .arg(pg.password_file())
            .args(["--batch", "100", "--connections", connections])
            .output()
            .unwrap()
    };
    let out = ship_with("2");
    assert!(!out.status.success(), "the refused commit is an error");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused at commit"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let held: Vec<i64> = db
        .query(
            "SELECT seq FROM concierge_record WHERE instance = 'edge-g' ORDER BY seq",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(held, (0..200).collect::<Vec<i64>>(), "a prefix, no gap");

    db.batch_execute("DROP TRIGGER refuse_250 ON concierge_record")
        .await
        .unwrap();
    let out = ship_with("3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db_lines(&db, "edge-g", "audit").await, local);
}

const ACCOUNTS: usize = 24;

fn write_rules(dir: &Path) {
    let accounts = dir.join("accounts");
    std::fs::create_dir_all(&accounts).unwrap();
    for i in 0..ACCOUNTS {
        std::fs::write(
            accounts.join(format!("account-{i}.example.toml")),
            format!(
                "[account]\ndomain = \"account-{i}.example\"\nname = \"Account {i}\"\nnetworks = [\"127.3.{i}.0/24\"]\n\n\
                 [[personalization]]\nid = \"hero\"\ntier = \"firmographic\"\npaths = [\"/landing\"]\n\
                 [[personalization.action]]\nselect = \"h1.hero\"\nset_text = \"Made for {{{{ company.name }}}}\"\n\
                 [personalization.feedback]\nquestion = \"Useful?\"\ncomment = true\n"
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

/// The binary's standard output for `args`, which must succeed.
fn run_ok(args: &[&str], extra: &[&std::ffi::OsStr]) -> String {
    let out = concierge().args(args).args(extra).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_at_once_and_the_readers_over_the_store_equal_the_union_of_their_folders() {
    let pg = Postgres::start();
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    write_rules(&rules);
    let mut servers = Vec::new();
    let mut logs = Vec::new();
    for name in ["edge-a", "edge-b", "edge-c"] {
        let log = dir.path().join(name);
        let server = proxy(
            &origin.url(),
            &format!(
                "[rules]\ndir = \"{}\"\n[audit]\ndir = \"{}\"\nsigning_key = \"{}\"\n{}\
                 [[geo.static]]\nnetwork = \"127.0.0.0/8\"\ncountry = \"US\"\nsubdivision = \"CA\"\n",
                rules.display(),
                log.display(),
                signing_key(&dir.path().join(format!("keys-{name}"))).display(),
                store_section(&pg, name),
            ),
        )
        .await;
        servers.push(server);
        logs.push(log);
    }
    let addrs: Vec<_> = servers.iter().map(|s| s.listeners[0]).collect();
    // Every account is seen by two instances and converts on a third; everything at once.
    let mut tasks = Vec::new();
    for i in 0..ACCOUNTS {
        let addrs = addrs.clone();
        tasks.push(tokio::spawn(async move {
            let from = format!("127.3.{i}.5");
            let mut version = String::new();
            for k in [i % 3, (i + 1) % 3, i % 3] {
                let (resp, body) = get_from(&from, addrs[k], "/landing", &[HTML]).await;
                assert_eq!(resp.status(), 200);
                let body = String::from_utf8_lossy(&body).into_owned();
                if let Some(at) = body.find("data-version=\"") {
                    let rest = &body[at + 14..];
                    version = rest[..rest.find('"').unwrap()].to_string();
                }
            }
            if i % 2 == 0 {
                let req = request(
                    "POST",
                    "/demo-request",
                    &[("content-type", "application/x-www-form-urlencoded")],
                    full("name=Jo"),
                );
                let _ = send_from(&from, addrs[(i + 2) % 3], req).await;
            }
            if !version.is_empty() {
                let answer = if i % 3 == 0 { "no" } else { "yes" };
                let body = format!(
                    "event=answer&answer={answer}&rule=account-{i}.example%2Fhero&version={version}&page=%2Flanding&comment=from+{i}"
                );
                let (resp, text) = post_from(
                    &from,
                    addrs[(i + 1) % 3],
                    "/_concierge/feedback",
                    &[
                        ("content-type", "application/x-www-form-urlencoded"),
                        ("origin", "http://www.example.test"),
                    ],
                    &body,
                )
                .await;
                assert_eq!(resp.status(), 204, "{text}");
            }
            !version.is_empty()
        }));
    }
    let mut answered = 0;
    for t in tasks {
        answered += usize::from(t.await.unwrap());
    }
    assert!(
        answered > 0 && answered < ACCOUNTS,
        "treated accounts answer: {answered}"
    );
    for s in servers {
        concierge::app::stop(s).await;
    }
    // The proxies shipped while they served; what the final flush at shutdown wrote goes with a last attempt
    // bounded at 5 s, which a loaded machine may not finish — the next start would ship it. Here the folders'
    // proxies are gone for good, so an operator ships what is left (a harmless resend if nothing is).
    for (name, log) in ["edge-a", "edge-b", "edge-c"].iter().zip(&logs) {
        let pw = pg.password_file();
        run_ok(
            &[
                "audit",
                "ship",
                log.to_str().unwrap(),
                "--instance",
                name,
                "--postgres",
                &pg.url(),
            ],
            &["--password-file".as_ref(), pw.as_os_str()],
        );
    }
    // Every instance's every stream in the store as in its folder.
    for (name, log) in ["edge-a", "edge-b", "edge-c"].iter().zip(&logs) {
        for stream in ["audit", "feedback"] {
            let local = local_lines(log, stream);
            assert!(!local.is_empty(), "{name}/{stream} wrote records");
            until(&pg, "every instance shipped", |db| {
                let local = local.clone();
                async move { db_lines(&db, name, stream).await == local }
            })
            .await;
        }
    }
    let url = pg.url();
    let pw = pg.password_file();
    let store: Vec<&std::ffi::OsStr> = vec![
        "--postgres".as_ref(),
        url.as_ref(),
        "--password-file".as_ref(),
        pw.as_os_str(),
    ];
    let folders: Vec<&std::ffi::OsStr> = logs.iter().map(|l| l.as_os_str()).collect();

    // Export: the same records (the store's in time order over all instances).
    let sorted = |text: String| {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    let from_store = run_ok(&["audit", "export"], &store);
    let from_files = run_ok(&["audit", "export"], &folders);
    assert_eq!(sorted(from_store.clone()), sorted(from_files));
    let times: Vec<String> = from_store
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["time"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
    for filter in [
        vec!["--type", "exposure"],
        vec!["--account", "account-3.example"],
        // The store narrows by its index with ASCII case folded, as the filter compares.
        vec!["--account", "Account-3.EXAMPLE"],
        vec!["--decision", "personalized", "--format", "csv"],
    ] {
        let args: Vec<&str> = ["audit", "export"]
            .into_iter()
            .chain(filter.iter().copied())
            .collect();
        let a = run_ok(&args, &store);
        let b = run_ok(&args, &folders);
        assert!(a.lines().count() > 1, "{filter:?} finds records");
        assert_eq!(sorted(a), sorted(b), "{filter:?}");
    }
    // Stats, the feedback report, the experiments report: the same answers.
    for args in [
        vec!["audit", "stats", "--json"],
        vec!["feedback", "report", "--format", "json"],
        vec!["experiments", "report", "--format", "json"],
    ] {
        let a = run_ok(&args, &store);
        let b = run_ok(&args, &folders);
        assert_eq!(a, b, "{args:?}");
    }
    // One experiment over every instance: each account once, in one arm.
    let report: serde_json::Value = serde_json::from_str(&run_ok(
        &["experiments", "report", "--format", "json"],
        &store,
    ))
    .unwrap();
    let hero = &report["experiments"][0];
    assert_eq!(hero["id"], "hero-test");
    let accounts: u64 = hero["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["accounts"].as_u64().unwrap())
        .sum();
    assert_eq!(accounts, ACCOUNTS as u64, "{hero}");
    let feedback: serde_json::Value =
        serde_json::from_str(&run_ok(&["feedback", "report", "--format", "json"], &store)).unwrap();
    assert_eq!(
        feedback["rules"].as_array().unwrap().len(),
        answered,
        "{feedback}"
    );
    // And the store verifies, every instance against the key it registered.
    let text = run_ok(&["audit", "verify"], &store);
    for name in ["edge-a", "edge-b", "edge-c"] {
        assert!(text.contains(&format!("instance {name}:")), "{text}");
    }
    assert_eq!(text.matches("  intact").count(), 3, "{text}");

    // The console of a fourth instance reads the store: every instance's records and one result.
    let console = proxy(
        &origin.url(),
        &format!(
            "[rules]\ndir = \"{}\"\n[audit]\ndir = \"{}\"\nsigning_key = \"{}\"\n{}{}",
            rules.display(),
            dir.path().join("edge-d").display(),
            signing_key(&dir.path().join("keys-edge-d")).display(),
            store_section(&pg, "edge-d"),
            console_section(dir.path()),
        ),
    )
    .await;
    let (code, page) = console_page(&console, "/console/audit?account=account-3.example").await;
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("Every instance&#39;s records") || page.contains("Every instance's records"),
        "{page}"
    );
    let instances: std::collections::BTreeSet<&str> = ["edge-a", "edge-b", "edge-c"]
        .into_iter()
        .filter(|i| page.contains(&format!("instance={i}&amp;seq=")))
        .collect();
    assert!(
        instances.len() >= 2,
        "account 3 was seen by two instances: {page}"
    );
    let link = page
        .split("href=\"/console/audit/record?stream=audit&amp;instance=")
        .nth(1)
        .unwrap();
    let link = link[..link.find('"').unwrap()].replace("&amp;", "&");
    let (code, record) = console_page(
        &console,
        &format!("/console/audit/record?stream=audit&instance={link}"),
    )
    .await;
    assert_eq!(code, 200, "{record}");
    assert!(record.contains("account-3.example"), "{record}");
    let (code, page) = console_page(&console, "/console/experiments").await;
    assert_eq!(code, 200);
    assert!(
        page.contains("hero-test") && page.contains("Over every instance"),
        "{page}"
    );
    let (code, page) = console_page(&console, "/console/feedback").await;
    assert_eq!(code, 200);
    assert!(
        page.contains("account-0.example/hero") || page.contains("account-1.example/hero"),
        "{page}"
    );
    concierge::app::stop(console).await;
}

/// The experiment report over the store reads the facts the shipper keeps beside exposures and conversions
/// (schema 4), and the line of every such row without one — rows the report's parser refuses, and rows shipped
/// before schema 4 —, and gives the folder's report either way.
#[tokio::test]
async fn the_store_report_from_facts_and_from_lines_equals_the_folder_report() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("lab");
    std::fs::create_dir_all(log.join("audit")).unwrap();
    std::fs::write(log.join("instance"), "lab-1\n").unwrap();
    // Lines of the chain's shape (the report does not verify; the shipper takes them as they are).
    let mut lines: Vec<String> = Vec::new();
    let mut add = |body: String| {
        let seq = lines.len();
        lines.push(format!(r#"{{"seq":{seq},"prev":"x",{body}}}"#));
    };
    for i in 0..60u32 {
        let day = 1 + i / 20;
        let t = format!("2027-03-{day:02}T10:{:02}:00.000Z", i % 60);
        let acct = i % 12;
        let arm = if acct % 2 == 0 {
            "control"
        } else {
            "treatment"
        };
        let control = if i < 40 { "0.5" } else { "0.3" };
        add(format!(
            r#""type":"decision","time":"{t}","request_id":"d{i}","company":"account-{acct}.example","outcome":"personalized""#
        ));
        add(format!(
            r#""type":"exposure","time":"{t}","request_id":"r{i}","experiment":"e1","arm":"{arm}","account":"account-{acct}.example","page":"/","rules":["x/hero"],"rules_version":"v","control":{control}"#
        ));
        if i % 5 == 0 {
            add(format!(
                r#""type":"conversion","time":"{t}","request_id":"c{i}","experiment":"e1","goal":"demo","arm":"{arm}","account":"account-{acct}.example","page":"/demo","method":"POST""#
            ));
        }
        if i % 7 == 0 {
            // Before any exposure of that visitor on day 1, after on the others.
            add(format!(
                r#""type":"conversion","time":"{t}","request_id":"v{i}","experiment":"e2","goal":"signup","arm":"treatment","unit":"visitor","visitor":"vis-{}","page":"/s","method":"POST""#,
                i % 3
            ));
            add(format!(
                r#""type":"exposure","time":"{t}","request_id":"w{i}","experiment":"e2","arm":"treatment","unit":"visitor","visitor":"vis-{}","page":"/","rules":["x/hero"],"rules_version":"v","control":0.5"#,
                i % 3
            ));
        }
    }
    // Records the report's parser refuses or skips: no arm, an unknown arm, a null account, a repeated field,
    // a time with an offset, an experiment named only by a skipped record.
    add(r#""type":"exposure","time":"2027-03-02T11:00:00.000Z","experiment":"e1","account":"account-1.example","control":0.5"#.into());
    add(r#""type":"exposure","time":"2027-03-02T11:00:00.000Z","experiment":"e1","arm":"both","account":"account-1.example""#.into());
    add(r#""type":"exposure","time":"2027-03-02T11:00:00.000Z","experiment":"e1","arm":"control","account":null"#.into());
    add(r#""type":"conversion","time":"2027-03-02T11:00:00.000Z","experiment":"e1","goal":"demo","goal":"other","arm":"treatment","account":"account-3.example""#.into());
    add(r#""type":"exposure","time":"2027-03-02T12:00:00+01:00","experiment":"e1","arm":"treatment","account":"account-5.example","control":0.5"#.into());
    add(r#""type":"exposure","time":"2027-03-02T11:00:00.000Z","experiment":"e3","account":"account-1.example""#.into());
    std::fs::write(
        log.join("audit/00000000000000000000.jsonl"),
        lines.join("\n") + "\n",
    )
    .unwrap();

    let url = pg.url();
    let pw = pg.password_file();
    let store: Vec<&std::ffi::OsStr> = vec![
        "--postgres".as_ref(),
        url.as_ref(),
        "--password-file".as_ref(),
        pw.as_os_str(),
    ];
    let folder: Vec<&std::ffi::OsStr> = vec![log.as_os_str()];
    let shipped = run_ok(&["audit", "ship", log.to_str().unwrap()], &store);
    assert!(
        shipped.contains(&format!("lab-1/audit: {} record(s)", lines.len())),
        "{shipped}"
    );
    let db = pg.client().await;
    let facts: i64 = db
        .query_one(
            "SELECT count(*) FROM concierge_record WHERE arm IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // Every exposure and conversion but the three the report's parser refuses and the two without an arm.
    let reportable = lines
        .iter()
        .filter(|l| l.contains(r#""type":"exposure""#) || l.contains(r#""type":"conversion""#))
        .count();
    assert_eq!(facts as usize, reportable - 5);
    let reports = [
        vec!["experiments", "report", "--format", "json"],
        vec![
            "experiments",
            "report",
            "--format",
            "json",
            "--since",
            "2027-03-02",
        ],
        vec![
            "experiments",
            "report",
            "--format",
            "csv",
            "--until",
            "2027-03-02T10:30:00Z",
        ],
        vec![
            "experiments",
            "report",
            "--format",
            "json",
            "--experiment",
            "e2",
        ],
        vec![
            "experiments",
            "report",
            "--format",
            "json",
            "--experiment",
            "e1",
            "--since",
            "2027-03-02T11:00:00Z",
        ],
        // Named by a skipped record only: unknown, from either.
        vec!["experiments", "report", "--experiment", "e3"],
    ];
    let run = |args: &[&str], source: &[&std::ffi::OsStr]| {
        let out = concierge().args(args).args(source).output().unwrap();
        (out.status.code(), out.stdout, out.stderr)
    };
    let same = |when: &str| {
        for args in &reports {
            let a = run(args, &store);
            let b = run(args, &folder);
            assert_eq!(a, b, "{when}: {args:?}");
        }
    };
    same("from the facts");
    let all = run_ok(&reports[0], &store);
    assert!(all.contains("\"e1\"") && all.contains("\"e2\""), "{all}");

    // Rows shipped before schema 4 have no fact: the report reads their lines.
    db.batch_execute(
        "ALTER TABLE concierge_record DISABLE TRIGGER USER;
         UPDATE concierge_record SET fact_time = NULL, arm = NULL, account = NULL, visitor = NULL,
                goal = NULL, control = NULL WHERE seq % 2 = 1;",
    )
    .await
    .unwrap();
    same("half of the rows without a fact");

    // A fact no line says is refused with a pointer to the verifier, not reported.
    db.batch_execute(
        "UPDATE concierge_record SET arm = 'both' WHERE seq = (SELECT min(seq) FROM concierge_record WHERE arm IS NOT NULL)",
    )
    .await
    .unwrap();
    let out = concierge()
        .args(["experiments", "report"])
        .args(&store)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has arm `both`, which no line says")
            && err.contains("audit verify --postgres"),
        "{err}"
    );
}

/// `/healthz/records` once it says `want` and that every record is shipped (for up to 10 s).
async fn records_health_saying(server: &concierge::app::Server, want: &str) -> (u16, String) {
    for _ in 0..200 {
        let (code, text) = admin(server, "/healthz/records").await;
        if text.contains(want) && text.contains("every record is in the record store") {
            return (code, text);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "/healthz/records never said {want:?}: {:?}",
        admin(server, "/healthz/records").await
    );
}

/// The cells of the Instances table's row for (`instance`, `stream`), as text (tags dropped).
fn table_row(page: &str, instance: &str, stream: &str) -> Vec<String> {
    let text = |cell: &str| {
        let mut out = String::new();
        let mut in_tag = false;
        for c in cell.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.trim().to_string()
    };
    page.split("<tr>")
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|c| text(c.split_once('>').map_or("", |(_, rest)| rest)))
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.len() == 8 && cells[0].starts_with(instance) && cells[2] == stream)
        .unwrap_or_else(|| panic!("no row for {instance} {stream}: {page}"))
}

/// The console's Instances page, with the token.
async fn instances_page(server: &concierge::app::Server) -> String {
    let auth = format!("Bearer {CONSOLE_TOKEN}");
    let (resp, body) = get(
        server.admin.expect("admin"),
        "/console/instances",
        &[("authorization", auth.as_str())],
    )
    .await;
    assert_eq!(resp.status(), 200);
    String::from_utf8_lossy(&body).into_owned()
}

/// An instance whose key the store does not trust says so where an operator looks — `/healthz/records` (503
/// for another key: its records are shipped but will not verify centrally), the metrics, the log — and the
/// console lists every instance the store knows with its key's state and newest record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_store_does_not_trust_is_a_health_state_and_the_console_lists_every_instance() {
    let pg = Postgres::start();
    let origin = Origin::start().await;
    // Someone registered another key for edge-7 before it first started.
    let keys = tempfile::tempdir().unwrap();
    let other = signing_key(&keys.path().join("other"));
    let out = pg.register("edge-7", &concierge::audit::keys::public_path(&other));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a_dir = tempfile::tempdir().unwrap();
    let a = audited_proxy(
        &origin,
        a_dir.path(),
        ACME,
        &format!(
            "{}{}",
            store_section(&pg, "edge-7"),
            console_section(a_dir.path())
        ),
    )
    .await;
    // edge-8 does not register itself, and nobody registered it.
    let b_dir = tempfile::tempdir().unwrap();
    let b = audited_proxy(
        &origin,
        b_dir.path(),
        ACME,
        &format!(
            "{}register = false\n{}",
            store_section(&pg, "edge-8"),
            console_section(b_dir.path())
        ),
    )
    .await;
    for server in [&a, &b] {
        for _ in 0..3 {
            let (resp, _) = get_from("127.0.10.5", server.listeners[0], "/landing", &[HTML]).await;
            assert_eq!(resp.status(), 200);
        }
    }
    let (code, text) = records_health_saying(&a, "key mismatch").await;
    assert_eq!(code, 503, "{text}");
    assert!(
        text.starts_with("key mismatch: the record store trusts another key for this instance"),
        "{text}"
    );
    assert!(
        text.contains(
            &concierge::audit::keys::PublicKey::load(&concierge::audit::keys::public_path(&other))
                .unwrap()
                .encode()
        ),
        "names the key it trusts: {text}"
    );
    let m = admin(&a, "/metrics").await.1;
    assert_eq!(
        metric_value(&m, "concierge_audit_ship_key_mismatch"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "concierge_audit_ship_key_registered"),
        Some(0.0)
    );
    let (code, text) = records_health_saying(&b, "not registered").await;
    assert_eq!(code, 200, "not registered is not yet wrong: {text}");
    assert!(
        text.contains("note: this instance's key is not registered in the record store"),
        "{text}"
    );
    let m = admin(&b, "/metrics").await.1;
    assert_eq!(
        metric_value(&m, "concierge_audit_ship_key_mismatch"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "concierge_audit_ship_key_registered"),
        Some(0.0)
    );

    // Central verification agrees with what the instances said of themselves.
    let verify = pg.verify();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(!verify.status.success(), "{said}");
    assert!(
        said.contains("edge-8") && said.contains("NOT VERIFIED"),
        "{said}"
    );

    // The console: every instance in the store, from either instance's console.
    let page = instances_page(&a).await;
    assert!(
        page.contains("needs attention") && page.contains("key mismatch"),
        "{page}"
    );
    let edge7 = table_row(&page, "edge-7", "audit");
    assert!(edge7[0].contains("(this one)"), "{edge7:?}");
    assert!(
        edge7[1].starts_with("another key"),
        "edge-7's key cell: {edge7:?}"
    );
    assert!(table_row(&page, "edge-8", "audit")[1].starts_with("not registered"));
    let page = instances_page(&b).await;
    assert!(page.contains(">healthy<"), "{page}");
    let edge7 = table_row(&page, "edge-7", "audit");
    assert!(
        edge7[1].starts_with("registered"),
        "edge-7's key is only wrong from edge-7's view: {edge7:?}"
    );
    // Each instance's newest record in the store: its local last seq and time, and the records no checkpoint
    // covers yet.
    let local = local_lines(&b_dir.path().join("log"), "audit");
    let (last, line) = local.last().unwrap();
    let time = serde_json::from_str::<serde_json::Value>(line).unwrap()["time"]
        .as_str()
        .unwrap()
        .to_string();
    let edge8 = table_row(&page, "edge-8", "audit");
    assert!(
        edge8[0].contains("(this one)") && edge8[1].starts_with("not registered"),
        "{edge8:?}"
    );
    assert_eq!(edge8[3], last.to_string(), "{edge8:?}");
    assert_eq!(edge8[4], time[..19].to_string() + "Z", "{edge8:?}");
    let after = match edge8[6].as_str() {
        "–" => last + 1,
        cp => last - cp.parse::<i64>().unwrap(),
    };
    assert_eq!(edge8[7], after.to_string(), "{edge8:?}");

    // edge-8 is registered while it runs; after the database's restart its shipper reconnects, looks again,
    // and the note is gone (without a reconnect it looks again within a minute).
    let out = pg.register(
        "edge-8",
        &concierge::audit::keys::public_path(&b_dir.path().join("keys/signing.key")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pg.stop();
    pg.restart();
    // The next page's record finds the old connection gone.
    let (resp, _) = get_from("127.0.10.5", b.listeners[0], "/landing", &[HTML]).await;
    assert_eq!(resp.status(), 200);
    let mut registered = false;
    for _ in 0..200 {
        let m = admin(&b, "/metrics").await.1;
        if metric_value(&m, "concierge_audit_ship_key_registered") == Some(1.0) {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        registered,
        "the shipper looked the key up again after reconnecting: {:?} {}",
        admin(&b, "/healthz/records").await,
        admin(&b, "/metrics").await.1
    );
    let (code, text) = records_health_saying(&b, "ok").await;
    assert_eq!(code, 200);
    assert!(!text.contains("note:"), "{text}");
    concierge::app::stop(a).await;
    concierge::app::stop(b).await;
}
