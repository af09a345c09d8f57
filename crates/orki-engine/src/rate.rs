//! Per-webhook rate limits: a token bucket each, refilled at the webhook's
//! `rate_limit_per_s`, holding at most a twentieth of a second's worth (at
//! least one token), so sends are spread evenly rather than in bursts.
//! Kept by the scheduler, on its clock, for the webhooks that have a limit.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::ids::WebhookId;

/// One webhook's bucket.
#[derive(Debug)]
struct Bucket {
    rate: u32,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn capacity(rate: u32) -> f64 {
        f64::from((rate / 20).max(1))
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(self.rate)).min(Self::capacity(self.rate));
        self.at = now;
    }

    /// When the next whole token is there.
    fn next_token(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.at + Duration::from_secs_f64(missing / f64::from(self.rate))
    }
}

/// The buckets of the rate-limited webhooks.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    buckets: HashMap<WebhookId, Bucket>,
}

impl Limits {
    /// Takes a token for one send to `webhook` at `now`, whose limit is
    /// `rate` (`None`: unlimited, always yes). `Err` carries when the next
    /// token is there.
    pub(crate) fn admit(
        &mut self,
        webhook: WebhookId,
        rate: Option<u32>,
        now: Instant,
    ) -> Result<(), Instant> {
        let Some(rate) = rate.filter(|r| *r > 0) else {
            self.buckets.remove(&webhook);
            return Ok(());
        };
        let bucket = self.buckets.entry(webhook).or_insert_with(|| Bucket {
            rate,
            tokens: Bucket::capacity(rate),
            at: now,
        });
        if bucket.rate != rate {
            bucket.rate = rate;
        }
        bucket.refill(now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(bucket.next_token())
        }
    }

    /// Forgets the webhooks not in `keep` (deleted ones).
    pub(crate) fn retain(&mut self, keep: impl Fn(&WebhookId) -> bool) {
        self.buckets.retain(|w, _| keep(w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over ten seconds of asking as often as possible, a limit of 50/s
    /// admits 50 a second (plus the first second's small burst), evenly.
    #[tokio::test(start_paused = true)]
    async fn a_bucket_admits_its_rate_and_says_when_the_next_token_comes() {
        let mut limits = Limits::default();
        let w = WebhookId::generate();
        let start = Instant::now();
        let mut admitted = 0;
        let mut now = start;
        while now < start + Duration::from_secs(10) {
            match limits.admit(w, Some(50), now) {
                Ok(()) => admitted += 1,
                Err(next) => {
                    assert!(next > now, "the next token is later");
                    assert!(next - now <= Duration::from_millis(20), "{:?}", next - now);
                    now = next;
                }
            }
        }
        // 2 at once (a twentieth of a second's worth), then 50 per second.
        assert!((500..=503).contains(&admitted), "{admitted}");
        // Unlimited: always yes, and nothing kept.
        assert!(limits.admit(w, None, now).is_ok());
        assert!(limits.buckets.is_empty());
        // A rate of 1: one now, the next a second later.
        assert!(limits.admit(w, Some(1), now).is_ok());
        assert_eq!(
            limits.admit(w, Some(1), now),
            Err(now + Duration::from_secs(1))
        );
    }
}
