//! Delivery controls (SPEC "Delivery controls"): pause and resume, auto-pause
//! on `410 Gone`, custom headers, rate limits; over real sockets, against HTTPS
//! receivers made here.

use std::time::{Duration, Instant};

use orki_engine::engine::EngineEvent;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::receiver::PostMode;
use crate::support::{Receiver, TestCa, TestEngine, expect_error};

const WAIT: Duration = Duration::from_secs(10);

/// `PATCH /v1/webhooks/{id}` that must succeed; the webhook.
async fn patch_ok(engine: &TestEngine, id: &str, patch: Value) -> Value {
    let r = engine
        .admin(Method::PATCH, &format!("/v1/webhooks/{id}"))
        .json(&patch)
        .send()
        .await
        .expect("PATCH");
    let status = r.status();
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(status, 200, "{body}");
    body
}

/// Posts `message.created` events numbered `from..to`, each accepted.
async fn post_numbered(engine: &TestEngine, range: std::ops::Range<u32>) {
    for n in range {
        let r = engine
            .post_event("message.created", json!({ "n": n }))
            .await;
        assert_eq!(r.status(), 202);
    }
}

/// The webhook's attempts in the log.
async fn attempts_of(engine: &TestEngine, id: &str) -> Vec<Value> {
    let page = engine
        .get_json(&format!("/v1/attempts?webhook_id={id}&limit=500"))
        .await;
    page["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn a_paused_webhook_holds_its_deliveries_across_a_restart_and_resume_sends_them_in_order() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let held = Receiver::start(&ca).await;
    let beside = Receiver::start(&ca).await;
    let hook = engine.register_ok(&held, &["message.created"]).await;
    let id = hook["id"].as_str().expect("id").to_owned();
    assert_eq!(hook["paused"], false);
    assert_eq!(hook["paused_reason"], Value::Null);
    assert_eq!(hook["pending"], 0);
    engine.register_ok(&beside, &["message.created"]).await;

    let paused = patch_ok(&engine, &id, json!({"paused": true})).await;
    assert_eq!(paused["paused"], true);
    assert_eq!(paused["paused_reason"], "admin");
    assert!(paused["paused_at"].is_string());
    post_numbered(&engine, 0..5).await;
    // The webhook beside it gets all five; the paused one none.
    for n in 0..5 {
        assert_eq!(beside.next(WAIT).await.json()["data"]["n"], n);
    }
    let listed = engine.get_json("/v1/webhooks").await;
    let row = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|w| w["id"] == id.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(row["paused"], true);
    assert_eq!(row["pending"], 5);

    // Across a restart: still paused, still holding all five.
    let dir = engine.stop().await;
    let engine = TestEngine::start_in(dir, &ca, |_| {}).await;
    let again = engine.get_json(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(again["paused"], true);
    assert_eq!(again["pending"], 5);
    assert!(
        attempts_of(&engine, &id).await.is_empty(),
        "nothing sent while paused"
    );

    let resumed = patch_ok(&engine, &id, json!({"paused": false})).await;
    assert_eq!(resumed["paused"], false);
    assert_eq!(resumed["paused_reason"], Value::Null);
    // Oldest first.
    for n in 0..5 {
        assert_eq!(held.next(WAIT).await.json()["data"]["n"], n);
    }
    assert!(held.try_next().await.is_none());
}

#[tokio::test]
async fn retries_do_not_advance_while_paused() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let hook = engine.register_ok(&rx, &["message.created"]).await;
    let id = hook["id"].as_str().expect("id").to_owned();
    rx.set_post(PostMode {
        status: 500,
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();
    post_numbered(&engine, 0..1).await;
    let first = engine.next_attempt(&mut events, &id, WAIT).await;
    assert_eq!(first["attempt"], 1);
    patch_ok(&engine, &id, json!({"paused": true})).await;
    // A stop waits for the attempt in flight, if any: the count is then final.
    let dir = engine.stop().await;
    let engine = TestEngine::start_in(dir, &ca, |_| {}).await;
    let before = attempts_of(&engine, &id).await.len();
    // The retries (every 150 ms, eight of them) would all be due within this.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        attempts_of(&engine, &id).await.len(),
        before,
        "a retry went out while paused"
    );
    let pending = engine.get_json(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(pending["pending"], 1, "nothing given up");

    rx.set_post(PostMode::default());
    let mut events = engine.handle.subscribe();
    patch_ok(&engine, &id, json!({"paused": false})).await;
    let next = engine.next_attempt(&mut events, &id, WAIT).await;
    assert_eq!(
        next["attempt"],
        before + 1,
        "the schedule goes on where it stopped"
    );
    assert_eq!(next["success"], true);
}

#[tokio::test]
async fn gone_pauses_the_webhook_at_once_and_keeps_the_delivery() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let hook = engine.register_ok(&rx, &["message.created"]).await;
    let id = hook["id"].as_str().expect("id").to_owned();
    rx.set_post(PostMode {
        status: 410,
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();
    post_numbered(&engine, 0..1).await;
    // The live event says it is paused, and why.
    let pause = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await.expect("events") {
                EngineEvent::WebhookHealthChanged(h) if h.paused.is_some() => return h,
                _ => {}
            }
        }
    })
    .await
    .expect("a pause within 10 s");
    assert_eq!(pause.webhook_id.to_string(), id);
    let got = engine.get_json(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(got["paused"], true);
    assert_eq!(got["paused_reason"], "gone");
    assert_eq!(got["pending"], 1, "held, not given up");
    let attempts = attempts_of(&engine, &id).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status_code"], 410);
    // A redelivery by hand is refused while paused, and changes nothing.
    let delivery = attempts[0]["delivery_id"].as_str().expect("delivery");
    let r = engine
        .admin(
            Method::POST,
            &format!("/v1/deliveries/{delivery}/redeliver"),
        )
        .send()
        .await
        .expect("redeliver");
    expect_error(r, 409, "webhook_paused").await;
    assert_eq!(
        engine.get_json(&format!("/v1/webhooks/{id}")).await["pending"],
        1
    );

    rx.set_post(PostMode::default());
    rx.next(WAIT).await; // the 410 one
    patch_ok(&engine, &id, json!({"paused": false})).await;
    assert_eq!(rx.next(WAIT).await.answered, 200);
}

#[tokio::test]
async fn custom_headers_reach_the_endpoint_and_are_masked_everywhere_else() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let r = engine
        .admin(Method::POST, "/v1/webhooks")
        .json(&json!({
            "url": rx.url, "verify_token": rx.token, "events": ["message.created"],
            "headers": {"Authorization": "Basic b3JraTpzM2NyM3Q=", "X-Tenant": "office-7 ✓"}
        }))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let hook: Value = r.json().await.expect("JSON");
    let id = hook["id"].as_str().expect("id").to_owned();
    assert_eq!(hook["headers"]["Authorization"], "Basic b3JraTpzM2NyM3Q=");
    let listed = engine.get_json("/v1/webhooks").await;
    assert_eq!(listed["items"][0]["headers"]["Authorization"], "••••");
    assert_eq!(listed["items"][0]["headers"]["X-Tenant"], "••••");

    let mut events = engine.handle.subscribe();
    post_numbered(&engine, 0..1).await;
    let got = rx.next(WAIT).await;
    assert_eq!(got.header("authorization"), "Basic b3JraTpzM2NyM3Q=");
    assert_eq!(
        got.headers.get("x-tenant").map(|v| v.as_bytes()),
        Some("office-7 ✓".as_bytes())
    );
    assert!(got.signature_ok);
    let attempt = engine.next_attempt(&mut events, &id, WAIT).await;
    let detail = engine
        .get_json(&format!(
            "/v1/attempts/{}",
            attempt["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(detail["request"]["headers"]["Authorization"], "••••");
    assert_eq!(detail["request"]["headers"]["X-Tenant"], "••••");
    assert!(!detail.to_string().contains("b3JraTpzM2NyM3Q="));

    // Test events carry them too.
    let r = engine
        .admin(Method::POST, &format!("/v1/webhooks/{id}/test"))
        .json(&json!({"event_type": "message.created"}))
        .send()
        .await
        .expect("test");
    let test: Value = r.json().await.expect("JSON");
    assert_eq!(test["request"]["headers"]["Authorization"], "••••");
    assert_eq!(
        rx.next(WAIT).await.header("authorization"),
        "Basic b3JraTpzM2NyM3Q="
    );

    // `{}` removes them all.
    let cleared = patch_ok(&engine, &id, json!({"headers": {}})).await;
    assert_eq!(cleared["headers"], json!({}));
}

#[tokio::test]
async fn every_bad_control_is_refused_and_changes_nothing() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let hook = engine.register_ok(&rx, &["message.created"]).await;
    let id = hook["id"].as_str().expect("id").to_owned();
    let before = engine.get_json(&format!("/v1/webhooks/{id}")).await;
    let too_many: serde_json::Map<String, Value> =
        (0..21).map(|i| (format!("X-H{i}"), json!("v"))).collect();
    let cases = [
        (json!({"headers": too_many}), "invalid_header"),
        (json!({"headers": {"Bad Name": "v"}}), "invalid_header"),
        (json!({"headers": {"": "v"}}), "invalid_header"),
        (
            json!({"headers": {"X-A": "line\r\nX-Injected: 1"}}),
            "invalid_header",
        ),
        (json!({"headers": {"X-A": "nul\u{0}"}}), "invalid_header"),
        (
            json!({"headers": {"X-A": "x".repeat(1025)}}),
            "invalid_header",
        ),
        (
            json!({"headers": {"x-a": "1", "X-A": "2"}}),
            "invalid_header",
        ),
        (json!({"rate_limit_per_s": 0}), "invalid_rate_limit"),
        (json!({"rate_limit_per_s": 10_001}), "invalid_rate_limit"),
        (
            json!({"rate_limit_per_s": 99_999_999_999_u64}),
            "invalid_rate_limit",
        ),
    ];
    for name in [
        "Host",
        "content-type",
        "Content-Length",
        "User-Agent",
        "X-Hub-Signature-256",
        "X-Orki-Event",
        "x-orki-anything",
        "webhook-signature",
        "Webhook-Id",
        "Transfer-Encoding",
    ] {
        let r = engine
            .admin(Method::PATCH, &format!("/v1/webhooks/{id}"))
            .json(&json!({"headers": {name: "v"}, "paused": true}))
            .send()
            .await
            .expect("PATCH");
        let e = expect_error(r, 400, "invalid_header").await;
        assert!(
            e["message"].as_str().expect("message").contains(name),
            "{e}"
        );
    }
    for (patch, code) in cases {
        let mut with_pause = patch.clone();
        with_pause["paused"] = json!(true);
        let r = engine
            .admin(Method::PATCH, &format!("/v1/webhooks/{id}"))
            .json(&with_pause)
            .send()
            .await
            .expect("PATCH");
        expect_error(r, 400, code).await;
    }
    for bad in [
        json!({"paused": "yes"}),
        json!({"signature": "rsa"}),
        json!({"rate_limit_per_s": "5"}),
    ] {
        let r = engine
            .admin(Method::PATCH, &format!("/v1/webhooks/{id}"))
            .json(&bad)
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = engine
        .admin(Method::POST, "/v1/webhooks")
        .json(&json!({"url": rx.url, "verify_token": rx.token, "events": ["message.created"], "headers": {"Host": "x"}}))
        .send()
        .await
        .expect("create");
    expect_error(r, 400, "invalid_header").await;
    assert_eq!(
        engine.get_json("/v1/webhooks").await["items"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let after = engine.get_json(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(after, before, "a refused change changed something");
    // A whole number written with .0 is a whole number; a rate limit clears with null.
    assert_eq!(
        patch_ok(&engine, &id, json!({"rate_limit_per_s": 7.0})).await["rate_limit_per_s"],
        7
    );
    assert_eq!(
        patch_ok(&engine, &id, json!({"rate_limit_per_s": 5})).await["rate_limit_per_s"],
        5
    );
    assert_eq!(
        patch_ok(&engine, &id, json!({"rate_limit_per_s": null})).await["rate_limit_per_s"],
        Value::Null
    );
}

#[tokio::test]
async fn a_rate_limit_paces_one_webhook_and_not_the_one_beside_it() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let slow = Receiver::start(&ca).await;
    let fast = Receiver::start(&ca).await;
    let hook = engine.register_ok(&slow, &["message.created"]).await;
    let id = hook["id"].as_str().expect("id").to_owned();
    engine.register_ok(&fast, &["message.created"]).await;
    patch_ok(&engine, &id, json!({"rate_limit_per_s": 20})).await;
    let events = 60;
    post_numbered(&engine, 0..events).await;
    // The unlimited one gets all of them while the limited one is still at
    // the start of its three seconds.
    let started = Instant::now();
    for _ in 0..events {
        fast.next(WAIT).await;
    }
    let fast_done = started.elapsed();
    let mut arrivals = Vec::new();
    for _ in 0..events {
        slow.next(WAIT).await;
        arrivals.push(Instant::now());
    }
    assert!(
        fast_done < Duration::from_millis(1_000),
        "the unlimited webhook took {fast_done:?}"
    );
    // 20 per second at the receiver, within 10 %: 59 gaps after the first.
    let span = arrivals[events as usize - 1] - arrivals[0];
    let rate = f64::from(events - 1) / span.as_secs_f64();
    assert!((18.0..=22.0).contains(&rate), "{rate:.1}/s over {span:?}");
}
