//! Settings: what `GET /v1/settings` shows, and changing them.

use serde::Serialize;
use serde_json::{Map, Value};

use super::EngineHandle;
use crate::retry::format_duration;
use crate::sync::Shared;
use crate::{Error, Result};

/// The settings as the admin sees them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SettingsView {
    /// Where the listener is bound now.
    pub listen_address: String,
    /// The stored port (used at the next start).
    pub listen_port: u16,
    /// The stored port differs from the one in use: restart to apply it.
    pub restart_required: bool,
    /// Waits between retries, e.g. `["5s", "30s", "2m"]`.
    pub retry_schedule: Vec<String>,
    /// Consecutive failures at which a webhook shows a warning.
    pub warning_threshold: u32,
    /// Hours of nothing but failures after which a webhook is paused (`null`: never).
    pub auto_pause_after_hours: Option<u32>,
    /// Days attempts and events are kept.
    pub retention_days: u32,
    /// Size cap of the database file, if any.
    pub max_database_mb: Option<u64>,
    /// Plain `http://` to loopback is accepted (in force now: the stored
    /// setting, or `--allow-http-localhost`).
    pub allow_http_localhost: bool,
    /// `--allow-http-localhost` was given: plain `http://` to loopback is
    /// accepted for this run whatever is stored; a `PATCH` changes only the
    /// stored setting, used once the flag is gone.
    pub allow_http_localhost_from_flag: bool,
    /// The key local tools post events with.
    pub ingest_key: String,
    /// The ingest key comes from `ORKI_INGEST_KEY` (not regenerable here).
    pub ingest_key_from_env: bool,
}

impl EngineHandle {
    /// The settings as `GET /v1/settings` shows them.
    pub async fn settings_view(&self) -> Result<SettingsView> {
        let stored = self.storage().load_settings().await?;
        let effective = self.settings();
        let addr = self.inner.local_addr;
        Ok(SettingsView {
            listen_address: addr.to_string(),
            listen_port: stored.listen_port,
            restart_required: stored.listen_port != addr.port(),
            retry_schedule: effective
                .retry_schedule_ms
                .iter()
                .map(|ms| format_duration(*ms))
                .collect(),
            warning_threshold: effective.warning_threshold,
            auto_pause_after_hours: effective.auto_pause_after_hours,
            retention_days: effective.retention_days,
            max_database_mb: effective.max_database_mb,
            allow_http_localhost: effective.allow_http_localhost
                || self.inner.config.allow_http_localhost,
            allow_http_localhost_from_flag: self.inner.config.allow_http_localhost,
            ingest_key: self.ingest_key().expose().to_owned(),
            ingest_key_from_env: self.inner.config.ingest_key.is_some(),
        })
    }

    /// Changes settings (`PATCH /v1/settings`): all fields are validated first, and a
    /// bad one changes nothing. `regenerate_ingest_key: true` makes a new ingest key.
    pub async fn update_settings(&self, patch: Map<String, Value>) -> Result<SettingsView> {
        let key_from_env = self.inner.config.ingest_key.is_some();
        let (inner, applied) = (self.inner.clone(), patch.clone());
        // `{}`, or only the values already stored: nothing is written.
        self.storage()
            .change_settings(
                move |stored| {
                    let regenerate = stored.apply_patch(&patch)?;
                    if regenerate && key_from_env {
                        return Err(Error::Conflict {
                            code: "ingest_key_from_env",
                            message: "the ingest key is set by ORKI_INGEST_KEY; change it there"
                                .into(),
                        });
                    }
                    Ok(regenerate)
                },
                move |fresh| {
                    // Same checks as on the stored settings, so this cannot fail halfway.
                    inner.settings.writing().apply_patch(&applied)?;
                    if let Some(key) = fresh {
                        inner.credentials.writing().ingest_key = key;
                        tracing::info!("ingest key regenerated");
                    }
                    // Logged by the job: a caller that goes away cannot skip it.
                    tracing::info!(fields = ?applied.keys().collect::<Vec<_>>(), "settings changed");
                    Ok(())
                },
            )
            .await?;
        self.settings_view().await
    }
}
