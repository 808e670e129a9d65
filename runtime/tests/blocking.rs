//! `spawn_blocking`: closures on the blocking pool, their panics, aborts, and shutdown.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vedart::{Builder, Runtime};

#[test]
fn closures_run_off_the_workers_and_return_their_results() {
    let rt = Runtime::new().unwrap();
    let results = rt.block_on(async {
        let handles: Vec<_> = (0..100u64)
            .map(|i| {
                vedart::spawn_blocking(move || {
                    let name = std::thread::current().name().unwrap_or_default().to_owned();
                    (i * i, name)
                })
            })
            .collect();
        let mut results = Vec::new();
        for handle in handles {
            results.push(handle.await.unwrap());
        }
        results
    });
    for (i, (square, thread)) in results.into_iter().enumerate() {
        assert_eq!(square, (i * i) as u64);
        assert!(thread.starts_with("veda-blocking-"), "ran on {thread:?}");
    }
}

#[test]
fn a_panicking_closure_becomes_a_join_error_with_its_message() {
    let rt = Runtime::new().unwrap();
    let err = rt
        .block_on(
            rt.handle()
                .spawn_blocking(|| -> u32 { panic!("disk on fire") }),
        )
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("disk on fire"));
    // The pool and the runtime keep working.
    assert_eq!(rt.block_on(rt.handle().spawn_blocking(|| 5)).unwrap(), 5);
}

#[test]
fn blocking_closures_do_not_stall_async_tasks() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // Blocks its thread until the async task below has run: would deadlock
        // if blocking closures ran on the only worker.
        let blocker = vedart::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)));
        let task = vedart::spawn(async move { tx.send(()).unwrap() });
        task.await.unwrap();
        assert!(blocker.await.unwrap().is_ok());
    });
}

#[test]
fn pool_bounds_come_from_the_builder_and_are_validated() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .min_blocking_threads(1)
        .max_blocking_threads(3)
        .blocking_keep_alive(Duration::from_millis(100))
        .build()
        .unwrap();
    let stats = rt.handle().blocking_pool().stats();
    assert_eq!((stats.min_workers, stats.max_workers), (1, 3));

    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let handles: Vec<_> = (0..12)
            .map(|_| {
                let (running, peak) = (running.clone(), peak.clone());
                vedart::spawn_blocking(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(10));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for handle in handles {
            handle.await.unwrap();
        }
    });
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "ran {} at once",
        peak.load(Ordering::SeqCst)
    );

    let err = Builder::new_multi_thread()
        .max_blocking_threads(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), Some("max_blocking_threads"));
    let err = Builder::new_multi_thread()
        .min_blocking_threads(4)
        .max_blocking_threads(2)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), Some("min_blocking_threads"));
}

#[test]
fn abort_before_start_cancels_the_closure() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let occupier = vedart::spawn_blocking(move || wait.recv_timeout(Duration::from_secs(10)));
        let queued = {
            let ran = ran.clone();
            vedart::spawn_blocking(move || ran.fetch_add(1, Ordering::SeqCst))
        };
        queued.abort();
        release.send(()).unwrap();
        occupier.await.unwrap().unwrap();
        assert!(queued.await.unwrap_err().is_cancelled());
    });
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn shutdown_cancels_queued_closures_and_respects_the_timeout() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let long = rt
        .handle()
        .spawn_blocking(|| std::thread::sleep(Duration::from_millis(300)));
    let queued = rt.handle().spawn_blocking(|| 1);
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    rt.shutdown_timeout(Duration::from_millis(50));
    assert!(start.elapsed() < Duration::from_secs(5));
    let queued = futures::executor::block_on(queued);
    assert!(queued.unwrap_err().is_cancelled());
    // The running closure finishes on its own.
    assert!(futures::executor::block_on(long).is_ok());
}

#[test]
#[should_panic(expected = "outside a VedaRT runtime")]
fn spawn_blocking_outside_a_runtime_panics_with_advice() {
    drop(vedart::spawn_blocking(|| ()));
}
