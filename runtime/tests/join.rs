//! JoinHandle and JoinError: results, panics, abort, detach.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use vedart::JoinError;

mod support;
use support::{DropFlag, rt, wait_until};

#[test]
fn a_panicking_task_reports_its_message_and_the_runtime_keeps_going() {
    let rt = rt();
    let err = rt
        .block_on(rt.spawn(async {
            panic!("task exploded: {}", 42);
        }))
        .expect_err("the task panicked");
    assert!(err.is_panic());
    assert!(!err.is_cancelled());
    assert_eq!(err.panic_message(), Some("task exploded: 42"));
    assert_eq!(err.to_string(), "task panicked: task exploded: 42");
    assert!(format!("{err:?}").contains("task exploded: 42"));
    // Every worker still runs tasks.
    let handles: Vec<_> = (0..100).map(|i| rt.spawn(async move { i })).collect();
    let sum: i32 = handles
        .into_iter()
        .map(|h| rt.block_on(h).expect("task"))
        .sum();
    assert_eq!(sum, 4950);
}

#[test]
fn panic_payload_round_trips() {
    let rt = rt();
    let err = rt
        .block_on(rt.spawn(async {
            std::panic::panic_any(17u32);
        }))
        .expect_err("panicked");
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), None);
    assert_eq!(err.to_string(), "task panicked");
    let payload = err.into_panic();
    assert_eq!(payload.downcast_ref::<u32>(), Some(&17));
}

#[test]
fn many_panicking_tasks_do_not_kill_workers() {
    let rt = rt();
    let handles: Vec<_> = (0..1000)
        .map(|i| {
            rt.spawn(async move {
                if i % 2 == 0 {
                    panic!("even {i}");
                }
                i
            })
        })
        .collect();
    let mut panics = 0;
    let mut ok = 0;
    for handle in handles {
        match rt.block_on(handle) {
            Ok(_) => ok += 1,
            Err(err) => {
                assert!(err.panic_message().expect("message").starts_with("even "));
                panics += 1;
            }
        }
    }
    assert_eq!((panics, ok), (500, 500));
}

#[test]
fn abort_cancels_a_pending_task_and_drops_its_future() {
    let rt = rt();
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropFlag(dropped.clone());
    let handle = rt.spawn(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    });
    handle.abort();
    let err = rt.block_on(handle).expect_err("aborted");
    assert!(err.is_cancelled());
    assert_eq!(err.to_string(), "task was cancelled");
    wait_until("future dropped", || dropped.load(Ordering::SeqCst));
}

#[test]
fn abort_after_completion_keeps_the_output() {
    let rt = rt();
    let handle = rt.spawn(async { 5 });
    wait_until("task finished", || handle.is_finished());
    handle.abort();
    assert_eq!(rt.block_on(handle).expect("output kept"), 5);
}

#[test]
fn abort_handle_works_from_another_thread() {
    let rt = rt();
    let handle = rt.spawn(std::future::pending::<()>());
    let aborter = handle.abort_handle();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        aborter.abort();
    })
    .join()
    .expect("aborter");
    assert!(rt.block_on(handle).expect_err("aborted").is_cancelled());
}

#[test]
fn abort_racing_completion_resolves_either_way() {
    let rt = rt();
    for i in 0..2000 {
        let handle = rt.spawn(async move {
            vedart::yield_now().await;
            i
        });
        handle.abort();
        match rt.block_on(handle) {
            Ok(value) => assert_eq!(value, i),
            Err(err) => assert!(err.is_cancelled()),
        }
    }
}

#[test]
fn abort_a_task_that_aborts_itself_while_running() {
    let rt = rt();
    let (tx, rx) = futures::channel::oneshot::channel::<vedart::AbortHandle>();
    let handle = rt.spawn(async move {
        let me = rx.await.expect("own abort handle");
        me.abort();
        // Aborted while running: the next poll never happens.
        vedart::yield_now().await;
        unreachable!("polled after abort");
    });
    tx.send(handle.abort_handle()).expect("task alive");
    assert!(rt.block_on(handle).expect_err("aborted").is_cancelled());
}

#[test]
fn is_finished_tracks_completion() {
    let rt = rt();
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let handle = rt.spawn(async move { rx.await.is_ok() });
    std::thread::sleep(Duration::from_millis(10));
    assert!(!handle.is_finished());
    tx.send(()).expect("task alive");
    wait_until("task finished", || handle.is_finished());
    assert!(rt.block_on(handle).expect("task"));
}

#[test]
fn dropping_the_handle_detaches_the_task() {
    let rt = rt();
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        let ran = ran.clone();
        drop(rt.spawn(async move {
            vedart::time::sleep(Duration::from_millis(5)).await;
            ran.fetch_add(1, Ordering::SeqCst);
        }));
    }
    wait_until("detached tasks ran", || ran.load(Ordering::SeqCst) == 100);
}

#[test]
fn a_join_handle_can_be_awaited_by_another_executor() {
    let rt = rt();
    let handle = rt.spawn(async {
        vedart::time::sleep(Duration::from_millis(5)).await;
        "done"
    });
    assert_eq!(futures::executor::block_on(handle).expect("task"), "done");
}

#[test]
fn join_error_converts_to_io_error() {
    let rt = rt();
    let handle = rt.spawn(std::future::pending::<()>());
    handle.abort();
    let err: JoinError = rt.block_on(handle).expect_err("aborted");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::Interrupted);
    assert!(io.to_string().contains("cancelled"));
}

#[test]
fn try_into_panic_hands_back_a_cancellation() {
    let rt = rt();
    let handle = rt.spawn(std::future::pending::<()>());
    handle.abort();
    let err = rt.block_on(handle).expect_err("aborted");
    let err = err.try_into_panic().expect_err("not a panic");
    assert!(err.is_cancelled());
}

#[test]
#[should_panic(expected = "did not panic")]
fn into_panic_on_a_cancellation_panics() {
    let rt = rt();
    let handle = rt.spawn(std::future::pending::<()>());
    handle.abort();
    let _ = rt.block_on(handle).expect_err("aborted").into_panic();
}

#[test]
fn join_error_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<JoinError>();
    assert_send_sync::<vedart::AbortHandle>();
    assert_send_sync::<vedart::JoinHandle<u8>>();
    assert_send_sync::<vedart::Handle>();
    assert_send_sync::<vedart::Runtime>();
}

/// Panics when dropped.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("destructor exploded");
    }
}

#[test]
fn a_future_whose_destructor_panics_does_not_take_the_runtime_down() {
    let rt = rt();
    // A local dropped as the future completes panics inside the poll: that
    // is the task's panic.
    let done = rt.spawn(async {
        let _bomb = PanicOnDrop;
        1
    });
    let err = rt.block_on(done).expect_err("panicked while completing");
    assert_eq!(err.panic_message(), Some("destructor exploded"));
    // A future dropped without completing (aborted) panics outside any poll:
    // caught, and the task stays cancelled.
    let pending = rt.spawn(async {
        let _bomb = PanicOnDrop;
        std::future::pending::<()>().await;
    });
    std::thread::sleep(Duration::from_millis(10));
    pending.abort();
    assert!(rt.block_on(pending).expect_err("aborted").is_cancelled());
    // The workers survived.
    let handles: Vec<_> = (0..10).map(|i| rt.spawn(async move { i })).collect();
    let sum: i32 = handles
        .into_iter()
        .map(|h| rt.block_on(h).expect("task"))
        .sum();
    assert_eq!(sum, 45);
}
