//! The HTTP vocabulary both front doors share: what Signpost requires of a request, what it
//! answers itself, what it tells an upstream, and how a forward can fail.
//!
//! Signpost has two front doors: its own HTTP/1 server ([`crate::front`]) and pingora's HTTP/2
//! server ([`crate::proxy`]). They move bytes differently, but every rule lives here once and
//! both call it, so a request is held to the same rules whichever door it came through:
//!
//! - [`hygiene`]: the checks on a request head (framing, size, deadlines); [`host`] and
//!   [`path`]: its host and its path as routing reads them (dot segments resolved);
//! - [`answer`]: every response Signpost writes itself (redirect, `410`, reject, upstream
//!   failure), rendered for either door;
//! - [`forward`]: which of a client's headers cross to an upstream, what Signpost adds, and the
//!   signalling headers added to the upstream's response;
//! - [`failure`]: every way a forward can fail, with its status, metric label and whether the
//!   client's connection survives;
//! - [`chunked`]: where a chunked body ends, for request and response bodies alike;
//! - [`headers`]: the request headers routing, the census and the log read, from either door.

pub mod answer;
pub mod chunked;
pub mod date;
pub mod failure;
pub mod forward;
pub mod headers;
pub mod host;
pub mod hygiene;
pub mod path;

/// How the request reached Signpost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Appends one HTTP/1 header line.
#[inline]
pub(crate) fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}
