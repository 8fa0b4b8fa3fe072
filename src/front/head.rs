//! From the bytes of a request head to everything the rest of the request needs, in one
//! synchronous step: parse, check ([`hygiene`]), route ([`route`]), and either render the
//! answer ([`Outcome`]) or write the upstream's request head ([`forwarded_headers`]).
//!
//! Doing it all before the first `await` keeps the parser's borrows of the read buffer out of
//! the connection's future (which then stays small), and means the head's headers are read
//! exactly once.

use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::sync::Arc;

use http::{Method, StatusCode, Uri, Version};

use crate::action::{ForwardPlan, Outcome};
use crate::protocol::answer::Answer;
use crate::protocol::failure::UpstreamFailure;
use crate::protocol::forward::{forwarded_headers, Hop};
use crate::protocol::headers::Kept;
use crate::protocol::hygiene::{body_framing, BodyFraming, Refusal};
use crate::route::{route, Labels, Request as Routable, Scheme};
use crate::table::Table;
use crate::upstream::Upstream;

/// More header lines than this get `431` (nginx has no count limit, only the size one; 128
/// lines of a 64 KiB head is already 512 bytes a line).
const MAX_HEADERS: usize = 128;

/// A request whose head has been read and decided.
pub struct Request {
    /// Bytes of the head in the connection's buffer.
    pub head_len: usize,
    pub method: Method,
    pub version: Version,
    pub uri: Uri,
    /// The routed path when it differs from the request's (dot segments resolved).
    routed_path: Option<String>,
    /// What routing, the census and the access log read: `Host`, `User-Agent`,
    /// `Authorization`, `Referer`, `X-Forwarded-For` and the configured API-key headers.
    pub headers: Kept,
    pub body: BodyFraming,
    /// The client asked to close after this request, or speaks HTTP/1.0.
    pub close: bool,
    /// `Expect: 100-continue`: the client waits for a go-ahead before sending its body.
    pub expect_continue: bool,
    /// A WebSocket upgrade (`Upgrade: websocket` on an HTTP/1.1 GET).
    pub websocket: bool,
    pub labels: Option<Labels>,
}

impl Request {
    /// The path as routed, for the census and the log.
    pub fn path(&self) -> &str {
        self.routed_path.as_deref().unwrap_or(self.uri.path())
    }
}

/// What the front door does with a request.
pub enum Action {
    Answer(Answer),
    Forward {
        plan: ForwardPlan,
        /// The request head for the upstream, serialised.
        head: Vec<u8>,
    },
    /// A forward that cannot be made (the target is not a valid request target).
    Fail(Arc<Upstream>, UpstreamFailure),
}

/// A whole head, read and decided; `Ok(None)` while the buffer holds only part of one.
pub type Parsed = Result<Option<(Request, Action)>, Refusal>;

/// Where the head came from, for routing and `X-Forwarded-*`.
pub struct Context<'a> {
    pub table: &'a Table,
    pub api_key_headers: &'a [String],
    pub scheme: Scheme,
    pub peer: Option<IpAddr>,
}

/// Reads the head at the start of `buf`.
pub fn read(buf: &[u8], cx: &Context<'_>) -> Parsed {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(buf, &mut storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                why: "more than 128 header lines",
            })
        }
        Err(_) => return Err(Refusal::bad("the request head does not parse")),
    };
    // The host index's line is a cache miss with many tenants: asked for now, it arrives
    // while the head is checked and its target parsed.
    if let Some(host) = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
    {
        cx.table.prefetch_host(host.value);
    }
    decide(&req, head_len, cx).map(Some)
}

fn decide(
    req: &httparse::Request<'_, '_>,
    head_len: usize,
    cx: &Context<'_>,
) -> Result<(Request, Action), Refusal> {
    let version = match req.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let raw_headers = || req.headers.iter().map(|h| (h.name.as_bytes(), h.value));
    let body = body_framing(raw_headers(), version)?;
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| Refusal::bad("the method is not a token"))?;
    let target = req.path.unwrap_or("");
    let uri: Uri = target
        .parse()
        .map_err(|_| Refusal::bad("the request target is not a valid URI"))?;
    let (flags, headers) = read_headers(req, version, &method, cx.api_key_headers)?;

    let (labels, routed_path, outcome) = {
        let routable = Routable {
            method: &method,
            scheme: cx.scheme,
            uri: &uri,
            headers: &headers,
            at: None,
        };
        let routed = route(cx.table, &routable);
        let labels = routed.labels();
        let signals = routed.tenant.and_then(|t| t.signals.as_deref());
        let routed_path = match routed.path {
            Cow::Owned(path) => Some(path),
            Cow::Borrowed(_) => None,
        };
        (labels, routed_path, Outcome::of(routed.decision, signals))
    };
    let action = match outcome {
        Outcome::Answer(answer) => Action::Answer(answer),
        Outcome::Forward(plan) => {
            let original_host = uri.authority().map(|a| a.as_str().as_bytes()).or_else(|| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("host"))
                    .map(|h| h.value)
            });
            let hop = Hop {
                authority: &plan.upstream.authority,
                client_ip: cx.peer,
                scheme: cx.scheme,
                original_host,
                websocket: flags.websocket,
            };
            match upstream_head(&method, &plan.target, version, body, raw_headers(), &hop) {
                Some(head) => Action::Forward { plan, head },
                None => Action::Fail(plan.upstream, UpstreamFailure::Other),
            }
        }
    };
    let request = Request {
        head_len,
        method,
        version,
        uri,
        routed_path,
        headers,
        body,
        close: flags.close,
        expect_continue: flags.expect_continue,
        websocket: flags.websocket,
        labels,
    };
    Ok((request, action))
}

/// The connection-level wishes of a request.
struct Flags {
    close: bool,
    expect_continue: bool,
    websocket: bool,
}

/// One pass over the head's headers: the connection-level wishes, and a copy of the headers
/// routing, the census and the log read (`Host`, `User-Agent`, `Authorization`, `Referer`,
/// `X-Forwarded-For`, the API-key headers).
fn read_headers(
    req: &httparse::Request<'_, '_>,
    version: Version,
    method: &Method,
    api_keys: &[String],
) -> Result<(Flags, Kept), Refusal> {
    let mut flags = Flags {
        // Signpost does not keep HTTP/1.0 connections alive; and after a refused CONNECT the
        // client may well send what it meant for the tunnel.
        close: version == Version::HTTP_10 || method == Method::CONNECT,
        expect_continue: false,
        websocket: false,
    };
    let (mut upgrade_token, mut websocket_offered) = (false, false);
    let mut headers = Kept::default();
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let keep = if name.eq_ignore_ascii_case(b"host")
            || name.eq_ignore_ascii_case(b"user-agent")
            || name.eq_ignore_ascii_case(b"authorization")
            || name.eq_ignore_ascii_case(b"referer")
        {
            true
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                flags.close |= token.eq_ignore_ascii_case(b"close");
                upgrade_token |= token.eq_ignore_ascii_case(b"upgrade");
            }
            false
        } else if name.eq_ignore_ascii_case(b"expect") {
            if !h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                return Err(Refusal {
                    status: StatusCode::EXPECTATION_FAILED,
                    why: "the only expectation Signpost meets is 100-continue",
                });
            }
            flags.expect_continue = version == Version::HTTP_11;
            false
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            websocket_offered |= h
                .value
                .split(|&b| b == b',')
                .next()
                .is_some_and(|p| p.trim_ascii().eq_ignore_ascii_case(b"websocket"));
            false
        } else {
            name.eq_ignore_ascii_case(b"x-forwarded-for")
                || api_keys
                    .iter()
                    .any(|k| name.eq_ignore_ascii_case(k.as_bytes()))
        };
        // The parser has refused every byte a header value must not hold.
        if keep {
            headers.push(name, h.value);
        }
    }
    flags.websocket =
        upgrade_token && websocket_offered && version == Version::HTTP_11 && method == Method::GET;
    Ok((flags, headers))
}

/// The upstream's request head: request line, the headers that cross, Signpost's, and the
/// framing of a chunked body (relayed as it came). `None` if the target is not a valid
/// request target (templates percent-encode what they insert, so only a config's literal text
/// could make it so).
fn upstream_head<'h>(
    method: &Method,
    target: &str,
    version: Version,
    body: BodyFraming,
    client: impl Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
    hop: &Hop<'_>,
) -> Option<Vec<u8>> {
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    // An HTTP/1.0 client's request goes on as HTTP/1.0, as nginx sends it: the answer then
    // needs no chunked framing, which that client could not read.
    head.extend_from_slice(if version == Version::HTTP_10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    forwarded_headers(client, hop, &mut head);
    if body == BodyFraming::Chunked {
        head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    head.extend_from_slice(b"\r\n");
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        crate::config::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml"),
            None,
        )
        .unwrap()
        .table
    }

    fn read_one(table: &Table, raw: &str) -> Parsed {
        read(
            raw.as_bytes(),
            &Context {
                table,
                api_key_headers: &["x-api-key".to_owned()],
                scheme: Scheme::Https,
                peer: Some("192.0.2.7".parse().unwrap()),
            },
        )
    }

    #[test]
    fn keeps_only_what_routing_and_the_census_read() {
        let table = table();
        let Ok(Some((req, action))) = read_one(&table, "GET /HRM HTTP/1.1\r\nHost: acme.flexhosting.se\r\nConnection: Keep-Alive\r\nX-Api-Key: k\r\nAccept: */*\r\n\r\n") else {
            panic!("not read")
        };
        let names: Vec<&[u8]> = req.headers.iter().map(|(name, _)| name).collect();
        assert_eq!(names, [&b"host"[..], b"x-api-key"], "{:?}", req.headers);
        assert!(!req.close);
        assert!(matches!(action, Action::Answer(ref a) if a.status == 307));
    }

    #[test]
    fn a_forward_carries_a_serialised_upstream_head() {
        let table = table();
        let raw = "POST /HRM/API/v1/x?a=1 HTTP/1.1\r\nHost: acme.flexhosting.se\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nX_Forwarded_For: 6.6.6.6\r\nAuthorization: Bearer t\r\n\r\n";
        let Ok(Some((req, action))) = read_one(&table, raw) else {
            panic!("not read")
        };
        assert_eq!(req.body, BodyFraming::Chunked);
        assert!(req.expect_continue);
        let Action::Forward { head, .. } = &action else {
            panic!("not a forward")
        };
        assert_eq!(
            String::from_utf8_lossy(head),
            "POST /v1/x?a=1 HTTP/1.1\r\nAuthorization: Bearer t\r\nHost: api.flexhrm.com\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: acme.flexhosting.se\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn doubtful_heads_are_refused() {
        let table = table();
        for (raw, status) in [
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
                400,
            ),
            ("GET / HTTP/1.1\r\nHost: a\r\nExpect: magic\r\n\r\n", 417),
            ("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            (
                &format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(129)),
                431,
            ),
        ] {
            match read_one(&table, raw) {
                Err(r) => assert_eq!(r.status.as_u16(), status, "{raw:?}"),
                _ => panic!("{raw:?} was not refused"),
            }
        }
    }
}
