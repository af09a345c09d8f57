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

/// The document states the bounds the server enforces (what scripts/schemathesis
/// checks by generating requests from it).
#[tokio::test]
async fn the_document_states_the_bounds_the_server_enforces() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let doc = engine.get_json("/v1/openapi.json").await;
    let schemas = &doc["components"]["schemas"];
    let param = |path: &str, method: &str, name: &str| -> Value {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{method} {path} has parameter {name}"))
    };

    let limit = param("/v1/attempts", "get", "limit");
    assert_eq!(limit["schema"]["minimum"], 1, "{limit}");
    assert_eq!(limit["schema"]["maximum"], 500, "{limit}");
    let outcome = param("/v1/attempts", "get", "outcome");
    let outcome_ref = outcome["schema"]["oneOf"]
        .as_array()
        .and_then(|a| a.iter().find_map(|s| s["$ref"].as_str()))
        .or_else(|| outcome["schema"]["$ref"].as_str())
        .unwrap_or_else(|| panic!("{outcome}"));
    assert!(outcome_ref.ends_with("/Outcome"), "{outcome}");
    assert_eq!(schemas["Outcome"]["enum"], json!(["success", "failure"]));
    assert_eq!(
        param("/v1/attempts", "get", "from")["schema"]["format"],
        "date-time"
    );

    let names: Vec<&str> = orki_engine::event_types::NAMES.to_vec();
    assert_eq!(schemas["EventTypeName"]["enum"], json!(names));
    let new = &schemas["NewWebhook"]["properties"];
    assert_eq!(new["events"]["minItems"], 1, "{new}");
    assert!(
        new["events"]["items"]["$ref"]
            .as_str()
            .is_some_and(|r| r.ends_with("/EventTypeName")),
        "{new}"
    );
    assert_eq!(new["url"]["format"], "uri", "{new}");
    assert_eq!(new["url"]["maxLength"], 2048, "{new}");
    assert_eq!(new["verify_token"]["maxLength"], 512, "{new}");
    assert_eq!(schemas["NewWebhook"]["additionalProperties"], false);

    let key = param("/v1/events", "post", "Idempotency-Key");
    assert_eq!(key["in"], "header");
    assert_eq!(key["schema"]["minLength"], 1, "{key}");
    assert_eq!(key["schema"]["maxLength"], 255, "{key}");
    assert_eq!(key["schema"]["pattern"], "^[!-~]+$", "{key}");

    let patch = &schemas["SettingsPatch"];
    let props = &patch["properties"];
    assert_eq!(props["listen_port"]["minimum"], 1024, "{props}");
    assert_eq!(props["listen_port"]["maximum"], 65535, "{props}");
    assert_eq!(
        props["max_database_mb"]["maximum"], 9_007_199_254_740_991_u64,
        "{props}"
    );
    assert_eq!(props["max_database_mb"]["minimum"], 1, "{props}");
    assert_eq!(props["retention_days"]["maximum"], 3650, "{props}");
    assert!(
        patch["required"].as_array().is_none_or(Vec::is_empty),
        "{patch}"
    );
    assert_eq!(patch["additionalProperties"], false);
    assert!(
        schemas["SettingsView"]["required"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("allow_http_localhost_from_flag")))
    );

    let replay = &doc["paths"]["/v1/webhooks/{id}/replay"]["post"];
    assert_eq!(replay["requestBody"]["required"], true, "{replay}");
    assert!(
        replay["responses"]["409"].is_object(),
        "409 webhook_disabled"
    );
    assert!(
        schemas["ReplayRequest"]["properties"]["from"]["format"] == "date-time",
        "{}",
        schemas["ReplayRequest"]
    );

    // The retry-step pattern takes exactly the steps the server takes.
    let schedule = &schemas["RetrySchedule"]["oneOf"];
    let step = schedule[0]["items"]["pattern"].as_str().expect("pattern");
    let text = schedule[1]["pattern"].as_str().expect("pattern");
    let re = |p: &str| {
        jsonschema::validator_for(&json!({"type": "string", "pattern": p})).expect("regex")
    };
    let (step, text) = (re(step), re(text));
    for ok in [
        "1ms",
        "604800000ms",
        "604800s",
        "10080m",
        "168h",
        "7d",
        "005s",
    ] {
        assert!(step.is_valid(&json!(ok)), "{ok}");
        assert!(
            orki_engine::retry::parse_duration(ok)
                .is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(7 * 86_400)),
            "{ok}"
        );
    }
    for bad in [
        "0s",
        "604800001ms",
        "604801s",
        "10081m",
        "169h",
        "8d",
        "5x",
        "s",
        "5 s",
    ] {
        assert!(!step.is_valid(&json!(bad)), "{bad}");
    }
    assert!(text.is_valid(&json!("5s, 30s,2m")));
    assert!(!text.is_valid(&json!("5s,,2m")));
}
