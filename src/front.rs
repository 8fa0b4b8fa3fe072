//! The HTTP/1.1 front door: serves the common requests itself, hands the rest to pingora.
//!
//! Most legacy traffic is a bodiless GET or HEAD: a redirect, a `410` page, a reject, or a
//! calendar or API read to forward. For those, pingora's full proxy pipeline (session objects,
//! phases, header maps with case tracking) cost more than the routing itself. So each HTTP/1.1
//! connection starts here: the request head is parsed with `httparse` from one buffer and
//! routed with [`route`] exactly as the proxy would; answers are written with one write, and
//! forwards go through pingora's upstream connector with the proxy's rewriting rules. Anything
//! else — a request with a body, HTTP/1.0, `Connection: close`, `Expect`, `Upgrade`, a head
//! that does not parse or is too large — hands the connection, with the bytes already read, to
//! pingora's proxy (`set_pipelined_prefix`), which then serves it to the end. HTTP/2 (ALPN
//! `h2`) goes to pingora directly.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use http::header::{AUTHORIZATION, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::RequestHeader;
use pingora::protocols::http::date::get_cached_date;
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy::{
    upstream_reason, upstream_status, Gateway, SignalHeaders, X_FORWARDED_FOR, X_FORWARDED_HOST,
    X_FORWARDED_PROTO,
};
use crate::report::{Finished, Recorder};
use crate::route::{route, Decision, Request, Scheme};
use crate::table::Tables;
use crate::upstream::Upstream;

/// Request heads larger than this go to pingora, which answers them as it should (431/400).
const MAX_HEAD: usize = 16 * 1024;
/// How long an idle keep-alive connection may wait for the next request, and how long a
/// request head may take to arrive in full.
const IDLE: Duration = Duration::from_secs(60);
const MAX_HEADERS: usize = 64;

pub struct Front {
    proxy: Arc<HttpProxy<Gateway>>,
    /// The front door's own upstream pool, for bodiless GET/HEAD forwards.
    upstreams: Connector,
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
    pub fn new(
        proxy: HttpProxy<Gateway>,
        conf: &ServerConf,
        tables: Tables,
        recorder: Arc<Recorder>,
    ) -> Self {
        Self {
            proxy: Arc::new(proxy),
            upstreams: Connector::new(Some(ConnectorOptions::from_server_conf(conf))),
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

        let (plan, labels) = {
            let table = self.tables.load();
            let req = Request {
                method: &head.method,
                scheme,
                uri: &head.uri,
                headers: &head.headers,
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
        let (done, upstream_error) = match plan {
            Plan::Answer(answer) => {
                let written =
                    stream.write_all(&answer.bytes).await.is_ok() && stream.flush().await.is_ok();
                (
                    Done {
                        status: answer.status,
                        keep_alive: written,
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

    /// Forwards a bodiless GET or HEAD through the front door's own upstream pool and streams
    /// the answer back; `Err` carries the upstream failure's reason for the metrics.
    async fn forward(
        &self,
        stream: &mut Stream,
        client_headers: &[httparse::Header<'_>],
        head: &Head,
        f: Forward<'_>,
    ) -> Result<Done, (Done, &'static str)> {
        let Some(peer) = f.upstream.peer() else {
            return Err((error_response(stream, 502).await, "no_address"));
        };
        let failed = |e: Box<pingora::Error>| (upstream_status(&e), upstream_reason(&e));
        let (mut up, _reused) = match self.upstreams.get_http_session(&peer).await {
            Ok(s) => s,
            Err(e) => {
                let (status, reason) = failed(e);
                return Err((error_response(stream, status).await, reason));
            }
        };
        up.set_read_timeout(Some(f.upstream.read_timeout));
        let request = match upstream_request(client_headers, head, &f) {
            Some(r) => r,
            None => return Err((error_response(stream, 502).await, "other")),
        };
        let sent = async {
            up.write_request_header(Box::new(request)).await?;
            up.finish_request_body().await?;
            loop {
                up.read_response_header().await?;
                if !up
                    .response_header()
                    .is_some_and(|r| r.status.is_informational())
                {
                    return Ok::<_, Box<pingora::Error>>(());
                }
            }
        };
        if let Err(e) = sent.await {
            let (status, reason) = failed(e);
            return Err((error_response(stream, status).await, reason));
        }
        let Some(mut resp) = up.response_header().cloned() else {
            return Err((error_response(stream, 502).await, "other"));
        };
        for hop in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
        ] {
            resp.remove_header(hop);
        }
        if let Some(signals) = &f.signals {
            let _ = signals.apply(&mut resp);
        }
        let code = resp.status.as_u16();
        let bodiless = head.method == Method::HEAD
            || resp.status.is_informational()
            || code == 204
            || code == 304;
        let chunked = !bodiless && !resp.headers.contains_key(http::header::CONTENT_LENGTH);
        if chunked {
            let _ = resp.insert_header("Transfer-Encoding", "chunked");
        }
        let mut out = Vec::with_capacity(512);
        status_line(&mut out, resp.status, resp.get_reason_phrase());
        resp.header_to_h1_wire(&mut out);
        out.extend_from_slice(b"\r\n");
        let broken = |status| Done {
            status,
            keep_alive: false,
            error: "WriteError",
        };
        if stream.write_all(&out).await.is_err() {
            return Ok(broken(code));
        }
        if !bodiless {
            loop {
                match up.read_response_body().await {
                    Ok(Some(chunk)) => {
                        let ok = if chunked {
                            let size = format!("{:x}\r\n", chunk.len());
                            stream.write_all(size.as_bytes()).await.is_ok()
                                && stream.write_all(&chunk).await.is_ok()
                                && stream.write_all(b"\r\n").await.is_ok()
                        } else {
                            stream.write_all(&chunk).await.is_ok()
                        };
                        if !ok {
                            return Ok(broken(code));
                        }
                    }
                    Ok(None) => break,
                    // Mid-body: the client must see a broken response, not a complete one.
                    Err(e) => {
                        return Err((
                            Done {
                                status: code,
                                keep_alive: false,
                                error: "UpstreamBody",
                            },
                            upstream_reason(&e),
                        ))
                    }
                }
            }
            if chunked && stream.write_all(b"0\r\n\r\n").await.is_err() {
                return Ok(broken(code));
            }
        }
        if stream.flush().await.is_err() {
            return Ok(broken(code));
        }
        self.upstreams
            .release_http_session(up, &peer, Some(IDLE))
            .await;
        Ok(Done {
            status: code,
            keep_alive: true,
            error: "",
        })
    }
}

/// The request the upstream receives: the client's headers minus hop-by-hop ones and any
/// `X-Forwarded-*` it claimed, with `Host` and `X-Forwarded-*` set by Signpost.
fn upstream_request(
    client_headers: &[httparse::Header<'_>],
    head: &Head,
    f: &Forward<'_>,
) -> Option<RequestHeader> {
    let mut req = RequestHeader::build(
        head.method.clone(),
        f.target.as_bytes(),
        Some(client_headers.len() + 4),
    )
    .ok()?;
    let mut original_host = head.uri.authority().map(|a| a.as_str().to_owned());
    for h in client_headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            original_host.get_or_insert_with(|| String::from_utf8_lossy(h.value).into_owned());
            continue;
        }
        let hop = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n));
        if hop || name.len() > 12 && name[..12].eq_ignore_ascii_case("x-forwarded-") {
            continue;
        }
        req.append_header(name.to_owned(), h.value).ok()?;
    }
    req.insert_header(http::header::HOST, &*f.upstream.authority)
        .ok()?;
    if let Some(ip) = f.peer {
        req.insert_header(X_FORWARDED_FOR, ip.to_string()).ok()?;
    }
    req.insert_header(X_FORWARDED_PROTO, f.scheme.as_str())
        .ok()?;
    if let Some(host) = original_host {
        req.insert_header(X_FORWARDED_HOST, host).ok()?;
    }
    Some(req)
}

/// A bodiless error answer to the client, keeping the connection.
async fn error_response(stream: &mut Stream, status: u16) -> Done {
    let status_code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let mut out = Vec::with_capacity(128);
    status_line(&mut out, status_code, None);
    header(&mut out, b"Content-Length", b"0");
    header(&mut out, b"Date", get_cached_date().as_bytes());
    out.extend_from_slice(b"\r\n");
    let written = stream.write_all(&out).await.is_ok() && stream.flush().await.is_ok();
    Done {
        status,
        keep_alive: written,
        error: "upstream",
    }
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
