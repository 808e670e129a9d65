//! The hooks the scheduler and the task wrapper call on their hot paths.
//!
//! Each hook starts with one relaxed load of the telemetry status word and
//! does nothing more while telemetry and span recording are both off. The
//! rest is described in `stats` (per-worker blocks, sampling).

use std::time::Duration;

use vedart_executors::telemetry::{self as exec, ExecutorKind};

use super::stats::{Event, SAMPLE_INTERVAL, WorkerStats};
use crate::scheduler::{Shared, worker};
use crate::task::{Header, TaskId};

/// Nanoseconds since the telemetry epoch; never zero (zero means "no stamp").
fn now_nanos() -> u64 {
    let nanos = exec::since_epoch(std::time::Instant::now()).as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
}

/// The stats block the calling thread counts into for `shared`.
#[inline]
fn block(shared: &Shared) -> (&WorkerStats, bool) {
    shared.stats.block(worker::current_index(shared))
}

/// Counts the spawn of a task on `shared`.
#[inline]
pub(crate) fn spawned(shared: &Shared) {
    if exec::is_enabled() {
        let (block, owner) = block(shared);
        block.add(Event::Spawned, owner);
    }
}

/// Counts a task queued through `block` (worker `owner` or anyone), and stamps
/// one in [`SAMPLE_INTERVAL`] with the time, for its queue wait.
#[inline]
pub(crate) fn scheduled(header: &Header, block: &WorkerStats, owner: bool) {
    if exec::is_enabled() && block.add(Event::Schedules, owner) % SAMPLE_INTERVAL == 0 {
        header.stamp(now_nanos());
    }
}

/// Counts a task dropped before it finished (aborted while queued, or
/// cancelled by shutdown).
pub(crate) fn dropped_unfinished(shared: &Shared) {
    if exec::is_enabled() {
        let (block, owner) = block(shared);
        block.add(Event::Cancelled, owner);
    }
}

/// How a poll ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The task is waiting.
    Pending,
    /// The task produced its output.
    Completed,
    /// The task panicked.
    Failed,
    /// The task was aborted (or refused by a shutting-down registry).
    Cancelled,
}

/// One poll being measured: created before the poll, finished after it.
#[must_use = "a probe records nothing until it is finished"]
pub(crate) struct PollProbe<'a> {
    /// `None` while telemetry and tracing are both off.
    block: Option<(&'a WorkerStats, bool)>,
    enabled: bool,
    tracing: bool,
    /// When the poll started, if it is timed (else 0).
    start: u64,
}

impl<'a> PollProbe<'a> {
    /// Starts measuring a poll of the task with `header`: counts it, records
    /// its queue wait if it was stamped, and reads the clock if this poll is
    /// sampled or spans are being recorded.
    #[inline]
    pub(crate) fn start(header: &'a Header) -> PollProbe<'a> {
        let status = exec::status();
        if !status.is_active() {
            return PollProbe {
                block: None,
                enabled: false,
                tracing: false,
                start: 0,
            };
        }
        let (block, owner) = block(&header.shared);
        let enabled = status.is_enabled();
        let tracing = status.is_tracing();
        let mut timed = tracing;
        let mut stamp = 0;
        if enabled {
            timed |= block.add(Event::Polls, owner) % SAMPLE_INTERVAL == 0;
            stamp = header.take_stamp();
        }
        let start = if timed || stamp != 0 { now_nanos() } else { 0 };
        if stamp != 0 {
            block.queue_wait.record_nanos(start.saturating_sub(stamp));
        }
        PollProbe {
            block: Some((block, owner)),
            enabled,
            tracing,
            start: if timed { start } else { 0 },
        }
    }

    /// Ends the measurement of a poll of task `task` that ended with `outcome`.
    #[inline]
    pub(crate) fn finish(self, task: TaskId, outcome: Outcome) {
        let Some((block, owner)) = self.block else {
            return;
        };
        if self.start != 0 {
            let end = now_nanos();
            if self.enabled {
                block.run_time.record_nanos(end.saturating_sub(self.start));
            }
            if self.tracing {
                exec::record_span_at(
                    ExecutorKind::Async,
                    task.as_u64(),
                    Duration::from_nanos(self.start),
                    Duration::from_nanos(end),
                );
            }
        }
        if self.enabled {
            let event = match outcome {
                Outcome::Pending => return,
                Outcome::Completed => Event::Completed,
                Outcome::Failed => Event::Failed,
                Outcome::Cancelled => Event::Cancelled,
            };
            block.add(event, owner);
        }
    }
}
