//! Config errors: each names the file, the line and what is wrong.

use std::fmt;
use std::path::PathBuf;

use crate::table::pattern::PatternError;
use crate::table::template::TemplateError;
use crate::upstream::UpstreamError;

/// What is wrong, without where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("cannot read: {0}")]
    Read(String),
    #[error("{0}")]
    Syntax(String),
    #[error("include `{pattern}`: {reason}")]
    Include { pattern: String, reason: String },
    #[error("`listen` needs `http` or `https` (or both)")]
    NoListener,
    #[error("`listen.https` needs certificates: a `tls:` section with `certs`, or `acme:`")]
    HttpsWithoutTls,
    #[error("acme: {0}")]
    Acme(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("census.store: {0}")]
    CensusStore(String),
    #[error("invalid variable name `{0}`")]
    VarName(String),
    #[error("upstream `{name}`: {error}")]
    Upstream { name: String, error: UpstreamError },
    #[error("profile `{name}` is also defined in {other}")]
    DuplicateProfile { name: String, other: String },
    #[error("tenant `{id}` is defined twice")]
    DuplicateTenant { id: String },
    #[error("invalid tenant id `{id}`: use letters, digits, `_`, `-`, `.`")]
    TenantId { id: String },
    #[error("tenant `{tenant}`: unknown profile `{profile}`")]
    UnknownProfile { tenant: String, profile: String },
    #[error("tenant `{tenant}`: invalid host `{host}`")]
    BadHost { tenant: String, host: String },
    #[error("host `{host}` belongs to tenant `{first}` and to tenant `{second}`")]
    DuplicateHost {
        host: String,
        first: String,
        second: String,
    },
    #[error("tenant `{tenant}`: a rule uses {{tenant.customer_number}} but the tenant has no `customer_number`")]
    NoCustomerNumber { tenant: String },
    #[error(
        "tenant `{tenant}`: `{field}: {value}` is not a date (2025-10-01) or an RFC 3339 time"
    )]
    Date {
        tenant: String,
        field: &'static str,
        value: String,
    },
    #[error("tenant `{tenant}`: {reason}")]
    Schedule {
        tenant: String,
        reason: &'static str,
    },
    #[error("rule `{rule}`: {error}")]
    Pattern { rule: String, error: PatternError },
    #[error("rule `{rule}`: {error}")]
    Template { rule: String, error: TemplateError },
    #[error("rule `{rule}`: unknown upstream `{upstream}`")]
    UnknownUpstream { rule: String, upstream: String },
    #[error("rule `{rule}`: {reason}")]
    Action { rule: String, reason: &'static str },
    #[error("rule `{rule}`: redirect status {status} is not one of 301, 302, 303, 307, 308")]
    Status { rule: String, status: u16 },
    #[error("rule `{rule}`: invalid method `{method}`")]
    Method { rule: String, method: String },
    #[error("rule `{rule}`: `redact` names `{name}`, which is not a capture of its pattern")]
    Redact { rule: String, name: String },
    #[error("rule name `{rule}` is used twice in the same rule set")]
    DuplicateRule { rule: String },
    #[error("rule `{rule}` would match the same requests as rule `{other}` (same pattern, overlapping methods)")]
    Conflict { rule: String, other: String },
}

/// A problem at a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub problem: Problem,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_place(f, &self.file, self.line)?;
        write!(f, "{}", self.problem)
    }
}

/// `FILE:LINE: ` (or `FILE: ` without a line), in front of every error and warning.
fn write_place(
    f: &mut fmt::Formatter<'_>,
    file: &std::path::Path,
    line: Option<usize>,
) -> fmt::Result {
    match line {
        Some(line) => write!(f, "{}:{line}: ", file.display()),
        None => write!(f, "{}: ", file.display()),
    }
}

/// Something that loads, but that some legacy clients will not survive: `check` prints it as
/// `FILE:LINE: warning: …` (and fails on it with `--deny-warnings`); a reload logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub text: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_place(f, &self.file, self.line)?;
        write!(f, "warning: {}", self.text)
    }
}

/// Every problem found in one load; a config with any is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
