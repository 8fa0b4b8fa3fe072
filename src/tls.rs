//! Server certificates, chosen per handshake by SNI from a folder of PEM pairs.
//!
//! `tls.certs` holds `NAME.crt` (leaf first, then intermediates) and `NAME.key`. Each certificate
//! serves the DNS names in its subjectAltName (its CN when it has none), wildcards included.
//! When SNI is absent or matches nothing, `default.crt` is served if there is one, else the
//! first pair by file name — the same choice nginx makes with its first `server` block.
//!
//! pingora 0.9's rustls listener takes a `ResolvesServerCert` (`TlsSettings::set_cert_resolver`);
//! [`CertResolver`] reads the store through an `ArcSwap`, so new certificates reach new
//! handshakes without a restart.
//!
//! A pair is refused, and with it the whole folder (the running certificates stay in service),
//! when a file cannot be read or parsed, when the `.key` is missing, or when the key does not
//! belong to the certificate. Certificates outside their validity period (expired, or not yet
//! valid) are handled by [`CertStore::refused_replacements`]: see there for why.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates by name.
pub struct CertStore {
    exact: HashMap<String, Arc<Pair>>,
    /// `*.example.com` stored as `example.com`: a wildcard covers exactly one label.
    wildcard: HashMap<String, Arc<Pair>>,
    /// `None` only in a store with no pairs (ACME's before its first certificate).
    default: Option<Arc<Pair>>,
    /// File stem → names it serves, for logs and `/config`.
    pub served: Vec<(String, Vec<String>)>,
}

/// Every certificate served: the operator's (`tls.certs`, swapped by a reload) and those
/// obtained by ACME (swapped when one is issued). The operator's win for a name both cover.
#[derive(Debug)]
pub struct Certificates {
    pub operator: ArcSwap<CertStore>,
    pub acme: ArcSwap<CertStore>,
}

impl Certificates {
    pub fn new(operator: CertStore) -> Self {
        Self {
            operator: ArcSwap::from_pointee(operator),
            acme: ArcSwap::from_pointee(CertStore::empty()),
        }
    }

    /// The certificate for an SNI name: the operator's, then ACME's, then a default (the
    /// operator's first). `None` when nothing at all is loaded: the handshake then fails.
    pub fn choose(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let (operator, acme) = (self.operator.load(), self.acme.load());
        let name = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase());
        let named = name
            .as_deref()
            .and_then(|n| operator.serving(n).or_else(|| acme.serving(n)));
        let pair = named
            .or(operator.default.as_ref())
            .or(acme.default.as_ref())?;
        Some(pair.key.clone())
    }

    /// Whether a certificate names `name` (lower-case, no trailing dot).
    pub fn covers(&self, name: &str) -> bool {
        self.operator.load().covers(name) || self.acme.load().covers(name)
    }

    /// Every name served, where its certificate comes from (`operator` or `acme`) and when it
    /// expires (Unix seconds); sorted by name. A name both cover is the operator's.
    pub fn expiries(&self) -> Vec<(String, &'static str, i64)> {
        let operator = self.operator.load();
        let mut all: Vec<_> = (operator.expiries().into_iter())
            .map(|(name, at)| (name, "operator", at))
            .collect();
        let acme = self.acme.load().expiries().into_iter();
        all.extend(
            acme.filter(|(name, _)| !operator.covers(name))
                .map(|(name, at)| (name, "acme", at)),
        );
        all.sort();
        all
    }
}

/// One loaded `NAME.crt` + `NAME.key`.
struct Pair {
    key: Arc<CertifiedKey>,
    crt: PathBuf,
    /// The leaf's validity, in Unix seconds.
    not_before: i64,
    not_after: i64,
}

impl Pair {
    fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// Why the leaf is not valid at `now`, if it is not.
    fn invalidity(&self, now: i64) -> Option<String> {
        if now > self.not_after {
            Some(format!(
                "certificate expired at {}",
                show_time(self.not_after)
            ))
        } else if now < self.not_before {
            Some(format!(
                "certificate is not valid before {}",
                show_time(self.not_before)
            ))
        } else {
            None
        }
    }
}

fn show_time(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(|_| format!("@{unix}"), |t| t.to_string())
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("served", &self.served)
            .finish()
    }
}

impl CertStore {
    /// Loads every `*.crt` + `*.key` pair of `dir`; errors name the file and what is wrong.
    pub fn load(dir: &Path) -> Result<Self, Vec<String>> {
        let crts = files_ending(dir, "crt")
            .map_err(|e| vec![format!("cannot read folder {}: {e}", dir.display())])?;
        let mut store = Self::empty();
        let mut errors = Vec::new();
        for crt in &crts {
            match load_pair(crt, &crt.with_extension("key")) {
                Ok((pair, names)) => {
                    if let Some(why) = pair.invalidity(unix_now()) {
                        tracing::warn!(file = %crt.display(), "{why}; clients will refuse it");
                    }
                    store.add(pair, names);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        if store.default.is_none() {
            return Err(vec![format!(
                "no certificate pairs (NAME.crt + NAME.key) in {}",
                dir.display()
            )]);
        }
        Ok(store)
    }

    /// A store that serves nothing.
    pub fn empty() -> Self {
        Self {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
            served: Vec::new(),
        }
    }

    /// A store of `NAME.pem` files, each a certificate chain and its key (written whole by
    /// one rename, so a pair is never half replaced). A file that does not load is skipped
    /// with its reason: what can be loaded is served, and the rest is ordered again.
    pub fn load_bundles(dir: &Path) -> (Self, Vec<String>) {
        let mut store = Self::empty();
        let mut skipped = Vec::new();
        for pem in files_ending(dir, "pem").unwrap_or_default() {
            match load_pair(&pem, &pem) {
                Ok((pair, names)) => store.add(pair, names),
                Err(e) => skipped.push(e),
            }
        }
        (store, skipped)
    }

    /// Serves `pair` for `names` where no earlier pair does; the first pair (or one named
    /// `default`) is the default, as nginx's first `server` block is.
    fn add(&mut self, pair: Pair, names: Vec<String>) {
        let stem =
            (pair.crt.file_stem()).map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        let pair = Arc::new(pair);
        for name in &names {
            match name.strip_prefix("*.") {
                Some(suffix) => self.wildcard.entry(suffix.to_owned()),
                None => self.exact.entry(name.clone()),
            }
            .or_insert_with(|| pair.clone());
        }
        if self.default.is_none() || stem == "default" {
            self.default = Some(pair);
        }
        self.served.push((stem, names));
    }

    /// When the certificate serving `name` (not the default) expires, and when it became
    /// valid, in Unix seconds.
    pub fn validity(&self, name: &str) -> Option<(i64, i64)> {
        self.serving(name).map(|p| (p.not_before, p.not_after))
    }

    /// The leaf certificate serving `name`, DER-encoded.
    pub fn leaf(&self, name: &str) -> Option<CertificateDer<'static>> {
        self.serving(name).and_then(|p| p.key.cert.first().cloned())
    }

    /// Every name a certificate here serves (`*.example.com` for a wildcard) and when that
    /// certificate expires, in Unix seconds; sorted by name.
    pub fn expiries(&self) -> Vec<(String, i64)> {
        let exact = self
            .exact
            .iter()
            .map(|(name, pair)| (name.clone(), pair.not_after));
        let wildcard =
            (self.wildcard.iter()).map(|(suffix, pair)| (format!("*.{suffix}"), pair.not_after));
        let mut all: Vec<(String, i64)> = exact.chain(wildcard).collect();
        all.sort();
        all
    }

    /// Whether a certificate names `name` (lower-case, no trailing dot), rather than the
    /// default being served for it.
    pub fn covers(&self, name: &str) -> bool {
        self.serving(name).is_some()
    }

    /// The certificates of `next` that may not replace this (running) store's, each as
    /// (its `.crt`, why): a name this store serves with a certificate valid at `now` that
    /// `next` would serve with one that has expired or is not valid yet.
    ///
    /// This is the choice for certificates outside their validity period, made the way an
    /// operator of nginx or Caddy would want it:
    ///
    /// - **On reload, an invalid certificate never replaces a valid one.** A renewal that
    ///   dropped an old file into place (a failed ACME run, a backup restored, the wrong file
    ///   copied) would otherwise turn working HTTPS into certificate errors for every client
    ///   at once. The reload is refused like any broken config: the running certificates and
    ///   tables stay in service, the error names the file and says when it expired, and
    ///   fixing the file (or removing it) is picked up by the next reload.
    /// - **When nothing valid is being served for those names, it is loaded** (with a
    ///   warning in the log): at start-up, or when the running certificate has itself
    ///   expired. Serving an expired certificate is no worse than serving none, the other
    ///   names in the folder and plain HTTP keep working, and a certificate that has run out
    ///   while the process runs does not block every later config change until it is
    ///   renewed. nginx loads expired certificates the same way.
    pub fn refused_replacements(&self, next: &CertStore, now: i64) -> Vec<(PathBuf, String)> {
        let mut names: Vec<String> = [self, next]
            .iter()
            .flat_map(|store| {
                let exact = store.exact.keys().cloned();
                exact.chain(store.wildcard.keys().map(|suffix| format!("*.{suffix}")))
            })
            .collect();
        names.sort();
        names.dedup();
        let mut refused: Vec<(PathBuf, String)> = Vec::new();
        for name in names {
            let (Some(old), Some(new)) = (self.serving(&name), next.serving(&name)) else {
                continue;
            };
            let Some(why) = new.invalidity(now).filter(|_| old.valid_at(now)) else {
                continue;
            };
            match refused.iter_mut().find(|(file, _)| *file == new.crt) {
                Some((_, text)) => text.push_str(&format!(", {name}")),
                None => refused.push((
                    new.crt.clone(),
                    format!(
                        "{why}; refused: the running certificate from {} (valid until {}) stays in service for {name}",
                        old.crt.display(),
                        show_time(old.not_after)
                    ),
                )),
            }
        }
        refused
    }

    /// The pair that serves `name` (`*.example.com` for the wildcard itself), not counting
    /// the default.
    fn serving(&self, name: &str) -> Option<&Arc<Pair>> {
        if let Some(suffix) = name.strip_prefix("*.") {
            return self.wildcard.get(suffix);
        }
        self.exact.get(name).or_else(|| {
            name.split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent))
        })
    }
}

/// The files of `dir` whose names end in `.EXTENSION`, sorted.
fn files_ending(dir: &Path, extension: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    files.sort();
    Ok(files)
}

fn load_pair(crt: &Path, key: &Path) -> Result<(Pair, Vec<String>), String> {
    let show = crt.display();
    let pem = std::fs::read(crt).map_err(|e| format!("{show}: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{show}: {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{show}: no certificate in file"))?;
    let (names, not_before, not_after) = names_of(leaf).map_err(|e| format!("{show}: {e}"))?;
    let key_pem = match std::fs::read(key) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{show}: its private key {} is missing",
                key.display()
            ))
        }
        Err(e) => return Err(format!("{}: {e}", key.display())),
    };
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key in file", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key_der, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{show}: the private key in {} does not belong to this certificate",
            key.display()
        ),
        e => format!("{show} with {}: {e}", key.display()),
    })?;
    let pair = Pair {
        key: Arc::new(certified),
        crt: crt.to_owned(),
        not_before,
        not_after,
    };
    Ok((pair, names))
}

/// DNS names of a certificate (its subjectAltName entries, else its CN) and its validity
/// period in Unix seconds.
fn names_of(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64, i64), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    if names.is_empty() {
        return Err("certificate names no DNS host (no subjectAltName, no CN)".into());
    }
    Ok((names, not_before, not_after))
}

/// The rustls hook: reads the current stores on every handshake.
#[derive(Debug)]
pub struct CertResolver {
    pub certs: Arc<Certificates>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certs.choose(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{date_time_ymd, CertificateParams, KeyPair};

    /// A self-signed `(crt, key)` PEM pair for `names`, valid between the two years.
    fn pair(names: &[&str], from: i32, until: i32) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = date_time_ymd(from, 1, 1);
        params.not_after = date_time_ymd(until, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn folder(pairs: &[(&str, &(String, String))]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (stem, (crt, key)) in pairs {
            std::fs::write(dir.path().join(format!("{stem}.crt")), crt).unwrap();
            std::fs::write(dir.path().join(format!("{stem}.key")), key).unwrap();
        }
        dir
    }

    const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    #[test]
    fn a_key_that_does_not_match_its_certificate_is_refused_naming_both_files() {
        let (crt, _) = pair(&["acme.example"], 2020, 2040);
        let (_, other_key) = pair(&["acme.example"], 2020, 2040);
        let dir = folder(&[("acme", &(crt, other_key))]);
        let errors = CertStore::load(dir.path()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("acme.crt: the private key in "),
            "{errors:?}"
        );
        assert!(
            errors[0].ends_with("acme.key does not belong to this certificate"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_certificate_without_its_key_is_refused_naming_the_missing_key() {
        let (crt, _) = pair(&["acme.example"], 2020, 2040);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("acme.crt"), crt).unwrap();
        let errors = CertStore::load(dir.path()).unwrap_err();
        assert!(
            errors[0].contains("acme.crt: its private key ")
                && errors[0].ends_with("acme.key is missing"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_folder_without_pairs_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README"), "certificates go here").unwrap();
        let errors = CertStore::load(dir.path()).unwrap_err();
        assert!(errors[0].starts_with("no certificate pairs"), "{errors:?}");
    }

    #[test]
    fn an_expired_certificate_may_not_replace_a_valid_one() {
        let valid = pair(&["acme.example", "www.acme.example"], 2020, 2040);
        let expired = pair(&["acme.example", "www.acme.example"], 2020, 2021);
        let running = CertStore::load(folder(&[("acme", &valid)]).path()).unwrap();
        let next_dir = folder(&[("acme", &expired)]);
        let next = CertStore::load(next_dir.path()).unwrap();
        let refused = running.refused_replacements(&next, NOW);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, next_dir.path().join("acme.crt"));
        assert!(
            refused[0].1.starts_with(
                "certificate expired at 2021-01-01T00:00:00Z; refused: the running certificate from "
            ),
            "{refused:?}"
        );
        assert!(
            refused[0]
                .1
                .ends_with("stays in service for acme.example, www.acme.example"),
            "{refused:?}"
        );
        // Renewed: accepted.
        let renewed =
            CertStore::load(folder(&[("acme", &pair(&["acme.example"], 2025, 2027))]).path())
                .unwrap();
        assert!(running.refused_replacements(&renewed, NOW).is_empty());
    }

    #[test]
    fn a_certificate_not_valid_yet_may_not_replace_a_valid_one() {
        let running =
            CertStore::load(folder(&[("acme", &pair(&["acme.example"], 2020, 2040))]).path())
                .unwrap();
        let early =
            CertStore::load(folder(&[("acme", &pair(&["acme.example"], 2030, 2040))]).path())
                .unwrap();
        let refused = running.refused_replacements(&early, NOW);
        assert!(
            refused[0]
                .1
                .starts_with("certificate is not valid before 2030-01-01T00:00:00Z"),
            "{refused:?}"
        );
    }

    #[test]
    fn an_expired_exact_certificate_may_not_shadow_a_valid_wildcard() {
        let wildcard = pair(&["*.example.se"], 2020, 2040);
        let running = CertStore::load(folder(&[("wild", &wildcard)]).path()).unwrap();
        let next_dir = folder(&[
            ("wild", &wildcard),
            ("acme", &pair(&["acme.example.se"], 2020, 2021)),
        ]);
        let next = CertStore::load(next_dir.path()).unwrap();
        let refused = running.refused_replacements(&next, NOW);
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, next_dir.path().join("acme.crt"));
        assert!(
            refused[0].1.ends_with(
                "wild.crt (valid until 2040-01-01T00:00:00Z) stays in service for acme.example.se"
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn an_expired_certificate_with_nothing_valid_to_replace_is_loaded() {
        let expired = pair(&["acme.example"], 2020, 2021);
        // At start-up there is nothing running: it loads (with a warning in the log).
        let running = CertStore::load(folder(&[("acme", &expired)]).path()).unwrap();
        // The running certificate has run out: another expired one, or an unrelated change,
        // does not block the reload.
        let again =
            CertStore::load(folder(&[("acme", &pair(&["acme.example"], 2019, 2022))]).path())
                .unwrap();
        assert!(running.refused_replacements(&again, NOW).is_empty());
        // A new name with an expired certificate replaces nothing valid either.
        let valid = pair(&["acme.example"], 2020, 2040);
        let running = CertStore::load(folder(&[("acme", &valid)]).path()).unwrap();
        let more = CertStore::load(
            folder(&[("acme", &valid), ("new", &expired_for("new.example"))]).path(),
        )
        .unwrap();
        assert!(running.refused_replacements(&more, NOW).is_empty());
    }

    #[test]
    fn the_operator_certificate_wins_acme_serves_the_rest_and_nothing_loaded_serves_nothing() {
        let certs = Certificates::new(CertStore::empty());
        assert!(certs.choose(Some("hrm.exempel.com")).is_none());
        let operator = pair(&["hrm.exempel.com"], 2020, 2040);
        let certs =
            Certificates::new(CertStore::load(folder(&[("op", &operator)]).path()).unwrap());
        let acme_dir = tempfile::tempdir().unwrap();
        for (host, until) in [("hrm.exempel.com", 2039), ("timeclock.exempel.com", 2038)] {
            let (crt, key) = pair(&[host], 2020, until);
            std::fs::write(acme_dir.path().join(format!("{host}.pem")), crt + &key).unwrap();
        }
        std::fs::write(acme_dir.path().join("broken.pem"), "not a certificate").unwrap();
        let (acme, skipped) = CertStore::load_bundles(acme_dir.path());
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        certs.acme.store(Arc::new(acme));
        let served = |sni| {
            let key = certs.choose(Some(sni)).unwrap();
            names_of(&key.cert[0]).unwrap().0
        };
        assert_eq!(served("hrm.exempel.com"), ["hrm.exempel.com"]);
        assert_eq!(served("TIMECLOCK.exempel.com."), ["timeclock.exempel.com"]);
        let not_after = |year| {
            jiff::civil::date(year, 1, 1)
                .to_zoned(jiff::tz::TimeZone::UTC)
                .unwrap()
                .timestamp()
                .as_second()
        };
        assert_eq!(
            certs.expiries(),
            [
                ("hrm.exempel.com".to_owned(), "operator", not_after(2040)),
                ("timeclock.exempel.com".to_owned(), "acme", not_after(2038)),
            ]
        );
    }

    fn expired_for(name: &str) -> (String, String) {
        pair(&[name], 2020, 2021)
    }
}
