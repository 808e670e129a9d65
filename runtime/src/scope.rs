//! Structured concurrency: [`scope`] and [`try_scope`].
//!
//! A scope runs a body future and lets it spawn children; the scope's future
//! completes only when the body and every child have finished. The first
//! *failure* cancels everything else, and is reported to the parent once
//! every child has finished:
//!
//! - a child, or the body, **panics**: the scope future re-raises that panic
//!   (like rayon's `scope`: exactly one panic, after every child is done);
//! - a child spawned with [`Scope::spawn_try`] returns **`Err(e)`**, or the
//!   body of a [`try_scope`] returns `Err(e)`: the scope returns `Err(e)`.
//!
//! How `Err` is detected: only [`Scope::spawn_try`] treats a child's output as
//! a `Result` whose `Err` is a failure. [`Scope::spawn`] accepts any output,
//! `Result`s included, and never inspects it; so a child whose error should
//! cancel its siblings must be spawned with `spawn_try`.
//!
//! Cancelling means: the body future is dropped (it is polled inside the
//! scope future, on the parent's task) and every child is aborted (its future
//! is dropped the next time it would run). Dropping the scope future before
//! it completes cancels the same way; the children's futures are then dropped
//! shortly after, on their workers, since a destructor cannot wait.
//!
//! # Why children must be `'static`
//!
//! Children cannot borrow from the parent's stack. A scoped thread API can
//! allow it because the scope blocks until its threads finish, but an async
//! scope is a future, and a future can be leaked (`mem::forget`) or simply
//! never polled again while its children keep running on other workers:
//! nothing would stop a child from reading the parent's stack after that
//! frame is gone. So children own their data (`move` it in, or share it with
//! `Arc`).

use std::any::Any;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;

use crate::join::{AbortHandle, JoinHandle};
use crate::runtime::Handle;
use crate::sync_facade::{Arc, Mutex, lock};

/// Runs `body` with a [`Scope`] it can spawn children on, and completes when
/// the body and every child have finished, with the body's output.
///
/// Children run on the runtime that is current when the scope starts (the
/// global runtime of [`crate::block_on`] if there is none); the body runs
/// inside the scope future, on whatever task awaits it.
///
/// # Panics
///
/// If a child or the body panics, the others are cancelled, and the scope
/// future re-raises the first panic once every child has finished.
///
/// # Examples
///
#[doc = example!()]
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// let rt = vedart::Runtime::new().unwrap();
/// let done = Arc::new(AtomicUsize::new(0));
/// let total = rt.block_on(vedart::scope(|s| {
///     let done = done.clone();
///     async move {
///         let mut handles = Vec::new();
///         for i in 0..10u64 {
///             let done = done.clone();
///             handles.push(s.spawn(async move {
///                 done.fetch_add(1, Ordering::SeqCst);
///                 i
///             }));
///         }
///         let mut total = 0;
///         for handle in handles {
///             total += handle.await.unwrap();
///         }
///         total
///     }
/// }));
/// assert_eq!(total, 45);
/// assert_eq!(done.load(Ordering::SeqCst), 10);
/// ```
pub async fn scope<F, Fut>(body: F) -> Fut::Output
where
    F: FnOnce(Scope) -> Fut,
    Fut: Future,
{
    let scope = Scope::new();
    let body = body(scope.clone());
    let driver = ScopeFuture {
        inner: scope.inner,
        body: Some(body),
        convert: Ok,
        output: None,
    };
    match driver.await {
        Ok(output) => output,
        Err(never) => match never {},
    }
}

/// Like [`scope`], for bodies and children that fail with `Err`: the first
/// `Err` (from the body, or from a child spawned with [`Scope::spawn_try`])
/// cancels everything else and is returned once every child has finished.
///
/// # Panics
///
/// As [`scope`]: a panic of the body or a child is re-raised.
///
/// # Examples
///
#[doc = example!()]
/// let rt = vedart::Runtime::new().unwrap();
/// let result: Result<(), String> = rt.block_on(vedart::try_scope(|s| async move {
///     s.spawn_try(async { Err::<(), _>("disk full".to_string()) });
///     // A sibling that would never finish on its own is cancelled.
///     s.spawn(std::future::pending::<()>());
///     Ok(())
/// }));
/// assert_eq!(result.unwrap_err(), "disk full");
/// ```
pub async fn try_scope<F, Fut, T, E>(body: F) -> Result<T, E>
where
    F: FnOnce(Scope<E>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Send + 'static,
{
    let scope = Scope::new();
    let body = body(scope.clone());
    ScopeFuture {
        inner: scope.inner,
        body: Some(body),
        convert: std::convert::identity,
        output: None,
    }
    .await
}

/// A handle to a running scope: spawns children that the scope waits for.
/// Cheap to clone, and `'static`, so children can spawn grandchildren.
pub struct Scope<E = Infallible> {
    inner: Arc<Inner<E>>,
}

struct Inner<E> {
    /// Where children are spawned: the runtime current when the scope began.
    handle: Handle,
    state: Mutex<State<E>>,
}

struct State<E> {
    /// Live children by key; see [`ChildSlot`].
    children: Vec<ChildSlot>,
    /// Free keys in `children`.
    free: Vec<usize>,
    /// Children whose future has not been dropped yet.
    live: usize,
    /// Identifies a child across key reuse; never 0.
    next_id: u64,
    /// The first failure; its presence means "cancelled".
    failure: Option<Failure<E>>,
    /// Set when the scope future completes or is dropped: no more children.
    closed: bool,
    /// The scope future's waker.
    waker: Option<Waker>,
}

/// One child's entry. `id` 0 means free. `abort` is filled in just after the
/// spawn (the child may finish, and its key be reused, before that: the id
/// tells the spawner whether the entry is still its child's).
struct ChildSlot {
    id: u64,
    abort: Option<AbortHandle>,
}

enum Failure<E> {
    Panic(Box<dyn Any + Send + 'static>),
    Error(E),
}

impl<E> Clone for Scope<E> {
    fn clone(&self) -> Self {
        Scope {
            inner: self.inner.clone(),
        }
    }
}

impl<E: Send + 'static> Scope<E> {
    fn new() -> Scope<E> {
        let handle = Handle::try_current().unwrap_or_else(|| crate::runtime::global().handle());
        Scope {
            inner: Arc::new(Inner {
                handle,
                state: Mutex::new(State {
                    children: Vec::new(),
                    free: Vec::new(),
                    live: 0,
                    next_id: 1,
                    failure: None,
                    closed: false,
                    waker: None,
                }),
            }),
        }
    }

    /// Spawns a child. A panic in it cancels the scope; its output is never
    /// inspected (use [`Scope::spawn_try`] for children whose `Err` should).
    ///
    /// A child spawned after the scope was cancelled or finished is not run:
    /// its handle resolves to `None` at once.
    pub fn spawn<F>(&self, future: F) -> ScopedJoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_child(future, Ok)
    }

    /// Spawns a child whose `Err(e)` is a failure: it cancels the scope, and
    /// the scope returns `Err(e)`. Its handle yields the `Ok` value.
    pub fn spawn_try<F, T>(&self, future: F) -> ScopedJoinHandle<T>
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_child(future, std::convert::identity)
    }

    /// Whether a failure has cancelled the scope.
    pub fn is_cancelled(&self) -> bool {
        lock(&self.inner.state).failure.is_some()
    }

    fn spawn_child<F, T>(
        &self,
        future: F,
        check: fn(F::Output) -> Result<T, E>,
    ) -> ScopedJoinHandle<T>
    where
        F: Future + Send + 'static,
        T: Send + 'static,
    {
        let (key, id) = {
            let mut state = lock(&self.inner.state);
            if state.closed || state.failure.is_some() {
                return ScopedJoinHandle { task: None };
            }
            let id = state.next_id;
            state.next_id += 1;
            state.live += 1;
            let slot = ChildSlot { id, abort: None };
            let key = match state.free.pop() {
                Some(key) => {
                    state.children[key] = slot;
                    key
                }
                None => {
                    state.children.push(slot);
                    state.children.len() - 1
                }
            };
            (key, id)
        };
        // Spawn with the lock released: spawning after shutdown drops the
        // child at once, and its drop takes the lock.
        let child = Child {
            future,
            guard: ChildGuard {
                inner: self.inner.clone(),
                key,
                id,
            },
            check,
        };
        let task = self.inner.handle.spawn(child);
        let abort = task.abort_handle();
        let mut state = lock(&self.inner.state);
        let cancelled = state.failure.is_some() || state.closed;
        if !cancelled {
            if let Some(slot) = state.children.get_mut(key).filter(|slot| slot.id == id) {
                slot.abort = Some(abort.clone());
            }
        }
        drop(state);
        if cancelled {
            // The scope was cancelled while we spawned.
            abort.abort();
        }
        ScopedJoinHandle { task: Some(task) }
    }
}

impl<E> Inner<E> {
    /// Records `failure` if it is the first, and cancels every child.
    fn fail(&self, failure: Failure<E>) {
        let mut state = lock(&self.state);
        if state.failure.is_some() {
            // Only the first failure is reported; drop this one unlocked.
            drop(state);
            drop(failure);
            return;
        }
        state.failure = Some(failure);
        let aborts = take_aborts(&mut state);
        let waker = state.waker.take();
        drop(state);
        for abort in aborts {
            abort.abort();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Takes the abort handles of every live child.
fn take_aborts<E>(state: &mut State<E>) -> Vec<AbortHandle> {
    state
        .children
        .iter_mut()
        .filter(|slot| slot.id != 0)
        .filter_map(|slot| slot.abort.take())
        .collect()
}

impl<E> fmt::Debug for Scope<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.inner.state);
        f.debug_struct("Scope")
            .field("children", &state.live)
            .field("cancelled", &state.failure.is_some())
            .field("closed", &state.closed)
            .finish()
    }
}

/// Removes a child from its scope when the child's future is dropped
/// (completed, aborted or cancelled), waking the scope after the last one.
struct ChildGuard<E> {
    inner: Arc<Inner<E>>,
    key: usize,
    id: u64,
}

impl<E> Drop for ChildGuard<E> {
    fn drop(&mut self) {
        let mut state = lock(&self.inner.state);
        let mut removed = None;
        if let Some(slot) = state
            .children
            .get_mut(self.key)
            .filter(|slot| slot.id == self.id)
        {
            slot.id = 0;
            removed = slot.abort.take();
            state.free.push(self.key);
        }
        state.live -= 1;
        let waker = if state.live == 0 {
            state.waker.take()
        } else {
            None
        };
        drop(state);
        drop(removed);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

pin_project! {
    /// A child's future: reports its failure to the scope.
    struct Child<F, T, E>
    where
        F: Future,
    {
        // Declared first so that it is dropped first: the scope counts the
        // child out (in `guard`) only after its future is gone.
        #[pin]
        future: F,
        guard: ChildGuard<E>,
        check: fn(F::Output) -> Result<T, E>,
    }
}

impl<F: Future, T, E> Future for Child<F, T, E> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.project();
        let future = this.future;
        match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => match (this.check)(output) {
                Ok(value) => Poll::Ready(Some(value)),
                Err(err) => {
                    this.guard.inner.fail(Failure::Error(err));
                    Poll::Ready(None)
                }
            },
            Err(payload) => {
                this.guard.inner.fail(Failure::Panic(payload));
                Poll::Ready(None)
            }
        }
    }
}

/// Awaits a scope child's output: `Some(value)` if it completed, `None` if it
/// failed (the scope reports the failure) or was cancelled.
#[must_use = "awaiting the handle is the only way to get the child's output"]
pub struct ScopedJoinHandle<T> {
    task: Option<JoinHandle<Option<T>>>,
}

impl<T> ScopedJoinHandle<T> {
    /// Cancels this child alone. Cancelling is not a failure: the scope goes on.
    pub fn abort(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }

    /// Whether the child has finished.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl<T> Future for ScopedJoinHandle<T> {
    type Output = Option<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        match &mut self.task {
            None => Poll::Ready(None),
            Some(task) => Pin::new(task).poll(cx).map(|result| result.ok().flatten()),
        }
    }
}

impl<T> fmt::Debug for ScopedJoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedJoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

pin_project! {
    /// Drives a scope: polls the body, waits for the children, reports.
    struct ScopeFuture<Fut, R, E>
    where
        Fut: Future,
    {
        inner: Arc<Inner<E>>,
        #[pin]
        body: Option<Fut>,
        convert: fn(Fut::Output) -> Result<R, E>,
        output: Option<R>,
    }

    impl<Fut, R, E> PinnedDrop for ScopeFuture<Fut, R, E>
    where
        Fut: Future,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            // The body goes first: it may be about to spawn more children.
            this.body.set(None);
            let mut state = lock(&this.inner.state);
            if state.closed {
                return;
            }
            state.closed = true;
            let aborts = take_aborts(&mut state);
            drop(state);
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

impl<Fut: Future, R, E> Future for ScopeFuture<Fut, R, E> {
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R, E>> {
        let mut this = self.project();
        // Register before looking, so that a failure or the last child's exit
        // after this point wakes us.
        let cancelled = {
            let mut state = lock(&this.inner.state);
            if !state
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                state.waker = Some(cx.waker().clone());
            }
            state.failure.is_some()
        };
        if cancelled {
            // Cancel the body (if still running) by dropping it.
            this.body.set(None);
        }
        if let Some(body) = this.body.as_mut().as_pin_mut() {
            match catch_unwind(AssertUnwindSafe(|| body.poll(cx))) {
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(output)) => {
                    this.body.set(None);
                    match (this.convert)(output) {
                        Ok(value) => *this.output = Some(value),
                        Err(err) => this.inner.fail(Failure::Error(err)),
                    }
                }
                Err(payload) => {
                    this.body.set(None);
                    this.inner.fail(Failure::Panic(payload));
                }
            }
        }
        let mut state = lock(&this.inner.state);
        if state.live > 0 {
            // `fail` may have taken the waker since we registered it.
            if state.waker.is_none() {
                state.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        state.closed = true;
        let failure = state.failure.take();
        drop(state);
        match failure {
            None => Poll::Ready(Ok(this
                .output
                .take()
                .expect("scope future polled after it completed"))),
            Some(Failure::Error(err)) => Poll::Ready(Err(err)),
            Some(Failure::Panic(payload)) => resume_unwind(payload),
        }
    }
}
