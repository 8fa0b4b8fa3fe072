//! Every response Signpost writes itself — redirect, `410` page, reject, refusal, upstream
//! failure — decided once and rendered for either front door: as HTTP/1 bytes in one buffer
//! (the front door sends it with one write) or as a pingora response header for HTTP/2.
//!
//! Answers keep the connection alive unless they say otherwise: a redirect is the common case
//! and a new connection per redirect would cost more than the redirect.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::StatusCode;
use pingora::http::ResponseHeader;

use super::date;
use super::failure::UpstreamFailure;
use super::forward::SignalHeaders;
use super::hygiene::Refusal;
use super::write_header;

/// The go-ahead for a client that sent `Expect: 100-continue` (HTTP/1.1 only).
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A response Signpost writes itself.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    body: Body,
    location: Option<String>,
    signals: Option<Box<SignalHeaders>>,
    /// The connection ends after this answer (HTTP/1 says `Connection: close`).
    pub close: bool,
}

#[derive(Debug)]
enum Body {
    Empty,
    Html(Bytes),
    Text(String),
    /// An ACME challenge's key authorization.
    Octets(Bytes),
}

impl Answer {
    /// A redirect to `location`, with the tenant's signalling headers if it has any.
    pub fn redirect(
        status: StatusCode,
        location: String,
        signals: Option<Box<SignalHeaders>>,
    ) -> Self {
        Self {
            location: Some(location),
            signals,
            ..Self::empty(status)
        }
    }

    /// `410` with this HTML page.
    pub fn gone(page: Bytes) -> Self {
        Self {
            body: Body::Html(page),
            ..Self::empty(StatusCode::GONE)
        }
    }

    /// `200` with an ACME HTTP-01 challenge's key authorization (RFC 8555 §8.3).
    pub fn challenge(key_authorization: Bytes) -> Self {
        Self {
            body: Body::Octets(key_authorization),
            ..Self::empty(StatusCode::OK)
        }
    }

    fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: Body::Empty,
            location: None,
            signals: None,
            close: false,
        }
    }

    /// A `4xx` with a one-line text body saying why (`421 Misdirected Request: no tenant has
    /// this host`).
    pub fn reject(status: StatusCode, why: &str) -> Self {
        let text = format!(
            "{} {}: {why}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        Self {
            body: Body::Text(text),
            ..Self::empty(status)
        }
    }

    /// A request that is not acted on at all; the connection closes after it, since nothing
    /// after a doubtful head can be trusted to be framed as the client meant.
    pub fn refusal(refusal: Refusal) -> Self {
        Self {
            close: true,
            ..Self::reject(refusal.status, refusal.why)
        }
    }

    /// The answer to a forward that failed before any of the upstream's response was sent;
    /// `None` when the client is gone.
    pub fn upstream_failure(failure: UpstreamFailure) -> Option<Self> {
        let status = StatusCode::from_u16(failure.status()?).ok()?;
        Some(Self {
            close: !failure.keeps_client(),
            ..Self::empty(status)
        })
    }

    /// The length of the body Signpost writes with this answer (the access log's `bytes`).
    pub fn body_len(&self, head_only: bool) -> u64 {
        match self.content() {
            Some((_, body)) if !head_only => body.len() as u64,
            _ => 0,
        }
    }

    fn content(&self) -> Option<(&'static str, &[u8])> {
        match &self.body {
            Body::Empty => None,
            Body::Html(page) => Some(("text/html; charset=utf-8", page)),
            Body::Text(text) => Some(("text/plain; charset=utf-8", text.as_bytes())),
            Body::Octets(bytes) => Some(("application/octet-stream", bytes)),
        }
    }

    /// Appends the whole HTTP/1.1 response to `out`; `head_only` for a `HEAD` request.
    pub fn write_h1(&self, out: &mut Vec<u8>, head_only: bool) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        let content = self.content();
        match content {
            None => out.extend_from_slice(b"Content-Length: 0\r\n"),
            Some((content_type, body)) => {
                write_header(out, b"Content-Type", content_type.as_bytes());
                write_header(out, b"Content-Length", body.len().to_string().as_bytes());
                write_header(out, b"Cache-Control", b"no-store");
            }
        }
        if let Some(location) = &self.location {
            write_header(out, b"Location", location.as_bytes());
        }
        for (name, value) in self.signals.iter().flat_map(|s| s.entries()) {
            write_header(out, name.as_bytes(), value.as_bytes());
        }
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        date::with_date(|date| write_header(out, b"Date", date.as_bytes()));
        out.extend_from_slice(b"\r\n");
        if let (Some((_, body)), false) = (content, head_only) {
            out.extend_from_slice(body);
        }
    }

    /// The response head for pingora's HTTP/2 session; the body is [`Self::body`].
    pub fn response_header(&self) -> pingora::Result<ResponseHeader> {
        // HTTP/2 only: its header names are lower-case on the wire, so no case map is kept.
        let mut header = ResponseHeader::build_no_case(self.status, Some(6))?;
        match self.content() {
            None => header.insert_header(CONTENT_LENGTH, "0")?,
            Some((content_type, body)) => {
                header.insert_header(CONTENT_TYPE, content_type)?;
                header.insert_header(CONTENT_LENGTH, body.len())?;
                header.insert_header(CACHE_CONTROL, "no-store")?;
            }
        }
        if let Some(location) = &self.location {
            header.insert_header(LOCATION, location.as_str())?;
        }
        if let Some(signals) = &self.signals {
            signals.apply(&mut header)?;
        }
        // No `Date`: pingora's HTTP/2 session sets it on every response it writes.
        Ok(header)
    }

    /// The body, if the answer has one.
    pub fn body(&self) -> Option<Bytes> {
        match &self.body {
            Body::Empty => None,
            Body::Html(page) | Body::Octets(page) => Some(page.clone()),
            Body::Text(text) => Some(Bytes::copy_from_slice(text.as_bytes())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_says_why_and_closes() {
        let mut out = Vec::new();
        Answer::refusal(Refusal::HEAD_TOO_LARGE).write_h1(&mut out, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 76\r\nCache-Control: no-store\r\nConnection: close\r\nDate: "), "{text}");
        assert!(text.ends_with("\r\n\r\n431 Request Header Fields Too Large: the request head is larger than 64 KiB\n"), "{text}");
        let mut out = Vec::new();
        Answer::refusal(Refusal::HEAD_TOO_LARGE).write_h1(&mut out, true);
        assert!(String::from_utf8(out).unwrap().ends_with("\r\n\r\n"));
    }

    #[test]
    fn upstream_failures_are_bodiless_and_keep_the_connection_unless_the_client_is_gone() {
        let a = Answer::upstream_failure(UpstreamFailure::Timeout).unwrap();
        assert_eq!((a.status.as_u16(), a.close), (504, false));
        let mut out = Vec::new();
        a.write_h1(&mut out, false);
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("HTTP/1.1 504 Gateway Timeout\r\nContent-Length: 0\r\nDate: "));
        assert!(Answer::upstream_failure(UpstreamFailure::ClientGone).is_none());
        let h2 = Answer::upstream_failure(UpstreamFailure::InvalidResponse)
            .unwrap()
            .response_header()
            .unwrap();
        assert_eq!(h2.status.as_u16(), 502);
        assert_eq!(h2.headers.get("content-length").unwrap(), "0");
    }
}
