//! When to order: the renewal time of a certificate, the backoff after a failure, and the
//! CA's rate limits. Kept in `acme/ledger.json`, so a restart neither forgets a backoff nor
//! spends the week's allowance again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Let's Encrypt: new orders per account per 3 hours.
pub const ORDERS_PER_WINDOW: usize = 300;
const ORDER_WINDOW: i64 = 3 * 3600;
/// Let's Encrypt: certificates per registered domain per week.
pub const CERTIFICATES_PER_WEEK: usize = 50;
const WEEK: i64 = 7 * 24 * 3600;
/// The first wait after a failure; doubled after each further one. Five minutes keeps a
/// failing host within Let's Encrypt's five failed validations per host and hour.
const FIRST_BACKOFF: i64 = 5 * 60;
const LONGEST_BACKOFF: i64 = 24 * 3600;
/// After the CA said `rateLimited`: no sooner than this.
const RATE_LIMITED_BACKOFF: i64 = 3600;

/// When a certificate valid from `not_before` to `not_after` is renewed: when a third of its
/// lifetime is left (30 days of Let's Encrypt's 90, 16 of a 47-day certificate).
pub fn renewal_time(not_before: i64, not_after: i64) -> i64 {
    not_after - (not_after - not_before) / 3
}

/// How long to wait after the `failures`-th failure in a row: doubling from five minutes up
/// to a day, spread by ±20 % (`jitter` in 0..1) so that many hosts failing together (the CA
/// was down) do not all return at once.
pub fn backoff(failures: u32, jitter: f64, rate_limited: bool) -> i64 {
    let doublings = failures.saturating_sub(1).min(20);
    let base = (FIRST_BACKOFF << doublings).min(LONGEST_BACKOFF);
    let spread = (base as f64 * (0.8 + 0.4 * jitter.clamp(0.0, 1.0))) as i64;
    if rate_limited {
        spread.max(RATE_LIMITED_BACKOFF)
    } else {
        spread
    }
}

/// The domain a CA counts certificates under: the last two labels (`exempel.com` for
/// `hrm.exempel.com`). Under a public suffix of two labels (`co.uk`) this groups more hosts
/// than the CA does, so the count is stricter than the CA's, never looser.
pub fn registered_domain(host: &str) -> &str {
    match host.rmatch_indices('.').nth(1) {
        Some((i, _)) => &host[i + 1..],
        None => host,
    }
}

/// What ACME did lately.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// When each order of the last three hours was placed (Unix seconds).
    #[serde(default)]
    orders: Vec<i64>,
    /// Each certificate of the last week: its registered domain and when it was issued.
    #[serde(default)]
    issued: Vec<(String, i64)>,
    /// Hosts whose last order failed.
    #[serde(default)]
    failing: BTreeMap<String, Failing>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failing {
    pub failures: u32,
    pub retry_at: i64,
    pub reason: String,
}

/// Why an order for a host waits, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub until: i64,
    pub why: String,
}

impl Ledger {
    /// Whether an order for `host` may be placed at `now`.
    pub fn may_order(&self, host: &str, now: i64) -> Result<(), Wait> {
        if let Some(f) = self.failing.get(host).filter(|f| f.retry_at > now) {
            let why = format!("backing off after {} failure(s): {}", f.failures, f.reason);
            return Err(Wait {
                until: f.retry_at,
                why,
            });
        }
        let recent: Vec<i64> = (self.orders.iter().copied())
            .filter(|&t| t > now - ORDER_WINDOW)
            .collect();
        if recent.len() >= ORDERS_PER_WINDOW {
            let why = format!("{ORDERS_PER_WINDOW} orders in 3 hours, the CA's limit");
            let until = recent.iter().min().copied().unwrap_or(now) + ORDER_WINDOW;
            return Err(Wait { until, why });
        }
        let domain = registered_domain(host);
        let issued: Vec<i64> = (self.issued.iter())
            .filter(|(d, t)| d == domain && *t > now - WEEK)
            .map(|(_, t)| *t)
            .collect();
        if issued.len() >= CERTIFICATES_PER_WEEK {
            let why = format!(
                "{CERTIFICATES_PER_WEEK} certificates for {domain} this week, the CA's limit"
            );
            let until = issued.iter().min().copied().unwrap_or(now) + WEEK;
            return Err(Wait { until, why });
        }
        Ok(())
    }

    /// An order was placed at `now`.
    pub fn ordered(&mut self, now: i64) {
        self.orders.retain(|&t| t > now - ORDER_WINDOW);
        self.orders.push(now);
    }

    /// A certificate for `host` was issued at `now`.
    pub fn issued(&mut self, host: &str, now: i64) {
        self.issued.retain(|(_, t)| *t > now - WEEK);
        self.issued.push((registered_domain(host).to_owned(), now));
        self.failing.remove(host);
    }

    /// An order for `host` failed at `now`; returns when to try again.
    pub fn failed(&mut self, host: &str, now: i64, reason: &str, jitter: f64) -> i64 {
        let failures = self.failing.get(host).map_or(0, |f| f.failures) + 1;
        let retry_at = now + backoff(failures, jitter, reason == "rate_limited");
        self.failing.insert(
            host.to_owned(),
            Failing {
                failures,
                retry_at,
                reason: reason.to_owned(),
            },
        );
        retry_at
    }

    /// Forgets hosts no longer wanted (gone from the table, or now covered by an operator
    /// certificate).
    pub fn keep_only(&mut self, wanted: &[String]) {
        self.failing.retain(|host, _| wanted.contains(host));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 24 * 3600;

    #[test]
    fn renewal_comes_when_a_third_of_the_lifetime_is_left() {
        assert_eq!(renewal_time(0, 90 * DAY), 60 * DAY);
        assert_eq!(
            renewal_time(NOW, NOW + 47 * DAY),
            NOW + 47 * DAY - 47 * DAY / 3
        );
    }

    #[test]
    fn backoff_doubles_from_five_minutes_to_a_day_spread_by_a_fifth() {
        assert_eq!(backoff(1, 0.5, false), 300);
        assert_eq!(backoff(2, 0.5, false), 600);
        assert_eq!(backoff(3, 0.5, false), 1200);
        assert_eq!(backoff(30, 0.5, false), 86_400);
        assert_eq!(backoff(1, 0.0, false), 240);
        assert_eq!(backoff(1, 1.0, false), 360);
        assert_eq!(backoff(1, 0.5, true), 3600);
    }

    #[test]
    fn a_failing_host_waits_and_is_forgiven_when_issued() {
        let mut ledger = Ledger::default();
        assert_eq!(ledger.may_order("hrm.exempel.com", NOW), Ok(()));
        let retry = ledger.failed("hrm.exempel.com", NOW, "unreachable", 0.5);
        assert_eq!(retry, NOW + 300);
        let wait = ledger.may_order("hrm.exempel.com", NOW + 10).unwrap_err();
        assert_eq!(wait.until, NOW + 300);
        assert_eq!(wait.why, "backing off after 1 failure(s): unreachable");
        // Another host is not held back.
        assert_eq!(ledger.may_order("web.exempel.com", NOW + 10), Ok(()));
        assert_eq!(
            ledger.failed("hrm.exempel.com", NOW + 300, "challenge", 0.5),
            NOW + 900
        );
        ledger.issued("hrm.exempel.com", NOW + 900);
        assert_eq!(ledger.may_order("hrm.exempel.com", NOW + 901), Ok(()));
    }

    #[test]
    fn three_hundred_orders_in_three_hours_wait_for_the_oldest_to_age_out() {
        let mut ledger = Ledger::default();
        for i in 0..ORDERS_PER_WINDOW as i64 {
            ledger.ordered(NOW + i);
        }
        let wait = ledger.may_order("a.exempel.com", NOW + 400).unwrap_err();
        assert_eq!(wait.until, NOW + 3 * 3600);
        assert_eq!(ledger.may_order("a.exempel.com", NOW + 3 * 3600), Ok(()));
    }

    #[test]
    fn fifty_certificates_a_week_per_registered_domain() {
        let mut ledger = Ledger::default();
        for i in 0..CERTIFICATES_PER_WEEK as i64 {
            ledger.issued(&format!("h{i}.exempel.com"), NOW + i);
        }
        let wait = ledger.may_order("new.exempel.com", NOW + 100).unwrap_err();
        assert_eq!(wait.until, NOW + WEEK);
        assert!(wait.why.contains("for exempel.com this week"), "{wait:?}");
        assert_eq!(ledger.may_order("hrm.other.se", NOW + 100), Ok(()));
        assert_eq!(ledger.may_order("new.exempel.com", NOW + WEEK), Ok(()));
    }

    #[test]
    fn the_registered_domain_is_the_last_two_labels() {
        assert_eq!(registered_domain("hrm.exempel.com"), "exempel.com");
        assert_eq!(registered_domain("a.b.flexhosting.se"), "flexhosting.se");
        assert_eq!(registered_domain("exempel.com"), "exempel.com");
        assert_eq!(registered_domain("localhost"), "localhost");
    }
}
