//! Process-wide telemetry of the executors: process-pool calls, children,
//! respawns and bytes; blocking jobs and their histograms; GPU operations.
//!
//! Telemetry is process-wide, so the tests here take `LOCK` and compare two
//! snapshots.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::sync::{Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use vedart_executors::blocking::BlockingPool;
use vedart_executors::process::ProcessPool;
use vedart_executors::telemetry::{self, ExecutorKind, TaskCounts};

const WORKER: &str = env!("CARGO_BIN_EXE_vedart-test-worker");

static LOCK: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    telemetry::set_enabled(true);
    guard
}

fn delta(before: TaskCounts, after: TaskCounts) -> TaskCounts {
    TaskCounts::new(
        after.spawned - before.spawned,
        after.completed - before.completed,
        after.failed - before.failed,
        after.cancelled - before.cancelled,
    )
}

/// Polls `condition` every 5 ms for up to 10 s.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}

#[test]
fn process_pool_calls_children_and_bytes_are_counted() {
    let _guard = exclusive();
    let before = telemetry::snapshot();
    let pool = ProcessPool::builder(WORKER)
        .workers(2)
        .grace_period(Duration::from_millis(200))
        .build()
        .expect("the test worker starts");
    block_on(async {
        for i in 0..5 {
            let answer = pool.call(format!("echo {i}").into_bytes()).await;
            assert_eq!(answer.expect("echo"), i.to_string().into_bytes());
        }
        assert!(pool.call(b"error nope".to_vec()).await.is_err());
        // A call dropped before it was ever polled counts as cancelled.
        drop(pool.call(b"echo never".to_vec()));
    });
    let during = telemetry::snapshot();
    assert_eq!(
        delta(before.process_tasks(), during.process_tasks()),
        TaskCounts::new(7, 5, 1, 1)
    );
    let (old, now) = (before.process_pools(), during.process_pools());
    assert_eq!(now.pools, old.pools + 1);
    assert_eq!(now.children, old.children + 2);
    assert_eq!(now.spawned, old.spawned + 2);
    assert!(now.bytes_sent > old.bytes_sent);
    assert!(now.bytes_received > old.bytes_received);

    // A child that dies is replaced: a respawn.
    assert!(block_on(pool.call(b"exit 3".to_vec())).is_err());
    assert!(eventually(|| telemetry::snapshot()
        .process_pools()
        .respawns
        > old.respawns));

    block_on(pool.shutdown());
    drop(pool);
    // The pool goes (once its driver tasks have finished); its totals stay.
    assert!(eventually(|| {
        let pools = telemetry::snapshot().process_pools();
        pools.pools == old.pools && pools.children == old.children
    }));
    let after = telemetry::snapshot().process_pools();
    assert!(after.spawned > now.spawned);
    assert!(after.bytes_received >= now.bytes_received);
}

#[test]
fn blocking_jobs_and_histograms() {
    let _guard = exclusive();
    let before = telemetry::snapshot();
    let pool = BlockingPool::builder()
        .max_workers(2)
        .build()
        .expect("pool");
    let (tx, rx) = mpsc::channel();
    for i in 0..10u64 {
        let tx = tx.clone();
        pool.execute(move || {
            std::thread::sleep(Duration::from_millis(2));
            if i == 9 {
                // A job that catches its own failure and says so.
                telemetry::report_job_failed();
            }
            tx.send(i).expect("receiver");
        })
        .expect("running pool");
    }
    pool.execute(|| panic!("expected telemetry test panic"))
        .expect("running pool");
    drop(tx);
    assert_eq!(rx.iter().count(), 10);
    assert!(pool.shutdown(None));
    let after = telemetry::snapshot();
    assert_eq!(
        delta(before.blocking_tasks(), after.blocking_tasks()),
        TaskCounts::new(11, 9, 2, 0)
    );
    assert_eq!(after.tasks(ExecutorKind::Blocking), after.blocking_tasks());
    let run = after.blocking_run_time();
    assert!(run.count() >= before.blocking_run_time().count() + 11);
    assert!(run.max() >= Duration::from_millis(2));
    assert!(run.p99() >= run.p50() && run.p50() > Duration::ZERO);
    assert!(after.blocking_queue_wait().count() >= before.blocking_queue_wait().count() + 11);
}

#[test]
fn jobs_dropped_at_shutdown_are_cancelled() {
    let _guard = exclusive();
    let before = telemetry::snapshot().blocking_tasks();
    let pool = BlockingPool::builder()
        .max_workers(1)
        .build()
        .expect("pool");
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    pool.execute(move || {
        started_tx.send(()).expect("test alive");
        let _ = release_rx.recv();
    })
    .expect("running pool");
    started_rx.recv().expect("job started");
    // Queued behind the running job, and dropped by the shutdown.
    for _ in 0..3 {
        pool.execute(|| {}).expect("running pool");
    }
    let stopper = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.shutdown(None))
    };
    assert!(eventually(|| telemetry::snapshot()
        .blocking_tasks()
        .cancelled
        >= before.cancelled + 3));
    drop(release_tx);
    assert!(stopper.join().expect("shutdown thread"));
    let counts = delta(before, telemetry::snapshot().blocking_tasks());
    assert_eq!(counts, TaskCounts::new(4, 1, 0, 3));
}

#[test]
fn gpu_operations_are_counted_when_a_device_exists() {
    let _guard = exclusive();
    let before = telemetry::snapshot().gpu_tasks();
    if !vedart_executors::gpu::is_available() {
        // No GPU: nothing may have been counted.
        assert_eq!(telemetry::snapshot().gpu_tasks(), before);
        return;
    }
    let device = vedart_executors::gpu::Device::open(0).expect("device");
    let stream = device.stream().expect("stream");
    let synchronized = stream.synchronize_async().expect("queued");
    block_on(synchronized).expect("stream reached the point");
    let counts = delta(before, telemetry::snapshot().gpu_tasks());
    assert_eq!(counts.spawned, 1);
    assert_eq!(counts.completed, 1);
}
