//! Signpost: a migration gateway that redirects or forwards legacy per-tenant URLs to new
//! shared domains, from hot-reloadable rewrite tables.
//!
//! A request walks one line: listener ([`listen`], [`server`]) → front door ([`front`] for
//! HTTP/1, [`proxy`] on pingora for HTTP/2; both hold it to the rules of [`protocol`]) → host
//! lookup and rule match ([`route`] over the [`table`]) → action ([`action`]: an answer, or a
//! forward to an [`upstream`]) → response → metrics, census and log ([`report`]).
//!
//! Configs are loaded and compiled by [`config`] and swapped in whole by [`reload`];
//! `explain` and `test` ([`explain`]) share [`route`] with the server, so they say what it does.

pub mod acme;
pub mod action;
pub mod admin;
pub mod config;
pub mod deadline;
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
