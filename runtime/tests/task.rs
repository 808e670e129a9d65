//! vedart::task: JoinSet ordering, abort and drop; LocalSet / spawn_local for
//! `!Send` futures.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use vedart::Builder;
use vedart::task::{JoinSet, LocalSet, spawn_local};
use vedart::time::{sleep, timeout};

mod support;
use support::{DropFlag, rt, wait_until};

#[test]
fn join_next_returns_results_in_completion_order_then_none() {
    let rt = rt();
    rt.block_on(async {
        let mut set = JoinSet::new();
        for delay in [60u64, 0, 30] {
            set.spawn(async move {
                sleep(Duration::from_millis(delay)).await;
                delay
            });
        }
        assert_eq!(set.len(), 3);
        let mut order = Vec::new();
        while let Some(result) = timeout(Duration::from_secs(10), set.join_next())
            .await
            .expect("watchdog")
        {
            order.push(result.expect("task"));
        }
        assert_eq!(order, [0, 30, 60]);
        assert!(set.is_empty());
        assert!(set.join_next().await.is_none());
    });
}

#[test]
fn many_tasks_from_a_join_set_all_come_back_once() {
    let rt = rt();
    let sum = rt.block_on(async {
        let mut set: JoinSet<u64> = (0..1_000u64)
            .map(|i| async move {
                vedart::task::yield_now().await;
                i
            })
            .collect();
        set.spawn_blocking(|| 1_000);
        let mut sum = 0;
        while let Some(result) = set.join_next().await {
            sum += result.expect("task");
        }
        sum
    });
    assert_eq!(sum, (0..=1_000).sum::<u64>());
}

#[test]
fn abort_all_cancels_every_task_and_their_errors_come_out() {
    let rt = rt();
    rt.block_on(async {
        let mut set = JoinSet::new();
        set.spawn(async { 1 });
        sleep(Duration::from_millis(20)).await; // the quick one finishes
        for _ in 0..5 {
            set.spawn(std::future::pending::<i32>());
        }
        set.abort_all();
        let (mut values, mut cancelled) = (Vec::new(), 0);
        while let Some(result) = timeout(Duration::from_secs(10), set.join_next())
            .await
            .expect("watchdog: an aborted task never resolved")
        {
            match result {
                Ok(v) => values.push(v),
                Err(e) => {
                    assert!(e.is_cancelled());
                    cancelled += 1;
                }
            }
        }
        assert_eq!((values, cancelled), (vec![1], 5));
    });
}

#[test]
fn one_abort_handle_cancels_only_its_task() {
    let rt = rt();
    rt.block_on(async {
        let mut set = JoinSet::new();
        let doomed = set.spawn(std::future::pending::<&str>());
        set.spawn(async { "kept" });
        doomed.abort();
        let mut results = Vec::new();
        while let Some(result) = set.join_next().await {
            results.push(result.map_err(|e| e.is_cancelled()));
        }
        results.sort();
        assert_eq!(results, [Ok("kept"), Err(true)]);
    });
}

#[test]
fn dropping_a_join_set_aborts_its_tasks() {
    let rt = rt();
    let dropped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let mut set = JoinSet::new();
        let flag = DropFlag(dropped.clone());
        let in_task = started.clone();
        set.spawn(async move {
            let _flag = flag;
            in_task.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await
        });
        while started.load(Ordering::SeqCst) == 0 {
            sleep(Duration::from_millis(1)).await;
        }
        drop(set);
    });
    wait_until("the dropped set's task is cancelled", || {
        dropped.load(Ordering::SeqCst)
    });
}

#[test]
fn shutdown_waits_until_every_task_stopped() {
    let rt = rt();
    rt.block_on(async {
        let dropped = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        let flag = DropFlag(dropped.clone());
        set.spawn(async move {
            let _flag = flag;
            std::future::pending::<()>().await
        });
        timeout(Duration::from_secs(10), set.shutdown())
            .await
            .expect("watchdog");
        assert!(set.is_empty());
        assert!(dropped.load(Ordering::SeqCst));
    });
}

#[test]
fn spawn_local_runs_not_send_futures_on_the_driving_thread() {
    let rt = rt();
    let local = LocalSet::new();
    let driver = std::thread::current().id();
    let (total, threads) = local.block_on(&rt, async move {
        let total = Rc::new(RefCell::new(0));
        let same_thread = Rc::new(Cell::new(true));
        let tasks: Vec<_> = (1..=100)
            .map(|i| {
                let (total, same_thread) = (total.clone(), same_thread.clone());
                spawn_local(async move {
                    sleep(Duration::from_millis(1)).await; // woken from the reactor
                    same_thread.set(same_thread.get() && std::thread::current().id() == driver);
                    *total.borrow_mut() += i;
                    // A local task can spawn more local tasks.
                    spawn_local(async { 0 }).await.expect("nested")
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("local task"), 0);
        }
        let total = *total.borrow();
        (total, same_thread.get())
    });
    assert_eq!(total, 5050);
    assert!(threads, "a local task ran on another thread");
}

#[test]
fn a_panicking_local_task_is_a_join_error_and_abort_cancels() {
    let rt = Builder::new_current_thread().build().expect("runtime");
    let local = LocalSet::new();
    local.block_on(&rt, async {
        let err = spawn_local(async { panic!("local boom") })
            .await
            .expect_err("panicked");
        assert_eq!(err.panic_message(), Some("local boom"));

        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let task = spawn_local(async move {
            let _flag = flag;
            std::future::pending::<()>().await
        });
        vedart::yield_now().await;
        task.abort();
        // The set drops the future the next time it runs its queue.
        for _ in 0..100 {
            if dropped.load(Ordering::SeqCst) {
                break;
            }
            vedart::yield_now().await;
        }
        assert!(dropped.load(Ordering::SeqCst));
    });
}

#[test]
fn dropping_a_local_set_cancels_its_tasks() {
    let rt = Builder::new_current_thread().build().expect("runtime");
    let dropped = Arc::new(AtomicBool::new(false));
    let local = LocalSet::new();
    let flag = DropFlag(dropped.clone());
    let task = local.spawn_local(async move {
        let _flag = flag;
        std::future::pending::<()>().await
    });
    local.block_on(&rt, vedart::yield_now());
    drop(local);
    assert!(dropped.load(Ordering::SeqCst));
    let err = rt.block_on(task).expect_err("cancelled");
    assert!(err.is_cancelled());
}

#[test]
#[should_panic(expected = "spawn_local called outside a LocalSet")]
fn spawn_local_outside_a_local_set_panics_with_a_clear_message() {
    let rt = Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        drop(spawn_local(async {}));
    });
}
