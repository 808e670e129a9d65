//! VedaRT: an async-first parallel runtime.
//!
//! Everything that waits is an async task; one reactor (built on mio) wakes
//! them; a work-stealing scheduler runs them on a pool of worker threads.
//!
#![doc = crate::example!()]
//! use std::time::Duration;
//!
//! let rt = vedart::Runtime::new()?;
//! let total = rt.block_on(async {
//!     let tasks: Vec<_> = (1..=100u64)
//!         .map(|i| vedart::spawn(async move {
//!             vedart::time::sleep(Duration::from_millis(1)).await;
//!             i
//!         }))
//!         .collect();
//!     let mut total = 0;
//!     for task in tasks {
//!         total += task.await?;
//!     }
//!     Ok::<_, vedart::JoinError>(total)
//! })?;
//! assert_eq!(total, 5050);
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`Runtime`] / [`Builder`] start a runtime; [`Runtime::block_on`] runs a
//!   future on the calling thread; [`spawn`] starts a task and returns a
//!   [`JoinHandle`] (awaitable, abortable; a panic becomes a [`JoinError`]).
//! - [`scope()`] / [`try_scope`]: structured concurrency; the first failing
//!   child cancels its siblings and reaches the parent.
//! - [`time`], [`net`], [`io`]: timers, sockets and any fd, from the reactor
//!   crate `vedart-reactor`.
//! - [`block_on`] works with no runtime in sight: it uses a global runtime,
//!   started on first use, which also runs what the future spawns.
//! - [`Builder::new_deterministic`]: a seeded, single-threaded runtime on
//!   virtual time, for tests (see [below](#deterministic-mode)).
//! - `hyper` (cargo feature `hyper`): the executor, timer and I/O adapters
//!   that run hyper 1.x's HTTP/1.1 and HTTP/2 servers and clients on vedart.
//! - [`telemetry`]: process-wide counters, histograms and task spans (see
//!   [below](#telemetry)).
//!
//! # Deterministic mode
//!
//! A runtime built with [`Builder::new_deterministic`]`(seed)` runs every
//! task on the thread inside [`Runtime::block_on`], picks the next task to poll
//! among all runnable ones with a PCG generator seeded from `seed`, and runs
//! timers on a virtual clock that jumps to the next deadline whenever every
//! task is idle. Same seed, same program: the same interleaving, the same
//! outputs and the same [`Runtime::schedule_trace`]. Different seeds explore
//! different interleavings, so a test can hunt for the order that breaks an
//! invariant and then replay it:
//!
#![doc = crate::example!()]
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! /// Two withdrawals that read, await, then write: a lost update waiting to happen.
//! fn run(seed: u64) -> u64 {
//!     let rt = vedart::Builder::new_deterministic(seed).build().unwrap();
//!     let balance = Arc::new(AtomicU64::new(100));
//!     rt.block_on(async {
//!         let tasks: Vec<_> = (0..2)
//!             .map(|_| {
//!                 let balance = balance.clone();
//!                 vedart::spawn(async move {
//!                     let read = balance.load(Ordering::SeqCst);
//!                     vedart::yield_now().await;
//!                     balance.store(read - 10, Ordering::SeqCst);
//!                 })
//!             })
//!             .collect();
//!         for task in tasks {
//!             task.await.unwrap();
//!         }
//!     });
//!     balance.load(Ordering::SeqCst)
//! }
//!
//! let failing = (0..100).find(|&seed| run(seed) != 80).expect("a seed loses an update");
//! // The seed replays the failure exactly; other seeds get it right.
//! assert_eq!(run(failing), 90);
//! assert!((0..100).any(|seed| run(seed) == 80));
//! ```
//!
//! The algorithm, and what can still make a run differ (other threads, real
//! I/O), are in `src/scheduler/deterministic/README.md`.
//!
//! # Telemetry
//!
//! [`telemetry::snapshot()`] reads, for the whole process (every runtime and
//! pool, current or past), tasks spawned / completed / failed / cancelled per
//! executor, queue depths, workers, steals and parks, process-pool respawns
//! and bytes, GPU fallbacks, and histograms of queue wait and run time with
//! p50 / p95 / p99. Counting is lock-free and on by default;
//! [`telemetry::set_enabled`] turns it off. [`telemetry::start_spans`] records
//! a [`Span`](telemetry::Span) per poll and per blocking job for a timeline.
//!
#![doc = crate::example!()]
//! let rt = vedart::Runtime::new()?;
//! rt.block_on(async {
//!     let tasks: Vec<_> = (0..100).map(|i| vedart::spawn(async move { i })).collect();
//!     for task in tasks {
//!         task.await?;
//!     }
//!     Ok::<_, vedart::JoinError>(())
//! })?;
//! let snapshot = vedart::telemetry::snapshot();
//! assert!(snapshot.async_tasks().completed >= 100);
//! println!("poll time p50 {:?}, p99 {:?}", snapshot.run_time().p50(), snapshot.run_time().p99());
//! for metric in snapshot.metrics() {
//!     println!("{} {:?} = {}", metric.name, metric.executor, metric.value);
//! }
//! # Ok::<_, Box<dyn std::error::Error>>(())
//! ```
//!
//! # Implementation
//!
//! Threads a runtime starts:
//!
//! - **`veda-worker-{i}`** (a multi-thread runtime: one per core by default,
//!   see [`Builder::worker_threads`]): each runs the scheduler loop of
//!   `scheduler/worker.rs`. A worker owns a 256-slot local run queue and a
//!   LIFO slot; tasks woken from other threads go through a global injector
//!   queue. An idle worker steals half of a random victim's queue, and then
//!   sleeps: the first idle worker sleeps *inside* the reactor (`epoll_wait`),
//!   the others on a condvar, so I/O wakes tasks with no thread hop.
//! - A **current-thread** runtime starts no thread: the thread in
//!   [`Runtime::block_on`] runs the tasks and drives the reactor. So does a
//!   **deterministic** one, with its own loop and a virtual clock.
//! - [`block_on`] starts the global runtime on first use; its workers are
//!   also named `veda-worker-{i}`.
//! - Sockets and timers used outside any runtime are driven by the reactor
//!   crate's own `veda-reactor` thread.
//!
//! Tasks are [`async-task`](https://docs.rs/async-task) allocations: one
//! allocation per spawn. The sleep / wake protocol of the workers, with a
//! proof sketch that no task is stranded, is in `src/scheduler/README.md`;
//! the shutdown protocol is in the `scheduler` module's docs.
#![deny(unsafe_op_in_unsafe_fn)]

/// Opens a doc example: run as a doctest, compiled only under `loom` (one
/// definition for the workspace, `vedart_reactor::__doc_example`).
macro_rules! example {
    () => {
        vedart_reactor::__doc_example!()
    };
}
// A path for inner (`//!`) docs, which textual macro scope does not reach.
pub(crate) use example;

mod attributes;
mod builder;
pub mod fs;
#[cfg(feature = "hyper")]
pub mod hyper;
mod join;
mod join_set;
mod local;
mod runtime;
mod scheduler;
mod scope;
pub mod signal;
pub mod sync;
mod sync_facade;
// `task.rs` is the task allocation itself; the public `task` module below is
// the user's door to task tools.
#[path = "task.rs"]
mod task_core;
mod task_span;
pub mod telemetry;

#[cfg(feature = "loom")]
#[doc(hidden)]
pub mod __loom;

use std::future::Future;

pub use builder::{BuildError, Builder, DEFAULT_THREAD_NAME, WORKER_THREADS_ENV};
pub use join::{AbortHandle, JoinError, JoinHandle};
pub use runtime::{EnterGuard, Handle, Runtime};
pub use scheduler::deterministic::ScheduleEvent;
pub use scope::{Scope, ScopedJoinHandle, scope, try_scope};
pub use task_core::{TaskId, YieldNow, yield_now};

/// Runs `async fn main` on a VedaRT runtime built for it, so a program needs
/// no `Runtime::new()` / `block_on` boilerplate.
///
/// Arguments: `flavor = "multi_thread"` (the default: one worker per core, or
/// `VEDART_WORKER_THREADS`) or `"current_thread"`; `worker_threads = N`
/// (multi-thread only); `seed = N` for the deterministic runtime
/// ([`Builder::new_deterministic`]: one thread, seeded scheduling, virtual
/// time), which excludes the other two; `crate = "path"` when `vedart` is
/// renamed. A bad argument is a compile error naming it. The function's
/// return type passes through (`Result<(), E>` works with `?`); if the runtime
/// cannot start, `main` panics with the [`BuildError`].
///
/// # Examples
///
#[doc = example!()]
/// use vedart::sync::mpsc;
///
/// #[vedart::main(worker_threads = 2)]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let (tx, mut rx) = mpsc::channel(8);
///     vedart::spawn(async move { tx.send("hello").await }).await??;
///     assert_eq!(rx.recv().await, Some("hello"));
///     Ok(())
/// }
/// ```
#[doc(inline)]
pub use vedart_macros::main;

/// Runs an `async fn` test on a fresh VedaRT runtime: `#[vedart::test]`
/// instead of `#[test]`.
///
/// The default flavour is `current_thread` (the test's thread runs every task);
/// `flavor = "multi_thread"` and `worker_threads = N` as for [`macro@main`].
/// `seed = N` runs the test on the deterministic runtime
/// ([`Builder::new_deterministic`]): tasks interleave in the order the seed
/// picks and timers run on virtual time, which jumps to the next deadline
/// whenever every task waits, so a test full of timeouts and sleeps runs
/// instantly and fails the same way on every run. A failing seeded test
/// prints its seed. Other attributes (`#[should_panic]`, `#[ignore]`) work as
/// on `#[test]`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// #[vedart::test(seed = 7)]
/// async fn a_day_of_retries_takes_no_time() {
///     let started = std::time::Instant::now();
///     for _ in 0..24 {
///         let never = std::future::pending::<()>();
///         let result = vedart::time::timeout(Duration::from_secs(3600), never).await;
///         assert!(result.is_err());
///     }
///     assert!(started.elapsed() < Duration::from_secs(5)); // 24 virtual hours
/// }
/// # fn main() {}
/// ```
#[doc(inline)]
pub use vedart_macros::test;

#[doc(hidden)]
pub mod __private {
    pub use crate::attributes::SeedNote;
}

/// Working with tasks: [`JoinSet`](task::JoinSet) for a group joined as it
/// finishes, [`LocalSet`](task::LocalSet) and [`spawn_local`](task::spawn_local)
/// for `!Send` futures on the current thread, and the task items also found
/// at the crate root.
pub mod task {
    pub use crate::join::{AbortHandle, JoinError, JoinHandle};
    pub use crate::join_set::JoinSet;
    pub use crate::local::{LocalJoinHandle, LocalSet, spawn_local};
    pub use crate::task_core::{TaskId, YieldNow, yield_now};
    pub use crate::{spawn, spawn_blocking};
}

/// Timers, driven by the runtime's reactor.
///
/// # Examples
///
#[doc = example!()]
/// use std::time::{Duration, Instant};
/// let rt = vedart::Runtime::new().unwrap();
/// rt.block_on(async {
///     let start = Instant::now();
///     vedart::time::sleep(Duration::from_millis(10)).await;
///     assert!(start.elapsed() >= Duration::from_millis(10));
///     let never = std::future::pending::<()>();
///     assert!(vedart::time::timeout(Duration::from_millis(5), never).await.is_err());
/// });
/// ```
pub mod time {
    pub use vedart_reactor::{
        Elapsed, Interval, MissedTickBehavior, Sleep, Timeout, interval, sleep, sleep_until,
        timeout,
    };
}

/// Asynchronous sockets and pipes, registered with the current runtime's reactor.
pub mod net {
    pub use vedart_reactor::net::*;
    pub use vedart_reactor::unix::{UnixDatagram, UnixListener, UnixStream};
    pub use vedart_reactor::{PipeReader, PipeWriter, pipe, unix};
}

/// Any non-blocking file descriptor as futures, and the I/O traits.
pub mod io {
    pub use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    pub use vedart_reactor::{Async, Direction};
}

/// Spawns a task on the current runtime: the one whose worker runs this
/// code, or whose `block_on` (or [`Handle::enter`]) is running on this thread.
///
/// # Panics
///
/// Panics outside a runtime. Spawning from elsewhere takes a handle:
/// [`Runtime::spawn`] or [`Handle::spawn`]. Note that in
/// `rt.block_on(vedart::spawn(f))` the call to `spawn` happens *before*
/// `block_on` enters the runtime; write `rt.block_on(rt.spawn(f))`.
///
/// # Examples
///
#[doc = example!()]
/// let rt = vedart::Runtime::new().unwrap();
/// let doubled = rt.block_on(async {
///     let task = vedart::spawn(async { 21 * 2 });
///     task.await.unwrap()
/// });
/// assert_eq!(doubled, 42);
/// ```
#[cfg_attr(feature = "tracing", track_caller)]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let site = task_span::SpawnSite::here();
    Handle::with_current(|handle| match handle {
        Some(handle) => handle.spawn_at(future, site),
        None => panic!(
            "vedart::spawn called outside a VedaRT runtime: call it from a task or inside \
             `block_on`, or spawn through `Runtime::spawn` / `Handle::spawn`"
        ),
    })
}

/// Runs `future` to completion on the calling thread, with the global
/// runtime (started on first use) running the tasks it spawns.
///
/// # Panics
///
/// Panics if called on a thread that runs VedaRT tasks: `.await` the future
/// instead, or spawn it. Re-raises a panic of `future`. Panics if the OS
/// refuses the global runtime its reactor or threads:
/// `vedart::Runtime::global()?.block_on(future)` returns that error instead.
///
/// # Examples
///
#[doc = example!()]
/// let answer = vedart::block_on(async {
///     vedart::spawn(async { 40 + 2 }).await.unwrap()
/// });
/// assert_eq!(answer, 42);
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    runtime::global().block_on(future)
}

/// Runs the blocking closure `f` on the current runtime's blocking pool, so that
/// it does not stall the worker threads, and returns a [`JoinHandle`] to its
/// result. A panic in `f` becomes a [`JoinError`] carrying the message.
///
/// The pool starts threads on demand and sizes itself (Little's law, within
/// [`Builder::min_blocking_threads`] and [`Builder::max_blocking_threads`]);
/// [`Handle::blocking_pool`] shows its stats. Aborting the handle cancels a
/// closure that has not started yet; a running closure cannot be interrupted.
///
/// # Panics
///
/// Panics outside a runtime, like [`spawn`]; use [`Handle::spawn_blocking`] there.
///
/// # Examples
///
#[doc = example!()]
/// let rt = vedart::Runtime::new().unwrap();
/// let digest = rt.block_on(async {
///     vedart::spawn_blocking(|| (1..=20u64).product::<u64>()).await.unwrap()
/// });
/// assert_eq!(digest, 2_432_902_008_176_640_000);
/// ```
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    Handle::with_current(|handle| match handle {
        Some(handle) => handle.spawn_blocking(f),
        None => panic!(
            "vedart::spawn_blocking called outside a VedaRT runtime: call it from a task or \
             inside `block_on`, or use `Handle::spawn_blocking`"
        ),
    })
}

/// The adaptive blocking thread pool behind [`spawn_blocking`].
pub mod blocking {
    pub use vedart_executors::blocking::*;
}

/// Async child processes and the pipe-driven process pool.
///
/// [`Command`](process::Command) starts children with piped stdio driven by the
/// reactor. [`ProcessPool`](process::ProcessPool) keeps warm children that
/// answer length-prefixed request frames (wire format: the module docs of
/// `vedart_executors::process`); build one whose drivers run on a runtime with
/// [`Handle::process_pool`].
pub mod process {
    pub use vedart_executors::process::*;
}

/// CUDA devices, pooled streams, and copies and kernel launches as futures
/// (cudarc with dynamic loading: builds and runs where no CUDA is installed).
pub mod gpu {
    pub use vedart_executors::gpu::*;
}

/// Surviving `fork()`: process-wide values made again in a child
/// ([`PerProcess`](fork::PerProcess)) and locks no vanished thread can hold
/// there ([`AtFork`](fork::AtFork)). The runtime's own global state is built on
/// them; use them for your own process-wide state in a library that may run in
/// a process that forks.
pub mod fork {
    pub use vedart_reactor::fork::*;
}

/// The Rust example of the repository's README, compiled and run as a doctest so
/// that it cannot go stale (except under `loom`, where it could only panic: see
/// `example!`).
#[cfg(all(doctest, not(feature = "loom")))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
