//! Certificates by ACME (`acme:`) for the table's hosts that no certificate of `tls.certs`
//! covers, for a box with no certificate process of its own.
//!
//! - **Which hosts**: every exact host of the running table that no operator certificate
//!   covers ([`coverage`]); never a name a client asks for that is not in the table.
//!   Wildcards need a certificate in `tls.certs` (DNS-01 is not built in); `check` says so.
//! - **Challenges**: HTTP-01, answered by the http listener before any rule
//!   ([`crate::table::challenge`]). TLS-ALPN-01 is not offered: pingora 0.9's rustls listener takes one
//!   ALPN list, and answering `acme-tls/1` beside `h2` would need a second acceptor chosen
//!   from the ClientHello; a box without port 80 uses `tls.certs`.
//! - **When**: at once for a host without a certificate; a renewal when a third of the
//!   lifetime is left, or at a random point of the window the CA's renewal information
//!   (RFC 9773) suggests when its directory offers it. After a failure, backoff doubling
//!   from five minutes with jitter; the CA's rate limits are counted ([`plan`]). The old
//!   certificate is served until a new one is had.
//! - **Where**: `acme/` in the state directory ([`storage`]), loaded at start (no new order
//!   after a restart) and served by the same SNI store as the operator's certificates.

mod order;
pub mod plan;
mod storage;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{Account, CertificateIdentifier, NewAccount};
use pingora::server::ShutdownWatch;
use rustls::pki_types::{CertificateDer, Der};

use crate::config::AcmeSettings;
use crate::report::metrics::Metrics;
use crate::table::{Table, Tables};
use crate::tls::{unix_now, CertStore, Certificates};
use order::Failure;
use plan::Ledger;
use storage::Storage;

/// The longest one order may take, account and validation included.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the loop looks whether the table changed (a new host is ordered within this).
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// The longest the loop sleeps between passes when nothing is due.
const PASS_AT_LEAST_EVERY: i64 = 3600;

/// The hosts of `table` that ACME is to certify (sorted), and its wildcard hosts that no
/// operator certificate covers (which ACME cannot). A name of one label (`localhost`) is no
/// name a public CA certifies: it is left out.
pub fn coverage(table: &Table, operator: Option<&CertStore>) -> (Vec<String>, Vec<String>) {
    let covered = |name: &str| operator.is_some_and(|o| o.covers(name));
    let mut order: Vec<String> = (table.exact_hosts())
        .filter(|h| h.contains('.') && !covered(h))
        .map(str::to_owned)
        .collect();
    order.sort();
    let mut uncovered: Vec<String> = (table.wildcard_hosts()).filter(|w| !covered(w)).collect();
    uncovered.sort();
    (order, uncovered)
}

/// The ACME client of one process.
pub struct Acme {
    settings: AcmeSettings,
    storage: Storage,
    certs: Arc<Certificates>,
    tables: Tables,
    metrics: Arc<Metrics>,
}

/// The renewal window a CA suggested for a host's certificate.
struct Window {
    /// The chosen moment in the window (Unix seconds).
    renew_at: i64,
    /// When to ask again.
    recheck_at: i64,
    /// The certificate it is for (its `notAfter`): a new certificate asks anew.
    not_after: i64,
}

impl Acme {
    /// Opens the state folder and serves what earlier runs obtained from the first handshake.
    pub fn start(
        settings: AcmeSettings,
        certs: Arc<Certificates>,
        tables: Tables,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let storage = Storage::open(&settings.dir)
            .map_err(|e| anyhow::anyhow!("acme: cannot use {}: {e}", settings.dir.display()))?;
        let acme = Self {
            settings,
            storage,
            certs,
            tables,
            metrics,
        };
        acme.load_certificates();
        let (_, uncovered) = acme.wanted(&acme.tables.load());
        if !uncovered.is_empty() {
            tracing::warn!(hosts = ?uncovered, "acme: wildcard hosts need a certificate in tls.certs (DNS-01 is not built in)");
        }
        Ok(acme)
    }

    fn load_certificates(&self) {
        let (store, skipped) = CertStore::load_bundles(&self.storage.certs_dir());
        for why in skipped {
            tracing::warn!("acme: {why}; the host is ordered again");
        }
        tracing::info!(
            certificates = store.served.len(),
            "acme: certificates loaded"
        );
        self.certs.acme.store(Arc::new(store));
    }

    fn wanted(&self, table: &Table) -> (Vec<String>, Vec<String>) {
        coverage(table, Some(&self.certs.operator.load()))
    }

    /// Orders and renews until the shutdown: a pass whenever the table changes or something
    /// falls due.
    pub async fn run(&self, mut shutdown: ShutdownWatch) {
        let mut client = Client {
            account: None,
            ledger: self.storage.ledger(),
            windows: HashMap::new(),
            ari: true,
        };
        let mut seen: Option<Arc<Table>> = None;
        let mut next_pass = 0;
        loop {
            let table = self.tables.load_full();
            let changed = !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &table));
            if changed || unix_now() >= next_pass {
                seen = Some(table.clone());
                let pass = self.pass(&table, &mut client);
                tokio::select! {
                    next = pass => next_pass = next,
                    _ = shutdown.changed() => return,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(LOOK_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Orders what is due; returns when the next host falls due.
    async fn pass(&self, table: &Table, client: &mut Client) -> i64 {
        let (hosts, _) = self.wanted(table);
        client.ledger.keep_only(&hosts);
        let mut next = unix_now() + PASS_AT_LEAST_EVERY;
        for host in &hosts {
            let now = unix_now();
            let due = self.due(host, client, now).await;
            if due > now {
                next = next.min(due);
                continue;
            }
            if let Err(wait) = client.ledger.may_order(host, now) {
                tracing::debug!(
                    host,
                    until = wait.until,
                    "acme: not ordering yet: {}",
                    wait.why
                );
                next = next.min(wait.until);
                continue;
            }
            client.ledger.ordered(now);
            let outcome = tokio::time::timeout(ORDER_TIMEOUT, self.order(host, client)).await;
            let outcome = outcome.unwrap_or_else(|_| {
                Err(Failure {
                    reason: "timeout",
                    detail: format!("no certificate within {ORDER_TIMEOUT:?}"),
                })
            });
            let now = unix_now();
            match outcome {
                Ok(path) => {
                    self.metrics
                        .acme_orders
                        .with_label_values(&["issued"])
                        .inc();
                    client.ledger.issued(host, now);
                    client.windows.remove(host);
                    tracing::info!(host, file = %path.display(), "acme: certificate issued");
                    self.load_certificates();
                    // The next pass finds when the new certificate is due.
                    next = now;
                }
                Err(failure) => {
                    self.metrics
                        .acme_orders
                        .with_label_values(&["failed"])
                        .inc();
                    self.metrics
                        .acme_failures
                        .with_label_values(&[failure.reason])
                        .inc();
                    if failure.reason == "unreachable" || failure.reason == "account" {
                        // The next try builds the account (and its connection) afresh.
                        client.account = None;
                    }
                    let retry_at = client.ledger.failed(host, now, failure.reason, jitter());
                    next = next.min(retry_at);
                    let serving = self.certs.acme.load().validity(host).is_some();
                    tracing::warn!(
                        host,
                        reason = failure.reason,
                        retry_in_seconds = retry_at - now,
                        old_certificate_served = serving,
                        "acme: order failed: {}",
                        failure.detail
                    );
                }
            }
            if let Err(e) = self.storage.save_ledger(&client.ledger) {
                tracing::error!("acme: cannot save the ledger: {e}");
            }
        }
        next
    }

    /// When `host` is to be ordered: now without a certificate; else in the CA's renewal
    /// window when it offers one, else when a third of the lifetime is left.
    async fn due(&self, host: &str, client: &mut Client, now: i64) -> i64 {
        let store = self.certs.acme.load();
        let Some((not_before, not_after)) = store.validity(host) else {
            return now;
        };
        let by_lifetime = plan::renewal_time(not_before, not_after);
        if !client.ari {
            return by_lifetime;
        }
        if client.account.is_none() {
            // Certificates from an earlier run: the account (one request to the directory)
            // tells whether the CA offers renewal information.
            match self.account().await {
                Ok(account) => client.account = Some(account),
                Err(failure) => {
                    tracing::debug!(
                        host,
                        "acme: no account to ask for renewal information: {}",
                        failure.detail
                    );
                    return by_lifetime;
                }
            }
        }
        let stale = (client.windows.get(host))
            .is_none_or(|w| w.not_after != not_after || w.recheck_at <= now);
        if stale {
            let Some(leaf) = store.leaf(host) else {
                return by_lifetime;
            };
            match self.window(&leaf, not_after, client).await {
                Ok(window) => {
                    client.windows.insert(host.to_owned(), window);
                }
                Err(None) => client.ari = false,
                Err(Some(e)) => tracing::debug!(host, "acme: renewal information: {e}"),
            }
        }
        client.windows.get(host).map_or(by_lifetime, |w| w.renew_at)
    }

    /// Asks the CA's renewal information for a certificate; `Err(None)` when the CA offers
    /// none.
    async fn window(
        &self,
        leaf: &CertificateDer<'_>,
        not_after: i64,
        client: &Client,
    ) -> Result<Window, Option<String>> {
        let account = client.account.as_ref().ok_or(None)?;
        let id = certificate_id(leaf).ok_or_else(|| Some("no authority key id".to_owned()))?;
        match account.renewal_info(&id).await {
            Ok((info, recheck)) => {
                let (start, end) = (
                    info.suggested_window.start.unix_timestamp(),
                    info.suggested_window.end.unix_timestamp(),
                );
                let renew_at = start + ((end - start).max(0) as f64 * jitter()) as i64;
                let recheck = recheck.as_secs().clamp(60, 24 * 3600) as i64;
                Ok(Window {
                    renew_at,
                    recheck_at: unix_now() + recheck,
                    not_after,
                })
            }
            Err(instant_acme::Error::Unsupported(_)) => Err(None),
            Err(e) => Err(Some(e.to_string())),
        }
    }

    /// One order: the account (made once, kept in the state folder), the certificate, saved.
    async fn order(&self, host: &str, client: &mut Client) -> Result<std::path::PathBuf, Failure> {
        let account = match &client.account {
            Some(account) => account.clone(),
            None => {
                let account = self.account().await?;
                client.account = Some(account.clone());
                account
            }
        };
        let challenges = self.tables.load().challenges.clone();
        tracing::info!(
            host,
            directory = self.settings.directory,
            "acme: ordering a certificate"
        );
        let issued = order::obtain(&account, host, &challenges).await?;
        self.storage
            .save_certificate(host, &issued.chain, &issued.key)
            .map_err(|e| Failure {
                reason: "storage",
                detail: e.to_string(),
            })
    }

    async fn account(&self) -> Result<Account, Failure> {
        let s = &self.settings;
        let builder = match &s.ca {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        }
        .map_err(|e| Failure::of("account", e))?;
        if let Some(credentials) = self.storage.account(&s.directory) {
            return (builder.from_credentials(credentials).await)
                .map_err(|e| Failure::of("account", e));
        }
        let contact = format!("mailto:{}", s.email);
        let new = NewAccount {
            contact: &[&contact],
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, credentials) = (builder.create(&new, s.directory.clone(), None).await)
            .map_err(|e| Failure::of("account", e))?;
        self.storage
            .save_account(&s.directory, credentials)
            .map_err(|e| Failure {
                reason: "storage",
                detail: format!("the account could not be saved: {e}"),
            })?;
        tracing::info!(directory = s.directory, "acme: account created");
        Ok(account)
    }
}

/// What the loop keeps between passes.
struct Client {
    account: Option<Account>,
    ledger: Ledger,
    windows: HashMap<String, Window>,
    /// Whether the CA may offer renewal information (until it said it does not).
    ari: bool,
}

/// RFC 9773's certificate identifier: the issuer's key identifier and the serial.
fn certificate_id(leaf: &CertificateDer<'_>) -> Option<CertificateIdentifier<'static>> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let aki = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })?;
    let serial = cert.tbs_certificate.raw_serial().to_vec();
    Some(CertificateIdentifier::new(Der::from_slice(&aki), Der::from_slice(&serial)).into_owned())
}

/// A number in 0..1 from the system's randomness.
fn jitter() -> f64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}
