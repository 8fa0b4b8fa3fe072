//! A forward on the front door: the request head [`super::head`] wrote, the body as it
//! arrives, then the upstream's answer relayed (or, for a WebSocket, a tunnel).
//!
//! Connections come from [`pool`] (new ones from pingora's connector, with TLS and the
//! upstream's timeouts). A request without a body and with an idempotent method that fails on
//! a reused connection before any response byte arrived is retried once on a new one, as nginx
//! does: the upstream may have closed that connection while it idled. Nothing else is retried,
//! and no request is sent twice otherwise.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{Method, Version};
use pingora::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::body::{self, BodyError};
use super::conn::{BodyLeft, Connection, Done};
use super::head::Request;
use crate::action::ForwardPlan;
use crate::protocol::answer::Answer;
use crate::protocol::failure::UpstreamFailure;
use crate::protocol::forward::SignalHeaders;
use crate::protocol::hygiene::Refusal;
use crate::upstream::http1::{self, Expect, Framing, RelayError};
use crate::upstream::pool::{self, Conn};

impl Connection<'_> {
    pub(super) async fn forward(
        &mut self,
        req: &Request,
        plan: &ForwardPlan,
        head: &[u8],
        closing: bool,
        body_deadline: Instant,
    ) -> Done {
        let upstream = &*plan.upstream;
        let untouched = BodyLeft::Untouched(req.body);
        let Some(addr) = upstream.addr() else {
            return self
                .fail(
                    req,
                    UpstreamFailure::NoAddress,
                    closing,
                    untouched,
                    body_deadline,
                )
                .await;
        };
        let extra: Vec<(&str, &[u8])> = plan
            .signals
            .iter()
            .flat_map(SignalHeaders::entries)
            .map(|(name, value)| (name, value.as_bytes()))
            .collect();
        let expect = Expect {
            head_request: req.method == Method::HEAD,
            websocket: req.websocket,
            client_chunked: req.version == Version::HTTP_11,
            extra: &extra,
        };
        // A body already whole in the buffer is sent from there and stays there until the
        // answer came, so that it can be sent again; a longer one is relayed as it arrives.
        let whole = body::buffered_len(&self.buf, req.body);
        let retryable = whole.is_some() && req.method.is_idempotent();
        let timeout = upstream.read_timeout;
        let mut out = Vec::with_capacity(1024);
        let mut pooled = pool::take(addr, upstream);
        let (mut conn, response) = loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => match self.front.connect(addr, upstream).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        let failure = UpstreamFailure::of(&e);
                        return self
                            .fail(req, failure, closing, untouched, body_deadline)
                            .await;
                    }
                },
            };
            let sent = match whole {
                Some(len) => {
                    let sent = http1::send(&mut conn, head, timeout).await;
                    match sent {
                        Ok(()) if len > 0 => {
                            http1::send(&mut conn, &self.buf[..len], timeout).await
                        }
                        other => other,
                    }
                }
                None => match http1::send(&mut conn, head, timeout).await {
                    Ok(()) => {
                        let streamed =
                            self.send_body(req, &mut conn, timeout, closing, body_deadline);
                        if let Err(done) = streamed.await {
                            return done;
                        }
                        Ok(())
                    }
                    Err(failure) => Err(failure),
                },
            };
            if let Err(failure) = sent {
                if reused && retryable {
                    continue;
                }
                return self
                    .fail(req, failure, closing, untouched, body_deadline)
                    .await;
            }
            match http1::read_response(&mut conn, timeout, &expect, &mut out).await {
                Ok(response) => break (conn, response),
                Err(failed) if reused && retryable && failed.before_response => out.clear(),
                Err(failed) => {
                    let left = if whole.is_some() {
                        untouched
                    } else {
                        BodyLeft::Consumed
                    };
                    return self
                        .fail(req, failed.failure, closing, left, body_deadline)
                        .await;
                }
            }
        };
        if let Some(len) = whole {
            self.buf.advance(len);
        }
        conn.buf.advance(response.len);
        let status = response.status;
        if response.framing == Framing::Tunnel {
            if self.write(&out).await {
                tunnel(
                    &mut self.stream,
                    &mut self.buf,
                    &mut conn,
                    upstream.read_timeout,
                )
                .await;
            }
            return Done {
                status,
                keep_alive: false,
                error: "",
                failure: None,
            };
        }
        // Decided as the head goes out, so that a response that began before a shutdown
        // still tells the client to close.
        let closing = closing
            || self
                .front
                .draining
                .load(std::sync::atomic::Ordering::Relaxed);
        if closing {
            announce_close(&mut out);
        }
        let relayed = http1::relay_body(
            &mut conn,
            response.framing,
            &mut self.stream,
            out,
            upstream.read_timeout,
        )
        .await;
        match relayed {
            Ok(reusable) => {
                if reusable && response.keep_alive && req.version == Version::HTTP_11 {
                    pool::put(addr, upstream, conn);
                }
                Done {
                    status,
                    keep_alive: !closing,
                    error: "",
                    failure: None,
                }
            }
            Err(RelayError::Client) => Done {
                status,
                keep_alive: false,
                error: "WriteError",
                failure: None,
            },
            // Mid-body: the client must see a broken response, not a complete one.
            Err(RelayError::Upstream(failure)) => Done {
                status,
                keep_alive: false,
                error: "UpstreamBody",
                failure: Some(failure),
            },
        }
    }

    /// Relays the request body to the upstream, first telling a client that sent
    /// `Expect: 100-continue` to go ahead. `Err` holds how the request ended when the body
    /// did not arrive whole (the client's connection then ends: the rest of the body, if any
    /// comes, cannot be told from a next request).
    async fn send_body(
        &mut self,
        req: &Request,
        conn: &mut Conn,
        timeout: Duration,
        closing: bool,
        body_deadline: Instant,
    ) -> Result<(), Done> {
        if req.expect_continue && !self.write(b"HTTP/1.1 100 Continue\r\n\r\n").await {
            return Err(gone());
        }
        let sent = body::relay(
            &mut self.stream,
            &mut self.buf,
            req.body,
            body::Sink::Upstream(conn, timeout),
            body_deadline,
        )
        .await;
        let partial = BodyLeft::Partial;
        let answer = |status, why| Answer::refusal(Refusal { status, why });
        Err(match sent {
            Ok(()) => return Ok(()),
            Err(BodyError::ClientGone) => gone(),
            Err(BodyError::Upstream(failure)) => {
                self.fail(req, failure, closing, partial, body_deadline)
                    .await
            }
            Err(BodyError::Timeout) => {
                let answer = answer(
                    http::StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                );
                self.answer(req, answer, true, partial, body_deadline).await
            }
            Err(BodyError::Malformed | BodyError::TooLarge) => {
                let answer = answer(
                    http::StatusCode::BAD_REQUEST,
                    "the chunked request body is malformed",
                );
                self.answer(req, answer, true, partial, body_deadline).await
            }
        })
    }
}

fn gone() -> Done {
    Done {
        status: 0,
        keep_alive: false,
        error: "ClientGone",
        failure: None,
    }
}

/// Carries bytes both ways after a WebSocket's `101`, until either side closes or neither
/// sends anything for `idle` (nginx's `proxy_read_timeout` does the same).
async fn tunnel(
    client: &mut Stream,
    client_buf: &mut BytesMut,
    upstream: &mut Conn,
    idle: Duration,
) {
    // What either side sent right behind the upgrade goes first.
    if !client_buf.is_empty() {
        if upstream.stream.write_all(client_buf).await.is_err() {
            return;
        }
        client_buf.clear();
    }
    if !upstream.buf.is_empty() {
        if client.write_all(&upstream.buf).await.is_err() || client.flush().await.is_err() {
            return;
        }
        upstream.buf.clear();
    }
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_upstream = vec![0u8; 16 * 1024];
    loop {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                read = client.read(&mut from_client) => match read {
                    Ok(n) if n > 0 => upstream.stream.write_all(&from_client[..n]).await.is_ok()
                        && upstream.stream.flush().await.is_ok(),
                    _ => false,
                },
                read = upstream.stream.read(&mut from_upstream) => match read {
                    Ok(n) if n > 0 => client.write_all(&from_upstream[..n]).await.is_ok()
                        && client.flush().await.is_ok(),
                    _ => false,
                },
            }
        })
        .await;
        if !matches!(step, Ok(true)) {
            return;
        }
    }
}

/// Adds `Connection: close` to a response head, after its status line.
fn announce_close(head: &mut Vec<u8>) {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(0, |i| i + 2);
    head.splice(line_end..line_end, *b"Connection: close\r\n");
}
