//! The crate's one door to synchronization primitives.
//!
//! Everything that the reactor shares between threads comes from here, so that
//! `--features loom` swaps the whole crate to loom's model-checked types at once.

#[cfg(feature = "loom")]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard, atomic};

#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard, atomic};

/// Locks a mutex, ignoring poisoning: reactor state stays consistent across a
/// panicking waker because every critical section is a plain field update.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(feature = "loom")]
    {
        mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    #[cfg(not(feature = "loom"))]
    {
        mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `std`'s primitives in both builds, for process-wide state that no loom
/// model is about and that must be usable in `static`s: the fork handlers and
/// values made per process (see `fork`).
pub(crate) mod unmodelled {
    pub(crate) use std::sync::{Mutex, MutexGuard, atomic};

    /// Locks a `std` mutex, ignoring poisoning like [`super::lock`].
    pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
