//! `Task`: one Python call scheduled on the thread executor.
//!
//! # States
//!
//! A task moves `QUEUED → RUNNING → DONE`, or `QUEUED → CANCELLED` when it is
//! cancelled before it starts. Exactly one thread wins the `QUEUED → RUNNING`
//! compare-and-swap ([`TaskInner::claim`]): a pool job, or a thread that waits
//! for the task and runs it inline rather than block (nested parallelism). The
//! outcome is written before the final state is published, so a thread that
//! sees `DONE` or `CANCELLED` (Acquire) sees the outcome.
//!
//! # Completion, in order
//!
//! 1. Store the outcome, publish the final state.
//! 2. Complete the attached `veda.Future`, if any (its callbacks run here).
//! 3. Tell the group ([`GroupInner::task_finished`]): waiters wake.
//! 4. Wake the async waiter ([`TaskInner::poll_finished`]).
//!
//! # Cancellation
//!
//! A task reads as cancelled ([`TaskInner::is_cancelled`]) when its own flag is
//! set, when its group is cancelled, or, in an ordered group, when an earlier
//! task of the group failed. A group is cancelled when it is cancelled itself
//! or when the task that created it is: cancellation flows down the tree of
//! nested work. `veda.cancelled()` reads this for the task running on the
//! calling thread ([`current_task`]).

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use pyo3::exceptions::PyBaseException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::errors::{cancelled_error, internal_panic};
use crate::group::GroupInner;
use crate::sync::{Arc, AtomicBool, AtomicU8, AtomicU64, Mutex, Ordering, lock};
use crate::telemetry::{self, TaskEnd};

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
const CANCELLED: u8 = 3;

/// A callable and its arguments, held until the task starts.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) func: Py<PyAny>,
    pub(crate) args: Py<PyTuple>,
    pub(crate) kwargs: Option<Py<PyDict>>,
}

/// How a task ended.
#[derive(Debug)]
enum Outcome {
    Value(Py<PyAny>),
    /// The exception object itself (not a `PyErr`), so that the cycle
    /// collector can see it (see `PyTask::__traverse__`).
    Error(Py<PyBaseException>),
    Cancelled,
}

/// The shared state of a task; see the module documentation.
#[derive(Debug)]
pub(crate) struct TaskInner {
    /// The group the task belongs to: cancellation, failures and wake-ups.
    group: Arc<GroupInner>,
    /// Position in the group, in submission order (ordered cancellation).
    index: u64,
    /// `QUEUED`, `RUNNING`, `DONE` or `CANCELLED`.
    state: AtomicU8,
    /// Cancellation asked for this task alone (`Task.cancel` while running).
    cancel_requested: AtomicBool,
    /// The call, taken when the task starts so its references go early.
    call: Mutex<Option<Call>>,
    /// Written once, before the final state is published.
    outcome: Mutex<Option<Outcome>>,
    /// A `veda.Future` to complete, dropped once completed (no reference cycle).
    future: Mutex<Option<Py<PyAny>>>,
    /// Run time of the call in nanoseconds, for adaptive chunk sizing.
    elapsed_ns: AtomicU64,
    /// Name of the thread that ran the task, for error messages.
    worker: Mutex<Option<String>>,
    /// When the task was created, while telemetry counts (its queue wait).
    queued_at: Option<Instant>,
    /// The one async waiter (`Task.wait_async`).
    waker: AtomicWaker,
}

impl TaskInner {
    pub(crate) fn new(
        group: Arc<GroupInner>,
        index: u64,
        call: Call,
        future: Option<Py<PyAny>>,
    ) -> Arc<Self> {
        Arc::new(TaskInner {
            group,
            index,
            state: AtomicU8::new(QUEUED),
            cancel_requested: AtomicBool::new(false),
            call: Mutex::new(Some(call)),
            outcome: Mutex::new(None),
            future: Mutex::new(future),
            elapsed_ns: AtomicU64::new(0),
            worker: Mutex::new(None),
            queued_at: telemetry::task_spawned(),
            waker: AtomicWaker::new(),
        })
    }

    /// The group the task belongs to.
    pub(crate) fn group(&self) -> &Arc<GroupInner> {
        &self.group
    }

    /// Takes the task for running: `QUEUED → RUNNING`. Exactly one caller wins.
    pub(crate) fn claim(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the task has ended (`DONE` or `CANCELLED`).
    pub(crate) fn is_finished(&self) -> bool {
        self.state.load(Ordering::Acquire) >= DONE
    }

    /// Whether the task may keep running: see the module documentation.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel_requested.load(Ordering::Acquire) || self.group.cancels(self.index)
    }

    /// Cancels the task if it has not started. Returns whether it is now
    /// cancelled (also when it was already). A running task is only flagged, so
    /// that `veda.cancelled()` turns true inside it, and `false` is returned.
    pub(crate) fn cancel(self: &Arc<Self>, py: Option<Python<'_>>) -> bool {
        if self
            .state
            .compare_exchange(QUEUED, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.finish(py, Outcome::Cancelled);
            return true;
        }
        self.cancel_requested.store(true, Ordering::Release);
        self.state.load(Ordering::Acquire) == CANCELLED
    }

    /// Runs a claimed task on this thread, which holds the interpreter.
    pub(crate) fn run(self: &Arc<Self>, py: Python<'_>) {
        let call = lock(&self.call).take();
        *lock(&self.worker) = std::thread::current().name().map(str::to_owned);
        let Some(call) = call else {
            // Unreachable: only the thread that claimed the task runs it.
            self.finish(Some(py), Outcome::Cancelled);
            return;
        };
        if self.is_cancelled() || !self.start_future(py) {
            drop(call);
            self.finish(Some(py), Outcome::Cancelled);
            return;
        }
        let outcome = {
            let _current = CurrentTask::enter(Arc::clone(self));
            let started = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| {
                call.func
                    .bind(py)
                    .call(call.args.bind(py), call.kwargs.as_ref().map(|k| k.bind(py)))
            }));
            let run = started.elapsed();
            telemetry::task_ran(self.queued_at, started, run);
            let nanos = u64::try_from(run.as_nanos()).unwrap_or(u64::MAX);
            self.elapsed_ns.store(nanos, Ordering::Relaxed);
            match result {
                Ok(Ok(value)) => Outcome::Value(value.unbind()),
                Ok(Err(error)) => Outcome::Error(error.into_value(py)),
                Err(payload) => Outcome::Error(internal_panic(py, payload.as_ref()).into_value(py)),
            }
        };
        drop(call);
        self.finish(Some(py), outcome);
    }

    /// Tells the attached future that the task starts; `false` if the future was
    /// cancelled meanwhile (the task must not run).
    fn start_future(&self, py: Python<'_>) -> bool {
        let future = lock(&self.future).as_ref().map(|f| f.clone_ref(py));
        let Some(future) = future else {
            return true;
        };
        match future
            .bind(py)
            .call_method0(pyo3::intern!(py, "set_running_or_notify_cancel"))
            .and_then(|started| started.is_truthy())
        {
            Ok(started) => started,
            Err(error) => {
                error.write_unraisable(py, Some(future.bind(py)));
                true
            }
        }
    }

    /// Ends the task; see "Completion, in order". Without the interpreter (the
    /// pool dropped the job during shutdown, or the interpreter is exiting) the
    /// attached future is left as it is.
    fn finish(self: &Arc<Self>, py: Option<Python<'_>>, outcome: Outcome) {
        let (final_state, end) = match outcome {
            Outcome::Value(_) => (DONE, TaskEnd::Completed),
            Outcome::Error(_) => (DONE, TaskEnd::Failed),
            Outcome::Cancelled => (CANCELLED, TaskEnd::Cancelled),
        };
        telemetry::task_finished(end);
        let failure = match (&outcome, py) {
            (Outcome::Error(error), Some(py)) => {
                Some(PyErr::from_value(error.bind(py).clone().into_any()))
            }
            _ => None,
        };
        *lock(&self.outcome) = Some(outcome);
        self.state.store(final_state, Ordering::Release);
        let future = lock(&self.future).take();
        if let Some(py) = py {
            if let Some(future) = future {
                self.complete_future(py, future.bind(py));
            }
            if let Some(error) = failure {
                self.group.record_failure(py, self.index, error);
            }
        }
        self.group.task_finished();
        self.waker.wake();
    }

    fn complete_future(&self, py: Python<'_>, future: &Bound<'_, PyAny>) {
        let outcome = lock(&self.outcome);
        let completed = match outcome.as_ref() {
            Some(Outcome::Value(value)) => {
                let value = value.clone_ref(py);
                drop(outcome);
                future.call_method1(pyo3::intern!(py, "set_result"), (value,))
            }
            Some(Outcome::Error(error)) => {
                let error = error.clone_ref(py);
                drop(outcome);
                future.call_method1(pyo3::intern!(py, "set_exception"), (error,))
            }
            Some(Outcome::Cancelled) | None => {
                drop(outcome);
                future.call_method0(pyo3::intern!(py, "cancel"))
            }
        };
        if let Err(error) = completed {
            error.write_unraisable(py, Some(future));
        }
    }

    /// Visits the outcome when `self` is finished and the calling `PyTask`
    /// holds the only reference to it; see `PyTask::__traverse__`.
    fn traverse(self: &Arc<Self>, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if !self.is_finished() || Arc::strong_count(self) != 1 {
            return Ok(());
        }
        // A lock held elsewhere is skipped, never waited for (the collector
        // runs with the interpreter held).
        if let Ok(outcome) = self.outcome.try_lock() {
            match outcome.as_ref() {
                Some(Outcome::Value(value)) => visit.call(value)?,
                Some(Outcome::Error(error)) => visit.call(error)?,
                Some(Outcome::Cancelled) | None => {}
            }
        }
        Ok(())
    }

    /// The task's value, or its exception, once finished.
    ///
    /// # Errors
    ///
    /// The task's own exception; `vedart.CancelledError` if it was cancelled;
    /// `vedart.VedaError` if it has not finished.
    pub(crate) fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if !self.is_finished() {
            return Err(crate::errors::VedaErrorKind::Base.err(py, "the task has not finished"));
        }
        match lock(&self.outcome).as_ref() {
            Some(Outcome::Value(value)) => Ok(value.clone_ref(py)),
            Some(Outcome::Error(error)) => {
                Err(PyErr::from_value(error.bind(py).clone().into_any()))
            }
            Some(Outcome::Cancelled) | None => Err(cancelled_error(py, "the task was cancelled")),
        }
    }

    /// The exception the task raised, if it failed.
    pub(crate) fn exception(&self, py: Python<'_>) -> Option<PyErr> {
        match lock(&self.outcome).as_ref() {
            Some(Outcome::Error(error)) => {
                Some(PyErr::from_value(error.bind(py).clone().into_any()))
            }
            _ => None,
        }
    }

    /// A readable state name: `queued`, `running`, `done`, `failed` or `cancelled`.
    pub(crate) fn state_name(&self) -> &'static str {
        match self.state.load(Ordering::Acquire) {
            QUEUED => "queued",
            RUNNING => "running",
            CANCELLED => "cancelled",
            _ => match lock(&self.outcome).as_ref() {
                Some(Outcome::Error(_)) => "failed",
                _ => "done",
            },
        }
    }

    /// Seconds the call ran (0 until it has run).
    pub(crate) fn elapsed(&self) -> f64 {
        // u64 nanoseconds to f64 seconds: exact below 2^53 ns (104 days).
        #[allow(clippy::cast_precision_loss)]
        let nanos = self.elapsed_ns.load(Ordering::Relaxed) as f64;
        nanos / 1e9
    }

    /// Name of the thread that ran the task, once it has started.
    pub(crate) fn worker(&self) -> Option<String> {
        lock(&self.worker).clone()
    }

    /// Polls for the end of the task (for `Task.wait_async`).
    pub(crate) fn poll_finished(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_finished() {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.is_finished() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Ends a claimed task that cannot run because the interpreter is exiting
    /// or cannot be attached to: it reads as cancelled, and its call's references
    /// are released without the interpreter (pyo3 defers them).
    pub(crate) fn abandon(self: &Arc<Self>) {
        drop(lock(&self.call).take());
        self.finish(None, Outcome::Cancelled);
    }
}

thread_local! {
    /// The task running on this thread, innermost first when tasks run inline
    /// inside other tasks.
    static CURRENT: RefCell<Option<Arc<TaskInner>>> = const { RefCell::new(None) };
}

/// Marks a task as the one running on this thread until dropped.
struct CurrentTask {
    previous: Option<Arc<TaskInner>>,
}

impl CurrentTask {
    fn enter(task: Arc<TaskInner>) -> Self {
        let previous = CURRENT.with(|current| current.borrow_mut().replace(task));
        CurrentTask { previous }
    }
}

impl Drop for CurrentTask {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// The task running on the calling thread, if any.
pub(crate) fn current_task() -> Option<Arc<TaskInner>> {
    CURRENT.with(|current| current.borrow().clone())
}

/// A task scheduled on the thread executor; made by `Group.submit`.
#[pyclass(frozen, module = "vedart._vedart", name = "Task")]
#[derive(Debug)]
pub struct PyTask {
    inner: Arc<TaskInner>,
}

impl PyTask {
    pub(crate) fn new(inner: Arc<TaskInner>) -> Self {
        PyTask { inner }
    }

    pub(crate) fn inner(&self) -> &Arc<TaskInner> {
        &self.inner
    }
}

#[pymethods]
impl PyTask {
    /// Shows the cycle collector the outcome of a finished task that only this
    /// object still holds. Without it, an exception whose traceback reaches
    /// back to the task (a frame holding the task, its future or its scope)
    /// formed a cycle the collector could not see, and every failed task of a
    /// pipeline or scope stayed in memory for good. A task the pool still
    /// holds (queued, running, finishing) is not visited: its objects must
    /// count as reachable, or the collector could clear what a worker is
    /// about to use.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.inner.traverse(&visit)
    }

    /// Whether the task has ended (successfully, with an error, or cancelled).
    #[getter]
    fn done(&self) -> bool {
        self.inner.is_finished()
    }

    /// `"queued"`, `"running"`, `"done"`, `"failed"` or `"cancelled"`.
    #[getter]
    fn state(&self) -> &'static str {
        self.inner.state_name()
    }

    /// Position of the task in its group, in submission order.
    #[getter]
    fn index(&self) -> u64 {
        self.inner.index
    }

    /// Seconds the call ran.
    #[getter]
    fn elapsed(&self) -> f64 {
        self.inner.elapsed()
    }

    /// Name of the thread that ran the task (`None` before it starts).
    #[getter]
    fn worker(&self) -> Option<String> {
        self.inner.worker()
    }

    /// The returned value; raises the task's exception, `vedart.CancelledError`
    /// if it was cancelled, `vedart.VedaError` if it has not finished.
    fn result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.inner.result(py)
    }

    /// The exception the task raised, or `None`.
    fn exception(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner
            .exception(py)
            .map(|error| error.into_value(py).into_any())
    }

    /// Cancels the task if it has not started and returns `True`; a running task
    /// is asked to stop (`veda.cancelled()` turns true inside it) and `False` is
    /// returned, unless it was already cancelled.
    fn cancel(&self, py: Python<'_>) -> bool {
        self.inner.cancel(Some(py))
    }

    /// Runs the task on the calling thread if no thread has started it; returns
    /// whether it ran here. Used by a worker that would otherwise block on it.
    fn run_inline(&self, py: Python<'_>) -> bool {
        if self.inner.claim() {
            self.inner.run(py);
            true
        } else {
            false
        }
    }

    /// Waits until the task has finished, at most `timeout` seconds, with the
    /// interpreter released; returns whether it finished. Ctrl+C raises
    /// `KeyboardInterrupt` (the task keeps running).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = crate::detach::deadline_from_timeout(timeout)?;
        if current_task().is_some() && self.run_inline(py) {
            return Ok(true);
        }
        self.inner
            .group()
            .wait_task(py, &self.inner, deadline, false)
            .map(|status| status == crate::group::WaitStatus::Finished)
    }

    /// Waits at most `seconds` (a few microseconds) for the task to finish,
    /// spinning with the interpreter released; returns whether it finished.
    ///
    /// `await future` uses it to pick up a short task's result without an
    /// event-loop round trip.
    fn wait_spin(&self, py: Python<'_>, seconds: f64) -> bool {
        if self.inner.is_finished() {
            return true;
        }
        let Ok(budget) = Duration::try_from_secs_f64(seconds) else {
            return false;
        };
        let inner = &self.inner;
        py.detach(|| {
            let deadline = Instant::now() + budget;
            loop {
                if inner.is_finished() {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
                std::hint::spin_loop();
            }
        })
    }

    /// An asyncio awaitable that resolves to `None` when the task has finished,
    /// without blocking the event loop (bridged through pyo3-async-runtimes on
    /// the VedaRT runtime). Cancelling the awaiting coroutine cancels the task.
    fn wait_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        crate::asyncio_bridge::task_finished(py, Arc::clone(&self.inner))
    }

    fn __repr__(&self) -> String {
        format!(
            "Task(index={}, state={})",
            self.inner.index,
            self.inner.state_name()
        )
    }
}

/// Whether the VedaRT task running on this thread has been asked to stop.
///
/// True inside a task whose scope, pipeline or parent task was cancelled (a
/// sibling failed, the caller was interrupted, the awaiting coroutine was
/// cancelled); always false outside VedaRT tasks. Long-running functions should
/// check it and return early.
#[pyfunction]
pub(crate) fn cancelled() -> bool {
    current_task().is_some_and(|task| task.is_cancelled())
}

/// Whether the calling thread is running a VedaRT task.
#[pyfunction]
pub(crate) fn in_task() -> bool {
    current_task().is_some()
}
