//! One census for a fleet, on a real PostgreSQL (`census.store`): exact counts across
//! instances, a store that goes away under traffic, SIGKILL and restarts, verified TLS, and a
//! password that appears nowhere it should not.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_yaml::Value;

use crate::common::haproxy::{Backend, Haproxy};
use crate::common::postgres::{Postgres, PASSWORD};
use crate::common::{free_port, Gateway, Log, TestCa, Traffic};

const TIMECLOCK: &str = "http://acme.flexhosting.se/Timeclock";
const TIMECLOCK_TO: &str = "https://timeclock.flexhrm.com/default/1234";

/// The example config with the census in `pg`, flushed every 200 ms, as instance `name`.
fn with_store(config: &mut Value, dir: &Path, pg: &Postgres, name: &str) {
    let password = pg.password_file(dir);
    config["census"] = serde_yaml::from_str(&format!(
        "{{ store: {{ url: '{}', password_file: {}, instance: {name}, flush_interval: 200ms }} }}",
        pg.url(),
        password.display()
    ))
    .unwrap();
    config["server"]["grace_period"] = Value::from("1s");
}

/// A config file (in its own folder) for instance `name` of a fleet on `pg`, its listeners
/// (http, https, admin) on `listen`.
fn fleet_config(pg: &Postgres, name: &str, listen: [&str; 3]) -> (PathBuf, tempfile::TempDir) {
    let mut config = crate::common::example_config();
    let dir = tempfile::tempdir().unwrap();
    for (listener, addr) in ["http", "https", "admin"].into_iter().zip(listen) {
        config["listen"][listener] = Value::from(addr);
    }
    config["tls"]["certs"] = Value::from(crate::common::repo().join("certs").to_str().unwrap());
    with_store(&mut config, dir.path(), pg, name);
    let path = dir.path().join("signpost.yaml");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    (path, dir)
}

const ANY_PORT: [&str; 3] = ["127.0.0.1:0"; 3];

fn start(pg: &Postgres, name: &str) -> Gateway {
    Gateway::start_with(|config, dir| with_store(config, dir, pg, name))
}

/// (scope, total count of the rows of `kind`) as `gw`'s admin port reports them.
fn fleet_count(gw: &Gateway, kind: &str) -> (String, u64) {
    let (status, body) = gw.admin("/stragglers.json");
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let count = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == kind)
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    (report["scope"].as_str().unwrap_or("").to_owned(), count)
}

/// Waits until every gateway reports the fleet's count of `kind` as `expected`; then checks
/// it stays so for a few more flushes (a doubled batch would show up late).
fn assert_fleet_count(gateways: &[&Gateway], kind: &str, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for gw in gateways {
        loop {
            let got = fleet_count(gw, kind);
            if got == ("fleet".to_owned(), expected) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "admin {}: {got:?}, want (fleet, {expected})",
                gw.admin
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::thread::sleep(Duration::from_millis(700));
    for gw in gateways {
        assert_eq!(
            fleet_count(gw, kind),
            ("fleet".to_owned(), expected),
            "admin {} after more flushes",
            gw.admin
        );
    }
}

async fn timeclock(gw: &Gateway, times: usize, agent: &str) {
    let client = gw.client("http");
    for _ in 0..times {
        let resp = client
            .get(gw.url(TIMECLOCK))
            .header("user-agent", agent)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 307);
    }
}

/// Two instances count the same clients: every admin port shows the sum; one client seen by
/// both is one row. The password is in no log, no `/config` and nowhere in the database.
#[tokio::test]
async fn two_instances_show_one_census_with_exact_counts() {
    let _alone = crate::common::alone();
    let pg = Postgres::start();
    let logs = tempfile::tempdir().unwrap();
    let spawn = |name: &str| {
        let (path, dir) = fleet_config(&pg, name, ANY_PORT);
        let log = logs.path().join(format!("{name}.log"));
        let gw = Gateway::spawn(path, dir, Log::File(&log, "debug"));
        (gw, log)
    };
    let (mut a, log_a) = spawn("replica-a");
    let (mut b, log_b) = spawn("replica-b");
    timeclock(&a, 7, "Terminal/1.0").await;
    timeclock(&b, 5, "Terminal/1.0").await;
    timeclock(&b, 3, "OtherTerminal/2.0").await;
    assert_fleet_count(&[&a, &b], "timeclock", 15);
    let report: serde_json::Value = serde_json::from_str(&a.admin("/stragglers.json").1).unwrap();
    let terminal: Vec<&serde_json::Value> = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["client"]["user_agent"] == "Terminal/1.0")
        .collect();
    assert_eq!(
        terminal.len(),
        1,
        "one client on two instances is one row: {report:#}"
    );
    assert_eq!(terminal[0]["count"], 12);
    assert_eq!(report["tenants"][0]["requests_7d"], 15, "{report:#}");
    // The CLI shows the fleet too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["stragglers", "--csv", "--admin", &b.admin.to_string()])
        .output()
        .unwrap();
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(
        csv.contains("Terminal/1.0") && csv.contains(",12,"),
        "{csv}"
    );

    let config_a = a.admin("/config").1;
    let metrics = a.admin("/metrics").1;
    assert_eq!(a.terminate(), Some(0));
    assert_eq!(b.terminate(), Some(0));
    let dump = pg.dump();
    assert!(
        dump.contains("signpost_census_clients"),
        "the schema was made"
    );
    for (place, text) in [
        ("pg_dump", dump),
        ("/config", config_a),
        ("/metrics", metrics),
        ("log a", std::fs::read_to_string(&log_a).unwrap()),
        ("log b", std::fs::read_to_string(&log_b).unwrap()),
    ] {
        assert!(!text.contains(PASSWORD), "the password is in {place}");
    }
}

/// The store stops and comes back while requests flow: no request fails or waits on it, and
/// once it is back the fleet count is exactly the number of requests answered.
#[tokio::test]
async fn the_store_going_away_under_traffic_fails_no_request_and_loses_no_count() {
    let _alone = crate::common::alone();
    let mut pg = Postgres::start();
    let gw = start(&pg, "solo");
    let traffic = Traffic::start(&gw, TIMECLOCK, 4, &[TIMECLOCK_TO.to_owned()]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    pg.stop();
    // Long enough for several flushes to fail.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let errors = gw.metric("signpost_census_store_flush_errors_total{reason=\"connect\"}");
    let backlog = gw.metric("signpost_census_store_backlog");
    pg.restart();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let answered = traffic.finish("through a store outage").await;
    assert!(errors > 0.0, "the outage was not noticed: {}", pg.log());
    assert!(backlog > 0.0, "nothing waited for the store");
    assert_fleet_count(&[&gw], "timeclock", answered);
    assert_eq!(gw.metric("signpost_census_store_backlog"), 0.0);
    assert_eq!(gw.metric("signpost_census_store_dropped_total"), 0.0);
}

/// SIGKILL after a flush loses nothing flushed; the next instance starts from the state file
/// and does not count again what the store already has; a clean stop flushes on the way out.
#[tokio::test]
async fn kills_and_restarts_neither_lose_nor_double_what_was_flushed() {
    let pg = Postgres::start();
    let state = tempfile::tempdir().unwrap();
    let spawn = || {
        let (path, dir) = fleet_config(&pg, "box", ANY_PORT);
        Gateway::spawn_with(path, dir, Log::Inherit("error"), state.path())
    };
    let mut gw = spawn();
    timeclock(&gw, 5, "Terminal/1.0").await;
    assert_fleet_count(&[&gw], "timeclock", 5);
    gw.signal("KILL");
    let _ = gw.wait_exit(Duration::from_secs(5));

    let mut gw = spawn();
    timeclock(&gw, 2, "Terminal/1.0").await;
    assert_fleet_count(&[&gw], "timeclock", 7);
    // The next flush interval has not come yet: only the exit's flush can bring these.
    timeclock(&gw, 3, "Terminal/1.0").await;
    assert_eq!(gw.terminate(), Some(0));
    let stored = pg.sql("SELECT sum(count) FROM signpost_census_clients WHERE kind = 'timeclock'");
    assert_eq!(stored.trim(), "10");
    let gw = spawn();
    assert_fleet_count(&[&gw], "timeclock", 10);
}

/// With `ca`, TLS to the database is required and verified: the right CA works, another
/// one fails the flush (reason `tls`) and the report says it shows this instance only.
#[tokio::test]
async fn tls_to_the_store_is_verified() {
    let ca = TestCa::new();
    let pg = Postgres::start_tls(&ca);
    let right = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(right.path(), &ca.pem).unwrap();
    let wrong = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wrong.path(), TestCa::new().pem).unwrap();
    let start_with_ca = |ca: &Path| {
        Gateway::start_with(|config, dir| {
            with_store(config, dir, &pg, "tls");
            config["census"]["store"]["ca"] = Value::from(ca.to_str().unwrap());
            config["census"]["store"]["url"] = Value::from(format!("{}?sslmode=require", pg.url()));
        })
    };
    let gw = start_with_ca(right.path());
    timeclock(&gw, 2, "Terminal/1.0").await;
    assert_fleet_count(&[&gw], "timeclock", 2);
    let ssl = pg.sql("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = 'signpost' AND s.ssl");
    assert_ne!(ssl.trim(), "0", "the connections use TLS");
    drop(gw);

    let gw = start_with_ca(wrong.path());
    timeclock(&gw, 1, "Terminal/1.0").await;
    let errors = gw.metric_when(
        "signpost_census_store_flush_errors_total{reason=\"tls\"}",
        |n| n > 0.0,
    );
    assert!(errors > 0.0);
    let report: serde_json::Value = serde_json::from_str(&gw.admin("/stragglers.json").1).unwrap();
    assert_eq!(report["scope"], "instance", "{report:#}");
    assert!(
        report["store_error"].as_str().unwrap().contains("TLS"),
        "{report:#}"
    );
}

/// `DELETE /stragglers/ID` on one instance erases the client from the fleet's census.
#[tokio::test]
async fn forgetting_a_client_on_one_instance_erases_it_fleet_wide() {
    let pg = Postgres::start();
    let a = start(&pg, "forget-a");
    let mut b = start(&pg, "forget-b");
    timeclock(&a, 2, "Erase/1.0").await;
    timeclock(&b, 1, "Erase/1.0").await;
    timeclock(&b, 1, "Keep/1.0").await;
    assert_fleet_count(&[&a, &b], "timeclock", 4);
    let report: serde_json::Value = serde_json::from_str(&b.admin("/stragglers.json").1).unwrap();
    let id = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["client"]["user_agent"] == "Erase/1.0")
        .unwrap()["client"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) =
        crate::common::gateway::admin_request(a.admin, "DELETE", &format!("/stragglers/{id}"), &[])
            .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_fleet_count(&[&a, &b], "timeclock", 1);
    assert_eq!(
        pg.sql(&format!(
            "SELECT count(*) FROM signpost_census_clients WHERE client_id = '{id}'"
        ))
        .trim(),
        "0"
    );
    // The other instance drops it from its own census and state file too.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(b.terminate(), Some(0));
    let saved = std::fs::read_to_string(b.dir.path().join("state/census.json")).unwrap();
    assert!(saved.contains("Keep/1.0"), "{saved}");
    assert!(
        !saved.contains(&id) && !saved.contains("Erase/1.0"),
        "{saved}"
    );
}

/// The schema is versioned: a store written by a newer Signpost is left alone, the flush
/// fails saying why, and the report falls back to this instance's census.
#[tokio::test]
async fn a_store_with_a_newer_schema_is_not_touched() {
    let pg = Postgres::start();
    let gw = start(&pg, "old");
    timeclock(&gw, 1, "Terminal/1.0").await;
    assert_fleet_count(&[&gw], "timeclock", 1);
    assert_eq!(
        pg.sql("SELECT version FROM signpost_census_schema").trim(),
        "3"
    );
    drop(gw);
    pg.sql("UPDATE signpost_census_schema SET version = 99");
    let gw = start(&pg, "old");
    timeclock(&gw, 1, "Terminal/1.0").await;
    let errors = gw.metric_when(
        "signpost_census_store_flush_errors_total{reason=\"query\"}",
        |n| n > 0.0,
    );
    assert!(errors > 0.0);
    let report: serde_json::Value = serde_json::from_str(&gw.admin("/stragglers.json").1).unwrap();
    assert_eq!(report["scope"], "instance", "{report:#}");
    let why = report["store_error"].as_str().unwrap();
    assert!(
        why.contains("version 99") && why.contains("upgrade Signpost"),
        "{why}"
    );
    assert_eq!(
        pg.sql("SELECT sum(count) FROM signpost_census_clients")
            .trim(),
        "1"
    );
}

/// A rolling update of three instances behind HAProxy under steady load: each in turn is
/// stopped (SIGTERM) and replaced by a new one with an empty state directory, as a pod is.
/// No request fails, and every admin port shows the fleet's count: exactly the requests
/// answered, whichever instance answered them and whether or not it still runs.
#[tokio::test]
async fn a_rolling_update_behind_haproxy_fails_no_request_and_loses_no_count() {
    let _alone = crate::common::alone();
    let pg = Postgres::start();
    let ports: Vec<[String; 3]> = (0..3)
        .map(|_| {
            [
                format!("127.0.0.1:{}", free_port()),
                "127.0.0.1:0".to_owned(),
                format!("127.0.0.1:{}", free_port()),
            ]
        })
        .collect();
    let spawn = |replica: usize, generation: usize| {
        let listen = ports[replica].each_ref().map(String::as_str);
        let (path, dir) = fleet_config(&pg, &format!("replica-{replica}-{generation}"), listen);
        let state = dir.path().join("state");
        Gateway::spawn_with(path, dir, Log::Inherit("error"), &state)
    };
    let mut replicas: Vec<Gateway> = (0..3).map(|r| spawn(r, 0)).collect();
    let backends: Vec<Backend> = replicas
        .iter()
        .map(|gw| Backend {
            http: gw.http,
            admin: gw.admin,
        })
        .collect();
    let haproxy = Haproxy::start(&backends);
    let traffic = Traffic::start_at(haproxy.addr, TIMECLOCK, 4, &[TIMECLOCK_TO.to_owned()]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    for (replica, running) in replicas.iter_mut().enumerate() {
        assert_eq!(running.terminate(), Some(0), "replica {replica} stops");
        *running = spawn(replica, 1);
        // HAProxy sees it ready (two checks) before the next one goes.
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    let answered = traffic.finish("through a rolling update").await;
    let served: Vec<f64> = replicas
        .iter()
        .map(|gw| {
            gw.metric(r#"signpost_requests_total{action="redirect",code="307",kind="timeclock",tenant="acme"}"#)
        })
        .collect();
    assert!(
        served.iter().all(|&n| n > 0.0),
        "every new instance took traffic: {served:?}"
    );
    let all: Vec<&Gateway> = replicas.iter().collect();
    assert_fleet_count(&all, "timeclock", answered);
}

/// A census-gated phase with a store waits for the fleet: clients that call only instance A
/// hold the phase on instance B too (B's own census hears none of them), and once they are
/// quiet both instances start it.
#[tokio::test]
async fn a_census_gated_phase_waits_for_the_whole_fleet() {
    let pg = Postgres::start();
    let gated = |config: &mut Value, dir: &Path, name: &str| {
        with_store(config, dir, &pg, name);
        config["tenants"][0]["phases"] = serde_yaml::from_str(
            "[{ until: '2020-01-01T00:00:00Z', rules: profile },
              { gone: true, after_quiet: { kinds: [timeclock], for: 3s } }]",
        )
        .unwrap();
    };
    let a = Gateway::start_with(|config, dir| gated(config, dir, "gate-a"));
    let b = Gateway::start_with(|config, dir| gated(config, dir, "gate-b"));
    let web = "http://acme.flexhosting.se/HRM/Start";
    let status = |gw: &Gateway| {
        let client = gw.client("http");
        let url = gw.url(web);
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    let until = Instant::now() + Duration::from_secs(5);
    let mut quiet_from = Instant::now();
    while Instant::now() < until {
        quiet_from = Instant::now();
        timeclock(&a, 1, "Terminal/1.0").await;
        assert_eq!(
            status(&b).await,
            307,
            "B holds the phase while A hears its clients"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        b.metric("signpost_tenant_phase_held{tenant=\"acme\"} "),
        1.0
    );
    for gw in [&a, &b] {
        while status(gw).await != 410 {
            assert!(
                quiet_from.elapsed() < Duration::from_secs(8),
                "admin {}: the phase never started",
                gw.admin
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(quiet_from.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        pg.sql("SELECT count(*) FROM signpost_census_watch WHERE tenant = 'acme'")
            .trim(),
        "1"
    );
}
