//! The injector hand-off: a task pushed from outside while the last worker
//! goes to sleep is still taken, and a push racing shutdown's close is either
//! drained or refused, never lost.
//!
//! The worker side follows `scheduler/worker.rs` step for step (look, search,
//! register as sleeper, recheck as last searcher, park until notified) with
//! the real `Idle`, `Injector` and `Parker`; `worker_park.rs` runs the real
//! worker loop end to end.
#![cfg(feature = "loom")]

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use vedart::__loom::idle::Idle;
use vedart::__loom::park::{MockDriver, Parker};
use vedart::__loom::queue::Injector;

struct Pool {
    idle: Idle,
    injector: Injector<u32>,
    parkers: Vec<Parker>,
    driver: MockDriver,
    /// Tasks taken so far, and a condvar signalled on each.
    taken: Mutex<Vec<u32>>,
    progress: Condvar,
    shutdown: AtomicBool,
}

impl Pool {
    fn new(workers: usize) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Idle::new(workers),
            injector: Injector::new(),
            parkers: (0..workers).map(|_| Parker::new()).collect(),
            driver: MockDriver::new(),
            taken: Mutex::new(Vec::new()),
            progress: Condvar::new(),
            shutdown: AtomicBool::new(false),
        })
    }

    /// A remote push: `Shared::schedule_remote`.
    fn push(&self, task: u32) {
        self.injector.push(task).expect("open");
        if let Some(worker) = self.idle.worker_to_notify(true) {
            self.parkers[worker].unpark(&self.driver);
        }
    }

    /// Waits until `count` tasks were taken; a stranded task deadlocks here.
    fn wait_for(&self, count: usize) -> Vec<u32> {
        let mut taken = self.taken.lock().expect("lock");
        while taken.len() < count {
            taken = self.progress.wait(taken).expect("wait");
        }
        taken.clone()
    }

    /// Shutdown: flag, then unpark everyone.
    fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for parker in &self.parkers {
            parker.unpark(&self.driver);
        }
    }

    /// A worker's life: take tasks until shutdown.
    fn work(&self, index: usize) {
        let mut searching = false;
        while let Some(task) = self.next(index, &mut searching) {
            self.taken.lock().expect("lock").push(task);
            self.progress.notify_all();
        }
    }

    /// One turn of the worker loop: a task, or `None` at shutdown.
    fn next(&self, index: usize, searching: &mut bool) -> Option<u32> {
        loop {
            if self.shutdown.load(Ordering::SeqCst) {
                return None;
            }
            // next_task
            if let Some(task) = self.injector.pop() {
                return Some(self.found(task, searching));
            }
            // steal_work
            if !*searching {
                *searching = self.idle.transition_worker_to_searching();
            }
            if *searching {
                if let Some(task) = self.injector.pop() {
                    return Some(self.found(task, searching));
                }
            }
            // park: transition_to_parked
            let last = self.idle.transition_worker_to_parked(index, *searching);
            *searching = false;
            if last && !self.injector.is_empty() {
                if let Some(worker) = self.idle.worker_to_notify(false) {
                    self.parkers[worker].unpark(&self.driver);
                }
            }
            // park until notified (transition_from_parked); whoever notified
            // us counted us as searching.
            loop {
                self.parkers[index].park(&self.driver);
                if self.shutdown.load(Ordering::SeqCst) {
                    return None;
                }
                if !self.idle.is_parked(index) {
                    *searching = true;
                    break;
                }
            }
        }
    }

    /// run_task: a searcher that found work stops searching and, if it was
    /// the last searcher, wakes another worker.
    fn found(&self, task: u32, searching: &mut bool) -> u32 {
        if *searching {
            *searching = false;
            if self.idle.transition_worker_from_searching() {
                if let Some(worker) = self.idle.worker_to_notify(false) {
                    self.parkers[worker].unpark(&self.driver);
                }
            }
        }
        task
    }
}

fn run(workers: usize, tasks: u32) {
    let pool = Pool::new(workers);
    let threads: Vec<_> = (0..workers)
        .map(|index| {
            let pool = pool.clone();
            thread::spawn(move || pool.work(index))
        })
        .collect();
    for task in 0..tasks {
        pool.push(task);
    }
    let mut taken = pool.wait_for(tasks as usize);
    taken.sort_unstable();
    assert_eq!(taken, (0..tasks).collect::<Vec<_>>());
    pool.shutdown();
    for thread in threads {
        thread.join().expect("worker");
    }
}

#[test]
fn a_push_while_the_only_worker_parks_is_taken() {
    loom::model(|| run(1, 1));
}

#[test]
fn two_pushes_two_workers_both_taken() {
    loom::model(|| run(2, 2));
}

#[test]
fn a_push_racing_close_is_drained_or_refused() {
    loom::model(|| {
        let injector = Arc::new(Injector::<u32>::new());
        let pusher = {
            let injector = injector.clone();
            thread::spawn(move || (0..2).filter(|&task| injector.push(task).is_err()).count())
        };
        injector.close();
        let mut drained = 0;
        while injector.pop().is_some() {
            drained += 1;
        }
        let refused = pusher.join().expect("pusher");
        // Every push made before the close is drained afterwards.
        while injector.pop().is_some() {
            drained += 1;
        }
        assert_eq!(drained + refused, 2);
    });
}
