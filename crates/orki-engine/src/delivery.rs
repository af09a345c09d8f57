//! The delivery scheduler: reads the due queue, runs attempts with bounded
//! concurrency (overall and per webhook, so a slow endpoint never holds up the
//! others), records each attempt and schedules the retry, all in one
//! transaction per attempt.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::Store;
use crate::engine::{EngineEvent, EngineHandle, redacted};
use crate::ids::{AttemptId, DeliveryId, WebhookId};
use crate::model::{
    Attempt, AttemptRecord, ErrorClass, EventRecord, RequestRecord, ResponseRecord, WebhookRecord,
};
use crate::outbound::Outbound;
use crate::retry::parse_retry_after;
use crate::signing::{SIGNATURE_HEADER, signature};
use crate::store::{DueJob, unix_ms};

/// Deliveries in flight, shared between the scheduler loop and attempt tasks.
#[derive(Default)]
struct InFlight {
    deliveries: HashSet<DeliveryId>,
    per_webhook: HashMap<WebhookId, usize>,
}

impl InFlight {
    fn add(&mut self, job: &DueJob) {
        self.deliveries.insert(job.delivery_id);
        *self.per_webhook.entry(job.webhook_id).or_default() += 1;
    }

    fn remove(&mut self, job: &DueJob) {
        self.deliveries.remove(&job.delivery_id);
        if let Some(n) = self.per_webhook.get_mut(&job.webhook_id) {
            *n -= 1;
            if *n == 0 {
                self.per_webhook.remove(&job.webhook_id);
            }
        }
    }
}

/// Runs until the engine's token is cancelled. Attempt tasks go on `tasks`, so
/// shutdown waits for them.
pub(crate) async fn run(engine: EngineHandle, tasks: TaskTracker) {
    let cfg = engine.config().clone();
    let cancel = engine.inner.cancel.clone();
    let in_flight = Arc::new(Mutex::new(InFlight::default()));
    loop {
        let (busy, per_webhook, running) = {
            let f = in_flight.lock().unwrap_or_else(PoisonError::into_inner);
            (
                f.deliveries.clone(),
                f.per_webhook.clone(),
                f.deliveries.len(),
            )
        };
        let free = cfg.max_in_flight.saturating_sub(running);
        let mut next_due = None;
        if free > 0 {
            let per_limit = cfg.max_in_flight_per_webhook;
            let now_ms = unix_ms(Utc::now());
            let scanned = engine
                .blocking(move |s| {
                    let mut counts = per_webhook;
                    s.scan_due(now_ms, free, |job| {
                        let n = counts.entry(job.webhook_id).or_default();
                        if busy.contains(&job.delivery_id) || *n >= per_limit {
                            return true;
                        }
                        *n += 1;
                        false
                    })
                })
                .await;
            match scanned {
                Ok((jobs, next)) => {
                    next_due = next;
                    for job in jobs {
                        in_flight
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .add(&job);
                        let engine = engine.clone();
                        let in_flight = in_flight.clone();
                        tasks.spawn(async move {
                            attempt(&engine, job).await;
                            in_flight
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .remove(&job);
                            engine.inner.wake.notify_one();
                        });
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the due queue failed; retrying in 1 s");
                    next_due = Some(unix_ms(Utc::now()) + 1000);
                }
            }
        }
        let sleep_until = next_due.map(|due_ms| {
            let wait = due_ms.saturating_sub(unix_ms(Utc::now()));
            Instant::now() + Duration::from_millis(wait)
        });
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = engine.inner.wake.notified() => {}
            _ = async {
                match sleep_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
    tracing::debug!("scheduler stopped; waiting for attempts in flight");
}

/// Makes one attempt of a due delivery and records it.
async fn attempt(engine: &EngineHandle, job: DueJob) {
    let id = job.delivery_id;
    let loaded = match engine.blocking(move |s| s.load_job(id)).await {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(delivery = %id, error = %e, "loading a delivery failed; it stays queued");
            return;
        }
    };
    let live = loaded
        .as_ref()
        .and_then(|j| j.webhook.as_ref().filter(|w| w.enabled).map(|w| (j, w)));
    let Some((loaded_job, webhook)) = live else {
        // Webhook deleted or disabled, or the event is gone: nothing to send.
        let due_ms = job.due_ms;
        if let Err(e) = engine
            .blocking(move |s| s.cancel_delivery(id, due_ms))
            .await
        {
            tracing::error!(delivery = %id, error = %e, "cancelling a delivery failed");
        }
        return;
    };
    let number = loaded_job.delivery.attempts + 1;
    let (mut record, retry_after) = send(
        &engine.inner.outbound,
        webhook,
        &loaded_job.event,
        id,
        number,
        false,
    )
    .await;
    let next_due_ms = if record.attempt.success {
        None
    } else {
        engine
            .retry_policy()
            .next_delay(number, retry_after, rand::random::<f64>())
            .map(|d| unix_ms(Utc::now()) + u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2))
    };
    record.attempt.next_retry_at =
        next_due_ms.and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64));
    let threshold = engine.threshold();
    let saved = record.clone();
    match engine
        .inner
        .writes
        .run(move |txn| Store::record_attempt_in(txn, &saved, next_due_ms, threshold))
        .await
    {
        Ok(health) => {
            let a = &record.attempt;
            tracing::info!(
                delivery = %id,
                webhook = %a.webhook_id,
                attempt = a.attempt,
                status = a.status_code,
                ms = a.response_time_ms,
                success = a.success,
                error = a.error_class.map(ErrorClass::as_str),
                retry = next_due_ms.is_some(),
                "attempt recorded"
            );
            engine.publish(EngineEvent::AttemptRecorded(record.attempt));
            if let Some(h) = health {
                if h.warning {
                    tracing::warn!(webhook = %h.webhook_id, failures = h.consecutive_failures, "webhook is failing");
                }
                engine.publish(EngineEvent::WebhookHealthChanged(h));
            }
        }
        Err(e) => {
            // The delivery stays in the queue with its old due time and is tried again.
            tracing::error!(delivery = %id, error = %e, "recording an attempt failed");
        }
    }
}

/// Sends one signed delivery and describes the attempt (not yet stored). Also
/// returns the server's `Retry-After` on a 429 or 503.
pub async fn send(
    out: &Outbound,
    webhook: &WebhookRecord,
    event: &EventRecord,
    delivery_id: DeliveryId,
    number: u32,
    test: bool,
) -> (AttemptRecord, Option<Duration>) {
    let body = event.payload.clone();
    let mut headers = BTreeMap::new();
    headers.insert("Content-Type".to_owned(), "application/json".to_owned());
    headers.insert(
        "User-Agent".to_owned(),
        concat!("Orki-Webhooks/", env!("CARGO_PKG_VERSION")).to_owned(),
    );
    headers.insert(
        SIGNATURE_HEADER.to_owned(),
        signature(webhook.verify_token.expose(), body.as_bytes()),
    );
    headers.insert("X-Orki-Event".to_owned(), event.event_type.clone());
    headers.insert("X-Orki-Delivery".to_owned(), delivery_id.to_string());

    let mut request = out.client().post(&webhook.url);
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    let ex = out.exchange(request.body(body)).await;

    let status = ex.status;
    let (error_class, error) = match (&ex.failure, status) {
        (Some((class, message)), _) => (Some(*class), Some(message.clone())),
        (None, Some(s)) if (200..300).contains(&s) => (None, None),
        (None, Some(s)) if (300..400).contains(&s) => (
            Some(ErrorClass::Redirect),
            Some(format!(
                "the endpoint answered HTTP {s} (redirect to {}); redirects are not followed",
                ex.headers
                    .get("location")
                    .map(String::as_str)
                    .unwrap_or("nowhere")
            )),
        ),
        (None, Some(s)) => (
            Some(ErrorClass::Status),
            Some(format!("the endpoint answered HTTP {s}, not 2xx")),
        ),
        (None, None) => (Some(ErrorClass::Connect), Some("no answer".to_owned())),
    };
    let retry_after = match status {
        Some(429 | 503) => ex
            .headers
            .get("retry-after")
            .and_then(|v| parse_retry_after(v, Utc::now())),
        _ => None,
    };
    if let Some(class) = error_class {
        tracing::debug!(url = %url::Url::parse(&webhook.url).map(|u| redacted(&u)).unwrap_or_default(), error = class.as_str(), "delivery attempt failed");
    }
    let response = status.map(|s| ResponseRecord {
        status: s,
        headers: ex.headers,
        body: ex.body,
        body_truncated: ex.body_truncated,
    });
    // The attempt's id carries its time: the log's order and time filters use it.
    let id = AttemptId::generate();
    let record = AttemptRecord {
        attempt: Attempt {
            id,
            delivery_id,
            webhook_id: webhook.id,
            event_id: event.id,
            event_type: event.event_type.clone(),
            attempt: number,
            timestamp: chrono::DateTime::from_timestamp_millis(id.unix_ms() as i64)
                .unwrap_or_else(Utc::now),
            success: error_class.is_none(),
            status_code: status,
            response_time_ms: u64::try_from(ex.elapsed.as_millis()).unwrap_or(u64::MAX),
            error,
            error_class,
            test,
            next_retry_at: None,
        },
        request: RequestRecord {
            url: webhook.url.clone(),
            method: "POST".to_owned(),
            headers,
        },
        response,
    };
    (record, retry_after)
}
