//! A real HTTPS server standing in for the new domains: it records every request it receives
//! (method, target, headers, body) and answers `201`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::TestCa;

/// What the upstream saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

/// A real HTTPS server standing in for the new domains: records every request and answers
/// `201` with a fixed body and an `x-upstream: stand-in` header.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

pub const UPSTREAM_BODY: &str = "hello from the new domain";
/// What `/…/stream` answers, piece by piece.
pub const STREAMED: [&str; 3] = ["one,", "two,", "three"];

/// Whether the request just recorded asked for the streamed answer.
fn parts_target_streams(record: &Mutex<Vec<Seen>>) -> bool {
    record
        .lock()
        .unwrap()
        .last()
        .is_some_and(|s| s.target.contains("/stream"))
}

impl Upstream {
    pub async fn start(ca: &TestCa, names: &[&str]) -> Self {
        let (cert, key) = ca.issue(names);
        let certs = rustls_pemfile::certs(&mut cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut key.as_bytes())
            .unwrap()
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let record = record.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            record.lock().unwrap().push(Seen {
                                method: parts.method.to_string(),
                                target: parts.uri.to_string(),
                                headers: parts.headers,
                                body,
                            });
                            let builder = hyper::Response::builder()
                                .status(201)
                                .header("x-upstream", "stand-in");
                            // `/…/stream` answers in pieces without a length (chunked).
                            let body = if parts_target_streams(&record) {
                                let pieces: Vec<
                                    Result<hyper::body::Frame<Bytes>, std::convert::Infallible>,
                                > = STREAMED
                                    .iter()
                                    .map(|p| {
                                        Ok(hyper::body::Frame::data(Bytes::from_static(
                                            p.as_bytes(),
                                        )))
                                    })
                                    .collect();
                                http_body_util::Either::Left(http_body_util::StreamBody::new(
                                    futures_util::stream::iter(pieces),
                                ))
                            } else {
                                http_body_util::Either::Right(Full::new(Bytes::from_static(
                                    UPSTREAM_BODY.as_bytes(),
                                )))
                            };
                            Ok::<_, std::convert::Infallible>(builder.body(body).unwrap())
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}
