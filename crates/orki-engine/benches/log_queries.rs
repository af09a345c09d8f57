//! Delivery-log query benchmark: fills a real redb file with a million attempts
//! (20 webhooks, 3 event types, ~10 % failures, 25 days) and measures p50/p99 of
//! filtered first pages and deep pages (50 rows, as the API serves them).
//!
//! `cargo bench -p orki-engine --bench log_queries` (set `ORKI_BENCH_ATTEMPTS` for
//! another size). Results go in docs/BENCHMARKS.md.

use std::time::{Duration, Instant};

use chrono::DateTime;
use orki_engine::Store;
use orki_engine::event_types::NAMES;
use orki_engine::ids::{AttemptId, DeliveryId, EventId, WebhookId};
use orki_engine::model::{
    Attempt, AttemptRecord, DeliveryRecord, DeliveryState, ErrorClass, EventRecord, RequestRecord,
    ResponseRecord,
};
use orki_engine::store::AttemptFilter;
use rand::Rng;

const DAY_MS: u64 = 86_400_000;
const PAGE: usize = 51; // 50 rows + 1 to know whether there is a next page
const RUNS: usize = 400;

fn record(
    wh: WebhookId,
    at_ms: u64,
    ty: &str,
    success: bool,
) -> (EventRecord, DeliveryRecord, AttemptRecord) {
    let at = DateTime::from_timestamp_millis(at_ms as i64).expect("time");
    let event = EventRecord {
        id: EventId::at_unix_ms(at_ms),
        event_type: ty.to_owned(),
        created_at: at,
        payload: format!(
            r#"{{"id":"evt","type":"{ty}","created_at":"{}","data":{{"message":{{"id":"msg_01JD8Q3K6W1R9X2V4T7N5B0C3M","text":"Hi! Is my order ready?"}}}}}}"#,
            at.to_rfc3339()
        ),
        test: false,
        idempotency_key: None,
    };
    let delivery = DeliveryRecord {
        id: DeliveryId::at_unix_ms(at_ms),
        event_id: event.id,
        webhook_id: wh,
        event_type: ty.to_owned(),
        created_at: at,
        attempts: 1,
        state: if success {
            DeliveryState::Succeeded
        } else {
            DeliveryState::Failed
        },
        due_ms: None,
        test: false,
    };
    let status = if success { 200 } else { 503 };
    let headers = [
        ("Content-Type", "application/json"),
        ("User-Agent", "Orki-Webhooks/0.1.0"),
        (
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
        ("X-Orki-Event", ty),
        ("X-Orki-Delivery", "dlv_01a21e97ae9e703086e9b5d4168e82c0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let attempt = AttemptRecord {
        attempt: Attempt {
            id: AttemptId::at_unix_ms(at_ms),
            delivery_id: delivery.id,
            webhook_id: wh,
            event_id: event.id,
            event_type: ty.to_owned(),
            attempt: 1,
            timestamp: at,
            success,
            status_code: Some(status),
            response_time_ms: 37,
            error: (!success).then(|| "the endpoint answered HTTP 503, not 2xx".to_owned()),
            error_class: (!success).then_some(ErrorClass::Status),
            test: false,
            next_retry_at: None,
        },
        request: RequestRecord {
            url: "https://crm.office.lan/hooks/orki".into(),
            method: "POST".into(),
            headers,
        },
        response: Some(ResponseRecord {
            status,
            headers: [("content-type".to_owned(), "text/plain".to_owned())]
                .into_iter()
                .collect(),
            body: if success {
                "ok".into()
            } else {
                "Service Unavailable".into()
            },
            body_truncated: false,
        }),
    };
    (event, delivery, attempt)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let total: usize = std::env::var("ORKI_BENCH_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orki-webhooks.redb");
    let store = Store::open(&path).expect("store");
    let webhooks: Vec<WebhookId> = (0..20).map(|_| WebhookId::generate()).collect();
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    let start_ms = now_ms - 25 * DAY_MS;
    let step = (25 * DAY_MS) / total as u64;
    let mut rng = rand::rng();

    let fill_started = Instant::now();
    let mut sample_ids = Vec::new();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..total {
        let at = start_ms + i as u64 * step.max(1);
        let wh = webhooks[rng.random_range(0..webhooks.len())];
        let ty = NAMES[rng.random_range(0..NAMES.len())];
        let success = rng.random_bool(0.9);
        let item = record(wh, at, ty, success);
        if i % 997 == 0 {
            sample_ids.push(item.2.attempt.id);
        }
        batch.push(item);
        if batch.len() == 10_000 {
            store.insert_history(&batch).expect("insert");
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.insert_history(&batch).expect("insert");
    }
    let fill = fill_started.elapsed();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "filled {total} attempts (with their events and deliveries) in {:.1} s; file {:.0} MB",
        fill.as_secs_f64(),
        size as f64 / 1e6
    );

    type Case = (
        &'static str,
        Box<dyn Fn(&mut rand::rngs::ThreadRng) -> (AttemptFilter, Option<AttemptId>)>,
    );
    let whs = webhooks.clone();
    let whs2 = webhooks.clone();
    let whs3 = webhooks.clone();
    let whs4 = webhooks.clone();
    let ids = sample_ids.clone();
    let ids2 = sample_ids.clone();
    let ids3 = sample_ids.clone();
    let cases: Vec<Case> = vec![
        (
            "first page, no filter",
            Box::new(|_| (AttemptFilter::default(), None)),
        ),
        (
            "first page, webhook",
            Box::new(move |r| {
                (
                    AttemptFilter {
                        webhook: Some(whs[r.random_range(0..20)]),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "first page, event type",
            Box::new(|r| {
                (
                    AttemptFilter {
                        event_type: Some(NAMES[r.random_range(0..3)].into()),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "first page, failures",
            Box::new(|_| {
                (
                    AttemptFilter {
                        success: Some(false),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "first page, webhook + failures",
            Box::new(move |r| {
                (
                    AttemptFilter {
                        webhook: Some(whs2[r.random_range(0..20)]),
                        success: Some(false),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "first page, webhook + type + outcome",
            Box::new(move |r| {
                (
                    AttemptFilter {
                        webhook: Some(whs3[r.random_range(0..20)]),
                        event_type: Some(NAMES[r.random_range(0..3)].into()),
                        success: Some(r.random_bool(0.5)),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "first page, one day's range",
            Box::new(move |r| {
                let from = start_ms + r.random_range(0..24) * DAY_MS;
                (
                    AttemptFilter {
                        from_ms: Some(from),
                        to_ms: Some(from + DAY_MS),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "first page, failures in a day of one webhook",
            Box::new(move |r| {
                let from = start_ms + r.random_range(0..24) * DAY_MS;
                (
                    AttemptFilter {
                        webhook: Some(whs4[r.random_range(0..20)]),
                        success: Some(false),
                        from_ms: Some(from),
                        to_ms: Some(from + DAY_MS),
                        ..Default::default()
                    },
                    None,
                )
            }),
        ),
        (
            "deep page, no filter",
            Box::new(move |r| {
                (
                    AttemptFilter::default(),
                    Some(ids[r.random_range(0..ids.len())]),
                )
            }),
        ),
        (
            "deep page, event type + failures",
            Box::new(move |r| {
                (
                    AttemptFilter {
                        event_type: Some(NAMES[r.random_range(0..3)].into()),
                        success: Some(false),
                        ..Default::default()
                    },
                    Some(ids2[r.random_range(0..ids2.len())]),
                )
            }),
        ),
        (
            "deep page, webhook",
            Box::new(move |r| {
                (
                    AttemptFilter {
                        webhook: Some(webhooks[r.random_range(0..20)]),
                        ..Default::default()
                    },
                    Some(ids3[r.random_range(0..ids3.len())]),
                )
            }),
        ),
    ];

    println!("\n| query ({RUNS} runs, 50 rows a page) | p50 | p99 | rows (median) |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, make) in &cases {
        let mut times = Vec::with_capacity(RUNS);
        let mut rows = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let (filter, cursor) = make(&mut rng);
            let t = Instant::now();
            let page = store.list_attempts(&filter, cursor, PAGE).expect("query");
            times.push(t.elapsed());
            rows.push(page.len());
        }
        times.sort();
        rows.sort();
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {} |",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3,
            rows[rows.len() / 2]
        );
    }
}
