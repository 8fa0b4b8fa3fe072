//! What Signpost does with an HTTP/2 stream, by the rules in [`crate::protocol`] and [`route`]
//! that the HTTP/1 front door ([`crate::front`]) uses too.
//!
//! - [`Gateway::begin`] and [`Gateway::finish`], called by the HTTP/2 door for every stream: the
//!   head's framing checks ([`body_framing`]), a declared empty body checked against what the
//!   client sends, then routing. Answers ([`Answer`]) are written and recorded right there; a
//!   forward's plan goes in the head's extensions, and the stream to pingora's proxy, the
//!   `ProxyHttp` below.
//! - `request_filter`: takes the door's plan back.
//! - `upstream_peer` / `upstream_request_filter`: connect to the plan's upstream and write the
//!   forwarded head ([`forwarded_headers`]).
//! - `request_body_filter`: the body deadline.
//! - `response_filter`: the tenant's signalling headers on the upstream's response.
//! - `fail_to_proxy` / `logging`: failures named by [`UpstreamFailure`], and one record of
//!   every request.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::HOST;
use http::{StatusCode, Version};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::protocols::http::v2::server::HttpSession;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

use crate::action::{ForwardPlan, Outcome};
use crate::protocol::answer::Answer;
use crate::protocol::failure::UpstreamFailure;
use crate::protocol::forward::{forwarded_headers, Hop};
use crate::protocol::hygiene::{body_framing, BodyFraming, Deadlines, Refusal};
use crate::report::{Finished, Recorder};
use crate::route::{route, Labels, Request, Scheme};
use crate::table::Tables;

/// The gateway: reads the routing snapshot, never writes it.
#[derive(Clone)]
pub struct Gateway {
    pub tables: Tables,
    pub recorder: Arc<Recorder>,
    pub deadlines: Deadlines,
}

/// Per-request state. `Clone` only because a head's extensions require it: it is moved from
/// the door to the proxy, never copied.
#[derive(Clone)]
pub struct RequestCtx {
    started: Instant,
    route: Option<Labels>,
    /// The routed path when it differs from the request's (dot segments resolved).
    routed_path: Option<String>,
    forward: Option<ForwardPlan>,
    /// The whole body must have arrived by then.
    body_deadline: Instant,
}

fn scheme_of(digest: Option<&Digest>) -> Scheme {
    let tls = digest.is_some_and(|d| d.ssl_digest.is_some());
    if tls {
        Scheme::Https
    } else {
        Scheme::Http
    }
}

impl Gateway {
    /// A new stream, from the HTTP/2 door, taken as far as it goes without waiting. Most end
    /// here: a redirect is a head and nothing after it, written and recorded at once, with no
    /// task of its own. What has to wait is returned for [`Self::finish`].
    pub fn begin(&self, session: &mut HttpSession) -> Step {
        let ctx = self.new_ctx();
        let head = session.req_header();
        let headers = head
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
        match body_framing(headers, Version::HTTP_2) {
            Err(refusal) => self.answer(session, ctx, Answer::refusal(refusal)),
            Ok(BodyFraming::Length(0)) => Step::EmptyBody(ctx),
            Ok(_) => self.route(session, ctx),
        }
    }

    /// The rest of a stream [`Self::begin`] could not finish; `Some` with the plan when it is a
    /// forward, for pingora's proxy.
    pub async fn finish(&self, session: &mut HttpSession, mut step: Step) -> Option<RequestCtx> {
        loop {
            step = match step {
                Step::Done => return None,
                Step::Forward(ctx) => return Some(ctx),
                Step::EmptyBody(ctx) => match self.empty_body(session, &ctx).await {
                    Ok(()) => self.route(session, ctx),
                    Err(refusal) => self.answer(session, ctx, Answer::refusal(refusal)),
                },
                Step::Body(body, ctx) => {
                    // A failed write is the client's doing (gone, or its stream cancelled).
                    let written = session.write_body(body, true).await;
                    let error = written.map_err(|e| e.into_down()).err();
                    self.record(session, &ctx, error.as_deref());
                    return None;
                }
            }
        }
    }

    fn route(&self, session: &mut HttpSession, mut ctx: RequestCtx) -> Step {
        match self.decide(session.req_header(), scheme_of(session.digest()), &mut ctx) {
            Outcome::Answer(answer) => self.answer(session, ctx, answer),
            Outcome::Forward(plan) => {
                ctx.forward = Some(plan);
                Step::Forward(ctx)
            }
        }
    }

    /// Writes the answer's head, and records the stream when nothing follows it.
    fn answer(&self, session: &mut HttpSession, ctx: RequestCtx, answer: Answer) -> Step {
        match write_answer_head(session, &answer) {
            Ok(Some(body)) => Step::Body(body, ctx),
            Ok(None) => {
                self.record(session, &ctx, None);
                Step::Done
            }
            Err(e) => {
                self.record(session, &ctx, Some(&e));
                Step::Done
            }
        }
    }

    /// Routes against the current snapshot and turns the decision into owned data, so the
    /// snapshot guard is released before anything is awaited.
    fn decide(&self, head: &RequestHeader, scheme: Scheme, ctx: &mut RequestCtx) -> Outcome {
        let table = self.tables.load();
        let req = Request {
            method: &head.method,
            scheme,
            uri: &head.uri,
            headers: &head.headers,
            at: None,
        };
        let routed = route(&table, &req);
        ctx.route = routed.labels();
        if let Cow::Owned(path) = routed.path {
            ctx.routed_path = Some(path);
        }
        Outcome::of(
            routed.decision,
            routed.tenant.and_then(|t| t.signals.as_deref()),
        )
    }

    /// A body declared empty must be empty: pingora takes a `content-length` of `0` for the end
    /// of the body and never reads on, so a DATA frame behind it could be forwarded as an empty
    /// body before h2 refuses the stream. So such a body is read here, to its end: h2 refuses
    /// data beyond the declared length.
    async fn empty_body(&self, session: &mut HttpSession, ctx: &RequestCtx) -> Result<(), Refusal> {
        let deadline = tokio::time::Instant::from_std(ctx.body_deadline);
        match tokio::time::timeout_at(deadline, session.read_body_bytes()).await {
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(data))) if data.is_empty() => Ok(()),
            Ok(_) => Err(Refusal::bad("the body is longer than its content-length")),
            Err(_) => Err(Refusal {
                status: StatusCode::REQUEST_TIMEOUT,
                why: "the request body did not arrive in time",
            }),
        }
    }

    /// One place for everything recorded about a finished request: metrics, census, log.
    fn record(&self, session: &HttpSession, ctx: &RequestCtx, error: Option<&Error>) {
        let head = session.req_header();
        let upstream_error = match (error, &ctx.forward) {
            (Some(e), Some(plan)) => Some((&*plan.upstream.name, UpstreamFailure::of(e))),
            _ => None,
        };
        self.recorder.finish(Finished {
            labels: ctx.route.as_ref(),
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            method: &head.method,
            path: ctx.routed_path.as_deref().unwrap_or(head.uri.path()),
            headers: &head.headers,
            version: head.version,
            bytes: session.body_bytes_sent() as u64,
            peer: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            elapsed: ctx.started.elapsed(),
            upstream_error,
            // The same words as the HTTP/1 door's: a failed forward by its UpstreamFailure.
            error: match (upstream_error, error.map(|e| (e, UpstreamFailure::of(e)))) {
                (Some((_, failure)), _) => failure.label(),
                (None, Some((_, UpstreamFailure::ClientGone))) => {
                    UpstreamFailure::ClientGone.label()
                }
                (None, Some((e, _))) => e.etype().as_str(),
                (None, None) => "",
            },
        });
    }
}

/// What is left of a stream after [`Gateway::begin`].
pub enum Step {
    /// Answered and recorded.
    Done,
    /// An answer's head is written; its body is to send.
    Body(Bytes, RequestCtx),
    /// The body declared empty is to be read to its end before routing.
    EmptyBody(RequestCtx),
    /// To be forwarded by pingora's proxy.
    Forward(RequestCtx),
}

/// Writes the answer's head, ending the stream unless a body follows; the body, if any.
/// A failed write is the client's doing (gone, or its stream cancelled).
fn write_answer_head(session: &mut HttpSession, answer: &Answer) -> Result<Option<Bytes>> {
    let head_only = session.req_header().method == http::Method::HEAD;
    let body = answer.body().filter(|_| !head_only);
    session
        .write_response_header(Box::new(answer.response_header()?), body.is_none())
        .map_err(|e| e.into_down())?;
    Ok(body)
}

/// Writes `answer` on its stream, ending it.
async fn write_answer(session: &mut HttpSession, answer: &Answer) -> Result<()> {
    if let Some(body) = write_answer_head(session, answer)? {
        session
            .write_body(body, true)
            .await
            .map_err(|e| e.into_down())?;
    }
    Ok(())
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        let started = Instant::now();
        RequestCtx {
            started,
            route: None,
            routed_path: None,
            forward: None,
            body_deadline: started + self.deadlines.body,
        }
    }

    /// The door decided ([`Gateway::begin`]): a stream reaches the proxy only to be forwarded.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        *ctx = session
            .req_header_mut()
            .extensions_mut()
            .remove::<RequestCtx>()
            .ok_or_else(|| Error::explain(InternalError, "no decision from the door"))?;
        Ok(false)
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
        let client = session.req_header();
        // What the client asked for, before Host is rewritten for the upstream.
        let original_host = client
            .uri
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| client.headers.get(HOST).map(|h| h.as_bytes()));
        let hop = Hop {
            authority: &plan.upstream.authority,
            client_ip: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            scheme: scheme_of(session.digest()),
            original_host,
            websocket: false,
        };
        let names: Vec<_> = upstream_request.headers.keys().cloned().collect();
        for name in &names {
            upstream_request.remove_header(name);
        }
        let headers: Vec<(&[u8], &[u8])> = client
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
            .collect();
        forwarded_headers(headers.iter().copied(), &hop, upstream_request);
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if Instant::now() > ctx.body_deadline {
            return Error::e_explain(HTTPStatus(408), "the request body did not arrive in time");
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

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        // The proxy serves HTTP/2 streams only.
        if let Some(stream) = session.downstream_session.as_http2() {
            self.record(stream, ctx, error);
        }
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
        let tenant = ctx.route.as_ref().map_or("_unknown", |l| l.tenant());
        format!("{} {path} (tenant {tenant})", head.method)
    }

    /// A client that went away (closed, reset, or cancelled its HTTP/2 stream) is no fault of
    /// Signpost's or an upstream's: it is counted (status 0, and `error` in the access log) but
    /// not logged as an error, so that a flood of cancelled streams cannot flood the log.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        UpstreamFailure::of(e) == UpstreamFailure::ClientGone
    }

    /// A failed forward is answered as the front door answers it: the status and the answer
    /// come from [`UpstreamFailure`].
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let answer = match e.etype() {
            HTTPStatus(code) => StatusCode::from_u16(*code)
                .ok()
                .map(|status| Answer::reject(status, "the request could not be served")),
            _ => Answer::upstream_failure(UpstreamFailure::of(e)),
        };
        let code = answer.as_ref().map_or(0, |a| a.status.as_u16());
        let stream = match &mut *session.downstream_session {
            ServerSession::H2(stream) => Some(stream),
            _ => None,
        };
        let unanswered = stream.filter(|s| s.response_written().is_none());
        if let (Some(stream), Some(answer)) = (unanswered, answer) {
            if let Err(err) = write_answer(stream, &answer).await {
                tracing::debug!(error = %err, "could not send the failure's answer");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}
