//! Request hygiene, one matrix: every case runs on the self-answered path (a redirect) and on
//! the forwarded path, on a fresh connection and after a forwarded request with a body on the
//! same connection (what once handed a connection to a second HTTP stack), over HTTP/1.1 and,
//! where it applies, HTTP/2 — and every cell must come out as the case says. A new case is
//! one line in [`cases`].

use std::time::Duration;

use crate::common::h2 as raw_h2;
use crate::common::raw::{End, Raw};
use crate::common::{Gateway, Seen, Upstream};
use serde_yaml::Value;

const HOST: &str = "acme.flexhosting.se";
/// The gateway's header deadline in these tests; slow heads must be cut by then.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const PATIENCE: Duration = Duration::from_secs(5);

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// `/Timeclock/X`: a redirect Signpost writes itself.
    Answered,
    /// `/HRM/API/v1/x`: forwarded to the recording upstream as `/v1/x`.
    Forwarded,
}

impl Route {
    /// The plain request's path, with `{}` where a case may put something in the middle.
    fn path(self, middle: &str) -> String {
        match self {
            Route::Answered => format!("/Timeclock/{middle}X"),
            Route::Forwarded => format!("/HRM/API/v1/{middle}x"),
        }
    }
}

/// One request, before it is written as HTTP/1.1 or HTTP/2.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    /// Put into the path before its last segment (`a/../`).
    middle: &'static str,
    /// The whole target instead of the route's path (`CONNECT`).
    target: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Option<&'static str>,
    /// HTTP/1: the head's last line break is never sent (a slow head).
    unfinished: bool,
    /// HTTP/2: header names as written, not lower-cased (which HTTP/2 requires).
    raw_names: bool,
    /// HTTP/2: the body follows its HEADERS only after a pause, so the server acts on the
    /// head before it has seen the body.
    late_body: bool,
    /// HTTP/2: `:path` after the regular header fields, where no pseudo-header may stand.
    late_pseudo: bool,
}

impl Req {
    fn plain() -> Self {
        Req {
            method: "GET",
            middle: "",
            target: None,
            headers: Vec::new(),
            body: None,
            unfinished: false,
            raw_names: false,
            late_body: false,
            late_pseudo: false,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn target_for(&self, route: Route) -> String {
        self.target
            .map(str::to_owned)
            .unwrap_or_else(|| route.path(self.middle))
    }

    fn h1(&self, route: Route, id: &str) -> Vec<u8> {
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: Mozilla/5.0\r\nX-Case: {id}\r\n",
            self.method,
            self.target_for(route)
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.unfinished {
            head.push_str("\r\n");
            head.push_str(self.body.unwrap_or(""));
        }
        head.into_bytes()
    }

    fn h2_fields(&self, route: Route, id: &str) -> Vec<(String, String)> {
        let mut fields = vec![
            (":method".to_owned(), self.method.to_owned()),
            (":scheme".to_owned(), "https".to_owned()),
            (":authority".to_owned(), HOST.to_owned()),
            (":path".to_owned(), self.target_for(route)),
            ("user-agent".to_owned(), "Mozilla/5.0".to_owned()),
            ("x-case".to_owned(), id.to_owned()),
        ];
        if self.method == "CONNECT" {
            fields.retain(|(n, _)| n != ":scheme" && n != ":path");
        }
        if self.late_pseudo {
            let path = fields.remove(3);
            fields.push(path);
        }
        fields.extend(self.headers.iter().map(|(name, value)| {
            let name = match self.raw_names {
                true => name.to_string(),
                false => name.to_ascii_lowercase(),
            };
            (name, value.clone())
        }));
        fields
    }
}

/// What must become of a case's request.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Served as the plain request is: the redirect, or the forward, whose request the
    /// upstream receives and `check` accepts.
    Served(fn(&Seen) -> Result<(), String>),
    /// Answered with this status; the connection carries on (HTTP/1: the next request on it is
    /// served).
    Rejected(u16),
    /// Refused with this status and the connection closed (HTTP/2: a 4xx or the stream reset).
    Refused(u16),
    /// Cut off: no answer, the connection closed at the header deadline.
    Cut,
}

struct Case {
    name: &'static str,
    request: Req,
    http1: Expect,
    /// `None` where the case has no HTTP/2 form.
    http2: Option<Expect>,
}

fn any(_: &Seen) -> Result<(), String> {
    Ok(())
}

fn no_underscore_names(seen: &Seen) -> Result<(), String> {
    match seen.headers.keys().find(|n| n.as_str().contains('_')) {
        Some(name) => Err(format!("`{name}` reached the upstream")),
        None => Ok(()),
    }
}

fn no_upgrade(seen: &Seen) -> Result<(), String> {
    match ["upgrade", "connection"]
        .iter()
        .find(|n| seen.headers.contains_key(**n))
    {
        Some(name) => Err(format!("`{name}` reached the upstream")),
        None => Ok(()),
    }
}

fn body_whole(seen: &Seen) -> Result<(), String> {
    (seen.body == b"hello")
        .then_some(())
        .ok_or_else(|| format!("body {:?}", String::from_utf8_lossy(&seen.body)))
}

/// The matrix's rows, one a line.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Expect::*;
    let r = Req::plain;
    let big = "a".repeat(70_000);
    vec![
        Case { name: "plain", request: r(), http1: Served(any), http2: Some(Served(any)) },
        Case { name: "head over 64 KiB", request: r().header("X-Big", big), http1: Refused(431), http2: Some(Refused(431)) },
        Case { name: "Transfer-Encoding with Content-Length", request: Req { body: Some("0\r\n\r\n"), ..r().header("Transfer-Encoding", "chunked").header("Content-Length", "5") }, http1: Refused(400), http2: Some(Refused(400)) },
        Case { name: "Content-Length list", request: Req { body: Some("hello"), ..r().header("Content-Length", "5, 5") }, http1: Refused(400), http2: Some(Refused(400)) },
        Case { name: "two Content-Lengths", request: Req { body: Some("hello"), ..r().header("Content-Length", "5").header("Content-Length", "5") }, http1: Refused(400), http2: Some(Refused(400)) },
        Case { name: "head not done in time", request: Req { unfinished: true, ..r() }, http1: Cut, http2: None },
        Case { name: "underscores in header names", request: r().header("X_Secret", "s").header("Transfer_Encoding", "chunked"), http1: Served(no_underscore_names), http2: Some(Served(no_underscore_names)) },
        Case { name: "a second Host header", request: r().header("HOST", "evil.example"), http1: Rejected(400), http2: Some(Rejected(400)) },
        Case { name: "dot segments", request: Req { middle: "a/b/../../", ..r() }, http1: Served(any), http2: Some(Served(any)) },
        Case { name: "encoded dot segments", request: Req { middle: "a/%2e%2E/%2e/", ..r() }, http1: Served(any), http2: Some(Served(any)) },
        Case { name: "backslash dot segments", request: Req { middle: "a\\..\\", ..r() }, http1: Served(any), http2: Some(Served(any)) },
        Case { name: "dot segments above the root", request: Req { target: Some("/../../Timeclock/X"), ..r() }, http1: Rejected(400), http2: Some(Rejected(400)) },
        Case { name: "dot segment behind an encoded slash", request: Req { middle: "a%2f..%2f", ..r() }, http1: Rejected(400), http2: Some(Rejected(400)) },
        Case { name: "Upgrade other than websocket", request: r().header("Connection", "Upgrade").header("Upgrade", "h2c"), http1: Served(no_upgrade), http2: Some(Refused(400)) },
        Case { name: "CONNECT", request: Req { method: "CONNECT", target: Some("acme.flexhosting.se:443"), ..r() }, http1: Refused(405), http2: Some(Rejected(405)) },
        Case { name: "an expectation other than 100-continue", request: r().header("Expect", "magic"), http1: Refused(417), http2: None },
        Case { name: "a body with Expect: 100-continue", request: Req { method: "PUT", body: Some("hello"), ..r().header("Content-Length", "5").header("Expect", "100-continue") }, http1: Served(body_whole), http2: None },
        // Over HTTP/1 the bytes after an empty body are the next request.
        Case { name: "content-length 0 and a body", request: Req { method: "PUT", body: Some("hello"), late_body: true, ..r().header("content-length", "0") }, http1: Served(any), http2: Some(Refused(400)) },
        Case { name: "uppercase header name", request: Req { raw_names: true, ..r().header("X-Upper", "1") }, http1: Served(any), http2: Some(Refused(400)) },
        Case { name: "connection-specific header", request: r().header("keep-alive", "timeout=5"), http1: Served(any), http2: Some(Refused(400)) },
        Case { name: "CR LF in a header value", request: r().header("x-a", "a\r\nx-b: b"), http1: Served(any), http2: Some(Refused(400)) },
        Case { name: "a pseudo-header after regular fields", request: Req { late_pseudo: true, ..r() }, http1: Served(any), http2: Some(Refused(400)) },
    ]
}

/// A gateway whose upstreams are the recording stand-in, with a 1 s header deadline and a
/// 2 s body deadline.
async fn setup() -> (Gateway, Upstream) {
    Gateway::with_recording_upstream(|config, _| {
        config["server"]["header_timeout"] = Value::from("1s");
        config["server"]["body_timeout"] = Value::from("2s");
    })
    .await
}

/// A forwarded request with a body, answered before the case on the same connection.
const BEFORE: &str = "POST /HRM/API/v1/before HTTP/1.1\r\nHost: acme.flexhosting.se\r\nContent-Length: 5\r\n\r\nhello";

/// Runs one HTTP/1.1 cell; `Err` says what went wrong.
async fn http1_cell(
    gw: &Gateway,
    up: &Upstream,
    case: &Case,
    route: Route,
    after_body: bool,
    id: &str,
) -> Result<(), String> {
    let mut conn = Raw::connect(gw.http).await;
    if after_body {
        conn.send(BEFORE.as_bytes()).await;
        let first = conn.response(PATIENCE, false).await;
        match first {
            Some(resp) if resp.status == 201 => {}
            other => return Err(format!("the forward before it: {other:?}")),
        }
    }
    conn.send(&case.request.h1(route, id)).await;
    let window = match case.http1 {
        Expect::Cut => HEADER_TIMEOUT + Duration::from_secs(2),
        _ => PATIENCE,
    };
    let head_request = case.request.method == "HEAD";
    let resp = conn.response(window, head_request).await;
    let forwarded = seen(up, id);
    match case.http1 {
        Expect::Served(check) => {
            let resp = resp.ok_or_else(|| format!("no answer; read {:?}", conn.unread()))?;
            served(
                route,
                resp.status,
                resp.header("location"),
                forwarded,
                check,
            )
        }
        Expect::Rejected(status) => {
            let resp = resp.ok_or("no answer")?;
            expect_status(&resp.status, status, &resp.head)?;
            nothing_forwarded(forwarded)?;
            conn.send(&Req::plain().h1(route, &format!("{id}-next")))
                .await;
            match conn.response(PATIENCE, false).await {
                Some(_) => Ok(()),
                None => Err("the connection did not carry the next request".into()),
            }
        }
        Expect::Refused(status) => {
            let resp = resp.ok_or("no answer")?;
            expect_status(&resp.status, status, &resp.head)?;
            nothing_forwarded(forwarded)?;
            match conn.end(PATIENCE).await {
                End::Closed => Ok(()),
                end => Err(format!("after the refusal the connection is {end:?}")),
            }
        }
        Expect::Cut => {
            if let Some(resp) = resp {
                return Err(format!("answered {}", resp.head));
            }
            nothing_forwarded(forwarded)?;
            match conn.end(Duration::from_millis(100)).await {
                End::Open => Err(format!("still open after {window:?}")),
                _ => Ok(()),
            }
        }
    }
}

/// Runs one HTTP/2 cell; after a forwarded POST on stream 1 when `after_body`.
async fn http2_cell(
    gw: &Gateway,
    up: &Upstream,
    case: &Case,
    expect: Expect,
    route: Route,
    after_body: bool,
    id: &str,
) -> Result<(), String> {
    let mut client = raw_h2::Client::connect(gw.https, HOST).await;
    let mut stream = 1;
    if after_body {
        let fields = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", HOST),
            (":path", "/HRM/API/v1/before"),
            ("content-length", "5"),
        ];
        client.request(1, &fields, Some(b"hello")).await;
        let first = client.end_of(1, PATIENCE).await;
        if first.status != Some(201) {
            return Err(format!("the forward before it: {first:?}"));
        }
        stream = 3;
    }
    let fields = case.request.h2_fields(route, id);
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let body = case.request.body.map(str::as_bytes);
    client.headers(stream, &fields, body.is_none()).await;
    if let Some(body) = body {
        if case.request.late_body {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        client.data(stream, body, true).await;
    }
    let end = client.end_of(stream, PATIENCE).await;
    let forwarded = seen(up, id);
    let location = end
        .headers
        .iter()
        .find(|(n, _)| n == "location")
        .map(|(_, v)| v.as_str());
    match expect {
        Expect::Served(check) => {
            let status = end.status.ok_or_else(|| format!("no answer: {end:?}"))?;
            served(route, status, location, forwarded, check)
        }
        Expect::Rejected(status) => {
            expect_status(&end.status.unwrap_or(0), status, &format!("{end:?}"))?;
            nothing_forwarded(forwarded)
        }
        Expect::Refused(_) if end.refused() => nothing_forwarded(forwarded),
        Expect::Refused(_) => Err(format!("not refused: {end:?}")),
        Expect::Cut => unreachable!("no HTTP/2 form"),
    }
}

/// The requests the upstream received with this case id.
fn seen(up: &Upstream, id: &str) -> Vec<Seen> {
    up.seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.header("x-case").as_deref() == Some(id))
        .cloned()
        .collect()
}

fn served(
    route: Route,
    status: u16,
    location: Option<&str>,
    forwarded: Vec<Seen>,
    check: fn(&Seen) -> Result<(), String>,
) -> Result<(), String> {
    match route {
        Route::Answered => {
            expect_status(&status, 307, "")?;
            let want = "https://timeclock.flexhrm.com/X/1234";
            (location == Some(want))
                .then_some(())
                .ok_or_else(|| format!("Location {location:?}, not {want}"))?;
            nothing_forwarded(forwarded)
        }
        Route::Forwarded => {
            expect_status(&status, 201, "")?;
            let [one] = forwarded.as_slice() else {
                return Err(format!("the upstream got {} requests", forwarded.len()));
            };
            if one.target != "/v1/x" {
                return Err(format!("the upstream got target {}", one.target));
            }
            check(one)
        }
    }
}

fn expect_status(got: &u16, want: u16, context: &str) -> Result<(), String> {
    (*got == want)
        .then_some(())
        .ok_or_else(|| format!("status {got}, not {want} {context}"))
}

fn nothing_forwarded(forwarded: Vec<Seen>) -> Result<(), String> {
    match forwarded.first() {
        None => Ok(()),
        Some(s) => Err(format!("forwarded anyway: {} {}", s.method, s.target)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protection_holds_on_both_paths_first_request_or_later_http1_and_http2() {
    let (gw, up) = setup().await;
    let mut failures = Vec::new();
    let mut cells = 0;
    for (n, case) in cases().iter().enumerate() {
        for route in [Route::Answered, Route::Forwarded] {
            for after_body in [false, true] {
                let position = if after_body {
                    "after a forward with a body"
                } else {
                    "first"
                };
                let id = format!("{n}-{route:?}-{after_body}-h1");
                cells += 1;
                if let Err(why) = http1_cell(&gw, &up, case, route, after_body, &id).await {
                    failures.push(format!(
                        "HTTP/1.1 | {} | {route:?} | {position}: {why}",
                        case.name
                    ));
                }
                let Some(expect) = case.http2 else { continue };
                let id = format!("{n}-{route:?}-{after_body}-h2");
                cells += 1;
                if let Err(why) = http2_cell(&gw, &up, case, expect, route, after_body, &id).await {
                    failures.push(format!(
                        "HTTP/2   | {} | {route:?} | {position}: {why}",
                        case.name
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("hygiene matrix: {cells} cells, all as expected");
}
