//! Group commit: one writer thread takes every queued write operation, applies
//! them all in one redb transaction and commits once, so many concurrent ingests
//! and attempt records share one fsync. Each caller gets its answer only after
//! the commit that holds its change has returned.
//!
//! An operation that returns an error must not have written anything (the
//! store's `*_in` functions check before they write), so one bad request never
//! spoils the others in its batch.

use std::sync::{Mutex, mpsc};

use tokio::sync::oneshot;

use crate::store::HotTables;
use crate::{Error, Result, Store};

/// Most operations in one transaction.
pub const MAX_BATCH: usize = 1024;

type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
type Apply = Box<dyn for<'t> FnOnce(&mut HotTables<'t>) -> Finish + Send>;

enum Msg {
    Op(Apply),
    Close,
}

/// The handle to the writer thread.
pub struct GroupCommit {
    tx: mpsc::Sender<Msg>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the writer thread on `store`.
    pub fn start(store: Store) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let thread = std::thread::Builder::new()
            .name("orki-writer".into())
            .spawn(move || writer(store, &rx))
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
    pub fn close(&self) {
        let _ = self.tx.send(Msg::Close);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = thread
            && t.join().is_err()
        {
            tracing::error!("the writer thread panicked");
        }
    }

    /// Runs `op` in the next batch; resolves after its commit.
    pub async fn run<T: Send + 'static>(
        &self,
        op: impl for<'t> FnOnce(&mut HotTables<'t>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (done, answer) = oneshot::channel();
        let apply: Apply = Box::new(move |tables| {
            let result = op(tables);
            Box::new(move |commit: Result<(), String>| {
                let _ = done.send(match (result, commit) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(e)) => Err(Error::Storage(e)),
                    (Ok(v), Ok(())) => Ok(v),
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

fn writer(store: Store, rx: &mpsc::Receiver<Msg>) {
    let mut closing = false;
    while !closing {
        let Ok(Msg::Op(first)) = rx.recv() else {
            break;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Op(op)) => batch.push(op),
                Ok(Msg::Close) => {
                    closing = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let txn = match store.write() {
            Ok(txn) => txn,
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, "cannot begin a write transaction");
                // Dropping the operations unapplied answers each with a storage error.
                drop(batch);
                continue;
            }
        };
        let started = std::time::Instant::now();
        let n = batch.len();
        let mut tables = match HotTables::open(&txn) {
            Ok(tables) => tables,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the tables of a write transaction");
                continue;
            }
        };
        let finishers: Vec<Finish> = batch.into_iter().map(|op| op(&mut tables)).collect();
        drop(tables);
        let applied = std::time::Instant::now();
        let committed = txn.commit().map_err(|e| e.to_string());
        tracing::trace!(
            ops = n,
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
}
