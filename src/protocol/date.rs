//! The time as a request needs it: whole Unix seconds from the kernel's coarse clock, and the
//! `Date` header of the answers Signpost writes, formatted once a second per worker thread.
//!
//! pingora's cached date read the full clock and cloned a shared header value (an atomic
//! increment and decrement) for every answer; the census read the clock again. A coarse
//! read is a load from the page the kernel updates every tick, which is all a value in
//! whole seconds needs.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

/// Unix seconds, from the kernel's coarse clock (at most a tick behind).
pub fn unix_seconds() -> u64 {
    unix_time().as_secs()
}

/// The time since the Unix epoch from the kernel's coarse clock: at most a tick (1 to 4 ms)
/// behind, as nginx's cached time is, for a load where the full clock does arithmetic on the
/// CPU's counter.
pub fn unix_time() -> Duration {
    let mut at = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `at` is a valid timespec to write to; the call cannot fail for this clock.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut at) } == 0 {
        return Duration::new(at.tv_sec.max(0) as u64, at.tv_nsec as u32);
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// This thread's `Date` value and the second it is for.
struct Cached {
    second: u64,
    value: HeaderValue,
}

thread_local! {
    static DATE: RefCell<Cached> = const {
        RefCell::new(Cached { second: u64::MAX, value: HeaderValue::from_static("") })
    };
}

/// Calls `f` with the `Date` header's value for now (RFC 9110's IMF-fixdate).
pub fn with_date<R>(f: impl FnOnce(&HeaderValue) -> R) -> R {
    let second = unix_seconds();
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        if date.second != second {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(second));
            date.value = HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static(""));
            date.second = second;
        }
        f(&date.value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_is_now_in_the_http_format() {
        let before = SystemTime::now();
        let text = with_date(|v| v.to_str().unwrap().to_owned());
        let parsed = httpdate::parse_http_date(&text).unwrap();
        let after = SystemTime::now();
        // Whole seconds, from a clock at most a tick behind.
        assert!(
            parsed + Duration::from_secs(2) >= before && parsed <= after,
            "{text}"
        );
        assert!(text.ends_with(" GMT") && text.len() == 29, "{text}");
    }
}
