//! The scheduler's counters: one block per worker, and the process-wide list
//! of runtimes a snapshot sums.
//!
//! # Implementation
//!
//! 1. Each worker counts into a [`WorkerStats`] of its own, on its own cache
//!    lines, with a relaxed load and store (no read-modify-write: it is the
//!    only writer, so no increment can be lost). Threads that are not one of
//!    the runtime's workers (a `spawn` from outside, a task dropped at
//!    shutdown) count into their own per-thread block of the executors
//!    crate (`vedart_executors::telemetry::count`), just as cheaply.
//! 2. Histograms are recorded for the first [`SAMPLE_INTERVAL`] polls of
//!    each worker, then for one in [`SAMPLE_INTERVAL`], and for every poll
//!    while spans are being recorded: reading the clock (40 ns on a virtual
//!    machine) costs more than everything else telemetry does on a poll, and
//!    short runs still get a full histogram. Wake-ups (and spawns) are
//!    sampled the same way for their queue wait, by the worker's count of
//!    them, or, on other threads, a thread-local count.
//! 3. Every runtime's [`RuntimeStats`] is listed in a global registry, next to
//!    a weak reference to the runtime for its gauges. A snapshot sums the
//!    list. When a runtime is gone (only the list still holds its stats), the
//!    next snapshot or registration folds its counters into the totals of
//!    retired runtimes, under the same lock, so totals never go backwards.

use vedart_executors::telemetry::{Histogram, HistogramSnapshot};

use crate::scheduler::Shared;
use crate::sync_facade::unmodelled::atomic::{AtomicU64, Ordering::Relaxed};
use crate::sync_facade::unmodelled::{Arc, Mutex, MutexGuard, Weak, lock};
use vedart_reactor::fork::AtFork;

/// Each worker times its first this many polls (and wake-ups) for the
/// histograms, then one in this many (step 2).
pub const SAMPLE_INTERVAL: u64 = 1024;

/// What a worker counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Event {
    /// A task was spawned.
    Spawned,
    /// A task produced its output.
    Completed,
    /// A task panicked.
    Failed,
    /// A task was aborted, or dropped before it finished.
    Cancelled,
    /// A task was polled. The worker counts its polls in a plain cell and
    /// publishes the count here at sampled polls, at maintenance and when it
    /// parks or stops (so a snapshot may lag by a few dozen polls).
    Polls,
    /// A task was queued (spawned or woken) by its worker; published like
    /// `Polls`.
    Schedules,
    /// A worker stole from another's queue.
    Steals,
    /// A worker went to sleep.
    Parks,
}

/// Number of [`Event`]s.
const EVENTS: usize = 8;

/// Counters and histograms of one worker (or of everyone else); see step 1.
#[repr(align(128))]
pub(crate) struct WorkerStats {
    counters: [AtomicU64; EVENTS],
    /// From queued (spawn or wake) to the start of the next poll.
    pub(crate) queue_wait: Histogram,
    /// How long one poll ran.
    pub(crate) run_time: Histogram,
}

impl WorkerStats {
    /// The count of `event` so far (its owner's view, or anyone's estimate).
    #[inline]
    pub(crate) fn get(&self, event: Event) -> u64 {
        self.counters[event as usize].load(Relaxed)
    }

    /// Publishes a count its owner keeps elsewhere (the worker's poll count).
    #[inline]
    pub(crate) fn set(&self, event: Event, count: u64) {
        self.counters[event as usize].store(count, Relaxed);
    }

    fn new() -> WorkerStats {
        WorkerStats {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            queue_wait: Histogram::new(),
            run_time: Histogram::new(),
        }
    }

    /// Counts one `event`. Only the worker owning this block may call it
    /// (step 1).
    #[inline]
    pub(crate) fn add(&self, event: Event) {
        let counter = &self.counters[event as usize];
        counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
    }
}

/// The counters of one runtime: a block per worker.
pub(crate) struct RuntimeStats {
    workers: Box<[WorkerStats]>,
}

impl RuntimeStats {
    /// Stats for a runtime with `workers` workers.
    pub(crate) fn new(workers: usize) -> RuntimeStats {
        RuntimeStats {
            workers: (0..workers).map(|_| WorkerStats::new()).collect(),
        }
    }

    /// Worker `index`'s block.
    #[inline]
    pub(crate) fn worker(&self, index: usize) -> &WorkerStats {
        &self.workers[index]
    }

    fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for block in self.workers.iter() {
            totals.add_block(block);
        }
        totals
    }
}

/// Counters and histograms summed over blocks, runtimes, or retired runtimes.
#[derive(Clone, Debug, Default)]
pub(crate) struct Totals {
    pub(crate) counters: [u64; EVENTS],
    pub(crate) queue_wait: HistogramSnapshot,
    pub(crate) run_time: HistogramSnapshot,
}

impl Totals {
    /// The total of `event`.
    pub(crate) fn get(&self, event: Event) -> u64 {
        self.counters[event as usize]
    }

    fn add_block(&mut self, block: &WorkerStats) {
        for (index, total) in self.counters.iter_mut().enumerate() {
            *total += block.counters[index].load(Relaxed);
        }
        self.queue_wait.merge(&block.queue_wait.snapshot());
        self.run_time.merge(&block.run_time.snapshot());
    }

    fn add(&mut self, other: &Totals) {
        for (mine, theirs) in self.counters.iter_mut().zip(other.counters) {
            *mine += theirs;
        }
        self.queue_wait.merge(&other.queue_wait);
        self.run_time.merge(&other.run_time);
    }
}

struct Entry {
    stats: Arc<RuntimeStats>,
    runtime: Weak<Shared>,
}

/// Every runtime's stats, and what retired runtimes counted (step 3).
struct Registry {
    live: Vec<Entry>,
    retired: Option<Totals>,
}

static RUNTIMES: Mutex<Registry> = Mutex::new(Registry {
    live: Vec::new(),
    retired: None,
});

/// `RUNTIMES`'s lock, taken around `fork()` (see `vedart_reactor::fork`). A
/// child retires the parent's runtimes at once: their workers do not exist
/// there, so their gauges would describe threads that are gone. What they
/// counted stays in the totals.
static AT_FORK: AtFork = AtFork::with_child_hook(
    || Box::new(lock(&RUNTIMES)),
    |held| {
        if let Ok(mut registry) = held.downcast::<MutexGuard<'static, Registry>>() {
            let Registry { live, retired } = &mut **registry;
            for entry in live.drain(..) {
                retired
                    .get_or_insert_with(Totals::default)
                    .add(&entry.stats.totals());
            }
        }
    },
);

impl Registry {
    fn retire_dead(&mut self) {
        let Registry { live, retired } = self;
        live.retain(|entry| {
            if Arc::strong_count(&entry.stats) > 1 {
                return true;
            }
            retired
                .get_or_insert_with(Totals::default)
                .add(&entry.stats.totals());
            false
        });
    }
}

/// Lists a runtime for snapshots (step 3). Not under loom, whose `Arc` has
/// no weak references.
#[cfg_attr(feature = "loom", allow(dead_code))]
pub(crate) fn register(stats: Arc<RuntimeStats>, runtime: Weak<Shared>) {
    AT_FORK.register();
    let mut registry = lock(&RUNTIMES);
    registry.retire_dead();
    registry.live.push(Entry { stats, runtime });
}

/// What a snapshot reads from the runtimes: counter totals, and the live
/// runtimes themselves for their gauges.
pub(crate) fn collect() -> (Totals, Vec<Arc<Shared>>) {
    AT_FORK.register();
    let mut registry = lock(&RUNTIMES);
    registry.retire_dead();
    let mut totals = registry.retired.clone().unwrap_or_default();
    for entry in &registry.live {
        totals.add(&entry.stats.totals());
    }
    let live = registry
        .live
        .iter()
        .filter_map(|entry| entry.runtime.upgrade())
        .collect();
    (totals, live)
}
