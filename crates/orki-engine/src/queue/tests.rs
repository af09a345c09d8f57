use super::*;

fn job(due_ms: u64, webhook: u128) -> QueuedJob {
    QueuedJob {
        due_ms,
        delivery_id: DeliveryId::generate(),
        webhook_id: WebhookId(webhook),
        known: None,
    }
}

fn loaded(total: usize, per_webhook: usize, limit: usize) -> Queue {
    let q = Queue::new(total, per_webhook, limit);
    q.reload(Vec::new(), true);
    q
}

#[tokio::test]
async fn an_idle_scheduler_is_woken_when_the_queue_spills() {
    // Bounded, so a missing wake-up fails the test instead of hanging it.
    async fn woken(q: &Queue) -> bool {
        tokio::time::timeout(std::time::Duration::from_secs(5), q.changed())
            .await
            .is_ok()
    }
    // An attempt that could not be recorded, with nothing else due.
    let q = loaded(10, 2, 100);
    assert!(woken(&q).await, "the wake-up of the initial load");
    q.mark_spilled();
    assert!(woken(&q).await);
    // A push past the memory limit.
    let q = loaded(10, 2, 1);
    assert!(woken(&q).await, "the wake-up of the initial load");
    q.push([job(10, 1)]);
    assert!(woken(&q).await, "a job to take");
    q.push([job(20, 1)]);
    assert!(q.spilled());
    assert!(woken(&q).await);
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
fn a_lone_webhook_may_use_twice_its_share_until_another_has_work() {
    let q = loaded(10, 2, 100);
    q.push((0..6).map(|d| job(d, 1)));
    assert_eq!(q.take(50).0.len(), 4, "alone: twice its share");
    q.push([job(1, 2), job(2, 2)]);
    // Webhook 1 is back to its share of 2 (4 in flight: nothing more for
    // now); webhook 2 gets its own 2 slots.
    let (jobs, _) = q.take(50);
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.webhook_id == WebhookId(2)));
    for _ in 0..3 {
        q.request_done(WebhookId(1));
    }
    assert_eq!(q.take(50).0.len(), 1, "1 in flight: one more within 2");
    // Webhook 2's work ends: webhook 1 is alone again.
    q.request_done(WebhookId(2));
    q.request_done(WebhookId(2));
    assert_eq!(q.take(50).0.len(), 1, "its last queued job goes at once");
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
fn a_copy_taken_while_its_attempt_runs_comes_back_once_recorded() {
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
    // Recorded: the copy (a replay committed meanwhile, say) comes back
    // by itself, unread, so the attempt checks it against the table.
    q.recorded(first.delivery_id);
    let back = q.take(5).0;
    assert_eq!(back.len(), 1);
    assert_eq!(
        (back[0].due_ms, back[0].delivery_id),
        (2, first.delivery_id)
    );
    assert!(back[0].known.is_none());
    q.recorded(first.delivery_id);
    q.push([copy]);
    assert_eq!(q.take(5).0.len(), 1);
}

#[test]
fn a_parked_copy_of_a_forgotten_webhook_does_not_come_back() {
    let q = loaded(10, 10, 100);
    let first = job(1, 1);
    q.push([first.clone()]);
    assert_eq!(q.take(5).0.len(), 1);
    q.push([QueuedJob {
        due_ms: 2,
        ..first.clone()
    }]);
    assert!(q.take(5).0.is_empty());
    q.forget_webhook(first.webhook_id);
    q.recorded(first.delivery_id);
    assert!(q.take(5).0.is_empty());
}

/// Spilled with nothing due (and not running low), the table is read
/// again once [`RELOAD_EVERY`] has passed on the scheduler's clock, not before.
#[test]
fn spilled_and_idle_it_reloads_again_after_reload_every() {
    let q = loaded(10, 10, 4);
    let queued: Vec<_> = (0..4).map(|_| job(100, 1)).collect();
    q.push(queued.clone());
    q.push([job(200, 1)]);
    assert!(q.spilled());
    let t0 = Instant::now();
    assert!(q.reload_wanted(0, t0).is_some(), "the first reload at once");
    q.reload(queued, false);
    assert!(q.spilled(), "the table had more");
    let just_before = t0 + RELOAD_EVERY - Duration::from_millis(1);
    assert!(q.reload_wanted(0, just_before).is_none());
    assert!(q.reload_wanted(0, t0 + RELOAD_EVERY).is_some());
}

#[test]
fn past_the_limit_it_spills_and_a_reload_takes_the_earliest_back() {
    let q = loaded(10, 10, 3);
    q.push([job(5, 1), job(6, 1), job(7, 1), job(1, 1)]);
    assert!(q.spilled());
    assert_eq!(q.len().0, 3);
    // Something is queued and due: no reload yet (it is not running low).
    assert!(q.reload_wanted(100, Instant::now()).is_none());
    let want = q
        .reload_wanted(0, Instant::now())
        .expect("spilled and nothing due");
    assert_eq!(want.limit, 3);
    let earliest: Vec<_> = [1u64, 5, 6].iter().map(|&d| job(d, 1)).collect();
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

fn event(n: usize) -> Arc<EventRecord> {
    Arc::new(EventRecord {
        id: EventId::generate(),
        event_type: "message.created".into(),
        created_at: chrono::Utc::now(),
        payload: "x".repeat(n),
        test: false,
        idempotency_key: None,
        ordering_key: None,
    })
}

fn known(due_ms: u64, webhook: u128, event: &Arc<EventRecord>, attempt: u32) -> QueuedJob {
    QueuedJob {
        known: Some(Known {
            event: event.clone(),
            attempt,
        }),
        ..job(due_ms, webhook)
    }
}

#[test]
fn an_event_kept_by_many_jobs_is_counted_once() {
    let q = loaded(100, 100, 100);
    let e = event(1000);
    q.push((0..10u128).map(|w| known(1, w, &e, 1)));
    assert_eq!(q.lock().cached_bytes, footprint(&e));
    let (jobs, _) = q.take(5);
    assert_eq!(jobs.len(), 10);
    assert!(jobs.iter().all(|j| j.known.is_some()));
    assert_eq!(q.lock().cached_bytes, 0);
    assert!(q.lock().kept.is_empty());
}

#[test]
fn events_past_the_byte_limit_are_not_kept() {
    let q = loaded(10_000, 10_000, 10_000);
    let big = CACHED_EVENT_BYTES / 3;
    q.push((0..5).map(|n| known(n, 1, &event(big), 1)));
    let (jobs, _) = q.take(10);
    let kept = jobs.iter().filter(|j| j.known.is_some()).count();
    assert_eq!(kept, 2, "two fit in the limit, the rest are read when due");
    assert_eq!(q.lock().cached_bytes, 0);
}

#[test]
fn a_reload_keeps_what_it_knew_unless_the_delivery_changed_meanwhile() {
    let q = loaded(100, 100, 2);
    let e = event(10);
    let (a, b) = (known(1, 1, &e, 1), known(2, 1, &e, 1));
    let (c, d) = (job(3, 1), job(4, 1));
    q.push([a.clone(), b.clone(), c.clone()]);
    assert!(q.spilled());
    let plan = q
        .reload_wanted(0, Instant::now())
        .expect("spilled, nothing due");
    assert!(plan.known.contains(&a.delivery_id) && plan.known.contains(&b.delivery_id));
    // While the table is read: `b` is recorded (and queued again later).
    q.recorded(b.delivery_id);
    let read = |j: &QueuedJob, attempt| QueuedJob {
        known: (!plan.known.contains(&j.delivery_id)).then(|| Known {
            event: e.clone(),
            attempt,
        }),
        ..j.clone()
    };
    q.reload(
        vec![read(&a, 1), read(&b, 1), read(&c, 3), read(&d, 2)],
        true,
    );
    let (jobs, _) = q.take(10);
    let known: Vec<(u64, Option<u32>)> = jobs
        .iter()
        .map(|j| (j.due_ms, j.known.as_ref().map(|k| k.attempt)))
        .collect();
    // `a` kept what the queue knew; `b` must be checked; the limit is 2.
    assert_eq!(known, vec![(1, Some(1)), (2, None)]);
    assert!(q.spilled(), "the limit cut the reload");
}

#[test]
fn a_reload_read_during_an_attempt_does_not_send_it_again() {
    let q = loaded(100, 100, 1);
    let d = job(1, 1);
    q.push([d.clone(), job(2, 1)]);
    assert_eq!(q.take(10).0.len(), 1, "its attempt is running");
    let _plan = q.reload_wanted(0, Instant::now()).expect("spilled and low");
    // The table still holds its entry: the attempt is not recorded yet.
    let e = event(10);
    q.reload(
        vec![QueuedJob {
            known: Some(Known {
                event: e.clone(),
                attempt: 1,
            }),
            ..d.clone()
        }],
        true,
    );
    q.request_done(d.webhook_id);
    q.recorded(d.delivery_id);
    let (jobs, _) = q.take(10);
    assert!(
        jobs.iter().all(|j| j.known.is_none()),
        "the copy read before the record is checked against the store"
    );
}

#[test]
fn a_webhook_forgotten_during_a_reload_leaves_nothing_known() {
    let q = loaded(100, 100, 1);
    q.push([job(1, 1), job(2, 2)]);
    let _plan = q.reload_wanted(0, Instant::now()).expect("spilled");
    q.forget_webhook(WebhookId(3));
    let e = event(10);
    q.reload(vec![known(1, 2, &e, 4)], true);
    let (jobs, _) = q.take(10);
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].known.is_none(), "checked against the store first");
}

#[test]
fn a_redelivery_replaces_the_queued_copy() {
    let q = loaded(100, 100, 100);
    let e = event(10);
    let old = known(50, 1, &e, 3);
    q.push([old.clone()]);
    q.requeue(
        Some(50),
        QueuedJob {
            due_ms: 5,
            delivery_id: old.delivery_id,
            webhook_id: WebhookId(1),
            known: None,
        },
    );
    let (jobs, next) = q.take(100);
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].due_ms, 5);
    assert!(jobs[0].known.is_none());
    assert_eq!(next, None, "the old copy at 50 is gone");
    assert_eq!(q.lock().cached_bytes, 0);
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
