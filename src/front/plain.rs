//! A TCP connection as the front door reads and writes it: every client's (with TLS on top on
//! the https listener), and one to an `http://` upstream. The socket itself, with what pingora
//! asks of a stream (its peer address, an id) answered from the socket.
//!
//! pingora's own stream times every read and write that had to wait: on a kept-alive
//! connection each request's read waits once, which cost two clock reads and about 250
//! instructions a request on each side of a forward, for figures the front door never asks
//! for. A TLS connection to an upstream keeps pingora's stream, which its connector makes.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::ErrorType::{ConnectError, ConnectNoRoute, ConnectRefused, ConnectTimedout};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Plain {
    socket: TcpStream,
    digest: Arc<SocketDigest>,
}

impl Plain {
    /// A connection to `addr`, within `timeout`. Its errors are classified as pingora's
    /// connector classifies them, so that a failed forward is logged and counted alike over
    /// either.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> pingora::Result<Self> {
        let context = || format!("connecting to {addr}");
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(socket)) => Ok(Plain::new(socket, addr)),
            Ok(Err(e)) => {
                let etype = match (e.kind(), e.raw_os_error()) {
                    (std::io::ErrorKind::ConnectionRefused, _) => ConnectRefused,
                    (_, Some(libc::ENETUNREACH | libc::EHOSTUNREACH)) => ConnectNoRoute,
                    _ => ConnectError,
                };
                Err(pingora::Error::because(etype, context(), e))
            }
            Err(_) => Err(pingora::Error::explain(
                ConnectTimedout,
                format!("timeout {timeout:?} {}", context()),
            )),
        }
    }

    /// A connected socket to or from `peer`, with `TCP_NODELAY` as pingora sets it.
    pub fn new(socket: TcpStream, peer: SocketAddr) -> Self {
        let digest = SocketDigest::from_raw_fd(socket.as_raw_fd());
        let _ = digest.peer_addr.set(Some(peer.into()));
        if let Err(e) = socket.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        Plain {
            socket,
            digest: Arc::new(digest),
        }
    }
}

impl AsyncRead for Plain {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_read(cx, buf)
    }
}

impl AsyncWrite for Plain {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Plain {
    async fn shutdown(&mut self) {
        let _ = AsyncWriteExt::shutdown(&mut self.socket).await;
    }
}

impl UniqueID for Plain {
    fn id(&self) -> UniqueIDType {
        self.socket.as_raw_fd() as UniqueIDType
    }
}

impl Ssl for Plain {}

impl GetTimingDigest for Plain {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        vec![None]
    }
}

impl GetProxyDigest for Plain {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        None
    }
}

impl GetSocketDigest for Plain {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        Some(self.digest.clone())
    }
}

impl Peek for Plain {}
