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

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Certificates by name.
pub struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` stored as `example.com`: a wildcard covers exactly one label.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    /// File stem → names it serves, for logs and `/config`.
    pub served: Vec<(String, Vec<String>)>,
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
        let mut errors = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => return Err(vec![format!("cannot read folder {}: {e}", dir.display())]),
        };
        let mut crts: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        crts.sort();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut served = Vec::new();
        let mut default = None;
        for crt in &crts {
            let stem = crt
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match load_pair(crt, &crt.with_extension("key")) {
                Ok((key, names)) => {
                    let key = Arc::new(key);
                    for name in &names {
                        match name.strip_prefix("*.") {
                            Some(suffix) => wildcard.entry(suffix.to_owned()),
                            None => exact.entry(name.clone()),
                        }
                        .or_insert_with(|| key.clone());
                    }
                    if default.is_none() || stem == "default" {
                        default = Some(key);
                    }
                    served.push((stem, names));
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let default = default.ok_or_else(|| {
            vec![format!(
                "no certificate pairs (NAME.crt + NAME.key) in {}",
                dir.display()
            )]
        })?;
        Ok(Self {
            exact,
            wildcard,
            default,
            served,
        })
    }

    /// The certificate for an SNI name: exact, then one-label wildcard, then the default.
    pub fn choose(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
            .clone()
    }
}

fn load_pair(crt: &Path, key: &Path) -> Result<(CertifiedKey, Vec<String>), String> {
    let show = crt.display();
    let pem = std::fs::read(crt).map_err(|e| format!("{show}: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{show}: {e}"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{show}: no certificate in file"))?;
    let names = names_of(leaf).map_err(|e| format!("{show}: {e}"))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("{}: {e}", key.display()))?
        .ok_or_else(|| format!("{}: no private key in file", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key_der, &provider)
        .map_err(|e| format!("{show} with {}: {e}", key.display()))?;
    Ok((certified, names))
}

/// DNS names of a certificate: its subjectAltName entries, else its CN.
fn names_of(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
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
    Ok(names)
}

/// The rustls hook: reads the current store on every handshake.
#[derive(Debug)]
pub struct CertResolver {
    pub store: Arc<ArcSwap<CertStore>>,
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.store.load().choose(hello.server_name()))
    }
}
