//! [`EngineHandle`]: every operation of the product, the one API that the
//! HTTP layer and the desktop shell both call ([`crate::Engine::start`] builds
//! it and starts the workers on it). This file holds the handle, its state
//! and the reads every area shares; each area has a file (`webhooks`,
//! `ingest`, `log`, `settings`).

mod ingest;
mod log;
mod settings;
mod webhooks;

pub use ingest::{REPLAY_PACE_MS, ReplayResult};
pub use log::AttemptPage;
pub use settings::SettingsView;
pub use webhooks::{NewWebhook, RotateSecret, WebhookPatch};

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::event_types::{self, EventType};
use crate::ids::{DeliveryId, WebhookId};
use crate::model::{Attempt, WebhookRecord};
use crate::network::{Network, NetworkState};
use crate::outbound::Outbound;
use crate::queue::Queue;
use crate::retry::RetryPolicy;
use crate::settings::Settings;
use crate::store::commit::GroupCommit;
use crate::store::threads::StoreThreads;
use crate::store::{Credentials, Health, StoredState};
use crate::sync::Shared;
use crate::{Config, Error, Result, Secret, Store};

/// Something that happened in the engine, for live views.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EngineEvent {
    /// An attempt was recorded in the delivery log.
    AttemptRecorded(Attempt),
    /// A webhook's consecutive-failure count changed.
    WebhookHealthChanged(Health),
    /// The engine went offline or online again (see [`crate::network`]).
    NetworkChanged {
        /// The state now.
        network: Network,
    },
    /// Retention removed old records.
    Pruned {
        /// Attempts removed.
        attempts: u64,
        /// Events (with their finished deliveries) removed.
        events: u64,
    },
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
    /// Whether attempts can leave the machine.
    pub(crate) network: Arc<NetworkState>,
    /// The webhooks as stored, for sending without reading the store.
    webhooks: RwLock<HashMap<WebhookId, Arc<WebhookRecord>>>,
    events: broadcast::Sender<EngineEvent>,
    pub(crate) cancel: CancellationToken,
    /// Where the blocking store calls run (they also keep the admin writes in one order).
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
    /// The queue follows its pause.
    fn cache_webhook(&self, id: WebhookId, record: Option<WebhookRecord>) {
        let mut cache = self.webhooks.writing();
        match record {
            Some(r) => {
                self.queue.set_paused(id, r.is_paused());
                cache.insert(id, Arc::new(r))
            }
            None => cache.remove(&id),
        };
    }

    /// An attempt's record paused the webhook (auto-pause): memory follows.
    pub(crate) fn paused_by_attempt(&self, id: WebhookId, pause: crate::model::Pause) {
        let mut cache = self.webhooks.writing();
        if let Some(w) = cache.get(&id) {
            let mut w = (**w).clone();
            w.controls.paused = Some(pause);
            self.queue.set_paused(id, true);
            cache.insert(id, Arc::new(w));
        }
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
                    // `failing_since` moves in the store only (attempt records).
                    let controls = |r: &WebhookRecord| crate::model::Controls {
                        failing_since: None,
                        ..r.controls.clone()
                    };
                    if c.url != w.url
                        || c.enabled != w.enabled
                        || c.events != w.events
                        || !c.verify_token.matches(w.verify_token.expose())
                        || controls(c) != controls(w)
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
            || settings.auto_pause_after_hours != effective.auto_pause_after_hours
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
        for w in webhooks.iter().filter(|w| w.is_paused()) {
            queue.set_paused(w.id, true);
        }
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
                network: Arc::default(),
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

    /// Whether deliveries can leave the machine now (offline: held, not
    /// failed). Changes come as [`EngineEvent::NetworkChanged`].
    pub fn network(&self) -> Network {
        self.inner.network.now()
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

    /// What an attempt's record judges its webhook by.
    pub(crate) fn health_rules(&self) -> crate::store::HealthRules {
        let s = self.inner.settings.reading();
        crate::store::HealthRules {
            warning_threshold: s.warning_threshold,
            auto_pause_after_hours: s.auto_pause_after_hours,
        }
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            schedule: self.settings().retry_schedule(),
            jitter: self.inner.jitter,
        }
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
}
