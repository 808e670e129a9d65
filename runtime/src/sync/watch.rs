//! A single value that many tasks watch: the sender replaces it, receivers
//! read the latest and can wait until it changes (configuration reloads,
//! shutdown flags, progress). Intermediate values a receiver did not look at
//! are skipped, by design.
//!
//! The value sits under a read-write lock with a version number; a [`Notify`]
//! wakes receivers on every change. [`Receiver::changed`] and
//! [`Sender::closed`] are cancellation safe.
//!
//! # Examples
//!
#![doc = crate::example!()]
//! use vedart::sync::watch;
//!
//! let rt = vedart::Runtime::new()?;
//! rt.block_on(async {
//!     let (tx, mut rx) = watch::channel("starting");
//!     let observer = vedart::spawn(async move {
//!         while rx.changed().await.is_ok() {
//!             if *rx.borrow_and_update() == "ready" {
//!                 return true;
//!             }
//!         }
//!         false
//!     });
//!     tx.send("warming up").unwrap();
//!     tx.send("ready").unwrap();
//!     assert!(observer.await.unwrap());
//! });
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::ops::Deref;

use super::Notify;
use crate::sync_facade::atomic::AtomicUsize;
use crate::sync_facade::atomic::Ordering::SeqCst;
use crate::sync_facade::{Arc, RwLock, RwLockReadGuard, read, write};

/// Creates a channel holding `initial`; the receiver has already seen it.
pub fn channel<T>(initial: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: RwLock::new(State {
            value: initial,
            version: 0,
            closed: false,
        }),
        changed: Notify::new(),
        senders: AtomicUsize::new(1),
        receivers: AtomicUsize::new(1),
        receivers_gone: Notify::new(),
    });
    let receiver = Receiver {
        shared: shared.clone(),
        seen: 0,
    };
    (Sender { shared }, receiver)
}

struct Shared<T> {
    state: RwLock<State<T>>,
    /// `notify_waiters` on every change and on close.
    changed: Notify,
    senders: AtomicUsize,
    receivers: AtomicUsize,
    /// `notify_waiters` when the last receiver goes.
    receivers_gone: Notify,
}

struct State<T> {
    value: T,
    version: u64,
    /// Every sender is gone.
    closed: bool,
}

/// Replaces the value. Clone it for more senders; the channel closes when the
/// last one is dropped.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// Reads the latest value and waits for changes. Clone it for more readers
/// (the clone has seen what this one has seen).
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The version this receiver last marked seen.
    seen: u64,
}

/// A read guard on the value: keep it short, senders wait while it is held
/// (and never hold it across an `.await`).
pub struct Ref<'a, T>(RwLockReadGuard<'a, State<T>>);

impl<T> Deref for Ref<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.value.fmt(f)
    }
}

impl<T> Sender<T> {
    /// Replaces the value and wakes the receivers. Fails, giving the value
    /// back, when no receiver exists (the value is then not stored).
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.receivers.load(SeqCst) == 0 {
            return Err(SendError(value));
        }
        self.send_replace(value);
        Ok(())
    }

    /// Replaces the value whether or not anyone watches, and returns the old one.
    pub fn send_replace(&self, value: T) -> T {
        let mut value = value;
        self.send_modify(|current| std::mem::swap(current, &mut value));
        value
    }

    /// Changes the value in place and wakes the receivers.
    pub fn send_modify(&self, modify: impl FnOnce(&mut T)) {
        self.send_if_modified(|value| {
            modify(value);
            true
        });
    }

    /// Runs `modify` on the value; wakes the receivers only if it returns
    /// `true` (it must return `true` whenever it changed the value).
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        let modified = {
            let mut state = write(&self.shared.state);
            let modified = modify(&mut state.value);
            if modified {
                state.version += 1;
            }
            modified
        };
        if modified {
            self.shared.changed.notify_waiters();
        }
        modified
    }

    /// Reads the current value.
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref(read(&self.shared.state))
    }

    /// A new receiver that has seen the current value.
    pub fn subscribe(&self) -> Receiver<T> {
        self.shared.receivers.fetch_add(1, SeqCst);
        Receiver {
            shared: self.shared.clone(),
            seen: read(&self.shared.state).version,
        }
    }

    /// How many receivers exist.
    pub fn receiver_count(&self) -> usize {
        self.shared.receivers.load(SeqCst)
    }

    /// Whether every receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.receiver_count() == 0
    }

    /// Waits until every receiver is gone.
    pub async fn closed(&self) {
        loop {
            // Created before the check, so a drop in between still wakes it.
            let gone = self.shared.receivers_gone.notified();
            if self.is_closed() {
                return;
            }
            gone.await;
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, SeqCst);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, SeqCst) == 1 {
            write(&self.shared.state).closed = true;
            self.shared.changed.notify_waiters();
        }
    }
}

impl<T> Receiver<T> {
    /// Reads the current value, without marking it seen.
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref(read(&self.shared.state))
    }

    /// Reads the current value and marks it seen.
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let state = read(&self.shared.state);
        self.seen = state.version;
        Ref(state)
    }

    /// Whether the value changed since this receiver last marked it seen.
    /// Fails once every sender is gone.
    pub fn has_changed(&self) -> Result<bool, RecvError> {
        let state = read(&self.shared.state);
        if state.closed {
            return Err(RecvError);
        }
        Ok(state.version != self.seen)
    }

    /// Waits until the value changes from the one last marked seen, and
    /// marks it seen. Returns at once if it already changed; fails once every
    /// sender is gone (a change made before that is still reported first).
    /// Cancellation safe.
    pub async fn changed(&mut self) -> Result<(), RecvError> {
        loop {
            // Created before the check, so a send in between still wakes it.
            let notified = self.shared.changed.notified();
            {
                let state = read(&self.shared.state);
                if state.version != self.seen {
                    self.seen = state.version;
                    return Ok(());
                }
                if state.closed {
                    return Err(RecvError);
                }
            }
            notified.await;
        }
    }

    /// Waits until the value satisfies `condition` (checking the current one
    /// first), marks it seen and returns a read guard on it. Fails once every
    /// sender is gone and the value does not satisfy it.
    pub async fn wait_for(
        &mut self,
        mut condition: impl FnMut(&T) -> bool,
    ) -> Result<Ref<'_, T>, RecvError> {
        loop {
            let notified = self.shared.changed.notified();
            {
                let state = read(&self.shared.state);
                self.seen = state.version;
                if condition(&state.value) {
                    break;
                }
                if state.closed {
                    return Err(RecvError);
                }
            }
            notified.await;
        }
        Ok(Ref(read(&self.shared.state)))
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, SeqCst);
        Receiver {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.shared.receivers.fetch_sub(1, SeqCst) == 1 {
            self.shared.receivers_gone.notify_waiters();
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("value", &*self.borrow())
            .finish()
    }
}

impl<T: fmt::Debug> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("value", &*self.borrow())
            .field("seen", &self.seen)
            .finish()
    }
}

/// No receiver exists; the value that was not stored is inside.
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("watch channel has no receivers")
    }
}

impl<T> std::error::Error for SendError<T> {}

/// Every sender is gone.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct RecvError;

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("watch channel closed: every sender is gone")
    }
}

impl std::error::Error for RecvError {}
