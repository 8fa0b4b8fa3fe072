//! One HTTP/1 connection on the front door: its requests in order, each read within the
//! header deadline, decided by [`head::read`], then answered or forwarded.
//!
//! Every request on the connection, the first or the hundredth, passes the same reader, so
//! the same limits hold for all of them: a head larger than 64 KiB is refused with `431`, one
//! that does not parse or frames its body doubtfully with `400`, both with the connection
//! closed; a head must arrive whole within the header deadline (for the first request of a
//! connection, counted from its start, TLS handshake included: a connection that sends nothing
//! is cut there, not held for the idle time); a body within the body deadline.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{Method, Version};
use pingora::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::body::{self, DISCARD_LIMIT};
use super::head::{self, Action, Context, Request};
use super::Front;
use crate::deadline::Deadline;
use crate::protocol::answer::Answer;
use crate::protocol::failure::UpstreamFailure;
use crate::protocol::headers::Kept;
use crate::protocol::hygiene::{BodyFraming, Refusal, MAX_HEAD};
use crate::report::Finished;
use crate::route::Scheme;

pub struct Connection<'f> {
    pub(super) front: &'f Front,
    pub(super) stream: Stream,
    /// Bytes read and not yet consumed: the head being read, a body's start, pipelined requests.
    pub(super) buf: BytesMut,
    /// The wait for each request head, in one timer.
    deadline: Deadline,
    /// When the last request ended: a kept-alive connection's idle time counts from there,
    /// which saves reading the clock again as the next wait begins.
    idle_since: Instant,
    scheme: Scheme,
    peer: Option<IpAddr>,
}

/// How one request ended.
pub struct Done {
    /// `0` when nothing was answered.
    pub status: u16,
    pub keep_alive: bool,
    /// For the access log: what went wrong, if anything (an [`UpstreamFailure`] label when
    /// a forward failed or the client went away).
    pub error: &'static str,
    pub failure: Option<UpstreamFailure>,
    /// Response body bytes written to the client (for the access log).
    pub bytes: u64,
}

/// How much of a request's body is still on the connection when it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLeft {
    /// All of it, as framed: it is dropped to keep the connection, if small enough.
    Untouched(BodyFraming),
    /// None: it was relayed, or there was none.
    Consumed,
    /// Part of it: the connection cannot carry another request.
    Partial,
}

/// The buffer a connection starts with: a typical request head fits, an idle connection holds
/// no more than this.
const FIRST_READ: usize = 512;

impl<'f> Connection<'f> {
    fn new(front: &'f Front, stream: Stream, first_deadline: Instant) -> Self {
        let scheme = if stream.get_ssl_digest().is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        Self {
            front,
            stream,
            buf: BytesMut::new(),
            deadline: Deadline::new(first_deadline),
            // Read only after a request has ended, which sets it.
            idle_since: first_deadline,
            scheme,
            peer,
        }
    }

    /// Serves requests until the connection ends; the first head must be complete by
    /// `first_deadline`.
    pub async fn serve(front: &'f Front, stream: Stream, first_deadline: Instant) {
        let mut conn = Self::new(front, stream, first_deadline);
        let mut first = Some(first_deadline);
        while conn.request(first.take()).await {}
    }

    /// Serves one request; whether the connection carries another.
    async fn request(&mut self, first_deadline: Option<Instant>) -> bool {
        let (req, action, started) = match self.read_head(first_deadline).await {
            Ok(read) => read,
            Err(None) => return false,
            Err(Some((refusal, started))) => {
                self.refuse(refusal, started).await;
                return false;
            }
        };
        self.buf.advance(req.head_len);
        // Counted from the request's first byte (the head's own time is bounded by the
        // header deadline), which saves a clock read on every request.
        let body_deadline = Instant::from_std(started) + self.front.deadlines.body;
        // Shutting down: this request is served, and the client told to send the next one on
        // a new connection (to the new process, in an upgrade). A connection is only ever
        // closed after a response that said so: closing one that the client believes kept
        // alive races with the client sending its next request on it, which would be lost.
        let closing = req.close || self.front.draining.load(Ordering::Relaxed);
        let (done, upstream) = match action {
            Action::Answer(answer) => {
                let left = BodyLeft::Untouched(req.body);
                (
                    self.answer(&req, answer, closing, left, body_deadline)
                        .await,
                    None,
                )
            }
            Action::Forward { plan, head } => {
                // Boxed: the forward's state (connecting, TLS, relaying) is large, and a
                // connection waiting for its next request should not carry room for it.
                let done = Box::pin(self.forward(&req, &plan, &head, closing, body_deadline)).await;
                (done, Some(plan.upstream))
            }
            Action::Fail(upstream, failure) => {
                let done = self.fail(
                    &req,
                    failure,
                    closing,
                    BodyLeft::Untouched(req.body),
                    body_deadline,
                );
                (done.await, Some(upstream))
            }
        };
        let ended = Instant::now();
        self.idle_since = ended;
        self.front.recorder.finish(Finished {
            labels: req.labels.as_ref(),
            status: done.status,
            method: &req.method,
            path: req.path(),
            headers: &req.headers,
            version: req.version,
            bytes: done.bytes,
            peer: self.peer,
            elapsed: ended.into_std().saturating_duration_since(started),
            upstream_error: done
                .failure
                .zip(upstream.as_deref())
                .map(|(f, u)| (&*u.name, f)),
            error: done.error,
        });
        done.keep_alive
    }

    /// Reads until a whole head is in the buffer and decides it. `Err(None)` when the
    /// connection ends quietly: closed by the client, idle too long, or a head that did not
    /// arrive in time (nothing to answer: the client is not reading).
    async fn read_head(
        &mut self,
        first_deadline: Option<Instant>,
    ) -> Result<(Request, Action, std::time::Instant), Option<(Refusal, std::time::Instant)>> {
        let deadlines = self.front.deadlines;
        // Between requests a connection may idle; once a request's first byte is here (or on
        // a new connection, from its start) the whole head must follow in time.
        let mut idle = first_deadline.is_none() && self.buf.is_empty();
        // One clock read per request here, when its first bytes are in.
        let now = if idle {
            self.idle_since
        } else {
            Instant::now()
        };
        let mut started = now.into_std();
        let mut deadline = match first_deadline {
            Some(deadline) => deadline,
            None if idle => now + deadlines.idle,
            None => now + deadlines.header,
        };
        // Bytes already known not to end a head (a head can only end where a line does).
        let mut scanned = 0;
        loop {
            if !self.buf.is_empty() && (scanned == 0 || self.buf[scanned..].contains(&b'\n')) {
                let table = self.front.tables.load();
                let cx = Context {
                    table: &table,
                    api_key_headers: self.front.recorder.census.api_key_headers(),
                    scheme: self.scheme,
                    peer: self.peer,
                };
                match head::read(&self.buf, &cx) {
                    // However the reads fell, a head past the limit is refused.
                    Ok(Some((req, _))) if req.head_len > MAX_HEAD => {
                        return Err(Some((Refusal::HEAD_TOO_LARGE, started)))
                    }
                    Ok(Some((req, action))) => return Ok((req, action, started)),
                    Err(refusal) => return Err(Some((refusal, started))),
                    Ok(None) => {}
                }
            }
            scanned = self.buf.len();
            if self.buf.len() >= MAX_HEAD {
                return Err(Some((Refusal::HEAD_TOO_LARGE, started)));
            }
            let spare = self.buf.capacity() - self.buf.len();
            if self.buf.is_empty() {
                // Small first: terminals, calendar clients and load balancers hold thousands
                // of connections open, most of them idle. On a kept-alive connection this
                // reuses the buffer the last request had (no allocation).
                if spare < FIRST_READ {
                    self.buf.reserve(FIRST_READ);
                }
            } else if spare < 1024 {
                self.buf.reserve(4096);
            }
            let read = self.stream.read_buf(&mut self.buf);
            match self.deadline.run(deadline, read).await {
                Some(Ok(0)) | Some(Err(_)) | None => return Err(None),
                Some(Ok(_)) => {}
            }
            if idle {
                idle = false;
                let now = Instant::now();
                started = now.into_std();
                deadline = now + deadlines.header;
            }
        }
    }

    /// Writes an answer Signpost decided itself, then drops the request's body if it is still
    /// coming and small enough to keep the connection for the next request.
    pub(super) async fn answer(
        &mut self,
        req: &Request,
        mut answer: Answer,
        closing: bool,
        left: BodyLeft,
        body_deadline: Instant,
    ) -> Done {
        let pending = match left {
            BodyLeft::Untouched(framing) if body::buffered_len(&self.buf, framing).is_none() => {
                Some(framing)
            }
            _ => None,
        };
        // A client that sent `Expect: 100-continue` waits for a go-ahead that an answer does
        // not give: it may or may not send its body now, so the connection cannot be reused.
        answer.close |= closing
            || left == BodyLeft::Partial
            || pending.is_some_and(|framing| {
                req.expect_continue
                    || matches!(framing, BodyFraming::Length(n) if n > DISCARD_LIMIT)
            });
        let mut out = Vec::with_capacity(256);
        let head_only = req.method == Method::HEAD;
        answer.write_h1(&mut out, head_only);
        let written = self.write(&out).await;
        let status = answer.status.as_u16();
        if !written {
            return Done {
                status,
                keep_alive: false,
                error: UpstreamFailure::ClientGone.label(),
                failure: None,
                bytes: 0,
            };
        }
        let keep_alive = !answer.close
            && match left {
                BodyLeft::Untouched(BodyFraming::None) | BodyLeft::Consumed => true,
                // Boxed, as the lingering close below: rare, and a connection's future would
                // otherwise carry room for them while it waits for its next request.
                BodyLeft::Untouched(framing) => Box::pin(body::relay(
                    &mut self.stream,
                    &mut self.buf,
                    framing,
                    body::Sink::Drop,
                    body_deadline,
                ))
                .await
                .is_ok(),
                BodyLeft::Partial => false,
            };
        if !keep_alive && pending.is_some() {
            Box::pin(linger(&mut self.stream)).await;
        }
        Done {
            status,
            keep_alive,
            error: "",
            failure: None,
            bytes: answer.body_len(head_only),
        }
    }

    /// Answers a forward that failed before any of the upstream's response was sent.
    pub(super) async fn fail(
        &mut self,
        req: &Request,
        failure: UpstreamFailure,
        closing: bool,
        left: BodyLeft,
        body_deadline: Instant,
    ) -> Done {
        let Some(answer) = Answer::upstream_failure(failure) else {
            return Done {
                status: 0,
                keep_alive: false,
                error: failure.label(),
                failure: Some(failure),
                bytes: 0,
            };
        };
        let done = self.answer(req, answer, closing, left, body_deadline).await;
        Done {
            error: failure.label(),
            failure: Some(failure),
            ..done
        }
    }

    /// Answers a request that is not acted on and closes the connection.
    async fn refuse(&mut self, refusal: Refusal, started: std::time::Instant) {
        let mut out = Vec::with_capacity(256);
        Answer::refusal(refusal).write_h1(&mut out, false);
        let written = self.write(&out).await;
        if written {
            Box::pin(linger(&mut self.stream)).await;
        }
        self.front.recorder.finish(Finished {
            labels: None,
            status: refusal.status.as_u16(),
            method: &Method::GET,
            path: "",
            headers: &Kept::default(),
            version: Version::HTTP_11,
            bytes: if written {
                Answer::refusal(refusal).body_len(false)
            } else {
                0
            },
            peer: self.peer,
            elapsed: started.elapsed(),
            upstream_error: None,
            error: refusal.why,
        });
    }

    pub(super) async fn write(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok() && self.stream.flush().await.is_ok()
    }
}

/// Closes our side and reads what the client still sends for a moment before the socket is
/// dropped: closing with unread bytes makes the kernel send a reset, which can destroy the
/// last response before the client reads it (nginx's `lingering_close`).
pub async fn linger(stream: &mut Stream) {
    const LINGER: Duration = Duration::from_secs(2);
    const MAX_DISCARD: usize = 256 * 1024;
    if stream.shutdown().await.is_err() {
        return;
    }
    let discard = async {
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < MAX_DISCARD {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, discard).await;
}
