//! The `signpost` command line: run | check | explain | test | init | stragglers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use signpost::config;
use signpost::explain::{self, CaseFile};
use signpost::report::census::Report;

/// Examples and where things live, under every `--help`.
const AFTER_HELP: &str = "\
Examples:
  signpost init --host hrm.exempel.com --customer-number 5678 --acme you@exempel.com
  signpost check --config /etc/signpost/signpost.yaml
  signpost explain --config signpost.yaml https://hrm.exempel.com/Timeclock/Lager
  signpost run --config signpost.yaml
  signpost stragglers --admin 127.0.0.1:9090

Where things live:
  config   the file given with --config (the Debian package: /etc/signpost/signpost.yaml);
           paths inside it are relative to it
  state    the census and ACME's account and certificates: $STATE_DIRECTORY (systemd:
           /var/lib/signpost), else $XDG_STATE_HOME/signpost, else ~/.local/state/signpost
  docs     README.md (the Debian package: /usr/share/doc/signpost/README.md)";

#[derive(Parser)]
#[command(
    name = "signpost",
    version,
    about = "Migration gateway: redirects or forwards legacy per-tenant URLs to new shared domains",
    after_help = AFTER_HELP
)]
struct Cli {
    /// The config file (YAML).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format of `run`: one human-readable line or one JSON object per event.
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default when only --config is given).
    Run {
        /// Take the listening sockets over from a running instance (graceful upgrade): start
        /// this, then send the old process SIGQUIT. See the README.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate the config: exit 0, or exit 1 printing `FILE:LINE: reason` lines.
    ///
    /// Warnings (`FILE:LINE: warning: …`: answers some legacy clients will not survive, such
    /// as a 302 on a rule that takes POST) leave the exit status 0 unless --deny-warnings.
    Check {
        /// Exit 1 on warnings too.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Print, as JSON, what the server would do with one request.
    Explain {
        /// HTTP method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// A request header, `Name: value`; may be repeated.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// Route as at this instant (RFC 3339, e.g. 2026-03-01T18:00:00+01:00), to preview a
        /// tenant's phases and brownouts; default now.
        #[arg(long)]
        at: Option<String>,
        /// The absolute URL as the client sent it, e.g. https://acme.flexhosting.se/Timeclock
        url: String,
    },
    /// Run expectation cases (the format of shared/vectors/*.yaml); exit 1 on any mismatch.
    Test {
        /// The cases file.
        cases: PathBuf,
    },
    /// Write a ready config for one self-hosted tenant (validated like `check` first).
    Init {
        /// The old address, e.g. hrm.exempel.com
        #[arg(long)]
        host: String,
        /// The Flex HRM customer number.
        #[arg(long)]
        customer_number: String,
        /// Your old server (URL): everything is forwarded there until --move-at.
        #[arg(long)]
        onprem: Option<String>,
        /// When the tenant moves (RFC 3339, e.g. 2027-03-01T18:00:00+01:00); not in the past.
        #[arg(long, requires = "onprem")]
        move_at: Option<String>,
        /// A folder of NAME.crt + NAME.key pairs: adds the HTTPS listener.
        #[arg(long)]
        certs: Option<PathBuf>,
        /// Your e-mail address for Let's Encrypt: adds the HTTPS listener, its certificate
        /// obtained and renewed by ACME (port 80 must reach this server).
        #[arg(long, value_name = "EMAIL")]
        acme: Option<String>,
        /// Where to write the config; an existing file is never overwritten (but for the Debian
        /// package's untouched /etc/signpost/signpost.yaml).
        #[arg(long, default_value = "signpost.yaml")]
        output: PathBuf,
    },
    /// Print the legacy-traffic report of a running instance as a table or CSV, or erase
    /// one client's rows.
    Stragglers {
        /// The admin listener: http://127.0.0.1:9090 or 127.0.0.1:9090
        #[arg(long)]
        admin: String,
        /// The file holding the admin bearer token (`admin.token_file`).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Print CSV for a spreadsheet instead of a table.
        #[arg(long, conflicts_with = "forget")]
        csv: bool,
        /// Erase every row of this client (its id from the report).
        #[arg(long)]
        forget: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// mimalloc returns memory freed by a reload to the OS; glibc's per-thread arenas kept the
/// old table's pages (RSS tripled after three 100 000-tenant reloads).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Huge pages only for the tables read at random: everywhere, a 100 000-tenant reload took
    // 0.38–0.57 s where it took 0.28–0.30 s without them, and RSS was higher.
    signpost::table::huge::only_where_advised();
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Stragglers {
            admin,
            token_file,
            csv,
            forget,
        }) => return stragglers(admin, token_file.as_deref(), *csv, forget.as_deref()),
        Some(Command::Init {
            host,
            customer_number,
            onprem,
            move_at,
            certs,
            acme,
            output,
        }) => {
            let req = signpost::init::InitRequest {
                host: host.clone(),
                customer_number: customer_number.clone(),
                onprem: onprem.clone(),
                move_at: move_at.clone(),
                certs: certs.clone(),
                acme: acme.clone(),
            };
            return match signpost::init::write(&req, output) {
                Ok(_) => {
                    println!(
                        "wrote {}; run it with: signpost run --config {}",
                        output.display(),
                        output.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("signpost init: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let Some(config_path) = cli.config else {
        if cli.command.is_none() {
            // Nothing asked: what there is to ask.
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            return ExitCode::from(2);
        }
        eprintln!("signpost: this command needs --config FILE (see signpost --help)");
        return ExitCode::from(2);
    };
    match cli.command.unwrap_or(Command::Run { upgrade: false }) {
        Command::Stragglers { .. } | Command::Init { .. } => unreachable!("handled above"),
        Command::Run { upgrade } => {
            init_logging(cli.log_format);
            match signpost::server::run(&config_path, upgrade) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { deny_warnings } => match config::load(&config_path, None) {
            Ok(c) => {
                for warning in &c.warnings {
                    println!("{warning}");
                }
                println!(
                    "{}: ok ({} tenants, {} rules, {} files)",
                    config_path.display(),
                    c.table.tenants().len(),
                    c.table.rule_count(),
                    c.files.len()
                );
                if let Some(acme) = &c.settings.acme {
                    let (order, uncovered) = signpost::acme::coverage(&c.table, c.certs.as_ref());
                    println!(
                        "acme: certificates from {} for {} host(s) that no tls.certs certificate covers: {}",
                        acme.directory,
                        order.len(),
                        order.join(", ")
                    );
                    for host in uncovered {
                        println!("acme: warning: {host} is a wildcard host: it needs a certificate in tls.certs (HTTP-01 cannot prove a wildcard)");
                    }
                }
                if deny_warnings && !c.warnings.is_empty() {
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Explain {
            method,
            headers,
            url,
            at,
        } => {
            let result = (|| -> anyhow::Result<String> {
                let config = config::load(&config_path, None)?;
                let headers = headers
                    .iter()
                    .map(|h| explain::parse_header(h))
                    .collect::<Result<Vec<_>, _>>()?;
                let at = at.as_deref().map(explain::parse_at).transpose()?;
                let gated: Vec<&str> = config.table.gated().map(|(t, _)| &*t.id).collect();
                let explanation = if gated.is_empty() {
                    explain::explain(&config.table, &method, &url, &headers, at)?
                } else {
                    // Census-gated phases: read the census where the server keeps it.
                    let census = signpost::report::census::read(&config.settings.census, &gated)
                        .map_err(anyhow::Error::msg)?;
                    explain::explain_held(&config.table, &census, &method, &url, &headers, at)?
                };
                Ok(serde_json::to_string(&explanation)?)
            })();
            match result {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Test { cases } => run_cases(&config_path, &cases),
    }
}

fn run_cases(config_path: &std::path::Path, cases_path: &std::path::Path) -> ExitCode {
    let config = match config::load(config_path, None) {
        Ok(c) => c,
        Err(e) => {
            println!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let file: CaseFile = match std::fs::read_to_string(cases_path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_yaml::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(f) => f,
        Err(e) => {
            println!("{}: {e}", cases_path.display());
            return ExitCode::FAILURE;
        }
    };
    let mismatches = explain::run_cases(&config.table, &file);
    for m in &mismatches {
        println!("case {} ({}): mismatch", m.case, m.request);
        for (field, want, got) in &m.fields {
            println!("  {field}: expected {want}, got {got}");
        }
        println!("  explain: {}", m.got);
    }
    let total = file.cases.len();
    let failed = mismatches.len();
    println!(
        "{}: {} passed, {} failed",
        cases_path.display(),
        total - failed,
        failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Logs to stderr; the level comes from `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

/// `signpost stragglers --admin URL`: `/stragglers.json` as a terminal table, `--csv` the
/// CSV as served, `--forget ID` a `DELETE /stragglers/ID`.
fn stragglers(admin: &str, token_file: Option<&Path>, csv: bool, forget: Option<&str>) -> ExitCode {
    let base = admin.trim_end_matches('/');
    let base = if base.contains("://") {
        base.to_owned()
    } else {
        format!("http://{base}")
    };
    let token = match token_file.map(std::fs::read_to_string).transpose() {
        Ok(token) => token.map(|t| t.trim().to_owned()),
        Err(e) => {
            eprintln!("signpost: --token-file: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bearer = token.map(|t| format!("Bearer {t}"));
    let call = |method: &str, url: &str| -> Result<String, String> {
        let mut req = http::Request::builder().method(method).uri(url);
        if let Some(b) = &bearer {
            req = req.header("authorization", b);
        }
        let req = req.body(()).map_err(|e| e.to_string())?;
        ureq::run(req)
            .map_err(|e| e.to_string())
            .and_then(|mut r| r.body_mut().read_to_string().map_err(|e| e.to_string()))
    };
    let (url, result) = match forget {
        Some(id) => {
            let url = format!("{base}/stragglers/{id}");
            let result = call("DELETE", &url);
            (url, result)
        }
        None => {
            let url = format!("{base}/stragglers.{}", if csv { "csv" } else { "json" });
            let result = call("GET", &url).and_then(|body| match csv {
                true => Ok(body),
                false => serde_json::from_str::<Report>(&body)
                    .map(|report| signpost::report::table::render(&report))
                    .map_err(|e| e.to_string()),
            });
            (url, result)
        }
    };
    match result {
        Ok(out) => {
            print!("{out}");
            if !out.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("signpost: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}
