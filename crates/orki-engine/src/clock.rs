//! The one source of time for the scheduler, retry timing, retention and the
//! write-ahead log's idle checkpoint: the wall clock (Unix ms, for due times
//! and records) and monotonic waits.
//!
//! The engine runs on [`Clock::System`]: the system's wall clock and tokio's
//! timers. [`Clock::tokio`] reads everything from tokio's clock instead, the
//! wall clock included, so that a test under a paused clock
//! (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`) moves due
//! times, timers and the writer thread's checkpoint interval together instead
//! of waiting for them in real time.
//!
//! A read costs a `match` and the clock it names: no allocation, no lock
//! (the driven clock's reads take tokio's own lock; it runs in tests only).
//!
//! The two clocks part when the machine sleeps (the monotonic clock stops,
//! the wall clock does not) or the wall clock is set: no wait is ever longer
//! than [`MAX_WAIT`], so a due time passed that way is seen within it. The
//! driven clock's wall time can be moved alone ([`Clock::jump_wall`]) to test
//! that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::sync::Locked;

/// The longest a worker waits for a wall-clock time on the monotonic clock:
/// how late a due time passed during sleep or by a clock jump is seen, and
/// so the most often an idle engine with work queued for later wakes up.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(1);

/// Where the engine's workers read time (see the module docs).
#[derive(Clone, Debug, Default)]
pub(crate) enum Clock {
    /// The system's wall clock; tokio's timers and `Instant` for waits.
    #[default]
    System,
    // Only tests drive the engine on tokio's clock so far.
    #[cfg_attr(not(test), allow(dead_code))]
    /// Tokio's clock for everything (see [`Clock::tokio`]).
    Tokio(Arc<Driven>),
}

impl Clock {
    /// A clock that reads tokio's clock of the current runtime, wall time
    /// included (it starts at the system's wall time now and moves with
    /// tokio's `Instant`). Threads outside the runtime (the group commit's
    /// writer) read and wait on it too. Panics outside a tokio runtime.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn tokio() -> Self {
        let runtime = Handle::current();
        let start = Instant::now();
        Clock::Tokio(Arc::new(Driven {
            runtime,
            start,
            start_ms: u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0),
            jumped_ms: AtomicU64::new(0),
            waits: Mutex::new(Waits::default()),
            changed: Condvar::new(),
        }))
    }

    /// Milliseconds since the Unix epoch, now.
    pub(crate) fn now_ms(&self) -> u64 {
        match self {
            Clock::System => u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0),
            Clock::Tokio(d) => {
                d.start_ms
                    + d.jumped_ms.load(Ordering::Acquire)
                    + millis(d.instant().duration_since(d.start))
            }
        }
    }

    /// Moves the driven clock's wall time ahead by `by` without moving its
    /// monotonic time, as a resume from sleep or a clock set does. No-op on
    /// the system clock.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn jump_wall(&self, by: Duration) {
        if let Clock::Tokio(d) = self {
            d.jumped_ms.fetch_add(millis(by), Ordering::AcqRel);
        }
    }

    /// When to wake to see wall time `due_ms`: at most [`MAX_WAIT`] from now,
    /// since the monotonic clock may not run while the wall clock does.
    pub(crate) fn wake_for(&self, due_ms: u64) -> Instant {
        let wait = Duration::from_millis(due_ms.saturating_sub(self.now_ms()));
        self.instant() + wait.min(MAX_WAIT)
    }

    /// The wall clock now.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio(_) => {
                DateTime::from_timestamp_millis(self.now_ms() as i64).unwrap_or_default()
            }
        }
    }

    /// The monotonic clock now, to measure intervals and to wait until.
    pub(crate) fn instant(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Tokio(d) => d.instant(),
        }
    }

    /// Waits until `at` (on the runtime's timers).
    pub(crate) async fn sleep_until(&self, at: Instant) {
        tokio::time::sleep_until(at).await
    }

    /// Waits for `wait`.
    pub(crate) async fn sleep(&self, wait: Duration) {
        self.sleep_until(self.instant() + wait).await
    }

    /// On a thread of its own (not a task): waits for a message on `rx`, for
    /// at most `timeout` of this clock's time (without one, until a message
    /// comes). On the driven clock the wait ends by a message too: once the
    /// time is up, `tick()` is sent on `wake`, and the caller takes it as a
    /// cue to look at the time again.
    pub(crate) fn recv_timeout<T: Send + 'static>(
        &self,
        rx: &mpsc::Receiver<T>,
        timeout: Option<Duration>,
        wake: &mpsc::Sender<T>,
        tick: fn() -> T,
    ) -> Result<T, mpsc::RecvTimeoutError> {
        match (self, timeout) {
            (Clock::System, None) => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            (Clock::System, Some(timeout)) => rx.recv_timeout(timeout),
            (Clock::Tokio(d), timeout) => d.recv(rx, timeout, wake, tick),
        }
    }
}

/// Milliseconds in `d`, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The state of [`Clock::tokio`]: tokio's clock, through a handle on its
/// runtime, and what the threads waiting on it are doing.
pub(crate) struct Driven {
    runtime: Handle,
    start: Instant,
    start_ms: u64,
    /// Wall time moved ahead alone ([`Clock::jump_wall`]).
    jumped_ms: AtomicU64,
    waits: Mutex<Waits>,
    changed: Condvar,
}

/// The thread in [`Clock::recv_timeout`] on the driven clock (one per clock:
/// the counts are not kept per thread).
#[derive(Default)]
struct Waits {
    /// Threads waiting now.
    waiting: usize,
    /// Wakes sent (time ran out) that their thread has not yet taken up.
    woken: usize,
}

impl std::fmt::Debug for Driven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driven")
            .field("start_ms", &self.start_ms)
            .finish_non_exhaustive()
    }
}

impl Driven {
    fn instant(&self) -> Instant {
        // Tokio's clock is the runtime's: a thread outside it reads it through the handle.
        let _runtime = self.runtime.enter();
        Instant::now()
    }

    fn recv<T: Send + 'static>(
        self: &Arc<Self>,
        rx: &mpsc::Receiver<T>,
        timeout: Option<Duration>,
        wake: &mpsc::Sender<T>,
        tick: fn() -> T,
    ) -> Result<T, mpsc::RecvTimeoutError> {
        let timer = timeout.map(|timeout| {
            let at = self.instant() + timeout;
            let (this, wake) = (self.clone(), wake.clone());
            self.runtime.spawn(async move {
                tokio::time::sleep_until(at).await;
                this.update(|w| w.woken += 1);
                let _ = wake.send(tick());
            })
        });
        self.update(|w| w.waiting += 1);
        let received = rx.recv();
        if let Some(timer) = timer {
            timer.abort();
        }
        self.update(|w| {
            w.waiting -= 1;
            // Whatever woke the thread, it now looks at the time again (a
            // wake sent meanwhile is still on its way and counts again).
            w.woken = 0;
        });
        received.map_err(|_| mpsc::RecvTimeoutError::Disconnected)
    }

    fn update(&self, f: impl FnOnce(&mut Waits)) {
        f(&mut self.waits.locked());
        self.changed.notify_all();
    }

    /// Blocks (in real time, at most `limit`) until a thread waits on this
    /// clock with no wake pending: it has done what the time told it to. For
    /// tests, from `spawn_blocking` (the runtime must go on to fire timers).
    /// Returns whether it did in time.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn wait_idle(&self, limit: Duration) -> bool {
        let waits = self.waits.locked();
        let (_waits, result) = self
            .changed
            .wait_timeout_while(waits, limit, |w| w.waiting == 0 || w.woken > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !result.timed_out()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `work`, or a panic once `limit` of real time has passed without it: a
    /// bound for tests under a paused clock, where a tokio timer would be
    /// advanced to at once (the bound runs on a thread of its own).
    pub(crate) async fn within_real<T>(
        limit: Duration,
        what: &str,
        work: impl Future<Output = T>,
    ) -> T {
        let (expire, expired) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            let _ = expire.send(());
        });
        tokio::select! {
            done = work => done,
            _ = expired => panic!("{what}: not within {limit:?} of real time"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_driven_wall_clock_moves_with_tokio_time() {
        let clock = Clock::tokio();
        let (ms, at) = (clock.now_ms(), clock.instant());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(clock.now_ms(), ms + 30_000);
        assert_eq!(clock.instant() - at, Duration::from_secs(30));
        assert_eq!(clock.now().timestamp_millis() as u64, ms + 30_000);
        // From a thread outside the runtime too.
        let c = clock.clone();
        let read = std::thread::spawn(move || c.now_ms())
            .join()
            .expect("thread");
        assert_eq!(read, ms + 30_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wall_jump_moves_wall_time_only_and_waits_stay_short() {
        let clock = Clock::tokio();
        let (ms, at) = (clock.now_ms(), clock.instant());
        assert_eq!(clock.wake_for(ms + 3_600_000), at + MAX_WAIT);
        assert_eq!(clock.wake_for(ms + 200), at + Duration::from_millis(200));
        clock.jump_wall(Duration::from_secs(7200));
        assert_eq!(clock.now_ms(), ms + 7_200_000);
        assert_eq!(clock.instant(), at);
        assert_eq!(clock.wake_for(ms + 3_600_000), at, "already due");
    }

    #[test]
    fn the_system_clock_is_the_wall_clock() {
        let before = u64::try_from(Utc::now().timestamp_millis()).expect("after 1970");
        let now = Clock::System.now_ms();
        assert!(now >= before && now < before + 60_000);
    }
}
