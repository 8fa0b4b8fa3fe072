//! The deployment files are valid for the tools that will read them: the systemd unit passes
//! `systemd-analyze verify` and its sandboxing scores as "OK" in `systemd-analyze security`.
//! Skips, saying so, where systemd's tools are absent.

use std::process::Command;

use crate::common::repo;

/// The unit as shipped, with the installed binary's path replaced by this build's (verify
/// checks that `ExecStart` exists).
fn unit_for_this_build(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/signpost.service")).unwrap();
    assert!(unit.contains("/usr/local/bin/signpost run --config"));
    let path = dir.join("signpost.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/signpost", env!("CARGO_BIN_EXE_signpost")),
    )
    .unwrap();
    path
}

#[test]
fn systemd_unit_verifies_and_is_sandboxed() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Exposure 0 (locked down) to 10 (unprotected); "OK" is below 2, which `--threshold` writes
    // as 20 (tenths).
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure above 2:\n{text}");
    let score = text
        .lines()
        .rev()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("");
    eprintln!("{}", score.trim());
}
