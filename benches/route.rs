//! The hot path without sockets: host lookup → rule match → rendered decision (Location or
//! forward target), on the bundled profile with 10 and with 100 000 tenants.
//!
//! cargo bench --bench route

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method, Uri};
use signpost::route::{route, Request, Scheme};
use signpost::table::Table;

/// The example config plus `extra` generated tenants (`c<i>.flexhosting.se`) and one wildcard.
fn table_with(extra: usize) -> Table {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let certs = format!("certs: {}", root.join("certs").display());
    let example = std::fs::read_to_string(root.join("config/example.yaml")).unwrap();
    // Without the quick start's local stand-in (its CA path is relative to config/).
    let mut yaml = signpost::init::without_stand_in(&example).replace("certs: ../certs", &certs);
    for i in 0..extra {
        yaml.push_str(&format!("  - {{ id: t{i}, customer_number: \"{i}\", hosts: [c{i}.flexhosting.se], profile: flexhrm }}\n"));
    }
    yaml.push_str("  - { id: wild, customer_number: \"1\", hosts: [\"*.eu.flexhosting.se\"], profile: flexhrm }\n");
    let dir = std::env::temp_dir().join(format!("signpost-bench-{}-{extra}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bench.yaml"), yaml).unwrap();
    let table = signpost::config::load(&dir.join("bench.yaml"), None)
        .unwrap()
        .table;
    std::fs::remove_dir_all(&dir).ok();
    table
}

fn bench(c: &mut Criterion) {
    let small = table_with(7); // the example's 2 tenants, 7 generated, 1 wildcard: 10
    let big = table_with(100_000);
    for (label, table, host) in [
        ("10 tenants", &small, "c3.flexhosting.se"),
        ("100k tenants", &big, "c77777.flexhosting.se"),
        ("100k tenants, wildcard host", &big, "x.eu.flexhosting.se"),
    ] {
        bench_route(
            c,
            &format!("{label}: timeclock redirect"),
            table,
            host,
            "/Timeclock/Fabriksklocka",
        );
    }
    for (name, target) in [
        (
            "web redirect with query",
            "/HRM-NoSSO/Default.aspx?page=time",
        ),
        ("api forward", "/HRM/API/v1/employees?page=2"),
        ("fallback", "/some/old/page"),
    ] {
        bench_route(
            c,
            &format!("10 tenants: {name}"),
            &small,
            "acme.flexhosting.se",
            target,
        );
    }
}

fn bench_route(c: &mut Criterion, name: &str, table: &Table, host: &'static str, target: &str) {
    let uri: Uri = target.parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static(host));
    c.bench_function(name, |b| {
        b.iter(|| {
            let req = Request {
                method: &Method::GET,
                scheme: Scheme::Https,
                uri: &uri,
                headers: &headers,
                at: None,
            };
            black_box(route(black_box(table), &req).decision);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
