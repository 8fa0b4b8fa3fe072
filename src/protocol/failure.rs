//! One vocabulary for a forward that failed, used by both front doors for the client's answer,
//! the `signpost_upstream_errors_total{reason}` label and the access log.

use pingora::{ErrorSource, ErrorType};

/// Why a forward failed. The set is small and fixed, so the metric label stays bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The upstream's name has not resolved yet.
    NoAddress,
    ConnectRefused,
    ConnectTimeout,
    /// The TLS handshake with the upstream failed (untrusted or wrong-name certificate…).
    Tls,
    /// No response (or no more of it) within the upstream's `read_timeout`.
    Timeout,
    /// The upstream closed or reset the connection before its response was complete.
    Closed,
    /// The upstream's response could not be read as HTTP, or its framing was ambiguous.
    InvalidResponse,
    /// The client went away (closed, reset, or cancelled its HTTP/2 stream) mid-forward.
    ClientGone,
    Other,
}

impl UpstreamFailure {
    /// The status the client is answered with when no response has begun: `504` for timeouts,
    /// `502` otherwise. `None` when there is nobody to answer.
    pub fn status(self) -> Option<u16> {
        match self {
            Self::ConnectTimeout | Self::Timeout => Some(504),
            Self::ClientGone => None,
            _ => Some(502),
        }
    }

    /// The `reason` label of `signpost_upstream_errors_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoAddress => "no_address",
            Self::ConnectRefused => "connect_refused",
            Self::ConnectTimeout => "connect_timeout",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Closed => "connection",
            Self::InvalidResponse => "invalid_response",
            Self::ClientGone => "client_gone",
            Self::Other => "other",
        }
    }

    /// Whether the client's connection may carry its next request after this failure's answer:
    /// yes when the upstream failed before any of its response reached the client (the answer
    /// is then complete and well framed, as nginx keeps it); a response cut short, or a client
    /// already gone, ends the connection.
    pub fn keeps_client(self) -> bool {
        self != Self::ClientGone
    }

    /// Classifies one of pingora's errors (its connector's, or its HTTP/2 proxy's).
    pub fn of(e: &pingora::Error) -> Self {
        use ErrorType::*;
        if e.esource() == &ErrorSource::Downstream
            && matches!(
                e.etype(),
                ConnectionClosed | ReadError | WriteError | H2Error
            )
        {
            return Self::ClientGone;
        }
        match e.etype() {
            ConnectNoRoute => Self::NoAddress,
            ConnectRefused => Self::ConnectRefused,
            ConnectTimedout => Self::ConnectTimeout,
            TLSHandshakeFailure | InvalidCert | TLSHandshakeTimedout | HandshakeError => Self::Tls,
            ReadTimedout | WriteTimedout => Self::Timeout,
            ConnectionClosed | ReadError | WriteError | ConnectError | SocketError => Self::Closed,
            InvalidHTTPHeader | H1Error | H2Error | InvalidH2 => Self::InvalidResponse,
            _ => Self::Other,
        }
    }
}
