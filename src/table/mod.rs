//! The compiled, immutable routing snapshot: hosts → tenant → rule sets → actions.
//!
//! Built once per config load by [`crate::config`], then shared read-only by every worker
//! behind one `ArcSwap` ([`Tables`]). Nothing here is mutated after the build, so the request
//! path takes no lock; a reload builds a whole new `Table` and swaps the pointer.

pub mod challenge;
pub mod host;
pub mod huge;
pub mod meter;
pub mod pattern;
pub mod schedule;
pub mod template;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};

use crate::upstream::Upstream;
use challenge::Challenges;
use compact_str::CompactString;
use host::HostIndex;
pub use huge::{HugePages, HugeVec};
pub use meter::{action_number, tenant_names, Kind, Meter, TenantNo, ACTIONS, MAX_KINDS};
use pattern::{Captures, Matcher};
pub use schedule::{Brownout, Gate, Phase, PhasePlan, Schedule};
use template::Template;

/// The live table, swapped whole on reload; requests keep the snapshot they started with.
pub type Tables = Arc<ArcSwap<Table>>;

/// One complete routing snapshot.
#[derive(Debug)]
pub struct Table {
    hosts: HostIndex,
    /// On huge pages: see [`huge`].
    tenants: HugeVec<Tenant>,
    upstreams: Vec<Arc<Upstream>>,
    /// The tenants with a census-gated phase, found once: the gates are judged every
    /// second, and a walk over 100 000 tenants to find the few was a cache miss for each.
    gated: Box<[u32]>,
    /// ACME's HTTP-01 tokens in progress: one set for the process, handed from each table to
    /// the next ([`Table::inherit`]).
    pub challenges: Arc<Challenges>,
}

impl Table {
    pub fn new(hosts: HostIndex, tenants: HugeVec<Tenant>, upstreams: Vec<Arc<Upstream>>) -> Self {
        let gated = tenants
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.schedule
                    .as_deref()
                    .is_some_and(|s| s.phases.iter().any(|p| p.gate.is_some()))
            })
            .map(|(i, _)| i as u32)
            .collect();
        Table {
            hosts,
            tenants,
            upstreams,
            gated,
            challenges: Arc::default(),
        }
    }

    /// The host names of the table that are names (not wildcards, not IP addresses): those a
    /// certificate can be ordered for by HTTP-01.
    pub fn exact_hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts
            .names()
            .filter(|n| !n.starts_with('.') && n.parse::<std::net::IpAddr>().is_err())
    }

    /// The wildcard hosts of the table, as written (`*.example.com`).
    pub fn wildcard_hosts(&self) -> impl Iterator<Item = String> + '_ {
        (self.hosts.names())
            .filter(|n| n.starts_with('.'))
            .map(|n| format!("*{n}"))
    }

    /// Starts loading what [`Table::tenant_for`] will read first for the `Host` a client sent
    /// (see [`HostIndex::prefetch`]).
    pub fn prefetch_host(&self, host: &[u8]) {
        self.hosts.prefetch(host);
    }

    /// The tenant serving a normalised host name.
    pub fn tenant_for(&self, host: &str) -> Option<&Tenant> {
        self.hosts.lookup(host).map(|i| &self.tenants[i as usize])
    }

    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    /// The tenants with a census-gated phase, and their schedules.
    pub fn gated(&self) -> impl Iterator<Item = (&Tenant, &Schedule)> {
        self.gated.iter().filter_map(|&i| {
            let tenant = &self.tenants[i as usize];
            Some((tenant, tenant.schedule.as_deref()?))
        })
    }

    /// The census-gated phases due at `at` that their gates hold back: (tenant, phase number
    /// from 1, the kinds it waits for, the quiet time).
    pub fn holds_at(&self, at: jiff::Timestamp) -> Vec<(&str, usize, &[Arc<str>], Duration)> {
        self.gated()
            .filter_map(|(t, s)| {
                let (i, gate) = s.held_at(at)?;
                Some((&*t.id, i + 1, &*gate.kinds, gate.quiet))
            })
            .collect()
    }

    /// Carries the census' gate verdicts and ACME's challenges over from the table this one
    /// replaces.
    pub fn inherit(&mut self, previous: &Table) {
        self.challenges = previous.challenges.clone();
        let old: std::collections::HashMap<&str, &Schedule> =
            previous.gated().map(|(t, s)| (&*t.id, s)).collect();
        for (tenant, schedule) in self.gated() {
            if let Some(old) = old.get(&*tenant.id) {
                schedule.inherit_verdicts(old);
            }
        }
    }

    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// Rules across all tenants and distinct profiles, for reports.
    pub fn rule_count(&self) -> usize {
        let mut seen: Vec<*const Profile> = Vec::new();
        let mut count = 0;
        for tenant in self.tenants.iter() {
            count += tenant.rules.len();
            let p = Arc::as_ptr(&tenant.profile);
            if !seen.contains(&p) {
                seen.push(p);
                count +=
                    tenant.profile.rules.len() + usize::from(tenant.profile.fallback.is_some());
            }
        }
        count
    }
}

/// One customer: its names, its own rules and its profile.
///
/// Laid out so that what routing a request reads (rules, profile, schedule, signals, meter,
/// customer number) is the first 64-byte cache line, and the rest the second: with 100 000
/// tenants a request's tenant is cold memory, and each line is a miss.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Tenant {
    pub rules: RuleSet,
    /// Shared between tenants unless this tenant overrides `vars`.
    pub profile: Arc<Profile>,
    /// Boxed: most tenants have none, and the tenant array stays dense.
    pub schedule: Option<Box<Schedule>>,
    /// Boxed, and `None` when the tenant signals nothing (most do not).
    pub signals: Option<Box<Signals>>,
    /// The tenant's request counts, the same in every table; a request's labels carry it
    /// past the snapshot guard.
    pub meter: &'static Meter,
    /// Inline (up to 24 bytes): a redirect that names it reads no other memory.
    pub customer_number: CompactString,
    pub id: Arc<str>,
    /// Whom to call about the tenant's stragglers: shown on the report.
    pub contact: Option<Box<str>>,
    /// Hash of the tenant as written, to report what a reload changed.
    pub source_hash: u64,
}

const _: () = assert!(std::mem::offset_of!(Tenant, id) == 64);

impl Tenant {
    /// Tenant rules first, then the profile's, then the profile's fallback.
    pub fn find_rule<'t>(&'t self, path: &str, method: &Method) -> Option<(&'t Rule, Captures)> {
        self.rules
            .find(path, method)
            .or_else(|| self.profile.rules.find(path, method))
            .or_else(|| {
                self.profile
                    .fallback
                    .as_ref()
                    .map(|r| (r, Captures::default()))
            })
    }
}

/// `Deprecation` and `Sunset` header values, rendered once at load.
#[derive(Debug, Default)]
pub struct Signals {
    pub deprecation: Option<HeaderValue>,
    pub sunset: Option<HeaderValue>,
    /// The sunset in Unix seconds, exported so that traffic after it can be alerted on.
    pub sunset_at: Option<i64>,
}

impl Signals {
    pub fn is_empty(&self) -> bool {
        self.deprecation.is_none() && self.sunset.is_none()
    }
}

/// A named set of rules with a fallback.
#[derive(Debug)]
pub struct Profile {
    pub name: Box<str>,
    /// Hash of the profile as written, to report what a reload changed.
    pub source_hash: u64,
    pub rules: RuleSet,
    pub fallback: Option<Rule>,
}

/// Rules compiled into one matcher. An empty set is one null pointer: most tenants have no
/// rules of their own, and a tenant's size is what 100 000 tenants cost.
#[derive(Debug, Default)]
pub struct RuleSet(Option<Box<Compiled>>);

#[derive(Debug)]
struct Compiled {
    matcher: Matcher<u32>,
    rules: Box<[Rule]>,
}

impl RuleSet {
    /// `matcher` gives indices into `rules`.
    pub fn new(matcher: Matcher<u32>, rules: Vec<Rule>) -> Self {
        let rules = rules.into_boxed_slice();
        Self((!rules.is_empty()).then(|| Box::new(Compiled { matcher, rules })))
    }

    pub fn find(&self, path: &str, method: &Method) -> Option<(&Rule, Captures)> {
        let set = self.0.as_deref()?;
        let (&i, captures) = set.matcher.find(path, method)?;
        Some((&set.rules[i as usize], captures))
    }

    pub fn rules(&self) -> &[Rule] {
        self.0.as_deref().map_or(&[], |set| &set.rules)
    }

    pub fn len(&self) -> usize {
        self.rules().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// A matched pattern's name, label and action.
#[derive(Debug)]
pub struct Rule {
    pub name: Arc<str>,
    pub kind: Kind,
    pub action: Action,
    /// Indices of the captures to hide in logs and reports (calendar tokens).
    pub redact: Box<[u8]>,
}

/// What a rule does.
#[derive(Debug)]
pub enum Action {
    Redirect(Redirect),
    Forward(Forward),
    /// Both: redirect browsers, forward everything that would not follow a redirect faithfully.
    Adaptive(Redirect, Forward),
    /// `410` with this HTML page.
    Gone(Bytes),
}

#[derive(Debug)]
pub struct Redirect {
    pub to: Template,
    pub status: StatusCode,
    pub keep_query: bool,
}

#[derive(Debug)]
pub struct Forward {
    pub upstream: Arc<Upstream>,
    pub path: Template,
}
