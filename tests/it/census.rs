//! The census and the metrics as an operator sees them through the admin listener, across a
//! restart; and no secret anywhere Signpost writes.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::{Gateway, Log, TestCa, Upstream};
use serde_yaml::Value;

/// Polls `/stragglers.json` until `done` holds for it.
fn wait_for_report(gw: &Gateway, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = gw.admin("/stragglers.json");
        assert_eq!(status, 200);
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        if done(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "census never reached the expected state: {report:#}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn api_rows(report: &serde_json::Value) -> Vec<(String, u64)> {
    let mut rows: Vec<(String, u64)> = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "api" && r["tenant"] == "acme")
        .map(|r| {
            (
                r["client"]["user_agent"].as_str().unwrap().to_owned(),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn two_clients_are_two_rows_and_survive_a_restart() {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let ca_path = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_path.path(), &ca.pem).unwrap();
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("census.json");
    let patch = |config: &mut Value, _: &std::path::Path| {
        for (_, u) in config["upstreams"].as_mapping_mut().unwrap().iter_mut() {
            u["address"] = Value::from(upstream.addr.to_string());
            u["ca"] = Value::from(ca_path.path().to_str().unwrap());
        }
        config["census"] = serde_yaml::from_str(&format!(
            "{{ state_file: {}, snapshot_interval: 1h }}",
            state_file.display()
        ))
        .unwrap();
        // pingora waits out the whole grace period after SIGTERM; keep the restart quick.
        config["server"]["grace_period"] = Value::from("1s");
    };
    let mut gw = Gateway::start_with(patch);
    let client = gw.client("http");
    let url = gw.url("http://acme.flexhosting.se/HRM/API/v1/employees?page=2");
    for (agent, token, times) in [
        ("PayrollSync/2.1", "Bearer token-one", 3),
        ("curl/8.5.0", "Bearer token-two", 2),
    ] {
        for _ in 0..times {
            let resp = client
                .get(&url)
                .header("user-agent", agent)
                .header("authorization", token)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
        }
    }
    let expected = vec![
        ("PayrollSync/2.1".to_owned(), 3),
        ("curl/8.5.0".to_owned(), 2),
    ];
    let report = wait_for_report(&gw, |r| api_rows(r) == expected);
    let row = report["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "api")
        .unwrap();
    assert_eq!(
        row["last_path"], "/HRM/API/v1/employees",
        "no query string in the census"
    );
    assert_eq!(row["last_status"], 201);
    assert!(row["client"]["credential"]
        .as_str()
        .unwrap()
        .starts_with("bearer:"));

    // The terminal table shows the same rows.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["stragglers", "--admin", &format!("http://{}", gw.admin)])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        table.contains("PayrollSync/2.1")
            && table.contains("curl/8.5.0")
            && table.contains("/HRM/API/v1/employees"),
        "{table}"
    );

    // SIGTERM: the census is written on the way out, and read back at start.
    assert_eq!(gw.terminate(), Some(0));
    assert!(state_file.exists(), "no state file after shutdown");
    let gw = Gateway::start_with(patch);
    let report = wait_for_report(&gw, |r| !r["clients"].as_array().unwrap().is_empty());
    assert_eq!(
        api_rows(&report),
        expected,
        "rows lost across the restart: {report:#}"
    );
}

/// Checks every line of a Prometheus text exposition, and returns the family names.
fn parse_exposition(text: &str) -> BTreeSet<String> {
    let mut families = BTreeSet::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(name_ok(name), "bad family name in {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line:?}"
            );
            families.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line:?}"
        );
        let name = series.split('{').next().unwrap();
        assert!(name_ok(name), "bad metric name in {line:?}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels in {line:?}"
                );
                for pair in labels[1..labels.len() - 1]
                    .split("\",")
                    .filter(|p| !p.is_empty())
                {
                    let (k, v) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(name_ok(k), "bad label name in {line:?}");
                    assert!(!v.contains('\n'));
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(
            families.contains(name) || families.contains(family),
            "sample before its TYPE: {line:?}"
        );
    }
    families
}

#[tokio::test]
async fn metrics_expose_every_family_of_the_spec() {
    let gw = Gateway::start_example(None);
    gw.get("http://acme.flexhosting.se/Timeclock").await;
    gw.get("http://unknown.example.org/Timeclock").await;
    gw.get("http://acme.flexhosting.se/HRM/API/v1/x").await; // nothing listens: an upstream error
                                                             // The census fills asynchronously; wait until the client is there.
    wait_for_report(&gw, |r| !r["clients"].as_array().unwrap().is_empty());
    let (status, text) = gw.admin("/metrics");
    assert_eq!(status, 200);
    let families = parse_exposition(&text);
    for family in [
        "signpost_requests_total",
        "signpost_request_duration_seconds",
        "signpost_upstream_errors_total",
        "signpost_legacy_client_last_seen_timestamp_seconds",
        "signpost_config_generation",
        "signpost_config_reloads_total",
        "signpost_config_last_success_timestamp_seconds",
        "signpost_tenants",
        "signpost_rules",
        "signpost_build_info",
    ] {
        assert!(
            families.contains(family),
            "{family} missing from /metrics:\n{text}"
        );
    }
    assert!(text.contains(r#"signpost_requests_total{action="redirect",code="307",kind="timeclock",tenant="acme"} 1"#), "{text}");
    assert!(text.contains(r#"signpost_requests_total{action="reject",code="421",kind="_none",tenant="_unknown"} 1"#), "{text}");
    assert!(
        text.contains(
            r#"signpost_upstream_errors_total{reason="connect_refused",upstream="api"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("signpost_tenants 2"), "{text}");
}

#[tokio::test]
async fn secrets_never_reach_logs_metrics_census_or_state() {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), &ca.pem).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::common::example_config();
    for key in ["http", "https", "admin"] {
        config["listen"][key] = Value::from("127.0.0.1:0");
    }
    config["tls"]["certs"] = Value::from(crate::common::repo().join("certs").to_str().unwrap());
    for (_, u) in config["upstreams"].as_mapping_mut().unwrap().iter_mut() {
        u["address"] = Value::from(upstream.addr.to_string());
        u["ca"] = Value::from(ca_file.path().to_str().unwrap());
    }
    let state_file = dir.path().join("census.json");
    config["server"]["grace_period"] = Value::from("1s");
    config["census"] = serde_yaml::from_str(&format!(
        "{{ state_file: {}, api_key_headers: [X-Api-Key] }}",
        state_file.display()
    ))
    .unwrap();
    let config_path = dir.path().join("signpost.yaml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let log_path = dir.path().join("signpost.log");
    let mut gw = Gateway::spawn(
        config_path,
        tempfile::tempdir().unwrap(),
        Log::File(&log_path, "info"),
    );

    const SECRETS: [&str; 5] = [
        "QuerySecret41",
        "BearerSecret42",
        "ApiKeySecret43",
        "CalendarSecret44",
        "BasicPass45",
    ];
    let client = gw.client("http");
    let api = gw.url("http://acme.flexhosting.se/HRM/API/v1/pay?access_token=QuerySecret41");
    client
        .get(&api)
        .header("authorization", "Bearer BearerSecret42")
        .send()
        .await
        .unwrap();
    client
        .get(&api)
        .header("x-api-key", "ApiKeySecret43")
        .send()
        .await
        .unwrap();
    client
        .get(&api)
        .basic_auth("integration", Some("BasicPass45"))
        .send()
        .await
        .unwrap();
    client
        .get(gw.url("http://acme.flexhosting.se/HRM/Calendar/CalendarSecret44.ics?QuerySecret41"))
        .send()
        .await
        .unwrap();
    // The same feed from a browser: redirected, its token still redacted in the census.
    client
        .get(gw.url("http://acme.flexhosting.se/HRM/Calendar/CalendarSecret44.ics"))
        .header("user-agent", "Mozilla/5.0")
        .send()
        .await
        .unwrap();
    let report = wait_for_report(&gw, |r| r["clients"].as_array().unwrap().len() >= 4);
    assert!(
        report.to_string().contains("/HRM/Calendar/…"),
        "redacted capture shown as …: {report}"
    );

    let mut written = vec![
        ("/metrics", gw.admin("/metrics").1),
        ("/stragglers.json", gw.admin("/stragglers.json").1),
        ("/stragglers", gw.admin("/stragglers").1),
    ];
    assert_eq!(gw.terminate(), Some(0));
    written.push(("state file", std::fs::read_to_string(&state_file).unwrap()));
    written.push(("log", std::fs::read_to_string(&log_path).unwrap()));
    assert!(
        written[4].1.contains("\"duration_ms\""),
        "the access log was not written: {}",
        written[4].1
    );
    for (place, text) in &written {
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "{secret} leaked into {place}:\n{text}"
            );
        }
    }
}

/// With no `census.state_file`, the census is kept in the state directory
/// (`$STATE_DIRECTORY/census.json` under systemd) and survives a restart; `state_file: off`
/// keeps it in memory only; a chosen location that cannot be written stops the start with
/// exit code 1 and a message naming it.
#[tokio::test]
async fn the_census_survives_a_restart_by_default() {
    let state = tempfile::tempdir().unwrap();
    let start = |state_file: Option<&str>| {
        let mut config = crate::common::example_config();
        let dir = tempfile::tempdir().unwrap();
        for listener in ["http", "https", "admin"] {
            config["listen"][listener] = Value::from("127.0.0.1:0");
        }
        config["tls"]["certs"] = Value::from(crate::common::repo().join("certs").to_str().unwrap());
        config["server"]["grace_period"] = Value::from("1s");
        if let Some(file) = state_file {
            config["census"] = serde_yaml::from_str(&format!("{{ state_file: {file} }}")).unwrap();
        }
        let path = dir.path().join("signpost.yaml");
        std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
        Gateway::spawn_with(
            path,
            dir,
            crate::common::Log::Inherit("error"),
            state.path(),
        )
    };
    let mut gw = start(None);
    for _ in 0..3 {
        gw.get("http://acme.flexhosting.se/Timeclock").await;
    }
    assert_eq!(gw.terminate(), Some(0));
    let saved = state.path().join("census.json");
    assert!(saved.exists(), "nothing saved at {}", saved.display());
    let gw = start(None);
    let report = wait_for_report(&gw, |r| r["clients"].as_array().unwrap().len() == 1);
    assert_eq!(report["clients"][0]["count"], 3, "{report}");

    std::fs::remove_file(&saved).unwrap();
    let mut gw = start(Some("off"));
    gw.get("http://acme.flexhosting.se/Timeclock").await;
    assert_eq!(gw.terminate(), Some(0));
    assert!(!saved.exists(), "state_file: off wrote {}", saved.display());

    let blocker = state.path().join("a-file");
    std::fs::write(&blocker, "not a folder").unwrap();
    let config = tempfile::tempdir().unwrap();
    let path = config.path().join("signpost.yaml");
    let wanted = blocker.join("census.json");
    std::fs::write(
        &path,
        format!(
            "listen: {{ http: 127.0.0.1:0 }}\ncensus: {{ state_file: {} }}\ntenants: []\n",
            wanted.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!(
            "census.state_file {}: cannot write there",
            wanted.display()
        )),
        "{shown}"
    );
}

/// A JWT as an identity provider would issue it (the signature is not checked by Signpost).
fn jwt(claims: &str, signature: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{signature}",
        b64.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64.encode(claims)
    )
}

fn rows(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["clients"].as_array().unwrap()
}

/// A row says whom to call: the Basic user name in clear, a JWT's client claims (marked
/// unverified), keyed fingerprints for opaque secrets, the whole User-Agent and its class, the
/// tenant's customer number and contact. The summary ranks tenants by their last 7 days; the
/// filters narrow the page, the JSON and the CSV alike; `signpost stragglers --csv` prints the
/// CSV and `--forget` erases a client from the report and the state file.
#[tokio::test]
async fn the_report_says_whom_to_contact_and_forgets_on_request() {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let state = tempfile::tempdir().unwrap();
    let state_file = state.path().join("census.json");
    let mut gw = Gateway::start_with(|config, dir| {
        crate::common::gateway::point_upstreams_at(config, dir, upstream.addr, &ca);
        config["census"] = serde_yaml::from_str(&format!(
            "{{ state_file: {}, api_key_headers: [X-Api-Key] }}",
            state_file.display()
        ))
        .unwrap();
        config["server"]["grace_period"] = Value::from("1s");
    });
    const PAYROLL: &str = "PayrollSync/2.1 (Windows NT 10.0; .NET Framework 4.8)";
    const OUTLOOK: &str =
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)";
    let client = gw.client("http");
    let acme_api = gw.url("http://acme.flexhosting.se/HRM/API/v1/employees");
    let send = |req: reqwest::RequestBuilder| async move {
        let status = req.send().await.unwrap().status();
        assert!(status.is_success(), "{status}");
    };
    send(
        client
            .get(&acme_api)
            .header("user-agent", PAYROLL)
            .basic_auth("lönesystem", Some("pw-1")),
    )
    .await;
    let token = jwt(
        r#"{"sub":"svc-timesync","azp":"timesync-app"}"#,
        "JwtSignature46",
    );
    send(
        client
            .get(&acme_api)
            .header("user-agent", "python-requests/2.31.0")
            .bearer_auth(&token),
    )
    .await;
    send(
        client
            .get(&acme_api)
            .header("user-agent", "Go-http-client/1.1")
            .header("x-api-key", "OpaqueKey47"),
    )
    .await;
    let feed = gw.url("http://hrm.exempel.com/HRM/Calendar/feedtoken.ics");
    for _ in 0..4 {
        send(client.get(&feed).header("user-agent", OUTLOOK)).await;
    }
    let report = wait_for_report(&gw, |r| rows(r).len() == 4);
    let row = |needle: &str| {
        rows(&report)
            .iter()
            .find(|r| r["client"]["user_agent"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no row for {needle}: {report:#}"))
            .clone()
    };
    let payroll = row("PayrollSync");
    assert_eq!(payroll["client"]["credential"], "basic:lönesystem");
    assert_eq!(
        payroll["client"]["user_agent"], PAYROLL,
        "the whole User-Agent"
    );
    assert_eq!(payroll["client"]["class"], "unknown");
    assert_eq!(payroll["customer_number"], "1234");
    assert_eq!(payroll["contact"], serde_json::Value::Null);
    let jwt_row = row("python-requests");
    assert_eq!(
        jwt_row["client"]["credential"],
        "jwt:sub=svc-timesync,azp=timesync-app (unverified)"
    );
    assert_eq!(jwt_row["client"]["class"], "script");
    let keyed = row("Go-http-client")["client"]["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        keyed.starts_with("x-api-key:key:") && keyed.len() == "x-api-key:key:".len() + 8,
        "{keyed}"
    );
    let outlook = row("Microsoft Office");
    assert_eq!(outlook["client"]["class"], "calendar");
    assert_eq!(outlook["count"], 4);
    assert_eq!(outlook["customer_number"], "5678");
    assert_eq!(outlook["contact"], "IT-avdelningen, it@exempel.com");
    // The summary: exempel (4 requests from one client) before acme (3 from three).
    let tenants: Vec<(&str, u64, u64, &str)> = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tenant"].as_str().unwrap(),
                t["requests_7d"].as_u64().unwrap(),
                t["clients"].as_u64().unwrap(),
                t["contact"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        tenants,
        [
            ("exempel", 4, 1, "IT-avdelningen, it@exempel.com"),
            ("acme", 3, 3, "")
        ]
    );
    let page = gw.admin("/stragglers").1;
    let (exempel_at, acme_at) = (
        page.find("href=\"#tenant-exempel\"")
            .expect("exempel in the summary"),
        page.find("href=\"#tenant-acme\"")
            .expect("acme in the summary"),
    );
    assert!(exempel_at < acme_at, "ranked by the last 7 days");

    // Filters narrow the JSON, the CSV and the page alike.
    let filtered = |query: &str| -> serde_json::Value {
        serde_json::from_str(&gw.admin(&format!("/stragglers.json?{query}")).1).unwrap()
    };
    let agents = |r: &serde_json::Value| -> BTreeSet<String> {
        rows(r)
            .iter()
            .map(|r| r["client"]["user_agent"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(rows(&filtered("tenant=acme")).len(), 3);
    assert_eq!(
        agents(&filtered("class=calendar")),
        BTreeSet::from([OUTLOOK.to_owned()])
    );
    assert_eq!(
        agents(&filtered("tenant=acme&class=script")),
        BTreeSet::from([
            "python-requests/2.31.0".to_owned(),
            "Go-http-client/1.1".to_owned()
        ])
    );
    assert!(rows(&filtered("kind=timeclock")).is_empty());
    let page = gw.admin("/stragglers?class=calendar").1;
    assert!(
        page.contains("<option selected>calendar</option>"),
        "{page}"
    );
    assert!(
        page.contains("Microsoft Office") && !page.contains("PayrollSync"),
        "{page}"
    );

    // CSV: from the endpoint and from the command line, the same text.
    let (status, csv) = gw.admin("/stragglers.csv");
    assert_eq!(status, 200);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        &header[..4],
        ["tenant", "customer_number", "contact", "kind"]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 4);
    let outlook_line = records.iter().find(|r| &r[3] == "calendar").unwrap();
    assert_eq!(&outlook_line[2], "IT-avdelningen, it@exempel.com");
    assert_eq!(outlook_line.iter().next_back().unwrap(), OUTLOOK);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
            .args(["stragglers", "--admin", &gw.admin.to_string()])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(cli(&["--csv"]), csv);

    // Forget the Basic client: gone from the report at once, and from the state file.
    let id = payroll["client"]["id"].as_str().unwrap().to_owned();
    let answer = cli(&["--forget", &id]);
    assert!(answer.contains("\"rows_erased\": 1"), "{answer}");
    let after = gw.admin("/stragglers.json").1;
    assert!(
        !after.contains(&id) && !after.contains("lönesystem"),
        "{after}"
    );
    assert_eq!(gw.terminate(), Some(0));
    let saved = std::fs::read_to_string(&state_file).unwrap();
    assert!(
        saved.contains("svc-timesync"),
        "the others are kept: {saved}"
    );
    for gone in [id.as_str(), "lönesystem", "PayrollSync"] {
        assert!(
            !saved.contains(gone),
            "{gone} still in the state file: {saved}"
        );
    }
    // No secret of these clients anywhere: not the JWT signature, not the key, not the password.
    for secret in ["JwtSignature46", "OpaqueKey47", "pw-1", "feedtoken"] {
        assert!(
            !saved.contains(secret) && !after.contains(secret) && !csv.contains(secret),
            "{secret}"
        );
    }
}

/// A request is counted in its tenant's meter on both doors (the front door's HTTP/1 and
/// pingora's HTTP/2), and the counts survive a reload that keeps the tenant.
#[tokio::test]
async fn request_counts_add_up_over_both_doors_and_survive_a_reload() {
    let gw = Gateway::start_example(None);
    let doors = [
        gw.client_builder("https").http1_only().build().unwrap(),
        gw.client("https"),
    ];
    let url = gw.url("https://acme.flexhosting.se/Timeclock");
    let series =
        r#"signpost_requests_total{action="redirect",code="307",kind="timeclock",tenant="acme"} "#;
    let mut versions = Vec::new();
    for door in &doors {
        let resp = door.get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 307);
        versions.push(resp.version());
    }
    assert_eq!(
        versions,
        [reqwest::Version::HTTP_11, reqwest::Version::HTTP_2]
    );
    assert_eq!(gw.metric(series), 2.0);
    assert_eq!(gw.admin_post("/-/reload", &[]).0, 200);
    for door in &doors {
        assert_eq!(door.get(&url).send().await.unwrap().status(), 307);
    }
    assert_eq!(
        gw.metric(series),
        4.0,
        "counted before the reload and after"
    );
}
