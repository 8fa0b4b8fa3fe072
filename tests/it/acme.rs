//! Certificates by ACME against a real CA: Debian's pebble validates Signpost's HTTP-01
//! answers on its http listener, issues, and the certificates are served by SNI; a restart
//! orders nothing; a short-lived certificate is renewed; a CA that is gone keeps the old
//! certificate and the redirects in service.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::pebble::Pebble;
use crate::common::{free_port, Gateway, Log, TestCa};

const ISSUED: &str = "signpost_acme_orders_total{result=\"issued\"} ";
const FAILED_UNREACHABLE: &str = "signpost_acme_failures_total{reason=\"unreachable\"} ";

/// A config with one tenant of five hosts: two to order, one an operator certificate covers,
/// one wildcard (which ACME cannot prove), one of a single label (no public CA certifies it).
fn write_config(dir: &Path, http_port: u16, pebble: &Pebble) -> std::path::PathBuf {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (crt, key) = TestCa::new().issue(&["covered.exempel.com"]);
    std::fs::write(certs.join("covered.crt"), crt).unwrap();
    std::fs::write(certs.join("covered.key"), key).unwrap();
    let config = format!(
        "listen: {{ http: 127.0.0.1:{http_port}, https: 127.0.0.1:0, admin: 127.0.0.1:0 }}\n\
         tls: {{ certs: certs }}\n\
         acme:\n  email: ops@exempel.com\n  directory: {directory}\n  ca: {ca}\n\
         profiles:\n  p:\n    fallback: {{ redirect: \"https://web.flexhrm.com/\" }}\n\
         tenants:\n  - id: exempel\n    hosts: [hrm.exempel.com, timeclock.exempel.com, covered.exempel.com, \"*.wild.exempel.com\", localhost]\n    profile: p\n",
        directory = pebble.directory,
        ca = pebble.api_ca.display(),
    );
    let path = dir.join("signpost.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

fn start(config: &Path, dir: tempfile::TempDir, state: &Path) -> Gateway {
    Gateway::spawn_with(
        config.to_owned(),
        dir,
        Log::Inherit("warn,signpost::acme=info"),
        state,
    )
}

/// Waits up to `limit` for the metric to reach `at_least`.
fn metric_reaches(gw: &Gateway, line_start: &str, at_least: f64, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let value = gw.metric(line_start);
        if value >= at_least || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTPS GET of `host` on the gateway that trusts only `root` (pebble's), and the DER of
/// the certificate it was served.
async fn get_verified(gw: &Gateway, root: &str, host: &str) -> (reqwest::Response, Vec<u8>) {
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .resolve(host, gw.https)
        .redirect(reqwest::redirect::Policy::none())
        .tls_info(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("https://{host}:{}/HRM", gw.https.port());
    let resp = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("HTTPS to {host}, verified against pebble's root: {e:?}"));
    let info = resp.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    let der = info.peer_certificate().unwrap().to_vec();
    (resp, der)
}

#[tokio::test]
async fn certificates_are_obtained_for_table_hosts_only_served_by_sni_and_kept_across_a_restart() {
    let http_port = free_port();
    let pebble = Pebble::start(http_port, None).await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), http_port, &pebble);
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["check", "--config"])
        .arg(&config)
        .env("STATE_DIRECTORY", state.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{said}");
    assert!(
        said.contains(&format!("acme: certificates from {} for 2 host(s) that no tls.certs certificate covers: hrm.exempel.com, timeclock.exempel.com\n", pebble.directory)),
        "{said}"
    );
    assert!(
        said.contains("acme: warning: *.wild.exempel.com is a wildcard host: it needs a certificate in tls.certs (HTTP-01 cannot prove a wildcard)\n"),
        "{said}"
    );

    let mut gw = start(&config, dir, state.path());
    assert_eq!(
        metric_reaches(&gw, ISSUED, 2.0, Duration::from_secs(60)),
        2.0
    );
    let root = pebble.root().await;
    let (resp, hrm) = get_verified(&gw, &root, "hrm.exempel.com").await;
    assert_eq!(crate::common::served_names(&resp), ["hrm.exempel.com"]);
    // The rules answer over the new certificate as before.
    assert_eq!(resp.status(), 307);
    assert_eq!(resp.headers()["location"], "https://web.flexhrm.com/");
    let (resp, _) = get_verified(&gw, &root, "timeclock.exempel.com").await;
    assert_eq!(
        crate::common::served_names(&resp),
        ["timeclock.exempel.com"]
    );
    let (_, metrics) = gw.admin("/metrics");
    for host in ["hrm.exempel.com", "timeclock.exempel.com"] {
        let series = format!(
            "signpost_certificate_expiry_timestamp_seconds{{host=\"{host}\",source=\"acme\"}} "
        );
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }
    assert!(metrics.contains("signpost_certificate_expiry_timestamp_seconds{host=\"covered.exempel.com\",source=\"operator\"} "));

    // A name that is not in the table orders nothing, whatever a client asks for.
    let unknown = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("unknown.exempel.com", gw.https)
        .build()
        .unwrap();
    let url = format!("https://unknown.exempel.com:{}/", gw.https.port());
    let resp = unknown.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 421);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(gw.metric(ISSUED), 2.0);
    assert_eq!(
        gw.metric("signpost_acme_orders_total{result=\"failed\"} "),
        0.0
    );
    let files = |state: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(state.join("acme/certs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        files(state.path()),
        ["hrm.exempel.com.pem", "timeclock.exempel.com.pem"]
    );

    // A restart serves the same certificates from the first handshake and orders nothing.
    let (config, dir) = (
        gw.config.clone(),
        std::mem::replace(&mut gw.dir, tempfile::tempdir().unwrap()),
    );
    assert_eq!(gw.terminate(), Some(0));
    let gw = start(&config, dir, state.path());
    let (_, again) = get_verified(&gw, &root, "hrm.exempel.com").await;
    assert_eq!(again, hrm, "the same certificate after the restart");
    std::thread::sleep(Duration::from_secs(3));
    let (_, metrics) = gw.admin("/metrics");
    assert!(
        !metrics.contains("signpost_acme_orders_total{"),
        "no order after a restart: {metrics}"
    );
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_and_a_ca_that_is_gone_keeps_the_old_one_serving() {
    let http_port = free_port();
    // Renewed when a third is left: 20 s after it was issued.
    let mut pebble = Pebble::start(http_port, Some(Duration::from_secs(30))).await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), http_port, &pebble);
    let gw = start(&config, dir, state.path());
    let root = pebble.root().await;
    assert_eq!(
        metric_reaches(&gw, ISSUED, 2.0, Duration::from_secs(60)),
        2.0
    );
    let (_, first) = get_verified(&gw, &root, "hrm.exempel.com").await;
    assert_eq!(
        metric_reaches(&gw, ISSUED, 4.0, Duration::from_secs(60)),
        4.0
    );
    let (_, renewed) = get_verified(&gw, &root, "hrm.exempel.com").await;
    assert_ne!(renewed, first, "a new certificate after the renewal");

    // The CA goes away: the next renewal fails, the renewed certificate stays in service.
    pebble.stop();
    assert!(metric_reaches(&gw, FAILED_UNREACHABLE, 1.0, Duration::from_secs(60)) >= 1.0);
    let (resp, served) = get_verified(&gw, &root, "hrm.exempel.com").await;
    assert_eq!(served, renewed);
    assert_eq!(resp.status(), 307, "redirects keep working");
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = plain
        .get(format!("http://127.0.0.1:{http_port}/HRM"))
        .header("host", "hrm.exempel.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 307);
}

#[tokio::test]
async fn a_challenge_the_ca_cannot_validate_is_counted_and_backed_off_and_the_other_hosts_are_served(
) {
    let http_port = free_port();
    let pebble = Pebble::start(http_port, None).await;
    // The CA looks for timeclock.exempel.com where nothing listens: its challenge fails.
    pebble.resolve("timeclock.exempel.com", "127.0.0.2").await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), http_port, &pebble);
    let gw = start(&config, dir, state.path());
    let failed = "signpost_acme_failures_total{reason=\"challenge\"} ";
    assert_eq!(
        metric_reaches(&gw, failed, 1.0, Duration::from_secs(60)),
        1.0
    );
    assert_eq!(
        metric_reaches(&gw, ISSUED, 1.0, Duration::from_secs(60)),
        1.0
    );
    let root = pebble.root().await;
    let (resp, _) = get_verified(&gw, &root, "hrm.exempel.com").await;
    assert_eq!(resp.status(), 307);
    // Backed off: no second try within seconds, and the ledger says when it will be.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        gw.metric("signpost_acme_orders_total{result=\"failed\"} "),
        1.0
    );
    let ledger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.path().join("acme/ledger.json")).unwrap())
            .unwrap();
    let failing = &ledger["failing"]["timeclock.exempel.com"];
    assert_eq!(failing["failures"], 1, "{ledger}");
    assert_eq!(failing["reason"], "challenge", "{ledger}");
    let wait = failing["retry_at"].as_i64().unwrap() - jiff::Timestamp::now().as_second();
    assert!((200..=360).contains(&wait), "retry in {wait} s: {ledger}");
}
