//! A synthetic delivery history for benchmarks: finished deliveries with their
//! events and attempts, as `Store::insert_history` stores them. Shared by the
//! log-query benchmark and the throughput benchmark (`#[path]`).

#![allow(dead_code)]

use chrono::DateTime;
use orki_engine::Store;
use orki_engine::event_types::NAMES;
use orki_engine::ids::{AttemptId, DeliveryId, EventId, WebhookId};
use orki_engine::model::{
    Attempt, AttemptRecord, DeliveryRecord, DeliveryState, ErrorClass, EventRecord, RequestRecord,
    ResponseRecord,
};
use rand::Rng;

pub const DAY_MS: u64 = 86_400_000;

/// Stores `total` attempts to `webhooks` (random webhook and type, about 10 %
/// failures), spread evenly over the 25 days before `now_ms`, in transactions of
/// 10,000. Returns every 997th attempt id (for deep-page cursors).
pub fn fill(store: &Store, webhooks: &[WebhookId], total: usize, now_ms: u64) -> Vec<AttemptId> {
    let mut rng = rand::rng();
    let start_ms = now_ms - 25 * DAY_MS;
    let step = (25 * DAY_MS) / total.max(1) as u64;
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
    sample_ids
}

/// One finished delivery: its event, the delivery and its one attempt.
pub fn record(
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
        ordering_key: None,
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
        ordering: None,
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
