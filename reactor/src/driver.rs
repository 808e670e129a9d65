//! The reactor: one mio `Poll`, the table of registered sources, and the timers.
//!
//! # Implementation
//!
//! A [`Reactor`] is a cheap handle (`Arc`) to shared state. It starts no thread of
//! its own: whoever holds the driver lock ([`Reactor::try_lock_driver`]) drives it
//! with [`DriverGuard::turn`]. The VedaRT scheduler lets exactly one idle worker
//! at a time block in `turn`, so readiness wakes tasks without a thread hop.
//!
//! Code that is not running inside a runtime still gets a working reactor:
//! [`Reactor::current`] falls back to a process-wide reactor driven by one thread
//! named `veda-reactor`, started on first use (and again in a child made by
//! `fork()`, see [`crate::fork`]).
//!
//! # Protocol of a turn
//!
//! 1. Fire every timer due now; if any fired, poll mio without blocking.
//! 2. Otherwise block in mio until the earliest of the caller's timeout and the
//!    next timer deadline. [`Reactor::notify`] (a mio `Waker`) interrupts it, and
//!    so does inserting a timer earlier than the one the poll is waiting for.
//! 3. Mark readiness for every event, fire timers that fell due meanwhile, and
//!    wake the collected wakers after every lock has been released.
//!
//! # Virtual time
//!
//! A reactor made with [`Reactor::with_virtual_clock`] keeps its own clock:
//! [`Reactor::now`] starts at the real time of creation and moves only when
//! somebody calls [`Reactor::advance_clock_to`] (the deterministic runtime does,
//! when every task is idle). Timers fire against that clock, and a turn never
//! blocks waiting for a timer: step 2 blocks only for the caller's timeout,
//! so whoever drives a virtual reactor decides when time passes. I/O is real
//! and works as usual.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::task::Waker;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Registry, Token};

use crate::fork::PerProcess;
use crate::registration::{IoState, Slab};
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{Arc, Mutex, MutexGuard, lock};
use crate::timer::TimerQueue;

const WAKER_TOKEN: Token = Token(usize::MAX);
const EVENTS_CAPACITY: usize = 1024;

/// Sentinel for "the driver is not blocked on any timer deadline".
const NO_DEADLINE: u64 = u64::MAX;

struct Inner {
    /// The driver lock: whoever holds it may block in `mio::Poll::poll`.
    driver: Mutex<DriverState>,
    /// A clone of the poll's registry, so registration never waits for the driver.
    registry: Registry,
    /// Interrupts a blocked poll from any thread.
    waker: mio::Waker,
    /// Registered sources by token.
    sources: Mutex<Slab>,
    /// Pending timers.
    timers: Mutex<TimerQueue>,
    /// Deadline the driver is blocked until, in nanoseconds since `epoch`, or
    /// `NO_DEADLINE`; a timer inserted earlier than this must interrupt the poll.
    polling_until: AtomicU64,
    /// Reference point for `polling_until`.
    epoch: Instant,
    /// Set by `shutdown`: no new registrations, every waiter is failed.
    shut_down: AtomicBool,
    /// `Some` for a virtual clock: nanoseconds it has advanced past `epoch`.
    /// `None`: the reactor runs on the real monotonic clock.
    virtual_nanos: Option<AtomicU64>,
}

struct DriverState {
    poll: Poll,
    events: Events,
    /// Wakers collected during a turn; kept between turns so a turn allocates nothing.
    wakers: Vec<Waker>,
}

/// A handle to a reactor. Clones share the same event loop.
#[derive(Clone)]
pub struct Reactor {
    inner: Arc<Inner>,
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("sources", &lock(&self.inner.sources).len())
            .field("timers", &lock(&self.inner.timers).len())
            .field("shut_down", &self.inner.shut_down.load(Ordering::Relaxed))
            .finish()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Reactor>> = const { RefCell::new(None) };
}

/// The process-wide reactor. Made again in a child made by `fork()`: the
/// parent's has no driver thread there, and its epoll instance is shared with
/// the parent.
static GLOBAL: PerProcess<Reactor> = PerProcess::new();

impl Reactor {
    /// Creates a reactor. Nothing drives it until someone calls [`DriverGuard::turn`].
    ///
    /// # Errors
    ///
    /// Fails when the OS refuses an epoll instance or an eventfd (fd exhaustion).
    pub fn new() -> io::Result<Reactor> {
        Reactor::build(false)
    }

    /// Creates a reactor on a virtual clock: [`Reactor::now`] starts at the
    /// current time and stands still until [`Reactor::advance_clock_to`] moves
    /// it, and [`DriverGuard::turn`] never blocks waiting for a timer. The
    /// deterministic runtime (`vedart::Builder::new_deterministic`) uses one so
    /// that a program full of timeouts runs instantly and the same way every time.
    ///
    /// # Errors
    ///
    /// As [`Reactor::new`].
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// use std::time::Duration;
    /// use vedart_reactor::Reactor;
    ///
    /// let reactor = Reactor::with_virtual_clock()?;
    /// let start = reactor.now();
    /// let sleep = {
    ///     let _enter = reactor.enter();
    ///     vedart_reactor::sleep(Duration::from_secs(3600))
    /// };
    /// // No real hour passes: the clock jumps to the deadline.
    /// reactor.advance_clock_to(sleep.deadline());
    /// assert!(sleep.is_elapsed());
    /// assert_eq!(reactor.now() - start, Duration::from_secs(3600));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_virtual_clock() -> io::Result<Reactor> {
        Reactor::build(true)
    }

    fn build(virtual_clock: bool) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        Ok(Reactor {
            inner: Arc::new(Inner {
                driver: Mutex::new(DriverState {
                    poll,
                    events: Events::with_capacity(EVENTS_CAPACITY),
                    wakers: Vec::new(),
                }),
                registry,
                waker,
                sources: Mutex::new(Slab::default()),
                timers: Mutex::new(TimerQueue::default()),
                polling_until: AtomicU64::new(0),
                epoch: Instant::now(),
                shut_down: AtomicBool::new(false),
                virtual_nanos: virtual_clock.then(|| AtomicU64::new(0)),
            }),
        })
    }

    /// The reactor entered on this thread (see [`Reactor::enter`]), or else the
    /// process-wide reactor, driven by a `veda-reactor` thread started on first use.
    ///
    /// # Panics
    ///
    /// Panics if the process-wide reactor cannot be started (the OS refused an
    /// epoll instance, an eventfd or a thread), which leaves no way to do I/O
    /// at all. [`Reactor::current_or_global`] returns that error instead.
    pub fn current() -> Reactor {
        Reactor::current_or_global()
            .unwrap_or_else(|err| panic!("vedart: cannot start the global reactor: {err}"))
    }

    /// [`Reactor::current`], failing instead of panicking when the process-wide
    /// reactor cannot be started.
    ///
    /// # Errors
    ///
    /// The OS refused the global reactor's epoll instance, its eventfd or its
    /// `veda-reactor` thread (descriptor or thread limits); the next call tries
    /// again.
    pub fn current_or_global() -> io::Result<Reactor> {
        match Reactor::try_current() {
            Some(reactor) => Ok(reactor),
            None => Reactor::global().cloned(),
        }
    }

    /// The reactor entered on this thread, if any.
    pub fn try_current() -> Option<Reactor> {
        CURRENT.with(|current| current.borrow().clone())
    }

    fn global() -> io::Result<&'static Reactor> {
        GLOBAL.get_or_try_init(|| {
            let reactor = Reactor::new()?;
            let driven = reactor.clone();
            std::thread::Builder::new()
                .name("veda-reactor".into())
                .spawn(move || {
                    let mut guard = driven
                        .try_lock_driver()
                        .expect("the global reactor has exactly one driver thread");
                    loop {
                        if let Err(err) = guard.turn(None) {
                            // An epoll error here is unrecoverable; keep the loop alive
                            // but do not spin on it.
                            eprintln!("vedart: global reactor poll failed: {err}");
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                })
                .map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!("cannot start the veda-reactor thread: {err}"),
                    )
                })?;
            Ok(reactor)
        })
    }

    /// Makes this reactor the current one on this thread until the guard drops.
    /// I/O objects and timers created meanwhile register with it.
    pub fn enter(&self) -> EnterGuard {
        let previous = CURRENT.with(|current| current.borrow_mut().replace(self.clone()));
        EnterGuard {
            previous,
            _not_send: PhantomData,
        }
    }

    /// Takes the driver lock if no other thread holds it.
    pub fn try_lock_driver(&self) -> Option<DriverGuard<'_>> {
        #[cfg(not(feature = "loom"))]
        let state = self.inner.driver.try_lock().ok()?;
        #[cfg(feature = "loom")]
        let state = self.inner.driver.try_lock().ok()?;
        Some(DriverGuard {
            reactor: self,
            state,
        })
    }

    /// Takes the driver lock, waiting for the current driver to finish its turn.
    pub fn lock_driver(&self) -> DriverGuard<'_> {
        // A thread blocked in `poll` holds the lock: interrupt it first.
        let _ = self.notify();
        DriverGuard {
            reactor: self,
            state: lock(&self.inner.driver),
        }
    }

    /// Interrupts a thread blocked in [`DriverGuard::turn`]; a no-op wake-up
    /// token is left if nobody is blocked, so the next turn returns at once.
    ///
    /// # Errors
    ///
    /// Fails only if writing to the reactor's eventfd fails.
    pub fn notify(&self) -> io::Result<()> {
        self.inner.waker.wake()
    }

    /// The reactor's clock: the real monotonic clock, or the virtual one of a
    /// reactor made with [`Reactor::with_virtual_clock`]. Timers and every
    /// deadline computed by [`sleep`](crate::sleep) use it.
    pub fn now(&self) -> Instant {
        match &self.inner.virtual_nanos {
            None => Instant::now(),
            Some(nanos) => self.inner.epoch + Duration::from_nanos(nanos.load(Ordering::Acquire)),
        }
    }

    /// Whether this reactor runs on a virtual clock (see
    /// [`Reactor::with_virtual_clock`]).
    pub fn has_virtual_clock(&self) -> bool {
        self.inner.virtual_nanos.is_some()
    }

    /// Moves a virtual clock forward to `instant` (never backwards: an instant
    /// at or before [`Reactor::now`] changes nothing), and interrupts a blocked
    /// turn so that the timers now due fire. Returns whether the clock moved.
    /// A reactor on the real clock ignores the call and returns false.
    pub fn advance_clock_to(&self, instant: Instant) -> bool {
        let Some(nanos) = &self.inner.virtual_nanos else {
            return false;
        };
        let target = self.nanos_since_epoch(instant);
        let previous = nanos.fetch_max(target, Ordering::AcqRel);
        if previous >= target {
            return false;
        }
        let _ = self.notify();
        true
    }

    /// Moves a virtual clock forward by `duration`; see
    /// [`Reactor::advance_clock_to`].
    pub fn advance_clock(&self, duration: Duration) -> bool {
        self.advance_clock_to(crate::timer::deadline_after(self.now(), duration))
    }

    /// Whether [`Reactor::shutdown`] was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::Acquire)
    }

    /// Closes the reactor: every pending I/O future fails with an error saying so,
    /// every pending timer is woken and completes (nothing is left to time it),
    /// and new registrations are refused.
    pub fn shutdown(&self) {
        if self.inner.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut wakers = Vec::new();
        for state in lock(&self.inner.sources).drain() {
            state.close(&mut wakers);
        }
        lock(&self.inner.timers).drain(&mut wakers);
        let _ = self.notify();
        wake_all(&mut wakers);
    }

    /// Number of registered sources and pending timers, for diagnostics.
    pub fn load(&self) -> (usize, usize) {
        (
            lock(&self.inner.sources).len(),
            lock(&self.inner.timers).len(),
        )
    }

    /// The earliest pending timer deadline.
    pub fn next_timer_deadline(&self) -> Option<Instant> {
        lock(&self.inner.timers).next_deadline()
    }

    pub(crate) fn register(
        &self,
        source: &mut impl mio::event::Source,
        interest: Interest,
    ) -> io::Result<(usize, Arc<IoState>)> {
        let state = Arc::new(IoState::new());
        let key = {
            let mut sources = lock(&self.inner.sources);
            // Checked under the lock `shutdown` drains: a source inserted after
            // the drain would never be closed and its waiters would hang.
            if self.is_shut_down() {
                return Err(crate::registration::reactor_gone());
            }
            sources.insert(state.clone())
        };
        if let Err(err) = self.inner.registry.register(source, Token(key), interest) {
            lock(&self.inner.sources).remove(key);
            return Err(err);
        }
        Ok((key, state))
    }

    pub(crate) fn deregister(&self, source: &mut impl mio::event::Source, key: usize) {
        // Deregistering an fd that the OS already closed is harmless to ignore.
        let _ = self.inner.registry.deregister(source);
        lock(&self.inner.sources).remove(key);
    }

    pub(crate) fn insert_timer(&self, deadline: Instant, waker: Waker) -> (Instant, u64) {
        let key = {
            let mut timers = lock(&self.inner.timers);
            if self.is_shut_down() {
                drop(timers);
                waker.wake();
                return (deadline, u64::MAX);
            }
            timers.insert(deadline, waker)
        };
        let until = self.inner.polling_until.load(Ordering::Acquire);
        if self.nanos_since_epoch(deadline) < until {
            let _ = self.notify();
        }
        key
    }

    pub(crate) fn update_timer_waker(&self, key: (Instant, u64), waker: &Waker) -> bool {
        lock(&self.inner.timers).update_waker(key, waker)
    }

    pub(crate) fn cancel_timer(&self, key: (Instant, u64)) {
        lock(&self.inner.timers).cancel(key);
    }

    fn nanos_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.inner.epoch).as_nanos())
            .unwrap_or(NO_DEADLINE - 1)
    }

    fn fire_timers(&self, wakers: &mut Vec<Waker>) {
        lock(&self.inner.timers).fire_expired(self.now(), wakers);
    }
}

/// Restores the previously current reactor when dropped. See [`Reactor::enter`].
///
/// The guard must be dropped on the thread that created it, so it is not `Send`:
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<vedart_reactor::EnterGuard>();
/// ```
#[derive(Debug)]
#[must_use = "the reactor stays current only while the guard lives"]
pub struct EnterGuard {
    previous: Option<Reactor>,
    /// Thread-local state: dropped on another thread, the guard would restore
    /// that thread's current reactor to this thread's previous one.
    _not_send: PhantomData<*const ()>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// Exclusive right to drive a reactor. See [`Reactor::try_lock_driver`].
pub struct DriverGuard<'a> {
    reactor: &'a Reactor,
    state: MutexGuard<'a, DriverState>,
}

impl fmt::Debug for DriverGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverGuard").finish_non_exhaustive()
    }
}

impl DriverGuard<'_> {
    /// Runs one turn of the event loop, blocking at most `timeout` (`None`: until an
    /// event, a timer or a [`Reactor::notify`]). Returns how many tasks it woke.
    ///
    /// # Errors
    ///
    /// Returns the OS error of `epoll_wait`, other than an interrupted call.
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let reactor = self.reactor;
        let inner = &reactor.inner;
        let DriverState {
            poll,
            events,
            wakers,
        } = &mut *self.state;
        reactor.fire_timers(wakers);

        let now = reactor.now();
        let timer_deadline = lock(&inner.timers).next_deadline();
        let mut wait = if wakers.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        // On a virtual clock time passes only when the driver's owner says so:
        // a pending timer does not bound the wait.
        if let (Some(deadline), false) = (timer_deadline, reactor.has_virtual_clock()) {
            let until_timer = deadline.saturating_duration_since(now);
            wait = Some(wait.map_or(until_timer, |w| w.min(until_timer)));
        }
        let blocked_until = match wait {
            Some(w) if w.is_zero() => 0,
            Some(w) => reactor.nanos_since_epoch(crate::timer::deadline_after(now, w)),
            None => NO_DEADLINE,
        };
        inner.polling_until.store(blocked_until, Ordering::Release);
        // A timer inserted between reading `timer_deadline` and the store above saw
        // the old `polling_until`; re-check so that it cannot be slept through.
        if let Some(deadline) = lock(&inner.timers).next_deadline() {
            if Some(deadline) != timer_deadline
                && reactor.nanos_since_epoch(deadline) < blocked_until
            {
                wait = Some(Duration::ZERO);
            }
        }

        let polled = poll.poll(events, wait);
        inner.polling_until.store(0, Ordering::Release);
        match polled {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                inner.polling_until.store(NO_DEADLINE, Ordering::Release);
                return Err(err);
            }
        }
        {
            let sources = lock(&inner.sources);
            for event in events.iter() {
                if event.token() == WAKER_TOKEN {
                    continue;
                }
                if let Some(io) = sources.get(event.token().0) {
                    let failed =
                        event.is_error() || event.is_read_closed() && event.is_write_closed();
                    io.on_event(
                        event.is_readable() || event.is_read_closed() || failed,
                        event.is_writable() || event.is_write_closed() || failed,
                        event.is_read_closed() || failed,
                        wakers,
                    );
                }
            }
        }
        reactor.fire_timers(wakers);
        let woken = wakers.len();
        wake_all(wakers);
        Ok(woken)
    }

    /// The reactor this guard drives.
    pub fn reactor(&self) -> &Reactor {
        self.reactor
    }
}

/// Wakes (and removes) every waker, isolating the reactor from a waker that panics.
fn wake_all(wakers: &mut Vec<Waker>) {
    for waker in wakers.drain(..) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()));
    }
}
