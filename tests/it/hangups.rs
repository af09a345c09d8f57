//! Clients that hang up: whatever a request committed is known to the
//! engine's in-memory side (queue, webhook cache, settings) however early the
//! client went away, so nothing accepted is stranded and no cut-off admin
//! change leaves the engine sending as before.

use std::collections::HashSet;
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::receiver::PostMode;
use crate::support::{Receiver, TestCa, TestEngine, retries};

const WAIT: Duration = Duration::from_secs(20);

/// Writes one HTTP/1.1 request on a new connection, then hangs up after
/// `after` (at once when zero), without reading the answer.
async fn hang_up(
    engine: &TestEngine,
    method: &str,
    path: &str,
    token: &str,
    extra: &str,
    body: &str,
    after: Duration,
) {
    let addr = engine.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    if !after.is_zero() {
        // The client's own timeout: part of the scenario, not a wait for the engine.
        tokio::time::sleep(after).await;
    }
    drop(stream);
}

/// At once for the first half of the rounds, then 0–5 ms at random.
fn delay(round: usize, rounds: usize) -> Duration {
    if round < rounds / 2 {
        Duration::ZERO
    } else {
        Duration::from_micros(rand::rng().random_range(0..=5_000))
    }
}

/// Waits until the engine's memory agrees with its database (attempts in
/// flight agree a moment later), and fails with the differences if it does
/// not within a few seconds.
async fn assert_memory_matches_store(engine: &TestEngine, after: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mismatches = engine.handle.memory_mismatches().await.expect("check");
        if mismatches.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {after}: the engine's memory disagrees with its database: {mismatches:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn events_posted_by_clients_that_hang_up_are_all_delivered_without_a_restart() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    engine.register_ok(&rx, &["message.created"]).await;

    const N: usize = 40;
    let body = |i: usize| json!({ "type": "message.created", "data": { "n": i } }).to_string();
    for i in 0..N {
        let key = format!("Idempotency-Key: hang-up-{i}\r\n");
        let (ingest, after) = (engine.ingest.clone(), delay(i, N));
        hang_up(
            &engine,
            "POST",
            "/v1/events",
            &ingest,
            &key,
            &body(i),
            after,
        )
        .await;
    }
    // The same posts again: each answers with its one event, stored by the
    // first post or by this one.
    let mut ids = HashSet::new();
    for i in 0..N {
        let r = engine
            .http
            .post(format!("{}/v1/events", engine.base))
            .bearer_auth(&engine.ingest)
            .header("content-type", "application/json")
            .header("idempotency-key", format!("hang-up-{i}"))
            .body(body(i))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 202);
        let accepted: Value = r.json().await.expect("json");
        ids.insert(accepted["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(ids.len(), N, "one event per idempotency key");
    let mut arrived = HashSet::new();
    while !ids.is_subset(&arrived) {
        let got = rx.next(WAIT).await;
        arrived.insert(got.json()["id"].as_str().expect("id").to_owned());
    }
    assert_memory_matches_store(&engine, "the hung-up posts").await;
}

#[tokio::test]
async fn admin_writes_cut_off_leave_the_engine_as_the_database_says() {
    let ca = TestCa::new("Orki Test CA");
    // The stored ingest key (not one from the environment), so it can be
    // regenerated; failures retry only in an hour, so the engine is quiet.
    let engine = TestEngine::start(&ca, |c| {
        c.ingest_key = None;
        c.retry = Some(retries(vec![Duration::from_secs(3600)]));
    })
    .await;
    let (a, b) = (Receiver::start(&ca).await, Receiver::start(&ca).await);
    a.set_post(PostMode {
        status: 500,
        ..PostMode::default()
    });
    let hook = engine.register_ok(&a, &["message.created"]).await;
    let id = hook["id"].as_str().expect("id").to_owned();
    let mut events = engine.handle.subscribe();
    for n in 0..3 {
        assert_eq!(
            engine
                .post_event("message.created", json!({ "n": n }))
                .await
                .status(),
            202
        );
        engine.next_attempt(&mut events, &id, WAIT).await;
    }
    let page = engine
        .get_json(&format!("/v1/attempts?webhook_id={id}"))
        .await;
    let delivery = page["items"][0]["delivery_id"]
        .as_str()
        .expect("delivery")
        .to_owned();
    assert_memory_matches_store(&engine, "the setup").await;

    let admin = engine.admin.clone();
    let hook_path = format!("/v1/webhooks/{id}");
    let writes: Vec<(&str, String, String)> = vec![
        (
            "PATCH",
            hook_path.clone(),
            json!({ "enabled": false }).to_string(),
        ),
        (
            "PATCH",
            hook_path.clone(),
            json!({ "enabled": true }).to_string(),
        ),
        (
            "PATCH",
            hook_path.clone(),
            json!({ "events": ["message.created", "chat.status_changed"] }).to_string(),
        ),
        (
            "PATCH",
            hook_path.clone(),
            json!({ "url": b.url, "verify_token": b.token }).to_string(),
        ),
        (
            "PATCH",
            hook_path.clone(),
            json!({ "url": a.url, "verify_token": a.token }).to_string(),
        ),
        (
            "PATCH",
            "/v1/settings".into(),
            json!({ "retention_days": 12 }).to_string(),
        ),
        (
            "PATCH",
            "/v1/settings".into(),
            json!({ "regenerate_ingest_key": true, "retention_days": 13 }).to_string(),
        ),
        (
            "POST",
            "/v1/webhooks".into(),
            json!({ "url": b.url, "verify_token": b.token, "events": ["meta.message"] })
                .to_string(),
        ),
        (
            "POST",
            format!("/v1/deliveries/{delivery}/redeliver"),
            String::new(),
        ),
        ("POST", format!("{hook_path}/replay"), "{}".into()),
        (
            "PATCH",
            hook_path.clone(),
            json!({ "enabled": false }).to_string(),
        ),
        ("POST", format!("{hook_path}/replay"), "{}".into()),
        (
            "PATCH",
            hook_path.clone(),
            json!({ "enabled": true }).to_string(),
        ),
    ];
    const ROUNDS: usize = 6;
    for round in 0..ROUNDS {
        for (method, path, body) in &writes {
            hang_up(
                &engine,
                method,
                path,
                &admin,
                "",
                body,
                delay(round, ROUNDS),
            )
            .await;
            assert_memory_matches_store(&engine, &format!("{method} {path} {body}")).await;
        }
        // Delete every webhook but the first one, hanging up.
        let listed = engine.get_json("/v1/webhooks").await;
        for w in listed["items"].as_array().expect("items") {
            let other = w["id"].as_str().expect("id");
            if other != id {
                let path = format!("/v1/webhooks/{other}");
                hang_up(
                    &engine,
                    "DELETE",
                    &path,
                    &admin,
                    "",
                    "",
                    delay(round, ROUNDS),
                )
                .await;
                assert_memory_matches_store(&engine, &format!("DELETE {path}")).await;
            }
        }
    }
}

#[tokio::test]
async fn a_test_event_whose_request_is_cut_off_is_still_recorded() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let hook = engine.register_ok(&rx, &["message.created"]).await;
    let id = hook["id"].as_str().expect("id").to_owned();
    // The endpoint answers late: the admin's client gives up before it does.
    rx.set_post(PostMode {
        sleep: Some(Duration::from_millis(300)),
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();
    let path = format!("/v1/webhooks/{id}/test");
    let body = json!({ "event_type": "message.created" }).to_string();
    let admin = engine.admin.clone();
    hang_up(&engine, "POST", &path, &admin, "", &body, Duration::ZERO).await;
    let got = rx.next(WAIT).await;
    assert_eq!(got.json()["type"], "message.created");
    let attempt = engine.next_attempt(&mut events, &id, WAIT).await;
    assert_eq!(attempt["test"], true);
    let page = engine
        .get_json(&format!("/v1/attempts?webhook_id={id}"))
        .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0]["test"], true);
}
