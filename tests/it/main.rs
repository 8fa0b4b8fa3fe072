//! Signpost's integration tests: the real binary on free loopback ports, real clients, real
//! upstream stand-ins. One test binary (the proxy is linked once), one module per concern, all
//! sharing the harness in [`common`].

mod common;

mod access_log;
mod acme;
mod admin_surface;
mod census;
mod census_store;
mod cli;
mod client_matrix;
mod deadlines;
mod deploy;
mod dot_segments;
mod explain_agrees;
mod gateway;
mod hostile_requests;
mod hygiene;
mod listeners;
mod no_open_redirect;
mod operator_faults;
mod phases;
mod quick_start;
mod reload;
mod shutdown;
mod stragglers_page;
mod tls_failures;
mod upstream_faults;
mod websocket;
