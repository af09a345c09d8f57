//! Wiring: [`Engine::start`] builds the handle and starts the workers
//! (scheduler, retention, listener) that stop on the one cancel token;
//! [`Engine::wait`] waits for them. The only module that knows them all.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::engine::EngineHandle;
use crate::error::{Error, Result};
use crate::store::Store;

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
        tasks.spawn(crate::delivery::run(handle.clone(), tasks.clone()));
        tasks.spawn(crate::retention::run(handle.clone()));
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
