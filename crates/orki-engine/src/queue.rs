//! The in-memory side of the due queue.
//!
//! The `due_v1` table stays the durable truth: a delivery is in it from the
//! commit that accepts it until the commit that records its success or gives it
//! up. This module keeps a copy of those entries in memory, one lane per
//! webhook, so the scheduler takes the next due delivery of a webhook with a
//! free slot in O(log n) instead of scanning the table and stepping over the
//! webhooks at their limit.
//!
//! Fresh deliveries (just accepted, never attempted) carry their event, so the
//! first attempt reads nothing from the store. Every other entry is checked
//! against the store before its attempt (still pending, same due time), so a
//! stale copy never sends twice.
//!
//! Memory stays bounded: past `limit` entries the queue "spills": it stops
//! copying, and reloads the earliest entries from the table when it runs low or
//! nothing in memory is due.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::ids::{DeliveryId, WebhookId};
use crate::model::EventRecord;

/// At most this many bytes of events are kept with fresh entries (see
/// [`footprint`]); past it, the attempt reads the event from the store.
const CACHED_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// The memory an event kept with a queued job holds: the record, its strings and
/// the `Arc` around it (counted for each job that keeps it, to stay on the safe side).
fn footprint(event: &EventRecord) -> usize {
    std::mem::size_of::<EventRecord>()
        + 2 * std::mem::size_of::<usize>()
        + event.payload.capacity()
        + event.event_type.capacity()
        + event.idempotency_key.as_ref().map_or(0, String::capacity)
}

/// While spilled with nothing due in memory, the table is read again this often.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// An entry of the `due_v1` table: `(due unix ms, delivery, webhook)`.
pub type DueEntry = (u64, DeliveryId, WebhookId);

/// A delivery waiting for an attempt.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    /// Its due time in the `due_v1` table (unix ms).
    pub due_ms: u64,
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// Its webhook.
    pub webhook_id: WebhookId,
    /// For a just-accepted delivery: its event; the attempt is its first.
    pub fresh: Option<Arc<EventRecord>>,
}

#[derive(Default)]
struct Lane {
    jobs: BTreeMap<(u64, DeliveryId), Option<Arc<EventRecord>>>,
    /// Requests in flight to this webhook.
    busy: usize,
    /// Its key in `State::ready`, when it is there.
    ready_key: Option<u64>,
}

#[derive(Default)]
struct State {
    lanes: HashMap<WebhookId, Lane>,
    /// Lanes with a queued job and a free slot, by the due time of their first job.
    ready: BTreeSet<(u64, WebhookId)>,
    /// Requests in flight, over all webhooks.
    busy: usize,
    /// Deliveries taken and not yet recorded: a copy of one of them is dropped.
    unrecorded: HashSet<DeliveryId>,
    queued: usize,
    cached_bytes: usize,
    /// Some entries of the table are not in memory.
    spilled: bool,
    /// Entries not copied since the last reload began.
    missed: u64,
    /// When the last reload began.
    last_reload: Option<Instant>,
}

/// The queue, shared by the engine (which feeds it after each commit) and the
/// scheduler (which takes from it).
pub struct Queue {
    state: Mutex<State>,
    per_webhook: usize,
    total: usize,
    limit: usize,
    wake: Notify,
}

impl Queue {
    /// An empty queue that must first be loaded from the table (it starts spilled).
    pub fn new(total: usize, per_webhook: usize, limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                spilled: true,
                ..State::default()
            }),
            per_webhook: per_webhook.max(1),
            total: total.max(1),
            limit: limit.max(1),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves when something changed that may let the scheduler take a job.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// Adds entries committed to the table. Call after the commit.
    pub fn push(&self, jobs: impl IntoIterator<Item = QueuedJob>) {
        let mut woke = false;
        {
            let mut s = self.lock();
            for job in jobs {
                woke |= self.insert(&mut s, job);
            }
        }
        if woke {
            self.wake.notify_one();
        }
    }

    fn insert(&self, s: &mut State, mut job: QueuedJob) -> bool {
        if s.spilled || s.queued >= self.limit {
            s.spilled = true;
            s.missed += 1;
            return false;
        }
        if let Some(event) = &job.fresh {
            let bytes = footprint(event);
            if s.cached_bytes + bytes > CACHED_EVENT_BYTES {
                job.fresh = None;
            } else {
                s.cached_bytes += bytes;
            }
        }
        let lane = s.lanes.entry(job.webhook_id).or_default();
        let key = (job.due_ms, job.delivery_id);
        if lane.jobs.contains_key(&key) {
            if let Some(event) = job.fresh {
                s.cached_bytes -= footprint(&event);
            }
            return false;
        }
        lane.jobs.insert(key, job.fresh);
        s.queued += 1;
        self.reindex(s, job.webhook_id)
    }

    /// Puts the lane in `ready` under its first due time when it has a free slot.
    /// Returns whether it became ready or earlier.
    fn reindex(&self, s: &mut State, webhook: WebhookId) -> bool {
        let Some(lane) = s.lanes.get_mut(&webhook) else {
            return false;
        };
        let old = lane.ready_key.take();
        let new = if lane.busy < self.per_webhook {
            lane.jobs.keys().next().map(|(due, _)| *due)
        } else {
            None
        };
        lane.ready_key = new;
        if lane.jobs.is_empty() && lane.busy == 0 {
            s.lanes.remove(&webhook);
        }
        if old == new {
            return false;
        }
        if let Some(due) = old {
            s.ready.remove(&(due, webhook));
        }
        if let Some(due) = new {
            s.ready.insert((due, webhook));
        }
        new.is_some_and(|n| old.is_none_or(|o| n < o))
    }

    /// Takes the due jobs that may start now (within both limits), oldest due
    /// first over the lanes. Returns them and the next due time still queued.
    pub fn take(&self, now_ms: u64) -> (Vec<QueuedJob>, Option<u64>) {
        let mut guard = self.lock();
        let s = &mut *guard;
        let mut jobs = Vec::new();
        while s.busy < self.total {
            let Some(&(due, webhook)) = s.ready.first() else {
                break;
            };
            if due > now_ms {
                return (jobs, Some(due));
            }
            let popped = s.lanes.get_mut(&webhook).and_then(|l| l.jobs.pop_first());
            let Some(((due_ms, delivery_id), fresh)) = popped else {
                s.ready.remove(&(due, webhook));
                if let Some(lane) = s.lanes.get_mut(&webhook) {
                    lane.ready_key = None;
                }
                continue;
            };
            s.queued -= 1;
            if let Some(event) = &fresh {
                s.cached_bytes -= footprint(event);
            }
            if s.unrecorded.insert(delivery_id) {
                if let Some(lane) = s.lanes.get_mut(&webhook) {
                    lane.busy += 1;
                }
                s.busy += 1;
                jobs.push(QueuedJob {
                    due_ms,
                    delivery_id,
                    webhook_id: webhook,
                    fresh,
                });
            }
            // else: a copy of a delivery whose attempt is running; that attempt
            // queues what comes next.
            self.reindex(s, webhook);
        }
        (jobs, None)
    }

    /// The request of a taken job is over: its slot is free again.
    pub fn request_done(&self, webhook: WebhookId) {
        let woke = {
            let mut s = self.lock();
            s.busy = s.busy.saturating_sub(1);
            if let Some(lane) = s.lanes.get_mut(&webhook) {
                lane.busy = lane.busy.saturating_sub(1);
            }
            self.reindex(&mut s, webhook) || s.busy + 1 == self.total
        };
        if woke {
            self.wake.notify_one();
        }
    }

    /// The attempt of a taken job is recorded (or it was dropped): a later copy
    /// of it may run again.
    pub fn recorded(&self, delivery: DeliveryId) {
        self.lock().unrecorded.remove(&delivery);
    }

    /// Drops the queued entries of a webhook (deleted or disabled; the table's
    /// entries were cancelled in the same commit).
    pub fn forget_webhook(&self, webhook: WebhookId) {
        self.clear_lane(&mut self.lock(), webhook);
    }

    /// Drops a lane's queued jobs (its requests in flight stay counted).
    fn clear_lane(&self, s: &mut State, webhook: WebhookId) {
        let Some(lane) = s.lanes.get_mut(&webhook) else {
            return;
        };
        let jobs = std::mem::take(&mut lane.jobs);
        s.queued -= jobs.len();
        s.cached_bytes -= jobs.values().flatten().map(|e| footprint(e)).sum::<usize>();
        self.reindex(s, webhook);
    }

    /// When the queue spilled and needs the table's earliest entries (it runs
    /// low, or nothing in memory is due at `now_ms` and a second has passed since
    /// the last reload): returns how many to read, and starts counting the
    /// entries it misses meanwhile.
    pub fn reload_wanted(&self, now_ms: u64) -> Option<usize> {
        let mut s = self.lock();
        if !s.spilled {
            return None;
        }
        let low = s.queued <= self.limit / 2;
        let idle = s
            .lanes
            .values()
            .all(|l| l.jobs.keys().next().is_none_or(|(due, _)| *due > now_ms))
            && s.last_reload.is_none_or(|t| t.elapsed() >= RELOAD_EVERY);
        if !(low || idle) {
            return None;
        }
        s.missed = 0;
        s.last_reload = Some(Instant::now());
        Some(self.limit)
    }

    /// Some entries of the table may be missing from memory (an attempt could
    /// not be loaded or recorded): the next reload brings them back.
    pub fn mark_spilled(&self) {
        let mut s = self.lock();
        s.spilled = true;
        s.missed += 1;
    }

    /// Replaces the memory copy with the table's earliest entries (read after
    /// [`Queue::reload_wanted`]); `complete` when that was all of the table.
    pub fn reload(&self, entries: Vec<DueEntry>, complete: bool) {
        {
            let mut s = self.lock();
            let webhooks: Vec<WebhookId> = s.lanes.keys().copied().collect();
            for w in webhooks {
                self.clear_lane(&mut s, w);
            }
            let missed = s.missed;
            s.spilled = false;
            for (due_ms, delivery_id, webhook_id) in entries {
                self.insert(
                    &mut s,
                    QueuedJob {
                        due_ms,
                        delivery_id,
                        webhook_id,
                        fresh: None,
                    },
                );
            }
            s.spilled = !complete || missed > 0 || s.spilled;
        }
        self.wake.notify_one();
    }

    /// Whether some of the table's entries are not in memory.
    pub fn spilled(&self) -> bool {
        self.lock().spilled
    }

    /// Entries in memory and requests in flight.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let s = self.lock();
        (s.queued, s.busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(due_ms: u64, webhook: u128) -> QueuedJob {
        QueuedJob {
            due_ms,
            delivery_id: DeliveryId::generate(),
            webhook_id: WebhookId(webhook),
            fresh: None,
        }
    }

    fn loaded(total: usize, per_webhook: usize, limit: usize) -> Queue {
        let q = Queue::new(total, per_webhook, limit);
        q.reload(Vec::new(), true);
        q
    }

    #[test]
    fn takes_due_jobs_oldest_first_within_the_per_webhook_limit() {
        let q = loaded(10, 2, 100);
        q.push([job(30, 1), job(10, 1), job(20, 1), job(15, 2), job(99, 2)]);
        let (jobs, next) = q.take(50);
        let dues: Vec<u64> = jobs.iter().map(|j| j.due_ms).collect();
        // Webhook 1 gets two slots (10, 20); webhook 2 its due one (15); 99 is later.
        assert_eq!(dues, vec![10, 15, 20]);
        assert_eq!(next, Some(99));
        // A freed slot lets webhook 1's third job go.
        q.request_done(WebhookId(1));
        let (jobs, _) = q.take(50);
        assert_eq!(jobs.iter().map(|j| j.due_ms).collect::<Vec<_>>(), vec![30]);
    }

    #[test]
    fn the_total_limit_holds_across_webhooks() {
        let q = loaded(3, 8, 100);
        q.push((0..10u128).map(|w| job(1, w)));
        assert_eq!(q.take(5).0.len(), 3);
        assert_eq!(q.take(5).0.len(), 0);
        q.request_done(WebhookId(0));
        assert_eq!(q.take(5).0.len(), 1);
    }

    #[test]
    fn a_copy_of_an_unrecorded_delivery_is_dropped() {
        let q = loaded(10, 10, 100);
        let first = job(1, 1);
        let copy = QueuedJob {
            due_ms: 2,
            ..first.clone()
        };
        q.push([first.clone()]);
        assert_eq!(q.take(5).0.len(), 1);
        q.push([copy.clone()]);
        assert!(q.take(5).0.is_empty(), "its attempt is still running");
        q.recorded(first.delivery_id);
        q.push([copy]);
        assert_eq!(q.take(5).0.len(), 1);
    }

    #[test]
    fn past_the_limit_it_spills_and_a_reload_takes_the_earliest_back() {
        let q = loaded(10, 10, 3);
        q.push([job(5, 1), job(6, 1), job(7, 1), job(1, 1)]);
        assert!(q.spilled());
        assert_eq!(q.len().0, 3);
        // Something is queued and due: no reload yet (it is not running low).
        assert_eq!(q.reload_wanted(100), None);
        let want = q.reload_wanted(0).expect("spilled and nothing due");
        assert_eq!(want, 3);
        let earliest: Vec<_> = [1u64, 5, 6]
            .iter()
            .map(|&d| (d, DeliveryId::generate(), WebhookId(1)))
            .collect();
        q.reload(earliest, false);
        assert!(q.spilled(), "the table had more");
        let (jobs, _) = q.take(100);
        assert_eq!(
            jobs.iter().map(|j| j.due_ms).collect::<Vec<_>>(),
            vec![1, 5, 6]
        );
        // Entries missed while a reload reads keep it spilled.
        q.push([job(9, 1)]);
        q.reload(Vec::new(), true);
        assert!(q.spilled());
    }

    #[test]
    fn forgetting_a_webhook_drops_its_entries_only() {
        let q = loaded(10, 10, 100);
        q.push([job(1, 1), job(2, 1), job(3, 2)]);
        q.forget_webhook(WebhookId(1));
        let (jobs, _) = q.take(10);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].webhook_id, WebhookId(2));
    }
}
