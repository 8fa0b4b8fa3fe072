//! The hot path without sockets: host lookup → rule match → rendered decision, on the bundled
//! example config, and host lookup in a table of 100 000 tenants.
//!
//! cargo bench --bench route

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method, Uri};
use signpost::route::{route, Request, Scheme};
use signpost::table::Table;

fn bench(c: &mut Criterion) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let table = signpost::config::load(&example, None).unwrap().table;
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("acme.flexhosting.se"));
    for (name, target) in [
        ("timeclock redirect", "/Timeclock/Fabriksklocka"),
        (
            "web redirect with query",
            "/HRM-NoSSO/Default.aspx?page=time",
        ),
        ("api forward", "/HRM/API/v1/employees?page=2"),
        ("fallback", "/some/old/page"),
    ] {
        bench_route(c, name, &table, &headers, target);
    }

    // The same redirect when the host is one of 100 000 tenants (exact) or a wildcard.
    let dir = std::env::temp_dir().join(format!("signpost-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut yaml = std::fs::read_to_string(&example).unwrap().replace(
        "certs: ../certs",
        &format!(
            "certs: {}",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("certs")
                .display()
        ),
    );
    for i in 0..100_000 {
        yaml.push_str(&format!("  - {{ id: t{i}, customer_number: \"{i}\", hosts: [c{i}.flexhosting.se], profile: flexhrm }}\n"));
    }
    yaml.push_str("  - { id: wild, customer_number: \"1\", hosts: [\"*.eu.flexhosting.se\"], profile: flexhrm }\n");
    std::fs::write(dir.join("big.yaml"), yaml).unwrap();
    let big = signpost::config::load(&dir.join("big.yaml"), None)
        .unwrap()
        .table;
    std::fs::remove_dir_all(&dir).ok();
    for (name, host) in [
        ("100k tenants: exact host", "c77777.flexhosting.se"),
        ("100k tenants: wildcard host", "x.eu.flexhosting.se"),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static(host));
        bench_route(c, name, &big, &headers, "/Timeclock/Fabriksklocka");
    }
}

fn bench_route(c: &mut Criterion, name: &str, table: &Table, headers: &HeaderMap, target: &str) {
    let uri: Uri = target.parse().unwrap();
    c.bench_function(name, |b| {
        b.iter(|| {
            let req = Request {
                method: &Method::GET,
                scheme: Scheme::Https,
                uri: &uri,
                headers,
            };
            black_box(route(black_box(table), &req).decision);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
