//! Hot reload under traffic: in-place writes, save-by-rename and ConfigMap symlink swaps keep
//! every request answered; broken configs keep the old tables; new certificates are served.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::{repo, served_names, Gateway, Log, TestCa, Traffic};
use serde_yaml::Value;

const A: &str = "timeclock-a.flexhrm.com";
const B: &str = "timeclock-b.flexhrm.com";
const C: &str = "timeclock-c.flexhrm.com";
const URL: &str = "http://acme.flexhosting.se/Timeclock/Entre";

/// How a new config reaches the watched folder.
#[derive(Clone, Copy, Debug)]
enum Write {
    /// Truncate and write the file itself.
    InPlace,
    /// Write a temporary file and rename it over the old one, as editors do.
    Rename,
    /// Kubernetes ConfigMap: `signpost.yaml -> ..data/signpost.yaml`, `..data -> ..vN`,
    /// and an update re-points `..data`.
    SymlinkSwap,
    /// An edit by rename inside the folder `..data` leads to now (someone editing a
    /// ConfigMap's files in place, or a sidecar that does).
    RenameInTarget,
}

struct Setup {
    dir: tempfile::TempDir,
    version: u32,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self { dir, version: 0 }
    }

    /// The example config on free ports, with `timeclock` set to `target`, passed
    /// through `patch` for the broken variants.
    fn config_text(&self, target: &str) -> String {
        let mut config = crate::common::example_config();
        for listener in ["http", "https", "admin"] {
            config["listen"][listener] = Value::from("127.0.0.1:0");
        }
        config["tls"]["certs"] = Value::from(self.dir.path().join("certs").to_str().unwrap());
        for (_, upstream) in config["upstreams"].as_mapping_mut().unwrap().iter_mut() {
            upstream["address"] = Value::from(crate::common::closed_port().to_string());
        }
        config["vars"]["timeclock"] = Value::from(target);
        serde_yaml::to_string(&config).unwrap()
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("signpost.yaml")
    }

    fn copy_certs(&self) {
        let dst = self.dir.path().join("certs");
        std::fs::create_dir_all(&dst).unwrap();
        for name in ["flexhosting-se", "exempel-com"] {
            for ext in ["crt", "key"] {
                std::fs::copy(
                    repo().join(format!("certs/{name}.{ext}")),
                    dst.join(format!("{name}.{ext}")),
                )
                .unwrap();
            }
        }
    }

    fn write(&mut self, how: Write, text: &str) {
        let path = self.config_path();
        match how {
            Write::InPlace => std::fs::write(&path, text).unwrap(),
            Write::Rename => {
                let tmp = self.dir.path().join(".signpost.yaml.swp");
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, &path).unwrap();
            }
            Write::SymlinkSwap => {
                self.version += 1;
                let root = self.dir.path();
                let version = root.join(format!("..v{}", self.version));
                std::fs::create_dir(&version).unwrap();
                std::fs::write(version.join("signpost.yaml"), text).unwrap();
                let tmp = root.join("..data_tmp");
                std::os::unix::fs::symlink(version.file_name().unwrap(), &tmp).unwrap();
                std::fs::rename(&tmp, root.join("..data")).unwrap();
                if !path.exists() {
                    std::os::unix::fs::symlink("..data/signpost.yaml", &path).unwrap();
                }
            }
            Write::RenameInTarget => {
                let target = self.dir.path().join(format!("..v{}", self.version));
                let tmp = target.join(".signpost.yaml.swp");
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, target.join("signpost.yaml")).unwrap();
            }
        }
    }

    fn start(mut self, how: Write, target: &str) -> (Gateway, Setup) {
        self.copy_certs();
        let text = self.config_text(target);
        self.write(how, &text);
        let dir = tempfile::tempdir().unwrap(); // the gateway's own scratch folder
        let gw = Gateway::spawn(self.config_path(), dir, Log::Inherit("error"));
        (gw, self)
    }
}

fn location_of(target: &str) -> String {
    format!("https://{target}/Entre/1234")
}

/// Polls until the gateway answers with `target`; returns how long that took.
async fn time_until_served(gw: &Gateway, target: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    let client = gw.client("http");
    let url = gw.url(URL);
    loop {
        let resp = client.get(&url).send().await.unwrap();
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        if location == location_of(target) {
            return started.elapsed();
        }
        if started.elapsed() >= limit {
            let (_, config) = gw.admin("/config");
            panic!("{target} not served within {limit:?}: still {location}; /config: {config}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn reload_under_traffic(how: Write) {
    let (gw, mut setup) = Setup::new().start(how, A);
    let traffic = Traffic::start(&gw, URL, 4, &[location_of(A), location_of(B)]);
    let mut slowest = Duration::ZERO;
    for round in 0..12 {
        let target = if round % 2 == 0 { B } else { A };
        let text = setup.config_text(target);
        setup.write(how, &text);
        let took = time_until_served(&gw, target, Duration::from_secs(5)).await;
        slowest = slowest.max(took);
    }
    let ok = traffic.finish(&format!("{how:?}")).await;
    assert!(ok > 100, "{how:?}: only {ok} requests went through");
    assert!(
        slowest < Duration::from_secs(1),
        "{how:?}: a new config took {slowest:?} to be served"
    );
    let (_, config) = gw.admin("/config");
    assert!(config.contains("\"generation\": 13"), "{how:?}: {config}");
    eprintln!("{how:?}: {ok} requests, 0 failed, slowest reload served after {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_in_place_under_traffic() {
    reload_under_traffic(Write::InPlace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_rename_under_traffic() {
    reload_under_traffic(Write::Rename).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_configmap_symlink_swap_under_traffic() {
    reload_under_traffic(Write::SymlinkSwap).await;
}

/// After a ConfigMap's `..data` swap, the watcher follows the new target: an edit by rename
/// inside it is served, and so on across further swaps (the watch once stayed on the first
/// target, and such edits were never seen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_inside_the_target_of_a_swapped_configmap_are_seen() {
    let (gw, mut setup) = Setup::new().start(Write::SymlinkSwap, A);
    for (i, (how, target)) in [
        (Write::SymlinkSwap, B),
        (Write::RenameInTarget, C),
        (Write::RenameInTarget, A),
        (Write::SymlinkSwap, B),
        (Write::RenameInTarget, C),
    ]
    .into_iter()
    .enumerate()
    {
        let text = setup.config_text(target);
        setup.write(how, &text);
        let took = time_until_served(&gw, target, Duration::from_secs(5)).await;
        eprintln!("step {i}: {how:?} served after {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_configs_keep_the_old_tables() {
    let (gw, mut setup) = Setup::new().start(Write::Rename, A);
    let traffic = Traffic::start(&gw, URL, 2, &[location_of(A), location_of(B)]);
    let good = setup.config_text(A);
    let broken = [
        ("syntax error", good.replace("tenants:", "tenants: [")),
        (
            "unknown field",
            good.replace(
                "customer_number: '1234'",
                "customer_number: '1234'\n  colour: blue",
            ),
        ),
        (
            "duplicate host",
            good.replace("- exempel.com", "- exempel.com\n  - acme.flexhosting.se"),
        ),
    ];
    for (i, (what, text)) in broken.iter().enumerate() {
        assert_ne!(text, &good, "{what}: the test failed to break the config");
        setup.write(Write::Rename, text);
        // The watcher notices, fails, and counts it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while gw.metric("signpost_config_reloads_total{result=\"error\"}") < (i + 1) as f64 {
            assert!(
                Instant::now() < deadline,
                "{what}: reload error not counted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, body) = gw.admin_post("/-/reload", &[]);
        assert_eq!(status, 422, "{what}: {body}");
        assert!(
            body.contains("signpost.yaml:"),
            "{what}: errors must name file and line: {body}"
        );
        let resp = gw.get(URL).await;
        assert_eq!(
            resp.headers()["location"],
            location_of(A).as_str(),
            "{what}"
        );
    }
    traffic.finish("broken configs").await;
    assert_eq!(gw.metric("signpost_config_generation"), 1.0);
    // Fixed again: served again.
    setup.write(Write::Rename, &setup.config_text(B));
    time_until_served(&gw, B, Duration::from_secs(1)).await;
}

#[tokio::test]
async fn reload_endpoint_needs_the_token_when_one_is_configured() {
    let gw = Gateway::start_with(|config, dir| {
        std::fs::write(dir.join("admin.token"), "t0ken-for-tests\n").unwrap();
        config["admin"] = serde_yaml::from_str(&format!(
            "token_file: {}",
            dir.join("admin.token").display()
        ))
        .unwrap();
    });
    assert_eq!(gw.admin_post("/-/reload", &[]).0, 401);
    assert_eq!(
        gw.admin_post("/-/reload", &[("Authorization", "Bearer wrong")])
            .0,
        401
    );
    let (status, body) = gw.admin_post("/-/reload", &[("Authorization", "Bearer t0ken-for-tests")]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"result\": \"ok\""), "{body}");
}

#[tokio::test]
async fn sighup_reloads() {
    let gw = Gateway::start_example(None);
    let before = gw.metric("signpost_config_generation");
    std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.metric("signpost_config_generation") < before + 1.0 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gw.metric("signpost_config_reloads_total{result=\"ok\"}"),
        1.0
    );
}

#[tokio::test]
async fn new_certificate_is_served_on_the_next_handshake() {
    let (gw, setup) = Setup::new().start(Write::Rename, A);
    let host = "hrm.nytt-bolag.se";
    let ca = TestCa::new();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .resolve(host, gw.https)
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("https://{host}:{}/Timeclock", gw.https.port());
    assert!(
        client.get(&url).send().await.is_err(),
        "no certificate for {host} yet"
    );
    let (cert, key) = ca.issue(&[host]);
    let certs = setup.dir.path().join("certs");
    std::fs::write(certs.join("nytt-bolag.key"), key).unwrap();
    std::fs::write(certs.join("nytt-bolag.crt"), cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(resp) = client.get(&url).send().await {
            assert_eq!(served_names(&resp), vec![host.to_owned()]);
            assert_eq!(
                resp.status(),
                421,
                "the host has a certificate but no tenant yet"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not served within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The access log and the census state file beside the config are Signpost's output, not its
/// input: writing them reloads nothing (an access log there once changed the folder's
/// fingerprint with every write, so each write reloaded the whole config).
#[tokio::test]
async fn its_own_log_and_census_files_beside_the_config_reload_nothing() {
    let gw = Gateway::start_with(|config, dir| {
        config["log"] =
            serde_yaml::from_str(&format!("access: {}", dir.join("access.log").display())).unwrap();
        config["census"] = serde_yaml::from_str(&format!(
            "state_file: {}\nsnapshot_interval: 1s",
            dir.join("census.json").display()
        ))
        .unwrap();
    });
    let dir = gw.config.parent().unwrap().to_owned();
    for _ in 0..25 {
        assert_eq!(gw.get(URL).await.status(), 307);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::metadata(dir.join("access.log")).unwrap();
    assert!(log.len() > 0, "nothing logged");
    assert!(dir.join("census.json").exists(), "no census snapshot");
    assert_eq!(gw.metric("signpost_config_generation"), 1.0);
    assert_eq!(
        gw.metric("signpost_config_reloads_total{result=\"ok\"}"),
        0.0
    );
}

/// Signpost's own stderr sent to a file beside its config (`signpost run … 2>>signpost.log`,
/// as operators do) is not a config input: its lines reload nothing. It once was (the watched
/// folder's listing was fingerprinted, sizes and times included), and then each reload's own
/// log line reloaded the config again, ten times a second, for good.
#[tokio::test]
async fn a_log_written_beside_the_config_reloads_nothing() {
    let mut setup = Setup::new();
    setup.copy_certs();
    let text = setup.config_text(A);
    setup.write(Write::InPlace, &text);
    let log = setup.dir.path().join("signpost.log");
    let scratch = tempfile::tempdir().unwrap();
    let gw = Gateway::spawn(setup.config_path(), scratch, Log::File(&log, "info"));
    let (status, _) = gw.admin_post("/-/reload", &[]);
    assert_eq!(
        status, 200,
        "the reload that writes a line beside the config"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.contains("config reloaded"), "{written}");
    assert_eq!(
        gw.metric("signpost_config_reloads_total{result=\"ok\"}"),
        1.0,
        "only the reload asked for"
    );
    // The config itself is still watched.
    let text = setup.config_text(B);
    setup.write(Write::InPlace, &text);
    time_until_served(&gw, B, Duration::from_secs(5)).await;
    assert_eq!(
        gw.metric("signpost_config_reloads_total{result=\"ok\"}"),
        2.0
    );
}
