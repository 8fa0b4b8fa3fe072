//! The census of legacy clients: who still calls the old addresses, per tenant and kind.
//!
//! The request path does as little as it can: it hashes the raw identity of the client, takes
//! the lock of *its own worker thread's* shard (so workers never contend) and bumps a counter in
//! a small map; only a client new to that shard costs an allocation. Every 200 ms one
//! background task swaps each shard's lists for the ones it emptied at the last drain and
//! folds what it took into the bounded table ([`data`]). There the identity becomes a report
//! client ([`identity`]), so raw credentials live only in memory, for at most one drain
//! interval. The table is snapshotted to a state file ([`state`]) periodically and at
//! shutdown, and restored at start, so a restart loses at most one interval. With
//! `census.store`, the drain also fills the outbox that [`store`] flushes to PostgreSQL, and
//! reports show the fleet's census from there.

pub mod agent;
mod data;
pub mod identity;
mod quiet;
pub mod rows;
mod state;
mod store;

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasher as _;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use compact_str::CompactString;

use super::metrics::Metrics;
use super::slot::{self, SLOTS};
use crate::config::CensusSettings;
use crate::protocol::headers::{text, Headers};
use crate::table::{Kind, TenantNo};
pub use agent::ClientClass;
pub use data::BUCKET_SECONDS;
use data::{Data, Row};
use identity::{capped_user_agent, Fingerprinter, RawIdentity};
pub use quiet::judge;
pub use rows::{
    Client, ClientRow, DayCount, Filter, Held, Report, TenantSummary, TimelinePoint, Watch,
};
pub use state::StateFileError;
use store::Store;

/// What a shard accumulates for one (tenant, kind, caller) between drains: one cache line,
/// the kind by its index (no reference count to take and give back).
#[derive(Debug)]
#[repr(align(64))]
struct Pending {
    tenant: TenantNo,
    /// [`Kind::index`].
    kind: u16,
    status: u16,
    /// The key of the caller's identity in its shard's `callers`.
    caller: u64,
    first_seen: u64,
    last_seen: u64,
    count: u64,
    path: CompactString,
}

/// A worker's sightings since the last drain, and each caller's identity once: one client
/// calling 100 000 tenants is a new sighting at nearly every request, and copying its
/// identity into each one cost an allocation, and the drain a cold read of it.
///
/// The sightings are appended in the order they first came, and found through an index of
/// 16-byte entries: with every request a new sighting, inserting the 88-byte sightings into a
/// keyed map scattered writes over a megabyte of fresh memory, where appending writes one
/// line after another, and the index stays in the core's own cache.
#[derive(Default)]
struct Shard {
    index: HashMap<u64, u32, foldhash::fast::RandomState>,
    pending: Vec<Pending>,
    callers: HashMap<u64, RawIdentity, foldhash::fast::RandomState>,
}

/// The drain's own state, kept from one drain to the next.
#[derive(Default)]
struct Folding {
    /// The clients the table's rows name, by raw identity: fingerprinted once, and one
    /// object for all their rows across drains (a client new at every drain made each row's
    /// reference to it a cache miss when the row was evicted).
    known: HashMap<RawIdentity, Arc<Client>, foldhash::fast::RandomState>,
    /// Each shard's lists as the last drain left them, emptied, swapped in at the next: a
    /// worker records into memory it wrote before, where lists allocated at every drain were
    /// fresh pages, a cache miss (or a page fault) at nearly every sighting when every
    /// request is a new one.
    spare: Vec<Shard>,
    /// The sightings of one drain as rows, emptied after the fold, for the same reason.
    rows: Vec<Row>,
}

/// The census handle shared by the proxy (to record) and the admin listener (to report).
pub struct Census {
    /// One per worker thread (by thread index modulo the count): never contended.
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    fingerprints: Fingerprinter,
    /// What only the drain works with: held for a whole drain, before `data`.
    folding: Mutex<Folding>,
    data: Mutex<Data>,
    store: Option<Store>,
    settings: CensusSettings,
    metrics: Arc<Metrics>,
}

/// How long the start waits for the store to agree on the fingerprint key, and the exit for
/// the last flush.
const STORE_PATIENCE: Duration = Duration::from_secs(5);

/// Drains the shards; run it with [`CensusWorker::run`].
pub struct CensusWorker {
    census: Arc<Census>,
}

/// How often the worker drains the shards.
const DRAIN_EVERY: Duration = Duration::from_millis(200);

/// Unix seconds, from the kernel's coarse clock: every request reads it, and the census
/// needs seconds, not the nanoseconds a full clock read pays for.
pub use crate::protocol::date::unix_seconds as now;

impl Census {
    /// A census restored from the state file, if there is one. A state file the operator
    /// chose that cannot be written is an error; the default location falls back to memory.
    pub fn new(
        mut settings: CensusSettings,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Census>, CensusWorker), StateFileError> {
        let mut key = None;
        if let Some(path) = settings.state_file.clone() {
            let kept = state::probe_writable(&path)
                .map_err(|e| format!("cannot write there: {e}"))
                .and_then(|()| {
                    let file = state::key_file(&path);
                    state::installation_key(&file).map_err(|e| {
                        format!("the fingerprint key {} cannot be used: {e}", file.display())
                    })
                });
            match kept {
                Ok(k) => key = Some(k),
                Err(reason) if settings.state_file_chosen => {
                    return Err(StateFileError { path, reason })
                }
                Err(reason) => {
                    tracing::warn!(file = %path.display(), error = %reason, "the census cannot be kept at its default location and lives in memory only; set census.state_file");
                    settings.state_file = None;
                }
            }
        }
        let capacity = NonZeroUsize::new(settings.max_clients).unwrap_or(NonZeroUsize::MIN);
        let mut data = Data::new(capacity);
        match &settings.state_file {
            Some(path) => {
                match state::restore(path) {
                    Ok(Some(report)) => {
                        data.apply(report);
                        data.prune(now().saturating_sub(settings.retention.as_secs()));
                        let restored = data.len();
                        tracing::info!(file = %path.display(), clients = restored, "census restored");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "census state not restored")
                    }
                }
                tracing::info!(file = %path.display(), "census saved to this file");
            }
            None => tracing::info!("census kept in memory only: a restart loses it"),
        }
        // Without a state file the key lives as long as the census: in memory.
        let mut key = key.unwrap_or_else(|| state::new_key().to_vec());
        let store = settings
            .store
            .clone()
            .map(|s| Store::new(s, settings.max_clients, metrics.clone()));
        if let Some(store) = &store {
            // The fleet shares one key, so that one client has one id on every instance.
            let local = key.clone();
            match on_own_runtime(STORE_PATIENCE, store.shared_key(&local)) {
                Some(Ok(shared)) => {
                    key = shared;
                    tracing::info!(instance = store.incarnation(), "census store reached; the fleet's census is shared there");
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "census store not reached at start: counting goes on and is flushed when it is back, but this instance's client ids use its local key until a restart")
                }
                None => tracing::warn!("census store did not answer at start: counting goes on and is flushed when it is back, but this instance's client ids use its local key until a restart"),
            }
        }
        let census = Arc::new(Census {
            shards: (0..SLOTS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            fingerprints: Fingerprinter::new(&key, settings.hash_user_names),
            folding: Mutex::new(Folding {
                spare: (0..SLOTS).map(|_| Shard::default()).collect(),
                ..Folding::default()
            }),
            data: Mutex::new(data),
            store,
            settings,
            metrics,
        });
        Ok((census.clone(), CensusWorker { census }))
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Lower-cased names of the headers that carry API keys.
    pub fn api_key_headers(&self) -> &[String] {
        &self.settings.api_key_headers
    }

    /// Who sent a request, from its headers.
    pub fn caller<'a>(&'a self, headers: &'a dyn Headers, peer: Option<IpAddr>) -> Caller<'a> {
        self.caller_of(Sent::read(headers), headers, peer)
    }

    /// [`Census::caller`] from headers already read: a request's are read once, for the
    /// census and the access log.
    pub fn caller_of<'a>(
        &'a self,
        sent: Sent<'a>,
        headers: &'a dyn Headers,
        peer: Option<IpAddr>,
    ) -> Caller<'a> {
        let credential = sent
            .authorization
            .map(|value| ("authorization", value))
            .or_else(|| self.api_key(headers));
        self.caller_from(
            credential,
            sent.user_agent,
            self.client_address(headers, peer),
        )
    }

    /// A caller known by its address and a description only (a failed TLS handshake).
    pub fn anonymous<'a>(&self, description: &'a str, address: Option<IpAddr>) -> Caller<'a> {
        self.caller_from(None, capped_user_agent(description), address)
    }

    fn caller_from<'a>(
        &self,
        credential: Option<(&'a str, &'a str)>,
        user_agent: &'a str,
        address: Option<IpAddr>,
    ) -> Caller<'a> {
        Caller {
            credential,
            user_agent,
            address,
            key: self.hasher.hash_one((credential, user_agent, address)),
        }
    }

    /// Counts one request of `caller`. Allocates only for a caller new to this worker's shard
    /// since the last drain (and when the shard's map grows).
    pub fn record(
        &self,
        tenant: TenantNo,
        kind: &Kind,
        caller: Caller<'_>,
        path: &str,
        status: u16,
    ) {
        let at = now();
        let caller_key = caller.key;
        let kind = kind.index();
        let key = self.hasher.hash_one((tenant, kind, caller_key));
        let Ok(mut shard) = self.shards[slot::mine()].lock() else {
            return;
        };
        let shard = &mut *shard;
        let slot = match shard.index.entry(key) {
            Entry::Occupied(seen) => {
                let p = &mut shard.pending[*seen.get() as usize];
                p.count += 1;
                p.last_seen = at;
                p.status = status;
                if p.path != path {
                    p.path.clear();
                    p.path.push_str(path);
                }
                return;
            }
            Entry::Vacant(slot) => slot,
        };
        if shard.pending.len() >= self.settings.max_clients {
            self.metrics.census_dropped.inc();
            return;
        }
        slot.insert(shard.pending.len() as u32);
        shard
            .callers
            .entry(caller_key)
            .or_insert_with(|| caller.identity());
        shard.pending.push(Pending {
            tenant,
            kind,
            caller: caller_key,
            first_seen: at,
            last_seen: at,
            count: 1,
            path: path.into(),
            status,
        });
    }

    /// The client as the census names it.
    #[cfg(test)]
    pub fn identify(&self, headers: &dyn Headers, peer: Option<IpAddr>) -> Client {
        self.fingerprints
            .client(&self.caller(headers, peer).identity())
    }

    /// The client's census id for the access log. The id is a keyed HMAC: each worker keeps
    /// the ids of the clients it saw lately, so a busy client pays for it once, not per request.
    /// Inline (12 hex digits), so a copy takes no atomic count as a shared string's would.
    pub fn client_id(&self, caller: Caller<'_>) -> CompactString {
        thread_local! {
            static IDS: std::cell::RefCell<HashMap<u64, CompactString, foldhash::fast::RandomState>> =
                Default::default();
        }
        IDS.with(|ids| {
            let mut ids = ids.borrow_mut();
            if let Some(id) = ids.get(&caller.key) {
                return id.clone();
            }
            if ids.len() >= 4096 {
                ids.clear();
            }
            let id = CompactString::from(self.fingerprints.client(&caller.identity()).id);
            ids.insert(caller.key, id.clone());
            id
        })
    }

    fn client_address(&self, headers: &dyn Headers, peer: Option<IpAddr>) -> Option<IpAddr> {
        let peer = peer?;
        if !self
            .settings
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer))
        {
            return Some(peer);
        }
        let first_hop = headers
            .first("x-forwarded-for")
            .and_then(text)
            .and_then(|v| v.split(',').next())
            .and_then(|hop| hop.trim().parse().ok());
        Some(first_hop.unwrap_or(peer))
    }

    /// The first configured API-key header sent: (its name, raw value).
    fn api_key<'s, 'h>(&'s self, headers: &'h dyn Headers) -> Option<(&'s str, &'h str)> {
        self.settings
            .api_key_headers
            .iter()
            .find_map(|name| Some((name.as_str(), text(headers.first(name)?)?)))
    }

    /// This instance's census as it is now.
    pub fn report(&self) -> Report {
        self.data.lock().map(|d| d.report()).unwrap_or_default()
    }

    /// The census reports show: the fleet's from the store when there is one and it answers,
    /// else this instance's (saying why).
    pub async fn shared_report(&self) -> Report {
        let Some(store) = &self.store else {
            return Report {
                scope: "instance".into(),
                ..self.report()
            };
        };
        match store.report(self.settings.max_clients).await {
            Ok(report) => {
                let mine = self.report();
                let watch = match store.watch(&mine.watch, false).await {
                    Ok(watch) => watch,
                    Err(_) => mine.watch,
                };
                Report {
                    scope: "fleet".into(),
                    evictions: mine.evictions,
                    watch,
                    ..report
                }
            }
            Err(e) => Report {
                scope: "instance".into(),
                store_error: Some(e.to_string()),
                ..self.report()
            },
        }
    }

    /// The clients seen most, for the last-seen gauge (at every scrape).
    pub fn top_clients(&self) -> Vec<ClientRow> {
        self.data
            .lock()
            .map(|d| d.busiest(self.settings.metric_clients))
            .unwrap_or_default()
    }

    /// Erases every row of one client (`DELETE /stragglers/ID`) here and in the store, and
    /// saves at once, so the erasure is on disk when the answer says so; returns how many rows
    /// there were (the store's count when there is one).
    pub async fn forget(&self, id: &str) -> Result<u64, String> {
        // Sightings still in the shards are folded first: otherwise the next drain would bring
        // the client back.
        self.drain();
        let erased = self
            .data
            .lock()
            .map(|mut d| d.forget(id, u64::MAX))
            .unwrap_or(0) as u64;
        self.save();
        match &self.store {
            Some(store) => store.forget(id).await.map_err(|e| e.to_string()),
            None => Ok(erased),
        }
    }

    /// Drops the clients another instance erased from the store (each as it was when erased:
    /// a client that called again since keeps its new row).
    fn forget_erased(&self, erased: &[(String, u64)]) {
        let dropped: usize = match self.data.lock() {
            Ok(mut data) => erased.iter().map(|(id, at)| data.forget(id, *at)).sum(),
            Err(_) => 0,
        };
        if dropped > 0 {
            tracing::info!(
                rows = dropped,
                "census clients erased on another instance dropped here too"
            );
            self.save();
        }
    }

    /// Folds every shard's pending counts into the table.
    fn drain(&self) {
        let Ok(mut folding) = self.folding.lock() else {
            return;
        };
        let Folding { known, spare, rows } = &mut *folding;
        for (shard, spare) in self.shards.iter().zip(spare.iter_mut()) {
            if let Ok(mut shard) = shard.lock() {
                std::mem::swap(&mut *shard, spare);
            }
        }
        let Ok(mut data) = self.data.lock() else {
            return;
        };
        for shard in spare.iter_mut() {
            let clients: HashMap<u64, Arc<Client>, foldhash::fast::RandomState> = shard
                .callers
                .drain()
                .map(|(key, identity)| {
                    let client = match known.get(&identity) {
                        Some(c) => c.clone(),
                        None => {
                            let c = Arc::new(self.fingerprints.client(&identity));
                            known.insert(identity, c.clone());
                            c
                        }
                    };
                    (key, client)
                })
                .collect();
            shard.index.clear();
            rows.extend(shard.pending.drain(..).filter_map(|p| {
                Some(Row {
                    client: clients.get(&p.caller).cloned()?,
                    tenant: p.tenant,
                    kind: p.kind,
                    first_seen: p.first_seen,
                    last_seen: p.last_seen,
                    count: p.count,
                    last_path: p.path,
                    last_status: p.status,
                })
            }));
        }
        // Oldest first: the table links each row in by its time from the newest end, so a
        // row older than the rows folded before it would walk back over every one of them
        // (a drain across a second's turn, in the maps' random order, was quadratic).
        rows.sort_by_key(|row| row.last_seen);
        let kinds = Kind::names();
        for row in rows.drain(..) {
            if let Some(store) = &self.store {
                store.add(&row, &kinds);
            }
            if data.record(row) {
                self.metrics.census_evictions.inc();
            }
        }
        // Forget the clients no row (and no store batch) holds any more, once they outnumber
        // the rows.
        if known.len() > self.settings.max_clients {
            known.retain(|_, client| Arc::strong_count(client) > 1);
        }
    }

    /// Folds what the workers counted into the table, saves the state file and flushes to the
    /// store: the last word at shutdown, once every worker (and runtime) has stopped.
    pub fn flush(&self) {
        self.drain();
        self.save();
        if let Some(store) = &self.store {
            on_own_runtime(STORE_PATIENCE * 2, store.final_flush(STORE_PATIENCE));
        }
    }

    /// Writes the state file, without the rows past `census.retention`.
    fn save(&self) {
        let Some(path) = &self.settings.state_file else {
            return;
        };
        let cutoff = now().saturating_sub(self.settings.retention.as_secs());
        match self.data.lock() {
            Ok(mut data) => data.prune(cutoff),
            Err(_) => return,
        }
        // Written from the table a chunk of rows at a time, and synced to disk with no lock
        // held: workers never wait for it (they count in their own shards), and the drain
        // waits for one chunk at most.
        if let Err(e) = state::write_atomically(path, |out| Data::write_report(&self.data, out)) {
            tracing::warn!(file = %path.display(), error = %e, "census state not saved");
        }
    }
}

impl CensusWorker {
    /// Drains the shards every 200 ms until `shutdown` fires, saving the state file every
    /// interval and once more on the way out; beside it, flushes to the store every
    /// `flush_interval`.
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let census = self.census;
        let mut stop = shutdown.clone();
        let drain = async {
            let mut drain = tokio::time::interval(DRAIN_EVERY);
            let mut save = tokio::time::interval(
                census
                    .settings
                    .snapshot_interval
                    .max(Duration::from_secs(1)),
            );
            save.tick().await;
            loop {
                tokio::select! {
                    _ = drain.tick() => census.drain(),
                    _ = save.tick() => census.save(),
                    _ = stop.changed() => break,
                }
            }
            census.drain();
            census.save();
        };
        let mut stop = shutdown;
        let flush = async {
            let Some(store) = &census.store else {
                return;
            };
            let mut every = tokio::time::interval(store.flush_interval());
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        let erased = store.flush().await;
                        census.forget_erased(&erased);
                    }
                    _ = stop.changed() => break,
                }
            }
            // What was counted until the shutdown began; the grace period's requests follow
            // in the final flush.
            census.drain();
            let _ = tokio::time::timeout(STORE_PATIENCE, store.flush()).await;
        };
        tokio::join!(drain, flush);
    }
}

/// The census as a running server with `settings` keeps it, for `explain`: the fleet's from
/// the store, else the state file (empty when there is none yet). Reads only.
pub fn read(settings: &CensusSettings, tenants: &[&str]) -> Result<Report, String> {
    let Some(store) = settings.store.clone() else {
        let Some(path) = &settings.state_file else {
            return Ok(Report::default());
        };
        return state::restore(path)
            .map(Option::unwrap_or_default)
            .map_err(|e| format!("census state file {}: {e}", path.display()));
    };
    let store = Store::new(store, settings.max_clients, Arc::new(Metrics::new()));
    let asked: std::collections::BTreeMap<String, Watch> = tenants
        .iter()
        .map(|t| {
            (
                t.to_string(),
                Watch {
                    since: u64::MAX,
                    ..Watch::default()
                },
            )
        })
        .collect();
    let read = async {
        let mut report = store.report(settings.max_clients).await?;
        report.watch = store.watch(&asked, false).await?;
        Ok::<_, store::StoreError>(report)
    };
    match on_own_runtime(STORE_PATIENCE * 2, read) {
        Some(Ok(report)) => Ok(report),
        Some(Err(e)) => Err(format!("census store: {e}")),
        None => Err("census store: no answer in time".to_owned()),
    }
}

/// Runs `work` to its end, or for at most `limit`, on a runtime of its own in a thread of
/// its own: callable at start and at exit, where no runtime runs, and from within one.
fn on_own_runtime<F: std::future::Future + Send>(limit: Duration, work: F) -> Option<F::Output>
where
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                runtime.block_on(async { tokio::time::timeout(limit, work).await.ok() })
            })
            .join()
            .ok()
            .flatten()
    })
}

/// A request's sender as the census tells clients apart: the credential as sent
/// (`authorization` or the API-key header's name, raw value), the User-Agent (capped) and the
/// address (the first forwarded hop behind a trusted proxy). Made by the census, which hashes
/// it once for both the shard and the access log's client id.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    credential: Option<(&'a str, &'a str)>,
    user_agent: &'a str,
    address: Option<IpAddr>,
    /// The census's hash of the three.
    key: u64,
}

impl Caller<'_> {
    fn identity(&self) -> RawIdentity {
        RawIdentity {
            credential: self
                .credential
                .map(|(label, value)| (label.to_owned(), value.to_owned())),
            user_agent: self.user_agent.to_owned(),
            address: self.address,
        }
    }
}

/// The headers that the census and the access log read, found in one pass over the request's
/// headers ([`Headers::visit`]). Each is the first value of its name; a value that is not
/// visible ASCII counts as absent.
#[derive(Debug, Clone, Copy)]
pub struct Sent<'h> {
    pub authorization: Option<&'h str>,
    /// Capped as the census keeps it (see `identity`).
    pub user_agent: &'h str,
    /// Capped as the User-Agent is.
    pub referer: &'h str,
}

impl<'h> Sent<'h> {
    pub fn read(headers: &'h dyn Headers) -> Self {
        let (mut authorization, mut user_agent, mut referer) = (None, None, None);
        headers.visit(&mut |name, value| {
            let first = match name {
                b"authorization" => &mut authorization,
                b"user-agent" => &mut user_agent,
                b"referer" => &mut referer,
                _ => return,
            };
            first.get_or_insert(value);
        });
        Sent {
            authorization: authorization.and_then(text),
            user_agent: user_agent.and_then(text).map_or("", capped_user_agent),
            referer: referer.and_then(text).map_or("", capped_user_agent),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn settings(max: usize) -> CensusSettings {
        CensusSettings {
            enabled: true,
            state_file: None,
            state_file_chosen: false,
            retention: Duration::from_secs(90 * 24 * 3600),
            max_clients: max,
            metric_clients: 10,
            snapshot_interval: Duration::from_secs(60),
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            api_key_headers: vec!["x-api-key".into()],
            hash_user_names: false,
            store: None,
        }
    }

    #[test]
    fn a_chosen_state_file_that_cannot_be_written_is_an_error_and_a_default_one_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-folder");
        std::fs::write(&blocker, "a file where the folder should be").unwrap();
        let mut chosen = settings(10);
        chosen.state_file = Some(blocker.join("census.json"));
        chosen.state_file_chosen = true;
        let error = Census::new(chosen.clone(), Arc::new(Metrics::new()))
            .err()
            .expect("an error");
        assert!(
            error.to_string().starts_with(&format!(
                "census.state_file {}: cannot write there: ",
                blocker.join("census.json").display()
            )),
            "{error}"
        );
        chosen.state_file_chosen = false;
        let (census, _) = Census::new(chosen, Arc::new(Metrics::new())).unwrap();
        assert_eq!(census.settings.state_file, None, "memory only");
    }

    #[test]
    fn rows_older_than_the_retention_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("census.json");
        let row = |id: &str, last_seen| ClientRow {
            tenant: "acme".into(),
            kind: "api".into(),
            client: Client {
                id: id.into(),
                user_agent: "curl/8".into(),
                address: "192.0.2.7".into(),
                credential: None,
                class: ClientClass::Script,
            },
            first_seen: last_seen,
            last_seen,
            count: 1,
            last_path: "/x".into(),
            last_status: 200,
            customer_number: None,
            contact: None,
        };
        let day = 24 * 3600;
        let report = Report {
            clients: vec![row("recent", now() - day), row("old", now() - 91 * day)],
            ..Report::default()
        };
        state::write_atomically(&file, |out| serde_json::to_writer(out, &report)).unwrap();
        let mut kept = settings(10);
        kept.state_file = Some(file.clone());
        let (census, _) = Census::new(kept, Arc::new(Metrics::new())).unwrap();
        let ids: Vec<String> = census
            .report()
            .clients
            .into_iter()
            .map(|r| r.client.id)
            .collect();
        assert_eq!(ids, ["recent"]);
        census.flush();
        let saved: Report = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(saved.clients.len(), 1);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn identity_is_hashed_and_distinguishes_clients() {
        let (census, _worker) = Census::new(settings(10), Arc::new(Metrics::new())).unwrap();
        let peer = Some("192.0.2.7".parse().unwrap());
        let a = census.identify(
            &headers(&[
                ("authorization", "Bearer tok-A"),
                ("user-agent", "curl/8.5.0 extra"),
            ]),
            peer,
        );
        let b = census.identify(
            &headers(&[
                ("authorization", "Bearer tok-B"),
                ("user-agent", "curl/8.5.0"),
            ]),
            peer,
        );
        assert_ne!(a.id, b.id);
        assert_eq!(a.user_agent, "curl/8.5.0 extra");
        assert_eq!(a.class, ClientClass::Script);
        assert!(a.credential.as_deref().unwrap().starts_with("bearer:key:"));
        assert!(!format!("{a:?}").contains("tok-A"));
        // Basic: the user name is the identity, whatever the password.
        let u1 = census.identify(&headers(&[("authorization", "Basic dXNlcjpwdzE=")]), peer); // user:pw1
        let u2 = census.identify(&headers(&[("authorization", "Basic dXNlcjpwdzI=")]), peer); // user:pw2
        assert_eq!(u1, u2);
        // A scheme word Signpost does not know is not shown: it is client text.
        let odd = census.identify(&headers(&[("authorization", "Zq7Marker abc")]), peer);
        assert!(odd.credential.as_deref().unwrap().starts_with("other:"));
        let k = census.identify(&headers(&[("x-api-key", "k-123")]), peer);
        assert!(k.credential.as_deref().unwrap().starts_with("x-api-key:"));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let (census, _worker) = Census::new(settings(10), Arc::new(Metrics::new())).unwrap();
        let h = headers(&[("x-forwarded-for", "198.51.100.9, 10.1.1.1")]);
        assert_eq!(
            census
                .identify(&h, Some("10.0.0.2".parse().unwrap()))
                .address,
            "198.51.100.9"
        );
        assert_eq!(
            census
                .identify(&h, Some("192.0.2.1".parse().unwrap()))
                .address,
            "192.0.2.1"
        );
    }

    #[test]
    fn the_one_pass_finds_what_get_finds() {
        let mut h = headers(&[
            ("x-other", "1"),
            ("user-agent", "Sync/1"),
            ("authorization", "Bearer first"),
            ("referer", "https://acme.flexhosting.se/HRM/"),
        ]);
        h.append("authorization", "Bearer second".parse().unwrap());
        h.append("user-agent", "Other/2".parse().unwrap());
        let sent = Sent::read(&h);
        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(sent.authorization, get("authorization"));
        assert_eq!(sent.authorization, Some("Bearer first"));
        assert_eq!(Some(sent.user_agent), get("user-agent"));
        assert_eq!(Some(sent.referer), get("referer"));
        // A value that is not visible ASCII is absent, as `get(…).to_str()` makes it; long
        // ones are capped.
        let mut odd = HeaderMap::new();
        odd.insert(
            "user-agent",
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        odd.insert("referer", HeaderValue::from_str(&"r".repeat(1000)).unwrap());
        let sent = Sent::read(&odd);
        assert_eq!((sent.authorization, sent.user_agent), (None, ""));
        assert_eq!(sent.referer, capped_user_agent(&"r".repeat(1000)));
        assert!(sent.referer.len() < 1000);
    }

    #[test]
    fn record_aggregates_per_shard_and_drain_folds_into_the_table() {
        let (census, _worker) = Census::new(settings(10), Arc::new(Metrics::new())).unwrap();
        let (tenant, kind) = (TenantNo::of("acme"), Kind::new("api"));
        let peer = Some("192.0.2.7".parse().unwrap());
        let a = headers(&[("authorization", "Bearer tok-A"), ("user-agent", "Sync/1")]);
        let b = headers(&[("authorization", "Bearer tok-B"), ("user-agent", "Sync/1")]);
        for _ in 0..3 {
            census.record(tenant, &kind, census.caller(&a, peer), "/HRM/API/a", 200);
        }
        census.record(tenant, &kind, census.caller(&b, peer), "/HRM/API/b", 201);
        assert!(
            census.report().clients.is_empty(),
            "nothing reaches the table before a drain"
        );
        {
            let shard = census.shards[slot::mine()].lock().unwrap();
            let counts: Vec<u64> = shard.pending.iter().map(|p| p.count).collect();
            assert_eq!(
                counts,
                [3, 1],
                "one sighting per caller, in the order they came"
            );
            assert_eq!(shard.index.len(), 2);
        }
        census.drain();
        let mut rows: Vec<(u64, String, u16)> = census
            .report()
            .clients
            .into_iter()
            .map(|r| (r.count, r.last_path, r.last_status))
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            vec![(1, "/HRM/API/b".into(), 201), (3, "/HRM/API/a".into(), 200)]
        );
        // Same client after the drain: the row grows, no new row.
        census.record(tenant, &kind, census.caller(&a, peer), "/HRM/API/c", 200);
        census.drain();
        assert_eq!(census.report().clients.len(), 2);
        assert_eq!(
            census.report().clients.iter().map(|r| r.count).sum::<u64>(),
            5
        );
    }

    #[test]
    fn a_caller_of_many_tenants_is_kept_once_per_shard() {
        let (census, _worker) = Census::new(settings(10), Arc::new(Metrics::new())).unwrap();
        let kind = Kind::new("api");
        let h = headers(&[("authorization", "Bearer tok-A"), ("user-agent", "Sync/1")]);
        for i in 0..5 {
            let tenant = TenantNo::of(&format!("many-{i}"));
            census.record(tenant, &kind, census.caller(&h, None), "/HRM/API/a", 200);
        }
        {
            let shard = census.shards[slot::mine()].lock().unwrap();
            assert_eq!((shard.pending.len(), shard.callers.len()), (5, 1));
        }
        census.drain();
        let rows = census.report().clients;
        assert_eq!(rows.len(), 5);
        assert!(rows.iter().all(|r| r.client == rows[0].client));
        // Two drains later the worker records into the lists it filled, emptied but not freed.
        census.drain();
        let shard = census.shards[slot::mine()].lock().unwrap();
        assert_eq!((shard.pending.len(), shard.callers.len()), (0, 0));
        assert!(shard.pending.capacity() >= 5 && shard.index.capacity() >= 5);
    }

    #[test]
    fn clients_no_row_holds_are_forgotten_once_they_outnumber_the_rows() {
        let (census, _worker) = Census::new(settings(2), Arc::new(Metrics::new())).unwrap();
        let (tenant, kind) = (TenantNo::of("acme"), Kind::new("api"));
        for i in 0..5 {
            let agent = format!("Sync/{i}");
            let h = headers(&[("user-agent", &agent)]);
            census.record(tenant, &kind, census.caller(&h, None), "/HRM/API/a", 200);
            census.drain();
        }
        assert_eq!(census.report().clients.len(), 2);
        assert_eq!(
            census.folding.lock().unwrap().known.len(),
            2,
            "only the rows' clients"
        );
    }

    #[test]
    fn state_round_trips_with_the_same_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut kept = settings(10);
        kept.state_file = Some(dir.path().join("census.json"));
        let (tenant, kind) = (TenantNo::of("acme"), Kind::new("api"));
        let agent = headers(&[("authorization", "Bearer tok-A"), ("user-agent", "Sync/1")]);
        let (census, _) = Census::new(kept.clone(), Arc::new(Metrics::new())).unwrap();
        census.record(
            tenant,
            &kind,
            census.caller(&agent, None),
            "/HRM/API/a",
            200,
        );
        census.flush();
        let before = census.report();
        drop(census);
        let (census, _) = Census::new(kept, Arc::new(Metrics::new())).unwrap();
        assert_eq!(census.report().clients, before.clients);
        assert_eq!(census.report().days, before.days);
        // The installation key came back too: the same client gets the same row.
        census.record(
            tenant,
            &kind,
            census.caller(&agent, None),
            "/HRM/API/b",
            200,
        );
        census.drain();
        let rows = census.report().clients;
        assert_eq!((rows.len(), rows[0].count), (1, 2), "{rows:?}");
    }
}
