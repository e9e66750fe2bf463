//! The PostgreSQL record store (issue 19) against a real server started by the test: the schema applied by
//! `concierge audit migrate` (once, versioned), rows append-only, a newer schema refused, the password from a
//! file.

use crate::support::*;

fn migrate(pg: &Postgres, extra: &[&str]) -> std::process::Output {
    concierge()
        .args(["audit", "migrate", "--postgres", &pg.url()])
        .args(extra)
        .env_remove(concierge::postgres::PASSWORD_ENV)
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_schema_is_applied_once_and_rows_are_append_only() {
    let pg = Postgres::start();
    let pw = pg.password_file();
    let pw = pw.to_str().unwrap();
    // Without the password the server refuses, and the error says so without leaking anything.
    let out = migrate(&pg, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("concierge@127.0.0.1"), "{err}");
    // With it: version 0 → 4 (every migration in one go), then up to date.
    let out = migrate(&pg, &["--password-file", pw]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("schema version 0 → 4"), "{text}");
    let out = migrate(&pg, &["--password-file", pw]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("up to date (version 4)"), "{text}");
    // The password may come from the environment instead.
    let out = concierge()
        .args(["audit", "migrate", "--postgres", &pg.url()])
        .env(concierge::postgres::PASSWORD_ENV, &pg.password)
        .output()
        .unwrap();
    assert!(out.status.success());

    let db = pg.client().await;
    let part: String = db
        .query_one("SELECT concierge_partition('2027-01-15T10:00:00Z')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(part, "concierge_record_2027_01");
    let insert =
        "INSERT INTO concierge_record (instance, stream, seq, time, type, line, hash, prev) \
                  VALUES ('i-1', 'audit', 0, '2027-01-15T10:00:00Z', 'decision', '{}', 'h', 'p') \
                  ON CONFLICT DO NOTHING";
    assert_eq!(db.execute(insert, &[]).await.unwrap(), 1);
    assert_eq!(
        db.execute(insert, &[]).await.unwrap(),
        0,
        "a resend is harmless"
    );
    db.batch_execute(
        "INSERT INTO concierge_checkpoint (instance, stream, seq, line) VALUES ('i-1', 'audit', 0, '{}')",
    )
    .await
    .unwrap();
    for refused in [
        "UPDATE concierge_record SET type = 'consent'",
        "DELETE FROM concierge_record",
        "TRUNCATE concierge_record",
        "TRUNCATE concierge_record_2027_01",
        "TRUNCATE concierge_record_default",
        "UPDATE concierge_checkpoint SET line = ''",
        "TRUNCATE concierge_checkpoint",
    ] {
        let e = db.batch_execute(refused).await.expect_err(refused);
        let msg = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default();
        assert!(msg.contains("append-only"), "{refused}: {msg}");
    }
    let n: i64 = db
        .query_one("SELECT count(*) FROM concierge_record", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "nothing was changed");
    // Retention drops a whole partition.
    db.batch_execute("DROP TABLE concierge_record_2027_01")
        .await
        .unwrap();

    // A database migrated by a newer Concierge is refused.
    db.batch_execute("INSERT INTO concierge_schema (version, what) VALUES (99, 'from the future')")
        .await
        .unwrap();
    let out = migrate(&pg, &["--password-file", pw]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("version 99, newer"), "{err}");
}

#[tokio::test]
async fn an_instance_key_is_registered_once_and_never_replaced() {
    let pg = Postgres::start();
    let keys = tempfile::tempdir().unwrap();
    let a = signing_key(&keys.path().join("a"));
    let b = signing_key(&keys.path().join("b"));
    let pub_a = concierge::audit::keys::public_path(&a);
    let register = |key: &std::path::Path, instance: &str| pg.register(instance, key);
    let out = register(&pub_a, "web-1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("instance web-1 registered"));
    let out = register(&pub_a, "web-1");
    assert!(String::from_utf8_lossy(&out.stdout).contains("already registered"));
    // Another key for the same instance: refused, the first one stays.
    let out = register(&b, "web-1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("registered with another key"), "{err}");
    let out = register(&pub_a, "not an id");
    assert_eq!(out.status.code(), Some(2));
    let db = pg.client().await;
    let rows = db
        .query("SELECT instance, public_key FROM concierge_instance", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let expected = concierge::audit::keys::PublicKey::load(&pub_a)
        .unwrap()
        .encode();
    assert_eq!(rows[0].get::<_, String>(1), expected);
}

#[tokio::test]
async fn shipping_sends_every_local_record_once_in_order_and_a_resend_is_harmless() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let key = signing_key(&dir.path().join("keys"));
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(log.join("instance"), "web-1\n").unwrap();
    let generate = |n: u64| {
        let out = concierge()
            .args(["audit", "generate"])
            .arg(&log)
            .arg("--key")
            .arg(&key)
            .args(["--count", &n.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ship = || {
        let out = concierge()
            .args(["audit", "ship"])
            .arg(&log)
            .args(["--postgres", &pg.url(), "--batch", "300"])
            .arg("--password-file")
            .arg(pg.password_file())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    generate(1200);
    let text = ship();
    assert!(text.contains("web-1/audit: 1200 record(s)"), "{text}");
    // Again: nothing new, nothing twice.
    let text = ship();
    assert!(
        text.contains("web-1/audit: 0 record(s), 0 checkpoint(s)"),
        "{text}"
    );
    // The log grows (the chain continues); only the new records go.
    generate(700);
    let text = ship();
    assert!(text.contains("web-1/audit: 700 record(s)"), "{text}");

    // The database holds every local line exactly, in sequence, and every checkpoint.
    let db = pg.client().await;
    let rows = db
        .query(
            "SELECT seq, line, hash FROM concierge_record WHERE instance = 'web-1' AND stream = 'audit' ORDER BY seq",
            &[],
        )
        .await
        .unwrap();
    let mut local = Vec::new();
    concierge::audit::query::for_each(&log.join("audit"), |line, _| {
        local.push(String::from_utf8(line.to_vec()).unwrap())
    })
    .unwrap();
    assert_eq!(rows.len(), 1900);
    assert_eq!(local.len(), 1900);
    for (i, (row, line)) in rows.iter().zip(&local).enumerate() {
        assert_eq!(row.get::<_, i64>(0), i as i64);
        assert_eq!(&row.get::<_, String>(1), line, "seq {i} as written");
        assert_eq!(
            row.get::<_, String>(2),
            ring::digest::digest(&ring::digest::SHA256, line.as_bytes())
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
    }
    let cps: i64 = db
        .query_one(
            "SELECT count(*) FROM concierge_checkpoint WHERE instance = 'web-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let local_cps = std::fs::read_to_string(log.join("audit/checkpoints.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(cps as usize, local_cps);
    assert!(cps >= 3);
    // Rows live in their month's partition.
    let month: String = db
        .query_one(
            "SELECT tableoid::regclass::text FROM concierge_record WHERE seq = 0 AND instance = 'web-1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(month.starts_with("concierge_record_2"), "{month}");
}

#[tokio::test]
async fn central_verification_finds_rows_edited_deleted_swapped_or_forged() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let key = signing_key(&dir.path().join("keys"));
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(log.join("instance"), "web-2\n").unwrap();
    let out = concierge()
        .args(["audit", "generate"])
        .arg(&log)
        .arg("--key")
        .arg(&key)
        .args(["--count", "1100"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let pw = pg.password_file();
    let run = |args: &[&str]| {
        concierge()
            .args(args)
            .args(["--postgres", &pg.url()])
            .arg("--password-file")
            .arg(&pw)
            .output()
            .unwrap()
    };
    let ship = run(&["audit", "ship", log.to_str().unwrap()]);
    assert!(
        ship.status.success(),
        "{}",
        String::from_utf8_lossy(&ship.stderr)
    );
    let verify = || {
        let out = run(&["audit", "verify"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // Not registered: not verified (the database's own word about a key is not trusted).
    let (code, text) = verify();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("instance web-2: NOT VERIFIED"), "{text}");
    let public = concierge::audit::keys::public_path(&key);
    let reg = run(&[
        "audit",
        "register",
        "--instance",
        "web-2",
        "--public-key",
        public.to_str().unwrap(),
    ]);
    assert!(reg.status.success());
    let (code, text) = verify();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("instance web-2:") && text.contains("intact"),
        "{text}"
    );

    // A DBA with the owner's rights gets past the append-only triggers; the verifier still sees it.
    let db = pg.client().await;
    db.batch_execute("ALTER TABLE concierge_record DISABLE TRIGGER USER; ALTER TABLE concierge_checkpoint DISABLE TRIGGER USER")
        .await
        .unwrap();
    // Each tampering inside a transaction rolled back afterwards, so the next starts from the intact rows.
    for (what, sql, says) in [
        (
            "an edited row",
            "UPDATE concierge_record SET line = replace(line, 'gen-500', 'gen-501') WHERE seq = 500",
            "seq 500",
        ),
        ("a deleted row", "DELETE FROM concierge_record WHERE seq = 321", "seq 32"),
        (
            "two rows swapped",
            "UPDATE concierge_record SET seq = -1 WHERE seq = 700; UPDATE concierge_record SET seq = 700 WHERE seq = 701; \
             UPDATE concierge_record SET seq = 701 WHERE seq = -1",
            "seq 70",
        ),
        (
            "a forged checkpoint",
            "UPDATE concierge_checkpoint SET line = replace(line, '\"sig\":\"', '\"sig\":\"AA') WHERE seq = (SELECT min(seq) FROM concierge_checkpoint)",
            "signature",
        ),
        (
            "a column that disagrees with its line",
            "UPDATE concierge_record SET hash = repeat('0', 64) WHERE seq = 42",
            "does not match its line",
        ),
        (
            "a search column that disagrees with its line",
            "UPDATE concierge_record SET type = 'decision' WHERE seq = (SELECT min(seq) FROM concierge_record WHERE type = 'exposure')",
            "the row's type column does not match its line",
        ),
        (
            // The experiment report reads these columns (schema 4), not the line.
            "a report's fact that disagrees with its line",
            "UPDATE concierge_record SET arm = 'treatment' WHERE seq = (SELECT min(seq) FROM concierge_record WHERE arm = 'control')",
            "the row's fact (fact_time, arm, account, visitor, goal or control) column does not match its line",
        ),
    ] {
        db.batch_execute(&format!("BEGIN; {sql}")).await.unwrap();
        // Verification reads through its own connection: commit, check, then put the rows back by hand.
        db.batch_execute("COMMIT").await.unwrap();
        let (code, text) = verify();
        assert_eq!(code, Some(1), "{what}: {text}");
        assert!(text.contains("TAMPERED: first bad record of instance web-2"), "{what}: {text}");
        assert!(text.contains(says), "{what} names where: {text}");
        // Restore: re-ship from the intact local files after removing every row.
        db.batch_execute("DELETE FROM concierge_record; DELETE FROM concierge_checkpoint")
            .await
            .unwrap();
        let ship = run(&["audit", "ship", log.to_str().unwrap()]);
        assert!(ship.status.success());
        let (code, text) = verify();
        assert_eq!(code, Some(0), "restored after {what}: {text}");
    }
}

#[test]
fn a_bad_postgres_section_is_a_config_error() {
    for (section, says) in [
        (
            "[audit.postgres]\npassword_file = \"pw\"\n",
            "audit.postgres.url",
        ),
        (
            "[audit.postgres]\nurl = \"mysql://x\"\n",
            "not a PostgreSQL URL",
        ),
        (
            "[audit.postgres]\nurl = \"postgres://a@b/c\"\nport = 1\n",
            "port",
        ),
        (
            "[audit.postgres]\nurl = \"postgres://a@b/c\"\nship_connections = 0\n",
            "audit.postgres.ship_connections: 0 is not between 1 and 8",
        ),
    ] {
        let toml = format!("[upstream]\nurl = \"http://127.0.0.1:1\"\n{section}");
        let err = concierge::config::Settings::from_toml(&toml, &Default::default())
            .err()
            .unwrap_or_else(|| panic!("{section} is refused"))
            .to_string();
        assert!(err.contains(says), "{section}: {err}");
    }
    let ok = "[upstream]\nurl = \"http://127.0.0.1:1\"\n[audit.postgres]\nurl = \"postgres://shipper@db.internal:5432/records\"\npassword_file = \"pw\"\n";
    let s = concierge::config::Settings::from_toml(ok, &Default::default()).unwrap();
    assert!(s
        .audit
        .postgres
        .unwrap()
        .password_file
        .unwrap()
        .ends_with("pw"));
}

#[tokio::test]
async fn retention_drops_a_month_of_rows_and_the_rest_still_verifies() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let key = signing_key(&dir.path().join("keys"));
    let log = dir.path().join("log");
    std::fs::create_dir_all(&log).unwrap();
    std::fs::write(log.join("instance"), "edge-r\n").unwrap();
    // Two months of records, a checkpoint every 10: the last of January's is signed.
    let mut o = concierge::audit::writer::Options::new("audit");
    o.checkpoint_records = 10;
    o.instance = Some("edge-r".into());
    let signing = std::sync::Arc::new(concierge::audit::keys::SigningKey::load(&key).unwrap());
    let (w, t) = concierge::audit::writer::Writer::open(&log, signing, o).unwrap();
    for i in 0..60 {
        let month = if i < 30 { "2026-01" } else { "2026-02" };
        let record = serde_json::json!({
            "type": "decision",
            "time": format!("{month}-15T10:00:{:02}.000Z", i % 30),
            "request_id": format!("r{i}"),
            "outcome": "personalized",
        });
        let ack = w.submit_durable(&record).unwrap();
        w.written_blocking(ack, std::time::Duration::from_secs(10))
            .unwrap();
    }
    drop(w);
    t.join().unwrap();
    let run = |args: &[&str]| {
        concierge()
            .args(args)
            .args(["--postgres", &pg.url(), "--password-file"])
            .arg(pg.password_file())
            .output()
            .unwrap()
    };
    assert!(run(&["audit", "ship", log.to_str().unwrap()])
        .status
        .success());
    let pub_key = concierge::audit::keys::public_path(&key);
    let out = run(&[
        "audit",
        "register",
        "--instance",
        "edge-r",
        "--public-key",
        pub_key.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Retention in the store: January's partition is dropped whole.
    let db = pg.client().await;
    db.batch_execute("DROP TABLE concierge_record_2026_01")
        .await
        .unwrap();
    let out = run(&["audit", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("seq 30..=59"), "{text}");
    assert!(
        text.contains("before seq 30 were removed (retention)"),
        "{text}"
    );
}
