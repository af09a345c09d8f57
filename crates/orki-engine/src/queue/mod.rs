//! The in-memory side of the due queue.
//!
//! The `due_v1` table stays the durable truth: a delivery is in it from the
//! commit that accepts it until the commit that records its success or gives it
//! up. This module keeps a copy of those entries in memory, one lane per
//! webhook, so the scheduler takes the next due delivery of a webhook with a
//! free slot in O(log n) instead of scanning the table and stepping over the
//! webhooks at their limit.
//!
//! An entry whose delivery is known to be pending at that due time carries what
//! its attempt sends ([`Known`]: the event and the attempt's number), so the
//! attempt reads nothing from the store: fresh deliveries (pushed by the commit
//! that accepted them), and entries read back by a reload (in one read
//! transaction, with their deliveries and events). Every other entry is checked
//! against the store before its attempt (still pending, same due time), so a
//! stale copy never sends twice. An entry read by a reload loses what it knew
//! when its delivery changed while the reload was reading (see
//! [`Queue::reload_wanted`]).
//!
//! Memory stays bounded: past `limit` entries the queue "spills": it stops
//! copying, and reloads the earliest entries from the table when it runs low or
//! nothing in memory is due. Events kept with entries are counted once each, at
//! their real size, up to [`CACHED_EVENT_BYTES`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::ids::{DeliveryId, EventId, WebhookId};
use crate::model::EventRecord;
use crate::sync::Locked;

/// At most this many bytes of events are kept with queued entries (see
/// [`footprint`]); past it, the attempt reads the event from the store.
pub(crate) const CACHED_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// The memory an event kept with queued jobs holds: the record, its strings and
/// the `Arc` around it, plus its count in the queue's table of kept events.
pub(crate) fn footprint(event: &EventRecord) -> usize {
    std::mem::size_of::<EventRecord>()
        + 2 * std::mem::size_of::<usize>()
        + event.payload.capacity()
        + event.event_type.capacity()
        + event.idempotency_key.as_ref().map_or(0, String::capacity)
        + std::mem::size_of::<(EventId, usize)>()
}

/// While spilled with nothing due in memory, the table is read again this often.
pub(crate) const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// What a reload reads: the table's first `limit` entries, and what is known of
/// each delivery not in `known` (those the queue already knows).
#[derive(Debug)]
pub(crate) struct ReloadPlan {
    /// How many entries to read.
    pub limit: usize,
    /// Deliveries whose event and attempt number the queue holds.
    pub known: HashSet<DeliveryId>,
    /// Webhooks whose entries are passed over (paused).
    pub skip: HashSet<WebhookId>,
}

/// What the attempt of a delivery known pending at its due time sends.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    /// The event.
    pub event: Arc<EventRecord>,
    /// The attempt's number (1 for a fresh delivery).
    pub attempt: u32,
}

/// A delivery waiting for an attempt.
#[derive(Debug, Clone)]
pub(crate) struct QueuedJob {
    /// Its due time in the `due_v1` table (unix ms).
    pub due_ms: u64,
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// Its webhook.
    pub webhook_id: WebhookId,
    /// When the delivery is known pending at `due_ms`: what its attempt sends.
    /// `None`: the attempt reads the delivery and checks it first.
    pub known: Option<Known>,
}

#[derive(Default)]
struct Lane {
    jobs: BTreeMap<(u64, DeliveryId), Option<Known>>,
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
    /// Copies taken while their delivery's attempt was running, put back
    /// (unread) once it is recorded: a replay or redelivery committed in that
    /// moment must not be lost; a stale copy is dropped when its attempt
    /// finds the delivery moved on in the table.
    parked: HashMap<DeliveryId, QueuedJob>,
    queued: usize,
    /// Events kept with queued jobs, with how many jobs keep each.
    kept: HashMap<EventId, usize>,
    cached_bytes: usize,
    /// Some entries of the table are not in memory.
    spilled: bool,
    /// Entries not copied since the last reload began.
    missed: u64,
    /// When the last reload began.
    last_reload: Option<Instant>,
    /// A reload is reading the table.
    reloading: bool,
    /// Deliveries recorded, cancelled or moved since the reload began: what it
    /// read of them may be out of date.
    touched: HashSet<DeliveryId>,
    /// A webhook's entries were dropped since the last reload began.
    touched_all: bool,
    /// Paused webhooks: their entries stay in the table only (not copied,
    /// not read by a reload) until they are resumed.
    paused: HashSet<WebhookId>,
}

impl State {
    /// Notes that a delivery changed, for the reload reading the table.
    fn touch(&mut self, delivery: DeliveryId) {
        if self.reloading {
            self.touched.insert(delivery);
        }
    }

    /// Some of the table's entries are (or may be) missing from memory.
    /// Returns whether the queue has just spilled: the scheduler, which plans
    /// a reload only while the queue is spilled, must then look again.
    fn spill(&mut self) -> bool {
        let newly = !self.spilled;
        self.spilled = true;
        self.missed += 1;
        newly
    }

    /// No reload is reading (any more): nothing to note.
    fn end_reload(&mut self) {
        self.reloading = false;
        self.touched.clear();
        self.touched_all = false;
    }

    /// Counts the event of a job coming into the queue; `false` (and nothing
    /// counted) when it would pass [`CACHED_EVENT_BYTES`].
    fn keep(&mut self, event: &EventRecord) -> bool {
        match self.kept.entry(event.id) {
            Entry::Occupied(mut o) => {
                *o.get_mut() += 1;
                true
            }
            Entry::Vacant(v) => {
                let bytes = footprint(event);
                if self.cached_bytes + bytes > CACHED_EVENT_BYTES {
                    return false;
                }
                self.cached_bytes += bytes;
                v.insert(1);
                true
            }
        }
    }

    /// Uncounts a job that left the queue (taken or dropped), and its event.
    fn left(&mut self, known: Option<&Known>) {
        self.queued -= 1;
        if let Some(k) = known {
            self.release(&k.event);
        }
    }

    /// Uncounts the event of a job leaving the queue.
    fn release(&mut self, event: &EventRecord) {
        if let Entry::Occupied(mut o) = self.kept.entry(event.id) {
            *o.get_mut() -= 1;
            if *o.get() == 0 {
                o.remove();
                self.cached_bytes -= footprint(event);
            }
        }
    }
}

/// The queue, shared by the engine (which feeds it after each commit) and the
/// scheduler (which takes from it).
pub(crate) struct Queue {
    state: Mutex<State>,
    per_webhook: usize,
    total: usize,
    limit: usize,
    wake: Notify,
    /// Attempts whose record waits for the store to write again: while any
    /// does, no new attempt starts.
    held: std::sync::atomic::AtomicUsize,
}

impl Queue {
    /// An empty queue that must first be loaded from the table (it starts spilled).
    pub(crate) fn new(total: usize, per_webhook: usize, limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                spilled: true,
                ..State::default()
            }),
            per_webhook: per_webhook.max(1),
            total: total.max(1),
            limit: limit.max(1),
            wake: Notify::new(),
            held: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Resolves when something changed that may let the scheduler take a job.
    pub(crate) async fn changed(&self) {
        self.wake.notified().await;
    }

    /// Adds entries committed to the table. Call after the commit.
    pub(crate) fn push(&self, jobs: impl IntoIterator<Item = QueuedJob>) {
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

    /// Returns whether the scheduler should look again: the job may be taken,
    /// or the queue has just spilled (so it must plan a reload).
    fn insert(&self, s: &mut State, mut job: QueuedJob) -> bool {
        if s.paused.contains(&job.webhook_id) {
            // Held in the table; a resume reads it back.
            return false;
        }
        if s.spilled || s.queued >= self.limit {
            return s.spill();
        }
        let key = (job.due_ms, job.delivery_id);
        if s.lanes
            .get(&job.webhook_id)
            .is_some_and(|lane| lane.jobs.contains_key(&key))
        {
            return false;
        }
        if job.known.as_ref().is_some_and(|k| !s.keep(&k.event)) {
            job.known = None;
        }
        let lanes_before = s.lanes.len();
        s.lanes
            .entry(job.webhook_id)
            .or_default()
            .jobs
            .insert(key, job.known);
        s.queued += 1;
        if lanes_before == 1 && s.lanes.len() == 2 {
            // A second webhook has work: the first one is back to its own share.
            self.reindex_other(s, job.webhook_id);
        }
        self.reindex(s, job.webhook_id)
    }

    /// Puts the lane in `ready` under its first due time when it has a free slot.
    /// Returns whether it became ready or earlier.
    fn reindex(&self, s: &mut State, webhook: WebhookId) -> bool {
        let limit = self.lane_limit(s.lanes.len());
        let Some(lane) = s.lanes.get_mut(&webhook) else {
            return false;
        };
        let old = lane.ready_key.take();
        let new = if lane.busy < limit {
            lane.jobs.keys().next().map(|(due, _)| *due)
        } else {
            None
        };
        lane.ready_key = new;
        let mut woke = false;
        if lane.jobs.is_empty() && lane.busy == 0 {
            s.lanes.remove(&webhook);
            if s.lanes.len() == 1 {
                // The one webhook left with work may now use more slots.
                woke = self.reindex_other(s, webhook);
            }
        }
        if old == new {
            return woke;
        }
        if let Some(due) = old {
            s.ready.remove(&(due, webhook));
        }
        if let Some(due) = new {
            s.ready.insert((due, webhook));
        }
        woke || new.is_some_and(|n| old.is_none_or(|o| n < o))
    }

    /// The count of webhooks with work just crossed between one and two, so the
    /// limit of the webhook other than `changed` did too: reindexes it.
    fn reindex_other(&self, s: &mut State, changed: WebhookId) -> bool {
        let other = s.lanes.keys().copied().find(|w| *w != changed);
        other.is_some_and(|w| self.reindex(s, w))
    }

    /// Requests in flight one webhook may have: `per_webhook`, or twice that
    /// while it is the only webhook with work (`lanes` counts the webhooks with
    /// jobs queued or requests in flight), so one busy endpoint keeps pace with
    /// ingest without holding slots another webhook needs.
    fn lane_limit(&self, lanes: usize) -> usize {
        if lanes <= 1 {
            (2 * self.per_webhook).min(self.total)
        } else {
            self.per_webhook
        }
    }

    /// Takes the due jobs that may start now (within both limits), oldest due
    /// first over the lanes. Returns them and the next due time still queued.
    #[cfg(test)]
    pub(crate) fn take(&self, now_ms: u64) -> (Vec<QueuedJob>, Option<u64>) {
        self.take_except(now_ms, &HashSet::new(), |_| true)
    }

    /// Like [`Queue::take`], leaving the lanes of `held` webhooks as they are
    /// (their jobs stay due; the next due time is of the others), and asking
    /// `admit` before each job of a webhook (its rate limit): once it says no,
    /// that webhook's lane is left for this call.
    pub(crate) fn take_except(
        &self,
        now_ms: u64,
        held: &HashSet<WebhookId>,
        mut admit: impl FnMut(WebhookId) -> bool,
    ) -> (Vec<QueuedJob>, Option<u64>) {
        let mut guard = self.lock();
        let s = &mut *guard;
        let mut jobs = Vec::new();
        let mut refused: HashSet<WebhookId> = HashSet::new();
        while s.busy < self.total {
            let first = if held.is_empty() && refused.is_empty() {
                s.ready.first()
            } else {
                s.ready
                    .iter()
                    .find(|(_, w)| !held.contains(w) && !refused.contains(w))
            };
            let Some(&(due, webhook)) = first else {
                break;
            };
            if due > now_ms {
                return (jobs, Some(due));
            }
            if !admit(webhook) {
                refused.insert(webhook);
                continue;
            }
            let popped = s.lanes.get_mut(&webhook).and_then(|l| l.jobs.pop_first());
            let Some(((due_ms, delivery_id), known)) = popped else {
                s.ready.remove(&(due, webhook));
                if let Some(lane) = s.lanes.get_mut(&webhook) {
                    lane.ready_key = None;
                }
                continue;
            };
            s.left(known.as_ref());
            if s.unrecorded.insert(delivery_id) {
                if let Some(lane) = s.lanes.get_mut(&webhook) {
                    lane.busy += 1;
                }
                s.busy += 1;
                jobs.push(QueuedJob {
                    due_ms,
                    delivery_id,
                    webhook_id: webhook,
                    known,
                });
            } else {
                // A copy of a delivery whose attempt is running: back in the
                // queue once that attempt is recorded.
                s.parked.insert(
                    delivery_id,
                    QueuedJob {
                        due_ms,
                        delivery_id,
                        webhook_id: webhook,
                        known: None,
                    },
                );
            }
            self.reindex(s, webhook);
        }
        (jobs, None)
    }

    /// The request of a taken job is over: its slot is free again.
    pub(crate) fn request_done(&self, webhook: WebhookId) {
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
    pub(crate) fn recorded(&self, delivery: DeliveryId) {
        let woke = {
            let mut s = self.lock();
            s.unrecorded.remove(&delivery);
            s.touch(delivery);
            match s.parked.remove(&delivery) {
                Some(copy) => self.insert(&mut s, copy),
                None => false,
            }
        };
        if woke {
            self.wake.notify_one();
        }
    }

    /// A delivery was put back in the table at `job.due_ms` (redelivered by
    /// hand), replacing its entry at `old_due_ms`: that copy is dropped.
    pub(crate) fn requeue(&self, old_due_ms: Option<u64>, job: QueuedJob) {
        {
            let mut s = self.lock();
            s.touch(job.delivery_id);
            if let Some(old) = old_due_ms {
                let removed = s
                    .lanes
                    .get_mut(&job.webhook_id)
                    .and_then(|lane| lane.jobs.remove(&(old, job.delivery_id)));
                if let Some(known) = removed {
                    s.left(known.as_ref());
                    self.reindex(&mut s, job.webhook_id);
                }
            }
        }
        self.push([job]);
    }

    /// A delivery left the table by hand (skipped): its copy due at `due_ms`
    /// is dropped, so it is not sent.
    pub(crate) fn drop_job(&self, webhook: WebhookId, delivery: DeliveryId, due_ms: u64) {
        let mut s = self.lock();
        let removed = s
            .lanes
            .get_mut(&webhook)
            .and_then(|lane| lane.jobs.remove(&(due_ms, delivery)));
        if let Some(known) = removed {
            s.left(known.as_ref());
            self.reindex(&mut s, webhook);
        }
    }

    /// Every delivery the queue holds (queued, or taken and not yet recorded),
    /// or `None` when it has spilled (the table then holds more than memory).
    pub(crate) fn holds(&self) -> Option<(HashSet<DeliveryId>, HashSet<WebhookId>)> {
        let s = self.lock();
        if s.spilled {
            return None;
        }
        let queued = s
            .lanes
            .values()
            .flat_map(|l| l.jobs.keys().map(|(_, id)| *id));
        let held = s.unrecorded.iter().chain(s.parked.keys()).copied();
        Some((queued.chain(held).collect(), s.paused.clone()))
    }

    /// Pauses or resumes a webhook in memory (its record says which). A
    /// paused webhook's entries leave memory and new ones are not copied; a
    /// resumed one's come back with the next reload, oldest first.
    pub(crate) fn set_paused(&self, webhook: WebhookId, paused: bool) {
        let woke = {
            let mut s = self.lock();
            if paused {
                if s.paused.insert(webhook) {
                    s.touched_all |= s.reloading;
                    self.clear_lane(&mut s, webhook);
                }
                false
            } else {
                s.paused.remove(&webhook) && s.spill()
            }
        };
        if woke {
            self.wake.notify_one();
        }
    }

    /// Drops the queued entries of a webhook (deleted or disabled; the table's
    /// entries were cancelled in the same commit).
    pub(crate) fn forget_webhook(&self, webhook: WebhookId) {
        let mut s = self.lock();
        s.paused.remove(&webhook);
        s.touched_all |= s.reloading;
        self.clear_lane(&mut s, webhook);
    }

    /// Drops a lane's queued jobs (its requests in flight stay counted); returns
    /// what they knew.
    fn clear_lane(&self, s: &mut State, webhook: WebhookId) -> Vec<(DeliveryId, Known)> {
        let Some(lane) = s.lanes.get_mut(&webhook) else {
            return Vec::new();
        };
        let jobs = std::mem::take(&mut lane.jobs);
        s.parked.retain(|_, copy| copy.webhook_id != webhook);
        let mut known = Vec::new();
        for ((_, id), k) in jobs {
            s.left(k.as_ref());
            known.extend(k.map(|k| (id, k)));
        }
        self.reindex(s, webhook);
        known
    }

    /// When the queue spilled and needs the table's earliest entries (it runs
    /// low, or nothing in memory is due at `now_ms` and a second has passed since
    /// the last reload, by the monotonic `now`; both read on the scheduler's
    /// clock): returns what to read, and starts counting the entries it misses
    /// and the deliveries that change meanwhile.
    pub(crate) fn reload_wanted(&self, now_ms: u64, now: Instant) -> Option<ReloadPlan> {
        let mut s = self.lock();
        if !s.spilled {
            return None;
        }
        let low = s.queued <= self.limit / 2;
        let idle = s
            .lanes
            .values()
            .all(|l| l.jobs.keys().next().is_none_or(|(due, _)| *due > now_ms))
            && s.last_reload
                .is_none_or(|t| now.duration_since(t) >= RELOAD_EVERY);
        if !(low || idle) {
            return None;
        }
        s.missed = 0;
        s.last_reload = Some(now);
        s.end_reload();
        s.reloading = true;
        let known = s
            .lanes
            .values()
            .flat_map(|lane| lane.jobs.iter())
            .filter(|(_, k)| k.is_some())
            .map(|((_, id), _)| *id)
            .collect();
        Some(ReloadPlan {
            limit: self.limit,
            known,
            skip: s.paused.clone(),
        })
    }

    /// Some entries of the table may be missing from memory (an attempt could
    /// not be loaded or recorded): the next reload brings them back. Wakes the
    /// scheduler, which may be idle with nothing due, to plan that reload.
    pub(crate) fn mark_spilled(&self) {
        let newly = self.lock().spill();
        if newly {
            self.wake.notify_one();
        }
    }

    /// Replaces the memory copy with the table's earliest entries (read after
    /// [`Queue::reload_wanted`], with what is known of those not in its
    /// `known`); `complete` when that was all of the table. An entry whose
    /// delivery changed since the reload began, or whose attempt is running, is
    /// checked before its attempt.
    pub(crate) fn reload(&self, jobs: Vec<QueuedJob>, complete: bool) {
        {
            let mut s = self.lock();
            let webhooks: Vec<WebhookId> = s.lanes.keys().copied().collect();
            let mut before: HashMap<DeliveryId, Known> = HashMap::new();
            for w in webhooks {
                before.extend(self.clear_lane(&mut s, w));
            }
            let missed = s.missed;
            s.spilled = false;
            for mut job in jobs {
                // Read before its attempt ended: a copy that would send again.
                let changed = s.touched_all
                    || s.touched.contains(&job.delivery_id)
                    || s.unrecorded.contains(&job.delivery_id);
                if changed {
                    job.known = None;
                } else if job.known.is_none() {
                    job.known = before.remove(&job.delivery_id);
                }
                self.insert(&mut s, job);
            }
            s.spilled = !complete || missed > 0 || s.spilled;
            s.end_reload();
        }
        self.wake.notify_one();
    }

    /// The reload's read failed: the queue stays spilled and tries again later.
    pub(crate) fn reload_failed(&self) {
        self.lock().end_reload();
    }

    /// An attempt's record could not be written: hold new attempts until it is.
    pub(crate) fn hold_sends(&self) {
        self.held.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// A held attempt's record was written (or given up at stop); the
    /// scheduler is woken when none is held any more.
    pub(crate) fn release_sends(&self) {
        if self.held.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
            self.wake.notify_one();
        }
    }

    /// Whether new attempts wait for a record to be written.
    pub(crate) fn sends_held(&self) -> bool {
        self.held.load(std::sync::atomic::Ordering::Acquire) > 0
    }

    /// The webhooks with jobs queued or requests in flight.
    pub(crate) fn webhooks(&self) -> Vec<WebhookId> {
        self.lock().lanes.keys().copied().collect()
    }

    /// Whether some of the table's entries are not in memory.
    pub(crate) fn spilled(&self) -> bool {
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
mod tests;
