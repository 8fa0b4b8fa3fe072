//! Per-worker state without contention: each thread takes a slot once, and the census, the
//! request counter and the access log keep one shard per slot, so a worker only ever locks
//! its own (and a drain, a scrape or the log writer now and then).

use std::sync::atomic::{AtomicUsize, Ordering};

/// More slots than any sensible worker-thread count, so each worker has its own.
pub const SLOTS: usize = 64;

static NEXT: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
}

/// This thread's slot.
pub fn mine() -> usize {
    SLOT.with(|s| *s)
}
