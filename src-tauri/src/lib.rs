//! The Orki Webhooks desktop shell: it starts the engine in-process (database in
//! the app data directory, logs in the app log directory, the local listener on
//! 127.0.0.1, port from the settings) and shows the window. All logic lives in `orki-engine`.

use std::sync::Mutex;

use orki_engine::{Config, Engine, Store, telemetry};
use serde::Serialize;
use tauri::{Manager, RunEvent, State};
use tokio_util::sync::CancellationToken;

/// What the window shows about the engine.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EngineStatus {
    /// The engine runs and listens at `listen`.
    Running {
        /// Where local tools post events.
        listen: String,
        /// The engine's version.
        version: String,
    },
    /// The engine could not start (for example: another instance is running).
    Failed {
        /// Why, for a person.
        message: String,
    },
}

struct Shell {
    status: EngineStatus,
    cancel: CancellationToken,
    engine: Mutex<Option<Engine>>,
}

/// The engine's state, for the window.
#[tauri::command]
fn engine_status(shell: State<'_, Shell>) -> EngineStatus {
    shell.status.clone()
}

async fn start_engine(app: &tauri::AppHandle, cancel: CancellationToken) -> anyhow::Result<Engine> {
    let data_dir = app.path().app_data_dir()?;
    let config = Config::new(data_dir);
    config.validate()?;
    let store = Store::open(&config.database_path())?;
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], store.load_settings()?.listen_port));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    Ok(Engine::start(config, store, listener, cancel).await?)
}

/// Runs the desktop app until its window closes.
pub fn run() {
    let app = tauri::Builder::default()
        .invoke_handler(tauri::generate_handler![engine_status])
        .setup(|app| {
            let log_dir = app.path().app_log_dir()?;
            let guard = telemetry::init(&log_dir, "orki-webhooks")?;
            // The guard flushes the log file on drop; keep it for the app's life.
            app.manage(guard);
            let cancel = CancellationToken::new();
            let handle = app.handle().clone();
            let started = tauri::async_runtime::block_on(start_engine(&handle, cancel.clone()));
            let (status, engine) = match started {
                Ok(engine) => (
                    EngineStatus::Running {
                        listen: engine.local_addr().to_string(),
                        version: orki_engine::VERSION.to_owned(),
                    },
                    Some(engine),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "the engine did not start");
                    (
                        EngineStatus::Failed {
                            message: format!("{e:#}"),
                        },
                        None,
                    )
                }
            };
            app.manage(Shell {
                status,
                cancel,
                engine: Mutex::new(engine),
            });
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("orki-webhooks: {e}");
            std::process::exit(1);
        }
    };
    app.run(|app, event| {
        if let RunEvent::Exit = event {
            let shell = app.state::<Shell>();
            shell.cancel.cancel();
            let engine = shell
                .engine
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(engine) = engine {
                tauri::async_runtime::block_on(engine.wait());
            }
        }
    });
}
