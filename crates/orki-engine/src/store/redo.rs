//! The group commit's tables and their redo log: [`HotTables`] opens the
//! tables that ingest and attempt records write, once per batch, and each
//! [`Logged`] table notes its puts and deletes so a batch committed without
//! a sync can be made durable by the write-ahead log (and replayed).

use std::borrow::Borrow;
use std::collections::HashMap;

use redb::{Key, ReadableTable, Table, Value, WriteTransaction};

use super::HotTables;
use crate::ids::WebhookId;
use crate::store::codec::{Record, decode};
use crate::store::tables::{
    ATTEMPT_INDEX, ATTEMPTS, DELIVERIES, DUE, EVENTS, FAILED_DELIVERIES, IDEMPOTENCY, ORDER_HEADS,
    ORDER_WAITING, WEBHOOKS,
};
use crate::{Error, Result};

/// A table that can note each put and delete made through it (its redo log),
/// so that a batch committed without a sync can be made durable by logging
/// what it wrote. Reads go to the table itself (`Deref`).
pub(crate) struct Logged<'txn, K: Key + 'static, V: Value + 'static> {
    table: Table<'txn, K, V>,
    /// The table's number in redo records.
    id: u8,
    redo: Option<Vec<u8>>,
}

pub(super) const REDO_PUT: u8 = 1;
pub(super) const REDO_DELETE: u8 = 2;

impl<'txn, K: Key + 'static, V: Value + 'static> Logged<'txn, K, V> {
    fn new(table: Table<'txn, K, V>, id: u8, log: bool) -> Self {
        Self {
            table,
            id,
            redo: log.then(Vec::new),
        }
    }

    /// Writes without logging (a transaction committed durably by itself).
    pub(super) fn plain(table: Table<'txn, K, V>) -> Self {
        Self::new(table, 0, false)
    }

    /// Inserts or replaces the value under `key`.
    pub(crate) fn insert<'k, 'v>(
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
    pub(crate) fn remove<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> Result<()> {
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

pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
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
pub(super) struct Subscription {
    pub(super) id: WebhookId,
    pub(super) enabled: bool,
    pub(super) events: Vec<String>,
    #[serde(default)]
    pub(super) ordered: bool,
}

impl Record for Subscription {}

impl<'txn> HotTables<'txn> {
    /// Opens them in `txn`; drop them before committing. With `log`, every
    /// write is also noted for [`HotTables::take_redo`].
    pub(crate) fn open(txn: &'txn WriteTransaction, log: bool) -> Result<Self> {
        Ok(Self {
            events: Logged::new(txn.open_table(EVENTS)?, 1, log),
            deliveries: Logged::new(txn.open_table(DELIVERIES)?, 2, log),
            due: Logged::new(txn.open_table(DUE)?, 3, log),
            attempts: Logged::new(txn.open_table(ATTEMPTS)?, 4, log),
            index: Logged::new(txn.open_table(ATTEMPT_INDEX)?, 5, log),
            webhooks: Logged::new(txn.open_table(WEBHOOKS)?, 6, log),
            idempotency: Logged::new(txn.open_table(IDEMPOTENCY)?, 7, log),
            failed: Logged::new(txn.open_table(FAILED_DELIVERIES)?, 8, log),
            order_heads: Logged::new(txn.open_table(ORDER_HEADS)?, 9, log),
            order_waiting: Logged::new(txn.open_table(ORDER_WAITING)?, 10, log),
            subscriptions: None,
            webhooks_read: HashMap::new(),
        })
    }

    /// What was written through these tables so far (a redo record's
    /// payload), one part per table written to: writes to different tables do
    /// not depend on each other's order.
    pub(crate) fn take_redo(&mut self) -> Vec<Vec<u8>> {
        [
            &mut self.events.redo,
            &mut self.deliveries.redo,
            &mut self.due.redo,
            &mut self.attempts.redo,
            &mut self.index.redo,
            &mut self.webhooks.redo,
            &mut self.idempotency.redo,
            &mut self.failed.redo,
            &mut self.order_heads.redo,
            &mut self.order_waiting.redo,
        ]
        .into_iter()
        .flatten()
        .filter(|redo| !redo.is_empty())
        .map(std::mem::take)
        .collect()
    }

    /// Applies a redo record's payload (see [`HotTables::take_redo`]).
    pub(super) fn replay(&mut self, mut redo: &[u8]) -> Result<()> {
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
                9 => self.order_heads.apply(key, value)?,
                10 => self.order_waiting.apply(key, value)?,
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

    /// The enabled webhooks subscribed to `event_type`, and whether each is ordered.
    pub(super) fn subscribers(&mut self, event_type: &str) -> Result<Vec<(WebhookId, bool)>> {
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
            .map(|s| (s.id, s.ordered))
            .collect())
    }
}
