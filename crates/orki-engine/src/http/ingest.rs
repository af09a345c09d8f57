//! `POST /v1/events`: the ingest route and the checks of its body.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::engine::EngineHandle;

use super::{ApiError, ApiResult, bearer, is_length_limit};

/// The ingest body: `{"type": "...", "data": {...}}`; `data` is kept byte for byte.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IngestBody<'a> {
    #[serde(rename = "type")]
    event_type: Option<String>,
    #[serde(borrow)]
    data: Option<&'a serde_json::value::RawValue>,
    /// Orders the event's deliveries with those of the same key (1–200 characters).
    ordering_key: Option<String>,
}

/// A checked ingest body: the type (not yet checked to be known), `data` as
/// posted byte for byte, and the `ordering_key` if any (not yet checked).
pub type IngestParts<'a> = (String, &'a str, Option<String>);

/// Checks an ingest body: JSON, `type` a string, `data` an object, an
/// optional `ordering_key` string, nothing else. Public for the fuzzer (`fuzz/`).
pub fn parse_ingest_body(bytes: &[u8]) -> ApiResult<IngestParts<'_>> {
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
    Ok((event_type, data.get(), parsed.ordering_key))
}

pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

pub(super) fn bad_json(e: &serde_json::Error) -> ApiError {
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
pub(super) async fn ingest(
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
    let (event_type, data, ordering_key) = parse_ingest_body(&bytes)?;
    let accepted = engine
        .ingest(event_type, data.to_owned(), idempotency, ordering_key)
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
