//! `census.store` as the server uses it: the PostgreSQL connection settings, checked when the
//! config loads so that `signpost check` names a bad URL or an unreadable password file.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use super::file::FileCensusStore;

/// How often an instance flushes its counts unless told otherwise.
const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// How long a connection attempt may take unless the URL says (`connect_timeout=`).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// As written (no password in it); what a reload compares.
    pub url: String,
    /// Without a password: the password is read from `password_file` at each connection, so a
    /// rotated Secret is picked up, and is never kept where a `Debug` could print it.
    pub postgres: tokio_postgres::Config,
    pub password_file: Option<PathBuf>,
    /// Trust roots for the database's certificate; with it TLS is required.
    pub ca: Option<PathBuf>,
    pub instance: String,
    pub flush_interval: Duration,
    pub retention: Duration,
}

/// Equal when written the same: what tells a reload that the store changed.
impl PartialEq for StoreSettings {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.url,
            &self.password_file,
            &self.ca,
            &self.instance,
            self.flush_interval,
            self.retention,
        ) == (
            &other.url,
            &other.password_file,
            &other.ca,
            &other.instance,
            other.flush_interval,
            other.retention,
        )
    }
}

impl Eq for StoreSettings {}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreProblem {
    #[error("url: {0}")]
    Url(String),
    #[error("password_file: {0}")]
    PasswordFile(String),
    #[error("ca: {0}")]
    Ca(String),
}

impl StoreSettings {
    /// Checks and resolves `census.store` (paths relative to the config's folder).
    pub fn from_file(
        file: &FileCensusStore,
        base: &Path,
        retention: Duration,
    ) -> Result<StoreSettings, StoreProblem> {
        let url = |why: String| StoreProblem::Url(why);
        if !file.url.starts_with("postgresql://") && !file.url.starts_with("postgres://") {
            return Err(url(
                "write it as postgresql://USER@HOST:PORT/DATABASE".into()
            ));
        }
        let mut postgres = tokio_postgres::Config::from_str(&file.url).map_err(|e| {
            url(format!(
                "{e} (write postgresql://USER@HOST:PORT/DATABASE; sslmode may be disable, prefer or require)"
            ))
        })?;
        if !file.url.starts_with("postgresql://") && !file.url.starts_with("postgres://") {
            return Err(url(
                "write it as postgresql://USER@HOST:PORT/DATABASE".into()
            ));
        }
        if postgres.get_password().is_some() {
            return Err(url(
                "holds a password: put it in password_file, where logs and /config never show it"
                    .into(),
            ));
        }
        if postgres.get_user().is_none() {
            return Err(url("names no user (postgresql://USER@HOST/DATABASE)".into()));
        }
        if postgres.get_hosts().is_empty() {
            return Err(url("names no host".into()));
        }
        if postgres.get_connect_timeout().is_none() {
            postgres.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        postgres.application_name("signpost");
        let password_file = file.password_file.as_ref().map(|f| base.join(f));
        if let Some(path) = &password_file {
            read_password(path).map_err(StoreProblem::PasswordFile)?;
        }
        let ca = file.ca.as_ref().map(|f| base.join(f));
        if let Some(path) = &ca {
            trust_roots(path).map_err(StoreProblem::Ca)?;
        }
        Ok(StoreSettings {
            url: file.url.clone(),
            postgres,
            password_file,
            ca,
            instance: file.instance.clone().unwrap_or_else(host_name),
            flush_interval: file
                .flush_interval
                .unwrap_or(DEFAULT_FLUSH_INTERVAL)
                .max(Duration::from_millis(100)),
            retention: file.retention.unwrap_or(retention),
        })
    }
}

/// The password in `path`, without a trailing newline.
pub fn read_password(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(format!("{}: the file is empty", path.display()));
    }
    Ok(password.to_owned())
}

/// The certificates in a PEM file, as trust roots.
pub fn trust_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(roots)
}

/// This machine's name: the pod's name in Kubernetes.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if ok && !name.is_empty() => name.to_owned(),
        _ => "signpost".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(url: &str) -> FileCensusStore {
        FileCensusStore {
            url: url.into(),
            password_file: None,
            ca: None,
            instance: None,
            flush_interval: None,
            retention: None,
        }
    }

    #[test]
    fn urls_are_checked() {
        let base = Path::new("/");
        let day = Duration::from_secs(86400);
        let ok =
            StoreSettings::from_file(&store("postgresql://signpost@db:5432/census"), base, day)
                .unwrap();
        assert_eq!(ok.postgres.get_user(), Some("signpost"));
        assert_eq!(ok.retention, day);
        for (url, why) in [
            (
                "postgresql://signpost:hunter2@db/census",
                "holds a password",
            ),
            ("postgresql://db/census", "names no user"),
            ("mysql://signpost@db/census", "postgresql://"),
            (
                "postgresql://signpost@db/census?sslmode=sometimes",
                "sslmode",
            ),
            ("host=db user=signpost", "postgresql://"),
        ] {
            let e = StoreSettings::from_file(&store(url), base, day).unwrap_err();
            assert!(e.to_string().contains(why), "{url}: {e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn the_password_file_must_be_readable_and_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store("postgresql://signpost@db/census");
        s.password_file = Some("missing".into());
        let e = StoreSettings::from_file(&s, dir.path(), Duration::ZERO).unwrap_err();
        assert!(matches!(e, StoreProblem::PasswordFile(_)), "{e}");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        s.password_file = Some("empty".into());
        let e = StoreSettings::from_file(&s, dir.path(), Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        assert_eq!(read_password(&dir.path().join("pw")).unwrap(), "s3cret");
    }
}
