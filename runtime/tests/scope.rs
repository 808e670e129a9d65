//! Structured concurrency: waiting, cancellation, failure propagation.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vedart::{Builder, Runtime};

fn rt() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(3)
        .build()
        .expect("runtime")
}

/// Counts drops: shows that a child's future was dropped (cancelled).
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn scope_waits_for_every_child_even_unawaited_ones() {
    let rt = rt();
    let finished = Arc::new(AtomicUsize::new(0));
    let body_output = rt.block_on(vedart::scope(|s| {
        let finished = finished.clone();
        async move {
            for i in 0..50u64 {
                let finished = finished.clone();
                drop(s.spawn(async move {
                    vedart::time::sleep(Duration::from_millis(i % 10)).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                }));
            }
            "body done"
        }
    }));
    assert_eq!(body_output, "body done");
    assert_eq!(
        finished.load(Ordering::SeqCst),
        50,
        "scope returned before its children"
    );
}

#[test]
fn children_can_spawn_grandchildren_through_a_cloned_scope() {
    let rt = rt();
    let finished = Arc::new(AtomicUsize::new(0));
    rt.block_on(vedart::scope(|s| {
        let finished = finished.clone();
        async move {
            for _ in 0..5 {
                let inner = s.clone();
                let finished = finished.clone();
                drop(s.spawn(async move {
                    for _ in 0..5 {
                        let finished = finished.clone();
                        drop(inner.spawn(async move {
                            vedart::time::sleep(Duration::from_millis(2)).await;
                            finished.fetch_add(1, Ordering::SeqCst);
                        }));
                    }
                }));
            }
        }
    }));
    assert_eq!(finished.load(Ordering::SeqCst), 25);
}

#[test]
fn child_handles_yield_values() {
    let rt = rt();
    let sum = rt.block_on(vedart::scope(|s| async move {
        let handles: Vec<_> = (1..=10u32).map(|i| s.spawn(async move { i * 2 })).collect();
        let mut sum = 0;
        for handle in handles {
            sum += handle.await.expect("child completed");
        }
        sum
    }));
    assert_eq!(sum, 110);
}

#[test]
fn a_child_panic_cancels_siblings_and_is_resumed_in_the_parent() {
    let rt = rt();
    let dropped = Arc::new(AtomicUsize::new(0));
    let body_cancelled = Arc::new(AtomicBool::new(true));
    let start = Instant::now();
    let result = rt.block_on(rt.spawn({
        let dropped = dropped.clone();
        let body_cancelled = body_cancelled.clone();
        async move {
            vedart::scope(|s| async move {
                for _ in 0..10 {
                    let guard = DropCount(dropped.clone());
                    drop(s.spawn(async move {
                        let _guard = guard;
                        std::future::pending::<()>().await;
                    }));
                }
                drop(s.spawn(async {
                    vedart::time::sleep(Duration::from_millis(5)).await;
                    panic!("child failed");
                }));
                // The body waits forever too: the failure must cancel it.
                std::future::pending::<()>().await;
                body_cancelled.store(false, Ordering::SeqCst);
            })
            .await
        }
    }));
    let err = result.expect_err("the scope re-raised the child's panic");
    assert_eq!(err.panic_message(), Some("child failed"));
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        10,
        "every sibling was cancelled"
    );
    assert!(body_cancelled.load(Ordering::SeqCst));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn the_first_err_from_spawn_try_cancels_siblings_and_is_returned() {
    let rt = rt();
    let dropped = Arc::new(AtomicUsize::new(0));
    let result: Result<&str, String> = rt.block_on(vedart::try_scope(|s| {
        let dropped = dropped.clone();
        async move {
            for _ in 0..10 {
                let guard = DropCount(dropped.clone());
                drop(s.spawn_try(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                    Ok(())
                }));
            }
            let failing = s.spawn_try(async {
                vedart::time::sleep(Duration::from_millis(5)).await;
                Err::<u8, _>("bad input".to_string())
            });
            // The failing child's own handle gives no value.
            assert_eq!(failing.await, None);
            Ok("unreachable: the failure cancels the body")
        }
    }));
    assert_eq!(result, Err("bad input".to_string()));
    assert_eq!(dropped.load(Ordering::SeqCst), 10);
}

#[test]
fn ok_children_of_spawn_try_do_not_fail_the_scope() {
    let rt = rt();
    let result: Result<u32, String> = rt.block_on(vedart::try_scope(|s| async move {
        let a = s.spawn_try(async { Ok::<_, String>(1) });
        let b = s.spawn_try(async { Ok::<_, String>(2) });
        Ok(a.await.expect("a") + b.await.expect("b"))
    }));
    assert_eq!(result, Ok(3));
}

#[test]
fn a_body_err_cancels_children() {
    let rt = rt();
    let dropped = Arc::new(AtomicUsize::new(0));
    let result: Result<(), &str> = rt.block_on(vedart::try_scope(|s| {
        let dropped = dropped.clone();
        async move {
            let guard = DropCount(dropped.clone());
            drop(s.spawn(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            }));
            Err("body gave up")
        }
    }));
    assert_eq!(result, Err("body gave up"));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn a_body_panic_waits_for_children_then_resumes() {
    let rt = rt();
    let finished = Arc::new(AtomicBool::new(false));
    let result = rt.block_on(rt.spawn({
        let finished = finished.clone();
        async move {
            vedart::scope(|s| async move {
                // This child ignores cancellation until its poll ends: the
                // scope must still wait for it to be dropped.
                drop(s.spawn(async move {
                    std::thread::sleep(Duration::from_millis(30));
                    finished.store(true, Ordering::SeqCst);
                }));
                vedart::time::sleep(Duration::from_millis(5)).await;
                panic!("body failed");
            })
            .await
        }
    }));
    assert_eq!(
        result.expect_err("panicked").panic_message(),
        Some("body failed")
    );
    assert!(
        finished.load(Ordering::SeqCst),
        "the scope re-raised before its running child finished"
    );
}

#[test]
fn only_the_first_failure_is_reported_after_every_child_is_gone() {
    let rt = rt();
    let dropped = Arc::new(AtomicUsize::new(0));
    let result: Result<(), u32> = rt.block_on(vedart::try_scope(|s| {
        let dropped = dropped.clone();
        async move {
            for i in 0..20u32 {
                let guard = DropCount(dropped.clone());
                drop(s.spawn_try(async move {
                    let _guard = guard;
                    vedart::time::sleep(Duration::from_millis(u64::from(i))).await;
                    Err::<(), _>(i)
                }));
            }
            Ok(())
        }
    }));
    // Which child fails first depends on timing; exactly one error comes
    // back, and only once every child's future has been dropped.
    assert!(matches!(result, Err(i) if i < 20), "{result:?}");
    assert_eq!(dropped.load(Ordering::SeqCst), 20);
}

#[test]
fn dropping_the_scope_future_cancels_children() {
    let rt = rt();
    let dropped = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let timed_out = rt.block_on({
        let dropped = dropped.clone();
        let started = started.clone();
        async move {
            let scope = vedart::scope(|s| async move {
                for _ in 0..5 {
                    let guard = DropCount(dropped.clone());
                    let started = started.clone();
                    drop(s.spawn(async move {
                        let _guard = guard;
                        started.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<()>().await;
                    }));
                }
            });
            vedart::time::timeout(Duration::from_millis(20), scope)
                .await
                .is_err()
        }
    });
    assert!(timed_out);
    let start = Instant::now();
    while dropped.load(Ordering::SeqCst) < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "children not cancelled"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn spawning_on_a_cancelled_scope_runs_nothing() {
    let rt = rt();
    let ran = Arc::new(AtomicBool::new(false));
    let result: Result<(), &str> = rt.block_on(vedart::try_scope(|s| {
        let ran = ran.clone();
        async move {
            let escaped = s.clone();
            let failing = s.spawn_try(async { Err::<(), _>("stop") });
            assert_eq!(failing.await, None);
            assert!(escaped.is_cancelled());
            let late = escaped.spawn(async move { ran.store(true, Ordering::SeqCst) });
            assert_eq!(late.await, None);
            Ok(())
        }
    }));
    assert_eq!(result, Err("stop"));
    assert!(!ran.load(Ordering::SeqCst));
}

#[test]
fn aborting_one_child_is_not_a_failure() {
    let rt = rt();
    let value = rt.block_on(vedart::scope(|s| async move {
        let stuck = s.spawn(std::future::pending::<()>());
        stuck.abort();
        assert_eq!(stuck.await, None);
        s.spawn(async { 9 }).await
    }));
    assert_eq!(value, Some(9));
}

#[test]
fn scope_works_on_the_current_thread_flavour() {
    let rt = Builder::new_current_thread().build().expect("runtime");
    let sum = rt.block_on(vedart::scope(|s| async move {
        let handles: Vec<_> = (0..100u64)
            .map(|i| {
                s.spawn(async move {
                    vedart::yield_now().await;
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for handle in handles {
            sum += handle.await.expect("child");
        }
        sum
    }));
    assert_eq!(sum, 4950);
}
