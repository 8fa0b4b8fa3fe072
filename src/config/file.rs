//! What users write: serde mirrors of the YAML, nothing more.
//!
//! Every struct denies unknown fields so a typo is an error with a line number, never a silently
//! ignored setting. No `#[serde(flatten)]` anywhere: it disables `deny_unknown_fields`.
//! Values are kept as written (strings for templates, hosts and dates); `build` gives them
//! meaning and reports what is wrong with them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The main config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub listen: FileListen,
    #[serde(default)]
    pub server: FileServer,
    pub tls: Option<FileTls>,
    pub acme: Option<FileAcme>,
    #[serde(default)]
    pub admin: FileAdmin,
    #[serde(default)]
    pub census: FileCensus,
    #[serde(default)]
    pub log: FileLog,
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, FileUpstream>,
    #[serde(default)]
    pub profiles: BTreeMap<String, FileProfile>,
    #[serde(default)]
    pub tenants: Vec<FileTenant>,
}

/// `log:`: where the access log goes and in which format.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    /// `stderr` (default), `off`, or a file path (reopened on `SIGUSR1`).
    pub access: Option<String>,
    pub format: Option<AccessFormat>,
}

/// One line per request as JSON, or nginx/Apache "combined" plus Signpost's labels.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessFormat {
    #[default]
    Json,
    Combined,
}

/// A file named by `include:`: tenants and profiles only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInclude {
    #[serde(default)]
    pub profiles: BTreeMap<String, FileProfile>,
    #[serde(default)]
    pub tenants: Vec<FileTenant>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileListen {
    #[serde(default, deserialize_with = "listen_address")]
    pub http: Option<SocketAddr>,
    #[serde(default, deserialize_with = "listen_address")]
    pub https: Option<SocketAddr>,
    #[serde(default, deserialize_with = "listen_address")]
    pub admin: Option<SocketAddr>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServer {
    pub threads: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub grace_period: Option<Duration>,
    pub upgrade_sock: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub header_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub body_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub keepalive_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub certs: String,
}

/// `acme:`: certificates for the table's hosts from an ACME CA (Let's Encrypt by default).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAcme {
    /// The account's contact: the CA writes here about expiring certificates and policy.
    pub email: String,
    /// The CA's directory URL.
    pub directory: Option<String>,
    /// Trust roots (PEM) for the directory's own certificate: a private or test CA.
    pub ca: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    pub token_file: Option<String>,
}

/// The legacy-client census (see `report::census`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCensus {
    /// `false` turns the census off (metrics and logs stay); default `true`.
    pub enabled: Option<bool>,
    /// Where the census is saved periodically and at shutdown, and restored from at start;
    /// `off` keeps it in memory only. Default: `$STATE_DIRECTORY/census.json`, else
    /// `$XDG_STATE_HOME/signpost/census.json`, else `~/.local/state/signpost/census.json`.
    pub state_file: Option<String>,
    /// Rows not seen for this long are dropped from the state file; default 90 days.
    #[serde(default, deserialize_with = "duration")]
    pub retention: Option<Duration>,
    /// Clients kept (least recently seen evicted first); default 10 000.
    pub max_clients: Option<usize>,
    /// Clients exported as `signpost_legacy_client_last_seen_timestamp_seconds`; default 100.
    pub metric_clients: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    pub snapshot_interval: Option<Duration>,
    /// Peers whose `X-Forwarded-For` first hop is taken as the client address.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Headers that carry an API key identifying the client (fingerprinted, never stored).
    #[serde(default)]
    pub api_key_headers: Vec<String>,
    /// Basic and Digest user names on the report: `clear` (default) or `hashed`.
    pub user_names: Option<UserNames>,
    /// One census for a fleet, in PostgreSQL.
    pub store: Option<FileCensusStore>,
}

/// `census.store`: where the replicas of a fleet keep one census.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCensusStore {
    /// `postgresql://USER@HOST:PORT/DB[?sslmode=…]`, without a password.
    pub url: String,
    pub password_file: Option<String>,
    /// Trust roots for the database's certificate: TLS is then required and verified.
    pub ca: Option<String>,
    /// This replica's name in the store; default: the host name.
    pub instance: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub flush_interval: Option<Duration>,
    /// Rows not seen for this long are pruned from the store; default `census.retention`.
    #[serde(default, deserialize_with = "duration")]
    pub retention: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserNames {
    Clear,
    Hashed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub url: String,
    pub address: Option<SocketAddr>,
    pub ca: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    pub read_timeout: Option<Duration>,
}

#[derive(Debug, Hash, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProfile {
    pub fallback: Option<FileFallback>,
    #[serde(default)]
    pub rules: Vec<FileRule>,
}

/// What happens when no rule matches: an action without a pattern.
#[derive(Debug, Hash, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFallback {
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "redirect")]
    pub redirect: Option<FileRedirect>,
    pub forward: Option<FileForward>,
    #[serde(default, deserialize_with = "gone")]
    pub gone: Option<FileGone>,
}

#[derive(Debug, Hash, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRule {
    pub name: String,
    pub kind: Option<String>,
    #[serde(rename = "match")]
    pub pattern: String,
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub redact: Vec<String>,
    #[serde(default, deserialize_with = "redirect")]
    pub redirect: Option<FileRedirect>,
    pub forward: Option<FileForward>,
    #[serde(default, deserialize_with = "gone")]
    pub gone: Option<FileGone>,
}

#[derive(Debug, Hash, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTenant {
    pub id: String,
    pub customer_number: Option<String>,
    /// Whom to call about this tenant's stragglers (free text, shown on the report).
    pub contact: Option<String>,
    pub hosts: Vec<String>,
    pub profile: String,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    pub deprecation: Option<String>,
    pub sunset: Option<String>,
    #[serde(default)]
    pub rules: Vec<FileRule>,
    /// The migration schedule, in time order (see `table::Schedule`).
    #[serde(default)]
    pub phases: Vec<FilePhase>,
    #[serde(default)]
    pub brownouts: Vec<FileBrownout>,
}

/// One phase of a tenant's move: until `until` (the last may leave it out), either the rules
/// (`rules: profile`) or one action for every request.
#[derive(Debug, Hash, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePhase {
    pub until: Option<String>,
    pub kind: Option<String>,
    pub rules: Option<String>,
    #[serde(default, deserialize_with = "redirect")]
    pub redirect: Option<FileRedirect>,
    pub forward: Option<FileForward>,
    #[serde(default, deserialize_with = "gone")]
    pub gone: Option<FileGone>,
    /// Start only once the census has heard no client of these kinds for this long.
    pub after_quiet: Option<FileQuiet>,
}

/// `after_quiet: { kinds: [api], for: 14d }`.
#[derive(Debug, Hash, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileQuiet {
    pub kinds: Vec<String>,
    #[serde(rename = "for", default, deserialize_with = "duration")]
    pub quiet: Option<Duration>,
}

/// A window in which the tenant's legacy routes (those of `kinds`, or all) answer `410`.
#[derive(Debug, Hash, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBrownout {
    pub from: String,
    pub until: String,
    #[serde(default)]
    pub kinds: Vec<String>,
    pub message: Option<String>,
}

/// `redirect: TEMPLATE` or `redirect: { to: TEMPLATE, status: 308, keep_query: false }`.
#[derive(Debug, Hash, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRedirect {
    pub to: String,
    pub status: Option<u16>,
    pub keep_query: Option<bool>,
}

#[derive(Debug, Hash, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileForward {
    pub upstream: String,
    pub path: Option<String>,
}

/// `gone: true` or `gone: { message: TEXT }`.
#[derive(Debug, Hash, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGone {
    pub message: Option<String>,
}

/// Accepts a plain string as shorthand for `{ to: STRING }`, and otherwise the full mapping,
/// keeping its `deny_unknown_fields` errors (an untagged enum would swallow them).
fn redirect<'de, D: Deserializer<'de>>(de: D) -> Result<Option<FileRedirect>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = FileRedirect;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a URL template, or a mapping with `to`, `status`, `keep_query`")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<FileRedirect, E> {
            Ok(FileRedirect {
                to: s.to_owned(),
                status: None,
                keep_query: None,
            })
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileRedirect, A::Error> {
            FileRedirect::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    de.deserialize_any(V).map(Some)
}

/// Accepts `true` as shorthand for the default page, and otherwise `{ message: TEXT }`.
fn gone<'de, D: Deserializer<'de>>(de: D) -> Result<Option<FileGone>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = FileGone;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`true` or a mapping with `message`")
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<FileGone, E> {
            match b {
                true => Ok(FileGone::default()),
                false => Err(E::custom("`gone: false` means nothing; leave `gone` out")),
            }
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileGone, A::Error> {
            FileGone::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    de.deserialize_any(V).map(Some)
}

/// A listener as nginx's `listen` takes it: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT`,
/// `*:PORT` (every address) or a port alone (every address, as nginx reads `listen 80`).
fn listen_address<'de, D: Deserializer<'de>>(de: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = match serde_yaml::Value::deserialize(de)? {
        serde_yaml::Value::String(s) => s,
        serde_yaml::Value::Number(n) => n.to_string(),
        other => {
            let why =
                format!("expected an address and port such as 127.0.0.1:8080, found {other:?}");
            return Err(de::Error::custom(why));
        }
    };
    parse_listen_address(&text)
        .map(Some)
        .map_err(de::Error::custom)
}

pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let port_of = |p: &str| p.parse::<u16>().ok();
    let host_port = text.rsplit_once(':');
    let addr = match host_port {
        None => port_of(text).map(|port| SocketAddr::from(([0, 0, 0, 0], port))),
        Some(("localhost", port)) => {
            port_of(port).map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        }
        Some(("*" | "", port)) => port_of(port).map(|port| SocketAddr::from(([0, 0, 0, 0], port))),
        Some(_) => None,
    };
    addr.ok_or_else(|| {
        format!("`{text}` is not a listen address: write IP:PORT (127.0.0.1:8080, [::1]:8080, 0.0.0.0:80), localhost:PORT, *:PORT or a port alone")
    })
}

/// Durations are written `500ms`, `2s`, `1m`.
fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(de)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        de::Error::custom(format!(
            "invalid duration {text:?} ({e}); write e.g. 500ms, 2s, 1m"
        ))
    })
}
