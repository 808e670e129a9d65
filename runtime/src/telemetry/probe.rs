//! The hooks the scheduler and the task wrapper call on their hot paths.
//!
//! Each hook starts with one relaxed load of the telemetry status word and
//! does nothing more while telemetry and span recording are both off. A poll
//! is measured by the worker that runs it ([`PollProbe`], around
//! `Runnable::run`), which counts its polls in a plain cell and publishes the
//! count now and then; only the end of a task (once per task) and a spawn
//! look the stats block up through the thread-local worker context. The rest
//! is described in `stats` (per-worker blocks, sampling).

use std::cell::Cell;
use std::time::Duration;

use vedart_executors::telemetry::{self as exec, ExecutorKind, Status, TaskEvent};

use super::stats::{Event, SAMPLE_INTERVAL, WorkerStats};
use crate::scheduler::{Shared, worker};
use crate::task_core::{Header, Runnable};

/// Nanoseconds since the telemetry epoch; never zero (zero means "no stamp").
fn now_nanos() -> u64 {
    let nanos = exec::since_epoch(std::time::Instant::now()).as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
}

/// Whether the event counted `previous` events before it is timed: the first
/// [`SAMPLE_INTERVAL`] of a worker, then one in [`SAMPLE_INTERVAL`].
#[inline]
pub(crate) fn sampled(previous: u64) -> bool {
    previous < SAMPLE_INTERVAL || previous % SAMPLE_INTERVAL == 0
}

/// Counts the spawn of a task, by worker `worker` of its runtime (whose
/// stats block is `block`) or, if `None`, by another thread.
#[inline]
pub(crate) fn spawned(worker: Option<&WorkerStats>) {
    if exec::is_enabled() {
        match worker {
            Some(block) => block.add(Event::Spawned),
            None => exec::count(ExecutorKind::Async, TaskEvent::Spawned),
        }
    }
}

/// Counts a task queued on a worker, in the worker's own `schedules` cell
/// (published with its poll count), and stamps it with the time, for its
/// queue wait, if that count says this one is sampled. (Not the poll count:
/// one poll may queue thousands of tasks.)
#[inline]
pub(crate) fn scheduled_local(header: &Header, schedules: &Cell<u64>) {
    if exec::is_enabled() {
        let previous = schedules.get();
        schedules.set(previous + 1);
        if sampled(previous) {
            header.stamp(now_nanos());
        }
    }
}

/// Stamps a task queued from outside the runtime's workers, if a count of
/// such wake-ups on this thread says this one is sampled. (They are not
/// counted as schedules: that count is the workers'.)
#[inline]
pub(crate) fn scheduled_remote(header: &Header) {
    std::thread_local! {
        static REMOTE_WAKES: Cell<u64> = const { Cell::new(0) };
    }
    if exec::is_enabled() {
        let tick = REMOTE_WAKES.with(|wakes| wakes.replace(wakes.get().wrapping_add(1)));
        if sampled(tick) {
            header.stamp(now_nanos());
        }
    }
}

/// How a task ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The task produced its output.
    Completed,
    /// The task panicked.
    Failed,
    /// The task was aborted, refused by a shutting-down registry, or dropped
    /// before it finished.
    Cancelled,
}

/// Counts the end of a task of `shared`, on whichever thread it ended.
#[inline]
pub(crate) fn finished(shared: &Shared, outcome: Outcome) {
    if !exec::is_enabled() {
        return;
    }
    let (event, task_event) = match outcome {
        Outcome::Completed => (Event::Completed, TaskEvent::Completed),
        Outcome::Failed => (Event::Failed, TaskEvent::Failed),
        Outcome::Cancelled => (Event::Cancelled, TaskEvent::Cancelled),
    };
    match worker::current_index(shared) {
        Some(index) => shared.stats.worker(index).add(event),
        None => exec::count(ExecutorKind::Async, task_event),
    }
}

/// One poll being measured by the worker that runs it: created before the
/// poll only when there is something to measure (a sampled poll, a stamped
/// task, span recording).
#[must_use = "a probe records nothing until it is finished"]
pub(crate) struct PollProbe<'a> {
    block: &'a WorkerStats,
    /// Record the run time.
    timed: bool,
    /// The task's id, while spans are recorded (else 0).
    span_task: u64,
    /// When the poll started, if it is timed or traced (else 0).
    start: u64,
}

impl<'a> PollProbe<'a> {
    /// Starts measuring a poll of `task`, the worker's poll number `polls`
    /// (counted by the caller, see `stats`): records the task's queue wait if
    /// it was stamped, and reads the clock if this poll is sampled or spans
    /// are recorded. `block` gives the worker's stats block, only if needed.
    /// `None` if there is nothing to measure.
    #[inline]
    pub(crate) fn start(
        task: &Runnable,
        status: Status,
        polls: u64,
        block: impl FnOnce() -> &'a WorkerStats,
    ) -> Option<PollProbe<'a>> {
        let header = task.metadata();
        let enabled = status.is_enabled();
        let tracing = status.is_tracing();
        let timed = enabled && sampled(polls);
        let stamp = if enabled { header.take_stamp() } else { 0 };
        if !timed && !tracing && stamp == 0 {
            return None;
        }
        let block = block();
        let start = now_nanos();
        if stamp != 0 {
            block.queue_wait.record_nanos(start.saturating_sub(stamp));
        }
        if timed {
            // Sampled polls also publish the worker's poll count.
            block.set(Event::Polls, polls + 1);
        }
        Some(PollProbe {
            block,
            timed,
            span_task: if tracing { header.id.as_u64() } else { 0 },
            start: if timed || tracing { start } else { 0 },
        })
    }

    /// Ends the measurement, after the poll.
    #[inline]
    pub(crate) fn finish(self) {
        if self.start == 0 {
            return;
        }
        let end = now_nanos();
        if self.timed {
            self.block
                .run_time
                .record_nanos(end.saturating_sub(self.start));
        }
        if self.span_task != 0 {
            exec::record_span_at(
                ExecutorKind::Async,
                self.span_task,
                Duration::from_nanos(self.start),
                Duration::from_nanos(end),
            );
        }
    }
}
