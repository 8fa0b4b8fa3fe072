//! Idle upstream connections for the front door's forwards, one pool per worker thread.
//!
//! pingora's connection pool wraps every released connection in an `Arc<Mutex<_>>` and spawns
//! a task to watch it while it idles, then wakes that task to get the connection back: a task,
//! a timer and two scheduler round trips per forwarded request. Measured side by side, that
//! bookkeeping cost more than the request itself, and it delays the request to the upstream
//! enough that the upstream sleeps and is woken for nearly every request.
//!
//! Here an idle connection is just parked in a thread-local list; nobody watches it. When it is
//! taken again, a non-blocking read tells whether the upstream closed it meanwhile (tokio has
//! already recorded the FIN as readiness), and the forward retries once on a fresh connection
//! if a reused one fails before any response byte arrived, as nginx does. Thread-local means no
//! lock; a task that moved threads just returns its connection to the other thread's list.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::FutureExt;
use pingora::protocols::tls::CaType;
use pingora::protocols::Stream;
use tokio::io::AsyncReadExt;

use super::Upstream;
use crate::deadline::Deadline;

/// At most this many idle connections per upstream and worker thread; more are closed.
const MAX_IDLE: usize = 128;
/// Idle connections older than this are closed rather than reused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to an upstream with the buffer that reads its responses and the one timer
/// its reads and writes wait by.
pub struct Conn {
    pub stream: Stream,
    pub buf: BytesMut,
    pub deadline: Deadline,
}

impl Conn {
    pub fn new(stream: Stream) -> Self {
        Conn {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            deadline: Deadline::unset(),
        }
    }
}

/// Which connections an upstream may reuse: same address, scheme, certificate name and trust.
/// The CA is compared by identity and held, so its address cannot be reused by another.
struct Slot {
    addr: SocketAddr,
    tls: bool,
    host: Box<str>,
    ca: Option<Arc<CaType>>,
    idle: Vec<(Conn, Instant)>,
}

impl Slot {
    fn serves(&self, addr: SocketAddr, upstream: &Upstream) -> bool {
        self.addr == addr
            && self.tls == upstream.tls
            && *self.host == *upstream.host
            && match (&self.ca, &upstream.ca) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

/// One worker thread's idle connections. Configs name a handful of upstreams, so a list
/// scanned in order beats a map.
struct Pool {
    slots: Vec<Slot>,
    /// When expired connections were last closed across all slots, so upstreams a reload
    /// removed do not keep their idle connections open forever.
    swept: Option<Instant>,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { slots: Vec::new(), swept: None }) };
}

/// An idle connection to `upstream` at `addr` that the upstream has not closed, if any.
pub fn take(addr: SocketAddr, upstream: &Upstream) -> Option<Conn> {
    let now = Instant::now();
    loop {
        let (mut conn, since) = POOL.with_borrow_mut(|pool| {
            pool.slots
                .iter_mut()
                .find(|s| s.serves(addr, upstream))
                .and_then(|s| s.idle.pop())
        })?;
        if now.duration_since(since) < IDLE_TIMEOUT && still_open(&mut conn.stream) {
            return Some(conn);
        }
    }
}

/// Parks a connection whose last response was read to its end.
pub fn put(addr: SocketAddr, upstream: &Upstream, mut conn: Conn) {
    conn.buf.clear();
    let now = Instant::now();
    POOL.with_borrow_mut(|pool| {
        if pool
            .swept
            .is_none_or(|t| now.duration_since(t) >= IDLE_TIMEOUT)
        {
            for slot in &mut pool.slots {
                slot.idle
                    .retain(|(_, t)| now.duration_since(*t) < IDLE_TIMEOUT);
            }
            pool.slots.retain(|s| !s.idle.is_empty());
            pool.swept = Some(now);
        }
        let slots = &mut pool.slots;
        let slot = match slots.iter().position(|s| s.serves(addr, upstream)) {
            Some(i) => &mut slots[i],
            None => {
                slots.push(Slot {
                    addr,
                    tls: upstream.tls,
                    host: upstream.host.clone(),
                    ca: upstream.ca.clone(),
                    idle: Vec::new(),
                });
                slots.last_mut().expect("just pushed")
            }
        };
        // The oldest connection is the first to have expired.
        if slot.idle.len() >= MAX_IDLE
            || slot
                .idle
                .first()
                .is_some_and(|(_, t)| now.duration_since(*t) >= IDLE_TIMEOUT)
        {
            slot.idle.remove(0);
        }
        slot.idle.push((conn, now));
    });
}

/// `false` when the upstream closed the connection or sent something unasked while it idled.
fn still_open(stream: &mut Stream) -> bool {
    let mut byte = [0u8; 1];
    // `unconstrained`: tokio's co-operative budget must not turn a ready read into "pending".
    tokio::task::unconstrained(stream.read(&mut byte))
        .now_or_never()
        .is_none()
}
