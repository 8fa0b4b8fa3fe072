//! The one code path from a request to a decision, shared by the server and `explain`.
//!
//! host → tenant ([`Table::tenant_for`]), path → rule ([`Tenant::find_rule`]), rule → what to do:
//! a redirect with its `Location`, a forward with its upstream path, a `410` page, or a reject.
//! Nothing here touches the network or pingora, so `explain` and `signpost test` report exactly
//! what the server does, and the property tests can drive it directly.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode, Uri};

use crate::protocol::headers::Headers;
use crate::protocol::host::{self, BadHost};
use crate::protocol::path::normalize;
pub use crate::protocol::Scheme;
use crate::table::challenge;
use crate::table::pattern::Captures;
use crate::table::template::{Context, ControlCharacter};
use crate::table::{Action, Forward, Kind, Meter, Phase, PhasePlan, Redirect, Rule, Table, Tenant};
use crate::upstream::Upstream;
use jiff::Timestamp;

/// The parts of a request that routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a Method,
    pub scheme: Scheme,
    /// Origin form (`/path?q`) or absolute form (`https://host/path?q`, and HTTP/2's `:authority`).
    pub uri: &'a Uri,
    pub headers: &'a dyn Headers,
    /// The instant to route at: `None` is now, read only for a tenant with a schedule.
    /// `explain --at` and the tests set it.
    pub at: Option<Timestamp>,
}

/// The decision, with the tenant and rule that led to it.
#[derive(Debug)]
pub struct Routed<'t, 'r> {
    /// The path as routed: dot segments resolved ([`normalize`]); the request's own when it
    /// was already normal, or when the request was rejected before its path was read.
    pub path: Cow<'r, str>,
    pub tenant: Option<&'t Tenant>,
    pub rule: Option<&'t Rule>,
    pub decision: Decision<'t>,
    /// For a rule with both `redirect` and `forward`: which one was taken, and why.
    pub branch: Option<Branch>,
    /// The rule's captures (empty for rejects and fallbacks), for redaction.
    pub captures: Captures,
    /// For a tenant with phases: the index of the phase in force (`None` after the last).
    pub phase: Option<usize>,
    /// A brownout window turned the answer into a `410`.
    pub brownout: bool,
}

#[derive(Debug)]
pub enum Decision<'t> {
    Reject {
        status: StatusCode,
        why: &'static str,
    },
    Redirect {
        status: StatusCode,
        location: String,
    },
    /// `path` is the upstream request target: path and query.
    Forward {
        upstream: &'t Arc<Upstream>,
        path: String,
    },
    Gone {
        page: &'t Bytes,
    },
    /// An ACME HTTP-01 challenge of an order in progress, answered before any rule.
    Challenge {
        key_authorization: Bytes,
    },
}

/// What a request matched, carried past the snapshot guard for metrics, census and log.
/// The labels are `Arc<str>` from the table: cloning them allocates nothing.
#[derive(Debug, Clone)]
pub struct Labels {
    /// The tenant's id (`meter.tenant`) and request counts.
    pub meter: &'static Meter,
    pub kind: Kind,
    pub rule: Arc<str>,
    pub action: &'static str,
    /// The path with redacted captures replaced, when the rule redacts any.
    pub redacted_path: Option<String>,
}

impl Labels {
    /// The tenant's id.
    pub fn tenant(&self) -> &str {
        &self.meter.tenant
    }
}

impl Routed<'_, '_> {
    /// Labels for a request to a known tenant; `None` for an unknown host.
    pub fn labels(&self) -> Option<Labels> {
        let path = &*self.path;
        let tenant = self.tenant?;
        let (kind, rule) = self.rule.map_or_else(
            || (Kind::none(), Arc::from("")),
            |r| (r.kind.clone(), r.name.clone()),
        );
        let redacted_path = self
            .rule
            .filter(|r| !r.redact.is_empty())
            .map(|r| self.captures.redact(path, &r.redact));
        Some(Labels {
            meter: tenant.meter,
            kind,
            rule,
            action: self.decision.action(),
            redacted_path,
        })
    }
}

impl Decision<'_> {
    /// The `action` label of metrics and `explain`.
    pub fn action(&self) -> &'static str {
        match self {
            Decision::Reject { .. } => "reject",
            Decision::Redirect { .. } => "redirect",
            Decision::Forward { .. } => "forward",
            Decision::Gone { .. } => "gone",
            Decision::Challenge { .. } => CHALLENGE_ACTION,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Branch {
    pub taken: &'static str,
    pub why: &'static str,
}

/// The `action` label of an answered ACME challenge: counted, logged, never in the census.
pub const CHALLENGE_ACTION: &str = "acme_challenge";

/// Routes one request.
pub fn route<'t, 'r>(table: &'t Table, req: &Request<'r>) -> Routed<'t, 'r> {
    if let Some(answered) = challenge(table, req) {
        return answered;
    }
    let reject = |(status, why, tenant)| Routed {
        path: Cow::Borrowed(req.uri.path()),
        tenant,
        rule: None,
        decision: Decision::Reject { status, why },
        branch: None,
        captures: Captures::default(),
        phase: None,
        brownout: false,
    };
    let (tenant, path) = match locate(table, req) {
        Ok(found) => found,
        Err(rejected) => return reject(rejected),
    };
    let schedule = tenant
        .schedule
        .as_deref()
        .map(|s| (s, req.at.unwrap_or_else(Timestamp::now)));
    let phase = schedule.and_then(|(s, at)| s.phase_at(at));
    let found = match phase {
        Some((
            _,
            Phase {
                plan: PhasePlan::All(rule),
                ..
            },
        )) => Some((rule, Captures::default())),
        _ => tenant.find_rule(&path, req.method),
    };
    let Some((rule, captures)) = found else {
        let why = "no rule matches and the profile has no fallback";
        return reject((StatusCode::NOT_FOUND, why, Some(tenant)));
    };
    let cx = Context {
        path: &path,
        captures: &captures,
        tenant_id: &tenant.id,
        customer_number: &tenant.customer_number,
    };
    let (mut decision, branch) = act(rule, &cx, req);
    let brownout = schedule
        .and_then(|(s, at)| s.brownout_at(at, &rule.kind))
        .filter(|_| !matches!(decision, Decision::Reject { .. }));
    if let Some(window) = brownout {
        decision = Decision::Gone { page: &window.page };
    }
    Routed {
        path,
        tenant: Some(tenant),
        rule: Some(rule),
        decision,
        branch,
        captures,
        phase: phase.map(|(i, _)| i),
        brownout: brownout.is_some(),
    }
}

/// The answer to an ACME HTTP-01 challenge on the http listener: only a token an order in
/// progress placed for this host; anything else is routed as usual.
fn challenge<'t, 'r>(table: &'t Table, req: &Request<'r>) -> Option<Routed<'t, 'r>> {
    let token = req.uri.path().strip_prefix(challenge::PREFIX)?;
    if req.scheme != Scheme::Http || !(req.method == Method::GET || req.method == Method::HEAD) {
        return None;
    }
    let host = request_host(req).ok()?;
    let key_authorization = table.challenges.answer(&host, token)?;
    Some(Routed {
        path: Cow::Borrowed(req.uri.path()),
        tenant: table.tenant_for(&host),
        rule: None,
        decision: Decision::Challenge { key_authorization },
        branch: None,
        captures: Captures::default(),
        phase: None,
        brownout: false,
    })
}

/// Why a request is rejected before any rule is looked at: status, reason, and the tenant if
/// one was found.
type Rejected<'t> = (StatusCode, &'static str, Option<&'t Tenant>);

/// The request's tenant, and its path as routed (dot segments resolved).
fn locate<'t, 'r>(
    table: &'t Table,
    req: &Request<'r>,
) -> Result<(&'t Tenant, Cow<'r, str>), Rejected<'t>> {
    // Whatever host it names, a CONNECT asks for a tunnel, which Signpost never opens.
    if req.method == Method::CONNECT {
        let why = "Signpost does not open tunnels (CONNECT)";
        return Err((StatusCode::METHOD_NOT_ALLOWED, why, None));
    }
    let host = request_host(req).map_err(|why| (StatusCode::BAD_REQUEST, why, None))?;
    let Some(tenant) = table.tenant_for(&host) else {
        let why = "no tenant has this host";
        return Err((StatusCode::MISDIRECTED_REQUEST, why, None));
    };
    tenant.meter.prefetch();
    let path = req.uri.path();
    if !path.starts_with('/') {
        // `OPTIONS *`: nothing to route.
        let why = "the request target is not a path";
        return Err((StatusCode::BAD_REQUEST, why, Some(tenant)));
    }
    let path = normalize(path).map_err(|why| (StatusCode::BAD_REQUEST, why, Some(tenant)))?;
    Ok((tenant, path))
}

/// What the matched rule does with this request, and for a rule with both actions, which one
/// was taken and why.
fn act<'t>(rule: &'t Rule, cx: &Context<'_>, req: &Request<'_>) -> (Decision<'t>, Option<Branch>) {
    let query = req.uri.query();
    let (decision, branch) = match &rule.action {
        Action::Redirect(r) => (redirect(r, cx, query), None),
        Action::Forward(f) => (forward(f, cx, query), None),
        Action::Gone(page) => (Ok(Decision::Gone { page }), None),
        Action::Adaptive(r, f) => {
            let branch = choose_branch(req);
            let decision = match branch.taken {
                "redirect" => redirect(r, cx, query),
                _ => forward(f, cx, query),
            };
            (decision, Some(branch))
        }
    };
    let decision = decision.unwrap_or(Decision::Reject {
        status: StatusCode::BAD_REQUEST,
        why: "a captured value holds a control character",
    });
    (decision, branch)
}

fn redirect<'t>(
    r: &Redirect,
    cx: &Context<'_>,
    query: Option<&str>,
) -> Result<Decision<'t>, ControlCharacter> {
    let query = if r.keep_query { query } else { None };
    let location = r.to.render_with_query(cx, query)?;
    Ok(Decision::Redirect {
        status: r.status,
        location,
    })
}

fn forward<'t>(
    f: &'t Forward,
    cx: &Context<'_>,
    query: Option<&str>,
) -> Result<Decision<'t>, ControlCharacter> {
    let path = f.path.render_with_query(cx, query)?;
    Ok(Decision::Forward {
        upstream: &f.upstream,
        path,
    })
}

/// A redirect to another host only works for clients that follow it faithfully; scripted
/// clients often do not (no following at all, POST turned into GET, `Authorization` dropped,
/// no http→https). So only a browser's plain GET/HEAD is redirected; the rest is forwarded.
pub fn choose_branch(req: &Request<'_>) -> Branch {
    let forward = |why| Branch {
        taken: "forward",
        why,
    };
    if req.method != Method::GET && req.method != Method::HEAD {
        forward("the method is not GET or HEAD")
    } else if req.headers.first("authorization").is_some() {
        forward("the request carries Authorization")
    } else if !req
        .headers
        .first("user-agent")
        .is_some_and(|ua| ua.starts_with(b"Mozilla/"))
    {
        forward("the User-Agent is not a browser's")
    } else {
        Branch {
            taken: "redirect",
            why: "a browser's GET or HEAD without Authorization",
        }
    }
}

/// The host a request names: its absolute-form authority or its `Host` header, which must
/// agree when both are present (a proxy in front must not see one tenant while Signpost
/// serves another).
fn request_host<'r>(req: &'r Request<'_>) -> Result<Cow<'r, str>, &'static str> {
    let bad = |e: BadHost| match e {
        BadHost::Empty => "the Host header is empty",
        BadHost::Invalid => "the host is not a valid name",
    };
    let from_header = req
        .headers
        .first("host")
        .map(|h| host::normalize(h).map_err(bad))
        .transpose()?;
    if from_header.is_some() && req.headers.count("host") > 1 {
        return Err("more than one Host header");
    }
    let from_target = match req.uri.authority() {
        Some(a) if a.as_str().contains('@') => return Err("the request target carries user info"),
        Some(a) => Some(host::normalize(a.as_str().as_bytes()).map_err(bad)?),
        None => None,
    };
    match (from_target, from_header) {
        (Some(t), Some(h)) if t != h => {
            Err("the Host header and the request target name different hosts")
        }
        (Some(t), _) => Ok(t),
        (None, Some(h)) => Ok(h),
        (None, None) => Err("the request names no host"),
    }
}

/// The `410` page: what happened, with any URL in the message made a link.
pub fn gone_page(message: &str) -> Bytes {
    let mut body = String::from(
        "<!doctype html>\n<html lang=\"en\">\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width\">\n<title>This address has moved on</title>\n<body style=\"font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;line-height:1.5\">\n<h1>This address has moved on</h1>\n<p>",
    );
    for (i, word) in message.split(' ').enumerate() {
        if i > 0 {
            body.push(' ');
        }
        let trimmed = word.trim_end_matches(['.', ',', ';', ')']);
        if trimmed.starts_with("https://") || trimmed.starts_with("http://") {
            let href = escape(trimmed);
            body.push_str(&format!(
                "<a href=\"{href}\">{href}</a>{}",
                escape(&word[trimmed.len()..])
            ));
        } else {
            body.push_str(&escape(word));
        }
    }
    body.push_str("</p>\n</body>\n</html>\n");
    Bytes::from(body)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{AUTHORIZATION, HOST, USER_AGENT};
    use http::HeaderMap;

    #[test]
    fn gone_page_links_urls_and_escapes() {
        let page = gone_page("Moved <now>. See https://web.flexhrm.com.");
        let page = std::str::from_utf8(&page).unwrap();
        assert!(page.contains("Moved &lt;now&gt;. See <a href=\"https://web.flexhrm.com\">https://web.flexhrm.com</a>."), "{page}");
    }

    #[test]
    fn an_acme_challenge_in_progress_is_answered_on_http_for_its_host_before_any_rule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.yaml");
        std::fs::write(
            &path,
            "listen: { http: 127.0.0.1:80 }\nprofiles:\n  p:\n    fallback: { redirect: \"https://web.flexhrm.com/\" }\ntenants:\n  - { id: t, hosts: [hrm.exempel.com, other.exempel.com], profile: p }\n",
        )
        .unwrap();
        let table = crate::config::load(&path, None).unwrap().table;
        let offered = table
            .challenges
            .offer("hrm.exempel.com", "tok-1", "tok-1.thumbprint");
        let ask = |scheme, host: &str, path: &str| {
            let uri: Uri = path.parse().unwrap();
            let mut headers = HeaderMap::new();
            headers.insert(HOST, host.parse().unwrap());
            let req = Request {
                method: &Method::GET,
                scheme,
                uri: &uri,
                headers: &headers,
                at: None,
            };
            match route(&table, &req).decision {
                Decision::Challenge { key_authorization } => {
                    String::from_utf8(key_authorization.to_vec()).unwrap()
                }
                other => other.action().to_owned(),
            }
        };
        let token = "/.well-known/acme-challenge/tok-1";
        assert_eq!(
            ask(Scheme::Http, "hrm.exempel.com", token),
            "tok-1.thumbprint"
        );
        assert_eq!(
            ask(Scheme::Http, "HRM.exempel.com.", token),
            "tok-1.thumbprint"
        );
        // Another host of the same tenant, HTTPS, another token: the rules answer.
        assert_eq!(ask(Scheme::Http, "other.exempel.com", token), "redirect");
        assert_eq!(ask(Scheme::Https, "hrm.exempel.com", token), "redirect");
        let other = "/.well-known/acme-challenge/tok-2";
        assert_eq!(ask(Scheme::Http, "hrm.exempel.com", other), "redirect");
        drop(offered);
        assert_eq!(ask(Scheme::Http, "hrm.exempel.com", token), "redirect");
    }

    #[test]
    fn branch_choice() {
        let uri: Uri = "/x".parse().unwrap();
        let taken = |method: Method, auth: bool, ua: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            if auth {
                headers.insert(AUTHORIZATION, "Bearer x".parse().unwrap());
            }
            if let Some(ua) = ua {
                headers.insert(USER_AGENT, ua.parse().unwrap());
            }
            let req = Request {
                method: &method,
                scheme: Scheme::Https,
                uri: &uri,
                headers: &headers,
                at: None,
            };
            choose_branch(&req).taken
        };
        let chrome = Some("Mozilla/5.0 (X11) Chrome/130");
        assert_eq!(taken(Method::GET, false, chrome), "redirect");
        assert_eq!(taken(Method::HEAD, false, chrome), "redirect");
        assert_eq!(taken(Method::POST, false, chrome), "forward");
        assert_eq!(taken(Method::GET, true, chrome), "forward");
        assert_eq!(taken(Method::GET, false, Some("curl/8.0")), "forward");
        assert_eq!(taken(Method::GET, false, None), "forward");
    }
}
