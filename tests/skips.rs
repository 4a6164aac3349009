//! A test that cannot run on this machine is reported as not run: ignored,
//! with the reason, and counted as ignored in its file's summary line,
//! never as passed (README, "Quick start"). Unless CI asks for it
//! (GOSSIPNET_REQUIRE_BROWSER, GOSSIPNET_REQUIRE_NETNS), when it fails.
//!
//! These run the browser and namespace test executables that cargo built
//! beside this one, with a PATH on which neither Chromium nor `ip` is.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

/// The newest test executable `name-<hash>` beside this one.
fn test_executable(name: &str) -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let prefix = format!("{name}-");
    std::fs::read_dir(&deps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let file = p.file_name().unwrap().to_string_lossy();
            let hash = file
                .strip_prefix(&prefix)
                .map(|rest| rest.trim_end_matches(std::env::consts::EXE_SUFFIX));
            hash.is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .max_by_key(|p| p.metadata().unwrap().modified().unwrap())
        .unwrap_or_else(|| {
            panic!(
                "no {name} test executable in {}: run cargo test",
                deps.display()
            )
        })
}

/// Runs test executable `name` with `args`, and an empty PATH; with
/// `require` set to 1, or not set at all.
fn run_without_tools(name: &str, args: &[&str], require: Option<&str>) -> Output {
    let mut command = Command::new(test_executable(name));
    command
        .args(args)
        .env("PATH", "")
        .env_remove("GOSSIPNET_CHROMIUM")
        .env_remove("GOSSIPNET_REQUIRE_BROWSER")
        .env_remove("GOSSIPNET_REQUIRE_NETNS");
    if let Some(variable) = require {
        command.env(variable, "1");
    }
    command.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[cfg(unix)]
#[test]
fn without_chromium_the_browser_test_is_reported_as_ignored_with_the_reason() {
    let filter = ["clicking_kill"];
    let out = run_without_tools("web_view", &filter, None);
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("test clicking_kill"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("ignored") && line.contains("needs Chromium"),
        "{line}"
    );
    assert!(
        text.contains("0 passed; 0 failed; 1 ignored"),
        "the summary counts it as ignored: {text}"
    );

    let out = run_without_tools("web_view", &filter, Some("GOSSIPNET_REQUIRE_BROWSER"));
    let text = crate::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("1 failed"), "{text}");
}

#[cfg(target_os = "linux")]
#[test]
fn without_iproute2_the_namespace_tests_are_reported_as_ignored_with_the_reason() {
    let out = run_without_tools("netns", &[], None);
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    let skipped: Vec<&str> = text.lines().filter(|l| l.contains("... ignored")).collect();
    assert_eq!(skipped.len(), 4, "{text}");
    for line in skipped {
        assert!(line.contains("needs root, iproute2 and nftables"), "{line}");
    }
    assert!(
        text.contains("1 passed; 0 failed; 4 ignored"),
        "the summary counts them as ignored: {text}"
    );

    let out = run_without_tools("netns", &[], Some("GOSSIPNET_REQUIRE_NETNS"));
    let text = crate::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("4 failed"), "{text}");
}
