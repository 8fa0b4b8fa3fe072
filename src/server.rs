//! Assembles the pingora server from a loaded config: the listeners ([`listen`]), the front
//! door on the http and https ones, the admin listener, and the background tasks (reload
//! watcher, SIGHUP, census, DNS, ACME).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::acme::Acme;
use crate::admin::Admin;
use crate::config::{self, Settings};
use crate::front::{Front, FrontDoor, Http2, Tls};
use crate::listen;
use crate::proxy::Gateway;
use crate::reload::Live;
use crate::report::access::AccessLog;
use crate::report::census::{Census, CensusWorker};
use crate::report::metrics::Metrics;
use crate::report::Recorder;
use crate::resolver::resolve_forever;
use crate::tls::{CertResolver, Certificates};

/// How long the exit waits for the access log's last lines to be written.
const ACCESS_LOG_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// How long pingora waits for runtimes to wind down after the grace period.
const SHUTDOWN_TIMEOUT_SECONDS: u64 = 5;

/// Loads `config_path` and serves until a shutdown signal. A broken config fails here,
/// before any port is bound. With `upgrade`, the listening sockets come from the running
/// instance that is sent `SIGQUIT` (pingora's graceful upgrade) instead of being bound.
pub fn run(config_path: &Path, upgrade: bool) -> anyhow::Result<()> {
    let config = config::load(config_path, None)?;
    let settings = config.settings.clone();
    tracing::info!(
        files = ?config.files,
        tenants = config.table.tenants().len(),
        rules = config.table.rule_count(),
        "config loaded"
    );
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    crate::reload::release_freed_memory();
    let metrics = Arc::new(Metrics::new());
    let (census, census_worker) = Census::new(settings.census.clone(), metrics.clone())?;
    census.judge_at_start(&config.table);
    let access = AccessLog::start(&settings.access_log, metrics.access_log_dropped.clone())
        .map_err(anyhow::Error::msg)?;
    let (bound, handover) = listen::bind(&settings.listen, upgrade)?;
    let live = Live::new(config_path, config, metrics.clone());
    // Certificates ACME obtained in earlier runs are served from the first handshake.
    let acme = match (&settings.acme, &live.certs) {
        (Some(acme), Some(certs)) => Some(Acme::start(
            acme.clone(),
            certs.clone(),
            live.tables.clone(),
            metrics.clone(),
        )?),
        _ => None,
    };

    let mut server = pingora_server(&settings, upgrade);
    let final_census = census.clone();
    let recorder = Arc::new(Recorder {
        metrics,
        census: census.clone(),
        access,
    });
    let gateway = Gateway {
        tables: live.tables.clone(),
        recorder: recorder.clone(),
        deadlines: settings.deadlines,
    };
    let h2 = Http2::new(gateway, &server.configuration);
    let tls = match (bound.https, &live.certs) {
        (Some(_), Some(store)) => Some(tls(store)?),
        _ => None,
    };
    let draining = Arc::new(AtomicBool::new(false));
    let front = Front::new(
        h2,
        tls,
        &server.configuration,
        live.tables.clone(),
        recorder.clone(),
        draining.clone(),
        settings.deadlines,
    );
    let handover = server.add_service(handover.readying(live.clone()));
    // The front door accepts on both listeners itself; TLS is its to do, within the header
    // deadline.
    let door = FrontDoor::new(front, bound.http, bound.https);
    server.add_service(door).add_dependency(&handover);

    if let Some(addr) = bound.admin {
        let admin = Admin {
            live: live.clone(),
            census,
            token_file: settings.admin_token_file.clone(),
        };
        let mut service = Service::new("admin".to_owned(), admin);
        service.add_tcp(&addr.to_string());
        service.threads = Some(1);
        server.add_service(service).add_dependency(&handover);
    }
    let show = |a: Option<SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
    tracing::info!(
        http = show(bound.http),
        https = show(bound.https),
        admin = show(bound.admin),
        "listening"
    );

    let tasks = Background {
        live,
        acme,
        recorder: recorder.clone(),
        census: final_census.clone(),
        census_worker: Mutex::new(Some(census_worker)),
        draining,
    };
    server.add_service(background_service("signpost", tasks));
    server.run(RunArgs::default());
    // Every worker has stopped: requests that finished during the grace period are counted
    // and logged too.
    final_census.flush();
    recorder.access.flush(ACCESS_LOG_PATIENCE);
    Ok(())
}

/// pingora's server, its sockets inherited from a running instance when `upgrade`.
fn pingora_server(settings: &Settings, upgrade: bool) -> Server {
    let threads = settings
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(settings.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(SHUTDOWN_TIMEOUT_SECONDS),
        upgrade_sock: settings.upgrade_sock.to_string_lossy().into_owned(),
        // Tries per request on the HTTP/2 door, the first included: a retry happens at most
        // once, and only where pingora allows one (an idempotent request on a kept-alive
        // connection that failed).
        max_retries: 2,
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();
    server
}

/// The https listener's TLS: certificates chosen by SNI from `store`, ALPN `h2` and
/// `http/1.1`.
fn tls(certs: &Arc<Certificates>) -> pingora::Result<Tls> {
    let mut tls = TlsSettings::intermediate("", "")?;
    tls.set_cert_resolver(Arc::new(CertResolver {
        certs: certs.clone(),
    }));
    tls.enable_h2();
    let acceptor = tls.build();
    // Building the acceptor installs the process's crypto provider: its suites are the ones
    // offered.
    let suites = rustls::crypto::CryptoProvider::get_default()
        .map(|p| {
            p.cipher_suites
                .iter()
                .map(|s| u16::from(s.suite()))
                .collect()
        })
        .unwrap_or_default();
    Ok(Tls {
        acceptor,
        certs: certs.clone(),
        suites,
    })
}

/// Everything that runs beside the proxy, stopped by pingora's shutdown watch.
struct Background {
    live: Arc<Live>,
    acme: Option<Acme>,
    /// For the access log: reopened on `SIGUSR1`.
    recorder: Arc<Recorder>,
    census: Arc<Census>,
    census_worker: Mutex<Option<CensusWorker>>,
    /// Tells the front door that a shutdown began.
    draining: Arc<AtomicBool>,
}

#[async_trait]
impl BackgroundService for Background {
    async fn start(&self, shutdown: ShutdownWatch) {
        // Signal handlers first, and `/-/ready` only after them: until then SIGHUP's and
        // SIGUSR1's default action would end the process.
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1());
        self.live.signals_armed.store(true, Ordering::Release);
        let worker = self.census_worker.lock().ok().and_then(|mut w| w.take());
        let census = async {
            if let Some(worker) = worker {
                worker.run(shutdown.clone()).await;
            }
        };
        let mut stop_dns = shutdown.clone();
        let dns = async {
            tokio::select! {
                _ = resolve_forever(self.live.tables.clone()) => {}
                _ = stop_dns.changed() => {}
            }
        };
        // Census-gated phases: the census judges every gate in the running table.
        let mut stop_gates = shutdown.clone();
        let gates = async {
            if !self.census.enabled() {
                return;
            }
            let mut every = tokio::time::interval(self.census.judge_every());
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        let table = self.live.tables.load_full();
                        if let Err(e) = self.census.judge_gates(&table).await {
                            tracing::debug!(error = %e, "census store not read: census-gated phases keep their verdicts");
                        }
                    }
                    _ = stop_gates.changed() => break,
                }
            }
        };
        // `SIGUSR1`: logrotate moved the access log file; open it anew.
        let mut stop_reopen = shutdown.clone();
        let reopen = async {
            let Ok(mut usr1) = usr1 else {
                tracing::error!("cannot listen for SIGUSR1: the access log is not reopened");
                return;
            };
            loop {
                tokio::select! {
                    _ = usr1.recv() => {
                        tracing::info!("SIGUSR1: reopening the access log");
                        self.recorder.access.reopen();
                    }
                    _ = stop_reopen.changed() => break,
                }
            }
        };
        let acme = async {
            if let Some(acme) = &self.acme {
                acme.run(shutdown.clone()).await;
            }
        };
        let mut draining = shutdown.clone();
        let drain = async {
            if draining.changed().await.is_ok() {
                self.draining.store(true, Ordering::Relaxed);
            }
        };
        tokio::join!(
            acme,
            census,
            gates,
            reopen,
            dns,
            drain,
            self.live.clone().watch(shutdown.clone()),
            self.live.clone().on_sighup(hup, shutdown.clone()),
        );
    }
}
