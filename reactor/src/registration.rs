//! Per-source readiness state and the table that maps mio tokens to it.
//!
//! # How readiness is tracked
//!
//! mio is edge-triggered: an event says "this direction became ready" once. Each
//! registered source keeps, per direction, a `ready` flag, a `tick` counter and
//! the waker of the task waiting on that direction.
//!
//! 1. The driver receives an event, sets `ready`, bumps `tick`, takes the waker
//!    and wakes it after releasing the lock.
//! 2. A future polls a direction: if `ready` is set it returns the current tick;
//!    otherwise it stores (or replaces, when the task moved) its waker.
//! 3. The caller tries the syscall. On `WouldBlock` it clears readiness *only
//!    if the tick is unchanged*, so an event that arrived between the syscall
//!    and the clear is never lost.
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

#[derive(Debug, Default)]
struct DirectionState {
    ready: bool,
    tick: u64,
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct IoStateInner {
    directions: [DirectionState; 2],
    /// Set when the reactor shut down: every poll fails from then on.
    closed: bool,
}

/// Readiness of one registered source, shared between the driver and the futures.
#[derive(Debug, Default)]
pub(crate) struct IoState {
    inner: Mutex<IoStateInner>,
}

impl IoState {
    /// Records an event and returns the wakers to wake once no lock is held.
    pub(crate) fn on_event(&self, readable: bool, writable: bool, wakers: &mut Vec<Waker>) {
        let mut inner = lock(&self.inner);
        for (hit, dir) in [(readable, Direction::Read), (writable, Direction::Write)] {
            if hit {
                let state = &mut inner.directions[dir.index()];
                state.ready = true;
                state.tick = state.tick.wrapping_add(1);
                if let Some(waker) = state.waker.take() {
                    wakers.push(waker);
                }
            }
        }
    }

    /// Marks the source closed and hands back every waiting waker.
    pub(crate) fn close(&self, wakers: &mut Vec<Waker>) {
        let mut inner = lock(&self.inner);
        inner.closed = true;
        for state in &mut inner.directions {
            if let Some(waker) = state.waker.take() {
                wakers.push(waker);
            }
        }
    }

    /// Polls one direction; `Ready(tick)` means a syscall is worth trying.
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

    /// Clears readiness observed at `tick`, unless a newer event arrived since.
    pub(crate) fn clear_ready(&self, dir: Direction, tick: u64) {
        let mut inner = lock(&self.inner);
        let state = &mut inner.directions[dir.index()];
        if state.tick == tick {
            state.ready = false;
        }
    }

    /// Forgets the waiter of one direction (its future was dropped).
    pub(crate) fn drop_waker(&self, dir: Direction) {
        lock(&self.inner).directions[dir.index()].waker = None;
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
