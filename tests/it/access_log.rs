//! The access log (`log.access`, `log.format`) as an operator reads it: one line per request
//! on both doors, answers and forwards, none lost on `SIGTERM`, a file reopened on `SIGUSR1`
//! after logrotate moved it, nginx's combined format for log readers, and a file that cannot
//! be opened stopping the start.

use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;

use crate::common::{Gateway, UPSTREAM_BODY};

const TIMECLOCK: &str = "https://acme.flexhosting.se/Timeclock/Entre";
const API: &str = "https://acme.flexhosting.se/HRM/API/v1/employees";

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Sent with the forwarded requests only: the line shows it, or has no `referer` at all.
const REFERER: &str = "https://acme.flexhosting.se/HRM/start";

/// A client on HTTP/1.1 only, or one that takes HTTP/2 when offered.
fn https_client(gw: &Gateway, http2: bool) -> reqwest::Client {
    let builder = gw
        .client_builder("https")
        .user_agent("LogReader/1.0 \"quoted\"");
    let builder = if http2 { builder } else { builder.http1_only() };
    builder.build().unwrap()
}

#[tokio::test]
async fn every_request_is_one_json_line_on_both_doors_and_none_is_lost_on_sigterm() {
    let log = tempfile::tempdir().unwrap();
    let file = log.path().join("access.log");
    let (mut gw, upstream) = Gateway::with_recording_upstream(|config, _| {
        config["log"] = serde_yaml::from_str(&format!("{{ access: {} }}", file.display())).unwrap();
        config["server"]["grace_period"] = Value::from("1s");
    })
    .await;
    let mut sent = 0;
    for http2 in [false, true] {
        let client = https_client(&gw, http2);
        for _ in 0..100 {
            let resp = client.get(gw.url(TIMECLOCK)).send().await.unwrap();
            assert_eq!(resp.status(), 307);
            let resp = client
                .get(gw.url(API))
                .header("referer", REFERER)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
            sent += 2;
        }
    }
    // Stopped at once: the lines still in the workers' buffers are written on the way out.
    assert_eq!(gw.terminate(), Some(0));
    let written = lines(&file);
    assert_eq!(written.len(), sent, "one line per request");
    let parsed: Vec<serde_json::Value> = written
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for (version, action, status) in [
        ("HTTP/1.1", "redirect", 307),
        ("HTTP/1.1", "forward", 201),
        ("HTTP/2.0", "redirect", 307),
        ("HTTP/2.0", "forward", 201),
    ] {
        let of = parsed
            .iter()
            .filter(|l| l["version"] == version && l["action"] == action)
            .collect::<Vec<_>>();
        assert_eq!(of.len(), 100, "{version} {action}");
        let l = of[0];
        assert_eq!(l["status"], status, "{l}");
        assert_eq!(
            (&l["tenant"], &l["client"]),
            (&"acme".into(), &"127.0.0.1".into())
        );
        assert_eq!(l["user_agent"], "LogReader/1.0 \"quoted\"");
        let referer = (action == "forward").then_some(REFERER);
        assert_eq!(l["referer"].as_str(), referer, "{l}");
        let body = if action == "forward" {
            UPSTREAM_BODY.len()
        } else {
            0
        };
        assert_eq!(l["bytes"].as_u64(), Some(body as u64), "{l}");
        assert!(l["duration_ms"].as_f64().is_some(), "{l}");
        let id = l["client_id"].as_str().unwrap();
        assert!(
            id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{l}"
        );
    }
    assert_eq!(upstream.take().len(), 200);
}

#[tokio::test]
async fn sigusr1_reopens_the_file_after_logrotate_moved_it_and_combined_reads_like_nginx() {
    let log = tempfile::tempdir().unwrap();
    let file = log.path().join("access.log");
    let mut gw = Gateway::start_with(|config, _| {
        config["log"] = serde_yaml::from_str(&format!(
            "{{ access: {}, format: combined }}",
            file.display()
        ))
        .unwrap();
        config["server"]["grace_period"] = Value::from("1s");
    });
    let client = https_client(&gw, false);
    let get = |n: usize| {
        let (client, url) = (client.clone(), gw.url(TIMECLOCK));
        async move {
            for _ in 0..n {
                assert_eq!(client.get(&url).send().await.unwrap().status(), 307);
            }
        }
    };
    get(3).await;
    // logrotate: move the file away, then tell Signpost.
    let rotated = log.path().join("access.log.1");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while lines(&file).len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "lines not written within 100 ms ticks"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::rename(&file, &rotated).unwrap();
    gw.signal("USR1");
    std::thread::sleep(Duration::from_millis(300));
    get(2).await;
    assert_eq!(gw.terminate(), Some(0));
    let (old, new) = (lines(&rotated), lines(&file));
    assert_eq!((old.len(), new.len()), (3, 2), "old: {old:?}\nnew: {new:?}");
    for line in old.iter().chain(&new) {
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        assert!(
            line.contains("] \"GET /Timeclock/Entre HTTP/1.1\" 307 "),
            "{line}"
        );
        assert!(
            line.contains(" \"-\" \"LogReader/1.0 \\x22quoted\\x22\" tenant=acme kind=timeclock rule=timeclock-clock action=redirect client_id="),
            "{line}"
        );
    }
}

#[test]
fn an_access_log_that_cannot_be_opened_stops_the_start_naming_it() {
    let mut config = crate::common::example_config();
    let dir = tempfile::tempdir().unwrap();
    for listener in ["http", "https", "admin"] {
        config["listen"][listener] = Value::from("127.0.0.1:0");
    }
    config["tls"]["certs"] = Value::from(crate::common::repo().join("certs").to_str().unwrap());
    let missing = dir.path().join("no/such/folder/access.log");
    config["log"] = serde_yaml::from_str(&format!("{{ access: {} }}", missing.display())).unwrap();
    let path = dir.path().join("signpost.yaml");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["run", "--config"])
        .arg(&path)
        .env("STATE_DIRECTORY", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("access log {}", missing.display())),
        "{stderr}"
    );
}
