//! Retries: backoff until success, Retry-After, giving up, the warning threshold,
//! and retries that survive a restart.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::receiver::PostMode;
use crate::support::{Receiver, TestCa, TestEngine};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_same_delivery_a_third_time() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let wh_id = wh["id"].as_str().expect("id");
    rx.set_post(PostMode {
        fail_next: 2,
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();

    let accepted: Value = engine
        .post_event("message.created", json!({"x": 1}))
        .await
        .json()
        .await
        .expect("json");
    let tries = [
        rx.next(WAIT).await,
        rx.next(WAIT).await,
        rx.next(WAIT).await,
    ];
    assert_eq!(
        tries.iter().map(|t| t.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    for t in &tries {
        assert_eq!(t.json()["id"], accepted["id"]);
        assert!(t.signature_ok);
        assert_eq!(
            t.header("x-orki-delivery"),
            tries[0].header("x-orki-delivery")
        );
        assert_eq!(t.body, tries[0].body, "every retry sends the same bytes");
    }

    let mut attempts = Vec::new();
    for _ in 0..3 {
        attempts.push(engine.next_attempt(&mut events, wh_id, WAIT).await);
    }
    assert_eq!(
        attempts
            .iter()
            .map(|a| a["attempt"].as_u64())
            .collect::<Vec<_>>(),
        [Some(1), Some(2), Some(3)]
    );
    assert_eq!(attempts[0]["error_class"], "status");
    assert_eq!(attempts[0]["status_code"], 500);
    assert!(attempts[0]["next_retry_at"].is_string());
    assert_eq!(attempts[2]["success"], true);
    assert!(attempts[2]["next_retry_at"].is_null());

    let webhook = engine.get_json(&format!("/v1/webhooks/{wh_id}")).await;
    assert_eq!(webhook["consecutive_failures"], 0, "reset by the success");
    assert_eq!(webhook["last_status_code"], 200);
    assert!(webhook["last_attempt_at"].is_string());
    assert_eq!(engine.handle.pending_deliveries().await.expect("count"), 0);
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |_| {}).await;
    let rx = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let wh_id = wh["id"].as_str().expect("id");
    rx.set_post(PostMode {
        status: 429,
        headers: vec![("retry-after".into(), "2".into())],
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();
    engine.post_event("message.created", json!({})).await;
    let first = engine.next_attempt(&mut events, wh_id, WAIT).await;
    assert_eq!(first["status_code"], 429);
    let at = |a: &Value| {
        chrono::DateTime::parse_from_rfc3339(a["timestamp"].as_str().expect("ts")).expect("rfc3339")
    };
    let next_retry =
        chrono::DateTime::parse_from_rfc3339(first["next_retry_at"].as_str().expect("next"))
            .expect("rfc3339");
    let waited = next_retry - at(&first);
    assert!(
        waited >= chrono::TimeDelta::milliseconds(1900),
        "Retry-After: 2 beats the 150 ms schedule, waited {waited}"
    );
    rx.set_post(PostMode::default());
    let second = engine.next_attempt(&mut events, wh_id, WAIT).await;
    assert_eq!(second["success"], true);
    assert!(at(&second) - at(&first) >= chrono::TimeDelta::milliseconds(1900));
}

#[tokio::test]
async fn a_delivery_is_given_up_when_the_schedule_runs_out() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |c| {
        c.retry = Some(crate::support::retries(vec![
            Duration::from_millis(50),
            Duration::from_millis(50),
        ]));
    })
    .await;
    let rx = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let wh_id = wh["id"].as_str().expect("id");
    rx.set_post(PostMode {
        status: 503,
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();
    engine.post_event("message.created", json!({})).await;
    let mut attempts = Vec::new();
    for _ in 0..3 {
        attempts.push(engine.next_attempt(&mut events, wh_id, WAIT).await);
    }
    assert!(attempts[1]["next_retry_at"].is_string());
    assert!(
        attempts[2]["next_retry_at"].is_null(),
        "the last try schedules nothing"
    );
    assert_eq!(engine.handle.pending_deliveries().await.expect("count"), 0);
    assert_eq!(
        engine.get_json(&format!("/v1/webhooks/{wh_id}")).await["consecutive_failures"],
        3
    );
}

#[tokio::test]
async fn the_warning_shows_at_the_threshold_and_clears_on_success() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |c| {
        c.warning_threshold = Some(3);
        c.retry = Some(crate::support::retries(vec![Duration::from_millis(30); 10]));
    })
    .await;
    let rx = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let path = format!("/v1/webhooks/{}", wh["id"].as_str().expect("id"));
    rx.set_post(PostMode {
        fail_next: 4,
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();
    engine.post_event("message.created", json!({})).await;

    let mut healths = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(orki_engine::EngineEvent::WebhookHealthChanged(h)) = events.recv().await {
                healths.push((h.consecutive_failures, h.warning));
                if h.consecutive_failures == 0 {
                    break;
                }
            }
        }
    })
    .await
    .expect("health events in time");
    assert_eq!(
        healths,
        [(1, false), (2, false), (3, true), (4, true), (0, false)]
    );
    let now = engine.get_json(&path).await;
    assert_eq!(now["warning"], false);
    assert_eq!(now["consecutive_failures"], 0);
}

#[tokio::test]
async fn warning_is_visible_in_the_api_while_failing() {
    let ca = TestCa::new("Orki Test CA");
    let engine = TestEngine::start(&ca, |c| {
        c.warning_threshold = Some(2);
        c.retry = Some(crate::support::retries(vec![Duration::from_millis(30); 2]));
    })
    .await;
    let rx = Receiver::start(&ca).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let wh_id = wh["id"].as_str().expect("id");
    rx.set_post(PostMode {
        status: 500,
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();
    engine.post_event("message.created", json!({})).await;
    for _ in 0..3 {
        engine.next_attempt(&mut events, wh_id, WAIT).await;
    }
    let list = engine.get_json("/v1/webhooks").await;
    assert_eq!(list["items"][0]["warning"], true);
    assert_eq!(list["items"][0]["consecutive_failures"], 3);
    assert_eq!(list["items"][0]["last_status_code"], 500);
}

#[tokio::test]
async fn pending_retries_survive_a_restart() {
    let ca = TestCa::new("Orki Test CA");
    let every = Duration::from_millis(800);
    let (rx, engine, wh_id) = failing_webhook(&ca, every).await;
    let mut events = engine.handle.subscribe();
    let accepted: Value = engine
        .post_event("message.created", json!({"keep": "me"}))
        .await
        .json()
        .await
        .expect("json");
    let first = engine.next_attempt(&mut events, &wh_id, WAIT).await;
    assert_eq!(first["success"], false);
    let dir = engine.stop().await;

    rx.set_post(PostMode::default());
    let engine = TestEngine::start_in(dir, &ca, retry_every(every)).await;
    assert_eq!(engine.handle.pending_deliveries().await.expect("count"), 1);
    // The 503 answer from before the restart, then the retry made by the new engine.
    assert_eq!(rx.next(WAIT).await.answered, 503);
    let again = rx.next(WAIT).await;
    assert_eq!(again.answered, 200);
    assert_eq!(again.json()["id"], accepted["id"]);
}

#[tokio::test]
async fn a_retry_redelivered_by_hand_is_not_sent_again_at_its_old_time() {
    // After a restart the queue is read back with what each retry sends; a
    // redelivery must replace that copy, not add to it.
    let ca = TestCa::new("Orki Test CA");
    let every = Duration::from_secs(2);
    let (rx, engine, wh_id) = failing_webhook(&ca, every).await;
    let mut events = engine.handle.subscribe();
    let redelivered = post_id(&engine, json!({ "n": "redelivered" })).await;
    let first = engine.next_attempt(&mut events, &wh_id, WAIT).await;
    // Its retry comes due after the first one's old time.
    let sentinel = post_id(&engine, json!({ "n": "sentinel" })).await;
    engine.next_attempt(&mut events, &wh_id, WAIT).await;
    let dir = engine.stop().await;
    while rx.try_next().await.is_some() {}

    rx.set_post(PostMode::default());
    let engine = TestEngine::start_in(dir, &ca, retry_every(every)).await;
    let delivery = first["delivery_id"].as_str().expect("delivery id");
    let r = engine
        .admin(
            reqwest::Method::POST,
            &format!("/v1/deliveries/{delivery}/redeliver"),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 202);
    let now = rx.next(WAIT).await;
    assert_eq!(now.json()["id"], redelivered.as_str());
    // The sentinel's retry is due after the redelivered one's old due time, in
    // the same lane: once it arrived, that old time has been passed.
    let later = rx.next(WAIT).await;
    assert_eq!(
        later.json()["id"],
        sentinel.as_str(),
        "nothing else in between"
    );
    engine.stop().await;
    while let Some(extra) = rx.try_next().await {
        assert_ne!(
            extra.json()["id"],
            redelivered.as_str(),
            "the redelivered retry was sent again at its old time"
        );
    }
}

#[tokio::test]
async fn a_backlog_larger_than_the_memory_queue_is_delivered_once_each() {
    // Only 4 due entries fit in memory: the rest of the backlog waits in the
    // database and is read back as the queue drains.
    let ca = TestCa::new("Orki Test CA");
    let rx = Receiver::start(&ca).await;
    let engine = TestEngine::start(&ca, |c| {
        c.queue_memory_limit = 4;
        c.max_in_flight_per_webhook = 2;
        c.retry = Some(crate::support::retries(vec![Duration::from_millis(300); 8]));
    })
    .await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let wh_id = wh["id"].as_str().expect("id");
    rx.set_post(PostMode {
        status: 503,
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();
    let mut posted = std::collections::HashSet::new();
    for n in 0..30 {
        posted.insert(post_id(&engine, json!({ "n": n })).await);
    }
    // Some attempts fail while the backlog builds; then the endpoint recovers.
    for _ in 0..6 {
        engine.next_attempt(&mut events, wh_id, WAIT).await;
    }
    rx.set_post(PostMode::default());

    let mut delivered = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while delivered.len() < posted.len() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let got = rx.next(left).await;
        assert!(got.signature_ok);
        if got.answered == 200 {
            let id = got.json()["id"].as_str().expect("id").to_owned();
            assert!(delivered.insert(id.clone()), "{id} was delivered twice");
        }
    }
    assert_eq!(delivered, posted);
    // Nothing is left queued, and no later copy arrives.
    let deadline = tokio::time::Instant::now() + WAIT;
    while engine.handle.pending_deliveries().await.expect("count") > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the queue drains");
        engine.next_attempt(&mut events, wh_id, WAIT).await;
    }
    while let Some(extra) = rx.try_next().await {
        assert_ne!(extra.answered, 200, "a success arrived twice");
    }
}

#[tokio::test]
async fn disabling_a_webhook_cancels_its_queued_retries_for_good() {
    let ca = TestCa::new("Orki Test CA");
    let rx = Receiver::start(&ca).await;
    let engine = TestEngine::start(&ca, |c| {
        c.retry = Some(crate::support::retries(vec![Duration::from_millis(300); 8]));
    })
    .await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let wh_id = wh["id"].as_str().expect("id");
    let path = format!("/v1/webhooks/{wh_id}");
    rx.set_post(PostMode {
        status: 503,
        ..PostMode::default()
    });
    let mut events = engine.handle.subscribe();
    let mut old = std::collections::HashSet::new();
    for n in 0..5 {
        old.insert(post_id(&engine, json!({ "old": n })).await);
    }
    for _ in 0..5 {
        assert_eq!(
            engine.next_attempt(&mut events, wh_id, WAIT).await["success"],
            false
        );
    }

    // From here on, an old delivery may arrive once more (an attempt in flight
    // while the webhook is disabled), never again after that.
    while rx.try_next().await.is_some() {}
    let off = engine
        .admin(reqwest::Method::PATCH, &path)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .expect("send");
    assert_eq!(off.status(), 200);
    assert_eq!(engine.handle.pending_deliveries().await.expect("count"), 0);
    let on = engine
        .admin(reqwest::Method::PATCH, &path)
        .json(&json!({"enabled": true}))
        .send()
        .await
        .expect("send");
    assert_eq!(on.status(), 200);

    // New events flow (and fail, and are retried) for more than three retry
    // periods of the old ones.
    let mut again = std::collections::HashMap::<String, u32>::new();
    let started = tokio::time::Instant::now();
    let mut fresh = 0;
    while started.elapsed() < Duration::from_secs(1) {
        let new_id = post_id(&engine, json!({ "new": fresh })).await;
        loop {
            let got = rx.next(WAIT).await;
            let id = got.json()["id"].as_str().expect("id").to_owned();
            if old.contains(&id) {
                *again.entry(id.clone()).or_default() += 1;
            }
            if id == new_id {
                break;
            }
        }
        fresh += 1;
    }
    assert!(
        again.values().all(|n| *n <= 1),
        "cancelled deliveries were retried: {again:?}"
    );
    assert!(fresh > 0);
    // Only the new events' deliveries wait in the queue.
    let pending = engine.handle.pending_deliveries().await.expect("count");
    assert!(pending <= fresh, "{pending} pending, {fresh} new events");
}

/// Posts a `message.created` event with `data`; returns its id.
async fn post_id(engine: &TestEngine, data: Value) -> String {
    let accepted: Value = engine
        .post_event("message.created", data)
        .await
        .json()
        .await
        .expect("json");
    accepted["id"].as_str().expect("id").to_owned()
}

/// Retries every `every`, five times, without jitter.
fn retry_every(every: Duration) -> impl Fn(&mut orki_engine::Config) + Copy {
    move |c| c.retry = Some(crate::support::retries(vec![every; 5]))
}

/// A receiver that answers deliveries with 503, an engine retrying every
/// `every`, and the id of the webhook registered to that receiver.
async fn failing_webhook(ca: &TestCa, every: Duration) -> (Receiver, TestEngine, String) {
    let rx = Receiver::start(ca).await;
    rx.set_post(PostMode {
        status: 503,
        ..PostMode::default()
    });
    let engine = TestEngine::start(ca, retry_every(every)).await;
    let wh = engine.register_ok(&rx, &["message.created"]).await;
    let id = wh["id"].as_str().expect("id").to_owned();
    (rx, engine, id)
}
