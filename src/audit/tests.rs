use super::keys::{PublicKey, SigningKey};
use super::writer::{Options, Writer};
use super::*;
use crate::consent::policy::Regime;
use std::path::Path;

pub fn record(id: &str) -> Record {
    Record::Consent(ConsentRecord {
        time: "2026-11-24T10:00:00.000Z".into(),
        consent_id: id.into(),
        action: "accept",
        choices: Choices {
            firmographic: true,
            personal: false,
        },
        banner_version: "1".into(),
        page: "/pricing".into(),
        jurisdiction: Jurisdiction {
            regime: Regime::OptIn,
            region: "DE".into(),
        },
        gpc: false,
        request_id: "r1".into(),
        language: Some("en".into()),
    })
}

fn key() -> (Arc<SigningKey>, PublicKey) {
    let (_, k) = SigningKey::generate().unwrap();
    let p = k.public();
    (Arc::new(k), p)
}

/// Write `n` records (consent ids c0, c1, …) with a checkpoint every `every`, then close the writer.
fn write_log(dir: &Path, key: &Arc<SigningKey>, n: u64, every: u64) {
    let mut o = Options::new(AUDIT_STREAM);
    o.checkpoint_records = every;
    let (w, t) = Writer::open(dir, key.clone(), o).unwrap();
    let mut acks = Vec::new();
    for i in 0..n {
        acks.push(w.submit_record(&record(&format!("c{i}"))).unwrap());
        if i % 7 == 6 {
            // Several batches, so checkpoints land between them.
            for a in acks.drain(..) {
                w.written_blocking(a, Duration::from_secs(10)).unwrap();
            }
        }
    }
    for a in acks {
        w.written_blocking(a, Duration::from_secs(10)).unwrap();
    }
    drop(w);
    t.join().unwrap();
}

fn seg(dir: &Path) -> std::path::PathBuf {
    super::chain::segments(&dir.join(AUDIT_STREAM)).unwrap()[0]
        .1
        .clone()
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn first_problem(dir: &Path, key: &PublicKey) -> Option<String> {
    let r = verify::verify(dir, key).unwrap();
    r.first_problem()
        .map(|(_, p)| format!("{}: {}", p.at, p.what))
}

#[test]
fn records_are_chained_acknowledged_in_order_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (k, public) = key();
    write_log(dir.path(), &k, 50, 20);
    let lines = lines_of(&seg(dir.path()));
    assert_eq!(lines.len(), 50);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["seq"], 0);
    assert_eq!(first["prev"], super::chain::GENESIS);
    assert_eq!(first["type"], "consent");
    assert_eq!(first["consent_id"], "c0");
    assert_eq!(first["jurisdiction"]["regime"], "opt-in");
    let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(second["prev"], super::chain::hash(lines[0].as_bytes()));
    let r = verify::verify(dir.path(), &public).unwrap();
    assert!(r.intact, "{r:?}");
    let s = &r.streams.iter().find(|s| s.stream == "audit").unwrap();
    assert_eq!(
        (s.records, s.last_seq, s.last_signed_seq),
        (50, Some(49), Some(49))
    );
    assert!(
        s.checkpoints >= 3,
        "every 20 records and at close: {}",
        s.checkpoints
    );

    // Reopening continues the chain.
    write_log(dir.path(), &k, 5, 20);
    let lines = lines_of(&seg(dir.path()));
    assert_eq!(lines.len(), 55);
    let v: serde_json::Value = serde_json::from_str(&lines[50]).unwrap();
    assert_eq!(v["seq"], 50);
    assert!(verify::verify(dir.path(), &public).unwrap().intact);
}

#[test]
fn every_kind_of_tampering_is_detected_and_located() {
    let (k, public) = key();
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), &k, 30, 10);
        let path = seg(dir.path());
        (dir, path)
    };

    // A flipped byte in a record's body.
    let (dir, path) = fresh();
    let mut lines = lines_of(&path);
    lines[12] = lines[12].replace("\"c12\"", "\"c99\"");
    write_lines(&path, &lines);
    let p = first_problem(dir.path(), &public).expect("edit detected");
    assert!(p.contains(":13:") && p.contains("seq 12"), "{p}");

    // The last record edited: only its checkpoint can tell.
    let (dir, path) = fresh();
    let mut lines = lines_of(&path);
    lines[29] = lines[29].replace("\"c29\"", "\"cXX\"");
    write_lines(&path, &lines);
    let p = first_problem(dir.path(), &public).expect("edit of the last record detected");
    assert!(p.contains("seq 29") && p.contains("checkpoint"), "{p}");

    // A deleted record.
    let (dir, path) = fresh();
    let mut lines = lines_of(&path);
    lines.remove(7);
    write_lines(&path, &lines);
    let p = first_problem(dir.path(), &public).expect("deletion detected");
    assert!(p.contains("seq 7") && p.contains("missing"), "{p}");

    // Two records swapped.
    let (dir, path) = fresh();
    let mut lines = lines_of(&path);
    lines.swap(4, 5);
    write_lines(&path, &lines);
    let p = first_problem(dir.path(), &public).expect("reorder detected");
    assert!(p.contains("seq 4") && p.contains("reordered"), "{p}");

    // Truncated: the last records cut off.
    let (dir, path) = fresh();
    let lines = lines_of(&path);
    write_lines(&path, &lines[..25]);
    let p = first_problem(dir.path(), &public).expect("truncation detected");
    assert!(p.contains("truncated") && p.contains("seq 24"), "{p}");

    // A checkpoint replaced by one signed with another key.
    let (dir, _) = fresh();
    let cp = dir
        .path()
        .join(AUDIT_STREAM)
        .join(super::chain::CHECKPOINTS);
    let mut cps = lines_of(&cp);
    let c: keys::Checkpoint = serde_json::from_str(&cps[0]).unwrap();
    let (_, other) = SigningKey::generate().unwrap();
    cps[0] = serde_json::to_string(&keys::Checkpoint::new(
        &other,
        c.instance.as_deref(),
        &c.stream,
        c.seq,
        &c.hash,
        c.time.clone(),
    ))
    .unwrap();
    write_lines(&cp, &cps);
    let p = first_problem(dir.path(), &public).expect("forged checkpoint detected");
    assert!(
        p.contains("checkpoints.jsonl:1") && p.contains("signature"),
        "{p}"
    );

    // A checkpoint edited to cover a different hash.
    let (dir, _) = fresh();
    let mut cps = lines_of(&cp_path(dir.path()));
    cps[1] = cps[1].replacen("\"hash\":\"", "\"hash\":\"00", 1);
    write_lines(&cp_path(dir.path()), &cps);
    assert!(first_problem(dir.path(), &public)
        .unwrap()
        .contains("signature"));

    // The whole log verified against another trusted key.
    let (dir, _) = fresh();
    let (_, stranger) = key();
    assert!(!verify::verify(dir.path(), &stranger).unwrap().intact);
}

fn cp_path(dir: &Path) -> std::path::PathBuf {
    dir.join(AUDIT_STREAM).join(super::chain::CHECKPOINTS)
}

#[test]
fn a_recomputed_chain_is_caught_by_the_signed_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (k, public) = key();
    write_log(dir.path(), &k, 30, 10);
    let path = seg(dir.path());
    let mut lines = lines_of(&path);
    // Rewrite record 15 and re-link everything after it, as someone without the signing key could.
    let mut prev = super::chain::hash(lines[14].as_bytes());
    for (i, line) in lines.iter_mut().enumerate().skip(15) {
        let body = line.split_once(",\"type\"").unwrap().1.to_string();
        let body = if i == 15 {
            body.replace("\"c15\"", "\"cZZ\"")
        } else {
            body
        };
        *line = String::from_utf8(super::chain::line(
            i as u64,
            &prev,
            format!("{{\"type\"{body}").as_bytes(),
        ))
        .unwrap();
        prev = super::chain::hash(line.as_bytes());
    }
    write_lines(&path, &lines);
    let r = verify::verify(dir.path(), &public).unwrap();
    assert!(!r.intact);
    let (_, p) = r.first_problem().unwrap();
    assert!(p.what.contains("signed checkpoint"), "{p:?}");
    // The first checkpoint at or after the edit names the record it covers.
    let first_cp_after = lines_of(&cp_path(dir.path()))
        .iter()
        .map(|l| serde_json::from_str::<keys::Checkpoint>(l).unwrap().seq)
        .find(|&s| s >= 15);
    assert_eq!(p.seq, first_cp_after);
}

#[test]
fn a_torn_last_line_is_set_aside_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (k, public) = key();
    write_log(dir.path(), &k, 10, 100);
    let path = seg(dir.path());
    let mut data = std::fs::read(&path).unwrap();
    data.extend_from_slice(b"{\"seq\":10,\"prev\":\"abc");
    std::fs::write(&path, &data).unwrap();
    let r = verify::verify(dir.path(), &public).unwrap();
    assert!(r.intact, "a torn tail is a note, not tampering: {r:?}");
    assert!(r.streams[0].notes.iter().any(|n| n.contains("unfinished")));
    write_log(dir.path(), &k, 3, 100);
    let lines = lines_of(&path);
    assert_eq!(lines.len(), 13);
    assert!(lines[10].starts_with("{\"seq\":10,"));
    let aside: Vec<_> = std::fs::read_dir(dir.path().join(AUDIT_STREAM))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        b"{\"seq\":10,\"prev\":\"abc"
    );
    let r = verify::verify(dir.path(), &public).unwrap();
    assert!(r.intact, "{r:?}");
    // A crash mid-checkpoint: the unfinished line is cut, later checkpoints start their own lines.
    let mut cps = std::fs::read(cp_path(dir.path())).unwrap();
    cps.extend_from_slice(b"{\"stream\":\"au");
    std::fs::write(cp_path(dir.path()), &cps).unwrap();
    write_log(dir.path(), &k, 3, 100);
    let r = verify::verify(dir.path(), &public).unwrap();
    assert!(r.intact, "{r:?}");
    assert!(!std::fs::read_to_string(cp_path(dir.path()))
        .unwrap()
        .contains("{\"stream\":\"au{"));
}

#[test]
fn rotation_and_retention_keep_the_chain_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let (k, public) = key();
    let mut o = Options::new(AUDIT_STREAM);
    o.segment_bytes = 2000; // a few records per segment
    o.checkpoint_records = 1_000_000;
    let (w, t) = Writer::open(dir.path(), k.clone(), o).unwrap();
    for i in 0..40 {
        w.submit_record(&record(&format!("c{i}")))
            .map(|a| w.written_blocking(a, Duration::from_secs(10)))
            .unwrap()
            .unwrap();
    }
    drop(w);
    t.join().unwrap();
    let segments = super::chain::segments(&dir.path().join(AUDIT_STREAM)).unwrap();
    assert!(segments.len() >= 5, "{} segments", segments.len());
    assert!(verify::verify(dir.path(), &public).unwrap().intact);
    // Retention removes the oldest segments; their sealing checkpoints vouch for the rest.
    for (_, p) in &segments[..2] {
        std::fs::remove_file(p).unwrap();
    }
    let r = verify::verify(dir.path(), &public).unwrap();
    assert!(r.intact, "{r:?}");
    assert!(r.streams[0].notes.iter().any(|n| n.contains("retention")));
    // Removing a segment in the middle is not retention.
    std::fs::remove_file(&segments[3].1).unwrap();
    let p = first_problem(dir.path(), &public).unwrap();
    assert!(p.contains("missing"), "{p}");
}

#[test]
fn retention_keeps_every_segment_the_record_store_does_not_hold_yet() {
    let dir = tempfile::tempdir().unwrap();
    let (k, _) = key();
    let write = |o: Options, n: usize| {
        let (w, t) = Writer::open(dir.path(), k.clone(), o).unwrap();
        for i in 0..n {
            w.submit_record(&record(&format!("c{i}")))
                .map(|a| w.written_blocking(a, Duration::from_secs(10)))
                .unwrap()
                .unwrap();
        }
        drop(w);
        t.join().unwrap();
    };
    let mut o = Options::new(AUDIT_STREAM);
    o.segment_bytes = 2000;
    write(o.clone(), 40);
    let before = super::chain::segments(&dir.path().join(AUDIT_STREAM)).unwrap();
    assert!(before.len() >= 5);
    // Everything is past retention, but the store holds only the records below the third segment's middle.
    let keep_from = before[2].0 + 1;
    std::thread::sleep(Duration::from_millis(20));
    o.retention = Duration::from_millis(1);
    o.keep_from = Some(Arc::new(std::sync::atomic::AtomicU64::new(keep_from)));
    write(o.clone(), 1);
    let after = super::chain::segments(&dir.path().join(AUDIT_STREAM)).unwrap();
    assert_eq!(
        after.first().map(|s| s.0),
        Some(before[2].0),
        "the segment holding seq {keep_from} and every later one stay: {after:?}"
    );
    // Once the store has everything, retention takes what is past it.
    std::thread::sleep(Duration::from_millis(20));
    o.keep_from = Some(Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)));
    write(o, 1);
    let last = super::chain::segments(&dir.path().join(AUDIT_STREAM)).unwrap();
    assert_eq!(last.len(), 1, "{last:?}");
}

#[test]
fn clients_are_pseudonymized() {
    let ip: IpAddr = "203.0.113.77".parse().unwrap();
    let other: IpAddr = "203.0.113.78".parse().unwrap();
    let h = Pseudonymizer::new(ClientMode::KeyedHash, Duration::from_secs(3600));
    let a = h.client(ip).unwrap();
    assert!(a.starts_with("h:") && a.len() == 18, "{a}");
    assert_eq!(h.client(ip).unwrap(), a, "stable within a key period");
    assert_ne!(h.client(other).unwrap(), a);
    // Not the address (a 16-hex-digit hash contains "203" by chance one time in ~300: the dotted form never).
    assert!(!a.contains("203.0.113"), "{a}");
    let rotated = Pseudonymizer::new(ClientMode::KeyedHash, Duration::ZERO);
    assert_ne!(
        rotated.client(ip),
        rotated.client(ip),
        "a new key every period"
    );
    let t = Pseudonymizer::new(ClientMode::Truncate, Duration::from_secs(1));
    assert_eq!(t.client(ip).unwrap(), "203.0.113.0/24");
    assert_eq!(
        t.client("2001:db8:1:2::5".parse().unwrap()).unwrap(),
        "2001:db8:1::/48"
    );
    assert_eq!(
        Pseudonymizer::new(ClientMode::Omit, Duration::ZERO).client(ip),
        None
    );
    // The cache of given pseudonyms is bounded and starting it over changes nothing a record shows.
    for i in 0..(16 * 1024 + 10) {
        let many = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000u32 + i));
        assert!(h.client(many).is_some());
    }
    assert_eq!(
        h.client(ip).unwrap(),
        a,
        "same key, same pseudonym, cached or not"
    );
}

#[test]
fn an_unusable_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let (k, _) = key();
    let err = Writer::open(&file.join("sub"), k, Options::new(AUDIT_STREAM))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cannot use"), "{err}");
}

#[test]
fn the_queue_is_bounded_and_a_refused_record_takes_no_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let (k, public) = key();
    let mut o = Options::new(AUDIT_STREAM);
    o.queue = 16;
    // The default batch (4096) is larger than this queue: a full queue must still end the window at once.
    o.commit_window = Duration::from_millis(100);
    let (w, t) = Writer::open(dir.path(), k, o).unwrap();
    // Submit far faster than the writer can fsync: the bound is hit, and every refusal leaves no gap.
    let mut accepted = Vec::new();
    let mut full = 0;
    let started = std::time::Instant::now();
    for i in 0..5000 {
        match w.submit_record(&record(&format!("c{i}"))) {
            Ok(a) => accepted.push((a, i)),
            Err(e) => {
                assert_eq!(e, writer::Refused::QueueFull);
                full += 1;
            }
        }
    }
    let took = started.elapsed();
    assert!(
        full > 0,
        "5000 records in {took:?} never filled a 16-record queue"
    );
    let seqs: Vec<u64> = accepted.iter().map(|(a, _)| a.seq).collect();
    assert_eq!(seqs, (0..accepted.len() as u64).collect::<Vec<_>>());
    let (last, _) = *accepted.last().unwrap();
    assert_eq!(
        w.written_blocking(last, Duration::from_secs(10)),
        Ok(last.seq)
    );
    drop(w);
    t.join().unwrap();
    let lines = lines_of(&seg(dir.path()));
    assert_eq!(lines.len(), accepted.len());
    // Each line holds the record that got its sequence number.
    for (n, (a, i)) in accepted.iter().enumerate().step_by(97) {
        assert!(lines[n].starts_with(&format!("{{\"seq\":{},", a.seq)));
        assert!(lines[n].contains(&format!("\"consent_id\":\"c{i}\"")));
    }
    assert!(verify::verify(dir.path(), &public).unwrap().intact);
}

#[test]
fn an_idle_writer_sleeps_between_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (k, _) = key();
    let mut o = Options::new(AUDIT_STREAM);
    o.checkpoint_interval = Duration::from_millis(50);
    let (w, t) = Writer::open(dir.path(), k, o).unwrap();
    let a = w.submit_record(&record("c0")).unwrap();
    w.written_blocking(a, Duration::from_secs(10)).unwrap();
    let before = w.wakeups();
    std::thread::sleep(Duration::from_millis(500));
    let woke = w.wakeups() - before;
    // One wake-up per checkpoint interval at most (~10); a writer that polled would wake hundreds of times.
    assert!(woke <= 30, "{woke} wake-ups in 500 ms");
    // The record was sealed by a checkpoint meanwhile.
    assert_eq!(
        writer::last_checkpoint(&dir.path().join(AUDIT_STREAM))
            .unwrap()
            .seq,
        0
    );
    drop(w);
    t.join().unwrap();
}

#[test]
fn waiting_for_a_record_in_async_code() {
    let dir = tempfile::tempdir().unwrap();
    let (k, _) = key();
    let (w, t) = Writer::open(dir.path(), k, Options::new(AUDIT_STREAM)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let gate = super::gate::Gate::new(Arc::new(w.clone()), None);
    let seqs = rt.block_on(async {
        let mut seqs = Vec::new();
        for i in 0..3 {
            let r = record(&format!("c{i}"));
            seqs.push(gate.durable(super::gate::Kind::Other, &r).await.unwrap());
        }
        seqs
    });
    assert_eq!(seqs, vec![0, 1, 2]);
    assert_eq!(
        lines_of(&seg(dir.path())).len(),
        3,
        "written before the ack"
    );
    // The discard sink (benchmarks) acknowledges everything at once and keeps nothing.
    let discard = super::gate::Gate::new(Arc::new(super::gate::DiscardSink), None);
    rt.block_on(async {
        assert!(discard
            .durable(super::gate::Kind::Other, &record("x"))
            .await
            .is_ok());
    });
    drop(gate);
    drop(w);
    t.join().unwrap();
}

#[test]
fn a_full_queue_ends_the_commit_window() {
    let dir = tempfile::tempdir().unwrap();
    let (k, _) = key();
    let mut o = Options::new(AUDIT_STREAM);
    // A queue smaller than the default batch, and a window far longer than the wait below: only "the queue
    // is full" can make the writer write before it.
    o.queue = 16;
    o.commit_window = Duration::from_secs(60);
    let (w, t) = Writer::open(dir.path(), k, o).unwrap();
    // A first record is written at once (nothing to share a commit with); the window then runs.
    let first = w.submit_record(&record("first")).unwrap();
    w.written_blocking(first, Duration::from_secs(10)).unwrap();
    let acks: Vec<_> = (0..16)
        .map(|i| w.submit_record(&record(&format!("c{i}"))).unwrap())
        .collect();
    assert_eq!(
        w.written_blocking(acks[15], Duration::from_secs(10)),
        Ok(16)
    );
    drop(w);
    t.join().unwrap();
}

/// Regression (issue 13, item 7): a genuine older checkpoint appended again at the end passed `verify`.
#[test]
fn a_replayed_checkpoint_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (k, public) = key();
    write_log(dir.path(), &k, 30, 10);
    let path = cp_path(dir.path());
    let mut cps = lines_of(&path);
    assert!(cps.len() >= 3, "{cps:?}");
    assert!(verify::verify(dir.path(), &public).unwrap().intact);
    cps.push(cps[0].clone());
    write_lines(&path, &cps);
    let problem = first_problem(dir.path(), &public).expect("the replay is found");
    assert!(
        problem.starts_with(&format!("checkpoints.jsonl:{}", cps.len()))
            && problem.contains("out of order"),
        "{problem}"
    );
    // Two checkpoints swapped.
    let mut cps = lines_of(&path);
    cps.pop();
    cps.swap(0, 1);
    write_lines(&path, &cps);
    let problem = first_problem(dir.path(), &public).expect("the swap is found");
    assert!(problem.starts_with("checkpoints.jsonl:2"), "{problem}");
}

/// Regression (issue 13, item 7): with `checkpoint_records = 5`, checkpoints fell every ~10 records (at the
/// end of whatever batch crossed the threshold).
#[test]
fn checkpoints_keep_the_configured_cadence_whatever_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (k, _) = key();
    let mut o = Options::new(AUDIT_STREAM);
    o.checkpoint_records = 5;
    o.commit_window = Duration::from_millis(50);
    let (w, t) = Writer::open(dir.path(), k, o).unwrap();
    // 23 records in one commit window: one batch.
    let acks: Vec<_> = (0..23)
        .map(|i| w.submit_record(&record(&format!("c{i}"))).unwrap())
        .collect();
    for a in acks {
        w.written_blocking(a, Duration::from_secs(10)).unwrap();
    }
    drop(w);
    t.join().unwrap();
    let seqs: Vec<u64> = lines_of(&cp_path(dir.path()))
        .iter()
        .map(|l| serde_json::from_str::<keys::Checkpoint>(l).unwrap().seq)
        .collect();
    assert_eq!(seqs, [4, 9, 14, 19, 22], "every 5 records, then the close");
}

/// Issue 13, item 6: only batches somebody waits for are fsynced at once; the rest lazily (within LAZY_SYNC),
/// and a durable ack resolves only after the fsync that covers it.
#[test]
fn only_waited_batches_are_fsynced_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (k, _) = key();
    let mut o = Options::new(AUDIT_STREAM);
    o.checkpoint_interval = Duration::from_secs(60);
    o.commit_window = Duration::from_millis(1);
    let (w, t) = Writer::open(dir.path(), k, o).unwrap();
    let acks: Vec<_> = (0..20)
        .map(|i| w.submit_record(&record(&format!("c{i}"))).unwrap())
        .collect();
    for a in acks {
        assert!(!a.durable);
        w.written_blocking(a, Duration::from_secs(10)).unwrap();
    }
    assert_eq!(w.syncs(), 0, "nobody waited: written, not fsynced yet");
    let a = w.submit_durable(&record("waited")).unwrap();
    assert!(a.durable);
    w.written_blocking(a, Duration::from_secs(10)).unwrap();
    assert_eq!(
        w.syncs(),
        1,
        "the waited batch, and everything before it, fsynced once"
    );
    // Lazily: an un-waited record is fsynced within LAZY_SYNC.
    let a = w.submit_record(&record("lazy")).unwrap();
    w.written_blocking(a, Duration::from_secs(10)).unwrap();
    let before = w.syncs();
    std::thread::sleep(super::writer::LAZY_SYNC + Duration::from_millis(300));
    assert_eq!(w.syncs(), before + 1);
    drop(w);
    t.join().unwrap();
}

/// Issue 13, item 6: the window spaces commits; it does not delay a record after a quiet spell (a durable
/// record's wait is then one write and fsync, not a window).
#[test]
fn a_record_after_a_quiet_spell_is_committed_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (k, _) = key();
    let mut o = Options::new(AUDIT_STREAM);
    o.commit_window = Duration::from_millis(800);
    let (w, t) = Writer::open(dir.path(), k, o).unwrap();
    let started = std::time::Instant::now();
    let a = w.submit_durable(&record("first")).unwrap();
    w.written_blocking(a, Duration::from_secs(10)).unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "written at once: {:?}",
        started.elapsed()
    );
    // Right after a commit, the next record waits for the window: it shares the next commit.
    let started = std::time::Instant::now();
    let b = w.submit_durable(&record("second")).unwrap();
    let c = w.submit_durable(&record("third")).unwrap();
    w.written_blocking(c, Duration::from_secs(10)).unwrap();
    w.written_blocking(b, Duration::from_secs(10)).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(w.syncs(), 2, "one fsync per commit");
    drop(w);
    t.join().unwrap();
}

#[test]
fn an_instance_id_is_made_once_kept_and_named_in_every_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let id = instance_id(dir.path(), None).unwrap();
    assert!(
        id.starts_with("i-") && id.len() == 18 && valid_instance(&id),
        "{id}"
    );
    assert_eq!(
        instance_id(dir.path(), None).unwrap(),
        id,
        "kept across restarts"
    );
    assert_eq!(
        instance_id(dir.path(), Some("eu-west-1a")).unwrap(),
        "eu-west-1a"
    );
    let other = tempfile::tempdir().unwrap();
    assert_ne!(
        instance_id(other.path(), None).unwrap(),
        id,
        "distinct per folder"
    );
    std::fs::write(dir.path().join(INSTANCE_FILE), "no spaces allowed\n").unwrap();
    assert!(instance_id(dir.path(), None).is_err());
    for bad in ["", "a b", "ä", &"x".repeat(65)] {
        assert!(!valid_instance(bad), "{bad:?}");
    }

    // Checkpoints name the instance, and the signature covers it.
    let (k, public) = key();
    let dir = tempfile::tempdir().unwrap();
    let mut o = Options::new(AUDIT_STREAM);
    o.checkpoint_records = 5;
    o.instance = Some("node-a".into());
    let (w, t) = Writer::open(dir.path(), k.clone(), o).unwrap();
    for i in 0..12 {
        let a = w.submit_record(&record(&format!("c{i}"))).unwrap();
        w.written_blocking(a, Duration::from_secs(10)).unwrap();
    }
    drop(w);
    t.join().unwrap();
    let cp = cp_path(dir.path());
    let mut cps = lines_of(&cp);
    assert!(cps.len() >= 2);
    let first: keys::Checkpoint = serde_json::from_str(&cps[0]).unwrap();
    assert_eq!(first.instance.as_deref(), Some("node-a"));
    let report = verify::verify(dir.path(), &public).unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!(report.streams[0].instance.as_deref(), Some("node-a"));
    // Renaming the instance in a checkpoint breaks its signature.
    let renamed = cps[0].replace("\"node-a\"", "\"node-b\"");
    let saved = cps[0].clone();
    cps[0] = renamed;
    write_lines(&cp, &cps);
    assert!(first_problem(dir.path(), &public)
        .unwrap()
        .contains("signature"));
    // A genuine checkpoint of another instance (same key) copied into this chain is named as such.
    let second: keys::Checkpoint = serde_json::from_str(&cps[1]).unwrap();
    cps[0] = saved;
    cps[1] = serde_json::to_string(&keys::Checkpoint::new(
        &k,
        Some("node-b"),
        &second.stream,
        second.seq,
        &second.hash,
        second.time.clone(),
    ))
    .unwrap();
    write_lines(&cp, &cps);
    let p = first_problem(dir.path(), &public).unwrap();
    assert!(
        p.contains("instance `node-b`") && p.contains("`node-a`"),
        "{p}"
    );
    // A checkpoint from before instances were named (version 1) still verifies.
    let old = keys::Checkpoint::new(&k, None, "audit", 4, &first.hash, first.time.clone());
    assert!(old.verify(&public));
    assert!(!serde_json::to_string(&old).unwrap().contains("instance"));
}

proptest::proptest! {
    /// Stats over records read in parts and merged (the store reads over several connections at once) are
    /// the stats over them read in one go.
    #[test]
    fn stats_read_in_parts_and_merged_are_the_stats_read_at_once(
        records in proptest::collection::vec((0u8..4, 0u8..3, 0u8..5, 0u8..3), 0..40),
    ) {
        use crate::audit::query::Stats;
        let values: Vec<serde_json::Value> = records
            .iter()
            .map(|&(kind, region, minute, n)| match kind {
                0 => serde_json::json!({"type": "decision", "time": format!("2027-01-01T10:0{minute}:00.000Z"),
                    "jurisdiction": {"region": (["US-CA", "DE", "FR"][region as usize]), "regime": "opt-in"},
                    "permitted": ["anonymous"], "reasons": ["r", format!("r{n}")], "outcome": "personalized",
                    "lookup": "matched"}),
                1 => serde_json::json!({"type": "consent", "time": format!("2027-01-02T10:0{minute}:00.000Z"),
                    "action": (["accept", "reject", "withdraw"][n as usize])}),
                2 => serde_json::json!({"type": "counts", "time": format!("2027-01-03T10:0{minute}:00.000Z"),
                    "counts": [{"decisions": n, "signal": "gpc", "lookup": "not_run", "region": "DE", "regime": "opt-in"}]}),
                _ => serde_json::json!({"type": "exposure", "time": format!("2026-12-31T10:0{minute}:00.000Z")}),
            })
            .collect();
        let mut whole = Stats::default();
        values.iter().for_each(|v| whole.add(v));
        let mut a = Stats::default();
        let mut b = Stats::default();
        for (i, v) in values.iter().enumerate() {
            if i % 3 == 1 { b.add(v) } else { a.add(v) }
        }
        b.merge(a);
        proptest::prop_assert_eq!(
            serde_json::to_string(&b).unwrap_or_default(),
            serde_json::to_string(&whole).unwrap_or_default()
        );
    }
}

/// A JSON value as text, of the kinds a hostile line may put where the stats look: strings (with escapes),
/// numbers of every sort, null, booleans, arrays and objects (of the stats' own field names, keys repeated).
fn hostile_json() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        prop_oneof![
            Just("decision"),
            Just("counts"),
            Just("consent"),
            Just("exposure"),
            Just("personal"),
            Just("firmographic"),
            Just("anonymous"),
            Just("DE"),
            Just("opt-in"),
            Just("gpc"),
            Just("ran"),
            Just("2027-01-01T10:00:00.000Z"),
            Just("2027-01-02T00:00:00.000Z"),
            Just("a\\\"b"),
            Just("\\u00e9t\\u00e9"),
            // Escapes a `Value` refuses (lone surrogates) and one it takes (a pair).
            Just("\\ud800"),
            Just("\\udc00"),
            Just("\\ud800\\u0041"),
            Just("\\ud83d\\ude00"),
            Just("")
        ]
        .prop_map(|s| format!("\"{s}\"")),
        prop_oneof![
            Just("3".to_string()),
            Just("-1".to_string()),
            Just("2.0".to_string()),
            Just("1e3".to_string()),
            Just("18446744073709551616".to_string()),
            // Out of range for a `Value` (refused), and an underflow it takes as 0.
            Just("1e400".to_string()),
            Just("-1e400".to_string()),
            Just("9".repeat(400)),
            Just("1e-400".to_string()),
            Just("null".to_string()),
            Just("true".to_string()),
            // Around serde_json's recursion limit (128).
            (118usize..135).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
        ],
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let key = prop_oneof![
            Just("time"),
            Just("type"),
            Just("region"),
            Just("regime"),
            Just("decisions"),
            Just("signal"),
            Just("lookup"),
            Just("other"),
            Just("r\\u0065gion")
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec((key, inner), 0..4).prop_map(|kv| {
                let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

proptest::proptest! {
    /// `Stats::add_line` (the borrowed, typed read) gives the stats of parsing each line as a `Value`, checking
    /// the filter and `Stats::add` — for well-formed records and for lines whose fields are of any type, repeated,
    /// arrays for objects, or not JSON at all; with and without a filter.
    #[test]
    fn stats_from_lines_read_typed_are_the_stats_read_as_values(
        lines in proptest::collection::vec(
            (
                proptest::collection::vec(
                    (
                        proptest::prop_oneof![
                            proptest::strategy::Just("time"), proptest::strategy::Just("type"),
                            proptest::strategy::Just("jurisdiction"), proptest::strategy::Just("permitted"),
                            proptest::strategy::Just("outcome"), proptest::strategy::Just("lookup"),
                            proptest::strategy::Just("reasons"), proptest::strategy::Just("counts"),
                            proptest::strategy::Just("action"), proptest::strategy::Just("company"),
                            proptest::strategy::Just("\\u0074ime"), proptest::strategy::Just("typ\\u0065"),
                        ],
                        hostile_json(),
                    ),
                    0..8,
                ),
                0u8..10,
            ),
            0..30,
        ),
        filter in 0u8..4,
    ) {
        use crate::audit::query::{Filter, Stats};
        let f = match filter {
            0 => Filter::default(),
            1 => Filter { since: Some("2027-01-01T10:00:00.000Z".into()), until: Some("2027-01-02T00:00:00.000Z".into()), ..Filter::default() },
            2 => Filter { kind: Some("decision".into()), ..Filter::default() },
            _ => Filter { decision: Some("personal".into()), ..Filter::default() },
        };
        let mut typed = Stats::default();
        let mut values = Stats::default();
        for (fields, shape) in &lines {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            // Mostly objects; sometimes an array, a bare value, or not JSON (a cut line).
            let line = match shape {
                0 => format!("[{}]", fields.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(",")),
                1 => fields.first().map(|(_, v)| v.clone()).unwrap_or_default(),
                2 => format!("{{{}", body.join(",")),
                _ => format!("{{{}}}", body.join(",")),
            };
            let mut line = line.into_bytes();
            // Sometimes a byte that is not UTF-8 inside the first string.
            if *shape == 4 {
                if let Some(at) = line.iter().position(|&b| b == b'"') {
                    line.insert(at + 1, 0xff);
                }
            }
            typed.add_line(&line, &f);
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) {
                if f.matches(&v) {
                    values.add(&v);
                }
            }
        }
        proptest::prop_assert_eq!(
            serde_json::to_string(&typed).unwrap_or_default(),
            serde_json::to_string(&values).unwrap_or_default()
        );
    }
}

proptest::proptest! {
    /// A well-formed record (so the typed read takes it) with one value put under any key, its own or one it
    /// does not count, at the top or inside its jurisdiction or a count — the stats are the `Value` path's.
    #[test]
    fn stats_of_records_with_one_hostile_value_are_the_stats_read_as_values(
        base in 0usize..3,
        place in 0usize..3,
        key in proptest::prop_oneof![
            proptest::strategy::Just("seq"), proptest::strategy::Just("page"), proptest::strategy::Just("time"),
            proptest::strategy::Just("type"), proptest::strategy::Just("outcome"), proptest::strategy::Just("region"),
            proptest::strategy::Just("decisions"), proptest::strategy::Just("action"), proptest::strategy::Just("reasons"),
        ],
        value in hostile_json(),
        not_utf8 in proptest::bool::ANY,
    ) {
        use crate::audit::query::{Filter, Stats};
        let records = [
            r#"{"type":"decision","time":"2027-01-01T10:00:00.000Z","jurisdiction":{"region":"DE","regime":"opt-in"INNER},"permitted":["anonymous"],"reasons":["r"],"outcome":"personalized","lookup":"matched"OUTER}"#,
            r#"{"type":"counts","time":"2027-01-01T10:01:00.000Z","counts":[{"decisions":7,"signal":"gpc","lookup":"not_run","region":"DE","regime":"opt-in"INNER}]OUTER}"#,
            r#"{"type":"consent","time":"2027-01-01T09:00:00.000Z","action":"accept"OUTER}"#,
        ];
        let extra = format!(",\"{key}\":{value}");
        let line = match place {
            0 => records[base].replace("OUTER", &extra).replace("INNER", ""),
            1 => records[base].replace("INNER", &extra).replace("OUTER", ""),
            _ => format!(r#"{{"{key}":{value},{}"#, &records[base].replace("INNER", "").replace("OUTER", "")[1..]),
        };
        let mut bytes = line.clone().into_bytes();
        // A byte that is not UTF-8 inside the hostile value's first string, if it has one.
        if not_utf8 {
            if let Some(at) = line.find(value.as_str()).and_then(|at| value.find('"').map(|q| at + q)) {
                bytes.insert(at + 1, 0xff);
            }
        }
        let mut typed = Stats::default();
        typed.add_line(&bytes, &Filter::default());
        let mut values = Stats::default();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
            values.add(&v);
        }
        proptest::prop_assert_eq!(
            serde_json::to_string(&typed).unwrap_or_default(),
            serde_json::to_string(&values).unwrap_or_default(),
            "{}", String::from_utf8_lossy(&bytes)
        );
    }
}

/// Well-formed records take the typed path and count as the `Value` path counts them (the proptest's hostile
/// lines mostly fall back; these do not).
#[test]
fn stats_of_usual_records_read_typed() {
    use crate::audit::query::{Filter, Stats};
    let lines = [
        r#"{"seq":0,"type":"decision","time":"2027-01-01T10:00:00.000Z","jurisdiction":{"region":"DE","regime":"opt-in"},"permitted":["anonymous","firmographic"],"reasons":["consent:first-party","caf\u00e9"],"outcome":"personalized","lookup":"matched"}"#,
        r#"{"seq":1,"type":"counts","time":"2027-01-01T10:01:00.000Z","counts":[{"decisions":7,"signal":"gpc","lookup":"not_run","region":"US-CA","regime":"opt-out"}]}"#,
        r#"{"seq":2,"type":"consent","time":"2027-01-01T09:00:00.000Z","action":"accept"}"#,
        r#"{"seq":3,"type":"decision","time":"2027-01-01T11:00:00.000Z","jurisdiction":null,"permitted":[]}"#,
    ];
    let mut typed = Stats::default();
    let mut values = Stats::default();
    for line in lines {
        typed.add_line(line.as_bytes(), &Filter::default());
        values.add(&serde_json::from_str(line).unwrap());
    }
    assert_eq!(typed.decisions, 2);
    assert_eq!(typed.counted_decisions, 7);
    assert_eq!(typed.by_reason.get("café"), Some(&1));
    assert_eq!(typed.by_jurisdiction.get("? ?"), Some(&1));
    // The counting both paths share, pinned by value (the proptests only compare the paths).
    assert_eq!(typed.by_jurisdiction.get("DE opt-in"), Some(&1));
    assert_eq!(typed.by_highest_tier.get("firmographic"), Some(&1));
    assert_eq!(typed.by_highest_tier.get("none"), Some(&1));
    assert_eq!(typed.by_outcome.get("?"), Some(&1));
    assert_eq!(typed.consent_by_action.get("accept"), Some(&1));
    assert_eq!(
        typed.counted_by_signal_and_lookup.get("gpc lookup:not_run"),
        Some(&7)
    );
    assert_eq!(typed.counted_by_jurisdiction.get("US-CA opt-out"), Some(&7));
    assert_eq!(typed.last_time.as_deref(), Some("2027-01-01T11:00:00.000Z"));
    assert_eq!(
        typed.first_time.as_deref(),
        Some("2027-01-01T09:00:00.000Z")
    );
    assert_eq!(
        serde_json::to_string(&typed).unwrap(),
        serde_json::to_string(&values).unwrap()
    );
}

/// Lines a `Value` refuses in a field the stats do not read count nothing, as before the typed read (a
/// derived struct skips such fields unchecked: these four counted as a consent choice).
#[test]
fn stats_skip_what_a_value_refuses_even_in_fields_they_do_not_read() {
    use crate::audit::query::{Filter, Stats};
    let mut lines: Vec<Vec<u8>> = vec![
        br#"{"type":"consent","action":"accept","page":"\ud800"}"#.to_vec(),
        br#"{"type":"consent","action":"accept","seq":1e400}"#.to_vec(),
        format!(
            r#"{{"type":"consent","action":"accept","x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        )
        .into_bytes(),
        br#"{"type":"counts","counts":[{"decisions":5,"x":1e400}]}"#.to_vec(),
    ];
    let mut bad = br#"{"type":"consent","action":"accept","page":"x"}"#.to_vec();
    bad.insert(bad.len() - 3, 0xff);
    lines.push(bad);
    for line in &lines {
        assert!(serde_json::from_slice::<serde_json::Value>(line).is_err());
        let mut stats = Stats::default();
        stats.add_line(line, &Filter::default());
        assert_eq!(
            (stats.consent_records, stats.counted_decisions),
            (0, 0),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}
