//! Stopping and upgrading the real binary: `SIGTERM` lets in-flight requests (slow forwards
//! included) finish, writes the census with them counted and exits 0; a graceful upgrade
//! (`run --upgrade`, then `SIGQUIT` to the old process) hands the listening sockets over
//! without failing a single request of a steady load.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Gateway;
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
                    if body.len() < common::content_length(head).unwrap_or(0) {
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

/// A request the front door hands to pingora's proxy (it answers only GET and HEAD), answered
/// with a redirect on a kept-alive connection.
const PINGORA_REDIRECT: &[u8] = b"DELETE /Timeclock HTTP/1.1\r\nHost: acme.flexhosting.se\r\n\r\n";

/// Reads one response (head and `Content-Length` body) from a raw connection.
async fn read_response(conn: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            if body.len() >= common::content_length(head).unwrap_or(0) {
                return text.into_owned();
            }
        }
        let mut piece = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut piece))
            .await
            .expect("no response within 10 s")
            .unwrap();
        assert!(n > 0, "closed before a whole response: {text:?}");
        answer.extend_from_slice(&piece[..n]);
    }
}

/// Reads until the server closes the connection (within 2 s).
async fn read_to_close(conn: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut answer))
        .await
        .expect("the connection was not closed after the request")
        .unwrap();
    String::from_utf8(answer).unwrap()
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A slow GET and a slow POST are in flight when SIGTERM arrives: both complete, and neither
/// connection is closed under a client that believes it kept alive (each response says
/// `Connection: close`, decided as its head goes out). Kept-alive connections idle at the
/// signal, after a bodiless request or one with a body, get their next request answered with
/// `Connection: close`. New
/// connections are no longer served, the census written at exit counts the requests, and the
/// exit code is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_slow_forwards_finish_and_saves_the_census() {
    let (addr, answered) = slow_upstream(Duration::from_secs(2)).await;
    let mut gw = Gateway::start_with(|config, dir| patch(config, dir, addr, "4s"));
    let state_file = gw.dir.path().join("census.json");
    // An idle kept-alive connection: one redirect answered, then nothing.
    let mut idle = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    idle.write_all(b"GET /Timeclock HTTP/1.1\r\nHost: acme.flexhosting.se\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 307"));
    // The same after a request that pingora's proxy served.
    let mut idle_pingora = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    idle_pingora.write_all(PINGORA_REDIRECT).await.unwrap();
    assert!(read_response(&mut idle_pingora)
        .await
        .starts_with("HTTP/1.1 307"));
    // The slow GET on a raw connection, to see its headers and the close.
    let mut slow_get = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    slow_get
        .write_all(b"GET /HRM/API/v1/slow HTTP/1.1\r\nHost: exempel.com\r\n\r\n")
        .await
        .unwrap();
    let get = tokio::spawn(async move {
        let mut answer = Vec::new();
        slow_get.read_to_end(&mut answer).await.unwrap();
        String::from_utf8(answer).unwrap()
    });
    // The slow POST on a raw connection too, to use it again after its response.
    let mut slow_post = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    slow_post
        .write_all(b"POST /HRM/IP1/Callback HTTP/1.1\r\nHost: exempel.com\r\nContent-Length: 16\r\n\r\nstatus=delivered")
        .await
        .unwrap();
    let post = tokio::spawn(async move {
        let answer = read_response(&mut slow_post).await;
        (answer, slow_post)
    });
    // Both requests are at the upstream before the signal.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let stopped_at = Instant::now();
    signal(gw.pid(), "TERM");
    // The kept-alive connection is still served, and told to close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    idle.write_all(b"GET /Timeclock HTTP/1.1\r\nHost: acme.flexhosting.se\r\n\r\n")
        .await
        .unwrap();
    let last = read_to_close(&mut idle).await;
    assert!(last.starts_with("HTTP/1.1 307"), "{last}");
    assert!(last.contains("\r\nConnection: close\r\n"), "{last}");
    idle_pingora.write_all(PINGORA_REDIRECT).await.unwrap();
    let last = read_to_close(&mut idle_pingora).await;
    assert!(
        last.starts_with("HTTP/1.1 307"),
        "after pingora's answer: {last}"
    );
    assert!(
        last.contains("\r\nConnection: close\r\n"),
        "after pingora's answer: {last}"
    );
    let get = get.await.unwrap();
    assert!(get.starts_with("HTTP/1.1 200"), "{get}");
    assert!(get.ends_with(BODY), "{get}");
    // It began before the signal, yet its response announces the close: a connection the
    // client believes kept alive must never be closed under it (its next request would be lost).
    assert!(get.contains("\r\nConnection: close\r\n"), "{get}");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(3),
        "the GET's connection was not closed after its response"
    );
    // The POST too: its response went out after the signal, so it announces the close, and
    // the connection ends after it.
    let (answer, mut slow_post) = post.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(BODY), "{answer}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer}");
    let mut rest = Vec::new();
    let _ = slow_post.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "after the slow POST: {rest:?}");
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

/// A steady load of redirects and forwards (GETs, and POSTs that pingora's proxy serves), on
/// kept-alive connections and on a new connection per request, runs across a graceful upgrade: the new process takes the listening sockets
/// over, the old one drains and exits 0, and not one request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_upgrade_loses_no_request() {
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
        // With a body, so pingora's proxy serves them.
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
    signal(old.pid(), "QUIT");
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
