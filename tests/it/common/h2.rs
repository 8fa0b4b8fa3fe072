//! Raw HTTP/2 over TLS, frame by frame, for what a conforming client library refuses to send:
//! uppercase or connection-specific header names, CR/LF in values, pseudo-headers out of
//! order, a `content-length` its DATA contradicts, floods.
//!
//! Requests are HPACK-encoded by hand (literal fields, never indexed, never Huffman), so any
//! bytes can be sent; responses are decoded with the `hpack` crate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::repo;

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const GOAWAY: u8 = 7;
pub const CONTINUATION: u8 = 9;
pub const END_STREAM: u8 = 1;
pub const END_HEADERS: u8 = 4;

/// A TLS connection to the gateway's https listener that negotiated `h2`, for `host` (SNI).
pub async fn tls(addr: SocketAddr, host: &str) -> TlsStream<TcpStream> {
    let pem = std::fs::read(repo().join("certs/dev-ca/ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

/// One frame: 9-byte header and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// A header block of literal fields, exactly as given (RFC 7541 §6.2.2).
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0);
        for text in [name.as_bytes(), value.as_bytes()] {
            hpack_int(text.len(), 7, &mut block);
            block.extend_from_slice(text);
        }
    }
    block
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), the prefix's other bits zero.
pub fn hpack_int(value: usize, n: u32, out: &mut Vec<u8>) {
    let max = (1 << n) - 1;
    if value < max {
        out.push(value as u8);
        return;
    }
    out.push(max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128 + 128) as u8);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A frame as received.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

/// Each whole frame at the start of `bytes`, and how many bytes they took.
pub fn frames(bytes: &[u8]) -> (Vec<Frame>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 9 {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        if bytes.len() < at + 9 + len {
            break;
        }
        let stream = u32::from_be_bytes(bytes[at + 5..at + 9].try_into().unwrap()) & 0x7fff_ffff;
        out.push(Frame {
            kind: bytes[at + 3],
            flags: bytes[at + 4],
            stream,
            payload: bytes[at + 9..at + 9 + len].to_vec(),
        });
        at += 9 + len;
    }
    (out, at)
}

/// How the server ended one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamEnd {
    /// `:status` of the response, if one came.
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The RST_STREAM error code, if the stream was reset.
    pub reset: Option<u32>,
    /// The GOAWAY error code, if the connection was ended.
    pub goaway: Option<u32>,
    /// The connection closed (or `within` passed) before the stream ended.
    pub unfinished: bool,
}

impl StreamEnd {
    /// Refused: a 4xx answer, or the stream or connection ended with an error.
    pub fn refused(&self) -> bool {
        self.status.is_some_and(|s| (400..500).contains(&s))
            || self.reset.is_some()
            || self.goaway.is_some_and(|code| code != 0)
    }
}

/// A client connection: preface and SETTINGS sent, the server's SETTINGS acknowledged.
pub struct Client {
    tls: TlsStream<TcpStream>,
    decoder: hpack::Decoder<'static>,
    pending: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr, host: &str) -> Self {
        let mut tls = tls(addr, host).await;
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        tls.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        Self {
            tls,
            decoder: hpack::Decoder::new(),
            pending: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.tls.write_all(bytes).await.is_ok() && self.tls.flush().await.is_ok()
    }

    /// Sends a request's HEADERS (and DATA, if any) on `stream`.
    pub async fn request(&mut self, stream: u32, fields: &[(&str, &str)], body: Option<&[u8]>) {
        self.headers(stream, fields, body.is_none()).await;
        if let Some(body) = body {
            self.data(stream, body, true).await;
        }
    }

    pub async fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) {
        let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
        self.send(&frame(HEADERS, flags, stream, &header_block(fields)))
            .await;
    }

    pub async fn data(&mut self, stream: u32, data: &[u8], end_stream: bool) {
        let flags = if end_stream { END_STREAM } else { 0 };
        self.send(&frame(DATA, flags, stream, data)).await;
    }

    /// Reads frames until `stream` ends, the connection ends, or `within` passes.
    pub async fn end_of(&mut self, stream: u32, within: Duration) -> StreamEnd {
        let deadline = tokio::time::Instant::now() + within;
        let mut end = StreamEnd::default();
        loop {
            let (frames, used) = frames(&self.pending);
            self.pending.drain(..used);
            for Frame {
                kind,
                flags,
                stream: id,
                payload,
            } in frames
            {
                match kind {
                    SETTINGS if flags & 1 == 0 => {
                        self.send(&frame(SETTINGS, 1, 0, &[])).await;
                    }
                    GOAWAY => {
                        end.goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                        return end;
                    }
                    HEADERS if id == stream => {
                        // Priority and padding are never sent by the gateway.
                        for (name, value) in self.decoder.decode(&payload).unwrap() {
                            let (name, value) = (
                                String::from_utf8_lossy(&name).into_owned(),
                                String::from_utf8_lossy(&value).into_owned(),
                            );
                            if name == ":status" {
                                end.status = value.parse().ok();
                            }
                            end.headers.push((name, value));
                        }
                        if flags & END_STREAM != 0 {
                            return end;
                        }
                    }
                    HEADERS => {
                        let _ = self.decoder.decode(&payload);
                    }
                    DATA if id == stream => {
                        end.body.extend_from_slice(&payload);
                        if flags & END_STREAM != 0 {
                            return end;
                        }
                    }
                    RST_STREAM if id == stream => {
                        end.reset = Some(u32::from_be_bytes(payload[..4].try_into().unwrap()));
                        return end;
                    }
                    _ => {}
                }
            }
            let mut piece = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.tls.read(&mut piece)).await {
                Ok(Ok(n)) if n > 0 => self.pending.extend_from_slice(&piece[..n]),
                _ => {
                    end.unfinished = true;
                    return end;
                }
            }
        }
    }
}
