//! HTTP-01 challenges of the orders in progress, answered on the http listener before any
//! rule ([`crate::route`]), on both HTTP paths alike.
//!
//! Only a token an order placed is answered, and only for the host it was placed for: a path
//! under `/.well-known/acme-challenge/` that names nothing in progress is routed like any
//! other, so a legacy URL there keeps working. The request path checks the prefix before it
//! reads anything here, and reading takes no lock.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;

/// Where RFC 8555 §8.3 puts the token.
pub const PREFIX: &str = "/.well-known/acme-challenge/";

/// The tokens in progress; orders add theirs and take them away when they end.
#[derive(Debug, Default)]
pub struct Challenges {
    pending: ArcSwap<Vec<Pending>>,
}

#[derive(Debug, Clone)]
struct Pending {
    token: Box<str>,
    /// Lower-case, no trailing dot: as [`crate::protocol::host`] normalises a request's.
    host: Box<str>,
    key_authorization: Bytes,
}

impl Challenges {
    /// The key authorization to answer for `token` on `host`, if an order of that host
    /// placed it.
    pub fn answer(&self, host: &str, token: &str) -> Option<Bytes> {
        let pending = self.pending.load();
        let found = pending
            .iter()
            .find(|p| &*p.token == token && &*p.host == host)?;
        Some(found.key_authorization.clone())
    }

    /// Answers `token` on `host` until the returned guard is dropped (the order ended, well
    /// or not).
    pub fn offer(self: &Arc<Self>, host: &str, token: &str, key_authorization: &str) -> Offered {
        let entry = Pending {
            token: token.into(),
            host: host.into(),
            key_authorization: Bytes::copy_from_slice(key_authorization.as_bytes()),
        };
        self.pending.rcu(|pending| {
            let mut next = Vec::clone(pending);
            next.push(entry.clone());
            next
        });
        Offered {
            challenges: self.clone(),
            token: token.into(),
        }
    }

    fn withdraw(&self, token: &str) {
        self.pending.rcu(|pending| {
            let mut next = Vec::clone(pending);
            next.retain(|p| &*p.token != token);
            next
        });
    }
}

/// A token being answered; withdrawn when dropped.
#[must_use = "the token is withdrawn when this is dropped"]
pub struct Offered {
    challenges: Arc<Challenges>,
    token: Box<str>,
}

impl Drop for Offered {
    fn drop(&mut self) {
        self.challenges.withdraw(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_answered_for_its_host_only_and_only_while_offered() {
        let challenges = Arc::new(Challenges::default());
        let offered = challenges.offer("hrm.exempel.com", "tok", "tok.thumb");
        assert_eq!(
            challenges.answer("hrm.exempel.com", "tok").as_deref(),
            Some(&b"tok.thumb"[..])
        );
        assert_eq!(challenges.answer("other.exempel.com", "tok"), None);
        assert_eq!(challenges.answer("hrm.exempel.com", "other"), None);
        drop(offered);
        assert_eq!(challenges.answer("hrm.exempel.com", "tok"), None);
    }
}
