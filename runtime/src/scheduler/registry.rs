//! Every idle task of a runtime, so that shutdown can cancel them.
//!
//! A task that waits on something no other task or driver will ever complete
//! (say two tasks each awaiting a channel the other holds) sits in no queue and
//! in no reactor table. Dropping the runtime must still drop its future, so
//! that the resources it holds are released. The registry keeps one [`Waker`]
//! per task that has ever returned `Pending`; shutdown closes it and wakes them
//! all, and a task woken after shutdown is dropped instead of run (see
//! `scheduler::Shared::schedule_remote`).
//!
//! Tasks that complete in their first poll (most short tasks) never touch it:
//! until a task returns `Pending` it is always in a queue or running, and
//! shutdown drains the queues.
//!
//! # Protocol
//!
//! 1. The first time a task's future returns `Pending`, its wrapper locks a
//!    shard; if the shard is closed the task completes as cancelled instead
//!    (shutdown already began). Otherwise it stores the task's waker and keeps
//!    the key.
//! 2. When the task's future is dropped (it completed, was aborted, or was
//!    cancelled) its wrapper removes the key, if it has one.
//! 3. Shutdown closes each shard and takes its wakers under the lock, then
//!    wakes them with no lock held (a waker may drop a future whose drop
//!    removes its own key, taking the same lock).
//!
//! A key is reused only after removal, and nothing is inserted after a shard
//! closes, so step 2 never removes another task's entry.
//!
//! Shards (one per worker, rounded up to a power of two) keep registrations
//! on different workers off each other's locks.

use std::fmt;
use std::task::Waker;

use crate::sync_facade::{Mutex, lock};

/// Where a task's waker lives in the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    shard: u32,
    key: u32,
}

impl Slot {
    /// The slot of a task that is not registered.
    pub(crate) const NONE: Slot = Slot {
        shard: u32::MAX,
        key: u32::MAX,
    };

    /// The slot of a task that finished (and so left the registry, if it
    /// was in it): a marker for the task's owner, never registered either.
    pub(crate) const FINISHED: Slot = Slot {
        shard: u32::MAX,
        key: u32::MAX - 1,
    };
}

/// The sharded table of live tasks.
pub(crate) struct Registry {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
}

/// Keeps each shard's lock on its own cache line.
#[repr(align(128))]
struct CachePadded<T>(T);

#[derive(Default)]
struct Shard {
    entries: Vec<Entry>,
    /// Head of the free list, `entries.len()` when empty.
    next_free: usize,
    live: usize,
    closed: bool,
}

enum Entry {
    Occupied(Waker),
    Vacant(usize),
}

impl Registry {
    /// A registry for a runtime with `workers` workers.
    pub(crate) fn new(workers: usize) -> Registry {
        let shards = workers.max(1).next_power_of_two();
        Registry {
            shards: (0..shards)
                .map(|_| CachePadded(Mutex::new(Shard::default())))
                .collect(),
        }
    }

    /// Step 1: stores a task's waker in the shard picked by `hint`. Returns
    /// `None` once the registry is closed.
    pub(crate) fn register(&self, hint: usize, waker: &Waker) -> Option<Slot> {
        let index = hint & (self.shards.len() - 1);
        let mut shard = lock(&self.shards[index].0);
        if shard.closed {
            return None;
        }
        let key = shard.next_free;
        let slot = Slot {
            shard: index as u32,
            key: u32::try_from(key).expect("more than 4 billion idle tasks in one shard"),
        };
        let entry = Entry::Occupied(waker.clone());
        if key == shard.entries.len() {
            shard.entries.push(entry);
            shard.next_free = key + 1;
        } else {
            match std::mem::replace(&mut shard.entries[key], entry) {
                Entry::Vacant(next) => shard.next_free = next,
                Entry::Occupied(_) => unreachable!("registry free list points at a live entry"),
            }
        }
        shard.live += 1;
        Some(slot)
    }

    /// Step 2: forgets a task whose future was dropped.
    pub(crate) fn remove(&self, slot: Slot) {
        if slot == Slot::NONE || slot == Slot::FINISHED {
            return;
        }
        let mut shard = lock(&self.shards[slot.shard as usize].0);
        let key = slot.key as usize;
        let next_free = shard.next_free;
        let removed = match shard.entries.get_mut(key) {
            Some(entry @ Entry::Occupied(_)) => std::mem::replace(entry, Entry::Vacant(next_free)),
            // Already drained by shutdown.
            _ => return,
        };
        shard.next_free = key;
        shard.live -= 1;
        drop(shard);
        // Dropping a waker may free the task: do it with no lock held.
        drop(removed);
    }

    /// Step 3: closes every shard and returns every live task's waker.
    pub(crate) fn close_and_drain(&self) -> Vec<Waker> {
        let mut wakers = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = lock(&shard.0);
            shard.closed = true;
            shard.live = 0;
            shard.next_free = 0;
            wakers.extend(shard.entries.drain(..).filter_map(|entry| match entry {
                Entry::Occupied(waker) => Some(waker),
                Entry::Vacant(_) => None,
            }));
        }
        wakers
    }

    /// Number of live tasks (takes every shard lock: diagnostics only).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(&shard.0).live).sum()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("shards", &self.shards.len())
            .field("live", &self.len())
            .finish()
    }
}

#[cfg(all(test, not(feature = "loom")))]
mod tests {
    use super::*;

    #[test]
    fn keys_are_reused_after_removal_and_not_before() {
        let registry = Registry::new(1);
        let a = registry.register(0, Waker::noop()).unwrap();
        let b = registry.register(0, Waker::noop()).unwrap();
        assert_ne!(a, b);
        registry.remove(a);
        // Removing twice is harmless.
        registry.remove(a);
        assert_eq!(registry.len(), 1);
        let c = registry.register(0, Waker::noop()).unwrap();
        assert_eq!(c, a);
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn closing_drains_and_refuses() {
        let registry = Registry::new(3);
        for hint in 0..10 {
            registry.register(hint, Waker::noop()).unwrap();
        }
        assert_eq!(registry.close_and_drain().len(), 10);
        assert_eq!(registry.len(), 0);
        assert!(registry.register(0, Waker::noop()).is_none());
        // A task dropped after the drain finds nothing to remove.
        registry.remove(Slot { shard: 0, key: 0 });
    }
}
