//! The retry policy: a pure function from "attempt n failed" to "try again after d".

use std::time::Duration;

use crate::{Error, Result};

/// Default backoff: front-loaded, about 2.6 days in all (11 retries after the first try).
pub(crate) const DEFAULT_SCHEDULE: &str = "5s,30s,2m,5m,30m,2h,5h,10h,10h,14h,20h";

/// Longest wait a `Retry-After` header can impose.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How failed deliveries are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Wait before retry 1, 2, …; after the last one the delivery is given up.
    pub schedule: Vec<Duration>,
    /// Relative jitter: each wait is scaled by a factor in `[1 - jitter, 1 + jitter]`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            schedule: parse_schedule(DEFAULT_SCHEDULE).unwrap_or_default(),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// Checks the schedule and jitter.
    pub fn validate(&self) -> Result<()> {
        if self.schedule.is_empty() || self.schedule.len() > 50 {
            return Err(Error::Config(
                "the retry schedule needs between 1 and 50 steps".into(),
            ));
        }
        if self
            .schedule
            .iter()
            .any(|d| d.is_zero() || *d > Duration::from_secs(7 * 24 * 3600))
        {
            return Err(Error::Config(
                "each retry step must be longer than 0 and at most 7 days".into(),
            ));
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err(Error::Config("jitter must be between 0 and 0.5".into()));
        }
        Ok(())
    }

    /// The wait before the next try after attempt number `attempt` (1-based) failed,
    /// or `None` when the schedule is exhausted. `unit` is a uniform random number in
    /// `[0, 1)` (passed in so the function stays pure); `retry_after` is the server's
    /// `Retry-After` on a 429/503, honoured within `[1 s, MAX_RETRY_AFTER]` when it
    /// asks for longer than the schedule would wait.
    pub(crate) fn next_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        let step = *self.schedule.get(attempt.checked_sub(1)? as usize)?;
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let jittered = step.mul_f64(factor.max(0.0));
        Some(match retry_after {
            Some(asked) => jittered.max(asked.clamp(Duration::from_secs(1), MAX_RETRY_AFTER)),
            None => jittered,
        })
    }
}

/// Parses `10s,1m,5m,2h,1d,500ms` into durations; the error names the bad step.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>> {
    text.split(',')
        .map(str::trim)
        .map(|step| {
            parse_duration(step).ok_or_else(|| {
                Error::Config(format!(
                    "retry step {step:?} is not a duration like 500ms, 10s, 5m, 2h or 1d"
                ))
            })
        })
        .collect()
}

/// Parses one duration: a whole number and a unit (`ms`, `s`, `m`, `h`, `d`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// Parses a `Retry-After` header: delay-seconds or an HTTP date.
pub(crate) fn parse_retry_after(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - now).to_std().ok()
}

/// A duration in the largest unit that shows it exactly: `500ms`, `30s`, `2m`, `5h`, `1d`.
pub(crate) fn format_duration(ms: u64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn default_schedule_is_front_loaded_and_about_three_days() {
        let p = RetryPolicy::default();
        assert_eq!(p.schedule.len(), 11);
        assert_eq!(p.schedule[0], secs(5));
        assert_eq!(p.schedule[1], secs(30));
        let total: Duration = p.schedule.iter().sum();
        assert!(
            total > secs(2 * 86_400) && total < secs(3 * 86_400),
            "{total:?}"
        );
        p.validate().expect("default policy is valid");
    }

    #[test]
    fn steps_follow_the_schedule_with_bounded_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.next_delay(1, None, 0.5), Some(secs(5)));
        assert_eq!(p.next_delay(1, None, 0.0), Some(secs(4)));
        assert_eq!(p.next_delay(1, None, 1.0), Some(secs(6)));
        assert_eq!(p.next_delay(2, None, 0.5), Some(secs(30)));
        assert_eq!(p.next_delay(11, None, 0.5), Some(secs(20 * 3600)));
        assert_eq!(p.next_delay(12, None, 0.5), None, "schedule exhausted");
        assert_eq!(p.next_delay(0, None, 0.5), None);
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let p = RetryPolicy::default();
        // Longer than the schedule: honoured.
        assert_eq!(p.next_delay(1, Some(secs(120)), 0.5), Some(secs(120)));
        // Shorter than the schedule: the schedule wins.
        assert_eq!(p.next_delay(2, Some(secs(1)), 0.5), Some(secs(30)));
        // Absurdly long: capped.
        assert_eq!(
            p.next_delay(1, Some(secs(10 * 86_400)), 0.5),
            Some(MAX_RETRY_AFTER)
        );
        // Even when the schedule is exhausted nothing is retried.
        assert_eq!(p.next_delay(12, Some(secs(1)), 0.5), None);
    }

    #[test]
    fn schedules_parse_and_errors_name_the_step() {
        assert_eq!(
            parse_schedule("500ms, 10s,1m,2h,1d").expect("valid"),
            vec![
                Duration::from_millis(500),
                secs(10),
                secs(60),
                secs(7200),
                secs(86_400)
            ]
        );
        let err = parse_schedule("10s,5x").expect_err("bad unit").to_string();
        assert!(err.contains("\"5x\""), "{err}");
        assert!(parse_schedule("").is_err());
        assert!(parse_schedule("s").is_err());
        assert!(parse_schedule("99999999999999999999d").is_err());
    }

    #[test]
    fn retry_after_header_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .expect("valid")
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("120", now), Some(secs(120)));
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 10:01:00 GMT", now),
            Some(secs(60))
        );
        assert_eq!(
            parse_retry_after("Fri, 27 Nov 2026 09:00:00 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}

/// Properties of the policy over any schedule, attempt, jitter and
/// `Retry-After` (proptest; the cases above are the known answers).
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn schedule() -> impl Strategy<Value = Vec<Duration>> {
        prop::collection::vec(
            (1u64..=7 * 86_400_000).prop_map(Duration::from_millis),
            1..=50,
        )
    }

    proptest! {
        #[test]
        fn a_delay_is_the_step_within_its_jitter(
            schedule in schedule(),
            jitter in 0.0f64..=0.5,
            attempt in 0u32..60,
            unit in -1.0f64..2.0,
        ) {
            let policy = RetryPolicy { schedule: schedule.clone(), jitter };
            prop_assert!(policy.validate().is_ok());
            let delay = policy.next_delay(attempt, None, unit);
            match attempt.checked_sub(1).and_then(|i| schedule.get(i as usize)) {
                None => prop_assert_eq!(delay, None, "past the schedule: given up"),
                Some(step) => {
                    let d = delay.expect("within the schedule");
                    let (lo, hi) = (step.mul_f64(1.0 - jitter), step.mul_f64(1.0 + jitter));
                    // One nanosecond either way for float rounding.
                    prop_assert!(d + Duration::from_nanos(1) >= lo && d <= hi + Duration::from_nanos(1),
                        "{d:?} not in {lo:?}..={hi:?}");
                }
            }
        }

        #[test]
        fn retry_after_is_honoured_within_its_bounds(
            schedule in schedule(),
            attempt in 1u32..=50,
            asked_ms in 0u64..=10 * 86_400_000,
            unit in 0.0f64..1.0,
        ) {
            let policy = RetryPolicy { schedule, jitter: 0.2 };
            let asked = Duration::from_millis(asked_ms);
            let plain = policy.next_delay(attempt, None, unit);
            let with = policy.next_delay(attempt, Some(asked), unit);
            prop_assert_eq!(plain.is_some(), with.is_some());
            if let (Some(plain), Some(with)) = (plain, with) {
                let bounded = asked.clamp(Duration::from_secs(1), MAX_RETRY_AFTER);
                prop_assert_eq!(with, plain.max(bounded));
                prop_assert!(with <= MAX_RETRY_AFTER.max(plain));
            }
        }

        #[test]
        fn more_randomness_never_waits_less(
            schedule in schedule(),
            attempt in 1u32..=50,
            a in 0.0f64..1.0,
            b in 0.0f64..1.0,
        ) {
            let policy = RetryPolicy { schedule, jitter: 0.5 };
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(policy.next_delay(attempt, None, lo) <= policy.next_delay(attempt, None, hi));
        }

        #[test]
        fn schedules_read_back_from_their_text(schedule in schedule()) {
            let text = schedule
                .iter()
                .map(|d| format_duration(d.as_millis() as u64))
                .collect::<Vec<_>>()
                .join(",");
            prop_assert_eq!(parse_schedule(&text).expect("parses"), schedule);
        }

        #[test]
        fn any_text_is_a_schedule_or_an_error(text in ".{0,40}") {
            // Never a panic, and an accepted step is a whole number of ms.
            if let Ok(steps) = parse_schedule(&text) {
                prop_assert!(!steps.is_empty());
            }
            let _ = parse_retry_after(&text, chrono::Utc::now());
        }
    }
}
