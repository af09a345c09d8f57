//! The OpenAPI document of the listener, generated from the handlers' annotations
//! and the types they return, so it cannot drift from the code. Served at
//! `GET /v1/openapi.json`.

use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::engine::{AttemptPage, NewWebhook, SettingsView, WebhookPatch};
use crate::event_types::EventType;
use crate::model::{Accepted, AttemptDetail, DeliveryRecord, Webhook};

pub(crate) use crate::error::{ErrorBody as ErrorDetail, ErrorEnvelope as ErrorBody};

/// `GET /v1/health`.
#[derive(Serialize, ToSchema)]
pub(crate) struct HealthBody {
    /// Always `ok`.
    pub status: String,
    /// The engine's version.
    pub version: String,
    /// `offline` while deliveries cannot leave the machine (no network
    /// interface up but loopback, or no route to an endpoint): they are held,
    /// not failed; endpoints on loopback are still attempted.
    pub network: crate::network::Network,
}

/// `GET /v1/webhooks`.
#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookList {
    /// Every webhook, oldest first, without tokens.
    pub items: Vec<Webhook>,
}

pub(crate) use crate::event_types::EventTypeName;

/// `outcome` of a delivery-log query.
// Only described in the document; `query` parses the parameter itself.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// 2xx in time.
    Success,
    /// Anything else.
    Failure,
}

/// One retry step the server takes: a whole number and a unit, longer than
/// zero and at most 7 days (leading zeros allowed, as the parser takes them).
const STEP: &str = "0*(?:[1-7]d\
|(?:[1-9]|[1-9][0-9]|1[0-5][0-9]|16[0-8])h\
|(?:[1-9][0-9]{0,3}|100[0-7][0-9]|10080)m\
|(?:[1-9][0-9]{0,4}|[1-5][0-9]{5}|60[0-3][0-9]{3}|604[0-7][0-9]{2}|604800)s\
|(?:[1-9][0-9]{0,7}|[1-5][0-9]{8}|60[0-3][0-9]{6}|604[0-7][0-9]{5}|604800000)ms)";

/// `retry_schedule` in a settings change: 1–50 steps, as a list or as one
/// comma-separated string.
pub(crate) struct RetrySchedule;

impl PartialSchema for RetrySchedule {
    fn schema() -> RefOr<Schema> {
        let step = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^{STEP}$")));
        let list = ArrayBuilder::new()
            .items(step)
            .min_items(Some(1))
            .max_items(Some(50));
        let text = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^ *{STEP} *(?:, *{STEP} *){{0,49}}$")));
        OneOfBuilder::new()
            .item(list)
            .item(text)
            .description(Some(
                "Waits between retries, each longer than 0 and at most 7 days: [\"10s\", \"5m\", \"2h\"] or \"10s,5m,2h\"",
            ))
            .into()
    }
}

impl ToSchema for RetrySchedule {}

/// `POST /v1/events`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IngestRequest {
    /// A known event type (an unknown one is answered `422`).
    #[serde(rename = "type")]
    #[schema(value_type = EventTypeName)]
    pub event_type: String,
    /// Any JSON object; delivered byte for byte.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// On an `ordered` webhook, events with the same key are delivered one at
    /// a time, in the order they were accepted.
    #[schema(
        required = false,
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub ordering_key: Option<String>,
}

/// `PATCH /v1/settings`: any of these; every value is validated before any
/// is saved, and `{}` changes nothing.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsPatch {
    /// 1024–65535; applied on restart.
    #[schema(required = false, minimum = 1024, maximum = 65535)]
    pub listen_port: u16,
    /// Durations such as `["10s", "5m", "2h"]` (or one comma-separated string).
    #[schema(required = false, value_type = RetrySchedule)]
    pub retry_schedule: Vec<String>,
    /// 1–1000.
    #[schema(required = false, minimum = 1, maximum = 1000)]
    pub warning_threshold: u32,
    /// 1–8760 hours, or null: never pause a failing webhook by itself.
    #[schema(minimum = 1, maximum = 8760)]
    pub auto_pause_after_hours: Option<u32>,
    /// 1–3650.
    #[schema(required = false, minimum = 1, maximum = 3650)]
    pub retention_days: u32,
    /// 1 to 2^53 - 1 (exact in JavaScript), or null for no cap.
    #[schema(minimum = 1, maximum = 9_007_199_254_740_991_u64)]
    pub max_database_mb: Option<u64>,
    /// Accept `http://` to loopback. `--allow-http-localhost` turns it on for
    /// the run whatever is stored (`allow_http_localhost_from_flag` in the answer).
    #[schema(required = false)]
    pub allow_http_localhost: bool,
    /// `true` makes a new ingest key (`409` when it comes from `ORKI_INGEST_KEY`).
    #[schema(required = false)]
    pub regenerate_ingest_key: bool,
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
        crate::http::health,
        crate::http::openapi_json,
        crate::http::ingest::ingest,
        crate::http::admin::list_event_types,
        crate::http::admin::list_webhooks,
        crate::http::admin::create_webhook,
        crate::http::admin::get_webhook,
        crate::http::admin::patch_webhook,
        crate::http::admin::delete_webhook,
        crate::http::admin::rotate_secret,
        crate::http::admin::test_webhook,
        crate::http::admin::replay_webhook,
        crate::http::admin::redeliver,
        crate::http::admin::skip_delivery,
        crate::http::admin::held_deliveries,
        crate::http::admin::list_attempts,
        crate::http::admin::get_attempt,
        crate::http::admin::get_settings,
        crate::http::admin::patch_settings,
        crate::http::admin::stream,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, HealthBody, WebhookList, IngestRequest, crate::http::TestRequest,
        EventTypeName, Outcome, RetrySchedule,
        crate::query::ReplayRequest, crate::engine::ReplayResult, SettingsPatch, Accepted, AttemptDetail, AttemptPage,
        DeliveryRecord, EventType, NewWebhook, WebhookPatch, SettingsView, Webhook,
        crate::engine::RotateSecret, crate::model::PauseReason, crate::model::Signature,
        crate::store::HeldDeliveries, crate::store::HeldKey
    )),
    modifiers(&Security)
)]
pub(crate) struct ApiDoc;

/// The document as JSON.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.to_owned();
    doc
}
