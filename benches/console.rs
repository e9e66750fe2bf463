//! The console's pages over a log of a million records (issue 18: every page under 200 ms). The log is real:
//! written through the audit writer (hash chain, signed checkpoints every 10 000 records) — 500 000 decision
//! records, 450 000 exposures and 50 000 conversions of two experiments over 2 000 accounts and 60 days, and
//! 60 000 feedback records. It is made once under `target/console-bench/` (about 450 MB) and reused.
//!
//! A real proxy serves the console on its admin listener in front of a small origin; every sample is one
//! HTTP/1.1 GET over a fresh loopback connection, with the token, read to the end — what a browser waits for.
//!
//! `cargo bench --bench console` (`-- --quick` for a shorter run); results in BENCHMARKS.md.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use concierge::audit::writer::{Fsync, Options, Writer};
use criterion::{criterion_group, criterion_main, Criterion};

const DECISIONS: u64 = 500_000;
const EXPERIMENT_RECORDS: u64 = 500_000;
const FEEDBACK: u64 = 60_000;
const ACCOUNTS: u64 = 2_000;
const TOKEN: &str = "console-bench-token-0123456789abcdef01234567";

fn time(i: u64, n: u64) -> String {
    let day = i * 59 / n;
    let (month, d) = if day < 31 {
        (1, day + 1)
    } else {
        (2, day - 30)
    };
    format!(
        "2027-{month:02}-{d:02}T{:02}:{:02}:00.000Z",
        (i / 60) % 24,
        i % 60
    )
}

fn submit(w: &Writer, line: &str) {
    loop {
        match w.submit_bytes(line.as_bytes(), false) {
            Ok(_) => return,
            Err(_) => {
                w.flush();
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// The log, made once.
fn log_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-bench");
    let done = root.join("complete");
    if done.exists() {
        return root;
    }
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench dir");
    let key = Arc::new(concierge::audit::keys::create(&root.join("signing.key")).expect("key"));
    eprintln!(
        "writing the 1 M-record log under {} (once)…",
        root.display()
    );
    let open = |stream: &str| {
        let mut o = Options::new(stream);
        o.fsync = Fsync::Interval(Duration::from_secs(1));
        o.queue = 1 << 20;
        Writer::open(&root.join("log"), key.clone(), o).expect("writer")
    };
    let (audit, t1) = open("audit");
    let n = DECISIONS + EXPERIMENT_RECORDS;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..n {
        let t = time(i, n);
        let acct = next() % ACCOUNTS;
        let line = if i % 2 == 0 {
            let consent = if i % 10 == 0 {
                format!(",\"consent_id\":\"{:032x}\"", i)
            } else {
                String::new()
            };
            format!(
                "{{\"type\":\"decision\",\"time\":\"{t}\",\"request_id\":\"{i:032x}\",\"client\":\"h:5f0e3a9d21c4b7e8\",\"page\":\"/pricing\",\"jurisdiction\":{{\"regime\":\"opt-out\",\"region\":\"US-CA\"}},\"signals\":{{\"gpc\":false,\"dnt\":false}}{consent},\"permitted\":[\"anonymous\",\"firmographic\",\"personal\"],\"reasons\":[\"opt-out region US-CA: permitted unless withdrawn\"],\"banner\":false,\"lookup\":\"matched\",\"company\":\"account-{acct}.example\",\"rules\":[\"account-{acct}.example/hero\"],\"rules_version\":\"c8217e0b36eb73e6\",\"outcome\":\"personalized\"}}"
            )
        } else {
            let exp = if i % 3 == 0 { "q1-pricing" } else { "q1-hero" };
            let arm = if (acct * 7 + u64::from(exp.len() as u32)) % 2 == 0 {
                "control"
            } else {
                "treatment"
            };
            if next() % 10 == 0 {
                format!("{{\"type\":\"conversion\",\"time\":\"{t}\",\"request_id\":\"{i:032x}\",\"experiment\":\"{exp}\",\"goal\":\"demo-request\",\"arm\":\"{arm}\",\"unit\":\"account\",\"account\":\"account-{acct}.example\",\"page\":\"/demo-request\",\"method\":\"POST\"}}")
            } else {
                format!("{{\"type\":\"exposure\",\"time\":\"{t}\",\"request_id\":\"{i:032x}\",\"experiment\":\"{exp}\",\"arm\":\"{arm}\",\"unit\":\"account\",\"account\":\"account-{acct}.example\",\"page\":\"/\",\"rules\":[\"account-{acct}.example/hero\"],\"rules_version\":\"c8217e0b36eb73e6\",\"control\":0.5}}")
            }
        };
        submit(&audit, &line);
    }
    let (feedback, t2) = open("feedback");
    for i in 0..FEEDBACK {
        let t = time(i, FEEDBACK);
        let acct = next() % 50;
        let rule = format!("account-{acct}.example/hero");
        let line = match i % 4 {
            0 | 1 => format!("{{\"type\":\"impression\",\"time\":\"{t}\",\"rule\":\"{rule}\",\"rules_version\":\"c8217e0b36eb73e6\",\"page\":\"/\",\"account\":\"account-{acct}.example\"}}"),
            2 => format!("{{\"type\":\"feedback\",\"time\":\"{t}\",\"rule\":\"{rule}\",\"rules_version\":\"c8217e0b36eb73e6\",\"page\":\"/\",\"account\":\"account-{acct}.example\",\"answer\":\"{}\"}}", if next() % 3 == 0 { "no" } else { "yes" }),
            _ => format!("{{\"type\":\"comment\",\"time\":\"{t}\",\"rule\":\"{rule}\",\"rules_version\":\"c8217e0b36eb73e6\",\"page\":\"/\",\"account\":\"account-{acct}.example\",\"answer\":\"yes\",\"comment\":\"Useful, thanks <b>{i}</b>\"}}"),
        };
        submit(&feedback, &line);
    }
    drop(audit);
    drop(feedback);
    t1.join().expect("audit writer");
    t2.join().expect("feedback writer");
    std::fs::write(&done, "").expect("marker");
    root
}

/// A tiny origin: one HTML page for every request.
async fn origin() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("origin");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 8192];
                let _ = tcp.read(&mut buf).await;
                let body = "<!doctype html><html><head><title>Pricing</title></head><body><h1 class=\"hero\">Pricing for every team</h1><p>Plans.</p></body></html>";
                let _ = tcp
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                            .as_bytes(),
                    )
                    .await;
            });
        }
    });
    addr
}

fn get(addr: SocketAddr, path: &str) -> usize {
    fetch(addr, path).len()
}

fn fetch(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut tcp = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: console\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = Vec::new();
    tcp.read_to_end(&mut out).expect("read");
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{path}: {}",
        String::from_utf8_lossy(&out[..out.len().min(300)])
    );
    out
}

/// This process's resident memory, in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn bench(c: &mut Criterion) {
    let root = log_dir();
    let rules = root.join("rules");
    std::fs::create_dir_all(rules.join("accounts")).expect("rules");
    std::fs::write(
        rules.join("accounts/account-7.example.toml"),
        "[account]\ndomain = \"account-7.example\"\nname = \"Account 7\"\nnetworks = [\"127.0.7.0/24\"]\n\n\
         [[personalization]]\nid = \"hero\"\ntier = \"firmographic\"\n\n[[personalization.action]]\nselect = \"h1.hero\"\nset_text = \"Pricing for {{ company.name }}\"\n",
    )
    .expect("account");
    std::fs::write(root.join("console.token"), TOKEN).expect("token");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let before = rss_mib();
    let (server, admin) = rt.block_on(async {
        let origin = origin().await;
        let toml = format!(
            "[upstream]\nurl = \"http://{origin}\"\n[admin]\naddress = \"127.0.0.1:0\"\n[log]\naccess_log = false\nlevel = \"warn\"\n\
             [rules]\ndir = \"{}\"\n[audit]\ndir = \"{}\"\nsigning_key = \"{}\"\n\
             [console]\nenabled = true\ntoken_file = \"{}\"\n\
             [[geo.static]]\nnetwork = \"127.0.0.0/8\"\ncountry = \"US\"\nsubdivision = \"CA\"\n",
            rules.display(),
            root.join("log").display(),
            root.join("signing.key").display(),
            root.join("console.token").display(),
        );
        let overrides = concierge::config::Overrides {
            listen: vec!["127.0.0.1:0".into()],
            ..Default::default()
        };
        let settings = concierge::config::Settings::from_toml(&toml, &overrides).expect("config");
        let server = concierge::app::Server::start(settings)
            .await
            .expect("proxy starts");
        let admin = server.admin.expect("admin");
        (server, admin)
    });
    let pages: &[(&str, String)] = &[
        ("overview", "/console/".into()),
        ("rules", "/console/rules".into()),
        (
            "preview",
            "/console/rules/preview?account=Account+7&url=%2Fpricing".into(),
        ),
        ("experiments", "/console/experiments".into()),
        (
            "experiments_one",
            "/console/experiments?experiment=q1-hero".into(),
        ),
        ("feedback", "/console/feedback".into()),
        ("audit", "/console/audit".into()),
        (
            "audit_by_request_id",
            format!("/console/audit?request={:032x}", 777_777u64),
        ),
        (
            "audit_by_consent_id",
            format!("/console/audit?consent={:032x}", 555_550u64),
        ),
        (
            "audit_by_account",
            "/console/audit?account=account-7.example".into(),
        ),
        ("audit_since", "/console/audit?since=2027-02-20".into()),
        ("record", "/console/audit/record?seq=750000".into()),
        ("verify", "/console/audit/verify".into()),
    ];
    // The steady state an operator meets: the console indexed the log and verified it once (it starts both
    // on its own thread when the proxy starts).
    let started = std::time::Instant::now();
    while String::from_utf8_lossy(&fetch(admin, "/console/audit/verify"))
        .contains("is being verified")
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "verified within 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "indexed and verified {:.1} s after start; resident memory {before:.0} MiB before the proxy started, {:.0} MiB with it",
        started.elapsed().as_secs_f64(),
        rss_mib()
    );
    let mut g = c.benchmark_group("console_1m");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    for (name, path) in pages {
        g.bench_function(*name, |b| b.iter(|| get(admin, path)));
    }
    g.finish();
    rt.block_on(concierge::app::stop(server));
}

criterion_group!(benches, bench);
criterion_main!(benches);
