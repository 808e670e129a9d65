//! Telemetry: counters move as tasks run, histograms give real percentiles,
//! the switch freezes counting, spans are recorded and drained, gauges follow
//! runtimes and pools.
//!
//! Telemetry is process-wide, so every test here takes `LOCK` and measures
//! differences between two snapshots.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vedart::telemetry::{self, ExecutorKind, MetricKind, Snapshot, TaskCounts};
use vedart::{Builder, Runtime};

static LOCK: Mutex<()> = Mutex::new(());

/// Serializes the tests, and leaves telemetry on and spans off whatever a
/// test did (even if it panicked).
struct Exclusive(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Drop for Exclusive {
    fn drop(&mut self) {
        telemetry::set_enabled(true);
        telemetry::stop_spans();
        let _ = telemetry::take_spans();
    }
}

fn exclusive() -> Exclusive {
    let guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    quiet_expected_panics();
    telemetry::set_enabled(true);
    Exclusive(guard)
}

/// Keeps the panics these tests cause on purpose out of the output.
fn quiet_expected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let expected = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|message| message.starts_with("expected telemetry test panic"));
            if !expected {
                default(info);
            }
        }));
    });
}

/// Waits until `rt`'s blocking pool has finished `jobs` jobs in all. A pool
/// counts a job when the job returns, which is after the job's task has
/// handed its result to whoever awaits it.
fn settle_blocking(rt: &Runtime, jobs: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while rt.handle().blocking_pool().stats().jobs_completed < jobs {
        assert!(Instant::now() < deadline, "blocking jobs did not finish");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn multi_thread(workers: usize) -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("runtime")
}

fn delta(before: TaskCounts, after: TaskCounts) -> TaskCounts {
    TaskCounts::new(
        after.spawned - before.spawned,
        after.completed - before.completed,
        after.failed - before.failed,
        after.cancelled - before.cancelled,
    )
}

/// 100 tasks that complete, 10 that panic, 5 aborted while pending.
fn mixed_workload(rt: &Runtime) {
    rt.block_on(async {
        let ok: Vec<_> = (0..100u64)
            .map(|i| vedart::spawn(async move { i }))
            .collect();
        let panics: Vec<_> = (0..10)
            .map(|_| vedart::spawn(async { panic!("expected telemetry test panic") }))
            .collect();
        let pending: Vec<_> = (0..5)
            .map(|_| vedart::spawn(std::future::pending::<()>()))
            .collect();
        for task in ok {
            task.await.expect("task");
        }
        for task in panics {
            assert!(task.await.expect_err("panicked").is_panic());
        }
        for task in &pending {
            task.abort();
        }
        for task in pending {
            assert!(task.await.expect_err("aborted").is_cancelled());
        }
    });
}

#[test]
fn async_task_counters_count_each_ending_once() {
    let _exclusive = exclusive();
    for rt in [
        multi_thread(2),
        Builder::new_current_thread().build().expect("runtime"),
        Builder::new_deterministic(1).build().expect("runtime"),
    ] {
        let before = telemetry::snapshot().async_tasks();
        mixed_workload(&rt);
        let after = telemetry::snapshot().async_tasks();
        assert_eq!(
            delta(before, after),
            TaskCounts::new(115, 100, 10, 5),
            "{rt:?}"
        );
    }
}

#[test]
fn tasks_dropped_by_shutdown_count_as_cancelled() {
    let _exclusive = exclusive();
    let before = telemetry::snapshot().async_tasks();
    let rt = Builder::new_current_thread().build().expect("runtime");
    // Never run: queued when the runtime is dropped.
    let handles: Vec<_> = (0..7).map(|_| rt.spawn(async {})).collect();
    drop(rt);
    drop(handles);
    let counts = delta(before, telemetry::snapshot().async_tasks());
    assert_eq!(counts, TaskCounts::new(7, 0, 0, 7));
    assert_eq!(counts.live(), 0);
}

#[test]
fn histograms_give_real_percentiles_after_work() {
    let _exclusive = exclusive();
    let rt = multi_thread(2);
    rt.block_on(async {
        let tasks: Vec<_> = (0..2000u64)
            .map(|i| {
                vedart::spawn(async move {
                    vedart::yield_now().await;
                    (0..100).fold(i, |acc, x| acc.wrapping_mul(31).wrapping_add(x))
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let blocking: Vec<_> = (0..20)
            .map(|_| vedart::spawn_blocking(|| std::thread::sleep(Duration::from_millis(2))))
            .collect();
        for task in blocking {
            task.await.expect("blocking");
        }
    });
    settle_blocking(&rt, 20);
    let snapshot = telemetry::snapshot();
    // Each task yielded once on a worker: a wake-up the worker queued.
    assert!(
        snapshot.scheduler().schedules >= 2000,
        "{:?}",
        snapshot.scheduler()
    );
    for (name, histogram) in [
        ("run time", snapshot.run_time()),
        ("queue wait", snapshot.queue_wait()),
        ("blocking run time", snapshot.blocking_run_time()),
        ("blocking queue wait", snapshot.blocking_queue_wait()),
    ] {
        assert!(histogram.count() > 0, "{name}: {histogram:?}");
        let (p50, p95, p99) = (histogram.p50(), histogram.p95(), histogram.p99());
        assert!(p50 > Duration::ZERO, "{name}: {histogram:?}");
        assert!(p50 <= p95 && p95 <= p99 && p99 <= histogram.max(), "{name}");
        assert!(histogram.min() <= p50, "{name}");
    }
    // 4000 polls on 2 workers: each times its first SAMPLE_INTERVAL.
    assert!(
        snapshot.run_time().count() >= 1000,
        "{:?}",
        snapshot.run_time()
    );
    assert!(snapshot.blocking_run_time().count() >= 20);
    assert!(snapshot.blocking_run_time().max() >= Duration::from_millis(2));
}

#[test]
fn switching_off_freezes_counters_and_histograms() {
    let _exclusive = exclusive();
    let rt = multi_thread(2);
    telemetry::set_enabled(false);
    assert!(!telemetry::is_enabled());
    let before = telemetry::snapshot();
    assert!(!before.is_enabled());
    mixed_workload(&rt);
    rt.block_on(async { vedart::spawn_blocking(|| 1).await.expect("blocking") });
    settle_blocking(&rt, 1);
    telemetry::record_gpu_fallback();
    let off = telemetry::snapshot();
    assert_eq!(off.async_tasks(), before.async_tasks());
    assert_eq!(off.blocking_tasks(), before.blocking_tasks());
    assert_eq!(off.run_time(), before.run_time());
    assert_eq!(off.scheduler().polls, before.scheduler().polls);
    assert_eq!(off.gpu_fallbacks(), before.gpu_fallbacks());

    telemetry::set_enabled(true);
    mixed_workload(&rt);
    rt.block_on(async { vedart::spawn_blocking(|| 1).await.expect("blocking") });
    settle_blocking(&rt, 2);
    telemetry::record_gpu_fallback();
    let on = telemetry::snapshot();
    assert!(on.is_enabled());
    assert_eq!(delta(off.async_tasks(), on.async_tasks()).spawned, 115);
    assert_eq!(
        delta(off.blocking_tasks(), on.blocking_tasks()).completed,
        1
    );
    assert!(on.scheduler().polls > off.scheduler().polls);
    assert_eq!(on.gpu_fallbacks(), off.gpu_fallbacks() + 1);
}

#[test]
fn spans_are_recorded_drained_and_bounded() {
    let _exclusive = exclusive();
    let rt = multi_thread(2);
    let _ = telemetry::take_spans();
    let started = Instant::now();
    telemetry::start_spans(telemetry::DEFAULT_SPAN_CAPACITY);
    assert!(telemetry::is_tracing());
    let ids = rt.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|_| vedart::spawn(vedart::yield_now()))
            .collect();
        let ids: Vec<_> = tasks.iter().map(vedart::JoinHandle::id).collect();
        for task in tasks {
            task.await.expect("task");
        }
        vedart::spawn_blocking(|| std::thread::sleep(Duration::from_millis(1)))
            .await
            .expect("blocking");
        ids
    });
    settle_blocking(&rt, 1);
    telemetry::stop_spans();
    // Stopped: nothing more is recorded.
    rt.block_on(async { vedart::spawn(async {}).await.expect("task") });
    let spans = telemetry::take_spans();
    let epoch_start = telemetry::since_epoch(started);
    for span in &spans {
        assert!(span.start <= span.end, "{span:?}");
        assert!(span.start >= epoch_start, "{span:?}");
    }
    // Each task was polled twice (one yield), on a worker thread.
    for id in ids {
        let polls: Vec<_> = spans
            .iter()
            .filter(|span| span.kind == ExecutorKind::Async && span.task == id.as_u64())
            .collect();
        assert_eq!(polls.len(), 2, "task {id}");
        assert!(
            polls
                .iter()
                .all(|span| span.thread_name.starts_with("veda-worker-"))
        );
    }
    let blocking: Vec<_> = spans
        .iter()
        .filter(|span| span.kind == ExecutorKind::Blocking)
        .collect();
    assert_eq!(blocking.len(), 1, "{blocking:?}");
    assert!(blocking[0].thread_name.starts_with("veda-blocking-"));
    assert!(blocking[0].duration() >= Duration::from_millis(1));
    assert!(spans.windows(2).all(|pair| pair[0].start <= pair[1].start));
    assert!(telemetry::take_spans().is_empty());

    // A full buffer drops spans and says so.
    telemetry::start_spans(10);
    rt.block_on(async {
        for _ in 0..100 {
            vedart::spawn(async {}).await.expect("task");
        }
    });
    telemetry::stop_spans();
    assert!(
        telemetry::spans_dropped() >= 85,
        "{} dropped",
        telemetry::spans_dropped()
    );
    assert_eq!(
        telemetry::snapshot().spans_dropped(),
        telemetry::spans_dropped()
    );
    assert_eq!(telemetry::take_spans().len(), 10);
}

#[test]
fn scheduler_gauges_follow_runtimes_and_queues() {
    let _exclusive = exclusive();
    let before = telemetry::snapshot().scheduler();
    let rt = multi_thread(2);
    let idle = Builder::new_current_thread().build().expect("runtime");
    // Queued on a runtime nobody drives: they wait in its injector.
    let queued: Vec<_> = (0..25).map(|_| idle.spawn(async {})).collect();
    // Let the workers settle into sleep.
    let deadline = Instant::now() + Duration::from_secs(5);
    while telemetry::snapshot().scheduler().parks < before.parks + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let during = telemetry::snapshot().scheduler();
    assert_eq!(during.runtimes, before.runtimes + 2);
    assert_eq!(during.workers, before.workers + 3);
    assert_eq!(during.threads, before.threads + 2);
    assert!(during.active_workers <= during.threads);
    assert_eq!(during.injector_depth, before.injector_depth + 25);
    assert_eq!(during.queue_depth(), before.queue_depth() + 25);
    assert!(during.parks >= before.parks + 2, "{during:?}");

    idle.block_on(async {
        for task in queued {
            task.await.expect("task");
        }
    });
    drop(idle);
    drop(rt);
    let after = telemetry::snapshot().scheduler();
    assert_eq!(after.runtimes, before.runtimes);
    assert_eq!(after.threads, before.threads);
    assert_eq!(after.injector_depth, before.injector_depth);
    // Counters of dropped runtimes are kept.
    assert!(after.polls >= during.polls + 25);
}

#[test]
fn blocking_pool_gauges_and_counters() {
    let _exclusive = exclusive();
    let before = telemetry::snapshot();
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .min_blocking_threads(1)
        .max_blocking_threads(3)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tasks: Vec<_> = (0..6)
            .map(|_| vedart::spawn_blocking(|| std::thread::sleep(Duration::from_millis(5))))
            .collect();
        let failing = vedart::spawn_blocking(|| panic!("expected telemetry test panic (blocking)"));
        for task in tasks {
            task.await.expect("blocking");
        }
        assert!(failing.await.expect_err("panicked").is_panic());
    });
    settle_blocking(&rt, 7);
    let during = telemetry::snapshot();
    let pools = during.blocking_pools();
    let old = before.blocking_pools();
    assert_eq!(pools.pools, old.pools + 1);
    assert_eq!(pools.min_workers, old.min_workers + 1);
    assert_eq!(pools.max_workers, old.max_workers + 3);
    assert!(pools.peak_threads > old.peak_threads);
    assert!(pools.peak_threads <= old.peak_threads + 3);
    assert!(pools.threads <= old.threads + 3);
    let counts = delta(before.blocking_tasks(), during.blocking_tasks());
    assert_eq!(counts, TaskCounts::new(7, 6, 1, 0));
    drop(rt);
    assert_eq!(telemetry::snapshot().blocking_pools().pools, old.pools);
}

#[test]
fn metrics_are_a_flat_consistent_list() {
    let _exclusive = exclusive();
    let rt = multi_thread(1);
    mixed_workload(&rt);
    let snapshot: Snapshot = telemetry::snapshot();
    let metrics = snapshot.metrics();
    let mut seen = HashSet::new();
    for metric in &metrics {
        assert!(metric.name.starts_with("vedart_"), "{metric:?}");
        assert!(!metric.help.is_empty());
        assert_eq!(
            metric.name.ends_with("_total"),
            metric.kind == MetricKind::Counter,
            "{metric:?}"
        );
        assert!(
            seen.insert((metric.name, metric.executor)),
            "duplicate {metric:?}"
        );
    }
    let value = |name: &str, executor: Option<ExecutorKind>| {
        metrics
            .iter()
            .find(|m| m.name == name && m.executor == executor)
            .map(|m| m.value)
    };
    assert_eq!(
        value("vedart_tasks_spawned_total", Some(ExecutorKind::Async)),
        Some(snapshot.async_tasks().spawned)
    );
    assert_eq!(
        value("vedart_tasks_failed_total", Some(ExecutorKind::Async)),
        Some(snapshot.async_tasks().failed)
    );
    assert_eq!(
        value("vedart_gpu_fallbacks_total", Some(ExecutorKind::Gpu)),
        Some(snapshot.gpu_fallbacks())
    );
    for kind in ExecutorKind::ALL {
        assert!(value("vedart_tasks_cancelled_total", Some(kind)).is_some());
    }
    let histograms = snapshot.histograms();
    assert_eq!(histograms.len(), 4);
    assert!(histograms.iter().any(|h| h.histogram.count() > 0));
    let debug = format!("{snapshot:?}");
    assert!(debug.contains("async_tasks") && debug.contains("p99"));
}

#[test]
fn gpu_fallbacks_are_counted() {
    let _exclusive = exclusive();
    let before = telemetry::snapshot().gpu_fallbacks();
    for _ in 0..3 {
        telemetry::record_gpu_fallback();
    }
    assert_eq!(telemetry::snapshot().gpu_fallbacks(), before + 3);
}
