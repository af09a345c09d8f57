//! Every redb table of the database, in one place, with versioned names.
//!
//! Values are bytes written by [`crate::store::codec`]; keys are native redb types so
//! that ranges are ordered: ids are UUIDv7 (`u128`), time-ordered.

use redb::TableDefinition;

/// Small string settings: secrets, schema version.
pub(crate) const META: TableDefinition<&str, &str> = TableDefinition::new("meta_v1");
/// `webhook id → Webhook record`.
pub(crate) const WEBHOOKS: TableDefinition<u128, &[u8]> = TableDefinition::new("webhooks_v1");
/// `event id → Event record` (with the exact envelope bytes that are signed and sent).
pub(crate) const EVENTS: TableDefinition<u128, &[u8]> = TableDefinition::new("events_v1");
/// `delivery id → Delivery record` (one per event and webhook).
pub(crate) const DELIVERIES: TableDefinition<u128, &[u8]> = TableDefinition::new("deliveries_v1");
/// The due queue: `(due unix ms, delivery id) → webhook id`. A delivery stays here
/// until an attempt succeeds or it is given up, so a crash mid-attempt retries it.
pub(crate) const DUE: TableDefinition<(u64, u128), u128> = TableDefinition::new("due_v1");
/// `attempt id → Attempt record`; ids are time-ordered, so iteration is the log order.
pub(crate) const ATTEMPTS: TableDefinition<u128, &[u8]> = TableDefinition::new("attempts_v1");
/// `Idempotency-Key → IdempotencyRecord` (the first result for that key).
pub(crate) const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency_v1");
/// The delivery-log index: `(mask, webhook, type code, outcome, attempt id) → ()`,
/// the type code from [`crate::event_types::index_code`], the outcome 1 for a
/// failure and 2 for a success (both stored: never renumbered).
/// Every attempt has two entries: by webhook, type and outcome (mask 7), and by
/// type and outcome (mask 6; webhook 0). A query reads the ranges its filters
/// leave open (e.g. a webhook filter: every type × both outcomes) newest first
/// and merges them, bounded by time through the time-ordered attempt id; with no
/// filter it reads `attempts_v1` itself. (Databases written before this hold
/// entries of the other masks 0–5; they are never read, and pruned with their
/// attempts.)
pub(crate) const ATTEMPT_INDEX: TableDefinition<(u8, u128, u8, u8, u128), ()> =
    TableDefinition::new("attempt_index_v1");
/// Deliveries given up after their last retry: `(webhook id, delivery id) → ()`,
/// for bulk replay.
pub(crate) const FAILED_DELIVERIES: TableDefinition<(u128, u128), ()> =
    TableDefinition::new("failed_deliveries_v1");
/// Ordered delivery: per webhook and ordering key (its hash), the delivery in
/// the due queue (the only one of its key) and the last number given to one:
/// `(webhook id, key) → (delivery id, last seq)`. Absent when none is pending.
pub(crate) const ORDER_HEADS: TableDefinition<(u128, u128), (u128, u64)> =
    TableDefinition::new("order_heads_v1");
/// The deliveries waiting behind their key's head, in acceptance order:
/// `(webhook id, key, seq) → delivery id`. They are not in the due queue.
pub(crate) const ORDER_WAITING: TableDefinition<(u128, u128, u64), u128> =
    TableDefinition::new("order_waiting_v1");
