//! What Signpost tells operators: metrics, the census of legacy clients, the straggler page.

pub mod access;
pub mod census;
mod counts;
mod durations;
pub mod exposition;
pub mod metrics;
pub mod page;
mod slot;
pub mod table;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Version};

use crate::protocol::failure::UpstreamFailure;
use crate::protocol::headers::Headers;
use crate::route::Labels;
use crate::table::{Kind, TenantNo};
use access::{AccessLog, Line};
use census::{Census, Sent};
use metrics::Metrics;

/// Everything recorded about a finished request: metrics, census, access log.
pub struct Recorder {
    pub metrics: Arc<Metrics>,
    pub census: Arc<Census>,
    pub access: AccessLog,
}

/// One finished request, as the front door or the proxy saw it.
pub struct Finished<'a> {
    /// `None` for an unknown host.
    pub labels: Option<&'a Labels>,
    /// `0` when no response was written.
    pub status: u16,
    pub method: &'a Method,
    /// The request path (no query); replaced by the labels' redacted path when there is one.
    pub path: &'a str,
    pub headers: &'a dyn Headers,
    pub version: Version,
    /// Response body bytes written to the client.
    pub bytes: u64,
    pub peer: Option<IpAddr>,
    pub elapsed: Duration,
    /// (upstream, why) of a failed forward.
    pub upstream_error: Option<(&'a str, UpstreamFailure)>,
    pub error: &'a str,
}

impl Recorder {
    /// A TLS handshake that failed: counted by tenant and reason and, with the census on,
    /// a census row of kind `tls` (the address, the SNI name asked for as its path, the
    /// highest version offered in its User-Agent column) when a ClientHello was read.
    pub fn tls_failure(
        &self,
        tenant: &str,
        reason: &str,
        peer: Option<IpAddr>,
        offered: Option<(Option<&str>, Cow<'_, str>)>,
    ) {
        self.metrics
            .tls_handshake_failures
            .with_label_values(&[tenant, reason])
            .inc();
        let (Some((sni, version)), true) = (offered, self.census.enabled()) else {
            return;
        };
        let agent = format!("(TLS handshake failed: {reason}; offers at most {version})");
        let path = sni.map_or_else(|| "(no SNI)".to_owned(), |name| format!("sni:{name}"));
        self.census.record(
            TenantNo::of(tenant),
            &Kind::new("tls"),
            self.census.anonymous(&agent, peer),
            &path,
            0,
        );
    }

    pub fn finish(&self, f: Finished<'_>) {
        let status = http::StatusCode::from_u16(f.status).ok();
        let code = status.as_ref().map_or("0", |s| s.as_str());
        let (tenant, kind, rule, action) = match f.labels {
            Some(l) => (l.tenant(), &*l.kind, &*l.rule, l.action),
            None => ("_unknown", "_none", "", "reject"),
        };
        let metrics = &self.metrics;
        match f.labels {
            Some(l) => {
                metrics.requests.inc(l.meter, &l.kind, l.action, f.status);
                metrics.duration.observe(&l.kind, l.action, f.elapsed);
            }
            None => {
                metrics.requests.inc_unknown(f.status);
                metrics.duration.observe(&Kind::none(), action, f.elapsed);
            }
        }
        if let Some((upstream, reason)) = f.upstream_error {
            self.metrics
                .upstream_errors
                .with_label_values(&[upstream, reason.label()])
                .inc();
        }
        let path = f
            .labels
            .and_then(|l| l.redacted_path.as_deref())
            .unwrap_or(f.path);
        let counted = self.census.enabled() && f.labels.is_some();
        if !counted && !self.access.enabled() {
            return;
        }
        // Read once, for the census and the access log.
        let sent = Sent::read(f.headers);
        let caller = counted.then(|| self.census.caller_of(sent, f.headers, f.peer));
        if let (Some(l), Some(caller)) = (f.labels, caller) {
            // The CA checking a challenge is not a legacy client.
            if l.action != crate::route::CHALLENGE_ACTION {
                self.census
                    .record(l.meter.number, &l.kind, caller, path, f.status);
            }
        }
        if !self.access.enabled() {
            return;
        }
        let client = caller.map(|c| self.census.client_id(c));
        self.access.log(&Line {
            client: f.peer,
            method: f.method.as_str(),
            path,
            version: match f.version {
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_2 => "HTTP/2.0",
                _ => "HTTP/1.1",
            },
            status: code,
            bytes: f.bytes,
            duration: f.elapsed,
            tenant,
            kind,
            rule,
            action,
            client_id: client.as_deref().unwrap_or(""),
            user_agent: sent.user_agent,
            referer: sent.referer,
            error: f.error,
        });
    }
}
