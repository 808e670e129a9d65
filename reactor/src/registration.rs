//! Per-source readiness state and the table that maps mio tokens to it.
//!
//! # How readiness is tracked
//!
//! mio is edge-triggered: an event says "this direction became ready" once. Each
//! registered source keeps, per direction, a `ready` flag, a `tick` counter and
//! the wakers of the tasks waiting on that direction. The full protocol, with the
//! argument for why no wake-up is lost, is in the crate's `README.md`.
//!
//! 1. The driver receives an event, sets `ready`, bumps `tick`, takes every
//!    waker of that direction and wakes them after releasing the lock.
//! 2. A caller polls a direction: if `ready` is set it gets the current tick;
//!    otherwise it stores (or replaces, when the task moved) its waker.
//! 3. The caller tries the syscall. On `WouldBlock` it clears readiness *only
//!    if the tick is unchanged*, so an event that arrived between the syscall
//!    and the clear is never lost.
//!
//! A direction has two kinds of waiter. The `poll_*` methods (`poll_read`,
//! `Async::poll_io`, ...) share one slot, like tokio's `poll_read_ready`: only
//! the task that polled last is woken, which suits the `&mut self` I/O traits.
//! Futures (`readable()`, `read_with`, `accept`, `recv_from`, ...) each own a
//! [`WaiterId`] in a per-direction list, so any number of tasks may wait on the
//! same direction of a shared object, and a dropped future removes only its own
//! entry.
//!
//! A fresh registration starts ready in both directions: the first syscall is
//! simply tried, which saves a driver round trip on new sockets and pipes. So
//! readiness may be spurious and callers must treat `WouldBlock` as "wait".
//!
//! Errors and hang-ups mark both directions ready so that the next syscall
//! observes them.

use std::io;
use std::task::{Context, Poll, Waker};

use crate::sync::{Arc, Mutex, lock};

/// One direction of interest on a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The source has data to read or a connection to accept.
    Read,
    /// The source has room to write.
    Write,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::Read => 0,
            Direction::Write => 1,
        }
    }
}

#[derive(Debug)]
struct DirectionState {
    /// An event arrived and no `WouldBlock` has been seen since.
    ready: bool,
    /// Bumped by every event; lets `clear_ready` detect an event that raced in.
    tick: u64,
    /// The one waker of the `poll_*` methods, replaced by each new caller.
    waker: Option<Waker>,
    /// Wakers of pending futures, each under its own id. Emptied by each event
    /// (the capacity stays, so steady state allocates nothing).
    waiters: Vec<(u64, Waker)>,
}

impl DirectionState {
    fn new() -> DirectionState {
        DirectionState {
            // Optimistic: a fresh source is tried before anything waits on it.
            ready: true,
            tick: 0,
            waker: None,
            waiters: Vec::new(),
        }
    }

    /// Moves every waker of this direction into `wakers`.
    fn take_wakers(&mut self, wakers: &mut Vec<Waker>) {
        if let Some(waker) = self.waker.take() {
            wakers.push(waker);
        }
        wakers.extend(self.waiters.drain(..).map(|(_, waker)| waker));
    }
}

#[derive(Debug)]
struct IoStateInner {
    directions: [DirectionState; 2],
    /// Set when the reactor shut down: every poll fails from then on.
    closed: bool,
    /// Set for good by the first event saying the peer closed its side (or an
    /// error): reads return at once from then on, so readiness seen after a
    /// short read is kept (see [`IoState::clear_ready_drained`]).
    read_closed: bool,
    /// Next [`WaiterId`] to hand out.
    next_waiter: u64,
}

/// Identifies one future waiting on one direction of an [`IoState`]; see the
/// module docs. Starts unassigned and gets an id on its first `Pending`.
#[derive(Debug, Default)]
pub(crate) struct WaiterId(Option<u64>);

/// Readiness of one registered source, shared between the driver and the futures.
#[derive(Debug)]
pub(crate) struct IoState {
    inner: Mutex<IoStateInner>,
}

impl IoState {
    /// A fresh state, optimistically ready in both directions.
    pub(crate) fn new() -> IoState {
        IoState {
            inner: Mutex::new(IoStateInner {
                directions: [DirectionState::new(), DirectionState::new()],
                closed: false,
                read_closed: false,
                next_waiter: 0,
            }),
        }
    }

    /// Records an event and returns the wakers to wake once no lock is held.
    /// `read_closed`: the event says the read side ended (peer closed, error).
    pub(crate) fn on_event(
        &self,
        readable: bool,
        writable: bool,
        read_closed: bool,
        wakers: &mut Vec<Waker>,
    ) {
        let mut inner = lock(&self.inner);
        inner.read_closed |= read_closed;
        for (hit, dir) in [(readable, Direction::Read), (writable, Direction::Write)] {
            if hit {
                let state = &mut inner.directions[dir.index()];
                state.ready = true;
                state.tick = state.tick.wrapping_add(1);
                state.take_wakers(wakers);
            }
        }
    }

    /// Marks the source closed and hands back every waiting waker.
    pub(crate) fn close(&self, wakers: &mut Vec<Waker>) {
        let mut inner = lock(&self.inner);
        inner.closed = true;
        for state in &mut inner.directions {
            state.take_wakers(wakers);
        }
    }

    /// Polls one direction for a `poll_*` caller; `Ready(tick)` means a syscall
    /// is worth trying. Only the last task to poll is woken (one shared slot).
    pub(crate) fn poll_ready(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return Poll::Ready(Err(reactor_gone()));
        }
        let state = &mut inner.directions[dir.index()];
        if state.ready {
            return Poll::Ready(Ok(state.tick));
        }
        match &mut state.waker {
            Some(existing) if existing.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Polls one direction for the future owning `id`: like [`IoState::poll_ready`],
    /// but every such future is woken by the next event, not only the last one.
    pub(crate) fn poll_ready_waiter(
        &self,
        dir: Direction,
        cx: &mut Context<'_>,
        id: &mut WaiterId,
    ) -> Poll<io::Result<u64>> {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return Poll::Ready(Err(reactor_gone()));
        }
        let IoStateInner {
            directions,
            next_waiter,
            ..
        } = &mut *inner;
        let state = &mut directions[dir.index()];
        if state.ready {
            return Poll::Ready(Ok(state.tick));
        }
        let key = *id.0.get_or_insert_with(|| {
            let key = *next_waiter;
            *next_waiter = next_waiter.wrapping_add(1);
            key
        });
        match state.waiters.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) => {
                if !existing.will_wake(cx.waker()) {
                    *existing = cx.waker().clone();
                }
            }
            // Not registered yet, or an event already took our waker: (re)insert.
            None => state.waiters.push((key, cx.waker().clone())),
        }
        Poll::Pending
    }

    /// Forgets the waiter `id` of one direction (its future was dropped or finished).
    pub(crate) fn remove_waiter(&self, dir: Direction, id: &WaiterId) {
        let Some(key) = id.0 else { return };
        let mut inner = lock(&self.inner);
        let waiters = &mut inner.directions[dir.index()].waiters;
        if let Some(pos) = waiters.iter().position(|(k, _)| *k == key) {
            waiters.swap_remove(pos);
        }
    }

    /// Clears readiness observed at `tick`, unless a newer event arrived since.
    pub(crate) fn clear_ready(&self, dir: Direction, tick: u64) {
        let mut inner = lock(&self.inner);
        let state = &mut inner.directions[dir.index()];
        if state.tick == tick {
            state.ready = false;
        }
    }

    /// Like [`IoState::clear_ready`] after an operation that emptied the
    /// source without `WouldBlock` (a short read of a stream socket), unless
    /// the read side has ended: the end-of-file (or error) still to be read
    /// raises no further event, so that readiness must stay.
    pub(crate) fn clear_ready_drained(&self, dir: Direction, tick: u64) {
        let mut inner = lock(&self.inner);
        if dir == Direction::Read && inner.read_closed {
            return;
        }
        let state = &mut inner.directions[dir.index()];
        if state.tick == tick {
            state.ready = false;
        }
    }
}

pub(crate) fn reactor_gone() -> io::Error {
    io::Error::other("the VedaRT reactor this I/O object was registered with has shut down")
}

/// Token-indexed table of registered sources. Freed slots are reused; an event for a
/// slot freed in the meantime finds `None` or a fresh `IoState` whose waiters simply
/// retry their syscall, which is harmless.
#[derive(Debug, Default)]
pub(crate) struct Slab {
    entries: Vec<Option<Arc<IoState>>>,
    free: Vec<usize>,
}

impl Slab {
    pub(crate) fn insert(&mut self, state: Arc<IoState>) -> usize {
        match self.free.pop() {
            Some(key) => {
                self.entries[key] = Some(state);
                key
            }
            None => {
                self.entries.push(Some(state));
                self.entries.len() - 1
            }
        }
    }

    pub(crate) fn remove(&mut self, key: usize) {
        if let Some(slot) = self.entries.get_mut(key) {
            if slot.take().is_some() {
                self.free.push(key);
            }
        }
    }

    pub(crate) fn get(&self, key: usize) -> Option<&Arc<IoState>> {
        self.entries.get(key).and_then(Option::as_ref)
    }

    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Arc<IoState>> + '_ {
        self.free.clear();
        self.entries.drain(..).flatten()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }
}
