//! The listening sockets: bound by Signpost before anything starts, then handed to pingora.
//!
//! pingora binds its listeners inside its worker threads, and when an address is taken it
//! retries for a while and then panics there, leaving a process that neither serves nor exits.
//! So every listener is bound here first: a taken address (or one without permission) ends the
//! process at once with exit code 1 and a message naming it, and `/-/ready` says 200 only once
//! all of them are bound. The bound sockets go into pingora's table of inherited sockets (the
//! one a graceful upgrade fills), where the front door's accept loops ([`crate::front`]) and
//! pingora's admin service find them, and from where a graceful upgrade passes them on. A port
//! of `0` gets a free port from the kernel; the addresses actually bound are logged
//! ("listening").

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{IntoRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};

use crate::config::file::FileListen;
use crate::reload::Live;

/// A listener that cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} (listen.{role}): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    pub role: &'static str,
    pub source: std::io::Error,
}

/// The addresses the listeners are bound to (ports resolved).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bound {
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// Binds every configured listener; with `upgrade`, binds nothing and reports the configured
/// addresses: the sockets come from the running instance, and one it does not pass on (a
/// listener new in this config) is bound by pingora as it starts.
pub fn bind(listen: &FileListen, upgrade: bool) -> Result<(Bound, Handover), BindError> {
    let mut handover = Handover {
        sockets: Vec::new(),
        live: None,
    };
    let mut one = |addr: Option<SocketAddr>, role| -> Result<Option<SocketAddr>, BindError> {
        let Some(addr) = addr else { return Ok(None) };
        if upgrade {
            return Ok(Some(addr));
        }
        let error = |source| BindError { addr, role, source };
        let listener = TcpListener::bind(addr).map_err(error)?;
        // Handed to tokio by pingora, which expects non-blocking sockets.
        listener.set_nonblocking(true).map_err(error)?;
        let bound = listener.local_addr().map_err(error)?;
        handover
            .sockets
            .push((bound.to_string(), OwnedFd::from(listener)));
        Ok(Some(bound))
    };
    let bound = Bound {
        http: one(listen.http, "http")?,
        https: one(listen.https, "https")?,
        admin: one(listen.admin, "admin")?,
    };
    Ok((bound, handover))
}

/// A pingora service that runs before the listening services: it puts the bound sockets into
/// pingora's table (where a graceful upgrade's inherited ones already are), then reports ready.
pub struct Handover {
    sockets: Vec<(String, OwnedFd)>,
    live: Option<Arc<Live>>,
}

impl Handover {
    /// `/-/ready` turns 200 once the sockets are handed over.
    pub fn readying(mut self, live: Arc<Live>) -> Self {
        self.live = Some(live);
        self
    }
}

#[async_trait]
impl ServiceWithDependents for Handover {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        _shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        if let Some(table) = fds {
            let mut table = table.lock();
            for (addr, socket) in self.sockets.drain(..) {
                if table.get(&addr).is_none() {
                    table.add(addr, socket.into_raw_fd());
                }
            }
        }
        if let Some(live) = &self.live {
            live.ready.store(true, Ordering::Release);
        }
        ready_notifier.notify_ready();
    }

    fn name(&self) -> &str {
        "listeners"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }
}
