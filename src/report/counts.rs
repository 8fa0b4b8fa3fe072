//! `signpost_requests_total{tenant,kind,action,code}`, counted without a Prometheus series
//! object per tenant.
//!
//! The prometheus crate keeps, for every label combination, a child holding its own copy of
//! the metric's description (name, help text, label names) and of its label pairs: about
//! 800 bytes each, 80 MB for 100 000 tenants once each has been called. Here a combination
//! is a small entry whose tenant and kind share the routing table's strings, in a map of the
//! worker thread's own (as the census' shards: never contended but by a scrape), and the
//! labelled series are made only when `/metrics` is read. Counting takes no lock that another
//! worker could hold, where the crate's vector takes one read lock that every worker shares.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, LabelPair, Metric, MetricFamily, MetricType};

use super::slot::{self, SLOTS};

const NAME: &str = "signpost_requests_total";
const HELP: &str = "Requests on legacy hosts, by outcome.";

/// One label combination and its count in one shard.
struct Entry {
    tenant: Arc<str>,
    kind: Arc<str>,
    action: &'static str,
    code: u16,
    count: u64,
}

type Shard = HashMap<u64, Entry, foldhash::fast::RandomState>;

/// (action, code, kind, tenant): the label values, in the order of their names.
type Labels = (&'static str, u16, Arc<str>, Arc<str>);

/// The request counter; clones share the counts.
#[derive(Clone)]
pub struct RequestCounts {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    desc: Desc,
    /// The labels of a request refused before a tenant was found.
    unknown: (Arc<str>, Arc<str>),
}

impl Default for RequestCounts {
    fn default() -> Self {
        let desc = Desc::new(
            NAME.into(),
            HELP.into(),
            ["action", "code", "kind", "tenant"]
                .map(String::from)
                .into(),
            Default::default(),
        )
        .expect("a valid description");
        RequestCounts {
            inner: Arc::new(Inner {
                shards: (0..SLOTS).map(|_| Mutex::new(Shard::default())).collect(),
                hasher: foldhash::fast::RandomState::default(),
                desc,
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

    /// Every combination's count, summed over the workers.
    fn totals(&self) -> BTreeMap<Labels, u64> {
        let mut totals = BTreeMap::new();
        for shard in self.inner.shards.iter() {
            let Ok(shard) = shard.lock() else { continue };
            for e in shard.values() {
                *totals
                    .entry((e.action, e.code, e.kind.clone(), e.tenant.clone()))
                    .or_default() += e.count;
            }
        }
        totals
    }
}

impl Collector for RequestCounts {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.inner.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let pair = |name: &str, value: &str| {
            let mut p = LabelPair::default();
            p.set_name(name.into());
            p.set_value(value.into());
            p
        };
        let metrics = self
            .totals()
            .into_iter()
            .map(|((action, code, kind, tenant), count)| {
                // Label names in order, as the crate writes them.
                let mut m = Metric::from_label(vec![
                    pair("action", action),
                    pair("code", &code.to_string()),
                    pair("kind", &kind),
                    pair("tenant", &tenant),
                ]);
                let mut counter = Counter::default();
                counter.set_value(count as f64);
                m.set_counter(counter);
                m
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(NAME.into());
        family.set_help(HELP.into());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(metrics);
        vec![family]
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
        let registry = prometheus::Registry::new();
        registry.register(Box::new(counts.clone())).unwrap();
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut text,
        )
        .unwrap();
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
