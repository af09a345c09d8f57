//! The store conformance suite: what the engine relies on from storage,
//! written against the business-level facade only ([`StoreThreads`]' calls
//! and the group commit's `ingest` / `record_attempt`). `Fixture` is the one
//! backend-specific part (open, and what a crash leaves behind); another
//! backend provides its own and runs the same tests.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Utc;

use super::commit::GroupCommit;
use super::threads::StoreThreads;
use super::{AttemptFilter, NewEvent, Store, wal};
use crate::error::Error;
use crate::ids::{AttemptId, DeliveryId, EventId, WebhookId};
use crate::model::Accepted;
use crate::queue::{QueuedJob, ReloadPlan};

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
    async fn attempt(&self, (event, delivery): (EventId, DeliveryId), success: bool) -> AttemptId {
        let now = crate::store::unix_ms(Utc::now());
        let mut record = super::tests::attempt(self.hook, now, "message.created", success, 1);
        record.attempt.id = AttemptId::generate();
        record.attempt.delivery_id = delivery;
        record.attempt.event_id = event;
        let id = record.attempt.id;
        let encoded = super::codec::encode(&record).expect("encode");
        let next = (!success).then_some(now + 3_600_000);
        self.writes
            .record_attempt(Arc::new(record), encoded, next, 5)
            .await
            .expect("record");
        id
    }

    async fn due(&self) -> HashSet<DeliveryId> {
        let plan = ReloadPlan {
            limit: 10_000,
            known: HashSet::new(),
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
