//! What an experiment costs a page (issue 15): applying the experiment to a plan and building the exposure
//! record, queueing it, and the writer's share per record (throughput of exposure-sized records through one
//! writer, fsync per batch). Together with `bench/run.sh` (EXPERIMENT=1 on/off) in BENCHMARKS.md.
//! Run with `cargo bench --bench experiments`.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;

use concierge::audit::keys::SigningKey;
use concierge::audit::writer::{Options, Writer};
use concierge::consent::policy::{Decision, Jurisdiction, Regime, Tier};
use concierge::experiments::records::{ExposureRecord, Record};
use concierge::experiments::{ExperimentSettings, Unit};
use concierge::firmographics::company::Company;
use concierge::firmographics::Geo;
use concierge::rules::{RuleSet, Visitor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ACME: &str = r#"
[account]
domain = "acme.example"
name = "Acme Corp"
networks = ["127.0.0.0/8"]

[[personalization]]
id = "bench"
tier = "firmographic"
[[personalization.action]]
select = "h1"
set_text = "Spend control for {{ company.name }}"
[[personalization.action]]
select = 'nav a[href="/docs"]'
set_attribute = { name = "href", value = "/docs?account={{ account.domain }}" }
"#;

const EXPERIMENT: &str = "[experiment]\nid = \"bench\"\nrules = [\"acme.example/bench\"]\ncontrol = 0.0001\n\n[[experiment.goal]]\nid = \"never\"\npath = \"/never\"\n";

fn exposure(i: u64, rules_version: &str) -> Record {
    Record::Exposure(ExposureRecord {
        time: concierge::audit::writer::now_rfc3339(),
        request_id: format!("{i:032x}"),
        experiment: "bench".into(),
        arm: concierge::experiments::Arm::Treatment,
        unit: Unit::Account,
        account: Some("acme.example".into()),
        visitor: None,
        page: "/page-10k.html".into(),
        rules: vec!["acme.example/bench".into()],
        rules_version: rules_version.into(),
        control: 0.0001,
    })
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("accounts")).unwrap();
    std::fs::create_dir_all(dir.path().join("experiments")).unwrap();
    std::fs::write(dir.path().join("accounts/acme.example.toml"), ACME).unwrap();
    std::fs::write(dir.path().join("experiments/bench.toml"), EXPERIMENT).unwrap();
    let rules = RuleSet::load(dir.path()).expect("rules");
    let set = concierge::experiments::load(dir.path(), &rules).expect("experiments");
    let settings = ExperimentSettings::default();
    let company = Company {
        name: "Acme Corp".into(),
        domain: Some("acme.example".into()),
        account: true,
        ..Company::default()
    };
    let geo = Geo::default();
    let decision = Decision {
        jurisdiction: Jurisdiction {
            regime: Regime::OptOut,
            region: "unknown".into(),
        },
        permitted: BTreeSet::from([Tier::Anonymous, Tier::Firmographic]),
        reasons: vec![],
        show_banner: false,
        consent_id: None,
        basis: "opt-out:not-withdrawn",
    };
    let v = Visitor {
        path: "/page-10k.html",
        query: None,
        referrer_host: None,
        cookies: vec![],
        geo: &geo,
        company: Some(&company),
        decision: &decision,
        now: 1_800_000_000,
    };
    let mut g = c.benchmark_group("experiments");
    g.bench_function("plan_only", |b| b.iter(|| black_box(rules.plan(&v))));
    g.bench_function("build_and_serialize_exposure", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(serde_json::to_vec(&exposure(i, "c8217e0b36eb73e6")).unwrap())
        })
    });
    g.bench_function("plan_apply_and_build_exposure", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let mut plan = rules.plan(&v);
            let applied = set.apply(
                &mut plan,
                Some("acme.example"),
                None,
                None,
                &settings,
                v.now,
            );
            let record = exposure(i, plan.rules_version);
            black_box((plan, applied, serde_json::to_vec(&record).unwrap()))
        })
    });
    g.finish();

    let (_, key) = SigningKey::generate().expect("key");
    let key = Arc::new(key);
    let mut o = Options::new("audit");
    o.queue = 1 << 20;
    let (w, _t) = Writer::open(&dir.path().join("log-one"), key.clone(), o).expect("writer");
    let mut i = 0u64;
    c.bench_function("experiments/submit_one_exposure", |b| {
        b.iter(|| {
            i += 1;
            match w.submit_record(&exposure(i, "c8217e0b36eb73e6")) {
                Ok(ack) => {
                    let _ = black_box(ack);
                }
                Err(_) => w.flush(),
            }
        })
    });

    let mut g = c.benchmark_group("experiments");
    const N: u64 = 100_000;
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    let mut o = Options::new("audit");
    o.queue = 1 << 20;
    let (w, _t) = Writer::open(&dir.path().join("log-many"), key, o).expect("writer");
    g.bench_function("write_100k_exposures", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for t in 0..4u64 {
                    let w = w.clone();
                    s.spawn(move || {
                        let mut last = None;
                        for i in 0..N / 4 {
                            last = Some(
                                w.submit_record(&exposure(t * N + i, "c8217e0b36eb73e6"))
                                    .expect("accepted"),
                            );
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
    g.finish();

    // The whole process's CPU (the request side building, serializing and queueing; the writer linking,
    // hashing and writing) per exposure record, from /proc/self/stat: what a page pays for its exposure.
    let n = 300_000u64;
    for run in 0..5 {
        let mut o = Options::new("audit");
        o.queue = 1 << 20;
        let (w, _t) = Writer::open(
            &dir.path().join(format!("log-cpu-{run}")),
            Arc::new(SigningKey::generate().expect("key").1),
            o,
        )
        .expect("writer");
        let before = cpu_ticks();
        let start = std::time::Instant::now();
        let mut last = None;
        for i in 0..n {
            last = Some(
                w.submit_record(&exposure(i, "c8217e0b36eb73e6"))
                    .expect("accepted"),
            );
        }
        if let Some(a) = last {
            w.written_blocking(a, std::time::Duration::from_secs(30))
                .expect("ack");
        }
        let ticks = cpu_ticks() - before;
        println!(
            "experiments/cpu_per_exposure_record (run {run}): {:.2} µs CPU per record ({n} records in {:.2} s wall, {ticks} ticks of 10 ms)",
            ticks as f64 * 10_000.0 / n as f64,
            start.elapsed().as_secs_f64(),
        );
    }
}

/// utime + stime of this process in clock ticks (100 per second on Linux).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

criterion_group!(benches, bench);
criterion_main!(benches);
