//! Operating it: the filtered delivery log, test events, redeliver, bulk replay,
//! settings, retention and the live stream.

use std::collections::HashSet;
use std::time::Duration;

use orki_engine::ids::{AttemptId, DeliveryId, EventId, WebhookId};
use orki_engine::model::{
    Attempt, AttemptRecord, DeliveryRecord, DeliveryState, EventRecord, RequestRecord,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::receiver::PostMode;
use crate::support::{Receiver, TestCa, TestEngine, expect_error, retries};

const WAIT: Duration = Duration::from_secs(10);

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().expect("items").clone()
}

/// Two webhooks: `ok` succeeds, `bad` answers 500 and is not retried.
struct Log {
    engine: TestEngine,
    ok: Value,
    bad: Value,
    all: Vec<Value>,
    _rx: (Receiver, Receiver),
}

async fn filled_log(ca: &TestCa) -> Log {
    let engine = TestEngine::start(ca, |c| {
        c.retry = Some(retries(vec![Duration::from_secs(3600)]))
    })
    .await;
    let ok_rx = Receiver::start(ca).await;
    let bad_rx = Receiver::start(ca).await;
    bad_rx.set_post(PostMode {
        status: 500,
        ..PostMode::default()
    });
    let ok = engine
        .register_ok(&ok_rx, &["message.created", "chat.status_changed"])
        .await;
    let bad = engine.register_ok(&bad_rx, &["message.created"]).await;
    let mut events = engine.handle.subscribe();
    for i in 0..3 {
        engine.post_event("message.created", json!({"i": i})).await;
    }
    for i in 0..2 {
        engine
            .post_event("chat.status_changed", json!({"i": i}))
            .await;
    }
    tokio::time::timeout(WAIT, async {
        let mut n = 0;
        while n < 8 {
            if let Ok(orki_engine::EngineEvent::AttemptRecorded(_)) = events.recv().await {
                n += 1;
            }
        }
    })
    .await
    .expect("eight attempts recorded");
    let all = items(&engine.get_json("/v1/attempts?limit=100").await);
    assert_eq!(all.len(), 8);
    Log {
        engine,
        ok,
        bad,
        all,
        _rx: (ok_rx, bad_rx),
    }
}

#[tokio::test]
async fn every_filter_alone_and_combined_matches_a_scan_of_the_log() {
    let ca = TestCa::new("Orki Test CA");
    let log = filled_log(&ca).await;
    let (ok, bad) = (id(&log.ok), id(&log.bad));
    let ts = |a: &Value| {
        chrono::DateTime::parse_from_rfc3339(a["timestamp"].as_str().expect("ts"))
            .expect("rfc3339")
            .timestamp_millis()
    };
    let mut times: Vec<i64> = log.all.iter().map(ts).collect();
    times.sort();
    let mid = chrono::DateTime::from_timestamp_millis(times[3]).expect("time");
    let mid_text = mid.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);

    type Pred = Box<dyn Fn(&Value) -> bool>;
    let cases: Vec<(String, Pred)> = vec![
        (String::new(), Box::new(|_| true)),
        (format!("webhook_id={ok}"), {
            let ok = ok.clone();
            Box::new(move |a| a["webhook_id"] == ok.as_str())
        }),
        (format!("webhook_id={bad}"), {
            let bad = bad.clone();
            Box::new(move |a| a["webhook_id"] == bad.as_str())
        }),
        (
            "event_type=message.created".into(),
            Box::new(|a| a["event_type"] == "message.created"),
        ),
        (
            "event_type=chat.status_changed".into(),
            Box::new(|a| a["event_type"] == "chat.status_changed"),
        ),
        ("event_type=meta.message".into(), Box::new(|_| false)),
        ("outcome=success".into(), Box::new(|a| a["success"] == true)),
        (
            "outcome=failure".into(),
            Box::new(|a| a["success"] == false),
        ),
        (format!("webhook_id={ok}&event_type=message.created"), {
            let ok = ok.clone();
            Box::new(move |a| {
                a["webhook_id"] == ok.as_str() && a["event_type"] == "message.created"
            })
        }),
        (
            "event_type=message.created&outcome=failure".into(),
            Box::new(|a| a["event_type"] == "message.created" && a["success"] == false),
        ),
        (
            format!("webhook_id={bad}&outcome=success"),
            Box::new(|_| false),
        ),
        (
            format!("webhook_id={ok}&event_type=chat.status_changed&outcome=success"),
            {
                let ok = ok.clone();
                Box::new(move |a| {
                    a["webhook_id"] == ok.as_str()
                        && a["event_type"] == "chat.status_changed"
                        && a["success"] == true
                })
            },
        ),
        (format!("from={mid_text}"), {
            let m = times[3];
            Box::new(move |a| ts(a) >= m)
        }),
        (format!("to={mid_text}"), {
            let m = times[3];
            Box::new(move |a| ts(a) <= m)
        }),
        (format!("from={mid_text}&to={mid_text}&outcome=failure"), {
            let m = times[3];
            Box::new(move |a| ts(a) == m && a["success"] == false)
        }),
        ("to=2000-01-01T00:00:00Z".into(), Box::new(|_| false)),
        (
            "from=2999-01-01T00:00:00%2B02:00".into(),
            Box::new(|_| false),
        ),
    ];
    let mut non_trivial = 0;
    for (query, pred) in cases {
        let page = log
            .engine
            .get_json(&format!("/v1/attempts?limit=100&{query}"))
            .await;
        let got: Vec<String> = items(&page).iter().map(id).collect();
        let expected: Vec<String> = log.all.iter().filter(|a| pred(a)).map(id).collect();
        assert_eq!(got, expected, "query {query:?}");
        if !expected.is_empty() && expected.len() < log.all.len() {
            non_trivial += 1;
        }
    }
    assert!(non_trivial >= 8, "the filters really narrowed the log");
    let mut sorted: Vec<String> = log.all.iter().map(id).collect();
    sorted.sort();
    sorted.reverse();
    assert_eq!(
        log.all.iter().map(id).collect::<Vec<_>>(),
        sorted,
        "newest first"
    );

    for bad_query in [
        "outcome=maybe",
        "event_type=message.deleted",
        "webhook_id=12",
        "from=yesterday",
        "to=2026-13-01T00:00:00Z",
        // `from` later than `to` is a valid, empty range now (what the
        // OpenAPI document can say): contract::any_rfc3339_range_is_a_query.
        "limit=501",
        "limit=-1",
        "cursor=att_zz",
        "status=500",
    ] {
        let r = log
            .engine
            .admin(Method::GET, &format!("/v1/attempts?{bad_query}"))
            .send()
            .await
            .expect("send");
        expect_error(r, 400, "invalid_query").await;
    }
}

#[tokio::test]
async fn pages_never_skip_or_repeat_while_attempts_keep_arriving() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let mut events = engine.handle.subscribe();
    for i in 0..12 {
        engine.post_event("message.created", json!({"i": i})).await;
        engine.next_attempt(&mut events, &id(&wh), WAIT).await;
    }
    let before: HashSet<String> = items(&engine.get_json("/v1/attempts?limit=100").await)
        .iter()
        .map(id)
        .collect();
    assert_eq!(before.len(), 12);

    // Keep inserting while the pages are walked.
    let base = engine.base.clone();
    let key = engine.ingest.clone();
    let writer = tokio::spawn(async move {
        let http = reqwest::Client::new();
        for i in 0..12 {
            let r = http
                .post(format!("{base}/v1/events"))
                .bearer_auth(&key)
                .json(&json!({"type": "message.created", "data": {"late": i}}))
                .send()
                .await
                .expect("send");
            assert_eq!(r.status(), 202);
        }
    });
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    let mut webhook_filtered = format!("/v1/attempts?limit=2&webhook_id={}", id(&wh));
    loop {
        let path = match &cursor {
            Some(c) => format!("{webhook_filtered}&cursor={c}"),
            None => webhook_filtered.clone(),
        };
        let page = engine.get_json(&path).await;
        walked.extend(items(&page).iter().map(id));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    webhook_filtered.clear();
    let unique: HashSet<&String> = walked.iter().collect();
    assert_eq!(unique.len(), walked.len(), "no attempt twice");
    let mut sorted = walked.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(walked, sorted, "newest first throughout");
    for a in &before {
        assert!(walked.contains(a), "no attempt skipped: {a}");
    }
}

#[tokio::test]
async fn test_events_are_sent_at_once_and_recorded_as_tests() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let path = format!("/v1/webhooks/{}/test", id(&wh));

    // Any known type can be tested, subscribed or not.
    let r = engine
        .admin(Method::POST, &path)
        .json(&json!({"event_type": "meta.message"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let result: Value = r.json().await.expect("json");
    assert_eq!(result["success"], true);
    assert_eq!(result["test"], true);
    assert_eq!(result["status_code"], 200);
    assert_eq!(result["response"]["body"], "received");
    assert!(result["response_time_ms"].is_u64());
    let got = rx.next(WAIT).await;
    assert!(got.signature_ok);
    assert_eq!(got.header("x-orki-event"), "meta.message");
    let sample = &engine.get_json("/v1/event-types").await[0]["sample"];
    assert_eq!(&got.json()["data"], sample, "the type's sample payload");
    assert_eq!(
        result["request"]["body"].as_str().expect("body").as_bytes(),
        &got.body[..]
    );

    // A failing test is reported, recorded, and does not count against the webhook.
    rx.set_post(PostMode {
        status: 500,
        ..PostMode::default()
    });
    let r = engine
        .admin(Method::POST, &path)
        .json(&json!({"event_type": "message.created"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let failed: Value = r.json().await.expect("json");
    assert_eq!(failed["success"], false);
    assert_eq!(failed["error_class"], "status");
    assert_eq!(failed["status_code"], 500);
    let webhook = engine.get_json(&format!("/v1/webhooks/{}", id(&wh))).await;
    assert_eq!(webhook["consecutive_failures"], 0);
    assert!(webhook["last_attempt_at"].is_null());

    let log = items(&engine.get_json("/v1/attempts").await);
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|a| a["test"] == true));
    assert_eq!(id(&log[0]), id(&failed));

    // A dead endpoint: the error, within the time limit.
    drop(rx);
    let r = engine
        .admin(Method::POST, &path)
        .json(&json!({"event_type": "chat.status_changed"}))
        .send()
        .await
        .expect("send");
    let dead: Value = r.json().await.expect("json");
    assert_eq!(dead["success"], false);
    assert_eq!(dead["error_class"], "connect");
    assert!(dead["status_code"].is_null());

    let r = engine
        .admin(Method::POST, &path)
        .json(&json!({"event_type": "nope"}))
        .send()
        .await
        .expect("send");
    expect_error(r, 400, "unknown_event_type").await;
    let r = engine
        .admin(Method::POST, &path)
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    expect_error(r, 400, "invalid_field").await;
    let r = engine
        .admin(
            Method::POST,
            "/v1/webhooks/wh_00000000000000000000000000000000/test",
        )
        .json(&json!({"event_type": "meta.message"}))
        .send()
        .await
        .expect("send");
    expect_error(r, 404, "not_found").await;
}

#[tokio::test]
async fn a_delivery_is_redelivered_by_hand_with_the_same_ids() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let mut events = engine.handle.subscribe();
    engine
        .post_event("message.created", json!({"once": "more"}))
        .await;
    let first = rx.next(WAIT).await;
    engine.next_attempt(&mut events, &id(&wh), WAIT).await;
    let delivery = first.header("x-orki-delivery");

    let r = engine
        .admin(
            Method::POST,
            &format!("/v1/deliveries/{delivery}/redeliver"),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 202);
    let again = rx.next(WAIT).await;
    assert_eq!(again.header("x-orki-delivery"), delivery);
    assert_eq!(again.body, first.body, "the same event, byte for byte");
    let attempt = engine.next_attempt(&mut events, &id(&wh), WAIT).await;
    assert_eq!(attempt["attempt"], 2);
    assert_eq!(attempt["delivery_id"], delivery.as_str());

    let r = engine
        .admin(
            Method::POST,
            "/v1/deliveries/dlv_00000000000000000000000000000000/redeliver",
        )
        .send()
        .await
        .expect("send");
    expect_error(r, 404, "not_found").await;
    let r = engine
        .admin(Method::DELETE, &format!("/v1/webhooks/{}", id(&wh)))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    let r = engine
        .admin(
            Method::POST,
            &format!("/v1/deliveries/{delivery}/redeliver"),
        )
        .send()
        .await
        .expect("send");
    expect_error(r, 409, "webhook_deleted").await;
}

#[tokio::test]
async fn failed_deliveries_are_counted_then_replayed_at_a_pace() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |c| {
        c.retry = Some(retries(vec![Duration::from_millis(30)]))
    })
    .await;
    let rx = Receiver::start(&ca).await;
    let wh = engine
        .register_ok(&rx, &["message.created", "chat.status_changed"])
        .await;
    let replay = format!("/v1/webhooks/{}/replay", id(&wh));
    rx.set_post(PostMode {
        status: 503,
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();
    let mut message_ids = HashSet::new();
    for i in 0..3 {
        let r: Value = engine
            .post_event("message.created", json!({"i": i}))
            .await
            .json()
            .await
            .expect("json");
        message_ids.insert(id(&r));
    }
    for i in 0..2 {
        engine
            .post_event("chat.status_changed", json!({"i": i}))
            .await;
    }
    for _ in 0..10 {
        engine.next_attempt(&mut events, &id(&wh), WAIT).await;
    }
    assert_eq!(
        engine.handle.pending_deliveries().await.expect("count"),
        0,
        "all given up"
    );

    let count = |body: Value| {
        let engine = &engine;
        let replay = replay.clone();
        async move {
            let r = engine
                .admin(Method::POST, &replay)
                .json(&body)
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            let v: Value = r.json().await.expect("json");
            (status, v["count"].as_u64().expect("count"))
        }
    };
    assert_eq!(count(json!({"dry_run": true})).await, (200, 5));
    assert_eq!(
        count(json!({"dry_run": true, "event_type": "chat.status_changed"})).await,
        (200, 2)
    );
    assert_eq!(
        count(json!({"dry_run": true, "from": "2999-01-01T00:00:00Z"})).await,
        (200, 0)
    );
    assert_eq!(
        count(json!({"dry_run": true, "to": "2000-01-01T00:00:00Z"})).await,
        (200, 0)
    );
    assert_eq!(
        rx.try_next().await.map(|r| r.answered),
        Some(503),
        "only old answers so far"
    );
    while rx.try_next().await.is_some() {}

    rx.set_post(PostMode::default());
    assert_eq!(
        count(json!({"event_type": "message.created"})).await,
        (202, 3)
    );
    let mut arrivals = Vec::new();
    let mut replayed = HashSet::new();
    for _ in 0..3 {
        let got = rx.next(WAIT).await;
        arrivals.push(std::time::Instant::now());
        replayed.insert(got.json()["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(replayed, message_ids, "the event ids are kept");
    assert!(
        arrivals[2] - arrivals[0] >= Duration::from_millis(150),
        "paced, not all at once"
    );
    // What was not replayed is still there to replay.
    assert_eq!(count(json!({"dry_run": true})).await, (200, 2));

    for (body, code) in [
        (json!({"event_type": "nope"}), "unknown_event_type"),
        (json!({"from": "last week"}), "invalid_field"),
        (json!({"dry_run": "yes"}), "invalid_field"),
    ] {
        let r = engine
            .admin(Method::POST, &replay)
            .json(&body)
            .send()
            .await
            .expect("send");
        expect_error(r, 400, code).await;
    }
}

#[tokio::test]
async fn settings_are_validated_persisted_and_applied() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |c| c.ingest_key = None).await;
    let s = engine.get_json("/v1/settings").await;
    assert_eq!(s["warning_threshold"], 5);
    assert_eq!(s["retention_days"], 30);
    assert_eq!(s["listen_port"], 8787);
    assert!(s["max_database_mb"].is_null());
    assert_eq!(s["ingest_key"], engine.ingest);
    assert_eq!(s["ingest_key_from_env"], false);

    // Bad values: 400, and nothing changes (not even the valid fields beside them).
    for bad in [
        json!({"warning_threshold": 0}),
        json!({"warning_threshold": 3, "retention_days": -1}),
        json!({"retry_schedule": ["5s", "soon"]}),
        json!({"retry_schedule": []}),
        json!({"listen_port": 70000}),
        json!({"theme": "dark"}),
    ] {
        let r = engine
            .admin(Method::PATCH, "/v1/settings")
            .json(&bad)
            .send()
            .await
            .expect("send");
        expect_error(r, 400, "invalid_setting").await;
    }
    assert_eq!(engine.get_json("/v1/settings").await, s);

    let r = engine.patch_settings(&json!({"warning_threshold": 1, "retention_days": 7, "retry_schedule": ["1s", "1m"], "listen_port": 9876, "max_database_mb": 64})).await;
    assert_eq!(r.status(), 200);
    let changed: Value = r.json().await.expect("json");
    assert_eq!(changed["warning_threshold"], 1);
    assert_eq!(changed["retry_schedule"], json!(["1s", "1m"]));
    assert_eq!(changed["listen_port"], 9876);
    assert_eq!(changed["restart_required"], true);

    // The threshold applies at once: one failure is now a warning.
    let rx = Receiver::start(&ca).await;
    rx.set_post(PostMode {
        status: 500,
        ..PostMode::default()
    });
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let mut events = engine.handle.subscribe();
    engine.post_event("message.created", json!({})).await;
    let a = engine.next_attempt(&mut events, &id(&wh), WAIT).await;
    let next = chrono::DateTime::parse_from_rfc3339(a["next_retry_at"].as_str().expect("next"))
        .expect("time");
    let at =
        chrono::DateTime::parse_from_rfc3339(a["timestamp"].as_str().expect("ts")).expect("time");
    assert!(
        next - at >= chrono::TimeDelta::milliseconds(800),
        "the new 1s first step"
    );
    assert_eq!(
        engine.get_json("/v1/webhooks").await["items"][0]["warning"],
        true
    );

    // The ingest key is regenerated: the old one stops working at once.
    let old_key = engine.ingest.clone();
    let r = engine
        .patch_settings(&json!({"regenerate_ingest_key": true}))
        .await;
    let regenerated: Value = r.json().await.expect("json");
    let new_key = regenerated["ingest_key"].as_str().expect("key").to_owned();
    assert_ne!(new_key, old_key);
    let post = |key: String| {
        engine
            .http
            .post(format!("{}/v1/events", engine.base))
            .bearer_auth(key)
            .json(&json!({"type": "meta.message", "data": {}}))
            .send()
    };
    assert_eq!(post(old_key).await.expect("send").status(), 401);
    assert_eq!(post(new_key.clone()).await.expect("send").status(), 202);

    // Persisted across a restart.
    let dir = engine.stop().await;
    let engine = TestEngine::start_in(dir, &ca, |c| {
        c.ingest_key = None;
        c.retry = None;
    })
    .await;
    let after = engine.get_json("/v1/settings").await;
    assert_eq!(after["warning_threshold"], 1);
    assert_eq!(after["retention_days"], 7);
    assert_eq!(after["retry_schedule"], json!(["1s", "1m"]));
    assert_eq!(after["max_database_mb"], 64);
    assert_eq!(after["ingest_key"], new_key.as_str());

    // With ORKI_INGEST_KEY in force, the key cannot be regenerated here.
    let dir = engine.stop().await;
    let engine = TestEngine::start_in(dir, &ca, |_| {}).await;
    let r = engine
        .patch_settings(&json!({"regenerate_ingest_key": true}))
        .await;
    expect_error(r, 409, "ingest_key_from_env").await;
}

fn old_history(
    webhook: WebhookId,
    at_ms: u64,
    n: usize,
) -> Vec<(EventRecord, DeliveryRecord, AttemptRecord)> {
    (0..n)
        .map(|i| {
            let at_ms = at_ms + i as u64;
            let at = chrono::DateTime::from_timestamp_millis(at_ms as i64).expect("time");
            let event = EventRecord {
                id: EventId::at_unix_ms(at_ms),
                event_type: "message.created".into(),
                created_at: at,
                payload: format!(r#"{{"filler":"{}"}}"#, "x".repeat(300)),
                test: false,
                idempotency_key: None,
                ordering_key: None,
            };
            let delivery = DeliveryRecord {
                id: DeliveryId::at_unix_ms(at_ms),
                event_id: event.id,
                webhook_id: webhook,
                event_type: event.event_type.clone(),
                created_at: at,
                attempts: 1,
                state: DeliveryState::Succeeded,
                due_ms: None,
                test: false,
                ordering: None,
            };
            let attempt = AttemptRecord {
                attempt: Attempt {
                    id: AttemptId::at_unix_ms(at_ms),
                    delivery_id: delivery.id,
                    webhook_id: webhook,
                    event_id: event.id,
                    event_type: event.event_type.clone(),
                    attempt: 1,
                    timestamp: at,
                    success: true,
                    status_code: Some(200),
                    response_time_ms: 12,
                    error: None,
                    error_class: None,
                    test: false,
                    next_retry_at: None,
                },
                request: RequestRecord {
                    url: "https://example.com/hook".into(),
                    method: "POST".into(),
                    headers: [("X-Filler".to_owned(), "y".repeat(400))]
                        .into_iter()
                        .collect(),
                },
                response: None,
            };
            (event, delivery, attempt)
        })
        .collect()
}

#[tokio::test]
async fn old_attempts_and_events_are_pruned_and_recent_ones_kept() {
    let ca = TestCa::new("Orki Test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let wh = WebhookId::generate();
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    let day = 86_400_000;
    {
        let store =
            orki_engine::Store::open(&dir.path().join("orki-webhooks.redb")).expect("store");
        store
            .insert_history(&old_history(wh, now_ms - 40 * day, 1200))
            .expect("old");
        store
            .insert_history(&old_history(wh, now_ms - 2 * day, 3))
            .expect("recent");
    }
    let engine = TestEngine::start_in(dir, &ca, |_| {}).await;
    // Retention runs at start; one more pass makes sure it has finished.
    orki_engine::retention::prune_once(&engine.handle)
        .await
        .expect("prune");
    let left = items(
        &engine
            .get_json(&format!("/v1/attempts?limit=500&webhook_id={wh}"))
            .await,
    );
    assert_eq!(left.len(), 3, "only the recent attempts remain");
    let all = items(
        &engine
            .get_json("/v1/attempts?limit=500&event_type=message.created&outcome=success")
            .await,
    );
    assert_eq!(all.len(), 3, "the index entries went with them");
    let old_event = EventId::at_unix_ms(now_ms - 40 * day);
    let recent_event = EventId::parse(left[0]["event_id"].as_str().expect("event")).expect("id");
    let dir = engine.stop().await;
    let store = orki_engine::Store::open(&dir.path().join("orki-webhooks.redb")).expect("store");
    assert!(store.get_event(recent_event).expect("read").is_some());
    let old_left = store
        .list_attempts(&Default::default(), None, 10_000)
        .expect("read")
        .iter()
        .filter(|a| a.timestamp.timestamp_millis() < (now_ms - 30 * day) as i64)
        .count();
    assert_eq!(old_left, 0);
    assert!(
        store.get_event(old_event).expect("read").is_none(),
        "old events pruned"
    );
}

#[tokio::test]
async fn a_size_cap_prunes_the_oldest_attempts_first() {
    let ca = TestCa::new("Orki Test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let wh = WebhookId::generate();
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    {
        let store =
            orki_engine::Store::open(&dir.path().join("orki-webhooks.redb")).expect("store");
        for chunk in 0..6 {
            store
                .insert_history(&old_history(wh, now_ms - 3_600_000 + chunk * 1000, 1000))
                .expect("fill");
        }
        assert!(store.used_bytes().expect("size") > 4 * 1024 * 1024);
    }
    let engine = TestEngine::start_in(dir, &ca, |_| {}).await;
    let newest_before = items(&engine.get_json("/v1/attempts?limit=1").await);
    let r = engine.patch_settings(&json!({"max_database_mb": 2})).await;
    assert_eq!(r.status(), 200);
    let (pruned, _) = orki_engine::retention::prune_once(&engine.handle)
        .await
        .expect("prune");
    assert!(pruned > 1000, "pruned {pruned}");
    let dir = engine.stop().await;
    let store = orki_engine::Store::open(&dir.path().join("orki-webhooks.redb")).expect("store");
    assert!(store.used_bytes().expect("size") <= 2 * 1024 * 1024);
    let left = store
        .list_attempts(&Default::default(), None, 10_000)
        .expect("read");
    assert!(!left.is_empty() && left.len() < 6000);
    assert_eq!(
        left[0].id.to_string(),
        id(&newest_before[0]),
        "the newest stay"
    );
}

#[tokio::test]
async fn the_stream_pushes_attempts_as_server_sent_events() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let r = engine
        .admin(Method::GET, "/v1/stream")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/event-stream")
    );
    let posted: Value = engine
        .post_event("message.created", json!({"live": true}))
        .await
        .json()
        .await
        .expect("json");
    let mut r = r;
    let mut text = String::new();
    tokio::time::timeout(WAIT, async {
        while !text.contains("\n\n") || !text.contains("attempt_recorded") {
            let chunk = r.chunk().await.expect("chunk").expect("stream open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("an event in time");
    assert!(text.contains("event: attempt_recorded"), "{text}");
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    let event: Value = serde_json::from_str(data).expect("json");
    assert_eq!(event["kind"], "attempt_recorded");
    assert_eq!(event["event_id"], posted["id"]);
    assert_eq!(event["webhook_id"], wh["id"]);

    let r = engine
        .http
        .get(format!("{}/v1/stream", engine.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
}
