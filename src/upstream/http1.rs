//! The HTTP/1.1 client side of the front door's forwards: an upstream's response head read and
//! re-framed for the client, and its body relayed.
//!
//! In: a connection from [`super::pool`] on which the request has been sent. Out: the client's
//! response head, written straight from the read buffer without header maps, then the body as
//! it arrives (`Content-Length` exactly, `chunked` verbatim while a scanner finds its end, or
//! until the upstream closes, re-chunked for an HTTP/1.1 client), so memory stays flat
//! whatever its size.
//!
//! The rules are the ones an nginx operator expects: hop-by-hop headers (and those the
//! `Connection` header names) do not cross; a response with conflicting `Content-Length`s, or a
//! `Transfer-Encoding` other than `chunked`, is a 502; a connection is reused only when its
//! response was HTTP/1.1, not `Connection: close`, and read to its exact end.

use std::mem::MaybeUninit;
use std::time::Duration;

use bytes::Buf;
use pingora::protocols::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::pool::Conn;
use crate::protocol::chunked::ChunkScanner;
use crate::protocol::failure::UpstreamFailure;
use crate::protocol::forward::is_hop_by_hop;
use crate::protocol::hygiene::parse_length;
use crate::protocol::write_header;

/// Response heads larger than this are refused (502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_RESPONSE_HEADERS: usize = 128;
/// Reads ask for at least this much room in the buffer.
const READ_CHUNK: usize = 16 * 1024;

/// An exchange that failed; `before_response` when nothing of a response had arrived, so an
/// idempotent request on a reused connection may be retried on a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    pub failure: UpstreamFailure,
    pub before_response: bool,
}

impl Failed {
    const INVALID: Self = Self::after(UpstreamFailure::InvalidResponse);

    const fn after(failure: UpstreamFailure) -> Self {
        Self {
            failure,
            before_response: false,
        }
    }
}

/// What the client's request asks of the response.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// A `HEAD` request: the response has no body whatever it says.
    pub head_request: bool,
    /// The client asked for a WebSocket: a `101` switches the connection to a tunnel.
    pub websocket: bool,
    /// The client speaks HTTP/1.1 and may get `chunked`; an HTTP/1.0 client gets a body that
    /// ends when the connection does.
    pub client_chunked: bool,
    /// Headers to set on the response (the tenant's signals), replacing the upstream's.
    pub extra: &'a [(&'a str, &'a [u8])],
}

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to HEAD, a 204 or a 304.
    Empty,
    Length(u64),
    /// Relayed verbatim; the client is told `Transfer-Encoding: chunked` too.
    Chunked,
    /// Until the upstream closes; re-chunked for an HTTP/1.1 client.
    UntilClose {
        rechunk: bool,
    },
    /// A `101` to a WebSocket request: bytes flow both ways until either side closes.
    Tunnel,
}

/// A final response head, already rewritten for the client.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    /// Bytes of the upstream's head, to skip in the buffer.
    pub len: usize,
    pub framing: Framing,
    /// HTTP/1.1 without `Connection: close`.
    pub keep_alive: bool,
}

/// What a buffer holds so far.
#[derive(Debug)]
pub enum Parsed {
    Partial,
    /// A 1xx interim response of this many bytes, skipped: Signpost answers `Expect` itself.
    Interim(usize),
    Final(ResponseHead),
}

/// Parses the upstream's response head in `buf` and, when it is final, writes the client's
/// head into `out`: status line, the upstream's end-to-end headers, the framing header, and
/// `expect.extra`, which replace the upstream's of the same names.
pub fn parse_response(
    buf: &[u8],
    expect: &Expect<'_>,
    out: &mut Vec<u8>,
) -> Result<Parsed, Failed> {
    // Left uninitialised for httparse to fill: 128 empty headers written on every response
    // were a third of this function's cost.
    let mut storage =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut storage,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => {
            return Ok(Parsed::Partial)
        }
        _ => return Err(Failed::INVALID),
    };
    let status = resp.code.ok_or(Failed::INVALID)?;
    let tunnel = status == 101 && expect.websocket;
    if (100..200).contains(&status) && !tunnel {
        return match status {
            101 => Err(Failed::INVALID),
            _ => Ok(Parsed::Interim(len)),
        };
    }
    let (framing, keep_alive) = framing(&resp, status, expect)?;
    write_client_head(&resp, status, framing, expect, out);
    Ok(Parsed::Final(ResponseHead {
        status,
        len,
        framing,
        keep_alive,
    }))
}

/// How a final response's body is delimited, and whether its connection may carry another
/// request (HTTP/1.1 without `Connection: close`, and a body that ends before the connection).
fn framing(
    resp: &httparse::Response<'_, '_>,
    status: u16,
    expect: &Expect<'_>,
) -> Result<(Framing, bool), Failed> {
    let mut keep_alive = resp.version == Some(1);
    let mut chunked = false;
    let mut length: Option<u64> = None;
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") {
            keep_alive &= !tokens(h.value).any(|t| t.eq_ignore_ascii_case(b"close"));
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") || chunked {
                return Err(Failed::INVALID);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(h.value).ok_or(Failed::INVALID)?;
            if length.is_some_and(|l| l != n) {
                return Err(Failed::INVALID);
            }
            length = Some(n);
        }
    }
    Ok(if status == 101 && expect.websocket {
        (Framing::Tunnel, false)
    } else if expect.head_request || status == 204 || status == 304 {
        (Framing::Empty, keep_alive)
    } else if chunked && !expect.client_chunked {
        // An answer to an HTTP/1.0 request may not be chunked.
        return Err(Failed::INVALID);
    } else if chunked {
        (Framing::Chunked, keep_alive)
    } else if let Some(n) = length {
        (Framing::Length(n), keep_alive)
    } else {
        let rechunk = expect.client_chunked;
        (Framing::UntilClose { rechunk }, false)
    })
}

/// The client's head: status line, the upstream's end-to-end headers (not hop-by-hop ones,
/// those its `Connection` names, a `Content-Length` beside `chunked`, or those `extra`
/// replaces), the framing header, then `expect.extra`.
fn write_client_head(
    resp: &httparse::Response<'_, '_>,
    status: u16,
    framing: Framing,
    expect: &Expect<'_>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let connection = |h: &&httparse::Header<'_>| h.name.eq_ignore_ascii_case("connection");
    let has_connection = resp.headers.iter().any(|h| connection(&h));
    let listed = |name: &str| {
        has_connection
            && resp
                .headers
                .iter()
                .filter(connection)
                .any(|h| tokens(h.value).any(|t| t.eq_ignore_ascii_case(name.as_bytes())))
    };
    let chunked = framing == Framing::Chunked;
    for h in resp.headers.iter() {
        let name = h.name;
        let dropped = is_hop_by_hop(name.as_bytes())
            || (chunked && name.eq_ignore_ascii_case("content-length"))
            || expect
                .extra
                .iter()
                .any(|(e, _)| name.eq_ignore_ascii_case(e))
            || listed(name);
        if !dropped {
            write_header(out, name.as_bytes(), h.value);
        }
    }
    match framing {
        Framing::Chunked | Framing::UntilClose { rechunk: true } => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
        }
        Framing::Tunnel => out.extend_from_slice(b"Connection: upgrade\r\nUpgrade: websocket\r\n"),
        _ => {}
    }
    for (name, value) in expect.extra {
        write_header(out, name.as_bytes(), value);
    }
    out.extend_from_slice(b"\r\n");
}

/// The comma-separated tokens of a header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Writes `bytes` to the upstream within `timeout`.
pub async fn send(conn: &mut Conn, bytes: &[u8], timeout: Duration) -> Result<(), UpstreamFailure> {
    let stream = &mut conn.stream;
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    match conn.deadline.within(timeout, write).await {
        Some(Ok(())) => Ok(()),
        Some(Err(_)) => Err(UpstreamFailure::Closed),
        None => Err(UpstreamFailure::Timeout),
    }
}

/// Reads up to the final response head, which stays in `conn.buf`.
pub async fn read_response(
    conn: &mut Conn,
    read_timeout: Duration,
    expect: &Expect<'_>,
    out: &mut Vec<u8>,
) -> Result<ResponseHead, Failed> {
    let mut seen = 0;
    loop {
        match parse_response(&conn.buf, expect, out)? {
            Parsed::Final(head) => return Ok(head),
            Parsed::Interim(n) => {
                conn.buf.advance(n);
                seen += n;
                continue;
            }
            Parsed::Partial => {}
        }
        let nothing_yet = seen == 0 && conn.buf.is_empty();
        match fill(conn, read_timeout).await {
            Ok(0) | Err(UpstreamFailure::Closed) => {
                return Err(Failed {
                    failure: UpstreamFailure::Closed,
                    before_response: nothing_yet,
                })
            }
            Ok(_) => {}
            Err(f) => return Err(Failed::after(f)),
        }
    }
}

/// Why relaying a body stopped early.
#[derive(Debug, PartialEq, Eq)]
pub enum RelayError {
    /// The upstream failed mid-body; the client's response is cut short.
    Upstream(UpstreamFailure),
    /// The client went away.
    Client,
}

/// Writes `out` (the client's head) and the body that follows the head in `conn.buf`, reading
/// more as needed. `Ok(true)` when the upstream connection ended exactly at the response's end
/// and may be reused.
pub async fn relay_body(
    conn: &mut Conn,
    framing: Framing,
    client: &mut Stream,
    mut out: Vec<u8>,
    read_timeout: Duration,
    sent: &mut u64,
) -> Result<bool, RelayError> {
    let mut scanner = ChunkScanner::default();
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    loop {
        let done = match framing {
            Framing::Empty | Framing::Tunnel => true,
            Framing::Length(_) => {
                let n = (conn.buf.len() as u64).min(left) as usize;
                out.extend_from_slice(&conn.buf[..n]);
                conn.buf.advance(n);
                left -= n as u64;
                left == 0
            }
            Framing::Chunked => match scanner.scan(&conn.buf) {
                Ok(Some(n)) => {
                    out.extend_from_slice(&conn.buf[..n]);
                    conn.buf.advance(n);
                    true
                }
                Ok(None) => {
                    out.extend_from_slice(&conn.buf);
                    conn.buf.clear();
                    false
                }
                Err(_) => return Err(RelayError::Upstream(UpstreamFailure::InvalidResponse)),
            },
            Framing::UntilClose { rechunk } => {
                if !conn.buf.is_empty() {
                    if rechunk {
                        use std::io::Write;
                        let _ = write!(out, "{:x}\r\n", conn.buf.len());
                    }
                    out.extend_from_slice(&conn.buf);
                    if rechunk {
                        out.extend_from_slice(b"\r\n");
                    }
                    conn.buf.clear();
                }
                false
            }
        };
        if !out.is_empty() {
            let written = client.write_all(&out).await.is_ok() && client.flush().await.is_ok();
            if !written {
                return Err(RelayError::Client);
            }
            *sent += out.len() as u64;
            out.clear();
        }
        if done {
            // Bytes past the response's end were never asked for: do not reuse.
            return Ok(conn.buf.is_empty());
        }
        match fill(conn, read_timeout).await {
            Ok(0) => {
                let Framing::UntilClose { rechunk } = framing else {
                    return Err(RelayError::Upstream(UpstreamFailure::Closed));
                };
                let end: &[u8] = if rechunk { b"0\r\n\r\n" } else { b"" };
                let ended = client.write_all(end).await.is_ok() && client.flush().await.is_ok();
                return if ended {
                    Ok(false)
                } else {
                    Err(RelayError::Client)
                };
            }
            Ok(_) => {}
            Err(f) => return Err(RelayError::Upstream(f)),
        }
    }
}

/// One read from the upstream into `conn.buf`, within `read_timeout`; `Ok(0)` at its end.
async fn fill(conn: &mut Conn, read_timeout: Duration) -> Result<usize, UpstreamFailure> {
    if conn.buf.capacity() - conn.buf.len() < READ_CHUNK / 4 {
        conn.buf.reserve(READ_CHUNK);
    }
    match conn
        .deadline
        .within(read_timeout, conn.stream.read_buf(&mut conn.buf))
        .await
    {
        Some(Ok(n)) => Ok(n),
        Some(Err(_)) => Err(UpstreamFailure::Closed),
        None => Err(UpstreamFailure::Timeout),
    }
}

/// A status code's three digits (httparse guarantees `100..=999`).
fn itoa3(status: u16) -> [u8; 3] {
    [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Expect<'static> = Expect {
        head_request: false,
        websocket: false,
        client_chunked: true,
        extra: &[],
    };

    fn parse_with(raw: &str, expect: &Expect<'_>) -> Result<(ResponseHead, String), Failed> {
        let mut out = Vec::new();
        match parse_response(raw.as_bytes(), expect, &mut out)? {
            Parsed::Final(h) => Ok((h, String::from_utf8(out).unwrap())),
            other => panic!("{raw:?}: {other:?}"),
        }
    }

    fn parse(raw: &str, head_request: bool) -> Result<(ResponseHead, String), Failed> {
        let extra: &[(&str, &[u8])] = &[("Sunset", b"x")];
        parse_with(
            raw,
            &Expect {
                head_request,
                extra,
                ..PLAIN
            },
        )
    }

    #[test]
    fn response_heads_are_reframed_for_the_client() {
        let (h, out) = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nSunset: old\r\nETag: \"e\"\r\n\r\nhello",
            false,
        )
        .unwrap();
        assert_eq!(
            (h.status, h.framing, h.keep_alive),
            (200, Framing::Length(5), true)
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e\"\r\nSunset: x\r\n\r\n"
        );
        assert_eq!(&"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nSunset: old\r\nETag: \"e\"\r\n\r\n".len(), &h.len);

        let (h, out) = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(
            out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSunset: x\r\n\r\n",
            "chunked wins over Content-Length, which is dropped"
        );

        let (h, out) = parse("HTTP/1.0 200 OK\r\nServer: old\r\n\r\n", false).unwrap();
        assert_eq!(
            (h.framing, h.keep_alive),
            (Framing::UntilClose { rechunk: true }, false)
        );
        assert!(out.contains("Transfer-Encoding: chunked\r\n"), "{out}");

        let (h, _) = parse(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            false,
        )
        .unwrap();
        assert!(!h.keep_alive);
        let (h, out) = parse("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true).unwrap();
        assert_eq!(h.framing, Framing::Empty, "a response to HEAD has no body");
        assert!(out.contains("Content-Length: 100\r\n"), "{out}");
        for status in [204, 304] {
            let (h, _) = parse(&format!("HTTP/1.1 {status} X\r\n\r\n"), false).unwrap();
            assert_eq!((h.framing, h.keep_alive), (Framing::Empty, true));
        }
    }

    #[test]
    fn an_http10_client_gets_a_body_that_ends_with_the_connection() {
        let old = Expect {
            client_chunked: false,
            ..PLAIN
        };
        let (h, out) = parse_with("HTTP/1.0 200 OK\r\nServer: old\r\n\r\n", &old).unwrap();
        assert_eq!(h.framing, Framing::UntilClose { rechunk: false });
        assert!(!out.contains("chunked"), "{out}");
        assert_eq!(
            parse_with(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                &old
            )
            .unwrap_err(),
            Failed::INVALID
        );
    }

    #[test]
    fn a_websocket_upgrade_becomes_a_tunnel_only_when_asked_for() {
        let raw = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let ws = Expect {
            websocket: true,
            ..PLAIN
        };
        let (h, out) = parse_with(raw, &ws).unwrap();
        assert_eq!(
            (h.status, h.framing, h.keep_alive),
            (101, Framing::Tunnel, false)
        );
        assert_eq!(out, "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(parse_with(raw, &PLAIN).unwrap_err(), Failed::INVALID);
    }

    #[test]
    fn ambiguous_or_unknown_framing_is_refused() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
            "SSH-2.0-OpenSSH\r\n\r\n",
        ] {
            let mut out = Vec::new();
            assert_eq!(
                parse_response(raw.as_bytes(), &PLAIN, &mut out).unwrap_err(),
                Failed::INVALID,
                "{raw:?}"
            );
        }
        let mut out = Vec::new();
        let hints = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
        let both = format!("{hints}HTTP/1.1 200");
        assert!(
            matches!(parse_response(both.as_bytes(), &PLAIN, &mut out), Ok(Parsed::Interim(n)) if n == hints.len())
        );
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_RESPONSE_HEAD));
        assert!(parse_response(huge.as_bytes(), &PLAIN, &mut out).is_err());
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\nX: a", &PLAIN, &mut out),
            Ok(Parsed::Partial)
        ));
    }
}
