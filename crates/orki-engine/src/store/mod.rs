//! The redb database, the only code that names redb: registry, events,
//! deliveries, the due queue, the attempt log.
//!
//! Every business operation is one write transaction, committed with
//! `Durability::Immediate` (redb's default): when a method returns `Ok`, the
//! change is on disk. The group commit's batches are the exception: most are
//! committed without a sync and made durable through the write-ahead log
//! ([`crate::store::wal`]; `begin_batch`, `commit_batch`), which opening the database
//! replays. The calls block; the engine reaches them only through the async
//! facade of the store threads (`facade`, `admin`) and the group commit.
//!
//! This file opens the database, opens it again after a storage error and
//! begins transactions and batches; each table family has a file of its own
//! (`meta`, `webhooks`, `events`, `deliveries`, `attempts`, `prune`), and
//! `redo` holds the group commit's logged tables.

mod admin;
mod attempts;
pub mod codec;
pub(crate) mod commit;
#[cfg(test)]
mod conformance;
mod deliveries;
mod events;
mod facade;
mod meta;
mod order;
mod prune;
mod redb_errors;
mod redo;
pub(crate) mod tables;
pub(crate) mod threads;
pub mod wal;
mod webhooks;

pub(crate) use admin::StoredState;
pub use attempts::{AttemptFilter, Health};
pub(crate) use attempts::{HealthRules, Recorded};
pub(crate) use deliveries::Job;
pub(crate) use events::{NewEvent, envelope};
pub use meta::Credentials;
pub(crate) use order::key_hash;
pub use order::{HeldDeliveries, HeldKey};
pub(crate) use redo::Logged;
use redo::Subscription;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction,
};

use crate::model::{AttemptRecord, DeliveryRecord, EventRecord, IdempotencyRecord, WebhookRecord};
use crate::store::codec::{Record, decode};
use crate::store::tables::{
    ATTEMPT_INDEX, ATTEMPTS, DELIVERIES, DUE, EVENTS, FAILED_DELIVERIES, IDEMPOTENCY, META,
    ORDER_HEADS, ORDER_WAITING, WEBHOOKS,
};
use crate::sync::{Locked, Shared};
use crate::{Error, Result};
use wal::Wal;

/// The open database. Cheap to clone; redb serialises writers itself.
#[derive(Clone)]
pub struct Store {
    /// Shared by every clone; empty while the database is being opened again
    /// after a storage error (see [`Store::open_again`]).
    db: Arc<RwLock<Slot>>,
    path: PathBuf,
    /// The group commit's write-ahead log. It is appended to under the slot's
    /// read lock and reset under its write lock, when the database is opened
    /// again: an append never races a replay.
    wal: Arc<Mutex<Wal>>,
}

struct Slot {
    db: Option<Arc<Database>>,
    /// When it was last opened again: tries are at least a second apart, so
    /// a disk that is still full is not checked and repaired in a loop.
    reopened_at: Option<Instant>,
}

/// The tables that accepting events and recording attempts write, opened once
/// per transaction: a group commit applies many operations with one set. Each
/// can log what is written to it, for the write-ahead log (see [`crate::store::wal`]).
pub(crate) struct HotTables<'txn> {
    events: Logged<'txn, u128, &'static [u8]>,
    deliveries: Logged<'txn, u128, &'static [u8]>,
    due: Logged<'txn, (u64, u128), u128>,
    attempts: Logged<'txn, u128, &'static [u8]>,
    index: Logged<'txn, (u8, u128, u8, u8, u128), ()>,
    webhooks: Logged<'txn, u128, &'static [u8]>,
    idempotency: Logged<'txn, &'static str, &'static [u8]>,
    failed: Logged<'txn, (u128, u128), ()>,
    order_heads: Logged<'txn, (u128, u128), (u128, u64)>,
    order_waiting: Logged<'txn, (u128, u128, u64), u128>,
    /// The enabled webhooks' subscriptions, read at most once per transaction:
    /// within one, the writer changes only webhooks' health, never these.
    subscriptions: Option<Vec<Subscription>>,
    /// Webhooks read (and changed) by attempt records in this transaction, so
    /// a batch of attempts to one webhook decodes its record once.
    webhooks_read: HashMap<u128, Option<WebhookRecord>>,
}

/// redb's page cache. Its default (1 GiB) lets the resident size grow with the
/// database; the operating system's file cache is there anyway, and the log
/// queries stay well under their bound with this (docs/BENCHMARKS.md).
const CACHE_BYTES: usize = 4 * 1024 * 1024;

const INGEST_KEY: &str = "ingest_key";
const ADMIN_TOKEN: &str = "admin_token";
const SCHEMA_VERSION: &str = "schema_version";
const SETTINGS: &str = "settings";
/// The sequence number of the last group-commit batch (see [`crate::store::wal`]).
const WAL_SEQ: &str = "wal_seq";

/// Opens (or creates) the database file and its tables, and replays the
/// write-ahead log's batches that the file does not hold yet.
fn open_database(path: &Path) -> Result<Database> {
    // Made `0600` here (redb would create it with the umask's mode).
    crate::private_files::create_file(path)?;
    let db = redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                Error::AlreadyRunning(path.display().to_string())
            }
            other => Error::Storage(format!("opening {}: {other}", path.display())),
        })?;
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let version = meta.get(SCHEMA_VERSION)?.map(|v| v.value().to_owned());
        match version.as_deref() {
            None => {
                meta.insert(SCHEMA_VERSION, "1")?;
            }
            Some("1") => {}
            Some(other) => {
                return Err(Error::Corrupt(format!(
                    "database schema version {other} is newer than this build understands (1)"
                )));
            }
        }
        txn.open_table(WEBHOOKS)?;
        txn.open_table(EVENTS)?;
        txn.open_table(DELIVERIES)?;
        txn.open_table(DUE)?;
        txn.open_table(ATTEMPTS)?;
        txn.open_table(IDEMPOTENCY)?;
        txn.open_table(ATTEMPT_INDEX)?;
        txn.open_table(FAILED_DELIVERIES)?;
        txn.open_table(ORDER_HEADS)?;
        txn.open_table(ORDER_WAITING)?;
    }
    let log = wal::path_for(path);
    let records = wal::read(&log)?;
    let mut meta = txn.open_table(META)?;
    let durable = batch_seq(&meta)?;
    let mut replayed = 0;
    {
        let mut tables = HotTables::open(&txn, false)?;
        for (seq, redo) in records.iter().filter(|(seq, _)| *seq > durable) {
            tables.replay(redo)?;
            replayed += 1;
            meta.insert(WAL_SEQ, seq.to_string().as_str())?;
        }
    }
    drop(meta);
    txn.commit()?;
    if replayed > 0 {
        // The last run ended without its final checkpoint: a crash, a kill, a
        // power cut, or a storage error.
        tracing::warn!(
            batches = replayed,
            "replayed the write-ahead log: every batch accepted after the last checkpoint is back"
        );
    }
    Ok(db)
}

/// Replays the bytes of a write-ahead log (as [`wal::parse`] reads them) into
/// a new in-memory database, as opening a database does, then decodes every
/// record it wrote; returns how many log records were applied. For the fuzzer
/// (`fuzz/`) and tests: a damaged log or record must be an error, never a
/// panic.
pub fn replay_log_bytes(log: &[u8]) -> Result<usize> {
    let db = redb::Builder::new()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .map_err(|e| Error::Storage(format!("an in-memory database: {e}")))?;
    let txn = db.begin_write()?;
    let records = wal::parse(log);
    {
        let mut tables = HotTables::open(&txn, false)?;
        for (_, redo) in &records {
            tables.replay(redo)?;
        }
        for entry in tables.events.iter()? {
            decode::<EventRecord>(entry?.1.value(), "event")?;
        }
        for entry in tables.deliveries.iter()? {
            decode::<DeliveryRecord>(entry?.1.value(), "delivery")?;
        }
        for entry in tables.attempts.iter()? {
            decode::<AttemptRecord>(entry?.1.value(), "attempt")?;
        }
        for entry in tables.webhooks.iter()? {
            decode::<WebhookRecord>(entry?.1.value(), "webhook")?;
        }
        for entry in tables.idempotency.iter()? {
            decode::<IdempotencyRecord>(entry?.1.value(), "idempotency key")?;
        }
    }
    txn.commit()?;
    Ok(records.len())
}

/// The sequence number of the last group-commit batch in `meta`.
fn batch_seq(meta: &impl ReadableTable<&'static str, &'static str>) -> Result<u64> {
    let seq = meta.get(WAL_SEQ)?.map(|v| v.value().parse::<u64>());
    match seq {
        None => Ok(0),
        Some(Ok(seq)) => Ok(seq),
        Some(Err(_)) => Err(Error::Corrupt(format!("{WAL_SEQ} is not a number"))),
    }
}

/// Numbers the batch of `txn`: one past the last, written into it.
fn next_batch_seq(txn: &WriteTransaction) -> Result<u64> {
    let mut meta = txn.open_table(META)?;
    let seq = batch_seq(&meta)? + 1;
    meta.insert(WAL_SEQ, seq.to_string().as_str())?;
    Ok(seq)
}

/// A group-commit batch's transaction (see [`Store::begin_batch`]).
pub(crate) struct Batch {
    /// The database it was begun on.
    db: Arc<Database>,
    txn: WriteTransaction,
    /// Committed with a sync (a checkpoint) rather than through the log.
    durable: bool,
}

impl Batch {
    /// The transaction, to open the tables in.
    pub(crate) fn txn(&self) -> &WriteTransaction {
        &self.txn
    }

    /// Whether its writes are to be logged (see [`HotTables::open`]).
    pub(crate) fn logs(&self) -> bool {
        !self.durable
    }
}

impl Store {
    /// Opens (or creates) the database file, creating its directory and tables.
    /// What it creates is private (directory `0700`, files `0600`, see
    /// [`crate::private_files`]). Fails with [`Error::AlreadyRunning`] while
    /// another process holds the file.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private_files::create_dir(dir)?;
        }
        let db = open_database(path)?;
        let wal = Wal::open(&wal::path_for(path), wal::CHECKPOINT_EVERY)?;
        Ok(Self {
            db: Arc::new(RwLock::new(Slot {
                db: Some(Arc::new(db)),
                reopened_at: None,
            })),
            path: path.to_owned(),
            wal: Arc::new(Mutex::new(wal)),
        })
    }

    fn wal(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal.locked()
    }

    /// Begins the transaction of a group-commit batch. Most batches are
    /// committed without a sync and made durable through the write-ahead log;
    /// when a checkpoint is due (see [`Wal::wants_checkpoint`]), the batch is
    /// committed durably instead.
    pub(crate) fn begin_batch(&self) -> Result<Batch> {
        let (db, mut txn) = self.begin_on(Database::begin_write)?;
        let durable =
            self.wal().wants_checkpoint() || txn.set_durability(Durability::None).is_err();
        Ok(Batch { db, txn, durable })
    }

    /// Commits a batch begun with [`Store::begin_batch`], with `redo`, what its
    /// tables logged. When this returns `Ok`, the batch survives a crash: in
    /// the database file, or in the log.
    pub(crate) fn commit_batch(&self, batch: Batch, redo: &[Vec<u8>]) -> Result<()> {
        let Batch { db, txn, durable } = batch;
        let seq = next_batch_seq(&txn)?;
        txn.commit()?;
        if durable {
            self.wal().checkpointed();
            return Ok(());
        }
        let logged = {
            let slot = self.db.reading();
            if !slot
                .db
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, &db))
            {
                // Opened again since this batch began: the batch went with the
                // old database, and the log was replayed without it.
                return Err(Error::Storage(
                    "the database was opened again during the commit".into(),
                ));
            }
            self.wal().append(seq, redo)
        };
        if let Err(e) = logged {
            tracing::error!(error = %e, "writing the write-ahead log failed; committing with a sync instead");
            self.checkpoint_on(&db)?;
        }
        Ok(())
    }

    /// How long until a checkpoint is due by time, when anything was logged
    /// since the last one: the group commit makes it then even if no batch
    /// comes, so that an idle engine does not keep its last batches only in
    /// the log.
    pub(crate) fn checkpoint_due_in(&self) -> Option<Duration> {
        self.wal().checkpoint_due_in()
    }

    /// The group commit's last step as it stops: a checkpoint, then the log
    /// emptied, so that the next start has nothing to read.
    pub(crate) fn close_log(&self) -> Result<()> {
        self.checkpoint()?;
        self.wal().clear().map_err(|source| Error::Io {
            context: "emptying the write-ahead log".into(),
            source,
        })
    }

    /// Commits everything durably (an empty durable transaction does) and
    /// starts the log again, when anything was logged since the last
    /// checkpoint; the group commit calls this when it is idle.
    pub(crate) fn checkpoint(&self) -> Result<()> {
        if self.wal().is_empty() {
            return Ok(());
        }
        match self.database() {
            Ok(db) => self.checkpoint_on(&db),
            Err(e) => {
                self.wal().checkpoint_failed();
                Err(e)
            }
        }
    }

    fn checkpoint_on(&self, db: &Database) -> Result<()> {
        let committed = db
            .begin_write()
            .map_err(Error::from)
            .and_then(|txn| Ok(txn.commit()?));
        match committed {
            Ok(()) => self.wal().checkpointed(),
            Err(_) => self.wal().checkpoint_failed(),
        }
        committed
    }

    /// How long after a checkpoint the next one is due (tests).
    #[cfg(test)]
    pub(crate) fn set_checkpoint_every(&self, every: Duration) {
        let mut wal = self.wal();
        *wal = Wal::open(&wal::path_for(&self.path), every).expect("open the log");
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn write(&self) -> Result<WriteTransaction> {
        self.begin(Database::begin_write)
    }

    fn read(&self) -> Result<ReadTransaction> {
        self.begin(Database::begin_read)
    }

    /// Begins a transaction; after a storage error, on the database opened again.
    fn begin<T>(
        &self,
        begin: impl Fn(&Database) -> std::result::Result<T, redb::TransactionError>,
    ) -> Result<T> {
        Ok(self.begin_on(begin)?.1)
    }

    /// [`Store::begin`], also returning the database the transaction is on.
    fn begin_on<T>(
        &self,
        begin: impl Fn(&Database) -> std::result::Result<T, redb::TransactionError>,
    ) -> Result<(Arc<Database>, T)> {
        let db = self.database()?;
        match begin(&db) {
            Err(redb::TransactionError::Storage(redb::StorageError::PreviousIo)) => {
                let db = self.open_again(Some(db))?;
                let txn = begin(&db)?;
                Ok((db, txn))
            }
            other => Ok((db, other?)),
        }
    }

    /// The open database, or a new try at opening it again.
    fn database(&self) -> Result<Arc<Database>> {
        let slot = self.db.reading();
        if let Some(db) = &slot.db {
            return Ok(db.clone());
        }
        drop(slot);
        self.open_again(None)
    }

    /// After a failed write (a full disk, an I/O error) redb refuses every
    /// transaction until the database is opened again; until then every store
    /// call fails, which the API answers with 503. This closes the `failed`
    /// database and opens the file again (redb checks and repairs it), so the
    /// engine takes events again as soon as the disk has room, without a
    /// restart. Only `failed` is replaced: a caller that comes second finds the
    /// new one. With `None` (the slot is empty: the last try failed), it tries
    /// again.
    fn open_again(&self, failed: Option<Arc<Database>>) -> Result<Arc<Database>> {
        let mut slot = self.db.writing();
        match (&slot.db, &failed) {
            (Some(current), Some(failed)) if !Arc::ptr_eq(current, failed) => {
                return Ok(current.clone());
            }
            (Some(current), None) => return Ok(current.clone()),
            _ => {}
        }
        if slot.db.take().is_some() {
            tracing::error!("a storage error: closing the database to open it again");
        }
        drop(failed);
        if slot
            .reopened_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return Err(Error::Storage(
                "the database is closed after a storage error".into(),
            ));
        }
        slot.reopened_at = Some(Instant::now());
        // Transactions still open on the closed database hold its file for a
        // moment; each ends within its own call.
        let deadline = Instant::now() + Duration::from_secs(5);
        let opened = loop {
            match open_database(&self.path) {
                Err(Error::AlreadyRunning(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(Error::AlreadyRunning(_)) => {
                    break Err(Error::Storage(
                        "the closed database's file is still held by its transactions".into(),
                    ));
                }
                other => break other,
            }
        };
        match opened {
            Ok(db) => {
                // The file now holds everything the log held (replayed above).
                self.wal().checkpointed();
                let db = Arc::new(db);
                slot.db = Some(db.clone());
                tracing::warn!("the database is open again after a storage error");
                Ok(db)
            }
            Err(e) => {
                tracing::error!(error = %e, "opening the database again failed; trying again on the next call, a second later at the earliest");
                Err(Error::Storage(format!("opening the database again: {e}")))
            }
        }
    }
}

/// RFC 3339 in UTC with milliseconds and a `Z`.
pub(crate) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp_millis()).unwrap_or(0)
}

/// The record under `key` in one of the id-keyed tables, decoded.
fn get_record<T: Record>(
    table: &impl ReadableTable<u128, &'static [u8]>,
    key: u128,
    what: &str,
) -> Result<Option<T>> {
    table.get(key)?.map(|v| decode(v.value(), what)).transpose()
}

#[cfg(test)]
mod golden;

#[cfg(test)]
pub(crate) mod tests;
