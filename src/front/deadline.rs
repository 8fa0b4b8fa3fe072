//! A connection's read deadline, kept in one timer for the connection's life.
//!
//! Every kept-alive request waits for its head by a deadline: the idle time, then the header
//! time once its first bytes are in. A `timeout_at` around each wait registered a timer in
//! tokio's wheel, under the wheel's lock, and cancelled it again, on every request. Here, as
//! with nginx's lazy timers, a deadline that moves later leaves the timer where it is; when
//! the timer fires before the deadline then in force, it is set again for it. A busy
//! connection's timer is touched about once per idle period rather than once per request.
//! A deadline earlier than the timer's (the header time after an idle wait) moves the timer
//! at once: a deadline is never late.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;

use tokio::time::{Instant, Sleep};

pub struct ReadDeadline {
    timer: Pin<Box<Sleep>>,
}

impl ReadDeadline {
    /// A timer set for `at` (registered only when first waited on).
    pub fn new(at: Instant) -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    /// Runs `read` until it completes, or until `at`: `None` then.
    pub async fn run<F: Future>(&mut self, at: Instant, read: F) -> Option<F::Output> {
        let mut read = pin!(read);
        let timer = &mut self.timer;
        poll_fn(|cx| {
            if let Poll::Ready(out) = read.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
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
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_moved_later_is_kept_and_one_moved_earlier_is_met() {
        let start = Instant::now();
        let mut deadline = ReadDeadline::new(start + Duration::from_secs(5));
        let never = std::future::pending::<()>;

        // Later than the timer: it fires at 5 s, is set again, and the wait ends at 8 s.
        assert_eq!(
            deadline.run(start + Duration::from_secs(8), never()).await,
            None
        );
        assert_eq!(Instant::now() - start, Duration::from_secs(8));

        // Earlier than the timer (set for 8 s then, now past): ends at 9 s, not later.
        let now = Instant::now();
        let mut far = ReadDeadline::new(now + Duration::from_secs(60));
        assert_eq!(far.run(now + Duration::from_secs(1), never()).await, None);
        assert_eq!(Instant::now() - now, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_completes_in_time_is_returned() {
        let start = Instant::now();
        let mut deadline = ReadDeadline::new(start + Duration::from_secs(1));
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
}
