//! Host names → tenants, in one hash lookup (what a client sends is normalised first, by
//! [`crate::protocol::host`]).
//!
//! Config names are stored lower-cased in one map; a wildcard `*.flexhosting.se` is stored as its
//! suffix `.flexhosting.se`, which no valid request host can equal. Lookup tries the exact name,
//! then each suffix from the longest down: `a.b.flexhosting.se`, `.b.flexhosting.se`,
//! `.flexhosting.se`. That is one hash probe per label, never a scan over tenants. As in nginx,
//! `*.example.com` matches any depth below `example.com` but not `example.com` itself.

use compact_str::CompactString;
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

use super::huge::HugePages;

use crate::protocol::host::valid_name;

/// Config host names → tenant index.
#[derive(Debug, Default)]
pub struct HostIndex {
    /// foldhash, seeded per process: several times faster than SipHash on short names, and
    /// still not predictable by a client choosing hosts. A name of up to 24 bytes (nearly
    /// all) is kept in the map's own slot, so that a lookup among 100 000 names reads no
    /// other memory to compare it: a pointer to each name cost a cache miss per request.
    /// On huge pages: see [`super::huge`].
    names: HashMap<CompactString, u32, foldhash::fast::RandomState, HugePages>,
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
            names: HashMap::with_capacity_and_hasher_in(names, Default::default(), HugePages),
        }
    }

    /// Adds a name (already an [`index_key`]); returns the tenant that already had it, if any.
    pub fn insert(&mut self, key: String, tenant: u32) -> Option<u32> {
        match self.names.entry(CompactString::from(key)) {
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

    /// Every name as stored ([`index_key`]).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(|k| k.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
