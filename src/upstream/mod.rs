//! Where `forward` sends requests: an upstream's origin, trust roots, timeouts and address.
//!
//! pingora's `HttpPeer::new` resolves a host name with a blocking lookup on the calling thread,
//! and panics when it fails. So the request path only ever hands it a `SocketAddr`: either the
//! configured `address`, or the last result of [`crate::resolver`], which re-resolves names in
//! the background. The resolved address is shared between snapshots so a reload does not
//! start from an empty cache.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};

pub mod http1;
pub mod pool;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A forward target.
#[derive(Debug)]
pub struct Upstream {
    pub name: Box<str>,
    pub tls: bool,
    /// Host name: SNI and certificate name.
    pub host: Box<str>,
    pub port: u16,
    /// `Host` header value: the host, with the port unless it is the scheme's default.
    pub authority: Box<str>,
    /// `https://api.flexhrm.com`: what `explain` prints before the path.
    pub origin: Box<str>,
    /// Fixed address from the config, if any.
    pub address: Option<SocketAddr>,
    /// Last address the background resolver found for `host:port`.
    pub resolved: Arc<ArcSwapOption<SocketAddr>>,
    /// System roots plus the configured extra CA, when one is configured.
    pub ca: Option<Arc<CaType>>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// Why an upstream definition is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream url `{0}` must be `http://` or `https://`, a host and an optional port, with no path")]
    BadUrl(String),
    #[error("cannot read CA file {0}: {1}")]
    CaUnreadable(String, String),
    #[error("CA file {0} holds no valid certificate")]
    CaEmpty(String),
}

/// Parsed `url:`.
pub struct Origin {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

pub fn parse_origin(url: &str) -> Result<Origin, UpstreamError> {
    let bad = || UpstreamError::BadUrl(url.to_owned());
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad()),
    };
    let authority = uri.authority().ok_or_else(bad)?;
    if authority.as_str().contains('@') || !matches!(uri.path(), "" | "/") || uri.query().is_some()
    {
        return Err(bad());
    }
    let host = authority.host().to_ascii_lowercase();
    if !crate::protocol::host::valid_name(&host) {
        return Err(bad());
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    Ok(Origin { tls, host, port })
}

/// Loads the PEM certificates of `path`, adding them to the system roots.
pub fn load_ca(path: &Path) -> Result<Arc<CaType>, UpstreamError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path)
        .map_err(|e| UpstreamError::CaUnreadable(shown.clone(), e.to_string()))?;
    let extra: Vec<Vec<u8>> = rustls_pemfile::certs(&mut pem.as_slice())
        .filter_map(Result::ok)
        .map(|der| der.to_vec())
        .filter(|der| is_x509(der))
        .collect();
    if extra.is_empty() {
        return Err(UpstreamError::CaEmpty(shown));
    }
    let system = rustls_native_certs::load_native_certs()
        .map(|certs| {
            certs
                .into_iter()
                .map(|c| c.to_vec())
                .filter(|der| is_x509(der))
                .collect()
        })
        .unwrap_or_else(|_| Vec::new());
    let all: Vec<WrappedX509> = system
        .into_iter()
        .chain(extra)
        .map(|der| WrappedX509::new(der, parse_x509))
        .collect();
    Ok(Arc::from(all.into_boxed_slice()))
}

/// pingora's `parse_x509` panics on bad DER, so everything is checked first.
fn is_x509(der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok()
}

impl Upstream {
    /// The address to connect to now, if one is known.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.address
            .or_else(|| self.resolved.load().as_deref().copied())
    }

    /// A pingora peer for one request, or `None` while the name is unresolved.
    pub fn peer(&self) -> Option<HttpPeer> {
        self.addr().map(|addr| self.peer_at(addr))
    }

    /// A pingora peer at a known address: what connections are made with.
    pub fn peer_at(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, self.tls, self.host.to_string());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.ca = self.ca.clone();
        peer
    }

    /// `host:port` as the resolver looks it up.
    pub fn lookup_name(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let o = parse_origin("https://API.flexhrm.com").unwrap();
        assert!(o.tls);
        assert_eq!((o.host.as_str(), o.port), ("api.flexhrm.com", 443));
        let o = parse_origin("http://127.0.0.1:8080/").unwrap();
        assert_eq!((o.tls, o.host.as_str(), o.port), (false, "127.0.0.1", 8080));
        for bad in [
            "ftp://x",
            "https://x/path",
            "https://u@x",
            "x.com",
            "https://x?q",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
