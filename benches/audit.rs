//! Audit writer throughput (issue 6): decision records of realistic size submitted from several threads to one
//! writer (fsync per batch: group commit), all acknowledged; and the cost a request pays to build, serialize
//! and queue its record. The log lives on the real disk (a temp dir under the OS temp path), not tmpfs.
//! Run with `cargo bench --bench audit`; results in BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;

use concierge::audit::keys::SigningKey;
use concierge::audit::writer::{Fsync, Options, Writer};
use concierge::audit::{DecisionRecord, Record, SignalsSummary, TcfSummary};
use concierge::consent::policy::{Jurisdiction, Regime};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn record(i: u64) -> Record {
    Record::Decision(Box::new(DecisionRecord {
        time: "2026-11-25T10:00:00.000Z".into(),
        request_id: format!("{i:032x}"),
        client: Some("h:5f0e3a9d21c4b7e8".into()),
        page: "/pricing".into(),
        jurisdiction: Jurisdiction {
            regime: Regime::OptOut,
            region: "US-CA".into(),
        },
        signals: SignalsSummary {
            tcf: Some(TcfSummary {
                valid: true,
                cmp: Some(7),
                purposes: vec![1, 5, 6],
            }),
            ..SignalsSummary::default()
        },
        consent_id: None,
        permitted: vec!["anonymous", "firmographic", "personal"],
        reasons: vec!["opt-out region US-CA: permitted unless withdrawn".into()],
        banner: false,
        lookup: "matched",
        company: Some("acme.example".into()),
        rules: vec!["acme.example/hero".into()],
        rules_version: "c1a4f00d".into(),
        outcome: "personalized",
        experiments: Vec::new(),
    }))
}

fn bench(c: &mut Criterion) {
    let (_, key) = SigningKey::generate().expect("key");
    let key = Arc::new(key);
    let base = std::env::temp_dir().join(format!("concierge-audit-bench-{}", std::process::id()));
    let mut g = c.benchmark_group("audit");
    const N: u64 = 100_000;
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    for (label, fsync) in [
        ("fsync_per_batch", Fsync::Batch),
        (
            "fsync_100ms",
            Fsync::Interval(std::time::Duration::from_millis(100)),
        ),
    ] {
        let dir = base.join(label);
        let mut o = Options::new("audit");
        o.fsync = fsync;
        o.queue = 1 << 20;
        let (w, _t) = Writer::open(&dir, key.clone(), o).expect("writer");
        g.bench_function(format!("write_100k_records/{label}"), |b| {
            b.iter(|| {
                // Four producer threads, like request workers, each waiting for its last ack.
                std::thread::scope(|s| {
                    for t in 0..4u64 {
                        let w = w.clone();
                        s.spawn(move || {
                            let mut last = None;
                            for i in 0..N / 4 {
                                last = Some(w.submit_record(&record(t * N + i)).expect("accepted"));
                            }
                            last.map(|a| {
                                w.written_blocking(a, std::time::Duration::from_secs(10))
                                    .expect("ack")
                            })
                        });
                    }
                });
            })
        });
    }
    g.finish();

    // What one personalized request pays: build, serialize and queue its record (the writer drains meanwhile).
    let mut o = Options::new("audit");
    o.queue = 1 << 20;
    let (w, _t) = Writer::open(&base.join("per_request"), key, o).expect("writer");
    let mut i = 0u64;
    c.bench_function("audit/submit_one_record", |b| {
        b.iter(|| {
            i += 1;
            match w.submit_record(&record(i)) {
                Ok(ack) => {
                    let _ = black_box(ack);
                }
                // The writer fell a whole queue behind: let it drain (rare; counted in the time).
                Err(_) => w.flush(),
            }
        })
    });
    let _ = std::fs::remove_dir_all(&base);
}

criterion_group!(benches, bench);
criterion_main!(benches);
