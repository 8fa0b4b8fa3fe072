//! The HTTP vocabulary both front doors share: what Signpost requires of a request, what it
//! answers itself, what it tells an upstream, and how a forward can fail.
//!
//! Signpost has two front doors: its own HTTP/1 server ([`crate::front`]) and pingora's HTTP/2
//! server ([`crate::proxy`]). They move bytes differently, but every rule lives here once and
//! both call it, so a request is held to the same rules whichever door it came through:
//!
//! - [`hygiene`]: the checks on a request head (framing, size, deadlines), and [`path`]: its
//!   path with dot segments resolved, before anything is routed or forwarded;
//! - [`answer`]: every response Signpost writes itself (redirect, `410`, reject, upstream
//!   failure), rendered for either door;
//! - [`forward`]: which of a client's headers cross to an upstream, what Signpost adds, and the
//!   signalling headers added to the upstream's response;
//! - [`failure`]: every way a forward can fail, with its status, metric label and whether the
//!   client's connection survives;
//! - [`chunked`]: where a chunked body ends, for request and response bodies alike.

pub mod answer;
pub mod chunked;
pub mod failure;
pub mod forward;
pub mod hygiene;
pub mod path;
