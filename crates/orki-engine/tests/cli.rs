//! The `orki-webhooksd` command line: flags, and clear errors for bad ones.
//! (Building this test also makes cargo build the binary for the end-to-end suite.)

use std::process::Command;

fn daemon() -> Command {
    Command::new(env!("CARGO_BIN_EXE_orki-webhooksd"))
}

#[test]
fn serve_help_lists_the_spec_flags() {
    let out = daemon().args(["serve", "--help"]).output().expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--data-dir",
        "--listen",
        "--ca-file",
        "--retry-schedule",
        "--allow-http-localhost",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}

#[test]
fn bad_flags_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: [(&[&str], &str); 4] = [
        (&["--retry-schedule", "10s,5x"], "\"5x\""),
        (&["--listen", "0.0.0.0:0"], "loopback"),
        (&["--ca-file", "/nonexistent/ca.pem"], "/nonexistent/ca.pem"),
        (&["--listen", "not-an-address"], "not-an-address"),
    ];
    for (args, expected) in cases {
        let out = daemon()
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // Nothing was created by the refused starts, except where config passed validation.
    assert!(!dir.path().join("orki-webhooks.redb").exists());
}

#[test]
fn a_short_env_credential_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = daemon()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("ORKI_INGEST_KEY", "short")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ORKI_INGEST_KEY"));
}
