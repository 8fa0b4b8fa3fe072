//! Host names → tenants, in one hash lookup (what a client sends is normalised first, by
//! [`crate::protocol::host`]).
//!
//! Config names are stored lower-cased in one table; a wildcard `*.flexhosting.se` is stored as its
//! suffix `.flexhosting.se`, which no valid request host can equal. Lookup tries the exact name,
//! then each suffix from the longest down: `a.b.flexhosting.se`, `.b.flexhosting.se`,
//! `.flexhosting.se`. That is one hash probe per label, never a scan over tenants. As in nginx,
//! `*.example.com` matches any depth below `example.com` but not `example.com` itself.

use std::hash::BuildHasher as _;

use compact_str::CompactString;

use super::huge::{prefetch, HugePages, HugeVec};
use crate::protocol::host::valid_name;

/// Config host names → tenant index: an open-addressing table probed linearly, each slot a
/// name and its tenant in 32 bytes. With 100 000 names a lookup is one cold cache line (two
/// when a probe crosses into the next): a `HashMap` read its control bytes first and the slot
/// after them, two misses one after the other on every request. Names of up to 24 bytes (nearly
/// all) are in the slot itself, so comparing one reads no other memory; a slot also keeps 32
/// bits of its name's hash, so a probe past another name seldom compares strings. On huge
/// pages: see [`super::huge`].
#[derive(Debug)]
pub struct HostIndex {
    slots: HugeVec<Slot>,
    len: usize,
    /// foldhash, seeded per process: several times faster than SipHash on short names, and
    /// still not predictable by a client choosing hosts.
    hasher: foldhash::fast::RandomState,
}

impl Default for HostIndex {
    fn default() -> Self {
        HostIndex {
            slots: HugeVec::new_in(HugePages),
            len: 0,
            hasher: Default::default(),
        }
    }
}

/// One name and its tenant; an empty name is an empty slot (no config name is empty).
#[derive(Debug, Default)]
#[repr(C, align(32))]
struct Slot {
    name: CompactString,
    tenant: u32,
    tag: u32,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 32);

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

/// Slots for `names` names: at most two thirds full, so that a probe for a name that is not
/// there (each wildcard lookup tries some) ends within a few slots.
fn slots_for(names: usize) -> usize {
    (names + names / 2 + 1).max(8)
}

impl HostIndex {
    /// Room for `names` names without growing (a large fleet has 100 000 or more).
    pub fn with_capacity(names: usize) -> Self {
        let mut index = HostIndex::default();
        index.resize(slots_for(names));
        index
    }

    /// Adds a name (already an [`index_key`]); returns the tenant that already had it, if any.
    pub fn insert(&mut self, key: String, tenant: u32) -> Option<u32> {
        self.place(key.into(), tenant)
    }

    fn place(&mut self, name: CompactString, tenant: u32) -> Option<u32> {
        if (self.len + 1) * 3 > self.slots.len() * 2 {
            self.resize(slots_for(self.len + 1) * 2);
        }
        match self.probe(&name) {
            Ok(at) => Some(self.slots[at].tenant),
            Err((at, tag)) => {
                self.slots[at] = Slot { name, tenant, tag };
                self.len += 1;
                None
            }
        }
    }

    /// Exact name first, then wildcards by longest suffix.
    pub fn lookup(&self, host: &str) -> Option<u32> {
        if let Some(t) = self.find(host) {
            return Some(t);
        }
        host.match_indices('.')
            .find_map(|(i, _)| self.find(&host[i..]))
    }

    /// Starts loading the slot where the probe for `host` starts, as a client sent it: the
    /// head's other work then overlaps the miss. Right for a host already in normal form (lower
    /// case, no port, as clients send nearly always); a hint wasted on a line otherwise.
    pub fn prefetch(&self, host: &[u8]) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[self.start(host).0]);
        }
    }

    fn find(&self, name: &str) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        self.probe(name).ok().map(|at| self.slots[at].tenant)
    }

    /// The slot that holds `name`, or the empty slot where it would go and its tag. The
    /// table is never full, so the probe ends.
    fn probe(&self, name: &str) -> Result<usize, (usize, u32)> {
        let (mut at, tag) = self.start(name.as_bytes());
        loop {
            let slot = &self.slots[at];
            if slot.name.is_empty() {
                return Err((at, tag));
            }
            if slot.tag == tag && slot.name == name {
                return Ok(at);
            }
            at = self.next(at);
        }
    }

    /// Where `name`'s probe starts (the hash's high bits scaled to the table, so its size
    /// need not be a power of two), and its tag (the low bits).
    fn start(&self, name: &[u8]) -> (usize, u32) {
        let hash = self.hasher.hash_one(name);
        let at = ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize;
        (at, hash as u32)
    }

    fn next(&self, at: usize) -> usize {
        if at + 1 == self.slots.len() {
            0
        } else {
            at + 1
        }
    }

    /// Moves every name into a table of `slots` slots.
    fn resize(&mut self, slots: usize) {
        let mut table = HugeVec::with_capacity_in(slots, HugePages);
        table.resize_with(slots, Slot::default);
        let old = std::mem::replace(&mut self.slots, table);
        self.len = 0;
        for slot in old.into_iter().filter(|s| !s.name.is_empty()) {
            self.place(slot.name, slot.tenant);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Every name as stored ([`index_key`]).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots
            .iter()
            .filter(|s| !s.name.is_empty())
            .map(|s| s.name.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
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
    fn every_name_is_found_as_the_table_grows_and_no_other() {
        let mut grown = HostIndex::default();
        let mut sized = HostIndex::with_capacity(5000);
        for i in 0..5000u32 {
            assert_eq!(grown.insert(format!("t{i}.example"), i), None);
            assert_eq!(sized.insert(format!("t{i}.example"), i), None);
        }
        for idx in [&grown, &sized] {
            assert_eq!(idx.len(), 5000);
            assert_eq!(idx.names().count(), 5000);
            for i in 0..5000u32 {
                assert_eq!(idx.lookup(&format!("t{i}.example")), Some(i));
                assert_eq!(idx.lookup(&format!("u{i}.example")), None);
            }
            assert_eq!(idx.lookup("t1.example.org"), None);
        }
        assert_eq!(sized.insert("t7.example".into(), 9), Some(7));
        assert_eq!(HostIndex::default().lookup("a.example"), None);
    }

    #[test]
    fn index_keys() {
        assert_eq!(index_key("*.x.se").as_deref(), Some(".x.se"));
        assert_eq!(index_key("a.*.se"), None);
        assert_eq!(index_key("*"), None);
    }
}
