//! Keeps the addresses of upstreams named by host fresh, in the background, so that the
//! request path never waits for (or fails in) a DNS lookup; see [`crate::upstream`].

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::table::Table;

/// Re-resolves every upstream without a fixed `address`, every 30 s, forever; while some name
/// has never resolved, it retries sooner, backing off from 1 s. Runs on a background runtime,
/// never on the request path.
pub async fn resolve_forever(tables: Arc<ArcSwap<Table>>) {
    const REFRESH: Duration = Duration::from_secs(30);
    let mut retry = Duration::from_secs(1);
    loop {
        let table = tables.load_full();
        let mut missing = false;
        for upstream in table.upstreams().iter().filter(|u| u.address.is_none()) {
            let found = tokio::net::lookup_host(upstream.lookup_name())
                .await
                .map(|mut a| a.next());
            match found {
                Ok(Some(addr)) => upstream.resolved.store(Some(Arc::new(addr))),
                Ok(None) | Err(_) if upstream.resolved.load().is_some() => {
                    tracing::warn!(upstream = %upstream.name, host = %upstream.host, "cannot resolve upstream; keeping its last address");
                }
                Ok(None) | Err(_) => {
                    missing = true;
                    tracing::warn!(upstream = %upstream.name, host = %upstream.host, retry_in = ?retry, "cannot resolve upstream; forwards to it fail with 502");
                }
            }
        }
        drop(table);
        let pause = if missing { retry } else { REFRESH };
        retry = if missing {
            (retry * 2).min(REFRESH)
        } else {
            Duration::from_secs(1)
        };
        tokio::time::sleep(pause).await;
    }
}
