//! `Group`: a set of tasks that are cancelled, failed and awaited together.
//!
//! Every par_iter run, every `veda.scope()` and the global `veda.spawn` use one
//! group. A group owns the queue of its tasks that no thread has taken yet.
//!
//! # Submission (keeps one pool job per queued task)
//!
//! 1. [`GroupInner::submit`] pushes the task on the group's queue and hands the
//!    pool one [`RunOne`] job for the group.
//! 2. A `RunOne` job pops the group's oldest queued task and runs it if it can
//!    claim it (see [`crate::task`]); a task claimed elsewhere or cancelled is
//!    skipped. There are never fewer jobs than queued tasks, so every task is
//!    popped by someone.
//! 3. A job the pool drops without running it (shutdown) pops a task and
//!    cancels it, so no waiter is left hanging.
//!
//! # Helping (why nested parallelism cannot deadlock)
//!
//! A thread that waits on a group while it is itself running a VedaRT task (a
//! par_iter inside a map, a scope inside a scope task) pops the group's queued
//! tasks and runs them inline instead of blocking. A task that some thread has
//! claimed is being run by that thread, which in turn only ever waits on work
//! it can run itself or work that other threads are running; the waits form a
//! tree, so with any number of pool threads, even one, all work finishes.
//!
//! # Failure and cancellation
//!
//! A failed task records its exception in the group. A fail-fast group then
//! cancels itself: queued tasks are cancelled at once and running ones see
//! `veda.cancelled()`. An ordered group (streaming, `take`) instead cancels only
//! the tasks after the failed one, which the consumer will never reach. A
//! group's cancellation includes that of the task that created it, so
//! cancelling outer work cancels the nested work beneath it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::detach::{deadline_from_timeout, wait_detached};
use crate::errors::{VedaErrorKind, runtime_state_error};
use crate::runtime::{Runtime, RuntimeInner};
use crate::sync::{Arc, AtomicBool, AtomicU64, Condvar, Mutex, MutexGuard, Ordering, lock};
use crate::task::{Call, PyTask, TaskInner, current_task};
use crate::tstate::interpreter_exiting;

/// Why a wait on a task returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitStatus {
    /// The task has finished.
    Finished,
    /// Another task of a fail-fast group failed first.
    Failed,
    /// The group, or the task that created it, was cancelled.
    Cancelled,
    /// The deadline passed.
    TimedOut,
}

impl WaitStatus {
    fn name(self) -> &'static str {
        match self {
            WaitStatus::Finished => "finished",
            WaitStatus::Failed => "failed",
            WaitStatus::Cancelled => "cancelled",
            WaitStatus::TimedOut => "timeout",
        }
    }
}

/// What a failed task cancels in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureMode {
    /// Everything: queued tasks are cancelled, running ones asked to stop
    /// (`collect`, reductions, scopes).
    FailFast,
    /// The tasks after the failed one, which an in-order consumer never reaches
    /// (streaming, `take`, `any`).
    Ordered,
    /// Nothing: tasks are independent (`veda.spawn`).
    Independent,
}

impl FailureMode {
    fn parse(name: &str) -> PyResult<Self> {
        match name {
            "fail_fast" => Ok(FailureMode::FailFast),
            "ordered" => Ok(FailureMode::Ordered),
            "independent" => Ok(FailureMode::Independent),
            other => Err(pyo3::exceptions::PyValueError::new_err(format!(
                "mode must be 'fail_fast', 'ordered' or 'independent', got {other:?}"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            FailureMode::FailFast => "fail_fast",
            FailureMode::Ordered => "ordered",
            FailureMode::Independent => "independent",
        }
    }
}

/// What the group's lock protects.
#[derive(Debug, Default)]
struct GroupState {
    /// Tasks no thread has taken yet, oldest first.
    queue: VecDeque<Arc<TaskInner>>,
    /// Tasks submitted and not finished.
    pending: usize,
    /// Exceptions of failed tasks, in the order they failed.
    failures: Vec<Py<PyAny>>,
}

/// The shared state of a group; see the module documentation.
#[derive(Debug)]
pub(crate) struct GroupInner {
    /// The pool that runs the group's tasks.
    runtime: Arc<RuntimeInner>,
    /// The task that created the group, if it was created inside one: its
    /// cancellation is the group's.
    parent: Option<Arc<TaskInner>>,
    /// What a failure cancels.
    mode: FailureMode,
    /// Set by `cancel`, or by the first failure of a fail-fast group.
    cancelled: AtomicBool,
    /// Set by the first failure.
    failed: AtomicBool,
    /// Index of the earliest failed task (`u64::MAX` when none failed).
    first_failed: AtomicU64,
    /// Index of the next submitted task.
    next_index: AtomicU64,
    /// Queue, pending count and failures.
    state: Mutex<GroupState>,
    /// Signalled when a task is queued or finishes, or the group fails or is cancelled.
    changed: Condvar,
}

impl GroupInner {
    fn lock_state(&self) -> MutexGuard<'_, GroupState> {
        lock(&self.state)
    }

    /// Whether the group, or the task that created it, is cancelled.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
            || self
                .parent
                .as_ref()
                .is_some_and(|parent| parent.is_cancelled())
    }

    /// Whether the task at `index` must not run (or should stop).
    pub(crate) fn cancels(&self, index: u64) -> bool {
        self.is_cancelled()
            || (self.mode == FailureMode::Ordered
                && index > self.first_failed.load(Ordering::Acquire))
    }

    /// Queues a call and hands the pool a job for it (steps 1 and 2).
    fn submit(
        self: &Arc<Self>,
        py: Python<'_>,
        call: Call,
        future: Option<Py<PyAny>>,
    ) -> PyResult<Arc<TaskInner>> {
        if self.runtime.is_closed() {
            return Err(runtime_state_error(py, "the vedart runtime is shut down"));
        }
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let task = TaskInner::new(Arc::clone(self), index, call, future);
        {
            let mut state = self.lock_state();
            state.queue.push_back(Arc::clone(&task));
            state.pending += 1;
        }
        // A helping waiter may be blocked on this group.
        self.changed.notify_all();
        let job = RunOne {
            group: Some(Arc::clone(self)),
        };
        if let Err(rejected) = self.runtime.execute(Box::new(move || job.run())) {
            let message = rejected.to_string();
            // Shut down, or the OS refused a thread (the message names its error).
            let kind = if rejected.is_spawn_failure() {
                VedaErrorKind::Executor
            } else {
                VedaErrorKind::RuntimeState
            };
            // Dropping the job cancels one queued task (step 3); the caller gets
            // the reason.
            py.detach(move || drop(rejected.into_job()));
            return Err(kind.err(py, message));
        }
        Ok(task)
    }

    fn pop_queued(&self) -> Option<Arc<TaskInner>> {
        self.lock_state().queue.pop_front()
    }

    /// Step 2, on a pool thread.
    fn run_one(&self) {
        let Some(task) = self.pop_queued() else {
            return;
        };
        if !task.claim() {
            return;
        }
        if interpreter_exiting() || Python::try_attach(|py| task.run(py)).is_none() {
            task.abandon();
        }
    }

    /// Step 3, for a job the pool dropped.
    fn drop_one(&self) {
        let Some(task) = self.pop_queued() else {
            return;
        };
        if interpreter_exiting() || Python::try_attach(|py| task.cancel(Some(py))).is_none() {
            task.cancel(None);
        }
    }

    /// Cancels the group: queued tasks end as cancelled now, running ones see
    /// `veda.cancelled()`.
    pub(crate) fn cancel(&self, py: Python<'_>) {
        self.cancelled.store(true, Ordering::Release);
        let queued = std::mem::take(&mut self.lock_state().queue);
        self.changed.notify_all();
        for task in queued {
            task.cancel(Some(py));
        }
    }

    /// Records a failed task (called once per failure, with its exception).
    pub(crate) fn record_failure(&self, py: Python<'_>, index: u64, error: PyErr) {
        self.failed.store(true, Ordering::Release);
        if self.mode == FailureMode::Independent {
            // Nobody reads an independent group's failures (each task's future
            // carries its own); keeping them would grow without bound.
            return;
        }
        // Build the exception object before taking the lock: never run Python
        // code under it.
        let value = error.into_value(py).into_any();
        self.lock_state().failures.push(value);
        self.first_failed.fetch_min(index, Ordering::AcqRel);
        self.failed.store(true, Ordering::Release);
        if self.mode == FailureMode::FailFast {
            self.cancel(py);
        } else {
            self.changed.notify_all();
        }
    }

    /// Counts a finished task and wakes waiters.
    pub(crate) fn task_finished(&self) {
        {
            let mut state = self.lock_state();
            state.pending = state.pending.saturating_sub(1);
        }
        self.changed.notify_all();
    }

    /// Blocks for at most `limit` until `ready` holds, with the lock held while
    /// `ready` is evaluated so that no wake-up is lost.
    fn block_until(&self, limit: Duration, ready: impl Fn(&GroupState) -> bool) -> bool {
        let state = self.lock_state();
        if ready(&state) {
            return true;
        }
        let (state, _) = self
            .changed
            .wait_timeout(state, limit)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        ready(&state)
    }

    /// Runs queued tasks of this group inline while the caller is itself a
    /// task (helping); returns whether it ran one.
    fn help_once(&self, py: Python<'_>) -> bool {
        match self.pop_queued() {
            Some(task) => {
                if task.claim() {
                    task.run(py);
                }
                true
            }
            None => false,
        }
    }

    /// Waits for `task`. With `group_events` (a pipeline waiting for its
    /// chunk), also returns when a fail-fast group fails or the group is
    /// cancelled, and a Ctrl+C cancels the group; without (one task's
    /// result), a Ctrl+C leaves the task and its group alone. Either way it
    /// raises `KeyboardInterrupt`.
    pub(crate) fn wait_task(
        &self,
        py: Python<'_>,
        task: &Arc<TaskInner>,
        deadline: Option<Instant>,
        group_events: bool,
    ) -> PyResult<WaitStatus> {
        let helping = current_task().is_some();
        loop {
            if task.is_finished() {
                return Ok(WaitStatus::Finished);
            }
            if group_events {
                if self.mode == FailureMode::FailFast && self.failed.load(Ordering::Acquire) {
                    return Ok(WaitStatus::Failed);
                }
                if self.is_cancelled() {
                    return Ok(WaitStatus::Cancelled);
                }
            }
            if helping && self.help_once(py) {
                continue;
            }
            let woke = wait_detached(py, deadline, |limit| {
                self.block_until(limit, |state| {
                    task.is_finished()
                        || (group_events
                            && ((self.mode == FailureMode::FailFast
                                && self.failed.load(Ordering::Acquire))
                                || self.is_cancelled()))
                        || (helping && !state.queue.is_empty())
                })
                .then_some(())
            });
            match woke {
                Ok(Some(())) => {}
                Ok(None) => return Ok(WaitStatus::TimedOut),
                Err(error) => {
                    if group_events {
                        self.cancel(py);
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Waits until every submitted task has finished, helping as in
    /// [`wait_task`](Self::wait_task). Returns `false` if the deadline passed.
    /// Errors (Ctrl+C) propagate without cancelling anything.
    fn wait_all(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<bool> {
        let helping = current_task().is_some();
        loop {
            if self.lock_state().pending == 0 {
                return Ok(true);
            }
            if helping && self.help_once(py) {
                continue;
            }
            let woke = wait_detached(py, deadline, |limit| {
                self.block_until(limit, |state| {
                    state.pending == 0 || (helping && !state.queue.is_empty())
                })
                .then_some(())
            })?;
            if woke.is_none() {
                return Ok(false);
            }
        }
    }
}

/// The pool job of one queued task (see "Submission").
struct RunOne {
    group: Option<Arc<GroupInner>>,
}

impl RunOne {
    fn run(mut self) {
        if let Some(group) = self.group.take() {
            group.run_one();
        }
    }
}

impl Drop for RunOne {
    fn drop(&mut self) {
        if let Some(group) = self.group.take() {
            group.drop_one();
        }
    }
}

/// Tasks cancelled, failed and awaited together; see the module documentation.
///
/// `Group(runtime, mode="fail_fast")`, where `mode` is what a failed task
/// cancels: `"fail_fast"` (the whole group), `"ordered"` (the tasks submitted
/// after it) or `"independent"` (nothing). Created inside a running task, the
/// group inherits that task's cancellation.
#[pyclass(frozen, module = "vedart._vedart", name = "Group")]
#[derive(Debug)]
pub struct PyGroup {
    inner: Arc<GroupInner>,
}

#[pymethods]
impl PyGroup {
    /// Shows the cycle collector the exceptions the group keeps (see
    /// `PyTask::__traverse__`: a failure's traceback often reaches the frame
    /// that holds the group). Sound whoever else holds the group: tasks only
    /// add failures, and they are read through this object alone. A lock held
    /// elsewhere is skipped, never waited for.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(state) = self.inner.state.try_lock() {
            for failure in &state.failures {
                visit.call(failure)?;
            }
        }
        Ok(())
    }

    #[new]
    #[pyo3(signature = (runtime, mode="fail_fast"))]
    fn new(runtime: &Runtime, mode: &str) -> PyResult<Self> {
        let mode = FailureMode::parse(mode)?;
        Ok(PyGroup {
            inner: Arc::new(GroupInner {
                runtime: Arc::clone(runtime.inner()),
                parent: current_task(),
                mode,
                cancelled: AtomicBool::new(false),
                failed: AtomicBool::new(false),
                first_failed: AtomicU64::new(u64::MAX),
                next_index: AtomicU64::new(0),
                state: Mutex::new(GroupState::default()),
                changed: Condvar::new(),
            }),
        })
    }

    /// Schedules `func(*args, **kwargs)` on the pool and returns its `Task`.
    /// `future`, if given, is a `concurrent.futures.Future` completed with the
    /// outcome. Raises `vedart.RuntimeStateError` if the runtime is shut down.
    #[pyo3(signature = (func, args, kwargs=None, future=None))]
    fn submit(
        &self,
        py: Python<'_>,
        func: Py<PyAny>,
        args: Py<PyTuple>,
        kwargs: Option<Py<PyDict>>,
        future: Option<Py<PyAny>>,
    ) -> PyResult<PyTask> {
        let call = Call { func, args, kwargs };
        self.inner.submit(py, call, future).map(PyTask::new)
    }

    /// Waits for `task` (a task of this group) with the interpreter released.
    ///
    /// Returns `"finished"` when it has finished, `"failed"` when a task of a
    /// fail-fast group failed (see `first_error()`), `"cancelled"` when
    /// the group or its parent task was cancelled, `"timeout"` when `timeout`
    /// seconds passed. A worker thread runs queued tasks of the group meanwhile.
    /// Ctrl+C cancels the group and raises `KeyboardInterrupt`.
    #[pyo3(signature = (task, timeout=None))]
    fn wait(&self, py: Python<'_>, task: &PyTask, timeout: Option<f64>) -> PyResult<&'static str> {
        let deadline = deadline_from_timeout(timeout)?;
        self.inner
            .wait_task(py, task.inner(), deadline, true)
            .map(WaitStatus::name)
    }

    /// Waits until every task of the group has finished, at most `timeout`
    /// seconds; returns whether they all did. Ctrl+C raises `KeyboardInterrupt`
    /// and cancels nothing.
    #[pyo3(signature = (timeout=None))]
    fn wait_all(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline_from_timeout(timeout)?;
        self.inner.wait_all(py, deadline)
    }

    /// Cancels the group: queued tasks are cancelled, running ones are asked to
    /// stop (`veda.cancelled()` turns true inside them).
    fn cancel(&self, py: Python<'_>) {
        self.inner.cancel(py);
    }

    /// Whether the group, or the task that created it, is cancelled.
    #[getter]
    fn cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// Whether a task of the group has failed.
    #[getter]
    fn failed(&self) -> bool {
        self.inner.failed.load(Ordering::Acquire)
    }

    /// Tasks submitted and not finished.
    #[getter]
    fn pending(&self) -> usize {
        self.inner.lock_state().pending
    }

    /// What a failed task cancels: `"fail_fast"`, `"ordered"` or `"independent"`.
    #[getter]
    fn mode(&self) -> &'static str {
        self.inner.mode.name()
    }

    /// The exceptions of failed tasks, in the order they failed.
    fn errors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let failures: Vec<Py<PyAny>> = self
            .inner
            .lock_state()
            .failures
            .iter()
            .map(|error| error.clone_ref(py))
            .collect();
        PyList::new(py, failures)
    }

    /// The exception of the first task that failed, or `None`.
    fn first_error(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner
            .lock_state()
            .failures
            .first()
            .map(|error| error.clone_ref(py))
    }

    fn __repr__(&self) -> String {
        format!(
            "Group(pending={}, mode={}, failed={}, cancelled={})",
            self.inner.lock_state().pending,
            self.inner.mode.name(),
            self.inner.failed.load(Ordering::Acquire),
            self.inner.is_cancelled()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_modes_round_trip_through_their_names() {
        for mode in [
            FailureMode::FailFast,
            FailureMode::Ordered,
            FailureMode::Independent,
        ] {
            assert_eq!(FailureMode::parse(mode.name()).ok(), Some(mode));
        }
    }

    #[test]
    fn wait_status_names_are_what_python_compares_against() {
        assert_eq!(WaitStatus::Finished.name(), "finished");
        assert_eq!(WaitStatus::Failed.name(), "failed");
        assert_eq!(WaitStatus::Cancelled.name(), "cancelled");
        assert_eq!(WaitStatus::TimedOut.name(), "timeout");
    }
}
