//! Ordered delivery per key: of the pending deliveries of one ordering key to
//! an ordered webhook, only the oldest (the head) is in the due queue; the
//! others wait in `order_waiting_v1`, in acceptance order, and nothing about
//! them is in memory. When the head is done (it succeeded, was given up or
//! skipped), the next one is put in the due queue, due now, in the same
//! transaction. So one delivery per key is in flight, across retries and
//! restarts, and an idle key costs nothing but its rows.

use redb::ReadableTable;
use sha2::{Digest, Sha256};

use super::{HotTables, Logged, Store, get_record};
use crate::ids::{DeliveryId, EventId, WebhookId};
use crate::model::{DeliveryRecord, DeliveryState, EventRecord, Ordering};
use crate::queue::QueuedJob;
use crate::store::codec::encode;
use crate::store::tables::{DELIVERIES, EVENTS, ORDER_HEADS, ORDER_WAITING};
use crate::{Error, Result};

/// The ordering key's hash, as the tables key it: two keys that collide are
/// only ordered together.
pub(crate) fn key_hash(key: &str) -> u128 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

type Heads<'t> = Logged<'t, (u128, u128), (u128, u64)>;
type Waiting<'t> = Logged<'t, (u128, u128, u64), u128>;

/// The tables that move a key's order on, borrowed from one transaction's.
pub(super) struct Chains<'a, 't> {
    pub(super) heads: &'a mut Heads<'t>,
    pub(super) waiting: &'a mut Waiting<'t>,
    pub(super) deliveries: &'a mut Logged<'t, u128, &'static [u8]>,
    pub(super) due: &'a mut Logged<'t, (u64, u128), u128>,
}

impl Chains<'_, '_> {
    /// Places a new delivery of `key` (a hash) to `webhook`: the head when its
    /// key has none pending (`true`: the caller puts it in the due queue),
    /// else waiting behind the others.
    pub(super) fn place(
        &mut self,
        webhook: WebhookId,
        key: u128,
        delivery: DeliveryId,
    ) -> Result<(Ordering, bool)> {
        let head = self.heads.get((webhook.0, key))?.map(|v| v.value());
        Ok(match head {
            None => {
                self.heads.insert((webhook.0, key), (delivery.0, 0))?;
                (Ordering { key, seq: 0 }, true)
            }
            Some((head, last)) => {
                let seq = last + 1;
                self.waiting.insert((webhook.0, key, seq), delivery.0)?;
                self.heads.insert((webhook.0, key), (head, seq))?;
                (Ordering { key, seq }, false)
            }
        })
    }

    /// `delivery` is done (it succeeded, was given up or skipped): when it was
    /// its key's head, the next one waiting becomes the head, due at
    /// `now_ms`, and is returned for the in-memory queue; when it was
    /// waiting, it leaves the line.
    pub(super) fn finished(
        &mut self,
        delivery: &DeliveryRecord,
        now_ms: u64,
    ) -> Result<Option<QueuedJob>> {
        let Some(o) = delivery.ordering else {
            return Ok(None);
        };
        let w = delivery.webhook_id.0;
        let head = self.heads.get((w, o.key))?.map(|v| v.value());
        let Some((_, last)) = head.filter(|(head, _)| *head == delivery.id.0) else {
            // Waiting (skipped), or sent again by hand after it was done: it
            // takes only its own place in the line, if it still has one.
            let mine = self.waiting.get((w, o.key, o.seq))?.map(|v| v.value());
            if mine == Some(delivery.id.0) {
                self.waiting.remove((w, o.key, o.seq))?;
            }
            return Ok(None);
        };
        loop {
            let next = self
                .waiting
                .range((w, o.key, 0)..=(w, o.key, u64::MAX))?
                .next()
                .transpose()?
                .map(|(k, v)| (k.value().2, v.value()));
            let Some((seq, id)) = next else {
                self.heads.remove((w, o.key))?;
                return Ok(None);
            };
            self.waiting.remove((w, o.key, seq))?;
            let found: Option<DeliveryRecord> = get_record(&**self.deliveries, id, "delivery")?;
            // Only a pending one goes; anything else left the line already.
            let Some(mut next) = found.filter(|d| d.state == DeliveryState::Pending) else {
                continue;
            };
            self.heads.insert((w, o.key), (id, last))?;
            next.due_ms = Some(now_ms);
            self.due.insert((now_ms, id), w)?;
            self.deliveries.insert(id, encode(&next)?.as_slice())?;
            return Ok(Some(QueuedJob {
                due_ms: now_ms,
                delivery_id: DeliveryId(id),
                webhook_id: delivery.webhook_id,
                known: None,
            }));
        }
    }
}

impl<'t> HotTables<'t> {
    pub(super) fn chains(&mut self) -> Chains<'_, 't> {
        Chains {
            heads: &mut self.order_heads,
            waiting: &mut self.order_waiting,
            deliveries: &mut self.deliveries,
            due: &mut self.due,
        }
    }
}

/// A key held back: its head has failed at least once, and what waits behind it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct HeldKey {
    /// The ordering key.
    pub ordering_key: Option<String>,
    /// The delivery that goes first (skip it to let the next one go).
    pub delivery_id: DeliveryId,
    /// Its event.
    pub event_id: EventId,
    /// Its event's type.
    pub event_type: String,
    /// Attempts made of it so far.
    pub attempts: u32,
    /// When it is tried next (`null` while its webhook is paused and it is due).
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Deliveries of the key waiting behind it.
    pub waiting: u64,
}

/// The keys of a webhook that are held back.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct HeldDeliveries {
    /// Keys whose next delivery has failed, oldest key first (at most `limit`).
    pub items: Vec<HeldKey>,
    /// Deliveries waiting behind an earlier one of their key, in all.
    pub waiting: u64,
}

impl Store {
    /// The keys of `webhook` whose head has failed at least once, with what
    /// waits behind each (at most `limit` keys), and how many wait in all.
    pub(crate) fn held_deliveries(
        &self,
        webhook: WebhookId,
        limit: usize,
    ) -> Result<HeldDeliveries> {
        let txn = self.read()?;
        let heads = txn.open_table(ORDER_HEADS)?;
        let waiting = txn.open_table(ORDER_WAITING)?;
        let deliveries = txn.open_table(DELIVERIES)?;
        let events = txn.open_table(EVENTS)?;
        let w = webhook.0;
        let mut out = HeldDeliveries {
            items: Vec::new(),
            waiting: 0,
        };
        for entry in heads.range((w, 0)..=(w, u128::MAX))? {
            let (k, v) = entry?;
            let key = k.value().1;
            let head = v.value().0;
            let behind = waiting.range((w, key, 0)..=(w, key, u64::MAX))?.count() as u64;
            out.waiting += behind;
            if out.items.len() >= limit {
                continue;
            }
            let Some(d) = get_record::<DeliveryRecord>(&deliveries, head, "delivery")? else {
                continue;
            };
            if d.attempts == 0 {
                continue;
            }
            let event = get_record::<EventRecord>(&events, d.event_id.0, "event")?;
            out.items.push(HeldKey {
                ordering_key: event.and_then(|e| e.ordering_key),
                delivery_id: d.id,
                event_id: d.event_id,
                event_type: d.event_type,
                attempts: d.attempts,
                next_attempt_at: d
                    .due_ms
                    .and_then(|ms| chrono::DateTime::from_timestamp_millis(ms as i64)),
                waiting: behind,
            });
        }
        Ok(out)
    }

    /// Gives a pending delivery up now, by hand, in the caller's transaction
    /// (the group commit): it leaves the due queue (or its key's line) and
    /// counts as given up (bulk replay finds it); the next of its key goes.
    /// Returns it, the due time it had, and the next of its key for the
    /// in-memory queue.
    pub(crate) fn skip_in(
        t: &mut HotTables<'_>,
        id: DeliveryId,
        now_ms: u64,
    ) -> Result<(DeliveryRecord, Option<u64>, Option<QueuedJob>)> {
        let found: Option<DeliveryRecord> = get_record(&*t.deliveries, id.0, "delivery")?;
        let Some(mut delivery) = found else {
            return Err(Error::not_found("delivery", id));
        };
        if delivery.state != DeliveryState::Pending || delivery.test {
            return Err(Error::Conflict {
                code: "not_pending",
                message: format!(
                    "delivery {id} is not waiting to be sent (it is {}); only a pending delivery can be skipped",
                    delivery.state.as_str()
                ),
            });
        }
        let old = delivery.due_ms.take();
        if let Some(due_ms) = old {
            t.due.remove((due_ms, id.0))?;
        }
        delivery.state = DeliveryState::Failed;
        t.failed.insert((delivery.webhook_id.0, id.0), ())?;
        t.deliveries.insert(id.0, encode(&delivery)?.as_slice())?;
        let next = t.chains().finished(&delivery, now_ms)?;
        Ok((delivery, old, next))
    }
}

/// Removes every line of `webhook` (it is disabled or deleted), marking the
/// waiting deliveries cancelled; the heads are in the due queue, which the
/// caller cancels.
pub(super) fn cancel_lines(txn: &redb::WriteTransaction, webhook: WebhookId) -> Result<()> {
    let w = webhook.0;
    let mut heads = txn.open_table(ORDER_HEADS)?;
    let mut waiting = txn.open_table(ORDER_WAITING)?;
    let mut deliveries = txn.open_table(DELIVERIES)?;
    let lines: Vec<(u128, u128)> = heads
        .range((w, 0)..=(w, u128::MAX))?
        .map(|e| e.map(|(k, _)| k.value()))
        .collect::<std::result::Result<_, _>>()?;
    for key in lines {
        heads.remove(key)?;
    }
    let doomed: Vec<((u128, u128, u64), u128)> = waiting
        .range((w, 0, 0)..=(w, u128::MAX, u64::MAX))?
        .map(|e| e.map(|(k, v)| (k.value(), v.value())))
        .collect::<std::result::Result<_, _>>()?;
    for (key, id) in doomed {
        waiting.remove(key)?;
        let found: Option<DeliveryRecord> = get_record(&deliveries, id, "delivery")?;
        if let Some(mut d) = found {
            d.state = DeliveryState::Cancelled;
            deliveries.insert(id, encode(&d)?.as_slice())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::store::tables::{DUE, FAILED_DELIVERIES};
    use crate::store::tests::{attempt, crm_webhook};
    use crate::store::{NewEvent, unix_ms};

    /// Runs `f` on the hot tables of one committed transaction.
    fn with<T>(store: &Store, f: impl FnOnce(&mut HotTables<'_>) -> T) -> T {
        let txn = store.write().expect("write");
        let out = {
            let mut t = HotTables::open(&txn, false).expect("tables");
            f(&mut t)
        };
        txn.commit().expect("commit");
        out
    }

    /// Accepts a `message.created` event with `key`; its delivery and
    /// whether it went into the due queue.
    fn post(store: &Store, key: Option<&str>) -> (DeliveryId, bool) {
        let new = NewEvent::keyed(
            "message.created",
            "{}",
            None,
            key.map(str::to_owned),
            Utc::now(),
        )
        .expect("event");
        with(store, |t| {
            let (_, jobs) = Store::ingest_in(t, new).expect("ingest");
            let event = jobs.first().map(|j| j.delivery_id);
            let delivery = event.unwrap_or_else(|| {
                // Waiting: the newest delivery of the key's line.
                let last = t
                    .order_waiting
                    .iter()
                    .expect("iter")
                    .map(|e| e.expect("entry").1.value())
                    .max()
                    .expect("waiting");
                DeliveryId(last)
            });
            (delivery, !jobs.is_empty())
        })
    }

    /// Records an attempt of `d`: `retry` keeps it pending; the next of its key.
    fn finish(store: &Store, d: DeliveryId, success: bool, retry: bool) -> Option<QueuedJob> {
        let delivery = store.load_job(d).expect("load").expect("found");
        let now = unix_ms(Utc::now());
        let mut a = attempt(
            delivery.delivery.webhook_id,
            now,
            "message.created",
            success,
            3,
        );
        a.attempt.delivery_id = d;
        a.attempt.event_id = delivery.event.id;
        let encoded = encode(&a).expect("encode");
        let next_due = retry.then_some(now + 60_000);
        with(store, |t| {
            Store::record_attempt_in(t, &a, &encoded, next_due, 5)
                .expect("record")
                .next
        })
    }

    fn state(store: &Store, d: DeliveryId) -> (DeliveryState, Option<u64>) {
        let j = store.load_job(d).expect("load").expect("found");
        (j.delivery.state, j.delivery.due_ms)
    }

    fn due_count(store: &Store) -> u64 {
        use redb::ReadableTableMetadata;
        store
            .read()
            .expect("read")
            .open_table(DUE)
            .expect("due")
            .len()
            .expect("len")
    }

    /// Of a key's pending deliveries only the oldest is due; it holds the
    /// others through a retry, and success, skipping or giving up lets the
    /// next go, due now; other keys and unkeyed events are not held; a
    /// waiting one cannot be redelivered past its line; a delivery sent
    /// again after it was done leaves the line as it is; disabling cancels
    /// every line.
    #[test]
    fn one_delivery_per_key_is_due_and_the_next_goes_when_it_is_done() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("orki.redb")).expect("open");
        let mut hook = crm_webhook();
        hook.controls.ordered = true;
        store.insert_webhook(&hook).expect("webhook");
        let first = post(&store, Some("chat-1"));
        let second = post(&store, Some("chat-1"));
        let third = post(&store, Some("chat-1"));
        let other = post(&store, Some("chat-2"));
        let plain = post(&store, None);
        assert!(first.1 && other.1 && plain.1, "heads and unkeyed are due");
        assert!(!second.1 && !third.1, "later ones of a key wait");
        assert_eq!(due_count(&store), 3);
        assert_eq!(store.pending_count().expect("count"), 5);
        assert_eq!(
            store.pending_by_webhook(Some(hook.id)).expect("pending")[&hook.id],
            5
        );
        assert_eq!(state(&store, second.0), (DeliveryState::Pending, None));

        // A failure with a retry holds the key; others go on.
        assert!(finish(&store, first.0, false, true).is_none());
        assert!(finish(&store, other.0, true, false).is_none());
        let held = store.held_deliveries(hook.id, 10).expect("held");
        assert_eq!(held.waiting, 2);
        assert_eq!(held.items.len(), 1);
        assert_eq!(held.items[0].ordering_key.as_deref(), Some("chat-1"));
        assert_eq!(held.items[0].delivery_id, first.0);
        assert_eq!(held.items[0].waiting, 2);
        let Err(Error::Conflict { code, .. }) = store.redeliver(second.0, 1) else {
            panic!("a waiting delivery was redelivered past its line");
        };
        assert_eq!(code, "delivery_held");

        // Success: the second is due now.
        let next = finish(&store, first.0, true, false).expect("the next goes");
        assert_eq!(next.delivery_id, second.0);
        let second_due = next.due_ms;
        assert_eq!(
            state(&store, second.0),
            (DeliveryState::Pending, Some(second_due))
        );
        // Skipped by hand: given up, and the third is due.
        let now = unix_ms(Utc::now());
        let (skipped, old_due, next) =
            with(&store, |t| Store::skip_in(t, second.0, now)).expect("skip");
        assert_eq!(skipped.state, DeliveryState::Failed);
        assert_eq!(old_due, Some(second_due), "the due time it had");
        assert_eq!(next.expect("the next goes").delivery_id, third.0);
        let failed = store.read().expect("read");
        let failed = failed.open_table(FAILED_DELIVERIES).expect("failed");
        assert!(failed.get((hook.id.0, second.0.0)).expect("get").is_some());
        drop(failed);
        let Err(Error::Conflict { code, .. }) = with(&store, |t| Store::skip_in(t, second.0, now))
        else {
            panic!("skipped twice");
        };
        assert_eq!(code, "not_pending");
        // Given up after its last retry: the line is empty, and a new event
        // of the key is due at once.
        assert!(finish(&store, third.0, false, false).is_none());
        assert_eq!(state(&store, third.0).0, DeliveryState::Failed);
        let fresh = post(&store, Some("chat-1"));
        assert!(fresh.1, "a key with nothing pending goes at once");
        let behind = post(&store, Some("chat-1"));
        assert!(!behind.1);

        // The skipped one sent again by hand (it had the place `behind` has
        // now) is not in the line: its success leaves `behind` waiting.
        store.redeliver(second.0, now).expect("redeliver");
        assert!(finish(&store, second.0, true, false).is_none());
        assert_eq!(state(&store, behind.0), (DeliveryState::Pending, None));
        assert_eq!(store.held_deliveries(hook.id, 10).expect("held").waiting, 1);

        // Disabling cancels the lines with the queue.
        store
            .update_webhook(hook.id, |w| {
                w.enabled = false;
                Ok(())
            })
            .expect("disable");
        assert_eq!(store.pending_count().expect("count"), 0);
        assert_eq!(state(&store, behind.0).0, DeliveryState::Cancelled);
        let read = store.read().expect("read");
        assert!(
            read.open_table(ORDER_HEADS)
                .expect("heads")
                .first()
                .expect("first")
                .is_none()
        );
    }
}
