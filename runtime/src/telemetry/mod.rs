//! Telemetry: what every runtime and pool in the process did, counted without
//! locks on the hot paths; and task spans for a timeline.
//!
//! - [`snapshot()`] returns a [`Snapshot`]: per executor (async tasks,
//!   blocking pool, process pool, GPU) tasks spawned / completed / failed /
//!   cancelled; the scheduler's queue depths (injector and local), workers,
//!   steals and parks; the pools' threads (current, bounds, peak) and queue
//!   depth; process respawns and bytes moved; GPU fallbacks; histograms of
//!   queue wait and run time with p50 / p95 / p99. It is process-wide: it sums
//!   every runtime and pool, live or already dropped (counters), and reads
//!   gauges from the live ones. [`Snapshot::metrics`] flattens it for
//!   exporters.
//! - [`set_enabled`] turns counting off and on (on by default).
//! - [`start_spans`] / [`stop_spans`] / [`take_spans`] record a [`Span`]
//!   (task id, thread, start, end, executor) for every poll of an async task
//!   and every blocking job, into a bounded buffer; enough to draw a
//!   Chrome trace-event timeline of where time went.
//!
//! # Examples
//!
#![doc = crate::example!()]
//! use std::time::Duration;
//! use vedart::telemetry;
//!
//! let rt = vedart::Runtime::new()?;
//! telemetry::start_spans(telemetry::DEFAULT_SPAN_CAPACITY);
//! rt.block_on(async {
//!     let tasks: Vec<_> = (0..1000u64)
//!         .map(|i| vedart::spawn(async move { i * 2 }))
//!         .collect();
//!     for task in tasks {
//!         task.await?;
//!     }
//!     vedart::spawn_blocking(|| std::thread::sleep(Duration::from_millis(1))).await
//! })?;
//! telemetry::stop_spans();
//!
//! let snapshot = telemetry::snapshot();
//! let tasks = snapshot.async_tasks();
//! assert!(tasks.spawned >= 1000 && tasks.completed >= 1000);
//! // `spawn_blocking` closures are counted before their result is handed over.
//! assert!(snapshot.blocking_tasks().completed >= 1);
//! println!("async poll p99: {:?}", snapshot.run_time().p99());
//!
//! let spans = telemetry::take_spans();
//! assert!(spans.iter().any(|span| span.thread_name.starts_with("veda-worker")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Implementation
//!
//! The executors crate holds the switch, the histogram type, the span buffer
//! and the pools' counters (`vedart_executors::telemetry`, re-exported here);
//! this module adds the scheduler's. On the scheduler's hot paths:
//!
//! 1. Every hook first reads one status word (relaxed). With telemetry and
//!    tracing off that is all it costs.
//! 2. Counts go to the running worker's own block (a relaxed load and store:
//!    it is the only writer), so workers never share a counter cache line;
//!    polls, the most frequent event, are counted in a plain cell of the
//!    worker and published to its block now and then.
//! 3. Clocks are read for a sample of polls and wake-ups (a wake-up stamps
//!    the task header for its queue wait; see [`SAMPLE_INTERVAL`]), and for
//!    every poll while spans are recorded.
//!
//! Steps 2 and 3 and the registry of runtimes are written up in `stats.rs`.
//!
//! # Overhead
//!
//! Measured with `cargo run --release -p vedart --example telemetry_overhead`
//! (one worker, telemetry on and off in interleaved rounds, median of 100 each,
//! three runs, on a shared 2-core virtual machine): `spawn_many_local` (10,000
//! spawns and joins) +0.1 to +1.7%, `yield_many` (200 tasks x 1,000 yields)
//! +2.0 to +2.2%, 10,000 spawns from outside the runtime -4.7 to +0.2%, a
//! chain of 1,000 spawns +2.0 to +2.7%, 10,000 empty `spawn_blocking`
//! closures +0.9 to +5.2% (noise dominates the last). Work that does anything
//! per task pays proportionally less. `benches/src/bin/compare.rs` prints the
//! same comparison for the multi-thread runtime (`telemetry_overhead` lines).

mod probe;
mod snapshot;
mod stats;

pub use snapshot::{HistogramMetric, Metric, MetricKind, SchedulerStats, Snapshot, snapshot};
pub use stats::SAMPLE_INTERVAL;
pub use vedart_executors::telemetry::{
    BlockingPools, DEFAULT_SPAN_CAPACITY, ExecutorKind, Histogram, HistogramSnapshot, ProcessPools,
    Span, Status, TaskCounts, TaskEvent, count, epoch, is_enabled, is_tracing, record_gpu_fallback,
    record_span, record_span_at, report_job_done, report_job_failed, set_enabled, since_epoch,
    spans_dropped, start_spans, status, stop_spans, take_spans,
};

pub(crate) use probe::{Outcome, PollProbe, finished, scheduled_local, scheduled_remote, spawned};
pub(crate) use stats::{Event, RuntimeStats};

/// Lists a runtime in the process-wide registry that [`snapshot()`] reads.
#[cfg(not(feature = "loom"))]
pub(crate) fn register(shared: &crate::sync_facade::Arc<crate::scheduler::Shared>) {
    stats::register(
        shared.stats.clone(),
        crate::sync_facade::Arc::downgrade(shared),
    );
}
