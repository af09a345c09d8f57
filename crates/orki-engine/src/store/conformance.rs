//! The store conformance suite: what the engine relies on from storage,
//! written against the business-level facade only ([`StoreThreads`]' calls
//! and the group commit's `ingest` / `record_attempt`). `Fixture` is the one
//! backend-specific part (open, and what a crash leaves behind); another
//! backend provides its own and runs the same tests.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;

use super::commit::GroupCommit;
use super::threads::StoreThreads;
use super::{AttemptFilter, NewEvent, Store, wal};
use crate::error::Error;
use crate::ids::{AttemptId, DeliveryId, EventId, WebhookId};
use crate::model::Accepted;
use crate::queue::{QueuedJob, ReloadPlan};
use crate::sync::Locked;

/// A store with one webhook subscribed to `message.created`.
struct Fixture {
    dir: tempfile::TempDir,
    path: PathBuf,
    threads: StoreThreads,
    writes: GroupCommit,
    hook: WebhookId,
}

impl Fixture {
    fn open() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("orki.redb");
        let store = Store::open(&path).expect("open");
        let hook = super::tests::crm_webhook();
        store.insert_webhook(&hook).expect("webhook");
        let threads = StoreThreads::start(store.clone(), 2).expect("threads");
        let writes = GroupCommit::start(store).expect("writer");
        Self {
            dir,
            path,
            threads,
            writes,
            hook: hook.id,
        }
    }

    /// What a power cut right now would leave, opened as the next start would.
    fn after_a_crash(&self) -> StoreThreads {
        let to = self
            .dir
            .path()
            .join(format!("crash-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir(&to).expect("dir");
        let image = to.join("orki.redb");
        std::fs::copy(&self.path, &image).expect("copy the database");
        std::fs::copy(wal::path_for(&self.path), wal::path_for(&image)).expect("copy the log");
        StoreThreads::start(Store::open(&image).expect("reopen"), 1).expect("threads")
    }

    /// Ingests one event; the jobs the commit hands over are returned too.
    async fn ingest(
        &self,
        i: usize,
        key: Option<(&str, &str)>,
    ) -> crate::Result<(Accepted, Vec<QueuedJob>)> {
        let data = format!(r#"{{"i":{i}}}"#);
        let key = key.map(|(k, sha)| (k.to_owned(), sha.to_owned()));
        let new = NewEvent::new("message.created", &data, key, Utc::now())?;
        let (give, mut take) = tokio::sync::mpsc::unbounded_channel();
        let accepted = self
            .writes
            .ingest(new, move |jobs| {
                let _ = give.send(jobs);
            })
            .await?;
        Ok((accepted, take.recv().await.unwrap_or_default()))
    }

    async fn ingest_many(&self, n: usize) -> Vec<(EventId, DeliveryId)> {
        let mut out = Vec::new();
        for i in 0..n {
            let (accepted, jobs) = self.ingest(i, None).await.expect("ingest");
            assert_eq!(jobs.len(), 1, "one job per subscribed webhook");
            out.push((accepted.id, jobs[0].delivery_id));
        }
        out
    }

    /// Records an attempt of `delivery`: a success ends it, a failure retries later.
    async fn attempt(&self, delivery: (EventId, DeliveryId), success: bool) -> AttemptId {
        let next = (!success).then(|| crate::store::unix_ms(Utc::now()) + 3_600_000);
        self.record(delivery, 1, success, next).await
    }

    /// Records attempt `number` of `delivery`, with its retry due at `next_due_ms`.
    async fn record(
        &self,
        (event, delivery): (EventId, DeliveryId),
        number: u32,
        success: bool,
        next_due_ms: Option<u64>,
    ) -> AttemptId {
        let now = crate::store::unix_ms(Utc::now());
        let mut record = super::tests::attempt(self.hook, now, "message.created", success, 1);
        record.attempt.id = AttemptId::generate();
        record.attempt.delivery_id = delivery;
        record.attempt.event_id = event;
        record.attempt.attempt = number;
        let id = record.attempt.id;
        let encoded = super::codec::encode(&record).expect("encode");
        self.writes
            .record_attempt(Arc::new(record), encoded, next_due_ms, 5)
            .await
            .expect("record");
        id
    }

    async fn due(&self) -> HashSet<DeliveryId> {
        let plan = ReloadPlan {
            limit: 10_000,
            known: HashSet::new(),
            skip: HashSet::new(),
        };
        let (jobs, complete) = self.threads.due_jobs(plan).await.expect("due");
        assert!(complete);
        let ids: HashSet<_> = jobs.iter().map(|j| j.delivery_id).collect();
        assert_eq!(ids.len(), jobs.len(), "a due delivery is listed once");
        ids
    }
}

#[tokio::test]
async fn an_idempotency_key_stores_one_event_and_hands_its_jobs_over_once() {
    let f = Fixture::open();
    let handed = Arc::new(AtomicUsize::new(0));
    let (first, jobs) = f
        .ingest(1, Some(("order-4821", "sha-a")))
        .await
        .expect("first");
    handed.fetch_add(jobs.len(), Ordering::SeqCst);
    let (again, jobs) = f
        .ingest(1, Some(("order-4821", "sha-a")))
        .await
        .expect("again");
    handed.fetch_add(jobs.len(), Ordering::SeqCst);
    assert_eq!(again.id, first.id);
    assert!(again.replayed && !first.replayed);
    assert_eq!(handed.load(Ordering::SeqCst), 1);

    // The same key with another body is refused and changes nothing.
    let other = f.ingest(2, Some(("order-4821", "sha-b"))).await;
    assert!(
        matches!(other, Err(Error::IdempotencyConflict(_))),
        "{other:?}"
    );
    assert_eq!(f.threads.pending_count().await.expect("count"), 1);
    f.writes.close();
}

#[tokio::test]
async fn what_was_answered_is_there_after_a_crash_with_its_delivery_due() {
    let f = Fixture::open();
    let accepted = f.ingest_many(20).await;
    let done = f.attempt(accepted[0], true).await;
    let crashed = f.after_a_crash();
    let due = {
        let plan = ReloadPlan {
            limit: 10_000,
            known: HashSet::new(),
            skip: HashSet::new(),
        };
        crashed.due_jobs(plan).await.expect("due").0
    };
    let due: HashSet<_> = due.iter().map(|j| j.delivery_id).collect();
    for (event, delivery) in &accepted[1..] {
        assert!(due.contains(delivery), "{delivery} lost");
        let job = crashed
            .load_job(*delivery)
            .await
            .expect("load")
            .expect("stored");
        assert_eq!(job.event.id, *event);
    }
    assert!(
        !due.contains(&accepted[0].1),
        "a delivered job is not due again"
    );
    assert!(crashed.get_attempt(done).await.expect("read").is_some());
    f.writes.close();
}

#[tokio::test]
async fn a_delivery_is_due_once_and_not_after_it_succeeded_or_was_cancelled() {
    let f = Fixture::open();
    let accepted = f.ingest_many(6).await;
    let all: HashSet<_> = accepted.iter().map(|a| a.1).collect();
    assert_eq!(f.due().await, all);
    f.attempt(accepted[0], true).await;
    let retry = accepted[1];
    f.attempt(retry, false).await;
    let job = f
        .threads
        .load_job(retry.1)
        .await
        .expect("load")
        .expect("job");
    let due_ms = job.delivery.due_ms.expect("due again later");
    let due = f.due().await;
    assert!(!due.contains(&accepted[0].1), "succeeded, yet due");
    assert!(
        due.contains(&retry.1),
        "a failed delivery is due at its retry"
    );
    f.threads
        .cancel_delivery(retry.1, due_ms)
        .await
        .expect("cancel");
    assert!(!f.due().await.contains(&retry.1), "cancelled, yet due");
    f.writes.close();
}

#[tokio::test]
async fn attempt_pages_never_skip_or_repeat_while_attempts_are_added() {
    let f = Fixture::open();
    let accepted = f.ingest_many(10).await;
    let mut before = HashSet::new();
    for a in &accepted {
        before.insert(f.attempt(*a, false).await);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = f
            .threads
            .list_attempts(AttemptFilter::default(), cursor, 3)
            .await
            .expect("page");
        // New attempts arrive between pages; they are newer than the cursor.
        f.attempt(accepted[seen.len() % accepted.len()], false)
            .await;
        let Some(last) = page.last() else { break };
        cursor = Some(last.id);
        seen.extend(page.iter().map(|a| a.id));
    }
    let unique: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "an attempt was listed twice");
    assert_eq!(
        unique, before,
        "the pages skipped attempts or listed newer ones"
    );
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "not newest first");
    f.writes.close();
}

/// What a claim is in this store: it has no lease. The engine's in-memory
/// queue hands a due entry to one attempt at a time (`in_flight` stands for
/// it here); the store's part is that the attempt loads the delivery and
/// goes ahead only while it is still pending at the due time it was listed
/// at, and that recording the attempt moves it off that time in the same
/// commit. So a copy listed before another claimer's attempt was recorded
/// (a stale read of the due queue) is dropped, never attempted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_attempt_each_delivery_once() {
    let f = Arc::new(Fixture::open());
    let accepted = f.ingest_many(24).await;
    // Delivery i fails i % 3 times, each retry due at once, then succeeds.
    let fails: Arc<HashMap<DeliveryId, u32>> = Arc::new(
        accepted
            .iter()
            .enumerate()
            .map(|(i, (_, d))| (*d, i as u32 % 3))
            .collect(),
    );
    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    let attempted = Arc::new(Mutex::new(Vec::new()));
    let claimers = (0..4).map(|_| {
        let (f, fails) = (f.clone(), fails.clone());
        let (in_flight, attempted) = (in_flight.clone(), attempted.clone());
        tokio::spawn(async move {
            // Reads in a row where this claimer attempted nothing: the others
            // hold what is left, or (many in a row, for every claimer) the
            // store does not move deliveries on and only stale entries are left.
            let mut stale_reads = 0;
            while stale_reads < 200 {
                let plan = ReloadPlan {
                    limit: 10_000,
                    known: HashSet::new(),
                    skip: HashSet::new(),
                };
                let (due, _) = f.threads.due_jobs(plan).await.expect("due");
                if due.is_empty() {
                    break;
                }
                stale_reads += 1;
                for job in due {
                    let id = job.delivery_id;
                    if !in_flight.locked().insert(id) {
                        continue;
                    }
                    let loaded = f.threads.load_job(id).await.expect("load").expect("job");
                    if loaded.delivery.is_due_at(job.due_ms) {
                        let number = loaded.delivery.attempts + 1;
                        let success = number > fails[&id];
                        let next = (!success).then(|| crate::store::unix_ms(Utc::now()));
                        f.record((loaded.event.id, id), number, success, next).await;
                        attempted.locked().push((id, number));
                        stale_reads = 0;
                    }
                    in_flight.locked().remove(&id);
                    tokio::task::yield_now().await;
                }
            }
        })
    });
    for claimer in claimers.collect::<Vec<_>>() {
        claimer.await.expect("claimer");
    }
    let mut attempted = attempted.locked().clone();
    attempted.sort();
    let mut expected: Vec<(DeliveryId, u32)> = fails
        .iter()
        .flat_map(|(d, n)| (1..=n + 1).map(move |a| (*d, a)))
        .collect();
    expected.sort();
    assert_eq!(attempted, expected, "each attempt of each delivery once");
    for (_, delivery) in &accepted {
        let job = f
            .threads
            .load_job(*delivery)
            .await
            .expect("load")
            .expect("job");
        assert_eq!(job.delivery.state, crate::model::DeliveryState::Succeeded);
    }
    assert!(f.due().await.is_empty());
    f.writes.close();
}

/// A reload reads the due queue's first `limit` entries in due order, each
/// once, and says whether that was all; the deliveries the queue already
/// knows (`known`) are listed without being read again (no event, no
/// attempt number), every other one with what its attempt sends.
#[tokio::test]
async fn a_reload_lists_the_first_entries_once_and_reads_only_the_unknown() {
    let f = Fixture::open();
    let accepted = f.ingest_many(9).await;
    // One that failed, its retry due last; its next attempt is its second.
    let retried = accepted[0];
    f.attempt(retried, false).await;
    let events: HashMap<DeliveryId, EventId> = accepted.iter().map(|(e, d)| (*d, *e)).collect();
    let plan = |limit, known: &HashSet<DeliveryId>| ReloadPlan {
        limit,
        known: known.clone(),
        skip: HashSet::new(),
    };
    let (all, complete) = f
        .threads
        .due_jobs(plan(usize::MAX, &HashSet::new()))
        .await
        .expect("due");
    assert!(complete);
    let order: Vec<_> = all.iter().map(|j| (j.due_ms, j.delivery_id)).collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "in due order, each once"
    );
    assert_eq!(order.len(), 9);
    assert_eq!(
        order.last().map(|o| o.1),
        Some(retried.1),
        "the retry is due last"
    );

    let known: HashSet<DeliveryId> = [1, 4, 8].iter().map(|&i| order[i].1).collect();
    for limit in [0, 1, 4, 8, 9, 10, 1000] {
        let (jobs, complete) = f.threads.due_jobs(plan(limit, &known)).await.expect("due");
        let listed: Vec<_> = jobs.iter().map(|j| (j.due_ms, j.delivery_id)).collect();
        assert_eq!(
            listed,
            order[..limit.min(9)],
            "limit {limit}: the first entries"
        );
        assert_eq!(complete, limit >= 9, "limit {limit}: whether more remain");
        for job in &jobs {
            let id = job.delivery_id;
            match &job.known {
                None => assert!(known.contains(&id), "{id} not known, yet not read"),
                Some(k) => {
                    assert!(!known.contains(&id), "{id} known, yet read again");
                    assert_eq!(k.event.id, events[&id]);
                    let attempt = if id == retried.1 { 2 } else { 1 };
                    assert_eq!(k.attempt, attempt, "{id}: its next attempt");
                }
            }
        }
    }
    f.writes.close();
}
