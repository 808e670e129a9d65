//! Run queues: each worker's bounded local queue and the global injector.
//!
//! # The local queue
//!
//! A fixed ring of [`LOCAL_QUEUE_CAPACITY`] slots (a single-producer,
//! multi-consumer queue in the style of Go's and tokio's schedulers). Only the
//! owning worker pushes, at `tail`; the owner pops and other workers steal at
//! `head`. `head` packs two positions into one `u64`:
//!
//! - `real`: the next slot to hand out;
//! - `steal`: the first slot a stealer is still copying out. It equals `real`
//!   except while a steal is in progress.
//!
//! Positions are `u32` counters that wrap; a slot index is `position & MASK`.
//! Invariants, which the loom model in `loom-tests/tests/local_queue.rs` checks:
//!
//! 1. Slots in `[real, tail)` hold tasks that exactly one consumer will take.
//! 2. Slots in `[steal, real)` are being copied by one stealer; the owner must
//!    not overwrite them, so a push counts from `steal` when it checks for room.
//! 3. At most one steal runs at a time (a stealer that sees `steal != real`
//!    gives up), so a steal can never be observed half-finished by another.
//!
//! # Steal protocol
//!
//! 1. The stealer reads `head` and the victim's `tail`; if a steal is already
//!    in progress it gives up.
//! 2. It claims half the tasks, rounded up: CAS `head` from `(s, r)` to
//!    `(s, r + n)`. The victim's owner may still pop at `real` concurrently.
//! 3. It copies the claimed slots into its own queue (it is their only owner
//!    now; invariant 2 keeps the victim from overwriting them).
//! 4. It publishes the end of the steal: CAS `head` to `(real, real)`, retrying
//!    while the owner's pops move `real`.
//! 5. It makes the copied tasks visible in its own queue with a release store of
//!    its `tail`, keeping the last one to run at once.
//!
//! # Overflow
//!
//! When the ring is full the owner moves the oldest half, plus the task being
//! pushed, to the [`Injector`] in one go. Moving half (not one) amortizes the
//! injector's cost over many pushes, as tokio does.
//!
//! # The injector
//!
//! An unbounded MPMC queue that any thread can push to: tasks spawned or woken
//! from outside the runtime, and overflow. It is `concurrent_queue`'s unbounded
//! queue, or, under loom (which cannot see that crate's atomics), a
//! `Mutex<VecDeque>` from the sync facade. Closing it at shutdown makes every
//! later push fail, so a task woken after shutdown is dropped at once instead
//! of leaking in a queue nobody drains.

use std::fmt;
use std::mem::MaybeUninit;
use std::ptr;

use crate::sync_facade::Arc;
use crate::sync_facade::UnsafeCell;
use crate::sync_facade::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use crate::sync_facade::atomic::{AtomicU32, AtomicU64};

/// Slots in a worker's local queue. Small under loom so models reach overflow.
#[cfg(not(feature = "loom"))]
pub(crate) const LOCAL_QUEUE_CAPACITY: usize = 256;
/// Slots in a worker's local queue. Small under loom so models reach overflow.
#[cfg(feature = "loom")]
pub(crate) const LOCAL_QUEUE_CAPACITY: usize = 4;

const MASK: usize = LOCAL_QUEUE_CAPACITY - 1;

/// Shared state of one local queue.
struct Inner<T> {
    /// Packed `(steal, real)` positions, see the module docs.
    head: AtomicU64,
    /// One past the last pushed slot; written only by the owner.
    tail: AtomicU32,
    /// The ring.
    ///
    /// # Invariant
    ///
    /// A slot holds an initialized `T` exactly when its position lies in
    /// `[steal, tail)`; see the module docs for who may touch which slot.
    buffer: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: tasks move between threads through the queue (`T: Send`); every slot
// access is arbitrated by the `head`/`tail` protocol described in the module docs.
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: as above: shared access from stealers only touches slots that the
// protocol hands to exactly one thread.
unsafe impl<T: Send> Sync for Inner<T> {}

/// The owner's end of a local queue: push and pop. Not `Clone`: exactly one.
pub(crate) struct Local<T> {
    inner: Arc<Inner<T>>,
}

/// Another worker's end of a local queue: steal half.
pub(crate) struct Steal<T>(Arc<Inner<T>>);

/// Creates a local queue, returning the stealers' end and the owner's end.
pub(crate) fn local<T>() -> (Steal<T>, Local<T>) {
    let buffer = (0..LOCAL_QUEUE_CAPACITY)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let inner = Arc::new(Inner {
        head: AtomicU64::new(0),
        tail: AtomicU32::new(0),
        buffer,
    });
    (Steal(inner.clone()), Local { inner })
}

fn unpack(head: u64) -> (u32, u32) {
    ((head >> 32) as u32, head as u32)
}

fn pack(steal: u32, real: u32) -> u64 {
    (u64::from(steal) << 32) | u64::from(real)
}

impl<T> Inner<T> {
    /// Moves the task out of the slot at `position`.
    ///
    /// # Safety
    ///
    /// The caller must own the slot under the queue protocol, and the slot must
    /// hold an initialized task that nobody else will read.
    unsafe fn take(&self, position: u32) -> T {
        self.buffer[position as usize & MASK]
            // SAFETY: guaranteed by the caller.
            .with(|slot| unsafe { ptr::read(slot).assume_init() })
    }

    /// Writes `task` into the slot at `position`.
    ///
    /// # Safety
    ///
    /// The caller must own the (empty) slot under the queue protocol.
    unsafe fn put(&self, position: u32, task: T) {
        self.buffer[position as usize & MASK]
            // SAFETY: guaranteed by the caller.
            .with_mut(|slot| unsafe { ptr::write(slot, MaybeUninit::new(task)) });
    }
}

impl<T> Local<T> {
    /// The owner's view of `tail`: it is the only writer.
    fn tail(&self) -> u32 {
        self.inner.tail.load(Relaxed)
    }

    /// Number of tasks a pop could still return.
    pub(crate) fn len(&self) -> usize {
        let (_, real) = unpack(self.inner.head.load(Acquire));
        self.tail().wrapping_sub(real) as usize
    }

    /// Whether the queue holds a task.
    pub(crate) fn has_tasks(&self) -> bool {
        self.len() != 0
    }

    /// Free slots, counting slots a stealer is still copying out as taken.
    pub(crate) fn remaining_slots(&self) -> usize {
        let (steal, _) = unpack(self.inner.head.load(Acquire));
        LOCAL_QUEUE_CAPACITY - self.tail().wrapping_sub(steal) as usize
    }

    /// Pushes `task`; when the ring is full, moves half of it and `task` to
    /// `overflow`. A task the injector refuses (it is closed: the runtime shut
    /// down) is dropped, which cancels it.
    pub(crate) fn push_back_or_overflow(&mut self, mut task: T, overflow: &Injector<T>) {
        let tail = loop {
            let head = self.inner.head.load(Acquire);
            let (steal, real) = unpack(head);
            let tail = self.tail();
            if tail.wrapping_sub(steal) < LOCAL_QUEUE_CAPACITY as u32 {
                break tail;
            } else if steal != real {
                // A stealer is emptying the ring right now: do not wait for it.
                drop(overflow.push(task));
                return;
            } else {
                match self.push_overflow(task, real, tail, overflow) {
                    Ok(()) => return,
                    // A stealer (or nobody: the CAS is weak) raced us; retry.
                    Err(back) => task = back,
                }
            }
        };
        // SAFETY: `tail - steal < capacity`, so the slot at `tail` is outside
        // `[steal, tail)`: empty, and only the owner (us) writes there.
        unsafe { self.inner.put(tail, task) };
        self.inner.tail.store(tail.wrapping_add(1), Release);
    }

    /// Moves the oldest half of a full ring, then `task`, to the injector.
    #[cold]
    fn push_overflow(
        &mut self,
        task: T,
        head: u32,
        tail: u32,
        overflow: &Injector<T>,
    ) -> Result<(), T> {
        const TAKEN: u32 = (LOCAL_QUEUE_CAPACITY / 2) as u32;
        debug_assert_eq!(tail.wrapping_sub(head) as usize, LOCAL_QUEUE_CAPACITY);
        let claimed = pack(head.wrapping_add(TAKEN), head.wrapping_add(TAKEN));
        if self
            .inner
            .head
            .compare_exchange_weak(pack(head, head), claimed, Release, Relaxed)
            .is_err()
        {
            return Err(task);
        }
        for i in 0..TAKEN {
            // SAFETY: the CAS above moved `head` past these slots, so neither
            // the owner's pops nor stealers can reach them: they are ours.
            let moved = unsafe { self.inner.take(head.wrapping_add(i)) };
            drop(overflow.push(moved));
        }
        drop(overflow.push(task));
        Ok(())
    }

    /// Pushes a batch; the caller guarantees there is room for all of it.
    pub(crate) fn push_back_batch(&mut self, tasks: impl Iterator<Item = T>) {
        let (steal, _) = unpack(self.inner.head.load(Acquire));
        let mut tail = self.tail();
        for task in tasks {
            assert!(
                (tail.wrapping_sub(steal) as usize) < LOCAL_QUEUE_CAPACITY,
                "push_back_batch: no room in the local queue"
            );
            // SAFETY: the assert keeps the slot outside `[steal, tail)`; only
            // the owner writes at `tail`.
            unsafe { self.inner.put(tail, task) };
            tail = tail.wrapping_add(1);
        }
        self.inner.tail.store(tail, Release);
    }

    /// Pops the oldest task.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let mut head = self.inner.head.load(Acquire);
        let position = loop {
            let (steal, real) = unpack(head);
            if real == self.tail() {
                return None;
            }
            let next_real = real.wrapping_add(1);
            // With no steal in progress both halves move together.
            let next = if steal == real {
                pack(next_real, next_real)
            } else {
                pack(steal, next_real)
            };
            match self
                .inner
                .head
                .compare_exchange_weak(head, next, AcqRel, Acquire)
            {
                Ok(_) => break real,
                Err(actual) => head = actual,
            }
        };
        // SAFETY: the CAS moved `real` past `position`, handing its task to us alone.
        Some(unsafe { self.inner.take(position) })
    }
}

impl<T> Steal<T> {
    /// Whether the queue looks empty (racy: for wake-up heuristics only).
    pub(crate) fn is_empty(&self) -> bool {
        let (_, real) = unpack(self.0.head.load(Acquire));
        self.0.tail.load(Acquire) == real
    }

    /// Number of tasks queued (racy: for telemetry only).
    pub(crate) fn len(&self) -> usize {
        let (_, real) = unpack(self.0.head.load(Acquire));
        // Read in the other order from a push, the difference may briefly be
        // "negative"; such a reading means an empty queue.
        let len = self.0.tail.load(Acquire).wrapping_sub(real) as usize;
        if len > LOCAL_QUEUE_CAPACITY { 0 } else { len }
    }

    /// Steals half of this queue into `dst`, returning one stolen task to run
    /// now. `None` if there was nothing to steal, another steal was in
    /// progress, or `dst` lacks room for half a queue.
    pub(crate) fn steal_into(&self, dst: &mut Local<T>) -> Option<T> {
        let dst_tail = dst.tail();
        let (dst_steal, _) = unpack(dst.inner.head.load(Acquire));
        if dst_tail.wrapping_sub(dst_steal) > LOCAL_QUEUE_CAPACITY as u32 / 2 {
            return None;
        }
        let mut n = self.steal_into_raw(dst, dst_tail);
        if n == 0 {
            return None;
        }
        // Keep the last stolen task to run now; publish the others.
        n -= 1;
        // SAFETY: `steal_into_raw` wrote `n + 1` tasks at `dst_tail..`, which
        // are not yet published (tail unchanged), so only we can see them.
        let task = unsafe { dst.inner.take(dst_tail.wrapping_add(n)) };
        if n > 0 {
            dst.inner.tail.store(dst_tail.wrapping_add(n), Release);
        }
        Some(task)
    }

    /// Steps 1 to 4 of the steal protocol; returns how many tasks were copied
    /// into `dst` starting at `dst_tail` (unpublished).
    fn steal_into_raw(&self, dst: &mut Local<T>, dst_tail: u32) -> u32 {
        let mut prev = self.0.head.load(Acquire);
        let (first, n, mut claimed) = loop {
            let (steal, real) = unpack(prev);
            let tail = self.0.tail.load(Acquire);
            if steal != real {
                // Another stealer is at work on this queue.
                return 0;
            }
            let available = tail.wrapping_sub(real);
            let n = available - available / 2;
            if n == 0 {
                return 0;
            }
            let next = pack(steal, real.wrapping_add(n));
            match self
                .0
                .head
                .compare_exchange_weak(prev, next, AcqRel, Acquire)
            {
                Ok(_) => break (real, n, next),
                Err(actual) => prev = actual,
            }
        };
        debug_assert!(n as usize <= LOCAL_QUEUE_CAPACITY / 2);
        for i in 0..n {
            // SAFETY: the CAS claimed `[first, first + n)` for this stealer
            // (invariant 2 keeps the owner off them until step 4), and `dst`
            // has room past its tail (checked by the caller), which only the
            // destination's owner (our caller) writes.
            unsafe {
                let task = self.0.take(first.wrapping_add(i));
                dst.inner.put(dst_tail.wrapping_add(i), task);
            }
        }
        // Step 4: mark the steal finished; the owner may have popped meanwhile.
        loop {
            let (_, real) = unpack(claimed);
            match self
                .0
                .head
                .compare_exchange_weak(claimed, pack(real, real), AcqRel, Acquire)
            {
                Ok(_) => return n,
                Err(actual) => claimed = actual,
            }
        }
    }
}

impl<T> Clone for Steal<T> {
    fn clone(&self) -> Steal<T> {
        Steal(self.0.clone())
    }
}

impl<T> fmt::Debug for Local<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Local").field("len", &self.len()).finish()
    }
}

impl<T> fmt::Debug for Steal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Steal")
            .field("is_empty", &self.is_empty())
            .finish()
    }
}

impl<T> Drop for Local<T> {
    fn drop(&mut self) {
        // Drop (cancel) whatever is left; stealers only hold `Steal` ends.
        while self.pop().is_some() {}
    }
}

/// The global queue: unbounded, any thread pushes, workers pop.
pub(crate) struct Injector<T> {
    #[cfg(not(feature = "loom"))]
    queue: concurrent_queue::ConcurrentQueue<T>,
    #[cfg(feature = "loom")]
    queue: crate::sync_facade::Mutex<(std::collections::VecDeque<T>, bool)>,
}

impl<T> Injector<T> {
    /// An empty, open injector.
    pub(crate) fn new() -> Injector<T> {
        Injector {
            #[cfg(not(feature = "loom"))]
            queue: concurrent_queue::ConcurrentQueue::unbounded(),
            #[cfg(feature = "loom")]
            queue: crate::sync_facade::Mutex::new((std::collections::VecDeque::new(), false)),
        }
    }

    /// Pushes `task`, or hands it back if the injector is closed.
    pub(crate) fn push(&self, task: T) -> Result<(), T> {
        #[cfg(not(feature = "loom"))]
        {
            self.queue.push(task).map_err(|err| err.into_inner())
        }
        #[cfg(feature = "loom")]
        {
            let mut queue = crate::sync_facade::lock(&self.queue);
            if queue.1 {
                return Err(task);
            }
            queue.0.push_back(task);
            Ok(())
        }
    }

    /// Pops the oldest task.
    pub(crate) fn pop(&self) -> Option<T> {
        #[cfg(not(feature = "loom"))]
        {
            self.queue.pop().ok()
        }
        #[cfg(feature = "loom")]
        {
            crate::sync_facade::lock(&self.queue).0.pop_front()
        }
    }

    /// Number of queued tasks (racy).
    pub(crate) fn len(&self) -> usize {
        #[cfg(not(feature = "loom"))]
        {
            self.queue.len()
        }
        #[cfg(feature = "loom")]
        {
            crate::sync_facade::lock(&self.queue).0.len()
        }
    }

    /// Whether the injector looks empty (racy).
    pub(crate) fn is_empty(&self) -> bool {
        #[cfg(not(feature = "loom"))]
        {
            self.queue.is_empty()
        }
        #[cfg(feature = "loom")]
        {
            crate::sync_facade::lock(&self.queue).0.is_empty()
        }
    }

    /// Refuses every later push. Returns whether this call closed it.
    pub(crate) fn close(&self) -> bool {
        #[cfg(not(feature = "loom"))]
        {
            self.queue.close()
        }
        #[cfg(feature = "loom")]
        {
            let mut queue = crate::sync_facade::lock(&self.queue);
            !std::mem::replace(&mut queue.1, true)
        }
    }
}

impl<T> fmt::Debug for Injector<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Injector")
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(all(test, not(feature = "loom")))]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trips_and_keeps_halves_apart() {
        assert_eq!(unpack(pack(7, 9)), (7, 9));
        assert_eq!(unpack(pack(u32::MAX, 0)), (u32::MAX, 0));
        assert_eq!(pack(1, 0), 1 << 32);
        assert_eq!(pack(0, 1), 1);
    }

    #[test]
    fn overflow_moves_half_plus_one_to_the_injector() {
        let (_steal, mut local) = local::<usize>();
        let injector = Injector::new();
        for i in 0..=LOCAL_QUEUE_CAPACITY {
            local.push_back_or_overflow(i, &injector);
        }
        assert_eq!(local.len(), LOCAL_QUEUE_CAPACITY / 2);
        assert_eq!(injector.len(), LOCAL_QUEUE_CAPACITY / 2 + 1);
        // The oldest half went first, then the task being pushed.
        assert_eq!(injector.pop(), Some(0));
        let mut all: Vec<usize> = std::iter::from_fn(|| injector.pop()).collect();
        all.extend(std::iter::from_fn(|| local.pop()));
        all.sort_unstable();
        assert_eq!(all, (1..=LOCAL_QUEUE_CAPACITY).collect::<Vec<_>>());
    }

    #[test]
    fn steal_takes_half_rounded_up_and_keeps_order() {
        let (steal, mut victim) = local::<usize>();
        let (_, mut thief) = local::<usize>();
        let injector = Injector::new();
        for i in 0..5 {
            victim.push_back_or_overflow(i, &injector);
        }
        // Half of 5 rounded up is 3: tasks 0, 1, 2; the last one is returned.
        assert_eq!(steal.steal_into(&mut thief), Some(2));
        assert_eq!(thief.pop(), Some(0));
        assert_eq!(thief.pop(), Some(1));
        assert_eq!(thief.pop(), None);
        assert_eq!(victim.pop(), Some(3));
        assert_eq!(victim.len(), 1);
    }

    #[test]
    fn positions_wrap_around_u32() {
        let (steal, mut local) = local::<u32>();
        let injector = Injector::new();
        // Start just below the wrap point.
        let start = u32::MAX - 2;
        local.inner.head.store(pack(start, start), Relaxed);
        local.inner.tail.store(start, Relaxed);
        for i in 0..6 {
            local.push_back_or_overflow(i, &injector);
        }
        let (_, mut thief) = super::local::<u32>();
        assert_eq!(steal.steal_into(&mut thief), Some(2));
        assert_eq!(local.pop(), Some(3));
        assert_eq!(local.pop(), Some(4));
        assert_eq!(local.pop(), Some(5));
        assert_eq!(local.pop(), None);
    }

    #[test]
    fn closed_injector_refuses_pushes_but_drains() {
        let injector = Injector::new();
        injector.push(1).unwrap();
        assert!(injector.close());
        assert!(!injector.close());
        assert_eq!(injector.push(2), Err(2));
        assert_eq!(injector.pop(), Some(1));
        assert!(injector.is_empty());
    }
}
