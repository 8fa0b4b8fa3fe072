//! One census for a fleet, in PostgreSQL (`census.store`).
//!
//! Each instance keeps counting in memory exactly as without a store; the drain also folds
//! every sighting into an **outbox** of deltas. Every `flush_interval` the outbox becomes a
//! numbered **batch**, written in one transaction together with the batch's number in this
//! process's row of `signpost_census_instances`. A batch whose commit may or may not have
//! happened (the connection died at the wrong moment) is retried with the same number, and the
//! transaction skips a number it has already recorded: a retried flush never counts twice.
//! Each process has its own row (an *incarnation*: the instance name and a random suffix), so
//! a restart, or an old and a new process side by side during a graceful upgrade, never reuse
//! a number. Counts add up across instances; first seen is the minimum, last seen the maximum,
//! last path and status those of the latest sighting.
//!
//! The store is never on a request's path: a store that is down or slow only lets the outbox
//! grow, up to a bound (new clients beyond it are dropped and counted; known ones keep
//! counting), and is flushed when the store is back. Reports read the fleet's rows from the
//! store, and fall back to this instance's own census when it cannot be reached.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use compact_str::CompactString;
use tokio_postgres::{Client as Db, NoTls};

use super::data::{Row, BUCKET_SECONDS};
use super::rows::{Client, ClientRow, DayCount, Report, TimelinePoint, Watch, DAY};
use super::{now, ClientClass};
use crate::config::{read_password, trust_roots, StoreSettings};
use crate::report::metrics::Metrics;
use crate::table::Kind;

/// The schema, one step per version; a store at version N gets steps N+1… at start.
const MIGRATIONS: &[&str] = &[
    // 1: clients, the timeline, per-tenant days, instances' batch numbers, the fingerprint key.
    "CREATE TABLE signpost_census_clients (
        tenant text NOT NULL, kind text NOT NULL, client_id text NOT NULL,
        user_agent text NOT NULL, address text NOT NULL, credential text, class text NOT NULL,
        first_seen bigint NOT NULL, last_seen bigint NOT NULL, count bigint NOT NULL,
        last_path text NOT NULL, last_status integer NOT NULL,
        PRIMARY KEY (tenant, kind, client_id));
     CREATE INDEX signpost_census_clients_last_seen ON signpost_census_clients (last_seen);
     CREATE INDEX signpost_census_clients_client_id ON signpost_census_clients (client_id);
     CREATE TABLE signpost_census_timeline (
        at bigint NOT NULL, kind text NOT NULL, count bigint NOT NULL, PRIMARY KEY (at, kind));
     CREATE TABLE signpost_census_days (
        day bigint NOT NULL, tenant text NOT NULL, count bigint NOT NULL, PRIMARY KEY (day, tenant));
     CREATE TABLE signpost_census_instances (
        incarnation text PRIMARY KEY, instance text NOT NULL,
        batch bigint NOT NULL, flushed_at bigint NOT NULL);
     CREATE TABLE signpost_census_key (
        id integer PRIMARY KEY CHECK (id = 1), key bytea NOT NULL);",
    // 2: erasures, so that every instance also drops the client from its own census.
    "CREATE TABLE signpost_census_forgotten (
        client_id text PRIMARY KEY, forgotten_at bigint NOT NULL);",
    // 3: since when the fleet watches each tenant with a census-gated phase.
    "CREATE TABLE signpost_census_watch (tenant text PRIMARY KEY, since bigint NOT NULL);",
];

/// Advisory lock ids: the schema migration, and retention pruning (one instance at a time).
const LOCK_MIGRATE: i64 = 0x5349_474e_0001;
const LOCK_PRUNE: i64 = 0x5349_474e_0002;
/// How long one flush, query or connection may take before it counts as failed.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pruning runs at most this often per instance.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Why a store operation failed: the `reason` label of the flush-error metric.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("query failed: {0}")]
    Query(String),
    #[error("no answer within {}s", STORE_TIMEOUT.as_secs())]
    Timeout,
    #[error("the store's schema is version {found}; this Signpost knows up to {known}: upgrade Signpost")]
    Schema { found: i32, known: usize },
}

impl StoreError {
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::Connect(_) => "connect",
            StoreError::Tls(_) => "tls",
            StoreError::Auth(_) => "auth",
            StoreError::Query(_) | StoreError::Schema { .. } => "query",
            StoreError::Timeout => "timeout",
        }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let text = e.to_string();
        match e.code() {
            Some(c)
                if *c == SqlState::INVALID_PASSWORD
                    || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                StoreError::Auth(text)
            }
            Some(_) => StoreError::Query(text),
            None if text.contains("TLS") || text.contains("tls") => StoreError::Tls(text),
            None if e.is_closed() || text.contains("connect") => StoreError::Connect(text),
            None if text.contains("password") => StoreError::Auth(text),
            None => StoreError::Query(text),
        }
    }
}

/// One client's counts not yet in the store.
struct Delta {
    tenant: Arc<str>,
    kind: Arc<str>,
    client: Arc<Client>,
    first_seen: u64,
    last_seen: u64,
    count: u64,
    last_path: CompactString,
    last_status: u16,
}

/// What this instance counted since its last flush.
#[derive(Default)]
struct Outbox {
    rows: HashMap<u64, Delta, foldhash::fast::RandomState>,
    timeline: HashMap<(u64, Arc<str>), u64>,
    days: HashMap<(u64, Arc<str>), u64>,
}

/// An outbox with its number, written whole or not at all.
struct Batch {
    seq: i64,
    outbox: Outbox,
}

/// The flushing side: its own connection and the batch it may be retrying.
#[derive(Default)]
struct Flusher {
    db: Option<Db>,
    in_flight: Option<Batch>,
    next_seq: i64,
    last_prune: Option<Instant>,
    /// When the erasures were last read (Unix seconds; 0: never).
    erasures_seen: u64,
}

pub struct Store {
    settings: StoreSettings,
    incarnation: String,
    /// New clients beyond this many rows waiting are dropped (and counted).
    backlog_cap: usize,
    keys: foldhash::fast::RandomState,
    outbox: Mutex<Outbox>,
    flusher: tokio::sync::Mutex<Flusher>,
    /// Reports read on their own connection, so they never wait for a flush.
    reader: tokio::sync::Mutex<Option<Arc<Db>>>,
    metrics: Arc<Metrics>,
}

impl Store {
    pub fn new(settings: StoreSettings, backlog_cap: usize, metrics: Arc<Metrics>) -> Store {
        let suffix: String = super::state::new_key()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let incarnation = format!("{}/{suffix}", settings.instance);
        for reason in ["connect", "tls", "auth", "query", "timeout"] {
            metrics.store_flush_errors.with_label_values(&[reason]);
        }
        Store {
            settings,
            incarnation,
            backlog_cap: backlog_cap.max(1),
            keys: foldhash::fast::RandomState::default(),
            outbox: Mutex::new(Outbox::default()),
            flusher: tokio::sync::Mutex::new(Flusher {
                next_seq: 1,
                ..Flusher::default()
            }),
            reader: tokio::sync::Mutex::new(None),
            metrics,
        }
    }

    pub fn flush_interval(&self) -> Duration {
        self.settings.flush_interval
    }

    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// A connection, migrated to the current schema. The password is read from its file now,
    /// so a rotated secret is used from the next connection on.
    async fn connect(&self) -> Result<Db, StoreError> {
        let mut config = self.settings.postgres.clone();
        if let Some(file) = &self.settings.password_file {
            config.password(read_password(file).map_err(StoreError::Auth)?);
        }
        let tls = match (&self.settings.ca, config.get_ssl_mode()) {
            (Some(ca), _) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Some(trust_roots(ca).map_err(StoreError::Tls)?)
            }
            (None, tokio_postgres::config::SslMode::Disable) => None,
            (None, _) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().unwrap_or_default() {
                    let _ = roots.add(cert);
                }
                Some(roots)
            }
        };
        let connecting = async {
            let mut db = match tls {
                Some(roots) => {
                    let provider = Arc::new(rustls::crypto::ring::default_provider());
                    let tls = rustls::ClientConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .map_err(|e| StoreError::Tls(e.to_string()))?
                        .with_root_certificates(roots)
                        .with_no_client_auth();
                    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
                    let (db, connection) = config.connect(tls).await?;
                    tokio::spawn(connection);
                    db
                }
                None => {
                    let (db, connection) = config.connect(NoTls).await?;
                    tokio::spawn(connection);
                    db
                }
            };
            migrate(&mut db).await?;
            Ok(db)
        };
        tokio::time::timeout(STORE_TIMEOUT, connecting)
            .await
            .map_err(|_| StoreError::Timeout)?
    }

    /// The installation's fingerprint key, shared by the fleet: the store's, or `local` when
    /// the store has none yet (the first instance to ask sets it).
    pub async fn shared_key(&self, local: &[u8]) -> Result<Vec<u8>, StoreError> {
        let db = self.connect().await?;
        let ask = async {
            db.execute(
                "INSERT INTO signpost_census_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
                &[&local],
            )
            .await?;
            let row = db
                .query_one("SELECT key FROM signpost_census_key WHERE id = 1", &[])
                .await?;
            Ok::<_, StoreError>(row.get::<_, Vec<u8>>(0))
        };
        tokio::time::timeout(STORE_TIMEOUT, ask)
            .await
            .map_err(|_| StoreError::Timeout)?
    }

    /// Adds one drained row's counts to the outbox; `kinds` is [`Kind::names`].
    pub fn add(&self, row: &Row, kinds: &[Arc<str>]) {
        let tenant = row.tenant.name();
        let kind = Kind::name_at(kinds, row.kind);
        let Ok(mut outbox) = self.outbox.lock() else {
            return;
        };
        let bucket = row.last_seen - row.last_seen % BUCKET_SECONDS;
        *outbox.timeline.entry((bucket, kind.clone())).or_default() += row.count;
        let day = row.last_seen - row.last_seen % DAY;
        *outbox.days.entry((day, tenant.clone())).or_default() += row.count;
        let key = self.keys.hash_one((&*tenant, &*kind, &*row.client.id));
        if let Some(d) = outbox.rows.get_mut(&key) {
            if d.tenant == tenant && d.kind == kind && d.client.id == row.client.id {
                d.count += row.count;
                d.first_seen = d.first_seen.min(row.first_seen);
                if row.last_seen >= d.last_seen {
                    d.last_seen = row.last_seen;
                    d.last_path.clone_from(&row.last_path);
                    d.last_status = row.last_status;
                }
                return;
            }
        }
        if outbox.rows.len() >= self.backlog_cap {
            self.metrics.store_dropped.inc_by(row.count);
            return;
        }
        outbox.rows.insert(
            key,
            Delta {
                tenant,
                kind,
                client: row.client.clone(),
                first_seen: row.first_seen,
                last_seen: row.last_seen,
                count: row.count,
                last_path: row.last_path.clone(),
                last_status: row.last_status,
            },
        );
        self.metrics.store_backlog.inc();
    }

    /// Writes what is waiting: the batch being retried, then the outbox as the next batch.
    /// Errors are counted and logged; what failed stays to be retried. Returns the clients
    /// erased fleet-wide since the last look, with when: this instance drops them too.
    pub async fn flush(&self) -> Vec<(String, u64)> {
        let mut flusher = self.flusher.lock().await;
        // Two rounds: a batch being retried, then what arrived since.
        for _ in 0..2 {
            if flusher.in_flight.is_none() {
                let outbox = self
                    .outbox
                    .lock()
                    .map(|mut o| std::mem::take(&mut *o))
                    .unwrap_or_default();
                if outbox.rows.is_empty() && outbox.timeline.is_empty() {
                    break;
                }
                let seq = flusher.next_seq;
                flusher.next_seq += 1;
                flusher.in_flight = Some(Batch { seq, outbox });
            }
            if let Err(e) = self.write_in_flight(&mut flusher).await {
                // The connection may be the problem: a new one next time.
                flusher.db = None;
                self.metrics
                    .store_flush_errors
                    .with_label_values(&[e.reason()])
                    .inc();
                tracing::warn!(error = %e, instance = %self.incarnation, "census store flush failed; kept for the next try");
                break;
            }
            flusher.in_flight = None;
            self.metrics.store_last_flush.set(now() as f64);
        }
        self.update_backlog(&flusher);
        let prune_due = flusher
            .last_prune
            .is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
        if let (true, Some(db)) = (prune_due, flusher.db.as_mut()) {
            if let Err(e) = self.prune(db).await {
                tracing::warn!(error = %e, "census store pruning failed");
            }
            flusher.last_prune = Some(Instant::now());
        }
        self.erasures(&mut flusher).await
    }

    /// Erasures recorded since the last look (all of them at the first, so an instance that
    /// was down when a client was erased drops it from its state file too).
    async fn erasures(&self, flusher: &mut Flusher) -> Vec<(String, u64)> {
        let Some(db) = flusher.db.as_ref() else {
            return Vec::new();
        };
        // A second of overlap: erasing twice is harmless, missing one is not.
        let since = flusher.erasures_seen.saturating_sub(1) as i64;
        let checked = now();
        let read = async {
            db.query(
                "SELECT client_id, forgotten_at FROM signpost_census_forgotten WHERE forgotten_at >= $1",
                &[&since],
            )
            .await
        };
        match tokio::time::timeout(STORE_TIMEOUT, read).await {
            Ok(Ok(rows)) => {
                flusher.erasures_seen = checked;
                rows.iter()
                    .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// The last flush, after the runtimes that held the connections have stopped: it connects
    /// afresh and gives up after `limit`, so a store that is down cannot hold the exit.
    pub async fn final_flush(&self, limit: Duration) {
        self.flusher.lock().await.db = None;
        *self.reader.lock().await = None;
        if tokio::time::timeout(limit, self.flush()).await.is_err() {
            tracing::warn!(instance = %self.incarnation, "census store unreachable at exit; the last counts are lost");
        }
    }

    fn update_backlog(&self, flusher: &Flusher) {
        let waiting = self.outbox.lock().map_or(0, |o| o.rows.len());
        let in_flight = flusher
            .in_flight
            .as_ref()
            .map_or(0, |b| b.outbox.rows.len());
        self.metrics.store_backlog.set((waiting + in_flight) as i64);
    }

    async fn write_in_flight(&self, flusher: &mut Flusher) -> Result<(), StoreError> {
        if flusher.db.is_none() {
            flusher.db = Some(self.connect().await?);
        }
        let (Some(db), Some(batch)) = (flusher.db.as_mut(), flusher.in_flight.as_ref()) else {
            return Ok(());
        };
        tokio::time::timeout(
            STORE_TIMEOUT,
            write_batch(db, &self.incarnation, &self.settings.instance, batch),
        )
        .await
        .map_err(|_| StoreError::Timeout)?
    }

    /// Drops rows past the retention, and old timeline, days and instances: one instance at a
    /// time (the others skip while one holds the lock).
    async fn prune(&self, db: &mut Db) -> Result<(), StoreError> {
        let cutoff = now().saturating_sub(self.settings.retention.as_secs()) as i64;
        let timeline_cutoff = now().saturating_sub(48 * 3600 + BUCKET_SECONDS) as i64;
        let days_cutoff = now().saturating_sub(8 * DAY) as i64;
        let tx = db.transaction().await?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK_PRUNE])
            .await?
            .get(0);
        if locked {
            tx.execute(
                "DELETE FROM signpost_census_clients WHERE last_seen < $1",
                &[&cutoff],
            )
            .await?;
            tx.execute(
                "DELETE FROM signpost_census_timeline WHERE at < $1",
                &[&timeline_cutoff],
            )
            .await?;
            tx.execute(
                "DELETE FROM signpost_census_days WHERE day < $1",
                &[&days_cutoff],
            )
            .await?;
            tx.execute(
                "DELETE FROM signpost_census_instances WHERE flushed_at < $1",
                &[&cutoff],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn reader(&self) -> Result<Arc<Db>, StoreError> {
        let mut reader = self.reader.lock().await;
        if let Some(db) = reader.as_ref().filter(|db| !db.is_closed()) {
            return Ok(db.clone());
        }
        let db = Arc::new(self.connect().await?);
        *reader = Some(db.clone());
        Ok(db)
    }

    /// Runs `work` on the reader connection within the store timeout; a connection that
    /// failed or timed out is dropped, to be made anew next time.
    async fn read<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Db>) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let read = async { work(self.reader().await?).await };
        match tokio::time::timeout(STORE_TIMEOUT, read).await {
            Ok(Ok(read)) => Ok(read),
            Ok(Err(e)) => {
                *self.reader.lock().await = None;
                Err(e)
            }
            Err(_) => {
                *self.reader.lock().await = None;
                Err(StoreError::Timeout)
            }
        }
    }

    /// The fleet's account of the tenants with a census-gated phase. Records when this
    /// instance began watching each (the fleet keeps the earliest), then reads the fleet's
    /// "since" and each kind's last call, merged with `local`, which may hold calls not
    /// flushed yet.
    /// With `record` false (`explain`), nothing is written: a tenant the fleet has never
    /// watched is left out.
    pub async fn watch(
        &self,
        local: &BTreeMap<String, Watch>,
        record: bool,
    ) -> Result<BTreeMap<String, Watch>, StoreError> {
        if local.is_empty() {
            return Ok(BTreeMap::new());
        }
        let tenants: Vec<&str> = local.keys().map(String::as_str).collect();
        let since: Vec<i64> = local.values().map(|w| w.since as i64).collect();
        let rows = self
            .read(|db| async move {
                if record {
                    db.execute(
                        "INSERT INTO signpost_census_watch (tenant, since)
                         SELECT * FROM UNNEST($1::text[], $2::bigint[])
                         ON CONFLICT (tenant) DO UPDATE
                         SET since = LEAST(signpost_census_watch.since, EXCLUDED.since)",
                        &[&tenants, &since],
                    )
                    .await?;
                }
                let rows = db
                    .query(
                        "SELECT w.tenant, w.since, c.kind, max(c.last_seen)
                         FROM signpost_census_watch w
                         LEFT JOIN signpost_census_clients c ON c.tenant = w.tenant
                         WHERE w.tenant = ANY($1)
                         GROUP BY w.tenant, w.since, c.kind",
                        &[&tenants],
                    )
                    .await?;
                Ok(rows)
            })
            .await?;
        let mut fleet = local.clone();
        if !record {
            let watched: std::collections::HashSet<&str> =
                rows.iter().map(|r| r.get::<_, &str>(0)).collect();
            fleet.retain(|tenant, _| watched.contains(tenant.as_str()));
        }
        for r in rows {
            let Some(watch) = fleet.get_mut(r.get::<_, &str>(0)) else {
                continue;
            };
            let last_call = r
                .get::<_, Option<String>>(2)
                .zip(r.get::<_, Option<i64>>(3));
            watch.merge(&Watch {
                since: r.get::<_, i64>(1) as u64,
                last_call: last_call
                    .map(|(k, at)| (k, at as u64))
                    .into_iter()
                    .collect(),
            });
        }
        Ok(fleet)
    }

    /// The fleet's census: the `limit` most recently seen clients, the 48-hour timeline and
    /// the per-tenant days.
    pub async fn report(&self, limit: usize) -> Result<Report, StoreError> {
        let read = |db: Arc<Db>| async move {
            let rows = db
                .query(
                    "SELECT tenant, kind, client_id, user_agent, address, credential, class,
                            first_seen, last_seen, count, last_path, last_status
                     FROM signpost_census_clients ORDER BY last_seen DESC, count DESC LIMIT $1",
                    &[&(limit as i64)],
                )
                .await?;
            let since = now().saturating_sub(48 * 3600 + BUCKET_SECONDS) as i64;
            let timeline = db
                .query(
                    "SELECT at, kind, count FROM signpost_census_timeline WHERE at >= $1 ORDER BY at, kind",
                    &[&since],
                )
                .await?;
            let since = now().saturating_sub(8 * DAY) as i64;
            let days = db
                .query(
                    "SELECT day, tenant, count FROM signpost_census_days WHERE day >= $1 ORDER BY day, tenant",
                    &[&since],
                )
                .await?;
            Ok::<_, StoreError>((rows, timeline, days))
        };
        let (rows, timeline, days) = self.read(read).await?;
        let class = |name: &str| {
            ClientClass::ALL
                .into_iter()
                .find(|c| c.as_str() == name)
                .unwrap_or_default()
        };
        Ok(Report {
            generated_at: now(),
            bucket_seconds: BUCKET_SECONDS,
            clients: rows
                .iter()
                .map(|r| ClientRow {
                    tenant: r.get(0),
                    kind: r.get(1),
                    client: Client {
                        id: r.get(2),
                        user_agent: r.get(3),
                        address: r.get(4),
                        credential: r.get(5),
                        class: class(r.get(6)),
                    },
                    first_seen: r.get::<_, i64>(7) as u64,
                    last_seen: r.get::<_, i64>(8) as u64,
                    count: r.get::<_, i64>(9) as u64,
                    last_path: r.get(10),
                    last_status: r.get::<_, i32>(11) as u16,
                    customer_number: None,
                    contact: None,
                })
                .collect(),
            timeline: timeline
                .iter()
                .map(|r| TimelinePoint {
                    at: r.get::<_, i64>(0) as u64,
                    kind: r.get(1),
                    count: r.get::<_, i64>(2) as u64,
                })
                .collect(),
            days: days
                .iter()
                .map(|r| DayCount {
                    day: r.get::<_, i64>(0) as u64,
                    tenant: r.get(1),
                    count: r.get::<_, i64>(2) as u64,
                })
                .collect(),
            ..Report::default()
        })
    }

    /// Erases one client's rows fleet-wide, and from what this instance has yet to flush.
    pub async fn forget(&self, id: &str) -> Result<u64, StoreError> {
        // Holding the flusher: no batch with this client can land after the delete.
        let mut flusher = self.flusher.lock().await;
        if let Ok(mut outbox) = self.outbox.lock() {
            outbox.rows.retain(|_, d| d.client.id != id);
        }
        if let Some(batch) = flusher.in_flight.as_mut() {
            batch.outbox.rows.retain(|_, d| d.client.id != id);
        }
        self.update_backlog(&flusher);
        if flusher.db.is_none() {
            flusher.db = Some(self.connect().await?);
        }
        let Some(db) = flusher.db.as_ref() else {
            return Ok(0);
        };
        let erase = async {
            let at = now() as i64;
            let n = db
                .execute(
                    "DELETE FROM signpost_census_clients WHERE client_id = $1",
                    &[&id],
                )
                .await?;
            db.execute(
                "INSERT INTO signpost_census_forgotten (client_id, forgotten_at) VALUES ($1, $2)
                 ON CONFLICT (client_id) DO UPDATE SET forgotten_at = EXCLUDED.forgotten_at",
                &[&id, &at],
            )
            .await?;
            Ok::<_, tokio_postgres::Error>(n)
        };
        match tokio::time::timeout(STORE_TIMEOUT, erase).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => {
                flusher.db = None;
                Err(e.into())
            }
            Err(_) => {
                flusher.db = None;
                Err(StoreError::Timeout)
            }
        }
    }
}

/// Counts by (time, name) as three columns for an UNNEST upsert, in key order (the order
/// every instance locks rows in, so two flushes never deadlock).
fn columns(counts: &HashMap<(u64, Arc<str>), u64>) -> (Vec<i64>, Vec<String>, Vec<i64>) {
    let mut sorted: Vec<_> = counts.iter().collect();
    sorted.sort();
    let mut columns = (Vec::new(), Vec::new(), Vec::new());
    for ((at, name), count) in sorted {
        columns.0.push(*at as i64);
        columns.1.push(name.to_string());
        columns.2.push(*count as i64);
    }
    columns
}

/// Brings the schema to the newest version this binary knows, under a lock so that instances
/// starting together do not race.
async fn migrate(db: &mut Db) -> Result<(), StoreError> {
    let tx = db.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_MIGRATE])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS signpost_census_schema (version integer NOT NULL)",
    )
    .await?;
    let found: i32 = tx
        .query_opt("SELECT version FROM signpost_census_schema", &[])
        .await?
        .map_or(0, |r| r.get(0));
    if found as usize > MIGRATIONS.len() {
        return Err(StoreError::Schema {
            found,
            known: MIGRATIONS.len(),
        });
    }
    for step in &MIGRATIONS[found as usize..] {
        tx.batch_execute(step).await?;
    }
    if found as usize != MIGRATIONS.len() {
        tx.execute("DELETE FROM signpost_census_schema", &[])
            .await?;
        tx.execute(
            "INSERT INTO signpost_census_schema (version) VALUES ($1)",
            &[&(MIGRATIONS.len() as i32)],
        )
        .await?;
        tracing::info!(
            from = found,
            to = MIGRATIONS.len(),
            "census store schema migrated"
        );
    }
    tx.commit().await?;
    Ok(())
}

/// One batch in one transaction, unless this incarnation already recorded its number.
async fn write_batch(
    db: &mut Db,
    incarnation: &str,
    instance: &str,
    batch: &Batch,
) -> Result<(), StoreError> {
    let tx = db.transaction().await?;
    let done: Option<i64> = tx
        .query_opt(
            "SELECT batch FROM signpost_census_instances WHERE incarnation = $1 FOR UPDATE",
            &[&incarnation],
        )
        .await?
        .map(|r| r.get(0));
    if done.is_some_and(|done| done >= batch.seq) {
        // Committed before, its answer lost: nothing to do twice.
        return Ok(tx.commit().await?);
    }
    // Sorted, so that instances writing the same rows take their locks in the same order.
    let mut rows: Vec<&Delta> = batch.outbox.rows.values().collect();
    rows.sort_by(|a, b| {
        (&a.tenant, &a.kind, &a.client.id).cmp(&(&b.tenant, &b.kind, &b.client.id))
    });
    let text = |f: &dyn Fn(&Delta) -> String| rows.iter().map(|d| f(d)).collect::<Vec<String>>();
    let num = |f: &dyn Fn(&Delta) -> u64| rows.iter().map(|d| f(d) as i64).collect::<Vec<i64>>();
    tx.execute(
        "INSERT INTO signpost_census_clients AS c
            (tenant, kind, client_id, user_agent, address, credential, class,
             first_seen, last_seen, count, last_path, last_status)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::int8[], $9::int8[], $10::int8[],
                              $11::text[], $12::int4[])
         ON CONFLICT (tenant, kind, client_id) DO UPDATE SET
            count = c.count + EXCLUDED.count,
            first_seen = LEAST(c.first_seen, EXCLUDED.first_seen),
            last_seen = GREATEST(c.last_seen, EXCLUDED.last_seen),
            last_path = CASE WHEN EXCLUDED.last_seen >= c.last_seen THEN EXCLUDED.last_path ELSE c.last_path END,
            last_status = CASE WHEN EXCLUDED.last_seen >= c.last_seen THEN EXCLUDED.last_status ELSE c.last_status END",
        &[
            &text(&|d| d.tenant.to_string()),
            &text(&|d| d.kind.to_string()),
            &text(&|d| d.client.id.clone()),
            &text(&|d| d.client.user_agent.clone()),
            &text(&|d| d.client.address.clone()),
            &rows.iter().map(|d| d.client.credential.clone()).collect::<Vec<Option<String>>>(),
            &text(&|d| d.client.class.as_str().to_owned()),
            &num(&|d| d.first_seen),
            &num(&|d| d.last_seen),
            &num(&|d| d.count),
            &text(&|d| d.last_path.to_string()),
            &rows.iter().map(|d| i32::from(d.last_status)).collect::<Vec<i32>>(),
        ],
    )
    .await?;
    let (ats, kinds, counts) = columns(&batch.outbox.timeline);
    tx.execute(
        "INSERT INTO signpost_census_timeline AS t (at, kind, count)
         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[])
         ON CONFLICT (at, kind) DO UPDATE SET count = t.count + EXCLUDED.count",
        &[&ats, &kinds, &counts],
    )
    .await?;
    let (days, tenants, counts) = columns(&batch.outbox.days);
    tx.execute(
        "INSERT INTO signpost_census_days AS d (day, tenant, count)
         SELECT * FROM UNNEST($1::int8[], $2::text[], $3::int8[])
         ON CONFLICT (day, tenant) DO UPDATE SET count = d.count + EXCLUDED.count",
        &[&days, &tenants, &counts],
    )
    .await?;
    tx.execute(
        "INSERT INTO signpost_census_instances (incarnation, instance, batch, flushed_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (incarnation) DO UPDATE SET batch = EXCLUDED.batch, flushed_at = EXCLUDED.flushed_at",
        &[&incarnation, &instance, &batch.seq, &(now() as i64)],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
