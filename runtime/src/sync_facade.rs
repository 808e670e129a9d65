//! The crate's one door to synchronization primitives.
//!
//! Everything the scheduler shares between threads comes from here, so that
//! `--features loom` swaps the whole crate to loom's model-checked types at
//! once. Nothing else in the crate names `std::sync` atomics, locks or
//! `std::cell::UnsafeCell` directly.
//!
//! - [`UnsafeCell`] has loom's closure API (`with` / `with_mut`) in both builds,
//!   so loom can check every access to cells shared between threads.
//! - [`lock`] and [`wait`] ignore poisoning: every critical section in this crate
//!   is a plain field update that leaves the data consistent even if a thread
//!   panics while holding the lock.
//! - [`thread_local!`] is loom's under loom: loom runs its threads on one OS
//!   thread, so `std`'s thread locals would be shared between them.

#[cfg(feature = "loom")]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(feature = "loom")]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, atomic,
};
#[cfg(feature = "loom")]
pub(crate) use loom::thread_local;

#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, atomic,
};

/// `std`'s primitives in both builds, for state no loom model is about:
/// telemetry counters (relaxed, never used to synchronize anything), the
/// process-wide registry of runtimes, and the deterministic flavour, which
/// runs on one thread.
pub(crate) mod unmodelled {
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard, Weak, atomic};

    /// Locks a `std` mutex, ignoring poisoning like [`super::lock`].
    pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
#[cfg(not(feature = "loom"))]
pub(crate) use std::thread_local;

/// `std::cell::UnsafeCell` with loom's closure-based access API.
#[cfg(not(feature = "loom"))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(feature = "loom"))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    pub(crate) const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared raw pointer to the value.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with an exclusive raw pointer to the value.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Locks `mutex`, ignoring poisoning (see the module docs).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Read-locks `rwlock`, ignoring poisoning (see the module docs).
pub(crate) fn read<T>(rwlock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rwlock
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Write-locks `rwlock`, ignoring poisoning (see the module docs).
pub(crate) fn write<T>(rwlock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rwlock
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits on `condvar`, ignoring poisoning (see the module docs).
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits on `condvar` for at most `timeout` (loom's condvar never times out),
/// ignoring poisoning.
pub(crate) fn wait_timeout<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: std::time::Duration,
) -> MutexGuard<'a, T> {
    match condvar.wait_timeout(guard, timeout) {
        Ok((guard, _)) => guard,
        Err(poisoned) => poisoned.into_inner().0,
    }
}
