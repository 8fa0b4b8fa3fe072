//! The real gateway over real sockets: every shared vector over HTTP and HTTPS, forwarding to a
//! real HTTPS upstream, HTTP/2, keep-alive, and the reject paths.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::raw::Raw;
use crate::common::{served_names, vectors_path, Gateway, TestCa, Upstream, UPSTREAM_BODY};
use serde::Deserialize;
use serde_yaml::Value;

const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    expect: BTreeMap<String, Value>,
}

fn load_vectors() -> Vec<Case> {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str::<Cases>(&text).unwrap().cases
}

/// Sends every vector to the running gateway with `scheme` and checks what came back (and, for
/// forwards, what reached the upstream).
async fn run_vectors(scheme: &str) {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&upstream, &ca)));
    let client = gw.client(scheme);
    // No development certificate covers the unknown host; its SNI gets the default one.
    let lenient = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .resolve("unknown.example.org", gw.addr_for(scheme))
        .build()
        .unwrap();
    let mut failures = Vec::new();
    for case in load_vectors() {
        let mut legacy = reqwest::Url::parse(&case.url).unwrap();
        legacy.set_scheme(scheme).unwrap();
        let url = gw.url(legacy.as_str());
        let method = case.method.clone().unwrap_or_else(|| "GET".into());
        let client = if legacy.host_str() == Some("unknown.example.org") {
            &lenient
        } else {
            &client
        };
        let mut req = client.request(method.parse().unwrap(), &url);
        for (k, v) in &case.headers {
            req = req.header(k, v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = resp.text().await.unwrap();
        let seen = upstream.take();
        let want = |k: &str| case.expect.get(k);
        let mut check = |what: &str, ok: bool, detail: String| {
            if !ok {
                failures.push(format!("{method} {url}: {what}: {detail}"));
            }
        };
        match want("action").and_then(Value::as_str) {
            Some("redirect") => {
                let expected = want("location").and_then(Value::as_str).map(str::to_owned);
                check(
                    "location",
                    location == expected,
                    format!("expected {expected:?}, got {location:?} (status {status})"),
                );
                let want_status = want("status").and_then(Value::as_u64).unwrap_or(307) as u16;
                check(
                    "status",
                    status == want_status,
                    format!("expected {want_status}, got {status}"),
                );
                check("upstream untouched", seen.is_empty(), format!("{seen:?}"));
            }
            Some("forward") => {
                let target =
                    reqwest::Url::parse(want("url").and_then(Value::as_str).unwrap()).unwrap();
                let path = match target.query() {
                    Some(q) => format!("{}?{q}", target.path()),
                    None => target.path().to_owned(),
                };
                check(
                    "client got upstream's answer",
                    status == 201 && body == UPSTREAM_BODY,
                    format!("{status} {body:?}"),
                );
                check("one upstream request", seen.len() == 1, format!("{seen:?}"));
                if let Some(s) = seen.first() {
                    check(
                        "upstream path",
                        s.target == path,
                        format!("expected {path}, got {}", s.target),
                    );
                    let host = s.header("host");
                    check(
                        "upstream Host",
                        host.as_deref() == target.host_str(),
                        format!("got {host:?}"),
                    );
                    check(
                        "upstream method",
                        s.method == method,
                        format!("got {}", s.method),
                    );
                }
            }
            Some("gone") => {
                check("status", status == 410, format!("got {status}"));
                check("gone page", body.contains("<h1>"), body.clone());
            }
            Some("reject") => {
                let want_status = want("status").and_then(Value::as_u64).unwrap() as u16;
                check(
                    "status",
                    status == want_status,
                    format!("expected {want_status}, got {status}"),
                );
                check("no Location", location.is_none(), format!("{location:?}"));
            }
            other => panic!("vector without a known action: {other:?}"),
        }
    }
    assert!(
        failures.is_empty(),
        "{} vector checks failed over {scheme}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn every_vector_over_http() {
    run_vectors("http").await;
}

#[tokio::test]
async fn every_vector_over_https() {
    run_vectors("https").await;
}

#[tokio::test]
async fn sni_chooses_the_certificate_per_host() {
    let gw = Gateway::start_example(None);
    let client = gw.client("https");
    for (host, expect) in [
        ("acme.flexhosting.se", "*.flexhosting.se"),
        ("hrm.exempel.com", "hrm.exempel.com"),
        ("exempel.com", "exempel.com"),
    ] {
        let resp = client
            .get(gw.url(&format!("https://{host}/Timeclock")))
            .send()
            .await
            .unwrap();
        let names = served_names(&resp);
        assert!(
            names.iter().any(|n| n == expect),
            "{host}: served {names:?}, expected one naming {expect}"
        );
        assert_eq!(resp.status(), 307, "{host}");
    }
}

#[tokio::test]
async fn forward_keeps_method_body_and_authorization_and_rewrites_host() {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&upstream, &ca)));
    let body = r#"{"employee":"E-17","minutes":480}"#;
    let resp = gw
        .client("https")
        .post(gw.url("https://exempel.com/HRM/API/v1/timetransactions?dryRun=true&x=%2F"))
        .header("authorization", "Bearer s3cr3t-token")
        .header("content-type", "application/json")
        .header("x-forwarded-for", "203.0.113.66")
        .header("x-forwarded-port", "1")
        .header("forwarded", "for=203.0.113.66;host=evil.example")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    assert_eq!(status, 201);
    assert_eq!(headers.get("x-upstream").unwrap(), "stand-in");
    // exempel has deprecation and sunset dates: forwarded responses carry them.
    assert_eq!(headers.get("deprecation").unwrap(), "@1759276800");
    assert_eq!(
        headers.get("sunset").unwrap(),
        "Tue, 30 Jun 2026 00:00:00 GMT"
    );
    assert_eq!(
        headers.get("link").unwrap(),
        "<https://api.flexhrm.com/v1/timetransactions?dryRun=true&x=%2F>; rel=\"successor-version\""
    );
    assert_eq!(resp.text().await.unwrap(), UPSTREAM_BODY);

    let seen = upstream.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let s = &seen[0];
    assert_eq!(s.method, "POST");
    assert_eq!(s.target, "/v1/timetransactions?dryRun=true&x=%2F");
    assert_eq!(s.header("host").as_deref(), Some("api.flexhrm.com"));
    assert_eq!(
        s.header("authorization").as_deref(),
        Some("Bearer s3cr3t-token")
    );
    assert_eq!(
        s.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(String::from_utf8_lossy(&s.body), body);
    // A client's own X-Forwarded-For is replaced, not trusted; other forwarding claims dropped.
    assert_eq!(s.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(s.header("x-forwarded-port"), None);
    assert_eq!(s.header("forwarded"), None);
    assert_eq!(s.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(
        s.header("x-forwarded-host").as_deref(),
        Some(format!("exempel.com:{}", gw.https.port()).as_str())
    );
}

#[tokio::test]
async fn adaptive_rule_forwards_calendar_clients_and_redirects_browsers() {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&upstream, &ca)));
    let client = gw.client("http");
    let url = gw.url("http://acme.flexhosting.se/HRM/Calendar/3f9a1c2e.ics?v=2");
    let resp = client
        .get(&url)
        .header(
            "user-agent",
            "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let seen = upstream.take();
    assert_eq!(seen[0].target, "/calendar/1234/3f9a1c2e.ics?v=2");
    assert_eq!(seen[0].header("host").as_deref(), Some("web.flexhrm.com"));
    assert_eq!(seen[0].header("x-forwarded-proto").as_deref(), Some("http"));

    let resp = client
        .get(&url)
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 307);
    assert_eq!(
        resp.headers()["location"],
        "https://web.flexhrm.com/calendar/1234/3f9a1c2e.ics?v=2"
    );
    assert!(upstream.take().is_empty());
}

#[tokio::test]
async fn redirect_over_http2() {
    let gw = Gateway::start_example(None);
    let resp = gw
        .get("https://acme.flexhosting.se/Timeclock/Fabriksklocka")
        .await;
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 307);
    assert_eq!(
        resp.headers()["location"],
        "https://timeclock.flexhrm.com/Fabriksklocka/1234"
    );
}

/// `Deprecation`, `Sunset` and `Link` on a tenant with dates, and the sunset as a metric.
#[tokio::test]
async fn redirect_carries_deprecation_signals() {
    let gw = Gateway::start_example(None);
    let resp = gw.get("http://hrm.exempel.com/Mobile/today").await;
    assert_eq!(resp.status(), 307);
    let h = resp.headers();
    assert_eq!(h["location"], "https://mobile.flexhrm.com/today");
    assert_eq!(h["deprecation"], "@1759276800");
    assert_eq!(h["sunset"], "Tue, 30 Jun 2026 00:00:00 GMT");
    assert_eq!(
        h["link"],
        "<https://mobile.flexhrm.com/today>; rel=\"successor-version\""
    );
    // acme has no dates: no signals.
    let resp = gw.get("http://acme.flexhosting.se/Mobile/today").await;
    assert!(resp.headers().get("deprecation").is_none());
    // The same sunset, for alerts on traffic after it; none for acme.
    let sunset = "signpost_tenant_sunset_timestamp_seconds{tenant=";
    let (_, metrics) = gw.admin("/metrics");
    assert!(
        metrics.contains(&format!("{sunset}\"exempel\"}} 1782777600\n")),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&format!("{sunset}\"acme\"}}")),
        "{metrics}"
    );
}

/// Every name the certificates in `tls.certs` serve, with its certificate's `notAfter` as
/// openssl reads it, so that an alert can fire before clients start refusing it.
#[tokio::test]
async fn certificate_expiries_are_exported_for_every_name_served() {
    let gw = Gateway::start_example(None);
    let (_, metrics) = gw.admin("/metrics");
    for (file, names) in [
        ("exempel-com.crt", &["hrm.exempel.com", "exempel.com"][..]),
        (
            "flexhosting-se.crt",
            &["*.flexhosting.se", "flexhosting.se"][..],
        ),
    ] {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
            .arg(crate::common::repo().join("certs").join(file))
            .output()
            .expect("openssl (scripts/install-deps clients)");
        let text = String::from_utf8(out.stdout).unwrap();
        let at = text.trim().strip_prefix("notAfter=").unwrap();
        let not_after: jiff::Timestamp = at.replace(' ', "T").parse().unwrap();
        for name in names {
            let line = format!(
                "signpost_certificate_expiry_timestamp_seconds{{host=\"{name}\",source=\"operator\"}} {}\n",
                not_after.as_second()
            );
            assert!(metrics.contains(&line), "{line} not in\n{metrics}");
        }
    }
}

#[tokio::test]
async fn keep_alive_holds_across_100_redirects_on_one_connection() {
    let gw = Gateway::start_example(None);
    let mut conn = Raw::connect(gw.http).await;
    for i in 0..100 {
        conn.send(format!("GET /Timeclock/Clock{i} HTTP/1.1\r\nHost: acme.flexhosting.se\r\nUser-Agent: terminal/1.0\r\n\r\n").as_bytes()).await;
        let resp = conn.response(PATIENCE, false).await.expect("an answer");
        assert_eq!(resp.status, 307, "request {i}: {}", resp.head);
        let location = format!("https://timeclock.flexhrm.com/Clock{i}/1234");
        assert_eq!(
            resp.header("location"),
            Some(location.as_str()),
            "request {i}"
        );
        assert!(!resp.closes(), "request {i}: {}", resp.head);
    }
}

#[tokio::test]
async fn unknown_host_gets_421_without_location() {
    let gw = Gateway::start_example(None);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client
        .get(format!("http://{}/Timeclock", gw.http))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 421);
    assert!(resp.headers().get("location").is_none());
}

#[tokio::test]
async fn missing_host_and_bad_captures_get_400() {
    let gw = Gateway::start_example(None);
    for request in [
        "GET /Timeclock HTTP/1.0\r\n\r\n",
        "GET /Timeclock HTTP/1.1\r\nHost: acme.flexhosting.se\r\nHost: exempel.com\r\n\r\n",
        "GET http://exempel.com/Timeclock HTTP/1.1\r\nHost: acme.flexhosting.se\r\n\r\n",
        "GET /Timeclock HTTP/1.1\r\nHost: a b\r\n\r\n",
    ] {
        let mut conn = Raw::connect(gw.http).await;
        conn.send(request.as_bytes()).await;
        let resp = conn.response(PATIENCE, false).await.expect("an answer");
        assert_eq!(resp.status, 400, "{request:?} → {}", resp.head);
        assert_eq!(resp.header("location"), None, "{}", resp.head);
    }
}

#[tokio::test]
async fn unreachable_upstream_is_a_502() {
    let closed = crate::common::closed_port();
    let gw = Gateway::start_with(|config, _| {
        config["upstreams"]["api"]["address"] = Value::from(closed.to_string());
    });
    let resp = gw.get("http://acme.flexhosting.se/HRM/API/v1/x").await;
    assert_eq!(resp.status(), 502);
}

#[tokio::test]
async fn upstream_with_an_untrusted_certificate_is_a_502_never_an_insecure_forward() {
    let trusted = TestCa::new();
    let stranger = TestCa::new();
    // The upstream's certificate comes from a CA the gateway was not told about.
    let upstream = Upstream::start(&stranger, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&upstream, &trusted)));
    let resp = gw.get("http://acme.flexhosting.se/HRM/API/v1/x").await;
    assert_eq!(resp.status(), 502);
    assert!(
        upstream.take().is_empty(),
        "the upstream must not have received the request"
    );
}

/// Pipelined redirects, forwards and a HEAD are all answered, in order, on one connection.
#[tokio::test]
async fn pipelined_redirects_and_forwards_share_one_connection() {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&upstream, &ca)));
    let mut conn = Raw::connect(gw.http).await;
    let host = "Host: acme.flexhosting.se\r\n";
    conn.send(format!(
        "GET /Timeclock/A HTTP/1.1\r\n{host}\r\nGET /HRM/API/v1/one?x=1 HTTP/1.1\r\n{host}\r\nGET /Timeclock/B HTTP/1.1\r\n{host}\r\nHEAD /HRM/ShiftRequest/1 HTTP/1.1\r\n{host}\r\n"
    ).as_bytes()).await;
    let mut heads = Vec::new();
    for head_request in [false, false, false, true] {
        // HEAD: headers only, whatever Content-Length says.
        let resp = conn
            .response(PATIENCE, head_request)
            .await
            .expect("an answer");
        heads.push(resp.head);
    }
    assert!(
        heads[0].starts_with("HTTP/1.1 307") && heads[0].contains("/A/1234"),
        "{}",
        heads[0]
    );
    assert!(heads[1].starts_with("HTTP/1.1 201"), "{}", heads[1]);
    assert!(
        heads[2].starts_with("HTTP/1.1 307") && heads[2].contains("/B/1234"),
        "{}",
        heads[2]
    );
    assert!(heads[3].starts_with("HTTP/1.1 410"), "{}", heads[3]);
    let seen = upstream.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/v1/one?x=1");
}

/// Many streams at once on one HTTP/2 connection, all sent before any answer is read:
/// redirects and `HEAD`s of a `410` (answered in the connection's own loop, several from one
/// read), forwards and requests with `content-length: 0` (each finished in a task of its own).
/// Every stream gets its own answer.
#[tokio::test]
async fn concurrent_http2_streams_each_get_their_own_answer() {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&upstream, &ca)));
    let tls = crate::common::h2::tls(gw.https, "acme.flexhosting.se").await;
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let mut pending = Vec::new();
    for i in 0..40 {
        let base = "https://acme.flexhosting.se";
        let (request, want) = match i % 4 {
            0 => (
                http::Request::get(format!("{base}/Timeclock/T{i}")),
                (307, format!("/T{i}/1234")),
            ),
            1 => (
                http::Request::get(format!("{base}/HRM/API/v1/one?x={i}")),
                (201, String::new()),
            ),
            2 => (
                http::Request::head(format!("{base}/HRM/ShiftRequest/{i}")),
                (410, String::new()),
            ),
            _ => (
                http::Request::get(format!("{base}/Timeclock/E{i}")).header("content-length", "0"),
                (307, format!("/E{i}/1234")),
            ),
        };
        let (response, _) = send.send_request(request.body(()).unwrap(), true).unwrap();
        pending.push((i, response, want));
    }
    for (i, response, (status, location)) in pending {
        let response = tokio::time::timeout(PATIENCE, response)
            .await
            .unwrap_or_else(|_| panic!("stream {i}: no answer"))
            .unwrap_or_else(|e| panic!("stream {i}: {e}"));
        assert_eq!(response.status(), status, "stream {i}");
        let got = response
            .headers()
            .get("location")
            .map_or("", |l| l.to_str().unwrap());
        assert!(
            got.ends_with(&location) && (location.is_empty() == got.is_empty()),
            "stream {i}: location {got:?}, expected one ending {location:?}"
        );
    }
    let mut targets: Vec<_> = upstream.take().into_iter().map(|s| s.target).collect();
    targets.sort();
    let mut expected: Vec<_> = (0..40)
        .filter(|i| i % 4 == 1)
        .map(|i| format!("/v1/one?x={i}"))
        .collect();
    expected.sort();
    assert_eq!(targets, expected);
}

/// An HTTP/1 forward: the same rewriting, signalling and header rules as over HTTP/2, and a
/// streamed (chunked) answer passed through whole.
#[tokio::test]
async fn http1_forward_streams_and_rewrites_like_http2() {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&upstream, &ca)));
    let resp = gw
        .client("http")
        .get(gw.url("http://exempel.com/HRM/API/v2/stream?since=2026-01-01"))
        .header("authorization", "Basic aW50ZWdyYXRpb246c2VjcmV0")
        .header("x-forwarded-for", "203.0.113.66")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-port", "1")
        .header("forwarded", "for=203.0.113.66;host=evil.example")
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let h = resp.headers().clone();
    assert_eq!(h["x-upstream"], "stand-in");
    assert_eq!(h["deprecation"], "@1759276800");
    assert_eq!(
        h["link"],
        "<https://api.flexhrm.com/v2/stream?since=2026-01-01>; rel=\"successor-version\""
    );
    assert_eq!(resp.text().await.unwrap(), crate::common::STREAMED.concat());
    let seen = upstream.take();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let s = &seen[0];
    assert_eq!(
        (s.method.as_str(), s.target.as_str()),
        ("GET", "/v2/stream?since=2026-01-01")
    );
    assert_eq!(s.header("host").as_deref(), Some("api.flexhrm.com"));
    assert_eq!(
        s.header("authorization").as_deref(),
        Some("Basic aW50ZWdyYXRpb246c2VjcmV0")
    );
    assert_eq!(s.header("accept").as_deref(), Some("application/json"));
    assert_eq!(s.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(s.header("x-forwarded-port"), None);
    assert_eq!(s.header("forwarded"), None);
    assert_eq!(s.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        s.header("x-forwarded-host").as_deref(),
        Some(format!("exempel.com:{}", gw.http.port()).as_str())
    );
}

/// HTTPS clients that speak only HTTP/1.1 (most scripts and terminals) are served by the
/// front door too: a redirect and a forward over TLS.
#[tokio::test]
async fn https_http1_clients_get_redirects_and_forwards() {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&upstream, &ca)));
    let dev_ca = std::fs::read(crate::common::repo().join("certs/dev-ca/ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(&dev_ca).unwrap())
        .resolve("hrm.exempel.com", gw.https)
        .build()
        .unwrap();
    let resp = client
        .get(gw.url("https://hrm.exempel.com/Timeclock/Lager"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 307);
    assert_eq!(
        resp.headers()["location"],
        "https://timeclock.flexhrm.com/Lager/5678"
    );
    assert_eq!(resp.headers()["sunset"], "Tue, 30 Jun 2026 00:00:00 GMT");
    let resp = client
        .get(gw.url("https://hrm.exempel.com/HRM/API/v1/me"))
        .header("authorization", "Bearer t")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.text().await.unwrap(), UPSTREAM_BODY);
    let seen = upstream.take();
    assert_eq!(
        seen[0].header("x-forwarded-proto").as_deref(),
        Some("https")
    );
    assert_eq!(seen[0].header("authorization").as_deref(), Some("Bearer t"));
}

/// Heads larger than the front door's first buffer are answered like small ones, up to the
/// 64 KiB limit; a larger head gets 431.
#[tokio::test]
async fn large_request_heads_are_answered_up_to_the_limit() {
    let gw = Gateway::start_example(None);
    let too_large = gw
        .client("http")
        .get(gw.url("http://acme.flexhosting.se/Timeclock"))
        .header("cookie", format!("session={}", "x".repeat(70_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 431);
    for size in [100, 10_000, 20_000, 60_000] {
        let resp = gw
            .client("http")
            .get(gw.url("http://acme.flexhosting.se/Timeclock"))
            .header("cookie", format!("session={}", "x".repeat(size)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 307, "cookie of {size} bytes");
        assert_eq!(
            resp.headers()["location"],
            "https://timeclock.flexhrm.com/default/1234"
        );
    }
}

/// A client that sends `Expect: 100-continue` and waits: a forward tells it to go ahead, then
/// relays its body; an answered request is answered at once, without reading a body the
/// client has not sent, and the connection closes after it (the client may still send it).
#[tokio::test]
async fn expect_100_continue_gets_a_go_ahead_only_when_the_body_is_wanted() {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&upstream, &ca)));
    let head = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: acme.flexhosting.se\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    };
    let mut conn = Raw::connect(gw.http).await;
    conn.send(head("/HRM/API/v1/punch").as_bytes()).await;
    let go_ahead = conn
        .response(PATIENCE, false)
        .await
        .expect("an interim answer");
    assert_eq!(go_ahead.status, 100, "{}", go_ahead.head);
    conn.send(b"hello").await;
    let answer = conn
        .response(PATIENCE, false)
        .await
        .expect("the upstream's answer");
    assert_eq!(answer.status, 201, "{}", answer.head);
    let seen = upstream.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"hello");
    assert_eq!(
        seen[0].header("expect"),
        None,
        "Expect is answered, not passed on"
    );

    let mut conn = Raw::connect(gw.http).await;
    conn.send(head("/Timeclock/Entre").as_bytes()).await;
    let answer = conn.response(PATIENCE, false).await.expect("an answer");
    assert_eq!(answer.status, 307, "{}", answer.head);
    assert!(answer.closes(), "{}", answer.head);
}

/// An HTTP/1.0 client can read no chunked body: its request goes on as HTTP/1.0, the answer
/// ends with the connection, and says so.
#[tokio::test]
async fn an_http10_client_gets_a_body_it_can_read() {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&upstream, &ca)));
    let mut conn = Raw::connect(gw.http).await;
    conn.send(b"GET /HRM/API/v1/stream HTTP/1.0\r\nHost: acme.flexhosting.se\r\n\r\n")
        .await;
    let end = conn.end(PATIENCE).await;
    assert_eq!(end, crate::common::raw::End::Closed);
    let resp = conn.response(PATIENCE, false).await.expect("an answer");
    assert_eq!(resp.status, 201, "{}", resp.head);
    assert_eq!(resp.header("transfer-encoding"), None, "{}", resp.head);
    assert!(resp.closes(), "{}", resp.head);
    assert_eq!(resp.body, crate::common::STREAMED.concat().as_bytes());
}

/// Request bodies reach the upstream whole whatever their framing: a `Content-Length` body
/// larger than any buffer, a chunked one sent in pieces with a trailer, and a chunked one with
/// the next request pipelined right behind it, answered in order on one connection.
#[tokio::test]
async fn request_bodies_arrive_whole_whatever_their_framing() {
    let ca = TestCa::new();
    let upstream = Upstream::start(&ca, &["api.flexhrm.com", "web.flexhrm.com"]).await;
    let gw = Gateway::start_example(Some((&upstream, &ca)));
    let big = "0123456789".repeat(20_000);
    let resp = gw
        .client("http")
        .post(gw.url("http://acme.flexhosting.se/HRM/API/v1/upload"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let seen = upstream.take();
    assert_eq!(seen[0].body.len(), big.len());
    assert!(seen[0].body == big.as_bytes());

    let mut conn = Raw::connect(gw.http).await;
    let head = "POST /HRM/API/v1/chunks HTTP/1.1\r\nHost: acme.flexhosting.se\r\nTransfer-Encoding: chunked\r\n\r\n";
    for piece in [
        head,
        "5\r\nhel",
        "lo\r\n6;ext=1\r\n world\r\n",
        "0\r\nX-Sum: 11\r\n\r\n",
    ] {
        conn.send(piece.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = conn.response(PATIENCE, false).await.expect("an answer");
    assert_eq!(resp.status, 201, "{}", resp.head);
    let seen = upstream.take();
    assert_eq!(seen[0].body, b"hello world");

    conn.send(format!("{head}3\r\nabc\r\n0\r\n\r\nGET /Timeclock/Next HTTP/1.1\r\nHost: acme.flexhosting.se\r\n\r\n").as_bytes()).await;
    let first = conn
        .response(PATIENCE, false)
        .await
        .expect("the POST's answer");
    assert_eq!(first.status, 201, "{}", first.head);
    let second = conn
        .response(PATIENCE, false)
        .await
        .expect("the GET's answer");
    assert_eq!(second.status, 307, "{}", second.head);
    assert_eq!(upstream.take()[0].body, b"abc");
}
