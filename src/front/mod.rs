//! The front door: where every connection starts, on the http and the https listener.
//!
//! Connections are accepted by `accept`, which makes nothing for one before its first bytes
//! arrive. A connection on the https listener gets its TLS handshake here, within the header
//! deadline (pingora's own listener would allow 60 s). Then ALPN decides: HTTP/2 is served by
//! `h2` once its preface has arrived in time, its streams answered by [`crate::proxy`]'s
//! gateway and only forwards handed to pingora's proxy; everything
//! else — every HTTP/1.x request, with or without a body, answered or forwarded, WebSocket
//! upgrades included — is served here, by `conn`, to the end of the connection.
//!
//! Why Signpost has its own HTTP/1 server at all: most legacy traffic is a bodiless GET that
//! gets a redirect, and for that pingora's full proxy pipeline (session objects, phases,
//! header maps with case tracking, a pool that spawns a task per idle connection) cost more
//! than the routing itself. Why only one: two HTTP/1 servers disagreed on what they accept,
//! and a rule enforced by one was skipped by the other. Both doors share every rule through
//! [`crate::protocol`].

mod accept;
mod body;
mod conn;
mod forward;
mod h2;
mod head;
mod hello;
mod plain;
mod primed;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::{Stream, ALPN};
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use tokio::time::Instant;

use crate::protocol::hygiene::Deadlines;
use crate::report::Recorder;
use crate::table::Tables;
use crate::tls::Certificates;
use crate::upstream::pool::Conn;
use crate::upstream::Upstream;
pub use accept::FrontDoor;
use conn::Connection;
pub use h2::Http2;

pub struct Front {
    /// The HTTP/2 door.
    h2: Arc<Http2>,
    tls: Option<Tls>,
    /// Makes new upstream connections (TCP, TLS) for forwards; idle ones wait in
    /// [`crate::upstream::pool`].
    connector: TransportConnector,
    tables: Tables,
    recorder: Arc<Recorder>,
    /// Set when pingora's shutdown begins (by [`crate::server`]'s background task). Read per
    /// request: a plain load, where the shutdown watch's `borrow` takes a read lock that every
    /// worker thread shares.
    draining: Arc<AtomicBool>,
    deadlines: Deadlines,
}

/// The https listener's TLS acceptor (certificates chosen by SNI, ALPN `h2`, `http/1.1`).
pub struct Tls {
    pub acceptor: Acceptor,
    /// The certificates the acceptor chooses from: whether one covers a name.
    pub certs: Arc<Certificates>,
    /// The cipher suites the acceptor speaks (their IANA numbers).
    pub suites: Vec<u16>,
}

impl Front {
    pub fn new(
        h2: Http2,
        tls: Option<Tls>,
        conf: &ServerConf,
        tables: Tables,
        recorder: Arc<Recorder>,
        draining: Arc<AtomicBool>,
        deadlines: Deadlines,
    ) -> Self {
        Self {
            h2: Arc::new(h2),
            tls,
            connector: TransportConnector::new(Some(ConnectorOptions::from_server_conf(conf))),
            tables,
            recorder,
            draining,
            deadlines,
        }
    }

    /// The TLS handshake, by `deadline`. A handshake that fails after the client sent
    /// something is counted and enters the census (see [`hello`]).
    async fn handshake(&self, tls: &Tls, mut stream: Stream, deadline: Instant) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let first = Bytes::from(hello::read_first_record(&mut stream, deadline).await);
        let primed = primed::Primed::new(first.clone(), stream);
        let error =
            match tokio::time::timeout_at(deadline, tls.acceptor.tls_handshake(primed)).await {
                Ok(Ok(stream)) => return Some(Box::new(stream)),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "not done within the header deadline".to_owned(),
            };
        if first.is_empty() {
            // A port probe or an idle connection, not a client that tried.
            tracing::debug!(
                error,
                "TLS handshake failed before the client sent anything"
            );
            return None;
        }
        let hello = hello::Hello::parse(&first);
        let (tenant, why) =
            hello::diagnose(hello.as_ref(), &self.tables.load(), &tls.certs, &tls.suites);
        tracing::debug!(error, tenant, reason = why.label(), "TLS handshake failed");
        let offered = hello.as_ref().map(|h| (h.sni.as_deref(), h.version_name()));
        self.recorder
            .tls_failure(&tenant, why.label(), peer, offered);
        None
    }

    /// A new connection (TCP, and TLS for `https` upstreams) with the upstream's timeouts and
    /// trust roots.
    async fn connect(&self, addr: SocketAddr, upstream: &Upstream) -> pingora::Result<Conn> {
        let stream: Stream = match upstream.tls {
            true => self.connector.new_stream(&upstream.peer_at(addr)).await?,
            false => Box::new(plain::Plain::connect(addr, upstream.connect_timeout).await?),
        };
        Ok(Conn::new(stream))
    }

    /// Serves a connection to its end; `tls` when it came in on the https listener. The TLS
    /// handshake and the first request head must be done by `deadline`.
    async fn serve(
        self: &Arc<Self>,
        stream: Stream,
        tls: bool,
        deadline: Instant,
        shutdown: &ShutdownWatch,
    ) {
        // Each path's future is boxed: a connection task is as large as its largest path
        // could be, and thousands of idle HTTP/1 connections should not each carry room for
        // a TLS handshake and an HTTP/2 session.
        let stream = match self.tls.as_ref().filter(|_| tls) {
            Some(tls) => match Box::pin(self.handshake(tls, stream, deadline)).await {
                Some(stream) => stream,
                None => return,
            },
            None => stream,
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            if let Some(stream) = Box::pin(primed::read_h2_preface(stream, deadline)).await {
                Box::pin(self.h2.serve(stream, shutdown)).await;
            }
            return;
        }
        // During a shutdown each connection still gets its next request answered (with
        // `Connection: close`): one accepted just as the signal came may already carry one.
        Box::pin(Connection::serve(self, stream, deadline)).await;
    }
}
