//! What crosses to an upstream with a forwarded request, and what Signpost adds to its
//! response: one function for each, called by both front doors.
//!
//! The request keeps the client's end-to-end headers (`Authorization` included) and loses
//! what describes only the hop to Signpost: hop-by-hop headers and those the `Connection`
//! header names, `Expect` (Signpost answers it itself), names with `_` (nginx's
//! `underscores_in_headers off`: `Transfer_Encoding` is `Transfer-Encoding` to some CGI-style
//! origins), and `Forwarded`/`X-Forwarded-*`, which only Signpost may vouch for. Then `Host` is
//! the upstream's and `X-Forwarded-For`/`-Proto`/`-Host` are set from the connection.

use std::net::IpAddr;

use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};

use super::{write_header, Scheme};

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), in either direction.
/// Every header of every forward passes here, so names are told apart by length first.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let is = |other: &[u8]| name.eq_ignore_ascii_case(other);
    match name.len() {
        2 => is(b"te"),
        7 => is(b"trailer") || is(b"upgrade"),
        10 => is(b"connection") || is(b"keep-alive"),
        16 => is(b"proxy-connection"),
        17 => is(b"transfer-encoding"),
        _ => false,
    }
}

/// What Signpost tells the upstream about the request, beside the client's own headers.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    /// The upstream's `Host`.
    pub authority: &'a str,
    /// `X-Forwarded-For`.
    pub client_ip: Option<IpAddr>,
    /// `X-Forwarded-Proto`.
    pub scheme: Scheme,
    /// What the client asked for (absolute-form authority, else its `Host`): `X-Forwarded-Host`.
    pub original_host: Option<&'a [u8]>,
    /// The client asked for a WebSocket (`Upgrade: websocket`): the upgrade is passed on.
    pub websocket: bool,
}

/// Receives the forwarded request's headers, in order.
pub trait HeadSink {
    fn header(&mut self, name: &[u8], value: &[u8]);
}

/// The forwarded request's headers: the client's that may cross, then Signpost's own.
/// `client` is iterated twice (once for the names `Connection` lists).
pub fn forwarded_headers<'h, I>(client: I, hop: &Hop<'_>, sink: &mut impl HeadSink)
where
    I: Iterator<Item = (&'h [u8], &'h [u8])> + Clone,
{
    let has_connection = client
        .clone()
        .any(|(n, _)| n.eq_ignore_ascii_case(b"connection"));
    let listed = |name: &[u8]| {
        has_connection
            && client
                .clone()
                .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
                .flat_map(|(_, v)| v.split(|&b| b == b','))
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(name))
    };
    for (name, value) in client.clone() {
        if crosses(name) && !listed(name) {
            sink.header(name, value);
        }
    }
    sink.header(b"Host", hop.authority.as_bytes());
    if hop.websocket {
        sink.header(b"Connection", b"upgrade");
        sink.header(b"Upgrade", b"websocket");
    }
    if let Some(ip) = hop.client_ip {
        sink.header(b"X-Forwarded-For", address_text(ip, &mut [0; 45]));
    }
    sink.header(b"X-Forwarded-Proto", hop.scheme.as_str().as_bytes());
    if let Some(host) = hop.original_host {
        sink.header(b"X-Forwarded-Host", host);
    }
}

/// An address as `Display` writes it (`X-Forwarded-For`, the access log's client), in `buf`:
/// IPv4, nearly every client, without the formatting machinery, which cost 1,000 instructions
/// per forward. 45 bytes hold the longest IPv6 text.
pub fn address_text(ip: IpAddr, buf: &mut [u8; 45]) -> &[u8] {
    let mut len = 0;
    let mut push = |b: u8| {
        buf[len] = b;
        len += 1;
    };
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    push(b'.');
                }
                if o >= 100 {
                    push(b'0' + o / 100);
                }
                if o >= 10 {
                    push(b'0' + o / 10 % 10);
                }
                push(b'0' + o % 10);
            }
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{ip}");
            len = cursor.position() as usize;
        }
    }
    &buf[..len]
}

/// Whether a client header (by name) may cross to the upstream, before `Connection` is read.
fn crosses(name: &[u8]) -> bool {
    !(is_hop_by_hop(name)
        || name.eq_ignore_ascii_case(b"host")
        || name.eq_ignore_ascii_case(b"expect")
        || name.contains(&b'_')
        || is_forwarding_claim(name))
}

/// `Forwarded` and `X-Forwarded-*`: what a client claims about earlier hops. Signpost is the
/// first hop it trusts, so these are dropped and its own `X-Forwarded-*` written instead.
pub fn is_forwarding_claim(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"forwarded")
        || name.len() > 12 && name[..12].eq_ignore_ascii_case(b"x-forwarded-")
}

/// Serialises headers for an HTTP/1 request head.
impl HeadSink for Vec<u8> {
    fn header(&mut self, name: &[u8], value: &[u8]) {
        write_header(self, name, value);
    }
}

/// Fills a pingora request head (the HTTP/2 door's upstream request).
impl HeadSink for RequestHeader {
    fn header(&mut self, name: &[u8], value: &[u8]) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value),
        ) {
            let _ = self.append_header(name, value);
        }
    }
}

/// The tenant's signalling headers on a forwarded response or a redirect (RFC 9745
/// `Deprecation`, RFC 8594 `Sunset`, and `Link` to the new URL), each replacing the upstream's
/// of the same name. Owned copies are cheap: `HeaderValue`s share their bytes.
#[derive(Debug, Clone)]
pub struct SignalHeaders {
    deprecation: Option<HeaderValue>,
    sunset: Option<HeaderValue>,
    link: Option<HeaderValue>,
}

impl SignalHeaders {
    /// `None` when there is no date to signal (boxed: most tenants have none, and answers
    /// stay small to move).
    pub fn new(
        deprecation: Option<&HeaderValue>,
        sunset: Option<&HeaderValue>,
        successor: &str,
    ) -> Option<Box<Self>> {
        (deprecation.is_some() || sunset.is_some()).then(|| {
            Box::new(Self {
                deprecation: deprecation.cloned(),
                sunset: sunset.cloned(),
                link: HeaderValue::try_from(format!("<{successor}>; rel=\"successor-version\""))
                    .ok(),
            })
        })
    }

    /// The headers that are set.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &HeaderValue)> {
        [
            ("Deprecation", &self.deprecation),
            ("Sunset", &self.sunset),
            ("Link", &self.link),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
    }

    /// Sets them on a pingora response head, replacing any of the same names.
    pub fn apply(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        for (name, value) in self.entries() {
            resp.insert_header(name, value.clone())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(client: &[(&str, &str)], websocket: bool) -> String {
        let mut out = Vec::new();
        let hop = Hop {
            authority: "api.flexhrm.com",
            client_ip: Some("192.0.2.7".parse().unwrap()),
            scheme: Scheme::Https,
            original_host: Some(b"acme.flexhosting.se"),
            websocket,
        };
        forwarded_headers(
            client.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &hop,
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn only_end_to_end_headers_cross_and_signpost_vouches_for_the_client() {
        let out = forwarded(
            &[
                ("Host", "acme.flexhosting.se"),
                ("Authorization", "Bearer t"),
                ("Connection", "keep-alive, X-Hop"),
                ("X-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Transfer_Encoding", "chunked"),
                ("X_Forwarded_For", "6.6.6.6"),
                ("X-Forwarded-For", "6.6.6.6"),
                ("Forwarded", "for=6.6.6.6"),
                ("Expect", "100-continue"),
                ("Upgrade", "h2c"),
                ("TE", "trailers"),
                ("Content-Length", "5"),
                ("Accept", "*/*"),
            ],
            false,
        );
        assert_eq!(
            out,
            "Authorization: Bearer t\r\nContent-Length: 5\r\nAccept: */*\r\nHost: api.flexhrm.com\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: acme.flexhosting.se\r\n"
        );
    }

    #[test]
    fn a_websocket_upgrade_is_passed_on() {
        let out = forwarded(
            &[
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ],
            true,
        );
        assert_eq!(
            out,
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nHost: api.flexhrm.com\r\nConnection: upgrade\r\nUpgrade: websocket\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: acme.flexhosting.se\r\n"
        );
    }
}
