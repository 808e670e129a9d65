//! The work-stealing scheduler: where tasks wait and which thread runs them.
//!
//! One concern per file:
//!
//! - [`queue`]: each worker's bounded local queue (steal-half) and the global
//!   injector;
//! - [`idle`]: which workers sleep or search, so that a push wakes at most one;
//! - [`park`]: putting one worker to sleep on the reactor or a condvar;
//! - [`worker`]: the worker loop, the current-thread loop and `block_on`;
//! - [`deterministic`]: the seeded single-threaded flavour and its virtual
//!   clock (its algorithm is in `deterministic/README.md`);
//! - [`registry`]: every idle task, so shutdown can cancel them.
//!
//! The sleep / wake protocol that these implement together, with a proof
//! sketch that no task is stranded, is in `README.md` beside this file.
//! This file holds [`Shared`], the state every worker and handle shares, and
//! [`schedule`], the function async-task calls whenever a task is woken.
//!
//! # Shutdown protocol
//!
//! 1. [`Shared::begin_shutdown`] sets the `shutdown` flag, closes the injector
//!    (from then on a task woken from outside a worker is dropped, cancelling
//!    it, instead of queued) and unparks every worker.
//! 2. Each worker notices the flag after its current poll, drops every task in
//!    its LIFO slot and local queue, and exits; the runtime's owner waits for
//!    them (up to `shutdown_timeout`).
//! 3. [`Shared::finish_shutdown`] drops what is left in the injector, closes the
//!    registry and wakes every task that ever waited (each is dropped as it is
//!    scheduled; one that was running completes as cancelled at its next
//!    `Pending`), and shuts the reactor down, which wakes (and so drops) every
//!    task waiting on I/O or a timer.
//!
//! A task never outlives these steps by running again; a [`JoinHandle`]
//! awaiting one resolves to a cancelled `JoinError`.
//!
//! [`JoinHandle`]: crate::JoinHandle

pub(crate) mod deterministic;
pub(crate) mod idle;
pub(crate) mod park;
pub(crate) mod queue;
pub(crate) mod registry;
pub(crate) mod worker;

use std::fmt;
use std::time::Instant;

use async_task::ScheduleInfo;
use vedart_executors::blocking::BlockingPool;
use vedart_reactor::Reactor;

use crate::sync_facade::atomic::AtomicBool;
use crate::sync_facade::atomic::Ordering::{Acquire, SeqCst};
use crate::sync_facade::unmodelled::atomic::{AtomicU64, Ordering::Relaxed};
use crate::sync_facade::{Arc, Condvar, Mutex, lock, wait, wait_timeout};
use crate::task_core::{Runnable, TaskId};
use crate::telemetry::RuntimeStats;

use self::idle::Idle;
use self::park::Parker;
use self::queue::{Injector, Steal};
use self::registry::Registry;
use self::worker::Core;

/// How the runtime runs its tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// A pool of worker threads with work stealing.
    MultiThread,
    /// Every task runs on the thread inside `block_on`.
    CurrentThread,
    /// Like `CurrentThread`, but the next task is picked by a seeded PCG
    /// generator and timers run on a virtual clock (see `deterministic`).
    Deterministic,
}

impl Flavor {
    /// Whether the one core runs on the thread inside `block_on`.
    pub(crate) fn is_single_threaded(self) -> bool {
        matches!(self, Flavor::CurrentThread | Flavor::Deterministic)
    }
}

/// Keeps a hot field on a cache line of its own.
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

/// What idle workers block in.
#[cfg(not(feature = "loom"))]
pub(crate) type ParkDriver = Reactor;
/// What idle workers block in.
#[cfg(feature = "loom")]
pub(crate) type ParkDriver = park::MockDriver;

/// What the workers of one runtime, its handles and its tasks share.
pub(crate) struct Shared {
    pub(crate) flavor: Flavor,
    /// Tasks from outside the workers, and local-queue overflow.
    pub(crate) injector: Injector<Runnable>,
    /// Per worker: the end of its queue others steal from, and its parker.
    pub(crate) remotes: Box<[Remote]>,
    /// Sleeping and searching workers (multi-thread flavour).
    pub(crate) idle: Idle,
    /// Every idle task, for shutdown.
    pub(crate) registry: Registry,
    /// The I/O and timer driver that idle workers block in.
    pub(crate) reactor: Reactor,
    /// Where `spawn_blocking` runs closures; shut down after the workers.
    pub(crate) blocking: BlockingPool,
    /// Under loom, idle workers block in this instead: loom cannot run a
    /// thread that blocks in `epoll_wait`.
    #[cfg(feature = "loom")]
    mock_driver: park::MockDriver,
    /// Set by step 1 of shutdown.
    shutdown: AtomicBool,
    /// Current-thread flavour: the one core, while no `block_on` holds it, and
    /// the `block_on` calls waiting for it.
    pub(crate) core_slot: Mutex<CoreSlot>,
    /// Worker threads still running; shutdown waits for zero.
    live_workers: Mutex<usize>,
    /// Signalled when `live_workers` drops.
    workers_exited: Condvar,
    /// Source of task ids, on its own line; threads take them in blocks.
    next_task_id: CachePadded<AtomicU64>,
    /// Unique in the process: tells this runtime's id blocks from others'.
    pub(crate) serial: u64,
    /// Per-worker telemetry counters (also listed in the process-wide
    /// registry that `telemetry::snapshot` reads).
    pub(crate) stats: crate::sync_facade::unmodelled::Arc<RuntimeStats>,
    /// The deterministic flavour's seed, trace and clock bookkeeping.
    pub(crate) det: Option<deterministic::DetShared>,
}

/// A worker as other threads see it.
pub(crate) struct Remote {
    /// Steals from the worker's local queue.
    pub(crate) steal: Steal<Runnable>,
    /// Wakes the worker.
    pub(crate) parker: Parker,
}

/// The current-thread flavour's core, parked between `block_on` calls.
#[derive(Default)]
pub(crate) struct CoreSlot {
    pub(crate) core: Option<Core>,
    /// Wakers of `block_on` calls waiting for the core.
    pub(crate) waiters: Vec<std::task::Waker>,
}

impl Shared {
    /// Creates the shared state and one core per worker. `seed` is the
    /// deterministic flavour's (and required by it).
    pub(crate) fn new(
        flavor: Flavor,
        workers: usize,
        reactor: Reactor,
        blocking: BlockingPool,
        seed: Option<u64>,
    ) -> (Arc<Shared>, Vec<Core>) {
        let det = match flavor {
            Flavor::Deterministic => Some(deterministic::DetShared::new(
                seed.unwrap_or_default(),
                reactor.now(),
            )),
            _ => None,
        };
        let mut remotes = Vec::with_capacity(workers);
        let mut cores = Vec::with_capacity(workers);
        for index in 0..workers {
            let (steal, local) = queue::local();
            remotes.push(Remote {
                steal,
                parker: Parker::new(),
            });
            let mut core = Core::new(index, local);
            if let Some(det) = &det {
                core.det = Some(deterministic::DetCore::new(det.seed()));
            }
            cores.push(core);
        }
        let shared = Arc::new(Shared {
            flavor,
            injector: Injector::new(),
            remotes: remotes.into_boxed_slice(),
            idle: Idle::new(workers),
            registry: Registry::new(workers),
            reactor,
            blocking,
            #[cfg(feature = "loom")]
            mock_driver: park::MockDriver::new(),
            shutdown: AtomicBool::new(false),
            core_slot: Mutex::new(CoreSlot::default()),
            live_workers: Mutex::new(0),
            workers_exited: Condvar::new(),
            next_task_id: CachePadded(AtomicU64::new(1)),
            serial: {
                static SERIALS: AtomicU64 = AtomicU64::new(1);
                SERIALS.fetch_add(1, Relaxed)
            },
            stats: crate::sync_facade::unmodelled::Arc::new(RuntimeStats::new(workers)),
            det,
        });
        (shared, cores)
    }

    /// Reserves `count` task ids and returns the first (workers reserve them
    /// in blocks: `worker::new_task_id`).
    pub(crate) fn reserve_task_ids(&self, count: u64) -> TaskId {
        TaskId::new(self.next_task_id.0.fetch_add(count, Relaxed))
    }

    /// Tasks in the workers' local queues (telemetry; racy).
    pub(crate) fn local_queue_depth(&self) -> usize {
        let queued: usize = self.remotes.iter().map(|remote| remote.steal.len()).sum();
        queued + self.det.as_ref().map_or(0, deterministic::DetShared::depth)
    }

    /// Worker threads running (telemetry).
    pub(crate) fn live_workers(&self) -> usize {
        *lock(&self.live_workers)
    }

    /// What idle workers block in: the reactor (a mock under loom).
    pub(crate) fn driver(&self) -> &ParkDriver {
        #[cfg(not(feature = "loom"))]
        {
            &self.reactor
        }
        #[cfg(feature = "loom")]
        {
            &self.mock_driver
        }
    }

    /// Whether shutdown has begun.
    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Acquire)
    }

    /// Queues a task from a thread that is not one of this runtime's workers.
    pub(crate) fn schedule_remote(&self, task: Runnable) {
        crate::telemetry::scheduled_remote(task.metadata());
        match self.injector.push(task) {
            Ok(()) => self.notify_parked_remote(),
            // Closed: the runtime shut down. Dropping the runnable cancels the task.
            Err(task) => drop(task),
        }
    }

    /// Wakes a worker for work that was just pushed to the injector.
    fn notify_parked_remote(&self) {
        match self.flavor {
            Flavor::MultiThread => {
                if let Some(index) = self.idle.worker_to_notify(true) {
                    self.remotes[index].parker.unpark(self.driver());
                }
            }
            // The one core runs on whichever thread is in `block_on`.
            Flavor::CurrentThread | Flavor::Deterministic => {
                self.remotes[0].parker.unpark(self.driver());
            }
        }
    }

    /// Wakes a worker for work a worker pushed to its own local queue.
    pub(crate) fn notify_parked_local(&self) {
        if self.flavor == Flavor::MultiThread {
            if let Some(index) = self.idle.worker_to_notify(false) {
                self.remotes[index].parker.unpark(self.driver());
            }
        }
    }

    /// Wakes a worker if any queue holds work: the last searcher's final check
    /// before it sleeps (see `idle`, rule 5).
    pub(crate) fn notify_if_work_pending(&self) {
        let pending =
            self.remotes.iter().any(|remote| !remote.steal.is_empty()) || !self.injector.is_empty();
        if pending {
            self.notify_parked_local();
        }
    }

    /// Shutdown step 1. Returns false if shutdown had already begun.
    pub(crate) fn begin_shutdown(&self) -> bool {
        if self.shutdown.swap(true, SeqCst) {
            return false;
        }
        self.injector.close();
        for remote in self.remotes.iter() {
            remote.parker.unpark(self.driver());
        }
        true
    }

    /// Shutdown step 3.
    pub(crate) fn finish_shutdown(&self) {
        while let Some(task) = self.injector.pop() {
            drop(task);
        }
        // The current-thread core, unless a `block_on` holds it (that call
        // drains it when it notices the flag).
        let core = lock(&self.core_slot).core.take();
        if let Some(mut core) = core {
            core.drain();
        }
        for waker in self.registry.close_and_drain() {
            // Scheduling after shutdown drops the task; isolate a panicking
            // destructor so that the rest are still cancelled.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()));
        }
        self.reactor.shutdown();
    }

    /// Records a worker thread that is starting.
    pub(crate) fn worker_started(&self) {
        *lock(&self.live_workers) += 1;
    }

    /// Records a worker thread that is exiting.
    pub(crate) fn worker_exited(&self) {
        let mut live = lock(&self.live_workers);
        *live -= 1;
        drop(live);
        self.workers_exited.notify_all();
    }

    /// Waits until at most `allowed` worker threads are running, or until
    /// `deadline`. Returns whether they exited in time.
    pub(crate) fn wait_for_workers(&self, allowed: usize, deadline: Option<Instant>) -> bool {
        let mut live = lock(&self.live_workers);
        while *live > allowed {
            live = match deadline {
                None => wait(&self.workers_exited, live),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    wait_timeout(&self.workers_exited, live, deadline - now)
                }
            };
        }
        true
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("flavor", &self.flavor)
            .field("workers", &self.remotes.len())
            .field("injector", &self.injector)
            .field("idle", &self.idle)
            .field("shutdown", &self.is_shutdown())
            .finish_non_exhaustive()
    }
}

/// async-task's schedule function for every task: called when a task is
/// spawned or woken, with the task's runnable.
///
/// On a worker of the task's own runtime the task goes to that worker's LIFO
/// slot (woken by the running task: likely to use data still in cache), or to
/// the back of its local queue if it was woken while running (as
/// [`yield_now`](crate::yield_now) does) or the LIFO slot is capped.
/// Anywhere else it goes to the injector and wakes a worker.
pub(crate) fn schedule(task: Runnable, info: ScheduleInfo) {
    let task = match worker::try_schedule_local(task, info.woken_while_running) {
        Ok(()) => return,
        Err(task) => task,
    };
    // Keep the runtime alive until `schedule_remote` returns: once the task
    // is in the injector, another thread may run it and drop the last reference.
    let shared = task.metadata().shared.clone();
    shared.schedule_remote(task);
}
