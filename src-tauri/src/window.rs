//! The main window. It is built when shown and destroyed when closed, webview
//! and all, so that the app in the background holds the engine and the tray,
//! not a web engine: WebKit ends the window's web process itself, and
//! [`closed`] ends its network process, which WebKit keeps for the app's
//! whole life otherwise (it starts a new one for the next window).

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
            lighten(&window);
            if let Err(e) = window.set_focus() {
                tracing::debug!(error = %e, "could not focus the window");
            }
            tracing::info!("window opened");
        }
        Err(e) => tracing::error!(error = %e, "could not open the window"),
    }
}

/// After the window is destroyed: ends WebKit's network process (our child),
/// unless a window is open again. ~30 MB of the app in the background.
pub fn closed(app: &AppHandle) {
    if app.get_webview_window(MAIN).is_some() {
        return;
    }
    for pid in children_named("WebKitNetworkP") {
        match nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        ) {
            Ok(()) => tracing::debug!(pid, "ended WebKit's network process: no window needs it"),
            Err(e) => tracing::debug!(pid, error = %e, "could not end WebKit's network process"),
        }
    }
}

/// This process's children whose name (`/proc/PID/comm`, 15 bytes) starts with `prefix`.
fn children_named(prefix: &str) -> Vec<i32> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid …": comm may hold spaces and parentheses.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                return false;
            };
            let ppid = stat[close + 1..].split_whitespace().nth(1);
            stat[open + 1..close].starts_with(prefix) && ppid == Some(&me.to_string())
        })
        .collect()
}

/// Draws the UI without GPU compositing: a page of forms and tables needs
/// none, and WebKit's GL (software GL where there is no GPU) cost the web
/// process about 90 MB PSS here (docs/BENCHMARKS.md, "Desktop memory").
fn lighten(window: &tauri::WebviewWindow) {
    #[cfg(target_os = "linux")]
    let done = window.with_webview(|webview| {
        use webkit2gtk::{HardwareAccelerationPolicy, SettingsExt, WebViewExt};
        if let Some(settings) = webview.inner().settings() {
            settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
        }
    });
    #[cfg(not(target_os = "linux"))]
    let done: tauri::Result<()> = Ok(());
    if let Err(e) = done {
        tracing::debug!(error = %e, "could not change the window's WebKit settings");
    }
}
