//! Wiring: [`Engine::start`] builds the handle and starts the workers
//! (scheduler, retention, listener) that stop on the one cancel token;
//! [`Engine::wait`] waits for them. The only module that knows them all: it
//! gives each worker its context, made of the handle's parts.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::Config;
use crate::engine::{EngineEvent, EngineHandle};
use crate::error::{Error, Result};
use crate::ids::WebhookId;
use crate::model::{Pause, WebhookRecord};
use crate::network::NetworkState;
use crate::outbound::Outbound;
use crate::retry::RetryPolicy;
use crate::settings::Settings;
use crate::store::commit::GroupCommit;
use crate::store::threads::StoreThreads;
use crate::store::{HealthRules, Store};
use crate::{delivery, retention};

/// The running engine. Cancel its token to stop it, then [`Engine::wait`].
pub struct Engine {
    handle: EngineHandle,
    tasks: TaskTracker,
    local_addr: SocketAddr,
}

impl Engine {
    /// Starts the engine on an open store and an already-bound listener. Work
    /// stops when `cancel` is cancelled; in-flight attempts finish (or stay queued).
    pub async fn start(
        config: Config,
        store: Store,
        listener: TcpListener,
        cancel: CancellationToken,
    ) -> Result<Engine> {
        config.validate()?;
        let local_addr = listener.local_addr().map_err(|source| Error::Io {
            context: "reading the listener's address".into(),
            source,
        })?;
        let tasks = TaskTracker::new();
        let handle =
            EngineHandle::open(config, store, local_addr, cancel.clone(), tasks.clone()).await?;
        tasks.spawn(delivery::run(delivery::Context {
            services: Arc::new(handle.clone()),
            queue: handle.inner.queue.clone(),
            clock: Clock::System,
            cancel: cancel.clone(),
            tasks: tasks.clone(),
        }));
        tasks.spawn(retention::run(retention::Context::from(&handle)));
        tasks.spawn(crate::network::watch(
            handle.inner.network.clone(),
            Clock::System,
            cancel.clone(),
        ));
        tasks.spawn(publish_network_changes(handle.clone(), cancel.clone()));
        let app = crate::http::router(handle.clone());
        let limits = crate::listener::Serve {
            max_connections: handle.inner.config.max_connections,
            idle_timeout: handle.inner.config.idle_timeout,
            cancel: cancel.clone(),
            tasks: tasks.clone(),
        };
        tasks.spawn(crate::listener::serve(listener, app, limits));
        tracing::info!(%local_addr, "engine started");
        Ok(Engine {
            handle,
            tasks,
            local_addr,
        })
    }

    /// The handle to call the engine with.
    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// Where the listener is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the engine has stopped after its token was cancelled: the
    /// listener closed and in-flight attempts finished.
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
        // After the last attempt was recorded: commit what is queued, release the file.
        self.handle.close_writes().await;
        tracing::info!("engine stopped");
    }
}

/// Tells subscribers each time the engine goes offline or online again.
async fn publish_network_changes(handle: EngineHandle, cancel: CancellationToken) {
    let mut changes = handle.inner.network.subscribe();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                let network = *changes.borrow_and_update();
                handle.publish(EngineEvent::NetworkChanged { network });
            }
        }
    }
}

impl delivery::Services for EngineHandle {
    fn storage(&self) -> &StoreThreads {
        EngineHandle::storage(self)
    }

    fn writes(&self) -> &GroupCommit {
        &self.inner.writes
    }

    fn outbound(&self) -> &Outbound {
        &self.inner.outbound
    }

    fn webhook(&self, id: WebhookId) -> Option<Arc<WebhookRecord>> {
        self.cached_webhook(id)
    }

    fn retry_policy(&self) -> RetryPolicy {
        EngineHandle::retry_policy(self)
    }

    fn health_rules(&self) -> HealthRules {
        EngineHandle::health_rules(self)
    }

    fn paused(&self, id: WebhookId, pause: Pause) {
        self.inner.paused_by_attempt(id, pause)
    }

    fn publish(&self, event: EngineEvent) {
        EngineHandle::publish(self, event)
    }

    fn network(&self) -> &NetworkState {
        &self.inner.network
    }
}

impl retention::Services for EngineHandle {
    fn storage(&self) -> &StoreThreads {
        EngineHandle::storage(self)
    }

    fn settings(&self) -> Settings {
        EngineHandle::settings(self)
    }

    fn publish(&self, event: EngineEvent) {
        EngineHandle::publish(self, event)
    }
}

/// Retention on the engine (what [`retention::prune_once`] takes): on the
/// system clock, stopping with the engine.
impl From<&EngineHandle> for retention::Context {
    fn from(handle: &EngineHandle) -> Self {
        retention::Context {
            services: Arc::new(handle.clone()),
            clock: Clock::System,
            cancel: handle.inner.cancel.clone(),
        }
    }
}
