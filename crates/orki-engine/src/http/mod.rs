//! The HTTP listener's routes: ingest (`POST /v1/events`, ingest key) and the
//! admin API (admin token), behind a loopback `Host` check. Errors are mapped
//! to `{"error": {"code", "message"}}` in one place ([`ApiError`]).

mod admin;
mod ingest;
pub(crate) mod openapi;
pub(crate) mod ui;

pub use admin::TestRequest;
pub use ingest::{IngestParts, parse_ingest_body};

use admin::{
    create_webhook, delete_webhook, get_attempt, get_settings, get_webhook, held_deliveries,
    list_attempts, list_event_types, list_webhooks, patch_settings, patch_webhook, redeliver,
    replay_webhook, rotate_secret, skip_delivery, stream, test_webhook,
};
use ingest::ingest;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::Error;
use crate::engine::EngineHandle;
use crate::error::{ErrorBody, ErrorEnvelope};
use crate::ids::WebhookId;

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
pub(crate) fn router(engine: EngineHandle) -> Router {
    let admin = Router::new()
        .route("/v1/event-types", get(list_event_types))
        .route("/v1/webhooks", get(list_webhooks).post(create_webhook))
        .route(
            "/v1/webhooks/{id}",
            get(get_webhook).patch(patch_webhook).delete(delete_webhook),
        )
        .route("/v1/webhooks/{id}/test", post(test_webhook))
        .route("/v1/webhooks/{id}/replay", post(replay_webhook))
        .route("/v1/webhooks/{id}/rotate-secret", post(rotate_secret))
        .route("/v1/webhooks/{id}/held", get(held_deliveries))
        .route("/v1/deliveries/{id}/redeliver", post(redeliver))
        .route("/v1/deliveries/{id}/skip", post(skip_delivery))
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
async fn health(State(engine): State<EngineHandle>) -> Json<Value> {
    let network = engine.network().as_str();
    Json(json!({ "status": "ok", "version": crate::VERSION, "network": network }))
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::http::openapi::document())
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
