//! A tenant's migration schedule: phases that switch at fixed instants, and brownout windows.
//!
//! Customers are told the date their tenant moves; the config says it once, and every request
//! picks the phase in force by the clock (`route` reads the time only for tenants that have a
//! schedule), so a switch happens at its instant without a reload or anyone awake at midnight.
//!
//! A phase may also wait for the stragglers ([`Gate`]): it starts at its start time only once
//! the census has heard none of the given kinds of client for a while. Until then the phase
//! before it stays in force. The census decides in the background (`report::census::quiet`)
//! and leaves its verdict in the gate, where a request reads it with one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;

use super::{Action, Rule};

/// A tenant's migration schedule. The request picks the phase by the current time, so a
/// switch happens at its instant without a reload.
#[derive(Debug, Default)]
pub struct Schedule {
    /// In time order; each lasts until its `until` (exclusive), the last possibly for ever.
    pub phases: Box<[Phase]>,
    pub brownouts: Box<[Brownout]>,
}

impl Schedule {
    /// The phase in force at `at` and its index; `None` after the last phase ended (then the
    /// rules apply). A phase whose gate holds it leaves the one before it in force.
    pub fn phase_at(&self, at: Timestamp) -> Option<(usize, &Phase)> {
        let mut i = self.due_at(at)?;
        while i > 0 && self.phases[i].gate.as_ref().is_some_and(Gate::holds) {
            i -= 1;
        }
        Some((i, &self.phases[i]))
    }

    /// The index of the phase the clock alone puts in force at `at`.
    fn due_at(&self, at: Timestamp) -> Option<usize> {
        self.phases
            .iter()
            .position(|p| p.until.is_none_or(|until| at < until))
    }

    /// The phase due at `at` that its gate holds back (index and gate), if any.
    pub fn held_at(&self, at: Timestamp) -> Option<(usize, &Gate)> {
        let due = self.due_at(at)?;
        let (i, _) = self.phase_at(at)?;
        (i < due).then(|| {
            (
                i + 1,
                self.phases[i + 1].gate.as_ref().expect("a gate held it"),
            )
        })
    }

    /// Keeps the census' verdicts across a reload: each gate that `previous` has too (same
    /// tenant, same start, same kinds and time) holds or releases as it did there, rather than
    /// holding afresh until the census next decides.
    pub fn inherit_verdicts(&self, previous: &Schedule) {
        for (i, phase) in self.phases.iter().enumerate() {
            let (Some(gate), Some(old)) = (&phase.gate, previous.phases.get(i)) else {
                continue;
            };
            let start = |s: &Schedule| i.checked_sub(1).and_then(|p| s.phases[p].until);
            if let Some(old_gate) = &old.gate {
                if start(self) == start(previous)
                    && gate.kinds == old_gate.kinds
                    && gate.quiet == old_gate.quiet
                {
                    gate.set_holds(old_gate.holds());
                }
            }
        }
    }

    /// When the tenant's legacy addresses become deprecated and when they stop working, as
    /// the phases say: the start of the first phase that does not forward everything, and
    /// the start of the first `gone` phase. (A first phase has no start: no date.)
    pub fn signal_dates(&self) -> (Option<Timestamp>, Option<Timestamp>) {
        let start_of = |i: usize| i.checked_sub(1).and_then(|p| self.phases[p].until);
        let is_forward_all = |p: &Phase| matches!(&p.plan, PhasePlan::All(rule) if matches!(rule.action, Action::Forward(_)));
        let is_gone = |p: &Phase| matches!(&p.plan, PhasePlan::All(rule) if matches!(rule.action, Action::Gone(_)));
        let deprecation = self.phases.iter().position(|p| !is_forward_all(p));
        let sunset = self.phases.iter().position(is_gone);
        (deprecation.and_then(start_of), sunset.and_then(start_of))
    }

    /// The brownout window covering `at` for rules of `kind`, if any.
    pub fn brownout_at(&self, at: Timestamp, kind: &str) -> Option<&Brownout> {
        self.brownouts.iter().find(|b| {
            b.from <= at
                && at < b.until
                && (b.kinds.is_empty() || b.kinds.iter().any(|k| &**k == kind))
        })
    }
}

#[derive(Debug)]
pub struct Phase {
    pub until: Option<Timestamp>,
    pub plan: PhasePlan,
    /// `after_quiet`: the phase waits, past its start, for these clients to go quiet.
    pub gate: Option<Gate>,
}

/// `after_quiet: { kinds, for }`: the phase starts only once no client of `kinds` has called
/// the tenant for `quiet` (as the census knows it: the fleet's, with a store).
#[derive(Debug)]
pub struct Gate {
    pub kinds: Box<[Arc<str>]>,
    pub quiet: Duration,
    /// The census' verdict. It starts held: a gate never releases before the census has
    /// looked, and a census that has not watched the tenant for `quiet` keeps it held.
    holds: AtomicBool,
}

impl Gate {
    pub fn new(kinds: Box<[Arc<str>]>, quiet: Duration) -> Self {
        Gate {
            kinds,
            quiet,
            holds: AtomicBool::new(true),
        }
    }

    pub fn holds(&self) -> bool {
        self.holds.load(Ordering::Relaxed)
    }

    pub fn set_holds(&self, holds: bool) {
        self.holds.store(holds, Ordering::Relaxed);
    }

    /// Whether the gate holds at `now` (Unix seconds) for a tenant the census has watched
    /// since `watched_since`, whose last client of the gate's kinds called at `last_call`:
    /// the quiet time counts from the later of the two.
    pub fn holds_at(&self, now: u64, watched_since: Option<u64>, last_call: Option<u64>) -> bool {
        let Some(since) = watched_since else {
            return true;
        };
        let quiet_since = since.max(last_call.unwrap_or(0));
        now < quiet_since.saturating_add(self.quiet.as_secs())
    }
}

#[derive(Debug)]
pub enum PhasePlan {
    /// The tenant's rules, then its profile's.
    Rules,
    /// One rule for every path and method.
    All(Rule),
}

/// `[from, until)`: the rules of `kinds` (all when empty) answer `410` with `page`.
#[derive(Debug)]
pub struct Brownout {
    pub from: Timestamp,
    pub until: Timestamp,
    pub kinds: Box<[Arc<str>]>,
    pub page: Bytes,
}

#[cfg(test)]
mod tests {
    use crate::explain::{explain, Explanation};
    use crate::table::Table;

    const CONFIG: &str = r#"
listen: { http: 127.0.0.1:8080 }
vars: { web: web.example }
upstreams: { onprem: { url: https://onprem.example } }
profiles:
  p:
    fallback: { redirect: "https://{web}/" }
    rules:
      - { name: api, kind: api, match: "/api/{*rest}", redirect: "https://{web}/api/{rest}" }
tenants:
  - id: plain
    hosts: [plain.example]
    profile: p
  - id: t
    hosts: [t.example]
    profile: p
    phases:
      - until: 2026-03-01T18:00:00+01:00
        forward: { upstream: onprem }
      - until: 2026-09-01T00:00:00Z
        rules: profile
      - gone: { message: "Retired. Use https://{web}/." }
    brownouts:
      - { from: 2026-08-01T09:00:00+02:00, until: 2026-08-01T10:00:00+02:00, kinds: [api] }
"#;

    /// Loads `yaml` as a config file; its table, or its errors with the folder left out.
    fn load(yaml: &str) -> Result<Table, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.yaml");
        std::fs::write(&path, yaml).unwrap();
        let prefix = format!("{}/", dir.path().display());
        crate::config::load(&path, None)
            .map(|c| c.table)
            .map_err(|e| {
                e.0.iter()
                    .map(|e| e.to_string().replace(&prefix, ""))
                    .collect()
            })
    }

    fn at(table: &Table, url: &str, time: &str) -> Explanation {
        explain(table, "GET", url, &[], Some(time.parse().unwrap())).unwrap()
    }

    /// (action, location or upstream URL, phase number, brownout)
    fn outcome(e: &Explanation) -> (&str, Option<&str>, Option<usize>, bool) {
        let target = e.location.as_deref().or(e.url.as_deref());
        (e.action, target, e.phase, e.brownout)
    }

    #[test]
    fn each_phase_starts_at_the_exact_instant() {
        let table = load(CONFIG).unwrap();
        let url = "https://t.example/api/v1/x";
        let cases = [
            // 18:00 at +01:00 is 17:00 UTC; `until` is exclusive.
            (
                "2026-03-01T16:59:59.999999999Z",
                (
                    "forward",
                    Some("https://onprem.example/api/v1/x"),
                    Some(1),
                    false,
                ),
            ),
            (
                "2026-03-01T17:00:00Z",
                (
                    "redirect",
                    Some("https://web.example/api/v1/x"),
                    Some(2),
                    false,
                ),
            ),
            (
                "2026-08-31T23:59:59.999999999Z",
                (
                    "redirect",
                    Some("https://web.example/api/v1/x"),
                    Some(2),
                    false,
                ),
            ),
            ("2026-09-01T00:00:00Z", ("gone", None, Some(3), false)),
            ("2031-01-01T00:00:00Z", ("gone", None, Some(3), false)),
        ];
        for (time, want) in cases {
            assert_eq!(outcome(&at(&table, url, time)), want, "at {time}");
        }
        // Every path and method in a phase with one action; the rules only in a rules phase.
        let e = at(
            &table,
            "https://t.example/anything/else",
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(
            (e.action, e.rule.as_deref(), e.kind.as_deref()),
            ("forward", Some("phase-1"), Some("phase"))
        );
        // A tenant without phases is untouched by the clock.
        let e = at(
            &table,
            "https://plain.example/api/x",
            "2026-09-01T00:00:00Z",
        );
        assert_eq!(
            outcome(&e),
            ("redirect", Some("https://web.example/api/x"), None, false)
        );
    }

    #[test]
    fn a_brownout_answers_410_for_its_kinds_inside_its_window() {
        let table = load(CONFIG).unwrap();
        let api = "https://t.example/api/v1/x";
        let other = "https://t.example/Timeclock";
        assert_eq!(
            outcome(&at(&table, api, "2026-08-01T06:59:59.999Z")).0,
            "redirect"
        );
        assert_eq!(
            outcome(&at(&table, api, "2026-08-01T07:00:00Z")),
            ("gone", None, Some(2), true)
        );
        assert_eq!(
            outcome(&at(&table, api, "2026-08-01T07:59:59.999Z")),
            ("gone", None, Some(2), true)
        );
        assert_eq!(
            outcome(&at(&table, api, "2026-08-01T08:00:00Z")).0,
            "redirect"
        );
        // Not a kind the window names: served as usual.
        let e = at(&table, other, "2026-08-01T07:30:00Z");
        assert_eq!(
            (e.action, e.brownout, e.kind.as_deref()),
            ("redirect", false, Some("fallback"))
        );
        // The window keeps the rule's kind, so metrics show which integrations were browned out.
        let e = at(&table, api, "2026-08-01T07:30:00Z");
        assert_eq!(
            (e.rule.as_deref(), e.kind.as_deref()),
            (Some("api"), Some("api"))
        );
    }

    #[test]
    fn deprecation_and_sunset_come_from_the_phases_unless_set() {
        fn signals(table: &crate::table::Table) -> Option<&crate::table::Signals> {
            table.tenant_for("t.example")?.signals.as_deref()
        }
        let table = load(CONFIG).unwrap();
        let t = signals(&table).unwrap();
        let moved: jiff::Timestamp = "2026-03-01T17:00:00Z".parse().unwrap();
        assert_eq!(
            t.deprecation.as_ref().unwrap(),
            &format!("@{}", moved.as_second())
        );
        assert_eq!(t.sunset.as_ref().unwrap(), "Tue, 01 Sep 2026 00:00:00 GMT");
        let explicit = CONFIG.replace(
            "    profile: p\n    phases:",
            "    profile: p\n    deprecation: 2025-10-01\n    phases:",
        );
        let table = load(&explicit).unwrap();
        let t = signals(&table).unwrap();
        assert_eq!(t.deprecation.as_ref().unwrap(), "@1759276800");
        assert_eq!(t.sunset.as_ref().unwrap(), "Tue, 01 Sep 2026 00:00:00 GMT");
        assert!(table.tenant_for("plain.example").unwrap().signals.is_none());
    }

    #[test]
    fn schedule_mistakes_name_file_and_line() {
        let cases = [
            (
                CONFIG.replace("until: 2026-09-01T00:00:00Z", "until: 2026-02-01T00:00:00Z"),
                "main.yaml:20: tenant `t`: phases must be in increasing `until` order",
            ),
            (
                CONFIG.replace("      - until: 2026-09-01T00:00:00Z\n", "      - "),
                "main.yaml:20: tenant `t`: every phase but the last needs `until`",
            ),
            (
                CONFIG.replace("rules: profile", "rules: tenant"),
                "main.yaml:21: tenant `t`: `rules` can only be `profile`",
            ),
            (
                CONFIG.replace("rules: profile", "rules: profile\n        gone: true"),
                "main.yaml:20: tenant `t`: a phase has `rules` or one action, not both",
            ),
            (
                CONFIG.replace("until: 2026-03-01T18:00:00+01:00", "until: next tuesday"),
                "main.yaml:18: tenant `t`: `until` is not an RFC 3339 time",
            ),
            (
                CONFIG.replace(
                    "until: 2026-08-01T10:00:00+02:00",
                    "until: 2026-08-01T09:00:00+02:00",
                ),
                "main.yaml:24: tenant `t`: a brownout's `until` must be after its `from`",
            ),
        ];
        for (yaml, want) in cases {
            assert_ne!(yaml, CONFIG, "the case did not change the config: {want}");
            assert_eq!(load(&yaml).err(), Some(vec![want.to_owned()]), "{want}");
        }
    }

    #[test]
    fn a_held_gate_keeps_the_phase_before_it_and_a_reload_keeps_the_verdict() {
        let gated = CONFIG.replace(
            "      - gone: { message: \"Retired. Use https://{web}/.\" }",
            "      - gone: { message: \"Retired. Use https://{web}/.\" }\n        after_quiet: { kinds: [api], for: 14d }",
        );
        let table = load(&gated).unwrap();
        let url = "https://t.example/api/v1/x";
        let after = "2026-10-01T00:00:00Z";
        // Held until the census says otherwise: the rules phase stays in force.
        assert_eq!(outcome(&at(&table, url, after)).2, Some(2));
        let schedule = table
            .tenant_for("t.example")
            .unwrap()
            .schedule
            .as_deref()
            .unwrap();
        let (phase, gate) = schedule.held_at(after.parse().unwrap()).unwrap();
        assert_eq!((phase, &*gate.kinds[0]), (2, "api"));
        // Before its start a gate holds nothing.
        assert!(schedule
            .held_at("2026-08-01T00:00:00Z".parse().unwrap())
            .is_none());
        gate.set_holds(false);
        assert_eq!(
            outcome(&at(&table, url, after)),
            ("gone", None, Some(3), false)
        );
        let mut reloaded = load(&gated).unwrap();
        reloaded.inherit(&table);
        assert_eq!(outcome(&at(&reloaded, url, after)).0, "gone");
        // A changed gate is judged afresh: held.
        let mut changed = load(&gated.replace("for: 14d", "for: 15d")).unwrap();
        changed.inherit(&table);
        assert_eq!(outcome(&at(&changed, url, after)).2, Some(2));
    }

    #[test]
    fn the_quiet_time_counts_from_the_last_call_or_from_when_the_census_began_watching() {
        let gate = super::Gate::new(
            Box::new(["api".into()]),
            std::time::Duration::from_secs(100),
        );
        assert!(gate.holds_at(1_000, None, None), "never watched: held");
        assert!(
            gate.holds_at(1_000, Some(950), None),
            "watched for 50 s only"
        );
        assert!(
            !gate.holds_at(1_050, Some(950), None),
            "watched 100 s, nobody called"
        );
        assert!(
            gate.holds_at(1_050, Some(900), Some(1_000)),
            "called 50 s ago"
        );
        assert!(!gate.holds_at(1_100, Some(900), Some(1_000)));
    }

    #[test]
    fn after_quiet_is_refused_where_it_cannot_work() {
        let base = |phases: &str, census: &str| {
            format!("listen: {{ http: 127.0.0.1:8080 }}\n{census}profiles: {{ p: {{ rules: [] }} }}\ntenants:\n  - id: t\n    hosts: [t.example]\n    profile: p\n    phases: {phases}\n")
        };
        let cases = [
            (base("[{ until: 2026-01-01, gone: true, after_quiet: { kinds: [api], for: 1d } }, { gone: true }]", ""), "the first phase has no start"),
            (base("[{ until: 2026-01-01, gone: true }, { gone: true, after_quiet: { kinds: [], for: 1d } }]", ""), "needs `kinds`"),
            (base("[{ until: 2026-01-01, gone: true }, { gone: true, after_quiet: { kinds: [api] } }]", ""), "needs `for`"),
            (base("[{ until: 2026-01-01, gone: true }, { gone: true, after_quiet: { kinds: [api], for: 1d } }]", "census: { enabled: false }\n"), "needs the census"),
        ];
        for (yaml, why) in cases {
            let errors = load(&yaml).unwrap_err();
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains(why) && e.contains("main.yaml:")),
                "{why}: {errors:?}"
            );
        }
    }
}
