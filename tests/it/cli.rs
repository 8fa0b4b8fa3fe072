//! The command line as operators use it: `test` on the shared vectors, `check`, `explain`.

use std::process::{Command, Output};

use crate::common::{repo, vectors_path};

fn signpost(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn shared_vectors_pass_against_the_example_config() {
    let vectors = vectors_path();
    let out = signpost(&[
        "test",
        "--config",
        "config/example.yaml",
        vectors.to_str().unwrap(),
    ]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains(" passed, 0 failed"), "{shown}");
}

#[test]
fn test_command_fails_with_a_readable_diff() {
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - url: https://acme.flexhosting.se/Timeclock\n    expect: { action: redirect, location: \"https://timeclock.flexhrm.com/default/9999\" }\n",
    )
    .unwrap();
    let out = signpost(&[
        "test",
        "--config",
        "config/example.yaml",
        cases.to_str().unwrap(),
    ]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("location: expected \"https://timeclock.flexhrm.com/default/9999\", got \"https://timeclock.flexhrm.com/default/1234\""),
        "{shown}"
    );
    assert!(shown.contains("0 passed, 1 failed"), "{shown}");
}

#[test]
fn explain_prints_the_spec_json() {
    let out = signpost(&[
        "explain",
        "--config",
        "config/example.yaml",
        "https://acme.flexhosting.se/Timeclock/Fabriksklocka",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"tenant":"acme","rule":"timeclock-clock","kind":"timeclock","action":"redirect","status":307,"location":"https://timeclock.flexhrm.com/Fabriksklocka/1234"}"#
    );
    let out = signpost(&[
        "explain",
        "--config",
        "config/example.yaml",
        "https://unknown.example.org/",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["tenant"], serde_json::Value::Null);
    assert_eq!(json["action"], "reject");
    assert_eq!(json["status"], 421);
    let out = signpost(&[
        "explain",
        "--config",
        "config/example.yaml",
        "--header",
        "User-Agent: Mozilla/5.0 (Macintosh) Safari/605.1.15",
        "https://acme.flexhosting.se/HRM/Calendar/abc.ics",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["branch"], "redirect", "{json}");
    assert_eq!(json["why"], "a browser's GET or HEAD without Authorization");
}

#[test]
fn check_reports_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "listen: { http: 127.0.0.1:0 }\nprofiles:\n  p:\n    rules:\n      - { name: r, match: /r, redirect: \"https://{nope}/\" }\n").unwrap();
    let out = signpost(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let shown = text(&out);
    assert!(
        shown.starts_with(&format!(
            "{}:5: rule `r`: unknown name `{{nope}}`",
            config.display()
        )),
        "{shown}"
    );
    let out = signpost(&["check", "--config", "config/example.yaml"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A census store `check` cannot use is named with its line: a password in the URL (never
/// echoed), a URL that is not PostgreSQL's, a password file that cannot be read.
#[test]
fn check_rejects_a_census_store_it_could_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("store.yaml");
    for (store, line, reason) in [
        (
            "{ url: 'postgresql://signpost:zq7hunter2@db/census' }",
            3,
            "census.store: url: holds a password: put it in password_file",
        ),
        (
            "{ url: 'mysql://signpost@db/census' }",
            3,
            "census.store: url: write it as postgresql://USER@HOST:PORT/DATABASE",
        ),
        (
            "\n    url: 'postgresql://signpost@db/census'\n    password_file: missing.pw",
            5,
            "census.store: password_file: ",
        ),
    ] {
        std::fs::write(
            &config,
            format!("listen: {{ http: 127.0.0.1:0 }}\ncensus:\n  store: {store}\ntenants: []\n"),
        )
        .unwrap();
        let out = signpost(&["check", "--config", config.to_str().unwrap()]);
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(1), "{shown}");
        assert!(
            shown.starts_with(&format!("{}:{line}: {reason}", config.display())),
            "{shown}"
        );
        assert!(
            !shown.contains("zq7hunter2"),
            "the password was echoed: {shown}"
        );
    }
}

#[test]
fn run_with_a_broken_config_exits_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "listen: { http: 127.0.0.1:1 }\ntenants:\n  - { id: t, hosts: [a.example], profile: missing }\n").unwrap();
    let out = signpost(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(":3: tenant `t`: unknown profile `missing`"),
        "{}",
        text(&out)
    );
}

/// `explain --at` previews a tenant's phases: which one is in force and what it does, at any
/// instant; a time that does not parse is an error, not "now".
#[test]
fn explain_at_previews_the_phase_in_force() {
    let mut config = crate::common::example_config();
    config["tls"]["certs"] = repo().join("certs").to_str().unwrap().into();
    config["upstreams"]["onprem"] =
        serde_yaml::from_str("{ url: https://hrm.exempel.com, address: 127.0.0.1:9 }").unwrap();
    config["tenants"][1]["phases"] = serde_yaml::from_str(
        "[{ until: '2026-03-01T18:00:00+01:00', forward: { upstream: onprem } }, { until: '2026-09-01T00:00:00Z', rules: profile }, { gone: true }]",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phased.yaml");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let explain_at = |at: &str| {
        let out = signpost(&[
            "explain",
            "--config",
            path.to_str().unwrap(),
            "--at",
            at,
            "https://exempel.com/Timeclock/Lager",
        ]);
        (out.status.code(), text(&out))
    };
    let (code, json) = explain_at("2026-03-01T17:59:59+01:00");
    assert_eq!(code, Some(0), "{json}");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (json["phase"].as_u64(), json["action"].as_str()),
        (Some(1), Some("forward"))
    );
    assert_eq!(json["url"], "https://hrm.exempel.com/Timeclock/Lager");
    let (_, json) = explain_at("2026-03-01T18:00:00+01:00");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (json["phase"].as_u64(), json["action"].as_str()),
        (Some(2), Some("redirect"))
    );
    let (_, json) = explain_at("2026-09-01");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (json["phase"].as_u64(), json["status"].as_u64()),
        (Some(3), Some(410))
    );
    let (code, message) = explain_at("soon");
    assert_eq!(code, Some(1));
    assert!(
        message.contains("`soon` is not an RFC 3339 time"),
        "{message}"
    );
}

/// `signpost init` writes a config that `check` accepts and that routes the customer's host;
/// `--move-at` without `--onprem` is refused by the argument parser.
#[test]
fn init_writes_a_config_that_check_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signpost.yaml");
    let out = signpost(&[
        "init",
        "--host",
        "hrm.exempel.com",
        "--customer-number",
        "5678",
        "--onprem",
        "https://old-server.internal",
        "--move-at",
        "2027-03-01T18:00:00+01:00",
        "--output",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = signpost(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = signpost(&[
        "explain",
        "--config",
        path.to_str().unwrap(),
        "--at",
        "2027-06-01",
        "https://hrm.exempel.com/Timeclock/Lager",
    ]);
    assert!(
        text(&out).contains(r#""location":"https://timeclock.flexhrm.com/Lager/5678""#),
        "{}",
        text(&out)
    );
    let out = signpost(&[
        "init",
        "--host",
        "x.example",
        "--customer-number",
        "1",
        "--move-at",
        "2026-03-01",
        "--output",
        dir.path().join("other.yaml").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

/// `signpost init --acme EMAIL` adds the HTTPS listener and the `acme:` block; `check` says
/// which hosts will get a certificate.
#[test]
fn init_with_acme_writes_an_https_config_whose_host_gets_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signpost.yaml");
    let out = signpost(&[
        "init",
        "--host",
        "hrm.exempel.com",
        "--customer-number",
        "5678",
        "--acme",
        "ops@exempel.com",
        "--output",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.contains("  https: 0.0.0.0:443\n"), "{written}");
    assert!(
        written.contains("\nacme:\n  email: ops@exempel.com\n"),
        "{written}"
    );
    assert!(!written.contains("\ntls:"), "{written}");
    let out = signpost(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("acme: certificates from https://acme-v02.api.letsencrypt.org/directory for 1 host(s) that no tls.certs certificate covers: hrm.exempel.com\n"),
        "{}",
        text(&out)
    );
}

/// `check` warns of answers some legacy clients do not survive (exit 0), and fails on them
/// with `--deny-warnings`; the bundled example has none.
#[test]
fn check_warns_and_deny_warnings_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signpost.yaml");
    std::fs::write(
        &path,
        "listen: { http: 127.0.0.1:8080 }\nprofiles:\n  p:\n    rules:\n      - { name: hook, kind: payment_webhook, match: /hook, redirect: \"https://web.flexhrm.com/hook\" }\ntenants:\n  - { id: t, hosts: [t.example], profile: p }\n",
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let out = signpost(&["check", "--config", config]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let warning = format!("{config}:5: warning: rule `hook`: SMS and payment webhook senders treat a redirect as a failure or do not follow it; forward it instead (`forward: {{ upstream: … }}`)\n");
    assert!(text(&out).starts_with(&warning), "{}", text(&out));
    let out = signpost(&["check", "--deny-warnings", "--config", config]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = signpost(&[
        "check",
        "--deny-warnings",
        "--config",
        "config/example.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// `signpost` alone shows the commands, with examples and where things live.
#[test]
fn signpost_alone_shows_the_commands() {
    let out = signpost(&[]);
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out);
    for part in [
        "Commands:",
        "init",
        "check",
        "Examples:",
        "Where things live:",
        "$STATE_DIRECTORY",
    ] {
        assert!(said.contains(part), "{part} in {said}");
    }
}

/// `init --certs` is relative to the working directory, and the certificates must cover the
/// host; a `--move-at` in the past is refused; no temporary file is left behind.
#[test]
fn init_checks_its_certificates_and_move_date() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("etc");
    std::fs::create_dir(&out_dir).unwrap();
    let output = out_dir.join("signpost.yaml");
    let init = |host: &str, extra: &[&str]| {
        let mut args = vec![
            "init",
            "--host",
            host,
            "--customer-number",
            "5678",
            "--output",
            output.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        signpost(&args)
    };
    // Relative to the working directory (the repo), not to the output's folder.
    let out = init("hrm.exempel.com", &["--certs", "certs"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let written = std::fs::read_to_string(&output).unwrap();
    let absolute = format!("  certs: {}\n", repo().join("certs").display());
    assert!(written.contains(&absolute), "{written}");
    std::fs::remove_file(&output).unwrap();
    let out = init("hrm.annat.se", &["--certs", "certs"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "no certificate in {} covers hrm.annat.se",
            repo().join("certs").display()
        )),
        "{}",
        text(&out)
    );
    let out = init(
        "hrm.exempel.com",
        &[
            "--onprem",
            "https://old.internal",
            "--move-at",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("--move-at 2020-01-01T00:00:00Z is in the past"),
        "{}",
        text(&out)
    );
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing written, no temporary left: {left:?}"
    );
}
