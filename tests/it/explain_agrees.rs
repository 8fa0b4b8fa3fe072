//! `signpost explain` says what the running server does: for every method (`CONNECT`
//! included), several routes, and browser and script clients, the explanation and the
//! server's answer agree, over HTTP/1.1 and HTTP/2.

use std::process::Command;
use std::time::Duration;

use crate::common::h2 as raw_h2;
use crate::common::raw::Raw;
use crate::common::{Gateway, TestCa, Upstream};

const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND",
];
const URLS: [&str; 6] = [
    "https://acme.flexhosting.se/Timeclock/Entre",
    "https://acme.flexhosting.se/HRM/API/v1/employees?page=2",
    "https://acme.flexhosting.se/HRM/Calendar/feed-token",
    "https://acme.flexhosting.se/HRM/IP1/Callback",
    "https://exempel.com/HRM/ShiftRequest/7",
    "https://unknown.example.org/Timeclock",
];
const AGENTS: [&str; 2] = ["Mozilla/5.0 (X11) Firefox/130", "curl/8.5.0"];

/// The server's side of one request: status, `Location`, and what the upstream received
/// (method and target) if it was forwarded.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    status: u16,
    location: Option<String>,
    forwarded: Option<(String, String)>,
}

fn explain(gw: &Gateway, method: &str, url: &str, agent: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["explain", "--config"])
        .arg(&gw.config)
        .args([
            "--method",
            method,
            "--header",
            &format!("User-Agent: {agent}"),
            url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What `explain` predicts the server will be seen to do.
fn predicted(explained: &serde_json::Value) -> Observed {
    let text = |key: &str| explained[key].as_str().map(str::to_owned);
    match explained["action"].as_str().unwrap() {
        "forward" => {
            let url: reqwest::Url = text("url").unwrap().parse().unwrap();
            let target = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            Observed {
                status: 201,
                location: None,
                forwarded: Some((String::new(), target)),
            }
        }
        _ => Observed {
            status: explained["status"].as_u64().unwrap() as u16,
            location: text("location"),
            forwarded: None,
        },
    }
}

async fn over_http1(
    gw: &Gateway,
    up: &Upstream,
    method: &str,
    url: &reqwest::Url,
    agent: &str,
) -> Observed {
    let host = url.host_str().unwrap();
    let target = match (method, url.query()) {
        ("CONNECT", _) => format!("{host}:443"),
        (_, Some(q)) => format!("{}?{q}", url.path()),
        (_, None) => url.path().to_owned(),
    };
    let mut conn = Raw::connect(gw.http).await;
    conn.send(format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {agent}\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
    let resp = conn
        .response(Duration::from_secs(5), method == "HEAD")
        .await
        .unwrap_or_else(|| panic!("{method} {url}: no answer"));
    Observed {
        status: resp.status,
        location: resp.header("location").map(str::to_owned),
        forwarded: forwarded(up),
    }
}

async fn over_http2(
    gw: &Gateway,
    up: &Upstream,
    method: &str,
    url: &reqwest::Url,
    agent: &str,
) -> Observed {
    let host = url.host_str().unwrap();
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut fields = vec![(":method", method), (":authority", host)];
    if method != "CONNECT" {
        fields.extend([(":scheme", "https"), (":path", path.as_str())]);
    }
    fields.push(("user-agent", agent));
    // TLS for a name the certificates cover; routing reads `:authority`.
    let mut client = raw_h2::Client::connect(gw.https, "exempel.com").await;
    client.request(1, &fields, None).await;
    let end = client.end_of(1, Duration::from_secs(5)).await;
    Observed {
        status: end
            .status
            .unwrap_or_else(|| panic!("{method} {url}: {end:?}")),
        location: end
            .headers
            .iter()
            .find(|(n, _)| n == "location")
            .map(|(_, v)| v.clone()),
        forwarded: forwarded(up),
    }
}

/// What the upstream received since last asked (method left out: `explain` does not say it).
fn forwarded(up: &Upstream) -> Option<(String, String)> {
    let seen = up.take();
    assert!(seen.len() <= 1, "{seen:?}");
    seen.into_iter().next().map(|s| (String::new(), s.target))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_the_server_agree_for_every_method() {
    let ca = TestCa::new();
    let up = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&up, &ca)));
    let mut disagreements = Vec::new();
    let mut tried = 0;
    for method in METHODS {
        for url in URLS {
            for agent in AGENTS {
                let explained = explain(&gw, method, url, agent);
                let want = predicted(&explained);
                let parsed: reqwest::Url = url.parse().unwrap();
                for (door, got) in [
                    (
                        "HTTP/1.1",
                        over_http1(&gw, &up, method, &parsed, agent).await,
                    ),
                    ("HTTP/2", over_http2(&gw, &up, method, &parsed, agent).await),
                ] {
                    tried += 1;
                    if got != want {
                        disagreements.push(format!(
                            "{door} {method} {url} ({agent}): explain {explained} → expected {want:?}, server did {got:?}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {tried} disagree:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
