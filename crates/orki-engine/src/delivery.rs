//! The delivery scheduler: takes due deliveries from the in-memory queue (see
//! [`crate::queue`]) within the concurrency limits (overall and per webhook, so
//! a slow endpoint never holds up the others), makes each attempt, and records
//! it with the next step of its delivery through the group commit.
//!
//! It works on a `Context` that [`crate::runtime`] builds: the queue, the
//! clock, the stop token and what it uses of the engine (`Services`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::attempt::send;
use crate::clock::Clock;
use crate::engine::EngineEvent;
use crate::ids::WebhookId;
use crate::model::{AttemptRecord, ErrorClass, EventRecord, Pause, WebhookRecord};
use crate::network::{Network, NetworkState, is_loopback};
use crate::outbound::Outbound;
use crate::queue::{Known, Queue, QueuedJob, RELOAD_EVERY};
use crate::rate::Limits;
use crate::retry::RetryPolicy;
use crate::store::codec::encode;
use crate::store::commit::GroupCommit;
use crate::store::threads::StoreThreads;
use crate::store::{HealthRules, Recorded};

/// What the scheduler and its attempts use of the engine besides the queue.
pub(crate) trait Services: Send + Sync + 'static {
    /// The store's calls (the due queue's reads, a delivery to send).
    fn storage(&self) -> &StoreThreads;
    /// The group commit that records attempts.
    fn writes(&self) -> &GroupCommit;
    /// The HTTP client deliveries go out on.
    fn outbound(&self) -> &Outbound;
    /// A webhook as last stored (from memory).
    fn webhook(&self, id: WebhookId) -> Option<Arc<WebhookRecord>>;
    /// The retry policy in force.
    fn retry_policy(&self) -> RetryPolicy;
    /// What an attempt's record judges its webhook's health by.
    fn health_rules(&self) -> HealthRules;
    /// An attempt paused its webhook (auto-pause): memory follows.
    fn paused(&self, id: WebhookId, pause: Pause);
    /// Tells live views.
    fn publish(&self, event: EngineEvent);
    /// Whether attempts can leave the machine.
    fn network(&self) -> &NetworkState;
}

/// Everything the scheduler works with.
pub(crate) struct Context {
    /// The engine's parts it uses.
    pub(crate) services: Arc<dyn Services>,
    /// The due queue in memory.
    pub(crate) queue: Arc<Queue>,
    /// Due times, retry times and waits.
    pub(crate) clock: Clock,
    /// Stops the scheduler (attempts in flight finish).
    pub(crate) cancel: CancellationToken,
    /// Where attempts run, so the engine's stop waits for them.
    pub(crate) tasks: TaskTracker,
}

/// Runs until the token is cancelled. Attempt tasks go on `tasks`, so
/// shutdown waits for them.
pub(crate) async fn run(context: Context) {
    let context = Arc::new(context);
    let tasks = context.tasks.clone();
    schedule(&context, |job| {
        let context = context.clone();
        tasks.spawn(async move { attempt(&context, job).await });
    })
    .await
}

/// The scheduler's loop: hands each job to `start` once it is due and the
/// limits let it start, and sleeps (on the clock) until the next one is due
/// or the queue changes.
async fn schedule(context: &Context, mut start: impl FnMut(QueuedJob)) {
    let (queue, clock) = (&context.queue, &context.clock);
    let mut network = context.services.network().subscribe();
    let mut last = (clock.now_ms(), clock.instant());
    let mut limits = Limits::default();
    loop {
        let now = (clock.now_ms(), clock.instant());
        let wall = now.0.saturating_sub(last.0);
        let monotonic = u64::try_from(now.1.duration_since(last.1).as_millis()).unwrap_or(0);
        if wall > monotonic + 5_000 {
            tracing::info!(
                ahead_ms = wall - monotonic,
                "the wall clock moved ahead (resumed from sleep?); what became due goes out now"
            );
            context.services.network().check_interfaces();
        }
        last = now;
        if let Some(plan) = queue.reload_wanted(clock.now_ms(), clock.instant()) {
            match context.services.storage().due_jobs(plan).await {
                Ok((jobs, complete)) => {
                    tracing::debug!(entries = jobs.len(), complete, "due queue read");
                    queue.reload(jobs, complete);
                }
                Err(e) => {
                    queue.reload_failed();
                    tracing::error!(error = %e, "reading the due queue failed; trying again in 1 s")
                }
            }
        }
        // While an attempt's record waits for the store, none starts: its
        // record could not be written either.
        let mut next_token: Option<tokio::time::Instant> = None;
        let (jobs, next_due) = if queue.sends_held() {
            (Vec::new(), None)
        } else {
            let now = clock.instant();
            let services = &context.services;
            queue.take_except(clock.now_ms(), &held_webhooks(context), |webhook| {
                let rate = services
                    .webhook(webhook)
                    .and_then(|w| w.controls.rate_limit_per_s);
                match limits.admit(webhook, rate, now) {
                    Ok(()) => true,
                    Err(at) => {
                        next_token = Some(next_token.map_or(at, |t| t.min(at)));
                        false
                    }
                }
            })
        };
        for job in jobs {
            start(job);
        }
        limits.retain(|w| context.services.webhook(*w).is_some());
        // Capped (`wake_for`): a due time passed while the machine slept, or
        // by a wall-clock jump, is seen within a second.
        let mut sleep_until = next_due.map(|due_ms| clock.wake_for(due_ms));
        if let Some(at) = next_token {
            sleep_until = Some(sleep_until.map_or(at, |t| t.min(at)));
        }
        if queue.spilled() {
            let soon = clock.instant() + RELOAD_EVERY;
            sleep_until = Some(sleep_until.map_or(soon, |t| t.min(soon)));
        }
        tokio::select! {
            _ = context.cancel.cancelled() => break,
            _ = queue.changed() => {}
            _ = async {
                // Its sender lives as long as the engine's parts.
                if network.changed().await.is_err() {
                    std::future::pending::<()>().await
                }
            } => {}
            _ = async {
                match sleep_until {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
    tracing::debug!("scheduler stopped; waiting for attempts in flight");
}

/// While offline: the webhooks whose jobs are held (all but those on
/// loopback addresses). Empty while online.
fn held_webhooks(context: &Context) -> std::collections::HashSet<WebhookId> {
    let services = &context.services;
    if services.network().now() == Network::Online {
        return Default::default();
    }
    let leaves = |w: &WebhookId| {
        services
            .webhook(*w)
            .is_some_and(|h| h.parsed_url().is_none_or(|u| !is_loopback(&u)))
    };
    context
        .queue
        .webhooks()
        .into_iter()
        .filter(leaves)
        .collect()
}

/// What one attempt sends: the event, the webhook, the attempt's number.
type Prepared = (Arc<EventRecord>, Arc<WebhookRecord>, u32);

/// Makes one attempt of a due delivery and records it.
async fn attempt(context: &Context, job: QueuedJob) {
    let (queue, services) = (&context.queue, &*context.services);
    let id = job.delivery_id;
    let Some((event, webhook, number)) = prepare(context, &job).await else {
        queue.request_done(job.webhook_id);
        queue.recorded(id);
        return;
    };
    let since = services.network().mark();
    let (mut record, retry_after, unreachable) =
        send(services.outbound(), &webhook, &event, id, number, false).await;
    let transport = matches!(
        record.attempt.error_class,
        Some(ErrorClass::Dns | ErrorClass::Connect | ErrorClass::Timeout)
    ) && record.attempt.status_code.is_none();
    if transport
        && let Some(url) = webhook.parsed_url()
        && services
            .network()
            .cannot_leave(&url, unreachable, since)
            .await
    {
        // Offline is not a failure: nothing is recorded, and the delivery is
        // queued again at the same due time (held until online).
        queue.request_done(job.webhook_id);
        queue.recorded(id);
        queue.push([QueuedJob {
            known: Some(Known {
                event,
                attempt: number,
            }),
            ..job
        }]);
        return;
    }
    // The slot is free once the endpoint answered; the delivery itself stays
    // taken until its attempt is recorded.
    queue.request_done(job.webhook_id);
    let next_due_ms = if record.attempt.success {
        None
    } else {
        let now_ms = context.clock.now_ms();
        services
            .retry_policy()
            .next_delay(number, retry_after, rand::random::<f64>())
            .map(|d| now_ms + u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2))
    };
    record.attempt.next_retry_at =
        next_due_ms.and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64));
    let rules = services.health_rules();
    let record = Arc::new(record);
    let recorded = record_until_stored(context, &record, next_due_ms, rules).await;
    queue.recorded(id);
    match recorded {
        Ok(Recorded { health, next }) => {
            if let Some(due_ms) = next_due_ms {
                queue.push([QueuedJob {
                    due_ms,
                    delivery_id: id,
                    webhook_id: job.webhook_id,
                    known: None,
                }]);
            }
            // The next delivery of an ordered key, now that this one is done.
            queue.push(next);
            let a = &record.attempt;
            tracing::info!(
                delivery = %id,
                webhook = %a.webhook_id,
                attempt = a.attempt,
                status = a.status_code,
                ms = a.response_time_ms,
                success = a.success,
                error = a.error_class.map(ErrorClass::as_str),
                retry = next_due_ms.is_some(),
                "attempt recorded"
            );
            services.publish(EngineEvent::AttemptRecorded(record.attempt.clone()));
            if let Some(h) = health {
                if let Some(pause) = &h.paused {
                    tracing::warn!(webhook = %h.webhook_id, reason = ?pause.reason, "webhook paused automatically; its deliveries are held until it is resumed");
                    services.paused(h.webhook_id, pause.clone());
                }
                if h.warning {
                    tracing::warn!(webhook = %h.webhook_id, failures = h.consecutive_failures, "webhook is failing");
                }
                services.publish(EngineEvent::WebhookHealthChanged(h));
            }
        }
        Err(e) => {
            // The delivery stays in the table with its old due time; the next
            // read of the table brings it back.
            tracing::error!(delivery = %id, error = %e, "recording an attempt failed");
            queue.mark_spilled();
        }
    }
}

/// Records an attempt with the next step of its delivery. The request went
/// out, so its record must reach the log: while the store cannot write (a
/// full disk), it is kept here and written again, every 100 ms growing to
/// 5 s, until it is stored or the engine stops; meanwhile no new attempt
/// starts (it could not be recorded either) and the delivery stays taken,
/// so it is not sent again. Encoded here, on the async threads, so the one
/// writer thread only writes.
async fn record_until_stored(
    context: &Context,
    record: &Arc<AttemptRecord>,
    next_due_ms: Option<u64>,
    rules: HealthRules,
) -> crate::Result<Recorded> {
    let (queue, cancel) = (&context.queue, &context.cancel);
    let mut wait = Duration::from_millis(100);
    let mut held = false;
    let result = loop {
        let written = async {
            let encoded = encode(&**record)?;
            let record = record.clone();
            context
                .services
                .writes()
                .record_attempt(record, encoded, next_due_ms, rules)
                .await
        }
        .await;
        match written {
            Err(crate::Error::Storage(e)) if !cancel.is_cancelled() => {
                if !held {
                    tracing::error!(delivery = %record.attempt.delivery_id, error = %e, "recording an attempt failed; it is kept and written again, and no new attempt starts until it is");
                    queue.hold_sends();
                    held = true;
                }
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = context.clock.sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            other => break other,
        }
    };
    if held {
        queue.release_sends();
        if result.is_ok() {
            tracing::info!(delivery = %record.attempt.delivery_id, "an attempt kept in memory was recorded");
        }
    }
    result
}

/// What the attempt of `job` sends, or `None` when there is nothing to send: a
/// delivery the queue knows pending, to a webhook known enabled, goes at once;
/// anything else is read from the store and must still be pending at the same
/// due time (a stale copy is dropped). A delivery whose webhook is gone or
/// disabled is cancelled.
async fn prepare(context: &Context, job: &QueuedJob) -> Option<Prepared> {
    let storage = context.services.storage();
    let cached = context.services.webhook(job.webhook_id);
    if let (Some(known), Some(webhook)) = (&job.known, &cached)
        && webhook.enabled
    {
        return Some((known.event.clone(), webhook.clone(), known.attempt));
    }
    let id = job.delivery_id;
    let loaded = match storage.load_job(id).await {
        Ok(loaded) => loaded?,
        Err(e) => {
            tracing::error!(delivery = %id, error = %e, "loading a delivery failed; it stays queued");
            context.queue.mark_spilled();
            return None;
        }
    };
    if !loaded.delivery.is_due_at(job.due_ms) {
        return None;
    }
    match loaded.webhook {
        Some(webhook) if webhook.enabled => Some((
            Arc::new(loaded.event),
            Arc::new(webhook),
            loaded.delivery.attempts + 1,
        )),
        _ => {
            let due_ms = job.due_ms;
            if let Err(e) = storage.cancel_delivery(id, due_ms).await {
                tracing::error!(delivery = %id, error = %e, "cancelling a delivery failed");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::clock::tests::within_real;
    use crate::ids::DeliveryId;
    use crate::store::{NewEvent, Store};

    /// The store side of the scheduler, on a real store: nothing else is
    /// asked of it while it only hands jobs out.
    struct Parts {
        storage: StoreThreads,
        writes: GroupCommit,
        outbound: Outbound,
        network: NetworkState,
        /// The webhooks it knows (none: every job is read from the store).
        hooks: std::collections::HashMap<WebhookId, Arc<WebhookRecord>>,
    }

    impl Services for Parts {
        fn storage(&self) -> &StoreThreads {
            &self.storage
        }
        fn writes(&self) -> &GroupCommit {
            &self.writes
        }
        fn outbound(&self) -> &Outbound {
            &self.outbound
        }
        fn webhook(&self, id: WebhookId) -> Option<Arc<WebhookRecord>> {
            self.hooks.get(&id).cloned()
        }
        fn retry_policy(&self) -> RetryPolicy {
            RetryPolicy::default()
        }
        fn health_rules(&self) -> HealthRules {
            5.into()
        }
        fn paused(&self, _: WebhookId, _: Pause) {}
        fn publish(&self, _: EngineEvent) {}
        fn network(&self) -> &NetworkState {
            &self.network
        }
    }

    impl Parts {
        /// The scheduler's services over `store`, knowing `hooks` (none:
        /// every job is read from the store).
        fn on(store: Store, hooks: &[&WebhookRecord]) -> Self {
            Parts {
                storage: StoreThreads::start(store.clone(), 2).expect("threads"),
                writes: GroupCommit::start(store).expect("writer"),
                outbound: Outbound::new(&[], Duration::from_secs(10)).expect("client"),
                network: NetworkState::default(),
                hooks: hooks
                    .iter()
                    .map(|w| (w.id, Arc::new((*w).clone())))
                    .collect(),
            }
        }
    }

    /// Ingests one `message.created` event at the clock's time; its delivery.
    async fn ingest(parts: &Parts, clock: &Clock) -> DeliveryId {
        let new = NewEvent::new("message.created", "{}", None, clock.now()).expect("event");
        let (give, mut take) = mpsc::unbounded_channel();
        parts
            .writes
            .ingest(new, move |jobs| {
                let _ = give.send(jobs);
            })
            .await
            .expect("ingest");
        take.recv().await.expect("jobs")[0].delivery_id
    }

    /// Ingests a delivery and records a failed first attempt of it, its retry
    /// due at `due_ms`.
    async fn failed_once(parts: &Parts, clock: &Clock, hook: WebhookId, due_ms: u64) -> DeliveryId {
        let id = ingest(parts, clock).await;
        let mut failed =
            crate::store::tests::attempt(hook, clock.now_ms(), "message.created", false, 1);
        failed.attempt.delivery_id = id;
        let job = parts
            .storage
            .load_job(id)
            .await
            .expect("load")
            .expect("job");
        failed.attempt.event_id = job.event.id;
        let encoded = encode(&failed).expect("encode");
        parts
            .writes
            .record_attempt(Arc::new(failed), encoded, Some(due_ms), 5)
            .await
            .expect("record");
        id
    }

    /// After a resume from sleep (or a wall-clock jump), retries whose due
    /// time passed go out within a second of monotonic time, not when the
    /// monotonic wait for them would have ended; and paced: no more at once
    /// to one endpoint than its slots, the next only as one frees.
    #[tokio::test(start_paused = true)]
    async fn retries_passed_by_a_wall_clock_jump_go_out_at_once_and_paced() {
        let clock = Clock::tokio();
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("orki.redb")).expect("open");
        let hook = crate::store::tests::crm_webhook();
        store.insert_webhook(&hook).expect("webhook");
        let parts = Parts::on(store, &[]);
        let due_ms = clock.now_ms() + 3_600_000;
        let mut waiting = std::collections::HashSet::new();
        for _ in 0..10 {
            waiting.insert(failed_once(&parts, &clock, hook.id, due_ms).await);
        }
        // 2 slots per webhook, 4 while it is the only one with work.
        let queue = Arc::new(Queue::new(8, 2, 1000));
        let context = Arc::new(Context {
            services: Arc::new(parts),
            queue: queue.clone(),
            clock: clock.clone(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let limit = Duration::from_secs(10);
        let (handed, mut out) = mpsc::unbounded_channel();
        let scheduler = {
            let (context, clock) = (context.clone(), clock.clone());
            tokio::spawn(async move {
                schedule(&context, |job| {
                    let _ = handed.send((job, clock.instant()));
                })
                .await
            })
        };
        // The scheduler has read the queue and waits for the retries.
        within_real(limit, "the queue read", async {
            while queue.spilled() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(out.try_recv().is_err(), "handed out before its due time");
        let jumped_at = clock.instant();
        clock.jump_wall(Duration::from_secs(2 * 3600));
        let mut first = Vec::new();
        for _ in 0..4 {
            let (job, at) = within_real(limit, "a retry handed out", out.recv())
                .await
                .expect("scheduler runs");
            assert!(
                at - jumped_at <= Duration::from_secs(2),
                "handed out {:?} after the jump",
                at - jumped_at
            );
            assert!(waiting.remove(&job.delivery_id), "handed out once");
            first.push(job);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            out.try_recv().is_err(),
            "more than the endpoint's 4 slots at once"
        );
        // Each freed slot lets exactly one more go.
        while let Some(done) = first.pop() {
            queue.request_done(done.webhook_id);
            if waiting.is_empty() {
                continue;
            }
            let (job, _) = within_real(limit, "the next retry", out.recv())
                .await
                .expect("scheduler runs");
            assert!(waiting.remove(&job.delivery_id), "handed out once");
            first.insert(0, job);
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert!(out.try_recv().is_err(), "two for one freed slot");
        }
        assert!(waiting.is_empty(), "all handed out");
        context.cancel.cancel();
        scheduler.await.expect("scheduler");
    }

    /// While offline, deliveries to an endpoint on loopback still go out and
    /// the others stay queued; once online, they go too.
    #[tokio::test(start_paused = true)]
    async fn offline_holds_all_but_loopback_endpoints_until_online() {
        let clock = Clock::tokio();
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("orki.redb")).expect("open");
        let remote = crate::store::tests::crm_webhook();
        let local = WebhookRecord::new(
            "https://127.0.0.1:9/hooks".into(),
            crate::Secret::new("a-verify-token"),
            vec!["message.created".into()],
            true,
        );
        store.insert_webhook(&remote).expect("webhook");
        store.insert_webhook(&local).expect("webhook");
        let parts = Parts::on(store, &[&remote, &local]);
        parts.network.set(Network::Offline);
        ingest(&parts, &clock).await;
        let services = Arc::new(parts);
        let context = Arc::new(Context {
            services: services.clone(),
            queue: Arc::new(Queue::new(8, 2, 1000)),
            clock: clock.clone(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let (handed, mut out) = mpsc::unbounded_channel();
        let scheduler = {
            let context = context.clone();
            tokio::spawn(async move {
                schedule(&context, |job| {
                    let _ = handed.send(job.webhook_id);
                })
                .await
            })
        };
        let limit = Duration::from_secs(10);
        let first = within_real(limit, "a job handed out", out.recv()).await;
        assert_eq!(first, Some(local.id), "loopback goes out while offline");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(out.try_recv().is_err(), "sent while offline");
        services.network.set(Network::Online);
        let next = within_real(limit, "the held job handed out", out.recv()).await;
        assert_eq!(next, Some(remote.id), "held until online");
        context.cancel.cancel();
        scheduler.await.expect("scheduler");
    }

    /// A retry due in 30 s is not handed out at 29 s, and is at 30 s (a
    /// fresh delivery at once). Tokio's paused clock drives the scheduler's
    /// wall clock and its sleep together; the store is a real one. The jobs
    /// are taken at the scheduler's boundary, not sent: an HTTPS attempt
    /// waits on real I/O, during which the paused clock would jump to the
    /// next timer (the request's timeout among them).
    #[tokio::test(start_paused = true)]
    async fn a_retry_is_handed_out_when_it_is_due_and_not_before() {
        let clock = Clock::tokio();
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("orki.redb")).expect("open");
        let hook = crate::store::tests::crm_webhook();
        store.insert_webhook(&hook).expect("webhook");
        let parts = Parts::on(store, &[]);
        let start_ms = clock.now_ms();
        // A delivery that failed once, its retry due in 30 s; then a fresh one.
        let retry = ingest(&parts, &clock).await;
        let mut failed =
            crate::store::tests::attempt(hook.id, start_ms, "message.created", false, 1);
        failed.attempt.delivery_id = retry;
        let job = parts
            .storage
            .load_job(retry)
            .await
            .expect("load")
            .expect("job");
        failed.attempt.event_id = job.event.id;
        let encoded = encode(&failed).expect("encode");
        let due_ms = start_ms + 30_000;
        parts
            .writes
            .record_attempt(Arc::new(failed), encoded, Some(due_ms), 5)
            .await
            .expect("record");
        let fresh = ingest(&parts, &clock).await;

        let context = Arc::new(Context {
            services: Arc::new(parts),
            queue: Arc::new(Queue::new(8, 4, 1000)),
            clock: clock.clone(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let (handed, mut out) = mpsc::unbounded_channel();
        let scheduler = {
            let (context, clock) = (context.clone(), clock.clone());
            tokio::spawn(async move {
                schedule(&context, |job| {
                    let _ = handed.send((job.delivery_id, clock.now_ms()));
                })
                .await
            })
        };
        let limit = Duration::from_secs(10);
        let next = within_real(limit, "a job handed out", out.recv()).await;
        assert_eq!(
            next,
            Some((fresh, start_ms)),
            "a fresh delivery goes at once"
        );
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert!(out.try_recv().is_err(), "the retry was handed out early");
        // Nothing runs now but the scheduler's sleep: the clock moves to its end.
        let next = within_real(limit, "the retry handed out", out.recv()).await;
        assert_eq!(next, Some((retry, due_ms)), "handed out at its due time");
        context.cancel.cancel();
        scheduler.await.expect("scheduler");
    }
}
