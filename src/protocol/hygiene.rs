//! What a request head must be before Signpost acts on it, for HTTP/1 and HTTP/2 alike.
//!
//! Two parsers that disagree on where a request ends are how requests are smuggled past a
//! proxy. So the framing headers are checked here, once, and a doubtful head is refused (and
//! its connection closed) rather than repaired, as nginx does: `Transfer-Encoding` together
//! with `Content-Length`, a `Content-Length` list or a repeated one, `Transfer-Encoding` on
//! HTTP/1.0 or with any coding but `chunked`.

use std::time::Duration;

use http::{StatusCode, Version};

/// A request head larger than this is refused with `431` (nginx allows 4 × 8 KiB by default;
/// single-sign-on cookies make heads of 10–20 KiB common enough to leave room). HTTP/2's
/// header-list limit is set to the same size.
pub const MAX_HEAD: usize = 64 * 1024;

/// How long each part of a request may take, from `server:` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// A connection's first request head, TLS handshake included, must arrive whole within
    /// this of the connection's start; a later head within this of its first byte (nginx's
    /// `client_header_timeout`, which also bounds its TLS handshakes).
    pub header: Duration,
    /// A request body must arrive whole within this of the end of its head.
    pub body: Duration,
    /// How long a kept-alive connection may wait for its next request (nginx's
    /// `keepalive_timeout`); HTTP/2 connections without an open stream as well.
    pub idle: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            header: Duration::from_secs(10),
            body: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

/// A request Signpost will not act on: the status it is answered with and why (for the
/// answer's body and the log). The connection is closed after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub why: &'static str,
}

impl Refusal {
    pub const fn bad(why: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            why,
        }
    }

    pub const HEAD_TOO_LARGE: Self = Self {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        why: "the request head is larger than 64 KiB",
    };
}

/// How a request's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

impl BodyFraming {
    pub fn is_none(self) -> bool {
        matches!(self, Self::None | Self::Length(0))
    }
}

/// Checks a request head's framing headers and says how its body is delimited. `headers` are
/// (name, value) pairs as received, names in any case.
pub fn body_framing<'h>(
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
    version: Version,
) -> Result<BodyFraming, Refusal> {
    let mut length = None;
    let mut chunked = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"content-length") {
            if length.is_some() {
                return Err(Refusal::bad("more than one Content-Length"));
            }
            length = Some(
                parse_length(value)
                    .ok_or(Refusal::bad("Content-Length is not one decimal number"))?,
            );
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked {
                return Err(Refusal::bad("more than one Transfer-Encoding"));
            }
            if version != Version::HTTP_11 {
                return Err(Refusal::bad("Transfer-Encoding is only valid in HTTP/1.1"));
            }
            if !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Refusal::bad("a Transfer-Encoding other than chunked"));
            }
            chunked = true;
        }
    }
    match (chunked, length) {
        (true, Some(_)) => Err(Refusal::bad("both Transfer-Encoding and Content-Length")),
        (true, None) => Ok(BodyFraming::Chunked),
        (false, Some(n)) => Ok(BodyFraming::Length(n)),
        (false, None) => Ok(BodyFraming::None),
    }
}

/// A `Content-Length` value: decimal digits only (no list, sign or inner space), at most 19 of
/// them so it fits a `u64`.
pub fn parse_length(value: &[u8]) -> Option<u64> {
    let v = value.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(headers: &[(&str, &str)], version: Version) -> Result<BodyFraming, &'static str> {
        body_framing(
            headers.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            version,
        )
        .map_err(|r| r.why)
    }

    #[test]
    fn one_length_or_one_chunked_coding() {
        let v11 = Version::HTTP_11;
        assert_eq!(framing(&[], v11), Ok(BodyFraming::None));
        assert_eq!(
            framing(&[("Content-Length", " 5 ")], v11),
            Ok(BodyFraming::Length(5))
        );
        assert_eq!(
            framing(&[("transfer-encoding", "Chunked")], v11),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            framing(&[("Content-Length", "0")], Version::HTTP_2),
            Ok(BodyFraming::Length(0))
        );
    }

    #[test]
    fn doubtful_framing_is_refused() {
        let v11 = Version::HTTP_11;
        for (headers, version, why) in [
            (
                &[("Content-Length", "5, 5")][..],
                v11,
                "Content-Length is not one decimal number",
            ),
            (
                &[("Content-Length", "5"), ("content-length", "5")],
                v11,
                "more than one Content-Length",
            ),
            (
                &[("Content-Length", "5"), ("content-length", "5")],
                Version::HTTP_2,
                "more than one Content-Length",
            ),
            (
                &[("Content-Length", "-1")],
                v11,
                "Content-Length is not one decimal number",
            ),
            (
                &[("Content-Length", "+1")],
                v11,
                "Content-Length is not one decimal number",
            ),
            (
                &[("Content-Length", "99999999999999999999")],
                v11,
                "Content-Length is not one decimal number",
            ),
            (
                &[("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
                v11,
                "both Transfer-Encoding and Content-Length",
            ),
            (
                &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
                v11,
                "both Transfer-Encoding and Content-Length",
            ),
            (
                &[("Transfer-Encoding", "chunked")],
                Version::HTTP_10,
                "Transfer-Encoding is only valid in HTTP/1.1",
            ),
            (
                &[("Transfer-Encoding", "gzip, chunked")],
                v11,
                "a Transfer-Encoding other than chunked",
            ),
            (
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Transfer-Encoding", "chunked"),
                ],
                v11,
                "more than one Transfer-Encoding",
            ),
        ] {
            assert_eq!(
                framing(headers, version),
                Err(why),
                "{headers:?} {version:?}"
            );
        }
    }
}
