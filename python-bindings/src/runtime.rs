//! `Runtime`: the thread executor's pool of worker threads.
//!
//! # Implementation
//!
//! A [`Runtime`] owns one [`BlockingPool`] from `vedart-executors`, whose
//! threads are named `veda-blocking-{i}`. The pool grows on demand up to
//! `max_workers`, keeps `min_workers` alive, and lets idle threads above its
//! Little's-law target retire after the keep-alive. Each thread keeps one Python
//! thread state for its whole life (see [`crate::tstate`]).
//!
//! Work reaches the pool only through [`crate::group`]: a group queues a task
//! and hands the pool one job that runs the group's oldest queued task.
//!
//! The Python layer (`vedart._runtime`) holds one `Runtime` at a time, created
//! lazily from `veda.Config`, and shuts it down on `veda.shutdown()` and at
//! interpreter exit.
//!
//! Every thread VedaRT starts to run Python code (this pool's, and the asyncio
//! bridge's) gets the C stack of a `threading.Thread`
//! ([`python_thread_stack_size`]), not Rust's 2 MiB default: CPython 3.11
//! recurses on the C stack (a deeply nested `repr`, `pickle`, `json`), and code
//! that works on a `threading.Thread` must not crash the interpreter on a pool
//! thread.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use vedart::blocking::{BlockingPool, Job, RejectedJob, default_thread_stack_size};

use crate::detach::{deadline_from_timeout, wait_detached};
use crate::sync::{Arc, AtomicBool, Ordering};
use crate::tstate;

/// The least C stack a thread that runs Python code gets unless
/// `threading.stack_size()` says otherwise: the usual `RLIMIT_STACK`, which is
/// what the main thread and a `threading.Thread` get.
const MIN_PYTHON_STACK: usize = 8 << 20;

/// The most: a thread's stack is address space reserved up front (pages are
/// only touched as it deepens), and a pool may run hundreds of threads.
const MAX_PYTHON_STACK: usize = 1 << 30;

/// The C stack size for a VedaRT thread that runs Python code: the size set
/// with `threading.stack_size()` if there is one, else the C library's default
/// for new threads (what `threading.Thread` gets; from `RLIMIT_STACK`), at
/// least [`MIN_PYTHON_STACK`] and at most [`MAX_PYTHON_STACK`]. So such a
/// thread is at least as deep as a `threading.Thread` (unless `ulimit -s`
/// exceeds 1 GiB).
pub(crate) fn python_thread_stack_size(py: Python<'_>) -> PyResult<usize> {
    let threading = py.import("threading")?;
    // Reading the setting also resets it (`stack_size()` sets 0 and returns the
    // old value), so it is put back at once; both calls hold the interpreter,
    // so no thread starts in between.
    let chosen: usize = threading.call_method0("stack_size")?.extract()?;
    if chosen != 0 {
        threading.call_method1("stack_size", (chosen,))?;
        return Ok(chosen);
    }
    Ok(default_thread_stack_size()
        .unwrap_or(0)
        .clamp(MIN_PYTHON_STACK, MAX_PYTHON_STACK))
}

/// The shared state behind a [`Runtime`]: what groups keep to submit work.
#[derive(Debug)]
pub(crate) struct RuntimeInner {
    /// Runs every task of the thread executor.
    pool: BlockingPool,
    /// Set by `shutdown`: the pool rejects jobs from then on.
    closed: AtomicBool,
}

impl RuntimeInner {
    /// Hands `job` to the pool.
    ///
    /// # Errors
    ///
    /// The job comes back when the runtime is shut down or no thread can start.
    pub(crate) fn execute(&self, job: Job) -> Result<(), RejectedJob> {
        self.pool.execute_boxed(job)
    }

    /// Whether [`Runtime::shutdown`] has been called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// The worker threads that run VedaRT's Python tasks.
///
/// Created by `vedart._runtime`; users reach it through `veda.get_runtime()`.
#[pyclass(frozen, module = "vedart._vedart")]
#[derive(Debug)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

impl Runtime {
    /// The state groups share.
    pub(crate) fn inner(&self) -> &Arc<RuntimeInner> {
        &self.inner
    }
}

#[pymethods]
impl Runtime {
    /// Creates the pool. No thread starts before the first task.
    ///
    /// `keep_alive` is in seconds: how long an idle thread above the pool's target
    /// size waits for work before it exits. Threads get the C stack of a
    /// `threading.Thread` started now ([`python_thread_stack_size`]).
    #[new]
    #[pyo3(signature = (min_workers, max_workers, keep_alive))]
    fn new(
        py: Python<'_>,
        min_workers: usize,
        max_workers: usize,
        keep_alive: f64,
    ) -> PyResult<Self> {
        let keep_alive = Duration::try_from_secs_f64(keep_alive).map_err(|_| {
            PyValueError::new_err(format!(
                "keep_alive must be a non-negative number of seconds, got {keep_alive}"
            ))
        })?;
        let pool = BlockingPool::builder()
            .min_workers(min_workers)
            .max_workers(max_workers)
            .keep_alive(keep_alive)
            .stack_size(python_thread_stack_size(py)?)
            .on_thread_start(tstate::pin_current_thread)
            .on_thread_stop(tstate::unpin_current_thread)
            .build()
            .map_err(|error| PyValueError::new_err(format!("{}: {error}", error.field())))?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                pool,
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// A snapshot of the pool: `threads`, `idle_threads`, `queue_depth`,
    /// `min_workers`, `max_workers`, `target_workers`, `jobs_completed`,
    /// `jobs_panicked`, `arrival_rate` (jobs/s) and `mean_service_time` (s).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.inner.pool.stats();
        let dict = PyDict::new(py);
        dict.set_item("threads", stats.threads)?;
        dict.set_item("idle_threads", stats.idle_threads)?;
        dict.set_item("queue_depth", stats.queue_depth)?;
        dict.set_item("min_workers", stats.min_workers)?;
        dict.set_item("max_workers", stats.max_workers)?;
        dict.set_item("target_workers", stats.target_workers)?;
        dict.set_item("jobs_completed", stats.jobs_completed)?;
        dict.set_item("jobs_panicked", stats.jobs_panicked)?;
        dict.set_item("arrival_rate", stats.arrival_rate)?;
        dict.set_item("mean_service_time", stats.mean_service_time.as_secs_f64())?;
        Ok(dict)
    }

    /// Changes the pool's bounds while it runs.
    ///
    /// Raises `ValueError` naming the field when `max_workers` is 0 or
    /// `min_workers > max_workers`.
    fn set_bounds(&self, min_workers: usize, max_workers: usize) -> PyResult<()> {
        self.inner
            .pool
            .set_bounds(min_workers, max_workers)
            .map_err(|error| PyValueError::new_err(format!("{}: {error}", error.field())))
    }

    /// Stops the pool: new tasks are refused, queued ones are cancelled, running
    /// ones finish. Waits for the threads at most `timeout` seconds (`None`: as
    /// long as it takes) with the interpreter released, and returns whether every
    /// thread exited in time. Calling it again is harmless.
    #[pyo3(signature = (timeout=None))]
    fn shutdown(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline_from_timeout(timeout)?;
        self.inner.closed.store(true, Ordering::Release);
        let pool = self.inner.pool.clone();
        let joined = wait_detached(py, deadline, move |limit| {
            pool.shutdown(Some(limit)).then_some(())
        })?;
        Ok(joined.is_some())
    }

    /// Whether `shutdown` has been called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn __repr__(&self) -> String {
        let stats = self.inner.pool.stats();
        format!(
            "Runtime(threads={}, idle={}, min_workers={}, max_workers={}, closed={})",
            stats.threads,
            stats.idle_threads,
            stats.min_workers,
            stats.max_workers,
            self.inner.is_closed()
        )
    }
}
