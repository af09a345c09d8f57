//! Accepting events, and sending deliveries again (redelivery, replay).

use chrono::Utc;
use serde::Serialize;

use super::EngineHandle;
use crate::event_types;
use crate::ids::{DeliveryId, WebhookId};
use crate::model::{Accepted, DeliveryRecord};
use crate::query::ReplayRequest;
use crate::queue::QueuedJob;
use crate::store::{HeldDeliveries, NewEvent, Store};
use crate::{Error, Result};

/// The answer of a replay or its dry run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReplayResult {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Deliveries replayed (or that would be).
    pub count: u64,
    /// Time between two replayed deliveries.
    pub pace_ms: u64,
}

/// Time between two replayed deliveries, so a replay does not flood the endpoint.
pub const REPLAY_PACE_MS: u64 = 100;

impl EngineHandle {
    /// Accepts an event: returns only after it and its deliveries are committed.
    /// `data_json` must be a JSON object (the HTTP layer checks it).
    pub async fn ingest(
        &self,
        event_type: String,
        data_json: String,
        idempotency: Option<(String, String)>,
        ordering_key: Option<String>,
    ) -> Result<Accepted> {
        if !event_types::is_known(&event_type) {
            return Err(Error::UnknownEventType(event_type));
        }
        // Built and encoded here, on the async threads; the writer only writes.
        if let Some(key) = &ordering_key {
            validate_ordering_key(key)?;
        }
        let new = NewEvent::keyed(
            &event_type,
            &data_json,
            idempotency,
            ordering_key,
            Utc::now(),
        )?;
        // The writer queues the jobs right after the commit, so a client that
        // hangs up before its answer cannot strand them.
        let queue = self.inner.queue.clone();
        self.inner
            .writes
            .ingest(new, move |jobs| queue.push(jobs))
            .await
    }

    /// Queues one delivery for a new attempt at once, whatever its state.
    pub async fn redeliver(&self, id: DeliveryId) -> Result<DeliveryRecord> {
        let now_ms = crate::store::unix_ms(Utc::now());
        let queue = self.inner.queue.clone();
        let delivery = self
            .storage()
            .redeliver(id, now_ms, move |delivery, old_due_ms| {
                queue.requeue(
                    old_due_ms,
                    QueuedJob {
                        due_ms: now_ms,
                        delivery_id: id,
                        webhook_id: delivery.webhook_id,
                        known: None,
                    },
                )
            })
            .await?;
        tracing::info!(delivery = %id, "redelivery queued");
        Ok(delivery)
    }

    /// Gives a pending delivery up by hand (a stuck one holding back its
    /// ordering key): it counts as given up, and the next of its key goes.
    pub async fn skip_delivery(&self, id: DeliveryId) -> Result<DeliveryRecord> {
        let now_ms = crate::store::unix_ms(Utc::now());
        let queue = self.inner.queue.clone();
        let delivery = self
            .inner
            .writes
            .run_then(
                move |t| Store::skip_in(t, id, now_ms),
                move |(delivery, old_due_ms, next)| {
                    if let Some(due_ms) = old_due_ms {
                        queue.drop_job(delivery.webhook_id, id, due_ms);
                    }
                    queue.push(next);
                    delivery
                },
            )
            .await?;
        tracing::info!(delivery = %id, webhook = %delivery.webhook_id, "delivery skipped by hand");
        Ok(delivery)
    }

    /// The keys of a webhook held back behind a failing delivery (at most 100).
    pub async fn held_deliveries(&self, id: WebhookId) -> Result<HeldDeliveries> {
        if self.storage().get_webhook(id).await?.is_none() {
            return Err(Error::not_found("webhook", id));
        }
        self.storage().held_deliveries(id, 100).await
    }

    /// Replays a webhook's given-up deliveries (optionally by event type and time
    /// range), paced [`REPLAY_PACE_MS`] apart; with `dry_run`, only counts them.
    pub async fn replay_failed(
        &self,
        id: WebhookId,
        request: ReplayRequest,
    ) -> Result<ReplayResult> {
        let filter = request.filter()?;
        let dry_run = request.dry_run;
        let webhook = self
            .storage()
            .get_webhook(id)
            .await?
            .ok_or_else(|| Error::not_found("webhook", id))?;
        if !dry_run && !webhook.enabled {
            return Err(Error::Conflict {
                code: "webhook_disabled",
                message: format!("webhook {id} is disabled; enable it before replaying"),
            });
        }
        let requeue = (!dry_run).then(|| (crate::store::unix_ms(Utc::now()), REPLAY_PACE_MS));
        let queue = self.inner.queue.clone();
        let count = self
            .storage()
            .replay_failed(id, filter, requeue, move |chosen| {
                queue.push(chosen.iter().filter_map(|d| {
                    Some(QueuedJob {
                        due_ms: d.due_ms?,
                        delivery_id: d.id,
                        webhook_id: d.webhook_id,
                        known: None,
                    })
                }));
                tracing::info!(webhook = %id, count = chosen.len(), "failed deliveries replayed");
            })
            .await?;
        Ok(ReplayResult {
            dry_run,
            count,
            pace_ms: REPLAY_PACE_MS,
        })
    }
}

/// The most characters an `ordering_key` has.
const MAX_ORDERING_KEY_CHARS: usize = 200;

fn validate_ordering_key(key: &str) -> Result<()> {
    let n = key.chars().count();
    if n == 0 || n > MAX_ORDERING_KEY_CHARS || key.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_ordering_key",
            format!(
                "ordering_key must be a string of 1 to {MAX_ORDERING_KEY_CHARS} characters without control characters (got {n})"
            ),
        ));
    }
    Ok(())
}
