//! Parsing what the admin asks for (log queries, replays) into engine values,
//! shared by the HTTP API and the desktop window. Every bad value is a clear
//! `Error::Invalid` and nothing is done.

use std::collections::HashMap;

use crate::event_types;
use crate::ids::{AttemptId, WebhookId};
use crate::store::AttemptFilter;
use crate::{Error, Result};

/// A delivery-log query: filters, cursor and page size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptQuery {
    /// The filters.
    pub filter: AttemptFilter,
    /// `next_cursor` of the previous page.
    pub cursor: Option<AttemptId>,
    /// Rows per page (1–500, default 50).
    pub limit: usize,
}

fn invalid(code: &'static str, message: String) -> Error {
    Error::invalid(code, message)
}

/// Parses an RFC 3339 time into Unix milliseconds (negative before 1970);
/// `name` and `code` go in the error.
pub(crate) fn parse_time(code: &'static str, name: &str, value: &str) -> Result<i64> {
    let at = chrono::DateTime::parse_from_rfc3339(value).map_err(|_| {
        invalid(
            code,
            format!("{name} must be an RFC 3339 time like 2026-11-27T09:00:00Z, not {value:?}"),
        )
    })?;
    Ok(at.timestamp_millis())
}

/// A time range `from`..=`to` (Unix ms) as store bounds. Every RFC 3339
/// time is a valid bound: times before 1970 hold no record, so they become 0,
/// and `from` later than `to` is a range with nothing in it (the store reads
/// nothing for it), not an error the OpenAPI document could not describe.
fn time_range(from: Option<i64>, to: Option<i64>) -> (Option<u64>, Option<u64>) {
    let bound = |ms: i64| u64::try_from(ms).unwrap_or(0);
    match (from, to) {
        // Empty: `to` before `from`, also once both are clamped to 1970.
        (Some(f), Some(t)) if f > t => (Some(bound(f).max(1)), Some(0)),
        _ => (from.map(bound), to.map(bound)),
    }
}

impl AttemptQuery {
    /// Parses `webhook_id`, `event_type`, `outcome`, `from`, `to`, `limit`, `cursor`.
    pub fn parse(query: &HashMap<String, String>) -> Result<Self> {
        const CODE: &str = "invalid_query";
        let mut q = AttemptQuery {
            limit: 50,
            ..Default::default()
        };
        let (mut from, mut to) = (None, None);
        for (name, value) in query {
            match name.as_str() {
                "webhook_id" => {
                    q.filter.webhook = Some(WebhookId::parse(value).ok_or_else(|| {
                        invalid(
                            CODE,
                            format!("webhook_id {value:?} is not a webhook id (wh_…)"),
                        )
                    })?);
                }
                "event_type" => {
                    if !event_types::is_known(value) {
                        return Err(invalid(
                            CODE,
                            format!(
                                "event_type {value:?} is not one of {}",
                                event_types::NAMES.join(", ")
                            ),
                        ));
                    }
                    q.filter.event_type = Some(value.clone());
                }
                "outcome" => {
                    q.filter.success = Some(match value.as_str() {
                        "success" => true,
                        "failure" => false,
                        _ => {
                            return Err(invalid(
                                CODE,
                                format!("outcome must be success or failure, not {value:?}"),
                            ));
                        }
                    });
                }
                "from" => from = Some(parse_time(CODE, "from", value)?),
                "to" => to = Some(parse_time(CODE, "to", value)?),
                "limit" => {
                    q.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=500).contains(n))
                        .ok_or_else(|| {
                            invalid(
                                CODE,
                                format!(
                                    "limit must be a whole number from 1 to 500, not {value:?}"
                                ),
                            )
                        })?;
                }
                "cursor" => {
                    q.cursor = Some(AttemptId::parse(value).ok_or_else(|| {
                        invalid(
                            CODE,
                            format!("cursor {value:?} is not a next_cursor value from this API"),
                        )
                    })?);
                }
                other => {
                    return Err(invalid(
                        CODE,
                        format!(
                            "unknown query parameter {other:?}; use webhook_id, event_type, outcome, from, to, limit, cursor"
                        ),
                    ));
                }
            }
        }
        (q.filter.from_ms, q.filter.to_ms) = time_range(from, to);
        Ok(q)
    }
}

/// A bulk replay of a webhook's given-up deliveries; all fields optional, but
/// the body is not: `{}` replays every given-up delivery of the webhook,
/// `{"dry_run": true}` only counts them.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Only this event type.
    #[schema(value_type = Option<crate::event_types::EventTypeName>)]
    pub event_type: Option<String>,
    /// Only deliveries created at or after (RFC 3339).
    #[schema(format = DateTime)]
    pub from: Option<String>,
    /// Only deliveries created at or before (RFC 3339).
    #[schema(format = DateTime)]
    pub to: Option<String>,
    /// Count only.
    #[serde(default)]
    pub dry_run: bool,
}

impl ReplayRequest {
    /// The filter it describes.
    pub fn filter(&self) -> Result<AttemptFilter> {
        const CODE: &str = "invalid_field";
        let mut filter = AttemptFilter::default();
        if let Some(t) = &self.event_type {
            if !event_types::is_known(t) {
                return Err(invalid(
                    "unknown_event_type",
                    format!(
                        "event_type {t:?} is not one of {}",
                        event_types::NAMES.join(", ")
                    ),
                ));
            }
            filter.event_type = Some(t.clone());
        }
        let from = self
            .from
            .as_deref()
            .map(|v| parse_time(CODE, "from", v))
            .transpose()?;
        let to = self
            .to
            .as_deref()
            .map(|v| parse_time(CODE, "to", v))
            .transpose()?;
        (filter.from_ms, filter.to_ms) = time_range(from, to);
        Ok(filter)
    }
}
