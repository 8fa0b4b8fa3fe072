//! A tenant's scheduled phases and brownouts on the running binary: requests flowing across a
//! phase switch and a brownout window see each answer exactly in its time, with no reload and
//! no failed request, and `/metrics` reports the phase in force.

use std::time::{Duration, SystemTime};

use crate::common::Gateway;
use jiff::Timestamp;

const BEFORE: &str = "https://web.flexhrm.com/before-the-move";
const AFTER: &str = "https://timeclock.flexhrm.com/Entre/1234";

/// What a request got, and when it was sent and answered.
struct Seen {
    sent: SystemTime,
    answered: SystemTime,
    status: u16,
    location: Option<String>,
}

fn rfc3339(t: SystemTime) -> String {
    Timestamp::try_from(t).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cross_a_phase_switch_and_a_brownout_on_time() {
    let start = SystemTime::now();
    let switch = start + Duration::from_secs(4);
    let brownout = (
        start + Duration::from_secs(6),
        start + Duration::from_secs(7),
    );
    let end = start + Duration::from_secs(8);
    let gw = Gateway::start_with(|config, _| {
        let acme = &mut config["tenants"][0];
        assert_eq!(acme["id"], "acme");
        acme["phases"] = serde_yaml::from_str(&format!(
            "[{{ until: '{}', redirect: '{BEFORE}' }}, {{ rules: profile }}]",
            rfc3339(switch)
        ))
        .unwrap();
        acme["brownouts"] = serde_yaml::from_str(&format!(
            "[{{ from: '{}', until: '{}', kinds: [timeclock] }}]",
            rfc3339(brownout.0),
            rfc3339(brownout.1)
        ))
        .unwrap();
    });
    assert!(
        SystemTime::now() < switch,
        "the gateway took too long to start"
    );
    assert_eq!(gw.metric("signpost_tenant_phase{tenant=\"acme\"} "), 1.0);

    let client = gw.client("http");
    let url = gw.url("http://acme.flexhosting.se/Timeclock/Entre");
    let mut seen = Vec::new();
    while SystemTime::now() < end {
        let sent = SystemTime::now();
        let resp = client.get(&url).send().await.expect("no request may fail");
        seen.push(Seen {
            sent,
            answered: SystemTime::now(),
            status: resp.status().as_u16(),
            location: resp
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned()),
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(gw.metric("signpost_tenant_phase{tenant=\"acme\"} "), 2.0);

    // Which answer each instant must get; a request in flight across an instant may get either.
    let expected = |t: SystemTime| -> (u16, Option<&str>) {
        if t < switch {
            (307, Some(BEFORE))
        } else if brownout.0 <= t && t < brownout.1 {
            (410, None)
        } else {
            (307, Some(AFTER))
        }
    };
    let mut counts = [0; 3];
    for s in &seen {
        let got = (s.status, s.location.as_deref());
        let at_send = expected(s.sent);
        let at_answer = expected(s.answered);
        assert!(
            got == at_send || got == at_answer,
            "sent {} answered {}: got {got:?}, expected {at_send:?}",
            rfc3339(s.sent),
            rfc3339(s.answered)
        );
        counts[match got.0 {
            410 => 2,
            _ if got.1 == Some(BEFORE) => 0,
            _ => 1,
        }] += 1;
    }
    assert!(
        counts.iter().all(|&n| n > 10),
        "before / after / brownout answers: {counts:?}"
    );
    eprintln!(
        "{} requests: {counts:?} before / after / brownout, 0 failed",
        seen.len()
    );
}

/// `signpost explain` on the gateway's config, reading its census as the server keeps it.
fn explain(gw: &Gateway, url: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["explain", "--config"])
        .arg(&gw.config)
        .arg(url)
        .env("STATE_DIRECTORY", gw.dir.path().join("state"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap()
}

/// A census-gated phase (`after_quiet`): the `gone` phase is due but held while timeclock
/// clients keep calling, on HTTP/1 and HTTP/2 alike; `/metrics`, the report and `explain` say
/// so and by what; once those clients have been quiet for the gate's time, the phase starts on
/// both doors, and a request of another kind never held it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_census_gated_phase_waits_for_its_stragglers_on_both_doors() {
    const QUIET: Duration = Duration::from_secs(3);
    let gw = Gateway::start_with(|config, _| {
        let acme = &mut config["tenants"][0];
        assert_eq!(acme["id"], "acme");
        acme["phases"] = serde_yaml::from_str(
            "[{ until: '2020-01-01T00:00:00Z', rules: profile },
              { gone: true, after_quiet: { kinds: [timeclock], for: 3s } }]",
        )
        .unwrap();
        config["census"] = serde_yaml::from_str("{ snapshot_interval: 1s }").unwrap();
    });
    // HTTP/1.1 and HTTP/2 (ALPN) on the https listener.
    let doors = [
        gw.client_builder("https").http1_only().build().unwrap(),
        gw.client("https"),
    ];
    let web = gw.url("https://acme.flexhosting.se/HRM/Start");
    let timeclock = gw.url("https://acme.flexhosting.se/Timeclock");
    // Due since 2020, but the census has only just begun watching: held.
    for door in &doors {
        let resp = door.get(&web).send().await.unwrap();
        assert_eq!(resp.status(), 307, "{:?}: the phase before", resp.version());
    }
    assert_eq!(
        gw.metric("signpost_tenant_phase_held{tenant=\"acme\"} "),
        1.0
    );
    assert_eq!(gw.metric("signpost_tenant_phase{tenant=\"acme\"} "), 1.0);
    let e = explain(&gw, "https://acme.flexhosting.se/HRM/Start");
    assert_eq!(
        (&e["held"], &e["phase"], &e["action"]),
        (&true.into(), &1.into(), &"redirect".into()),
        "{e}"
    );
    assert_eq!(e["held_by"]["phase"], 2, "{e}");

    // Timeclock clients keep calling past the quiet time: still held, on both doors.
    let calling_until = std::time::Instant::now() + QUIET + Duration::from_secs(1);
    let mut versions = std::collections::BTreeSet::new();
    let mut last_call = std::time::Instant::now();
    while std::time::Instant::now() < calling_until {
        for door in &doors {
            let sent = std::time::Instant::now();
            let resp = door.get(&timeclock).send().await.unwrap();
            last_call = sent;
            versions.insert(format!("{:?}", resp.version()));
            assert_eq!(resp.status(), 307, "a held phase keeps the rules");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(versions.len(), 2, "both doors: {versions:?}");
    let report: serde_json::Value = serde_json::from_str(&gw.admin("/stragglers.json").1).unwrap();
    let acme = report["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "acme")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(acme["held"]["phase"], 2, "{acme:#}");
    assert_eq!(acme["held"]["kinds"], serde_json::json!(["timeclock"]));
    assert!(acme["held"]["clients"].as_u64().unwrap() >= 1, "{acme:#}");
    let page = gw.admin("/stragglers").1;
    assert!(page.contains("held by"), "the page says the phase waits");

    // Quiet now: the phase starts on both doors once the quiet time has passed since the
    // last call (the census counts in whole seconds, so up to one second early), and within
    // a judge tick and a drain of it.
    let released = loop {
        let statuses = [
            doors[0].get(&web).send().await.unwrap().status(),
            doors[1].get(&web).send().await.unwrap().status(),
        ];
        if statuses == [410, 410] {
            break last_call.elapsed();
        }
        assert!(
            statuses.iter().all(|s| s.as_u16() == 307),
            "one phase for both doors: {statuses:?}"
        );
        assert!(
            last_call.elapsed() < QUIET + Duration::from_secs(4),
            "never released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        released >= QUIET - Duration::from_secs(1),
        "released after {released:?}"
    );
    assert_eq!(
        gw.metric("signpost_tenant_phase_held{tenant=\"acme\"} "),
        0.0
    );
    assert_eq!(gw.metric("signpost_tenant_phase{tenant=\"acme\"} "), 2.0);
    // `explain` reads the state file (saved every second) and agrees.
    std::thread::sleep(Duration::from_millis(1500));
    let e = explain(&gw, "https://acme.flexhosting.se/HRM/Start");
    assert_eq!(
        (&e["phase"], &e["action"]),
        (&2.into(), &"gone".into()),
        "{e}"
    );
    assert!(e.get("held").is_none(), "{e}");
}
