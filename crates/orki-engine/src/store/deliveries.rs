//! Deliveries and the due queue: what is due, loading a job, cancelling,
//! redelivery and replay.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::{AttemptFilter, Store, get_record};
use crate::ids::{DeliveryId, EventId, WebhookId};
use crate::model::{DeliveryRecord, DeliveryState, EventRecord, WebhookRecord};
use crate::queue::{CACHED_EVENT_BYTES, Known, QueuedJob, ReloadPlan, footprint};
use crate::store::codec::{decode, encode};
use crate::store::tables::{DELIVERIES, DUE, EVENTS, FAILED_DELIVERIES, ORDER_WAITING, WEBHOOKS};
use crate::{Error, Result};

/// Everything needed to make one attempt.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// The delivery.
    pub delivery: DeliveryRecord,
    /// Its event (with the payload to send).
    pub event: EventRecord,
    /// Its webhook, unless it was deleted.
    pub webhook: Option<WebhookRecord>,
}

impl Store {
    /// The earliest `plan.limit` entries of the due queue, and whether that was
    /// all, read in one transaction. Each delivery not in `plan.known` comes
    /// with what its attempt sends (its event, read once however many
    /// deliveries share it, and its attempt number) while the events fit in
    /// [`CACHED_EVENT_BYTES`]; past that, or when its records do not agree with
    /// the entry, without.
    pub(crate) fn due_jobs(&self, plan: &ReloadPlan) -> Result<(Vec<QueuedJob>, bool)> {
        let txn = self.read()?;
        let due = txn.open_table(DUE)?;
        let deliveries = txn.open_table(DELIVERIES)?;
        let events = txn.open_table(EVENTS)?;
        let mut read: HashMap<EventId, Option<Arc<EventRecord>>> = HashMap::new();
        let mut event_bytes = 0;
        let mut out = Vec::with_capacity(plan.limit.min(100_000));
        for entry in due.iter()? {
            if out.len() >= plan.limit {
                return Ok((out, false));
            }
            let (k, v) = entry?;
            let (due_ms, delivery) = k.value();
            if plan.skip.contains(&WebhookId(v.value())) {
                continue;
            }
            let mut job = QueuedJob {
                due_ms,
                delivery_id: DeliveryId(delivery),
                webhook_id: WebhookId(v.value()),
                known: None,
            };
            if event_bytes < CACHED_EVENT_BYTES && !plan.known.contains(&job.delivery_id) {
                let record: Option<DeliveryRecord> = get_record(&deliveries, delivery, "delivery")?;
                if let Some(d) = record
                    && d.is_due_at(due_ms)
                {
                    let event = match read.entry(d.event_id) {
                        Entry::Occupied(o) => o.get().clone(),
                        Entry::Vacant(slot) => {
                            let event = get_record::<EventRecord>(&events, d.event_id.0, "event")?
                                .map(Arc::new);
                            event_bytes += event.as_deref().map_or(0, footprint);
                            slot.insert(event).clone()
                        }
                    };
                    job.known = event.map(|event| Known {
                        event,
                        attempt: d.attempts + 1,
                    });
                }
            }
            out.push(job);
        }
        Ok((out, true))
    }

    /// The delivery, its event and its webhook.
    pub(crate) fn load_job(&self, id: DeliveryId) -> Result<Option<Job>> {
        let txn = self.read()?;
        let Some(delivery) =
            get_record::<DeliveryRecord>(&txn.open_table(DELIVERIES)?, id.0, "delivery")?
        else {
            return Ok(None);
        };
        let Some(event) =
            get_record::<EventRecord>(&txn.open_table(EVENTS)?, delivery.event_id.0, "event")?
        else {
            return Ok(None);
        };
        let webhook = get_record::<WebhookRecord>(
            &txn.open_table(WEBHOOKS)?,
            delivery.webhook_id.0,
            "webhook",
        )?;
        Ok(Some(Job {
            delivery,
            event,
            webhook,
        }))
    }

    /// Takes a delivery off the queue without an attempt (its webhook is gone or
    /// disabled, or its event was lost).
    pub(crate) fn cancel_delivery(&self, id: DeliveryId, due_ms: u64) -> Result<()> {
        let txn = self.write()?;
        txn.open_table(DUE)?.remove((due_ms, id.0))?;
        {
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let found: Option<DeliveryRecord> = get_record(&deliveries, id.0, "delivery")?;
            if let Some(mut d) = found {
                d.state = DeliveryState::Cancelled;
                d.due_ms = None;
                deliveries.insert(id.0, encode(&d)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Queues a delivery for an attempt now, whatever its state (pending, succeeded,
    /// failed or cancelled). Its webhook must exist and be enabled. Also returns
    /// the due time it had (its entry in the queue until now), if any.
    pub(crate) fn redeliver(
        &self,
        id: DeliveryId,
        now_ms: u64,
    ) -> Result<(DeliveryRecord, Option<u64>)> {
        let txn = self.write()?;
        let delivery = {
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let mut delivery: DeliveryRecord = match deliveries.get(id.0)? {
                Some(v) => decode(v.value(), "delivery")?,
                None => return Err(Error::not_found("delivery", id)),
            };
            if delivery.test {
                return Err(Error::invalid(
                    "test_delivery",
                    "test deliveries are not redelivered; send a new test event instead",
                ));
            }
            let webhook: Option<WebhookRecord> =
                get_record(&txn.open_table(WEBHOOKS)?, delivery.webhook_id.0, "webhook")?;
            match webhook {
                None => {
                    return Err(Error::Conflict {
                        code: "webhook_deleted",
                        message: format!("webhook {} was deleted", delivery.webhook_id),
                    });
                }
                Some(w) if !w.enabled => {
                    return Err(Error::Conflict {
                        code: "webhook_disabled",
                        message: format!("webhook {} is disabled; enable it first", w.id),
                    });
                }
                Some(w) if w.is_paused() => {
                    return Err(Error::Conflict {
                        code: "webhook_paused",
                        message: format!(
                            "webhook {} is paused; resume it first (its held deliveries then go out too)",
                            w.id
                        ),
                    });
                }
                Some(_) => {}
            }
            if delivery.is_waiting() {
                return Err(Error::Conflict {
                    code: "delivery_held",
                    message: format!(
                        "delivery {id} waits behind an earlier delivery with the same ordering key; skip that one to let this one go"
                    ),
                });
            }
            let old_due_ms = delivery.due_ms;
            requeue_at(&txn, &mut delivery, now_ms)?;
            deliveries.insert(id.0, encode(&delivery)?.as_slice())?;
            (delivery, old_due_ms)
        };
        txn.commit()?;
        Ok(delivery)
    }

    /// The given-up deliveries of a webhook, optionally narrowed by event type and by
    /// creation time (Unix ms, inclusive). With `requeue_from_ms`, they are queued
    /// again, `pace_ms` apart from that time on, so the endpoint is not flooded.
    pub(crate) fn replay_failed(
        &self,
        webhook: WebhookId,
        filter: &AttemptFilter,
        requeue: Option<(u64, u64)>,
    ) -> Result<Vec<DeliveryRecord>> {
        let txn = self.write()?;
        let chosen = {
            let lo = filter.from_ms.map_or(0, |ms| DeliveryId::floor_at(ms).0);
            let hi = filter
                .to_ms
                .map_or(u128::MAX, |ms| DeliveryId::floor_at(ms.saturating_add(1)).0);
            let failed = txn.open_table(FAILED_DELIVERIES)?;
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let mut chosen = Vec::new();
            if lo < hi {
                for entry in failed.range((webhook.0, lo)..(webhook.0, hi))? {
                    let (k, _) = entry?;
                    let id = k.value().1;
                    let Some(v) = deliveries.get(id)? else {
                        continue;
                    };
                    let d: DeliveryRecord = decode(v.value(), "delivery")?;
                    if filter
                        .event_type
                        .as_ref()
                        .is_none_or(|t| *t == d.event_type)
                    {
                        chosen.push(d);
                    }
                }
            }
            drop(failed);
            if let Some((start_ms, pace_ms)) = requeue {
                for (i, d) in chosen.iter_mut().enumerate() {
                    requeue_at(&txn, d, start_ms + i as u64 * pace_ms)?;
                    deliveries.insert(d.id.0, encode(&*d)?.as_slice())?;
                }
            }
            chosen
        };
        if requeue.is_some() {
            txn.commit()?;
        }
        Ok(chosen)
    }

    /// Deliveries waiting (queued, retrying or held), per webhook; of `only`
    /// when given. One scan of the due queue.
    pub(crate) fn pending_by_webhook(
        &self,
        only: Option<WebhookId>,
    ) -> Result<HashMap<WebhookId, u64>> {
        let txn = self.read()?;
        let due = txn.open_table(DUE)?;
        let mut out: HashMap<WebhookId, u64> = HashMap::new();
        for entry in due.iter()? {
            let (_, v) = entry?;
            let w = WebhookId(v.value());
            if only.is_none_or(|o| o == w) {
                *out.entry(w).or_default() += 1;
            }
        }
        let waiting = txn.open_table(ORDER_WAITING)?;
        let lines = match only {
            Some(w) => waiting.range((w.0, 0, 0)..=(w.0, u128::MAX, u64::MAX))?,
            None => waiting.range::<(u128, u128, u64)>(..)?,
        };
        for entry in lines {
            let (k, _) = entry?;
            *out.entry(WebhookId(k.value().0)).or_default() += 1;
        }
        Ok(out)
    }

    /// Deliveries pending (due or waiting behind their key), for health and tests.
    pub(crate) fn pending_count(&self) -> Result<u64> {
        let txn = self.read()?;
        Ok(txn.open_table(DUE)?.len()? + txn.open_table(ORDER_WAITING)?.len()?)
    }
}

/// Puts a delivery back in the due queue, due at `due_ms`.
fn requeue_at(txn: &WriteTransaction, delivery: &mut DeliveryRecord, due_ms: u64) -> Result<()> {
    let mut due = txn.open_table(DUE)?;
    if let Some(old) = delivery.due_ms.take() {
        due.remove((old, delivery.id.0))?;
    }
    if delivery.state == DeliveryState::Failed {
        txn.open_table(FAILED_DELIVERIES)?
            .remove((delivery.webhook_id.0, delivery.id.0))?;
    }
    due.insert((due_ms, delivery.id.0), delivery.webhook_id.0)?;
    delivery.due_ms = Some(due_ms);
    delivery.state = DeliveryState::Pending;
    Ok(())
}

/// Removes a webhook's deliveries from the due queue (and its keys' lines)
/// and marks them cancelled.
pub(super) fn cancel_pending(txn: &WriteTransaction, webhook: WebhookId) -> Result<()> {
    super::order::cancel_lines(txn, webhook)?;
    let mut due = txn.open_table(DUE)?;
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let mut doomed = Vec::new();
    for entry in due.iter()? {
        let (k, v) = entry?;
        if v.value() == webhook.0 {
            doomed.push(k.value());
        }
    }
    let mut failed = txn.open_table(FAILED_DELIVERIES)?;
    let given_up: Vec<(u128, u128)> = failed
        .range((webhook.0, 0)..=(webhook.0, u128::MAX))?
        .map(|e| e.map(|(k, _)| k.value()))
        .collect::<std::result::Result<_, _>>()?;
    for key in given_up {
        failed.remove(key)?;
    }
    for key in doomed {
        due.remove(key)?;
        let found: Option<DeliveryRecord> = get_record(&deliveries, key.1, "delivery")?;
        if let Some(mut d) = found {
            d.state = DeliveryState::Cancelled;
            d.due_ms = None;
            deliveries.insert(key.1, encode(&d)?.as_slice())?;
        }
    }
    Ok(())
}
