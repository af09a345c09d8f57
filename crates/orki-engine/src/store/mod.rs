//! The redb database: registry, events, deliveries, the due queue, the attempt log.
//!
//! Every business operation is one write transaction, committed with
//! `Durability::Immediate` (redb's default): when a method returns `Ok`, the
//! change is on disk. The group commit's batches are the exception: most are
//! committed without a sync and made durable through the write-ahead log
//! ([`crate::store::wal`]; `begin_batch`, `commit_batch`), which opening the database
//! replays. The calls block; the engine runs them on its store threads or its
//! group-commit writer (see `EngineHandle::blocking`).

mod admin;
pub mod codec;
pub mod commit;
#[cfg(test)]
mod conformance;
mod facade;
mod redb_errors;
pub mod tables;
pub(crate) mod threads;

pub(crate) use admin::StoredState;
pub mod wal;

use std::borrow::Borrow;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redb::{
    Database, Durability, Key, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, Value, WriteTransaction,
};

use crate::ids::{AttemptId, DeliveryId, EventId, WebhookId};
use crate::model::{
    Accepted, Attempt, AttemptDetail, AttemptRecord, DeliveryRecord, DeliveryState, EventRecord,
    IdempotencyRecord, RequestView, WebhookRecord,
};
use crate::queue::{CACHED_EVENT_BYTES, Known, QueuedJob, ReloadPlan, footprint};
use crate::settings::Settings;
use crate::store::codec::{Record, decode, encode};
use crate::store::tables::{
    ATTEMPT_INDEX, ATTEMPTS, DELIVERIES, DUE, EVENTS, FAILED_DELIVERIES, IDEMPOTENCY, META,
    WEBHOOKS,
};
use crate::sync::{Locked, Shared};
use crate::{Error, Result, Secret};
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
pub struct HotTables<'txn> {
    events: Logged<'txn, u128, &'static [u8]>,
    deliveries: Logged<'txn, u128, &'static [u8]>,
    due: Logged<'txn, (u64, u128), u128>,
    attempts: Logged<'txn, u128, &'static [u8]>,
    index: Logged<'txn, (u8, u128, u8, u8, u128), ()>,
    webhooks: Logged<'txn, u128, &'static [u8]>,
    idempotency: Logged<'txn, &'static str, &'static [u8]>,
    failed: Logged<'txn, (u128, u128), ()>,
    /// The enabled webhooks' subscriptions, read at most once per transaction:
    /// within one, the writer changes only webhooks' health, never these.
    subscriptions: Option<Vec<Subscription>>,
    /// Webhooks read (and changed) by attempt records in this transaction, so
    /// a batch of attempts to one webhook decodes its record once.
    webhooks_read: HashMap<u128, Option<WebhookRecord>>,
}

/// A table that can note each put and delete made through it (its redo log),
/// so that a batch committed without a sync can be made durable by logging
/// what it wrote. Reads go to the table itself (`Deref`).
pub struct Logged<'txn, K: Key + 'static, V: Value + 'static> {
    table: Table<'txn, K, V>,
    /// The table's number in redo records.
    id: u8,
    redo: Option<Vec<u8>>,
}

const REDO_PUT: u8 = 1;
const REDO_DELETE: u8 = 2;

impl<'txn, K: Key + 'static, V: Value + 'static> Logged<'txn, K, V> {
    fn new(table: Table<'txn, K, V>, id: u8, log: bool) -> Self {
        Self {
            table,
            id,
            redo: log.then(Vec::new),
        }
    }

    /// Writes without logging (a transaction committed durably by itself).
    fn plain(table: Table<'txn, K, V>) -> Self {
        Self::new(table, 0, false)
    }

    /// Inserts or replaces the value under `key`.
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<()> {
        let (key, value) = (key.borrow(), value.borrow());
        self.table.insert(key, value)?;
        if let Some(redo) = &mut self.redo {
            redo.push(self.id);
            redo.push(REDO_PUT);
            put_bytes(redo, K::as_bytes(key).as_ref());
            put_bytes(redo, V::as_bytes(value).as_ref());
        }
        Ok(())
    }

    /// Removes the value under `key`, if any.
    pub fn remove<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> Result<()> {
        let key = key.borrow();
        self.table.remove(key)?;
        if let Some(redo) = &mut self.redo {
            redo.push(self.id);
            redo.push(REDO_DELETE);
            put_bytes(redo, K::as_bytes(key).as_ref());
        }
        Ok(())
    }

    /// Applies one logged put (`Some` value) or delete, as bytes. Each is
    /// checked to be a key or value of this table first: redb's `from_bytes`
    /// trusts its input and panics on a wrong width or bad UTF-8, and a
    /// record can pass its CRC and still be wrong (written by a faulty build,
    /// or edited by hand).
    fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        check_bytes::<K>(self.id, "key", key)?;
        if let Some(value) = value {
            check_bytes::<V>(self.id, "value", value)?;
        }
        let key = K::from_bytes(key);
        match value {
            Some(value) => self.table.insert(&key, V::from_bytes(value))?,
            None => self.table.remove(&key)?,
        };
        Ok(())
    }
}

impl<'txn, K: Key + 'static, V: Value + 'static> std::ops::Deref for Logged<'txn, K, V> {
    type Target = Table<'txn, K, V>;

    fn deref(&self) -> &Self::Target {
        &self.table
    }
}

/// Whether `bytes` is a well-formed `T` as redb stores it: the fixed width
/// for numbers, tuples of them and `()`; UTF-8 for `&str`; anything for
/// `&[u8]` (the variable-width types of our tables).
fn check_bytes<T: Value>(table: u8, what: &str, bytes: &[u8]) -> Result<()> {
    let ok = match T::fixed_width() {
        Some(width) => bytes.len() == width,
        None if T::type_name() == <&str>::type_name() => std::str::from_utf8(bytes).is_ok(),
        None => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Corrupt(format!(
            "a write-ahead record holds a {what} of {} bytes that is not one of table {table} ({:?})",
            bytes.len(),
            T::type_name()
        )))
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys and values are far below 4 GiB (a request body is capped at 1 MiB).
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Splits the length-prefixed bytes at the start of `input` off it.
fn take_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8]> {
    let corrupt = || Error::Corrupt("a write-ahead record is cut short".into());
    let (len, rest) = input.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let len = u32::from_le_bytes(*len) as usize;
    if rest.len() < len {
        return Err(corrupt());
    }
    let (bytes, rest) = rest.split_at(len);
    *input = rest;
    Ok(bytes)
}

/// What ingest reads of a webhook: only the fields that route an event.
#[derive(Debug, serde::Deserialize)]
struct Subscription {
    id: WebhookId,
    enabled: bool,
    events: Vec<String>,
}

impl Record for Subscription {}

impl<'txn> HotTables<'txn> {
    /// Opens them in `txn`; drop them before committing. With `log`, every
    /// write is also noted for [`HotTables::take_redo`].
    pub fn open(txn: &'txn WriteTransaction, log: bool) -> Result<Self> {
        Ok(Self {
            events: Logged::new(txn.open_table(EVENTS)?, 1, log),
            deliveries: Logged::new(txn.open_table(DELIVERIES)?, 2, log),
            due: Logged::new(txn.open_table(DUE)?, 3, log),
            attempts: Logged::new(txn.open_table(ATTEMPTS)?, 4, log),
            index: Logged::new(txn.open_table(ATTEMPT_INDEX)?, 5, log),
            webhooks: Logged::new(txn.open_table(WEBHOOKS)?, 6, log),
            idempotency: Logged::new(txn.open_table(IDEMPOTENCY)?, 7, log),
            failed: Logged::new(txn.open_table(FAILED_DELIVERIES)?, 8, log),
            subscriptions: None,
            webhooks_read: HashMap::new(),
        })
    }

    /// What was written through these tables so far (a redo record's
    /// payload), one part per table written to: writes to different tables do
    /// not depend on each other's order.
    pub fn take_redo(&mut self) -> Vec<Vec<u8>> {
        [
            &mut self.events.redo,
            &mut self.deliveries.redo,
            &mut self.due.redo,
            &mut self.attempts.redo,
            &mut self.index.redo,
            &mut self.webhooks.redo,
            &mut self.idempotency.redo,
            &mut self.failed.redo,
        ]
        .into_iter()
        .flatten()
        .filter(|redo| !redo.is_empty())
        .map(std::mem::take)
        .collect()
    }

    /// Applies a redo record's payload (see [`HotTables::take_redo`]).
    fn replay(&mut self, mut redo: &[u8]) -> Result<()> {
        while let Some((&[table, op], rest)) = redo.split_first_chunk::<2>() {
            redo = rest;
            let key = take_bytes(&mut redo)?;
            let value = match op {
                REDO_PUT => Some(take_bytes(&mut redo)?),
                REDO_DELETE => None,
                other => {
                    return Err(Error::Corrupt(format!(
                        "a write-ahead record holds an unknown operation {other}"
                    )));
                }
            };
            match table {
                1 => self.events.apply(key, value)?,
                2 => self.deliveries.apply(key, value)?,
                3 => self.due.apply(key, value)?,
                4 => self.attempts.apply(key, value)?,
                5 => self.index.apply(key, value)?,
                6 => self.webhooks.apply(key, value)?,
                7 => self.idempotency.apply(key, value)?,
                8 => self.failed.apply(key, value)?,
                other => {
                    return Err(Error::Corrupt(format!(
                        "a write-ahead record names an unknown table {other}"
                    )));
                }
            }
        }
        if redo.is_empty() {
            Ok(())
        } else {
            Err(Error::Corrupt("a write-ahead record is cut short".into()))
        }
    }

    /// The enabled webhooks subscribed to `event_type`.
    fn subscribers(&mut self, event_type: &str) -> Result<Vec<WebhookId>> {
        let subscriptions = match &mut self.subscriptions {
            Some(s) => s,
            empty => {
                let mut all = Vec::new();
                for entry in self.webhooks.iter()? {
                    let (_, v) = entry?;
                    let s: Subscription = decode(v.value(), "webhook")?;
                    if s.enabled {
                        all.push(s);
                    }
                }
                empty.insert(all)
            }
        };
        Ok(subscriptions
            .iter()
            .filter(|s| s.events.iter().any(|e| e == event_type))
            .map(|s| s.id)
            .collect())
    }
}

/// The two credentials of the listener.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Posts events, and nothing else.
    pub ingest_key: Secret,
    /// Manages everything, and does not post events.
    pub admin_token: Secret,
}

/// A new event to accept, built and encoded before the writer thread sees it
/// (see [`NewEvent::new`]), so the one writer only checks and writes.
#[derive(Debug)]
pub struct NewEvent {
    event: Arc<EventRecord>,
    encoded: Vec<u8>,
    /// `(Idempotency-Key, SHA-256 of the request body)`.
    idempotency: Option<(String, String)>,
}

impl NewEvent {
    /// The event of a known `event_type` with the `data` object `data_json`
    /// (already checked to be a JSON object), accepted at `now`.
    pub fn new(
        event_type: &str,
        data_json: &str,
        idempotency: Option<(String, String)>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let id = EventId::generate();
        let event = EventRecord {
            id,
            event_type: event_type.to_owned(),
            created_at: now,
            payload: envelope(id, event_type, now, data_json)?,
            test: false,
            idempotency_key: idempotency.as_ref().map(|(k, _)| k.clone()),
        };
        Ok(Self {
            encoded: encode(&event)?,
            event: Arc::new(event),
            idempotency,
        })
    }
}

/// Everything needed to make one attempt.
#[derive(Debug, Clone)]
pub struct Job {
    /// The delivery.
    pub delivery: DeliveryRecord,
    /// Its event (with the payload to send).
    pub event: EventRecord,
    /// Its webhook, unless it was deleted.
    pub webhook: Option<WebhookRecord>,
}

/// A webhook's health after an attempt changed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// The webhook.
    pub webhook_id: WebhookId,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// At or above the warning threshold.
    pub warning: bool,
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

    /// The stored credentials, generated and saved on first start.
    pub fn credentials(&self) -> Result<Credentials> {
        let txn = self.write()?;
        let creds = {
            let mut meta = txn.open_table(META)?;
            let mut get_or_create = |name: &str, prefix: &str| -> Result<Secret> {
                if let Some(v) = meta.get(name)? {
                    return Ok(Secret::new(v.value()));
                }
                let fresh = Secret::generate(prefix);
                meta.insert(name, fresh.expose())?;
                Ok(fresh)
            };
            Credentials {
                ingest_key: get_or_create(INGEST_KEY, "ik_")?,
                admin_token: get_or_create(ADMIN_TOKEN, "at_")?,
            }
        };
        txn.commit()?;
        Ok(creds)
    }

    /// The stored settings (defaults until first saved).
    pub fn load_settings(&self) -> Result<Settings> {
        let txn = self.read()?;
        let meta = txn.open_table(META)?;
        match meta.get(SETTINGS)? {
            Some(v) => decode(v.value().as_bytes(), "settings"),
            None => Ok(Settings::default()),
        }
    }

    /// Saves the settings and, when asked, a fresh ingest key, in one transaction.
    pub fn save_settings(
        &self,
        settings: &Settings,
        regenerate_ingest_key: bool,
    ) -> Result<Option<Secret>> {
        let txn = self.write()?;
        let fresh = {
            let mut meta = txn.open_table(META)?;
            let json =
                String::from_utf8(encode(settings)?).map_err(|e| Error::Internal(e.to_string()))?;
            meta.insert(SETTINGS, json.as_str())?;
            if regenerate_ingest_key {
                let fresh = Secret::generate("ik_");
                meta.insert(INGEST_KEY, fresh.expose())?;
                Some(fresh)
            } else {
                None
            }
        };
        txn.commit()?;
        Ok(fresh)
    }

    // ----- webhooks -----

    /// Saves a new webhook.
    pub fn insert_webhook(&self, webhook: &WebhookRecord) -> Result<()> {
        let txn = self.write()?;
        txn.open_table(WEBHOOKS)?
            .insert(webhook.id.0, encode(webhook)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// One webhook.
    pub fn get_webhook(&self, id: WebhookId) -> Result<Option<WebhookRecord>> {
        let txn = self.read()?;
        let table = txn.open_table(WEBHOOKS)?;
        let (index, attempts) = (txn.open_table(ATTEMPT_INDEX)?, txn.open_table(ATTEMPTS)?);
        table
            .get(id.0)?
            .map(|v| with_last_attempt(decode(v.value(), "webhook")?, &index, &attempts))
            .transpose()
    }

    /// All webhooks, oldest first.
    pub fn list_webhooks(&self) -> Result<Vec<WebhookRecord>> {
        let txn = self.read()?;
        let table = txn.open_table(WEBHOOKS)?;
        let (index, attempts) = (txn.open_table(ATTEMPT_INDEX)?, txn.open_table(ATTEMPTS)?);
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(with_last_attempt(
                decode(v.value(), "webhook")?,
                &index,
                &attempts,
            )?);
        }
        Ok(out)
    }

    /// Changes a webhook in one transaction. `change` may refuse with an error, and then
    /// nothing is written. Disabling a webhook cancels its pending deliveries.
    pub fn update_webhook(
        &self,
        id: WebhookId,
        change: impl FnOnce(&mut WebhookRecord) -> Result<()>,
    ) -> Result<WebhookRecord> {
        let txn = self.write()?;
        let updated = {
            let mut table = txn.open_table(WEBHOOKS)?;
            let mut webhook: WebhookRecord = match table.get(id.0)? {
                Some(v) => decode(v.value(), "webhook")?,
                None => return Err(Error::not_found("webhook", id)),
            };
            change(&mut webhook)?;
            table.insert(id.0, encode(&webhook)?.as_slice())?;
            let index = txn.open_table(ATTEMPT_INDEX)?;
            let attempts = txn.open_table(ATTEMPTS)?;
            with_last_attempt(webhook, &index, &attempts)?
        };
        if !updated.enabled {
            cancel_pending(&txn, id)?;
        }
        txn.commit()?;
        Ok(updated)
    }

    /// Deletes a webhook and cancels its pending deliveries. The log keeps its attempts.
    pub fn delete_webhook(&self, id: WebhookId) -> Result<()> {
        let txn = self.write()?;
        if txn.open_table(WEBHOOKS)?.remove(id.0)?.is_none() {
            return Err(Error::not_found("webhook", id));
        }
        cancel_pending(&txn, id)?;
        txn.commit()?;
        Ok(())
    }

    // ----- events -----

    /// Accepts an event, in the caller's transaction (the group commit): stores it
    /// and one pending delivery per subscribed, enabled webhook, due now. With an
    /// idempotency key already seen, returns the first result (or a conflict when
    /// the body differs). An error means nothing was written. Also returns the
    /// queued deliveries, with the event, for the in-memory queue.
    pub fn ingest_in(t: &mut HotTables<'_>, new: NewEvent) -> Result<(Accepted, Vec<QueuedJob>)> {
        let NewEvent {
            event,
            encoded,
            idempotency,
        } = new;
        if let Some((key, body_sha)) = &idempotency
            && let Some(v) = t.idempotency.get(key.as_str())?
        {
            let first: IdempotencyRecord = decode(v.value(), "idempotency record")?;
            if &first.body_sha256 != body_sha {
                return Err(Error::IdempotencyConflict(key.clone()));
            }
            let accepted = Accepted {
                id: first.event_id,
                deliveries: first.deliveries,
                replayed: true,
            };
            return Ok((accepted, Vec::new()));
        }
        let subscribed = t.subscribers(&event.event_type)?;
        t.events.insert(event.id.0, encoded.as_slice())?;
        let due_ms = unix_ms(event.created_at);
        let mut jobs = Vec::with_capacity(subscribed.len());
        for webhook_id in subscribed {
            let delivery = DeliveryRecord {
                id: DeliveryId::generate(),
                event_id: event.id,
                webhook_id,
                event_type: event.event_type.clone(),
                created_at: event.created_at,
                attempts: 0,
                state: DeliveryState::Pending,
                due_ms: Some(due_ms),
                test: false,
            };
            t.deliveries
                .insert(delivery.id.0, encode(&delivery)?.as_slice())?;
            t.due.insert((due_ms, delivery.id.0), webhook_id.0)?;
            jobs.push(QueuedJob {
                due_ms,
                delivery_id: delivery.id,
                webhook_id,
                known: Some(Known {
                    event: event.clone(),
                    attempt: 1,
                }),
            });
        }
        let count = u32::try_from(jobs.len()).unwrap_or(u32::MAX);
        if let Some((key, body_sha)) = idempotency {
            let record = IdempotencyRecord {
                body_sha256: body_sha,
                event_id: event.id,
                deliveries: count,
                created_at: event.created_at,
            };
            t.idempotency
                .insert(key.as_str(), encode(&record)?.as_slice())?;
        }
        let accepted = Accepted {
            id: event.id,
            deliveries: count,
            replayed: false,
        };
        Ok((accepted, jobs))
    }

    /// One event.
    pub fn get_event(&self, id: EventId) -> Result<Option<EventRecord>> {
        let txn = self.read()?;
        let table = txn.open_table(EVENTS)?;
        table
            .get(id.0)?
            .map(|v| decode(v.value(), "event"))
            .transpose()
    }

    // ----- the due queue -----

    /// The earliest `plan.limit` entries of the due queue, and whether that was
    /// all, read in one transaction. Each delivery not in `plan.known` comes
    /// with what its attempt sends (its event, read once however many
    /// deliveries share it, and its attempt number) while the events fit in
    /// [`CACHED_EVENT_BYTES`]; past that, or when its records do not agree with
    /// the entry, without.
    pub fn due_jobs(&self, plan: &ReloadPlan) -> Result<(Vec<QueuedJob>, bool)> {
        let txn = self.read()?;
        let due = txn.open_table(DUE)?;
        let deliveries = txn.open_table(DELIVERIES)?;
        let events = txn.open_table(EVENTS)?;
        let mut read: HashMap<EventId, Option<Arc<EventRecord>>> = HashMap::new();
        let mut event_bytes = 0;
        let mut out = Vec::with_capacity(plan.limit.min(100_000));
        for entry in due.iter()? {
            if out.len() >= plan.limit {
                return Ok((out, false));
            }
            let (k, v) = entry?;
            let (due_ms, delivery) = k.value();
            let mut job = QueuedJob {
                due_ms,
                delivery_id: DeliveryId(delivery),
                webhook_id: WebhookId(v.value()),
                known: None,
            };
            if event_bytes < CACHED_EVENT_BYTES && !plan.known.contains(&job.delivery_id) {
                let record: Option<DeliveryRecord> = get_record(&deliveries, delivery, "delivery")?;
                if let Some(d) = record
                    && d.is_due_at(due_ms)
                {
                    let event = match read.entry(d.event_id) {
                        Entry::Occupied(o) => o.get().clone(),
                        Entry::Vacant(slot) => {
                            let event = get_record::<EventRecord>(&events, d.event_id.0, "event")?
                                .map(Arc::new);
                            event_bytes += event.as_deref().map_or(0, footprint);
                            slot.insert(event).clone()
                        }
                    };
                    job.known = event.map(|event| Known {
                        event,
                        attempt: d.attempts + 1,
                    });
                }
            }
            out.push(job);
        }
        Ok((out, true))
    }

    /// The delivery, its event and its webhook.
    pub fn load_job(&self, id: DeliveryId) -> Result<Option<Job>> {
        let txn = self.read()?;
        let Some(delivery) =
            get_record::<DeliveryRecord>(&txn.open_table(DELIVERIES)?, id.0, "delivery")?
        else {
            return Ok(None);
        };
        let Some(event) =
            get_record::<EventRecord>(&txn.open_table(EVENTS)?, delivery.event_id.0, "event")?
        else {
            return Ok(None);
        };
        let webhook = get_record::<WebhookRecord>(
            &txn.open_table(WEBHOOKS)?,
            delivery.webhook_id.0,
            "webhook",
        )?;
        Ok(Some(Job {
            delivery,
            event,
            webhook,
        }))
    }

    /// Takes a delivery off the queue without an attempt (its webhook is gone or
    /// disabled, or its event was lost).
    pub fn cancel_delivery(&self, id: DeliveryId, due_ms: u64) -> Result<()> {
        let txn = self.write()?;
        txn.open_table(DUE)?.remove((due_ms, id.0))?;
        {
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let found: Option<DeliveryRecord> = get_record(&deliveries, id.0, "delivery")?;
            if let Some(mut d) = found {
                d.state = DeliveryState::Cancelled;
                d.due_ms = None;
                deliveries.insert(id.0, encode(&d)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Records a delivery attempt and moves the delivery on, in the caller's
    /// transaction (the group commit), with the record already encoded (so the
    /// writer thread does not spend time on it): the attempt is logged; the
    /// delivery succeeds, waits in the queue until `next_due_ms`, or is given up;
    /// the webhook's failure count is updated. Returns the webhook's health when
    /// it changed.
    pub fn record_attempt_in(
        t: &mut HotTables<'_>,
        record: &AttemptRecord,
        encoded: &[u8],
        next_due_ms: Option<u64>,
        warning_threshold: u32,
    ) -> Result<Option<Health>> {
        let a = &record.attempt;
        insert_attempt_encoded(&mut t.attempts, &mut t.index, a, encoded)?;
        {
            let found: Option<DeliveryRecord> =
                get_record(&*t.deliveries, a.delivery_id.0, "delivery")?;
            // A delivery cancelled during its attempt (webhook disabled or deleted)
            // stays cancelled; the attempt is still logged.
            if let Some(mut delivery) = found.filter(|d| d.state != DeliveryState::Cancelled) {
                if let Some(old) = delivery.due_ms.take() {
                    t.due.remove((old, delivery.id.0))?;
                }
                delivery.attempts = delivery.attempts.max(a.attempt);
                delivery.state = if a.success {
                    DeliveryState::Succeeded
                } else if let Some(next) = next_due_ms {
                    t.due.insert((next, delivery.id.0), delivery.webhook_id.0)?;
                    delivery.due_ms = Some(next);
                    DeliveryState::Pending
                } else {
                    t.failed
                        .insert((delivery.webhook_id.0, delivery.id.0), ())?;
                    DeliveryState::Failed
                };
                t.deliveries
                    .insert(delivery.id.0, encode(&delivery)?.as_slice())?;
            }
        }
        let health = {
            let found = match t.webhooks_read.entry(a.webhook_id.0) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(get_record::<WebhookRecord>(
                    &*t.webhooks,
                    a.webhook_id.0,
                    "webhook",
                )?),
            };
            match found {
                Some(w) => {
                    let before = w.consecutive_failures;
                    w.consecutive_failures = if a.success {
                        0
                    } else {
                        before.saturating_add(1)
                    };
                    // Success after success changes only the last attempt, which
                    // reads from the log (see `with_last_attempt`): the record is
                    // rewritten when the count changes, and at least hourly so it
                    // stays close once retention has pruned those attempts.
                    let changed = before != w.consecutive_failures;
                    let stale = w.last_attempt_at.is_none_or(|t| {
                        a.timestamp.signed_duration_since(t) > chrono::Duration::hours(1)
                    });
                    if changed || stale {
                        w.last_attempt_at = Some(a.timestamp);
                        w.last_status_code = a.status_code;
                        t.webhooks.insert(w.id.0, encode(&*w)?.as_slice())?;
                    }
                    changed.then_some(Health {
                        webhook_id: w.id,
                        consecutive_failures: w.consecutive_failures,
                        warning: w.consecutive_failures >= warning_threshold,
                    })
                }
                None => None,
            }
        };
        Ok(health)
    }

    // ----- the attempt log -----

    /// Attempts matching `filter`, newest first, older than `before` when given,
    /// at most `limit`: one range scan of the attempt index, then one lookup each
    /// (without a webhook, type or outcome filter: one range scan of the log itself).
    pub fn list_attempts(
        &self,
        filter: &AttemptFilter,
        before: Option<AttemptId>,
        limit: usize,
    ) -> Result<Vec<Attempt>> {
        let txn = self.read()?;
        let index = txn.open_table(ATTEMPT_INDEX)?;
        let attempts = txn.open_table(ATTEMPTS)?;
        let prefixes = filter.index_prefixes();
        let lo = filter.from_ms.map_or(0, |ms| AttemptId::floor_at(ms).0);
        let mut hi = filter
            .to_ms
            .map_or(u128::MAX, |ms| AttemptId::floor_at(ms.saturating_add(1)).0);
        if let Some(c) = before {
            hi = hi.min(c.0);
        }
        let mut out = Vec::with_capacity(limit.min(1000));
        if lo >= hi {
            return Ok(out);
        }
        if prefixes.is_empty() {
            for entry in attempts.range(lo..hi)?.rev().take(limit) {
                let (_, v) = entry?;
                out.push(decode::<AttemptRecord>(v.value(), "attempt")?.attempt);
            }
            return Ok(out);
        }
        for id in newest_ids(&index, &prefixes, lo, hi, limit)? {
            if let Some(v) = attempts.get(id)? {
                out.push(decode::<AttemptRecord>(v.value(), "attempt")?.attempt);
            }
        }
        Ok(out)
    }

    /// One attempt with its request (body from the event) and response.
    pub fn get_attempt(&self, id: AttemptId) -> Result<Option<AttemptDetail>> {
        let txn = self.read()?;
        let Some(record) =
            get_record::<AttemptRecord>(&txn.open_table(ATTEMPTS)?, id.0, "attempt")?
        else {
            return Ok(None);
        };
        let body = get_record::<EventRecord>(
            &txn.open_table(EVENTS)?,
            record.attempt.event_id.0,
            "event",
        )?
        .map(|e| e.payload);
        Ok(Some(AttemptDetail {
            attempt: record.attempt,
            request: RequestView {
                url: record.request.url,
                method: record.request.method,
                headers: record.request.headers,
                body,
            },
            response: record.response,
        }))
    }

    /// Records a test delivery: its event, its delivery and its one attempt, in one
    /// transaction. The webhook's health is not touched and nothing is queued.
    pub fn record_test(
        &self,
        event: &EventRecord,
        delivery: &DeliveryRecord,
        record: &AttemptRecord,
    ) -> Result<()> {
        self.insert_history(&[(event.clone(), delivery.clone(), record.clone())])
    }

    /// Stores finished deliveries as they are given (event, delivery, attempt), in one
    /// transaction, touching no webhook and no queue: for test events, imports,
    /// and for filling a log in tests and benchmarks.
    pub fn insert_history(
        &self,
        items: &[(EventRecord, DeliveryRecord, AttemptRecord)],
    ) -> Result<()> {
        let txn = self.write()?;
        {
            let mut events = txn.open_table(EVENTS)?;
            let mut deliveries = txn.open_table(DELIVERIES)?;
            for (event, delivery, _) in items {
                events.insert(event.id.0, encode(event)?.as_slice())?;
                deliveries.insert(delivery.id.0, encode(delivery)?.as_slice())?;
            }
        }
        for (_, _, record) in items {
            insert_attempt(&txn, record)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Queues a delivery for an attempt now, whatever its state (pending, succeeded,
    /// failed or cancelled). Its webhook must exist and be enabled. Also returns
    /// the due time it had (its entry in the queue until now), if any.
    pub fn redeliver(&self, id: DeliveryId, now_ms: u64) -> Result<(DeliveryRecord, Option<u64>)> {
        let txn = self.write()?;
        let delivery = {
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let mut delivery: DeliveryRecord = match deliveries.get(id.0)? {
                Some(v) => decode(v.value(), "delivery")?,
                None => return Err(Error::not_found("delivery", id)),
            };
            if delivery.test {
                return Err(Error::invalid(
                    "test_delivery",
                    "test deliveries are not redelivered; send a new test event instead",
                ));
            }
            let webhook: Option<WebhookRecord> =
                get_record(&txn.open_table(WEBHOOKS)?, delivery.webhook_id.0, "webhook")?;
            match webhook {
                None => {
                    return Err(Error::Conflict {
                        code: "webhook_deleted",
                        message: format!("webhook {} was deleted", delivery.webhook_id),
                    });
                }
                Some(w) if !w.enabled => {
                    return Err(Error::Conflict {
                        code: "webhook_disabled",
                        message: format!("webhook {} is disabled; enable it first", w.id),
                    });
                }
                Some(_) => {}
            }
            let old_due_ms = delivery.due_ms;
            requeue_at(&txn, &mut delivery, now_ms)?;
            deliveries.insert(id.0, encode(&delivery)?.as_slice())?;
            (delivery, old_due_ms)
        };
        txn.commit()?;
        Ok(delivery)
    }

    /// The given-up deliveries of a webhook, optionally narrowed by event type and by
    /// creation time (Unix ms, inclusive). With `requeue_from_ms`, they are queued
    /// again, `pace_ms` apart from that time on, so the endpoint is not flooded.
    pub fn replay_failed(
        &self,
        webhook: WebhookId,
        filter: &AttemptFilter,
        requeue: Option<(u64, u64)>,
    ) -> Result<Vec<DeliveryRecord>> {
        let txn = self.write()?;
        let chosen = {
            let lo = filter.from_ms.map_or(0, |ms| DeliveryId::floor_at(ms).0);
            let hi = filter
                .to_ms
                .map_or(u128::MAX, |ms| DeliveryId::floor_at(ms.saturating_add(1)).0);
            let failed = txn.open_table(FAILED_DELIVERIES)?;
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let mut chosen = Vec::new();
            if lo < hi {
                for entry in failed.range((webhook.0, lo)..(webhook.0, hi))? {
                    let (k, _) = entry?;
                    let id = k.value().1;
                    let Some(v) = deliveries.get(id)? else {
                        continue;
                    };
                    let d: DeliveryRecord = decode(v.value(), "delivery")?;
                    if filter
                        .event_type
                        .as_ref()
                        .is_none_or(|t| *t == d.event_type)
                    {
                        chosen.push(d);
                    }
                }
            }
            drop(failed);
            if let Some((start_ms, pace_ms)) = requeue {
                for (i, d) in chosen.iter_mut().enumerate() {
                    requeue_at(&txn, d, start_ms + i as u64 * pace_ms)?;
                    deliveries.insert(d.id.0, encode(&*d)?.as_slice())?;
                }
            }
            chosen
        };
        if requeue.is_some() {
            txn.commit()?;
        }
        Ok(chosen)
    }

    /// Removes up to `batch` attempts older than `cutoff_ms` (all of them when
    /// `cutoff_ms` is `u64::MAX`: the oldest first), with their index entries, in
    /// one transaction. Returns how many were removed and the time of the newest
    /// one removed.
    pub fn prune_attempts(&self, cutoff_ms: u64, batch: usize) -> Result<(u64, Option<u64>)> {
        let txn = self.write()?;
        let removed = {
            let mut attempts = txn.open_table(ATTEMPTS)?;
            let mut index = txn.open_table(ATTEMPT_INDEX)?;
            let cutoff = if cutoff_ms == u64::MAX {
                u128::MAX
            } else {
                AttemptId::floor_at(cutoff_ms).0
            };
            let mut doomed = Vec::new();
            for entry in attempts.range(..cutoff)?.take(batch) {
                let (_, v) = entry?;
                doomed.push(decode::<AttemptRecord>(v.value(), "attempt")?.attempt);
            }
            for a in &doomed {
                // Every mask: databases written before hold them all.
                for mask in 0..8 {
                    index.remove(index_key(a, mask))?;
                }
                attempts.remove(a.id.0)?;
            }
            (doomed.len() as u64, doomed.last().map(|a| a.id.unix_ms()))
        };
        txn.commit()?;
        Ok(removed)
    }

    /// Removes finished deliveries older than `cutoff_ms`, scanning up to `batch`
    /// of them after `after`, in one transaction. Returns `(removed, last scanned)`;
    /// `None` when there is nothing more to scan.
    pub fn prune_deliveries(
        &self,
        cutoff_ms: u64,
        batch: usize,
        after: u128,
    ) -> Result<(u64, Option<u128>)> {
        let txn = self.write()?;
        let result = {
            let cutoff = DeliveryId::floor_at(cutoff_ms).0;
            let mut deliveries = txn.open_table(DELIVERIES)?;
            let mut failed = txn.open_table(FAILED_DELIVERIES)?;
            let mut doomed = Vec::new();
            let mut last = None;
            for entry in deliveries.range(after..cutoff)?.take(batch) {
                let (k, v) = entry?;
                last = Some(k.value());
                let d: DeliveryRecord = decode(v.value(), "delivery")?;
                if d.state != DeliveryState::Pending {
                    doomed.push(d);
                }
            }
            for d in &doomed {
                deliveries.remove(d.id.0)?;
                failed.remove((d.webhook_id.0, d.id.0))?;
            }
            (doomed.len() as u64, last.map(|l| l + 1))
        };
        txn.commit()?;
        Ok(result)
    }

    /// The events that still have a delivery in the due queue (they are kept by
    /// retention however old they are).
    pub fn pending_event_ids(&self) -> Result<HashSet<u128>> {
        let txn = self.read()?;
        let due = txn.open_table(DUE)?;
        let deliveries = txn.open_table(DELIVERIES)?;
        let mut keep = HashSet::new();
        for entry in due.iter()? {
            let (k, _) = entry?;
            if let Some(v) = deliveries.get(k.value().1)? {
                keep.insert(decode::<DeliveryRecord>(v.value(), "delivery")?.event_id.0);
            }
        }
        Ok(keep)
    }

    /// Removes events older than `cutoff_ms` (and their idempotency keys), scanning
    /// up to `batch` of them after `after`, in one transaction; events in `keep`
    /// (see [`Store::pending_event_ids`]) stay. Returns `(removed, next start)`.
    pub fn prune_events(
        &self,
        cutoff_ms: u64,
        batch: usize,
        after: u128,
        keep: &HashSet<u128>,
    ) -> Result<(u64, Option<u128>)> {
        let txn = self.write()?;
        let result = {
            let cutoff = EventId::floor_at(cutoff_ms).0;
            let mut events = txn.open_table(EVENTS)?;
            let mut idem = txn.open_table(IDEMPOTENCY)?;
            let mut doomed = Vec::new();
            let mut last = None;
            for entry in events.range(after..cutoff)?.take(batch) {
                let (k, v) = entry?;
                last = Some(k.value());
                if !keep.contains(&k.value()) {
                    doomed.push(decode::<EventRecord>(v.value(), "event")?);
                }
            }
            for e in &doomed {
                events.remove(e.id.0)?;
                if let Some(key) = &e.idempotency_key {
                    idem.remove(key.as_str())?;
                }
            }
            (doomed.len() as u64, last.map(|l| l + 1))
        };
        txn.commit()?;
        Ok(result)
    }

    /// Bytes the database's pages hold (what a size cap is measured against).
    pub fn used_bytes(&self) -> Result<u64> {
        let txn = self.write()?;
        let stats = txn.stats()?;
        let used = stats.allocated_pages() * stats.page_size() as u64;
        txn.abort()?;
        Ok(used)
    }

    /// Counts of the queue and the log, for health and tests.
    pub fn pending_count(&self) -> Result<u64> {
        let txn = self.read()?;
        Ok(txn.open_table(DUE)?.len()?)
    }
}

/// Filters of the delivery log; all optional, combinable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttemptFilter {
    /// Only this webhook's attempts.
    pub webhook: Option<WebhookId>,
    /// Only this event type (a known one).
    pub event_type: Option<String>,
    /// Only successes (`true`) or failures (`false`).
    pub success: Option<bool>,
    /// From this time (Unix ms, inclusive).
    pub from_ms: Option<u64>,
    /// Up to this time (Unix ms, inclusive).
    pub to_ms: Option<u64>,
}

impl AttemptFilter {
    /// The index key prefixes `(mask, webhook, type code, outcome)` whose union
    /// is the attempts these filters match; none means the whole log.
    fn index_prefixes(&self) -> Vec<IndexPrefix> {
        let (mask, webhook) = match self.webhook {
            Some(w) => (BY_WEBHOOK, w.0),
            None if self.event_type.is_some() || self.success.is_some() => (BY_TYPE, 0),
            None => return Vec::new(),
        };
        let types = match &self.event_type {
            Some(t) => vec![type_code(t)],
            None => all_type_codes(),
        };
        let outcomes = match self.success {
            Some(s) => vec![outcome_code(s)],
            None => vec![outcome_code(false), outcome_code(true)],
        };
        types
            .iter()
            .flat_map(|&t| outcomes.iter().map(move |&o| (mask, webhook, t, o)))
            .collect()
    }
}

/// `(mask, webhook, type code, outcome)`: one range of the attempt index.
type IndexPrefix = (u8, u128, u8, u8);

/// Index keys by webhook, type and outcome (mask 7), and by type and outcome
/// (mask 6). Databases written before hold the other masks too; they are not read.
const BY_WEBHOOK: u8 = 7;
const BY_TYPE: u8 = 6;

/// Every type code an attempt can have: the catalogue's, and the one of a type
/// no longer in it.
fn all_type_codes() -> Vec<u8> {
    crate::event_types::NAMES
        .iter()
        .filter_map(|n| crate::event_types::index_code(n))
        .chain([u8::MAX])
        .collect()
}

/// The ids of the newest `limit` attempts in the union of the index ranges
/// `prefix + [lo, hi)`, newest first: a merge of the ranges, each read from its
/// newest end, so at most `limit` keys are read from each.
fn newest_ids(
    index: &impl ReadableTable<(u8, u128, u8, u8, u128), ()>,
    prefixes: &[IndexPrefix],
    lo: u128,
    hi: u128,
    limit: usize,
) -> Result<Vec<u128>> {
    let mut ranges = Vec::with_capacity(prefixes.len());
    for &(m, w, t, o) in prefixes {
        ranges.push(index.range((m, w, t, o, lo)..(m, w, t, o, hi))?.rev());
    }
    let mut heads = std::collections::BinaryHeap::with_capacity(ranges.len());
    for (i, range) in ranges.iter_mut().enumerate() {
        if let Some(entry) = range.next() {
            heads.push((entry?.0.value().4, i));
        }
    }
    let mut out = Vec::with_capacity(limit.min(1000));
    while out.len() < limit {
        let Some((id, i)) = heads.pop() else {
            break;
        };
        out.push(id);
        if let Some(entry) = ranges[i].next() {
            heads.push((entry?.0.value().4, i));
        }
    }
    Ok(out)
}

/// A compact code per event type for index keys (0 means "any"; `u8::MAX`, a
/// type not in the catalogue). Stored: see [`crate::event_types::index_code`].
fn type_code(event_type: &str) -> u8 {
    crate::event_types::index_code(event_type).unwrap_or(u8::MAX)
}

fn outcome_code(success: bool) -> u8 {
    if success { 2 } else { 1 }
}

/// The index key of an attempt for one subset `mask` of {webhook, type, outcome}.
fn index_key(a: &Attempt, mask: u8) -> (u8, u128, u8, u8, u128) {
    (
        mask,
        if mask & 1 != 0 { a.webhook_id.0 } else { 0 },
        if mask & 2 != 0 {
            type_code(&a.event_type)
        } else {
            0
        },
        if mask & 4 != 0 {
            outcome_code(a.success)
        } else {
            0
        },
        a.id.0,
    )
}

/// The webhook with its last (non-test) attempt's time and status from the log,
/// when that is newer than what the record holds (the record is rewritten only
/// when its failure count changes).
fn with_last_attempt(
    mut webhook: WebhookRecord,
    index: &impl ReadableTable<(u8, u128, u8, u8, u128), ()>,
    attempts: &impl ReadableTable<u128, &'static [u8]>,
) -> Result<WebhookRecord> {
    // Test attempts are few; looking back this far finds a real one if any is near.
    const LOOK_BACK: usize = 64;
    let filter = AttemptFilter {
        webhook: Some(webhook.id),
        ..AttemptFilter::default()
    };
    for id in newest_ids(index, &filter.index_prefixes(), 0, u128::MAX, LOOK_BACK)? {
        let Some(v) = attempts.get(id)? else {
            continue;
        };
        let a = decode::<AttemptRecord>(v.value(), "attempt")?.attempt;
        if a.test {
            continue;
        }
        if webhook.last_attempt_at.is_none_or(|t| a.timestamp > t) {
            webhook.last_attempt_at = Some(a.timestamp);
            webhook.last_status_code = a.status_code;
        }
        break;
    }
    Ok(webhook)
}

/// Stores an attempt and its index entries.
fn insert_attempt(txn: &WriteTransaction, record: &AttemptRecord) -> Result<()> {
    insert_attempt_encoded(
        &mut Logged::plain(txn.open_table(ATTEMPTS)?),
        &mut Logged::plain(txn.open_table(ATTEMPT_INDEX)?),
        &record.attempt,
        &encode(record)?,
    )
}

/// Stores an attempt, encoded, and its index entries.
fn insert_attempt_encoded(
    attempts: &mut Logged<'_, u128, &'static [u8]>,
    index: &mut Logged<'_, (u8, u128, u8, u8, u128), ()>,
    attempt: &Attempt,
    encoded: &[u8],
) -> Result<()> {
    attempts.insert(attempt.id.0, encoded)?;
    // The unfiltered log is the attempts table itself (ids are time-ordered).
    for mask in [BY_WEBHOOK, BY_TYPE] {
        index.insert(index_key(attempt, mask), ())?;
    }
    Ok(())
}

/// Puts a delivery back in the due queue, due at `due_ms`.
fn requeue_at(txn: &WriteTransaction, delivery: &mut DeliveryRecord, due_ms: u64) -> Result<()> {
    let mut due = txn.open_table(DUE)?;
    if let Some(old) = delivery.due_ms.take() {
        due.remove((old, delivery.id.0))?;
    }
    if delivery.state == DeliveryState::Failed {
        txn.open_table(FAILED_DELIVERIES)?
            .remove((delivery.webhook_id.0, delivery.id.0))?;
    }
    due.insert((due_ms, delivery.id.0), delivery.webhook_id.0)?;
    delivery.due_ms = Some(due_ms);
    delivery.state = DeliveryState::Pending;
    Ok(())
}

/// Removes a webhook's deliveries from the due queue and marks them cancelled.
fn cancel_pending(txn: &WriteTransaction, webhook: WebhookId) -> Result<()> {
    let mut due = txn.open_table(DUE)?;
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let mut doomed = Vec::new();
    for entry in due.iter()? {
        let (k, v) = entry?;
        if v.value() == webhook.0 {
            doomed.push(k.value());
        }
    }
    let mut failed = txn.open_table(FAILED_DELIVERIES)?;
    let given_up: Vec<(u128, u128)> = failed
        .range((webhook.0, 0)..=(webhook.0, u128::MAX))?
        .map(|e| e.map(|(k, _)| k.value()))
        .collect::<std::result::Result<_, _>>()?;
    for key in given_up {
        failed.remove(key)?;
    }
    for key in doomed {
        due.remove(key)?;
        let found: Option<DeliveryRecord> = get_record(&deliveries, key.1, "delivery")?;
        if let Some(mut d) = found {
            d.state = DeliveryState::Cancelled;
            d.due_ms = None;
            deliveries.insert(key.1, encode(&d)?.as_slice())?;
        }
    }
    Ok(())
}

/// The envelope posted to webhooks; `data_json` is embedded byte for byte.
pub(crate) fn envelope(
    id: EventId,
    event_type: &str,
    at: DateTime<Utc>,
    data_json: &str,
) -> Result<String> {
    let ty = serde_json::to_string(event_type).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(format!(
        r#"{{"id":"{id}","type":{ty},"created_at":"{}","data":{data_json}}}"#,
        rfc3339(at)
    ))
}

/// RFC 3339 in UTC with milliseconds and a `Z`.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(at: DateTime<Utc>) -> u64 {
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
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::RequestRecord;

    /// A finished attempt to `wh` at `at_ms` (ids made at that time).
    /// The webhook the store's tests subscribe: `message.created`, enabled.
    pub(crate) fn crm_webhook() -> WebhookRecord {
        WebhookRecord::new(
            "https://crm.office.lan/hooks".into(),
            crate::Secret::new("a-verify-token"),
            vec!["message.created".into()],
            true,
        )
    }

    pub(crate) fn attempt(
        wh: WebhookId,
        at_ms: u64,
        ty: &str,
        success: bool,
        n: u64,
    ) -> AttemptRecord {
        let at = DateTime::from_timestamp_millis(at_ms as i64).expect("time");
        AttemptRecord {
            attempt: Attempt {
                id: AttemptId::at_unix_ms(at_ms),
                delivery_id: DeliveryId::at_unix_ms(at_ms),
                webhook_id: wh,
                event_id: EventId::at_unix_ms(at_ms),
                event_type: ty.to_owned(),
                attempt: 1,
                timestamp: at,
                success,
                status_code: Some(if success { 200 } else { 500 }),
                response_time_ms: n,
                error: None,
                error_class: None,
                test: false,
                next_retry_at: None,
            },
            request: RequestRecord {
                url: "https://example.test/hook".into(),
                method: "POST".into(),
                headers: BTreeMap::new(),
            },
            response: None,
        }
    }

    /// A new data directory, the database and its write-ahead log are made
    /// for the owner only, whatever the umask (the test's is the usual 022),
    /// and a reopen (after a storage error) keeps them so.
    #[cfg(unix)]
    #[test]
    fn a_new_database_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        let tmp = tempfile::tempdir().expect("dir");
        let data = tmp.path().join("data");
        let path = data.join("orki-webhooks.redb");
        let store = Store::open(&path).expect("open");
        store.credentials().expect("credentials written");
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&wal::path_for(&path)), 0o600);
        drop(store);
        let store = Store::open(&path).expect("open again");
        drop(store);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&wal::path_for(&path)), 0o600);
    }

    /// One redo operation: table, put (with a value) or delete.
    fn redo_op(table: u8, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
        let mut out = vec![
            table,
            if value.is_some() {
                REDO_PUT
            } else {
                REDO_DELETE
            },
        ];
        put_bytes(&mut out, key);
        if let Some(v) = value {
            put_bytes(&mut out, v);
        }
        out
    }

    /// Found by `fuzz/` (wal_replay): a record with a right CRC whose key or
    /// value is not of its table's type panicked in redb's `from_bytes`
    /// (opening the database would fail with a panic, not an error). Each is
    /// now a clear `Corrupt` error; well-formed records still apply.
    #[test]
    fn a_well_framed_record_of_the_wrong_shape_is_an_error_not_a_panic() {
        let id = 7u128.to_le_bytes();
        let due = [&5u64.to_le_bytes()[..], &id].concat();
        let bad: Vec<(&str, Vec<u8>)> = vec![
            ("an event key of 3 bytes", redo_op(1, b"abc", Some(b"{}"))),
            ("a delivery key of 17 bytes", redo_op(2, &[0; 17], None)),
            ("a due key of 16 bytes", redo_op(3, &id, Some(&id))),
            ("a due value of 3 bytes", redo_op(3, &due, Some(b"abc"))),
            ("an index key of 0 bytes", redo_op(5, b"", Some(b""))),
            (
                "an index value that is not ()",
                redo_op(5, &[0; 35], Some(b"x")),
            ),
            (
                "an idempotency key not UTF-8",
                redo_op(7, b"\xff\xfe", Some(b"{}")),
            ),
            ("a failed key of 31 bytes", redo_op(8, &[0; 31], None)),
        ];
        for (what, payload) in bad {
            let log = wal::record(1, &payload).expect("record");
            let err = replay_log_bytes(&log).expect_err(what);
            assert!(
                matches!(&err, Error::Corrupt(m) if m.contains("write-ahead record")),
                "{what}: {err}"
            );
        }
        // The input libFuzzer found (minimized; also a seed in fuzz/seeds/):
        // a key or value of the wrong width for its table.
        let found = include_bytes!("../../../../fuzz/seeds/wal_replay/found_due_value_width");
        let err = replay_log_bytes(&wal::record(1, found).expect("record")).expect_err("found");
        assert!(matches!(err, Error::Corrupt(_)), "{err}");
        // Well-formed records of every fixed-width table apply.
        let good = [
            redo_op(3, &due, Some(&id)),
            redo_op(5, &[0; 35], Some(b"")),
            redo_op(8, &[0; 32], Some(b"")),
            redo_op(7, "order-1".as_bytes(), None),
        ]
        .concat();
        assert_eq!(
            replay_log_bytes(&wal::record(1, &good).expect("record")).expect("applies"),
            1
        );
        // A record whose value does not decode is an error too (the codec's).
        let event = redo_op(1, &id, Some(&[0x01, 0x02]));
        let err =
            replay_log_bytes(&wal::record(1, &event).expect("record")).expect_err("bad event");
        assert!(matches!(err, Error::Corrupt(_)), "{err}");
    }

    /// Every combination of filters, paged with a cursor, gives exactly the
    /// matching attempts, newest first, as a plain scan of all of them does.
    #[test]
    fn every_filter_combination_pages_exactly_like_a_full_scan() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("t.redb")).expect("open");
        let webhooks: Vec<WebhookId> = (0..3).map(|_| WebhookId::generate()).collect();
        let types = crate::event_types::NAMES;
        let mut all = Vec::new();
        let txn = store.write().expect("txn");
        for n in 0..400u64 {
            // A fixed, uneven spread over webhooks, types, outcomes and time.
            let r = attempt(
                webhooks[(n * 7 % 3) as usize],
                1_700_000_000_000 + n * 1000 + (n * 37 % 11),
                types[(n * 5 % types.len() as u64) as usize],
                n % 4 != 0,
                n,
            );
            insert_attempt(&txn, &r).expect("insert");
            all.push(r.attempt);
        }
        txn.commit().expect("commit");
        all.sort_by_key(|a| std::cmp::Reverse(a.id.0));

        let mut checked = 0;
        for mask in 0..8u8 {
            for range in [None, Some((1_700_000_050_000, 1_700_000_300_000))] {
                let filter = AttemptFilter {
                    webhook: (mask & 1 != 0).then_some(webhooks[1]),
                    event_type: (mask & 2 != 0).then(|| types[2].to_owned()),
                    success: (mask & 4 != 0).then_some(false),
                    from_ms: range.map(|r| r.0),
                    to_ms: range.map(|r| r.1),
                };
                let expected: Vec<u128> = all
                    .iter()
                    .filter(|a| filter.webhook.is_none_or(|w| a.webhook_id == w))
                    .filter(|a| {
                        filter
                            .event_type
                            .as_ref()
                            .is_none_or(|t| a.event_type == *t)
                    })
                    .filter(|a| filter.success.is_none_or(|s| a.success == s))
                    .filter(|a| filter.from_ms.is_none_or(|f| a.id.unix_ms() >= f))
                    .filter(|a| filter.to_ms.is_none_or(|t| a.id.unix_ms() <= t))
                    .map(|a| a.id.0)
                    .collect();
                let mut got = Vec::new();
                let mut cursor = None;
                loop {
                    let page = store.list_attempts(&filter, cursor, 7).expect("page");
                    got.extend(page.iter().map(|a| a.id.0));
                    if page.len() < 7 {
                        break;
                    }
                    cursor = page.last().map(|a| a.id);
                }
                assert!(!expected.is_empty(), "{filter:?} matches something");
                assert_eq!(got, expected, "{filter:?}");
                checked += 1;
            }
        }
        assert_eq!(checked, 16);
    }
    /// A database written before the compact form (every record JSON) reads
    /// as before, and a pending delivery in it is recorded in the new form.
    #[test]
    fn a_database_of_json_records_reads_and_updates() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("t.redb")).expect("open");
        let now = Utc::now();
        let new = NewEvent::new("order.paid", r#"{"n":1}"#, None, now).expect("event");
        let event = (*new.event).clone();
        let webhook = WebhookId::generate();
        let delivery = DeliveryRecord {
            id: DeliveryId::generate(),
            event_id: event.id,
            webhook_id: webhook,
            event_type: event.event_type.clone(),
            created_at: now,
            attempts: 1,
            state: DeliveryState::Pending,
            due_ms: Some(unix_ms(now)),
            test: false,
        };
        let mut old = attempt(webhook, unix_ms(now), "order.paid", false, 7);
        old.attempt.delivery_id = delivery.id;
        old.attempt.event_id = event.id;
        let txn = store.write().expect("write");
        {
            let mut t = HotTables::open(&txn, false).expect("tables");
            t.events
                .insert(event.id.0, json(&event).as_slice())
                .expect("event");
            t.deliveries
                .insert(delivery.id.0, json(&delivery).as_slice())
                .expect("delivery");
            t.due
                .insert((unix_ms(now), delivery.id.0), webhook.0)
                .expect("due");
            insert_attempt_encoded(&mut t.attempts, &mut t.index, &old.attempt, &json(&old))
                .expect("attempt");
        }
        txn.commit().expect("commit");

        let listed = store
            .list_attempts(
                &AttemptFilter {
                    webhook: Some(webhook),
                    ..AttemptFilter::default()
                },
                None,
                10,
            )
            .expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, old.attempt.id);
        let detail = store
            .get_attempt(old.attempt.id)
            .expect("detail")
            .expect("found");
        assert_eq!(detail.request.body.as_deref(), Some(event.payload.as_str()));
        assert_eq!(detail.request.url, old.request.url);
        let job = store.load_job(delivery.id).expect("load").expect("found");
        assert_eq!(job.event.payload, event.payload);
        assert_eq!(job.delivery.due_ms, delivery.due_ms);

        // The second attempt succeeds: the delivery is rewritten, compact.
        let mut next = old.clone();
        next.attempt.id = AttemptId::generate();
        next.attempt.attempt = 2;
        next.attempt.success = true;
        let txn = store.write().expect("write");
        {
            let mut t = HotTables::open(&txn, false).expect("tables");
            let encoded = encode(&next).expect("encode");
            Store::record_attempt_in(&mut t, &next, &encoded, None, 5).expect("record");
        }
        txn.commit().expect("commit");
        let stored = store.read().expect("read");
        let bytes = stored
            .open_table(DELIVERIES)
            .expect("table")
            .get(delivery.id.0)
            .expect("get")
            .expect("found")
            .value()
            .to_vec();
        assert_ne!(
            bytes[0], b'{',
            "the delivery was rewritten in the compact form"
        );
        let job = store.load_job(delivery.id).expect("load").expect("found");
        assert_eq!(job.delivery.state, DeliveryState::Succeeded);
        assert_eq!(job.delivery.attempts, 2);
        assert_eq!(job.delivery.created_at, now, "the time survives exactly");
        let newest = store
            .list_attempts(&AttemptFilter::default(), None, 10)
            .expect("list");
        assert_eq!(
            newest.iter().map(|a| a.attempt).collect::<Vec<_>>(),
            [2, 1],
            "both forms side by side in the log"
        );
    }

    /// A reload reads the earliest due entries with what their attempts send:
    /// each event once, the attempt number from the delivery; not for a
    /// delivery the queue already knows, nor for one whose record disagrees
    /// with its entry.
    #[test]
    fn a_reload_reads_each_event_once_and_skips_what_the_queue_knows() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("t.redb")).expect("open");
        let now = Utc::now();
        let event = NewEvent::new("order.paid", r#"{"n":1}"#, None, now)
            .expect("event")
            .event;
        let due = unix_ms(now);
        let delivery = |attempts: u32, due_ms: Option<u64>| DeliveryRecord {
            id: DeliveryId::generate(),
            event_id: event.id,
            webhook_id: WebhookId::generate(),
            event_type: event.event_type.clone(),
            created_at: now,
            attempts,
            state: DeliveryState::Pending,
            due_ms,
            test: false,
        };
        // Due in this order: fresh, retried twice, known to the queue, and one
        // whose record no longer says it is due then.
        let all = [
            delivery(0, Some(due)),
            delivery(2, Some(due + 1)),
            delivery(0, Some(due + 2)),
            delivery(1, Some(due + 99)),
        ];
        let txn = store.write().expect("write");
        {
            let mut t = HotTables::open(&txn, false).expect("tables");
            t.events
                .insert(event.id.0, encode(&*event).expect("encode").as_slice())
                .expect("event");
            for (n, d) in all.iter().enumerate() {
                t.deliveries
                    .insert(d.id.0, encode(d).expect("encode").as_slice())
                    .expect("delivery");
                t.due
                    .insert((due + n as u64, d.id.0), d.webhook_id.0)
                    .expect("due");
            }
        }
        txn.commit().expect("commit");

        let plan = ReloadPlan {
            limit: 10,
            known: HashSet::from([all[2].id]),
        };
        let (jobs, complete) = store.due_jobs(&plan).expect("read");
        assert!(complete);
        let ids: Vec<DeliveryId> = jobs.iter().map(|j| j.delivery_id).collect();
        assert_eq!(ids, all.iter().map(|d| d.id).collect::<Vec<_>>());
        let attempts: Vec<Option<u32>> = jobs
            .iter()
            .map(|j| j.known.as_ref().map(|k| k.attempt))
            .collect();
        assert_eq!(attempts, [Some(1), Some(3), None, None]);
        let (a, b) = (
            jobs[0].known.as_ref().expect("known"),
            jobs[1].known.as_ref().expect("known"),
        );
        assert!(Arc::ptr_eq(&a.event, &b.event), "the event is read once");
        assert_eq!(a.event.payload, event.payload);

        let (first, complete) = store
            .due_jobs(&ReloadPlan {
                limit: 2,
                known: HashSet::new(),
            })
            .expect("read");
        assert_eq!(first.len(), 2);
        assert!(!complete, "the table has more");
    }

    /// The JSON form every record had before the compact one.
    fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
        serde_json::to_vec(value).expect("json")
    }
}
