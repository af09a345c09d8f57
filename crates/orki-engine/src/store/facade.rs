//! The business-level, async side of the store that the engine, the
//! scheduler and retention call: one method per question or change, run on
//! the store's own threads. Callers never see a `&Store` or a transaction.
//! (The admin writes, which also update memory, are in `store::admin`;
//! ingest and attempt records go through [`crate::store::commit::GroupCommit`].)

use std::collections::HashSet;
use std::sync::Arc;

use super::threads::StoreThreads;
use super::{AttemptFilter, Credentials, Job};
use crate::error::Result;
use crate::ids::{AttemptId, DeliveryId, WebhookId};
use crate::model::{
    Attempt, AttemptDetail, AttemptRecord, DeliveryRecord, EventRecord, WebhookRecord,
};
use crate::queue::{QueuedJob, ReloadPlan};
use crate::settings::Settings;

impl StoreThreads {
    /// What the engine starts from: credentials, settings and every webhook.
    pub(crate) async fn starting_state(
        &self,
    ) -> Result<(Credentials, Settings, Vec<WebhookRecord>)> {
        self.run(|s| Ok((s.credentials()?, s.load_settings()?, s.list_webhooks()?)))
            .await
    }

    /// The settings as stored.
    pub(crate) async fn load_settings(&self) -> Result<Settings> {
        self.run(|s| s.load_settings()).await
    }

    /// One webhook as stored.
    pub(crate) async fn get_webhook(&self, id: WebhookId) -> Result<Option<WebhookRecord>> {
        self.run(move |s| s.get_webhook(id)).await
    }

    /// Every webhook as stored.
    pub(crate) async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>> {
        self.run(|s| s.list_webhooks()).await
    }

    /// A page of the attempt log, newest first, older than `before`.
    pub(crate) async fn list_attempts(
        &self,
        filter: AttemptFilter,
        before: Option<AttemptId>,
        limit: usize,
    ) -> Result<Vec<Attempt>> {
        self.run(move |s| s.list_attempts(&filter, before, limit))
            .await
    }

    /// One attempt with its request and response.
    pub(crate) async fn get_attempt(&self, id: AttemptId) -> Result<Option<AttemptDetail>> {
        self.run(move |s| s.get_attempt(id)).await
    }

    /// Stores a test event, its delivery and its one attempt.
    pub(crate) async fn record_test(
        &self,
        event: EventRecord,
        delivery: DeliveryRecord,
        record: AttemptRecord,
    ) -> Result<()> {
        self.run(move |s| s.record_test(&event, &delivery, &record))
            .await
    }

    /// Deliveries waiting, per webhook (of `only` when given).
    pub(crate) async fn pending_by_webhook(
        &self,
        only: Option<WebhookId>,
    ) -> Result<std::collections::HashMap<WebhookId, u64>> {
        self.run(move |s| s.pending_by_webhook(only)).await
    }

    /// Deliveries waiting for an attempt.
    pub(crate) async fn pending_count(&self) -> Result<u64> {
        self.run(|s| s.pending_count()).await
    }

    /// The due queue's first entries, those not known read in full (and whether that was all).
    pub(crate) async fn due_jobs(&self, plan: ReloadPlan) -> Result<(Vec<QueuedJob>, bool)> {
        self.run(move |s| s.due_jobs(&plan)).await
    }

    /// A delivery with its event and webhook, to send.
    pub(crate) async fn load_job(&self, id: DeliveryId) -> Result<Option<Job>> {
        self.run(move |s| s.load_job(id)).await
    }

    /// Gives up a delivery whose webhook is gone or disabled.
    pub(crate) async fn cancel_delivery(&self, id: DeliveryId, due_ms: u64) -> Result<()> {
        self.run(move |s| s.cancel_delivery(id, due_ms)).await
    }

    /// The keys of a webhook held back behind a failing delivery.
    pub(crate) async fn held_deliveries(
        &self,
        webhook: crate::ids::WebhookId,
        limit: usize,
    ) -> Result<crate::store::HeldDeliveries> {
        self.run(move |s| s.held_deliveries(webhook, limit)).await
    }

    /// The bytes the database file holds in use.
    pub(crate) async fn used_bytes(&self) -> Result<u64> {
        self.run(|s| s.used_bytes()).await
    }

    /// Removes up to `batch` attempts older than `cutoff_ms`.
    pub(crate) async fn prune_attempts(
        &self,
        cutoff_ms: u64,
        batch: usize,
    ) -> Result<(u64, Option<u64>)> {
        self.run(move |s| s.prune_attempts(cutoff_ms, batch)).await
    }

    /// Removes up to `batch` finished deliveries older than `cutoff_ms`, after `after`.
    pub(crate) async fn prune_deliveries(
        &self,
        cutoff_ms: u64,
        batch: usize,
        after: u128,
    ) -> Result<(u64, Option<u128>)> {
        self.run(move |s| s.prune_deliveries(cutoff_ms, batch, after))
            .await
    }

    /// The events a pending delivery still needs.
    pub(crate) async fn pending_event_ids(&self) -> Result<HashSet<u128>> {
        self.run(|s| s.pending_event_ids()).await
    }

    /// Removes up to `batch` events older than `cutoff_ms`, after `after`, except `keep`.
    pub(crate) async fn prune_events(
        &self,
        cutoff_ms: u64,
        batch: usize,
        after: u128,
        keep: Arc<HashSet<u128>>,
    ) -> Result<(u64, Option<u128>)> {
        self.run(move |s| s.prune_events(cutoff_ms, batch, after, &keep))
            .await
    }
}
