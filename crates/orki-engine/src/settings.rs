//! Settings an admin changes at run time (`GET`/`PATCH /v1/settings`), persisted
//! in redb. Command-line flags override some of them for one run only.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::retry::{RetryPolicy, parse_duration, parse_schedule};
use crate::{Error, Result};

/// The largest `max_database_mb`: 2^53 - 1, the largest integer a JavaScript
/// number holds exactly.
pub const MAX_DATABASE_MB: u64 = MAX_SAFE_INTEGER;

/// The largest integer a JavaScript number holds exactly (2^53 - 1): the
/// bound of `max_database_mb`, so that what the UI shows is what is stored.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The persisted settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Port of the local listener on 127.0.0.1 (applied on restart).
    pub listen_port: u16,
    /// Waits between retries, in milliseconds.
    pub retry_schedule_ms: Vec<u64>,
    /// Consecutive failures at which a webhook shows a warning.
    pub warning_threshold: u32,
    /// Hours of nothing but failed attempts after which a webhook is paused
    /// (`None`: never).
    // The default is stored as nothing: files written before read the same.
    #[serde(skip_serializing_if = "is_default_auto_pause")]
    pub auto_pause_after_hours: Option<u32>,
    /// Attempts and events older than this are pruned.
    pub retention_days: u32,
    /// When the database file grows past this, the oldest attempts are pruned first.
    pub max_database_mb: Option<u64>,
    /// Accept `http://` webhook URLs to loopback addresses (development).
    pub allow_http_localhost: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen_port: 8787,
            retry_schedule_ms: RetryPolicy::default()
                .schedule
                .iter()
                .map(|d| d.as_millis() as u64)
                .collect(),
            warning_threshold: 5,
            auto_pause_after_hours: DEFAULT_AUTO_PAUSE_HOURS,
            retention_days: 30,
            max_database_mb: None,
            allow_http_localhost: false,
        }
    }
}

impl Settings {
    /// The retry schedule as durations.
    pub fn retry_schedule(&self) -> Vec<Duration> {
        self.retry_schedule_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect()
    }

    /// Applies a `PATCH` body: every field is checked first, and on any error
    /// nothing changes. Returns whether the ingest key is to be regenerated.
    pub fn apply_patch(&mut self, patch: &Map<String, Value>) -> Result<bool> {
        let mut next = self.clone();
        let mut regenerate = false;
        for (name, value) in patch {
            let bad = |why: &str| Error::invalid("invalid_setting", format!("{name}: {why}"));
            match name.as_str() {
                "listen_port" => {
                    next.listen_port = whole(value)
                        .filter(|p| (1024..=65535).contains(p))
                        .ok_or_else(|| bad("a port number from 1024 to 65535"))?
                        as u16;
                }
                "retry_schedule" => {
                    let list = || bad("a list of durations like [\"10s\", \"5m\"]");
                    let schedule = match value {
                        Value::String(s) => parse_schedule(s).map_err(|e| bad(&e.to_string()))?,
                        // Each item is one step: "5s,10s" in a list is not two.
                        Value::Array(items) => items
                            .iter()
                            .map(|v| {
                                let step = v.as_str().ok_or_else(list)?;
                                parse_duration(step.trim()).ok_or_else(|| {
                                    bad(&format!(
                                        "retry step {step:?} is not a duration like 500ms, 10s, 5m, 2h or 1d"
                                    ))
                                })
                            })
                            .collect::<Result<Vec<_>>>()?,
                        _ => return Err(list()),
                    };
                    RetryPolicy {
                        schedule: schedule.clone(),
                        jitter: 0.0,
                    }
                    .validate()
                    .map_err(|e| bad(&e.to_string()))?;
                    next.retry_schedule_ms =
                        schedule.iter().map(|d| d.as_millis() as u64).collect();
                }
                "warning_threshold" => {
                    next.warning_threshold = whole(value)
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| bad("a whole number from 1 to 1000"))?
                        as u32;
                }
                "auto_pause_after_hours" => {
                    next.auto_pause_after_hours = match value {
                        Value::Null => None,
                        v => Some(whole(v).filter(|n| (1..=8760).contains(n)).ok_or_else(|| {
                            bad("null (never), or a whole number of hours from 1 to 8760")
                        })? as u32),
                    };
                }
                "retention_days" => {
                    next.retention_days = whole(value)
                        .filter(|n| (1..=3650).contains(n))
                        .ok_or_else(|| bad("a whole number of days from 1 to 3650"))?
                        as u32;
                }
                "max_database_mb" => {
                    next.max_database_mb = match value {
                        Value::Null => None,
                        v => Some(
                            // Not above 2^53 - 1: the UI (JavaScript) would show
                            // another number than the one stored.
                            whole(v)
                                .filter(|n| (1..=MAX_DATABASE_MB).contains(n))
                                .ok_or_else(|| {
                                    bad("null, or a size in MB from 1 to 9007199254740991")
                                })?,
                        ),
                    };
                }
                "allow_http_localhost" => {
                    next.allow_http_localhost =
                        value.as_bool().ok_or_else(|| bad("true or false"))?;
                }
                "regenerate_ingest_key" => {
                    regenerate = value.as_bool().ok_or_else(|| bad("true or false"))?;
                }
                _ => {
                    return Err(Error::invalid(
                        "invalid_setting",
                        format!(
                            "unknown setting {name:?}; settings are listen_port, retry_schedule, warning_threshold, auto_pause_after_hours, retention_days, max_database_mb, allow_http_localhost, regenerate_ingest_key"
                        ),
                    ));
                }
            }
        }
        *self = next;
        Ok(regenerate)
    }
}

/// A whole number, also when written `20.0` (JSON, and its schemas, make no
/// difference between the two); `None` for anything else.
/// Auto-pause after 24 hours of failures.
const DEFAULT_AUTO_PAUSE_HOURS: Option<u32> = Some(24);

fn is_default_auto_pause(hours: &Option<u32>) -> bool {
    *hours == DEFAULT_AUTO_PAUSE_HOURS
}

/// A whole number, written `5` or `5.0` (exact up to 2^53).
pub(crate) fn whole(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let f = value.as_f64()?;
        // Exact up to 2^53; larger floats are refused rather than rounded.
        (f >= 0.0 && f.fract() == 0.0 && f <= MAX_DATABASE_MB as f64).then_some(f as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::format_duration;
    use serde_json::json;

    fn patch(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn a_valid_patch_changes_only_what_it_names() {
        let mut s = Settings::default();
        let regen = s
            .apply_patch(&patch(
                json!({"retry_schedule": ["10s", "1m"], "warning_threshold": 3}),
            ))
            .expect("valid");
        assert!(!regen);
        assert_eq!(s.retry_schedule_ms, vec![10_000, 60_000]);
        assert_eq!(s.warning_threshold, 3);
        assert_eq!(s.retention_days, 30);
        s.apply_patch(&patch(
            json!({"retry_schedule": "5s,2h", "max_database_mb": 512}),
        ))
        .expect("valid");
        assert_eq!(s.retry_schedule_ms, vec![5000, 7_200_000]);
        assert_eq!(s.max_database_mb, Some(512));
        s.apply_patch(&patch(json!({"max_database_mb": null})))
            .expect("valid");
        assert_eq!(s.max_database_mb, None);
        s.apply_patch(&patch(
            json!({"max_database_mb": 9_007_199_254_740_991_u64}),
        ))
        .expect("2^53 - 1 is the largest");
        assert_eq!(s.max_database_mb, Some(MAX_DATABASE_MB));
        s.apply_patch(&patch(json!({"retry_schedule": [" 7d ", "1ms"]})))
            .expect("valid");
        assert_eq!(s.retry_schedule_ms, vec![604_800_000, 1]);
        s.apply_patch(&patch(
            json!({"listen_port": 20081.0, "retention_days": 7.0}),
        ))
        .expect("a whole number written with .0");
        assert_eq!((s.listen_port, s.retention_days), (20081, 7));
    }

    #[test]
    fn any_bad_field_changes_nothing() {
        let mut s = Settings::default();
        for bad in [
            json!({"warning_threshold": 3, "retention_days": 0}),
            json!({"listen_port": 80}),
            json!({"listen_port": "8787"}),
            json!({"retry_schedule": []}),
            json!({"retry_schedule": ["5x"]}),
            json!({"retry_schedule": ["10d"]}),
            json!({"max_database_mb": 0}),
            json!({"max_database_mb": 9_007_199_254_740_992_u64}),
            json!({"max_database_mb": u64::MAX}),
            json!({"max_database_mb": 1.5}),
            json!({"max_database_mb": 1e300}),
            json!({"retention_days": -1.0}),
            json!({"retry_schedule": ["5s,10s"]}),
            json!({"retry_schedule": ["5s", 10]}),
            json!({"colour": "blue"}),
        ] {
            let before = s.clone();
            let err = s.apply_patch(&patch(bad.clone())).expect_err("invalid");
            assert!(
                matches!(
                    err,
                    Error::Invalid {
                        code: "invalid_setting",
                        ..
                    }
                ),
                "{bad}"
            );
            assert_eq!(s, before, "{bad}");
        }
    }

    #[test]
    fn durations_format_in_their_largest_exact_unit() {
        assert_eq!(format_duration(500), "500ms");
        assert_eq!(format_duration(5000), "5s");
        assert_eq!(format_duration(90_000), "90s");
        assert_eq!(format_duration(120_000), "2m");
        assert_eq!(format_duration(36_000_000), "10h");
        assert_eq!(format_duration(86_400_000), "1d");
    }
}
