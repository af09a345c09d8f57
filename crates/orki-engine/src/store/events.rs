//! Events: accepting one with its deliveries (in the group commit), reading one.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use redb::ReadableTable;

use super::{HotTables, Store, key_hash, rfc3339, unix_ms};
use crate::ids::{DeliveryId, EventId};
use crate::model::{Accepted, DeliveryRecord, DeliveryState, EventRecord, IdempotencyRecord};
use crate::queue::{Known, QueuedJob};
use crate::store::codec::{decode, encode};
use crate::store::tables::EVENTS;
use crate::{Error, Result};

/// A new event to accept, built and encoded before the writer thread sees it
/// (see [`NewEvent::new`]), so the one writer only checks and writes.
#[derive(Debug)]
pub(crate) struct NewEvent {
    pub(super) event: Arc<EventRecord>,
    pub(super) encoded: Vec<u8>,
    /// `(Idempotency-Key, SHA-256 of the request body)`.
    pub(super) idempotency: Option<(String, String)>,
}

impl NewEvent {
    /// The event of a known `event_type` with the `data` object `data_json`
    /// (already checked to be a JSON object), accepted at `now`.
    #[cfg(test)]
    pub(crate) fn new(
        event_type: &str,
        data_json: &str,
        idempotency: Option<(String, String)>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        Self::keyed(event_type, data_json, idempotency, None, now)
    }

    /// As [`NewEvent::new`], with the `ordering_key` it was posted with.
    pub(crate) fn keyed(
        event_type: &str,
        data_json: &str,
        idempotency: Option<(String, String)>,
        ordering_key: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let id = EventId::generate();
        let event = EventRecord {
            id,
            event_type: event_type.to_owned(),
            created_at: now,
            payload: envelope(id, event_type, now, data_json)?,
            test: false,
            idempotency_key: idempotency.as_ref().map(|(k, _)| k.clone()),
            ordering_key,
        };
        Ok(Self {
            encoded: encode(&event)?,
            event: Arc::new(event),
            idempotency,
        })
    }
}

impl Store {
    /// Accepts an event, in the caller's transaction (the group commit): stores it
    /// and one pending delivery per subscribed, enabled webhook, due now. With an
    /// idempotency key already seen, returns the first result (or a conflict when
    /// the body differs). An error means nothing was written. Also returns the
    /// queued deliveries, with the event, for the in-memory queue.
    pub(crate) fn ingest_in(
        t: &mut HotTables<'_>,
        new: NewEvent,
    ) -> Result<(Accepted, Vec<QueuedJob>)> {
        let NewEvent {
            event,
            encoded,
            idempotency,
        } = new;
        if let Some((key, body_sha)) = &idempotency
            && let Some(v) = t.idempotency.get(key.as_str())?
        {
            let first: IdempotencyRecord = decode(v.value(), "idempotency record")?;
            if &first.body_sha256 != body_sha {
                return Err(Error::IdempotencyConflict(key.clone()));
            }
            let accepted = Accepted {
                id: first.event_id,
                deliveries: first.deliveries,
                replayed: true,
            };
            return Ok((accepted, Vec::new()));
        }
        let subscribed = t.subscribers(&event.event_type)?;
        let subscribed_count = subscribed.len();
        t.events.insert(event.id.0, encoded.as_slice())?;
        let due_ms = unix_ms(event.created_at);
        let key = event.ordering_key.as_deref().map(key_hash);
        let mut jobs = Vec::with_capacity(subscribed.len());
        for (webhook_id, ordered) in subscribed {
            let id = DeliveryId::generate();
            // On an ordered webhook, a keyed event's delivery goes into the
            // due queue only when no earlier one of its key is pending.
            let (ordering, head) = match key.filter(|_| ordered) {
                Some(key) => {
                    let (o, head) = t.chains().place(webhook_id, key, id)?;
                    (Some(o), head)
                }
                None => (None, true),
            };
            let delivery = DeliveryRecord {
                id,
                event_id: event.id,
                webhook_id,
                event_type: event.event_type.clone(),
                created_at: event.created_at,
                attempts: 0,
                state: DeliveryState::Pending,
                due_ms: head.then_some(due_ms),
                test: false,
                ordering,
            };
            t.deliveries
                .insert(delivery.id.0, encode(&delivery)?.as_slice())?;
            if !head {
                continue;
            }
            t.due.insert((due_ms, delivery.id.0), webhook_id.0)?;
            jobs.push(QueuedJob {
                due_ms,
                delivery_id: delivery.id,
                webhook_id,
                known: Some(Known {
                    event: event.clone(),
                    attempt: 1,
                }),
            });
        }
        let count = u32::try_from(subscribed_count).unwrap_or(u32::MAX);
        if let Some((key, body_sha)) = idempotency {
            let record = IdempotencyRecord {
                body_sha256: body_sha,
                event_id: event.id,
                deliveries: count,
                created_at: event.created_at,
            };
            t.idempotency
                .insert(key.as_str(), encode(&record)?.as_slice())?;
        }
        let accepted = Accepted {
            id: event.id,
            deliveries: count,
            replayed: false,
        };
        Ok((accepted, jobs))
    }

    /// One event.
    pub fn get_event(&self, id: EventId) -> Result<Option<EventRecord>> {
        let txn = self.read()?;
        let table = txn.open_table(EVENTS)?;
        table
            .get(id.0)?
            .map(|v| decode(v.value(), "event"))
            .transpose()
    }
}

/// The envelope posted to webhooks; `data_json` is embedded byte for byte.
pub(crate) fn envelope(
    id: EventId,
    event_type: &str,
    at: DateTime<Utc>,
    data_json: &str,
) -> Result<String> {
    let ty = serde_json::to_string(event_type).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(format!(
        r#"{{"id":"{id}","type":{ty},"created_at":"{}","data":{data_json}}}"#,
        rfc3339(at)
    ))
}
