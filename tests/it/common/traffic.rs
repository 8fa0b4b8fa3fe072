//! Clients that GET one URL in a loop while a test changes things underneath (a reload, a
//! certificate swap), counting every answer that is not the expected redirect.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::net::SocketAddr;

use super::gateway::{client_to, url_at};
use super::Gateway;

/// Clients that GET one URL in a loop while a test changes things underneath, and count every
/// answer that is not a 307 to one of the `valid` locations.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    bad: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    pub fn start(gw: &Gateway, url: &str, clients: usize, valid: &[String]) -> Self {
        let scheme = url.split(':').next().unwrap();
        Self::start_at(gw.addr_for(scheme), url, clients, valid)
    }

    /// [`Self::start`] against `addr`, a gateway or a load balancer in front of several.
    pub fn start_at(addr: SocketAddr, url: &str, clients: usize, valid: &[String]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let bad = Arc::new(Mutex::new(Vec::new()));
        let valid: Arc<[String]> = valid.into();
        let url = url_at(url, addr);
        let tasks = (0..clients)
            .map(|_| {
                let (client, url, stop, ok, bad, valid) = (
                    client_to(addr),
                    url.clone(),
                    stop.clone(),
                    ok.clone(),
                    bad.clone(),
                    valid.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        match client.get(&url).send().await {
                            Ok(resp) => {
                                let loc = resp
                                    .headers()
                                    .get("location")
                                    .map(|v| v.to_str().unwrap().to_owned());
                                if resp.status() == 307
                                    && loc.as_ref().is_some_and(|l| valid.contains(l))
                                {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    bad.lock()
                                        .unwrap()
                                        .push(format!("{} {loc:?}", resp.status()));
                                }
                            }
                            Err(e) => bad.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            ok,
            bad,
            tasks,
        }
    }

    /// Stops the clients; asserts that none failed and that some got through; how many did.
    pub async fn finish(self, what: &str) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let bad = self.bad.lock().unwrap().clone();
        let ok = self.ok.load(Ordering::Relaxed);
        assert!(
            bad.is_empty(),
            "{what}: {} failed requests after {ok} good ones, e.g. {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
        assert!(ok > 0, "{what}: no request went through");
        ok
    }
}
