//! A point-in-time snapshot of the blocking pool.

use std::time::Duration;

/// A snapshot of a [`BlockingPool`](super::BlockingPool), from
/// [`BlockingPool::stats`](super::BlockingPool::stats).
///
/// All fields are read under one lock, so they are consistent with each other;
/// in particular `target_workers` is exactly `arrival_rate × mean_service_time`
/// rounded and clamped to `[min_workers, max_workers]`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BlockingPoolStats {
    /// Worker threads that take jobs (running one or parked). A thread that has
    /// decided to retire no longer counts, though it may still be finishing
    /// its stop hook.
    pub threads: usize,
    /// Worker threads parked with nothing to do.
    pub idle_threads: usize,
    /// Jobs accepted and not yet taken by a thread.
    pub queue_depth: usize,
    /// The lower bound: idle threads do not retire below it.
    pub min_workers: usize,
    /// The upper bound: the pool never runs more threads than this.
    pub max_workers: usize,
    /// The Little's-law target: `arrival_rate × mean_service_time`, rounded and
    /// clamped to `[min_workers, max_workers]`. Idle threads above it retire
    /// after the keep-alive; threads at or below it stay.
    pub target_workers: usize,
    /// Jobs that have run to the end, including those that panicked.
    pub jobs_completed: u64,
    /// Jobs that panicked (the pool caught the panic and carried on).
    pub jobs_panicked: u64,
    /// The most threads that have taken jobs at once, over the pool's life.
    pub peak_threads: usize,
    /// Exponentially weighted arrival rate, in jobs per second.
    pub arrival_rate: f64,
    /// Exponentially weighted mean run time of a job.
    pub mean_service_time: Duration,
}
