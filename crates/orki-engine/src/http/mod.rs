//! The HTTP listener's routes: ingest (`POST /v1/events`, ingest key) and the
//! admin API (admin token), behind a loopback `Host` check. Errors are mapped
//! to `{"error": {"code", "message"}}` in one place ([`ApiError`]).

pub mod openapi;
pub mod ui;

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use std::convert::Infallible;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::Error;
use crate::engine::{EngineEvent, EngineHandle, NewWebhook, WebhookPatch};
use crate::error::{ErrorBody, ErrorEnvelope};
use crate::ids::{AttemptId, DeliveryId, WebhookId};
use crate::query::{AttemptQuery, ReplayRequest};

/// An error answer: status, machine code, message, and the handshake step if any.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    /// An error of the HTTP layer itself (Host, token, media type…).
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code,
                message: message.into(),
                step: None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorEnvelope { error: self.body })).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %e, status = status.as_u16(), "answered with a server error");
        }
        Self {
            status,
            body: e.body(),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The whole router of the listener.
pub fn router(engine: EngineHandle) -> Router {
    let admin = Router::new()
        .route("/v1/event-types", get(list_event_types))
        .route("/v1/webhooks", get(list_webhooks).post(create_webhook))
        .route(
            "/v1/webhooks/{id}",
            get(get_webhook).patch(patch_webhook).delete(delete_webhook),
        )
        .route("/v1/webhooks/{id}/test", post(test_webhook))
        .route("/v1/webhooks/{id}/replay", post(replay_webhook))
        .route("/v1/deliveries/{id}/redeliver", post(redeliver))
        .route("/v1/settings", get(get_settings).patch(patch_settings))
        .route("/v1/stream", get(stream))
        .route("/v1/attempts", get(list_attempts))
        .route("/v1/attempts/{id}", get(get_attempt))
        .route_layer(middleware::from_fn_with_state(
            engine.clone(),
            require_admin,
        ));
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/v1/events", post(ingest))
        .merge(admin)
        .fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                if (method == axum::http::Method::GET || method == axum::http::Method::HEAD)
                    && !uri.path().starts_with("/v1/")
                    && let Some(page) = crate::http::ui::serve(&uri)
                {
                    return page;
                }
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
                    .into_response()
            },
        )
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method (see /v1/openapi.json)",
            )
        })
        .layer(middleware::from_fn(loopback_host_only))
        .with_state(engine)
}

/// Refuses requests not addressed to a loopback name or address (DNS
/// rebinding): the authority of an absolute-form target wins over `Host`
/// (RFC 9112 §3.2.2), and more than one `Host` header is a `400` (§3.2).
async fn loopback_host_only(request: Request, next: Next) -> Response {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_host",
            "send exactly one Host header",
        )
        .into_response();
    }
    let host = match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => first.and_then(|h| h.to_str().ok()),
    };
    match host {
        Some(h) if is_loopback_host(h) => next.run(request).await,
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            "this listener only answers requests addressed to localhost, 127.0.0.1 or [::1]",
        )
        .into_response(),
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with an optional numeric port.
fn is_loopback_host(host: &str) -> bool {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, "")) => (ip, None),
            Some((ip, port)) => match port.strip_prefix(':') {
                Some(port) => (ip, Some(port)),
                None => return false,
            },
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    // RFC 3986: `port = *DIGIT` (so it may be empty), within u16 here.
    let port_ok = port.is_none_or(|p| {
        p.is_empty() || (p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok())
    });
    if !port_ok {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn require_admin(
    State(engine): State<EngineHandle>,
    request: Request,
    next: Next,
) -> Response {
    match bearer(request.headers()) {
        Some(t) if engine.admin_token().matches(t) => next.run(request).await,
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong admin token: send Authorization: Bearer <admin token>",
        )
        .into_response(),
    }
}

#[utoipa::path(get, path = "/v1/health", tag = "meta",
    responses((status = 200, description = "The engine runs", body = crate::http::openapi::HealthBody)))]
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": crate::VERSION }))
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::http::openapi::document())
}

/// The ingest body: `{"type": "...", "data": {...}}`; `data` is kept byte for byte.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestBody<'a> {
    #[serde(rename = "type")]
    event_type: Option<String>,
    #[serde(borrow)]
    data: Option<&'a serde_json::value::RawValue>,
}

/// Checks an ingest body: JSON, `type` a string, `data` an object, nothing
/// else. Returns the type (not yet checked to be known) and `data` as posted,
/// byte for byte. Public for the fuzzer (`fuzz/`).
pub fn parse_ingest_body(bytes: &[u8]) -> ApiResult<(String, &str)> {
    let parsed: IngestBody<'_> = serde_json::from_slice(bytes).map_err(|e| bad_json(&e))?;
    let event_type = parsed.event_type.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "the field \"type\" is required (one of the known event types)",
        )
    })?;
    let data = parsed.data.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "the field \"data\" is required and must be a JSON object",
        )
    })?;
    if !data.get().starts_with('{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "the field \"data\" must be a JSON object",
        ));
    }
    Ok((event_type, data.get()))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn bad_json(e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("the body must be {{\"type\": \"<event type>\", \"data\": {{...}}}}: {e}"),
        ),
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        ),
    }
}

#[utoipa::path(post, path = "/v1/events", tag = "events", security(("ingest_key" = [])),
    request_body = crate::http::openapi::IngestRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
        description = "1–255 visible ASCII characters; a repeat of the same request returns the first result")),
    responses(
        (status = 202, description = "Stored durably with its deliveries (`Idempotent-Replayed: true` on a repeat)", body = crate::model::Accepted),
        (status = 400, description = "Malformed JSON, a missing/invalid field, or an invalid Idempotency-Key", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "Missing or wrong ingest key", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "Idempotency-Key reused for another request", body = crate::http::openapi::ErrorBody),
        (status = 413, description = "Body over the size limit", body = crate::http::openapi::ErrorBody),
        (status = 415, description = "Not application/json", body = crate::http::openapi::ErrorBody),
        (status = 422, description = "Unknown event type", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "Storage unavailable; nothing stored", body = crate::http::openapi::ErrorBody)))]
async fn ingest(
    State(engine): State<EngineHandle>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    match bearer(&headers) {
        Some(t) if engine.ingest_key().matches(t) => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong ingest key: send Authorization: Bearer <ingest key>",
            ));
        }
    }
    if !is_json(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the event as Content-Type: application/json",
        ));
    }
    let limit = engine.config().max_event_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // Only the size limit is a 413; a malformed chunked body or one shorter
    // than its Content-Length is the client's error in the body: a 400.
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            too_large()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                format!("the body could not be read: {e}"),
            )
        }
    })?;
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                // Visible ASCII only: `to_str` lets a tab and spaces through.
                .filter(|k| {
                    (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic())
                });
            let Some(key) = key else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                ));
            };
            Some((key.to_owned(), hex::encode(Sha256::digest(&bytes))))
        }
    };
    let (event_type, data) = parse_ingest_body(&bytes)?;
    let accepted = engine
        .ingest(event_type, data.to_owned(), idempotency)
        .await?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(json!({ "id": accepted.id, "deliveries": accepted.deliveries })),
    )
        .into_response();
    if accepted.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// Whether a body-read error is the size limit (and not a malformed body).
fn is_length_limit(error: &axum::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|e| {
        ApiError::new(
            e.status(),
            "invalid_body",
            format!("the body could not be read: {e}"),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let code = if e.is_data() {
            "invalid_field"
        } else {
            "invalid_json"
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("invalid request body: {e}"),
        )
    })
}

fn webhook_id(text: &str) -> ApiResult<WebhookId> {
    Ok(WebhookId::parse_or_not_found(text)?)
}

#[utoipa::path(get, path = "/v1/event-types", tag = "webhooks", security(("admin_token" = [])),
    responses((status = 200, description = "Every event type with a sample", body = Vec<crate::event_types::EventType>), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn list_event_types(State(engine): State<EngineHandle>) -> Json<Value> {
    Json(json!(engine.event_types()))
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("admin_token" = [])),
    responses((status = 200, description = "All webhooks, without tokens", body = crate::http::openapi::WebhookList), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn list_webhooks(State(engine): State<EngineHandle>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "items": engine.list_webhooks().await? })))
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("admin_token" = [])),
    request_body = crate::engine::NewWebhook,
    responses(
        (status = 201, description = "Verified and saved", body = crate::model::Webhook),
        (status = 400, description = "Bad URL, not https, no events, unknown type", body = crate::http::openapi::ErrorBody),
        (status = 422, description = "The handshake failed at `step`", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn create_webhook(
    State(engine): State<EngineHandle>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let new: NewWebhook = parse_body(body)?;
    let created = engine.create_webhook(new).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "The webhook, with its verify token", body = crate::model::Webhook),
        (status = 404, description = "No such webhook", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn get_webhook(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(engine.get_webhook(webhook_id(&id)?).await?).into_response())
}

#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    request_body = crate::engine::WebhookPatch,
    responses((status = 200, description = "Changed (a new URL or token was verified first)", body = crate::model::Webhook),
        (status = 400, description = "Invalid change", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "No such webhook", body = crate::http::openapi::ErrorBody),
        (status = 422, description = "The handshake failed at `step`", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn patch_webhook(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = webhook_id(&id)?;
    let patch: WebhookPatch = parse_body(body)?;
    Ok(Json(engine.update_webhook(id, patch).await?).into_response())
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted; its pending deliveries cancelled"),
        (status = 404, description = "No such webhook", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn delete_webhook(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    engine.delete_webhook(webhook_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/webhooks/{id}/test`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// The type whose sample is sent.
    #[schema(value_type = crate::event_types::EventTypeName)]
    pub event_type: String,
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    request_body = crate::http::TestRequest,
    responses((status = 200, description = "Sent at once; the attempt, recorded with test: true", body = crate::model::AttemptDetail),
        (status = 400, description = "Unknown event type", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "No such webhook", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn test_webhook(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = webhook_id(&id)?;
    let request: TestRequest = parse_body(body)?;
    Ok(Json(engine.send_test(id, &request.event_type).await?).into_response())
}

#[utoipa::path(post, path = "/v1/deliveries/{id}/redeliver", tag = "deliveries", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Delivery id")),
    responses((status = 202, description = "Queued for an attempt now", body = crate::model::DeliveryRecord),
        (status = 404, description = "No such delivery", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "Its webhook is deleted or disabled", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn redeliver(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = DeliveryId::parse_or_not_found(&id)?;
    let delivery = engine.redeliver(id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)).into_response())
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", tag = "deliveries", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    request_body(content = crate::query::ReplayRequest, description = "Required: `{}` replays every given-up delivery, `{\"dry_run\": true}` only counts them"),
    responses((status = 200, description = "Dry run: how many would be sent", body = crate::engine::ReplayResult),
        (status = 202, description = "Replayed, paced", body = crate::engine::ReplayResult),
        (status = 400, description = "No body, or an invalid filter", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "No such webhook", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "`webhook_disabled`: enable the webhook before replaying (a dry run still counts)", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn replay_webhook(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = webhook_id(&id)?;
    // No body is not "replay everything": that has to be asked for, with `{}`.
    if body.as_ref().is_ok_and(|b| b.is_empty()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "send a JSON body: {} replays every given-up delivery, {\"dry_run\": true} only counts them",
        ));
    }
    let request: ReplayRequest = parse_body(body)?;
    let result = engine.replay_failed(id, request).await?;
    let status = if result.dry_run {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(result)).into_response())
}

#[utoipa::path(get, path = "/v1/settings", tag = "settings", security(("admin_token" = [])),
    responses((status = 200, description = "The settings in force", body = crate::engine::SettingsView), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn get_settings(State(engine): State<EngineHandle>) -> ApiResult<Response> {
    Ok(Json(engine.settings_view().await?).into_response())
}

#[utoipa::path(patch, path = "/v1/settings", tag = "settings", security(("admin_token" = [])),
    request_body = crate::http::openapi::SettingsPatch,
    responses((status = 200, description = "Saved and applied", body = crate::engine::SettingsView),
        (status = 400, description = "A bad value; nothing changed", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "The ingest key comes from ORKI_INGEST_KEY", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn patch_settings(
    State(engine): State<EngineHandle>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let patch: serde_json::Map<String, Value> = parse_body(body)?;
    Ok(Json(engine.update_settings(patch).await?).into_response())
}

#[utoipa::path(get, path = "/v1/stream", tag = "events", security(("admin_token" = [])),
    responses((status = 200, description = "Server-Sent Events: attempt_recorded, webhook_health_changed, pruned, lagged", content_type = "text/event-stream", body = String), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
/// Server-Sent Events: every engine event as `event: <kind>` with a JSON `data` line.
async fn stream(
    State(engine): State<EngineHandle>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let events = engine.subscribe();
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        let (kind, data) = match events.recv().await {
            Ok(event) => {
                let kind = match &event {
                    EngineEvent::AttemptRecorded(_) => "attempt_recorded",
                    EngineEvent::WebhookHealthChanged(_) => "webhook_health_changed",
                    EngineEvent::Pruned { .. } => "pruned",
                };
                (kind, serde_json::to_string(&event).unwrap_or_default())
            }
            // A slow reader missed some events: tell it, so it can reload.
            Err(RecvError::Lagged(n)) => (
                "lagged",
                json!({ "kind": "lagged", "missed": n }).to_string(),
            ),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(SseEvent::default().event(kind).data(data)), events))
    });
    // Ends when the engine stops, so an open stream does not hold up the
    // listener's drain.
    let stream =
        futures_util::StreamExt::take_until(stream, engine.inner.cancel.clone().cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[utoipa::path(get, path = "/v1/attempts", tag = "deliveries", security(("admin_token" = [])),
    params(
        ("webhook_id" = Option<crate::ids::WebhookId>, Query, description = "Only this webhook"),
        ("event_type" = Option<crate::event_types::EventTypeName>, Query, description = "Only this event type"),
        ("outcome" = Option<crate::http::openapi::Outcome>, Query, description = "success or failure"),
        ("from" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive"),
        ("to" = Option<String>, Query, format = DateTime, description = "RFC 3339, inclusive; not before `from`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "1–500, default 50"),
        ("cursor" = Option<crate::ids::AttemptId>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "Attempts, newest first", body = crate::engine::AttemptPage),
        (status = 400, description = "Invalid filter", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn list_attempts(
    State(engine): State<EngineHandle>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Response> {
    // An unreadable query string gets the same JSON error as a bad filter.
    let Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let query = AttemptQuery::parse(&query)?;
    Ok(Json(engine.list_attempts(query).await?).into_response())
}

#[utoipa::path(get, path = "/v1/attempts/{id}", tag = "deliveries", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Attempt id")),
    responses((status = 200, description = "The attempt with the exact request and the response", body = crate::model::AttemptDetail),
        (status = 404, description = "No such attempt", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
async fn get_attempt(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = AttemptId::parse_or_not_found(&id)?;
    Ok(Json(engine.get_attempt(id).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:8787",
            "127.0.0.1",
            "127.0.0.1:80",
            "127.1.2.3:9",
            "[::1]",
            "[::1]:8787",
            "LOCALHOST:1",
            "localhost:",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:8787",
            "localhost.evil.com",
            "10.0.0.1:8787",
            "[::2]:1",
            "[::1]x",
            "0.0.0.0:8787",
            "",
            "localhost:evil",
            "localhost:18788@evil.com",
            "127.0.0.1:99999",
            "[::1]:8x",
            "user@127.0.0.1",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
