//! The default driver of process-pool and child-process futures: one thread,
//! `veda-process`, that runs tasks and drives a private reactor.
//!
//! # Why
//!
//! The executors crate does not depend on the runtime, yet each pool child needs
//! a task that reads its pipes whether or not anybody is awaiting a call. The
//! pool therefore takes a [`Spawner`](super::Spawner); the runtime passes its
//! own, and everybody else gets this one.
//!
//! # Implementation
//!
//! Tasks are `async_task` tasks whose schedule function pushes the runnable on a
//! lock-free queue and, if the thread is (about to be) blocked in the reactor,
//! interrupts it with [`Reactor::notify`]. The thread loop:
//!
//! 1. Run up to [`BUDGET`] queued runnables, each under `catch_unwind`.
//! 2. If the queue is still non-empty, turn the reactor without blocking and go
//!    to 1.
//! 3. Otherwise publish `sleeping = true`, re-check the queue (a runnable pushed
//!    before the flag was visible is seen here; one pushed after it sees the flag
//!    and notifies), and turn the reactor until an event, a timer or a notify.
//!
//! The pipes and pidfds of pool children are registered with this thread's
//! reactor, so a child's answer wakes its driver task on the same thread that
//! runs it: the answer reaches the caller after one thread hop, not two.

use std::future::Future;
use std::io;
use std::pin::Pin;

use async_task::Runnable;
use concurrent_queue::ConcurrentQueue;
use vedart_reactor::Reactor;
use vedart_reactor::fork::PerProcess;

use crate::sync::atomic::{AtomicBool, Ordering, fence};

/// Runnables run between two looks at the reactor.
const BUDGET: usize = 64;

/// The shared half of the background driver.
struct Background {
    queue: ConcurrentQueue<Runnable>,
    reactor: Reactor,
    /// Set while the thread is about to block, or blocked, in the reactor.
    sleeping: AtomicBool,
}

impl Background {
    fn schedule(&self, runnable: Runnable) {
        // The queue is unbounded and never closed: push cannot fail.
        let _ = self.queue.push(runnable);
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            let _ = self.reactor.notify();
        }
    }

    fn run(&self) {
        let _enter = self.reactor.enter();
        let Some(mut driver) = self.reactor.try_lock_driver() else {
            // Nobody else knows this private reactor; unreachable in practice.
            return;
        };
        loop {
            for _ in 0..BUDGET {
                let Ok(runnable) = self.queue.pop() else {
                    break;
                };
                // A panicking task is dropped by async-task; the driver lives on.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runnable.run()));
            }
            if !self.queue.is_empty() {
                let _ = driver.turn(Some(std::time::Duration::ZERO));
                continue;
            }
            self.sleeping.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.queue.is_empty() {
                if let Err(err) = driver.turn(None) {
                    // An epoll failure is not recoverable; do not spin on it.
                    eprintln!("vedart: veda-process reactor poll failed: {err}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            self.sleeping.store(false, Ordering::SeqCst);
        }
    }
}

/// The background driver, started on first use (and again in a child made by
/// `fork()`, where the parent's thread does not exist). A failure to start it
/// (no epoll instance or thread available) is remembered: the pool then
/// reports `Spawn` errors rather than retrying on every call.
fn background() -> io::Result<&'static Background> {
    static BACKGROUND: PerProcess<Result<&'static Background, String>> = PerProcess::new();
    let started = BACKGROUND.get_or_init(|| {
        let reactor = Reactor::new().map_err(|err| err.to_string())?;
        let background: &'static Background = Box::leak(Box::new(Background {
            queue: ConcurrentQueue::unbounded(),
            reactor,
            sleeping: AtomicBool::new(false),
        }));
        std::thread::Builder::new()
            .name("veda-process".into())
            .spawn(move || background.run())
            .map_err(|err| err.to_string())?;
        Ok(background)
    });
    started
        .as_ref()
        .map(|background| *background)
        .map_err(|err| io::Error::other(format!("cannot start the veda-process driver: {err}")))
}

/// The reactor that the background thread drives.
///
/// # Errors
///
/// Fails if the reactor or the thread cannot be created.
pub(crate) fn reactor() -> io::Result<Reactor> {
    Ok(background()?.reactor.clone())
}

/// Runs `future` to completion on the background thread.
///
/// # Errors
///
/// Fails if the background thread cannot be started.
pub(crate) fn spawn(future: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) -> io::Result<()> {
    let background = background()?;
    let (runnable, task) = async_task::spawn(future, move |runnable| background.schedule(runnable));
    task.detach();
    runnable.schedule();
    Ok(())
}
