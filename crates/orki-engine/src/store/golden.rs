//! Golden files of every persisted format, in `tests/data/v1/` (see its
//! README): one encoded record of each kind, a database file written by this
//! version, and the write-ahead log written after it. The tests read them with
//! the current code and compare each record with the value it was written
//! from, so a change that would lose or misread data on an upgrade fails here.
//!
//! The files are written once per format version by the ignored test below:
//! `ORKI_WRITE_GOLDEN=1 cargo test -p orki-engine write_golden_files -- --ignored`.
//! A new version of a format gets a new directory (`v2`) next to the old one,
//! whose tests stay: old files must keep reading.

use super::attempts::BY_TYPE;
use super::attempts::BY_WEBHOOK;
use super::attempts::all_type_codes;
use super::attempts::index_key;
use super::attempts::type_code;
use std::collections::BTreeMap;
use std::fmt::Debug;

use sha2::{Digest, Sha256};

use super::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use redb::{Key, ReadTransaction, ReadableTable, Value};

use crate::Secret;
use crate::ids::{AttemptId, DeliveryId, EventId, WebhookId};
use crate::model::{
    Attempt, AttemptRecord, DeliveryRecord, DeliveryState, EventRecord, IdempotencyRecord,
    WebhookRecord,
};
use crate::model::{ErrorClass, RequestRecord, ResponseRecord};
use crate::queue::ReloadPlan;
use crate::settings::Settings;
use crate::store::codec::{Record, decode, encode};
use crate::store::tables::{
    ATTEMPT_INDEX, ATTEMPTS, DELIVERIES, DUE, EVENTS, FAILED_DELIVERIES, IDEMPOTENCY, META,
    WEBHOOKS,
};

/// The directory of this version's golden files.
fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1")
}

const DB_FILE: &str = "orki-webhooks.redb";
const WAL_FILE: &str = "orki-webhooks.wal";
const INGEST: &str = "ik_golden_ingest_key_0123456789";
const ADMIN: &str = "at_golden_admin_token_0123456789";

// ----- the fixed world the files were written from -----

/// 2026-11-27T09:41:23.123Z: the webhooks are registered.
const T0: u64 = 1_795_772_483_123;
/// The first three events.
const T1: u64 = T0 + 60_000;
/// The fourth event.
const T2: u64 = T1 + 120_000;
/// The third webhook is disabled.
const T3: u64 = T2 + 60_000;
/// The test event.
const T4: u64 = T3 + 60_000;
/// What only the write-ahead log holds.
const T5: u64 = T4 + 60_000;

/// A UUIDv7 made at `ms` with `n` in its random bits: fixed, time-ordered.
const fn id(ms: u64, n: u16) -> u128 {
    ((ms as u128) << 80) | (0x7 << 76) | (((n & 0xfff) as u128) << 64) | (0b10 << 62) | n as u128
}

/// `ms` plus some nanoseconds, as the clock gives them (stored exactly).
fn at(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms as i64).expect("time")
        + chrono::Duration::nanoseconds(456_789)
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const W1: WebhookId = WebhookId(id(T0 + 1, 1));
const W2: WebhookId = WebhookId(id(T0 + 2, 2));
const W3: WebhookId = WebhookId(id(T0 + 3, 3));

fn webhook_id(n: u16) -> WebhookId {
    match n {
        1 => W1,
        2 => W2,
        _ => W3,
    }
}

fn event_id(n: u16) -> EventId {
    let ms = match n {
        1..=3 => T1,
        4 => T2,
        5 => T4,
        _ => T5,
    };
    EventId(id(ms, 10 + n))
}

fn delivery_id(n: u16) -> DeliveryId {
    let ms = match n {
        1..=5 => T1,
        6..=8 => T2,
        9 => T4,
        _ => T5,
    };
    DeliveryId(id(ms, 20 + n))
}

/// A webhook as registered, and with the health attempts gave it.
fn webhook(n: u16, health: Option<(u32, u16, Option<u16>)>) -> WebhookRecord {
    let (url, events): (&str, &[&str]) = match n {
        1 => (
            "https://crm.office.lan/hooks/orki",
            &["message.created", "chat.status_changed"],
        ),
        2 => (
            "https://erp.office.lan/webhooks?source=orki",
            &["meta.message", "message.created"],
        ),
        _ => ("https://old.office.lan/hook", &["message.created"]),
    };
    let created = at(T0 + u64::from(n));
    WebhookRecord {
        id: webhook_id(n),
        url: url.into(),
        verify_token: Secret::new(format!("vt_golden_{n}_é")),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        enabled: true,
        created_at: created,
        updated_at: created,
        consecutive_failures: health.map_or(0, |h| h.0),
        last_attempt_at: health.map(|h| attempt(h.1).attempt.timestamp),
        last_status_code: health.and_then(|h| h.2),
        controls: Default::default(),
        parsed_url: std::sync::OnceLock::new(),
    }
}

/// Event `n`: its type, `data` and `Idempotency-Key`.
fn event_parts(n: u16) -> (&'static str, &'static str, Option<&'static str>) {
    match n {
        1 => (
            "message.created",
            r#"{"message":{"id":"msg_4821","text":"Hi! Is my order #4821 ready? \"soon\" ✓"}}"#,
            Some("order-4821-created"),
        ),
        2 => (
            "chat.status_changed",
            r#"{"chat":{"id":"chat_77","status":"snoozed"}}"#,
            None,
        ),
        3 => (
            "meta.message",
            r#"{"object":"whatsapp_business_account","entry":[]}"#,
            None,
        ),
        4 => (
            "message.created",
            r#"{"message":{"id":"msg_4822","text":"مرحبا"}}"#,
            Some("order-4822-created"),
        ),
        5 => ("message.created", r#"{"message":{"text":"a test"}}"#, None),
        _ => (
            "chat.status_changed",
            r#"{"chat":{"id":"chat_77","status":"closed"}}"#,
            Some("chat-77-closed"),
        ),
    }
}

fn event_ms(n: u16) -> u64 {
    event_id(n).unix_ms()
}

fn event(n: u16) -> EventRecord {
    let (ty, data, key) = event_parts(n);
    let id = event_id(n);
    let created = at(event_ms(n));
    EventRecord {
        id,
        event_type: ty.into(),
        created_at: created,
        payload: envelope(id, ty, created, data).expect("envelope"),
        test: n == 5,
        idempotency_key: key.map(str::to_owned),
        ordering_key: None,
    }
}

/// The body a local tool posted for event `n`.
fn posted_body(n: u16) -> String {
    let (ty, data, _) = event_parts(n);
    format!(r#"{{"type":"{ty}","data":{data}}}"#)
}

fn idempotency(n: u16, deliveries: u32) -> IdempotencyRecord {
    IdempotencyRecord {
        body_sha256: hex::encode(Sha256::digest(posted_body(n).as_bytes())),
        event_id: event_id(n),
        deliveries,
        created_at: at(event_ms(n)),
    }
}

/// Delivery `n`: its event and webhook.
fn delivery_route(n: u16) -> (u16, u16) {
    match n {
        1 => (1, 1),
        2 => (1, 2),
        3 => (1, 3),
        4 => (2, 1),
        5 => (3, 2),
        6 => (4, 1),
        7 => (4, 2),
        8 => (4, 3),
        9 => (5, 2),
        _ => (6, 1),
    }
}

/// Delivery `n` with `attempts` made, in `state`, due at `due_ms`.
fn delivery(n: u16, attempts: u32, state: DeliveryState, due_ms: Option<u64>) -> DeliveryRecord {
    let (e, w) = delivery_route(n);
    let event = event(e);
    DeliveryRecord {
        id: delivery_id(n),
        event_id: event.id,
        webhook_id: webhook_id(w),
        event_type: event.event_type,
        created_at: event.created_at,
        attempts,
        state,
        due_ms,
        test: n == 9,
        ordering: None,
    }
}

/// A fresh delivery, as ingest makes it: pending, due when its event came.
fn fresh(n: u16) -> DeliveryRecord {
    let due = event_ms(delivery_route(n).0);
    delivery(n, 0, DeliveryState::Pending, Some(due))
}

/// Attempt `n`: `(delivery, attempt number, finished at, outcome)`, where the
/// outcome is a status and an error class, and when the next try is due.
struct Try {
    delivery: u16,
    number: u32,
    ms: u64,
    status: Option<u16>,
    class: Option<ErrorClass>,
    error: Option<&'static str>,
    response: Option<ResponseRecord>,
    next_ms: Option<u64>,
}

fn attempt_try(n: u16) -> Try {
    let response = |status, headers: &[(&str, &str)], body: &str, truncated| {
        Some(ResponseRecord {
            status,
            headers: map(headers),
            body: body.into(),
            body_truncated: truncated,
        })
    };
    let ok = |delivery, number, ms| Try {
        delivery,
        number,
        ms,
        status: Some(200),
        class: None,
        error: None,
        response: response(200, &[("content-type", "text/plain")], "ok", false),
        next_ms: None,
    };
    let failed = |delivery, number, ms, class, error, next_ms| Try {
        delivery,
        number,
        ms,
        status: None,
        class: Some(class),
        error: Some(error),
        response: None,
        next_ms,
    };
    match n {
        1 => ok(1, 1, T1 + 1_000),
        2 => Try {
            status: Some(503),
            response: response(503, &[("retry-after", "30")], "busy", false),
            ..failed(
                2,
                1,
                T1 + 1_100,
                ErrorClass::Status,
                "the endpoint answered HTTP 503, not 2xx",
                Some(T1 + 31_100),
            )
        },
        3 => failed(
            4,
            1,
            T1 + 1_200,
            ErrorClass::Timeout,
            "no complete answer within 5 s",
            Some(T1 + 6_200),
        ),
        4 => failed(
            4,
            2,
            T1 + 6_300,
            ErrorClass::Tls,
            "invalid peer certificate: UnknownIssuer",
            Some(T1 + 36_300),
        ),
        5 => Try {
            status: Some(302),
            response: response(
                302,
                &[("location", "https://crm.office.lan/new")],
                "",
                false,
            ),
            ..failed(
                4,
                3,
                T1 + 36_400,
                ErrorClass::Redirect,
                "the endpoint answered a redirect (302), which is not followed",
                None,
            )
        },
        6 => failed(
            3,
            1,
            T1 + 1_300,
            ErrorClass::Connect,
            "connection refused",
            Some(T1 + 6_300),
        ),
        7 => failed(
            5,
            1,
            T1 + 1_400,
            ErrorClass::Dns,
            "dns error: no such host",
            Some(T1 + 6_400),
        ),
        8 => ok(9, 1, T4 + 50),
        9 => ok(2, 2, T5 + 10),
        _ => Try {
            status: Some(500),
            response: response(500, &[], &"x".repeat(300), true),
            ..failed(
                6,
                1,
                T5 + 20,
                ErrorClass::Status,
                "the endpoint answered HTTP 500, not 2xx",
                Some(T5 + 5_020),
            )
        },
    }
}

fn attempt(n: u16) -> AttemptRecord {
    let t = attempt_try(n);
    let d = delivery(t.delivery, t.number, DeliveryState::Pending, None);
    let w = webhook(delivery_route(t.delivery).1, None);
    AttemptRecord {
        attempt: Attempt {
            id: AttemptId(id(t.ms, 30 + n)),
            delivery_id: d.id,
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            event_type: d.event_type.clone(),
            attempt: t.number,
            timestamp: at(t.ms),
            success: t.status == Some(200),
            status_code: t.status,
            response_time_ms: 40 + u64::from(n),
            error: t.error.map(str::to_owned),
            error_class: t.class,
            test: d.test,
            next_retry_at: t.next_ms.map(at),
        },
        request: RequestRecord {
            url: w.url,
            method: "POST".into(),
            headers: map(&[
                ("Content-Type", "application/json"),
                ("User-Agent", "Orki-Webhooks/0.1.0"),
                (
                    "X-Hub-Signature-256",
                    "sha256=0b1e9c2f5a8d7e6f4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5",
                ),
                ("X-Orki-Delivery", &d.id.to_string()),
                ("X-Orki-Event", &d.event_type),
            ]),
        },
        response: t.response,
    }
}

fn settings() -> Settings {
    Settings {
        listen_port: 18_787,
        retry_schedule_ms: vec![5_000, 30_000, 120_000],
        warning_threshold: 3,
        // Not in the golden file: read as the default.
        auto_pause_after_hours: Some(24),
        retention_days: 90,
        max_database_mb: Some(512),
        allow_http_localhost: true,
    }
}

/// What the database holds: without the log (the file as written), or with
/// the log's two batches replayed on top.
struct World {
    wal_seq: u64,
    webhooks: Vec<WebhookRecord>,
    events: Vec<EventRecord>,
    deliveries: Vec<DeliveryRecord>,
    due: Vec<((u64, u128), u128)>,
    attempts: Vec<AttemptRecord>,
    idempotency: Vec<(String, IdempotencyRecord)>,
    failed: Vec<(u128, u128)>,
}

fn world(with_log: bool) -> World {
    use DeliveryState::{Cancelled, Failed, Pending, Succeeded};
    let mut w3 = webhook(3, Some((1, 6, None)));
    w3.enabled = false;
    w3.updated_at = at(T3);
    let mut test_delivery = delivery(9, 1, Succeeded, None);
    test_delivery.test = true;
    let mut world = World {
        wal_seq: 5,
        webhooks: vec![
            webhook(1, Some((3, 5, Some(302)))),
            webhook(2, Some((2, 7, None))),
            w3,
        ],
        events: (1..=5).map(event).collect(),
        deliveries: vec![
            delivery(1, 1, Succeeded, None),
            delivery(2, 1, Pending, Some(T1 + 31_100)),
            delivery(3, 1, Cancelled, None),
            delivery(4, 3, Failed, None),
            delivery(5, 1, Pending, Some(T1 + 6_400)),
            fresh(6),
            fresh(7),
            delivery(8, 0, Cancelled, None),
            test_delivery,
        ],
        due: vec![
            ((T1 + 6_400, delivery_id(5).0), W2.0),
            ((T1 + 31_100, delivery_id(2).0), W2.0),
            ((T2, delivery_id(6).0), W1.0),
            ((T2, delivery_id(7).0), W2.0),
        ],
        attempts: (1..=8).map(attempt).collect(),
        idempotency: vec![
            ("order-4821-created".into(), idempotency(1, 3)),
            ("order-4822-created".into(), idempotency(4, 3)),
        ],
        failed: vec![(W1.0, delivery_id(4).0)],
    };
    if with_log {
        world.wal_seq = 7;
        world.webhooks[0] = webhook(1, Some((4, 10, Some(500))));
        world.webhooks[1] = webhook(2, Some((0, 9, Some(200))));
        world.events.push(event(6));
        world.deliveries[1] = delivery(2, 2, Succeeded, None);
        world.deliveries[5] = delivery(6, 1, Pending, Some(T5 + 5_020));
        world.deliveries.push(fresh(10));
        world.due = vec![
            ((T1 + 6_400, delivery_id(5).0), W2.0),
            ((T2, delivery_id(7).0), W2.0),
            ((T5, delivery_id(10).0), W1.0),
            ((T5 + 5_020, delivery_id(6).0), W1.0),
        ];
        world.attempts.extend([attempt(9), attempt(10)]);
        world
            .idempotency
            .insert(0, ("chat-77-closed".into(), idempotency(6, 1)));
    }
    world.attempts.sort_by_key(|a| a.attempt.id);
    world
}

/// The delivery-log index's code of each type, as stored in the golden files.
/// Never change one: see [`crate::event_types::index_code`].
fn frozen_type_code(event_type: &str) -> u8 {
    match event_type {
        "meta.message" => 1,
        "message.created" => 2,
        "chat.status_changed" => 3,
        _ => u8::MAX,
    }
}

/// The two index entries of every attempt, written out by hand.
fn frozen_index(attempts: &[AttemptRecord]) -> Vec<(u8, u128, u8, u8, u128)> {
    let mut keys: Vec<_> = attempts
        .iter()
        .flat_map(|r| {
            let a = &r.attempt;
            let (code, outcome) = (frozen_type_code(&a.event_type), 1 + u8::from(a.success));
            [
                (7, a.webhook_id.0, code, outcome, a.id.0),
                (6, 0, code, outcome, a.id.0),
            ]
        })
        .collect();
    keys.sort();
    keys
}

// ----- writing the files (once per format version) -----

/// Accepts event `n` as `Store::ingest_in` does (an event, a fresh delivery
/// and a due entry per subscriber, the idempotency record), with fixed ids.
fn ingest_fixed(t: &mut HotTables<'_>, n: u16, deliveries: &[u16]) {
    let e = event(n);
    let (_, _, key) = event_parts(n);
    t.events
        .insert(e.id.0, encode(&e).expect("encode").as_slice())
        .expect("event");
    let subscribed: Vec<WebhookId> = t
        .subscribers(&e.event_type)
        .expect("subscribers")
        .into_iter()
        .map(|(w, _)| w)
        .collect();
    let routed: Vec<WebhookId> = deliveries
        .iter()
        .map(|&d| webhook_id(delivery_route(d).1))
        .collect();
    assert_eq!(subscribed, routed, "event {n} goes where ingest sends it");
    for &d in deliveries {
        let d = fresh(d);
        t.deliveries
            .insert(d.id.0, encode(&d).expect("encode").as_slice())
            .expect("delivery");
        t.due
            .insert((d.due_ms.expect("due"), d.id.0), d.webhook_id.0)
            .expect("due");
    }
    if let Some(key) = key {
        let record = idempotency(n, deliveries.len() as u32);
        t.idempotency
            .insert(key, encode(&record).expect("encode").as_slice())
            .expect("idempotency");
    }
}

/// Records attempt `n` with the engine's own `Store::record_attempt_in`.
fn record(t: &mut HotTables<'_>, n: u16) {
    let r = attempt(n);
    let encoded = encode(&r).expect("encode");
    Store::record_attempt_in(t, &r, &encoded, attempt_try(n).next_ms, 3).expect("record");
}

/// One group-commit batch, as the engine's writer makes it.
fn batch(store: &Store, write: impl FnOnce(&mut HotTables<'_>)) {
    let batch = store.begin_batch().expect("begin");
    let redo = {
        let mut t = HotTables::open(batch.txn(), batch.logs()).expect("tables");
        write(&mut t);
        t.take_redo()
    };
    store.commit_batch(batch, &redo).expect("commit");
}

#[test]
#[ignore = "writes the golden files: ORKI_WRITE_GOLDEN=1, for a new format version only"]
fn write_golden_files() {
    assert_eq!(
        std::env::var("ORKI_WRITE_GOLDEN").as_deref(),
        Ok("1"),
        "set ORKI_WRITE_GOLDEN=1 to overwrite the golden files"
    );
    let out = data_dir();
    for sub in ["records", "legacy-json"] {
        std::fs::create_dir_all(out.join(sub)).expect("mkdir");
    }

    // One record of each kind, in each form it is stored in.
    let write = |name: &str, bytes: Vec<u8>| {
        std::fs::write(out.join(name), bytes).expect("write a golden file");
    };
    let w = world(false);
    write(
        "records/webhook.json",
        encode(&w.webhooks[0]).expect("encode"),
    );
    write(
        "records/webhook_disabled.json",
        encode(&w.webhooks[2]).expect("encode"),
    );
    write("records/event.bin", encode(&event(1)).expect("encode"));
    write("records/event_test.bin", encode(&event(5)).expect("encode"));
    for (name, d) in [
        ("succeeded", &w.deliveries[0]),
        ("pending", &w.deliveries[1]),
        ("cancelled", &w.deliveries[2]),
        ("failed", &w.deliveries[3]),
        ("test", &w.deliveries[8]),
    ] {
        write(
            &format!("records/delivery_{name}.bin"),
            encode(d).expect("encode"),
        );
    }
    for (name, n) in ATTEMPT_FILES {
        write(
            &format!("records/attempt_{name}.bin"),
            encode(&attempt(*n)).expect("encode"),
        );
    }
    write(
        "records/idempotency.json",
        encode(&idempotency(1, 3)).expect("encode"),
    );
    write(
        "records/settings.json",
        encode(&settings()).expect("encode"),
    );
    // The JSON form every record had before the compact one (older databases).
    write(
        "legacy-json/event.json",
        serde_json::to_vec(&event(1)).expect("json"),
    );
    write(
        "legacy-json/delivery.json",
        serde_json::to_vec(&w.deliveries[1]).expect("json"),
    );
    write(
        "legacy-json/attempt.json",
        serde_json::to_vec(&attempt(2)).expect("json"),
    );

    // The database, through the store's own writes: group-commit batches for
    // ingests and attempts, its plain transactions for the rest.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join(DB_FILE);
    let store = Store::open(&path).expect("open");
    store.set_checkpoint_every(Duration::from_secs(3600));
    {
        let txn = store.write().expect("write");
        let mut meta = txn.open_table(META).expect("meta");
        meta.insert(INGEST_KEY, INGEST).expect("key");
        meta.insert(ADMIN_TOKEN, ADMIN).expect("token");
        drop(meta);
        txn.commit().expect("commit");
    }
    store.save_settings(&settings(), false).expect("settings");
    for n in 1..=3 {
        store.insert_webhook(&webhook(n, None)).expect("webhook");
    }
    batch(&store, |t| {
        ingest_fixed(t, 1, &[1, 2, 3]);
        ingest_fixed(t, 2, &[4]);
        ingest_fixed(t, 3, &[5]);
    });
    batch(&store, |t| {
        [1, 2, 3, 6, 7].into_iter().for_each(|n| record(t, n))
    });
    batch(&store, |t| record(t, 4));
    batch(&store, |t| record(t, 5));
    batch(&store, |t| ingest_fixed(t, 4, &[6, 7, 8]));
    store
        .update_webhook(W3, |w| {
            w.enabled = false;
            w.updated_at = at(T3);
            Ok(())
        })
        .expect("disable");
    let a8 = attempt(8);
    store
        .record_test(&event(5), &w.deliveries[8], &a8)
        .expect("test event");
    store.checkpoint().expect("checkpoint");
    drop(store);
    std::fs::copy(&path, out.join(DB_FILE)).expect("copy the database");

    // Two more batches, only in the log: the state a crash leaves.
    let store = Store::open(&path).expect("open again");
    store.set_checkpoint_every(Duration::from_secs(3600));
    batch(&store, |t| {
        ingest_fixed(t, 6, &[10]);
        record(t, 9);
    });
    batch(&store, |t| record(t, 10));
    std::fs::copy(wal::path_for(&path), out.join(WAL_FILE)).expect("copy the log");
    drop(store);
}

/// The attempt files: one for each outcome and error class.
const ATTEMPT_FILES: &[(&str, u16)] = &[
    ("success", 1),
    ("status", 2),
    ("timeout", 3),
    ("tls", 4),
    ("redirect", 5),
    ("connect", 6),
    ("dns", 7),
    ("test", 8),
    ("truncated", 10),
];

// ----- reading them -----

fn golden(name: &str) -> Vec<u8> {
    let path = data_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn same<T: Debug>(got: &T, want: &T, what: &str) {
    assert_eq!(format!("{got:#?}"), format!("{want:#?}"), "{what}");
}

/// A webhook compared field by field (`Debug` hides the verify token).
fn same_webhook(got: &WebhookRecord, want: &WebhookRecord, what: &str) {
    same(got, want, what);
    assert_eq!(
        got.verify_token.expose(),
        want.verify_token.expose(),
        "{what}"
    );
}

/// The golden record `name` decodes to `want`, and `want` still encodes to it.
fn check_record<T: Record + serde::Serialize + Debug>(name: &str, want: &T) -> T {
    let bytes = golden(name);
    let got: T = decode(&bytes, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    same(&got, want, name);
    assert!(
        encode(want).expect("encode") == bytes,
        "{name}: this version writes it differently; if that is meant, add a new \
         version of the golden files and keep these reading"
    );
    got
}

#[test]
fn every_golden_record_decodes_to_the_value_it_was_written_from() {
    let w = world(false);
    let hook = check_record("records/webhook.json", &w.webhooks[0]);
    same_webhook(&hook, &w.webhooks[0], "webhook");
    let off = check_record("records/webhook_disabled.json", &w.webhooks[2]);
    same_webhook(&off, &w.webhooks[2], "disabled webhook");
    // What ingest reads of a webhook, from the same bytes.
    let routes: Subscription = decode(&golden("records/webhook.json"), "webhook").expect("decode");
    assert_eq!((routes.id, routes.enabled), (W1, true));
    assert_eq!(routes.events, ["message.created", "chat.status_changed"]);

    check_record("records/event.bin", &event(1));
    check_record("records/event_test.bin", &event(5));
    for (name, d) in [
        ("succeeded", &w.deliveries[0]),
        ("pending", &w.deliveries[1]),
        ("cancelled", &w.deliveries[2]),
        ("failed", &w.deliveries[3]),
        ("test", &w.deliveries[8]),
    ] {
        check_record(&format!("records/delivery_{name}.bin"), d);
    }
    for (name, n) in ATTEMPT_FILES {
        check_record(&format!("records/attempt_{name}.bin"), &attempt(*n));
    }
    check_record("records/idempotency.json", &idempotency(1, 3));
    check_record("records/settings.json", &settings());
}

#[test]
fn records_of_databases_before_the_compact_form_still_decode() {
    let event: EventRecord =
        decode(&golden("legacy-json/event.json"), "event").expect("legacy event");
    same(&event, &self::event(1), "event");
    let d: DeliveryRecord =
        decode(&golden("legacy-json/delivery.json"), "delivery").expect("legacy delivery");
    same(&d, &world(false).deliveries[1], "delivery");
    let a: AttemptRecord =
        decode(&golden("legacy-json/attempt.json"), "attempt").expect("legacy attempt");
    same(&a, &attempt(2), "attempt");
}

#[test]
fn event_type_codes_in_index_keys_are_frozen() {
    for (name, code) in [
        ("meta.message", 1),
        ("message.created", 2),
        ("chat.status_changed", 3),
    ] {
        assert_eq!(type_code(name), code, "{name}");
        assert_eq!(frozen_type_code(name), code, "{name}");
        assert_eq!(crate::event_types::of_index_code(code), Some(name));
    }
    assert!(
        crate::event_types::NAMES
            .iter()
            .all(|n| frozen_type_code(n) != u8::MAX),
        "a new event type needs its code frozen here too (the next free number)"
    );
    // A type no longer in the catalogue, and the codes a filter reads.
    assert_eq!(type_code("order.paid"), u8::MAX);
    assert_eq!(crate::event_types::of_index_code(u8::MAX), None);
    assert_eq!(all_type_codes(), [1, 2, 3, u8::MAX]);
    // The rest of an index key: the masks, the outcome codes, webhook 0.
    let a = &attempt(5).attempt;
    assert_eq!(index_key(a, BY_WEBHOOK), (7, W1.0, 3, 1, a.id.0));
    assert_eq!(index_key(a, BY_TYPE), (6, 0, 3, 1, a.id.0));
    let a = &attempt(1).attempt;
    assert_eq!(index_key(a, BY_WEBHOOK), (7, W1.0, 2, 2, a.id.0));
}

/// Copies the golden database (and with `with_log` its write-ahead log) to a
/// temp dir and opens it with the current code.
fn open_golden(with_log: bool) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join(DB_FILE);
    std::fs::copy(data_dir().join(DB_FILE), &path).expect("copy the database");
    if with_log {
        std::fs::copy(data_dir().join(WAL_FILE), wal::path_for(&path)).expect("copy the log");
    }
    let store = Store::open(&path).expect("the golden database opens");
    (dir, store)
}

fn all<K: Key + 'static, V: Value + 'static, T>(
    txn: &ReadTransaction,
    table: redb::TableDefinition<K, V>,
    each: impl Fn(K::SelfType<'_>, V::SelfType<'_>) -> T,
) -> Vec<T> {
    let table = txn.open_table(table).expect("table");
    table
        .iter()
        .expect("iter")
        .map(|e| {
            let (k, v) = e.expect("entry");
            each(k.value(), v.value())
        })
        .collect()
}

/// Every record of every table is what the world says, read raw.
fn check_every_table(store: &Store, want: &World) {
    let txn = store.read().expect("read");
    let meta: BTreeMap<String, String> = all(&txn, META, |k, v| (k.to_owned(), v.to_owned()))
        .into_iter()
        .collect();
    let names: Vec<&str> = meta.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [ADMIN_TOKEN, INGEST_KEY, SCHEMA_VERSION, SETTINGS, WAL_SEQ]
    );
    assert_eq!(meta[SCHEMA_VERSION], "1");
    assert_eq!(meta[WAL_SEQ], want.wal_seq.to_string());
    assert_eq!(meta[INGEST_KEY], INGEST);
    assert_eq!(meta[ADMIN_TOKEN], ADMIN);
    let s: Settings = decode(meta[SETTINGS].as_bytes(), "settings").expect("settings");
    assert_eq!(s, settings());

    let hooks = all(&txn, WEBHOOKS, |k, v| {
        (k, decode::<WebhookRecord>(v, "webhook").expect("webhook"))
    });
    assert_eq!(hooks.len(), want.webhooks.len());
    for ((k, got), want) in hooks.iter().zip(&want.webhooks) {
        assert_eq!(*k, want.id.0);
        same_webhook(got, want, "webhook");
    }
    let keyed = |k: u128, id: u128, what: &str| assert_eq!(k, id, "{what} under its id");
    let events = all(&txn, EVENTS, |k, v| {
        let e: EventRecord = decode(v, "event").expect("event");
        keyed(k, e.id.0, "event");
        e
    });
    same(&events, &want.events, "events");
    let deliveries = all(&txn, DELIVERIES, |k, v| {
        let d: DeliveryRecord = decode(v, "delivery").expect("delivery");
        keyed(k, d.id.0, "delivery");
        d
    });
    same(&deliveries, &want.deliveries, "deliveries");
    let attempts = all(&txn, ATTEMPTS, |k, v| {
        let a: AttemptRecord = decode(v, "attempt").expect("attempt");
        keyed(k, a.attempt.id.0, "attempt");
        a
    });
    same(&attempts, &want.attempts, "attempts");
    let due = all(&txn, DUE, |k, v| (k, v));
    assert_eq!(due, want.due, "the due queue");
    let index = all(&txn, ATTEMPT_INDEX, |k, ()| k);
    assert_eq!(
        index,
        frozen_index(&want.attempts),
        "the delivery-log index"
    );
    let idem = all(&txn, IDEMPOTENCY, |k, v| {
        (
            k.to_owned(),
            decode::<IdempotencyRecord>(v, "key").expect("key"),
        )
    });
    same(&idem, &want.idempotency, "idempotency keys");
    let failed = all(&txn, FAILED_DELIVERIES, |k, ()| k);
    assert_eq!(failed, want.failed, "given-up deliveries");
}

/// A reloaded due entry: due time, delivery, webhook, and, when it came with
/// them, the next attempt number and the event.
type Reloaded = (u64, u128, u128, Option<u32>, Option<u128>);

/// The store's own reads over the golden database: the log through its index
/// with every kind of filter, the due queue as a reload reads it, jobs,
/// details, replays; then it takes a new event.
fn check_reads(store: &Store, want: &World) {
    let creds = store.credentials().expect("credentials");
    assert_eq!(
        (creds.ingest_key.expose(), creds.admin_token.expose()),
        (INGEST, ADMIN)
    );
    assert_eq!(store.load_settings().expect("settings"), settings());
    let hooks = store.list_webhooks().expect("list");
    assert_eq!(hooks.len(), 3);
    for (got, want) in hooks.iter().zip(&want.webhooks) {
        same_webhook(got, want, "listed webhook");
    }

    let newest_first = |keep: &dyn Fn(&Attempt) -> bool| -> Vec<AttemptId> {
        let mut ids: Vec<AttemptId> = want
            .attempts
            .iter()
            .map(|r| &r.attempt)
            .filter(|a| keep(a))
            .map(|a| a.id)
            .collect();
        ids.reverse();
        ids
    };
    let listed = |filter: AttemptFilter| -> Vec<AttemptId> {
        let page = store.list_attempts(&filter, None, 100).expect("list");
        page.iter().map(|a| a.id).collect()
    };
    let mut filters = 0;
    for webhook in [None, Some(W1), Some(W2), Some(W3)] {
        for ty in [
            None,
            Some("message.created"),
            Some("chat.status_changed"),
            Some("meta.message"),
        ] {
            for success in [None, Some(true), Some(false)] {
                let filter = AttemptFilter {
                    webhook,
                    event_type: ty.map(str::to_owned),
                    success,
                    ..AttemptFilter::default()
                };
                let expected = newest_first(&|a| {
                    webhook.is_none_or(|w| a.webhook_id == w)
                        && ty.is_none_or(|t| a.event_type == t)
                        && success.is_none_or(|s| a.success == s)
                });
                assert_eq!(listed(filter.clone()), expected, "{filter:?}");
                filters += usize::from(!expected.is_empty());
            }
        }
    }
    assert!(filters >= 20, "the filters find attempts ({filters})");
    let by_time = AttemptFilter {
        from_ms: Some(T1 + 1_100),
        to_ms: Some(T1 + 6_300),
        ..AttemptFilter::default()
    };
    assert_eq!(
        listed(by_time),
        newest_first(&|a| (T1 + 1_100..=T1 + 6_300).contains(&a.id.unix_ms()))
    );

    let detail = store
        .get_attempt(attempt(2).attempt.id)
        .expect("detail")
        .expect("found");
    assert_eq!(detail.request.body, Some(event(1).payload));
    same(&detail.response, &attempt(2).response, "response");

    // The due queue as a reload after a restart reads it: every entry with its
    // event and next attempt number.
    let (jobs, complete) = store
        .due_jobs(&ReloadPlan {
            limit: 100,
            known: HashSet::new(),
            skip: HashSet::new(),
        })
        .expect("reload");
    assert!(complete);
    let got: Vec<Reloaded> = jobs
        .iter()
        .map(|j| {
            (
                j.due_ms,
                j.delivery_id.0,
                j.webhook_id.0,
                j.known.as_ref().map(|k| k.attempt),
                j.known.as_ref().map(|k| k.event.id.0),
            )
        })
        .collect();
    let expected: Vec<_> = want
        .due
        .iter()
        .map(|&((due_ms, d), w)| {
            let record = want
                .deliveries
                .iter()
                .find(|r| r.id.0 == d)
                .expect("delivery");
            (
                due_ms,
                d,
                w,
                Some(record.attempts + 1),
                Some(record.event_id.0),
            )
        })
        .collect();
    assert_eq!(got, expected, "the reloaded due queue");
    assert_eq!(store.pending_count().expect("count"), want.due.len() as u64);
    for &((_, d), _) in &want.due {
        let job = store.load_job(DeliveryId(d)).expect("job").expect("found");
        let event = want.events.iter().find(|e| e.id == job.delivery.event_id);
        assert_eq!(Some(&job.event.payload), event.map(|e| &e.payload));
        assert!(job.webhook.is_some_and(|w| w.enabled));
    }
    let given_up = store
        .replay_failed(W1, &AttemptFilter::default(), None)
        .expect("replay dry run");
    same(
        &given_up,
        &vec![delivery(4, 3, DeliveryState::Failed, None)],
        "replay",
    );

    // A new event goes to the enabled subscribers the golden webhooks name.
    let new = NewEvent::new("message.created", r#"{"n":1}"#, None, Utc::now()).expect("event");
    let txn = store.write().expect("write");
    let (accepted, jobs) = {
        let mut t = HotTables::open(&txn, false).expect("tables");
        Store::ingest_in(&mut t, new).expect("ingest")
    };
    txn.commit().expect("commit");
    assert_eq!(accepted.deliveries, 2);
    let to: Vec<WebhookId> = jobs.iter().map(|j| j.webhook_id).collect();
    assert_eq!(to, [W1, W2], "the disabled webhook gets nothing");
}

#[test]
fn the_golden_database_opens_with_every_record_index_and_due_entry() {
    let (_dir, store) = open_golden(false);
    let want = world(false);
    check_every_table(&store, &want);
    check_reads(&store, &want);
}

#[test]
fn the_golden_database_with_its_log_replays_the_logged_batches() {
    let (_dir, store) = open_golden(true);
    let want = world(true);
    check_every_table(&store, &want);
    check_reads(&store, &want);
}

/// One put or delete of a redo record, read by hand from the documented layout
/// (`table u8, op u8, key len u32 LE, key, [value len u32 LE, value]`), and
/// described with the table's own key and value types.
fn redo_ops(mut payload: &[u8]) -> Vec<String> {
    fn bytes<'a>(input: &mut &'a [u8]) -> &'a [u8] {
        let (len, rest) = input.split_first_chunk::<4>().expect("a length");
        let (b, rest) = rest.split_at(u32::from_le_bytes(*len) as usize);
        *input = rest;
        b
    }
    let mut ops = Vec::new();
    while let Some((&[table, op], rest)) = payload.split_first_chunk::<2>() {
        payload = rest;
        let key = bytes(&mut payload);
        let value = match op {
            1 => Some(bytes(&mut payload)),
            2 => None,
            other => panic!("op {other}"),
        };
        let v = |what: &str| value.unwrap_or_else(|| panic!("{what}: a value"));
        let id = || u128::from_le_bytes(key.try_into().expect("a u128 key"));
        ops.push(match (table, value) {
            (1, Some(_)) => format!(
                "event {:?}",
                decode::<EventRecord>(v("event"), "e").expect("e")
            ),
            (2, Some(_)) => {
                format!(
                    "delivery {:?}",
                    decode::<DeliveryRecord>(v("d"), "d").expect("d")
                )
            }
            (3, _) => format!(
                "due {:?} {:?}",
                <(u64, u128)>::from_bytes(key),
                value.map(<u128>::from_bytes)
            ),
            (4, Some(_)) => {
                format!(
                    "attempt {:?}",
                    decode::<AttemptRecord>(v("a"), "a").expect("a")
                )
            }
            (5, _) => format!(
                "index {:?} {}",
                <(u8, u128, u8, u8, u128)>::from_bytes(key),
                value.is_some()
            ),
            (6, Some(_)) => {
                let w: WebhookRecord = decode(v("w"), "w").expect("w");
                assert_eq!(w.id.0, id());
                format!("webhook {w:?} {}", w.verify_token.expose())
            }
            (7, Some(_)) => format!(
                "key {} {:?}",
                <&str>::from_bytes(key),
                decode::<IdempotencyRecord>(v("k"), "k").expect("k")
            ),
            other => panic!("an unexpected op {other:?}"),
        });
    }
    ops
}

#[test]
fn the_golden_write_ahead_log_reads_as_the_batches_it_holds() {
    let records = wal::read(&data_dir().join(WAL_FILE)).expect("read the log");
    let seqs: Vec<u64> = records.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [6, 7], "the batches after the database's last (5)");

    let after = world(true);
    let w = |n: usize| {
        let h = &after.webhooks[n];
        format!("webhook {h:?} {}", h.verify_token.expose())
    };
    let index = |n: u16| {
        let a = attempt(n).attempt;
        let code = frozen_type_code(&a.event_type);
        let outcome = 1 + u8::from(a.success);
        [
            format!(
                "index {:?} true",
                (7u8, a.webhook_id.0, code, outcome, a.id.0)
            ),
            format!("index {:?} true", (6u8, 0u128, code, outcome, a.id.0)),
        ]
    };
    let d = |r: &DeliveryRecord| format!("delivery {r:?}");
    let (d2, d6, d10) = (delivery_id(2).0, delivery_id(6).0, delivery_id(10).0);
    // Table by table (events, deliveries, due, attempts, index, webhooks,
    // keys), each in the order written.
    let mut first = vec![
        format!("event {:?}", event(6)),
        d(&fresh(10)),
        d(&after.deliveries[1]),
        format!("due {:?} {:?}", (T5, d10), Some(W1.0)),
        format!("due {:?} {:?}", (T1 + 31_100, d2), None::<u128>),
        format!("attempt {:?}", attempt(9)),
    ];
    first.extend(index(9));
    first.push(w(1));
    first.push(format!("key chat-77-closed {:?}", idempotency(6, 1)));
    let mut second = vec![
        d(&after.deliveries[5]),
        format!("due {:?} {:?}", (T2, d6), None::<u128>),
        format!("due {:?} {:?}", (T5 + 5_020, d6), Some(W1.0)),
        format!("attempt {:?}", attempt(10)),
    ];
    second.extend(index(10));
    second.push(w(0));
    assert_eq!(redo_ops(&records[0].1), first, "batch 6");
    assert_eq!(redo_ops(&records[1].1), second, "batch 7");
}

/// The generator writes ingests with fixed ids (`ingest_fixed`); this checks
/// that it writes what the engine's own `Store::ingest_in` writes for the same
/// event, ids aside, so the golden database is what this version writes.
#[test]
fn the_generator_ingests_as_the_engine_does() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join(DB_FILE)).expect("open");
    for n in 1..=3 {
        store.insert_webhook(&webhook(n, None)).expect("webhook");
    }
    let e = event(1);
    let new = NewEvent {
        encoded: encode(&e).expect("encode"),
        event: Arc::new(e.clone()),
        idempotency: Some(("order-4821-created".into(), idempotency(1, 3).body_sha256)),
    };
    let txn = store.write().expect("write");
    let (accepted, jobs) = {
        let mut t = HotTables::open(&txn, false).expect("tables");
        Store::ingest_in(&mut t, new).expect("ingest")
    };
    txn.commit().expect("commit");
    assert_eq!((accepted.id, accepted.deliveries), (e.id, 3));

    let txn = store.read().expect("read");
    let events = all(&txn, EVENTS, |k, v| (k, v.to_vec()));
    assert_eq!(events, [(e.id.0, encode(&e).expect("encode"))]);
    let mut due = Vec::new();
    for (job, n) in jobs.iter().zip(1..=3) {
        let mut want = fresh(n);
        want.id = job.delivery_id;
        let got: DeliveryRecord = get_record(
            &txn.open_table(DELIVERIES).expect("table"),
            job.delivery_id.0,
            "delivery",
        )
        .expect("read")
        .expect("found");
        same(&got, &want, "delivery");
        due.push(((want.due_ms.expect("due"), want.id.0), want.webhook_id.0));
    }
    due.sort();
    assert_eq!(all(&txn, DUE, |k, v| (k, v)), due);
    let idem = all(&txn, IDEMPOTENCY, |k, v| {
        (
            k.to_owned(),
            decode::<IdempotencyRecord>(v, "key").expect("key"),
        )
    });
    same(
        &idem,
        &vec![("order-4821-created".to_owned(), idempotency(1, 3))],
        "idempotency",
    );
}

// ----- format version 2: delivery controls and ordering (`tests/data/v2`) -----

/// The directory of version 2's golden files.
fn data_dir_v2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v2")
}

/// Webhook 1 with every delivery control set.
fn webhook_with_controls() -> WebhookRecord {
    use crate::model::{Pause, PauseReason, PreviousSecret, Signature};
    let mut w = webhook(1, Some((3, 5, Some(302))));
    let c = &mut w.controls;
    c.paused = Some(Pause {
        reason: PauseReason::Failing,
        at: at(T3),
    });
    c.headers.insert(
        "Authorization".into(),
        Secret::new("Basic b3JraTpzZWNyZXQ="),
    );
    c.rate_limit_per_s = Some(50);
    c.signature = Signature::Standard;
    c.signing_secret = Some(Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    c.previous_secret = Some(PreviousSecret {
        secret: Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
        until: at(T3 + 86_400_000),
    });
    c.failing_since = Some(at(T2));
    c.ordered = true;
    w
}

/// Event 1 posted with an ordering key.
fn keyed_event() -> EventRecord {
    let mut e = event(1);
    e.ordering_key = Some("chat-4821".into());
    e
}

/// Delivery 2 as the head of its key (due), and delivery 5 waiting behind it.
fn ordered_deliveries() -> [(&'static str, DeliveryRecord); 2] {
    let key = super::key_hash("chat-4821");
    let mut head = delivery(2, 1, DeliveryState::Pending, Some(T1 + 31_100));
    head.ordering = Some(crate::model::Ordering { key, seq: 0 });
    let mut waiting = delivery(5, 0, DeliveryState::Pending, None);
    waiting.ordering = Some(crate::model::Ordering { key, seq: 1 });
    [("head", head), ("waiting", waiting)]
}

#[test]
#[ignore = "writes the golden files of version 2: ORKI_WRITE_GOLDEN=1"]
fn write_golden_files_v2() {
    assert_eq!(
        std::env::var("ORKI_WRITE_GOLDEN").as_deref(),
        Ok("1"),
        "set ORKI_WRITE_GOLDEN=1 to overwrite the golden files"
    );
    let out = data_dir_v2().join("records");
    std::fs::create_dir_all(&out).expect("mkdir");
    let write = |name: &str, bytes: Vec<u8>| {
        std::fs::write(out.join(name), bytes).expect("write a golden file");
    };
    write(
        "webhook_controls.json",
        encode(&webhook_with_controls()).expect("encode"),
    );
    write("event_keyed.bin", encode(&keyed_event()).expect("encode"));
    for (name, d) in ordered_deliveries() {
        write(&format!("delivery_{name}.bin"), encode(&d).expect("encode"));
    }
}

/// The golden record `name` of version 2 decodes to `want`, and `want`
/// still encodes to it.
fn check_record_v2<T: Record + serde::Serialize + Debug>(name: &str, want: &T) -> T {
    let path = data_dir_v2().join("records").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let got: T = decode(&bytes, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    same(&got, want, name);
    assert!(
        encode(want).expect("encode") == bytes,
        "{name}: this version writes it differently"
    );
    got
}

#[test]
fn version_2_records_decode_to_the_values_they_were_written_from() {
    let want = webhook_with_controls();
    let got = check_record_v2("webhook_controls.json", &want);
    same_webhook(&got, &want, "webhook with controls");
    let secret = |w: &WebhookRecord| {
        let c = &w.controls;
        (
            c.headers["Authorization"].expose().to_owned(),
            c.signing_secret.as_ref().map(|s| s.expose().to_owned()),
            c.previous_secret
                .as_ref()
                .map(|p| p.secret.expose().to_owned()),
        )
    };
    assert_eq!(
        secret(&got),
        secret(&want),
        "the secrets (Debug hides them)"
    );
    // What ingest reads of it: ordered.
    let path = data_dir_v2().join("records/webhook_controls.json");
    let routes: Subscription =
        decode(&std::fs::read(path).expect("read"), "webhook").expect("decode");
    assert!(routes.ordered);
    check_record_v2("event_keyed.bin", &keyed_event());
    for (name, d) in ordered_deliveries() {
        let bytes = encode(&d).expect("encode");
        assert_eq!(bytes[0], 0x02, "{name}: an ordered delivery is version 2");
        check_record_v2(&format!("delivery_{name}.bin"), &d);
    }
}
