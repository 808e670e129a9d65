//! Which workers are awake, which are searching for work, and which sleep.
//!
//! Waking a sleeping worker costs a syscall on both sides, so the scheduler
//! wakes one only when nobody awake is already looking for work (the
//! "searching" throttle of Go's and tokio's schedulers). The full sleep / wake
//! protocol, with a proof sketch that no task is stranded, is in
//! [`README.md`](https://github.com/vedart/vedart/blob/main/runtime/src/scheduler/README.md)
//! beside this file. The rules this module implements:
//!
//! 1. `state` packs two counters: workers *unparked* (awake) and, of those,
//!    workers *searching* (awake, no local work, looking to steal).
//! 2. A worker becomes a searcher only while fewer than half the workers
//!    search ([`Idle::transition_worker_to_searching`]): stealing is contended,
//!    so more searchers only burn CPU.
//! 3. Whoever makes work available calls [`Idle::worker_to_notify`]; it wakes a
//!    sleeper only if nobody searches and somebody sleeps. The woken worker is
//!    counted as unparked *and searching* before it runs, so a burst of pushes
//!    wakes one worker, not one per push.
//! 4. A searcher that finds work leaves the searching state; if it was the
//!    last searcher it wakes another worker, which searches in its turn
//!    (a chain that spreads a burst across the pool).
//! 5. A worker going to sleep decrements the counters and registers in
//!    `sleepers` under one lock. If it was the last searcher it must look at
//!    every queue once more after that, because a push that raced with its
//!    last scan saw a searcher and woke nobody.

use std::fmt;

use crate::sync_facade::atomic::AtomicUsize;
use crate::sync_facade::atomic::Ordering::SeqCst;
use crate::sync_facade::{Mutex, lock};

/// Bits of `state` that count searching workers.
const SEARCH_MASK: usize = (1 << UNPARK_SHIFT) - 1;
/// Where the unparked count starts in `state`.
const UNPARK_SHIFT: usize = 16;
/// Bits of `state` that count unparked workers.
const UNPARK_MASK: usize = !SEARCH_MASK;

/// The most workers a runtime may have: the searching count must fit its bits.
pub(crate) const MAX_WORKERS: usize = SEARCH_MASK;

/// Idle-worker bookkeeping shared by all workers of a runtime.
pub(crate) struct Idle {
    /// Packed counters, see [`State`]; the lock-free fast path of
    /// [`Idle::worker_to_notify`] reads only this.
    state: AtomicUsize,
    /// Indices of sleeping workers. Changes to it and to the unparked count
    /// happen under this lock together.
    sleepers: Mutex<Vec<usize>>,
    /// Total workers.
    num_workers: usize,
}

/// The packed counters: `unparked << 16 | searching`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct State(usize);

impl State {
    /// Every worker awake, none searching.
    fn new(num_workers: usize) -> State {
        State(num_workers << UNPARK_SHIFT)
    }

    /// Workers currently looking for work to steal.
    pub(crate) fn num_searching(self) -> usize {
        self.0 & SEARCH_MASK
    }

    /// Workers currently awake.
    pub(crate) fn num_unparked(self) -> usize {
        (self.0 & UNPARK_MASK) >> UNPARK_SHIFT
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("num_unparked", &self.num_unparked())
            .field("num_searching", &self.num_searching())
            .finish()
    }
}

impl Idle {
    /// Bookkeeping for `num_workers` workers, all awake.
    pub(crate) fn new(num_workers: usize) -> Idle {
        assert!(num_workers <= MAX_WORKERS, "too many workers");
        Idle {
            state: AtomicUsize::new(State::new(num_workers).0),
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_workers,
        }
    }

    /// The current counters.
    pub(crate) fn state(&self) -> State {
        State(self.state.load(SeqCst))
    }

    /// Rule 3: picks a sleeping worker to wake, if one should be woken, and
    /// counts it as unparked and searching. The caller must unpark it.
    ///
    /// `after_remote_push` must be true when the caller just pushed to the
    /// injector: the read of `state` is then a read-modify-write, which orders
    /// the push before it against a parking worker's final scan (see the
    /// README, "Why the remote path reads with an RMW").
    pub(crate) fn worker_to_notify(&self, after_remote_push: bool) -> Option<usize> {
        if !self.should_wake(after_remote_push) {
            return None;
        }
        let mut sleepers = lock(&self.sleepers);
        if !self.should_wake(false) {
            return None;
        }
        // One more unparked worker, and it starts out searching.
        self.state.fetch_add(1 | (1 << UNPARK_SHIFT), SeqCst);
        let index = sleepers.pop();
        debug_assert!(index.is_some(), "unparked < workers but no sleeper");
        index
    }

    fn should_wake(&self, rmw: bool) -> bool {
        let state = if rmw {
            State(self.state.fetch_add(0, SeqCst))
        } else {
            State(self.state.load(SeqCst))
        };
        state.num_searching() == 0 && state.num_unparked() < self.num_workers
    }

    /// Rule 5: records that `worker` goes to sleep. Returns true if it was the
    /// last searcher, in which case the caller must re-check every queue.
    pub(crate) fn transition_worker_to_parked(&self, worker: usize, is_searching: bool) -> bool {
        let mut sleepers = lock(&self.sleepers);
        let dec = (1 << UNPARK_SHIFT) | usize::from(is_searching);
        let prev = State(self.state.fetch_sub(dec, SeqCst));
        debug_assert!(prev.num_unparked() > 0, "{prev:?}");
        debug_assert!(!sleepers.contains(&worker), "worker {worker} parked twice");
        sleepers.push(worker);
        is_searching && prev.num_searching() == 1
    }

    /// Rule 2: tries to become a searcher.
    pub(crate) fn transition_worker_to_searching(&self) -> bool {
        let state = State(self.state.load(SeqCst));
        if 2 * state.num_searching() >= self.num_workers {
            return false;
        }
        // More than half may slip through when several race here; the limit
        // only curbs contention, so that is fine.
        self.state.fetch_add(1, SeqCst);
        true
    }

    /// Rule 4: a searcher found work. Returns true if it was the last
    /// searcher, in which case the caller must notify another worker.
    pub(crate) fn transition_worker_from_searching(&self) -> bool {
        let prev = State(self.state.fetch_sub(1, SeqCst));
        debug_assert!(prev.num_searching() > 0, "{prev:?}");
        prev.num_searching() == 1
    }

    /// Removes `worker` from the sleepers if it is there (it woke for its own
    /// reasons, such as I/O events, before anybody notified it). Returns true
    /// if it was a sleeper.
    pub(crate) fn unpark_worker_by_id(&self, worker: usize) -> bool {
        let mut sleepers = lock(&self.sleepers);
        match sleepers.iter().position(|&w| w == worker) {
            Some(at) => {
                sleepers.swap_remove(at);
                // Awake, but not searching: it has its own work.
                self.state.fetch_add(1 << UNPARK_SHIFT, SeqCst);
                true
            }
            None => false,
        }
    }

    /// Whether `worker` is registered as sleeping (nobody notified it yet).
    pub(crate) fn is_parked(&self, worker: usize) -> bool {
        lock(&self.sleepers).contains(&worker)
    }
}

impl fmt::Debug for Idle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idle")
            .field("state", &self.state())
            .field("num_workers", &self.num_workers)
            .finish()
    }
}

#[cfg(all(test, not(feature = "loom")))]
mod tests {
    use super::*;

    #[test]
    fn masks_partition_the_word() {
        assert_eq!(SEARCH_MASK & UNPARK_MASK, 0);
        assert_eq!(SEARCH_MASK | UNPARK_MASK, usize::MAX);
        assert_eq!(SEARCH_MASK, 0xFFFF);
        let state = State((3 << UNPARK_SHIFT) | 2);
        assert_eq!(state.num_unparked(), 3);
        assert_eq!(state.num_searching(), 2);
    }

    #[test]
    fn a_burst_of_notifications_wakes_one_worker() {
        let idle = Idle::new(4);
        for worker in 0..4 {
            assert!(!idle.transition_worker_to_parked(worker, false));
        }
        assert_eq!(idle.state().num_unparked(), 0);
        let first = idle.worker_to_notify(true);
        assert_eq!(first, Some(3));
        // The woken worker counts as searching: later pushes wake nobody.
        assert_eq!(idle.worker_to_notify(true), None);
        assert_eq!(idle.state().num_searching(), 1);
        // It finds work and was the last searcher: the caller notifies again.
        assert!(idle.transition_worker_from_searching());
        assert_eq!(idle.worker_to_notify(false), Some(2));
    }

    #[test]
    fn last_searcher_parking_is_reported() {
        let idle = Idle::new(2);
        assert!(idle.transition_worker_to_searching());
        // 2 * 1 >= 2: a second searcher is refused.
        assert!(!idle.transition_worker_to_searching());
        assert!(idle.transition_worker_to_parked(0, true));
        assert!(!idle.transition_worker_to_parked(1, false));
        assert!(idle.is_parked(0));
        assert!(idle.unpark_worker_by_id(0));
        assert!(!idle.is_parked(0));
        assert_eq!(idle.state().num_unparked(), 1);
        assert_eq!(idle.state().num_searching(), 0);
    }
}
