//! The front door's accept loops: one per listener (http, https), each connection a task of
//! its own that [`Front::serve`] runs to its end.
//!
//! Why not pingora's listening service: it spawns each connection as one task that holds,
//! beside the application's future, room for pingora's own TLS handshake, which Signpost never
//! uses there (its TLS is done by the front door, within the header deadline). That room is
//! 8.8 KB, most of what an idle connection cost. Accepting here keeps a waiting connection's
//! task to what waiting needs. The sockets still come from pingora's table of listening
//! sockets ([`crate::listen`]), so a graceful upgrade hands them on as before.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, IntoRawFd};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::plain::Plain;
use super::Front;

/// The front door's listeners, served by [`Front`].
pub struct FrontDoor {
    front: Arc<Front>,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
}

impl FrontDoor {
    /// `http` and `https` as configured (or as bound): the keys of pingora's socket table.
    pub fn new(front: Front, http: Option<SocketAddr>, https: Option<SocketAddr>) -> Self {
        Self {
            front: Arc::new(front),
            http,
            https,
        }
    }
}

#[async_trait]
impl ServiceWithDependents for FrontDoor {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        let mut loops = Vec::new();
        for (addr, tls) in [(self.http, false), (self.https, true)] {
            let Some(addr) = addr else { continue };
            let listener = match listener(fds.as_ref(), addr) {
                Ok(listener) => listener,
                Err(e) => {
                    let role = if tls { "https" } else { "http" };
                    tracing::error!(%addr, error = %e, "cannot listen on {addr} (listen.{role})");
                    std::process::exit(1);
                }
            };
            let front = self.front.clone();
            loops.push(tokio::spawn(accept_loop(
                front,
                listener,
                tls,
                shutdown.clone(),
            )));
        }
        ready_notifier.notify_ready();
        for accepting in loops {
            let _ = accepting.await;
        }
    }

    fn name(&self) -> &str {
        "signpost"
    }
}

/// The listening socket for `addr` from pingora's table (bound by [`crate::listen`], or passed
/// on by the instance this one upgrades), else bound now (a listener new in an upgrade's
/// config) and put in the table for the next upgrade.
fn listener(fds: Option<&ListenFds>, addr: SocketAddr) -> std::io::Result<TcpListener> {
    let key = addr.to_string();
    let inherited = fds.and_then(|table| {
        let table = table.lock();
        let fd = *table.get(&key)?;
        // SAFETY: the table owns the descriptor for the life of the process; it is only
        // borrowed here to be duplicated.
        Some(unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned())
    });
    let socket = match inherited {
        Some(dup) => std::net::TcpListener::from(dup?),
        None => {
            let socket = std::net::TcpListener::bind(addr)?;
            if let Some(table) = fds {
                let dup = socket.try_clone()?;
                table.lock().add(key, dup.into_raw_fd());
            }
            socket
        }
    };
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket)
}

/// Accepts until the shutdown begins; each connection is served by a task of its own.
async fn accept_loop(
    front: Arc<Front>,
    listener: TcpListener,
    tls: bool,
    mut shutdown: ShutdownWatch,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed() => match changed {
                Ok(()) if !*shutdown.borrow() => continue,
                _ => return,
            },
        };
        match accepted {
            Ok((socket, peer)) => {
                let front = front.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    // Everything up to the first request head, TLS included, by one deadline.
                    // Nothing is made for a connection before its first bytes arrive: a
                    // connection opened and left waiting costs its socket and this task.
                    let deadline = Instant::now() + front.deadlines.header;
                    match tokio::time::timeout_at(deadline, socket.readable()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) | Err(_) => return,
                    }
                    let stream = Box::new(Plain::new(socket, peer));
                    front.serve(stream, tls, deadline, &shutdown).await
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "accept failed");
                // Out of file descriptors: accept would fail again at once until some close.
                if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE)
                {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
