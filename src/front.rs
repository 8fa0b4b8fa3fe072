//! The HTTP/1.1 front door: answers what needs no upstream itself, hands the rest to pingora.
//!
//! Most legacy traffic is answered without an upstream: a redirect, a `410` page or a reject.
//! For those, pingora's full proxy pipeline (session objects, phases, header maps with case
//! tracking) cost more than the routing itself. So each HTTP/1.1 connection starts here: the
//! request head is parsed with `httparse` from one buffer, routed with [`route`] exactly as
//! the proxy would, and a plain bodiless GET or HEAD that does not forward is answered with one
//! write. Anything else — a forward, a request with a body, HTTP/1.0, `Connection: close`,
//! `Expect`, `Upgrade`, a head that does not parse or is too large — hands the connection, with
//! the bytes already read, to pingora's proxy (`set_pipelined_prefix`), which then serves it
//! to the end. HTTP/2 (ALPN `h2`) goes to pingora directly.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use http::header::{AUTHORIZATION, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::date::get_cached_date;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy::Gateway;
use crate::report::{Finished, Recorder};
use crate::route::{route, Decision, Request, Scheme};
use crate::table::Tables;

/// Request heads larger than this go to pingora, which answers them as it should (431/400).
const MAX_HEAD: usize = 16 * 1024;
/// How long an idle keep-alive connection may wait for the next request, and how long a
/// request head may take to arrive in full.
const IDLE: Duration = Duration::from_secs(60);
const MAX_HEADERS: usize = 64;

pub struct Front {
    proxy: Arc<HttpProxy<Gateway>>,
    tables: Tables,
    recorder: Arc<Recorder>,
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
    pub fn new(proxy: HttpProxy<Gateway>, tables: Tables, recorder: Arc<Recorder>) -> Self {
        Self {
            proxy: Arc::new(proxy),
            tables,
            recorder,
        }
    }

    async fn step(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        scheme: Scheme,
        peer: Option<IpAddr>,
    ) -> Step {
        let started = Instant::now();
        // The whole head must arrive within IDLE: trickling a byte at a time buys nothing.
        let deadline = tokio::time::Instant::now() + IDLE;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_len = loop {
            match parsed.parse(buf) {
                Ok(httparse::Status::Complete(n)) => break n,
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                _ => return Step::HandOff,
            }
            match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Step::Close,
                Ok(Ok(_)) => {}
            }
            // The parser borrows the buffer; start over on the longer one.
            headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            parsed = httparse::Request::new(&mut headers);
        };
        let Some(head) = Head::read(&parsed, self.recorder.census.api_key_headers()) else {
            return Step::HandOff;
        };

        let (answer, labels) = {
            let table = self.tables.load();
            let req = Request {
                method: &head.method,
                scheme,
                uri: &head.uri,
                headers: &head.headers,
            };
            let routed = route(&table, &req);
            if matches!(routed.decision, Decision::Forward { .. }) {
                return Step::HandOff;
            }
            (
                Answer::from(&routed, head.method == Method::HEAD),
                routed.labels(head.uri.path()),
            )
        };
        let written = stream.write_all(&answer.bytes).await.is_ok() && stream.flush().await.is_ok();
        buf.advance(head_len);
        self.recorder.finish(Finished {
            labels: labels.as_ref(),
            status: if written { answer.status } else { 0 },
            method: &head.method,
            path: head.uri.path(),
            headers: &head.headers,
            peer,
            elapsed: started.elapsed(),
            upstream_error: None,
            error: if written { "" } else { "WriteError" },
        });
        if written {
            Step::Answered
        } else {
            Step::Close
        }
    }
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
    fn from(routed: &crate::route::Routed<'_>, head_only: bool) -> Self {
        let mut out = Vec::with_capacity(256);
        let date = get_cached_date();
        let status = match &routed.decision {
            Decision::Redirect { status, location } => {
                status_line(&mut out, *status);
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
                status_line(&mut out, http::StatusCode::GONE);
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
                status_line(&mut out, *status);
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
            Decision::Forward { .. } => unreachable!("forwards are handed to the proxy"),
        };
        header(&mut out, b"Date", date.as_bytes());
        out.extend_from_slice(b"\r\n");
        Answer { status, bytes: out }
    }
}

fn status_line(out: &mut Vec<u8>, status: http::StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
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
        loop {
            if *shutdown.borrow() && buf.is_empty() {
                return None;
            }
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
        session.set_keepalive(if *shutdown.borrow() {
            None
        } else {
            Some(IDLE.as_secs())
        });
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

    async fn cleanup(&self) {
        self.proxy.cleanup().await;
    }
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
