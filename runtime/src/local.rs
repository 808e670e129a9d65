//! [`LocalSet`] and [`spawn_local`]: `!Send` futures on the current thread.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use async_executor::LocalExecutor;

use crate::{JoinError, Runtime};

std::thread_local! {
    /// The set whose `run_until` is polling on this thread, if any.
    static CURRENT: RefCell<Option<Rc<LocalExecutor<'static>>>> = const { RefCell::new(None) };
}

/// Owns tasks that are not `Send` (they hold `Rc`s, `RefCell`s, thread-bound
/// handles) and runs them on the thread that drives it.
///
/// The tasks run while the set is driven: inside
/// [`run_until`](LocalSet::run_until) (a future: await it in any task or
/// `block_on`) or [`block_on`](LocalSet::block_on). Inside, [`spawn_local`]
/// adds tasks to the set. They stay on this thread, interleaved with the
/// future being driven; between drives they wait. Dropping the set cancels
/// the tasks still in it. The queue is
/// [`async-executor`](https://docs.rs/async-executor)'s `LocalExecutor`.
///
/// # Examples
///
#[doc = crate::example!()]
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use vedart::task::{LocalSet, spawn_local};
///
/// let rt = vedart::Builder::new_current_thread().build().unwrap();
/// let local = LocalSet::new();
/// let total = local.block_on(&rt, async {
///     let total = Rc::new(RefCell::new(0)); // not Send
///     let tasks: Vec<_> = (1..=10)
///         .map(|i| {
///             let total = total.clone();
///             spawn_local(async move {
///                 vedart::yield_now().await;
///                 *total.borrow_mut() += i;
///             })
///         })
///         .collect();
///     for task in tasks {
///         task.await.unwrap();
///     }
///     let total = *total.borrow();
///     total
/// });
/// assert_eq!(total, 55);
/// ```
pub struct LocalSet {
    executor: Rc<LocalExecutor<'static>>,
}

impl LocalSet {
    /// An empty set.
    pub fn new() -> LocalSet {
        LocalSet {
            executor: Rc::new(LocalExecutor::new()),
        }
    }

    /// Adds `future` to the set; it starts when the set is next driven.
    pub fn spawn_local<F>(&self, future: F) -> LocalJoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        spawn_on(&self.executor, future)
    }

    /// Runs `future` to completion, running the set's tasks (and any it
    /// spawns with [`spawn_local`]) while it waits. Returns when `future`
    /// does, leaving unfinished tasks in the set.
    pub async fn run_until<F: Future>(&self, future: F) -> F::Output {
        Driving {
            executor: &self.executor,
            run: self.executor.run(future),
        }
        .await
    }

    /// `runtime.block_on(self.run_until(future))`.
    pub fn block_on<F: Future>(&self, runtime: &Runtime, future: F) -> F::Output {
        runtime.block_on(self.run_until(future))
    }
}

impl Default for LocalSet {
    fn default() -> LocalSet {
        LocalSet::new()
    }
}

impl fmt::Debug for LocalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSet").finish_non_exhaustive()
    }
}

pin_project_lite::pin_project! {
    /// `run_until`'s future: marks the set current on this thread during each poll.
    struct Driving<'a, R> {
        executor: &'a Rc<LocalExecutor<'static>>,
        #[pin]
        run: R,
    }
}

impl<R: Future> Future for Driving<'_, R> {
    type Output = R::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R::Output> {
        let this = self.project();
        /// Restores the previously current set, even if a poll panics.
        struct Restore(Option<Rc<LocalExecutor<'static>>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|current| *current.borrow_mut() = previous);
            }
        }
        let previous = CURRENT.with(|current| current.replace(Some(this.executor.clone())));
        let _restore = Restore(previous);
        this.run.poll(cx)
    }
}

/// Spawns a `!Send` future onto the [`LocalSet`] being driven on this thread.
///
/// # Panics
///
/// Panics when no `LocalSet` is being driven on this thread (outside
/// [`LocalSet::run_until`] / [`LocalSet::block_on`]).
pub fn spawn_local<F>(future: F) -> LocalJoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let executor = CURRENT.with(|current| current.borrow().clone());
    match executor {
        Some(executor) => spawn_on(&executor, future),
        None => panic!(
            "vedart::task::spawn_local called outside a LocalSet: drive one with \
             `LocalSet::run_until` or `LocalSet::block_on`, or use `LocalSet::spawn_local`"
        ),
    }
}

fn spawn_on<F>(executor: &LocalExecutor<'static>, future: F) -> LocalJoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let task = executor.spawn(CatchUnwind(Box::pin(future)));
    LocalJoinHandle {
        task: Some(task.fallible()),
    }
}

/// Completes with the future's output, or a [`JoinError`] if a poll panicked.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(JoinError::panic(payload))),
        }
    }
}

/// Awaits a task of a [`LocalSet`]: `Ok(output)`, or a [`JoinError`] if it
/// panicked or was cancelled (by [`abort`](LocalJoinHandle::abort) or by
/// dropping its set). Dropping the handle detaches the task.
#[must_use = "dropping a LocalJoinHandle detaches the task; call `.await` or drop it explicitly"]
pub struct LocalJoinHandle<T> {
    task: Option<async_task::FallibleTask<Result<T, JoinError>>>,
}

impl<T> LocalJoinHandle<T> {
    /// Cancels the task: it is never polled again, and its future is dropped
    /// the next time its set runs (at once if the set is being driven).
    pub fn abort(mut self) {
        // Dropping an async-task handle (not detaching it) cancels the task.
        drop(self.task.take());
    }

    /// Whether the task has finished.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|task| task.is_finished())
    }
}

impl<T> Future for LocalJoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.task.as_mut() {
            Some(task) => Pin::new(task)
                .poll(cx)
                .map(|output| output.unwrap_or_else(|| Err(JoinError::cancelled()))),
            None => Poll::Ready(Err(JoinError::cancelled())),
        }
    }
}

impl<T> Drop for LocalJoinHandle<T> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }
}

impl<T> fmt::Debug for LocalJoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalJoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
