//! Spawning: many tasks, from anywhere, on both flavours; fairness.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vedart::{Builder, Handle, Runtime};

mod support;
use support::wait_until;

fn multi(workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("runtime")
}

fn current() -> Runtime {
    Builder::new_current_thread().build().expect("runtime")
}

#[test]
fn hundred_thousand_tasks_all_complete() {
    let rt = multi(4);
    let count = Arc::new(AtomicUsize::new(0));
    let total = rt.block_on({
        let count = count.clone();
        async move {
            let handles: Vec<_> = (0..100_000u64)
                .map(|i| {
                    let count = count.clone();
                    vedart::spawn(async move {
                        count.fetch_add(1, Ordering::Relaxed);
                        i
                    })
                })
                .collect();
            let mut total = 0u64;
            for handle in handles {
                total += handle.await.expect("task");
            }
            total
        }
    });
    assert_eq!(count.load(Ordering::Relaxed), 100_000);
    assert_eq!(total, (0..100_000u64).sum::<u64>());
}

#[test]
fn hundred_thousand_tasks_spawned_from_inside_a_task() {
    // Spawned from a worker: exercises the LIFO slot, the local queue's
    // overflow into the injector, and stealing.
    let rt = multi(4);
    let done = rt.block_on(rt.spawn(async {
        let count = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..100_000)
            .map(|_| {
                let count = count.clone();
                vedart::spawn(async move {
                    count.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
        count.load(Ordering::Relaxed)
    }));
    assert_eq!(done.expect("spawner"), 100_000);
}

#[test]
fn current_thread_runs_many_tasks_on_the_caller() {
    let rt = current();
    let me = std::thread::current().id();
    let ok = rt.block_on(async move {
        let handles: Vec<_> = (0..10_000)
            .map(|_| vedart::spawn(async move { std::thread::current().id() == me }))
            .collect();
        let mut all = true;
        for handle in handles {
            all &= handle.await.expect("task");
        }
        all
    });
    assert!(ok);
}

#[test]
fn spawn_from_foreign_threads_through_handles() {
    let rt = multi(2);
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let handle = rt.handle();
            std::thread::spawn(move || {
                (0..1000u64)
                    .map(|i| handle.spawn(async move { t * 1000 + i }))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut sum = 0;
    for thread in threads {
        for task in thread.join().expect("spawner thread") {
            sum += rt.block_on(task).expect("task");
        }
    }
    assert_eq!(sum, (0..8000u64).sum::<u64>());
}

#[test]
fn handle_block_on_from_another_thread() {
    let rt = multi(2);
    let handle = rt.handle();
    let value =
        std::thread::spawn(move || handle.block_on(async { vedart::spawn(async { 3 }).await }))
            .join()
            .expect("thread");
    assert_eq!(value.expect("task"), 3);
}

/// `block_on` spins briefly before it sleeps: a value sent from another
/// thread before, during or after that spin (and a task's answer) is never
/// missed, with several threads blocking at once.
#[test]
fn block_on_from_many_threads_sees_every_wake_whenever_it_comes() {
    let rt = multi(2);
    let delays = [0u64, 5, 20, 45, 60, 200];
    let finished = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let handle = rt.handle();
            let finished = finished.clone();
            std::thread::spawn(move || {
                let mut sum = 0u64;
                for i in 0..300u64 {
                    let (tx, rx) = vedart::sync::oneshot::channel();
                    let delay = Duration::from_micros(delays[((t + i) % 6) as usize]);
                    let sender = std::thread::spawn(move || {
                        std::thread::sleep(delay);
                        let _ = tx.send(i);
                    });
                    sum += handle.block_on(rx).expect("sent");
                    sum += handle
                        .block_on(handle.spawn(async move { i }))
                        .expect("task");
                    sender.join().expect("sender");
                }
                finished.fetch_add(1, Ordering::SeqCst);
                sum
            })
        })
        .collect();
    // The watchdog: a lost wake-up fails here instead of hanging.
    wait_until("every blocking thread finished", || {
        finished.load(Ordering::SeqCst) == 4
    });
    for thread in threads {
        assert_eq!(thread.join().expect("thread"), 2 * (0..300u64).sum::<u64>());
    }
}

#[test]
fn current_thread_accepts_spawns_from_other_threads_while_blocked() {
    let rt = current();
    let handle = rt.handle();
    let (tx, rx) = futures::channel::oneshot::channel();
    let spawner = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        let task = handle.spawn(async { 11 });
        tx.send(task).expect("receiver alive");
    });
    let value = rt.block_on(async move { rx.await.expect("sender").await.expect("task") });
    spawner.join().expect("spawner");
    assert_eq!(value, 11);
}

#[test]
fn current_thread_runs_tasks_spawned_before_block_on() {
    let rt = current();
    let flag = Arc::new(AtomicBool::new(false));
    let task = rt.spawn({
        let flag = flag.clone();
        async move { flag.store(true, Ordering::SeqCst) }
    });
    assert!(
        !flag.load(Ordering::SeqCst),
        "nothing runs outside block_on"
    );
    rt.block_on(task).expect("task");
    assert!(flag.load(Ordering::SeqCst));
}

#[test]
fn workers_are_named_and_handle_current_works_inside_tasks() {
    let rt = multi(2);
    let (name, has_handle) = rt
        .block_on(rt.spawn(async {
            (
                std::thread::current().name().map(str::to_owned),
                Handle::try_current().is_some(),
            )
        }))
        .expect("task");
    let name = name.expect("named");
    assert!(name.starts_with("veda-worker-"), "{name}");
    assert!(has_handle);
    assert!(Handle::try_current().is_none(), "not inside a runtime here");
}

#[test]
fn free_block_on_runs_spawned_tasks_on_the_global_runtime() {
    let name = vedart::block_on(async {
        vedart::spawn(async { std::thread::current().name().map(str::to_owned) }).await
    });
    let name = name.expect("task").expect("named");
    assert!(name.starts_with("veda-worker-"), "{name}");
}

#[test]
#[should_panic(expected = "outside a VedaRT runtime")]
fn free_spawn_outside_a_runtime_panics_with_advice() {
    drop(vedart::spawn(async {}));
}

/// A task that yields forever must not starve the others on its worker, nor
/// tasks arriving through the injector.
fn yield_forever_does_not_starve(rt: &Runtime) {
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = rt.spawn({
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::Relaxed) {
                vedart::yield_now().await;
            }
        }
    });
    let start = Instant::now();
    // Spawned from outside: through the injector.
    let remote = rt.spawn(async { 1 });
    // Spawned from inside, next to the spinner.
    let local = rt.block_on(async { vedart::spawn(async { 2 }).await });
    assert_eq!(rt.block_on(remote).expect("remote"), 1);
    assert_eq!(local.expect("local"), 2);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "starved for {:?}",
        start.elapsed()
    );
    stop.store(true, Ordering::Relaxed);
    rt.block_on(spinner).expect("spinner");
}

#[test]
fn yield_forever_does_not_starve_one_worker() {
    yield_forever_does_not_starve(&multi(1));
}

#[test]
fn yield_forever_does_not_starve_current_thread() {
    yield_forever_does_not_starve(&current());
}

#[test]
fn two_tasks_waking_each_other_do_not_starve_a_third() {
    // Ping-pong through the LIFO slot on one worker: the LIFO cap must let the
    // queued task run.
    let rt = multi(1);
    let stop = Arc::new(AtomicBool::new(false));
    let (ping_tx, mut ping_rx) = futures::channel::mpsc::unbounded::<()>();
    let (pong_tx, mut pong_rx) = futures::channel::mpsc::unbounded::<()>();
    let ponger = rt.spawn(async move {
        use futures::StreamExt;
        while ping_rx.next().await.is_some() {
            if pong_tx.unbounded_send(()).is_err() {
                break;
            }
        }
    });
    let pinger = rt.spawn({
        let stop = stop.clone();
        async move {
            use futures::StreamExt;
            while !stop.load(Ordering::Relaxed) {
                ping_tx.unbounded_send(()).expect("ponger alive");
                pong_rx.next().await.expect("pong");
            }
        }
    });
    let start = Instant::now();
    let third = rt.block_on(async { vedart::spawn(async { 3 }).await });
    assert_eq!(third.expect("third"), 3);
    assert!(start.elapsed() < Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    rt.block_on(pinger).expect("pinger");
    rt.block_on(ponger).expect("ponger");
}

#[test]
fn chained_spawns_complete() {
    fn chain(n: usize, done: futures::channel::oneshot::Sender<()>) {
        if n == 0 {
            let _ = done.send(());
        } else {
            drop(vedart::spawn(async move { chain(n - 1, done) }));
        }
    }
    let rt = multi(4);
    let (tx, rx) = futures::channel::oneshot::channel();
    rt.block_on(async move {
        vedart::spawn(async move { chain(10_000, tx) })
            .await
            .expect("root");
        rx.await.expect("chain end");
    });
}
