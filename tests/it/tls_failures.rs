//! Clients that never reach HTTP: real `openssl s_client` handshakes that fail (a TLS 1.0-only
//! client, no shared cipher suite, no SNI, a name not in the table, a host no certificate
//! covers) are counted by tenant and reason and listed in the census as kind `tls`; a good
//! handshake is not, and neither is a connection that sends nothing.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_yaml::Value;

use crate::common::{repo, Gateway};

/// One `openssl s_client` handshake against `gw`'s https listener, verifying the certificate
/// for `verify` against the development CA: whether it succeeded.
fn s_client(gw: &Gateway, sni: Option<&str>, verify: &str, extra: &[&str]) -> bool {
    let ca = repo().join("certs/dev-ca/ca.pem");
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &gw.https.to_string()])
        .args([
            "-verify_return_error",
            "-verify_hostname",
            verify,
            "-CAfile",
        ])
        .arg(&ca)
        .args(extra);
    match sni {
        Some(name) => cmd.args(["-servername", name]),
        None => cmd.arg("-noservername"),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (Debian's openssl package)");
    child.stdin.take().unwrap().write_all(b"").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.contains("Verify return code: 0 (ok)") && out.status.success()
}

/// A failing handshake: (SNI, the name the client verifies, openssl options, tenant, reason).
type Case<'a> = (Option<&'a str>, &'a str, &'a [&'a str], &'a str, &'a str);

fn failures(gw: &Gateway, tenant: &str, reason: &str) -> f64 {
    gw.metric(&format!(
        "signpost_tls_handshake_failures_total{{reason=\"{reason}\",tenant=\"{tenant}\"}}"
    ))
}

#[tokio::test]
async fn failed_handshakes_are_counted_and_listed_by_tenant_and_reason() {
    let gw = Gateway::start_with(|config, _| {
        // A tenant host that no certificate in certs/ covers.
        let tenant: Value = serde_yaml::from_str(
            "{ id: nocert, customer_number: '42', hosts: [legacy.example.net], profile: flexhrm }",
        )
        .unwrap();
        config["tenants"].as_sequence_mut().unwrap().push(tenant);
    });
    let acme = "acme.flexhosting.se";
    // A good handshake, and a connection that sends nothing: neither is a failure.
    assert!(s_client(&gw, Some(acme), acme, &[]), "a good handshake");
    drop(std::net::TcpStream::connect(gw.https).unwrap());

    let cases: [Case; 5] = [
        (
            Some(acme),
            acme,
            &["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"],
            "acme",
            "protocol_version",
        ),
        (
            Some(acme),
            acme,
            &["-tls1_2", "-cipher", "AES128-SHA256"],
            "acme",
            "no_shared_cipher",
        ),
        (None, acme, &[], "_none", "no_sni"),
        (
            Some("nobody.example.org"),
            "nobody.example.org",
            &[],
            "_unknown",
            "unknown_sni",
        ),
        (
            Some("legacy.example.net"),
            "legacy.example.net",
            &[],
            "nocert",
            "no_certificate",
        ),
    ];
    for (sni, verify, extra, tenant, reason) in cases {
        assert!(
            !s_client(&gw, sni, verify, extra),
            "{reason}: handshake failed"
        );
        let counted = gw.metric_when(
            &format!(
                "signpost_tls_handshake_failures_total{{reason=\"{reason}\",tenant=\"{tenant}\"}}"
            ),
            |n| n >= 1.0,
        );
        assert_eq!(counted, 1.0, "{reason} for {tenant}");
    }
    let metrics = gw.admin("/metrics").1;
    let total: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("signpost_tls_handshake_failures_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 5.0, "only the five failures: {metrics}");
    assert_eq!(failures(&gw, "acme", "other"), 0.0);

    // The census lists them, so the outreach sees clients that never sent a request.
    std::thread::sleep(Duration::from_millis(1200));
    let report: serde_json::Value = serde_json::from_str(&gw.admin("/stragglers.json").1).unwrap();
    let tls: Vec<&serde_json::Value> = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "tls")
        .collect();
    assert_eq!(tls.len(), 5, "{report:#}");
    let old = tls
        .iter()
        .find(|r| {
            r["client"]["user_agent"]
                .as_str()
                .unwrap()
                .contains("TLS 1.0")
        })
        .expect("the TLS 1.0 client's row");
    assert_eq!(old["tenant"], "acme");
    assert_eq!(old["customer_number"], "1234");
    assert_eq!(old["client"]["address"], "127.0.0.1");
    assert_eq!(old["last_path"], "sni:acme.flexhosting.se");
    assert!(
        old["client"]["user_agent"]
            .as_str()
            .unwrap()
            .contains("protocol_version"),
        "{old:#}"
    );
    let no_sni = tls.iter().find(|r| r["tenant"] == "_none").unwrap();
    assert_eq!(no_sni["last_path"], "(no SNI)");
    // Plain HTTP on the https port is a failure too, with no ClientHello to list.
    let _ = crate::common::raw::blocking_exchange(
        gw.https,
        b"GET / HTTP/1.1\r\nHost: acme.flexhosting.se\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(
        gw.metric_when(
            "signpost_tls_handshake_failures_total{reason=\"other\",tenant=\"_none\"}",
            |n| n >= 1.0
        ),
        1.0
    );
}
