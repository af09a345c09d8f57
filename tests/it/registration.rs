//! Registering webhooks: the handshake, each way it fails, input rules, edits, auth.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{HandshakeMode, Receiver, TestCa, TestEngine, expect_error};

#[tokio::test]
async fn a_webhook_is_saved_after_a_successful_handshake() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;

    let created = engine
        .register_ok(&rx, &["message.created", "chat.status_changed"])
        .await;
    assert_eq!(rx.handshakes(), 1, "the handshake ran once");
    assert_eq!(created["url"], rx.url);
    assert_eq!(
        created["events"],
        json!(["message.created", "chat.status_changed"])
    );
    assert_eq!(created["enabled"], true);
    assert_eq!(created["consecutive_failures"], 0);
    assert_eq!(created["warning"], false);
    assert!(
        created["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("wh_"))
    );
    assert!(
        created["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    let list = engine.get_json("/v1/webhooks").await;
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], created["id"]);
    assert!(
        items[0].get("verify_token").is_none(),
        "lists never show the token"
    );

    let id = created["id"].as_str().expect("id");
    let one = engine.get_json(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(one["verify_token"], rx.token);
}

async fn assert_step(engine: &TestEngine, url: &str, token: &str, step: &str) {
    let r = engine.register(url, token, &["message.created"]).await;
    let error = expect_error(r, 422, "verification_failed").await;
    assert_eq!(error["step"], step, "{error}");
}

#[tokio::test]
async fn each_failed_handshake_step_is_named_and_nothing_is_saved() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |c| c.request_timeout = Duration::from_secs(2)).await;

    // dns: a name that can never resolve.
    assert_step(
        &engine,
        "https://orki-webhooks-test.invalid/hook",
        "t0ken",
        "dns",
    )
    .await;

    // connect: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    assert_step(
        &engine,
        &format!("https://127.0.0.1:{port}/hook"),
        "t0ken",
        "connect",
    )
    .await;

    // tls: a certificate from a CA the engine does not trust.
    let stranger = TestCa::new("Untrusted CA");
    let untrusted = Receiver::start(&stranger).await;
    assert_step(&engine, &untrusted.url, &untrusted.token, "tls").await;
    assert_eq!(untrusted.handshakes(), 0, "no request got past TLS");

    // timeout: the endpoint answers after the limit.
    let slow = Receiver::start(&ca).await;
    slow.set_handshake(HandshakeMode::Sleep(Duration::from_secs(4)));
    assert_step(&engine, &slow.url, &slow.token, "timeout").await;

    // status: a non-2xx answer; also a wrong token is refused by the receiver.
    let rx = Receiver::start(&ca).await;
    assert_step(&engine, &rx.url, "not-the-token", "status").await;
    rx.set_handshake(HandshakeMode::Status(404));
    assert_step(&engine, &rx.url, &rx.token, "status").await;
    rx.set_handshake(HandshakeMode::Status(302));
    assert_step(&engine, &rx.url, &rx.token, "status").await;

    // challenge_mismatch: 200 without the challenge.
    rx.set_handshake(HandshakeMode::WrongBody);
    assert_step(&engine, &rx.url, &rx.token, "challenge_mismatch").await;

    let list = engine.get_json("/v1/webhooks").await;
    assert_eq!(list["items"], json!([]), "nothing was saved");
}

#[tokio::test]
async fn bad_registrations_are_refused_with_400_and_change_nothing() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let plain = rx.url.replace("https://", "http://");

    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"url": plain, "verify_token": rx.token, "events": ["meta.message"]}),
            "https_required",
        ),
        (
            json!({"url": "http://example.com/h", "verify_token": "x", "events": ["meta.message"]}),
            "https_required",
        ),
        (
            json!({"url": "ftp://example.com/h", "verify_token": "x", "events": ["meta.message"]}),
            "invalid_url",
        ),
        (
            json!({"url": "not a url", "verify_token": "x", "events": ["meta.message"]}),
            "invalid_url",
        ),
        (
            json!({"url": rx.url, "verify_token": rx.token, "events": []}),
            "no_events",
        ),
        (
            json!({"url": rx.url, "verify_token": rx.token, "events": ["message.deleted"]}),
            "unknown_event_type",
        ),
        (
            json!({"url": rx.url, "verify_token": "", "events": ["meta.message"]}),
            "invalid_verify_token",
        ),
        (
            json!({"url": rx.url, "events": ["meta.message"]}),
            "invalid_field",
        ),
        (
            json!({"url": rx.url, "verify_token": rx.token, "events": ["meta.message"], "secret": 1}),
            "invalid_field",
        ),
    ];
    for (body, code) in cases {
        let r = engine
            .admin(Method::POST, "/v1/webhooks")
            .json(&body)
            .send()
            .await
            .expect("send");
        expect_error(r, 400, code).await;
    }
    let r = engine
        .admin(Method::POST, "/v1/webhooks")
        .header("content-type", "application/json")
        .body("{\"url\": ")
        .send()
        .await
        .expect("send");
    expect_error(r, 400, "invalid_json").await;

    assert_eq!(
        rx.handshakes(),
        0,
        "invalid input never reaches the endpoint"
    );
    assert_eq!(engine.get_json("/v1/webhooks").await["items"], json!([]));
}

#[tokio::test]
async fn plain_http_to_loopback_only_with_the_development_setting() {
    let ca = TestCa::new("Orki Test CA");
    let plain = Receiver::start_plain().await;

    let strict = TestEngine::start(&ca, |_| {}).await;
    let r = strict
        .register(&plain.url, &plain.token, &["meta.message"])
        .await;
    expect_error(r, 400, "https_required").await;

    let dev = TestEngine::start(&ca, |c| c.allow_http_localhost = true).await;
    dev.register_ok(&plain, &["meta.message"]).await;
    let r = dev
        .register("http://example.com/hook", "t", &["meta.message"])
        .await;
    expect_error(r, 400, "https_required").await;
}

#[tokio::test]
async fn editing_the_url_or_token_reruns_the_handshake() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let created = engine.register_ok(&rx, &["message.created"]).await;
    let path = format!("/v1/webhooks/{}", created["id"].as_str().expect("id"));
    assert_eq!(rx.handshakes(), 1);

    // Events and enabled alone: no handshake.
    let r = engine
        .admin(Method::PATCH, &path)
        .json(&json!({"events": ["meta.message", "chat.status_changed"], "enabled": false}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let patched: Value = r.json().await.expect("json");
    assert_eq!(
        patched["events"],
        json!(["meta.message", "chat.status_changed"])
    );
    assert_eq!(patched["enabled"], false);
    assert_eq!(rx.handshakes(), 1);

    // A token the endpoint rejects: 422 and nothing changes.
    let r = engine
        .admin(Method::PATCH, &path)
        .json(&json!({"verify_token": "some-other-token"}))
        .send()
        .await
        .expect("send");
    let error = expect_error(r, 422, "verification_failed").await;
    assert_eq!(error["step"], "status");
    assert_eq!(rx.handshakes(), 2);
    let now = engine.get_json(&path).await;
    assert_eq!(now["verify_token"], rx.token);

    // A new URL that verifies: saved.
    let other = Receiver::start(&ca).await;
    let r = engine
        .admin(Method::PATCH, &path)
        .json(&json!({"url": other.url, "verify_token": other.token}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(other.handshakes(), 1);
    let now = engine.get_json(&path).await;
    assert_eq!(now["url"], other.url);

    // Bad patches: 400, unchanged.
    let r = engine
        .admin(Method::PATCH, &path)
        .json(&json!({"events": []}))
        .send()
        .await
        .expect("send");
    expect_error(r, 400, "no_events").await;
    let r = engine
        .admin(Method::PATCH, &path)
        .json(&json!({"url": "http://example.com/"}))
        .send()
        .await
        .expect("send");
    expect_error(r, 400, "https_required").await;
    assert_eq!(engine.get_json(&path).await["url"], other.url);
}

#[tokio::test]
async fn delete_and_unknown_ids() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let created = engine.register_ok(&rx, &["message.created"]).await;
    let path = format!("/v1/webhooks/{}", created["id"].as_str().expect("id"));

    let r = engine
        .admin(Method::DELETE, &path)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    let r = engine.admin(Method::GET, &path).send().await.expect("send");
    expect_error(r, 404, "not_found").await;
    let r = engine
        .admin(Method::DELETE, &path)
        .send()
        .await
        .expect("send");
    expect_error(r, 404, "not_found").await;
    let r = engine
        .admin(Method::GET, "/v1/webhooks/wh_nonsense")
        .send()
        .await
        .expect("send");
    expect_error(r, 404, "not_found").await;
    assert_eq!(engine.get_json("/v1/webhooks").await["items"], json!([]));
}

#[tokio::test]
async fn each_credential_opens_only_its_own_door() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let url = format!("{}/v1/webhooks", engine.base);

    let r = engine.http.get(&url).send().await.expect("send");
    expect_error(r, 401, "unauthorized").await;
    let r = engine
        .http
        .get(&url)
        .bearer_auth(&engine.ingest)
        .send()
        .await
        .expect("send");
    expect_error(r, 401, "unauthorized").await;
    let r = engine
        .http
        .get(&url)
        .bearer_auth("at_wrong")
        .send()
        .await
        .expect("send");
    expect_error(r, 401, "unauthorized").await;

    let r = engine
        .http
        .post(format!("{}/v1/events", engine.base))
        .bearer_auth(&engine.admin)
        .json(&json!({"type": "message.created", "data": {}}))
        .send()
        .await
        .expect("send");
    expect_error(r, 401, "unauthorized").await;

    // Health needs no credential; event types need the admin token.
    let r = engine
        .http
        .get(format!("{}/v1/health", engine.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let health: Value = r.json().await.expect("json");
    assert_eq!(health["status"], "ok");
    assert!(health["version"].is_string());
    let types = engine.get_json("/v1/event-types").await;
    let names: Vec<&str> = types
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["type"].as_str())
        .collect();
    assert_eq!(
        names,
        ["meta.message", "message.created", "chat.status_changed"]
    );
    assert!(types[0]["sample"]["entry"].is_array());
}
