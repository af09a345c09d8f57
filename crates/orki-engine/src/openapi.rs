//! The OpenAPI document of the listener, generated from the handlers' annotations
//! and the types they return, so it cannot drift from the code. Served at
//! `GET /v1/openapi.json`.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::engine::{AttemptPage, NewWebhook, SettingsView, WebhookPatch};
use crate::event_types::EventType;
use crate::model::{Accepted, AttemptDetail, DeliveryRecord, Webhook};

/// `{"error": {...}}`, the shape of every error.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable, e.g. `unknown_event_type`.
    pub code: String,
    /// For a person.
    pub message: String,
    /// For `verification_failed`: `dns`, `connect`, `tls`, `timeout`, `status`, `challenge_mismatch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

/// `GET /v1/health`.
#[derive(Serialize, ToSchema)]
pub struct HealthBody {
    /// Always `ok`.
    pub status: String,
    /// The engine's version.
    pub version: String,
}

/// `GET /v1/webhooks`.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    /// Every webhook, oldest first, without tokens.
    pub items: Vec<Webhook>,
}

/// `POST /v1/events`.
#[derive(Serialize, ToSchema)]
pub struct IngestRequest {
    /// A known event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Any JSON object; delivered byte for byte.
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// `PATCH /v1/settings`: any of these; every value is validated before any is saved.
#[derive(Serialize, ToSchema)]
pub struct SettingsPatch {
    /// 1024–65535; applied on restart.
    pub listen_port: Option<u16>,
    /// Durations such as `["10s", "5m", "2h"]` (or one comma-separated string).
    pub retry_schedule: Option<Vec<String>>,
    /// 1–1000.
    pub warning_threshold: Option<u32>,
    /// 1–3650.
    pub retention_days: Option<u32>,
    /// At least 1, or null for no cap.
    pub max_database_mb: Option<u64>,
    /// Accept `http://` to loopback.
    pub allow_http_localhost: Option<bool>,
    /// `true` makes a new ingest key.
    pub regenerate_ingest_key: Option<bool>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["admin_token", "ingest_key"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Orki Webhooks", description = "Local ingest and admin API of Orki Webhooks."),
    paths(
        crate::api::health,
        crate::api::openapi_json,
        crate::api::ingest,
        crate::api::list_event_types,
        crate::api::list_webhooks,
        crate::api::create_webhook,
        crate::api::get_webhook,
        crate::api::patch_webhook,
        crate::api::delete_webhook,
        crate::api::test_webhook,
        crate::api::replay_webhook,
        crate::api::redeliver,
        crate::api::list_attempts,
        crate::api::get_attempt,
        crate::api::get_settings,
        crate::api::patch_settings,
        crate::api::stream,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, HealthBody, WebhookList, IngestRequest, crate::api::TestRequest,
        crate::query::ReplayRequest, crate::engine::ReplayResult, SettingsPatch, Accepted, AttemptDetail, AttemptPage,
        DeliveryRecord, EventType, NewWebhook, WebhookPatch, SettingsView, Webhook
    )),
    modifiers(&Security)
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.to_owned();
    doc
}
