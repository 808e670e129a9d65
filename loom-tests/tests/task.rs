//! The task path that is ours (async-task's own state machine hides its
//! atomics from loom, so it runs here as an opaque, linearizable step):
//! scheduling on wake, the abort flag, and dropping the future exactly once.
#![cfg(feature = "loom")]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;
use vedart::__loom::Runtime;

/// Counts polls and drops; parks its waker on the first poll.
struct Probe {
    polls: AtomicUsize,
    drops: AtomicUsize,
    waker: Mutex<Option<Waker>>,
}

impl Probe {
    fn new() -> Arc<Probe> {
        Arc::new(Probe {
            polls: AtomicUsize::new(0),
            drops: AtomicUsize::new(0),
            waker: Mutex::new(None),
        })
    }

    /// Spins (yielding to loom) until the task stored its waker.
    fn waker(&self) -> Waker {
        loop {
            if let Some(waker) = self.waker.lock().expect("lock").clone() {
                return waker;
            }
            thread::yield_now();
        }
    }
}

/// Pending on the first poll (storing its waker), ready on the second.
struct TwoPolls(Arc<Probe>);

impl Future for TwoPolls {
    type Output = usize;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let polls = self.0.polls.fetch_add(1, Ordering::SeqCst) + 1;
        if polls == 1 {
            *self.0.waker.lock().expect("lock") = Some(cx.waker().clone());
            // A preemption point while still running: wakes may land here.
            thread::yield_now();
            Poll::Pending
        } else {
            Poll::Ready(polls)
        }
    }
}

impl Drop for TwoPolls {
    fn drop(&mut self) {
        self.0.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// Runs injected tasks until the injector stays empty.
fn run_all(rt: &Runtime) -> usize {
    let mut runs = 0;
    while rt.run_one_injected() {
        runs += 1;
    }
    runs
}

#[test]
fn two_wakes_racing_the_poll_schedule_the_task_once() {
    loom::model(|| {
        let rt = Arc::new(Runtime::new(1));
        let probe = Probe::new();
        let handle = rt.spawn(TwoPolls(probe.clone()));
        let waker_thread = {
            let probe = probe.clone();
            thread::spawn(move || {
                let waker = probe.waker();
                waker.wake_by_ref();
                waker.wake();
            })
        };
        // The first poll: the wakes land during it or after it.
        assert!(rt.run_one_injected());
        waker_thread.join().expect("waker thread");
        // Exactly one more run, however the wakes interleaved with the poll.
        assert_eq!(run_all(&rt), 1);
        assert_eq!(probe.polls.load(Ordering::SeqCst), 2);
        assert_eq!(loom::future::block_on(handle).expect("output"), 2);
        assert_eq!(probe.drops.load(Ordering::SeqCst), 1);
        rt.begin_shutdown();
        rt.finish_shutdown();
    });
}

#[test]
fn a_wake_after_completion_schedules_nothing() {
    loom::model(|| {
        let rt = Arc::new(Runtime::new(1));
        let probe = Probe::new();
        let handle = rt.spawn(TwoPolls(probe.clone()));
        assert!(rt.run_one_injected());
        let waker = probe.waker();
        waker.wake_by_ref();
        assert_eq!(run_all(&rt), 1);
        // Completed: these wakes must not queue it again.
        let late = thread::spawn(move || waker.wake());
        late.join().expect("late waker");
        assert_eq!(run_all(&rt), 0);
        assert_eq!(probe.polls.load(Ordering::SeqCst), 2);
        assert_eq!(loom::future::block_on(handle).expect("output"), 2);
        rt.begin_shutdown();
        rt.finish_shutdown();
    });
}

#[test]
fn abort_racing_completion_resolves_once_and_drops_the_future_once() {
    loom::model(|| {
        let rt = Arc::new(Runtime::new(1));
        let probe = Probe::new();
        let handle = rt.spawn(TwoPolls(probe.clone()));
        assert!(rt.run_one_injected());
        let aborter = handle.abort_handle();
        let waker = probe.waker();
        // One thread aborts while another wakes the task to complete it.
        let abort_thread = thread::spawn(move || aborter.abort());
        waker.wake();
        let runner = {
            let rt = rt.clone();
            thread::spawn(move || run_all(&rt))
        };
        abort_thread.join().expect("aborter");
        runner.join().expect("runner");
        run_all(&rt);
        match loom::future::block_on(handle) {
            Ok(polls) => assert_eq!(polls, 2),
            Err(err) => assert!(err.is_cancelled()),
        }
        assert!(probe.polls.load(Ordering::SeqCst) <= 2);
        assert_eq!(probe.drops.load(Ordering::SeqCst), 1);
        rt.begin_shutdown();
        rt.finish_shutdown();
    });
}

#[test]
fn abort_of_an_idle_task_cancels_it() {
    loom::model(|| {
        let rt = Arc::new(Runtime::new(1));
        let probe = Probe::new();
        let handle = rt.spawn(TwoPolls(probe.clone()));
        assert!(rt.run_one_injected());
        let aborter = handle.abort_handle();
        let abort_thread = thread::spawn(move || aborter.abort());
        let runner = {
            let rt = rt.clone();
            thread::spawn(move || {
                // Run whatever the abort scheduled.
                loop {
                    if rt.run_one_injected() {
                        break;
                    }
                    thread::yield_now();
                }
            })
        };
        abort_thread.join().expect("aborter");
        runner.join().expect("runner");
        assert!(
            loom::future::block_on(handle)
                .expect_err("aborted")
                .is_cancelled()
        );
        assert_eq!(
            probe.polls.load(Ordering::SeqCst),
            1,
            "never polled after the abort"
        );
        assert_eq!(probe.drops.load(Ordering::SeqCst), 1);
        rt.begin_shutdown();
        rt.finish_shutdown();
    });
}

#[test]
fn a_first_wait_racing_shutdown_is_cancelled_exactly_once() {
    // The task registers as idle on its first `Pending` while shutdown closes
    // and drains the registry: either shutdown finds and cancels it, or it
    // finds the registry closed and cancels itself. Never neither, never both.
    loom::model(|| {
        let rt = Arc::new(Runtime::new(1));
        let probe = Probe::new();
        let handle = rt.spawn(TwoPolls(probe.clone()));
        let runner = {
            let rt = rt.clone();
            thread::spawn(move || rt.run_one_injected())
        };
        rt.begin_shutdown();
        rt.finish_shutdown();
        runner.join().expect("runner");
        assert!(
            loom::future::block_on(handle)
                .expect_err("cancelled")
                .is_cancelled()
        );
        assert_eq!(probe.drops.load(Ordering::SeqCst), 1);
    });
}
