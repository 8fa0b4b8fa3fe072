//! The admin listener's routes: metrics, the straggler report, config info, health, reload.
//!
//! It listens on `listen.admin` (keep it on loopback or a private network). The report holds
//! personal data (user names, client addresses) and `/config` the deployment's layout, so they
//! are guarded like the `POST` and `DELETE` endpoints: `Authorization: Bearer <token>` when
//! `admin.token_file` is set, and otherwise loopback clients only. `/metrics` and the health
//! endpoints stay open for scrapers and probes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::reload::Live;
use crate::report::census::{Census, Filter, Report};
use crate::report::{page, table};

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
    /// The refusal for a client that may not use the guarded endpoints, if it may not.
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
        match may_use(token.as_deref(), authorization, peer) {
            Guard::Allowed => None,
            Guard::NeedsToken => Some(text(
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required",
            )),
            Guard::LoopbackOnly => Some(text(
                StatusCode::FORBIDDEN,
                "this endpoint accepts loopback clients only (set admin.token_file to allow others)",
            )),
        }
    }

    /// The census as `?tenant=&kind=&class=` asks for it, with each row's customer number and
    /// contact from the running config.
    async fn report(&self, query: Option<&str>) -> Report {
        let report = self.census.shared_report().await;
        let tables = self.live.tables.load();
        let tenants: std::collections::HashMap<&str, &crate::table::Tenant> =
            tables.tenants().iter().map(|t| (&*t.id, t)).collect();
        let info = |id: &str| {
            let t = tenants.get(id)?;
            Some((
                t.customer_number.to_string(),
                t.contact.as_deref().map(Into::into),
            ))
        };
        let holds = tables.holds_at(jiff::Timestamp::now());
        report.served(&Filter::from_query(query), &info, &holds)
    }

    async fn forget(&self, id: &str) -> Response<Vec<u8>> {
        match self.census.forget(id).await {
            Ok(erased) => {
                tracing::info!(client = id, rows = erased, "census client erased");
                json(
                    StatusCode::OK,
                    &serde_json::json!({ "client": id, "rows_erased": erased }),
                )
            }
            // Erased here; the store's rows remain until it answers: say so, and let the
            // operator repeat the request.
            Err(e) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({ "client": id, "error": format!("erased on this instance, not in the census store: {e}") }),
            ),
        }
    }

    fn metrics(&self) -> Response<Vec<u8>> {
        let gauge = &self.live.metrics.client_last_seen;
        gauge.reset();
        for row in self.census.top_clients() {
            gauge
                .with_label_values(&[&row.tenant, &row.kind, &row.client.id])
                .set(row.last_seen as f64);
        }
        let body = self.live.metrics.render(
            &self.live.tables.load(),
            self.live.certs.as_deref(),
            jiff::Timestamp::now(),
        );
        // The scrape's scratch (100 000 tenants' counts, copied and sorted) goes back to the
        // OS now: the allocator kept it, 6 MB after every scrape (loadtest/tenant-memory).
        crate::reload::release_freed_memory();
        reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            body,
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

/// Whether a client may use the guarded endpoints.
#[derive(Debug, PartialEq, Eq)]
enum Guard {
    Allowed,
    /// `401`: a token is configured and the request did not carry it.
    NeedsToken,
    /// `403`: no token is configured and the client is not on this machine.
    LoopbackOnly,
}

/// The rule for the guarded endpoints. `token` is the token file's content (trimmed; empty when it
/// cannot be read) when `admin.token_file` is set: the request must then carry
/// `Authorization: Bearer <token>` from anywhere, and an empty or unreadable token file lets
/// no one in. Without a token file only loopback peers may use them; an IPv4 client of a dual-stack
/// (`[::]`) listener shows up as `::ffff:127.0.0.1`, which is loopback too.
fn may_use(token: Option<&str>, authorization: Option<&str>, peer: Option<IpAddr>) -> Guard {
    match token {
        Some(token) => {
            // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` from a script counts.
            let given = authorization
                .and_then(|v| v.trim().split_once(' '))
                .and_then(|(scheme, rest)| scheme.eq_ignore_ascii_case("bearer").then_some(rest))
                .unwrap_or("");
            if !token.is_empty() && same_secret(token, given.trim()) {
                Guard::Allowed
            } else {
                Guard::NeedsToken
            }
        }
        None if peer.is_some_and(|ip| ip.to_canonical().is_loopback()) => Guard::Allowed,
        None => Guard::LoopbackOnly,
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
        let uri = session.req_header().uri.clone();
        let path = uri.path();
        let guarded = method != Method::GET || path.starts_with("/stragglers") || path == "/config";
        let known = matches!(
            path,
            "/metrics"
                | "/stragglers"
                | "/stragglers.json"
                | "/stragglers.csv"
                | "/config"
                | "/-/healthy"
                | "/-/ready"
                | "/-/reload"
        ) || path.starts_with("/stragglers/");
        if guarded && known {
            if let Some(denied) = self.denial(session) {
                return denied;
            }
        }
        match (method, path) {
            (Method::GET, "/metrics") => self.metrics(),
            (Method::GET, "/stragglers") => {
                let filter = Filter::from_query(uri.query());
                reply(StatusCode::OK, "text/html; charset=utf-8", page::render(&self.report(uri.query()).await, &filter))
            }
            (Method::GET, "/stragglers.json") => json(StatusCode::OK, &self.report(uri.query()).await),
            (Method::GET, "/stragglers.csv") => reply(StatusCode::OK, "text/csv; charset=utf-8", table::csv(&self.report(uri.query()).await)),
            (Method::DELETE, id) if id.starts_with("/stragglers/") => self.forget(&id["/stragglers/".len()..]).await,
            (Method::GET, "/config") => json(StatusCode::OK, &*self.live.info.load_full()),
            (Method::GET, "/-/healthy") => text(StatusCode::OK, "ok"),
            (Method::GET, "/-/ready") if self.live.is_ready() => text(StatusCode::OK, "ready"),
            (Method::GET, "/-/ready") => text(StatusCode::SERVICE_UNAVAILABLE, "not ready: starting (listeners, signal handlers or the config watch not set yet)"),
            (Method::POST, "/-/reload") => self.reload().await,
            _ if known => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => text(StatusCode::NOT_FOUND, "not found: try /metrics, /stragglers, /stragglers.json, /stragglers.csv, /config, /-/healthy, /-/ready, POST /-/reload, DELETE /stragglers/CLIENT_ID"),
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
    fn without_a_token_only_loopback_peers_may_use() {
        for peer in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(may_use(None, None, ip(peer)), Guard::Allowed, "{peer}");
        }
        for peer in [
            "192.0.2.2",
            "10.0.0.5",
            "0.0.0.0",
            "fd00::2",
            "::ffff:192.0.2.2",
            "::",
        ] {
            assert_eq!(may_use(None, None, ip(peer)), Guard::LoopbackOnly, "{peer}");
        }
        assert_eq!(
            may_use(None, None, None),
            Guard::LoopbackOnly,
            "no peer address"
        );
        // A bearer token means nothing when none is configured.
        assert_eq!(
            may_use(None, Some("Bearer anything"), ip("192.0.2.2")),
            Guard::LoopbackOnly
        );
    }

    #[test]
    fn with_a_token_every_peer_needs_it_and_loopback_is_not_enough() {
        let token = Some("s3cret");
        for peer in [ip("127.0.0.1"), ip("192.0.2.2"), None] {
            for given in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "] {
                assert_eq!(
                    may_use(token, Some(given), peer),
                    Guard::Allowed,
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
                    may_use(token, given, peer),
                    Guard::NeedsToken,
                    "{given:?} from {peer:?}"
                );
            }
        }
    }

    #[test]
    fn an_empty_or_unreadable_token_file_lets_no_one_in() {
        for given in [None, Some("Bearer "), Some("Bearer")] {
            assert_eq!(
                may_use(Some(""), given, ip("127.0.0.1")),
                Guard::NeedsToken,
                "{given:?}"
            );
        }
    }
}
