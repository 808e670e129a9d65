//! Shutdown: cancellation of pending work, promptness, spawning afterwards.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vedart::{Builder, Runtime};

fn rt(workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("runtime")
}

/// Counts drops: shows that a task's future was dropped.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Spawns tasks in every state a task can be in at shutdown: waiting on
/// nothing, on a timer, on each other (a cycle no driver knows about), and
/// queued behind busy ones.
fn spawn_pending_tasks(rt: &Runtime, dropped: &Arc<AtomicUsize>) -> usize {
    let mut spawned = 0;
    for _ in 0..2000 {
        let guard = DropCount(dropped.clone());
        drop(rt.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        }));
        spawned += 1;
    }
    for _ in 0..2000 {
        let guard = DropCount(dropped.clone());
        drop(rt.spawn(async move {
            let _guard = guard;
            vedart::time::sleep(Duration::from_secs(3600)).await;
        }));
        spawned += 1;
    }
    for _ in 0..500 {
        let (tx_a, rx_a) = futures::channel::oneshot::channel::<()>();
        let (tx_b, rx_b) = futures::channel::oneshot::channel::<()>();
        let guard_a = DropCount(dropped.clone());
        let guard_b = DropCount(dropped.clone());
        drop(rt.spawn(async move {
            let _keep = (guard_a, tx_b);
            let _ = rx_a.await;
        }));
        drop(rt.spawn(async move {
            let _keep = (guard_b, tx_a);
            let _ = rx_b.await;
        }));
        spawned += 2;
    }
    spawned
}

#[test]
fn drop_with_thousands_of_pending_tasks_is_prompt_and_cancels_them() {
    let rt = rt(4);
    let dropped = Arc::new(AtomicUsize::new(0));
    let spawned = spawn_pending_tasks(&rt, &dropped);
    // Let them start waiting.
    rt.block_on(vedart::time::sleep(Duration::from_millis(50)));
    let start = Instant::now();
    drop(rt);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        start.elapsed()
    );
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        spawned,
        "every future was dropped"
    );
}

#[test]
fn drop_of_a_current_thread_runtime_cancels_its_tasks() {
    let rt = Builder::new_current_thread().build().expect("runtime");
    let dropped = Arc::new(AtomicUsize::new(0));
    let spawned = spawn_pending_tasks(&rt, &dropped);
    rt.block_on(vedart::time::sleep(Duration::from_millis(20)));
    drop(rt);
    assert_eq!(dropped.load(Ordering::SeqCst), spawned);
}

#[test]
fn join_handles_of_cancelled_tasks_resolve_to_cancelled() {
    let rt = rt(2);
    let handles: Vec<_> = (0..100)
        .map(|_| rt.spawn(std::future::pending::<()>()))
        .collect();
    drop(rt);
    for handle in handles {
        let err = futures::executor::block_on(handle).expect_err("cancelled");
        assert!(err.is_cancelled());
    }
}

#[test]
fn spawn_after_shutdown_resolves_to_cancelled_without_hanging() {
    let rt = rt(2);
    let handle = rt.handle();
    drop(rt);
    let dropped = Arc::new(AtomicUsize::new(0));
    let guard = DropCount(dropped.clone());
    let task = handle.spawn(async move {
        let _guard = guard;
        1
    });
    let err = futures::executor::block_on(task).expect_err("cancelled");
    assert!(err.is_cancelled());
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the future was dropped, not leaked"
    );
}

#[test]
fn shutdown_timeout_bounds_the_wait_for_a_stuck_task() {
    let rt = rt(2);
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    drop(rt.spawn(async move {
        started_tx.send(()).expect("test alive");
        // Blocks its worker: shutdown cannot interrupt a poll.
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
    }));
    started_rx.recv().expect("task started");
    let start = Instant::now();
    rt.shutdown_timeout(Duration::from_millis(100));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(100),
        "did not wait: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    release_tx.send(()).expect("worker still blocked");
}

#[test]
fn shutdown_background_does_not_wait() {
    let rt = rt(1);
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    drop(rt.spawn(async move {
        started_tx.send(()).expect("test alive");
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
    }));
    started_rx.recv().expect("task started");
    let start = Instant::now();
    rt.shutdown_background();
    assert!(start.elapsed() < Duration::from_secs(5));
    release_tx.send(()).expect("worker still blocked");
}

#[test]
fn every_worker_stops_and_is_joined_on_drop() {
    let stopped = Arc::new(AtomicUsize::new(0));
    let rt = Builder::new_multi_thread()
        .worker_threads(3)
        .on_thread_stop({
            let stopped = stopped.clone();
            move || {
                stopped.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .expect("runtime");
    rt.block_on(async {});
    drop(rt);
    // Drop returns only after joining: the callbacks have all run.
    assert_eq!(stopped.load(Ordering::SeqCst), 3);
}

#[test]
fn dropping_a_runtime_inside_its_own_task_does_not_deadlock() {
    let rt = rt(2);
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = rt.handle();
    let holder = Arc::new(std::sync::Mutex::new(Some(rt)));
    let task = handle.spawn({
        let holder = holder.clone();
        async move {
            let rt = holder.lock().expect("lock").take();
            drop(rt);
            tx.send(()).expect("test alive");
        }
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the runtime was dropped from its own task");
    drop(task);
}

#[test]
fn a_task_waiting_on_a_channel_is_dropped_and_releases_it() {
    let rt = rt(2);
    let dropped = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let guard = DropCount(dropped.clone());
    drop(rt.spawn(async move {
        let _guard = guard;
        let _ = rx.await;
    }));
    rt.block_on(vedart::time::sleep(Duration::from_millis(10)));
    drop(rt);
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    // The task is gone: waking its (dropped) receiver is a no-op.
    assert!(tx.send(()).is_err());
}

#[test]
fn a_task_that_first_waits_after_shutdown_is_cancelled() {
    // Running (blocked in its first poll) while the runtime shuts down, it is
    // in no queue and not yet registered as idle: its first `Pending` must
    // cancel it rather than leave it waiting forever.
    let rt = rt(1);
    let dropped = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
    let guard = DropCount(dropped.clone());
    let handle = rt.spawn(async move {
        let _guard = guard;
        started_tx.send(()).expect("test alive");
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
        std::future::pending::<()>().await;
    });
    started_rx.recv().expect("task started");
    rt.shutdown_timeout(Duration::from_millis(20));
    release_tx.send(()).expect("task still blocked");
    let err = futures::executor::block_on(handle).expect_err("cancelled");
    assert!(err.is_cancelled());
    let start = Instant::now();
    while dropped.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "future never dropped"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
