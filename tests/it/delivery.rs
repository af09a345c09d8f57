//! Delivery: the signed envelope, event-type filtering, no redirects, isolation of
//! slow endpoints, and the attempt record.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::receiver::PostMode;
use crate::support::{Receiver, TestCa, TestEngine};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn deliveries_are_signed_envelopes_with_the_spec_headers() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    engine.register_ok(&rx, &["message.created"]).await;

    // `data` is kept byte for byte: odd spacing, unicode, a number beyond f64.
    let data = r#"{ "text" : "مرحبا 👋", "n": 123456789012345678901234567890 }"#;
    let r = engine
        .http
        .post(format!("{}/v1/events", engine.base))
        .bearer_auth(&engine.ingest)
        .header("content-type", "application/json")
        .body(format!(r#"{{"type":"message.created","data":{data}}}"#))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 202);
    let accepted: Value = r.json().await.expect("json");
    assert_eq!(accepted["deliveries"], 1);

    let got = rx.next(WAIT).await;
    assert!(
        got.signature_ok,
        "X-Hub-Signature-256 verifies with the token"
    );
    assert!(got.header("x-hub-signature-256").starts_with("sha256="));
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(
        got.header("user-agent"),
        format!("Orki-Webhooks/{}", orki_engine::VERSION)
    );
    assert_eq!(got.header("x-orki-event"), "message.created");
    assert!(got.header("x-orki-delivery").starts_with("dlv_"));

    let body = std::str::from_utf8(&got.body).expect("utf-8");
    assert!(body.ends_with(&format!(r#","data":{data}}}"#)), "{body}");
    let envelope = got.json();
    assert_eq!(envelope["id"], accepted["id"]);
    assert_eq!(envelope["type"], "message.created");
    let created = envelope["created_at"].as_str().expect("created_at");
    assert!(chrono::DateTime::parse_from_rfc3339(created).is_ok() && created.ends_with('Z'));
    assert_eq!(envelope.as_object().expect("object").len(), 4);
}

#[tokio::test]
async fn only_subscribed_enabled_webhooks_get_an_event() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let messages = Receiver::start(&ca).await;
    let chats = Receiver::start(&ca).await;
    let disabled = Receiver::start(&ca).await;
    engine.register_ok(&messages, &["message.created"]).await;
    engine.register_ok(&chats, &["chat.status_changed"]).await;
    let off = engine
        .register_ok(&disabled, &["message.created", "chat.status_changed"])
        .await;
    let r = engine
        .admin(
            Method::PATCH,
            &format!("/v1/webhooks/{}", off["id"].as_str().expect("id")),
        )
        .json(&json!({"enabled": false}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);

    let r: Value = engine
        .post_event("message.created", json!({"i": 1}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["deliveries"], 1);
    let got = messages.next(WAIT).await;
    assert_eq!(got.json()["id"], r["id"]);

    let r2: Value = engine
        .post_event("chat.status_changed", json!({"i": 2}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r2["deliveries"], 1);
    // The first thing `chats` ever receives is the chat event, not the message.
    assert_eq!(chats.next(WAIT).await.json()["id"], r2["id"]);

    let r3: Value = engine
        .post_event("meta.message", json!({"i": 3}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r3["deliveries"], 0);
    assert!(disabled.try_next().await.is_none());
    assert!(messages.try_next().await.is_none());
}

#[tokio::test]
async fn redirects_are_failures_and_are_not_followed() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |c| {
        c.retry = Some(crate::support::retries(vec![Duration::from_secs(3600)]));
    })
    .await;
    let rx = Receiver::start(&ca).await;
    let elsewhere = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    rx.set_post(PostMode {
        status: 301,
        headers: vec![("location".into(), elsewhere.url.clone())],
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();
    engine.post_event("message.created", json!({})).await;
    let attempt = engine
        .next_attempt(&mut events, wh["id"].as_str().expect("id"), WAIT)
        .await;
    assert_eq!(attempt["success"], false);
    assert_eq!(attempt["status_code"], 301);
    assert_eq!(attempt["error_class"], "redirect");
    assert!(
        attempt["next_retry_at"].is_string(),
        "a 3xx is retried like any failure"
    );
    assert_eq!(rx.next(WAIT).await.answered, 301);
    assert!(
        elsewhere.try_next().await.is_none(),
        "the redirect was not followed"
    );
}

#[tokio::test]
async fn a_slow_endpoint_never_delays_the_others() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |c| {
        c.retry = Some(crate::support::retries(vec![Duration::from_secs(3600)]));
        // Even with room for a single attempt per webhook, the others go on.
        c.max_in_flight_per_webhook = 1;
    })
    .await;
    let slow = Receiver::start(&ca).await;
    let fast = Receiver::start(&ca).await;
    let slow_wh = engine.register_ok(&slow, &["message.created"]).await;
    engine.register_ok(&fast, &["message.created"]).await;
    slow.set_post(PostMode {
        sleep: Some(Duration::from_secs(8)),
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();

    // Several events: the slow endpoint holds its only slot for 5 s per attempt,
    // while the fast one gets every event at once.
    let mut ids = Vec::new();
    for i in 0..5 {
        let r: Value = engine
            .post_event("message.created", json!({"i": i}))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(r["deliveries"], 2);
        ids.push(r["id"].clone());
    }
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let got = fast.next(Duration::from_secs(3)).await;
        assert!(ids.contains(&got.json()["id"]));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the fast endpoint got all five while the slow one was still on its first"
    );

    let attempt = engine
        .next_attempt(
            &mut events,
            slow_wh["id"].as_str().expect("id"),
            Duration::from_secs(12),
        )
        .await;
    assert_eq!(attempt["success"], false);
    assert_eq!(attempt["error_class"], "timeout");
    assert!(attempt["status_code"].is_null());
    let ms = attempt["response_time_ms"].as_u64().expect("ms");
    assert!(
        (4900..7000).contains(&ms),
        "cut off at the 5 s limit, took {ms} ms"
    );
}

#[tokio::test]
async fn every_attempt_is_recorded_with_request_and_response() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["chat.status_changed"]).await;
    let mut events = engine.handle.subscribe();
    let accepted: Value = engine
        .post_event("chat.status_changed", json!({"chat": {"status": "closed"}}))
        .await
        .json()
        .await
        .expect("json");
    let got = rx.next(WAIT).await;
    let live = engine
        .next_attempt(&mut events, wh["id"].as_str().expect("id"), WAIT)
        .await;

    let page = engine.get_json("/v1/attempts").await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    let a = &items[0];
    assert_eq!(a, &live);
    for field in [
        "id",
        "delivery_id",
        "webhook_id",
        "event_id",
        "event_type",
        "attempt",
        "timestamp",
        "success",
        "status_code",
        "response_time_ms",
        "error",
        "test",
    ] {
        assert!(a.get(field).is_some(), "attempt has {field}: {a}");
    }
    assert_eq!(a["event_id"], accepted["id"]);
    assert_eq!(a["webhook_id"], wh["id"]);
    assert_eq!(a["event_type"], "chat.status_changed");
    assert_eq!(a["attempt"], 1);
    assert_eq!(a["success"], true);
    assert_eq!(a["status_code"], 200);
    assert_eq!(a["error"], Value::Null);
    assert_eq!(a["test"], false);
    assert_eq!(a["delivery_id"], got.header("x-orki-delivery"));
    assert!(page["next_cursor"].is_null());

    let detail = engine
        .get_json(&format!("/v1/attempts/{}", a["id"].as_str().expect("id")))
        .await;
    assert_eq!(detail["request"]["url"], rx.url);
    assert_eq!(detail["request"]["method"], "POST");
    assert_eq!(
        detail["request"]["headers"]["X-Hub-Signature-256"],
        got.header("x-hub-signature-256")
    );
    assert_eq!(
        detail["request"]["body"].as_str().expect("body").as_bytes(),
        &got.body[..],
        "the exact bytes that were sent"
    );
    assert_eq!(detail["response"]["status"], 200);
    assert_eq!(detail["response"]["body"], "received");
    assert!(detail["response"]["headers"]["content-type"].is_string());

    let r = engine
        .admin(
            Method::GET,
            "/v1/attempts/att_00000000000000000000000000000000",
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    let r = engine
        .admin(Method::GET, "/v1/attempts?limit=0")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn the_log_pages_newest_first_without_gaps_or_repeats() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let mut events = engine.handle.subscribe();
    for i in 0..7 {
        engine.post_event("message.created", json!({"i": i})).await;
        engine
            .next_attempt(&mut events, wh["id"].as_str().expect("id"), WAIT)
            .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/attempts?limit=3&cursor={c}"),
            None => "/v1/attempts?limit=3".to_string(),
        };
        let page = engine.get_json(&path).await;
        for a in page["items"].as_array().expect("items") {
            seen.push(a["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(seen, sorted, "newest first, no repeats");
}

#[tokio::test]
async fn the_webhook_shows_its_latest_attempt_after_each_success() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let wh_id = wh["id"].as_str().expect("id");
    let path = format!("/v1/webhooks/{wh_id}");
    let mut events = engine.handle.subscribe();
    let mut seen = Vec::new();
    for n in 0..3 {
        engine
            .post_event("message.created", json!({ "n": n }))
            .await;
        let attempt = engine.next_attempt(&mut events, wh_id, WAIT).await;
        assert_eq!(attempt["success"], true);
        let webhook = engine.get_json(&path).await;
        assert_eq!(webhook["last_attempt_at"], attempt["timestamp"]);
        assert_eq!(webhook["last_status_code"], 200);
        assert_eq!(webhook["consecutive_failures"], 0);
        let listed = engine.get_json("/v1/webhooks").await;
        assert_eq!(listed["items"][0]["last_attempt_at"], attempt["timestamp"]);
        seen.push(attempt["timestamp"].as_str().expect("time").to_owned());
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
}
