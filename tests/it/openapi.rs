//! `/v1/openapi.json` describes every endpoint, and real answers validate against it.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::receiver::PostMode;
use crate::support::{Receiver, TestCa, TestEngine};

/// Validates `body` against the documented schema of `method path` answering `status`.
fn check(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let errors = violations(doc, method, path, status, body);
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?}\n{body}"
    );
}

fn violations(doc: &Value, method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is documented");
    let schema = &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} documents a {status} JSON answer"
    );
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::validator_for(&root).expect("the document's schema compiles");
    validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

async fn call(
    engine: &TestEngine,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = engine.admin(method, path);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.expect("send");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_endpoint_is_documented_and_real_answers_match() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |c| {
        c.retry = Some(crate::support::retries(vec![Duration::from_millis(20)]));
    })
    .await;
    let r = engine
        .http
        .get(format!("{}/v1/openapi.json", engine.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "served without a credential");
    let doc: Value = r.json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert_eq!(doc["info"]["version"], orki_engine::VERSION);
    for (method, path) in [
        ("get", "/v1/health"),
        ("get", "/v1/event-types"),
        ("post", "/v1/events"),
        ("get", "/v1/webhooks"),
        ("post", "/v1/webhooks"),
        ("get", "/v1/webhooks/{id}"),
        ("patch", "/v1/webhooks/{id}"),
        ("delete", "/v1/webhooks/{id}"),
        ("post", "/v1/webhooks/{id}/test"),
        ("post", "/v1/webhooks/{id}/replay"),
        ("post", "/v1/deliveries/{id}/redeliver"),
        ("get", "/v1/attempts"),
        ("get", "/v1/attempts/{id}"),
        ("get", "/v1/settings"),
        ("patch", "/v1/settings"),
        ("get", "/v1/stream"),
        ("get", "/v1/openapi.json"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} in the document"
        );
    }

    let health: Value = engine
        .http
        .get(format!("{}/v1/health", engine.base))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    check(&doc, "get", "/v1/health", 200, &health);
    let (s, b) = call(&engine, Method::GET, "/v1/event-types", None).await;
    check(&doc, "get", "/v1/event-types", s, &b);

    let rx = Receiver::start(&ca).await;
    let (s, created) = call(
        &engine,
        Method::POST,
        "/v1/webhooks",
        Some(json!({"url": rx.url, "verify_token": rx.token, "events": ["message.created"]})),
    )
    .await;
    check(&doc, "post", "/v1/webhooks", s, &created);
    let (s, b) = call(&engine, Method::POST, "/v1/webhooks", Some(json!({"url": "http://example.com", "verify_token": "x", "events": ["message.created"]}))).await;
    check(&doc, "post", "/v1/webhooks", s, &b);
    let (s, b) = call(&engine, Method::POST, "/v1/webhooks", Some(json!({"url": "https://orki-test.invalid/", "verify_token": "x", "events": ["message.created"]}))).await;
    assert_eq!(s, 422);
    check(&doc, "post", "/v1/webhooks", s, &b);
    let wh = created["id"].as_str().expect("id");
    // The check has teeth: a drifted answer fails it.
    let mut drifted = created.clone();
    drifted["consecutive_failures"] = json!("none");
    assert!(!violations(&doc, "post", "/v1/webhooks", 201, &drifted).is_empty());
    let mut drifted = created.clone();
    drifted["id"] = json!("webhook-1");
    assert!(!violations(&doc, "post", "/v1/webhooks", 201, &drifted).is_empty());
    drifted.as_object_mut().expect("object").remove("url");
    assert!(!violations(&doc, "post", "/v1/webhooks", 201, &drifted).is_empty());
    let (s, b) = call(&engine, Method::GET, "/v1/webhooks", None).await;
    check(&doc, "get", "/v1/webhooks", s, &b);
    let (s, b) = call(&engine, Method::GET, &format!("/v1/webhooks/{wh}"), None).await;
    check(&doc, "get", "/v1/webhooks/{id}", s, &b);
    let (s, b) = call(
        &engine,
        Method::PATCH,
        &format!("/v1/webhooks/{wh}"),
        Some(json!({"events": ["message.created", "meta.message"]})),
    )
    .await;
    check(&doc, "patch", "/v1/webhooks/{id}", s, &b);
    let (s, b) = call(
        &engine,
        Method::GET,
        "/v1/webhooks/wh_00000000000000000000000000000000",
        None,
    )
    .await;
    check(&doc, "get", "/v1/webhooks/{id}", s, &b);

    let r = engine.post_event("message.created", json!({"a": 1})).await;
    let s = r.status().as_u16();
    check(
        &doc,
        "post",
        "/v1/events",
        s,
        &r.json().await.expect("json"),
    );
    let r = engine.post_event("nope", json!({})).await;
    let s = r.status().as_u16();
    check(
        &doc,
        "post",
        "/v1/events",
        s,
        &r.json().await.expect("json"),
    );
    let got = rx.next(Duration::from_secs(10)).await;

    let (s, b) = call(
        &engine,
        Method::POST,
        &format!("/v1/webhooks/{wh}/test"),
        Some(json!({"event_type": "meta.message"})),
    )
    .await;
    check(&doc, "post", "/v1/webhooks/{id}/test", s, &b);
    rx.set_post(PostMode {
        status: 500,
        ..PostMode::default()
    });
    let (s, b) = call(
        &engine,
        Method::POST,
        &format!("/v1/webhooks/{wh}/test"),
        Some(json!({"event_type": "meta.message"})),
    )
    .await;
    assert_eq!(b["success"], false);
    check(&doc, "post", "/v1/webhooks/{id}/test", s, &b);

    let (s, page) = call(&engine, Method::GET, "/v1/attempts?limit=1", None).await;
    check(&doc, "get", "/v1/attempts", s, &page);
    assert!(page["next_cursor"].is_string());
    let (s, b) = call(&engine, Method::GET, "/v1/attempts?outcome=sometimes", None).await;
    check(&doc, "get", "/v1/attempts", s, &b);
    let att = page["items"][0]["id"].as_str().expect("id");
    let (s, b) = call(&engine, Method::GET, &format!("/v1/attempts/{att}"), None).await;
    check(&doc, "get", "/v1/attempts/{id}", s, &b);

    let delivery = got.header("x-orki-delivery");
    let (s, b) = call(
        &engine,
        Method::POST,
        &format!("/v1/deliveries/{delivery}/redeliver"),
        None,
    )
    .await;
    check(&doc, "post", "/v1/deliveries/{id}/redeliver", s, &b);
    let (s, b) = call(
        &engine,
        Method::POST,
        &format!("/v1/webhooks/{wh}/replay"),
        Some(json!({"dry_run": true})),
    )
    .await;
    check(&doc, "post", "/v1/webhooks/{id}/replay", s, &b);
    let (s, b) = call(
        &engine,
        Method::POST,
        &format!("/v1/webhooks/{wh}/replay"),
        Some(json!({})),
    )
    .await;
    check(&doc, "post", "/v1/webhooks/{id}/replay", s, &b);

    let (s, b) = call(&engine, Method::GET, "/v1/settings", None).await;
    check(&doc, "get", "/v1/settings", s, &b);
    let (s, b) = call(
        &engine,
        Method::PATCH,
        "/v1/settings",
        Some(json!({"retention_days": 14})),
    )
    .await;
    check(&doc, "patch", "/v1/settings", s, &b);
    let (s, b) = call(
        &engine,
        Method::PATCH,
        "/v1/settings",
        Some(json!({"retention_days": 0})),
    )
    .await;
    check(&doc, "patch", "/v1/settings", s, &b);

    let r = engine
        .http
        .get(format!("{}/v1/webhooks", engine.base))
        .send()
        .await
        .expect("send");
    let s = r.status().as_u16();
    check(
        &doc,
        "get",
        "/v1/webhooks",
        s,
        &r.json().await.expect("json"),
    );
}
