//! The Rust floor for the load test: a minimal hyper server on a current-thread runtime that
//! answers every request with the same fixed 307 Signpost sends. Nothing a gateway does —
//! no host lookup, no rule match, no metrics — so Signpost's rps as a fraction of this shows
//! what its features cost.
//!
//!     cargo run --release --example floor -- 127.0.0.1:18099

use std::convert::Infallible;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18099".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
                    let resp = hyper::Response::builder()
                        .status(307)
                        .header("location", "https://timeclock.flexhrm.com/X/100003")
                        .header("content-length", "0")
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
}
