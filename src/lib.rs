//! Signpost: a migration gateway that redirects or forwards legacy per-tenant URLs to new
//! shared domains, from hot-reloadable rewrite tables.
//!
//! A request walks one line: listener ([`server`]) → host lookup and rule match ([`table`],
//! [`route`]) → action (redirect | forward | gone) → response ([`proxy`]). Configs are loaded
//! and compiled by [`config`]; `explain` and `test` ([`explain`]) share [`route`] with the server.

pub mod action;
pub mod admin;
pub mod config;
pub mod explain;
pub mod front;
pub mod init;
pub mod listen;
pub mod protocol;
pub mod proxy;
pub mod reload;
pub mod report;
pub mod resolver;
pub mod route;
pub mod server;
pub mod table;
pub mod tls;
pub mod upstream;
