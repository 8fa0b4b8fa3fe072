//! Hostile requests on raw sockets against the running gateway: malformed request lines and
//! headers, request-smuggling shapes, oversized heads, absolute-form targets that disagree with
//! `Host`, `CONNECT`, slowloris, and HTTP/2 rapid-reset and CONTINUATION floods. Each gets a
//! 4xx (or a closed connection) within a bounded time, none reaches an upstream, and ordinary
//! clients are served meanwhile.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::h2 as raw_h2;
use crate::common::raw::{exchange, End, Raw};
use crate::common::{Gateway, TestCa, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `raw` on a new connection and reads the answers until the server closes it or
/// `window` passes; with `keep_alive`, only the first answer.
async fn send_raw(addr: SocketAddr, raw: &[u8], window: Duration, keep_alive: bool) -> Outcome {
    let (responses, end) = if keep_alive {
        let mut conn = Raw::connect(addr).await;
        conn.send(raw).await;
        let first = conn.response(window, false).await;
        (first.into_iter().collect(), End::Open)
    } else {
        exchange(addr, raw, window).await
    };
    Outcome {
        statuses: responses.iter().map(|r| r.status).collect(),
        text: responses.iter().map(|r| r.head.clone()).collect(),
        closed: end != End::Open,
        reset: end == End::Reset,
    }
}

/// What the server did with one raw request.
struct Outcome {
    statuses: Vec<u16>,
    /// The heads read, for messages.
    text: String,
    closed: bool,
    reset: bool,
}

/// Keeps one ordinary client busy with redirects until stopped (HTTP/1.1 for `http`, HTTP/2
/// for `https`); returns (ok, failures).
fn ordinary_traffic(
    gw: &Gateway,
    scheme: &str,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<(u32, Vec<String>)>) {
    let stop = Arc::new(AtomicBool::new(false));
    let client = gw.client(scheme);
    let url = gw.url(&format!("{scheme}://acme.flexhosting.se/Timeclock"));
    let stopped = stop.clone();
    let task = tokio::spawn(async move {
        let (mut ok, mut bad) = (0, Vec::new());
        while !stopped.load(Ordering::Relaxed) {
            let started = Instant::now();
            match client.get(&url).send().await {
                Ok(resp) if resp.status() == 307 && started.elapsed() < Duration::from_secs(2) => {
                    ok += 1
                }
                Ok(resp) => bad.push(format!("{} after {:?}", resp.status(), started.elapsed())),
                Err(e) => bad.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (ok, bad)
    });
    (stop, task)
}

const HOST: &str = "Host: acme.flexhosting.se\r\n";

/// Every malformed or ambiguous request is refused with the expected 4xx; those whose framing
/// cannot be trusted also close the connection, so nothing after them is read as a request.
/// The callback route forwards to a recording upstream: none of these may reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_ambiguous_requests_are_refused() {
    let ca = TestCa::new();
    let up = Upstream::start(&ca, &["web.flexhrm.com", "api.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&up, &ca)));
    let (stop, traffic) = ordinary_traffic(&gw, "http");

    let callback = "POST /HRM/IP1/Callback HTTP/1.1\r\n";
    let smuggled = "GET /HRM/API/smuggled HTTP/1.1\r\nHost: acme.flexhosting.se\r\n\r\n";
    let huge = format!(
        "GET /Timeclock HTTP/1.1\r\n{HOST}X-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let many: String = (0..300).map(|i| format!("X-{i}: v\r\n")).collect();
    // (what, request, expected status, must the connection close)
    let cases: Vec<(&str, String, u16, bool)> = vec![
        ("garbage request line", "GARBAGE\r\n\r\n".into(), 400, true),
        ("bad method token", format!("GE(T / HTTP/1.1\r\n{HOST}\r\n"), 400, true),
        ("unknown version", format!("GET / HTTP/9.9\r\n{HOST}\r\n"), 400, true),
        ("space in target", format!("GET /a b HTTP/1.1\r\n{HOST}\r\n"), 400, true),
        ("HTTP/2 preface on HTTP/1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(), 400, true),
        ("space in header name", format!("GET /Timeclock HTTP/1.1\r\n{HOST}Bad Header: x\r\n\r\n"), 400, true),
        ("header without colon", format!("GET /Timeclock HTTP/1.1\r\n{HOST}NoColon\r\n\r\n"), 400, true),
        ("NUL in header value", format!("GET /Timeclock HTTP/1.1\r\n{HOST}X-A: a\0b\r\n\r\n"), 400, true),
        ("bare CR", format!("GET /Timeclock HTTP/1.1\r\n{HOST}X-A: a\rb\r\n\r\n"), 400, true),
        ("obs-fold", format!("GET /Timeclock HTTP/1.1\r\n{HOST}X-A: one\r\n two\r\n\r\n"), 400, true),
        ("obs-fold Host", "GET /Timeclock HTTP/1.1\r\nHost: evil.example\r\n acme.flexhosting.se\r\n\r\n".into(), 400, true),
        ("conflicting Content-Length", format!("{callback}{HOST}Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"), 400, true),
        ("Content-Length list", format!("{callback}{HOST}Content-Length: 3, 5\r\n\r\nabcde"), 400, true),
        ("negative Content-Length", format!("{callback}{HOST}Content-Length: -1\r\n\r\n"), 400, true),
        ("Transfer-Encoding and Content-Length", format!("{callback}{HOST}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"), 400, true),
        ("Transfer-Encoding and Content-Length on GET", format!("GET /Timeclock HTTP/1.1\r\n{HOST}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"), 400, true),
        ("Transfer-Encoding on HTTP/1.0", format!("POST /HRM/IP1/Callback HTTP/1.0\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"), 400, true),
        ("unknown Transfer-Encoding", format!("{callback}{HOST}Transfer-Encoding: gzip\r\n\r\n{smuggled}"), 400, true),
        ("chunked not last", format!("{callback}{HOST}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"), 400, true),
        ("space before colon", format!("{callback}{HOST}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"), 400, true),
        ("head over 64 KiB", huge, 431, true),
        ("300 header lines", format!("GET /Timeclock HTTP/1.1\r\n{HOST}{many}\r\n"), 431, true),
        ("HTTP/1.0 without Host", "GET /Timeclock HTTP/1.0\r\n\r\n".into(), 400, true),
        ("HTTP/1.1 without Host", "GET /Timeclock HTTP/1.1\r\n\r\n".into(), 400, false),
        ("two Host headers", format!("GET /Timeclock HTTP/1.1\r\n{HOST}Host: evil.example\r\n\r\n"), 400, false),
        ("userinfo in Host", "GET /Timeclock HTTP/1.1\r\nHost: evil.example@acme.flexhosting.se\r\n\r\n".into(), 400, false),
        ("path in Host", "GET /Timeclock HTTP/1.1\r\nHost: acme.flexhosting.se/evil\r\n\r\n".into(), 400, false),
        ("absolute form, foreign authority", format!("GET http://evil.example/Timeclock HTTP/1.1\r\n{HOST}\r\n"), 400, false),
        ("absolute form, foreign Host", "GET http://acme.flexhosting.se/Timeclock HTTP/1.1\r\nHost: evil.example\r\n\r\n".into(), 400, false),
        ("absolute form, another tenant", format!("GET http://exempel.com/HRM/API/x HTTP/1.1\r\n{HOST}\r\n"), 400, false),
        ("CONNECT elsewhere", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n".into(), 405, true),
        ("CONNECT to a tenant", "CONNECT acme.flexhosting.se:443 HTTP/1.1\r\nHost: acme.flexhosting.se:443\r\n\r\n".into(), 405, true),
        ("asterisk form", format!("OPTIONS * HTTP/1.1\r\n{HOST}\r\n"), 400, false),
    ];
    let tried = cases.len();
    for (what, raw, status, must_close) in cases {
        let started = Instant::now();
        let out = send_raw(gw.http, raw.as_bytes(), Duration::from_secs(5), !must_close).await;
        assert_eq!(out.statuses, vec![status], "{what}: {}", out.text);
        assert!(
            !out.text.to_ascii_lowercase().contains("\r\nlocation:"),
            "{what}: {}",
            out.text
        );
        if must_close {
            assert!(out.closed, "{what}: connection left open after {status}");
            assert!(!out.reset, "{what}: closed with a reset");
            assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        }
    }
    // The well-formed version of the same request still works on the same gateway.
    let out = send_raw(
        gw.http,
        format!(
            "GET http://acme.flexhosting.se/Timeclock HTTP/1.1\r\n{HOST}Connection: close\r\n\r\n"
        )
        .as_bytes(),
        Duration::from_secs(5),
        false,
    )
    .await;
    assert_eq!(out.statuses, vec![307], "{}", out.text);

    stop.store(true, Ordering::Relaxed);
    let (ok, bad) = traffic.await.unwrap();
    assert!(
        ok > 0 && bad.is_empty(),
        "ordinary client: {ok} ok, {bad:?}"
    );
    assert!(
        up.take().is_empty(),
        "a refused request reached the upstream"
    );
    let unknown = "signpost_requests_total{action=\"reject\",code=";
    let line = |code| format!("{unknown}\"{code}\",kind=\"_none\",tenant=\"_unknown\"}} ");
    assert_eq!(gw.metric_when(&line(431), |v| v == 2.0), 2.0);
    assert!(gw.metric_when(&line(400), |v| v >= 10.0) >= 10.0);
    eprintln!("{tried} malformed requests refused");
}

/// Slowloris: clients that trickle their headers a byte a second are cut off when the head
/// has not arrived 10 s after it began, and ordinary clients are served the whole time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_trickled_a_byte_a_second_are_cut_off() {
    let _alone = crate::common::alone();
    const TRICKLERS: usize = 50;
    let gw = Gateway::start_example(None);
    let (stop, traffic) = ordinary_traffic(&gw, "http");
    let head = format!(
        "GET /Timeclock HTTP/1.1\r\n{HOST}X-Slow: {}\r\n\r\n",
        "a".repeat(60)
    );
    let tricklers: Vec<_> = (0..TRICKLERS)
        .map(|_| {
            let head = head.clone().into_bytes();
            let addr = gw.http;
            tokio::spawn(async move {
                let started = Instant::now();
                let (mut read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
                let trickle = async {
                    for byte in head {
                        if write.write_all(&[byte]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    std::future::pending::<()>().await
                };
                let mut answer = Vec::new();
                tokio::select! {
                    _ = read.read_to_end(&mut answer) => {}
                    _ = trickle => {}
                }
                (started.elapsed(), answer)
            })
        })
        .collect();
    for t in tricklers {
        let (elapsed, answer) = t.await.unwrap();
        assert!(answer.is_empty(), "a trickled head was answered");
        assert!(
            (Duration::from_secs(9)..Duration::from_secs(16)).contains(&elapsed),
            "closed after {elapsed:?}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, bad) = traffic.await.unwrap();
    assert!(
        ok > 50 && bad.is_empty(),
        "ordinary client: {ok} ok, {bad:?}"
    );
}

/// A pipelined request after a refused one is never answered: the refusal closes the
/// connection, so a body that smuggles a second request cannot be read as one.
#[tokio::test]
async fn nothing_after_a_refused_request_is_served() {
    let gw = Gateway::start_example(None);
    let raw = format!(
        "GET /Timeclock HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n\
         GET /Timeclock/Smuggled HTTP/1.1\r\n{HOST}\r\n\
         GET /Timeclock/Smuggled HTTP/1.1\r\n{HOST}\r\n"
    );
    let out = send_raw(gw.http, raw.as_bytes(), Duration::from_secs(5), false).await;
    assert_eq!(out.statuses, vec![400], "{}", out.text);
    assert!(out.closed);
    assert!(!out.text.contains("Smuggled"), "{}", out.text);
}

/// An HTTP/2 client connection to the gateway, its connection task spawned; the task's result
/// says how the server ended it.
async fn h2_connect(
    gw: &Gateway,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let (send, connection) =
        h2::client::handshake(raw_h2::tls(gw.https, "acme.flexhosting.se").await)
            .await
            .unwrap();
    (send, tokio::spawn(connection))
}

fn h2_redirect_request() -> http::Request<()> {
    http::Request::get("https://acme.flexhosting.se/Timeclock")
        .body(())
        .unwrap()
}

/// HTTP/2 rapid reset (CVE-2023-44487): connections that open stream after stream and cancel
/// each at once, as fast as they can. The work stays bounded (pingora's h2 server answers a
/// flood of streams cancelled before it accepted them with GOAWAY), memory does not grow with
/// the streams, the gateway stays up, and an ordinary HTTP/2 client on the same listener is
/// answered within 2 s throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_flood_is_bounded() {
    let _alone = crate::common::alone();
    const FLOOD: Duration = Duration::from_secs(3);
    const STREAMS_PER_CONNECTION: u32 = 20_000;
    let mut gw = Gateway::start_example(None);
    let (stop, traffic) = ordinary_traffic(&gw, "https");
    let rss_before = gw.rss_kib();
    let mut cancelled = 0;
    let mut endings = Vec::new();
    let started = Instant::now();
    while started.elapsed() < FLOOD {
        let (mut send, connection) = h2_connect(&gw).await;
        let mut sent = 0;
        let client_side = loop {
            if sent == STREAMS_PER_CONNECTION {
                break None;
            }
            if let Err(e) = std::future::poll_fn(|cx| send.poll_ready(cx)).await {
                break Some(e);
            }
            match send.send_request(h2_redirect_request(), true) {
                Ok((response, mut stream)) => {
                    stream.send_reset(h2::Reason::CANCEL);
                    drop(response);
                    sent += 1;
                }
                Err(e) => break Some(e),
            }
        };
        assert!(
            sent < STREAMS_PER_CONNECTION,
            "the server let {sent} cancelled streams through on one connection"
        );
        cancelled += sent;
        drop(send);
        let server_side = tokio::time::timeout(Duration::from_secs(10), connection)
            .await
            .expect("the server kept a flooding connection open for 10 s after it went quiet")
            .unwrap();
        endings.push(format!(
            "{sent} streams, then {:?}",
            client_side.or(server_side.err()).map(|e| e.to_string())
        ));
    }
    let grown_mib = gw.rss_kib().saturating_sub(rss_before) / 1024;
    eprintln!(
        "rapid reset: {cancelled} streams cancelled over {} connections, RSS +{grown_mib} MiB; \
         the first ones: {:?}",
        endings.len(),
        endings.iter().take(3).collect::<Vec<_>>()
    );
    assert!(grown_mib < 32, "RSS grew {grown_mib} MiB during the flood");
    assert!(gw.is_running(), "the gateway died");
    // A fresh HTTP/2 connection is served as before.
    let (mut send, _connection) = h2_connect(&gw).await;
    send = send.ready().await.unwrap();
    let (response, _) = send.send_request(h2_redirect_request(), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 307);
    stop.store(true, Ordering::Relaxed);
    let (ok, bad) = traffic.await.unwrap();
    assert!(
        ok >= 20 && bad.is_empty(),
        "ordinary client: {ok} ok, {bad:?}"
    );
    eprintln!("ordinary HTTP/2 client meanwhile: {ok} redirects, none failed or slower than 2 s");
}

/// The CONTINUATION flood (CVE-2024-27316 and kin): a request whose header block never ends,
/// 16 KB of headers per frame, for up to 32 MB. The gateway must end the connection long before
/// (its header list limit is 64 KiB), not buffer it, and keep serving others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_continuation_flood_is_cut_off() {
    let _alone = crate::common::alone();
    let mut gw = Gateway::start_example(None);
    let (stop, traffic) = ordinary_traffic(&gw, "https");
    let rss_before = gw.rss_kib();
    let mut tls = raw_h2::tls(gw.https, "acme.flexhosting.se").await;
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&raw_h2::frame(0x4, 0, 0, &[])).await.unwrap(); // SETTINGS
                                                                  // GET https://acme.flexhosting.se/ from the static table, END_STREAM but not END_HEADERS.
    let mut block = vec![0x82, 0x87, 0x84, 0x41];
    raw_h2::hpack_int("acme.flexhosting.se".len(), 7, &mut block);
    block.extend(b"acme.flexhosting.se");
    tls.write_all(&raw_h2::frame(0x1, 0x1, 1, &block))
        .await
        .unwrap();
    // Each CONTINUATION: one literal header `x-junk: aaa…` of 16 000 bytes, never the last.
    let mut junk = vec![0x00];
    raw_h2::hpack_int(6, 7, &mut junk);
    junk.extend(b"x-junk");
    raw_h2::hpack_int(16_000, 7, &mut junk);
    junk.extend(std::iter::repeat_n(b'a', 16_000));
    let continuation = raw_h2::frame(0x9, 0, 1, &junk);
    let mut sent = 0;
    let cut_off = loop {
        if sent >= 32 << 20 {
            break false;
        }
        match tokio::time::timeout(Duration::from_secs(5), tls.write_all(&continuation)).await {
            Ok(Ok(())) => sent += continuation.len(),
            Ok(Err(_)) => break true,
            Err(_) => {
                panic!("the gateway stopped reading but kept the connection after {sent} bytes")
            }
        }
    };
    // The server ends the connection.
    let mut answer = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    assert!(
        ended.is_ok(),
        "the connection stayed open after {sent} bytes of headers"
    );
    assert!(
        cut_off,
        "{sent} bytes of header block were accepted on one connection"
    );
    // Normally a GOAWAY (ENHANCE_YOUR_CALM) comes first; the reset that closing with our
    // flood unread causes may overtake it, so it is reported rather than required.
    let goaway = raw_h2::frames(&answer)
        .0
        .into_iter()
        .find(|frame| frame.kind == raw_h2::GOAWAY)
        .map_or("none seen".to_owned(), |frame| {
            format!(
                "{:#x}",
                u32::from_be_bytes(frame.payload[4..8].try_into().unwrap())
            )
        });
    eprintln!(
        "continuation flood: {sent} bytes written before the connection closed; GOAWAY: {goaway}"
    );
    let grown_mib = gw.rss_kib().saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 16, "RSS grew {grown_mib} MiB");
    assert!(gw.is_running(), "the gateway died");
    stop.store(true, Ordering::Relaxed);
    let (ok, bad) = traffic.await.unwrap();
    assert!(
        ok > 0 && bad.is_empty(),
        "ordinary client: {ok} ok, {bad:?}"
    );
}
