//! The delivery scheduler: takes due deliveries from the in-memory queue (see
//! [`crate::queue`]) within the concurrency limits (overall and per webhook, so
//! a slow endpoint never holds up the others), makes each attempt, and records
//! it with the next step of its delivery through the group commit.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::attempt::send;
use crate::engine::{EngineEvent, EngineHandle};
use crate::model::{AttemptRecord, ErrorClass, EventRecord, WebhookRecord};
use crate::queue::{QueuedJob, RELOAD_EVERY};
use crate::store::codec::encode;
use crate::store::unix_ms;

/// Runs until the engine's token is cancelled. Attempt tasks go on `tasks`, so
/// shutdown waits for them.
pub(crate) async fn run(engine: EngineHandle, tasks: TaskTracker) {
    let cancel = engine.inner.cancel.clone();
    let queue = engine.inner.queue.clone();
    loop {
        let now_ms = unix_ms(Utc::now());
        if let Some(plan) = queue.reload_wanted(now_ms) {
            match engine.storage().due_jobs(plan).await {
                Ok((jobs, complete)) => {
                    tracing::debug!(entries = jobs.len(), complete, "due queue read");
                    queue.reload(jobs, complete);
                }
                Err(e) => {
                    queue.reload_failed();
                    tracing::error!(error = %e, "reading the due queue failed; trying again in 1 s")
                }
            }
        }
        // While an attempt's record waits for the store, none starts: its
        // record could not be written either.
        let (jobs, next_due) = if queue.sends_held() {
            (Vec::new(), None)
        } else {
            queue.take(unix_ms(Utc::now()))
        };
        for job in jobs {
            let engine = engine.clone();
            tasks.spawn(async move { attempt(&engine, job).await });
        }
        let mut sleep_until = next_due.map(|due_ms| {
            let wait = due_ms.saturating_sub(unix_ms(Utc::now()));
            Instant::now() + Duration::from_millis(wait)
        });
        if queue.spilled() {
            let soon = Instant::now() + RELOAD_EVERY;
            sleep_until = Some(sleep_until.map_or(soon, |t| t.min(soon)));
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = queue.changed() => {}
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

/// What one attempt sends: the event, the webhook, the attempt's number.
type Prepared = (Arc<EventRecord>, Arc<WebhookRecord>, u32);

/// Makes one attempt of a due delivery and records it.
async fn attempt(engine: &EngineHandle, job: QueuedJob) {
    let queue = &engine.inner.queue;
    let id = job.delivery_id;
    let Some((event, webhook, number)) = prepare(engine, &job).await else {
        queue.request_done(job.webhook_id);
        queue.recorded(id);
        return;
    };
    let (mut record, retry_after) =
        send(&engine.inner.outbound, &webhook, &event, id, number, false).await;
    // The slot is free once the endpoint answered; the delivery itself stays
    // taken until its attempt is recorded.
    queue.request_done(job.webhook_id);
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
    let record = Arc::new(record);
    let recorded = record_until_stored(engine, &record, next_due_ms, threshold).await;
    queue.recorded(id);
    match recorded {
        Ok(health) => {
            if let Some(due_ms) = next_due_ms {
                queue.push([QueuedJob {
                    due_ms,
                    delivery_id: id,
                    webhook_id: job.webhook_id,
                    known: None,
                }]);
            }
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
            engine.publish(EngineEvent::AttemptRecorded(record.attempt.clone()));
            if let Some(h) = health {
                if h.warning {
                    tracing::warn!(webhook = %h.webhook_id, failures = h.consecutive_failures, "webhook is failing");
                }
                engine.publish(EngineEvent::WebhookHealthChanged(h));
            }
        }
        Err(e) => {
            // The delivery stays in the table with its old due time; the next
            // read of the table brings it back.
            tracing::error!(delivery = %id, error = %e, "recording an attempt failed");
            queue.mark_spilled();
        }
    }
}

/// Records an attempt with the next step of its delivery. The request went
/// out, so its record must reach the log: while the store cannot write (a
/// full disk), it is kept here and written again, every 100 ms growing to
/// 5 s, until it is stored or the engine stops; meanwhile no new attempt
/// starts (it could not be recorded either) and the delivery stays taken,
/// so it is not sent again. Encoded here, on the async threads, so the one
/// writer thread only writes.
async fn record_until_stored(
    engine: &EngineHandle,
    record: &Arc<AttemptRecord>,
    next_due_ms: Option<u64>,
    threshold: u32,
) -> crate::Result<Option<crate::store::Health>> {
    let queue = &engine.inner.queue;
    let mut wait = Duration::from_millis(100);
    let mut held = false;
    let result = loop {
        let written = async {
            let encoded = encode(&**record)?;
            let record = record.clone();
            engine
                .inner
                .writes
                .record_attempt(record, encoded, next_due_ms, threshold)
                .await
        }
        .await;
        match written {
            Err(crate::Error::Storage(e)) if !engine.inner.cancel.is_cancelled() => {
                if !held {
                    tracing::error!(delivery = %record.attempt.delivery_id, error = %e, "recording an attempt failed; it is kept and written again, and no new attempt starts until it is");
                    queue.hold_sends();
                    held = true;
                }
                tokio::select! {
                    _ = engine.inner.cancel.cancelled() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => break other,
        }
    };
    if held {
        queue.release_sends();
        if result.is_ok() {
            tracing::info!(delivery = %record.attempt.delivery_id, "an attempt kept in memory was recorded");
        }
    }
    result
}

/// What the attempt of `job` sends, or `None` when there is nothing to send: a
/// delivery the queue knows pending, to a webhook known enabled, goes at once;
/// anything else is read from the store and must still be pending at the same
/// due time (a stale copy is dropped). A delivery whose webhook is gone or
/// disabled is cancelled.
async fn prepare(engine: &EngineHandle, job: &QueuedJob) -> Option<Prepared> {
    let cached = engine.cached_webhook(job.webhook_id);
    if let (Some(known), Some(webhook)) = (&job.known, &cached)
        && webhook.enabled
    {
        return Some((known.event.clone(), webhook.clone(), known.attempt));
    }
    let id = job.delivery_id;
    let loaded = match engine.storage().load_job(id).await {
        Ok(loaded) => loaded?,
        Err(e) => {
            tracing::error!(delivery = %id, error = %e, "loading a delivery failed; it stays queued");
            engine.inner.queue.mark_spilled();
            return None;
        }
    };
    if !loaded.delivery.is_due_at(job.due_ms) {
        return None;
    }
    match loaded.webhook {
        Some(webhook) if webhook.enabled => Some((
            Arc::new(loaded.event),
            Arc::new(webhook),
            loaded.delivery.attempts + 1,
        )),
        _ => {
            let due_ms = job.due_ms;
            if let Err(e) = engine.storage().cancel_delivery(id, due_ms).await {
                tracing::error!(delivery = %id, error = %e, "cancelling a delivery failed");
            }
            None
        }
    }
}
