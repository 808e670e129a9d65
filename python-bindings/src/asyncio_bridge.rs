//! The asyncio bridge: pyo3-async-runtimes' generic runtime, implemented for VedaRT.
//!
//! [`VedaRt`] lets `pyo3_async_runtimes::generic::future_into_py` turn a Rust
//! future into an asyncio awaitable. Its futures run as tasks of a VedaRT
//! runtime owned by the bridge (one worker, `veda-worker-0`: the tasks only
//! wait for wake-ups); the closures the library runs to complete the asyncio
//! future (they take the interpreter) run on a small blocking pool of their own
//! (`veda-bridge-{i}`), never on the worker. Both start on first use, and again
//! in a child process after `fork` (whose copies of the threads do not exist).
//!
//! pyo3-async-runtimes drops the handles `spawn` returns; VedaRT's
//! `JoinHandle` detaches on drop, so the tasks keep running.
//!
//! [`Task.wait_async`](crate::task::PyTask) is the one user of the bridge: it
//! awaits the end of a task. If the awaiting asyncio task is cancelled, the
//! library drops the Rust future, and dropping it cancels the VedaRT task:
//! a queued task never runs, a running one sees `veda.cancelled()`, and so do
//! the groups it created (their chunks and children).
//!
//! Task locals (the event loop and contextvars of the awaiting coroutine) are
//! kept per future and installed in a thread-local for the duration of each
//! poll, which is what `ContextExt` asks for.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3_async_runtimes::TaskLocals;
use pyo3_async_runtimes::generic::{ContextExt, JoinError as BridgeJoinErrorTrait, Runtime};
use vedart::blocking::BlockingPool;
use vedart::fork::PerProcess;

use crate::errors::VedaErrorKind;
use crate::sync::Arc;
use crate::task::TaskInner;

/// Threads of the bridge's blocking pool at most: completing an asyncio future
/// is short (one `call_soon_threadsafe`).
const BRIDGE_MAX_THREADS: usize = 4;

/// The marker type that implements pyo3-async-runtimes' runtime traits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VedaRt;

/// A VedaRT `JoinError` as pyo3-async-runtimes sees it.
#[derive(Debug)]
pub(crate) struct BridgeJoinError(vedart::JoinError);

impl BridgeJoinErrorTrait for BridgeJoinError {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }

    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.0.into_panic()
    }
}

/// A task handle whose output pyo3-async-runtimes understands.
pub(crate) struct BridgeJoinHandle(
    Pin<Box<dyn Future<Output = Result<(), BridgeJoinError>> + Send>>,
);

impl Future for BridgeJoinHandle {
    type Output = Result<(), BridgeJoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// The bridge's runtime and blocking pool: made by [`start`], and again in a
/// child made by `fork()` (see `vedart::fork`); never shut down.
struct Bridge {
    runtime: vedart::Runtime,
    pool: BlockingPool,
}

static BRIDGE: PerProcess<Bridge> = PerProcess::new();

/// The bridge of this process, if [`start`] started it here.
fn running() -> Option<(vedart::Handle, BlockingPool)> {
    BRIDGE
        .get()
        .map(|bridge| (bridge.runtime.handle(), bridge.pool.clone()))
}

/// Starts the bridge in this process unless it runs already. Its threads run
/// Python code (the pool's closures complete asyncio futures; the worker
/// cancels tasks), so they get the C stack of a `threading.Thread`.
///
/// # Errors
///
/// `vedart.exceptions.ExecutorError` naming the OS error when a thread cannot
/// start (the bridge is then tried again on next use).
fn start(py: Python<'_>) -> PyResult<()> {
    if running().is_some() {
        return Ok(());
    }
    let stack_size = crate::runtime::python_thread_stack_size(py)?;
    BRIDGE
        .get_or_try_init(|| {
            let runtime = vedart::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("veda-worker")
                .thread_stack_size(stack_size)
                .build()?;
            let pool = BlockingPool::builder()
                .max_workers(BRIDGE_MAX_THREADS)
                .keep_alive(Duration::from_secs(10))
                .thread_name(|i| format!("veda-bridge-{i}"))
                .stack_size(stack_size)
                .on_thread_start(crate::tstate::pin_current_thread)
                .on_thread_stop(crate::tstate::unpin_current_thread)
                .build()
                .unwrap_or_else(|error| unreachable!("constant bounds are valid: {error}"));
            Ok(Bridge { runtime, pool })
        })
        .map(drop)
        .map_err(|error: vedart::BuildError| {
            VedaErrorKind::Executor.err(py, format!("cannot start the asyncio bridge: {error}"))
        })
}

impl Runtime for VedaRt {
    type JoinError = BridgeJoinError;
    type JoinHandle = BridgeJoinHandle;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // `task_finished`, the bridge's one user, started it under the
        // interpreter lock it still holds when the library calls this (and the
        // library's inner spawn runs on the bridge's own worker).
        let Some((runtime, _)) = running() else {
            unreachable!("vedart: the asyncio bridge is used before it was started")
        };
        let handle = runtime.spawn(fut);
        BridgeJoinHandle(Box::pin(
            async move { handle.await.map_err(BridgeJoinError) },
        ))
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        let (done_tx, done_rx) = futures::channel::oneshot::channel::<()>();
        let job = move || {
            f();
            let _ = done_tx.send(());
        };
        let rejected = match running() {
            Some((_, pool)) => pool.execute(job).err().map(|rejected| rejected.into_job()),
            None => Some(Box::new(job) as vedart::blocking::Job),
        };
        if let Some(job) = rejected {
            // The pool never shuts down; a refusal means no thread could start.
            // Run the job here rather than lose the asyncio completion.
            job();
        }
        BridgeJoinHandle(Box::pin(async move {
            // A dropped sender means the closure panicked; the pool contained it.
            let _ = done_rx.await;
            Ok(())
        }))
    }
}

thread_local! {
    static TASK_LOCALS: RefCell<Option<TaskLocals>> = const { RefCell::new(None) };
}

/// Installs `locals` in [`TASK_LOCALS`] around every poll of the inner future.
struct WithLocals<F> {
    locals: TaskLocals,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for WithLocals<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let previous = TASK_LOCALS.with(|slot| slot.borrow_mut().replace(self.locals.clone()));
        let result = self.future.as_mut().poll(cx);
        TASK_LOCALS.with(|slot| *slot.borrow_mut() = previous);
        result
    }
}

impl ContextExt for VedaRt {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        Box::pin(WithLocals {
            locals,
            future: Box::pin(fut),
        })
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS.with(|slot| slot.borrow().clone())
    }
}

/// Resolves when a task finishes; dropped early (the awaiting asyncio task was
/// cancelled), it cancels the task.
struct TaskFinished {
    task: Arc<TaskInner>,
}

impl Future for TaskFinished {
    type Output = PyResult<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PyResult<()>> {
        self.task.poll_finished(cx).map(Ok)
    }
}

impl Drop for TaskFinished {
    fn drop(&mut self) {
        if self.task.is_finished() {
            return;
        }
        let task = &self.task;
        if Python::try_attach(|py| {
            task.cancel(Some(py));
        })
        .is_none()
        {
            task.cancel(None);
        }
    }
}

/// An asyncio awaitable that resolves to `None` when `task` finishes.
pub(crate) fn task_finished<'py>(
    py: Python<'py>,
    task: Arc<TaskInner>,
) -> PyResult<Bound<'py, PyAny>> {
    start(py)?;
    pyo3_async_runtimes::generic::future_into_py::<VedaRt, _, ()>(py, TaskFinished { task })
}
