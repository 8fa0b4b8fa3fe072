//! Stopping and upgrading the real binary: `SIGTERM` lets in-flight requests (slow forwards
//! included) finish, writes the census with them counted and exits 0; a graceful upgrade
//! (`run --upgrade`, then `SIGQUIT` to the old process) hands the listening sockets over
//! without failing a single request of a steady load.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::raw::{End, Raw};
use crate::common::Gateway;
use serde_yaml::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY: &str = "slow but complete";

/// A plain-HTTP upstream that reads a request (head and any `Content-Length` body), waits
/// `delay`, then answers 200 with [`BODY`]; counts the requests it answered.
async fn slow_upstream(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut piece = [0u8; 4096];
                    match tcp.read(&mut piece).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&piece[..n]),
                    }
                    let text = String::from_utf8_lossy(&buf);
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    if body.len() < crate::common::content_length(head).unwrap_or(0) {
                        continue;
                    }
                    tokio::time::sleep(delay).await;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{BODY}",
                        BODY.len()
                    );
                    if tcp.write_all(answer.as_bytes()).await.is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    buf.clear();
                }
            });
        }
    });
    (addr, answered)
}

/// The example config with every upstream at `addr` over plain HTTP, the given grace period,
/// the census saved to `dir/census.json` (only at shutdown) and the upgrade socket in `dir`.
fn patch(config: &mut Value, dir: &Path, addr: SocketAddr, grace: &str) {
    for (_, u) in config["upstreams"].as_mapping_mut().unwrap().iter_mut() {
        let name = u["url"].as_str().unwrap().replace("https://", "http://");
        u["url"] = Value::from(name);
        u["address"] = Value::from(addr.to_string());
        u["read_timeout"] = Value::from("30s");
    }
    config["server"]["grace_period"] = Value::from(grace);
    config["server"]["upgrade_sock"] = Value::from(dir.join("upgrade.sock").to_str().unwrap());
    config["census"] = serde_yaml::from_str(&format!(
        "{{ state_file: {}, snapshot_interval: 1h }}",
        dir.join("census.json").display()
    ))
    .unwrap();
}

const REDIRECT: &[u8] = b"GET /Timeclock HTTP/1.1\r\nHost: acme.flexhosting.se\r\n\r\n";
/// A redirect of a request with a body (one whose connection once changed hands).
const REDIRECT_WITH_BODY: &[u8] =
    b"POST /Timeclock HTTP/1.1\r\nHost: acme.flexhosting.se\r\nContent-Length: 2\r\n\r\nok";
const PATIENCE: Duration = Duration::from_secs(10);

/// A slow GET and a slow POST are in flight when SIGTERM arrives: both complete, and neither
/// connection is closed under a client that believes it kept alive (each response says
/// `Connection: close`, decided as its head goes out). Kept-alive connections idle at the
/// signal, after a bodiless request or one with a body, get their next request answered with
/// `Connection: close`. New connections are no longer served, the census written at exit counts the requests, and the
/// exit code is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_slow_forwards_finish_and_saves_the_census() {
    let (addr, answered) = slow_upstream(Duration::from_secs(2)).await;
    let mut gw = Gateway::start_with(|config, dir| patch(config, dir, addr, "4s"));
    let state_file = gw.dir.path().join("census.json");
    // An idle kept-alive connection: one redirect answered, then nothing.
    let mut idle = Raw::connect(gw.http).await;
    idle.send(REDIRECT).await;
    assert_eq!(idle.response(PATIENCE, false).await.unwrap().status, 307);
    // The same after a request with a body.
    let mut idle_after_body = Raw::connect(gw.http).await;
    idle_after_body.send(REDIRECT_WITH_BODY).await;
    assert_eq!(
        idle_after_body
            .response(PATIENCE, false)
            .await
            .unwrap()
            .status,
        307
    );
    // The slow GET and the slow POST on raw connections, to see their headers and the close.
    let mut slow_get = Raw::connect(gw.http).await;
    slow_get
        .send(b"GET /HRM/API/v1/slow HTTP/1.1\r\nHost: exempel.com\r\n\r\n")
        .await;
    let get = tokio::spawn(async move {
        let answer = slow_get.response(PATIENCE, false).await;
        (answer, slow_get.end(PATIENCE).await)
    });
    let mut slow_post = Raw::connect(gw.http).await;
    slow_post
        .send(b"POST /HRM/IP1/Callback HTTP/1.1\r\nHost: exempel.com\r\nContent-Length: 16\r\n\r\nstatus=delivered")
        .await;
    let post = tokio::spawn(async move {
        let answer = slow_post.response(PATIENCE, false).await;
        (answer, slow_post.end(PATIENCE).await)
    });
    // Both requests are at the upstream before the signal.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let stopped_at = Instant::now();
    gw.signal("TERM");
    // The kept-alive connections are still served, and told to close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (what, conn, request) in [
        ("after a redirect", &mut idle, REDIRECT),
        (
            "after a request with a body",
            &mut idle_after_body,
            REDIRECT_WITH_BODY,
        ),
    ] {
        conn.send(request).await;
        let last = conn.response(PATIENCE, false).await.expect(what);
        assert_eq!(last.status, 307, "{what}: {}", last.head);
        assert!(last.closes(), "{what}: {}", last.head);
        assert_ne!(conn.end(Duration::from_secs(2)).await, End::Open, "{what}");
    }
    // Each slow request began before the signal, yet its response announces the close: a
    // connection the client believes kept alive must never be closed under it (its next
    // request would be lost). Then the connection ends.
    for (what, task) in [("GET", get), ("POST", post)] {
        let (answer, end) = task.await.unwrap();
        let answer = answer.expect(what);
        assert_eq!(answer.status, 200, "{what}: {}", answer.head);
        assert_eq!(answer.body, BODY.as_bytes(), "{what}");
        assert!(answer.closes(), "{what}: {}", answer.head);
        assert_eq!(end, End::Closed, "{what}");
    }
    assert!(
        stopped_at.elapsed() < Duration::from_secs(3),
        "the slow requests' connections were not closed after their responses"
    );
    assert_eq!(answered.load(Ordering::SeqCst), 2);
    // A new connection during the grace period is not served.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late = gw
        .client("http")
        .get(gw.url("http://acme.flexhosting.se/Timeclock"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(late.is_err(), "served after SIGTERM: {late:?}");

    let (code, _gw) =
        tokio::task::spawn_blocking(move || (gw.wait_exit(Duration::from_secs(20)), gw))
            .await
            .unwrap();
    assert_eq!(code, Some(0), "exit code");
    // Grace period (4 s) plus pingora's runtime shutdown (≤ 5 s), with room for a slow machine.
    assert!(stopped_at.elapsed() < Duration::from_secs(15));

    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).expect("census state file"))
            .unwrap();
    let counted = |kind: &str| -> u64 {
        state["clients"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["tenant"] == "exempel" && r["kind"] == kind)
            .map(|r| r["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(counted("api"), 1, "{state:#}");
    assert_eq!(counted("shift_callback"), 1, "{state:#}");
}

/// A steady load of redirects and forwards (GETs, and POSTs with bodies), on kept-alive
/// connections and on a new connection per request, runs across a graceful upgrade: the new
/// process takes the listening sockets over, the old one drains and exits 0, and not one
/// request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_upgrade_loses_no_request() {
    let _alone = crate::common::alone();
    let (addr, _) = slow_upstream(Duration::ZERO).await;
    let mut old = Gateway::start_with(|config, dir| patch(config, dir, addr, "1s"));

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = [
        (
            "kept-alive redirects",
            "http://acme.flexhosting.se/Timeclock",
            true,
        ),
        (
            "new-connection redirects",
            "http://acme.flexhosting.se/Timeclock",
            false,
        ),
        (
            "kept-alive forwards",
            "http://exempel.com/HRM/API/v1/ping",
            true,
        ),
        (
            "new-connection forwards",
            "http://exempel.com/HRM/API/v1/ping",
            false,
        ),
        (
            "kept-alive POST forwards",
            "http://exempel.com/HRM/IP1/Callback",
            true,
        ),
    ]
    .into_iter()
    .map(|(what, url, keep_alive)| {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .resolve("acme.flexhosting.se", old.http)
            .resolve("exempel.com", old.http);
        if !keep_alive {
            builder = builder.pool_max_idle_per_host(0);
        }
        let client = builder.build().unwrap();
        let url = old.url(url);
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let request = if what.contains("POST") {
                    client.post(&url).body("status=delivered")
                } else {
                    client.get(&url)
                };
                match request.send().await {
                    Ok(resp) if resp.status().is_redirection() || resp.status() == 200 => {
                        match resp.bytes().await {
                            Ok(_) => ok += 1,
                            Err(e) => failed.push(format!("body: {e}")),
                        }
                    }
                    Ok(resp) => failed.push(format!("status {}", resp.status())),
                    Err(e) => failed.push(format!("{e:?}")),
                }
            }
            (what, ok, failed)
        })
    })
    .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    // The new process finds the sockets by address: the config names the ports bound.
    let text = std::fs::read_to_string(&old.config).unwrap();
    let mut config: Value = serde_yaml::from_str(&text).unwrap();
    for (listener, addr) in [
        ("http", old.http),
        ("https", old.https),
        ("admin", old.admin),
    ] {
        config["listen"][listener] = Value::from(addr.to_string());
    }
    std::fs::write(&old.config, serde_yaml::to_string(&config).unwrap()).unwrap();
    let mut new = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_signpost"))
            .args(["run", "--upgrade", "--config"])
            .arg(&old.config)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // The new process waits up to 5 s for the sockets; the old one sends them on SIGQUIT.
    tokio::time::sleep(Duration::from_millis(500)).await;
    old.signal("QUIT");
    // pingora keeps the old process accepting for 5 s after the hand-over, then drains for
    // the grace period (1 s).
    let old_exit = tokio::task::spawn_blocking(move || {
        let code = old.wait_exit(Duration::from_secs(30));
        (code, old)
    });
    let (code, old) = old_exit.await.unwrap();
    assert_eq!(code, Some(0), "the old process's exit code");
    // The new process alone serves for a while.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in load {
        let (what, ok, failed) = task.await.unwrap();
        assert!(failed.is_empty(), "{what}: {ok} ok, failed: {failed:?}");
        assert!(ok > 0, "{what}: nothing served");
        total += ok;
    }
    eprintln!("{total} requests across the upgrade, 0 failed");
    assert!(new.0.try_wait().unwrap().is_none(), "the new process died");
    let (status, metrics) = old.admin("/metrics");
    assert_eq!(status, 200, "the new process serves the admin listener");
    assert!(metrics.contains("signpost_requests_total{"), "{metrics}");
}

/// The upgraded process, killed when the test ends (passed or not).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
