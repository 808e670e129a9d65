//! loom models of the blocking pool's idle-thread accounting.
//!
//! The pool (`vedart_executors::blocking`) uses loom's mutex, condition variable
//! and threads under `--features loom`, and its keep-alive never times out there,
//! so these models explore every interleaving of submitters, workers parking and
//! waking, and shutdown. Two properties are checked:
//!
//! - No queued job is left while every thread sleeps: each model waits for all
//!   its jobs to run; a lost wake-up would leave every thread blocked, which loom
//!   reports as a deadlock.
//! - Shutdown joins every thread: after `shutdown(None)` returns `true`, every
//!   thread that started has run its stop hook and the pool reports none alive.
#![cfg(feature = "loom")]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use vedart_executors::blocking::{BlockingPool, BlockingPoolBuilder};

/// Counts finished jobs and lets the model thread wait for a number of them.
#[derive(Clone)]
struct Done(Arc<(Mutex<usize>, Condvar)>);

impl Done {
    fn new() -> Self {
        Self(Arc::new((Mutex::new(0), Condvar::new())))
    }

    fn job(&self) -> impl FnOnce() + Send + 'static {
        let done = self.clone();
        move || {
            let (count, cv) = &*done.0;
            *count.lock().unwrap() += 1;
            cv.notify_all();
        }
    }

    fn wait_for(&self, n: usize) {
        let (count, cv) = &*self.0;
        let mut count = count.lock().unwrap();
        while *count < n {
            count = cv.wait(count).unwrap();
        }
    }
}

/// Counts threads that started and stopped, through the pool's hooks.
#[derive(Clone)]
struct Lifecycle {
    started: Arc<AtomicUsize>,
    stopped: Arc<AtomicUsize>,
}

impl Lifecycle {
    fn new() -> Self {
        Self {
            started: Arc::new(AtomicUsize::new(0)),
            stopped: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn builder(&self) -> BlockingPoolBuilder {
        let started = Arc::clone(&self.started);
        let stopped = Arc::clone(&self.stopped);
        BlockingPool::builder()
            .on_thread_start(move || {
                started.fetch_add(1, Ordering::SeqCst);
            })
            .on_thread_stop(move || {
                stopped.fetch_add(1, Ordering::SeqCst);
            })
    }

    fn assert_all_joined(&self, pool: &BlockingPool) {
        let started = self.started.load(Ordering::SeqCst);
        assert_eq!(started, self.stopped.load(Ordering::SeqCst));
        assert_eq!(pool.stats().threads, 0);
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// A job submitted while the only worker goes idle is never stranded: the
/// submitter either hands it to the parked worker or the worker finds it in the
/// queue before it parks.
#[test]
fn job_racing_a_worker_going_idle_is_not_lost() {
    model(|| {
        let lifecycle = Lifecycle::new();
        let pool = lifecycle.builder().max_workers(1).build().unwrap();
        let done = Done::new();
        pool.execute(done.job()).unwrap();
        done.wait_for(1);
        pool.execute(done.job()).unwrap();
        done.wait_for(2);
        assert_eq!(pool.stats().queue_depth, 0);
        assert!(pool.shutdown(None));
        lifecycle.assert_all_joined(&pool);
    });
}

/// Two submitters race each other and two workers: every job runs, the pool
/// never exceeds its bound, and shutdown joins both workers.
#[test]
fn concurrent_submitters_with_two_workers() {
    model(|| {
        let lifecycle = Lifecycle::new();
        let pool = lifecycle.builder().max_workers(2).build().unwrap();
        let done = Done::new();
        let submitter = {
            let pool = pool.clone();
            let job = done.job();
            loom::thread::spawn(move || pool.execute(job).unwrap())
        };
        pool.execute(done.job()).unwrap();
        submitter.join().unwrap();
        done.wait_for(2);
        assert!(pool.stats().threads <= 2);
        assert!(pool.shutdown(None));
        lifecycle.assert_all_joined(&pool);
    });
}

/// Shutdown racing a worker that is about to park (or has parked): the worker
/// always sees the shutdown and is joined.
#[test]
fn shutdown_racing_an_idle_worker_joins_it() {
    model(|| {
        let lifecycle = Lifecycle::new();
        let pool = lifecycle
            .builder()
            .min_workers(1)
            .max_workers(1)
            .build()
            .unwrap();
        pool.execute(|| {}).unwrap();
        assert!(pool.shutdown(None));
        lifecycle.assert_all_joined(&pool);
        assert!(pool.execute(|| {}).is_err());
    });
}

/// Lowering the bound while two workers exist: surplus workers leave (when
/// they wake or finish their job), and the pool still runs the next job.
#[test]
fn lowering_the_bound_sends_surplus_workers_away() {
    model(|| {
        let lifecycle = Lifecycle::new();
        let pool = lifecycle.builder().max_workers(2).build().unwrap();
        let gate = Done::new();
        let done = Done::new();
        {
            let gate = gate.clone();
            let finish = done.job();
            pool.execute(move || {
                gate.wait_for(1);
                finish();
            })
            .unwrap();
        }
        // The first worker is busy: this job gets a second worker.
        pool.execute(done.job()).unwrap();
        done.wait_for(1);
        assert_eq!(lifecycle.started.load(Ordering::SeqCst), 2);
        pool.set_bounds(0, 1).unwrap();
        (gate.job())();
        done.wait_for(2);
        pool.execute(done.job()).unwrap();
        done.wait_for(3);
        assert!(pool.shutdown(None));
        lifecycle.assert_all_joined(&pool);
        assert!(lifecycle.started.load(Ordering::SeqCst) <= 3);
    });
}
