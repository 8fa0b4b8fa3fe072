//! Assembles the pingora server from a loaded config: listeners, the proxy, background tasks.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};

use crate::config::{self, Config};
use crate::proxy::Gateway;
use crate::table::Tables;
use crate::tls::CertResolver;
use crate::upstream::resolve_forever;

/// How long pingora waits for runtimes to wind down after the grace period.
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;

/// Loads `config_path` and serves until a shutdown signal. A broken config fails here,
/// before any port is bound.
pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let Config {
        settings,
        table,
        certs,
        files,
    } = config::load(config_path, None)?;
    tracing::info!(files = ?files, tenants = table.tenants().len(), rules = table.rule_count(), "config loaded");
    let tables: Tables = Arc::new(ArcSwap::from_pointee(table));

    let threads = settings
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(settings.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(SHUTDOWN_TIMEOUT_SECONDS),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Gateway {
            tables: tables.clone(),
        },
    );
    if let Some(addr) = settings.listen.http {
        proxy.add_tcp(&addr.to_string());
    }
    if let (Some(addr), Some(store)) = (settings.listen.https, certs) {
        let resolver = CertResolver {
            store: Arc::new(ArcSwap::from_pointee(store)),
        };
        let mut tls = TlsSettings::intermediate("", "")?;
        tls.set_cert_resolver(Arc::new(resolver));
        tls.enable_h2();
        proxy.add_tls_with_settings(&addr.to_string(), None, tls);
    }
    server.add_service(proxy);
    server.add_service(background_service("upstream resolver", Resolver { tables }));
    server.run(RunArgs::default());
    Ok(())
}

/// Keeps upstream addresses fresh (see [`resolve_forever`]).
struct Resolver {
    tables: Tables,
}

#[async_trait]
impl BackgroundService for Resolver {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = resolve_forever(self.tables.clone()) => {}
            _ = shutdown.changed() => {}
        }
    }
}
