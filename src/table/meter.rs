//! What a tenant's requests are counted in: a few counters in the tenant's own memory, shared
//! by every table that has the tenant, so a count survives a reload.
//!
//! With 100 000 tenants each request's tenant is cold memory. Counting in a map of (tenant,
//! kind, action, code) cost two more cache misses per request (its control bytes and its
//! entry) on top of the tenant's name; a meter is one cache line the request's labels carry
//! (not a copy of the name). The labelled series are made only when `/metrics` is read
//! ([`crate::report`]).
//!
//! A tenant's meter is made once for the process, with its number, and never freed: it is
//! `&'static`, so carrying it takes no reference count, and the meters of a large config are
//! one dense block on huge pages ([`super::huge`]) rather than 100 000 small allocations
//! spread over 4 KiB pages. A tenant removed and added again gets its meter back, counts and
//! all, as it gets its number back (a Prometheus counter must not go down).

use std::alloc::{handle_alloc_error, Layout};
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock, RwLockReadGuard};

use allocator_api2::alloc::Allocator as _;

use super::huge::HugePages;

/// A rule's `kind` label, with a number for a meter's key. Numbers come from one list for
/// the process, which only grows: a kind keeps its number across reloads, as a meter keeps
/// its counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    pub name: Arc<str>,
    number: u16,
}

static KINDS: Mutex<Vec<Arc<str>>> = Mutex::new(Vec::new());

/// Kinds past this many (a config that names thousands) have no meter slot: they are counted
/// under the last number's name rather than in a meter key's width.
pub const MAX_KINDS: usize = 1 << 12;

impl Kind {
    /// The kind called `name`, numbered the first time any config names it.
    pub fn new(name: &str) -> Self {
        let mut kinds = KINDS.lock().unwrap_or_else(|e| e.into_inner());
        let number = match kinds.iter().position(|k| &**k == name) {
            Some(i) => i,
            None if kinds.len() < usize::from(u16::MAX) => {
                kinds.push(name.into());
                kinds.len() - 1
            }
            None => return Kind::overflowing(name),
        };
        Kind {
            name: kinds[number].clone(),
            number: number as u16,
        }
    }

    /// Its number, below [`MAX_KINDS`]; `None` for a kind past them.
    pub fn number(&self) -> Option<usize> {
        Some(usize::from(self.number)).filter(|&n| n < MAX_KINDS)
    }

    /// Its place in [`Kind::names`] (`u16::MAX` for none, past 65 535 kinds): what the
    /// census keeps for it, two bytes and no reference count to touch.
    pub fn index(&self) -> u16 {
        self.number
    }

    /// The name at `index` in [`Kind::names`]; `_other` for none.
    pub fn name_at(names: &[Arc<str>], index: u16) -> Arc<str> {
        static OTHER: LazyLock<Arc<str>> = LazyLock::new(|| "_other".into());
        names.get(usize::from(index)).unwrap_or(&OTHER).clone()
    }

    /// `_none`: the kind of a request that matched no rule.
    pub fn none() -> Self {
        static NONE: std::sync::LazyLock<Kind> = std::sync::LazyLock::new(|| Kind::new("_none"));
        NONE.clone()
    }

    /// A kind past every number: never in a meter's slot, nor named in the census.
    fn overflowing(name: &str) -> Self {
        Kind {
            name: name.into(),
            number: u16::MAX,
        }
    }

    /// Every kind's name, by number: taken once per scrape rather than once per slot.
    pub fn names() -> Vec<Arc<str>> {
        KINDS.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Deref for Kind {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

/// A tenant's number for the life of the process. The census keys its rows and day counts
/// by it, so that folding a sighting reads no name and holds no reference to one: with
/// 100 000 tenants each name is a cold cache line, and each row's copy of it a reference
/// count on that line. Numbers come from one list, by tenant id, which only grows: a tenant
/// keeps its number across reloads, and one removed and added again gets its old one back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantNo(u32);

/// The names by number, and the numbers found by name: a table of numbers alone (4 bytes a
/// tenant), hashed by the name they stand for, where a map of names to numbers kept a
/// second reference to every name.
#[derive(Default)]
struct TenantNames {
    names: Vec<Arc<str>>,
    numbers: hashbrown::HashTable<u32>,
    /// By number: the tenant's meter, once a table has had the tenant (a census restored
    /// from its file numbers tenants no table has).
    meters: Vec<Option<&'static Meter>>,
    arena: Arena,
}

/// Where meters are placed: blocks that never move and are never freed, filled in order.
/// A block is sized for what [`TenantNo::reserve`] says is coming (a config's tenants at
/// once), else it doubles.
struct Arena {
    next: *mut Meter,
    room: usize,
    placed: usize,
}

// SAFETY: the arena only hands out `&'static Meter` (which is Sync) and is used under the
// names' lock; the pointer is to memory no one else owns.
unsafe impl Send for Arena {}
unsafe impl Sync for Arena {}

impl Default for Arena {
    fn default() -> Self {
        Arena {
            next: std::ptr::null_mut(),
            room: 0,
            placed: 0,
        }
    }
}

impl Arena {
    /// Room for `more` meters in one block (what is left of the last one is abandoned).
    fn reserve(&mut self, more: usize) {
        if self.room >= more {
            return;
        }
        let room = more.max(self.placed).max(1024);
        let layout = Layout::array::<Meter>(room)
            .unwrap_or_else(|_| handle_alloc_error(Layout::new::<Meter>()));
        let Ok(block) = HugePages.allocate(layout) else {
            handle_alloc_error(layout)
        };
        self.next = block.cast::<Meter>().as_ptr();
        self.room = room;
    }

    fn place(&mut self, meter: Meter) -> &'static Meter {
        self.reserve(1);
        // SAFETY: `next` points at room for one more meter in a block that is never freed
        // nor reused, so the reference is valid for the life of the process.
        unsafe {
            let at = self.next;
            at.write(meter);
            self.next = at.add(1);
            self.room -= 1;
            self.placed += 1;
            &*at
        }
    }
}

fn hash_name(name: &str) -> u64 {
    std::hash::BuildHasher::hash_one(&foldhash::fast::FixedState::default(), name)
}

impl TenantNames {
    fn find(&self, name: &str, hash: u64) -> Option<u32> {
        let names = &self.names;
        self.numbers
            .find(hash, |&n| &*names[n as usize] == name)
            .copied()
    }
}

static TENANTS: LazyLock<RwLock<TenantNames>> = LazyLock::new(Default::default);

impl TenantNo {
    /// The number of the tenant `name`, given the first time it is asked for.
    pub fn of(name: &str) -> Self {
        let hash = hash_name(name);
        if let Some(n) = TENANTS
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .find(name, hash)
        {
            return TenantNo(n);
        }
        let mut tenants = TENANTS.write().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = tenants.find(name, hash) {
            return TenantNo(n);
        }
        let n = tenants.names.len() as u32;
        tenants.names.push(name.into());
        tenants.meters.push(None);
        let TenantNames { names, numbers, .. } = &mut *tenants;
        numbers.insert_unique(hash, n, |&n| hash_name(&names[n as usize]));
        TenantNo(n)
    }

    /// Makes room for `total` tenants in all, and their meters, at once: a config of 100 000
    /// tenants grew the list by doubling, and the allocator kept the spare room.
    pub fn reserve(total: usize) {
        let mut tenants = TENANTS.write().unwrap_or_else(|e| e.into_inner());
        let more = total.saturating_sub(tenants.names.len());
        tenants.names.reserve_exact(more);
        tenants.meters.reserve_exact(more);
        let meters = total.saturating_sub(tenants.arena.placed);
        tenants.arena.reserve(meters);
        let TenantNames { names, numbers, .. } = &mut *tenants;
        numbers.reserve(more, |&n| hash_name(&names[n as usize]));
    }

    pub fn name(self) -> Arc<str> {
        tenant_names()[self.index()].clone()
    }

    /// Its place in [`tenant_names`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Every tenant's name, by number, under one hold of the list's lock (a report names
/// thousands of rows). Ask for no number while holding it.
pub fn tenant_names() -> impl Deref<Target = [Arc<str>]> {
    struct Names(RwLockReadGuard<'static, TenantNames>);
    impl Deref for Names {
        type Target = [Arc<str>];
        fn deref(&self) -> &[Arc<str>] {
            &self.0.names
        }
    }
    Names(TENANTS.read().unwrap_or_else(|e| e.into_inner()))
}

/// The `action` label's values, by number in a meter's key.
pub const ACTIONS: [&str; 5] = [
    "redirect",
    "forward",
    "gone",
    "reject",
    crate::route::CHALLENGE_ACTION,
];

/// An `action` label's place in [`ACTIONS`]; `None` for another.
pub fn action_number(action: &str) -> Option<usize> {
    ACTIONS.iter().position(|a| *a == action)
}

/// Label combinations counted in the tenant's own memory; more go to the caller's overflow.
/// Three, so that a meter is one 64-byte cache line.
const SLOTS: usize = 3;

/// A tenant's request counts by (kind, action, code), in one cache line.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Meter {
    /// A combination's key (see [`key`]) once a slot has been claimed for it, 0 before.
    keys: [AtomicU32; SLOTS],
    /// The tenant's number: what the census knows it by.
    pub number: TenantNo,
    counts: [AtomicU64; SLOTS],
    /// The tenant's id: the `tenant` label.
    pub tenant: Arc<str>,
}

const _: () = assert!(std::mem::size_of::<Meter>() == 64);

/// One combination, as [`Meter::each`] gives it.
pub struct Counted {
    pub kind: Arc<str>,
    pub action: &'static str,
    pub code: u16,
    pub count: u64,
}

/// (kind, action, code) in one non-zero word; `None` for what no slot holds.
fn key(kind: &Kind, action: &str, code: u16) -> Option<u32> {
    let action = action_number(action)? as u32;
    (usize::from(kind.number) < MAX_KINDS && code < 1024)
        .then(|| ((u32::from(kind.number) << 13) | (action << 10) | u32::from(code)) + 1)
}

impl Meter {
    /// The meter of the tenant `id`, made the first time it is asked for.
    pub fn of(id: &str) -> &'static Meter {
        let number = TenantNo::of(id);
        if let Some(meter) =
            TENANTS.read().unwrap_or_else(|e| e.into_inner()).meters[number.index()]
        {
            return meter;
        }
        let mut tenants = TENANTS.write().unwrap_or_else(|e| e.into_inner());
        let TenantNames {
            names,
            meters,
            arena,
            ..
        } = &mut *tenants;
        let meter = meters[number.index()].get_or_insert_with(|| {
            arena.place(Meter {
                keys: Default::default(),
                number,
                counts: Default::default(),
                tenant: names[number.index()].clone(),
            })
        });
        meter
    }

    /// Counts one request; `false` when the combination has no slot (the tenant already has
    /// [`SLOTS`] others): the caller counts it elsewhere.
    pub fn count(&self, kind: &Kind, action: &str, code: u16) -> bool {
        let Some(key) = key(kind, action, code) else {
            return false;
        };
        for (slot, count) in self.keys.iter().zip(&self.counts) {
            let held = match slot.load(Ordering::Acquire) {
                0 => match slot.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => key,
                    Err(other) => other,
                },
                held => held,
            };
            if held == key {
                count.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    /// Starts loading the meter's cache line, which labelling and counting the request will
    /// touch. With 100 000 tenants it is cold: asked for as soon as the tenant is known, it
    /// arrives while the rule is matched instead of stalling the count after it (a locked add
    /// waits for its line with nothing else in flight).
    #[inline]
    pub fn prefetch(&self) {
        super::huge::prefetch(self);
    }

    /// Every combination counted here; `kinds` is [`Kind::names`].
    pub fn each<'a>(&'a self, kinds: &'a [Arc<str>]) -> impl Iterator<Item = Counted> + 'a {
        self.keys
            .iter()
            .zip(&self.counts)
            .filter_map(|(slot, count)| {
                let key = slot.load(Ordering::Acquire).checked_sub(1)?;
                Some(Counted {
                    kind: kinds.get((key >> 13) as usize)?.clone(),
                    action: ACTIONS[(key >> 10 & 7) as usize],
                    code: (key & 1023) as u16,
                    count: count.load(Ordering::Relaxed),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_combinations_in_slots_until_they_run_out() {
        let meter = Meter::of("slotted-acme");
        let (web, api) = (Kind::new("web"), Kind::new("api"));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        assert!(meter.count(&web, "redirect", 307));
                    }
                });
            }
        });
        assert!(meter.count(&api, "forward", 200));
        assert!(meter.count(&api, "reject", 0));
        assert!(!meter.count(&api, "gone", 410), "a fourth combination");
        assert!(!meter.count(&web, "no such action", 200));
        let mut counted: Vec<_> = meter
            .each(&Kind::names())
            .map(|c| (c.kind.to_string(), c.action, c.code, c.count))
            .collect();
        counted.sort();
        assert_eq!(
            counted,
            [
                ("api".into(), "forward", 200, 1),
                ("api".into(), "reject", 0, 1),
                ("web".into(), "redirect", 307, 4000),
            ]
        );
    }

    #[test]
    fn a_tenant_keeps_its_number_and_is_named_by_it() {
        let acme: Arc<str> = "numbered-acme".into();
        let number = TenantNo::of(&acme);
        assert_eq!(Meter::of("numbered-acme").number, number);
        assert!(std::ptr::eq(Meter::of(&acme), Meter::of(&acme)));
        assert_ne!(TenantNo::of("numbered-other"), number);
        assert_eq!(&*number.name(), "numbered-acme");
        assert_eq!(&*tenant_names()[number.index()], "numbered-acme");
    }

    #[test]
    fn a_kind_keeps_its_number() {
        assert_eq!(Kind::new("timeclock"), Kind::new("timeclock"));
        assert_ne!(Kind::new("timeclock").number, Kind::new("mobile").number);
    }
}
