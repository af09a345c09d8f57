//! The admin API's routes: event types, webhooks, test events, redelivery
//! and replay, settings, the delivery log and the live stream.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::engine::{EngineEvent, EngineHandle, NewWebhook, RotateSecret, WebhookPatch};
use crate::ids::{AttemptId, DeliveryId};
use crate::query::{AttemptQuery, ReplayRequest};

use super::{ApiError, ApiResult, parse_body, webhook_id};

#[utoipa::path(get, path = "/v1/event-types", tag = "webhooks", security(("admin_token" = [])),
    responses((status = 200, description = "Every event type with a sample", body = Vec<crate::event_types::EventType>), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
pub(super) async fn list_event_types(State(engine): State<EngineHandle>) -> Json<Value> {
    Json(json!(engine.event_types()))
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("admin_token" = [])),
    responses((status = 200, description = "All webhooks, without tokens", body = crate::http::openapi::WebhookList), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
pub(super) async fn list_webhooks(State(engine): State<EngineHandle>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "items": engine.list_webhooks().await? })))
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("admin_token" = [])),
    request_body = crate::engine::NewWebhook,
    responses(
        (status = 201, description = "Verified and saved", body = crate::model::Webhook),
        (status = 400, description = "Bad URL, not https, no events, unknown type", body = crate::http::openapi::ErrorBody),
        (status = 422, description = "The handshake failed at `step`", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
pub(super) async fn create_webhook(
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
pub(super) async fn get_webhook(
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
pub(super) async fn patch_webhook(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = webhook_id(&id)?;
    let patch: WebhookPatch = parse_body(body)?;
    Ok(Json(engine.update_webhook(id, patch).await?).into_response())
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    request_body = crate::engine::RotateSecret,
    responses((status = 200, description = "A new `signing_secret`; the old one signs too until `rotation_ends_at`", body = crate::model::Webhook),
        (status = 400, description = "Invalid grace period", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "No such webhook", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "`not_standard_signature`: the webhook signs with X-Hub-Signature-256", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
pub(super) async fn rotate_secret(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = webhook_id(&id)?;
    let request: RotateSecret = parse_body(body)?;
    Ok(Json(engine.rotate_secret(id, request).await?).into_response())
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 204, description = "Deleted; its pending deliveries cancelled"),
        (status = 404, description = "No such webhook", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
pub(super) async fn delete_webhook(
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
pub(super) async fn test_webhook(
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
        (status = 409, description = "Its webhook is deleted, disabled or paused", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
pub(super) async fn redeliver(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = DeliveryId::parse_or_not_found(&id)?;
    let delivery = engine.redeliver(id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)).into_response())
}

#[utoipa::path(post, path = "/v1/deliveries/{id}/skip", tag = "deliveries", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Delivery id")),
    responses((status = 200, description = "Given up by hand (bulk replay finds it); the next delivery of its ordering key goes", body = crate::model::DeliveryRecord),
        (status = 404, description = "No such delivery", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "`not_pending`: it is not waiting to be sent", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
pub(super) async fn skip_delivery(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = DeliveryId::parse_or_not_found(&id)?;
    Ok(Json(engine.skip_delivery(id).await?).into_response())
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/held", tag = "deliveries", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    responses((status = 200, description = "The ordering keys held back by a failing delivery (at most 100), and how many deliveries wait behind one", body = crate::store::HeldDeliveries),
        (status = 404, description = "No such webhook", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
pub(super) async fn held_deliveries(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = webhook_id(&id)?;
    Ok(Json(engine.held_deliveries(id).await?).into_response())
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", tag = "deliveries", security(("admin_token" = [])),
    params(("id" = String, Path, description = "Webhook id")),
    request_body(content = crate::query::ReplayRequest, description = "Required: `{}` replays every given-up delivery, `{\"dry_run\": true}` only counts them"),
    responses((status = 200, description = "Dry run: how many would be sent", body = crate::engine::ReplayResult),
        (status = 202, description = "Replayed, paced", body = crate::engine::ReplayResult),
        (status = 400, description = "No body, or an invalid filter", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "No such webhook", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "`webhook_disabled`: enable the webhook before replaying (a dry run still counts)", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
pub(super) async fn replay_webhook(
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
pub(super) async fn get_settings(State(engine): State<EngineHandle>) -> ApiResult<Response> {
    Ok(Json(engine.settings_view().await?).into_response())
}

#[utoipa::path(patch, path = "/v1/settings", tag = "settings", security(("admin_token" = [])),
    request_body = crate::http::openapi::SettingsPatch,
    responses((status = 200, description = "Saved and applied", body = crate::engine::SettingsView),
        (status = 400, description = "A bad value; nothing changed", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "The ingest key comes from ORKI_INGEST_KEY", body = crate::http::openapi::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
pub(super) async fn patch_settings(
    State(engine): State<EngineHandle>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let patch: serde_json::Map<String, Value> = parse_body(body)?;
    Ok(Json(engine.update_settings(patch).await?).into_response())
}

#[utoipa::path(get, path = "/v1/stream", tag = "events", security(("admin_token" = [])),
    responses((status = 200, description = "Server-Sent Events: attempt_recorded, webhook_health_changed, network_changed, pruned, lagged", content_type = "text/event-stream", body = String), (status = 401, description = "Missing or wrong admin token", body = crate::http::openapi::ErrorBody)))]
/// Server-Sent Events: every engine event as `event: <kind>` with a JSON `data` line.
pub(super) async fn stream(
    State(engine): State<EngineHandle>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let events = engine.subscribe();
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        let (kind, data) = match events.recv().await {
            Ok(event) => {
                let kind = match &event {
                    EngineEvent::AttemptRecorded(_) => "attempt_recorded",
                    EngineEvent::WebhookHealthChanged(_) => "webhook_health_changed",
                    EngineEvent::NetworkChanged { .. } => "network_changed",
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
pub(super) async fn list_attempts(
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
pub(super) async fn get_attempt(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = AttemptId::parse_or_not_found(&id)?;
    Ok(Json(engine.get_attempt(id).await?).into_response())
}
