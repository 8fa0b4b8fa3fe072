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
//! only when the fingerprint of what a load reads (the config files' bytes, the files that
//! `include` globs and `tls.certs` list) has changed: any other file in those folders is not
//! an input, so a log written beside the config reloads nothing.
//! Opening and reading files is not a change (the watcher's own reads would wake it again),
//! and the folders are watched again after every event: a folder renamed away and back, or
//! replaced by another, loses its watch.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use serde::Serialize;

use crate::config::error::ConfigErrors;
use crate::config::{self, AccessTarget, Config, Settings};
use crate::report::census::now;
use crate::report::metrics::Metrics;
use crate::table::{Table, Tables};
use crate::tls::{CertStore, Certificates};

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
    #[serde(skip)]
    pub listed: Vec<PathBuf>,
}

/// The running config and everything that swaps with it.
pub struct Live {
    pub tables: Tables,
    pub certs: Option<Arc<Certificates>>,
    pub info: ArcSwap<ConfigInfo>,
    pub metrics: Arc<Metrics>,
    /// Set once the proxy's listeners accept connections.
    pub ready: AtomicBool,
    /// Set once SIGHUP and SIGUSR1 are handled: before that, their default action ends the
    /// process, so `/-/ready` waits for this too.
    pub signals_armed: AtomicBool,
    /// Set once the config's folders are watched: a file changed before that makes no event,
    /// so `/-/ready` waits for this too.
    pub watching: AtomicBool,
    path: PathBuf,
    /// The settings the process started with: sockets and threads cannot change without a restart.
    started_with: Settings,
    /// Serialises reloads; holds the fingerprint of the running config's inputs, `None` when
    /// they changed while being loaded (so the next look reloads).
    fingerprint: tokio::sync::Mutex<Option<u64>>,
    /// Files Signpost writes itself: never config inputs.
    ignore: OwnFiles,
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
        let ignore = OwnFiles::of(&config.settings);
        let fingerprint = fingerprint(&info.listed, &config.files, &ignore);
        let live = Self {
            tables: Arc::new(ArcSwap::from_pointee(config.table)),
            certs: config.certs.map(|c| Arc::new(Certificates::new(c))),
            metrics,
            ready: AtomicBool::new(false),
            signals_armed: AtomicBool::new(false),
            watching: AtomicBool::new(false),
            path: path.to_owned(),
            ignore,
            started_with: config.settings,
            fingerprint: tokio::sync::Mutex::new(Some(fingerprint)),
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
        self.reload_locked(why, &mut fingerprint_slot, None).await
    }

    /// Reloads only if the inputs changed since the last load (the watcher's path).
    async fn reload_if_changed(&self) {
        let mut slot = self.fingerprint.lock().await;
        let info = self.info.load_full();
        let files: Vec<PathBuf> = info.files.iter().map(PathBuf::from).collect();
        let ignore = self.ignore.clone();
        let current =
            tokio::task::spawn_blocking(move || fingerprint(&info.listed, &files, &ignore))
                .await
                .unwrap_or(0);
        if Some(current) != *slot {
            let _ = self
                .reload_locked("files changed", &mut slot, Some(current))
                .await;
        }
    }

    /// `inputs` is the fingerprint of the running config's inputs taken just now, if the
    /// caller has one.
    async fn reload_locked(
        &self,
        why: &str,
        fingerprint_slot: &mut Option<u64>,
        inputs: Option<u64>,
    ) -> Result<Reloaded, ConfigErrors> {
        let started = Instant::now();
        let previous = self.tables.load_full();
        let path = self.path.clone();
        let prev = previous.clone();
        let ignore = self.ignore.clone();
        let running_certs = self.certs.as_ref().map(|c| c.operator.load_full());
        let running = self.info.load_full();
        let loaded = tokio::task::spawn_blocking(move || {
            let ignore = &ignore;
            let running_files: Vec<PathBuf> = running.files.iter().map(PathBuf::from).collect();
            let before =
                inputs.unwrap_or_else(|| fingerprint(&running.listed, &running_files, ignore));
            let config = config::load(&path, Some(&prev))?;
            if let (Some(running), Some(next)) = (&running_certs, &config.certs) {
                refuse_invalid_replacements(running, next)?;
            }
            let fp = fingerprint(&config.listed, &config.files, ignore);
            // Files that changed while they were being read (a ConfigMap swapped during the
            // load) leave a config older than the files, while `fp` already describes the
            // newer ones: stored, it would hide that change from the watcher for good. Then
            // store nothing, and the event of that change reloads again. (Only the running
            // config's inputs are compared; a change to a file that only the new config
            // includes, made during the load, is not caught.)
            let same_inputs = config.listed == running.listed && config.files == running_files;
            let after = if same_inputs {
                fp
            } else {
                fingerprint(&running.listed, &running_files, ignore)
            };
            Ok::<_, ConfigErrors>((config, (after == before).then_some(fp)))
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
        for warning in &config.warnings {
            tracing::warn!(trigger = why, "{warning}");
        }
        if config.settings.listen != self.started_with.listen
            || config.settings.threads != self.started_with.threads
            || config.settings.grace_period != self.started_with.grace_period
            || config.settings.acme != self.started_with.acme
        {
            tracing::warn!("`listen`, `server` and `acme` changes apply only after a restart (or a graceful upgrade); everything else is live");
        }
        let mut table = config.table;
        table.inherit(&previous);
        let table = Arc::new(table);
        drop(self.tables.swap(table.clone()));
        if let (Some(certs), Some(store)) = (&self.certs, config.certs) {
            certs.operator.store(Arc::new(store));
        }
        // `/config` and the metrics tell the generation being served from the moment it is.
        self.publish(&info);
        self.info.store(Arc::new(info));
        self.metrics.config_reloads.with_label_values(&["ok"]).inc();
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

    /// `/-/ready`: the listeners accept, and SIGHUP, SIGUSR1 and config edits are handled.
    pub fn is_ready(&self) -> bool {
        [&self.ready, &self.signals_armed, &self.watching]
            .iter()
            .all(|flag| flag.load(Ordering::Acquire))
    }

    /// Watches the config's folders until `shutdown`, reloading on changes.
    pub async fn watch(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let ignore = self.ignore.clone();
        let mut watcher = match notify::recommended_watcher(move |event| {
            if is_change(&event, &ignore) {
                let _ = tx.try_send(());
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch config files; reload with SIGHUP or POST /-/reload");
                self.watching.store(true, Ordering::Release);
                return;
            }
        };
        let mut folders = Folders::default();
        loop {
            // The running config's folders (new ones after a reload that added includes).
            folders.renew(&mut watcher, &watch_targets(&self.info.load()));
            // A change made before the first watches are set makes no event: `/-/ready` waits.
            self.watching.store(true, Ordering::Release);
            tokio::select! {
                event = rx.recv() => {
                    if event.is_none() { return; }
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    // A folder renamed away and back, deleted and made again, or replaced by
                    // another has lost its watch: renew them before looking, so a change made
                    // after the look is an event again.
                    folders.renew(&mut watcher, &watch_targets(&self.info.load()));
                    self.reload_if_changed().await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Reloads on every SIGHUP until `shutdown`.
    pub async fn on_sighup(
        self: Arc<Self>,
        hup: std::io::Result<tokio::signal::unix::Signal>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let Ok(mut hup) = hup else {
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

/// The folders to watch now: the config's own, and the folders its files and folders lead
/// to through symlinks, resolved afresh each time. A Kubernetes ConfigMap is
/// `signpost.yaml -> ..data/signpost.yaml` with `..data -> ..2026_12_02_…/`: an edit that
/// renames a file inside the folder `..data` leads to makes no event in the config's own
/// folder, and after a `..data` swap that is another folder than the one first watched.
fn watch_targets(info: &ConfigInfo) -> Vec<PathBuf> {
    let resolved_files = info
        .files
        .iter()
        .filter_map(|f| std::fs::canonicalize(f).ok())
        .filter_map(|f| f.parent().map(Path::to_path_buf));
    let resolved_dirs = info
        .watch
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok());
    let mut targets: Vec<PathBuf> = info
        .watch
        .iter()
        .cloned()
        .chain(resolved_files)
        .chain(resolved_dirs)
        .collect();
    targets.sort();
    targets.dedup();
    targets
}

/// The folders the watcher has been asked to watch, by the identity (device, inode) of the
/// folder each name led to.
#[derive(Default)]
struct Folders {
    watched: HashMap<PathBuf, (u64, u64)>,
    /// Folders that could not be watched, warned about once until they can.
    failing: HashSet<PathBuf>,
}

impl Folders {
    /// Watches every one of `dirs` again. notify drops the watch of a folder that is renamed
    /// or deleted (a later folder of the same name is not watched) and a watch follows the
    /// folder it was set on, not its name, so a name that now leads to another folder (a
    /// replaced folder, a re-pointed symlink) is unwatched first. Watching a folder that is
    /// already watched changes nothing, so this is cheap to repeat after every event.
    fn renew(&mut self, watcher: &mut impl Watcher, dirs: &[PathBuf]) {
        use std::os::unix::fs::MetadataExt;
        // Folders no longer led to (the target a `..data` swap left behind) are let go.
        self.watched.retain(|dir, _| {
            let keep = dirs.contains(dir);
            if !keep {
                let _ = watcher.unwatch(dir);
            }
            keep
        });
        self.failing.retain(|dir| dirs.contains(dir));
        for dir in dirs {
            let id = std::fs::metadata(dir).map(|m| (m.dev(), m.ino())).ok();
            if let (Some(id), Some(old)) = (id, self.watched.get(dir)) {
                if id != *old {
                    let _ = watcher.unwatch(dir);
                }
            }
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.failing.remove(dir);
                    if let Some(id) = id {
                        self.watched.insert(dir.clone(), id);
                    }
                }
                Err(e) => {
                    self.watched.remove(dir);
                    if self.failing.insert(dir.clone()) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch folder");
                    }
                }
            }
        }
    }
}

/// Whether a watcher event may mean that the config changed. Opening or reading a file or
/// folder is not a change: the fingerprint and the load open every watched folder and file
/// themselves, and counting that as a change made the watcher look again 100 ms later,
/// forever, reading the whole config ten times a second once any file had changed. Errors
/// (an overflowed event queue) are a reason to look.
fn is_change(event: &notify::Result<notify::Event>, ignore: &OwnFiles) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match event {
        Ok(event) if !event.paths.is_empty() && event.paths.iter().all(|p| ignore.contains(p)) => {
            false
        }
        Ok(event) => match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        },
        Err(_) => true,
    }
}

/// Returns the memory a config load or a scrape just freed (a parse tree, a replaced table, a
/// scrape's copies) to the OS now, instead of whenever the allocator next gets around to it:
/// a 100 000-tenant load leaves a few hundred MB of garbage behind.
pub fn release_freed_memory() {
    // SAFETY: mi_collect only walks mimalloc's own heaps; it takes no pointers from us.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// A reload must not swap a valid running certificate for an expired (or not yet valid) one;
/// see [`CertStore::refused_replacements`] for the reasoning.
fn refuse_invalid_replacements(running: &CertStore, next: &CertStore) -> Result<(), ConfigErrors> {
    let refused = running.refused_replacements(next, crate::tls::unix_now());
    if refused.is_empty() {
        return Ok(());
    }
    Err(ConfigErrors(
        refused
            .into_iter()
            .map(|(file, why)| config::error::ConfigError {
                file,
                line: None,
                problem: config::error::Problem::Tls(why),
            })
            .collect(),
    ))
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
        listed: config.listed.clone(),
    }
}

/// A hash of everything a reload would read: the files each of `listed` matches (names, sizes,
/// modification times, following symlinks) and the bytes of each config file. Other files in
/// the watched folders are left out: a file written there (Signpost's own stderr redirected
/// beside its config) changed the fingerprint, so each write reloaded the config, and each
/// reload's log line was another write.
fn fingerprint(listed: &[PathBuf], files: &[PathBuf], ignore: &OwnFiles) -> u64 {
    let mut h = std::hash::BuildHasher::build_hasher(&foldhash::quality::FixedState::default());
    for pattern in listed {
        let mut matches: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy())
            .map(|paths| paths.filter_map(Result::ok).collect())
            .unwrap_or_default();
        matches.retain(|p| !ignore.contains(p));
        matches.sort();
        for path in matches {
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

/// Files Signpost writes itself (the census state file and its temporary, the access log
/// file), by resolved folder and name. In a watched folder they are not config inputs: their
/// writes wake the watcher for nothing, and one in `tls.certs` would match its listing.
#[derive(Clone, Default)]
struct OwnFiles(Arc<[PathBuf]>);

impl OwnFiles {
    fn of(settings: &Settings) -> Self {
        let mut files = Vec::new();
        if let Some(state) = &settings.census.state_file {
            files.extend([state.clone(), state.with_extension("tmp")]);
        }
        if let AccessTarget::File(log) = &settings.access_log.target {
            files.push(log.clone());
        }
        OwnFiles(files.iter().filter_map(|f| resolved(f)).collect())
    }

    fn contains(&self, path: &Path) -> bool {
        // By name first: most paths are not ours, and resolving one is a system call.
        self.0.iter().any(|own| own.file_name() == path.file_name())
            && resolved(path).is_some_and(|path| self.0.contains(&path))
    }
}

/// `path` with its folder resolved (symlinks, `..`, the working directory).
fn resolved(path: &Path) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(path.file_name()?))
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

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, EventKind, ModifyKind, RemoveKind,
        RenameMode,
    };

    fn event(kind: EventKind) -> notify::Result<notify::Event> {
        Ok(notify::Event::new(kind))
    }

    #[test]
    fn reading_is_no_change_but_writing_renaming_and_errors_are() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert!(!is_change(&event(kind), &OwnFiles::default()), "{kind:?}");
        }
        for kind in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Remove(RemoveKind::Folder),
            EventKind::Any,
            EventKind::Other,
        ] {
            assert!(is_change(&event(kind), &OwnFiles::default()), "{kind:?}");
        }
        assert!(is_change(
            &Err(notify::Error::generic("queue overflow")),
            &OwnFiles::default()
        ));
    }

    #[test]
    fn writes_to_its_own_files_are_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let own = OwnFiles(Arc::from([
            resolved(&dir.path().join("access.log")).unwrap()
        ]));
        let write = |name: &str| {
            Ok(
                notify::Event::new(EventKind::Modify(ModifyKind::Data(DataChange::Any)))
                    .add_path(dir.path().join(name)),
            )
        };
        assert!(!is_change(&write("access.log"), &own));
        assert!(is_change(&write("signpost.yaml"), &own));
        assert!(is_change(&write("access.log.1"), &own));
    }
}
