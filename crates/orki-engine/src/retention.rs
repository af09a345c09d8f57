//! Retention: attempts and events older than the retention period are pruned in
//! the background, in small transactions so delivery never waits long for the
//! writer; with a size cap, the oldest attempts go first until the database fits.
//!
//! It works on a [`Context`] that `runtime` builds from the engine.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::clock::Clock;
use crate::engine::EngineEvent;
use crate::settings::Settings;
use crate::store::threads::StoreThreads;

/// Records removed per transaction.
pub(crate) const BATCH: usize = 500;
/// How often retention runs (it also runs at start).
pub(crate) const EVERY: Duration = Duration::from_secs(15 * 60);

/// What retention uses of the engine.
pub(crate) trait Services: Send + Sync + 'static {
    /// The store's calls.
    fn storage(&self) -> &StoreThreads;
    /// The settings in force (retention days, size cap).
    fn settings(&self) -> Settings;
    /// Tells live views.
    fn publish(&self, event: EngineEvent);
}

/// What retention works with: the engine's parts it uses, the clock, the
/// stop token. [`prune_once`] takes one made from the engine's handle.
pub struct Context {
    pub(crate) services: Arc<dyn Services>,
    pub(crate) clock: Clock,
    pub(crate) cancel: CancellationToken,
}

/// Runs retention at start and then every [`EVERY`] until the token is cancelled.
pub(crate) async fn run(context: Context) {
    loop {
        if let Err(e) = prune(&context).await {
            tracing::error!(error = %e, "pruning old records failed; trying again later");
        }
        tokio::select! {
            _ = context.cancel.cancelled() => break,
            _ = context.clock.sleep(EVERY) => {}
        }
    }
}

/// One retention pass now (`prune_once(&handle)`): by age, then by size.
/// Publishes what it removed; returns `(attempts, events)` removed.
pub async fn prune_once(on: impl Into<Context>) -> Result<(u64, u64)> {
    prune(&on.into()).await
}

/// One retention pass: by age, then by size. Publishes what it removed.
async fn prune(context: &Context) -> Result<(u64, u64)> {
    let (services, cancel) = (&*context.services, &context.cancel);
    let storage = services.storage();
    let settings = services.settings();
    let cutoff = context
        .clock
        .now_ms()
        .saturating_sub(u64::from(settings.retention_days) * 86_400_000);
    let (mut attempts, mut events) = prune_older_than(context, cutoff).await?;
    if let Some(cap_mb) = settings.max_database_mb {
        let cap = cap_mb.saturating_mul(1024 * 1024);
        // Freed pages are reused, so staying under the cap stops the file's growth.
        let target = cap / 10 * 9;
        while storage.used_bytes().await? > target && !cancel.is_cancelled() {
            // The oldest attempts first, then the events and deliveries as old as they.
            let (n, newest) = storage.prune_attempts(u64::MAX, BATCH).await?;
            let Some(newest) = newest else {
                tracing::warn!(
                    cap_mb,
                    "the database is over its size cap with no attempts left to prune"
                );
                break;
            };
            attempts += n;
            let (a, e) = prune_older_than(context, newest + 1).await?;
            attempts += a;
            events += e;
        }
    }
    if attempts > 0 || events > 0 {
        tracing::info!(attempts, events, "pruned old records");
        services.publish(EngineEvent::Pruned { attempts, events });
    }
    Ok((attempts, events))
}

/// Prunes attempts, finished deliveries and events older than `cutoff` (Unix ms),
/// in batches. Returns `(attempts, events)` removed.
async fn prune_older_than(context: &Context, cutoff: u64) -> Result<(u64, u64)> {
    let (storage, cancel) = (context.services.storage(), &context.cancel);
    let mut attempts = 0;
    loop {
        let (n, _) = storage.prune_attempts(cutoff, BATCH).await?;
        attempts += n;
        if (n as usize) < BATCH || cancel.is_cancelled() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let mut after = Some(0u128);
    while let Some(start) = after.filter(|_| !cancel.is_cancelled()) {
        let (_, next) = storage.prune_deliveries(cutoff, BATCH, start).await?;
        after = next;
        tokio::task::yield_now().await;
    }
    // Read once per pass, not once per batch: events with a delivery still queued.
    let keep = Arc::new(storage.pending_event_ids().await?);
    let mut events = 0;
    let mut after = Some(0u128);
    while let Some(start) = after.filter(|_| !cancel.is_cancelled()) {
        let keep = keep.clone();
        let (n, next) = storage.prune_events(cutoff, BATCH, start, keep).await?;
        events += n;
        after = next;
        tokio::task::yield_now().await;
    }
    Ok((attempts, events))
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    use super::*;
    use crate::clock::tests::within_real;
    use crate::store::Store;

    /// A real store; each pass is noted (at the clock's time) when it reads
    /// the settings, which it does once, first.
    struct Parts {
        storage: StoreThreads,
        clock: Clock,
        passes: mpsc::UnboundedSender<Instant>,
    }

    impl Services for Parts {
        fn storage(&self) -> &StoreThreads {
            &self.storage
        }
        fn settings(&self) -> Settings {
            let _ = self.passes.send(self.clock.instant());
            Settings::default()
        }
        fn publish(&self, _: EngineEvent) {}
    }

    /// Retention runs at start and then each time [`EVERY`] has passed, not
    /// before: on tokio's paused clock, which moves straight to the end of
    /// each wait (a pass takes no time on it: nothing else waits on a timer).
    #[tokio::test(start_paused = true)]
    async fn retention_runs_at_start_and_then_every_interval() {
        let clock = Clock::tokio();
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("orki.redb")).expect("open");
        let (passes, mut noted) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let started = clock.instant();
        let retention = tokio::spawn(run(Context {
            services: Arc::new(Parts {
                storage: StoreThreads::start(store, 1).expect("threads"),
                clock: clock.clone(),
                passes,
            }),
            clock,
            cancel: cancel.clone(),
        }));
        let limit = Duration::from_secs(10);
        let first = within_real(limit, "a retention pass", noted.recv())
            .await
            .expect("a pass");
        assert_eq!(first - started, Duration::ZERO, "a pass at start");
        let second = within_real(limit, "a retention pass", noted.recv())
            .await
            .expect("a pass");
        assert_eq!(second - first, EVERY, "the next pass after the interval");
        let third = within_real(limit, "a retention pass", noted.recv())
            .await
            .expect("a pass");
        assert_eq!(third - second, EVERY);
        cancel.cancel();
        retention.await.expect("retention");
    }
}
