//! The census of legacy clients: who still calls the old addresses, per tenant and kind.
//!
//! The request path does as little as it can: it hashes the raw identity of the client, takes
//! the lock of *its own worker thread's* shard (so workers never contend) and bumps a counter in
//! a small map; only a client new to that shard costs an allocation. Every 200 ms one
//! background task swaps each shard's map for an empty one and folds what it took into the
//! bounded LRU table (least recently seen evicted first) and a per-kind timeline. There the
//! identity is hashed for good, so raw credentials live only in memory, for at most one drain
//! interval. The table is snapshotted to a state file (write + rename) periodically and at
//! shutdown, and restored at start, so a restart loses at most one interval.
//!
//! A client is a fingerprint of: the credential's identity (Basic user name, Bearer token or a
//! configured API-key header — hashed, never stored in clear), the User-Agent's product
//! token, and the client address (the first `X-Forwarded-For` hop when the peer is a trusted
//! proxy). Paths are kept without query and with redacted captures shown as `…`.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{AUTHORIZATION, USER_AGENT};
use http::HeaderMap;
use lru::LruCache;
use serde::{Deserialize, Serialize};

use super::metrics::Metrics;
use crate::config::CensusSettings;

/// Width of one timeline bucket, and how many are kept (48 hours).
pub const BUCKET_SECONDS: u64 = 300;
const BUCKETS: u64 = 576;

/// A client's identity as the request showed it, before hashing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RawIdentity {
    /// (`basic` | `bearer` | … | API-key header name, raw value)
    credential: Option<(String, String)>,
    user_agent: String,
    address: Option<IpAddr>,
}

/// What a shard accumulates for one raw identity between drains.
#[derive(Debug)]
struct Pending {
    tenant: Arc<str>,
    kind: Arc<str>,
    identity: RawIdentity,
    first_seen: u64,
    last_seen: u64,
    count: u64,
    path: String,
    status: u16,
}

type Shard = HashMap<u64, Pending, foldhash::fast::RandomState>;

/// Who a legacy client is, with nothing secret in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Short fingerprint of the three parts below.
    pub id: String,
    /// The User-Agent's product token (`curl/8.5.0`), or empty.
    pub user_agent: String,
    pub address: String,
    /// `bearer:1a2b3c4d5e6f`: scheme and a hash of the identity, never the value.
    pub credential: Option<String>,
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
}

/// Legacy requests of one kind in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub at: u64,
    pub kind: String,
    pub count: u64,
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
}

/// The table the worker owns; reports copy out of it.
struct Data {
    /// Keyed by a hash of (tenant, kind, client id): no strings are built to look a row up.
    clients: LruCache<u64, Row>,
    keys: foldhash::fast::RandomState,
    /// bucket start → kind → count
    timeline: BTreeMap<u64, BTreeMap<String, u64>>,
    evictions: u64,
}

/// A row as the worker keeps it: labels shared with the routing table, the client shared by
/// all its rows. Strings are made only when a report asks for them.
struct Row {
    tenant: Arc<str>,
    kind: Arc<str>,
    client: Arc<Client>,
    first_seen: u64,
    last_seen: u64,
    count: u64,
    last_path: String,
    last_status: u16,
}

impl Row {
    fn to_client_row(&self) -> ClientRow {
        ClientRow {
            tenant: self.tenant.to_string(),
            kind: self.kind.to_string(),
            client: Client::clone(&self.client),
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            count: self.count,
            last_path: self.last_path.clone(),
            last_status: self.last_status,
        }
    }
}

/// The census handle shared by the proxy (to record) and the admin listener (to report).
pub struct Census {
    /// One per worker thread (by thread index modulo the count): never contended.
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    data: Mutex<Data>,
    settings: CensusSettings,
    metrics: Arc<Metrics>,
}

/// Drains the shards; run it with [`CensusWorker::run`].
pub struct CensusWorker {
    census: Arc<Census>,
}

/// Shards: more than any sensible worker-thread count, so each worker has its own.
const SHARDS: usize = 64;
/// How often the worker drains the shards.
const DRAIN_EVERY: Duration = Duration::from_millis(200);

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Census {
    /// A census restored from the state file, if there is one. A state file the operator
    /// chose that cannot be written is an error; the default location falls back to memory.
    pub fn new(
        mut settings: CensusSettings,
        metrics: Arc<Metrics>,
    ) -> Result<(Arc<Census>, CensusWorker), StateFileError> {
        if let Some(path) = settings.state_file.clone() {
            if let Err(e) = probe_writable(&path) {
                if settings.state_file_chosen {
                    return Err(StateFileError {
                        path,
                        reason: e.to_string(),
                    });
                }
                tracing::warn!(file = %path.display(), error = %e, "the census cannot be saved at its default location and lives in memory only; set census.state_file");
                settings.state_file = None;
            }
        }
        let capacity = NonZeroUsize::new(settings.max_clients).unwrap_or(NonZeroUsize::MIN);
        let mut data = Data::new(capacity);
        match &settings.state_file {
            Some(path) => {
                match restore(path) {
                    Ok(Some(report)) => {
                        data.apply(report);
                        data.prune(now().saturating_sub(settings.retention.as_secs()));
                        let restored = data.clients.len();
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
        let census = Arc::new(Census {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            data: Mutex::new(data),
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

    /// Counts one request of the client that `headers` and `peer` identify. Allocates only for
    /// a client new to this worker's shard since the last drain.
    pub fn record(
        &self,
        tenant: &Arc<str>,
        kind: &Arc<str>,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
        path: &str,
        status: u16,
    ) {
        let at = now();
        let address = self.client_address(headers, peer);
        let credential = self.raw_credential(headers);
        let user_agent = user_agent_token(headers);
        let key = self
            .hasher
            .hash_one((&**tenant, &**kind, credential, user_agent, address));
        let Ok(mut shard) = self.shards[SHARD.with(|s| *s)].lock() else {
            return;
        };
        if let Some(p) = shard.get_mut(&key) {
            p.count += 1;
            p.last_seen = at;
            p.status = status;
            if p.path != path {
                p.path.clear();
                p.path.push_str(path);
            }
            return;
        }
        if shard.len() >= self.settings.max_clients {
            self.metrics.census_dropped.inc();
            return;
        }
        let identity = RawIdentity {
            credential: credential.map(|(label, value)| (label.to_owned(), value.to_owned())),
            user_agent: user_agent.to_owned(),
            address,
        };
        let pending = Pending {
            tenant: tenant.clone(),
            kind: kind.clone(),
            identity,
            first_seen: at,
            last_seen: at,
            count: 1,
            path: path.to_owned(),
            status,
        };
        shard.insert(key, pending);
    }

    /// The client as the census names it (for the access log).
    pub fn identify(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Client {
        let credential = self.raw_credential(headers);
        let identity = RawIdentity {
            credential: credential.map(|(l, v)| (l.to_owned(), v.to_owned())),
            user_agent: user_agent_token(headers).to_owned(),
            address: self.client_address(headers, peer),
        };
        identity.client()
    }

    fn client_address(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
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
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|hop| hop.trim().parse().ok());
        Some(first_hop.unwrap_or(peer))
    }

    /// The credential as sent: (`authorization` or the API-key header's name, raw value).
    fn raw_credential<'s, 'h>(&'s self, headers: &'h HeaderMap) -> Option<(&'s str, &'h str)> {
        if let Some(auth) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            return Some(("authorization", auth));
        }
        self.settings
            .api_key_headers
            .iter()
            .find_map(|name| Some((name.as_str(), headers.get(name.as_str())?.to_str().ok()?)))
    }

    /// The census as it is now.
    pub fn report(&self) -> Report {
        self.data.lock().map(|d| d.report()).unwrap_or_default()
    }

    /// The clients seen most, for the last-seen gauge.
    pub fn top_clients(&self) -> Vec<ClientRow> {
        let mut rows = self.report().clients;
        rows.sort_by(|a, b| b.count.cmp(&a.count).then(b.last_seen.cmp(&a.last_seen)));
        rows.truncate(self.settings.metric_clients);
        rows
    }

    /// Folds every shard's pending counts into the table.
    fn drain(&self) {
        let taken: Vec<Shard> = self
            .shards
            .iter()
            .filter_map(|s| {
                // Keep the shard's size, so a busy worker does not regrow its map every drain.
                s.lock().ok().map(|mut s| {
                    let empty = Shard::with_capacity_and_hasher(s.len(), s.hasher().clone());
                    std::mem::replace(&mut *s, empty)
                })
            })
            .collect();
        let Ok(mut data) = self.data.lock() else {
            return;
        };
        // One integration often calls many tenants: hash each identity once per drain.
        let mut clients: HashMap<RawIdentity, Arc<Client>> = HashMap::new();
        for p in taken.into_iter().flat_map(|s| s.into_values()) {
            let client = match clients.get(&p.identity) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(p.identity.client());
                    clients.insert(p.identity, c.clone());
                    c
                }
            };
            let row = Row {
                client,
                tenant: p.tenant,
                kind: p.kind,
                first_seen: p.first_seen,
                last_seen: p.last_seen,
                count: p.count,
                last_path: p.path,
                last_status: p.status,
            };
            if data.record(row) {
                self.metrics.census_evictions.inc();
            }
        }
    }

    /// Folds what the workers counted into the table and saves the state file: the last word
    /// at shutdown, once every worker has stopped.
    pub fn flush(&self) {
        self.drain();
        self.save();
    }

    /// Writes the state file: a temporary file renamed over the old one, so a crash mid-write
    /// leaves the previous snapshot intact.
    fn save(&self) {
        let Some(path) = &self.settings.state_file else {
            return;
        };
        let cutoff = now().saturating_sub(self.settings.retention.as_secs());
        if let Ok(mut data) = self.data.lock() {
            data.prune(cutoff);
        }
        let report = self.report();
        if let Err(e) = write_atomically(path, &report) {
            tracing::warn!(file = %path.display(), error = %e, "census state not saved");
        }
    }
}

impl CensusWorker {
    /// Drains the shards every 200 ms until `shutdown` fires, saving the state file every
    /// interval and once more on the way out.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let census = self.census;
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
                _ = shutdown.changed() => break,
            }
        }
        census.flush();
    }
}

impl RawIdentity {
    /// Hashes the identity into the census's client: nothing secret survives this.
    fn client(&self) -> Client {
        let credential = self.credential.as_ref().map(|(label, value)| {
            let (label, identity) = if label == "authorization" {
                let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.as_str(), ""));
                // The scheme word is shown as is: only the common ones, so no client text does.
                let scheme = scheme.to_ascii_lowercase();
                let scheme = match scheme.as_str() {
                    "basic" | "bearer" | "digest" | "negotiate" | "ntlm" | "token" | "apikey"
                    | "hmac" | "aws4-hmac-sha256" => scheme,
                    _ => "other".to_owned(),
                };
                // For Basic, the user name is the identity; the password is never looked at.
                let identity = match scheme.as_str() {
                    "basic" => basic_user(rest.trim()).unwrap_or_default(),
                    _ => rest.trim().to_owned(),
                };
                (scheme, identity)
            } else {
                (label.clone(), value.clone())
            };
            format!("{label}:{}", short_hash(&[&identity], 6))
        });
        let address = self.address.map_or_else(String::new, |a| a.to_string());
        let id = short_hash(
            &[
                credential.as_deref().unwrap_or(""),
                &self.user_agent,
                &address,
            ],
            6,
        );
        Client {
            id,
            user_agent: self.user_agent.clone(),
            address,
            credential,
        }
    }
}

/// The User-Agent's product token (`curl/8.5.0` of `curl/8.5.0 (x86_64)`), at most 64 bytes.
fn user_agent_token(headers: &HeaderMap) -> &str {
    let token = headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split_whitespace().next())
        .unwrap_or("");
    let mut end = token.len().min(64);
    while !token.is_char_boundary(end) {
        end -= 1;
    }
    &token[..end]
}

/// The state file cannot be kept where the operator said.
#[derive(Debug, thiserror::Error)]
#[error("census.state_file {}: cannot write there: {reason}", path.display())]
pub struct StateFileError {
    pub path: PathBuf,
    pub reason: String,
}

/// Whether the state file's folder exists (or can be made) and takes a new file.
fn probe_writable(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, b"")?;
    std::fs::remove_file(&tmp)
}

fn write_atomically(path: &Path, report: &Report) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(report)?)?;
    std::fs::rename(&tmp, path)
}

fn restore(path: &Path) -> std::io::Result<Option<Report>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Data {
    fn new(capacity: NonZeroUsize) -> Self {
        Data {
            clients: LruCache::new(capacity),
            keys: foldhash::fast::RandomState::default(),
            timeline: BTreeMap::new(),
            evictions: 0,
        }
    }

    /// Adds one client's requests (a row as it would stand alone); returns whether a client
    /// was evicted to make room.
    fn record(&mut self, s: Row) -> bool {
        let bucket = s.last_seen - s.last_seen % BUCKET_SECONDS;
        let kinds = self.timeline.entry(bucket).or_default();
        match kinds.get_mut(&*s.kind) {
            Some(n) => *n += s.count,
            None => {
                kinds.insert(s.kind.to_string(), s.count);
            }
        }
        while self.timeline.len() as u64 > BUCKETS {
            self.timeline.pop_first();
        }
        let key = self.keys.hash_one((&*s.tenant, &*s.kind, &*s.client.id));
        if let Some(row) = self.clients.get_mut(&key) {
            // A 64-bit key collision would merge two clients; check rather than trust.
            if row.tenant == s.tenant && row.kind == s.kind && row.client.id == s.client.id {
                row.first_seen = row.first_seen.min(s.first_seen);
                if s.last_seen >= row.last_seen {
                    row.last_seen = s.last_seen;
                    row.last_path = s.last_path;
                    row.last_status = s.last_status;
                }
                row.count += s.count;
                return false;
            }
        }
        let evicted = self.clients.push(key, s).is_some_and(|(k, _)| k != key);
        if evicted {
            self.evictions += 1;
        }
        evicted
    }

    /// Drops the rows last seen before `cutoff` (Unix seconds): `census.retention`.
    fn prune(&mut self, cutoff: u64) {
        let old: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, row)| row.last_seen < cutoff)
            .map(|(key, _)| *key)
            .collect();
        for key in old {
            self.clients.pop(&key);
        }
        self.timeline.retain(|at, _| *at >= cutoff);
    }

    fn report(&self) -> Report {
        let mut clients: Vec<ClientRow> = self
            .clients
            .iter()
            .map(|(_, r)| r.to_client_row())
            .collect();
        clients.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(b.count.cmp(&a.count)));
        let timeline = self
            .timeline
            .iter()
            .flat_map(|(at, kinds)| {
                kinds.iter().map(|(kind, count)| TimelinePoint {
                    at: *at,
                    kind: kind.clone(),
                    count: *count,
                })
            })
            .collect();
        Report {
            generated_at: now(),
            bucket_seconds: BUCKET_SECONDS,
            evictions: self.evictions,
            clients,
            timeline,
        }
    }

    fn apply(&mut self, report: Report) {
        // Oldest first, so the LRU order comes back as it was.
        let mut rows = report.clients;
        rows.sort_by_key(|r| r.last_seen);
        for row in rows {
            let (tenant, kind): (Arc<str>, Arc<str>) = (row.tenant.into(), row.kind.into());
            let key = self.keys.hash_one((&*tenant, &*kind, &*row.client.id));
            let row = Row {
                tenant,
                kind,
                client: Arc::new(row.client),
                first_seen: row.first_seen,
                last_seen: row.last_seen,
                count: row.count,
                last_path: row.last_path,
                last_status: row.last_status,
            };
            self.clients.push(key, row);
        }
        for p in report.timeline {
            *self
                .timeline
                .entry(p.at)
                .or_default()
                .entry(p.kind)
                .or_default() += p.count;
        }
        self.evictions = report.evictions;
    }
}

/// The user name of a Basic credential (`base64(user:password)`).
fn basic_user(encoded: &str) -> Option<String> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    Some(
        text.split_once(':')
            .map_or(text.as_str(), |(u, _)| u)
            .to_owned(),
    )
}

/// Hex of the first `bytes` bytes of SHA-256 over the parts (separated, so parts cannot run
/// into each other).
fn short_hash(parts: &[&str], bytes: usize) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish().as_ref()[..bytes]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            },
            first_seen: last_seen,
            last_seen,
            count: 1,
            last_path: "/x".into(),
            last_status: 200,
        };
        let day = 24 * 3600;
        let report = Report {
            clients: vec![row("recent", now() - day), row("old", now() - 91 * day)],
            ..Report::default()
        };
        write_atomically(&file, &report).unwrap();
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
        assert_eq!(a.user_agent, "curl/8.5.0");
        assert!(a.credential.as_deref().unwrap().starts_with("bearer:"));
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

    fn sighting(tenant: &str, id: &str, at: u64) -> Row {
        Row {
            tenant: tenant.into(),
            kind: "api".into(),
            client: Arc::new(Client {
                id: id.into(),
                user_agent: "x".into(),
                address: "192.0.2.1".into(),
                credential: None,
            }),
            last_path: "/HRM/API/v1".into(),
            last_status: 200,
            first_seen: at,
            last_seen: at,
            count: 1,
        }
    }

    #[test]
    fn record_aggregates_per_shard_and_drain_folds_into_the_table() {
        let (census, _worker) = Census::new(settings(10), Arc::new(Metrics::new())).unwrap();
        let (tenant, kind): (Arc<str>, Arc<str>) = ("acme".into(), "api".into());
        let peer = Some("192.0.2.7".parse().unwrap());
        let a = headers(&[("authorization", "Bearer tok-A"), ("user-agent", "Sync/1")]);
        let b = headers(&[("authorization", "Bearer tok-B"), ("user-agent", "Sync/1")]);
        for _ in 0..3 {
            census.record(&tenant, &kind, &a, peer, "/HRM/API/a", 200);
        }
        census.record(&tenant, &kind, &b, peer, "/HRM/API/b", 201);
        assert!(
            census.report().clients.is_empty(),
            "nothing reaches the table before a drain"
        );
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
        census.record(&tenant, &kind, &a, peer, "/HRM/API/c", 200);
        census.drain();
        assert_eq!(census.report().clients.len(), 2);
        assert_eq!(
            census.report().clients.iter().map(|r| r.count).sum::<u64>(),
            5
        );
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
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("census.json");
        let mut data = Data::new(NonZeroUsize::new(5).unwrap());
        data.record(sighting("t", "a", 1000));
        data.record(sighting("u", "b", 2000));
        write_atomically(&path, &data.report()).unwrap();
        let mut back = Data::new(NonZeroUsize::new(5).unwrap());
        back.apply(restore(&path).unwrap().unwrap());
        assert_eq!(back.report().clients, data.report().clients);
        assert_eq!(back.report().timeline, data.report().timeline);
    }
}
