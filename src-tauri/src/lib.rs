//! The Orki Webhooks desktop shell. It starts the engine in-process (database in
//! the app data directory, logs in the app log directory, both readable by the
//! owner only; the local listener on 127.0.0.1 at the port from the settings),
//! shows the window, forwards engine events to it, and notifies the admin when
//! a webhook starts or stops failing.
//!
//! The engine outlives the window: closing it destroys the window and its
//! webview and, by default, keeps delivering, with a tray icon for the state;
//! the app quits from the tray, with `orki-webhooks --quit`, on SIGTERM, or on
//! close when the admin chose so. One instance runs at a time: launching it
//! again shows the running one's window. Started at login (`--hidden`), it
//! opens no window.
//! All logic lives in `orki-engine`; the commands are one-line wrappers.

mod commands;
mod desktop;
mod tray;
mod window;
mod words;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use orki_engine::ids::WebhookId;
use orki_engine::model::PauseReason;
use orki_engine::{
    Config, Engine, EngineEvent, EngineHandle, Error, Secret, Store, private_files, telemetry,
};
use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, RunEvent, WindowEvent};
use tauri_plugin_autostart::ManagerExt;
use tauri_plugin_notification::NotificationExt;
use tokio_util::sync::CancellationToken;

use crate::commands::Answer;
use crate::desktop::{CloseAction, DesktopSettings, DesktopView};
use crate::words::Words;

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
    desktop: Mutex<DesktopSettings>,
}

impl Shell {
    fn desktop(&self) -> MutexGuard<'_, DesktopSettings> {
        self.desktop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether closing the window leaves the app running: the engine runs and
    /// the admin did not choose "quit".
    fn keeps_running(&self) -> bool {
        self.handle.is_some() && self.desktop().stored().close_action == CloseAction::Background
    }
}

fn desktop_view(app: &AppHandle, shell: &Shell) -> DesktopView {
    DesktopView {
        close_action: shell.desktop().stored().close_action,
        start_at_login: app.autolaunch().is_enabled().unwrap_or(false),
    }
}

/// Writes or removes the autostart entry (XDG autostart on Linux).
fn set_start_at_login(app: &AppHandle, on: bool) -> Answer<()> {
    let manager = app.autolaunch();
    let done = if on {
        manager.enable()
    } else {
        manager.disable()
    };
    done.map_err(|e| {
        Error::Io {
            context: "changing the start-at-login entry".to_owned(),
            source: std::io::Error::other(e.to_string()),
        }
        .body()
    })?;
    tracing::info!(on, "start at login switched");
    tray::refresh(app);
    Ok(())
}

/// The command line: `--hidden` (started at login: no window), `--quit`
/// (ask the running instance to stop).
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    hidden: bool,
    quit: bool,
}

const USAGE: &str = "usage: orki-webhooks [--hidden | --quit]
  --hidden  start without opening the window (as at login)
  --quit    ask the running Orki Webhooks to stop cleanly";

impl Args {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut out = Args::default();
        for arg in args {
            match arg.as_str() {
                "--hidden" => out.hidden = true,
                "--quit" => out.quit = true,
                "-h" | "--help" => return Err(USAGE.to_owned()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        Ok(out)
    }
}

/// `--quit` with no instance reachable over D-Bus: says whether one runs.
fn quit_without_instance(app: &AppHandle) -> ! {
    // Only an existing database can be locked: none is made here.
    let running = app.path().app_data_dir().is_ok_and(|dir| {
        let db = Config::new(dir).database_path();
        db.exists() && matches!(Store::open(&db), Err(Error::AlreadyRunning(_)))
    });
    if running {
        eprintln!(
            "orki-webhooks: it runs, but could not be reached (no D-Bus session bus): quit it from its tray menu"
        );
        std::process::exit(1);
    }
    eprintln!("orki-webhooks: not running");
    std::process::exit(0);
}

/// A second launch: `--quit` stops this instance, anything else shows its
/// window (a second `--hidden`, as at login, changes nothing).
fn second_launch(app: &AppHandle, argv: Vec<String>) {
    match Args::parse(argv.into_iter().skip(1)) {
        Ok(Args { quit: true, .. }) => {
            tracing::info!("quit requested by orki-webhooks --quit");
            app.exit(0);
        }
        Ok(Args { hidden: true, .. }) => {}
        _ => window::show(app),
    }
}

/// SIGTERM (logout, shutdown, `systemctl stop`), SIGINT and SIGHUP quit
/// cleanly, as the tray's Quit does.
fn quit_on_signals(app: AppHandle) {
    use tokio::signal::unix::{SignalKind, signal};
    tauri::async_runtime::spawn(async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::warn!("cannot listen for SIGTERM: it would stop the app uncleanly");
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => "SIGHUP",
        };
        tracing::info!(signal = name, "asked to stop: quitting");
        app.exit(0);
    });
}

/// The first time the window closes while the app keeps running, say so.
fn tell_once_it_keeps_running(app: &AppHandle) {
    let shell = app.state::<Shell>();
    if shell.desktop().stored().background_notice_shown {
        return;
    }
    let words = Words::for_locale();
    if let Err(e) = app
        .notification()
        .builder()
        .title(words.background_title)
        .body(words.background_body)
        .show()
    {
        tracing::warn!(error = %e, "could not show a notification");
    }
    if let Err(e) = shell.desktop().change(|s| s.background_notice_shown = true) {
        tracing::warn!(error = %e, "could not remember that the notice was shown");
    }
}

async fn start_engine(app: &AppHandle, cancel: CancellationToken) -> anyhow::Result<Engine> {
    let data_dir = app.path().app_data_dir()?;
    let mut config = Config::new(data_dir);
    // As for orki-webhooksd: the environment's credentials win over the stored ones.
    let env_secret = |name| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)
    };
    config.ingest_key = env_secret("ORKI_INGEST_KEY");
    config.admin_token = env_secret("ORKI_ADMIN_TOKEN");
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
        if let EngineEvent::NetworkChanged { .. } = &event {
            tray::refresh(&app);
        }
        if let EngineEvent::WebhookHealthChanged(h) = &event {
            tray::refresh(&app);
            if let Some(pause) = &h.paused {
                let url = engine
                    .get_webhook(h.webhook_id)
                    .await
                    .map(|w| w.url)
                    .unwrap_or_else(|_| h.webhook_id.to_string());
                let why = match pause.reason {
                    PauseReason::Gone => "its endpoint answered 410 Gone",
                    _ => "every attempt failed for too long",
                };
                let body = format!(
                    "Deliveries to {url} are paused because {why}. They are kept, and go out once you resume it."
                );
                if let Err(e) = app
                    .notification()
                    .builder()
                    .title("Webhook paused")
                    .body(body)
                    .show()
                {
                    tracing::warn!(error = %e, "could not show a notification");
                }
            }
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

/// Runs the desktop app until it is asked to quit.
pub fn run() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let app = tauri::Builder::default()
        // First: a second launch hands its arguments to the running one and ends.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            second_launch(app, argv)
        }))
        .plugin(
            tauri_plugin_autostart::Builder::new()
                .args(["--hidden"])
                .build(),
        )
        .plugin(tauri_plugin_notification::init())
        .invoke_handler(tauri::generate_handler![
            commands::engine_status,
            commands::event_types,
            commands::list_webhooks,
            commands::create_webhook,
            commands::get_webhook,
            commands::update_webhook,
            commands::rotate_secret,
            commands::delete_webhook,
            commands::test_webhook,
            commands::replay_failed,
            commands::redeliver,
            commands::skip_delivery,
            commands::held_deliveries,
            commands::list_attempts,
            commands::get_attempt,
            commands::get_settings,
            commands::update_settings,
            commands::desktop_settings,
            commands::update_desktop_settings
        ])
        .on_window_event(|window, event| match event {
            WindowEvent::CloseRequested { .. } => {
                let app = window.app_handle();
                if app.state::<Shell>().keeps_running() {
                    tracing::info!("window closed: delivering in the background");
                    tell_once_it_keeps_running(app);
                }
            }
            WindowEvent::Destroyed => window::closed(window.app_handle()),
            _ => {}
        })
        .setup(move |app| {
            if args.quit {
                quit_without_instance(app.handle());
            }
            let data_dir = app.path().app_data_dir()?;
            let log_dir = app.path().app_log_dir()?;
            // Only the owner may read the data: made so, and tightened where an
            // older version left it readable (logged once logging is up).
            let tightened = private_files::secure(&[data_dir.clone(), log_dir.clone()])?;
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
                tauri::async_runtime::spawn(forward_events(handle.clone(), h));
            }
            let failed = engine.is_none();
            app.manage(Shell {
                status,
                handle: engine_handle,
                cancel,
                engine: Mutex::new(engine),
                desktop: Mutex::new(DesktopSettings::load(&data_dir)),
            });
            let wake = Arc::new(tokio::sync::Notify::new());
            app.manage(tray::Refresh(wake.clone()));
            let first = tauri::async_runtime::block_on(tray::snapshot(&handle));
            let has_tray = tray::create(&handle, &first).is_some();
            tauri::async_runtime::spawn(tray::keep_up(handle.clone(), wake, first));
            quit_on_signals(handle.clone());
            // Hidden (started at login) only when there is a way back to the
            // window and nothing to report; a second launch always shows it.
            if !args.hidden || failed || !has_tray {
                window::show(&handle);
            } else {
                tracing::info!("started hidden: delivering in the background");
            }
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
    app.run(|app, event| match event {
        // The last window closed (no exit code): keep the engine running
        // unless the admin chose to quit on close.
        RunEvent::ExitRequested {
            code: None, api, ..
        } if app.state::<Shell>().keeps_running() => api.prevent_exit(),
        RunEvent::Exit => {
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
        _ => {}
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn the_command_line_takes_hidden_and_quit_and_nothing_else() {
        assert_eq!(parse(&[]), Ok(Args::default()));
        assert_eq!(
            parse(&["--hidden"]),
            Ok(Args {
                hidden: true,
                quit: false
            })
        );
        assert_eq!(
            parse(&["--quit"]),
            Ok(Args {
                hidden: false,
                quit: true
            })
        );
        assert!(parse(&["--help"]).is_err_and(|m| m.contains("--quit")));
        assert!(parse(&["--frobnicate"]).is_err_and(|m| m.contains("unknown argument")));
    }
}
