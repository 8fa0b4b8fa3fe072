//! `signpost_requests_total{tenant,kind,action,code}`, counted without a Prometheus series
//! object per tenant.
//!
//! The prometheus crate keeps, for every label combination, a child holding its own copy of
//! the metric's description (name, help text, label names) and of its label pairs: about
//! 800 bytes each, 80 MB for 100 000 tenants once each has been called. Here a combination
//! is a small entry whose tenant and kind share the routing table's strings, in a map of the
//! worker thread's own (as the census' shards: never contended but by a scrape), and the
//! labelled series are written only when `/metrics` is read, straight into the response
//! ([`super::exposition`]). Counting takes no lock that another
//! worker could hold, where the crate's vector takes one read lock that every worker shares.

use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex};

use super::exposition;
use super::slot::{self, SLOTS};

const NAME: &str = "signpost_requests_total";
const HELP: &str = "Requests on legacy hosts, by outcome.";
/// A line's length beside its name and label values: the label names, quotes and the code,
/// and up to 20 digits of count.
const LINE_OVERHEAD: usize = r#"{action="",code="000",kind="",tenant=""} "#.len() + 21;

/// One label combination and its count in one shard.
struct Entry {
    tenant: Arc<str>,
    kind: Arc<str>,
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
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    /// The labels of a request refused before a tenant was found.
    unknown: (Arc<str>, Arc<str>),
}

impl Default for RequestCounts {
    fn default() -> Self {
        RequestCounts {
            inner: Arc::new(Inner {
                shards: (0..SLOTS).map(|_| Mutex::new(Shard::default())).collect(),
                hasher: foldhash::fast::RandomState::default(),
                unknown: ("_unknown".into(), "_none".into()),
            }),
        }
    }
}

impl RequestCounts {
    /// Counts one request; allocates only for a combination this worker has not seen.
    pub fn inc(&self, tenant: &Arc<str>, kind: &Arc<str>, action: &'static str, code: u16) {
        let inner = &*self.inner;
        let mut key = inner.hasher.hash_one((&**tenant, &**kind, action, code));
        let Ok(mut shard) = inner.shards[slot::mine()].lock() else {
            return;
        };
        loop {
            match shard.get_mut(&key) {
                Some(e)
                    if *e.tenant == **tenant
                        && *e.kind == **kind
                        && e.action == action
                        && e.code == code =>
                {
                    e.count += 1;
                    return;
                }
                // Another combination with the same 64-bit hash: the next slot.
                Some(_) => key = key.wrapping_add(1),
                None => {
                    shard.insert(
                        key,
                        Entry {
                            tenant: tenant.clone(),
                            kind: kind.clone(),
                            action,
                            code,
                            count: 1,
                        },
                    );
                    return;
                }
            }
        }
    }

    /// Counts a request refused before a tenant was found (tenant `_unknown`, kind `_none`).
    pub fn inc_unknown(&self, code: u16) {
        let (tenant, kind) = &self.inner.unknown;
        self.inc(tenant, kind, "reject", code);
    }

    /// Writes the counter in the Prometheus text format: every combination's count, summed
    /// over the workers, by tenant.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        // Copied out first (the strings are shared, not copied), so that no worker waits on
        // its shard while the text is written.
        let mut rows: Vec<Row> = Vec::new();
        for shard in self.inner.shards.iter() {
            let Ok(shard) = shard.lock() else { continue };
            rows.extend(shard.values().map(|e| Row {
                labels: (e.tenant.clone(), e.kind.clone(), e.action, e.code),
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
            // The same combination counted by several workers.
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

/// One combination's count in one shard, as a scrape copies it out.
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

    #[test]
    fn counts_from_every_worker_add_up_in_the_text_format() {
        let counts = RequestCounts::default();
        let (acme, web): (Arc<str>, Arc<str>) = ("acme".into(), "web".into());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        counts.inc(&acme, &web, "redirect", 307);
                    }
                    counts.inc(&"_unknown".into(), &"_none".into(), "reject", 421);
                });
            }
        });
        let mut text = Vec::new();
        counts.write_text(&mut text);
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("# TYPE signpost_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"signpost_requests_total{action="redirect",code="307",kind="web",tenant="acme"} 4000"#),
            "{text}"
        );
        assert!(
            text.contains(r#"signpost_requests_total{action="reject",code="421",kind="_none",tenant="_unknown"} 4"#),
            "{text}"
        );
    }
}
