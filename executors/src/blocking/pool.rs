//! The pool handle and its shared state: submitting, resizing, snapshots, shutdown.
//!
//! All mutable state lives in one [`Shared`] behind one mutex. The protocol
//! between submitters and workers (the "idle accounting") is described in the
//! module documentation of [`super`]; the invariants it keeps are listed on
//! [`Shared`].

use std::collections::VecDeque;
use std::fmt;
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use super::builder::{BlockingPoolBuilder, HookFn, NameFn, validate_bounds};
use super::error::{BlockingPoolError, Job, RejectedJob};
use super::estimator::LoadEstimator;
use super::stats::BlockingPoolStats;
use super::worker;
use crate::sync::thread::{self, JoinHandle};
use crate::sync::{Arc, Condvar, Mutex, lock, wait, wait_timeout};
use crate::telemetry;

/// What [`BlockingPoolBuilder::build`] hands to the pool.
pub(crate) struct Config {
    pub(crate) min_workers: usize,
    pub(crate) max_workers: usize,
    pub(crate) keep_alive: Duration,
    pub(crate) thread_name: Box<NameFn>,
    pub(crate) stack_size: Option<usize>,
    pub(crate) on_thread_start: Option<Box<HookFn>>,
    pub(crate) on_thread_stop: Option<Box<HookFn>>,
}

/// State shared by every handle and every worker thread.
pub(super) struct Inner {
    /// All mutable pool state; see [`Shared`] for its invariants.
    pub(super) shared: Mutex<Shared>,
    /// Idle workers park here. Notified once per job handed to an idle worker
    /// (`notify_one`), and for everyone (`notify_all`) on shutdown and on a
    /// change of bounds.
    pub(super) work_cv: Condvar,
    /// [`BlockingPool::shutdown`] waits here for the last worker to leave;
    /// every exiting worker notifies it.
    pub(super) exit_cv: Condvar,
    /// How long an idle worker waits before it asks whether to retire.
    pub(super) keep_alive: Duration,
    /// Names worker `i`.
    thread_name: Box<NameFn>,
    /// Stack size of worker threads, when set.
    stack_size: Option<usize>,
    /// Runs first on every worker thread.
    pub(super) on_thread_start: Option<Box<HookFn>>,
    /// Runs last on every worker thread.
    pub(super) on_thread_stop: Option<Box<HookFn>>,
}

/// The mutable state of the pool.
///
/// # Invariants (whenever the lock is free)
///
/// 1. `num_idle + num_notify` equals the number of workers inside the parking
///    loop of [`worker::run`]. `num_idle` counts those nobody has handed a job
///    yet; `num_notify` counts hand-offs not yet taken by a worker.
/// 2. If `queue` is not empty then some worker will take from it: either one is
///    running a job (and pops the queue when it finishes), or a hand-off is
///    pending (`num_notify > 0`), or the pool is shutting down. Hence no job
///    waits while every worker sleeps (checked by the loom model in
///    `loom-tests/tests/blocking_pool.rs`).
/// 3. `num_threads <= max_workers`, except transiently after
///    [`BlockingPool::set_bounds`] lowered the bound: surplus workers leave as
///    soon as they finish their job or wake up.
/// 4. A worker leaves `num_threads` in the same critical section in which it
///    decides to leave, so `num_threads` counts only workers that will still take
///    jobs, and a submitter that sees `num_threads == max_workers` knows that a
///    running worker will come back for the queue. (A leaving worker counted
///    there could strand a job; the loom model caught exactly that.)
/// 5. `workers[i]` is `Some` exactly while worker `i` is alive (counted in
///    `num_alive`); its index is reused only after that.
pub(super) struct Shared {
    /// Jobs accepted and not yet taken, oldest first.
    pub(super) queue: VecDeque<(Job, Instant)>,
    /// Workers that take jobs: started (or being started) and not leaving.
    pub(super) num_threads: usize,
    /// Threads started and not yet done with their last bookkeeping, leaving
    /// ones included; shutdown waits for this to reach zero.
    pub(super) num_alive: usize,
    /// Parked workers not yet handed a job.
    pub(super) num_idle: usize,
    /// Hand-offs to parked workers that no worker has taken yet.
    pub(super) num_notify: usize,
    /// Set once by shutdown (or by dropping the last handle); never cleared.
    pub(super) shutdown: bool,
    /// Lower bound on threads kept when idle.
    pub(super) min_workers: usize,
    /// Upper bound on threads.
    pub(super) max_workers: usize,
    /// Join handles of live workers, indexed by worker index (reused).
    pub(super) workers: Vec<Option<JoinHandle<()>>>,
    /// The handle of the most recently exited worker. The next worker to exit
    /// joins it, and shutdown joins the last one, so every thread is joined.
    pub(super) last_exiting: Option<JoinHandle<()>>,
    /// Arrival-rate and service-time averages for the target size.
    pub(super) estimator: LoadEstimator,
    /// Jobs that ran to the end (panicked or not).
    pub(super) jobs_completed: u64,
    /// Jobs that panicked.
    pub(super) jobs_panicked: u64,
    /// The most threads taking jobs at once so far (telemetry).
    pub(super) peak_threads: usize,
}

impl Shared {
    /// The target size at `now` (Little's law, clamped to the bounds).
    pub(super) fn target(&self, now: Instant) -> usize {
        self.estimator
            .target(now, self.min_workers, self.max_workers)
    }

    /// The smallest worker index no live worker holds.
    fn free_index(&mut self) -> usize {
        match self.workers.iter().position(Option::is_none) {
            Some(index) => index,
            None => {
                self.workers.push(None);
                self.workers.len() - 1
            }
        }
    }
}

/// An adaptive pool of threads for blocking and CPU-bound jobs.
///
/// Cheap to clone: clones share one pool. Threads start lazily, one per job that
/// finds no idle thread, up to `max_workers`; idle threads retire after the
/// keep-alive while the pool is above both `min_workers` and the Little's-law
/// target. See the [module documentation](super) for the protocol.
///
/// When the last handle is dropped without [`shutdown`](Self::shutdown), the
/// pool shuts down without waiting: queued jobs are dropped, running jobs finish
/// and their threads exit on their own.
///
/// # Examples
///
#[doc = example!()]
/// use std::sync::mpsc;
/// use vedart_executors::blocking::BlockingPool;
///
/// let pool = BlockingPool::builder().max_workers(4).build()?;
/// let (tx, rx) = mpsc::channel();
/// for i in 0..10 {
///     let tx = tx.clone();
///     pool.execute(move || tx.send(i * i).unwrap()).expect("pool is running");
/// }
/// drop(tx);
/// let mut squares: Vec<i32> = rx.iter().collect();
/// squares.sort();
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// assert!(pool.shutdown(None));
/// # Ok::<(), vedart_executors::blocking::BlockingPoolError>(())
/// ```
#[derive(Clone)]
pub struct BlockingPool {
    handle: Arc<Handle>,
}

/// The user-facing owner of the pool: shuts it down when the last clone drops.
struct Handle {
    inner: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let queued = self.inner.begin_shutdown();
        drop_jobs(queued);
    }
}

impl BlockingPool {
    /// Starts configuring a pool.
    pub fn builder() -> BlockingPoolBuilder {
        BlockingPoolBuilder::new()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        let inner = Inner {
            shared: Mutex::new(Shared {
                queue: VecDeque::new(),
                num_threads: 0,
                num_alive: 0,
                num_idle: 0,
                num_notify: 0,
                shutdown: false,
                min_workers: config.min_workers,
                max_workers: config.max_workers,
                workers: Vec::new(),
                last_exiting: None,
                estimator: LoadEstimator::default(),
                jobs_completed: 0,
                jobs_panicked: 0,
                peak_threads: 0,
            }),
            work_cv: Condvar::new(),
            exit_cv: Condvar::new(),
            keep_alive: config.keep_alive,
            thread_name: config.thread_name,
            stack_size: config.stack_size,
            on_thread_start: config.on_thread_start,
            on_thread_stop: config.on_thread_stop,
        };
        let inner = Arc::new(inner);
        #[cfg(not(feature = "loom"))]
        telemetry::register_blocking_pool(Arc::<Inner>::downgrade(&inner));
        Self {
            handle: Arc::new(Handle { inner }),
        }
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    /// Queues `job` to run on a pool thread.
    ///
    /// Hands the job to an idle thread if there is one (waking exactly one),
    /// otherwise starts a thread if the pool is below `max_workers`, otherwise
    /// leaves the job queued for the next thread that finishes. A job that
    /// panics is caught; the pool and its thread carry on.
    ///
    /// # Errors
    ///
    /// Hands the job back in a [`RejectedJob`] after [`shutdown`](Self::shutdown),
    /// or when the pool has no thread and none could be started.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) -> Result<(), RejectedJob> {
        self.execute_boxed(Box::new(job))
    }

    /// Like [`execute`](Self::execute), for a job that is boxed already.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub fn execute_boxed(&self, job: Job) -> Result<(), RejectedJob> {
        let now = Instant::now();
        let inner = self.inner();
        let mut shared = lock(&inner.shared);
        if shared.shutdown {
            drop(shared);
            return Err(RejectedJob::shutdown(job));
        }
        shared.estimator.record_arrival(now);
        telemetry::blocking().spawned();
        // With the time it was queued, for the telemetry of its queue wait.
        shared.queue.push_back((job, now));
        if shared.num_idle > 0 {
            // Hand the job to one parked worker. Whichever parked worker wakes
            // first takes the hand-off (invariant 1).
            shared.num_idle -= 1;
            shared.num_notify += 1;
            drop(shared);
            inner.work_cv.notify_one();
            return Ok(());
        }
        if shared.num_threads < shared.max_workers {
            if let Err(error) = spawn_worker(inner, &mut shared) {
                if shared.num_threads == 0 {
                    // Nobody will ever take the job: give it back.
                    if let Some((job, _)) = shared.queue.pop_back() {
                        drop(shared);
                        return Err(RejectedJob::spawn_failed(job, error));
                    }
                }
                // Otherwise a running worker takes the job when it is done.
            }
        }
        Ok(())
    }

    /// A consistent snapshot of the pool's size, queue and load estimates.
    pub fn stats(&self) -> BlockingPoolStats {
        let now = Instant::now();
        let shared = lock(&self.inner().shared);
        BlockingPoolStats {
            threads: shared.num_threads,
            idle_threads: shared.num_idle,
            queue_depth: shared.queue.len(),
            min_workers: shared.min_workers,
            max_workers: shared.max_workers,
            target_workers: shared.target(now),
            jobs_completed: shared.jobs_completed,
            jobs_panicked: shared.jobs_panicked,
            peak_threads: shared.peak_threads,
            arrival_rate: shared.estimator.arrival_rate(now),
            mean_service_time: shared.estimator.mean_service_time(),
        }
    }

    /// Changes the bounds at run time.
    ///
    /// Lowering `max` makes surplus threads leave as soon as they finish their
    /// current job or wake; raising it starts threads at once for jobs that are
    /// waiting. `min` only stops idle threads from retiring; it starts none.
    ///
    /// # Errors
    ///
    /// A [`BlockingPoolError`] naming the field when `max` is 0 (`"max_workers"`)
    /// or `min > max` (`"min_workers"`); the bounds are then left unchanged.
    pub fn set_bounds(&self, min: usize, max: usize) -> Result<(), BlockingPoolError> {
        validate_bounds(min, max)?;
        let inner = self.inner();
        let mut shared = lock(&inner.shared);
        shared.min_workers = min;
        shared.max_workers = max;
        if !shared.shutdown {
            // Jobs that wait with no idle worker get new threads, up to the bound.
            // A spawn failure leaves them queued for the running workers.
            let mut waiting = shared.queue.len().saturating_sub(shared.num_notify);
            while waiting > 0 && shared.num_idle == 0 && shared.num_threads < shared.max_workers {
                if spawn_worker(inner, &mut shared).is_err() {
                    break;
                }
                waiting -= 1;
            }
        }
        drop(shared);
        // Parked workers re-check the bounds (surplus ones leave).
        inner.work_cv.notify_all();
        Ok(())
    }

    /// Stops the pool and joins its threads.
    ///
    /// 1. New jobs are rejected from now on ([`execute`](Self::execute) hands them back).
    /// 2. Jobs still queued are **dropped without running** (after the lock is
    ///    released, so their destructors may use the pool). For jobs that wrap
    ///    async tasks this cancels the tasks.
    /// 3. Jobs already running finish; every thread then exits.
    /// 4. Waits for the threads, at most `timeout` (`None`: as long as it takes),
    ///    and joins them.
    ///
    /// Returns `true` if every thread was joined in time. On `false` the remaining
    /// threads are still stopping and exit on their own when their job returns.
    /// Called from one of the pool's own threads, it waits for all the others
    /// and leaves the calling thread to exit when its job returns.
    /// Calling it again is harmless.
    pub fn shutdown(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let inner = self.inner();
        let queued = inner.begin_shutdown();
        drop_jobs(queued);

        let me = thread::current().id();
        let mut shared = lock(&inner.shared);
        let calling_worker = shared
            .workers
            .iter()
            .flatten()
            .any(|handle| handle.thread().id() == me);
        let waits_for = usize::from(calling_worker);
        while shared.num_alive > waits_for {
            shared = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    wait_timeout(&inner.exit_cv, shared, deadline - now).0
                }
                // No timeout, or one too large to add to the clock.
                None => wait(&inner.exit_cv, shared),
            };
        }
        let mut handles: Vec<JoinHandle<()>> = shared
            .workers
            .iter_mut()
            .filter(|slot| slot.as_ref().is_some_and(|h| h.thread().id() != me))
            .filter_map(Option::take)
            .collect();
        handles.extend(shared.last_exiting.take());
        drop(shared);
        for handle in handles {
            // A worker never panics out of its loop (jobs and hooks run under
            // catch_unwind), so join only waits for the thread to return.
            let _ = handle.join();
        }
        true
    }
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Inner {
    /// Marks the pool shut down, wakes every parked worker, and returns the
    /// queued jobs for the caller to drop outside the lock.
    fn begin_shutdown(&self) -> VecDeque<(Job, Instant)> {
        let mut shared = lock(&self.shared);
        shared.shutdown = true;
        let queued = mem::take(&mut shared.queue);
        drop(shared);
        self.work_cv.notify_all();
        queued
    }
}

/// Starts one worker and records it; the caller holds the lock.
///
/// On failure nothing is recorded.
fn spawn_worker(inner: &Arc<Inner>, shared: &mut Shared) -> std::io::Result<()> {
    let index = shared.free_index();
    let mut builder = thread::Builder::new().name((inner.thread_name)(index));
    if let Some(bytes) = inner.stack_size {
        builder = builder.stack_size(bytes);
    }
    let worker_inner = Arc::clone(inner);
    shared.num_threads += 1;
    shared.num_alive += 1;
    shared.peak_threads = shared.peak_threads.max(shared.num_threads);
    match builder.spawn(move || worker::run(worker_inner, index)) {
        Ok(handle) => {
            shared.workers[index] = Some(handle);
            Ok(())
        }
        Err(error) => {
            shared.num_threads -= 1;
            shared.num_alive -= 1;
            Err(error)
        }
    }
}

/// Drops jobs one by one, containing panics from their destructors.
fn drop_jobs(jobs: VecDeque<(Job, Instant)>) {
    telemetry::blocking().cancelled(jobs.len() as u64);
    for (job, _) in jobs {
        let _ = catch_unwind(AssertUnwindSafe(move || drop(job)));
    }
}

impl telemetry::BlockingSource for Inner {
    fn add_gauges(&self, gauges: &mut telemetry::BlockingPools) {
        let shared = lock(&self.shared);
        gauges.threads += shared.num_threads;
        gauges.idle_threads += shared.num_idle;
        gauges.peak_threads += shared.peak_threads;
        gauges.min_workers += shared.min_workers;
        gauges.max_workers += shared.max_workers;
        gauges.queue_depth += shared.queue.len();
    }
}
