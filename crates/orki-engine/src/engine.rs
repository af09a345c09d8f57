//! [`EngineHandle`]: every operation of the product, the one API that the
//! HTTP layer and the desktop shell both call ([`crate::Engine::start`] builds
//! it and starts the workers on it).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use chrono::Utc;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::{Host, Url};

use crate::event_types::{self, EventType};
use crate::handshake;
use crate::ids::{AttemptId, DeliveryId, EventId, WebhookId};
use crate::model::redacted;
use crate::model::{
    Accepted, Attempt, AttemptDetail, DeliveryRecord, DeliveryState, EventRecord, RequestView,
    Webhook, WebhookRecord,
};
use crate::outbound::Outbound;
use crate::query::{AttemptQuery, ReplayRequest};
use crate::queue::{Queue, QueuedJob};
use crate::retry::RetryPolicy;
use crate::retry::format_duration;
use crate::settings::Settings;
use crate::store::commit::GroupCommit;
use crate::store::threads::StoreThreads;
use crate::store::{Credentials, Health, NewEvent, StoredState};
use crate::sync::Shared;
use crate::{Config, Error, Result, Secret, Store};
use serde_json::{Map, Value};

/// Something that happened in the engine, for live views.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EngineEvent {
    /// An attempt was recorded in the delivery log.
    AttemptRecorded(Attempt),
    /// A webhook's consecutive-failure count changed.
    WebhookHealthChanged(Health),
    /// Retention removed old records.
    Pruned {
        /// Attempts removed.
        attempts: u64,
        /// Events (with their finished deliveries) removed.
        events: u64,
    },
}

/// The settings as the admin sees them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SettingsView {
    /// Where the listener is bound now.
    pub listen_address: String,
    /// The stored port (used at the next start).
    pub listen_port: u16,
    /// The stored port differs from the one in use: restart to apply it.
    pub restart_required: bool,
    /// Waits between retries, e.g. `["5s", "30s", "2m"]`.
    pub retry_schedule: Vec<String>,
    /// Consecutive failures at which a webhook shows a warning.
    pub warning_threshold: u32,
    /// Days attempts and events are kept.
    pub retention_days: u32,
    /// Size cap of the database file, if any.
    pub max_database_mb: Option<u64>,
    /// Plain `http://` to loopback is accepted (in force now: the stored
    /// setting, or `--allow-http-localhost`).
    pub allow_http_localhost: bool,
    /// `--allow-http-localhost` was given: plain `http://` to loopback is
    /// accepted for this run whatever is stored; a `PATCH` changes only the
    /// stored setting, used once the flag is gone.
    pub allow_http_localhost_from_flag: bool,
    /// The key local tools post events with.
    pub ingest_key: String,
    /// The ingest key comes from `ORKI_INGEST_KEY` (not regenerable here).
    pub ingest_key_from_env: bool,
}

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

/// A new webhook as the admin enters it.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `https://…` (or `http://` to loopback when allowed), at most 2048
    /// characters, without a `#fragment`.
    #[schema(format = "uri", pattern = "^https://[^#]+$", max_length = 2048)]
    pub url: String,
    /// The shared secret: 1–512 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 512,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub verify_token: String,
    /// Event types to subscribe to (at least one).
    #[schema(value_type = Vec<crate::event_types::EventTypeName>, min_items = 1)]
    pub events: Vec<String>,
    /// Starts enabled unless `false`.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Changes to a webhook; absent fields stay as they are.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    /// A new URL (re-runs the handshake).
    #[schema(format = "uri", pattern = "^https://[^#]+$", max_length = 2048)]
    pub url: Option<String>,
    /// A new verify token (re-runs the handshake).
    #[schema(
        min_length = 1,
        max_length = 512,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub verify_token: Option<String>,
    /// New subscriptions (at least one).
    #[schema(value_type = Option<Vec<crate::event_types::EventTypeName>>, min_items = 1)]
    pub events: Option<Vec<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// One page of the delivery log.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptPage {
    /// Attempts, newest first.
    pub items: Vec<Attempt>,
    /// Pass as `cursor` for the next (older) page; `None` on the last page.
    pub next_cursor: Option<AttemptId>,
}

/// A cloneable handle on the running engine: every operation of the product.
#[derive(Clone)]
pub struct EngineHandle {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) writes: GroupCommit,
    pub(crate) outbound: Outbound,
    credentials: RwLock<Credentials>,
    settings: RwLock<Settings>,
    jitter: f64,
    local_addr: SocketAddr,
    /// The due queue in memory (the scheduler takes from it).
    pub(crate) queue: Arc<Queue>,
    /// The webhooks as stored, for sending without reading the store.
    webhooks: RwLock<HashMap<WebhookId, Arc<WebhookRecord>>>,
    events: broadcast::Sender<EngineEvent>,
    pub(crate) cancel: CancellationToken,
    /// Where the blocking store calls run (see [`EngineHandle::blocking`]).
    store_threads: StoreThreads,
    /// Work that must finish even if the caller goes away (see [`EngineHandle::detached`]).
    tasks: TaskTracker,
}

/// Threads for blocking store calls: enough that a log query does not wait
/// behind a backlog read, few enough to stay small on a 2-core machine.
const STORE_THREADS: usize = 4;

impl Inner {
    fn settings_now(&self) -> Settings {
        self.settings.reading().clone()
    }

    /// Keeps the cache of webhooks in step with a commit: `Some` saved, `None` deleted.
    fn cache_webhook(&self, id: WebhookId, record: Option<WebhookRecord>) {
        let mut cache = self.webhooks.writing();
        match record {
            Some(r) => cache.insert(id, Arc::new(r)),
            None => cache.remove(&id),
        };
    }
}

impl Inner {
    /// How memory differs from `stored` (see [`EngineHandle::memory_mismatches`]).
    fn mismatches(&self, stored: StoredState) -> Vec<String> {
        let mut out = Vec::new();
        let webhooks: HashMap<WebhookId, WebhookRecord> =
            stored.webhooks.into_iter().map(|w| (w.id, w)).collect();
        let cache = self.webhooks.reading().clone();
        for (id, w) in &webhooks {
            match cache.get(id) {
                None => out.push(format!("webhook {id} is stored but not cached")),
                Some(c) => {
                    if c.url != w.url
                        || c.enabled != w.enabled
                        || c.events != w.events
                        || !c.verify_token.matches(w.verify_token.expose())
                    {
                        out.push(format!("webhook {id} is cached unlike it is stored"));
                    }
                }
            }
        }
        for id in cache.keys().filter(|id| !webhooks.contains_key(id)) {
            out.push(format!("webhook {id} is cached but not stored"));
        }
        let (settings, effective, config) = (&stored.settings, self.settings_now(), &self.config);
        if settings.retention_days != effective.retention_days
            || settings.max_database_mb != effective.max_database_mb
            || settings.allow_http_localhost != effective.allow_http_localhost
            || (config.warning_threshold.is_none()
                && settings.warning_threshold != effective.warning_threshold)
            || (config.retry.is_none() && settings.retry_schedule_ms != effective.retry_schedule_ms)
        {
            out.push("the settings in force are not the stored ones".to_owned());
        }
        let key = self.credentials.reading().ingest_key.clone();
        if config.ingest_key.is_none() && !key.matches(stored.ingest_key.expose()) {
            out.push("the ingest key in force is not the stored one".to_owned());
        }
        if let Some((held, due)) = stored.due {
            for id in due.iter().filter(|id| !held.contains(id)) {
                out.push(format!("delivery {id} is due in the store but not queued"));
            }
            let due: HashSet<DeliveryId> = due.into_iter().collect();
            for id in held.iter().filter(|id| !due.contains(id)) {
                out.push(format!("delivery {id} is queued but not due in the store"));
            }
        }
        out
    }
}

impl EngineHandle {
    /// Builds the handle on an open store: loads credentials, settings and
    /// webhooks and starts the writer. `runtime` starts the workers on it.
    pub(crate) async fn open(
        config: Config,
        store: Store,
        local_addr: SocketAddr,
        cancel: CancellationToken,
        tasks: TaskTracker,
    ) -> Result<EngineHandle> {
        let outbound = Outbound::new(&config.ca_files, config.request_timeout)?;
        let store_threads = StoreThreads::start(store.clone(), STORE_THREADS)?;
        let (stored, mut settings, webhooks) = store_threads.starting_state().await?;
        let credentials = Credentials {
            ingest_key: config.ingest_key.clone().unwrap_or(stored.ingest_key),
            admin_token: config.admin_token.clone().unwrap_or(stored.admin_token),
        };
        if credentials.ingest_key == credentials.admin_token {
            return Err(Error::Config(
                "the ingest key and the admin token must differ".into(),
            ));
        }
        let jitter = match &config.retry {
            Some(policy) => {
                settings.retry_schedule_ms = policy
                    .schedule
                    .iter()
                    .map(|d| d.as_millis() as u64)
                    .collect();
                policy.jitter
            }
            None => RetryPolicy::default().jitter,
        };
        if let Some(t) = config.warning_threshold {
            settings.warning_threshold = t;
        }
        let queue = Arc::new(Queue::new(
            config.max_in_flight,
            config.max_in_flight_per_webhook,
            config.queue_memory_limit,
        ));
        let (events, _) = broadcast::channel(1024);
        let writes = GroupCommit::start(store)?;
        let handle = EngineHandle {
            inner: Arc::new(Inner {
                config,
                writes,
                outbound,
                credentials: RwLock::new(credentials),
                settings: RwLock::new(settings),
                jitter,
                local_addr,
                queue,
                webhooks: RwLock::new(webhooks.into_iter().map(|w| (w.id, Arc::new(w))).collect()),
                events,
                cancel: cancel.clone(),
                store_threads,
                tasks,
            }),
        };
        Ok(handle)
    }

    /// Commits what is queued and releases the database file (after the
    /// last attempt was recorded).
    pub(crate) async fn close_writes(&self) {
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.writes.close()).await;
    }
}

impl EngineHandle {
    /// The store's business-level calls, run on the engine's store threads
    /// (at most [`STORE_THREADS`] at once; others wait).
    pub(crate) fn storage(&self) -> &StoreThreads {
        &self.inner.store_threads
    }

    /// Runs `work` as a task of the engine and waits for it: dropping the
    /// caller (a client that hangs up) does not stop it, and the engine's stop
    /// waits for it.
    async fn detached<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.inner
            .tasks
            .spawn(work)
            .await
            .map_err(|e| Error::Internal(format!("an engine task failed: {e}")))?
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Live events: attempts recorded, health changes.
    pub fn subscribe(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.events.subscribe()
    }

    pub(crate) fn publish(&self, event: EngineEvent) {
        // No subscribers is fine.
        let _ = self.inner.events.send(event);
    }

    /// The key that posts events.
    pub fn ingest_key(&self) -> Secret {
        self.creds().ingest_key.clone()
    }

    /// The token that manages the engine.
    pub fn admin_token(&self) -> Secret {
        self.creds().admin_token.clone()
    }

    fn creds(&self) -> std::sync::RwLockReadGuard<'_, Credentials> {
        // A poisoned lock only means a panic elsewhere mid-write of two strings.
        self.inner.credentials.reading()
    }

    /// A webhook as last stored, to send to (without reading the store).
    pub(crate) fn cached_webhook(&self, id: WebhookId) -> Option<Arc<WebhookRecord>> {
        self.inner.webhooks.reading().get(&id).cloned()
    }

    /// The known event types with descriptions and samples.
    pub fn event_types(&self) -> Vec<EventType> {
        event_types::catalogue()
    }

    /// The settings in force (stored ones, with this run's overrides).
    pub fn settings(&self) -> Settings {
        self.inner.settings_now()
    }

    pub(crate) fn threshold(&self) -> u32 {
        // Read in place: this runs for every attempt.
        self.inner.settings.reading().warning_threshold
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            schedule: self.settings().retry_schedule(),
            jitter: self.inner.jitter,
        }
    }

    /// The settings as `GET /v1/settings` shows them.
    pub async fn settings_view(&self) -> Result<SettingsView> {
        let stored = self.storage().load_settings().await?;
        let effective = self.settings();
        let addr = self.inner.local_addr;
        Ok(SettingsView {
            listen_address: addr.to_string(),
            listen_port: stored.listen_port,
            restart_required: stored.listen_port != addr.port(),
            retry_schedule: effective
                .retry_schedule_ms
                .iter()
                .map(|ms| format_duration(*ms))
                .collect(),
            warning_threshold: effective.warning_threshold,
            retention_days: effective.retention_days,
            max_database_mb: effective.max_database_mb,
            allow_http_localhost: effective.allow_http_localhost
                || self.inner.config.allow_http_localhost,
            allow_http_localhost_from_flag: self.inner.config.allow_http_localhost,
            ingest_key: self.ingest_key().expose().to_owned(),
            ingest_key_from_env: self.inner.config.ingest_key.is_some(),
        })
    }

    /// Changes settings (`PATCH /v1/settings`): all fields are validated first, and a
    /// bad one changes nothing. `regenerate_ingest_key: true` makes a new ingest key.
    pub async fn update_settings(&self, patch: Map<String, Value>) -> Result<SettingsView> {
        let fields: Vec<String> = patch.keys().cloned().collect();
        let key_from_env = self.inner.config.ingest_key.is_some();
        let (inner, applied) = (self.inner.clone(), patch.clone());
        // `{}`, or only the values already stored: nothing is written.
        let written = self
            .storage()
            .change_settings(
                move |stored| {
                    let regenerate = stored.apply_patch(&patch)?;
                    if regenerate && key_from_env {
                        return Err(Error::Conflict {
                            code: "ingest_key_from_env",
                            message: "the ingest key is set by ORKI_INGEST_KEY; change it there"
                                .into(),
                        });
                    }
                    Ok(regenerate)
                },
                move |fresh| {
                    // Same checks as on the stored settings, so this cannot fail halfway.
                    inner.settings.writing().apply_patch(&applied)?;
                    if let Some(key) = fresh {
                        inner.credentials.writing().ingest_key = key;
                        tracing::info!("ingest key regenerated");
                    }
                    Ok(())
                },
            )
            .await?;
        if written {
            tracing::info!(fields = ?fields, "settings changed");
        }
        self.settings_view().await
    }

    /// Registers a webhook: validates, runs the handshake, then saves.
    pub async fn create_webhook(&self, new: NewWebhook) -> Result<Webhook> {
        let url = self.validate_url(&new.url)?;
        let token = validate_token(&new.verify_token)?;
        let events = validate_events(new.events)?;
        self.handshake(&url, &token).await?;
        let record = WebhookRecord::new(
            url.to_string(),
            Secret::new(token),
            events,
            new.enabled.unwrap_or(true),
        );
        let inner = self.inner.clone();
        self.storage()
            .insert_webhook(record.clone(), move |saved| {
                inner.cache_webhook(saved.id, Some(saved))
            })
            .await?;
        tracing::info!(webhook = %record.id, url = %redacted(&url), "webhook registered");
        Ok(record.view(self.threshold(), true))
    }

    /// Changes a webhook; a new URL or token is verified first.
    pub async fn update_webhook(&self, id: WebhookId, patch: WebhookPatch) -> Result<Webhook> {
        let current = self
            .storage()
            .get_webhook(id)
            .await?
            .ok_or_else(|| Error::not_found("webhook", id))?;
        let url = patch
            .url
            .as_deref()
            .map(|u| self.validate_url(u))
            .transpose()?;
        let token = patch
            .verify_token
            .as_deref()
            .map(validate_token)
            .transpose()?;
        let events = patch.events.map(validate_events).transpose()?;
        let url_changed = url.as_ref().is_some_and(|u| u.as_str() != current.url);
        let token_changed = token
            .as_ref()
            .is_some_and(|t| !current.verify_token.matches(t));
        if url_changed || token_changed {
            let check_url = match &url {
                Some(u) => u.clone(),
                None => Url::parse(&current.url).map_err(|e| Error::Corrupt(e.to_string()))?,
            };
            let check_token = token
                .clone()
                .unwrap_or_else(|| current.verify_token.expose().to_owned());
            self.handshake(&check_url, &check_token).await?;
        }
        let enabled = patch.enabled;
        let inner = self.inner.clone();
        let updated = self
            .storage()
            .update_webhook(
                id,
                move |w| {
                    // `updated_at` moves only when something does (not for `{}`).
                    let mut changed = false;
                    if let Some(u) = url.filter(|u| u.as_str() != w.url) {
                        w.url = u.to_string();
                        changed = true;
                    }
                    if let Some(t) = token.filter(|t| !w.verify_token.matches(t)) {
                        w.verify_token = Secret::new(t);
                        changed = true;
                    }
                    if let Some(e) = events.filter(|e| *e != w.events) {
                        w.events = e;
                        changed = true;
                    }
                    if let Some(e) = enabled.filter(|e| *e != w.enabled) {
                        if e {
                            // A re-enabled webhook starts with a clean slate.
                            w.consecutive_failures = 0;
                        }
                        w.enabled = e;
                        changed = true;
                    }
                    if changed {
                        w.updated_at = Utc::now();
                    }
                    Ok(())
                },
                move |updated| {
                    inner.cache_webhook(id, Some(updated.clone()));
                    if !updated.enabled {
                        inner.queue.forget_webhook(id);
                    }
                },
            )
            .await?;
        tracing::info!(webhook = %id, "webhook updated");
        Ok(updated.view(self.threshold(), true))
    }

    /// One webhook, with its verify token.
    pub async fn get_webhook(&self, id: WebhookId) -> Result<Webhook> {
        let record = self
            .storage()
            .get_webhook(id)
            .await?
            .ok_or_else(|| Error::not_found("webhook", id))?;
        Ok(record.view(self.threshold(), true))
    }

    /// All webhooks, oldest first, without tokens.
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>> {
        let threshold = self.threshold();
        let records = self.storage().list_webhooks().await?;
        Ok(records.iter().map(|r| r.view(threshold, false)).collect())
    }

    /// Deletes a webhook and cancels its pending deliveries.
    pub async fn delete_webhook(&self, id: WebhookId) -> Result<()> {
        let inner = self.inner.clone();
        self.storage()
            .delete_webhook(id, move || {
                inner.cache_webhook(id, None);
                inner.queue.forget_webhook(id);
            })
            .await?;
        tracing::info!(webhook = %id, "webhook deleted");
        Ok(())
    }

    /// Accepts an event: returns only after it and its deliveries are committed.
    /// `data_json` must be a JSON object (the HTTP layer checks it).
    pub async fn ingest(
        &self,
        event_type: String,
        data_json: String,
        idempotency: Option<(String, String)>,
    ) -> Result<Accepted> {
        if !event_types::is_known(&event_type) {
            return Err(Error::UnknownEventType(event_type));
        }
        // Built and encoded here, on the async threads; the writer only writes.
        let new = NewEvent::new(&event_type, &data_json, idempotency, Utc::now())?;
        // The writer queues the jobs right after the commit, so a client that
        // hangs up before its answer cannot strand them.
        let queue = self.inner.queue.clone();
        self.inner
            .writes
            .ingest(new, move |jobs| queue.push(jobs))
            .await
    }

    /// A page of the delivery log, newest first, filtered.
    pub async fn list_attempts(&self, query: AttemptQuery) -> Result<AttemptPage> {
        let AttemptQuery {
            filter,
            cursor,
            limit,
        } = query;
        let limit = limit.clamp(1, 500);
        let mut items = self
            .storage()
            .list_attempts(filter, cursor, limit + 1)
            .await?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|a| a.id)
        } else {
            None
        };
        Ok(AttemptPage { items, next_cursor })
    }

    /// One attempt with the exact request and the response.
    pub async fn get_attempt(&self, id: AttemptId) -> Result<AttemptDetail> {
        self.storage()
            .get_attempt(id)
            .await?
            .ok_or_else(|| Error::not_found("attempt", id))
    }

    /// Sends the sample of `event_type` to a webhook now, signed like any delivery,
    /// and records it as a test (not counted in the webhook's health).
    pub async fn send_test(&self, id: WebhookId, event_type: &str) -> Result<AttemptDetail> {
        let sample = event_types::find(event_type).ok_or_else(|| {
            Error::invalid(
                "unknown_event_type",
                event_types::unknown_message(event_type),
            )
        })?;
        // Sent and recorded by a task of the engine: a test the endpoint
        // received is in the log even if the admin's request was cut off.
        let engine = self.clone();
        self.detached(async move { engine.test_now(id, sample).await })
            .await
    }

    async fn test_now(&self, id: WebhookId, sample: EventType) -> Result<AttemptDetail> {
        let webhook = self
            .storage()
            .get_webhook(id)
            .await?
            .ok_or_else(|| Error::not_found("webhook", id))?;
        let now = Utc::now();
        let event_id = EventId::generate();
        let event = EventRecord {
            id: event_id,
            event_type: sample.name.to_owned(),
            created_at: now,
            payload: crate::store::envelope(
                event_id,
                sample.name,
                now,
                &sample.sample.to_string(),
            )?,
            test: true,
            idempotency_key: None,
        };
        let delivery_id = DeliveryId::generate();
        let (record, _) =
            crate::attempt::send(&self.inner.outbound, &webhook, &event, delivery_id, 1, true)
                .await;
        let delivery = DeliveryRecord {
            id: delivery_id,
            event_id,
            webhook_id: id,
            event_type: event.event_type.clone(),
            created_at: now,
            attempts: 1,
            state: if record.attempt.success {
                DeliveryState::Succeeded
            } else {
                DeliveryState::Failed
            },
            due_ms: None,
            test: true,
        };
        let (e, d, r) = (event.clone(), delivery, record.clone());
        self.storage().record_test(e, d, r).await?;
        tracing::info!(webhook = %id, success = record.attempt.success, "test event sent");
        self.publish(EngineEvent::AttemptRecorded(record.attempt.clone()));
        Ok(AttemptDetail {
            attempt: record.attempt,
            request: RequestView {
                url: record.request.url,
                method: record.request.method,
                headers: record.request.headers,
                body: Some(event.payload),
            },
            response: record.response,
        })
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
                }))
            })
            .await?;
        if requeue.is_some() && count > 0 {
            tracing::info!(webhook = %id, count, "failed deliveries replayed");
        }
        Ok(ReplayResult {
            dry_run,
            count,
            pace_ms: REPLAY_PACE_MS,
        })
    }

    /// Where the engine's in-memory view disagrees with the database: the
    /// webhook cache against the stored webhooks (URL, token, events,
    /// enabled), and the queue against the due table (while the queue holds
    /// all of it). Empty when they agree. Meaningful once the engine is quiet
    /// (no ingest or attempt in flight); tests and diagnostics call it.
    pub async fn memory_mismatches(&self) -> Result<Vec<String>> {
        let (queue, inner) = (self.inner.queue.clone(), self.inner.clone());
        self.storage()
            .compare_with_memory(
                move || queue.holds(),
                move |stored| inner.mismatches(stored),
            )
            .await
    }

    /// Deliveries waiting in the due queue.
    pub async fn pending_deliveries(&self) -> Result<u64> {
        self.storage().pending_count().await
    }

    async fn handshake(&self, url: &Url, token: &str) -> Result<()> {
        handshake::verify(&self.inner.outbound, url, token)
            .await
            .map_err(|failure| {
                tracing::info!(url = %redacted(url), step = failure.step.as_str(), "handshake failed");
                Error::Verification(failure)
            })
    }

    fn validate_url(&self, text: &str) -> Result<Url> {
        let allow = self.inner.config.allow_http_localhost || self.settings().allow_http_localhost;
        validate_url(text, allow)
    }
}

/// Checks a webhook URL: absolute, `https://` (or `http://` to loopback when allowed).
pub fn validate_url(text: &str, allow_http_localhost: bool) -> Result<Url> {
    let text = text.trim();
    if text.chars().count() > 2048 {
        return Err(Error::invalid(
            "invalid_url",
            "the URL is longer than 2048 characters",
        ));
    }
    let url = Url::parse(text)
        .map_err(|e| Error::invalid("invalid_url", format!("{text:?} is not a valid URL: {e}")))?;
    if url.host().is_none() {
        return Err(Error::invalid("invalid_url", "the URL has no host"));
    }
    if url.fragment().is_some() {
        return Err(Error::invalid(
            "invalid_url",
            "the URL must not have a #fragment",
        ));
    }
    // It would be sent as Basic auth and shown wherever the URL is.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(
            "invalid_url",
            "the URL must not contain a user name or password (they would be shown in the webhook list and the log); have the endpoint check the X-Hub-Signature-256 signature instead, or send credentials as a custom request header once webhooks have them",
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http_localhost && is_loopback(&url) => Ok(url),
        "http" if is_loopback(&url) => Err(Error::invalid(
            "https_required",
            "webhook URLs must use https://; plain http:// to localhost needs the setting \"allow plain HTTP to localhost for development\" (--allow-http-localhost)",
        )),
        "http" => Err(Error::invalid(
            "https_required",
            "webhook URLs must use https:// so that deliveries are encrypted",
        )),
        other => Err(Error::invalid(
            "invalid_url",
            format!("the URL scheme must be https, not {other:?}"),
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn validate_token(token: &str) -> Result<String> {
    if token.is_empty() {
        return Err(Error::invalid(
            "invalid_verify_token",
            "the verify token must not be empty",
        ));
    }
    if token.chars().count() > 512 {
        return Err(Error::invalid(
            "invalid_verify_token",
            "the verify token must be at most 512 characters",
        ));
    }
    if token.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_verify_token",
            "the verify token must not contain control characters",
        ));
    }
    Ok(token.to_owned())
}

fn validate_events(events: Vec<String>) -> Result<Vec<String>> {
    if events.is_empty() {
        return Err(Error::invalid(
            "no_events",
            "subscribe to at least one event type",
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in events {
        if !event_types::is_known(&e) {
            return Err(Error::invalid(
                "unknown_event_type",
                event_types::unknown_message(&e),
            ));
        }
        if seen.insert(e.clone()) {
            out.push(e);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_unless_loopback_http_is_allowed() {
        assert!(validate_url("https://example.com/hook", false).is_ok());
        let err = |u: &str, allow: bool| match validate_url(u, allow) {
            Err(Error::Invalid { code, .. }) => code,
            other => panic!("{u}: {other:?}"),
        };
        assert_eq!(err("http://example.com/hook", false), "https_required");
        assert_eq!(err("http://example.com/hook", true), "https_required");
        assert_eq!(err("http://127.0.0.1:9/hook", false), "https_required");
        assert!(validate_url("http://127.0.0.1:9/hook", true).is_ok());
        assert!(validate_url("http://localhost:9/hook", true).is_ok());
        assert!(validate_url("http://[::1]:9/hook", true).is_ok());
        assert_eq!(err("ftp://example.com/", false), "invalid_url");
        assert_eq!(err("not a url", false), "invalid_url");
        assert_eq!(err("https://example.com/#x", false), "invalid_url");
        assert_eq!(
            err("https://user:pw@example.com/hook", false),
            "invalid_url"
        );
        assert_eq!(err("https://user@example.com/hook", false), "invalid_url");
        assert_eq!(err("https://:pw@example.com/hook", false), "invalid_url");
    }

    #[test]
    fn events_are_checked_and_deduplicated() {
        assert!(matches!(
            validate_events(vec![]),
            Err(Error::Invalid {
                code: "no_events",
                ..
            })
        ));
        assert!(matches!(
            validate_events(vec!["nope".into()]),
            Err(Error::Invalid {
                code: "unknown_event_type",
                ..
            })
        ));
        assert_eq!(
            validate_events(vec!["meta.message".into(), "meta.message".into()]).ok(),
            Some(vec!["meta.message".to_string()])
        );
    }

    #[test]
    fn redaction_drops_query_and_credentials() {
        let url = Url::parse("https://user:pw@example.com:8443/hook?key=secret").expect("valid");
        assert_eq!(redacted(&url), "https://example.com:8443/hook");
    }
}
