//! Listeners: all bound before `/-/ready` says 200, and a listener that cannot be bound ends
//! the process at once with exit code 1 and a message naming the address (no retries, no
//! process left running without its listener).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::Value;

use crate::common::{repo, Gateway};

#[test]
fn a_listener_address_in_use_ends_the_process_with_exit_1_naming_it() {
    for role in ["http", "https", "admin"] {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::common::example_config();
        for listener in ["http", "https", "admin"] {
            config["listen"][listener] = Value::from("127.0.0.1:0");
        }
        config["listen"][role] = Value::from(addr.to_string());
        config["tls"]["certs"] = Value::from(repo().join("certs").to_str().unwrap());
        let path = dir.path().join("signpost.yaml");
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();

        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_signpost"))
            .args(["run", "--config"])
            .arg(&path)
            .env("STATE_DIRECTORY", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                panic!("{role}: still running 5 s after its address {addr} was found taken");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(1), "{role}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{role}: took {:?}",
            started.elapsed()
        );
        let says = format!("cannot listen on {addr} (listen.{role})");
        assert!(stderr.contains(&says), "{role}: {stderr}");
        assert!(!stderr.contains("panicked"), "{role}: {stderr}");
        drop(taken);
    }
}

/// When `/-/ready` first says 200, each listener accepts and answers.
#[tokio::test]
async fn ready_means_every_listener_answers() {
    let gw = Gateway::start_example(None);
    for scheme in ["http", "https"] {
        let resp = gw
            .get(&format!("{scheme}://acme.flexhosting.se/Timeclock"))
            .await;
        assert_eq!(resp.status(), 307, "{scheme}");
    }
    assert_eq!(gw.admin("/-/ready").0, 200);
}
