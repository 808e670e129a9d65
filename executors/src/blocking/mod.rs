//! An adaptive thread pool for blocking and CPU-bound jobs.
//!
//! [`BlockingPool`] runs boxed `FnOnce() + Send + 'static` jobs on its own
//! threads. The runtime's `spawn_blocking` wraps it (each job runs one async
//! task), and Python's thread executor runs its chunks on it.
//!
//! # Implementation
//!
//! The pool starts threads named `veda-blocking-{i}` (by default), lazily: a job
//! that finds no idle thread starts one, up to `max_workers`. Jobs wait in one
//! `Mutex<VecDeque>` guarded queue; idle threads park on one condition variable.
//! This is the shape of tokio's blocking pool: on an idle pool, `execute` costs
//! one lock, one push and one `notify_one`, and wakes exactly one thread.
//!
//! Sizing follows Little's Law (module `estimator`, see [`RATE_WINDOW`]): the target
//! size is the arrival rate times the mean service time, both exponentially
//! weighted, rounded and clamped to `[min_workers, max_workers]`. Growth is on
//! demand; the target decides retirement: an idle thread whose keep-alive runs
//! out leaves while the pool is larger than `max(min_workers, target)`, and
//! otherwise stays for another round. [`BlockingPool::stats`] reports it all.
//!
//! ## Idle accounting (the protocol that must not lose a job)
//!
//! State under the one lock: `queue`, `num_threads`, `num_idle` (parked, not yet
//! handed a job), `num_notify` (hand-offs not yet taken), `shutdown`.
//!
//! 1. `execute` pushes the job. If `num_idle > 0` it moves one count from
//!    `num_idle` to `num_notify` and, after unlocking, calls `notify_one`.
//!    Otherwise, below `max_workers`, it starts a thread (`num_threads += 1`).
//!    Otherwise the job waits: every thread is running a job and pops the queue
//!    when it finishes.
//! 2. A worker drains the queue before it parks, so it parks only with an empty
//!    queue, and it increments `num_idle` under the same lock.
//! 3. A parked worker that wakes, for whatever reason, first looks for a pending
//!    hand-off (`num_notify > 0`) and takes it. A notification therefore cannot
//!    be lost: if `notify_one` finds no thread waiting, the thread it was meant
//!    for is between waking and re-taking the lock, and will see the hand-off.
//! 4. Consequently no job stays queued while every thread sleeps. The loom
//!    model in `loom-tests/tests/blocking_pool.rs` checks this, and that
//!    shutdown joins every thread.
//!
//! ## Shutdown
//!
//! [`BlockingPool::shutdown`] rejects new jobs, drops queued ones without
//! running them, lets running jobs finish and joins every thread (see its
//! documentation for the steps). Threads that exit earlier (keep-alive) are
//! joined by the next thread to exit, so none is left unjoined.
//!
//! ## Panics
//!
//! Every job, hook and panic payload drop runs under `catch_unwind`: a panicking
//! job costs nothing but its own result, and the counters stay exact.

mod builder;
mod error;
mod estimator;
mod pool;
mod stats;
mod worker;

pub use builder::{
    BlockingPoolBuilder, DEFAULT_KEEP_ALIVE, DEFAULT_MAX_WORKERS, DEFAULT_MIN_WORKERS,
    MAX_WORKERS_ENV, MAX_WORKERS_LIMIT, default_thread_stack_size,
};
pub use error::{BlockingPoolError, Job, RejectedJob};
pub use estimator::RATE_WINDOW;
pub use pool::BlockingPool;
pub use stats::BlockingPoolStats;
