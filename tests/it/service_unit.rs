//! The systemd unit shipped in the .deb (`packaging/orki-webhooksd.service`):
//! `systemd-analyze verify` finds nothing wrong with it, its sandbox stays
//! tight (`systemd-analyze security`), it serves the data directory systemd
//! makes for it, and `tauri.conf.json` installs it and the daemon where the
//! unit expects them. Needs `systemd-analyze` (Debian's `systemd`, installed by
//! `scripts/setup-debian`), not a running systemd.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::daemon;

/// Where the .deb installs the daemon; the unit's `ExecStart` runs it.
const INSTALLED_BINARY: &str = "/usr/bin/orki-webhooksd";
/// Where the .deb installs the unit.
const INSTALLED_UNIT: &str = "/usr/lib/systemd/system/orki-webhooksd.service";
/// The unit in the repository.
const UNIT: &str = "packaging/orki-webhooksd.service";
/// The highest overall exposure `systemd-analyze security` may rate the unit,
/// in tenths (it is 1.2 today; 10.0 is no sandbox at all).
const MAX_EXPOSURE_TENTHS: u32 = 20;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

fn unit_text() -> String {
    let path = repo_root().join(UNIT);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `unit` written as `orki-webhooksd.service` in a temporary directory, with
/// the installed binary's path replaced by the one built for this test run
/// (`verify` checks that `ExecStart` can be executed).
fn unit_copy(unit: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orki-webhooksd.service");
    let built = daemon::binary();
    let text = unit.replace(INSTALLED_BINARY, built.to_str().expect("utf-8 path"));
    std::fs::write(&path, text).expect("write the unit copy");
    (dir, path)
}

/// Runs `systemd-analyze` with `args` then the unit's path; returns its exit
/// success and everything it printed.
fn analyze(args: &[&str], unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze (Debian package `systemd`; scripts/setup-debian installs it)");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// What `systemd-analyze verify` says about `unit`: empty when nothing is
/// wrong. It exits 0 for an unknown or misspelt directive (it only warns and
/// ignores the line), so anything it prints counts.
fn verify_problems(unit: &str) -> String {
    let (_dir, path) = unit_copy(unit);
    let (ok, printed) = analyze(&["verify"], &path);
    if ok && printed.trim().is_empty() {
        String::new()
    } else {
        format!("exit ok: {ok}\n{printed}")
    }
}

#[test]
fn systemd_analyze_verify_finds_nothing_wrong() {
    let problems = verify_problems(&unit_text());
    assert!(problems.is_empty(), "{UNIT}:\n{problems}");
}

#[test]
fn the_check_catches_a_misspelt_directive_and_a_bad_value() {
    let unit = unit_text();
    for (from, to) in [
        ("\nPrivateTmp=yes", "\nPrivatTmp=yes"),
        ("\nProtectSystem=strict", "\nProtectSystem=stric"),
    ] {
        assert!(unit.contains(from), "{UNIT} has {from:?}");
        let problems = verify_problems(&unit.replacen(from, to, 1));
        assert!(
            !problems.is_empty(),
            "verify said nothing about {to:?} in place of {from:?}"
        );
    }
}

#[test]
fn the_sandbox_stays_tight() {
    let (_dir, path) = unit_copy(&unit_text());
    let threshold = format!("--threshold={MAX_EXPOSURE_TENTHS}");
    let (ok, printed) = analyze(&["security", "--offline=yes", &threshold], &path);
    let overall = printed
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("no overall exposure level printed");
    assert!(
        ok,
        "{UNIT} exposure above {}.{}: {overall}\n{printed}",
        MAX_EXPOSURE_TENTHS / 10,
        MAX_EXPOSURE_TENTHS % 10
    );
}

/// The value of `key=` in the unit (the last one, as systemd reads it).
fn directive<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

#[test]
fn it_serves_the_state_directory_systemd_makes() {
    let unit = unit_text();
    let state = directive(&unit, "StateDirectory").expect("StateDirectory=");
    let exec = directive(&unit, "ExecStart").expect("ExecStart=");
    assert_eq!(
        exec,
        format!("{INSTALLED_BINARY} serve --data-dir /var/lib/{state}"),
        "ExecStart runs the installed daemon on /var/lib/<StateDirectory>"
    );
    // Not enabled by the package, but enabling it must start it at boot.
    assert_eq!(directive(&unit, "WantedBy"), Some("multi-user.target"));
}

#[test]
fn the_deb_installs_the_daemon_and_the_unit() {
    let path = repo_root().join("tauri.conf.json");
    let conf: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
        .expect("tauri.conf.json is JSON");
    let deb = &conf["bundle"]["linux"]["deb"];
    assert_eq!(
        deb["files"][INSTALLED_UNIT], UNIT,
        "bundle.linux.deb.files installs the unit"
    );
    assert_eq!(
        deb["files"][INSTALLED_BINARY], "target/release/orki-webhooksd",
        "bundle.linux.deb.files installs the daemon (scripts/package-deb builds it)"
    );
    // Tauri's tray loads it at run time (dlopen), so nothing links to it.
    let depends = deb["depends"].as_array().expect("bundle.linux.deb.depends");
    assert!(
        depends.iter().any(|d| d == "libayatana-appindicator3-1"),
        "{depends:?}"
    );
    // Disabled by default: no maintainer script that could enable it.
    assert!(deb.get("postInstallScript").is_none());
}
