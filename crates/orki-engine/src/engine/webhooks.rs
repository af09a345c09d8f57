//! The registry: registering (with the handshake), changing, listing and
//! deleting webhooks, test events, and the checks of what the admin enters.

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use url::Url;

use super::{EngineEvent, EngineHandle};
use crate::event_types::{self, EventType};
use crate::handshake;
use crate::ids::{DeliveryId, EventId, WebhookId};
use crate::model::redacted;
use crate::model::{
    AttemptDetail, Controls, DeliveryRecord, DeliveryState, EventRecord, Pause, PauseReason,
    PreviousSecret, RequestView, Signature, Webhook, WebhookRecord,
};
use crate::settings::whole;
use crate::signing::generate_whsec;
use crate::{Error, Result, Secret};

/// A new webhook as the admin enters it.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `https://…` (or `http://` to loopback when allowed), at most 2048
    /// characters, without a `#fragment`.
    #[schema(format = "uri", pattern = "^https://[^#]+$", max_length = 2048)]
    pub url: String,
    /// The shared secret: 1–512 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 512,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub verify_token: String,
    /// Event types to subscribe to (at least one).
    #[schema(value_type = Vec<crate::event_types::EventTypeName>, min_items = 1)]
    pub events: Vec<String>,
    /// Starts enabled unless `false`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Starts paused (deliveries held) when `true`.
    #[serde(default)]
    pub paused: Option<bool>,
    /// Extra request headers (at most 20; see SPEC for the names refused).
    #[serde(default)]
    #[schema(value_type = Option<HeadersSchema>)]
    pub headers: Option<BTreeMap<String, String>>,
    /// At most this many sends per second (1–10,000; `null`: no limit).
    #[serde(default)]
    #[schema(value_type = Option<u64>, nullable, minimum = 1, maximum = 10000)]
    pub rate_limit_per_s: Option<serde_json::Value>,
    /// `hub` (default) or `standard` (Standard Webhooks; a `whsec_` secret is made).
    #[serde(default)]
    pub signature: Option<Signature>,
    /// `true`: events with the same `ordering_key` are delivered one at a
    /// time, in the order they were accepted.
    #[serde(default)]
    pub ordered: Option<bool>,
}

/// Changes to a webhook; absent fields stay as they are.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    /// A new URL (re-runs the handshake).
    #[schema(format = "uri", pattern = "^https://[^#]+$", max_length = 2048)]
    pub url: Option<String>,
    /// A new verify token (re-runs the handshake).
    #[schema(
        min_length = 1,
        max_length = 512,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    pub verify_token: Option<String>,
    /// New subscriptions (at least one).
    #[schema(value_type = Option<Vec<crate::event_types::EventTypeName>>, min_items = 1)]
    pub events: Option<Vec<String>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// Pause (deliveries held, nothing lost) or resume (held ones go out, oldest first).
    pub paused: Option<bool>,
    /// Replaces the extra request headers (`{}` removes them all).
    #[schema(value_type = Option<HeadersSchema>)]
    pub headers: Option<BTreeMap<String, String>>,
    /// A new rate limit (1–10,000 per second), or `null` for none.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, nullable, minimum = 1, maximum = 10000)]
    pub rate_limit_per_s: Option<Option<serde_json::Value>>,
    /// `hub` or `standard` (a `whsec_` secret is made the first time).
    pub signature: Option<Signature>,
    /// Order deliveries per `ordering_key` from now on (`false`: new events
    /// are not ordered; those already waiting still go in order).
    pub ordered: Option<bool>,
}

/// `POST /v1/webhooks/{id}/rotate-secret`.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// Hours the old secret keeps signing too (0–720, default 24).
    #[serde(default)]
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 720)]
    pub grace_hours: Option<serde_json::Value>,
}

/// A field that may be sent as `null`: `Some(None)`; absent: `None` (by `default`).
fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

impl EngineHandle {
    /// Registers a webhook: validates, runs the handshake, then saves.
    pub async fn create_webhook(&self, new: NewWebhook) -> Result<Webhook> {
        let url = self.validate_url(&new.url)?;
        let token = validate_token(&new.verify_token)?;
        let events = validate_events(new.events)?;
        let headers = new.headers.map(validate_headers).transpose()?;
        let rate = new
            .rate_limit_per_s
            .filter(|r| !r.is_null())
            .map(validate_rate)
            .transpose()?;
        self.handshake(&url, &token).await?;
        let mut record = WebhookRecord::new(
            url.to_string(),
            Secret::new(token),
            events,
            new.enabled.unwrap_or(true),
        );
        let c = &mut record.controls;
        c.headers = headers.unwrap_or_default();
        c.rate_limit_per_s = rate;
        if new.paused == Some(true) {
            c.paused = Some(admin_pause());
        }
        if let Some(signature) = new.signature {
            set_signature(c, signature);
        }
        c.ordered = new.ordered.unwrap_or(false);
        let inner = self.inner.clone();
        self.storage()
            .insert_webhook(record.clone(), move |saved| {
                inner.cache_webhook(saved.id, Some(saved))
            })
            .await?;
        tracing::info!(webhook = %record.id, url = %redacted(&url), "webhook registered");
        Ok(record.view(self.threshold(), true, 0))
    }

    /// Changes a webhook; a new URL or token is verified first.
    pub async fn update_webhook(&self, id: WebhookId, patch: WebhookPatch) -> Result<Webhook> {
        let current = self
            .storage()
            .get_webhook(id)
            .await?
            .ok_or_else(|| Error::not_found("webhook", id))?;
        let url = patch
            .url
            .as_deref()
            .map(|u| self.validate_url(u))
            .transpose()?;
        let token = patch
            .verify_token
            .as_deref()
            .map(validate_token)
            .transpose()?;
        let events = patch.events.map(validate_events).transpose()?;
        let headers = patch.headers.map(validate_headers).transpose()?;
        let rate = patch
            .rate_limit_per_s
            .map(|r| r.map(validate_rate).transpose())
            .transpose()?;
        let (paused, signature, ordered) = (patch.paused, patch.signature, patch.ordered);
        let url_changed = url.as_ref().is_some_and(|u| u.as_str() != current.url);
        let token_changed = token
            .as_ref()
            .is_some_and(|t| !current.verify_token.matches(t));
        if url_changed || token_changed {
            let check_url = match &url {
                Some(u) => u.clone(),
                None => Url::parse(&current.url).map_err(|e| Error::Corrupt(e.to_string()))?,
            };
            let check_token = token
                .clone()
                .unwrap_or_else(|| current.verify_token.expose().to_owned());
            self.handshake(&check_url, &check_token).await?;
        }
        let enabled = patch.enabled;
        let inner = self.inner.clone();
        let updated = self
            .storage()
            .update_webhook(
                id,
                move |w| {
                    // `updated_at` moves only when something does (not for `{}`).
                    let mut changed = false;
                    if let Some(u) = url.filter(|u| u.as_str() != w.url) {
                        w.url = u.to_string();
                        changed = true;
                    }
                    if let Some(t) = token.filter(|t| !w.verify_token.matches(t)) {
                        w.verify_token = Secret::new(t);
                        changed = true;
                    }
                    if let Some(e) = events.filter(|e| *e != w.events) {
                        w.events = e;
                        changed = true;
                    }
                    if let Some(e) = enabled.filter(|e| *e != w.enabled) {
                        if e {
                            // A re-enabled webhook starts with a clean slate.
                            w.consecutive_failures = 0;
                        }
                        w.enabled = e;
                        changed = true;
                    }
                    let c = &mut w.controls;
                    if let Some(p) = paused.filter(|p| *p != c.paused.is_some()) {
                        // A resumed webhook gets a full window before auto-pause.
                        c.failing_since = None;
                        c.paused = p.then(admin_pause);
                        changed = true;
                    }
                    if let Some(h) = headers.filter(|h| *h != c.headers) {
                        c.headers = h;
                        changed = true;
                    }
                    if let Some(r) = rate.filter(|r| *r != c.rate_limit_per_s) {
                        c.rate_limit_per_s = r;
                        changed = true;
                    }
                    if let Some(sig) = signature.filter(|s| *s != c.signature) {
                        set_signature(c, sig);
                        changed = true;
                    }
                    if let Some(o) = ordered.filter(|o| *o != c.ordered) {
                        c.ordered = o;
                        changed = true;
                    }
                    if changed {
                        w.updated_at = Utc::now();
                    }
                    Ok(())
                },
                move |updated| {
                    inner.cache_webhook(id, Some(updated.clone()));
                    if !updated.enabled {
                        inner.queue.forget_webhook(id);
                    }
                },
            )
            .await?;
        if let Some(p) = paused {
            tracing::info!(webhook = %id, paused = p, "webhook {}", if p { "paused" } else { "resumed" });
        }
        tracing::info!(webhook = %id, "webhook updated");
        self.view_one(&updated).await
    }

    /// A new Standard Webhooks secret; the old one keeps signing too for
    /// `grace_hours` (`409` for a webhook with `hub` signatures).
    pub async fn rotate_secret(&self, id: WebhookId, request: RotateSecret) -> Result<Webhook> {
        let hours = match request.grace_hours {
            None | Some(serde_json::Value::Null) => 24,
            Some(v) => whole(&v).filter(|h| *h <= 720).ok_or_else(|| {
                Error::invalid(
                    "invalid_grace_hours",
                    "grace_hours must be a whole number of hours from 0 to 720",
                )
            })?,
        };
        let inner = self.inner.clone();
        let updated = self
            .storage()
            .update_webhook(
                id,
                move |w| {
                    let c = &mut w.controls;
                    if c.signature != Signature::Standard {
                        return Err(Error::Conflict {
                            code: "not_standard_signature",
                            message: "this webhook signs with X-Hub-Signature-256: change its verify token to rotate, or switch it to Standard Webhooks signatures first".into(),
                        });
                    }
                    let now = Utc::now();
                    let old = c.signing_secret.replace(generate_whsec());
                    c.previous_secret = old.filter(|_| hours > 0).map(|secret| PreviousSecret {
                        secret,
                        until: now + chrono::Duration::hours(hours as i64),
                    });
                    w.updated_at = now;
                    Ok(())
                },
                move |updated| inner.cache_webhook(id, Some(updated.clone())),
            )
            .await?;
        tracing::info!(webhook = %id, grace_hours = hours, "signing secret rotated");
        self.view_one(&updated).await
    }

    /// The single-webhook answer: secrets revealed, with its pending count.
    async fn view_one(&self, record: &WebhookRecord) -> Result<Webhook> {
        let pending = self.storage().pending_by_webhook(Some(record.id)).await?;
        let count = pending.get(&record.id).copied().unwrap_or(0);
        Ok(record.view(self.threshold(), true, count))
    }

    /// One webhook, with its verify token.
    pub async fn get_webhook(&self, id: WebhookId) -> Result<Webhook> {
        let record = self
            .storage()
            .get_webhook(id)
            .await?
            .ok_or_else(|| Error::not_found("webhook", id))?;
        self.view_one(&record).await
    }

    /// All webhooks, oldest first, without secrets.
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>> {
        let threshold = self.threshold();
        let records = self.storage().list_webhooks().await?;
        let pending = self.storage().pending_by_webhook(None).await?;
        Ok(records
            .iter()
            .map(|r| r.view(threshold, false, pending.get(&r.id).copied().unwrap_or(0)))
            .collect())
    }

    /// Deletes a webhook and cancels its pending deliveries.
    pub async fn delete_webhook(&self, id: WebhookId) -> Result<()> {
        let inner = self.inner.clone();
        self.storage()
            .delete_webhook(id, move || {
                inner.cache_webhook(id, None);
                inner.queue.forget_webhook(id);
            })
            .await?;
        tracing::info!(webhook = %id, "webhook deleted");
        Ok(())
    }

    /// Sends the sample of `event_type` to a webhook now, signed like any delivery,
    /// and records it as a test (not counted in the webhook's health).
    pub async fn send_test(&self, id: WebhookId, event_type: &str) -> Result<AttemptDetail> {
        let sample = event_types::find(event_type).ok_or_else(|| {
            Error::invalid(
                "unknown_event_type",
                event_types::unknown_message(event_type),
            )
        })?;
        // Sent and recorded by a task of the engine: a test the endpoint
        // received is in the log even if the admin's request was cut off.
        let engine = self.clone();
        self.detached(async move { engine.test_now(id, sample).await })
            .await
    }

    async fn test_now(&self, id: WebhookId, sample: EventType) -> Result<AttemptDetail> {
        let webhook = self
            .storage()
            .get_webhook(id)
            .await?
            .ok_or_else(|| Error::not_found("webhook", id))?;
        let now = Utc::now();
        let event_id = EventId::generate();
        let event = EventRecord {
            id: event_id,
            event_type: sample.name.to_owned(),
            created_at: now,
            payload: crate::store::envelope(
                event_id,
                sample.name,
                now,
                &sample.sample.to_string(),
            )?,
            test: true,
            idempotency_key: None,
            ordering_key: None,
        };
        let delivery_id = DeliveryId::generate();
        let (record, _, _) =
            crate::attempt::send(&self.inner.outbound, &webhook, &event, delivery_id, 1, true)
                .await;
        let delivery = DeliveryRecord {
            id: delivery_id,
            event_id,
            webhook_id: id,
            event_type: event.event_type.clone(),
            created_at: now,
            attempts: 1,
            state: if record.attempt.success {
                DeliveryState::Succeeded
            } else {
                DeliveryState::Failed
            },
            due_ms: None,
            test: true,
            ordering: None,
        };
        let (e, d, r) = (event.clone(), delivery, record.clone());
        self.storage().record_test(e, d, r).await?;
        tracing::info!(webhook = %id, success = record.attempt.success, "test event sent");
        self.publish(EngineEvent::AttemptRecorded(record.attempt.clone()));
        Ok(AttemptDetail {
            attempt: record.attempt,
            request: RequestView {
                url: record.request.url,
                method: record.request.method,
                headers: record.request.headers,
                body: Some(event.payload),
            },
            response: record.response,
            ordering_key: None,
        })
    }

    async fn handshake(&self, url: &Url, token: &str) -> Result<()> {
        handshake::verify(&self.inner.outbound, url, token)
            .await
            .map_err(|failure| {
                tracing::info!(url = %redacted(url), step = failure.step.as_str(), "handshake failed");
                Error::Verification(failure)
            })
    }

    fn validate_url(&self, text: &str) -> Result<Url> {
        let allow = self.inner.config.allow_http_localhost || self.settings().allow_http_localhost;
        validate_url(text, allow)
    }
}

/// Checks a webhook URL: absolute, `https://` (or `http://` to loopback when allowed).
pub(crate) fn validate_url(text: &str, allow_http_localhost: bool) -> Result<Url> {
    let text = text.trim();
    if text.chars().count() > 2048 {
        return Err(Error::invalid(
            "invalid_url",
            "the URL is longer than 2048 characters",
        ));
    }
    let url = Url::parse(text)
        .map_err(|e| Error::invalid("invalid_url", format!("{text:?} is not a valid URL: {e}")))?;
    if url.host().is_none() {
        return Err(Error::invalid("invalid_url", "the URL has no host"));
    }
    if url.fragment().is_some() {
        return Err(Error::invalid(
            "invalid_url",
            "the URL must not have a #fragment",
        ));
    }
    // It would be sent as Basic auth and shown wherever the URL is.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(
            "invalid_url",
            "the URL must not contain a user name or password (they would be shown in the webhook list and the log); have the endpoint check the X-Hub-Signature-256 signature instead, or send credentials as a custom request header once webhooks have them",
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http_localhost && is_loopback(&url) => Ok(url),
        "http" if is_loopback(&url) => Err(Error::invalid(
            "https_required",
            "webhook URLs must use https://; plain http:// to localhost needs the setting \"allow plain HTTP to localhost for development\" (--allow-http-localhost)",
        )),
        "http" => Err(Error::invalid(
            "https_required",
            "webhook URLs must use https:// so that deliveries are encrypted",
        )),
        other => Err(Error::invalid(
            "invalid_url",
            format!("the URL scheme must be https, not {other:?}"),
        )),
    }
}

use crate::network::is_loopback;

/// A pause by the admin, now.
fn admin_pause() -> Pause {
    Pause {
        reason: PauseReason::Admin,
        at: Utc::now(),
    }
}

/// Switches the signature scheme; Standard Webhooks gets a secret the first time.
fn set_signature(c: &mut Controls, signature: Signature) {
    c.signature = signature;
    if signature == Signature::Standard && c.signing_secret.is_none() {
        c.signing_secret = Some(generate_whsec());
    }
}

/// Header names the engine sets itself, or that would break the request.
fn reserved_header(lower: &str) -> bool {
    matches!(
        lower,
        "host"
            | "content-type"
            | "content-length"
            | "user-agent"
            | "x-hub-signature-256"
            | "accept"
            | "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
    ) || lower.starts_with("x-orki-")
        || lower.starts_with("webhook-")
        || lower.starts_with("proxy-")
}

/// Checks the admin's extra headers: at most 20, valid names (none the
/// engine sets, none twice in any case), values without CR/LF, at most 1 KiB.
pub(crate) fn validate_headers(
    headers: BTreeMap<String, String>,
) -> Result<BTreeMap<String, Secret>> {
    let bad = |message: String| Error::invalid("invalid_header", message);
    if headers.len() > 20 {
        return Err(bad(format!(
            "at most 20 custom headers, not {}",
            headers.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(bad(format!(
                "{name:?} is not a valid header name (letters, digits and - only, no spaces)"
            )));
        }
        let lower = name.to_ascii_lowercase();
        if reserved_header(&lower) {
            return Err(bad(format!(
                "the header {name} is set by Orki Webhooks itself and cannot be overridden"
            )));
        }
        if !seen.insert(lower) {
            return Err(bad(format!("the header {name} is given twice")));
        }
        if value.contains(['\r', '\n']) {
            return Err(bad(format!(
                "the value of {name} must not contain a line break"
            )));
        }
        if value.len() > 1024 {
            return Err(bad(format!("the value of {name} is longer than 1 KiB")));
        }
        if reqwest::header::HeaderValue::from_bytes(value.as_bytes()).is_err() {
            return Err(bad(format!(
                "the value of {name} contains a control character"
            )));
        }
        out.insert(name, Secret::new(value));
    }
    Ok(out)
}

/// A webhook's `headers`: at most 20; names are HTTP tokens other than the
/// ones the engine sets; values without control characters. (Stricter than
/// the check for once: at most 256 characters, which fit the 1 KiB of UTF-8
/// the engine takes; names repeated in another case are refused too.)
pub(crate) struct HeadersSchema;

/// `word` matched in any case, for a JSON Schema pattern (no inline flags there).
fn any_case(word: &str) -> String {
    word.chars()
        .map(|c| match c {
            'a'..='z' => format!("[{c}{}]", c.to_ascii_uppercase()),
            '-' => "-".to_owned(),
            other => other.to_string(),
        })
        .collect()
}

impl utoipa::PartialSchema for HeadersSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let exact = [
            "host",
            "content-type",
            "content-length",
            "user-agent",
            "x-hub-signature-256",
            "accept",
            "connection",
            "keep-alive",
            "transfer-encoding",
            "te",
            "trailer",
            "upgrade",
        ];
        let prefixes = ["x-orki-", "webhook-", "proxy-"];
        let exact: Vec<String> = exact.iter().map(|w| any_case(w)).collect();
        let prefixes: Vec<String> = prefixes.iter().map(|w| any_case(w)).collect();
        let name = utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(format!(
                "^(?!(?:{})$)(?!(?:{}))[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
                exact.join("|"),
                prefixes.join("|")
            )));
        let value = utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .max_length(Some(256))
            .pattern(Some("^[^\\x00-\\x08\\x0a-\\x1f\\x7f]*$"));
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Object)
            .max_properties(Some(20))
            .property_names(Some(name))
            .additional_properties(Some(value))
            .description(Some("Extra request headers sent with every delivery, e.g. {\"Authorization\": \"Basic …\"}"))
            .into()
    }
}

impl utoipa::ToSchema for HeadersSchema {}

/// A rate limit: 1–10,000 sends per second.
fn validate_rate(rate: serde_json::Value) -> Result<u32> {
    whole(&rate)
        .and_then(|r| u32::try_from(r).ok())
        .filter(|r| (1..=10_000).contains(r))
        .ok_or_else(|| {
            Error::invalid(
                "invalid_rate_limit",
                "rate_limit_per_s must be a whole number from 1 to 10000 (sends per second), or null for no limit",
            )
        })
}

fn validate_token(token: &str) -> Result<String> {
    if token.is_empty() {
        return Err(Error::invalid(
            "invalid_verify_token",
            "the verify token must not be empty",
        ));
    }
    if token.chars().count() > 512 {
        return Err(Error::invalid(
            "invalid_verify_token",
            "the verify token must be at most 512 characters",
        ));
    }
    if token.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_verify_token",
            "the verify token must not contain control characters",
        ));
    }
    Ok(token.to_owned())
}

fn validate_events(events: Vec<String>) -> Result<Vec<String>> {
    if events.is_empty() {
        return Err(Error::invalid(
            "no_events",
            "subscribe to at least one event type",
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in events {
        if !event_types::is_known(&e) {
            return Err(Error::invalid(
                "unknown_event_type",
                event_types::unknown_message(&e),
            ));
        }
        if seen.insert(e.clone()) {
            out.push(e);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_unless_loopback_http_is_allowed() {
        assert!(validate_url("https://example.com/hook", false).is_ok());
        let err = |u: &str, allow: bool| match validate_url(u, allow) {
            Err(Error::Invalid { code, .. }) => code,
            other => panic!("{u}: {other:?}"),
        };
        assert_eq!(err("http://example.com/hook", false), "https_required");
        assert_eq!(err("http://example.com/hook", true), "https_required");
        assert_eq!(err("http://127.0.0.1:9/hook", false), "https_required");
        assert!(validate_url("http://127.0.0.1:9/hook", true).is_ok());
        assert!(validate_url("http://localhost:9/hook", true).is_ok());
        assert!(validate_url("http://[::1]:9/hook", true).is_ok());
        assert_eq!(err("ftp://example.com/", false), "invalid_url");
        assert_eq!(err("not a url", false), "invalid_url");
        assert_eq!(err("https://example.com/#x", false), "invalid_url");
        assert_eq!(
            err("https://user:pw@example.com/hook", false),
            "invalid_url"
        );
        assert_eq!(err("https://user@example.com/hook", false), "invalid_url");
        assert_eq!(err("https://:pw@example.com/hook", false), "invalid_url");
    }

    #[test]
    fn events_are_checked_and_deduplicated() {
        assert!(matches!(
            validate_events(vec![]),
            Err(Error::Invalid {
                code: "no_events",
                ..
            })
        ));
        assert!(matches!(
            validate_events(vec!["nope".into()]),
            Err(Error::Invalid {
                code: "unknown_event_type",
                ..
            })
        ));
        assert_eq!(
            validate_events(vec!["meta.message".into(), "meta.message".into()]).ok(),
            Some(vec!["meta.message".to_string()])
        );
    }

    #[test]
    fn redaction_drops_query_and_credentials() {
        let url = Url::parse("https://user:pw@example.com:8443/hook?key=secret").expect("valid");
        assert_eq!(redacted(&url), "https://example.com:8443/hook");
    }
}
