//! Test harness: the real `signpost` binary on free loopback ports, a real HTTPS upstream that
//! records what it receives, and real clients. No fixed ports, no sleeping for a fixed time.
#![allow(dead_code)] // each test binary uses its own part of the harness

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_yaml::Value;

pub const EXAMPLE_HOSTS: [&str; 4] = [
    "acme.flexhosting.se",
    "hrm.exempel.com",
    "exempel.com",
    "unknown.example.org",
];

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared expectation vectors, beside the checkout.
pub fn vectors_path() -> PathBuf {
    repo().join("../shared/vectors/flexhrm.yaml")
}

/// A port nothing listens on right now, chosen by the kernel.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA made for one test run, and the certificates it issues.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: String,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "signpost test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        Self { issuer, pem }
    }

    /// (certificate PEM, key PEM) for these DNS names.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// (certificate PEM, key PEM) for these DNS names, valid from 1 January of `from` to
    /// 1 January of `until` (e.g. `2020, 2021` for one that has expired).
    pub fn issue_valid(&self, names: &[&str], from: i32, until: i32) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(until, 1, 1);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

/// A real HTTPS server standing in for the new domains: records every request and answers
/// `201` with a fixed body and an `x-upstream: stand-in` header.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

pub const UPSTREAM_BODY: &str = "hello from the new domain";
/// What `/…/stream` answers, piece by piece.
pub const STREAMED: [&str; 3] = ["one,", "two,", "three"];

/// Whether the request just recorded asked for the streamed answer.
fn parts_target_streams(record: &Mutex<Vec<Seen>>) -> bool {
    record
        .lock()
        .unwrap()
        .last()
        .is_some_and(|s| s.target.contains("/stream"))
}

impl Upstream {
    pub async fn start(ca: &TestCa, names: &[&str]) -> Self {
        let (cert, key) = ca.issue(names);
        let certs = rustls_pemfile::certs(&mut cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut key.as_bytes())
            .unwrap()
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let record = record.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            record.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                target: parts.uri.to_string(),
                                headers: parts.headers,
                                body,
                            });
                            let builder = hyper::Response::builder()
                                .status(201)
                                .header("x-upstream", "stand-in");
                            // `/…/stream` answers in pieces without a length (chunked).
                            let body = if parts_target_streams(&record) {
                                let pieces: Vec<
                                    Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
                                > = STREAMED
                                    .iter()
                                    .map(|p| {
                                        Ok(hyper::body::Frame::data(Bytes::from_static(
                                            p.as_bytes(),
                                        )))
                                    })
                                    .collect();
                                http_body_util::Either::Left(http_body_util::StreamBody::new(
                                    futures_util::stream::iter(pieces),
                                ))
                            } else {
                                http_body_util::Either::Right(Full::new(Bytes::from_static(
                                    UPSTREAM_BODY.as_bytes(),
                                )))
                            };
                            Ok::<_, std::convert::Infallible>(builder.body(body).unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// The real gateway binary, started on free ports with a config derived from the example.
pub struct Gateway {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    /// The config file the gateway runs on (inside `dir`).
    pub config: PathBuf,
}

impl Gateway {
    /// Starts `config/example.yaml` with its listeners on free ports, its certificates from
    /// the repo, and every upstream pointed at `upstream` (trusting `ca`).
    pub fn start_example(upstream: Option<(&Upstream, &TestCa)>) -> Self {
        Self::start_with(|config, dir| {
            if let Some((up, ca)) = upstream {
                let ca_path = dir.join("upstream-ca.pem");
                std::fs::write(&ca_path, &ca.pem).unwrap();
                let upstreams = config["upstreams"].as_mapping_mut().unwrap();
                for (_, u) in upstreams.iter_mut() {
                    u["address"] = Value::from(up.addr.to_string());
                    u["ca"] = Value::from(ca_path.to_str().unwrap());
                }
            }
        })
    }

    /// Starts the example config after `patch` has changed it.
    pub fn start_with(patch: impl FnOnce(&mut Value, &Path)) -> Self {
        let text = std::fs::read_to_string(repo().join("config/example.yaml")).unwrap();
        let mut config: Value = serde_yaml::from_str(&text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        config["listen"]["http"] = Value::from(http.to_string());
        config["listen"]["https"] = Value::from(https.to_string());
        config["listen"]["admin"] = Value::from(admin.to_string());
        config["tls"]["certs"] = Value::from(repo().join("certs").to_str().unwrap());
        patch(&mut config, dir.path());
        let path = dir.path().join("signpost.yaml");
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
        Self::spawn(path, dir, [http, https, admin], Stdio::inherit(), "error")
    }

    /// Runs the binary on an existing config whose listeners are `[http, https, admin]`;
    /// `stderr` receives its logs, filtered by `rust_log`.
    pub fn spawn(
        config: PathBuf,
        dir: tempfile::TempDir,
        [http, https, admin]: [SocketAddr; 3],
        stderr: Stdio,
        rust_log: &str,
    ) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_signpost"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut gateway = Self {
            child,
            http,
            https,
            admin,
            dir,
            config,
        };
        gateway.wait_ready();
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

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
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
        let ca = std::fs::read(repo().join("certs/dev-ca/ca.pem")).unwrap();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .tls_info(true)
            .timeout(Duration::from_secs(20));
        for host in EXAMPLE_HOSTS {
            builder = builder.resolve(host, self.addr_for(scheme));
        }
        builder.build().unwrap()
    }

    /// GET a legacy URL (its port replaced by this gateway's) with the default client.
    pub async fn get(&self, url: &str) -> reqwest::Response {
        let scheme = url.split(':').next().unwrap();
        self.client(scheme).get(self.url(url)).send().await.unwrap()
    }

    /// The same URL with the port of this gateway's listener for its scheme.
    pub fn url(&self, url: &str) -> String {
        let mut u = reqwest::Url::parse(url).unwrap();
        let port = self.addr_for(u.scheme()).port();
        u.set_port(Some(port)).unwrap();
        u.to_string()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn admin_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    admin_request(addr, "GET", path, &[])
}

/// A minimal HTTP/1.1 request over a fresh connection (`Connection: close`), blocking.
fn admin_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n").ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// The `Content-Length` in an HTTP head (`None` when absent or not a number).
pub fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

/// DNS names of the certificate a response came over.
pub fn served_names(resp: &reqwest::Response) -> Vec<String> {
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("TLS info");
    let der = info.peer_certificate().expect("peer certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// Clients that GET one URL in a loop while a test changes things underneath, and count every
/// answer that is not a 307 to one of the `valid` locations.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    bad: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    pub fn start(gw: &Gateway, url: &str, clients: usize, valid: &[String]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(Mutex::new(Vec::new()));
        let valid: Arc<[String]> = valid.into();
        let url = gw.url(url);
        let tasks = (0..clients)
            .map(|_| {
                let (client, url, stop, ok, bad, valid) = (
                    gw.client("http"),
                    url.clone(),
                    stop.clone(),
                    ok.clone(),
                    bad.clone(),
                    valid.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match client.get(&url).send().await {
                            Ok(resp) => {
                                let loc = resp
                                    .headers()
                                    .get("location")
                                    .map(|v| v.to_str().unwrap().to_owned());
                                if resp.status() == 307
                                    && loc.as_ref().is_some_and(|l| valid.contains(l))
                                {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    bad.lock()
                                        .unwrap()
                                        .push(format!("{} {loc:?}", resp.status()));
                                }
                            }
                            Err(e) => bad.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            bad,
            tasks,
        }
    }

    /// Stops the clients; asserts that none failed and that some got through; how many did.
    pub async fn finish(self, what: &str) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let bad = self.bad.lock().unwrap().clone();
        let ok = self.ok.load(Ordering::Relaxed);
        assert!(
            bad.is_empty(),
            "{what}: {} failed requests after {ok} good ones, e.g. {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
        assert!(ok > 0, "{what}: no request went through");
        ok
    }
}
