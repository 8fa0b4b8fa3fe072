//! Raw HTTP/1 on a plain socket, for what an HTTP client library would not send or would hide:
//! malformed heads, smuggling shapes, pipelining, trickled bytes, and whether (and how) the
//! server closed the connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response as read off the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// The head, status line included, as text.
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The response said `Connection: close`.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// How a connection ended, as seen by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Still open when the read window ended.
    Open,
    /// Closed with a FIN.
    Closed,
    /// Closed with a reset, which may destroy a response before the client reads it.
    Reset,
}

/// A raw client connection.
pub struct Raw {
    tcp: TcpStream,
    /// Read and not yet consumed.
    pending: Vec<u8>,
    end: End,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            tcp: TcpStream::connect(addr).await.unwrap(),
            pending: Vec::new(),
            end: End::Open,
        }
    }

    /// Sends bytes; `false` if the server had closed the connection.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).await.is_ok()
    }

    /// Reads the next whole response (a `Content-Length` or chunked body, or none for `1xx`,
    /// `204` and `304`, or one that ends with the connection); `None` if the connection ended,
    /// or `within` passed, before one was whole. `head_request` for the answer to a `HEAD`.
    pub async fn response(&mut self, within: Duration, head_request: bool) -> Option<Response> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some((response, used)) =
                parse(&self.pending, head_request, self.end != End::Open)
            {
                self.pending.drain(..used);
                return Some(response);
            }
            if self.end != End::Open || !self.fill(deadline).await {
                return None;
            }
        }
    }

    /// Reads every response until the connection ends or `within` passes.
    pub async fn responses(&mut self, within: Duration) -> Vec<Response> {
        let mut all = Vec::new();
        while let Some(response) = self.response(within, false).await {
            all.push(response);
        }
        all
    }

    /// Reads until the server closes the connection or `within` passes; how it ended.
    pub async fn end(&mut self, within: Duration) -> End {
        let deadline = tokio::time::Instant::now() + within;
        while self.end == End::Open && self.fill(deadline).await {}
        self.end
    }

    /// Everything read and not consumed by [`Self::response`], as text (for messages).
    pub fn unread(&self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    /// One read; `false` when the window ended (the connection stays open) or it closed.
    async fn fill(&mut self, deadline: tokio::time::Instant) -> bool {
        let mut piece = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, self.tcp.read(&mut piece)).await {
            Ok(Ok(0)) => {
                self.end = End::Closed;
                false
            }
            Ok(Err(_)) => {
                self.end = End::Reset;
                false
            }
            Ok(Ok(n)) => {
                self.pending.extend_from_slice(&piece[..n]);
                true
            }
            Err(_) => false,
        }
    }

    pub fn into_inner(self) -> TcpStream {
        self.tcp
    }
}

/// Sends `request` on a new connection and reads the answers until the server closes the
/// connection or `window` passes: (responses, how the connection ended).
pub async fn exchange(addr: SocketAddr, request: &[u8], window: Duration) -> (Vec<Response>, End) {
    let mut raw = Raw::connect(addr).await;
    raw.send(request).await;
    let responses = raw.responses(window).await;
    let end = raw.end(window).await;
    (responses, end)
}

/// [`exchange`] for code that cannot await: one request on a new connection, its first
/// response (read to its end, or to the connection's), blocking for at most `within`.
pub fn blocking_exchange(addr: SocketAddr, request: &[u8], within: Duration) -> Option<Response> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, within).ok()?;
    tcp.set_read_timeout(Some(within)).ok()?;
    tcp.write_all(request).ok()?;
    let mut read = Vec::new();
    loop {
        let mut piece = [0u8; 16 * 1024];
        let n = tcp.read(&mut piece).unwrap_or(0);
        read.extend_from_slice(&piece[..n]);
        if let Some((response, _)) = parse(&read, false, n == 0) {
            return Some(response);
        }
        if n == 0 {
            return None;
        }
    }
}

/// One whole response at the start of `bytes`, and how many bytes it took.
fn parse(bytes: &[u8], head_request: bool, closed: bool) -> Option<(Response, usize)> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let mut response = Response {
        status,
        head,
        body: Vec::new(),
    };
    let rest = &bytes[head_end..];
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Some((response, head_end));
    }
    if response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        let (body, used) = dechunk(rest)?;
        response.body = body;
        return Some((response, head_end + used));
    }
    match content_length(&response.head) {
        Some(n) if rest.len() >= n => {
            response.body = rest[..n].to_vec();
            Some((response, head_end + n))
        }
        Some(_) => None,
        // Until the connection ends.
        None if closed => {
            response.body = rest.to_vec();
            Some((response, bytes.len()))
        }
        None => None,
    }
}

/// A whole chunked body at the start of `bytes`: (the data, bytes used).
fn dechunk(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut data = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + bytes[at..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&bytes[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // Trailers, up to an empty line.
            let end = at + bytes[at..].windows(2).position(|w| w == b"\r\n")?;
            let mut line_start = at;
            let mut line_end = end;
            while line_end != line_start {
                line_start = line_end + 2;
                line_end =
                    line_start + bytes[line_start..].windows(2).position(|w| w == b"\r\n")?;
            }
            return Some((data, line_end + 2));
        }
        if bytes.len() < at + size + 2 {
            return None;
        }
        data.extend_from_slice(&bytes[at..at + size]);
        at += size + 2;
    }
}

/// The `Content-Length` in an HTTP head (`None` when absent or not a number).
pub fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

#[test]
fn responses_are_read_whole_whatever_their_framing() {
    let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: y\r\n\r\nHTTP/1.1 204 No\r\n\r\n";
    let (first, used) = parse(bytes, false, false).unwrap();
    assert_eq!((first.status, first.body.as_slice()), (200, &b"ok"[..]));
    let (second, used2) = parse(&bytes[used..], false, false).unwrap();
    assert_eq!(second.body, b"abc");
    let (third, _) = parse(&bytes[used + used2..], false, false).unwrap();
    assert_eq!(third.status, 204);
    assert!(parse(b"HTTP/1.1 200 OK\r\n\r\nuntil close", false, false).is_none());
    assert_eq!(
        parse(b"HTTP/1.1 200 OK\r\n\r\nuntil close", false, true)
            .unwrap()
            .0
            .body,
        b"until close"
    );
}
