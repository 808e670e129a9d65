//! #[vedart::test] and #[vedart::main]: flavours, worker threads, and `seed`
//! running on the deterministic scheduler with virtual time.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vedart::sync::mpsc;
use vedart::time::{sleep, timeout};

#[vedart::test]
async fn the_default_test_runtime_runs_tasks_on_the_test_thread() {
    let test_thread = std::thread::current().id();
    let task_thread = vedart::spawn(async { std::thread::current().id() })
        .await
        .unwrap();
    assert_eq!(task_thread, test_thread);
    assert_eq!(vedart::Handle::current().seed(), None);
}

#[vedart::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_thread_test_runs_tasks_on_workers() {
    let name = vedart::spawn(async { std::thread::current().name().map(str::to_owned) })
        .await
        .unwrap();
    assert!(name.unwrap_or_default().starts_with("veda-worker"));
}

#[vedart::test(flavor = "current_thread")]
async fn a_test_may_return_a_result() -> Result<(), Box<dyn std::error::Error>> {
    let (tx, mut rx) = mpsc::channel(1);
    tx.send(5).await?;
    assert_eq!(rx.recv().await, Some(5));
    Ok(())
}

/// A workload of racing tasks and timers: what it records depends on the
/// interleaving and on (virtual) time.
async fn timeouts_everywhere() -> Vec<(u32, u64)> {
    let log = Arc::new(Mutex::new(Vec::new()));
    // The runtime's clock: virtual on a deterministic runtime.
    let now = || vedart::Handle::current().reactor().now();
    let started = now();
    let tasks: Vec<_> = (0..8u32)
        .map(|i| {
            let log = log.clone();
            vedart::spawn(async move {
                for round in 0..3u64 {
                    // Hours of retries and deadlines, all on virtual time.
                    let wait = Duration::from_secs(3600 * (1 + (u64::from(i) + round) % 3));
                    let never = std::future::pending::<()>();
                    assert!(timeout(wait, never).await.is_err());
                    vedart::yield_now().await;
                    let hours = (now() - started).as_secs() / 3600;
                    log.lock().unwrap().push((i, hours));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    sleep(Duration::from_secs(24 * 3600)).await;
    assert!(now() - started >= Duration::from_secs(24 * 3600));
    Arc::try_unwrap(log).unwrap().into_inner().unwrap()
}

#[vedart::test(seed = 42)]
async fn a_seeded_test_runs_virtual_hours_instantly_and_replays_exactly() {
    let real = Instant::now();
    let log = timeouts_everywhere().await;
    assert!(
        real.elapsed() < Duration::from_secs(10),
        "virtual hours took {:?} of real time",
        real.elapsed()
    );
    assert_eq!(log.len(), 24);
    assert_eq!(vedart::Handle::current().seed(), Some(42));
    let trace = vedart::Handle::current().schedule_trace();

    // The same seed, run again from scratch: the same order, times and trace.
    let (replayed_log, replayed_trace) = std::thread::spawn(|| {
        let rt = vedart::Builder::new_deterministic(42).build().unwrap();
        let log = rt.block_on(timeouts_everywhere());
        (log, rt.schedule_trace())
    })
    .join()
    .unwrap();
    assert_eq!(log, replayed_log);
    assert_eq!(trace, replayed_trace);
}

#[vedart::test(seed = 3)]
#[should_panic(expected = "deadline missed")]
async fn a_seeded_test_fails_like_any_test() {
    if timeout(Duration::from_secs(60), sleep(Duration::from_secs(120)))
        .await
        .is_err()
    {
        panic!("deadline missed");
    }
}
