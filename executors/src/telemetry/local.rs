//! Per-thread counter blocks: task counters of every executor, and the
//! blocking pools' histograms, counted without read-modify-writes.
//!
//! # Implementation
//!
//! 1. The first time a thread counts something it allocates a block of its
//!    own and registers it in a global list. From then on it counts with a
//!    relaxed load and store to its block (it is the block's only writer, so
//!    no count is lost), and no two threads share a counter's cache line:
//!    a pool thread finishing a job and the thread that submitted the next one
//!    never contend.
//! 2. A block's histograms (blocking-pool queue wait and run time) are
//!    allocated the first time the thread records into one, so threads that
//!    only count pay for counters alone.
//! 3. A snapshot sums every block under the list's lock. When a thread exits,
//!    its thread-local guard takes its block out of the list and folds it into
//!    the totals of exited threads, under that same lock: totals never go
//!    backwards, and the list only ever holds the blocks of live threads (a
//!    process whose pool threads come and go keeps no memory per exited
//!    thread, snapshot or not).
//! 4. A thread being torn down (its thread-locals already destroyed) counts
//!    into a shared block with `fetch_add` instead.

use std::cell::OnceCell;

use super::histogram::{Histogram, HistogramSnapshot};
use super::{ExecutorKind, TaskCounts};
use crate::sync::unmodelled::atomic::{AtomicU64, Ordering::Relaxed};
use crate::sync::unmodelled::{Arc, Mutex, OnceLock, lock};
use vedart_reactor::fork::AtFork;

/// How a task event is counted; see [`count`](super::count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskEvent {
    /// A task started (was queued).
    Spawned,
    /// A task produced its result.
    Completed,
    /// A task failed (panicked, or reported a failure).
    Failed,
    /// A task was cancelled or dropped before it finished.
    Cancelled,
}

const KINDS: usize = ExecutorKind::ALL.len();
const EVENTS: usize = 4;

fn kind_index(kind: ExecutorKind) -> usize {
    match kind {
        ExecutorKind::Async => 0,
        ExecutorKind::Blocking => 1,
        ExecutorKind::Process => 2,
        ExecutorKind::Gpu => 3,
    }
}

fn event_index(event: TaskEvent) -> usize {
    match event {
        TaskEvent::Spawned => 0,
        TaskEvent::Completed => 1,
        TaskEvent::Failed => 2,
        TaskEvent::Cancelled => 3,
    }
}

/// Which blocking-pool histogram to record into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlockingHistogram {
    QueueWait = 0,
    RunTime = 1,
}

/// One thread's counters (step 1), on cache lines of their own.
#[repr(align(128))]
struct Block {
    tasks: [[AtomicU64; EVENTS]; KINDS],
    /// Blocking-pool queue wait and run time (step 2).
    histograms: OnceLock<Box<[Histogram; 2]>>,
}

impl Block {
    fn new() -> Block {
        Block {
            tasks: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            histograms: OnceLock::new(),
        }
    }

    fn histograms(&self) -> &[Histogram; 2] {
        self.histograms
            .get_or_init(|| Box::new([Histogram::new(), Histogram::new()]))
    }
}

/// What blocks add up to.
#[derive(Clone, Debug, Default)]
pub(crate) struct Totals {
    tasks: [[u64; EVENTS]; KINDS],
    pub(crate) blocking_queue_wait: HistogramSnapshot,
    pub(crate) blocking_run_time: HistogramSnapshot,
}

impl Totals {
    /// The task counts of `kind`.
    pub(crate) fn tasks(&self, kind: ExecutorKind) -> TaskCounts {
        let [spawned, completed, failed, cancelled] = self.tasks[kind_index(kind)];
        TaskCounts::new(spawned, completed, failed, cancelled)
    }

    fn add_block(&mut self, block: &Block) {
        for (totals, counters) in self.tasks.iter_mut().zip(&block.tasks) {
            for (total, counter) in totals.iter_mut().zip(counters) {
                *total += counter.load(Relaxed);
            }
        }
        if let Some(histograms) = block.histograms.get() {
            self.blocking_queue_wait.merge(&histograms[0].snapshot());
            self.blocking_run_time.merge(&histograms[1].snapshot());
        }
    }
}

/// Every thread's block, and what exited threads counted (step 3).
struct Registry {
    live: Vec<Arc<Block>>,
    exited: Option<Totals>,
}

static BLOCKS: Mutex<Registry> = Mutex::new(Registry {
    live: Vec::new(),
    exited: None,
});

/// `BLOCKS`'s lock, taken around `fork()` (see `super::fork_safe`). The
/// blocks of the parent's other threads stay listed in a child: what they
/// counted is part of the totals.
pub(super) static AT_FORK: AtFork = AtFork::new(|| Box::new(lock(&BLOCKS)));

/// Where threads being torn down count (step 4).
static SHARED: OnceLock<Block> = OnceLock::new();

/// This thread's block, folded into the totals when the thread exits (step 3).
struct Local(OnceCell<Arc<Block>>);

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(block) = self.0.take() {
            retire(&block);
        }
    }
}

std::thread_local! {
    static LOCAL: Local = const { Local(OnceCell::new()) };
}

fn new_block() -> Arc<Block> {
    let block = Arc::new(Block::new());
    super::fork_safe();
    lock(&BLOCKS).live.push(block.clone());
    block
}

/// Runs `f` with this thread's block (`true`: owned by this thread) or, while
/// the thread is torn down, the shared one (`false`).
#[inline]
fn with_block<R>(f: impl FnOnce(&Block, bool) -> R) -> R {
    let mut f = Some(f);
    let result = LOCAL.try_with(|local| {
        let f = f.take().expect("called once");
        f(local.0.get_or_init(new_block), true)
    });
    match result {
        Ok(result) => result,
        Err(_) => {
            let f = f.take().expect("not called yet");
            f(SHARED.get_or_init(Block::new), false)
        }
    }
}

/// Counts `n` events of `kind` on this thread (step 1).
#[inline]
pub(crate) fn add(kind: ExecutorKind, event: TaskEvent, n: u64) {
    with_block(|block, owner| {
        let counter = &block.tasks[kind_index(kind)][event_index(event)];
        if owner {
            counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
        } else {
            counter.fetch_add(n, Relaxed);
        }
    });
}

/// Records a blocking-pool duration in this thread's histograms (step 2).
#[inline]
pub(crate) fn record(histogram: BlockingHistogram, nanos: u64) {
    with_block(|block, owner| {
        let histogram = &block.histograms()[histogram as usize];
        if owner {
            histogram.record_nanos_single_writer(nanos);
        } else {
            histogram.record_nanos(nanos);
        }
    });
}

/// Takes the block of an exiting thread out of the list and adds what it
/// counted to the totals of exited threads, in one step under the lock, so a
/// snapshot sees it in exactly one of the two (step 3).
fn retire(block: &Arc<Block>) {
    super::fork_safe();
    let mut registry = lock(&BLOCKS);
    let Registry { live, exited } = &mut *registry;
    if let Some(index) = live.iter().position(|live| Arc::ptr_eq(live, block)) {
        live.swap_remove(index);
    }
    exited.get_or_insert_with(Totals::default).add_block(block);
}

/// Sums every block (step 3).
pub(crate) fn totals() -> Totals {
    super::fork_safe();
    let registry = lock(&BLOCKS);
    let Registry { live, exited } = &*registry;
    let mut totals = exited.clone().unwrap_or_default();
    for block in live.iter() {
        totals.add_block(block);
    }
    if let Some(shared) = SHARED.get() {
        totals.add_block(shared);
    }
    totals
}
