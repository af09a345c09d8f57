//! Group commit: one writer thread takes every queued write operation, applies
//! them all in one redb transaction and commits once, so many concurrent ingests
//! and attempt records share one sync: of the write-ahead log, for most batches,
//! or of the database file, at a checkpoint (see [`crate::store::wal`]). Each caller
//! gets its answer only after the commit that holds its change is durable.
//!
//! An operation that returns an error must not have written anything (the
//! store's `*_in` functions check before they write), so one bad request never
//! spoils the others in its batch.

use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::model::{Accepted, AttemptRecord};
use crate::queue::QueuedJob;
use crate::store::{HealthRules, HotTables, NewEvent, Recorded};
use crate::sync::Locked;
use crate::{Error, Result, Store};

/// Most operations in one transaction.
pub(crate) const MAX_BATCH: usize = 1024;

type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
type Apply = Box<dyn for<'t> FnOnce(&mut HotTables<'t>) -> Finish + Send>;

enum Msg {
    Op(Apply),
    /// Time moved on (a driven clock's wait ran out): look at it again.
    Tick,
    Close,
}

/// The handle to the writer thread.
pub(crate) struct GroupCommit {
    tx: mpsc::Sender<Msg>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the writer thread on `store`, on the system clock.
    pub(crate) fn start(store: Store) -> Result<Self> {
        Self::start_on(store, Clock::System)
    }

    /// Starts the writer thread on `store`; the checkpoint interval runs on
    /// `clock` (tests drive it).
    pub(crate) fn start_on(store: Store, clock: Clock) -> Result<Self> {
        store.wal().set_clock(clock.clone());
        let (tx, rx) = mpsc::channel::<Msg>();
        let wake = tx.clone();
        let thread = std::thread::Builder::new()
            .name("orki-writer".into())
            .spawn(move || writer(store, &rx, &wake, &clock))
            .map_err(|source| Error::Io {
                context: "starting the writer thread".into(),
                source,
            })?;
        Ok(Self {
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Commits what is queued, then stops the thread and closes its hold on the
    /// database. Later writes fail with `ShuttingDown`.
    pub(crate) fn close(&self) {
        let _ = self.tx.send(Msg::Close);
        let thread = self.thread.locked().take();
        if let Some(t) = thread
            && t.join().is_err()
        {
            tracing::error!("the writer thread panicked");
        }
    }

    /// Stores an event with one delivery per subscribed webhook (or finds
    /// the event its idempotency key already stored), then hands the new jobs
    /// to `queue_jobs` on the writer thread once that is durable, before
    /// answering: a caller that hangs up cannot strand them.
    pub(crate) async fn ingest(
        &self,
        new: NewEvent,
        queue_jobs: impl FnOnce(Vec<QueuedJob>) + Send + 'static,
    ) -> Result<Accepted> {
        self.run_then(
            move |tables| Store::ingest_in(tables, new),
            move |(accepted, jobs)| {
                queue_jobs(jobs);
                accepted
            },
        )
        .await
    }

    /// Stores an attempt (`encoded` is its stored form) with the next step of
    /// its delivery; resolves after the commit with the webhook's new health
    /// and the next delivery of its ordering key, if that is now due.
    pub(crate) async fn record_attempt(
        &self,
        record: Arc<AttemptRecord>,
        encoded: Vec<u8>,
        next_due_ms: Option<u64>,
        rules: impl Into<HealthRules>,
    ) -> Result<Recorded> {
        let rules = rules.into();
        self.run(move |tables| {
            Store::record_attempt_in(tables, &record, &encoded, next_due_ms, rules)
        })
        .await
    }

    /// Runs `op` in the next batch; resolves after its commit.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        op: impl for<'t> FnOnce(&mut HotTables<'t>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.run_then(op, |v| v).await
    }

    /// Runs `op` in the next batch, then `then` on its result on the writer
    /// thread once the commit is durable, before answering. What a commit
    /// changes is made known to the in-memory side here, by the committing
    /// side: the caller may be gone by then (a client that hung up).
    pub(crate) async fn run_then<T: Send + 'static, U: Send + 'static>(
        &self,
        op: impl for<'t> FnOnce(&mut HotTables<'t>) -> Result<T> + Send + 'static,
        then: impl FnOnce(T) -> U + Send + 'static,
    ) -> Result<U> {
        let (done, answer) = oneshot::channel();
        let apply: Apply = Box::new(move |tables| {
            let result = op(tables);
            Box::new(move |commit: Result<(), String>| {
                let _ = done.send(match (result, commit) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(Error::Storage(e)),
                    (Ok(v), Ok(())) => Ok(then(v)),
                });
            })
        });
        self.tx
            .send(Msg::Op(apply))
            .map_err(|_| Error::ShuttingDown)?;
        answer
            .await
            .map_err(|_| Error::Storage("the write could not be committed".into()))?
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // The writer holds a sender of its own (to wake itself on a driven
        // clock), so the channel never closes: a handle dropped without
        // `close` ends the thread this way (without waiting for it).
        let _ = self.tx.send(Msg::Close);
    }
}

/// The writer thread: waits for operations (on `clock`, up to the next
/// checkpoint due by time; a driven clock sends `Msg::Tick` on `wake` when it
/// is), applies and commits them in batches.
fn writer(store: Store, rx: &mpsc::Receiver<Msg>, wake: &mpsc::Sender<Msg>, clock: &Clock) {
    let mut closing = false;
    while !closing {
        let due = store.checkpoint_due_in();
        let checkpoint_due = due.is_some_and(|due| due.is_zero());
        let received = if checkpoint_due {
            // A batch waiting now is committed durably: it is the checkpoint.
            rx.try_recv().map_err(|e| match e {
                mpsc::TryRecvError::Empty => mpsc::RecvTimeoutError::Timeout,
                mpsc::TryRecvError::Disconnected => mpsc::RecvTimeoutError::Disconnected,
            })
        } else {
            clock.recv_timeout(rx, due, wake, || Msg::Tick)
        };
        let first = match received {
            Ok(Msg::Op(op)) => op,
            // Idle with batches only in the log: a checkpoint now.
            Err(mpsc::RecvTimeoutError::Timeout) if checkpoint_due => {
                if let Err(e) = store.checkpoint() {
                    tracing::error!(error = %e, "a checkpoint failed; the log keeps the batches");
                }
                continue;
            }
            // The time is up (or it moved): look at it again.
            Ok(Msg::Tick) | Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Ok(Msg::Close) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut ops = vec![first];
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Op(op)) => ops.push(op),
                Ok(Msg::Tick) => {}
                Ok(Msg::Close) => {
                    closing = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let batch = match store.begin_batch() {
            Ok(batch) => batch,
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, "cannot begin a write transaction");
                // Dropping the operations unapplied answers each with a storage error.
                drop(ops);
                continue;
            }
        };
        let started = std::time::Instant::now();
        let n = ops.len();
        let logs = batch.logs();
        let mut tables = match HotTables::open(batch.txn(), logs) {
            Ok(tables) => tables,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the tables of a write transaction");
                continue;
            }
        };
        let finishers: Vec<Finish> = ops.into_iter().map(|op| op(&mut tables)).collect();
        let redo = tables.take_redo();
        drop(tables);
        let applied = std::time::Instant::now();
        let committed = store.commit_batch(batch, &redo).map_err(|e| e.to_string());
        tracing::trace!(
            ops = n,
            logged = logs,
            redo_bytes = redo.iter().map(Vec::len).sum::<usize>(),
            apply_us = (applied - started).as_micros() as u64,
            commit_us = applied.elapsed().as_micros() as u64,
            "group commit"
        );
        if let Err(e) = &committed {
            tracing::error!(error = %e, "a group commit failed; its operations are answered with 503");
        }
        for finish in finishers {
            finish(committed.clone());
        }
    }
    // What was logged since the last checkpoint goes into the database file,
    // so the next start has nothing to replay.
    if let Err(e) = store.close_log() {
        tracing::error!(error = %e, "the last checkpoint failed; the next start replays the write-ahead log");
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use chrono::Utc;

    use super::*;
    use crate::ids::{DeliveryId, WebhookId};
    use crate::model::Accepted;
    use crate::store::tests::attempt;
    use crate::store::wal;
    use crate::store::{AttemptFilter, NewEvent, unix_ms};

    /// A store at `path` with one webhook (to `message.created`) and its
    /// writer, checkpointing by time only every `every` of `clock`.
    fn writer_on(path: &Path, every: Duration, clock: Clock) -> (Store, WebhookId, GroupCommit) {
        let store = Store::open(path).expect("open");
        store.set_checkpoint_every(every);
        let hook = crate::store::tests::crm_webhook();
        store.insert_webhook(&hook).expect("webhook");
        let writes = GroupCommit::start_on(store.clone(), clock).expect("writer");
        (store, hook.id, writes)
    }

    /// Accepts `n` events through the writer; each with its one delivery.
    async fn ingest(writes: &GroupCommit, n: usize) -> Vec<(Accepted, DeliveryId)> {
        let posts = (0..n).map(|i| {
            let data = format!(r#"{{"i":{i}}}"#);
            let new = NewEvent::new("message.created", &data, None, Utc::now()).expect("event");
            writes.run(move |t| {
                let (accepted, jobs) = Store::ingest_in(t, new)?;
                Ok((accepted, jobs.first().expect("one delivery").delivery_id))
            })
        });
        futures_util::future::join_all(posts)
            .await
            .into_iter()
            .map(|r| r.expect("ingest"))
            .collect()
    }

    /// Records a successful first attempt of `delivery`, which takes it off
    /// the due queue (a delete in the log).
    async fn deliver(
        writes: &GroupCommit,
        (accepted, delivery): &(Accepted, DeliveryId),
        hook: WebhookId,
    ) {
        let mut record = attempt(hook, unix_ms(Utc::now()), "message.created", true, 3);
        record.attempt.delivery_id = *delivery;
        record.attempt.event_id = accepted.id;
        let encoded = crate::store::codec::encode(&record).expect("encode");
        writes
            .run(move |t| Store::record_attempt_in(t, &record, &encoded, None, 5))
            .await
            .expect("record");
    }

    /// What is on disk now, as a crash would leave it: the database file and,
    /// with `log`, the write-ahead log, copied to `to`.
    fn crash_image(db: &Path, to: &Path, log: bool) -> PathBuf {
        let image = to.join("orki.redb");
        std::fs::copy(db, &image).expect("copy the database");
        if log {
            std::fs::copy(wal::path_for(db), wal::path_for(&image)).expect("copy the log");
        }
        image
    }

    fn found(store: &Store, accepted: &[(Accepted, DeliveryId)]) -> usize {
        accepted
            .iter()
            .filter(|(a, _)| store.get_event(a.id).expect("read").is_some())
            .count()
    }

    /// Batches are committed without a sync and made durable by the log: a
    /// crash image of the database file alone holds none of them, and with
    /// its log every one that was answered, deletes included; a run on the
    /// replayed database logs on from there, and a clean stop checkpoints and
    /// empties the log.
    #[tokio::test]
    async fn every_answered_write_survives_a_crash_through_the_log() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("orki.redb");
        // No checkpoint on its own during the test.
        let (store, hook, writes) = writer_on(&path, Duration::from_secs(3600), Clock::System);
        let accepted = ingest(&writes, 60).await;
        assert!(accepted.iter().all(|(a, _)| a.deliveries == 1));
        for a in &accepted[..20] {
            deliver(&writes, a, hook).await;
        }
        assert_eq!(store.pending_count().expect("count"), 40);

        let without_log = tempfile::tempdir().expect("dir");
        let image = Store::open(&crash_image(&path, without_log.path(), false)).expect("open");
        assert_eq!(
            found(&image, &accepted),
            0,
            "no batch was synced to the file"
        );
        drop(image);

        let with_log = tempfile::tempdir().expect("dir");
        let image_path = crash_image(&path, with_log.path(), true);
        let image = Store::open(&image_path).expect("open");
        image.set_checkpoint_every(Duration::from_secs(3600));
        assert_eq!(found(&image, &accepted), 60);
        assert_eq!(
            image.pending_count().expect("count"),
            40,
            "deliveries made are off the queue"
        );
        let log = image
            .list_attempts(&AttemptFilter::default(), None, 100)
            .expect("log");
        assert_eq!(log.len(), 20);

        // Written on top of the replayed database, then crashed again.
        let image_writes = GroupCommit::start(image.clone()).expect("writer");
        let more = ingest(&image_writes, 15).await;
        let again = tempfile::tempdir().expect("dir");
        let second = Store::open(&crash_image(&image_path, again.path(), true)).expect("open");
        assert_eq!(found(&second, &accepted), 60);
        assert_eq!(found(&second, &more), 15);
        assert_eq!(second.pending_count().expect("count"), 55);
        drop(second);
        image_writes.close();

        // A clean stop puts everything in the file: nothing depends on the log,
        // and the next start has nothing in it to read.
        writes.close();
        assert!(wal::read(&wal::path_for(&path)).expect("read").is_empty());
        let clean = tempfile::tempdir().expect("dir");
        let stopped = Store::open(&crash_image(&path, clean.path(), false)).expect("open");
        assert_eq!(found(&stopped, &accepted), 60);
        assert_eq!(stopped.pending_count().expect("count"), 40);
    }

    /// With no batch after them, logged batches still reach the database file
    /// by themselves: the writer checkpoints once the interval has passed, and
    /// not before. Time is tokio's paused clock, which the writer thread
    /// waits on: the test moves it instead of waiting for it.
    #[tokio::test]
    async fn an_idle_writer_checkpoints_what_it_logged() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("orki.redb");
        let every = Duration::from_secs(60);
        let clock = Clock::tokio();
        let Clock::Tokio(driven) = clock.clone() else {
            unreachable!("a driven clock")
        };
        let (_store, _, writes) = writer_on(&path, every, clock);
        // Written in real time (the interval is far off), then time stands still.
        let accepted = ingest(&writes, 10).await;
        tokio::time::pause();
        let on_disk = || {
            let image = tempfile::tempdir().expect("dir");
            found(
                &Store::open(&crash_image(&path, image.path(), false)).expect("open"),
                &accepted,
            )
        };
        // Blocking the runtime's thread is safe here: a timer that fired has
        // sent its wake already, and the writer needs nothing else of it.
        let settled = || driven.wait_idle(Duration::from_secs(10));
        assert_eq!(on_disk(), 0, "the batches are in the log only");
        tokio::time::sleep(every / 2).await;
        assert!(settled(), "the writer waits");
        assert_eq!(on_disk(), 0, "a checkpoint before the interval passed");
        // The writer's wait ends at the interval, before this one.
        tokio::time::sleep(every / 2 + Duration::from_secs(1)).await;
        assert!(settled(), "the writer is back waiting after its checkpoint");
        assert_eq!(
            on_disk(),
            accepted.len(),
            "the logged batches never reached the file"
        );
        writes.close();
    }
}
