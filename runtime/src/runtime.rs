//! [`Runtime`], [`Handle`], and the lazily started global runtime.
//!
//! A `Runtime` owns the worker threads and shuts everything down when dropped
//! (see the shutdown protocol in `scheduler`). A [`Handle`] is a cheap,
//! clonable reference to the same scheduler that any thread may use to spawn
//! or block on futures; it does not keep the workers running.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::thread;
use std::time::{Duration, Instant};

use std::ffi::OsStr;

use vedart_executors::blocking::BlockingPool;
use vedart_executors::process::{ProcessPool, ProcessPoolBuilder};
use vedart_reactor::Reactor;
use vedart_reactor::fork::PerProcess;

use crate::builder::Builder;
use crate::join::JoinHandle;
use crate::scheduler::deterministic::ScheduleEvent;
use crate::scheduler::{Flavor, Shared, worker};
use crate::sync_facade::Arc;
use crate::task_span::SpawnSite;

/// A VedaRT runtime: a work-stealing pool of worker threads (or, for the
/// current-thread flavour, the thread inside [`Runtime::block_on`]) and the
/// reactor they drive.
///
/// Dropping the runtime cancels every task that has not finished, waits for
/// each worker to finish the poll it is in, joins the workers and shuts the
/// reactor down. [`Runtime::shutdown_timeout`] bounds that wait.
///
/// # Examples
///
#[doc = example!()]
/// let rt = vedart::Runtime::new().unwrap();
/// let sum = rt.block_on(async {
///     let tasks: Vec<_> = (0..10u64).map(|i| vedart::spawn(async move { i * i })).collect();
///     let mut sum = 0;
///     for task in tasks {
///         sum += task.await.unwrap();
///     }
///     sum
/// });
/// assert_eq!(sum, 285);
/// ```
pub struct Runtime {
    handle: Handle,
    /// Worker threads, joined on shutdown. Empty for the current-thread flavour.
    threads: Vec<thread::JoinHandle<()>>,
}

impl Runtime {
    /// A multi-thread runtime with one worker per available core (or
    /// `VEDART_WORKER_THREADS`, see [`Builder::worker_threads`]).
    ///
    /// # Errors
    ///
    /// Fails if the OS refuses the reactor's epoll instance or a thread.
    pub fn new() -> std::io::Result<Runtime> {
        Ok(Builder::new_multi_thread().build()?)
    }

    /// The process-wide runtime behind [`crate::block_on`] (and behind a
    /// [`crate::scope()`] used outside any runtime): a [`Runtime::new`] started
    /// on first use (and again in a child made by `fork()`), never shut down.
    /// This is the fallible way to reach it: `block_on` panics where this
    /// returns the error.
    ///
    /// # Errors
    ///
    /// Fails if the OS refuses the reactor's epoll instance or a thread
    /// (descriptor or thread limits); the next call tries again.
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// let rt = vedart::Runtime::global()?;
    /// assert_eq!(rt.block_on(async { 6 * 7 }), 42);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn global() -> std::io::Result<&'static Runtime> {
        static GLOBAL: PerProcess<Runtime> = PerProcess::new();
        GLOBAL.get_or_try_init(Runtime::new)
    }

    pub(crate) fn from_parts(handle: Handle, threads: Vec<thread::JoinHandle<()>>) -> Runtime {
        Runtime { handle, threads }
    }

    /// Runs `future` to completion on the calling thread and returns its output.
    ///
    /// With the multi-thread flavour the future runs on the caller while
    /// spawned tasks run on the workers; with the current-thread flavour the
    /// caller also runs every spawned task and drives the reactor. Inside the
    /// future, [`crate::spawn`], timers and sockets use this runtime.
    ///
    /// # Panics
    ///
    /// Panics if called on a thread that runs VedaRT tasks (a worker, or inside
    /// a current-thread `block_on`): blocking it would stall its tasks. Inside
    /// async code, `.await` the future instead, or spawn it. Also re-raises a
    /// panic of `future`.
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// let rt = vedart::Runtime::new().unwrap();
    /// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
    /// ```
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    /// Spawns a task on this runtime. See [`Handle::spawn`].
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// let rt = vedart::Runtime::new().unwrap();
    /// let handle = rt.spawn(async { "done" });
    /// assert_eq!(rt.block_on(handle).unwrap(), "done");
    /// ```
    #[cfg_attr(feature = "tracing", track_caller)]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// A handle to this runtime, usable from any thread.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Makes this runtime current on this thread until the guard drops. See
    /// [`Handle::enter`].
    pub fn enter(&self) -> EnterGuard {
        self.handle.enter()
    }

    /// The polls a deterministic runtime has made so far, in order; empty for
    /// the other flavours. See [`Handle::schedule_trace`].
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// fn run(seed: u64) -> (Vec<u32>, Vec<vedart::ScheduleEvent>) {
    ///     let rt = vedart::Builder::new_deterministic(seed).build().unwrap();
    ///     let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    ///     rt.block_on(async {
    ///         let tasks: Vec<_> = (0..4)
    ///             .map(|i| {
    ///                 let order = order.clone();
    ///                 vedart::spawn(async move { order.lock().unwrap().push(i) })
    ///             })
    ///             .collect();
    ///         for task in tasks {
    ///             task.await.unwrap();
    ///         }
    ///     });
    ///     let order = order.lock().unwrap().clone();
    ///     (order, rt.schedule_trace())
    /// }
    /// // The same seed runs the same schedule.
    /// assert_eq!(run(7), run(7));
    /// ```
    pub fn schedule_trace(&self) -> Vec<ScheduleEvent> {
        self.handle.schedule_trace()
    }

    /// The seed of a deterministic runtime ([`Builder::new_deterministic`]);
    /// `None` for the other flavours.
    pub fn seed(&self) -> Option<u64> {
        self.handle.seed()
    }

    /// Shuts down, waiting at most `timeout` for workers to finish the polls
    /// they are in. Tasks still running then are left to finish their poll on
    /// their own; every other task is cancelled either way.
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// use std::time::Duration;
    /// let rt = vedart::Runtime::new().unwrap();
    /// for _ in 0..1000 {
    ///     drop(rt.spawn(std::future::pending::<()>()));
    /// }
    /// rt.shutdown_timeout(Duration::from_secs(5));
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        self.shutdown(Some(timeout));
    }

    /// Shuts down without waiting for the workers: they exit after their
    /// current poll, on their own.
    pub fn shutdown_background(mut self) {
        self.shutdown(Some(Duration::ZERO));
    }

    fn shutdown(&mut self, timeout: Option<Duration>) {
        let shared = &self.handle.shared;
        if !shared.begin_shutdown() {
            return;
        }
        // Dropping the runtime from one of its own tasks: that worker cannot
        // wait for itself, it exits after this poll.
        let own_worker = worker::is_worker_of(shared);
        let deadline = timeout.map(|timeout| {
            Instant::now()
                .checked_add(timeout)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365))
        });
        let all_exited = shared.wait_for_workers(usize::from(own_worker), deadline);
        let me = thread::current().id();
        for thread in self.threads.drain(..) {
            if all_exited && thread.thread().id() != me {
                // Exited already: this returns at once. A worker only panics
                // through a bug or a panicking thread callback; either way
                // shutdown goes on.
                let _ = thread.join();
            }
        }
        shared.finish_shutdown();
        // Blocking closures cannot be interrupted: queued ones are cancelled,
        // running ones are waited for within what is left of the deadline.
        let remaining = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        shared.blocking.shutdown(remaining);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown(None);
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("flavor", &self.handle.shared.flavor)
            .field("workers", &self.threads.len())
            .finish()
    }
}

/// A reference to a runtime: spawn onto it, or block on it, from any thread.
///
/// Cloning is cheap. A handle does not keep the runtime's workers alive: after
/// the [`Runtime`] is dropped, [`Handle::spawn`] returns handles that resolve to
/// a cancelled [`JoinError`](crate::JoinError).
///
/// # Examples
///
#[doc = example!()]
/// let rt = vedart::Runtime::new().unwrap();
/// let handle = rt.handle();
/// let from_thread = std::thread::spawn(move || handle.spawn(async { 7 }))
///     .join()
///     .unwrap();
/// assert_eq!(rt.block_on(from_thread).unwrap(), 7);
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

#[cfg(not(feature = "loom"))]
crate::sync_facade::thread_local! {
    /// The handle entered on this thread, see [`Handle::enter`].
    static CURRENT: RefCell<Option<Handle>> = const { RefCell::new(None) };
}
#[cfg(feature = "loom")]
crate::sync_facade::thread_local! {
    /// The handle entered on this thread, see [`Handle::enter`].
    static CURRENT: RefCell<Option<Handle>> = RefCell::new(None);
}

impl Handle {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Handle {
        Handle { shared }
    }

    /// The runtime this thread is in: a worker's, or the one whose
    /// `block_on` (or [`Handle::enter`]) is running on this thread.
    ///
    /// # Panics
    ///
    /// Panics outside a runtime; use [`Handle::try_current`] to check.
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// let rt = vedart::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     // Hand the runtime to a plain thread, which spawns back onto it.
    ///     let handle = vedart::Handle::current();
    ///     let task = std::thread::spawn(move || handle.spawn(async { 1 }))
    ///         .join()
    ///         .unwrap();
    ///     assert_eq!(task.await.unwrap(), 1);
    /// });
    /// assert!(vedart::Handle::try_current().is_none());
    /// ```
    pub fn current() -> Handle {
        Handle::try_current().unwrap_or_else(|| {
            panic!(
                "vedart::Handle::current() called outside a VedaRT runtime: call it from a \
                 task, from inside `block_on`, or after `Runtime::enter`"
            )
        })
    }

    /// The runtime this thread is in, if any.
    pub fn try_current() -> Option<Handle> {
        Handle::with_current(|handle| handle.cloned())
    }

    /// Runs `f` with the current handle without cloning it.
    pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Handle>) -> R) -> R {
        CURRENT.with(|current| f(current.borrow().as_ref()))
    }

    /// Spawns a task: `future` starts running on a worker, concurrently with
    /// the caller, and the returned [`JoinHandle`] yields its output.
    ///
    /// Spawning never blocks and never fails: after shutdown the handle
    /// resolves to a cancelled [`JoinError`](crate::JoinError) at once.
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// let rt = vedart::Runtime::new().unwrap();
    /// let handle = rt.handle();
    /// let task = handle.spawn(async { 2 + 2 });
    /// assert_eq!(rt.block_on(task).unwrap(), 4);
    /// ```
    #[cfg_attr(feature = "tracing", track_caller)]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_at(future, SpawnSite::here())
    }

    /// [`Handle::spawn`], with the spawn site the `tracing` feature records.
    pub(crate) fn spawn_at<F>(&self, future: F, site: SpawnSite) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        crate::task_core::spawn(&self.shared, future, site)
    }

    /// Runs `future` to completion on the calling thread. See
    /// [`Runtime::block_on`].
    ///
    /// # Panics
    ///
    /// As [`Runtime::block_on`].
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        worker::assert_not_in_worker();
        let _enter = self.enter();
        match self.shared.flavor {
            Flavor::MultiThread => worker::block_on_thread(&self.shared, future),
            Flavor::CurrentThread | Flavor::Deterministic => {
                worker::block_on_current_thread(&self.shared, future)
            }
        }
    }

    /// Makes this runtime current on this thread until the guard drops:
    /// [`crate::spawn`] and [`Handle::current`] use it, and sockets and timers
    /// created meanwhile register with its reactor.
    ///
    /// # Examples
    ///
    #[doc = example!()]
    /// let rt = vedart::Runtime::new().unwrap();
    /// let _guard = rt.enter();
    /// let task = vedart::spawn(async { 5 });
    /// assert_eq!(rt.block_on(task).unwrap(), 5);
    /// ```
    pub fn enter(&self) -> EnterGuard {
        let reactor = self.shared.reactor.enter();
        let previous = CURRENT.with(|current| current.borrow_mut().replace(self.clone()));
        EnterGuard {
            previous,
            _reactor: reactor,
            _not_send: PhantomData,
        }
    }

    /// The reactor this runtime's workers drive.
    pub fn reactor(&self) -> &Reactor {
        &self.shared.reactor
    }

    /// The polls a deterministic runtime ([`Builder::new_deterministic`]) has
    /// made so far, in order: which task, among how many runnable ones, at
    /// what virtual time. Two runs of the same program with the same seed give
    /// equal traces. Empty for the other flavours.
    ///
    /// The trace grows by one [`ScheduleEvent`] (24 bytes) per poll; a
    /// long-running program can empty it with [`Handle::take_schedule_trace`].
    pub fn schedule_trace(&self) -> Vec<ScheduleEvent> {
        self.shared
            .det
            .as_ref()
            .map_or_else(Vec::new, |det| det.trace())
    }

    /// Takes the trace [`Handle::schedule_trace`] returns, leaving it empty.
    pub fn take_schedule_trace(&self) -> Vec<ScheduleEvent> {
        self.shared
            .det
            .as_ref()
            .map_or_else(Vec::new, |det| det.take_trace())
    }

    /// The seed of a deterministic runtime; `None` for the other flavours.
    pub fn seed(&self) -> Option<u64> {
        self.shared.det.as_ref().map(|det| det.seed())
    }

    /// Runs the blocking closure `f` on this runtime's blocking pool and returns
    /// a handle to its result. See [`crate::spawn_blocking`].
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        crate::task_core::spawn_blocking(&self.shared, f)
    }

    /// This runtime's blocking pool: its [`stats`](BlockingPool::stats) (size,
    /// queue depth, bounds, Little's-law target) and
    /// [`set_bounds`](BlockingPool::set_bounds).
    pub fn blocking_pool(&self) -> &BlockingPool {
        &self.shared.blocking
    }

    /// A [`ProcessPool`](crate::process::ProcessPool) builder whose per-child
    /// driver tasks run on this runtime and whose pipes this runtime's reactor
    /// watches (a pool built with `ProcessPool::builder` alone runs them on a
    /// background thread of its own, one thread hop away).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let rt = vedart::Runtime::new().unwrap();
    /// let pool = rt.handle().process_pool("my-worker").workers(2).build().unwrap();
    /// let reply = rt.block_on(pool.call(b"ping".to_vec())).unwrap();
    /// ```
    pub fn process_pool(&self, program: impl AsRef<OsStr>) -> ProcessPoolBuilder {
        let handle = self.clone();
        ProcessPool::builder(program)
            .reactor(self.shared.reactor.clone())
            .spawner(move |driver| drop(handle.spawn(driver)))
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("shared", &self.shared)
            .finish()
    }
}

/// Restores the previously current runtime when dropped. See [`Handle::enter`].
#[must_use = "the runtime stays current only while the guard lives"]
pub struct EnterGuard {
    previous: Option<Handle>,
    /// Dropped after `previous` is restored (fields drop in order).
    _reactor: vedart_reactor::EnterGuard,
    /// Thread-local state: the guard must drop on the thread that made it.
    _not_send: PhantomData<*const ()>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // Drop the replaced handle outside the borrow.
        let replaced =
            CURRENT.with(|current| std::mem::replace(&mut *current.borrow_mut(), previous));
        drop(replaced);
    }
}

impl fmt::Debug for EnterGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnterGuard").finish_non_exhaustive()
    }
}

/// The process-wide runtime behind [`crate::block_on`] (and behind a
/// [`crate::scope()`] polled outside any runtime). Started on first use, never
/// shut down; a child made by `fork()` starts its own (the parent's workers do
/// not exist there).
///
/// # Panics
///
/// Panics if the OS refuses the runtime's reactor or threads;
/// [`Runtime::global`] returns that error instead.
pub(crate) fn global() -> &'static Runtime {
    Runtime::global().unwrap_or_else(|err| panic!("vedart: cannot start the global runtime: {err}"))
}
