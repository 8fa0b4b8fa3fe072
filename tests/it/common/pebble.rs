//! Let's Encrypt's test CA, Debian's `pebble`, with `pebble-challtestsrv` as its DNS (every
//! name resolves to 127.0.0.1), on free loopback ports. Its API is served with a certificate
//! from a [`TestCa`] of the test's own, which the gateway is told to trust (`acme.ca`).
//! Installed by `scripts/install-deps acme`; a machine without it fails here, never skips.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, TestCa};

pub struct Pebble {
    pebble: Option<Child>,
    dns: Child,
    /// The ACME directory URL.
    pub directory: String,
    /// The PEM file that trusts pebble's API (for `acme.ca`).
    pub api_ca: PathBuf,
    api: SocketAddr,
    management: SocketAddr,
    dns_management: String,
    ca: TestCa,
    _dir: tempfile::TempDir,
}

fn spawn(program: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {program} ({e}): install it with scripts/install-deps acme")
        })
}

impl Pebble {
    /// Pebble validating HTTP-01 challenges on `http_port` of 127.0.0.1 (the gateway's http
    /// listener), issuing certificates valid for `validity` (pebble's default: 5 years).
    pub async fn start(http_port: u16, validity: Option<Duration>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let (cert, key) = ca.issue(&["127.0.0.1", "localhost"]);
        let api_ca = dir.path().join("api-ca.pem");
        std::fs::write(&api_ca, &ca.pem).unwrap();
        std::fs::write(dir.path().join("api.crt"), cert).unwrap();
        std::fs::write(dir.path().join("api.key"), key).unwrap();
        let dns_addr = format!("127.0.0.1:{}", free_port());
        let dns_management = format!("127.0.0.1:{}", free_port());
        let dns = spawn(
            "pebble-challtestsrv",
            &[
                "-dns01",
                &dns_addr,
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &dns_management,
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ],
            &[],
        );
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let management: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut config = serde_json::json!({ "pebble": {
            "listenAddress": api.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": dir.path().join("api.crt"),
            "privateKey": dir.path().join("api.key"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(validity) = validity {
            config["pebble"]["certificateValidityPeriod"] = validity.as_secs().into();
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let pebble = spawn(
            "pebble",
            &[
                "-config",
                config_path.to_str().unwrap(),
                "-dnsserver",
                &dns_addr,
            ],
            // No sleeping before validation, no nonces refused at random, no authorization
            // reused from an earlier order: every order proves its challenge.
            &[
                ("PEBBLE_VA_NOSLEEP", "1"),
                ("PEBBLE_WFE_NONCEREJECT", "0"),
                ("PEBBLE_AUTHZREUSE", "0"),
            ],
        );
        let pebble = Self {
            pebble: Some(pebble),
            dns,
            directory: format!("https://{api}/dir"),
            api_ca,
            api,
            management,
            dns_management,
            ca,
            _dir: dir,
        };
        pebble.wait_ready().await;
        pebble
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca.pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = self.client().get(&self.directory).send().await;
            if ok.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pebble did not answer at {} within 20 s",
                self.directory
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The root pebble issues under (made at its start), PEM.
    pub async fn root(&self) -> String {
        let url = format!("https://{}/roots/0", self.management);
        let resp = self.client().get(url).send().await.unwrap();
        assert!(
            resp.status().is_success(),
            "pebble's root: {}",
            resp.status()
        );
        resp.text().await.unwrap()
    }

    /// Makes `host` resolve to `ip` for the CA's validation (instead of 127.0.0.1).
    pub async fn resolve(&self, host: &str, ip: &str) {
        let url = format!("http://{}/add-a", self.dns_management);
        let body = serde_json::json!({ "host": format!("{host}."), "addresses": [ip] });
        let resp = (reqwest::Client::new()
            .post(url)
            .body(body.to_string())
            .send()
            .await)
            .unwrap();
        assert!(
            resp.status().is_success(),
            "challtestsrv add-a: {}",
            resp.status()
        );
    }

    /// Stops the CA (its DNS stays): the gateway's next order finds nothing listening.
    pub fn stop(&mut self) {
        if let Some(mut pebble) = self.pebble.take() {
            let _ = pebble.kill();
            let _ = pebble.wait();
        }
        // Nothing answers at its address any more.
        assert!(std::net::TcpStream::connect(self.api).is_err());
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}
