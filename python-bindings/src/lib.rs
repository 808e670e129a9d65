//! `vedart._vedart`: the Rust half of the Python package `vedart`.
//!
//! # Implementation
//!
//! The pipeline logic (stages, fusion, chunking, ordering, reductions, scope
//! rules, configuration) lives in Python, in `python/vedart/`, where it is easy
//! to read and change. This extension holds what must be native:
//!
//! - `runtime`: the pool of `veda-blocking-{i}` threads (a
//!   `vedart::blocking::BlockingPool`) that runs Python tasks, each
//!   thread keeping one Python thread state for its life (`tstate`);
//! - `task` and `group`: task completion, fail-fast and ordered
//!   cancellation, helping waits that make nested parallelism deadlock-free, and
//!   `veda.cancelled()`;
//! - `detach`: the one helper that waits with the interpreter released and
//!   turns Ctrl+C into `KeyboardInterrupt`;
//! - `errors`: raising the exception classes of `vedart.exceptions`;
//! - `asyncio_bridge`: pyo3-async-runtimes' generic runtime implemented for
//!   VedaRT, so that a task can be awaited from asyncio without blocking;
//! - `telemetry`: counters of Python tasks, the executors' telemetry, task
//!   spans, and the atomic `Counter` behind progress bars;
//! - `process`: the process executor's pool of warm worker processes, its
//!   batches of calls and their waits;
//! - `gpu`: CUDA streams from the device's stream pool, for CuPy;
//! - `deterministic`: the scheduler of `veda.deterministic`, which lets the
//!   runtime's deterministic flavour choose the order of Python tasks.
//!
//! This file only registers the module.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use pyo3::prelude::*;

mod asyncio_bridge;
mod detach;
mod deterministic;
mod errors;
mod gpu;
mod group;
mod process;
mod runtime;
mod sync;
mod task;
mod telemetry;
mod tstate;

/// Records that the interpreter is exiting: pool threads stop attaching to it.
/// Called by `vedart`'s `atexit` hook before it shuts the runtime down.
#[pyfunction]
fn _mark_interpreter_exiting() {
    tstate::mark_interpreter_exiting();
}

/// The name of the calling OS thread (`veda-blocking-3` on a pool thread).
#[pyfunction]
fn thread_name() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

/// The extension module `vedart._vedart`.
#[pymodule(gil_used = false)]
fn _vedart(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<runtime::Runtime>()?;
    m.add_class::<group::PyGroup>()?;
    m.add_class::<task::PyTask>()?;
    m.add_function(wrap_pyfunction!(task::cancelled, m)?)?;
    m.add_function(wrap_pyfunction!(task::in_task, m)?)?;
    m.add_function(wrap_pyfunction!(thread_name, m)?)?;
    m.add_function(wrap_pyfunction!(_mark_interpreter_exiting, m)?)?;
    m.add_class::<telemetry::Counter>()?;
    m.add_class::<telemetry::PyHistogram>()?;
    m.add_function(wrap_pyfunction!(telemetry::histogram_percentiles, m)?)?;
    m.add_function(wrap_pyfunction!(telemetry::snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(telemetry::set_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(telemetry::is_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(telemetry::record_gpu_fallback, m)?)?;
    m.add_function(wrap_pyfunction!(telemetry::start_spans, m)?)?;
    m.add_function(wrap_pyfunction!(telemetry::stop_spans, m)?)?;
    m.add_function(wrap_pyfunction!(telemetry::clock_ns, m)?)?;
    m.add_function(wrap_pyfunction!(telemetry::take_spans, m)?)?;
    m.add_class::<process::PyProcessPool>()?;
    m.add_class::<process::PyProcessContext>()?;
    m.add_class::<process::PyProcessBatch>()?;
    m.add_class::<process::PyProcessCall>()?;
    m.add_class::<gpu::PyGpuStream>()?;
    m.add_function(wrap_pyfunction!(gpu::gpu_available, m)?)?;
    m.add_function(wrap_pyfunction!(gpu::gpu_device_count, m)?)?;
    m.add_class::<deterministic::PyDeterministicScheduler>()?;
    m.add_function(wrap_pyfunction!(deterministic::py_task_seed, m)?)?;
    m.add_function(wrap_pyfunction!(deterministic::native_scope_order, m)?)?;
    m.add(
        "SIGNAL_CHECK_INTERVAL",
        detach::SIGNAL_CHECK_INTERVAL.as_secs_f64(),
    )?;
    Ok(())
}
