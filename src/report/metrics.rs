//! The Prometheus metrics named in the spec. Label values come only from the config (tenant
//! ids, kinds, upstream names) or from small fixed sets, never from a request, so the number of
//! series is bounded by the config: unknown hosts are `_unknown`, requests that matched no rule
//! have kind `_none`.

use super::counts::RequestCounts;
use super::durations::Durations;
use super::exposition;
use crate::table::Table;
use crate::tls::Certificates;
use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Every metric Signpost exports, in one registry of its own.
pub struct Metrics {
    registry: Registry,
    pub requests: RequestCounts,
    pub duration: Durations,
    pub upstream_errors: IntCounterVec,
    /// Failed TLS handshakes by tenant (from the SNI) and reason: clients that never got
    /// to send a request.
    pub tls_handshake_failures: IntCounterVec,
    /// ACME orders by result (`issued`, `failed`), and failures by reason.
    pub acme_orders: IntCounterVec,
    pub acme_failures: IntCounterVec,
    pub client_last_seen: GaugeVec,
    pub config_generation: IntGauge,
    pub config_reloads: IntCounterVec,
    pub config_last_success: Gauge,
    pub tenants: IntGauge,
    pub rules: IntGauge,
    pub census_evictions: IntCounter,
    pub census_dropped: IntCounter,
    /// Access log lines dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    /// Client rows waiting to be flushed to the census store.
    pub store_backlog: IntGauge,
    /// Sightings dropped because the store's backlog was full.
    pub store_dropped: IntCounter,
    pub store_flush_errors: IntCounterVec,
    pub store_last_flush: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = RequestCounts::default();
        let duration = Durations::default();
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "signpost_upstream_errors_total",
                "Forwards that failed, by upstream and reason.",
            ),
            &["upstream", "reason"],
        )
        .expect("valid metric");
        let tls_handshake_failures = IntCounterVec::new(
            Opts::new(
                "signpost_tls_handshake_failures_total",
                "TLS handshakes that failed after a ClientHello, by tenant (from the SNI; _unknown, _none) and reason.",
            ),
            &["tenant", "reason"],
        )
        .expect("valid metric");
        let acme_orders = IntCounterVec::new(
            Opts::new(
                "signpost_acme_orders_total",
                "Certificate orders placed with the ACME CA, by result (issued, failed).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let acme_failures = IntCounterVec::new(
            Opts::new(
                "signpost_acme_failures_total",
                "ACME failures by reason (unreachable, account, order, challenge, finalize, rate_limited, timeout, storage).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let client_last_seen = GaugeVec::new(
            Opts::new(
                "signpost_legacy_client_last_seen_timestamp_seconds",
                "When the busiest legacy clients were last seen (top clients only).",
            ),
            &["tenant", "kind", "client"],
        )
        .expect("valid metric");
        let config_generation = IntGauge::new(
            "signpost_config_generation",
            "Config generation: 1 at start, +1 per successful reload.",
        )
        .expect("valid metric");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "signpost_config_reloads_total",
                "Reload attempts by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let config_last_success = Gauge::new(
            "signpost_config_last_success_timestamp_seconds",
            "When a config was last loaded successfully.",
        )
        .expect("valid metric");
        let tenants = IntGauge::new("signpost_tenants", "Tenants in the running config.")
            .expect("valid metric");
        let rules = IntGauge::new(
            "signpost_rules",
            "Rules in the running config (tenant rules plus each profile's).",
        )
        .expect("valid metric");
        let census_evictions = IntCounter::new(
            "signpost_census_evictions_total",
            "Legacy clients evicted from the bounded census.",
        )
        .expect("valid metric");
        let census_dropped = IntCounter::new(
            "signpost_census_dropped_total",
            "Sightings not recorded because the census queue was full.",
        )
        .expect("valid metric");
        let store_backlog = IntGauge::new(
            "signpost_census_store_backlog",
            "Census client rows counted here and not yet flushed to the census store.",
        )
        .expect("valid metric");
        let store_dropped = IntCounter::new(
            "signpost_census_store_dropped_total",
            "Sightings not sent to the census store because its backlog was full.",
        )
        .expect("valid metric");
        let store_flush_errors = IntCounterVec::new(
            Opts::new(
                "signpost_census_store_flush_errors_total",
                "Failed flushes to the census store, by reason (connect, tls, auth, query, timeout).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let store_last_flush = Gauge::new(
            "signpost_census_store_last_flush_timestamp_seconds",
            "When this instance last flushed to the census store.",
        )
        .expect("valid metric");
        let access_log_dropped = IntCounter::new(
            "signpost_access_log_dropped_total",
            "Access log lines dropped because the disk or pipe could not keep up.",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "signpost_build_info",
                "Always 1; the version is in the label.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for c in [
            Box::new(upstream_errors.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(tls_handshake_failures.clone()),
            Box::new(acme_orders.clone()),
            Box::new(acme_failures.clone()),
            Box::new(client_last_seen.clone()),
            Box::new(config_generation.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_last_success.clone()),
            Box::new(tenants.clone()),
            Box::new(rules.clone()),
            Box::new(census_evictions.clone()),
            Box::new(census_dropped.clone()),
            Box::new(access_log_dropped.clone()),
            Box::new(store_backlog.clone()),
            Box::new(store_dropped.clone()),
            Box::new(store_flush_errors.clone()),
            Box::new(store_last_flush.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        // Both results exist from the start, so a dashboard can tell "no errors" from "no data".
        config_reloads.with_label_values(&["ok"]);
        config_reloads.with_label_values(&["error"]);
        Self {
            registry,
            requests,
            duration,
            upstream_errors,
            tls_handshake_failures,
            acme_orders,
            acme_failures,
            client_last_seen,
            config_generation,
            config_reloads,
            config_last_success,
            tenants,
            rules,
            census_evictions,
            census_dropped,
            access_log_dropped,
            store_backlog,
            store_dropped,
            store_flush_errors,
            store_last_flush,
        }
    }

    /// The Prometheus text format: the registry's metrics, then the series kept per tenant
    /// (written straight from their counts and from `table`, phases as of `now`).
    pub fn render(
        &self,
        table: &Table,
        certs: Option<&Certificates>,
        now: jiff::Timestamp,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        self.requests.write_text(table, &mut out);
        self.duration.write_text(&mut out);
        write_tenant_gauges(table, now, &mut out);
        if let Some(certs) = certs {
            write_certificate_expiries(certs, &mut out);
        }
        out
    }
}

/// When each served name's certificate expires, from the running store at each scrape: a
/// reload that replaces a certificate replaces its series. `source` is `operator` for the
/// certificates of `tls.certs`, `acme` for those Signpost obtained itself.
fn write_certificate_expiries(certs: &Certificates, out: &mut Vec<u8>) {
    const EXPIRY: &str = "signpost_certificate_expiry_timestamp_seconds";
    exposition::family(
        out,
        EXPIRY,
        "When the certificate served for a host expires (Unix seconds), by where it comes from.",
        "gauge",
    );
    for (host, source, not_after) in certs.expiries() {
        let labels = [("host", host.as_str()), ("source", source)];
        exposition::sample(out, EXPIRY, &labels, not_after);
    }
}

/// The per-tenant gauges, read from the running table at each scrape: phases switch by the
/// clock, not by an event, and a reload that removes a tenant removes its series.
fn write_tenant_gauges(table: &Table, now: jiff::Timestamp, out: &mut Vec<u8>) {
    const PHASE: &str = "signpost_tenant_phase";
    const HELD: &str = "signpost_tenant_phase_held";
    const SUNSET: &str = "signpost_tenant_sunset_timestamp_seconds";
    exposition::family(
        out,
        PHASE,
        "For tenants with phases: the phase in force, from 1 (0 once the last has ended).",
        "gauge",
    );
    for tenant in table.tenants() {
        let Some(schedule) = tenant.schedule.as_deref().filter(|s| !s.phases.is_empty()) else {
            continue;
        };
        let number = schedule.phase_at(now).map_or(0, |(i, _)| i + 1);
        exposition::sample(out, PHASE, &[("tenant", &tenant.id)], number as i64);
    }
    exposition::family(
        out,
        HELD,
        "1 while a tenant's next phase is due but held by clients the census still hears (after_quiet).",
        "gauge",
    );
    for (tenant, schedule) in table.gated() {
        let holds = schedule.held_at(now).is_some();
        exposition::sample(out, HELD, &[("tenant", &tenant.id)], i64::from(holds));
    }
    exposition::family(
        out,
        SUNSET,
        "For tenants with a sunset date (set, or their final gone phase's start): when.",
        "gauge",
    );
    for tenant in table.tenants() {
        if let Some(at) = tenant.signals.as_ref().and_then(|s| s.sunset_at) {
            exposition::sample(out, SUNSET, &[("tenant", &tenant.id)], at);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
