//! A forward on the front door: the request head [`super::head`] wrote, the body as it
//! arrives, then the upstream's answer relayed (or, for a WebSocket, a tunnel).
//!
//! Connections come from [`pool`] (new ones from pingora's connector, with TLS and the
//! upstream's timeouts). A request whose body (if any) is already whole in hand and whose
//! method is idempotent is retried once on a new connection when a reused one fails before
//! any response byte arrived, as nginx does: the upstream may have closed that connection
//! while it idled. Nothing else is retried, and no request is sent twice otherwise.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
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
use crate::protocol::answer::{self, Answer};
use crate::protocol::failure::UpstreamFailure;
use crate::protocol::hygiene::Refusal;
use crate::upstream::http1::{self, Expect, Framing, RelayError, ResponseHead};
use crate::upstream::pool::{self, Conn};
use crate::upstream::Upstream;

/// One forward's fixed parts, shared by its steps.
struct Forward<'r> {
    req: &'r Request,
    upstream: &'r Upstream,
    addr: SocketAddr,
    /// The upstream's request head.
    head: &'r [u8],
    expect: Expect<'r>,
    closing: bool,
    body_deadline: Instant,
}

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
        let Some(addr) = upstream.addr() else {
            let left = BodyLeft::Untouched(req.body);
            let failure = UpstreamFailure::NoAddress;
            return self.fail(req, failure, closing, left, body_deadline).await;
        };
        let extra: Vec<(&str, &[u8])> = plan
            .signals
            .iter()
            .flat_map(|s| s.entries())
            .map(|(name, value)| (name, value.as_bytes()))
            .collect();
        let forward = Forward {
            req,
            upstream,
            addr,
            head,
            expect: Expect {
                head_request: req.method == Method::HEAD,
                websocket: req.websocket,
                client_chunked: req.version == Version::HTTP_11,
                extra: &extra,
            },
            closing,
            body_deadline,
        };
        let mut out = Vec::with_capacity(1024);
        match self.exchange(&forward, &mut out).await {
            Ok((conn, response)) => self.relay(&forward, conn, response, out).await,
            Err(done) => done,
        }
    }

    /// Sends the request and reads up to the head of the answer, into `out` as the client
    /// gets it. A body already whole in the buffer is sent from there and stays there until
    /// the answer came, so that it can be sent again: such a request with an idempotent
    /// method is retried once on a new connection when a reused one fails before any of the
    /// answer arrived. A longer body is relayed as it arrives and never sent twice.
    async fn exchange(
        &mut self,
        f: &Forward<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(Conn, ResponseHead), Done> {
        let req = f.req;
        let untouched = BodyLeft::Untouched(req.body);
        let whole = body::buffered_len(&self.buf, req.body);
        let retryable = whole.is_some() && req.method.is_idempotent();
        let timeout = f.upstream.read_timeout;
        let mut pooled = pool::take(f.addr, f.upstream);
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                // Boxed: pingora's connect (TCP, TLS) is a 9 KB future, and most forwards
                // take a pooled connection; inline, every forward's future would be that big
                // and each forward would copy it into its box.
                None => match Box::pin(self.front.connect(f.addr, f.upstream)).await {
                    Ok(conn) => conn,
                    Err(e) => return Err(self.failed(f, UpstreamFailure::of(&e), untouched).await),
                },
            };
            if let Err(failure) = self.send(f, &mut conn, whole).await? {
                if reused && retryable {
                    continue;
                }
                return Err(self.failed(f, failure, untouched).await);
            }
            match http1::read_response(&mut conn, timeout, &f.expect, out).await {
                Ok(response) => {
                    if let Some(len) = whole {
                        self.buf.advance(len);
                    }
                    conn.buf.advance(response.len);
                    return Ok((conn, response));
                }
                Err(failed) if reused && retryable && failed.before_response => out.clear(),
                Err(failed) => {
                    let left = if whole.is_some() {
                        untouched
                    } else {
                        BodyLeft::Consumed
                    };
                    return Err(self.failed(f, failed.failure, left).await);
                }
            }
        }
    }

    /// Writes the request head and its body (`whole`: the length of a body already in the
    /// buffer, sent from there; else it is relayed as it arrives). The outer `Err` is how the
    /// request ended when its body did not arrive; the inner one an upstream that failed.
    async fn send(
        &mut self,
        f: &Forward<'_>,
        conn: &mut Conn,
        whole: Option<usize>,
    ) -> Result<Result<(), UpstreamFailure>, Done> {
        let timeout = f.upstream.read_timeout;
        if let Err(failure) = http1::send(conn, f.head, timeout).await {
            return Ok(Err(failure));
        }
        match whole {
            Some(0) => Ok(Ok(())),
            Some(len) => Ok(http1::send(conn, &self.buf[..len], timeout).await),
            None => {
                let sent = self.send_body(f.req, conn, timeout, f.closing, f.body_deadline);
                sent.await.map(Ok)
            }
        }
    }

    async fn failed(&mut self, f: &Forward<'_>, failure: UpstreamFailure, left: BodyLeft) -> Done {
        self.fail(f.req, failure, f.closing, left, f.body_deadline)
            .await
    }

    /// Relays the answer whose head is in `out`: a `101` to a WebSocket request opens a
    /// tunnel; anything else is relayed to its end, and the upstream connection goes back to
    /// the pool when it can carry another request.
    async fn relay(
        &mut self,
        f: &Forward<'_>,
        mut conn: Conn,
        response: ResponseHead,
        mut out: Vec<u8>,
    ) -> Done {
        let mut sent = 0;
        let done = |keep_alive, error, failure, bytes| Done {
            status: response.status,
            keep_alive,
            error,
            failure,
            bytes,
        };
        if response.framing == Framing::Tunnel {
            if self.write(&out).await {
                let idle = f.upstream.read_timeout;
                tunnel(&mut self.stream, &mut self.buf, &mut conn, idle).await;
            }
            return done(false, "", None, sent);
        }
        // Decided as the head goes out, so that a response that began before a shutdown
        // still tells the client to close.
        let closing = f.closing || self.front.draining.load(Ordering::Relaxed);
        if closing {
            announce_close(&mut out);
        }
        let timeout = f.upstream.read_timeout;
        // The access log counts body bytes, as nginx's `$body_bytes_sent` and HTTP/2 do.
        let head_len = out.len() as u64;
        let relayed = http1::relay_body(
            &mut conn,
            response.framing,
            &mut self.stream,
            out,
            timeout,
            &mut sent,
        )
        .await;
        sent = sent.saturating_sub(head_len);
        match relayed {
            Ok(reusable) => {
                if reusable && response.keep_alive && f.req.version == Version::HTTP_11 {
                    pool::put(f.addr, f.upstream, conn);
                }
                done(!closing, "", None, sent)
            }
            Err(RelayError::Client) => {
                let gone = UpstreamFailure::ClientGone;
                done(false, gone.label(), Some(gone), sent)
            }
            // Mid-body: the client must see a broken response, not a complete one.
            Err(RelayError::Upstream(failure)) => done(false, failure.label(), Some(failure), sent),
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
        if req.expect_continue && !self.write(answer::CONTINUE).await {
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
        error: UpstreamFailure::ClientGone.label(),
        failure: Some(UpstreamFailure::ClientGone),
        bytes: 0,
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
