//! `signpost init`: a ready config for one self-hosted tenant.
//!
//! A self-hosted customer has one server and one old address. The config is the bundled
//! example's `vars`, `upstreams` and `flexhrm` profile (one source of truth, embedded at build
//! time) with the customer's tenant; with `--onprem`, a first phase forwards everything to the
//! customer's old server until the move. The text is validated exactly as `check` does before
//! it is written, and an existing file is never overwritten (but for the Debian package's
//! untouched starting point, [`PACKAGED_STARTING_POINT`]).

use std::path::{Path, PathBuf};

use crate::config;

const EXAMPLE: &str = include_str!("../config/example.yaml");

/// What `init` was asked for.
#[derive(Debug, Clone)]
pub struct InitRequest {
    /// The customer's old address, e.g. `hrm.exempel.com`.
    pub host: String,
    pub customer_number: String,
    /// The old server, forwarded to until `move_at`.
    pub onprem: Option<String>,
    /// When the tenant moves (RFC 3339); only with `onprem`.
    pub move_at: Option<String>,
    /// A folder of `NAME.crt` + `NAME.key` pairs: adds the HTTPS listener.
    pub certs: Option<PathBuf>,
    /// The contact for an ACME account: adds the HTTPS listener with certificates by ACME
    /// (Let's Encrypt), for the host no `certs` covers.
    pub acme: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} exists already; choose another --output or move it away")]
    Exists(PathBuf),
    #[error("the generated config does not load:\n{0}")]
    Invalid(config::error::ConfigErrors),
    #[error("no certificate in {dir} covers {host}: add its NAME.crt + NAME.key there, or use --acme EMAIL to have one issued")]
    Uncovered { host: String, dir: PathBuf },
    #[error("--move-at {0} is in the past: the old server would never be forwarded to. Leave --move-at out until the date is known, or give a time to come")]
    MoveInThePast(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A top-level section of the example: from `key:` up to the next top-level key.
fn section(key: &str) -> &'static str {
    let start = EXAMPLE
        .find(&format!("\n{key}:"))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("config/example.yaml has no `{key}:` section"));
    let rest = &EXAMPLE[start..];
    let end = rest
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .find(|&i| rest[i..].starts_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The config text for `req`.
pub fn render(req: &InitRequest) -> String {
    let id = req.host.trim_end_matches('.').to_ascii_lowercase();
    let mut out = format!(
        "# Signpost for {host}: written by `signpost init`. Check changes with\n\
         #   signpost check --config THIS_FILE\n\
         # Paths are relative to this file. Reference: README.md, \"Configuration reference\".\n\
         listen:\n  http: 0.0.0.0:80\n",
        host = req.host
    );
    out.push_str(if req.certs.is_some() || req.acme.is_some() {
        "  https: 0.0.0.0:443\n"
    } else {
        "  # https: 0.0.0.0:443          # add with `acme: { email: … }`, or `tls: { certs: FOLDER }` of NAME.crt + NAME.key\n"
    });
    out.push_str("  admin: 127.0.0.1:9090\nserver:\n  grace_period: 10s\n");
    if let Some(dir) = &req.certs {
        out.push_str(&format!("tls:\n  certs: {}\n", dir.display()));
    }
    if let Some(email) = &req.acme {
        out.push_str(&format!(
            "# Certificates for the hosts below from Let's Encrypt, proved on port 80 (HTTP-01) and\n\
             # renewed by themselves; kept in the state directory's acme/ folder.\n\
             acme:\n  email: {email}\n"
        ));
    }
    out.push_str(section("vars"));
    out.push_str(&without_stand_in(section("upstreams")));
    if let Some(onprem) = &req.onprem {
        out.push_str(&format!(
            "  onprem:                      # your old server, until the move\n    url: {onprem}\n"
        ));
    }
    out.push_str(section("profiles"));
    out.push_str(&format!(
        "tenants:\n  - id: {id}\n    customer_number: \"{number}\"\n    hosts: [{host}]\n    profile: flexhrm\n",
        number = req.customer_number,
        host = req.host
    ));
    if req.onprem.is_some() {
        out.push_str("    phases:\n");
        match &req.move_at {
            Some(at) => out.push_str(&format!(
                "      - until: {at}          # before the move: everything still goes to the old server\n        forward: {{ upstream: onprem }}\n      - rules: profile                   # from the move on: the new addresses\n"
            )),
            None => out.push_str(
                "      # Until the move date is known, everything goes to the old server. Then give this\n      # phase `until: <RFC 3339 time>` and add `- rules: profile` after it.\n      - forward: { upstream: onprem }\n",
            ),
        }
    }
    out
}

/// `text` (the example, or part of it) without the quick start's local stand-in for the new
/// domains: every line that names it is left out, and the upstreams reach the real domains.
pub fn without_stand_in(text: &str) -> String {
    let lines = text.lines().filter(|l| !l.contains("stand-in"));
    lines.flat_map(|l| [l, "\n"]).collect()
}

/// The Debian package's `/etc/signpost/signpost.yaml`: a starting point that routes nothing,
/// which `init` writes over. Only byte for byte: a config anyone has edited is never replaced.
pub const PACKAGED_STARTING_POINT: &str = include_str!("../deploy/debian/signpost.yaml");

/// Renders, validates and writes the config to `output`; returns the text written. An
/// existing file is refused, unless it is the package's untouched starting point.
///
/// `--certs` is taken as the shell gave it (relative to the working directory) and written
/// absolute; its certificates must cover the host. A `--move-at` in the past is refused.
pub fn write(req: &InitRequest, output: &Path) -> Result<String, InitError> {
    let starting_point =
        std::fs::read(output).is_ok_and(|text| text == PACKAGED_STARTING_POINT.as_bytes());
    if output.exists() && !starting_point {
        return Err(InitError::Exists(output.to_owned()));
    }
    if let Some(at) = &req.move_at {
        let parsed = at.parse::<jiff::Timestamp>();
        if parsed.is_ok_and(|t| t < jiff::Timestamp::now()) {
            return Err(InitError::MoveInThePast(at.clone()));
        }
    }
    let req = InitRequest {
        certs: req.certs.as_deref().map(std::path::absolute).transpose()?,
        ..req.clone()
    };
    let text = render(&req);
    // Validate beside the target, so that every path resolves as it will.
    let name = output.file_name().unwrap_or_default().to_string_lossy();
    let probe = Probe(output.with_file_name(format!(".{name}.init-check")));
    std::fs::write(&probe.0, &text)?;
    let loaded = config::load(&probe.0, None).map_err(|mut errors| {
        // Named as the file the user asked for: the probe is gone when they read this.
        for e in errors.0.iter_mut().filter(|e| e.file == probe.0) {
            e.file = output.to_owned();
        }
        InitError::Invalid(errors)
    })?;
    drop(probe);
    if let (Some(dir), Some(store)) = (&req.certs, &loaded.certs) {
        let host = req.host.trim_end_matches('.').to_ascii_lowercase();
        if !store.covers(&host) {
            return Err(InitError::Uncovered {
                host: req.host.clone(),
                dir: dir.clone(),
            });
        }
    }
    std::fs::write(output, &text)?;
    Ok(text)
}

/// The file `init` validates before writing the real one: removed whatever happens.
struct Probe(PathBuf);

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_starting_point_loads_and_is_replaced_but_an_edited_config_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signpost.yaml");
        std::fs::write(&path, PACKAGED_STARTING_POINT).unwrap();
        let loaded = config::load(&path, None).unwrap();
        assert!(loaded.table.tenants().is_empty());
        let text = write(&request(false, None), &path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        let edited = format!("{PACKAGED_STARTING_POINT}# mine\n");
        std::fs::write(&path, &edited).unwrap();
        assert!(matches!(
            write(&request(false, None), &path),
            Err(InitError::Exists(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);
    }

    fn request(onprem: bool, move_at: Option<&str>) -> InitRequest {
        InitRequest {
            host: "hrm.exempel.com".into(),
            customer_number: "5678".into(),
            onprem: onprem.then(|| "https://old-server.internal".into()),
            move_at: move_at.map(Into::into),
            certs: None,
            acme: None,
        }
    }

    #[test]
    fn sections_of_the_example_are_whole() {
        assert!(section("vars").starts_with("vars:\n") && section("vars").contains("timeclock:"));
        assert!(
            section("upstreams").starts_with("upstreams:\n")
                && !section("upstreams").contains("profiles:")
        );
        let profiles = section("profiles");
        assert!(
            profiles.contains("ip1-callback") && !profiles.contains("tenants:"),
            "{profiles}"
        );
    }

    #[test]
    fn the_config_routes_the_customers_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signpost.yaml");
        write(&request(false, None), &path).unwrap();
        let table = config::load(&path, None).unwrap().table;
        let e = crate::explain::explain(
            &table,
            "GET",
            "https://hrm.exempel.com/Timeclock/Lager",
            &[],
            None,
        )
        .unwrap();
        assert_eq!(
            e.location.as_deref(),
            Some("https://timeclock.flexhrm.com/Lager/5678")
        );
        assert!(matches!(
            write(&request(false, None), &path),
            Err(InitError::Exists(_))
        ));
    }

    #[test]
    fn onprem_forwards_everything_until_the_move() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signpost.yaml");
        write(&request(true, Some("2099-03-01T18:00:00+01:00")), &path).unwrap();
        let table = config::load(&path, None).unwrap().table;
        let at = |time: &str| {
            crate::explain::explain(
                &table,
                "GET",
                "https://hrm.exempel.com/HRM/Start",
                &[],
                Some(time.parse().unwrap()),
            )
            .unwrap()
        };
        let before = at("2099-03-01T16:59:59Z");
        assert_eq!(
            (before.action, before.url.as_deref()),
            ("forward", Some("https://old-server.internal/HRM/Start"))
        );
        assert_eq!(at("2099-03-01T17:00:00Z").action, "redirect");
        // Without a date: forwarded until someone sets one.
        let undated = dir.path().join("undated.yaml");
        write(&request(true, None), &undated).unwrap();
        assert!(render(&request(true, None)).contains("- forward: { upstream: onprem }"));
    }

    #[test]
    fn a_bad_value_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signpost.yaml");
        let mut bad = request(true, Some("next spring"));
        let err = write(&bad, &path).unwrap_err().to_string();
        assert!(err.contains("`until` is not an RFC 3339 time"), "{err}");
        assert!(!path.exists());
        bad = request(false, None);
        bad.host = "not a host".into();
        assert!(write(&bad, &path).is_err());
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no probe file left behind"
        );
    }
}
