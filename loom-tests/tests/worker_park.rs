//! The real worker loop: a task pushed from outside while the last worker goes
//! to sleep still runs, and shutdown wakes and stops every worker.
#![cfg(feature = "loom")]

use loom::sync::Arc;
use loom::thread;
use vedart::__loom::Runtime;

#[test]
fn a_task_pushed_while_the_only_worker_parks_runs() {
    loom::model(|| {
        let rt = Arc::new(Runtime::new(1));
        let worker = {
            let rt = rt.clone();
            thread::spawn(move || rt.run_worker(0))
        };
        let handle = rt.spawn(async { 7 });
        assert_eq!(loom::future::block_on(handle).expect("output"), 7);
        rt.begin_shutdown();
        worker.join().expect("worker");
        rt.finish_shutdown();
    });
}

#[test]
fn shutdown_stops_a_parked_worker() {
    loom::model(|| {
        let rt = Arc::new(Runtime::new(1));
        let worker = {
            let rt = rt.clone();
            thread::spawn(move || rt.run_worker(0))
        };
        rt.begin_shutdown();
        // A lost shutdown wake-up leaves the worker parked: a deadlock.
        worker.join().expect("worker");
        rt.finish_shutdown();
    });
}

#[test]
fn two_workers_run_tasks_pushed_while_they_park_and_steal() {
    loom::model(|| {
        let rt = Arc::new(Runtime::new(2));
        let workers: Vec<_> = (0..2)
            .map(|index| {
                let rt = rt.clone();
                thread::spawn(move || rt.run_worker(index))
            })
            .collect();
        let first = rt.spawn(async { 1 });
        let second = rt.spawn(async { 2 });
        let sum = loom::future::block_on(async move {
            first.await.expect("first") + second.await.expect("second")
        });
        assert_eq!(sum, 3);
        rt.begin_shutdown();
        for worker in workers {
            worker.join().expect("worker");
        }
        rt.finish_shutdown();
    });
}

#[test]
fn a_task_spawned_from_a_worker_runs() {
    // The local path: spawned on a worker, it goes to that worker's LIFO
    // slot; the other worker may be parked or searching meanwhile.
    loom::model(|| {
        let rt = Arc::new(Runtime::new(2));
        let workers: Vec<_> = (0..2)
            .map(|index| {
                let rt = rt.clone();
                thread::spawn(move || rt.run_worker(index))
            })
            .collect();
        let handle = rt.handle();
        let outer = rt.spawn(async move { handle.spawn(async { 5 }).await });
        let value = loom::future::block_on(outer)
            .expect("outer")
            .expect("inner");
        assert_eq!(value, 5);
        rt.begin_shutdown();
        for worker in workers {
            worker.join().expect("worker");
        }
        rt.finish_shutdown();
    });
}
