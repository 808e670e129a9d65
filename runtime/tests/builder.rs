//! Builder settings, thread naming and callbacks, and the bad-use cases.
#![cfg(not(feature = "loom"))] // real threads: loom's types work only inside a model (loom-tests/)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use vedart::{Builder, Handle, Runtime};

#[test]
fn zero_worker_threads_is_an_error_naming_the_field() {
    let err = Builder::new_multi_thread()
        .worker_threads(0)
        .build()
        .expect_err("zero workers");
    assert!(err.is_invalid_config());
    assert!(!err.is_io());
    assert_eq!(err.field(), Some("worker_threads"));
    let message = err.to_string();
    assert!(message.contains("worker_threads"), "{message}");
    assert!(message.contains("at least 1"), "{message}");
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn current_thread_rejects_zero_workers_too() {
    let err = Builder::new_current_thread()
        .worker_threads(0)
        .build()
        .expect_err("zero workers");
    assert_eq!(err.field(), Some("worker_threads"));
}

#[test]
fn other_invalid_settings_name_their_field() {
    let err = Builder::new_multi_thread()
        .worker_threads(1_000_000)
        .build()
        .expect_err("too many");
    assert_eq!(err.field(), Some("worker_threads"));
    assert!(err.to_string().contains("at most"), "{err}");

    let err = Builder::new_multi_thread()
        .thread_stack_size(0)
        .build()
        .expect_err("no stack");
    assert_eq!(err.field(), Some("thread_stack_size"));

    let err = Builder::new_multi_thread()
        .thread_name("bad\0name")
        .build()
        .expect_err("NUL in name");
    assert_eq!(err.field(), Some("thread_name"));
}

#[test]
fn threads_are_named_with_the_prefix_and_index() {
    let names = Arc::new(std::sync::Mutex::new(Vec::new()));
    let rt = Builder::new_multi_thread()
        .worker_threads(3)
        .thread_name("custom")
        .thread_stack_size(256 * 1024)
        .on_thread_start({
            let names = names.clone();
            move || {
                let name = std::thread::current().name().map(str::to_owned);
                names.lock().expect("lock").push(name.expect("named"));
            }
        })
        .build()
        .expect("runtime");
    drop(rt);
    let mut names = names.lock().expect("lock").clone();
    names.sort();
    assert_eq!(names, ["custom-0", "custom-1", "custom-2"]);
}

#[test]
fn default_names_are_veda_worker() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let name = rt
        .block_on(rt.spawn(async { std::thread::current().name().map(str::to_owned) }))
        .expect("task")
        .expect("named");
    assert!(name == "veda-worker-0" || name == "veda-worker-1", "{name}");
}

#[test]
fn start_and_stop_callbacks_run_once_per_worker() {
    let started = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicUsize::new(0));
    let rt = Builder::new_multi_thread()
        .worker_threads(4)
        .on_thread_start({
            let started = started.clone();
            move || {
                started.fetch_add(1, Ordering::SeqCst);
            }
        })
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
    assert_eq!(started.load(Ordering::SeqCst), 4);
    assert_eq!(stopped.load(Ordering::SeqCst), 4);
}

#[test]
fn runtime_new_works() {
    let rt = Runtime::new().expect("runtime");
    assert_eq!(rt.block_on(async { 1 }), 1);
}

#[test]
fn block_on_inside_a_task_panics_with_advice() {
    let rt = Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let other = Builder::new_current_thread().build().expect("runtime");
    let err = rt
        .block_on(rt.spawn(async move {
            // Any runtime's block_on: this thread runs tasks.
            other.block_on(async {});
        }))
        .expect_err("block_on on a worker panics");
    let message = err.panic_message().expect("message");
    assert!(message.contains("block_on"), "{message}");
    assert!(message.contains(".await"), "{message}");
    assert!(message.contains("veda-worker"), "{message}");
    // The worker survived.
    assert_eq!(rt.block_on(rt.spawn(async { 5 })).expect("task"), 5);
}

#[test]
fn nested_block_on_in_a_current_thread_runtime_panics() {
    let rt = Builder::new_current_thread().build().expect("runtime");
    let result = rt.block_on(rt.spawn(async {
        vedart::block_on(async {});
    }));
    let err = result.expect_err("nested block_on panics");
    assert!(err.panic_message().expect("message").contains("block_on"));
}

#[test]
fn block_on_re_raises_the_future_panic_and_the_runtime_survives() {
    let rt = Builder::new_current_thread().build().expect("runtime");
    let caught = catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(async { panic!("main future failed") });
    }));
    assert!(caught.is_err());
    // The core was put back: the runtime still runs tasks.
    assert_eq!(rt.block_on(rt.spawn(async { 2 })).expect("task"), 2);
}

#[test]
#[should_panic(expected = "outside a VedaRT runtime")]
fn handle_current_outside_a_runtime_panics_with_a_message() {
    let _ = Handle::current();
}

#[test]
fn enter_makes_the_runtime_current() {
    let rt = Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    assert!(Handle::try_current().is_none());
    {
        let _guard = rt.enter();
        assert!(Handle::try_current().is_some());
        let task = vedart::spawn(async { std::thread::current().name().map(str::to_owned) });
        let name = rt.block_on(task).expect("task").expect("named");
        assert_eq!(name, "veda-worker-0");
    }
    assert!(Handle::try_current().is_none());
}

#[test]
fn two_runtimes_are_independent() {
    let a = Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("rt-a")
        .build()
        .expect("runtime");
    let b = Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("rt-b")
        .build()
        .expect("runtime");
    let b_handle = b.handle();
    // A task on `a` spawns onto `b` through its handle.
    let name = a
        .block_on(a.spawn(async move {
            b_handle
                .spawn(async { std::thread::current().name().map(str::to_owned) })
                .await
        }))
        .expect("outer")
        .expect("inner")
        .expect("named");
    assert_eq!(name, "rt-b-0");
}
