//! The census table one background task owns: a bounded table of client rows (the least
//! recently seen evicted first), the per-kind timeline behind the 48-hour chart and the
//! per-tenant day counts behind the summary.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use compact_str::CompactString;
use serde::ser::{Serialize, SerializeSeq, SerializeStruct, Serializer};

use super::now;
use super::rows::{Client, ClientRow, DayCount, Report, TimelinePoint, Watch, DAY};
use crate::table::{tenant_names, Kind, TenantNo};

/// Width of one timeline bucket, and how many are kept (48 hours).
pub const BUCKET_SECONDS: u64 = 300;
const BUCKETS: u64 = 576;
/// Days of per-tenant counts kept: the summary's seven and the one the clock is leaving.
const DAYS: usize = 8;

pub struct Data {
    /// Keyed by a hash of (tenant, kind, client id): no strings are built to look a row up.
    clients: Slots,
    capacity: usize,
    keys: foldhash::fast::RandomState,
    /// bucket start → (kind's index, count): a handful of kinds, found by a scan of numbers.
    timeline: BTreeMap<u64, Vec<(u16, u64)>>,
    /// day start → count by tenant number: one cache line to count in, and no name read.
    days: BTreeMap<u64, Vec<u64>>,
    evictions: u64,
    /// Tenants with a census-gated phase: watched since when, last call per kind. Never
    /// evicted, unlike the rows: a gate must not open because its clients were pushed out.
    watch: BTreeMap<String, Watch>,
}

/// A row as the worker keeps it: tenant and kind by number, the client shared by all its
/// rows; strings are made only when a report asks for them. One cache line, aligned: with
/// 100 000 tenants nearly every folded sighting replaces an evicted row, and the victim's
/// line is cold; a row of 80 bytes spanned two.
#[repr(align(64))]
pub struct Row {
    pub tenant: TenantNo,
    /// Its place in [`Kind::names`].
    pub kind: u16,
    pub last_status: u16,
    pub client: Arc<Client>,
    pub first_seen: u64,
    pub last_seen: u64,
    pub count: u64,
    /// Inline up to 24 bytes: most paths need no allocation, and replacing one frees none.
    pub last_path: CompactString,
}

const _: () = assert!(std::mem::size_of::<Row>() == 64);

/// The names a report gives rows: [`tenant_names`] and [`Kind::names`].
struct Names<T> {
    tenants: T,
    kinds: Vec<Arc<str>>,
}

/// Both lists, as they are now.
fn names() -> Names<impl std::ops::Deref<Target = [Arc<str>]>> {
    Names {
        kinds: Kind::names(),
        tenants: tenant_names(),
    }
}

impl Row {
    fn to_client_row<T: std::ops::Deref<Target = [Arc<str>]>>(
        &self,
        names: &Names<T>,
    ) -> ClientRow {
        ClientRow {
            tenant: names.tenants[self.tenant.index()].to_string(),
            kind: Kind::name_at(&names.kinds, self.kind).to_string(),
            client: Client::clone(&self.client),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            count: self.count,
            last_path: self.last_path.to_string(),
            last_status: self.last_status,
            customer_number: None,
            contact: None,
        }
    }
}

impl Data {
    pub fn new(capacity: NonZeroUsize) -> Self {
        Data {
            clients: Slots::default(),
            capacity: capacity.get(),
            keys: foldhash::fast::RandomState::default(),
            timeline: BTreeMap::new(),
            days: BTreeMap::new(),
            evictions: 0,
            watch: BTreeMap::new(),
        }
    }

    /// Watches exactly `tenants` (those with a census-gated phase), each from `now` if it was
    /// not watched before.
    pub fn watch_only<'a>(&mut self, tenants: impl Iterator<Item = &'a str>, now: u64) {
        let mut kept = BTreeMap::new();
        for tenant in tenants {
            let watch = self.watch.remove(tenant).unwrap_or(Watch {
                since: now,
                last_call: BTreeMap::new(),
            });
            kept.insert(tenant.to_owned(), watch);
        }
        self.watch = kept;
    }

    pub fn watch(&self) -> &BTreeMap<String, Watch> {
        &self.watch
    }

    /// Adds one client's requests (a row as it would stand alone); returns whether a client
    /// was evicted to make room.
    pub fn record(&mut self, s: Row) -> bool {
        // A name is looked up only while some tenant is watched.
        let watched = (!self.watch.is_empty()).then(|| s.tenant.name());
        if let Some(watch) = watched.and_then(|name| self.watch.get_mut(&*name)) {
            let kind = Kind::name_at(&Kind::names(), s.kind);
            match watch.last_call.get_mut(&*kind) {
                Some(last) => *last = (*last).max(s.last_seen),
                None => {
                    watch.last_call.insert(kind.to_string(), s.last_seen);
                }
            }
        }
        self.count_time(s.last_seen - s.last_seen % BUCKET_SECONDS, s.kind, s.count);
        while self.timeline.len() as u64 > BUCKETS {
            self.timeline.pop_first();
        }
        self.count_day(s.last_seen - s.last_seen % DAY, s.tenant, s.count);
        while self.days.len() > DAYS {
            self.days.pop_first();
        }
        let key = self.keys.hash_one((s.tenant, s.kind, &*s.client.id));
        if let Some(slot) = self.clients.slot(key) {
            let row = &mut self.clients.rows[slot];
            // A 64-bit key collision would merge two clients; check rather than trust.
            if row.tenant == s.tenant && row.kind == s.kind && row.client.id == s.client.id {
                row.first_seen = row.first_seen.min(s.first_seen);
                row.count += s.count;
                if s.last_seen >= row.last_seen {
                    row.last_seen = s.last_seen;
                    row.last_path = s.last_path;
                    row.last_status = s.last_status;
                    self.clients.seen_at(slot, s.last_seen);
                }
                return false;
            }
            // The colliding row gives way, as an evicted one.
            self.clients.replace(slot, key, s);
            self.evictions += 1;
            return true;
        }
        self.add(key, s)
    }

    /// Adds a row under a key not in the table, in the place of the least recently seen
    /// when the table is full; returns whether one was evicted.
    fn add(&mut self, key: u64, row: Row) -> bool {
        if self.clients.len() >= self.capacity {
            if let Some(slot) = self.clients.oldest() {
                self.clients.replace(slot, key, row);
                self.evictions += 1;
                return true;
            }
        }
        self.clients.push(key, row);
        false
    }

    /// Counts in the timeline. Rows come in order of time, so the bucket is nearly always the
    /// newest, found without a search.
    fn count_time(&mut self, bucket: u64, kind: u16, count: u64) {
        let kinds = match self.timeline.last_entry() {
            Some(last) if *last.key() == bucket => last.into_mut(),
            _ => self.timeline.entry(bucket).or_default(),
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += count,
            None => kinds.push((kind, count)),
        }
    }

    fn count_day(&mut self, day: u64, tenant: TenantNo, count: u64) {
        let counts = self.days.entry(day).or_default();
        let at = tenant.index();
        if counts.len() <= at {
            counts.resize(at + 1, 0);
        }
        counts[at] += count;
    }

    /// Drops the rows last seen before `cutoff` (Unix seconds): `census.retention`.
    pub fn prune(&mut self, cutoff: u64) {
        self.clients.retain(|row| row.last_seen >= cutoff);
        self.timeline.retain(|at, _| *at >= cutoff);
        self.days.retain(|day, _| day + DAY > cutoff);
    }

    /// Erases every row of the client `id` last seen at or before `until`; returns how many
    /// there were.
    pub fn forget(&mut self, id: &str, until: u64) -> usize {
        self.clients
            .retain(|row| row.client.id != id || row.last_seen > until)
    }

    /// Writes, as JSON, the [`Report`] that [`Data::report`] would make, without making it
    /// (100 000 rows as owned strings took 30 MB at every snapshot, which the allocator then
    /// kept) and without holding the table's lock but for [`ROWS_PER_LOCK`] rows at a time:
    /// with 100 000 rows the whole write took long enough for the workers' shards, which the
    /// drain cannot fold meanwhile, to grow by megabytes. Rows come in the order of the
    /// moment the write began, each as it is when its chunk is written; a row evicted
    /// meanwhile is left out.
    pub fn write_report(table: &Mutex<Data>, out: impl std::io::Write) -> serde_json::Result<()> {
        serde_json::to_writer(out, &Snapshot(table))
    }

    pub fn report(&self) -> Report {
        let names = names();
        Report {
            generated_at: now(),
            bucket_seconds: BUCKET_SECONDS,
            evictions: self.evictions,
            clients: self
                .by_recency()
                .into_iter()
                .map(|(_, row)| row.to_client_row(&names))
                .collect(),
            timeline: self.timeline_points(&names.kinds).collect(),
            days: self.day_counts(&names.tenants).collect(),
            watch: self.watch.clone(),
            ..Report::default()
        }
    }

    /// The `n` rows seen most (the latest first among equals), made into report rows. Only
    /// those `n` are copied: every scrape asks, and a whole report of 100 000 rows as owned
    /// strings was 30 MB, which the allocator kept.
    pub fn busiest(&self, n: usize) -> Vec<ClientRow> {
        let order = |a: &&Row, b: &&Row| b.count.cmp(&a.count).then(b.last_seen.cmp(&a.last_seen));
        let mut rows: Vec<&Row> = self.clients.rows.iter().collect();
        if n < rows.len() {
            rows.select_nth_unstable_by(n, order);
            rows.truncate(n);
        }
        rows.sort_by(order);
        let names = names();
        rows.into_iter().map(|r| r.to_client_row(&names)).collect()
    }

    /// The rows and their keys, most recently seen first (the busier first among equals).
    fn by_recency(&self) -> Vec<(u64, &Row)> {
        let mut rows: Vec<(u64, &Row)> = self.clients.iter().collect();
        rows.sort_by(|(_, a), (_, b)| b.last_seen.cmp(&a.last_seen).then(b.count.cmp(&a.count)));
        rows
    }

    /// The timeline's points, each bucket's by kind name. `kinds` is [`Kind::names`].
    fn timeline_points<'a>(
        &'a self,
        kinds: &'a [Arc<str>],
    ) -> impl Iterator<Item = TimelinePoint> + 'a {
        self.timeline.iter().flat_map(move |(at, counts)| {
            let mut points: Vec<TimelinePoint> = counts
                .iter()
                .map(|&(kind, count)| TimelinePoint {
                    at: *at,
                    kind: Kind::name_at(kinds, kind).to_string(),
                    count,
                })
                .collect();
            points.sort_by(|a, b| a.kind.cmp(&b.kind));
            points
        })
    }

    /// `names` is [`tenant_names`].
    fn day_counts<'a>(&'a self, names: &'a [Arc<str>]) -> impl Iterator<Item = DayCount> + 'a {
        self.days.iter().flat_map(move |(day, counts)| {
            let counted = counts.iter().enumerate().filter(|(_, n)| **n > 0);
            counted.map(move |(tenant, count)| DayCount {
                day: *day,
                tenant: names[tenant].to_string(),
                count: *count,
            })
        })
    }

    /// The number of client rows.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Loads a saved report (the state file) into an empty table.
    pub fn apply(&mut self, report: Report) {
        // Oldest first: past the capacity, the oldest give way.
        let mut rows = report.clients;
        rows.sort_by_key(|r| r.last_seen);
        for row in rows {
            let (tenant, kind) = (TenantNo::of(&row.tenant), Kind::new(&row.kind).index());
            let key = self.keys.hash_one((tenant, kind, &*row.client.id));
            let row = Row {
                tenant,
                kind,
                client: Arc::new(row.client),
                first_seen: row.first_seen,
                last_seen: row.last_seen,
                count: row.count,
                last_path: row.last_path.into(),
                last_status: row.last_status,
            };
            match self.clients.slot(key) {
                Some(slot) => self.clients.replace(slot, key, row),
                None => {
                    self.add(key, row);
                }
            }
        }
        for p in report.timeline {
            self.count_time(p.at, Kind::new(&p.kind).index(), p.count);
        }
        for d in report.days {
            self.count_day(d.day, TenantNo::of(&d.tenant), d.count);
        }
        self.evictions = report.evictions;
        for (tenant, watch) in report.watch {
            match self.watch.get_mut(&tenant) {
                Some(mine) => mine.merge(&watch),
                None => {
                    self.watch.insert(tenant, watch);
                }
            }
        }
    }
}

/// The client rows, in slots: a row is written in place, and found through an index of keys
/// small enough (16 bytes an entry) to stay in cache where the rows do not. With 100 000
/// tenants and a full table nearly every sighting is a new row that evicts another: rows kept
/// in one keyed map were all moved whenever the map rehashed. The slots are also linked in
/// order of when their rows were last seen, so that the least recently seen is at hand: a
/// search for it (a pass over every slot's time, a selection and a sort, an eighth of the
/// table at a time) cost 660 instructions per evicted row.
struct Slots {
    index: HashMap<u64, u32, foldhash::fast::RandomState>,
    rows: Vec<Row>,
    /// Parallel to `rows`: each slot's key, when its row was last seen, and its neighbours in
    /// the order of that time (`NONE` at either end).
    keys: Vec<u64>,
    seen: Vec<u64>,
    older: Vec<u32>,
    newer: Vec<u32>,
    /// The ends of that order: the least and the most recently seen rows.
    oldest: u32,
    newest: u32,
}

/// No slot: the end of the order of times.
const NONE: u32 = u32::MAX;

impl Default for Slots {
    fn default() -> Self {
        Slots {
            index: HashMap::default(),
            rows: Vec::new(),
            keys: Vec::new(),
            seen: Vec::new(),
            older: Vec::new(),
            newer: Vec::new(),
            oldest: NONE,
            newest: NONE,
        }
    }
}

impl Slots {
    fn len(&self) -> usize {
        self.rows.len()
    }

    fn slot(&self, key: u64) -> Option<usize> {
        self.index.get(&key).map(|&slot| slot as usize)
    }

    fn get(&self, key: u64) -> Option<&Row> {
        self.slot(key).map(|slot| &self.rows[slot])
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &Row)> {
        self.keys.iter().copied().zip(&self.rows)
    }

    /// The slot of the least recently seen row.
    fn oldest(&self) -> Option<usize> {
        (!self.rows.is_empty()).then_some(self.oldest as usize)
    }

    fn push(&mut self, key: u64, row: Row) {
        let slot = self.rows.len();
        self.index.insert(key, slot as u32);
        self.keys.push(key);
        self.seen.push(row.last_seen);
        self.older.push(NONE);
        self.newer.push(NONE);
        self.rows.push(row);
        self.link(slot);
    }

    /// Puts `row`, under `key`, in the place of the row in `slot`.
    fn replace(&mut self, slot: usize, key: u64, row: Row) {
        self.index.remove(&self.keys[slot]);
        self.index.insert(key, slot as u32);
        self.keys[slot] = key;
        self.seen_at(slot, row.last_seen);
        self.rows[slot] = row;
    }

    /// The row in `slot` was (last) seen at `at`.
    fn seen_at(&mut self, slot: usize, at: u64) {
        self.unlink(slot);
        self.seen[slot] = at;
        self.link(slot);
    }

    /// Links an unlinked `slot` in by its time: after every row seen at or before it. A
    /// sighting is nearly always the newest, so the walk from the newest end stops at once;
    /// one older than every row goes first without a walk.
    fn link(&mut self, slot: usize) {
        let at = self.seen[slot];
        let mut before = self.newest;
        if self.oldest != NONE && at < self.seen[self.oldest as usize] {
            before = NONE;
        }
        while before != NONE && self.seen[before as usize] > at {
            before = self.older[before as usize];
        }
        let after = match before {
            NONE => self.oldest,
            b => self.newer[b as usize],
        };
        self.older[slot] = before;
        self.newer[slot] = after;
        self.join(before, slot as u32);
        self.join(slot as u32, after);
    }

    fn unlink(&mut self, slot: usize) {
        self.join(self.older[slot], self.newer[slot]);
    }

    /// Makes `newer` follow `older` in the order of times (`NONE`: the end on that side).
    fn join(&mut self, older: u32, newer: u32) {
        match older {
            NONE => self.oldest = newer,
            o => self.newer[o as usize] = newer,
        }
        match newer {
            NONE => self.newest = older,
            n => self.older[n as usize] = older,
        }
    }

    /// Keeps the rows `keep` says to keep; returns how many went.
    fn retain(&mut self, keep: impl Fn(&Row) -> bool) -> usize {
        let before = self.rows.len();
        let mut slot = 0;
        while slot < self.rows.len() {
            if keep(&self.rows[slot]) {
                slot += 1;
                continue;
            }
            // The last row moves into the hole, and its neighbours are told where it went.
            self.unlink(slot);
            self.index.remove(&self.keys[slot]);
            self.rows.swap_remove(slot);
            self.keys.swap_remove(slot);
            self.seen.swap_remove(slot);
            self.older.swap_remove(slot);
            self.newer.swap_remove(slot);
            if let Some(&moved) = self.keys.get(slot) {
                self.index.insert(moved, slot as u32);
                self.join(self.older[slot], slot as u32);
                self.join(slot as u32, self.newer[slot]);
            }
        }
        before - self.rows.len()
    }
}

/// [`Data`] serialized in the shape of [`Report`] (the fields a restore reads), row by row.
struct Snapshot<'a>(&'a Mutex<Data>);

/// Rows written per hold of the table's lock by a snapshot: the longest the drain waits.
const ROWS_PER_LOCK: usize = 1024;

fn lock<E: serde::ser::Error>(table: &Mutex<Data>) -> Result<MutexGuard<'_, Data>, E> {
    table
        .lock()
        .map_err(|_| E::custom("the census table was poisoned"))
}

impl Serialize for Snapshot<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (keys, evictions) = {
            let data = lock::<S::Error>(self.0)?;
            let keys: Vec<u64> = data.by_recency().into_iter().map(|(k, _)| k).collect();
            (keys, data.evictions)
        };
        let mut report = serializer.serialize_struct("Report", 7)?;
        report.serialize_field("generated_at", &now())?;
        report.serialize_field("bucket_seconds", &BUCKET_SECONDS)?;
        report.serialize_field("evictions", &evictions)?;
        report.serialize_field("clients", &Chunked(self.0, &keys))?;
        // The rest is bounded (48 hours of buckets, 8 days of tenants): one hold.
        let data = lock::<S::Error>(self.0)?;
        let names = names();
        report.serialize_field("timeline", &Each(|| data.timeline_points(&names.kinds)))?;
        report.serialize_field("days", &Each(|| data.day_counts(&names.tenants)))?;
        if !data.watch.is_empty() {
            report.serialize_field("watch", &data.watch)?;
        }
        report.end()
    }
}

/// The rows of these keys that are still in the table, [`ROWS_PER_LOCK`] to a hold.
struct Chunked<'a>(&'a Mutex<Data>, &'a [u64]);

impl Serialize for Chunked<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut rows = serializer.serialize_seq(None)?;
        for chunk in self.1.chunks(ROWS_PER_LOCK) {
            let data = lock::<S::Error>(self.0)?;
            let names = names();
            for row in chunk.iter().filter_map(|k| data.clients.get(*k)) {
                rows.serialize_element(&row.to_client_row(&names))?;
            }
        }
        rows.end()
    }
}

/// Serializes what an iterator yields as a sequence, without collecting it.
struct Each<F>(F);

impl<F, I> Serialize for Each<F>
where
    F: Fn() -> I,
    I: Iterator<Item: Serialize>,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq((self.0)())
    }
}

#[cfg(test)]
mod tests {
    use super::super::agent::ClientClass;
    use super::*;

    pub fn sighting(tenant: &str, id: &str, at: u64) -> Row {
        Row {
            tenant: TenantNo::of(tenant),
            kind: Kind::new("api").index(),
            client: Arc::new(Client {
                id: id.into(),
                user_agent: "x".into(),
                address: "192.0.2.1".into(),
                credential: None,
                class: ClientClass::Unknown,
            }),
            last_path: "/HRM/API/v1".into(),
            last_status: 200,
            first_seen: at,
            last_seen: at,
            count: 1,
        }
    }

    #[test]
    fn the_written_report_reads_back_as_the_report() {
        let mut data = Data::new(NonZeroUsize::new(10).unwrap());
        data.record(sighting("t", "a", now() - 100));
        data.record(sighting("u", "b", now() - 50));
        data.record(sighting("t", "a", now() - 10));
        data.watch_only(["t"].into_iter(), now() - 1000);
        let table = Mutex::new(data);
        let mut text = Vec::new();
        Data::write_report(&table, &mut text).unwrap();
        let written: Report = serde_json::from_slice(&text).unwrap();
        let made = table.into_inner().unwrap().report();
        assert_eq!(written.clients.len(), 2);
        assert!(!written.timeline.is_empty() && !written.days.is_empty());
        assert!(!written.watch.is_empty());
        assert_eq!(
            Report {
                generated_at: made.generated_at,
                ..written
            },
            made
        );
    }

    #[test]
    fn the_timeline_names_each_kind_in_order_and_a_restore_keeps_it() {
        let mut data = Data::new(NonZeroUsize::new(10).unwrap());
        for kind in ["web", "api", "web"] {
            data.record(Row {
                kind: Kind::new(kind).index(),
                ..sighting("t", kind, 1000)
            });
        }
        let timeline = data.report().timeline;
        let points: Vec<_> = timeline
            .iter()
            .map(|p| (p.kind.as_str(), p.count))
            .collect();
        assert_eq!(points, [("api", 1), ("web", 2)]);
        let mut restored = Data::new(NonZeroUsize::new(10).unwrap());
        restored.apply(data.report());
        assert_eq!(restored.report().timeline, timeline);
        assert_eq!(restored.report().clients, data.report().clients);
        assert_eq!(&*Kind::name_at(&Kind::names(), u16::MAX), "_other");
    }

    #[test]
    fn a_snapshot_of_many_chunks_holds_every_row_in_the_report_order() {
        let rows = 2 * ROWS_PER_LOCK + 7;
        let mut data = Data::new(NonZeroUsize::new(rows).unwrap());
        for i in 0..rows {
            data.record(sighting(&format!("t{i}"), "a", now() - (i % 50) as u64));
        }
        let table = Mutex::new(data);
        let mut text = Vec::new();
        Data::write_report(&table, &mut text).unwrap();
        let written: Report = serde_json::from_slice(&text).unwrap();
        let made = table.into_inner().unwrap().report();
        assert_eq!(written.clients.len(), rows);
        assert_eq!(written.clients, made.clients);
    }

    #[test]
    fn the_busiest_rows_are_the_report_sorted_by_count() {
        let mut data = Data::new(NonZeroUsize::new(100).unwrap());
        for i in 0..40u64 {
            for _ in 0..(i * 7 % 13) {
                data.record(sighting(&format!("t{i}"), "a", now() - i));
            }
        }
        let mut expected = data.report().clients;
        expected.sort_by(|a, b| b.count.cmp(&a.count).then(b.last_seen.cmp(&a.last_seen)));
        for n in [0, 1, 5, 36, 100] {
            let want: Vec<_> = expected.iter().take(n).cloned().collect();
            assert_eq!(data.busiest(n), want, "n = {n}");
        }
    }

    #[test]
    fn counts_and_evicts_the_least_recently_seen() {
        let mut data = Data::new(NonZeroUsize::new(2).unwrap());
        assert!(!data.record(sighting("t", "a", 1000)));
        assert!(!data.record(sighting("t", "b", 1001)));
        assert!(!data.record(sighting("t", "a", 1002)));
        assert!(
            data.record(sighting("t", "c", 1003)),
            "b was least recently seen"
        );
        let report = data.report();
        let ids: Vec<_> = report
            .clients
            .iter()
            .map(|r| (r.client.id.as_str(), r.count))
            .collect();
        assert_eq!(ids, vec![("c", 1), ("a", 2)]);
        assert_eq!(report.evictions, 1);
        assert_eq!(
            report.timeline,
            vec![TimelinePoint {
                at: 900,
                kind: "api".into(),
                count: 4
            }]
        );
        assert_eq!(
            report.days,
            vec![DayCount {
                day: 0,
                tenant: "t".into(),
                count: 4
            }]
        );
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_seen_and_spares_a_row_seen_again() {
        let mut data = Data::new(NonZeroUsize::new(16).unwrap());
        for i in 0..16 {
            assert!(!data.record(sighting(&format!("t{i}"), "a", 1000 + i)));
        }
        // Full: t0 goes (t1 is chosen next, an eighth of the table at a time).
        assert!(data.record(sighting("t16", "a", 1016)));
        // t1 is seen again before its turn: kept, and the oldest after it goes instead.
        assert!(!data.record(sighting("t1", "a", 1017)));
        assert!(data.record(sighting("t17", "a", 1018)));
        let mut tenants: Vec<String> = data
            .report()
            .clients
            .into_iter()
            .map(|r| r.tenant)
            .collect();
        tenants.sort();
        let mut want: Vec<String> = (1..18)
            .filter(|i| *i != 2)
            .map(|i| format!("t{i}"))
            .collect();
        want.sort();
        assert_eq!(tenants, want);
        assert_eq!(data.evictions, 2);
    }

    #[test]
    fn a_row_moved_by_a_removal_is_still_found_and_not_mistaken_for_a_victim() {
        let mut data = Data::new(NonZeroUsize::new(16).unwrap());
        data.record(sighting("t0", "a", 998));
        data.record(sighting("t1", "x", 999));
        for i in 2..15 {
            data.record(sighting(&format!("t{i}"), "a", 1000));
        }
        data.record(sighting("t15", "a", 999));
        // Full: the oldest eighth (t0, then t1) are chosen, and t0 goes.
        assert!(data.record(sighting("t16", "a", 1001)));
        // t1, the next victim, is erased; the last slot's row (t15, last seen in the same
        // second as t1) moves into its place.
        assert_eq!(data.forget("x", 2000), 1);
        assert!(
            !data.record(sighting("t15", "a", 999)),
            "found where it moved"
        );
        // A sighting folded late, older than any row.
        assert!(!data.record(sighting("late", "a", 990)), "room for one");
        // The victim chosen before the move is gone: the oldest now goes, not t15.
        assert!(data.record(sighting("t17", "a", 1002)));
        let mut rows: Vec<(String, u64)> = data
            .report()
            .clients
            .into_iter()
            .map(|r| (r.tenant, r.count))
            .collect();
        rows.sort();
        let mut want: Vec<(String, u64)> = (2..18)
            .map(|i| (format!("t{i}"), if i == 15 { 2 } else { 1 }))
            .collect();
        want.sort();
        assert_eq!(rows, want);
        assert_eq!(data.evictions, 2);
    }

    impl Slots {
        /// The slots from the least to the most recently seen, checking every link.
        fn in_order(&self) -> Vec<usize> {
            let mut order = Vec::new();
            let mut at = self.oldest;
            let mut older = NONE;
            while at != NONE {
                assert_eq!(self.older[at as usize], older, "links of slot {at}");
                order.push(at as usize);
                assert!(order.len() <= self.rows.len(), "a cycle");
                (older, at) = (at, self.newer[at as usize]);
            }
            assert_eq!(self.newest, older);
            order
        }
    }

    proptest::proptest! {
        /// Whatever is recorded, erased or pruned, in whatever order of times, the slots stay
        /// linked in order of when their rows were last seen, and a full table evicts a row
        /// seen no later than any other.
        #[test]
        fn the_order_of_times_holds_and_the_least_recently_seen_goes(
            ops in proptest::collection::vec((0u8..12, 0u8..4, 0u64..40, 0u8..20), 1..120),
        ) {
            let mut data = Data::new(NonZeroUsize::new(6).unwrap());
            for (tenant, id, at, op) in ops {
                let at = 1000 + at;
                match op {
                    0 => {
                        data.forget(&id.to_string(), at);
                    }
                    1 => data.prune(at),
                    _ => {
                        let before: Vec<(TenantNo, String, u64)> = data.clients.rows.iter()
                            .map(|r| (r.tenant, r.client.id.clone(), r.last_seen))
                            .collect();
                        let oldest = before.iter().map(|r| r.2).min();
                        if data.record(sighting(&format!("t{tenant}"), &id.to_string(), at)) {
                            let gone: Vec<_> = before.iter()
                                .filter(|(t, i, _)| !data.clients.rows.iter().any(|r| r.tenant == *t && r.client.id == *i))
                                .collect();
                            proptest::prop_assert_eq!(gone.len(), 1);
                            proptest::prop_assert_eq!(Some(gone[0].2), oldest);
                        }
                    }
                }
                let order = data.clients.in_order();
                proptest::prop_assert_eq!(order.len(), data.clients.rows.len());
                let times: Vec<u64> = order.iter().map(|&s| data.clients.seen[s]).collect();
                proptest::prop_assert!(times.windows(2).all(|w| w[0] <= w[1]), "{:?}", times);
                for (slot, row) in data.clients.rows.iter().enumerate() {
                    proptest::prop_assert_eq!(data.clients.seen[slot], row.last_seen);
                    proptest::prop_assert_eq!(data.clients.slot(data.clients.keys[slot]), Some(slot));
                }
            }
        }
    }

    #[test]
    fn forget_erases_every_row_of_the_client() {
        let mut data = Data::new(NonZeroUsize::new(5).unwrap());
        data.record(sighting("t", "a", 1000));
        data.record(sighting("u", "a", 1000));
        data.record(sighting("u", "b", 1000));
        assert_eq!(data.forget("b", 999), 0, "seen after the erasure: kept");
        assert_eq!(data.forget("a", 1000), 2);
        assert_eq!(data.forget("a", 1000), 0);
        let ids: Vec<_> = data
            .report()
            .clients
            .into_iter()
            .map(|r| r.client.id)
            .collect();
        assert_eq!(ids, ["b"]);
    }
}
