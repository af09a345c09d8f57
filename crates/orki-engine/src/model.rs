//! Records as stored in redb, and the views the API shows.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Secret;
use crate::ids::{AttemptId, DeliveryId, EventId, WebhookId};

/// A registered webhook as stored (with its verify token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookRecord {
    /// Its id.
    pub id: WebhookId,
    /// Where deliveries are posted.
    pub url: String,
    /// Shared secret: signs deliveries, and is checked by the endpoint in the handshake.
    pub verify_token: Secret,
    /// Subscribed event types.
    pub events: Vec<String>,
    /// Disabled webhooks get no new deliveries, and their pending ones are cancelled.
    pub enabled: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it was last changed by an admin.
    pub updated_at: DateTime<Utc>,
    /// Failed attempts since the last success (test events excluded).
    pub consecutive_failures: u32,
    /// When the last (non-test) attempt finished.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last (non-test) attempt, if one came back.
    pub last_status_code: Option<u16>,
    /// The delivery controls (pause, headers, rate limit, signature);
    /// their defaults are stored as nothing, so older records read as they were.
    #[serde(default, flatten)]
    pub controls: Controls,
    /// `url` parsed, made once and reused by every delivery (not stored). It
    /// keeps the text it was parsed from, so a changed `url` is parsed again.
    #[serde(skip)]
    pub parsed_url: OnceLock<(String, Option<url::Url>)>,
}

impl WebhookRecord {
    /// A new webhook, never attempted, with a fresh id, created now.
    pub fn new(url: String, verify_token: Secret, events: Vec<String>, enabled: bool) -> Self {
        let now = Utc::now();
        Self {
            id: WebhookId::generate(),
            url,
            verify_token,
            events,
            enabled,
            created_at: now,
            updated_at: now,
            consecutive_failures: 0,
            last_attempt_at: None,
            last_status_code: None,
            controls: Controls::default(),
            parsed_url: OnceLock::new(),
        }
    }

    /// Whether deliveries to it are held (paused by the admin or automatically).
    pub fn is_paused(&self) -> bool {
        self.controls.paused.is_some()
    }

    /// `url`, parsed; `None` if it does not parse (it did when registered).
    pub fn parsed_url(&self) -> Option<url::Url> {
        match self.parsed_url.get() {
            Some((text, parsed)) if *text == self.url => parsed.clone(),
            Some(_) => url::Url::parse(&self.url).ok(),
            None => self
                .parsed_url
                .get_or_init(|| (self.url.clone(), url::Url::parse(&self.url).ok()))
                .1
                .clone(),
        }
    }

    /// The public view. The verify token is shown only when `reveal_token` is set
    /// (single-webhook answers), never in lists.
    pub fn view(&self, warning_threshold: u32, reveal_token: bool, pending: u64) -> Webhook {
        let c = &self.controls;
        let now = Utc::now();
        Webhook {
            id: self.id,
            url: self.url.clone(),
            events: self.events.clone(),
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
            consecutive_failures: self.consecutive_failures,
            warning: self.consecutive_failures >= warning_threshold,
            last_attempt_at: self.last_attempt_at,
            last_status_code: self.last_status_code,
            verify_token: reveal_token.then(|| self.verify_token.expose().to_owned()),
            paused: c.paused.is_some(),
            paused_reason: c.paused.as_ref().map(|p| p.reason),
            paused_at: c.paused.as_ref().map(|p| p.at),
            pending,
            headers: c
                .headers
                .iter()
                .map(|(name, value)| {
                    let shown = if reveal_token { value.expose() } else { MASK };
                    (name.clone(), shown.to_owned())
                })
                .collect(),
            rate_limit_per_s: c.rate_limit_per_s,
            signature: c.signature,
            signing_secret: c
                .signing_secret
                .as_ref()
                .filter(|_| reveal_token && c.signature == Signature::Standard)
                .map(|s| s.expose().to_owned()),
            rotation_ends_at: c
                .previous_secret
                .as_ref()
                .map(|p| p.until)
                .filter(|until| *until > now),
            failing_since: c.failing_since,
            ordered: c.ordered,
        }
    }
}

/// What a header value stored or listed is shown as.
pub const MASK: &str = "••••";

/// Why a webhook is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// The admin paused it.
    Admin,
    /// Every attempt failed for `auto_pause_after_hours`.
    Failing,
    /// The endpoint answered `410 Gone`.
    Gone,
}

/// A pause: why and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Pause {
    /// Why.
    pub reason: PauseReason,
    /// Since when.
    pub at: DateTime<Utc>,
}

/// How deliveries are signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    /// `X-Hub-Signature-256`, keyed by the verify token.
    #[default]
    Hub,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
}

impl Signature {
    fn is_hub(&self) -> bool {
        *self == Self::Hub
    }
}

/// The secret signing went on with during a rotation's grace period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousSecret {
    /// The old `whsec_` secret.
    pub secret: Secret,
    /// Until when it signs too.
    pub until: DateTime<Utc>,
}

/// A webhook's delivery controls as stored (see SPEC "Delivery controls").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Controls {
    /// Held: nothing is sent, nothing is given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
    /// Extra request headers (values are secrets).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
    /// At most this many sends per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_s: Option<u32>,
    /// The signature scheme.
    #[serde(default, skip_serializing_if = "Signature::is_hub")]
    pub signature: Signature,
    /// The Standard Webhooks secret (`whsec_…`), made when first needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<Secret>,
    /// The secret before the last rotation, while it still signs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
    /// The first failure since the last success (for auto-pause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// Deliveries of events with the same `ordering_key` go one at a time,
    /// in the order the events were accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ordered: bool,
}

/// A webhook as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Webhook {
    /// Its id.
    pub id: WebhookId,
    /// Where deliveries are posted.
    pub url: String,
    /// Subscribed event types.
    pub events: Vec<String>,
    /// Whether new events are delivered to it.
    pub enabled: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it was last changed by an admin.
    pub updated_at: DateTime<Utc>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// `consecutive_failures` is at or above the warning threshold.
    pub warning: bool,
    /// When the last attempt finished.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last attempt, if one came back.
    pub last_status_code: Option<u16>,
    /// Only in single-webhook answers, never in lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_token: Option<String>,
    /// Deliveries are held: nothing is sent, nothing is given up.
    pub paused: bool,
    /// Why it is paused (`null` when it is not).
    pub paused_reason: Option<PauseReason>,
    /// Since when it is paused.
    pub paused_at: Option<DateTime<Utc>>,
    /// Deliveries waiting for it (queued, retrying or held).
    pub pending: u64,
    /// Extra request headers; values are `"••••"` in lists.
    pub headers: BTreeMap<String, String>,
    /// At most this many sends per second (`null`: no limit).
    pub rate_limit_per_s: Option<u32>,
    /// How deliveries are signed.
    pub signature: Signature,
    /// The Standard Webhooks secret: only in single-webhook answers, with
    /// `signature: "standard"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    /// While a rotated secret still signs too: until when.
    pub rotation_ends_at: Option<DateTime<Utc>>,
    /// Failing since (the first failure after the last success).
    pub failing_since: Option<DateTime<Utc>>,
    /// Deliveries of events with the same `ordering_key` go one at a time, in
    /// acceptance order.
    pub ordered: bool,
}

/// An accepted event as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventRecord {
    /// Its id (also in the envelope).
    pub id: EventId,
    /// Its type.
    pub event_type: String,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// The exact envelope bytes that are signed and posted, every attempt alike.
    pub payload: String,
    /// A test event sent from the admin, not posted by a local tool.
    #[serde(default)]
    pub test: bool,
    /// The `Idempotency-Key` it was posted with (forgotten when the event is pruned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The `ordering_key` it was posted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting in the due queue for its next attempt.
    Pending,
    /// An attempt got a 2xx.
    Succeeded,
    /// Every retry failed; given up.
    Failed,
    /// The webhook was deleted or disabled before it succeeded.
    Cancelled,
}

impl DeliveryState {
    /// As the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One event's delivery to one webhook.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryRecord {
    /// Its id, sent as `X-Orki-Delivery` (the same on every retry).
    pub id: DeliveryId,
    /// The event delivered.
    pub event_id: EventId,
    /// The webhook it goes to.
    pub webhook_id: WebhookId,
    /// The event's type.
    pub event_type: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Where it stands.
    pub state: DeliveryState,
    /// The due-queue key while pending (unix ms).
    pub due_ms: Option<u64>,
    /// A test delivery (never retried, not counted in the webhook's health).
    #[serde(default)]
    pub test: bool,
    /// Its place in its key's order, on an ordered webhook.
    #[serde(default, skip)]
    pub ordering: Option<Ordering>,
}

/// A delivery's place in the order of its key (see `store::order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ordering {
    /// The ordering key's hash.
    pub key: u128,
    /// Its number among the deliveries of the key to the webhook.
    pub seq: u64,
}

impl DeliveryRecord {
    /// Waiting for an attempt at `due_ms`: what its entry in the due queue says.
    pub fn is_due_at(&self, due_ms: u64) -> bool {
        self.state == DeliveryState::Pending && self.due_ms == Some(due_ms)
    }

    /// Pending behind an earlier delivery of its ordering key: not in the due
    /// queue until that one is done.
    pub fn is_waiting(&self) -> bool {
        self.state == DeliveryState::Pending && self.due_ms.is_none() && self.ordering.is_some()
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The host name did not resolve.
    Dns,
    /// No TCP connection (refused, unreachable, reset).
    Connect,
    /// TLS failed: untrusted or invalid certificate, handshake error.
    Tls,
    /// No complete answer within the time limit.
    Timeout,
    /// The answer was not 2xx.
    Status,
    /// The answer was a 3xx; redirects are not followed.
    Redirect,
}

impl ErrorClass {
    /// The wire name, e.g. `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Status => "status",
            Self::Redirect => "redirect",
        }
    }
}

/// One attempt as listed in the delivery log.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    /// Its id.
    pub id: AttemptId,
    /// The delivery it belongs to.
    pub delivery_id: DeliveryId,
    /// The webhook it went to.
    pub webhook_id: WebhookId,
    /// The event delivered.
    pub event_id: EventId,
    /// The event's type.
    pub event_type: String,
    /// 1 for the first try of a delivery, then 2, 3, …
    pub attempt: u32,
    /// When the attempt finished.
    pub timestamp: DateTime<Utc>,
    /// A 2xx came back in time.
    pub success: bool,
    /// The HTTP status, if an answer came back.
    pub status_code: Option<u16>,
    /// Time from sending to the end of the answer (or the failure).
    pub response_time_ms: u64,
    /// What went wrong, for a person.
    pub error: Option<String>,
    /// What went wrong, for a machine.
    pub error_class: Option<ErrorClass>,
    /// Sent as a test event.
    pub test: bool,
    /// When the next try is due, if the delivery will be retried.
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// The request as it was sent (the body is the event's stored payload).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The URL posted to.
    pub url: String,
    /// Always `POST` for deliveries.
    pub method: String,
    /// Every header sent, signature included.
    pub headers: BTreeMap<String, String>,
}

/// The answer as it came back.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseRecord {
    /// The HTTP status.
    pub status: u16,
    /// The answer's headers.
    pub headers: BTreeMap<String, String>,
    /// The body (lossy UTF-8), cut at 64 KiB.
    // The cut is `outbound::MAX_RESPONSE_BODY`.
    pub body: String,
    /// The body was longer than what is kept.
    pub body_truncated: bool,
}

/// An attempt as stored: the summary plus the request and response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The log line.
    #[serde(flatten)]
    pub attempt: Attempt,
    /// What was sent (without the body).
    pub request: RequestRecord,
    /// What came back, if anything did.
    pub response: Option<ResponseRecord>,
}

/// The request of an attempt as the detail view shows it, body included.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestView {
    /// The URL posted to.
    pub url: String,
    /// `POST`.
    pub method: String,
    /// Every header sent.
    pub headers: BTreeMap<String, String>,
    /// The exact body bytes that were signed (null once the event was pruned).
    pub body: Option<String>,
}

/// `GET /v1/attempts/{id}`: the attempt with the exact request and the response.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptDetail {
    /// The log line.
    #[serde(flatten)]
    pub attempt: Attempt,
    /// What was sent.
    pub request: RequestView,
    /// What came back, if anything did.
    pub response: Option<ResponseRecord>,
    /// The event's `ordering_key`, if it was posted with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
}

/// The first result for an `Idempotency-Key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// SHA-256 of the request body, to refuse the key's reuse for another request.
    pub body_sha256: String,
    /// The event it created.
    pub event_id: EventId,
    /// How many deliveries it created.
    pub deliveries: u32,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// The answer to an accepted event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Accepted {
    /// The event's id.
    pub id: EventId,
    /// How many deliveries were queued.
    pub deliveries: u32,
    /// This is the stored answer to an earlier request with the same Idempotency-Key.
    #[serde(skip)]
    pub replayed: bool,
}

/// A URL safe for logs: scheme, host, port and path, without query or user info.
pub(crate) fn redacted(url: &url::Url) -> String {
    format!(
        "{}://{}{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port().map(|p| format!(":{p}")).unwrap_or_default(),
        url.path()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parsed_url_follows_a_changed_url() {
        let mut w = WebhookRecord::new(
            "https://a.example/hook".into(),
            Secret::new("token"),
            vec!["order.paid".into()],
            true,
        );
        let first = w.parsed_url().expect("parses");
        assert_eq!(first.host_str(), Some("a.example"));
        w.url = "https://b.example/other".into();
        let copy = w.clone();
        assert_eq!(copy.parsed_url().expect("parses").path(), "/other");
        w.url = "not a url".into();
        assert_eq!(w.parsed_url(), None);
        // Not stored: a record read back parses its own URL.
        let json = serde_json::to_string(&copy).expect("json");
        assert!(!json.contains("parsed_url"));
    }
}
