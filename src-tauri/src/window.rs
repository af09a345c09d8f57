//! The main window. It is built when shown and destroyed when closed, webview
//! and all, so that the app in the background holds the engine and the tray,
//! not a web engine.

use tauri::{AppHandle, Manager, WebviewWindowBuilder};

/// The label of the one window (tauri.conf.json, created on demand).
pub const MAIN: &str = "main";

/// Shows and focuses the window, building it first when it is closed.
pub fn show(app: &AppHandle) {
    if let Some(window) = app.get_webview_window(MAIN) {
        let _ = window.unminimize();
        let _ = window.show();
        if let Err(e) = window.set_focus() {
            tracing::debug!(error = %e, "could not focus the window");
        }
        return;
    }
    let Some(config) = app.config().app.windows.iter().find(|w| w.label == MAIN) else {
        tracing::error!("tauri.conf.json has no main window");
        return;
    };
    match WebviewWindowBuilder::from_config(app, config).and_then(|b| b.build()) {
        Ok(window) => {
            if let Err(e) = window.set_focus() {
                tracing::debug!(error = %e, "could not focus the window");
            }
            tracing::info!("window opened");
        }
        Err(e) => tracing::error!(error = %e, "could not open the window"),
    }
}
