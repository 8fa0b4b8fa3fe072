//! The pingora `ProxyHttp` implementation: glue between pingora's phases and [`route`].
//!
//! - `request_filter`: route the request against the current snapshot. Redirects, `410` pages
//!   and rejects are answered right here; a forward leaves its plan in the context.
//! - `upstream_peer` / `upstream_request_filter`: connect to the plan's upstream and rewrite
//!   the request line, `Host` and `X-Forwarded-*`.
//! - `response_filter`: add the deprecation signals to forwarded responses.
//!
//! Responses are written with `write_response_header(.., end_of_stream)` and an explicit
//! `Content-Length`, never `respond_error`, which would close a keep-alive connection.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

use crate::report::{Finished, Recorder};
use crate::route::{route, Decision, Labels, Request, Scheme};
use crate::table::{Signals, Tables};
use crate::upstream::{http1, Upstream};

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The gateway: reads the routing snapshot, never writes it.
pub struct Gateway {
    pub tables: Tables,
    pub recorder: Arc<Recorder>,
}

/// Per-request state.
pub struct RequestCtx {
    started: Instant,
    route: Option<Labels>,
    forward: Option<ForwardPlan>,
}

/// Where a forwarded request goes, decided in `request_filter`.
struct ForwardPlan {
    upstream: Arc<Upstream>,
    /// Upstream request target: path and query.
    target: String,
    scheme: Scheme,
    /// Deprecation headers for the response, when the tenant has any.
    signals: Option<SignalHeaders>,
}

/// Owned copies of a tenant's signalling headers (cheap: `HeaderValue`s share their bytes).
pub(crate) struct SignalHeaders {
    deprecation: Option<HeaderValue>,
    sunset: Option<HeaderValue>,
    link: Option<HeaderValue>,
}

impl SignalHeaders {
    pub(crate) fn new(signals: &Signals, successor: &str) -> Option<Self> {
        (!signals.is_empty()).then(|| Self {
            deprecation: signals.deprecation.clone(),
            sunset: signals.sunset.clone(),
            link: HeaderValue::try_from(format!("<{successor}>; rel=\"successor-version\"")).ok(),
        })
    }

    /// The headers that are set, each replacing the upstream's of the same name.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&'static str, &HeaderValue)> {
        [
            ("deprecation", &self.deprecation),
            ("sunset", &self.sunset),
            ("link", &self.link),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
    }

    pub(crate) fn apply(&self, resp: &mut ResponseHeader) -> Result<()> {
        for (name, value) in self.entries() {
            resp.insert_header(name, value.clone())?;
        }
        Ok(())
    }
}

/// A response decided in `request_filter`.
struct Answer {
    header: ResponseHeader,
    body: Option<Bytes>,
}

enum Outcome {
    Answer(Answer),
    Forward(ForwardPlan),
}

impl Gateway {
    /// Routes against the current snapshot and turns the decision into owned data, so the
    /// snapshot guard is released before anything is awaited.
    fn decide(
        &self,
        head: &RequestHeader,
        scheme: Scheme,
        ctx: &mut RequestCtx,
    ) -> Result<Outcome> {
        let table = self.tables.load();
        let req = Request {
            method: &head.method,
            scheme,
            uri: &head.uri,
            headers: &head.headers,
            at: None,
        };
        let routed = route(&table, &req);
        let signals = routed.tenant.map(|t| &t.signals);
        ctx.route = routed.labels(head.uri.path());
        Ok(match routed.decision {
            Decision::Redirect { status, location } => {
                let mut header = ResponseHeader::build(status, Some(4))?;
                header.insert_header(CONTENT_LENGTH, "0")?;
                if let Some(s) = signals.and_then(|s| SignalHeaders::new(s, &location)) {
                    s.apply(&mut header)?;
                }
                header.insert_header(LOCATION, location)?;
                Outcome::Answer(Answer { header, body: None })
            }
            Decision::Gone { page } => Outcome::Answer(page_answer(
                StatusCode::GONE,
                "text/html; charset=utf-8",
                page.clone(),
            )?),
            Decision::Reject { status, why } => {
                let body = Bytes::from(format!(
                    "{} {}: {why}\n",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                ));
                Outcome::Answer(page_answer(status, "text/plain; charset=utf-8", body)?)
            }
            Decision::Forward { upstream, path } => {
                let signals = signals
                    .and_then(|s| SignalHeaders::new(s, &format!("{}{}", upstream.origin, path)));
                Outcome::Forward(ForwardPlan {
                    upstream: upstream.clone(),
                    target: path,
                    scheme,
                    signals,
                })
            }
        })
    }
}

/// The status a client sees when its forward fails: `504` for timeouts, else `502`.
pub(crate) fn upstream_status(e: &Error) -> u16 {
    match e.etype() {
        ConnectTimedout | ReadTimedout | WriteTimedout => 504,
        _ => 502,
    }
}

/// The client closed, reset or cancelled while its request was being served.
fn is_client_gone(e: &Error) -> bool {
    e.esource() == &ErrorSource::Downstream
        && matches!(e.etype(), ConnectionClosed | ReadError | WriteError)
}

/// A small fixed set of reasons, so the label's cardinality stays bounded.
pub(crate) fn upstream_reason(e: &Error) -> &'static str {
    match e.etype() {
        ConnectTimedout => "connect_timeout",
        ConnectRefused => "connect_refused",
        ConnectNoRoute => "no_address",
        ReadTimedout | WriteTimedout => "timeout",
        TLSHandshakeFailure | InvalidCert | TLSHandshakeTimedout => "tls",
        _ if is_client_gone(e) => "client_gone",
        ConnectionClosed | ReadError | WriteError => "connection",
        _ => "other",
    }
}

fn page_answer(status: StatusCode, content_type: &'static str, body: Bytes) -> Result<Answer> {
    let mut header = ResponseHeader::build(status, Some(4))?;
    header.insert_header(CONTENT_TYPE, content_type)?;
    header.insert_header(CONTENT_LENGTH, body.len().to_string())?;
    header.insert_header(CACHE_CONTROL, "no-store")?;
    Ok(Answer {
        header,
        body: Some(body),
    })
}

fn scheme_of(session: &Session) -> Scheme {
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    if tls {
        Scheme::Https
    } else {
        Scheme::Http
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            route: None,
            forward: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let scheme = scheme_of(session);
        match self.decide(session.req_header(), scheme, ctx)? {
            Outcome::Forward(plan) => {
                ctx.forward = Some(plan);
                Ok(false)
            }
            Outcome::Answer(Answer { header, body }) => {
                let head_only = session.req_header().method == Method::HEAD;
                let body = body.filter(|_| !head_only);
                // A failed write is the client's doing (gone, or its stream cancelled).
                session
                    .write_response_header(Box::new(header), body.is_none())
                    .await
                    .map_err(|e| e.into_down())?;
                if let Some(body) = body {
                    session
                        .write_response_body(Some(body), true)
                        .await
                        .map_err(|e| e.into_down())?;
                }
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let plan = ctx
            .forward
            .as_ref()
            .ok_or_else(|| Error::explain(InternalError, "no forward plan"))?;
        let peer = plan.upstream.peer().ok_or_else(|| {
            Error::explain(
                ConnectNoRoute,
                format!("upstream {} has no address yet", plan.upstream.name),
            )
        })?;
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let plan = ctx
            .forward
            .as_ref()
            .ok_or_else(|| Error::explain(InternalError, "no forward plan"))?;
        let uri = plan
            .target
            .parse()
            .or_err(InvalidHTTPHeader, "upstream path")?;
        upstream_request.set_uri(uri);
        // What the client asked for, before Host is rewritten for the upstream.
        let original_host = session
            .req_header()
            .uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .or_else(|| {
                session
                    .req_header()
                    .headers
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
            });
        upstream_request.insert_header(HOST, &*plan.upstream.authority)?;
        // Whatever a client claims in Forwarded and X-Forwarded-* is replaced, never appended to.
        let claims: Vec<HeaderName> = upstream_request
            .headers
            .keys()
            .filter(|name| http1::is_forwarding_claim(name.as_str()))
            .cloned()
            .collect();
        for name in &claims {
            upstream_request.remove_header(name);
        }
        match session.client_addr().and_then(|a| a.as_inet()) {
            Some(addr) => upstream_request.insert_header(X_FORWARDED_FOR, addr.ip().to_string())?,
            None => {
                upstream_request.remove_header(&X_FORWARDED_FOR);
            }
        }
        upstream_request.insert_header(X_FORWARDED_PROTO, plan.scheme.as_str())?;
        match original_host {
            Some(host) => upstream_request.insert_header(X_FORWARDED_HOST, host)?,
            None => {
                upstream_request.remove_header(&X_FORWARDED_HOST);
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(signals) = ctx.forward.as_ref().and_then(|p| p.signals.as_ref()) {
            signals.apply(upstream_response)?;
        }
        Ok(())
    }

    /// One place for everything recorded about a finished request: metrics, census, log.
    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        let head = session.req_header();
        let upstream_error = match (error, &ctx.forward) {
            (Some(e), Some(plan)) => Some((&*plan.upstream.name, upstream_reason(e))),
            _ => None,
        };
        self.recorder.finish(Finished {
            labels: ctx.route.as_ref(),
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            method: &head.method,
            path: head.uri.path(),
            headers: &head.headers,
            peer: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            elapsed: ctx.started.elapsed(),
            upstream_error,
            error: error.map(|e| e.etype().as_str()).unwrap_or(""),
        });
    }

    /// What pingora's own error log says about a request: no query string and no redacted
    /// capture, since either may hold a secret.
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let head = session.req_header();
        let path = ctx
            .route
            .as_ref()
            .and_then(|l| l.redacted_path.as_deref())
            .unwrap_or(head.uri.path());
        let tenant = ctx.route.as_ref().map_or("_unknown", |l| &*l.tenant);
        format!("{} {path} (tenant {tenant})", head.method)
    }

    /// A client that went away (closed, reset, or cancelled its HTTP/2 stream) is no fault of
    /// Signpost's or an upstream's: it is counted (status 0, and `error` in the access log) but
    /// not logged as an error, so that a flood of cancelled streams cannot flood the log.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        is_client_gone(e)
    }

    /// Timeouts talking to an upstream are `504`, other upstream failures `502`.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match e.etype() {
            HTTPStatus(code) => *code,
            ConnectTimedout | ReadTimedout | WriteTimedout | ConnectNoRoute => upstream_status(e),
            _ => match e.esource() {
                ErrorSource::Upstream => upstream_status(e),
                ErrorSource::Downstream if is_client_gone(e) => 0,
                ErrorSource::Downstream => 400,
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            if let Err(err) = session.respond_error(code).await {
                tracing::debug!(error = %err, "could not send error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}
