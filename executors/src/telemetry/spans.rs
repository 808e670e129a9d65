//! Task spans: when and where each task (or each poll of one) ran, for a
//! timeline such as Chrome's trace-event format.
//!
//! # Implementation
//!
//! Recording is off until [`start_spans`]. While it is off, an executor pays
//! one relaxed load per task to find that out (the switch shares its word with
//! [`is_enabled`](super::is_enabled)). While it is on:
//!
//! 1. Each thread appends to a buffer of its own, created on its first span
//!    and registered in a global list. Only that thread pushes, so the
//!    buffer's mutex is uncontended except while [`take_spans`] empties it.
//! 2. A global count of buffered spans bounds the total: a span that would
//!    exceed the capacity given to [`start_spans`] is dropped and counted
//!    ([`spans_dropped`]) instead.
//! 3. [`take_spans`] empties every buffer, oldest first by start time, and
//!    forgets the buffers of threads that have exited.
//!
//! Times are offsets from [`epoch`], a process-wide instant fixed at first
//! use, so spans from every thread share one time axis.

use std::cell::OnceCell;
use std::fmt;
use std::time::{Duration, Instant};

use super::{ExecutorKind, STATUS, TRACING};
use crate::sync::unmodelled::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use crate::sync::unmodelled::{Arc, Mutex, MutexGuard, OnceLock, lock};
use vedart_reactor::fork::AtFork;

/// The default capacity of [`start_spans`]: one million spans (about 48 MB).
pub const DEFAULT_SPAN_CAPACITY: usize = 1 << 20;

/// One task, or one poll of a task, on one thread.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Span {
    /// The task: a runtime task's id (unique within its runtime), or the
    /// sequence number of a blocking-pool job.
    pub task: u64,
    /// Which executor ran it.
    pub kind: ExecutorKind,
    /// The thread it ran on: a small number, unique in the process.
    pub thread: u64,
    /// That thread's name (`veda-worker-0`, `veda-blocking-3`, ...), or
    /// `"unnamed"`.
    pub thread_name: Arc<str>,
    /// When it started, as an offset from [`epoch`].
    pub start: Duration,
    /// When it ended, as an offset from [`epoch`].
    pub end: Duration,
}

impl Span {
    /// How long it ran.
    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Span")
            .field("task", &self.task)
            .field("kind", &self.kind)
            .field("thread", &&*self.thread_name)
            .field("start", &self.start)
            .field("duration", &self.duration())
            .finish()
    }
}

/// A span as a thread buffers it (the name is attached when taken).
struct Raw {
    task: u64,
    kind: ExecutorKind,
    start: Duration,
    end: Duration,
}

/// One thread's spans.
struct Buffer {
    thread: u64,
    name: Arc<str>,
    spans: Mutex<Vec<Raw>>,
}

/// Every thread's buffer (step 1).
static BUFFERS: Mutex<Vec<Arc<Buffer>>> = Mutex::new(Vec::new());
/// `BUFFERS`'s lock, taken around `fork()` (see `super::fork_safe`). A child
/// keeps only the buffer of the thread that forked: the others belong to
/// threads that do not exist there, one of which may have held its buffer's
/// lock. (Their spans stay with the parent.)
pub(super) static AT_FORK: AtFork = AtFork::with_child_hook(
    || Box::new(lock(&BUFFERS)),
    |held| {
        let Ok(mut buffers) = held.downcast::<MutexGuard<'static, Vec<Arc<Buffer>>>>() else {
            return;
        };
        let own = LOCAL.try_with(|local| local.get().cloned()).ok().flatten();
        buffers.retain(|buffer| own.as_ref().is_some_and(|own| Arc::ptr_eq(own, buffer)));
        // Only `take_spans`, excluded by `BUFFERS`, takes another thread's
        // buffer lock: this thread's is free.
        let kept = own.map_or(0, |own| lock(&own.spans).len());
        BUFFERED.store(kept, Relaxed);
    },
);

/// Spans in all buffers (step 2).
static BUFFERED: AtomicUsize = AtomicUsize::new(0);
/// The bound on `BUFFERED`.
static CAPACITY: AtomicUsize = AtomicUsize::new(DEFAULT_SPAN_CAPACITY);
/// Spans dropped for want of room since the last `start_spans`.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Source of thread numbers.
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

std::thread_local! {
    static LOCAL: OnceCell<Arc<Buffer>> = const { OnceCell::new() };
}

/// The instant every span's times are measured from: fixed the first time any
/// telemetry function needs it.
#[inline]
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `instant` as an offset from [`epoch`] (zero if it is earlier).
#[inline]
pub fn since_epoch(instant: Instant) -> Duration {
    instant.saturating_duration_since(epoch())
}

/// Starts recording spans, keeping at most `capacity` of them until the next
/// [`take_spans`]. Spans still buffered from an earlier recording are kept;
/// the dropped count restarts from zero.
///
/// # Examples
///
/// ```
/// use std::time::Instant;
/// use vedart_executors::telemetry::{self, ExecutorKind};
///
/// telemetry::start_spans(telemetry::DEFAULT_SPAN_CAPACITY);
/// let start = Instant::now();
/// telemetry::record_span(ExecutorKind::Blocking, 7, start, Instant::now());
/// telemetry::stop_spans();
/// let spans = telemetry::take_spans();
/// assert!(spans.iter().any(|span| span.task == 7));
/// ```
pub fn start_spans(capacity: usize) {
    CAPACITY.store(capacity, Relaxed);
    DROPPED.store(0, Relaxed);
    // Fix the epoch before the first span is timed.
    let _ = epoch();
    STATUS.fetch_or(TRACING, Relaxed);
}

/// Stops recording spans. What was recorded stays until [`take_spans`].
pub fn stop_spans() {
    STATUS.fetch_and(!TRACING, Relaxed);
}

/// Whether spans are being recorded.
pub fn is_tracing() -> bool {
    super::status().is_tracing()
}

/// Spans dropped because the buffer was full, since the last [`start_spans`].
pub fn spans_dropped() -> u64 {
    DROPPED.load(Relaxed)
}

/// Records a span that ran on the calling thread from `start` to `end`, if
/// spans are being recorded. Executors call this for every task; code that
/// runs its own units of work (a Python engine's chunks, say) may too.
pub fn record_span(kind: ExecutorKind, task: u64, start: Instant, end: Instant) {
    if !is_tracing() {
        return;
    }
    record_span_at(kind, task, since_epoch(start), since_epoch(end));
}

/// [`record_span`] with times already measured from [`epoch`].
pub fn record_span_at(kind: ExecutorKind, task: u64, start: Duration, end: Duration) {
    if !is_tracing() {
        return;
    }
    if BUFFERED.fetch_add(1, Relaxed) >= CAPACITY.load(Relaxed) {
        BUFFERED.fetch_sub(1, Relaxed);
        DROPPED.fetch_add(1, Relaxed);
        return;
    }
    let raw = Raw {
        task,
        kind,
        start,
        end,
    };
    // A thread being torn down has no buffer any more: count the span as dropped.
    let pushed = LOCAL.try_with(|local| {
        let buffer = local.get_or_init(new_buffer);
        lock(&buffer.spans).push(raw);
    });
    if pushed.is_err() {
        BUFFERED.fetch_sub(1, Relaxed);
        DROPPED.fetch_add(1, Relaxed);
    }
}

fn new_buffer() -> Arc<Buffer> {
    let name = std::thread::current()
        .name()
        .map_or_else(|| Arc::from("unnamed"), Arc::from);
    let buffer = Arc::new(Buffer {
        thread: NEXT_THREAD.fetch_add(1, Relaxed),
        name,
        spans: Mutex::new(Vec::new()),
    });
    super::fork_safe();
    lock(&BUFFERS).push(buffer.clone());
    buffer
}

/// Takes every span recorded so far, ordered by start time (step 3).
pub fn take_spans() -> Vec<Span> {
    let mut spans = Vec::new();
    super::fork_safe();
    let mut buffers = lock(&BUFFERS);
    for buffer in buffers.iter() {
        let taken = std::mem::take(&mut *lock(&buffer.spans));
        BUFFERED.fetch_sub(taken.len(), Relaxed);
        spans.extend(taken.into_iter().map(|raw| Span {
            task: raw.task,
            kind: raw.kind,
            thread: buffer.thread,
            thread_name: buffer.name.clone(),
            start: raw.start,
            end: raw.end,
        }));
    }
    // Only the list holds the buffer of a thread that exited.
    buffers.retain(|buffer| Arc::strong_count(buffer) > 1);
    drop(buffers);
    spans.sort_by_key(|span| (span.start, span.thread));
    spans
}
