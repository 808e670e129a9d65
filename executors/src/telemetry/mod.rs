//! Process-wide telemetry of the offload executors: task counters, pool
//! gauges, histograms of queue wait and run time, and task spans.
//!
//! The runtime crate (`vedart::telemetry`) re-exports everything here and adds
//! the async scheduler's figures; most users read [`snapshot`] through it.
//!
//! # What is counted
//!
//! | executor | spawned | completed | failed | cancelled |
//! | --- | --- | --- | --- | --- |
//! | blocking pool | jobs accepted | jobs that returned (or called [`report_job_done`]) | jobs that panicked, or called [`report_job_failed`] | jobs dropped unrun at shutdown |
//! | process pool | calls made | calls answered | calls that ended in an error | calls cancelled or dropped before their answer |
//! | GPU | stream operations queued (each `GpuFuture`) | resolved `Ok` | resolved `Err` (stream failure) | futures dropped before they resolved |
//!
//! plus gauges summed over every live pool (threads, idle threads, bounds,
//! queue depth; children), monotonic totals (respawns, bytes moved, GPU
//! fallbacks) and the blocking pool's histograms of queue wait (accepted ->
//! started) and run time.
//!
//! # Implementation
//!
//! - Task counters and the blocking pools' histograms live in per-thread
//!   blocks (`local`): each thread counts into its own with a relaxed load
//!   and store, so a pool thread and the threads feeding it never contend
//!   for a counter; a snapshot sums the blocks.
//! - One status word holds the on/off switch ([`set_enabled`], on by default)
//!   and the span-recording flag ([`start_spans`]): an executor reads it with
//!   one relaxed load. While telemetry is off, task counters and histograms
//!   stand still. Gauges, which are read from the pools when a snapshot is
//!   taken, stay exact, and so do the process pools' totals (children,
//!   respawns, bytes), which each pool keeps for its own
//!   [`stats`](crate::process::ProcessPool::stats) anyway.
//! - Pools register themselves in a global list (weakly); a snapshot walks it.
//!   A process pool's counters outlive it in the list until a snapshot or a
//!   new pool folds them into the totals of retired pools, so the totals
//!   never go backwards.
//! - Spans are described in `spans`: per-thread buffers, a global bound.
//!
//! # Examples
//!
#![doc = crate::example!()]
//! use vedart_executors::blocking::BlockingPool;
//! use vedart_executors::telemetry;
//!
//! let before = telemetry::snapshot();
//! let pool = BlockingPool::builder().build().unwrap();
//! let (tx, rx) = std::sync::mpsc::channel();
//! pool.execute(move || tx.send(()).unwrap()).unwrap();
//! rx.recv().unwrap();
//! assert!(pool.shutdown(None));
//! let after = telemetry::snapshot();
//! assert!(after.blocking_tasks().spawned > before.blocking_tasks().spawned);
//! ```

mod histogram;
mod local;
mod spans;

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

pub use histogram::{BUCKETS, Histogram, HistogramSnapshot};
pub use local::TaskEvent;

use local::BlockingHistogram;
pub use spans::{
    DEFAULT_SPAN_CAPACITY, Span, epoch, is_tracing, record_span, record_span_at, since_epoch,
    spans_dropped, start_spans, stop_spans, take_spans,
};

use crate::sync::unmodelled::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use crate::sync::unmodelled::{Arc, Mutex, MutexGuard, Weak, lock};
use vedart_reactor::fork::AtFork;

/// Status bit: counters and histograms move.
pub(crate) const ENABLED: u8 = 1;
/// Status bit: spans are recorded.
pub(crate) const TRACING: u8 = 2;

/// The switches, read with one relaxed load by every instrumented path.
/// On a cache line of its own: every poll of every worker reads it, so no
/// counter written elsewhere may share its line.
pub(crate) static STATUS: Padded<AtomicU8> = Padded(AtomicU8::new(ENABLED));

/// Keeps a static on a cache line of its own.
#[repr(align(128))]
pub(crate) struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Turns counting on or off, process-wide (on by default). While off, task
/// counters and histograms stand still; gauges stay exact. Span recording has
/// its own switch ([`start_spans`]).
///
/// # Examples
///
/// ```
/// use vedart_executors::telemetry;
///
/// telemetry::set_enabled(false);
/// assert!(!telemetry::is_enabled());
/// telemetry::set_enabled(true);
/// ```
pub fn set_enabled(enabled: bool) {
    if enabled {
        STATUS.fetch_or(ENABLED, Relaxed);
    } else {
        STATUS.fetch_and(!ENABLED, Relaxed);
    }
}

/// Whether counting is on; see [`set_enabled`].
#[inline]
pub fn is_enabled() -> bool {
    status().is_enabled()
}

/// Both switches, read at once: what an instrumented hot path checks.
#[inline]
pub fn status() -> Status {
    Status(STATUS.load(Relaxed))
}

/// The telemetry switches at one moment; see [`status`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Status(u8);

impl Status {
    /// Counters and histograms move ([`set_enabled`]).
    #[inline]
    pub fn is_enabled(self) -> bool {
        self.0 & ENABLED != 0
    }

    /// Spans are recorded ([`start_spans`]).
    #[inline]
    pub fn is_tracing(self) -> bool {
        self.0 & TRACING != 0
    }

    /// Either switch is on: something must be measured.
    #[inline]
    pub fn is_active(self) -> bool {
        self.0 != 0
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Status")
            .field("enabled", &self.is_enabled())
            .field("tracing", &self.is_tracing())
            .finish()
    }
}

/// The executors telemetry tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ExecutorKind {
    /// Async tasks on a runtime's workers.
    Async,
    /// Jobs on a blocking pool (`spawn_blocking`, thread executors).
    Blocking,
    /// Calls to a process pool.
    Process,
    /// GPU stream operations.
    Gpu,
}

impl ExecutorKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ExecutorKind; 4] = [
        ExecutorKind::Async,
        ExecutorKind::Blocking,
        ExecutorKind::Process,
        ExecutorKind::Gpu,
    ];

    /// A lower-case name: `"async"`, `"blocking"`, `"process"`, `"gpu"`.
    pub fn name(self) -> &'static str {
        match self {
            ExecutorKind::Async => "async",
            ExecutorKind::Blocking => "blocking",
            ExecutorKind::Process => "process",
            ExecutorKind::Gpu => "gpu",
        }
    }
}

impl fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many tasks an executor started and how they ended.
///
/// `spawned - completed - failed - cancelled` tasks were still queued or
/// running when the counts were read (see [`TaskCounts::live`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskCounts {
    /// Tasks started (queued).
    pub spawned: u64,
    /// Tasks that ran to the end and produced their result.
    pub completed: u64,
    /// Tasks that failed: panicked, or reported a failure.
    pub failed: u64,
    /// Tasks that were cancelled or dropped before they finished.
    pub cancelled: u64,
}

impl TaskCounts {
    /// Counts from their parts.
    pub fn new(spawned: u64, completed: u64, failed: u64, cancelled: u64) -> TaskCounts {
        TaskCounts {
            spawned,
            completed,
            failed,
            cancelled,
        }
    }

    /// Tasks that ended, one way or another.
    pub fn finished(&self) -> u64 {
        self.completed + self.failed + self.cancelled
    }

    /// Tasks spawned and not finished (saturating: counts read while tasks
    /// end may briefly show more finished than spawned).
    pub fn live(&self) -> u64 {
        self.spawned.saturating_sub(self.finished())
    }
}

impl std::ops::Add for TaskCounts {
    type Output = TaskCounts;

    fn add(self, other: TaskCounts) -> TaskCounts {
        TaskCounts {
            spawned: self.spawned + other.spawned,
            completed: self.completed + other.completed,
            failed: self.failed + other.failed,
            cancelled: self.cancelled + other.cancelled,
        }
    }
}

/// Counts one task event of an executor on the calling thread: for
/// executors built outside this crate (a Python engine's own tasks, say).
/// Counting is per thread and lock-free (see `local`); nothing happens while
/// telemetry is off.
///
/// # Examples
///
/// ```
/// use vedart_executors::telemetry::{self, ExecutorKind, TaskEvent};
///
/// let before = telemetry::snapshot().tasks(ExecutorKind::Process);
/// telemetry::count(ExecutorKind::Process, TaskEvent::Spawned);
/// let after = telemetry::snapshot().tasks(ExecutorKind::Process);
/// assert_eq!(after.spawned, before.spawned + u64::from(telemetry::is_enabled()));
/// ```
#[inline]
pub fn count(kind: ExecutorKind, event: TaskEvent) {
    if is_enabled() {
        local::add(kind, event, 1);
    }
}

/// The task counters of one executor: counts into the calling thread's block.
#[derive(Debug)]
pub(crate) struct Counts(ExecutorKind);

impl Counts {
    #[inline]
    fn add(&self, event: TaskEvent, n: u64) {
        if is_enabled() {
            local::add(self.0, event, n);
        }
    }

    #[inline]
    pub(crate) fn spawned(&self) {
        self.add(TaskEvent::Spawned, 1);
    }

    #[inline]
    pub(crate) fn finished(&self, ok: bool) {
        self.add(
            if ok {
                TaskEvent::Completed
            } else {
                TaskEvent::Failed
            },
            1,
        );
    }

    #[inline]
    pub(crate) fn cancelled(&self, n: u64) {
        if n > 0 {
            self.add(TaskEvent::Cancelled, n);
        }
    }
}

static BLOCKING: Counts = Counts(ExecutorKind::Blocking);
static PROCESS: Counts = Counts(ExecutorKind::Process);
static GPU: Counts = Counts(ExecutorKind::Gpu);
static GPU_FALLBACKS: AtomicU64 = AtomicU64::new(0);
/// Sequence numbers of blocking jobs, for their spans.
static NEXT_JOB: AtomicU64 = AtomicU64::new(1);

/// The blocking pools' task counters.
pub(crate) fn blocking() -> &'static Counts {
    &BLOCKING
}

/// The process pools' task (call) counters.
pub(crate) fn process() -> &'static Counts {
    &PROCESS
}

/// The GPU's task counters.
pub(crate) fn gpu() -> &'static Counts {
    &GPU
}

/// What telemetry knows about the blocking-pool job running on this thread.
#[derive(Clone, Copy)]
struct Job {
    /// When the pool started it; `None` outside a pool job.
    started: Option<Instant>,
    /// Set by [`report_job_failed`].
    failed: bool,
    /// Set once the job was counted (by [`report_job_done`], early).
    reported: bool,
}

impl Job {
    const NONE: Job = Job {
        started: None,
        failed: false,
        reported: false,
    };
}

std::thread_local! {
    static JOB: Cell<Job> = const { Cell::new(Job::NONE) };
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Called by a pool thread as it starts, at `started`, a job it took from
/// the queue, which the job entered at `queued`: records the queue wait.
pub(crate) fn blocking_job_started(queued: Instant, started: Instant) {
    JOB.with(|job| {
        job.set(Job {
            started: Some(started),
            ..Job::NONE
        });
    });
    if is_enabled() {
        let wait = started.saturating_duration_since(queued);
        local::record(BlockingHistogram::QueueWait, nanos(wait));
    }
}

/// Called by a pool thread after its job returned, having run for `run`
/// (`panicked`: it ended in a panic): counts the job, unless it counted
/// itself with [`report_job_done`], and records its run time and span.
pub(crate) fn blocking_job_ran(run: Duration, panicked: bool) {
    let job = JOB.with(|job| job.replace(Job::NONE));
    let Some(started) = job.started else {
        return;
    };
    let status = status();
    if status.is_enabled() {
        if !job.reported {
            BLOCKING.finished(!(job.failed || panicked));
        }
        local::record(BlockingHistogram::RunTime, nanos(run));
    }
    if status.is_tracing() {
        let id = NEXT_JOB.fetch_add(1, Relaxed);
        let start = since_epoch(started);
        record_span_at(ExecutorKind::Blocking, id, start, start + run);
    }
}

/// Marks the blocking-pool job running on this thread as failed, for a job
/// that catches its own errors (a Python exception, a panic caught by a task
/// wrapper) and returns normally: telemetry then counts it as failed rather
/// than completed. Outside a pool job it has no effect.
pub fn report_job_failed() {
    JOB.with(|job| {
        let mut state = job.get();
        state.failed = true;
        job.set(state);
    });
}

/// Counts the blocking-pool job running on this thread now, as completed
/// (`ok`) or failed, instead of when it returns. A job that hands its result
/// to a waiting thread calls this just before, so that whoever receives the
/// result finds the job already counted (its run time and span are still
/// recorded when it returns). Outside a pool job, or called twice, it has
/// no effect.
pub fn report_job_done(ok: bool) {
    let job = JOB.with(|job| {
        let state = job.get();
        job.set(Job {
            reported: true,
            ..state
        });
        state
    });
    if job.started.is_some() && !job.reported {
        BLOCKING.finished(ok && !job.failed);
    }
}

/// Counts one GPU fallback: work meant for a GPU that ran on the CPU instead
/// (the Python `@gpu` decorator calls this when no device is usable).
///
/// # Examples
///
/// ```
/// use vedart_executors::telemetry;
///
/// let before = telemetry::snapshot().gpu_fallbacks();
/// telemetry::record_gpu_fallback();
/// assert!(telemetry::snapshot().gpu_fallbacks() > before || !telemetry::is_enabled());
/// ```
pub fn record_gpu_fallback() {
    if is_enabled() {
        GPU_FALLBACKS.fetch_add(1, Relaxed);
    }
}

/// Gauges of the live blocking pools, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockingPools {
    /// Live pools.
    pub pools: usize,
    /// Threads that take jobs.
    pub threads: usize,
    /// Of those, threads parked with nothing to do.
    pub idle_threads: usize,
    /// The most threads each pool has had at once, summed.
    pub peak_threads: usize,
    /// The pools' lower bounds, summed.
    pub min_workers: usize,
    /// The pools' upper bounds, summed.
    pub max_workers: usize,
    /// Jobs accepted and not yet started.
    pub queue_depth: usize,
}

/// Gauges and totals of the process pools: gauges over live pools, totals
/// over every pool the process has had.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessPools {
    /// Live pools.
    pub pools: usize,
    /// Children not yet reaped (live, retiring and terminating).
    pub children: usize,
    /// Children started.
    pub spawned: u64,
    /// Children started to replace others.
    pub respawns: u64,
    /// Bytes written to children.
    pub bytes_sent: u64,
    /// Bytes read from children.
    pub bytes_received: u64,
}

/// Something a snapshot reads gauges from: a blocking pool.
pub(crate) trait BlockingSource: Send + Sync {
    /// Adds this pool's gauges to `gauges`.
    fn add_gauges(&self, gauges: &mut BlockingPools);
}

/// Something a snapshot reads from: a process pool.
pub(crate) trait ProcessSource: Send + Sync {
    /// Children not yet reaped.
    fn children(&self) -> usize;
}

/// A process pool's counters as telemetry sums them.
pub(crate) trait ProcessCounters: Send + Sync {
    /// Adds the pool's totals (children spawned, respawns, bytes) to `pools`.
    fn add_to(&self, pools: &mut ProcessPools);
}

static BLOCKING_POOLS: Mutex<Vec<Weak<dyn BlockingSource>>> = Mutex::new(Vec::new());

struct ProcessEntry {
    counters: Arc<dyn ProcessCounters>,
    pool: Weak<dyn ProcessSource>,
}

/// Live process pools, and what the retired ones counted.
struct ProcessRegistry {
    live: Vec<ProcessEntry>,
    retired: ProcessPools,
}

static PROCESS_POOLS: Mutex<ProcessRegistry> = Mutex::new(ProcessRegistry {
    live: Vec::new(),
    retired: ProcessPools {
        pools: 0,
        children: 0,
        spawned: 0,
        respawns: 0,
        bytes_sent: 0,
        bytes_received: 0,
    },
});

impl ProcessRegistry {
    /// Folds the counters of pools nobody holds any more into the totals.
    fn retire_dead(&mut self) {
        let ProcessRegistry { live, retired } = self;
        live.retain(|entry| {
            if entry.pool.strong_count() > 0 || Arc::strong_count(&entry.counters) > 1 {
                return true;
            }
            entry.counters.add_to(retired);
            false
        });
    }
}

/// Keeps the registries' locks free across `fork()`; see
/// `vedart_reactor::fork`. Called before any of them is taken.
#[inline]
pub(crate) fn fork_safe() {
    local::AT_FORK.register();
    spans::AT_FORK.register();
    POOLS_AT_FORK.register();
}

/// The pool registries' locks, taken around `fork()`. A child forgets the
/// parent's pools: their threads and children are not its own, and reading a
/// blocking pool's gauges would take a lock that one of those threads may
/// have held. What the process pools counted is kept in the totals.
static POOLS_AT_FORK: AtFork = AtFork::with_child_hook(
    || Box::new((lock(&BLOCKING_POOLS), lock(&PROCESS_POOLS))),
    |held| {
        type Held = (
            MutexGuard<'static, Vec<Weak<dyn BlockingSource>>>,
            MutexGuard<'static, ProcessRegistry>,
        );
        if let Ok(mut held) = held.downcast::<Held>() {
            let (blocking, process) = &mut *held;
            blocking.clear();
            let ProcessRegistry { live, retired } = &mut **process;
            for entry in live.drain(..) {
                entry.counters.add_to(retired);
            }
        }
    },
);

/// Lists a blocking pool for snapshots (until it is dropped). Not under
/// loom, whose `Arc` has no weak references.
#[cfg_attr(feature = "loom", allow(dead_code))]
pub(crate) fn register_blocking_pool(pool: Weak<dyn BlockingSource>) {
    fork_safe();
    let mut pools = lock(&BLOCKING_POOLS);
    pools.retain(|pool| pool.strong_count() > 0);
    pools.push(pool);
}

/// Lists a process pool and its counters for snapshots.
pub(crate) fn register_process_pool(
    counters: Arc<dyn ProcessCounters>,
    pool: Weak<dyn ProcessSource>,
) {
    fork_safe();
    let mut registry = lock(&PROCESS_POOLS);
    registry.retire_dead();
    registry.live.push(ProcessEntry { counters, pool });
}

/// The executors' telemetry at one moment; see the module docs. Taken by
/// [`snapshot`].
#[derive(Clone, Debug)]
pub struct Snapshot {
    enabled: bool,
    /// Async-task events counted through [`count`] (the runtime counts its
    /// non-worker threads' events there; its workers keep their own blocks).
    async_tasks: TaskCounts,
    blocking: TaskCounts,
    blocking_pools: BlockingPools,
    blocking_queue_wait: HistogramSnapshot,
    blocking_run_time: HistogramSnapshot,
    process: TaskCounts,
    process_pools: ProcessPools,
    gpu: TaskCounts,
    gpu_fallbacks: u64,
    spans_dropped: u64,
}

impl Snapshot {
    /// Whether counting was on when the snapshot was taken.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The task counts of `kind`. For [`ExecutorKind::Async`], only what was
    /// counted through [`count`]: the runtime's snapshot
    /// (`vedart::telemetry::snapshot`) adds what its workers counted.
    pub fn tasks(&self, kind: ExecutorKind) -> TaskCounts {
        match kind {
            ExecutorKind::Blocking => self.blocking,
            ExecutorKind::Process => self.process,
            ExecutorKind::Gpu => self.gpu,
            ExecutorKind::Async => self.async_tasks,
        }
    }

    /// Jobs of every blocking pool.
    pub fn blocking_tasks(&self) -> TaskCounts {
        self.blocking
    }

    /// Gauges of the live blocking pools.
    pub fn blocking_pools(&self) -> BlockingPools {
        self.blocking_pools
    }

    /// How long blocking jobs waited in their pool's queue.
    pub fn blocking_queue_wait(&self) -> &HistogramSnapshot {
        &self.blocking_queue_wait
    }

    /// How long blocking jobs ran.
    pub fn blocking_run_time(&self) -> &HistogramSnapshot {
        &self.blocking_run_time
    }

    /// Calls of every process pool.
    pub fn process_tasks(&self) -> TaskCounts {
        self.process
    }

    /// Children, respawns and bytes moved of the process pools.
    pub fn process_pools(&self) -> ProcessPools {
        self.process_pools
    }

    /// GPU stream operations.
    pub fn gpu_tasks(&self) -> TaskCounts {
        self.gpu
    }

    /// Work meant for a GPU that ran on the CPU (see [`record_gpu_fallback`]).
    pub fn gpu_fallbacks(&self) -> u64 {
        self.gpu_fallbacks
    }

    /// Spans dropped for want of room since recording started.
    pub fn spans_dropped(&self) -> u64 {
        self.spans_dropped
    }
}

/// Reads every counter, gauge and histogram of the executors, across all
/// pools in the process.
pub fn snapshot() -> Snapshot {
    fork_safe();
    // Pools are read, and the last reference to one may be dropped, with no
    // registry lock held: a pool's own locks are never taken under ours.
    let live: Vec<_> = lock(&BLOCKING_POOLS)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let mut blocking_pools = BlockingPools::default();
    for pool in &live {
        blocking_pools.pools += 1;
        pool.add_gauges(&mut blocking_pools);
    }
    drop(live);
    let (mut process_pools, live) = {
        let mut registry = lock(&PROCESS_POOLS);
        registry.retire_dead();
        let mut pools = registry.retired;
        for entry in &registry.live {
            entry.counters.add_to(&mut pools);
        }
        let live: Vec<_> = registry
            .live
            .iter()
            .filter_map(|entry| entry.pool.upgrade())
            .collect();
        (pools, live)
    };
    for pool in &live {
        process_pools.pools += 1;
        process_pools.children += pool.children();
    }
    drop(live);
    let totals = local::totals();
    let (process, gpu) = (
        totals.tasks(ExecutorKind::Process),
        totals.tasks(ExecutorKind::Gpu),
    );
    Snapshot {
        enabled: is_enabled(),
        async_tasks: totals.tasks(ExecutorKind::Async),
        blocking: totals.tasks(ExecutorKind::Blocking),
        blocking_pools,
        blocking_queue_wait: totals.blocking_queue_wait,
        blocking_run_time: totals.blocking_run_time,
        process,
        process_pools,
        gpu,
        gpu_fallbacks: GPU_FALLBACKS.load(Relaxed),
        spans_dropped: spans_dropped(),
    }
}
