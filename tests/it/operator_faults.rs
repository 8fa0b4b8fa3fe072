//! Operator faults: the files Signpost runs on go wrong while it runs. A config written
//! half-way or deleted, an included file gone, folders swapped while a reload runs, and
//! certificates that do not fit their key, have expired, are missing their key or are gone.
//!
//! Each fault must leave the running snapshot serving (the old `Location`, the old
//! certificate), be reported (`signpost_config_reloads_total{result="error"}` rises, the log
//! says why, and `POST /-/reload` answers `422` naming the file and what is wrong), and be
//! recovered from as soon as the files are fixed. Folder swaps must end on the final files
//! with no failed request. At start-up the same faults exit 1 before any port is bound.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{repo, served_names, Gateway, Log, TestCa, Traffic};
use serde_yaml::Value;

const A: &str = "timeclock-a.flexhrm.com";
const B: &str = "timeclock-b.flexhrm.com";
const C: &str = "timeclock-c.flexhrm.com";
/// A legacy timeclock URL: its `Location` shows which config is being served.
const URL: &str = "http://acme.flexhosting.se/Timeclock/Entre";
const ERRORS: &str = "signpost_config_reloads_total{result=\"error\"}";
/// Generous for a noisy 2-core machine: the watcher reacts within ~0.1 s when idle.
const PATIENCE: Duration = Duration::from_secs(5);
/// The SAN of the development certificate in `certs/flexhosting-se.crt`.
const DEV_NAMES: [&str; 2] = ["*.flexhosting.se", "flexhosting.se"];

fn location_of(target: &str, customer: &str) -> String {
    format!("https://{target}/Entre/{customer}")
}

/// A folder holding a config, its includes and a copy of the development certificates; the
/// gateway runs on it with its log in a folder of its own (a log in the watched folder would
/// itself trigger reloads).
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let setup = Self { dir };
        std::fs::create_dir(setup.certs()).unwrap();
        for name in ["flexhosting-se", "exempel-com"] {
            for ext in ["crt", "key"] {
                std::fs::copy(
                    repo().join(format!("certs/{name}.{ext}")),
                    setup.certs().join(format!("{name}.{ext}")),
                )
                .unwrap();
            }
        }
        setup
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn certs(&self) -> PathBuf {
        self.root().join("certs")
    }

    fn config_path(&self) -> PathBuf {
        self.root().join("signpost.yaml")
    }

    /// The example config on free ports and this setup's certificates, `timeclock` set to `target`.
    fn config(&self, target: &str) -> Value {
        let mut config = crate::common::example_config();
        for key in ["http", "https", "admin"] {
            config["listen"][key] = Value::from("127.0.0.1:0");
        }
        config["tls"]["certs"] = Value::from("certs");
        for (_, upstream) in config["upstreams"].as_mapping_mut().unwrap().iter_mut() {
            upstream["address"] = Value::from(crate::common::closed_port().to_string());
        }
        config["vars"]["timeclock"] = Value::from(target);
        config
    }

    fn config_text(&self, target: &str) -> String {
        serde_yaml::to_string(&self.config(target)).unwrap()
    }

    /// The config with its tenants moved out to `include`d files: (main text, [(tenant id,
    /// text of its file)]), acme's customer number set to `acme_number`.
    fn split_config(
        &self,
        target: &str,
        include: &[&str],
        acme_number: &str,
    ) -> (String, Vec<(String, String)>) {
        let mut config = self.config(target);
        let tenants = config.as_mapping_mut().unwrap().remove("tenants").unwrap();
        config["include"] = include.iter().map(|p| Value::from(*p)).collect();
        let files = tenants
            .as_sequence()
            .unwrap()
            .iter()
            .map(|tenant| {
                let mut tenant = tenant.clone();
                let id = tenant["id"].as_str().unwrap().to_owned();
                if id == "acme" {
                    tenant["customer_number"] = Value::from(acme_number);
                }
                let mut file = serde_yaml::Mapping::new();
                file.insert("tenants".into(), Value::Sequence(vec![tenant]));
                (id, serde_yaml::to_string(&file).unwrap())
            })
            .collect();
        (serde_yaml::to_string(&config).unwrap(), files)
    }

    /// Writes `text` to `rel` (under the setup's folder), creating folders as needed.
    fn write(&self, rel: &str, text: &str) {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Writes the config with each tenant in its own file under `folder` (included by glob)
    /// and starts the gateway on it; the tenant files' (id, text).
    fn start_with_tenants_in(&self, folder: &str) -> (Gateway, Vec<(String, String)>) {
        let (main, files) = self.split_config(A, &[&format!("{folder}/*.yaml")], "1234");
        self.write("signpost.yaml", &main);
        for (id, text) in &files {
            self.write(&format!("{folder}/{id}.yaml"), text);
        }
        (self.start(), files)
    }

    /// Runs the gateway on `signpost.yaml`, logging at `warn` to its own folder.
    fn start(&self) -> Gateway {
        let scratch = tempfile::tempdir().unwrap();
        let log = scratch.path().join("signpost.log");
        Gateway::spawn(self.config_path(), scratch, Log::File(&log, "warn"))
    }
}

/// What the gateway has logged so far.
fn log_of(gw: &Gateway) -> String {
    std::fs::read_to_string(gw.dir.path().join("signpost.log")).unwrap()
}

/// (status, Location) of the timeclock URL over a fresh connection.
async fn answer(gw: &Gateway) -> (u16, Option<String>) {
    let resp = gw.get(URL).await;
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), location)
}

async fn assert_serves(gw: &Gateway, location: &str, what: &str) {
    assert_eq!(
        answer(gw).await,
        (307, Some(location.to_owned())),
        "{what}: the running config must keep serving"
    );
}

/// Polls until the timeclock URL redirects to `location`.
async fn wait_for_location(gw: &Gateway, location: &str, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = answer(gw).await;
        if got == (307, Some(location.to_owned())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {location} not served within {PATIENCE:?}; still {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the watcher has counted more reload errors than `before`.
async fn wait_for_reload_error(gw: &Gateway, before: f64, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while gw.metric(ERRORS) <= before {
        assert!(
            Instant::now() < deadline,
            "{what}: the failed reload was not counted within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST /-/reload` must answer 422; returns the body.
fn rejected_reload(gw: &Gateway, what: &str) -> String {
    let (status, body) = gw.admin_post("/-/reload", &[]);
    assert_eq!(status, 422, "{what}: {body}");
    assert!(body.contains("\"result\": \"error\""), "{what}: {body}");
    body
}

/// Whether `body` names `file` with a line number (`…/signpost.yaml:12: …`).
fn names_file_and_line(body: &str, file: &str) -> bool {
    body.match_indices(&format!("{file}:")).any(|(i, m)| {
        let rest = &body[i + m.len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(": ")
    })
}

/// The common checks of a fault: counted, refused with a body holding every one of
/// `expected`, logged, and the old answer still served.
async fn assert_fault_reported(
    gw: &Gateway,
    errors_before: f64,
    expected: &[&str],
    still: &str,
    what: &str,
) -> String {
    wait_for_reload_error(gw, errors_before, what).await;
    let body = rejected_reload(gw, what);
    for part in expected {
        assert!(
            body.contains(part),
            "{what}: the errors must say {part:?}: {body}"
        );
    }
    assert!(
        log_of(gw).contains("reload failed, keeping the running config"),
        "{what}: not logged:\n{}",
        log_of(gw)
    );
    assert_serves(gw, still, what).await;
    body
}

/// A config file written half-way (the writer cut off in the middle of a line) is refused
/// with its file and line, the old tables keep serving, and the complete file is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_written_half_way_is_refused_until_complete() {
    let setup = Setup::new();
    setup.write("signpost.yaml", &setup.config_text(A));
    let gw = setup.start();
    let old = location_of(A, "1234");
    assert_serves(&gw, &old, "start").await;
    let complete = setup.config_text(B);
    // Cut points in the middle of a line, each leaving a prefix that cannot be a config: an
    // unclosed `{` in a template, an unterminated quoted string, a key without its colon.
    for cut_after in [
        "redirect: https://{timeclock}/{clo",
        "customer_number: '12",
        "\ntena",
    ] {
        let cut = complete.find(cut_after).expect("cut point in the config") + cut_after.len();
        let half = &complete[..cut];
        let before = gw.metric(ERRORS);
        std::fs::write(setup.config_path(), half).unwrap();
        let what = format!("cut after {cut_after:?}");
        assert_fault_reported(&gw, before, &[], &old, &what).await;
        let body = rejected_reload(&gw, &what);
        assert!(
            names_file_and_line(&body, "signpost.yaml"),
            "{what}: the error must name file and line: {body}"
        );
    }
    assert_eq!(gw.metric("signpost_config_generation"), 1.0);
    std::fs::write(setup.config_path(), &complete).unwrap();
    wait_for_location(&gw, &location_of(B, "1234"), "the complete file").await;
    assert_eq!(gw.admin_post("/-/reload", &[]).0, 200);
}

/// A deleted config file is a failed reload, not an empty config: the old tables keep
/// serving until the file is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_config_keeps_the_old_tables_until_it_is_back() {
    let setup = Setup::new();
    setup.write("signpost.yaml", &setup.config_text(A));
    let gw = setup.start();
    let old = location_of(A, "1234");
    let before = gw.metric(ERRORS);
    std::fs::remove_file(setup.config_path()).unwrap();
    let body = assert_fault_reported(
        &gw,
        before,
        &["signpost.yaml: cannot read"],
        &old,
        "deleted",
    )
    .await;
    assert!(body.contains("No such file"), "{body}");
    setup.write("signpost.yaml", &setup.config_text(B));
    wait_for_location(&gw, &location_of(B, "1234"), "file put back").await;
}

/// An include that names a file (no wildcard) must find it: when the file is deleted the
/// reload fails with the `include:` line and the missing path, and the tenant keeps being
/// served; a glob that matches nothing is not an error (see the next test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_literal_include_is_an_error_and_keeps_its_tenants() {
    let setup = Setup::new();
    let (main, files) =
        setup.split_config(A, &["tenants/acme.yaml", "tenants/exempel.yaml"], "1234");
    setup.write("signpost.yaml", &main);
    for (id, text) in &files {
        setup.write(&format!("tenants/{id}.yaml"), text);
    }
    let gw = setup.start();
    let old = location_of(A, "1234");
    assert_serves(&gw, &old, "start").await;
    let before = gw.metric(ERRORS);
    std::fs::remove_file(setup.root().join("tenants/acme.yaml")).unwrap();
    let body = assert_fault_reported(
        &gw,
        before,
        &["include `tenants/acme.yaml`: no file ", "tenants/acme.yaml"],
        &old,
        "literal include deleted",
    )
    .await;
    assert!(names_file_and_line(&body, "signpost.yaml"), "{body}");
    // Put back with a change: the change is served.
    let (_, files) = setup.split_config(A, &[], "4321");
    setup.write("tenants/acme.yaml", &files[0].1);
    wait_for_location(&gw, &location_of(A, "4321"), "include put back").await;
}

/// With `include: [tenants.d/*.yaml]` deleting a tenant's file is how a tenant is removed
/// (a glob may match nothing), so it is a successful reload that drops the tenant; putting
/// the file back brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_gone_from_an_include_glob_removes_its_tenant() {
    let setup = Setup::new();
    let (gw, files) = setup.start_with_tenants_in("tenants.d");
    assert_serves(&gw, &location_of(A, "1234"), "start").await;
    std::fs::remove_file(setup.root().join("tenants.d/acme.yaml")).unwrap();
    let deadline = Instant::now() + PATIENCE;
    while answer(&gw).await.0 != 421 {
        assert!(Instant::now() < deadline, "acme was not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gw.metric(ERRORS),
        0.0,
        "removing a globbed file is no error"
    );
    assert_eq!(gw.metric("signpost_tenants"), 1.0);
    setup.write("tenants.d/acme.yaml", &files[0].1);
    wait_for_location(&gw, &location_of(A, "1234"), "file put back").await;
    assert_eq!(gw.metric("signpost_tenants"), 2.0);
}

/// A Kubernetes ConfigMap volume: every file is a symlink `NAME -> ..data/NAME`, `..data`
/// points at a `..vN` folder, and an update writes a new `..vN` and re-points `..data`.
struct ConfigMap {
    root: PathBuf,
    version: u32,
}

impl ConfigMap {
    fn publish(&mut self, files: &[(String, String)]) {
        self.version += 1;
        let version = self.root.join(format!("..v{}", self.version));
        std::fs::create_dir(&version).unwrap();
        for (name, text) in files {
            std::fs::write(version.join(name), text).unwrap();
        }
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(version.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
        for (name, _) in files {
            let link = self.root.join(name);
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
    }
}

/// ConfigMap files: `signpost.yaml` including `tenants.yaml`, which holds acme and exempel
/// and `bulk` more tenants (to make a load take long enough to swap during it).
fn configmap_files(setup: &Setup, target: &str, bulk: usize) -> Vec<(String, String)> {
    let (main, files) = setup.split_config(target, &["tenants.yaml"], "1234");
    let mut tenants = String::new();
    for (_, text) in &files {
        tenants.push_str(text.strip_prefix("tenants:\n").unwrap());
    }
    for i in 0..bulk {
        tenants.push_str(&format!(
            "- id: bulk{i}\n  customer_number: '{i}'\n  hosts: [bulk{i}.example.net]\n  profile: flexhrm\n"
        ));
    }
    vec![
        ("signpost.yaml".to_owned(), main),
        ("tenants.yaml".to_owned(), format!("tenants:\n{tenants}")),
    ]
}

/// Two ConfigMap updates in quick succession — the second landing before, during and after
/// the reload the first one started — always end on the second, and no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_swapped_twice_while_reloading_ends_on_the_final_files() {
    let setup = Setup::new();
    let mut map = ConfigMap {
        root: setup.root().to_owned(),
        version: 0,
    };
    // Enough tenants that a load takes a while in a debug build, so the second swap can be
    // timed to land inside it.
    const BULK: usize = 3000;
    map.publish(&configmap_files(&setup, A, BULK));
    let gw = setup.start();
    let (status, body) = gw.admin_post("/-/reload", &[]);
    assert_eq!(status, 200, "{body}");
    let load: f64 = serde_json::from_str::<serde_json::Value>(&body).unwrap()["seconds"]
        .as_f64()
        .unwrap();
    let load = Duration::from_secs_f64(load);
    let valid: Vec<String> = [A, B, C].iter().map(|t| location_of(t, "1234")).collect();
    let traffic = Traffic::start(&gw, URL, 2, &valid);
    let debounce = Duration::from_millis(100);
    // The watcher waits `debounce` after the first event, then fingerprints and loads: these
    // gaps put the second swap before that, into the load's first half, its second half,
    // and after it.
    let gaps = [
        Duration::ZERO,
        debounce + load / 4,
        debounce + load / 2,
        debounce + load * 3 / 4,
        debounce + load + Duration::from_millis(50),
    ];
    let mut finals = [B, C].iter().cycle();
    for gap in gaps {
        let last = *finals.next().unwrap();
        let first = if last == B { C } else { B };
        map.publish(&configmap_files(&setup, first, BULK));
        tokio::time::sleep(gap).await;
        map.publish(&configmap_files(&setup, last, BULK));
        wait_for_location(
            &gw,
            &location_of(last, "1234"),
            &format!("second swap after {gap:?} (load {load:?})"),
        )
        .await;
    }
    traffic.finish("ConfigMap swaps").await;
    assert_eq!(gw.metric(ERRORS), 0.0);
}

/// An included folder renamed away and back (as a deploy script or `git checkout` may do),
/// then replaced by another folder: requests never fail, and edits inside the folder are
/// still seen afterwards, so the watcher follows the folder by name, not by the inode it
/// first watched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_included_folder_renamed_or_replaced_stays_watched() {
    let setup = Setup::new();
    let (gw, files) = setup.start_with_tenants_in("tenants.d");
    let numbers = ["1234", "2001", "2002", "2003"];
    let valid: Vec<String> = numbers
        .iter()
        .flat_map(|n| [location_of(A, n), location_of(B, n)])
        .collect();
    let traffic = Traffic::start(&gw, URL, 2, &valid);
    let acme = |number: &str| setup.split_config(A, &[], number).1[0].1.clone();
    let (dir, away) = (
        setup.root().join("tenants.d"),
        setup.root().join("tenants.away"),
    );

    // Away and straight back: the files never change, so nothing is to be reloaded.
    std::fs::rename(&dir, &away).unwrap();
    std::fs::rename(&away, &dir).unwrap();
    // A change next to it, to know the watcher has handled those events...
    setup.write(
        "signpost.yaml",
        &setup.split_config(B, &["tenants.d/*.yaml"], "1234").0,
    );
    wait_for_location(&gw, &location_of(B, "1234"), "main file after the rename").await;
    // ...then an edit inside the folder must still be seen.
    setup.write("tenants.d/acme.yaml", &acme("2001"));
    wait_for_location(&gw, &location_of(B, "2001"), "edit after away-and-back").await;

    // Replaced by another folder (a new inode): its contents are loaded...
    let new = setup.root().join("tenants.new");
    std::fs::create_dir(&new).unwrap();
    std::fs::write(new.join("acme.yaml"), acme("2002")).unwrap();
    std::fs::write(new.join("exempel.yaml"), &files[1].1).unwrap();
    std::fs::rename(&dir, &away).unwrap();
    std::fs::rename(&new, &dir).unwrap();
    wait_for_location(&gw, &location_of(B, "2002"), "replaced folder").await;
    // ...and edits inside the new folder are seen.
    setup.write("tenants.d/acme.yaml", &acme("2003"));
    wait_for_location(&gw, &location_of(B, "2003"), "edit in the replaced folder").await;
    traffic.finish("folder renames").await;
    assert_eq!(gw.metric(ERRORS), 0.0);
}

/// Once a change is loaded the gateway leaves its files alone. Its own reading of the watched
/// folders used to count as a change, so after the first edit it re-read the whole config
/// every 100 ms forever (and that polling hid the lost watch of the test above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_gateway_stops_reading_its_files_after_a_reload() {
    use notify::Watcher;
    let setup = Setup::new();
    setup.write("signpost.yaml", &setup.config_text(A));
    let gw = setup.start();
    setup.write("signpost.yaml", &setup.config_text(B));
    wait_for_location(&gw, &location_of(B, "1234"), "the edit").await;
    // Let the reload's own reads pass, then count every open of the config folder or file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let opens = Arc::new(AtomicU64::new(0));
    let counter = opens.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(notify::Event {
            kind: notify::EventKind::Access(notify::event::AccessKind::Open(_)),
            ..
        }) = event
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    })
    .unwrap();
    watcher
        .watch(setup.root(), notify::RecursiveMode::NonRecursive)
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(watcher);
    assert_eq!(
        opens.load(Ordering::Relaxed),
        0,
        "the gateway kept opening its config folder while nothing changed"
    );
    assert_serves(&gw, &location_of(B, "1234"), "idle").await;
}

/// An HTTPS client that trusts the development CA and `ca`, resolves acme's host to the
/// gateway, and opens a new connection (a new handshake) for every request.
fn https_client(gw: &Gateway, ca: &TestCa) -> reqwest::Client {
    let dev = std::fs::read(repo().join("certs/dev-ca/ca.pem")).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&dev).unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .resolve("acme.flexhosting.se", gw.https)
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The SAN of the certificate served for acme's host, and the redirect it answered with.
async fn served_for_acme(gw: &Gateway, ca: &TestCa) -> (Vec<String>, Option<String>) {
    let url = format!(
        "https://acme.flexhosting.se:{}/Timeclock/Entre",
        gw.https.port()
    );
    let resp = https_client(gw, ca).get(&url).send().await.unwrap();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (served_names(&resp), location)
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Runs one certificate fault: the development certificate is served; `fault` breaks the
/// certificate folder; the reload is refused with errors holding all of `expected`, and the
/// development certificate is still served; `fix` repairs it with a certificate for exactly
/// `acme.flexhosting.se` issued by `ca`, which is then served.
async fn certificate_fault(
    what: &str,
    fault: impl FnOnce(&Path, &TestCa),
    expected: &[&str],
    fix: impl FnOnce(&Path, &TestCa),
) {
    let setup = Setup::new();
    setup.write("signpost.yaml", &setup.config_text(A));
    let gw = setup.start();
    let ca = TestCa::new();
    let old = location_of(A, "1234");
    assert_eq!(
        served_for_acme(&gw, &ca).await,
        (names(&DEV_NAMES), Some(old.clone()))
    );
    let before = gw.metric(ERRORS);
    fault(&setup.certs(), &ca);
    let body = assert_fault_reported(&gw, before, expected, &old, what).await;
    assert!(
        names_file_and_line(&body, "signpost.yaml") || body.contains(".crt: "),
        "{what}: the errors must name a file: {body}"
    );
    assert_eq!(
        served_for_acme(&gw, &ca).await,
        (names(&DEV_NAMES), Some(old.clone())),
        "{what}: the running certificate must stay in service"
    );
    fix(&setup.certs(), &ca);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (served, location) = served_for_acme(&gw, &ca).await;
        if served == names(&["acme.flexhosting.se"]) {
            assert_eq!(location, Some(old.clone()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the fixed certificate was not served within {PATIENCE:?}; still {served:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = gw.admin_post("/-/reload", &[]);
    assert_eq!(status, 200, "{what}: fixed, yet {body}");
}

/// A renewed certificate copied over the old one without its new key: the key no longer
/// belongs to the certificate. Refused naming both files; the old pair keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_whose_key_does_not_match_is_refused() {
    let key_file = Arc::new(Mutex::new(String::new()));
    let kept = key_file.clone();
    certificate_fault(
        "key mismatch",
        move |certs, ca| {
            let (crt, key) = ca.issue(&["acme.flexhosting.se"]);
            std::fs::write(certs.join("flexhosting-se.crt"), crt).unwrap();
            *kept.lock().unwrap() = key;
        },
        &[
            "flexhosting-se.crt: the private key in ",
            "flexhosting-se.key does not belong to this certificate",
        ],
        move |certs, _| {
            std::fs::write(certs.join("flexhosting-se.key"), &*key_file.lock().unwrap()).unwrap()
        },
    )
    .await;
}

/// An expired certificate dropped over a valid one (an old backup restored) is refused, so
/// clients keep getting the valid one; a valid certificate in its place is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_does_not_replace_a_valid_one() {
    let write_pair = |certs: &Path, (crt, key): (String, String)| {
        std::fs::write(certs.join("flexhosting-se.key"), key).unwrap();
        std::fs::write(certs.join("flexhosting-se.crt"), crt).unwrap();
    };
    certificate_fault(
        "expired",
        |certs, ca| write_pair(certs, ca.issue_valid(&DEV_NAMES, 2020, 2021)),
        &[
            "flexhosting-se.crt: tls: certificate expired at 2021-01-01T00:00:00Z; refused",
            "stays in service for *.flexhosting.se, flexhosting.se",
        ],
        |certs, ca| write_pair(certs, ca.issue(&["acme.flexhosting.se"])),
    )
    .await;
}

/// Every pair removed from the certificate folder: refused (HTTPS with no certificate at all
/// would fail every handshake); the loaded certificates keep serving until pairs are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_certificate_folder_is_refused() {
    certificate_fault(
        "empty folder",
        |certs, _| {
            std::fs::write(certs.join("README"), "certificates go here\n").unwrap();
            for entry in std::fs::read_dir(certs).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|x| x == "crt" || x == "key") {
                    std::fs::remove_file(path).unwrap();
                }
            }
        },
        &["tls: no certificate pairs (NAME.crt + NAME.key) in "],
        |certs, ca| {
            let (crt, key) = ca.issue(&["acme.flexhosting.se"]);
            std::fs::write(certs.join("acme.key"), key).unwrap();
            std::fs::write(certs.join("acme.crt"), crt).unwrap();
        },
    )
    .await;
}

/// A new certificate copied in before its key: refused naming the missing key; when the key
/// arrives the new certificate is served (an exact name beats the wildcard).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_its_key_is_refused_until_the_key_arrives() {
    let key_file = Arc::new(Mutex::new(String::new()));
    let kept = key_file.clone();
    certificate_fault(
        "crt without key",
        move |certs, ca| {
            let (crt, key) = ca.issue(&["acme.flexhosting.se"]);
            std::fs::write(certs.join("acme.crt"), crt).unwrap();
            *kept.lock().unwrap() = key;
        },
        &["acme.crt: its private key ", "acme.key is missing"],
        move |certs, _| std::fs::write(certs.join("acme.key"), &*key_file.lock().unwrap()).unwrap(),
    )
    .await;
}

/// With nothing valid to fall back on (at start-up), an expired certificate is loaded and
/// served with a warning in the log, rather than refusing to start and taking plain HTTP and
/// every other certificate down with it; see `CertStore::refused_replacements`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_at_start_is_served_with_a_warning() {
    let setup = Setup::new();
    let ca = TestCa::new();
    let (crt, key) = ca.issue_valid(&["acme.flexhosting.se"], 2020, 2021);
    setup.write("certs/acme.crt", &crt);
    setup.write("certs/acme.key", &key);
    setup.write("signpost.yaml", &setup.config_text(A));
    let gw = setup.start();
    assert!(
        log_of(&gw).contains("acme.crt")
            && log_of(&gw).contains("certificate expired at 2021-01-01T00:00:00Z"),
        "no warning:\n{}",
        log_of(&gw)
    );
    let url = format!(
        "https://acme.flexhosting.se:{}/Timeclock/Entre",
        gw.https.port()
    );
    let err = https_client(&gw, &ca).get(&url).send().await.unwrap_err();
    assert!(
        format!("{err:?}").to_lowercase().contains("expired"),
        "{err:?}"
    );
    let lenient = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("acme.flexhosting.se", gw.https)
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = lenient.get(&url).send().await.unwrap();
    assert_eq!(served_names(&resp), names(&["acme.flexhosting.se"]));
    assert_eq!(
        answer(&gw).await,
        (307, Some(location_of(A, "1234"))),
        "plain HTTP works"
    );
}

/// The faults above at start-up: `run` exits 1 with the file, line and reason before it binds
/// any port (tests/cli.rs covers a broken config file; these are its includes and certs).
#[test]
fn start_up_with_a_missing_include_or_bad_certificates_exits_before_binding() {
    let ca = TestCa::new();
    type Break = Box<dyn Fn(&Setup)>;
    let cases: Vec<(&str, Break, Vec<&str>)> = vec![
        (
            "missing literal include",
            Box::new(|s: &Setup| {
                let (main, _) = s.split_config(A, &["tenants/acme.yaml"], "1234");
                s.write("signpost.yaml", &main);
            }),
            vec!["signpost.yaml:", ": include `tenants/acme.yaml`: no file "],
        ),
        (
            "certificate folder missing",
            Box::new(|s: &Setup| {
                std::fs::remove_dir_all(s.certs()).unwrap();
                s.write("signpost.yaml", &s.config_text(A));
            }),
            vec!["signpost.yaml:", ": tls: cannot read folder "],
        ),
        (
            "key does not match",
            Box::new({
                let (crt, _) = ca.issue(&["acme.flexhosting.se"]);
                move |s: &Setup| {
                    s.write("certs/flexhosting-se.crt", &crt);
                    s.write("signpost.yaml", &s.config_text(A));
                }
            }),
            vec![
                "signpost.yaml:",
                "flexhosting-se.key does not belong to this certificate",
            ],
        ),
        (
            "certificate without key",
            Box::new(|s: &Setup| {
                std::fs::remove_file(s.certs().join("exempel-com.key")).unwrap();
                s.write("signpost.yaml", &s.config_text(A));
            }),
            vec!["signpost.yaml:", "exempel-com.key is missing"],
        ),
    ];
    for (what, break_it, expected) in cases {
        let setup = Setup::new();
        break_it(&setup);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
            .args(["run", "--config"])
            .arg(setup.config_path())
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {shown}");
        for part in expected {
            assert!(shown.contains(part), "{what}: expected {part:?} in {shown}");
        }
        assert!(
            names_file_and_line(&shown, "signpost.yaml"),
            "{what}: file and line: {shown}"
        );
    }
}
