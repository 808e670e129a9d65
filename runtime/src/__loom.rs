//! Internals exposed to the loom models in `loom-tests/` (feature `loom` only).
//!
//! Not a public API: thin wrappers that let the models drive the scheduler's
//! real code (queues, idle bookkeeping, parker, the worker loop) inside
//! `loom::model`. Under the `loom` feature every primitive comes from loom
//! (see `sync.rs`), the injector is a `Mutex<VecDeque>`, local queues hold 4
//! tasks, and idle workers block in a mock driver instead of `epoll_wait`.

use std::fmt;
use std::future::Future;

use crate::sync_facade::Arc;

/// The local run queue and the injector (`scheduler/queue.rs`).
pub mod queue {
    use std::fmt;

    use crate::scheduler::queue as imp;

    /// Slots in a local queue under loom.
    pub const CAPACITY: usize = imp::LOCAL_QUEUE_CAPACITY;

    /// The owner's end of a local queue.
    pub struct Local<T>(imp::Local<T>);

    /// A stealer's end of a local queue.
    pub struct Steal<T>(imp::Steal<T>);

    /// The global injector queue.
    pub struct Injector<T>(imp::Injector<T>);

    /// A new local queue: the stealers' end and the owner's end.
    pub fn local<T>() -> (Steal<T>, Local<T>) {
        let (steal, local) = imp::local();
        (Steal(steal), Local(local))
    }

    impl<T> Local<T> {
        /// Pushes, overflowing half the queue and `task` into `overflow` when full.
        pub fn push_back_or_overflow(&mut self, task: T, overflow: &Injector<T>) {
            self.0.push_back_or_overflow(task, &overflow.0);
        }

        /// Pops the oldest task.
        pub fn pop(&mut self) -> Option<T> {
            self.0.pop()
        }

        /// Tasks a pop could return.
        pub fn len(&self) -> usize {
            self.0.len()
        }

        /// Whether a pop could return a task.
        pub fn is_empty(&self) -> bool {
            !self.0.has_tasks()
        }
    }

    impl<T> Steal<T> {
        /// Steals half into `dst`, returning one task.
        pub fn steal_into(&self, dst: &mut Local<T>) -> Option<T> {
            self.0.steal_into(&mut dst.0)
        }

        /// Whether the queue looks empty.
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }

    impl<T> Clone for Steal<T> {
        fn clone(&self) -> Self {
            Steal(self.0.clone())
        }
    }

    impl<T> Injector<T> {
        /// An empty, open injector.
        pub fn new() -> Injector<T> {
            Injector(imp::Injector::new())
        }

        /// Pushes, or hands the task back once closed.
        ///
        /// # Errors
        ///
        /// The task itself, when the injector is closed.
        pub fn push(&self, task: T) -> Result<(), T> {
            self.0.push(task)
        }

        /// Pops the oldest task.
        pub fn pop(&self) -> Option<T> {
            self.0.pop()
        }

        /// Whether it looks empty.
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }

        /// Refuses later pushes; true if this call closed it.
        pub fn close(&self) -> bool {
            self.0.close()
        }
    }

    impl<T> Default for Injector<T> {
        fn default() -> Self {
            Injector::new()
        }
    }

    impl<T> fmt::Debug for Local<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt(f)
        }
    }

    impl<T> fmt::Debug for Steal<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt(f)
        }
    }

    impl<T> fmt::Debug for Injector<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.fmt(f)
        }
    }
}

/// Idle-worker bookkeeping (`scheduler/idle.rs`).
pub mod idle {
    use crate::scheduler::idle as imp;

    /// Which workers sleep and which search.
    #[derive(Debug)]
    pub struct Idle(imp::Idle);

    impl Idle {
        /// Bookkeeping for `workers` workers, all awake.
        pub fn new(workers: usize) -> Idle {
            Idle(imp::Idle::new(workers))
        }

        /// A sleeper to wake after a push, counted as unparked and searching.
        pub fn worker_to_notify(&self, after_remote_push: bool) -> Option<usize> {
            self.0.worker_to_notify(after_remote_push)
        }

        /// `worker` goes to sleep; true if it was the last searcher.
        pub fn transition_worker_to_parked(&self, worker: usize, is_searching: bool) -> bool {
            self.0.transition_worker_to_parked(worker, is_searching)
        }

        /// Tries to become a searcher.
        pub fn transition_worker_to_searching(&self) -> bool {
            self.0.transition_worker_to_searching()
        }

        /// A searcher found work; true if it was the last searcher.
        pub fn transition_worker_from_searching(&self) -> bool {
            self.0.transition_worker_from_searching()
        }

        /// Removes `worker` from the sleepers; true if it was one.
        pub fn unpark_worker_by_id(&self, worker: usize) -> bool {
            self.0.unpark_worker_by_id(worker)
        }

        /// Whether `worker` is registered as sleeping.
        pub fn is_parked(&self, worker: usize) -> bool {
            self.0.is_parked(worker)
        }

        /// `(unparked, searching)`.
        pub fn counts(&self) -> (usize, usize) {
            let state = self.0.state();
            (state.num_unparked(), state.num_searching())
        }
    }
}

/// The parker and the mock driver it blocks in under loom (`scheduler/park.rs`).
pub mod park {
    use crate::scheduler::park::{self as imp, Driver as _, DriverTurn as _};

    /// Puts one thread to sleep; any thread may wake it.
    #[derive(Debug, Clone)]
    pub struct Parker(imp::Parker);

    /// What a parked thread blocks in when it holds the driver lock.
    #[derive(Debug)]
    pub struct MockDriver(imp::MockDriver);

    impl Parker {
        /// A parker with no pending notification.
        pub fn new() -> Parker {
            Parker(imp::Parker::new())
        }

        /// Sleeps until unparked (in `driver` if its lock is free).
        pub fn park(&self, driver: &MockDriver) {
            self.0.park(&driver.0);
        }

        /// Wakes the owner, or makes its next `park` return at once.
        pub fn unpark(&self, driver: &MockDriver) {
            self.0.unpark(&driver.0);
        }
    }

    impl Default for Parker {
        fn default() -> Self {
            Parker::new()
        }
    }

    impl MockDriver {
        /// A driver with nothing pending.
        pub fn new() -> MockDriver {
            MockDriver(imp::MockDriver::new())
        }

        /// Polls without blocking, if the driver lock is free; true if it was.
        pub fn poll(&self) -> bool {
            match self.0.try_lock() {
                Some(mut guard) => {
                    guard.poll();
                    true
                }
                None => false,
            }
        }
    }

    impl Default for MockDriver {
        fn default() -> Self {
            MockDriver::new()
        }
    }
}

/// A multi-thread runtime whose workers the model runs on its own threads.
pub struct Runtime {
    shared: Arc<crate::scheduler::Shared>,
    cores: crate::sync_facade::Mutex<Vec<Option<crate::scheduler::worker::Core>>>,
}

impl Runtime {
    /// A runtime with `workers` workers, none running yet.
    ///
    /// # Panics
    ///
    /// If the reactor cannot be created (fd exhaustion).
    pub fn new(workers: usize) -> Runtime {
        let reactor = vedart_reactor::Reactor::new().expect("reactor");
        let blocking = vedart_executors::blocking::BlockingPool::builder()
            .build()
            .expect("default blocking pool settings are valid");
        let (shared, cores) = crate::scheduler::Shared::new(
            crate::scheduler::Flavor::MultiThread,
            workers,
            reactor,
            blocking,
            None,
        );
        Runtime {
            shared,
            cores: crate::sync_facade::Mutex::new(cores.into_iter().map(Some).collect()),
        }
    }

    /// A handle to spawn with.
    pub fn handle(&self) -> crate::Handle {
        crate::Handle::from_shared(self.shared.clone())
    }

    /// Runs worker `index`'s loop on the calling thread until shutdown.
    ///
    /// # Panics
    ///
    /// If that worker already ran.
    pub fn run_worker(&self, index: usize) {
        let core = crate::sync_facade::lock(&self.cores)[index]
            .take()
            .expect("each worker runs once");
        crate::scheduler::worker::run_worker(self.shared.clone(), index, core);
    }

    /// Shutdown step 1: flags shutdown and unparks every worker.
    pub fn begin_shutdown(&self) {
        self.shared.begin_shutdown();
    }

    /// Shutdown step 3, once every worker has returned from `run_worker`:
    /// cancels whatever is left.
    pub fn finish_shutdown(&self) {
        for core in crate::sync_facade::lock(&self.cores).iter_mut() {
            if let Some(mut core) = core.take() {
                core.drain();
            }
        }
        self.shared.finish_shutdown();
    }

    /// Spawns `future` and returns its handle (the same path as `Handle::spawn`).
    pub fn spawn<F>(&self, future: F) -> crate::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        crate::task_core::spawn(&self.shared, future, crate::task_span::SpawnSite::here())
    }

    /// Runs one task from the injector on the calling thread, as a worker
    /// would (for models of the task path without a worker loop). Returns
    /// false if the injector was empty.
    pub fn run_one_injected(&self) -> bool {
        match self.shared.injector.pop() {
            Some(task) => {
                task.run();
                true
            }
            None => false,
        }
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}
