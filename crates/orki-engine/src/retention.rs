//! Retention: attempts and events older than the retention period are pruned in
//! the background, in small transactions so delivery never waits long for the
//! writer; with a size cap, the oldest attempts go first until the database fits.

use std::time::Duration;

use chrono::Utc;

use crate::Result;
use crate::engine::{EngineEvent, EngineHandle};
use crate::store::unix_ms;

/// Records removed per transaction.
pub const BATCH: usize = 500;
/// How often retention runs (it also runs at start).
pub const EVERY: Duration = Duration::from_secs(15 * 60);

/// Runs retention at start and then every [`EVERY`] until the engine stops.
pub(crate) async fn run(engine: EngineHandle) {
    let cancel = engine.inner.cancel.clone();
    loop {
        if let Err(e) = prune_once(&engine).await {
            tracing::error!(error = %e, "pruning old records failed; trying again later");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// One retention pass: by age, then by size. Publishes what it removed.
pub async fn prune_once(engine: &EngineHandle) -> Result<(u64, u64)> {
    let settings = engine.settings();
    let cutoff =
        unix_ms(Utc::now()).saturating_sub(u64::from(settings.retention_days) * 86_400_000);
    let cancel = engine.inner.cancel.clone();
    let (mut attempts, mut events) = prune_older_than(engine, cutoff).await?;
    if let Some(cap_mb) = settings.max_database_mb {
        let cap = cap_mb.saturating_mul(1024 * 1024);
        // Freed pages are reused, so staying under the cap stops the file's growth.
        let target = cap / 10 * 9;
        while engine.storage().used_bytes().await? > target && !cancel.is_cancelled() {
            // The oldest attempts first, then the events and deliveries as old as they.
            let (n, newest) = engine.storage().prune_attempts(u64::MAX, BATCH).await?;
            let Some(newest) = newest else {
                tracing::warn!(
                    cap_mb,
                    "the database is over its size cap with no attempts left to prune"
                );
                break;
            };
            attempts += n;
            let (a, e) = prune_older_than(engine, newest + 1).await?;
            attempts += a;
            events += e;
        }
    }
    if attempts > 0 || events > 0 {
        tracing::info!(attempts, events, "pruned old records");
        engine.publish(EngineEvent::Pruned { attempts, events });
    }
    Ok((attempts, events))
}

/// Prunes attempts, finished deliveries and events older than `cutoff` (Unix ms),
/// in batches. Returns `(attempts, events)` removed.
async fn prune_older_than(engine: &EngineHandle, cutoff: u64) -> Result<(u64, u64)> {
    let cancel = engine.inner.cancel.clone();
    let mut attempts = 0;
    loop {
        let (n, _) = engine.storage().prune_attempts(cutoff, BATCH).await?;
        attempts += n;
        if (n as usize) < BATCH || cancel.is_cancelled() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let mut after = Some(0u128);
    while let Some(start) = after.filter(|_| !cancel.is_cancelled()) {
        let (_, next) = engine
            .storage()
            .prune_deliveries(cutoff, BATCH, start)
            .await?;
        after = next;
        tokio::task::yield_now().await;
    }
    // Read once per pass, not once per batch: events with a delivery still queued.
    let keep = std::sync::Arc::new(engine.storage().pending_event_ids().await?);
    let mut events = 0;
    let mut after = Some(0u128);
    while let Some(start) = after.filter(|_| !cancel.is_cancelled()) {
        let keep = keep.clone();
        let (n, next) = engine
            .storage()
            .prune_events(cutoff, BATCH, start, keep)
            .await?;
        events += n;
        after = next;
        tokio::task::yield_now().await;
    }
    Ok((attempts, events))
}
