//! Forwards against scripted upstreams on real sockets: body framings, reused connections the
//! upstream closed, silent and broken upstreams. Each upstream speaks raw HTTP/1.1 so it can
//! misbehave exactly as the test needs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::Gateway;
use serde_yaml::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the scripted upstream does with one request.
enum Reply {
    /// Write these bytes and wait for the next request on the connection.
    Send(Vec<u8>),
    /// Write these bytes and close the connection.
    SendThenClose(Vec<u8>),
    /// Close the connection without answering.
    Close,
    /// Never answer.
    Silent,
}

/// A plain-HTTP upstream that answers every request head with `script(head, n)`, `n` counting
/// requests on the connection from 0; counts all requests.
async fn scripted_upstream(
    script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (script, seen) = (script.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for n in 0.. {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut piece = [0u8; 4096];
                        match tcp.read(&mut piece).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&piece[..n]),
                        }
                    };
                    let head: Vec<u8> = buf.drain(..end).collect();
                    let head = String::from_utf8_lossy(&head).into_owned();
                    // Read past a Content-Length body, so the next head starts where it should.
                    let length = crate::common::content_length(&head).unwrap_or(0);
                    while buf.len() < length {
                        let mut piece = [0u8; 4096];
                        match tcp.read(&mut piece).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&piece[..n]),
                        }
                    }
                    buf.drain(..length);
                    seen.fetch_add(1, Ordering::SeqCst);
                    match script(&head, n) {
                        Reply::Send(bytes) => {
                            if tcp.write_all(&bytes).await.is_err() {
                                return;
                            }
                        }
                        Reply::SendThenClose(bytes) => {
                            let _ = tcp.write_all(&bytes).await;
                            return;
                        }
                        Reply::Close => return,
                        Reply::Silent => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, count)
}

/// The example config with the `api` upstream at `addr` over plain HTTP, read timeout 1 s,
/// and one worker thread: idle upstream connections are pooled per thread, and the retry
/// tests need the next request to meet the connection the last one left.
fn gateway_for(addr: SocketAddr) -> Gateway {
    Gateway::start_with(|config, _| {
        config["server"]["threads"] = Value::from(1);
        let api = &mut config["upstreams"]["api"];
        api["url"] = Value::from("http://api.flexhrm.com");
        api["address"] = Value::from(addr.to_string());
        api["read_timeout"] = Value::from("1s");
    })
}

fn api_url(gw: &Gateway, path: &str) -> String {
    gw.url(&format!("http://exempel.com/HRM/API/{path}"))
}

/// Asserts that the upstream `api` has `want` errors counted for `reason`.
fn assert_upstream_errors(gw: &Gateway, reason: &str, want: f64, context: &str) {
    let line = format!("signpost_upstream_errors_total{{reason=\"{reason}\",upstream=\"api\"}} ");
    assert_eq!(
        gw.metric_when(&line, |v| v == want),
        want,
        "{reason}: {context}"
    );
}

fn response(head: &str, body: &str) -> Vec<u8> {
    format!("{head}\r\n\r\n{body}").into_bytes()
}

/// An upstream that closes each connection right after answering, without saying so: the
/// pooled connection is dead by the next request. Every request must still succeed, and the
/// upstream must see each exactly once.
#[tokio::test]
async fn connections_the_upstream_closed_while_idle_are_not_a_502() {
    let (addr, count) = scripted_upstream(|_, _| {
        Reply::SendThenClose(response("HTTP/1.1 200 OK\r\nContent-Length: 2", "ok"))
    })
    .await;
    let gw = gateway_for(addr);
    let client = gw.client("http");
    for i in 0..30 {
        let resp = client.get(api_url(&gw, "v1/ping")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.text().await.unwrap(), "ok", "request {i}");
        if i % 3 == 0 {
            // Give the FIN time to arrive, so both the stale check and the retry get exercised.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(count.load(Ordering::SeqCst), 30);
    assert_upstream_errors(&gw, "connection", 0.0, "");
}

/// The race an idle timeout makes: the upstream closes a kept-alive connection just as the
/// next request arrives on it. The request is retried once on a new connection, so the client
/// never sees it.
#[tokio::test]
async fn a_request_racing_the_upstreams_idle_close_is_retried() {
    let (addr, count) = scripted_upstream(|_, n| match n {
        0 => Reply::Send(response("HTTP/1.1 200 OK\r\nContent-Length: 2", "ok")),
        _ => Reply::Close,
    })
    .await;
    let gw = gateway_for(addr);
    let client = gw.client("http");
    for i in 0..10 {
        let resp = client.get(api_url(&gw, "v1/ping")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.text().await.unwrap(), "ok", "request {i}");
    }
    // Each request after the first met a kept connection first, then a new one.
    assert_eq!(count.load(Ordering::SeqCst), 19);
}

/// Keep-alive upstream connections are reused: many requests, few connections.
#[tokio::test]
async fn upstream_connections_are_reused() {
    let connections = Arc::new(AtomicUsize::new(0));
    let opened = connections.clone();
    let (addr, _) = scripted_upstream(move |_, n| {
        // The first request on a connection marks a new connection.
        if n == 0 {
            opened.fetch_add(1, Ordering::SeqCst);
        }
        Reply::Send(response("HTTP/1.1 200 OK\r\nContent-Length: 2", "ok"))
    })
    .await;
    let gw = gateway_for(addr);
    let client = gw.client("http");
    for _ in 0..50 {
        let resp = client.get(api_url(&gw, "v1/ping")).send().await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    let n = connections.load(Ordering::SeqCst);
    assert!(
        n <= 2,
        "50 sequential forwards opened {n} upstream connections"
    );
}

/// Chunked (with trailers), until-close and HEAD answers all reach the client whole, and the
/// client's connection stays usable after each.
#[tokio::test]
async fn every_body_framing_arrives_whole() {
    let (addr, _) = scripted_upstream(|head, _| {
        let target = head.split(' ').nth(1).unwrap_or("");
        match target {
            "/chunked" => Reply::Send(response(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum",
                "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n",
            )),
            "/close" => Reply::SendThenClose(response("HTTP/1.0 200 OK", "until the end")),
            "/head" => Reply::Send(response("HTTP/1.1 200 OK\r\nContent-Length: 1000", "")),
            "/empty" => Reply::Send(response("HTTP/1.1 204 No Content", "")),
            "/interim" => Reply::Send(response(
                "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5",
                "final",
            )),
            _ => Reply::Send(response("HTTP/1.1 404 Not Found\r\nContent-Length: 0", "")),
        }
    })
    .await;
    let gw = gateway_for(addr);
    let client = gw.client("http");
    for _ in 0..3 {
        let resp = client.get(api_url(&gw, "chunked")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "hello world");
        let resp = client.get(api_url(&gw, "close")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "until the end");
        let resp = client.head(api_url(&gw, "head")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-length"], "1000");
        let resp = client.get(api_url(&gw, "empty")).send().await.unwrap();
        assert_eq!(resp.status(), 204);
        let resp = client.get(api_url(&gw, "interim")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "final");
    }
}

/// Ambiguous framing from the upstream is a 502, counted, never passed on.
#[tokio::test]
async fn ambiguous_upstream_framing_is_a_502() {
    let (addr, _) = scripted_upstream(|_, _| {
        Reply::Send(response(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7",
            "hello",
        ))
    })
    .await;
    let gw = gateway_for(addr);
    let resp = gw.get(&api_url(&gw, "v1/x")).await;
    assert_eq!(resp.status(), 502);
    assert_upstream_errors(&gw, "invalid_response", 1.0, "");
}

/// A bodiless request and one with a body.
const METHODS: [reqwest::Method; 2] = [reqwest::Method::GET, reqwest::Method::POST];

fn request(gw: &Gateway, method: &reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    let req = gw.client("http").request(method.clone(), api_url(gw, path));
    if method == reqwest::Method::GET {
        req
    } else {
        req.body("callback=1")
    }
}

/// An upstream that accepts and never answers: 504 at the read timeout (1 s), and the gateway
/// keeps serving others meanwhile.
#[tokio::test]
async fn silent_upstream_is_a_504_at_the_read_timeout() {
    let (addr, _) = scripted_upstream(|_, _| Reply::Silent).await;
    let gw = gateway_for(addr);
    for (i, method) in METHODS.iter().enumerate() {
        silent_once(&gw, method).await;
        assert_upstream_errors(&gw, "timeout", (i + 1) as f64, method.as_str());
    }
}

async fn silent_once(gw: &Gateway, method: &reqwest::Method) {
    let started = Instant::now();
    let slow = tokio::spawn({
        let req = request(gw, method, "v1/x");
        async move { req.send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let other = gw.get(&gw.url("http://exempel.com/Timeclock/Lager")).await;
    assert_eq!(
        other.status(),
        307,
        "others are served while one forward waits"
    );
    assert_eq!(slow.await.unwrap(), 504, "{method}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{method}: 504 after {waited:?}, read timeout is 1 s"
    );
}

/// An upstream that dies mid-body: the client sees a broken response (not a complete one, not
/// a hang), and the error is counted.
#[tokio::test]
async fn upstream_reset_mid_body_breaks_the_response() {
    let (addr, _) = scripted_upstream(|_, _| {
        Reply::SendThenClose(response(
            "HTTP/1.1 200 OK\r\nContent-Length: 1000",
            "only the first bytes",
        ))
    })
    .await;
    let gw = gateway_for(addr);
    for (i, method) in METHODS.iter().enumerate() {
        let resp = request(&gw, method, "v1/big").send().await.unwrap();
        assert_eq!(
            resp.status(),
            200,
            "{method}: the head was already on its way"
        );
        let body = tokio::time::timeout(Duration::from_secs(5), resp.bytes())
            .await
            .expect("the client must not hang");
        assert!(
            body.is_err(),
            "{method}: a cut body must not look complete: {body:?}"
        );
        assert_upstream_errors(&gw, "connection", (i + 1) as f64, method.as_str());
    }
}

/// Retries: only when the request cannot have reached the upstream (a kept-alive connection it
/// had already closed), only for idempotent methods, at most once. A POST on such a connection
/// is a 502, never sent twice; a PUT is retried once on a new connection; a request whose new
/// connection the upstream closes without answering is not retried at all.
#[tokio::test]
async fn only_idempotent_requests_on_stale_connections_are_retried_once() {
    // The first request on each connection is answered; later ones meet a closed connection.
    let (addr, count) = scripted_upstream(|_, n| match n {
        0 => Reply::Send(response("HTTP/1.1 200 OK\r\nContent-Length: 2", "ok")),
        _ => Reply::Close,
    })
    .await;
    let gw = gateway_for(addr);
    let send = |method: reqwest::Method| {
        let req = request(&gw, &method, "v1/x");
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // PUT (idempotent, its body whole in hand): the stale connection is retried on a new one.
    assert_eq!(send(reqwest::Method::PUT).await, 200);
    assert_eq!(send(reqwest::Method::PUT).await, 200);
    assert_eq!(count.load(Ordering::SeqCst), 3, "PUT: one retry, not more");
    // POST on the kept connection: 502, and the upstream saw it once.
    assert_eq!(send(reqwest::Method::POST).await, 502);
    assert_eq!(count.load(Ordering::SeqCst), 4, "a POST is never retried");

    // An upstream that reads each request and closes without answering, on new connections
    // too: whatever it did with the request, it is not sent again.
    let (addr, count) = scripted_upstream(|_, _| Reply::Close).await;
    let gw = gateway_for(addr);
    for (i, method) in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::POST,
    ]
    .into_iter()
    .enumerate()
    {
        let status = request(&gw, &method, "v1/x").send().await.unwrap().status();
        assert_eq!(status, 502, "{method}");
        assert_eq!(
            count.load(Ordering::SeqCst),
            i + 1,
            "{method} was sent again"
        );
    }
}

/// An upstream presenting a certificate for another name: 502 on both paths, and nothing
/// reaches it (the TLS handshake fails before any request byte).
#[tokio::test]
async fn upstream_certificate_for_another_name_is_a_502() {
    let ca = crate::common::TestCa::new();
    let upstream = crate::common::Upstream::start(&ca, &["not-api.example.org"]).await;
    let gw = Gateway::start_example(Some((&upstream, &ca)));
    for method in METHODS {
        let url = gw.url("https://exempel.com/HRM/API/v1/x");
        let mut req = gw.client("https").request(method.clone(), url);
        if method == reqwest::Method::POST {
            req = req.body("x=1");
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 502, "{method}");
    }
    assert!(
        upstream.take().is_empty(),
        "a request reached the wrong-name upstream"
    );
    assert_upstream_errors(&gw, "tls", 2.0, "");
}

/// A large body from an upstream faster than its client is streamed, not buffered: the
/// gateway's memory stays flat while a slow client reads 32 MiB, on both paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_to_slow_clients_in_flat_memory() {
    const SIZE: usize = 32 << 20;
    let body = Arc::new(vec![b'x'; SIZE]);
    let (addr, _) = scripted_upstream(move |_, _| {
        let mut answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").into_bytes();
        answer.extend_from_slice(&body);
        Reply::Send(answer)
    })
    .await;
    let gw = gateway_for(addr);
    for method in METHODS {
        let before = gw.rss_kib();
        let mut peak = before;
        let mut resp = request(&gw, &method, "v1/export").send().await.unwrap();
        assert_eq!(resp.status(), 200, "{method}");
        let mut received = 0;
        while let Some(chunk) = resp.chunk().await.unwrap() {
            received += chunk.len();
            // About 16 MiB/s: far slower than the upstream writes.
            tokio::time::sleep(Duration::from_micros(chunk.len() as u64 / 16)).await;
            if received % (1 << 20) < chunk.len() {
                peak = peak.max(gw.rss_kib());
            }
        }
        assert_eq!(received, SIZE, "{method}");
        let growth = (peak - before) / 1024;
        assert!(
            growth < 12,
            "{method}: RSS grew {growth} MiB while streaming 32 MiB"
        );
        eprintln!("{method}: RSS grew {growth} MiB while streaming 32 MiB to a slow client");
    }
}

/// A client that goes away mid-forward is counted the same way by both doors: an HTTP/1
/// client that closes during a long body, an HTTP/2 client that cancels its stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_forward_is_client_gone_on_both_doors() {
    let body = "x".repeat(8 << 20);
    let (addr, _) = scripted_upstream(move |_, _| {
        Reply::Send(response(
            &format!("HTTP/1.1 200 OK\r\nContent-Length: {}", body.len()),
            &body,
        ))
    })
    .await;
    let gw = gateway_for(addr);
    let mut conn = crate::common::raw::Raw::connect(gw.http).await;
    conn.send(b"GET /HRM/API/v1/big HTTP/1.1\r\nHost: exempel.com\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(conn);
    assert_upstream_errors(&gw, "client_gone", 1.0, "HTTP/1 client closed mid-body");

    let mut client = crate::common::h2::Client::connect(gw.https, "exempel.com").await;
    let fields = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "exempel.com"),
        (":path", "/HRM/API/v1/big"),
    ];
    client.request(1, &fields, None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel = 8u32.to_be_bytes();
    client
        .send(&crate::common::h2::frame(
            crate::common::h2::RST_STREAM,
            0,
            1,
            &cancel,
        ))
        .await;
    assert_upstream_errors(&gw, "client_gone", 2.0, "HTTP/2 stream cancelled mid-body");
}

/// Upstreams that take no connection: a closed port is a 502 at once (`connect_refused`), and
/// one whose accept queue is full, which never completes a handshake, a 504 at the connect
/// timeout (`connect_timeout`). The same on every door: HTTP/1 over plain TCP and TLS (the
/// front door's own connect) and HTTP/2 (pingora's connector).
#[tokio::test]
async fn upstreams_that_take_no_connection_fail_alike_on_every_door() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // A backlog of 0 holds one connection nobody accepts; the kernel drops SYNs past it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap();
    let mut queued = Vec::new();
    while let Ok(Ok(conn)) = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::net::TcpStream::connect(full_addr),
    )
    .await
    {
        queued.push(conn);
        assert!(queued.len() < 16, "the accept queue never filled");
    }
    for (addr, status, reason, least) in [
        (closed, 502, "connect_refused", Duration::ZERO),
        (
            full_addr,
            504,
            "connect_timeout",
            Duration::from_millis(900),
        ),
    ] {
        let gw = Gateway::start_with(|config, _| {
            let api = &mut config["upstreams"]["api"];
            api["url"] = Value::from("http://api.flexhrm.com");
            api["address"] = Value::from(addr.to_string());
            api["connect_timeout"] = Value::from("1s");
        });
        let doors = [
            ("http", gw.client("http"), reqwest::Version::HTTP_11),
            (
                "https",
                gw.client_builder("https").http1_only().build().unwrap(),
                reqwest::Version::HTTP_11,
            ),
            ("https", gw.client("https"), reqwest::Version::HTTP_2),
        ];
        for (i, (scheme, client, version)) in doors.iter().enumerate() {
            let url = gw.url(&format!("{scheme}://exempel.com/HRM/API/v1/x"));
            let started = Instant::now();
            let resp = client.get(&url).send().await.unwrap();
            let waited = started.elapsed();
            let door = format!("{scheme} {version:?}");
            assert_eq!(resp.version(), *version, "{door}");
            assert_eq!(resp.status(), status, "{door}");
            assert!(
                waited >= least && waited < Duration::from_secs(5),
                "{door}: {status} after {waited:?}"
            );
            assert_upstream_errors(&gw, reason, (i + 1) as f64, &door);
        }
    }
    drop(queued);
}
