//! `signpost_requests_total{tenant,kind,action,code}`, counted without a Prometheus series
//! object per tenant.
//!
//! The prometheus crate keeps, for every label combination, a child holding its own copy of
//! the metric's description (name, help text, label names) and of its label pairs: about
//! 800 bytes each, 80 MB for 100 000 tenants once each has been called. Here a request is
//! counted in its tenant's [`Meter`], which its labels already hold (one atomic add, no
//! lookup, no lock), and the labelled series are written only when `/metrics` is read,
//! straight into the response ([`super::exposition`]). The rare combination a meter has no
//! slot for is counted in a map of the worker thread's own (as the census' shards: never
//! contended but by a scrape).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex};

use super::exposition;
use super::slot::{self, SLOTS};
use crate::table::{Kind, Meter, Table};

const NAME: &str = "signpost_requests_total";
const HELP: &str = "Requests on legacy hosts, by outcome.";
/// A line's length beside its name and label values: the label names, quotes and the code,
/// and up to 20 digits of count.
const LINE_OVERHEAD: usize = r#"{action="",code="000",kind="",tenant=""} "#.len() + 21;

/// One combination a meter had no slot for, and its count in one shard.
struct Entry {
    meter: &'static Meter,
    kind: Kind,
    action: &'static str,
    code: u16,
    count: u64,
}

type Shard = HashMap<u64, Entry, foldhash::fast::RandomState>;

/// The request counter; clones share the counts.
#[derive(Clone)]
pub struct RequestCounts {
    inner: Arc<Inner>,
}

struct Inner {
    /// Combinations past a meter's slots, per worker.
    overflow: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    /// Requests refused before a tenant was found (tenant `_unknown`, kind `_none`).
    unknown: &'static Meter,
}

impl Default for RequestCounts {
    fn default() -> Self {
        RequestCounts {
            inner: Arc::new(Inner {
                overflow: (0..SLOTS).map(|_| Mutex::new(Shard::default())).collect(),
                hasher: foldhash::fast::RandomState::default(),
                unknown: Meter::of("_unknown"),
            }),
        }
    }
}

impl RequestCounts {
    /// Counts one request in its tenant's meter; allocates only for a combination the meter
    /// has no slot for and this worker has not seen.
    pub fn inc(&self, meter: &'static Meter, kind: &Kind, action: &'static str, code: u16) {
        if !meter.count(kind, action, code) {
            self.overflow(meter, kind, action, code);
        }
    }

    /// Counts a request refused before a tenant was found (tenant `_unknown`, kind `_none`).
    pub fn inc_unknown(&self, code: u16) {
        self.inc(self.inner.unknown, &Kind::none(), "reject", code);
    }

    fn overflow(&self, meter: &'static Meter, kind: &Kind, action: &'static str, code: u16) {
        let inner = &*self.inner;
        let at = std::ptr::from_ref(meter) as usize;
        let mut key = inner.hasher.hash_one((at, &**kind, action, code));
        let Ok(mut shard) = inner.overflow[slot::mine()].lock() else {
            return;
        };
        loop {
            match shard.get_mut(&key) {
                Some(e)
                    if std::ptr::eq(e.meter, meter)
                        && e.kind == *kind
                        && e.action == action
                        && e.code == code =>
                {
                    e.count += 1;
                    return;
                }
                // Another combination with the same 64-bit hash: the next slot.
                Some(_) => key = key.wrapping_add(1),
                None => {
                    let entry = Entry {
                        meter,
                        kind: kind.clone(),
                        action,
                        code,
                        count: 1,
                    };
                    shard.insert(key, entry);
                    return;
                }
            }
        }
    }

    /// Writes the counter in the Prometheus text format: every combination's count (summed
    /// over the meter and the workers' overflow) of the tenants in `table`, by tenant. A
    /// reload that removes a tenant removes its series.
    pub fn write_text(&self, table: &Table, out: &mut Vec<u8>) {
        let meters = table.tenants().iter().map(|t| t.meter);
        let meters = meters.chain(std::iter::once(self.inner.unknown));
        let kinds = Kind::names();
        let mut rows: Vec<Row> = meters
            .clone()
            .flat_map(|m| {
                m.each(&kinds).map(|c| Row {
                    labels: (m.tenant.clone(), c.kind, c.action, c.code),
                    count: c.count,
                })
            })
            .collect();
        let mut current: Option<HashSet<*const Meter>> = None;
        for shard in self.inner.overflow.iter() {
            let Ok(shard) = shard.lock() else {
                continue;
            };
            if shard.is_empty() {
                continue;
            }
            let current =
                current.get_or_insert_with(|| meters.clone().map(std::ptr::from_ref).collect());
            // A tenant no table has any more is not shown, but keeps its counts here as its
            // meter does: added again, its counters go on from where they were.
            let kept = shard.values();
            let shown = kept.filter(|e| current.contains(&std::ptr::from_ref(e.meter)));
            // Copied out (the strings are shared, not copied), so that no worker waits on
            // its shard while the text is written.
            rows.extend(shown.map(|e| Row {
                labels: (
                    e.meter.tenant.clone(),
                    e.kind.name.clone(),
                    e.action,
                    e.code,
                ),
                count: e.count,
            }));
        }
        rows.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        // Room for every line at once: with 100 000 tenants the text is 10 MB, and growing
        // it by doubling would have the allocator hold half as much again.
        out.reserve(rows.iter().map(Row::text_len).sum());
        exposition::family(out, NAME, HELP, "counter");
        let mut rows = rows.into_iter().peekable();
        while let Some(Row { labels, mut count }) = rows.next() {
            // The same combination counted in several places.
            while let Some(next) = rows.next_if(|n| n.labels == labels) {
                count += next.count;
            }
            let (tenant, kind, action, code) = labels;
            let status = http::StatusCode::from_u16(code).ok();
            let labels = [
                ("action", action),
                (
                    "code",
                    status.as_ref().map_or("000", http::StatusCode::as_str),
                ),
                ("kind", &*kind),
                ("tenant", &*tenant),
            ];
            exposition::sample(out, NAME, &labels, count);
        }
    }
}

/// One combination's count in one place, as a scrape copies it out.
struct Row {
    /// (tenant, kind, action, code): the order of the lines.
    labels: (Arc<str>, Arc<str>, &'static str, u16),
    count: u64,
}

impl Row {
    /// The most its line can take.
    fn text_len(&self) -> usize {
        let (tenant, kind, action, _) = &self.labels;
        NAME.len() + tenant.len() + kind.len() + action.len() + LINE_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{HugePages, HugeVec};

    /// A table of one tenant, `counted-acme` (a name no other test counts in: meters are the
    /// process's), with the table before it if this is a reload.
    fn table(previous: Option<&Table>) -> Table {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.yaml");
        let yaml = "listen: { http: 127.0.0.1:8080 }\nprofiles: { p: { fallback: { redirect: \"https://web.example/\" } } }\ntenants:\n  - { id: counted-acme, hosts: [counted.example], profile: p }\n";
        std::fs::write(&path, yaml).unwrap();
        crate::config::load(&path, previous).unwrap().table
    }

    /// The `_unknown` line's count in `text`.
    fn unknown_421(text: &str) -> u64 {
        let line = r#"signpost_requests_total{action="reject",code="421",kind="_none",tenant="_unknown"} "#;
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .map_or(0, |n| n.parse().unwrap())
    }

    #[test]
    fn counts_from_every_worker_add_up_in_the_text_format_and_survive_a_reload() {
        let counts = RequestCounts::default();
        let first = table(None);
        let acme = first.tenants()[0].meter;
        assert_eq!(&*acme.tenant, "counted-acme");
        let mut text = Vec::new();
        counts.write_text(&first, &mut text);
        let unknown_before = unknown_421(std::str::from_utf8(&text).unwrap());
        let (web, api) = (Kind::new("web"), Kind::new("api"));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        counts.inc(acme, &web, "redirect", 307);
                    }
                    // Past the meter's four slots: counted in the worker's overflow.
                    for code in [200, 201, 202, 203, 204] {
                        counts.inc(acme, &api, "forward", code);
                    }
                    counts.inc_unknown(421);
                });
            }
        });
        // What the first table counted, the next one (a reload) reports.
        let table = table(Some(&first));
        assert!(std::ptr::eq(table.tenants()[0].meter, acme));
        drop(first);
        let mut text = Vec::new();
        counts.write_text(&table, &mut text);
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("# TYPE signpost_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"signpost_requests_total{action="redirect",code="307",kind="web",tenant="counted-acme"} 4000"#),
            "{text}"
        );
        for code in [200, 201, 202, 203, 204] {
            let line = format!(
                r#"signpost_requests_total{{action="forward",code="{code}",kind="api",tenant="counted-acme"}} 4"#
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        // Other tests in this process may count unknown hosts too: at least these four.
        assert!(unknown_421(&text) >= unknown_before + 4, "{text}");
        // A table without the tenant: its series are gone, overflow included.
        let mut text = Vec::new();
        let empty = Table::new(Default::default(), HugeVec::new_in(HugePages), Vec::new());
        counts.write_text(&empty, &mut text);
        let text = String::from_utf8(text).unwrap();
        assert!(!text.contains(r#"tenant="counted-acme""#), "{text}");
        assert!(text.contains(r#"tenant="_unknown""#), "{text}");
    }
}
