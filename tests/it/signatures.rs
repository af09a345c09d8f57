//! Both signature schemes, checked by code nobody here wrote: the official
//! Standard Webhooks libraries (npm and PyPI, installed by `scripts/peers`)
//! and Node's crypto for `X-Hub-Signature-256`, against real deliveries;
//! secret rotation sending two signatures, then one.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::receiver::{PostMode, Received};
use crate::support::{Receiver, TestCa, TestEngine, expect_error};

const WAIT: Duration = Duration::from_secs(10);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_owned()
}

/// One verification for the peers: `expect` is whether it must verify.
fn case(scheme: &str, secret: &str, got: &Received, expect: bool) -> Value {
    let headers: serde_json::Map<String, Value> = got
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                json!(v.to_str().expect("ASCII header")),
            )
        })
        .collect();
    json!({
        "scheme": scheme,
        "secret": secret,
        "body": std::str::from_utf8(&got.body).expect("UTF-8 body"),
        "headers": headers,
        "expect": expect,
    })
}

/// Runs both peers on `cases`; each must come out as expected.
fn peers_agree(cases: &[Value]) {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("cases.json");
    std::fs::write(&file, serde_json::to_vec(cases).expect("JSON")).expect("write cases");
    let venv = std::env::var_os("ORKI_PEERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/peers-venv"));
    let peers = root().join("tests/peers");
    let runs = [
        (PathBuf::from("node"), peers.join("verify.mjs")),
        (venv.join("bin/python"), peers.join("verify.py")),
    ];
    for (program, script) in runs {
        let out = std::process::Command::new(&program)
            .arg(&script)
            .arg(&file)
            .current_dir(&peers)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "{} could not run ({e}); run scripts/peers first",
                    program.display()
                )
            });
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{} disagrees (run scripts/peers if it is not installed):\n{stdout}{stderr}",
            script.display()
        );
        assert!(stdout.lines().count() >= 2, "{stdout}");
    }
}

async fn create(engine: &TestEngine, rx: &Receiver, extra: Value) -> Value {
    let mut body = json!({"url": rx.url, "verify_token": rx.token, "events": ["message.created"]});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    let r = engine
        .admin(Method::POST, "/v1/webhooks")
        .json(&body)
        .send()
        .await
        .expect("create");
    let status = r.status();
    let hook: Value = r.json().await.expect("JSON");
    assert_eq!(status, 201, "{hook}");
    hook
}

async fn rotate(engine: &TestEngine, id: &str, grace_hours: u64) -> reqwest::Response {
    engine
        .admin(Method::POST, &format!("/v1/webhooks/{id}/rotate-secret"))
        .json(&json!({ "grace_hours": grace_hours }))
        .send()
        .await
        .expect("rotate")
}

#[tokio::test]
async fn standard_signatures_verify_with_the_official_libraries_through_a_rotation() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let hook = create(&engine, &rx, json!({"signature": "standard"})).await;
    let id = hook["id"].as_str().expect("id").to_owned();
    assert_eq!(hook["signature"], "standard");
    let first_secret = hook["signing_secret"].as_str().expect("secret").to_owned();
    assert!(first_secret.starts_with("whsec_"), "{first_secret}");
    let listed = engine.get_json("/v1/webhooks").await;
    assert!(
        listed["items"][0].get("signing_secret").is_none(),
        "a secret in the list"
    );
    assert_eq!(
        engine.get_json(&format!("/v1/webhooks/{id}")).await["signing_secret"],
        first_secret.as_str()
    );

    // A failed first try, then its retry: the same webhook-id both times.
    rx.set_post(PostMode {
        fail_next: 1,
        ..PostMode::default()
    });
    engine
        .post_event("message.created", json!({"text": "مرحبا ✓"}))
        .await;
    let failed = rx.next(WAIT).await;
    let retried = rx.next(WAIT).await;
    assert_eq!(failed.header("webhook-id"), retried.header("webhook-id"));
    assert_eq!(
        retried.header("webhook-id"),
        retried.header("x-orki-delivery")
    );
    assert!(retried.header("x-hub-signature-256").is_empty());
    assert_eq!(retried.header("x-orki-event"), "message.created");
    let ts: i64 = retried
        .header("webhook-timestamp")
        .parse()
        .expect("unix seconds");
    assert!((chrono::Utc::now().timestamp() - ts).abs() <= 5, "{ts}");
    assert_eq!(retried.header("webhook-signature").split(' ').count(), 1);

    // Rotation with a grace period: two signatures, new first; either secret verifies.
    let r = rotate(&engine, &id, 24).await;
    assert_eq!(r.status(), 200);
    let rotated: Value = r.json().await.expect("JSON");
    let second_secret = rotated["signing_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_ne!(second_secret, first_secret);
    assert!(rotated["rotation_ends_at"].is_string());
    engine.post_event("message.created", json!({"n": 2})).await;
    let during = rx.next(WAIT).await;
    assert_eq!(during.header("webhook-signature").split(' ').count(), 2);

    // Without a grace period: one signature, by the newest secret only.
    let r = rotate(&engine, &id, 0).await;
    let third: Value = r.json().await.expect("JSON");
    let third_secret = third["signing_secret"].as_str().expect("secret").to_owned();
    assert_eq!(third["rotation_ends_at"], Value::Null);
    engine.post_event("message.created", json!({"n": 3})).await;
    let after = rx.next(WAIT).await;
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);

    let wrong = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    peers_agree(&[
        case("standard", &first_secret, &retried, true),
        case("standard", wrong, &retried, false),
        case("standard", &second_secret, &during, true),
        case("standard", &first_secret, &during, true),
        case("standard", &third_secret, &after, true),
        case("standard", &second_secret, &after, false),
    ]);
}

#[tokio::test]
async fn hub_signatures_verify_with_node_crypto_and_rotation_is_refused_for_them() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let hook = create(&engine, &rx, json!({})).await;
    let id = hook["id"].as_str().expect("id").to_owned();
    assert_eq!(hook["signature"], "hub");
    assert!(hook.get("signing_secret").is_none());
    engine
        .post_event("message.created", json!({"text": "hi \"there\" ✓"}))
        .await;
    let got = rx.next(WAIT).await;
    assert!(got.header("webhook-signature").is_empty());
    peers_agree(&[
        case("hub", &rx.token, &got, true),
        case("hub", "not-the-token", &got, false),
        // The Python peer checks standard cases only: give it one too.
        case(
            "standard",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            &got,
            false,
        ),
        case(
            "standard",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            &got,
            false,
        ),
    ]);
    expect_error(
        rotate(&engine, &id, 24).await,
        409,
        "not_standard_signature",
    )
    .await;

    // Switched to standard: a secret is made, and rotation is allowed.
    let r = engine
        .admin(Method::PATCH, &format!("/v1/webhooks/{id}"))
        .json(&json!({"signature": "standard"}))
        .send()
        .await
        .expect("PATCH");
    let switched: Value = r.json().await.expect("JSON");
    assert!(
        switched["signing_secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_"))
    );
    expect_error(rotate(&engine, &id, 721).await, 400, "invalid_grace_hours").await;
    assert_eq!(rotate(&engine, &id, 1).await.status(), 200);
}
