//! The census as reports show it: `/stragglers.json`, the page, the CSV, the CLI table and the
//! state file all serve these types. Fields are only ever added (with serde defaults), so an
//! older state file still loads and a script written against an older report keeps working.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::agent::ClientClass;

/// Who a legacy client is, with nothing secret in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Short keyed fingerprint of the three parts below.
    pub id: String,
    /// The User-Agent as sent, up to 256 bytes.
    pub user_agent: String,
    pub address: String,
    /// `basic:lönesystem`, `jwt:sub=svc (unverified)`, `bearer:key:3f2a9c1e`: see `identity`.
    pub credential: Option<String>,
    /// What kind of program the User-Agent names.
    #[serde(default)]
    pub class: ClientClass,
}

/// One client's row in the census.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRow {
    pub tenant: String,
    pub kind: String,
    pub client: Client,
    pub first_seen: u64,
    pub last_seen: u64,
    pub count: u64,
    pub last_path: String,
    pub last_status: u16,
    /// From the running config when the report is served (not stored).
    #[serde(default)]
    pub customer_number: Option<String>,
    #[serde(default)]
    pub contact: Option<String>,
}

/// Legacy requests of one kind in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub at: u64,
    pub kind: String,
    pub count: u64,
}

/// Legacy requests to one tenant on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    /// Start of the day, Unix seconds.
    pub day: u64,
    pub tenant: String,
    pub count: u64,
}

/// One tenant's line in the summary ops work through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSummary {
    pub tenant: String,
    pub customer_number: Option<String>,
    pub contact: Option<String>,
    /// A census-gated phase that is due and waits for this tenant's stragglers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// All the tenant's legacy requests in the last 7 days (this UTC day and the six before),
    /// whatever the filter.
    pub requests_7d: u64,
    pub clients: u64,
    pub last_seen: u64,
}

/// What `/stragglers.json` serves and the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub generated_at: u64,
    pub bucket_seconds: u64,
    pub evictions: u64,
    /// Most recently seen first.
    pub clients: Vec<ClientRow>,
    pub timeline: Vec<TimelinePoint>,
    /// Per-tenant daily counts behind the summary (8 days kept).
    #[serde(default)]
    pub days: Vec<DayCount>,
    /// Ranked by `requests_7d`, most first; made when the report is served.
    #[serde(default)]
    pub tenants: Vec<TenantSummary>,
    /// `fleet` when read from the census store, `instance` for this instance's own census.
    #[serde(default)]
    pub scope: String,
    /// Why the store could not be read, when a report that should be the fleet's is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    /// For tenants with a census-gated phase: since when the census watches them, and when
    /// each kind of client last called (kept apart from the rows, which may be evicted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub watch: BTreeMap<String, Watch>,
}

/// A census-gated phase that is due and held back, as the report and `explain` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The phase (from 1) that waits.
    pub phase: usize,
    /// The kinds of client it waits for to go quiet.
    pub kinds: Vec<String>,
    /// How many clients of those kinds the census lists for the tenant.
    pub clients: u64,
    /// The last call of one of them, if any came since the census began watching.
    pub last_call: Option<u64>,
    /// When the phase starts if none of them calls again.
    pub releases_at: Option<u64>,
}

/// A gate the routing table says is holding: (tenant, phase number from 1, kinds, quiet time).
pub type Hold<'a> = (
    &'a str,
    usize,
    &'a [std::sync::Arc<str>],
    std::time::Duration,
);

/// What the census knows about a tenant with a census-gated phase (see `table::Gate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// When the census began watching the tenant (the fleet's earliest, with a store).
    pub since: u64,
    /// Kind → the last call of a client of that kind.
    #[serde(default)]
    pub last_call: BTreeMap<String, u64>,
}

impl Report {
    /// What holds `hold`'s phase back, from this census.
    pub fn held(&self, &(tenant, phase, kinds, quiet): &Hold<'_>) -> Held {
        let of_kinds = |k: &str| kinds.iter().any(|x| &**x == k);
        let clients = self
            .clients
            .iter()
            .filter(|r| r.tenant == tenant && of_kinds(&r.kind))
            .count() as u64;
        let watch = self.watch.get(tenant);
        let last_call = watch.and_then(|w| w.last_call_of(kinds));
        Held {
            phase,
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            clients,
            last_call,
            releases_at: watch.map(|w| {
                w.since
                    .max(last_call.unwrap_or(0))
                    .saturating_add(quiet.as_secs())
            }),
        }
    }
}

impl Watch {
    /// The last call of a client of one of `kinds`.
    pub fn last_call_of(&self, kinds: &[std::sync::Arc<str>]) -> Option<u64> {
        kinds
            .iter()
            .filter_map(|k| self.last_call.get(&**k))
            .max()
            .copied()
    }

    /// The later of two accounts of one tenant.
    pub fn merge(&mut self, other: &Watch) {
        self.since = self.since.min(other.since);
        for (kind, at) in &other.last_call {
            let last = self.last_call.entry(kind.clone()).or_default();
            *last = (*last).max(*at);
        }
    }
}

/// What a reader asked to see: `?tenant=acme&kind=api&class=script`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub tenant: Option<String>,
    pub kind: Option<String>,
    pub class: Option<ClientClass>,
}

/// What the running config says about a tenant: (customer number, contact).
pub type TenantInfo<'a> = dyn Fn(&str) -> Option<(String, Option<String>)> + 'a;

pub const DAY: u64 = 24 * 3600;

impl Filter {
    /// Reads `tenant`, `kind` and `class` from a query string; unknown names are ignored and
    /// an empty value means "all".
    pub fn from_query(query: Option<&str>) -> Filter {
        let mut filter = Filter::default();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            if value.is_empty() {
                continue;
            }
            match &*name {
                "tenant" => filter.tenant = Some(value.into_owned()),
                "kind" => filter.kind = Some(value.into_owned()),
                "class" => {
                    filter.class = ClientClass::ALL.into_iter().find(|c| c.as_str() == value)
                }
                _ => {}
            }
        }
        filter
    }

    fn keeps(&self, row: &ClientRow) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == row.tenant)
            && self.kind.as_ref().is_none_or(|k| *k == row.kind)
            && self.class.is_none_or(|c| c == row.client.class)
    }

    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }
}

impl Report {
    /// The report as served: customer numbers and contacts from the running config, the
    /// tenant summary made, and only what `filter` keeps. The timeline is per kind for all
    /// tenants, so only the kind filter narrows it.
    /// `holds` are the census-gated phases that are due and held: each tenant's summary line
    /// says what holds it.
    pub fn served(mut self, filter: &Filter, info: &TenantInfo<'_>, holds: &[Hold<'_>]) -> Report {
        let held: BTreeMap<&str, Held> = holds.iter().map(|h| (h.0, self.held(h))).collect();
        let mut known: BTreeMap<String, Option<(String, Option<String>)>> = BTreeMap::new();
        let mut lookup = |tenant: &str| {
            known
                .entry(tenant.to_owned())
                .or_insert_with(|| info(tenant))
                .clone()
        };
        for row in &mut self.clients {
            if let Some((number, contact)) = lookup(&row.tenant) {
                row.customer_number = Some(number).filter(|n| !n.is_empty());
                row.contact = contact;
            }
        }
        self.clients.retain(|r| filter.keeps(r));
        if let Some(kind) = &filter.kind {
            self.timeline.retain(|p| p.kind == *kind);
        }
        let since = (self.generated_at - self.generated_at % DAY).saturating_sub(6 * DAY);
        let mut summary: BTreeMap<&str, TenantSummary> = BTreeMap::new();
        for row in &self.clients {
            let line = summary.entry(&row.tenant).or_insert_with(|| TenantSummary {
                tenant: row.tenant.clone(),
                customer_number: row.customer_number.clone(),
                contact: row.contact.clone(),
                held: None,
                requests_7d: 0,
                clients: 0,
                last_seen: 0,
            });
            line.clients += 1;
            line.last_seen = line.last_seen.max(row.last_seen);
        }
        // The days count every legacy request to the tenant, whatever its kind or class.
        for d in self.days.iter().filter(|d| d.day >= since) {
            if let Some(line) = summary.get_mut(d.tenant.as_str()) {
                line.requests_7d += d.count;
            }
        }
        // A held tenant is on the list even when none of its clients passes the filter (or
        // none called yet): ops need to know the phase waits.
        for (tenant, why) in held {
            if filter.tenant.as_deref().is_some_and(|t| t != tenant) {
                continue;
            }
            let line = summary.entry(tenant).or_insert_with(|| {
                let (number, contact) = lookup(tenant).unwrap_or_default();
                TenantSummary {
                    tenant: tenant.to_owned(),
                    customer_number: Some(number).filter(|n| !n.is_empty()),
                    contact,
                    held: None,
                    requests_7d: 0,
                    clients: 0,
                    last_seen: 0,
                }
            });
            line.held = Some(why);
        }
        let mut tenants: Vec<TenantSummary> = summary.into_values().collect();
        tenants.sort_by(|a, b| {
            b.requests_7d
                .cmp(&a.requests_7d)
                .then(b.last_seen.cmp(&a.last_seen))
        });
        self.tenants = tenants;
        self
    }
}
