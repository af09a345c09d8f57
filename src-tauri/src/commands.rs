//! The commands the window invokes: one-line wrappers over the engine, plus
//! the desktop app's own settings. Errors are the engine's `ErrorBody`.

use std::collections::HashMap;

use orki_engine::EngineHandle;
use orki_engine::Error;
use orki_engine::ErrorBody;
use orki_engine::engine::{
    AttemptPage, NewWebhook, ReplayResult, RotateSecret, SettingsView, WebhookPatch,
};
use orki_engine::event_types::EventType;
use orki_engine::ids::{AttemptId, DeliveryId, WebhookId};
use orki_engine::model::{AttemptDetail, DeliveryRecord, Webhook};
use orki_engine::query::{AttemptQuery, ReplayRequest};
use serde_json::{Map, Value};
use tauri::{AppHandle, State};

use crate::desktop::{DesktopPatch, DesktopView};
use crate::{EngineStatus, Shell, tray};

pub(crate) type Answer<T> = Result<T, ErrorBody>;

impl Shell {
    pub(crate) fn engine(&self) -> Answer<&EngineHandle> {
        self.handle
            .as_ref()
            .ok_or_else(|| Error::ShuttingDown.body())
    }
}

fn webhook_id(id: &str) -> Answer<WebhookId> {
    WebhookId::parse_or_not_found(id).map_err(|e| e.body())
}

#[tauri::command]
pub(crate) fn engine_status(shell: State<'_, Shell>) -> EngineStatus {
    shell.status.clone()
}

#[tauri::command]
pub(crate) fn event_types(shell: State<'_, Shell>) -> Answer<Vec<EventType>> {
    Ok(shell.engine()?.event_types())
}

#[tauri::command]
pub(crate) async fn list_webhooks(shell: State<'_, Shell>) -> Answer<Vec<Webhook>> {
    shell.engine()?.list_webhooks().await.map_err(|e| e.body())
}

#[tauri::command]
pub(crate) async fn create_webhook(
    app: AppHandle,
    shell: State<'_, Shell>,
    body: NewWebhook,
) -> Answer<Webhook> {
    let made = shell.engine()?.create_webhook(body).await;
    tray::refresh(&app);
    made.map_err(|e| e.body())
}

#[tauri::command]
pub(crate) async fn get_webhook(shell: State<'_, Shell>, id: String) -> Answer<Webhook> {
    let engine = shell.engine()?;
    engine
        .get_webhook(webhook_id(&id)?)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
pub(crate) async fn rotate_secret(
    shell: State<'_, Shell>,
    id: String,
    body: RotateSecret,
) -> Answer<Webhook> {
    let engine = shell.engine()?;
    let id = webhook_id(&id)?;
    engine.rotate_secret(id, body).await.map_err(|e| e.body())
}

#[tauri::command]
pub(crate) async fn update_webhook(
    app: AppHandle,
    shell: State<'_, Shell>,
    id: String,
    patch: WebhookPatch,
) -> Answer<Webhook> {
    let changed = shell
        .engine()?
        .update_webhook(webhook_id(&id)?, patch)
        .await;
    tray::refresh(&app);
    changed.map_err(|e| e.body())
}

#[tauri::command]
pub(crate) async fn delete_webhook(
    app: AppHandle,
    shell: State<'_, Shell>,
    id: String,
) -> Answer<()> {
    let deleted = shell.engine()?.delete_webhook(webhook_id(&id)?).await;
    tray::refresh(&app);
    deleted.map_err(|e| e.body())
}

#[tauri::command]
pub(crate) async fn test_webhook(
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
pub(crate) async fn replay_failed(
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
pub(crate) async fn redeliver(shell: State<'_, Shell>, id: String) -> Answer<DeliveryRecord> {
    let delivery = DeliveryId::parse_or_not_found(&id).map_err(|e| e.body())?;
    shell
        .engine()?
        .redeliver(delivery)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
pub(crate) async fn skip_delivery(shell: State<'_, Shell>, id: String) -> Answer<DeliveryRecord> {
    let delivery = DeliveryId::parse_or_not_found(&id).map_err(|e| e.body())?;
    shell
        .engine()?
        .skip_delivery(delivery)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
pub(crate) async fn held_deliveries(
    shell: State<'_, Shell>,
    id: String,
) -> Answer<orki_engine::store::HeldDeliveries> {
    let webhook = webhook_id(&id)?;
    shell
        .engine()?
        .held_deliveries(webhook)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
pub(crate) async fn list_attempts(
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
pub(crate) async fn get_attempt(shell: State<'_, Shell>, id: String) -> Answer<AttemptDetail> {
    let attempt = AttemptId::parse_or_not_found(&id).map_err(|e| e.body())?;
    shell
        .engine()?
        .get_attempt(attempt)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
pub(crate) async fn get_settings(shell: State<'_, Shell>) -> Answer<SettingsView> {
    shell.engine()?.settings_view().await.map_err(|e| e.body())
}

#[tauri::command]
pub(crate) async fn update_settings(
    shell: State<'_, Shell>,
    patch: Map<String, Value>,
) -> Answer<SettingsView> {
    shell
        .engine()?
        .update_settings(patch)
        .await
        .map_err(|e| e.body())
}

#[tauri::command]
pub(crate) fn desktop_settings(app: AppHandle, shell: State<'_, Shell>) -> DesktopView {
    crate::desktop_view(&app, &shell)
}

#[tauri::command]
pub(crate) fn update_desktop_settings(
    app: AppHandle,
    shell: State<'_, Shell>,
    patch: Map<String, Value>,
) -> Answer<DesktopView> {
    let patch = DesktopPatch::parse(&patch).map_err(|e| e.body())?;
    if let Some(close_action) = patch.close_action {
        shell
            .desktop()
            .change(|s| s.close_action = close_action)
            .map_err(|e| e.body())?;
        tracing::info!(?close_action, "closing the window now does this");
    }
    if let Some(on) = patch.start_at_login {
        crate::set_start_at_login(&app, on)?;
    }
    Ok(crate::desktop_view(&app, &shell))
}
