//! HAProxy (Debian's `haproxy`, installed by `scripts/install-deps census`) in front of some
//! gateways, as an operator would run it: round robin, health checks on each gateway's
//! `/-/ready` every 100 ms, and idempotent requests retried on another server when a
//! connection to one is refused or closed unanswered (what a rolling update does).

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct Haproxy {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// One backend server: its proxy (HTTP) address and its admin address for the health check.
pub struct Backend {
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl Haproxy {
    pub fn start(backends: &[Backend]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                format!(
                    "  server r{i} {} check addr {} port {}\n",
                    b.http,
                    b.admin.ip(),
                    b.admin.port()
                )
            })
            .collect();
        let config = format!(
            "global
  maxconn 2000
defaults
  mode http
  timeout connect 1s
  timeout client 20s
  timeout server 20s
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response response-timeout
frontend legacy
  bind {addr}
  default_backend signpost
backend signpost
  balance roundrobin
  option httpchk
  http-check send meth GET uri /-/ready ver HTTP/1.1 hdr Host admin
  default-server inter 100ms fall 1 rise 2
{servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("haproxy could not start ({e}): run scripts/install-deps census")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "haproxy did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Haproxy {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
