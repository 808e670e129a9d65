//! The crate's one door to synchronization primitives.
//!
//! Every lock, condition variable and atomic the bindings share between threads
//! comes from here, as in the other VedaRT crates. The bindings have no loom
//! models of their own (their protocols live in `vedart-executors` and are
//! modelled there), so this facade always uses the standard library.

pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: every critical section in the bindings is
/// a plain field update that cannot leave the data half-written.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
