//! What a client offered in its ClientHello, read before the TLS handshake and put back for it.
//!
//! A client whose handshake fails never sends an HTTP request, so without this it would leave
//! no trace: an old .NET Framework or Java client offering only TLS 1.0, one that sends no SNI,
//! one asking for a name no certificate covers. These are exactly the integrations a migration
//! breaks, so a failed handshake is counted (`signpost_tls_handshake_failures_total`) and
//! becomes a census row of kind `tls`. rustls' certificate resolver cannot see them: it runs
//! only for handshakes that get as far as choosing a certificate, and a TLS 1.0 ClientHello is
//! refused before that. So the first record is read here, kept as bytes (parsed only when the
//! handshake fails: the successful path pays one copy of a few hundred bytes), and put back in
//! front of the connection ([`super::primed`]) for pingora's acceptor to read as if nothing had
//! happened.

use std::borrow::Cow;

use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_plaintext, TlsExtension, TlsMessage,
    TlsMessageHandshake,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use crate::table::Table;
use crate::tls::Certificates;

/// TLS record header: type, version, length.
const RECORD_HEADER: usize = 5;
/// The largest plaintext record (RFC 8446, 5.1).
const MAX_RECORD: usize = 1 << 14;
const HANDSHAKE: u8 = 22;
const TLS_1_2: u16 = 0x0303;

/// Reads the client's first TLS record by `deadline`: the bytes read (empty when the client
/// sent nothing in time), which the caller puts back in front of the stream.
pub async fn read_first_record<S: AsyncRead + Unpin>(stream: &mut S, deadline: Instant) -> Vec<u8> {
    let mut first = Vec::with_capacity(1024);
    loop {
        let want = match first.get(..RECORD_HEADER) {
            Some([HANDSHAKE, _, _, hi, lo]) => {
                RECORD_HEADER + usize::from(u16::from_be_bytes([*hi, *lo])).min(MAX_RECORD)
            }
            Some(_) => break, // not a TLS handshake: the acceptor will say so
            None => RECORD_HEADER,
        };
        if first.len() >= want {
            break;
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut first)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
    }
    first
}

/// What a ClientHello offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The SNI name, lower-case, without a trailing dot.
    pub sni: Option<String>,
    /// The highest protocol version offered (`supported_versions`, else the legacy field).
    pub highest: u16,
    pub suites: Vec<u16>,
}

impl Hello {
    /// The ClientHello in `first`, when that is one.
    pub fn parse(first: &[u8]) -> Option<Hello> {
        let (_, record) = parse_tls_plaintext(first).ok()?;
        let hello = record.msg.into_iter().find_map(|m| match m {
            TlsMessage::Handshake(TlsMessageHandshake::ClientHello(h)) => Some(h),
            _ => None,
        })?;
        let extensions = hello
            .ext
            .and_then(|e| parse_tls_client_hello_extensions(e).ok())
            .map(|(_, e)| e)
            .unwrap_or_default();
        let mut sni = None;
        let mut versions = None;
        for extension in extensions {
            match extension {
                TlsExtension::SNI(names) => {
                    sni = names
                        .iter()
                        .find_map(|(_, name)| std::str::from_utf8(name).ok())
                        .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
                }
                TlsExtension::SupportedVersions(offered) => {
                    versions = offered.iter().map(|v| v.0).filter(|v| !is_grease(*v)).max();
                }
                _ => {}
            }
        }
        Some(Hello {
            sni,
            highest: versions.unwrap_or(hello.version.0),
            suites: hello.ciphers.iter().map(|c| c.0).collect(),
        })
    }

    /// `TLS 1.0` and so on.
    pub fn version_name(&self) -> Cow<'static, str> {
        match self.highest {
            0x0300 => "SSL 3.0".into(),
            0x0301 => "TLS 1.0".into(),
            0x0302 => "TLS 1.1".into(),
            0x0303 => "TLS 1.2".into(),
            0x0304 => "TLS 1.3".into(),
            other => format!("version 0x{other:04x}").into(),
        }
    }
}

/// RFC 8701's reserved values, which clients sprinkle in to keep servers tolerant.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

/// Why a handshake failed, from a small fixed set (the metric's `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The client offers nothing newer than TLS 1.1; rustls speaks 1.2 and 1.3 only.
    ProtocolVersion,
    /// No cipher suite the client offers is one Signpost speaks.
    NoSharedCipher,
    /// No SNI: the default certificate was served, and the client refused it.
    NoSni,
    /// A name that is no host in the table.
    UnknownSni,
    /// A host in the table that no certificate covers.
    NoCertificate,
    Other,
}

impl Failure {
    pub fn label(self) -> &'static str {
        match self {
            Failure::ProtocolVersion => "protocol_version",
            Failure::NoSharedCipher => "no_shared_cipher",
            Failure::NoSni => "no_sni",
            Failure::UnknownSni => "unknown_sni",
            Failure::NoCertificate => "no_certificate",
            Failure::Other => "other",
        }
    }
}

/// The tenant a failed handshake was for (its id; `_unknown` for a name not in the table,
/// `_none` without SNI) and why it failed, judged from what the client offered: the first
/// thing in this order that rules the handshake out.
pub fn diagnose(
    hello: Option<&Hello>,
    table: &Table,
    certs: &Certificates,
    suites: &[u16],
) -> (String, Failure) {
    let Some(hello) = hello else {
        return ("_none".to_owned(), Failure::Other);
    };
    let tenant = hello.sni.as_deref().map(|name| table.tenant_for(name));
    let label = match tenant {
        None => "_none".to_owned(),
        Some(None) => "_unknown".to_owned(),
        Some(Some(t)) => t.id.to_string(),
    };
    let why = if hello.highest < TLS_1_2 {
        Failure::ProtocolVersion
    } else if !suites.is_empty() && !hello.suites.iter().any(|s| suites.contains(s)) {
        Failure::NoSharedCipher
    } else {
        match (&hello.sni, tenant) {
            (None, _) => Failure::NoSni,
            (Some(_), Some(None)) => Failure::UnknownSni,
            (Some(name), _) if !certs.covers(name) => Failure::NoCertificate,
            _ => Failure::Other,
        }
    };
    (label, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record: `version` in the legacy field, these suites, an SNI name and a
    /// `supported_versions` list when given.
    fn client_hello(version: u16, suites: &[u16], sni: Option<&str>, supported: &[u16]) -> Vec<u8> {
        let mut ext = Vec::new();
        if let Some(name) = sni {
            let n = name.len() as u16;
            ext.extend_from_slice(&[0, 0]);
            ext.extend_from_slice(&(n + 5).to_be_bytes());
            ext.extend_from_slice(&(n + 3).to_be_bytes());
            ext.push(0);
            ext.extend_from_slice(&n.to_be_bytes());
            ext.extend_from_slice(name.as_bytes());
        }
        if !supported.is_empty() {
            ext.extend_from_slice(&[0, 43]);
            ext.extend_from_slice(&(supported.len() as u16 * 2 + 1).to_be_bytes());
            ext.push(supported.len() as u8 * 2);
            for v in supported {
                ext.extend_from_slice(&v.to_be_bytes());
            }
        }
        let mut body = version.to_be_bytes().to_vec();
        body.extend_from_slice(&[7; 32]); // random
        body.push(0); // session id
        body.extend_from_slice(&(suites.len() as u16 * 2).to_be_bytes());
        for s in suites {
            body.extend_from_slice(&s.to_be_bytes());
        }
        body.extend_from_slice(&[1, 0]); // compression: null
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut handshake = vec![1];
        handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend_from_slice(&body);
        let mut record = vec![HANDSHAKE, 3, 1];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend_from_slice(&handshake);
        record
    }

    #[test]
    fn reads_sni_and_the_highest_version_offered() {
        let old = client_hello(0x0301, &[0x002f], Some("Hrm.Exempel.com."), &[]);
        assert_eq!(
            Hello::parse(&old),
            Some(Hello {
                sni: Some("hrm.exempel.com".into()),
                highest: 0x0301,
                suites: vec![0x002f]
            })
        );
        // TLS 1.3 clients keep 1.2 in the legacy field and list the real versions, GREASE
        // among them.
        let new = client_hello(0x0303, &[0x1301], None, &[0x3a3a, 0x0304, 0x0303]);
        let hello = Hello::parse(&new).unwrap();
        assert_eq!((hello.sni, hello.highest), (None, 0x0304));
        assert_eq!(Hello::parse(&new).unwrap().version_name(), "TLS 1.3");
        assert_eq!(Hello::parse(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(Hello::parse(&new[..new.len() - 3]), None);
    }
}
