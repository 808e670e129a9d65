//! Putting one worker to sleep and waking it, on the reactor or on a condvar.
//!
//! Each worker owns a [`Parker`]. An idle worker first tries to take the
//! reactor's driver lock: the one that gets it sleeps *inside* the reactor
//! (`epoll_wait`), so I/O readiness and timers wake tasks on that very thread;
//! every other idle worker sleeps on its own condvar. [`Parker::unpark`] wakes
//! the worker whichever way it sleeps: a condvar notification, or
//! [`Driver::unpark`] (the reactor's `notify`, an eventfd write) when it sits
//! in the reactor.
//!
//! # Protocol
//!
//! `state` is one of `EMPTY`, `PARKED_CONDVAR`, `PARKED_DRIVER`, `NOTIFIED`.
//!
//! 1. `park` consumes a pending notification (`NOTIFIED -> EMPTY`) and returns
//!    at once if there is one.
//! 2. Otherwise it announces how it will sleep with a CAS `EMPTY -> PARKED_*`.
//!    If the CAS fails, the state can only be `NOTIFIED` (only `unpark` writes
//!    concurrently): swap it back to `EMPTY` and return.
//! 3. Condvar: the CAS happens under the parker's mutex, and the wait releases
//!    that mutex atomically, so an `unpark` that takes the mutex before
//!    notifying cannot slip between the CAS and the wait. After each wake-up
//!    the sleeper returns only if it can CAS `NOTIFIED -> EMPTY`; anything else
//!    is a spurious wake-up.
//! 4. Driver: the worker blocks in one reactor turn. An `unpark` that finds
//!    `PARKED_DRIVER` calls the reactor's `notify`, which makes a blocked turn
//!    return and makes a turn that has not blocked yet return at once (the
//!    eventfd stays readable). After the turn the worker swaps the state to
//!    `EMPTY`, consuming a notification if there was one. A turn can also end
//!    because of I/O or a timer: the worker then looks for the tasks the turn
//!    woke, and goes back to sleep through the caller's loop if there are none.
//! 5. `unpark` always *swaps* in `NOTIFIED` (even over `NOTIFIED`), so that the
//!    woken thread's acquire of `state` synchronizes with every unparker.
//!
//! So a notification is never lost: either `park` sees `NOTIFIED` in step 1
//! or 2, or `unpark` sees `PARKED_*` and wakes the sleeper by a route that
//! cannot miss it (step 3's mutex, step 4's eventfd). The loom model
//! `loom-tests/tests/park.rs` checks this with a mock driver.

use std::fmt;

use crate::sync_facade::atomic::AtomicUsize;
use crate::sync_facade::atomic::Ordering::SeqCst;
use crate::sync_facade::{Arc, Condvar, Mutex, lock, wait};

const EMPTY: usize = 0;
const PARKED_CONDVAR: usize = 1;
const PARKED_DRIVER: usize = 2;
const NOTIFIED: usize = 3;

/// Something an idle worker can block in: the reactor, or a mock under loom.
pub(crate) trait Driver {
    /// Exclusive right to block in the driver.
    type Guard<'a>: DriverTurn
    where
        Self: 'a;

    /// Takes the right to block, if no other thread holds it.
    fn try_lock(&self) -> Option<Self::Guard<'_>>;

    /// Makes a blocked (or the next) turn return.
    fn unpark(&self);
}

/// One turn of a driver.
pub(crate) trait DriverTurn {
    /// Blocks until the driver has events or is unparked, then dispatches them.
    fn park(&mut self);

    /// Dispatches whatever is ready without blocking.
    fn poll(&mut self);
}

impl Driver for vedart_reactor::Reactor {
    type Guard<'a> = vedart_reactor::DriverGuard<'a>;

    fn try_lock(&self) -> Option<Self::Guard<'_>> {
        self.try_lock_driver()
    }

    fn unpark(&self) {
        // Writing to an eventfd fails only if its counter would overflow, and
        // then a wake-up is already pending: nothing to do either way.
        let _ = self.notify();
    }
}

impl DriverTurn for vedart_reactor::DriverGuard<'_> {
    fn park(&mut self) {
        if let Err(err) = self.turn(None) {
            report_driver_error(&err);
        }
    }

    fn poll(&mut self) {
        if let Err(err) = self.turn(Some(std::time::Duration::ZERO)) {
            report_driver_error(&err);
        }
    }
}

/// An `epoll_wait` failure other than `EINTR` means the reactor is broken
/// (its fd was closed under it); say so rather than spin silently.
#[cold]
fn report_driver_error(err: &std::io::Error) {
    eprintln!("vedart: reactor turn failed: {err}");
    std::thread::sleep(std::time::Duration::from_millis(1));
}

/// Puts its owning worker to sleep; anyone may wake it. Cloning shares it.
#[derive(Clone)]
pub(crate) struct Parker {
    inner: Arc<Inner>,
}

struct Inner {
    /// One of `EMPTY`, `PARKED_CONDVAR`, `PARKED_DRIVER`, `NOTIFIED`.
    state: AtomicUsize,
    /// Orders a condvar sleeper's announcement against `unpark` (step 3).
    mutex: Mutex<()>,
    /// Where the worker sleeps when another worker holds the driver.
    condvar: Condvar,
}

impl Parker {
    /// A parker with no pending notification.
    pub(crate) fn new() -> Parker {
        Parker {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(EMPTY),
                mutex: Mutex::new(()),
                condvar: Condvar::new(),
            }),
        }
    }

    /// Sleeps until [`Parker::unpark`] is called, or, when this thread gets the
    /// driver, until the driver has events. May return spuriously. Only the
    /// owning worker may call it.
    pub(crate) fn park<D: Driver>(&self, driver: &D) {
        let inner = &*self.inner;
        // Step 1. A few tries before sleeping: in ping-pong workloads the
        // notification is often only nanoseconds away.
        for _ in 0..3 {
            if inner
                .state
                .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
                .is_ok()
            {
                return;
            }
            std::hint::spin_loop();
        }
        match driver.try_lock() {
            Some(mut guard) => inner.park_driver(&mut guard),
            None => inner.park_condvar(),
        }
    }

    /// Wakes the owning worker, or makes its next `park` return at once.
    pub(crate) fn unpark<D: Driver>(&self, driver: &D) {
        match self.inner.state.swap(NOTIFIED, SeqCst) {
            EMPTY | NOTIFIED => {}
            PARKED_CONDVAR => {
                // Step 3: taking the mutex waits until the sleeper is inside
                // `wait`; notifying after releasing it saves the sleeper a
                // wake-up into a held lock.
                drop(lock(&self.inner.mutex));
                self.inner.condvar.notify_one();
            }
            PARKED_DRIVER => driver.unpark(),
            actual => unreachable!("inconsistent parker state {actual}"),
        }
    }
}

impl Inner {
    fn park_condvar(&self) {
        let mut guard = lock(&self.mutex);
        match self
            .state
            .compare_exchange(EMPTY, PARKED_CONDVAR, SeqCst, SeqCst)
        {
            Ok(_) => {}
            Err(NOTIFIED) => {
                // Step 2: swap (not store) so that we read the latest unpark.
                let old = self.state.swap(EMPTY, SeqCst);
                debug_assert_eq!(old, NOTIFIED);
                return;
            }
            Err(actual) => unreachable!("inconsistent parker state {actual}"),
        }
        loop {
            guard = wait(&self.condvar, guard);
            if self
                .state
                .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
                .is_ok()
            {
                return;
            }
            // Spurious wake-up: sleep again.
        }
    }

    fn park_driver(&self, guard: &mut impl DriverTurn) {
        match self
            .state
            .compare_exchange(EMPTY, PARKED_DRIVER, SeqCst, SeqCst)
        {
            Ok(_) => {}
            Err(NOTIFIED) => {
                let old = self.state.swap(EMPTY, SeqCst);
                debug_assert_eq!(old, NOTIFIED);
                return;
            }
            Err(actual) => unreachable!("inconsistent parker state {actual}"),
        }
        guard.park();
        match self.state.swap(EMPTY, SeqCst) {
            // Notified, or the turn ended for I/O or a timer.
            NOTIFIED | PARKED_DRIVER => {}
            actual => unreachable!("inconsistent parker state {actual}"),
        }
    }
}

impl fmt::Debug for Parker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.inner.state.load(SeqCst) {
            EMPTY => "EMPTY",
            PARKED_CONDVAR => "PARKED_CONDVAR",
            PARKED_DRIVER => "PARKED_DRIVER",
            NOTIFIED => "NOTIFIED",
            _ => "?",
        };
        f.debug_struct("Parker").field("state", &state).finish()
    }
}

/// A driver for loom models: blocks until unparked, and nothing else.
#[cfg(feature = "loom")]
pub(crate) struct MockDriver {
    /// The driver lock.
    locked: crate::sync_facade::atomic::AtomicBool,
    /// A pending `unpark`, like the reactor's readable eventfd.
    notified: Mutex<bool>,
    condvar: Condvar,
}

#[cfg(feature = "loom")]
impl MockDriver {
    pub(crate) fn new() -> MockDriver {
        MockDriver {
            locked: crate::sync_facade::atomic::AtomicBool::new(false),
            notified: Mutex::new(false),
            condvar: Condvar::new(),
        }
    }
}

#[cfg(feature = "loom")]
impl fmt::Debug for MockDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockDriver").finish_non_exhaustive()
    }
}

/// The lock on a [`MockDriver`].
#[cfg(feature = "loom")]
pub(crate) struct MockGuard<'a>(&'a MockDriver);

#[cfg(feature = "loom")]
impl Driver for MockDriver {
    type Guard<'a> = MockGuard<'a>;

    fn try_lock(&self) -> Option<MockGuard<'_>> {
        use crate::sync_facade::atomic::Ordering::{Acquire, Relaxed};
        self.locked
            .compare_exchange(false, true, Acquire, Relaxed)
            .ok()
            .map(|_| MockGuard(self))
    }

    fn unpark(&self) {
        *lock(&self.notified) = true;
        self.condvar.notify_all();
    }
}

#[cfg(feature = "loom")]
impl DriverTurn for MockGuard<'_> {
    fn park(&mut self) {
        let mut notified = lock(&self.0.notified);
        while !*notified {
            notified = wait(&self.0.condvar, notified);
        }
        *notified = false;
    }

    fn poll(&mut self) {
        *lock(&self.0.notified) = false;
    }
}

#[cfg(feature = "loom")]
impl Drop for MockGuard<'_> {
    fn drop(&mut self) {
        self.0
            .locked
            .store(false, crate::sync_facade::atomic::Ordering::Release);
    }
}
