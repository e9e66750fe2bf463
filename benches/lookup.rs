//! IP → company lookup speed (issue 3): a table of 1,000,000 random IPv4/IPv6 prefixes, random addresses
//! (hits and misses), and the time to build it. Run with `cargo bench --bench lookup`; results in BENCHMARKS.md.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use concierge::firmographics::PrefixTable;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ipnetwork::IpNetwork;

/// A small deterministic generator (xorshift), so every run measures the same table.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// 600k IPv4 prefixes (/8–/32, mostly /16–/24 as in real allocations) and 400k IPv6 prefixes (/19–/64 under
/// 2000::/3).
fn prefixes(n: usize) -> Vec<(IpNetwork, u32)> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let r = rng.next();
        let net = if i % 5 < 3 {
            let len = [8, 12, 16, 18, 20, 22, 24, 24, 24, 28, 32][(r % 11) as usize];
            IpNetwork::new(IpAddr::V4(Ipv4Addr::from((r >> 16) as u32)), len).expect("len")
        } else {
            let len = [19, 24, 29, 32, 40, 44, 48, 48, 56, 64][(r % 10) as usize];
            let addr = (0x2000u128 << 112) | (((r >> 8) as u128) << 64 >> 3) | rng.next() as u128;
            IpNetwork::new(IpAddr::V6(Ipv6Addr::from(addr)), len).expect("len")
        };
        out.push((
            IpNetwork::new(net.network(), net.prefix()).expect("normalize"),
            i as u32,
        ));
    }
    out
}

fn probes(table: &PrefixTable<u32>, n: usize) -> (Vec<IpAddr>, usize) {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let r = rng.next();
        out.push(if i % 5 < 3 {
            IpAddr::V4(Ipv4Addr::from(r as u32))
        } else {
            IpAddr::V6(Ipv6Addr::from(
                (0x2000u128 << 112) | ((r as u128) << 64 >> 3) | rng.next() as u128,
            ))
        });
    }
    let hits = out.iter().filter(|ip| table.lookup(**ip).is_some()).count();
    (out, hits)
}

fn bench(c: &mut Criterion) {
    let entries = prefixes(1_000_000);
    let started = Instant::now();
    let table = PrefixTable::build(entries.iter().copied());
    let built = started.elapsed();
    let (addrs, hits) = probes(&table, 1 << 16);
    eprintln!(
        "table: {} prefixes → {} ranges, {:.1} MiB, built in {:.0} ms; probes: {} of {} hit",
        table.prefixes(),
        table.ranges(),
        table.index_bytes() as f64 / (1024.0 * 1024.0),
        built.as_secs_f64() * 1000.0,
        hits,
        addrs.len()
    );

    let mut g = c.benchmark_group("prefix_table");
    g.throughput(Throughput::Elements(addrs.len() as u64));
    g.bench_function("lookup_1M_prefixes_mixed", |b| {
        b.iter(|| {
            let mut found = 0u32;
            for ip in &addrs {
                if let Some(v) = table.lookup(black_box(*ip)) {
                    found = found.wrapping_add(*v);
                }
            }
            found
        })
    });
    let v4: Vec<IpAddr> = addrs.iter().copied().filter(IpAddr::is_ipv4).collect();
    g.throughput(Throughput::Elements(v4.len() as u64));
    g.bench_function("lookup_1M_prefixes_ipv4", |b| {
        b.iter(|| {
            v4.iter()
                .filter(|ip| table.lookup(black_box(**ip)).is_some())
                .count()
        })
    });
    let v6: Vec<IpAddr> = addrs.iter().copied().filter(IpAddr::is_ipv6).collect();
    g.throughput(Throughput::Elements(v6.len() as u64));
    g.bench_function("lookup_1M_prefixes_ipv6", |b| {
        b.iter(|| {
            v6.iter()
                .filter(|ip| table.lookup(black_box(**ip)).is_some())
                .count()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("prefix_table_build");
    g.sample_size(10);
    g.bench_function("build_1M_prefixes", |b| {
        b.iter_batched(
            || entries.clone(),
            PrefixTable::build,
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// MMDB lookups on the shared test databases: one field decoded per lookup, as the proxy does.
fn bench_mmdb(c: &mut Criterion) {
    use concierge::firmographics::mmdb::{FieldPath, Mmdb};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/maxmind/test-data");
    let city = Mmdb::open(&dir.join("GeoIP2-City-Test.mmdb")).expect("City test database");
    let enterprise =
        Mmdb::open(&dir.join("GeoIP2-Enterprise-Test.mmdb")).expect("Enterprise test database");
    let country = FieldPath::parse("country.iso_code").expect("path");
    let org = FieldPath::parse("traits.organization").expect("path");
    let hits: Vec<IpAddr> = [
        "81.2.69.160",
        "216.160.83.56",
        "89.160.20.115",
        "2001:218::1",
    ]
    .iter()
    .map(|s| s.parse().expect("ip"))
    .collect();
    let mut rng = Rng(42);
    let misses: Vec<IpAddr> = (0..1024)
        .map(|_| IpAddr::V4(Ipv4Addr::from(rng.next() as u32)))
        .collect();
    let mut g = c.benchmark_group("mmdb");
    g.throughput(Throughput::Elements(hits.len() as u64));
    g.bench_function("city_country_hit", |b| {
        b.iter(|| {
            hits.iter()
                .filter(|ip| city.get(black_box(**ip), &country).is_some())
                .count()
        })
    });
    g.bench_function("enterprise_organization_hit", |b| {
        b.iter(|| {
            hits.iter()
                .filter(|ip| enterprise.get(black_box(**ip), &org).is_some())
                .count()
        })
    });
    g.throughput(Throughput::Elements(misses.len() as u64));
    g.bench_function("city_random_mostly_miss", |b| {
        b.iter(|| {
            misses
                .iter()
                .filter(|ip| city.get(black_box(**ip), &country).is_some())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_mmdb);
criterion_main!(benches);
