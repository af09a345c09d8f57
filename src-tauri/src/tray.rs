//! The tray icon. Its picture says how delivery goes (all healthy, some
//! webhooks failing, or the engine stopped or offline); its menu opens the
//! window, names the failing webhooks with their failure counts, switches
//! start at login, and quits.
//!
//! Where the desktop has no tray (or the indicator library is missing) the
//! app runs without one: launching it again shows the window.

use std::sync::Arc;
use std::time::Duration;

use orki_engine::EngineHandle;
use orki_engine::ids::WebhookId;
use orki_engine::network::Network;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};
use tauri_plugin_autostart::ManagerExt;
use tokio::sync::Notify;

use crate::words::Words;
use crate::{Shell, window};

const TRAY_ID: &str = "main";

/// The picture in the tray.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Picture {
    /// Every enabled webhook delivers (or there is none yet).
    Healthy,
    /// At least one enabled webhook is at its warning threshold.
    Failing,
    /// The engine did not start, or the machine is offline.
    Stopped,
}

impl Picture {
    fn image(self) -> tauri::Result<Image<'static>> {
        Image::from_bytes(match self {
            Picture::Healthy => include_bytes!("../../icons/tray-healthy.png"),
            Picture::Failing => include_bytes!("../../icons/tray-failing.png"),
            Picture::Stopped => include_bytes!("../../icons/tray-offline.png"),
        })
    }
}

/// One failing webhook in the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    id: WebhookId,
    label: String,
    failures: u32,
}

/// What the tray shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    picture: Picture,
    failing: Vec<Failing>,
    offline: bool,
    start_at_login: bool,
}

/// A webhook's URL as a short label: host and path, without the scheme.
fn label(url: &str) -> String {
    let bare = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let mut out: String = bare.chars().take(48).collect();
    if bare.chars().count() > 48 {
        out.push('…');
    }
    out
}

/// What the tray should show now.
pub async fn snapshot(app: &AppHandle) -> Snapshot {
    let start_at_login = app.autolaunch().is_enabled().unwrap_or(false);
    let engine: Option<EngineHandle> = app.state::<Shell>().handle.clone();
    let Some(engine) = engine else {
        return Snapshot {
            picture: Picture::Stopped,
            failing: Vec::new(),
            offline: false,
            start_at_login,
        };
    };
    let offline = engine.network() == Network::Offline;
    let mut failing: Vec<Failing> = engine
        .list_webhooks()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|w| w.enabled && w.warning)
        .map(|w| Failing {
            id: w.id,
            label: label(&w.url),
            failures: w.consecutive_failures,
        })
        .collect();
    failing.sort_by(|a, b| b.failures.cmp(&a.failures).then(a.label.cmp(&b.label)));
    let picture = if offline {
        Picture::Stopped
    } else if failing.is_empty() {
        Picture::Healthy
    } else {
        Picture::Failing
    };
    Snapshot {
        picture,
        failing,
        offline,
        start_at_login,
    }
}

fn menu(app: &AppHandle, s: &Snapshot, words: &Words) -> tauri::Result<Menu<Wry>> {
    let mut items: Vec<Box<dyn IsMenuItem<Wry>>> = vec![
        Box::new(MenuItem::with_id(
            app,
            "open",
            words.open,
            true,
            None::<&str>,
        )?),
        Box::new(PredefinedMenuItem::separator(app)?),
    ];
    let status = if s.offline {
        words.offline.to_owned()
    } else if s.picture == Picture::Stopped {
        words.stopped.to_owned()
    } else if s.failing.is_empty() {
        words.all_healthy.to_owned()
    } else {
        words.failing_count(s.failing.len())
    };
    items.push(Box::new(MenuItem::with_id(
        app,
        "status",
        status,
        false,
        None::<&str>,
    )?));
    for f in s.failing.iter().take(10) {
        items.push(Box::new(MenuItem::with_id(
            app,
            format!("webhook:{}", f.id),
            words.failing_webhook(&f.label, f.failures),
            true,
            None::<&str>,
        )?));
    }
    items.push(Box::new(PredefinedMenuItem::separator(app)?));
    items.push(Box::new(CheckMenuItem::with_id(
        app,
        "start_at_login",
        words.start_at_login,
        true,
        s.start_at_login,
        None::<&str>,
    )?));
    items.push(Box::new(MenuItem::with_id(
        app,
        "quit",
        words.quit,
        true,
        None::<&str>,
    )?));
    let refs: Vec<&dyn IsMenuItem<Wry>> = items.iter().map(|b| b.as_ref()).collect();
    Menu::with_items(app, &refs)
}

fn tooltip(s: &Snapshot, words: &Words) -> String {
    match (s.offline, s.picture) {
        (true, _) => format!("Orki Webhooks — {}", words.offline),
        (_, Picture::Stopped) => format!("Orki Webhooks — {}", words.stopped),
        (_, Picture::Healthy) => format!("Orki Webhooks — {}", words.all_healthy),
        (_, Picture::Failing) => {
            format!("Orki Webhooks — {}", words.failing_count(s.failing.len()))
        }
    }
}

fn on_menu(app: &AppHandle, id: &str) {
    match id {
        "open" => window::show(app),
        "quit" => {
            tracing::info!("quit from the tray menu");
            app.exit(0);
        }
        "start_at_login" => {
            let on = app.autolaunch().is_enabled().unwrap_or(false);
            if let Err(e) = crate::set_start_at_login(app, !on) {
                tracing::warn!(error = %e.message, "could not switch start at login");
            }
            refresh(app);
        }
        other if other.starts_with("webhook:") => window::show(app),
        _ => {}
    }
}

/// Puts the icon in the tray with what `snapshot` says. `None` when the
/// desktop has no tray (logged): the app goes on without one.
pub fn create(app: &AppHandle, first: &Snapshot) -> Option<TrayIcon> {
    let words = Words::for_locale();
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        TrayIconBuilder::with_id(TRAY_ID)
            .icon(first.picture.image()?)
            .tooltip(tooltip(first, words))
            .menu(&menu(app, first, words)?)
            .show_menu_on_left_click(true)
            .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
            .build(app)
    }));
    match built {
        Ok(Ok(tray)) => Some(tray),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "no tray icon: launching the app again shows the window");
            None
        }
        Err(_) => {
            tracing::warn!(
                "no tray icon (the indicator library could not be loaded): launching the app again shows the window"
            );
            None
        }
    }
}

fn apply(app: &AppHandle, s: &Snapshot) -> tauri::Result<()> {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return Ok(());
    };
    let words = Words::for_locale();
    tray.set_icon(Some(s.picture.image()?))?;
    tray.set_tooltip(Some(tooltip(s, words)))?;
    tray.set_menu(Some(menu(app, s, words)?))?;
    Ok(())
}

/// Asks the tray to catch up with the engine (cheap: coalesced).
pub fn refresh(app: &AppHandle) {
    app.state::<Refresh>().0.notify_one();
}

/// Wakes the task that keeps the tray up to date.
pub struct Refresh(pub Arc<Notify>);

/// Keeps the tray up to date: on `refresh`, and every minute for what
/// changed without an event (a webhook deleted over the HTTP API).
pub async fn keep_up(app: AppHandle, wake: Arc<Notify>, mut shown: Snapshot) {
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
        let now = snapshot(&app).await;
        if now != shown {
            if let Err(e) = apply(&app, &now) {
                tracing::warn!(error = %e, "could not update the tray icon");
            }
            shown = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_the_host_and_path_cut_short() {
        assert_eq!(
            label("https://crm.office.lan/hooks"),
            "crm.office.lan/hooks"
        );
        let long = format!("https://example.com/{}", "a".repeat(80));
        let cut = label(&long);
        assert_eq!(cut.chars().count(), 49);
        assert!(cut.ends_with('…'));
    }
}
