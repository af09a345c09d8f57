//! The HTTP listener's routes: ingest (`POST /v1/events`, ingest key) and the
//! admin API (admin token), behind a loopback `Host` check. Errors are mapped
//! to `{"error": {"code", "message"}}` in one place ([`ApiError`]).

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::engine::{EngineHandle, NewWebhook, WebhookPatch};
use crate::handshake::Step;
use crate::ids::{AttemptId, WebhookId};
use crate::{Error, event_types};

/// An error answer: status, machine code, message, and the handshake step if any.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    step: Option<Step>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            step: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(step) = self.step {
            error["step"] = json!(step.as_str());
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid { code, message } => Self::new(StatusCode::BAD_REQUEST, code, message),
            Error::UnknownEventType(t) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_event_type",
                format!(
                    "unknown event type {t:?}; known types: {}",
                    event_types::NAMES.join(", ")
                ),
            ),
            Error::Verification(f) => Self {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "verification_failed",
                message: format!("verification failed ({}): {}", f.step.as_str(), f.message),
                step: Some(f.step),
            },
            Error::NotFound { kind, id } => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{kind} {id} not found"),
            ),
            e @ Error::IdempotencyConflict(_) => {
                Self::new(StatusCode::CONFLICT, "idempotency_conflict", e.to_string())
            }
            Error::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the engine is shutting down; try again shortly",
            ),
            e @ (Error::Storage(_)
            | Error::Corrupt(_)
            | Error::AlreadyRunning(_)
            | Error::Io { .. }) => {
                tracing::error!(error = %e, "storage failure answered with 503");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "storage is unavailable; nothing was stored, try again",
                )
            }
            e @ Error::Config(_) => {
                tracing::error!(error = %e, "configuration error answered with 500");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
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
        .route("/v1/attempts", get(list_attempts))
        .route("/v1/attempts/{id}", get(get_attempt))
        .route_layer(middleware::from_fn_with_state(
            engine.clone(),
            require_admin,
        ));
    Router::new()
        .route("/", get(index))
        .route("/v1/health", get(health))
        .route("/v1/events", post(ingest))
        .merge(admin)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(middleware::from_fn(loopback_host_only))
        .with_state(engine)
}

/// Refuses requests whose `Host` is not a loopback name or address (DNS rebinding).
async fn loopback_host_only(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(h) if is_loopback_host(&h) => next.run(request).await,
        _ => ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            "this listener only answers requests addressed to localhost, 127.0.0.1 or [::1]",
        )
        .into_response(),
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with an optional port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip,
            _ => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
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

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": crate::VERSION }))
}

async fn index() -> Html<&'static str> {
    Html(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Orki Webhooks</title>\
         <body style=\"font-family:system-ui;margin:3rem\"><h1>Orki Webhooks</h1>\
         <p>The engine is running. The admin API is under <code>/v1/</code>.</p></body></html>",
    )
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
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255);
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
    let parsed: IngestBody<'_> = serde_json::from_slice(&bytes).map_err(|e| bad_json(&e))?;
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
    let accepted = engine
        .ingest(event_type, data.get().to_owned(), idempotency)
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
    WebhookId::parse(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("webhook {text} not found"),
        )
    })
}

async fn list_event_types(State(engine): State<EngineHandle>) -> Json<Value> {
    Json(json!(engine.event_types()))
}

async fn list_webhooks(State(engine): State<EngineHandle>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "items": engine.list_webhooks().await? })))
}

async fn create_webhook(
    State(engine): State<EngineHandle>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let new: NewWebhook = parse_body(body)?;
    let created = engine.create_webhook(new).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn get_webhook(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(engine.get_webhook(webhook_id(&id)?).await?).into_response())
}

async fn patch_webhook(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let id = webhook_id(&id)?;
    let patch: WebhookPatch = parse_body(body)?;
    Ok(Json(engine.update_webhook(id, patch).await?).into_response())
}

async fn delete_webhook(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    engine.delete_webhook(webhook_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_attempts(
    State(engine): State<EngineHandle>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let mut limit = 50;
    let mut cursor = None;
    for (name, value) in &query {
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=500).contains(n))
                    .ok_or_else(|| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_query",
                            format!("limit must be a whole number from 1 to 500, not {value:?}"),
                        )
                    })?;
            }
            "cursor" => {
                cursor = Some(AttemptId::parse(value).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_query",
                        format!("cursor {value:?} is not a next_cursor value from this API"),
                    )
                })?);
            }
            other => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!("unknown query parameter {other:?}; use limit and cursor"),
                ));
            }
        }
    }
    Ok(Json(engine.list_attempts(cursor, limit).await?).into_response())
}

async fn get_attempt(
    State(engine): State<EngineHandle>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = AttemptId::parse(&id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("attempt {id} not found"),
        )
    })?;
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
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
