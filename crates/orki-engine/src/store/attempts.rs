//! The attempt log: recording attempts (in the group commit) with the
//! webhook's health, the log's indexes, and its filtered, paged queries.

use std::collections::hash_map::Entry;

use redb::{ReadableTable, WriteTransaction};

use super::{HotTables, Logged, Store, get_record};
use crate::Result;
use crate::ids::{AttemptId, WebhookId};
use crate::model::{
    Attempt, AttemptDetail, AttemptRecord, DeliveryRecord, DeliveryState, EventRecord, Pause,
    PauseReason, RequestView, WebhookRecord,
};
use crate::queue::QueuedJob;
use crate::store::codec::{decode, encode};
use crate::store::tables::{ATTEMPT_INDEX, ATTEMPTS, DELIVERIES, EVENTS};

/// A webhook's health after an attempt changed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// The webhook.
    pub webhook_id: WebhookId,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// At or above the warning threshold.
    pub warning: bool,
    /// This attempt paused the webhook (auto-pause: failing too long, or `410 Gone`).
    pub paused: Option<Pause>,
}

/// What an attempt's record judges its webhook's health by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HealthRules {
    /// Consecutive failures that show a warning.
    pub warning_threshold: u32,
    /// Hours of nothing but failures that pause a webhook (`None`: never).
    pub auto_pause_after_hours: Option<u32>,
}

impl From<u32> for HealthRules {
    /// A warning threshold, and no auto-pause by time.
    fn from(warning_threshold: u32) -> Self {
        Self {
            warning_threshold,
            auto_pause_after_hours: None,
        }
    }
}

impl HealthRules {
    /// Follows `a` in the webhook's failing streak (`failing_since`) and
    /// returns the pause it brings: at once on `410 Gone`, or once every
    /// attempt has failed for `auto_pause_after_hours`. A success ends the
    /// streak; an already paused webhook is left as it is.
    fn pauses(&self, w: &mut WebhookRecord, a: &Attempt) -> Option<Pause> {
        if a.success {
            w.controls.failing_since = None;
            return None;
        }
        let since = *w.controls.failing_since.get_or_insert(a.timestamp);
        if w.is_paused() {
            return None;
        }
        let reason = if a.status_code == Some(410) {
            PauseReason::Gone
        } else if self.auto_pause_after_hours.is_some_and(|h| {
            a.timestamp.signed_duration_since(since) >= chrono::Duration::hours(i64::from(h))
        }) {
            PauseReason::Failing
        } else {
            return None;
        };
        let pause = Pause {
            reason,
            at: a.timestamp,
        };
        w.controls.paused = Some(pause.clone());
        Some(pause)
    }
}

/// What recording an attempt changed beyond the log.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    /// The webhook's health, when it changed.
    pub(crate) health: Option<Health>,
    /// The next delivery of an ordered key, now due (for the in-memory queue).
    pub(crate) next: Option<QueuedJob>,
}

impl Store {
    /// Records a delivery attempt and moves the delivery on, in the caller's
    /// transaction (the group commit), with the record already encoded (so the
    /// writer thread does not spend time on it): the attempt is logged; the
    /// delivery succeeds, waits in the queue until `next_due_ms`, or is given up;
    /// the webhook's failure count is updated. Returns the webhook's health when
    /// it changed.
    pub(crate) fn record_attempt_in(
        t: &mut HotTables<'_>,
        record: &AttemptRecord,
        encoded: &[u8],
        next_due_ms: Option<u64>,
        rules: impl Into<HealthRules>,
    ) -> Result<Recorded> {
        let rules = rules.into();
        let a = &record.attempt;
        insert_attempt_encoded(&mut t.attempts, &mut t.index, a, encoded)?;
        let (health, paused) = {
            let found = match t.webhooks_read.entry(a.webhook_id.0) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(get_record::<WebhookRecord>(
                    &*t.webhooks,
                    a.webhook_id.0,
                    "webhook",
                )?),
            };
            match found {
                Some(w) => {
                    let before = w.consecutive_failures;
                    w.consecutive_failures = if a.success {
                        0
                    } else {
                        before.saturating_add(1)
                    };
                    let newly_paused = rules.pauses(w, a);
                    // Success after success changes only the last attempt, which
                    // reads from the log (see `with_last_attempt`): the record is
                    // rewritten when the count changes, and at least hourly so it
                    // stays close once retention has pruned those attempts.
                    let changed = before != w.consecutive_failures;
                    let stale = w.last_attempt_at.is_none_or(|t| {
                        a.timestamp.signed_duration_since(t) > chrono::Duration::hours(1)
                    });
                    if changed || stale || newly_paused.is_some() {
                        w.last_attempt_at = Some(a.timestamp);
                        w.last_status_code = a.status_code;
                        t.webhooks.insert(w.id.0, encode(&*w)?.as_slice())?;
                    }
                    let health = (changed || newly_paused.is_some()).then_some(Health {
                        webhook_id: w.id,
                        consecutive_failures: w.consecutive_failures,
                        warning: w.consecutive_failures >= rules.warning_threshold,
                        paused: newly_paused,
                    });
                    (health, w.is_paused())
                }
                None => (None, false),
            }
        };
        let found: Option<DeliveryRecord> =
            get_record(&*t.deliveries, a.delivery_id.0, "delivery")?;
        // A delivery cancelled or skipped during its attempt (webhook disabled
        // or deleted, or given up by hand) stays so; the attempt is still logged.
        let mut next = None;
        if let Some(mut delivery) = found.filter(|d| d.state == DeliveryState::Pending) {
            if let Some(old) = delivery.due_ms.take() {
                t.due.remove((old, delivery.id.0))?;
            }
            // Nothing is given up while its webhook is paused: it is held.
            let next_due_ms = match next_due_ms {
                None if paused => Some(crate::store::unix_ms(a.timestamp)),
                next => next,
            };
            delivery.attempts = delivery.attempts.max(a.attempt);
            delivery.state = if a.success {
                DeliveryState::Succeeded
            } else if let Some(next) = next_due_ms {
                t.due.insert((next, delivery.id.0), delivery.webhook_id.0)?;
                delivery.due_ms = Some(next);
                DeliveryState::Pending
            } else {
                t.failed
                    .insert((delivery.webhook_id.0, delivery.id.0), ())?;
                DeliveryState::Failed
            };
            t.deliveries
                .insert(delivery.id.0, encode(&delivery)?.as_slice())?;
            if delivery.state != DeliveryState::Pending {
                next = t
                    .chains()
                    .finished(&delivery, crate::store::unix_ms(a.timestamp))?;
            }
        }
        Ok(Recorded { health, next })
    }

    /// Attempts matching `filter`, newest first, older than `before` when given,
    /// at most `limit`: one range scan of the attempt index, then one lookup each
    /// (without a webhook, type or outcome filter: one range scan of the log itself).
    pub fn list_attempts(
        &self,
        filter: &AttemptFilter,
        before: Option<AttemptId>,
        limit: usize,
    ) -> Result<Vec<Attempt>> {
        let txn = self.read()?;
        let index = txn.open_table(ATTEMPT_INDEX)?;
        let attempts = txn.open_table(ATTEMPTS)?;
        let prefixes = filter.index_prefixes();
        let lo = filter.from_ms.map_or(0, |ms| AttemptId::floor_at(ms).0);
        let mut hi = filter
            .to_ms
            .map_or(u128::MAX, |ms| AttemptId::floor_at(ms.saturating_add(1)).0);
        if let Some(c) = before {
            hi = hi.min(c.0);
        }
        let mut out = Vec::with_capacity(limit.min(1000));
        if lo >= hi {
            return Ok(out);
        }
        if prefixes.is_empty() {
            for entry in attempts.range(lo..hi)?.rev().take(limit) {
                let (_, v) = entry?;
                out.push(decode::<AttemptRecord>(v.value(), "attempt")?.attempt);
            }
            return Ok(out);
        }
        for id in newest_ids(&index, &prefixes, lo, hi, limit)? {
            if let Some(v) = attempts.get(id)? {
                out.push(decode::<AttemptRecord>(v.value(), "attempt")?.attempt);
            }
        }
        Ok(out)
    }

    /// One attempt with its request (body from the event) and response.
    pub(crate) fn get_attempt(&self, id: AttemptId) -> Result<Option<AttemptDetail>> {
        let txn = self.read()?;
        let Some(record) =
            get_record::<AttemptRecord>(&txn.open_table(ATTEMPTS)?, id.0, "attempt")?
        else {
            return Ok(None);
        };
        let event = get_record::<EventRecord>(
            &txn.open_table(EVENTS)?,
            record.attempt.event_id.0,
            "event",
        )?;
        let (body, ordering_key) = match event {
            Some(e) => (Some(e.payload), e.ordering_key),
            None => (None, None),
        };
        Ok(Some(AttemptDetail {
            attempt: record.attempt,
            request: RequestView {
                url: record.request.url,
                method: record.request.method,
                headers: record.request.headers,
                body,
            },
            response: record.response,
            ordering_key,
        }))
    }

    /// Records a test delivery: its event, its delivery and its one attempt, in one
    /// transaction. The webhook's health is not touched and nothing is queued.
    pub(crate) fn record_test(
        &self,
        event: &EventRecord,
        delivery: &DeliveryRecord,
        record: &AttemptRecord,
    ) -> Result<()> {
        self.insert_history(&[(event.clone(), delivery.clone(), record.clone())])
    }

    /// Stores finished deliveries as they are given (event, delivery, attempt), in one
    /// transaction, touching no webhook and no queue: for test events, imports,
    /// and for filling a log in tests and benchmarks.
    pub fn insert_history(
        &self,
        items: &[(EventRecord, DeliveryRecord, AttemptRecord)],
    ) -> Result<()> {
        let txn = self.write()?;
        {
            let mut events = txn.open_table(EVENTS)?;
            let mut deliveries = txn.open_table(DELIVERIES)?;
            for (event, delivery, _) in items {
                events.insert(event.id.0, encode(event)?.as_slice())?;
                deliveries.insert(delivery.id.0, encode(delivery)?.as_slice())?;
            }
        }
        for (_, _, record) in items {
            insert_attempt(&txn, record)?;
        }
        txn.commit()?;
        Ok(())
    }
}

/// Filters of the delivery log; all optional, combinable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptFilter {
    /// Only this webhook's attempts.
    pub webhook: Option<WebhookId>,
    /// Only this event type (a known one).
    pub event_type: Option<String>,
    /// Only successes (`true`) or failures (`false`).
    pub success: Option<bool>,
    /// From this time (Unix ms, inclusive).
    pub from_ms: Option<u64>,
    /// Up to this time (Unix ms, inclusive).
    pub to_ms: Option<u64>,
}

impl AttemptFilter {
    /// The index key prefixes `(mask, webhook, type code, outcome)` whose union
    /// is the attempts these filters match; none means the whole log.
    fn index_prefixes(&self) -> Vec<IndexPrefix> {
        let (mask, webhook) = match self.webhook {
            Some(w) => (BY_WEBHOOK, w.0),
            None if self.event_type.is_some() || self.success.is_some() => (BY_TYPE, 0),
            None => return Vec::new(),
        };
        let types = match &self.event_type {
            Some(t) => vec![type_code(t)],
            None => all_type_codes(),
        };
        let outcomes = match self.success {
            Some(s) => vec![outcome_code(s)],
            None => vec![outcome_code(false), outcome_code(true)],
        };
        types
            .iter()
            .flat_map(|&t| outcomes.iter().map(move |&o| (mask, webhook, t, o)))
            .collect()
    }
}

/// `(mask, webhook, type code, outcome)`: one range of the attempt index.
type IndexPrefix = (u8, u128, u8, u8);

/// Index keys by webhook, type and outcome (mask 7), and by type and outcome
/// (mask 6). Databases written before hold the other masks too; they are not read.
pub(super) const BY_WEBHOOK: u8 = 7;
pub(super) const BY_TYPE: u8 = 6;

/// Every type code an attempt can have: the catalogue's, and the one of a type
/// no longer in it.
pub(super) fn all_type_codes() -> Vec<u8> {
    crate::event_types::NAMES
        .iter()
        .filter_map(|n| crate::event_types::index_code(n))
        .chain([u8::MAX])
        .collect()
}

/// The ids of the newest `limit` attempts in the union of the index ranges
/// `prefix + [lo, hi)`, newest first: a merge of the ranges, each read from its
/// newest end, so at most `limit` keys are read from each.
fn newest_ids(
    index: &impl ReadableTable<(u8, u128, u8, u8, u128), ()>,
    prefixes: &[IndexPrefix],
    lo: u128,
    hi: u128,
    limit: usize,
) -> Result<Vec<u128>> {
    let mut ranges = Vec::with_capacity(prefixes.len());
    for &(m, w, t, o) in prefixes {
        ranges.push(index.range((m, w, t, o, lo)..(m, w, t, o, hi))?.rev());
    }
    let mut heads = std::collections::BinaryHeap::with_capacity(ranges.len());
    for (i, range) in ranges.iter_mut().enumerate() {
        if let Some(entry) = range.next() {
            heads.push((entry?.0.value().4, i));
        }
    }
    let mut out = Vec::with_capacity(limit.min(1000));
    while out.len() < limit {
        let Some((id, i)) = heads.pop() else {
            break;
        };
        out.push(id);
        if let Some(entry) = ranges[i].next() {
            heads.push((entry?.0.value().4, i));
        }
    }
    Ok(out)
}

/// A compact code per event type for index keys (0 means "any"; `u8::MAX`, a
/// type not in the catalogue). Stored: see [`crate::event_types::index_code`].
pub(super) fn type_code(event_type: &str) -> u8 {
    crate::event_types::index_code(event_type).unwrap_or(u8::MAX)
}

fn outcome_code(success: bool) -> u8 {
    if success { 2 } else { 1 }
}

/// The index key of an attempt for one subset `mask` of {webhook, type, outcome}.
pub(super) fn index_key(a: &Attempt, mask: u8) -> (u8, u128, u8, u8, u128) {
    (
        mask,
        if mask & 1 != 0 { a.webhook_id.0 } else { 0 },
        if mask & 2 != 0 {
            type_code(&a.event_type)
        } else {
            0
        },
        if mask & 4 != 0 {
            outcome_code(a.success)
        } else {
            0
        },
        a.id.0,
    )
}

/// The webhook with its last (non-test) attempt's time and status from the log,
/// when that is newer than what the record holds (the record is rewritten only
/// when its failure count changes).
pub(super) fn with_last_attempt(
    mut webhook: WebhookRecord,
    index: &impl ReadableTable<(u8, u128, u8, u8, u128), ()>,
    attempts: &impl ReadableTable<u128, &'static [u8]>,
) -> Result<WebhookRecord> {
    // Test attempts are few; looking back this far finds a real one if any is near.
    const LOOK_BACK: usize = 64;
    let filter = AttemptFilter {
        webhook: Some(webhook.id),
        ..AttemptFilter::default()
    };
    for id in newest_ids(index, &filter.index_prefixes(), 0, u128::MAX, LOOK_BACK)? {
        let Some(v) = attempts.get(id)? else {
            continue;
        };
        let a = decode::<AttemptRecord>(v.value(), "attempt")?.attempt;
        if a.test {
            continue;
        }
        if webhook.last_attempt_at.is_none_or(|t| a.timestamp > t) {
            webhook.last_attempt_at = Some(a.timestamp);
            webhook.last_status_code = a.status_code;
        }
        break;
    }
    Ok(webhook)
}

/// Stores an attempt and its index entries.
pub(super) fn insert_attempt(txn: &WriteTransaction, record: &AttemptRecord) -> Result<()> {
    insert_attempt_encoded(
        &mut Logged::plain(txn.open_table(ATTEMPTS)?),
        &mut Logged::plain(txn.open_table(ATTEMPT_INDEX)?),
        &record.attempt,
        &encode(record)?,
    )
}

/// Stores an attempt, encoded, and its index entries.
pub(super) fn insert_attempt_encoded(
    attempts: &mut Logged<'_, u128, &'static [u8]>,
    index: &mut Logged<'_, (u8, u128, u8, u8, u128), ()>,
    attempt: &Attempt,
    encoded: &[u8],
) -> Result<()> {
    attempts.insert(attempt.id.0, encoded)?;
    // The unfiltered log is the attempts table itself (ids are time-ordered).
    for mask in [BY_WEBHOOK, BY_TYPE] {
        index.insert(index_key(attempt, mask), ())?;
    }
    Ok(())
}
