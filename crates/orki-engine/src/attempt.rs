//! One attempt: the signed request a delivery sends, sent through
//! [`crate::outbound`], and what came back, as the attempt record to store.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;

use crate::ids::{AttemptId, DeliveryId};
use crate::model::{
    Attempt, AttemptRecord, ErrorClass, EventRecord, RequestRecord, ResponseRecord, WebhookRecord,
    redacted,
};
use crate::model::{MASK, Signature};
use crate::outbound::{Outbound, USER_AGENT};
use crate::retry::parse_retry_after;
use crate::signing::{SIGNATURE_HEADER, signature, standard_signature};

/// The `Host` header for `url`: its host, with the port unless it is the scheme's default.
fn authority(url: &url::Url) -> Option<String> {
    let host = url.host_str()?;
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}

/// Sends one signed delivery and describes the attempt (not yet stored). Also
/// returns the server's `Retry-After` on a 429 or 503, and whether the
/// connect found no route (see [`crate::network`]).
pub(crate) async fn send(
    out: &Outbound,
    webhook: &WebhookRecord,
    event: &EventRecord,
    delivery_id: DeliveryId,
    number: u32,
    test: bool,
) -> (AttemptRecord, Option<Duration>, bool) {
    let body = event.payload.clone();
    let mut headers = BTreeMap::new();
    headers.insert("Content-Type".to_owned(), "application/json".to_owned());
    headers.insert("User-Agent".to_owned(), USER_AGENT.to_owned());
    let controls = &webhook.controls;
    match (controls.signature, &controls.signing_secret) {
        (Signature::Standard, Some(secret)) => {
            let id = delivery_id.to_string();
            let now = Utc::now();
            let timestamp = now.timestamp();
            let mut signed = standard_signature(secret, &id, timestamp, body.as_bytes());
            if let Some(old) = controls.previous_secret.as_ref().filter(|p| p.until > now) {
                signed.push(' ');
                signed.push_str(&standard_signature(
                    &old.secret,
                    &id,
                    timestamp,
                    body.as_bytes(),
                ));
            }
            headers.insert("webhook-id".to_owned(), id);
            headers.insert("webhook-timestamp".to_owned(), timestamp.to_string());
            headers.insert("webhook-signature".to_owned(), signed);
        }
        _ => {
            headers.insert(
                SIGNATURE_HEADER.to_owned(),
                signature(webhook.verify_token.expose(), body.as_bytes()),
            );
        }
    }
    headers.insert("X-Orki-Event".to_owned(), event.event_type.clone());
    headers.insert("X-Orki-Delivery".to_owned(), delivery_id.to_string());

    // Set here, so the one reqwest would add is the one recorded.
    headers.insert("Accept".to_owned(), "*/*".to_owned());
    let url = webhook.parsed_url();
    let host = url.as_ref().and_then(authority);
    let mut request = match url {
        Some(url) => out.client().post(url),
        None => out.client().post(&webhook.url),
    };
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    // The admin's headers go out as they are and are recorded masked.
    for (name, value) in &controls.headers {
        request = request.header(name, value.expose());
        headers.insert(name.clone(), MASK.to_owned());
    }
    let length = body.len();
    let ex = out.exchange(request.body(body)).await;
    // What the HTTP layer adds on the wire, so the record is the exact request.
    if let Some(host) = host {
        headers.insert("Host".to_owned(), host);
    }
    headers.insert("Content-Length".to_owned(), length.to_string());

    let status = ex.status;
    let unreachable = ex.unreachable;
    let (error_class, error) = match (&ex.failure, status) {
        (Some((class, message)), _) => (Some(*class), Some(message.clone())),
        (None, Some(s)) if (200..300).contains(&s) => (None, None),
        (None, Some(s)) if (300..400).contains(&s) => (
            Some(ErrorClass::Redirect),
            Some(format!(
                "the endpoint answered HTTP {s} (redirect to {}); redirects are not followed",
                ex.headers
                    .get("location")
                    .map(String::as_str)
                    .unwrap_or("nowhere")
            )),
        ),
        (None, Some(s)) => (
            Some(ErrorClass::Status),
            Some(format!("the endpoint answered HTTP {s}, not 2xx")),
        ),
        (None, None) => (Some(ErrorClass::Connect), Some("no answer".to_owned())),
    };
    let retry_after = match status {
        Some(429 | 503) => ex
            .headers
            .get("retry-after")
            .and_then(|v| parse_retry_after(v, Utc::now())),
        _ => None,
    };
    if let Some(class) = error_class {
        tracing::debug!(url = %webhook.parsed_url().map(|u| redacted(&u)).unwrap_or_default(), error = class.as_str(), "delivery attempt failed");
    }
    let response = status.map(|s| ResponseRecord {
        status: s,
        headers: ex.headers,
        body: ex.body,
        body_truncated: ex.body_truncated,
    });
    // The attempt's id carries its time: the log's order and time filters use it.
    let id = AttemptId::generate();
    let record = AttemptRecord {
        attempt: Attempt {
            id,
            delivery_id,
            webhook_id: webhook.id,
            event_id: event.id,
            event_type: event.event_type.clone(),
            attempt: number,
            timestamp: chrono::DateTime::from_timestamp_millis(id.unix_ms() as i64)
                .unwrap_or_else(Utc::now),
            success: error_class.is_none(),
            status_code: status,
            response_time_ms: u64::try_from(ex.elapsed.as_millis()).unwrap_or(u64::MAX),
            error,
            error_class,
            test,
            next_retry_at: None,
        },
        request: RequestRecord {
            url: webhook.url.clone(),
            method: "POST".to_owned(),
            headers,
        },
        response,
    };
    (record, retry_after, unreachable)
}
