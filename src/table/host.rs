//! Host names: normalising what a client sends, and finding its tenant in one hash lookup.
//!
//! Config names are stored lower-cased in one map; a wildcard `*.flexhosting.se` is stored as its
//! suffix `.flexhosting.se`, which no valid request host can equal. Lookup tries the exact name,
//! then each suffix from the longest down: `a.b.flexhosting.se`, `.b.flexhosting.se`,
//! `.flexhosting.se`. That is one hash probe per label, never a scan over tenants. As in nginx,
//! `*.example.com` matches any depth below `example.com` but not `example.com` itself.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

/// The longest DNS name, plus room for a port and brackets.
const MAX_HOST: usize = 253;

/// A request host, lower-cased, without port or trailing dot, in a stack buffer.
pub struct NormalHost {
    buf: [u8; MAX_HOST],
    len: usize,
}

impl NormalHost {
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever copied in (see `normalize`).
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

/// Why a host is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHost {
    Empty,
    Invalid,
}

/// Normalises a `Host` header value or URI authority: strips the port and one trailing dot,
/// lower-cases, and refuses anything that is not a DNS name or IP literal.
pub fn normalize(raw: &[u8]) -> Result<NormalHost, BadHost> {
    if raw.is_empty() {
        return Err(BadHost::Empty);
    }
    let host = if raw[0] == b'[' {
        // IPv6 literal: keep the brackets, drop the port.
        let close = raw
            .iter()
            .position(|&b| b == b']')
            .ok_or(BadHost::Invalid)?;
        check_port(&raw[close + 1..])?;
        if !raw[1..close]
            .iter()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return Err(BadHost::Invalid);
        }
        &raw[..=close]
    } else {
        let (host, port) = match raw.iter().position(|&b| b == b':') {
            Some(i) => (&raw[..i], &raw[i..]),
            None => (raw, &raw[raw.len()..]),
        };
        check_port(port)?;
        let host = host.strip_suffix(b".").unwrap_or(host);
        if !valid_name_bytes(host) {
            return Err(BadHost::Invalid);
        }
        host
    };
    if host.len() > MAX_HOST {
        return Err(BadHost::Invalid);
    }
    let mut out = NormalHost {
        buf: [0; MAX_HOST],
        len: host.len(),
    };
    for (o, b) in out.buf.iter_mut().zip(host) {
        *o = b.to_ascii_lowercase();
    }
    Ok(out)
}

fn check_port(port: &[u8]) -> Result<(), BadHost> {
    match port {
        [] => Ok(()),
        [b':', digits @ ..] if digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit) => Ok(()),
        _ => Err(BadHost::Invalid),
    }
}

/// A DNS name (letters, digits, `-`, `_`, dots between non-empty labels) or an IPv4 address.
pub fn valid_name(name: &str) -> bool {
    valid_name_bytes(name.as_bytes())
}

fn valid_name_bytes(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOST
        && name.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}

/// Config host names → tenant index.
#[derive(Debug, Default)]
pub struct HostIndex {
    /// foldhash, seeded per process: several times faster than SipHash on short names, and
    /// still not predictable by a client choosing hosts.
    names: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
}

/// The host as it is stored: `*.x.y` becomes `.x.y`; `None` if it is not a valid name.
pub fn index_key(config_host: &str) -> Option<String> {
    let lower = config_host.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    match lower.strip_prefix("*.") {
        Some(suffix) if valid_name(suffix) => Some(format!(".{suffix}")),
        Some(_) => None,
        None if valid_name(lower) => Some(lower.to_owned()),
        None => None,
    }
}

impl HostIndex {
    /// Room for `names` names without rehashing (a large fleet has 100 000 or more).
    pub fn with_capacity(names: usize) -> Self {
        Self {
            names: HashMap::with_capacity_and_hasher(names, Default::default()),
        }
    }

    /// Adds a name (already an [`index_key`]); returns the tenant that already had it, if any.
    pub fn insert(&mut self, key: String, tenant: u32) -> Option<u32> {
        match self.names.entry(key.into_boxed_str()) {
            Entry::Occupied(first) => Some(*first.get()),
            Entry::Vacant(slot) => {
                slot.insert(tenant);
                None
            }
        }
    }

    /// Exact name first, then wildcards by longest suffix.
    pub fn lookup(&self, host: &str) -> Option<u32> {
        if let Some(&t) = self.names.get(host) {
            return Some(t);
        }
        host.match_indices('.')
            .find_map(|(i, _)| self.names.get(&host[i..]).copied())
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, BadHost> {
        normalize(s.as_bytes()).map(|h| h.as_str().to_owned())
    }

    #[test]
    fn normalises_case_port_and_trailing_dot() {
        assert_eq!(
            norm("ACME.FlexHosting.se:8443").unwrap(),
            "acme.flexhosting.se"
        );
        assert_eq!(norm("acme.flexhosting.se.").unwrap(), "acme.flexhosting.se");
        assert_eq!(
            norm("acme.flexhosting.se.:80").unwrap(),
            "acme.flexhosting.se"
        );
        assert_eq!(norm("[::1]:8080").unwrap(), "[::1]");
        assert_eq!(norm("127.0.0.1").unwrap(), "127.0.0.1");
    }

    #[test]
    fn refuses_what_is_not_a_host() {
        assert_eq!(norm(""), Err(BadHost::Empty));
        for bad in [
            "a@b", "a b", "a..b", ".a", "a:x", "a:123456", "a/b", "[::1", "ä.se", "a:80:80",
        ] {
            assert_eq!(norm(bad), Err(BadHost::Invalid), "{bad}");
        }
    }

    #[test]
    fn exact_then_longest_wildcard() {
        let mut idx = HostIndex::default();
        idx.insert(index_key("*.flexhosting.se").unwrap(), 1);
        idx.insert(index_key("*.eu.flexhosting.se").unwrap(), 2);
        idx.insert(index_key("Acme.FlexHosting.se").unwrap(), 3);
        assert_eq!(idx.lookup("acme.flexhosting.se"), Some(3));
        assert_eq!(idx.lookup("other.flexhosting.se"), Some(1));
        assert_eq!(idx.lookup("x.eu.flexhosting.se"), Some(2));
        assert_eq!(idx.lookup("a.b.flexhosting.se"), Some(1));
        assert_eq!(idx.lookup("flexhosting.se"), None);
        assert_eq!(idx.lookup("unknown.example.org"), None);
    }

    #[test]
    fn duplicate_names_are_reported() {
        let mut idx = HostIndex::default();
        assert_eq!(idx.insert(index_key("a.se").unwrap(), 0), None);
        assert_eq!(idx.insert(index_key("A.se.").unwrap(), 1), Some(0));
    }

    #[test]
    fn index_keys() {
        assert_eq!(index_key("*.x.se").as_deref(), Some(".x.se"));
        assert_eq!(index_key("a.*.se"), None);
        assert_eq!(index_key("*"), None);
    }
}
