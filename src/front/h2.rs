//! The HTTP/2 door: the accept loop of an HTTP/2 connection. Each stream is answered from the
//! shared decision ([`Gateway::begin`]), most of them (a redirect: a head and nothing after it)
//! right in this loop; a stream that has to wait for something gets a task of its own, and only
//! a forward is handed to pingora's proxy.
//!
//! Accepting a stream also flushes what the connection has to write, so streams answered one by
//! one as they are accepted would each leave in a write (and a TLS record) of their own. The
//! loop takes every stream that has already arrived first, then answers them: their answers
//! leave together, at the next flush.
//!
//! Why not pingora's own loop (the proxy's `HttpServerApp`): it spawns every stream as the
//! proxy's whole `process_new_http` future, which `async_trait` moves into a box of several
//! kilobytes before it starts, and then builds a proxy session (cache, compression, modules)
//! that an answer never uses. The copy alone was the largest single cost of a redirect over
//! HTTP/2. What that loop does besides is kept here as pingora does it: GOAWAY on shutdown
//! while the open streams finish, the idle timeout, and a budget of malformed streams per
//! connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use pingora::apps::HttpServerApp;
use pingora::protocols::http::v2::server::{
    default_h2_options, handshake, H2Accept, H2Options, HttpSession,
};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Digest, Stream};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use tokio::sync::Notify;

use crate::protocol::hygiene::MAX_HEAD;
use crate::proxy::{Gateway, Step};

/// Streams refused as malformed (by pingora, while accepting them) after which the connection
/// is closed: as many as pingora's own loop allows.
const MALFORMED_STREAMS_PER_CONNECTION: usize = 32;

pub struct Http2 {
    gateway: Gateway,
    /// pingora's proxy, for forwards.
    proxy: Arc<HttpProxy<Gateway>>,
    /// Its header-list limit is the HTTP/1 head limit.
    options: H2Options,
}

impl Http2 {
    pub fn new(gateway: Gateway, conf: &Arc<ServerConf>) -> Self {
        let mut proxy = HttpProxy::new(gateway.clone(), conf.clone());
        proxy.handle_init_modules();
        let mut options = default_h2_options();
        options.max_header_list_size(MAX_HEAD as u32);
        Self {
            gateway,
            proxy: Arc::new(proxy),
            options,
        }
    }

    /// Serves an HTTP/2 connection (its preface already arrived) to its end. A stream that has
    /// to wait (a body, a forward) is a task of its own.
    pub async fn serve(self: &Arc<Self>, stream: Stream, shutdown: &ShutdownWatch) {
        let digest = Arc::new(Digest {
            ssl_digest: stream.get_ssl_digest(),
            timing_digest: stream.get_timing_digest(),
            proxy_digest: stream.get_proxy_digest(),
            socket_digest: stream.get_socket_digest(),
        });
        let mut conn = match handshake(stream, Some(self.options.clone())).await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "HTTP/2 handshake failed");
                return;
            }
        };
        let open = Arc::new(OpenStreams::default());
        let mut shutdown = shutdown.clone();
        let mut draining = false;
        let mut malformed = 0;
        loop {
            // Once draining (GOAWAY sent), streams the client opened before it are still
            // accepted, and accepting drives the connection to its clean end.
            let accepted = if draining {
                HttpSession::from_h2_conn(&mut conn, digest.clone()).await
            } else {
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => {
                        conn.graceful_shutdown();
                        draining = true;
                        continue;
                    }
                    accepted = HttpSession::from_h2_conn(&mut conn, digest.clone()) => accepted,
                    // With no stream open for the idle time: closed without a GOAWAY wait
                    // that a gone client could hold up.
                    _ = open.none_for(self.gateway.deadlines.idle) => return,
                }
            };
            // The streams taken in one go, answered together. Made for each go (a stream is
            // 536 bytes): a quiet connection keeps none.
            let mut ready = Vec::new();
            let mut accepted = accepted;
            loop {
                match accepted {
                    Ok(Some(H2Accept::Session(session))) => ready.push(session),
                    // Answered or reset by pingora already; its siblings go on.
                    Ok(Some(H2Accept::Rejected)) => {
                        malformed += 1;
                        if malformed == MALFORMED_STREAMS_PER_CONNECTION {
                            tracing::debug!(
                                "HTTP/2 connection closed after {malformed} malformed streams"
                            );
                            return;
                        }
                    }
                    Ok(None) => return,
                    // Most often a client that closed its socket without a GOAWAY.
                    Err(e) => {
                        tracing::debug!(error = %e, "HTTP/2 connection ended");
                        return;
                    }
                }
                // Every stream that has already arrived is taken before any is answered:
                // accepting flushes what is written, and the answers should leave together.
                match HttpSession::from_h2_conn(&mut conn, digest.clone()).now_or_never() {
                    Some(next) => accepted = next,
                    None => break,
                }
            }
            for mut session in ready {
                let step = self.gateway.begin(&mut session);
                if matches!(step, Step::Done) {
                    continue;
                }
                let door = self.clone();
                let done = open.start();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    door.finish(session, step, &shutdown).await;
                    drop(done);
                });
            }
        }
    }

    /// The rest of a stream the gateway began: finished by the gateway, or forwarded by
    /// pingora's proxy with the gateway's plan.
    async fn finish(&self, mut session: HttpSession, step: Step, shutdown: &ShutdownWatch) {
        if let Some(ctx) = self.gateway.finish(&mut session, step).await {
            session.req_header_mut().extensions_mut().insert(ctx);
            // Boxed by `async_trait`: only forwards pay for the proxy's large future.
            self.proxy
                .process_new_http(ServerSession::new_http2(session), shutdown)
                .await;
        }
    }
}

/// How many of a connection's streams are being served: the idle time counts only while none
/// is.
#[derive(Default)]
struct OpenStreams {
    count: AtomicUsize,
    /// Told when the count drops to zero.
    none: Notify,
}

/// One open stream, counted until dropped.
struct Open(Arc<OpenStreams>);

impl OpenStreams {
    fn start(self: &Arc<Self>) -> Open {
        self.count.fetch_add(1, Ordering::Relaxed);
        Open(self.clone())
    }

    /// Ready once no stream has been open for `idle`.
    async fn none_for(&self, idle: Duration) {
        while self.count.load(Ordering::Relaxed) != 0 {
            // `notify_one` keeps a permit when nobody waits yet: a drop to zero between the
            // load and this wait is not missed.
            self.none.notified().await;
        }
        tokio::time::sleep(idle).await;
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.none.notify_one();
        }
    }
}
