//! Integration tests of the adaptive blocking pool.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use vedart_executors::blocking::{BlockingPool, BlockingPoolStats};

/// Generous bound on anything that should happen "soon", for a loaded 2-core box.
const SOON: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds or `SOON` passes; returns whether it held.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + SOON;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// A gate that jobs wait at until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, cv) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
    }

    fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// Counts live threads through the start/stop hooks and remembers the peak.
#[derive(Clone, Default)]
struct ThreadCounter {
    started: Arc<AtomicUsize>,
    stopped: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl ThreadCounter {
    fn builder(&self) -> vedart_executors::blocking::BlockingPoolBuilder {
        let start = self.clone();
        let stop = self.clone();
        BlockingPool::builder()
            .on_thread_start(move || {
                start.started.fetch_add(1, Ordering::SeqCst);
                let live = start.live.fetch_add(1, Ordering::SeqCst) + 1;
                start.peak.fetch_max(live, Ordering::SeqCst);
            })
            .on_thread_stop(move || {
                stop.live.fetch_sub(1, Ordering::SeqCst);
                stop.stopped.fetch_add(1, Ordering::SeqCst);
            })
    }

    fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    fn stopped(&self) -> usize {
        self.stopped.load(Ordering::SeqCst)
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Runs `n` jobs that each wait at `gate`; returns the counter of jobs running.
fn submit_gated(pool: &BlockingPool, gate: &Gate, n: usize) -> Arc<AtomicUsize> {
    let running = Arc::new(AtomicUsize::new(0));
    for _ in 0..n {
        let gate = gate.clone();
        let running = Arc::clone(&running);
        pool.execute(move || {
            running.fetch_add(1, Ordering::SeqCst);
            gate.wait();
            running.fetch_sub(1, Ordering::SeqCst);
        })
        .expect("pool accepts jobs");
    }
    running
}

#[test]
fn all_jobs_run() {
    let pool = BlockingPool::builder().max_workers(8).build().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..2_000 {
        let done = Arc::clone(&done);
        pool.execute(move || {
            done.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    assert!(eventually(|| done.load(Ordering::SeqCst) == 2_000));
    assert!(eventually(|| pool.stats().jobs_completed == 2_000));
    assert!(pool.shutdown(Some(SOON)));
}

#[test]
fn jobs_from_many_submitters_all_run() {
    let pool = BlockingPool::builder().max_workers(3).build().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let submitters: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            let done = Arc::clone(&done);
            thread::spawn(move || {
                for _ in 0..500 {
                    let done = Arc::clone(&done);
                    pool.execute(move || {
                        done.fetch_add(1, Ordering::SeqCst);
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for submitter in submitters {
        submitter.join().unwrap();
    }
    assert!(eventually(|| done.load(Ordering::SeqCst) == 2_000));
    assert!(pool.stats().threads <= 3);
    assert!(pool.shutdown(Some(SOON)));
}

#[test]
fn grows_to_max_under_load_and_never_beyond() {
    let counter = ThreadCounter::default();
    let pool = counter.builder().max_workers(4).build().unwrap();
    let gate = Gate::default();
    let running = submit_gated(&pool, &gate, 16);

    assert!(eventually(|| running.load(Ordering::SeqCst) == 4));
    let stats = pool.stats();
    assert_eq!(stats.threads, 4);
    assert_eq!(stats.idle_threads, 0);
    assert_eq!(stats.queue_depth, 12);
    // More work arrives: still no fifth thread.
    let more = submit_gated(&pool, &gate, 4);
    thread::sleep(Duration::from_millis(50));
    assert_eq!(pool.stats().threads, 4);
    assert_eq!(
        running.load(Ordering::SeqCst) + more.load(Ordering::SeqCst),
        4
    );

    gate.open();
    assert!(eventually(|| pool.stats().jobs_completed == 20));
    assert_eq!(counter.peak(), 4, "grew to max and never beyond");
    assert_eq!(
        counter.started(),
        4,
        "no thread was started beyond the first four"
    );
    assert!(pool.shutdown(Some(SOON)));
}

#[test]
fn idle_thread_is_reused_instead_of_spawning() {
    let counter = ThreadCounter::default();
    let pool = counter.builder().max_workers(8).build().unwrap();
    for _ in 0..20 {
        let (tx, rx) = mpsc::channel();
        pool.execute(move || tx.send(()).unwrap()).unwrap();
        rx.recv_timeout(SOON).unwrap();
        // Let the thread park before the next job arrives.
        assert!(eventually(|| pool.stats().idle_threads == 1));
    }
    assert_eq!(counter.started(), 1);
    assert!(pool.shutdown(Some(SOON)));
}

#[test]
fn shrinks_to_min_after_keep_alive() {
    let counter = ThreadCounter::default();
    let pool = counter
        .builder()
        .min_workers(1)
        .max_workers(4)
        .keep_alive(Duration::from_millis(100))
        .build()
        .unwrap();
    let gate = Gate::default();
    let running = submit_gated(&pool, &gate, 4);
    assert!(eventually(|| running.load(Ordering::SeqCst) == 4));
    assert_eq!(pool.stats().threads, 4);

    gate.open();
    assert!(eventually(|| pool.stats().threads == 1));
    assert!(eventually(|| counter.stopped() == 3));
    // The last thread stays: min_workers keeps it through many keep-alives.
    thread::sleep(Duration::from_millis(400));
    let stats = pool.stats();
    assert_eq!(stats.threads, 1);
    assert_eq!(stats.idle_threads, 1);
    assert_eq!(counter.started() - counter.stopped(), 1);
    assert!(pool.shutdown(Some(SOON)));
    assert_eq!(counter.started(), counter.stopped());
}

#[test]
fn min_zero_retires_every_idle_thread() {
    let counter = ThreadCounter::default();
    let pool = counter
        .builder()
        .max_workers(3)
        .keep_alive(Duration::from_millis(50))
        .build()
        .unwrap();
    let gate = Gate::default();
    let running = submit_gated(&pool, &gate, 3);
    assert!(eventually(|| running.load(Ordering::SeqCst) == 3));
    gate.open();
    assert!(eventually(|| pool.stats().threads == 0));
    assert!(eventually(|| counter.stopped() == 3));
    // The pool starts threads again on demand.
    let (tx, rx) = mpsc::channel();
    pool.execute(move || tx.send(()).unwrap()).unwrap();
    rx.recv_timeout(SOON).unwrap();
    assert!(pool.shutdown(Some(SOON)));
}

#[test]
fn stats_fields_are_correct() {
    let pool = BlockingPool::builder()
        .min_workers(1)
        .max_workers(3)
        .build()
        .unwrap();
    let fresh = pool.stats();
    assert_eq!(fresh.threads, 0, "threads start lazily");
    assert_eq!(fresh.idle_threads, 0);
    assert_eq!(fresh.queue_depth, 0);
    assert_eq!(fresh.min_workers, 1);
    assert_eq!(fresh.max_workers, 3);
    assert_eq!(fresh.target_workers, 1, "an idle pool targets min_workers");
    assert_eq!(fresh.jobs_completed, 0);
    assert_eq!(fresh.arrival_rate, 0.0);
    assert_eq!(fresh.mean_service_time, Duration::ZERO);

    for _ in 0..6 {
        pool.execute(|| thread::sleep(Duration::from_millis(20)))
            .unwrap();
    }
    let busy = pool.stats();
    assert!(busy.threads <= 3);
    // Every job is queued, running (one per busy thread at most) or completed.
    let busy_threads = busy.threads - busy.idle_threads;
    assert!(busy.queue_depth + busy.jobs_completed as usize + busy_threads >= 6);
    assert!(busy.queue_depth + busy.jobs_completed as usize <= 6);

    assert!(eventually(|| pool.stats().jobs_completed == 6));
    assert!(eventually(|| {
        let s = pool.stats();
        s.idle_threads == s.threads
    }));
    let stats = pool.stats();
    assert_eq!(stats.queue_depth, 0);
    assert_eq!(stats.jobs_panicked, 0);
    assert!(stats.threads >= 1 && stats.threads <= 3);
    assert!(stats.arrival_rate > 0.0);
    assert!(stats.mean_service_time >= Duration::from_millis(20));
    assert!(stats.mean_service_time < SOON);
    assert_eq!(stats.target_workers, littles_law(&stats));
    assert!(pool.shutdown(Some(SOON)));
}

/// The target the pool should report for these averages.
fn littles_law(stats: &BlockingPoolStats) -> usize {
    let load = stats.arrival_rate * stats.mean_service_time.as_secs_f64();
    (load.round() as usize).clamp(stats.min_workers, stats.max_workers)
}

#[test]
fn target_follows_littles_law() {
    let pool = BlockingPool::builder().max_workers(64).build().unwrap();
    // 40 jobs of at least 50 ms each, all at once: the target is exactly what
    // the reported averages give (about two threads right after the burst).
    for _ in 0..40 {
        pool.execute(|| thread::sleep(Duration::from_millis(50)))
            .unwrap();
    }
    assert!(eventually(|| pool.stats().jobs_completed == 40));
    let stats = pool.stats();
    assert_eq!(stats.target_workers, littles_law(&stats));
    assert!(stats.arrival_rate > 0.0, "{stats:?}");
    assert!(
        stats.mean_service_time >= Duration::from_millis(50),
        "{stats:?}"
    );
    assert!(pool.shutdown(Some(SOON)));
}

#[test]
fn panicking_job_keeps_pool_alive() {
    let pool = BlockingPool::builder().max_workers(1).build().unwrap();
    let (tx, rx) = mpsc::channel();
    let first = tx.clone();
    pool.execute(move || {
        first.send(thread::current().id()).unwrap();
        panic!("job panics on purpose");
    })
    .unwrap();
    pool.execute(move || tx.send(thread::current().id()).unwrap())
        .unwrap();
    let panicked_on = rx.recv_timeout(SOON).unwrap();
    let next_on = rx.recv_timeout(SOON).unwrap();
    assert_eq!(panicked_on, next_on, "the same thread survived the panic");
    assert!(eventually(|| pool.stats().jobs_completed == 2));
    let stats = pool.stats();
    assert_eq!(stats.jobs_panicked, 1);
    assert_eq!(stats.threads, 1);
    assert!(eventually(|| pool.stats().idle_threads == 1));
    assert!(pool.shutdown(Some(SOON)));
}

#[test]
fn panicking_hooks_do_not_break_the_pool() {
    let pool = BlockingPool::builder()
        .on_thread_start(|| panic!("start hook panics"))
        .on_thread_stop(|| panic!("stop hook panics"))
        .max_workers(2)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    pool.execute(move || tx.send(7).unwrap()).unwrap();
    assert_eq!(rx.recv_timeout(SOON).unwrap(), 7);
    assert!(pool.shutdown(Some(SOON)));
    assert_eq!(pool.stats().threads, 0);
}

#[test]
fn shutdown_joins_every_thread() {
    let counter = ThreadCounter::default();
    let pool = counter
        .builder()
        .min_workers(2)
        .max_workers(4)
        .build()
        .unwrap();
    let gate = Gate::default();
    let running = submit_gated(&pool, &gate, 4);
    assert!(eventually(|| running.load(Ordering::SeqCst) == 4));
    gate.open();
    assert!(eventually(|| pool.stats().jobs_completed == 4));
    assert!(pool.shutdown(None));
    assert_eq!(counter.started(), 4);
    assert_eq!(
        counter.stopped(),
        4,
        "every thread ran its stop hook before shutdown returned"
    );
    assert_eq!(pool.stats().threads, 0);
    // Calling it again is harmless.
    assert!(pool.shutdown(Some(Duration::ZERO)));
}

#[test]
fn shutdown_drops_queued_jobs_and_times_out_on_running_ones() {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    let counter = ThreadCounter::default();
    let pool = counter.builder().max_workers(1).build().unwrap();
    let gate = Gate::default();
    let running = submit_gated(&pool, &gate, 1);
    assert!(eventually(|| running.load(Ordering::SeqCst) == 1));

    let ran = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = SetOnDrop(Arc::clone(&dropped));
    let ran_in_job = Arc::clone(&ran);
    pool.execute(move || {
        let _guard = guard;
        ran_in_job.store(true, Ordering::SeqCst);
    })
    .unwrap();
    assert_eq!(pool.stats().queue_depth, 1);

    // The running job holds its thread: the shutdown cannot join it in time.
    let started = Instant::now();
    assert!(!pool.shutdown(Some(Duration::from_millis(50))));
    assert!(started.elapsed() < SOON);
    assert!(dropped.load(Ordering::SeqCst), "the queued job was dropped");
    assert!(!ran.load(Ordering::SeqCst), "the queued job did not run");

    gate.open();
    assert!(pool.shutdown(Some(SOON)));
    assert_eq!(counter.stopped(), 1);
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn execute_after_shutdown_is_rejected() {
    let pool = BlockingPool::builder().build().unwrap();
    assert!(pool.shutdown(None));
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let rejected = pool
        .execute(move || flag.store(true, Ordering::SeqCst))
        .unwrap_err();
    assert!(rejected.is_shutdown());
    assert!(!rejected.is_spawn_failure());
    assert_eq!(rejected.to_string(), "the blocking pool is shut down");
    // The job comes back intact.
    (rejected.into_job())();
    assert!(ran.load(Ordering::SeqCst));
    assert_eq!(pool.stats().threads, 0);
}

#[test]
fn shutdown_from_inside_a_job_does_not_deadlock() {
    let counter = ThreadCounter::default();
    let pool = counter.builder().max_workers(4).build().unwrap();
    let gate = Gate::default();
    // Two other threads exist while the job shuts the pool down.
    let running = submit_gated(&pool, &gate, 2);
    assert!(eventually(|| running.load(Ordering::SeqCst) == 2));
    let (tx, rx) = mpsc::channel();
    let inner_pool = pool.clone();
    pool.execute(move || {
        let joined = inner_pool.shutdown(Some(SOON));
        let rejected = inner_pool.execute(|| {}).is_err();
        tx.send((joined, rejected)).unwrap();
    })
    .unwrap();
    gate.open();
    let (joined, rejected) = rx.recv_timeout(SOON * 2).unwrap();
    assert!(joined, "the other threads were joined");
    assert!(rejected);
    assert!(eventually(|| counter.stopped() == 3));
    assert!(eventually(|| pool.stats().threads == 0));
}

#[test]
fn dropping_the_last_handle_stops_the_threads() {
    let counter = ThreadCounter::default();
    let pool = counter
        .builder()
        .min_workers(2)
        .max_workers(2)
        .build()
        .unwrap();
    let clone = pool.clone();
    let gate = Gate::default();
    let running = submit_gated(&pool, &gate, 2);
    assert!(eventually(|| running.load(Ordering::SeqCst) == 2));
    gate.open();
    drop(pool);
    // A clone keeps the pool alive.
    assert!(eventually(|| clone.stats().jobs_completed == 2));
    assert!(clone.execute(|| {}).is_ok());
    drop(clone);
    assert!(eventually(
        || counter.started() == 2 && counter.stopped() == 2
    ));
}

#[test]
fn builder_errors_name_the_field() {
    let err = BlockingPool::builder().max_workers(0).build().unwrap_err();
    assert_eq!(err.field(), "max_workers");
    assert_eq!(err.to_string(), "max_workers must be at least 1");

    let err = BlockingPool::builder()
        .min_workers(5)
        .max_workers(4)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "min_workers");
    assert_eq!(
        err.to_string(),
        "min_workers (5) must not exceed max_workers (4)"
    );

    assert!(
        BlockingPool::builder()
            .min_workers(4)
            .max_workers(4)
            .build()
            .is_ok()
    );
}

#[test]
fn set_bounds_validates_and_resizes() {
    let pool = BlockingPool::builder().max_workers(1).build().unwrap();
    assert_eq!(pool.set_bounds(0, 0).unwrap_err().field(), "max_workers");
    assert_eq!(pool.set_bounds(3, 2).unwrap_err().field(), "min_workers");
    let stats = pool.stats();
    assert_eq!((stats.min_workers, stats.max_workers), (0, 1), "unchanged");

    let gate = Gate::default();
    let running = submit_gated(&pool, &gate, 3);
    assert!(eventually(|| running.load(Ordering::SeqCst) == 1));
    assert_eq!(pool.stats().queue_depth, 2);

    // Raising max starts threads for the waiting jobs at once.
    pool.set_bounds(1, 3).unwrap();
    assert!(eventually(|| running.load(Ordering::SeqCst) == 3));
    let stats = pool.stats();
    assert_eq!(stats.threads, 3);
    assert_eq!((stats.min_workers, stats.max_workers), (1, 3));

    // Lowering max sends surplus threads away once their jobs end.
    pool.set_bounds(0, 1).unwrap();
    gate.open();
    assert!(eventually(|| pool.stats().threads <= 1));
    let (tx, rx) = mpsc::channel();
    pool.execute(move || tx.send(()).unwrap()).unwrap();
    rx.recv_timeout(SOON).unwrap();
    assert!(pool.stats().threads <= 1);
    assert!(pool.shutdown(Some(SOON)));
}

#[test]
fn lowering_max_retires_idle_threads() {
    let counter = ThreadCounter::default();
    let pool = counter
        .builder()
        .min_workers(3)
        .max_workers(3)
        .build()
        .unwrap();
    let gate = Gate::default();
    let running = submit_gated(&pool, &gate, 3);
    assert!(eventually(|| running.load(Ordering::SeqCst) == 3));
    gate.open();
    assert!(eventually(|| pool.stats().idle_threads == 3));
    pool.set_bounds(0, 1).unwrap();
    assert!(eventually(|| pool.stats().threads == 1));
    assert!(eventually(|| counter.stopped() == 2));
    assert!(pool.shutdown(Some(SOON)));
}

#[test]
fn default_thread_names() {
    let pool = BlockingPool::builder().max_workers(3).build().unwrap();
    let gate = Gate::default();
    let names = Arc::new(Mutex::new(Vec::new()));
    let running = Arc::new(AtomicUsize::new(0));
    for _ in 0..3 {
        let names = Arc::clone(&names);
        let gate = gate.clone();
        let running = Arc::clone(&running);
        pool.execute(move || {
            let name = thread::current().name().map(str::to_owned);
            names.lock().unwrap().push(name);
            running.fetch_add(1, Ordering::SeqCst);
            gate.wait();
        })
        .unwrap();
    }
    assert!(eventually(|| running.load(Ordering::SeqCst) == 3));
    gate.open();
    let mut names: Vec<String> = names
        .lock()
        .unwrap()
        .iter()
        .map(|n| n.clone().expect("threads are named"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["veda-blocking-0", "veda-blocking-1", "veda-blocking-2"]
    );
    assert!(pool.shutdown(Some(SOON)));
}

#[test]
fn custom_thread_names_and_stack_size() {
    let pool = BlockingPool::builder()
        .thread_name(|i| format!("custom-{i}"))
        .stack_size(4 * 1024 * 1024)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    pool.execute(move || {
        // Touch a good part of the requested stack.
        let buffer = [7u8; 1024 * 1024];
        let sum: u64 = std::hint::black_box(&buffer)
            .iter()
            .map(|&b| u64::from(b))
            .sum();
        tx.send((thread::current().name().map(str::to_owned), sum))
            .unwrap();
    })
    .unwrap();
    let (name, sum) = rx.recv_timeout(SOON).unwrap();
    assert_eq!(name.as_deref(), Some("custom-0"));
    assert_eq!(sum, 7 * 1024 * 1024);
    assert!(pool.shutdown(Some(SOON)));
}

#[test]
fn pool_handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<BlockingPool>();
    send_sync::<vedart_executors::blocking::RejectedJob>();
    send_sync::<vedart_executors::blocking::BlockingPoolError>();
}

#[test]
fn debug_shows_stats() {
    let pool = BlockingPool::builder().max_workers(2).build().unwrap();
    let text = format!("{pool:?}");
    assert!(text.contains("BlockingPool"), "{text}");
    assert!(text.contains("max_workers: 2"), "{text}");
    let builder = format!("{:?}", BlockingPool::builder().min_workers(1));
    assert!(builder.contains("min_workers: 1"), "{builder}");
}
