//! Ordered delivery per key (SPEC "Delivery controls", `ordered`): the real
//! `orki-webhooksd`, an HTTPS receiver made here, 1,000 keys, failures
//! injected at the receiver and a SIGKILL in the middle.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::daemon::{ADMIN_TOKEN, Daemon, INGEST_KEY};
use crate::support::receiver::{PostMode, Received};
use crate::support::{Receiver, TestCa, expect_error};

const KEYS: u32 = 1000;
/// Events per key, posted in rounds: rounds 0 and 1 before the kill, 2 after.
const ROUNDS: u32 = 3;
/// The first deliveries the receiver answers `500`.
const FAILURES: u32 = 300;
/// Clients posting at once (each owns a share of the keys, so a key's
/// events are posted one after the other, in order).
const CLIENTS: u32 = 8;

fn daemon_args(ca: &TestCa) -> Vec<String> {
    vec![
        "--ca-file".into(),
        ca.pem_path.to_str().expect("utf-8 path").to_owned(),
        "--retry-schedule".into(),
        // Longer than posting a round takes: a failed event's retry comes
        // after the next event of its key was accepted.
        vec!["5s"; 50].join(","),
    ]
}

async fn start(ca: &TestCa, dir: &std::path::Path) -> Daemon {
    let args = daemon_args(ca);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Daemon::start(dir, &args).await
}

/// Posts round `round` of every key: `{"key", "seq"}` with `ordering_key`.
async fn post_round(http: &reqwest::Client, base: &str, round: u32) {
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (http, base) = (http.clone(), base.to_owned());
        clients.spawn(async move {
            for key in (c..KEYS).step_by(CLIENTS as usize) {
                let r = http
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(INGEST_KEY)
                    .json(&json!({
                        "type": "message.created",
                        "data": {"key": key, "seq": round},
                        "ordering_key": format!("chat-{key}"),
                    }))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
            }
        });
    }
    while let Some(c) = clients.join_next().await {
        c.expect("client");
    }
}

/// Registers `rx` as an ordered webhook for `message.created`; its id.
async fn register_ordered(http: &reqwest::Client, base: &str, rx: &Receiver) -> String {
    let created = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"url": rx.url, "verify_token": rx.token,
            "events": ["message.created"], "ordered": true}))
        .send()
        .await
        .expect("register");
    assert_eq!(created.status(), 201);
    let hook: Value = created.json().await.expect("JSON");
    assert_eq!(hook["ordered"], true);
    hook["id"].as_str().expect("id").to_owned()
}

async fn get_webhook(http: &reqwest::Client, base: &str, id: &str) -> Value {
    http.get(format!("{base}/v1/webhooks/{id}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("JSON")
}

fn key_seq(r: &Received) -> (u64, u64) {
    let body = r.json();
    let d = &body["data"];
    (
        d["key"].as_u64().expect("key"),
        d["seq"].as_u64().expect("seq"),
    )
}

/// Per key, every request the receiver saw (failed ones too) comes in
/// acceptance order, and each event arrives answered `200`: none missing,
/// across retries, a kill -9 and the restart. A failing key holds back only
/// itself: others' deliveries arrive between its failure and its retry.
#[tokio::test]
async fn ordered_keys_arrive_in_order_through_failures_and_a_kill() {
    let ca = TestCa::new("Orki Test CA");
    let dir = tempfile::tempdir().expect("dir");
    let http = reqwest::Client::new();
    let rx = Receiver::start(&ca).await;
    let daemon = start(&ca, dir.path()).await;
    let id = register_ordered(&http, &daemon.base, &rx).await;

    // Validation: an empty or too long key is refused, and nothing is stored.
    for bad in [
        json!(""),
        json!("x".repeat(201)),
        json!(7),
        json!("a\u{1}b"),
    ] {
        let r = http
            .post(format!("{}/v1/events", daemon.base))
            .bearer_auth(INGEST_KEY)
            .json(&json!({"type": "message.created", "data": {}, "ordering_key": bad}))
            .send()
            .await
            .expect("post");
        let code = if bad.is_string() {
            "invalid_ordering_key"
        } else {
            "invalid_field"
        };
        expect_error(r, 400, code).await;
    }
    let hook = get_webhook(&http, &daemon.base, &id).await;
    assert_eq!(hook["pending"], 0, "a refused event stored a delivery");

    rx.set_post(PostMode {
        fail_next: FAILURES,
        ..PostMode::default()
    });
    post_round(&http, &daemon.base, 0).await;
    post_round(&http, &daemon.base, 1).await;
    // Keys are held by now: their first delivery failed, the next waits.
    let held: Value = http
        .get(format!("{}/v1/webhooks/{id}/held", daemon.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("held")
        .json()
        .await
        .expect("JSON");
    assert!(held["waiting"].as_u64().expect("waiting") > 0, "{held}");
    assert!(
        !held["items"].as_array().expect("items").is_empty(),
        "{held}"
    );
    daemon.kill().await;

    let daemon = start(&ca, dir.path()).await;
    post_round(&http, &daemon.base, 2).await;

    let mut seen: Vec<Received> = Vec::new();
    let mut delivered: HashSet<(u64, u64)> = HashSet::new();
    let all = u64::from(KEYS * ROUNDS) as usize;
    tokio::time::timeout(Duration::from_secs(180), async {
        while delivered.len() < all {
            let got = rx.next(Duration::from_secs(60)).await;
            if got.answered == 200 {
                delivered.insert(key_seq(&got));
            }
            seen.push(got);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {all} delivered", delivered.len()));
    // Anything still to come would be a duplicate: at least once allows it.
    while let Some(late) = rx.try_next().await {
        seen.push(late);
    }

    let mut last: HashMap<u64, u64> = HashMap::new();
    for r in &seen {
        let (key, seq) = key_seq(r);
        let before = last.insert(key, seq).unwrap_or(0);
        assert!(
            seq >= before,
            "key {key}: event {seq} was sent after event {before}"
        );
    }
    let failed = seen.iter().filter(|r| r.answered == 500).count();
    assert_eq!(failed, FAILURES as usize);
    // The first failure's key: other keys got deliveries before it did.
    let first = seen
        .iter()
        .position(|r| r.answered == 500)
        .expect("a failure");
    let (key, _) = key_seq(&seen[first]);
    let recovered = first
        + 1
        + seen[first + 1..]
            .iter()
            .position(|r| key_seq(r).0 == key && r.answered == 200)
            .expect("recovered");
    let others = seen[first + 1..recovered]
        .iter()
        .filter(|r| r.answered == 200 && key_seq(r).0 != key)
        .count();
    assert!(others > 0, "a failing key held back the others");

    // Nothing is left waiting.
    let hook = get_webhook(&http, &daemon.base, &id).await;
    assert_eq!(hook["pending"], 0, "{hook}");
    println!(
        "{} requests for {all} events ({failed} failed, {} duplicates)",
        seen.len(),
        seen.len() - failed - all
    );
}

/// A delivery stuck at the head of its key is skipped by hand: it counts as
/// given up and the next of its key goes; the held list and the attempt
/// detail name the key.
#[tokio::test]
async fn skipping_a_stuck_delivery_lets_the_next_of_its_key_go() {
    let ca = TestCa::new("Orki Test CA");
    let dir = tempfile::tempdir().expect("dir");
    let http = reqwest::Client::new();
    let rx = Receiver::start(&ca).await;
    let daemon = start(&ca, dir.path()).await;
    let base = daemon.base.clone();
    let id = register_ordered(&http, &base, &rx).await;
    rx.set_post(PostMode {
        status: 503,
        ..PostMode::default()
    });
    let mut events = Vec::new();
    for seq in 0..3 {
        let r = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(INGEST_KEY)
            .json(
                &json!({"type": "message.created", "data": {"key": 1, "seq": seq},
                "ordering_key": "chat-1"}),
            )
            .send()
            .await
            .expect("post");
        let body: Value = r.json().await.expect("JSON");
        events.push(body["id"].as_str().expect("id").to_owned());
    }
    // Only the first is sent, again and again.
    for _ in 0..2 {
        assert_eq!(key_seq(&rx.next(Duration::from_secs(10)).await), (1, 0));
    }
    let admin = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{base}{path}"))
            .bearer_auth(ADMIN_TOKEN)
    };
    let held: Value = admin(reqwest::Method::GET, &format!("/v1/webhooks/{id}/held"))
        .send()
        .await
        .expect("held")
        .json()
        .await
        .expect("JSON");
    assert_eq!(held["waiting"], 2, "{held}");
    let stuck = &held["items"][0];
    assert_eq!(stuck["ordering_key"], "chat-1");
    assert_eq!(stuck["event_id"], events[0].as_str());
    assert_eq!(stuck["waiting"], 2);
    assert!(stuck["attempts"].as_u64().expect("attempts") >= 1);
    assert_eq!(get_webhook(&http, &base, &id).await["pending"], 3);

    // The log's attempt detail names the key.
    let page: Value = admin(
        reqwest::Method::GET,
        &format!("/v1/attempts?webhook_id={id}"),
    )
    .send()
    .await
    .expect("log")
    .json()
    .await
    .expect("JSON");
    let attempt = page["items"][0]["id"]
        .as_str()
        .expect("an attempt")
        .to_owned();
    let detail: Value = admin(reqwest::Method::GET, &format!("/v1/attempts/{attempt}"))
        .send()
        .await
        .expect("detail")
        .json()
        .await
        .expect("JSON");
    assert_eq!(detail["ordering_key"], "chat-1", "{detail}");

    // The receiver recovers; the first is skipped: the second goes next.
    rx.set_post(PostMode::default());
    let delivery = stuck["delivery_id"].as_str().expect("delivery").to_owned();
    let skipped = admin(
        reqwest::Method::POST,
        &format!("/v1/deliveries/{delivery}/skip"),
    )
    .send()
    .await
    .expect("skip");
    assert_eq!(skipped.status(), 200);
    let skipped: Value = skipped.json().await.expect("JSON");
    assert_eq!(skipped["state"], "failed");
    let again = admin(
        reqwest::Method::POST,
        &format!("/v1/deliveries/{delivery}/skip"),
    )
    .send()
    .await
    .expect("skip");
    expect_error(again, 409, "not_pending").await;
    let unknown = admin(
        reqwest::Method::POST,
        "/v1/deliveries/dlv_0190a1b2c3d47e8f9a0b1c2d3e4f5a6b/skip",
    )
    .send()
    .await
    .expect("skip");
    expect_error(unknown, 404, "not_found").await;
    // A retry of the first may still have been on its way; after it, in order.
    let mut next = key_seq(&rx.next(Duration::from_secs(10)).await);
    if next == (1, 0) {
        next = key_seq(&rx.next(Duration::from_secs(10)).await);
    }
    assert_eq!(next, (1, 1));
    assert_eq!(key_seq(&rx.next(Duration::from_secs(10)).await), (1, 2));
    // The skipped one is with the given-up ones: a replay finds it.
    let dry: Value = admin(reqwest::Method::POST, &format!("/v1/webhooks/{id}/replay"))
        .json(&json!({"dry_run": true}))
        .send()
        .await
        .expect("replay")
        .json()
        .await
        .expect("JSON");
    assert_eq!(dry["count"], 1, "{dry}");
}
