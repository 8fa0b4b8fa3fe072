//! The HTTP/1.1 front door: serves the common requests itself, hands the rest to pingora.
//!
//! Most legacy traffic is a bodiless GET or HEAD: a redirect, a `410` page, a reject, or a
//! calendar or API read to forward. For those, pingora's full proxy pipeline (session objects,
//! phases, header maps with case tracking) cost more than the routing itself. So each HTTP/1.1
//! connection starts here: the request head is parsed with `httparse` from one buffer and
//! routed with [`route`] exactly as the proxy would; answers are written with one write, and
//! forwards go over [`http1`] with the proxy's rewriting rules, on connections kept in
//! [`pool`] (pingora's connector makes new ones, with TLS and its timeouts). Anything
//! else — a request with a body, HTTP/1.0, `Connection: close`, `Expect`, `Upgrade`, more
//! than 64 header lines — hands the connection, with the bytes already read, to pingora's
//! proxy (`set_pipelined_prefix`), which then serves it to the end. HTTP/2 (ALPN `h2`) goes
//! to pingora directly.
//!
//! Hostile input stops here, before pingora sees it: a head that does not parse gets `400`,
//! one over 64 KiB `431`, `Transfer-Encoding` with `Content-Length` (or on HTTP/1.0) `400`, all
//! with the connection closed; a head must arrive within 10 s of its first byte. pingora only
//! ever receives complete, well-formed heads.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use http::header::{AUTHORIZATION, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::protocols::http::date::get_cached_date;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy::{upstream_reason, upstream_status, Gateway, SignalHeaders};
use crate::report::{Finished, Recorder};
use crate::route::{route, Decision, Request, Scheme};
use crate::table::Tables;
use crate::upstream::http1::{self, Outgoing, RelayError};
use crate::upstream::pool::{self, Conn};
use crate::upstream::Upstream;

/// A request head larger than this is refused with `431` (nginx allows 4 × 8 KiB by default;
/// single-sign-on cookies make heads of 10–20 KiB common enough to leave room).
const MAX_HEAD: usize = 64 * 1024;
/// How long an idle keep-alive connection may wait for the next request.
const IDLE: Duration = Duration::from_secs(60);
/// How long a request head may take to arrive in full once its first byte has: a client
/// trickling its headers (slowloris) is cut off here, like nginx's `client_header_timeout`.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Heads with more header lines go to pingora, which allows 256.
const MAX_HEADERS: usize = 64;

pub struct Front {
    proxy: Arc<HttpProxy<Gateway>>,
    /// Makes new upstream connections (TCP, TLS) for bodiless GET/HEAD forwards; idle ones
    /// wait in [`pool`].
    connector: TransportConnector,
    tables: Tables,
    recorder: Arc<Recorder>,
    /// Set when pingora's shutdown begins (by [`crate::server`]'s background task). Read per
    /// request: a plain load, where the shutdown watch's `borrow` takes a read lock that every
    /// worker thread shares.
    draining: Arc<AtomicBool>,
}

/// What became of one request on the front door.
enum Step {
    /// Answered; the connection stays open for the next request.
    Answered,
    /// The connection is done (client closed, timeout, write error, shutdown).
    Close,
    /// pingora takes over the connection, starting with the bytes in the buffer.
    HandOff,
}

impl Front {
    pub fn new(
        proxy: HttpProxy<Gateway>,
        conf: &ServerConf,
        tables: Tables,
        recorder: Arc<Recorder>,
        draining: Arc<AtomicBool>,
    ) -> Self {
        Self {
            proxy: Arc::new(proxy),
            connector: TransportConnector::new(Some(ConnectorOptions::from_server_conf(conf))),
            tables,
            recorder,
            draining,
        }
    }

    async fn step(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        scheme: Scheme,
        peer: Option<IpAddr>,
    ) -> Step {
        let mut started = Instant::now();
        // A pipelined request has begun already; otherwise wait for one as long as IDLE.
        let wait = if buf.is_empty() { IDLE } else { HEAD_TIMEOUT };
        let mut deadline = tokio::time::Instant::now() + wait;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_len = loop {
            match parsed.parse(buf) {
                Ok(httparse::Status::Complete(n)) => break n,
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return self
                        .refuse(
                            stream,
                            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                            "head too large",
                            started,
                            peer,
                        )
                        .await;
                }
                Err(httparse::Error::TooManyHeaders) => return Step::HandOff,
                Err(_) => {
                    return self
                        .refuse(
                            stream,
                            http::StatusCode::BAD_REQUEST,
                            "malformed head",
                            started,
                            peer,
                        )
                        .await
                }
            }
            let was_empty = buf.is_empty();
            match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Step::Close,
                Ok(Ok(_)) => {}
            }
            if was_empty {
                // A request begins: its whole head must follow within HEAD_TIMEOUT.
                started = Instant::now();
                deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
            }
            // The parser borrows the buffer; start over on the longer one.
            headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            parsed = httparse::Request::new(&mut headers);
        };
        if let Some(why) = smuggling_shape(&parsed) {
            return self
                .refuse(stream, http::StatusCode::BAD_REQUEST, why, started, peer)
                .await;
        }
        let Some(head) = Head::read(&parsed, self.recorder.census.api_key_headers()) else {
            return Step::HandOff;
        };

        let (plan, labels) = {
            let table = self.tables.load();
            let req = Request {
                method: &head.method,
                scheme,
                uri: &head.uri,
                headers: &head.headers,
                at: None,
            };
            let routed = route(&table, &req);
            let plan = match &routed.decision {
                Decision::Forward { upstream, path } => {
                    let successor = format!("{}{}", upstream.origin, path);
                    Plan::Forward {
                        upstream: Arc::clone(upstream),
                        target: path.clone(),
                        signals: routed
                            .tenant
                            .and_then(|t| SignalHeaders::new(&t.signals, &successor)),
                    }
                }
                _ => Plan::Answer(Answer::from(&routed, head.method == Method::HEAD)),
            };
            (plan, routed.labels(head.uri.path()))
        };
        // Shutting down: this request is served, and the client told to send the next one on a
        // new connection (to the new process, in an upgrade). A connection is only ever closed
        // after a response that said so: closing one that the client believes kept alive (idle,
        // or after a response that began before the shutdown) races with the client sending its
        // next request on it, and that request would be lost.
        let closing = self.draining.load(Ordering::Relaxed);
        let (done, upstream_error) = match plan {
            Plan::Answer(mut answer) => {
                if closing {
                    announce_close(&mut answer.bytes);
                }
                let written =
                    stream.write_all(&answer.bytes).await.is_ok() && stream.flush().await.is_ok();
                (
                    Done {
                        status: answer.status,
                        keep_alive: written && !closing,
                        error: if written { "" } else { "WriteError" },
                    },
                    None,
                )
            }
            Plan::Forward {
                upstream,
                target,
                signals,
            } => {
                let forward = Forward {
                    upstream: &upstream,
                    target: &target,
                    signals,
                    scheme,
                    peer,
                };
                match self.forward(stream, parsed.headers, &head, forward).await {
                    Ok(done) => (done, None),
                    Err((done, reason)) => (done, Some((upstream.clone(), reason))),
                }
            }
        };
        buf.advance(head_len);
        let labels = labels.as_ref();
        self.recorder.finish(Finished {
            labels,
            status: done.status,
            method: &head.method,
            path: head.uri.path(),
            headers: &head.headers,
            peer,
            elapsed: started.elapsed(),
            upstream_error: upstream_error
                .as_ref()
                .map(|(u, reason)| (&*u.name, *reason)),
            error: done.error,
        });
        if done.keep_alive {
            Step::Answered
        } else {
            Step::Close
        }
    }

    /// Forwards a bodiless GET or HEAD over a pooled HTTP/1.1 connection and relays the
    /// answer; `Err` carries the upstream failure's reason for the metrics. A reused
    /// connection that fails before any response byte arrived is retried once on a new one
    /// (GET and HEAD are idempotent): the upstream may have closed it while it idled.
    async fn forward(
        &self,
        stream: &mut Stream,
        client_headers: &[httparse::Header<'_>],
        head: &Head,
        f: Forward<'_>,
    ) -> Result<Done, (Done, &'static str)> {
        let upstream = &**f.upstream;
        let Some(addr) = upstream.addr() else {
            return Err((error_response(stream, 502).await, "no_address"));
        };
        let original_host = head
            .uri
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| {
                client_headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("host"))
                    .map(|h| h.value)
            });
        let mut request = Vec::with_capacity(512);
        let outgoing = Outgoing {
            method: head.method.as_str(),
            target: f.target,
            authority: &upstream.authority,
            client_headers,
            original_host,
            client_ip: f.peer,
            scheme: f.scheme.as_str(),
        };
        if http1::write_request(&mut request, &outgoing).is_none() {
            return Err((error_response(stream, 502).await, "other"));
        }
        let extra: Vec<(&str, &[u8])> = f
            .signals
            .iter()
            .flat_map(SignalHeaders::entries)
            .map(|(name, value)| (name, value.as_bytes()))
            .collect();
        let head_request = head.method == Method::HEAD;

        let mut out = Vec::with_capacity(1024);
        let mut pooled = pool::take(addr, upstream);
        let (mut conn, response) = loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                None => match self.connect(addr, upstream).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        let status = upstream_status(&e);
                        return Err((error_response(stream, status).await, upstream_reason(&e)));
                    }
                },
            };
            let exchanged = http1::exchange(
                &mut conn,
                &request,
                upstream.read_timeout,
                head_request,
                &extra,
                &mut out,
            )
            .await;
            match exchanged {
                Ok(response) => break (conn, response),
                Err(failure) if reused && failure.before_response => out.clear(),
                Err(failure) => {
                    let done = error_response(stream, failure.status).await;
                    return Err((done, failure.reason));
                }
            }
        };
        conn.buf.advance(response.len);
        let status = response.status;
        // Decided as the head goes out, so that a response that began before a shutdown still
        // tells the client to close.
        let closing = self.draining.load(Ordering::Relaxed);
        if closing {
            announce_close(&mut out);
        }
        let relayed = http1::relay_body(
            &mut conn,
            response.framing,
            stream,
            out,
            upstream.read_timeout,
        )
        .await;
        match relayed {
            Ok(reusable) => {
                if reusable && response.keep_alive {
                    pool::put(addr, upstream, conn);
                }
                Ok(Done {
                    status,
                    keep_alive: !closing,
                    error: "",
                })
            }
            Err(RelayError::Client) => Ok(Done {
                status,
                keep_alive: false,
                error: "WriteError",
            }),
            // Mid-body: the client must see a broken response, not a complete one.
            Err(RelayError::Upstream(failure)) => Err((
                Done {
                    status,
                    keep_alive: false,
                    error: "UpstreamBody",
                },
                failure.reason,
            )),
        }
    }

    /// Answers a request that cannot be served with `status` and closes the connection: after
    /// a malformed or oversized head, nothing later on the connection can be trusted to be
    /// framed as the client meant. Counted as a reject for an unknown tenant.
    async fn refuse(
        &self,
        stream: &mut Stream,
        status: http::StatusCode,
        why: &'static str,
        started: Instant,
        peer: Option<IpAddr>,
    ) -> Step {
        let out = bodiless_head(status, true);
        if stream.write_all(&out).await.is_ok() && stream.flush().await.is_ok() {
            linger(stream).await;
        }
        self.recorder.finish(Finished {
            labels: None,
            status: status.as_u16(),
            method: &Method::GET,
            path: "",
            headers: &HeaderMap::new(),
            peer,
            elapsed: started.elapsed(),
            upstream_error: None,
            error: why,
        });
        Step::Close
    }

    /// A new connection (TCP, and TLS for `https` upstreams) with the upstream's timeouts and
    /// trust roots.
    async fn connect(
        &self,
        addr: std::net::SocketAddr,
        upstream: &Upstream,
    ) -> pingora::Result<Conn> {
        let stream = self.connector.new_stream(&upstream.peer_at(addr)).await?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
        })
    }
}

/// Closes our side and reads what the client still sends for a moment before the socket is
/// dropped: closing with unread bytes makes the kernel send a reset, which can destroy the
/// error response before the client reads it (nginx's `lingering_close`).
async fn linger(stream: &mut Stream) {
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

/// Header combinations that let two HTTP parsers disagree on where a request ends (request
/// smuggling): refused outright, as nginx does, rather than repaired. `Transfer-Encoding`
/// with `Content-Length` (RFC 9112 §6.1 lets a server reject it), and `Transfer-Encoding` on
/// HTTP/1.0, which has no chunked framing.
fn smuggling_shape(req: &httparse::Request<'_, '_>) -> Option<&'static str> {
    let has = |name: &str| {
        req.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    if !has("transfer-encoding") {
        return None;
    }
    if has("content-length") {
        return Some("both Transfer-Encoding and Content-Length");
    }
    (req.version == Some(0)).then_some("Transfer-Encoding on HTTP/1.0")
}

/// A bodiless error answer to the client, keeping the connection.
async fn error_response(stream: &mut Stream, status: u16) -> Done {
    let status_code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let out = bodiless_head(status_code, false);
    let written = stream.write_all(&out).await.is_ok() && stream.flush().await.is_ok();
    Done {
        status,
        keep_alive: written,
        error: "upstream",
    }
}

/// A complete response without a body; `close` adds `Connection: close`.
fn bodiless_head(status: http::StatusCode, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    status_line(&mut out, status, None);
    header(&mut out, b"Content-Length", b"0");
    if close {
        header(&mut out, b"Connection", b"close");
    }
    header(&mut out, b"Date", get_cached_date().as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// How one request ended on the front door.
struct Done {
    status: u16,
    keep_alive: bool,
    error: &'static str,
}

/// What routing decided, as owned data.
enum Plan {
    Answer(Answer),
    Forward {
        upstream: Arc<Upstream>,
        target: String,
        signals: Option<SignalHeaders>,
    },
}

/// A forward in progress.
struct Forward<'a> {
    upstream: &'a Arc<Upstream>,
    target: &'a str,
    signals: Option<SignalHeaders>,
    scheme: Scheme,
    peer: Option<IpAddr>,
}

/// The parts of a parsed head that routing, census and log need.
struct Head {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Head {
    /// `None` when the request is not one the front door answers: not HTTP/1.1, a body, or
    /// connection semantics that pingora handles (`Connection`, `Expect`, `Upgrade`).
    fn read(req: &httparse::Request<'_, '_>, api_keys: &[String]) -> Option<Head> {
        if req.version != Some(1) {
            return None;
        }
        let method = match req.method? {
            "GET" => Method::GET,
            "HEAD" => Method::HEAD,
            _ => return None,
        };
        let uri: Uri = req.path?.parse().ok()?;
        let mut headers = HeaderMap::new();
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            let keep = if name.eq_ignore_ascii_case(b"host") {
                Some(HOST)
            } else if name.eq_ignore_ascii_case(b"user-agent") {
                Some(USER_AGENT)
            } else if name.eq_ignore_ascii_case(b"authorization") {
                Some(AUTHORIZATION)
            } else if name.eq_ignore_ascii_case(b"content-length") {
                if h.value != b"0" {
                    return None;
                }
                None
            } else if name.eq_ignore_ascii_case(b"connection") {
                // `keep-alive` is HTTP/1.1's default; anything else is pingora's to handle.
                if !h.value.eq_ignore_ascii_case(b"keep-alive") {
                    return None;
                }
                None
            } else if ["transfer-encoding", "expect", "upgrade"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
            {
                return None;
            } else if name.eq_ignore_ascii_case(b"x-forwarded-for")
                || api_keys
                    .iter()
                    .any(|k| name.eq_ignore_ascii_case(k.as_bytes()))
            {
                // Census inputs: the forwarded-for hop and API-key headers.
                HeaderName::from_bytes(name).ok()
            } else {
                None
            };
            if let Some(name) = keep {
                headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
            }
        }
        Some(Head {
            method,
            uri,
            headers,
        })
    }
}

/// A complete response, serialised.
struct Answer {
    status: u16,
    bytes: Vec<u8>,
}

impl Answer {
    /// The whole response for a routed request that is not a forward.
    fn from(routed: &crate::route::Routed<'_>, head_only: bool) -> Self {
        let mut out = Vec::with_capacity(256);
        let date = get_cached_date();
        let status = match &routed.decision {
            Decision::Redirect { status, location } => {
                status_line(&mut out, *status, None);
                out.extend_from_slice(b"Content-Length: 0\r\nLocation: ");
                out.extend_from_slice(location.as_bytes());
                out.extend_from_slice(b"\r\n");
                if let Some(signals) = routed.tenant.map(|t| &t.signals).filter(|s| !s.is_empty()) {
                    for (name, value) in [
                        (&b"Deprecation"[..], &signals.deprecation),
                        (b"Sunset", &signals.sunset),
                    ] {
                        if let Some(v) = value {
                            header(&mut out, name, v.as_bytes());
                        }
                    }
                    header(
                        &mut out,
                        b"Link",
                        format!("<{location}>; rel=\"successor-version\"").as_bytes(),
                    );
                }
                status.as_u16()
            }
            Decision::Gone { page } => {
                status_line(&mut out, http::StatusCode::GONE, None);
                body_headers(&mut out, b"text/html; charset=utf-8", page.len());
                header(&mut out, b"Date", date.as_bytes());
                out.extend_from_slice(b"\r\n");
                if !head_only {
                    out.extend_from_slice(page);
                }
                return Answer {
                    status: 410,
                    bytes: out,
                };
            }
            Decision::Reject { status, why } => {
                let body = format!(
                    "{} {}: {why}\n",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                );
                status_line(&mut out, *status, None);
                body_headers(&mut out, b"text/plain; charset=utf-8", body.len());
                header(&mut out, b"Date", date.as_bytes());
                out.extend_from_slice(b"\r\n");
                if !head_only {
                    out.extend_from_slice(body.as_bytes());
                }
                return Answer {
                    status: status.as_u16(),
                    bytes: out,
                };
            }
            Decision::Forward { .. } => unreachable!("forwards are planned, not answered"),
        };
        header(&mut out, b"Date", date.as_bytes());
        out.extend_from_slice(b"\r\n");
        Answer { status, bytes: out }
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

/// `HTTP/1.1 307 Temporary Redirect`; `reason` overrides the standard phrase (an upstream's).
fn status_line(out: &mut Vec<u8>, status: http::StatusCode, reason: Option<&str>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        reason
            .or(status.canonical_reason())
            .unwrap_or("")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
}

fn body_headers(out: &mut Vec<u8>, content_type: &[u8], len: usize) {
    header(out, b"Content-Type", content_type);
    header(out, b"Content-Length", len.to_string().as_bytes());
    header(out, b"Cache-Control", b"no-store");
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.proxy.process_new(stream, shutdown).await;
        }
        let scheme = if stream.get_ssl_digest().is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let mut buf = BytesMut::with_capacity(4096);
        // During a shutdown each connection still gets its next request answered (with
        // `Connection: close`): one accepted just as the signal came may already carry one.
        loop {
            match self.step(&mut stream, &mut buf, scheme, peer).await {
                Step::Answered => continue,
                Step::Close => return None,
                Step::HandOff => break,
            }
        }
        // From here on pingora serves the connection, as its own accept loop would.
        let mut session = ServerSession::new_http1(stream);
        // The buffer may already hold the requests after this one: serve them in order.
        session.set_pipelining_enabled(true);
        session.set_pipelined_prefix(buf);
        // pingora itself turns keep-alive off for requests that begin during a shutdown.
        session.set_keepalive(Some(IDLE.as_secs()));
        let mut result = self.proxy.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = result.map(|r| r.consume()) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            result = self.proxy.process_new_http(session, shutdown).await;
        }
        None
    }

    /// Deliberately not the proxy's `cleanup`: that makes pingora close, at once, every
    /// kept-alive connection waiting for its next request, under clients that may be sending
    /// one (and after responses that did not announce a close). Without it, pingora answers
    /// each connection's next request with `Connection: close`, as the front door does, and
    /// idle ones stay open until the grace period ends.
    async fn cleanup(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Option<Head> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(raw.as_bytes()).unwrap().is_complete(), "{raw:?}");
        Head::read(&req, &["x-api-key".to_owned()])
    }

    #[test]
    fn answers_only_plain_bodiless_http11_gets_and_heads() {
        let ok = head("GET /a HTTP/1.1\r\nHost: a.se\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\nX-Api-Key: k\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(ok.method, Method::GET);
        assert_eq!(
            ok.headers.len(),
            2,
            "only what routing and the census read: {:?}",
            ok.headers
        );
        assert!(head("HEAD /a HTTP/1.1\r\nHost: a.se\r\n\r\n").is_some());
        for raw in [
            "GET /a HTTP/1.0\r\nHost: a.se\r\n\r\n",
            "POST /a HTTP/1.1\r\nHost: a.se\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a.se\r\nConnection: close\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a.se\r\nContent-Length: 5\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a.se\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a.se\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a.se\r\nExpect: 100-continue\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: a.se\r\nUpgrade: websocket\r\n\r\n",
        ] {
            assert!(head(raw).is_none(), "the proxy must handle {raw:?}");
        }
    }
}
