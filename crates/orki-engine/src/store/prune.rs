//! Retention's side of the store: removing old attempts, deliveries and
//! events in small transactions, and the file's size.

use std::collections::HashSet;

use redb::ReadableTable;

use super::Store;
use super::attempts::index_key;
use crate::Result;
use crate::ids::{AttemptId, DeliveryId, EventId};
use crate::model::{AttemptRecord, DeliveryRecord, DeliveryState, EventRecord};
use crate::store::codec::decode;
use crate::store::tables::{
    ATTEMPT_INDEX, ATTEMPTS, DELIVERIES, DUE, EVENTS, FAILED_DELIVERIES, IDEMPOTENCY, ORDER_WAITING,
};

impl Store {
    /// Removes up to `batch` attempts older than `cutoff_ms` (all of them when
    /// `cutoff_ms` is `u64::MAX`: the oldest first), with their index entries, in
    /// one transaction. Returns how many were removed and the time of the newest
    /// one removed.
    pub(crate) fn prune_attempts(
        &self,
        cutoff_ms: u64,
        batch: usize,
    ) -> Result<(u64, Option<u64>)> {
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
    pub(crate) fn prune_deliveries(
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
    pub(crate) fn pending_event_ids(&self) -> Result<HashSet<u128>> {
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
        // And those waiting behind an earlier delivery of their ordering key.
        for entry in txn.open_table(ORDER_WAITING)?.iter()? {
            let (_, v) = entry?;
            if let Some(v) = deliveries.get(v.value())? {
                keep.insert(decode::<DeliveryRecord>(v.value(), "delivery")?.event_id.0);
            }
        }
        Ok(keep)
    }

    /// Removes events older than `cutoff_ms` (and their idempotency keys), scanning
    /// up to `batch` of them after `after`, in one transaction; events in `keep`
    /// (see [`Store::pending_event_ids`]) stay. Returns `(removed, next start)`.
    pub(crate) fn prune_events(
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
}
