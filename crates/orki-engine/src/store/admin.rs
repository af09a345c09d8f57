//! The admin writes (webhooks, settings, redelivery, replay) and the check
//! of memory against the database. Each runs on a store thread and, once its
//! transaction committed, runs the caller's `after` step (which brings the
//! engine's memory in step: webhook cache, queue, settings), under one lock:
//! the next admin write's transaction starts only after the previous one's
//! `after`, so two writes cannot leave memory in the older one's state, and
//! a caller that goes away (a client that hangs up) cannot stop the step
//! once its job was handed over.

use std::collections::HashSet;

use super::threads::StoreThreads;
use super::{AttemptFilter, Store};
use crate::error::Result;
use crate::ids::{DeliveryId, WebhookId};
use crate::model::{DeliveryRecord, WebhookRecord};
use crate::queue::ReloadPlan;
use crate::secret::Secret;
use crate::settings::Settings;
use crate::sync::Locked;

/// What the database holds that the engine also keeps in memory.
pub(crate) struct StoredState {
    pub(crate) webhooks: Vec<WebhookRecord>,
    pub(crate) settings: Settings,
    pub(crate) ingest_key: Secret,
    /// The due deliveries, read only when the queue said it holds all of them
    /// (the set it holds is then passed along).
    pub(crate) due: Option<(HashSet<DeliveryId>, Vec<DeliveryId>)>,
}

impl StoreThreads {
    /// Runs an admin write in the admin-write order.
    async fn admin<T: Send + 'static>(
        &self,
        write: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let order = self.admin_order();
        self.run(move |s| {
            let _order = order.locked();
            write(s)
        })
        .await
    }

    /// Changes the stored settings: `change` edits them and says whether a
    /// fresh ingest key is wanted (or refuses, and nothing is written). When
    /// nothing changed, nothing is written and `after` does not run; it gets
    /// the fresh key otherwise.
    pub(crate) async fn change_settings(
        &self,
        change: impl FnOnce(&mut Settings) -> Result<bool> + Send + 'static,
        after: impl FnOnce(Option<Secret>) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        self.admin(move |s| {
            let mut stored = s.load_settings()?;
            let before = stored.clone();
            let regenerate = change(&mut stored)?;
            if stored == before && !regenerate {
                return Ok(());
            }
            after(s.save_settings(&stored, regenerate)?)
        })
        .await
    }

    /// Saves a new webhook.
    pub(crate) async fn insert_webhook(
        &self,
        webhook: WebhookRecord,
        after: impl FnOnce(WebhookRecord) + Send + 'static,
    ) -> Result<()> {
        self.admin(move |s| {
            s.insert_webhook(&webhook)?;
            after(webhook);
            Ok(())
        })
        .await
    }

    /// Changes a webhook (`change` may refuse, and nothing is written);
    /// disabling it cancels its pending deliveries.
    pub(crate) async fn update_webhook(
        &self,
        id: WebhookId,
        change: impl FnOnce(&mut WebhookRecord) -> Result<()> + Send + 'static,
        after: impl FnOnce(&WebhookRecord) + Send + 'static,
    ) -> Result<WebhookRecord> {
        self.admin(move |s| {
            let updated = s.update_webhook(id, change)?;
            after(&updated);
            Ok(updated)
        })
        .await
    }

    /// Deletes a webhook and cancels its pending deliveries.
    pub(crate) async fn delete_webhook(
        &self,
        id: WebhookId,
        after: impl FnOnce() + Send + 'static,
    ) -> Result<()> {
        self.admin(move |s| {
            s.delete_webhook(id)?;
            after();
            Ok(())
        })
        .await
    }

    /// Queues a delivery for an attempt at `now_ms`, whatever its state;
    /// `after` gets it and the due time it had.
    pub(crate) async fn redeliver(
        &self,
        id: DeliveryId,
        now_ms: u64,
        after: impl FnOnce(&DeliveryRecord, Option<u64>) + Send + 'static,
    ) -> Result<DeliveryRecord> {
        self.admin(move |s| {
            let (delivery, old_due_ms) = s.redeliver(id, now_ms)?;
            after(&delivery, old_due_ms);
            Ok(delivery)
        })
        .await
    }

    /// A webhook's given-up deliveries matching `filter`; with `requeue`
    /// (start, pace), queued again and, if there were any, handed to `after`.
    pub(crate) async fn replay_failed(
        &self,
        id: WebhookId,
        filter: AttemptFilter,
        requeue: Option<(u64, u64)>,
        after: impl FnOnce(&[DeliveryRecord]) + Send + 'static,
    ) -> Result<u64> {
        self.admin(move |s| {
            let chosen = s.replay_failed(id, &filter, requeue)?;
            if requeue.is_some() && !chosen.is_empty() {
                after(&chosen);
            }
            Ok(chosen.len() as u64)
        })
        .await
    }

    /// Reads what memory should agree with, in the admin-write order (so no
    /// admin write is half-applied meanwhile), and hands it to `compare`.
    /// `held` says which deliveries the queue holds, if it holds them all.
    pub(crate) async fn compare_with_memory<T: Send + 'static>(
        &self,
        held: impl FnOnce() -> Option<(HashSet<DeliveryId>, HashSet<WebhookId>)> + Send + 'static,
        compare: impl FnOnce(StoredState) -> T + Send + 'static,
    ) -> Result<T> {
        self.admin(move |s| {
            let due = match held() {
                Some((known, skip)) => {
                    let plan = ReloadPlan {
                        limit: usize::MAX,
                        known,
                        skip,
                    };
                    let (due, _) = s.due_jobs(&plan)?;
                    Some((plan.known, due.iter().map(|j| j.delivery_id).collect()))
                }
                None => None,
            };
            Ok(compare(StoredState {
                webhooks: s.list_webhooks()?,
                settings: s.load_settings()?,
                ingest_key: s.credentials()?.ingest_key,
                due,
            }))
        })
        .await
    }
}
