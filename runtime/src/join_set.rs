//! [`JoinSet`]: a set of spawned tasks, joined in completion order.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{FuturesUnordered, Stream, StreamExt};

use crate::{AbortHandle, Handle, JoinError, JoinHandle};

/// Tasks spawned into one set, their results taken as they finish.
///
/// [`join_next`](JoinSet::join_next) returns the next task to finish (in
/// completion order, not spawn order), `None` once the set is empty.
/// [`abort_all`](JoinSet::abort_all) cancels every task; their results still
/// come out of `join_next` as cancelled [`JoinError`]s (or as values, for tasks
/// that finished first). Dropping the set aborts every task still in it: a set
/// owns its tasks, unlike a [`JoinHandle`], whose drop detaches.
///
/// `join_next` is cancellation safe: a result is taken out of the set only by
/// the poll that returns it.
///
/// # Examples
///
#[doc = crate::example!()]
/// use std::time::Duration;
/// use vedart::task::JoinSet;
///
/// let rt = vedart::Runtime::new().unwrap();
/// rt.block_on(async {
///     let mut set = JoinSet::new();
///     for delay in [30u64, 10, 20] {
///         set.spawn(async move {
///             vedart::time::sleep(Duration::from_millis(delay)).await;
///             delay
///         });
///     }
///     assert_eq!(set.len(), 3);
///     let mut order = Vec::new();
///     while let Some(result) = set.join_next().await {
///         order.push(result.unwrap());
///     }
///     assert_eq!(order, [10, 20, 30]); // as they finished
/// });
/// ```
pub struct JoinSet<T> {
    tasks: FuturesUnordered<JoinHandle<T>>,
}

impl<T> JoinSet<T> {
    /// An empty set.
    pub fn new() -> JoinSet<T> {
        JoinSet {
            tasks: FuturesUnordered::new(),
        }
    }

    /// How many tasks are in the set (finished ones included until joined).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the set holds no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Waits for the next task to finish and returns its result; `None` when
    /// the set is empty. Cancellation safe.
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.tasks.next().await
    }

    /// Takes the result of a task that already finished, if any, without waiting.
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        match self.poll_join_next(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => None,
        }
    }

    /// Polls for the next result (see [`join_next`](JoinSet::join_next)).
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        Pin::new(&mut self.tasks).poll_next(cx)
    }

    /// Cancels every task in the set. They stay in it: `join_next` returns
    /// their (mostly cancelled) results.
    pub fn abort_all(&mut self) {
        for task in self.tasks.iter() {
            task.abort();
        }
    }

    /// Cancels every task and waits until each has stopped; the set is empty
    /// afterwards.
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }

    /// Waits for every task and returns their results in completion order.
    pub async fn join_all(mut self) -> Vec<Result<T, JoinError>> {
        let mut results = Vec::with_capacity(self.len());
        while let Some(result) = self.join_next().await {
            results.push(result);
        }
        results
    }

    fn insert(&mut self, task: JoinHandle<T>) -> AbortHandle {
        let abort = task.abort_handle();
        self.tasks.push(task);
        abort
    }
}

impl<T: Send + 'static> JoinSet<T> {
    /// Spawns `future` on the current runtime into the set, like
    /// [`spawn`](crate::spawn), and returns a handle that aborts it alone.
    ///
    /// # Panics
    ///
    /// Panics outside a runtime; use [`spawn_on`](JoinSet::spawn_on) there.
    #[cfg_attr(feature = "tracing", track_caller)]
    pub fn spawn<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
    {
        self.insert(crate::spawn(future))
    }

    /// Spawns `future` on the runtime of `handle` into the set.
    #[cfg_attr(feature = "tracing", track_caller)]
    pub fn spawn_on<F>(&mut self, future: F, handle: &Handle) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
    {
        self.insert(handle.spawn(future))
    }

    /// Runs the blocking closure `f` on the blocking pool, like
    /// [`spawn_blocking`](crate::spawn_blocking), with its result in the set.
    ///
    /// # Panics
    ///
    /// Panics outside a runtime.
    pub fn spawn_blocking<F>(&mut self, f: F) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
    {
        self.insert(crate::spawn_blocking(f))
    }
}

impl<T> Default for JoinSet<T> {
    fn default() -> JoinSet<T> {
        JoinSet::new()
    }
}

impl<T> Drop for JoinSet<T> {
    fn drop(&mut self) {
        self.abort_all();
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet").field("len", &self.len()).finish()
    }
}

impl<T: Send + 'static, F> FromIterator<F> for JoinSet<T>
where
    F: Future<Output = T> + Send + 'static,
{
    /// Spawns every future on the current runtime (panics outside one).
    fn from_iter<I: IntoIterator<Item = F>>(futures: I) -> JoinSet<T> {
        let mut set = JoinSet::new();
        for future in futures {
            set.spawn(future);
        }
        set
    }
}
