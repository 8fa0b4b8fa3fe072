//! Deadlines that hold whatever a client does (here `server.header_timeout: 1s`,
//! `server.body_timeout: 2s`): a connection that sends nothing, stalls in its TLS handshake
//! or never sends its HTTP/2 preface is closed at the header deadline, not held for the idle
//! time; a request body that trickles is cut at the body deadline, on either HTTP version.

use std::time::{Duration, Instant};

use serde_yaml::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::h2 as raw_h2;
use crate::common::raw::{End, Raw};
use crate::common::{Gateway, Upstream};

/// A gateway whose upstreams are the recording stand-in, with a 1 s header deadline and a
/// 2 s body deadline.
async fn gateway() -> (Gateway, Upstream) {
    Gateway::with_recording_upstream(|config, _| {
        config["server"]["header_timeout"] = Value::from("1s");
        config["server"]["body_timeout"] = Value::from("2s");
    })
    .await
}

/// How long after `started` the server closed `tcp` (reading and dropping what it sends);
/// `None` if it was still open after 10 s.
async fn closed_after(mut tcp: impl AsyncReadExt + Unpin, started: Instant) -> Option<Duration> {
    let mut sink = [0u8; 4096];
    let read_all = async {
        loop {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .ok()
        .map(|_| started.elapsed())
}

/// Idle connections of four kinds: plain ones that send nothing, TLS ones that send nothing,
/// TLS ones that stop after the first bytes of a ClientHello, and HTTP/2 ones that finish
/// the handshake and never send their preface. All are closed at the header deadline (1 s),
/// while an ordinary client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_are_closed_at_the_header_deadline() {
    let (gw, _up) = gateway().await;
    let started = Instant::now();
    let mut waits = Vec::new();
    for kind in ["plain", "tls silent", "tls half a hello", "h2 no preface"] {
        for _ in 0..25 {
            let (http, https) = (gw.http, gw.https);
            waits.push(tokio::spawn(async move {
                let closed = match kind {
                    "plain" => closed_after(TcpStream::connect(http).await.unwrap(), started).await,
                    "tls silent" => {
                        closed_after(TcpStream::connect(https).await.unwrap(), started).await
                    }
                    "tls half a hello" => {
                        let mut tcp = TcpStream::connect(https).await.unwrap();
                        // A handshake record header announcing 200 bytes, then nothing.
                        tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8])
                            .await
                            .unwrap();
                        closed_after(tcp, started).await
                    }
                    _ => {
                        closed_after(raw_h2::tls(https, "acme.flexhosting.se").await, started).await
                    }
                };
                (kind, closed)
            }));
        }
    }
    let resp = gw.get("http://acme.flexhosting.se/Timeclock").await;
    assert_eq!(resp.status(), 307, "others are served meanwhile");
    for wait in waits {
        let (kind, closed) = wait.await.unwrap();
        let closed = closed.unwrap_or_else(|| panic!("{kind}: still open after 10 s"));
        assert!(
            closed >= Duration::from_millis(900) && closed < Duration::from_secs(4),
            "{kind}: closed after {closed:?}, the header deadline is 1 s"
        );
    }
}

/// A body that trickles in (10 bytes, then one every 300 ms, of 100 announced) is cut at the
/// body deadline (2 s): a forward is answered `408` and closed, an answered request's
/// connection is closed after its answer, and over HTTP/2 the stream is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_cut_at_the_body_deadline() {
    let (gw, _up) = gateway().await;
    for (path, first_status) in [("/HRM/API/v1/upload", 408), ("/Timeclock/X", 307)] {
        let started = Instant::now();
        let mut conn = Raw::connect(gw.http).await;
        conn.send(format!("POST {path} HTTP/1.1\r\nHost: acme.flexhosting.se\r\nContent-Length: 100\r\n\r\n0123456789").as_bytes()).await;
        let trickle = async {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if !conn.send(b"x").await {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(3), trickle)
            .await
            .ok();
        let resp = conn.response(Duration::from_secs(5), false).await;
        let resp = resp.unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(resp.status, first_status, "{path}: {}", resp.head);
        assert_ne!(conn.end(Duration::from_secs(5)).await, End::Open, "{path}");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(6),
            "{path}: the connection lasted {took:?} with a 2 s body deadline"
        );
    }

    let mut client = raw_h2::Client::connect(gw.https, "acme.flexhosting.se").await;
    let fields = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "acme.flexhosting.se"),
        (":path", "/HRM/API/v1/upload"),
        ("content-length", "100"),
    ];
    let started = Instant::now();
    client.headers(1, &fields, false).await;
    client.data(1, b"0123456789", false).await;
    let trickle = async {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            client.data(1, b"x", false).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(3), trickle)
        .await
        .ok();
    let end = client.end_of(1, Duration::from_secs(10)).await;
    assert!(end.refused(), "HTTP/2: {end:?}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "HTTP/2: {end:?}"
    );
}

/// A kept-alive connection (here `server.keepalive_timeout: 6s`): one that keeps sending
/// requests, each within the idle time of the last, stays open past it; one that goes quiet
/// is closed at the idle time after its last answer; and one whose next head, sent after a
/// while, stalls halfway is closed at the header deadline (1 s) after its first byte, not at
/// the idle time. The front door keeps one timer per connection and moves it lazily: this
/// holds it to both ends. Over HTTP/2, whose door keeps the idle time by counting open
/// streams: a connection with a stream open longer than the idle time (a forward whose body
/// comes a byte a second) stays open, and a quiet one is closed at the idle time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_is_held_to_the_idle_and_header_deadlines() {
    let (gw, _up) = Gateway::with_recording_upstream(|config, _| {
        config["server"]["header_timeout"] = Value::from("1s");
        config["server"]["keepalive_timeout"] = Value::from("6s");
    })
    .await;
    let busy = async {
        let mut conn = Raw::connect(gw.http).await;
        // 9 s of requests 1.5 s apart: more than the idle time, never idle for that long.
        for _ in 0..6 {
            answered(&mut conn).await;
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        answered(&mut conn).await;
    };
    let quiet = async {
        let mut conn = Raw::connect(gw.http).await;
        answered(&mut conn).await;
        let last_answer = Instant::now();
        assert_ne!(conn.end(Duration::from_secs(10)).await, End::Open);
        last_answer.elapsed()
    };
    let stalled = async {
        let mut conn = Raw::connect(gw.http).await;
        answered(&mut conn).await;
        // Past the first head's deadline: the timer has fired once and waits for the idle time.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        conn.send(b"GET /Timeclock/X HTTP/1.1\r\nHost: acme").await;
        let first_byte = Instant::now();
        assert_ne!(conn.end(Duration::from_secs(10)).await, End::Open);
        first_byte.elapsed()
    };
    let h2_busy = async {
        let (send, connection) = h2_connect(&gw).await;
        let mut send = send.ready().await.unwrap();
        let request = http::Request::post("https://acme.flexhosting.se/HRM/API/v1/upload")
            .header("content-length", "8")
            .body(())
            .unwrap();
        let (response, mut body) = send.send_request(request, false).unwrap();
        for sent in 1..=8 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            body.send_data(bytes::Bytes::from_static(b"x"), sent == 8)
                .expect("the connection closed while a stream was open");
        }
        let response = response.await.expect("the stream was cut");
        assert_eq!(response.status(), 201);
        drop(send);
        connection.abort();
    };
    let h2_quiet = async {
        let (send, connection) = h2_connect(&gw).await;
        let mut send = send.ready().await.unwrap();
        let request = http::Request::get("https://acme.flexhosting.se/Timeclock/X")
            .body(())
            .unwrap();
        let (response, _) = send.send_request(request, true).unwrap();
        assert_eq!(response.await.unwrap().status(), 307);
        let last_answer = Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(10), connection).await;
        assert!(
            closed.is_ok(),
            "a quiet HTTP/2 connection was open 10 s after its answer"
        );
        drop(send);
        last_answer.elapsed()
    };
    let ((), quiet, stalled, (), h2_quiet) = tokio::join!(busy, quiet, stalled, h2_busy, h2_quiet);
    assert!(
        h2_quiet >= Duration::from_millis(5800) && h2_quiet < Duration::from_secs(8),
        "a quiet HTTP/2 connection closed {h2_quiet:?} after its answer; the idle time is 6 s"
    );
    assert!(
        quiet >= Duration::from_millis(5800) && quiet < Duration::from_secs(8),
        "a quiet connection closed {quiet:?} after its answer; the idle time is 6 s"
    );
    assert!(
        stalled >= Duration::from_millis(800) && stalled < Duration::from_millis(2500),
        "a stalled head was cut {stalled:?} after its first byte; the header deadline is 1 s"
    );
}

/// An HTTP/2 client connection; the task ends when the server closes it.
async fn h2_connect(
    gw: &Gateway,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tls = raw_h2::tls(gw.https, "acme.flexhosting.se").await;
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    (send, tokio::spawn(connection))
}

/// Sends a redirected request on `conn` and reads its answer.
async fn answered(conn: &mut Raw) {
    let request = b"GET /Timeclock/X HTTP/1.1\r\nHost: acme.flexhosting.se\r\n\r\n";
    assert!(conn.send(request).await, "the connection closed early");
    let resp = conn.response(Duration::from_secs(5), false).await;
    assert_eq!(resp.expect("an answer").status, 307);
}
