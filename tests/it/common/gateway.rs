//! The real `signpost` binary as a test runs it: on a config whose listeners say port `0`, so
//! the kernel picks free ports when Signpost binds them (no pick-then-release race); the
//! addresses it bound are read from its "listening" log line.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_yaml::Value;

use super::load::Share;
use super::raw::blocking_exchange;
use super::{repo, TestCa, Upstream, EXAMPLE_HOSTS};

/// The real gateway binary, started on free ports with a config derived from the example.
pub struct Gateway {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    /// The config file the gateway runs on (inside `dir`).
    pub config: PathBuf,
    /// Keeps heavy tests from running meanwhile (see [`super::load`]).
    _share: Option<Share>,
}

/// Where the gateway's log goes.
pub enum Log<'a> {
    /// The test's own stderr, filtered by this `RUST_LOG`.
    Inherit(&'a str),
    /// This file (appended to), filtered by this `RUST_LOG`.
    File(&'a Path, &'a str),
}

impl Gateway {
    /// Starts `config/example.yaml` with its listeners on free ports, its certificates from
    /// the repo, and every upstream pointed at `upstream` (trusting `ca`).
    pub fn start_example(upstream: Option<(&Upstream, &TestCa)>) -> Self {
        Self::start_with(|config, dir| {
            if let Some((up, ca)) = upstream {
                point_upstreams_at(config, dir, up.addr, ca);
            }
        })
    }

    /// The example config with every upstream the recording stand-in (returned too), after
    /// `patch` has changed it.
    pub async fn with_recording_upstream(
        patch: impl FnOnce(&mut Value, &Path),
    ) -> (Self, Upstream) {
        let ca = TestCa::new();
        let up = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
        let gw = Self::start_with(|config, dir| {
            point_upstreams_at(config, dir, up.addr, &ca);
            patch(config, dir);
        });
        (gw, up)
    }

    /// Starts the example config after `patch` has changed it. Until a test points them
    /// elsewhere, the upstreams are a closed local port: no test depends on the real new
    /// domains (or on their names failing to resolve), and a forward nobody set up is refused.
    pub fn start_with(patch: impl FnOnce(&mut Value, &Path)) -> Self {
        let mut config = crate::common::example_config();
        let dir = tempfile::tempdir().unwrap();
        for listener in ["http", "https", "admin"] {
            config["listen"][listener] = Value::from("127.0.0.1:0");
        }
        config["tls"]["certs"] = Value::from(repo().join("certs").to_str().unwrap());
        for (_, upstream) in config["upstreams"].as_mapping_mut().unwrap().iter_mut() {
            upstream["address"] = Value::from(super::closed_port().to_string());
        }
        patch(&mut config, dir.path());
        let path = dir.path().join("signpost.yaml");
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
        Self::spawn(path, dir, Log::Inherit("error"))
    }

    /// Runs the binary on an existing config (listeners on port `0` or free ports of the
    /// test's choosing) and waits until it is ready. Its state directory (where the census is
    /// kept by default) is `state` in `dir`.
    pub fn spawn(config: PathBuf, dir: tempfile::TempDir, log: Log<'_>) -> Self {
        let state = dir.path().join("state");
        Self::spawn_with(config, dir, log, &state)
    }

    /// [`Self::spawn`] with the state directory the test chooses (to keep it across runs).
    pub fn spawn_with(
        config: PathBuf,
        dir: tempfile::TempDir,
        log: Log<'_>,
        state_directory: &Path,
    ) -> Self {
        let share = Share::take();
        let (rust_log, file) = match log {
            Log::Inherit(filter) => (filter, None),
            Log::File(path, filter) => (filter, Some(path.to_owned())),
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_signpost"))
            .args(["run", "--log-format", "json", "--config"])
            .arg(&config)
            .env("RUST_LOG", format!("{rust_log},signpost::server=info"))
            .env("STATE_DIRECTORY", state_directory)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let listening = forward_log(child.stderr.take().unwrap(), file);
        let deadline = Instant::now() + Duration::from_secs(30);
        let bound = loop {
            match listening.recv_timeout(Duration::from_millis(50)) {
                Ok(bound) => break bound,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().unwrap();
                    panic!("signpost exited before it listened: {status}");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(
                        Instant::now() < deadline,
                        "signpost did not listen within 30 s"
                    );
                }
            }
        };
        let unbound: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let mut gateway = Self {
            child,
            http: bound[0].unwrap_or(unbound),
            https: bound[1].unwrap_or(unbound),
            admin: bound[2].unwrap_or(unbound),
            dir,
            config,
            _share: share,
        };
        if bound[2].is_some() {
            gateway.wait_ready();
        }
        gateway
    }

    /// Waits until `/-/ready` says the proxy's listeners are bound (or the process dies).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("signpost exited before it was ready: {status}");
            }
            if admin_get(self.admin, "/-/ready").is_some_and(|(status, _)| status == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "signpost was not ready within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the admin listener: (status, body).
    pub fn admin(&self, path: &str) -> (u16, String) {
        admin_get(self.admin, path).expect("admin listener answers")
    }

    /// POST on the admin listener: (status, body).
    pub fn admin_post(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        admin_request(self.admin, "POST", path, headers).expect("admin listener answers")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The gateway's resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Sends `signal` (`TERM`, `QUIT`, `HUP`…) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.signal("TERM");
        self.child.wait().ok().and_then(|s| s.code())
    }

    /// The value of the first `/metrics` line starting with `line_start` (0 when absent).
    pub fn metric(&self, line_start: &str) -> f64 {
        let (_, text) = self.admin("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    /// [`Self::metric`] once `settled` holds for it, or after 5 s whatever it is then: a request
    /// is counted just after its response is written, so the client may read the response first.
    pub fn metric_when(&self, line_start: &str, settled: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let value = self.metric(line_start);
            if settled(value) || Instant::now() > deadline {
                return value;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit` for the process to exit by itself; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The gateway's address for a URL's scheme.
    pub fn addr_for(&self, scheme: &str) -> SocketAddr {
        if scheme == "https" {
            self.https
        } else {
            self.http
        }
    }

    /// A client that trusts the development CA, resolves every example host to this gateway,
    /// and does not follow redirects.
    pub fn client(&self, scheme: &str) -> reqwest::Client {
        client_to(self.addr_for(scheme))
    }

    /// [`Self::client`] still to be configured (HTTP/1 only, a User-Agent…).
    pub fn client_builder(&self, scheme: &str) -> reqwest::ClientBuilder {
        client_builder_to(self.addr_for(scheme))
    }

    /// GET a legacy URL (its port replaced by this gateway's) with the default client.
    pub async fn get(&self, url: &str) -> reqwest::Response {
        let scheme = url.split(':').next().unwrap();
        self.client(scheme).get(self.url(url)).send().await.unwrap()
    }

    /// The same URL with the port of this gateway's listener for its scheme.
    pub fn url(&self, url: &str) -> String {
        let scheme = url.split(':').next().unwrap();
        url_at(url, self.addr_for(scheme))
    }
}

/// A client that trusts the development CA, resolves every example host to `addr` (a gateway,
/// or a load balancer in front of some), and does not follow redirects.
pub fn client_to(addr: SocketAddr) -> reqwest::Client {
    client_builder_to(addr).build().unwrap()
}

/// [`client_to`] still to be configured.
pub fn client_builder_to(addr: SocketAddr) -> reqwest::ClientBuilder {
    let ca = std::fs::read(repo().join("certs/dev-ca/ca.pem")).unwrap();
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .tls_info(true)
        .timeout(Duration::from_secs(20));
    for host in EXAMPLE_HOSTS {
        builder = builder.resolve(host, addr);
    }
    builder
}

/// `url` with the port of `addr`.
pub fn url_at(url: &str, addr: SocketAddr) -> String {
    let mut u = reqwest::Url::parse(url).unwrap();
    u.set_port(Some(addr.port())).unwrap();
    u.to_string()
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Points every upstream of `config` at `addr`, trusting `ca`.
pub fn point_upstreams_at(config: &mut Value, dir: &Path, addr: SocketAddr, ca: &TestCa) {
    let ca_path = dir.join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    for (_, u) in config["upstreams"].as_mapping_mut().unwrap().iter_mut() {
        u["address"] = Value::from(addr.to_string());
        u["ca"] = Value::from(ca_path.to_str().unwrap());
    }
}

/// Passes the gateway's log on (to the test's stderr or a file) and sends the addresses of
/// its "listening" line — `[http, https, admin]` — once it comes.
fn forward_log(
    stderr: std::process::ChildStderr,
    file: Option<PathBuf>,
) -> mpsc::Receiver<[Option<SocketAddr>; 3]> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut file = file.map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap()
        });
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Some(bound) = listening(&line) {
                let _ = tx.send(bound);
            }
            match &mut file {
                Some(file) => {
                    let _ = writeln!(file, "{line}");
                }
                None => eprintln!("{line}"),
            }
        }
    });
    rx
}

/// The addresses of a "listening" log line (JSON, as Signpost logs by default).
fn listening(line: &str) -> Option<[Option<SocketAddr>; 3]> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = event.get("fields")?;
    (fields.get("message")? == "listening")
        .then(|| ["http", "https", "admin"].map(|name| fields.get(name)?.as_str()?.parse().ok()))
}

pub fn admin_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    admin_request(addr, "GET", path, &[])
}

/// A minimal HTTP/1.1 request over a fresh connection (`Connection: close`), blocking:
/// (status, body).
pub fn admin_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n");
    let response = blocking_exchange(addr, request.as_bytes(), Duration::from_secs(30))?;
    Some((
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    ))
}
