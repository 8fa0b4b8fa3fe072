//! The README as a new user reads it: the quick start walked as written (`scripts/run-example`
//! on the example's own ports, every `$ ` command run and its answer compared with the one
//! shown), and every YAML block of the README loaded as the config (or the case file) it is.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::repo;

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).unwrap()
}

/// The fenced blocks of `lang` in `text`, in order.
fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    text.split(fence.as_str())
        .skip(1)
        .map(|rest| &rest[..rest.find("```").unwrap()])
        .collect()
}

/// `scripts/run-example` with the test suite's binary; stopped (Ctrl-C to its process group)
/// when dropped.
struct Example(Child);

impl Example {
    fn start() -> Self {
        for port in [8080, 8443, 9090, 8444] {
            assert!(
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "the quick start's port {port} is taken on this machine"
            );
        }
        let child = Command::new(repo().join("scripts/run-example"))
            .env("SIGNPOST_BIN", env!("CARGO_BIN_EXE_signpost"))
            .env("STATE_DIRECTORY", tempfile::tempdir().unwrap().keep())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let example = Example(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let ready = |addr: &str| std::net::TcpStream::connect(addr).is_ok();
        while !(ready("127.0.0.1:8444")
            && crate::common::gateway::admin_get("127.0.0.1:9090".parse().unwrap(), "/-/ready")
                .is_some_and(|(status, _)| status == 200))
        {
            assert!(
                Instant::now() < deadline,
                "scripts/run-example was not ready within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        example
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-INT", "--", &group]).status();
        let _ = self.0.wait();
    }
}

/// The `$ command` lines of a block and the output shown under each.
fn commands(block: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.lines() {
        match line.strip_prefix("$ ") {
            Some(command) => out.push((command.to_owned(), Vec::new())),
            None if line.is_empty() => {}
            None => out.last_mut().unwrap().1.push(line.to_owned()),
        }
    }
    out
}

/// Lines as compared: a response's `Date` changes with every run.
fn comparable(lines: impl IntoIterator<Item = String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| l.trim_end().to_owned())
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("date: "))
        .collect()
}

#[test]
fn the_quick_start_answers_as_the_readme_shows() {
    let text = readme();
    let start = &text[text.find("## Quick start").unwrap()..];
    let shells = blocks(start, "sh");
    assert!(shells[0].contains("scripts/run-example "), "{}", shells[0]);
    assert!(shells[0].contains("scripts/test "), "{}", shells[0]);
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l == "scripts/test"),
        "CI runs the README's test command"
    );

    let _example = Example::start();
    let walked = commands(shells[1]);
    assert!(walked.len() >= 6, "{walked:?}");
    let release = "target/release/signpost";
    for (command, shown) in walked {
        let run = command.replace(release, env!("CARGO_BIN_EXE_signpost"));
        let out = Command::new("sh")
            .args(["-c", &run])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {out:?}");
        let got = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            comparable(got.lines().map(str::to_owned)),
            comparable(shown),
            "{command}"
        );
    }
}

/// Every YAML block of the README is what it says: the configuration reference and its
/// fragments load (a fragment with a listener added), a case file passes on the example.
/// Files the reader must supply (certificates, CA and password files) are the only errors
/// allowed.
#[test]
fn every_yaml_block_of_the_readme_loads() {
    let text = readme();
    let yaml = blocks(&text, "yaml");
    assert!(yaml.len() >= 4, "{}", yaml.len());
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in yaml.iter().enumerate() {
        let path = dir.path().join(format!("block-{i}.yaml"));
        if block.starts_with("cases:") {
            std::fs::write(&path, block).unwrap();
            let out = signpost(&[
                "test",
                "--config",
                "config/example.yaml",
                path.to_str().unwrap(),
            ]);
            assert!(out.status.success(), "README case file {i}: {out:?}");
            continue;
        }
        let listener = if block.lines().any(|l| l.starts_with("listen:")) {
            ""
        } else {
            "listen: { http: 127.0.0.1:0 }\n"
        };
        std::fs::write(&path, format!("{listener}{block}")).unwrap();
        let out = signpost(&["check", "--config", path.to_str().unwrap()]);
        let said = String::from_utf8_lossy(&out.stdout);
        let real: Vec<&str> = said
            .lines()
            .filter(|l| !l.ends_with("No such file or directory (os error 2)"))
            .filter(|l| !l.contains(": ok ("))
            .collect();
        assert!(
            real.is_empty(),
            "README YAML block {i}:\n{block}\n{}",
            real.join("\n")
        );
    }
}

fn signpost(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(args)
        .current_dir(repo())
        .env("STATE_DIRECTORY", Path::new("/nonexistent-signpost-state"))
        .output()
        .unwrap()
}
