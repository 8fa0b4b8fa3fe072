//! The integration tests' harness: the real `signpost` binary on ports the kernel picks
//! ([`gateway`]), real HTTPS upstream stand-ins ([`upstream`]), a CA made per run ([`ca`]),
//! raw HTTP/1 and HTTP/2 exchanges for what a client library would not send ([`raw`],
//! [`h2`]), and clients that keep traffic flowing while a test changes things ([`traffic`]).
//! No fixed ports, no sleeping for a fixed time where readiness can be waited for.
#![allow(dead_code)] // each test module uses its own part of the harness

pub mod ca;
pub mod gateway;
pub mod h2;
pub mod haproxy;
pub mod pebble;
pub mod postgres;
pub mod raw;
pub mod traffic;
pub mod upstream;

use std::net::TcpListener;
use std::path::PathBuf;

mod load;

pub use ca::TestCa;
pub use gateway::{Gateway, Log};
pub use load::alone;
pub use raw::content_length;
pub use traffic::Traffic;
pub use upstream::{Seen, Upstream, STREAMED, UPSTREAM_BODY};

pub const EXAMPLE_HOSTS: [&str; 4] = [
    "acme.flexhosting.se",
    "hrm.exempel.com",
    "exempel.com",
    "unknown.example.org",
];

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `config/example.yaml`, its relative paths (`tls.certs`, the upstreams' `ca`) made absolute so
/// that it can be written anywhere.
pub fn example_config() -> serde_yaml::Value {
    let base = repo().join("config");
    let text = std::fs::read_to_string(base.join("example.yaml")).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let absolute = |v: &serde_yaml::Value| {
        serde_yaml::Value::from(base.join(v.as_str().unwrap()).to_str().unwrap())
    };
    config["tls"]["certs"] = absolute(&config["tls"]["certs"]);
    for (_, upstream) in config["upstreams"].as_mapping_mut().unwrap().iter_mut() {
        if upstream.get("ca").is_some() {
            upstream["ca"] = absolute(&upstream["ca"]);
        }
    }
    config
}

/// The shared expectation vectors, beside the checkout.
pub fn vectors_path() -> PathBuf {
    repo().join("../shared/vectors/flexhrm.yaml")
}

/// A port for a program that cannot report the port it bound (nginx, in the client matrix):
/// chosen by the kernel, then released for that program to take. Signpost itself is always
/// started on port 0.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback address where nothing listens: connections to it are refused. It is on
/// 127.0.0.2, where no test listens, so no other test can take the port meanwhile.
pub fn closed_port() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.2:0").unwrap();
    listener.local_addr().unwrap()
}

/// DNS names of the certificate a response came over.
pub fn served_names(resp: &reqwest::Response) -> Vec<String> {
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("TLS info");
    let der = info.peer_certificate().expect("peer certificate");
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}
