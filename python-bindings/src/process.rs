//! `ProcessPool`, `ProcessBatch` and `ProcessCall`: the Rust half of the
//! process executor (`executor="process"`).
//!
//! # Implementation
//!
//! A [`PyProcessPool`] owns one `vedart::process::ProcessPool` whose
//! children run `python -m vedart._worker` (the Python side chooses the
//! command line; the wire format is the pool's, see
//! `executors/src/process/README.md`). Its per-child driver tasks and every
//! call future run on a small VedaRT runtime owned by this module (one worker
//! thread, `veda-process-driver-0`), started on first use and again in a
//! process made by `fork()`, where the parent's threads do not exist. Nothing
//! on that thread touches the interpreter: a call's answer is stored as bytes
//! and turned into Python objects by the thread that asks for it.
//!
//! A [`PyProcessBatch`] is one set of calls with one failure policy (one
//! pipeline run). The protocol of a call:
//!
//! 1. `ProcessBatch.submit` copies the request bytes, prefixes the context id
//!    (0 without a context: the request carries its own function), creates the
//!    pool call and spawns a task that awaits it. The call is now in flight:
//!    the pool writes it to the least-loaded child.
//! 2. When the call resolves, the task stores the outcome, removes the call
//!    from the batch's outstanding set, records it as failed when it failed
//!    other than by cancellation (a batch made with `completions=True`
//!    instead queues every resolved call for `take_completed`), and wakes the
//!    batch's waiters (under the batch's lock, so a waiter cannot miss it).
//! 3. `ProcessBatch.wait` blocks with the interpreter released (see
//!    [`crate::detach`]) until the call is done, or, in fail-fast mode, until
//!    any call of the batch failed; it also returns when the VedaRT task that
//!    runs on the calling thread is cancelled, and a Ctrl+C raises
//!    `KeyboardInterrupt` there. `ProcessBatch.take_completed` blocks the
//!    same way until some call resolved, and takes every resolved call: one
//!    thread completes the futures of a `concurrent.futures` executor's calls.
//! 4. `ProcessBatch.cancel` cancels every outstanding call: a call whose frame
//!    was not written yet is withdrawn; the child running a started one gets
//!    SIGTERM (SIGKILL after the grace period) and the pool replaces it; a
//!    child holding a written, unstarted one takes no new calls and is
//!    terminated when it gets to it. Other calls on a terminated child run at
//!    most once (see `executors/src/process/README.md`, "At most once").
//!    Dropping a `ProcessCall` does not cancel it: its answer is discarded.
//!
//! Shutting the pool down (`shutdown`: graceful, children exit at EOF on
//! stdin; `close`: SIGTERM now) takes the pool out of its slot first, so calls
//! submitted afterwards fail with a `closed` outcome.

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple, PyType};
use vedart::fork::PerProcess;
use vedart::process::{
    CancelHandle, Context, ProcessError, ProcessErrorKind, ProcessPool, WorkerState,
};

use crate::detach::{deadline_from_timeout, wait_detached};
use crate::sync::{Arc, AtomicBool, Condvar, Mutex, Ordering, lock};
use crate::task::current_task;

/// `vedart.exceptions.ExecutorError` with `message` (or the import error, if
/// the package is broken).
pub(crate) fn executor_error(py: Python<'_>, message: impl Into<String>) -> PyErr {
    static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    match CLASS.import(py, "vedart.exceptions", "ExecutorError") {
        Ok(class) => PyErr::from_type(class.clone(), message.into()),
        Err(import_error) => import_error,
    }
}

/// The runtime that drives every pool of this process: started on first use,
/// and again in a child made by `fork()` (see `vedart::fork`); never
/// shut down.
fn driver(py: Python<'_>) -> PyResult<vedart::Handle> {
    static DRIVER: PerProcess<vedart::Runtime> = PerProcess::new();
    DRIVER
        .get_or_try_init(|| {
            vedart::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("veda-process-driver")
                .build()
        })
        .map(vedart::Runtime::handle)
        .map_err(|error| {
            executor_error(py, format!("cannot start the process-pool driver: {error}"))
        })
}

/// Runs `work` on a blocking thread of the driver and waits for its result
/// with the interpreter released (see [`crate::detach`]). On Ctrl+C the
/// `KeyboardInterrupt` is raised at once and `work` goes on; what it returns
/// then is dropped on that thread.
fn run_detached<T: Send + 'static>(
    py: Python<'_>,
    runtime: &vedart::Handle,
    work: impl FnOnce() -> T + Send + 'static,
) -> PyResult<T> {
    let (done_tx, done_rx) = std::sync::mpsc::channel::<T>();
    drop(runtime.spawn_blocking(move || {
        // If the waiter gave up, the value comes back and is dropped here.
        let _ = done_tx.send(work());
    }));
    let done = wait_detached(py, None, move |limit| match done_rx.recv_timeout(limit) {
        Ok(value) => Some(Some(value)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Some(None),
    })?;
    done.flatten().ok_or_else(|| {
        executor_error(
            py,
            "the process-pool driver dropped a job (it is shutting down)",
        )
    })
}

/// The pool and the runtime that drives it, shared by the pool object and its
/// batches. `None` once the pool is shut down.
struct PoolSlot {
    pool: Mutex<Option<ProcessPool>>,
    runtime: vedart::Handle,
}

/// A pool of warm worker processes that answer framed requests.
///
/// Made by `vedart._process`; see the module documentation.
#[pyclass(frozen, module = "vedart._vedart", name = "ProcessPool")]
pub struct PyProcessPool {
    slot: Arc<PoolSlot>,
    workers: usize,
    max_message_size: usize,
}

impl std::fmt::Debug for PyProcessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessPool")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

fn state_name(state: WorkerState) -> &'static str {
    match state {
        WorkerState::Live => "live",
        WorkerState::Retiring => "retiring",
        _ => "terminating",
    }
}

#[pymethods]
impl PyProcessPool {
    /// Starts `workers` children running `program` with `args`, with the
    /// variables `env` added to this process's environment. `grace_period` is
    /// the time in seconds between SIGTERM and SIGKILL when a child is
    /// terminated; with `forward_stderr` what the children write to stderr is
    /// copied to this process's stderr (their last lines are kept for crash
    /// reports either way). Blocks (with the interpreter released) for the
    /// fork+exec of each child, not for their start-up; a Ctrl+C meanwhile
    /// raises `KeyboardInterrupt` at once, starts no further child and kills
    /// and reaps those that were started.
    ///
    /// `max_frame_size` and `max_message_size` (bytes; default: the pool's,
    /// 256 MiB and 4 GiB) bound one frame and one request or answer however
    /// many frames it takes (see `executors/src/process/README.md`).
    ///
    /// `max_tasks_per_child` (at least 1; default: no limit) retires a child
    /// once it was given that many calls: it finishes them, exits at EOF and
    /// the pool starts a replacement (no call is run twice or lost).
    ///
    /// Raises `vedart.ExecutorError` when a child cannot be started, and
    /// `ValueError` for a `max_tasks_per_child` of 0.
    #[new]
    #[pyo3(signature = (
        program, args, env, workers, grace_period=1.0, forward_stderr=true, *,
        max_frame_size=None, max_message_size=None, max_tasks_per_child=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        program: OsString,
        args: Vec<OsString>,
        env: Vec<(OsString, OsString)>,
        workers: usize,
        grace_period: f64,
        forward_stderr: bool,
        max_frame_size: Option<usize>,
        max_message_size: Option<usize>,
        max_tasks_per_child: Option<u64>,
    ) -> PyResult<Self> {
        if max_tasks_per_child == Some(0) {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "max_tasks_per_child must be at least 1, got 0",
            ));
        }
        let grace = Duration::try_from_secs_f64(grace_period).map_err(|_| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "grace_period must be a non-negative number of seconds, got {grace_period}"
            ))
        })?;
        let workers = workers.max(1);
        let runtime = driver(py)?;
        // Ctrl+C stops the build before its next child: those started are
        // killed and reaped on the driver's thread.
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut builder = runtime
            .process_pool(&program)
            .args(args)
            .envs(env)
            .workers(workers);
        if let Some(bytes) = max_frame_size {
            builder = builder.max_frame_size(bytes);
        }
        if let Some(bytes) = max_message_size {
            builder = builder.max_message_size(bytes);
        }
        if let Some(tasks) = max_tasks_per_child {
            builder = builder.max_tasks_per_child(tasks);
        }
        let builder = builder
            .grace_period(grace)
            .forward_stderr(forward_stderr)
            .cancel_flag(std::sync::Arc::clone(&cancel));
        let built = run_detached(py, &runtime, move || builder.build()).inspect_err(|_| {
            cancel.store(true, std::sync::atomic::Ordering::Release);
        })?;
        let pool = built.map_err(|error| {
            executor_error(
                py,
                format!(
                    "cannot start worker processes ({}): {error}",
                    program.to_string_lossy()
                ),
            )
        })?;
        let max_message_size = pool.max_message_size();
        Ok(PyProcessPool {
            slot: Arc::new(PoolSlot {
                pool: Mutex::new(Some(pool)),
                runtime,
            }),
            workers,
            max_message_size,
        })
    }

    /// The largest request or answer in bytes, however many frames it takes.
    #[getter]
    fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// The number of children the pool keeps.
    #[getter]
    fn workers(&self) -> usize {
        self.workers
    }

    /// Whether the pool was shut down or closed.
    #[getter]
    fn closed(&self) -> bool {
        lock(&self.slot.pool).is_none()
    }

    /// The pids of the live children.
    fn pids(&self) -> Vec<u32> {
        lock(&self.slot.pool)
            .as_ref()
            .map(ProcessPool::pids)
            .unwrap_or_default()
    }

    /// Registers `payload` to be installed once in each child that runs a call
    /// made with the returned context (a pickled stage chain).
    ///
    /// Raises `vedart.ExecutorError` if the pool is closed or the payload is
    /// larger than a frame may be.
    fn context(&self, py: Python<'_>, payload: &[u8]) -> PyResult<PyProcessContext> {
        let guard = lock(&self.slot.pool);
        let Some(pool) = guard.as_ref() else {
            return Err(executor_error(py, "the process pool is shut down"));
        };
        pool.context(payload.to_vec())
            .map(|context| PyProcessContext { context })
            .map_err(|error| executor_error(py, error.to_string()))
    }

    /// A new, empty batch of calls on this pool.
    ///
    /// With `completions`, every call that resolves (whatever its outcome)
    /// is queued for `take_completed`, in the order they resolve, and no list
    /// of failures is kept: the batch then serves independent calls, each
    /// handed to whoever takes it (a `concurrent.futures` executor), for as
    /// long as the owner likes, without growing.
    #[pyo3(signature = (completions=false))]
    fn batch(&self, completions: bool) -> PyProcessBatch {
        PyProcessBatch {
            slot: Arc::clone(&self.slot),
            shared: Arc::new(BatchShared {
                state: Mutex::new(BatchState {
                    next_index: 0,
                    outstanding: HashMap::new(),
                    failures: Vec::new(),
                    cancelled: false,
                    completed: completions.then(Vec::new),
                }),
                cond: Condvar::new(),
            }),
        }
    }

    /// A snapshot of the children and counters: `workers` (a list of dicts
    /// with `pid`, `state`, `in_flight`, `tasks_sent`, `completed`, `uptime`),
    /// `spawned`, `respawns`, `bytes_sent`, `bytes_received`, `calls_ok`,
    /// `calls_failed`. Empty counters once the pool is closed.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = lock(&self.slot.pool).as_ref().map(ProcessPool::stats);
        let dict = PyDict::new(py);
        let workers = PyList::empty(py);
        if let Some(stats) = stats {
            for worker in &stats.workers {
                let entry = PyDict::new(py);
                entry.set_item("pid", worker.pid)?;
                entry.set_item("state", state_name(worker.state))?;
                entry.set_item("in_flight", worker.in_flight)?;
                entry.set_item("tasks_sent", worker.tasks_sent)?;
                entry.set_item("completed", worker.completed)?;
                entry.set_item("uptime", worker.uptime.as_secs_f64())?;
                workers.append(entry)?;
            }
            dict.set_item("spawned", stats.spawned)?;
            dict.set_item("respawns", stats.respawns)?;
            dict.set_item("bytes_sent", stats.bytes_sent)?;
            dict.set_item("bytes_received", stats.bytes_received)?;
            dict.set_item("calls_ok", stats.calls_ok)?;
            dict.set_item("calls_failed", stats.calls_failed)?;
        } else {
            for key in [
                "spawned",
                "respawns",
                "bytes_sent",
                "bytes_received",
                "calls_ok",
                "calls_failed",
            ] {
                dict.set_item(key, 0)?;
            }
        }
        dict.set_item("workers", workers)?;
        Ok(dict)
    }

    /// Shuts the pool down gracefully: new calls fail, calls in flight finish,
    /// then each child's stdin is closed so that it exits. Waits at most
    /// `timeout` seconds (`None`: as long as it takes) with the interpreter
    /// released, then terminates and reaps whatever is left. Returns whether
    /// every child had exited within the timeout. Idempotent.
    #[pyo3(signature = (timeout=None))]
    fn shutdown(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = deadline_from_timeout(timeout)?;
        let Some(pool) = lock(&self.slot.pool).take() else {
            return Ok(true);
        };
        let shutdown = pool.shutdown();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        drop(self.slot.runtime.spawn(async move {
            shutdown.await;
            let _ = done_tx.send(());
        }));
        let finished = wait_detached(py, deadline, move |limit| {
            match done_rx.recv_timeout(limit) {
                Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Some(()),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            }
        });
        // Whatever is still running is terminated and reaped by the drop.
        run_detached(py, &self.slot.runtime, move || drop(pool))?;
        Ok(finished?.is_some())
    }

    /// Closes the pool at once: calls in flight fail, every child gets SIGTERM
    /// and is reaped (SIGKILL after the grace period). Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let pool = lock(&self.slot.pool).take();
        run_detached(py, &self.slot.runtime, move || drop(pool))
    }

    fn __repr__(&self) -> String {
        let pids = self.pids();
        format!(
            "ProcessPool(workers={}, pids={pids:?}, closed={})",
            self.workers,
            self.closed()
        )
    }
}

/// Bytes installed once in each child that runs a call made with them.
#[pyclass(frozen, module = "vedart._vedart", name = "ProcessContext")]
#[derive(Debug)]
pub struct PyProcessContext {
    context: Context,
}

#[pymethods]
impl PyProcessContext {
    /// The id the child sees (the first 8 bytes of every request made with it,
    /// little-endian).
    #[getter]
    fn id(&self) -> u64 {
        self.context.id()
    }

    fn __repr__(&self) -> String {
        format!(
            "ProcessContext(id={}, len={})",
            self.context.id(),
            self.context.payload().len()
        )
    }
}

/// What a batch's lock protects.
struct BatchState {
    /// Index of the next call, in submission order.
    next_index: u64,
    /// Calls not resolved yet, by index: what `cancel` cancels.
    outstanding: HashMap<u64, CancelHandle>,
    /// Calls that failed other than by cancellation, in the order they failed.
    failures: Vec<Arc<CallInner>>,
    /// Set by `cancel`: calls submitted afterwards are cancelled at once.
    cancelled: bool,
    /// Resolved calls not taken yet, oldest first; `Some` only for a batch
    /// made with `completions=True` (see `take_completed`).
    completed: Option<Vec<Arc<CallInner>>>,
}

/// The state a batch shares with the tasks that complete its calls.
struct BatchShared {
    state: Mutex<BatchState>,
    /// Notified whenever a call of the batch resolves.
    cond: Condvar,
}

impl BatchShared {
    /// Waits at most `limit` for `ready` to return something, checking it
    /// under the batch's lock each time a call resolves; `None` when the time
    /// runs out first.
    fn wait_until<R>(
        &self,
        limit: Duration,
        mut ready: impl FnMut(&mut BatchState) -> Option<R>,
    ) -> Option<R> {
        let until = Instant::now() + limit;
        let mut state = lock(&self.state);
        loop {
            if let Some(found) = ready(&mut state) {
                return Some(found);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .cond
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

/// One set of process calls with one failure policy; see the module
/// documentation.
#[pyclass(frozen, module = "vedart._vedart", name = "ProcessBatch")]
pub struct PyProcessBatch {
    slot: Arc<PoolSlot>,
    shared: Arc<BatchShared>,
}

impl std::fmt::Debug for PyProcessBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessBatch").finish_non_exhaustive()
    }
}

/// Whether the VedaRT task running on this thread has been cancelled.
fn current_task_cancelled() -> bool {
    current_task().is_some_and(|task| task.is_cancelled())
}

#[pymethods]
impl PyProcessBatch {
    /// Sends `request` to a child and returns the call at once. With a
    /// `context`, the child receives the context first (once) and the request
    /// starts with the context's id; without one it starts with 8 zero bytes.
    /// `retries`: how many times the call may run again after an attempt that
    /// had started was lost to its child's death or termination (calls run at
    /// most once by default; see the pool's "At most once" rule). `timeout`:
    /// seconds the call may take from now; past them its outcome is
    /// `("timeout", ...)` and the child that has its request is terminated and
    /// replaced, the pool's other calls unaffected.
    ///
    /// Raises `ValueError` for a negative or non-finite `timeout`.
    #[pyo3(signature = (request, context, *, retries=0, timeout=None))]
    fn submit(
        &self,
        request: &[u8],
        context: Option<&PyProcessContext>,
        retries: u32,
        timeout: Option<f64>,
    ) -> PyResult<PyProcessCall> {
        let timeout = timeout
            .map(|seconds| {
                Duration::try_from_secs_f64(seconds).map_err(|_| {
                    pyo3::exceptions::PyValueError::new_err(format!(
                        "timeout must be a non-negative number of seconds, got {seconds}"
                    ))
                })
            })
            .transpose()?;
        let mut bytes = Vec::with_capacity(request.len() + 8);
        let context_id = context.map_or(0, |context| context.context.id());
        bytes.extend_from_slice(&context_id.to_le_bytes());
        bytes.extend_from_slice(request);
        let call = {
            let guard = lock(&self.slot.pool);
            guard.as_ref().map(|pool| {
                let call = match context {
                    Some(context) => pool.call_with(&context.context, bytes),
                    None => pool.call(bytes),
                }
                .retries(retries);
                match timeout {
                    Some(timeout) => call.timeout(timeout),
                    None => call,
                }
            })
        };
        let (index, cancelled) = {
            let mut state = lock(&self.shared.state);
            let index = state.next_index;
            state.next_index += 1;
            (index, state.cancelled)
        };
        let Some(call) = call else {
            let inner = CallInner::new(index, Arc::clone(&self.shared), None);
            inner.complete(Err(CallFailure::Closed));
            return Ok(PyProcessCall { inner });
        };
        let cancel = call.cancel_handle();
        let inner = CallInner::new(index, Arc::clone(&self.shared), Some(cancel.clone()));
        lock(&self.shared.state)
            .outstanding
            .insert(index, cancel.clone());
        let completion = Arc::clone(&inner);
        drop(self.slot.runtime.spawn(async move {
            let result = call.await;
            completion.complete(result.map_err(CallFailure::Process));
        }));
        if cancelled {
            cancel.cancel();
        }
        Ok(PyProcessCall { inner })
    }

    /// Waits for `call` with the interpreter released, at most `timeout`
    /// seconds. Returns `"finished"`, `"failed"` (fail-fast only: another call
    /// of the batch failed first), `"cancelled"` (the VedaRT task running on
    /// this thread was cancelled) or `"timeout"`. Ctrl+C raises
    /// `KeyboardInterrupt`.
    #[pyo3(signature = (call, fail_fast, timeout=None))]
    fn wait(
        &self,
        py: Python<'_>,
        call: &PyProcessCall,
        fail_fast: bool,
        timeout: Option<f64>,
    ) -> PyResult<&'static str> {
        let deadline = deadline_from_timeout(timeout)?;
        let shared = Arc::clone(&self.shared);
        let inner = Arc::clone(&call.inner);
        let check = move |state: &BatchState| -> Option<&'static str> {
            if inner.done.load(Ordering::Acquire) {
                Some("finished")
            } else if fail_fast && !state.failures.is_empty() {
                Some("failed")
            } else if current_task_cancelled() {
                Some("cancelled")
            } else {
                None
            }
        };
        if let Some(status) = check(&lock(&shared.state)) {
            return Ok(status);
        }
        let status = wait_detached(py, deadline, move |limit| {
            shared.wait_until(limit, |state| check(state))
        })?;
        Ok(status.unwrap_or("timeout"))
    }

    /// Waits, with the interpreter released, at most `timeout` seconds
    /// (`None`: no limit) until calls of the batch have resolved that were not
    /// taken yet, and takes them, in the order they resolved; `[]` when the
    /// timeout passes first. Only for a batch made with `completions=True`.
    ///
    /// Raises `ValueError` for another batch or a negative timeout, and what a
    /// signal handler raises (Ctrl+C on the main thread).
    #[pyo3(signature = (timeout=None))]
    fn take_completed(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Vec<PyProcessCall>> {
        let deadline = deadline_from_timeout(timeout)?;
        if lock(&self.shared.state).completed.is_none() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "take_completed() needs a batch made with completions=True",
            ));
        }
        let shared = Arc::clone(&self.shared);
        let taken = wait_detached(py, deadline, move |limit| {
            shared.wait_until(limit, |state| {
                let completed = state.completed.as_mut().filter(|c| !c.is_empty())?;
                Some(std::mem::take(completed))
            })
        })?;
        Ok(taken
            .unwrap_or_default()
            .into_iter()
            .map(|inner| PyProcessCall { inner })
            .collect())
    }

    /// The calls that failed other than by cancellation, in the order they
    /// failed (none for a batch made with `completions=True`).
    fn failures(&self) -> Vec<PyProcessCall> {
        lock(&self.shared.state)
            .failures
            .iter()
            .map(|inner| PyProcessCall {
                inner: Arc::clone(inner),
            })
            .collect()
    }

    /// Calls submitted and not resolved yet.
    #[getter]
    fn pending(&self) -> usize {
        lock(&self.shared.state).outstanding.len()
    }

    /// Whether `cancel` was called.
    #[getter]
    fn cancelled(&self) -> bool {
        lock(&self.shared.state).cancelled
    }

    /// Cancels every outstanding call (and those submitted later): queued
    /// frames are withdrawn, children running the others are terminated and
    /// replaced.
    fn cancel(&self) {
        let handles: Vec<CancelHandle> = {
            let mut state = lock(&self.shared.state);
            state.cancelled = true;
            state
                .outstanding
                .drain()
                .map(|(_, handle)| handle)
                .collect()
        };
        for handle in handles {
            handle.cancel();
        }
    }
}

/// Why a call failed.
enum CallFailure {
    /// The pool said so.
    Process(ProcessError),
    /// The pool was shut down before the call was made.
    Closed,
}

/// The state of one call, shared with the task that completes it.
struct CallInner {
    /// Position in the batch, in submission order.
    index: u64,
    batch: Arc<BatchShared>,
    /// Cancels the pool call (`None` for a call that never reached a pool).
    cancel: Option<CancelHandle>,
    /// Set (under the batch's lock) once `outcome` is written.
    done: AtomicBool,
    outcome: Mutex<Option<Result<Answer, CallFailure>>>,
}

/// A successful call's answer: the bytes the child sent, until the first
/// `ProcessCall.outcome()` moves them into a Python `bytes` object, which
/// later calls return again (so a large answer is never held twice for
/// long).
enum Answer {
    Bytes(Vec<u8>),
    Python(Py<PyBytes>),
}

impl CallInner {
    fn new(index: u64, batch: Arc<BatchShared>, cancel: Option<CancelHandle>) -> Arc<Self> {
        Arc::new(CallInner {
            index,
            batch,
            cancel,
            done: AtomicBool::new(false),
            outcome: Mutex::new(None),
        })
    }

    /// Step 2 of the module documentation.
    fn complete(self: &Arc<Self>, result: Result<Vec<u8>, CallFailure>) {
        let failed = match &result {
            Ok(_) => false,
            Err(CallFailure::Process(error)) => !error.is_cancelled(),
            Err(CallFailure::Closed) => true,
        };
        *lock(&self.outcome) = Some(result.map(Answer::Bytes));
        {
            let mut state = lock(&self.batch.state);
            state.outstanding.remove(&self.index);
            if let Some(completed) = state.completed.as_mut() {
                completed.push(Arc::clone(self));
            } else if failed {
                state.failures.push(Arc::clone(self));
            }
            self.done.store(true, Ordering::Release);
        }
        self.batch.cond.notify_all();
    }
}

/// One request sent to a worker process; made by `ProcessBatch.submit`.
#[pyclass(frozen, module = "vedart._vedart", name = "ProcessCall")]
pub struct PyProcessCall {
    inner: Arc<CallInner>,
}

impl std::fmt::Debug for PyProcessCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessCall")
            .field("index", &self.inner.index)
            .finish_non_exhaustive()
    }
}

#[pymethods]
impl PyProcessCall {
    /// Position of the call in its batch.
    #[getter]
    fn index(&self) -> u64 {
        self.inner.index
    }

    /// Whether the call has resolved.
    #[getter]
    fn done(&self) -> bool {
        self.inner.done.load(Ordering::Acquire)
    }

    /// How the call ended, as a tuple whose first item names the case:
    ///
    /// - `("ok", answer: bytes)`
    /// - `("remote", payload: bytes, pid)`: the child answered with an error
    ///   frame;
    /// - `("died", message, pid, exit_code, signal, stderr_tail)`;
    /// - `("interrupted", message, pid)`: the call had started on a child that
    ///   was terminated for another call's cancellation, and had no retries
    ///   left;
    /// - `("cancelled", message)`, `("closed", message)`;
    /// - `("timeout", message, pid, seconds)`: past the `timeout` of `submit`
    ///   (`pid`: the child that had the request, terminated and replaced);
    /// - `("too_large", message, pid, size, max)`: the request (`pid` None)
    ///   or the child's answer exceeds the pool's maximum message size `max`;
    /// - `("protocol" | "spawn", message)`.
    ///
    /// `None` while the call is in flight.
    fn outcome<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        if !self.inner.done.load(Ordering::Acquire) {
            return Ok(None);
        }
        let mut outcome = lock(&self.inner.outcome);
        let tuple = match outcome.as_mut() {
            None => return Ok(None),
            Some(Ok(answer)) => {
                let bytes = match answer {
                    Answer::Python(bytes) => bytes.bind(py).clone(),
                    Answer::Bytes(data) => {
                        let bytes = PyBytes::new(py, data);
                        // Frees the Rust copy at once.
                        *answer = Answer::Python(bytes.clone().unbind());
                        bytes
                    }
                };
                ("ok", bytes).into_pyobject(py)?
            }
            Some(Err(CallFailure::Closed)) => {
                ("closed", "the process pool is shut down").into_pyobject(py)?
            }
            Some(Err(CallFailure::Process(error))) => match error.kind() {
                ProcessErrorKind::Remote => (
                    "remote",
                    PyBytes::new(py, error.remote_payload().unwrap_or_default()),
                    error.pid(),
                )
                    .into_pyobject(py)?,
                ProcessErrorKind::WorkerDied => (
                    "died",
                    error.to_string(),
                    error.pid(),
                    error.exit_code(),
                    error.signal(),
                    error.stderr_tail().to_vec(),
                )
                    .into_pyobject(py)?,
                ProcessErrorKind::Cancelled => {
                    ("cancelled", error.to_string()).into_pyobject(py)?
                }
                ProcessErrorKind::Interrupted => {
                    ("interrupted", error.to_string(), error.pid()).into_pyobject(py)?
                }
                ProcessErrorKind::TimedOut => (
                    "timeout",
                    error.to_string(),
                    error.pid(),
                    error.timeout().map_or(0.0, |after| after.as_secs_f64()),
                )
                    .into_pyobject(py)?,
                ProcessErrorKind::PoolClosed => ("closed", error.to_string()).into_pyobject(py)?,
                ProcessErrorKind::Protocol => ("protocol", error.to_string()).into_pyobject(py)?,
                ProcessErrorKind::Spawn => ("spawn", error.to_string()).into_pyobject(py)?,
                ProcessErrorKind::TooLarge => {
                    let (size, max) = error.size().unwrap_or_default();
                    ("too_large", error.to_string(), error.pid(), size, max).into_pyobject(py)?
                }
                _ => ("error", error.to_string()).into_pyobject(py)?,
            },
        };
        Ok(Some(tuple))
    }

    /// Cancels this call: withdrawn if not written yet, else its child is
    /// terminated and replaced. Does nothing once it resolved.
    fn cancel(&self) {
        if let Some(cancel) = &self.inner.cancel {
            cancel.cancel();
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "ProcessCall(index={}, done={})",
            self.inner.index,
            self.inner.done.load(Ordering::Acquire)
        )
    }
}
