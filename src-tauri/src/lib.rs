//! The Orki Webhooks desktop shell. It starts the engine in-process (database in
//! the app data directory, logs in the app log directory, both readable by the
//! owner only; the local listener on 127.0.0.1 at the port from the settings),
//! shows the window, forwards engine events to it, and notifies the admin when
//! a webhook starts or stops failing.
//! All logic lives in `orki-engine`; the commands below are one-line wrappers.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use orki_engine::engine::{AttemptPage, NewWebhook, ReplayResult, SettingsView, WebhookPatch};
use orki_engine::event_types::EventType;
use orki_engine::ids::{AttemptId, DeliveryId, WebhookId};
use orki_engine::model::{AttemptDetail, DeliveryRecord, Webhook};
use orki_engine::query::{AttemptQuery, ReplayRequest};
use orki_engine::{
    Config, Engine, EngineEvent, EngineHandle, Error, ErrorBody, Store, private_files, telemetry,
};
use serde::Serialize;
use serde_json::{Map, Value};
use tauri::{AppHandle, Emitter, Manager, RunEvent, State};
use tauri_plugin_notification::NotificationExt;
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
    handle: Option<EngineHandle>,
    cancel: CancellationToken,
    engine: Mutex<Option<Engine>>,
}

type Answer<T> = Result<T, ErrorBody>;

impl Shell {
    fn engine(&self) -> Answer<&EngineHandle> {
        self.handle
            .as_ref()
            .ok_or_else(|| Error::ShuttingDown.body())
    }
}

fn webhook_id(id: &str) -> Answer<WebhookId> {
    WebhookId::parse_or_not_found(id).map_err(|e| e.body())
}

#[tauri::command]
fn engine_status(shell: State<'_, Shell>) -> EngineStatus {
    shell.status.clone()
}

#[tauri::command]
fn event_types(shell: State<'_, Shell>) -> Answer<Vec<EventType>> {
    Ok(shell.engine()?.event_types())
}

#[tauri::command]
async fn list_webhooks(shell: State<'_, Shell>) -> Answer<Vec<Webhook>> {
    shell.engine()?.list_webhooks().await.map_err(|e| e.body())
}

#[tauri::command]
async fn create_webhook(shell: State<'_, Shell>, body: NewWebhook) -> Answer<Webhook> {
    shell
        .engine()?
        .create_webhook(body)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
async fn update_webhook(
    shell: State<'_, Shell>,
    id: String,
    patch: WebhookPatch,
) -> Answer<Webhook> {
    shell
        .engine()?
        .update_webhook(webhook_id(&id)?, patch)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
async fn delete_webhook(shell: State<'_, Shell>, id: String) -> Answer<()> {
    shell
        .engine()?
        .delete_webhook(webhook_id(&id)?)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
async fn test_webhook(
    shell: State<'_, Shell>,
    id: String,
    event_type: String,
) -> Answer<AttemptDetail> {
    shell
        .engine()?
        .send_test(webhook_id(&id)?, &event_type)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
async fn replay_failed(
    shell: State<'_, Shell>,
    id: String,
    body: ReplayRequest,
) -> Answer<ReplayResult> {
    shell
        .engine()?
        .replay_failed(webhook_id(&id)?, body)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
async fn redeliver(shell: State<'_, Shell>, id: String) -> Answer<DeliveryRecord> {
    let delivery = DeliveryId::parse_or_not_found(&id).map_err(|e| e.body())?;
    shell
        .engine()?
        .redeliver(delivery)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
async fn list_attempts(
    shell: State<'_, Shell>,
    query: HashMap<String, String>,
) -> Answer<AttemptPage> {
    let query = AttemptQuery::parse(&query).map_err(|e| e.body())?;
    shell
        .engine()?
        .list_attempts(query)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
async fn get_attempt(shell: State<'_, Shell>, id: String) -> Answer<AttemptDetail> {
    let attempt = AttemptId::parse_or_not_found(&id).map_err(|e| e.body())?;
    shell
        .engine()?
        .get_attempt(attempt)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
async fn get_settings(shell: State<'_, Shell>) -> Answer<SettingsView> {
    shell.engine()?.settings_view().await.map_err(|e| e.body())
}

#[tauri::command]
async fn update_settings(
    shell: State<'_, Shell>,
    patch: Map<String, Value>,
) -> Answer<SettingsView> {
    shell
        .engine()?
        .update_settings(patch)
        .await
        .map_err(|e| e.body())
}

async fn start_engine(app: &AppHandle, cancel: CancellationToken) -> anyhow::Result<Engine> {
    let data_dir = app.path().app_data_dir()?;
    let config = Config::new(data_dir);
    config.validate()?;
    let store = match Store::open(&config.database_path()) {
        Err(Error::AlreadyRunning(_)) => {
            anyhow::bail!(
                "Orki Webhooks is already running: switch to its window (only one can use the database at a time)."
            )
        }
        other => other?,
    };
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], store.load_settings()?.listen_port));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}. Is another program using that port? Change the port in Settings."))?;
    Ok(Engine::start(config, store, listener, cancel).await?)
}

/// Forwards engine events to the window and notifies on health changes.
async fn forward_events(app: AppHandle, engine: EngineHandle) {
    let mut events = engine.subscribe();
    let mut warned: HashSet<WebhookId> = engine
        .list_webhooks()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|w| w.warning)
        .map(|w| w.id)
        .collect();
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        };
        if let EngineEvent::WebhookHealthChanged(h) = &event {
            let was = warned.contains(&h.webhook_id);
            if h.warning != was {
                let url = engine
                    .get_webhook(h.webhook_id)
                    .await
                    .map(|w| w.url)
                    .unwrap_or_else(|_| h.webhook_id.to_string());
                let (title, body) = if h.warning {
                    warned.insert(h.webhook_id);
                    (
                        "Webhook failing",
                        format!(
                            "Deliveries to {url} failed {} times in a row.",
                            h.consecutive_failures
                        ),
                    )
                } else {
                    warned.remove(&h.webhook_id);
                    (
                        "Webhook recovered",
                        format!("Deliveries to {url} succeed again."),
                    )
                };
                if let Err(e) = app.notification().builder().title(title).body(body).show() {
                    tracing::warn!(error = %e, "could not show a notification");
                }
            }
        }
        if let Err(e) = app.emit("engine-event", &event) {
            tracing::warn!(error = %e, "could not forward an engine event to the window");
        }
    }
}

/// The log file writer's guard, dropped on exit so buffered lines are written.
struct LogFlush(Mutex<Option<telemetry::WorkerGuard>>);

/// Runs the desktop app until its window closes.
pub fn run() {
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_notification::init())
        .invoke_handler(tauri::generate_handler![
            engine_status,
            event_types,
            list_webhooks,
            create_webhook,
            update_webhook,
            delete_webhook,
            test_webhook,
            replay_failed,
            redeliver,
            list_attempts,
            get_attempt,
            get_settings,
            update_settings
        ])
        .setup(|app| {
            let log_dir = app.path().app_log_dir()?;
            // Only the owner may read the data: made so, and tightened where an
            // older version left it readable (logged once logging is up).
            let tightened = private_files::secure(&[app.path().app_data_dir()?, log_dir.clone()])?;
            let guard = telemetry::init(&log_dir, "orki-webhooks")?;
            tightened.log();
            orki_engine::raise_open_file_limit();
            // The guard flushes the log file on drop. Tauri's event loop ends the
            // process without dropping managed state, so `RunEvent::Exit` drops it.
            app.manage(LogFlush(Mutex::new(Some(guard))));
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
            let engine_handle = engine.as_ref().map(Engine::handle);
            if let Some(h) = engine_handle.clone() {
                tauri::async_runtime::spawn(forward_events(handle, h));
            }
            app.manage(Shell {
                status,
                handle: engine_handle,
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
            tracing::info!("the app is exiting: stopping the engine");
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
            // Write out the last lines ("engine stopped") before the process ends.
            drop(
                app.state::<LogFlush>()
                    .0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take(),
            );
        }
    });
}
