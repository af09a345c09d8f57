//! Answers where the server and its OpenAPI document once disagreed (found by
//! scripts/schemathesis and by probing): each one says what the server does
//! now, and that a refused request changed nothing.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::support::{Receiver, TestCa, TestEngine, expect_error};

#[tokio::test]
async fn an_idempotency_key_must_be_visible_ascii() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    engine.register_ok(&rx, &["message.created"]).await;
    let post = |key: HeaderValue| {
        engine
            .http
            .post(format!("{}/v1/events", engine.base))
            .bearer_auth(&engine.ingest)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(r#"{"type":"message.created","data":{"bad":true}}"#)
            .send()
    };
    for bad in [
        HeaderValue::from_static("order\t4821"),
        HeaderValue::from_static("order 4821"),
        HeaderValue::from_bytes(b"order-\xe9").expect("obs-text is a header value"),
        HeaderValue::from_str(&"k".repeat(256)).expect("value"),
    ] {
        let r = post(bad.clone()).await.expect("send");
        let error = expect_error(r, 400, "invalid_idempotency_key").await;
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("visible ASCII")),
            "{bad:?}: {error}"
        );
    }
    // The longest and the widest key that is allowed.
    let ok = post(HeaderValue::from_str(&"k".repeat(255)).expect("value"))
        .await
        .expect("send");
    assert_eq!(ok.status(), 202);
    let ok: Value = ok.json().await.expect("json");
    let all_visible: String = (0x21u8..=0x7e).map(char::from).collect();
    let r = post(HeaderValue::from_str(&all_visible).expect("value"))
        .await
        .expect("send");
    assert_eq!(r.status(), 202);
    // Nothing of the refused posts was stored: the first delivery is the
    // first accepted event.
    let first = rx.next(Duration::from_secs(10)).await;
    assert_eq!(first.json()["id"], ok["id"]);
}

#[tokio::test]
async fn patching_nothing_changes_nothing() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let created = engine.register_ok(&rx, &["message.created"]).await;
    let path = format!("/v1/webhooks/{}", created["id"].as_str().expect("id"));
    let before = engine.get_json(&path).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    // `{}`, and values equal to the stored ones, are no change.
    for patch in [
        json!({}),
        json!({"enabled": true, "events": ["message.created"]}),
        json!({"url": rx.url, "verify_token": rx.token}),
    ] {
        let r = engine
            .admin(Method::PATCH, &path)
            .json(&patch)
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), 200, "{patch}");
        let answered: Value = r.json().await.expect("json");
        assert_eq!(answered, before, "{patch}");
        assert_eq!(engine.get_json(&path).await, before, "{patch}");
    }
    // A real change moves updated_at.
    let r = engine
        .admin(Method::PATCH, &path)
        .json(&json!({"events": ["message.created", "meta.message"]}))
        .send()
        .await
        .expect("PATCH");
    let changed: Value = r.json().await.expect("json");
    assert_ne!(changed["updated_at"], before["updated_at"]);

    let settings = engine.get_json("/v1/settings").await;
    let r = engine.patch_settings(&json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json"), settings);
    assert_eq!(engine.get_json("/v1/settings").await, settings);
}

#[tokio::test]
async fn the_flag_overrides_the_stored_http_setting_and_says_so() {
    let ca = TestCa::new("Orki Test CA");
    let plain = Receiver::start_plain().await;
    let dev = TestEngine::start(&ca, |c| c.allow_http_localhost = true).await;
    let r = dev
        .patch_settings(&json!({"allow_http_localhost": false}))
        .await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.expect("json");
    assert_eq!(answer["allow_http_localhost"], true, "{answer}");
    assert_eq!(answer["allow_http_localhost_from_flag"], true, "{answer}");
    assert_eq!(dev.get_json("/v1/settings").await, answer);
    // And it does hold for this run.
    dev.register_ok(&plain, &["meta.message"]).await;

    let strict = TestEngine::start(&ca, |_| {}).await;
    let view = strict.get_json("/v1/settings").await;
    assert_eq!(view["allow_http_localhost"], false);
    assert_eq!(view["allow_http_localhost_from_flag"], false);
}

#[tokio::test]
async fn a_replay_needs_a_body() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let created = engine.register_ok(&rx, &["message.created"]).await;
    let path = format!(
        "/v1/webhooks/{}/replay",
        created["id"].as_str().expect("id")
    );
    let r = engine
        .admin(Method::POST, &path)
        .send()
        .await
        .expect("POST");
    let error = expect_error(r, 400, "invalid_json").await;
    assert!(error["message"].as_str().is_some_and(|m| m.contains("{}")));
    let r = engine
        .admin(Method::POST, &path)
        .json(&json!({}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 202, "{{}} is a real replay of everything");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["dry_run"], false);

    // A disabled webhook: 409 webhook_disabled, as documented.
    engine
        .admin(
            Method::PATCH,
            &format!("/v1/webhooks/{}", created["id"].as_str().expect("id")),
        )
        .json(&json!({"enabled": false}))
        .send()
        .await
        .expect("PATCH");
    let r = engine
        .admin(Method::POST, &path)
        .json(&json!({}))
        .send()
        .await
        .expect("POST");
    expect_error(r, 409, "webhook_disabled").await;
}

#[tokio::test]
async fn settings_stay_within_what_javascript_holds_exactly() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let before = engine.get_json("/v1/settings").await;
    for bad in [
        json!(9_007_199_254_740_992_u64),
        json!(u64::MAX),
        json!(1e300),
    ] {
        let r = engine
            .patch_settings(&json!({"max_database_mb": bad}))
            .await;
        expect_error(r, 400, "invalid_setting").await;
        assert_eq!(engine.get_json("/v1/settings").await, before, "{bad}");
    }
    let r = engine
        .patch_settings(
            &json!({"max_database_mb": 9_007_199_254_740_991_u64, "retention_days": 7.0}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let after: Value = r.json().await.expect("json");
    assert_eq!(after["max_database_mb"], 9_007_199_254_740_991_u64);
    assert_eq!(after["retention_days"], 7);
}

#[tokio::test]
async fn any_rfc3339_range_is_a_query() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let created = engine.register_ok(&rx, &["message.created"]).await;
    let id = created["id"].as_str().expect("id");
    let mut events = engine.handle.subscribe();
    engine.post_event("message.created", json!({"n": 1})).await;
    engine
        .next_attempt(&mut events, id, Duration::from_secs(10))
        .await;
    let all = engine.get_json("/v1/attempts").await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1));
    for (query, n) in [
        // `to` before `from`: a range with nothing in it.
        ("from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z", 0),
        // Before 1970: valid times, with no attempt that old.
        ("to=1969-12-31T23:59:59Z", 0),
        (
            "from=0812-07-16T14:36:43.404371Z&to=0006-03-08T23:27:03.22-09:06",
            0,
        ),
        ("from=1960-01-01T00:00:00Z", 1),
    ] {
        let page = engine.get_json(&format!("/v1/attempts?{query}")).await;
        assert_eq!(page["items"].as_array().map(Vec::len), Some(n), "{query}");
    }
    for query in ["limit=0", "limit=501", "outcome=", "from=yesterday"] {
        let r = engine
            .admin(Method::GET, &format!("/v1/attempts?{query}"))
            .send()
            .await
            .expect("GET");
        expect_error(r, 400, "invalid_query").await;
    }
}
