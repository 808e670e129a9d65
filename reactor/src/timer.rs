//! Timers: `sleep`, `sleep_until`, `timeout` and `interval`.
//!
//! # Implementation
//!
//! Pending timers live in the reactor in an ordered map keyed by
//! `(deadline, id)`. Insert and cancel are `O(log n)` and touch one node, so a
//! million pending timers stay cheap (see the `timers` benchmark); the driver
//! pops every expired entry in order at each turn. A timer is inserted on its
//! first poll, its waker replaced in place when the owning task changes, and it
//! is removed when the future is dropped, so cancelling is simply dropping.
//!
//! Deadlines are computed with saturating arithmetic: `sleep(Duration::MAX)`
//! means "practically never" rather than an overflow panic.
//!
//! Every deadline is computed from, and compared with, the owning reactor's
//! clock ([`Reactor::now`]), never `Instant::now()` directly, so on a reactor
//! with a virtual clock ([`Reactor::with_virtual_clock`]) timers fire when that
//! clock is advanced past them, however little real time has passed. Timers
//! with the same deadline fire in the order they were first polled.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures::Stream;

use crate::driver::Reactor;

/// How far in the future a saturated deadline lies: far enough to be "never"
/// for any process, small enough that `Instant` arithmetic cannot overflow.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Adds `duration` to `start`, saturating at a deadline about thirty years away.
pub(crate) fn deadline_after(start: Instant, duration: Duration) -> Instant {
    start
        .checked_add(duration.min(FAR_FUTURE))
        .unwrap_or_else(|| start + Duration::from_secs(86_400))
}

/// Ordered pending timers of one reactor.
#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    pending: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
}

impl TimerQueue {
    /// Inserts a timer and returns its key.
    pub(crate) fn insert(&mut self, deadline: Instant, waker: Waker) -> (Instant, u64) {
        let key = (deadline, self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        self.pending.insert(key, waker);
        key
    }

    /// Replaces the waker of a pending timer; false if it already fired.
    pub(crate) fn update_waker(&mut self, key: (Instant, u64), waker: &Waker) -> bool {
        match self.pending.get_mut(&key) {
            Some(existing) => {
                if !existing.will_wake(waker) {
                    *existing = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    /// Removes a timer; returns whether it was still pending.
    pub(crate) fn cancel(&mut self, key: (Instant, u64)) -> bool {
        self.pending.remove(&key).is_some()
    }

    /// Earliest pending deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.keys().next().map(|(deadline, _)| *deadline)
    }

    /// Moves the wakers of every timer due at `now` into `wakers`.
    pub(crate) fn fire_expired(&mut self, now: Instant, wakers: &mut Vec<Waker>) {
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            wakers.push(entry.remove());
        }
    }

    /// Removes every timer, returning the wakers (used at shutdown).
    pub(crate) fn drain(&mut self, wakers: &mut Vec<Waker>) {
        wakers.extend(std::mem::take(&mut self.pending).into_values());
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

/// A future that completes at a deadline. Created by [`sleep`] and [`sleep_until`].
///
/// Dropping it cancels the timer. It never completes before its deadline while
/// its reactor runs; once the reactor is [shut down](Reactor::shutdown), it
/// completes at its next poll.
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    reactor: Reactor,
    deadline: Instant,
    /// Key in the reactor's timer queue once registered.
    key: Option<(Instant, u64)>,
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .field("registered", &self.key.is_some())
            .finish()
    }
}

/// Waits until `duration` has elapsed. `Duration::MAX` saturates to "practically never".
///
/// The timer belongs to [`Reactor::current`].
///
/// # Examples
///
#[doc = example!()]
/// use std::time::{Duration, Instant};
/// let start = Instant::now();
/// futures::executor::block_on(vedart_reactor::sleep(Duration::from_millis(5)));
/// assert!(start.elapsed() >= Duration::from_millis(5));
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    let reactor = Reactor::current();
    let deadline = deadline_after(reactor.now(), duration);
    Sleep::new(reactor, deadline)
}

/// Waits until `deadline`. A deadline in the past completes on the first poll.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep::new(Reactor::current(), deadline)
}

impl Sleep {
    fn new(reactor: Reactor, deadline: Instant) -> Sleep {
        Sleep {
            reactor,
            deadline,
            key: None,
        }
    }

    /// The instant at which this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        self.reactor.now() >= self.deadline
    }

    /// Moves the deadline, keeping the future usable (used by [`Interval`]).
    pub fn reset(&mut self, deadline: Instant) {
        if let Some(key) = self.key.take() {
            self.reactor.cancel_timer(key);
        }
        self.deadline = deadline;
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        // After shutdown no driver fires timers: completing beats re-arming a
        // timer that wakes at once, which would spin until the deadline.
        if this.reactor.now() >= this.deadline || this.reactor.is_shut_down() {
            if let Some(key) = this.key.take() {
                this.reactor.cancel_timer(key);
            }
            return Poll::Ready(());
        }
        match this.key {
            Some(key) if this.reactor.update_timer_waker(key, cx.waker()) => {}
            // Never registered, or fired between our clock read and now: (re)insert;
            // the reactor fires it at once if it is already due.
            _ => this.key = Some(this.reactor.insert_timer(this.deadline, cx.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.reactor.cancel_timer(key);
        }
    }
}

/// The error of [`timeout`]: the deadline passed before the future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::ErrorKind::TimedOut.into()
    }
}

/// A future with a deadline. Created by [`timeout`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Timeout<F> {
    future: F,
    sleep: Sleep,
}

/// Runs `future` with a time limit: `Err(Elapsed)` if `duration` passes first.
/// The inner future is polled first, so a ready future always wins.
///
/// # Examples
///
#[doc = example!()]
/// use std::time::Duration;
/// let result = futures::executor::block_on(vedart_reactor::timeout(
///     Duration::from_millis(10),
///     futures::future::pending::<()>(),
/// ));
/// assert!(result.is_err());
/// ```
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep(duration),
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned: it is never moved out of `self`
        // and `Timeout` has no `Drop` impl that could move it; `sleep` is `Unpin`.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above, `this.future` stays at its address until dropped.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        if let Poll::Ready(output) = future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        Pin::new(&mut this.sleep)
            .poll(cx)
            .map(|()| Err(Elapsed(())))
    }
}

/// What an [`Interval`] does when ticks were missed because it was not polled in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedTickBehavior {
    /// Fire the missed ticks back to back until caught up.
    Burst,
    /// Resume the schedule from now: the next tick is one period after the late one.
    #[default]
    Delay,
    /// Skip the missed ticks and stay on the original grid.
    Skip,
}

/// A stream of instants, one per period. Created by [`interval`].
#[derive(Debug)]
pub struct Interval {
    sleep: Sleep,
    period: Duration,
    missed: MissedTickBehavior,
}

/// Ticks every `period`, the first tick at once.
///
/// # Panics
///
/// Panics if `period` is zero, which would make a busy loop.
pub fn interval(period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "vedart: interval period must be non-zero"
    );
    let reactor = Reactor::current();
    let now = reactor.now();
    Interval {
        sleep: Sleep::new(reactor, now),
        period,
        missed: MissedTickBehavior::default(),
    }
}

impl Interval {
    /// Completes at the next tick and returns its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        futures::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if Pin::new(&mut self.sleep).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let scheduled = self.sleep.deadline();
        let now = self.sleep.reactor.now();
        let next = match self.missed {
            MissedTickBehavior::Burst => deadline_after(scheduled, self.period),
            MissedTickBehavior::Delay => {
                let on_grid = deadline_after(scheduled, self.period);
                if on_grid <= now {
                    deadline_after(now, self.period)
                } else {
                    on_grid
                }
            }
            MissedTickBehavior::Skip => {
                let mut next = deadline_after(scheduled, self.period);
                if next <= now {
                    let behind = now.duration_since(scheduled).as_nanos();
                    let periods = behind / self.period.as_nanos() + 1;
                    let skip = u32::try_from(periods).unwrap_or(u32::MAX);
                    next = deadline_after(scheduled, self.period.saturating_mul(skip));
                }
                next
            }
        };
        self.sleep.reset(next);
        Poll::Ready(scheduled)
    }

    /// Sets what happens to ticks missed because the interval was polled late.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed = behavior;
    }

    /// The period between ticks.
    pub fn period(&self) -> Duration {
        self.period
    }
}

impl Stream for Interval {
    type Item = Instant;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Instant>> {
        self.get_mut().poll_tick(cx).map(Some)
    }
}
