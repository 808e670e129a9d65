//! The loop every pool thread runs: take jobs, park when there are none, retire.
//!
//! 1. Run the start hook.
//! 2. Pop and run queued jobs, one at a time, each under `catch_unwind`; after
//!    each, record its run time and leave if the pool is above `max_workers`.
//! 3. With the queue empty: leave on shutdown, else park (`num_idle += 1`).
//! 4. Parked, wake on a notification or when the keep-alive runs out, then in order:
//!    a. a hand-off is pending (`num_notify > 0`): take it (`num_notify -= 1`) and go to 2;
//!    b. shutdown, or the pool is above `max_workers`: leave (`num_idle -= 1`);
//!    c. the keep-alive ran out: leave if the pool is above `max(min, target)`,
//!    otherwise stay parked for another round.
//!    d. otherwise (a spurious wake-up) keep waiting.
//! 5. Leaving: in the critical section that decides to leave, `num_threads -= 1`
//!    (so submitters no longer count on this worker); then run the stop hook,
//!    and under the lock `num_alive -= 1`, move the own join handle to
//!    `last_exiting` and join the previous exiting thread.
//!
//! A parked worker checks for a pending hand-off before anything else, so a job
//! handed to "some parked worker" is always taken, even if the worker that the
//! condition variable woke is not the one that takes it.

use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use super::estimator::should_retire;
use super::pool::Inner;
use crate::sync::{Arc, lock, wait_timeout};
use crate::telemetry;

/// How often a parked worker that the target keeps alive re-checks whether it
/// may retire, when the keep-alive is shorter than this.
pub(crate) const RETAIN_RECHECK: Duration = Duration::from_millis(100);

/// Whether keep-alive timeouts apply. Under loom there is no clock: parked
/// workers wait for a notification only.
const TIMED: bool = !cfg!(feature = "loom");

/// The body of a worker thread with index `index`.
pub(super) fn run(inner: Arc<Inner>, index: usize) {
    run_hook(inner.on_thread_start.as_deref());
    serve(&inner);
    run_hook(inner.on_thread_stop.as_deref());
    let previous = {
        let mut shared = lock(&inner.shared);
        shared.num_alive -= 1;
        let own = shared.workers.get_mut(index).and_then(Option::take);
        mem::replace(&mut shared.last_exiting, own)
    };
    inner.exit_cv.notify_all();
    if let Some(previous) = previous {
        // That thread has released the lock for the last time and is returning.
        let _ = previous.join();
    }
}

/// Steps 2 to 4: returns when this worker must leave, having left `num_threads`.
fn serve(inner: &Inner) {
    let mut shared = lock(&inner.shared);
    loop {
        while let Some((job, queued)) = shared.queue.pop_front() {
            drop(shared);
            let started = Instant::now();
            telemetry::blocking_job_started(queued, started);
            let panicked = match catch_unwind(AssertUnwindSafe(job)) {
                Ok(()) => false,
                Err(payload) => {
                    // Dropping a panic payload can itself panic.
                    let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
                    true
                }
            };
            let elapsed = started.elapsed();
            telemetry::blocking_job_ran(elapsed, panicked);
            shared = lock(&inner.shared);
            shared.estimator.record_service(elapsed);
            shared.jobs_completed += 1;
            shared.jobs_panicked += u64::from(panicked);
            if shared.num_threads > shared.max_workers {
                shared.num_threads -= 1;
                return;
            }
        }
        if shared.shutdown {
            shared.num_threads -= 1;
            return;
        }

        shared.num_idle += 1;
        let mut idle_since = Instant::now();
        let mut round = inner.keep_alive;
        loop {
            let expired = TIMED && idle_since.elapsed() >= round;
            if !expired {
                let remaining = round.saturating_sub(idle_since.elapsed());
                shared = wait_timeout(&inner.work_cv, shared, remaining).0;
            }
            if shared.num_notify > 0 {
                shared.num_notify -= 1;
                break;
            }
            if shared.shutdown || shared.num_threads > shared.max_workers {
                shared.num_idle -= 1;
                shared.num_threads -= 1;
                return;
            }
            if TIMED && idle_since.elapsed() >= round {
                let now = Instant::now();
                let target = shared.target(now);
                if should_retire(shared.num_threads, shared.min_workers, target) {
                    shared.num_idle -= 1;
                    shared.num_threads -= 1;
                    return;
                }
                idle_since = now;
                round = inner.keep_alive.max(RETAIN_RECHECK);
            }
        }
    }
}

/// Runs a start or stop hook, containing its panics.
fn run_hook(hook: Option<&(dyn Fn() + Send + Sync)>) {
    if let Some(hook) = hook {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(hook)) {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
        }
    }
}
