//! The admin listener's routes: metrics, the straggler report, config info, health, reload.
//!
//! It listens on `listen.admin` (keep it on loopback or a private network). `POST` endpoints
//! need `Authorization: Bearer <token>` when `admin.token_file` is set, and otherwise accept
//! loopback clients only.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::reload::Live;
use crate::report::census::Census;
use crate::report::page;

pub struct Admin {
    pub live: Arc<Live>,
    pub census: Arc<Census>,
    pub token_file: Option<PathBuf>,
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Vec<u8>> {
    reply(
        status,
        "application/json",
        serde_json::to_vec_pretty(value).unwrap_or_default(),
    )
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    reply(status, "text/plain; charset=utf-8", format!("{body}\n"))
}

impl Admin {
    /// The refusal for a client that may not use POST endpoints, if it may not.
    fn denial(&self, session: &ServerSession) -> Option<Response<Vec<u8>>> {
        let token = self.token_file.as_ref().map(|file| {
            std::fs::read_to_string(file)
                .map(|t| t.trim().to_owned())
                .unwrap_or_default()
        });
        let authorization = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        match may_post(token.as_deref(), authorization, peer) {
            PostCheck::Allowed => None,
            PostCheck::NeedsToken => Some(text(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required",
            )),
            PostCheck::LoopbackOnly => Some(text(
                StatusCode::FORBIDDEN,
                "POST endpoints accept loopback clients only (set admin.token_file to allow others)",
            )),
        }
    }

    fn metrics(&self) -> Response<Vec<u8>> {
        // Phases switch by the clock, not by an event: read them as of this scrape. The
        // sunsets are read here too, so that a reload that removes a tenant removes its series.
        let (phases, sunsets) = (
            &self.live.metrics.tenant_phase,
            &self.live.metrics.tenant_sunset,
        );
        phases.reset();
        sunsets.reset();
        let now = jiff::Timestamp::now();
        for tenant in self.live.tables.load().tenants() {
            if let Some(schedule) = tenant.schedule.as_deref().filter(|s| !s.phases.is_empty()) {
                let number = schedule.phase_at(now).map_or(0, |(i, _)| i + 1);
                phases.with_label_values(&[&*tenant.id]).set(number as i64);
            }
            if let Some(at) = tenant.signals.sunset_at {
                sunsets.with_label_values(&[&*tenant.id]).set(at);
            }
        }
        let gauge = &self.live.metrics.client_last_seen;
        gauge.reset();
        for row in self.census.top_clients() {
            gauge
                .with_label_values(&[&row.tenant, &row.kind, &row.client.id])
                .set(row.last_seen as f64);
        }
        reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            self.live.metrics.render(),
        )
    }

    async fn reload(&self) -> Response<Vec<u8>> {
        match self.live.reload("POST /-/reload").await {
            Ok(done) => json(
                StatusCode::OK,
                &serde_json::json!({ "result": "ok", "generation": done.generation, "changes": done.changes, "seconds": done.seconds }),
            ),
            Err(errors) => {
                let list: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
                json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &serde_json::json!({ "result": "error", "errors": list }),
                )
            }
        }
    }
}

/// Whether a client may use the POST endpoints.
#[derive(Debug, PartialEq, Eq)]
enum PostCheck {
    Allowed,
    /// `401`: a token is configured and the request did not carry it.
    NeedsToken,
    /// `403`: no token is configured and the client is not on this machine.
    LoopbackOnly,
}

/// The rule for POST endpoints. `token` is the token file's content (trimmed; empty when it
/// cannot be read) when `admin.token_file` is set: the request must then carry
/// `Authorization: Bearer <token>` from anywhere, and an empty or unreadable token file lets
/// no one in. Without a token file only loopback peers may POST; an IPv4 client of a dual-stack
/// (`[::]`) listener shows up as `::ffff:127.0.0.1`, which is loopback too.
fn may_post(token: Option<&str>, authorization: Option<&str>, peer: Option<IpAddr>) -> PostCheck {
    match token {
        Some(token) => {
            // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` from a script counts.
            let given = authorization
                .and_then(|v| v.trim().split_once(' '))
                .and_then(|(scheme, rest)| scheme.eq_ignore_ascii_case("bearer").then_some(rest))
                .unwrap_or("");
            if !token.is_empty() && same_secret(token, given.trim()) {
                PostCheck::Allowed
            } else {
                PostCheck::NeedsToken
            }
        }
        None if peer.is_some_and(|ip| ip.to_canonical().is_loopback()) => PostCheck::Allowed,
        None => PostCheck::LoopbackOnly,
    }
}

/// Compares digests rather than the secrets, so the time taken says nothing about how much
/// of a guess was right.
fn same_secret(a: &str, b: &str) -> bool {
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    digest(a).as_ref() == digest(b).as_ref()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_owned();
        match (method, path.as_str()) {
            (Method::GET, "/metrics") => self.metrics(),
            (Method::GET, "/stragglers") => reply(StatusCode::OK, "text/html; charset=utf-8", page::render(&self.census.report())),
            (Method::GET, "/stragglers.json") => json(StatusCode::OK, &self.census.report()),
            (Method::GET, "/config") => json(StatusCode::OK, &*self.live.info.load_full()),
            (Method::GET, "/-/healthy") => text(StatusCode::OK, "ok"),
            (Method::GET, "/-/ready") if self.live.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready"),
            (Method::GET, "/-/ready") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready: listeners are not bound yet"),
            (Method::POST, "/-/reload") => match self.denial(session) {
                None => self.reload().await,
                Some(denied) => denied,
            },
            (_, "/metrics" | "/stragglers" | "/stragglers.json" | "/config" | "/-/healthy" | "/-/ready" | "/-/reload") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => text(StatusCode::NOT_FOUND, "not found: try /metrics, /stragglers, /stragglers.json, /config, /-/healthy, /-/ready, POST /-/reload"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn without_a_token_only_loopback_peers_may_post() {
        for peer in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(may_post(None, None, ip(peer)), PostCheck::Allowed, "{peer}");
        }
        for peer in [
            "192.0.2.2",
            "10.0.0.5",
            "0.0.0.0",
            "fd00::2",
            "::ffff:192.0.2.2",
            "::",
        ] {
            assert_eq!(
                may_post(None, None, ip(peer)),
                PostCheck::LoopbackOnly,
                "{peer}"
            );
        }
        assert_eq!(
            may_post(None, None, None),
            PostCheck::LoopbackOnly,
            "no peer address"
        );
        // A bearer token means nothing when none is configured.
        assert_eq!(
            may_post(None, Some("Bearer anything"), ip("192.0.2.2")),
            PostCheck::LoopbackOnly
        );
    }

    #[test]
    fn with_a_token_every_peer_needs_it_and_loopback_is_not_enough() {
        let token = Some("s3cret");
        for peer in [ip("127.0.0.1"), ip("192.0.2.2"), None] {
            for given in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "] {
                assert_eq!(
                    may_post(token, Some(given), peer),
                    PostCheck::Allowed,
                    "{given:?}"
                );
            }
            for given in [
                None,
                Some("Bearer wrong"),
                Some("Bearer s3cre"),
                Some("Bearer s3cretX"),
                Some("Basic s3cret"),
                Some("s3cret"),
                Some("Bearer "),
                Some("Bearers3cret"),
            ] {
                assert_eq!(
                    may_post(token, given, peer),
                    PostCheck::NeedsToken,
                    "{given:?} from {peer:?}"
                );
            }
        }
    }

    #[test]
    fn an_empty_or_unreadable_token_file_lets_no_one_in() {
        for given in [None, Some("Bearer "), Some("Bearer")] {
            assert_eq!(
                may_post(Some(""), given, ip("127.0.0.1")),
                PostCheck::NeedsToken,
                "{given:?}"
            );
        }
    }
}
