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
