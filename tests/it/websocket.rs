//! WebSocket upgrades through a forward: the client's `Upgrade: websocket` reaches the
//! upstream, the upstream's real `101` (with its `Sec-WebSocket-Accept`) reaches the client,
//! and messages flow both ways until either side closes. A refused upgrade is an ordinary
//! response on a connection that carries on.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_yaml::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use crate::common::raw::Raw;
use crate::common::Gateway;

/// A WebSocket server that echoes each text message back as `echo: …`; it refuses
/// (`403`) upgrades to paths ending in `/refused`, and records every upgrade request's head.
// tungstenite's handshake callback returns its (large) error response by value.
#[allow(clippy::result_large_err)]
async fn echo_upstream() -> (SocketAddr, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let callback = |req: &Request, resp: Response| {
                    record.lock().unwrap().push(req.clone());
                    if req.uri().path().ends_with("/refused") {
                        let mut no =
                            tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(
                                Some("no".into()),
                            );
                        *no.status_mut() = StatusCode::FORBIDDEN;
                        return Err(no);
                    }
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    let reply = match message {
                        Message::Text(text) => Message::text(format!("echo: {text}")),
                        Message::Close(_) => return,
                        _ => continue,
                    };
                    if ws.send(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn gateway_for(upstream: SocketAddr) -> Gateway {
    Gateway::start_with(|config, _| {
        let api = &mut config["upstreams"]["api"];
        api["url"] = Value::from("http://api.flexhrm.com");
        api["address"] = Value::from(upstream.to_string());
    })
}

#[tokio::test]
async fn a_websocket_is_forwarded_and_tunnelled_after_the_upstreams_101() {
    let (upstream, seen) = echo_upstream().await;
    let gw = gateway_for(upstream);
    let tcp = TcpStream::connect(gw.http).await.unwrap();
    // tungstenite checks the `101` and its `Sec-WebSocket-Accept` against the key it sent.
    let (mut ws, response) =
        tokio_tungstenite::client_async("ws://acme.flexhosting.se/HRM/API/v1/socket", tcp)
            .await
            .expect("the upgrade is accepted");
    assert_eq!(response.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("ping {i}"))).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer through the tunnel")
            .unwrap()
            .unwrap();
        assert_eq!(answer, Message::text(format!("echo: ping {i}")));
    }
    ws.close(None).await.unwrap();
    let seen = seen.lock().unwrap();
    let [req] = seen.as_slice() else {
        panic!("{} upgrade requests reached the upstream", seen.len())
    };
    assert_eq!(req.uri().path(), "/v1/socket");
    assert_eq!(req.headers()["host"], "api.flexhrm.com");
    assert_eq!(req.headers()["x-forwarded-host"], "acme.flexhosting.se");
    assert_eq!(req.headers()["upgrade"], "websocket");
}

#[tokio::test]
async fn a_refused_upgrade_is_an_ordinary_answer_and_the_connection_carries_on() {
    let (upstream, _) = echo_upstream().await;
    let gw = gateway_for(upstream);
    let mut conn = Raw::connect(gw.http).await;
    conn.send(b"GET /HRM/API/v1/refused HTTP/1.1\r\nHost: acme.flexhosting.se\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await;
    let refused = conn
        .response(Duration::from_secs(5), false)
        .await
        .expect("an answer");
    assert_eq!(refused.status, 403, "{}", refused.head);
    conn.send(b"GET /Timeclock HTTP/1.1\r\nHost: acme.flexhosting.se\r\n\r\n")
        .await;
    let next = conn
        .response(Duration::from_secs(5), false)
        .await
        .expect("the next request is served");
    assert_eq!(next.status, 307);
}
