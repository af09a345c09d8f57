//! `POST /v1/events`: every error code, nothing stored on error, idempotency.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Receiver, TestCa, TestEngine, expect_error};

fn raw_post(engine: &TestEngine) -> reqwest::RequestBuilder {
    engine.http.post(format!("{}/v1/events", engine.base))
}

#[tokio::test]
async fn every_bad_request_gets_its_error_and_stores_nothing() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    engine
        .register_ok(
            &rx,
            &["meta.message", "message.created", "chat.status_changed"],
        )
        .await;
    let good = r#"{"type":"message.created","data":{"n":1}}"#;

    // 401: no key, wrong key, the admin token.
    let r = raw_post(&engine)
        .header("content-type", "application/json")
        .body(good)
        .send()
        .await
        .expect("send");
    expect_error(r, 401, "unauthorized").await;
    let r = raw_post(&engine)
        .bearer_auth("ik_wrong")
        .header("content-type", "application/json")
        .body(good)
        .send()
        .await
        .expect("send");
    expect_error(r, 401, "unauthorized").await;

    // 415: not JSON.
    let r = raw_post(&engine)
        .bearer_auth(&engine.ingest)
        .header("content-type", "text/plain")
        .body(good)
        .send()
        .await
        .expect("send");
    expect_error(r, 415, "unsupported_media_type").await;
    let r = raw_post(&engine)
        .bearer_auth(&engine.ingest)
        .body(good)
        .send()
        .await
        .expect("send");
    expect_error(r, 415, "unsupported_media_type").await;

    // 413: over 1 MiB.
    let big = format!(
        r#"{{"type":"message.created","data":{{"s":"{}"}}}}"#,
        "x".repeat(1024 * 1024)
    );
    let r = raw_post(&engine)
        .bearer_auth(&engine.ingest)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("send");
    expect_error(r, 413, "payload_too_large").await;

    // 400: malformed JSON, missing or invalid fields.
    for (body, code) in [
        (r#"{"type":"message.created","data":{"#, "invalid_json"),
        ("", "invalid_json"),
        (r#"[1,2]"#, "invalid_field"),
        (r#"{"data":{}}"#, "invalid_field"),
        (r#"{"type":"message.created"}"#, "invalid_field"),
        (r#"{"type":"message.created","data":[1]}"#, "invalid_field"),
        (
            r#"{"type":"message.created","data":"text"}"#,
            "invalid_field",
        ),
        (r#"{"type":7,"data":{}}"#, "invalid_field"),
        (
            r#"{"type":"message.created","data":{},"extra":1}"#,
            "invalid_field",
        ),
    ] {
        let r = raw_post(&engine)
            .bearer_auth(&engine.ingest)
            .header("content-type", "application/json; charset=utf-8")
            .body(body)
            .send()
            .await
            .expect("send");
        expect_error(r, 400, code).await;
    }

    // 422: unknown event type.
    let r = engine.post_event("message.deleted", json!({})).await;
    let error = expect_error(r, 422, "unknown_event_type").await;
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("message.created")
    );

    // 403: a Host that is not loopback (DNS rebinding).
    let r = raw_post(&engine)
        .bearer_auth(&engine.ingest)
        .header("host", "attacker.example:8787")
        .header("content-type", "application/json")
        .body(good)
        .send()
        .await
        .expect("send");
    expect_error(r, 403, "host_not_allowed").await;

    // Nothing was stored: the first delivery the receiver ever sees is the next good event.
    assert_eq!(engine.handle.pending_deliveries().await.expect("count"), 0);
    let r = engine
        .post_event("chat.status_changed", json!({"marker": true}))
        .await;
    assert_eq!(r.status(), 202);
    let accepted: Value = r.json().await.expect("json");
    let first = rx.next(Duration::from_secs(10)).await;
    assert_eq!(first.json()["id"], accepted["id"]);
    assert_eq!(first.json()["data"], json!({"marker": true}));
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_result() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    engine.register_ok(&rx, &["message.created"]).await;

    let post = |key: &'static str, body: &'static str| {
        raw_post(&engine)
            .bearer_auth(&engine.ingest)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body)
            .send()
    };
    let body = r#"{"type":"message.created","data":{"text":"hello"}}"#;
    let first = post("order-4821", body).await.expect("send");
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    assert_eq!(first["deliveries"], 1);

    let again = post("order-4821", body).await.expect("send");
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("json");
    assert_eq!(again, first);

    // The same key for another request is a conflict, not a silent replay.
    let other = post(
        "order-4821",
        r#"{"type":"message.created","data":{"text":"bye"}}"#,
    )
    .await
    .expect("send");
    expect_error(other, 409, "idempotency_conflict").await;

    // Exactly one delivery was made: the next one after it is a new event.
    let got = rx.next(Duration::from_secs(10)).await;
    assert_eq!(got.json()["id"], first["id"]);
    let marker: Value = engine
        .post_event("message.created", json!({"marker": 1}))
        .await
        .json()
        .await
        .expect("json");
    let next = rx.next(Duration::from_secs(10)).await;
    assert_eq!(
        next.json()["id"],
        marker["id"],
        "no second delivery of the replayed event"
    );
}

#[tokio::test]
async fn events_with_no_subscriber_are_accepted_with_zero_deliveries() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let r = engine
        .post_event("meta.message", json!({"object": "page"}))
        .await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["deliveries"], 0);
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("evt_")));
}
