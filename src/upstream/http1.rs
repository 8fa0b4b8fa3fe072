//! A lean HTTP/1.1 client exchange for the front door's bodiless forwards.
//!
//! In: the client's parsed head, and a connection from [`super::pool`]. Out: the request head
//! the upstream receives, then the upstream's response re-framed for the client — written
//! straight from the read buffer, without header maps. The body is relayed as it arrives
//! (`Content-Length` exactly, `chunked` verbatim while a scanner finds its end, or until the
//! upstream closes, re-chunked), so memory stays flat whatever its size.
//!
//! The rules are the ones an nginx operator expects: hop-by-hop headers (and those the
//! `Connection` header names) do not cross; a response with conflicting `Content-Length`s, or a
//! `Transfer-Encoding` other than `chunked`, is a 502; a connection is reused only when its
//! response was HTTP/1.1, not `Connection: close`, and read to its exact end.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Buf;
use pingora::protocols::Stream;
use pingora::time::fast_timeout::fast_timeout;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::pool::Conn;

/// Headers that describe one hop, not the message.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];
/// Response heads larger than this are refused (502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_RESPONSE_HEADERS: usize = 128;
/// Reads ask for at least this much room in the buffer.
const READ_CHUNK: usize = 16 * 1024;

/// The request to send upstream, as the front door parsed it.
pub struct Outgoing<'a> {
    pub method: &'a str,
    /// Path and query on the upstream.
    pub target: &'a str,
    /// The `Host` the upstream sees.
    pub authority: &'a str,
    pub client_headers: &'a [httparse::Header<'a>],
    /// What the client asked for (absolute-form authority, else its `Host`): `X-Forwarded-Host`.
    pub original_host: Option<&'a [u8]>,
    pub client_ip: Option<IpAddr>,
    /// `http` or `https`: `X-Forwarded-Proto`.
    pub scheme: &'a str,
}

/// Why an exchange with the upstream failed; `reason` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub reason: &'static str,
    /// Nothing of a response had arrived: safe to retry an idempotent request elsewhere.
    pub before_response: bool,
}

impl Failure {
    const fn new(status: u16, reason: &'static str, before_response: bool) -> Self {
        Self {
            status,
            reason,
            before_response,
        }
    }
    const TIMEOUT: Self = Self::new(504, "timeout", false);
    const CLOSED: Self = Self::new(502, "connection", false);
    const INVALID: Self = Self::new(502, "invalid_response", false);
}

/// `Forwarded` and `X-Forwarded-*`: what a client claims about earlier hops. Signpost is the
/// first hop it trusts, so these are dropped and its own `X-Forwarded-*` written instead.
pub fn is_forwarding_claim(name: &str) -> bool {
    name.eq_ignore_ascii_case("forwarded")
        || name.len() > 12 && name[..12].eq_ignore_ascii_case("x-forwarded-")
}

/// Serialises the upstream request head: the client's headers minus hop-by-hop ones and any
/// `X-Forwarded-*` it claimed, then `Host` and `X-Forwarded-*` as Signpost sets them.
/// `None` if the target is not a valid request-target (never happens for routed paths).
pub fn write_request(out: &mut Vec<u8>, req: &Outgoing<'_>) -> Option<()> {
    if req.target.is_empty() || !req.target.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    for part in [
        req.method,
        " ",
        req.target,
        " HTTP/1.1\r\nHost: ",
        req.authority,
        "\r\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    for h in req.client_headers {
        let name = h.name;
        let hop = HOP_BY_HOP.iter().any(|n| name.eq_ignore_ascii_case(n));
        if hop || name.eq_ignore_ascii_case("host") || is_forwarding_claim(name) {
            continue;
        }
        header(out, name.as_bytes(), h.value);
    }
    if let Some(ip) = req.client_ip {
        use std::io::Write;
        let _ = write!(out, "X-Forwarded-For: {ip}\r\n");
    }
    header(out, b"X-Forwarded-Proto", req.scheme.as_bytes());
    if let Some(host) = req.original_host {
        header(out, b"X-Forwarded-Host", host);
    }
    out.extend_from_slice(b"\r\n");
    Some(())
}

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a response to HEAD, a 204 or a 304.
    Empty,
    Length(u64),
    /// Relayed verbatim; the client is told `Transfer-Encoding: chunked` too.
    Chunked,
    /// Until the upstream closes; re-chunked for the client.
    UntilClose,
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
    /// A 1xx interim response of this many bytes, skipped: the client asked for nothing that
    /// needs one (no `Expect`, no `Upgrade`).
    Interim(usize),
    Final(ResponseHead),
}

/// Parses the upstream's response head in `buf` and, when it is final, writes the client's
/// head into `out`: status line, the upstream's end-to-end headers, the framing header, and
/// `extra` (the tenant's signal headers), which replace the upstream's of the same names.
pub fn parse_response(
    buf: &[u8],
    head_request: bool,
    extra: &[(&str, &[u8])],
    out: &mut Vec<u8>,
) -> Result<Parsed, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => {
            return Ok(Parsed::Partial)
        }
        _ => return Err(Failure::INVALID),
    };
    let status = resp.code.ok_or(Failure::INVALID)?;
    if (100..200).contains(&status) {
        return match status {
            101 => Err(Failure::INVALID),
            _ => Ok(Parsed::Interim(len)),
        };
    }
    let mut keep_alive = resp.version == Some(1);
    let mut chunked = false;
    let mut length: Option<u64> = None;
    // Names the `Connection` header lists are hop-by-hop too.
    let mut listed: Vec<&[u8]> = Vec::new();
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if !token.is_empty() {
                    listed.push(token);
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !h.value.trim_ascii().eq_ignore_ascii_case(b"chunked") || chunked {
                return Err(Failure::INVALID);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(h.value).ok_or(Failure::INVALID)?;
            if length.is_some_and(|l| l != n) {
                return Err(Failure::INVALID);
            }
            length = Some(n);
        }
    }
    let framing = if head_request || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        keep_alive = false;
        Framing::UntilClose
    };

    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in resp.headers.iter() {
        let name = h.name;
        let dropped = HOP_BY_HOP.iter().any(|n| name.eq_ignore_ascii_case(n))
            || (chunked && name.eq_ignore_ascii_case("content-length"))
            || listed
                .iter()
                .any(|l| l.eq_ignore_ascii_case(name.as_bytes()))
            || extra.iter().any(|(e, _)| name.eq_ignore_ascii_case(e));
        if !dropped {
            header(out, name.as_bytes(), h.value);
        }
    }
    if matches!(framing, Framing::Chunked | Framing::UntilClose) {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    for (name, value) in extra {
        header(out, name.as_bytes(), value);
    }
    out.extend_from_slice(b"\r\n");
    Ok(Parsed::Final(ResponseHead {
        status,
        len,
        framing,
        keep_alive,
    }))
}

/// Sends the request and reads up to the final response head, which stays in `conn.buf`.
pub async fn exchange(
    conn: &mut Conn,
    request: &[u8],
    read_timeout: Duration,
    head_request: bool,
    extra: &[(&str, &[u8])],
    out: &mut Vec<u8>,
) -> Result<ResponseHead, Failure> {
    let sent = conn.stream.write_all(request).await.is_ok() && conn.stream.flush().await.is_ok();
    if !sent {
        return Err(Failure::new(502, "connection", true));
    }
    let mut seen = 0;
    loop {
        match parse_response(&conn.buf, head_request, extra, out)? {
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
            Ok(0) | Err(Failure::CLOSED) if nothing_yet => {
                return Err(Failure::new(502, "connection", true))
            }
            Ok(0) => return Err(Failure::CLOSED),
            Ok(_) => {}
            Err(f) => return Err(f),
        }
    }
}

/// Why relaying a body stopped early.
#[derive(Debug, PartialEq, Eq)]
pub enum RelayError {
    /// The upstream failed mid-body; the client's response is cut short.
    Upstream(Failure),
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
) -> Result<bool, RelayError> {
    let mut scanner = ChunkScanner::default();
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    loop {
        let done = match framing {
            Framing::Empty => true,
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
                Err(()) => return Err(RelayError::Upstream(Failure::INVALID)),
            },
            Framing::UntilClose => {
                if !conn.buf.is_empty() {
                    use std::io::Write;
                    let _ = write!(out, "{:x}\r\n", conn.buf.len());
                    out.extend_from_slice(&conn.buf);
                    out.extend_from_slice(b"\r\n");
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
            out.clear();
        }
        if done {
            // Bytes past the response's end were never asked for: do not reuse.
            return Ok(conn.buf.is_empty());
        }
        match fill(conn, read_timeout).await {
            Ok(0) if framing == Framing::UntilClose => {
                let ended =
                    client.write_all(b"0\r\n\r\n").await.is_ok() && client.flush().await.is_ok();
                return if ended {
                    Ok(false)
                } else {
                    Err(RelayError::Client)
                };
            }
            Ok(0) => return Err(RelayError::Upstream(Failure::CLOSED)),
            Ok(_) => {}
            Err(f) => return Err(RelayError::Upstream(f)),
        }
    }
}

/// One read from the upstream into `conn.buf`, within `read_timeout`; `Ok(0)` at its end.
async fn fill(conn: &mut Conn, read_timeout: Duration) -> Result<usize, Failure> {
    if conn.buf.capacity() - conn.buf.len() < READ_CHUNK / 4 {
        conn.buf.reserve(READ_CHUNK);
    }
    match fast_timeout(read_timeout, conn.stream.read_buf(&mut conn.buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(_)) => Err(Failure::CLOSED),
        Err(_) => Err(Failure::TIMEOUT),
    }
}

/// Finds where a chunked body ends without copying it (RFC 9112 §7.1): chunk sizes in hex,
/// extensions skipped, data counted, then the trailer section up to an empty line.
#[derive(Debug, Default)]
struct ChunkScanner {
    state: Chunk,
    size: u64,
    /// Bytes on the current trailer line, to tell the empty line that ends the body.
    line: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    #[default]
    Size,
    /// Past the size: an extension or whitespace, up to LF.
    SizeRest,
    Data,
    DataCr,
    DataLf,
    Trailer,
    Done,
}

impl ChunkScanner {
    /// `Ok(Some(n))` when the body ends after `n` bytes of `bytes`; `Ok(None)` when all of them
    /// belong to it and more must come; `Err` on a malformed body.
    fn scan(&mut self, bytes: &[u8]) -> Result<Option<usize>, ()> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                Chunk::Size => match (b as char).to_digit(16) {
                    Some(d) => {
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(d)))
                            .ok_or(())?;
                        self.line += 1;
                    }
                    None if self.line == 0 => return Err(()),
                    None => {
                        self.state = Chunk::SizeRest;
                        continue;
                    }
                },
                Chunk::SizeRest => match b {
                    b'\n' => {
                        self.line = 0;
                        self.state = if self.size == 0 {
                            Chunk::Trailer
                        } else {
                            Chunk::Data
                        };
                    }
                    b'\r' | b';' | b' ' | b'\t' | b'=' | b'"' => {}
                    _ if b.is_ascii_graphic() => {}
                    _ => return Err(()),
                },
                Chunk::Data => {
                    let n = (self.size).min((bytes.len() - i) as u64) as usize;
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = Chunk::DataCr;
                    }
                    continue;
                }
                Chunk::DataCr if b == b'\r' => self.state = Chunk::DataLf,
                Chunk::DataCr | Chunk::DataLf if b == b'\n' => self.state = Chunk::Size,
                Chunk::DataCr | Chunk::DataLf => return Err(()),
                Chunk::Trailer => match b {
                    b'\n' if self.line == 0 => {
                        self.state = Chunk::Done;
                        return Ok(Some(i + 1));
                    }
                    b'\n' => self.line = 0,
                    b'\r' if self.line == 0 => {}
                    _ => self.line += 1,
                },
                Chunk::Done => return Ok(Some(i)),
            }
            i += 1;
        }
        Ok(None)
    }
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A status code's three digits (httparse guarantees `100..=999`).
fn itoa3(status: u16) -> [u8; 3] {
    [
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, head_request: bool) -> Result<(ResponseHead, String), Failure> {
        let mut out = Vec::new();
        match parse_response(raw.as_bytes(), head_request, &[("Sunset", b"x")], &mut out)? {
            Parsed::Final(h) => Ok((h, String::from_utf8(out).unwrap())),
            other => panic!("{raw:?}: {other:?}"),
        }
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
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
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
                parse_response(raw.as_bytes(), false, &[], &mut out).unwrap_err(),
                Failure::INVALID,
                "{raw:?}"
            );
        }
        let mut out = Vec::new();
        let hints = "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n";
        let both = format!("{hints}HTTP/1.1 200");
        assert!(
            matches!(parse_response(both.as_bytes(), false, &[], &mut out), Ok(Parsed::Interim(n)) if n == hints.len())
        );
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_RESPONSE_HEAD));
        assert!(parse_response(huge.as_bytes(), false, &[], &mut out).is_err());
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\nX: a", false, &[], &mut out),
            Ok(Parsed::Partial)
        ));
    }

    #[test]
    fn requests_carry_signposts_forwarding_headers_only() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(b"GET /old HTTP/1.1\r\nHost: acme.flexhosting.se\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.com\r\nConnection: keep-alive\r\nAuthorization: Bearer t\r\nAccept: */*\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        write_request(
            &mut out,
            &Outgoing {
                method: "GET",
                target: "/v1/x?a=1",
                authority: "api.flexhrm.com",
                client_headers: req.headers,
                original_host: Some(b"acme.flexhosting.se"),
                client_ip: Some("192.0.2.7".parse().unwrap()),
                scheme: "https",
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /v1/x?a=1 HTTP/1.1\r\nHost: api.flexhrm.com\r\nAuthorization: Bearer t\r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: acme.flexhosting.se\r\n\r\n"
        );
        let mut out = Vec::new();
        for bad in ["", "/a b", "/a\r\nX: y"] {
            let req = Outgoing {
                method: "GET",
                target: bad,
                authority: "a",
                client_headers: &[],
                original_host: None,
                client_ip: None,
                scheme: "http",
            };
            assert!(write_request(&mut out, &req).is_none(), "{bad:?}");
        }
    }

    /// Feeds `body` to a scanner in pieces of every size, so every state meets a boundary.
    fn scan_in_pieces(body: &[u8]) -> Result<Option<usize>, ()> {
        let mut result = Ok(None);
        for piece in 1..=body.len() {
            let mut s = ChunkScanner::default();
            let mut at = 0;
            result = Ok(None);
            for part in body.chunks(piece) {
                match s.scan(part)? {
                    Some(n) => {
                        result = Ok(Some(at + n));
                        break;
                    }
                    None => at += part.len(),
                }
            }
        }
        result
    }

    #[test]
    fn chunked_bodies_end_where_the_last_chunk_and_trailers_end() {
        let body = b"5\r\nhello\r\nA;ext=\"v\"\r\n0123456789\r\n0\r\n\r\nNEXT";
        assert_eq!(scan_in_pieces(body), Ok(Some(body.len() - 4)));
        let trailers = b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n";
        assert_eq!(scan_in_pieces(trailers), Ok(Some(trailers.len())));
        let bare_lf = b"3\nabc\n0\n\n";
        assert_eq!(scan_in_pieces(bare_lf), Ok(Some(bare_lf.len())));
        assert_eq!(scan_in_pieces(b"5\r\nhel"), Ok(None));
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloX\r\n",
            b"\r\n",
            b"fffffffffffffffff\r\n",
        ] {
            assert_eq!(
                scan_in_pieces(bad),
                Err(()),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
