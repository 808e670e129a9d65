//! Telemetry for Python: the counters of Python tasks, the executors' figures,
//! task spans, and the atomic counter behind progress bars.
//!
//! # Implementation
//!
//! The runtime and the executors count their own work in `vedart::telemetry`
//! (async tasks and the scheduler's queues, steals and parks; blocking-pool
//! jobs, process-pool calls, GPU operations, pool gauges, histograms, spans),
//! behind one process-wide switch. A blocking-pool job is
//! not a Python task, though: a waiting task runs queued tasks of its group
//! inline (no job), and a job may find its task already taken or cancelled.
//! So this module also counts *Python tasks* of the thread executor
//! ([`task_spawned`], [`task_ran`], [`task_finished`], called by
//! [`crate::task`]), with the same switch and the same histogram type:
//!
//! 1. A task is counted as spawned when it is created, and its creation time is
//!    kept if counting is on.
//! 2. When it starts, its queue wait (creation to start) is recorded; when its
//!    call returns, its run time.
//! 3. When it ends it counts as completed (returned), failed (raised) or
//!    cancelled (never ran, or was cancelled first).
//!
//! Counters are relaxed atomics on their own cache line; with counting off
//! every step is one relaxed load. `vedart.telemetry` (Python) assembles the
//! snapshot from [`snapshot`] and the runtime's pool gauges.

use std::time::{Duration, Instant};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use vedart::telemetry::{self as exec, HistogramSnapshot, TaskCounts};

use crate::sync::{AtomicU64, Ordering};

/// Python-task counters of the thread executor.
#[repr(align(128))]
struct TaskCounters {
    spawned: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
}

static TASKS: TaskCounters = TaskCounters {
    spawned: AtomicU64::new(0),
    completed: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    cancelled: AtomicU64::new(0),
};

/// Queue wait and run time of Python tasks.
fn histograms() -> &'static (exec::Histogram, exec::Histogram) {
    static HISTOGRAMS: std::sync::OnceLock<(exec::Histogram, exec::Histogram)> =
        std::sync::OnceLock::new();
    HISTOGRAMS.get_or_init(|| (exec::Histogram::new(), exec::Histogram::new()))
}

/// How a Python task ended, for [`task_finished`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskEnd {
    /// The call returned.
    Completed,
    /// The call raised.
    Failed,
    /// The task never ran.
    Cancelled,
}

/// Step 1: counts a new task; returns its creation time while counting is on.
pub(crate) fn task_spawned() -> Option<Instant> {
    if !exec::is_enabled() {
        return None;
    }
    TASKS.spawned.fetch_add(1, Ordering::Relaxed);
    Some(Instant::now())
}

/// Step 2: records a task created at `queued` that started at `started` and
/// ran for `run`.
pub(crate) fn task_ran(queued: Option<Instant>, started: Instant, run: Duration) {
    if !exec::is_enabled() {
        return;
    }
    let (queue_wait, run_time) = histograms();
    if let Some(queued) = queued {
        queue_wait.record(started.saturating_duration_since(queued));
    }
    run_time.record(run);
}

/// Step 3: counts how a task ended.
pub(crate) fn task_finished(end: TaskEnd) {
    if !exec::is_enabled() {
        return;
    }
    let counter = match end {
        TaskEnd::Completed => &TASKS.completed,
        TaskEnd::Failed => &TASKS.failed,
        TaskEnd::Cancelled => &TASKS.cancelled,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// `duration` in whole nanoseconds, saturating.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn python_tasks() -> TaskCounts {
    TaskCounts::new(
        TASKS.spawned.load(Ordering::Relaxed),
        TASKS.completed.load(Ordering::Relaxed),
        TASKS.failed.load(Ordering::Relaxed),
        TASKS.cancelled.load(Ordering::Relaxed),
    )
}

fn counts_dict<'py>(py: Python<'py>, counts: TaskCounts) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("spawned", counts.spawned)?;
    dict.set_item("completed", counts.completed)?;
    dict.set_item("failed", counts.failed)?;
    dict.set_item("cancelled", counts.cancelled)?;
    Ok(dict)
}

/// A histogram as a dict: `count`, `sum`, `min`, `max`, `mean`, `p50`, `p95`,
/// `p99` (seconds) and `buckets`, the non-empty buckets as
/// `(lower, upper, count)` with the bounds in nanoseconds (exact integers, so
/// cumulative counts at power-of-two boundaries are exact).
fn histogram_dict<'py>(py: Python<'py>, hist: &HistogramSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("count", hist.count())?;
    dict.set_item("sum", hist.sum().as_secs_f64())?;
    dict.set_item("min", hist.min().as_secs_f64())?;
    dict.set_item("max", hist.max().as_secs_f64())?;
    dict.set_item("mean", hist.mean().as_secs_f64())?;
    dict.set_item("p50", hist.p50().as_secs_f64())?;
    dict.set_item("p95", hist.p95().as_secs_f64())?;
    dict.set_item("p99", hist.p99().as_secs_f64())?;
    let buckets: Vec<(u64, u64, u64)> = hist
        .buckets()
        .map(|(lower, upper, count)| (nanos(lower), nanos(upper), count))
        .collect();
    dict.set_item("buckets", buckets)?;
    Ok(dict)
}

/// The raw figures: `enabled`; `python_tasks` (counts, `queue_wait`,
/// `run_time` of the thread executor's Python tasks); `async` (the VedaRT
/// runtimes' tasks, scheduler gauges and counters, sampled histograms);
/// `blocking` (the blocking pools' jobs, gauges and histograms); `process`
/// (calls, children, respawns, bytes); `gpu` (operations, fallbacks);
/// `spans_dropped`.
#[pyfunction(name = "telemetry_snapshot")]
pub(crate) fn snapshot(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let figures = exec::snapshot();
    let out = PyDict::new(py);
    out.set_item("enabled", figures.is_enabled())?;

    let (queue_wait, run_time) = histograms();
    let tasks = counts_dict(py, python_tasks())?;
    tasks.set_item("queue_wait", histogram_dict(py, &queue_wait.snapshot())?)?;
    tasks.set_item("run_time", histogram_dict(py, &run_time.snapshot())?)?;
    out.set_item("python_tasks", tasks)?;

    let runtime = counts_dict(py, figures.async_tasks())?;
    let scheduler = figures.scheduler();
    runtime.set_item("runtimes", scheduler.runtimes)?;
    runtime.set_item("workers", scheduler.workers)?;
    runtime.set_item("threads", scheduler.threads)?;
    runtime.set_item("active_workers", scheduler.active_workers)?;
    runtime.set_item("injector_depth", scheduler.injector_depth)?;
    runtime.set_item("local_queue_depth", scheduler.local_queue_depth)?;
    runtime.set_item("polls", scheduler.polls)?;
    runtime.set_item("schedules", scheduler.schedules)?;
    runtime.set_item("steals", scheduler.steals)?;
    runtime.set_item("parks", scheduler.parks)?;
    runtime.set_item("queue_wait", histogram_dict(py, figures.queue_wait())?)?;
    runtime.set_item("run_time", histogram_dict(py, figures.run_time())?)?;
    out.set_item("async", runtime)?;

    let blocking = counts_dict(py, figures.blocking_tasks())?;
    let pools = figures.blocking_pools();
    blocking.set_item("pools", pools.pools)?;
    blocking.set_item("threads", pools.threads)?;
    blocking.set_item("idle_threads", pools.idle_threads)?;
    blocking.set_item("peak_threads", pools.peak_threads)?;
    blocking.set_item("min_workers", pools.min_workers)?;
    blocking.set_item("max_workers", pools.max_workers)?;
    blocking.set_item("queue_depth", pools.queue_depth)?;
    blocking.set_item(
        "queue_wait",
        histogram_dict(py, figures.blocking_queue_wait())?,
    )?;
    blocking.set_item("run_time", histogram_dict(py, figures.blocking_run_time())?)?;
    out.set_item("blocking", blocking)?;

    let process = counts_dict(py, figures.process_tasks())?;
    let pools = figures.process_pools();
    process.set_item("pools", pools.pools)?;
    process.set_item("children", pools.children)?;
    process.set_item("children_spawned", pools.spawned)?;
    process.set_item("respawns", pools.respawns)?;
    process.set_item("bytes_sent", pools.bytes_sent)?;
    process.set_item("bytes_received", pools.bytes_received)?;
    out.set_item("process", process)?;

    let gpu = counts_dict(py, figures.gpu_tasks())?;
    gpu.set_item("fallbacks", figures.gpu_fallbacks())?;
    out.set_item("gpu", gpu)?;

    out.set_item("spans_dropped", figures.spans_dropped())?;
    Ok(out)
}

/// Turns counting on or off, process-wide (on by default): the executors'
/// counters and histograms and those of Python tasks.
#[pyfunction(name = "telemetry_set_enabled")]
pub(crate) fn set_enabled(enabled: bool) {
    exec::set_enabled(enabled);
}

/// Whether counting is on.
#[pyfunction(name = "telemetry_is_enabled")]
pub(crate) fn is_enabled() -> bool {
    exec::is_enabled()
}

/// Counts one GPU fallback: work meant for a GPU that ran on the CPU.
#[pyfunction]
pub(crate) fn record_gpu_fallback() {
    exec::record_gpu_fallback();
}

/// Starts recording the executors' task spans (at most `capacity` until the
/// next `take_spans`).
#[pyfunction(name = "telemetry_start_spans")]
#[pyo3(signature = (capacity=exec::DEFAULT_SPAN_CAPACITY))]
pub(crate) fn start_spans(capacity: usize) {
    exec::start_spans(capacity);
}

/// Stops recording spans; what was recorded stays until `take_spans`.
#[pyfunction(name = "telemetry_stop_spans")]
pub(crate) fn stop_spans() {
    exec::stop_spans();
}

/// Nanoseconds since the spans' epoch, now: with `time.perf_counter_ns()`
/// read next to it, it places spans on Python's clock.
#[pyfunction(name = "telemetry_clock_ns")]
pub(crate) fn clock_ns() -> u64 {
    nanos(exec::since_epoch(Instant::now()))
}

/// Takes the recorded spans: dicts with `task`, `kind` (`"blocking"`,
/// `"process"`, `"gpu"`, `"async"`), `thread` (a number unique in the
/// process), `thread_name`, `start_ns` and `end_ns` (since the epoch of
/// `clock_ns`).
#[pyfunction(name = "telemetry_take_spans")]
pub(crate) fn take_spans(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let spans = py.detach(exec::take_spans);
    let list = PyList::empty(py);
    for span in spans {
        let dict = PyDict::new(py);
        dict.set_item("task", span.task)?;
        dict.set_item("kind", span.kind.name())?;
        dict.set_item("thread", span.thread)?;
        dict.set_item("thread_name", &*span.thread_name)?;
        dict.set_item("start_ns", nanos(span.start))?;
        dict.set_item("end_ns", nanos(span.end))?;
        list.append(dict)?;
    }
    Ok(list)
}

/// `value` seconds as a duration; negative, NaN and infinite values are
/// refused with a `ValueError` naming `what`.
fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PyValueError::new_err(format!("{what} must be finite and >= 0, got {value}")))
}

/// The percentiles `quantiles` (0 to 1), in seconds, of the histogram whose
/// non-empty buckets are `buckets` (`(lower_ns, upper_ns, count)`, as a
/// snapshot's `buckets`) and whose extremes are `min` and `max` (seconds):
/// `vedart.telemetry.Histogram.percentile` and `.since` read percentiles here,
/// so that every percentile is computed by `HistogramSnapshot::percentile`.
#[pyfunction]
pub(crate) fn histogram_percentiles(
    buckets: Vec<(u64, u64, u64)>,
    min: f64,
    max: f64,
    quantiles: Vec<f64>,
) -> PyResult<Vec<f64>> {
    let snapshot = HistogramSnapshot::from_buckets(
        buckets
            .into_iter()
            .map(|(lower, _, count)| (Duration::from_nanos(lower), count)),
        Duration::ZERO,
        seconds(min, "min")?,
        seconds(max, "max")?,
    );
    Ok(quantiles
        .into_iter()
        .map(|quantile| snapshot.percentile(quantile).as_secs_f64())
        .collect())
}

/// A histogram of values recorded from Python, at nanosecond resolution
/// (a value is read as seconds): pyveda's `vedart.telemetry.metrics.Histogram`
/// keeps its values here, with the buckets and percentiles of every other
/// VedaRT histogram.
#[pyclass(frozen, module = "vedart._vedart", name = "Histogram")]
#[derive(Debug, Default)]
pub struct PyHistogram {
    inner: exec::Histogram,
}

#[pymethods]
impl PyHistogram {
    #[new]
    fn new() -> Self {
        PyHistogram::default()
    }

    /// Records `value` (finite, >= 0; saturates at about 584 years).
    fn record(&self, value: f64) -> PyResult<()> {
        self.inner.record(seconds(value, "value")?);
        Ok(())
    }

    /// The values recorded so far, as `telemetry_snapshot`'s histograms.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        histogram_dict(py, &self.inner.snapshot())
    }

    /// The value below which a fraction `quantile` (0 to 1) of the values lie.
    fn percentile(&self, quantile: f64) -> f64 {
        self.inner.snapshot().percentile(quantile).as_secs_f64()
    }
}

/// A counter any thread may add to without the interpreter's help; progress
/// bars read it from their own thread.
#[pyclass(frozen, module = "vedart._vedart")]
#[derive(Debug, Default)]
pub struct Counter {
    value: AtomicU64,
}

#[pymethods]
impl Counter {
    #[new]
    fn new() -> Self {
        Counter::default()
    }

    /// Adds `n` and returns the new value.
    fn add(&self, n: u64) -> u64 {
        self.value.fetch_add(n, Ordering::Relaxed).wrapping_add(n)
    }

    /// The current value.
    #[getter]
    fn value(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    fn __repr__(&self) -> String {
        format!("Counter({})", self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters are process-wide: one test drives them, reading deltas.
    #[test]
    fn task_counters_and_histograms_follow_the_switch() {
        let before = python_tasks();
        let runs = histograms().1.snapshot().count();

        let queued = task_spawned();
        assert!(queued.is_some(), "counting is on by default");
        task_ran(queued, Instant::now(), Duration::from_micros(250));
        task_finished(TaskEnd::Completed);
        let failed = task_spawned();
        task_ran(failed, Instant::now(), Duration::from_micros(40));
        task_finished(TaskEnd::Failed);
        task_spawned();
        task_finished(TaskEnd::Cancelled);

        let after = python_tasks();
        assert_eq!(after.spawned - before.spawned, 3);
        assert_eq!(after.completed - before.completed, 1);
        assert_eq!(after.failed - before.failed, 1);
        assert_eq!(after.cancelled - before.cancelled, 1);
        let run_time = histograms().1.snapshot();
        assert_eq!(run_time.count() - runs, 2);
        assert!(run_time.max() >= Duration::from_micros(250));

        exec::set_enabled(false);
        assert!(task_spawned().is_none());
        task_ran(None, Instant::now(), Duration::from_micros(1));
        task_finished(TaskEnd::Completed);
        exec::set_enabled(true);
        assert_eq!(python_tasks(), after);
        assert_eq!(histograms().1.snapshot().count(), run_time.count());
    }

    #[test]
    fn nanos_saturate() {
        assert_eq!(nanos(Duration::from_micros(3)), 3_000);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }
}
