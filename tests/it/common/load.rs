//! Tests run in parallel in one binary; a few load the machine on purpose (floods, thousands of
//! generated requests, real clients on other runtimes). Those run alone: while one does, no
//! other test starts a gateway, so a test that waits for a reload or a deadline never competes
//! with a flood for the two cores.

use std::cell::Cell;
use std::sync::{Condvar, Mutex, PoisonError};

/// Gateways running for ordinary tests, and whether a heavy test holds the machine.
struct Load {
    gateways: usize,
    heavy: bool,
}

static LOAD: Mutex<Load> = Mutex::new(Load {
    gateways: 0,
    heavy: false,
});
static CHANGED: Condvar = Condvar::new();

thread_local! {
    /// The test on this thread runs alone: its own gateways take no share.
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// Held for the whole of a heavy test: waits until no other test has a gateway running, and
/// keeps others from starting one until dropped.
pub struct Alone(());

pub fn alone() -> Alone {
    let mut load = LOAD.lock().unwrap_or_else(PoisonError::into_inner);
    while load.heavy || load.gateways > 0 {
        load = CHANGED.wait(load).unwrap_or_else(PoisonError::into_inner);
    }
    load.heavy = true;
    ALONE.set(true);
    Alone(())
}

impl Drop for Alone {
    fn drop(&mut self) {
        LOAD.lock().unwrap_or_else(PoisonError::into_inner).heavy = false;
        ALONE.set(false);
        CHANGED.notify_all();
    }
}

/// Held by each gateway of an ordinary test while it runs.
pub struct Share(());

impl Share {
    /// `None` in a test that runs alone.
    pub fn take() -> Option<Share> {
        if ALONE.get() {
            return None;
        }
        let mut load = LOAD.lock().unwrap_or_else(PoisonError::into_inner);
        while load.heavy {
            load = CHANGED.wait(load).unwrap_or_else(PoisonError::into_inner);
        }
        load.gateways += 1;
        Some(Share(()))
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        LOAD.lock().unwrap_or_else(PoisonError::into_inner).gateways -= 1;
        CHANGED.notify_all();
    }
}
