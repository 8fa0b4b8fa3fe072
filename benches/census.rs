//! The census as a request and the drain see it: what one request costs it, counted in the
//! worker's shard and folded into the table, with one client calling 10 tenants (every
//! request finds its row) and 100 000 tenants at random (nearly every request is a new row
//! that evicts the least recently seen of the default 10 000).
//!
//! cargo bench --bench census

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::HeaderMap;
use signpost::config::CensusSettings;
use signpost::report::census::Census;
use signpost::report::metrics::Metrics;
use signpost::table::meter::{Kind, TenantNo};

/// Requests between drains: about what one worker serves in the drain's 200 ms.
const BATCH: usize = 10_000;

fn settings() -> CensusSettings {
    CensusSettings {
        enabled: true,
        state_file: None,
        state_file_chosen: false,
        retention: Duration::from_secs(90 * 24 * 3600),
        max_clients: 10_000,
        metric_clients: 10,
        snapshot_interval: Duration::from_secs(60),
        trusted_proxies: Vec::new(),
        api_key_headers: Vec::new(),
        hash_user_names: false,
        store: None,
    }
}

fn bench(c: &mut Criterion) {
    let tenants: Vec<TenantNo> = (0..100_000)
        .map(|i| TenantNo::of(&format!("c{i}")))
        .collect();
    let kind = Kind::new("timeclock");
    let mut headers = HeaderMap::new();
    headers.insert("user-agent", "wrk".parse().unwrap());
    let peer = Some("127.0.0.1".parse().unwrap());
    let mut group = c.benchmark_group("census");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (label, spread) in [("10 tenants", 10), ("100k tenants", tenants.len())] {
        let (census, _worker) = Census::new(settings(), Arc::new(Metrics::new())).unwrap();
        // The same pseudo-random walk over the tenants as wrk's script: xorshift.
        let mut state = 42u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as usize % spread
        };
        // Fill the table past its capacity first: a long-running census evicts, a young one grows.
        for _ in 0..3 {
            for _ in 0..BATCH {
                let caller = census.caller(&headers, peer);
                census.record(tenants[next()], &kind, caller, "/X", 307);
            }
            census.flush();
        }
        group.bench_function(
            format!("{label}: record {BATCH} requests, then drain"),
            |b| {
                b.iter(|| {
                    for _ in 0..BATCH {
                        let caller = census.caller(&headers, peer);
                        census.record(black_box(tenants[next()]), &kind, caller, "/X", 307);
                    }
                    census.flush();
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
