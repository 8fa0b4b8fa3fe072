//! The real-client matrix: integrations nobody will touch, as real clients (curl, Python
//! `requests`, Java 17 `HttpURLConnection`, Node's `fetch`, a calendar fetcher) send them to
//! the legacy URLs, through Signpost and through a plain nginx `return 301` of the same
//! mappings. A cell passes when the request arrived intact at the stand-in for the new domains
//! (method, path, query, `Authorization`, body) and the client got its answer.
//!
//! The clients live in `tests/clients/`; `scripts/install-deps clients` installs their
//! runtimes. A client whose runtime is absent is skipped with a message. The tables are printed
//! and written to `target/tmp/client-matrix.md` (the README shows them).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{free_port, repo, Gateway, TestCa, Upstream, UPSTREAM_BODY};
use serde_yaml::Value;

const NEW_HOSTS: [&str; 4] = [
    "api.flexhrm.com",
    "web.flexhrm.com",
    "timeclock.flexhrm.com",
    "mobile.flexhrm.com",
];
const BROWSER: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
const OUTLOOK: &str = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)";

/// One legacy call and what the new endpoint expects to receive for it.
struct Route {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Option<&'static str>,
    /// Method and target the new endpoint must see; `Authorization` and body must be the sent
    /// ones.
    expect: (&'static str, &'static str),
}

static ROUTES: [Route; 5] = [
    Route {
        name: "API `POST` with `Authorization` and JSON",
        method: "POST",
        path: "/HRM/API/v1/timetransactions?dryRun=true",
        headers: &[
            ("Authorization", "Bearer s3cr3t-token"),
            ("Content-Type", "application/json"),
        ],
        body: Some(r#"{"employee":"E-17","minutes":480}"#),
        expect: ("POST", "/v1/timetransactions?dryRun=true"),
    },
    Route {
        name: "API `GET` with a query",
        method: "GET",
        path: "/HRM/API/v1/employees?updatedSince=2026-01-01&page=2",
        headers: &[("Authorization", "Basic aW50ZWdyYXRpb246c2VjcmV0")],
        body: None,
        expect: ("GET", "/v1/employees?updatedSince=2026-01-01&page=2"),
    },
    Route {
        name: "calendar feed `GET`",
        method: "GET",
        path: "/HRM/Calendar/abc123.ics",
        headers: &[],
        body: None,
        expect: ("GET", "/calendar/1234/abc123.ics"),
    },
    Route {
        name: "IP1 SMS callback `POST` (form)",
        method: "POST",
        path: "/HRM/IP1/Callback",
        headers: &[("Content-Type", "application/x-www-form-urlencoded")],
        body: Some("status=delivered&id=42&to=%2B46701234567"),
        expect: ("POST", "/ip1/callback/1234"),
    },
    Route {
        name: "timeclock `GET`, browser User-Agent",
        method: "GET",
        path: "/Timeclock/Entre",
        headers: &[("User-Agent", BROWSER)],
        body: None,
        expect: ("GET", "/Entre/1234"),
    },
];

#[derive(Clone, Copy, PartialEq)]
enum Client {
    Curl,
    CurlFollow,
    Python,
    Java,
    Node,
    Calendar,
}

const CLIENTS: [Client; 6] = [
    Client::Curl,
    Client::CurlFollow,
    Client::Python,
    Client::Java,
    Client::Node,
    Client::Calendar,
];

impl Client {
    fn title(self) -> &'static str {
        match self {
            Client::Curl => "curl",
            Client::CurlFollow => "curl -L",
            Client::Python => "Python requests",
            Client::Java => "Java HttpURLConnection",
            Client::Node => "Node fetch",
            Client::Calendar => "calendar fetcher",
        }
    }
}

/// Files the clients need: trusted CAs (PEM bundle and a Java trust store), a hosts file for
/// Java, a venv with `requests`.
struct Env {
    dir: tempfile::TempDir,
    bundle: PathBuf,
    /// `Err(why)` for a client whose runtime is absent.
    python: Result<PathBuf, String>,
    java: Result<(), String>,
    node: Result<(), String>,
    curl: Result<(), String>,
}

fn runs(program: &str, arg: &str) -> Result<(), String> {
    match Command::new(program).arg(arg).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{program} {arg}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )),
        Err(e) => Err(format!("`{program}` is not installed ({e})")),
    }
}

impl Env {
    fn new(test_ca: &TestCa) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dev_ca = std::fs::read_to_string(repo().join("certs/dev-ca/ca.pem")).unwrap();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, format!("{dev_ca}\n{}", test_ca.pem)).unwrap();
        let java = runs("java", "-version").and_then(|()| {
            for (alias, pem) in [("dev", dev_ca.as_str()), ("test", test_ca.pem.as_str())] {
                let file = dir.path().join(format!("{alias}.pem"));
                std::fs::write(&file, pem).unwrap();
                let out = Command::new("keytool")
                    .args([
                        "-importcert",
                        "-noprompt",
                        "-storetype",
                        "PKCS12",
                        "-storepass",
                        "changeit",
                        "-alias",
                        alias,
                        "-file",
                    ])
                    .arg(&file)
                    .arg("-keystore")
                    .arg(dir.path().join("trust.p12"))
                    .output()
                    .map_err(|e| format!("`keytool` is not installed ({e})"))?;
                if !out.status.success() {
                    return Err(format!("keytool: {}", String::from_utf8_lossy(&out.stderr)));
                }
            }
            let names = ["acme.flexhosting.se"]
                .iter()
                .chain(&NEW_HOSTS)
                .copied()
                .collect::<Vec<_>>();
            std::fs::write(
                dir.path().join("hosts"),
                format!("127.0.0.1 {}\n", names.join(" ")),
            )
            .unwrap();
            Ok(())
        });
        Self {
            python: python_venv(),
            java,
            node: runs("node", "--version"),
            curl: runs("curl", "--version"),
            bundle,
            dir,
        }
    }

    fn available(&self, client: Client) -> Result<(), String> {
        match client {
            Client::Curl | Client::CurlFollow => self.curl.clone(),
            Client::Python | Client::Calendar => {
                self.python.as_ref().map(|_| ()).map_err(Clone::clone)
            }
            Client::Java => self.java.clone(),
            Client::Node => self.node.clone(),
        }
    }

    /// Runs one request with `client`: (status, body), or what went wrong.
    fn send(&self, client: Client, route: &Route, url: &str) -> Result<(u16, String), String> {
        let mut headers: Vec<(&str, &str)> = route.headers.to_vec();
        if client == Client::Calendar {
            headers.push(("User-Agent", OUTLOOK));
        }
        let clients = repo().join("tests/clients");
        let mut cmd = match client {
            Client::Curl | Client::CurlFollow => {
                let mut cmd = Command::new("curl");
                cmd.args([
                    "-sS",
                    "--max-time",
                    "10",
                    "--connect-to",
                    "::127.0.0.1:",
                    "--cacert",
                ])
                .arg(&self.bundle)
                .args(["-w", "\n%{http_code}"]);
                if client == Client::CurlFollow {
                    cmd.arg("-L");
                }
                for (name, value) in &headers {
                    cmd.arg("-H").arg(format!("{name}: {value}"));
                }
                if let Some(body) = route.body {
                    cmd.arg("--data-binary").arg(body);
                }
                cmd.arg(url);
                cmd
            }
            Client::Python | Client::Calendar => {
                let mut cmd = Command::new(self.python.as_ref().unwrap());
                cmd.arg(clients.join("client.py"))
                    .env("REQUESTS_CA_BUNDLE", &self.bundle);
                if client == Client::Calendar {
                    cmd.arg("--no-follow");
                }
                cmd
            }
            Client::Java => {
                let mut cmd = Command::new("java");
                cmd.arg(format!(
                    "-Djdk.net.hosts.file={}",
                    self.dir.path().join("hosts").display()
                ))
                .arg(format!(
                    "-Djavax.net.ssl.trustStore={}",
                    self.dir.path().join("trust.p12").display()
                ))
                .arg("-Djavax.net.ssl.trustStorePassword=changeit")
                .arg(clients.join("Client.java"));
                cmd
            }
            Client::Node => {
                let mut cmd = Command::new("node");
                cmd.arg(clients.join("client.mjs"))
                    .env("NODE_EXTRA_CA_CERTS", &self.bundle);
                cmd
            }
        };
        if !matches!(client, Client::Curl | Client::CurlFollow) {
            cmd.arg(route.method).arg(url);
            for (name, value) in &headers {
                cmd.arg("-H").arg(format!("{name}: {value}"));
            }
            if let Some(body) = route.body {
                cmd.arg("-d").arg(body);
            }
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if matches!(client, Client::Curl | Client::CurlFollow) {
            let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
            return match code.trim().parse() {
                Ok(code) if out.status.success() => Ok((code, body.to_owned())),
                _ => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
            };
        }
        let json: serde_json::Value = serde_json::from_str(stdout.trim())
            .map_err(|_| format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))?;
        match (json["status"].as_u64(), json["body"].as_str()) {
            (Some(status), Some(body)) => Ok((status as u16, body.to_owned())),
            _ => Err(json["error"].as_str().unwrap_or("no answer").to_owned()),
        }
    }
}

/// A venv with `requests` under `target/tmp/` (made once, reused); `Err` when Python or PyPI is
/// not available.
fn python_venv() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("client-venv");
    let python = venv.join("bin/python");
    let has_requests = |p: &Path| {
        Command::new(p)
            .args(["-c", "import requests"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has_requests(&python) {
        return Ok(python);
    }
    runs("python3", "--version")?;
    let made = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .output();
    if !made.is_ok_and(|o| o.status.success()) {
        return Err("python3 cannot make a venv (install python3-venv)".into());
    }
    let pip = Command::new(&python)
        .args(["-m", "pip", "install", "-q", "requests"])
        .output()
        .map_err(|e| e.to_string())?;
    if !pip.status.success() || !has_requests(&python) {
        return Err(format!(
            "pip install requests failed: {}",
            String::from_utf8_lossy(&pip.stderr)
        ));
    }
    Ok(python)
}

/// What one cell shows.
fn verdict(
    route: &Route,
    answer: Result<(u16, String), String>,
    seen: &[crate::common::Seen],
) -> (bool, String) {
    let arrived = seen
        .iter()
        .find(|s| (s.method.as_str(), s.target.as_str()) == route.expect);
    let sent_auth = route
        .headers
        .iter()
        .find(|(n, _)| *n == "Authorization")
        .map(|(_, v)| *v);
    let answered = matches!(&answer, Ok((201, body)) if body == UPSTREAM_BODY);
    let problem = match (arrived, &answer) {
        (_, Err(e)) => format!("client error: {}", e.lines().next().unwrap_or("")),
        (None, Ok((status, _))) => match seen.first() {
            Some(s) => format!("arrived as {} {}", s.method, s.target),
            None => format!("stopped at {status}"),
        },
        (Some(s), _) if s.header("authorization").as_deref() != sent_auth => {
            "`Authorization` dropped".into()
        }
        (Some(s), _) if route.body.is_some_and(|b| s.body != b.as_bytes()) => "body lost".into(),
        (Some(_), Ok((status, _))) if !answered => format!("answer lost ({status})"),
        (Some(_), _) => return (true, "✓".into()),
    };
    (false, format!("✗ {problem}"))
}

/// nginx on `dir`'s config; stopped with SIGTERM, so its master stops the workers too (a
/// killed master leaves them running, holding the test's output open).
struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn nginx_301(dir: &Path, port: u16, new_port: u16) -> Result<Nginx, String> {
    runs("nginx", "-v")?;
    let certs = repo().join("certs");
    let conf = format!(
        r#"daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
worker_processes 1;
events {{}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name acme.flexhosting.se;
        ssl_certificate {certs}/flexhosting-se.crt;
        ssl_certificate_key {certs}/flexhosting-se.key;
        location ~ ^/HRM/API/(.*)$ {{ return 301 https://api.flexhrm.com:{new_port}/$1$is_args$args; }}
        location ~ ^/HRM/Calendar/(.*)$ {{ return 301 https://web.flexhrm.com:{new_port}/calendar/1234/$1; }}
        location = /HRM/IP1/Callback {{ return 301 https://web.flexhrm.com:{new_port}/ip1/callback/1234; }}
        location ~ ^/Timeclock/([^/]+)$ {{ return 301 https://timeclock.flexhrm.com:{new_port}/$1/1234; }}
    }}
}}
"#,
        dir = dir.display(),
        certs = certs.display(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let nginx = Nginx(
        Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(std::fs::read_to_string(dir.join("error.log")).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(nginx)
}

/// Runs every client on every route against `port` (Signpost's or nginx's): the verdicts.
async fn matrix(env: &Arc<Env>, up: &Upstream, port: u16) -> Vec<Vec<(bool, String)>> {
    let mut rows = Vec::new();
    for route in ROUTES.iter() {
        let mut row = Vec::new();
        for client in CLIENTS {
            if client == Client::Calendar && !route.path.contains("Calendar") {
                row.push((true, "—".to_owned()));
                continue;
            }
            if let Err(why) = env.available(client) {
                row.push((true, format!("skipped: {why}")));
                continue;
            }
            up.take();
            let url = format!("https://acme.flexhosting.se:{port}{}", route.path);
            let env = env.clone();
            let answer = tokio::task::spawn_blocking(move || env.send(client, route, &url))
                .await
                .unwrap();
            row.push(verdict(route, answer, &up.take()));
        }
        rows.push(row);
    }
    rows
}

fn table(title: &str, rows: &[Vec<(bool, String)>]) -> String {
    let mut out = format!("| {title} |");
    for c in CLIENTS {
        write!(out, " {} |", c.title()).unwrap();
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(CLIENTS.len()));
    for (route, row) in ROUTES.iter().zip(rows) {
        write!(out, "\n| {} |", route.name).unwrap();
        for (_, cell) in row {
            write!(out, " {cell} |").unwrap();
        }
    }
    out.push('\n');
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_reach_the_new_endpoints_through_signpost() {
    let _alone = crate::common::alone();
    let ca = TestCa::new();
    let up = Upstream::start(&ca, &NEW_HOSTS).await;
    let new_port = up.addr.port();
    let gw = Gateway::start_with(|config, dir| {
        let ca_path = dir.join("stand-in-ca.pem");
        std::fs::write(&ca_path, &ca.pem).unwrap();
        for (_, u) in config["upstreams"].as_mapping_mut().unwrap().iter_mut() {
            u["address"] = Value::from(up.addr.to_string());
            u["ca"] = Value::from(ca_path.to_str().unwrap());
        }
        // Redirects name the new domains on the stand-in's port.
        for (_, v) in config["vars"].as_mapping_mut().unwrap().iter_mut() {
            *v = Value::from(format!("{}:{new_port}", v.as_str().unwrap()));
        }
    });
    let env = Arc::new(Env::new(&ca));
    let signpost = matrix(&env, &up, gw.https.port()).await;
    let nginx_dir = tempfile::tempdir().unwrap();
    let nginx_port = free_port();
    let nginx = match nginx_301(nginx_dir.path(), nginx_port, new_port) {
        Ok(nginx) => {
            let rows = matrix(&env, &up, nginx_port).await;
            drop(nginx);
            Ok(rows)
        }
        Err(why) => Err(why),
    };

    let mut report = table("through Signpost", &signpost);
    match &nginx {
        Ok(rows) => report.push_str(&format!("\n{}", table("through nginx `return 301`", rows))),
        Err(why) => report.push_str(&format!("\nnginx skipped: {why}\n")),
    }
    println!("{report}");
    std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("client-matrix.md"),
        &report,
    )
    .unwrap();
    for client in CLIENTS {
        if let Err(why) = env.available(client) {
            eprintln!("client matrix: {} skipped: {why}", client.title());
        }
    }

    // Every cell passes through Signpost, except the one a redirect cannot pass: a timeclock
    // redirect (by design, for browsers) shown to curl without -L, which never follows.
    for (route, row) in ROUTES.iter().zip(&signpost) {
        for (client, (ok, cell)) in CLIENTS.iter().zip(row) {
            let unfollowed_redirect =
                route.path.starts_with("/Timeclock") && *client == Client::Curl;
            if unfollowed_redirect {
                assert_eq!(
                    cell,
                    "✗ stopped at 307",
                    "{}: {}",
                    route.name,
                    client.title()
                );
            } else {
                assert!(ok, "{} with {}: {cell}", route.name, client.title());
            }
        }
    }

    // The census names each real client's class from the User-Agent it really sends.
    let expected = [
        (Client::Curl, "curl/", "script"),
        (Client::Python, "python-requests/", "script"),
        (Client::Java, "Java/", "script"),
        (Client::Node, "node", "script"),
        (Client::Calendar, OUTLOOK, "calendar"),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    for (client, agent, class) in expected {
        if env.available(client).is_err() {
            continue;
        }
        loop {
            let report: serde_json::Value =
                serde_json::from_str(&gw.admin("/stragglers.json").1).unwrap();
            let classes: Vec<(&str, &str)> = report["clients"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    (
                        r["client"]["user_agent"].as_str().unwrap(),
                        r["client"]["class"].as_str().unwrap(),
                    )
                })
                .collect();
            let seen: Vec<&str> = classes
                .iter()
                .filter(|(ua, _)| ua.starts_with(agent))
                .map(|(_, c)| *c)
                .collect();
            if !seen.is_empty() {
                assert!(
                    seen.iter().all(|c| *c == class),
                    "{}: {agent}… classed {seen:?}, not {class}",
                    client.title()
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no census row for {agent}…: {classes:?}",
                client.title()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
