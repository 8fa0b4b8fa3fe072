//! Loading a config: the main file and its `include`s → [`file`](mod@file) structs → a validated
//! [`Config`]: the process [`Settings`] (listeners, threads, deadlines, census), the routing
//! [`Table`], the certificates, and the files and folders it was read from (for the watcher).
//!
//! Three types, never one (see STYLE.md): `File*` mirrors what users write, [`build`] checks it
//! and compiles it, collecting every problem with its file and line, and the result is the
//! runtime [`Table`], which serde never sees. A config with any problem yields nothing at all,
//! so the caller keeps whatever it was running.

pub mod build;
pub mod error;
pub mod file;
pub mod locate;
mod store;
mod yaml;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::hygiene::Deadlines;
use crate::table::Table;
use crate::tls::CertStore;
use error::{ConfigError, ConfigErrors, Problem};
pub use file::AccessFormat;
use file::{FileConfig, FileInclude, FileListen, UserNames};
pub use store::{read_password, trust_roots, StoreProblem, StoreSettings};

/// How long in-flight requests may finish after SIGTERM when `server.grace_period` is not set.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// How long the census keeps a client nobody has seen, when `census.retention` is not set.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);
/// Where a graceful upgrade hands the listening sockets over when `server.upgrade_sock` is not
/// set.
pub const DEFAULT_UPGRADE_SOCK: &str = "/tmp/signpost-upgrade.sock";

/// A loaded config: process settings, the routing table and the certificates.
#[derive(Debug)]
pub struct Config {
    pub settings: Settings,
    pub table: Table,
    pub certs: Option<CertStore>,
    /// What loads but some clients will not survive (see [`error::ConfigWarning`]).
    pub warnings: Vec<error::ConfigWarning>,
    /// Every file read, main file first.
    pub files: Vec<PathBuf>,
    /// SHA-256 of every file read, in order (hex, shortened): what `/config` reports.
    pub hash: String,
    /// Folders whose changes may change this config: those of the files read, of the
    /// `include` patterns, and `tls.certs`.
    pub watch: Vec<PathBuf>,
    /// Patterns whose matches a load reads: the `include` globs and every file in
    /// `tls.certs`. A file that starts or stops matching one changes the config; any other
    /// file in a watched folder (a log written there, an editor's swap file) does not.
    pub listed: Vec<PathBuf>,
}

/// Settings that shape the process rather than the routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen: FileListen,
    pub threads: Option<usize>,
    pub grace_period: Duration,
    /// The Unix socket an old process sends its listening sockets to on `SIGQUIT`, and a new
    /// one started with `run --upgrade` receives them from.
    pub upgrade_sock: PathBuf,
    /// `server.header_timeout`, `body_timeout` and `keepalive_timeout`.
    pub deadlines: Deadlines,
    pub certs_dir: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    pub census: CensusSettings,
    pub access_log: AccessLogSettings,
    pub acme: Option<AcmeSettings>,
}

/// The CA asked when `acme.directory` is not set: Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// `acme:` with its defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub email: String,
    pub directory: String,
    /// Trust roots for the directory's certificate (a private CA), else the system's.
    pub ca: Option<PathBuf>,
    /// `acme/` in the state directory: the account key and the certificates.
    pub dir: PathBuf,
}

/// Where the access log goes (`log.access`) and its format (`log.format`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSettings {
    pub target: AccessTarget,
    pub format: AccessFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessTarget {
    Stderr,
    Off,
    /// Appended to; reopened on `SIGUSR1` (after logrotate moved it).
    File(PathBuf),
}

/// Census settings, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CensusSettings {
    pub enabled: bool,
    /// Where the census is kept between runs; `None` for memory only.
    pub state_file: Option<PathBuf>,
    /// The operator named `state_file` (a location that cannot be written is then an error,
    /// where the default location falls back to memory with a warning).
    pub state_file_chosen: bool,
    /// Rows not seen for this long are dropped.
    pub retention: Duration,
    pub max_clients: usize,
    pub metric_clients: usize,
    pub snapshot_interval: Duration,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Lower-cased header names.
    pub api_key_headers: Vec<String>,
    /// `census.user_names: hashed`: Basic user names fingerprinted instead of shown.
    pub hash_user_names: bool,
    /// The fleet's shared census, if there is one.
    pub store: Option<StoreSettings>,
}

/// One file's text, kept so errors found after parsing can be given a line.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// Loads and compiles the config at `path`. `previous` lends state that should survive a
/// reload (resolved upstream addresses).
pub fn load(path: &Path, previous: Option<&Table>) -> Result<Config, ConfigErrors> {
    let main_text = read(path)?;
    let main: FileConfig = parse(path, &main_text).map_err(ConfigErrors)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut sources = vec![Source {
        path: path.to_owned(),
        text: main_text,
    }];
    let mut includes = Vec::new();
    let mut errors = Vec::new();
    for (i, pattern) in main.include.iter().enumerate() {
        let at = locate::YamlPath::root().key("include").index(i);
        let line = locate::line_of(&sources[0].text, &at);
        let fail = |reason: String| ConfigError {
            file: path.to_owned(),
            line,
            problem: Problem::Include {
                pattern: pattern.clone(),
                reason,
            },
        };
        match expand(base, pattern) {
            Ok(files) => {
                for file in files {
                    match read(&file).map_err(|e| e.0).and_then(|text| {
                        let parsed = parse_include(&file, &text)?;
                        Ok((text, parsed))
                    }) {
                        Ok((text, parsed)) => {
                            sources.push(Source { path: file, text });
                            includes.push((sources.len() - 1, parsed));
                        }
                        Err(mut e) => errors.append(&mut e),
                    }
                }
            }
            Err(reason) => errors.push(fail(reason)),
        }
    }
    let built = build::build(&main, &includes, base, &sources, previous);
    match built {
        Ok((table, certs, warnings)) if errors.is_empty() => {
            let settings = settings(&main, base);
            let mut watch: Vec<PathBuf> = sources.iter().map(|s| parent(&s.path)).collect();
            watch.extend(main.include.iter().map(|p| parent(&base.join(p))));
            watch.extend(settings.certs_dir.clone());
            watch.sort();
            watch.dedup();
            let listed = listed(&main.include, base, settings.certs_dir.as_deref());
            Ok(Config {
                settings,
                table,
                certs,
                warnings,
                hash: hash_sources(&sources),
                files: sources.into_iter().map(|s| s.path).collect(),
                watch,
                listed,
            })
        }
        Ok(_) => Err(ConfigErrors(errors)),
        Err(ConfigErrors(mut more)) => {
            errors.append(&mut more);
            Err(ConfigErrors(errors))
        }
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn hash_sources(sources: &[Source]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for s in sources {
        ctx.update(s.path.to_string_lossy().as_bytes());
        ctx.update(&[0]);
        ctx.update(s.text.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish().as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn settings(main: &FileConfig, base: &Path) -> Settings {
    let c = &main.census;
    Settings {
        census: CensusSettings {
            enabled: c.enabled.unwrap_or(true),
            state_file: match c.state_file.as_deref() {
                Some("off") => None,
                Some(file) => Some(base.join(file)),
                None => state_dir().map(|dir| dir.join("census.json")),
            },
            state_file_chosen: c.state_file.as_deref().is_some_and(|f| f != "off"),
            retention: c.retention.unwrap_or(DEFAULT_RETENTION),
            max_clients: c.max_clients.unwrap_or(10_000).max(1),
            metric_clients: c.metric_clients.unwrap_or(100),
            snapshot_interval: c.snapshot_interval.unwrap_or(Duration::from_secs(60)),
            trusted_proxies: c.trusted_proxies.clone(),
            api_key_headers: c
                .api_key_headers
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            hash_user_names: c.user_names == Some(UserNames::Hashed),
            // Checked by `build` already: a store that does not resolve never gets here.
            store: c.store.as_ref().and_then(|s| {
                let retention = c.retention.unwrap_or(DEFAULT_RETENTION);
                StoreSettings::from_file(s, base, retention).ok()
            }),
        },
        listen: main.listen.clone(),
        threads: main.server.threads,
        grace_period: main.server.grace_period.unwrap_or(DEFAULT_GRACE_PERIOD),
        upgrade_sock: base.join(
            main.server
                .upgrade_sock
                .as_deref()
                .unwrap_or(DEFAULT_UPGRADE_SOCK),
        ),
        deadlines: {
            let default = Deadlines::default();
            Deadlines {
                header: main.server.header_timeout.unwrap_or(default.header),
                body: main.server.body_timeout.unwrap_or(default.body),
                idle: main.server.keepalive_timeout.unwrap_or(default.idle),
            }
        },
        certs_dir: main.tls.as_ref().map(|t| base.join(&t.certs)),
        admin_token_file: main.admin.token_file.as_ref().map(|f| base.join(f)),
        access_log: AccessLogSettings {
            target: match main.log.access.as_deref() {
                None | Some("stderr") => AccessTarget::Stderr,
                Some("off") => AccessTarget::Off,
                Some(path) => AccessTarget::File(base.join(path)),
            },
            format: main.log.format.unwrap_or_default(),
        },
        // Checked by `build`: without a state directory there are problems, and no settings.
        acme: main.acme.as_ref().and_then(|a| {
            Some(AcmeSettings {
                email: a.email.clone(),
                directory: a
                    .directory
                    .clone()
                    .unwrap_or_else(|| LETS_ENCRYPT.to_owned()),
                ca: a.ca.as_ref().map(|ca| base.join(ca)),
                dir: state_dir()?.join("acme"),
            })
        }),
    }
}

/// Where Signpost keeps what it learns (the census when the config does not say where, ACME's
/// account and certificates): the service's state directory under systemd
/// (`StateDirectory=`), else the XDG state directory, else `~/.local/state/signpost`. `None`
/// when none of them is known (then the census lives in memory only).
pub fn state_dir() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    var("STATE_DIRECTORY")
        // systemd passes one folder per `StateDirectory=` entry, separated by colons.
        .and_then(|v| std::env::split_paths(&v).next())
        .or_else(|| var("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("signpost")))
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".local/state/signpost")))
}

fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_owned(),
            line: None,
            problem: Problem::Read(e.to_string()),
        }])
    })
}

/// How many mistakes in one file are reported before the rest is left for the next run.
const MOST_ERRORS: usize = 20;

/// Parses one file, reporting as many of its mistakes as can be found in one go: serde_yaml
/// stops at the first, so the list item (or top-level block) holding it is blanked out, every
/// line keeping its number, and the text read again.
fn parse<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    text: &str,
) -> Result<T, Vec<ConfigError>> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut current = std::borrow::Cow::Borrowed(text);
    loop {
        let e = match serde_yaml::from_str::<T>(&current) {
            Ok(parsed) if errors.is_empty() => return Ok(parsed),
            Ok(_) => return Err(errors),
            Err(e) => e,
        };
        let line = e.location().map(|l| l.line());
        let error = ConfigError {
            file: path.to_owned(),
            line,
            problem: Problem::Syntax(yaml::explain(&e, text)),
        };
        if errors.last() == Some(&error) {
            return Err(errors);
        }
        errors.push(error);
        let next = line.and_then(|line| yaml::without_item_at(&current, line));
        match next {
            Some(next) if errors.len() < MOST_ERRORS => current = next.into(),
            _ => return Err(errors),
        }
    }
}

/// Included files larger than this holding only a `tenants:` list are parsed in chunks.
const CHUNKED_ABOVE: usize = 1 << 20;
/// Tenants per chunk.
const CHUNK_TENANTS: usize = 250;

/// Parses an included file. serde_yaml loads a whole document as a list of events before
/// deserializing it, about 40 bytes of memory per byte of YAML; for a 10 MB list of 100 000
/// tenants that is ~400 MB of fresh pages, and zeroing them was most of a reload. A large file
/// that is only a `tenants:` block sequence is therefore parsed a few hundred items at a time
/// (250 per chunk reloaded 100 000 tenants 3 % faster than 2 000: fewer events held at once).
/// Should any chunk fail (an alias across chunks, a real error), the whole file is parsed
/// again as one document, so errors and their lines are exactly those of the plain parse.
fn parse_include(path: &Path, text: &str) -> Result<FileInclude, Vec<ConfigError>> {
    if text.len() > CHUNKED_ABOVE {
        if let Some(chunks) = tenant_chunks(text) {
            let mut tenants = Vec::with_capacity(chunks.len() * CHUNK_TENANTS);
            let parsed = chunks.iter().try_for_each(|chunk| {
                serde_yaml::from_str::<FileInclude>(chunk).map(|part| tenants.extend(part.tenants))
            });
            if parsed.is_ok() {
                return Ok(FileInclude {
                    tenants,
                    ..FileInclude::default()
                });
            }
        }
    }
    parse(path, text)
}

/// Splits `tenants:` followed by one block sequence (and nothing else at the top level) into
/// documents of [`CHUNK_TENANTS`] items each; `None` for any other shape.
fn tenant_chunks(text: &str) -> Option<Vec<String>> {
    let content = |l: &&str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let mut lines = text.lines();
    if lines.by_ref().find(content)?.trim_end() != "tenants:" {
        return None;
    }
    let mut chunks = Vec::new();
    let mut current = String::from("tenants:\n");
    let mut items = 0;
    let mut indent: Option<usize> = None;
    for line in lines {
        if content(&line) {
            let depth = line.len() - line.trim_start().len();
            let starts_item = line.trim_start().starts_with("- ") || line.trim() == "-";
            match indent {
                None if starts_item => indent = Some(depth),
                None => return None,
                Some(_) if depth == 0 && !starts_item => return None,
                _ => {}
            }
            if starts_item && Some(depth) == indent {
                if items == CHUNK_TENANTS {
                    chunks.push(std::mem::replace(&mut current, String::from("tenants:\n")));
                    items = 0;
                }
                items += 1;
            }
        }
        current.push_str(line);
        current.push('\n');
    }
    chunks.push(current);
    Some(chunks)
}

/// The patterns whose matches a load reads (see [`Config::listed`]).
fn listed(include: &[String], base: &Path, certs_dir: Option<&Path>) -> Vec<PathBuf> {
    let certs =
        certs_dir.map(|dir| Path::new(&glob::Pattern::escape(&dir.to_string_lossy())).join("*"));
    let globs = include.iter().filter(|p| is_glob(p)).map(|p| base.join(p));
    globs.chain(certs).collect()
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Files named by one `include:` entry, relative to the including file, in name order.
/// A glob may match nothing (a fresh `tenants.d/`); a plain path must exist.
fn expand(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = base.join(pattern);
    let text = full.to_string_lossy();
    if !is_glob(pattern) {
        return if full.is_file() {
            Ok(vec![full])
        } else {
            Err(format!("no file {}", full.display()))
        };
    }
    let mut files: Vec<PathBuf> = glob::glob(&text)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big_list(n: usize) -> String {
        let mut text = String::from("# generated\ntenants:\n");
        for i in 0..n {
            text.push_str(&format!(
                "  - id: t{i}\n    hosts: [c{i}.example]\n    profile: p\n"
            ));
        }
        text
    }

    #[test]
    fn large_tenant_lists_parse_in_chunks_to_the_same_result() {
        let text = big_list(CHUNK_TENANTS * 2 + 7);
        let chunks = tenant_chunks(&text).unwrap();
        assert_eq!(chunks.len(), 3);
        let whole: FileInclude = serde_yaml::from_str(&text).unwrap();
        let chunked = parse_include(
            Path::new("t.yaml"),
            &(text.clone() + &" ".repeat(CHUNKED_ABOVE)),
        )
        .unwrap();
        assert_eq!(chunked.tenants.len(), whole.tenants.len());
        assert_eq!(
            chunked.tenants.last().map(|t| &t.id),
            whole.tenants.last().map(|t| &t.id)
        );
    }

    #[test]
    fn other_shapes_are_not_chunked() {
        assert!(tenant_chunks("profiles: {}\ntenants:\n  - id: a\n").is_none());
        assert!(tenant_chunks("tenants:\n  - id: a\nprofiles: {}\n").is_none());
        assert!(tenant_chunks("tenants: []\n").is_none());
    }

    #[test]
    fn a_bad_chunk_falls_back_to_the_plain_parse_and_its_line() {
        let mut text = big_list(CHUNK_TENANTS + 10);
        text.push_str("  - id: broken\n    colour: blue\n");
        text.push_str(&" ".repeat(CHUNKED_ABOVE));
        let errs = parse_include(Path::new("t.yaml"), &text).unwrap_err();
        let err = &errs[0];
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(err.line, Some(2 + 3 * (CHUNK_TENANTS + 10) + 2), "{err}");
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    }
}
