//! Timers from inside the runtime: never early, in deadline order, timeouts.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vedart::{Builder, Runtime};

/// Sleeps of distinct lengths, started together, spawned in reverse order:
/// each must wake no earlier than its deadline; on a single core they must
/// also complete in deadline order.
fn timers_fire_in_order_and_never_early(rt: &Runtime, check_order: bool) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    rt.block_on({
        let log = log.clone();
        async move {
            let tasks: Vec<_> = (0..20u64)
                .rev()
                .map(|i| {
                    let log = log.clone();
                    let deadline = start + Duration::from_millis(10 + 3 * i);
                    vedart::spawn(async move {
                        vedart::time::sleep_until(deadline).await;
                        let woke = Instant::now();
                        log.lock().expect("lock").push((i, deadline, woke));
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("timer task");
            }
        }
    });
    let log = log.lock().expect("lock");
    assert_eq!(log.len(), 20);
    for &(i, deadline, woke) in log.iter() {
        assert!(
            woke >= deadline,
            "timer {i} fired {:?} early",
            deadline - woke
        );
    }
    if check_order {
        let order: Vec<u64> = log.iter().map(|&(i, _, _)| i).collect();
        assert_eq!(order, (0..20).collect::<Vec<_>>());
    }
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn timers_in_order_on_the_current_thread_flavour() {
    let rt = Builder::new_current_thread().build().expect("runtime");
    timers_fire_in_order_and_never_early(&rt, true);
}

#[test]
fn timers_in_order_on_one_worker() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    timers_fire_in_order_and_never_early(&rt, true);
}

#[test]
fn timers_never_early_on_many_workers() {
    let rt = Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .expect("runtime");
    timers_fire_in_order_and_never_early(&rt, false);
}

#[test]
fn timeout_on_a_never_ready_future() {
    let rt = Runtime::new().expect("runtime");
    let start = Instant::now();
    let result = rt.block_on(rt.spawn(async {
        vedart::time::timeout(Duration::from_millis(20), std::future::pending::<()>()).await
    }));
    let elapsed = start.elapsed();
    assert!(result.expect("task").is_err(), "timed out");
    assert!(elapsed >= Duration::from_millis(20), "early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5));
}

#[test]
fn timeout_passes_a_ready_value_through() {
    let rt = Runtime::new().expect("runtime");
    let value = rt.block_on(vedart::time::timeout(Duration::from_secs(5), async { 3 }));
    assert_eq!(value.expect("in time"), 3);
}

#[test]
fn interval_ticks_at_its_period() {
    let rt = Builder::new_current_thread().build().expect("runtime");
    let start = Instant::now();
    rt.block_on(async {
        let mut ticks = vedart::time::interval(Duration::from_millis(5));
        for _ in 0..5 {
            futures::StreamExt::next(&mut ticks).await;
        }
    });
    // The first tick is immediate; four periods follow.
    assert!(start.elapsed() >= Duration::from_millis(20));
}

#[test]
fn timers_fire_while_every_worker_is_busy_polling() {
    // One worker running tasks that keep yielding: the reactor is only
    // polled by maintenance ticks, which must still fire the timer.
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = rt.spawn({
        let stop = stop.clone();
        async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                vedart::yield_now().await;
            }
        }
    });
    let start = Instant::now();
    let slept = rt.spawn(async {
        vedart::time::sleep(Duration::from_millis(10)).await;
        Instant::now()
    });
    let woke = rt.block_on(slept).expect("sleeper");
    assert!(woke - start >= Duration::from_millis(10));
    assert!(start.elapsed() < Duration::from_secs(5));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(busy).expect("busy task");
}
