//! Census-gated phases (`after_quiet`): the census decides, in the background, whether each
//! gate of the routing table still holds its phase back, and leaves the verdict in the gate
//! (`table::Gate`) for requests to read.
//!
//! A gate holds until no client of its kinds has called the tenant for its quiet time,
//! counted from the last such call or, when the census began watching the tenant later than
//! that, from when it began: a census that has not watched long enough keeps the phase held,
//! it never releases blind. With a store, "watched since" is the fleet's earliest and the last
//! call the fleet's latest.

use std::collections::BTreeMap;
use std::time::Duration;

use super::rows::Watch;
use super::store::StoreError;
use super::{now, Census};
use crate::table::Table;

/// Sets every gate of `table` from `watch` as of `at` (Unix seconds).
pub fn judge(table: &Table, watch: &BTreeMap<String, Watch>, at: u64) {
    for (tenant, schedule) in table.gated() {
        let watch = watch.get(&*tenant.id);
        for gate in schedule.phases.iter().filter_map(|p| p.gate.as_ref()) {
            let last_call = watch.and_then(|w| w.last_call_of(&gate.kinds));
            gate.set_holds(gate.holds_at(at, watch.map(|w| w.since), last_call));
        }
    }
}

impl Census {
    /// How often the gates are judged: every second from this census, every flush with a
    /// store.
    pub fn judge_every(&self) -> Duration {
        self.store
            .as_ref()
            .map_or(Duration::from_secs(1), |s| s.flush_interval())
    }

    /// Judges the gates before the first request when this census decides alone (no store):
    /// a phase released before a restart stays released through it.
    pub fn judge_at_start(&self, table: &Table) {
        if self.store.is_none() {
            judge(table, &self.watch_gated(table), now());
        }
    }

    /// Watches exactly the gated tenants of `table`; what this census knows of them.
    fn watch_gated(&self, table: &Table) -> BTreeMap<String, Watch> {
        match self.data.lock() {
            Ok(mut data) => {
                data.watch_only(table.gated().map(|(t, _)| &*t.id), now());
                data.watch().clone()
            }
            Err(_) => BTreeMap::new(),
        }
    }

    /// Watches the gated tenants of `table` and judges their gates from what this census
    /// knows, or the fleet's census when there is a store. A store that does not answer
    /// leaves every verdict as it was.
    pub async fn judge_gates(&self, table: &Table) -> Result<(), StoreError> {
        let local = self.watch_gated(table);
        let watch = match &self.store {
            Some(store) => store.watch(&local, true).await?,
            None => local,
        };
        judge(table, &watch, now());
        Ok(())
    }
}
