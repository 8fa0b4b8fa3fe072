//! The straggler page in a real browser: headless Chromium loads `/stragglers` and the rows
//! and chart are there. Skips, saying why, when Chromium is not installed
//! (`scripts/install-deps chromium` installs it; `scripts/test` does).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::Gateway;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
}

/// Runs headless Chromium on `url` with the flags this sandbox needs; returns stdout.
fn headless(browser: &PathBuf, url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn straggler_page_shows_every_client_in_a_browser() {
    let Some(browser) = chromium() else {
        eprintln!("SKIPPED straggler_page_shows_every_client_in_a_browser: no chromium on PATH (scripts/install-deps chromium)");
        return;
    };
    let gw = Gateway::start_example(None);
    let client = gw.client("http");
    for (host, agent) in [
        ("acme.flexhosting.se", "TimeTerminal/4.2"),
        (
            "acme.flexhosting.se",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0",
        ),
        ("hrm.exempel.com", "Outlook-iOS/709.2226530.prod.iphone"),
    ] {
        client
            .get(gw.url(&format!("http://{host}/Timeclock/Lager")))
            .header("user-agent", agent)
            .send()
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.admin("/stragglers.json").1.contains("Outlook-iOS") {
        assert!(Instant::now() < deadline, "census did not fill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = format!("http://{}/stragglers", gw.admin);
    let dom = headless(&browser, &url, &["--dump-dom"]);
    assert_eq!(dom.matches("<tr class=\"client\"").count(), 3, "{dom}");
    for expected in [
        "id=\"tenant-acme\"",
        "id=\"tenant-exempel\"",
        "TimeTerminal/4.2",
        "Outlook-iOS/709.2226530.prod.iphone",
        "class=\"series\"",
        "data-kind=\"timeclock\"",
    ] {
        assert!(
            dom.contains(expected),
            "{expected} missing from the rendered page:\n{dom}"
        );
    }
    // A picture for people, kept out of git (target/ is ignored).
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("stragglers.screenshot.png");
    headless(
        &browser,
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,800",
        ],
    );
    assert!(
        shot.metadata().map(|m| m.len() > 1000).unwrap_or(false),
        "no screenshot at {}",
        shot.display()
    );
}
