use std::collections::BTreeMap;

use super::attempts::insert_attempt;
use super::attempts::insert_attempt_encoded;
use super::redo::REDO_DELETE;
use super::redo::REDO_PUT;
use super::redo::put_bytes;
use super::*;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::Error;
use crate::ids::{AttemptId, DeliveryId, EventId, WebhookId};
use crate::model::RequestRecord;
use crate::model::{Attempt, AttemptRecord, DeliveryRecord, DeliveryState, WebhookRecord};
use crate::queue::ReloadPlan;
use crate::store::codec::encode;
use crate::store::tables::DELIVERIES;

/// The webhook the store's tests subscribe: `message.created`, enabled.
pub(crate) fn crm_webhook() -> WebhookRecord {
    WebhookRecord::new(
        "https://crm.office.lan/hooks".into(),
        crate::Secret::new("a-verify-token"),
        vec!["message.created".into()],
        true,
    )
}

/// A finished attempt to `wh` at `at_ms` (ids made at that time).
pub(crate) fn attempt(wh: WebhookId, at_ms: u64, ty: &str, success: bool, n: u64) -> AttemptRecord {
    let at = DateTime::from_timestamp_millis(at_ms as i64).expect("time");
    AttemptRecord {
        attempt: Attempt {
            id: AttemptId::at_unix_ms(at_ms),
            delivery_id: DeliveryId::at_unix_ms(at_ms),
            webhook_id: wh,
            event_id: EventId::at_unix_ms(at_ms),
            event_type: ty.to_owned(),
            attempt: 1,
            timestamp: at,
            success,
            status_code: Some(if success { 200 } else { 500 }),
            response_time_ms: n,
            error: None,
            error_class: None,
            test: false,
            next_retry_at: None,
        },
        request: RequestRecord {
            url: "https://example.test/hook".into(),
            method: "POST".into(),
            headers: BTreeMap::new(),
        },
        response: None,
    }
}

/// A new data directory, the database and its write-ahead log are made
/// for the owner only, whatever the umask (the test's is the usual 022),
/// and a reopen (after a storage error) keeps them so.
#[cfg(unix)]
#[test]
fn a_new_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    let tmp = tempfile::tempdir().expect("dir");
    let data = tmp.path().join("data");
    let path = data.join("orki-webhooks.redb");
    let store = Store::open(&path).expect("open");
    store.credentials().expect("credentials written");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&wal::path_for(&path)), 0o600);
    drop(store);
    let store = Store::open(&path).expect("open again");
    drop(store);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&wal::path_for(&path)), 0o600);
}

/// One redo operation: table, put (with a value) or delete.
fn redo_op(table: u8, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let mut out = vec![
        table,
        if value.is_some() {
            REDO_PUT
        } else {
            REDO_DELETE
        },
    ];
    put_bytes(&mut out, key);
    if let Some(v) = value {
        put_bytes(&mut out, v);
    }
    out
}

/// Found by `fuzz/` (wal_replay): a record with a right CRC whose key or
/// value is not of its table's type panicked in redb's `from_bytes`
/// (opening the database would fail with a panic, not an error). Each is
/// now a clear `Corrupt` error; well-formed records still apply.
#[test]
fn a_well_framed_record_of_the_wrong_shape_is_an_error_not_a_panic() {
    let id = 7u128.to_le_bytes();
    let due = [&5u64.to_le_bytes()[..], &id].concat();
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("an event key of 3 bytes", redo_op(1, b"abc", Some(b"{}"))),
        ("a delivery key of 17 bytes", redo_op(2, &[0; 17], None)),
        ("a due key of 16 bytes", redo_op(3, &id, Some(&id))),
        ("a due value of 3 bytes", redo_op(3, &due, Some(b"abc"))),
        ("an index key of 0 bytes", redo_op(5, b"", Some(b""))),
        (
            "an index value that is not ()",
            redo_op(5, &[0; 35], Some(b"x")),
        ),
        (
            "an idempotency key not UTF-8",
            redo_op(7, b"\xff\xfe", Some(b"{}")),
        ),
        ("a failed key of 31 bytes", redo_op(8, &[0; 31], None)),
    ];
    for (what, payload) in bad {
        let log = wal::record(1, &payload).expect("record");
        let err = replay_log_bytes(&log).expect_err(what);
        assert!(
            matches!(&err, Error::Corrupt(m) if m.contains("write-ahead record")),
            "{what}: {err}"
        );
    }
    // The input libFuzzer found (minimized; also a seed in fuzz/seeds/):
    // a key or value of the wrong width for its table.
    let found = include_bytes!("../../../../fuzz/seeds/wal_replay/found_due_value_width");
    let err = replay_log_bytes(&wal::record(1, found).expect("record")).expect_err("found");
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
    // Well-formed records of every fixed-width table apply.
    let good = [
        redo_op(3, &due, Some(&id)),
        redo_op(5, &[0; 35], Some(b"")),
        redo_op(8, &[0; 32], Some(b"")),
        redo_op(7, "order-1".as_bytes(), None),
    ]
    .concat();
    assert_eq!(
        replay_log_bytes(&wal::record(1, &good).expect("record")).expect("applies"),
        1
    );
    // A record whose value does not decode is an error too (the codec's).
    let event = redo_op(1, &id, Some(&[0x01, 0x02]));
    let err = replay_log_bytes(&wal::record(1, &event).expect("record")).expect_err("bad event");
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
}

/// Every combination of filters, paged with a cursor, gives exactly the
/// matching attempts, newest first, as a plain scan of all of them does.
#[test]
fn every_filter_combination_pages_exactly_like_a_full_scan() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("t.redb")).expect("open");
    let webhooks: Vec<WebhookId> = (0..3).map(|_| WebhookId::generate()).collect();
    let types = crate::event_types::NAMES;
    let mut all = Vec::new();
    let txn = store.write().expect("txn");
    for n in 0..400u64 {
        // A fixed, uneven spread over webhooks, types, outcomes and time.
        let r = attempt(
            webhooks[(n * 7 % 3) as usize],
            1_700_000_000_000 + n * 1000 + (n * 37 % 11),
            types[(n * 5 % types.len() as u64) as usize],
            n % 4 != 0,
            n,
        );
        insert_attempt(&txn, &r).expect("insert");
        all.push(r.attempt);
    }
    txn.commit().expect("commit");
    all.sort_by_key(|a| std::cmp::Reverse(a.id.0));

    let mut checked = 0;
    for mask in 0..8u8 {
        for range in [None, Some((1_700_000_050_000, 1_700_000_300_000))] {
            let filter = AttemptFilter {
                webhook: (mask & 1 != 0).then_some(webhooks[1]),
                event_type: (mask & 2 != 0).then(|| types[2].to_owned()),
                success: (mask & 4 != 0).then_some(false),
                from_ms: range.map(|r| r.0),
                to_ms: range.map(|r| r.1),
            };
            let expected: Vec<u128> = all
                .iter()
                .filter(|a| filter.webhook.is_none_or(|w| a.webhook_id == w))
                .filter(|a| {
                    filter
                        .event_type
                        .as_ref()
                        .is_none_or(|t| a.event_type == *t)
                })
                .filter(|a| filter.success.is_none_or(|s| a.success == s))
                .filter(|a| filter.from_ms.is_none_or(|f| a.id.unix_ms() >= f))
                .filter(|a| filter.to_ms.is_none_or(|t| a.id.unix_ms() <= t))
                .map(|a| a.id.0)
                .collect();
            let mut got = Vec::new();
            let mut cursor = None;
            loop {
                let page = store.list_attempts(&filter, cursor, 7).expect("page");
                got.extend(page.iter().map(|a| a.id.0));
                if page.len() < 7 {
                    break;
                }
                cursor = page.last().map(|a| a.id);
            }
            assert!(!expected.is_empty(), "{filter:?} matches something");
            assert_eq!(got, expected, "{filter:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
}
/// A database written before the compact form (every record JSON) reads
/// as before, and a pending delivery in it is recorded in the new form.
#[test]
fn a_database_of_json_records_reads_and_updates() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("t.redb")).expect("open");
    let now = Utc::now();
    let new = NewEvent::new("order.paid", r#"{"n":1}"#, None, now).expect("event");
    let event = (*new.event).clone();
    let webhook = WebhookId::generate();
    let delivery = DeliveryRecord {
        id: DeliveryId::generate(),
        event_id: event.id,
        webhook_id: webhook,
        event_type: event.event_type.clone(),
        created_at: now,
        attempts: 1,
        state: DeliveryState::Pending,
        due_ms: Some(unix_ms(now)),
        test: false,
        ordering: None,
    };
    let mut old = attempt(webhook, unix_ms(now), "order.paid", false, 7);
    old.attempt.delivery_id = delivery.id;
    old.attempt.event_id = event.id;
    let txn = store.write().expect("write");
    {
        let mut t = HotTables::open(&txn, false).expect("tables");
        t.events
            .insert(event.id.0, json(&event).as_slice())
            .expect("event");
        t.deliveries
            .insert(delivery.id.0, json(&delivery).as_slice())
            .expect("delivery");
        t.due
            .insert((unix_ms(now), delivery.id.0), webhook.0)
            .expect("due");
        insert_attempt_encoded(&mut t.attempts, &mut t.index, &old.attempt, &json(&old))
            .expect("attempt");
    }
    txn.commit().expect("commit");

    let listed = store
        .list_attempts(
            &AttemptFilter {
                webhook: Some(webhook),
                ..AttemptFilter::default()
            },
            None,
            10,
        )
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, old.attempt.id);
    let detail = store
        .get_attempt(old.attempt.id)
        .expect("detail")
        .expect("found");
    assert_eq!(detail.request.body.as_deref(), Some(event.payload.as_str()));
    assert_eq!(detail.request.url, old.request.url);
    let job = store.load_job(delivery.id).expect("load").expect("found");
    assert_eq!(job.event.payload, event.payload);
    assert_eq!(job.delivery.due_ms, delivery.due_ms);

    // The second attempt succeeds: the delivery is rewritten, compact.
    let mut next = old.clone();
    next.attempt.id = AttemptId::generate();
    next.attempt.attempt = 2;
    next.attempt.success = true;
    let txn = store.write().expect("write");
    {
        let mut t = HotTables::open(&txn, false).expect("tables");
        let encoded = encode(&next).expect("encode");
        Store::record_attempt_in(&mut t, &next, &encoded, None, 5).expect("record");
    }
    txn.commit().expect("commit");
    let stored = store.read().expect("read");
    let bytes = stored
        .open_table(DELIVERIES)
        .expect("table")
        .get(delivery.id.0)
        .expect("get")
        .expect("found")
        .value()
        .to_vec();
    assert_ne!(
        bytes[0], b'{',
        "the delivery was rewritten in the compact form"
    );
    let job = store.load_job(delivery.id).expect("load").expect("found");
    assert_eq!(job.delivery.state, DeliveryState::Succeeded);
    assert_eq!(job.delivery.attempts, 2);
    assert_eq!(job.delivery.created_at, now, "the time survives exactly");
    let newest = store
        .list_attempts(&AttemptFilter::default(), None, 10)
        .expect("list");
    assert_eq!(
        newest.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [2, 1],
        "both forms side by side in the log"
    );
}

/// A reload reads the earliest due entries with what their attempts send:
/// each event once, the attempt number from the delivery; not for a
/// delivery the queue already knows, nor for one whose record disagrees
/// with its entry.
#[test]
fn a_reload_reads_each_event_once_and_skips_what_the_queue_knows() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("t.redb")).expect("open");
    let now = Utc::now();
    let event = NewEvent::new("order.paid", r#"{"n":1}"#, None, now)
        .expect("event")
        .event;
    let due = unix_ms(now);
    let delivery = |attempts: u32, due_ms: Option<u64>| DeliveryRecord {
        id: DeliveryId::generate(),
        event_id: event.id,
        webhook_id: WebhookId::generate(),
        event_type: event.event_type.clone(),
        created_at: now,
        attempts,
        state: DeliveryState::Pending,
        due_ms,
        test: false,
        ordering: None,
    };
    // Due in this order: fresh, retried twice, known to the queue, and one
    // whose record no longer says it is due then.
    let all = [
        delivery(0, Some(due)),
        delivery(2, Some(due + 1)),
        delivery(0, Some(due + 2)),
        delivery(1, Some(due + 99)),
    ];
    let txn = store.write().expect("write");
    {
        let mut t = HotTables::open(&txn, false).expect("tables");
        t.events
            .insert(event.id.0, encode(&*event).expect("encode").as_slice())
            .expect("event");
        for (n, d) in all.iter().enumerate() {
            t.deliveries
                .insert(d.id.0, encode(d).expect("encode").as_slice())
                .expect("delivery");
            t.due
                .insert((due + n as u64, d.id.0), d.webhook_id.0)
                .expect("due");
        }
    }
    txn.commit().expect("commit");

    let plan = ReloadPlan {
        limit: 10,
        known: HashSet::from([all[2].id]),
        skip: HashSet::new(),
    };
    let (jobs, complete) = store.due_jobs(&plan).expect("read");
    assert!(complete);
    let ids: Vec<DeliveryId> = jobs.iter().map(|j| j.delivery_id).collect();
    assert_eq!(ids, all.iter().map(|d| d.id).collect::<Vec<_>>());
    let attempts: Vec<Option<u32>> = jobs
        .iter()
        .map(|j| j.known.as_ref().map(|k| k.attempt))
        .collect();
    assert_eq!(attempts, [Some(1), Some(3), None, None]);
    let (a, b) = (
        jobs[0].known.as_ref().expect("known"),
        jobs[1].known.as_ref().expect("known"),
    );
    assert!(Arc::ptr_eq(&a.event, &b.event), "the event is read once");
    assert_eq!(a.event.payload, event.payload);

    let (first, complete) = store
        .due_jobs(&ReloadPlan {
            limit: 2,
            known: HashSet::new(),
            skip: HashSet::new(),
        })
        .expect("read");
    assert_eq!(first.len(), 2);
    assert!(!complete, "the table has more");
}

/// The JSON form every record had before the compact one.
fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("json")
}

/// Records `a` in its own transaction with `rules`; the health it returns.
fn record_with(
    store: &Store,
    a: &AttemptRecord,
    next_due_ms: Option<u64>,
    rules: HealthRules,
) -> Option<super::Health> {
    let txn = store.write().expect("write");
    let health = {
        let mut t = HotTables::open(&txn, false).expect("tables");
        let encoded = encode(a).expect("encode");
        Store::record_attempt_in(&mut t, a, &encoded, next_due_ms, rules)
            .expect("record")
            .health
    };
    txn.commit().expect("commit");
    health
}

/// Auto-pause on the attempts' own timeline: 24 hours of nothing but
/// failures pause the webhook ("failing"), a success in between starts the
/// count again, a `410 Gone` pauses at once ("gone"), and a delivery whose
/// last retry fails while its webhook is paused is held, not given up.
#[test]
fn a_webhook_failing_for_the_auto_pause_window_or_gone_is_paused_and_keeps_its_deliveries() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("orki.redb")).expect("open");
    let hook = crm_webhook();
    store.insert_webhook(&hook).expect("webhook");
    let rules = HealthRules {
        warning_threshold: 5,
        auto_pause_after_hours: Some(24),
    };
    let hour = 3_600_000;
    let t0 = 1_800_000_000_000;
    let failed = |at: u64| attempt(hook.id, at, "message.created", false, 1);
    assert_eq!(
        record_with(&store, &failed(t0), None, rules).and_then(|h| h.paused),
        None
    );
    assert_eq!(
        record_with(&store, &failed(t0 + 23 * hour), None, rules).and_then(|h| h.paused),
        None
    );
    // A success resets the window: failing again for 23 h does not pause.
    let ok = attempt(hook.id, t0 + 23 * hour + 1, "message.created", true, 1);
    record_with(&store, &ok, None, rules);
    let w = store.get_webhook(hook.id).expect("get").expect("found");
    assert_eq!(w.controls.failing_since, None);
    record_with(&store, &failed(t0 + 24 * hour), None, rules);
    assert!(
        !store
            .get_webhook(hook.id)
            .expect("get")
            .expect("found")
            .is_paused()
    );
    record_with(&store, &failed(t0 + 46 * hour), None, rules);
    assert!(
        !store
            .get_webhook(hook.id)
            .expect("get")
            .expect("found")
            .is_paused(),
        "22 h of failures"
    );
    // 24 h after the first failure since the success: paused.
    let health = record_with(&store, &failed(t0 + 48 * hour), None, rules).expect("health");
    let pause = health.paused.expect("paused");
    assert_eq!(pause.reason, crate::model::PauseReason::Failing);
    let w = store.get_webhook(hook.id).expect("get").expect("found");
    assert_eq!(w.controls.paused, Some(pause));

    // A delivery whose last retry fails now is held, not given up.
    let new = NewEvent::new("message.created", "{}", None, Utc::now()).expect("event");
    let jobs = {
        let txn = store.write().expect("write");
        let (_, jobs) = {
            let mut t = HotTables::open(&txn, false).expect("tables");
            Store::ingest_in(&mut t, new).expect("ingest")
        };
        txn.commit().expect("commit");
        jobs
    };
    let mut last = failed(t0 + 49 * hour);
    last.attempt.delivery_id = jobs[0].delivery_id;
    record_with(&store, &last, None, rules);
    let job = store
        .load_job(jobs[0].delivery_id)
        .expect("load")
        .expect("found");
    assert_eq!(job.delivery.state, DeliveryState::Pending, "held");
    assert_eq!(job.delivery.due_ms, Some(t0 + 49 * hour));

    // Never: no pause by time; 410 still pauses at once.
    let other = crm_webhook();
    store.insert_webhook(&other).expect("webhook");
    let never = HealthRules {
        warning_threshold: 5,
        auto_pause_after_hours: None,
    };
    let fail = |at: u64| attempt(other.id, at, "message.created", false, 1);
    record_with(&store, &fail(t0), None, never);
    assert_eq!(
        record_with(&store, &fail(t0 + 1000 * hour), None, never).and_then(|h| h.paused),
        None
    );
    let mut gone = fail(t0 + 1001 * hour);
    gone.attempt.status_code = Some(410);
    let pause = record_with(&store, &gone, None, never)
        .and_then(|h| h.paused)
        .expect("gone pauses");
    assert_eq!(pause.reason, crate::model::PauseReason::Gone);
}
