//! [`Notify`]: wakes one waiting task, or all of them, with no data attached.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::sync_facade::{Mutex, lock};

/// Wakes tasks with no data attached: the building block for "something
/// changed, look again".
///
/// - [`notify_one`](Notify::notify_one) wakes the task that waited longest; if
///   none waits, it stores one permit (at most one), which the next
///   [`notified`](Notify::notified) consumes at once. So a notification sent
///   between a task's check of a condition and its wait is never lost.
/// - [`notify_waiters`](Notify::notify_waiters) wakes every [`Notified`]
///   future that exists now, polled yet or not, and stores no permit.
///
/// `notified().await` is cancellation safe: a `Notified` dropped after
/// `notify_one` chose it hands the wake-up on to the next waiter (or back to
/// the permit), so none is lost.
///
/// The waiters are a queue under a mutex: no lock-free code of its own, and
/// the loom model `loom-tests/tests/notify.rs` checks that no wake-up is lost.
///
/// # Examples
///
#[doc = crate::example!()]
/// use std::sync::Arc;
/// use vedart::sync::Notify;
///
/// let rt = vedart::Runtime::new().unwrap();
/// rt.block_on(async {
///     let ready = Arc::new(Notify::new());
///     let waiter = vedart::spawn({
///         let ready = ready.clone();
///         async move { ready.notified().await }
///     });
///     ready.notify_one(); // before or after the wait starts: either way it arrives
///     waiter.await.unwrap();
/// });
/// ```
pub struct Notify {
    state: Mutex<State>,
}

struct State {
    /// One stored `notify_one` that no waiter took yet.
    permit: bool,
    /// Counts `notify_waiters` calls: a `Notified` created before a call
    /// completes, whether it was polled or not.
    generation: u64,
    /// Registered waiters, oldest first.
    waiters: VecDeque<Waiter>,
    next_waiter_id: u64,
}

struct Waiter {
    id: u64,
    waker: Waker,
    woken: Option<Wake>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Chosen by `notify_one`: owns a permit until it completes.
    One,
    /// Woken by `notify_waiters`.
    All,
}

impl Notify {
    /// A `Notify` with no permit stored.
    pub fn new() -> Notify {
        Notify {
            state: Mutex::new(State {
                permit: false,
                generation: 0,
                waiters: VecDeque::new(),
                next_waiter_id: 0,
            }),
        }
    }

    /// A future that completes on the next `notify_one` that picks it (or at
    /// once if a permit is stored), or on any `notify_waiters` called after
    /// it was created.
    pub fn notified(&self) -> Notified<'_> {
        let generation = lock(&self.state).generation;
        Notified {
            notify: self,
            generation,
            waiter: None,
            done: false,
        }
    }

    /// Wakes the longest-waiting task, or stores a permit if none waits.
    pub fn notify_one(&self) {
        let waker = Self::pass_on(&mut lock(&self.state));
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Wakes every `Notified` that exists now. Stores no permit.
    pub fn notify_waiters(&self) {
        let wakers: Vec<Waker> = {
            let mut state = lock(&self.state);
            state.generation += 1;
            state
                .waiters
                .iter_mut()
                .filter(|waiter| waiter.woken.is_none())
                .map(|waiter| {
                    waiter.woken = Some(Wake::All);
                    waiter.waker.clone()
                })
                .collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Gives one notification to the oldest waiter not yet woken (returning
    /// its waker, to wake after the lock is released), or stores the permit.
    fn pass_on(state: &mut State) -> Option<Waker> {
        match state.waiters.iter_mut().find(|w| w.woken.is_none()) {
            Some(waiter) => {
                waiter.woken = Some(Wake::One);
                Some(waiter.waker.clone())
            }
            None => {
                state.permit = true;
                None
            }
        }
    }
}

impl Default for Notify {
    fn default() -> Notify {
        Notify::new()
    }
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        f.debug_struct("Notify")
            .field("permit", &state.permit)
            .field("waiters", &state.waiters.len())
            .finish()
    }
}

/// The future of [`Notify::notified`].
#[must_use = "a Notified does nothing unless awaited"]
pub struct Notified<'a> {
    notify: &'a Notify,
    generation: u64,
    /// Our id in the waiter queue once registered.
    waiter: Option<u64>,
    done: bool,
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        let this = &mut *self;
        let mut state = lock(&this.notify.state);
        match this.waiter {
            None => {
                if state.generation != this.generation {
                    this.done = true;
                } else if state.permit {
                    state.permit = false;
                    this.done = true;
                } else {
                    let id = state.next_waiter_id;
                    state.next_waiter_id += 1;
                    state.waiters.push_back(Waiter {
                        id,
                        waker: cx.waker().clone(),
                        woken: None,
                    });
                    this.waiter = Some(id);
                }
            }
            Some(id) => {
                let position = state.waiters.iter().position(|w| w.id == id);
                // Only this future removes its own entry.
                let Some(position) = position else {
                    unreachable!("a registered Notified is in the queue until it completes")
                };
                if state.waiters[position].woken.is_some() {
                    state.waiters.remove(position);
                    this.waiter = None;
                    this.done = true;
                } else if !state.waiters[position].waker.will_wake(cx.waker()) {
                    state.waiters[position].waker = cx.waker().clone();
                }
            }
        }
        if this.done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        let Some(id) = self.waiter else { return };
        let waker = {
            let mut state = lock(&self.notify.state);
            let position = state.waiters.iter().position(|w| w.id == id);
            let removed = position.and_then(|position| state.waiters.remove(position));
            match removed {
                // Chosen by notify_one but never completed: pass it on.
                Some(Waiter {
                    woken: Some(Wake::One),
                    ..
                }) => Notify::pass_on(&mut state),
                _ => None,
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl fmt::Debug for Notified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notified")
            .field("registered", &self.waiter.is_some())
            .field("done", &self.done)
            .finish()
    }
}
