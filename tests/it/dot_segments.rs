//! Property: no path escapes a rule's template. For random paths built from `.`, `..`, `%2e`,
//! `/`, `\`, `%2f`, `%5c`, `;` and letters behind the calendar rule's prefix, routed as a
//! browser (redirect) and as a calendar client (forward), the `Location`'s path and the
//! upstream target:
//! - parse as URIs, with no byte that may not stand in one;
//! - still start with the template's prefix (`/calendar/1234/`) after an origin does its worst
//!   to them: decodes `%2e`, `%2f` and `%5c`, reads `\` as `/`, and resolves dot segments
//!   (RFC 3986 §5.2.4).
//!
//! Such a path is refused (`400`) or served inside the prefix; it never reaches `/admin` or
//! another customer's calendar.

use http::{HeaderMap, HeaderValue, Method, Uri};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use signpost::route::{route, Decision, Request, Scheme};

const PREFIX: &str = "/calendar/1234/";

fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        ".", "..", "%2e", "%2E", "%2e%2e", ".%2e", "/", "/", "/", "\\", "%2f", "%2F", "%5c", ";",
        "a", "b", "admin", "5678",
    ])
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 1..12)
        .prop_map(|pieces| format!("/HRM/Calendar/{}", pieces.concat()))
}

/// What a lenient origin makes of a path: percent-decoded dots and slashes, `\` as `/`, dot
/// segments resolved (above the root clamped to it, as RFC 3986 says).
fn as_an_origin_reads_it(path: &str) -> String {
    let decoded = path
        .replace("%2e", ".")
        .replace("%2E", ".")
        .replace("%2f", "/")
        .replace("%2F", "/")
        .replace("%5c", "/")
        .replace("%5C", "/")
        .replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        // `;` parameters, as Tomcat-like origins read them.
        let bare = segment.split(';').next().unwrap_or("");
        match bare {
            "." => {}
            ".." => {
                out.pop();
            }
            _ => out.push(segment),
        }
        if last && (bare == "." || bare == "..") {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

fn valid_uri_bytes(text: &str) -> bool {
    text.bytes().enumerate().all(|(i, b)| {
        b.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@/?".contains(&b)
            || (b == b'%'
                && text
                    .as_bytes()
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)))
    })
}

fn check(
    table: &signpost::table::Table,
    path: &str,
    counts: &mut [u32; 3],
) -> Result<(), TestCaseError> {
    let Ok(uri) = path.parse::<Uri>() else {
        return Ok(()); // refused by the request parser before routing
    };
    for agent in [
        "Mozilla/5.0 (X11) Firefox/130",
        "Microsoft Office/16.0 (Outlook)",
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::HOST,
            HeaderValue::from_static("acme.flexhosting.se"),
        );
        headers.insert(http::header::USER_AGENT, HeaderValue::from_static(agent));
        let req = Request {
            method: &Method::GET,
            scheme: Scheme::Https,
            uri: &uri,
            headers: &headers,
            at: None,
        };
        let routed = route(table, &req);
        let rule = routed.rule.map(|r| r.name.to_string());
        let target = match routed.decision {
            Decision::Reject { status, .. } => {
                prop_assert_eq!(status.as_u16(), 400, "{} → {}", path, status);
                counts[0] += 1;
                continue;
            }
            Decision::Redirect { location, .. } => {
                counts[1] += 1;
                let rest = location
                    .strip_prefix("https://web.flexhrm.com")
                    .ok_or_else(|| TestCaseError::fail(format!("{path} → {location}")))?;
                rest.to_owned()
            }
            Decision::Forward { path: target, .. } => {
                counts[2] += 1;
                target
            }
            Decision::Gone { .. } => continue,
            Decision::Challenge { .. } => {
                let why = format!("{path} answered as an ACME challenge with no order in progress");
                return Err(TestCaseError::fail(why));
            }
        };
        prop_assert!(valid_uri_bytes(&target), "{} → {:?}", path, target);
        prop_assert!(target.parse::<Uri>().is_ok(), "{} → {:?}", path, target);
        if rule.as_deref() == Some("calendar") {
            let read = as_an_origin_reads_it(&target);
            prop_assert!(
                read.starts_with(PREFIX),
                "{} → {:?}, which an origin reads as {:?}",
                path,
                target,
                read
            );
        }
    }
    Ok(())
}

#[test]
fn no_path_escapes_the_calendar_template() {
    let config = signpost::config::load(&crate::common::repo().join("config/example.yaml"), None)
        .expect("the example config loads");
    let mut runner = TestRunner::new(Config {
        cases: 20_000,
        failure_persistence: None,
        ..Config::default()
    });
    // [refused, redirected, forwarded]
    let counts = std::cell::RefCell::new([0u32; 3]);
    runner
        .run(&path(), |p| {
            check(&config.table, &p, &mut counts.borrow_mut())
        })
        .unwrap();
    let counts = counts.into_inner();
    eprintln!(
        "dot segments: {} refused, {} redirected, {} forwarded; 0 escapes",
        counts[0], counts[1], counts[2]
    );
    assert!(
        counts.iter().all(|&n| n > 100),
        "outcomes not reached: {counts:?}"
    );
}

#[test]
fn the_origin_model_resolves_as_rfc_3986_does() {
    assert_eq!(
        as_an_origin_reads_it("/calendar/1234/a/../../../admin"),
        "/admin"
    );
    assert_eq!(
        as_an_origin_reads_it("/calendar/1234/..%2f..%2f5678"),
        "/5678"
    );
    assert_eq!(
        as_an_origin_reads_it("/calendar/1234/a%5c..%5c..%5cx"),
        "/calendar/x"
    );
    assert_eq!(as_an_origin_reads_it("/calendar/1234/..;/x"), "/calendar/x");
    assert_eq!(
        as_an_origin_reads_it("/calendar/1234/a/."),
        "/calendar/1234/a/"
    );
}
