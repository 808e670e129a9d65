//! [`Snapshot`]: every counter, gauge and histogram of the process at one
//! moment, and its flat [`Metric`] view for exporters.

use std::fmt;

use vedart_executors::telemetry::{
    self as exec, BlockingPools, ExecutorKind, HistogramSnapshot, ProcessPools, TaskCounts,
};

use super::stats::{self, Event};
use crate::scheduler::Flavor;

/// The async scheduler's figures, summed over every runtime in the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchedulerStats {
    /// Live runtimes.
    pub runtimes: usize,
    /// Workers (cores) of those runtimes: fixed when each is built, so also
    /// their minimum and maximum. A current-thread or deterministic runtime
    /// has one.
    pub workers: usize,
    /// Worker threads running (multi-thread runtimes; the others start none).
    pub threads: usize,
    /// Workers awake right now (multi-thread runtimes), the rest sleep.
    pub active_workers: usize,
    /// Tasks in the runtimes' global injector queues.
    pub injector_depth: usize,
    /// Tasks in the workers' local queues (not counting each worker's one
    /// LIFO slot; a deterministic runtime's run set counts here).
    pub local_queue_depth: usize,
    /// Task polls.
    pub polls: u64,
    /// Tasks queued by the runtimes' own threads: spawns and wake-ups that
    /// happen on a worker (tasks queued from other threads go through the
    /// injector and are not counted here).
    pub schedules: u64,
    /// Successful steals from another worker's queue.
    pub steals: u64,
    /// Times a worker went to sleep for want of work.
    pub parks: u64,
}

impl SchedulerStats {
    /// Tasks waiting to run: injector plus local queues.
    pub fn queue_depth(&self) -> usize {
        self.injector_depth + self.local_queue_depth
    }
}

/// Everything telemetry knows at one moment, across every runtime and pool
/// of the process; taken by [`snapshot`].
///
/// Counters are monotonic totals since the process started (while telemetry
/// was enabled); gauges are read from the live runtimes and pools.
///
/// # Examples
///
#[doc = example!()]
/// let rt = vedart::Runtime::new().unwrap();
/// rt.block_on(async {
///     let tasks: Vec<_> = (0..100).map(|i| vedart::spawn(async move { i })).collect();
///     for task in tasks {
///         task.await.unwrap();
///     }
/// });
/// let snapshot = vedart::telemetry::snapshot();
/// assert!(snapshot.async_tasks().completed >= 100);
/// assert!(snapshot.run_time().p99() > std::time::Duration::ZERO);
/// ```
#[derive(Clone)]
pub struct Snapshot {
    executors: exec::Snapshot,
    async_tasks: TaskCounts,
    scheduler: SchedulerStats,
    queue_wait: HistogramSnapshot,
    run_time: HistogramSnapshot,
}

/// Reads every counter, gauge and histogram in the process: the async
/// scheduler's (every runtime, current and past) and the executors' (every
/// blocking pool, process pool and GPU stream). Cheap enough to call every
/// second: it locks each live runtime's and pool's bookkeeping briefly, never
/// a task queue.
pub fn snapshot() -> Snapshot {
    let (totals, runtimes) = stats::collect();
    let mut scheduler = SchedulerStats {
        runtimes: runtimes.len(),
        polls: totals.get(Event::Polls),
        schedules: totals.get(Event::Schedules),
        steals: totals.get(Event::Steals),
        parks: totals.get(Event::Parks),
        ..SchedulerStats::default()
    };
    for shared in &runtimes {
        scheduler.workers += shared.remotes.len();
        scheduler.injector_depth += shared.injector.len();
        scheduler.local_queue_depth += shared.local_queue_depth();
        if shared.flavor == Flavor::MultiThread {
            scheduler.threads += shared.live_workers();
            scheduler.active_workers += shared.idle.state().num_unparked();
        }
    }
    drop(runtimes);
    let executors = exec::snapshot();
    Snapshot {
        // Workers count into their blocks, other threads through `count`.
        async_tasks: TaskCounts::new(
            totals.get(Event::Spawned),
            totals.get(Event::Completed),
            totals.get(Event::Failed),
            totals.get(Event::Cancelled),
        ) + executors.tasks(ExecutorKind::Async),
        scheduler,
        queue_wait: totals.queue_wait,
        run_time: totals.run_time,
        executors,
    }
}

impl Snapshot {
    /// Whether counting was on ([`set_enabled`](super::set_enabled)).
    pub fn is_enabled(&self) -> bool {
        self.executors.is_enabled()
    }

    /// The task counts of one executor.
    pub fn tasks(&self, kind: ExecutorKind) -> TaskCounts {
        match kind {
            ExecutorKind::Async => self.async_tasks,
            other => self.executors.tasks(other),
        }
    }

    /// Async tasks of every runtime.
    pub fn async_tasks(&self) -> TaskCounts {
        self.async_tasks
    }

    /// Jobs of every blocking pool (`spawn_blocking` closures included).
    pub fn blocking_tasks(&self) -> TaskCounts {
        self.executors.blocking_tasks()
    }

    /// Calls of every process pool.
    pub fn process_tasks(&self) -> TaskCounts {
        self.executors.process_tasks()
    }

    /// GPU stream operations.
    pub fn gpu_tasks(&self) -> TaskCounts {
        self.executors.gpu_tasks()
    }

    /// The async scheduler's gauges and counters.
    pub fn scheduler(&self) -> SchedulerStats {
        self.scheduler
    }

    /// The blocking pools' gauges.
    pub fn blocking_pools(&self) -> BlockingPools {
        self.executors.blocking_pools()
    }

    /// The process pools' gauges and totals.
    pub fn process_pools(&self) -> ProcessPools {
        self.executors.process_pools()
    }

    /// Async tasks: from queued (spawned or woken) to the start of their poll.
    /// Sampled: see [`SAMPLE_INTERVAL`](super::SAMPLE_INTERVAL).
    pub fn queue_wait(&self) -> &HistogramSnapshot {
        &self.queue_wait
    }

    /// Async tasks: how long one poll ran. Sampled like [`Snapshot::queue_wait`].
    pub fn run_time(&self) -> &HistogramSnapshot {
        &self.run_time
    }

    /// Blocking jobs: from accepted to started (every job).
    pub fn blocking_queue_wait(&self) -> &HistogramSnapshot {
        self.executors.blocking_queue_wait()
    }

    /// Blocking jobs: how long each ran (every job).
    pub fn blocking_run_time(&self) -> &HistogramSnapshot {
        self.executors.blocking_run_time()
    }

    /// Work meant for a GPU that ran on the CPU instead.
    pub fn gpu_fallbacks(&self) -> u64 {
        self.executors.gpu_fallbacks()
    }

    /// Spans dropped because the span buffer was full.
    pub fn spans_dropped(&self) -> u64 {
        self.executors.spans_dropped()
    }

    /// The executors' part of this snapshot.
    pub fn executors(&self) -> &exec::Snapshot {
        &self.executors
    }

    /// Every counter and gauge as a flat list, in a fixed order, named the
    /// Prometheus way (`vedart_tasks_spawned_total{executor="async"}`): what
    /// an exporter needs, with no knowledge of the structs above.
    ///
    /// # Examples
    ///
    /// ```
    /// use vedart::telemetry::{self, MetricKind};
    ///
    /// for metric in telemetry::snapshot().metrics() {
    ///     let labels = metric
    ///         .executor
    ///         .map(|kind| format!("{{executor=\"{kind}\"}}"))
    ///         .unwrap_or_default();
    ///     let kind = match metric.kind {
    ///         MetricKind::Counter => "counter",
    ///         _ => "gauge",
    ///     };
    ///     println!("# TYPE {} {kind}\n{}{labels} {}", metric.name, metric.name, metric.value);
    /// }
    /// ```
    pub fn metrics(&self) -> Vec<Metric> {
        use ExecutorKind::{Async, Blocking, Gpu, Process};
        use MetricKind::{Counter, Gauge};
        let mut out = Vec::with_capacity(48);
        let mut push = |name, help, kind, executor, value: u64| {
            out.push(Metric {
                name,
                help,
                kind,
                executor,
                value,
            });
        };
        for kind in ExecutorKind::ALL {
            let tasks = self.tasks(kind);
            push(
                "vedart_tasks_spawned_total",
                "Tasks started, by executor.",
                Counter,
                Some(kind),
                tasks.spawned,
            );
            push(
                "vedart_tasks_completed_total",
                "Tasks that produced their result, by executor.",
                Counter,
                Some(kind),
                tasks.completed,
            );
            push(
                "vedart_tasks_failed_total",
                "Tasks that panicked or reported a failure, by executor.",
                Counter,
                Some(kind),
                tasks.failed,
            );
            push(
                "vedart_tasks_cancelled_total",
                "Tasks cancelled or dropped before they finished, by executor.",
                Counter,
                Some(kind),
                tasks.cancelled,
            );
        }
        let scheduler = self.scheduler;
        let blocking = self.blocking_pools();
        let process = self.process_pools();
        let count = |n: usize| n as u64;
        push(
            "vedart_queue_depth",
            "Tasks queued and not started, by executor.",
            Gauge,
            Some(Async),
            count(scheduler.queue_depth()),
        );
        push(
            "vedart_queue_depth",
            "Tasks queued and not started, by executor.",
            Gauge,
            Some(Blocking),
            count(blocking.queue_depth),
        );
        push(
            "vedart_scheduler_injector_depth",
            "Tasks in the runtimes' global injector queues.",
            Gauge,
            None,
            count(scheduler.injector_depth),
        );
        push(
            "vedart_scheduler_local_queue_depth",
            "Tasks in the workers' local queues.",
            Gauge,
            None,
            count(scheduler.local_queue_depth),
        );
        let workers: [(ExecutorKind, usize, usize, usize); 2] = [
            (
                Async,
                scheduler.workers,
                scheduler.workers,
                scheduler.workers,
            ),
            (
                Blocking,
                blocking.threads,
                blocking.min_workers,
                blocking.max_workers,
            ),
        ];
        for (kind, current, min, max) in workers {
            push(
                "vedart_workers",
                "Workers now, by executor.",
                Gauge,
                Some(kind),
                count(current),
            );
            push(
                "vedart_workers_min",
                "Lower bound on workers, by executor.",
                Gauge,
                Some(kind),
                count(min),
            );
            push(
                "vedart_workers_max",
                "Upper bound on workers, by executor.",
                Gauge,
                Some(kind),
                count(max),
            );
        }
        push(
            "vedart_workers_active",
            "Async workers awake right now.",
            Gauge,
            Some(Async),
            count(scheduler.active_workers),
        );
        push(
            "vedart_workers_idle",
            "Blocking-pool threads parked with nothing to do.",
            Gauge,
            Some(Blocking),
            count(blocking.idle_threads),
        );
        push(
            "vedart_workers_peak",
            "Most blocking-pool threads at once, summed over pools.",
            Gauge,
            Some(Blocking),
            count(blocking.peak_threads),
        );
        push(
            "vedart_runtimes",
            "Live runtimes.",
            Gauge,
            None,
            count(scheduler.runtimes),
        );
        push(
            "vedart_scheduler_polls_total",
            "Async task polls.",
            Counter,
            None,
            scheduler.polls,
        );
        push(
            "vedart_scheduler_schedules_total",
            "Async tasks queued by workers (spawns and wake-ups).",
            Counter,
            None,
            scheduler.schedules,
        );
        push(
            "vedart_scheduler_steals_total",
            "Steals from another worker's queue.",
            Counter,
            None,
            scheduler.steals,
        );
        push(
            "vedart_scheduler_parks_total",
            "Times a worker went to sleep.",
            Counter,
            None,
            scheduler.parks,
        );
        push(
            "vedart_process_pools",
            "Live process pools.",
            Gauge,
            Some(Process),
            count(process.pools),
        );
        push(
            "vedart_process_children",
            "Child processes not yet reaped.",
            Gauge,
            Some(Process),
            count(process.children),
        );
        push(
            "vedart_process_spawned_total",
            "Child processes started.",
            Counter,
            Some(Process),
            process.spawned,
        );
        push(
            "vedart_process_respawns_total",
            "Child processes started to replace others.",
            Counter,
            Some(Process),
            process.respawns,
        );
        push(
            "vedart_process_bytes_sent_total",
            "Bytes written to child processes.",
            Counter,
            Some(Process),
            process.bytes_sent,
        );
        push(
            "vedart_process_bytes_received_total",
            "Bytes read from child processes.",
            Counter,
            Some(Process),
            process.bytes_received,
        );
        push(
            "vedart_gpu_fallbacks_total",
            "GPU work that ran on the CPU instead.",
            Counter,
            Some(Gpu),
            self.gpu_fallbacks(),
        );
        push(
            "vedart_spans_dropped_total",
            "Task spans dropped because the span buffer was full.",
            Counter,
            None,
            self.spans_dropped(),
        );
        out
    }

    /// Every histogram, named the Prometheus way (values are durations:
    /// export them in seconds).
    pub fn histograms(&self) -> Vec<HistogramMetric<'_>> {
        vec![
            HistogramMetric {
                name: "vedart_queue_wait_seconds",
                help: "Time from queued to started, by executor (async: sampled).",
                executor: ExecutorKind::Async,
                histogram: &self.queue_wait,
            },
            HistogramMetric {
                name: "vedart_queue_wait_seconds",
                help: "Time from queued to started, by executor (async: sampled).",
                executor: ExecutorKind::Blocking,
                histogram: self.blocking_queue_wait(),
            },
            HistogramMetric {
                name: "vedart_run_time_seconds",
                help: "Run time of one poll (async, sampled) or one job (blocking).",
                executor: ExecutorKind::Async,
                histogram: &self.run_time,
            },
            HistogramMetric {
                name: "vedart_run_time_seconds",
                help: "Run time of one poll (async, sampled) or one job (blocking).",
                executor: ExecutorKind::Blocking,
                histogram: self.blocking_run_time(),
            },
        ]
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("enabled", &self.is_enabled())
            .field("async_tasks", &self.async_tasks)
            .field("blocking_tasks", &self.blocking_tasks())
            .field("process_tasks", &self.process_tasks())
            .field("gpu_tasks", &self.gpu_tasks())
            .field("scheduler", &self.scheduler)
            .field("blocking_pools", &self.blocking_pools())
            .field("process_pools", &self.process_pools())
            .field("gpu_fallbacks", &self.gpu_fallbacks())
            .field("queue_wait", &self.queue_wait)
            .field("run_time", &self.run_time)
            .field("blocking_queue_wait", self.blocking_queue_wait())
            .field("blocking_run_time", self.blocking_run_time())
            .finish()
    }
}

/// Whether a [`Metric`] only grows or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// A monotonic total (Prometheus `counter`; the name ends in `_total`).
    Counter,
    /// A value that goes up and down (Prometheus `gauge`).
    Gauge,
}

/// One counter or gauge of a [`Snapshot`]; see [`Snapshot::metrics`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metric {
    /// The metric's name, such as `vedart_tasks_spawned_total`. Several
    /// entries share a name and differ in `executor`.
    pub name: &'static str,
    /// One line saying what it counts.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// The `executor` label, if the metric has one.
    pub executor: Option<ExecutorKind>,
    /// The value.
    pub value: u64,
}

/// One histogram of a [`Snapshot`]; see [`Snapshot::histograms`].
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct HistogramMetric<'a> {
    /// The histogram's name, such as `vedart_queue_wait_seconds`.
    pub name: &'static str,
    /// One line saying what it measures.
    pub help: &'static str,
    /// The `executor` label.
    pub executor: ExecutorKind,
    /// The values.
    pub histogram: &'a HistogramSnapshot,
}
