//! The crate's one door to synchronization primitives and threads.
//!
//! Everything that the crate shares between threads comes from here, so that
//! `--features loom` swaps the whole crate to loom's model-checked types at once:
//! locks, condition variables, atomics and thread spawning. Nothing else in the
//! crate names `std::sync` or `std::thread` for these.
//!
//! Under loom, [`wait_timeout`] never times out (loom has no clock), so time-based
//! behaviour such as the blocking pool's keep-alive is modelled as "no timeout".

#[cfg(feature = "loom")]
#[allow(unused_imports)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard, atomic};

#[cfg(not(feature = "loom"))]
#[allow(unused_imports)]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard, atomic};

/// Threads: `Builder`, `JoinHandle`, `ThreadId` and `current`, from loom under the
/// `loom` feature and from std otherwise. Both expose the same subset used here.
pub(crate) mod thread {
    #[cfg(feature = "loom")]
    pub(crate) use loom::thread::{Builder, JoinHandle, current};

    #[cfg(not(feature = "loom"))]
    pub(crate) use std::thread::{Builder, JoinHandle, current};
}

/// Primitives that loom never models, always from std: process-wide registries
/// created outside any loom model (statics), and state shared with threads that
/// loom cannot drive (CUDA driver threads running host callbacks). Code that
/// uses these is not part of a loom model.
pub(crate) mod unmodelled {
    #[allow(unused_imports)]
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak, atomic, mpsc};

    /// Locks a std mutex, ignoring poisoning like [`super::lock`].
    #[allow(dead_code)]
    pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

use std::time::Duration;

/// Locks a mutex, ignoring poisoning: every critical section in this crate is a
/// plain field update that leaves the state consistent even if a panic unwinds
/// through a guard, and no user code runs under a lock.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits on `condvar`, ignoring poisoning like [`lock`].
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits on `condvar` for at most `timeout`, ignoring poisoning like [`lock`].
///
/// Returns the guard and whether the wait timed out. Under loom this waits for a
/// notification only and never reports a timeout.
pub(crate) fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: Duration,
) -> (MutexGuard<'a, T>, bool) {
    let (guard, result) = condvar
        .wait_timeout(guard, timeout)
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    (guard, result.timed_out())
}
