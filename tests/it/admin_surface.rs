//! The admin surface: where it listens, who may use it, and what it gives away.
//!
//! - There is no admin listener unless `listen.admin` names one (the bundled example puts it
//!   on loopback), and the admin routes are never served on the public HTTP/HTTPS ports, for
//!   tenant hosts, unknown hosts or the admin's own names: there they are ordinary traffic.
//! - `POST /-/reload` without `admin.token_file` is for loopback clients only (an IPv4 client
//!   of a dual-stack `[::]` listener included); with a token, every client needs it, GETs
//!   need none, and the token is never echoed.
//! - `/metrics` and the census never carry request data the config does not name: unknown
//!   hosts, their paths, methods, query strings and header values appear nowhere, and label
//!   values come only from the config and fixed sets. (The census keeps, by design, a tenant
//!   request's path without query and its User-Agent product token; tests/census.rs checks
//!   that secrets stay out.)

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::common::raw::blocking_exchange;
use crate::common::{repo, Gateway};
use serde_yaml::Value;

const PATIENCE: Duration = Duration::from_secs(5);

/// One request over a new connection; `request` is the whole head. Returns (status, the
/// whole response as text), or `None` when the connection fails.
fn raw(addr: SocketAddr, request: &str) -> Option<(u16, String)> {
    let response = blocking_exchange(addr, request.as_bytes(), PATIENCE)?;
    let text = format!(
        "{}{}",
        response.head,
        String::from_utf8_lossy(&response.body)
    );
    Some((response.status, text))
}

/// A request on the admin listener at `addr`: (status, whole response).
fn admin_at(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    raw(
        addr,
        &format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n{extra}\r\n"),
    )
    .unwrap_or_else(|| panic!("the admin listener at {addr} does not answer"))
}

/// A non-loopback address of this machine that a local client can connect from, if it has
/// one: the source address of the default route.
fn non_loopback_ipv4() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?; // no packet is sent
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A client for `host` on the gateway's `scheme` port that accepts any certificate (so
/// unknown hosts reach routing over TLS too) and follows no redirect.
fn public_client(gw: &Gateway, scheme: &str, host: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve(host, gw.addr_for(scheme))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// The bundled example keeps the admin listener on loopback, and a config that leaves
/// `listen.admin` out has no admin listener at all: the process listens on exactly its
/// `http` and `https` ports, where admin paths are ordinary traffic.
#[tokio::test]
async fn no_admin_listener_unless_configured_and_the_example_keeps_it_on_loopback() {
    let text = std::fs::read_to_string(repo().join("config/example.yaml")).unwrap();
    let example: Value = serde_yaml::from_str(&text).unwrap();
    let admin: SocketAddr = example["listen"]["admin"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        admin.ip().is_loopback(),
        "the example exposes admin on {admin}"
    );

    let gw = Gateway::start_with(|config, _| {
        config["listen"] =
            serde_yaml::from_str("{ http: '127.0.0.1:0', https: '127.0.0.1:0' }").unwrap();
    });
    let (http, https) = (gw.http, gw.https);
    let client = loopback_client();
    let ports = listening_ports(gw.pid());
    assert_eq!(
        ports,
        BTreeSet::from([http.port(), https.port()]),
        "listening on more than the public ports"
    );
    for (scheme, port) in [("http", http.port()), ("https", https.port())] {
        for path in ["/metrics", "/stragglers.json", "/config", "/-/ready"] {
            let resp = client
                .get(format!("{scheme}://acme.flexhosting.se:{port}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 307, "{scheme} {path}");
            assert_eq!(
                resp.headers()["location"],
                "https://web.flexhrm.com/",
                "{scheme} {path}"
            );
        }
    }
}

/// A client that sends acme's host to 127.0.0.1 (the URL gives the port), accepting any
/// certificate.
fn loopback_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("acme.flexhosting.se", SocketAddr::from(([127, 0, 0, 1], 0)))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// TCP ports process `pid` listens on, from `/proc` (its socket inodes in the kernel's
/// tables).
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1 (ADDR:PORT in hex), st field 3 (0A = LISTEN), inode 9.
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

/// Admin paths sent to the public ports, with a tenant's host, an unknown host, or a name the
/// admin listener itself answers to, are routed like any request: the tenant's fallback
/// redirect or `421`, over HTTP/1.1 and HTTP/2; never metrics, a report, config or a reload.
#[tokio::test]
async fn admin_routes_are_never_served_on_the_public_ports() {
    let gw = Gateway::start_example(None);
    let routes = [
        ("GET", "/metrics"),
        ("GET", "/stragglers"),
        ("GET", "/stragglers.json"),
        ("GET", "/config"),
        ("GET", "/-/ready"),
        ("GET", "/-/healthy"),
        ("POST", "/-/reload"),
        ("PUT", "/-/reload"),
    ];
    // What only the admin listener says.
    let admin_signs = [
        "signpost_",
        "# TYPE",
        "\"generation\"",
        "\"clients\"",
        "\"timeline\"",
        "\"result\"",
        "<svg",
        "ready\n",
        "ok\n",
        "not found: try /metrics",
    ];
    let mut answered = 0;
    for scheme in ["http", "https"] {
        for host in [
            "acme.flexhosting.se",
            "unknown.example.org",
            "localhost",
            "admin",
            "127.0.0.1",
        ] {
            let client = public_client(&gw, scheme, host);
            let port = gw.addr_for(scheme).port();
            for (method, path) in routes {
                let what = format!("{method} {scheme}://{host}{path}");
                let resp = client
                    .request(
                        method.parse().unwrap(),
                        format!("{scheme}://{host}:{port}{path}"),
                    )
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let status = resp.status().as_u16();
                let location = resp
                    .headers()
                    .get("location")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body = resp.text().await.unwrap();
                if host == "acme.flexhosting.se" {
                    assert_eq!(
                        (status, location.as_deref()),
                        (307, Some("https://web.flexhrm.com/")),
                        "{what}: the tenant's fallback"
                    );
                } else {
                    assert_eq!(status, 421, "{what}: {body}");
                }
                for sign in admin_signs {
                    assert!(
                        !body.contains(sign),
                        "{what}: admin content {sign:?} in {body}"
                    );
                }
                answered += 1;
            }
        }
    }
    assert_eq!(answered, 2 * 5 * routes.len());
    // The POSTs on the public ports reloaded nothing.
    assert_eq!(gw.metric("signpost_config_generation"), 1.0);
    assert_eq!(
        gw.metric("signpost_config_reloads_total{result=\"ok\"}"),
        0.0
    );
}

/// Starts the example with its admin listener on `ip` (the same port the harness chose) and
/// `token` written to `admin.token_file` when given.
fn start_with_admin_on(ip: &str, token: Option<&str>) -> Gateway {
    let ip = ip.to_owned();
    let token = token.map(str::to_owned);
    Gateway::start_with(move |config, dir| {
        let admin: SocketAddr = config["listen"]["admin"].as_str().unwrap().parse().unwrap();
        let addr = SocketAddr::new(ip.parse().unwrap(), admin.port());
        config["listen"]["admin"] = Value::from(addr.to_string());
        if let Some(token) = &token {
            let file = dir.join("admin.token");
            std::fs::write(&file, format!("{token}\n")).unwrap();
            config["admin"] =
                serde_yaml::from_str(&format!("token_file: {}", file.display())).unwrap();
        }
    })
}

/// Without a token file, `POST /-/reload` is for this machine only: accepted from loopback
/// (IPv4, IPv6, and IPv4 through a dual-stack listener, which shows as `::ffff:127.0.0.1`),
/// refused with `403` from this machine's own non-loopback addresses, which stand for any
/// remote client. GETs are open to both.
#[tokio::test]
async fn reload_without_a_token_is_for_loopback_clients_only() {
    let gw = start_with_admin_on("0.0.0.0", None);
    let port = gw.admin.port();
    let (status, body) = admin_at(gw.admin, "POST", "/-/reload", &[]);
    assert_eq!(status, 200, "from 127.0.0.1: {body}");
    assert!(body.contains("\"result\": \"ok\""), "{body}");
    match non_loopback_ipv4() {
        Some(ip) => {
            let remote = SocketAddr::new(ip, port);
            let (status, body) = admin_at(remote, "POST", "/-/reload", &[]);
            assert_eq!(status, 403, "from {ip}: {body}");
            assert!(body.contains("loopback clients only"), "{body}");
            assert_eq!(
                admin_at(remote, "GET", "/metrics", &[]).0,
                200,
                "GET from {ip}"
            );
            assert_eq!(
                gw.metric("signpost_config_generation"),
                2.0,
                "the refused POST reloaded"
            );
        }
        None => eprintln!(
            "no non-loopback IPv4 address here; src/admin.rs unit tests cover remote peers"
        ),
    }
    drop(gw);

    // Dual stack: IPv4 clients arrive as IPv4-mapped IPv6 addresses.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 here; src/admin.rs unit tests cover mapped addresses");
        return;
    }
    let gw = start_with_admin_on("::", None);
    let port = gw.admin.port();
    for from in ["127.0.0.1", "::1"] {
        let (status, body) = admin_at(
            SocketAddr::new(from.parse().unwrap(), port),
            "POST",
            "/-/reload",
            &[],
        );
        assert_eq!(status, 200, "from {from} to [::]:{port}: {body}");
    }
    if let Some(ip) = non_loopback_ipv4() {
        let (status, body) = admin_at(SocketAddr::new(ip, port), "POST", "/-/reload", &[]);
        assert_eq!(status, 403, "from {ip} to [::]:{port}: {body}");
    }
}

/// With a token file, `POST /-/reload` needs `Authorization: Bearer <token>` from every
/// client, loopback included (missing, wrong, or another scheme: `401`), and so do the census
/// (personal data) and `/config`; `/metrics` and the health endpoints need none; the token is
/// read on each request (rotation works, a deleted file lets no one in); and no response ever
/// contains it.
#[tokio::test]
async fn with_a_token_posts_and_reports_need_it_probes_do_not_and_it_is_never_echoed() {
    const TOKEN: &str = "zq7tok3n-never-echoed";
    const ROTATED: &str = "zq7rotated-tok3n";
    let gw = start_with_admin_on("0.0.0.0", Some(TOKEN));
    let token_file = gw.dir.path().join("admin.token");
    let mut responses = Vec::new();
    let mut post = |auth: Option<String>, expect: u16, what: &str, from: SocketAddr| {
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        let (status, text) = admin_at(from, "POST", "/-/reload", &headers);
        assert_eq!(status, expect, "{what}: {text}");
        responses.push(text);
    };
    let local = gw.admin;
    post(None, 401, "no token", local);
    post(Some("Bearer wrong".into()), 401, "wrong token", local);
    post(
        Some(format!("Bearer {TOKEN}x")),
        401,
        "token with a suffix",
        local,
    );
    post(Some(format!("Basic {TOKEN}")), 401, "another scheme", local);
    post(Some(TOKEN.to_owned()), 401, "no scheme", local);
    post(Some(format!("Bearer {TOKEN}")), 200, "the token", local);
    post(
        Some(format!("bearer {TOKEN}")),
        200,
        "the scheme in lower case",
        local,
    );
    if let Some(ip) = non_loopback_ipv4() {
        let remote = SocketAddr::new(ip, local.port());
        post(None, 401, "no token from another address", remote);
        post(
            Some(format!("Bearer {TOKEN}")),
            200,
            "the token from another address",
            remote,
        );
    }
    const GUARDED: [&str; 4] = [
        "/stragglers",
        "/stragglers.json",
        "/stragglers.csv",
        "/config",
    ];
    let bearer = format!("Bearer {TOKEN}");
    let mut reads = Vec::new();
    for path in GUARDED {
        let (status, text) = admin_at(local, "GET", path, &[]);
        assert_eq!(status, 401, "GET {path} without the token: {text}");
        let (status, text) = admin_at(local, "GET", path, &[("Authorization", &bearer)]);
        assert_eq!(status, 200, "GET {path} with the token: {text}");
        reads.push(text);
    }
    // Rotated: the old token stops working at once.
    std::fs::write(&token_file, ROTATED).unwrap();
    post(
        Some(format!("Bearer {TOKEN}")),
        401,
        "the old token after rotation",
        local,
    );
    post(
        Some(format!("Bearer {ROTATED}")),
        200,
        "the rotated token",
        local,
    );
    // Deleted: nobody gets in, not even with an empty bearer.
    std::fs::remove_file(&token_file).unwrap();
    post(
        Some(format!("Bearer {ROTATED}")),
        401,
        "token file deleted",
        local,
    );
    post(
        Some("Bearer ".into()),
        401,
        "empty bearer, token file deleted",
        local,
    );
    for path in ["/metrics", "/-/healthy", "/-/ready"] {
        let (status, text) = admin_at(local, "GET", path, &[]);
        assert_eq!(status, 200, "GET {path} needs no token: {text}");
        responses.push(text);
    }
    for path in GUARDED {
        let (status, text) = admin_at(local, "GET", path, &[("Authorization", &bearer)]);
        assert_eq!(status, 401, "GET {path}, token file deleted: {text}");
    }
    for (method, path) in [
        ("DELETE", "/-/reload"),
        ("GET", "/-/reload"),
        ("GET", "/nope"),
    ] {
        let (_, text) = admin_at(
            local,
            method,
            path,
            &[("Authorization", &format!("Bearer {TOKEN}"))],
        );
        responses.push(text);
    }
    for text in responses.iter().chain(&reads) {
        for secret in [TOKEN, ROTATED] {
            assert!(!text.contains(secret), "the token was echoed: {text}");
        }
    }
}

/// Markers for every part of a request that the config does not name. Each is unique, so
/// finding one anywhere shows where it leaked from; hosts are built from them.
mod marks {
    pub const UNKNOWN_HOST: &str = "zq7uhost01x";
    pub const UNKNOWN_SUBDOMAIN: &str = "zq7uhost02x";
    pub const UNKNOWN_ABSOLUTE: &str = "zq7uhost03x";
    pub const UNKNOWN_TLS: &str = "zq7uhost04x";
    pub const UNKNOWN_PATH: &str = "zq7upath05x";
    pub const UNKNOWN_QUERY: &str = "zq7uquery06x";
    pub const UNKNOWN_AGENT: &str = "zq7uagent07x";
    pub const UNKNOWN_METHOD: &str = "ZQ7UMETHOD08X";
    pub const HEADER: &str = "zq7header09x";
    pub const TENANT_QUERY: &str = "zq7tquery10x";
    pub const AGENT_COMMENT: &str = "zq7tcomment11x";
    pub const TENANT_METHOD: &str = "ZQ7TMETHOD12X";
    pub const BODY: &str = "zq7body13x";
    pub const FORWARDED: &str = "zq7fwd14x";
    pub const BAD_HOST: &str = "zq7bad15x";
    /// On a tenant's host the census keeps, by design, the path (no query) and the whole
    /// User-Agent: these may be in the report, never in `/metrics`.
    pub const TENANT_PATH: &str = "zq7tpath16x";
    pub const TENANT_AGENT: &str = "zq7tagent17x";
}

/// Every label value in `/metrics` is a config name (a certificate's names included) or from a
/// fixed set.
fn assert_labels_come_from_the_config(metrics: &str) {
    let tenants = ["acme", "exempel", "_unknown"];
    let kinds = [
        "timeclock",
        "web",
        "mobile",
        "api",
        "calendar",
        "shift_link",
        "shift_callback",
        "_none",
    ];
    let actions = ["redirect", "forward", "gone", "reject"];
    // The names the certificates in `tls.certs` (the repo's certs/) serve.
    let certificate_hosts = [
        "hrm.exempel.com",
        "exempel.com",
        "*.flexhosting.se",
        "flexhosting.se",
    ];
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('{'))
    {
        let labels = &line[line.find('{').unwrap() + 1..line.rfind('}').unwrap()];
        for pair in labels.split("\",").map(|p| p.trim_end_matches('"')) {
            let (name, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
            let known = match name {
                "tenant" => tenants.contains(&value),
                "kind" => kinds.contains(&value),
                "action" => actions.contains(&value),
                "code" => value.len() == 3 && value.bytes().all(|b| b.is_ascii_digit()),
                "le" => value == "+Inf" || value.parse::<f64>().is_ok(),
                "result" => ["ok", "error"].contains(&value),
                "upstream" => ["api", "web"].contains(&value),
                "reason" => value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "version" => value == env!("CARGO_PKG_VERSION"),
                "client" => value.bytes().all(|b| b.is_ascii_hexdigit()),
                "host" => certificate_hosts.contains(&value),
                "source" => value == "operator",
                _ => false,
            };
            assert!(
                known,
                "label {name}={value:?} is not from the config: {line}"
            );
        }
    }
}

/// Requests carrying unknown hosts, paths, methods, query strings, User-Agents and header
/// values leave no trace of them in `/metrics`, `/stragglers.json` or `/stragglers`: unknown
/// hosts are counted as `_unknown` and nothing else, and a tenant request leaves only what
/// the census keeps by design (its path without query, its User-Agent product token).
#[tokio::test]
async fn metrics_and_census_never_echo_request_data_the_config_does_not_name() {
    use marks::*;
    let gw = Gateway::start_example(None);
    let hdr = |name: &str| format!("{name}: {HEADER}\r\n");
    let junk_headers = format!(
        "{}{}{}X-Forwarded-For: {FORWARDED}\r\n",
        hdr("X-Zq7"),
        hdr("Referer"),
        hdr("Cookie")
    );
    let mut rejected = 0.0;
    let mut bad = 0.0;
    let send = |request: String, expect: u16| {
        let (status, text) = raw(gw.http, &request).expect("the gateway answers");
        assert_eq!(status, expect, "{request}\n→ {text}");
    };
    // Unknown hosts: plain, a subdomain of a tenant's domain, absolute-form, with a port,
    // with an invented method, and with a body.
    let unknown_host = format!("{UNKNOWN_HOST}.example.org");
    let absolute = format!("{UNKNOWN_ABSOLUTE}.example");
    let tls_host = format!("{UNKNOWN_TLS}.example");
    for host in [
        unknown_host.clone(),
        format!("{UNKNOWN_SUBDOMAIN}.flexhosting.se"),
        format!("{unknown_host}:8080"),
    ] {
        send(
            format!("GET /{UNKNOWN_PATH}/x?{UNKNOWN_QUERY}=1 HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {UNKNOWN_AGENT}/1.0 ({AGENT_COMMENT})\r\n{junk_headers}\r\n"),
            421,
        );
        rejected += 1.0;
    }
    send(
        format!("GET http://{absolute}/{UNKNOWN_PATH}?{UNKNOWN_QUERY} HTTP/1.1\r\nHost: {absolute}\r\nUser-Agent: {UNKNOWN_AGENT}/2\r\n\r\n"),
        421,
    );
    send(
        format!("{UNKNOWN_METHOD} /{UNKNOWN_PATH} HTTP/1.1\r\nHost: {unknown_host}\r\nUser-Agent: {UNKNOWN_AGENT}\r\nConnection: close\r\n{junk_headers}\r\n"),
        421,
    );
    send(
        format!("POST /{UNKNOWN_PATH}?{UNKNOWN_QUERY} HTTP/1.1\r\nHost: {unknown_host}\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{BODY}"),
        421,
    );
    rejected += 3.0;
    // Hosts that are no DNS name at all.
    for host in [
        format!("{BAD_HOST}!x"),
        format!("{BAD_HOST} x"),
        format!("[{BAD_HOST}]"),
    ] {
        send(
            format!("GET /{UNKNOWN_PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            400,
        );
        bad += 1.0;
    }
    // Over TLS (HTTP/2), with SNI and `:authority` of an unknown host.
    let tls = public_client(&gw, "https", &tls_host);
    for method in ["GET", UNKNOWN_METHOD] {
        let resp = tls
            .request(
                method.parse().unwrap(),
                format!(
                    "https://{tls_host}:{}/{UNKNOWN_PATH}?{UNKNOWN_QUERY}",
                    gw.https.port()
                ),
            )
            .header("user-agent", format!("{UNKNOWN_AGENT}/3"))
            .header("x-zq7", HEADER)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 421);
        rejected += 1.0;
    }
    // A tenant's host: its path and agent product token are kept by the census; the query,
    // the agent's comment, the method, the body and other headers are not.
    let tenant_agent = format!("{TENANT_AGENT}/1.0 ({AGENT_COMMENT})");
    send(
        format!("GET /{TENANT_PATH}/x?{TENANT_QUERY}=1 HTTP/1.1\r\nHost: acme.flexhosting.se\r\nUser-Agent: {tenant_agent}\r\n{junk_headers}\r\n"),
        307,
    );
    send(
        format!("{TENANT_METHOD} /{TENANT_PATH}/y?{TENANT_QUERY} HTTP/1.1\r\nHost: acme.flexhosting.se\r\nUser-Agent: {tenant_agent}\r\nConnection: close\r\n{junk_headers}\r\n"),
        307,
    );
    send(
        format!("POST /{TENANT_PATH}/z?{TENANT_QUERY} HTTP/1.1\r\nHost: acme.flexhosting.se\r\nUser-Agent: {tenant_agent}\r\nContent-Length: 10\r\nConnection: close\r\n{junk_headers}\r\n{BODY}"),
        307,
    );
    let resp = public_client(&gw, "https", "acme.flexhosting.se")
        .request(
            TENANT_METHOD.parse().unwrap(),
            format!(
                "https://acme.flexhosting.se:{}/{TENANT_PATH}/h2?{TENANT_QUERY}",
                gw.https.port()
            ),
        )
        .header("user-agent", &tenant_agent)
        .header("x-zq7", HEADER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 307);

    // The census folds sightings every 200 ms: wait until the tenant's client is in.
    let deadline = Instant::now() + PATIENCE;
    let report = loop {
        let (_, report) = gw.admin("/stragglers.json");
        if report.contains(TENANT_AGENT) && report.contains(TENANT_PATH) {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "the tenant's requests never reached the census: {report}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (_, metrics) = gw.admin("/metrics");
    let (_, page) = gw.admin("/stragglers");
    assert!(page.contains(TENANT_AGENT), "the page shows the census");
    // Everything was counted, under `_unknown` for unknown and malformed hosts.
    let unknown = |code: u16| {
        gw.metric(&format!("signpost_requests_total{{action=\"reject\",code=\"{code}\",kind=\"_none\",tenant=\"_unknown\"}}"))
    };
    assert_eq!(unknown(421), rejected, "{metrics}");
    assert_eq!(unknown(400), bad, "{metrics}");
    assert_labels_come_from_the_config(&metrics);

    let never = [
        UNKNOWN_HOST,
        UNKNOWN_SUBDOMAIN,
        UNKNOWN_ABSOLUTE,
        UNKNOWN_TLS,
        UNKNOWN_PATH,
        UNKNOWN_QUERY,
        UNKNOWN_AGENT,
        UNKNOWN_METHOD,
        HEADER,
        TENANT_QUERY,
        TENANT_METHOD,
        BODY,
        FORWARDED,
        BAD_HOST,
    ];
    let by_design = [TENANT_PATH, TENANT_AGENT, AGENT_COMMENT];
    for (place, text) in [
        ("/metrics", &metrics),
        ("/stragglers.json", &report),
        ("/stragglers", &page),
    ] {
        let text = text.to_ascii_lowercase();
        for mark in never {
            let mark = mark.to_ascii_lowercase();
            assert!(!text.contains(&mark), "{mark} leaked into {place}:\n{text}");
        }
        if place == "/metrics" {
            for mark in by_design {
                assert!(!text.contains(mark), "{mark} leaked into {place}:\n{text}");
            }
        }
    }
}
