//! The JoinHandle result hand-off: a handle awaited on one thread while the
//! task completes on another is always woken with the value.
#![cfg(feature = "loom")]

use loom::sync::Arc;
use loom::thread;
use vedart::__loom::Runtime;

#[test]
fn awaiting_while_the_task_completes_elsewhere_gets_the_value() {
    loom::model(|| {
        let rt = Arc::new(Runtime::new(1));
        let handle = rt.spawn(async { 42 });
        let runner = {
            let rt = rt.clone();
            thread::spawn(move || {
                while !rt.run_one_injected() {
                    thread::yield_now();
                }
            })
        };
        // Let the runner go first in some executions.
        thread::yield_now();
        // A lost wake-up would leave this blocked: loom reports a deadlock.
        assert_eq!(loom::future::block_on(handle).expect("output"), 42);
        runner.join().expect("runner");
        rt.begin_shutdown();
        rt.finish_shutdown();
    });
}

#[test]
fn a_task_cancelled_by_shutdown_resolves_its_handle() {
    loom::model(|| {
        let rt = Arc::new(Runtime::new(1));
        let handle = rt.spawn(std::future::pending::<()>());
        let waiter = thread::spawn(move || loom::future::block_on(handle));
        thread::yield_now();
        rt.begin_shutdown();
        rt.finish_shutdown();
        assert!(
            waiter
                .join()
                .expect("waiter")
                .expect_err("cancelled")
                .is_cancelled()
        );
    });
}
