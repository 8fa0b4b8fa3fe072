//! `signpost explain` and `signpost test`: what the server would do with a request, as JSON.
//!
//! Both build a [`Request`] exactly as the proxy does (an absolute-form target plus headers)
//! and call [`route`]; only the rendering differs.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::report::census::{judge, Held, Report};
use crate::route::{route, Decision, Request, Routed, Scheme};
use crate::table::Table;

/// One decision, as printed by `explain` and compared by `test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<&'static str>,
    /// For a tenant with phases: the number (from 1) of the phase in force; absent after the
    /// last phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<usize>,
    /// A brownout window answered this request with `410`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub brownout: bool,
    /// The next phase is due but held by clients the census still hears (`after_quiet`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// What holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_by: Option<Held>,
}

impl From<Routed<'_, '_>> for Explanation {
    fn from(r: Routed<'_, '_>) -> Self {
        let mut e = Explanation {
            tenant: r.tenant.map(|t| t.id.to_string()),
            rule: r.rule.map(|r| r.name.to_string()),
            kind: r.rule.map(|r| r.kind.to_string()),
            action: "",
            status: None,
            location: None,
            upstream: None,
            url: None,
            branch: r.branch.map(|b| b.taken),
            why: r.branch.map(|b| b.why),
            phase: r.phase.map(|i| i + 1),
            brownout: r.brownout,
            held: false,
            held_by: None,
        };
        match r.decision {
            Decision::Reject { status, why } => {
                e.action = "reject";
                e.status = Some(status.as_u16());
                e.why = Some(why);
            }
            Decision::Redirect { status, location } => {
                e.action = "redirect";
                e.status = Some(status.as_u16());
                e.location = Some(location);
            }
            Decision::Forward { upstream, path } => {
                e.action = "forward";
                e.upstream = Some(upstream.name.to_string());
                e.url = Some(format!("{}{}", upstream.origin, path));
            }
            Decision::Gone { .. } => {
                e.action = "gone";
                e.status = Some(410);
            }
            // `explain` runs without the server's orders in progress: never reached.
            Decision::Challenge { .. } => {
                e.action = crate::route::CHALLENGE_ACTION;
                e.status = Some(200);
            }
        }
        e
    }
}

/// Why a request given on the command line (or in a case file) cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("`{0}` is not an absolute http:// or https:// URL")]
    Url(String),
    #[error("invalid method `{0}`")]
    Method(String),
    #[error("invalid header `{0}`: write `Name: value`")]
    Header(String),
    #[error("`{0}` is not an RFC 3339 time (2026-03-01T18:00:00+01:00) or a date")]
    At(String),
}

/// `--at` and a case's `at`: an RFC 3339 time or a date (midnight UTC).
pub fn parse_at(text: &str) -> Result<Timestamp, InputError> {
    crate::config::build::parse_instant(text).ok_or_else(|| InputError::At(text.to_owned()))
}

/// Explains a request given as method, absolute URL and headers, at `at` (default: now).
pub fn explain(
    table: &Table,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    at: Option<Timestamp>,
) -> Result<Explanation, InputError> {
    let uri: Uri = url.parse().map_err(|_| InputError::Url(url.to_owned()))?;
    let scheme = match uri.scheme_str() {
        Some("https") => Scheme::Https,
        Some("http") => Scheme::Http,
        _ => return Err(InputError::Url(url.to_owned())),
    };
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| InputError::Method(method.to_owned()))?;
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let bad = || InputError::Header(format!("{name}: {value}"));
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        map.append(name, value);
    }
    let req = Request {
        method: &method,
        scheme,
        uri: &uri,
        headers: &map,
        at,
    };
    Ok(route(table, &req).into())
}

/// [`explain`] for a config with census-gated phases: judges the gates from `census` (as the
/// server keeps it) as of `at`, and says whether and by what the request's phase is held.
pub fn explain_held(
    table: &Table,
    census: &Report,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    at: Option<Timestamp>,
) -> Result<Explanation, InputError> {
    let when = at.unwrap_or_else(Timestamp::now);
    judge(table, &census.watch, when.as_second().max(0) as u64);
    let mut e = explain(table, method, url, headers, Some(when))?;
    let held = e.tenant.as_deref().and_then(|tenant| {
        table
            .holds_at(when)
            .into_iter()
            .find(|h| h.0 == tenant)
            .map(|h| census.held(&h))
    });
    e.held = held.is_some();
    e.held_by = held;
    Ok(e)
}

/// `Name: value` from the command line.
pub fn parse_header(text: &str) -> Result<(String, String), InputError> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| InputError::Header(text.to_owned()))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

/// A file of expectation cases (the format of `shared/vectors/*.yaml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub url: String,
    #[serde(default = "get")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The instant to route at (RFC 3339), for tenants with phases; default now.
    pub at: Option<String>,
    /// Fields that must equal those of the explanation; others are not compared.
    pub expect: BTreeMap<String, serde_json::Value>,
}

fn get() -> String {
    "GET".to_owned()
}

/// One case that did not hold: field → (expected, got).
#[derive(Debug)]
pub struct Mismatch {
    pub case: usize,
    pub request: String,
    pub fields: Vec<(String, serde_json::Value, serde_json::Value)>,
    pub got: String,
}

/// Runs every case; returns the mismatches (empty: all passed).
pub fn run_cases(table: &Table, file: &CaseFile) -> Vec<Mismatch> {
    let mut mismatches = Vec::new();
    for (i, case) in file.cases.iter().enumerate() {
        let headers: Vec<(String, String)> = case
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let request = format!("{} {}", case.method, case.url);
        let at = case.at.as_deref().map(parse_at).transpose();
        let got = match at.and_then(|at| explain(table, &case.method, &case.url, &headers, at)) {
            Ok(e) => serde_json::to_value(e).unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
        let fields: Vec<_> = case
            .expect
            .iter()
            .filter_map(|(field, want)| {
                let have = got.get(field).cloned().unwrap_or(serde_json::Value::Null);
                (!same(want, &have)).then(|| (field.clone(), want.clone(), have))
            })
            .collect();
        if !fields.is_empty() {
            mismatches.push(Mismatch {
                case: i + 1,
                request,
                fields,
                got: got.to_string(),
            });
        }
    }
    mismatches
}

/// YAML numbers may arrive as strings and vice versa (`status: "307"`); compare as text then.
fn same(want: &serde_json::Value, have: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (want, have) {
        (String(a), Number(b)) | (Number(b), String(a)) => *a == b.to_string(),
        _ => want == have,
    }
}
