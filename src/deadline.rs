//! A connection's deadline, kept in one timer for the connection's life.
//!
//! Every kept-alive request waits for its head by a deadline: the idle time, then the header
//! time once its first bytes are in. A `timeout_at` around each wait registered a timer in
//! tokio's wheel, under the wheel's lock, and cancelled it again, on every request. Here, as
//! with nginx's lazy timers, a deadline that moves later leaves the timer where it is; when
//! the timer fires before the deadline then in force, it is set again for it. A busy
//! connection's timer is touched about once per idle period rather than once per request.
//! A deadline earlier than the timer's (the header time after an idle wait) moves the timer
//! at once: a deadline is never late.
//!
//! An upstream connection keeps one too, for its reads and writes: pingora's `fast_timeout`
//! around each one registered a timer in a shared map and read the clock twice, about 600
//! instructions a forwarded request.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

pub struct Deadline {
    timer: Pin<Box<Sleep>>,
}

/// How far off an unset timer is: past any deadline a connection sets, so the first moves it.
const UNSET: Duration = Duration::from_secs(365 * 24 * 3600);

impl Deadline {
    /// A timer set for `at` (registered only when first waited on).
    pub fn new(at: Instant) -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    /// A timer not set for anything yet: the first wait sets it.
    pub fn unset() -> Self {
        Self::new(Instant::now() + UNSET)
    }

    /// Runs `op` until it completes, or until `at`: `None` then.
    pub async fn run<F: Future>(&mut self, at: Instant, op: F) -> Option<F::Output> {
        self.wait(|| at, op).await
    }

    /// Runs `op` for at most `timeout` from when it first has to wait: one that is done at
    /// once (a write into a socket with room, a read of bytes already in) reads no clock.
    pub async fn within<F: Future>(&mut self, timeout: Duration, op: F) -> Option<F::Output> {
        self.wait(|| Instant::now() + timeout, op).await
    }

    /// Runs `op` until it completes, or until the deadline `at` gives when `op` first waits.
    async fn wait<F: Future>(&mut self, at: impl Fn() -> Instant, op: F) -> Option<F::Output> {
        let mut op = pin!(op);
        let mut deadline = None;
        let timer = &mut self.timer;
        poll_fn(|cx| {
            if let Poll::Ready(out) = op.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            let at = *deadline.get_or_insert_with(&at);
            loop {
                if timer.deadline() > at {
                    timer.as_mut().reset(at);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) if timer.deadline() >= at => return Poll::Ready(None),
                    // Fired for a deadline that has since moved later.
                    Poll::Ready(()) => timer.as_mut().reset(at),
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_is_kept_and_one_moved_earlier_is_met() {
        let start = Instant::now();
        let mut deadline = Deadline::new(start + Duration::from_secs(5));
        let never = std::future::pending::<()>;

        // Later than the timer: it fires at 5 s, is set again, and the wait ends at 8 s.
        assert_eq!(
            deadline.run(start + Duration::from_secs(8), never()).await,
            None
        );
        assert_eq!(Instant::now() - start, Duration::from_secs(8));

        // Earlier than the timer (set for 8 s then, now past): ends at 9 s, not later.
        let now = Instant::now();
        let mut far = Deadline::new(now + Duration::from_secs(60));
        assert_eq!(far.run(now + Duration::from_secs(1), never()).await, None);
        assert_eq!(Instant::now() - now, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_completes_in_time_is_returned() {
        let start = Instant::now();
        let mut deadline = Deadline::new(start + Duration::from_secs(1));
        let read = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            7
        };
        assert_eq!(
            deadline.run(start + Duration::from_secs(10), read).await,
            Some(7)
        );
        // The timer fired at 1 s while nobody waited; the next wait still ends at its own
        // deadline, not at once.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = Instant::now();
        let never = std::future::pending::<()>;
        assert_eq!(
            deadline.run(now + Duration::from_secs(3), never()).await,
            None
        );
        assert_eq!(Instant::now() - now, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn within_counts_from_when_the_operation_first_waits() {
        let mut deadline = Deadline::unset();
        assert_eq!(
            deadline.within(Duration::from_secs(1), async { 5 }).await,
            Some(5)
        );
        // Time passes between operations: the next one's timeout starts at its own wait.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let start = Instant::now();
        let never = std::future::pending::<()>;
        assert_eq!(deadline.within(Duration::from_secs(2), never()).await, None);
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        let slow = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            1
        };
        assert_eq!(deadline.within(Duration::from_secs(1), slow).await, Some(1));
    }
}
