//! Hot reload: watcher + SIGHUP + admin trigger → build off the request path → one swap.
//!
//! A reload parses, validates and compiles a complete new snapshot on a blocking thread (never
//! on the proxy's workers), then stores it with one `ArcSwap::store`; requests in flight keep
//! the snapshot they started with. A config that fails keeps the old snapshot; its errors are
//! logged and counted. Certificates in `tls.certs` are swapped the same way.
//!
//! The watcher watches *directories*, not files: editors save by writing a new file and
//! renaming it over the old one, and Kubernetes swaps a ConfigMap by re-pointing the `..data`
//! symlink; neither changes the watched file's inode. Events are debounced, and a reload runs
//! only when the fingerprint of what was read (file contents, folder listings) has changed.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use serde::Serialize;

use crate::config::error::ConfigErrors;
use crate::config::{self, Config, Settings};
use crate::report::census::now;
use crate::report::metrics::Metrics;
use crate::table::{Table, Tables};
use crate::tls::CertStore;

/// How long the watcher waits for a burst of file events to settle.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// What `/config` reports about the running config.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigInfo {
    pub generation: u64,
    /// Unix seconds.
    pub loaded_at: u64,
    pub hash: String,
    pub tenants: usize,
    pub rules: usize,
    pub files: Vec<String>,
    #[serde(skip)]
    pub watch: Vec<PathBuf>,
}

/// The running config and everything that swaps with it.
pub struct Live {
    pub tables: Tables,
    pub certs: Option<Arc<ArcSwap<CertStore>>>,
    pub info: ArcSwap<ConfigInfo>,
    pub metrics: Arc<Metrics>,
    /// Set once the proxy's listeners accept connections.
    pub ready: AtomicBool,
    path: PathBuf,
    /// The settings the process started with: sockets and threads cannot change without a restart.
    started_with: Settings,
    /// Serialises reloads; holds the fingerprint of the running config's inputs.
    fingerprint: tokio::sync::Mutex<u64>,
    /// Files that are written by Signpost itself and must not trigger reloads.
    ignore: Option<PathBuf>,
}

/// The result of a successful reload.
#[derive(Debug, Clone, Serialize)]
pub struct Reloaded {
    pub generation: u64,
    pub changes: String,
    pub seconds: f64,
}

impl Live {
    pub fn new(path: &Path, config: Config, metrics: Arc<Metrics>) -> Arc<Self> {
        let info = info_of(&config, 1);
        let fingerprint = fingerprint(
            &info.watch,
            &config.files,
            config.settings.census.state_file.as_deref(),
        );
        let live = Self {
            tables: Arc::new(ArcSwap::from_pointee(config.table)),
            certs: config.certs.map(|c| Arc::new(ArcSwap::from_pointee(c))),
            metrics,
            ready: AtomicBool::new(false),
            path: path.to_owned(),
            ignore: config.settings.census.state_file.clone(),
            started_with: config.settings,
            fingerprint: tokio::sync::Mutex::new(fingerprint),
            info: ArcSwap::from_pointee(info),
        };
        live.publish(&live.info.load());
        Arc::new(live)
    }

    fn publish(&self, info: &ConfigInfo) {
        let m = &self.metrics;
        m.config_generation.set(info.generation as i64);
        m.config_last_success.set(info.loaded_at as f64);
        m.tenants.set(info.tenants as i64);
        m.rules.set(info.rules as i64);
    }

    /// Loads the config again and swaps it in; `why` says what triggered it, for the log.
    pub async fn reload(&self, why: &str) -> Result<Reloaded, ConfigErrors> {
        let mut fingerprint_slot = self.fingerprint.lock().await;
        self.reload_locked(why, &mut fingerprint_slot).await
    }

    /// Reloads only if the inputs changed since the last load (the watcher's path).
    async fn reload_if_changed(&self) {
        let mut slot = self.fingerprint.lock().await;
        let info = self.info.load_full();
        let files: Vec<PathBuf> = info.files.iter().map(PathBuf::from).collect();
        let ignore = self.ignore.clone();
        let current = tokio::task::spawn_blocking(move || {
            fingerprint(&info.watch, &files, ignore.as_deref())
        })
        .await
        .unwrap_or(0);
        if current != *slot {
            let _ = self.reload_locked("files changed", &mut slot).await;
        }
    }

    async fn reload_locked(
        &self,
        why: &str,
        fingerprint_slot: &mut u64,
    ) -> Result<Reloaded, ConfigErrors> {
        let started = Instant::now();
        let previous = self.tables.load_full();
        let path = self.path.clone();
        let prev = previous.clone();
        let ignore = self.ignore.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let config = config::load(&path, Some(&prev))?;
            let fp = fingerprint(&config.watch, &config.files, ignore.as_deref());
            Ok::<_, ConfigErrors>((config, fp))
        })
        .await
        .unwrap_or_else(|e| {
            Err(ConfigErrors(vec![config::error::ConfigError {
                file: self.path.clone(),
                line: None,
                problem: config::error::Problem::Read(format!("reload task failed: {e}")),
            }]))
        });
        let (config, fingerprint) = match loaded {
            Ok(loaded) => loaded,
            Err(errors) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                for e in &errors.0 {
                    tracing::error!(
                        trigger = why,
                        "reload failed, keeping the running config: {e}"
                    );
                }
                return Err(errors);
            }
        };
        let generation = self.info.load().generation + 1;
        let info = info_of(&config, generation);
        if config.settings.listen != self.started_with.listen
            || config.settings.threads != self.started_with.threads
            || config.settings.grace_period != self.started_with.grace_period
        {
            tracing::warn!("`listen` and `server` changes apply only after a restart (or a graceful upgrade); everything else is live");
        }
        let table = Arc::new(config.table);
        drop(self.tables.swap(table.clone()));
        if let (Some(slot), Some(store)) = (&self.certs, config.certs) {
            slot.store(Arc::new(store));
        }
        // What a reload costs is the build and the swap; the summary and freeing the old
        // snapshot come after, off the async threads.
        let seconds = started.elapsed().as_secs_f64();
        let changes = tokio::task::spawn_blocking(move || {
            let changes = describe_changes(&previous, &table);
            drop((previous, table));
            release_freed_memory();
            changes
        })
        .await
        .unwrap_or_default();
        *fingerprint_slot = fingerprint;
        self.publish(&info);
        self.info.store(Arc::new(info));
        self.metrics.config_reloads.with_label_values(&["ok"]).inc();
        tracing::info!(
            trigger = why,
            generation,
            seconds,
            "config reloaded: {changes}"
        );
        Ok(Reloaded {
            generation,
            changes,
            seconds,
        })
    }

    /// Watches the config's folders until `shutdown`, reloading on changes.
    pub async fn watch(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut watcher = match notify::recommended_watcher(move |_event| {
            let _ = tx.try_send(());
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch config files; reload with SIGHUP or POST /-/reload");
                return;
            }
        };
        let mut watched: HashSet<PathBuf> = HashSet::new();
        loop {
            for dir in &self.info.load().watch {
                if !watched.contains(dir) {
                    match watcher.watch(dir, RecursiveMode::NonRecursive) {
                        Ok(()) => {
                            watched.insert(dir.clone());
                        }
                        Err(e) => {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch folder")
                        }
                    }
                }
            }
            tokio::select! {
                event = rx.recv() => {
                    if event.is_none() { return; }
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    self.reload_if_changed().await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Reloads on every SIGHUP until `shutdown`.
    pub async fn on_sighup(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::error!("cannot listen for SIGHUP");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => { let _ = self.reload("SIGHUP").await; }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Returns the memory a config load just freed (its parse tree, a replaced table) to the OS
/// now, instead of whenever the allocator next gets around to it: a 100 000-tenant load leaves
/// a few hundred MB of garbage behind.
pub fn release_freed_memory() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; it takes no pointers from us.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

fn info_of(config: &Config, generation: u64) -> ConfigInfo {
    ConfigInfo {
        generation,
        loaded_at: now(),
        hash: config.hash.clone(),
        tenants: config.table.tenants().len(),
        rules: config.table.rule_count(),
        files: config
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        watch: config.watch.clone(),
    }
}

/// A hash of everything a reload would read: the listing of each watched folder (names, sizes,
/// modification times, following symlinks) and the bytes of each config file.
fn fingerprint(dirs: &[PathBuf], files: &[PathBuf], ignore: Option<&Path>) -> u64 {
    let mut h = std::hash::BuildHasher::build_hasher(&foldhash::quality::FixedState::default());
    for dir in dirs {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        entries.retain(|p| {
            Some(p.as_path()) != ignore
                && Some(p.with_extension("tmp")) != ignore.map(|i| i.with_extension("tmp"))
        });
        entries.sort();
        for path in entries {
            path.hash(&mut h);
            if let Ok(meta) = std::fs::metadata(&path) {
                meta.len().hash(&mut h);
                meta.modified().ok().hash(&mut h);
            }
        }
    }
    for file in files {
        std::fs::read(file).ok().hash(&mut h);
    }
    h.finish()
}

/// `+1 −0 ~2 tenants, ~1 profiles`: what a reload changed.
fn describe_changes(old: &Table, new: &Table) -> String {
    type Sources<'a> = HashMap<&'a str, u64, foldhash::fast::RandomState>;
    fn diff(old: &Sources<'_>, new: &Sources<'_>) -> (usize, usize, usize) {
        let added = new.keys().filter(|k| !old.contains_key(*k)).count();
        let removed = old.keys().filter(|k| !new.contains_key(*k)).count();
        let changed = new
            .iter()
            .filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v))
            .count();
        (added, removed, changed)
    }
    fn tenants(t: &Table) -> Sources<'_> {
        t.tenants()
            .iter()
            .map(|t| (&*t.id, t.source_hash))
            .collect()
    }
    fn profiles(t: &Table) -> Sources<'_> {
        t.tenants()
            .iter()
            .map(|t| (&*t.profile.name, t.profile.source_hash))
            .collect()
    }
    let (ta, tr, tc) = diff(&tenants(old), &tenants(new));
    let (pa, pr, pc) = diff(&profiles(old), &profiles(new));
    format!("+{ta} −{tr} ~{tc} tenants, +{pa} −{pr} ~{pc} profiles")
}
