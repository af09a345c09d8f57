//! A few threads of the engine's own that run its blocking store calls (reads,
//! and the admin writes that do not go through group commit).
//!
//! The engine bounds its store work here rather than on the async runtime's
//! blocking pool, which it does not own: the desktop app runs the engine on
//! Tauri's runtime, where that pool may grow to hundreds of threads. A backlog
//! read by 64 attempts at once, or a burst of log queries, waits in this
//! queue instead of starting threads (each of which costs memory).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::sync::Locked;

type Job = Box<dyn FnOnce() + Send>;

/// The pool. Its threads end once the pool is dropped and the calls already
/// queued have run; a call does not outlive the store it was given.
pub(crate) struct StoreThreads {
    jobs: mpsc::Sender<Job>,
    store: Store,
    /// Held by an admin write from its transaction to the end of its
    /// memory step (see `store::admin`).
    admin_order: Arc<Mutex<()>>,
}

impl StoreThreads {
    /// Starts `threads` threads named `orki-store-N`.
    pub(crate) fn start(store: Store, threads: usize) -> Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("orki-store-{n}"))
                .spawn(move || {
                    loop {
                        // One thread waits on the queue at a time; the lock is
                        // released before the job runs.
                        let next = queue.locked().recv();
                        match next {
                            Ok(job) => job(),
                            Err(mpsc::RecvError) => return,
                        }
                    }
                })
                .map_err(|source| Error::Io {
                    context: "starting the store threads".into(),
                    source,
                })?;
        }
        Ok(Self {
            jobs,
            store,
            admin_order: Arc::new(Mutex::new(())),
        })
    }

    pub(super) fn admin_order(&self) -> Arc<Mutex<()>> {
        self.admin_order.clone()
    }

    /// Runs `f` on one of the threads and waits for its answer. A panic in
    /// `f` is a storage error for this call; the thread goes on serving.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (done, answer) = oneshot::channel();
        let store = self.store.clone();
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(&store)))
                .unwrap_or_else(|_| Err(Error::Storage("a storage call panicked".into())));
            // Released before answering: once the engine has stopped, its
            // caller may open the database again at once.
            drop(store);
            // The caller may have gone (a cancelled request); the answer is then dropped.
            let _ = done.send(result);
        });
        self.jobs.send(job).map_err(|_| Error::ShuttingDown)?;
        answer.await.map_err(|_| Error::ShuttingDown)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> (tempfile::TempDir, StoreThreads) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("orki.redb")).expect("open store");
        let pool = StoreThreads::start(store, threads).expect("start threads");
        (dir, pool)
    }

    #[tokio::test]
    async fn calls_run_on_the_pool_threads_and_a_panic_is_an_error_for_that_call_only() {
        let (_dir, pool) = pool(1);
        let name = pool
            .run(|_| Ok(std::thread::current().name().map(str::to_owned)))
            .await
            .expect("call");
        assert_eq!(name.as_deref(), Some("orki-store-0"));

        let panicked = pool.run(|_| -> Result<()> { panic!("boom") }).await;
        assert!(matches!(panicked, Err(Error::Storage(_))), "{panicked:?}");

        // The single thread survived the panic and still answers.
        let settings = pool.run(|s| s.load_settings()).await;
        assert!(settings.is_ok(), "{settings:?}");
    }

    #[tokio::test]
    async fn no_more_calls_run_at_once_than_there_are_threads() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (_dir, pool) = pool(2);
        let pool = Arc::new(pool);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (started, mut starts) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut calls = Vec::new();
        for _ in 0..6 {
            let (pool, running, most, gate, started) = (
                pool.clone(),
                running.clone(),
                most.clone(),
                gate.clone(),
                started.clone(),
            );
            calls.push(tokio::spawn(async move {
                pool.run(move |_| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let _ = started.send(());
                    // Held until the test lets one call finish.
                    let _ = gate.locked().recv();
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
            }));
        }
        // Two calls hold the two threads; the others wait in the queue. Each
        // release then frees a thread for the next queued call.
        for _ in 0..2 {
            starts.recv().await.expect("a call started");
        }
        for _ in 0..4 {
            release.send(()).expect("release");
            starts.recv().await.expect("a queued call started");
        }
        for _ in 0..2 {
            release.send(()).expect("release");
        }
        for call in calls {
            call.await.expect("task").expect("call");
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
